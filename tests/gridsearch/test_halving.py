"""Successive halving on the engine gives scikit-learn's rounds: the same candidates in each, the same scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from distributed import Client
from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import Ridge
from sklearn.model_selection import HalvingGridSearchCV as SklearnHalvingGrid
from sklearn.model_selection import HalvingRandomSearchCV as SklearnHalvingRandom
from sklearn.model_selection import KFold, cross_validate
from sklearn.model_selection._search_successive_halving import _SubsampleMetaSplitter
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


@pytest.mark.parametrize("refit", ["r2", False])
def test_several_scorers_rank_on_the_refit_one_and_record_all(client: Client, frame: tuple[pd.DataFrame, np.ndarray], refit: Any) -> None:
    """Scikit-learn's halving takes one scorer; ours records several and keeps the rounds its ranking scorer gives."""
    X, y = frame
    grid = {"prep__num__with_mean": [True, False], "model__alpha": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]}
    settings = {"factor": 2, "cv": CV, "random_state": 0}
    scoring = ["r2", "neg_mean_absolute_error"]
    ours = gridsearch.HalvingGridSearchCV(_pipeline(Ridge()), grid, client=client, scoring=scoring, refit=refit, **settings).fit(X, y)
    theirs = SklearnHalvingGrid(_pipeline(Ridge()), grid, scoring="r2", **settings).fit(X, y)
    mine, reference = ours.cv_results_, theirs.cv_results_
    for key in ("iter", "n_resources"):
        np.testing.assert_array_equal(mine[key], reference[key], err_msg=key)
    assert [repr(p) for p in mine["params"]] == [repr(p) for p in reference["params"]]
    np.testing.assert_allclose(mine["mean_test_r2"], reference["mean_test_score"], rtol=0, atol=1e-9)
    assert "mean_test_score" not in mine and np.isfinite(mine["mean_test_neg_mean_absolute_error"]).all()
    last = np.flatnonzero(mine["iter"] == mine["iter"].max())
    best = last[np.argmax(mine["mean_test_r2"][last])]
    splitter = _SubsampleMetaSplitter(base_cv=CV, fraction=mine["n_resources"][best] / len(y), subsample_test=True, random_state=0)
    again = cross_validate(_pipeline(Ridge()).set_params(**mine["params"][best]), X, y, cv=list(splitter.split(X, y)),
                           scoring="neg_mean_absolute_error")  # the second scorer, on the best's last round
    assert mine["mean_test_neg_mean_absolute_error"][best] == pytest.approx(again["test_score"].mean(), abs=1e-9)
    if refit:
        assert ours.best_index_ == theirs.best_index_ and ours.best_score_ == pytest.approx(theirs.best_score_, abs=1e-9)
    else:
        assert not hasattr(ours, "best_estimator_")


def test_every_round_goes_to_one_log_and_a_second_fit_resumes_it(client: Client, frame: tuple[pd.DataFrame, np.ndarray],
                                                                 tmp_path: Path) -> None:
    X, y = frame
    grid = {"model__alpha": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]}
    settings = {"factor": 2, "cv": CV, "random_state": 0, "scoring": "r2", "log": tmp_path / "runs", "client": client}
    search = gridsearch.HalvingGridSearchCV(_pipeline(Ridge()), grid, **settings).fit(X, y)
    [log] = (tmp_path / "runs").iterdir()
    records = gridsearch.read_log(log)
    results = search.cv_results_
    assert len(records) == len(results["iter"]) * CV.n_splits and set(records["search_id"]) == {log.name}
    per_round = records.groupby("round")["candidate_id"].nunique()
    np.testing.assert_array_equal(per_round.to_numpy(), np.bincount(results["iter"]))
    train_rows = records.groupby("round")["fit_rows"].max()  # the subsampled folds' training rows
    np.testing.assert_array_equal(train_rows.to_numpy(), [int(n * (CV.n_splits - 1) / CV.n_splits) for n in search.n_resources_])
    again = gridsearch.HalvingGridSearchCV(_pipeline(Ridge()), grid, **settings).fit(X, y)
    assert len(gridsearch.read_log(log)) == len(records)  # every fit of every round came from the log
    np.testing.assert_array_equal(again.cv_results_["mean_test_score"], results["mean_test_score"])


def test_a_clone_of_a_halving_search_resumes_its_log(client: Client, frame: tuple[pd.DataFrame, np.ndarray], tmp_path: Path) -> None:
    X, y = frame
    search = gridsearch.HalvingGridSearchCV(_pipeline(Ridge()), {"model__alpha": [0.1, 1.0, 10.0]}, factor=2, cv=CV, random_state=0,
                                            log=tmp_path / "runs", client=client)
    search.fit(X, y)
    clone(search).fit(X, y)
    assert len(list((tmp_path / "runs").iterdir())) == 1
