"""The default search through real `dask scheduler` / `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import gridsearch

REPO = Path(__file__).resolve().parents[2]
DASK = str(Path(sys.executable).with_name("dask"))


@pytest.fixture
def scheduler_address(tmp_path: Path) -> Iterator[str]:
    """A scheduler and two single-threaded workers, each worker in its own directory."""
    scheduler_file = tmp_path / "scheduler.json"
    processes = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(scheduler_file)], cwd=tmp_path, stderr=subprocess.DEVNULL)]
    try:
        _wait_for(scheduler_file.exists, "scheduler file")
        address = json.loads(scheduler_file.read_text())["address"]
        for name in ("worker-a", "worker-b"):
            workdir = tmp_path / name
            workdir.mkdir()
            processes.append(subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                                               "--no-dashboard", "--name", name, "--local-directory", str(workdir)],
                                              cwd=workdir, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout="20s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def _wait_for(condition, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {seconds} s")
        time.sleep(0.1)


def test_default_search_on_real_processes_equals_local_cluster(scheduler_address, tmp_path):
    config = REPO / "conf" / "search.yaml"
    small = {"data.rows": 3000}
    remote = subprocess.run(
        [sys.executable, "-m", "gridsearch", "run", str(config), "--scheduler", scheduler_address, "--quiet",
         "--set", "data.rows=3000", "--set", f"log={tmp_path / 'remote'}"],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=600,
    )
    assert remote.returncode == 0, remote.stderr
    local = gridsearch.run(config, progress=False, log=str(tmp_path / "local"), cluster={"workers": 2}, **small)
    remote_log = gridsearch.read_log(tmp_path / "remote" / local.search_id)
    assert len(remote_log) == local.n_fits == 1000
    assert set(remote_log["worker"].str.rsplit(":", n=1).str[0]) == {"tcp://127.0.0.1"}
    assert remote_log["worker"].nunique() == 2
    merged = remote_log.merge(gridsearch.read_log(local.log_path), on=["candidate_id", "fold"], suffixes=("_remote", "_local"))
    assert len(merged) == 1000
    np.testing.assert_allclose(merged["test_r2_remote"], merged["test_r2_local"], rtol=0, atol=1e-12)
