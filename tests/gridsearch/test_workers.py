"""Remote workers: same code or a refusal, the user's own modules shipped, data read or sent."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client

import gridsearch
from gridsearch.execute.engine import search_work
from gridsearch.execute.executor import execute
from gridsearch.execute.workers import environment
from gridsearch.log.records import FitRecord, Status
from kampai.data import load_dataset, synthetic_taxifare

REPO = Path(__file__).resolve().parents[2]


def test_a_worker_running_other_code_is_refused_before_any_work(write_config, module_real_cluster, tmp_path):
    other = tmp_path / "other-install"
    for package in ("kampai", "gridsearch"):
        shutil.copytree(REPO / package, other / package, ignore=shutil.ignore_patterns("__pycache__"))
    (other / "kampai" / "data.py").write_text((other / "kampai" / "data.py").read_text() + "\n# edited\n")
    dask = str(Path(sys.executable).with_name("dask"))
    workdir = tmp_path / "worker-other"
    workdir.mkdir()
    worker = subprocess.Popen([dask, "worker", module_real_cluster.address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                               "--name", "other", "--local-directory", str(workdir)], cwd=workdir, stderr=subprocess.DEVNULL,
                              env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(other)})
    try:
        with Client(module_real_cluster.address, timeout="20s") as client:
            client.wait_for_workers(3, timeout=60)
            other_worker = [w for w, info in client.scheduler_info()["workers"].items() if info["name"] == "other"]
            assert client.run(environment, workers=other_worker)[other_worker[0]] != environment()
        path = write_config(cluster={"address": module_real_cluster.address})
        with pytest.raises(gridsearch.GridsearchError, match=r"worker tcp://127.0.0.1:\d+ runs kampai-gridsearch 0.1.0 \(source \w+\), this client"):
            gridsearch.run(path, progress=False)
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("part-*"))
    finally:
        worker.send_signal(signal.SIGINT)  # a nanny exits at once on SIGINT
        worker.wait(timeout=30)
        _wait_for_workers(module_real_cluster.address, 2)  # the shared cluster as it was


def _wait_for_workers(address: str, count: int, seconds: float = 30) -> None:
    """Until the scheduler at ``address`` has exactly ``count`` workers."""
    deadline = time.monotonic() + seconds
    with Client(address, timeout="20s") as client:
        while len(client.scheduler_info()["workers"]) != count:
            assert time.monotonic() < deadline, f"the scheduler still has {len(client.scheduler_info()['workers'])} workers"
            time.sleep(0.1)


def test_user_module_unknown_to_the_workers_is_shipped(write_config, module_real_cluster, tmp_path, monkeypatch):
    code = tmp_path / "user_code"
    code.mkdir()
    (code / "my_taxi_model.py").write_text(textwrap.dedent('''
        from sklearn.base import BaseEstimator, TransformerMixin
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import Pipeline

        from kampai.pipeline import taxifare_features


        class Doubler(TransformerMixin, BaseEstimator):
            def __init__(self, factor=2.0):
                self.factor = factor

            def fit(self, X, y=None):
                self.n_features_in_ = X.shape[1]
                return self

            def transform(self, X):
                return X * self.factor


        def pipeline():
            return Pipeline([("features", taxifare_features()), ("double", Doubler()), ("model", Ridge())])
    '''))
    monkeypatch.syspath_prepend(str(code))  # importable here, not on the workers
    path = write_config(pipeline={"factory": "my_taxi_model:pipeline"}, cluster={"address": module_real_cluster.address},
                        search={"params": {"double__factor": [1.0, 3.0], "model__alpha": [0.1, 1.0]}})
    def importable() -> list[bool]:
        with Client(module_real_cluster.address, timeout="20s") as client:
            return list(client.run(lambda: __import__("importlib").util.find_spec("my_taxi_model") is not None).values())

    assert importable() == [False, False]
    result = gridsearch.run(path, progress=False)
    assert result.n_errors == 0 and len(result.cv_results) == 4
    assert importable() == [True, True]


def _execute(address: str, search: gridsearch.PreparedSearch) -> list[FitRecord]:
    """Every fit of a prepared search, run on ``address`` by its own client; the records."""
    records: list[FitRecord] = []
    with Client(address, timeout="20s") as client:
        execute(client, search_work(search), lambda candidate_id, fold: True, records.extend)
    return records


def test_data_workers_read_makes_workers_read_the_file_and_ship_sends_the_clients_rows(write_config, cluster_address, tmp_path):
    """Where the workers' rows come from, shown without timing: the file changes between the client's load and the run.

    Both searches are prepared first (the client loads ``trips.parquet``), then the file is
    overwritten with other trips, then their plans run. With ``read`` no rows leave the client
    (``inputs.frame`` is None), so the workers read the changed file and refuse it: its
    fingerprint is not the client's. With ``ship`` the client's rows travel in the ``data-…``
    task, so every fit succeeds on them although the file changed. If ``data.workers`` were
    ignored, both modes would do the same and one of the two checks would fail.
    """
    data = tmp_path / "trips.parquet"
    synthetic_taxifare(1500, seed=1).to_parquet(data)
    # Other cv seeds, so other search ids and task keys: the scheduler may not have forgotten the first run's erred tasks.
    searches = {mode: gridsearch.prepare_search(write_config(f"{mode}.yaml", data={"source": str(data), "target": "fare_amount", "workers": mode},
                                                             cv={"folds": 3, "shuffle": True, "seed": seed}))
                for mode, seed in (("read", 0), ("ship", 1))}
    assert searches["read"].search_id != searches["ship"].search_id
    assert searches["read"].inputs.frame is None and search_work(searches["read"]).rows.args[1] is None  # rebuild(spec, frame)
    pd.testing.assert_frame_equal(search_work(searches["ship"]).rows.args[1], load_dataset(str(data)))
    expected = searches["read"].inputs.data_fingerprint
    assert searches["ship"].inputs.data_fingerprint == expected

    synthetic_taxifare(1500, seed=2).to_parquet(data)
    with pytest.raises(gridsearch.GridsearchError, match=rf"data on a worker differs from the client's \(fingerprint \w+, expected {expected}\): "
                                                         rf"{re.escape(str(data))} changed"):
        _execute(cluster_address, searches["read"])
    records = _execute(cluster_address, searches["ship"])
    assert len(records) == searches["ship"].plan.n_fits == 18
    assert {record.status for record in records} == {Status.OK}


def test_bad_data_workers_mode_is_a_config_error(config_file):
    with pytest.raises(gridsearch.ConfigError, match=r"data.workers: expected 'ship' .* found 'copy' \(not one of auto, ship, read\)"):
        gridsearch.load_config(config_file(data={"source": "synthetic-taxifare", "workers": "copy"}))
