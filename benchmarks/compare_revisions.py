"""One benchmark at two revisions of cloudhop, in one run: the baseline revision and the
working tree, alternating, each figure of the new run beside the baseline's (a ratio).

    .venv/bin/python benchmarks/compare_revisions.py BASE_REV [--rounds N] -- benchmarks/bench_pipeline.py --rounds 1

BASE_REV is checked out into a temporary git worktree (removed at the end); both sides run
the benchmark script of their own revision with this virtualenv's Python, so each measures
its own library. Figures are read from the benchmark's table rows: a label, then numbers
("train    21.07    21.33    1.01"). For each (label, column) found in both outputs the best
(lowest) of the rounds is compared; lower is better for every time the benchmarks print.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\|?\s*\**(?P<label>[A-Za-z][^|\d]*?)\**\s*\|?\s+(?P<nums>(?:[-+]?\d[\d,]*\.?\d*x?\s*\|?\s*)+)$")


def figures(output: str) -> dict[tuple[str, int], float]:
    """(row label, column) -> number, for every table row of a benchmark's output."""
    out: dict[tuple[str, int], float] = {}
    for line in output.splitlines():
        m = ROW.match(line.strip())
        if not m:
            continue
        nums = re.findall(r"[-+]?\d[\d,]*\.?\d*", m["nums"])
        for i, n in enumerate(nums):
            out[(m["label"].strip(" *"), i)] = float(n.replace(",", ""))
    return out


def run(tree: Path, script: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree))
    p = subprocess.run([sys.executable, *script], cwd=tree, env=env, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{script[0]} failed in {tree} (exit {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    script = argv[argv.index("--") + 1:] if "--" in argv else []
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="baseline git revision")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds of each side")
    a = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if not script:
        ap.error("give the benchmark after --")
    with tempfile.TemporaryDirectory(prefix="cloudhop-base-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), a.base], cwd=ROOT, check=True)
        (base / ".venv").symlink_to(ROOT / ".venv")  # benchmarks start servers and workers from .venv/bin
        try:
            best: dict[str, dict[tuple[str, int], float]] = {"base": {}, "new": {}}
            for r in range(a.rounds):
                for side, tree in (("base", base), ("new", ROOT)):
                    got = figures(run(tree, script))
                    print(f"round {r + 1}: {side} done ({len(got)} figures)", flush=True)
                    for k, v in got.items():
                        best[side][k] = min(v, best[side].get(k, v))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)
    common = [k for k in best["new"] if k in best["base"]]
    print(f"\n{' '.join(script)}: {a.base} (baseline) vs working tree, best of {a.rounds} round(s) each")
    print(f"{'figure':40} {'column':>6} {'baseline':>12} {'new':>12} {'new/base':>9}")
    for k in common:
        b, n = best["base"][k], best["new"][k]
        print(f"{k[0][:40]:40} {k[1]:>6} {b:>12.3f} {n:>12.3f} {n / b if b else float('nan'):>9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
