"""Grids as products: ids, order, duplicates and counts equal those of the candidates built one by one.

Cluster-free. The reference is what ``space.expand`` did before it was lazy: every point of
:class:`~sklearn.model_selection.ParameterGrid`, hashed with :func:`kampai.ids.content_id`,
the first of each id kept; plans are compared with plans made from that list.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sklearn.model_selection import ParameterGrid

import gridsearch
from gridsearch.search import grids
from gridsearch.search.grids import Candidate, ProductSpace
from gridsearch.search.plan import Plan, make_plan
from gridsearch.search.space import ListSpace
from kampai.ids import content_id

PRECISION = "features__geohash__encode__precision"
FOREST = "sklearn.ensemble.RandomForestRegressor"
BOOSTING = "sklearn.ensemble.GradientBoostingRegressor"
RIDGE = "sklearn.linear_model.Ridge"
SCOPE = {"pipeline": {"steps": ["a", "b"]}, "data": "fingerprint", "cv": [3, True, None], "ü": 1.5}

OVERLAPPING = [
    {"a": [1, 2, 3], "b": ["x", "y"]},
    {"a": [3, 4, 1.0], "b": ["y", "z"]},  # (3, y) is the first grid's; 1.0 is not 1
    {"b": ["y"], "a": [2, 3, 4, True]},  # keys in another order: (2, y), (3, y), (4, y) seen
    {"a": [1], "b": ["x"], "c": [None]},  # other keys: never a duplicate
    {"a": [1, 2, 3, 4], "b": ["x", "y", "z"]},  # the union of the first two and more
]
VALUES = [
    {"k": [0.1, 1e-300, -0.0, 10**20, "é", "a\"b", None, True, 1, 1.0, [1, {"z": 1, "a": [2]}], {"b": 1, "a": None}]},
]


def _reference(space: Sequence[Mapping[str, Sequence[Any]]], scope: Any) -> list[Candidate]:
    candidates: dict[str, Candidate] = {}
    for point in ParameterGrid(list(space)):
        params = dict(sorted(point.items()))
        candidates.setdefault(content_id(scope, params), Candidate(content_id(scope, params), params))
    return list(candidates.values())


@pytest.mark.parametrize("space", [OVERLAPPING, VALUES, [{}], [{}, {}], [{"a": [1]}, {}, {"a": [1]}]],
                         ids=["overlapping grids", "json values", "empty grid", "two empty grids", "repeats"])
def test_product_space_has_the_candidates_ids_and_order_of_the_built_grid(space: list[dict[str, Any]]) -> None:
    product = ProductSpace(space, SCOPE)
    expected = _reference(space, SCOPE)
    assert list(product) == expected and len(product) == len(expected)
    logged = [text for block in product.blocks for _, text in product.walk(block)]
    assert logged == [json.dumps(c.params, sort_keys=True) for c in expected]


def test_overlaps_are_counted_without_walking_and_with_walking_past_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inclusion-exclusion over many overlapping grids counts what walking them finds, as does the fallback."""
    space = [{"a": list(range(i, i + 6)), "b": list(range(i % 3, 4))} for i in range(7)]
    product = ProductSpace(space, SCOPE)
    expected = len(_reference(space, SCOPE))
    assert len(product) == expected == sum(1 for _ in product)
    monkeypatch.setattr(grids, "MAX_OVERLAPS", 2)
    assert len(ProductSpace(space, SCOPE)) == expected


def test_split_by_counts_each_group_as_its_candidates() -> None:
    product = ProductSpace(OVERLAPPING, SCOPE)
    reference = ListSpace(_reference(OVERLAPPING, SCOPE))
    ours = [(values, len(members), [c.id for c, _ in members.walk()]) for values, members in product.split_by("a".__eq__)]
    theirs = [(values, len(members), [c.id for c, _ in members.walk()]) for values, members in reference.split_by("a".__eq__)]
    assert ours == theirs


def test_firsts_are_the_first_candidate_of_each_label_in_order() -> None:
    product = ProductSpace(OVERLAPPING, SCOPE)
    reference = ListSpace(_reference(OVERLAPPING, SCOPE))

    def label(values: Mapping[str, Any]) -> str:
        return str(values.get("b", "-"))

    assert product.firsts("b".__eq__, label) == reference.firsts("b".__eq__, label)
    assert [c.params for c in product.firsts(lambda _: False, label)] == [{"a": 1, "b": "x"}]


def _plan_shape(plan: Plan) -> list[Any]:
    return [(group.id, dict(group.params), [stage.id for stage in group.stages], group.n_candidates, len(group.families),
             [(family.kind, family.items) for family in group.families]) for group in plan.groups]


SPACES = {
    "forests across grids": [
        {PRECISION: [4, 5], "model": [FOREST], "model__n_estimators": [4, 8], "model__max_depth": [2, 3]},
        {PRECISION: [5], "model": [FOREST], "model__n_estimators": [16, 8], "model__max_depth": [3, 5]},
        {PRECISION: [5], "model": [FOREST], "model__max_depth": [3]},  # the default n_estimators joins the family
        {PRECISION: [4, 5], "model__alpha": [0.1, 1.0]},
    ],
    "boosting with and without early stopping": [
        {"model": [BOOSTING], "model__n_estimators": [3, 6], "model__n_iter_no_change": [None, 2]},
        {"model": [RIDGE, FOREST], "model__random_state": [0]},
    ],
    "drop and passthrough branches": [
        {"features__geohash": ["drop"], "model__alpha": [0.1, 1.0]},
        {"features__geohash": ["drop", "passthrough"], "features__passengers": ["sklearn.preprocessing.StandardScaler"],
         "model__alpha": [1.0, 10.0]},
        {PRECISION: [4, 5], "model__alpha": [1.0]},
    ],
}


@pytest.mark.parametrize("name", list(SPACES))
def test_the_lazy_plan_equals_the_plan_of_the_built_candidates(config_file: Callable[..., Path], name: str) -> None:
    """Groups, stages, families (their items, order and sharing) and the summary: the same as from the list."""
    search = gridsearch.prepare_search(config_file(search={"params": SPACES[name]}, cache={"dir": None}))
    built = make_plan(list(search.space), search.pipeline, search.plan.folds, search.inputs.scope)
    assert isinstance(search.space, ProductSpace)
    assert _plan_shape(search.plan) == _plan_shape(built) and search.plan.summary() == built.summary()
    assert search.plan.n_candidates == len(search.candidates) == len({c.id for c in search.candidates})


def test_a_dry_run_of_ten_million_candidates_builds_none_of_them(config_file: Callable[..., Path]) -> None:
    """10^7 candidates: counts from the structure, in a few MB (one Candidate each would be GBs)."""
    grid = {PRECISION: [4, 5], "model__alpha": {"logspace": [-3, 3, 100]}, "model__tol": {"logspace": [-6, -2, 100]},
            "model__max_iter": {"range": [1000, 1500]}}
    path = config_file(search={"params": [grid, {PRECISION: [5, 6], "model__alpha": [1.0]}]}, cache={"dir": None})
    tracemalloc.start()
    try:
        search = gridsearch.prepare_search(path)
        summary = search.plan.summary()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.startswith("10000002 candidates x 3 folds = 30000006 fits; 9 prefix tasks (3 per fold) on 5 raw stage tasks per fold")
    assert [group.n_candidates for group in search.plan.groups] == [5_000_000, 5_000_001, 1]
    assert peak < 64 * 2**20, f"prepare_search of 10^7 candidates allocated {peak / 2**20:.0f} MB at its peak"
