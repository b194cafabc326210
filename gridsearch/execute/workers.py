"""What the workers must share with the client: the same code and versions, and the user's modules.

Workers of a remote cluster (docker compose, Kubernetes) run their own installation. A
search refuses to start when they run other code (a result would then depend on which
worker ran it), and it uploads the user's own modules, which workers cannot import.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from distributed import Client
from sklearn.base import BaseEstimator

from gridsearch.errors import GridsearchError
from kampai.provenance import DISTRIBUTION, source_hash

EXACT = ("scikit-learn", "dask", "distributed", "cloudpickle")
SAME_MINOR = ("numpy", "pandas", "pyarrow", "joblib", "scipy")


def environment() -> dict[str, str]:
    """Versions that must agree between client and workers (run on either side)."""
    versions = {name: _version(name) for name in (*EXACT, *SAME_MINOR)}
    versions[DISTRIBUTION] = f"{_version(DISTRIBUTION)} (source {source_hash()})"
    versions["python"] = ".".join(map(str, sys.version_info[:2]))
    return versions


def check_workers(client: Client) -> None:
    """Refuse to run when a worker's code or package versions differ from the client's.

    Raises
    ------
    GridsearchError
        Naming the worker, the package, and both versions.
    """
    mine = environment()
    for worker, theirs in client.run(environment).items():
        for package, version in mine.items():
            other = theirs.get(package, "missing")
            if not _compatible(package, version, other):
                raise GridsearchError(
                    f"worker {worker} runs {package} {other}, this client {version}; "
                    f"install the same version on the workers (rebuild the image) and restart them"
                )


def check_workers_once(client: Client) -> None:
    """:func:`check_workers`, unless this process checked the same workers of the same scheduler already."""
    key = (client.scheduler_info()["id"], frozenset(client.nthreads()))
    if key not in _CHECKED:
        check_workers(client)
        _CHECKED.add(key)


_CHECKED: set[tuple[str, frozenset[str]]] = set()  # (scheduler id, worker addresses) whose code and versions were checked


def _compatible(package: str, mine: str, theirs: str) -> bool:
    if package in SAME_MINOR:
        return mine.split(".")[:2] == theirs.split(".")[:2]
    return mine == theirs


@cache
def _installed_packages() -> Mapping[str, list[str]]:
    """Top-level module → distributions; scanning them costs ~0.3 s, so once per process."""
    return importlib.metadata.packages_distributions()


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def user_modules(pipeline: BaseEstimator, params: Iterable[Any], factory: str | None) -> set[str]:
    """Modules of the pipeline's classes, swapped-in estimators and factory that no installed
    distribution provides: the user's own code, which workers may not be able to import."""
    installed = _installed_packages()
    names = {value.rpartition(".")[0] for value in params if isinstance(value, str) and "." in value}
    if factory:
        names.add(factory.partition(":")[0])
    return object_modules([pipeline]) | {name for name in names if _is_user_module(name, installed)}


def object_modules(objects: Iterable[Any]) -> set[str]:
    """The user's own modules (in ``sys.modules``, provided by no installed distribution) that
    define ``objects``: estimators and their nested parameters, classes, functions, or the
    classes of other values."""
    names = set()
    for value in objects:
        nested = value.get_params(deep=True).values() if hasattr(value, "get_params") and not isinstance(value, type) else ()
        for part in (value, *nested):
            owner = part if isinstance(part, type) or inspect.isroutine(part) else type(part)
            names.add(getattr(owner, "__module__", None) or "")
    installed = _installed_packages()
    return {name for name in names if _is_user_module(name, installed)}


def _is_user_module(name: str, installed: Mapping[str, list[str]]) -> bool:
    top = name.partition(".")[0]
    return name in sys.modules and top not in installed and top not in sys.stdlib_module_names and name != "__main__"


def ship_modules(client: Client, modules: Iterable[str]) -> list[str]:
    """Send the user's modules to the scheduler and every worker (also workers joining later).

    A module inside a package sends the whole top-level package, zipped. Uploads are
    registered under stable names, so running again replaces them. A scheduler running in
    this process (a ``LocalCluster``'s) gets nothing: it imports the client's own modules
    already, and an upload would re-import them from its scratch directory in place of the
    user's files. A module this process already sent to this scheduler, unchanged since, is
    not sent again. Returns the top-level modules the workers get.
    """
    from distributed.diagnostics.plugin import SchedulerUploadFile, UploadFile

    tops = sorted({name.partition(".")[0] for name in modules})
    if not tops:
        return []
    local_scheduler = client.run_on_scheduler(os.getpid) == os.getpid()
    sent = []
    for top in tops:
        sent.append(top)
        version = (client.scheduler_info()["id"], top, _modified(sys.modules[top]))
        if version in _SENT:
            continue  # unchanged since this process sent it to this scheduler
        _SENT.add(version)
        upload = str(_upload_of(sys.modules[top]))
        plugins = [UploadFile(upload)] if local_scheduler else [SchedulerUploadFile(upload), UploadFile(upload)]
        for plugin in plugins:
            client.register_plugin(plugin, name=f"gridsearch-upload-{top}")
    return sent


_SENT: set[tuple[str, str, float]] = set()  # (scheduler id, top-level module, newest file time) sent by this process


def _modified(module: Any) -> float:
    """The newest modification time of a module's files (its package's, for a package)."""
    package = _package_dir(module)
    files = list(package.rglob("*.py")) if package else [Path(module.__file__)]
    return max((path.stat().st_mtime for path in files), default=0.0)


def _upload_of(module: Any) -> Path:
    """What is sent for a top-level module: its file, or its package zipped."""
    package = _package_dir(module)
    return _zipped(package) if package else Path(module.__file__)


def _package_dir(module: Any) -> Path | None:
    """The directory of a package (a namespace package has no ``__init__.py``), None for a plain module."""
    if module.__file__ is None:
        return Path(next(iter(module.__path__)))
    source = Path(module.__file__)
    return source.parent if source.name == "__init__.py" else None


def _zipped(package: Path) -> Path:
    """``package`` as a zip that Python can import from, in a temporary directory."""
    archive = Path(tempfile.mkdtemp(prefix="gridsearch-upload-")) / f"{package.name}.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(package.rglob("*.py")):
            bundle.write(path, path.relative_to(package.parent).as_posix())
    return archive
