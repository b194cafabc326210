"""Successive halving on the taxi grid, side by side in one run: ours vs scikit-learn's vs our exhaustive grid.

    python bench/bench_halving.py [--rows 200000] [--quick] [--repeat N]

The data: ``synthetic-taxifare`` (kampai's generator), ``--rows`` trips before cleaning
(default 200 000), pipeline ``kampai.pipeline:taxifare_pipeline``, 5 shuffled folds,
scorer ``neg_root_mean_squared_error`` alone (a second one would cost ours only), halving
``factor: 3`` over ``n_samples`` (``min_resources: exhaust``), ``search.seed: 0``.

The grid, 204 candidates: geohash precision {4, 5, 6} x Ridge alpha logspace(-3, 3, 30) x
fit_intercept {true, false} (180), plus DecisionTreeRegressor on precision 4 (dense
features) x max_depth {4, 6, 8, 10, 12, 14} x min_samples_leaf {5, 20, 50, 100} (24). Trees
on the sparse one-hot cells of precision 5 and 6 take 10-20 s a fit at 160k rows, which
would make the exhaustive run an hour; Ridge on them takes well under a second.
``--quick``: 20 000 rows, 44 candidates (precision {4, 5} x 10 alphas x fit_intercept, 4 trees).

Methods, each in a fresh Python process (a subprocess of this script), so each one's
imports, data loading and cluster or loky start-up count the same way (the process's wall
time is the measure; the method's own time inside it is printed too):

1. ours, halving: ``gridsearch.run(config with search.strategy: halving)``, memo off;
2. scikit-learn's ``HalvingGridSearchCV(n_jobs=2)`` on the same pipeline, candidates (in the
   run's order), folds (``cv=list(dataset.folds)``), settings and ``random_state``,
   ``refit=False``; its rows are ``prepare_search``'s, as ours;
3. ours, exhaustive: ``gridsearch.run(same config, strategy grid)``, memo off.

Checked: ours' halving rows equal scikit-learn's (same ``iter``, ``n_resources`` and params
row by row, mean test scores to 1e-9). Reported: wall ratios, each method's best candidate
and score, the halving best's gap to the exhaustive best (its last-round score, and its
score on every row from the exhaustive table: the fair comparison), scikit-learn's
single-core work (fit + score times) against ours (the busy time in our log), per round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import N_WORKERS, OtherLoad, code, load_average, machine, write_config

SCORER = "neg_root_mean_squared_error"
FOLDS = 5
TOLERANCE = 1e-9
HALVING = {"strategy": "halving", "factor": 3, "resource": "n_samples", "seed": 0}
OURS_HALVING, SKLEARN_HALVING, OURS_GRID = "ours, halving", "scikit-learn HalvingGridSearchCV(n_jobs=2)", "ours, exhaustive grid"
METHODS = (OURS_HALVING, SKLEARN_HALVING, OURS_GRID)


def _grids(quick: bool) -> list[dict[str, Any]]:
    """The search's grids in config form (see the module docstring)."""
    ridge = {
        "features__geohash__encode__precision": [4, 5] if quick else [4, 5, 6],
        "model": ["sklearn.linear_model.Ridge"],
        "model__alpha": {"logspace": [-3, 3, 10 if quick else 30]},
        "model__fit_intercept": [True, False],
    }
    tree = {
        "features__geohash__encode__precision": [4],
        "model": ["sklearn.tree.DecisionTreeRegressor"],
        "model__max_depth": [4, 8] if quick else [4, 6, 8, 10, 12, 14],
        "model__min_samples_leaf": [5, 50] if quick else [5, 20, 50, 100],
        "model__random_state": [0],
    }
    return [ridge, tree]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.child is not None:
        print(json.dumps(_child(args.child, args.config)))
        return 0
    rows = args.rows or (20_000 if args.quick else 200_000)
    print(f"machine: {machine()}")
    print(f"code: {code()}; {rows} rows before cleaning, {'quick grid' if args.quick else 'full grid'}, {FOLDS} folds, scorer {SCORER}")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in METHODS}
    with tempfile.TemporaryDirectory(prefix="bench-halving-") as tmp:
        for repeat in range(args.repeat):
            root = Path(tmp) / f"repeat-{repeat}"  # fresh logs: nothing is resumed
            for name in METHODS:
                strategy = {} if name == OURS_GRID else HALVING
                path = write_config(root / name.split()[0] / ("grid" if name == OURS_GRID else "halving"),
                                    _config(rows, args.quick, strategy, root / "runs"))
                runs[name].append(_spawn(name, path))
    print(f"\nload average after the runs: {load_average()}")
    _report(runs)
    return 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="synthetic rows generated before cleaning (default 200000, 20000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="20 000 rows and 44 candidates: a check that everything runs, not a measurement")
    parser.add_argument("--repeat", type=int, default=1, help="run each method N times (fresh processes) and report medians (default 1)")
    parser.add_argument("--child", choices=METHODS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _config(rows: int, quick: bool, strategy: Mapping[str, Any], log: Path) -> dict[str, Any]:
    return {
        "data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": rows, "seed": 0, "clean": True},
        "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"},
        "search": {"params": _grids(quick), **strategy},
        "cv": {"folds": FOLDS, "shuffle": True, "seed": 0},
        "scoring": [SCORER],
        "cluster": {"address": None, "workers": N_WORKERS},
        "cache": {"dir": None},
        "log": str(log),
    }


