"""10 000 tiny fits (~5 ms each): how much of 2 cores our engine turns into fits.

    python bench/bench_tiny_fits.py [--fits 10000] [--quick] [--repeat N] [--scaler] [--sklearn] [--profile DIR]

A numeric CSV (2 000 rows, 10 features) in a temp dir, the declarative pipeline
``DecisionTreeRegressor(random_state=0)`` (``--scaler``: ``StandardScaler`` before it, a
prefix shared per fold), 5-fold CV and a grid of max_depth {4..8} x max_features
{0.8, 1.0} x min_samples_leaf {1..N}.

    efficiency = (sum of single-core fit times / cores) / wall time

"Fit time" is the useful work of one (candidate, fold): fitting the tree and scoring it
on the test fold. It is measured twice: in this process, one fit after another on one
core, as the thread's CPU time (the honest number, used for the target: other processes
on the machine cannot inflate it), and by our engine on its workers (its run log's
``fit_time + score_time``, wall clock). The wall time is the whole ``gridsearch.run`` call
(validation, scatter, every task, the log, the results table). The shared scaler, fitted
once per fold (and slicing the folds), is counted as work too.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import N_WORKERS, OtherLoad, busy_line, cache_section, code, load_average, local_cluster, machine, task_totals, write_config

ROWS, FEATURES, FOLDS = 2_000, 10, 5
SCORING = ["neg_root_mean_squared_error"]
DEPTHS = [4, 5, 6, 7, 8]
MAX_FEATURES = [0.8, 1.0]
TARGET_EFFICIENCY = 0.9  # issue 14: >= 0.90 on 2 cores


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    fits = 1_000 if args.quick and args.fits is None else args.fits or 10_000
    leaves = max(1, fits // (FOLDS * len(DEPTHS) * len(MAX_FEATURES)))
    print(f"machine: {machine()}")
    print(f"code: {code()}")
    import gridsearch

    with tempfile.TemporaryDirectory(prefix="bench-tiny-") as tmp, local_cluster() as client:
        root = Path(tmp)
        data = _write_data(root / "numeric.csv")
        path = write_config(root, _config(data, leaves, client.scheduler.address, root / "runs-0", args.scaler))
        prepared = gridsearch.prepare_search(path)
        print(f"{prepared.plan.summary()}")
        efficiencies = []
        for repeat in range(args.repeat):
            # A new log dir per repeat: the same log would resume and skip every fit.
            path = write_config(root, _config(data, leaves, client.scheduler.address, root / f"runs-{repeat}", args.scaler))
            with OtherLoad() as other:
                single = _single_core(prepared)
            print(f"\nrun {repeat + 1}: single core, in this process: {len(single.times)} fits, sum {single.total:.1f} s CPU "
                  f"({sum(single.times):.1f} s wall), median {np.median(single.cpu) * 1000:.1f} ms (fit + score); "
                  f"fold slicing and prefix {single.prep:.2f} s; other processes meanwhile: {other}")
            result, wall, records, other = _ours(client, path, args.profile if repeat == 0 else None)
            efficiencies.append((single.total + single.prep) / N_WORKERS / wall)
            print(f"run {repeat + 1}: ours {wall:.1f} s, efficiency {efficiencies[-1]:.2f}; other processes meanwhile: {other}")
        sk_wall = None
        if args.sklearn:
            with OtherLoad() as other:
                sk_wall = _sklearn(prepared)
            print(f"GridSearchCV run: other processes meanwhile: {other}")
        print(f"load average after the runs: {load_average()}\n")
        print(f"details of run {args.repeat}:")
        _report(result, single, wall, records, sk_wall)
        if args.repeat > 1:
            median = statistics.median(efficiencies)
            print(f"efficiency over {args.repeat} runs: {', '.join(f'{e:.2f}' for e in efficiencies)}; median {median:.2f} "
                  f"({'met' if median >= TARGET_EFFICIENCY else 'NOT met'})")
    return 0


def _ours(client: Any, path: Path, profile: Path | None) -> tuple[Any, float, list[Any], OtherLoad]:
    """``gridsearch.run`` with the task stream recorded (and a performance report into ``profile``)."""
    from distributed import get_task_stream, performance_report

    import gridsearch

    if profile:
        profile.mkdir(parents=True, exist_ok=True)
    report = performance_report(filename=str(profile / "tiny-fits-ours.html")) if profile else contextlib.nullcontext()
    with get_task_stream(client) as stream, report, OtherLoad() as other:
        start = time.perf_counter()
        result = gridsearch.run(path, progress=False)
        wall = time.perf_counter() - start
    return result, wall, stream.data, other


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fits", type=int, default=None, help="(candidate, fold) fits (default 10000, 1000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="1 000 fits: a check that everything runs, not a measurement")
    parser.add_argument("--repeat", type=int, default=1, help="measure single core and our run N times, each pair back to back (default 1)")
    parser.add_argument("--scaler", action="store_true", help="put a StandardScaler before the tree: a prefix shared per fold")
    parser.add_argument("--sklearn", action="store_true",
                        help="also time GridSearchCV(n_jobs=2) on the same fits (slow: ~10 min at 10 000 fits with scikit-learn 1.9.1, see README)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR", help="write a Dask performance report (HTML) of our run into DIR")
    return parser.parse_args(argv)


def _write_data(path: Path) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(ROWS, FEATURES))
    y = X @ rng.normal(size=FEATURES) + np.sin(3 * X[:, 0]) + rng.normal(size=ROWS)
    pd.DataFrame({**{f"x{i}": X[:, i] for i in range(FEATURES)}, "y": y}).to_csv(path, index=False)
    return path


def _config(data: Path, leaves: int, address: str, log: Path, scaler: bool) -> dict[str, Any]:
    steps = [{"name": "model", "estimator": "sklearn.tree.DecisionTreeRegressor", "params": {"random_state": 0}}]
    if scaler:
        steps.insert(0, {"name": "scale", "estimator": "sklearn.preprocessing.StandardScaler"})
    return {
        "data": {"source": str(data), "target": "y", "rows": None, "clean": False},
        "pipeline": {"steps": steps},
        "search": {"params": {"model__max_depth": DEPTHS, "model__max_features": MAX_FEATURES, "model__min_samples_leaf": list(range(1, leaves + 1))}},
        "cv": {"folds": FOLDS, "shuffle": True, "seed": 0},
        "scoring": SCORING,
        "cluster": {"address": address},
        "cache": cache_section(log.parent / "cache", stages=()),  # nothing worth memoising here
        "log": str(log),
    }


class _SingleCore:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.scores: dict[tuple[str, int], float] = {}
        self.prep = 0.0

    @property
    def total(self) -> float:
        """Sum of the fits' thread CPU times: a busy machine cannot inflate it (wall clock it can)."""
        return float(np.sum(self.cpu))


