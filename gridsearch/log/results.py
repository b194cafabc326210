"""Results as users know them: scikit-learn's ``cv_results_`` table, its ranking, and a leaderboard."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from gridsearch.errors import ArgumentError, GridsearchError
from gridsearch.log.records import Status
from gridsearch.search.grids import Candidate
from kampai.ids import matching


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
    codes = pd.Index(ids).get_indexer(records["candidate_id"])
    return _results(records, ids, [dict(c.params) for c in candidates], codes, folds, scoring)


def log_results(records: pd.DataFrame | pa.Table, folds: int, scoring: Sequence[str], params: bool = True,
                round_: int | None = None, params_text: bool = False) -> pd.DataFrame:
    """:func:`cv_results` of every candidate a run log holds (records or their Arrow table), params read from the records.

    Each candidate's params JSON is decoded once, from its first record; without ``params``
    not at all (no ``param_<name>`` and ``params`` columns). With ``params_text``, the
    ``params`` column holds that JSON text as the log has it, not dicts (what an export
    writes). Of a halving search, the candidates of one round are ranked among themselves:
    ``round_``, by default the last.
    """
    records = of_round(records, round_)
    if isinstance(records, pa.Table):
        encoded = pc.dictionary_encode(records.column("candidate_id")).combine_chunks()
        ids, codes = encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False)
    else:
        codes, uniques = pd.factorize(records["candidate_id"])
        ids = list(uniques)
    decoded = None
    if params:
        firsts = np.full(len(ids), len(codes), dtype=np.int64)
        np.minimum.at(firsts, codes, np.arange(len(codes)))  # ascending: codes number candidates as they first appear
        if isinstance(records, pa.Table):
            first = np.zeros(len(codes), dtype=bool)
            first[firsts] = True
            texts = records.column("params").filter(first).to_pandas()  # a filter, not a take; Arrow strings, not Python's
        else:
            texts = pd.Series(records["params"].to_numpy()[firsts])
        decoded = _decode(texts.tolist())
    results = _results(records, ids, decoded, codes, folds, scoring)
    if params and params_text:
        results["params"] = texts.array
    return results


def rounds(records: pd.DataFrame | pa.Table) -> list[int]:
    """The halving rounds the records hold, in order (none for a search of one round)."""
    if "round" not in _names(records):
        return []
    values = _column(records, "round")
    return [int(value) for value in np.unique(values[~np.isnan(values)])]


def of_round(records: pd.DataFrame | pa.Table, round_: int | None = None) -> pd.DataFrame | pa.Table:
    """The records of halving round ``round_`` (default: the last); all of them for a search of one round.

    Raises
    ------
    ArgumentError
        For a round the records do not hold.
    """
    held = rounds(records)
    if not held:
        if round_ is not None:
            raise ArgumentError("round", "this log has no halving rounds (a search of search.strategy: halving has); leave it out")
        return records
    chosen = held[-1] if round_ is None else round_
    if chosen not in held:
        raise ArgumentError("round", f"no round {round_} in this log; its rounds are {held[0]} to {held[-1]}")
    mask = _column(records, "round") == chosen
    return records.filter(pa.array(mask)) if isinstance(records, pa.Table) else records[mask]


def _names(records: pd.DataFrame | pa.Table) -> list[str]:
    return records.schema.names if isinstance(records, pa.Table) else list(records.columns)


def _decode(texts: Sequence[str]) -> list[dict[str, object]]:
    """``json.loads`` of each text, in one call (as one JSON array: half the time of one call each)."""
    try:
        decoded = json.loads(f"[{','.join(texts)}]")
    except json.JSONDecodeError:
        decoded = []
    return decoded if len(decoded) == len(texts) else [json.loads(text) for text in texts]  # a bad text raises as alone


def _results(records: pd.DataFrame | pa.Table, ids: Sequence[str], params: Sequence[dict[str, object]] | None,
             codes: np.ndarray, folds: int, scoring: Sequence[str]) -> pd.DataFrame:
    """The ``cv_results`` table of candidates ``ids``; ``codes`` is each record's candidate (-1: none of them)."""
    fold = np.nan_to_num(_column(records, "fold"), nan=-1).astype(np.int64)
    rows = _latest(np.asarray(codes, dtype=np.int64), fold, len(ids), folds)

    def latest(name: str) -> np.ndarray:
        return np.append(_column(records, name), np.nan)[rows]  # row -1 reads the NaN appended

    results: dict[str, object] = {"candidate_id": list(ids)}
    for column in ("fit_time", "score_time", "prep_time"):
        values = latest(column)
        results[f"mean_{column}"] = values.mean(axis=1)
        results[f"std_{column}"] = values.std(axis=1)
    if params is not None:
        for name in sorted(set(itertools.chain.from_iterable(params))):
            results[f"param_{name}"] = pd.Series([p.get(name, np.nan) for p in params], dtype=object)
        results["params"] = params
    for scorer in scoring:
        scores = latest(f"test_{scorer}")
        for fold in range(folds):
            results[f"split{fold}_test_{scorer}"] = scores[:, fold]
        means = scores.mean(axis=1)
        results[f"mean_test_{scorer}"] = means
        results[f"std_test_{scorer}"] = scores.std(axis=1)
        results[f"rank_test_{scorer}"] = rank(means)
    failed, recorded = _status(records)
    results["n_errors"] = np.append(failed, False)[rows].sum(axis=1)
    results["n_missing"] = (~np.append(recorded, False)[rows]).sum(axis=1)  # folds not recorded (yet)
    return pd.DataFrame(results)


