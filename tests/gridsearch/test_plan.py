"""Planning: groups sharing a prefix, their raw stages and fit families, and the line ``--dry-run`` prints.

Cluster-free: plans are made by ``gridsearch.prepare_search`` from small configs on disk.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.ensemble import RandomForestRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import gridsearch
from gridsearch.search.plan import DEFAULT_KIND, Plan, final_step_name, split_params
from kampai.data import COORDINATE_COLUMNS
from tests.conftest import BASE_CONFIG

PRECISION = "features__geohash__encode__precision"
RIDGE, LASSO = "sklearn.linear_model.Ridge", "sklearn.linear_model.Lasso"
FOREST = "sklearn.ensemble.RandomForestRegressor"
BOOSTING = "sklearn.ensemble.GradientBoostingRegressor"
SCALER = "sklearn.preprocessing.StandardScaler"
TAXI_STAGES = ("features__time", "features__distance", "features__geohash")

PlanOf = Callable[..., Plan]


@pytest.fixture
def plan_of(tmp_path: Path) -> PlanOf:
    """The plan of :data:`BASE_CONFIG` (300 rows, no cluster) with sections replaced."""

    def plan(**sections: Any) -> Plan:
        config = copy.deepcopy(BASE_CONFIG)
        config["data"]["rows"] = 300
        config.update({"cluster": {"address": None}, "cache": {"dir": None}, "log": str(tmp_path / "runs")})
        config.update(sections)
        path = tmp_path / "search.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return gridsearch.prepare_search(path).plan

    return plan


@pytest.fixture
def numeric_data(tmp_path: Path) -> dict[str, Any]:
    """A ``data`` section reading a small numeric CSV (columns x0..x2, target y)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"]).assign(y=X @ [1.0, -2.0, 0.5] + rng.normal(size=200))
    path = tmp_path / "numeric.csv"
    frame.to_csv(path, index=False)
    return {"source": str(path), "target": "y", "clean": False}


def _steps(*estimators: str) -> dict[str, Any]:
    """A declarative ``pipeline`` section: ``scale`` (if two) then ``model``."""
    names = ["scale", "model"][-len(estimators):]
    return {"steps": [{"name": name, "estimator": estimator} for name, estimator in zip(names, estimators)]}


def _stage_paths(plan: Plan) -> list[tuple[str, ...]]:
    return [tuple(stage.path for stage in group.stages) for group in plan.groups]


def _stage_ids(plan: Plan, path: str) -> set[str]:
    return {stage.id for group in plan.groups for stage in group.stages if stage.path == path}


def test_plan_groups_candidates_by_prefix_params(plan_of: PlanOf) -> None:
    """One group per precision, whatever the alphas; stages the groups agree on are counted once."""
    plan = plan_of(search={"params": {PRECISION: [4, 5, 6], "model__alpha": [0.1, 1.0, 10.0, 100.0]}})
    assert [dict(group.params) for group in plan.groups] == [{PRECISION: p} for p in (4, 5, 6)]
    assert [group.n_candidates for group in plan.groups] == [4, 4, 4]
    assert plan.n_prep_tasks == 9 and plan.n_fits == 36
    assert _stage_paths(plan) == [TAXI_STAGES] * 3
    assert len(_stage_ids(plan, "features__time")) == len(_stage_ids(plan, "features__distance")) == 1
    assert len(_stage_ids(plan, "features__geohash")) == 3 and plan.stages_per_fold == 5
    geohash = [next(s for s in group.stages if s.path == "features__geohash") for group in plan.groups]
    assert [stage.estimator.get_params()["encode__precision"] for stage in geohash] == [4, 5, 6]
    assert [dict(stage.params) for stage in geohash] == [{PRECISION: p} for p in (4, 5, 6)]
    assert all(stage.columns == list(COORDINATE_COLUMNS) for stage in geohash)
    assert plan.summary() == ("12 candidates x 3 folds = 36 fits; 9 prefix tasks (3 per fold) on 5 raw stage tasks per fold, "
                              "each prefix reused by 4.0 fits on average")


def test_swapping_the_final_estimator_does_not_split_a_group(plan_of: PlanOf) -> None:
    """Final-step swaps and their params stay in the group; each swap is a fit kind of its own."""
    plan = plan_of(search={"params": [{"model": [RIDGE], "model__alpha": [1.0, 2.0]}, {"model": [LASSO]}]})
    assert len(plan.groups) == 1 and plan.groups[0].params == {}
    assert [(family.kind, len(family.items)) for family in plan.groups[0].families] == [(RIDGE, 1), (RIDGE, 1), (LASSO, 1)]
    assert plan.groups[0].families[0].items[0].params == {"model": RIDGE, "model__alpha": 1.0}
    assert plan.summary() == ("3 candidates x 3 folds = 9 fits; 3 prefix tasks (1 per fold) on 3 raw stage tasks per fold, "
                              "each prefix reused by 3.0 fits on average")


