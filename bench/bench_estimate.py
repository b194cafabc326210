"""``gridsearch.estimate`` against the real run: predicted vs measured wall time, side by side.

    python bench/bench_estimate.py [--cases default,taxi,taxi-100k]

Cases: the default search (conf/search.yaml, 20 000 rows, 1 000 fits), the taxifare grid of
bench/bench_search.py (48 candidates x 3 folds, 50 000 rows), and the same at 100 000 rows.
Each case is estimated, then run cold (new cache and log dirs) on one shared LocalCluster
(2 workers x 1 thread), so cluster start-up is in neither number. The estimate is for cores
the search has to itself; each real run is compared with it as is, at the load the pilot saw
(its tasks' wall over CPU time), and at the load the run saw (other processes' CPU share,
from /proc/stat, taken off the machine).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from bench_search import FOLDS, GRIDS, SCORING
from common import OtherLoad, cache_section, local_cluster, machine, write_config

ROOT = Path(__file__).resolve().parents[1]


def _cases(root: Path, address: str) -> dict[str, dict[str, Any]]:
    """Each case's config, on the shared cluster, with its own cache and log dirs."""
    default = yaml.safe_load((ROOT / "conf" / "search.yaml").read_text())
    taxi = {"data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": 50_000, "seed": 0, "clean": True},
            "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"}, "search": {"params": GRIDS},
            "cv": {"folds": FOLDS, "shuffle": True, "seed": 0}, "scoring": SCORING}
    cases = {"default": default, "taxi": taxi, "taxi-100k": {**taxi, "data": {**taxi["data"], "rows": 100_000}}}
    return {name: {**config, "cluster": {"address": address}, "cache": cache_section(root / name / "cache", "all"),
                   "log": str(root / name / "runs")} for name, config in cases.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="default,taxi,taxi-100k", help="comma-separated: default, taxi, taxi-100k")
    parser.add_argument("--budget", default="1h", help="the budget the estimate inverts (default 1h)")
    args = parser.parse_args(argv)
    import gridsearch

    print(f"machine: {machine()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp, local_cluster() as client:
        cases = _cases(Path(tmp), client.scheduler.address)
        for name in args.cases.split(","):
            path = write_config(Path(tmp) / name, cases[name])
            with OtherLoad() as load_estimate:
                start = time.perf_counter()
                predicted = gridsearch.estimate(path, args.budget)
                took = time.perf_counter() - start
            print(f"\n== {name}: estimate took {took:.1f} s, other processes {load_estimate}")
            print("\n".join(predicted.lines()))
            with OtherLoad() as load_run:
                start = time.perf_counter()
                gridsearch.run(path, progress=False)
                real = time.perf_counter() - start
            share = min(0.95, load_run.seconds / (real * os.cpu_count()))  # of the machine, taken by other processes
            adjusted = predicted.wall_seconds / (1 - share)
            print(f"real run: {real:.1f} s (other processes {load_run}); predicted {predicted.wall_seconds:.1f} s on idle cores "
                  f"({predicted.wall_seconds / real - 1:+.0%}), {predicted.wall_seconds * predicted.contention:.1f} s at the pilot's load "
                  f"({predicted.wall_seconds * predicted.contention / real - 1:+.0%}), {adjusted:.1f} s at the run's load ({adjusted / real - 1:+.0%})")
            rows.append((name, predicted, took, real, adjusted, load_run))
    print("\n| case | data.rows | fits | estimate took s | predicted s, idle cores | at the pilot's load | real s | error idle "
          "| error at the pilot's load | error at the run's load | other processes during the run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, p, took, real, adjusted, load in rows:
        busy = p.wall_seconds * p.contention
        print(f"| {name} | {p.rows:,} | {p.n_fits:,} | {took:.1f} | {p.wall_seconds:.1f} | {busy:.1f} | {real:.1f} | "
              f"{p.wall_seconds / real - 1:+.0%} | {busy / real - 1:+.0%} | {adjusted / real - 1:+.0%} | {load} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
