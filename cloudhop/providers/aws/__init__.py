"""AWS: the `ecs` work pool, ECS task-definition manifests, the ECS serving target, AwsCredentials,
and the store's writes on S3 (create-only, compare-and-swap, SSE-KMS). SDKs: the `aws` extra (boto3, s3fs,
prefect-aws)."""
from cloudhop.providers.aws.manifests import ECS
from cloudhop.providers.aws.pool import ECS_POOL
from cloudhop.providers.aws.store import S3Objects
from cloudhop.providers.aws.target import from_spec, secrets_from_block, storage_options_from_block
from cloudhop.providers.base import CredentialsBlock, Provider

__all__ = ["PROVIDER"]

PROVIDER = Provider(
    name="aws", target=from_spec, extra="aws", pool_types=(ECS_POOL,), manifests=(ECS,),
    credentials=CredentialsBlock("prefect_aws:AwsCredentials", secrets_from_block, protocols=("s3",),
                                 to_storage_options=storage_options_from_block),
    store_protocols=("s3",), store_backend=S3Objects)
