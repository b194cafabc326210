"""The cv_results table and the leaderboard built from log records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from gridsearch.log.results import cv_results, leaderboard, log_results
from gridsearch.search.space import Candidate


def _records(rows: list[tuple[str, dict, int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"candidate_id": cid, "params": json.dumps(params), "fold": fold, "status": status, "test_r2": score,
                          "fit_time": 0.1, "score_time": 0.01, "prep_time": 0.0} for cid, params, fold, status, score in rows])


def test_missing_folds_are_not_errors_and_failed_ones_are():
    records = _records([("a", {"alpha": 1}, 0, "ok", 0.5), ("a", {"alpha": 1}, 1, "ok", 0.7),
                        ("b", {"alpha": 2}, 0, "error", np.nan), ("b", {"alpha": 2}, 1, "lost", np.nan),
                        ("c", {"alpha": 3}, 0, "ok", 0.9)])
    table = log_results(records, folds=2, scoring=["r2"]).set_index("candidate_id")
    assert table.loc["a", "n_errors"] == 0 and table.loc["a", "n_missing"] == 0 and table.loc["a", "mean_test_r2"] == 0.6
    assert table.loc["b", "n_errors"] == 2 and table.loc["b", "n_missing"] == 0
    assert table.loc["c", "n_errors"] == 0 and table.loc["c", "n_missing"] == 1
    assert list(table["rank_test_r2"]) == [1, 2, 2]  # NaN means tie with the worst, as in scikit-learn


def test_leaderboard_shows_params_that_only_some_candidates_have():
    candidates = [Candidate("a", {"model__alpha": 1.0}), Candidate("b", {"model": "sklearn.linear_model.LogisticRegression"})]
    records = _records([("a", {"model__alpha": 1.0}, 0, "ok", 0.5), ("b", {"model": "x"}, 0, "error", np.nan)])
    board = leaderboard(cv_results(records, candidates, folds=1, scoring=["r2"]), "r2")
    assert list(board["params"]) == ["alpha=1", "model=LogisticRegression"]
