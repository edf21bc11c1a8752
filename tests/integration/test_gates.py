"""The gates a new user's dataset meets, through the retrain flow on the session's Prefect server:
the promotion gate (a network that loses to the same-run baseline is registered, not served),
unlabelled rows (dropped and counted), and the terminal's one clear line for a bad spec.

The data is made so that the outcome is known: `y` is x1 XOR x2 (the sign of x1 * x2) until
the holdout, and the opposite in it. A linear baseline cannot see XOR (AUC near 0.5 anywhere);
the network learns it on the training window, so on the holdout it scores well below 0.5.
"""
from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from cloudhop.providers.local.target import LocalTarget
from cloudhop.registry import Registry
from cloudhop.store import Store
from ops.localserver import prefect_env
from ops.net import free_port
from ops.procs import ROOT

pytestmark = pytest.mark.integration

HOLDOUT = "2024-10-01"


def _xor_frame(n: int = 12_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, 365, n)), unit="D")
    x1, x2 = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    xor = (x1 * x2 > 0).astype(np.int64)
    y = np.where(t < pd.Timestamp(HOLDOUT), xor, 1 - xor)
    return pd.DataFrame({"t": t, "x1": x1, "x2": x2, "y": y})


def _spec(root, data, *, port: int, require_beat_baseline: bool = True, nullable_target: bool = False) -> str:
    spec = {
        "name": "xor",
        "dataset": {"uri": str(data)},
        "columns": {"t": {"type": "datetime", "nullable": False, "role": "time"},
                    "x1": {"type": "float", "nullable": False},
                    "x2": {"type": "float", "nullable": False},
                    "y": {"type": "int", "nullable": nullable_target, "categories": [0, 1], "role": "target"}},
        "target": {"column": "y", "task": "binary"},
        "split": {"time_column": "t", "validation_start": "2024-08-01", "holdout_start": HOLDOUT},
        "model": {"hidden": [32, 16], "max_epochs": 6, "patience": 3, "learning_rate": 0.01, "batch_size": 256,
                  "checkpoint_every": 1000},
        "evaluation": {"require_beat_baseline": require_beat_baseline},
        "drift": {"sample_size": 1000},
        "store": str(root / "store"),
        "targets": [{"name": "local", "kind": "local",
                     "options": {"port": port, "state_dir": str(root / "serving"),
                                 "server_args": ["--no-prediction-log"]}}],
    }
    path = root / f"xor-{require_beat_baseline}-{nullable_target}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def _down(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2, trust_env=False)
    except httpx.TransportError:
        return True
    return False


def test_a_network_worse_than_the_baseline_is_registered_but_not_promoted_or_served(tmp_path, prefect_api_url):
    from flows.retrain import retrain

    data = tmp_path / "xor.parquet"
    _xor_frame().to_parquet(data)
    port = free_port()
    s = retrain(spec=_spec(tmp_path, data, port=port), reason="test")
    m = s["metrics"]
    assert m["candidate"]["roc_auc"] < m["baseline"]["roc_auc"] - 0.1, m  # the data does what it is made to
    assert s["version"] == "1" and not s["promoted"] and s["deployed"] is None and s["champion"] is None
    assert s["reason"].startswith("baseline gate failed: roc_auc"), s["reason"]
    reg = Registry(Store(str(tmp_path / "store")), "xor")
    assert reg.versions() == ["1"] and reg.champion() is None
    assert not reg.get("1").manifest.metrics.promote
    assert _down(port)  # nothing new is served

    # the same data with the baseline gate off: the first model is promoted and served
    off = retrain(spec=_spec(tmp_path, data, port=port, require_beat_baseline=False), reason="test")
    target = LocalTarget("local", str(tmp_path / "store"), "xor", port=port, state_dir=tmp_path / "serving")
    try:
        assert off["promoted"] and off["reason"].startswith("first model"), off["reason"]
        assert off["champion"] == off["version"] == "2" and target.live_version() == "2"
    finally:
        target.stop()


def test_unlabelled_rows_are_dropped_and_counted(tmp_path, prefect_api_url):
    from flows.retrain import retrain

    df = _xor_frame(seed=1)
    y = df["y"].astype("Int64")
    unlabelled = np.random.default_rng(2).choice(len(df), 700, replace=False)
    y[unlabelled] = pd.NA
    df["y"] = y
    data = tmp_path / "unlabelled.parquet"
    df.to_parquet(data)
    spec = _spec(tmp_path, data, port=free_port(), require_beat_baseline=False, nullable_target=True)
    s = retrain(spec=spec, reason="test", deploy=False)
    assert s["unlabelled_dropped"] == 700
    man = Registry(Store(str(tmp_path / "store")), "xor").get(s["version"]).manifest
    assert man.dataset.unlabelled_dropped == 700
    assert sum(man.dataset.windows.values()) == len(df) - 700


def test_a_bad_spec_prints_one_clear_line_and_no_traceback(tmp_path, prefect_api_url):
    data = tmp_path / "xor.parquet"
    _xor_frame(2000).to_parquet(data)
    spec = yaml.safe_load(open(_spec(tmp_path, data, port=free_port())))
    spec["model"]["learning_rat"] = 0.1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec))

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flows.retrain", "--spec", str(bad), *extra], cwd=ROOT,
                              env=prefect_env(prefect_api_url), capture_output=True, text=True, timeout=300)

    r = run()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "model.learning_rat: unknown field" in r.stderr
    assert "full report and traceback: http://127.0.0.1:" in r.stderr and "/runs/flow-run/" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    debug = run("--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stdout + debug.stderr
