"""The whole flow of ``gridsearch run``: config, data, space, plan, Dask, run log, results."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator, is_classifier
from sklearn.utils.multiclass import type_of_target

from gridsearch.config import SearchConfig, did_you_mean, from_mapping, load_config
from gridsearch.dataset import Dataset, DataSpec, Holdout, split
from gridsearch.errors import CandidateFailed, GridsearchError, SearchInterrupted
from gridsearch.executor import SearchWork, StageReport, execute, open_client
from gridsearch.interrupts import DeferredInterrupts
from gridsearch.plan import Plan, make_plan
from gridsearch.progress import Progress
from gridsearch.report import cv_results, leaderboard
from gridsearch.runlog import RunLog, ensure_writable, read_log, read_metadata
from gridsearch.space import Candidate, content_id, expand
from gridsearch.stages import raw_stages
from gridsearch.workers import check_workers, ship_modules, user_modules
from kampai.cache import record_hits
from kampai.data import fingerprint, load_dataset
from kampai.errors import KampaiError
from kampai.pipeline import build_pipeline
from kampai.provenance import code_version


@dataclass(frozen=True)
class PreparedSearch:
    """Everything known before any work is sent: validated, expanded, planned."""

    config: SearchConfig
    pipeline: BaseEstimator
    data_spec: DataSpec
    frame: pd.DataFrame | None
    dataset: Dataset
    holdout: Holdout | None
    data_fingerprint: str
    search_id: str
    scope: Mapping[str, Any]
    rows_id: str
    candidates: tuple[Candidate, ...]
    plan: Plan

    @property
    def log_path(self) -> Path:
        return self.config.log_dir / self.search_id

    def work(self) -> SearchWork:
        """What the executor needs, with the memo directory made absolute for remote workers."""
        memo = self.config.cache.dir
        return SearchWork(
            scope_id=content_id(self.scope), data_spec=self.data_spec, frame=self.frame, pipeline=self.pipeline,
            plan=self.plan, scoring=self.config.scoring, rows_id=self.rows_id,
            memo_location=None if memo is None else str(memo.resolve()), memo_stages=self.config.cache.stages,
        )


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

    @property
    def best_index(self) -> int:
        return int(self.cv_results[f"rank_test_{self.scoring[0]}"].to_numpy().argmin())

    @property
    def best_candidate_id(self) -> str:
        return str(self.cv_results["candidate_id"].iloc[self.best_index])

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.cv_results["params"].iloc[self.best_index])

    @property
    def best_score(self) -> float:
        return float(self.cv_results[f"mean_test_{self.scoring[0]}"].iloc[self.best_index])


def prepare_search(config: str | os.PathLike[str] | SearchConfig, **overrides: Any) -> PreparedSearch:
    """Validate the config against the pipeline and the data, expand and plan; compute nothing.

    Raises
    ------
    ConfigError
        On the first problem, naming the file and the key.
    """
    cfg = config if isinstance(config, SearchConfig) else load_config(config, overrides)
    try:
        pipeline = build_pipeline(cfg.pipeline.factory, cfg.pipeline.steps)
    except KampaiError as exc:
        raise cfg.error("pipeline", str(exc)) from None
    frame = _load_data(cfg)
    _check_target(cfg, frame)
    dataset_fp = fingerprint(frame)
    data_spec = _data_spec(cfg, pipeline, frame, dataset_fp)
    try:
        dataset, holdout = split(data_spec, frame)
    except ValueError as exc:
        raise cfg.error("cv.folds", str(exc)) from None
    _check_memo_stages(cfg, pipeline)
    rows = {"data": dataset_fp, "holdout": cfg.data.test_size, "cv": [cfg.cv.folds, cfg.cv.shuffle, cfg.cv.seed]}
    scope = {"pipeline": cfg.pipeline.spec(), **rows}
    candidates = tuple(expand(cfg, pipeline, scope))
    return PreparedSearch(
        config=cfg,
        pipeline=pipeline,
        data_spec=data_spec,
        frame=None if _workers_read(cfg) else frame,
        dataset=dataset,
        holdout=holdout,
        data_fingerprint=dataset_fp,
        search_id=content_id(scope, list(cfg.scoring)),
        scope={**scope, "scoring": list(cfg.scoring)},
        rows_id=content_id(rows),
        candidates=candidates,
        plan=make_plan(candidates, pipeline, cfg.cv.folds, scope),
    )


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
    """
    search = prepare_search(config, **overrides)
    ensure_writable(search.config.log_dir)
    done = _recorded_fits(search.log_path)
    say = print if progress else _silent
    say(search.plan.summary())
    say(_resume_or_new(search, len(done)))
    stages: list[StageReport] = []
    interrupts = DeferredInterrupts()
    try:
        with interrupts.installed(), RunLog(search.log_path, search.config.scoring, _metadata(search)) as log, \
                open_client(search.config.cluster) as client:
            if client.dashboard_link:
                say(f"dashboard: {client.dashboard_link}")
            check_workers(client)
            params = {value for candidate in search.candidates for value in candidate.params.values() if isinstance(value, str)}
            shipped = ship_modules(client, user_modules(search.pipeline, params, search.config.pipeline.factory))
            if shipped:
                say(f"sent to the workers: {', '.join(shipped)} (not installed there)")
            params_json = {c.id: json.dumps(c.params, sort_keys=True) for c in search.candidates}  # once, not per batch
            tracker = Progress(search.config.scoring[0], search.plan.folds, search.plan.n_fits, len(done), progress)

            def on_records(fold: int, records: Sequence[Mapping[str, Any]]) -> None:
                with interrupts.deferred():
                    log.append(_rows(search, params_json, fold, records))
                tracker.update(records)
                _raise_if_required(search, fold, records)

            try:
                execute(client, search.work(), lambda cid, fold: (cid, fold) not in done, on_records, stages.append)
            finally:
                tracker.close()
    except KeyboardInterrupt:
        raise SearchInterrupted(f"interrupted; every finished fit is in {search.log_path}. "
                                f"Resume with: python -m gridsearch run --resume {search.log_path}") from None
    from_memo = sum(report.from_memo for report in stages)
    if search.config.cache.dir is not None and stages:
        record_hits(search.config.cache.dir, search.search_id, from_memo, len(stages) - from_memo)
    table = cv_results(read_log(search.log_path), search.candidates, search.plan.folds, search.config.scoring)
    result = SearchResult(search.search_id, search.log_path, table, search.config.scoring,
                          search.plan.n_fits, int(table["n_errors"].sum()), len(done), len(stages) - from_memo, from_memo)
    say(_summary(result, top))
    return result


