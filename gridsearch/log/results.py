"""Results as users know them: scikit-learn's ``cv_results_`` table, its ranking, and a leaderboard."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from gridsearch.log.records import Status
from gridsearch.search.space import Candidate


def cv_results(records: pd.DataFrame, candidates: Sequence[Candidate], folds: int, scoring: Sequence[str]) -> pd.DataFrame:
    """One row per candidate with scikit-learn's ``cv_results_`` columns.

    ``splitK_test_<scorer>``, ``mean_test_<scorer>``, ``std_test_<scorer>``,
    ``rank_test_<scorer>`` (failed fits score NaN and rank last, as in scikit-learn),
    ``mean_fit_time``/``std_fit_time`` (the final estimator's fit), ``mean_score_time``,
    ``mean_prep_time`` (the shared preprocessing, counted once per candidate and fold),
    ``param_<name>``, ``params``, plus ``candidate_id``, ``n_errors`` (failed or lost folds)
    and ``n_missing`` (folds not recorded yet).

    When a (candidate, fold) has several records (a resumed search), the last one counts.
    """
    ids = [c.id for c in candidates]
    latest = records[records["candidate_id"].isin(set(ids))].drop_duplicates(["candidate_id", "fold"], keep="last")
    latest = latest.set_index(["candidate_id", "fold"])
    grid = pd.MultiIndex.from_product([ids, range(folds)], names=["candidate_id", "fold"])
    latest = latest.reindex(grid)

    results: dict[str, object] = {"candidate_id": ids}
    for column in ("fit_time", "score_time", "prep_time"):
        values = latest[column].to_numpy(dtype=float).reshape(len(ids), folds)
        results[f"mean_{column}"] = values.mean(axis=1)
        results[f"std_{column}"] = values.std(axis=1)
    names = sorted({name for c in candidates for name in c.params})
    for name in names:
        results[f"param_{name}"] = pd.Series([c.params.get(name, np.nan) for c in candidates], dtype=object)
    results["params"] = [dict(c.params) for c in candidates]
    for scorer in scoring:
        scores = latest[f"test_{scorer}"].to_numpy(dtype=float).reshape(len(ids), folds)
        for fold in range(folds):
            results[f"split{fold}_test_{scorer}"] = scores[:, fold]
        means = scores.mean(axis=1)
        results[f"mean_test_{scorer}"] = means
        results[f"std_test_{scorer}"] = scores.std(axis=1)
        results[f"rank_test_{scorer}"] = rank(means)
    status = latest["status"].to_numpy(dtype=object).reshape(len(ids), folds)
    results["n_errors"] = np.isin(status, [Status.ERROR, Status.LOST]).sum(axis=1)
    results["n_missing"] = pd.isna(status).sum(axis=1)  # folds not recorded (yet)
    return pd.DataFrame(results)


def log_results(records: pd.DataFrame, folds: int, scoring: Sequence[str]) -> pd.DataFrame:
    """:func:`cv_results` of every candidate a run log holds, its params read from the records."""
    firsts = records.drop_duplicates("candidate_id")
    candidates = [Candidate(cid, json.loads(params)) for cid, params in zip(firsts["candidate_id"], firsts["params"])]
    return cv_results(records, candidates, folds, scoring)


def rank(means: np.ndarray) -> np.ndarray:
    """Ranks of mean scores: 1 is best, ties share the lowest rank, NaN ties with the worst (as scikit-learn)."""
    means = np.asarray(means, dtype=float)
    if np.isnan(means).all():
        return np.ones(len(means), dtype=np.int32)
    filled = np.where(np.isnan(means), np.nanmin(means) - 1, means)
    return rankdata(-filled, method="min").astype(np.int32)


def best_first(results: pd.DataFrame, scorer: str) -> pd.DataFrame:
    """``results`` ranked by ``mean_test_<scorer>`` over all its rows, best first (ties by candidate id)."""
    ranked = results.assign(**{f"rank_test_{scorer}": rank(results[f"mean_test_{scorer}"].to_numpy(dtype=float))})
    return ranked.sort_values([f"rank_test_{scorer}", "candidate_id"], kind="stable").reset_index(drop=True)


def leaderboard(results: pd.DataFrame, scorer: str, top: int = 10) -> pd.DataFrame:
    """The ``top`` candidates by ``mean_test_<scorer>``: rank, score, std, fit time, params."""
    best = best_first(results, scorer).head(top)
    labels = _varying(results["params"])
    table = pd.DataFrame(
        {
            "rank": best[f"rank_test_{scorer}"],
            f"mean_{scorer}": best[f"mean_test_{scorer}"],
            "std": best[f"std_test_{scorer}"],
            "fit_s": best["mean_fit_time"],
            "candidate": best["candidate_id"],
            "params": [_short(p, labels) for p in best["params"]],
        }
    )
    return table.set_index("rank")


def _varying(all_params: pd.Series) -> dict[str, str]:
    """Names whose value differs between candidates, with a short label for each."""
    seen: dict[str, set[str]] = {name: set() for params in all_params for name in params}
    for params in all_params:
        for name, values in seen.items():
            values.add(repr(params.get(name, "<unset>")))
    names = [name for name, values in seen.items() if len(values) > 1 or len(all_params) == 1]
    tails = [name.rpartition("__")[2] for name in names]
    return {name: tail if tails.count(tail) == 1 else name for name, tail in zip(names, tails)}


def _short(params: dict[str, object], labels: dict[str, str]) -> str:
    """``precision=5 model=Ridge alpha=0.1``: varying params only, classes without their module."""
    return " ".join(f"{labels[name]}={_format(name, value)}" for name, value in params.items() if name in labels)


def _format(name: str, value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and "__" not in name:
        return value.rpartition(".")[2]
    return str(value)
