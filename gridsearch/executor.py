"""Running a plan on Dask: data sent once, raw stages and prefixes shared, fits batched.

Task graph: ``data-…`` (the rows and folds, recomputable: :mod:`gridsearch.dataset`) →
per fold ``stage-…`` (one per distinct raw stage and parameters, memoised across
searches) → ``prep-…`` (one per group of candidates sharing a prefix) → ``fit-…``
(batches of final-estimator fits, run where their prefix is). Tasks are submitted as a
stream with a bounded number in flight, so a grid of any size starts at once and the
client's memory stays flat. Fits are grouped into tasks of roughly
:data:`TARGET_TASK_SECONDS` from the fit times measured so far (Dask costs a few ms per
task, so tiny fits one per task would be mostly overhead).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import dask
import pandas as pd
from distributed import Client, Future, LocalCluster, as_completed
from sklearn.base import BaseEstimator, clone

from gridsearch.config import ClusterConfig
from gridsearch.dataset import DataSpec, rebuild
from gridsearch.errors import GridsearchError
from gridsearch.paths import family_key
from gridsearch.plan import Plan, PrepGroup, final_step_name, split_params
from gridsearch.space import Candidate, content_id, resolve, step_names
from gridsearch.stages import is_inert, raw_stages, splits_into_stages, stage_estimator, stage_params
from gridsearch.tasks import FitItem, failure, fit_batch, prepare, run_stage, stage_summary
from kampai.pipeline import make_estimator

TARGET_TASK_SECONDS = 0.25
MAX_BATCH = 256
BLOCK = 512
CONNECT_TIMEOUT = "10s"


@contextlib.contextmanager
def open_client(cluster: ClusterConfig) -> Iterator[Client]:
    """A client on ``cluster.address``, or on a new loopback ``LocalCluster``.

    The local cluster runs one single-threaded worker process per core (or
    ``cluster.workers``), so BLAS and the GIL never make fits compete.
    """
    if cluster.address:
        try:
            client = Client(cluster.address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise GridsearchError(
                f"cannot reach the Dask scheduler at {cluster.address} within {CONNECT_TIMEOUT} ({exc}); "
                "start one with 'dask scheduler', or drop --scheduler for a local cluster"
            ) from None
        with client:
            yield client
        return
    with dask.config.set({"distributed.scheduler.worker-saturation": "inf"}):
        local = LocalCluster(
            n_workers=cluster.workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=cluster.dashboard,
        )
    with local, Client(local) as client:
        yield client


@dataclass(frozen=True)
class SearchWork:
    """What the executor runs: the data, the pipeline, the plan, and where stages are memoised.

    ``frame`` is the loaded data when workers cannot load it themselves (see
    :mod:`gridsearch.dataset`). ``scope_id`` identifies the search's pipeline, data and cv
    (for task keys); ``rows_id``
    the rows and folds only (data fingerprint, hold-out, cv), for memo keys shared by any
    search on them; ``memo_stages`` limits the memo to those raw stages (None: all).
    """

    scope_id: str
    data_spec: DataSpec
    frame: pd.DataFrame | None
    pipeline: BaseEstimator
    plan: Plan
    scoring: tuple[str, ...]
    rows_id: str
    memo_location: str | None
    memo_stages: frozenset[str] | None


@dataclass(frozen=True)
class StageReport:
    """One raw stage task as the client sees it."""

    path: str
    from_memo: bool
    seconds: float
    failed: bool


@dataclass
class _FitCosts:
    """Running estimate of seconds per fit family, per (prefix group, final estimator).

    A pair not seen yet borrows the estimate of its estimator in other groups, so a new
    group of a known model starts with full-size batches.
    """

    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    by_kind: dict[str, float] = field(default_factory=dict)

    def estimate(self, key: tuple[str, str]) -> float | None:
        return self.seconds.get(key, self.by_kind.get(key[1]))

    def batch_size(self, key: tuple[str, str]) -> int:
        per_fit = self.estimate(key)
        if per_fit is None:
            return 1
        return max(1, min(MAX_BATCH, int(TARGET_TASK_SECONDS / max(per_fit, 1e-6))))

    def observe(self, key: tuple[str, str], records: Sequence[Mapping[str, Any]], families: int) -> None:
        spent = sum(r["fit_time"] + r["score_time"] for r in records if r["status"] == "ok")
        if spent > 0:
            mean = spent / families
            previous = self.seconds.get(key)
            self.seconds[key] = mean if previous is None else 0.5 * previous + 0.5 * mean
            self.by_kind[key[1]] = self.seconds[key]


@dataclass(frozen=True)
class _Batch:
    fold: int
    items: tuple[FitItem, ...]
    families: int
    cost_key: tuple[str, str]


Family = tuple[FitItem, ...]
OnRecords = Callable[[int, Sequence[Mapping[str, Any]]], None]
OnStage = Callable[[StageReport], None]


def execute(client: Client, work: SearchWork, pending: Callable[[str, int], bool], on_records: OnRecords, on_stage: OnStage) -> None:
    """Run every (candidate, fold) of ``work.plan`` for which ``pending`` is true.

    ``on_records(fold, records)`` is called in the client as each fit batch completes,
    ``on_stage(report)`` as each raw stage does. If anything interrupts the loop (Ctrl-C,
    a callback raising), the work still in flight is cancelled.
    """
    data = client.submit(rebuild, work.data_spec, work.frame, key=f"data-{work.scope_id}", pure=False)
    costs = _FitCosts()
    in_flight: dict[str, tuple[Future, _Batch | None]] = {}
    max_in_flight = 3 * max(1, sum(client.nthreads().values()))
    finished = as_completed()

    def handle(future: Future) -> None:
        _, batch = in_flight.pop(future.key)
        if batch is None:
            on_stage(StageReport(*future.result()))
            return
        records = future.result() if future.status == "finished" else _lost(batch, future)
        costs.observe(batch.cost_key, records, batch.families)
        on_records(batch.fold, records)

    try:
        for batch, future in _submissions(client, data, work, pending, costs):
            in_flight[future.key] = (future, batch)
            finished.add(future)
            while finished.count() >= max_in_flight:
                handle(next(finished))
        for future in finished:
            handle(future)
    except BaseException:
        client.cancel([future for future, _ in in_flight.values()])
        raise


def _submissions(client: Client, data: Future, work: SearchWork, pending: Callable[[str, int], bool], costs: _FitCosts) -> Iterator[tuple[_Batch | None, Future]]:
    """Stage summaries and fit batches to watch; stage and prefix tasks are their dependencies.

    Each group is walked in blocks of :data:`BLOCK` candidates, every fold of a block
    before the next block, so candidates complete early and the client tracks few
    partial ones. Batch sizes are read at submission time.
    """
    final_step = final_step_name(work.pipeline)
    stages = _StageTasks(client, data, work)
    for index, group in enumerate(work.plan.groups):
        preps: dict[int, Future] = {}
        for block_start in range(0, len(group.candidates), BLOCK):
            block = group.candidates[block_start : block_start + BLOCK]
            for fold in range(work.plan.folds):
                pending_kinds = _pending_families(work.pipeline, block, fold, pending, final_step)
                # The costliest kinds first (unknown ones count as costly), so the search ends on short fits.
                ordered = sorted(pending_kinds.items(), key=lambda item: -(costs.estimate((group.id, item[0])) or float("inf")))
                for kind, families in ordered:
                    if fold not in preps:
                        stage_futures = yield from stages.submit(index, group, fold)
                        preps[fold] = client.submit(prepare, data, fold, work.pipeline, group.params, stage_futures,
                                                    key=f"prep-{group.id}-{fold}", pure=False)
                    for chunk in _chunks(families, costs, (group.id, kind)):
                        items = tuple(item for family in chunk for item in family)
                        key = f"fit-{content_id(group.id, fold, [item.candidate_id for item in items])}"
                        future = client.submit(fit_batch, preps[fold], work.pipeline, items, list(work.scoring), key=key, pure=False)
                        yield _Batch(fold, items, len(chunk), (group.id, kind)), future
        stages.release(index)


class _StageTasks:
    """Raw stage tasks, one per distinct (fold, stage, parameters), kept until their last group."""

    def __init__(self, client: Client, data: Future, work: SearchWork) -> None:
        self._client, self._data, self._work = client, data, work
        names = {name for group in work.plan.groups for name in group.params}
        self._enabled = splits_into_stages(work.pipeline, sorted(names))
        self._futures: dict[str, Future] = {}
        self._last_use: dict[str, int] = {}
        self._specs = [self._group_specs(group) for group in work.plan.groups] if self._enabled else []
        for index, specs in enumerate(self._specs):
            for fold in range(work.plan.folds):
                for path in specs:
                    self._last_use[self._key(fold, path, specs[path][2])] = index

    def _group_specs(self, group: PrepGroup) -> dict[str, tuple[BaseEstimator, Any, dict[str, Any]]]:
        """Stage path → (configured estimator, columns, its params) for a group's prefix."""
        prefix = clone(self._work.pipeline).set_params(**resolve(group.params, step_names(self._work.pipeline)))[:-1]
        specs = {}
        for path in raw_stages(self._work.pipeline):
            estimator, columns = stage_estimator(prefix, path)
            if not is_inert(estimator):
                specs[path] = (estimator, columns, stage_params(group.params, path))
        return specs

    def _key(self, fold: int, path: str, params: Mapping[str, Any]) -> str:
        return f"stage-{content_id(self._work.scope_id, fold, path, params)}"

    def submit(self, index: int, group: PrepGroup, fold: int) -> Iterator[tuple[None, Future]]:
        """Submit the group's missing stage tasks for ``fold`` (yielding their summaries); return all."""
        if not self._enabled:
            return {}
        futures = {}
        for path, (estimator, columns, params) in self._specs[index].items():
            key = self._key(fold, path, params)
            if key not in self._futures:
                memo = self._work.memo_location if self._work.memo_stages is None or path in self._work.memo_stages else None
                self._futures[key] = self._client.submit(
                    run_stage, self._data, fold, estimator, columns, f"{self._work.rows_id}-{fold}", path, memo, key=key, pure=False)
                yield None, self._client.submit(stage_summary, self._futures[key], key=f"info-{key}", pure=False)
            futures[path] = self._futures[key]
        return futures

    def release(self, index: int) -> None:
        """Drop the client's hold on stages no later group needs (running prefixes keep theirs)."""
        for key in [key for key, last in self._last_use.items() if last == index]:
            self._futures.pop(key, None)


