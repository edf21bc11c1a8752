"""The Job the KubernetesWorker renders from the CoreWeave/AKS pool templates is a valid Kubernetes Job.

Rendered by prefect-kubernetes' own job configuration (as its worker does before submitting),
then validated strictly (unknown fields are errors) against the Kubernetes OpenAPI schemas
shipped by the kubernetes-validate package.
"""
import asyncio
import copy
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import kubernetes_validate
import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

from cloudhop.clouds import TrainingRequest, load_catalog, rank_clouds

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.34.0"  # the oldest schema set kubernetes-validate ships


def template(pool: str) -> dict:
    return json.loads((ROOT / "deployments" / "work-pools" / f"{pool}.json").read_text())


def unused_api() -> PrefectClient:
    """The worker's client is only asked to resolve block/variable references, which these
    templates do not have: one on a closed port fails loudly if that ever changes."""
    return PrefectClient("http://127.0.0.1:9/api")


def render(base_job_template: dict, values: dict) -> dict:
    """The manifest the worker would submit for a flow run with these job variables."""
    config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(
        base_job_template, values, client=unused_api()))
    config.prepare_for_flow_run(FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="happy-otter"))
    return config.job_manifest


def validate(manifest: dict) -> None:
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_coreweave_job_with_gpu_and_node_selector_is_a_valid_job():
    manifest = render(template("coreweave-gpu"), {
        "gpu_count": 1, "node_selector": {"gpu.nvidia.com/class": "A100_NVLINK_80GB"}, "env": {"EXTRA": "yes"}})
    validate(manifest)
    assert manifest["kind"] == "Job" and manifest["metadata"]["namespace"] == "cloudhop"
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert pod["nodeSelector"] == {"gpu.nvidia.com/class": "A100_NVLINK_80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert container["image"] == "ghcr.io/cloudhop/train:latest"
    env = {e["name"]: e for e in container["env"]}
    assert env["EXTRA"]["value"] == "yes" and env["CLOUDHOP_CLOUD"]["value"] == "coreweave"
    assert "PREFECT__FLOW_RUN_ID" in env
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "cloudhop-object-store"
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]  # a reference, never a value
    assert (manifest["spec"]["completions"], manifest["spec"]["parallelism"]) == (1, 1)


def test_job_without_gpu_count_has_no_gpu_limit():
    manifest = render(template("coreweave-gpu"), {})
    validate(manifest)
    assert "nvidia.com/gpu" not in manifest["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_placement_job_variables_render_on_both_kubernetes_pools():
    catalog = load_catalog(ROOT / "deployments" / "clouds.yaml")
    for gpu, cloud, pool in (("A100", "coreweave", "coreweave-gpu"), ("T4", "azure", "azure-gpu")):
        placement = rank_clouds(catalog, TrainingRequest(gpu_type=gpu, gpu_count=1, spot=cloud == "azure",
                                                         dataset_bytes=10**9, dataset_location="local"),
                                [], datetime.now(timezone.utc))
        candidate = placement.candidate(cloud)
        assert candidate.eligible and candidate.pool == pool
        manifest = render(template(pool), candidate.job_variables)
        validate(manifest)
        pod = manifest["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
        if cloud == "coreweave":
            assert pod["nodeSelector"] == {"gpu.nvidia.com/class": "A100_NVLINK_80GB"}
        else:
            assert pod["nodeSelector"] == {"kubernetes.azure.com/scalesetpriority": "spot"}
            assert any(t["key"] == "kubernetes.azure.com/scalesetpriority" for t in pod["tolerations"])


def test_the_validator_rejects_what_a_strict_api_server_would():
    # the worker's unpatched default puts Job fields in the pod spec
    with pytest.raises(kubernetes_validate.ValidationError, match="completions"):
        validate(render(KubernetesWorker.get_default_base_job_template(), {}))
    broken = copy.deepcopy(template("coreweave-gpu"))
    broken["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["nodeSelector"] = ["not", "a", "map"]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(render(broken, {"gpu_count": 1}))
