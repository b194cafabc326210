"""The run log against MLflow: cost per record to append, and time to load a million records.

    python bench/bench_runlog.py [--records 1000000] [--mlflow-runs 300] [--append 100000]

Everything is measured in this one process, side by side, on records shaped like the
engine's (:class:`gridsearch.log.records.FitRecord`: ids, params JSON, two scores, times, worker,
provenance):

- **append, ours**: ``RunLog.append`` of batches of 10 and of 100 records, each batch
  written and flushed at once, as the engine writes each finished task's records;
- **append, MLflow**: the same records, one MLflow run per record as a tracking-server
  user would log them (``create_run`` + one ``log_batch`` of params, metrics and tags +
  ``set_terminated``) into a sqlite store in a temp dir; the store's creation (schema
  migrations) is timed apart. Skipped, with a line saying so, when mlflow is not installed;
- **load**: ``read_log`` of ``--records`` records appended in batches of 100, while the
  writer is still open (what a resumed search reads after a crash: the parts it rolled
  over are compacted, the last one holds up to ``ROLL_MESSAGES`` small messages) and
  after ``RunLog.close`` (every part compacted).

Needs nothing but the project (and mlflow for its line); writes only under a temp dir.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from common import OtherLoad, machine

from gridsearch.log import runlog
from gridsearch.log.records import FitRecord, SearchMeta, Status
from gridsearch.log.runlog import RunLog, read_log

SCORING = ["neg_root_mean_squared_error", "r2"]
LOAD_TARGET_SECONDS = 2.0
LOAD_BATCH = 100


def records(n: int, start: int = 0) -> Iterator[FitRecord]:
    """``n`` run-log records as the engine appends them: 5 folds per candidate, varied values."""
    now = datetime.now(UTC).timestamp()
    for i in range(start, start + n):
        candidate, fold = divmod(i, 5)
        yield FitRecord(
            search_id="3f2a9c1d0e4b5a67",
            candidate_id=f"{candidate * 2654435761 % 2**64:016x}",
            params=json.dumps({"features__geohash__encode__precision": 4 + candidate % 3, "model": "sklearn.linear_model.Ridge",
                               "model__alpha": 10 ** (-3 + (candidate % 30) / 5), "model__fit_intercept": candidate % 2 == 0},
                              sort_keys=True),
            fold=fold, status=Status.OK, scores={"neg_root_mean_squared_error": -4.2 - (i % 997) / 1e4, "r2": 0.7 + (i % 991) / 1e5},
            fit_time=0.004 + (i % 13) / 1e4, score_time=0.001, prep_time=0.05, worker=f"tcp://127.0.0.1:{40000 + i % 2}",
            started=now, finished=now, git_sha="2aeb877c0ffee0ddba11ad5eed0c0de5a1b2c3d4", git_dirty=False,
            package_version="0.1.0", data_fingerprint="0123456789abcdef",
        )


def batches(n: int, size: int, start: int = 0) -> Iterator[list[FitRecord]]:
    for offset in range(start, start + n, size):
        yield list(records(min(size, start + n - offset), offset))


def append_ours(directory: Path, n: int, size: int) -> tuple[float, float]:
    """Seconds per record in ``RunLog.append`` + ``close`` (records built beforehand), and the part of it compacting."""
    ready = list(batches(n, size))
    compacting = [0.0]
    compact = runlog._compact

    def timed_compact(part: Path) -> None:
        start = time.perf_counter()
        compact(part)
        compacting[0] += time.perf_counter() - start

    runlog._compact = timed_compact  # the part rewrites happen inside append (roll-over) and close
    try:
        log = RunLog(directory, SearchMeta("bench", tuple(SCORING), 5))
        start = time.perf_counter()
        for batch in ready:
            log.append(batch)
        log.close()
        total = time.perf_counter() - start
    finally:
        runlog._compact = compact
    return total / n, compacting[0] / n


def append_mlflow(directory: Path, n: int) -> tuple[float, float, str] | str:
    """Seconds per record as one MLflow run each, store creation seconds, and the version; or why skipped."""
    try:
        import mlflow
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        return f"mlflow is not installed ({exc}); pip install mlflow to measure it"
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    start = time.perf_counter()
    client = MlflowClient(tracking_uri=f"sqlite:///{directory / 'mlflow.db'}")
    experiment = client.create_experiment("bench", artifact_location=(directory / "artifacts").as_uri())
    created = time.perf_counter() - start
    rows = list(records(n))
    start = time.perf_counter()
    for row in rows:
        stamp = int(row.finished * 1000)
        run = client.create_run(experiment, start_time=stamp, run_name=f"{row.candidate_id}-{row.fold}")
        values = {**{f"test_{name}": score for name, score in row.scores.items()}, "fit_time": row.fit_time,
                  "score_time": row.score_time, "prep_time": row.prep_time}
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(name, float(value), stamp, 0) for name, value in values.items()],
            params=[Param(name, str(value)) for name, value in json.loads(row.params).items()],
            tags=[RunTag(name, str(getattr(row, name))) for name in ("search_id", "candidate_id", "fold", "status", "worker", "git_sha",
                                                                     "git_dirty", "package_version", "data_fingerprint")],
        )
        client.set_terminated(run.info.run_id, end_time=stamp)
    return (time.perf_counter() - start) / n, created, mlflow.__version__


def load(directory: Path, n: int) -> dict[str, Any]:
    """``read_log`` seconds for ``n`` records, with the writer open (as after a crash) and after close."""
    log = RunLog(directory, SearchMeta("bench", tuple(SCORING), 5))
    start = time.perf_counter()
    for batch in batches(n, LOAD_BATCH):
        log.append(batch)
    written = time.perf_counter() - start
    open_messages = [_messages(part) for part in sorted(directory.glob("part-*.arrows"))]
    as_written = _timed_reads(lambda: read_log(directory), n)
    start = time.perf_counter()
    log.close()
    compact = time.perf_counter() - start
    parts = sorted(directory.glob("part-*.arrows"))
    return {"as_written": as_written, "compacted": _timed_reads(lambda: read_log(directory), n), "close": compact,
            "write": written, "mib": sum(p.stat().st_size for p in parts) / 2**20, "open_messages": open_messages,
            "messages": [_messages(part) for part in parts]}


def _messages(part: Path) -> int:
    with pa.ipc.open_stream(pa.OSFile(str(part))) as reader:
        return sum(1 for _ in reader)


def _timed_reads(read: Callable[[], Any], n: int, repeats: int = 3) -> list[tuple[float, float]]:
    """(wall, kernel CPU) seconds of each read: kernel time is the VM backing fresh memory pages."""
    seconds = []
    for _ in range(repeats):
        kernel = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        start = time.perf_counter()
        frame = read()
        seconds.append((time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_stime - kernel))
        assert len(frame) == n, (len(frame), n)
        del frame
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records to load with read_log (default: 1 000 000)")
    parser.add_argument("--append", type=int, default=100_000, help="records appended to our log per batch size (default: 100 000)")
    parser.add_argument("--mlflow-runs", type=int, default=300, help="records logged to MLflow, one run each (default: 300)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"run log benchmark; {machine()}; pyarrow {pa.__version__}")
    other = OtherLoad()
    with tempfile.TemporaryDirectory(prefix="bench-runlog-") as tmp, other:
        root = Path(tmp)
        ours = {size: append_ours(root / f"append-{size}", args.append, size) for size in (10, 100)}
        print(f"\nappend, our run log: RunLog.append, each batch written and flushed, then close ({args.append:,} records per line)")
        for size, (per_record, compacting) in ours.items():
            print(f"  batches of {size:>3}: {per_record * 1e6:6.2f} µs/record, of which {compacting * 1e6:.2f} rewriting parts in large messages")
        theirs = append_mlflow(root / "mlflow", args.mlflow_runs)
        if isinstance(theirs, str):
            print(f"\nappend, MLflow: skipped: {theirs}")
        else:
            per_record, created, version = theirs
            print(f"\nappend, MLflow {version}: one run per record (create_run + log_batch + set_terminated), sqlite store, "
                  f"{args.mlflow_runs} records")
            print(f"  {per_record * 1e6:,.0f} µs/record   (creating the store, not counted: {created:.1f} s)")
            ratios = ", ".join(f"{per_record / ours[size][0]:,.0f}x (batches of {size})" for size in ours)
            print(f"  MLflow / ours: {ratios}")
        result = load(root / "load", args.records)
        medians = {key: statistics.median(wall for wall, _ in result[key]) for key in ("as_written", "compacted")}
        verdict = "ok" if max(medians.values()) < LOAD_TARGET_SECONDS else "TOO SLOW"
        print(f"\nload {args.records:,} records with read_log ({result['mib']:.0f} MiB, appended in batches of {LOAD_BATCH} "
              f"in {result['write']:.1f} s), median of 3 reads [each: wall (kernel CPU) s]:")
        crashed = f"writer still open, as after a crash ({len(result['open_messages'])} parts, {sum(result['open_messages']):,} messages)"
        closed = f"after close ({len(result['messages'])} parts, {sum(result['messages'])} messages; close took {result['close']:.2f} s)"
        for key, label in (("as_written", crashed), ("compacted", closed)):
            reads = ", ".join(f"{wall:.2f} ({kernel:.2f})" for wall, kernel in result[key])
            print(f"  {label}: {medians[key]:.2f} s  [{reads}]")
        print(f"  target < {LOAD_TARGET_SECONDS:.0f} s (median): {verdict}")
    print(f"\nother processes used {other} during the benchmark")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
