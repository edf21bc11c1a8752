"""Where per-part work runs: one `Executor` interface, in this process or on a Dask cluster.

    ex = LocalExecutor()                        # one part after another, here
    with dask_client(spec) as client:           # LocalCluster, or spec/env scheduler address
        ex = DaskExecutor(client)               # a task per part; a lost worker's tasks rerun elsewhere
    ex.map(fn, items, **kw)                     # [fn(item, **kw) for item in items], in order

Cluster choice (`dask_client`, `task_runner_options`): the scheduler address in
`dataset.dask_address`, else the CLOUDHOP_DASK_ADDRESS environment variable, else a
`distributed.LocalCluster` of worker processes on 127.0.0.1. A scheduler that is not on
loopback is reached over tls:// only, with the `distributed.Security` that dask's own config
gives (DASK_DISTRIBUTED__COMM__TLS__CA_FILE, __CLIENT__CERT, __CLIENT__KEY or a config file):
the data and the credentials that read it travel that link.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

from cloudhop import guard
from cloudhop.data.load import DataError
from cloudhop.spec import PipelineSpec

__all__ = ["Executor", "LocalExecutor", "DaskExecutor", "run_parts", "dask_address", "dask_client",
           "task_runner_options", "ADDRESS_ENV", "VALIDATION_PRELOAD"]

ADDRESS_ENV = "CLOUDHOP_DASK_ADDRESS"
# What a worker that validates should import before it takes work (the GX import takes seconds).
VALIDATION_PRELOAD = ("cloudhop.validation._gx",)

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs `fn(item, **kwargs)` for each item and returns the results in the items' order."""

    def map(self, fn: Callable[..., R], items: Sequence[T], **kwargs: Any) -> list[R]: ...


class LocalExecutor:
    """One item after another, in this process."""

    def map(self, fn: Callable[..., R], items: Sequence[T], **kwargs: Any) -> list[R]:
        return [fn(it, **kwargs) for it in items]

    def __repr__(self) -> str:
        return "LocalExecutor()"


class DaskExecutor:
    """A task per item on a `distributed.Client`'s cluster (tasks of a lost worker are rerun elsewhere)."""

    def __init__(self, client: Any):
        self.client = client

    @property
    def address(self) -> str:
        return self.client.scheduler_info()["address"]

    def map(self, fn: Callable[..., R], items: Sequence[T], **kwargs: Any) -> list[R]:
        from dask import delayed

        tasks = [delayed(fn, pure=False)(it, **kwargs) for it in items]  # fresh keys: files may have changed
        return self.client.gather(self.client.compute(tasks))

    def __repr__(self) -> str:
        return f"DaskExecutor({self.address})"


def run_parts(executor: Executor | None, fn: Callable[..., R], items: Sequence[T], **kwargs: Any) -> list[R]:
    """`executor.map(fn, items, **kwargs)`, in this process when no executor is given."""
    return (executor or LocalExecutor()).map(fn, list(items), **kwargs)


# -- clusters ----------------------------------------------------------------------
def dask_address(spec: PipelineSpec | None = None) -> str | None:
    """The scheduler to use: the spec's dataset.dask_address, else CLOUDHOP_DASK_ADDRESS, else None (local).
    A plain-tcp address off loopback is refused (DataError) before anything connects."""
    address: str | None = spec.dataset.dask_address if spec is not None else None
    source = "dataset.dask_address"
    if not address:
        address, source = os.environ.get(ADDRESS_ENV) or None, ADDRESS_ENV
    problem = address and guard.dask_address_problem(address)
    if problem:
        raise DataError(f"{source}: {problem}")
    return address


def _security(address: str) -> Any:
    """The distributed.Security for a tls:// scheduler, from dask's config; None for other schemes."""
    if not address.lower().startswith("tls://"):
        return None
    from distributed import Security

    security: Any = Security()  # its tls_* attributes are set from dask's config at runtime
    if not (security.tls_ca_file and security.tls_client_cert):
        raise DataError(f"the Dask scheduler at {address} needs TLS credentials: set "
                        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE, __CLIENT__CERT and __CLIENT__KEY (or dask's config)")
    return security


def _local_cluster_kwargs(n_workers: int | None, memory_limit: str | int | None,
                          env: dict[str, str] | None, preload: Sequence[str] = ()) -> dict[str, Any]:
    kw: dict[str, Any] = {"n_workers": n_workers or min(os.cpu_count() or 1, 4), "threads_per_worker": 1,
                          "processes": True, "host": "127.0.0.1", "dashboard_address": None}
    if memory_limit is not None:
        kw["memory_limit"] = memory_limit
    if env:
        kw["env"] = dict(env)
    if preload:
        kw["preload"] = list(preload)
    return kw


@contextmanager
def dask_client(spec: PipelineSpec | None = None, *, address: str | None = None, n_workers: int | None = None,
                memory_limit: str | int | None = None, env: dict[str, str] | None = None,
                preload: Sequence[str] = ()) -> Iterator[Any]:
    """A distributed.Client: to `address`, the spec's or CLOUDHOP_DASK_ADDRESS's scheduler, or to a
    LocalCluster of `n_workers` single-threaded worker processes (`memory_limit` each; `env`
    set in each worker, e.g. PREFECT_API_URL; modules in `preload` imported by each worker,
    restarted ones included, before it takes work, e.g. VALIDATION_PRELOAD). A local cluster
    is closed on exit."""
    from distributed import Client, LocalCluster

    addr = address or dask_address(spec)
    if addr:
        try:
            client = Client(addr, timeout="20s", security=_security(addr))
        except (OSError, TimeoutError) as e:
            raise DataError(f"cannot reach the Dask scheduler at {addr}: {e}") from None
        with client:
            yield client
        return
    import dask

    # A killed worker's nanny starts a new one; one that imports GX first can take longer to come
    # back than the 15 s after which the cluster gives up on it (and closes its nanny).
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "120s"}), \
            LocalCluster(**_local_cluster_kwargs(n_workers, memory_limit, env, preload)) as cluster, \
            Client(cluster) as client:
        yield client


def task_runner_options(spec: PipelineSpec | None = None, *, n_workers: int | None = None,
                        memory_limit: str | int | None = None, env: dict[str, str] | None = None,
                        preload: Sequence[str] = ()) -> dict[str, Any]:
    """Keyword arguments for prefect_dask.DaskTaskRunner: the scheduler address when one is set,
    else a temporary LocalCluster. Pass env={"PREFECT_API_URL": ...}: without it each worker
    process starts its own temporary Prefect server (workers of an existing cluster need
    PREFECT_API_URL in their own environment)."""
    addr = dask_address(spec)
    if addr:
        security = _security(addr)
        return {"address": addr, **({"client_kwargs": {"security": security}} if security else {})}
    return {"cluster_class": "distributed.LocalCluster",
            "cluster_kwargs": _local_cluster_kwargs(n_workers, memory_limit, env, preload)}
