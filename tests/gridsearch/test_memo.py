"""Raw stages: computed once per search, memoised across searches, safe to share and to corrupt."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import get_scorer

import gridsearch
from gridsearch.execute.tasks import FitSetup, fit_batch, prepare, run_stage
from gridsearch.log.records import FitItem, RecordStamp, Status
from gridsearch.search.plan import FitFamily
from gridsearch.search.space import resolve, step_names
from kampai.cache import StageMemo, cache_info, clear_cache, code_hash, stage_key
from kampai.pipeline import taxifare_features

PRECISIONS = {"features__geohash__encode__precision": [4, 5, 6], "model__alpha": [0.1, 1.0]}


def _run(write_config, tmp_path: Path, log: str, **sections):
    return gridsearch.run(write_config(log=str(tmp_path / log), **sections), progress=False)


@dataclass(frozen=True)
class Cold:
    """A search of :data:`PRECISIONS` on an empty memo, run once for the module, and its config writer."""

    result: gridsearch.SearchResult
    directory: Path
    write: Callable[..., Path]


@pytest.fixture(scope="module")
def cold(tmp_path_factory, config_writer, cluster_address) -> Cold:
    directory = tmp_path_factory.mktemp("memo")
    write = config_writer(directory, cluster_address)
    return Cold(_run(write, directory, "cold", search={"params": PRECISIONS}), directory, write)


def test_one_branch_changing_does_not_recompute_the_others(cold):
    # per fold: time + distance once, geohash once per precision
    assert cold.result.stages_computed == 3 * (1 + 1 + 3) and cold.result.stages_from_memo == 0


def test_a_second_run_loads_every_stage_from_the_memo(cold):
    warm = _run(cold.write, cold.directory, "warm", search={"params": PRECISIONS})
    assert warm.stages_computed == 0 and warm.stages_from_memo == cold.result.stages_computed == 15
    np.testing.assert_array_equal(warm.cv_results["mean_test_r2"], cold.result.cv_results["mean_test_r2"])
    info = cache_info(cold.directory / "cache")
    assert info.entries == 15 and info.hits == 15 and info.misses == 15 and info.bytes > 0


def test_an_overlapping_search_computes_only_new_stages(write_config, tmp_path):
    _run(write_config, tmp_path, "first", search={"params": {"features__geohash__encode__precision": [4, 5], "model__alpha": [1.0]}})
    second = _run(write_config, tmp_path, "second", search={"params": {"features__geohash__encode__precision": [5, 6], "model__alpha": [3.0]}})
    assert second.stages_computed == 3 and second.stages_from_memo == 3 * 3  # geohash@6 new; time, distance, geohash@5 memoised


def test_memo_can_be_limited_to_some_stages_or_turned_off(write_config, tmp_path):
    _run(write_config, tmp_path, "a", cache={"dir": str(tmp_path / "cache"), "stages": ["features__geohash"]})
    again = _run(write_config, tmp_path, "b", cache={"dir": str(tmp_path / "cache"), "stages": ["features__geohash"]})
    assert again.stages_from_memo == 3 * 2 and again.stages_computed == 3 * 2  # geohash memoised, time/distance not
    off = _run(write_config, tmp_path, "c", cache={"dir": None})
    assert off.stages_from_memo == 0 and off.stages_computed == 3 * 4


def test_unknown_memo_stage_is_a_config_error(config_file):
    with pytest.raises(gridsearch.ConfigError, match=r"cache.stages: unknown stage 'features__geohsh'; did you mean features__geohash\?"):
        gridsearch.prepare_search(config_file(cache={"dir": "cache", "stages": ["features__geohsh"]}))


def _branch(features, name: str):
    return next(estimator for branch, estimator, _ in features.transformers if branch == name)


def _geohash_inputs():
    search = gridsearch.prepare_search("conf/search.yaml", **{"data.rows": 2000})
    X_train, y_train, X_test, _ = search.dataset.fold(0)
    columns = ["pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude"]
    stage = _branch(taxifare_features(5), "geohash")
    return stage, X_train[columns], y_train, X_test[columns]


def test_a_corrupt_entry_is_recomputed_with_a_warning(tmp_path):
    stage, X_train, y_train, X_test = _geohash_inputs()
    memo = StageMemo(tmp_path)
    first, from_memo = memo.fit_transform("k", clone(stage), X_train, y_train, X_test)
    assert not from_memo
    for output in tmp_path.rglob("output.pkl"):
        output.write_bytes(output.read_bytes()[:100])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again, from_memo = memo.fit_transform("k", clone(stage), X_train, y_train, X_test)
    assert not from_memo and any("could not be loaded; it was recomputed" in str(w.message) for w in caught)
    assert (again.train != first.train).nnz == 0
    assert memo.fit_transform("k", clone(stage), X_train, y_train, X_test)[1]  # stored again


def test_changing_a_stage_code_changes_its_key(tmp_path, monkeypatch):
    module = tmp_path / "my_stage.py"
    module.write_text("from sklearn.preprocessing import StandardScaler\nclass Scaler(StandardScaler):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = stage_key("rows", "scale", importlib.import_module("my_stage").Scaler())
    module.write_text("from sklearn.preprocessing import StandardScaler\nclass Scaler(StandardScaler):\n    '''edited'''\n")
    code_hash.cache_clear()
    sys.modules.pop("my_stage")
    after = stage_key("rows", "scale", importlib.import_module("my_stage").Scaler())
    assert before != after


def test_stage_key_depends_on_rows_and_params():
    stage = _branch(taxifare_features(5), "geohash")
    other = _branch(taxifare_features(6), "geohash")
    assert stage_key("rows", "g", stage) == stage_key("rows", "g", clone(stage))
    assert stage_key("rows", "g", stage) != stage_key("rows", "g", other)
    assert stage_key("rows", "g", stage) != stage_key("other-rows", "g", stage)


def test_concurrent_searches_share_the_memo_without_corrupting_it(write_config, tmp_path):
    paths = [write_config(name=f"s{i}.yaml", log=str(tmp_path / f"log{i}")) for i in range(2)]
    runs = [subprocess.Popen([sys.executable, "-m", "gridsearch", "run", str(p), "--quiet"], stderr=subprocess.PIPE, text=True) for p in paths]
    for process in runs:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    warm = _run(write_config, tmp_path, "after")
    assert warm.stages_computed == 0 and warm.stages_from_memo == 3 * 4


def test_cache_clear_empties_the_memo(write_config, tmp_path):
    _run(write_config, tmp_path, "runs")
    assert cache_info(tmp_path / "cache").entries == 12
    done = subprocess.run([sys.executable, "-m", "gridsearch", "cache", "clear", "--dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0 and "cleared" in done.stdout and "12 entries" in done.stdout
    assert cache_info(tmp_path / "cache").entries == 0
    assert clear_cache(tmp_path / "nothing").entries == 0


def test_search_path_predicts_like_the_production_pipeline(tmp_path):
    """The plan's stages through the memo, the shared prefix and the worker's fit give the uncached pipeline's
    predictions and score."""
    search = gridsearch.prepare_search("conf/search.yaml", **{"data.rows": 3000, "cache.dir": str(tmp_path)})
    params = {"features__geohash__encode__precision": 6, "model": "sklearn.linear_model.Ridge", "model__alpha": 0.3}
    [group] = [g for g in search.plan.groups if g.params == {"features__geohash__encode__precision": 6}]
    assert sorted(stage.path for stage in group.stages) == ["features__distance", "features__geohash", "features__time"]
    rows_id = f"{search.inputs.rows_id}-1"
    first = {stage.path: run_stage(search.dataset, 1, stage, rows_id, str(tmp_path)) for stage in group.stages}
    stages = {stage.path: run_stage(search.dataset, 1, stage, rows_id, str(tmp_path)) for stage in group.stages}
    assert not any(result.from_memo for result in first.values()) and all(result.from_memo for result in stages.values())
    prepared = prepare(search.dataset, 1, search.pipeline, group.params, stages)
    final = {"model": "sklearn.linear_model.Ridge", "model__alpha": 0.3}
    model = clone(search.pipeline).set_params(**resolve(final, step_names(search.pipeline)))._final_estimator
    searched = model.fit(prepared.X_train, prepared.y_train).predict(prepared.X_test)
    X_train, y_train, X_test, y_test = search.dataset.fold(1)
    production = clone(search.pipeline).set_params(**resolve(params, step_names(search.pipeline))).fit(X_train, y_train)
    np.testing.assert_allclose(searched, production.predict(X_test), rtol=1e-12, atol=1e-9)
    stamp = RecordStamp(search.search_id, search.inputs.data_fingerprint, None, None, "0", ("r2",))
    item = FitItem("c", final, json.dumps(params))
    [record] = fit_batch(prepared, 1, [FitFamily("sklearn.linear_model.Ridge", (item,))], FitSetup.of(search.pipeline, stamp))
    assert record.status is Status.OK and record.fold == 1 and record.params == item.params_json
    assert abs(record.scores["r2"] - get_scorer("r2")(production, X_test, y_test)) < 1e-9
