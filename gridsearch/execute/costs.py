"""The cost model of a search: seconds per piece of work as a power of the rows, times what the plan counts.

Pure Python and numpy, no Dask: :mod:`gridsearch.execute.estimate` measures the curves on
the cluster. The plan is counted as the engine runs it (:mod:`gridsearch.execute.executor`):
one task per fold for each distinct raw stage, one prefix per group and fold, one fit per
fit family and fold (a family along ``n_estimators`` is one fit of its largest member,
every member scored), batched into tasks as :class:`~gridsearch.execute.batching.FitCosts`
sizes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gridsearch.execute.batching import FitCosts
from gridsearch.search.plan import Plan
from gridsearch.search.schedule import Round, Schedule

STAGE, PREFIX, FIT = "stage", "prefix", "fit"
MAX_ROWS = 10**12  # the largest data.rows searched for when inverting a budget


@dataclass(frozen=True)
class Curve:
    """``seconds = a * rows ** b``: the cost of one piece of work on ``rows`` training rows."""

    a: float
    b: float

    @classmethod
    def fit(cls, rows: Sequence[float], seconds: Sequence[float]) -> Curve:
        """Least squares of ``log(seconds) = log(a) + b log(rows)``: :func:`fit_curves` of one series."""
        return fit_curves([(rows, seconds)])[0]

    def seconds(self, rows: float) -> float:
        return self.a * rows**self.b


def fit_curves(series: Sequence[tuple[Sequence[float], Sequence[float]]]) -> list[Curve]:
    """A curve per ``(rows, seconds)`` series, all with one exponent ``b``, each with its own ``a``.

    Least squares of ``log(seconds)`` on ``log(rows)`` with a slope shared by the series (the
    same model kind on other preprocessing scales alike), so a few noisy points per series
    still give a steady ``b``. ``b`` is never below 0 (costs do not fall with rows); without
    two row counts in any series, cost is taken as proportional to rows (``b = 1``).
    """
    logs = [(np.log(np.asarray(rows, float)), np.log(np.maximum(np.asarray(seconds, float), 1e-9))) for rows, seconds in series]
    spread = sum(float(((x - x.mean()) ** 2).sum()) for x, _ in logs)
    b = sum(float(((x - x.mean()) * (y - y.mean())).sum()) for x, y in logs) / spread if spread > 0 else 1.0
    b = max(b, 0.0)
    return [Curve(float(np.exp(np.mean(y - b * x))), b) for x, y in logs]


@dataclass(frozen=True)
class WorkCount:
    """A piece of work the plan runs ``per_fold`` times on every fold.

    ``what`` is :data:`STAGE` (``key`` the stage id), :data:`PREFIX` (the group id) or
    :data:`FIT` (``(group id, kind)``; ``per_fold`` counts fit families, ``fits`` the
    (candidate, fold) pairs they serve). ``groups`` are the prefix groups that need it.
    """

    what: str
    key: str | tuple[str, str]
    label: str
    per_fold: int
    fits: int
    groups: frozenset[str]


def count_work(plan: Plan, label: Callable[[str, str | tuple[str, str]], str] = lambda what, key: str(key)) -> list[WorkCount]:
    """What the engine runs of ``plan``, each distinct piece once; ``label(what, key)`` names each piece."""
    stages: dict[str, set[str]] = {}
    fits: dict[tuple[str, str], list[int]] = {}
    for group in plan.groups:
        for stage in group.stages:
            stages.setdefault(stage.id, set()).add(group.id)
        for family in group.families:
            counts = fits.setdefault((group.id, family.kind), [0, 0])
            counts[0] += 1
            counts[1] += len(family.items)
    work = [WorkCount(STAGE, stage, label(STAGE, stage), 1, 0, frozenset(groups)) for stage, groups in stages.items()]
    if plan.has_prefix:
        work += [WorkCount(PREFIX, group.id, label(PREFIX, group.id), 1, 0, frozenset([group.id])) for group in plan.groups]
    work += [WorkCount(FIT, key, label(FIT, key), families, items * plan.folds, frozenset([key[0]]))
             for key, (families, items) in fits.items()]
    return work


@dataclass(frozen=True)
class Work:
    """A counted piece of work with its measured cost curve."""

    count: WorkCount
    curve: Curve

    def seconds(self, train_rows: float, folds: int) -> float:
        """Single-core seconds of every run of this piece on ``folds`` folds."""
        return self.count.per_fold * folds * self.curve.seconds(train_rows)

    def tasks(self, train_rows: float, folds: int) -> int:
        """Dask tasks it takes: fit families batched to the engine's task size, anything else one each."""
        if self.count.what != FIT:
            return self.count.per_fold * folds * (2 if self.count.what == STAGE else 1)  # a stage task and its summary
        key = ("", "")
        batch = FitCosts({key: self.curve.seconds(train_rows)}).batch_size(key)
        return folds * math.ceil(self.count.per_fold / batch)


