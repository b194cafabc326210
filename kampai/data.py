"""Taxi-fare data: a seeded synthetic generator, file readers and writers, cleaning and fingerprints."""

from __future__ import annotations

import hashlib
import itertools
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kampai.errors import DataError

COORDINATE_COLUMNS = ("pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude")
TAXIFARE_COLUMNS = ("key", "fare_amount", "pickup_datetime", *COORDINATE_COLUMNS, "passenger_count")
SYNTHETIC_SOURCE = "synthetic-taxifare"
DEFAULT_SYNTHETIC_ROWS = 10_000

NYC_LATITUDE = (40.0, 42.0)
NYC_LONGITUDE = (-74.3, -72.9)
MAX_FARE = 500.0
PASSENGER_COUNT = (1, 8)
EARTH_RADIUS_KM = 6371.0088

_NYC_BOX = {column: NYC_LATITUDE if column.endswith("latitude") else NYC_LONGITUDE for column in COORDINATE_COLUMNS}
_CSV_SUFFIXES = (".csv", ".csv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_DICTIONARY_BYTES = 64 * 1024  # a Parquet column's dictionary stops growing here: then plain, not 1 MB of hashing first
TABLE_SUFFIXES = _CSV_SUFFIXES + _PARQUET_SUFFIXES  # what read_table and write_table take
# Text even where pyarrow would infer timestamps, so the CSV readers and the generator agree.
_TEXT_COLUMNS = {"key": "str", "pickup_datetime": "str"}
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, pa.ArrowException)

_TIMEZONE = "America/New_York"
_FIRST_DAY = np.datetime64("2009-01-01", "s")
_DAYS = (np.datetime64("2015-07-01", "s") - _FIRST_DAY) // np.timedelta64(1, "D")
# Relative taxi demand per local hour 0..23: quiet before dawn, busiest in the evening.
_HOUR_DEMAND = np.array(
    [3.9, 2.9, 2.2, 1.6, 1.2, 1.0, 2.0, 3.5, 4.4, 4.5, 4.3, 4.4,
     4.6, 4.5, 4.7, 4.6, 4.3, 5.1, 6.0, 6.3, 5.9, 5.8, 5.7, 4.9]
)
_PASSENGER_SHARES = np.array([0.706, 0.142, 0.043, 0.019, 0.069, 0.021])
# Where trips start: longitude, latitude, their standard deviations (degrees), weight.
_CITY_CLUSTERS = np.array([
    [-74.005, 40.715, 0.008, 0.010, 0.14],  # downtown
    [-73.995, 40.735, 0.010, 0.010, 0.20],  # village, chelsea
    [-73.982, 40.755, 0.010, 0.010, 0.30],  # midtown
    [-73.958, 40.775, 0.008, 0.010, 0.12],  # upper east side
    [-73.975, 40.787, 0.007, 0.010, 0.10],  # upper west side
    [-73.945, 40.812, 0.010, 0.012, 0.03],  # harlem
    [-73.960, 40.685, 0.025, 0.020, 0.06],  # brooklyn
    [-73.900, 40.745, 0.030, 0.020, 0.05],  # queens
])
_AIRPORTS = np.array([[-73.7781, 40.6413], [-73.8740, 40.7769], [-74.1745, 40.6895]])  # JFK LGA EWR
_AIRPORT_SHARES = np.array([0.45, 0.45, 0.10])
_AIRPORT_TRIP_SHARE = 0.045
_AIRPORT_SPREAD_DEGREES = 0.004
_JFK_RADIUS_KM = 2.0
_MEDIAN_TRIP_KM = 2.3
_TRIP_KM_SIGMA = 0.75
# Before / from the fare rise of 2012-09-04. Columns: flag drop, per road km,
# per slow-traffic minute, JFK flat fare (USD).
_TARIFFS = np.array([[2.5, 1.243, 0.2, 45.0], [2.5, 1.553, 0.5, 52.0]])
_FARE_RISE = pd.Timestamp("2012-09-04", tz=_TIMEZONE)
_FARE_NOISE_SIGMA = 0.05
_ZERO_COORDINATE_SHARE = 0.012
_SWAPPED_COORDINATE_SHARE = 0.002
_NON_POSITIVE_FARE_SHARE = 0.001
_NO_PASSENGER_SHARE = 0.004
_HUGE_FARE_SHARE = 0.0005


