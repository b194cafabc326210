"""Nothing lost: a search killed with SIGKILL at random points resumes to exactly one record per fit.

Searches run as real ``python -m gridsearch run`` processes against the session's LocalCluster;
the log is checked after every kill (still loadable, nothing duplicated) and after the rerun
that completes it (every (candidate, fold) exactly once, status ok).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from gridsearch.log.records import PART_GLOB
from gridsearch.log.runlog import read_log

REPO = Path(__file__).resolve().parents[2]
# 3 x 200 candidates x 3 folds = 1 800 small fits: enough that the kills land mid-search.
CRASH_SPACE = {"features__geohash__encode__precision": [4, 5, 6], "model__alpha": {"logspace": [-3, 3, 200]}}
N_FITS = 3 * 200 * 3
KILL_SEEDS = [0, 1, 2, 3, 4]


def _start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gridsearch", "run", str(config), "--quiet"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(config: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "gridsearch", "run", str(config), "--quiet"], cwd=REPO,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr


def _log_dir(runs: Path) -> Path | None:
    logs = [d for d in runs.glob("*") if d.is_dir()] if runs.is_dir() else []
    assert len(logs) <= 1, logs
    return logs[0] if logs else None


def _records_on_disk(log: Path | None) -> int:
    """Records readable now, torn tails (a write in progress) skipped silently."""
    if log is None or not any(log.glob(PART_GLOB)):
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return len(read_log(log))


def _wait_for_records(process: subprocess.Popen[str], runs: Path, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _records_on_disk(_log_dir(runs)) < at_least:
        assert process.poll() is None, f"search ended before it was killed: {process.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "no new record appeared in time"
        time.sleep(0.05)


def _load_after_crash(log: Path) -> pd.DataFrame:
    """The log as the next run reads it: a torn last message is the only tolerated damage."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = read_log(log)
    for warning in caught:
        assert "partial record" in str(warning.message) or "no complete record" in str(warning.message), warning.message
    return records


def _assert_exactly_once(records: pd.DataFrame, n_fits: int) -> None:
    counts = records.groupby(["candidate_id", "fold"]).size()
    assert len(counts) == n_fits, f"{n_fits - len(counts)} (candidate, fold) pairs lost"
    assert (counts == 1).all(), f"{int((counts > 1).sum())} pairs recorded more than once"
    assert set(records["status"]) == {"ok"}, records["status"].value_counts().to_dict()


def test_killed_searches_resume_to_one_record_per_fit(write_config, tmp_path):
    config = write_config(search={"params": CRASH_SPACE})
    runs = tmp_path / "runs"
    seen = 0
    for seed in KILL_SEEDS:
        rng = random.Random(seed)
        process = _start(config)
        try:
            # The next record to appear is this run's first: it has connected and is computing.
            _wait_for_records(process, runs, at_least=seen + 1)
            time.sleep(rng.uniform(0.0, 0.8))
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.communicate()
        records = _load_after_crash(_log_dir(runs))
        assert not records.duplicated(["candidate_id", "fold"]).any(), f"seed {seed}: a fit was recorded twice"
        assert len(records) >= seen, f"seed {seed}: records disappeared"
        seen = len(records)
        if seen == N_FITS:
            break
    assert seen < N_FITS, "every run finished before its kill; the kills tested nothing (make CRASH_SPACE larger)"
    _finish(config)
    _assert_exactly_once(_load_after_crash(_log_dir(runs)), N_FITS)


@pytest.mark.parametrize("same_config", [False, True], ids=["two-configs", "same-config-twice"])
def test_concurrent_searches_write_separate_parts_of_one_log(write_config, tmp_path, same_config):
    # Same pipeline, data, cv and scoring: one search id, so one log directory for both.
    alphas = ({"logspace": [-3, 0, 40]}, {"logspace": [0.5, 3, 40]})
    first = write_config("a.yaml", search={"params": {"features__geohash__encode__precision": [4, 5], "model__alpha": alphas[0]}})
    second = first if same_config else write_config(
        "b.yaml", search={"params": {"features__geohash__encode__precision": [4, 5], "model__alpha": alphas[1]}})
    processes = [_start(first), _start(second)]
    for process in processes:
        _, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr
    log = _log_dir(tmp_path / "runs")
    parts = sorted(log.glob(PART_GLOB))
    assert len(parts) == 2, f"the two runs did not overlap: {parts}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn or interleaved message anywhere would warn
        per_part = [read_log(_only(part, tmp_path / f"part{i}")) for i, part in enumerate(parts)]
        records = read_log(log)
    n_fits = 2 * 40 * 3
    for part in per_part:
        assert not part.duplicated(["candidate_id", "fold"]).any()
        assert set(part["status"]) == {"ok"} and part["worker"].notna().all() and part["params"].notna().all()
    assert len(records) == sum(map(len, per_part))
    if same_config:
        # The run that started second skips what the first had recorded by then; the rest both compute.
        _assert_exactly_once(records.drop_duplicates(["candidate_id", "fold"]), n_fits)
        scores = records.groupby(["candidate_id", "fold"])["test_r2"].nunique()
        assert (scores == 1).all(), "the same fit scored differently in the two runs"
    else:
        assert [len(part) for part in per_part] == [n_fits, n_fits]
        _assert_exactly_once(records, 2 * n_fits)


def _only(part: Path, directory: Path) -> Path:
    """A log directory holding just ``part`` (a hard link), to read one part on its own."""
    directory.mkdir()
    os.link(part, directory / part.name)
    return directory
