"""One ``evaluate_candidates`` call of a search class, run on the engine.

Scikit-learn's search classes hand a list of candidates and a splitter to
``evaluate_candidates``; here that list is planned (shared prefixes and raw stages, fits
along ``n_estimators``) and executed on Dask like ``gridsearch run``, and each (candidate,
fold) record becomes the dict scikit-learn's ``_fit_and_score`` returns, so that
``BaseSearchCV`` formats ``cv_results_`` from them as it formats its own.
"""

from __future__ import annotations

import math
import numbers
import secrets
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import joblib
from distributed import Client, Future
from joblib.logger import short_format_time
from sklearn import get_config
from sklearn.base import BaseEstimator, clone
from sklearn.metrics._scorer import _BaseScorer, _MultimetricScorer, _PassthroughScorer
from sklearn.utils import get_tags

from gridsearch.errors import GridsearchError
from gridsearch.execute.executor import SearchWork, execute
from gridsearch.execute.growth import Refits
from gridsearch.execute.progress import Progress
from gridsearch.execute.scoring import Scoring
from gridsearch.execute.workers import check_workers_once, object_modules, ship_modules
from gridsearch.log.records import FitRecord, RecordStamp, SearchMeta, Status
from gridsearch.log.refit_inputs import keep_refit_inputs
from gridsearch.log.runlog import RunLog, read_log
from gridsearch.search.dataset import Dataset, Folds
from gridsearch.search.grids import Candidate
from gridsearch.search.plan import Plan, final_step_name, make_plan
from gridsearch.search.space import resolve, step_names
from kampai.ids import content_id
from kampai.provenance import code_version

SINGLE = "score"  # the name scikit-learn gives a single scorer's results


