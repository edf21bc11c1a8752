"""The code revision a version was trained with, for its manifest's lineage."""
from __future__ import annotations

import os
import subprocess

__all__ = ["code_revision"]


def code_revision() -> str:
    """The git commit of the checkout cloudhop runs from (with `-dirty` for local changes),
    else the installed package's version."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if rev:
            return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import version
    return f"cloudhop-{version('cloudhop')}"
