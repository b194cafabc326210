"""Planning: candidates that share preprocessing share one prefix task per fold."""

from __future__ import annotations

import gridsearch
from gridsearch.search.plan import split_params


def test_candidates_are_grouped_by_prefix_params(write_config):
    grid = {"features__geohash__encode__precision": [4, 5, 6], "model__alpha": [0.1, 1.0, 10.0, 100.0]}
    plan = gridsearch.prepare_search(write_config(search={"params": grid})).plan
    assert len(plan.groups) == 3
    assert plan.n_prep_tasks == 9 and plan.n_fits == 36
    assert {tuple(g.params.items()) for g in plan.groups} == {(("features__geohash__encode__precision", p),) for p in (4, 5, 6)}
    assert "12 candidates x 3 folds = 36 fits; 9 prefix tasks (3 per fold) on 5 raw stage tasks per fold" in plan.summary()


def test_swapping_the_final_estimator_does_not_split_a_group(write_config):
    grids = [{"model": ["sklearn.linear_model.Ridge"], "model__alpha": [1.0]}, {"model": ["sklearn.linear_model.Lasso"]}]
    plan = gridsearch.prepare_search(write_config(search={"params": grids})).plan
    assert len(plan.groups) == 1 and plan.n_candidates == 2


def test_split_params_separates_final_step():
    params = {"features__geohash__encode__precision": 5, "model": "x", "model__alpha": 1.0, "modelling__x": 2}
    prefix, final = split_params(params, "model")
    assert prefix == {"features__geohash__encode__precision": 5, "modelling__x": 2}
    assert final == {"model": "x", "model__alpha": 1.0}
    assert split_params(params, None) == ({}, params)
