"""Hostile specs, overrides, event parameters and addresses: each is refused with an error that
names the field, before anything is written or any connection is tried.

The flow cases run the real `retrain`, `deploy` and `train` flows against the session's Prefect
server; the address cases run the spec loader under an audit hook that records every socket
connect and name lookup.
"""
from __future__ import annotations

import copy
import re
import socket
import sys
from contextlib import contextmanager

import pytest
import yaml

from cloudhop.data import ADDRESS_ENV, DataError, dask_address
from cloudhop.spec import SpecError, load_spec, parse_spec

BASE = yaml.safe_load(open("specs/flights.yaml"))
SENTINEL = "hostile-Sentinel-0c1d2e3f"

# -- no connection is tried: every socket connect and name lookup, recorded while armed ---------------
_NET_EVENTS = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
               "socket.gethostbyaddr", "socket.getnameinfo"}
_seen: list[tuple[str, tuple]] = []
_armed = [False]


def _audit(event: str, args: tuple) -> None:
    if _armed[0] and event in _NET_EVENTS:
        _seen.append((event, args))


sys.addaudithook(_audit)  # audit hooks stay for the process: this one records only while armed


@contextmanager
def network_watch():
    _seen.clear()
    _armed[0] = True
    try:
        yield _seen
    finally:
        _armed[0] = False


def test_the_network_watch_sees_a_lookup():
    with network_watch() as seen:
        socket.getaddrinfo("localhost", 80)
    assert seen and seen[0][0] == "socket.getaddrinfo"


