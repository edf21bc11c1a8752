"""Load one model version from the registry, verified, into ONNX Runtime."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import numpy as np

from cloudhop.registry import IntegrityError, Registry, RegistryError
from cloudhop.training.preprocess import Preprocessor

__all__ = ["LoadedModel", "ModelLoadError", "load_model"]

log = logging.getLogger("cloudhop.serving")


class ModelLoadError(RuntimeError):
    """A version that cannot be served; `status` is the HTTP status that fits: 404 for a ref that names
    no version, 409 for a version refused (unsigned, wrongly signed, changed files, unloadable)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LoadedModel:
    """Everything one request needs, swapped as a single reference."""
    name: str
    version: str
    sha256: str
    loaded_at: str
    session: Any  # onnxruntime.InferenceSession
    preprocessor: Preprocessor

    def predict_columns(self, columns: Mapping[str, Sequence[Any]], n: int) -> np.ndarray:
        """Predictions for `n` rows given as one sequence of values per feature."""
        cat, num = self.preprocessor.transform_columns(columns, n)
        return self.session.run(["prediction"], {"cat": cat, "num": num})[0]

    def predict_records(self, rows: list[dict[str, Any]]) -> np.ndarray:
        cat, num = self.preprocessor.transform_records(rows)
        return self.session.run(["prediction"], {"cat": cat, "num": num})[0]


def _session(onnx_bytes: bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])


def _check_signature(session: Any, pre: Preprocessor, where: str) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    want = {"cat": ("tensor(int64)", len(pre.categorical)), "num": ("tensor(float)", len(pre.numeric))}
    for name, (dtype, width) in want.items():
        i = inputs.get(name)
        if i is None:
            raise ModelLoadError(f"{where}: model.onnx has no input {name!r} (inputs: {sorted(inputs)})")
        if i.type != dtype:
            raise ModelLoadError(f"{where}: input {name!r} is {i.type}, expected {dtype}")
        if len(i.shape) != 2 or (isinstance(i.shape[1], int) and i.shape[1] != width):
            raise ModelLoadError(f"{where}: input {name!r} has shape {i.shape}, expected [N, {width}] "
                                 f"to match preprocess.json")
    if "prediction" not in {o.name for o in session.get_outputs()}:
        raise ModelLoadError(f"{where}: model.onnx has no output 'prediction'")


def load_model(registry: Registry, ref: str, threads: int = 1) -> LoadedModel:
    """Resolve ref (number, 'latest' or alias), check the signature (with a public key set) and the
    checksums, build the session, run one warm-up row. A refused version is logged and raises 409."""
    try:
        mv = registry.get(str(ref))  # an alias's pinned digest, and the signature when a key is set
    except IntegrityError as e:
        log.error("refusing to load %s from %s: %s", ref, registry.store.uri, e)
        raise ModelLoadError(f"refusing to load {ref!r}: {e}") from None
    except RegistryError as e:
        raise ModelLoadError(str(e), status=404) from None
    where = f"model {registry.name} v{mv.version} in {registry.store.uri}"
    try:
        onnx_bytes = registry.read_file(mv, "model.onnx")  # sha256 checked before ORT sees a byte
        pre = Preprocessor.from_dict(json.loads(registry.read_file(mv, "preprocess.json")))
    except (RegistryError, FileNotFoundError) as e:
        log.error("refusing to load %s: %s", where, e)
        raise ModelLoadError(f"refusing to load {where}: {e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{where}: preprocess.json is not a valid preprocessor: {e!r}") from None
    try:
        session = _session(onnx_bytes, threads)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelLoadError(f"{where}: ONNX Runtime cannot load model.onnx: {e}") from None
    _check_signature(session, pre, where)
    model = LoadedModel(registry.name, mv.version, mv.manifest.files["model.onnx"].sha256,
                        datetime.now(timezone.utc).isoformat(timespec="seconds"), session, pre)
    try:
        out = model.predict_records([{}])
    except Exception as e:
        raise ModelLoadError(f"{where}: warm-up prediction failed: {e}") from None
    if out.shape != (1,):
        raise ModelLoadError(f"{where}: output 'prediction' has shape {list(out.shape)} for one row, expected [1]")
    return model
