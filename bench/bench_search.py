"""The taxifare grid, side by side in one run: our engine cold and warm vs scikit-learn and dask-ml.

    python bench/bench_search.py [--rows 50000] [--quick] [--repeat N] [--stages all|A,B] [--profile DIR] [--config conf/search.yaml]

48 candidates x 3 folds: geohash precision {5, 6} x (Ridge with 20 alphas; RandomForest
n_estimators {5, 10} x max_depth {4, 8}, random_state 0). Every method gets the engine's
own rows and folds (``gridsearch.prepare_search(...).dataset``), so every method must give
the same best candidate and the same scores (checked to 1e-9, printed).

Methods: ``GridSearchCV(n_jobs=2)`` (the reference of every ratio), ``GridSearchCV`` on a
``Pipeline(memory=...)`` (a fresh joblib store per repeat), our engine cold (fresh cache and
log dirs) and warm (same cache dir, new log dir, so nothing is resumed), and dask-ml's
``GridSearchCV`` (optional: ``pip install -e '.[bench]'``) on the same LocalCluster as
our engine. Cluster start-up is outside every timing.

``--config`` runs a search YAML's data, pipeline, grid, cv and scoring instead (e.g. the
default grid, ``conf/search.yaml``). The report ends with the *limit*: scikit-learn's
single-core work (its ``mean_fit_time + mean_score_time`` x folds over candidates) over
ours (the busy time of our run log, :mod:`gridsearch.log.usage`), the best speed-up our
sharing allows on the same cores, and the measured wall ratio as a share of it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from common import Timing, busy_line, cache_form, cache_section, code, load_average, local_cluster, machine, timed, write_config

SCORING = ["neg_root_mean_squared_error", "r2"]
FOLDS = 3
TOLERANCE = 1e-9
# The grid in config form (import paths for swapped steps); sklearn and dask-ml get it resolved.
GRIDS: list[dict[str, list[Any]]] = [
    {
        "features__geohash__encode__precision": [5, 6],
        "model": ["sklearn.linear_model.Ridge"],
        "model__alpha": np.logspace(-3, 3, 20).tolist(),
    },
    {
        "features__geohash__encode__precision": [5, 6],
        "model": ["sklearn.ensemble.RandomForestRegressor"],
        "model__n_estimators": [5, 10],
        "model__max_depth": [4, 8],
        "model__random_state": [0],
        "model__n_jobs": [1],
    },
]
REFERENCE = "GridSearchCV(n_jobs=2)"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    rows = 10_000 if args.quick and args.rows is None else args.rows or 50_000
    make_config = partial(_config, rows) if args.config is None else partial(_config_file, args.config)
    print(f"machine: {machine()}")
    print(f"code: {code()}; config cache form accepted now: {cache_form()}; memoised stages: {args.stages}")
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp, local_cluster() as client:
        root = Path(tmp)
        address = client.scheduler.address
        config = make_config(address, root / "cache-probe", root / "runs-probe", args.stages)
        prepared = _prepare(root, config)
        dataset = prepared.dataset
        print(f"data: {len(dataset.X)} rows after cleaning (data.rows={config['data'].get('rows')}), {prepared.plan.summary()}")
        timings = {name: Timing() for name in (REFERENCE, "GridSearchCV + Pipeline(memory)", "ours, cold", "ours, warm", "dask-ml GridSearchCV")}
        streams: dict[str, list[list[Any]]] = {}
        dask_ml = _import_dask_ml()
        if isinstance(dask_ml, str):
            timings["dask-ml GridSearchCV"].error = dask_ml
        for repeat in range(args.repeat):
            timed(partial(_sklearn, prepared, n_jobs=2), timings[REFERENCE])
            timed(partial(_sklearn, prepared, n_jobs=2, memory=root / f"joblib-{repeat}"), timings["GridSearchCV + Pipeline(memory)"])
            cache = root / f"cache-{repeat}"
            for name, log in (("ours, cold", f"runs-{repeat}-cold"), ("ours, warm", f"runs-{repeat}-warm")):
                path = write_config(root / f"{repeat}-{log}", make_config(address, cache, root / log, args.stages))
                with _observed(client, args.profile, name, streams):
                    timed(partial(_ours, path), timings[name])
            with _observed(client, args.profile, "dask-ml GridSearchCV", streams):
                timed(partial(_dask_ml, dask_ml, prepared, client), timings["dask-ml GridSearchCV"])
        print(f"\nload average after the runs: {load_average()}")
        _report(timings, streams, prepared.plan.folds)
    return 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="synthetic rows generated before cleaning (default 50000, 10000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="10 000 rows: a check that everything runs, not a measurement")
    parser.add_argument("--repeat", type=int, default=1, help="run each method N times and report the median (default 1)")
    parser.add_argument("--stages", type=_stages, default=["features__geohash"], metavar="all|A,B",
                        help="raw stages our engine memoises in its cache: 'all' or a comma-separated list (default features__geohash)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="write a Dask performance report (HTML) per Dask method into DIR")
    parser.add_argument("--config", type=Path, default=None, metavar="YAML",
                        help="run this search YAML's data, pipeline, grid, cv and scoring instead of the built-in grid (--rows is ignored)")
    return parser.parse_args(argv)


def _stages(text: str) -> list[str] | str:
    return "all" if text == "all" else [stage.strip() for stage in text.split(",") if stage.strip()]


def _config(rows: int, address: str, cache: Path, log: Path, stages: list[str] | str) -> dict[str, Any]:
    return {
        "data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": rows, "seed": 0, "clean": True},
        "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"},
        "search": {"params": GRIDS},
        "cv": {"folds": FOLDS, "shuffle": True, "seed": 0},
        "scoring": SCORING,
        "cluster": {"address": address},
        "cache": cache_section(cache, stages),
        "log": str(log),
    }


def _config_file(path: Path, address: str, cache: Path, log: Path, stages: list[str] | str) -> dict[str, Any]:
    """A search YAML with this benchmark's cluster, cache and log."""
    config = yaml.safe_load(path.read_text())
    return {**config, "cluster": {"address": address}, "cache": cache_section(cache, stages), "log": str(log)}


