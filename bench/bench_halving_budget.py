"""Halving within a budget: the schedule a budget chooses, its predicted time against the real rounds, and the budget kept.

    python bench/bench_halving_budget.py [--budgets 30s,90s] [--rows 100000]

The taxi grid of bench/bench_search.py (48 candidates x 3 folds), ``search.strategy: halving``
(factor 3), one cold run per budget (new cache and log dirs) on one shared LocalCluster
(2 workers x 1 thread), so cluster start-up is in no number. The budget counts from the run's
first line (after loading the data): the pilot, then the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_search import FOLDS, GRIDS, SCORING
from common import OtherLoad, cache_section, local_cluster, machine, write_config

ROUNDS_START = "logging to "  # the line after the pilot and the schedule, before the first round


class _Stamped(io.StringIO):
    """Captured output that notes when each line was written."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.stamps += [(time.perf_counter(), line) for line in text.splitlines() if line.strip()]
        return super().write(text)

    def first(self, prefix: str) -> tuple[float, str]:
        return next((stamp, line) for stamp, line in self.stamps if line.startswith(prefix))


def _config(root: Path, address: str, rows: int, budget: str) -> dict[str, Any]:
    return {"data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": rows, "seed": 0, "clean": True},
            "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"},
            "search": {"params": GRIDS, "strategy": "halving", "factor": 3, "seed": 0, "budget": budget},
            "cv": {"folds": FOLDS, "shuffle": True, "seed": 0}, "scoring": SCORING, "cluster": {"address": address},
            "cache": cache_section(root / "cache", "all"), "log": str(root / "runs")}


def _written(budget: str) -> str:
    """The budget as a run writes it (90s -> 1min30s)."""
    from gridsearch.search.durations import format_duration, parse_duration

    return format_duration(parse_duration(budget))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="30s,90s", help="comma-separated budgets, one run each")
    parser.add_argument("--rows", type=int, default=100_000, help="data.rows (default 100000)")
    args = parser.parse_args(argv)
    import gridsearch

    print(f"machine: {machine()}")
    table = []
    with tempfile.TemporaryDirectory(prefix="bench-halving-budget-") as tmp, local_cluster() as client:
        for budget in args.budgets.split(","):
            root = Path(tmp) / budget
            path = write_config(root, _config(root, client.scheduler.address, args.rows, budget))
            out = _Stamped()
            try:
                with OtherLoad() as load, contextlib.redirect_stdout(out):
                    gridsearch.run(path, progress=True)
                    end = time.perf_counter()
            except gridsearch.GridsearchError as exc:  # a budget the pilot leaves too little of: the one-line refusal
                print(f"\n== budget {budget}: refused: {exc}; other processes {load}")
                continue
            began, _ = out.first("successive halving of ")
            rounds_began, _ = out.first(ROUNDS_START)
            _, line = out.first(f"budget {_written(budget)}:")
            predicted = float(re.search(r"\(predicted ([\d.]+)s", line).group(1)) if "(predicted " in line else float("nan")
            stopped = [text for _, text in out.stamps if text.startswith(f"budget of {_written(budget)} reached")]
            print(f"\n== {line}\n{stopped[0] if stopped else 'every round ran'}")
            print(f"budget counted {end - began:.1f} s (pilot {rounds_began - began:.1f} s, rounds {end - rounds_began:.1f} s against "
                  f"{predicted:.1f} s predicted); other processes {load}")
            table.append((budget, line, end - began, rounds_began - began, end - rounds_began, predicted, bool(stopped), load))
    print("\n| budget | max_resources | budget counted s | pilot s | rounds s | predicted s | error | a round refused | other processes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for budget, line, counted, pilot, rounds, predicted, stopped, load in table:
        chosen = re.search(r"max_resources ([\d,]+)", line)
        print(f"| {budget} | {chosen.group(1) if chosen else '?'} | {counted:.1f} | {pilot:.1f} | {rounds:.1f} | {predicted:.1f} | "
              f"{predicted / rounds - 1:+.0%} | {'yes' if stopped else 'no'} | {load} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
