"""A small seeded frame shaped like a flight table: two categorical and three numeric features."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

__all__ = ["CATEGORICAL", "NUMERIC", "make_frame", "records"]

CATEGORICAL = ["carrier", "origin"]
NUMERIC = ["distance", "temp", "hour"]


def make_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """`n` rows of CATEGORICAL + NUMERIC columns, the same for the same seed; a tenth of `temp` is missing."""
    rng = np.random.default_rng(seed)
    temp = rng.normal(55, 15, n)
    temp[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "carrier": rng.choice(["AA", "B6", "DL", "UA", "WN"], n),
        "origin": rng.choice(["EWR", "JFK", "LGA"], n),
        "distance": rng.uniform(100, 2500, n).round(),
        "temp": temp,
        "hour": rng.integers(5, 23, n),
    })


def records(df: pd.DataFrame) -> list[dict]:
    """JSON-able rows, NaN -> None (what an HTTP client sends)."""
    return json.loads(df.to_json(orient="records"))
