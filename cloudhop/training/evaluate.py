"""Metrics, and a linear baseline fitted on the same features (the bar a model must clear)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cloudhop.training.preprocess import Preprocessor
from cloudhop.training.errors import TrainingError
from cloudhop.training.labels import encode_binary

__all__ = ["metrics", "fit_baseline", "Baseline", "HIGHER_IS_BETTER", "BASELINE_TIE", "Evaluation", "promotion"]

HIGHER_IS_BETTER = {"roc_auc": True, "accuracy": True, "log_loss": False, "rmse": False, "mae": False}
# The network starts as the baseline (a float32 copy of its weights), so a network that learned
# nothing scores the baseline's metric give or take float rounding: a gain this small is none.
BASELINE_TIE = 1e-4
_EPS = 1e-15


@dataclass
class Evaluation:
    """Holdout metrics of the candidate, the champion and the baseline, and the promotion decision."""
    metric: str
    candidate: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None
    baseline: dict[str, float]
    promote: bool
    reason: str

    def table(self) -> list[dict[str, Any]]:
        return [{"metric": name, "candidate": round(self.candidate[name], 5),
                 "champion": None if self.champion is None else round(self.champion[name], 5),
                 "baseline": round(self.baseline[name], 5)} for name in self.candidate]


def promotion(metric: str, margin: float, candidate: dict[str, float], baseline: dict[str, float],
              champion: dict[str, float] | None, champion_version: str | None, champion_error: str = "",
              require_beat_baseline: bool = True) -> tuple[bool, str]:
    """The promotion policy, two gates in turn:

    1. the baseline gate (unless `require_beat_baseline` is off): the candidate must beat the
       linear baseline fitted in the same run on `metric` (by more than BASELINE_TIE); a network
       that cannot beat a linear model on its own holdout is not served, the first model included;
    2. the champion gate: the candidate must beat the champion on `metric` by more than `margin`;
       passed when there is no champion to compare with (none yet, or one that cannot score this
       holdout: `champion_error` says why).

    Returns (promote, reason for people); the reason names the gate that failed."""
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    cand = candidate[metric]
    passed = []
    if require_beat_baseline:
        base = baseline[metric]
        if not sign * (cand - base) > BASELINE_TIE:
            return False, (f"baseline gate failed: {metric} {cand:.4f} vs same-run baseline {base:.4f}: "
                           "not better; not promoted")
        passed.append(f"beats the baseline ({metric} {cand:.4f} vs {base:.4f})")
    if champion_version is None:
        return True, "; ".join(["first model", *passed, "promoted"])
    if champion is None:
        return True, champion_error + "; ".join([*passed, "promoted"])
    promote = sign * (cand - champion[metric]) > margin
    verdict = (f"{metric} {cand:.4f} vs champion v{champion_version} {champion[metric]:.4f}: "
               f"{'better' if promote else 'not better'} by more than {margin}")
    if not promote:
        return False, f"champion gate failed: {verdict}; not promoted"
    return True, "; ".join([*passed, verdict, "promoted"])


def metrics(task: str, y_true: Any, y_pred: Any, classes: list[Any] | None = None) -> dict[str, float]:
    """binary: roc_auc, log_loss, accuracy (predicted positive when p >= 0.5); regression: rmse, mae.

    For binary, y_true is 0/1 or bool, or two other values mapped as in encode_binary (``classes``
    pins the mapping, e.g. TrainResult.classes). roc_auc is NaN when y_true holds one class only.
    """
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if task == "binary":
        y = _binary_truth(y_true, classes)
    elif task == "regression":
        y = pd.to_numeric(pd.Series(np.asarray(y_true).reshape(-1)), errors="coerce").to_numpy(dtype=np.float64)
    else:
        raise TrainingError(f"task must be 'binary' or 'regression', not {task!r}")
    if len(y) != len(p):
        raise TrainingError(f"y_true has {len(y)} values but y_pred has {len(p)}")
    if len(y) == 0:
        raise TrainingError("metrics need at least one row")
    if not np.all(np.isfinite(p)):
        raise TrainingError(f"y_pred has {int((~np.isfinite(p)).sum())} missing or infinite values")
    if task == "regression":
        if not np.all(np.isfinite(y)):
            raise TrainingError(f"y_true has {int((~np.isfinite(y)).sum())} missing or non-numeric values")
        err = p - y
        return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err)))}
    if p.min() < 0 or p.max() > 1:
        raise TrainingError(f"binary predictions must be probabilities in [0, 1]; got {p.min():.4g} .. {p.max():.4g}")
    q = np.clip(p, _EPS, 1 - _EPS)
    log_loss = -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))
    return {"roc_auc": _roc_auc(y, p), "log_loss": float(log_loss),
            "accuracy": float(np.mean((p >= 0.5) == (y == 1)))}


def _binary_truth(y_true: Any, classes: list[Any] | None) -> np.ndarray:
    s = pd.Series(np.asarray(y_true).reshape(-1))
    if classes is None:
        if pd.api.types.is_bool_dtype(s):
            classes = [False, True]
        elif pd.api.types.is_numeric_dtype(s) and s.notna().all() and s.isin([0, 1]).all():
            classes = [0, 1]
    try:
        y, _ = encode_binary(s, classes, where="y_true")
    except TrainingError as e:
        if "only one class" in str(e):  # a single string class: no way to tell which one it is
            raise TrainingError(f"{e}; pass classes=[negative, positive] to say which") from None
        raise
    return y.astype(np.float64)


def _roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney form with average ranks for ties (equals sklearn's roc_auc_score)."""
    from scipy.stats import rankdata

    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# -- baseline ------------------------------------------------------------------

