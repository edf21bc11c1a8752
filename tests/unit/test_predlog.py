"""The prediction log's layout and encoding: a batch written as one part, a time range read back."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from cloudhop.predlog import Batch, dated_parts, feature_frame, part_key, read_prediction_log, write_part
from cloudhop.store import Store

UTC = timezone.utc
CATS, NUMS = ("carrier",), ("distance",)


def batch(at: datetime, version: str, rows: list[dict], preds: list[float], ids: list[str] | None = None) -> Batch:
    return Batch.from_rows(at, version, CATS, NUMS, rows, preds, ids)


def test_a_written_batch_reads_back_by_time_range(tmp_path):
    store = Store(str(tmp_path))
    at = datetime(2024, 6, 1, 12, 0, 5, tzinfo=UTC)
    key, n = write_part(store, "m", "edge", [
        batch(at, "3", [{"carrier": 7.0, "distance": "250"}, {"carrier": None, "distance": float("nan")}], [0.2, 0.9],
              ["a", "b"]),
        batch(at + timedelta(seconds=10), "3", [{"carrier": "UA", "distance": 10}], [0.4])])
    assert n == 3 and re.fullmatch(r"predictions/m/date=2024-06-01/part-120005-[0-9a-f]{8}\.parquet", key)
    schema = pq.read_schema(store.local_path(key))
    assert [(f.name, str(f.type)) for f in schema] == [
        ("served_at", "timestamp[us, tz=UTC]"), ("model", "string"), ("version", "string"), ("target", "string"),
        ("row_id", "string"), ("prediction", "double"), ("carrier", "string"), ("distance", "double")]

    df = read_prediction_log(store, "m", at, at + timedelta(seconds=10))  # end excluded
    assert df["prediction"].tolist() == [0.2, 0.9] and df["row_id"].tolist() == ["a", "b"]
    assert df["carrier"].tolist()[0] == "7" and pd.isna(df["carrier"].iloc[1]) and df["distance"].tolist()[0] == 250.0
    assert pd.isna(df["distance"].iloc[1]) and set(df["target"]) == {"edge"} and set(df["version"]) == {"3"}
    assert read_prediction_log(store, "m", at + timedelta(seconds=10))["carrier"].tolist() == ["UA"]
    assert read_prediction_log(store, "m", "2024-06-02").empty


def test_dated_parts_lists_only_the_partitions_in_range(tmp_path):
    store = Store(str(tmp_path))
    for d in ("2024-01-01", "2024-01-02", "2024-01-03"):
        store.write_bytes(f"p/date={d}/part-1.parquet", b"x")
    store.write_bytes("p/date=2024-01-02/notes.txt", b"x")
    store.write_bytes("p/date=soon/part-1.parquet", b"x")
    store.write_bytes("p/other/part-1.parquet", b"x")
    assert dated_parts(store, "p", date(2024, 1, 2), date(2024, 1, 2)) == ["p/date=2024-01-02/part-1.parquet"]
    assert len(dated_parts(store, "p", first=date(2024, 1, 2))) == 2
    assert len(dated_parts(store, "p")) == 3
    assert dated_parts(store, "nothing-here") == []


def test_a_training_frame_takes_the_form_of_logged_rows(tmp_path):
    store = Store(str(tmp_path))
    at = datetime(2024, 6, 1, tzinfo=UTC)
    rows = [{"carrier": 5, "distance": 1}, {"carrier": "AA", "distance": None}]
    write_part(store, "m", "local", [batch(at, "1", rows, [0.1, 0.2])])
    logged = read_prediction_log(store, "m")[list(CATS + NUMS)]
    train = pd.DataFrame({"carrier": pd.Series([5.0, np.nan]), "distance": [1, 2], "other": ["x", "y"]})
    framed = feature_frame(train, CATS, NUMS)
    assert list(framed.columns) == ["carrier", "distance"] and framed["distance"].dtype == np.float64
    assert framed["carrier"].tolist() == ["5", None] and logged["carrier"].tolist()[0] == framed["carrier"][0]


def test_part_keys_are_in_the_date_partition_of_utc():
    at = datetime(2024, 3, 5, 23, 30, tzinfo=timezone(timedelta(hours=-2)))  # 01:30 next day in UTC
    assert part_key("m", at).startswith("predictions/m/date=2024-03-06/part-013000-")
