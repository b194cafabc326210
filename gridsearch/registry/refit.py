"""The refit of promoted candidates: the production pipeline, on the search's full training data, before any write.

A search run from a config refits from it; a search class's log from the estimator and rows it
keeps (:mod:`gridsearch.log.refit_inputs`), as scikit-learn refits ``best_estimator_``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import get_scorer

from gridsearch.errors import GridsearchError
from gridsearch.log.records import SearchMeta
from gridsearch.log.refit_inputs import RefitInputs, read_refit_inputs
from gridsearch.registry.parent import TAG
from gridsearch.search.config import _SCHEMA, RegistryConfig, SearchConfig
from gridsearch.search.inputs import load_inputs
from gridsearch.search.space import resolve, step_names

Refit = tuple[BaseEstimator, dict[str, float], pd.DataFrame, dict[str, str]]  # the model, its metrics, its rows, its tags


@dataclass(frozen=True)
class Origin:
    """What a search's winners are refitted from (``refit(winners)``), and where they are registered."""

    registry: RegistryConfig
    target: str | None  # what the models predict, for predict's output column
    refit: Callable[[pd.DataFrame], dict[str, Refit]]


def refit_origin(meta: SearchMeta, log_path: Path, trust_types: bool) -> Origin:
    """The search's config, or what a search class's log keeps (else refused, saying why)."""
    if meta.config is not None:
        config = meta.search_config(log_path)
        return Origin(config.registry, config.data.target, partial(refit_all, config, meta, scoring=meta.scoring))
    kept = read_refit_inputs(log_path, trust_types)
    name = getattr(kept.y, "name", None)
    return Origin(_default_registry(), name if isinstance(name, str) else None, partial(refit_kept, kept))


def _default_registry() -> RegistryConfig:
    """A search class's log has no ``registry`` section: the defaults a config gets without one."""
    return RegistryConfig(**{key: spec.default for key, spec in _SCHEMA["registry"].items()})


def refit_all(config: SearchConfig, meta: SearchMeta, winners: pd.DataFrame,
              scoring: Sequence[str]) -> dict[str, Refit]:
    """Every winner refitted before anything is written, so a failing refit leaves MLflow untouched."""
    inputs = load_inputs(config)
    if inputs.data_fingerprint != meta.data_fingerprint:
        raise GridsearchError(f"the data changed since the search: fingerprint {meta.data_fingerprint} in the log, "
                              f"{inputs.data_fingerprint} now; the refit would train on other data (restore it, or rerun the search)")
    X, y = inputs.dataset.X, inputs.dataset.y
    steps = step_names(inputs.pipeline)
    refits = {}
    for row in winners.itertuples(index=False):
        model = uncached(clone(inputs.pipeline)).set_params(**resolve(row.params, steps))
        metrics, tags = _fit(model, row.candidate_id, X, y, {})
        if inputs.holdout is not None:
            X_test, y_test = inputs.holdout
            metrics.update({f"holdout_{name}": float(get_scorer(name)(model, X_test, y_test)) for name in scoring})
            tags[f"{TAG}n_holdout"] = str(len(X_test))
        refits[row.candidate_id] = (model, metrics, X, tags)
    return refits


def refit_kept(kept: RefitInputs, winners: pd.DataFrame) -> dict[str, Refit]:
    """Every winner of a search class's log refitted as scikit-learn refits its best: the kept estimator with
    the candidate's params, on all kept rows with the kept fit params; before anything is written."""
    frame = _signature_frame(kept.X)
    refits = {}
    for row in winners.itertuples(index=False):
        model = uncached(clone(kept.estimator)).set_params(**kept.params(row.candidate_id, row.params))
        metrics, tags = _fit(model, row.candidate_id, kept.X, kept.y, kept.fit_params)
        refits[row.candidate_id] = (model, metrics, frame, tags)
    return refits


def _signature_frame(X: Any) -> pd.DataFrame:
    """Rows as MLflow infers a model's signature from: a frame as is, an array's columns named by position."""
    if isinstance(X, pd.DataFrame):
        return X
    dense = X[:1000].toarray() if scipy.sparse.issparse(X) else np.asarray(X)
    return pd.DataFrame(dense, columns=[str(column) for column in range(dense.shape[1])])


def _fit(model: BaseEstimator, candidate_id: str, X: Any, y: Any, fit_params: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """Fit ``model`` in place: its ``refit_time`` metric, its ``n_train`` and ``refit_warnings`` tags."""
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X, **fit_params) if y is None else model.fit(X, y, **fit_params)
        except Exception as exc:  # noqa: BLE001 - any failure of the user's pipeline is reported in one line
            raise GridsearchError(f"refit of candidate {candidate_id} failed: {type(exc).__name__}: {exc}") from None
    metrics = {"refit_time": time.perf_counter() - started}
    tags = {f"{TAG}n_train": str(X.shape[0])}
    if caught:
        tags[f"{TAG}refit_warnings"] = "; ".join(sorted({f"{w.category.__name__}: {w.message}" for w in caught}))[:5000]
    return metrics, tags


def uncached(model: BaseEstimator) -> BaseEstimator:
    """No ``Pipeline(memory=...)`` anywhere: the production pipeline writes no intermediate files."""
    memory = {name: None for name, value in model.get_params(deep=True).items()
              if (name == "memory" or name.endswith("__memory")) and value is not None}
    return model.set_params(**memory) if memory else model