# -- the spec cases, through the retrain flow ---------------------------------------------------------
def _set(d: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        d = d[int(p)] if isinstance(d, list) else d.setdefault(p, {})
    d[last] = value


@pytest.fixture
def spec_file(tmp_path):
    """(write(changes) -> spec path, store folder): a spec whose store is a fresh folder."""
    def write(changes: dict) -> str:
        spec = copy.deepcopy(BASE)
        spec["store"] = str(tmp_path / "store")
        spec["targets"] = [{"name": "local", "kind": "local", "options": {"port": 9, "state_dir": str(tmp_path)}}]
        for dotted, value in changes.items():
            _set(spec, dotted, value)
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return str(path)
    return write, tmp_path / "store"


SPEC_CASES = [
    ("store-options-key", {"store": "s3://bucket/cloudhop", "store_options.secret": SENTINEL},
     r"store_options\.secret: credentials are not accepted in a spec; use a credentials block \(store_credentials\)"),
    ("nested-store-option", {"store_options.client_kwargs.aws_secret_access_key": SENTINEL},
     r"store_options\.client_kwargs\.aws_secret_access_key: credentials are not accepted"),
    ("dataset-storage-option", {"dataset.storage_options.account_key": SENTINEL},
     r"dataset\.storage_options\.account_key: credentials are not accepted in a spec; use a credentials block "
     r"\(dataset\.credentials\)"),
    ("dataset-connection-string", {"dataset.storage_options.connection_string": SENTINEL},
     r"dataset\.storage_options\.connection_string: credentials are not accepted"),
    ("target-option", {"targets.0.options.client_secret": SENTINEL},
     r"targets\.0\.options\.client_secret: credentials are not accepted in a spec; use a credentials block "
     r"\(targets\.0\.options\.credentials\)"),
    ("block-field-with-a-value", {"store": "s3://bucket/x", "store_credentials": {"block": "prod", "secret": SENTINEL}},
     r"store_credentials: names a credentials block \(a name\), it cannot hold values"),
    ("userinfo-in-store-uri", {"store": f"s3://AKIAIOSFODNN7EXAMPLE:{SENTINEL}@bucket/cloudhop"},
     r"store: a URI with a user and password in it"),
    ("signed-url-dataset", {"dataset.uri": f"s3://bucket/f.parquet?X-Amz-Signature={SENTINEL}"},
     r"dataset\.uri: a URI with a credential in its query \(X-Amz-Signature=\.\.\.\)"),
    ("sas-dataset", {"dataset.uri": f"az://container/f.parquet?sv=2022-11-02&sig={SENTINEL}"},
     r"dataset\.uri: a URI with a credential in its query \(sig=\.\.\.\)"),
    ("ftp-scheme", {"dataset.uri": "ftp://files.example.com/f.csv"},
     r"dataset\.uri: scheme ftp:// is not accepted"),
    ("http-off", {"dataset.uri": "https://data.example.com/f.csv"},
     r"dataset\.uri: https:// datasets are off"),
    ("plain-tcp-dask", {"dataset.dask_address": "tcp://10.1.2.3:8786"},
     r"dataset\.dask_address: tcp://10\.1\.2\.3 is not loopback: a remote scheduler needs TLS"),
]


@pytest.mark.parametrize("changes,error", [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES])
def test_a_hostile_spec_is_refused_before_anything_is_written(prefect_api_url, spec_file, changes, error):
    from flows.retrain import retrain

    write, store = spec_file
    with pytest.raises(SpecError, match=error) as e:
        retrain(spec=write(changes), reason="hostile spec")
    assert SENTINEL not in str(e.value)
    assert not store.exists()


OVERRIDE_CASES = [
    ("store", {"store": "s3://attacker/bucket"}, r"overrides\.store: cannot be overridden in a run"),
    ("targets", {"targets": [{"name": "x", "kind": "local"}]}, r"overrides\.targets: cannot be overridden"),
    ("image", {"targets.0.options.image": "attacker/image:latest"},
     r"overrides\.targets\.0\.options\.image: cannot be overridden"),
    ("credentials-block", {"store_credentials": {"block": "aws-credentials/other"}},
     r"overrides\.store_credentials\.block: cannot be overridden"),
    ("nested-credential", {"dataset": {"storage_options": {"token": SENTINEL}}},
     r"overrides\.dataset\.storage_options\.token: credentials are not accepted"),
    ("compute", {"compute.catalog": "/tmp/clouds.yaml"}, r"overrides\.compute\.catalog: cannot be overridden"),
]


@pytest.mark.parametrize("overrides,error", [c[1:] for c in OVERRIDE_CASES], ids=[c[0] for c in OVERRIDE_CASES])
def test_a_forbidden_retrain_override_is_refused(prefect_api_url, spec_file, overrides, error):
    from flows.retrain import retrain

    write, store = spec_file
    with pytest.raises(SpecError, match=error):
        retrain(spec=write({}), overrides=overrides, reason="hostile override")
    assert not store.exists()


def test_deploy_and_train_refuse_the_same_overrides(prefect_api_url, spec_file):
    from flows.deploy import deploy
    from flows.train import train

    write, store = spec_file
    path = write({})
    with pytest.raises(SpecError, match=r"overrides\.targets: cannot be overridden"):
        deploy(spec=path, overrides={"targets": [{"name": "evil", "kind": "local", "options": {"port": 1}}]})
    with pytest.raises(SpecError, match=r"overrides\.store: cannot be overridden"):
        train(spec=path, overrides={"store": "/tmp/elsewhere"})
    assert not store.exists()


def test_allowed_overrides_and_plain_options_still_load():
    s = parse_spec({**BASE, "store": "s3://bucket/x",
                    "store_options": {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "x"},
                                      "s3_additional_kwargs": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "k"}},
                    "store_credentials": {"block": "aws-credentials/prod"}},
                   overrides={"model.max_epochs": 1, "split": {"holdout_end": "2013-12-31"}, "dataset.limit": 10,
                              "evaluation.promote_margin": 0.01, "drift.threshold": 0.5})
    assert s.model.max_epochs == 1 and s.dataset.limit == 10 and s.store_credentials.block == "aws-credentials/prod"


