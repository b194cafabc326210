"""Tests of kampai.transformers: values against references, the sklearn contract, the real sample."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pygeohash
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.estimator_checks import parametrize_with_checks

from kampai.data import (
    COORDINATE_COLUMNS,
    EARTH_RADIUS_KM,
    clean_taxifare,
    read_table,
    synthetic_taxifare,
)
from kampai.transformers import Geohash, HaversineDistance, TimeFeatures

JFK_TO_LGA = [[-73.7781, 40.6413, -73.8740, 40.7769]]
TIME_FEATURE_NAMES = ["hour_sin", "hour_cos", "weekday_sin", "weekday_cos", "month_sin", "month_cos", "year"]

# sklearn's generic checks fit on random numeric X with 1 to 10 columns; these
# transformers need exactly four coordinates, or one datetime column.
RANDOM_X_CHECKS = (
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_dtype_object",
    "check_estimators_dtypes",
    "check_estimators_fit_returns_self",
    "check_estimators_nan_inf",
    "check_estimators_overwrite_params",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit2d_1sample",
    "check_fit2d_predict1d",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_fit_score_takes_y",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in",
    "check_pipeline_consistency",
    "check_readonly_memmap_input",
    "check_transformer_data_not_an_array",
    "check_transformer_general",
)
NOT_FOUR_COORDINATES = "fits random X whose column count is not the 4 coordinates"
NOT_DATETIMES = "fits random numbers, not one column of datetimes"
EXPECTED_FAILED_CHECKS = {
    "Geohash": dict.fromkeys(RANDOM_X_CHECKS, NOT_FOUR_COORDINATES),
    "HaversineDistance": dict.fromkeys((*RANDOM_X_CHECKS, "check_transformer_preserve_dtypes"), NOT_FOUR_COORDINATES),
    "TimeFeatures": dict.fromkeys(
        (*RANDOM_X_CHECKS, "check_fit2d_1feature", "check_n_features_in_after_fitting", "check_positive_only_tag_during_fit"),
        NOT_DATETIMES,
    ),
}


VALID_INPUT_CASES = [
    pytest.param(TimeFeatures(), ["pickup_datetime"], TIME_FEATURE_NAMES, id="TimeFeatures"),
    pytest.param(HaversineDistance(), list(COORDINATE_COLUMNS), ["haversine_km"], id="HaversineDistance"),
    pytest.param(HaversineDistance(manhattan=True), list(COORDINATE_COLUMNS), ["haversine_km", "manhattan_km"], id="HaversineDistance-manhattan"),
    pytest.param(Geohash(), list(COORDINATE_COLUMNS), ["pickup_geohash", "dropoff_geohash"], id="Geohash"),
]


@pytest.fixture(scope="module")
def trips() -> pd.DataFrame:
    return clean_taxifare(synthetic_taxifare(2_000, seed=4))


def _time_features(timestamps: list[str], timezone: str = "America/New_York") -> pd.DataFrame:
    frame = pd.DataFrame({"pickup_datetime": timestamps})
    return pd.DataFrame(TimeFeatures(timezone).fit_transform(frame), columns=TIME_FEATURE_NAMES)


def _expected_time_features(hour: float, weekday: int, month: int, year: int) -> list[float]:
    angles = [2 * np.pi * hour / 24, 2 * np.pi * weekday / 7, 2 * np.pi * (month - 1) / 12]
    return [part for angle in angles for part in (np.sin(angle), np.cos(angle))] + [year]


@parametrize_with_checks(
    [TimeFeatures(), HaversineDistance(), Geohash()],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS[type(estimator).__name__],
    xfail_strict=True,
)
def test_transformers_pass_the_sklearn_checks_that_apply(estimator, check) -> None:
    check(estimator)


@pytest.mark.parametrize("precision", range(1, 13))
def test_geohash_matches_pygeohash_for_every_point(precision: int) -> None:
    rng = np.random.default_rng(precision)
    nyc = np.column_stack([rng.uniform(-74.3, -72.9, 1_000), rng.uniform(40.0, 42.0, 1_000)])
    world = np.column_stack([rng.uniform(-180, 180, 300), rng.uniform(-90, 90, 300)])
    poles_and_edges = np.array([[-180.0, -90.0], [180.0, 90.0], [0.0, 0.0], [-73.98, 40.75]])
    points = np.vstack([nyc, world, poles_and_edges, _cell_boundaries(rng, precision)])
    hashes = Geohash(precision).fit_transform(np.hstack([points, points[::-1]]))
    expected = [pygeohash.encode(float(lat), float(lon), precision) for lon, lat in points]
    assert hashes[:, 0].tolist() == expected
    assert hashes[:, 1].tolist() == expected[::-1]


def _cell_boundaries(rng: np.random.Generator, precision: int) -> np.ndarray:
    """Points exactly on geohash cell edges, and one float step either side of them."""
    bits = 5 * precision
    edges = []
    for half_range, cell_bits in ((180.0, (bits + 1) // 2), (90.0, bits // 2)):
        cells = 2**cell_bits
        edges.append(-half_range + rng.integers(0, cells, 200) * (2 * half_range / cells))
    on_edges = np.column_stack(edges)
    near_edges = [on_edges, np.nextafter(on_edges, -np.inf), np.nextafter(on_edges, np.inf)]
    return np.vstack(near_edges).clip([-180, -90], [180, 90])


def test_geohash_returns_object_strings_for_a_one_hot_encoder(trips: pd.DataFrame) -> None:
    pipeline = make_pipeline(Geohash(precision=5), OneHotEncoder(handle_unknown="ignore"))
    encoded = pipeline.fit_transform(trips[list(COORDINATE_COLUMNS)])
    hashes = pipeline[0].transform(trips[list(COORDINATE_COLUMNS)])
    assert hashes.dtype == object and {len(code) for code in hashes.ravel()} == {5}
    assert encoded.shape == (len(trips), sum(len(set(column)) for column in hashes.T))


def test_geohash_rejects_coordinates_off_the_globe() -> None:
    with pytest.raises(ValueError, match=r"Geohash needs latitudes in \[-90, 90\]"):
        Geohash().fit_transform([[-73.98, 40.75, -73.97, 401.08]])


@pytest.mark.parametrize(
    ("transformer", "X", "message"),
    [
        (Geohash(precision=0), JFK_TO_LGA, r"The 'precision' parameter of Geohash must be an int in the range \[1, 12\]\. Got 0 instead\."),
        (Geohash(precision=13), JFK_TO_LGA, r"The 'precision' parameter of Geohash must be an int in the range \[1, 12\]\. Got 13 instead\."),
        (HaversineDistance(manhattan="yes"), JFK_TO_LGA, r"The 'manhattan' parameter of HaversineDistance must be an instance of 'bool'"),
        (
            TimeFeatures(timezone="Mars/Olympus"),
            [["2009-06-15 17:26:21 UTC"]],
            r"The 'timezone' parameter of TimeFeatures must be an IANA time zone name such as 'America/New_York'\. Got 'Mars/Olympus' instead\.",
        ),
    ],
)
def test_transformers_reject_bad_parameters_with_sklearns_message(transformer, X: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        transformer.fit(X)


def test_haversine_distance_from_jfk_to_laguardia() -> None:
    distances = HaversineDistance(manhattan=True).fit_transform(JFK_TO_LGA)
    assert distances[0, 0] == pytest.approx(17.108, abs=1e-3)
    assert distances[0, 1] == pytest.approx(15.078 + 8.083, abs=1e-2)


def test_haversine_distance_matches_arcs_of_the_earth() -> None:
    quarter, degree = np.pi * EARTH_RADIUS_KM / 2, np.pi * EARTH_RADIUS_KM / 180
    trips = np.array([[0.0, 0.0, 90.0, 0.0], [0.0, 0.0, 0.0, 1.0], [-73.9, 40.7, -73.9, 40.7]])
    distances = HaversineDistance(manhattan=True).fit_transform(trips)
    np.testing.assert_allclose(distances, [[quarter, quarter], [degree, degree], [0.0, 0.0]], atol=1e-9)


def test_haversine_distance_rejects_other_column_counts() -> None:
    expected = r"HaversineDistance expects 4 column\(s\) in the order pickup_longitude, pickup_latitude, dropoff_longitude, dropoff_latitude; X has 3 feature\(s\)"
    with pytest.raises(ValueError, match=expected):
        HaversineDistance().fit([[-73.98, 40.75, -73.97]])


@pytest.mark.parametrize(
    ("timestamp", "local"),
    [
        ("2009-06-15 17:26:21 UTC", (13 + 26 / 60, 0, 6, 2009)),
        ("2015-03-08 06:59:00 UTC", (1 + 59 / 60, 6, 3, 2015)),
        ("2015-03-08 07:00:00 UTC", (3.0, 6, 3, 2015)),
        ("2014-11-02 05:30:00 UTC", (1.5, 6, 11, 2014)),
        ("2014-11-02 06:30:00 UTC", (1.5, 6, 11, 2014)),
        ("2015-01-01 03:00:00 UTC", (22.0, 2, 12, 2014)),
    ],
    ids=["summer", "before spring forward", "after spring forward", "before fall back", "after fall back", "new year in UTC"],
)
def test_time_features_read_new_york_local_time(timestamp: str, local: tuple[float, int, int, int]) -> None:
    np.testing.assert_allclose(_time_features([timestamp]).iloc[0], _expected_time_features(*local), atol=1e-12)


def test_time_features_accept_datetime64_aware_and_iso_inputs() -> None:
    expected = _time_features(["2009-06-15 17:26:21 UTC"])
    inputs = [
        pd.to_datetime(["2009-06-15 17:26:21"]),
        pd.to_datetime(["2009-06-15 19:26:21+02:00"], utc=False),
        ["2009-06-15T17:26:21Z"],
    ]
    for values in inputs:
        transformed = TimeFeatures().fit_transform(pd.DataFrame({"pickup_datetime": values}))
        np.testing.assert_allclose(transformed, expected, atol=1e-12)


def test_time_features_follow_the_timezone_parameter() -> None:
    features = _time_features(["2009-06-15 17:26:21 UTC"], timezone="UTC")
    np.testing.assert_allclose(features.iloc[0], _expected_time_features(17 + 26 / 60, 0, 6, 2009), atol=1e-12)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.array([["2009-06-15 17:26:21 UTC"], ["not a date"]], dtype=object), "TimeFeatures cannot parse the datetimes"),
        (np.array([[1.5], [2.5]]), "TimeFeatures expects datetimes as strings or datetime64 values; got float64"),
    ],
)
def test_time_features_reject_values_that_are_not_datetimes(values: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TimeFeatures().fit_transform(values)


@pytest.mark.parametrize(("transformer", "columns", "names"), VALID_INPUT_CASES)
def test_transformers_never_mutate_input_and_name_their_outputs(trips: pd.DataFrame, transformer, columns: list[str], names: list[str]) -> None:
    frame = trips[columns]
    before = frame.copy(deep=True)
    fitted = clone(transformer).fit(frame)
    output = fitted.transform(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert fitted.n_features_in_ == len(columns) and fitted.feature_names_in_.tolist() == columns
    assert fitted.get_feature_names_out().tolist() == names and output.shape == (len(frame), len(names))
    assert output.dtype == (object if isinstance(transformer, Geohash) else np.float64)
    np.testing.assert_array_equal(clone(transformer).fit_transform(frame.to_numpy()), output)


@pytest.mark.parametrize(("transformer", "columns", "names"), VALID_INPUT_CASES)
def test_transformers_keep_their_state_through_transform_refit_and_pickle(trips: pd.DataFrame, transformer, columns: list[str], names: list[str]) -> None:
    frame = trips[columns]
    fitted = clone(transformer).fit(frame)
    state = pickle.dumps(fitted)
    output = fitted.transform(frame)
    assert pickle.dumps(fitted) == state
    assert pickle.dumps(fitted.fit(frame.iloc[::-1])) == state
    np.testing.assert_array_equal(pickle.loads(state).transform(frame), output)


@pytest.mark.parametrize(("transformer", "columns", "names"), VALID_INPUT_CASES)
def test_transformers_check_column_names_and_offer_pandas_output(trips: pd.DataFrame, transformer, columns: list[str], names: list[str]) -> None:
    frame = trips[columns]
    fitted = clone(transformer).set_output(transform="pandas").fit(frame)
    assert fitted.transform(frame).columns.tolist() == names
    with pytest.raises(ValueError, match="feature names should match"):
        fitted.transform(frame.rename(columns={columns[0]: "renamed"}))
    expected = f"X has {len(columns) + 1} features, but {type(transformer).__name__} is expecting {len(columns)} features"
    with pytest.raises(ValueError, match=expected):
        clone(transformer).fit(frame.to_numpy()).transform(frame.assign(extra=1.0).to_numpy())


def test_transformers_run_on_the_real_sample(real_sample: Path) -> None:
    trips = clean_taxifare(read_table(real_sample))
    features = ColumnTransformer(
        [
            ("time", TimeFeatures(), ["pickup_datetime"]),
            ("distance", HaversineDistance(manhattan=True), list(COORDINATE_COLUMNS)),
            ("geohash", make_pipeline(Geohash(), OneHotEncoder(handle_unknown="ignore")), list(COORDINATE_COLUMNS)),
        ],
        sparse_threshold=0,
    ).fit(trips)
    matrix = features.transform(trips)
    assert matrix.shape[0] == len(trips) > 9_700 and np.isfinite(matrix).all()
    years = matrix[:, TIME_FEATURE_NAMES.index("year")]
    assert years.min() >= 2008 and years.max() <= 2015
    distances = matrix[:, len(TIME_FEATURE_NAMES):len(TIME_FEATURE_NAMES) + 2]
    assert np.median(distances[:, 0]) == pytest.approx(2.2, abs=0.3) and (distances[:, 1] >= distances[:, 0] - 1e-9).all()
    geohashes = features.named_transformers_["geohash"][0].transform(trips[list(COORDINATE_COLUMNS)])
    assert pd.Series(geohashes[:, 0]).str[:3].value_counts().index[0] == "dr5"