def _prepare(root: Path, config: Mapping[str, Any]) -> Any:
    import gridsearch

    start = time.perf_counter()
    prepared = gridsearch.prepare_search(write_config(root / "probe", config))
    print(f"prepare_search (load, clean, validate, expand, plan; included in our engine's times): {time.perf_counter() - start:.2f} s")
    return prepared


def _ours(path: Path) -> Any:
    import gridsearch

    result = gridsearch.run(path, progress=False)
    if result.n_resumed:
        raise RuntimeError(f"{result.n_resumed} fits resumed from an earlier log; warm must not resume")
    return result


def _estimator_grids(prepared: Any) -> list[dict[str, list[Any]]]:
    """The search's candidates in its order, one point grid each, import paths of swapped steps turned into estimators."""
    return [{name: [_estimator(v) if name == "model" else v] for name, v in candidate.params.items()} for candidate in prepared.candidates]


def _estimator(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)()


def _sklearn(prepared: Any, n_jobs: int, memory: Path | None = None) -> dict[str, Any]:
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    pipeline = clone(prepared.pipeline)
    if memory is not None:
        pipeline.set_params(memory=str(memory))
    search = GridSearchCV(pipeline, _estimator_grids(prepared), scoring=SCORING, cv=list(prepared.dataset.folds), refit=False, n_jobs=n_jobs)
    return search.fit(prepared.dataset.X, prepared.dataset.y).cv_results_


def _import_dask_ml() -> Any:
    try:
        from dask_ml.model_selection import GridSearchCV
    except ImportError as exc:
        return f"not installed ({exc}); pip install -e '.[bench]'"
    return GridSearchCV


