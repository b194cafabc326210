"""The whole flow of ``gridsearch run``: prepare, check the workers, execute the plan, log, summarise."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client

from gridsearch.errors import CandidateFailed, GridsearchError, SearchInterrupted
from gridsearch.estimators.from_config import halving_from_config
from gridsearch.execute.batching import MAX_BATCH, TARGET_TASK_SECONDS
from gridsearch.execute.budget import Budget
from gridsearch.execute.executor import SearchWork, StageReport, execute, open_client, opening_client
from gridsearch.execute.failfast import FIRST_FITS, FailFast
from gridsearch.execute.halving_budget import Afforded, afford
from gridsearch.execute.interrupts import DeferredInterrupts
from gridsearch.execute.progress import Progress
from gridsearch.execute.scoring import Scoring
from gridsearch.execute.workers import check_workers, ship_modules, user_modules
from gridsearch.log.lease import search_lease
from gridsearch.log.records import FitRecord, RecordStamp, SearchMeta, Status
from gridsearch.log.results import cv_results, leaderboard
from gridsearch.log.runlog import RunLog, ensure_writable, read_log
from gridsearch.log.usage import StageTime, Usage, worker_usage
from gridsearch.search.config import SearchConfig
from gridsearch.search.dataset import rebuild
from gridsearch.search.pilot import pilot, pilot_summary
from gridsearch.search.plan import Plan
from gridsearch.search.prepare import PreparedSearch, prepare_search
from kampai.cache import record_hits
from kampai.ids import content_id
from kampai.provenance import code_version

OVERHEAD_BOUND = 0.5  # efficiency below which the summary says the search is overhead-bound


@dataclass(frozen=True)
class SearchResult:
    """What a search gives back; ``cv_results`` has scikit-learn's ``cv_results_`` columns."""

    search_id: str
    log_path: Path
    cv_results: pd.DataFrame
    scoring: tuple[str, ...]
    n_fits: int
    n_errors: int
    n_resumed: int
    stages_computed: int = 0
    stages_from_memo: int = 0
    usage: Usage | None = None  # where this run's worker time went

    @property
    def best_index(self) -> int:
        """The best candidate's row (of a halving search: the best of the last round, as scikit-learn's)."""
        ranks = self.cv_results[f"rank_test_{self.scoring[0]}"].to_numpy(dtype=float)
        if "iter" in self.cv_results:
            rounds = self.cv_results["iter"].to_numpy()
            ranks = np.where(rounds == rounds.max(), ranks, np.inf)
        return int(ranks.argmin())

    @property
    def best_candidate_id(self) -> str:
        return str(self.cv_results["candidate_id"].iloc[self.best_index])

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.cv_results["params"].iloc[self.best_index])

    @property
    def best_score(self) -> float:
        return float(self.cv_results[f"mean_test_{self.scoring[0]}"].iloc[self.best_index])


def run(config: str | os.PathLike[str] | SearchConfig, *, progress: bool = True, top: int = 10, **overrides: Any) -> SearchResult:
    """Run a search and return its results; the notebook twin of ``gridsearch run``.

    Parameters
    ----------
    config : path or SearchConfig
        The search YAML.
    progress : bool
        Show a tqdm bar and print the leaderboard.
    top : int
        Rows of the printed leaderboard.
    **overrides
        Config values by dotted key or nested dict, e.g. ``cv={"folds": 5}`` or
        ``**{"data.rows": 20000}``.

    Raises
    ------
    SearchInterrupted
        On Ctrl-C, after cancelling pending work and flushing the log.
    CandidateFailed
        When a fit raises and ``search.error_score`` is ``raise``.
    GridsearchError
        On bad input, and while the same search (same log and space) is running elsewhere.
    """
    search = prepare_search(config, **overrides)
    ensure_writable(search.config.log_dir)
    space = search.config.space
    with search_lease(search.log_path, _work_id(search)):
        return (_run if space.halving is None else _run_halving)(search, progress, top)


def _work_id(search: PreparedSearch) -> str:
    """What one run at a time may do on a log: these candidates."""
    space = search.config.space
    return content_id(space.grids, space.n_iter, space.seed)