@dataclass(frozen=True)
class EngineSearch:
    """What every ``evaluate_candidates`` call of one ``fit`` shares.

    ``scorer`` is what ``BaseSearchCV._get_scorers`` made (one scorer, a callable, or a
    ``_MultimetricScorer``); ``fit_params`` and ``score_params`` are routed as scikit-learn
    routes them. ``cache`` is a memo directory for raw stages, ``log`` a run log directory
    (None: neither). ``growth`` keeps the fitted ensembles of one call for the next to grow
    (halving along ``n_estimators``, :mod:`gridsearch.execute.growth`; by default every fit is fresh).
    """

    estimator: BaseEstimator
    X: Any
    y: Any
    fit_params: Mapping[str, Any]
    score_params: Mapping[str, Any]
    scorer: Any
    error_score: float | str
    return_train_score: bool
    client: Client
    cache: Path | None
    log: Path | None
    verbose: int
    growth: Refits = field(default_factory=Refits)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.scorer._scorers) if isinstance(self.scorer, _MultimetricScorer) else (SINGLE,)

    def evaluate(self, candidate_params: Sequence[Mapping[str, Any]], folds: Folds, search_id: str, log_id: str | None = None,
                 round_: int | None = None) -> list[dict[str, Any]]:
        """Fit and score every candidate on every fold; scikit-learn's result dict for each, candidates first.

        ``search_id`` is :meth:`search_id`'s for this call (its candidates' ids are
        :func:`candidate_ids`). ``log_id`` names the run log directory (default: ``search_id``):
        the rounds of one halving fit share one, and their records say their ``round_`` and
        ``fit_rows``.
        """
        _check_names(self.estimator, candidate_params)
        candidates = [Candidate(id_, dict(params)) for id_, params in zip(candidate_ids(search_id, len(candidate_params)), candidate_params)]
        share_prefix, split_stages = self._sharing()
        plan = make_plan(candidates, self.estimator, len(folds), search_id, share_prefix=share_prefix, split_stages=split_stages)
        if len(plan.groups) == 1 and self.cache is None:  # raw stages pay off when groups share them or the memo keeps them
            plan = replace(plan, groups=(replace(plan.groups[0], stages=()),))
        check_workers_once(self.client)
        ship_modules(self.client, object_modules(self._sent_objects(candidates)))  # before the rows they may hold are sent
        work = self._work(search_id, folds, plan)
        self.growth.start_round(plan, work.fit_setup)
        records = self._run(work, plan, candidates, _LogTarget(log_id or search_id, round_, tuple(len(train) for train, _ in folds)))
        lost = sum(record.status is Status.LOST for record in records.values())
        if lost:
            raise GridsearchError(f"{lost} fits were lost with their workers; fit again to redo them"
                                  f"{' (the log keeps the others)' if self.log else ''}")
        results = [self._result(records[(candidate.id, fold)], len(test)) for candidate in candidates
                   for fold, (_, test) in enumerate(folds)]
        self._warn_scorer_failures(records.values())
        return results

    def _sharing(self) -> tuple[bool, bool]:
        """``(share_prefix, split_stages)``: what the plan may share without changing a score.

        Scikit-learn's scorers (names, ``make_scorer``, the estimator's ``score``) call only the
        final step's methods on the prefix's output, as the pipeline does, so the prefix can be
        shared; a custom scorer may read the whole pipeline. Fit parameters must be
        ``step__name`` of the pipeline's steps, without metadata routing, to be split between
        the prefix and the final step, and raw stages are split out only when none goes to the
        prefix.
        """
        final_step = final_step_name(self.estimator)
        if final_step is None:
            return False, False
        scorers = self.scorer._scorers.values() if isinstance(self.scorer, _MultimetricScorer) else [self.scorer]
        if not all(isinstance(scorer, (_BaseScorer, _PassthroughScorer)) for scorer in scorers):
            return False, False
        steps = {name for name, _ in self.estimator.steps}
        addressed = all("__" in name and name.partition("__")[0] in steps for name in self.fit_params)
        if self.fit_params and (get_config()["enable_metadata_routing"] or not addressed):
            return False, False
        return True, all(name.startswith(f"{final_step}__") for name in self.fit_params)

    @cached_property
    def data_fingerprint(self) -> str:
        """A hash of the rows and their per-row parameters, computed once per ``fit`` (halving calls
        :meth:`evaluate` once per round); empty when neither a log nor a memo needs it."""
        if not (self.log or self.cache):
            return ""
        try:
            return joblib.hash([self.X, self.y, self.fit_params, self.score_params])[:16]
        except Exception:  # noqa: BLE001 - an unhashable part (e.g. a lambda): rows that match no other
            return secrets.token_hex(8)

    def search_id(self, candidate_params: Sequence[Mapping[str, Any]], folds: Folds) -> str:
        """A hash of everything that defines one call's work, so that fitting the same search again
        resumes its log; random without a log."""
        if self.log is None:
            return secrets.token_hex(8)
        try:
            return joblib.hash([self.estimator, list(candidate_params), folds, self.data_fingerprint, self.scorer,
                                self.error_score, self.return_train_score])[:16]
        except Exception:  # noqa: BLE001 - an unhashable part (e.g. a lambda): a new search each time
            return secrets.token_hex(8)

    def log_id(self, search_id: str, settings: Mapping[str, Any]) -> str:
        """The run log's name for a fit whose first call has ``search_id``: that id and the search's ``settings``, hashed."""
        if self.log is None:
            return search_id
        try:
            return joblib.hash([search_id, settings])[:16]
        except Exception:  # noqa: BLE001 - an unhashable setting: a log of its own
            return secrets.token_hex(8)

    @cached_property
    def _rows(self) -> Future:
        """The rows and their per-row parameters, sent to every worker once per ``fit`` (not in each
        round's task graph: a halving fit reads them in every round, and a worker may die)."""
        return self.client.scatter(_Rows(self.X, self.y, self.fit_params, self.score_params), broadcast=True, hash=False)

    def _work(self, search_id: str, folds: Folds, plan: Plan) -> SearchWork:
        version = code_version()
        failed_score = float(self.error_score) if isinstance(self.error_score, numbers.Number) else math.nan
        stamp = RecordStamp(search_id, self.data_fingerprint, version.git_sha, version.git_dirty, version.package_version, self.names, failed_score)
        scoring = Scoring({SINGLE: self.scorer}, train=self.return_train_score, raise_errors=self.error_score == "raise", all_failing_fails_fit=False)
        memo = None if self.cache is None else str(Path(self.cache).resolve())
        rows_id = content_id(self.data_fingerprint, folds) if memo else search_id
        held = partial(_held, folds=folds, pairwise=get_tags(self.estimator).input_tags.pairwise)
        return SearchWork(stamp=stamp, rows=held, pipeline=self.estimator, plan=plan, rows_id=rows_id,
                          memo_location=memo, memo_stages=None, scoring=scoring, rows_inputs=(self._rows,))

    def _run(self, work: SearchWork, plan: Plan, candidates: Sequence[Candidate], target: _LogTarget) -> dict[tuple[str, int], FitRecord]:
        """The records of every (candidate, fold): those the log holds already, then the new ones."""
        order = {candidate.id: (index, candidate.params) for index, candidate in enumerate(candidates)}  # for verbose > 1
        records: dict[tuple[str, int], FitRecord] = {}
        log_path = None if self.log is None else Path(self.log) / target.log_id
        if log_path is not None and log_path.is_dir():
            records = {key: record for key, record in _logged(log_path, work.stamp).items()
                       if record.status is not Status.LOST and key[0] in order}
        progress = Progress(self.names[0], plan.folds, plan.n_fits, len(records), self.verbose > 0)
        meta = SearchMeta(target.log_id, self.names, plan.folds, data_fingerprint=self.data_fingerprint,
                          code_version=code_version().as_dict(), created=datetime.now(UTC).isoformat(),
                          train_scored=self.return_train_score)
        log = None if log_path is None else RunLog(log_path, meta)

        def on_records(batch: Sequence[FitRecord]) -> None:
            if log is not None:
                log.append([target.stamped(record) for record in batch])
            records.update({(record.candidate_id, record.fold): record for record in batch})
            progress.update(batch)
            if self.verbose > 1:
                for record in batch:
                    print(self._fit_line(record, plan.folds, *order[record.candidate_id], len(order)))

        try:
            execute(self.client, work, lambda candidate, fold: (candidate, fold) not in records, on_records, growth=self.growth)
            # what promote refits from, once per log directory; a log with a config (gridsearch run's halving) refits from that
            if log_path is not None and log_path.is_dir() and SearchMeta.read(log_path).config is None:
                keep_refit_inputs(log_path, self.estimator, [c.params for c in candidates], self.X, self.y, self.fit_params)
        finally:
            progress.close()
            if log is not None:
                log.close()
        return records

    def _sent_objects(self, candidates: Sequence[Candidate]) -> list[Any]:
        """What the tasks carry that may be defined in the user's own code: estimators, values, scorers, data."""
        scorers = self.scorer._scorers.values() if isinstance(self.scorer, _MultimetricScorer) else [self.scorer]
        values = [value for candidate in candidates for value in candidate.params.values()]
        return [self.estimator, self.X, self.y, *values, *(getattr(scorer, "_score_func", scorer) for scorer in scorers)]

    def _result(self, record: FitRecord, n_test: int) -> dict[str, Any]:
        """The dict scikit-learn's ``_fit_and_score`` returns, from a record."""
        ok = record.status is Status.OK
        multimetric = self._multimetric(record)
        failed = dict.fromkeys(self.names, self.error_score) if isinstance(self.scorer, _MultimetricScorer) else self.error_score

        def scores(values: Mapping[str, float]) -> Any:
            if not ok:
                return failed
            return dict(values) if multimetric else values[SINGLE]

        result = {"fit_error": None if ok else record.traceback or record.error, "test_scores": scores(record.scores),
                  "n_test_samples": n_test, "fit_time": record.fit_time if ok else 0.0, "score_time": record.score_time if ok else 0.0}
        if self.return_train_score:
            result["train_scores"] = scores(record.train_scores)
        return result

    def _multimetric(self, record: FitRecord) -> bool:
        """Whether scores are a dict: several scorers, or a callable that returned a dict."""
        return isinstance(self.scorer, _MultimetricScorer) or set(record.scores) != {SINGLE}

    def _fit_line(self, record: FitRecord, folds: int, index: int, params: Mapping[str, Any], candidates: int) -> str:
        """The line scikit-learn prints after each fit when ``verbose > 1`` (scores from 3, counts from 10)."""
        where = f" {record.fold + 1}/{folds}" if self.verbose > 2 else ""
        where += f"; {index + 1}/{candidates}" if self.verbose > 9 else ""
        said = ", ".join(f"{name}={params[name]}" for name in sorted(params))
        said += ";" if said else ""
        if self.verbose > 2:
            train = record.train_scores if self.return_train_score else None
            if self._multimetric(record):
                said += "".join(f" {name}: ({_train_said(train, name)}test={record.scores[name]:.3f})" for name in sorted(record.scores))
            else:
                test = record.scores[SINGLE]
                said += ", score=" + (f"({_train_said(train, SINGLE)}test={test:.3f})" if train is not None else f"{test:.3f}")
        said += f" total time={short_format_time(record.fit_time + record.score_time)}"
        start = f"[CV{where}] END "
        return start + "." * (80 - len(start) - len(said)) + said

    def _warn_scorer_failures(self, records: Any) -> None:
        """A scorer that failed on a fit is said as scikit-learn says it (its score is ``error_score``)."""
        for record in records:
            for line in (record.warnings or "").splitlines():
                if line.startswith("ScorerError: "):
                    warnings.warn(f"Scoring failed. The score on this train-test partition for these parameters will be set to "
                                  f"{self.error_score}. Details: \n{line.removeprefix('ScorerError: ')}", UserWarning, stacklevel=4)


