"""What runs on the workers: raw stages, the shared prefix of a fold, and fits of final estimators.

Nothing here raises for a candidate's own failure: an exception becomes a record with
status ``error``, so one bad candidate never stops the search.
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import get_scorer
from sklearn.utils import _safe_indexing

from gridsearch.dataset import Dataset
from gridsearch.paths import PATH_PARAM, family_key, truncated
from gridsearch.plan import final_step_name
from gridsearch.space import resolve, step_names
from gridsearch.stages import assemble, fit_stage
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


@dataclass(frozen=True)
class Prepared:
    """A fold's data after the shared prefix, or the error that prevented it."""

    X_train: Any
    y_train: np.ndarray
    X_test: Any
    y_test: np.ndarray
    seconds: float
    error: tuple[str, str] | None = None
    warnings: str | None = None


@dataclass(frozen=True)
class FitItem:
    """One (candidate, fold) fit to do; ``params`` address the final step as in the pipeline."""

    candidate_id: str
    params: Mapping[str, Any]


def failure(exc: BaseException) -> tuple[str, str]:
    """``("Type: message", traceback)`` of an exception, bounded in size."""
    text = "".join(traceback.format_exception(exc))
    return f"{type(exc).__name__}: {exc}", text[-_TRACEBACK_CHARS:]


def run_stage(dataset: Dataset, fold: int, stage: BaseEstimator, columns: Any, rows_id: str, path: str, memo_location: str | None) -> StageResult:
    """Fit one raw stage on a fold's train rows and transform both sides, through the memo."""
    X_train, y_train, X_test, _ = dataset.fold(fold)
    start = time.perf_counter()
    try:
        if columns is not None:
            selected = columns(X_train) if callable(columns) else columns
            X_train, X_test = _safe_indexing(X_train, selected, axis=1), _safe_indexing(X_test, selected, axis=1)
        output, from_memo = fit_stage(X_train, y_train, X_test, stage, rows_id, path, StageMemo(memo_location))
    except Exception as exc:  # noqa: BLE001 - a candidate's failure is data, not a crash
        return StageResult(path, None, False, time.perf_counter() - start, failure(exc))
    return StageResult(path, output, from_memo, time.perf_counter() - start)


def stage_summary(result: StageResult) -> tuple[str, bool, float, bool]:
    """``(path, from_memo, seconds, failed)``: what the client counts, without the matrices."""
    return result.path, result.from_memo, result.seconds, result.error is not None


def prepare(dataset: Dataset, fold: int, pipeline: BaseEstimator, prefix_params: Mapping[str, Any], stages: Mapping[str, StageResult]) -> Prepared:
    """Fit the pipeline's prefix on the fold's train rows and transform both sides.

    Raw stages computed by :func:`run_stage` stand in for their steps, so only the rest
    of the prefix (and the assembly of a ``ColumnTransformer``) runs here.
    """
    X_train, y_train, X_test, y_test = dataset.fold(fold)
    if final_step_name(pipeline) is None:
        return Prepared(X_train, y_train, X_test, y_test, 0.0)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            failed = next((result.error for result in stages.values() if result.error is not None), None)
            if failed is not None:
                return Prepared(None, y_train, None, y_test, 0.0, failed)
            prefix = clone(pipeline).set_params(**resolve(prefix_params, step_names(pipeline)))[:-1]
            prefix = assemble(prefix, {path: result.output for path, result in stages.items()})
            Xt_train = prefix.fit_transform(X_train, y_train)
            Xt_test = prefix.transform(X_test)
        except Exception as exc:  # noqa: BLE001 - a candidate's failure is data, not a crash
            return Prepared(None, y_train, None, y_test, time.perf_counter() - start, failure(exc), _summarise(caught))
    seconds = time.perf_counter() - start + sum(result.seconds for result in stages.values())
    return Prepared(Xt_train, y_train, Xt_test, y_test, seconds, warnings=_summarise(caught))


