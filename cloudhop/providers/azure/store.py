"""Azure Blob for the artifact store: its writes through azure-storage-blob, with create-only
(`overwrite=False`), compare-and-swap (`etag` + `MatchConditions.IfNotModified`) and an encryption
scope on every write, none of which adlfs offers."""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["BlobObjects", "encryption_scope"]


def encryption_scope(encryption: Mapping[str, Any] | None) -> str | None:
    """The encryption scope for every write, from the store's `encryption` option ({"scope": name})."""
    if encryption is None:
        return None
    unknown = set(encryption) - {"scope"}
    if unknown or not encryption.get("scope"):
        raise ValueError(f"store option encryption for Azure Blob takes {{scope: <encryption scope>}}; "
                         f"got keys {sorted(encryption)}")
    return str(encryption["scope"])


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
        self.encryption_scope = encryption_scope(encryption)
        self._service = _service(options)

    def _blob(self, path: str) -> Any:
        container, _, key = path.partition("/")
        return self._service.get_blob_client(container, key)

    def upload_arguments(self) -> dict[str, Any]:
        """What every upload_blob call carries besides its condition (the encryption scope, when set)."""
        return {"encryption_scope": self.encryption_scope} if self.encryption_scope else {}

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
            self._blob(path).upload_blob(data, **condition, **self.upload_arguments())
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True
