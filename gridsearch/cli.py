"""``python -m gridsearch``: each command maps its options onto one library call."""

from __future__ import annotations

import argparse
import atexit
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from gridsearch.search.config import SearchConfig

_EPILOG = """examples:
  python -m gridsearch run conf/search.yaml
  python -m gridsearch run conf/search.yaml --set cv.folds=5 --set data.rows=20000
  python -m gridsearch run conf/search.yaml --scheduler tcp://127.0.0.1:8786
  python -m gridsearch run conf/search.yaml --dry-run
  python -m gridsearch run --resume runs/<search id>
"""
_MORE = """  python -m gridsearch top runs
  python -m gridsearch show runs <candidate id prefix>
  python -m gridsearch export runs/<search id> --to results.parquet
  python -m gridsearch promote runs/<search id> --top 3
  python -m gridsearch curve runs/<search id> --top 3 --sizes 0.1,0.3,1.0
  python -m gridsearch predict --model models:/taxifare@champion --input new.csv --output preds.csv
  python -m gridsearch registry --csv promoted.csv
  python -m gridsearch cache info
  python -m gridsearch report runs --to report.html
  python -m gridsearch explain conf/search.yaml --candidate <candidate id prefix> --fold 0
  python -m gridsearch estimate conf/search.yaml --budget 1h
"""


_OPTIONS = {"n": "-n", "candidates": "--candidate"}  # library parameter -> option, where not --name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gridsearch",
        description="Grid search for scikit-learn pipelines on Dask: each distinct preprocessing runs once, "
        "every fit is appended to a run log, results come back as scikit-learn's cv_results_.",
        epilog=_EPILOG + _MORE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = _command(
        commands,
        "run",
        help="validate a search config, run every (candidate, fold) fit on Dask, print the leaderboard",
        description="Validate the config (keys, step__param names, data) before any work, then fit every "
        "(candidate, fold) on a Dask cluster, appending each result to the run log <log>/<search id>/. "
        "Rerunning the same search skips the fits its log already holds.",
        epilog=_EPILOG,
    )
    run.add_argument("config", nargs="?", help="search YAML, e.g. conf/search.yaml")
    run.add_argument("--resume", metavar="LOG", help="run again the search of this log directory (runs/<search id>) with the config it keeps")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value (YAML syntax), e.g. --set cv.folds=5; repeatable")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="address of a running Dask scheduler (default: start a LocalCluster on 127.0.0.1)")
    run.add_argument("--workers", type=int, metavar="N", help="LocalCluster worker processes (default: one per core)")
    run.add_argument("--budget", metavar="DURATION",
                     help="time limit of this run, e.g. 90s, 30min, 1h30min: no fit is started that would not end in time, what "
                     "still runs at the limit is cancelled, and the fits done are ranked (overrides search.budget; a --resume "
                     "has no limit unless given one; with search.strategy: halving it chooses max_resources, and no round "
                     "starts that would not end in time)")
    run.add_argument("--dry-run", action="store_true",
                     help="validate and count candidates, fits and shared preprocessing; compute nothing")
    run.add_argument("--top", type=int, default=10, metavar="N", help="leaderboard rows to print (default: 10)")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no leaderboard")
    run.set_defaults(handler=_run)
    _add_top(commands)
    _add_show(commands)
    _add_export(commands)
    _add_cache(commands)
    _add_promote(commands)
    _add_curve(commands)
    _add_predict(commands)
    _add_registry(commands)
    _add_report(commands)
    _add_explain(commands)
    _add_estimate(commands)
    return parser


