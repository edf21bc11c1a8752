"""Test kit for pipelines built on cloudhop: real, small stand-ins that need no cloud and no Prefect.

- `make_frame`, `records`, `CATEGORICAL`, `NUMERIC`: a seeded synthetic flights-like frame, and
  its rows as an HTTP client sends them.
- `publish_version`, `export_onnx`, `ort_predict`: a tiny real ONNX model version in a registry,
  with its preprocessor and smoke set, and the offline reference prediction.
- `MemoryTarget`: a serving Target whose server is a variable; it records every call and can be
  down, flaky, refuse a version, or serve a version that answers wrongly.

cloudhop's own tests and benchmarks use these; nothing else in the library imports this package.
"""
from cloudhop.testing.frames import CATEGORICAL, NUMERIC, make_frame, records
from cloudhop.testing.models import export_onnx, ort_predict, publish_version
from cloudhop.testing.targets import MemoryTarget

__all__ = ["CATEGORICAL", "NUMERIC", "make_frame", "records", "export_onnx", "ort_predict", "publish_version",
           "MemoryTarget"]
