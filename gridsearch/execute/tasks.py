"""What runs on the workers: raw stages through the memo, prefixes, fit families; failures become records.

Every function here takes what the plan decided (:mod:`gridsearch.search.plan`) and runs it;
none of them groups or re-plans.
"""

from __future__ import annotations

import copy
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing

from gridsearch.execute.scoring import Scoring
from gridsearch.execute.sizes import model_size
from gridsearch.log.records import FitItem, FitRecord, RecordStamp, Status
from gridsearch.search.dataset import Dataset
from gridsearch.search.ensembles import grown, truncated
from gridsearch.search.plan import FitFamily, RawStage, final_step_name, split_params
from gridsearch.search.space import resolve, step_names
from gridsearch.search.stages import assemble, fit_stage
from kampai.cache import StageMemo, StageOutput

_TRACEBACK_CHARS = 4000


@dataclass(frozen=True)
class StageResult:
    """A raw stage on one fold, or the error that prevented it."""

    path: str
    output: StageOutput | None
    from_memo: bool
    seconds: float
    error: tuple[str, str] | None = None
    warnings: str | None = None
    exception: BaseException | None = None  # the error itself, for error_score="raise"


@dataclass(frozen=True)
class Prepared:
    """A fold's data after the shared prefix, or the error that prevented it.

    ``fit_params`` are the final estimator's for the fold's train rows; ``score_params``
    the scorers' for its (train, test) rows.
    """

    X_train: Any
    y_train: np.ndarray | None
    X_test: Any
    y_test: np.ndarray | None
    seconds: float
    error: tuple[str, str] | None = None
    warnings: str | None = None
    exception: BaseException | None = None  # the error itself, for error_score="raise"
    fit_params: Mapping[str, Any] = field(default_factory=dict)
    score_params: tuple[Mapping[str, Any], Mapping[str, Any]] = ({}, {})

    @classmethod
    def raw(cls, dataset: Dataset, fold: int) -> Prepared:
        """The fold's rows as they are: for a pipeline without a prefix."""
        return cls(*dataset.fold(fold), 0.0, fit_params=dataset.fold_fit_params(fold), score_params=_score_params(dataset, fold))


@dataclass(frozen=True)
class FitSetup:
    """What every fit task of a search shares.

    ``final_step`` names the pipeline's final step when the plan shares its prefix (None:
    the estimator is fitted whole, see :attr:`gridsearch.search.plan.Plan.final_step`).
    """

    pipeline: BaseEstimator
    final_step: str | None
    stamp: RecordStamp
    scoring: Scoring

    @cached_property
    def steps(self) -> frozenset[str]:
        """The pipeline's swappable steps, found once per task rather than once per family."""
        return step_names(self.pipeline)

    @cached_property
    def fresh(self) -> BaseEstimator:
        """What each fit starts from, unfitted: the final step, or the whole estimator without one.

        Cloned once per task; each fit takes a deep copy of it (a fifth of ``clone``'s cost:
        no ``get_params`` walk), which is the same unfitted estimator.
        """
        return clone(self.pipeline if self.final_step is None else self.pipeline.steps[-1][1])

    @classmethod
    def of(cls, pipeline: BaseEstimator, stamp: RecordStamp) -> FitSetup:
        """The setup of a search from a config: its prefix shared, scored by the stamp's scorer names."""
        return cls(pipeline, final_step_name(pipeline), stamp, Scoring.named(stamp.scoring))


def failure(exc: BaseException) -> tuple[str, str]:
    """``("Type: message", traceback)`` of an exception, bounded in size."""
    text = "".join(traceback.format_exception(exc))
    return f"{type(exc).__name__}: {exc}", text[-_TRACEBACK_CHARS:]