def _command(commands: argparse._SubParsersAction, name: str, **texts: str) -> argparse.ArgumentParser:
    """A subcommand whose description and examples keep their line breaks."""
    return commands.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **texts)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    from gridsearch.errors import ArgumentError, CandidateFailed, GridsearchError, SearchInterrupted
    from kampai.errors import KampaiError

    try:
        return args.handler(args)
    except CandidateFailed as exc:
        print(f"{exc.traceback}\nerror: {exc}", file=sys.stderr)
        return 1
    except ArgumentError as exc:
        print(f"error: {_OPTIONS.get(exc.argument, '--' + exc.argument.replace('_', '-'))}: {exc.problem}", file=sys.stderr)
        return 2
    except (GridsearchError, KampaiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SearchInterrupted as exc:
        print(f"\ninterrupted; every finished fit is in {exc.log_path}. Resume with: python -m gridsearch run --resume {exc.log_path}",
              file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # before a search had a log (starting, validating): nothing to resume
        print("\ninterrupted", file=sys.stderr)
        return 130


def exit_now(status: int) -> NoReturn:
    """End the process with ``status`` once a command is done, without the interpreter's teardown.

    Every log, client and cluster is closed by then: the exit handlers run (weakref finalizers,
    logging, multiprocessing), then the process leaves without tearing down the ~1 000 modules a
    search imports, which took 0.3-0.5 s between the summary and the prompt.
    """
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _run(args: argparse.Namespace) -> int:
    from gridsearch.errors import GridsearchError
    from gridsearch.execute.worker_server import warm_up
    from gridsearch.search.config import load_config, parse_overrides

    if (args.config is None) == (args.resume is None):
        raise GridsearchError("give a config file (python -m gridsearch run conf/search.yaml) or --resume LOG, not both")
    overrides = parse_overrides(args.overrides)
    if args.scheduler:
        overrides["cluster.address"] = args.scheduler
    if args.workers is not None:
        overrides["cluster.workers"] = args.workers
    if args.budget is not None:
        overrides["search.budget"] = args.budget
    if args.resume:
        from gridsearch.execute.engine import config_of_log

        config = config_of_log(args.resume, **overrides)
    else:
        config = load_config(args.config, overrides)
    if args.dry_run:
        return _dry_run(config)
    warm_up(config.cluster)  # the workers import scikit-learn while this process imports the engine
    from gridsearch.execute.engine import run

    run(config, progress=not args.quiet, top=args.top)
    return 0


def _dry_run(config: SearchConfig) -> int:
    """Validate and count (``run --dry-run``), computing nothing."""
    from gridsearch.search.pilot import pilot, pilot_summary
    from gridsearch.search.prepare import prepare_search

    search = prepare_search(config)
    failures = pilot(search)
    print(f"{search.config.source}: valid. {search.plan.summary()}")
    for line in pilot_summary(failures):
        print(line)
    print(f"search id {search.search_id}; run log would be {search.log_path}")
    return 0


def _add_cache(commands: argparse._SubParsersAction) -> None:
    cache = _command(
        commands,
        "cache",
        help="show or clear the memo of raw pipeline stages shared by searches",
        description="The memo (joblib Memory) holds fitted raw stages, such as the geohash branch, per data, fold "
        "and parameters, so later searches on the same data load them instead of recomputing.",
        epilog="examples:\n  python -m gridsearch cache info\n  python -m gridsearch cache clear --dir /shared/cache",
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


def _add_top(commands: argparse._SubParsersAction) -> None:
    top = _command(
        commands,
        "top",
        help="leaderboard of a search's run log, or of every search under a log root",
        description="Rank the candidates recorded in a run log by their mean cross-validated score, as "
        "scikit-learn's rank_test_<scorer>. LOG is one search (runs/<search id>) or a log root (runs): "
        "then all its searches are ranked together. Works while a search is still running.",
        epilog="examples:\n  python -m gridsearch top runs\n  python -m gridsearch top runs/3f2a9c1d0e4b5a67 -n 20 --metric r2\n"
        "  python -m gridsearch top runs --json | jq '.rows[0].params'",
    )
    top.add_argument("log", metavar="LOG", help="a search's log directory, or a log root such as runs")
    top.add_argument("-n", type=int, default=10, metavar="N", help="rows to show (default: 10)")
    top.add_argument("--metric", metavar="NAME", help="scorer to rank by, e.g. r2 (default: the search's first scorer)")
    top.add_argument("--round", dest="round_", type=int, metavar="K",
                     help="of a halving search: rank the candidates of round K (default: the last round)")
    top.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    top.set_defaults(handler=_top)


def _top(args: argparse.Namespace) -> int:
    from gridsearch.log.query import to_json, top

    board = top(args.log, n=args.n, metric=args.metric, round_=args.round_)
    print(to_json(board) if args.json else board)
    return 0


def _add_show(commands: argparse._SubParsersAction) -> None:
    show = _command(
        commands,
        "show",
        help="one candidate in full: params, scores, every fold, errors with tracebacks, warnings",
        description="Print everything the run log holds about one candidate: its params, mean scores and rank, "
        "one row per fold (status, scores, times, worker), errors with their tracebacks, and warnings. "
        "CANDIDATE may be any unique prefix of the id, as in git.",
        epilog="examples:\n  python -m gridsearch show runs 3f2a\n  python -m gridsearch show runs/9a8b7c6d5e4f3a2b 3f2a9c1d --json",
    )
    show.add_argument("log", metavar="LOG", help="a search's log directory, or a log root such as runs")
    show.add_argument("candidate", metavar="CANDIDATE", help="a candidate id or a unique prefix of one (see 'top')")
    show.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    show.set_defaults(handler=_show)


def _show(args: argparse.Namespace) -> int:
    from gridsearch.log.query import show, to_json

    detail = show(args.log, args.candidate)
    print(to_json(detail) if args.json else detail)
    return 0


def _add_export(commands: argparse._SubParsersAction) -> None:
    export = _command(
        commands,
        "export",
        help="write the cv_results table (or every raw record) to Parquet or CSV",
        description="Write scikit-learn's cv_results_ table of a run log, one row per candidate, or with "
        "--records every raw record, one per (candidate, fold) as logged. The format follows the file name "
        "(.parquet, .csv, .csv.gz). Over a log root the searches are stacked with their search_id.",
        epilog="examples:\n  python -m gridsearch export runs/3f2a9c1d0e4b5a67 --to results.parquet\n"
        "  python -m gridsearch export runs --to records.csv --records",
    )
    export.add_argument("log", metavar="LOG", help="a search's log directory, or a log root such as runs")
    export.add_argument("--to", required=True, metavar="FILE", help="output file: .parquet, .csv or .csv.gz")
    export.add_argument("--records", action="store_true", help="every raw record instead of the cv_results table")
    export.add_argument("--json", action="store_true", help="print what was written as JSON (path, rows, columns)")
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from gridsearch.log.query import export, to_json

    written = export(args.log, args.to, records=args.records)
    print(to_json(written) if args.json else written)
    return 0


def _add_promote(commands: argparse._SubParsersAction) -> None:
    promote = _command(
        commands,
        "promote",
        help="refit the best (or chosen) candidates of a search and log them to MLflow as registered models",
        description="Refit each chosen candidate with the production pipeline on the search's full training data, "
        "score it on the held-out split when the config keeps one (data.test_size), and log it to MLflow the way "
        "mlflow.sklearn.autolog logs GridSearchCV: one parent run for the search (its config, best_<param> params, "
        "best_cv_score, the whole cv_results as cv_results.csv) and one child run per promoted candidate (params, CV "
        "and held-out scores, code version, data fingerprint, the real times of its fits, and the model, registered "
        "under registry.model_name, with its code and pip requirements so it loads where this project is not "
        "installed). The best version promoted from the search gets registry.alias (champion). Promoting again "
        "finds the runs it wrote. The store is registry.tracking_uri, else $MLFLOW_TRACKING_URI, else "
        "sqlite:///mlflow.db in the working directory. A search class's log (log=) refits from the estimator and "
        "rows it keeps, as scikit-learn refits best_estimator_.",
        epilog="examples:\n  python -m gridsearch promote runs/3f2a9c1d0e4b5a67 --top 3\n"
        "  python -m gridsearch promote runs --top 3            # a log root holding one search\n"
        "  python -m gridsearch promote runs/3f2a9c1d0e4b5a67 --candidate 9b1e --candidate 04c7\n"
        "  python -m gridsearch promote runs/3f2a9c1d0e4b5a67 --top 3 --all-runs --tag-code taxifare-v3\n"
        "  python -m gridsearch promote runs/3f2a9c1d0e4b5a67 --tracking-uri http://127.0.0.1:5000\n"
        "  mlflow ui   # then open the experiment named after the model: the search's run, its children below it",
    )
    promote.add_argument("log", metavar="LOG", help="a search's run log directory, runs/<search id>, or a log root holding one search")
    which = promote.add_mutually_exclusive_group()
    which.add_argument("--top", type=int, metavar="N", help="promote the N best fully scored candidates (default: 1)")
    which.add_argument("--candidate", dest="candidates", action="append", metavar="ID",
                       help="promote this candidate (id or unique prefix, see 'top'); repeatable")
    promote.add_argument("--all-runs", action="store_true",
                         help="also log every other candidate as a child run, without a model (params, scores, fit times)")
    promote.add_argument("--tag-code", metavar="TAG",
                         help="tag the search's git commit as TAG (e.g. taxifare-v3) and record the tag on the runs and versions")
    promote.add_argument("--tag-dirty", action="store_true",
                         help="with --tag-code: tag even though the search ran on uncommitted changes")
    promote.add_argument("--allow-code-change", action="store_true",
                         help="refit even if the code differs from the code that scored the candidates (recorded in the run)")
    promote.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking store (overrides the config and $MLFLOW_TRACKING_URI)")
    promote.add_argument("--trust-types", action="store_true",
                         help="a search class's log: load its kept estimator even if it holds types of other packages than numpy, "
                         "scipy, sklearn, pandas and this project (loading runs their code); only if you trust who wrote the log")
    promote.set_defaults(handler=_promote)


def _promote(args: argparse.Namespace) -> int:
    from gridsearch.registry.promote import promote, summary

    print(summary(promote(args.log, top=args.top, candidates=args.candidates, allow_code_change=args.allow_code_change,
                          tracking_uri=args.tracking_uri, all_runs=args.all_runs, tag_code=args.tag_code, tag_dirty=args.tag_dirty,
                          trust_types=args.trust_types)))
    return 0


def _add_curve(commands: argparse._SubParsersAction) -> None:
    curve = _command(
        commands,
        "curve",
        help="learning curves: score and fit time of a search's best candidates against their training rows",
        description="Fit the best candidates of a search (or those named) on the first N train rows of each of its "
        "folds, for each size, and score them on the fold's test rows, as sklearn.model_selection.learning_curve "
        "does (without shuffling). The fits run on Dask, each preprocessing once per size and fold, and are logged "
        "in <search log>/curve/, apart from the search's own records; 'report' draws them. Running it again fits "
        "only what that log lacks.",
        epilog="examples:\n  python -m gridsearch curve runs/3f2a9c1d0e4b5a67 --top 3 --sizes 0.1,0.3,1.0\n"
        "  python -m gridsearch curve runs/3f2a9c1d0e4b5a67 --candidate 9b1e --sizes 100,400,1600",
    )
    curve.add_argument("log", metavar="LOG", help="a search's run log directory, runs/<search id>")
    which = curve.add_mutually_exclusive_group()
    which.add_argument("--top", type=int, default=3, metavar="N", help="the N best fully scored candidates (default: 3)")
    which.add_argument("--candidate", dest="candidates", action="append", metavar="ID",
                       help="this candidate instead (id or unique prefix, see 'top'); repeatable")
    curve.add_argument("--sizes", default="0.1,0.3,1.0", metavar="S,S,...",
                       help="training rows per fold: fractions in (0, 1] of fold 0's train rows, or row counts (default: 0.1,0.3,1.0)")
    curve.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler (default: the config's cluster)")
    curve.set_defaults(handler=_curve)


def _curve(args: argparse.Namespace) -> int:
    from gridsearch.execute.curve import curve, parse_sizes

    print(curve(args.log, top=args.top, sizes=parse_sizes(args.sizes), candidates=args.candidates, scheduler=args.scheduler))
    return 0


def _add_predict(commands: argparse._SubParsersAction) -> None:
    predict = _command(
        commands,
        "predict",
        help="predict a CSV or Parquet file with a model from the MLflow registry",
        description="Load a registered model (by alias or version) or a run's model, check that the input has the "
        "columns and types the model was trained on, and write one prediction per row. The format of each "
        "file follows its name (.csv, .csv.gz, .parquet). When this code is not the code that trained the model "
        "(another commit, uncommitted changes, another version), a one-line warning names both; --strict-code "
        "refuses instead. A model whose loading would run code it holds (a pickle or cloudpickle file, a "
        "python_function model, skops told to trust other types than numpy, scipy, sklearn, pandas and this "
        "project's) is refused unless --trust-pickle; promoted models load without it. The store is --tracking-uri, "
        "else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in "
        "the working directory.",
        epilog="examples:\n  python -m gridsearch predict --model models:/taxifare@champion --input new.csv --output preds.csv\n"
        "  python -m gridsearch predict --model models:/taxifare/3 --input test.parquet --output preds.parquet --keep key\n"
        "  python -m gridsearch predict --model runs:/<run id>/model --input new.csv --output preds.csv\n"
        "  python -m gridsearch predict --model models:/taxifare@champion --input new.csv --output preds.csv --strict-code",
    )
    predict.add_argument("--model", required=True, metavar="URI",
                         help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model")
    predict.add_argument("--input", required=True, metavar="FILE", help="rows to predict: .csv, .csv.gz, .parquet")
    predict.add_argument("--output", required=True, metavar="FILE", help="where to write the predictions: .csv, .csv.gz, .parquet")
    predict.add_argument("--keep", action="append", default=[], metavar="COLUMN",
                         help="copy this input column next to the predictions, e.g. --keep key; repeatable")
    predict.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking store holding the model")
    predict.add_argument("--strict-code", action="store_true",
                         help="refuse (instead of warning) when this code is not the code that trained the model")
    predict.add_argument("--trust-pickle", action="store_true",
                         help="load the model even if loading it runs code it holds (pickle, cloudpickle, a python_model); "
                         "only if you trust who logged it")
    predict.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    import warnings

    from gridsearch.registry.code import CodeVersionWarning
    from gridsearch.registry.predict import predict
    from kampai.errors import UntrustedModelError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CodeVersionWarning)
        try:
            written = predict(args.model, args.input, args.output, keep=args.keep, tracking_uri=args.tracking_uri,
                              strict_code=args.strict_code, trust_pickle=args.trust_pickle)
        except UntrustedModelError as exc:
            raise UntrustedModelError(exc.uri, exc.reason, option="--trust-pickle") from None
    for warning in caught:
        if issubclass(warning.category, CodeVersionWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    print(f"{len(written)} predictions of {args.model} written to {args.output}")
    return 0


def _add_registry(commands: argparse._SubParsersAction) -> None:
    registry = _command(
        commands,
        "registry",
        help="list the promoted runs in MLflow with their scores and tags, or export them as CSV",
        description="One row per promoted run (a run with a registered model version): model, version, aliases, "
        "its parent run (the search's run in MLflow), search and candidate ids, rank, code version and tag, CV and "
        "held-out scores, refit time, for comparing trainings across searches. --csv writes every metric, tag and param.",
        epilog="examples:\n  python -m gridsearch registry\n  python -m gridsearch registry --model taxifare --csv promoted.csv\n"
        "  python -m gridsearch registry --search 3f2a9c1d0e4b5a67 --tracking-uri http://127.0.0.1:5000",
    )
    registry.add_argument("--model", metavar="NAME", help="only this registered model (default: all)")
    registry.add_argument("--search", metavar="ID", help="only runs promoted from this search id")
    registry.add_argument("--csv", metavar="FILE", help="also write the full table (every metric, tag and param) to FILE")
    registry.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    registry.set_defaults(handler=_registry)


def _registry(args: argparse.Namespace) -> int:
    from gridsearch.registry.table import format_registry, registry_table

    table = registry_table(args.tracking_uri, model_name=args.model, search_id=args.search)
    print(format_registry(table))
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"{len(table)} runs written to {args.csv}")
    return 0


def _add_report(commands: argparse._SubParsersAction) -> None:
    report = _command(
        commands,
        "report",
        help="write the figures of a search (or of every search under a log root) as one self-contained HTML file",
        description="Draw what the run log holds, each figure only when the log has what it needs: score vs fit time and vs "
        "model size with their Pareto fronts, parallel coordinates, parameter importance, heatmaps of the best score per "
        "pair of parameters, one slice per parameter, learning curves and halving rounds, the workers' timeline, and each "
        "step's output for the best candidate (explain). Over a log root, its searches side by side; with --tracking-uri, "
        "the promoted runs over time. The file embeds BokehJS and opens offline; hover, click and the top-k slider work in it.",
        epilog="examples:\n  python -m gridsearch report runs/3f2a9c1d0e4b5a67\n  python -m gridsearch report runs --to report.html\n"
        "  python -m gridsearch report runs --tracking-uri sqlite:///mlflow.db --top-k 20",
    )
    report.add_argument("log", metavar="LOG", help="a search's log directory, or a log root such as runs")
    report.add_argument("--to", metavar="FILE", help="the HTML file to write (default: LOG/report.html)")
    report.add_argument("--top-k", type=int, default=10, metavar="N", help="candidates highlighted at first (default: 10)")
    report.add_argument("--tracking-uri", metavar="URI", help="an MLflow store: add its promoted runs over time")
    report.add_argument("--no-explain", dest="explain", action="store_false",
                        help="leave out the step-by-step output of the best candidate's pipeline (it refits it once)")
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gridsearch.view.report import report

    print(report(args.log, to=args.to or Path(args.log) / "report.html", top_k=args.top_k, tracking_uri=args.tracking_uri,
                 explain=args.explain))
    return 0


def _add_explain(commands: argparse._SubParsersAction) -> None:
    explain = _command(
        commands,
        "explain",
        help="fit a search's pipeline once on one fold and show every step's output: shape, features, dtypes, times",
        description="Fit the config's pipeline (with a candidate's params) on one fold's training rows, each step on its own, "
        "and print for every step, ColumnTransformer branch and FeatureUnion part, nested ones too: input columns, output "
        "shape, the first feature names, dtypes, share of missing values and of zeros, fit and transform time, memory. A step "
        "that raises is marked with its error; the others are still shown.",
        epilog="examples:\n  python -m gridsearch explain conf/search.yaml\n"
        "  python -m gridsearch explain conf/search.yaml --candidate 3f2a --fold 2\n"
        "  python -m gridsearch explain conf/search.yaml --rows 2000 --set data.rows=50000",
    )
    explain.add_argument("config", help="search YAML, e.g. conf/search.yaml")
    explain.add_argument("--candidate", metavar="ID", help="set this candidate's params (id or unique prefix; default: the pipeline as built)")
    explain.add_argument("--fold", type=int, default=0, metavar="K", help="the fold to fit on (default: 0)")
    explain.add_argument("--rows", type=int, metavar="N", help="fit on a sample of N of the fold's training rows")
    explain.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config value (YAML syntax), e.g. --set data.rows=5000; repeatable")
    explain.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    from gridsearch.search.config import load_config, parse_overrides
    from gridsearch.view.explain import explain

    print(explain(load_config(args.config, parse_overrides(args.overrides)), candidate=args.candidate, fold=args.fold, rows=args.rows))
    return 0


def _add_estimate(commands: argparse._SubParsersAction) -> None:
    estimate = _command(
        commands,
        "estimate",
        help="predict a search's wall time on this cluster, and the largest data.rows within a time budget",
        description="Fit each distinct (preprocessing, model kind) of the search on a few growing row counts on the cluster "
        "(a pilot of seconds), fit seconds = a * rows^b to each, and count the plan's work as the engine runs it (shared "
        "stages and prefixes, fits along n_estimators, batched tasks). Prints the predicted wall time as configured, the "
        "largest data.rows within the budget, and both per model kind.",
        epilog="examples:\n  python -m gridsearch estimate conf/search.yaml --budget 1h\n"
        "  python -m gridsearch estimate conf/search.yaml --budget 30min --set data.rows=100000\n"
        "  python -m gridsearch estimate conf/search.yaml --budget 1h30min --scheduler tcp://127.0.0.1:8786",
    )
    estimate.add_argument("config", help="search YAML, e.g. conf/search.yaml")
    estimate.add_argument("--budget", default="1h", metavar="DURATION", help="time budget, e.g. 90s, 30min, 1h, 1h30min (default: 1h)")
    estimate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override a config value (YAML syntax), e.g. --set data.rows=50000; repeatable")
    estimate.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler (default: the config's cluster)")
    estimate.add_argument("--pilot-rows", type=int, metavar="N",
                          help="training rows of the pilot's largest fits (default: a configured fold's, at most 50000)")
    estimate.set_defaults(handler=_estimate)


def _estimate(args: argparse.Namespace) -> int:
    from gridsearch.execute.estimate import estimate
    from gridsearch.search.config import load_config, parse_overrides

    overrides = parse_overrides(args.overrides)
    if args.scheduler:
        overrides["cluster.address"] = args.scheduler
    print("\n".join(estimate(load_config(args.config, overrides), args.budget, pilot_rows=args.pilot_rows).lines()))
    return 0
