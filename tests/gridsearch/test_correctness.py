"""Our cross-validated scores equal scikit-learn's GridSearchCV on the same folds, to 1e-9."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

import gridsearch
from gridsearch.search.space import resolve, step_names

SCORING = ["neg_root_mean_squared_error", "r2", "neg_mean_absolute_error"]


def _sklearn_grid(grids: list[dict[str, list[Any]]], pipeline: Any) -> list[dict[str, list[Any]]]:
    """The same grids with import paths of whole steps turned into estimators."""
    steps = step_names(pipeline)
    return [{name: [resolve({name: value}, steps)[name] for value in values] for name, values in grid.items()} for grid in grids]


def _compare_with_sklearn(config_path: Any, grids: list[dict[str, list[Any]]]) -> None:
    search = gridsearch.prepare_search(config_path)
    result = gridsearch.run(config_path, progress=False)
    reference = GridSearchCV(
        search.pipeline,
        _sklearn_grid(grids, search.pipeline),
        scoring=SCORING,
        cv=list(search.dataset.folds),
        refit=False,
        n_jobs=1,
    ).fit(search.dataset.X, search.dataset.y)
    expected = reference.cv_results_
    ours = result.cv_results
    assert len(ours) == len(expected["params"]) == len(search.candidates)
    # Both expand grids in ParameterGrid order; match rows by params to be explicit.
    expected_rows = [_key(p) for p in _sklearn_params_as_config(expected["params"])]
    order = [expected_rows.index(_key(p)) for p in ours["params"]]
    for scorer in SCORING:
        for column in (f"mean_test_{scorer}", f"std_test_{scorer}", f"rank_test_{scorer}", *(f"split{k}_test_{scorer}" for k in range(3))):
            np.testing.assert_allclose(ours[column].to_numpy(dtype=float), np.asarray(expected[column], dtype=float)[order], rtol=0, atol=1e-9, err_msg=column)
    assert result.n_errors == 0


def _sklearn_params_as_config(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Estimators back to their import paths, as our params hold them."""
    return [{k: (f"{type(v).__module__.split('._')[0]}.{type(v).__name__}" if hasattr(v, "get_params") else v) for k, v in p.items()} for p in params]


def _key(params: dict[str, Any]) -> str:
    return repr(sorted(params.items()))


def test_scores_equal_gridsearchcv_on_a_grid_of_precisions_alphas_and_intercepts(write_config):
    grids = [{"features__geohash__encode__precision": [4, 5, 6], "model__alpha": [0.01, 10.0], "model__fit_intercept": [True, False]}]
    path = write_config(search={"params": grids[0]}, scoring=SCORING)
    _compare_with_sklearn(path, grids)


def test_scores_equal_gridsearchcv_when_grids_swap_estimators(write_config):
    grids = [
        {"features__geohash__encode__precision": [4, 5], "model": ["sklearn.linear_model.Ridge"], "model__alpha": [0.1, 10.0]},
        {"features__geohash__encode__precision": [5], "model": ["sklearn.tree.DecisionTreeRegressor"], "model__max_depth": [3, 6], "model__random_state": [0]},
        {"model": ["sklearn.ensemble.RandomForestRegressor"], "model__n_estimators": [5], "model__max_depth": [4], "model__random_state": [0]},
        {"model": ["sklearn.linear_model.Lasso"], "model__alpha": [0.01, 0.1]},
    ]
    path = write_config(search={"params": grids}, scoring=SCORING)
    _compare_with_sklearn(path, grids)


