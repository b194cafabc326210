"""``gridsearch estimate``: how long a search takes on this cluster, and how many rows fit a time budget.

A pilot fits each distinct (preprocessing, model kind) of the plan on a few growing row
counts, on the cluster, with the engine's own task functions (raw stages, prefix, fit
families); :mod:`gridsearch.execute.costs` fits ``seconds = a * rows ** b`` to each and
counts the plan's work as the engine runs it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client, as_completed
from sklearn.utils import _safe_indexing

from gridsearch.errors import ArgumentError, GridsearchError
from gridsearch.execute.costs import FIT, PREFIX, STAGE, CostModel, Work, WorkCount, count_work, fit_curves
from gridsearch.execute.executor import open_client
from gridsearch.execute.scoring import Scoring
from gridsearch.execute.tasks import FitSetup, fit_batch, prepare, run_stage
from gridsearch.log.records import RecordStamp
from gridsearch.search.config import SearchConfig
from gridsearch.search.dataset import Dataset, rebuild
from gridsearch.search.durations import parse_duration
from gridsearch.search.pilot import pilot
from gridsearch.search.plan import DEFAULT_KIND, FitFamily, PrepGroup, RawStage
from gridsearch.search.prepare import PreparedSearch, prepare_search
from kampai.data import load_dataset

PILOT_ROWS = 50_000  # at most, training rows of the pilot's largest fits (by default those of one configured fold)
PILOT_STEPS = 3  # row counts, each 3x the one before
GROW_LIMIT = 2.0  # seconds: a piece whose pilot fit passes this is not grown further
SAMPLES = 3  # fit families measured per (preprocessing, model kind), spread over its families
WARM_UPS = 2  # runs of each task of the first, discarded round: on every worker of a small cluster
BUSY = 1.2  # pilot wall over CPU time above which the estimate says the machine was busy
OVERHEAD_TASKS = 8  # trivial tasks per worker thread timing the cluster's per-task cost


@dataclass(frozen=True)
class PieceEstimate:
    """One distinct piece of the plan: its label, count, fitted curve and predicted single-core seconds."""

    what: str
    label: str
    kind: str
    tasks: int
    fits: int
    a: float
    b: float
    seconds: float
    pilot_rows: tuple[int, ...]
    pilot_seconds: tuple[float, ...]


@dataclass(frozen=True)
class KindEstimate:
    """A search of one model kind alone (its fits and their preprocessing), at the configured rows and within the budget."""

    kind: str
    fits: int
    wall_seconds: float
    largest_rows: int | None


@dataclass(frozen=True)
class Estimate:
    """What :func:`estimate` predicts; ``model`` predicts any other ``data.rows`` (``model.wall_seconds(rows)``).

    Times are CPU seconds on cores the search has to itself. ``contention`` is the pilot
    tasks' wall time over their CPU time: above 1, other processes were taking the cores.
    ``pilot_rows`` is the ``data.rows`` the pilot's largest fits stand for; a larger
    ``largest_rows`` is extrapolated. ``available_rows`` is what a data file holds (None for
    the generator).
    """

    rows: int
    budget: float
    n_fits: int
    threads: int
    cpu_seconds: float
    wall_seconds: float
    largest_rows: int | None
    pilot_rows: int
    pilot_wall: float
    contention: float
    available_rows: int | None
    pieces: tuple[PieceEstimate, ...]
    kinds: tuple[KindEstimate, ...]
    model: CostModel

    @property
    def extrapolated(self) -> bool:
        return self.largest_rows is not None and self.largest_rows > self.pilot_rows

    def lines(self) -> list[str]:
        """What ``gridsearch estimate`` prints."""
        budget = _duration(self.budget)
        lines = [(f"predicted wall time of the search as configured ({self.rows:,} rows, {self.n_fits:,} fits on "
                  f"{self.threads} worker threads): {_duration(self.wall_seconds)} ({self.cpu_seconds:.1f} single-core s of work; "
                  f"pilot {self.pilot_wall:.1f} s)"),
                 f"largest data.rows within {budget}: {_rows(self.largest_rows)}{self._range_note(self.largest_rows)}",
                 *self._busy_note(),
                 "", f"{'piece':<44} {'tasks':>6} {'fits':>6} {'a':>9} {'b':>5} {'single-core s':>13}"]
        lines += [f"{p.label[:44]:<44} {p.tasks:>6} {p.fits or '':>6} {p.a:>9.2e} {p.b:>5.2f} {p.seconds:>13.2f}" for p in self.pieces]
        lines += ["", f"{'model kind alone':<24} {'fits':>6} {'wall':>9} {'largest data.rows within ' + budget:>32}"]
        lines += [f"{k.kind:<24} {k.fits:>6} {_duration(k.wall_seconds):>9} {_rows(k.largest_rows):>32}" for k in self.kinds]
        return lines

    def _busy_note(self) -> list[str]:
        if self.contention < BUSY:
            return []
        return [(f"busy machine: the pilot's tasks took {self.contention:.1f}x their CPU time (other processes); "
                 f"at that load expect ~{_duration(self.wall_seconds * self.contention)}")]

    def _range_note(self, rows: int | None) -> str:
        notes = []
        if rows is not None and rows > self.pilot_rows:
            notes.append(f"extrapolated beyond the pilot's {self.pilot_rows:,}")
        if rows is not None and self.available_rows is not None and rows > self.available_rows:
            notes.append(f"the file has {self.available_rows:,}")
        return f" ({'; '.join(notes)})" if notes else ""


def estimate(config: str | os.PathLike[str] | SearchConfig, budget: str | float = "1h", *, pilot_rows: int | None = None,
             **overrides: Any) -> Estimate:
    """Predict a search's wall time on its cluster, and the largest ``data.rows`` within ``budget``.

    Parameters
    ----------
    config : path or SearchConfig
        The search YAML; its ``cluster`` section says where the pilot runs.
    budget : str or float
        A duration (``"1h"``, ``"30min"``, ``"1h30min"``) or seconds.
    pilot_rows : int, optional
        Training rows of the pilot's largest fits (fewer if the data file has fewer rows);
        default: a configured fold's, at most :data:`PILOT_ROWS`. A piece whose fit passes
        :data:`GROW_LIMIT` seconds is not grown further.
    **overrides
        Config values by dotted key or nested dict, as for :func:`gridsearch.run`.

    Raises
    ------
    ArgumentError
        On a budget that is not a duration, before any work.
    ConfigError
        On a bad config, before any work is sent.
    """
    try:
        seconds = parse_duration(budget)
    except GridsearchError as exc:
        raise ArgumentError("budget", str(exc)) from None
    start = time.perf_counter()
    search = prepare_search(config, **overrides)
    pilot(search)  # the engine's own check before it sends work: it costs the same here
    begun = time.perf_counter()
    rebuild(search.inputs.data_spec, search.inputs.frame)  # the data task, as a worker runs it
    client_side = _Serial(begun - start, time.perf_counter() - begun)
    pilot_rows = pilot_rows or min(PILOT_ROWS, len(search.dataset.fold(0)[1]))
    frame, available = _pilot_frame(search, pilot_rows)
    sizes = _sizes(min(pilot_rows, _train_rows(len(frame), search.config)))
    started = time.perf_counter()
    with open_client(search.config.cluster) as client:
        startup = 0.0 if search.config.cluster.address else time.perf_counter() - started
        begun = time.perf_counter()
        X, y = frame.drop(columns=[search.config.data.target]), frame[search.config.data.target].to_numpy()
        measured, contention = _run_pilot(client, search, X, y, sizes)
        pilot_wall = time.perf_counter() - begun
        overhead = _task_overhead(client)
        threads = sum(client.nthreads().values())
    return _estimate(search, seconds, measured, _Cluster(threads, overhead, startup, contention), client_side, pilot_wall, available, sizes)


@dataclass(frozen=True)
class _Serial:
    """Seconds before the first fit: preparing the search in the client, and building the rows (done twice: client, data task)."""

    prepare: float
    rows: float


@dataclass(frozen=True)
class _Cluster:
    threads: int
    task_overhead: float
    startup: float
    contention: float


def _estimate(search: PreparedSearch, budget: float, measured: Mapping[Any, dict[int, float]], cluster: _Cluster, serial: _Serial,
              pilot_wall: float, available: int | None, sizes: Sequence[int]) -> Estimate:
    """The cost model of the measured pieces, and its predictions."""
    rows = search.config.data.rows or _loaded_rows(search)
    train_fraction = len(search.dataset.fold(0)[1]) / rows
    labels = _Labels(search)
    work = _measured_work(search, measured, labels)
    model = CostModel(work, search.plan.folds, train_fraction, cluster.threads, cluster.task_overhead,
                      cluster.startup + max(0.0, serial.prepare - serial.rows), 2 * serial.rows / rows)
    n = model.train_rows(rows)
    pieces = tuple(PieceEstimate(piece.count.what, piece.count.label, labels.kind(piece.count), piece.tasks(n, model.folds),
                                 piece.count.fits, piece.curve.a, piece.curve.b, piece.seconds(n, model.folds),
                                 tuple(measured[_key(piece.count)]), tuple(measured[_key(piece.count)].values())) for piece in work)
    kinds = tuple(KindEstimate(labels.short(kind), sum(p.count.fits for p in model.for_kind(kind)), model.wall_seconds(rows, model.for_kind(kind)),
                               model.largest_rows(budget, model.for_kind(kind)))
                  for kind in dict.fromkeys(piece.count.key[1] for piece in work if piece.count.what == FIT))
    return Estimate(rows, budget, search.plan.n_fits, cluster.threads, model.cpu_seconds(rows), model.wall_seconds(rows), model.largest_rows(budget),
                    int(max(sizes) / train_fraction), pilot_wall, cluster.contention, available, pieces, kinds, model)


def pilot_model(search: PreparedSearch, client: Client, pilot_rows: int = PILOT_ROWS) -> tuple[CostModel, float]:
    """The cost model of ``search``'s plan, from a pilot on ``client`` on the search's own rows (as :func:`estimate`'s, its
    largest fits on at most ``pilot_rows`` training rows), and the pilot tasks' wall time over their CPU time (above 1:
    other processes took the cores).

    Its fixed costs are 0 (a run measuring it has paid them) and ``train_fraction`` 1: it
    predicts from training rows per fit.
    """
    sizes = _sizes(min(pilot_rows, len(search.dataset.folds[0][0])))
    measured, contention = _run_pilot(client, search, search.dataset.X, search.dataset.y, sizes)
    work = _measured_work(search, measured, _Labels(search))
    return CostModel(work, search.plan.folds, 1.0, sum(client.nthreads().values()), _task_overhead(client)), contention


def _measured_work(search: PreparedSearch, measured: Mapping[Any, dict[int, float]], labels: _Labels) -> tuple[Work, ...]:
    """The plan's pieces that the pilot measured, each with its curve."""
    return _fitted([count for count in count_work(search.plan, labels) if measured.get(_key(count))], measured, labels)


