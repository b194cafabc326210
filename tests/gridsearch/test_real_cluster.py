"""The default search through real `dask scheduler` / `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import gridsearch

REPO = Path(__file__).resolve().parents[2]


def test_default_search_on_real_processes_equals_local_cluster(real_cluster, tmp_path):
    scheduler_address = real_cluster.address
    config = REPO / "conf" / "search.yaml"
    small = {"data.rows": 3000}
    remote = subprocess.run(
        [sys.executable, "-m", "gridsearch", "run", str(config), "--scheduler", scheduler_address, "--quiet",
         "--set", "data.rows=3000", "--set", f"log={tmp_path / 'remote'}"],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=600,
    )
    assert remote.returncode == 0, remote.stderr
    local = gridsearch.run(config, progress=False, log=str(tmp_path / "local"), cache={"dir": None},
                           cluster={"workers": 2, "dashboard": None}, **small)
    remote_log = gridsearch.read_log(tmp_path / "remote" / local.search_id)
    assert len(remote_log) == local.n_fits == 1000
    assert set(remote_log["worker"].str.rsplit(":", n=1).str[0]) == {"tcp://127.0.0.1"}
    assert remote_log["worker"].nunique() == 2
    merged = remote_log.merge(gridsearch.read_log(local.log_path), on=["candidate_id", "fold"], suffixes=("_remote", "_local"))
    assert len(merged) == 1000
    np.testing.assert_allclose(merged["test_r2_remote"], merged["test_r2_local"], rtol=0, atol=1e-12)
