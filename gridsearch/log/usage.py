"""Where a run's worker time went, from its records: fits, scoring, preprocessing, memo loads, idle.

A record's ``prep_time`` is its prefix task's time *with* the raw stages that prefix read
(:func:`gridsearch.execute.tasks.prepare`): every record of one prefix task carries the
same value, and a raw stage read by several prefixes is in each of them. So prefix tasks
count once each (one per distinct ``(fold, prep_time)``), and the raw stages' own time,
which only the client's stage reports know, is passed in as :class:`StageTime`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SHARES = ("fits", "scoring", "preprocessing", "memo loads")


def epoch_seconds(column: pd.Series) -> np.ndarray:
    """A log timestamp column (``started``, ``finished``) as epoch seconds; NaN where missing."""
    seconds = column.to_numpy(dtype="datetime64[ms]").astype(np.int64) / 1000.0
    return np.where(column.notna().to_numpy(), seconds, np.nan)


@dataclass(frozen=True)
class StageTime:
    """Seconds of a run's raw stage tasks: ``computed``, loaded ``from_memo``, and ``in_prefixes``
    (each stage's seconds times the prefix tasks that read it: what the records' ``prep_time`` holds of them)."""

    computed: float = 0.0
    from_memo: float = 0.0
    in_prefixes: float = 0.0


@dataclass(frozen=True)
class Usage:
    """A run's worker time: ``threads`` x ``wall`` seconds, of which busy in each part, the rest idle.

    ``fits`` counts the run's timed records; a fit shared by several candidates counts once,
    as its records say: its members (``shared_fit``) have ``fit_time`` 0.

    Idle includes everything no record times: Dask's per-task cost, moving data, a task's
    bookkeeping (clone, warnings, train scores), waiting for inputs or for the last fit.
    """

    threads: int
    wall: float
    fits: int
    fit_time: float
    score_time: float
    prep_time: float
    memo_time: float

    @property
    def capacity(self) -> float:
        """Worker-seconds the run had: threads x wall."""
        return self.threads * self.wall

    @property
    def busy(self) -> float:
        """Single-core work of the run: the seconds of every part."""
        return self.fit_time + self.score_time + self.prep_time + self.memo_time

    @property
    def idle(self) -> float:
        return self.capacity - self.busy

    @property
    def efficiency(self) -> float:
        """Busy share of the capacity (NaN for a run without timed records)."""
        return self.busy / self.capacity if self.capacity > 0 else float("nan")

    def shares(self) -> dict[str, float]:
        """Each part and ``idle`` as a share of the capacity; they sum to 1."""
        parts = (self.fit_time, self.score_time, self.prep_time, self.memo_time, self.idle)
        return {name: seconds / self.capacity for name, seconds in zip((*SHARES, "idle"), parts)} if self.capacity > 0 else {}

    def line(self) -> str:
        """``workers: 2 x 31.2 s wall, 87% busy (fits 71%, ...), idle or overhead 13%``."""
        shares = self.shares()
        if not shares:
            return f"workers: {self.threads} x {self.wall:.1f} s wall, no timed fits in this run"
        parts = ", ".join(f"{name} {shares[name]:.0%}" for name in SHARES)
        return (f"workers: {self.threads} x {self.wall:.1f} s wall, {self.efficiency:.0%} busy ({parts}), "
                f"idle or overhead {shares['idle']:.0%}")


def worker_usage(records: pd.DataFrame, threads: int, since: float | None = None, stages: StageTime = StageTime()) -> Usage:
    """The worker time of one run of a search, from its records (:func:`gridsearch.read_log`).

    Parameters
    ----------
    records : DataFrame
        The search's log; records started before ``since`` (an earlier run's) do not count.
    threads : int
        Worker threads the run had.
    since : float, optional
        When the run started submitting work (epoch seconds): the start of its wall time.
        None: the first record's start, every record counting.
    stages : StageTime
        The run's raw stage tasks, as the client saw them.
    """
    started, finished = epoch_seconds(records["started"]), epoch_seconds(records["finished"])
    mine = np.isfinite(started) & np.isfinite(finished) & (started >= (-np.inf if since is None else since))
    if not mine.any():
        return Usage(threads, 0.0, 0, 0.0, 0.0, 0.0, stages.from_memo)
    run = records[mine]
    start = float(started[mine].min()) if since is None else since
    prefixes = run.loc[run["prep_time"].to_numpy(dtype=float, na_value=np.nan) > 0, ["fold", "prep_time"]].drop_duplicates()
    prefix_only = max(0.0, float(prefixes["prep_time"].sum()) - stages.in_prefixes)
    return Usage(threads, float(finished[mine].max()) - start, len(run), _total(run["fit_time"]), _total(run["score_time"]),
                 prefix_only + stages.computed, stages.from_memo)


def _total(column: pd.Series) -> float:
    """Sum of a seconds column, missing values (a lost task's) as 0."""
    return float(np.nansum(column.to_numpy(dtype=float, na_value=np.nan)))
