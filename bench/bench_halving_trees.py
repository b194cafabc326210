"""Halving along n_estimators, side by side in one run: ours growing forests vs ours refitting them vs scikit-learn's.

    python bench/bench_halving_trees.py [--rows 30000] [--quick]

The data: ``synthetic-taxifare`` (kampai's generator), ``--rows`` trips before cleaning
(default 30 000), the taxi features of ``kampai.pipeline:taxifare_pipeline`` at geohash
precision 4 (dense), its model swapped for ``RandomForestRegressor(random_state=0)``, 3
shuffled folds, scorer ``neg_root_mean_squared_error``. The grid, 27 candidates: max_depth
{4, 6, 8, 10, 12, 14, 16, 18, None} x min_samples_leaf {1, 5, 20}. Halving over
``model__n_estimators``, factor 3, min_resources 3, max_resources 81: rounds of 27, 9, 3 and 1
candidates on 3, 9, 27 and 81 trees. ``--quick``: 10 000 rows, max_depth {4, 8, 12} (9
candidates, 3 rounds up to 27 trees).

Methods, one after the other in this process, on the same rows, folds and candidates:

1. ours, grown: ``gridsearch.HalvingGridSearchCV(grow_ensembles=True)`` on a LocalCluster of
   2 single-threaded workers (started once, before any timing);
2. ours, refit: the same with ``grow_ensembles=False`` (scikit-learn's way: every round
   refits every survivor);
3. scikit-learn's ``HalvingGridSearchCV(n_jobs=2)``.

Checked: the three give the same ``iter``, ``n_resources`` and params row by row, and mean
test scores within 1e-9. Reported: wall time of each ``fit``, its single-core work (the sum of
``fit_time`` over every fit: for a grown fit, the new trees only; wall seconds inside the
workers, so other load inflates them), the CPU seconds our Dask workers used (robust to other
load), this process's and its children's CPU, the best candidate and its score, and the CPU
other processes used meanwhile.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import N_WORKERS, OtherLoad, code, load_average, local_cluster, machine, write_config

SCORER = "neg_root_mean_squared_error"
FOLDS = 3
TOLERANCE = 1e-9
GROWN, REFIT, SKLEARN = "ours, grown (grow_ensembles=True)", "ours, refit", "scikit-learn HalvingGridSearchCV(n_jobs=2)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="synthetic rows generated before cleaning (default 30000, 10000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="10 000 rows, 9 candidates up to 27 trees: a check that everything runs")
    args = parser.parse_args(argv)
    rows = args.rows or (10_000 if args.quick else 30_000)
    print(f"machine: {machine()}")
    print(f"code: {code()}; {rows} rows before cleaning, {FOLDS} folds, scorer {SCORER}")
    X, y, folds, pipeline = _rows(rows)
    grid = {"model__max_depth": [4, 8, 12] if args.quick else [4, 6, 8, 10, 12, 14, 16, 18, None], "model__min_samples_leaf": [1, 5, 20]}
    settings = {"resource": "model__n_estimators", "factor": 3, "min_resources": 3, "max_resources": 27 if args.quick else 81,
                "cv": folds, "scoring": SCORER, "refit": False, "return_train_score": False}
    said = {name: value for name, value in settings.items() if name != "cv"}
    print(f"{len(y)} rows after cleaning; {len(grid['model__max_depth']) * 3} candidates; {said}")
    results = {}
    with local_cluster() as client:
        from sklearn.experimental import enable_halving_search_cv  # noqa: F401
        from sklearn.model_selection import HalvingGridSearchCV

        import gridsearch

        searches = {
            GROWN: gridsearch.HalvingGridSearchCV(pipeline, grid, client=client, grow_ensembles=True, **settings),
            REFIT: gridsearch.HalvingGridSearchCV(pipeline, grid, client=client, **settings),
            SKLEARN: HalvingGridSearchCV(pipeline, grid, n_jobs=N_WORKERS, **settings),
        }
        for name, search in searches.items():
            before = _workers_cpu(client)
            results[name] = _timed(name, search, X, y)
            results[name]["workers"] = _workers_cpu(client) - before if name != SKLEARN else float("nan")
    print(f"\nload average after the runs: {load_average()}")
    _report(results)
    return 0


def _rows(rows: int) -> tuple[Any, Any, list[Any], Any]:
    """The cleaned synthetic taxi rows, 3 shuffled folds, and the taxi pipeline with a seeded forest, as ``gridsearch run`` makes them."""
    from sklearn.ensemble import RandomForestRegressor

    from gridsearch.search.prepare import prepare_search

    config = {"data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": rows, "seed": 0, "clean": True},
              "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"}, "search": {"params": {"model__alpha": [1.0]}},
              "cv": {"folds": FOLDS, "shuffle": True, "seed": 0}, "scoring": [SCORER], "cache": {"dir": None}}
    with tempfile.TemporaryDirectory(prefix="bench-halving-trees-") as tmp:
        search = prepare_search(write_config(Path(tmp), config))
    pipeline = search.pipeline.set_params(model=RandomForestRegressor(random_state=0), features__geohash__encode__precision=4)
    return search.dataset.X, search.dataset.y, list(search.dataset.folds), pipeline


def _timed(name: str, search: Any, X: Any, y: Any) -> dict[str, Any]:
    """One ``fit``: its wall time, the other processes' CPU meanwhile, and its ``cv_results_``."""
    start = time.perf_counter()
    with OtherLoad() as other:
        search.fit(X, y)
    wall = time.perf_counter() - start
    print(f"{name}: {wall:.1f} s; own cpu {other.own:.1f} s; other processes meanwhile: {other}")
    return {"wall": wall, "other": other.seconds, "own": other.own, "results": search.cv_results_}


