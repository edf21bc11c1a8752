"""This machine: the `process` work pool and the inference server as a local process. No SDK, no
extra, no credentials block."""
from cloudhop.providers.base import PoolType, Provider
from cloudhop.providers.local.target import from_spec

__all__ = ["PROVIDER"]

PROVIDER = Provider(name="local", target=from_spec,
                    pool_types=(PoolType("process", worker="prefect.workers.process:ProcessWorker",
                                                 runs_here=True),))
