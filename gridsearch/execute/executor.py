"""Running a plan on Dask: data sent once, raw stages and prefixes shared, fits batched.

Task graph: ``data-…`` (the rows and folds, recomputable: :mod:`gridsearch.search.dataset`)
→ per fold ``stage-…`` (one per distinct raw stage of the plan, memoised across searches) →
``prep-…`` (one per prefix group) → ``fit-…`` (batches of fit families, run where their
prefix is; :mod:`gridsearch.execute.batching` cuts them). Tasks are submitted as a stream
with a bounded number in flight, so a grid of any size starts at once and the client's
memory stays flat. The executor only submits, batches and collects: the plan decided
everything else.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import dask
from distributed import Client, Future, KilledWorker, LocalCluster, as_completed, wait
from sklearn.base import BaseEstimator

from gridsearch.errors import GridsearchError
from gridsearch.execute.batching import BLOCK, BUDGET_BLOCK, FitBatch, FitCosts, Pending, fit_batches
from gridsearch.execute.budget import Budget
from gridsearch.execute.growth import Refits
from gridsearch.execute.scoring import Scoring
from gridsearch.execute.tasks import FitSetup, failure, prepare, run_stage, stage_summary
from gridsearch.execute.worker_server import METHOD, TASKS_MODULE, start_worker_server, warm_up
from gridsearch.log.records import FitRecord, RecordStamp, Status
from gridsearch.search.config import ClusterConfig
from gridsearch.search.dataset import Dataset
from gridsearch.search.plan import Plan, RawStage
from kampai.errors import KampaiError
from kampai.ids import content_id

CONNECT_TIMEOUT = "10s"
_ALONE = "alone"  # key prefix of a fit retried alone on the cluster after its batch's workers died
_ALONE_ATTEMPTS = 3  # runs of a family alone when its inputs, not the family, kept dying beside a culprit
# Dask keeps the last N messages each connection sent, for debugging (default 1 000): each holds whole fit
# tasks, so over a long search the client's memory grew by ~1 MB per 1 000 fits until that many were kept.
_SENT_MESSAGES_KEPT = {"distributed.admin.low-level-log-length": 50}
GROUPS_AHEAD = 1  # groups whose prefixes are computed before their fits are due (bounded: each holds its folds' data)
INPUT_PRIORITY = 1  # Dask priority of data, raw stage and prefix tasks: above the fits' default 0
UNKNOWN_TASK_SECONDS = 1.0  # a fit task's estimated cost before any of its kind has been measured


@contextlib.contextmanager
def open_client(cluster: ClusterConfig) -> Iterator[Client]:
    """A client on ``cluster.address``, or on a new loopback ``LocalCluster``.

    The local cluster runs one single-threaded worker process per core (or
    ``cluster.workers``), so BLAS and the GIL never make fits compete. Without
    ``cluster.dashboard`` it serves no dashboard, and its HTTP endpoint (health checks) takes
    a free loopback port rather than 8787.
    """
    if cluster.address:
        try:
            client = make_client(cluster.address, timeout=CONNECT_TIMEOUT)
        except ValueError as exc:
            raise GridsearchError(f"cluster.address: {exc}; give a scheduler address such as tcp://127.0.0.1:8786") from None
        except (OSError, TimeoutError) as exc:
            raise GridsearchError(
                f"cannot reach the Dask scheduler at {cluster.address} within {CONNECT_TIMEOUT} ({exc}); "
                "start one with 'dask scheduler', or set no cluster.address for a local cluster"
            ) from None
        with client:
            yield client
        return
    with local_cluster(cluster.workers, cluster.dashboard) as local, make_client(local) as client:
        yield client


@contextlib.contextmanager
def opening_client(cluster: ClusterConfig) -> Iterator[Callable[[], Client]]:
    """:func:`open_client` in a thread while the caller goes on; yields a call that waits for the client.

    The call returns the client, or raises what opening it raised. On leaving, the opening
    is waited for, through Ctrl-C too (a LocalCluster half started cannot be stopped; it
    takes a second or two), and what it opened is closed, in the same thread (a client is
    left in the context it was entered in).
    """
    warm_up(cluster)  # from this thread, so that the workers ignore Ctrl-C
    opened = contextlib.ExitStack()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gridsearch-client") as thread:
        opening = thread.submit(opened.enter_context, open_client(cluster))
        try:
            yield opening.result
        finally:
            _wait_through_interrupts(opening)
            thread.submit(opened.close).result()


def _wait_through_interrupts(future: concurrent.futures.Future[Any]) -> None:
    """Wait until ``future`` is done, a KeyboardInterrupt meanwhile only making it wait on."""
    while not future.done():
        with contextlib.suppress(KeyboardInterrupt):
            concurrent.futures.wait([future])


def make_client(address: str | LocalCluster, **kwargs: Any) -> Client:
    """A client whose connection keeps few sent messages (:data:`_SENT_MESSAGES_KEPT`)."""
    with dask.config.set(_SENT_MESSAGES_KEPT):
        return Client(address, **kwargs)


def local_cluster(workers: int | None = None, dashboard: str | None = None) -> LocalCluster:
    """A loopback ``LocalCluster`` of single-threaded worker processes (one per core unless ``workers``).

    Its workers are forked from the fork server of :mod:`gridsearch.execute.worker_server`,
    which imported the fit tasks' modules (scikit-learn, pandas, scipy) once, so they start
    in a fraction of a second, ignoring Ctrl-C, and the first task runs at once (a worker
    restarted later is spawned and imports them itself). Without ``dashboard`` (an address
    such as ``127.0.0.1:8787``) it serves none.
    """
    start_worker_server()
    settings = {"distributed.scheduler.worker-saturation": "inf", "distributed.worker.multiprocessing-method": METHOD,
                **_SENT_MESSAGES_KEPT}
    with dask.config.set(settings):
        return LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=dashboard or "127.0.0.1:0",
            scheduler_kwargs={"dashboard": dashboard is not None},
            silence_logs=logging.CRITICAL,  # its own shutdown noise after Ctrl-C; task errors reach the client as exceptions
            preload=[TASKS_MODULE],
        )


@dataclass(frozen=True)
class SearchWork:
    """What the executor runs: the data, the pipeline, the plan, and where stages are memoised.

    ``rows`` makes the search's :class:`Dataset` on a worker (it runs as the ``data-…``
    task, called with ``rows_inputs``: it carries the rows, loads them, see
    :mod:`gridsearch.search.dataset`, or reads them from a future of data scattered once).
    ``stamp`` carries the search id (task keys) and what every record shares; ``rows_id``
    identifies the rows and folds only (data fingerprint, hold-out, cv), for memo keys
    shared by any search on them; ``memo_stages`` limits the memo to those raw stages
    (None: all).
    """

    stamp: RecordStamp
    rows: Callable[[], Dataset]
    pipeline: BaseEstimator
    plan: Plan
    rows_id: str
    memo_location: str | None
    memo_stages: frozenset[str] | None
    scoring: Scoring
    rows_inputs: tuple[Any, ...] = ()

    @property
    def fit_setup(self) -> FitSetup:
        return FitSetup(self.pipeline, self.plan.final_step, self.stamp, self.scoring)

    def memo_for(self, stage: RawStage) -> str | None:
        return self.memo_location if self.memo_stages is None or stage.path in self.memo_stages else None


@dataclass(frozen=True)
class StageReport:
    """One raw stage task as the client sees it; a task that died counts as failed."""

    path: str
    from_memo: bool
    seconds: float
    failed: bool
    warnings: str | None = None
    stage_id: str = ""  # the plan's RawStage.id: which prefix groups read it


OnRecords = Callable[[Sequence[FitRecord]], None]
OnStage = Callable[[StageReport], None]


def execute(client: Client, work: SearchWork, pending: Pending, on_records: OnRecords, on_stage: OnStage | None = None,
            budget: Budget | None = None, growth: Refits | None = None) -> None:
    """Run every (candidate, fold) of ``work.plan`` for which ``pending`` is true.

    ``on_records(records)`` is called in the client as each fit batch completes,
    ``on_stage(report)`` (if given) as each raw stage does. If anything interrupts the loop (Ctrl-C,
    a callback raising), the work still in flight is cancelled.

    A batch whose workers kept dying (Dask's ``KilledWorker``) may have died for one of its
    candidates, or merely beside one on the same worker. Once the rest is done, its families
    are retried one at a time, each alone on the cluster: a family that still kills its
    worker is recorded with that as its own error; the others get their real scores. An
    input of a family (its prefix, its rows) that died beside a culprit is computed again
    and the family retried: that death is not the family's.

    With a ``budget``, a task is submitted only if it can end in time (:meth:`Budget.can_start`);
    at the budget's limit what still runs is cancelled and the call returns. Cancelled fits are
    not recorded: the log lacks them, so a resume runs them.

    ``growth`` (halving along ``n_estimators``, :mod:`gridsearch.execute.growth`) makes the fit
    tasks grow the previous round's models and keep theirs; by default every fit is fresh.

    Raises
    ------
    GridsearchError
        When the workers cannot rebuild the search's rows (e.g. a data file that differs
        from the client's); nothing is recorded for the fits that needed them.
    """
    budget = Budget(None) if budget is None else budget
    growth = Refits() if growth is None else growth
    inputs = _Inputs(client, work)
    costs = FitCosts()
    in_flight: dict[str, tuple[Future, FitBatch | RawStage, Future | None, int]] = {}
    suspects: list[tuple[FitBatch, Future | None, int]] = []  # families to run alone, each with its attempt
    threads = client.nthreads()
    max_in_flight = 3 * max(1, sum(threads.values()))
    spread = _Spread(threads)
    finished = as_completed(loop=client.loop, timeout=budget.remaining())  # raises TimeoutError at the budget's limit
    setup = work.fit_setup

    def watch(future: Future, what: FitBatch | RawStage, source: Future | None = None, attempt: int = 0) -> None:
        in_flight[future.key] = (future, what, source, attempt)
        finished.add(future)
        while finished.count() >= max_in_flight:
            collect(next(finished))

    def submit(batch: FitBatch, source: Future | None, attempt: int | None = None) -> None:
        # The search id is in the key: a search with other scorers on the same scheduler must not get these records.
        kind = "fit" if attempt is None else f"{_ALONE}{attempt}"
        key = f"{kind}-{content_id(work.stamp.search_id, batch.group.id, batch.fold, [item.candidate_id for item in batch.items])}"
        worker = None if growth.reads_models(batch) else spread.place(key, costs.estimate(batch.cost_key), len(batch.families))
        future = client.submit(growth.task, source, batch.fold, batch.families, setup, *growth.inputs(batch), key=key, pure=False,
                               workers=worker, allow_other_workers=worker is not None)
        growth.submitted(future, batch)
        watch(future, batch, source, attempt or 0)

    def collect(future: Future) -> None:
        _, what, source, attempt = in_flight.pop(future.key)
        spread.done(future.key)
        if isinstance(what, RawStage):
            if on_stage is not None:
                report = StageReport(*future.result()) if future.status == "finished" else StageReport(what.path, False, float("nan"), True)
                on_stage(replace(report, stage_id=what.id))
            return
        killed = future.status != "finished" and isinstance(future.exception(), KilledWorker)
        if killed and not future.key.startswith(_ALONE):
            suspects.extend((replace(what, families=(family,)), source, 0) for family in what.families)
            return
        if killed and future.exception().task != future.key and attempt + 1 < _ALONE_ATTEMPTS:
            suspects.append((what, source, attempt + 1))  # an input died beside another culprit: not this family's death
            return
        records = growth.records(future) if future.status == "finished" else _failed(what, future, work)
        costs.observe(what.cost_key, records, len(what.families))
        budget.observe(records)
        on_records(records)

    try:
        for batch in fit_batches(work.plan, pending, costs, BLOCK if budget.seconds is None else BUDGET_BLOCK):
            if not budget.can_start(len(batch.items)):
                break
            submit(batch, inputs.source(batch, watch))
        for future in finished:
            collect(future)
        while suspects:  # alone on the cluster: a worker's death is this family's own
            batch, source, attempt = suspects.pop(0)
            if not budget.can_start(len(batch.items)):
                break
            if source is not None:
                _recompute_if_erred(client, source)
            submit(batch, source, attempt)
            for future in finished:
                collect(future)
    except BaseException as exc:
        client.cancel([future for future, *_ in in_flight.values()])
        if not (isinstance(exc, TimeoutError) and budget.reached()):
            raise


class _Spread:
    """Where each fit task is hinted to run: the worker with the least estimated work in flight per thread.

    Dask would send every fit of a prefix to the one worker holding it and leave the others
    idle until it steals; the hint lets any worker start at once (copying the prefix), and
    Dask may still move the task (``allow_other_workers``). A task of unknown cost counts as
    :data:`UNKNOWN_TASK_SECONDS`.
    """

    def __init__(self, threads: dict[str, int]) -> None:
        self._threads = threads
        self._load = dict.fromkeys(threads, 0.0)
        self._placed: dict[str, tuple[str, float]] = {}

    def place(self, key: str, per_family: float | None, families: int) -> str | None:
        """The worker for task ``key`` (None without workers), its estimated seconds added to that worker's load."""
        if not self._load:
            return None
        worker = min(self._load, key=lambda address: self._load[address] / max(1, self._threads[address]))
        seconds = UNKNOWN_TASK_SECONDS if per_family is None else per_family * families
        self._load[worker] += seconds
        self._placed[key] = (worker, seconds)
        return worker

    def done(self, key: str) -> None:
        """Task ``key`` finished (or failed): its seconds leave its worker's load."""
        if key in self._placed:
            worker, seconds = self._placed.pop(key)
            self._load[worker] -= seconds


class _Inputs:
    """The data, raw stage and prefix tasks fits read from, submitted ahead of the fits that read them.

    When the fits reach a group, the prefixes of that group and of the next
    :data:`GROUPS_AHEAD` groups are submitted (with their raw stages), at
    :data:`INPUT_PRIORITY`: a worker computes the next group's inputs before more fits, so
    they are ready when its fits are due. A prefix is kept until the fits move past its group,
    a raw stage until they move past the last group that reads it.
    """

    def __init__(self, client: Client, work: SearchWork) -> None:
        self._client, self._work = client, work
        self._data = client.submit(work.rows, *work.rows_inputs, key=f"data-{work.stamp.search_id}", pure=False, priority=INPUT_PRIORITY)
        self._stages: dict[tuple[int, str], Future] = {}
        self._preps: dict[tuple[int, int], Future] = {}
        self._group = -1
        last_use = {(fold, stage.id): index for index, group in enumerate(work.plan.groups)
                    for stage in group.stages for fold in range(work.plan.folds)}
        self._last_readers: dict[int, list[tuple[int, str]]] = {}  # group index -> the stages no later group reads
        for stage_key, index in last_use.items():
            self._last_readers.setdefault(index, []).append(stage_key)

    def source(self, batch: FitBatch, watch: Callable[[Future, RawStage], None]) -> Future:
        """The task a batch's fits read: its group's prefix on the fold, or the data itself."""
        if not self._work.plan.has_prefix:
            return self._data
        if batch.group_index != self._group:
            self._reach(batch.group_index, watch)
        return self._prep(batch.group_index, batch.fold, watch)

    def _reach(self, index: int, watch: Callable[[Future, RawStage], None]) -> None:
        """Release what the groups passed held; submit the prefixes of this group and the next ones."""
        for key in [key for key in self._preps if key[0] < index]:
            del self._preps[key]
        for passed in range(max(self._group, 0), index):
            for key in self._last_readers.pop(passed, ()):
                self._stages.pop(key, None)
        self._group = index
        for ahead in range(index, min(index + 1 + GROUPS_AHEAD, len(self._work.plan.groups))):
            for fold in range(self._work.plan.folds):
                self._prep(ahead, fold, watch)

    def _prep(self, index: int, fold: int, watch: Callable[[Future, RawStage], None]) -> Future:
        if (index, fold) not in self._preps:
            group = self._work.plan.groups[index]
            stages = {stage.path: self._stage(stage, fold, watch) for stage in group.stages}
            self._preps[(index, fold)] = self._client.submit(prepare, self._data, fold, self._work.pipeline, group.params, stages,
                                                             key=f"prep-{group.id}-{fold}", pure=False, priority=INPUT_PRIORITY)
        return self._preps[(index, fold)]

    def _stage(self, stage: RawStage, fold: int, watch: Callable[[Future, RawStage], None]) -> Future:
        if (fold, stage.id) not in self._stages:
            work = self._work
            key = f"stage-{content_id(work.stamp.search_id, fold, stage.id)}"
            self._stages[(fold, stage.id)] = future = self._client.submit(
                run_stage, self._data, fold, stage, f"{work.rows_id}-{fold}", work.memo_for(stage), key=key, pure=False,
                priority=INPUT_PRIORITY)
            watch(self._client.submit(stage_summary, future, key=f"info-{key}", pure=False, priority=INPUT_PRIORITY), stage)
        return self._stages[(fold, stage.id)]


def _recompute_if_erred(client: Client, source: Future) -> None:
    """Wait for a family's input; computed again if it died (beside a culprit, on a killed worker)."""
    wait([source])
    if source.status == "error":
        client.retry([source])


def _failed(batch: FitBatch, future: Future, work: SearchWork) -> list[FitRecord]:
    """Records for a batch whose task itself failed.

    A family whose own task kept killing its workers while alone on the cluster killed them
    itself: an error of its own, never retried. Anything else (a lost connection, a cancelled
    task, inputs that kept dying) is not the candidates' doing: ``lost``, redone on resume.
    Bad input met by the task's inputs (rows that cannot be rebuilt or read on a worker)
    stops the search instead, and so does a candidate's own exception when the scoring
    says to raise it.
    """
    exc = future.exception()
    killed = isinstance(exc, KilledWorker)
    if isinstance(exc, (GridsearchError, KampaiError)) or (work.scoring.raise_errors and not killed):
        raise exc
    stamp = work.stamp
    error, trace = failure(exc)
    status = Status.ERROR if killed and exc.task == future.key else Status.LOST
    if status is Status.ERROR:
        error = f"the worker fitting this candidate died, on every worker that tried it ({error})"
    return [FitRecord.of(stamp, item, batch.fold, status, {}, error=error, traceback=trace) for item in batch.items]
