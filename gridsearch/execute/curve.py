"""Learning curves of a search's best candidates, on the engine: ``gridsearch curve``.

For each training size ``n`` and each fold ``k`` of the search, a candidate is fitted on the
first ``n`` of fold ``k``'s train rows and scored on fold ``k``'s test rows, as
``sklearn.model_selection.learning_curve`` does without shuffling (sizes are its
``train_sizes``: fractions of fold 0's train rows, or row counts). The (size, fold) pairs
are the folds of one plan, so each prefix is fitted once per pair and shared by every
candidate, as in a search. Records go to the search's curve log
(:mod:`gridsearch.log.curves`); a second call fits only what that log lacks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from gridsearch.errors import ArgumentError, GridsearchError
from gridsearch.execute.engine import config_of_log, search_work
from gridsearch.execute.executor import execute, open_client
from gridsearch.execute.workers import check_workers, ship_modules, user_modules
from gridsearch.log.curves import CURVE_DIR, curve_log, curve_records
from gridsearch.log.lease import search_lease
from gridsearch.log.records import FitRecord, SearchMeta, Status
from gridsearch.log.results import best_first, choose, log_results
from gridsearch.log.runlog import RunLog, read_log
from gridsearch.search.dataset import Dataset
from gridsearch.search.plan import make_plan
from gridsearch.search.prepare import PreparedSearch, prepare_search
from gridsearch.search.space import Candidate
from kampai.ids import content_id
from kampai.provenance import code_version

Pair = tuple[int, int]  # (training rows, fold of the search)
_SIZES_HELP = "give fractions of each fold's training rows in (0, 1] or row counts, e.g. 0.1,0.3,1.0"


@dataclass(frozen=True)
class CurveResult:
    """The learning curves of some candidates of a search.

    ``records`` holds one row per (candidate, ``fit_rows``, fold) asked for, as logged in
    ``log_path``; ``sizes`` are the training rows, ascending; ``n_fits`` counts the fits
    run by this call, ``n_resumed`` those its log held already.
    """

    search_id: str
    log_path: Path
    scorer: str
    candidates: tuple[str, ...]
    sizes: tuple[int, ...]
    folds: int
    records: pd.DataFrame
    n_fits: int
    n_resumed: int

    def scores(self, candidate_id: str, scorer: str | None = None) -> np.ndarray:
        """Test scores of one candidate, one row per size and one column per fold (``learning_curve``'s ``test_scores``)."""
        mine = self.records[self.records["candidate_id"] == candidate_id].set_index(["fit_rows", "fold"])
        grid = pd.MultiIndex.from_product([self.sizes, range(self.folds)])
        return mine[f"test_{scorer or self.scorer}"].reindex(grid).to_numpy(dtype=float).reshape(len(self.sizes), self.folds)

    @property
    def table(self) -> pd.DataFrame:
        """Per candidate and size: mean and std of the test score over the folds, mean fit time."""
        grouped = self.records.groupby(["candidate_id", "fit_rows"], sort=False)
        table = grouped.agg(score=(f"test_{self.scorer}", "mean"), std=(f"test_{self.scorer}", lambda s: s.std(ddof=0)),
                            fit_s=("fit_time", "mean")).reset_index()
        rank = table["candidate_id"].map({cid: index for index, cid in enumerate(self.candidates)})
        return table.assign(rank=rank).sort_values(["rank", "fit_rows"]).drop(columns="rank").reset_index(drop=True)

    def __str__(self) -> str:
        table = self.table.rename(columns={"candidate_id": "candidate", "fit_rows": "rows", "score": f"mean_{self.scorer}"})
        resumed = f" ({self.n_resumed} from an earlier run)" if self.n_resumed else ""
        failed = int((self.records["status"] != Status.OK).sum())
        failed_text = f", {failed} failed or lost (see the curve log)" if failed else ""
        many = "s" if len(self.candidates) != 1 else ""
        return (f"learning curves of {len(self.candidates)} candidate{many} of search {self.search_id}, "
                f"{self.scorer} over {self.folds} folds\n\n{table.to_string(index=False, float_format=lambda v: f'{v:.4f}')}\n\n"
                f"{self.n_fits + self.n_resumed} fits{resumed}{failed_text}\ncurve log: {self.log_path}")


def curve(log_path: str | os.PathLike[str], *, top: int = 3, sizes: Sequence[float] = (0.1, 0.3, 1.0),
          candidates: Sequence[str] | None = None, scheduler: str | None = None) -> CurveResult:
    """Fit the ``top`` best candidates of a search (or the ones named) on growing training rows.

    Parameters
    ----------
    log_path : path
        The search's log, ``runs/<search id>`` (made by ``gridsearch run``: its config is read).
    top : int
        How many of the best fully scored candidates, by the first scorer.
    sizes : sequence of float or int
        Training rows per fold, as ``learning_curve``'s ``train_sizes``: fractions in (0, 1]
        of fold 0's train rows (when any is a float), else row counts.
    candidates : sequence of str, optional
        Candidate ids (or unique prefixes) instead of the ``top`` best.
    scheduler : str, optional
        A Dask scheduler's address (default: the config's cluster).

    Raises
    ------
    ArgumentError
        For bad ``sizes`` or ``top``.
    GridsearchError
        For a log without its config, unknown candidates, or data that changed since the search.
    """
    directory = Path(log_path)
    search = prepare_search(config_of_log(directory, **({"cluster.address": scheduler} if scheduler else {})))
    chosen = _chosen(search, directory, top, candidates)
    rows = train_sizes(sizes, len(search.dataset.folds[0][0]))
    pairs = tuple((n, k) for k in range(search.plan.folds) for n in rows)  # as learning_curve orders them
    path = curve_log(directory)
    done = _logged_fits(directory)
    n_resumed = sum((c.id, n, k) in done for c in chosen for n, k in pairs)
    n_fits = 0
    if n_resumed < len(chosen) * len(pairs):  # no cluster for a curve already logged
        with search_lease(path, content_id(pairs, [c.id for c in chosen])):
            n_fits = _fit(search, chosen, pairs, path, done)
    records = curve_records(directory)
    wanted = records[records["candidate_id"].isin([c.id for c in chosen]) & records["fit_rows"].isin(rows)].reset_index(drop=True)
    return CurveResult(search.search_id, path, search.config.scoring[0], tuple(c.id for c in chosen), rows,
                       search.plan.folds, wanted, n_fits, n_resumed)


def train_sizes(sizes: Sequence[float], n_max: int) -> tuple[int, ...]:
    """Training rows of each size, ascending and distinct, as ``learning_curve`` translates its ``train_sizes``.

    Raises
    ------
    ArgumentError
        For no sizes, fractions outside (0, 1], or counts outside [1, ``n_max``].
    """
    values = np.asarray(list(sizes))
    if values.size == 0:
        raise ArgumentError("sizes", f"no sizes given; {_SIZES_HELP}")
    if not (np.issubdtype(values.dtype, np.number) and values.ndim == 1) or np.issubdtype(values.dtype, np.bool_):
        raise ArgumentError("sizes", f"expected numbers, found {list(sizes)!r}; {_SIZES_HELP}")
    if np.issubdtype(values.dtype, np.floating):
        if (bad := values[(values <= 0) | (values > 1)]).size:
            raise ArgumentError("sizes", f"fractions must be in (0, 1], found {_listed(bad)}; "
                                         f"for row counts give integers only (fold 0 trains on {n_max} rows)")
        values = np.clip((values * n_max).astype(int), 1, n_max)
    elif (bad := values[(values <= 0) | (values > n_max)]).size:
        raise ArgumentError("sizes", f"row counts must be in [1, {n_max}] (the training rows of fold 0), found {_listed(bad)}")
    return tuple(int(n) for n in np.unique(values))


def parse_sizes(text: str) -> list[float]:
    """``"0.1,0.3,1.0"`` as numbers: ints stay ints (row counts), anything with a point or exponent is a fraction."""
    pieces = [piece.strip() for piece in text.split(",") if piece.strip()]
    try:
        return [int(piece) if piece.lstrip("+-").isdigit() else float(piece) for piece in pieces]
    except ValueError:
        raise ArgumentError("sizes", f"expected comma-separated numbers, found {text!r}; {_SIZES_HELP}") from None


def _chosen(search: PreparedSearch, directory: Path, top: int, candidates: Sequence[str] | None) -> list[Candidate]:
    """:func:`~gridsearch.log.results.choose` on the search's log, once it is known to hold this search's folds."""
    meta = SearchMeta.read(directory)
    if meta.search_id != search.search_id:
        raise GridsearchError(f"{directory} was logged by search {meta.search_id}, but its config now makes search {search.search_id} "
                              "(its data, pipeline or folds changed); curves need the search's own folds: restore its data")
    scoring = search.config.scoring
    table = best_first(log_results(read_log(directory), search.plan.folds, scoring), scoring[0])
    rows = choose(table, scoring[0], search.plan.folds, directory, top, candidates, "drawn as learning curves")
    return [Candidate(cid, dict(params)) for cid, params in zip(rows["candidate_id"], rows["params"])]


def curve_rows(rows: Callable[[], Dataset], pairs: Sequence[Pair]) -> Dataset:
    """The search's rows with one fold per (size, fold) pair: the first ``size`` train rows of the fold, all its test rows."""
    dataset = rows()
    return replace(dataset, folds=tuple((dataset.folds[k][0][:n], dataset.folds[k][1]) for n, k in pairs))


def _fit(search: PreparedSearch, candidates: Sequence[Candidate], pairs: Sequence[Pair], path: Path,
         done: set[tuple[str, int, int]]) -> int:
    """Run the fits the curve log lacks, on the search's cluster; how many ran."""
    work_id = content_id(search.search_id, CURVE_DIR, pairs)  # task keys: neither the search's nor another curve's
    base = search_work(search)
    work = replace(base, stamp=replace(base.stamp, search_id=work_id), rows=partial(curve_rows, base.rows, pairs),
                   plan=make_plan(candidates, search.pipeline, len(pairs), work_id), rows_id=content_id(base.rows_id, pairs))
    meta = SearchMeta(f"{search.search_id}-{CURVE_DIR}", search.config.scoring, search.plan.folds,
                      data_fingerprint=search.inputs.data_fingerprint, code_version=code_version().as_dict(),
                      created=datetime.now(UTC).isoformat())
    fitted = 0

    def on_records(batch: Sequence[FitRecord]) -> None:
        nonlocal fitted
        log.append([replace(record, search_id=meta.search_id, fit_rows=pairs[record.fold][0], fold=pairs[record.fold][1])
                    for record in batch])
        fitted += len(batch)

    values = {value for c in candidates for value in c.params.values() if isinstance(value, str)}
    with RunLog(path, meta) as log, open_client(search.config.cluster) as client:
        check_workers(client)
        ship_modules(client, user_modules(search.pipeline, values, search.config.pipeline.factory))
        execute(client, work, lambda cid, j: (cid, *pairs[j]) not in done, on_records)
    return fitted


def _logged_fits(search_log: Path) -> set[tuple[str, int, int]]:
    """(candidate, rows, fold) the curve log holds a result for (lost ones are redone)."""
    records = curve_records(search_log)
    if records is None:
        return set()
    finished = records[records["status"] != Status.LOST]
    return set(zip(finished["candidate_id"], finished["fit_rows"].astype(int), finished["fold"].astype(int)))


def _listed(values: np.ndarray) -> str:
    return ", ".join(f"{v:g}" for v in values)
