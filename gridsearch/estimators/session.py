"""The Dask client a notebook's searches run on, started once per process.

``client=`` of the search classes is a :class:`distributed.Client`, a scheduler address, or
None. With None, the current default client is used if there is one; else one loopback
``LocalCluster`` (one single-threaded worker process per core) is started on the first
fit and reused by every later fit of the process, so a second ``fit`` starts at once. It
is closed when the interpreter exits.
"""

from __future__ import annotations

import atexit
import threading

from distributed import Client

from gridsearch.errors import GridsearchError
from gridsearch.execute.executor import CONNECT_TIMEOUT, local_cluster, make_client

_lock = threading.Lock()
_clients: dict[str, Client] = {}  # by scheduler address, or "" for the process's own local cluster


def search_client(client: Client | str | None) -> Client:
    """The client a search runs on (see the module's docstring).

    Raises
    ------
    GridsearchError
        When the scheduler at an address cannot be reached.
    """
    if isinstance(client, Client):
        return client
    with _lock:
        if client is None:
            current = _current_client()
            if current is not None:
                return current
        key = client or ""
        known = _clients.get(key)
        if known is None or known.status not in ("running", "connecting"):
            _clients[key] = known = _local() if client is None else _connect(client)
        return known


def close_clients() -> None:
    """Close the clients (and the local cluster) the searches of this process opened; the next fit opens them again."""
    with _lock:
        for client in _clients.values():
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
        _clients.clear()


def _current_client() -> Client | None:
    """The default client, if there is one still connected (a closed one would never run a task)."""
    try:
        current = Client.current()
    except ValueError:
        return None
    return current if current.status == "running" else None


def _local() -> Client:
    return make_client(local_cluster(), set_as_default=False)


def _connect(address: str) -> Client:
    try:
        return make_client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise GridsearchError(f"cannot reach the Dask scheduler at {address!r} within {CONNECT_TIMEOUT} ({exc}); "
                              "start one with 'dask scheduler', or pass client=None for a local cluster") from None


atexit.register(close_clients)
