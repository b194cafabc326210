"""Expansion of the search space: order, dedup, content ids, validation against the pipeline."""

from __future__ import annotations

from sklearn.model_selection import ParameterGrid

import gridsearch
from gridsearch.search.space import content_id


def test_grid_expands_in_parameter_grid_order(config_file):
    grid = {"model__alpha": [3.0, 1.0, 2.0], "features__geohash__encode__precision": [5, 4]}
    search = gridsearch.prepare_search(config_file(search={"params": grid}))
    assert [dict(c.params) for c in search.candidates] == list(ParameterGrid(grid))


def test_duplicates_within_and_across_grids_are_dropped(config_file):
    grids = [{"model__alpha": [1.0, 1.0, 2.0]}, {"model__alpha": [2.0, 3.0]}]
    search = gridsearch.prepare_search(config_file(search={"params": grids}))
    assert [c.params["model__alpha"] for c in search.candidates] == [1.0, 2.0, 3.0]


def test_candidate_ids_depend_on_params_data_and_cv(config_file):
    base = gridsearch.prepare_search(config_file())
    same = gridsearch.prepare_search(config_file())
    other_data = gridsearch.prepare_search(config_file(data={"source": "synthetic-taxifare", "rows": 1400, "seed": 1}))
    other_cv = gridsearch.prepare_search(config_file(cv={"folds": 4, "shuffle": True, "seed": 0}))
    ids = [c.id for c in base.candidates]
    assert ids == [c.id for c in same.candidates]
    assert len(set(ids)) == len(ids)
    assert not set(ids) & {c.id for c in other_data.candidates}
    assert not set(ids) & {c.id for c in other_cv.candidates}


def test_content_id_is_short_and_stable():
    assert content_id({"a": 1, "b": [1, 2]}) == content_id({"b": [1, 2], "a": 1})
    assert len(content_id("x")) == 16


def test_whole_steps_are_swapped_by_import_path(config_file):
    grids = [{"model": ["sklearn.linear_model.Ridge", "sklearn.linear_model.Lasso"], "model__alpha": [1.0]}]
    search = gridsearch.prepare_search(config_file(search={"params": grids}))
    assert [c.params["model"] for c in search.candidates] == ["sklearn.linear_model.Ridge", "sklearn.linear_model.Lasso"]
