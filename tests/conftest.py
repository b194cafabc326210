"""Shared fixtures: one real LocalCluster per test session, and search configs on disk."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

# The fixtures' searches have ~1 000 rows, whose raw stages are too cheap for the memo's cost rule
# to store: the suite memoises every stage (workers and CLI subprocesses inherit this), and the
# cost rule is tested on its own (tests/kampai/test_cache.py).
os.environ.setdefault("KAMPAI_MEMO", "always")
SHARED_DATA = Path(os.environ.get("KAMPAI_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BASE_CONFIG: dict[str, Any] = {
    "data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": 1500, "seed": 1},
    "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"},
    "search": {"params": {"features__geohash__encode__precision": [4, 5], "model__alpha": [0.1, 1.0, 10.0]}},
    "cv": {"folds": 3, "shuffle": True, "seed": 0},
    "scoring": ["neg_root_mean_squared_error", "r2"],
}


@pytest.fixture(scope="session")
def cluster_address() -> Iterator[str]:
    """A real two-worker LocalCluster on loopback, shared by the whole session (start: ~3 s)."""
    from distributed import LocalCluster

    from gridsearch.estimators.session import close_clients

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        yield cluster.scheduler_address
        close_clients()  # the search classes' clients of this address, before their scheduler goes


@pytest.fixture
def cli(capfd: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``cli(*args)``: ``python -m gridsearch ARGS`` in this process; its exit status, and its own stdout and stderr."""
    from gridsearch.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capfd.readouterr()  # what came before is not the command's
        status = main(list(args))
        out, err = capfd.readouterr()
        return status, out, err

    return run


@pytest.fixture(scope="module")
def client(cluster_address: str) -> Iterator[Any]:
    """A ``distributed.Client`` of the session's cluster, not set as the default one: searches get it as ``client=``."""
    from distributed import Client

    with Client(cluster_address, set_as_default=False) as connected:
        yield connected


def _config_writer(directory: Path, address: str | None) -> Callable[..., Path]:
    """``write(name="search.yaml", **sections)``: :data:`BASE_CONFIG` with sections replaced, as YAML in ``directory``."""

    def write(name: str = "search.yaml", **sections: Any) -> Path:
        config = copy.deepcopy(BASE_CONFIG)
        config.update({"cluster": {"address": address}, "log": str(directory / "runs"), "cache": {"dir": str(directory / "cache")}})
        config.update(sections)
        path = directory / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def config_writer() -> Callable[[Path, str | None], Callable[..., Path]]:
    """The writer behind :func:`write_config`, for module-scoped fixtures: ``config_writer(directory, address)``."""
    return _config_writer


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[..., Path]:
    """Write a search YAML into ``tmp_path`` for tests that only validate or prepare: no cluster is started.

    Its ``cluster.address`` is null, so running it would start a LocalCluster of its own;
    tests that run searches take :func:`write_config`.
    """
    return _config_writer(tmp_path, None)


@pytest.fixture
def write_config(tmp_path: Path, cluster_address: str) -> Callable[..., Path]:
    """Write a search YAML into ``tmp_path`` that runs on the session's LocalCluster (:func:`cluster_address`)."""
    return _config_writer(tmp_path, cluster_address)


def _shared_file(name: str) -> Path:
    """A file of the shared data directory (``../shared/data`` or ``$KAMPAI_SHARED_DATA``)."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"real sample not found: {path} (set KAMPAI_SHARED_DATA)")
    return path


@pytest.fixture
def real_sample() -> Path:
    """The first 10,000 rows of Kaggle train.csv."""
    return _shared_file("taxifare_sample.csv")


@pytest.fixture
def real_test_sample() -> Path:
    """Kaggle test.csv: 9,914 rows without fare_amount."""
    return _shared_file("taxifare_sample_b.csv")


def _scheduler_address(scheduler_file: Path) -> str | None:
    """The address a ``dask scheduler --scheduler-file`` wrote, once the whole file is there."""
    try:
        return json.loads(scheduler_file.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class RealCluster:
    """A ``dask scheduler`` and its ``dask worker`` processes (each in its own directory)."""

    address: str
    workers: list[subprocess.Popen]


@contextlib.contextmanager
def _real_cluster(directory: Path) -> Iterator[RealCluster]:
    """A real scheduler and two single-threaded worker processes on 127.0.0.1, working in ``directory``."""
    from distributed import Client

    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = directory / "scheduler.json"
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(scheduler_file)], cwd=directory, stderr=subprocess.DEVNULL)
    workers: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + 30
        while not (address := _scheduler_address(scheduler_file)):  # the file appears before its content is written
            assert time.monotonic() < deadline, "dask scheduler did not start in 30 s"
            time.sleep(0.1)
        for name in ("worker-a", "worker-b"):
            workdir = directory / name
            workdir.mkdir()
            workers.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                                             "--no-dashboard", "--name", name, "--local-directory", str(workdir)],
                                            cwd=workdir, stderr=subprocess.DEVNULL))
        with Client(address, timeout="20s") as client:
            client.wait_for_workers(2, timeout=60)
        yield RealCluster(address, workers)
    finally:
        # A worker's nanny exits at once on SIGINT (~8 s after SIGTERM). Workers first: with the scheduler
        # closing at the same time, their goodbyes wait for it and the whole stop takes ~8 s instead of ~1 s.
        for process in workers:
            process.send_signal(signal.SIGINT)
        for process in workers:
            process.wait(timeout=30)
        scheduler.send_signal(signal.SIGINT)
        scheduler.wait(timeout=30)


@pytest.fixture
def real_cluster(tmp_path: Path) -> Iterator[RealCluster]:
    """A real scheduler and two single-threaded worker processes on 127.0.0.1, in ``tmp_path``, for one test."""
    with _real_cluster(tmp_path) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def module_real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    """:func:`real_cluster` shared by the tests of one module (start: ~5 s); each test leaves its two workers running."""
    with _real_cluster(tmp_path_factory.mktemp("real-cluster")) as cluster:
        yield cluster
