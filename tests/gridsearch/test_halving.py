"""Successive halving on the engine gives scikit-learn's rounds: the same candidates in each, the same scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from distributed import Client
from scipy.stats import loguniform
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import Ridge
from sklearn.model_selection import HalvingGridSearchCV as SklearnHalvingGrid
from sklearn.model_selection import HalvingRandomSearchCV as SklearnHalvingRandom
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import gridsearch

CV = KFold(3, shuffle=True, random_state=0)


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600), "c": rng.choice(list("xyz"), 600)})
    y = 2 * X["a"].to_numpy() - X["b"].to_numpy() + (X["c"] == "y") + rng.normal(scale=0.5, size=600)
    return X, y


def _pipeline(model: Any) -> Pipeline:
    prep = ColumnTransformer([("num", StandardScaler(), ["a", "b"]), ("cat", OneHotEncoder(), ["c"])])
    return Pipeline([("prep", prep), ("model", model)])


def _assert_same_rounds(ours: Any, theirs: Any) -> None:
    mine, reference = ours.cv_results_, theirs.cv_results_
    assert set(mine) == set(reference)
    for key in ("iter", "n_resources", "rank_test_score"):
        np.testing.assert_array_equal(mine[key], reference[key], err_msg=key)
    assert [repr(p) for p in mine["params"]] == [repr(p) for p in reference["params"]]
    for key in [k for k in reference if "test_score" in k or "train_score" in k]:
        np.testing.assert_allclose(mine[key], reference[key], rtol=0, atol=1e-9, err_msg=key)
    assert (ours.n_iterations_, ours.n_candidates_, ours.n_resources_) == (theirs.n_iterations_, theirs.n_candidates_, theirs.n_resources_)
    assert ours.best_params_ == theirs.best_params_ and ours.best_index_ == theirs.best_index_


def test_halving_over_rows_keeps_scikit_learns_candidates_and_scores(client: Client, frame: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = frame
    grid = {"prep__num__with_mean": [True, False], "model__alpha": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]}
    settings = {"factor": 2, "cv": CV, "random_state": 0, "scoring": "r2"}
    ours = gridsearch.HalvingGridSearchCV(_pipeline(Ridge()), grid, client=client, **settings).fit(X, y)
    theirs = SklearnHalvingGrid(_pipeline(Ridge()), grid, **settings).fit(X, y)
    assert ours.n_iterations_ > 2
    _assert_same_rounds(ours, theirs)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=0, atol=1e-9)


def test_halving_along_n_estimators_scores_as_scikit_learns_refits(client: Client, frame: tuple[pd.DataFrame, np.ndarray]) -> None:
    """The resource is the forest's size: each round's fits equal scikit-learn's fits from scratch."""
    X, y = frame
    grid = {"model__max_depth": [2, 4, 6, 8]}
    settings = {"factor": 2, "cv": CV, "resource": "model__n_estimators", "min_resources": 5, "max_resources": 20}
    forest = RandomForestRegressor(random_state=0)
    ours = gridsearch.HalvingGridSearchCV(_pipeline(forest), grid, client=client, **settings).fit(X, y)
    theirs = SklearnHalvingGrid(_pipeline(forest), grid, **settings).fit(X, y)
    np.testing.assert_array_equal(np.unique(ours.cv_results_["n_resources"]), [5, 10, 20])
    _assert_same_rounds(ours, theirs)


def test_halving_random_search_samples_as_scikit_learn(client: Client, frame: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = frame
    distributions = {"model__alpha": loguniform(1e-3, 1e3)}
    settings = {"factor": 3, "cv": CV, "random_state": 1, "n_candidates": 9}
    ours = gridsearch.HalvingRandomSearchCV(_pipeline(Ridge()), distributions, client=client, **settings).fit(X, y)
    theirs = SklearnHalvingRandom(_pipeline(Ridge()), distributions, **settings).fit(X, y)
    _assert_same_rounds(ours, theirs)
