"""Grid search for scikit-learn pipelines on Dask, with shared preprocessing and a run log.

>>> result = gridsearch.run("conf/search.yaml", cv={"folds": 5})  # doctest: +SKIP
>>> result.cv_results.sort_values("rank_test_neg_root_mean_squared_error")  # doctest: +SKIP

Names are imported on first use, so ``python -m gridsearch --help`` starts instantly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run": "gridsearch.engine",
    "resume": "gridsearch.engine",
    "prepare_search": "gridsearch.engine",
    "SearchResult": "gridsearch.engine",
    "PreparedSearch": "gridsearch.engine",
    "load_config": "gridsearch.config",
    "read_log": "gridsearch.runlog",
    "top": "gridsearch.query",
    "show": "gridsearch.query",
    "export": "gridsearch.query",
    "ConfigError": "gridsearch.errors",
    "GridsearchError": "gridsearch.errors",
    "CandidateFailed": "gridsearch.errors",
    "SearchInterrupted": "gridsearch.errors",
}
__all__ = ["CandidateFailed", "ConfigError", "GridsearchError", "PreparedSearch", "SearchInterrupted", "SearchResult", "export", "load_config", "prepare_search", "read_log", "resume", "run", "show", "top"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gridsearch' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
