"""Build cloudhop's two container images with podman: `python -m ops.images build [--base IMAGE]`.

    localhost/cloudhop-serve:dev   docker/serve.Dockerfile (no torch, no Prefect: checked after the build)
    localhost/cloudhop-train:dev   docker/train.Dockerfile (CPU torch from this machine's wheel folder)

Both start from BASE_IMAGE (default python:3.11-slim, as for real users). When it cannot be
pulled (no public registry answers on these machines) they start from a local base made of
Debian packages instead: debootstrap bookworm with python3 (3.11) and a venv at /opt/venv on
PATH, imported as localhost/cloudhop-base:bookworm (about 80 s, once).

pip inside a build gets the machine's CA bundle as a build secret (never a layer). The train
image takes torch from the folder pip's `find-links` names (copied into .build/wheels/, which
the build mounts): PyPI's default torch is the CUDA build, several GB. A real cloud's image
keeps CUDA torch: build docker/train.Dockerfile with an empty .build/wheels/ and a CUDA base.

An image is rebuilt only when its Dockerfile, the files it copies or its base changed: each
image carries a label with the hash of those, compared before building. Within a rebuild the
engine's layer cache keeps the train image's dependency layer (about ten minutes to make) unless
what it installs changed: ops.image_requirements works that out from pyproject.toml in a stage
of its own, so a test dependency or a version bump rebuilds only the source layers.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ops.engine import EngineError, engine_env, installed, podman
from ops.procs import ROOT

__all__ = ["Image", "SERVE", "TRAIN", "LOCAL_BASE", "DEFAULT_BASE", "ensure_base", "context_files", "source_hash",
           "build", "build_all", "wheel_folder", "size", "main"]

DEFAULT_BASE = "python:3.11-slim"
LOCAL_BASE = "localhost/cloudhop-base:bookworm"
HASH_LABEL = "org.cloudhop.source-hash"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
WHEELS = ROOT / ".build" / "wheels"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
_IGNORED = {"__pycache__", ".pytest_cache"}


@dataclass(frozen=True)
class Image:
    """One image cloudhop builds: its tag and Dockerfile."""
    tag: str
    dockerfile: str  # relative to the repository

    @property
    def name(self) -> str:
        return self.tag.rsplit("/", 1)[-1].split(":")[0].removeprefix("cloudhop-")


SERVE = Image("localhost/cloudhop-serve:dev", "docker/serve.Dockerfile")
TRAIN = Image("localhost/cloudhop-train:dev", "docker/train.Dockerfile")


def _exists(ref: str) -> bool:
    return podman("image", "exists", ref, check=False).returncode == 0


def make_local_base(tag: str = LOCAL_BASE) -> str:
    """debootstrap bookworm + python3 + a venv at /opt/venv (Debian's python is externally
    managed, PEP 668), imported as `tag`. Needs root and the Debian mirror."""
    if shutil.which("debootstrap") is None:
        raise EngineError("debootstrap is not installed: run scripts/setup as root (apt-get install -y debootstrap)")
    with tempfile.TemporaryDirectory(prefix="cloudhop-base-") as tmp:
        root = Path(tmp) / "rootfs"
        steps = [["debootstrap", "--variant=minbase", "--include=python3,python3-venv,passwd,ca-certificates",
                  "bookworm", str(root), DEBIAN_MIRROR],
                 ["chroot", str(root), "python3", "-m", "venv", "/opt/venv"]]
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise EngineError(f"making the local base: `{' '.join(cmd[:2])}` exited with {proc.returncode}:\n"
                                  f"{(proc.stderr or proc.stdout)[-3000:]}")
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True).stdout
    podman("import", "--change", "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]', "-", tag, stdin=tar)
    return tag


def ensure_base(base: str = DEFAULT_BASE) -> str:
    """`base` when it is here or can be pulled, else the local Debian base (made once)."""
    if _exists(base):
        return base
    pulled = podman("pull", "--quiet", base, check=False, timeout=120)
    if pulled.returncode == 0:
        return base
    print(f"{base} cannot be pulled ({pulled.stderr.strip().splitlines()[-1:] or ['no reason']}); "
          f"using {LOCAL_BASE}", file=sys.stderr)
    return LOCAL_BASE if _exists(LOCAL_BASE) else make_local_base()


def _copied(dockerfile: Path) -> list[str]:
    """The build-context paths a Dockerfile copies (COPY sources) or mounts (bind sources)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    paths: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            paths += [w for w in words[1:-1] if not w.startswith("--")]
        paths += re.findall(r"--mount=type=bind,(?:[^ ]*,)?source=([^, ]+)", line)
    return paths


def context_files(image: Image, root: Path = ROOT) -> list[Path]:
    """The Dockerfile and every file of the build context `root` it copies or mounts, sorted
    (caches and bytecode left out): all a build of `image` reads."""
    dockerfile = root / image.dockerfile
    files = {dockerfile}
    for rel in set(_copied(dockerfile)):
        top = root / rel
        if top.is_dir():
            files.update(p for p in top.rglob("*") if p.is_file())
        elif top.exists():  # a missing one fails the build, which says so
            files.add(top)
    return sorted(f for f in files if not _IGNORED & set(f.relative_to(root).parts) and f.suffix != ".pyc")


