"""``GridSearchCV`` and ``RandomizedSearchCV``: scikit-learn's classes, with their fits run on the engine.

The contract is scikit-learn's: the same arguments, ``cv_results_``, ``best_*`` and
delegated methods (``predict``, ``score``, ...), because the classes are
:class:`~sklearn.model_selection._search.BaseSearchCV` subclasses. What differs is
``fit``: each batch of candidates is planned and executed on Dask
(:mod:`gridsearch.estimators.evaluate`), sharing each distinct preprocessing and fitting
forests once along ``n_estimators``, through the memo (``cache=``) and into a run log
(``log=``) when asked. The refit of the best candidate runs here, in this process.

``n_jobs`` and ``pre_dispatch`` are accepted and have no effect: the cluster's workers
(one per core by default) decide the parallelism.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import sklearn
from distributed import Client
from sklearn.base import clone, is_classifier
from sklearn.model_selection import GridSearchCV as _SklearnGrid
from sklearn.model_selection import ParameterGrid, ParameterSampler, check_cv
from sklearn.model_selection import RandomizedSearchCV as _SklearnRandom
from sklearn.model_selection._search import BaseSearchCV
from sklearn.model_selection._validation import _insert_error_scores, _warn_or_raise_about_fit_failures
from sklearn.utils import get_tags, indexable
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.fixes import parse_version
from sklearn.utils.validation import _check_method_params

from gridsearch.estimators.evaluate import EngineSearch, candidate_ids
from gridsearch.estimators.session import search_client
from gridsearch.execute.growth import Refits

_RETURN = "return" if parse_version(sklearn.__version__) >= parse_version("1.9") else "returned"  # its wording, which 1.9 changed
ENGINE_CONSTRAINTS: dict[str, list[Any]] = {
    "client": [None, str, HasMethods(["submit", "gather"])],
    "cache": [None, str, os.PathLike],
    "log": [None, str, os.PathLike],
}


class EngineSearchCV(BaseSearchCV):
    """What both search classes share: ``fit`` on the engine, and the arguments it adds.

    ``client``: a ``distributed.Client``, a scheduler address, or None (the default client,
    else one local cluster per process, see :mod:`gridsearch.estimators.session`).
    ``cache``: a directory where raw preprocessing stages are memoised across fits (off by
    default). ``log``: a directory holding one run log per search; fitting the same search
    on the same data again resumes it (off by default). After ``fit``, ``_candidate_ids`` are
    the run log's ids of the ``cv_results_`` rows (private: scikit-learn's tests require a
    search class to have exactly ``BaseSearchCV``'s fitted attributes).
    """

    client: Client | str | None
    cache: str | os.PathLike[str] | None
    log: str | os.PathLike[str] | None

    def fit(self, X: Any, y: Any = None, **params: Any) -> Self:
        """Run fit with all sets of parameters, on the engine; then refit the best on all of ``X``.

        Parameters are scikit-learn's: ``params`` go to the estimator's ``fit`` (cut to each
        fold's rows), ``groups`` to the splitter, ``sample_weight`` to scorers that take it.
        """
        self._validate_params()
        scorer, refit_metric = self._get_scorers()
        X, y = indexable(X, y)
        params = _check_method_params(X, params=params)
        routed = self._get_routed_params_for_fit(params)
        self._checked_cv_orig = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        self.n_splits_ = self._checked_cv_orig.get_n_splits(X, y, **routed.splitter.split)
        if hasattr(self, "_check_input_parameters"):  # scikit-learn >= 1.9 checks here what halving needs (1.8: in halving's fit)
            self._check_input_parameters(X=X, y=y, split_params=routed.splitter.split)
        _check_pairwise(self.estimator, X)
        base, client = clone(self.estimator), search_client(self.client)
        engine = EngineSearch(base, X, y, routed.estimator.fit, routed.scorer.score, scorer, self.error_score, self.return_train_score,
                              client, None if self.cache is None else Path(self.cache),
                              None if self.log is None else Path(self.log), self.verbose, self._growth(client))
        evaluation = _Evaluation(self, engine, routed.splitter.split, refit_metric)
        try:
            if "callback_ctx" in inspect.signature(self._run_search).parameters:  # scikit-learn >= 1.9's halving needs one
                self._run_search(evaluation, callback_ctx=self._init_callback_context(max_subtasks=None))
            else:
                self._run_search(evaluation)
        finally:
            engine.growth.release()
        first = evaluation.out[0]["test_scores"]
        self.multimetric_ = isinstance(first, dict)
        if callable(self.scoring) and self.multimetric_:
            self._check_refit_for_multimetric(first)
            refit_metric = self.refit
        results = evaluation.results
        if self.refit or not self.multimetric_:
            self.best_index_ = self._select_best_index(self.refit, refit_metric, results)
            if not callable(self.refit):
                self.best_score_ = results[f"mean_test_{refit_metric}"][self.best_index_]
            self.best_params_ = results["params"][self.best_index_]
        if self.refit:
            self._refit(base, X, y, routed.estimator.fit)
        self.scorer_ = scorer._scorers if hasattr(scorer, "_scorers") else scorer
        self.cv_results_ = results
        self._candidate_ids = evaluation.ids
        return self

    def _growth(self, client: Client) -> Refits:
        """What keeps one call's fitted models for the next to grow: nothing (the halving classes may grow ensembles)."""
        return Refits()

    def __sklearn_clone__(self) -> Self:
        """A clone whose ``client`` is the same client (a connection is shared, never copied)."""
        params = self.get_params(deep=False)
        client = params.pop("client")
        copy = type(self)(**{name: clone(value, safe=False) for name, value in params.items()}, client=client)
        return copy

    def __getstate__(self) -> dict[str, Any]:
        """A pickled search keeps a scheduler address, not a live ``Client`` (which cannot be pickled)."""
        state = super().__getstate__()
        if isinstance(state.get("client"), Client):
            state["client"] = None if state["client"].scheduler is None else state["client"].scheduler.address
        return state

    def _refit(self, base: Any, X: Any, y: Any, fit_params: Mapping[str, Any]) -> None:
        """The best candidate fitted on all rows, here (parameters that are estimators cloned, as scikit-learn does)."""
        self.best_estimator_ = clone(base).set_params(**clone(self.best_params_, safe=False))
        start = time.time()
        if y is None:
            self.best_estimator_.fit(X, **fit_params)
        else:
            self.best_estimator_.fit(X, y, **fit_params)
        self.refit_time_ = time.time() - start
        if hasattr(self.best_estimator_, "feature_names_in_"):
            self.feature_names_in_ = self.best_estimator_.feature_names_in_


class _Evaluation:
    """The ``evaluate_candidates`` callback ``_run_search`` calls, once or (halving) once per round.

    Every call of one ``fit`` logs into one run log, named after the first call's work and the
    search's settings (or ``search._log_name``, which ``gridsearch run`` sets to its search id). With several scorers the results it returns also hold
    ``mean_test_score``, the ranking scorer's (``refit``'s, else the first), which scikit-learn's
    halving reads to choose who goes on; ``cv_results_`` does not.
    """

    def __init__(self, search: EngineSearchCV, engine: EngineSearch, split_params: Mapping[str, Any], refit_metric: Any) -> None:
        self._search, self._engine, self._split_params = search, engine, split_params
        self.ranking = refit_metric if isinstance(refit_metric, str) and refit_metric in engine.names else engine.names[0]
        self.log_id: str | None = None
        self.ids: list[str] = []
        self.candidates: list[dict[str, Any]] = []
        self.out: list[dict[str, Any]] = []
        self.more: dict[str, list[Any]] = {}
        self.results: dict[str, Any] = {}

    def __call__(self, candidate_params: Iterable[Mapping[str, Any]], cv: Any = None, more_results: Mapping[str, list[Any]] | None = None,
                 **_: Any) -> dict[str, Any]:
        search, engine = self._search, self._engine
        cv = cv or search._checked_cv_orig
        candidates = [dict(params) for params in candidate_params]
        folds = tuple(cv.split(engine.X, engine.y, **self._split_params))
        if len(folds) != search.n_splits_:
            raise ValueError(f"cv.split and cv.get_n_splits {_RETURN} inconsistent results. Expected {search.n_splits_} splits, got {len(folds)}")
        if search.verbose > 0:
            print(f"Fitting {len(folds)} folds for each of {len(candidates)} candidates, totalling {len(folds) * len(candidates)} fits")
        search_id = engine.search_id(candidates, folds)
        if self.log_id is None:
            self.log_id = getattr(search, "_log_name", None) or engine.log_id(search_id, _settings(search))
        rounds = (more_results or {}).get("iter")
        out = engine.evaluate(candidates, folds, search_id, self.log_id, int(rounds[0]) if rounds else None) if candidates and folds else []
        if not out:
            raise ValueError("No fits were performed. Was the CV iterator empty? Were there no candidates?")
        _warn_or_raise_about_fit_failures(out, search.error_score)
        if callable(search.scoring):
            _insert_error_scores(out, search.error_score)
        self.candidates.extend(candidates)
        self.ids.extend(candidate_ids(search_id, len(candidates)))
        self.out.extend(out)
        for key, values in (more_results or {}).items():
            self.more.setdefault(key, []).extend(values)
        self.results = search._format_results(self.candidates, search.n_splits_, self.out, self.more)
        ranked = f"mean_test_{self.ranking}"
        return self.results if ranked not in self.results else {**self.results, "mean_test_score": self.results[ranked]}


# arguments that change no result (grow_ensembles: no score, only fit times), and the estimator, which the log's name hashes
# as cloned (a clone hashes apart from its original)
_NOT_DEFINING = frozenset({"client", "cache", "log", "verbose", "n_jobs", "pre_dispatch", "estimator", "grow_ensembles"})


def _settings(search: EngineSearchCV) -> dict[str, Any]:
    """The search's own arguments that define its results, besides its estimator (its run log's name hashes them)."""
    return {name: value for name, value in search.get_params(deep=False).items() if name not in _NOT_DEFINING}


def _check_pairwise(estimator: Any, X: Any) -> None:
    """A precomputed kernel must be a square array, as scikit-learn's split requires."""
    if not get_tags(estimator).input_tags.pairwise:
        return
    if not hasattr(X, "shape"):
        raise ValueError("Precomputed kernels or affinity matrices have to be passed as arrays or sparse matrices.")
    if X.shape[0] != X.shape[1]:
        raise ValueError("X should be a square kernel matrix")


class GridSearchCV(EngineSearchCV):
    """Exhaustive search over a parameter grid, as :class:`sklearn.model_selection.GridSearchCV`, on Dask.

    >>> from gridsearch import GridSearchCV  # doctest: +SKIP
    >>> search = GridSearchCV(pipe, {"model__alpha": [0.1, 1, 10]}, cv=5).fit(X, y)  # doctest: +SKIP

    Parameters are scikit-learn's, plus ``client``, ``cache`` and ``log`` (see
    :class:`EngineSearchCV`); ``return_train_score`` defaults to False as there.
    """

    _parameter_constraints: ClassVar[dict[str, Any]] = {**_SklearnGrid._parameter_constraints, **ENGINE_CONSTRAINTS}

    def __init__(self, estimator: Any, param_grid: Mapping[str, Any] | list[Mapping[str, Any]], *, scoring: Any = None,
                 n_jobs: int | None = None, refit: bool | str | Callable[..., int] = True, cv: Any = None, verbose: int = 0,
                 pre_dispatch: int | str = "2*n_jobs", error_score: float | str = np.nan, return_train_score: bool = False,
                 client: Client | str | None = None, cache: str | os.PathLike[str] | None = None,
                 log: str | os.PathLike[str] | None = None) -> None:
        super().__init__(estimator=estimator, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv, verbose=verbose,
                         pre_dispatch=pre_dispatch, error_score=error_score, return_train_score=return_train_score)
        self.param_grid = param_grid
        self.client, self.cache, self.log = client, cache, log

    def _run_search(self, evaluate_candidates: Callable[..., Any], **_: Any) -> None:
        evaluate_candidates(ParameterGrid(self.param_grid))


class RandomizedSearchCV(EngineSearchCV):
    """Random search over parameter settings, as :class:`sklearn.model_selection.RandomizedSearchCV`, on Dask.

    Lists and scipy distributions are sampled with ``random_state`` exactly as scikit-learn
    samples them, so the same seed gives the same candidates.
    """

    _parameter_constraints: ClassVar[dict[str, Any]] = {**_SklearnRandom._parameter_constraints, **ENGINE_CONSTRAINTS}

    def __init__(self, estimator: Any, param_distributions: Mapping[str, Any] | list[Mapping[str, Any]], *, n_iter: int = 10,
                 scoring: Any = None, n_jobs: int | None = None, refit: bool | str | Callable[..., int] = True, cv: Any = None,
                 verbose: int = 0, pre_dispatch: int | str = "2*n_jobs", random_state: Any = None, error_score: float | str = np.nan,
                 return_train_score: bool = False, client: Client | str | None = None, cache: str | os.PathLike[str] | None = None,
                 log: str | os.PathLike[str] | None = None) -> None:
        self.param_distributions = param_distributions
        self.n_iter = n_iter
        self.random_state = random_state
        super().__init__(estimator=estimator, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv, verbose=verbose,
                         pre_dispatch=pre_dispatch, error_score=error_score, return_train_score=return_train_score)
        self.client, self.cache, self.log = client, cache, log

    def _run_search(self, evaluate_candidates: Callable[..., Any], **_: Any) -> None:
        evaluate_candidates(ParameterSampler(self.param_distributions, self.n_iter, random_state=self.random_state))

