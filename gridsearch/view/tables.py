"""What the report draws, as tables: one row per candidate, Pareto fronts, bounded samples, worker timelines.

Everything here is numpy and pandas on the run log's records (:func:`gridsearch.read_log`),
sized for a million records: one pass of ``bincount`` per column, never a Python loop per
record. Figures draw at most :data:`MAX_POINTS` candidates each (the Pareto fronts and the
best ones always among them) and aggregate the rest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from gridsearch.log.curves import curve_records
from gridsearch.log.records import SearchMeta, Status
from gridsearch.log.results import rank
from gridsearch.log.runlog import read_log
from gridsearch.log.usage import epoch_seconds
from gridsearch.view.importance import distinct_values

MAX_POINTS = 1500  # candidates drawn per figure, beyond which the rest are sampled
MAX_SEGMENTS = 1500  # busy intervals drawn per worker, beyond which time is binned
TIMELINE_BINS = 400
ROUND_COLUMN = "round"  # a halving round, when the records have one
ROWS_COLUMN = "fit_rows"  # training rows of a fit, when the records have them
_PATH_SUFFIX = "__n_estimators"


@dataclass(frozen=True)
class SearchData:
    """One search's log read for the report.

    ``candidates`` has one row per candidate (see :func:`candidate_table`), ``params`` one
    column per parameter on the same index; ``curves`` the records of its learning curves
    (``gridsearch curve``, :mod:`gridsearch.log.curves`), None when it has none.
    """

    path: Path
    meta: SearchMeta
    records: pd.DataFrame
    candidates: pd.DataFrame
    params: pd.DataFrame
    curves: pd.DataFrame | None = None

    @property
    def scorer(self) -> str:
        return self.meta.scoring[0] if self.meta.scoring else "score"

    @cached_property
    def scored(self) -> pd.DataFrame:
        """Candidates with a finite mean score of the first scorer, best first (ties by id)."""
        table = self.candidates[np.isfinite(self.candidates["score"].to_numpy())]
        return table.iloc[np.lexsort((table["candidate_id"].to_numpy(dtype=object), table["rank"].to_numpy()))]


def load_search(path: Path) -> SearchData:
    """Read one search's log and tabulate its candidates."""
    meta = SearchMeta.read(path)
    records = read_log(path)
    folds = meta.folds or (int(records["fold"].max()) + 1 if len(records) else 0)
    candidates, params = candidate_table(records, meta.scoring, folds)
    return SearchData(path, meta, records, candidates, params, curve_records(path))


