"""Running a plan on Dask: data scattered once, one prefix task per (group, fold), batched fits.

Tasks are submitted as a stream with a bounded number in flight, so a grid of any size
starts at once and the client's memory stays flat. Fits are grouped into tasks of
roughly :data:`TARGET_TASK_SECONDS` from the fit times measured so far (Dask costs a
few ms per task, so tiny fits one per task would be mostly overhead).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
from distributed import Client, Future, LocalCluster, as_completed
from sklearn.base import BaseEstimator

from gridsearch.config import ClusterConfig
from gridsearch.errors import GridsearchError
from gridsearch.plan import Plan, PrepGroup, final_step_name, split_params
from gridsearch.space import Candidate, content_id
from gridsearch.tasks import Dataset, FitItem, failure, fit_batch, prepare

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


@dataclass
class _FitCosts:
    """Running estimate of seconds per fit, per (prefix group, final estimator)."""

    seconds: dict[tuple[str, str], float] = field(default_factory=dict)

    def batch_size(self, key: tuple[str, str]) -> int:
        per_fit = self.seconds.get(key)
        if per_fit is None:
            return 1
        return max(1, min(MAX_BATCH, int(TARGET_TASK_SECONDS / max(per_fit, 1e-6))))

    def observe(self, key: tuple[str, str], records: Sequence[Mapping[str, Any]]) -> None:
        times = [r["fit_time"] + r["score_time"] for r in records if r["status"] == "ok"]
        if times:
            mean = sum(times) / len(times)
            previous = self.seconds.get(key)
            self.seconds[key] = mean if previous is None else 0.5 * previous + 0.5 * mean


@dataclass(frozen=True)
class _Batch:
    group: PrepGroup
    fold: int
    items: tuple[FitItem, ...]
    cost_key: tuple[str, str]


OnRecords = Callable[[int, Sequence[Mapping[str, Any]]], None]


def execute(
    client: Client,
    dataset: Dataset,
    data_key: str,
    pipeline: BaseEstimator,
    plan: Plan,
    scoring: Sequence[str],
    pending: Callable[[str, int], bool],
    on_records: OnRecords,
) -> None:
    """Run every (candidate, fold) of ``plan`` for which ``pending`` is true.

    ``on_records(fold, records)`` is called in the client as each batch completes.
    """
    data = client.scatter({data_key: dataset}, broadcast=True, hash=False)[data_key]
    costs = _FitCosts()
    in_flight: dict[str, _Batch] = {}
    max_in_flight = 3 * max(1, sum(client.nthreads().values()))
    finished = as_completed()

    def handle(future: Future) -> None:
        batch = in_flight.pop(future.key)
        records = future.result() if future.status == "finished" else _lost(batch, future)
        costs.observe(batch.cost_key, records)
        on_records(batch.fold, records)

    for batch, future in _submissions(client, data, pipeline, plan, scoring, pending, costs):
        in_flight[future.key] = batch
        finished.add(future)
        while finished.count() >= max_in_flight:
            handle(next(finished))
    for future in finished:
        handle(future)


def _submissions(client: Client, data: Future, pipeline: BaseEstimator, plan: Plan, scoring: Sequence[str], pending: Callable[[str, int], bool], costs: _FitCosts) -> Iterator[tuple[_Batch, Future]]:
    """Prefix tasks and fit batches; batch sizes are read at submission time.

    Each group is walked in blocks of :data:`BLOCK` candidates, every fold of a block
    before the next block, so candidates complete early and the client tracks few
    partial ones. A group's prefix tasks are submitted once and shared by its blocks.
    """
    final_step = final_step_name(pipeline)
    for group in plan.groups:
        preps: dict[int, Future] = {}
        for block_start in range(0, len(group.candidates), BLOCK):
            block = group.candidates[block_start : block_start + BLOCK]
            for fold in range(plan.folds):
                for kind, items in _pending_items(block, fold, pending, final_step).items():
                    if fold not in preps:
                        preps[fold] = client.submit(prepare, data, fold, pipeline, group.params, key=f"prep-{group.id}-{fold}", pure=False)
                    for chunk in _chunks(items, costs, (group.id, kind)):
                        key = f"fit-{content_id(group.id, fold, [item.candidate_id for item in chunk])}"
                        future = client.submit(fit_batch, preps[fold], pipeline, chunk, list(scoring), key=key, pure=False)
                        yield _Batch(group, fold, chunk, (group.id, kind)), future


def _pending_items(block: Sequence[Candidate], fold: int, pending: Callable[[str, int], bool], final_step: str | None) -> dict[str, list[FitItem]]:
    """The block's fits still to do on ``fold``, by final estimator (their costs differ)."""
    by_kind: dict[str, list[FitItem]] = {}
    for candidate in block:
        if pending(candidate.id, fold):
            kind = str(candidate.params.get(final_step or "", "default"))
            by_kind.setdefault(kind, []).append(FitItem(candidate.id, split_params(candidate.params, final_step)[1]))
    return by_kind


def _chunks(items: Sequence[FitItem], costs: _FitCosts, cost_key: tuple[str, str]) -> Iterator[tuple[FitItem, ...]]:
    """Consecutive slices of ``items``, each sized from the fit costs known when it is cut."""
    start = 0
    while start < len(items):
        step = costs.batch_size(cost_key)
        yield tuple(items[start : start + step])
        start += step


def _lost(batch: _Batch, future: Future) -> list[dict[str, Any]]:
    """Error records for a batch whose task itself failed (e.g. its worker died too often)."""
    error, trace = failure(future.exception())
    nan = float("nan")
    return [
        {"candidate_id": item.candidate_id, "status": "lost", "scores": {}, "fit_time": nan, "score_time": nan,
         "prep_time": nan, "worker": None, "error": error, "traceback": trace, "warnings": None, "started": None, "finished": None}
        for item in batch.items
    ]
