"""Pipelines built from config: import paths, declarative steps, and the taxifare default."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from kampai.data import COORDINATE_COLUMNS
from kampai.errors import KampaiError
from kampai.transformers import Geohash, HaversineDistance, TimeFeatures


def import_object(path: str) -> Any:
    """Import ``"package.module:name"`` or ``"package.module.Name"``.

    Raises
    ------
    KampaiError
        When the module or the name does not exist, with the path in the message.
    """
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise KampaiError(f"cannot import {path!r}: expected 'package.module:name' or 'package.module.Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise KampaiError(f"cannot import {path!r}: {exc} (is the package installed on this machine?)") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise KampaiError(f"cannot import {path!r}: module {module_name!r} has no {attribute!r}") from None


def make_estimator(path: str, params: Mapping[str, Any] | None = None) -> BaseEstimator:
    """Instantiate the estimator class at ``path`` with ``params``.

    The path must name a scikit-learn estimator class (a ``BaseEstimator`` subclass) before
    anything is called: a config naming ``subprocess.run`` is refused, not run.
    """
    cls = import_object(path)
    if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):
        raise KampaiError(f"{path} is not a scikit-learn estimator class (a BaseEstimator subclass); name one, e.g. sklearn.linear_model.Ridge")
    try:
        return cls(**dict(params or {}))
    except TypeError as exc:
        raise KampaiError(f"cannot build {path}: {exc}") from None


def build_pipeline(factory: str | None = None, steps: Sequence[Mapping[str, Any]] | None = None) -> BaseEstimator:
    """The estimator a config describes: a ``module:function`` factory or a list of steps.

    Each step is ``{"name": str, "estimator": import.path, "params": {...}}``; the steps
    become a :class:`~sklearn.pipeline.Pipeline` in order.
    """
    if factory is not None:
        function = import_object(factory)
        if not callable(function):
            raise KampaiError(f"{factory} is not a function returning an estimator (found {type(function).__name__})")
        try:
            estimator = function()
        except Exception as exc:  # noqa: BLE001 - the user's factory: any failure is reported in one line
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            needs = " (a factory is called with no arguments)" if isinstance(exc, TypeError) and "argument" in str(exc) else ""
            raise KampaiError(f"{factory}() raised {reason}{needs}") from None
        if not hasattr(estimator, "get_params"):
            raise KampaiError(f"{factory} returned {type(estimator).__name__}, not a scikit-learn estimator")
        return estimator
    return Pipeline([(step["name"], make_estimator(step["estimator"], step.get("params"))) for step in steps or ()])


def taxifare_features(precision: int = 6) -> ColumnTransformer:
    """Time features, trip distance and one-hot geohash cells of pickup and dropoff."""
    coordinates = list(COORDINATE_COLUMNS)
    return ColumnTransformer(
        [
            ("time", Pipeline([("extract", TimeFeatures()), ("scale", StandardScaler())]), ["pickup_datetime"]),
            ("distance", Pipeline([("measure", HaversineDistance(manhattan=True)), ("scale", StandardScaler())]), coordinates),
            ("geohash", Pipeline([("encode", Geohash(precision=precision)), ("onehot", OneHotEncoder(handle_unknown="ignore"))]), coordinates),
            ("passengers", "passthrough", ["passenger_count"]),
        ],
        sparse_threshold=0.3,
    )


def taxifare_pipeline() -> Pipeline:
    """The default taxi-fare model: :func:`taxifare_features` then a Ridge regression.

    Search parameters: ``features__geohash__encode__precision``, ``model`` (swap the
    regressor) and ``model__<param>``.
    """
    return Pipeline([("features", taxifare_features()), ("model", Ridge())])
