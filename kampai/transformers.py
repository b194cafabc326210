"""Taxi-fare feature transformers that follow the scikit-learn estimator contract."""

from __future__ import annotations

import zoneinfo
from abc import ABCMeta, abstractmethod
from numbers import Integral
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import Tags
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from kampai.data import COORDINATE_COLUMNS, EARTH_RADIUS_KM, haversine_km

_UTC_SECONDS_FORMAT = "%Y-%m-%d %H:%M:%S"
_DATETIME_KINDS = "OUSM"  # object, unicode, bytes, datetime64
# Base32 letters as UCS-4 code points, so a row of them views as one numpy str.
_GEOHASH_ALPHABET = np.array([ord(letter) for letter in "0123456789bcdefghjkmnpqrstuvwxyz"], dtype=np.uint32)
# Shift and mask steps that move bit i of a 32-bit value to bit 2i.
_SPREAD_STEPS = (
    (16, 0x0000FFFF0000FFFF),
    (8, 0x00FF00FF00FF00FF),
    (4, 0x0F0F0F0F0F0F0F0F),
    (2, 0x3333333333333333),
    (1, 0x5555555555555555),
)


class _TimeZoneNames(StrOptions):
    """The IANA time zone names zoneinfo knows, summarised in error messages."""

    def __init__(self) -> None:
        super().__init__(zoneinfo.available_timezones())

    def __str__(self) -> str:
        return "an IANA time zone name such as 'America/New_York'"


class _StatelessTransformer(TransformerMixin, BaseEstimator, metaclass=ABCMeta):
    """Row-wise transformer of fixed input columns: ``fit`` only validates and records the input.

    Subclasses set ``_input_columns`` (expected order), ``_input_dtype`` (None keeps
    strings and datetimes), ``_preserved_dtypes`` and implement ``_features`` and
    ``_feature_names``.
    """

    _input_columns: tuple[str, ...]
    _input_dtype: Any
    _preserved_dtypes: tuple[str, ...]

    def __sklearn_tags__(self) -> Tags:
        """sklearn tags: string input when ``_input_dtype`` is None, and ``_preserved_dtypes``."""
        tags = super().__sklearn_tags__()
        tags.input_tags.string = self._input_dtype is None
        tags.transformer_tags.preserves_dtype = list(self._preserved_dtypes)
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> Self:
        """Validate the parameters and ``X``; record ``n_features_in_`` and ``feature_names_in_``."""
        self._validate_input(X, reset=True)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Compute the features of each row of ``X``."""
        check_is_fitted(self)
        return self._features(self._validate_input(X, reset=False))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns."""
        check_is_fitted(self)
        _check_feature_names_in(self, input_features)
        return np.asarray(self._feature_names(), dtype=object)

    def _validate_input(self, X: Any, reset: bool) -> np.ndarray:
        values = validate_data(self, X, reset=reset, dtype=self._input_dtype)
        if values.shape[1] != len(self._input_columns):
            raise ValueError(
                f"{type(self).__name__} expects {len(self._input_columns)} column(s) in the order "
                f"{', '.join(self._input_columns)}; X has {values.shape[1]} feature(s)."
            )
        return values

    @abstractmethod
    def _features(self, values: np.ndarray) -> np.ndarray:
        """Output columns for validated input ``values``."""

    @abstractmethod
    def _feature_names(self) -> tuple[str, ...]:
        """Names of the output columns."""


