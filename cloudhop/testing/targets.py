"""An in-memory serving Target: real decisions about it, no server behind it."""
from __future__ import annotations

from collections.abc import Iterable

from cloudhop.registry import Registry
from cloudhop.targets.base import SmokeResult, TargetError, compare_predictions

__all__ = ["MemoryTarget"]


class MemoryTarget:
    """A Target whose 'server' is a variable, `live`. Every call is recorded in `calls` as (method, version).

    - `down`: roll-outs and roll-backs are refused, nothing is live, health says down;
    - `fail_times`: the next that many roll-outs or roll-backs fail, then they work (a flaky target);
    - `unloadable`: versions it cannot load (roll-out to them fails);
    - `bad`: versions it loads but serves wrongly (every prediction 0.0, so the smoke test fails).
    """

    def __init__(self, name: str = "mem", live: str | None = None, *, down: bool = False, fail_times: int = 0,
                 unloadable: Iterable[str] = (), bad: Iterable[str] = ()):
        self.name, self.live, self.down, self.fail_times = name, live, down, fail_times
        self.unloadable, self.bad = set(unloadable), set(bad)
        self.calls: list[tuple[str, str]] = []

    def publish(self, registry: Registry, version: str) -> None:
        self.calls.append(("publish", version))

    def _serve(self, version: str) -> None:
        if self.down:
            raise TargetError(f"{self.name}: connection refused")
        if self.fail_times > 0:
            self.fail_times -= 1
            raise TargetError(f"{self.name}: flaky")
        if version in self.unloadable:
            raise TargetError(f"{self.name}: cannot load v{version}")
        self.live = version

    def roll_out(self, version: str) -> None:
        self.calls.append(("roll_out", version))
        self._serve(version)

    def roll_back(self, version: str) -> None:
        self.calls.append(("roll_back", version))
        self._serve(version)

    def live_version(self) -> str | None:
        return None if self.down else self.live

    def health(self) -> dict:
        return {"status": "ok" if self.live_version() else "down"}

    def smoke_test(self, rows: list[dict], expected: list[float], atol: float = 1e-4) -> SmokeResult:
        if self.down:
            raise TargetError(f"{self.name}: connection refused")
        got = [0.0] * len(rows) if self.live in self.bad else list(expected)
        return compare_predictions(got, expected, atol)
