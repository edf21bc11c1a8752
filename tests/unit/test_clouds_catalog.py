from pathlib import Path

import pytest
import yaml

from cloudhop.clouds import CatalogError, load_catalog, parse_catalog

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deployments" / "clouds.yaml"


def minimal() -> dict:
    return {"clouds": {"aws": {
        "region": "us-east-1", "prices_as_of": "2025-06-01",
        "work_pools": [{"name": "aws-gpu", "type": "ecs"}],
        "offers": [{"gpu": "A10G", "count": 1, "on_demand": 1.0}],
        "object_store": {"uri": "s3://b", "egress_per_gb": 0.09}}}}


def test_shipped_catalog_loads_with_every_cloud_and_pool():
    cat = load_catalog(SHIPPED)
    assert set(cat.clouds) == {"coreweave", "aws", "gcp", "azure", "local", "container", "container-b"}
    pools = {p.name: p.type for _, p in cat.pools(enabled_only=False)}
    assert pools == {"coreweave-gpu": "kubernetes", "aws-gpu": "ecs", "gcp-gpu": "vertex-ai",
                     "azure-gpu": "kubernetes", "azure-cpu": "azure-container-instance", "local": "process",
                     "docker": "docker", "docker-b": "docker"}
    for cloud in cat.clouds.values():
        assert cloud.prices_as_of.year >= 2024
        assert cloud.offers
    local = cat.clouds["local"]
    assert [(o.gpu, o.on_demand, o.spot) for o in local.offers] == [("cpu", 0.0, 0.0)]
    assert local.object_store.egress_per_gb == 0
    assert cat.clouds["coreweave"].object_store.endpoint_url.startswith("https://")
    # the ACI offer is run by the CPU pool, GPU offers by the cloud's first pool
    azure = cat.clouds["azure"]
    assert {azure.pool_of(o).name for o in azure.offers if o.is_cpu} == {"azure-cpu"}
    assert {azure.pool_of(o).name for o in azure.offers if not o.is_cpu} == {"azure-gpu"}


def test_minimal_catalog_defaults():
    cat = parse_catalog(minimal())
    aws = cat.cloud("aws")
    assert aws.name == "aws" and aws.enabled and cat.image.startswith("ghcr.io/")
    assert aws.pool_of(aws.offers[0]).name == "aws-gpu"
    with pytest.raises(CatalogError, match="unknown cloud 'gcp'"):
        cat.cloud("gcp")


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["clouds"]["aws"].update(colour="red"), "clouds.aws.colour: unknown field"),
    (lambda d: d["clouds"]["aws"].pop("region"), "clouds.aws.region: required field is missing"),
    (lambda d: d["clouds"]["aws"]["offers"][0].update(on_demand=-1), "clouds.aws.offers.0.on_demand"),
    (lambda d: d["clouds"]["aws"]["offers"][0].update(count=0), "clouds.aws.offers.0.count"),
    (lambda d: d["clouds"]["aws"]["work_pools"][0].update(type="nomad"), "clouds.aws.work_pools.0.type"),
    (lambda d: d["clouds"]["aws"]["offers"][0].update(pool="elsewhere"), "offers.0.pool: 'elsewhere' is not one"),
    (lambda d: d["clouds"]["aws"].update(prices_as_of="last week"), "clouds.aws.prices_as_of"),
    (lambda d: d["clouds"]["aws"].update(name="amazon"), "clouds.aws.name: 'amazon' differs from its key"),
    (lambda d: d["clouds"].update(gcp={**d["clouds"]["aws"], "object_store": {"uri": "gs://g", "egress_per_gb": 0}}),
     "pool 'aws-gpu' is already used by cloud 'aws'"),
    (lambda d: d["clouds"]["aws"]["object_store"].pop("egress_per_gb"), "clouds.aws.object_store.egress_per_gb"),
])
def test_bad_catalog_names_the_field(mutate, expected):
    data = minimal()
    mutate(data)
    with pytest.raises(CatalogError) as e:
        parse_catalog(data, "my.yaml")
    assert "invalid cloud catalog my.yaml" in str(e.value)
    assert expected in str(e.value)


def test_load_errors(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("clouds: [unclosed")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(bad)
    bad.write_text("- a list\n")
    with pytest.raises(CatalogError, match="expected a mapping"):
        load_catalog(bad)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(minimal()))
    assert load_catalog(good).cloud("aws").offers[0].gpu == "A10G"
