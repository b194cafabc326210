"""The process a LocalCluster's workers are forked from, started early with the fit tasks' modules imported.

A spawned worker starts a new interpreter and imports scikit-learn, pandas and scipy
(~1.5 s of CPU each); multiprocessing's fork server imports them once, and each worker is a
fork of it that starts in a fraction of a second. Started as soon as the config says a local
cluster is wanted, its imports run on the other core while the client imports its own.

Light on purpose: ``python -m gridsearch run`` imports it before scikit-learn.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kampai.tracking import environment

if TYPE_CHECKING:
    from gridsearch.search.config import ClusterConfig

METHOD = "forkserver"  # distributed.worker.multiprocessing-method of the LocalCluster
TASKS_MODULE = "gridsearch.execute.tasks"  # imports what every fit task needs
PRELOAD = ("distributed", TASKS_MODULE, "gridsearch.execute.fork_server_exit")
_starting = threading.Lock()
_started = threading.Event()  # once set, later calls only make sure it runs (restarted plainly, if it died, by multiprocessing)


def warm_up(cluster: ClusterConfig) -> None:
    """Start the fork server now if ``cluster`` is a local one (no address): its imports then overlap the caller's."""
    if not cluster.address:
        start_worker_server()


def start_worker_server() -> None:
    """Start the fork server now (once per process; later calls only check it runs): its imports overlap the caller's.

    From the main thread it starts with SIGINT ignored, which every worker forked from it
    keeps: Ctrl-C reaches every process of the terminal's group, and the client alone handles
    it (it cancels the workers' tasks), so workers must not print tracebacks of their own.
    It starts with the environment Dask sets for the workers it spawns
    (``distributed.nanny.pre-spawn-environ``: one BLAS thread, memory trimming), which must
    be set before numpy is imported, and with this process's ``sys.path`` (Python 3.11's
    fork server ignores it), so workers import what the client does.
    """
    with _starting:
        if _started.is_set():  # this process started it: changing os.environ again, maybe beside other threads, is not needed
            multiprocessing.forkserver.ensure_running()
            return
        multiprocessing.get_context(METHOD).set_forkserver_preload(list(PRELOAD))
        with environment(_server_environ(), override=True), _sigint_ignored():
            multiprocessing.forkserver.ensure_running()
        _started.set()


def _server_environ() -> dict[str, str]:
    import dask
    import distributed  # noqa: F401 - sets Dask's defaults of distributed.*

    dask_set = dask.config.get("distributed.nanny.pre-spawn-environ")
    workers = {name: str(value) for name, value in dask_set.items() if value is not None and name not in os.environ}
    return {**workers, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored for the duration (an ignored signal survives exec); elsewhere than the main thread, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