def _fitted(counts: Sequence[WorkCount], measured: Mapping[Any, dict[int, float]], labels: _Labels) -> tuple[Work, ...]:
    """Each counted piece with its curve; pieces of one kind (a model, a stage, prefixes) share their exponent."""
    kinds: dict[Any, list[WorkCount]] = {}
    for count in counts:
        kinds.setdefault(labels.family(count), []).append(count)
    curves = {}
    for same in kinds.values():
        fitted = fit_curves([(list(measured[_key(count)]), list(measured[_key(count)].values())) for count in same])
        curves.update(zip(map(_key, same), fitted))
    return tuple(Work(count, curves[_key(count)]) for count in counts)


def _key(count: WorkCount) -> Any:
    return (count.what, count.key)


class _Labels:
    """Readable names of a plan's pieces: ``features__geohash precision=5``, ``precision=5 Ridge``."""

    def __init__(self, search: PreparedSearch) -> None:
        self._default = type(search.pipeline.steps[-1][1] if search.plan.has_prefix else search.pipeline).__name__
        self._groups = {group.id: " ".join(f"{name.rpartition('__')[2]}={value}" for name, value in group.params.items())
                        for group in search.plan.groups}
        self._stages = {stage.id: " ".join([stage.path, *(f"{name.rpartition('__')[2]}={value}" for name, value in stage.params.items())])
                        for group in search.plan.groups for stage in group.stages}

    def __call__(self, what: str, key: Any) -> str:
        if what == STAGE:
            return f"stage {self._stages[key]}"
        if what == PREFIX:
            return f"prefix {self._groups[key] or '(no parameters)'}"
        return f"fit {self.short(key[1])} {self._groups[key[0]]}".rstrip()

    def short(self, kind: str) -> str:
        return self._default if kind == DEFAULT_KIND else kind.rpartition(".")[2]

    def family(self, count: WorkCount) -> tuple[str, str]:
        """What pieces scale alike: fits of one model kind, one raw stage at any parameters, every prefix."""
        if count.what == FIT:
            return (FIT, count.key[1])
        return (STAGE, self._stages[count.key].partition(" ")[0]) if count.what == STAGE else (PREFIX, "")

    def kind(self, count: WorkCount) -> str:
        return self.short(count.key[1]) if count.what == FIT else ""