def _pending_families(pipeline: BaseEstimator, block: Sequence[Candidate], fold: int, pending: Callable[[str, int], bool], final_step: str | None) -> dict[str, list[Family]]:
    """The block's fits still to do on ``fold``, by final estimator (their costs differ),
    with candidates that can share one fit (see :mod:`gridsearch.paths`) kept together."""
    by_kind: dict[str, dict[str, list[FitItem]]] = {}
    for candidate in block:
        if pending(candidate.id, fold):
            final = split_params(candidate.params, final_step)[1]
            kind = str(final.get(final_step or "", "default"))
            family = _family_hint(pipeline, kind, final) or candidate.id
            by_kind.setdefault(kind, {}).setdefault(family, []).append(FitItem(candidate.id, final))
    return {kind: [tuple(items) for items in families.values()] for kind, families in by_kind.items()}


def _family_hint(pipeline: BaseEstimator, kind: str, params: Mapping[str, Any]) -> str | None:
    estimator = _kind_estimator(pipeline, kind)
    return None if estimator is None else family_key(estimator, params)


@cache
def _kind_estimator(pipeline: BaseEstimator, kind: str) -> BaseEstimator | None:
    """A default instance of a final estimator kind, to know whether it has a path."""
    if kind == "default":
        return pipeline.steps[-1][1] if final_step_name(pipeline) else pipeline
    try:
        return make_estimator(kind)
    except ValueError:
        return None


def _chunks(families: Sequence[Family], costs: _FitCosts, cost_key: tuple[str, str]) -> Iterator[Sequence[Family]]:
    """Consecutive runs of whole families, each sized from the fit costs known when it is cut."""
    start = 0
    while start < len(families):
        step = costs.batch_size(cost_key)
        yield families[start : start + step]
        start += step


def _lost(batch: _Batch, future: Future) -> list[dict[str, Any]]:
    """Records for a batch whose task itself failed (e.g. its worker died too often): redone on resume."""
    error, trace = failure(future.exception())
    nan = float("nan")
    return [
        {"candidate_id": item.candidate_id, "status": "lost", "scores": {}, "fit_time": nan, "score_time": nan,
         "prep_time": nan, "worker": None, "error": error, "traceback": trace, "warnings": None, "shared_fit": None,
         "started": None, "finished": None}
        for item in batch.items
    ]
