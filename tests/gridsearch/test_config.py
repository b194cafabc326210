"""Every config problem is one line naming the file, the key, what is allowed and what was found."""

from __future__ import annotations

import pytest

import gridsearch
from gridsearch.errors import ConfigError
from gridsearch.search.config import load_config, parse_overrides


def test_default_config_is_valid_and_has_200_candidates_and_1000_fits():
    search = gridsearch.prepare_search("conf/search.yaml")
    assert len(search.candidates) == 200 and search.plan.folds == 5 and search.plan.n_fits == 1000


def test_unknown_key_suggests_the_closest_one(config_file):
    with pytest.raises(ConfigError, match=r"search.yaml: cv.fold: unknown key; did you mean folds\? \(allowed: folds, seed, shuffle\)"):
        load_config(config_file(cv={"fold": 3}))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cv.folds": 1}, r"cv.folds: expected an integer >= 2, found 1"),
        ({"cv.folds": "three"}, r"cv.folds: expected an integer >= 2, found 'three' \(wrong type\)"),
        ({"data.rows": True}, r"data.rows: expected a row count >= 1 or null for all rows, found True"),
        ({"scoring": ["rmse"]}, r"scoring: unknown scorer 'rmse'"),
        ({"scoring": ["neg_root_mean_squared_eror"]}, r"did you mean neg_root_mean_squared_error\?"),
        ({"search.params": {}}, r"search.params: expected a non-empty grid"),
        ({"search.params": {"model__alpha": []}}, r"search.params.model__alpha: empty list of values"),
        ({"pipeline": {"factory": "kampai.pipeline"}}, r"pipeline.factory: expected 'module:function'"),
        ({"pipeline.factory": None}, r"pipeline: give exactly one of pipeline.factory"),
        ({"colour": "blue"}, r"colour: unknown key"),
    ],
)
def test_bad_values_are_rejected_with_the_key(config_file, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config_file(), overrides)


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  source: synthetic-taxifare\ncv: {folds: 3\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: YAML syntax error at line 4, column 1"):
        load_config(path)


def test_missing_config_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"search": {"params": {"model__alpa": [1.0]}}}, r"search.params.model__alpa: unknown parameter; did you mean model__alpha\?"),
        ({"search": {"params": {"model__alpha": [-1.0]}}}, r"search.params.model__alpha: The 'alpha' parameter of Ridge must be .*Got -1.0 instead"),
        ({"search": {"params": {"features__geohash__encode__precision": [0]}}}, r"'precision' parameter of Geohash must be"),
        ({"search": {"params": [{"model": ["sklearn.tree.DecisionTreeRegressor"], "model__alpha": [1.0]}]}},
         r"search.params.model__alpha: unknown parameter of model=sklearn.tree.DecisionTreeRegressor; did you mean model__ccp_alpha\?"),
        ({"search": {"params": {"model": ["sklearn.linear_model.Rigde"]}}}, r"search.params.model: cannot import 'sklearn.linear_model.Rigde'"),
        ({"search": {"params": {"model__alpha": {"loguniform": [0.1, 1]}}}}, r"needs random search; set search.n_iter"),
        ({"search": {"params": {"model__alpha": {"lognormal": [0.1, 1]}}, "n_iter": 3}}, r"unknown distribution 'lognormal'; did you mean loguniform\?"),
        ({"search": {"params": {"model__alpha": {"loguniform": [0, 1]}}, "n_iter": 3}}, r"loguniform needs \[low, high\] with low < high and low > 0"),
        ({"data": {"source": "missing.csv"}}, r"data.source: .*missing.csv"),
        ({"data": {"source": "synthetic-taxifare", "target": "fare"}}, r"data.target: column 'fare' not in the data"),
        ({"data": {"source": "synthetic-taxifare", "target": "key"}}, r"data.target: column 'key' must be numeric"),
        ({"pipeline": {"factory": "kampai.pipeline:no_such_pipeline"}}, r"pipeline: cannot import 'kampai.pipeline:no_such_pipeline'"),
        ({"cv": {"folds": 5000}}, r"cv.folds: Cannot have number of splits n_splits=5000 greater than the number of samples"),
    ],
)
def test_problems_found_with_pipeline_or_data_are_reported_before_work(config_file, sections, message):
    with pytest.raises(ConfigError, match=message):
        gridsearch.prepare_search(config_file(**sections))


def test_overrides_are_read_as_yaml():
    assert parse_overrides(["cv.folds=5", "cluster.address=null", "search.params.model__alpha=[1, 2.5]"]) == {
        "cv.folds": 5, "cluster.address": None, "search.params.model__alpha": [1, 2.5]}


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match=r"--set: cv.folds: expected KEY=VALUE"):
        parse_overrides(["cv.folds"])


def test_nested_overrides_merge_into_sections(config_file):
    config = load_config(config_file(), {"cv": {"folds": 4}, "data.rows": 900})
    assert config.cv.folds == 4 and config.cv.shuffle is True and config.data.rows == 900


def test_short_forms_of_pipeline_and_cache(config_file):
    config = load_config(config_file(pipeline="kampai.pipeline:taxifare_pipeline", cache="memo"))
    assert config.pipeline.factory == "kampai.pipeline:taxifare_pipeline"
    assert str(config.cache.dir) == "memo" and config.cache.stages is None
