"""The refit of promoted candidates: the production pipeline, on the search's full training data, before any write."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import get_scorer

from gridsearch.errors import GridsearchError
from gridsearch.log.records import SearchMeta
from gridsearch.registry.parent import TAG
from gridsearch.search.config import SearchConfig
from gridsearch.search.inputs import load_inputs
from gridsearch.search.space import resolve, step_names


def refit_all(config: SearchConfig, meta: SearchMeta, winners: pd.DataFrame,
              scoring: Sequence[str]) -> dict[str, tuple[BaseEstimator, dict[str, float], pd.DataFrame, dict[str, str]]]:
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
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model.fit(X, y)
            except Exception as exc:  # noqa: BLE001 - any failure of the user's pipeline is reported in one line
                raise GridsearchError(f"refit of candidate {row.candidate_id} failed: {type(exc).__name__}: {exc}") from None
        metrics = {"refit_time": time.perf_counter() - started}
        tags = {f"{TAG}n_train": str(len(X))}
        if inputs.holdout is not None:
            X_test, y_test = inputs.holdout
            metrics.update({f"holdout_{name}": float(get_scorer(name)(model, X_test, y_test)) for name in scoring})
            tags[f"{TAG}n_holdout"] = str(len(X_test))
        if caught:
            tags[f"{TAG}refit_warnings"] = "; ".join(sorted({f"{w.category.__name__}: {w.message}" for w in caught}))[:5000]
        refits[row.candidate_id] = (model, metrics, X, tags)
    return refits


def uncached(model: BaseEstimator) -> BaseEstimator:
    """No ``Pipeline(memory=...)`` anywhere: the production pipeline writes no intermediate files."""
    memory = {name: None for name, value in model.get_params(deep=True).items()
              if (name == "memory" or name.endswith("__memory")) and value is not None}
    return model.set_params(**memory) if memory else model