def resume(log_path: str | os.PathLike[str], *, progress: bool = True, top: int = 10, **overrides: Any) -> SearchResult:
    """Run again the search whose log is ``log_path``, with the config that log keeps."""
    return run(config_of_log(log_path, **overrides), progress=progress, top=top)


def config_of_log(log_path: str | os.PathLike[str], **overrides: Any) -> SearchConfig:
    """The validated config a search's log keeps in its ``search.json``."""
    meta = read_metadata(Path(log_path))
    if "config" not in meta:
        raise GridsearchError(f"{log_path} holds no search.json; give a log directory made by 'gridsearch run' (e.g. runs/<search id>)")
    path = Path(meta["config_path"]) if meta.get("config_path") else None
    return from_mapping(meta["config"], f"{log_path}/search.json", overrides, path)


def _raise_if_required(search: PreparedSearch, fold: int, records: Sequence[Mapping[str, Any]]) -> None:
    if search.config.error_score != "raise":
        return
    for record in records:
        if record["status"] == "error":
            params = json.dumps(next(c.params for c in search.candidates if c.id == record["candidate_id"]), sort_keys=True)
            raise CandidateFailed(
                f"candidate {record['candidate_id']} {params} failed on fold {fold}: {record['error']} "
                f"(search.error_score is 'raise'; set it to nan to record failures and go on)",
                record["traceback"] or "",
            )


def _resume_or_new(search: PreparedSearch, done: int) -> str:
    """Say whether this run resumes its search or starts a new one, and why it is new."""
    if done:
        return f"resuming search {search.search_id}: {done} fits already in {search.log_path}"
    previous = _previous_search(search)
    if previous is None:
        return f"new search {search.search_id}, logging to {search.log_path}"
    changed = [key for key in search.scope if previous["scope"].get(key) != search.scope[key]] or ["nothing recorded"]
    return (f"new search {search.search_id}: {', '.join(changed)} changed since search {previous['search_id']} "
            f"from the same config, whose log stays as it was")


def _previous_search(search: PreparedSearch) -> dict[str, Any] | None:
    """The latest other search run from the same config file, if its log is in the same place."""
    if search.config.path is None or not search.config.log_dir.is_dir():
        return None
    same_file = [meta for d in search.config.log_dir.iterdir() if d.is_dir() and d.name != search.search_id
                 and (meta := read_metadata(d)).get("config_path") == str(search.config.path) and "scope" in meta]
    return max(same_file, key=lambda meta: meta.get("created", ""), default=None)