def _single_core(prepared: Any) -> _SingleCore:
    """Every (candidate, fold) fit and score, one after another, BLAS limited to one thread.

    As our engine does it: a prefix (the scaler) fitted once per fold, then only the
    final estimator per candidate; without a prefix, the one-step pipeline per candidate.
    """
    from sklearn.base import clone
    from sklearn.metrics import get_scorer
    from threadpoolctl import threadpool_limits

    dataset, pipeline = prepared.dataset, prepared.pipeline
    has_prefix = len(pipeline.steps) > 1
    final_name, final = pipeline.steps[-1]
    scorer = get_scorer(SCORING[0])
    out = _SingleCore()
    with threadpool_limits(1):
        for fold, (train, test) in enumerate(dataset.folds):
            start = time.thread_time()
            X_train, X_test = dataset.X.iloc[train], dataset.X.iloc[test]
            y_train, y_test = dataset.y[train], dataset.y[test]
            if has_prefix:
                prefix = clone(pipeline)[:-1]
                X_train = prefix.fit_transform(X_train, y_train)
                X_test = prefix.transform(X_test)
            out.prep += time.thread_time() - start
            for candidate in prepared.candidates:
                start, cpu = time.perf_counter(), time.thread_time()
                if has_prefix:
                    model = clone(final).set_params(**{k.removeprefix(f"{final_name}__"): v for k, v in candidate.params.items()})
                else:
                    model = clone(pipeline).set_params(**candidate.params)
                model.fit(X_train, y_train)
                score = scorer(model, X_test, y_test)
                out.times.append(time.perf_counter() - start)
                out.cpu.append(time.thread_time() - cpu)
                out.scores[(candidate.id, fold)] = score
    return out


