"""The inference server every serving target runs.

    python -m cloudhop.serving --store URI --model NAME [--version champion|latest|N] --port P
        [--host 127.0.0.1] [--target-name local] [--no-prediction-log]
        [--log-flush-rows 1000] [--log-flush-seconds 10] [--max-rows 10000] [--threads 1]
        [--max-body-bytes 67108864] [--admin-token-file F] [--predict-tokens-file F]
        [--forwarded-allow-ips IPS]

Env: CLOUDHOP_STORE_OPTIONS (JSON storage options for a cloud store); CLOUDHOP_ADMIN_TOKEN
(or --admin-token-file): /admin/* needs `Authorization: Bearer <token>`, from any address, and
is closed without one; CLOUDHOP_PREDICT_TOKENS (or --predict-tokens-file), `ID:TOKEN` entries:
/predict then needs one of them, and the id namespaces the caller's row ids (`anon` otherwise).
A version whose checksums do not match its manifest is never loaded: at start-up the
process exits with status 2 and says why.

    POST /predict     {"rows": [{feature: value}, ...], "ids": [optional, one per row, up to 128 chars]}
                      -> {"predictions": [...], "version", "model", "row_ids": ["<caller>:<id>", ...]}
                      a row that does not fit the model's features -> 422 {"error", "row", "field"}
    GET  /health      -> {"status": "ok", "model", "version"} (503 with no model)
    GET  /version     -> {"model", "version", "sha256", "loaded_at", "target"}
    GET  /metrics     -> Prometheus text
    POST /admin/load  {"version": REF} -> {"previous", "version"}; a broken version leaves the old one serving

Every error is JSON `{"error": ...}`; an internal one quotes the request id (also in `X-Request-Id`).
Served rows go to the store's prediction log (`cloudhop.serving.log` buffers them; `cloudhop.predlog`
holds its layout and reads it back).
"""
from cloudhop.serving.model import LoadedModel, ModelLoadError, load_model

__all__ = ["LoadedModel", "ModelLoadError", "load_model", "create_app", "PredictionLog"]


def __getattr__(name: str):
    # the HTTP app and the Parquet log are imported only when used
    if name == "create_app":
        from cloudhop.serving.app import create_app
        return create_app
    if name == "PredictionLog":
        from cloudhop.serving.log import PredictionLog
        return PredictionLog
    raise AttributeError(name)
