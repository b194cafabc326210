"""``HalvingGridSearchCV`` and ``HalvingRandomSearchCV``: scikit-learn's successive halving, each round on the engine.

Scikit-learn decides the rounds (which candidates, on how many rows or trees, who goes on);
each round is one ``evaluate_candidates`` call, which here is a plan executed on Dask
(:mod:`gridsearch.estimators.evaluate`): the prefixes of a round are shared and the memo
serves raw stages across rounds. With the same folds, subsampling and settings,
``cv_results_`` (``iter`` and ``n_resources`` included) is scikit-learn's.

The classes are scikit-learn's (still experimental there) with the engine's ``fit`` below
them in the method order: scikit-learn's halving ``fit`` runs first and calls it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
from distributed import Client
from sklearn.experimental import enable_halving_search_cv  # noqa: F401 - scikit-learn's halving classes are experimental
from sklearn.model_selection import HalvingGridSearchCV as _SklearnHalvingGrid
from sklearn.model_selection import HalvingRandomSearchCV as _SklearnHalvingRandom

from gridsearch.estimators.search_cv import ENGINE_CONSTRAINTS, EngineSearchCV

Grid = Mapping[str, Any] | list[Mapping[str, Any]]


class HalvingGridSearchCV(_SklearnHalvingGrid, EngineSearchCV):
    """Successive halving over a grid, as :class:`sklearn.model_selection.HalvingGridSearchCV`, on Dask.

    Parameters are scikit-learn's, plus ``client``, ``cache`` and ``log`` (see
    :class:`~gridsearch.estimators.search_cv.EngineSearchCV`).
    """

    _parameter_constraints: ClassVar[dict[str, Any]] = {**_SklearnHalvingGrid._parameter_constraints, **ENGINE_CONSTRAINTS}

    def __init__(self, estimator: Any, param_grid: Grid, *, factor: float = 3, resource: str = "n_samples",
                 max_resources: int | str = "auto", min_resources: int | str = "exhaust", aggressive_elimination: bool = False,
                 cv: Any = 5, scoring: Any = None, refit: bool | Callable[..., int] = True, error_score: float | str = np.nan,
                 return_train_score: bool = True, random_state: Any = None, n_jobs: int | None = None, verbose: int = 0,
                 client: Client | str | None = None, cache: str | os.PathLike[str] | None = None,
                 log: str | os.PathLike[str] | None = None) -> None:
        super().__init__(estimator, param_grid, factor=factor, resource=resource, max_resources=max_resources,
                         min_resources=min_resources, aggressive_elimination=aggressive_elimination, cv=cv, scoring=scoring,
                         refit=refit, error_score=error_score, return_train_score=return_train_score, random_state=random_state,
                         n_jobs=n_jobs, verbose=verbose)
        self.client, self.cache, self.log = client, cache, log


class HalvingRandomSearchCV(_SklearnHalvingRandom, EngineSearchCV):
    """Successive halving over random candidates, as :class:`sklearn.model_selection.HalvingRandomSearchCV`, on Dask."""

    _parameter_constraints: ClassVar[dict[str, Any]] = {**_SklearnHalvingRandom._parameter_constraints, **ENGINE_CONSTRAINTS}

    def __init__(self, estimator: Any, param_distributions: Grid, *, n_candidates: int | str = "exhaust", factor: float = 3,
                 resource: str = "n_samples", max_resources: int | str = "auto", min_resources: int | str = "smallest",
                 aggressive_elimination: bool = False, cv: Any = 5, scoring: Any = None, refit: bool | Callable[..., int] = True,
                 error_score: float | str = np.nan, return_train_score: bool = True, random_state: Any = None,
                 n_jobs: int | None = None, verbose: int = 0, client: Client | str | None = None,
                 cache: str | os.PathLike[str] | None = None, log: str | os.PathLike[str] | None = None) -> None:
        super().__init__(estimator, param_distributions, n_candidates=n_candidates, factor=factor, resource=resource,
                         max_resources=max_resources, min_resources=min_resources, aggressive_elimination=aggressive_elimination,
                         cv=cv, scoring=scoring, refit=refit, error_score=error_score, return_train_score=return_train_score,
                         random_state=random_state, n_jobs=n_jobs, verbose=verbose)
        self.client, self.cache, self.log = client, cache, log
