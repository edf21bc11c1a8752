"""`cloudhop` command line: look into the registry and run library pieces. No orchestrator here."""
from __future__ import annotations

import argparse
import json
import os
import sys

from cloudhop.registry import Registry, RegistryError
from cloudhop.registry.audit import AuditLog
from cloudhop.registry.signing import SigningError, new_key_pair, public_key_from_env
from cloudhop.spec import SpecError, load_spec
from cloudhop.store import Store

__all__ = ["main"]


def _registry(spec_path: str) -> Registry:
    s = load_spec(spec_path)
    return Registry(Store(s.store, s.store_options), s.name, public_key=public_key_from_env())


def _fmt_metrics(m: dict | None) -> str:
    if not m:
        return ""
    return " ".join(f"{k}={v:.4f}" for k, v in m.items())


def cmd_versions(a) -> int:
    reg = _registry(a.spec)
    aliases = reg.aliases()
    by_version: dict[str, list[str]] = {}
    for name, rec in aliases.items():
        by_version.setdefault(rec["version"], []).append(name)
    rows = []
    for v in reg.versions():
        mv = reg.get(v)
        m = mv.manifest
        rows.append((v, m.created_at or "", ",".join(sorted(by_version.get(v, []))),
                     m.trained_where or "", _fmt_metrics(m.metrics.candidate)))
    if not rows:
        print(f"model {reg.name} has no versions in {reg.store.uri}")
        return 0
    head = ("version", "created", "aliases", "trained", "holdout metrics")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_show(a) -> int:
    reg = _registry(a.spec)
    mv = reg.get(a.version)
    m = mv.manifest.to_dict()
    if not a.full:
        m.pop("spec", None)
        m.get("training", {}).pop("history", None)
    print(json.dumps(m, indent=2, sort_keys=True, default=str))  # the order of manifest.json
    return 0


