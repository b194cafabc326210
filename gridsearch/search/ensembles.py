"""Ensembles scored along a path: one fit serves every smaller ``n_estimators``.

Forests draw each tree's seed in sequence and boosting adds stages in sequence, so the
first ``k`` trees (stages) of a fitted ensemble are exactly the ensemble a fit with
``n_estimators=k`` would give (bit for bit; see tests/gridsearch/test_correctness.py).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from kampai.ids import value_text

PATH_PARAM = "n_estimators"
EARLY_STOPPING = "n_iter_no_change"
_FORESTS = (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor)
_BOOSTING = (GradientBoostingClassifier, GradientBoostingRegressor)


def supports_path(estimator: BaseEstimator, params: Mapping[str, Any] | None = None) -> bool:
    """Forests, and boosting without early stopping (which would cut the path short).

    ``params`` are the candidate's parameters for ``estimator`` (``step__name`` or bare
    names), read for an ``n_iter_no_change`` that turns early stopping on.
    """
    if isinstance(estimator, _BOOSTING):
        given = [value for name, value in (params or {}).items() if name.rpartition("__")[2] == EARLY_STOPPING]
        return (given[0] if given else estimator.n_iter_no_change) is None
    return isinstance(estimator, _FORESTS)


def family_key(estimator: BaseEstimator, params: Mapping[str, Any]) -> str | None:
    """What candidates sharing one fit have in common: all params but ``n_estimators``."""
    if not supports_path(estimator, params):
        return None
    rest = {name: value for name, value in params.items() if name.rpartition("__")[2] != PATH_PARAM}
    return json.dumps(rest, sort_keys=True, default=value_text)


def truncated(fitted: BaseEstimator, n_estimators: int) -> BaseEstimator:
    """A view of ``fitted`` with only its first ``n_estimators`` trees or stages."""
    if n_estimators == fitted.n_estimators:
        return fitted
    view = copy.copy(fitted)
    view.estimators_ = fitted.estimators_[:n_estimators]
    view.n_estimators = n_estimators
    if hasattr(fitted, "n_estimators_"):
        view.n_estimators_ = n_estimators
    return view
