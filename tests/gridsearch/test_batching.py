"""Fit batches: every pending fit once, whole families, sized from measured costs, in blocks.

Pure Python: plans are built by hand, no Dask and no data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest

from gridsearch.execute.batching import MAX_BATCH, TARGET_TASK_SECONDS, FitBatch, FitCosts, fit_batches
from gridsearch.log.records import FitItem, FitRecord, RecordStamp, Status
from gridsearch.search.plan import FitFamily, Plan, PrepGroup

STAMP = RecordStamp("search", "fingerprint", None, None, "0", ("r2",))


def _family(kind: str, name: str, *n_estimators: int | None) -> FitFamily:
    """A family ``name`` of one item per ``n_estimators`` (one plain item without)."""
    sizes = n_estimators or (None,)
    return FitFamily(kind, tuple(FitItem(f"{name}/{n}" if n else name, {}, "{}", n) for n in sizes))


def _plan(*groups: Sequence[FitFamily], folds: int = 3) -> Plan:
    return Plan(tuple(PrepGroup(f"g{i}", {}, (), tuple(families)) for i, families in enumerate(groups)), folds, final_step="model")


def _all(_candidate: str, _fold: int) -> bool:
    return True


def _mixed_plan() -> Plan:
    """Two groups, two kinds, families of one to three items."""
    first = [_family("ridge", "a"), _family("forest", "b", 30, 20, 10), _family("ridge", "c"), _family("forest", "d", 5, 3)]
    second = [_family("ridge", "e"), _family("forest", "f", 8, 4, 2)]
    return _plan(first, second)


def _fits(batches: Sequence[FitBatch]) -> Counter[tuple[str, int]]:
    return Counter((item.candidate_id, batch.fold) for batch in batches for item in batch.items)


def _known(seconds: float, plan: Plan, *kinds: str) -> FitCosts:
    return FitCosts({(group.id, kind): seconds for group in plan.groups for kind in kinds})


@pytest.mark.parametrize("costs", [FitCosts(), FitCosts(by_kind={"ridge": 0.01, "forest": 0.1})], ids=["unknown costs", "known costs"])
def test_fit_batches_yield_every_pending_fit_exactly_once(costs: FitCosts) -> None:
    """Each (candidate, fold) of the plan is in exactly one batch, whatever the batch sizes."""
    plan = _mixed_plan()
    batches = list(fit_batches(plan, _all, costs))
    expected = {(item.candidate_id, fold) for group in plan.groups for family in group.families
                for item in family.items for fold in range(plan.folds)}
    assert set(_fits(batches)) == expected and set(_fits(batches).values()) == {1}
    assert len(expected) == 11 * 3


def test_a_family_is_never_split_across_batches() -> None:
    """Batches hold whole families of one group, one kind and one fold, even when cut at 2 families."""
    plan = _mixed_plan()
    costs = _known(TARGET_TASK_SECONDS / 2, plan, "ridge", "forest")
    batches = list(fit_batches(plan, _all, costs))
    for batch in batches:
        group = plan.groups[batch.group_index]
        assert batch.group is group and all(any(family is mine for mine in group.families) for family in batch.families)
        assert len({family.kind for family in batch.families}) == 1 and len(batch.families) <= 2
    assert Counter((family.items[0].candidate_id, batch.fold) for batch in batches for family in batch.families) == {
        (family.items[0].candidate_id, fold): 1 for group in plan.groups for family in group.families for fold in range(plan.folds)}
    assert max(len(batch.items) for batch in batches) == 5  # forests b (3 items) and d (2) together


def test_pending_drops_done_items_and_keeps_the_largest_pending_first() -> None:
    """Done fits are left out; the largest pending n_estimators leads what is left of a family."""
    plan = _plan([_family("forest", "f", 20, 10, 5), _family("ridge", "r")])
    done = {("f/20", 0), ("f/10", 1), ("f/20", 2), ("f/10", 2), ("f/5", 2), ("r", 0)}
    batches = list(fit_batches(plan, lambda candidate, fold: (candidate, fold) not in done, FitCosts()))
    assert [(batch.fold, [item.n_estimators for item in batch.items]) for batch in batches if batch.families[0].kind == "forest"] == [
        (0, [10, 5]), (1, [20, 5])]
    assert sorted((batch.fold, batch.items[0].candidate_id) for batch in batches if batch.families[0].kind == "ridge") == [
        (1, "r"), (2, "r")]
    assert set(_fits(batches)).isdisjoint(done) and len(_fits(batches)) == 3 * 4 - len(done)
    assert list(fit_batches(plan, lambda candidate, fold: False, FitCosts())) == []


def test_batches_hold_one_family_while_the_cost_is_unknown() -> None:
    """No measurement yet: the smallest task, so the first result measures the cost."""
    plan = _plan([_family("ridge", f"r{i}") for i in range(6)])
    assert {len(batch.families) for batch in fit_batches(plan, _all, FitCosts())} == {1}


@pytest.mark.parametrize(
    ("seconds", "size"),
    [(0.05, 5), (0.0625, 4), (TARGET_TASK_SECONDS * 3, 1), (1e-9, MAX_BATCH)],
    ids=["50 ms", "62.5 ms", "longer than a task", "capped"],
)
def test_batches_of_a_known_cost_fill_the_target_task_time(seconds: float, size: int) -> None:
    """``TARGET_TASK_SECONDS / cost`` families per batch, at least one and at most :data:`MAX_BATCH`."""
    families = [_family("ridge", f"r{i}") for i in range(MAX_BATCH + 44)]
    plan = _plan(families, folds=2)
    batches = list(fit_batches(plan, _all, _known(seconds, plan, "ridge")))
    per_fold = [len(batch.families) for batch in batches if batch.fold == 0]
    assert per_fold[:-1] == [size] * (len(per_fold) - 1) and 0 < per_fold[-1] <= size
    assert sum(per_fold) == len(families)


def test_each_batch_is_sized_with_the_costs_measured_so_far() -> None:
    """Batches are cut lazily: a cost observed after the first batch sizes the next ones."""
    plan = _plan([_family("ridge", f"r{i}") for i in range(7)], folds=1)
    costs = FitCosts()
    batches = fit_batches(plan, _all, costs)
    assert len(next(batches).families) == 1
    costs.seconds[("g0", "ridge")] = TARGET_TASK_SECONDS / 4
    assert [len(batch.families) for batch in batches] == [4, 2]


def test_costlier_kinds_come_first_within_a_block_each_on_every_fold() -> None:
    """Unknown kinds count as costliest, then known ones by decreasing cost; each kind on every fold before the next kind."""
    plan = _plan([_family(kind, f"{kind}{i}") for i in range(2) for kind in ("cheap", "unknown", "costly")], folds=2)
    costs = FitCosts({("g0", "cheap"): 0.001, ("g0", "costly"): 0.01})
    order = [(batch.fold, batch.families[0].kind) for batch in fit_batches(plan, _all, costs)]
    assert order == [(0, "unknown"), (0, "unknown"), (1, "unknown"), (1, "unknown"), (0, "costly"), (1, "costly"), (0, "cheap"), (1, "cheap")]


def test_blocks_of_candidates_walk_every_fold_before_the_next_block() -> None:
    """A block closes once it holds ``block_size`` candidates, at a family's end; groups come one after another."""
    first = [_family("forest", "a", 3, 2, 1), _family("ridge", "b"), _family("forest", "c", 2, 1), _family("ridge", "d")]
    plan = _plan(first, [_family("ridge", "e")], folds=2)
    costs = FitCosts(by_kind={"forest": 1e-9, "ridge": 1e-9})  # known and equal: one batch per (block, fold, kind)
    walk = [(batch.group_index, batch.fold, [family.items[0].candidate_id for family in batch.families])
            for batch in fit_batches(plan, _all, costs, block_size=4)]
    assert walk == [
        (0, 0, ["a/3"]), (0, 1, ["a/3"]), (0, 0, ["b"]), (0, 1, ["b"]),  # block a, b: 4 candidates
        (0, 0, ["c/2"]), (0, 1, ["c/2"]), (0, 0, ["d"]), (0, 1, ["d"]),  # the rest, 3 candidates
        (1, 0, ["e"]), (1, 1, ["e"]),
    ]