def test_scores_equal_gridsearchcv_for_a_pipeline_without_a_prefix(write_config, tmp_path):
    data = tmp_path / "numeric.csv"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    import pandas as pd

    pd.DataFrame({**{f"x{i}": X[:, i] for i in range(4)}, "y": X @ [1.0, -2.0, 0.5, 0.0] + rng.normal(size=300)}).to_csv(data, index=False)
    grids = [{"alpha": [0.01, 0.1, 1.0], "fit_intercept": [True, False]}]
    path = write_config(
        data={"source": str(data), "target": "y"},
        pipeline={"steps": [{"name": "model", "estimator": "sklearn.linear_model.Ridge"}]},
        search={"params": {"model__alpha": [0.01, 0.1, 1.0], "model__fit_intercept": [True, False]}},
        scoring=SCORING,
    )
    search = gridsearch.prepare_search(path)
    result = gridsearch.run(path, progress=False)
    reference = GridSearchCV(search.pipeline, {"model__" + k: v for k, v in grids[0].items()}, scoring=SCORING, cv=list(search.dataset.folds), refit=False).fit(search.dataset.X, search.dataset.y)
    np.testing.assert_allclose(result.cv_results["mean_test_r2"], reference.cv_results_["mean_test_r2"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("folds", [2, 4])
def test_folds_match_kfold_with_the_configured_seed(config_file, folds):
    from sklearn.model_selection import KFold

    path = config_file(cv={"folds": folds, "shuffle": True, "seed": 7})
    search = gridsearch.prepare_search(path)
    expected = KFold(folds, shuffle=True, random_state=7).split(search.dataset.X)
    assert len(search.dataset.folds) == folds
    for (train, test), (exp_train, exp_test) in zip(search.dataset.folds, expected, strict=True):
        np.testing.assert_array_equal(train, exp_train)
        np.testing.assert_array_equal(test, exp_test)


def test_forests_and_boosting_share_one_fit_along_n_estimators_with_identical_scores(write_config):
    grids = [
        {"features__geohash__encode__precision": [4], "model": ["sklearn.ensemble.RandomForestRegressor"],
         "model__n_estimators": [3, 6, 10], "model__max_depth": [3, 5], "model__random_state": [0]},
        {"features__geohash__encode__precision": [4], "model": ["sklearn.ensemble.GradientBoostingRegressor"],
         "model__n_estimators": [5, 20], "model__subsample": [0.8], "model__random_state": [0]},
    ]
    path = write_config(search={"params": grids}, scoring=SCORING)
    _compare_with_sklearn(path, grids)
    log = gridsearch.read_log(gridsearch.prepare_search(path).log_path)
    shared = log[log["shared_fit"].notna()]
    assert len(shared) == 3 * (2 * 2 + 1)  # per fold: 2 smaller forests for each depth, 1 smaller boosting
    assert (shared["fit_time"] == 0).all()
    assert set(shared["shared_fit"]) <= set(log.loc[log["shared_fit"].isna(), "candidate_id"])


def test_scores_equal_gridsearchcv_when_the_first_step_is_not_a_column_transformer(write_config, tmp_path):
    import pandas as pd

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    data = tmp_path / "numeric.csv"
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": X @ [1.0, -1.0, 0.5] + rng.normal(size=300)}).to_csv(data, index=False)
    path = write_config(data={"source": str(data), "target": "y"}, scoring=SCORING,
                        pipeline={"steps": [{"name": "scale", "estimator": "sklearn.preprocessing.StandardScaler"},
                                            {"name": "model", "estimator": "sklearn.linear_model.Ridge"}]},
                        search={"params": {"scale__with_mean": [True, False], "model__alpha": [0.1, 10.0]}})
    search = gridsearch.prepare_search(path)
    result = gridsearch.run(path, progress=False)
    assert result.n_errors == 0
    reference = GridSearchCV(search.pipeline, {"scale__with_mean": [True, False], "model__alpha": [0.1, 10.0]}, scoring=SCORING,
                             cv=list(search.dataset.folds), refit=False).fit(search.dataset.X, search.dataset.y)
    np.testing.assert_allclose(result.cv_results["mean_test_r2"], reference.cv_results_["mean_test_r2"], rtol=0, atol=1e-9)
