"""The report at scale: seconds to build and write it from a log of a million records, and the file's size.

    python bench/bench_report.py [--records 1000000] [--keep DIR] [--repeat 3]

A random search of ``records / 5`` candidates x 5 folds is synthesised as the engine
records it (:class:`gridsearch.log.records.FitRecord`, appended in batches with
:class:`gridsearch.log.runlog.RunLog`, so the parts are compacted as a real run leaves
them): three model kinds with their own parameters (Ridge alpha, ElasticNet alpha and
l1_ratio, a tree's depth and leaf size), geohash precision 4-7, scores that depend on them
plus noise, fit times and model sizes by kind, two workers with tasks back to back and idle
gaps, and 1 % failed fits. Then ``gridsearch.report(log, to=...)`` is timed end to end
(reading the log, the tables, importance, every figure, the HTML with BokehJS inline),
``--repeat`` times, in a fresh process each (so Bokeh's import is counted every time).

Also measured: :func:`gridsearch.execute.sizes.model_size` on fitted models of each kind,
against their fit time and their pickle's size.

Targets: the report in < 10 s and its file < 5 MB.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from common import OtherLoad, machine

from gridsearch.log.records import FitRecord, SearchMeta, Status
from gridsearch.log.runlog import RunLog

SCORING = ("neg_root_mean_squared_error", "r2")
FOLDS = 5
BATCH = 10_000
TARGET_SECONDS = 10.0
TARGET_MB = 5.0
_MODELS = ("sklearn.linear_model.Ridge", "sklearn.linear_model.ElasticNet", "sklearn.tree.DecisionTreeRegressor")


def candidates(n: int, seed: int = 0) -> Iterator[tuple[str, dict[str, object], float, float, float]]:
    """``(id, params, mean score, fit seconds, model bytes)`` of ``n`` random-search candidates."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        kind = int(rng.integers(3))
        precision = int(rng.integers(4, 8))
        params: dict[str, object] = {"features__geohash__encode__precision": precision, "model": _MODELS[kind]}
        columns = 12 + 4 ** (precision - 2) // 4
        if kind == 2:
            depth, leaf = int(rng.integers(2, 21)), int(rng.integers(1, 51))
            params.update(model__max_depth=depth, model__min_samples_leaf=leaf)
            score = -4.6 + 0.8 * math.exp(-((depth - 11) / 5) ** 2) - 0.004 * leaf
            fit, size = 0.002 * depth * (1 + precision / 4), 64.0 * min(2**depth, 16_000 / leaf)
        else:
            alpha = float(10 ** rng.uniform(-3, 3))
            params["model__alpha"] = alpha
            if kind == 1:
                params["model__l1_ratio"] = float(rng.uniform(0, 1))
            score = -4.4 - 0.05 * (math.log10(alpha) - 0.5) ** 2 - 0.1 * (kind == 1)
            fit, size = (0.004 if kind == 0 else 0.02) * (1 + precision / 3), 8.0 * columns
        score += 0.12 * (precision - 4) * (precision < 7) - 0.2 * (precision == 7)
        yield f"{i * 2654435761 % 2**64:016x}", dict(sorted(params.items())), score, fit, size


