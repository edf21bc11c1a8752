"""Per-cloud manifests from one description, checked against each cloud's schema."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from cloudhop.providers import manifest_kind_names
from cloudhop.targets import description as mf
from cloudhop.targets.description import ManifestError, ServingDescription
from cloudhop.targets.manifests import main, render, validate

ROOT = Path(__file__).resolve().parents[2]
DESC = ServingDescription(name="flights-serving", model="flights", image="ghcr.io/x/serve:1",
                          secret_env={"CLOUDHOP_ADMIN_TOKEN": {"name": "admin", "key": "token"}})
KW = dict(version="7", store="s3://bucket/root", target="t1")


@pytest.mark.parametrize("cloud", manifest_kind_names())
def test_every_cloud_renders_a_valid_manifest_that_runs_the_version(cloud):
    m = render(DESC, cloud, **KW)
    text = json.dumps(m)
    assert "cloudhop.serving" in text and '"7"' in text and "/health" in text
    assert mf.VERSION_ENV in text
    assert "CLOUDHOP_ADMIN_TOKEN" in text  # as a reference to the cloud's secret store, never a value


def test_kubernetes_schema_catches_a_wrong_type():
    dep, svc = render(DESC, "kubernetes", **KW)
    dep = copy.deepcopy(dep)
    dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(ManifestError, match="containerPort"):
        validate("kubernetes", [dep, svc])
    dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 8080
    dep["spec"]["replicaz"] = 2
    with pytest.raises(ManifestError, match="replicaz"):
        validate("kubernetes", [dep, svc])


def test_kserve_predictor_is_checked_as_a_pod_spec():
    isvc = render(DESC, "kserve", **KW, canary_percent=10)
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    isvc["spec"]["predictor"]["containers"][0]["imagePullPolicy"] = 3
    with pytest.raises(ManifestError, match="imagePullPolicy"):
        validate("kserve", isvc)


def test_ecs_task_definition_is_checked_with_botocore():
    td = render(DESC, "ecs", **KW)
    assert td["containerDefinitions"][0]["secrets"] == [{"name": "CLOUDHOP_ADMIN_TOKEN", "valueFrom": "admin"}]
    td["containerDefinitions"][0]["portMapping"] = []
    with pytest.raises(ManifestError, match="portMapping"):
        validate("ecs", td)


def test_cloud_run_service_is_checked_with_the_run_v2_message():
    svc = render(DESC, "cloud-run", **KW, canary_percent=20, previous_revision="flights-serving-v6")
    assert [t["percent"] for t in svc["traffic"]] == [20, 80]
    svc["template"]["containers"][0]["cpu"] = "1"
    with pytest.raises(ManifestError, match="cpu"):
        validate("cloud-run", svc)


def test_container_app_is_checked_with_the_azure_models():
    app = render(DESC, "container-app", **KW)
    app["properties"]["template"]["containers"][0]["memoryGb"] = 2
    with pytest.raises(ManifestError, match="memoryGb"):
        validate("container-app", app)


def _pod(m, cloud):
    return m[0]["spec"]["template"]["spec"] if cloud == "kubernetes" else m["spec"]["predictor"]


@pytest.mark.parametrize("cloud", ["kubernetes", "kserve"])
def test_kubernetes_pods_run_hardened(cloud):
    pod = _pod(render(DESC, cloud, **KW), cloud)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["runAsUser"] == 1000 and sc["readOnlyRootFilesystem"]
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["resources"]["limits"] == {"cpu": "1.0", "memory": "2048Mi"}
    assert c["readinessProbe"]["timeoutSeconds"] == c["livenessProbe"]["timeoutSeconds"] == 3
    # the only writable place: an in-memory /tmp of a bounded size
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]


def test_kubernetes_schema_refuses_a_misspelt_hardening_field():
    dep, svc = render(DESC, "kubernetes", **KW)
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(ManifestError, match="readOnlyRootFilesytem"):
        validate("kubernetes", [dep, svc])


def test_ecs_container_runs_hardened():
    td = render(DESC, "ecs", **KW)
    (c,) = td["containerDefinitions"]
    assert c["user"] == "1000:1000" and c["readonlyRootFilesystem"] is True and c["privileged"] is False
    assert c["linuxParameters"] == {"capabilities": {"drop": ["ALL"]}}
    assert (c["cpu"], c["memory"]) == (1024, 2048) and c["healthCheck"]["timeout"] == 3
    assert c["mountPoints"] == [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}]
    assert td["volumes"] == [{"name": "tmp"}]


def test_cloud_run_and_container_apps_have_limits_and_probe_timeouts():
    run = render(DESC, "cloud-run", **KW)["template"]["containers"][0]
    assert run["resources"]["limits"] == {"cpu": "1.0", "memory": "2048Mi"}
    assert run["startupProbe"]["timeoutSeconds"] == run["livenessProbe"]["timeoutSeconds"] == 3
    app = render(DESC, "container-app", **KW)["properties"]["template"]["containers"][0]
    assert app["resources"] == {"cpu": 1.0, "memory": "2Gi"}
    assert {p["type"]: p["timeoutSeconds"] for p in app["probes"]} == {"Readiness": 3, "Liveness": 3}


DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("cloud", manifest_kind_names())
def test_an_image_pinned_by_digest_is_rendered_as_given(cloud):
    for image in (f"ghcr.io/x/serve@{DIGEST}", f"123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1@{DIGEST}"):
        assert image in json.dumps(render(DESC.model_copy(update={"image": image}), cloud, **KW))


@pytest.mark.parametrize("image, message", [
    ("ghcr.io/x/serve@sha256:abc", "64 lowercase hex digits"),
    (f"ghcr.io/x/serve@md5:{'a' * 32}", "must be sha256:"),
    (f"ghcr.io/x/serve@{DIGEST.upper()}", "must be sha256:"),
    ("ghcr.io/x/Serve:1", "not a valid image reference"),
    ("ghcr.io/x/serve:1 --privileged", "not a valid image reference"),
])
def test_a_malformed_image_or_digest_is_refused(image, message):
    with pytest.raises(ValueError, match=message):  # the description's own check (pydantic)
        ServingDescription(name="s", model="m", image=image)
    with pytest.raises(ManifestError, match=message):  # and again at render, after a per-target model_copy
        render(DESC.model_copy(update={"image": image}), "ecs", **KW)


def test_secrets_never_go_into_plain_env():
    leaky = DESC.model_copy(update={"env": {"AWS_SECRET_ACCESS_KEY": "x"}})
    with pytest.raises(ManifestError, match="secret_env"):
        render(leaky, "ecs", **KW)
    with pytest.raises(ManifestError, match="credential"):
        render(DESC, "kubernetes", **KW, store_options={"secret": "x"})


def test_a_bad_description_says_where(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text(yaml.safe_dump({"name": "Bad_Name", "model": "m", "image": "i", "replica": 2}))
    with pytest.raises(ManifestError) as e:
        mf.load_description(p)
    assert "name" in str(e.value) and "replica" in str(e.value)


def test_the_committed_manifests_are_generated_from_the_committed_description(tmp_path):
    main([str(ROOT / "deployments/serving/serving.yaml"), "--out", str(tmp_path)])
    for f in sorted((ROOT / "deployments/serving/generated").iterdir()):
        assert (tmp_path / f.name).read_text() == f.read_text(), f"{f.name} is stale: regenerate it"
