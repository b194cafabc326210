"""What runs on the workers: fit a shared prefix once, then fit and score final estimators.

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
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import get_scorer

from gridsearch.plan import final_step_name
from gridsearch.space import resolve, step_names

_TRACEBACK_CHARS = 4000


@dataclass(frozen=True)
class Dataset:
    """What every worker holds once: features, target and the fold indices."""

    X: pd.DataFrame
    y: np.ndarray
    folds: tuple[tuple[np.ndarray, np.ndarray], ...]


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
    """One (candidate, fold) fit to do."""

    candidate_id: str
    params: Mapping[str, Any]


def failure(exc: BaseException) -> tuple[str, str]:
    """``("Type: message", traceback)`` of an exception, bounded in size."""
    text = "".join(traceback.format_exception(exc))
    return f"{type(exc).__name__}: {exc}", text[-_TRACEBACK_CHARS:]


def prepare(dataset: Dataset, fold: int, pipeline: BaseEstimator, prefix_params: Mapping[str, Any]) -> Prepared:
    """Fit the pipeline's prefix on the fold's train rows and transform both sides."""
    train, test = dataset.folds[fold]
    X_train, X_test = dataset.X.iloc[train], dataset.X.iloc[test]
    y_train, y_test = dataset.y[train], dataset.y[test]
    if final_step_name(pipeline) is None:
        return Prepared(X_train, y_train, X_test, y_test, 0.0)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            prefix = clone(pipeline).set_params(**resolve(prefix_params, step_names(pipeline)))[:-1]
            Xt_train = prefix.fit_transform(X_train, y_train)
            Xt_test = prefix.transform(X_test)
        except Exception as exc:  # noqa: BLE001 - a candidate's failure is data, not a crash
            return Prepared(None, y_train, None, y_test, time.perf_counter() - start, failure(exc), _summarise(caught))
    return Prepared(Xt_train, y_train, Xt_test, y_test, time.perf_counter() - start, warnings=_summarise(caught))


def fit_batch(prepared: Prepared, pipeline: BaseEstimator, items: Sequence[FitItem], scoring: Sequence[str]) -> list[dict[str, Any]]:
    """Fit and score the final estimator of each item on a prepared fold.

    Returns one record per item: ``candidate_id``, ``status``, ``scores``, ``fit_time``,
    ``score_time``, ``prep_time``, ``worker``, ``error``, ``traceback``, ``warnings``,
    ``started``, ``finished``. Warnings raised by a fit are recorded, not printed.
    """
    worker = _worker_address()
    scorers = {name: get_scorer(name) for name in scoring}
    steps = step_names(pipeline)
    return [_fit_one(prepared, pipeline, item, scorers, steps, worker) for item in items]


def _fit_one(prepared: Prepared, pipeline: BaseEstimator, item: FitItem, scorers: Mapping[str, Any], steps: frozenset[str], worker: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "candidate_id": item.candidate_id,
        "status": "ok",
        "scores": dict.fromkeys(scorers, float("nan")),
        "fit_time": float("nan"),
        "score_time": float("nan"),
        "prep_time": prepared.seconds,
        "worker": worker,
        "error": None,
        "traceback": None,
        "warnings": prepared.warnings,
        "started": time.time(),
    }
    if prepared.error is not None:
        record["error"], record["traceback"] = prepared.error
        return {**record, "status": "error", "finished": time.time()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            estimator = _final_estimator(pipeline, resolve(item.params, steps))
            start = time.perf_counter()
            estimator.fit(prepared.X_train, prepared.y_train)
            record["fit_time"] = time.perf_counter() - start
            start = time.perf_counter()
            record["scores"] = {name: float(scorer(estimator, prepared.X_test, prepared.y_test)) for name, scorer in scorers.items()}
            record["score_time"] = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - a candidate's failure is data, not a crash
            record["status"] = "error"
            record["error"], record["traceback"] = failure(exc)
    record["warnings"] = _summarise(caught, prepared.warnings)
    record["finished"] = time.time()
    return record


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
