"""CoreWeave: the `kubernetes` work pool, Kubernetes and KServe manifests, the Kubernetes serving
target and an AwsCredentials block for its S3-compatible object storage (the S3 pieces are the
aws provider's). SDKs: the `coreweave` extra (kubernetes-validate, boto3, s3fs, prefect-aws,
prefect-kubernetes)."""
from cloudhop.providers.aws.target import secrets_from_block
from cloudhop.providers.base import CredentialsBlock, Provider
from cloudhop.providers.coreweave.manifests import KSERVE, KUBERNETES
from cloudhop.providers.coreweave.target import from_spec
from cloudhop.providers.kubernetes import KUBERNETES as KUBERNETES_POOL

__all__ = ["PROVIDER"]

PROVIDER = Provider(
    name="coreweave", target=from_spec, extra="coreweave", pool_types=(KUBERNETES_POOL,),
    manifests=(KUBERNETES, KSERVE), credentials=CredentialsBlock("prefect_aws:AwsCredentials", secrets_from_block))