def _loaded_rows(search: PreparedSearch) -> int:
    """Rows left after loading and cleaning, hold-out included."""
    return len(search.dataset.X) + (len(search.holdout[1]) if search.holdout else 0)


def _train_rows(rows: int, cfg: SearchConfig) -> int:
    """Training rows of one fold of ``rows`` loaded rows."""
    kept = rows * (1 - (cfg.data.test_size or 0.0))
    return int(kept * (cfg.cv.folds - 1) / cfg.cv.folds)


def _sizes(top: int) -> list[int]:
    """Training row counts of the pilot, growing 3x up to ``top``."""
    return sorted({max(2, round(top / 3**step)) for step in range(PILOT_STEPS)})


def _pilot_frame(search: PreparedSearch, train_rows: int) -> tuple[Any, int | None]:
    """Rows for the pilot's largest fit and its test side: generated anew, or read from the file (None: no limit)."""
    cfg = search.config
    loaded = _loaded_rows(search)
    kept = loaded / (cfg.data.rows or loaded)  # the share of rows cleaning keeps
    wanted = int(train_rows * cfg.cv.folds / (cfg.cv.folds - 1) / (1 - (cfg.data.test_size or 0.0)) / kept) + 1
    frame = load_dataset(cfg.data.source, rows=wanted, seed=cfg.data.seed, clean=cfg.data.clean)
    frame = frame.sample(frac=1.0, random_state=0)  # a file's rows may come in order
    return frame, None if cfg.data.is_synthetic else len(frame) if len(frame) < wanted else None