@dataclass(frozen=True)
class _LogTarget:
    """Where one ``evaluate_candidates`` call's records go: the log directory's id, the halving
    round (None: a search of one round) and each fold's training rows."""

    log_id: str
    round_: int | None
    train_rows: tuple[int, ...]

    def stamped(self, record: FitRecord) -> FitRecord:
        """``record`` as the log keeps it: under the log's search id, with its round and rows in a halving search."""
        if self.round_ is None:
            return replace(record, search_id=self.log_id)
        return replace(record, search_id=self.log_id, round=self.round_, fit_rows=self.train_rows[record.fold])


def candidate_ids(search_id: str, count: int) -> list[str]:
    """The run log's ids of the candidates of one :meth:`EngineSearch.evaluate` call, in its order."""
    return [content_id(search_id, index) for index in range(count)]


def _check_names(estimator: BaseEstimator, candidate_params: Sequence[Mapping[str, Any]]) -> None:
    """Raise scikit-learn's own error for a parameter the estimator does not have, before any work.

    ``set_params`` is tried once per distinct set of names (and classes of the estimators
    swapped in), as scikit-learn would call it on every fit, outside the fit's failure handling.
    """
    seen, steps = set(), step_names(estimator)
    for params in candidate_params:
        shape = tuple(sorted((name, type(value).__qualname__ if hasattr(value, "get_params") else "") for name, value in params.items()))
        if shape not in seen:
            seen.add(shape)
            clone(estimator).set_params(**resolve(clone(dict(params), safe=False), steps))  # import paths of steps, as the workers build them