def _sklearn(prepared: Any) -> float:
    from sklearn.model_selection import GridSearchCV

    grid = {name: sorted({c.params[name] for c in prepared.candidates}) for name in prepared.candidates[0].params}
    start = time.perf_counter()
    GridSearchCV(prepared.pipeline, grid, scoring=SCORING, cv=list(prepared.dataset.folds), refit=False, n_jobs=N_WORKERS).fit(
        prepared.dataset.X, prepared.dataset.y)
    return time.perf_counter() - start


def _report(result: Any, single: _SingleCore, wall: float, records: list[Any], sk_wall: float | None) -> None:
    table = result.cv_results
    logged = float((table["mean_fit_time"] + table["mean_score_time"]).sum() * FOLDS)
    ours = {(cid, k): s for cid, *splits in zip(table["candidate_id"], *(table[f"split{k}_test_{SCORING[0]}"] for k in range(FOLDS)))
            for k, s in enumerate(splits)}
    diff = max(abs(ours[key] - score) for key, score in single.scores.items())
    work = single.total + single.prep
    starts = [s["start"] for r in records for s in r["startstops"] if s["action"] == "compute"]
    stops = [s["stop"] for r in records for s in r["startstops"] if s["action"] == "compute"]
    span = max(stops) - min(starts) if starts else float("nan")
    tasks = task_totals(records)
    fit_tasks, fit_seconds = tasks.get("fit", (0, 0.0))

    print(f"{'':<46} {'wall s':>8} {'efficiency':>11}")
    print(f"{'ours, gridsearch.run (whole call)':<46} {wall:>8.1f} {work / N_WORKERS / wall:>11.2f}")
    print(f"{'ours, first task start to last task end':<46} {span:>8.1f} {work / N_WORKERS / span:>11.2f}")
    if sk_wall is not None:
        print(f"{'GridSearchCV(n_jobs=2), for reference':<46} {sk_wall:>8.1f} {work / N_WORKERS / sk_wall:>11.2f}")
    print(f"\nsingle-core work measured in this process: {single.total:.1f} s fits+scores + {single.prep:.2f} s fold slicing/prefix = {work:.1f} s")
    print(f"the same fits timed on the workers (run log fit_time + score_time): {logged:.1f} s "
          f"(efficiency with these: {(logged + single.prep) / N_WORKERS / wall:.2f})")
    print(f"max |score difference| vs the single-core fits: {diff:.1e}; errors: {result.n_errors}")
    if result.n_errors:
        import gridsearch
        from gridsearch.log.records import Status

        log = gridsearch.read_log(result.log_path)
        print(f"  FIRST ENGINE ERROR: {log.loc[log['status'] != Status.OK, 'error'].iloc[0]}")
    print(f"batching: {result.n_fits} fits in {fit_tasks} fit tasks ({result.n_fits / max(fit_tasks, 1):.0f} fits per task, "
          f"{fit_seconds / max(fit_tasks, 1) * 1000:.0f} ms of compute per task)")
    print(busy_line(records, wall))
    met = work / N_WORKERS / wall >= TARGET_EFFICIENCY
    print(f"\ntarget efficiency >= {TARGET_EFFICIENCY} (whole call, in-process fit times): {work / N_WORKERS / wall:.2f} {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
