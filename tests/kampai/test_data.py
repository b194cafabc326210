"""Tests of kampai.data: the synthetic generator, readers, cleaning and fingerprints."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from kampai.data import (
    COORDINATE_COLUMNS,
    DEFAULT_SYNTHETIC_ROWS,
    SYNTHETIC_SOURCE,
    TAXIFARE_COLUMNS,
    clean_taxifare,
    fingerprint,
    load_dataset,
    read_table,
    synthetic_taxifare,
)
from kampai.errors import DataError, KampaiError

MIDTOWN_TRIP = {
    "key": "2013-06-15 17:26:21.0000001",
    "fare_amount": 10.0,
    "pickup_datetime": "2013-06-15 17:26:21 UTC",
    "pickup_longitude": -73.98,
    "pickup_latitude": 40.75,
    "dropoff_longitude": -73.97,
    "dropoff_latitude": 40.76,
    "passenger_count": 1,
}
TRUNCATED_GZIP_CSV = gzip.compress(("a,b\n" + "".join(f"{i},{i * 7}\n" for i in range(20_000))).encode())[:5_000]


@pytest.fixture(scope="module")
def trips() -> pd.DataFrame:
    return synthetic_taxifare(20_000, seed=3)


def _inside_nyc(frame: pd.DataFrame) -> pd.Series:
    latitudes = frame[["pickup_latitude", "dropoff_latitude"]]
    longitudes = frame[["pickup_longitude", "dropoff_longitude"]]
    return (latitudes.ge(40).all(axis=1) & latitudes.le(42).all(axis=1)
            & longitudes.ge(-74.3).all(axis=1) & longitudes.le(-72.9).all(axis=1))


def test_synthetic_taxifare_is_deterministic_for_a_seed() -> None:
    pd.testing.assert_frame_equal(synthetic_taxifare(500, seed=7), synthetic_taxifare(500, seed=7))
    assert not synthetic_taxifare(500, seed=7).equals(synthetic_taxifare(500, seed=8))


def test_synthetic_taxifare_has_the_kaggle_schema(trips: pd.DataFrame) -> None:
    assert tuple(trips.columns) == TAXIFARE_COLUMNS
    assert trips["key"].is_unique
    assert trips["key"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{7}").all()
    assert trips["pickup_datetime"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC").all()
    assert trips["key"].str[:19].equals(trips["pickup_datetime"].str[:19])
    years = pd.to_datetime(trips["pickup_datetime"], format="%Y-%m-%d %H:%M:%S UTC").dt.year
    assert set(years) == set(range(2009, 2016))
    assert trips["passenger_count"].between(0, 6).all()


def test_synthetic_taxifare_dtypes_match_the_real_sample(real_sample: Path, trips: pd.DataFrame) -> None:
    real = read_table(real_sample)
    assert tuple(real.columns) == TAXIFARE_COLUMNS
    pd.testing.assert_series_equal(trips.dtypes, real.dtypes)
    assert real["key"].dtype == real["pickup_datetime"].dtype == "str"


def test_synthetic_taxifare_fares_resemble_the_real_sample(trips: pd.DataFrame) -> None:
    clean = clean_taxifare(trips)
    assert 7.5 <= clean["fare_amount"].median() <= 9.5
    assert 10.0 <= clean["fare_amount"].mean() <= 12.5
    assert (clean["passenger_count"] == 1).mean() > 0.6
    jfk_flat = clean["fare_amount"].between(40, 60).mean()
    assert 0.01 < jfk_flat < 0.06


def test_synthetic_taxifare_has_each_kind_of_dirty_row(trips: pd.DataFrame) -> None:
    zero = (trips[list(COORDINATE_COLUMNS)] == 0).all(axis=1)
    assert zero.any()
    assert (~zero & ~_inside_nyc(trips)).any()
    assert (trips["fare_amount"] <= 0).any()
    assert (trips["fare_amount"] > 100).any()
    assert (trips["passenger_count"] == 0).any()
    assert 0.01 < 1 - len(clean_taxifare(trips)) / len(trips) < 0.04


def test_synthetic_taxifare_rejects_a_non_positive_row_count() -> None:
    with pytest.raises(DataError, match="rows must be a positive integer, got 0"):
        synthetic_taxifare(0)


def test_clean_taxifare_removes_dirty_rows_and_never_mutates(trips: pd.DataFrame) -> None:
    before = trips.copy(deep=True)
    clean = clean_taxifare(trips)
    pd.testing.assert_frame_equal(trips, before)
    assert len(clean) < len(trips)
    assert _inside_nyc(clean).all()
    assert clean["fare_amount"].between(0, 500, inclusive="right").all()
    assert clean["passenger_count"].between(1, 8).all()
    pd.testing.assert_index_equal(clean.index, pd.RangeIndex(len(clean)))


@pytest.mark.parametrize(
    ("column", "value", "kept"),
    [
        ("fare_amount", 500.0, True),
        ("fare_amount", 500.01, False),
        ("fare_amount", 0.0, False),
        ("passenger_count", 8, True),
        ("passenger_count", 9, False),
        ("pickup_latitude", 42.0, True),
        ("dropoff_longitude", -74.31, False),
    ],
)
def test_clean_taxifare_applies_inclusive_bounds(column: str, value: float, kept: bool) -> None:
    trip = pd.DataFrame([{**MIDTOWN_TRIP, column: value}])
    assert len(clean_taxifare(trip)) == int(kept)


def test_clean_taxifare_cleans_prediction_input_without_fares(trips: pd.DataFrame) -> None:
    features = trips.drop(columns="fare_amount")
    clean = clean_taxifare(features)
    assert "fare_amount" not in clean.columns
    assert len(clean) == (_inside_nyc(features) & features["passenger_count"].between(1, 8)).sum()


def test_clean_taxifare_keeps_every_trip_of_the_kaggle_test_set(real_test_sample: Path) -> None:
    test_set = read_table(real_test_sample)
    assert "fare_amount" not in test_set.columns
    pd.testing.assert_frame_equal(load_dataset(str(real_test_sample)), test_set)


def test_clean_taxifare_rejects_a_frame_without_passenger_count(trips: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="lacks columns passenger_count"):
        clean_taxifare(trips.drop(columns="passenger_count"))


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet", ".pq"])
def test_read_table_round_trips_and_limits_rows(tmp_path: Path, suffix: str) -> None:
    frame = synthetic_taxifare(3_000, seed=1)
    path = tmp_path / f"trips{suffix}"
    if suffix.endswith(("parquet", "pq")):
        frame.to_parquet(path, row_group_size=700)
    else:
        frame.to_csv(path, index=False)
    pd.testing.assert_frame_equal(read_table(path), frame)
    pd.testing.assert_frame_equal(read_table(str(path), rows=1_234), frame.head(1_234))
    assert fingerprint(read_table(path)) == fingerprint(frame)


def test_read_table_row_limit_keeps_the_real_sample_dtypes(real_sample: Path) -> None:
    full, head = read_table(real_sample), read_table(real_sample, rows=100)
    pd.testing.assert_frame_equal(head, full.head(100))


def test_read_table_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"data file not found: {tmp_path / 'gone.csv'} .*synthetic-taxifare"):
        read_table(tmp_path / "gone.csv")


def test_read_table_rejects_an_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "trips.json"
    path.write_text("{}")
    with pytest.raises(DataError, match=r"unsupported data file type: .*trips\.json \(use one of \.csv, \.csv\.gz"):
        read_table(path)


@pytest.mark.parametrize(
    ("name", "content", "rows", "reason"),
    [
        ("broken.parquet", b"PAR1 not really parquet", None, "ArrowInvalid"),
        ("broken.parquet", b"PAR1 not really parquet", 5, "ArrowInvalid"),
        ("broken.csv.gz", TRUNCATED_GZIP_CSV, None, "EOFError"),
        ("empty.csv", b"", None, "EmptyDataError"),
        ("ragged.csv", b"a,b\n1,2\n3,4,5,6\n", None, "ParserError: CSV parse error"),
        ("ragged.csv", b"a,b\n1,2\n3,4,5,6\n", 5, "ParserError: Error tokenizing"),
    ],
)
def test_read_table_reports_an_unreadable_file_on_one_line(
    tmp_path: Path, name: str, content: bytes, rows: int | None, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"cannot read data file {path}: {reason}") as caught:
        read_table(path, rows=rows)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, KampaiError)


def test_read_table_rejects_a_non_positive_row_limit(tmp_path: Path) -> None:
    path = tmp_path / "trips.csv"
    synthetic_taxifare(10).to_csv(path, index=False)
    with pytest.raises(DataError, match="rows must be a positive integer, got -1"):
        read_table(path, rows=-1)


def test_load_dataset_makes_and_cleans_synthetic_trips() -> None:
    raw = load_dataset(SYNTHETIC_SOURCE, clean=False)
    assert len(raw) == DEFAULT_SYNTHETIC_ROWS
    pd.testing.assert_frame_equal(load_dataset(SYNTHETIC_SOURCE), clean_taxifare(raw))
    assert len(load_dataset(SYNTHETIC_SOURCE, rows=300, seed=5, clean=False)) == 300


def test_load_dataset_cleans_a_taxifare_file(tmp_path: Path) -> None:
    path = tmp_path / "trips.parquet"
    frame = synthetic_taxifare(2_000, seed=2)
    frame.to_parquet(path)
    pd.testing.assert_frame_equal(load_dataset(str(path)), clean_taxifare(frame))
    pd.testing.assert_frame_equal(load_dataset(str(path), rows=10, clean=False), frame.head(10))


def test_load_dataset_returns_a_generic_csv_as_read(tmp_path: Path) -> None:
    path = tmp_path / "generic.csv"
    path.write_text("x,y\n1,-5\n2,0\n")
    pd.testing.assert_frame_equal(load_dataset(str(path)), pd.DataFrame({"x": [1, 2], "y": [-5, 0]}))


def test_fingerprint_is_stable_for_the_same_content(trips: pd.DataFrame) -> None:
    fingerprint_id = fingerprint(trips)
    assert len(fingerprint_id) == 16 and int(fingerprint_id, 16) >= 0
    assert fingerprint(trips.copy(deep=True)) == fingerprint_id
    assert fingerprint(trips.set_index(trips.index + 10)) == fingerprint_id
    assert fingerprint(synthetic_taxifare(20_000, seed=3)) == fingerprint_id


@pytest.mark.parametrize(
    "change",
    [
        lambda frame: frame.assign(fare_amount=frame["fare_amount"].where(frame.index != 5, 999.0)),
        lambda frame: frame.assign(key=frame["key"].where(frame.index != 0, "other")),
        lambda frame: frame.rename(columns={"fare_amount": "fare"}),
        lambda frame: frame.astype({"passenger_count": "float64"}),
        lambda frame: frame.drop(columns="key"),
        lambda frame: frame.iloc[::-1],
        lambda frame: frame.iloc[:-1],
    ],
    ids=["value", "text value", "column name", "dtype", "column dropped", "row order", "row dropped"],
)
def test_fingerprint_changes_with_any_change(trips: pd.DataFrame, change) -> None:
    assert fingerprint(change(trips)) != fingerprint(trips)