def _train_said(train: Mapping[str, float] | None, name: str) -> str:
    return "" if train is None else f"train={train.get(name, math.nan):.3f}, "


@dataclass(frozen=True)
class _Rows:
    """What :attr:`EngineSearch._rows` scatters: one object (a tuple would be scattered item by item)."""

    X: Any
    y: Any
    fit_params: Mapping[str, Any]
    score_params: Mapping[str, Any]


def _held(rows: _Rows, folds: Folds, pairwise: bool) -> Dataset:
    """The ``data-…`` task of a search whose rows are in memory: the scattered rows with this call's folds."""
    return Dataset(rows.X, rows.y, folds, rows.fit_params, rows.score_params, pairwise)


def _logged(log_path: Path, stamp: RecordStamp) -> dict[tuple[str, int], FitRecord]:
    """The records a search's log holds, as records again (the last one of each fit counts)."""
    frame = read_log(log_path).drop_duplicates(["candidate_id", "fold"], keep="last")
    records = {}
    for row in frame.to_dict("records"):
        scores = {name: row[f"test_{name}"] for name in stamp.scoring}
        train = {name: row[f"train_{name}"] for name in stamp.scoring if f"train_{name}" in row}
        fields = {name: row[name] for name in ("fit_time", "score_time", "prep_time", "error", "traceback", "warnings")}
        fields = {name: None if isinstance(value, float) and math.isnan(value) and name in ("error", "traceback", "warnings")
                  else value for name, value in fields.items()}
        records[(row["candidate_id"], int(row["fold"]))] = FitRecord(
            search_id=stamp.search_id, candidate_id=row["candidate_id"], params=row["params"], fold=int(row["fold"]),
            status=Status(row["status"]), scores=scores, train_scores=train, **fields)
    return records
