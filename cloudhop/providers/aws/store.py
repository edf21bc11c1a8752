"""S3 for the artifact store: storage options from plain credentials, and the create-only write
(a conditional PUT, `If-None-Match: *`) that s3fs does not offer. CoreWeave's object storage
speaks S3 and uses both."""
from __future__ import annotations

from typing import Any

__all__ = ["s3_options", "put_if_absent"]


def s3_options(secrets: dict[str, Any], region: str | None, endpoint_url: str | None) -> dict[str, Any]:
    """s3fs storage options from plain credentials (empty -> the default AWS credential chain)."""
    opts: dict[str, Any] = {}
    if secrets.get("aws_access_key_id"):
        opts["key"] = secrets["aws_access_key_id"]
        opts["secret"] = secrets.get("aws_secret_access_key")
        if secrets.get("aws_session_token"):
            opts["token"] = secrets["aws_session_token"]
    client_kwargs = {k: v for k, v in (("region_name", region), ("endpoint_url", endpoint_url)) if v}
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    return opts


def put_if_absent(store: Any, path: str, data: bytes) -> bool:
    """Create `path` ("bucket/key") in `store` (a cloudhop Store on s3) only when it does not exist."""
    import boto3
    from botocore.exceptions import ClientError

    options = store.storage_options
    client_kwargs = dict(options.get("client_kwargs", {}))
    client = boto3.client("s3", endpoint_url=options.get("endpoint_url") or client_kwargs.get("endpoint_url"),
                          aws_access_key_id=options.get("key"), aws_secret_access_key=options.get("secret"),
                          region_name=client_kwargs.get("region_name"))
    bucket, _, key = path.partition("/")
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as e:
        if e.response.get("Error", {}).get("Code", "") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            return False
        raise
    store.fs.invalidate_cache(path)
    return True
