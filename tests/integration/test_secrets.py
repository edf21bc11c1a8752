"""A known secret, held only in a Prefect credentials block, is found nowhere a run leaves things.

The block (prefect-aws AwsCredentials; moto's S3 server accepts any key) is the store's and the
dataset's credentials; the process has no other AWS credentials, so the run can only read and
write the bucket through the block. `retrain` runs against the session's Prefect server and
deploys to a local server that serves a few requests. Then the secret is searched for in the
flow run's logs, parameters, task runs and artifacts (read back through the Prefect API), every
object in the bucket (manifests, deploy records, aliases, prediction log, validation results),
and the served process's log file. The same search finds it in the block itself.
"""
from __future__ import annotations

import base64
import copy
import io
import json
import time

import boto3
import httpx
import pandas as pd
import pytest
import yaml

from cloudhop.data import flights_table
from cloudhop.predlog import log_prefix
from cloudhop.providers.local.target import LocalTarget
from cloudhop.registry import Registry
from cloudhop.store import Store
from ops.net import free_port

pytestmark = pytest.mark.integration

SENTINEL = "Sentinel9f3c2b71QzXsecretValue"
KEY_ID = "AKIACLOUDHOPSENTINEL"
BLOCK = "cloudhop-sentinel"
BUCKET = "cloudhop-secrets"


def _found_in(where: str, text: str | bytes) -> list[str]:
    """`where` when `text` holds the sentinel, as written or base64-encoded."""
    data = text if isinstance(text, bytes) else text.encode()
    forms = (SENTINEL.encode(), base64.b64encode(SENTINEL.encode()).rstrip(b"="))
    return [where] if any(f in data for f in forms) else []


def _object_texts(s3, key: str) -> list[bytes]:
    """An object's bytes, and for Parquet its decoded rows too (compressed strings hide in the raw bytes)."""
    raw = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    out = [raw]
    if key.endswith(".parquet"):
        out.append(pd.read_parquet(io.BytesIO(raw)).to_json(orient="records").encode())
    return out


@pytest.fixture
def no_ambient_aws(monkeypatch, tmp_path):
    """No AWS credentials but the block's: no env keys, no config or credentials files."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_the_sentinel_secret_is_found_nowhere(prefect_api_url, moto_url, tmp_path, no_ambient_aws):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, LogFilter
    from prefect_aws import AwsCredentials

    from flows.retrain import retrain

    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id=KEY_ID,
                      aws_secret_access_key=SENTINEL)
    s3.create_bucket(Bucket=BUCKET)
    buf = io.BytesIO()
    flights_table().iloc[::24].reset_index(drop=True).to_parquet(buf)
    s3.put_object(Bucket=BUCKET, Key="data/flights.parquet", Body=buf.getvalue())
    AwsCredentials(aws_access_key_id=KEY_ID, aws_secret_access_key=SENTINEL,
                   region_name="us-east-1").save(BLOCK, overwrite=True)

    port = free_port()
    endpoint = {"client_kwargs": {"endpoint_url": moto_url, "region_name": "us-east-1"}}
    ref = {"block": f"aws-credentials/{BLOCK}"}
    spec = copy.deepcopy(yaml.safe_load(open("specs/flights.yaml")))
    spec["dataset"] = {"uri": f"s3://{BUCKET}/data/flights.parquet", "storage_options": endpoint, "credentials": ref}
    spec.update(store=f"s3://{BUCKET}/store", store_options=endpoint, store_credentials=ref)
    spec["model"].update(max_epochs=1, checkpoint_every=50, hidden=[16])
    # A network of one epoch on a 1/24 slice scores within a thousandth of the linear baseline either way; this test is
    # about credentials, not the model's quality: the baseline gate is off (tests/integration/test_gates.py tests it).
    spec["evaluation"]["require_beat_baseline"] = False
    spec["targets"] = [{"name": "local", "kind": "local", "options": {
        "port": port, "state_dir": str(tmp_path / "serving"), "server_args": ["--log-flush-seconds", "0.5"]}}]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert SENTINEL not in path.read_text()

    target = LocalTarget("local", spec["store"], spec["name"], port=port, state_dir=tmp_path / "serving")
    try:
        state = retrain(spec=str(path), reason="sentinel", return_state=True)
        assert state.is_completed(), state
        summary = state.result()
        assert summary["promoted"] and summary["deployed"]["local"]["version"] == "1", summary
        run_id = state.state_details.flow_run_id

        # Served traffic, so the prediction log holds rows.
        store = Store(spec["store"], {**endpoint, "key": KEY_ID, "secret": SENTINEL})
        registry = Registry(store, spec["name"])
        smoke = json.loads(registry.read_file(registry.get("1"), "smoke.json"))
        r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"rows": smoke["rows"][:8]}, timeout=30)
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        while not store.list(log_prefix(spec["name"])):
            assert time.monotonic() < deadline, "the served rows never reached the prediction log"
            time.sleep(0.3)
    finally:
        target.stop()

    found: list[str] = []
    with get_client(sync_client=True) as c:
        logs = c.read_logs(LogFilter(flow_run_id={"any_": [run_id]}))
        assert any("retrain" in log.message for log in logs)  # the search reads the run's real logs
        found += _found_in("flow run logs", "\n".join(log.message for log in logs))
        run = c.read_flow_run(run_id)
        found += _found_in("flow run", run.model_dump_json())
        task_runs = c.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run_id]}))
        assert task_runs
        found += _found_in("task runs", "".join(t.model_dump_json() for t in task_runs))
        artifacts = c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id={"any_": [run_id]}))
        assert len(artifacts) >= 3  # evaluation, version, summary (and more)
        found += [hit for a in artifacts for hit in _found_in(f"artifact {a.key}", a.model_dump_json())]
        block = c.read_block_document_by_name(BLOCK, "aws-credentials", include_secrets=True)

    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])]
    kinds = {k.split("/")[1] for k in keys if k.startswith("store/")}
    assert {"models", "predictions", "runs"} <= kinds, kinds
    assert any(k.endswith("manifest.json") for k in keys) and any("/deploys/" in k for k in keys)
    assert any(k.endswith("validation.json") for k in keys)
    found += [hit for k in keys for text in _object_texts(s3, k) for hit in _found_in(f"s3://{BUCKET}/{k}", text)]
    served_log = target.log_path  # the local server's log, named by model and target
    assert "serving" in served_log.read_text()
    found += _found_in(str(served_log), served_log.read_bytes())

    assert found == []
    # The search itself finds the secret where it is kept: the block, read with its secrets.
    assert _found_in("block", json.dumps(block.data, default=str)) == ["block"]
