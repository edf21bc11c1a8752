"""What a spec, an override or an event may carry: no credentials, only allowed fields and addresses.

Credentials come from Prefect credentials blocks (named in the spec: `store_credentials`,
`dataset.credentials`, a target's `options.credentials`) or from the runtime identity, never
from a spec field: a spec is copied into manifests, flow parameters and logs. Each check here
returns the problems it found as "dotted.field: what is wrong" lines (empty: fine) and reads
nothing but its input: no name is resolved, no connection is tried, so a hostile address is
refused before anything reaches it.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["credential_problems", "override_problems", "dataset_uri_problem", "dask_address_problem",
           "webhook_url_problem", "redact_options", "OVERRIDABLE", "REDACTED"]

# Words of a key name that mark it as a credential (the name is split on _, -, . and camelCase).
_SECRET_WORDS = {"key", "keys", "secret", "secrets", "token", "password", "passwd", "pwd", "passphrase",
                 "credential", "credentials", "sas", "sig", "signature", "auth", "authorization", "bearer",
                 "cookie", "apikey", "accesskey", "secretkey", "privatekey", "accountkey", "connectionstring"}
_SECRET_PHRASES = ("connection_string", "private_key", "access_key", "account_key", "api_key", "client_secret")
# Key names with a secret-sounding word that name no secret: encryption key ids and names.
_NOT_SECRET = {"ssekmskeyid", "kms_key_id", "kms_key_name", "sse_kms_key_id", "encryption_key_name"}
# gcsfs's `token` takes a mode as well as a credential: "anon" is anonymous access.
_NOT_SECRET_VALUES = {"token": {"anon"}}
# Fields whose value names a block (never holds a secret): the block's name is all they take.
_BLOCK_FIELDS = {"store_credentials", "dataset.credentials", "targets.*.options.credentials",
                 "targets.*.options.admin_token_secret"}

# Dotted fields a run's `overrides` may change (fnmatch patterns): training knobs, windows, the
# dataset's size and location, the promotion and drift thresholds. Never targets, stores,
# images, compute placement or credentials.
OVERRIDABLE = ("split.*", "model.*", "dataset.uri", "dataset.format", "dataset.engine", "dataset.limit",
               "evaluation.metric", "evaluation.promote_margin", "drift.threshold", "drift.sample_size")

_DATASET_SCHEMES = ("file", "s3", "gs", "gcs", "az", "abfs", "abfss", "builtin")
_HTTP = ("http", "https")
_METADATA_NAMES = {"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                   "instance-data.ec2.internal"}
# AWS/GCP/Azure instance metadata, AWS's IPv6 one, Alibaba's, ECS task metadata.
_METADATA_ADDRESSES = {ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200",
                                                         "169.254.170.2")}
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
REDACTED = "<redacted>"


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [w for w in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if w]


def _is_credential_key(name: str, value: Any) -> bool:
    norm = "_".join(_words(name))
    if norm in _NOT_SECRET or name.lower() in _NOT_SECRET:
        return False
    if isinstance(value, str) and value in _NOT_SECRET_VALUES.get(norm, ()):
        return False
    return bool(set(_words(name)) & _SECRET_WORDS) or any(p in norm for p in _SECRET_PHRASES) \
        or norm.replace("_", "") in _SECRET_WORDS


_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def _uri_credential(value: str) -> str | None:
    """Why a string carries a URI with a credential in it (userinfo with a password, a signed query);
    the URIs inside free text count too."""
    for uri in _URI.findall(value) if "://" in value else ():
        try:
            parts = urlsplit(uri)
            password = parts.password
        except ValueError:
            continue
        if password:
            return "a URI with a user and password in it"
        for name, _ in parse_qsl(parts.query, keep_blank_values=True):
            if _is_credential_key(name, None):
                return f"a URI with a credential in its query ({name}=...)"
    return None


def _hint(path: str) -> str:
    """Where the credentials for a field go instead, as " (field)"; "" where no block field applies."""
    path = path.removeprefix("overrides.")
    if path.startswith("dataset."):
        return " (dataset.credentials)"
    if path.startswith("store"):
        return " (store_credentials)"
    m = re.match(r"(targets\.\d+)\.options\.", path)
    return f" ({m.group(1)}.options.credentials)" if m else ""


def _generic(path: str) -> str:
    return re.sub(r"\.\d+(?=\.|$)", ".*", path)


def credential_problems(data: Any, path: str = "") -> list[str]:
    """Every field of `data` (a spec, overrides or event payload as plain data) that carries a
    credential: a credential-like key, or a URI with credentials in it. Column names (the keys of
    `columns`) are data, not settings, and are not judged; values are."""
    problems: list[str] = []
    if isinstance(data, dict):
        for k, v in data.items():
            where = f"{path}.{k}" if path else str(k)
            generic = _generic(where)
            if generic in _BLOCK_FIELDS or generic.removeprefix("overrides.") in _BLOCK_FIELDS:
                if not (v is None or isinstance(v, str) or (isinstance(v, dict) and set(v) <= {"block"}
                                                            and isinstance(v.get("block"), str))):
                    problems.append(f"{where}: names a credentials block (a name), it cannot hold values")
                continue
            if path != "columns" and _is_credential_key(str(k), v):
                problems.append(f"{where}: credentials are not accepted in a spec; use a credentials block"
                                f"{_hint(where)}")
                continue
            problems += credential_problems(v, where)
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            problems += credential_problems(v, f"{path}.{i}" if path else str(i))
    elif isinstance(data, str):
        why = _uri_credential(data)
        if why:
            problems.append(f"{path or '(value)'}: {why}; credentials are not accepted in a spec, use a "
                            f"credentials block{_hint(path)}")
        elif path.rsplit(".", 1)[-1] in ("endpoint_url", "endpoint"):
            bad = _address_problem(data, private=False)
            if bad:
                problems.append(f"{path}: {bad}")
    return problems


def _leaves(over: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in over.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out += _leaves(v, key) if isinstance(v, dict) and v else [key]
    return out


def override_problems(overrides: dict[str, Any]) -> list[str]:
    """Overrides (dotted keys or nested dicts) that carry credentials, or change a field outside OVERRIDABLE."""
    problems = credential_problems(overrides, "overrides")
    named = {p.split(":", 1)[0] for p in problems}
    return problems + [f"overrides.{key}: cannot be overridden in a run (allowed: {', '.join(OVERRIDABLE)})"
                       for key in _leaves(overrides) if f"overrides.{key}" not in named
                       and not any(fnmatchcase(key, p) for p in OVERRIDABLE)]


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host literal denotes (legacy IPv4 forms too: 2852039166, 0xa9fea9fe, 0251.0376...),
    else None for a name. Resolves nothing."""
    host = host.split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))  # a parser of the literal; no lookup
    except OSError:
        return None


