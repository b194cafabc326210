"""Ensembles scored along a path: one fit serves every smaller ``n_estimators``.

Forests draw each tree's seed in sequence and boosting adds stages in sequence, so the
first ``k`` trees (stages) of a fitted ensemble are exactly the ensemble a fit with
``n_estimators=k`` would give (bit for bit; see tests/gridsearch/test_correctness.py).
The converse serves halving along ``n_estimators``: with an int ``random_state``, growing a
fitted ``k``-tree ensemble to ``r`` trees by scikit-learn's ``warm_start`` gives the ``r``-tree
fit, bit for bit (a forest draws the seeds of its trees already there before the new ones'; boosting
keeps its random state between fits; see tests/gridsearch/test_halving_growth.py).
"""

from __future__ import annotations

import copy
import json
import numbers
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
    return _params_text({name: value for name, value in params.items() if name.rpartition("__")[2] != PATH_PARAM})


def growth_key(params: Mapping[str, Any], resource: str) -> str:
    """What one candidate is in every round of a halving along ``resource``: all its params but that one."""
    return _params_text({name: value for name, value in params.items() if name != resource})


def _params_text(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=value_text)


def why_not_grown(estimator: BaseEstimator) -> str | None:
    """Why a fitted ``estimator`` cannot be grown to the fit of more trees bit for bit; None when it can.

    Forests and boosting without early stopping can, with an int ``random_state``: with None
    or a ``RandomState`` a refit draws other trees anyway.
    """
    if not supports_path(estimator):
        return "not a forest or a gradient boosting without early stopping"
    seed = estimator.random_state
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        return "random_state is not an int"
    return None


def grown(fitted: BaseEstimator, n_estimators: int) -> BaseEstimator:
    """A copy of ``fitted`` that its next ``fit`` grows to ``n_estimators`` trees, leaving ``fitted`` as it is.

    The copy is shallow but for what a warm-started fit changes in place: the forest's list of
    trees, boosting's random state.
    """
    copied = copy.copy(fitted)
    copied.estimators_ = copy.copy(fitted.estimators_)
    if hasattr(fitted, "_rng"):
        copied._rng = copy.deepcopy(fitted._rng)
    return copied.set_params(warm_start=True, n_estimators=n_estimators)


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
