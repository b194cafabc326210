"""What both benchmarks share: the cluster, the cache part of the config, timing, task-stream totals.

Not part of the package: the scripts next to this file put ``bench/`` on ``sys.path``
by being run as ``python bench/<script>.py``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

N_WORKERS = 2


def cache_section(cache_dir: Path, stages: Sequence[str] | str = ()) -> Any:
    """The ``cache`` entry of a search YAML: the ONE place to adapt when the config's cache key changes.

    The config accepts either a top-level string (a directory) or, after the rework,
    a section ``cache: {dir: <path>, stages: [<pipeline step>, ...]}``. Which form is
    accepted is read from the config schema at run time.
    """
    from gridsearch.search import config

    if "cache" in config._SCHEMA:  # the section form
        fields = config._SCHEMA["cache"]
        section: dict[str, Any] = {"dir": str(cache_dir)}
        if "stages" in fields:
            section["stages"] = stages if isinstance(stages, str) else list(stages)  # "all" or a list
        return section
    return str(cache_dir)


def cache_form() -> str:
    """Which ``cache`` form the config accepts right now, for the printed header."""
    from gridsearch.search import config

    if "cache" in config._SCHEMA:
        return f"section cache: {{{', '.join(sorted(config._SCHEMA['cache']))}}}"
    return "top-level cache: <dir>"


def write_config(directory: Path, config: Mapping[str, Any], name: str = "search.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


@contextlib.contextmanager
def local_cluster() -> Iterator[Any]:
    """A loopback LocalCluster of 2 single-threaded worker processes and a client on it.

    The scheduler gets ``worker-saturation: inf``, the setting our engine uses for the
    LocalCluster it starts itself, so every Dask method here runs on the same scheduler.
    Modules are imported on the workers first, so no timed method pays for imports.
    """
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.worker-saturation": "inf"}):
        cluster = LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0")
    with cluster, Client(cluster) as client:
        client.run(_import_on_worker)
        yield client


def _import_on_worker() -> None:
    import sklearn.ensemble
    import sklearn.linear_model
    import sklearn.tree  # noqa: F401

    import gridsearch.execute.tasks  # noqa: F401
    import kampai.pipeline  # noqa: F401


@dataclass
class Timing:
    """Per repeat of one method: wall seconds, our and other processes' CPU seconds, what it returned."""

    seconds: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)
    own: list[float] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def quietest(self) -> int:
        """Index of the repeat during which other processes used the least CPU."""
        return min(range(len(self.other)), key=self.other.__getitem__)

    def runs(self) -> str:
        """Each repeat as ``wall s (other processes' cpu-s)``."""
        return ", ".join(f"{wall:.1f} ({other:.0f})" for wall, other in zip(self.seconds, self.other))


def timed(fn: Callable[[], Any], timing: Timing) -> None:
    """Run ``fn`` once, add its wall time (and other processes' CPU) to ``timing``; an exception becomes one line."""
    if timing.error is not None:
        return
    start = time.perf_counter()
    try:
        with OtherLoad() as other:
            value = fn()
    except Exception as exc:  # noqa: BLE001 - an optional method failing must not end the benchmark
        timing.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return
    timing.seconds.append(time.perf_counter() - start)
    timing.other.append(other.seconds)
    timing.own.append(other.own)
    timing.values.append(value)


def task_totals(stream: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, float]]:
    """``{key prefix: (tasks, compute seconds)}`` from ``Client.get_task_stream`` records."""
    from dask.utils import key_split

    totals: dict[str, tuple[int, float]] = {}
    for record in stream:
        name = key_split(record["key"])
        compute = sum(s["stop"] - s["start"] for s in record["startstops"] if s["action"] == "compute")
        tasks, seconds = totals.get(name, (0, 0.0))
        totals[name] = (tasks + 1, seconds + compute)
    return totals


def busy_line(stream: Sequence[Mapping[str, Any]], wall: float, top: int = 6) -> str:
    """Workers' compute time as a share of ``N_WORKERS x wall``, by task-key prefix."""
    totals = task_totals(stream)
    busy = sum(seconds for _, seconds in totals.values())
    parts = sorted(totals.items(), key=lambda item: -item[1][1])[:top]
    detail = ", ".join(f"{name}: {n} tasks {s:.1f} s" for name, (n, s) in parts)
    return f"workers computing {busy:.1f} s of {N_WORKERS} x {wall:.1f} s = {busy / (N_WORKERS * wall):.0%} ({detail})"


class OtherLoad:
    """CPU seconds that processes outside this benchmark used during a measurement (and ``own``: ours).

    Machine-wide busy time from ``/proc/stat`` minus the CPU time of this process and its
    children (the Dask workers, joblib's workers). A large number means the machine was
    busy and the timing is suspect.
    """

    seconds: float = float("nan")
    own: float = float("nan")

    def __enter__(self) -> Self:
        self._start = (_machine_busy(), _own_cpu(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        busy, own, wall = self._start
        self.own = _own_cpu() - own
        self.seconds = max(0.0, (_machine_busy() - busy) - self.own)
        self.wall = time.perf_counter() - wall

    def __str__(self) -> str:
        return f"{self.seconds:.1f} cpu-s ({self.seconds / self.wall / (os.cpu_count() or 1):.0%} of the machine)"


def _machine_busy() -> float:
    with contextlib.suppress(OSError):
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def _own_cpu() -> float:
    import psutil

    # user, system, children_user, children_system: a descendant's reaped children count too (the workers
    # forked by the engine's fork server are its children, and gone by the end of a measurement)
    total = 0.0
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += sum(process.cpu_times()[:4])
    return total


def machine() -> str:
    """Cores, CPU model, Python and library versions, load average: for the results header."""
    import dask
    import sklearn

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({model or platform.processor()}), Python {platform.python_version()}, "
        f"dask {dask.__version__}, scikit-learn {sklearn.__version__}; load average {load_average()}"
    )


def code() -> str:
    """The engine's code: git commit, whether the working tree differs, a hash of the sources on disk."""
    try:
        from kampai.provenance import code_version, source_hash

        version = code_version()
        dirty = " + uncommitted changes" if version.git_dirty else ""
        return f"git {str(version.git_sha)[:10]}{dirty}, sources {source_hash()[:12]}"
    except (ImportError, AttributeError, OSError) as exc:
        return f"unknown ({exc})"


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())
