"""GCS for the artifact store: its writes through google-cloud-storage, with create-only
(`if_generation_match=0`), compare-and-swap (`if_generation_match=<generation>`) and CMEK
(`kms_key_name`) on every write, none of which gcsfs offers."""
from __future__ import annotations

from typing import Any, Mapping

from cloudhop.providers.base import encryption_setting

__all__ = ["GcsObjects"]


def _client(options: Mapping[str, Any]) -> Any:
    """A storage client from gcsfs's options: endpoint_url (the emulator), project, token (anon, a service
    account info dict, a key file path, else application default credentials)."""
    from google.cloud import storage

    token = options.get("token")
    credentials: Any = None
    if token == "anon":
        from google.auth.credentials import AnonymousCredentials
        credentials = AnonymousCredentials()
    elif isinstance(token, dict):
        from google.oauth2 import service_account
        credentials = service_account.Credentials.from_service_account_info(token)
    elif isinstance(token, str) and token not in ("google_default", "cloud", "browser"):
        from google.oauth2 import service_account
        credentials = service_account.Credentials.from_service_account_file(token)
    endpoint = options.get("endpoint_url")
    return storage.Client(project=options.get("project") or ("<none>" if token == "anon" else None),
                          credentials=credentials,
                          client_options={"api_endpoint": endpoint} if endpoint else None)


class GcsObjects:
    """The store's writes on GCS (cloudhop.providers.ObjectBackend); one client, shared by threads."""

    def __init__(self, options: Mapping[str, Any], encryption: Mapping[str, Any] | None):
        self._kms_key_name = encryption_setting(encryption, "kms_key", "GCS",
                                                "projects/P/locations/L/keyRings/R/cryptoKeys/K")
        self._client = _client(options)

    def _blob(self, path: str) -> Any:
        """The Blob that a write to "bucket/key" goes through (carrying the CMEK key when one is set)."""
        bucket, _, key = path.partition("/")
        return self._client.bucket(bucket).blob(key, kms_key_name=self._kms_key_name)

    def get(self, path: str) -> tuple[bytes, str] | None:
        from google.api_core.exceptions import PreconditionFailed

        bucket, _, key = path.partition("/")
        while True:
            meta = self._client.bucket(bucket).get_blob(key)
            if meta is None:
                return None
            generation = meta.generation  # read first: the download below resets it from response headers
            try:
                return meta.download_as_bytes(if_generation_match=generation), str(generation)
            except PreconditionFailed:  # replaced between the two calls: read the new one
                continue

    def put(self, path: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> bool:
        from google.api_core.exceptions import PreconditionFailed

        generation = 0 if if_absent else int(if_match) if if_match else None
        try:
            self._blob(path).upload_from_string(data, if_generation_match=generation)
        except PreconditionFailed:
            return False
        return True
