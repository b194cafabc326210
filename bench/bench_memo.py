"""A grid whose preprocessing matters: GridSearchCV(n_jobs=2), ours cold and ours warm, side by side.

    python bench/bench_memo.py [--rows 200000] [--repeat 3] [--precisions 4,5,6,7] [--alphas 0.1,10]

The taxi-fare pipeline on synthetic trips in the raw Kaggle form (pickup times are strings
such as ``2013-06-03 08:15:00 UTC``, parsed by the time-features stage), several geohash
precisions, a cheap model (Ridge, few alphas), 3 folds. Every method gets the engine's own
rows and folds, so the scores must agree (checked to 1e-9, printed).

Per repeat: ``GridSearchCV(n_jobs=2)``; ours cold (new memo dir, new log); ours warm (the same
memo dir, new log, so nothing is resumed). The memo decides per raw stage what to store
(:class:`kampai.cache.MemoPolicy`); the report says how many stages each run computed and
loaded, warm / cold per repeat, and the share of the cold run's worker time spent in
preprocessing (raw stages and prefixes, from its log: :mod:`gridsearch.log.usage`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from bench_search import FOLDS, SCORING, TOLERANCE, _as_dict, _best, _ours, _prepare, _scores, _sklearn
from common import Timing, cache_section, code, load_average, local_cluster, machine, timed, write_config

REFERENCE = "GridSearchCV(n_jobs=2)"
METHODS = (REFERENCE, "ours, cold", "ours, warm")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    print(f"machine: {machine()}")
    print(f"code: {code()}")
    with tempfile.TemporaryDirectory(prefix="bench-memo-") as tmp, local_cluster() as client:
        root = Path(tmp)
        address = client.scheduler.address
        prepared = _prepare(root, _config(args, address, root / "cache-probe", root / "runs-probe"))
        print(f"data: {len(prepared.dataset.X)} rows after cleaning (data.rows={args.rows}), {prepared.plan.summary()}")
        timings = {name: Timing() for name in METHODS}
        for repeat in range(args.repeat):
            timed(partial(_sklearn, prepared, n_jobs=2), timings[REFERENCE])
            for name in METHODS[1:]:
                log = f"runs-{repeat}-{name.rpartition(' ')[2]}"
                path = write_config(root / log, _config(args, address, root / f"cache-{repeat}", root / log))
                timed(partial(_ours, path), timings[name])
        print(f"\nload average after the runs: {load_average()}")
        _report(timings)
    return 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="synthetic trips generated before cleaning (default 200000)")
    parser.add_argument("--repeat", type=int, default=1, help="run each method N times and report the median (default 1)")
    parser.add_argument("--precisions", type=_numbers(int), default=[4, 5, 6, 7], help="geohash precisions (default 4,5,6,7)")
    parser.add_argument("--alphas", type=_numbers(float), default=[0.1, 10.0], help="Ridge alphas (default 0.1,10)")
    return parser.parse_args(argv)


def _numbers(kind: type) -> Any:
    return lambda text: [kind(part) for part in text.split(",") if part.strip()]


def _config(args: argparse.Namespace, address: str, cache: Path, log: Path) -> dict[str, Any]:
    return {
        "data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": args.rows, "seed": 0, "clean": True},
        "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"},
        "search": {"params": {"features__geohash__encode__precision": args.precisions, "model": ["sklearn.linear_model.Ridge"],
                              "model__alpha": args.alphas}},
        "cv": {"folds": FOLDS, "shuffle": True, "seed": 0},
        "scoring": SCORING,
        "cluster": {"address": address},
        "cache": cache_section(cache, "all"),
        "log": str(log),
    }


def _report(timings: dict[str, Timing]) -> None:
    reference = timings[REFERENCE]
    if not reference.values:
        print(f"{REFERENCE} failed: {reference.error}")
        return
    print(f"\n{'method':<24} {'wall s':>7} {'vs ' + REFERENCE:>28}  max |score diff|  own cpu-s  each run: wall s (other processes' cpu-s)")
    for name, timing in timings.items():
        if timing.error is not None:
            print(f"{name:<24} {'failed':>7}  {timing.error}")
            continue
        print(f"{name:<24} {timing.median:>7.1f} {reference.median / timing.median:>27.2f}x  {_score_difference(reference, timing):>16.1e}  "
              f"{statistics.median(timing.own):>9.1f}  {timing.runs()}")
    worst = max(_score_difference(reference, timing) for timing in timings.values() if timing.values)
    print(f"max |score difference| from {REFERENCE} over all candidates, folds, scorers and runs: {worst:.1e} "
          f"({'<=' if worst <= TOLERANCE else '>'} {TOLERANCE:g}, same best candidate: {'yes' if np.isfinite(worst) else 'NO'})")
    cold, warm = timings["ours, cold"], timings["ours, warm"]
    if not (cold.seconds and warm.seconds):
        return
    ratios = [c / w for c, w in zip(cold.seconds, warm.seconds)]
    print(f"\nwarm speed-up over cold (cold wall / warm wall) per repeat: {', '.join(f'{r:.2f}x' for r in ratios)}; "
          f"median {statistics.median(ratios):.2f}x (of the medians: {cold.median / warm.median:.2f}x); warm >= cold in every repeat: {'yes' if min(ratios) >= 1 else 'NO'}")
    print(f"our processes' cpu-s, cold / warm per repeat (less sensitive to other load than wall): "
          f"{', '.join(f'{c:.1f} / {w:.1f}' for c, w in zip(cold.own, warm.own))}")
    for name, timing in (("ours, cold", cold), ("ours, warm", warm)):
        stages = "; ".join(f"{r.stages_computed} computed + {r.stages_from_memo} from the memo" for r in timing.values)
        usage = timing.values[timing.quietest].usage
        preprocessing = (usage.prep_time + usage.memo_time) / usage.busy
        print(f"{name}: raw stage tasks per run: {stages}")
        print(f"  {usage.line()}; preprocessing {preprocessing:.0%} of its single-core work {usage.busy:.1f} s (the quietest run)")


def _score_difference(reference: Timing, timing: Timing) -> float:
    """Max |score difference| from the reference's first run over every repeat; inf when the candidates or the best differ."""
    ref_scores, ref_best = _scores(reference.values[0], FOLDS), _best(reference.values[0])
    worst = 0.0
    for value in timing.values:
        results = _as_dict(value)
        scores = _scores(results, FOLDS)
        if not scores.index.equals(ref_scores.index) or _best(results) != ref_best:
            return float("inf")
        worst = max(worst, float(np.nanmax(np.abs(scores.to_numpy() - ref_scores.to_numpy()))))
    return worst

if __name__ == "__main__":
    sys.exit(main())
