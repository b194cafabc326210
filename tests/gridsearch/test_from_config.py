"""The YAML path and the class are one search: ``gridsearch.run`` and ``from_config(...).fit`` give the same scores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import gridsearch
from gridsearch.search.prepare import prepare_search


def test_a_config_fitted_as_the_class_scores_as_gridsearch_run(write_config: Callable[..., Path]) -> None:
    """A list of grids that swaps the model by import path: same candidates, order and fold scores, to 1e-9."""
    path = write_config(search={"params": [{"model__alpha": [0.1, 10.0]},
                                           {"model": ["sklearn.ensemble.RandomForestRegressor"], "model__n_estimators": [5, 10],
                                            "model__max_depth": [4], "model__random_state": [0]}]}, data={**_data(), "test_size": 0.2})
    ran = gridsearch.run(path, progress=False).cv_results
    search, X, y = gridsearch.from_config(path)
    search.fit(X, y)
    assert len(X) == len(prepare_search(path).dataset.X) < 0.8 * 1500 + 1  # the hold-out stays out
    for scorer in ("neg_root_mean_squared_error", "r2"):
        for fold in range(3):
            np.testing.assert_allclose(search.cv_results_[f"split{fold}_test_{scorer}"], ran[f"split{fold}_test_{scorer}"], rtol=0, atol=1e-9)
    model = [str(params.get("model", "")).partition("(")[0] for params in search.cv_results_["params"]]
    assert model == ["", "", "RandomForestRegressor", "RandomForestRegressor"]
    assert search.best_params_ == search.cv_results_["params"][int(np.argmin(search.cv_results_["rank_test_neg_root_mean_squared_error"]))]


def test_from_config_refuses_a_bad_config_before_any_work(config_file: Callable[..., Path]) -> None:
    with pytest.raises(gridsearch.ConfigError, match="model__alpa"):
        gridsearch.from_config(config_file(search={"params": {"model__alpa": [1.0]}}))


def _data() -> dict[str, object]:
    return {"source": "synthetic-taxifare", "target": "fare_amount", "rows": 1500, "seed": 1}