class TimeFeatures(_StatelessTransformer):
    """Cyclic local hour, weekday and month, plus the year, of one datetime column.

    Parameters
    ----------
    timezone : str, default="America/New_York"
        Time zone the features are read in; naive datetimes are taken as UTC.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {"timezone": [_TimeZoneNames()]}
    _input_columns = ("pickup_datetime",)
    _input_dtype = None
    _preserved_dtypes = ()

    def __init__(self, timezone: str = "America/New_York") -> None:
        self.timezone = timezone

    def _validate_input(self, X: Any, reset: bool) -> np.ndarray:
        values = super()._validate_input(X, reset)
        if values.dtype.kind not in _DATETIME_KINDS:
            raise ValueError(
                f"TimeFeatures expects datetimes as strings or datetime64 values; got {values.dtype} values."
            )
        return values

    def _features(self, values: np.ndarray) -> np.ndarray:
        local = _parse_utc(values[:, 0]).tz_convert(self.timezone)
        hour = local.hour + local.minute / 60
        angles = [2 * np.pi * hour / 24, 2 * np.pi * local.day_of_week / 7, 2 * np.pi * (local.month - 1) / 12]
        cyclic = [part for angle in angles for part in (np.sin(angle), np.cos(angle))]
        return np.column_stack([*cyclic, local.year]).astype(np.float64)

    def _feature_names(self) -> tuple[str, ...]:
        return ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos", "month_sin", "month_cos", "year")


def _parse_utc(values: np.ndarray) -> pd.DatetimeIndex:
    """Parse on pandas' fast fixed-format path, else let pandas infer each value's format."""
    try:
        return pd.DatetimeIndex(pd.to_datetime(_without_utc_suffix(values), format=_UTC_SECONDS_FORMAT, utc=True))
    except (ValueError, TypeError):
        pass
    try:
        return pd.DatetimeIndex(pd.to_datetime(values, format="mixed", utc=True))
    except (ValueError, TypeError) as error:
        raise ValueError(f"TimeFeatures cannot parse the datetimes: {error}") from error


def _without_utc_suffix(values: np.ndarray) -> np.ndarray:
    """``2009-06-15 17:26:21 UTC`` -> ``2009-06-15 17:26:21``; pandas parses a literal suffix 7x slower."""
    if values.dtype.kind == "M":
        return values
    return np.strings.rstrip(values.astype(str), " UTC")


class HaversineDistance(_StatelessTransformer):
    """Great-circle trip distance in km, optionally with the Manhattan distance.

    Parameters
    ----------
    manhattan : bool, default=False
        Add ``manhattan_km``: the north-south plus the east-west distance.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {"manhattan": ["boolean"]}
    _input_columns = COORDINATE_COLUMNS
    _input_dtype = np.float64
    _preserved_dtypes = ("float64",)

    def __init__(self, manhattan: bool = False) -> None:
        self.manhattan = manhattan

    def _features(self, values: np.ndarray) -> np.ndarray:
        distances = [haversine_km(*values.T)]
        if self.manhattan:
            distances.append(_manhattan_km(values))
        return np.column_stack(distances)

    def _feature_names(self) -> tuple[str, ...]:
        return ("haversine_km", "manhattan_km") if self.manhattan else ("haversine_km",)


def _manhattan_km(coordinates: np.ndarray) -> np.ndarray:
    """Distance along a meridian plus along the parallel at the mean latitude."""
    lon1, lat1, lon2, lat2 = np.radians(coordinates).T
    along_parallel = np.abs(lon2 - lon1) * np.cos((lat1 + lat2) / 2)
    return EARTH_RADIUS_KM * (np.abs(lat2 - lat1) + along_parallel)


class Geohash(_StatelessTransformer):
    """Geohash strings of the pickup and dropoff points, for a one-hot encoder to follow.

    Parameters
    ----------
    precision : int, default=6
        Characters per geohash, 1..12 (6 is about 1.2 km x 0.6 km).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {"precision": [Interval(Integral, 1, 12, closed="both")]}
    _input_columns = COORDINATE_COLUMNS
    _input_dtype = np.float64
    _preserved_dtypes = ()

    def __init__(self, precision: int = 6) -> None:
        self.precision = precision

    def _features(self, values: np.ndarray) -> np.ndarray:
        longitudes, latitudes = values[:, 0::2], values[:, 1::2]
        if np.any(np.abs(latitudes) > 90) or np.any(np.abs(longitudes) > 180):
            raise ValueError(
                "Geohash needs latitudes in [-90, 90] and longitudes in [-180, 180] "
                "(clean the coordinates first, e.g. with kampai.data.clean_taxifare)."
            )
        return _encode_geohash(latitudes, longitudes, int(self.precision))

    def _feature_names(self) -> tuple[str, ...]:
        return ("pickup_geohash", "dropoff_geohash")


def _encode_geohash(latitudes: np.ndarray, longitudes: np.ndarray, precision: int) -> np.ndarray:
    """Geohash strings (object array of the input's shape): interleaved cell bits, then base32."""
    bits = 5 * precision
    longitude_cells = _cell_index(longitudes, 180.0, (bits + 1) // 2)
    latitude_cells = _cell_index(latitudes, 90.0, bits // 2)
    # The bits alternate from the most significant one, longitude first.
    code = (_spread_bits(longitude_cells) << (1 - bits % 2)) | (_spread_bits(latitude_cells) << (bits % 2))
    shifts = np.arange(bits - 5, -1, -5, dtype=np.uint64)
    letters = _GEOHASH_ALPHABET[(code[..., None] >> shifts) & np.uint64(31)]
    return letters.view(f"U{precision}")[..., 0].astype(object)


def _cell_index(values: np.ndarray, half_range: float, bits: int) -> np.ndarray:
    """Index of each value among ``2**bits`` equal cells of [-half_range, half_range].

    Equal to geohash bisection (a value on a boundary goes up): cell boundaries are
    exact binary fractions, so one exact comparison per side fixes the float estimate.
    """
    cells = 2**bits
    width = 2 * half_range / cells
    index = np.clip(np.floor((values + half_range) / width), 0, cells - 1).astype(np.int64)
    index -= values < -half_range + index * width
    index += (index < cells - 1) & (values >= -half_range + (index + 1) * width)
    return index.astype(np.uint64)


def _spread_bits(values: np.ndarray) -> np.ndarray:
    spread = values
    for shift, mask in _SPREAD_STEPS:
        spread = (spread | (spread << np.uint64(shift))) & np.uint64(mask)
    return spread