def _record(candidate: str, status: Status, fit_time: float, score_time: float) -> FitRecord:
    return FitRecord.of(STAMP, FitItem(candidate, {}, "{}"), 0, status, {"r2": 0.5}, fit_time=fit_time, score_time=score_time)


def test_fit_costs_average_seconds_per_family_and_smooth_them() -> None:
    """Fit plus score time of scored records per family; failures count for nothing; then a running mean."""
    costs = FitCosts()
    costs.observe(("g0", "forest"), [_record("f/20", Status.OK, 0.3, 0.02), _record("f/10", Status.OK, 0.0, 0.02),
                                     _record("x", Status.ERROR, 5.0, 5.0)], families=2)
    assert costs.estimate(("g0", "forest")) == pytest.approx(0.17)
    costs.observe(("g0", "forest"), [_record("f/20", Status.OK, 0.02, 0.01)], families=1)
    assert costs.estimate(("g0", "forest")) == pytest.approx(0.5 * 0.17 + 0.5 * 0.03)
    costs.observe(("g0", "ridge"), [_record("r", Status.ERROR, 1.0, 1.0), _record("s", Status.LOST, 1.0, 1.0)], families=2)
    assert costs.estimate(("g0", "ridge")) is None and costs.batch_size(("g0", "ridge")) == 1


def test_fit_costs_of_a_new_group_borrow_the_kind_s_latest_estimate() -> None:
    """A group's own estimate wins; a group not seen yet takes its kind's latest; another kind stays unknown."""
    costs = FitCosts()
    costs.observe(("g0", "ridge"), [_record("r", Status.OK, 0.04, 0.01)], families=1)
    costs.observe(("g1", "ridge"), [_record("r", Status.OK, 0.1, 0.025)], families=1)
    assert costs.by_kind == {"ridge": pytest.approx(0.125)}
    assert costs.estimate(("g0", "ridge")) == pytest.approx(0.05)
    assert costs.estimate(("g2", "ridge")) == pytest.approx(0.125) and costs.batch_size(("g2", "ridge")) == 2
    assert costs.estimate(("g2", "forest")) is None
    plan = _plan([_family("ridge", "a")], [_family("ridge", f"b{i}") for i in range(4)], folds=1)
    borrowed = FitCosts(by_kind={"ridge": TARGET_TASK_SECONDS / 4})
    assert [len(batch.families) for batch in fit_batches(plan, _all, borrowed)] == [1, 4]
