"""GCP's serving manifest: a run.googleapis.com v2 Service, checked with google-cloud-run's
protobuf message (unknown fields are errors).

Hardening Cloud Run can express: CPU and memory limits, startup and liveness probes with
timeouts. It has no setting for the user (the image's `USER 1000:1000` applies), a read-only
root filesystem (/tmp is in memory), capabilities, seccomp or privilege escalation (every
instance runs in Cloud Run's own sandbox), and no way to leave out the service identity: give
the service a dedicated service account (`service_account`) that can only read the model store.
"""
from __future__ import annotations

import json
from typing import Any

from cloudhop.providers.base import ManifestKind
from cloudhop.targets.description import ManifestError, ServingDescription, label_value

__all__ = ["CLOUD_RUN", "cloud_run", "validate_cloud_run"]


def cloud_run(desc: ServingDescription, version: str, store: str, target: str,
              service_account: str | None = None, store_options: dict[str, Any] | None = None,
              canary_percent: int | None = None, previous_revision: str | None = None) -> dict[str, Any]:
    container = {
        "image": desc.image, "command": desc.command(store, version, target)[:1],
        "args": desc.command(store, version, target)[1:], "ports": [{"containerPort": desc.port}],
        "env": [{"name": k, "value": v} for k, v in sorted(desc.plain_env(version, store_options).items())]
        + [{"name": k, "valueSource": {"secretKeyRef": {"secret": s.name, "version": s.key}}}
           for k, s in sorted(desc.secret_env.items())],
        "resources": {"limits": {"cpu": str(desc.cpu), "memory": f"{desc.memory_mib}Mi"}},
        "startupProbe": {"httpGet": {"path": "/health", "port": desc.port}, "periodSeconds": 2,
                         "timeoutSeconds": desc.probe_timeout_seconds, "failureThreshold": 30},
        "livenessProbe": {"httpGet": {"path": "/health", "port": desc.port}, "periodSeconds": 10,
                          "timeoutSeconds": desc.probe_timeout_seconds, "failureThreshold": 3},
    }
    template: dict[str, Any] = {"revision": f"{desc.name}-v{version}", "containers": [container],
                                "scaling": {"minInstanceCount": desc.replicas}}
    if service_account:
        template["serviceAccount"] = service_account
    traffic = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
    if canary_percent is not None and previous_revision:
        traffic = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": int(canary_percent)},
                   {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": previous_revision,
                    "percent": 100 - int(canary_percent)}]
    return {"labels": {"cloudhop-target": label_value(target)}, "template": template, "traffic": traffic}


def validate_cloud_run(svc: dict[str, Any]) -> None:
    from google.cloud import run_v2

    try:
        run_v2.Service.from_json(json.dumps(svc), ignore_unknown_fields=False)
    except Exception as e:  # google.protobuf.json_format.ParseError
        raise ManifestError(f"Cloud Run service: {e}") from None


CLOUD_RUN = ManifestKind("cloud-run", cloud_run, validate_cloud_run)
