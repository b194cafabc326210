"""Halving along n_estimators with ``grow_ensembles``: each round grows the last round's ensembles, scores as scikit-learn's refits."""

from __future__ import annotations

import copy
import functools
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from distributed import Client
from sklearn.base import BaseEstimator
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import Ridge
from sklearn.model_selection import HalvingGridSearchCV as SklearnHalvingGrid
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import gridsearch
from gridsearch.errors import ConfigError
from gridsearch.estimators.from_config import halving_from_config
from gridsearch.search.config import load_config
from gridsearch.search.ensembles import grown, why_not_grown
from gridsearch.search.prepare import prepare_search

CV = KFold(3, shuffle=True, random_state=0)
GROWN = "grown from"  # what the estimators below warn when a fit grows them
SETTINGS = {"factor": 3, "cv": CV, "resource": "model__n_estimators", "min_resources": 3, "max_resources": 27, "scoring": "r2"}
GRID = {"model__max_depth": [2, 4, 6], "model__min_samples_leaf": [1, 5, 20]}


class _SaysGrowth:
    """Warns, when a fit grows a fitted ensemble, from how many trees: what the tests read in the run log."""

    def fit(self, X: Any, y: Any, **params: Any) -> Any:
        if self.warm_start and len(getattr(self, "estimators_", ())):
            warnings.warn(f"{GROWN} {len(self.estimators_)} trees", UserWarning, stacklevel=2)
        return super().fit(X, y, **params)


class SaysForest(_SaysGrowth, RandomForestRegressor):
    pass


class SaysExtraTrees(_SaysGrowth, ExtraTreesRegressor):
    pass


class SaysBoosting(_SaysGrowth, GradientBoostingRegressor):
    pass


@pytest.fixture(scope="module")
def rows() -> tuple[pd.DataFrame, np.ndarray]:
    X, y = make_regression(300, 6, noise=10.0, random_state=0)
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(6)]), y


def _pipeline(model: BaseEstimator) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("model", model)])


_REGRESSION = make_regression(200, 6, noise=5.0, random_state=1)
_CLASSES = make_classification(200, 6, n_informative=4, n_classes=3, random_state=1)


