"""Stopping, failing and dying workers: nothing recorded is lost, nothing is recorded twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import gridsearch

# 20 candidates x 3 folds of ~0.1-0.2 s; interrupts and kills are triggered by the record count
# on disk, and each test checks that the search was still running when they landed.
SLOW_GRID = {"model": ["sklearn.ensemble.RandomForestRegressor"], "model__n_estimators": [10],
             "model__max_depth": {"range": [4, 14]}, "model__min_samples_leaf": [1, 3], "model__random_state": [0]}
SLOW_FITS = 20 * 3


def _records_on_disk(log_dir: Path) -> int:
    """Complete records under a log root holding one search (a torn tail is skipped)."""
    logs = [d for d in log_dir.glob("*") if d.is_dir()] if log_dir.exists() else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return len(gridsearch.read_log(logs[0])) if logs else 0


def _wait_for_records(log_dir: Path, count: int = 1, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while _records_on_disk(log_dir) < count:
        assert time.monotonic() < deadline, f"no {count} records in {log_dir} after {seconds} s"
        time.sleep(0.05)


def _assert_complete(result) -> None:
    log = gridsearch.read_log(result.log_path)
    done = log[log["status"] == "ok"]
    assert len(done) == result.n_fits and not done.duplicated(["candidate_id", "fold"]).any()


def test_ctrl_c_flushes_the_log_prints_the_resume_command_and_exits_130(write_config, tmp_path):
    path = write_config(search={"params": SLOW_GRID})
    process = subprocess.Popen([sys.executable, "-m", "gridsearch", "run", str(path), "--quiet"], stderr=subprocess.PIPE, text=True)
    _wait_for_records(tmp_path / "runs", count=5)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    stderr = process.stderr.read()
    log_path = next((tmp_path / "runs").iterdir())
    assert f"Resume with: python -m gridsearch run --resume {log_path}" in stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn record would warn
        interrupted = gridsearch.read_log(log_path)
    assert 5 <= len(interrupted) < SLOW_FITS
    resumed = subprocess.run([sys.executable, "-m", "gridsearch", "run", "--resume", str(log_path), "--quiet"],
                             capture_output=True, text=True, check=False, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    log = gridsearch.read_log(log_path)
    assert len(log) == SLOW_FITS and not log.duplicated(["candidate_id", "fold"]).any() and set(log["status"]) == {"ok"}


def test_error_score_raise_stops_the_search_with_the_candidate_and_traceback(write_config):
    grids = [{"model__alpha": [1.0]}, {"model": ["sklearn.linear_model.LogisticRegression"]}]
    path = write_config(search={"params": grids, "error_score": "raise"})
    with pytest.raises(gridsearch.CandidateFailed, match=r"candidate \w+ \{\"model\": \"sklearn.linear_model.LogisticRegression\"\} failed on fold \d: ValueError"):
        gridsearch.run(path, progress=False)
    done = subprocess.run([sys.executable, "-m", "gridsearch", "run", str(path), "--quiet"], capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: candidate ")


def test_numeric_error_score_is_the_failed_score(write_config):
    grids = [{"model__alpha": [1.0]}, {"model": ["sklearn.linear_model.LogisticRegression"]}]
    result = gridsearch.run(write_config(search={"params": grids, "error_score": -1000}), progress=False)
    failed = result.cv_results[result.cv_results["n_errors"] > 0]
    assert (failed["mean_test_r2"] == -1000).all() and (failed["rank_test_r2"] == 2).all()


@pytest.mark.parametrize("value", ["rise", [1]])
def test_bad_error_score_is_a_config_error(config_file, value):
    with pytest.raises(gridsearch.ConfigError, match=r"search.error_score: expected 'raise', 'nan' or a number"):
        gridsearch.load_config(config_file(search={"params": {"model__alpha": [1.0]}, "error_score": value}))


def _kill_a_worker_during(run: Callable[[], gridsearch.SearchResult], kill: Callable[[], int]) -> gridsearch.SearchResult:
    """``run()`` in a thread while ``kill()`` (returning the records on disk just after its kill) runs here.

    Fails unless the kill landed mid-search: fewer than every fit recorded by then.
    """
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    try:
        recorded = kill()
    finally:
        thread.join(timeout=300)
    if "error" in outcome:
        raise outcome["error"]
    assert recorded < SLOW_FITS, f"the search had recorded all {recorded} fits before the kill; it tested nothing"
    return outcome["result"]


def test_search_survives_a_local_cluster_worker_killed_mid_search(write_config, tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
        path = write_config(search={"params": SLOW_GRID}, cluster={"address": cluster.scheduler_address})
        victim = next(iter(client.run(os.getpid).values()))

        def kill() -> int:
            _wait_for_records(tmp_path / "runs", count=10)
            os.kill(victim, signal.SIGKILL)
            return _records_on_disk(tmp_path / "runs")

        result = _kill_a_worker_during(lambda: gridsearch.run(path, progress=False), kill)
    _assert_complete(result)


def test_search_survives_a_real_dask_worker_process_killed(write_config, tmp_path, real_cluster):
    path = write_config(search={"params": SLOW_GRID}, cluster={"address": real_cluster.address})

    def kill() -> int:
        _wait_for_records(tmp_path / "runs", count=10)
        real_cluster.workers[0].kill()
        return _records_on_disk(tmp_path / "runs")

    result = _kill_a_worker_during(lambda: gridsearch.run(path, progress=False), kill)
    _assert_complete(result)
    log = gridsearch.read_log(result.log_path)
    assert np.isfinite(log["test_r2"]).all()


def test_a_changed_config_starts_a_new_search_and_says_what_changed(write_config, capsys):
    one = {"params": {"model__alpha": [1.0]}}  # the messages depend on the scope, not on the space
    path = write_config(search=one)
    first = gridsearch.run(path, progress=True)
    assert f"new search {first.search_id}, logging to {first.log_path}" in capsys.readouterr().out
    gridsearch.run(path, progress=True)
    assert f"resuming search {first.search_id}: 3 fits already in {first.log_path}" in capsys.readouterr().out
    path = write_config(data={"source": "synthetic-taxifare", "rows": 1400, "seed": 1}, search=one)
    changed = gridsearch.run(path, progress=True)
    assert (f"new search {changed.search_id}: data changed since search {first.search_id} from the same config, "
            "whose log stays as it was") in capsys.readouterr().out
