"""The client's memory over a long search of tiny fits, and when its first record reaches the log.

    python bench/bench_search_memory.py [--candidates 60000] [--seconds 420] [--tracemalloc]

``gridsearch.run`` of ``Ridge`` on a 500 x 5 numeric CSV (``model__alpha`` x ``model__tol``,
``--candidates`` x 5 folds, about 1 ms per fit and score) on the LocalCluster the engine
starts itself (its scheduler lives in the client's process, so its memory counts), in a fresh
process that is stopped after ``--seconds``. A thread in that process samples its RSS and
the records appended so far (and the tasks and futures Dask holds) every second; printed: seconds from the call to the first record
appended, RSS at the first and at the last sample, and the growth per 1 000 fits (least
squares over the samples after the first 10 000 fits) extrapolated to 300 000 fits.
``--tracemalloc`` also traces the client's Python allocations and prints the 15 lines whose
memory grew most between the 2 000th and the 6 000th fit (tracing slows the client).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import OtherLoad, machine, write_config

ROWS, FEATURES, FOLDS = 500, 5, 5
TOLS = 100
WARM_FITS = 10_000  # samples before this many fits are the start-up, not the trend
TRACED = (2_000, 6_000)  # with --tracemalloc: what grew between these fit counts (tracing is slow)
EXTRAPOLATE_TO = 300_000


def _config(root: Path, candidates: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(ROWS, FEATURES))
    data = root / "numeric.csv"
    pd.DataFrame({**{f"x{i}": X[:, i] for i in range(FEATURES)}, "y": X.sum(axis=1) + rng.normal(size=ROWS)}).to_csv(data, index=False)
    return {
        "data": {"source": str(data), "target": "y", "rows": None, "clean": False},
        "pipeline": {"steps": [{"name": "model", "estimator": "sklearn.linear_model.Ridge"}]},
        "search": {"params": {"model__alpha": {"logspace": [-3, 3, max(1, candidates // TOLS)]}, "model__tol": {"logspace": [-6, -2, TOLS]}}},
        "cv": {"folds": FOLDS, "shuffle": True, "seed": 0},
        "scoring": ["neg_root_mean_squared_error"],
        "log": str(root / "runs"),
    }


def _child(config: str, trace: bool) -> None:
    """In the measured process: run the search, printing a JSON sample of RSS and fits every second."""
    import tracemalloc

    import psutil

    import gridsearch
    from gridsearch.log import runlog

    fits = [0]
    first: list[float] = []
    append = runlog.RunLog.append

    def counted(self: runlog.RunLog, records: Any) -> None:
        append(self, records)
        if not first:
            first.append(time.perf_counter())
        fits[0] += len(records)

    runlog.RunLog.append = counted
    snapshots: list[Any] = []
    me = psutil.Process()

    def sample() -> None:
        while True:
            if trace and not snapshots and fits[0] >= TRACED[0]:
                snapshots.append(tracemalloc.take_snapshot())
            if trace and len(snapshots) == 1 and fits[0] >= TRACED[1]:
                snapshots.append(tracemalloc.take_snapshot())
                top = snapshots[1].compare_to(snapshots[0], "lineno")[:15]
                print(json.dumps({"growth": [str(stat) for stat in top]}), flush=True)
            print(json.dumps({"t": time.perf_counter() - start, "rss": me.memory_info().rss, "fits": fits[0],
                              "first": first[0] - start if first else None, "tasks": _tasks()}), flush=True)
            time.sleep(1.0)

    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    threading.Thread(target=sample, daemon=True).start()
    gridsearch.run(config, progress=False)
    time.sleep(1.1)


def _tasks() -> dict[str, int]:
    """Tasks the scheduler holds and futures the client holds, in this process."""
    from distributed import Scheduler
    from distributed.client import _global_clients

    return {"scheduler": sum(len(s.tasks) for s in list(Scheduler._instances)),
            "client": sum(len(c.futures) for c in list(_global_clients.values()))}


def measure(candidates: int, seconds: float, trace: bool) -> list[dict[str, Any]]:
    """The child's samples (and growth lines, with ``trace``) until it ends or ``seconds`` pass."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        path = write_config(Path(tmp), _config(Path(tmp), candidates))
        child = subprocess.Popen([sys.executable, __file__, "--child", str(path), *(["--tracemalloc"] if trace else [])],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        lines: list[dict[str, Any]] = []
        timer = threading.Timer(seconds, child.terminate)
        timer.start()
        try:
            lines = [json.loads(line) for line in child.stdout if line.startswith("{")]
        finally:
            timer.cancel()
            child.terminate()
            child.wait()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=60_000, help="candidates x 5 folds (default 60 000: 300 000 fits)")
    parser.add_argument("--seconds", type=float, default=420.0, help="stop the search after this long (default 420)")
    parser.add_argument("--tracemalloc", action="store_true", help="trace the client's allocations and print what grew")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.tracemalloc)
        return 0
    print(f"client memory benchmark; {machine()}")
    with OtherLoad() as other:
        lines = measure(args.candidates, args.seconds, args.tracemalloc)
    for line in lines:
        for stat in line.get("growth", []):
            print(f"  grew: {stat}")
    samples = [line for line in lines if "rss" in line]
    first = next((s for s in samples if s["fits"]), None)
    if first is None:
        print("no record reached the log")
        return 1
    last = samples[-1]
    trend = [s for s in samples if s["fits"] >= WARM_FITS]
    slope = np.polyfit([s["fits"] for s in trend], [s["rss"] for s in trend], 1)[0] * 1000 / 2**20 if len(trend) > 2 else float("nan")
    print(f"first record in the log after {first['first']:.1f} s; {last['fits']:,} fits in {last['t']:.0f} s")
    print(f"client RSS: {first['rss'] / 2**20:.0f} MB at the first record, {last['rss'] / 2**20:.0f} MB at the last sample "
          f"(+{(last['rss'] - first['rss']) / 2**20:.0f} MB); after {WARM_FITS:,} fits {slope:+.3f} MB per 1 000 fits "
          f"= {slope * EXTRAPOLATE_TO / 1000:+.0f} MB at {EXTRAPOLATE_TO:,}")
    print(f"at the last sample the scheduler held {last['tasks']['scheduler']} tasks and the client {last['tasks']['client']} futures")
    print(f"other processes used {other} during the benchmark")
    return 0


if __name__ == "__main__":
    sys.exit(main())
