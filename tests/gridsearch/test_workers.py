"""Remote workers: same code or a refusal, the user's own modules shipped, data read or sent."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from distributed import Client

import gridsearch
from gridsearch.execute.workers import environment

REPO = Path(__file__).resolve().parents[2]


def test_a_worker_running_other_code_is_refused_before_any_work(write_config, real_cluster, tmp_path):
    other = tmp_path / "other-install"
    for package in ("kampai", "gridsearch"):
        shutil.copytree(REPO / package, other / package, ignore=shutil.ignore_patterns("__pycache__"))
    (other / "kampai" / "data.py").write_text((other / "kampai" / "data.py").read_text() + "\n# edited\n")
    dask = str(Path(sys.executable).with_name("dask"))
    workdir = tmp_path / "worker-other"
    workdir.mkdir()
    worker = subprocess.Popen([dask, "worker", real_cluster.address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                               "--name", "other", "--local-directory", str(workdir)], cwd=workdir, stderr=subprocess.DEVNULL,
                              env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(other)})
    try:
        with Client(real_cluster.address, timeout="20s") as client:
            client.wait_for_workers(3, timeout=60)
            other_worker = [w for w, info in client.scheduler_info()["workers"].items() if info["name"] == "other"]
            assert client.run(environment, workers=other_worker)[other_worker[0]] != environment()
        path = write_config(cluster={"address": real_cluster.address})
        with pytest.raises(gridsearch.GridsearchError, match=r"worker tcp://127.0.0.1:\d+ runs kampai-gridsearch 0.1.0 \(source \w+\), this client"):
            gridsearch.run(path, progress=False)
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("part-*"))
    finally:
        worker.send_signal(signal.SIGINT)  # a nanny exits at once on SIGINT
        worker.wait(timeout=30)


def test_user_module_unknown_to_the_workers_is_shipped(write_config, real_cluster, tmp_path, monkeypatch):
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
    path = write_config(pipeline={"factory": "my_taxi_model:pipeline"}, cluster={"address": real_cluster.address},
                        search={"params": {"double__factor": [1.0, 3.0], "model__alpha": [0.1, 1.0]}})
    def importable() -> list[bool]:
        with Client(real_cluster.address, timeout="20s") as client:
            return list(client.run(lambda: __import__("importlib").util.find_spec("my_taxi_model") is not None).values())

    assert importable() == [False, False]
    result = gridsearch.run(path, progress=False)
    assert result.n_errors == 0 and len(result.cv_results) == 4
    assert importable() == [True, True]


def test_workers_can_read_the_data_themselves_or_get_it_from_the_client(write_config, real_cluster, tmp_path):
    data = tmp_path / "trips.parquet"
    from kampai.data import synthetic_taxifare

    synthetic_taxifare(1500, seed=1).to_parquet(data)
    scores = []
    for mode in ("read", "ship"):
        path = write_config(name=f"{mode}.yaml", data={"source": str(data), "target": "fare_amount", "workers": mode},
                            cluster={"address": real_cluster.address}, log=str(tmp_path / mode))
        scores.append(gridsearch.run(path, progress=False).cv_results["mean_test_r2"].to_numpy())
    np.testing.assert_array_equal(scores[0], scores[1])


def test_bad_data_workers_mode_is_a_config_error(write_config):
    with pytest.raises(gridsearch.ConfigError, match=r"data.workers: expected 'ship' .* found 'copy' \(not one of auto, ship, read\)"):
        gridsearch.load_config(write_config(data={"source": "synthetic-taxifare", "workers": "copy"}))
