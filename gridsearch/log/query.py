"""Reading run logs: a leaderboard, one candidate in full, an export.

Everything is read from the log alone (``search.json`` and the ``part-*.arrows``), so a
search that is still running, crashed, or ran on another machine reads the same way.
A path is one search's log directory (``runs/<search id>/``) or a log root holding
several (``runs/``); candidate ids may be shortened to any unique prefix, as in git.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from gridsearch.errors import ArgumentError, GridsearchError
from gridsearch.log.records import META_FILE, PART_GLOB, SearchMeta
from gridsearch.log.results import best_first, leaderboard, log_results, rounds
from gridsearch.log.runlog import read_table
from kampai.data import TABLE_SUFFIXES, write_table
from kampai.ids import did_you_mean, matching

_RECORD_COLUMNS = ("fold", "status", "fit_time", "score_time", "prep_time", "worker", "finished")
_RESULT_COLUMNS = ("candidate_id", "params", "fold", "status", "fit_time", "score_time", "prep_time", "round")  # and test_<scorer>
_TO_JSON = json.JSONEncoder(sort_keys=True, default=repr).encode  # json.dumps(v, sort_keys=True, default=repr), built once


@dataclass(frozen=True)
class Leaderboard:
    """The best candidates of one or more searches, ranked by ``mean_test_<metric>``.

    ``results`` holds the ``cv_results`` rows of every candidate read, best first, with a
    ``search_id`` column, ``rank_test_<metric>`` ranked over all of them, and ``n_missing``
    (folds not recorded yet; ``n_errors`` counts recorded failures only); ``table`` is its
    first ``n`` rows.
    """

    path: Path
    metric: str
    results: pd.DataFrame
    n: int
    n_searches: int
    skipped: tuple[str, ...] = ()

    @property
    def table(self) -> pd.DataFrame:
        return self.results.head(self.n)

    def __str__(self) -> str:
        if self.table.empty:
            return f"no records yet in {self.path}"
        board = leaderboard(self.results, self.metric, self.n)
        if (self.table["n_errors"] > 0).any():
            board.insert(3, "failed", list(self.table["n_errors"]))
        if (self.table["n_missing"] > 0).any():
            board.insert(3, "missing", list(self.table["n_missing"]))
        if self.n_searches > 1:
            board.insert(len(board.columns) - 2, "search", list(self.table["search_id"]))
        text = board.to_string(float_format=lambda v: f"{v:.4f}")
        where = f"{self.n_searches} searches under {self.path}" if self.n_searches > 1 else f"search {self.table['search_id'].iloc[0]} ({self.path})"
        lines = [f"top {len(self.table)} of {len(self.results)} candidates in {where}, by {self.metric}", "", text]
        if self.skipped:
            lines += ["", f"left out (no {self.metric} scores): {', '.join(self.skipped)}"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: metric, counts, and one entry per row with every scorer's mean and std."""
        scorers = [c.removeprefix("mean_test_") for c in self.table.columns if c.startswith("mean_test_")]
        rows = [
            {
                "rank": row[f"rank_test_{self.metric}"],
                "search_id": row["search_id"],
                "candidate_id": row["candidate_id"],
                "mean": row[f"mean_test_{self.metric}"],
                "std": row[f"std_test_{self.metric}"],
                "scores": {s: {"mean": row[f"mean_test_{s}"], "std": row[f"std_test_{s}"]} for s in scorers},
                "mean_fit_time": row["mean_fit_time"],
                "n_errors": row["n_errors"],
                "n_missing": row["n_missing"],
                "params": row["params"],
            }
            for _, row in self.table.iterrows()
        ]
        return _jsonable({"path": str(self.path), "metric": self.metric, "n_candidates": len(self.results),
                          "n_searches": self.n_searches, "skipped": list(self.skipped), "rows": rows})