@dataclass(frozen=True)
class _Task:
    """What one pilot task measures: one group's stages, prefix and sample families of its growing kinds."""

    group: str
    params: Mapping[str, Any]
    stages: tuple[RawStage, ...]
    families: Mapping[str, tuple[FitFamily, ...]]

    def growing(self, measured: Mapping[Any, dict[int, float]], size: int) -> _Task:
        """The task with only the kinds whose fit on ``size`` rows stayed under :data:`GROW_LIMIT`."""
        kept = {kind: families for kind, families in self.families.items() if measured[(FIT, (self.group, kind))][size] < GROW_LIMIT}
        return _Task(self.group, self.params, self.stages, kept)


def _run_pilot(client: Client, search: PreparedSearch, X: Any, y: Any, sizes: Sequence[int]) -> tuple[dict[Any, dict[int, float]], float]:
    """CPU seconds of each piece of the plan at each pilot row count (on the first rows of ``X``, ``y``), grown until a
    piece passes :data:`GROW_LIMIT`; and the pilot tasks' wall time over their CPU time."""
    cfg = search.config
    data = client.scatter(Dataset(X, y, ()), broadcast=False)
    stamp = RecordStamp(search.search_id, search.inputs.data_fingerprint, None, None, "pilot", cfg.scoring)
    setup = FitSetup(search.pipeline, search.plan.final_step, stamp, Scoring.named(cfg.scoring))
    tasks = [_Task(group.id, group.params, group.stages, _samples(group)) for group in search.plan.groups]
    measured: dict[Any, dict[int, float]] = {}
    wall = cpu = 0.0
    for index, size in enumerate([sizes[0], *sizes]):  # round 0 warms the workers up (imports, first calls): not kept
        test = max(1, size // (cfg.cv.folds - 1))
        futures = [client.submit(_measure, data, size, test, search.pipeline, search.plan.has_prefix, task, setup, pure=False)
                   for task in tasks for _ in range(1 if index else WARM_UPS)]
        for future in as_completed(futures):
            pieces, task_wall, task_cpu = future.result()
            if index:
                wall, cpu = wall + task_wall, cpu + task_cpu
                for key, seconds in pieces.items():
                    measured.setdefault(key, {}).setdefault(size, seconds)
        if index:
            tasks = [task for task in (task.growing(measured, size) for task in tasks) if task.families]
    return measured, wall / cpu if cpu > 0 else 1.0


def _samples(group: PrepGroup) -> dict[str, tuple[FitFamily, ...]]:
    """Up to :data:`SAMPLES` families of each kind in ``group``, spread evenly over its families."""
    counts: dict[str, int] = {}
    for family in group.families:
        counts[family.kind] = counts.get(family.kind, 0) + 1
    chosen = {kind: _spread(n, min(SAMPLES, n)) for kind, n in counts.items()}
    seen: dict[str, int] = {}
    samples: dict[str, list[FitFamily]] = {kind: [] for kind in counts}
    for family in group.families:
        index = seen[family.kind] = seen.get(family.kind, -1) + 1
        if index in chosen[family.kind]:
            samples[family.kind].append(family)
    return {kind: tuple(families) for kind, families in samples.items()}


def _spread(n: int, k: int) -> set[int]:
    """``k`` indices of ``range(n)`` spread evenly, first and last included."""
    return {round(i * (n - 1) / max(1, k - 1)) for i in range(k)}


def _measure(data: Dataset, train: int, test: int, pipeline: Any, has_prefix: bool, task: _Task,
             setup: FitSetup) -> tuple[dict[Any, float], float, float]:
    """On a worker: CPU seconds of the group's raw stages, its prefix, and a fit family of each kind, on ``train`` rows.

    CPU time of the worker's thread (its BLAS runs single-threaded), which other processes do
    not inflate; with it the task's wall and CPU seconds, whose ratio says how busy the machine is.
    """
    rows = np.arange(train + test)
    dataset = Dataset(_safe_indexing(data.X, rows), data.y[rows], ((rows[:train], rows[train:]),))
    wall, cpu = time.perf_counter(), time.thread_time()
    seconds: dict[Any, float] = {}
    stages = {}
    for stage in task.stages:
        start = time.thread_time()
        stages[stage.path] = run_stage(dataset, 0, stage, "pilot", None)
        seconds[(STAGE, stage.id)] = time.thread_time() - start
    source: Any = dataset
    if has_prefix:
        start = time.thread_time()
        source = prepare(dataset, 0, pipeline, task.params, stages)
        seconds[(PREFIX, task.group)] = time.thread_time() - start
    for kind, families in task.families.items():
        start = time.thread_time()
        fit_batch(source, 0, families, setup)
        seconds[(FIT, (task.group, kind))] = (time.thread_time() - start) / len(families)
    return seconds, time.perf_counter() - wall, time.thread_time() - cpu


def _task_overhead(client: Client) -> float:
    """Wall seconds per trivial task through the cluster, submitted one by one as the engine does."""
    n = OVERHEAD_TASKS * max(1, sum(client.nthreads().values()))
    start = time.perf_counter()
    for future in as_completed([client.submit(_nothing, i, pure=False) for i in range(n)]):
        future.result()
    return (time.perf_counter() - start) / n


def _nothing(i: int) -> int:
    return i


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _rows(rows: int | None) -> str:
    return "none (not even one row)" if rows is None else f"~{rows:,}"
