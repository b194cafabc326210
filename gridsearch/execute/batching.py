"""The order and size of fit tasks: a plan walked into batches, sized from measured fit costs.

Pure Python, no Dask: the executor submits what :func:`fit_batches` yields. Each group
is walked in blocks of about :data:`BLOCK` candidates, every fold of a block before the
next block, so candidates complete early and the client tracks few partial ones. Within a
block the costliest final-estimator kinds come first (unknown ones count as costly), each
kind on every fold before the next kind, so a search ends on short fits and the fits in
flight read several folds' prefixes. Fit families are never split across batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from gridsearch.log.records import FitItem, FitRecord, Status
from gridsearch.search.plan import FitFamily, Plan, PrepGroup

TARGET_TASK_SECONDS = 0.25
MAX_BATCH = 256
BLOCK = 512
BUDGET_BLOCK = 64  # under a time budget: smaller blocks, so a run stopped early leaves complete candidates to rank

CostKey = tuple[str, str]  # (prefix group id, final-estimator kind)
Pending = Callable[[str, int], bool]  # (candidate id, fold) -> still to do


@dataclass
class FitCosts:
    """Running estimate of seconds per fit family, per (prefix group, final estimator).

    A pair not seen yet borrows the estimate of its estimator in other groups, so a new
    group of a known model starts with full-size batches.
    """

    seconds: dict[CostKey, float] = field(default_factory=dict)
    by_kind: dict[str, float] = field(default_factory=dict)

    def estimate(self, key: CostKey) -> float | None:
        return self.seconds.get(key, self.by_kind.get(key[1]))

    def batch_size(self, key: CostKey) -> int:
        """Families per task: one while the cost is unknown, then enough for :data:`TARGET_TASK_SECONDS`."""
        per_fit = self.estimate(key)
        if per_fit is None:
            return 1
        return max(1, min(MAX_BATCH, int(TARGET_TASK_SECONDS / max(per_fit, 1e-6))))

    def observe(self, key: CostKey, records: Sequence[FitRecord], families: int) -> None:
        spent = sum(r.fit_time + r.score_time for r in records if r.status is Status.OK)
        if spent > 0:
            mean = spent / families
            previous = self.seconds.get(key)
            self.seconds[key] = mean if previous is None else 0.5 * previous + 0.5 * mean
            self.by_kind[key[1]] = self.seconds[key]


@dataclass(frozen=True)
class FitBatch:
    """One fit task: whole families of one group and kind, on one fold."""

    group_index: int
    group: PrepGroup
    fold: int
    families: tuple[FitFamily, ...]

    @property
    def cost_key(self) -> CostKey:
        return (self.group.id, self.families[0].kind)

    @property
    def items(self) -> tuple[FitItem, ...]:
        return tuple(item for family in self.families for item in family.items)


def fit_batches(plan: Plan, pending: Pending, costs: FitCosts, block_size: int = BLOCK) -> Iterator[FitBatch]:
    """Every pending (candidate, fold) of ``plan`` exactly once, in batches sized when each is cut,
    in blocks of about ``block_size`` candidates."""
    for index, group in enumerate(plan.groups):
        for block in _blocks(group.families, block_size):
            by_kind: dict[str, list[tuple[int, list[FitFamily]]]] = {}
            for fold in range(plan.folds):
                for kind, families in _pending_by_kind(block, fold, pending).items():
                    by_kind.setdefault(kind, []).append((fold, families))
            ordered = sorted(by_kind.items(), key=lambda kind: -(costs.estimate((group.id, kind[0])) or float("inf")))
            for kind, folds in ordered:
                for fold, families in folds:
                    start = 0
                    while start < len(families):
                        step = costs.batch_size((group.id, kind))
                        yield FitBatch(index, group, fold, tuple(families[start : start + step]))
                        start += step


def _pending_by_kind(block: Sequence[FitFamily], fold: int, pending: Pending) -> dict[str, list[FitFamily]]:
    """The block's families still to do on ``fold`` (each cut to its pending items), by final-estimator kind."""
    by_kind: dict[str, list[FitFamily]] = {}
    for family in block:
        todo = family.pending(lambda item: pending(item.candidate_id, fold))
        if todo is not None:
            by_kind.setdefault(todo.kind, []).append(todo)
    return by_kind


def _blocks(families: Iterable[FitFamily], block_size: int) -> Iterator[list[FitFamily]]:
    """Consecutive runs of whole families holding about ``block_size`` candidates each, taken as they come."""
    block: list[FitFamily] = []
    size = 0
    for family in families:
        block.append(family)
        size += len(family.items)
        if size >= block_size:
            yield block
            block, size = [], 0
    if block:
        yield block