def _dask_ml(grid_search_cv: Any, prepared: Any, client: Any) -> dict[str, Any]:
    from sklearn.base import clone

    # iid=False: the plain mean over folds, as scikit-learn >= 0.24 and our engine compute it.
    search = grid_search_cv(clone(prepared.pipeline), _estimator_grids(prepared), scoring=SCORING, cv=list(prepared.dataset.folds),
                            refit=False, iid=False, scheduler=client)
    return search.fit(prepared.dataset.X, prepared.dataset.y).cv_results_


@contextlib.contextmanager
def _observed(client: Any, profile: Path | None, name: str, streams: dict[str, list[list[Any]]]) -> Iterator[None]:
    """Record the task stream of a Dask method into ``streams[name]`` (and a performance report with ``--profile``)."""
    from distributed import get_task_stream, performance_report

    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(get_task_stream(client))
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
            stack.enter_context(performance_report(filename=str(profile / f"{slug}.html")))
        yield
    streams.setdefault(name, []).append(list(stream.data))


def _key(params: Mapping[str, Any]) -> str:
    """A candidate's params with estimators and import paths both reduced to the class name."""
    def plain(value: Any) -> Any:
        if hasattr(value, "get_params"):
            return type(value).__name__
        if isinstance(value, str) and "." in value:
            return value.rpartition(".")[2]
        return value

    return repr(sorted((name, plain(value)) for name, value in params.items()))


def _as_dict(value: Any) -> Mapping[str, Any]:
    """``cv_results_`` of any method as a mapping (ours: a SearchResult whose table is a DataFrame)."""
    table = getattr(value, "cv_results", value)
    return {c: table[c] for c in table.columns} if isinstance(table, pd.DataFrame) else table


def _scores(results: Mapping[str, Any], folds: int) -> pd.DataFrame:
    """Split and mean test scores per candidate, indexed by :func:`_key`."""
    columns = [f"{kind}_test_{s}" for s in SCORING for kind in (*(f"split{k}" for k in range(folds)), "mean")]
    table = pd.DataFrame({c: np.asarray(results[c], dtype=float) for c in columns}, index=[_key(p) for p in results["params"]])
    return table.sort_index()


def _best(results: Mapping[str, Any]) -> str:
    return _key(list(results["params"])[int(np.argmin(np.asarray(results[f"rank_test_{SCORING[0]}"])))])


def _report(timings: dict[str, Timing], streams: dict[str, list[list[Any]]], folds: int) -> None:
    reference = timings[REFERENCE]
    if not reference.values:
        print(f"{REFERENCE} failed: {reference.error}")
        return
    ref_scores, ref_best = _scores(reference.values[0], folds), _best(reference.values[0])
    print(f"\n{'method':<32} {'wall s':>7} {'vs ' + REFERENCE:>28}  same best  max |score diff|  own cpu-s  "
          "each run: wall s (other processes' cpu-s)")
    worst, all_same = 0.0, True
    for name, timing in timings.items():
        if timing.error is not None:
            print(f"{name:<32} {'failed':>7}  {timing.error}")
            continue
        same, diff = True, 0.0
        for value in timing.values:  # every repeat is checked
            results = _as_dict(value)
            scores = _scores(results, folds)
            same = same and _best(results) == ref_best
            diff = max(diff, float(np.nanmax(np.abs(scores.to_numpy() - ref_scores.to_numpy()))) if scores.index.equals(ref_scores.index) else np.inf)
        worst = max(worst, diff)
        all_same = all_same and same and diff <= TOLERANCE
        print(f"{name:<32} {timing.median:>7.1f} {reference.median / timing.median:>27.2f}x  {'yes' if same else 'NO':>9}  {diff:>16.1e}  "
              f"{statistics.median(timing.own):>9.1f}  {timing.runs()}")
    print(f"\nbest candidate (all methods): {ref_best}" if all_same else "\nMISMATCH: see the table above")
    print(f"max |score difference| over all candidates, folds, scorers and runs: {worst:.1e} ({'<=' if worst <= TOLERANCE else '>'} {TOLERANCE:g})")
    print("\nfrom the run of each Dask method with the least other load:")
    for name, runs in streams.items():
        timing = timings[name]
        if timing.seconds and len(runs) == len(timing.seconds):
            print(f"{name}: {busy_line(runs[timing.quietest], timing.seconds[timing.quietest])}")
    for name in ("ours, cold", "ours, warm"):
        memo = [f"{r.stages_computed} computed + {r.stages_from_memo} from the memo" for r in timings[name].values]
        if memo:
            print(f"{name}: raw stage tasks per run: {'; '.join(memo)}")
    cold = timings["ours, cold"]
    if cold.values:
        _engine_work(cold.values[cold.quietest].cv_results, folds)
    _limit(timings, folds)
    _targets(timings)


