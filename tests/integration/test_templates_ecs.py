"""The ECS pool template registers a GPU task definition and starts a task, through the ECS
worker's own code path, against moto's ECS API (a real HTTP server)."""
import asyncio
import json
import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect_aws.workers.ecs_worker import ECSJobConfiguration, ECSWorker

from cloudhop.clouds import TrainingRequest, load_catalog, rank_clouds

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


@pytest.mark.parametrize("spot", [False, True], ids=["on-demand", "spot"])
def test_gpu_task_definition_registers_and_task_starts(moto_url, spot):
    """On-demand: launch type EC2. Spot: the catalog's spot capacity provider, and no launch type
    (RunTask, and moto, refuse both at once)."""
    creds = {"region_name": REGION, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    ecs = boto3.client("ecs", endpoint_url=moto_url, **creds)
    ec2 = boto3.client("ec2", endpoint_url=moto_url, **creds)
    cluster = f"cloudhop-gpu-{uuid.uuid4().hex[:6]}"
    ecs.create_cluster(clusterName=cluster)
    # one GPU instance in the cluster (moto does not check the AMI; listing its 1,300 images takes ~30 s)
    instance = ec2.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1,
                                 InstanceType="g5.xlarge")["Instances"][0]
    ecs.register_container_instance(cluster=cluster,
                                    instanceIdentityDocument=json.dumps({"instanceId": instance["InstanceId"]}))

    # the job variables placement picks for an A10G on AWS, plus what this test cluster needs
    catalog = load_catalog(ROOT / "deployments" / "clouds.yaml")
    candidate = rank_clouds(catalog, TrainingRequest(gpu_type="A10G", dataset_bytes=10**9, dataset_location="aws",
                                                     spot=spot), [], datetime.now(timezone.utc)).candidate("aws")
    assert candidate.eligible and candidate.pool == "aws-gpu"
    values = {**candidate.job_variables, "cluster": cluster, "cpu": 2048, "memory": 4096,  # fits moto's instance
              "aws_credentials": {**creds, "aws_client_parameters": {"endpoint_url": moto_url}}}
    template = json.loads((ROOT / "deployments" / "work-pools" / "aws-gpu.json").read_text())
    # the client only resolves block/variable references (none here): a closed port fails loudly if one appears
    config = asyncio.run(ECSJobConfiguration.from_template_and_values(
        template, values, client=PrefectClient("http://127.0.0.1:9/api")))
    flow_run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="happy-otter")
    config.prepare_for_flow_run(flow_run)
    assert config.task_run_request["placementConstraints"] == [
        {"type": "memberOf", "expression": "attribute:ecs.instance-type == g5.xlarge"}]

    worker = ECSWorker(work_pool_name="aws-gpu")
    task_arn, cluster_arn = worker._prepare_and_create_task(
        logging.getLogger("test"), config.aws_credentials.get_client("ecs"), config, flow_run)

    task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
    assert task["clusterArn"] == cluster_arn and cluster_arn.endswith(f"/{cluster}")
    if spot:
        assert task["capacityProviderName"] == "cloudhop-gpu-spot" and not task.get("launchType")
    else:
        assert task["launchType"] == "EC2" and not task.get("capacityProviderName")
    assert task["containerInstanceArn"] in ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    taskdef = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    assert taskdef["requiresCompatibilities"] == ["EC2"]
    container = taskdef["containerDefinitions"][0]
    assert container["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert container["image"] == "ghcr.io/cloudhop/train:latest"
    env = {e["name"]: e["value"] for e in task["overrides"]["containerOverrides"][0]["environment"]}
    assert env["CLOUDHOP_CLOUD"] == "aws" and env["PREFECT__FLOW_RUN_ID"] == str(flow_run.id)
