"""The log at scale: ``top``, ``show`` and ``export`` on a log of a million records.

    python bench/bench_log_queries.py [--records 1000000] [--repeat 3] [--before DIR] [--keep DIR]

The log is :mod:`bench_report`'s synthetic random search (``records / 5`` candidates x 5
folds, three model kinds with their own params JSON, two scorers, 1 % failed fits), written
once with :class:`gridsearch.log.runlog.RunLog`. Then, ``--repeat`` times each:

- **CLI**: ``python -m gridsearch top LOG``, ``show LOG <12-character id prefix>``, ``export LOG
  --to x.parquet`` and ``export LOG --to r.parquet --records``, each a fresh process, wall time
  including the interpreter's start and imports (what the user waits for);
- **library**: :func:`gridsearch.log.query.top`, ``show``, ``export`` (both kinds) called in one
  process after its imports (timed apart).

Each is reported as wall time and as CPU time (user + sys, of the process for the CLI, of the
call for the library): on a loaded machine the wall time follows the other processes, the CPU
time much less, and on a quiet one the two agree.

``--before DIR`` holds another copy of ``gridsearch`` and ``kampai`` (e.g. ``cp -r gridsearch
kampai DIR``): everything runs on it too, interleaved with this tree (the order alternates by
repeat), and the outputs of both are compared (printed text equal, exported Parquet tables
equal). Writes only under a temp dir (or ``--keep``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import OtherLoad, machine

TARGET_SECONDS = 2.0
COMMANDS = ("top", "show", "export", "export --records")


def _argv(command: str, log: Path, prefix: str, out: Path) -> list[str]:
    """The CLI arguments of ``command`` on ``log``, writing any file under ``out``."""
    if command == "top":
        return ["top", str(log)]
    if command == "show":
        return ["show", str(log), prefix]
    if command == "export":
        return ["export", str(log), "--to", str(out / "results.parquet")]
    return ["export", str(log), "--to", str(out / "records.parquet"), "--records"]


def _env(tree: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = f"{tree}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def cli(command: str, log: Path, prefix: str, out: Path, tree: Path | None) -> tuple[float, str]:
    """Wall seconds of one ``python -m gridsearch <command>`` in a fresh process, and what it printed."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gridsearch", *_argv(command, log, prefix, out)], check=False, capture_output=True,
                          text=True, env=_env(tree), cwd=out)  # not the repository: its gridsearch would shadow --before
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{command} failed: {done.stderr.strip().splitlines()[-1:]}")
    return wall, done.stdout


def library(log: Path, prefix: str, out: Path, tree: Path | None, repeat: int) -> dict[str, Any]:
    """Seconds of each query as a library call, ``repeat`` times, in one fresh process (imports timed apart)."""
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, __file__, "--child-library", str(log), prefix, str(out), str(repeat)],
                          capture_output=True, text=True, env=_env(tree), cwd=out, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child_library(log: str, prefix: str, out: str, repeat: int) -> None:
    start = time.perf_counter()
    from gridsearch.log import query

    seconds: dict[str, Any] = {"imports": time.perf_counter() - start, "module": query.__file__}
    calls: dict[str, Callable[[], object]] = {
        "top": lambda: str(query.top(log)),
        "show": lambda: str(query.show(log, prefix)),
        "export": lambda: query.export(log, Path(out) / "lib-results.parquet"),
        "export --records": lambda: query.export(log, Path(out) / "lib-records.parquet", records=True),
    }
    for name, call in calls.items():
        times, cpu = [], []
        for _ in range(repeat):
            start, start_cpu = time.perf_counter(), time.process_time()
            call()
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        seconds[name], seconds[f"{name} cpu"] = times, cpu
    print(json.dumps(seconds), flush=True)