@pytest.mark.parametrize(("model", "data"), [
    (RandomForestRegressor(random_state=3, max_features=0.5), _REGRESSION),
    (RandomForestRegressor(random_state=3, max_samples=0.5, oob_score=True), _REGRESSION),
    (ExtraTreesRegressor(random_state=3, bootstrap=True), _REGRESSION),
    (RandomForestClassifier(random_state=3), _CLASSES),
    (GradientBoostingRegressor(random_state=3, subsample=0.7, max_features=0.5), _REGRESSION),
    (GradientBoostingClassifier(random_state=3, subsample=0.7), _CLASSES),
], ids=["forest", "forest-oob", "extra-trees", "forest-classifier", "boosting-subsample", "boosting-classifier"])
def test_growing_a_fitted_ensemble_gives_the_larger_fit_bit_for_bit(model: BaseEstimator, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    method = "predict_proba" if hasattr(model, "predict_proba") else "predict"
    fitted = copy.deepcopy(model).set_params(n_estimators=3).fit(X, y)
    before = getattr(fitted, method)(X)
    for trees, n_estimators in ((3, 9), (9, 27)):
        larger = grown(fitted, n_estimators).fit(X, y)
        refit = copy.deepcopy(model).set_params(n_estimators=n_estimators).fit(X, y)
        np.testing.assert_array_equal(getattr(larger, method)(X), getattr(refit, method)(X))
        assert getattr(larger, "oob_score_", None) == getattr(refit, "oob_score_", None)
        np.testing.assert_array_equal(getattr(fitted, method)(X), before)  # the model grown from is left as it was
        assert len(fitted.estimators_) == trees
        fitted, before = larger, getattr(larger, method)(X)


@pytest.mark.parametrize(("model", "reason"), [
    (RandomForestRegressor(random_state=0), None),
    (GradientBoostingRegressor(random_state=0), None),
    (RandomForestRegressor(), "random_state is not an int"),
    (RandomForestRegressor(random_state=np.random.RandomState(0)), "random_state is not an int"),
    (GradientBoostingRegressor(random_state=0, n_iter_no_change=3), "not a forest or a gradient boosting without early stopping"),
    (Ridge(), "not a forest or a gradient boosting without early stopping"),
])
def test_only_seeded_forests_and_boosting_grow(model: BaseEstimator, reason: str | None) -> None:
    assert why_not_grown(model) == reason


def _grew(log: Path) -> pd.DataFrame:
    """Each record's round and whether its fit grew an ensemble."""
    records = gridsearch.read_log(log)
    return records.assign(grew=records["warnings"].fillna("").str.contains(GROWN))[["round", "grew"]]


@pytest.mark.parametrize("model", [SaysForest(random_state=0), SaysExtraTrees(random_state=0), SaysBoosting(random_state=0, subsample=0.8)],
                         ids=["forest", "extra-trees", "boosting"])
def test_grown_rounds_score_as_scikit_learns_refits(client: Client, rows: tuple[pd.DataFrame, np.ndarray], tmp_path: Path,
                                                     model: BaseEstimator) -> None:
    X, y = rows
    ours = gridsearch.HalvingGridSearchCV(_pipeline(model), GRID, client=client, log=tmp_path, grow_ensembles=True, **SETTINGS).fit(X, y)
    theirs = SklearnHalvingGrid(_pipeline(model), GRID, **SETTINGS).fit(X, y)
    np.testing.assert_array_equal(np.unique(ours.cv_results_["n_resources"]), [3, 9, 27])
    mine, reference = ours.cv_results_, theirs.cv_results_
    for key in ("iter", "n_resources", "rank_test_score"):
        np.testing.assert_array_equal(mine[key], reference[key], err_msg=key)
    assert [repr(p) for p in mine["params"]] == [repr(p) for p in reference["params"]]  # the same survivors, round by round
    for key in [k for k in reference if "test_score" in k or "train_score" in k]:
        np.testing.assert_allclose(mine[key], reference[key], rtol=0, atol=1e-9, err_msg=key)
    assert ours.best_params_ == theirs.best_params_ and ours.best_score_ == pytest.approx(theirs.best_score_, abs=1e-9)
    [log] = tmp_path.iterdir()
    grew = _grew(log)
    assert not grew.loc[grew["round"] == 0, "grew"].any() and grew.loc[grew["round"] > 0, "grew"].all()


def test_without_grow_ensembles_every_round_refits(client: Client, rows: tuple[pd.DataFrame, np.ndarray], tmp_path: Path) -> None:
    X, y = rows
    gridsearch.HalvingGridSearchCV(_pipeline(SaysForest(random_state=0)), GRID, client=client, log=tmp_path, **SETTINGS).fit(X, y)
    [log] = tmp_path.iterdir()
    assert not _grew(log)["grew"].any()


def test_an_unseeded_forest_refits_and_says_so(client: Client, rows: tuple[pd.DataFrame, np.ndarray], tmp_path: Path) -> None:
    X, y = rows
    grid = {"model__max_depth": [2, 4, 6], "model__random_state": [None, 0, 1]}
    search = gridsearch.HalvingGridSearchCV(_pipeline(SaysForest()), grid, client=client, log=tmp_path, grow_ensembles=True, **SETTINGS)
    with pytest.warns(UserWarning, match=r"grow_ensembles: 3 of 9 candidates cannot grow, they refit every round: 3 \(random_state is not an int\)"):
        search.fit(X, y)
    [log] = tmp_path.iterdir()
    records = gridsearch.read_log(log).assign(grew=_grew(log)["grew"])
    seeded = records["params"].map(lambda params: json.loads(params)["model__random_state"] is not None)
    assert not records.loc[~seeded, "grew"].any() and records.loc[seeded & (records["round"] > 0), "grew"].all()


def test_growth_over_another_resource_refits_and_says_so(client: Client, rows: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = rows
    search = gridsearch.HalvingGridSearchCV(_pipeline(RandomForestRegressor(n_estimators=5, random_state=0)), GRID, client=client,
                                            factor=3, cv=CV, grow_ensembles=True)
    with pytest.warns(UserWarning, match="the resource n_samples is not the final estimator's model__n_estimators; every round refits"):
        search.fit(X, y)


def _models_held(client: Client, expected: int) -> int:
    """How many kept models the workers hold, once it is ``expected`` (releases reach it a moment later) or after 10 s."""

    def held(dask_scheduler: Any) -> int:
        return sum(str(key).startswith("model") and task.state == "memory" for key, task in dask_scheduler.tasks.items())

    deadline = time.monotonic() + 10
    while (count := client.run_on_scheduler(held)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


class _CountsModels(gridsearch.HalvingGridSearchCV):
    """Counts the models the scheduler holds after each round, and after the fit."""

    @functools.wraps(gridsearch.HalvingGridSearchCV._run_search)
    def _run_search(self, evaluate_candidates: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.held_: list[int] = []

        def counted(candidate_params: Any, *given: Any, **named: Any) -> Any:
            results = evaluate_candidates(candidate_params, *given, **named)
            self.held_.append(_models_held(self.client, len(list(candidate_params)) * CV.n_splits))
            return results

        super()._run_search(counted, *args, **kwargs)


def test_only_the_last_rounds_models_are_held_and_none_after_the_fit(client: Client, rows: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = rows
    search = _CountsModels(_pipeline(RandomForestRegressor(random_state=0)), GRID, client=client, grow_ensembles=True, **SETTINGS).fit(X, y)
    assert search.held_ == [n * CV.n_splits for n in search.n_candidates_]  # one per candidate and fold of the round: the eliminated released
    assert _models_held(client, 0) == 0


def test_grow_ensembles_in_the_yaml_is_a_halving_setting(config_file: Callable[..., Path]) -> None:
    search = {"params": {"model__alpha": [1.0]}, "strategy": "halving", "resource": "model__n_estimators", "grow_ensembles": True}
    assert load_config(config_file(search=search)).space.halving.grow_ensembles is True
    with pytest.raises(ConfigError, match="search.grow_ensembles: a setting of successive halving"):
        load_config(config_file(search={"params": {"model__alpha": [1.0]}, "grow_ensembles": True}))
    with pytest.raises(ConfigError, match="search.grow_ensembles"):
        load_config(config_file(search={**search, "grow_ensembles": "yes"}))


_PROBE = f"""
import warnings
from sklearn.ensemble import RandomForestRegressor


class SaysForest(RandomForestRegressor):
    def fit(self, X, y, **params):
        if self.warm_start and len(getattr(self, "estimators_", ())):
            warnings.warn(f"{GROWN} {{len(self.estimators_)}} trees", UserWarning, stacklevel=2)
        return super().fit(X, y, **params)
"""


def test_a_yaml_halving_with_grow_ensembles_scores_as_scikit_learn(write_config: Callable[..., Path], tmp_path: Path, client: Client,
                                                                    rows: tuple[pd.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = rows
    (tmp_path / "growth_probe.py").write_text(_PROBE)  # a user's module, as the YAML names it: the workers get it shipped
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tmp_path / "rows.csv"
    X.assign(y=y).to_csv(data, index=False)
    halving = {"strategy": "halving", "resource": "model__n_estimators", "min_resources": 3, "max_resources": 27, "factor": 3}
    pipeline = {"steps": [{"name": "scale", "estimator": "sklearn.preprocessing.StandardScaler"},
                          {"name": "model", "estimator": "growth_probe.SaysForest", "params": {"random_state": 0}}]}
    path = write_config(data={"source": str(data), "target": "y"}, pipeline=pipeline, scoring=["r2"],
                        search={"params": GRID, **halving, "grow_ensembles": True})
    search = prepare_search(path)
    assert halving_from_config(search, client).grow_ensembles is True
    refitting = write_config("refits.yaml", data={"source": str(data), "target": "y"}, pipeline=pipeline, scoring=["r2"],
                             search={"params": GRID, **halving})
    assert prepare_search(refitting).search_id == search.search_id  # growing changes no score: the same search, the same log
    result = gridsearch.run(path, progress=False)
    ours = result.cv_results
    grew = _grew(result.log_path)
    assert not grew.loc[grew["round"] == 0, "grew"].any() and grew.loc[grew["round"] > 0, "grew"].all()
    theirs = SklearnHalvingGrid(search.pipeline, [{name: [value] for name, value in c.params.items()} for c in search.candidates],
                                cv=list(search.dataset.folds), scoring="r2", refit=False,
                                **{key: value for key, value in halving.items() if key != "strategy"}).fit(search.dataset.X, search.dataset.y)
    np.testing.assert_array_equal(ours["iter"].to_numpy(), theirs.cv_results_["iter"])
    assert [repr(p) for p in ours["params"]] == [repr(p) for p in theirs.cv_results_["params"]]
    np.testing.assert_allclose(ours["mean_test_r2"], theirs.cv_results_["mean_test_score"], rtol=0, atol=1e-9)
