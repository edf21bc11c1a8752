"""The serving description every provider renders its manifests from, and what they share.

    desc = load_description("deployments/serving/serving.yaml")

A `ServingDescription` says once what to run (image, resources, replicas, env); each provider
turns it into its cloud's manifest (cloudhop/providers/<cloud>/manifests.py) and checks the
result against that cloud's schema. Every manifest runs the same command
(`python -m cloudhop.serving`) from the same image, carries the version in the env var
CLOUDHOP_VERSION and probes GET /health.

Every manifest runs the container hardened as far as its cloud allows: as the image's
non-root user `RUN_AS` (1000:1000, `USER` in docker/serve.Dockerfile), a read-only root
filesystem with a small writable /tmp, all capabilities dropped, no privilege escalation,
seccomp RuntimeDefault, no service-account token, CPU and memory limits, probe timeouts.
What a cloud cannot express is listed in its provider's manifests.py. The image may be pinned
by digest (`repo@sha256:<64 hex>`, with or without a tag); `check_image` refuses a malformed one.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["ServingDescription", "SecretRef", "ManifestError", "load_description", "VERSION_ENV", "version_of",
           "check_plain_env", "check_image", "labels", "label_value", "RUN_AS"]

VERSION_ENV = "CLOUDHOP_VERSION"
RUN_AS = 1000  # uid and gid of the serve image's user
_IMAGE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
                    r"(?::\w[\w.-]{0,127})?(?:@(?P<digest>.+))?$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A description or a rendered manifest that is not valid; the message says where."""


def check_image(image: str) -> str:
    """`image` when it is a valid reference (`[registry[:port]/]repo[:tag][@sha256:<64 hex>]`), else a ManifestError."""
    m = _IMAGE.match(image)
    if m is None:
        raise ManifestError(f"image {image!r} is not a valid image reference ([registry/]repo[:tag][@sha256:...])")
    digest = m.group("digest")
    if digest is not None and not _DIGEST.match(digest):
        raise ManifestError(f"image {image!r}: a digest must be sha256: and 64 lowercase hex digits, got {digest!r}")
    return image


class SecretRef(BaseModel):
    """An env var filled from the cloud's secret store (never a value)."""
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="secret name (K8s Secret, ECS secret ARN, GCP Secret Manager, Azure app secret)")
    key: str = Field(default="value", description="key inside the secret (K8s) / version (GCP)")


class ServingDescription(BaseModel):
    """What to run, once, for every cloud."""
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$", description="service name (DNS-1035 label)")
    model: str = Field(description="model name in the registry")
    image: str
    port: int = Field(default=8080, ge=1, le=65535)
    cpu: float = Field(default=1.0, gt=0, description="vCPU per replica")
    memory_mib: int = Field(default=2048, ge=128)
    replicas: int = Field(default=2, ge=1)
    threads: int = Field(default=1, ge=1, description="ONNX Runtime threads per request")
    probe_timeout_seconds: int = Field(default=3, ge=1, le=60, description="how long a health probe may take")
    tmp_mib: int = Field(default=64, ge=1, description="size of the writable /tmp (the root filesystem is read-only)")
    env: dict[str, str] = Field(default_factory=dict, description="extra plain env vars (no secrets)")
    secret_env: dict[str, SecretRef] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        try:
            return check_image(v)
        except ManifestError as e:
            raise ValueError(str(e)) from None

    def command(self, store: str, version: str, target: str) -> list[str]:
        return ["python", "-m", "cloudhop.serving", "--store", store, "--model", self.model,
                "--version", str(version), "--host", "0.0.0.0", "--port", str(self.port),
                "--target-name", target, "--threads", str(self.threads)]

    def plain_env(self, version: str, store_options: dict[str, Any] | None) -> dict[str, str]:
        env = dict(self.env)
        env[VERSION_ENV] = str(version)
        if store_options:
            env["CLOUDHOP_STORE_OPTIONS"] = json.dumps(store_options, sort_keys=True)
        return env


def load_description(path: str | Path) -> ServingDescription:
    p = Path(path)
    if not p.exists():
        raise ManifestError(f"serving description {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
        return ServingDescription.model_validate(data)
    except yaml.YAMLError as e:
        raise ManifestError(f"serving description {p} is not valid YAML: {e}") from None
    except ValidationError as e:
        lines = [f"  {'.'.join(map(str, x['loc'])) or '(top)'}: {x['msg']}" for x in e.errors()]
        raise ManifestError(f"invalid serving description {p}:\n" + "\n".join(lines)) from None


def check_plain_env(desc: ServingDescription, store_options: dict[str, Any] | None) -> None:
    """Refuse plain env vars or store options that look like credentials (they belong in secrets)."""
    secretish = re.compile(r"(secret|password|token|key|connection_string|credential)", re.I)
    for k in desc.env:
        if secretish.search(k):
            raise ManifestError(f"env.{k}: looks like a secret; put it under secret_env so it comes from "
                                f"the cloud's secret store")
    for k in (store_options or {}):
        if secretish.search(k):
            raise ManifestError(f"store options: {k!r} looks like a credential; the serving container gets "
                                f"credentials from its cloud identity or secret_env, not from a manifest")


def version_of(env: list[dict[str, Any]] | dict[str, str]) -> str | None:
    """The CLOUDHOP_VERSION in a container's env (a list of name/value pairs or a mapping)."""
    if isinstance(env, dict):
        return env.get(VERSION_ENV)
    for e in env or []:
        if e.get("name") == VERSION_ENV:
            return e.get("value")
    return None


def labels(desc: ServingDescription, target: str) -> dict[str, str]:
    """The labels every cloudhop serving resource carries (Kubernetes-style keys)."""
    return {"app.kubernetes.io/name": desc.name, "app.kubernetes.io/part-of": "cloudhop",
            "cloudhop/target": target, **desc.labels}


def label_value(s: str) -> str:
    """`s` as a label value clouds with strict label syntax accept (lowercase, [a-z0-9_-], 63 chars)."""
    return re.sub(r"[^a-z0-9_-]", "-", s.lower())[:63]
