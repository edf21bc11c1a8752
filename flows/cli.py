"""Running a flow from a terminal: a person reads the one clear line, the Prefect log keeps the traceback.

    summary = run_flow(retrain, debug=args.debug, spec=..., ...)

A flow that fails on one of cloudhop's own clear errors (`USER_ERRORS`: a bad spec, data the
gate refused, a window without rows, no cloud able to train...) prints `<flow>: <message>`
and where the run's full report is, and exits with status 1; its traceback is sent to the
Prefect log of the run (the API) but not written to the terminal. Any other exception is a
bug: it is raised with its traceback. `debug` shows every traceback in the terminal too.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from prefect import Flow
from prefect.logging.handlers import PrefectConsoleHandler
from prefect.settings import PREFECT_UI_URL

from cloudhop.clouds import CatalogError
from cloudhop.clouds.failover import AllCloudsFailed
from cloudhop.clouds.placement import PlacementError
from cloudhop.data import DataError
from cloudhop.drift import DriftError
from cloudhop.providers.base import ProviderError
from cloudhop.registry import RegistryError
from cloudhop.spec import SpecError
from cloudhop.store import StoreError
from cloudhop.targets.base import TargetError
from cloudhop.training.errors import TrainingError
from cloudhop.validation.result import ValidationError
from cloudhop.validation.suite import SuiteError
from tasks.pipeline import ValidationFailed

__all__ = ["USER_ERRORS", "run_flow"]

# What cloudhop raises when the input is wrong (the message says what and where), not when it is.
USER_ERRORS: tuple[type[Exception], ...] = (
    SpecError, DataError, ValidationFailed, ValidationError, SuiteError, TrainingError, PlacementError,
    CatalogError, AllCloudsFailed, RegistryError, StoreError, ProviderError, TargetError, DriftError)


class _NoUserErrorTraceback(logging.Filter):
    """Drops the traceback of a user error from a console record (the API handler has sent it already:
    a logger's own handlers run before its parents', and the console handler is the root's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], USER_ERRORS):
            record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def _console_without_user_tracebacks() -> Iterator[None]:
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    f = _NoUserErrorTraceback()
    for h in handlers:
        h.addFilter(f)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(f)


def run_flow(flow: Flow, *, debug: bool = False, **parameters: Any) -> Any:
    """`flow(**parameters)` in this process; its result, or SystemExit(1) after one clear line on a
    user error (see the module docstring)."""
    if debug:
        return flow(**parameters)
    with _console_without_user_tracebacks():
        state = flow(**parameters, return_state=True)
    try:
        return state.result()
    except USER_ERRORS as e:
        run_id = state.state_details.flow_run_id
        ui = PREFECT_UI_URL.value()
        where = f"{ui.rstrip('/')}/runs/flow-run/{run_id}" if ui else f"the Prefect log of flow run {run_id}"
        print(f"{flow.name}: {e}\nfull report and traceback: {where} (or run again with --debug)",
              file=sys.stderr)
        raise SystemExit(1) from None