def test_split_params_separates_final_step() -> None:
    """Names addressing or swapping the final step are final; a step merely named alike is not."""
    params = {PRECISION: 5, "model": "x", "model__alpha": 1.0, "modelling__x": 2}
    prefix, final = split_params(params, "model")
    assert prefix == {PRECISION: 5, "modelling__x": 2}
    assert final == {"model": "x", "model__alpha": 1.0}
    assert split_params(params, None) == ({}, params)


def test_final_step_name_is_none_without_a_prefix() -> None:
    """Only a pipeline of two or more steps has a final step to separate."""
    assert final_step_name(Pipeline([("scale", StandardScaler()), ("model", RandomForestRegressor())])) == "model"
    assert final_step_name(Pipeline([("model", RandomForestRegressor())])) is None
    assert final_step_name(RandomForestRegressor()) is None


def test_plan_of_a_list_of_grids_groups_across_grids_in_order_of_first_use(plan_of: PlanOf) -> None:
    """Candidates of different grids with the same prefix share a group; a precision no grid repeats is its own."""
    grids = [{PRECISION: [5], "model__alpha": [1.0, 10.0]}, {PRECISION: [4, 5], "model": [LASSO]}]
    plan = plan_of(search={"params": grids})
    assert [dict(group.params) for group in plan.groups] == [{PRECISION: 5}, {PRECISION: 4}]
    assert [[family.kind for family in group.families] for group in plan.groups] == [[DEFAULT_KIND, DEFAULT_KIND, LASSO], [LASSO]]
    assert plan.stages_per_fold == 4
    assert plan.summary() == ("4 candidates x 3 folds = 12 fits; 6 prefix tasks (2 per fold) on 4 raw stage tasks per fold, "
                              "each prefix reused by 2.0 fits on average")


def test_plan_counts_a_drop_branch_as_no_stage(plan_of: PlanOf) -> None:
    """Dropping geohash leaves time and distance, which the other groups share: 4 stage tasks per fold, not 5."""
    plan = plan_of(search={"params": [{"features__geohash": ["drop"]}, {PRECISION: [4, 5]}]})
    assert _stage_paths(plan) == [("features__time", "features__distance"), TAXI_STAGES, TAXI_STAGES]
    assert len(_stage_ids(plan, "features__time")) == len(_stage_ids(plan, "features__distance")) == 1
    assert plan.stages_per_fold == 4
    assert plan.summary() == ("3 candidates x 3 folds = 9 fits; 9 prefix tasks (3 per fold) on 4 raw stage tasks per fold, "
                              "each prefix reused by 1.0 fits on average")


PASSENGERS_SWAP = {"features__passengers": ["passthrough", SCALER], "model__alpha": [1.0, 10.0]}


def test_plan_makes_a_stage_of_an_estimator_swapped_in_for_a_passthrough_branch(plan_of: PlanOf) -> None:
    """``passthrough`` is no stage; a scaler in its place is one, reading the branch's columns."""
    plan = plan_of(search={"params": PASSENGERS_SWAP})
    assert _stage_paths(plan) == [TAXI_STAGES, (*TAXI_STAGES, "features__passengers")]
    passengers = plan.groups[1].stages[-1]
    assert passengers.columns == ["passenger_count"] and passengers.params == {"features__passengers": SCALER}
    assert plan.stages_per_fold == 4
    assert plan.summary() == ("4 candidates x 3 folds = 12 fits; 6 prefix tasks (2 per fold) on 4 raw stage tasks per fold, "
                              "each prefix reused by 2.0 fits on average")


def test_an_estimator_swapped_in_for_a_passthrough_branch_is_built(plan_of: PlanOf) -> None:
    """The swapped-in stage is the estimator the import path names, not the path itself."""
    plan = plan_of(search={"params": PASSENGERS_SWAP})
    assert isinstance(plan.groups[1].stages[-1].estimator, StandardScaler)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param([{"features": [SCALER]}, {PRECISION: [4, 5]}], id="first step swapped in one grid"),
        pytest.param({"features__transformers": [[["passengers", "passthrough", ["passenger_count"]]],
                                                 [["passengers", SCALER, ["passenger_count"]]]]}, id="transformers in the grid"),
    ],
)
def test_plan_fits_the_prefix_whole_when_the_grid_reshapes_the_first_step(plan_of: PlanOf, params: Any) -> None:
    """No group has raw stages then, not even those that keep the default first step."""
    plan = plan_of(search={"params": params})
    groups = len(plan.groups)
    assert groups >= 2 and _stage_paths(plan) == [()] * groups and plan.stages_per_fold == 0
    assert plan.n_prep_tasks == 3 * groups
    assert plan.summary() == (f"{groups} candidates x 3 folds = {3 * groups} fits; {3 * groups} prefix tasks ({groups} per fold), "
                              "each prefix reused by 1.0 fits on average")