def run_stage(dataset: Dataset, fold: int, stage: RawStage, rows_id: str, memo_location: str | None) -> StageResult:
    """Fit one raw stage on a fold's train rows and transform both sides, through the memo."""
    X_train, y_train, X_test, _ = dataset.fold(fold)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if stage.columns is not None:
                selected = stage.columns(X_train) if callable(stage.columns) else stage.columns
                X_train, X_test = _safe_indexing(X_train, selected, axis=1), _safe_indexing(X_test, selected, axis=1)
            output, from_memo = fit_stage(X_train, y_train, X_test, stage.estimator, rows_id, stage.path, StageMemo(memo_location))
        except Exception as exc:  # noqa: BLE001 - a candidate's failure is data, not a crash
            return StageResult(stage.path, None, False, time.perf_counter() - start, failure(exc), _summarise(caught), exc)
    return StageResult(stage.path, output, from_memo, time.perf_counter() - start, warnings=_summarise(caught))


def stage_summary(result: StageResult) -> tuple[str, bool, float, bool, str | None]:
    """``(path, from_memo, seconds, failed, warnings)``: what the client counts, without the matrices."""
    return result.path, result.from_memo, result.seconds, result.error is not None, result.warnings


def prepare(dataset: Dataset, fold: int, pipeline: BaseEstimator, prefix_params: Mapping[str, Any], stages: Mapping[str, StageResult]) -> Prepared:
    """Fit the pipeline's prefix on the fold's train rows and transform both sides.

    Raw stages computed by :func:`run_stage` stand in for their steps, so only the rest
    of the prefix (and the assembly of a ``ColumnTransformer``) runs here.
    """
    X_train, y_train, X_test, y_test = dataset.fold(fold)
    final_step = pipeline.steps[-1][0]
    prefix_fit, final_fit = split_params(dataset.fold_fit_params(fold), final_step)
    scoring = _score_params(dataset, fold)
    final_fit = {name.removeprefix(f"{final_step}__"): value for name, value in final_fit.items()}
    earlier = "\n".join(result.warnings for result in stages.values() if result.warnings) or None
    failed = next((result for result in stages.values() if result.error is not None), None)
    if failed is not None:
        return Prepared(None, y_train, None, y_test, 0.0, failed.error, earlier, failed.exception)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            prefix = clone(pipeline).set_params(**resolve(prefix_params, step_names(pipeline)))[:-1]
            prefix = assemble(prefix, {path: result.output for path, result in stages.items()})
            Xt_train = prefix.fit_transform(X_train, y_train, **prefix_fit)
            Xt_test = _transform(prefix, X_test)
        except Exception as exc:  # noqa: BLE001 - a candidate's failure is data, not a crash
            return Prepared(None, y_train, None, y_test, time.perf_counter() - start, failure(exc), _summarise(caught, earlier), exc)
    seconds = time.perf_counter() - start + sum(result.seconds for result in stages.values())
    return Prepared(Xt_train, y_train, Xt_test, y_test, seconds, warnings=_summarise(caught, earlier), fit_params=final_fit, score_params=scoring)


def fit_batch(source: Prepared | Dataset, fold: int, families: Sequence[FitFamily], setup: FitSetup) -> list[FitRecord]:
    """Fit and score each family's final estimator on a fold, one record per item.

    ``source`` is the fold's prepared prefix output, or the whole dataset when the
    estimator is fitted whole. A family's first item is fitted; the others are scored on
    its first trees (``shared_fit`` names the fitted candidate, their ``fit_time`` is 0).
    Warnings are recorded, not printed.
    """
    return _fit_families(source, fold, families, setup, _Fresh())


@dataclass(frozen=True)
class FittedBatch:
    """What :func:`grow_batch` returns: the records, and each family's fitted final estimator (None: its fit failed)."""

    records: list[FitRecord]
    models: tuple[BaseEstimator | None, ...]


def grow_batch(source: Prepared | Dataset, fold: int, families: Sequence[FitFamily], setup: FitSetup,
               previous: Sequence[BaseEstimator | None]) -> FittedBatch:
    """:func:`fit_batch`, each family grown from ``previous[i]`` (a fitted ensemble of fewer trees; None: a fit
    from scratch), and the fitted estimators kept: the next halving round grows them.

    A grown fit's ``fit_time`` is the time the new trees took.
    """
    models = _Growing({family.items[0].candidate_id: model for family, model in zip(families, previous) if model is not None})
    records = _fit_families(source, fold, families, setup, models)
    return FittedBatch(records, tuple(models.fitted.get(family.items[0].candidate_id) for family in families))


