"""AWS: artifacts in S3, the server as an ECS service (a task definition revision per version).

Spec options (credentials never here: `credentials` names a Prefect AwsCredentials block that
the tasks layer resolves into `secrets`):

    - name: aws-us-east-1
      kind: aws
      options:
        store: s3://my-serving-bucket/cloudhop      # where the servers read the registry
        endpoint: https://serving.example.com       # the load balancer in front of the service
        cluster: cloudhop
        service: flights-serving                     # default: the description's name
        region: us-east-1
        credentials: aws-prod                        # Prefect block name (optional)

boto3 is imported only inside cloudhop/providers/aws/.
"""
from __future__ import annotations

from typing import Any

from cloudhop.providers.aws.manifests import ECS
from cloudhop.providers.aws.store import s3_options
from cloudhop.store import Store
from cloudhop.targets.cloud import CloudTarget, Endpoint, check_options, description_for, require, require_store
from cloudhop.targets.description import ServingDescription, version_of
from cloudhop.targets.manifests import render_kind

__all__ = ["AwsTarget", "EcsService", "from_spec", "secrets_from_block", "storage_options_from_block"]

OPTIONS = {"store", "endpoint", "cluster", "service", "region", "endpoint_url", "credentials", "admin_token_secret",
           "description", "image", "execution_role_arn", "task_role_arn", "subnets", "security_groups",
           "hot_swap"}


def secrets_from_block(block: dict[str, Any]) -> dict[str, Any]:
    """A target's secrets from an AwsCredentials block's fields (also CoreWeave's object storage keys)."""
    return {"aws_access_key_id": block.get("aws_access_key_id"),
            "aws_secret_access_key": block.get("aws_secret_access_key"),
            "aws_session_token": block.get("aws_session_token"), "region_name": block.get("region_name"),
            "endpoint_url": (block.get("aws_client_parameters") or {}).get("endpoint_url")}


def storage_options_from_block(block: dict[str, Any]) -> dict[str, Any]:
    """s3fs options for a store or dataset from an AwsCredentials block's fields (keys, region, endpoint)."""
    secrets = secrets_from_block(block)
    return s3_options(secrets, secrets["region_name"], secrets["endpoint_url"])


class EcsService:
    """An ECS service whose task definition carries the version (env CLOUDHOP_VERSION)."""

    def __init__(self, target: str, desc: ServingDescription, store_uri: str, cluster: str, service: str,
                 region: str, secrets: dict[str, Any], endpoint_url: str | None = None,
                 execution_role_arn: str | None = None, task_role_arn: str | None = None,
                 subnets: list[str] | None = None, security_groups: list[str] | None = None,
                 store_options: dict[str, Any] | None = None):
        import boto3

        self.target, self.desc, self.store_uri = target, desc, store_uri
        self.cluster, self.service, self.region = cluster, service, region
        self.roles: dict[str, Any] = {"execution_role_arn": execution_role_arn, "task_role_arn": task_role_arn}
        self.network = {"subnets": subnets or [], "security_groups": security_groups or []}
        self.store_options = store_options
        kw = {k: secrets[k] for k in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
              if secrets.get(k)}
        self.ecs = boto3.session.Session(region_name=region, **kw).client("ecs", endpoint_url=endpoint_url)

    def task_definition(self, version: str) -> dict[str, Any]:
        return render_kind(ECS, self.desc, version=version, store=self.store_uri, target=self.target,
                           region=self.region, store_options=self.store_options, **self.roles)

    def apply(self, version: str) -> dict[str, Any]:
        td = self.ecs.register_task_definition(**self.task_definition(version))["taskDefinition"]
        arn = td["taskDefinitionArn"]
        services = self.ecs.describe_services(cluster=self.cluster, services=[self.service])["services"]
        if any(s.get("status") == "ACTIVE" for s in services):
            self.ecs.update_service(cluster=self.cluster, service=self.service, taskDefinition=arn,
                                    deploymentConfiguration={"minimumHealthyPercent": 100,
                                                             "maximumPercent": 200})
        else:
            kw: dict[str, Any] = {}
            if self.network["subnets"]:
                kw["networkConfiguration"] = {"awsvpcConfiguration": {
                    "subnets": self.network["subnets"], "securityGroups": self.network["security_groups"]}}
            self.ecs.create_service(cluster=self.cluster, serviceName=self.service, taskDefinition=arn,
                                    desiredCount=self.desc.replicas, launchType="FARGATE", **kw)
        return {"task_definition": arn, "revision": td.get("revision")}

    def desired_version(self) -> str | None:
        services = self.ecs.describe_services(cluster=self.cluster, services=[self.service])["services"]
        active = [s for s in services if s.get("status") == "ACTIVE"]
        if not active:
            return None
        td = self.ecs.describe_task_definition(taskDefinition=active[0]["taskDefinition"])["taskDefinition"]
        return version_of(td["containerDefinitions"][0].get("environment", []))


class AwsTarget(CloudTarget):
    kind = "aws"


def from_spec(spec_target: Any, spec: Any, secrets: dict[str, Any] | None = None) -> AwsTarget:
    o, name = dict(spec_target.options), spec_target.name
    check_options(o, OPTIONS, name, "aws")
    secrets = dict(secrets or {})
    store_uri = require_store(o, name, "aws", ("s3",), "s3://my-bucket/cloudhop")
    endpoint = require(o, "endpoint", name, "aws", "https://serving.example.com")
    region = o.get("region") or secrets.get("region_name") or "us-east-1"
    endpoint_url = o.get("endpoint_url") or secrets.get("endpoint_url")
    desc = description_for(spec_target, spec, o)
    # what the servers need to reach the store (no credentials: the task role gives those)
    server_opts = {"client_kwargs": {"endpoint_url": endpoint_url}} if endpoint_url else None
    control = EcsService(name, desc, store_uri, require(o, "cluster", name, "aws", "cloudhop"),
                         o.get("service") or desc.name, region, secrets, endpoint_url,
                         o.get("execution_role_arn"), o.get("task_role_arn"), o.get("subnets"),
                         o.get("security_groups"), server_opts)
    store = Store(store_uri, s3_options(secrets, region, endpoint_url))
    return AwsTarget(name, store, control, Endpoint(endpoint, secrets.get("admin_token")),
                     hot_swap=o.get("hot_swap", True))
