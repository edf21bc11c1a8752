"""The one error of the training package, in a module of its own so that the torch-free parts
(labels, metrics, the promotion policy) can raise it without importing torch."""
from __future__ import annotations

__all__ = ["TrainingError"]


class TrainingError(RuntimeError):
    """Training cannot run or went wrong; the message says what and where."""