def haversine_km(
    start_longitude: np.ndarray, start_latitude: np.ndarray, end_longitude: np.ndarray, end_latitude: np.ndarray
) -> np.ndarray:
    """Great-circle distance in km between points given in degrees."""
    lon1, lat1, lon2, lat2 = (
        np.radians(np.asarray(values, dtype=np.float64))
        for values in (start_longitude, start_latitude, end_longitude, end_latitude)
    )
    half_chord = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(half_chord))


def synthetic_taxifare(rows: int, seed: int = 0) -> pd.DataFrame:
    """Generate NYC taxi trips with the Kaggle schema, about 2 % of them dirty.

    Parameters
    ----------
    rows : int
        Number of trips.
    seed : int, default=0
        Seed of the random generator; the same seed gives the same frame.

    Returns
    -------
    pandas.DataFrame
        Columns ``TAXIFARE_COLUMNS`` with the dtypes pandas reads from the Kaggle CSV.
    """
    _check_row_count(rows)
    rng = np.random.default_rng(seed)
    local_times = _draw_local_times(rng, rows)
    coordinates = _draw_trips(rng, rows)
    fares = _fares(rng, local_times, coordinates)
    passengers = rng.choice(np.arange(1, 7), size=rows, p=_PASSENGER_SHARES)
    _soil(rng, coordinates, fares, passengers)
    return _taxifare_frame(local_times, fares, coordinates, passengers)


def _check_row_count(rows: int | None) -> None:
    if rows is not None and rows < 1:
        raise DataError(f"rows must be a positive integer, got {rows} (give rows >= 1, or none for all rows)")


def _draw_local_times(rng: np.random.Generator, rows: int) -> pd.DatetimeIndex:
    days = rng.integers(0, _DAYS, rows)
    hours = rng.choice(24, size=rows, p=_HOUR_DEMAND / _HOUR_DEMAND.sum())
    seconds = rng.integers(0, 3600, rows)
    naive = _FIRST_DAY + (days * 86_400 + hours * 3_600 + seconds).astype("timedelta64[s]")
    return pd.DatetimeIndex(naive).tz_localize(_TIMEZONE, ambiguous=np.zeros(rows, dtype=bool), nonexistent="shift_forward")