def source_hash(image: Image, base_id: str, root: Path = ROOT) -> str:
    """Hash of the Dockerfile, every file it copies or mounts from the context `root`, and the
    base image's id: what decides whether a built image is still current."""
    h = hashlib.sha256(base_id.encode())
    for f in context_files(image, root):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:32]


def wheel_folder() -> Path | None:
    """The folder pip's `find-links` names on this machine (`pip config list`), if any."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".find-links"):
            for candidate in value.strip("'\"").split():
                if Path(candidate).is_dir():
                    return Path(candidate)
    return None


def stage_wheels(source: Path | None) -> list[str]:
    """Put the CPU torch wheel of `source` into .build/wheels/ (emptied first); the names staged."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    wanted = sorted(source.glob("torch-*+cpu-*.whl")) if source else []
    for old in WHEELS.iterdir():
        if old.name not in {w.name for w in wanted}:
            old.unlink()
    for w in wanted:
        target = WHEELS / w.name
        if not target.exists() or target.stat().st_size != w.stat().st_size:
            try:
                os.link(w, target)
            except OSError:
                shutil.copy2(w, target)
    return [w.name for w in wanted]


def _label(ref: str) -> str | None:
    out = podman("image", "inspect", "--format", "{{ index .Labels \"" + HASH_LABEL + "\" }}", ref, check=False)
    return out.stdout.strip() if out.returncode == 0 else None


def build(image: Image, base: str, *, no_cache: bool = False, context: Path = ROOT) -> tuple[bool, float]:
    """Build `image` from `base` in the build context `context` (the repository) unless an image
    with the same source hash is there (`no_cache`: build anyway, every layer again). Returns
    (built, seconds)."""
    t0 = time.monotonic()
    base_id = podman("image", "inspect", "--format", "{{.Id}}", base).stdout.strip()
    digest = source_hash(image, base_id, context)
    if not no_cache and _label(image.tag) == digest:
        return False, time.monotonic() - t0
    cmd = ["podman", "build", "--format", "docker", "--network", "host", "-f", image.dockerfile, "-t", image.tag,
           "--build-arg", f"BASE_IMAGE={base}", "--label", f"{HASH_LABEL}={digest}"]
    if no_cache:
        cmd.append("--no-cache")
    if CA_BUNDLE.exists():
        cmd += ["--secret", f"id=ca,src={CA_BUNDLE}"]
    proc = subprocess.run([*cmd, "."], cwd=context, env=engine_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise EngineError(f"building {image.tag} from {image.dockerfile} failed ({proc.returncode}):\n"
                          f"{(proc.stdout + proc.stderr)[-4000:]}")
    return True, time.monotonic() - t0


def check_serve(tag: str = SERVE.tag) -> None:
    """The serving image must hold neither torch nor Prefect (it would be GBs, and a second API)."""
    code = ("import importlib.util as u, sys; bad = [m for m in ('torch', 'prefect') if u.find_spec(m)]; "
            "sys.exit('serve image holds ' + ', '.join(bad) if bad else 0)")
    out = podman("run", "--rm", "--network", "none", tag, "python", "-c", code, check=False, timeout=120)
    if out.returncode != 0:
        raise EngineError(f"{tag}: {(out.stderr or out.stdout).strip()[-500:]}")


def size(tag: str) -> int:
    """An image's size in bytes."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


def build_all(base: str = DEFAULT_BASE, *, no_cache: bool = False,
              only: Sequence[Image] = (SERVE, TRAIN)) -> dict[str, dict]:
    """Both images (serve, then train; or those of `only`), each reused when unchanged; what
    happened to each."""
    if not installed():
        raise EngineError("podman is not installed: run scripts/setup as root (apt-get install -y podman runc debootstrap)")
    base = ensure_base(base)
    if TRAIN in only:
        stage_wheels(wheel_folder())
    report = {}
    for image in only:
        built, seconds = build(image, base, no_cache=no_cache)
        if image is SERVE:
            check_serve()
        report[image.name] = {"tag": image.tag, "built": built, "seconds": round(seconds, 1), "base": base,
                              "bytes": size(image.tag)}
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ops.images", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build both images (reused when unchanged)")
    b.add_argument("--base", default=os.environ.get("BASE_IMAGE", DEFAULT_BASE),
                   help=f"base image (default $BASE_IMAGE or {DEFAULT_BASE}; the local Debian base if it cannot be pulled)")
    b.add_argument("--no-cache", action="store_true", help="build every layer again, even when up to date")
    a = ap.parse_args(argv)
    try:
        for r in build_all(a.base, no_cache=a.no_cache).values():
            what = f"built in {r['seconds']}s" if r["built"] else "unchanged, reused"
            print(f"{r['tag']:32} {what:22} {r['bytes'] / 1e6:8.0f} MB  (base {r['base']})")
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
