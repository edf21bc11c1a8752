"""The manifest of a model version: what it was trained on, how it scored, and its files.

`register` builds one, `Registry.publish` adds the version's name, number, time and the
sha256 of every file, and writes it as `manifest.json`; every reader goes through this model.

The JSON on disk keeps the field names it has always had, so stores written before this
model existed read back unchanged. Unknown fields are refused (a typo never reaches a
store). Every field of `Manifest` itself is optional because a manifest holds only what its
writer set (`Registry.publish` accepts an empty one); `to_dict` writes exactly those fields,
so a manifest read back re-serialises to the same bytes. A new field in what `register`
records (say, a new key of the trainer's info) is added here first.
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Manifest", "FileEntry", "DatasetInfo", "Features", "Metrics", "ValidationSummary", "DriftSummary",
           "TrainingInfo", "AttemptCostInfo", "CostInfo"]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(_Part):
    """One file of a version, as `Registry.publish` wrote it."""
    sha256: str
    bytes: int


class DatasetInfo(_Part):
    """The data a version was trained on."""
    uri: str | None = None
    fingerprint: str | None = None
    windows: dict[str, int] = {}  # rows per window: train, validation, holdout
    unlabelled_dropped: int | None = None  # rows of the windows left out for lack of a target value


class Features(_Part):
    categorical: list[str] = []
    numeric: list[str] = []


class Metrics(_Part):
    """Holdout metrics and the promotion decision (`training.evaluate.Evaluation`)."""
    candidate: dict[str, float] = {}
    champion: dict[str, float] | None = None
    champion_version: str | None = None
    baseline: dict[str, float] = {}
    metric: str | None = None
    promote: bool | None = None
    reason: str | None = None


class ValidationSummary(_Part):
    """`ValidationResult.summary()`: the data check the version passed."""
    success: bool
    rows: int
    evaluated: int
    failed: int
    failed_expectations: list[str] = []


class DriftSummary(_Part):
    """`DriftResult.summary()`: drift between the training and holdout windows."""
    dataset_drift: bool
    share: float
    threshold: float
    drifted_columns: list[str] = []
    n_columns: int
    columns: dict[str, dict[str, Any]] = {}  # per column: Evidently's test, score, drifted
    reference_rows: int
    current_rows: int
    sample_size: int
    seed: int
    notes: list[str] = []


class TrainingInfo(_Part):
    """How the training run went: the trainer's result and where it ran."""
    steps: int | None = None
    steps_run: int | None = None
    resumed_from_step: int | None = None
    device: str | None = None
    samples_per_s: float | None = None
    best_epoch: int | None = None
    best_valid_loss: float | None = None
    onnx_torch_max_abs_diff: float | None = None
    where: str | None = None  # the cloud it trained on
    host: str | None = None
    history: list[dict[str, Any]] = []  # per epoch: epoch, step, train_loss, valid_loss, seconds


class AttemptCostInfo(_Part):
    """One training attempt, priced (`clouds.cost.AttemptCost.row()`); failed ones included."""
    cloud: str
    number: int
    outcome: str
    run_id: str | None = None
    pool: str | None = None
    offer: str | None = None  # the offer's key in its cloud: machine type, else GPU type x count
    gpu: str | None = None
    gpu_count: int | None = None
    spot: bool = False
    price_per_hour: float
    started_at: str | None = None  # ISO 8601: billing starts when the run was seen running
    ended_at: str
    billed_seconds: float
    egress_bytes: int = 0
    egress_cost: float = 0.0
    compute_cost: float
    cost: float  # compute_cost + egress_cost


class CostInfo(_Part):
    """What the retrain that made this version cost (`clouds.cost.RetrainCost.to_dict()`)."""
    model: str | None = None
    run_key: str | None = None
    currency: str = "USD"
    total: float
    wasted: float  # the cost of attempts that did not complete
    attempts: list[AttemptCostInfo] = []


class Manifest(_Part):
    """A version's manifest; `name`, `version`, `created_at` and `files` are set by `Registry.publish`."""
    name: str | None = None
    version: str | None = None
    created_at: str | None = None  # ISO 8601, UTC, kept as written
    files: dict[str, FileEntry] = {}
    parent_version: str | None = None  # the champion when this version was registered
    dataset: DatasetInfo = Field(default_factory=DatasetInfo)
    spec_hash: str | None = None
    spec: dict[str, Any] | None = None  # the pipeline spec as trained (parsed by its readers, so an old one loads)
    code_revision: str | None = None
    task: str | None = None
    target: str | None = None
    features: Features = Field(default_factory=Features)
    metrics: Metrics = Field(default_factory=Metrics)
    validation: ValidationSummary | None = None
    drift: DriftSummary | None = None
    training: TrainingInfo = Field(default_factory=TrainingInfo)
    trained_where: str | None = None
    cost: CostInfo | None = None  # absent in versions trained in-process or before costs were recorded
    run_id: str | None = None
    python: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields that were set, as plain values: what `manifest.json` holds."""
        return self.model_dump(exclude_unset=True)

    def to_json(self) -> bytes:
        """`manifest.json`'s bytes: sorted keys, two-space indent (as every version so far)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str).encode()

