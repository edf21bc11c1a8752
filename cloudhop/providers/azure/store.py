"""Azure Blob for the artifact store: its writes through azure-storage-blob, with create-only
(`overwrite=False`), compare-and-swap (`etag` + `MatchConditions.IfNotModified`) and an encryption
scope on every write, none of which adlfs offers."""
from __future__ import annotations

from typing import Any, Mapping

from cloudhop.providers.base import encryption_setting

__all__ = ["BlobObjects"]


def _service(options: Mapping[str, Any]) -> Any:
    """A BlobServiceClient from adlfs's options: a connection string, or an account name with its key
    (else DefaultAzureCredential)."""
    from azure.storage.blob import BlobServiceClient

    if options.get("connection_string"):
        return BlobServiceClient.from_connection_string(options["connection_string"])
    account = options.get("account_name")
    if not account:
        raise ValueError("an az:// store needs storage option connection_string or account_name")
    credential = options.get("account_key") or options.get("sas_token") or options.get("credential")
    if credential is None:
        from azure.identity import DefaultAzureCredential
        credential = DefaultAzureCredential()
    return BlobServiceClient(f"https://{account}.blob.core.windows.net", credential=credential)


class BlobObjects:
    """The store's writes on Azure Blob (cloudhop.providers.ObjectBackend); one client, shared by threads."""

    def __init__(self, options: Mapping[str, Any], encryption: Mapping[str, Any] | None):
        scope = encryption_setting(encryption, "scope", "Azure Blob", "<encryption scope>")
        self._encrypted = {"encryption_scope": scope} if scope else {}  # what every upload carries
        self._service = _service(options)

    def _blob(self, path: str) -> Any:
        container, _, key = path.partition("/")
        return self._service.get_blob_client(container, key)

    def get(self, path: str) -> tuple[bytes, str] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            download = self._blob(path).download_blob()
        except ResourceNotFoundError:
            return None
        return download.readall(), str(download.properties.etag)

    def put(self, path: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> bool:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        condition: dict[str, Any] = (
            {"overwrite": False} if if_absent
            else {"overwrite": True, "etag": if_match, "match_condition": MatchConditions.IfNotModified} if if_match
            else {"overwrite": True})
        try:
            self._blob(path).upload_blob(data, **condition, **self._encrypted)
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True