def _load_data(cfg: SearchConfig) -> pd.DataFrame:
    data = cfg.data
    try:
        frame = load_dataset(data.source, rows=data.rows, seed=data.seed, clean=data.clean)
    except KampaiError as exc:
        raise cfg.error("data.source", str(exc)) from None
    if data.target not in frame.columns:
        raise cfg.error("data.target", f"column {data.target!r} not in the data (columns: {', '.join(map(str, frame.columns))})")
    if frame.empty:
        raise cfg.error("data.source", "no rows left after loading and cleaning; check the file, data.rows and data.clean")
    return frame


def _check_target(cfg: SearchConfig, frame: pd.DataFrame) -> None:
    target = frame[cfg.data.target]
    if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
        raise cfg.error("data.target", f"column {cfg.data.target!r} must be numeric, found dtype {target.dtype}")
    if target.isna().any():
        raise cfg.error("data.target", f"column {cfg.data.target!r} has {int(target.isna().sum())} missing values; drop or fill them")


def _data_spec(cfg: SearchConfig, pipeline: BaseEstimator, frame: pd.DataFrame, frame_fingerprint: str) -> DataSpec:
    """How the rows and folds are made; stratified folds for classifiers, as ``check_cv`` does."""
    stratify = is_classifier(pipeline) and type_of_target(frame[cfg.data.target]) in ("binary", "multiclass")
    data, cv = cfg.data, cfg.cv
    source = data.source if data.is_synthetic else str(Path(data.source).resolve())
    return DataSpec(source, data.rows, data.seed, data.clean, data.target, data.test_size,
                    cv.folds, cv.shuffle, cv.seed, stratify, frame_fingerprint)


def _workers_read(cfg: SearchConfig) -> bool:
    """Whether workers load the data themselves: always for the generator, for files when told."""
    return cfg.data.workers == "read" or (cfg.data.workers == "auto" and cfg.data.is_synthetic)


def _check_memo_stages(cfg: SearchConfig, pipeline: BaseEstimator) -> None:
    known = sorted(raw_stages(pipeline))
    for stage in sorted(cfg.cache.stages or ()):
        if stage not in known:
            allowed = ", ".join(known) if known else "none: the pipeline has no step before its final estimator"
            raise cfg.error("cache.stages", f"unknown stage {stage!r}{did_you_mean(stage, known)} (raw stages: {allowed})")


def _recorded_fits(log_path: Path) -> set[tuple[str, int]]:
    """(candidate, fold) pairs the log already holds a result for (lost tasks are redone)."""
    if not log_path.is_dir():
        return set()
    records = read_log(log_path)
    finished = records[records["status"] != "lost"]
    return set(zip(finished["candidate_id"], finished["fold"].astype(int)))


def _metadata(search: PreparedSearch) -> dict[str, Any]:
    cfg = search.config
    return {
        "search_id": search.search_id,
        "config": cfg.raw,
        "config_source": cfg.source,
        "config_path": None if cfg.path is None else str(cfg.path),
        "scope": search.scope,
        "scoring": list(cfg.scoring),
        "folds": cfg.cv.folds,
        "data_fingerprint": search.data_fingerprint,
        "code_version": code_version().as_dict(),
        "created": datetime.now(UTC).isoformat(),
    }


def _rows(search: PreparedSearch, params_json: Mapping[str, str], fold: int, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Worker records as run-log rows: search, params and provenance added."""
    version = code_version()
    failed_score = search.config.error_score if isinstance(search.config.error_score, float) else float("nan")
    rows = []
    for record in records:
        row = {key: value for key, value in record.items() if key != "scores"}
        scores = {name: failed_score for name in search.config.scoring} if record["status"] != "ok" else record["scores"]
        row.update({f"test_{name}": score for name, score in scores.items()})
        row.update(
            search_id=search.search_id,
            params=params_json[record["candidate_id"]],
            fold=fold,
            started=_timestamp(record["started"]),
            finished=_timestamp(record["finished"]),
            git_sha=version.git_sha,
            git_dirty=version.git_dirty,
            package_version=version.package_version,
            data_fingerprint=search.data_fingerprint,
        )
        rows.append(row)
    return rows


def _timestamp(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


def _summary(result: SearchResult, top: int) -> str:
    scorer = result.scoring[0]
    board = leaderboard(result.cv_results, scorer, top).to_string(float_format=lambda v: f"{v:.4f}")
    failed = f", {result.n_errors} failed" if result.n_errors else ""
    resumed = f" ({result.n_resumed} from an earlier run)" if result.n_resumed else ""
    memo = f"; raw stages: {result.stages_computed} computed, {result.stages_from_memo} from the memo" if result.stages_computed + result.stages_from_memo else ""
    return (f"\n{board}\n\n{result.n_fits} fits{resumed}{failed}{memo}\n"
            f"best {scorer} = {result.best_score:.4f} ({result.best_candidate_id})\nrun log: {result.log_path}")


def _silent(*args: object) -> None:
    """Print nothing (``progress=False``)."""
