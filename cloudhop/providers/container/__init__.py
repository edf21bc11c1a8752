"""Containers on this machine (podman's Docker API or Docker): the `docker` work pool and the
`container` serving target, which runs the serve image. SDK: the `container` extra (docker-py,
prefect-docker)."""
from cloudhop.providers.base import CredentialsBlock, PoolType, Provider
from cloudhop.providers.container.target import env_from_block, from_spec

__all__ = ["PROVIDER"]

PROVIDER = Provider(
    name="container", target=from_spec, extra="container",
    pool_types=(PoolType("docker", worker="prefect_docker.worker:DockerWorker", runs_here=True),),
    credentials=CredentialsBlock("prefect_aws:AwsCredentials", env_from_block))
