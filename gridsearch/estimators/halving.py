"""``HalvingGridSearchCV`` and ``HalvingRandomSearchCV``: scikit-learn's successive halving, each round on the engine.

Scikit-learn decides the rounds (which candidates, on how many rows or trees, who goes on);
each round is one ``evaluate_candidates`` call, which here is a plan executed on Dask
(:mod:`gridsearch.estimators.evaluate`): the prefixes of a round are shared and the memo
serves raw stages across rounds. With the same folds, subsampling and settings,
``cv_results_`` (``iter`` and ``n_resources`` included) is scikit-learn's.

The classes are scikit-learn's (still experimental there) with the engine's ``fit`` below
them in the method order. Two things scikit-learn's do not (its #26109 and #24634):

- several scorers (``scoring`` a list or dict, as for ``GridSearchCV``): every round
  records all of them and ranks on ``refit``'s (the first when ``refit=False``);
- every round goes to one run log (``log=``), its records with their ``round`` and
  ``fit_rows``, so ``gridsearch top LOG --round K`` ranks any round, not only the last.

And one thing scikit-learn's does not do (its #15125): with ``grow_ensembles=True`` and the
final estimator's ``n_estimators`` as the resource, a forest or gradient boosting with an int
``random_state`` grows each survivor's ensemble of the previous round (``warm_start``) instead
of refitting it; the scores stay the refits', bit for bit (:mod:`gridsearch.execute.growth`).
A grown fit's ``fit_time`` is the time of the new trees only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

import numpy as np
from distributed import Client
from sklearn.experimental import enable_halving_search_cv  # noqa: F401 - scikit-learn's halving classes are experimental
from sklearn.model_selection import GridSearchCV as _SklearnGrid
from sklearn.model_selection import HalvingGridSearchCV as _SklearnHalvingGrid
from sklearn.model_selection import HalvingRandomSearchCV as _SklearnHalvingRandom
from sklearn.utils.validation import _num_samples

from gridsearch.estimators.search_cv import ENGINE_CONSTRAINTS, EngineSearchCV
from gridsearch.execute.growth import Refits, growth_for

Grid = Mapping[str, Any] | list[Mapping[str, Any]]
# scoring and refit as GridSearchCV takes them: several scorers, refit naming the one that ranks
_SCORING_CONSTRAINTS = {name: _SklearnGrid._parameter_constraints[name] for name in ("scoring", "refit")}
_GROWTH_CONSTRAINTS = {"grow_ensembles": ["boolean"]}


class _RankedRounds(EngineSearchCV):
    """The halving classes' ``fit`` and choice of the best, for one scorer or several, and their ensembles' growth."""

    grow_ensembles: bool

    def fit(self, X: Any, y: Any = None, **params: Any) -> Self:
        """Run every round on the engine, then refit the best of the last round (see scikit-learn's halving ``fit``)."""
        self._n_samples_orig = _num_samples(X)
        super().fit(X, y, **params)
        if hasattr(self, "best_index_"):
            self.best_score_ = self.cv_results_[_ranked(self.refit, self.cv_results_)][self.best_index_]
        return self

    @staticmethod
    def _select_best_index(refit: Any, refit_metric: Any, results: Mapping[str, Any]) -> int:
        """The best candidate of the last round by the ranking scorer (all NaN: the first), as scikit-learn's halving."""
        last = np.flatnonzero(results["iter"] == np.max(results["iter"]))
        scores = np.asarray(results[_ranked(refit_metric, results)])[last]
        return int(last[0 if np.isnan(scores).all() else np.nanargmax(scores)])

    def _growth(self, client: Client) -> Refits:
        """With ``grow_ensembles``, each round's ensembles grown in the next (when the resource is their ``n_estimators``)."""
        return growth_for(self.estimator, self.resource, client) if self.grow_ensembles else Refits()


def _ranked(metric: Any, results: Mapping[str, Any]) -> str:
    """The ``cv_results_`` key that ranks: one scorer's ``mean_test_score``, else ``metric``'s, else the first scorer's."""
    if "mean_test_score" in results:
        return "mean_test_score"
    if isinstance(metric, str) and f"mean_test_{metric}" in results:
        return f"mean_test_{metric}"
    return next(key for key in results if key.startswith("mean_test_"))


class HalvingGridSearchCV(_RankedRounds, _SklearnHalvingGrid):
    """Successive halving over a grid, as :class:`sklearn.model_selection.HalvingGridSearchCV`, on Dask.

    Parameters are scikit-learn's, plus ``client``, ``cache`` and ``log`` (see
    :class:`~gridsearch.estimators.search_cv.EngineSearchCV`); ``scoring`` may name several
    scorers, and ``refit`` the one that ranks. ``grow_ensembles``: with ``resource`` the final
    estimator's ``n_estimators``, grow each round's forests and boosting in the next instead of
    refitting them (same scores; off by default; see the module's text).
    """

    _parameter_constraints: ClassVar[dict[str, Any]] = {**_SklearnHalvingGrid._parameter_constraints, **_SCORING_CONSTRAINTS,
                                                        **_GROWTH_CONSTRAINTS, **ENGINE_CONSTRAINTS}

    def __init__(self, estimator: Any, param_grid: Grid, *, factor: float = 3, resource: str = "n_samples",
                 max_resources: int | str = "auto", min_resources: int | str = "exhaust", aggressive_elimination: bool = False,
                 cv: Any = 5, scoring: Any = None, refit: bool | Callable[..., int] = True, error_score: float | str = np.nan,
                 return_train_score: bool = True, random_state: Any = None, n_jobs: int | None = None, verbose: int = 0,
                 client: Client | str | None = None, cache: str | os.PathLike[str] | None = None,
                 log: str | os.PathLike[str] | None = None, grow_ensembles: bool = False) -> None:
        super().__init__(estimator, param_grid, factor=factor, resource=resource, max_resources=max_resources,
                         min_resources=min_resources, aggressive_elimination=aggressive_elimination, cv=cv, scoring=scoring,
                         refit=refit, error_score=error_score, return_train_score=return_train_score, random_state=random_state,
                         n_jobs=n_jobs, verbose=verbose)
        self.client, self.cache, self.log, self.grow_ensembles = client, cache, log, grow_ensembles


class HalvingRandomSearchCV(_RankedRounds, _SklearnHalvingRandom):
    """Successive halving over random candidates, as :class:`sklearn.model_selection.HalvingRandomSearchCV`, on Dask.

    Parameters are those of :class:`HalvingGridSearchCV`, with ``param_distributions`` and ``n_candidates``.
    """

    _parameter_constraints: ClassVar[dict[str, Any]] = {**_SklearnHalvingRandom._parameter_constraints, **_SCORING_CONSTRAINTS,
                                                        **_GROWTH_CONSTRAINTS, **ENGINE_CONSTRAINTS}

    def __init__(self, estimator: Any, param_distributions: Grid, *, n_candidates: int | str = "exhaust", factor: float = 3,
                 resource: str = "n_samples", max_resources: int | str = "auto", min_resources: int | str = "smallest",
                 aggressive_elimination: bool = False, cv: Any = 5, scoring: Any = None, refit: bool | Callable[..., int] = True,
                 error_score: float | str = np.nan, return_train_score: bool = True, random_state: Any = None,
                 n_jobs: int | None = None, verbose: int = 0, client: Client | str | None = None,
                 cache: str | os.PathLike[str] | None = None, log: str | os.PathLike[str] | None = None,
                 grow_ensembles: bool = False) -> None:
        super().__init__(estimator, param_distributions, n_candidates=n_candidates, factor=factor, resource=resource,
                         max_resources=max_resources, min_resources=min_resources, aggressive_elimination=aggressive_elimination,
                         cv=cv, scoring=scoring, refit=refit, error_score=error_score, return_train_score=return_train_score,
                         random_state=random_state, n_jobs=n_jobs, verbose=verbose)
        self.client, self.cache, self.log, self.grow_ensembles = client, cache, log, grow_ensembles
