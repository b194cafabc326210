"""Fail fast: the pilot fit refuses searches that cannot work; the first fits stop a search failing alike."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import gridsearch
from gridsearch.execute.failfast import FailFast
from gridsearch.log.records import FitRecord, Status
from gridsearch.search.pilot import pilot, pilot_summary
from tests.conftest import BASE_CONFIG

TAXI_RIDGE = {"model__alpha": [0.1, 1.0]}


def _search(tmp_path: Path, **sections: Any) -> gridsearch.PreparedSearch:
    config = copy.deepcopy(BASE_CONFIG)
    config.update({"cluster": {"address": None}, "cache": {"dir": None}, "log": str(tmp_path / "runs"), "search": {"params": TAXI_RIDGE}})
    config.update(sections)
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return gridsearch.prepare_search(path)


def _numeric_csv(tmp_path: Path) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path / "numeric.csv"
    pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300), "fare_amount": rng.normal(size=300)}).to_csv(path, index=False)
    return str(path)


def test_a_search_whose_structures_all_work_passes_the_pilot(tmp_path):
    grids = [{"model": ["sklearn.linear_model.Ridge", "sklearn.tree.DecisionTreeRegressor"]}, {"features__geohash": ["drop"]}]
    assert pilot(_search(tmp_path, search={"params": grids})) == []


@pytest.mark.parametrize(("sections", "key", "message"), [
    ({"search": {"params": {"model": ["sklearn.preprocessing.StandardScaler"]}}}, "search.params",
     r"no candidate can be fitted; model=StandardScaler: step 'model' failed: ValueError"),
    ({"scoring": ["roc_auc"]}, "scoring",
     r"roc_auc cannot score this search's models; the pipeline as configured: scorer roc_auc failed: AttributeError"),
    ({"pipeline": {"steps": [{"name": "model", "estimator": "sklearn.tree.DecisionTreeRegressor"}]}, "search": {"params": {"model__max_depth": [2]}}},
     "search.params", r"the pipeline as configured: step 'model' failed: ValueError: could not convert string to float"),
    ({"search": {"params": {"model__alpha": {"uniform": [-5, -1]}}, "n_iter": 5}}, "search.params",
     r"step 'model' failed: InvalidParameterError: The 'alpha' parameter of Ridge must be a float in the range \[0.0, inf\)"),
])
def test_a_search_that_cannot_work_is_a_config_error_naming_the_step(tmp_path, sections, key, message):
    with pytest.raises(gridsearch.ConfigError, match=rf"search.yaml: {key}: .*{message}"):
        pilot(_search(tmp_path, **sections))


def test_the_taxi_pipeline_on_other_columns_names_the_features_step(tmp_path):
    search = _search(tmp_path, data={"source": _numeric_csv(tmp_path), "target": "fare_amount"})
    with pytest.raises(gridsearch.ConfigError, match=r"step 'features' failed: ValueError: .*not columns of the dataframe"):
        pilot(search)


def test_one_failing_structure_among_working_ones_is_said_in_one_line(tmp_path):
    grids = [TAXI_RIDGE, {"model": ["sklearn.linear_model.LogisticRegression"]}]
    failures = pilot(_search(tmp_path, search={"params": grids}))
    assert [f.structure for f in failures] == ["model=LogisticRegression"]
    [line] = pilot_summary(failures)
    assert line.startswith("pilot fit: model=LogisticRegression: step 'model' failed: ValueError: Unknown label type")
    assert line.endswith("their candidates' fits will be recorded as errors")


def test_a_failure_on_the_sample_is_confirmed_on_the_whole_fold(tmp_path):
    """A sample of 500 rows holds one class of a rare label; the whole fold holds both: no false alarm."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 2))
    labels = np.where(np.arange(3000) % 1000 == 0, "rare", "common")
    path = tmp_path / "rare.csv"
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "label": labels}).to_csv(path, index=False)
    steps = [{"name": "scale", "estimator": "sklearn.preprocessing.StandardScaler"},
             {"name": "model", "estimator": "sklearn.linear_model.LogisticRegression"}]
    search = _search(tmp_path, data={"source": str(path), "target": "label"}, pipeline={"steps": steps},
                     search={"params": {"model__C": [1.0]}}, scoring=["accuracy"])
    assert pilot(search) == []


def _record(candidate: str, status: Status, error: str | None = None) -> FitRecord:
    return FitRecord(search_id="s", candidate_id=candidate, params="{}", fold=0, status=status, scores={"r2": 0.5}, error=error)


def test_the_first_fits_failing_alike_stop_the_search_with_nothing_written():
    written: list[FitRecord] = []
    gate = FailFast(written.extend, first_fits=4)
    gate([_record("a", Status.ERROR, "KeyError: 'x'")] * 3)
    assert written == []
    with pytest.raises(gridsearch.GridsearchError, match=r"the first 4 fits all failed, so the search stopped \(nothing recorded\): KeyError: 'x' \(e.g. candidate a"):
        gate([_record("b", Status.ERROR, "KeyError: 'x'")])
    assert written == []


def test_one_good_fit_or_varied_errors_write_everything_held():
    written: list[FitRecord] = []
    gate = FailFast(written.extend, first_fits=4)
    gate([_record("a", Status.ERROR, "E1")])
    gate([_record("b", Status.OK)])
    assert [r.candidate_id for r in written] == ["a", "b"]
    gate([_record("c", Status.ERROR, "E1")])
    assert len(written) == 3  # straight through once open
    varied: list[FitRecord] = []
    other = FailFast(varied.extend, first_fits=2)
    other([_record("a", Status.ERROR, "E1"), _record("b", Status.ERROR, "E2")])
    assert len(varied) == 2
    passthrough: list[FitRecord] = []
    FailFast(passthrough.extend, first_fits=None)([_record("a", Status.ERROR, "E1")])
    assert len(passthrough) == 1