def same_outputs(before: Path, after: Path, printed: dict[tuple[str, str], str]) -> list[str]:
    """What differs between the two trees' outputs: printed text, exported tables (empty: all equal)."""
    import pyarrow.parquet as pq

    differ = [command for command in ("top", "show") if printed[("before", command)] != printed[("after", command)]]
    for name in ("results.parquet", "records.parquet", "lib-results.parquet", "lib-records.parquet"):
        if not pq.read_table(before / name).equals(pq.read_table(after / name)):
            differ.append(name)
    return differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the log (default: 1 000 000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (default: 3)")
    parser.add_argument("--before", type=Path, metavar="DIR", help="another gridsearch + kampai tree to compare with")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the log here and keep it (reused when present)")
    parser.add_argument("--child-library", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_library:
        log, prefix, out, repeat = args.child_library
        _child_library(log, prefix, out, int(repeat))
        return 0
    from bench_report import FOLDS, candidates, write_log  # not in the library child: its imports are timed

    print(f"run log queries benchmark; {machine()}")
    trees = {"before": args.before.resolve(), "after": None} if args.before else {"after": None}
    other = OtherLoad()
    with tempfile.TemporaryDirectory(prefix="bench-log-") as tmp, other:
        root = args.keep or Path(tmp)
        log = root / "bench-report"
        if not any(log.glob("part-*.arrows")):
            print(f"\nwriting {args.records:,} records ({args.records // FOLDS:,} candidates x {FOLDS} folds) ... ", end="", flush=True)
            print(f"{write_log(log, args.records):.0f} s")
        prefix = next(itertools.islice(candidates(1001), 1000, None))[0][:12]  # the 1001st candidate's (ids start 0000)
        outs = {name: Path(tmp) / name for name in trees}
        walls: dict[tuple[str, str], list[float]] = {}
        cpus: dict[tuple[str, str], list[float]] = {}
        loads: dict[str, list[float]] = {}
        printed: dict[tuple[str, str], str] = {}
        for repeat in range(args.repeat):
            order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
            for command in COMMANDS:
                for name in order:
                    with OtherLoad() as load:
                        wall, printed[(name, command)] = cli(command, log, prefix, outs[name], trees[name])
                    walls.setdefault((name, command), []).append(wall)
                    cpus.setdefault((name, command), []).append(load.own)  # the child's CPU time
                    loads.setdefault(name, []).append(load.seconds)
        calls = {name: library(log, prefix, outs[name], tree, args.repeat) for name, tree in trees.items()}
        _report(args.records, trees, walls, loads, calls)
        _report_cpu(trees, cpus, calls)
        verdict = all(statistics.median(walls[("after", c)]) < TARGET_SECONDS for c in COMMANDS)
        if args.before:
            differ = same_outputs(outs["before"], outs["after"], printed)
            print(f"\noutputs before and after: {'the same' if not differ else 'DIFFERENT: ' + ', '.join(differ)}")
    print(f"target < {TARGET_SECONDS:.0f} s (CLI, median): {'ok' if verdict else 'NOT MET'}")
    print(f"other processes used {other} during the benchmark")
    return 0 if verdict else 1


def _report(records: int, trees: dict[str, Path | None], walls: dict[tuple[str, str], list[float]],
            loads: dict[str, list[float]], calls: dict[str, dict[str, Any]]) -> None:
    print(f"\n{records:,} records; median of {len(next(iter(walls.values())))} [each run], seconds")
    print(f"{'command':<18}" + "".join(f"{f'{name}: CLI':>30}{f'{name}: library':>30}" for name in trees))
    for command in COMMANDS:
        cells = "".join(f"{_cell(walls[(name, command)]):>30}{_cell(calls[name][command]):>30}" for name in trees)
        print(f"{command:<18}{cells}")
    for name in trees:
        print(f"{name}: imports of gridsearch.log.query {calls[name]['imports']:.2f} s ({calls[name]['module']}); "
              f"other processes during its CLI runs: {sum(loads[name]):.1f} cpu-s")


def _report_cpu(trees: dict[str, Path | None], cpus: dict[tuple[str, str], list[float]], calls: dict[str, dict[str, Any]]) -> None:
    print("\nCPU seconds (user + sys) of the same runs, median [each run]")
    print(f"{'command':<18}" + "".join(f"{f'{name}: CLI cpu':>30}{f'{name}: library cpu':>30}" for name in trees))
    for command in COMMANDS:
        cells = "".join(f"{_cell(cpus[(name, command)]):>30}{_cell(calls[name][f'{command} cpu']):>30}" for name in trees)
        print(f"{command:<18}{cells}")


def _cell(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):.2f} [{', '.join(f'{s:.2f}' for s in seconds)}]"


if __name__ == "__main__":
    sys.exit(main())