def records(n: int, start: float) -> Iterator[list[FitRecord]]:
    """``n`` records in batches of :data:`BATCH`: each candidate's folds, on alternating workers, back to back."""
    rng = np.random.default_rng(1)
    clock = {"tcp://127.0.0.1:40001": start, "tcp://127.0.0.1:40002": start}
    batch: list[FitRecord] = []
    for index, (cid, params, score, fit, size) in enumerate(candidates(n // FOLDS)):
        text = json.dumps(params, sort_keys=True)
        worker = f"tcp://127.0.0.1:{40001 + index % 2}"
        prep = 0.05 * params["features__geohash__encode__precision"]
        for fold in range(FOLDS):
            failed = rng.random() < 0.01
            rmse = score + rng.normal(0, 0.05)
            fit_time = fit * rng.lognormal(0, 0.2)
            began = clock[worker] + (rng.exponential(0.5) if rng.random() < 0.002 else 0.0005)
            ended = began + fit_time + 0.001
            clock[worker] = ended
            batch.append(FitRecord(
                search_id="bench-report", candidate_id=cid, params=text, fold=fold, status=Status.ERROR if failed else Status.OK,
                scores={"neg_root_mean_squared_error": math.nan if failed else rmse, "r2": math.nan if failed else 0.75 + (rmse + 4.4) / 4},
                fit_time=fit_time, score_time=0.001, prep_time=prep, worker=worker, error="ValueError: synthetic" if failed else None,
                started=began, finished=ended, git_sha="2aeb877c0ffee0ddba11ad5eed0c0de5a1b2c3d4", git_dirty=False,
                package_version="0.1.0", data_fingerprint="0123456789abcdef", model_size=math.nan if failed else size,
            ))
            if len(batch) == BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def write_log(directory: Path, n: int) -> float:
    """Write the synthetic log of ``n`` records; returns the seconds it took."""
    begin = time.perf_counter()
    meta = SearchMeta("bench-report", SCORING, FOLDS, created="2026-01-01T00:00:00+00:00")
    with RunLog(directory, meta) as log:
        for batch in records(n, start=1_767_225_600.0):
            log.append(batch)
    return time.perf_counter() - begin


def time_report(directory: Path, html: Path) -> float:
    """Seconds of ``gridsearch.report(directory, to=html)`` in a fresh process (imports included)."""
    code = (f"import time; t = time.perf_counter(); import gridsearch; gridsearch.report({str(directory)!r}, to={str(html)!r}); "
            "print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def model_sizes() -> list[str]:
    """model_size against fit time and pickle size, for one fitted model of each kind on 10 000 x 20."""
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.tree import DecisionTreeRegressor

    from gridsearch.execute.sizes import model_size

    rng = np.random.default_rng(0)
    X, y = rng.random((10_000, 20)), rng.random(10_000)
    lines = []
    for model in (Ridge(), DecisionTreeRegressor(max_depth=12), RandomForestRegressor(100, max_depth=8, n_jobs=1),
                  HistGradientBoostingRegressor(max_iter=100), KNeighborsRegressor()):
        begin = time.perf_counter()
        model.fit(X, y)
        fit = time.perf_counter() - begin
        model_size(model)
        repeats = 50
        begin = time.perf_counter()
        for _ in range(repeats):
            size = model_size(model)
        cost = (time.perf_counter() - begin) / repeats
        lines.append(f"  {type(model).__name__:<30} {size / 1024:9.1f} KiB (pickle {len(pickle.dumps(model)) / 1024:9.1f} KiB)  "
                     f"measured in {cost * 1e6:7.0f} µs = {cost / fit:.3%} of its fit ({fit:.2f} s)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the log (default: 1 000 000)")
    parser.add_argument("--repeat", type=int, default=3, help="reports built, each in a fresh process (default: 3)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the log and the report here and keep them")
    args = parser.parse_args(argv)
    print(f"report benchmark; {machine()}")
    other = OtherLoad()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp, other:
        root = args.keep or Path(tmp)
        log = root / "bench-report"
        if not any(log.glob("part-*.arrows")):
            print(f"\nwriting {args.records:,} records ({args.records // FOLDS:,} candidates x {FOLDS} folds) ... ", end="", flush=True)
            print(f"{write_log(log, args.records):.0f} s")
        html = root / "report.html"
        seconds = [time_report(log, html) for _ in range(args.repeat)]
        mb = html.stat().st_size / 1e6
        verdict = "ok" if statistics.median(seconds) < TARGET_SECONDS and mb < TARGET_MB else "NOT MET"
        print(f"\ngridsearch.report of {args.records:,} records, fresh process each (imports included): "
              f"median {statistics.median(seconds):.1f} s [{', '.join(f'{s:.1f}' for s in seconds)}]; file {mb:.2f} MB")
        print(f"  targets < {TARGET_SECONDS:.0f} s and < {TARGET_MB:.0f} MB: {verdict}")
        print("\nmodel_size (bytes of the arrays of the fitted estimator), 10 000 rows x 20 features:")
        print("\n".join(model_sizes()))
    print(f"\nother processes used {other} during the benchmark")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
