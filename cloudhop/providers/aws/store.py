"""S3 for the artifact store: storage options from plain credentials, and the store's writes through
boto3: create-only (`If-None-Match: *`), compare-and-swap (`If-Match: <ETag>`) and SSE-KMS on every
write, none of which s3fs offers. CoreWeave's object storage speaks S3 and uses the same."""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["s3_options", "S3Objects", "sse_arguments"]

_PRECONDITION = ("PreconditionFailed", "412", "ConditionalRequestConflict")


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


def sse_arguments(encryption: Mapping[str, Any] | None) -> dict[str, str]:
    """put_object's SSE-KMS arguments for the store's `encryption` option ({"kms_key": key id or ARN};
    an empty mapping: the bucket's AWS-managed KMS key)."""
    if encryption is None:
        return {}
    unknown = set(encryption) - {"kms_key"}
    if unknown:
        raise ValueError(f"store option encryption: unknown key(s) {sorted(unknown)} for S3; known: ['kms_key']")
    args = {"ServerSideEncryption": "aws:kms"}
    if encryption.get("kms_key"):
        args["SSEKMSKeyId"] = str(encryption["kms_key"])
    return args


class S3Objects:
    """The store's writes on S3 (cloudhop.providers.ObjectBackend); one boto3 client, shared by threads."""

    def __init__(self, options: Mapping[str, Any], encryption: Mapping[str, Any] | None):
        import boto3

        self._sse = sse_arguments(encryption)
        client_kwargs = dict(options.get("client_kwargs", {}))
        self._client = boto3.client(
            "s3", endpoint_url=options.get("endpoint_url") or client_kwargs.get("endpoint_url"),
            aws_access_key_id=options.get("key"), aws_secret_access_key=options.get("secret"),
            aws_session_token=options.get("token"), region_name=client_kwargs.get("region_name"))

    def get(self, path: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        bucket, _, key = path.partition("/")
        try:
            r = self._client.get_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code", "") in ("NoSuchKey", "404"):
                return None
            raise
        return r["Body"].read(), r["ETag"]

    def put(self, path: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> bool:
        from botocore.exceptions import ClientError

        bucket, _, key = path.partition("/")
        condition = {"IfNoneMatch": "*"} if if_absent else {"IfMatch": if_match} if if_match else {}
        try:
            self._client.put_object(Bucket=bucket, Key=key, Body=data, **condition, **self._sse)
        except ClientError as e:
            if condition and e.response.get("Error", {}).get("Code", "") in _PRECONDITION:
                return False
            raise
        return True
