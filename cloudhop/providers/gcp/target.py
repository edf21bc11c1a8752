"""GCP: artifacts in GCS, the server as a Cloud Run service (one revision per version).

    - name: gcp-us-central1
      kind: gcp
      options:
        store: gs://my-serving-bucket/cloudhop
        endpoint: https://flights-serving-abc-uc.a.run.app
        project: my-project
        region: us-central1
        control: cloud-run            # cloud-run (the Cloud Run Admin API) or gitops
        manifests: gs://ops/manifests # where gitops writes
        service_account: serving@my-project.iam.gserviceaccount.com
        credentials: gcp-prod         # Prefect GcpCredentials block (optional: else ADC)

google.* is imported only inside cloudhop/providers/gcp/. The Cloud Run client has no local emulator:
tests exercise the rendered, schema-checked service and the gitops path; `CloudRunService`
is a thin wrapper over `run_v2.ServicesClient` (get / create / update, wait for the operation).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cloudhop.providers.gcp.manifests import CLOUD_RUN
from cloudhop.store import Store
from cloudhop.targets.base import TargetError
from cloudhop.targets.cloud import (CloudTarget, Endpoint, check_options, description_for, gitops_control, require,
                                    require_store)
from cloudhop.targets.description import version_of
from cloudhop.targets.manifests import render_kind

__all__ = ["GcpTarget", "CloudRunService", "from_spec", "gcs_options", "secrets_from_block", "storage_options_from_block"]

OPTIONS = {"store", "endpoint", "project", "region", "control", "manifests", "service_account", "credentials",
           "admin_token_secret", "description", "image", "service", "hot_swap", "endpoint_url"}


def gcs_options(secrets: dict[str, Any], project: str | None, endpoint_url: str | None) -> dict[str, Any]:
    """gcsfs storage options from plain credentials (service account info dict, or none -> ADC)."""
    opts: dict[str, Any] = {}
    if project:
        opts["project"] = project
    if secrets.get("service_account_info"):
        opts["token"] = secrets["service_account_info"]
    if endpoint_url:  # the emulator: no auth, and no gRPC control-plane lookups gcsfs would try
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        opts["endpoint_url"] = endpoint_url
        opts.setdefault("token", "anon")
    return opts


def secrets_from_block(block: dict[str, Any]) -> dict[str, Any]:
    """A target's secrets from a GcpCredentials block's fields (service account info, else its file)."""
    info = block.get("service_account_info")
    if not info and block.get("service_account_file"):
        info = json.loads(Path(block["service_account_file"]).read_text())
    return {"service_account_info": info or None, "project": block.get("project")}


def storage_options_from_block(block: dict[str, Any]) -> dict[str, Any]:
    """gcsfs options for a store or dataset from a GcpCredentials block's fields."""
    secrets = secrets_from_block(block)
    return gcs_options(secrets, secrets["project"], None)


def _credentials(secrets: dict[str, Any]):
    info = secrets.get("service_account_info")
    if not info:
        return None  # application default credentials
    from google.oauth2 import service_account

    return service_account.Credentials.from_service_account_info(info)


class CloudRunService:
    """The Cloud Run Admin API v2 for one service: create or update it to a version, read it back."""

    def __init__(self, render_version: Any, project: str, region: str, service: str, secrets: dict[str, Any]):
        from google.cloud import run_v2

        self._render, self._run_v2 = render_version, run_v2
        self.name = f"projects/{project}/locations/{region}/services/{service}"
        self.parent, self.service_id = f"projects/{project}/locations/{region}", service
        self.client = run_v2.ServicesClient(credentials=_credentials(secrets))

    def apply(self, version: str) -> dict[str, Any]:
        from google.api_core.exceptions import NotFound

        svc = self._run_v2.Service.from_json(json.dumps(self._render(version)))
        try:
            self.client.get_service(name=self.name)
            svc.name = self.name
            op = self.client.update_service(service=svc)
        except NotFound:
            op = self.client.create_service(parent=self.parent, service=svc, service_id=self.service_id)
        done = op.result(timeout=600)
        return {"revision": done.latest_ready_revision, "uri": done.uri}

    def desired_version(self) -> str | None:
        from google.api_core.exceptions import NotFound

        try:
            svc = self.client.get_service(name=self.name)
        except NotFound:
            return None
        return version_of([{"name": e.name, "value": e.value} for e in svc.template.containers[0].env])


class GcpTarget(CloudTarget):
    kind = "gcp"


def from_spec(spec_target: Any, spec: Any, secrets: dict[str, Any] | None = None) -> GcpTarget:
    o, name = dict(spec_target.options), spec_target.name
    check_options(o, OPTIONS, name, "gcp")
    secrets = dict(secrets or {})
    store_uri = require_store(o, name, "gcp", ("gs", "gcs"), "gs://my-bucket/cloudhop")
    desc = description_for(spec_target, spec, o)
    project = o.get("project") or secrets.get("project")
    region = o.get("region", "us-central1")

    def render_version(version: str) -> Any:
        return render_kind(CLOUD_RUN, desc, version=version, store=store_uri, target=name,
                           service_account=o.get("service_account"))

    mode = o.get("control", "cloud-run")
    if mode == "gitops":
        control: Any = gitops_control(o, name, render_version, secrets.get("manifests_store_options"))
    elif mode == "cloud-run":
        control = CloudRunService(render_version, require(o, "project", name, "gcp", "my-project"), region,
                                  o.get("service") or desc.name, secrets)
    else:
        raise TargetError(f"targets.{name}.options.control must be cloud-run or gitops, got {mode!r}")
    store = Store(store_uri, gcs_options(secrets, project, o.get("endpoint_url")))
    endpoint = require(o, "endpoint", name, "gcp", "https://flights-serving-abc-uc.a.run.app")
    return GcpTarget(name, store, control, Endpoint(endpoint, secrets.get("admin_token")),
                     hot_swap=o.get("hot_swap", True))
