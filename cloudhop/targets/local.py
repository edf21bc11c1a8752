"""The local target's old import path, kept while scripts/loop, the benchmarks and some integration
tests import LocalTarget from here; the target itself is the local provider's
(cloudhop.providers.local.target)."""
from cloudhop.providers.local.target import LocalTarget

__all__ = ["LocalTarget"]
