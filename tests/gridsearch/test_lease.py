"""The lease of a search's log: one run of the same candidates at a time, free again when its holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from gridsearch.errors import GridsearchError
from gridsearch.log.lease import LEASE_PREFIX, search_lease

HOLD = """
import sys, time
from pathlib import Path
from gridsearch.log.lease import search_lease
with search_lease(Path(sys.argv[1]), "work"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_holder_of_the_same_work_is_refused_with_the_first_ones_process(tmp_path):
    log = tmp_path / "runs" / "abc"
    with search_lease(log, "work"):
        running = rf"^{log}: the same search is already running \(process {os.getpid()} on .+ since .+\); wait"
        with pytest.raises(GridsearchError, match=running), search_lease(log, "work"):
            pass
        with search_lease(log, "other work"):  # other candidates on the same log run side by side
            assert sorted(path.name for path in log.iterdir()) == [f"{LEASE_PREFIX}other work", f"{LEASE_PREFIX}work"]
    with search_lease(log, "work"):  # released
        pass


def test_a_lease_leaves_no_empty_log_and_keeps_what_was_written(tmp_path):
    log = tmp_path / "runs" / "abc"
    with search_lease(log, "work"):
        assert log.is_dir()
    assert not (tmp_path / "runs").exists()
    with search_lease(log, "work"):
        (log / "part-1.arrows").write_bytes(b"x")
    assert [path.name for path in log.iterdir()] == ["part-1.arrows"]


def test_the_lease_of_a_killed_holder_is_free(tmp_path):
    log = tmp_path / "abc"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(log)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(GridsearchError, match=rf"process {holder.pid} on "), search_lease(log, "work"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (log / f"{LEASE_PREFIX}work").exists()  # a SIGKILL leaves the file, not the lock
    with search_lease(log, "work"):  # taken at once: the kernel released the dead holder's lock
        pass
