"""How each fit is scored on a worker: named scorers on the test rows, and on the train rows when asked.

A scorer is anything scikit-learn calls one: ``scorer(estimator, X, y, **params)``, from
:func:`sklearn.metrics.get_scorer` (the YAML's names) or given by the user (the drop-in
classes). A scorer that returns a dict (a callable multi-metric scorer, or scikit-learn's
``_MultimetricScorer``, which routes metadata to each of its scorers) adds each of its keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sklearn.metrics import get_scorer

Scorer = Callable[..., Any]


@dataclass(frozen=True)
class Scoring:
    """The scorers of a search, whether train rows are scored too, and what a failure does.

    ``raise_errors`` is scikit-learn's ``error_score="raise"``: a fit or a scorer that
    raises stops the search with its own exception instead of being recorded. With
    ``all_failing_fails_fit`` a fit none of whose scorers can score it is a failed fit;
    without, it is scored ``error_score`` throughout, as scikit-learn scores it.
    """

    scorers: Mapping[str, Scorer]
    train: bool = False
    raise_errors: bool = False
    all_failing_fails_fit: bool = True

    @classmethod
    def named(cls, names: Sequence[str]) -> Scoring:
        """Scikit-learn's scorers of these names (``r2``, ``neg_root_mean_squared_error``, ...)."""
        return cls({name: get_scorer(name) for name in names})

    def score(self, model: Any, X: Any, y: Any, params: Mapping[str, Any], error_score: float) -> tuple[dict[str, float], list[str]]:
        """Every scorer's score of ``model`` on ``X, y``, and a note for each scorer that raised.

        A scorer that raises scores ``error_score``, without erasing the others, as in
        scikit-learn; when all of them raise, the first error is raised (the fit failed)
        if ``all_failing_fails_fit``.
        """
        scores: dict[str, float] = {}
        errors: list[str] = []
        first = None
        for name, scorer in self.scorers.items():
            try:
                value = scorer(model, X, **params) if y is None else scorer(model, X, y, **params)
            except Exception as exc:
                if self.raise_errors:
                    raise
                scores[name] = error_score
                errors.append(f"ScorerError: {name} failed, scored error_score: {f'{type(exc).__name__}: {exc}'.splitlines()[0]}")
                first = first or exc
                continue
            if not isinstance(value, Mapping):
                scores[name] = float(value)
                continue
            for key, score in value.items():  # a str is a scorer's failure, as scikit-learn's multi-metric scorer reports it
                scores[str(key)] = error_score if isinstance(score, str) else float(score)
                if isinstance(score, str):
                    errors.append(f"ScorerError: {key} failed, scored error_score: {score.strip().splitlines()[-1]}")
        if first is not None and len(errors) == len(self.scorers) and self.all_failing_fails_fit:
            raise first
        return scores, errors
