"""The docker-compose topology with real processes: what ``docker compose up`` starts, minus Docker.

A ``dask scheduler``, two ``dask worker`` processes, each in its own working directory (the
``real_cluster`` fixture), and an ``mlflow server`` with a SQLite store and proxied artifacts,
all on 127.0.0.1. The client runs the default search on that scheduler twice (``--scheduler``,
then ``cluster.address`` from Python), from one directory whose ``cache/`` (the config's
``cache.dir``) the workers share by its absolute path, as the compose workers share the mounted
one; the scores equal those of a run on the ``LocalCluster`` the search starts itself (no
``cluster.address``, as ``make run`` does), and the winner is promoted to the server.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import gridsearch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "conf" / "search.yaml"
ROWS = 3000  # the default search (1 000 fits) on fewer rows, to keep the test near a minute
SUMMARY = re.compile(r"^(\d+) fits; raw stages: (\d+) computed, (\d+) from the memo$", re.MULTILINE)
SCORES = ["test_neg_root_mean_squared_error", "test_r2"]
# Two of the default grids, as conf/search.yaml spells them (the same candidates and ids): every precision, 38 candidates.
SECOND_SPACE = [
    {"features__geohash__encode__precision": [4], "model": ["sklearn.linear_model.Ridge"], "model__alpha": {"logspace": [-3, 3, 30]},
     "model__fit_intercept": [True]},
    {"features__geohash__encode__precision": [5, 6], "model": ["sklearn.linear_model.ElasticNet"], "model__alpha": [0.01, 0.1],
     "model__l1_ratio": [0.2, 0.8]},
]


@dataclass
class MlflowServer:
    """An ``mlflow server`` process: its URI, its artifact store and its output."""

    uri: str
    process: subprocess.Popen
    artifacts: Path
    log: Path

    def wait_ready(self, timeout: float = 90) -> None:
        """Poll ``/health`` (what the compose healthcheck asks) until it answers, at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"mlflow server exited:\n{self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"mlflow server not ready in {timeout} s:\n{self.log.read_text()[-3000:]}"
            time.sleep(0.25)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    """``mlflow server`` on 127.0.0.1, started but not waited for (it loads while the cluster starts)."""
    root = tmp_path / "mlflow"
    root.mkdir()
    port = _free_port()
    log = root / "server.log"
    with log.open("w") as output:
        # Its own session: the server runs uvicorn as a child process, and the group ends together.
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
            cwd=root, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # as in docker-compose.yml
        )
    try:
        yield MlflowServer(f"http://127.0.0.1:{port}", process, root / "artifacts", log)
    finally:
        _end_group(process)


def _end_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group the fixture started (the server and its uvicorn); SIGKILL what is left after 20 s."""
    for sig, seconds in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        deadline = time.monotonic() + seconds
        try:
            os.killpg(process.pid, sig)
            while time.monotonic() < deadline:
                process.poll()  # reap the leader; the group is gone when no member is left to signal
                os.killpg(process.pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            return


def _search_through_cli(scheduler: str, client_dir: Path) -> tuple[int, int, Path]:
    """``gridsearch run conf/search.yaml --scheduler ...`` from ``client_dir``: (stages computed, from the memo, run log)."""
    done = subprocess.run([sys.executable, "-m", "gridsearch", "run", str(CONFIG), "--scheduler", scheduler, "--set", f"data.rows={ROWS}"],
                          cwd=client_dir, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = SUMMARY.search(done.stdout)
    assert summary, done.stdout
    assert int(summary.group(1)) == 1000
    return int(summary.group(2)), int(summary.group(3)), client_dir / re.search(r"^run log: (.+)$", done.stdout, re.MULTILINE).group(1)


def _same_scores(log_a: Path, log_b: Path, n_fits: int = 1000) -> None:
    merged = gridsearch.read_log(log_a).merge(gridsearch.read_log(log_b), on=["candidate_id", "fold"], suffixes=("_a", "_b"))
    assert len(merged) == n_fits
    assert (merged["status_a"] == "ok").all() and (merged["status_b"] == "ok").all()
    for score in SCORES:
        np.testing.assert_allclose(merged[f"{score}_a"], merged[f"{score}_b"], rtol=0, atol=1e-12)


def test_search_shares_the_memo_across_workers_and_promotes_to_the_server(mlflow_server, real_cluster, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from gridsearch.registry.promote import promote

    client_dir = tmp_path / "client"
    client_dir.mkdir()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    # What a user types, from the directory whose cache/ (the config's cache.dir) the workers share.
    computed, from_memo, first = _search_through_cli(real_cluster.address, client_dir)
    assert computed > 0 and from_memo == 0
    workers = gridsearch.read_log(first)["worker"]
    assert workers.nunique() == 2 and workers.str.startswith("tcp://127.0.0.1:").all()
    # The workers wrote the memo in the client's cache/ (sent as an absolute path), none in their own directories.
    assert any((client_dir / "cache").rglob("output.pkl"))
    assert not [p for name in ("worker-a", "worker-b") for p in (tmp_path / name).rglob("*") if p.name in {"cache", "joblib"}]

    # A second search from the same config and directory (a new log, so every fit runs again) loads every raw stage.
    # Part of the space is enough: its candidates still need every geohash precision, so every raw stage.
    monkeypatch.chdir(client_dir)
    second = gridsearch.run(CONFIG, progress=False, log="runs-second", cluster={"address": real_cluster.address},
                            search={"params": SECOND_SPACE}, **{"data.rows": ROWS})
    assert second.n_fits == (30 + 8) * 5
    assert (second.stages_computed, second.stages_from_memo) == (0, computed)

    # No cluster.address: the search starts its own loopback LocalCluster of cluster.workers processes.
    local = gridsearch.run(CONFIG, progress=False, log=str(tmp_path / "local"), cluster={"address": None, "workers": 2, "dashboard": None},
                           **{"data.rows": ROWS, "cache.dir": None})
    assert first.name == second.search_id == local.search_id and local.n_fits == 1000
    local_workers = gridsearch.read_log(local.log_path)["worker"]
    assert local_workers.nunique() == 2 and local_workers.str.startswith("tcp://127.0.0.1:").all()
    assert not set(local_workers) & set(workers)
    _same_scores(first, local.log_path)
    _same_scores(client_dir / second.log_path, local.log_path, second.n_fits)

    mlflow_server.wait_ready()
    [promoted] = promote(first, top=1, tracking_uri=mlflow_server.uri)
    assert (promoted.candidate_id, promoted.alias, promoted.created) == (local.best_candidate_id, "champion", True)
    registry = MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
    champion = registry.get_model_version_by_alias("taxifare", "champion")
    run = registry.get_run(champion.run_id)
    assert run.data.tags["gridsearch.candidate_id"] == local.best_candidate_id
    assert run.data.metrics["mean_test_neg_root_mean_squared_error"] == pytest.approx(local.best_score, abs=1e-9)
    assert any(mlflow_server.artifacts.rglob("MLmodel"))  # the model went through the server to its artifact store