def _latest(codes: np.ndarray, fold: np.ndarray, candidates: int, folds: int) -> np.ndarray:
    """Row of the last record of each (candidate, fold), ``(candidates, folds)``; -1 where there is none."""
    rows = np.full(candidates * folds, -1, dtype=np.int64)
    keep = (codes >= 0) & (fold >= 0) & (fold < folds)
    np.maximum.at(rows, codes[keep] * folds + fold[keep], np.flatnonzero(keep))
    return rows.reshape(candidates, folds)


def _column(records: pd.DataFrame | pa.Table, name: str) -> np.ndarray:
    """A numeric column of the records as floats, NaN where it is null."""
    if isinstance(records, pa.Table):
        return np.asarray(records.column(name).to_numpy(), dtype=float)
    return records[name].to_numpy(dtype=float, na_value=np.nan)


def _status(records: pd.DataFrame | pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Per record: did its fit fail (error or lost), and has it a status at all."""
    failed = [Status.ERROR.value, Status.LOST.value]
    if isinstance(records, pa.Table):
        status = records.column("status")
        return pc.is_in(status, pa.array(failed)).to_numpy(zero_copy_only=False), pc.is_valid(status).to_numpy(zero_copy_only=False)
    status = records["status"]
    return status.isin(failed).to_numpy(dtype=bool), status.notna().to_numpy(dtype=bool)


def rank(means: np.ndarray) -> np.ndarray:
    """Ranks of mean scores: 1 is best, ties share the lowest rank, NaN ties with the worst (as scikit-learn)."""
    means = np.asarray(means, dtype=float)
    if np.isnan(means).all():
        return np.ones(len(means), dtype=np.int32)
    negated = -np.where(np.isnan(means), np.nanmin(means) - 1, means)
    order = np.argsort(negated, kind="stable")
    ordered = negated[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # where each run of equal scores begins
    ranks = np.empty(len(means), dtype=np.int32)
    ranks[order] = np.repeat(starts + 1, np.diff(np.r_[starts, len(ordered)]))
    return ranks


def best_first(results: pd.DataFrame, scorer: str, head: int | None = None) -> pd.DataFrame:
    """``results`` ranked by ``mean_test_<scorer>`` over all its rows, best first (ties by candidate id); its first
    ``head`` rows only, if given (the others are never copied)."""
    ranks = rank(results[f"mean_test_{scorer}"].to_numpy(dtype=float))
    keys = pa.table({"rank": ranks, "candidate_id": pa.array(results["candidate_id"])})
    order = pc.sort_indices(keys, sort_keys=[("rank", "ascending"), ("candidate_id", "ascending")]).to_numpy()[:head]  # stable
    return results.iloc[order].reset_index(drop=True).assign(**{f"rank_test_{scorer}": ranks[order]})


def choose(table: pd.DataFrame, scorer: str, folds: int, log_path: Path, top: int, candidates: Sequence[str] | None,
           purpose: str) -> pd.DataFrame:
    """Rows of a best-first ``cv_results`` table: the ``top`` best fully scored candidates, or the ones named
    (any unique prefix), for ``purpose`` (e.g. ``promoted``: said in the errors).

    Raises
    ------
    ArgumentError
        For ``top`` below 1.
    GridsearchError
        When no candidate is fully scored, or a named one is unknown, ambiguous or not fully scored.
    """
    complete = (table["n_errors"] == 0) & (table["n_missing"] == 0) & table[f"mean_test_{scorer}"].notna()
    if not candidates:
        if top < 1:
            raise ArgumentError("top", f"expected an integer >= 1, found {top}")
        if not complete.any():
            raise GridsearchError(f"no candidate in {log_path} was scored on every fold; none can be {purpose}")
        return table[complete].head(top)
    chosen: list[int] = []
    position = {cid: index for index, cid in enumerate(table["candidate_id"])}
    for wanted in candidates:
        matches = [position[cid] for cid in matching(table["candidate_id"], wanted)]
        if not matches:
            raise GridsearchError(f"candidate {wanted!r} is not in run log {log_path} ({len(table)} candidates; "
                                  f"the best is {table['candidate_id'].iloc[0]}; see 'python -m gridsearch top {log_path}')")
        if len(matches) > 1:
            raise GridsearchError(f"candidate prefix {wanted!r} matches {len(matches)} candidates in {log_path} "
                                  f"({', '.join(table['candidate_id'].iloc[matches[:3]])}, ...); give more characters")
        index = matches[0]
        if not complete.iloc[index]:
            not_ok = int(table["n_errors"].iloc[index] + table["n_missing"].iloc[index])
            raise GridsearchError(f"candidate {table['candidate_id'].iloc[index]} failed or is missing folds in {log_path} "
                                  f"({not_ok} of {folds} not ok); only fully scored candidates can be {purpose}")
        if index not in chosen:
            chosen.append(index)
    return table.iloc[chosen]


def leaderboard(results: pd.DataFrame, scorer: str, top: int = 10) -> pd.DataFrame:
    """The ``top`` candidates by ``mean_test_<scorer>``: rank, score, std, fit time, params."""
    best = best_first(results, scorer, top)
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
    params = list(all_params)
    names = list(dict.fromkeys(itertools.chain.from_iterable(params)))  # in order of appearance
    if len(params) != 1:
        names = [name for name in names if _differs(params, name)]
    tails = [name.rpartition("__")[2] for name in names]
    return {name: tail if tails.count(tail) == 1 else name for name, tail in zip(names, tails)}


def _differs(all_params: Sequence[Mapping[str, object]], name: str) -> bool:
    """Whether two candidates' values of ``name`` differ as text (an unset one as ``<unset>``); stops at the first."""
    first = repr(all_params[0].get(name, "<unset>"))
    return any(repr(params.get(name, "<unset>")) != first for params in all_params)


def _short(params: dict[str, object], labels: dict[str, str]) -> str:
    """``precision=5 model=Ridge alpha=0.1``: varying params only, classes without their module."""
    return " ".join(f"{labels[name]}={_format(name, value)}" for name, value in params.items() if name in labels)


def _format(name: str, value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and "__" not in name:
        return value.rpartition(".")[2]
    return str(value)