def _address_problem(url: str, private: bool, note: str = "not reachable from an http(s) dataset") -> str | None:
    """Why the host of `url` must not be reached: a metadata service, link-local, and (`private`)
    loopback or a private range (`note` says why). Names are judged as written, never resolved."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return f"{url!r} is not a valid URI"
    if not host:
        return None
    if host in _METADATA_NAMES:
        return f"{host} is a cloud metadata service and is never read"
    ip = _ip(host)
    if ip is None:
        return f"localhost is loopback, {note}" if private and host == "localhost" else None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip in _METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata service and is never read"
    if any(ip in net for net in _LINK_LOCAL):
        return f"{ip} is a link-local address and is never read"
    if private and (ip.is_private or ip.is_loopback or ip.is_reserved or ip.is_unspecified
                    or ip in ipaddress.ip_network("100.64.0.0/10")):
        return f"{ip} is a private or loopback address, {note}"
    return None


def dataset_uri_problem(uri: str, allow_http: bool) -> str | None:
    """Why `dataset.uri` is refused: a scheme off the allowlist (http(s) only when allowed), or an
    address that must not be read."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    if scheme in _HTTP:
        if not allow_http:
            return (f"{scheme}:// datasets are off; enable them with dataset.allow_http: true or "
                    f"CLOUDHOP_ALLOW_HTTP_DATASETS=1")
        return _address_problem(uri, private=True)
    if scheme not in _DATASET_SCHEMES:
        return (f"scheme {scheme}:// is not accepted; use one of {', '.join(_DATASET_SCHEMES)} "
                f"(or http(s) when enabled)")
    return None


def webhook_url_problem(url: str, allow_private: bool) -> str | None:
    """Why an alert webhook is refused: not http(s), a metadata or link-local address, or (unless
    `allow_private`, for a receiver on this machine) loopback or a private range. The message never
    repeats the URL, which often carries a token."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _HTTP:
        return "the webhook URL must be http:// or https://"
    return _address_problem(url, private=not allow_private, note="refused for a webhook unless allowed (--allow-private)")


def dask_address_problem(address: str) -> str | None:
    """Why a Dask scheduler address is refused: plain tcp:// (or any scheme but tls://) to a host
    that is not loopback, or a metadata or link-local address."""
    scheme, _, rest = address.partition("://")
    if not rest:
        scheme, rest = "tcp", address
    scheme = scheme.lower()
    if scheme == "inproc":
        return None
    try:
        host = (urlsplit(f"{scheme}://{rest}").hostname or "").lower()
    except ValueError:
        return f"{address!r} is not a valid scheduler address"
    bad = _address_problem(f"{scheme}://{rest}", private=False)
    if bad:
        return bad
    ip = _ip(host)
    if host == "localhost" or (ip is not None and ip.is_loopback) or scheme == "tls":
        return None
    return (f"{scheme}://{host} is not loopback: a remote scheduler needs TLS (tls://{host}:PORT, with the "
            f"CA and client certificate in DASK_DISTRIBUTED__COMM__TLS__CA_FILE, __CLIENT__CERT and __CLIENT__KEY)")


def redact_options(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec (as plain data) with the value of every option replaced by REDACTED: store_options,
    dataset.storage_options and each target's options keep their keys, never their values."""
    out = dict(spec)

    def hide(options: Any) -> Any:
        return {k: REDACTED for k in options} if isinstance(options, dict) else options

    out["store_options"] = hide(out.get("store_options", {}))
    if isinstance(out.get("dataset"), dict):
        out["dataset"] = {**out["dataset"], "storage_options": hide(out["dataset"].get("storage_options", {}))}
    out["targets"] = [{**t, "options": hide(t.get("options", {}))} if isinstance(t, dict) else t
                      for t in out.get("targets", [])]
    return out