def records_of(batch: FittedBatch) -> list[FitRecord]:
    """A :func:`grow_batch` task's records, the part the client gathers."""
    return batch.records


def model_of(batch: FittedBatch, index: int) -> BaseEstimator | None:
    """A :func:`grow_batch` task's ``index``-th family's fitted estimator, the part kept on the worker."""
    return batch.models[index]


class _Fresh:
    """Every final estimator fitted from scratch, none kept (:func:`fit_batch`)."""

    def start(self, item: FitItem) -> BaseEstimator | None:
        """The estimator to fit for ``item``, or None for a fresh one."""
        return None

    def keep(self, item: FitItem, estimator: BaseEstimator) -> None:
        """``estimator`` was fitted for ``item``."""


class _Growing(_Fresh):
    """Final estimators grown from the previous round's (by candidate id), all fitted ones kept (:func:`grow_batch`)."""

    def __init__(self, previous: Mapping[str, BaseEstimator]) -> None:
        self.previous = previous
        self.fitted: dict[str, BaseEstimator] = {}

    def start(self, item: FitItem) -> BaseEstimator | None:
        model = self.previous.get(item.candidate_id)
        return None if model is None else grown(model, item.n_estimators)

    def keep(self, item: FitItem, estimator: BaseEstimator) -> None:
        self.fitted[item.candidate_id] = estimator


def _fit_families(source: Prepared | Dataset, fold: int, families: Sequence[FitFamily], setup: FitSetup, models: _Fresh) -> list[FitRecord]:
    prepared = source if isinstance(source, Prepared) else Prepared.raw(source, fold)
    fitting = _Fitting(prepared, fold, setup, _worker_address(), models)
    return [record for family in families for record in fitting.family(family)]


@dataclass(frozen=True)
class _Fitting:
    """The fixed parts of one fit task, so each family's fit reads as one short method."""

    prepared: Prepared
    fold: int
    setup: FitSetup
    worker: str
    models: _Fresh

    def family(self, family: FitFamily) -> list[FitRecord]:
        started = time.time()
        prepared = self.prepared
        if prepared.error is not None:
            if self.setup.scoring.raise_errors and prepared.exception is not None:
                raise prepared.exception
            return [self._record(item, started, prepared.warnings, error=prepared.error) for item in family.items]
        leader = family.items[0]
        outcomes: list[dict[str, Any]] = []
        error = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                estimator = self._estimator(leader)
                start = time.perf_counter()
                if prepared.y_train is None:
                    estimator.fit(prepared.X_train, **prepared.fit_params)
                else:
                    estimator.fit(prepared.X_train, prepared.y_train, **prepared.fit_params)
                fit_time = time.perf_counter() - start
                self.models.keep(leader, estimator)
                for item in family.items:
                    view = estimator if item is leader else truncated(estimator, item.n_estimators)
                    start = time.perf_counter()
                    scores, scorer_errors = self._score(view, prepared.X_test, prepared.y_test, 1)
                    score_time = time.perf_counter() - start
                    train_scores = self._score(view, prepared.X_train, prepared.y_train, 0)[0] if self.setup.scoring.train else {}
                    shared = item is not leader
                    outcomes.append({"scores": scores, "train_scores": train_scores, "score_time": score_time,
                                     "fit_time": 0.0 if shared else fit_time, "shared_fit": leader.candidate_id if shared else None,
                                     "model_size": model_size(view), "scorer_errors": scorer_errors})
            except Exception as exc:
                if self.setup.scoring.raise_errors:
                    raise
                error = failure(exc)
        notes = _summarise(caught, prepared.warnings)
        scored = [self._record(item, started, notes, **outcome) for item, outcome in zip(family.items, outcomes)]
        return scored + [self._record(item, started, notes, error=error) for item in family.items[len(outcomes):]]

    def _estimator(self, item: FitItem) -> BaseEstimator:
        """A fresh final estimator (or whole estimator) with the item's params set, or the one ``models`` grows."""
        started = self.models.start(item)
        return final_estimator(self.setup, resolve(item.params, self.setup.steps)) if started is None else started

    def _score(self, model: BaseEstimator, X: Any, y: Any, side: int) -> tuple[dict[str, float], list[str]]:
        return self.setup.scoring.score(model, X, y, self.prepared.score_params[side], self.setup.stamp.error_score)

    def _record(self, item: FitItem, started: float, notes: str | None, *, error: tuple[str, str] | None = None,
                scores: Mapping[str, float] | None = None, scorer_errors: Sequence[str] = (), **times: Any) -> FitRecord:
        message, trace = error or (None, None)
        notes = "\n".join([*(notes.splitlines() if notes else []), *scorer_errors]) or None
        return FitRecord.of(self.setup.stamp, item, self.fold, Status.OK if error is None else Status.ERROR, scores or {},
                            prep_time=self.prepared.seconds, worker=self.worker, error=message, traceback=trace,
                            warnings=notes, started=started, finished=time.time(), **times)


