"""python -m cloudhop.serving --store URI --model NAME [--version REF] --port P ...

Store options for cloud stores come from the env var CLOUDHOP_STORE_OPTIONS (JSON).
The admin token, when used, comes from CLOUDHOP_ADMIN_TOKEN.

With a public key (--public-key PATH, or CLOUDHOP_PUBLIC_KEY: a path or the PEM itself) the server
loads only versions whose manifest.sig verifies. It needs only read access to the model store:
the prediction log goes to --log-store (a prefix or bucket of its own; default: the model store).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from cloudhop.registry import Registry
from cloudhop.registry.signing import PUBLIC_KEY_ENV, SigningError, load_public_key
from cloudhop.serving.model import ModelLoadError, load_model
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

    from cloudhop.serving.app import create_app
    from cloudhop.serving.log import PredictionLog

    options = _store_options()
    store = Store(args.store, options)
    try:
        public_key = load_public_key(args.public_key) if args.public_key else None
    except SigningError as e:
        print(f"cloudhop.serving: cannot start: {e}", file=sys.stderr, flush=True)
        return 2
    registry = Registry(store, args.model, public_key=public_key)
    try:
        model = load_model(registry, args.version, args.threads)
    except ModelLoadError as e:
        print(f"cloudhop.serving: cannot start: {e}", file=sys.stderr, flush=True)
        return 2
    log = None if args.no_prediction_log else PredictionLog(
        Store(args.log_store, options) if args.log_store else store, args.model, args.target_name,
        args.log_flush_rows, args.log_flush_seconds)
    app = create_app(registry, model, target=args.target_name, prediction_log=log, max_rows=args.max_rows,
                     admin_token=os.environ.get("CLOUDHOP_ADMIN_TOKEN") or None, threads=args.threads)
    print(f"cloudhop.serving: serving {model.name} v{model.version} from {store.uri} "
          f"on http://{args.host}:{args.port} (pid {os.getpid()})", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    for sig in (signal.SIGTERM, signal.SIGINT):  # uvicorn re-raises the signal after its graceful
        signal.signal(sig, lambda *_: None)      # shutdown (log flushed): then exit 0, not -15
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