def _draw_trips(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Trips as a ``(rows, 4)`` array in ``COORDINATE_COLUMNS`` order."""
    pickup = _draw_city_points(rng, rows)
    dropoff = _displace(rng, pickup)
    airport_trips = np.flatnonzero(rng.random(rows) < _AIRPORT_TRIP_SHARE)
    airports = _AIRPORTS[rng.choice(len(_AIRPORTS), size=airport_trips.size, p=_AIRPORT_SHARES)]
    airports += _AIRPORT_SPREAD_DEGREES * rng.standard_normal(airports.shape)
    to_airport = rng.random(airport_trips.size) < 0.5
    dropoff[airport_trips[to_airport]] = airports[to_airport]
    pickup[airport_trips[~to_airport]] = airports[~to_airport]
    return np.round(np.hstack([pickup, dropoff]), 6)


def _draw_city_points(rng: np.random.Generator, rows: int) -> np.ndarray:
    weights = _CITY_CLUSTERS[:, 4] / _CITY_CLUSTERS[:, 4].sum()
    clusters = _CITY_CLUSTERS[rng.choice(len(_CITY_CLUSTERS), size=rows, p=weights)]
    return clusters[:, :2] + clusters[:, 2:4] * rng.standard_normal((rows, 2))


def _displace(rng: np.random.Generator, points: np.ndarray) -> np.ndarray:
    """Move each point a log-normal distance in a uniform direction."""
    distance_km = rng.lognormal(np.log(_MEDIAN_TRIP_KM), _TRIP_KM_SIGMA, len(points))
    heading = rng.uniform(0.0, 2 * np.pi, len(points))
    km_per_degree = np.radians(EARTH_RADIUS_KM)
    north = distance_km * np.cos(heading) / km_per_degree
    east = distance_km * np.sin(heading) / (km_per_degree * np.cos(np.radians(points[:, 1])))
    return points + np.column_stack([east, north])


def _fares(rng: np.random.Generator, local_times: pd.DatetimeIndex, coordinates: np.ndarray) -> np.ndarray:
    """Metered fare (flag drop, road distance, slow traffic, surcharges) or the JFK flat fare."""
    rows = len(coordinates)
    hour = local_times.hour.to_numpy()
    workday = local_times.day_of_week.to_numpy() < 5
    flag_drop, per_km, per_slow_minute, jfk_flat = _TARIFFS[(local_times >= _FARE_RISE).astype(int)].T
    road_km = haversine_km(*coordinates.T) * rng.uniform(1.3, 1.4, rows)
    congestion, surcharges = _time_of_day_effects(hour, workday)
    slow_minutes = road_km * rng.gamma(2.0, 0.5, rows) * congestion
    metered = flag_drop + per_km * road_km + per_slow_minute * slow_minutes + surcharges
    fares = np.where(_touches_jfk(coordinates), jfk_flat, metered)
    return np.round(fares * rng.lognormal(0.0, _FARE_NOISE_SIGMA, rows), 2)


def _time_of_day_effects(hour: np.ndarray, workday: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Traffic slowness factor and the night (0.50) / weekday peak (1.00 USD) surcharges."""
    evening_peak = workday & (hour >= 16) & (hour < 20)
    rush = evening_peak | (workday & (hour >= 7) & (hour < 10))
    night = (hour >= 20) | (hour < 6)
    return np.select([rush, hour < 6], [1.6, 0.5], default=1.0), 0.5 * night + 1.0 * evening_peak


def _touches_jfk(coordinates: np.ndarray) -> np.ndarray:
    jfk_longitude, jfk_latitude = _AIRPORTS[0]
    pickup_km = haversine_km(coordinates[:, 0], coordinates[:, 1], jfk_longitude, jfk_latitude)
    dropoff_km = haversine_km(coordinates[:, 2], coordinates[:, 3], jfk_longitude, jfk_latitude)
    return (pickup_km < _JFK_RADIUS_KM) | (dropoff_km < _JFK_RADIUS_KM)


def _soil(rng: np.random.Generator, coordinates: np.ndarray, fares: np.ndarray, passengers: np.ndarray) -> None:
    """Add, in place, the kinds of dirty rows the Kaggle data has."""
    rows = len(fares)
    coordinates[rng.random(rows) < _ZERO_COORDINATE_SHARE] = 0.0
    swapped = rng.random(rows) < _SWAPPED_COORDINATE_SHARE
    coordinates[swapped, :2] = coordinates[swapped, 1::-1]
    non_positive = rng.random(rows) < _NON_POSITIVE_FARE_SHARE
    fares[non_positive] = -np.round(rng.uniform(0.0, 3.0, non_positive.sum()), 1)
    passengers[rng.random(rows) < _NO_PASSENGER_SHARE] = 0
    huge = rng.random(rows) < _HUGE_FARE_SHARE
    fares[huge] = np.round(rng.uniform(100.0, 800.0, huge.sum()), 2)


def _taxifare_frame(local_times: pd.DatetimeIndex, fares: np.ndarray, coordinates: np.ndarray, passengers: np.ndarray) -> pd.DataFrame:
    utc = local_times.tz_convert("UTC").tz_localize(None).to_numpy().astype("datetime64[s]")
    stamps = np.strings.replace(np.datetime_as_string(utc, unit="s"), "T", " ")
    serials = np.strings.zfill(np.arange(1, len(utc) + 1).astype(str), 7)
    columns = {
        "key": np.strings.add(np.strings.add(stamps, "."), serials),
        "fare_amount": fares,
        "pickup_datetime": np.strings.add(stamps, " UTC"),
        **dict(zip(COORDINATE_COLUMNS, coordinates.T)),
        "passenger_count": passengers,
    }
    return pd.DataFrame(columns, columns=list(TAXIFARE_COLUMNS))


def clean_taxifare(df: pd.DataFrame) -> pd.DataFrame:
    """Keep trips inside the NYC box with 1..8 passengers and, if present, a fare in (0, 500].

    Returns a new frame with a fresh index; ``df`` is left as it was.
    """
    missing = [column for column in (*COORDINATE_COLUMNS, "passenger_count") if column not in df.columns]
    if missing:
        raise DataError(f"taxi-fare data lacks columns {', '.join(missing)} (add them, or load with clean=False)")
    keep = df["passenger_count"].between(*PASSENGER_COUNT)
    for column, bounds in _NYC_BOX.items():
        keep &= df[column].between(*bounds)
    if "fare_amount" in df.columns:
        if not pd.api.types.is_numeric_dtype(df["fare_amount"]) or pd.api.types.is_bool_dtype(df["fare_amount"]):
            raise DataError(f"fare_amount must be numeric to clean taxi-fare data, found dtype {df['fare_amount'].dtype} "
                            "(fix the column, or load with clean=False)")
        keep &= (df["fare_amount"] > 0) & (df["fare_amount"] <= MAX_FARE)
    return df.loc[keep].reset_index(drop=True)


def read_table(path: str | Path, rows: int | None = None) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``) file, or its first ``rows`` rows.

    Raises
    ------
    DataError
        If the file is missing, of an unsupported type, or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path} (give an existing CSV or Parquet path, or source: {SYNTHETIC_SOURCE})")
    check_table_suffix(path)
    reader = _read_parquet if _is_parquet(path) else _read_csv
    _check_row_count(rows)
    try:
        return reader(path, rows)
    except _READ_ERRORS as error:
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        raise DataError(f"cannot read data file {path}: {reason} (give a valid, complete CSV or Parquet file)") from error


