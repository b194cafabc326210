"""Start-up and shut-down of ``python -m gridsearch run conf/search.yaml``, each phase timed.

    python bench/bench_startup.py [--repeat 3] [--rows N] [--no-address]

Runs the CLI as a fresh process on a copy of conf/search.yaml in a temp dir (its own log
and memo dirs, so every repeat is a new, cold search) and reports seconds from the command to:
the engine's modules imported, the config validated and the data loaded
(``prepare_search`` returned), the cluster up (its client connected), the workers checked
(``check_workers`` returned) and the first fit running (the earliest ``started`` of the
run log's records, stamped by the worker as the fit task began). Then from the last fit
done (the latest ``finished`` of the log) to the client and cluster closed, to the command
returned (``cli.main``: the summary printed) and to the process gone (its output closed: also
by the worker processes it leaves exiting). ``--help`` alone is timed too. With an address (unless ``--no-address``),
the same runs on a LocalCluster already running (``--scheduler``). Medians of ``--repeat``,
with the CPU other processes used during each run. Workers forked from the engine's fork
server are not the CLI's children: their CPU counts as other processes' in the runs on the
LocalCluster the run starts (~45 cpu-s of a ~27 s run); the runs on an address show the load.

The measured process is ``python bench/bench_startup.py --child run <config> --quiet``: it
installs an import hook that wraps those four functions to note the time, then calls
``gridsearch.cli.main`` as ``python -m gridsearch`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.machinery
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parent.parent
MARKS_ENV = "BENCH_STARTUP_MARKS"
# module -> (function wrapped, mark at its return); None: mark when the module is imported
HOOKS: dict[str, tuple[str | None, str]] = {
    "gridsearch.execute.engine": (None, "imports done"),
    "gridsearch.search.prepare": ("prepare_search", "config validated, data loaded"),
    "gridsearch.execute.executor": ("make_client", "cluster up"),
    "gridsearch.execute.workers": ("check_workers", "workers checked"),
}
PHASES = ("imports done", "config validated, data loaded", "cluster up", "workers checked", "first fit running")
CLOSED = "client and cluster closed"
RETURNED = "command returned"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    import yaml
    from common import OtherLoad, cache_section, code, local_cluster, machine, write_config

    print(f"machine: {machine()}")
    print(f"code: {code()}")
    base = yaml.safe_load((REPO / "conf" / "search.yaml").read_text())
    if args.rows:
        base["data"]["rows"] = args.rows
    print(f"search: conf/search.yaml, data.rows {base['data']['rows']}, repeats {args.repeat}")
    print(f"--help: {_median_help(args.repeat, OtherLoad)}")
    modes: list[tuple[str, Callable[[], contextlib.AbstractContextManager[str | None]]]] = [("LocalCluster started by the run", _no_address)]
    if args.address:
        modes.append(("cluster.address of a running LocalCluster", lambda: _running_cluster(local_cluster)))
    for name, cluster in modes:
        with cluster() as address:
            runs = []
            for repeat in range(args.repeat):
                with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
                    root = Path(tmp)
                    config = {**base, "log": str(root / "runs"), "cache": cache_section(root / "cache", "all")}
                    if address:
                        config["cluster"] = {**config.get("cluster", {}), "address": address}
                    runs.append(_measure(write_config(root, config), root, OtherLoad))
                    print(f"  {name}, repeat {repeat + 1}: {_one_line(runs[-1])}", flush=True)
        _print_medians(name, runs)
    return 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, help="data.rows of the search (default: conf/search.yaml's)")
    parser.add_argument("--no-address", dest="address", action="store_false", help="skip the runs on an already running cluster")
    return parser.parse_args(argv)


@contextlib.contextmanager
def _no_address() -> Iterator[str | None]:
    yield None


@contextlib.contextmanager
def _running_cluster(local_cluster: Callable[[], contextlib.AbstractContextManager[Any]]) -> Iterator[str]:
    with local_cluster() as client:
        yield client.scheduler.address


def _measure(config: Path, root: Path, other_load: type) -> dict[str, float]:
    """One fresh CLI process on ``config``: seconds from the command to each mark, and from the last fit."""
    import gridsearch

    marks_file = root / "marks.jsonl"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "run", str(config), "--quiet"]
    with other_load() as other:
        start = time.time()
        done = subprocess.run(command, cwd=root, env={**os.environ, MARKS_ENV: str(marks_file)}, capture_output=True, text=True,
                              check=False)
        exit_time = time.time()
    if done.returncode != 0:
        raise SystemExit(f"the run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    marks = {name: at - start for name, at in (json.loads(line) for line in marks_file.read_text().splitlines())}
    [log] = [path for path in (root / "runs").iterdir() if path.is_dir()]
    records = gridsearch.read_log(log)
    last_fit = records["finished"].max().timestamp()
    marks["first fit running"] = records["started"].min().timestamp() - start
    marks["last fit -> closed"] = marks[CLOSED] - (last_fit - start)
    marks["last fit -> returned"] = marks[RETURNED] - (last_fit - start)
    marks["last fit -> exit"] = exit_time - last_fit
    marks["wall"] = exit_time - start
    marks["other cpu-s"] = other.seconds
    return marks


def _median_help(repeat: int, other_load: type) -> str:
    """Median wall seconds of ``python -m gridsearch --help``, and whether it imported dask or sklearn."""
    probe = "import runpy, sys; sys.argv = ['gridsearch', '--help']\ntry: runpy.run_module('gridsearch', run_name='__main__')\n" \
            "except SystemExit: print(sorted(m for m in ('dask', 'sklearn', 'pandas') if m in sys.modules))"
    walls, others, heavy = [], [], ""
    for _ in range(repeat):
        with other_load() as other:
            start = time.perf_counter()
            heavy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()[-1]
            walls.append(time.perf_counter() - start)
        others.append(other.seconds)
    return f"{statistics.median(walls):.2f} s (other processes {_cpu(others)}), heavy modules imported: {heavy}"


def _one_line(marks: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.2f}" for name, seconds in marks.items())


def _print_medians(name: str, runs: list[dict[str, float]]) -> None:
    print(f"{name}: medians of {len(runs)}, other processes used {_cpu([run['other cpu-s'] for run in runs])}")
    print("  seconds from the command to:")
    for phase in PHASES:
        print(f"    {phase:<32} {statistics.median(run[phase] for run in runs):6.2f}")
    for phase in ("last fit -> closed", "last fit -> returned", "last fit -> exit", "wall"):
        print(f"  {phase:<34} {statistics.median(run[phase] for run in runs):6.2f}")


def _cpu(seconds: Sequence[float]) -> str:
    return " / ".join(f"{value:.1f}" for value in seconds) + " cpu-s"


# In the measured process -----------------------------------------------------------------


def _child(argv: list[str]) -> NoReturn:
    """Run the CLI with :data:`HOOKS` noting times to ``$BENCH_STARTUP_MARKS``."""
    sys.meta_path.insert(0, _MarkingFinder())
    from gridsearch.cli import exit_now
    from gridsearch.cli import main as cli_main

    code = cli_main(argv)
    _mark(RETURNED)
    exit_now(code)  # as python -m gridsearch ends


def _mark(name: str) -> None:
    with open(os.environ[MARKS_ENV], "a") as marks:
        marks.write(json.dumps([name, time.time()]) + "\n")


class _MarkingFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of :data:`HOOKS` as usual, then wraps their function once they are executed."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in HOOKS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _MarkingLoader(spec.loader, *HOOKS[name])
        return spec


class _MarkingLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, function: str | None, mark: str) -> None:
        self._loader, self._function, self._name = loader, function, mark

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        if self._function is None:
            _mark(self._name)
            return
        setattr(module, self._function, _marking(getattr(module, self._function), self._name))
        if self._function == "make_client":
            module.open_client = _closing_marked(module.open_client)


def _marking(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        value = function(*args, **kwargs)
        _mark(name)
        return value

    return wrapper


def _closing_marked(open_client: Callable[..., Any]) -> Callable[..., Any]:
    @contextlib.contextmanager
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            with open_client(*args, **kwargs) as client:
                yield client
        finally:
            _mark(CLOSED)

    return wrapper


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
    raise SystemExit(main())
