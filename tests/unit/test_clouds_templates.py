"""The committed work-pool templates are exactly what the generator makes from the installed workers."""
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cloudhop import providers
from cloudhop.clouds import CatalogError, TrainingRequest, build_template, load_catalog, parse_catalog, rank_clouds
from tasks.pools import worker_default_template

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "deployments" / "clouds.yaml")
FOLDER = ROOT / "deployments" / "work-pools"


@pytest.fixture(scope="module")
def defaults():
    return {t: worker_default_template(t)
            for t in ("kubernetes", "ecs", "vertex-ai", "azure-container-instance", "process", "docker")}


@pytest.mark.parametrize("pool", [p.name for _, p in CATALOG.pools(enabled_only=False)])
def test_committed_template_equals_generator_output(pool, defaults):
    ptype = next(p.type for _, p in CATALOG.pools(enabled_only=False) if p.name == pool)
    path = FOLDER / f"{pool}.json"
    assert path.exists(), f"{path} missing: run python -m flows.pools templates"
    assert json.loads(path.read_text()) == build_template(CATALOG, pool, defaults[ptype]), \
        f"{path} is stale: run python -m flows.pools templates"


def test_no_stray_template_files():
    names = {p.name for _, p in CATALOG.pools(enabled_only=False)}
    assert {p.stem for p in FOLDER.glob("*.json")} == names


def test_kubernetes_gpu_patch(defaults):
    t = build_template(CATALOG, "coreweave-gpu", defaults["kubernetes"])
    props = t["variables"]["properties"]
    assert "default" not in props["gpu_count"]  # unset -> the nvidia.com/gpu key is dropped
    assert props["node_selector"]["default"] == {"gpu.nvidia.com/class": "H100_NVLINK_80GB"}
    assert props["image"]["default"] == CATALOG.image
    assert props["env"]["default"] == {"CLOUDHOP_CLOUD": "coreweave"}
    job = t["job_configuration"]["job_manifest"]["spec"]
    pod = job["template"]["spec"]
    assert "completions" not in pod and "parallelism" not in pod
    assert (job["completions"], job["parallelism"]) == (1, 1)
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs["AWS_ACCESS_KEY_ID"] == {"name": "cloudhop-object-store", "key": "access-key-id", "optional": True}
    assert {"name": "AWS_ENDPOINT_URL", "value": "https://cwobject.com"} in container["env"]
    azure = build_template(CATALOG, "azure-gpu", defaults["kubernetes"])
    names = [e["name"] for e in azure["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
             ["containers"][0]["env"]]
    assert names == ["AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY"]
    # the worker's own default is left untouched
    assert "completions" in defaults["kubernetes"]["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]


def test_ecs_and_vertex_patch(defaults):
    t = build_template(CATALOG, "aws-gpu", defaults["ecs"])
    props = t["variables"]["properties"]
    assert props["launch_type"]["default"] == "EC2"
    assert props["cluster"]["default"] == "cloudhop-gpu"
    td = t["job_configuration"]["task_definition"]
    assert td["requiresCompatibilities"] == ["EC2"]
    assert td["containerDefinitions"][0]["resourceRequirements"] == [{"type": "GPU", "value": "{{ gpu_count }}"}]
    v = build_template(CATALOG, "gcp-gpu", defaults["vertex-ai"])["variables"]["properties"]
    assert (v["region"]["default"], v["accelerator_type"]["default"], v["accelerator_count"]["default"]) == \
        ("us-central1", "NVIDIA_L4", 1)


def test_local_stand_in_keeps_the_process_default(defaults):
    t = build_template(CATALOG, "coreweave-gpu", defaults["process"], local=True)
    expected = json.loads(json.dumps(defaults["process"]))
    expected["variables"]["properties"]["env"]["default"] = {"CLOUDHOP_CLOUD": "coreweave"}
    assert t == expected


def test_unknown_default_or_pool_is_an_error(defaults):
    cat = parse_catalog({"clouds": {"aws": {
        "region": "us-east-1", "prices_as_of": "2025-06-01",
        "work_pools": [{"name": "aws-gpu", "type": "ecs", "defaults": {"gpus": 2}}],
        "offers": [{"gpu": "A10G", "count": 1, "on_demand": 1.0}],
        "object_store": {"uri": "s3://b", "egress_per_gb": 0.09}}}})
    with pytest.raises(CatalogError, match="clouds.aws.work_pools.aws-gpu.defaults.gpus: not a job variable"):
        build_template(cat, "aws-gpu", defaults["ecs"])
    with pytest.raises(CatalogError, match="unknown work pool 'nope'"):
        build_template(cat, "nope", defaults["ecs"])


def _render(template: dict, job_variables: dict) -> dict:
    """The job configuration a worker gets: the template's defaults overlaid with the run's variables."""
    from prefect.utilities.templating import apply_values

    values = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
    return apply_values(template["job_configuration"], {**values, **job_variables})


def _asks_for_spot(pool_type: str, job: dict) -> bool:
    if pool_type == "ecs":
        return job["task_run_request"].get("capacityProviderStrategy") == [
            {"capacityProvider": "cloudhop-gpu-spot", "weight": 1}]
    if pool_type == "vertex-ai":
        return (job["job_spec"].get("scheduling") or {}).get("strategy") == "SPOT"
    pod = job["job_manifest"]["spec"]["template"]["spec"]
    return (pod.get("nodeSelector") or {}).get("kubernetes.azure.com/scalesetpriority") == "spot" and any(
        t.get("key") == "kubernetes.azure.com/scalesetpriority" and t.get("effect") == "NoSchedule"
        for t in pod.get("tolerations") or [])


SPOT_OFFERS = [(cloud.name, offer.gpu) for cloud in CATALOG.clouds.values() for offer in cloud.offers
               if offer.spot is not None and not providers.pool_type(cloud.pool_of(offer).type).runs_here]


def test_every_cloud_with_spot_prices_has_spot_offers_to_test():
    assert {cloud for cloud, _ in SPOT_OFFERS} == {"aws", "gcp", "azure"}


@pytest.mark.parametrize("cloud,gpu", SPOT_OFFERS)
def test_spot_placement_asks_the_pool_for_spot_capacity(cloud, gpu, defaults):
    """What placement passes for a spot offer selects spot capacity in the rendered job (an ECS
    capacity provider, Vertex AI SPOT scheduling, the AKS spot node pool); on-demand does not."""
    now = datetime.now(timezone.utc)
    for spot in (True, False):
        c = rank_clouds(CATALOG, TrainingRequest(gpu_type=gpu, spot=spot, dataset_bytes=0, dataset_location=cloud,
                                                 clouds=[cloud]), [], now).candidate(cloud)
        assert c.eligible, c.reason
        template = build_template(CATALOG, c.pool, defaults[c.pool_type])
        unknown = set(c.job_variables) - set(template["variables"]["properties"])
        assert not unknown, f"{cloud} {gpu}: {unknown} are not variables of the {c.pool_type} template"
        assert _asks_for_spot(c.pool_type, _render(template, c.job_variables)) is spot, (cloud, gpu, spot)
