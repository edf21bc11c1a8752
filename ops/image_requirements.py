"""What the train image's dependency layer installs, worked out from pyproject.toml and constraints.txt.

    python image_requirements.py --extras aws,gcp,azure,coreweave --drop torch PYPROJECT CONSTRAINTS OUT_DIR

writes OUT_DIR/requirements.txt (the runtime dependencies plus those of the extras the image
installs, sorted, one a line) and OUT_DIR/constraints.txt (constraints.txt without the pins of
the dropped packages). docker/train.Dockerfile runs it in a stage of its own and copies only
these two files into the image's stage, so the engine's layer cache keys the dependency layer on
what it installs: an edit of pyproject.toml that leaves them alone (a test dependency, the
version, a tool's settings) keeps the layer, where copying pyproject.toml itself rebuilt it
(about ten minutes). Standard library only: it runs on the bare base image.
"""
from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["requirements", "constraints", "layer_files", "main"]


def _name(requirement: str) -> str:
    """A requirement's normalised project name (PEP 503): `Foo_Bar[x]>=1` -> `foo-bar`."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(pyproject: Mapping[str, Any], extras: Sequence[str]) -> list[str]:
    """The runtime dependencies plus those of `extras` (an extra naming the project itself, like
    `cloudhop[aws,gcp]`, is followed), sorted and without repeats."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    self_name = _name(project["name"])
    out: set[str] = set()
    seen: set[str] = set()

    def add(reqs: Iterable[str]) -> None:
        for r in reqs:
            if _name(r) != self_name:
                out.add(r.strip())
                continue
            named = re.search(r"\[([^\]]*)\]", r)
            for extra in named.group(1).split(",") if named else []:
                visit(extra.strip())

    def visit(extra: str) -> None:
        if extra in seen:
            return
        if extra not in optional:
            raise ValueError(f"pyproject.toml has no extra {extra!r}; its extras: {', '.join(sorted(optional))}")
        seen.add(extra)
        add(optional[extra])

    add(project.get("dependencies", []))
    for extra in extras:
        visit(extra)
    return sorted(out, key=lambda r: (_name(r), r))


def constraints(text: str, drop: Iterable[str] = ()) -> str:
    """constraints.txt without the pins of the projects in `drop` (the image brings its own torch)."""
    dropped = {_name(d) for d in drop}
    kept = [line for line in text.splitlines()
            if not line.strip() or line.lstrip().startswith("#") or _name(line) not in dropped]
    return "\n".join(kept) + "\n"


def layer_files(pyproject_text: str, constraints_text: str, extras: Sequence[str],
                drop: Iterable[str] = ()) -> dict[str, str]:
    """{file name: content} of what the dependency layer copies: its whole cache key."""
    reqs = requirements(tomllib.loads(pyproject_text), extras)
    return {"requirements.txt": "\n".join(reqs) + "\n", "constraints.txt": constraints(constraints_text, drop)}


def _words(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extras", default="", help="comma-separated extras the image installs")
    ap.add_argument("--drop", default="", help="comma-separated projects whose constraints are dropped")
    ap.add_argument("pyproject", type=Path)
    ap.add_argument("constraints", type=Path)
    ap.add_argument("out", type=Path)
    a = ap.parse_args(argv)
    files = layer_files(a.pyproject.read_text(), a.constraints.read_text(), _words(a.extras), _words(a.drop))
    a.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (a.out / name).write_text(text)
    print(files["requirements.txt"], end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