def _run(search: PreparedSearch, progress: bool, top: int) -> SearchResult:
    """:func:`run` of a prepared search, as the one run of its candidates on its log."""
    budget = Budget(search.config.budget)
    done = _recorded_fits(search.log_path)
    say = print if progress else _silent
    say(search.plan.summary())
    say(_resume_or_new(search, len(done)))
    fits = _Fits(search, done, budget, say, progress)
    try:
        with fits.interrupts.installed(), opening_client(search.config.cluster) as opened:  # the cluster starts during the pilot
            failing_structures = pilot(search)
            for line in pilot_summary(failing_structures):
                say(line)
            with RunLog(search.log_path, _metadata(search)) as log:
                fits.run(opened(), log, bool(failing_structures))
    except KeyboardInterrupt:
        if not search.log_path.is_dir():
            raise  # before the search had a log, there is nothing to resume
        raise SearchInterrupted(search.log_path) from None
    stages = fits.stages
    if budget.stopped and not done and budget.per_fit is None:
        raise GridsearchError(f"budget of {budget} reached before any fit finished, so nothing was recorded; "
                              "give a longer search.budget (--budget)")
    from_memo = sum(report.from_memo for report in stages)
    memo_problems = list(dict.fromkeys(line.removeprefix("RuntimeWarning: ") for report in stages
                                       for line in (report.warnings or "").splitlines() if line.startswith("RuntimeWarning: stage memo")))
    if memo_problems:  # one line: the memo is an optimisation, never a failure
        say(memo_problems[0] + (f" (and {len(memo_problems) - 1} other memo problems)" if len(memo_problems) > 1 else ""))
    elif search.config.cache.dir is not None and stages:
        record_hits(search.config.cache.dir, search.search_id, from_memo, len(stages) - from_memo)
    records = read_log(search.log_path)
    table = cv_results(records, search.candidates, search.plan.folds, search.config.scoring)
    result = SearchResult(search.search_id, search.log_path, table, search.config.scoring,
                          search.plan.n_fits, int(table["n_errors"].sum()), len(done), len(stages) - from_memo, from_memo,
                          worker_usage(records, fits.threads, fits.since, _stage_time(stages, search.plan)))
    say(_summary(result, top, budget))
    return result


@dataclass
class _Fits:
    """The fits of one run on an opened client and log: checks, progress, fail-fast, and what they measured."""

    search: PreparedSearch
    done: set[tuple[str, int]]
    budget: Budget
    say: Callable[[str], None]
    progress: bool
    interrupts: DeferredInterrupts = field(default_factory=DeferredInterrupts)
    stages: list[StageReport] = field(default_factory=list)
    since: float = math.nan  # when the fits were first submitted
    threads: int = 0  # the workers' threads at the run's end: what its wall time had

    def run(self, client: Client, log: RunLog, pilot_failed: bool) -> None:
        """Check the workers, then execute the pending fits, each batch's records written as it ends."""
        search, say = self.search, self.say
        if client.dashboard_link and (search.config.cluster.address or search.config.cluster.dashboard):
            say(f"dashboard: {client.dashboard_link}")
        check_workers(client)
        params = {value for value in search.space.values() if isinstance(value, str)}
        shipped = ship_modules(client, user_modules(search.pipeline, params, search.config.pipeline.factory))
        if shipped:
            say(f"sent to the workers: {', '.join(shipped)} (not installed there)")
        tracker = Progress(search.config.scoring[0], search.plan.folds, search.plan.n_fits, len(self.done), self.progress)
        gate = FailFast(log.append, None if pilot_failed else FIRST_FITS)  # the pilot's failures are expected

        def on_records(records: Sequence[FitRecord]) -> None:
            with self.interrupts.deferred():
                gate(records)
            tracker.update(records)
            _raise_if_required(search, records)

        stopped: BaseException | None = None
        self.since = time.time()
        try:
            execute(client, search_work(search), lambda cid, fold: (cid, fold) not in self.done, on_records, self.stages.append,
                    self.budget)
        except GridsearchError as exc:
            stopped = exc
            raise
        finally:
            if stopped is None or isinstance(stopped, CandidateFailed):
                with self.interrupts.deferred():  # a search stopped for failing writes nothing half-done
                    gate.flush()
            tracker.close()
        self.threads = sum(client.nthreads().values())


