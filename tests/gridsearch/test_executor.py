"""The executor runs the tasks the plan announces (what ``--dry-run`` prints), each once, on a real cluster."""

from __future__ import annotations

import copy
import time
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
from gridsearch.execute import executor
from gridsearch.execute.batching import FitCosts, fit_batches
from gridsearch.execute.engine import search_work
from gridsearch.execute.executor import execute
from gridsearch.log.records import FitRecord
from kampai.ids import content_id
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
        execute(client, search_work(search), lambda candidate, fold: True, recorded.extend)
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
            execute(client, search_work(second), lambda candidate, fold: True, records.extend)

    with Client(cluster_address) as client:
        execute(client, search_work(first), lambda candidate, fold: True, start_second)
    assert len(records) == second.plan.n_fits
    assert {record.search_id for record in records} == {second.search_id}
    assert {tuple(record.scores) for record in records} == {("neg_mean_absolute_error",)}


def _held_preps(client: Client, group_of: dict[str, int]) -> set[tuple[int, int]]:
    """(group index, fold) of every prefix task the client holds a future of."""
    keys = [key.removeprefix("prep-").rsplit("-", 1) for key in list(client.futures) if key.startswith("prep-")]
    return {(group_of[group], int(fold)) for group, fold in keys}


def _scheduler_keys(dask_scheduler: Any, prefixes: tuple[str, ...]) -> list[str]:
    return [key for key in dask_scheduler.tasks if isinstance(key, str) and key.startswith(prefixes)]


def _scores(client: Client, path: Path) -> dict[tuple[str, int], Any]:
    """Scores of every (candidate, fold) of the search at ``path``, run by :func:`execute`."""
    search = gridsearch.prepare_search(path)
    scores: dict[tuple[str, int], Any] = {}

    def on_records(records: Sequence[FitRecord]) -> None:
        scores.update({(record.candidate_id, record.fold): record.scores for record in records if record.error is None})

    execute(client, search_work(search), lambda candidate, fold: True, on_records)
    assert len(scores) == search.plan.n_fits
    return scores


def _settled(read: Callable[[], Any], expected: Any) -> Any:
    """What ``read()`` returns once it equals ``expected`` or after 5 s: the client drops released futures a moment later."""
    for _ in range(50):
        if (value := read()) == expected:
            break
        time.sleep(0.1)
    return value


GROUPS = _taxi({PRECISION: [4, 5, 6, 7], "model__alpha": [1.0, 10.0]})


def test_prefixes_of_the_next_group_are_submitted_ahead_and_released_once_passed(tmp_path: Path, cluster_address: str) -> None:
    """Reaching group k submits the prefixes of groups k to k + GROUPS_AHEAD on every fold (with their raw stages),
    and drops the earlier prefixes and the raw stages no group from k on reads."""
    search = gridsearch.prepare_search(_write(tmp_path, cluster_address, **GROUPS(tmp_path)))
    plan, ahead = search.plan, executor.GROUPS_AHEAD
    groups = len(plan.groups)
    group_of = {group.id: index for index, group in enumerate(plan.groups)}
    firsts = {batch.group_index: batch for batch in reversed(list(fit_batches(plan, lambda candidate, fold: True, FitCosts())))}
    expected = []
    for index in range(groups):
        window = range(index, min(index + 1 + ahead, groups))
        later = {stage.id for group in plan.groups[index:] for stage in group.stages}
        stages = {f"stage-{content_id(search.search_id, fold, stage.id)}" for group in plan.groups[: window[-1] + 1]
                  for stage in group.stages if stage.id in later for fold in range(plan.folds)}
        expected.append(({(group, fold) for group in window for fold in range(plan.folds)}, stages))
    held = []
    with Client(cluster_address) as client:
        inputs = executor._Inputs(client, search_work(search))
        infos: list[Any] = []
        for index in range(groups):
            inputs.source(firsts[index], lambda future, stage: infos.append(future))
            held.append(_settled(lambda: (_held_preps(client, group_of), {key for key in client.futures if key.startswith("stage-")}),
                                 expected[index]))
        del inputs
        infos.clear()
        left = _settled(lambda: client.run_on_scheduler(_scheduler_keys, prefixes=("prep-", "stage-", "info-stage-", "data-")), [])
    assert groups == 4 and ahead >= 1 and len(expected[0][1]) > len(expected[-1][1]) > 0  # some stages are released
    assert held == expected
    assert left == []


def test_prefetching_changes_no_score_and_leaves_nothing_on_the_scheduler(
        tmp_path: Path, cluster_address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search of several groups scores the same with the next groups' prefixes computed ahead as without."""
    path = _write(tmp_path, cluster_address, **GROUPS(tmp_path))
    with Client(cluster_address) as client:
        ahead = _scores(client, path)
        monkeypatch.setattr(executor, "GROUPS_AHEAD", 0)
        alone = _scores(client, path)
        left = _settled(lambda: client.run_on_scheduler(_scheduler_keys, prefixes=("prep-", "stage-", "info-stage-", "data-")), [])
    assert ahead == alone
    assert left == []