def _spawn(name: str, config: Path) -> dict[str, Any]:
    """One fresh process running ``name`` on ``config``; its JSON result with the process's wall time and the other load."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--config", str(config)]
    start = time.perf_counter()
    with OtherLoad() as other:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{name}: process {wall:.1f} s (imports {result['imports']:.1f} s, method {result['method']:.1f} s); "
          f"other processes meanwhile: {other}")
    return {**result, "wall": wall, "other": other.seconds}


# --- in the fresh process ---------------------------------------------------------------------------------------------


def _child(name: str, config: Path) -> dict[str, Any]:
    """Run one method; its rows (iter, n_resources, params, scores, times) and, for ours, the work in its log."""
    start = time.perf_counter()
    import sklearn.model_selection  # noqa: F401 - imported here to time the imports apart

    import gridsearch  # noqa: F401

    imports = time.perf_counter() - start
    start = time.perf_counter()
    result = _sklearn(config) if name == SKLEARN_HALVING else _ours(config)
    return {"imports": imports, "method": time.perf_counter() - start, **result}


def _ours(config: Path) -> dict[str, Any]:
    import gridsearch
    from gridsearch.log.usage import epoch_seconds, worker_usage

    start = time.time()
    result = gridsearch.run(config, progress=False)
    end = time.time()
    records = gridsearch.read_log(result.log_path)
    usage = worker_usage(records, N_WORKERS)
    first, last = np.nanmin(epoch_seconds(records["started"])), np.nanmax(epoch_seconds(records["finished"]))
    return {"rows": _rows(result.cv_results), "busy": usage.busy, "usage": usage.line(), "rounds": _our_rounds(records),
            "run": end - start, "before": float(first - start), "after": float(end - last)}


def _our_rounds(records: Any) -> list[dict[str, float]]:
    """Per round of a halving log (one round for a grid): fits, wall, and fit / scoring / prefix seconds."""
    from gridsearch.log.usage import epoch_seconds

    rounds = records["round"].fillna(0)
    out = []
    for number, part in records.groupby(rounds):
        started, finished = epoch_seconds(part["started"]), epoch_seconds(part["finished"])
        prefixes = part.loc[part["prep_time"] > 0, ["fold", "prep_time"]].drop_duplicates()
        out.append({"round": int(number), "fits": len(part), "wall": float(np.nanmax(finished) - np.nanmin(started)),
                    "fit": float(part["fit_time"].sum()), "score": float(part["score_time"].sum()),
                    "prep": float(prefixes["prep_time"].sum()), "fit_rows": int(part["fit_rows"].max() if part["fit_rows"].notna().any() else 0)})
    return out


def _sklearn(config: Path) -> dict[str, Any]:
    """scikit-learn's halving on the run's rows, candidates (in order) and folds, as ``tests/gridsearch/test_halving_run.py``."""
    from sklearn.base import clone
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingGridSearchCV

    from gridsearch.search.prepare import prepare_search
    from gridsearch.search.space import resolve, step_names

    search = prepare_search(config)
    steps = step_names(search.pipeline)
    grid = [{name: [value] for name, value in resolve(candidate.params, steps).items()} for candidate in search.candidates]
    fitted = HalvingGridSearchCV(clone(search.pipeline), grid, **search.config.space.halving.as_dict(), cv=list(search.dataset.folds),
                                 scoring=SCORER, refit=False, return_train_score=False, random_state=search.config.space.seed,
                                 n_jobs=N_WORKERS)  # no train scores, as gridsearch run
    fitted.fit(search.dataset.X, search.dataset.y)
    results = fitted.cv_results_
    table = {"iter": results["iter"], "n_resources": results["n_resources"], "params": results["params"],
             f"mean_test_{SCORER}": results["mean_test_score"], "mean_fit_time": results["mean_fit_time"],
             "mean_score_time": results["mean_score_time"]}
    return {"rows": _rows(table)}


def _rows(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each row of a ``cv_results`` table as JSON: round, rows, params key, mean test score, single-core seconds."""
    count = len(table["params"])
    rounds = np.asarray(table["iter"]) if "iter" in table else np.zeros(count, dtype=int)
    resources = np.asarray(table["n_resources"]) if "n_resources" in table else np.zeros(count, dtype=int)
    work = (np.asarray(table["mean_fit_time"], dtype=float) + np.asarray(table["mean_score_time"], dtype=float)) * FOLDS
    scores = np.asarray(table[f"mean_test_{SCORER}"], dtype=float)
    return [{"iter": int(rounds[i]), "n_resources": int(resources[i]), "params": _key(table["params"][i]), "score": float(scores[i]),
             "work": float(work[i])} for i in range(count)]


