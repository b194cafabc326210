"""End to end on a real LocalCluster: results, the run log, failures, resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

import gridsearch


@pytest.fixture(scope="module")
def finished(tmp_path_factory, config_writer, cluster_address) -> gridsearch.SearchResult:
    """The base config's search, run once for the tests that only read it (or copy its log)."""
    write = config_writer(tmp_path_factory.mktemp("engine"), cluster_address)
    return gridsearch.run(write(), progress=False)


def test_run_returns_cv_results_with_sklearn_columns(finished):
    result = finished
    table = result.cv_results
    assert len(table) == 6
    for column in ("params", "mean_fit_time", "std_fit_time", "mean_score_time", "param_model__alpha",
                   "split0_test_r2", "split2_test_r2", "mean_test_r2", "std_test_r2", "rank_test_r2",
                   "mean_test_neg_root_mean_squared_error", "rank_test_neg_root_mean_squared_error"):
        assert column in table.columns, column
    assert sorted(table["rank_test_neg_root_mean_squared_error"]) == [1, 2, 3, 4, 5, 6]
    assert result.best_score == table["mean_test_neg_root_mean_squared_error"].max()
    assert result.best_params == table.loc[table["mean_test_neg_root_mean_squared_error"].idxmax(), "params"]


def test_run_log_holds_one_record_per_candidate_and_fold(finished):
    result = finished
    log = gridsearch.read_log(result.log_path)
    assert len(log) == 18
    assert not log.duplicated(["candidate_id", "fold"]).any()
    assert set(log["status"]) == {"ok"}
    assert set(log["search_id"]) == {result.search_id}
    row = log.iloc[0]
    assert json.loads(row["params"]) in list(result.cv_results["params"])
    assert row["worker"].startswith("tcp://127.0.0.1:")
    assert row["finished"] >= row["started"]
    assert row["package_version"] and len(row["data_fingerprint"]) == 16
    for column in ("test_r2", "test_neg_root_mean_squared_error", "fit_time", "score_time", "prep_time", "git_sha", "git_dirty"):
        assert column in log.columns


def test_failing_candidate_becomes_error_records_and_the_search_goes_on(write_config):
    grids = [
        {"model__alpha": [0.1, 1.0]},
        {"model": ["sklearn.linear_model.LogisticRegression"]},  # a classifier cannot fit a continuous target
    ]
    result = gridsearch.run(write_config(search={"params": grids}), progress=False)
    table = result.cv_results
    failed = table[table["params"].map(lambda p: p.get("model") == "sklearn.linear_model.LogisticRegression")]
    assert len(failed) == 1 and failed["n_errors"].iloc[0] == 3
    assert np.isnan(failed["mean_test_r2"].iloc[0]) and failed["rank_test_r2"].iloc[0] == 3
    assert result.n_errors == 3
    log = gridsearch.read_log(result.log_path)
    errors = log[log["status"] == "error"]
    assert len(errors) == 3
    assert errors["error"].str.startswith("ValueError: Unknown label type").all()
    assert errors["traceback"].str.contains("Traceback").all()


def test_failing_preprocessing_fails_only_its_candidates(write_config):
    # One category list for two geohash columns passes validation but fails in fit.
    grids = {"features__geohash__onehot__categories": ["auto", [["dr5ru"]]], "model__alpha": [1.0]}
    result = gridsearch.run(write_config(search={"params": grids}), progress=False)
    assert list(result.cv_results["n_errors"]) == [0, 3]


def test_rerun_skips_recorded_fits_and_extends_a_grown_space(finished, write_config, tmp_path):
    first = finished
    shutil.copytree(first.log_path, tmp_path / "runs" / first.search_id)  # the finished search's log, grown here
    grown = {"features__geohash__encode__precision": [4, 5], "model__alpha": [0.1, 1.0, 10.0, 100.0]}
    second = gridsearch.run(write_config(search={"params": grown}), progress=False)
    assert second.search_id == first.search_id and second.log_path == tmp_path / "runs" / first.search_id
    assert second.n_resumed == 18
    log = gridsearch.read_log(second.log_path)
    assert len(log) == 24 and not log.duplicated(["candidate_id", "fold"]).any()
    shared = second.cv_results.merge(first.cv_results, on="candidate_id", suffixes=("", "_first"))
    assert len(shared) == 6
    np.testing.assert_array_equal(shared["mean_test_r2"], shared["mean_test_r2_first"])


def test_random_search_samples_n_iter_candidates_reproducibly(config_file):
    search = {"params": {"model__alpha": {"loguniform": [0.001, 100.0]}, "features__geohash__encode__precision": [4, 5]}, "n_iter": 5, "seed": 3}
    path = config_file(search=search)
    first = gridsearch.prepare_search(path)
    again = gridsearch.prepare_search(path)
    assert len(first.candidates) == 5
    assert first.candidates == again.candidates
    assert all(0.001 <= c.params["model__alpha"] <= 100.0 for c in first.candidates)


def test_log_loads_into_pandas_with_one_call(finished):
    log = gridsearch.read_log(finished.log_path)
    assert isinstance(log, pd.DataFrame)
    assert str(log["started"].dtype).startswith("datetime64")


def test_held_out_rows_never_reach_the_search(config_file):
    full = gridsearch.prepare_search(config_file())
    held = gridsearch.prepare_search(config_file(data={**full.config.raw["data"], "test_size": 0.25}))
    X_test, _ = held.holdout
    assert len(X_test) + len(held.dataset.X) == len(full.dataset.X)
    assert not set(X_test.index) & set(held.dataset.X.index)
    assert held.search_id != full.search_id