@dataclass(frozen=True)
class CostModel:
    """A search's predicted time as a function of ``data.rows``.

    ``train_fraction`` turns ``data.rows`` into a training fold's rows (after cleaning,
    hold-out and the fold split), as the configured data did. ``fixed`` is what does not
    grow with rows (cluster start-up, preparing the search), ``serial_per_row`` the seconds
    per row before any stage can start (loading the rows); ``task_overhead`` the wall
    seconds the cluster spends per task beyond its work; ``threads`` its worker threads.
    """

    work: tuple[Work, ...]
    folds: int
    train_fraction: float
    threads: int
    task_overhead: float
    fixed: float = 0.0
    serial_per_row: float = 0.0

    def train_rows(self, rows: float) -> float:
        return max(1.0, rows * self.train_fraction)

    def cpu_seconds(self, rows: float, work: Sequence[Work] | None = None) -> float:
        """Single-core seconds of ``work`` (default: all of it) at ``data.rows = rows``."""
        n = self.train_rows(rows)
        return sum(piece.seconds(n, self.folds) for piece in (self.work if work is None else work))

    def wall_seconds(self, rows: float, work: Sequence[Work] | None = None) -> float:
        """Predicted wall time on the cluster: fixed costs, the work spread over every thread, and the tasks' overhead."""
        chosen = self.work if work is None else work
        n = self.train_rows(rows)
        tasks = 1 + sum(piece.tasks(n, self.folds) for piece in chosen)  # 1: the data task
        serial = self.fixed + self.serial_per_row * rows
        return serial + self.cpu_seconds(rows, chosen) / self.threads + tasks * self.task_overhead

    def round_seconds(self, round_: Round, everyone: int, train_share: float, groups: int) -> float:
        """Predicted wall time of a halving round on ``n_samples`` (no fixed costs; one data task).

        A round of ``c`` of the plan's ``everyone`` candidates runs ``c / everyone`` of its fits
        and the preprocessing of at most ``c`` of its ``groups`` prefix groups, each fit on
        ``train_share`` x the round's rows (scikit-learn subsamples every fold by the round's share).
        """
        rows = max(1.0, round_.resources * train_share)
        fits, preprocessing = round_.candidates / everyone, min(1.0, round_.candidates / groups)
        shares = [fits if piece.count.what == FIT else preprocessing for piece in self.work]
        cpu = sum(share * piece.seconds(rows, self.folds) for share, piece in zip(shares, self.work))
        tasks = 1 + sum(math.ceil(share * piece.tasks(rows, self.folds)) for share, piece in zip(shares, self.work))
        return cpu / self.threads + tasks * self.task_overhead

    def halving_seconds(self, schedule: Schedule, train_share: float, groups: int) -> float:
        """Predicted wall time of every round of a halving schedule, one after another (see :meth:`round_seconds`)."""
        everyone = schedule.rounds[0].candidates
        return sum(self.round_seconds(round_, everyone, train_share, groups) for round_ in schedule.rounds)

    def largest_rows(self, budget: float, work: Sequence[Work] | None = None) -> int | None:
        """The largest ``data.rows`` whose predicted wall time is within ``budget`` seconds (None: not even one row)."""
        def fits(rows: float) -> bool:
            return self.wall_seconds(rows, work) <= budget

        if not fits(1):
            return None
        if fits(MAX_ROWS):
            return MAX_ROWS
        low, high = 1, MAX_ROWS
        while high - low > max(1, low // 1000):  # to 0.1%: the curves are not more exact than that
            middle = int(math.sqrt(low * high)) if high > 4 * low else (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        return low

    def for_kind(self, kind: str) -> list[Work]:
        """The work of a search of one model kind alone: its fits, and the preprocessing of their groups."""
        groups = {piece.count.key[0] for piece in self.work if piece.count.what == FIT and piece.count.key[1] == kind}
        return [piece for piece in self.work if (piece.count.what != FIT or piece.count.key[1] == kind) and piece.count.groups & groups]