def check_table_suffix(path: str | Path) -> None:
    """Refuse a file name that is not one of :data:`TABLE_SUFFIXES`, before any work."""
    if not Path(path).name.lower().endswith(TABLE_SUFFIXES):
        raise DataError(f"unsupported data file type: {path} (use one of {', '.join(TABLE_SUFFIXES)})")


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` as CSV or Parquet by the suffix, through a temporary file: never a partial file.

    Raises
    ------
    DataError
        For an unsupported suffix, a missing directory, or a failed write.
    """
    path = Path(path)
    check_table_suffix(path)
    if not path.parent.is_dir():
        raise DataError(f"cannot write {path}: directory {path.parent} does not exist (create it first)")
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if _is_parquet(path):
            frame.to_parquet(temporary, index=False, dictionary_pagesize_limit=_DICTIONARY_BYTES)
        else:
            frame.to_csv(temporary, index=False, compression="gzip" if path.name.lower().endswith(".gz") else None)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise DataError(f"cannot write {path}: {exc.strerror or exc} (choose a writable place)") from None


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(_PARQUET_SUFFIXES)


def _read_csv(path: Path, rows: int | None) -> pd.DataFrame:
    if rows is None:
        return pd.read_csv(path, engine="pyarrow", dtype=_TEXT_COLUMNS)
    # The pyarrow engine has no row limit; the C engine stops after ``rows`` rows.
    return pd.read_csv(path, nrows=rows, dtype=_TEXT_COLUMNS)


def _read_parquet(path: Path, rows: int | None) -> pd.DataFrame:
    if rows is None:
        return pq.read_table(path).to_pandas()
    # The first batch holds the first ``rows`` rows; later row groups are never read.
    parquet_file = pq.ParquetFile(path)
    head = itertools.islice(parquet_file.iter_batches(batch_size=rows), 1)
    return pa.Table.from_batches(head, schema=parquet_file.schema_arrow).to_pandas()


def load_dataset(source: str, rows: int | None = None, seed: int = 0, clean: bool = True) -> pd.DataFrame:
    """Load ``SYNTHETIC_SOURCE`` or a data file, cleaned if it has taxi-fare coordinates.

    Parameters
    ----------
    source : str
        ``SYNTHETIC_SOURCE`` or a CSV / Parquet path.
    rows : int, optional
        Row limit; the synthetic source makes ``DEFAULT_SYNTHETIC_ROWS`` when None.
    seed : int, default=0
        Seed of the synthetic source.
    clean : bool, default=True
        Apply ``clean_taxifare`` when the frame has ``COORDINATE_COLUMNS``.
    """
    if source == SYNTHETIC_SOURCE:
        frame = synthetic_taxifare(DEFAULT_SYNTHETIC_ROWS if rows is None else rows, seed)
    else:
        frame = read_table(source, rows)
    if clean and set(COORDINATE_COLUMNS) <= set(frame.columns):
        return clean_taxifare(frame)
    return frame


def fingerprint(df: pd.DataFrame) -> str:
    """Content id: 16 hex characters of a sha256 over column names, dtypes and values."""
    digest = hashlib.sha256()
    for name, dtype in df.dtypes.items():
        digest.update(f"{name!r}:{dtype}\n".encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
