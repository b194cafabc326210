"""A search's rows and folds, rebuilt the same way on the client and on any worker.

Workers get their data from a ``data-…`` task rather than from ``scatter``: a scattered
object lost with its last worker is gone for good (the Active Memory Manager may keep a
single replica, distributed#8657), while a task is recomputed. Synthetic data is
generated on the worker from its seed; a file's rows travel inside the task, or each
worker reads the file itself when told it can (``data.workers: read``, a shared volume).
Either way the worker checks the content fingerprint against the client's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import _check_method_params

from gridsearch.errors import GridsearchError
from kampai.data import fingerprint, load_dataset

Folds = tuple[tuple[np.ndarray, np.ndarray], ...]


@dataclass(frozen=True)
class DataSpec:
    """Everything that determines a search's rows and folds; ``fingerprint`` is the loaded frame's."""

    source: str
    rows: int | None
    seed: int
    clean: bool
    target: str
    test_size: float | None
    folds: int
    shuffle: bool
    cv_seed: int | None
    stratify: bool
    fingerprint: str


@dataclass(frozen=True)
class Dataset:
    """The rows the search cross-validates on, the fold indices, and per-row parameters.

    ``X`` is anything scikit-learn indexes (a frame, an array, a sparse matrix, a list);
    ``y`` is None for unsupervised estimators. ``fit_params`` go to the estimator's
    ``fit`` and ``score_params`` to the scorers; those with one value per row are cut to
    each fold's rows, as scikit-learn cuts them. A ``pairwise`` X is a precomputed kernel:
    its columns are cut to the train rows too.
    """

    X: Any
    y: np.ndarray | None
    folds: Folds
    fit_params: Mapping[str, Any] = field(default_factory=dict)
    score_params: Mapping[str, Any] = field(default_factory=dict)
    pairwise: bool = False

    def fold(self, k: int) -> tuple[Any, np.ndarray | None, Any, np.ndarray | None]:
        """``X_train, y_train, X_test, y_test`` of fold ``k``."""
        train, test = self.folds[k]
        return self._rows(train, train), self._targets(train), self._rows(test, train), self._targets(test)

    def fold_fit_params(self, k: int) -> dict[str, Any]:
        """The fit parameters of fold ``k``'s train rows."""
        return _check_method_params(self.X, self.fit_params, self.folds[k][0])

    def fold_score_params(self, k: int, side: int) -> dict[str, Any]:
        """The scorers' parameters of fold ``k``'s train (``side`` 0) or test (1) rows."""
        return _check_method_params(self.X, self.score_params, self.folds[k][side])

    def _rows(self, rows: np.ndarray, train: np.ndarray) -> Any:
        taken = _safe_indexing(self.X, rows)
        return _safe_indexing(taken, train, axis=1) if self.pairwise else taken

    def _targets(self, rows: np.ndarray) -> np.ndarray | None:
        return None if self.y is None else _safe_indexing(self.y, rows)


Holdout = tuple[pd.DataFrame, np.ndarray]


def load_frame(spec: DataSpec) -> pd.DataFrame:
    """The frame the spec describes, as loaded (and cleaned) from its source."""
    return load_dataset(spec.source, rows=spec.rows, seed=spec.seed, clean=spec.clean)


def split(spec: DataSpec, frame: pd.DataFrame) -> tuple[Dataset, Holdout | None]:
    """Target apart, the held-out rows apart, then folds as scikit-learn's ``check_cv`` makes them.

    Raises
    ------
    ValueError
        When the folds cannot be made (e.g. more folds than rows).
    """
    X, y = frame.drop(columns=[spec.target]), frame[spec.target].to_numpy()
    holdout = None
    if spec.test_size is not None:
        X, X_test, y, y_test = train_test_split(X, y, test_size=spec.test_size, random_state=spec.seed)
        holdout = (X_test, y_test)
    splitter = (StratifiedKFold if spec.stratify else KFold)(spec.folds, shuffle=spec.shuffle, random_state=spec.cv_seed if spec.shuffle else None)
    return Dataset(X, y, tuple(splitter.split(X, y))), holdout


def rebuild(spec: DataSpec, frame: pd.DataFrame | None) -> Dataset:
    """The search's :class:`Dataset` on a worker: from ``frame`` if given, else from the source.

    Raises
    ------
    GridsearchError
        When the rows differ from the client's (their fingerprint says so).
    """
    frame = load_frame(spec) if frame is None else frame
    found = fingerprint(frame)
    if found != spec.fingerprint:
        raise GridsearchError(f"data on a worker differs from the client's (fingerprint {found}, expected {spec.fingerprint}): "
                              f"{spec.source} changed or is another file there; make the source identical everywhere")
    return split(spec, frame)[0]

