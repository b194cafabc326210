"""``python -m gridsearch``: each command maps its options onto one library call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

_EPILOG = """examples:
  python -m gridsearch run conf/search.yaml
  python -m gridsearch run conf/search.yaml --set cv.folds=5 --set data.rows=20000
  python -m gridsearch run conf/search.yaml --scheduler tcp://127.0.0.1:8786
  python -m gridsearch run conf/search.yaml --dry-run
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gridsearch",
        description="Grid search for scikit-learn pipelines on Dask: each distinct preprocessing runs once, "
        "every fit is appended to a run log, results come back as scikit-learn's cv_results_.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="validate a search config, run every (candidate, fold) fit on Dask, print the leaderboard",
        description="Validate the config (keys, step__param names, data) before any work, then fit every "
        "(candidate, fold) on a Dask cluster, appending each result to the run log <log>/<search id>/. "
        "Rerunning the same search skips the fits its log already holds.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("config", help="search YAML, e.g. conf/search.yaml")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value (YAML syntax), e.g. --set cv.folds=5; repeatable")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="address of a running Dask scheduler (default: start a LocalCluster on 127.0.0.1)")
    run.add_argument("--workers", type=int, metavar="N", help="LocalCluster worker processes (default: one per core)")
    run.add_argument("--dry-run", action="store_true",
                     help="validate and count candidates, fits and shared preprocessing; compute nothing")
    run.add_argument("--top", type=int, default=10, metavar="N", help="leaderboard rows to print (default: 10)")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no leaderboard")
    run.set_defaults(handler=_run)
    _add_cache(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    from gridsearch.errors import GridsearchError
    from kampai.errors import KampaiError

    try:
        return args.handler(args)
    except (GridsearchError, KampaiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from gridsearch.config import parse_overrides
    from gridsearch.engine import prepare_search, run

    overrides = parse_overrides(args.overrides)
    if args.scheduler:
        overrides["cluster.address"] = args.scheduler
    if args.workers is not None:
        overrides["cluster.workers"] = args.workers
    if args.dry_run:
        search = prepare_search(args.config, **overrides)
        print(f"{search.config.source}: valid. {search.plan.summary()}")
        print(f"search id {search.search_id}; run log would be {search.log_path}")
        return 0
    run(args.config, progress=not args.quiet, top=args.top, **overrides)
    return 0


def _add_cache(commands: argparse._SubParsersAction) -> None:
    cache = commands.add_parser(
        "cache",
        help="show or clear the memo of raw pipeline stages shared by searches",
        description="The memo (joblib Memory) holds fitted raw stages, such as the geohash branch, per data, fold "
        "and parameters, so later searches on the same data load them instead of recomputing.",
        epilog="examples:\n  python -m gridsearch cache info\n  python -m gridsearch cache clear --dir /shared/cache",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cache.add_argument("action", choices=["info", "clear"], help="info: entries, size and hits; clear: delete every entry")
    cache.add_argument("--dir", default="cache", help="the memo directory, the config's cache.dir (default: cache)")
    cache.set_defaults(handler=_cache)


def _cache(args: argparse.Namespace) -> int:
    from kampai.cache import cache_info, clear_cache

    info = (clear_cache if args.action == "clear" else cache_info)(args.dir)
    verb = "cleared " if args.action == "clear" else ""
    print(f"{verb}{info.location}: {info.entries} entries, {info.bytes / 2**20:.1f} MiB; "
          f"{info.hits} stages loaded from the memo, {info.misses} computed in recorded runs")
    return 0
