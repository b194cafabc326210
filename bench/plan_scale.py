"""A plan at scale: ``--dry-run`` of 10^5-10^7 candidates, and the start of a run of 10^6.

    python bench/plan_scale.py [--sizes 100000,1000000,10000000] [--first-fit 1000000] [--before DIR]

Grid on the default pipeline (``conf/search.yaml``, Ridge on taxi-fare features):
``features__geohash__encode__precision`` {4..8} x ``model__fit_intercept`` {true, false} x
``model__alpha`` logspace(-3, 3, 100) x ``model__tol`` logspace(-6, -2, 100) x ``model__max_iter``
range(1000, 1000 + n / 10^5), one grid (n a multiple of 10^5). Each measurement runs in a fresh
process: ``gridsearch run --dry-run`` (load, validation, plan, pilot fit) timed after the
modules it needs are imported (their import time is printed apart: with
``PYTHONDONTWRITEBYTECODE`` set, as here, every process compiles them again), with
the process's peak RSS (``ru_maxrss``; a run past ``--limit-mb`` is killed and its
numbers are lower bounds); and ``gridsearch.run`` of the first-fit size, from
the call to the moment its log directory holds a part file (the first records written:
the fail-fast gate holds the first fits until one succeeds), with the client's peak RSS
then (``VmHWM``), after which its process group is killed. ``--before DIR`` holds another
copy of ``gridsearch`` and ``kampai`` (e.g. ``git archive HEAD gridsearch kampai | tar -x
-C DIR``): each measurement then runs on it too, side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import OtherLoad, load_average, machine

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "conf" / "search.yaml"
FIRST_FIT_LIMIT = 300.0  # seconds a run may take to write its first record before it is given up


def overrides(candidates: int, log_dir: Path) -> list[str]:
    """``--set`` items for a grid of ``candidates`` (a multiple of 10^5) logging under ``log_dir``."""
    grid = {"features__geohash__encode__precision": [4, 5, 6, 7, 8], "model__fit_intercept": [True, False],
            "model__alpha": {"logspace": [-3, 3, 100]}, "model__tol": {"logspace": [-6, -2, 100]},
            "model__max_iter": {"range": [1000, 1000 + candidates // 100_000]}}
    return [f"search.params={json.dumps(grid)}", f"log={log_dir}", f"cache.dir={log_dir / 'cache'}"]


def _child_dry_run(candidates: int) -> None:
    """In the measured process: the CLI's dry run, then wall time and peak RSS as JSON."""
    import resource

    start = time.perf_counter()
    import gridsearch.execute.engine  # noqa: F401 - what the command imports, timed apart
    from gridsearch.cli import main

    imports = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        argv = ["run", str(CONFIG), "--dry-run"]
        for item in overrides(candidates, Path(tmp)):
            argv += ["--set", item]
        code = main(argv)
        wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"code": code, "wall": wall, "imports": imports, "peak_mb": peak}), flush=True)


def _child_run(candidates: int, log_dir: str) -> None:
    """In the measured process: say when ``gridsearch.run`` starts, then run it until killed."""
    import gridsearch
    from gridsearch.search.config import load_config, parse_overrides

    config = load_config(CONFIG, parse_overrides(overrides(candidates, Path(log_dir))))
    print(json.dumps({"start": time.time()}), flush=True)
    gridsearch.run(config, progress=False)


def _env(tree: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = f"{tree}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def dry_run(candidates: int, tree: Path | None, limit_mb: float) -> dict[str, object]:
    """Wall seconds and peak MB of a ``--dry-run`` of ``candidates`` in a fresh process.

    A process whose RSS passes ``limit_mb`` is killed (the machine is shared): then the
    result holds lower bounds and ``stopped``.
    """
    import psutil

    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--child-dry-run", str(candidates)], env=_env(tree),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    peak = 0.0
    while child.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, psutil.Process(child.pid).memory_info().rss / 2**20)
        if peak > limit_mb:
            child.kill()
            child.wait()
            return {"wall": time.perf_counter() - start, "imports": float("nan"), "peak_mb": peak, "summary": "", "stopped": True}
        time.sleep(0.1)
    out, err = child.communicate()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if child.returncode or not lines:
        raise RuntimeError(f"dry run of {candidates} failed: {err.strip().splitlines()[-1:]}")
    summary = next((line for line in out.splitlines() if "valid." in line), "")
    return {**json.loads(lines[-1]), "summary": summary, "stopped": False}


def first_fit(candidates: int, tree: Path | None) -> dict[str, float]:
    """Seconds from ``gridsearch.run`` to its first log part, and the client's peak MB then."""
    with tempfile.TemporaryDirectory() as tmp:
        child = subprocess.Popen([sys.executable, __file__, "--child-run", str(candidates), tmp], env=_env(tree),
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, start_new_session=True)
        try:
            start = json.loads(child.stdout.readline())["start"]
            while not any(Path(tmp).glob("*/part-*.arrows")):
                if child.poll() is not None or time.time() - start > FIRST_FIT_LIMIT:
                    raise RuntimeError(f"run of {candidates} ended or hung before its first record (exit {child.returncode})")
                time.sleep(0.02)
            seconds = time.time() - start
            status = Path(f"/proc/{child.pid}/status").read_text()
            peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
        finally:
            os.killpg(child.pid, signal.SIGKILL)  # the client and the cluster it started, all ours
            child.wait()
    return {"seconds": seconds, "peak_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000", help="candidates of each dry run, comma separated")
    parser.add_argument("--first-fit", type=int, default=1_000_000, help="candidates of the run timed to its first record (0: none)")
    parser.add_argument("--limit-mb", type=float, default=4000.0, help="kill a dry run whose RSS passes this (the machine is shared)")
    parser.add_argument("--before", type=Path, help="a directory holding another gridsearch and kampai to measure beside")
    parser.add_argument("--child-dry-run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-run", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_dry_run:
        return _child_dry_run(args.child_dry_run)
    if args.child_run:
        return _child_run(int(args.child_run[0]), args.child_run[1])
    print(machine())
    trees = {"after": None, **({"before": args.before} if args.before else {})}
    with OtherLoad() as other:
        for size in [int(s) for s in args.sizes.split(",") if s]:
            for name, tree in trees.items():
                result = dry_run(size, tree, args.limit_mb)
                over = ">" if result["stopped"] else " "
                note = f"stopped at {args.limit_mb:.0f} MB" if result["stopped"] else str(result["summary"]).partition("valid. ")[2]
                print(f"dry run {size:>10,} candidates, {name:6}: {over}{result['wall']:6.1f} s (imports before: {result['imports']:4.1f} s), "
                      f"peak RSS {over}{result['peak_mb']:6.0f} MB   {note}", flush=True)
        if args.first_fit:
            for name, tree in trees.items():
                result = first_fit(args.first_fit, tree)
                print(f"run {args.first_fit:,} candidates, {name:6}: first record after {result['seconds']:5.1f} s, "
                      f"client peak RSS then {result['peak_mb']:5.0f} MB", flush=True)
    print(f"other processes used {other}; load average now {load_average()}")
    return None


if __name__ == "__main__":
    main()
