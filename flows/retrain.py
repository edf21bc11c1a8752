"""retrain: raw data -> validated -> trained -> evaluated -> registered -> served.

Composition only: every step is one task around one cloudhop.pipeline call.
"""
from __future__ import annotations

from datetime import date

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, ConfigDict, Field

from prefect.runtime import flow_run

from cloudhop import telemetry
from cloudhop.pipeline import open_registry
from cloudhop.registry import AliasError
from tasks.deploy import run_actor
from tasks.failover import dataset_bytes, place_task, train_with_failover_task
from tasks.pipeline import (check_run_inputs, drift_task, evaluate_task, load_spec_task, open_table_task,
                            register_task, run_executor, smoke_task, spec_for_run, split_task, train_task,
                            validate_task)

# With OTEL_EXPORTER_OTLP_ENDPOINT set, Prefect's spans of this flow run and of each stage (task run)
# go out over OTLP; unset, nothing is imported.
telemetry.setup("cloudhop-retrain")


class Window(BaseModel):
    """Optional time windows that replace the spec's split for this run (no other field is accepted)."""
    model_config = ConfigDict(extra="forbid")

    train_start: date | None = Field(None, description="first day of the training window")
    validation_start: date | None = Field(None, description="first day of the validation window")
    holdout_start: date | None = Field(None, description="first day of the holdout window")
    holdout_end: date | None = Field(None, description="day after the holdout window")


def _overrides(window: Window | None, max_epochs: int | None, dataset_limit: int | None,
               dataset_uri: str | None, extra: dict | None) -> dict:
    o: dict = dict(extra or {})
    if window is not None:
        for k, v in window.model_dump().items():
            if v is not None:
                o[f"split.{k}"] = v.isoformat()
    if max_epochs:
        o["model.max_epochs"] = max_epochs
    if dataset_limit:
        o["dataset.limit"] = dataset_limit
    if dataset_uri:
        o["dataset.uri"] = dataset_uri
    return o


@flow(name="retrain", log_prints=True)
def retrain(
    spec: str | None = "specs/flights.yaml",
    window: Window | None = None,
    max_epochs: int | None = None,
    dataset_limit: int | None = None,
    dataset_uri: str | None = None,
    deploy: bool = True,
    reason: str = "manual",
    overrides: dict | None = None,
    model: str | None = None,
) -> dict:
    """Retrain a model from its spec: load, validate, train, evaluate, register, deploy.

    Args:
        spec: Path to the pipeline spec (YAML); empty when `model` names the spec.
        window: Time windows that replace the spec's split for this run (empty fields keep the spec's).
        max_epochs: Cap on training epochs; empty keeps the spec's.
        dataset_limit: Use a seeded sample of N rows spread over the whole dataset, for quick runs.
        dataset_uri: Read this dataset (any fsspec URI) instead of the spec's.
        deploy: Roll a promoted model out to the spec's serving targets.
        reason: Why this run happens: manual, schedule or a drift event.
        overrides: Other spec fields to override, as dotted keys, e.g. {"model.batch_size": 2048}; only
            training knobs, windows, the dataset and thresholds (cloudhop.guard.OVERRIDABLE).
        model: The model to retrain (a drift event names it): its spec is the one named so in the spec
            folder ($CLOUDHOP_SPECS, else specs/); a `spec` given with it must be that file.
    """
    logger = get_run_logger()
    check_run_inputs(reason=reason)
    spec = spec_for_run(spec, model)
    ov = _overrides(window, max_epochs, dataset_limit, dataset_uri, overrides)
    s = load_spec_task(spec, ov)
    if model and model != s.name:
        raise ValueError(f"retrain was asked for model {model!r} but spec {spec} describes {s.name!r}")
    logger.info("retrain %s (%s)", s.name, reason)
    table, fp = open_table_task(s)
    with run_executor(table, s) as ex:
        validation = validate_task(table, s, ex)
        windows = split_task(table, s, ex)
        drift = drift_task(s, windows, ex)
    data_bytes = dataset_bytes(s, table) if s.compute.mode == "pools" else 0
    del table
    registry = open_registry(s)
    attempts = placement = cost = None
    if s.compute.mode == "pools":
        placement = place_task(s, data_bytes, windows.sizes()["train"] * s.model.max_epochs)
        trained, attempts, cost = train_with_failover_task(s, placement, str(flow_run.get_id() or "adhoc"))
    else:
        trained = train_task(s, windows, fp)
    evaluation = evaluate_task(s, windows, trained, registry)
    smoke = smoke_task(s, windows, trained)
    mv = register_task(s, registry, trained, evaluation, validation, drift, smoke, fp, windows, cost)

    deployed = None
    if evaluation.promote:
        if deploy:
            from flows.deploy import deploy as deploy_flow

            # The deploy flow's steps, as tasks of this run: the same rollout and rollback logic
            # as the `deploy` deployment, without a child flow run per retrain (its creation and
            # its heartbeat thread cost about a second).
            deployed = deploy_flow.fn(spec=spec, version=mv.version, overrides=ov or None)
        try:
            registry.acting_as(run_actor()).set_alias("champion", mv.version, run_id=mv.manifest.run_id,
                                                      reason=reason)
        except AliasError as e:  # a newer version became champion while this run trained: it stays
            get_run_logger().warning("%s", e)
    champion = registry.alias("champion")  # none yet when the first version did not pass the gate
    summary = {
        "model": s.name, "version": mv.version, "promoted": evaluation.promote, "reason": evaluation.reason,
        "unlabelled_dropped": windows.unlabelled_dropped,
        "champion": champion["version"] if champion else None,
        "metrics": {"candidate": evaluation.candidate, "champion": evaluation.champion,
                    "baseline": evaluation.baseline},
        "drift": drift.summary(), "training": trained.info, "attempts": attempts,
        "placement": placement.table() if placement else None, "cost": cost, "deployed": deployed,
        "store": registry.store.url(mv.prefix),
    }
    create_markdown_artifact(key=f"{s.name}-summary", markdown=_summary_md(summary), description="retrain summary")
    return summary