@dataclass(frozen=True)
class CandidateDetail:
    """One candidate of a search: its params, scores, rank and every record it has.

    ``records`` has one row per record, by fold; a (candidate, fold) that was redone (a
    lost task, a resumed search) has several, in log order, and the last one counts.
    """

    path: Path
    search_id: str
    candidate_id: str
    params: Mapping[str, Any]
    scoring: tuple[str, ...]
    summary: Mapping[str, Any]
    records: pd.DataFrame

    def __str__(self) -> str:
        s = self.summary
        lines = [f"candidate {self.candidate_id} of search {self.search_id} ({self.path})", "params"]
        lines += [f"  {name} = {value!r}" for name, value in self.params.items()]
        lines.append(f"scores over {s['folds']} folds (mean ± std; rank among {s['n_candidates']} candidates)")
        width = max(map(len, self.scoring))
        for scorer in self.scoring:
            lines.append(f"  {scorer:<{width}}  {s[f'mean_test_{scorer}']:>9.4f} ± {s[f'std_test_{scorer}']:.4f}  "
                         f"rank {s[f'rank_test_{scorer}']}")
        state = f"{s['n_errors']} failed, {s['n_missing']} not recorded yet" if s["n_errors"] or s["n_missing"] else "all folds ok"
        lines.append(f"mean seconds: fit {s['mean_fit_time']:.4f}, score {s['mean_score_time']:.4f}, "
                     f"prep {s['mean_prep_time']:.4f}; {state}")
        columns = ["fold", "status", *(f"test_{name}" for name in self.scoring), *_RECORD_COLUMNS[2:]]
        table = self.records[[c for c in columns if c in self.records.columns]]
        lines += ["", table.to_string(index=False, float_format=lambda v: f"{v:.4f}")]
        failed = self.records[self.records["error"].notna()]
        if len(failed):
            lines += ["", "errors"]
            for (error, trace), folds in failed.groupby(["error", failed["traceback"].fillna("")], sort=False)["fold"]:
                lines.append(f"  fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))}: {error}")
                lines += [f"    {line}" for line in trace.rstrip().splitlines()]
        caught = _warning_folds(self.records)
        if caught:
            lines += ["", "warnings"]
            lines += [f"  {text} (folds {', '.join(map(str, folds))})" for text, folds in caught.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ids, params, summary, and every record with its error and traceback."""
        records = self.records.drop(columns=["search_id", "candidate_id", "params"], errors="ignore")
        return _jsonable({"path": str(self.path), "search_id": self.search_id, "candidate_id": self.candidate_id,
                          "params": dict(self.params), "scoring": list(self.scoring), "summary": dict(self.summary),
                          "records": records.to_dict(orient="records")})


@dataclass(frozen=True)
class Exported:
    """What :func:`export` wrote."""

    path: Path
    what: str
    rows: int
    columns: tuple[str, ...]

    def __str__(self) -> str:
        return f"wrote {self.rows} rows of {self.what} ({len(self.columns)} columns) to {self.path}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "what": self.what, "rows": self.rows, "columns": list(self.columns)}


@dataclass(frozen=True)
class _Search:
    path: Path
    search_id: str
    scoring: tuple[str, ...]
    folds: int
    table: pa.Table  # the records, as read (all columns, or those the results need)

    def results(self, params: bool = True, round_: int | None = None, params_text: bool = False) -> pd.DataFrame:
        """``cv_results`` of the candidates recorded so far, with ``search_id`` and ``n_missing`` (``params``, ``round_``,
        ``params_text``: see log_results)."""
        table = log_results(self.table, self.folds, self.scoring, params, round_, params_text)
        table.insert(0, "search_id", self.search_id)
        return table

    def records(self, candidate_id: str | None = None) -> pd.DataFrame:
        """The records (of one candidate only, if given) as a DataFrame."""
        table = self.table if candidate_id is None else self.table.filter(pc.equal(self.table.column("candidate_id"), candidate_id))
        return table.to_pandas()

    def candidate_ids(self, prefix: str = "") -> list[str]:
        """The distinct candidate ids starting with ``prefix``, in log order."""
        ids = self.table.column("candidate_id")
        return pc.unique(ids.filter(pc.starts_with(ids, prefix)) if prefix else ids).to_pylist()


def find_logs(path: str | os.PathLike[str]) -> list[Path]:
    """The search log directories at ``path``: itself, or each one directly under it."""
    directory = Path(path)
    if not directory.is_dir():
        raise GridsearchError(f"no run log at {directory}; give a search's log directory (runs/<search id>) or a log root (runs)")
    if _is_log(directory):
        return [directory]
    logs = sorted(child for child in directory.iterdir() if child.is_dir() and _is_log(child))
    if not logs:
        raise GridsearchError(f"no run log at {directory}: no {META_FILE} or {PART_GLOB} in it or in its directories; "
                              "give runs/<search id> or the config's log: directory")
    return logs


def top(path: str | os.PathLike[str], n: int = 10, metric: str | None = None, round_: int | None = None) -> Leaderboard:
    """The ``n`` best candidates of a search log, or of every search under a log root.

    Parameters
    ----------
    path : path
        ``runs/<search id>`` or a log root such as ``runs``.
    n : int
        Rows to keep.
    metric : str, optional
        Scorer to rank by (``r2``, ``test_r2`` and ``mean_test_r2`` all work); default:
        the first scorer of the searches. Searches without it are left out.
    round_ : int, optional
        Of a halving search, the round whose candidates are ranked (default: the last).

    Raises
    ------
    GridsearchError
        For a missing log or an unknown metric.
    """
    if n < 1:
        raise ArgumentError("n", f"expected an integer >= 1, found {n}")
    root = Path(path)
    searches = [_load(log, results_only=True) for log in find_logs(root)]
    scorer = _metric(searches, metric, root)
    chosen = [s for s in searches if scorer in s.scoring and len(s.table)]
    skipped = tuple(s.search_id for s in searches if scorer not in s.scoring)
    if not chosen:
        return Leaderboard(root, scorer, pd.DataFrame(), n, 0, skipped)
    ranked = best_first(pd.concat([s.results(round_=round_) for s in chosen], ignore_index=True), scorer)
    return Leaderboard(root, scorer, ranked, n, len(chosen), skipped)


def show(path: str | os.PathLike[str], candidate_id: str) -> CandidateDetail:
    """One candidate in full: params, scores and rank, every fold's record with errors and warnings.

    ``candidate_id`` may be any unique prefix; ``path`` a search log or a log root.

    Raises
    ------
    GridsearchError
        When no candidate or several match, or the log is missing.
    """
    root = Path(path)
    search, full_id = _find_candidate([_load(log) for log in find_logs(root)], candidate_id, root)
    records = search.records(full_id)
    held = rounds(records)
    results = search.results(params=False, round_=held[0] if held else None)  # ranks need every candidate's scores (of its round)
    row = results[results["candidate_id"] == full_id].iloc[0]
    summary = {name: row[name] for name in results.columns if name.startswith(("mean_", "std_", "rank_"))}
    summary.update(n_errors=int(row["n_errors"]), n_missing=int(row["n_missing"]), folds=search.folds, n_candidates=len(results))
    if held:
        summary["round"] = held[0]
    params = json.loads(records["params"].iloc[0])  # its first record's, as log_results reads them
    records = records.sort_values("fold", kind="stable").reset_index(drop=True)
    return CandidateDetail(search.path, search.search_id, full_id, params, search.scoring, summary, records)


def export(path: str | os.PathLike[str], to: str | os.PathLike[str], *, records: bool = False) -> Exported:
    """Write the ``cv_results`` table (or, with ``records``, every raw record) to Parquet or CSV.

    The format follows the suffix of ``to`` (``.parquet``, ``.csv``, ``.csv.gz``). Over a
    log root, the searches' tables are stacked with their ``search_id``. ``params`` is
    written as JSON text, as in the log. A halving search's table has every round, each
    ranked among itself, with its ``iter`` as in scikit-learn.
    """
    target = Path(to)
    if not target.name.lower().endswith(TABLE_SUFFIXES):
        raise ArgumentError("to", f"expected a file name ending in {', '.join(TABLE_SUFFIXES)}, found {target.name!r}")
    searches = [_load(log, results_only=not records) for log in find_logs(path)]
    frames = [s.records() if records else _every_round(s) for s in searches if len(s.table)]
    if not frames:
        raise GridsearchError(f"no records yet in {path}; nothing to export")
    table = _flat(pd.concat(frames, ignore_index=True))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArgumentError("to", f"cannot create directory {target.parent} ({exc.strerror or exc}); choose a writable place") from None
    write_table(table, target)
    return Exported(target, "records" if records else "cv_results", len(table), tuple(table.columns))


def _every_round(search: _Search) -> pd.DataFrame:
    """The search's ``cv_results``; of a halving search, every round's, with its ``iter``."""
    held = rounds(search.table)
    if not held:
        return search.results(params_text=True)
    return pd.concat([search.results(round_=index, params_text=True).assign(iter=index) for index in held], ignore_index=True)


def to_json(result: Leaderboard | CandidateDetail | Exported) -> str:
    """The ``--json`` form of a query result: strict JSON (NaN as null, times as ISO 8601)."""
    return json.dumps(result.to_dict(), indent=2, allow_nan=False)


def _is_log(directory: Path) -> bool:
    return (directory / META_FILE).is_file() or any(directory.glob(PART_GLOB))


def _load(path: Path, results_only: bool = False) -> _Search:
    """A search's log; with ``results_only``, only the columns its ``cv_results`` are made of."""
    meta = SearchMeta.read(path)
    columns = [*_RESULT_COLUMNS, *(f"test_{scorer}" for scorer in meta.scoring)] if results_only else None
    return _Search(path, meta.search_id, meta.scoring, meta.folds or 0, read_table(path, columns))


def _find_candidate(searches: Sequence[_Search], candidate_id: str, root: Path) -> tuple[_Search, str]:
    """The one candidate whose id starts with ``candidate_id``, or an error saying what to give instead."""
    if not candidate_id.strip():
        raise GridsearchError("candidate id is empty; copy one from 'python -m gridsearch top'")
    matches = [(s, cid) for s in searches for cid in matching(s.candidate_ids(candidate_id.strip().lower()), candidate_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        owner = next((s for s in searches if matching([s.search_id], candidate_id)), None)
        hint = (f"that is a search id: list its candidates with 'python -m gridsearch top {owner.path}'" if owner
                else f"list them with 'python -m gridsearch top {root}'")
        count = sum(len(s.candidate_ids()) for s in searches)
        raise GridsearchError(f"no candidate {candidate_id!r} in {root} ({count} candidates); {hint}")
    ids = sorted({cid for _, cid in matches})
    if len(ids) == 1:
        raise GridsearchError(f"candidate {ids[0]} is in {len(matches)} searches ({', '.join(s.search_id for s, _ in matches)}); "
                              f"give one search's log, e.g. {matches[0][0].path}")
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    raise GridsearchError(f"candidate id {candidate_id!r} is ambiguous in {root}: {shown}; give more characters")


def _metric(searches: Sequence[_Search], metric: str | None, root: Path) -> str:
    """The scorer to rank by: given (any spelling), or the searches' common first scorer."""
    known = sorted({name for s in searches for name in s.scoring})
    if metric is None:
        firsts = sorted({s.scoring[0] for s in searches if s.scoring})
        if len(firsts) > 1:
            raise ArgumentError("metric", f"not given, and the searches under {root} rank by different scorers ({', '.join(firsts)}); choose one")
        return firsts[0] if firsts else "score"
    name = metric.removeprefix("mean_test_").removeprefix("test_")
    if name not in known:
        raise ArgumentError("metric", f"unknown metric {metric!r} in {root}{did_you_mean(name, known)}; "
                              f"the log has scores for: {', '.join(known) or 'none yet'}")
    return name


def _flat(table: pd.DataFrame) -> pd.DataFrame:
    """Columns a file can hold: any column Arrow cannot type (mixed values) as JSON text (``params`` already is)."""
    texts = {name: [None if _missing(v) else _TO_JSON(v) for v in table[name]]
             for name in table.columns if table[name].dtype == object and not _arrow_typed(table[name])}
    return table.assign(**texts)


def _arrow_typed(values: pd.Series) -> bool:
    try:
        pa.array(values, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):
        return False
    return True


def _warning_folds(records: pd.DataFrame) -> dict[str, list[int]]:
    """Each distinct warning line, with the folds whose records carry it."""
    seen: dict[str, list[int]] = {}
    for fold, text in zip(records["fold"], records["warnings"]):
        for line in ([] if _missing(text) else str(text).splitlines()):
            folds = seen.setdefault(line, [])
            if int(fold) not in folds:
                folds.append(int(fold))
    return seen


def _missing(value: Any) -> bool:
    return value is None or value is pd.NaT or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN and missing as None, times as ISO 8601."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if _missing(value):
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    return value