def candidate_table(records: pd.DataFrame, scoring: Sequence[str], folds: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per candidate, as ``cv_results`` counts it, and its parameters one column each.

    Columns: ``candidate_id``, ``mean_test_<scorer>`` for every scorer (NaN unless every
    fold is recorded and scored, as in ``cv_results``), ``score`` (the first scorer's),
    ``std``, ``rank``, ``fit_time`` (mean per fit), ``cost`` (what fitting it alone costs:
    ``fit_time``, or for a member of a shared fit its leader's fit time scaled by its share
    of the trees), ``estimated`` (cost scaled so), ``shared_fit``, ``prep_time`` (the shared
    preprocessing its group paid per fold), ``model_size`` (bytes, mean over folds),
    ``n_errors`` and ``n_missing``. A (candidate, fold)
    recorded twice counts once, the last time, as in ``cv_results``.
    """
    codes, ids = pd.factorize(records["candidate_id"])
    latest = _last_per_fold(codes, records["fold"].to_numpy(dtype=np.int64))
    codes = codes[latest]
    n = len(ids)
    counts = np.bincount(codes, minlength=n)
    table = pd.DataFrame({"candidate_id": pd.Series(np.asarray(ids, dtype=object), dtype=object)})  # numpy-backed: fast to subset

    def mean(column: str) -> np.ndarray:
        if column not in records:
            return np.full(n, np.nan)
        values = records[column].to_numpy(dtype=float, na_value=np.nan)[latest]
        return np.bincount(codes, weights=values, minlength=n) / np.maximum(counts, 1)

    complete = counts >= folds
    for name in scoring:
        table[f"mean_test_{name}"] = np.where(complete, mean(f"test_{name}"), np.nan)
    table["score"] = table[f"mean_test_{scoring[0]}"] if scoring else np.nan
    if scoring:
        values = records[f"test_{scoring[0]}"].to_numpy(dtype=float, na_value=np.nan)[latest]
        spread = np.bincount(codes, weights=values**2, minlength=n) / np.maximum(counts, 1) - table["score"].to_numpy() ** 2
        table["std"] = np.sqrt(np.clip(spread, 0, None))
    else:
        table["std"] = np.nan
    table["rank"] = rank(table["score"].to_numpy())
    for column in ("fit_time", "score_time", "prep_time", "model_size"):
        table[column] = mean(column)
    failed = (records["status"].isin([Status.ERROR, Status.LOST])).to_numpy(dtype=bool)[latest]
    table["n_errors"] = np.bincount(codes, weights=failed, minlength=n).astype(int)
    table["n_missing"] = np.maximum(folds - counts, 0)
    firsts = latest[np.unique(codes, return_index=True)[1]]
    shared = records["shared_fit"].iloc[firsts] if "shared_fit" in records else pd.Series(np.full(n, None))
    table["shared_fit"] = pd.Series(shared.to_numpy(dtype=object, na_value=None), dtype=object)
    params = parse_params(pc.take(pa.array(records["params"]), pa.array(firsts)))
    table["cost"], table["estimated"] = _cost(table, params)
    return table, params


def _last_per_fold(codes: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Positions of the last record of each (candidate, fold), in log order."""
    key = codes.astype(np.int64) * (int(folds.max(initial=0)) + 1) + folds
    _, last_from_end = np.unique(key[::-1], return_index=True)
    if len(last_from_end) == len(key):
        return np.arange(len(key))
    return np.sort(len(key) - 1 - last_from_end)


def parse_params(texts: pa.Array | pa.ChunkedArray) -> pd.DataFrame:
    """Candidates' params JSON as one typed column per parameter (sorted), missing where a candidate lacks one.

    Arrow's JSON reader parses 200 000 candidates in a fraction of a second, without a
    Python string per candidate; a parameter whose values mix types (a string and a
    number) falls back to Python's ``json``.
    """
    if not len(texts):
        return pd.DataFrame(index=pd.RangeIndex(0))
    strings = (texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts).cast(pa.large_string())
    lines = pa.LargeListArray.from_arrays(pa.array([0, len(strings)], pa.int64()), strings)
    try:
        joined = pc.binary_join(lines, pa.scalar("\n", pa.large_string()))[0]
        frame = pa_json.read_json(pa.BufferReader(joined.as_buffer())).to_pandas()
    except pa.ArrowInvalid:
        rows = [json.loads(text) for text in strings.to_pylist()]
        names = sorted({name for row in rows for name in row})
        frame = pd.DataFrame({name: pd.Series([row.get(name) for row in rows], dtype=object) for name in names})
    return frame.reindex(columns=sorted(frame.columns))


def _cost(table: pd.DataFrame, params: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Fit time per fit; members of a shared fit get their leader's, scaled by their share of its trees."""
    cost = table["fit_time"].to_numpy(dtype=float).copy()
    members = table["shared_fit"].notna().to_numpy()
    if not members.any():
        return cost, members
    trees = next((params[c].to_numpy(dtype=object) for c in params.columns if c.endswith(_PATH_SUFFIX)), None)
    position = pd.Series(np.arange(len(table)), index=table["candidate_id"])
    leader = position.reindex(table["shared_fit"].where(members)).to_numpy(dtype=float)
    for i in np.flatnonzero(members & np.isfinite(leader)):
        j = int(leader[i])
        share = float(trees[i]) / float(trees[j]) if trees is not None and trees[i] and trees[j] else 1.0
        cost[i] = cost[j] * share
    return cost, members


def labels(params: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """``precision=5 model=Ridge alpha=0.1`` for each row of ``params``: the ``names`` given, by their last part when unique."""
    tails = [c.rpartition("__")[2] for c in names]
    short = [t if tails.count(t) == 1 else c for c, t in zip(names, tails)]
    columns = [params[c].to_numpy(dtype=object) for c in names]
    return [" ".join(f"{label}={_short(name, row[k])}" for k, (label, name) in enumerate(zip(short, names)) if not is_missing(row[k]))
            for row in zip(*columns)] if names else [""] * len(params)


def varying(params: pd.DataFrame) -> list[str]:
    """The parameters whose value differs between candidates (all of them for a single candidate)."""
    return [c for c in params.columns if len(params) == 1 or distinct_values(params[c]) > 1]


def _short(name: str, value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return f"{value:.0f}"  # an integer parameter read back as a float (missing elsewhere)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and "__" not in name:
        return value.rpartition(".")[2]
    return str(value)


def pareto_front(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Mask of the candidates no other beats on both: lower (or equal) cost and higher score."""
    cost, score = np.asarray(cost, dtype=float), np.asarray(score, dtype=float)
    ok = np.isfinite(cost) & np.isfinite(score)
    front = np.zeros(len(cost), dtype=bool)
    index = np.flatnonzero(ok)
    order = index[np.lexsort((-score[index], cost[index]))]
    ordered = score[order]
    before = np.maximum.accumulate(np.r_[-np.inf, ordered[:-1]])  # the best score of every cheaper candidate
    front[order[ordered > before]] = True
    return front


def sample(table: pd.DataFrame, bound: int = MAX_POINTS, always: np.ndarray | None = None, top: int = 50, seed: int = 0) -> pd.DataFrame:
    """At most ``bound`` rows of ``table`` (ranked candidates): the ``always`` mask and the ``top`` best first, the rest a seeded sample."""
    if len(table) <= bound:
        return table
    keep = np.zeros(len(table), dtype=bool) if always is None else np.asarray(always, dtype=bool).copy()
    keep |= table["rank"].to_numpy() <= top
    rest = np.flatnonzero(~keep)
    room = max(bound - int(keep.sum()), 0)
    keep[np.random.default_rng(seed).choice(rest, size=min(room, len(rest)), replace=False)] = True
    return table[keep]


def density(x: np.ndarray, y: np.ndarray, bins: int = 40, log_x: bool = True) -> pd.DataFrame:
    """The occupied cells of a 2-D histogram of every candidate: edges and count (the background of a scatter)."""
    ok = np.isfinite(x) & np.isfinite(y) & ((x > 0) if log_x else True)
    x, y = x[ok], y[ok]
    if not len(x):
        return pd.DataFrame(columns=["left", "right", "bottom", "top", "count"])
    xs = np.log10(x) if log_x else x
    counts, x_edges, y_edges = np.histogram2d(xs, y, bins=bins)
    if log_x:
        x_edges = 10**x_edges
    i, j = np.nonzero(counts)
    return pd.DataFrame({"left": x_edges[i], "right": x_edges[i + 1], "bottom": y_edges[j], "top": y_edges[j + 1], "count": counts[i, j]})


@dataclass(frozen=True)
class Timeline:
    """When each worker was busy fitting and scoring: intervals, or per-bin shares of busy time past a bound."""

    segments: pd.DataFrame  # worker, start, end (seconds since the first record), share (of it busy), failed (share of its fits)
    workers: pd.DataFrame  # worker, busy (s), span (s), idle (share of the span)
    binned: bool


def timeline(records: pd.DataFrame) -> Timeline | None:
    """Busy intervals per worker from the records' ``started`` and ``finished`` (None without them)."""
    if not {"started", "finished", "worker"} <= set(records.columns):
        return None
    frame = records[records["started"].notna() & records["finished"].notna() & records["worker"].notna()]
    if frame.empty:
        return None
    start, end = epoch_seconds(frame["started"]), epoch_seconds(frame["finished"])
    origin = float(start.min())
    failed = frame["status"].to_numpy(dtype=object) != Status.OK
    segments, workers = [], []
    binned = False
    codes, names = pd.factorize(frame["worker"], sort=True)
    for k, worker in enumerate(names):
        mine = codes == k
        s, e, f = _merge(start[mine] - origin, end[mine] - origin, failed[mine])
        busy, span = float((e - s).sum()), float(e.max() - s.min())
        workers.append((worker, busy, span, 1 - busy / span if span > 0 else 0.0))
        if len(s) > MAX_SEGMENTS:
            binned = True
        segments.append(pd.DataFrame({"worker": worker, "start": s, "end": e, "share": 1.0, "failed": f.astype(float)}))
    table = pd.concat(segments, ignore_index=True)
    if binned:
        table = _binned(table, float(table["end"].max()))
    return Timeline(table, pd.DataFrame(workers, columns=["worker", "busy", "span", "idle"]), binned)


def _merge(start: np.ndarray, end: np.ndarray, failed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlapping intervals joined (records of one task share its start); failed if any record in it failed."""
    order = np.argsort(start, kind="stable")
    start, end, failed = start[order], np.maximum(end[order], start[order]), failed[order]
    reach = np.maximum.accumulate(end)
    new = np.r_[True, start[1:] > reach[:-1]]
    return start[new], np.maximum.reduceat(end, np.flatnonzero(new)), np.logical_or.reduceat(failed, np.flatnonzero(new))


def _binned(segments: pd.DataFrame, span: float) -> pd.DataFrame:
    """Busy share of each worker in :data:`TIMELINE_BINS` equal bins of time (failed: the share of failed intervals starting in it)."""
    edges = np.linspace(0.0, span, TIMELINE_BINS + 1)
    rows = []
    for worker, mine in segments.groupby("worker", sort=True):
        s, e = mine["start"].to_numpy(), mine["end"].to_numpy()
        done = np.r_[0.0, np.cumsum(e - s)]  # busy seconds before each interval, and in all
        busy_until = np.interp(edges, np.c_[s, e].ravel(), np.c_[done[:-1], done[1:]].ravel())
        busy = np.diff(busy_until) / np.diff(edges)
        where = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, TIMELINE_BINS - 1)
        tasks = np.bincount(where, minlength=TIMELINE_BINS)
        failed = np.bincount(where, weights=mine["failed"].to_numpy(dtype=float), minlength=TIMELINE_BINS) / np.maximum(tasks, 1)
        rows.append(pd.DataFrame({"worker": worker, "start": edges[:-1], "end": edges[1:], "share": np.clip(busy, 0, 1), "failed": failed}))
    return pd.concat(rows, ignore_index=True)


def learning_curves(searches: Sequence[SearchData]) -> pd.DataFrame | None:
    """Score and fit time against training rows, per parameter setting (None unless rows vary).

    Rows come from the search's learning-curve records when it has them, else from the
    records' ``fit_rows`` column when they have one (a search that grows its rows), else
    from searches of the same pipeline and space that differ in ``data.rows`` (a log root
    of such searches).
    """
    frames = []
    for search in searches:
        records = search.records if search.curves is None else search.curves
        if ROWS_COLUMN in records.columns and records[ROWS_COLUMN].nunique() > 1:
            ok = records[records["status"] == Status.OK]
            grouped = ok.groupby(["params", ROWS_COLUMN], sort=False).agg(
                score=(f"test_{search.scorer}", "mean"), fit_time=("fit_time", "mean")).reset_index()
            frames.append(grouped.rename(columns={ROWS_COLUMN: "rows"}).assign(search_id=search.meta.search_id))
        elif (rows := config_rows(search)) is not None:
            scored = search.candidates[np.isfinite(search.candidates["score"])]
            text = [json.dumps(p, sort_keys=True) for p in search.params.loc[scored.index].to_dict("records")]
            frames.append(pd.DataFrame({"params": text, "rows": rows, "score": scored["score"].to_numpy(),
                                        "fit_time": scored["fit_time"].to_numpy(), "search_id": search.meta.search_id}))
    if not frames:
        return None
    curves = pd.concat(frames, ignore_index=True)
    settings = curves.groupby("params")["rows"].nunique()
    curves = curves[curves["params"].isin(settings[settings > 1].index)]
    return curves.sort_values(["params", "rows"], kind="stable").reset_index(drop=True) if len(curves) else None


def config_rows(search: SearchData) -> int | None:
    config = search.meta.config or {}
    rows = (config.get("data") or {}).get("rows") if isinstance(config, dict) else None
    return int(rows) if isinstance(rows, (int, float)) and not isinstance(rows, bool) else None


def rounds(search: SearchData) -> pd.DataFrame | None:
    """Halving rounds when the records have a ``round`` column: per round, candidates and their scores."""
    records = search.records
    if ROUND_COLUMN not in records.columns or records[ROUND_COLUMN].nunique() < 2:
        return None
    ok = records[records["status"] == Status.OK]
    columns = {"score": (f"test_{search.scorer}", "mean"), "fit_time": ("fit_time", "mean")}
    if ROWS_COLUMN in ok.columns:
        columns["rows"] = (ROWS_COLUMN, "max")
    table = ok.groupby([ROUND_COLUMN, "candidate_id"]).agg(**columns).reset_index()
    return table.rename(columns={ROUND_COLUMN: "round"})


def is_missing(value: object) -> bool:
    """None, NA or NaN."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
