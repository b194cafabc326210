"""Ensembles along ``n_estimators``: which estimators have a path, who shares a fit, truncated views."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    AdaBoostRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import Ridge

from gridsearch.search.ensembles import family_key, supports_path, truncated

X_REG, Y_REG = make_regression(n_samples=120, n_features=5, noise=5.0, random_state=0)
X_CLS, Y_CLS = make_classification(n_samples=120, n_features=5, n_classes=3, n_informative=3, random_state=0)


@pytest.mark.parametrize("estimator", [RandomForestRegressor(), RandomForestClassifier(), ExtraTreesRegressor(), ExtraTreesClassifier(),
                                       GradientBoostingRegressor(), GradientBoostingClassifier()], ids=lambda e: type(e).__name__)
def test_forests_and_boosting_have_a_path(estimator: BaseEstimator) -> None:
    """Forests and boosting without early stopping are scored along ``n_estimators``."""
    assert supports_path(estimator)
    assert supports_path(estimator, {"model__max_depth": 3})


@pytest.mark.parametrize("estimator", [Ridge(), HistGradientBoostingRegressor(), AdaBoostRegressor()], ids=lambda e: type(e).__name__)
def test_other_estimators_have_no_path(estimator: BaseEstimator) -> None:
    """Anything else (AdaBoost may stop early, histogram boosting has no ``n_estimators``) is fitted alone."""
    assert not supports_path(estimator)
    assert family_key(estimator, {"model__n_estimators": 10}) is None


def test_boosting_with_early_stopping_has_no_path() -> None:
    """``n_iter_no_change`` may cut the path short, whether set on the estimator or by the candidate."""
    assert not supports_path(GradientBoostingRegressor(n_iter_no_change=5))
    assert not supports_path(GradientBoostingRegressor(), {"model__n_iter_no_change": 5})
    assert not supports_path(GradientBoostingClassifier(), {"n_iter_no_change": 5})
    assert supports_path(GradientBoostingRegressor(n_iter_no_change=5), {"model__n_iter_no_change": None})
    assert family_key(GradientBoostingRegressor(), {"model__n_iter_no_change": 5, "model__n_estimators": 10}) is None


def test_family_key_ignores_only_n_estimators() -> None:
    """Candidates differing only in ``n_estimators`` share a key; any other difference splits them."""
    forest = RandomForestRegressor()
    base = {"model": "sklearn.ensemble.RandomForestRegressor", "model__max_depth": 3, "model__n_estimators": 10}
    assert family_key(forest, base) == family_key(forest, {**base, "model__n_estimators": 3})
    assert family_key(forest, base) == family_key(forest, dict(reversed(list(base.items()))))
    assert family_key(forest, base) != family_key(forest, {**base, "model__max_depth": 4})
    assert family_key(forest, base) != family_key(forest, {**base, "model__min_samples_leaf": 2})


@pytest.mark.parametrize(("make", "X", "y", "predict"), [
    (RandomForestRegressor, X_REG, Y_REG, "predict"),
    (ExtraTreesClassifier, X_CLS, Y_CLS, "predict_proba"),
    (GradientBoostingRegressor, X_REG, Y_REG, "predict"),
    (GradientBoostingClassifier, X_CLS, Y_CLS, "predict_proba"),
], ids=["forest", "extra-trees-classifier", "boosting", "boosting-classifier"])
def test_truncated_view_predicts_like_a_smaller_fit(make: type, X: np.ndarray, y: np.ndarray, predict: str) -> None:
    """The first ``k`` trees of a fit predict bit for bit as a fit with ``n_estimators=k``."""
    fitted = make(n_estimators=10, random_state=0).fit(X, y)
    for k in (1, 4, 9):
        smaller = make(n_estimators=k, random_state=0).fit(X, y)
        view = truncated(fitted, k)
        np.testing.assert_array_equal(getattr(view, predict)(X), getattr(smaller, predict)(X))
        assert view.n_estimators == k and len(view.estimators_) == k


@pytest.mark.parametrize("make", [RandomForestRegressor, GradientBoostingRegressor], ids=["forest", "boosting"])
def test_truncated_view_leaves_the_fitted_model_alone(make: type) -> None:
    """A view is a shallow copy: the fitted ensemble keeps all its trees and predictions."""
    fitted = make(n_estimators=10, random_state=0).fit(X_REG, Y_REG)
    before = fitted.predict(X_REG)
    truncated(fitted, 3).predict(X_REG)
    assert fitted.n_estimators == 10 and len(fitted.estimators_) == 10
    assert getattr(fitted, "n_estimators_", 10) == 10
    np.testing.assert_array_equal(fitted.predict(X_REG), before)
    assert truncated(fitted, 10) is fitted
