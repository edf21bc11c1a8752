"""Cost and throughput records in the artifact store, one small JSON object per retrain.

    costs/<model>/<run_key>.json         what the retrain's training attempts cost (failed retrains too)
    throughput/<model>/<run_key>.json    the samples/s of its successful attempt, for placement

A version's manifest carries the same cost (`Manifest.cost`); the record exists also for a
retrain that registered nothing (every cloud failed), which is where its waste is seen.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from cloudhop.clouds.speed import Throughput
from cloudhop.registry.manifest import CostInfo
from cloudhop.store import Store

__all__ = ["CostRecordError", "cost_key", "write_cost", "read_costs", "write_throughput", "read_throughput",
           "record_models"]

COSTS, THROUGHPUT = "costs", "throughput"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class CostRecordError(ValueError):
    """A cost or throughput record that cannot be read: names the record and what is wrong."""


def _name(what: str, value: str) -> str:
    if not _SAFE.match(value):
        raise CostRecordError(f"{what} {value!r} cannot name a store key (letters, digits, '.', '_', '-')")
    return value


def cost_key(model: str, run_key: str) -> str:
    return f"{COSTS}/{_name('model', model)}/{_name('run key', run_key)}.json"


def write_cost(store: Store, cost: dict[str, Any]) -> str:
    """Store one retrain's cost (`RetrainCost.to_dict()`, checked against CostInfo); returns its key."""
    info = CostInfo.model_validate(cost)
    if not info.model or not info.run_key:
        raise CostRecordError("a cost record needs its model and run_key")
    key = cost_key(info.model, info.run_key)
    store.write_json(key, info.model_dump())
    return key


def record_models(store: Store) -> list[str]:
    """Models with cost records in the store."""
    return store.list_dirs(COSTS)


def read_costs(store: Store, model: str) -> list[CostInfo]:
    """Every cost record of `model`, in key order."""
    out = []
    for key in store.list(f"{COSTS}/{_name('model', model)}"):
        if not key.endswith(".json"):
            continue
        try:
            out.append(CostInfo.model_validate(store.read_json(key)))
        except (ValidationError, json.JSONDecodeError) as e:
            raise CostRecordError(f"{store.url(key)} is not a valid cost record: {e}") from None
    return out


def write_throughput(store: Store, run_key: str, t: Throughput) -> str:
    """Store a successful attempt's measured samples/s on its offer; returns its key."""
    if not t.model:
        raise CostRecordError("a throughput record needs its model")
    key = f"{THROUGHPUT}/{_name('model', t.model)}/{_name('run key', run_key)}.json"
    store.write_json(key, {"cloud": t.cloud, "offer": t.offer, "gpu": t.gpu, "samples_per_s": t.samples_per_s,
                           "at": t.at.isoformat() if t.at else None, "model": t.model})
    return key


def read_throughput(store: Store, model: str, newest: int = 200) -> list[Throughput]:
    """The `newest` throughput records of `model` (oldest measurements age out as the model changes)."""
    found = []
    for key in store.list(f"{THROUGHPUT}/{_name('model', model)}"):
        if not key.endswith(".json"):
            continue
        try:
            d = store.read_json(key)
            found.append(Throughput(cloud=str(d["cloud"]), offer=str(d["offer"]), gpu=str(d["gpu"]),
                                    samples_per_s=float(d["samples_per_s"]),
                                    at=datetime.fromisoformat(d["at"]) if d.get("at") else None, model=model))
        except (KeyError, TypeError, ValueError) as e:
            raise CostRecordError(f"{store.url(key)} is not a valid throughput record: {e!r}") from None
    found.sort(key=lambda t: t.at.isoformat() if t.at else "")
    return found[-newest:]
