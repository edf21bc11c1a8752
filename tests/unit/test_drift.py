"""Drift with Evidently: verdicts on known shifts, seeded sampling, the HTML page."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cloudhop.drift import DriftError, drift_report

NUMERIC, CATEGORICAL = ["x", "y"], ["c", "d"]


def frame(n: int, seed: int, x_shift: float = 0.0, c_probs=(0.6, 0.3, 0.1)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.normal(10.0, 2.0, n) + x_shift * 2.0,      # x_shift in standard deviations
        "y": rng.integers(0, 100, n),
        "c": rng.choice(["EWR", "JFK", "LGA"], n, p=list(c_probs)),
        "d": pd.Series(rng.choice(["a", "b"], n)).astype("category"),
    })


def test_same_distribution_no_drift():
    r = drift_report(frame(3000, 1), frame(3000, 2), numeric=NUMERIC, categorical=CATEGORICAL, html=False)
    assert not r.dataset_drift and r.drifted_columns == [] and r.share == 0.0
    assert r.n_columns == 4 and list(r.columns) == NUMERIC + CATEGORICAL
    assert r.columns["x"]["stattest"] == "Wasserstein distance (normed)"   # reference > 1000 rows
    assert r.columns["c"]["stattest"] == "Jensen-Shannon distance"
    assert all(0 <= v["score"] < v["threshold"] for v in r.columns.values())
    assert r.html is None


def test_shifted_numeric_and_changed_categorical_mix_drift():
    cur = frame(3000, 2, x_shift=3.0, c_probs=(0.1, 0.3, 0.6))
    r = drift_report(frame(3000, 1), cur, numeric=NUMERIC, categorical=CATEGORICAL, threshold=0.5, html=False)
    assert r.drifted_columns == ["x", "c"]
    assert r.share == 0.5 and r.dataset_drift          # 2 of 4 >= 0.5
    assert r.columns["x"]["score"] > 1.0                # 3 std in normed Wasserstein units
    assert r.columns["x"]["drifted"] and not r.columns["y"]["drifted"]
    r2 = drift_report(frame(3000, 1), cur, numeric=NUMERIC, categorical=CATEGORICAL, threshold=0.75, html=False)
    assert r2.share == 0.5 and not r2.dataset_drift     # 2 of 4 < 0.75
    summary = json.loads(json.dumps(r.summary(), allow_nan=False))
    assert summary["drifted_columns"] == ["x", "c"] and "html" not in summary


def test_sampling_is_seeded_and_reproducible():
    ref, cur = frame(4000, 1), frame(4000, 2, x_shift=0.05)
    kw = dict(numeric=NUMERIC, categorical=CATEGORICAL, sample_size=1500, html=False)
    a, b = drift_report(ref, cur, seed=7, **kw), drift_report(ref, cur, seed=7, **kw)
    c = drift_report(ref, cur, seed=8, **kw)
    assert a.reference_rows == a.current_rows == 1500 and a.sample_size == 1500 and a.seed == 7
    assert a.summary() == b.summary()
    assert a.columns["x"]["score"] != c.columns["x"]["score"]   # other rows drawn


def test_small_sides_are_not_sampled_up():
    r = drift_report(frame(300, 1), frame(200, 2), numeric=NUMERIC, categorical=CATEGORICAL, html=False)
    assert (r.reference_rows, r.current_rows) == (300, 200)
    assert r.columns["x"]["stattest"] == "K-S p_value"   # Evidently's default for small references


def test_html_page():
    r = drift_report(frame(2000, 1), frame(2000, 2, x_shift=3.0), numeric=NUMERIC, categorical=CATEGORICAL)
    assert isinstance(r.html, bytes) and len(r.html) > 1000
    assert b"<html" in r.html[:2000].lower()
    assert r.drifted_columns == ["x"]


def test_all_null_column_on_one_side():
    ref, cur = frame(2000, 1), frame(2000, 2)
    cur["x"] = np.nan
    ref["y"] = np.nan
    cur["y"] = np.nan
    r = drift_report(ref, cur, numeric=NUMERIC, categorical=CATEGORICAL, html=False)
    assert r.columns["x"] == {"stattest": "all null", "score": 1.0, "threshold": 1.0, "drifted": True}
    assert r.columns["y"]["drifted"] is False
    assert r.drifted_columns == ["x"] and r.share == 0.25
    assert any("x: every value is null in current" in n for n in r.notes)


def test_categories_compare_as_text():
    ref = pd.DataFrame({"x": [1.0, 2.0] * 1000, "c": [1, 2] * 1000})
    cur = pd.DataFrame({"x": [1.0, 2.0] * 1000, "c": ["1", "2"] * 1000})   # e.g. read back from JSON
    r = drift_report(ref, cur, numeric=["x"], categorical=["c"], html=False)
    assert r.drifted_columns == []


@pytest.mark.parametrize("kwargs,message", [
    (dict(numeric=["x", "nope"], categorical=[]), r"reference data lacks column\(s\) nope"),
    (dict(numeric=["x"], categorical=["x"]), "listed as both numeric and categorical"),
    (dict(numeric=["c"], categorical=[]), "numeric column 'c' in reference data has dtype str"),
    (dict(numeric=[], categorical=[]), "no columns to compare"),
])
def test_bad_inputs(kwargs, message):
    with pytest.raises(DriftError, match=message):
        drift_report(frame(50, 1), frame(50, 2), html=False, **kwargs)


def test_empty_side():
    with pytest.raises(DriftError, match="current data has no rows"):
        drift_report(frame(50, 1), frame(50, 2).head(0), numeric=NUMERIC, categorical=CATEGORICAL)
