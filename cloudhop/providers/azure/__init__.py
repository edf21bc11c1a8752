"""Azure: the `kubernetes` (AKS) and `azure-container-instance` work pools, Container App manifests,
the Container Apps serving target, AzureBlobStorageCredentials and the store's writes on Azure Blob.
SDKs: the `azure` extra (azure-storage-blob, azure-mgmt-appcontainers, azure-identity, adlfs, prefect-azure,
prefect-kubernetes)."""
from cloudhop.providers.azure.manifests import CONTAINER_APP
from cloudhop.providers.azure.store import BlobObjects
from cloudhop.providers.azure.target import from_spec, secrets_from_block, storage_options_from_block
from cloudhop.providers.base import CredentialsBlock, PoolType, Provider
from cloudhop.providers.kubernetes import KUBERNETES

__all__ = ["PROVIDER"]

PROVIDER = Provider(
    name="azure", target=from_spec, extra="azure",
    pool_types=(KUBERNETES, PoolType("azure-container-instance",
                                     worker="prefect_azure.workers.container_instance:AzureContainerWorker")),
    manifests=(CONTAINER_APP,),
    credentials=CredentialsBlock("prefect_azure:AzureBlobStorageCredentials", secrets_from_block,
                                 protocols=("az",), to_storage_options=storage_options_from_block),
    store_protocols=("az",), store_backend=BlobObjects)