def _transform(prefix: Pipeline, X: Any) -> Any:
    """``X`` through the fitted ``prefix``'s steps, as the whole pipeline's ``predict`` passes it.

    Not ``prefix.transform``: that checks the prefix's last step is fitted, which refuses a
    stateless transformer with no fitted attributes (the whole pipeline never checks it).
    """
    for _, step in prefix.steps:
        if step is not None and step != "passthrough":
            X = step.transform(X)
    return X


def _summarise(caught: list[warnings.WarningMessage], earlier: str | None = None) -> str | None:
    """Distinct warnings, one per line, so they land in the log, not on the terminal."""
    lines = dict.fromkeys([*(earlier.splitlines() if earlier else []), *map(_warning_line, caught)])
    return "\n".join(lines) or None


def _warning_line(caught: warnings.WarningMessage) -> str:
    """``Category: first line of the message``; the category alone for an empty message."""
    first = next(iter(str(caught.message).splitlines()), "")
    return f"{caught.category.__name__}: {first}" if first else caught.category.__name__


def _score_params(dataset: Dataset, fold: int) -> tuple[dict[str, Any], dict[str, Any]]:
    return dataset.fold_score_params(fold, 0), dataset.fold_score_params(fold, 1)


def final_estimator(setup: FitSetup, params: dict[str, Any]) -> BaseEstimator:
    """A fresh final estimator with ``params`` (addressed as in the whole pipeline) set; the whole one without a final step.

    A param that swaps the final step brings its own estimator; otherwise the setup's fresh one is copied.
    """
    final_step = setup.final_step
    if final_step is None:
        return _set_params(copy.deepcopy(setup.fresh), params)
    estimator = clone(params.pop(final_step)) if final_step in params else copy.deepcopy(setup.fresh)
    strip = len(final_step) + 2
    return estimator.set_params(**{name[strip:]: value for name, value in params.items()})


def _set_params(estimator: BaseEstimator, params: Mapping[str, Any]) -> BaseEstimator:
    """``estimator.set_params(**params)``; for a pipeline whose params all address its steps' own, each step's ``set_params``.

    The same outcome and errors as ``Pipeline.set_params``, which checks the step name and
    hands ``rest`` of ``step__rest`` to the step, without its ``get_params(deep=True)`` walk
    of every step (half the cost of setting a tiny fit's params).
    """
    if type(estimator).set_params is not Pipeline.set_params:
        return estimator.set_params(**params)
    steps = dict(estimator.steps)
    by_step: dict[str, dict[str, Any]] = {}
    for name, value in params.items():
        step, _, rest = name.partition("__")
        if not rest or step not in steps:  # a step swapped, or the pipeline's own parameter
            return estimator.set_params(**params)
        by_step.setdefault(step, {})[rest] = value
    for step, step_params in by_step.items():
        steps[step].set_params(**step_params)
    return estimator


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:
        return "local"