def _summary_md(s: dict) -> str:
    m = s["metrics"]
    rows = "\n".join(
        f"| {k} | {v:.4f} | {'' if m['champion'] is None else format(m['champion'][k], '.4f')} | {m['baseline'][k]:.4f} |"
        for k, v in m["candidate"].items())
    d = s["drift"]
    return (f"# {s['model']} v{s['version']} ({'promoted' if s['promoted'] else 'not promoted'})\n\n{s['reason']}\n\n"
            f"| metric | candidate | champion | baseline |\n|---|---|---|---|\n{rows}\n\n"
            f"Drift share {d['share']:.3f}; drifted columns: {', '.join(d['drifted_columns']) or 'none'}\n\n"
            f"Unlabelled rows dropped: {s['unlabelled_dropped']}\n\n"
            f"Trained on {s['training'].get('where')} ({s['training'].get('device')}), "
            f"{s['training'].get('steps')} steps. Artifacts: `{s['store']}`\n" + _cost_md(s["cost"]))


def _cost_md(cost: dict | None) -> str:
    """The training attempts' cost as a table (none for in-process training)."""
    if not cost:
        return ""
    rows = "\n".join(f"| {a['cloud']} #{a['number']} | {a['outcome']} | {a['offer'] or ''} | "
                     f"{a['price_per_hour']:.4f} | {a['billed_seconds']:.1f} | {a['egress_cost']:.4f} | "
                     f"{a['cost']:.4f} |" for a in cost["attempts"])
    return (f"\n## Training cost: ${cost['total']:.4f} ({cost['currency']}), wasted ${cost['wasted']:.4f}\n\n"
            f"| attempt | outcome | offer | $/hour | billed s | egress $ | cost $ |\n|---|---|---|---|---|---|---|\n"
            f"{rows}\n")


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os

    import yaml

    from flows.cli import run_flow

    p = argparse.ArgumentParser(description="run the retrain flow once, in this process, against PREFECT_API_URL")
    p.add_argument("--spec", default="specs/flights.yaml")
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--limit", type=int, help="use a seeded sample of N rows spread over the whole dataset")
    p.add_argument("--no-deploy", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field by its dotted key, the value read as YAML "
                        "(only fields a run may override, e.g. --set model.batch_size=1024)")
    p.add_argument("--debug", action="store_true", help="print the traceback of a failure in the terminal too")
    a = p.parse_args(argv)
    overrides = {}
    for item in a.set:
        key, eq, value = item.partition("=")
        if not eq or not key:
            p.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    s = run_flow(retrain, debug=a.debug, spec=a.spec, max_epochs=a.max_epochs, dataset_limit=a.limit,
                 deploy=not a.no_deploy, overrides=overrides or None)
    api = os.environ.get("PREFECT_API_URL", "")
    ui = api[: -len("/api")] if api.endswith("/api") else api
    m = s["metrics"]
    print()
    print(f"Prefect UI:   {ui or '(ephemeral: no UI)'}   (flow runs -> retrain)")
    print(f"Model:        {s['model']} v{s['version']} ({'promoted to champion' if s['promoted'] else 'not promoted'}); "
          + (f"champion is v{s['champion']}" if s["champion"] else "no champion yet: nothing served"))
    print(f"Why:          {s['reason']}")
    if s["unlabelled_dropped"]:
        print(f"Unlabelled:   {s['unlabelled_dropped']} rows without a target value dropped")
    print(f"{'metric':10} {'candidate':>10} {'champion':>10} {'baseline':>10}")
    for k, v in m["candidate"].items():
        ch = "" if m["champion"] is None else f"{m['champion'][k]:.4f}"
        print(f"{k:10} {v:>10.4f} {ch:>10} {m['baseline'][k]:>10.4f}")
    d = s["drift"]
    print(f"Drift:        share {d['share']:.3f}, drifted columns: {', '.join(d['drifted_columns']) or 'none'}")
    t = s["training"]
    print(f"Training:     {t.get('steps')} steps on {t.get('where')} ({t.get('device')}), {t.get('samples_per_s')} samples/s")
    if s["cost"]:
        c = s["cost"]
        print(f"Cost:         ${c['total']:.4f} over {len(c['attempts'])} attempt(s), ${c['wasted']:.4f} wasted")
    print(f"Artifacts:    {s['store']}")
    for name, dep in (s.get("deployed") or {}).items():
        print(f"Serving:      {name} runs v{dep['version']} ({dep.get('url', '')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
