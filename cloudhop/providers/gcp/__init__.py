"""GCP: the `vertex-ai` work pool, Cloud Run service manifests, the Cloud Run serving target,
GcpCredentials and the store's writes on GCS. SDKs: the `gcp` extra (google-cloud-storage,
google-cloud-run, gcsfs, prefect-gcp)."""
from cloudhop.providers.base import CredentialsBlock, Provider
from cloudhop.providers.gcp.manifests import CLOUD_RUN
from cloudhop.providers.gcp.pool import VERTEX_POOL
from cloudhop.providers.gcp.store import GcsObjects
from cloudhop.providers.gcp.target import from_spec, secrets_from_block, storage_options_from_block

__all__ = ["PROVIDER"]

PROVIDER = Provider(
    name="gcp", target=from_spec, extra="gcp", pool_types=(VERTEX_POOL,), manifests=(CLOUD_RUN,),
    credentials=CredentialsBlock("prefect_gcp:GcpCredentials", secrets_from_block, protocols=("gs",),
                                 to_storage_options=storage_options_from_block),
    store_protocols=("gs",), store_backend=GcsObjects)
