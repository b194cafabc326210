"""Parameter importance (exact on complete grids, estimated otherwise), levels, best score per pair and per value."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd

from gridsearch.view.importance import UNSET, best_by_pair, by_level, importance, is_complete_grid, levels


def grid(effect_a: float, effect_b: float) -> tuple[pd.DataFrame, np.ndarray]:
    rows = list(itertools.product([0.01, 0.1, 1.0], ["x.Ridge", "x.Lasso"], [4, 5, 6, 7]))
    params = pd.DataFrame(rows, columns=["model__alpha", "model", "precision"])
    codes = params["model__alpha"].map({0.01: 0, 0.1: 1, 1.0: 2}).to_numpy()
    scores = effect_a * codes + effect_b * (params["model"] == "x.Lasso").to_numpy() + 0.01 * params["precision"].to_numpy() ** 2
    return params, scores


def test_importance_on_a_complete_grid_is_the_variance_of_the_per_value_means():
    params, scores = grid(1.0, 0.5)
    result = importance(params, scores)
    assert result.method == "exact" and result.n == 24
    total = scores.var()
    for name in params.columns:
        means = pd.Series(scores).groupby(params[name]).mean()
        expected = ((means - scores.mean()) ** 2).mean() / total
        assert np.isclose(result.table.set_index("param").loc[name, "importance"], expected)
    assert result.ranked == ["model__alpha", "model", "precision"]
    assert np.isclose(result.table["importance"].sum(), 1.0)  # additive grid: the main effects explain everything


def test_a_grid_missing_a_point_or_a_failed_score_is_estimated():
    params, scores = grid(1.0, 0.5)
    assert is_complete_grid(params) and not is_complete_grid(params.iloc[1:])
    scores[3] = np.nan
    assert importance(params, scores).method == "estimate"


def test_the_estimate_finds_the_parameter_that_matters_in_a_random_search():
    rng = np.random.default_rng(0)
    n = 4000
    params = pd.DataFrame({"alpha": 10 ** rng.uniform(-3, 3, n), "noise": rng.uniform(0, 1, n), "kind": rng.choice(["a", "b"], n)})
    scores = -((np.log10(params["alpha"]) - 1) ** 2) + rng.normal(0, 0.5, n)
    result = importance(params, scores.to_numpy()).table.set_index("param")["importance"]
    assert result["alpha"] > 0.8
    assert result["noise"] < 0.01 and result["kind"] < 0.01  # bias-corrected: no effect scores about 0, not (k - 1) / n


def test_importance_of_a_hundred_thousand_candidates_takes_well_under_a_second():
    rng = np.random.default_rng(1)
    n = 100_000
    params = pd.DataFrame({"alpha": 10 ** rng.uniform(-3, 3, n), "depth": rng.integers(2, 30, n).astype(float),
                           "precision": rng.integers(4, 8, n), "model": rng.choice(["x.Ridge", "x.Tree", "x.Lasso"], n)})
    params.loc[params["model"] != "x.Tree", "depth"] = np.nan
    start = time.perf_counter()
    result = importance(params, rng.random(n))
    assert time.perf_counter() - start < 1.0
    assert result.method == "estimate" and len(result.table) == 4


def test_levels_bin_many_numbers_and_keep_unset_as_a_level():
    values = pd.Series([*np.logspace(-3, 3, 30), np.nan])
    level = levels("model__alpha", values)
    assert level.numeric and level.binned and level.log and len(level.labels) == 11 and level.labels[-1] == UNSET
    assert level.codes[-1] == 10 and level.codes[0] == 0 and level.codes[29] == 9
    named = levels("model", pd.Series(["sklearn.linear_model.Ridge", None, "sklearn.tree.DecisionTreeRegressor"]))
    assert named.labels == ("DecisionTreeRegressor", "Ridge", UNSET) and named.codes.tolist() == [1, 2, 0]


def test_best_by_pair_and_by_level_take_the_best_score_and_its_candidate():
    a = levels("a", pd.Series([1, 1, 2, 2, 2]))
    b = levels("b", pd.Series(["x", "y", "x", "x", "y"]))
    scores = np.array([0.1, 0.5, 0.3, 0.9, np.nan])
    cells = best_by_pair(a, b, scores, np.array(list("pqrst")))
    assert cells[["a", "b", "best", "candidate_id", "count"]].values.tolist() == [["1", "x", 0.1, "p", 1], ["1", "y", 0.5, "q", 1],
                                                                                  ["2", "x", 0.9, "s", 2]]
    table = by_level(a, scores)
    assert table["best"].tolist() == [0.5, 0.9] and table["count"].tolist() == [2, 2]
