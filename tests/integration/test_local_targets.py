"""Two models served on one machine under the same target name: real server processes that
start, swap and stop independently (their state files are keyed by model and target)."""
from __future__ import annotations

import pytest

from cloudhop.providers.local.target import LocalTarget, pid_alive
from cloudhop.registry import Registry
from cloudhop.store import Store
from cloudhop.testing import CATEGORICAL, NUMERIC, make_frame, publish_version
from cloudhop.training.preprocess import Preprocessor
from ops.net import free_port

pytestmark = pytest.mark.integration


def test_two_models_under_one_target_name_start_swap_and_stop_independently(tmp_path):
    store = Store(str(tmp_path / "store"))
    pre = Preprocessor.fit(make_frame(200, seed=0), CATEGORICAL, NUMERIC)
    for model in ("alpha", "beta"):
        reg = Registry(store, model)
        for seed in (1, 2):
            publish_version(reg, pre, seed, make_frame(10, seed=3))
    state = tmp_path / "serving"
    a, b = (LocalTarget("local", store.uri, m, port=free_port(), state_dir=state, server_args=["--no-prediction-log"])
            for m in ("alpha", "beta"))
    try:
        a.roll_out("1")
        b.roll_out("1")
        assert len({a.pid_path, b.pid_path, a.log_path, b.log_path, a.token_path, b.token_path}) == 6
        pid_a, pid_b = int(a.pid_path.read_text()), int(b.pid_path.read_text())
        assert pid_a != pid_b and pid_alive(pid_a) and pid_alive(pid_b)
        assert a.health()["model"] == "alpha" and b.health()["model"] == "beta"

        # a hot swap of one uses its own admin token and leaves the other alone
        b.roll_out("2")
        assert (a.live_version(), b.live_version()) == ("1", "2")

        # stopping the first started stops it, not the one started last
        assert a.stop()
        assert not pid_alive(pid_a) and pid_alive(pid_b)
        assert a.live_version() is None and b.live_version() == "2"
        assert not a.pid_path.exists() and b.pid_path.exists() and b.token_path.exists()

        # and it starts again beside the other
        a.roll_out("2")
        assert (a.live_version(), b.live_version()) == ("2", "2") and int(b.pid_path.read_text()) == pid_b
    finally:
        for t in (a, b):
            t.stop()
            t.close()
    assert not any(state.glob("*.pid"))
