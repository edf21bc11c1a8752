"""Signed versions, serving-only copies, the audit CLI and key generation, on a local store."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from cloudhop import cli
from cloudhop.registry import IntegrityError, Manifest, Registry
from cloudhop.registry import signing
from cloudhop.store import Store
from cloudhop.targets.cloud import SERVING_FILES, copy_version

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def pems():
    return signing.new_key_pair()


def test_keys_load_from_a_file_or_the_pem_itself_and_from_env(tmp_path, pems, monkeypatch):
    private, public = pems
    (tmp_path / "k.pem").write_bytes(private)
    assert signing.load_private_key(str(tmp_path / "k.pem")).public_key() == signing.load_public_key(public.decode())
    monkeypatch.setenv(signing.SIGNING_KEY_ENV, str(tmp_path / "k.pem"))
    monkeypatch.setenv(signing.PUBLIC_KEY_ENV, public.decode())
    assert signing.private_key_from_env() is not None and signing.public_key_from_env() is not None
    monkeypatch.delenv(signing.SIGNING_KEY_ENV)
    assert signing.private_key_from_env() is None


def test_bad_keys_get_errors_that_never_quote_them(tmp_path, pems):
    with pytest.raises(signing.SigningError, match="cannot read the private key file"):
        signing.load_private_key(str(tmp_path / "missing.pem"))
    with pytest.raises(signing.SigningError, match="not a PEM public key") as e:
        signing.load_public_key("-----BEGIN PUBLIC KEY-----\nc2VjcmV0LW1hdGVyaWFs\n-----END PUBLIC KEY-----\n")
    assert "c2VjcmV0" not in str(e.value)
    with pytest.raises(signing.SigningError, match="not an unencrypted PEM private key"):
        signing.load_private_key(pems[1])  # the public half where the private one belongs


def test_signed_publish_verifies_and_an_edit_of_the_signature_does_not(tmp_path, pems):
    store = Store(str(tmp_path))
    mv = Registry(store, "m", signing_key=signing.load_private_key(pems[0])).publish({"a": b"x"}, Manifest())
    assert store.exists(mv.key("manifest.sig")) and store.exists(mv.key("claim.json"))
    reg = Registry(store, "m", public_key=signing.load_public_key(pems[1]))
    assert reg.get("1").manifest_sha256 == mv.manifest_sha256 and reg.verify("1") == []
    store.write_bytes(mv.key("manifest.sig"), b"not base64 at all\n")
    with pytest.raises(IntegrityError, match="does not verify"):
        reg.get("1")


def test_copy_version_copies_only_what_serving_needs(tmp_path, pems):
    src = Registry(Store(str(tmp_path / "src")), "m", signing_key=signing.load_private_key(pems[0]))
    files = {"model.onnx": b"onnx", "preprocess.json": b"{}", "smoke.json": b"{}", "checkpoint.pt": b"weights",
             "reference.parquet": b"rows", "validation.json": b"details"}
    mv = src.publish(files, Manifest())
    dest = Store(str(tmp_path / "dest"))
    assert copy_version(src, dest, "1") == sum(len(files[f]) for f in SERVING_FILES)
    assert dest.list() == sorted(mv.key(f) for f in (*SERVING_FILES, "manifest.json", "manifest.sig"))
    there = Registry(dest, "m", public_key=signing.load_public_key(pems[1]))
    assert there.verify("1", SERVING_FILES) == []
    assert copy_version(src, dest, "1") == 0  # intact already: nothing sent


def spec_file(tmp_path, store: str) -> str:
    data = yaml.safe_load(open(os.path.join(ROOT, "specs/flights.yaml")))
    data.update(name="m", store=store)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_cloudhop_audit_prints_every_move(tmp_path, capsys):
    store = Store(str(tmp_path / "store"))
    reg = Registry(store, "m").acting_as({"flow_run": "run-7", "deployment": "retrain/nightly"})
    for i in range(2):
        reg.publish({"a": bytes([i])}, Manifest())
    reg.set_alias("champion", "1", reason="first")
    reg.set_alias("champion", "2", reason="auc 0.71 vs 0.70")
    reg.set_alias("champion", "1", rollback=True, reason="bad release")
    spec = spec_file(tmp_path, str(tmp_path / "store"))
    assert cli.main(["audit", "--model", "m", "--spec", spec]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[2:6] for line in lines] == [
        ["promotion", "champion", "-", "->"], ["promotion", "champion", "1", "->"],
        ["rollback", "champion", "2", "->"]]
    assert "by deployment=retrain/nightly,flow_run=run-7" in lines[0] and lines[2].endswith("(bad release)")
    assert cli.main(["audit", "--model", "m", "--spec", spec, "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["from"], e["to"]) for e in events] == [(None, "1"), ("1", "2"), ("2", "1")]


def test_cloudhop_keygen_writes_a_pair_and_never_overwrites(tmp_path, capsys):
    assert cli.main(["keygen", str(tmp_path / "k")]) == 0
    assert oct(os.stat(tmp_path / "k" / "signing.pem").st_mode & 0o777) == "0o600"
    key = signing.load_private_key(str(tmp_path / "k" / "signing.pem"))
    assert key.public_key() == signing.load_public_key(str(tmp_path / "k" / "signing.pub"))
    before = (tmp_path / "k" / "signing.pem").read_bytes()
    assert cli.main(["keygen", str(tmp_path / "k")]) == 2
    assert "not overwriting" in capsys.readouterr().err
    assert (tmp_path / "k" / "signing.pem").read_bytes() == before


def test_server_with_a_public_key_refuses_to_start_on_an_unsigned_version(tmp_path, pems):
    Registry(Store(str(tmp_path / "store")), "m").publish({"model.onnx": b"x"}, Manifest())
    env = {**os.environ, "PYTHONPATH": ROOT, signing.PUBLIC_KEY_ENV: pems[1].decode()}
    r = subprocess.run([sys.executable, "-m", "cloudhop.serving", "--store", str(tmp_path / "store"), "--model", "m",
                        "--version", "1", "--port", "9"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "cannot start" in r.stderr and "unsigned" in r.stderr and "manifest.sig" in r.stderr