# -- a drift event's parameters -------------------------------------------------------------------------
@pytest.fixture
def spec_folder(tmp_path, monkeypatch):
    """A spec folder (CLOUDHOP_SPECS) holding one spec, and that spec's store."""
    folder = tmp_path / "specs"
    folder.mkdir()
    spec = {**copy.deepcopy(BASE), "store": str(tmp_path / "store")}
    (folder / "flights.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    monkeypatch.setenv("CLOUDHOP_SPECS", str(folder))
    return folder, tmp_path / "store"


def test_an_event_with_a_spec_path_of_its_own_is_refused(prefect_api_url, spec_folder, tmp_path):
    from flows.retrain import retrain

    folder, store = spec_folder
    evil = tmp_path / "evil.yaml"
    evil.write_text(yaml.safe_dump({**BASE, "store": str(tmp_path / "evil-store")}, sort_keys=False))
    own = re.escape(str(folder / "flights.yaml"))
    with pytest.raises(SpecError, match=rf"model 'flights-delay' is specified by {own}; a different spec path .* "
                                        r"is not accepted with a model name"):
        retrain(spec=str(evil), model="flights-delay", reason="drift event x")
    assert not store.exists() and not (tmp_path / "evil-store").exists()


def test_an_event_naming_an_unknown_model_is_refused(prefect_api_url, spec_folder):
    from flows.retrain import retrain

    _, store = spec_folder
    with pytest.raises(SpecError, match=r"model 'other-model': 0 specs in .* are named so \(models there: "
                                        r"flights-delay\)"):
        retrain(spec=None, model="other-model", reason="drift event x")
    with pytest.raises(SpecError, match=r"model '\.\./flights' is not a model name"):
        retrain(spec=None, model="../flights", reason="drift event x")
    assert not store.exists()


def test_an_event_window_or_reason_with_a_credential_is_refused(prefect_api_url, spec_folder):
    from prefect.exceptions import ParameterTypeError

    from flows.retrain import retrain

    _, store = spec_folder
    with pytest.raises(ParameterTypeError, match=r"window\.aws_secret_access_key"):
        retrain(spec=None, model="flights-delay",
                window={"validation_start": "2013-06-01", "aws_secret_access_key": SENTINEL})
    with pytest.raises(SpecError, match=r"reason: a URI with a user and password in it"):
        retrain(spec=None, model="flights-delay", reason=f"drift at https://u:{SENTINEL}@host/x")
    assert not store.exists()


# -- addresses: refused before any connection or lookup ------------------------------------------------
ADDRESS_CASES = [
    ("metadata-ip", "http://169.254.169.254/latest/meta-data/", r"169\.254\.169\.254 is a cloud metadata service"),
    ("metadata-name", "http://metadata.google.internal/computeMetadata/v1/",
     r"metadata\.google\.internal is a cloud metadata service"),
    ("metadata-decimal", "http://2852039166/latest", r"169\.254\.169\.254 is a cloud metadata service"),
    ("metadata-ipv6", "http://[fd00:ec2::254]/latest", r"fd00:ec2::254 is a cloud metadata service"),
    ("alibaba-metadata", "http://100.100.100.200/latest", r"100\.100\.100\.200 is a cloud metadata service"),
    ("link-local", "https://169.254.10.1/f.csv", r"169\.254\.10\.1 is a link-local address"),
    ("link-local-v6", "https://[fe80::1]/f.csv", r"fe80::1 is a link-local address"),
    ("private", "https://10.0.0.7/f.csv", r"10\.0\.0\.7 is a private or loopback address"),
    ("private-192", "http://192.168.1.1/f.csv", r"192\.168\.1\.1 is a private or loopback address"),
    ("loopback", "http://127.0.0.1:8765/admin/load", r"127\.0\.0\.1 is a private or loopback address"),
]


@pytest.mark.parametrize("uri,error", [c[1:] for c in ADDRESS_CASES], ids=[c[0] for c in ADDRESS_CASES])
def test_a_forbidden_dataset_address_is_refused_without_a_connection(tmp_path, uri, error):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**BASE, "dataset": {"uri": uri, "allow_http": True},
                                    "store": str(tmp_path / "store")}, sort_keys=False))
    with network_watch() as seen, pytest.raises(SpecError, match=rf"dataset\.uri: {error}"):
        load_spec(path)
    assert seen == []
    assert not (tmp_path / "store").exists()