def test_plan_of_a_one_step_pipeline_has_no_prefix_tasks(plan_of: PlanOf, numeric_data: dict[str, Any]) -> None:
    """The final estimator alone: one group without params or stages, and no prefix task."""
    plan = plan_of(data=numeric_data, pipeline=_steps(RIDGE), search={"params": {"model__alpha": [0.1, 1.0, 10.0]}})
    assert not plan.has_prefix and plan.n_prep_tasks == 0 and plan.stages_per_fold == 0
    assert len(plan.groups) == 1 and plan.groups[0].params == {} and plan.groups[0].stages == ()
    assert [family.items[0].params for family in plan.groups[0].families] == [{"model__alpha": a} for a in (0.1, 1.0, 10.0)]
    assert plan.summary() == "3 candidates x 3 folds = 9 fits; no preprocessing to share (the pipeline is its final estimator alone)"


def test_plan_makes_a_first_step_that_is_no_column_transformer_one_raw_stage(plan_of: PlanOf, numeric_data: dict[str, Any]) -> None:
    """StandardScaler then Ridge: the scaler is the raw stage, one task per fold and scaler params."""
    plan = plan_of(data=numeric_data, pipeline=_steps(SCALER, RIDGE),
                   search={"params": {"scale__with_mean": [True, False], "model__alpha": [1.0, 10.0]}})
    assert _stage_paths(plan) == [("scale",), ("scale",)] and plan.stages_per_fold == 2
    stages = [group.stages[0] for group in plan.groups]
    assert [stage.estimator.with_mean for stage in stages] == [True, False] and all(stage.columns is None for stage in stages)
    assert plan.summary() == ("4 candidates x 3 folds = 12 fits; 6 prefix tasks (2 per fold) on 2 raw stage tasks per fold, "
                              "each prefix reused by 2.0 fits on average")
    only_model = plan_of(data=numeric_data, pipeline=_steps(SCALER, RIDGE), search={"params": {"model__alpha": [1.0, 10.0]}})
    assert _stage_paths(only_model) == [("scale",)] and only_model.n_prep_tasks == 3


def test_forests_differing_only_in_n_estimators_share_one_fit_largest_first(plan_of: PlanOf) -> None:
    """One family per max_depth, its items sorted by n_estimators descending, all else equal."""
    plan = plan_of(search={"params": {"model": [FOREST], "model__n_estimators": [5, 20, 10], "model__max_depth": [2, 3]}})
    families = plan.groups[0].families
    assert [(family.kind, [item.n_estimators for item in family.items]) for family in families] == [(FOREST, [20, 10, 5])] * 2
    for family in families:
        rest = [{k: v for k, v in item.params.items() if k != "model__n_estimators"} for item in family.items]
        assert all(params == rest[0] for params in rest)
        assert [json.loads(item.params_json)["model__n_estimators"] for item in family.items] == [20, 10, 5]
    assert plan.n_families == 2
    assert plan.summary() == ("6 candidates x 3 folds = 18 fits; 6 fits along n_estimators serve them; 3 prefix tasks (1 per fold) "
                              "on 3 raw stage tasks per fold, each prefix reused by 6.0 fits on average")


def test_a_forest_with_default_n_estimators_leads_the_family_of_smaller_ones(plan_of: PlanOf) -> None:
    """A candidate not setting n_estimators has the estimator's default (100), across grids."""
    grids = [{"model": [FOREST], "model__max_depth": [2]}, {"model": [FOREST], "model__max_depth": [2], "model__n_estimators": [10]}]
    (family,) = plan_of(search={"params": grids}).groups[0].families
    assert [item.n_estimators for item in family.items] == [100, 10]


def test_the_default_final_estimator_shares_fits_along_n_estimators(plan_of: PlanOf, numeric_data: dict[str, Any]) -> None:
    """A forest the pipeline is built with, not swapped in, is the ``default`` kind and shares too."""
    plan = plan_of(data=numeric_data, pipeline=_steps(SCALER, FOREST), search={"params": {"model__n_estimators": [3, 6]}})
    assert [(family.kind, [item.n_estimators for item in family.items]) for family in plan.groups[0].families] == [(DEFAULT_KIND, [6, 3])]


def test_boosting_shares_fits_unless_early_stopping_is_set(plan_of: PlanOf) -> None:
    """``n_iter_no_change`` can stop a fit before the largest n_estimators: no shared path then."""
    shared = plan_of(search={"params": {"model": [BOOSTING], "model__n_estimators": [5, 10]}})
    assert [[item.n_estimators for item in family.items] for family in shared.groups[0].families] == [[10, 5]]
    stopping = plan_of(search={"params": {"model": [BOOSTING], "model__n_estimators": [5, 10], "model__n_iter_no_change": [2]}})
    assert [len(family.items) for family in stopping.groups[0].families] == [1, 1]
    assert all(family.items[0].n_estimators is None for family in stopping.groups[0].families)
    assert "along n_estimators" not in stopping.summary()
    assert stopping.summary().startswith("2 candidates x 3 folds = 6 fits; 3 prefix tasks (1 per fold)")


def test_forests_and_boosting_never_share_a_family(plan_of: PlanOf) -> None:
    """Families are per final-estimator kind even when their other params coincide."""
    plan = plan_of(search={"params": {"model": [FOREST, BOOSTING], "model__n_estimators": [5, 10], "model__max_depth": [2]}})
    assert sorted((family.kind, len(family.items)) for family in plan.groups[0].families) == [(BOOSTING, 2), (FOREST, 2)]
