"""A search config (the YAML of ``gridsearch run``) as a :class:`~gridsearch.GridSearchCV` and its rows.

The config is validated, loaded and expanded as ``gridsearch run`` does it; its candidates
become the class's grid (one point each, in the run's order) with whole steps given as
import paths built into estimators, and its folds the class's ``cv``. So ``search.fit(X, y)``
gives the ``cv_results_`` scores that :func:`gridsearch.run` gives for the same file.
:func:`halving_from_config` is what ``gridsearch run`` fits for ``search.strategy: halving``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from distributed import Client
from sklearn.base import BaseEstimator, clone

from gridsearch.estimators.halving import HalvingGridSearchCV
from gridsearch.estimators.search_cv import GridSearchCV
from gridsearch.execute.budget import Budget, RoundBudget
from gridsearch.search.config import SearchConfig
from gridsearch.search.prepare import PreparedSearch, prepare_search
from gridsearch.search.space import resolve, step_names


def from_config(config: str | os.PathLike[str] | SearchConfig, **overrides: Any) -> tuple[GridSearchCV, Any, Any]:
    """``(search, X, y)``: the config's search as an unfitted :class:`GridSearchCV`, and the rows to fit it on.

    ``overrides`` are :func:`gridsearch.run`'s (e.g. ``**{"data.rows": 5000}``). The class
    refits on the first scorer; the config's hold-out rows are left out of ``X``.

    Raises
    ------
    ConfigError
        On the config's first problem, as ``gridsearch run --dry-run`` says it.
    """
    search = prepare_search(config, **overrides)
    cfg, steps = search.config, step_names(search.pipeline)
    grid = [{name: [value] for name, value in resolve(candidate.params, steps).items()} for candidate in search.candidates]
    estimator = GridSearchCV(search.pipeline, grid, scoring=list(cfg.scoring), refit=cfg.scoring[0], cv=list(search.dataset.folds),
                             error_score=cfg.error_score, client=cfg.cluster.address, cache=cfg.cache.dir)
    return estimator, search.dataset.X, search.dataset.y


def halving_from_config(search: PreparedSearch, client: Client, verbose: int = 0, rounds: RoundBudget | None = None) -> HalvingGridSearchCV:
    """A prepared halving search as :class:`HalvingGridSearchCV`, logging every round into the search's own log.

    Its candidates stay as the config gives them (whole steps as import paths, which the
    workers build), so the log's params are the config's; it ranks on the first scorer, scores
    no train rows (as ``gridsearch run`` does not), and does not refit: ``promote`` refits the winners.
    With ``rounds``, each round starts only if ``rounds`` says it ends in time (by default every
    round does); a refused round ends the fit with the rounds done.
    """
    cfg, halving = search.config, search.config.space.halving
    if halving is None:
        raise ValueError("halving_from_config needs a search with search.strategy: halving")
    grid = [{name: [value] for name, value in candidate.params.items()} for candidate in search.candidates]
    estimator = _BudgetedHalving(_checked_base(search), grid, **halving.as_dict(), cv=list(search.dataset.folds), scoring=list(cfg.scoring),
                                 refit=False, error_score=cfg.error_score, return_train_score=False, random_state=cfg.space.seed,
                                 verbose=verbose, client=client, cache=cfg.cache.dir, log=cfg.log_dir,
                                 grow_ensembles=halving.grow_ensembles)
    estimator._log_name = search.search_id
    estimator._rounds = rounds
    return estimator


def _checked_base(search: PreparedSearch) -> BaseEstimator:
    """The pipeline scikit-learn's halving checks its resource on (its ``estimator``).

    Scikit-learn requires the resource (``model__n_estimators``) to be a parameter of that
    pipeline, before candidates swap their steps in; a config may keep a default model there
    and swap a forest in for every candidate (``model: [sklearn.ensemble.RandomForestRegressor]``).
    Then the base gets the first candidate's step: every candidate sets its own, so no score changes.
    """
    pipeline, resource = search.pipeline, search.config.space.halving.resource
    if resource == "n_samples" or resource in pipeline.get_params():
        return pipeline
    steps, first = step_names(pipeline), search.candidates[0].params
    owners = [name for name in first if name in steps and resource.startswith(f"{name}__")]
    return clone(pipeline).set_params(**resolve({owners[0]: first[owners[0]]}, steps)) if owners else pipeline


class _BudgetedHalving(HalvingGridSearchCV):
    """:class:`HalvingGridSearchCV` whose rounds each ask ``_rounds`` (a :class:`RoundBudget`; None: no budget) before they start."""

    _rounds: RoundBudget | None = None

    @functools.wraps(HalvingGridSearchCV._run_search)  # scikit-learn's signature: fit passes callback_ctx if it takes one
    def _run_search(self, evaluate_candidates: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super()._run_search((self._rounds or RoundBudget(Budget(None))).gate(evaluate_candidates), *args, **kwargs)