def _run_halving(search: PreparedSearch, progress: bool, top: int) -> SearchResult:
    """:func:`run` of a halving search: scikit-learn's rounds, each a plan on the engine, all in the search's log.

    With a budget, a pilot first chooses the schedule that fits it (:func:`afford`), and a round
    that would not end in time is not started.
    """
    say = print if progress else _silent
    budget = Budget(search.config.budget)
    halving = search.config.space.halving
    say(f"successive halving of {len(search.space)} candidates x {search.plan.folds} folds over {halving.resource}, factor {halving.factor}")
    for line in pilot_summary(pilot(search)):
        say(line)
    configured = search
    try:
        with open_client(search.config.cluster) as client:
            afforded = afford(search, client, budget)  # before anything is written: a budget too small leaves no log
            search = afforded.search
            with _leased(search, configured):
                fitted, usage = _halving_rounds(afforded, client, progress, say)
    except KeyboardInterrupt:
        raise SearchInterrupted(search.log_path) from None
    table = pd.DataFrame(fitted.cv_results_).assign(candidate_id=fitted._candidate_ids)
    splits = table.filter(regex=rf"^split\d+_test_{search.config.scoring[0]}$")
    table["n_errors"] = splits.isna().sum(axis=1)
    result = SearchResult(search.search_id, search.log_path, table, search.config.scoring, len(table) * search.plan.folds,
                          int(table["n_errors"].sum()), 0, usage=usage)
    done = afforded.rounds.done
    rounds = ", ".join(f"{n} on {r}" for n, r in zip(fitted.n_candidates_[:done], fitted.n_resources_[:done]))
    say(f"\nrounds (candidates on {halving.resource}): {rounds}")
    say(_summary(replace(result, cv_results=_last_round(table, search.config.scoring)), top))
    if budget.stopped:
        say(f"budget of {budget} reached: {done} of {len(fitted.n_candidates_)} rounds done, the best is round {done - 1}'s; "
            f"continue with: python -m gridsearch run --resume {search.log_path} [--budget ...]")
    return result


def _leased(chosen: PreparedSearch, configured: PreparedSearch) -> contextlib.AbstractContextManager[None]:
    """The lease of the search a budget chose, when it has its own log (a smaller max_resources): one run at a time there too."""
    return contextlib.nullcontext() if chosen.log_path == configured.log_path else search_lease(chosen.log_path, _work_id(chosen))


def _halving_rounds(afforded: Afforded, client: Client, progress: bool, say: Callable[[str], None]) -> tuple[Any, Usage]:
    """Every round of the afforded schedule, logged; the fitted halving search and its workers' time."""
    search = afforded.search
    for line in filter(None, [afforded.line, f"logging to {search.log_path}"]):
        say(line)
    search.log_path.mkdir(parents=True, exist_ok=True)
    _metadata(search).write(search.log_path)
    since = time.time()
    fitted = halving_from_config(search, client, int(progress), afforded.rounds).fit(search.dataset.X, search.dataset.y)
    return fitted, worker_usage(read_log(search.log_path), sum(client.nthreads().values()), since)


def _last_round(table: pd.DataFrame, scoring: Sequence[str]) -> pd.DataFrame:
    """The last round's rows, ranked among themselves."""
    last = table[table["iter"] == table["iter"].max()].reset_index(drop=True)
    for name in scoring:
        last[f"rank_test_{name}"] = last[f"mean_test_{name}"].rank(ascending=False, method="min", na_option="bottom").astype(int)
    return last


def resume(log_path: str | os.PathLike[str], *, progress: bool = True, top: int = 10, **overrides: Any) -> SearchResult:
    """Run again the search whose log is ``log_path``, with the config that log keeps."""
    return run(config_of_log(log_path, **overrides), progress=progress, top=top)


def config_of_log(log_path: str | os.PathLike[str], **overrides: Any) -> SearchConfig:
    """The validated config a search's log keeps in its ``search.json``, without the earlier run's budget.

    A budget limits one run: a resume has none unless ``overrides`` give one (``search.budget``).
    """
    directory = Path(log_path)
    return SearchMeta.read(directory).search_config(directory, {"search.budget": None, **overrides})


def search_work(search: PreparedSearch) -> SearchWork:
    """What the executor needs, with the memo directory made absolute for remote workers."""
    cfg, inputs, version = search.config, search.inputs, code_version()
    stamp = RecordStamp(search.search_id, inputs.data_fingerprint, version.git_sha, version.git_dirty, version.package_version,
                        cfg.scoring, cfg.error_score if isinstance(cfg.error_score, float) else float("nan"))
    memo = cfg.cache.dir
    return SearchWork(stamp=stamp, rows=partial(rebuild, inputs.data_spec, inputs.frame), pipeline=inputs.pipeline, plan=search.plan,
                      rows_id=inputs.rows_id, memo_location=None if memo is None else str(memo.resolve()), memo_stages=cfg.cache.stages,
                      scoring=Scoring.named(cfg.scoring))


def _raise_if_required(search: PreparedSearch, records: Sequence[FitRecord]) -> None:
    if search.config.error_score != "raise":
        return
    for record in records:
        if record.status is Status.ERROR:
            raise CandidateFailed(
                f"candidate {record.candidate_id} {record.params} failed on fold {record.fold}: {record.error} "
                f"(search.error_score is 'raise'; set it to nan to record failures and go on)",
                record.traceback or "",
            )


