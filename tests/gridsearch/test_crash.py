"""Nothing lost: a search killed with SIGKILL at random points resumes to exactly one record per fit.

Searches run as real ``python -m gridsearch run`` processes against the session's LocalCluster.
Each is killed when the records on disk reach a seeded random count, so every kill lands
mid-search whatever the machine's speed; the log is checked after every kill (still loadable,
nothing lost or duplicated) and after the rerun that completes it (every (candidate, fold)
exactly once, status ok).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from gridsearch.log.records import PART_GLOB
from gridsearch.log.runlog import read_log

REPO = Path(__file__).resolve().parents[2]
# 3 x 100 candidates x 3 folds = 900 small fits; every kill lands before the last KILL_MARGIN of them,
# more than a run writes between two polls of the log (a fit batch holds up to ~100 of these fits).
CRASH_SPACE = {"features__geohash__encode__precision": [4, 5, 6], "model__alpha": {"logspace": [-3, 3, 100]}}
N_FITS = 3 * 100 * 3
KILL_MARGIN = 300
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


def _parts(log: Path | None) -> tuple[tuple[str, int], ...]:
    """Names and sizes of the log's parts: what changes when records are written."""
    return tuple(sorted((part.name, part.stat().st_size) for part in log.glob(PART_GLOB))) if log is not None else ()


def _wait_for_records(process: subprocess.Popen[str], runs: Path, at_least: int, timeout: float = 120) -> None:
    """Poll the log until it holds ``at_least`` records; fail if the search ends first.

    The log is read again only when a part grew (reading 900 records takes ~30 ms of the
    two cores the search runs on).
    """
    deadline = time.monotonic() + timeout
    parts, count = None, 0
    while count < at_least:
        assert process.poll() is None, f"search ended before it was killed: {process.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"fewer than {at_least} records after {timeout} s"
        log = _log_dir(runs)
        if _parts(log) != parts:
            parts, count = _parts(log), _records_on_disk(log)
        else:
            time.sleep(0.01)


def _kill_target(rng: random.Random, seen: int, kills_left: int) -> int:
    """A record count to kill at: after this run's first record, leaving room for the kills still to come."""
    return rng.randint(seen + 1, seen + max(1, (N_FITS - KILL_MARGIN - seen) // kills_left))


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
    for index, seed in enumerate(KILL_SEEDS):
        target = _kill_target(random.Random(seed), seen, len(KILL_SEEDS) - index)
        process = _start(config)
        try:
            # Records beyond `seen` are this run's: it has connected, resumed and is computing.
            _wait_for_records(process, runs, at_least=target)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.communicate()
        records = _load_after_crash(_log_dir(runs))
        assert not records.duplicated(["candidate_id", "fold"]).any(), f"seed {seed}: a fit was recorded twice"
        assert target <= len(records) < N_FITS, f"seed {seed}: {len(records)} records after the kill at {target} of {N_FITS}"
        seen = len(records)
    _finish(config)
    _assert_exactly_once(_load_after_crash(_log_dir(runs)), N_FITS)


def test_concurrent_searches_of_other_candidates_write_separate_parts_of_one_log(write_config, tmp_path):
    # Same pipeline, data, cv and scoring: one search id, so one log directory for both.
    alphas = ({"logspace": [-3, 0, 40]}, {"logspace": [0.5, 3, 40]})
    configs = [write_config(f"{name}.yaml", search={"params": {"features__geohash__encode__precision": [4, 5], "model__alpha": alpha}})
               for name, alpha in zip("ab", alphas)]
    processes = [_start(config) for config in configs]
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
    assert [len(part) for part in per_part] == [n_fits, n_fits]
    _assert_exactly_once(records, 2 * n_fits)


def test_the_same_search_started_twice_is_refused_while_the_first_runs(write_config, tmp_path, cli):
    """The second run is this process (no interpreter to start), so it is refused while the first still writes."""
    config = write_config(search={"params": CRASH_SPACE})
    first = _start(config)
    try:
        _wait_for_records(first, tmp_path / "runs", at_least=1)  # it holds the lease: it is writing
        status, out, err = cli("run", str(config), "--quiet")
        assert first.poll() is None, "the first run ended before the second was refused: make CRASH_SPACE larger"
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    log = _log_dir(tmp_path / "runs")
    assert status == 2 and out == ""
    assert re.fullmatch(rf"error: {re.escape(str(log))}: the same search is already running \(process {first.pid} on "
                        rf"{re.escape(os.uname().nodename)} since [0-9T:+-]+\); wait for it to end, or stop it: "
                        r"a later run resumes what it leaves\n", err), err
    assert len(list(log.glob(PART_GLOB))) == 1  # the refused run wrote nothing
    _finish(config)  # the lease of the stopped run is free again
    _assert_exactly_once(_load_after_crash(log), N_FITS)


def _only(part: Path, directory: Path) -> Path:
    """A log directory holding just ``part`` (a hard link), to read one part on its own."""
    directory.mkdir()
    os.link(part, directory / part.name)
    return directory
