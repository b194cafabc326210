"""Raw stages: the parts of a pipeline that read the raw data, computed once per fold and parameters.

The raw stages are the branches of a first-step ``ColumnTransformer`` (or the first step
itself). Each is a task of its own keyed by its parameters, so candidates that differ in
one branch share the others, and it is memoised across searches. The prefix is then
assembled from the precomputed outputs by scikit-learn itself, so its output equals the
uncached pipeline's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from kampai.cache import StageMemo, StageOutput, stage_key
from kampai.ids import content_id

_INERT = ("drop", "passthrough")


def raw_stages(pipeline: BaseEstimator) -> tuple[str, ...]:
    """Paths (``step__branch``) of the stages that read raw data, or ``()`` without a prefix.

    ``"drop"`` and ``"passthrough"`` branches are not stages, nor is a ``"passthrough"`` (or
    None) first step: there is nothing to compute.
    """
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) < 2:
        return ()
    name, first = pipeline.steps[0]
    if isinstance(first, ColumnTransformer):
        return tuple(f"{name}__{branch}" for branch, estimator, _ in first.transformers if not is_inert(estimator))
    return () if is_inert(first) else (name,)


def stage_params(params: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The parameters addressed to the stage at ``path`` (its swap included)."""
    return {name: value for name, value in params.items() if name == path or name.startswith(f"{path}__")}


def splits_into_stages(pipeline: BaseEstimator, param_names: Sequence[str]) -> bool:
    """False when a parameter reshapes the first step itself (its branch list, or a swap)."""
    stages = raw_stages(pipeline)
    if not stages:
        return False
    first = pipeline.steps[0][0]
    return not any(name in (first, f"{first}__transformers") for name in param_names)


def stage_estimator(prefix: Pipeline, path: str) -> tuple[BaseEstimator | str, list[Any] | None]:
    """The configured estimator at ``path`` of ``prefix`` and its columns (None: all)."""
    name, _, branch = path.partition("__")
    first = prefix.named_steps[name]
    if not branch:
        return first, None
    for branch_name, estimator, columns in first.transformers:
        if branch_name == branch:
            return estimator, columns
    raise KeyError(path)


def fit_stage(X_train: Any, y_train: Any, X_test: Any, stage: BaseEstimator, rows_id: str, path: str, memo: StageMemo) -> tuple[StageOutput, bool]:
    """Fit one raw stage on a fold, through the memo; returns (output, loaded from memo).

    The memo key holds the columns the stage reads (those of ``X_train``), so the same stage
    on other columns (an edited pipeline factory) is another entry, never a stale one.
    """
    read = content_id(rows_id, _column_names(X_train))
    return memo.fit_transform(stage_key(read, path, stage), clone(stage), X_train, y_train, X_test)


def _column_names(X: Any) -> Any:
    """A frame's column names in order, a single column's name (a 1-D selection), else None."""
    if hasattr(X, "columns"):
        return [str(column) for column in X.columns]
    return str(X.name) if hasattr(X, "name") else None


def assemble(prefix: Pipeline, outputs: Mapping[str, StageOutput]) -> Pipeline:
    """``prefix`` with each precomputed stage standing in for the one it replaces."""
    for path, output in outputs.items():
        name, _, branch = path.partition("__")
        if branch:
            prefix.named_steps[name].set_params(**{branch: Precomputed(output)})
        else:
            prefix.set_params(**{name: Precomputed(output)})
    return prefix


class Precomputed(TransformerMixin, BaseEstimator):
    """Stands in for a fitted stage: gives back its outputs on the fold's train and test rows.

    It refuses rows of another shape, so it can never silently serve other data.
    """

    def __init__(self, output: StageOutput) -> None:
        self.output = output

    def __sklearn_is_fitted__(self) -> bool:
        """Always fitted: it stands in for a stage fitted elsewhere."""
        return True

    def fit(self, X: Any, y: Any = None) -> Self:
        self._check(X, self.output.train)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        return self.fit(X, y).output.train

    def transform(self, X: Any) -> Any:
        self._check(X, self.output.test)
        return self.output.test

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return self.output.fitted.get_feature_names_out(input_features)

    @staticmethod
    def _check(X: Any, output: Any) -> None:
        rows = X.shape[0] if hasattr(X, "shape") else len(X)  # a sparse matrix has no len
        if rows != output.shape[0]:
            raise ValueError(f"precomputed stage has {output.shape[0]} rows, got {rows}: not the fold it was computed on")


def is_inert(estimator: BaseEstimator | str | None) -> bool:
    """``"drop"`` and ``"passthrough"`` branches (and a None pipeline step) are not stages worth a task."""
    return estimator is None or (isinstance(estimator, str) and estimator in _INERT)