def _workers_cpu(client: Any) -> float:
    """CPU seconds the Dask workers' processes have used so far: our work, whatever else runs on the machine."""

    def used() -> float:
        import psutil

        times = psutil.Process().cpu_times()
        return times.user + times.system

    return sum(client.run(used).values())


def _report(results: Mapping[str, Mapping[str, Any]]) -> None:
    reference = results[SKLEARN]["results"]
    print(f"\n{'method':<44} {'wall s':>7} {'vs grown':>9} {'fit work s':>11} {'workers cpu s':>14} {'own cpu s':>10} {'other cpu s':>12}"
          "  best score  best candidate")
    for name, run in results.items():
        table = run["results"]
        work = float(np.sum(table["mean_fit_time"]) * FOLDS)
        best = _best(table)
        print(f"{name:<44} {run['wall']:>7.1f} {run['wall'] / results[GROWN]['wall']:>8.2f}x {work:>11.1f} {run['workers']:>14.1f} {run['own']:>10.1f} "
              f"{run['other']:>12.1f}  {table['mean_test_score'][best]:.5f}  {table['params'][best]}")
    for name in (GROWN, REFIT):
        print(f"{name} vs scikit-learn's: max |mean test score difference| {_difference(results[name]['results'], reference):.1e} "
              f"(same iter, n_resources and params row by row; <= {TOLERANCE:g} required)")
    print("\nsingle-core fit work per round (s; sum of fit_time):")
    print(f"{'round':>5} {'cands':>6} {'trees':>6} " + " ".join(f"{name.split(' (')[0]:>28}" for name in results))
    for number in np.unique(reference["iter"]):
        rows = reference["iter"] == number
        works = [float(np.sum(run["results"]["mean_fit_time"][rows]) * FOLDS) for run in results.values()]
        print(f"{number:>5} {int(rows.sum()):>6} {int(reference['n_resources'][rows][0]):>6} " + " ".join(f"{w:>28.1f}" for w in works))


def _best(table: Mapping[str, Any]) -> int:
    """The best candidate of the last round, as scikit-learn's halving picks it."""
    last = np.flatnonzero(table["iter"] == np.max(table["iter"]))
    return int(last[np.argmax(np.asarray(table["mean_test_score"])[last])])


def _difference(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> float:
    """Max |mean test score difference| row by row; infinite when iter, n_resources or params differ anywhere."""
    same = all(np.array_equal(ours[key], theirs[key]) for key in ("iter", "n_resources")) and \
        [repr(p) for p in ours["params"]] == [repr(p) for p in theirs["params"]]
    return float(np.max(np.abs(np.asarray(ours["mean_test_score"]) - np.asarray(theirs["mean_test_score"])))) if same else float("inf")


if __name__ == "__main__":
    sys.exit(main())