def _engine_work(table: pd.DataFrame | None, folds: int) -> None:
    """The work our engine did, from its own log: what 2 cores cannot do faster than."""
    if table is None:
        return
    fit = float(table["mean_fit_time"].sum() * folds)
    score = float(table["mean_score_time"].sum() * folds)
    precision = table["params"].map(lambda p: p["features__geohash__encode__precision"])
    prep = float(table.groupby(precision)["mean_prep_time"].first().sum() * folds)
    print(f"ours, cold, from its log: prep {prep:.1f} s (once per precision and fold) + fits {fit:.1f} s + scoring {score:.1f} s "
          f"= {prep + fit + score:.1f} s of single-core work; / 2 cores = {(prep + fit + score) / 2:.1f} s")
    model = table["params"].map(lambda p: p["model"].rpartition(".")[2])
    by = (table["mean_fit_time"] * folds).groupby([model, precision]).agg(["sum", "count"])
    print("  fit seconds by model and precision: " + ", ".join(
        f"{m} p{p}: {row['sum']:.1f} s ({int(row['count']) * folds} fits)" for (m, p), row in by.iterrows()))


def _limit(timings: dict[str, Timing], folds: int) -> None:
    """The best speed-up our sharing allows (single-core work, scikit-learn's over ours) and the share of it measured."""
    reference = timings[REFERENCE]
    theirs = [float(np.sum(np.asarray(r["mean_fit_time"]) + np.asarray(r["mean_score_time"])) * folds) for r in reference.values]
    print(f"\n{REFERENCE} single-core work, from its cv_results_: {_each(theirs)} s")
    for name in ("ours, cold", "ours, warm"):
        timing = timings[name]
        if not timing.seconds:
            continue
        usages = [result.usage for result in timing.values]
        limit = statistics.median(theirs) / statistics.median(u.busy for u in usages)
        measured = reference.median / timing.median
        print(f"{name}: single-core work from its log {_each([u.busy for u in usages])} s; limit {limit:.2f}x, "
              f"measured {measured:.2f}x = {measured / limit:.0%} of the limit (medians)")
        print(f"  {usages[timing.quietest].line()} (the run with the least other load)")


def _each(values: Sequence[float]) -> str:
    return f"median {statistics.median(values):.1f} (" + ", ".join(f"{v:.1f}" for v in values) + ")"


def _targets(timings: dict[str, Timing]) -> None:
    cold, warm = timings["ours, cold"], timings["ours, warm"]
    if not cold.seconds:
        return
    ratio = timings[REFERENCE].median / cold.median
    checks = [(f"cold >= 2.5x faster than {REFERENCE}", ratio, ratio >= 2.5)]
    if timings["dask-ml GridSearchCV"].seconds:
        ratio = timings["dask-ml GridSearchCV"].median / cold.median
        checks.append(("cold >= 2x faster than dask-ml", ratio, ratio >= 2.0))
    if warm.seconds:
        ratio = cold.median / warm.median
        checks.append(("warm faster than cold", ratio, ratio > 1.0))
    print()
    for text, ratio, met in checks:
        print(f"target {text}: {ratio:.2f}x {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