def cmd_verify(a) -> int:
    reg = _registry(a.spec)
    problems = reg.verify(a.version)
    for p in problems:
        print(p)
    print(f"{reg.name} v{reg.resolve(a.version)}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def cmd_replay(a) -> int:
    from cloudhop.data import DataError
    from cloudhop.replay import ReplayError, parse_shift, replay, window_rows

    spec = load_spec(a.spec, {"dataset.uri": a.data} if a.data else None)
    try:
        shifts = [parse_shift(s) for s in a.shift]
        rows = window_rows(spec, a.start, a.end, a.max_rows, a.seed, with_target=a.labels)
        if shifts:
            from cloudhop.replay import apply_shifts
            rows = apply_shifts(rows, shifts, spec)
        print(f"replaying {len(rows)} rows of {spec.name} ({a.start} .. {a.end}"
              f"{', shifted ' + ' '.join(map(str, shifts)) if shifts else ''}) to {a.url} at {a.rate:g} rows/s")
        stats = replay(rows[spec.features], a.url, a.rate, a.batch)
    except (ReplayError, DataError) as e:
        print(f"cloudhop replay: {e}", file=sys.stderr)
        return 2
    print(stats.summary())
    if a.labels and stats.rows:
        from cloudhop.drift.monitor import write_labels

        store = Store(spec.store, spec.store_options)
        labels = rows[spec.target.column].iloc[stats.answered].tolist()
        key = write_labels(store, spec.name, stats.row_ids, labels)
        print(f"wrote {len(labels)} labels of the answered rows to {store.url(key)}")
    return 0


def _store_of(a) -> Store:
    """`--store` when given, else the store of `--spec`."""
    if a.store:
        return Store(a.store)
    s = load_spec(a.spec)
    return Store(s.store, s.store_options)


def cmd_audit(a) -> int:
    store = _store_of(a)
    events = AuditLog(store).events(a.model)
    if a.json:
        for e in events:
            print(json.dumps(e, sort_keys=True, default=str))
        return 0
    if not events:
        print(f"no audit events{' for ' + a.model if a.model else ''} in {store.uri}")
        return 0
    for e in events:
        actor = ",".join(f"{k}={v}" for k, v in sorted((e.get("actor") or {}).items()))
        move = f"{e.get('from') or '-'} -> {e.get('to') or '-'}"
        extra = "" if e.get("ok", True) else "  FAILED"
        reason = f"  ({e['reason']})" if e.get("reason") else ""
        print(f"{e.get('at')}  {e.get('model')}  {e.get('action'):<9}  {e.get('subject')}  {move}  "
              f"by {actor}{extra}{reason}")
    return 0


def cmd_cost(a) -> int:
    """Totals of what training attempts cost, from the store's cost records and manifests."""
    from cloudhop.costs import CostRecordError, attempt_rows, cost_chart_png, totals

    store = _store_of(a)
    try:
        rows = attempt_rows(store, [a.model] if a.model else None, a.since, public_key=public_key_from_env())
    except CostRecordError as e:
        print(f"cloudhop cost: {e}", file=sys.stderr)
        return 2
    if a.csv:
        rows.to_csv(a.csv, index=False)
    if a.parquet:
        rows.to_parquet(a.parquet, index=False)
    if a.chart:
        with open(a.chart, "wb") as f:
            f.write(cost_chart_png(rows))
    scope = f"{a.model or 'every model'}{f' since {a.since}' if a.since else ''} in {store.uri}"
    if rows.empty:
        print(f"no priced training attempts for {scope}")
        return 0
    failed = int(rows["wasted"].sum())
    print(f"{rows['run_key'].nunique()} retrains, {len(rows)} training attempts ({failed} did not complete) "
          f"for {scope}, {rows['day'].min()} .. {rows['day'].max()}; US dollars")
    print(totals(rows, a.by).to_string(index=False))
    for what, path in (("attempts (CSV)", a.csv), ("attempts (Parquet)", a.parquet), ("chart", a.chart)):
        if path:
            print(f"{what}: {path}")
    return 0


def _day(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def cmd_keygen(a) -> int:
    """A new Ed25519 pair: <dir>/signing.pem (private, mode 600) and <dir>/signing.pub."""
    private, public = new_key_pair()
    os.makedirs(a.dir, exist_ok=True)
    priv_path, pub_path = os.path.join(a.dir, "signing.pem"), os.path.join(a.dir, "signing.pub")
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite a key
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    with open(pub_path, "wb") as f:
        f.write(public)
    print(f"private key: {priv_path} (for publishers: CLOUDHOP_SIGNING_KEY)\n"
          f"public key:  {pub_path} (for servers and deployers: CLOUDHOP_PUBLIC_KEY)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cloudhop", description="cloudhop: one ML pipeline across several clouds")
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("versions", help="list a model's versions and aliases")
    v.add_argument("spec", nargs="?", default="specs/flights.yaml")
    v.set_defaults(func=cmd_versions)
    s = sub.add_parser("show", help="print a version's manifest")
    s.add_argument("version", nargs="?", default="champion", help="number, 'latest' or an alias")
    s.add_argument("--spec", default="specs/flights.yaml")
    s.add_argument("--full", action="store_true", help="include the spec and the training history")
    s.set_defaults(func=cmd_show)
    c = sub.add_parser("verify", help="check every file of a version against its manifest's sha256")
    c.add_argument("version", nargs="?", default="champion")
    c.add_argument("--spec", default="specs/flights.yaml")
    c.set_defaults(func=cmd_verify)
    r = sub.add_parser("replay", help="send a dataset window's rows to a serving endpoint at a given rate")
    r.add_argument("--spec", default="specs/flights.yaml")
    r.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8765")
    r.add_argument("--start", required=True, help="first time of the window (the spec's time column)")
    r.add_argument("--end", required=True, help="end of the window (excluded)")
    r.add_argument("--rate", type=float, default=500.0, help="rows per second at most (default 500)")
    r.add_argument("--batch", type=int, default=100, help="rows per request (default 100)")
    r.add_argument("--shift", action="append", default=[], metavar="COL=+K",
                   help="change a feature: col=+k, col=-k, col=*k or col=value (repeatable)")
    r.add_argument("--max-rows", type=int, help="send a seeded sample of this many rows of the window")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--data", help="read this dataset (fsspec URI) instead of the spec's")
    r.add_argument("--labels", action="store_true",
                   help="then write the rows' true labels to the store (labels/<model>/), as if they arrived later")
    r.set_defaults(func=cmd_replay)
    au = sub.add_parser("audit", help="print the audit trail: promotions, alias moves, deploys, rollbacks, swaps")
    au.add_argument("--model", help="only this model's events (default: every model in the store)")
    au.add_argument("--spec", default="specs/flights.yaml", help="the spec whose store holds the trail")
    au.add_argument("--store", help="read this store instead (e.g. a server's --log-store, where its hot swaps go)")
    au.add_argument("--json", action="store_true", help="one JSON object per line")
    au.set_defaults(func=cmd_audit)
    co = sub.add_parser("cost", help="what training cost: totals by cloud, model or month, and the waste on "
                                     "attempts that did not complete")
    co.add_argument("--model", help="only this model (default: every model in the store)")
    co.add_argument("--since", type=_day, help="only attempts that ended on or after this day (YYYY-MM-DD, UTC)")
    co.add_argument("--by", choices=["cloud", "model", "month"], default="cloud",
                    help="group totals by (default cloud)")
    co.add_argument("--spec", default="specs/flights.yaml", help="the spec whose store holds the records")
    co.add_argument("--store", help="read this store instead (a local folder or URI)")
    co.add_argument("--csv", metavar="PATH", help="write every priced attempt to this CSV file")
    co.add_argument("--parquet", metavar="PATH", help="write every priced attempt to this Parquet file")
    co.add_argument("--chart", metavar="PATH", help="write a PNG of cost by cloud per day")
    co.set_defaults(func=cmd_cost)
    k = sub.add_parser("keygen", help="make an Ed25519 key pair for signing versions")
    k.add_argument("dir", help="folder for signing.pem and signing.pub")
    k.set_defaults(func=cmd_keygen)
    a = p.parse_args(argv)
    try:
        return a.func(a)
    except FileExistsError as e:
        print(f"cloudhop: {e.filename} exists already; not overwriting a key", file=sys.stderr)
        return 2
    except (SpecError, RegistryError, SigningError, FileNotFoundError) as e:
        print(f"cloudhop: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
