"""The pilot: one fit of each distinct pipeline structure, in the client, before any work is sent.

A structure is a choice of whole steps (``model: Ridge``, ``features__geohash: drop``). Its
first candidate is fitted and scored on a small sample of the first fold; a failure there is
confirmed on the whole fold (a sample can miss a class) before it counts. A search none of
whose structures can fit, or a scorer that cannot score any of them, is refused as a config
error; a structure that fails while others work is said in one line, and its fits are then
recorded as errors, as any candidate's failure is.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import get_scorer
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing

from gridsearch.search.prepare import PreparedSearch
from gridsearch.search.space import Candidate, resolve, step_names

SAMPLE_ROWS = 500


@dataclass(frozen=True)
class PilotFailure:
    """A structure whose first candidate failed: where (``step`` or ``scorer``) and why."""

    structure: str
    step: str | None
    scorer: str | None
    error: str

    def __str__(self) -> str:
        where = f"scorer {self.scorer}" if self.scorer else f"step {self.step!r}" if self.step else "the fit"
        return f"{self.structure}: {where} failed: {self.error}"


def pilot(search: PreparedSearch) -> list[PilotFailure]:
    """Fit and score the first candidate of each structure; the failures, confirmed on the whole fold.

    Raises
    ------
    ConfigError
        When every structure fails to fit (under ``search.params``, naming the step), or a
        scorer fails on every structure that fits (under ``scoring``).
    """
    steps = step_names(search.pipeline)
    firsts = {_structure(candidate, steps): candidate for candidate in search.space.firsts(steps.__contains__, _label)}
    sample = _sample(search, SAMPLE_ROWS)
    failures = []
    for structure, candidate in firsts.items():
        failure = _try(search, candidate, structure, steps, sample)
        if failure is not None:
            failure = _try(search, candidate, structure, steps, search.dataset.fold(0))
        if failure is not None:
            failures.append(failure)
    fitting = [f for f in failures if f.scorer is None]
    if fitting and len(fitting) == len(firsts):
        raise search.config.error("search.params", f"no candidate can be fitted; {_listed(fitting)}")
    for scorer in search.config.scoring:
        scoring = [f for f in failures if f.scorer == scorer]
        if scoring and len(scoring) == len(firsts) - len(fitting):
            raise search.config.error("scoring", f"{scorer} cannot score this search's models; {_listed(scoring)}")
    return failures


def pilot_summary(failures: Sequence[PilotFailure]) -> list[str]:
    """One line for what the pilot found (nothing when every structure worked)."""
    if not failures:
        return []
    return [f"pilot fit: {_listed(failures)}; their candidates' fits will be recorded as errors"]


def _listed(failures: Sequence[PilotFailure]) -> str:
    return str(failures[0]) + (f" (and {len(failures) - 1} other structures)" if len(failures) > 1 else "")


def _structure(candidate: Candidate, steps: frozenset[str]) -> str:
    """``model=Ridge features__geohash=drop``: the whole steps a candidate chooses, or ``as configured``."""
    return _label({name: value for name, value in candidate.params.items() if name in steps})


def _label(swapped: Mapping[str, Any]) -> str:
    chosen = [f"{name}={str(value).rpartition('.')[2]}" for name, value in swapped.items()]
    return " ".join(chosen) or "the pipeline as configured"


def _sample(search: PreparedSearch, rows: int) -> tuple[Any, Any, Any, Any]:
    """Up to ``rows`` random rows of the first fold's train and test sides."""
    X_train, y_train, X_test, y_test = search.dataset.fold(0)
    rng = np.random.default_rng(0)
    train = np.sort(rng.choice(len(y_train), min(rows, len(y_train)), replace=False))
    test = np.sort(rng.choice(len(y_test), min(rows, len(y_test)), replace=False))
    return _safe_indexing(X_train, train), y_train[train], _safe_indexing(X_test, test), y_test[test]


def _try(search: PreparedSearch, candidate: Candidate, structure: str, steps: frozenset[str], data: tuple[Any, Any, Any, Any]) -> PilotFailure | None:
    X_train, y_train, X_test, y_test = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = clone(search.pipeline).set_params(**resolve(candidate.params, steps))  # values checked by space.expand
        try:
            model.fit(X_train, y_train)
        except Exception as exc:  # noqa: BLE001 - the user's pipeline: any failure is reported
            return PilotFailure(structure, _failing_step(model, X_train, y_train), None, _one_line(exc))
        for name in search.config.scoring:
            try:
                get_scorer(name)(model, X_test, y_test)
            except Exception as exc:  # noqa: BLE001 - a scorer that does not apply to this model
                return PilotFailure(structure, None, name, _one_line(exc))
    return None


def _failing_step(model: BaseEstimator, X: Any, y: Any) -> str | None:
    """The first step of a pipeline whose fit raises (its prefixes fitted in turn), or None."""
    if not isinstance(model, Pipeline):
        return None
    for end in range(1, len(model.steps)):
        try:
            clone(model[:end]).fit_transform(X, y)
        except Exception:  # noqa: BLE001 - found it
            return model.steps[end - 1][0]
    return model.steps[-1][0]


def _one_line(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:297] + "..."
