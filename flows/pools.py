"""Work pools from the cloud catalog: `python -m flows.pools apply|list|templates`.

  apply [--local]     create or update every enabled cloud's pool on PREFECT_API_URL
                      (--local: a `process` pool per cloud, same names, to run everything here),
                      and the automation that marks runs whose process died Crashed (tasks.crashed)
  list  [--local]     each pool's state on the server against the catalog
  templates [--check] write deployments/work-pools/<pool>.json from the installed workers'
                      default templates (--check: exit 1 if the committed files differ)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import httpx
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from cloudhop.clouds import Catalog, CatalogError, PoolChange, build_template, load_catalog, same_template
from tasks.crashed import CRASHED_AUTOMATION, apply_crashed_automation
from tasks.pools import apply_changes, desired_pools, plan, worker_default_template

DEFAULT_CATALOG = "deployments/clouds.yaml"

_APPLY_STATE = {"create": "created", "update": "updated", "unchanged": "unchanged", "conflict": "conflict"}
_LIST_STATE = {"create": "missing", "update": "differs", "unchanged": "in sync", "conflict": "conflict"}


def templates_dir(catalog_path: str | Path) -> Path:
    return Path(catalog_path).parent / "work-pools"


def generate_templates(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """pool name -> its base job template, for every pool in the catalog (enabled or not)."""
    return {pool.name: build_template(catalog, pool.name, worker_default_template(pool.type))
            for _, pool in catalog.pools(enabled_only=False)}


def read_templates(catalog: Catalog, folder: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for _, pool in catalog.pools():
        path = folder / f"{pool.name}.json"
        if not path.exists():
            raise CatalogError(f"no base job template for pool {pool.name!r} at {path}: "
                               f"run `python -m flows.pools templates`")
        out[pool.name] = json.loads(path.read_text())
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no pools)"
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c] if r[c] is not None else "-")) for r in rows)) for c in cols}

    def line(values: list[Any]) -> str:
        return "  ".join(str(v).ljust(width[c]) for c, v in zip(cols, values, strict=True)).rstrip()

    out = [line(cols), line(["-" * width[c] for c in cols])]
    out += [line([r[c] if r[c] is not None else "-" for c in cols]) for r in rows]
    return "\n".join(out)


def _rows(changes: list[PoolChange], states: dict[str, str]) -> list[dict[str, Any]]:
    return [{"pool": ch.pool.name, "type": ch.pool.type, "cloud": ch.pool.cloud, "state": states[ch.action],
             "status": ch.status, "detail": ch.detail} for ch in changes]


def cmd_apply(catalog: Catalog, catalog_path: str, local: bool) -> int:
    templates = None if local else read_templates(catalog, templates_dir(catalog_path))
    desired = desired_pools(catalog, templates, local=local)
    with get_client(sync_client=True) as client:
        changes = plan(client, desired)
        apply_changes(client, changes)
        after = {ch.pool.name: ch.status for ch in plan(client, desired)}
    changes = [PoolChange(ch.pool, ch.action, ch.detail, after.get(ch.pool.name)) for ch in changes]
    print(format_table(_rows(changes, _APPLY_STATE)))
    if all(ch.action == "unchanged" for ch in changes):
        print("nothing changed: every pool already matches the catalog")
    conflicts = [ch for ch in changes if ch.action == "conflict"]
    for ch in conflicts:
        print(f"error: pool {ch.pool.name}: {ch.detail}", file=sys.stderr)
    print(f"automation {CRASHED_AUTOMATION}: {apply_crashed_automation()}")
    return 1 if conflicts else 0


def cmd_list(catalog: Catalog, catalog_path: str, local: bool) -> int:
    templates = None if local else read_templates(catalog, templates_dir(catalog_path))
    with get_client(sync_client=True) as client:
        changes = plan(client, desired_pools(catalog, templates, local=local))
    print(format_table(_rows(changes, _LIST_STATE)))
    return 0


def cmd_templates(catalog: Catalog, catalog_path: str, check: bool) -> int:
    folder = templates_dir(catalog_path)
    stale = []
    for name, template in generate_templates(catalog).items():
        path = folder / f"{name}.json"
        current = json.loads(path.read_text()) if path.exists() else None
        if current is not None and same_template(current, template):
            continue
        stale.append(name)
        if not check:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(template, indent=2) + "\n")
            tmp.replace(path)
            print(f"wrote {path}")
    if check and stale:
        print(f"stale templates in {folder}: {', '.join(stale)} (run `python -m flows.pools templates`)",
              file=sys.stderr)
        return 1
    if not stale:
        print(f"templates in {folder} are up to date")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.pools", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("apply", "list", "templates"):
        p = sub.add_parser(name)
        p.add_argument("--catalog", default=DEFAULT_CATALOG, help=f"cloud catalog (default {DEFAULT_CATALOG})")
        if name == "templates":
            p.add_argument("--check", action="store_true", help="only check the committed files")
        else:
            p.add_argument("--local", action="store_true", help="process pools with the same names")
    args = ap.parse_args(argv)
    try:
        catalog = load_catalog(args.catalog)
        if args.command == "templates":
            return cmd_templates(catalog, args.catalog, args.check)
        if not PREFECT_API_URL.value():
            print("error: PREFECT_API_URL is not set: point it at a Prefect server "
                  "(e.g. http://127.0.0.1:4200/api after `prefect server start`)", file=sys.stderr)
            return 2
        run = cmd_apply if args.command == "apply" else cmd_list
        return run(catalog, args.catalog, args.local)
    except CatalogError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except httpx.HTTPError as e:  # includes Prefect's HTTP status errors
        print(f"error: Prefect API at {PREFECT_API_URL.value()}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
