"""Grid search for scikit-learn pipelines on Dask, with shared preprocessing and a run log.

>>> search = gridsearch.GridSearchCV(pipe, {"model__alpha": [0.1, 1.0]}, cv=5).fit(X, y)  # doctest: +SKIP
>>> result = gridsearch.run("conf/search.yaml", cv={"folds": 5})  # doctest: +SKIP
>>> result.cv_results.sort_values("rank_test_neg_root_mean_squared_error")  # doctest: +SKIP

Names are imported on first use, so ``python -m gridsearch --help`` starts instantly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GridSearchCV": "gridsearch.estimators.search_cv",
    "from_config": "gridsearch.estimators.from_config",
    "HalvingGridSearchCV": "gridsearch.estimators.halving",
    "HalvingRandomSearchCV": "gridsearch.estimators.halving",
    "RandomizedSearchCV": "gridsearch.estimators.search_cv",
    "run": "gridsearch.execute.engine",
    "resume": "gridsearch.execute.engine",
    "curve": "gridsearch.execute.curve",
    "CurveResult": "gridsearch.execute.curve",
    "prepare_search": "gridsearch.search.prepare",
    "estimate": "gridsearch.execute.estimate",
    "Estimate": "gridsearch.execute.estimate",
    "SearchResult": "gridsearch.execute.engine",
    "PreparedSearch": "gridsearch.search.prepare",
    "load_config": "gridsearch.search.config",
    "read_log": "gridsearch.log.runlog",
    "top": "gridsearch.log.query",
    "show": "gridsearch.log.query",
    "export": "gridsearch.log.query",
    "promote": "gridsearch.registry.promote",
    "predict": "gridsearch.registry.predict",
    "registry_table": "gridsearch.registry.table",
    "report": "gridsearch.view.report",
    "explain": "gridsearch.view.explain",
    "ArgumentError": "gridsearch.errors",
    "ConfigError": "gridsearch.errors",
    "GridsearchError": "gridsearch.errors",
    "CandidateFailed": "gridsearch.errors",
    "SearchInterrupted": "gridsearch.errors",
}
__all__ = [
    "ArgumentError",
    "CandidateFailed",
    "ConfigError",
    "CurveResult",
    "Estimate",
    "GridSearchCV",
    "GridsearchError",
    "HalvingGridSearchCV",
    "HalvingRandomSearchCV",
    "PreparedSearch",
    "RandomizedSearchCV",
    "SearchInterrupted",
    "SearchResult",
    "curve",
    "estimate",
    "explain",
    "export",
    "from_config",
    "load_config",
    "predict",
    "prepare_search",
    "promote",
    "read_log",
    "registry_table",
    "report",
    "resume",
    "run",
    "show",
    "top",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gridsearch' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