def _key(params: Mapping[str, Any]) -> str:
    """A candidate's params, estimators and import paths both reduced to the class name."""
    def plain(value: Any) -> Any:
        if hasattr(value, "get_params"):
            return type(value).__name__
        if isinstance(value, str) and "." in value:
            return value.rpartition(".")[2]
        return value.item() if isinstance(value, np.generic) else value

    return json.dumps(sorted((name, plain(value)) for name, value in params.items()))


# --- the report --------------------------------------------------------------------------------------------------------


def _report(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """The table, the identity check, the gaps to the exhaustive best, the work per round, the targets."""
    wall = {name: statistics.median(run["wall"] for run in runs[name]) for name in METHODS}
    best = {name: _best(runs[name][0]["rows"]) for name in METHODS}
    full = {row["params"]: row["score"] for row in runs[OURS_GRID][0]["rows"]}
    print(f"\n{'method':<44} {'wall s':>7} {'vs ours halving':>16} {'best score':>11}  best candidate  "
          "(each run: wall s, other processes' cpu-s)")
    for name in METHODS:
        each = ", ".join(f"{run['wall']:.1f} ({run['other']:.0f})" for run in runs[name])
        print(f"{name:<44} {wall[name]:>7.1f} {wall[name] / wall[OURS_HALVING]:>15.2f}x {best[name]['score']:>11.5f}  "
              f"{best[name]['params']}  ({each})")
    diff = max(_difference(ours["rows"], theirs["rows"]) for ours, theirs in zip(runs[OURS_HALVING], runs[SKLEARN_HALVING]))
    print(f"\nours' halving vs scikit-learn's, every run: same iter, n_resources and params row by row, "
          f"max |mean test score difference| {diff:.1e} ({'<=' if diff <= TOLERANCE else 'NOT <='} {TOLERANCE:g})")
    gaps = _gaps(best, full)
    _work(runs)
    speedup = wall[SKLEARN_HALVING] / wall[OURS_HALVING]
    print(f"\ntarget >= 3x faster than {SKLEARN_HALVING} with identical results: {speedup:.2f}x, "
          f"{'met' if speedup >= 3 and diff <= TOLERANCE else 'NOT met'}")
    print(f"target halving best within 1% of the exhaustive best: {gaps[1]:.3f}% on every row "
          f"({gaps[0]:.3f}% by its last-round score): {'met' if gaps[1] <= 1 else 'NOT met'}")


def _best(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The best row of the last round (of a grid: of all rows), by mean test score."""
    last = max(row["iter"] for row in rows)
    return max((row for row in rows if row["iter"] == last), key=lambda row: row["score"])


def _difference(ours: Sequence[Mapping[str, Any]], theirs: Sequence[Mapping[str, Any]]) -> float:
    """Max |score difference| row by row; infinite when iter, n_resources or params differ anywhere."""
    same = len(ours) == len(theirs) and all(
        (a["iter"], a["n_resources"], a["params"]) == (b["iter"], b["n_resources"], b["params"]) for a, b in zip(ours, theirs))
    return float(max(abs(a["score"] - b["score"]) for a, b in zip(ours, theirs))) if same else float("inf")


def _gaps(best: Mapping[str, Mapping[str, Any]], full: Mapping[str, float]) -> tuple[float, float]:
    """The halving best's gap to the exhaustive best in %, by its last-round score and by its score on every row."""
    exhaustive, halving = best[OURS_GRID], best[OURS_HALVING]
    rescored = full[halving["params"]]
    rank = 1 + sum(score > rescored for score in full.values())
    gaps = tuple(100 * (exhaustive["score"] - score) / abs(exhaustive["score"]) for score in (halving["score"], rescored))
    print(f"\nexhaustive best {exhaustive['score']:.5f}; halving best {halving['score']:.5f} on its last round's rows "
          f"({gaps[0]:.3f}% worse), {rescored:.5f} on every row ({gaps[1]:.3f}% worse, rank {rank} of {len(full)} in the exhaustive grid)")
    return gaps[0], gaps[1]


def _work(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Single-core work per round: scikit-learn's fit + score times vs ours' log (first run of each)."""
    theirs, ours = runs[SKLEARN_HALVING][0], runs[OURS_HALVING][0]
    by_round: dict[int, list[Mapping[str, Any]]] = {}
    for row in theirs["rows"]:
        by_round.setdefault(row["iter"], []).append(row)
    print(f"\nsingle-core work per round (seconds; ours from its log, scikit-learn's from cv_results_ fit + score times x {FOLDS}):")
    print(f"{'round':>5} {'cands':>6} {'rows':>7} {'sklearn':>8} {'ours':>7} {'= fits':>7} {'+ score':>8} {'+ prefixes':>11} {'ours wall':>10}")
    for mine in ours["rounds"]:
        rows = by_round.get(mine["round"], [])
        work = mine["fit"] + mine["score"] + mine["prep"]
        print(f"{mine['round']:>5} {len(rows):>6} {mine['fit_rows']:>7} {sum(r['work'] for r in rows):>8.1f} {work:>7.1f} "
              f"{mine['fit']:>7.1f} {mine['score']:>8.1f} {mine['prep']:>11.1f} {mine['wall']:>10.1f}")
    total = sum(row["work"] for row in theirs["rows"])
    print(f"total: scikit-learn {total:.1f} s, ours {ours['busy']:.1f} s (its log, prefixes once each): limit {total / ours['busy']:.2f}x")
    for name in (OURS_HALVING, OURS_GRID):
        run = runs[name][0]
        print(f"{name}: gridsearch.run {run['run']:.1f} s = {run['before']:.1f} s before its first fit started "
              f"(data, plan, pilot, cluster start-up) + {run['run'] - run['before'] - run['after']:.1f} s of fits "
              f"+ {run['after']:.1f} s after its last; {run['usage']}")


if __name__ == "__main__":
    sys.exit(main())
