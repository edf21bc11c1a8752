"""Deploy this repository to a Prefect server: the local work pools, `prefect deploy`, then the alerts."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from ops.procs import BIN, ROOT

__all__ = ["DeployError", "deploy_project"]


class DeployError(RuntimeError):
    """A deploy command failed; `output` holds what every command printed."""

    def __init__(self, message: str, output: str):
        super().__init__(message)
        self.output = output


def deploy_project(env: dict[str, str], names: Sequence[str] = (), timeout: float = 600) -> str:
    """`flows.pools apply --local`, `prefect deploy` of every deployment in prefect.yaml (or of
    `names`), then `flows.alerts apply` (a no-op without a webhook), against the server `env`
    names. Returns what they printed."""
    deploy = [a for n in names for a in ("--name", n)] or ["--all"]
    output = ""
    for cmd in ([sys.executable, "-m", "flows.pools", "apply", "--local"],
                [str(BIN / "prefect"), "--no-prompt", "deploy", *deploy],
                [sys.executable, "-m", "flows.alerts", "apply"]):
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        output += r.stdout + r.stderr
        if r.returncode:
            raise DeployError(f"{' '.join(cmd)} failed with {r.returncode}", output)
    return output