def _resume_or_new(search: PreparedSearch, done: int) -> str:
    """Say whether this run resumes its search or starts a new one, and why it is new."""
    if done:
        return f"resuming search {search.search_id}: {done} fits already in {search.log_path}"
    previous = _previous_search(search)
    if previous is None:
        return f"new search {search.search_id}, logging to {search.log_path}"
    changed = [key for key in search.scope if previous.scope.get(key) != search.scope[key]] or ["nothing recorded"]
    return (f"new search {search.search_id}: {', '.join(changed)} changed since search {previous.search_id} "
            f"from the same config, whose log stays as it was")


def _previous_search(search: PreparedSearch) -> SearchMeta | None:
    """The latest other search run from the same config file, if its log is in the same place."""
    if search.config.path is None or not search.config.log_dir.is_dir():
        return None
    same_file = [meta for d in search.config.log_dir.iterdir() if d.is_dir() and d.name != search.search_id
                 and (meta := SearchMeta.read(d)).config_path == str(search.config.path) and meta.scope is not None]
    return max(same_file, key=lambda meta: meta.created or "", default=None)


def _recorded_fits(log_path: Path) -> set[tuple[str, int]]:
    """(candidate, fold) pairs the log already holds a result for (lost tasks are redone)."""
    if not log_path.is_dir():
        return set()
    records = read_log(log_path)
    finished = records[records["status"] != Status.LOST]
    return set(zip(finished["candidate_id"], finished["fold"].astype(int)))


def _metadata(search: PreparedSearch) -> SearchMeta:
    cfg = search.config
    return SearchMeta(
        search_id=search.search_id, scoring=cfg.scoring, folds=cfg.cv.folds, config=cfg.raw, config_source=cfg.source,
        config_path=None if cfg.path is None else str(cfg.path), scope=search.scope, data_fingerprint=search.inputs.data_fingerprint,
        code_version=code_version().as_dict(), created=datetime.now(UTC).isoformat(),
    )


def _summary(result: SearchResult, top: int, budget: Budget | None = None) -> str:
    scorer = result.scoring[0]
    board = leaderboard(result.cv_results, scorer, top).to_string(float_format=lambda v: f"{v:.4f}")
    failed = f", {result.n_errors} failed" if result.n_errors else ""
    resumed = f" ({result.n_resumed} from an earlier run)" if result.n_resumed else ""
    memo = f"; raw stages: {result.stages_computed} computed, {result.stages_from_memo} from the memo" if result.stages_computed + result.stages_from_memo else ""
    best = (f"best {scorer} = {result.best_score:.4f} ({result.best_candidate_id})" if not math.isnan(result.best_score)
            else f"best {scorer}: none, no candidate scored on every fold")
    workers = "".join(f"{line}\n" for line in _usage_lines(result.usage))
    return (f"\n{board}\n\n{result.n_fits} fits{resumed}{failed}{memo}\n{workers}{best}\nrun log: {result.log_path}"
            + (f"\n{_budget_reached(result, budget)}" if budget is not None and budget.stopped else ""))


def _budget_reached(result: SearchResult, budget: Budget) -> str:
    """One line: the budget stopped the run, how far it got, and how to go on."""
    done = result.n_fits - int(result.cv_results["n_missing"].sum())
    return (f"budget of {budget} reached: {done} of {result.n_fits} fits done (unfinished candidates rank last); "
            f"continue with: python -m gridsearch run --resume {result.log_path} [--budget ...]")


def _usage_lines(usage: Usage | None) -> list[str]:
    """The run's worker time in one line, and a second one when fits were too short to keep the workers busy."""
    if usage is None:
        return []
    if not usage.efficiency < OVERHEAD_BOUND:
        return [usage.line()]
    per_fit = (usage.fit_time + usage.score_time) / max(usage.fits, 1)
    hint = (f"overhead-bound: a fit and its scoring took {per_fit * 1000:.1f} ms on average, and batches already grow to about "
            f"{TARGET_TASK_SECONDS} s tasks (at most {MAX_BATCH} fits), so Dask's cost per task and the waits for data and "
            "preprocessing dominate: give each fit more work (data.rows) or use fewer workers (cluster.workers)")
    return [usage.line(), hint]


def _stage_time(stages: Sequence[StageReport], plan: Plan) -> StageTime:
    """The run's raw stage seconds, and what the records' ``prep_time`` holds of them (once per prefix group reading each)."""
    readers = Counter(stage.id for group in plan.groups for stage in group.stages)
    timed = [report for report in stages if not math.isnan(report.seconds)]
    return StageTime(computed=sum((report.seconds for report in timed if not report.from_memo), 0.0),
                     from_memo=sum((report.seconds for report in timed if report.from_memo), 0.0),
                     in_prefixes=sum((report.seconds * readers[report.stage_id] for report in timed if not report.failed), 0.0))


def _silent(*args: object) -> None:
    """Print nothing (``progress=False``)."""