def fit_batch(prepared: Prepared, pipeline: BaseEstimator, items: Sequence[FitItem], scoring: Sequence[str]) -> list[dict[str, Any]]:
    """Fit and score the final estimator of each item on a prepared fold.

    Items that differ only in ``n_estimators`` of a forest or boosting model share one
    fit of the largest; the others are scored on its first trees (``shared_fit`` names
    the candidate whose fit they used, and their ``fit_time`` is 0).

    Returns one record per item: ``candidate_id``, ``status``, ``scores``, ``fit_time``,
    ``score_time``, ``prep_time``, ``worker``, ``error``, ``traceback``, ``warnings``,
    ``shared_fit``, ``started``, ``finished``. Warnings are recorded, not printed.
    """
    worker = _worker_address()
    scorers = {name: get_scorer(name) for name in scoring}
    steps = step_names(pipeline)
    records = []
    for family in _families(pipeline, items, steps):
        records.extend(_fit_family(prepared, pipeline, family, scorers, steps, worker))
    return records


def _families(pipeline: BaseEstimator, items: Sequence[FitItem], steps: frozenset[str]) -> list[list[tuple[FitItem, BaseEstimator]]]:
    """Items grouped so that each group needs one fit; largest ``n_estimators`` first."""
    families: dict[str, list[tuple[FitItem, BaseEstimator]]] = {}
    for item in items:
        try:
            estimator = _final_estimator(pipeline, resolve(item.params, steps))
            key = family_key(estimator, item.params) or item.candidate_id
        except Exception:  # noqa: BLE001 - reported when the item is fitted
            estimator, key = None, item.candidate_id
        families.setdefault(key, []).append((item, estimator))
    for members in families.values():
        members.sort(key=lambda member: -getattr(member[1], PATH_PARAM, 0))
    return list(families.values())


def _fit_family(prepared: Prepared, pipeline: BaseEstimator, family: list[tuple[FitItem, BaseEstimator]], scorers: Mapping[str, Any], steps: frozenset[str], worker: str) -> list[dict[str, Any]]:
    leader_item, leader = family[0]
    records = [_record(item, prepared, scorers, worker) for item, _ in family]
    if prepared.error is not None:
        for record in records:
            record.update(status="error", error=prepared.error[0], traceback=prepared.error[1], finished=time.time())
        return records
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            estimator = leader if leader is not None else _final_estimator(pipeline, resolve(leader_item.params, steps))
            start = time.perf_counter()
            estimator.fit(prepared.X_train, prepared.y_train)
            records[0]["fit_time"] = time.perf_counter() - start
            for (item, member), record in zip(family, records):
                view = truncated(estimator, member.n_estimators) if member is not leader else estimator
                start = time.perf_counter()
                record["scores"] = {name: float(scorer(view, prepared.X_test, prepared.y_test)) for name, scorer in scorers.items()}
                record["score_time"] = time.perf_counter() - start
                if member is not leader:
                    record.update(fit_time=0.0, shared_fit=leader_item.candidate_id)
        except Exception as exc:  # noqa: BLE001 - a candidate's failure is data, not a crash
            error, trace = failure(exc)
            for record in records:
                if record["score_time"] != record["score_time"]:  # NaN: not scored yet
                    record.update(status="error", error=error, traceback=trace)
    for record in records:
        record.update(warnings=_summarise(caught, prepared.warnings), finished=time.time())
    return records


def _record(item: FitItem, prepared: Prepared, scorers: Mapping[str, Any], worker: str) -> dict[str, Any]:
    nan = float("nan")
    return {
        "candidate_id": item.candidate_id, "status": "ok", "scores": dict.fromkeys(scorers, nan),
        "fit_time": nan, "score_time": nan, "prep_time": prepared.seconds, "worker": worker,
        "error": None, "traceback": None, "warnings": prepared.warnings, "shared_fit": None, "started": time.time(),
    }


def _summarise(caught: list[warnings.WarningMessage], earlier: str | None = None) -> str | None:
    """Distinct warnings, one per line, so they land in the log, not on the terminal."""
    lines = dict.fromkeys([*(earlier.splitlines() if earlier else []), *(f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught)])
    return "\n".join(lines) or None


def _final_estimator(pipeline: BaseEstimator, params: dict[str, Any]) -> BaseEstimator:
    """A fresh final estimator with ``params`` (addressed as in the whole pipeline) set."""
    final_step = final_step_name(pipeline)
    if final_step is None:
        return clone(pipeline).set_params(**params)
    estimator = clone(params.pop(final_step, pipeline.steps[-1][1]))
    strip = len(final_step) + 2
    return estimator.set_params(**{name[strip:]: value for name, value in params.items()})


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:
        return "local"
