"""What every cloud target shares: copy a version to the cloud's store, talk to its endpoint,
point its serving deployment (the control plane) at a version.

A cloud target = an object store (the registry layout, so a server started with
`--store <that store>` loads the version) + a control plane (ECS service, Cloud Run
service, Container App, Kubernetes Deployment: new replicas start on the version) +
the HTTP endpoint in front of the running replicas (hot swap through /admin/load, and
/version, /health, /predict for the checks).
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Protocol

import httpx

from cloudhop.registry import Registry
from cloudhop.store import Store
from cloudhop.targets.base import SmokeResult, TargetError, compare_predictions
from cloudhop.targets.description import VERSION_ENV, ServingDescription, load_description

__all__ = ["ControlPlane", "CloudTarget", "Endpoint", "ManifestStore", "SERVING_FILES", "copy_version",
           "description_for", "find_version", "gitops_control", "require", "require_store", "check_options"]


SERVING_FILES = ("model.onnx", "preprocess.json", "smoke.json")  # what a server needs; the rest stays behind


def copy_version(registry: Registry, dest: Store, version: str) -> int:
    """Upload what serving needs of one version (SERVING_FILES, then manifest.sig when signed, the
    manifest last) to `dest` under the same layout, then re-read and check every sha256 there.
    Checkpoints, reference samples and validation details stay in the registry. Returns the bytes
    uploaded (0 when the copy was already complete)."""
    version = registry.resolve(version)
    problems = registry.verify(version)
    if problems:
        raise TargetError(f"{registry.name} v{version} fails verification at the source: " + "; ".join(problems))
    mv = registry.get(version)
    there = Registry(dest, registry.name, public_key=registry.public_key)
    if dest.exists(mv.key("manifest.json")) and not there.verify(version, SERVING_FILES):
        return 0  # already there and intact
    sent = 0
    for fname in SERVING_FILES:
        if fname in mv.manifest.files:
            data = registry.read_file(mv, fname)
            dest.write_bytes(mv.key(fname), data)
            sent += len(data)
    if registry.store.exists(mv.key("manifest.sig")):
        dest.write_bytes(mv.key("manifest.sig"), registry.store.read_bytes(mv.key("manifest.sig")))
    manifest = registry.store.read_bytes(mv.key("manifest.json"))
    # manifest last: readers of `dest` see the version only once every file is in place
    dest.write_bytes(mv.key("manifest.json"), manifest)
    problems = there.verify(version, SERVING_FILES)
    if problems:
        raise TargetError(f"the copy of {registry.name} v{version} in {dest.uri} is corrupt: " + "; ".join(problems))
    return sent


class Endpoint:
    """The HTTP face of a serving deployment: /health, /version, /predict, /admin/load."""

    def __init__(self, url: str, admin_token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self._token = admin_token
        self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout, connect=2.0), trust_env=False)

    def __repr__(self) -> str:  # never the token
        return f"Endpoint({self.url!r})"

    def health(self) -> dict[str, Any]:
        try:
            r = self._http.get("/health", timeout=5.0)
        except httpx.TransportError as e:
            return {"status": "down", "url": self.url, "error": f"{type(e).__name__}: {e}"}
        try:
            body = r.json()
        except ValueError:
            body = {"status": f"HTTP {r.status_code}"}
        return {**body, "url": self.url, "http_status": r.status_code}

    def version(self) -> str | None:
        try:
            r = self._http.get("/version", timeout=5.0)
        except httpx.TransportError:
            return None
        return str(r.json()["version"]) if r.status_code == 200 else None

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def load(self, version: str, where: str) -> str:
        try:
            r = self._http.post("/admin/load", json={"version": str(version)}, headers=self._auth(), timeout=300.0)
        except httpx.TransportError as e:
            raise TargetError(f"{where}: cannot reach {self.url}/admin/load: {type(e).__name__}: {e}") from None
        if r.status_code != 200:
            raise TargetError(f"{where}: loading v{version} failed (HTTP {r.status_code}): {_error_text(r)}")
        return str(r.json()["version"])

    def smoke_test(self, rows: list[dict], expected: list[float], atol: float) -> SmokeResult:
        n = len(rows)
        try:
            r = self._http.post("/predict", json={"rows": rows}, headers=self._auth())  # /predict may need a token
        except httpx.TransportError as e:
            return SmokeResult(False, float("inf"), n, f"cannot reach {self.url}/predict: {e}")
        if r.status_code != 200:
            return SmokeResult(False, float("inf"), n, f"HTTP {r.status_code}: {_error_text(r)}")
        return compare_predictions(r.json()["predictions"], expected, atol)

    def metrics(self) -> str:
        r = self._http.get("/metrics", timeout=5.0)
        r.raise_for_status()
        return r.text

    def close(self) -> None:
        self._http.close()


def _error_text(r: httpx.Response) -> str:
    try:
        return str(r.json().get("error", r.text))
    except ValueError:
        return r.text[:500]


class ControlPlane(Protocol):
    """Where a cloud keeps the desired state of its serving deployment."""

    def apply(self, version: str) -> dict[str, Any]:
        """Make new replicas start on `version`; returns a short record (ids, revision)."""

    def desired_version(self) -> str | None:
        """The version the deployment is set to run (None when it does not exist yet)."""


class ManifestStore:
    """GitOps control plane: the rendered manifest is written to a store (a folder, a bucket) for the
    cluster's CD (Argo CD, Flux, a `kubectl apply` job) to apply. Also what tests use for clouds
    whose control plane has no local emulator."""

    def __init__(self, store: Store, key: str, render: Any):
        self.store, self.key, self._render = store, key, render

    def apply(self, version: str) -> dict[str, Any]:
        manifest = self._render(version)
        self.store.write_bytes(self.key, json.dumps(manifest, indent=2, sort_keys=True).encode())
        return {"manifest": self.store.url(self.key)}

    def desired_version(self) -> str | None:
        if not self.store.exists(self.key):
            return None
        return find_version(self.store.read_json(self.key))

    def manifest(self) -> Any:
        return self.store.read_json(self.key) if self.store.exists(self.key) else None


def find_version(obj: Any) -> str | None:
    """The CLOUDHOP_VERSION value anywhere in a manifest."""
    if isinstance(obj, dict):
        if obj.get("name") == VERSION_ENV and "value" in obj:
            return str(obj["value"])
        items: Iterable[Any] = obj.values()
    elif isinstance(obj, list):
        items = obj
    else:
        return None
    for v in items:
        found = find_version(v)
        if found is not None:
            return found
    return None


def description_for(spec_target: Any, spec: Any, options: dict[str, Any]) -> ServingDescription:
    """The serving description of a target: the file named by options['description'] (default
    deployments/serving/serving.yaml when present) with the model and a per-target name."""
    from pathlib import Path

    path = options.get("description") or "deployments/serving/serving.yaml"
    if Path(path).exists():
        desc = load_description(path)
    else:
        desc = ServingDescription(name=f"{spec.name}-serving", model=spec.name,
                                  image=options.get("image", "ghcr.io/cloudhop/serve:0.1.0"))
    updates: dict[str, Any] = {"model": spec.name}
    if options.get("image"):
        updates["image"] = options["image"]
    if options.get("service"):
        updates["name"] = options["service"]
    return desc.model_copy(update=updates)


class CloudTarget:
    """A serving target in a cloud: its store, its control plane and its endpoint."""

    kind = "cloud"

    def __init__(self, name: str, store: Store, control: ControlPlane, endpoint: Endpoint,
                 hot_swap: bool = True):
        self.name, self.store, self.control, self.endpoint = name, store, control, endpoint
        self.hot_swap = hot_swap
        self.url = endpoint.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, store={self.store.uri}, endpoint={self.url})"

    def publish(self, registry: Registry, version: str) -> None:
        try:
            copy_version(registry, self.store, version)
        except TargetError as e:
            raise TargetError(f"target {self.name}: {e}") from None
        except (OSError, RuntimeError) as e:  # the store's SDK errors, with the target named
            raise TargetError(f"target {self.name}: uploading v{version} to {self.store.uri} failed: "
                              f"{type(e).__name__}: {e}") from None

    def roll_out(self, version: str) -> None:
        """Set the deployment to `version`, hot-swap the running replicas, confirm over /version."""
        version = str(version)
        try:
            self.control.apply(version)
        except TargetError:
            raise
        except Exception as e:
            raise TargetError(f"target {self.name}: updating the serving deployment to v{version} failed: "
                              f"{type(e).__name__}: {e}") from None
        if self.hot_swap:
            self.endpoint.load(version, f"target {self.name}")
        live = self.endpoint.version()
        if live != version:
            raise TargetError(f"target {self.name}: asked for v{version} but {self.url} serves v{live}")

    def roll_back(self, version: str) -> None:
        self.roll_out(version)

    def live_version(self) -> str | None:
        return self.endpoint.version()

    def prediction_log_store(self) -> Store:
        """The cloud's store: its servers run without --log-store, so they log where they read models."""
        return self.store

    def health(self) -> dict:
        h = self.endpoint.health()
        try:
            h["desired_version"] = self.control.desired_version()
        except Exception as e:  # a control plane that cannot be read is reported, not raised
            h["desired_version"] = None
            h["control_error"] = f"{type(e).__name__}: {e}"
        return h

    def smoke_test(self, rows: list[dict], expected: list[float], atol: float = 1e-4) -> SmokeResult:
        if len(rows) != len(expected):
            return SmokeResult(False, float("inf"), len(rows),
                               f"smoke set has {len(rows)} rows but {len(expected)} predictions")
        return self.endpoint.smoke_test(rows, expected, atol)

    def close(self) -> None:
        self.endpoint.close()