def test_an_endpoint_on_a_metadata_address_is_refused_without_a_connection():
    with network_watch() as seen, pytest.raises(SpecError, match=r"store_options\.client_kwargs\.endpoint_url: "
                                                                 r"169\.254\.169\.254 is a cloud metadata service"):
        parse_spec({**BASE, "store": "s3://b/x",
                    "store_options": {"client_kwargs": {"endpoint_url": "http://169.254.169.254"}}})
    assert seen == []


def test_a_public_http_dataset_loads_only_when_enabled(monkeypatch):
    spec = {**BASE, "dataset": {"uri": "https://data.example.com/flights.csv"}}
    with pytest.raises(SpecError, match="https:// datasets are off"):
        parse_spec(spec)
    monkeypatch.setenv("CLOUDHOP_ALLOW_HTTP_DATASETS", "1")
    with network_watch() as seen:
        assert parse_spec(spec).dataset.uri.startswith("https://")
    assert seen == []


def test_plain_tcp_dask_from_the_environment_is_refused_without_a_connection(monkeypatch, prefect_api_url,
                                                                              spec_file, tmp_path):
    from cloudhop.data import flights_table
    from flows.retrain import retrain

    monkeypatch.setenv(ADDRESS_ENV, "tcp://10.9.9.9:8786")
    with network_watch() as seen, pytest.raises(DataError, match=rf"{ADDRESS_ENV}: tcp://10\.9\.9\.9 is not loopback"):
        dask_address(parse_spec(BASE))
    assert seen == []
    data = tmp_path / "flights.parquet"
    flights_table().head(3000).to_parquet(data)
    write, store = spec_file
    with pytest.raises(DataError, match=r"tcp://10\.9\.9\.9 is not loopback"):
        retrain(spec=write({"dataset.uri": str(data), "dataset.engine": "dask"}), reason="remote dask")
    assert not store.exists()


def test_tls_dask_needs_certificates(monkeypatch):
    from cloudhop.data import task_runner_options

    monkeypatch.setenv(ADDRESS_ENV, "tls://10.9.9.9:8786")
    assert dask_address(parse_spec(BASE)) == "tls://10.9.9.9:8786"
    with network_watch() as seen, pytest.raises(DataError, match="needs TLS credentials"):
        task_runner_options(parse_spec(BASE))
    assert seen == []
    import dask

    tls = {"distributed.comm.tls.ca-file": "/etc/cloudhop/ca.pem", "distributed.comm.tls.client.cert": "/c.pem"}
    with dask.config.set(tls):
        opts = task_runner_options(parse_spec(BASE))
    assert opts["address"] == "tls://10.9.9.9:8786"
    assert opts["client_kwargs"]["security"].tls_ca_file == "/etc/cloudhop/ca.pem"


# -- resolved credentials stay out of every serialized form of the spec ---------------------------------
def test_resolved_credentials_never_serialize():
    s = parse_spec({**BASE, "store": "s3://bucket/x", "store_options": {"client_kwargs": {"region_name": "r"}},
                    "store_credentials": {"block": "aws-credentials/prod"}})
    r = s.with_credentials(store={"key": "AKIA", "secret": SENTINEL, "client_kwargs": {"endpoint_url": "http://h"}},
                           dataset={"secret": SENTINEL})
    assert r.store_fs_options == {"key": "AKIA", "secret": SENTINEL,
                                  "client_kwargs": {"region_name": "r", "endpoint_url": "http://h"}}
    assert r.dataset.fs_options["secret"] == SENTINEL and "secret" not in s.store_fs_options
    for form in (repr(r), str(r.model_dump()), r.model_dump_json(), str(r.manifest_copy()), r.spec_hash()):
        assert SENTINEL not in form
    assert r.spec_hash() == s.spec_hash()
    assert r.manifest_copy()["store_options"] == {"client_kwargs": "<redacted>"}
