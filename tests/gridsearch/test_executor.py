"""The executor runs the tasks the plan announces (what ``--dry-run`` prints), each once, on a real cluster."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from distributed import Client, get_task_stream

import gridsearch
from gridsearch.execute.engine import search_work
from gridsearch.execute.executor import execute
from gridsearch.log.records import FitRecord
from tests.conftest import BASE_CONFIG

PRECISION = "features__geohash__encode__precision"
SCALER = "sklearn.preprocessing.StandardScaler"
RIDGE = "sklearn.linear_model.Ridge"
FOREST = "sklearn.ensemble.RandomForestRegressor"

Sections = Callable[[Path], dict[str, Any]]


def _numeric_csv(tmp_path: Path, rows: int = 600, shift: float = 0.0) -> Path:
    """A numeric CSV (x0..x2, target y); ``shift`` changes its content, not its shape."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 3)) + shift
    path = tmp_path / "numeric.csv"
    pd.DataFrame(X, columns=["x0", "x1", "x2"]).assign(y=X @ [1.0, -2.0, 0.5] + rng.normal(size=rows)).to_csv(path, index=False)
    return path


def _numeric(*steps: str, params: dict[str, Any]) -> Sections:
    """Sections for :func:`_numeric_csv` through declarative ``steps`` (``scale`` if two, then ``model``)."""
    names = ["scale", "model"][-len(steps):]
    return lambda tmp_path: {
        "data": {"source": str(_numeric_csv(tmp_path)), "target": "y", "clean": False},
        "pipeline": {"steps": [{"name": name, "estimator": estimator} for name, estimator in zip(names, steps)]},
        "search": {"params": params},
    }


def _taxi(params: Any) -> Sections:
    """Sections for the default taxi-fare pipeline on synthetic rows."""
    return lambda tmp_path: {"search": {"params": params}}


def _write(tmp_path: Path, cluster_address: str, **sections: Any) -> Path:
    """A search YAML from :data:`BASE_CONFIG` (900 rows, 2 folds, no memo) on the session cluster."""
    config = copy.deepcopy(BASE_CONFIG)
    config["data"]["rows"] = 900
    config.update({"cv": {"folds": 2, "shuffle": True, "seed": 0}, "cluster": {"address": cluster_address},
                   "cache": {"dir": None}, "log": str(tmp_path / "runs")})
    config.update(sections)
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _ran(stream: list[dict[str, Any]], prefix: str) -> Counter[str]:
    """How many times each task whose key starts with ``prefix`` ran."""
    return Counter(key for task in stream if isinstance(key := task["key"], str) and key.startswith(prefix))


@pytest.mark.parametrize(
    "sections",
    [
        pytest.param(_taxi([{"features__geohash": ["drop"]}, {PRECISION: [4, 5]}]), id="list of grids with a drop branch"),
        pytest.param(_taxi({"features__passengers": ["passthrough", SCALER], "model__alpha": [1.0, 10.0]}), id="passthrough swapped"),
        pytest.param(_numeric(RIDGE, params={"model__alpha": [0.1, 1.0, 10.0]}), id="one-step pipeline"),
        pytest.param(_numeric(SCALER, RIDGE, params={"scale__with_mean": [True, False], "model__alpha": [1.0, 10.0]}),
                     id="first step not a ColumnTransformer"),
        pytest.param(_taxi({"model": [FOREST], "model__n_estimators": [2, 4, 8], "model__max_depth": [2, 3], "model__random_state": [0]}),
                     id="forests along n_estimators"),
    ],
)
def test_tasks_that_run_are_the_tasks_the_plan_announces(tmp_path: Path, cluster_address: str, sections: Sections) -> None:
    """Stage, prefix and fit tasks on the scheduler match the plan's counts, each ran once, and every fit is logged."""
    path = _write(tmp_path, cluster_address, **sections(tmp_path))
    plan = gridsearch.prepare_search(path).plan
    with Client(cluster_address) as client, get_task_stream(client) as stream:
        result = gridsearch.run(path, progress=False)
    stages, infos, preps, fits = (_ran(stream.data, prefix) for prefix in ("stage-", "info-stage-", "prep-", "fit-"))
    assert sum(stages.values()) == plan.stages_per_fold * plan.folds and set(stages.values()) <= {1}
    assert sum(infos.values()) == sum(stages.values())
    assert sum(preps.values()) == plan.n_prep_tasks and set(preps.values()) <= {1}
    assert sum(_ran(stream.data, "data-").values()) == 1 and fits and set(fits.values()) == {1}
    records = gridsearch.read_log(result.log_path)
    assert len(records) == len(set(zip(records["candidate_id"], records["fold"]))) == plan.n_fits == result.n_fits
    computed = records[records["shared_fit"].isna()]
    assert len(computed) == plan.n_families * plan.folds
    shared = records[records["shared_fit"].notna()]
    assert (shared["fit_time"] == 0).all() and set(zip(shared["shared_fit"], shared["fold"])) <= set(zip(computed["candidate_id"], computed["fold"]))
    assert result.n_errors == 0, records["error"].dropna().unique()


def test_execute_stops_with_a_gridsearch_error_when_workers_read_other_rows(tmp_path: Path, cluster_address: str) -> None:
    """``data.workers: read`` on a file changed after planning: the search stops, nothing is recorded."""
    path = _write(tmp_path, cluster_address, **_numeric(SCALER, RIDGE, params={"model__alpha": [1.0, 10.0]})(tmp_path))
    config = yaml.safe_load(path.read_text())
    config["data"]["workers"] = "read"
    path.write_text(yaml.safe_dump(config))
    search = gridsearch.prepare_search(path)
    _numeric_csv(tmp_path, shift=1.0)  # same name, shape and columns; other values
    recorded: list[FitRecord] = []
    with Client(cluster_address) as client, pytest.raises(gridsearch.GridsearchError, match="data on a worker differs from the client's"):
        execute(client, search_work(search), lambda candidate, fold: True, recorded.extend, lambda report: None)
    assert recorded == []


def test_fit_tasks_of_searches_differing_only_in_scoring_never_share_a_key(tmp_path: Path, cluster_address: str) -> None:
    """Search B, started while search A's fits are in flight on the same scheduler, gets its own records, not A's."""
    searches = []
    sections = _numeric(RIDGE, params={"model__alpha": [0.1, 1.0, 10.0, 100.0]})(tmp_path)
    for scoring in ("r2", "neg_mean_absolute_error"):
        path = _write(tmp_path, cluster_address, scoring=[scoring], **sections)
        searches.append(gridsearch.prepare_search(path.rename(tmp_path / f"{scoring}.yaml")))
    first, second = searches
    assert first.candidates == second.candidates and first.search_id != second.search_id
    records: list[FitRecord] = []

    def start_second(_records: Sequence[FitRecord]) -> None:
        if not records:  # A's other fits are still in flight, A's collected one is held by the executor
            execute(client, search_work(second), lambda candidate, fold: True, records.extend, lambda report: None)

    with Client(cluster_address) as client:
        execute(client, search_work(first), lambda candidate, fold: True, start_second, lambda report: None)
    assert len(records) == second.plan.n_fits
    assert {record.search_id for record in records} == {second.search_id}
    assert {tuple(record.scores) for record in records} == {("neg_mean_absolute_error",)}