def require(options: dict[str, Any], key: str, target: str, kind: str, example: str) -> Any:
    if not options.get(key):
        raise TargetError(f"targets.{target}.options.{key} is required for a {kind} target (e.g. {example})")
    return options[key]


def require_store(options: dict[str, Any], target: str, kind: str, schemes: tuple[str, ...], example: str,
                  note: str = "") -> str:
    """options['store']: required, and a URI of one of `schemes` (the first names it in the error)."""
    uri = require(options, "store", target, kind, example)
    if not uri.startswith(tuple(f"{s}://" for s in schemes)):
        article = "an" if schemes[0][0] in "aefhilmnorsx" else "a"  # as its first letter is said: an s3, a gs
        raise TargetError(f"targets.{target}.options.store must be {article} {schemes[0]}:// URI{note}, got {uri!r}")
    return uri


def check_options(options: dict[str, Any], known: set[str], target: str, kind: str) -> None:
    for k in options:
        if k in ("key", "secret", "token", "connection_string", "account_key", "admin_token", "password",
                 "aws_secret_access_key", "client_secret", "service_account_info"):
            raise TargetError(f"targets.{target}.options.{k}: credentials never go in the spec; name a Prefect "
                              f"block in options.credentials (or a Secret in options.admin_token_secret)")
    unknown = set(options) - known
    if unknown:
        raise TargetError(f"targets.{target}.options: unknown option(s) {sorted(unknown)} for a {kind} target; "
                          f"known: {sorted(known)}")


def gitops_control(options: dict[str, Any], target: str, render_version: Any,
                   store_options: dict[str, Any] | None = None) -> ManifestStore:
    """A ManifestStore at options['manifests'] (a folder or bucket URI), key <target>.json."""
    uri = require(options, "manifests", target, "gitops", "s3://ops-bucket/manifests or ./deployments/live")
    return ManifestStore(Store(uri, store_options), f"{target}.json", render_version)