def _design(preprocessor: Preprocessor, df: pd.DataFrame):
    """Sparse [one-hot categoricals | standardised numerics] (CSR)."""
    from scipy import sparse

    cat, num = preprocessor.transform(df)
    n, n_cat, n_num = len(df), cat.shape[1], num.shape[1]
    offsets = np.cumsum([0] + preprocessor.cardinalities)
    cols = np.concatenate([cat + offsets[:-1], np.broadcast_to(offsets[-1] + np.arange(n_num), (n, n_num))], axis=1)
    data = np.concatenate([np.ones((n, n_cat), dtype=np.float64), num.astype(np.float64)], axis=1)
    indptr = np.arange(0, n * (n_cat + n_num) + 1, n_cat + n_num)
    return sparse.csr_matrix((data.ravel(), cols.ravel(), indptr), shape=(n, int(offsets[-1]) + n_num))


def _with_ones(x):
    """An explicit intercept column, so ridge can use the direct (Cholesky) solver on sparse data."""
    from scipy import sparse

    return sparse.hstack([x, np.ones((x.shape[0], 1))], format="csr")


@dataclass
class Baseline:
    """A fitted linear model; ``predict`` gives probabilities (binary) or values (regression)."""
    task: str
    preprocessor: Preprocessor
    estimator: Any
    classes: list[Any] | None = None

    def linear_weights(self) -> tuple[np.ndarray, float]:
        """(weights over [one-hot categoricals | numerics], intercept), in the model's output space
        (log-odds for binary, real units for regression)."""
        if self.task == "binary":
            return np.asarray(self.estimator.coef_[0], dtype=np.float64), float(self.estimator.intercept_[0])
        coef = np.asarray(self.estimator.coef_, dtype=np.float64).ravel()
        return coef[:-1], float(coef[-1])

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        if len(df) == 0:
            return np.zeros(0, dtype=np.float64)
        if self.task == "binary":
            return self.estimator.predict_proba(_design(self.preprocessor, df))[:, 1]
        return np.asarray(self.estimator.predict(_with_ones(_design(self.preprocessor, df))), dtype=np.float64)


def fit_baseline(train_df: pd.DataFrame, *, categorical: list[str], numeric: list[str], target: str,
                 task: str, preprocessor: Preprocessor | None = None) -> Baseline:
    """Logistic regression (binary) or ridge regression on one-hot categoricals + standardised numerics."""
    from sklearn.linear_model import LogisticRegression, Ridge

    missing = [c for c in list(categorical) + list(numeric) + [target] if c not in train_df.columns]
    if missing:
        raise TrainingError(f"training data lacks column(s) {', '.join(map(repr, missing))}")
    if len(train_df) == 0:
        raise TrainingError("training data is empty (0 rows); cannot fit the baseline")
    if preprocessor is None:
        preprocessor = Preprocessor.fit(train_df, list(categorical), list(numeric))
    x = _design(preprocessor, train_df)
    if task == "binary":
        y, classes = encode_binary(train_df[target], where=f"target {target!r} in the training data")
        est = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=100)
        est.fit(x, y.astype(np.int64))
        return Baseline(task, preprocessor, est, classes)
    if task == "regression":
        y = pd.to_numeric(train_df[target], errors="coerce").to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(y)):
            raise TrainingError(f"target {target!r} in the training data has {int((~np.isfinite(y)).sum())} "
                                "missing, infinite or non-numeric values")
        est = Ridge(alpha=1.0, solver="cholesky", fit_intercept=False)  # 138 columns: normal equations are cheap
        est.fit(_with_ones(x), y)
        return Baseline(task, preprocessor, est)
    raise TrainingError(f"task must be 'binary' or 'regression', not {task!r}")
