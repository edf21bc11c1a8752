"""CoreWeave: artifacts in its S3-compatible object storage, the server as a Kubernetes Deployment
(or a KServe InferenceService) on a CoreWeave cluster.

    - name: coreweave-lga1
      kind: coreweave
      options:
        store: s3://my-cw-bucket/cloudhop
        endpoint_url: https://cwobject.com            # the S3 endpoint of CoreWeave object storage
        endpoint: https://flights.my-org.coreweave.app
        workload: deployment                            # or kserve
        namespace: tenant-my-org-serving
        control: kubectl                                # kubectl (needs a kubeconfig) or gitops
        context: coreweave                              # kubeconfig context (kubectl)
        manifests: s3://ops/manifests                   # where gitops writes (gitops)
        credentials: coreweave-object-storage           # Prefect AwsCredentials block (access key + secret)

The S3 client (s3fs/boto) is reached only through the store (the S3 pieces are the aws provider's);
kubectl is a subprocess.
"""
from __future__ import annotations

import json
import subprocess
from typing import Any

from cloudhop.providers.aws.store import s3_options
from cloudhop.providers.coreweave.manifests import KSERVE, KUBERNETES
from cloudhop.store import Store
from cloudhop.targets.base import TargetError
from cloudhop.targets.cloud import (CloudTarget, Endpoint, check_options, description_for, gitops_control,
                                    find_version, require, require_store)
from cloudhop.targets.description import ServingDescription
from cloudhop.targets.manifests import render_kind

__all__ = ["CoreWeaveTarget", "Kubectl", "from_spec"]

OPTIONS = {"store", "endpoint_url", "endpoint", "workload", "namespace", "control", "context", "manifests",
           "credentials", "admin_token_secret", "description", "image", "service", "hot_swap", "region"}


class Kubectl:
    """`kubectl apply` of the rendered manifest(s) against a kubeconfig context."""

    def __init__(self, render_version: Any, kind: str, name: str, namespace: str, context: str | None = None,
                 timeout: float = 120.0):
        self._render, self.kind, self.name, self.namespace = render_version, kind, name, namespace
        self.context, self.timeout = context, timeout

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        cmd = ["kubectl", *(["--context", self.context] if self.context else []), "-n", self.namespace, *args]
        try:
            p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError:
            raise TargetError("kubectl is not installed (needed for control: kubectl)") from None
        if p.returncode != 0:
            raise TargetError(f"{' '.join(cmd[:6])}... failed: {p.stderr.strip()[:500]}")
        return p.stdout

    def apply(self, version: str) -> dict[str, Any]:
        m = self._render(version)
        docs = m if isinstance(m, list) else [m]
        out = self._run(["apply", "-f", "-"], json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
        return {"applied": out.strip()}

    def desired_version(self) -> str | None:
        try:
            obj = json.loads(self._run(["get", self.kind, self.name, "-o", "json"]))
        except TargetError as e:
            if "NotFound" in str(e):
                return None
            raise
        return find_version(obj.get("spec", {}))


class CoreWeaveTarget(CloudTarget):
    kind = "coreweave"


def _render_fn(desc: ServingDescription, workload: str, store_uri: str, target: str, namespace: str,
               server_opts: dict[str, Any] | None):
    kind = KSERVE if workload == "kserve" else KUBERNETES

    def render_version(version: str) -> Any:
        return render_kind(kind, desc, version=version, store=store_uri, target=target, namespace=namespace,
                           store_options=server_opts)
    return render_version


def from_spec(spec_target: Any, spec: Any, secrets: dict[str, Any] | None = None) -> CoreWeaveTarget:
    o, name = dict(spec_target.options), spec_target.name
    check_options(o, OPTIONS, name, "coreweave")
    secrets = dict(secrets or {})
    store_uri = require_store(o, name, "coreweave", ("s3",), "s3://my-cw-bucket/cloudhop",
                              " (CoreWeave object storage speaks S3)")
    endpoint_url = o.get("endpoint_url") or secrets.get("endpoint_url") or require(
        o, "endpoint_url", name, "coreweave", "https://cwobject.com")
    workload = o.get("workload", "deployment")
    if workload not in ("deployment", "kserve"):
        raise TargetError(f"targets.{name}.options.workload must be deployment or kserve, got {workload!r}")
    desc = description_for(spec_target, spec, o)
    namespace = o.get("namespace", "default")
    server_opts = {"client_kwargs": {"endpoint_url": endpoint_url}}
    render_version = _render_fn(desc, workload, store_uri, name, namespace, server_opts)
    store_opts = s3_options(secrets, o.get("region"), endpoint_url)
    mode = o.get("control", "kubectl")
    if mode == "gitops":
        control: Any = gitops_control(o, name, render_version, secrets.get("manifests_store_options"))
    elif mode == "kubectl":
        control = Kubectl(render_version, "inferenceservice" if workload == "kserve" else "deployment",
                          desc.name, namespace, o.get("context"))
    else:
        raise TargetError(f"targets.{name}.options.control must be kubectl or gitops, got {mode!r}")
    endpoint = require(o, "endpoint", name, "coreweave", "https://flights.my-org.coreweave.app")
    return CoreWeaveTarget(name, Store(store_uri, store_opts), control, Endpoint(endpoint, secrets.get("admin_token")),
                           hot_swap=o.get("hot_swap", True))
