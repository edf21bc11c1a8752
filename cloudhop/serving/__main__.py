"""python -m cloudhop.serving --store URI --model NAME [--version REF] --port P ...

Store options for cloud stores come from the env var CLOUDHOP_STORE_OPTIONS (JSON).
Secrets never come from a plain argument (it would show in `ps`): the admin token from the file
named by --admin-token-file or the env var CLOUDHOP_ADMIN_TOKEN; /predict tokens (`ID:TOKEN`
entries) from --predict-tokens-file or CLOUDHOP_PREDICT_TOKENS.

With a public key (--public-key PATH, or CLOUDHOP_PUBLIC_KEY: a path or the PEM itself) the server
loads only versions whose manifest.sig verifies. It needs only read access to the model store:
the prediction log goes to --log-store (a prefix or bucket of its own; default: the model store),
and so does the audit event of each hot swap (/admin/load), under `audit/<model>/`.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from cloudhop.registry import Registry
from cloudhop.registry.audit import AuditLog
from cloudhop.registry.signing import PUBLIC_KEY_ENV, SigningError, load_public_key
from cloudhop.serving.auth import TokenError, parse_predict_tokens, read_secret
from cloudhop.serving.model import ModelLoadError, load_model
from cloudhop.serving.request import RequestError
from cloudhop.store import Store

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cloudhop.serving", description="cloudhop inference server")
    p.add_argument("--store", required=True, help="artifact store URI")
    p.add_argument("--model", required=True, help="model name in the registry")
    p.add_argument("--version", default="champion", help="version number, 'latest' or an alias (default: champion)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--target-name", default="local", help="recorded with every logged prediction")
    p.add_argument("--no-prediction-log", action="store_true")
    p.add_argument("--log-flush-rows", type=int, default=1000)
    p.add_argument("--log-flush-seconds", type=float, default=10.0)
    p.add_argument("--max-rows", type=int, default=10_000, help="most rows per /predict request")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per call")
    p.add_argument("--max-body-bytes", type=int, default=64 << 20, help="largest request body, counted as it arrives")
    p.add_argument("--admin-token-file", help="file holding the admin token (else env CLOUDHOP_ADMIN_TOKEN; "
                                              "without either /admin/* is closed)")
    p.add_argument("--predict-tokens-file", help="file of ID:TOKEN entries; /predict then needs one of them "
                                                 "(else env CLOUDHOP_PREDICT_TOKENS; without either it is open)")
    p.add_argument("--forwarded-allow-ips", help="trust X-Forwarded-For/-Proto only from these proxy addresses "
                                                 "(comma-separated); by default no proxy header is trusted")
    # for benchmarks/bench_serving.py's A/B of the row check's cost only: never in a deployment
    p.add_argument("--benchmark-unchecked-rows", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--public-key", default=os.environ.get(PUBLIC_KEY_ENV) or None,
                   help=f"Ed25519 public key (PEM file): serve only versions it signed (default: ${PUBLIC_KEY_ENV})")
    p.add_argument("--log-store", help="store URI for the prediction log (default: the model store); lets the "
                                       "server run with read-only access to models/")
    return p.parse_args(argv)


def _store_options() -> dict:
    raw = os.environ.get("CLOUDHOP_STORE_OPTIONS", "").strip()
    if not raw:
        return {}
    try:
        opts = json.loads(raw)
    except json.JSONDecodeError as e:  # never echo the value: it may hold credentials
        raise SystemExit(f"cloudhop.serving: CLOUDHOP_STORE_OPTIONS is not valid JSON ({e.msg} at char {e.pos})")
    if not isinstance(opts, dict):
        raise SystemExit("cloudhop.serving: CLOUDHOP_STORE_OPTIONS must be a JSON object")
    return opts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import prometheus_client
    import uvicorn

    prometheus_client.disable_created_metrics()  # this process only: no *_created samples in /metrics

    from cloudhop.serving.app import check_ref, create_app
    from cloudhop.serving.log import PredictionLog

    options = _store_options()
    try:
        admin_token = read_secret("CLOUDHOP_ADMIN_TOKEN", args.admin_token_file)
        admin_token = admin_token.strip().splitlines()[0] if admin_token else None
        raw = read_secret("CLOUDHOP_PREDICT_TOKENS", args.predict_tokens_file)
        where = args.predict_tokens_file or "CLOUDHOP_PREDICT_TOKENS"
        predict_tokens = parse_predict_tokens(raw, where) if raw else None
        version = check_ref(args.version)
        public_key = load_public_key(args.public_key) if args.public_key else None
    except (TokenError, RequestError, SigningError) as e:
        print(f"cloudhop.serving: cannot start: {e}", file=sys.stderr, flush=True)
        return 2
    store = Store(args.store, options)
    registry = Registry(store, args.model, public_key=public_key)
    try:
        model = load_model(registry, version, args.threads)
    except ModelLoadError as e:
        print(f"cloudhop.serving: cannot start: {e}", file=sys.stderr, flush=True)
        return 2
    writable = Store(args.log_store, options) if args.log_store else store  # the store this server writes
    log = None if args.no_prediction_log else PredictionLog(
        writable, args.model, args.target_name, args.log_flush_rows, args.log_flush_seconds)
    app = create_app(registry, model, target=args.target_name, prediction_log=log, max_rows=args.max_rows,
                     admin_token=admin_token, predict_tokens=predict_tokens, threads=args.threads,
                     max_body_bytes=args.max_body_bytes, check_rows=not args.benchmark_unchecked_rows,
                     audit=AuditLog(writable))
    print(f"cloudhop.serving: serving {model.name} v{model.version} from {store.uri} "
          f"on http://{args.host}:{args.port} (pid {os.getpid()}); admin endpoints "
          f"{'need the admin token' if admin_token else 'closed (no admin token)'}; /predict "
          f"{f'needs one of {len(predict_tokens)} tokens' if predict_tokens else 'open'}", file=sys.stderr, flush=True)
    if args.benchmark_unchecked_rows:
        print("cloudhop.serving: WARNING rows are NOT checked against the model (--benchmark-unchecked-rows)",
              file=sys.stderr, flush=True)
    # proxy headers rewrite the client address only for the proxies named; uvicorn's default trusts loopback
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=10, proxy_headers=bool(args.forwarded_allow_ips),
                            forwarded_allow_ips=args.forwarded_allow_ips or "", server_header=False)
    server = uvicorn.Server(config)
    for sig in (signal.SIGTERM, signal.SIGINT):  # uvicorn re-raises the signal after its graceful
        signal.signal(sig, lambda *_: None)      # shutdown (log flushed): then exit 0, not -15
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
