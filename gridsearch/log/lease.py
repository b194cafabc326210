"""One run at a time per search: a lease in the log directory, released when its holder dies.

Two runs of the same search (same log, same candidates) would do every fit twice; the second
is refused while the first holds the lease. Runs of other candidates on the same log (another
``search.params`` over the same data, pipeline and folds) write their own parts side by
side, as before. The lease is an ``flock`` on a small file: the kernel releases it when its
process ends, however it ends (``SIGKILL`` included), so a stale lease never blocks a resume.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from gridsearch.errors import GridsearchError

LEASE_PREFIX = ".running-"


@contextlib.contextmanager
def search_lease(log_path: Path, work_id: str) -> Iterator[None]:
    """Hold the lease of the work ``work_id`` on the log ``log_path`` while the block runs.

    Raises
    ------
    GridsearchError
        When another live run holds it, naming its process, host and start time.
    """
    made = [directory for directory in (log_path, *log_path.parents) if not directory.exists()]
    log_path.mkdir(parents=True, exist_ok=True)
    path = log_path / f"{LEASE_PREFIX}{work_id}"
    handle = _acquire(path, log_path)
    try:
        handle.truncate(0)
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat(timespec="seconds")}))
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked: a newcomer then makes a file of its own
        handle.close()
        for directory in made:  # each only if empty: a search that wrote nothing leaves no empty log behind
            with contextlib.suppress(OSError):
                directory.rmdir()


def _acquire(path: Path, log_path: Path) -> IO[str]:
    """The lease file, open and locked; it is the one at ``path`` (not one a finishing holder just removed)."""
    while True:
        handle = open(path, "a+")  # noqa: SIM115 - held until the lease ends
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder(handle.read())
            handle.close()
            raise GridsearchError(f"{log_path}: the same search is already running ({holder}); "
                                  "wait for it to end, or stop it: a later run resumes what it leaves") from None
        if path.exists() and os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
            return handle
        handle.close()  # the holder removed it as we opened it: take the new one


def _holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"process {holder['pid']} on {holder['host']} since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "by a run that is starting"
