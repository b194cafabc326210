"""The walk behind ``explain``: each node of a scikit-learn estimator fitted by itself, a :class:`Step` recorded for each.

A ``Pipeline``'s steps run in turn on what the step before put out; a ``ColumnTransformer``'s
branches on their columns, resolved by scikit-learn itself (a copy with every branch
dropped is fitted, so callables and the remainder resolve as they would); a
``FeatureUnion``'s parts on the whole input. A composite's output is then assembled by
scikit-learn from stand-ins that give back its parts' outputs.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.utils import _safe_indexing

NAMES_SHOWN = 4
_INERT = ("passthrough", "drop")


@dataclass(frozen=True)
class Step:
    """One node of the pipeline and what it put out."""

    path: str
    depth: int
    kind: str  # pipeline, column transformer, feature union, transformer, model, passthrough, drop
    estimator: str
    status: str  # ok, error, not run
    error: str | None = None
    input_columns: int | None = None
    input_names: tuple[str, ...] = ()
    output_shape: tuple[int, ...] | None = None
    feature_names: tuple[str, ...] = ()
    dtypes: str = ""
    missing: float = float("nan")
    sparsity: float = float("nan")
    sparse: bool = False
    memory: int | None = None
    fit_time: float = float("nan")
    transform_time: float = float("nan")


class _Outputs(TransformerMixin, BaseEstimator):
    """Stands in for a node fitted by the walker: gives back its outputs, so scikit-learn assembles its parent."""

    def __init__(self, train: Any = None, test: Any = None, names: Any = None) -> None:
        self.train, self.test, self.names = train, test, names

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def fit(self, X: Any, y: Any = None) -> Self:
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        return self.train

    def transform(self, X: Any) -> Any:
        return self.test

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        if self.names is None:
            raise AttributeError("feature names unknown")
        return np.asarray(self.names, dtype=object)


@dataclass
class _Out:
    train: Any
    test: Any
    names: Any
    fit_time: float
    transform_time: float


class Walker:
    """Fits node after node, appending a :class:`Step` for each."""

    def __init__(self, y: Any) -> None:
        self.y = y
        self.steps: list[Step] = []

    def node(self, est: Any, X: Any, test: Any, names: Any, path: str, depth: int, final: bool) -> _Out | None:
        if isinstance(est, Pipeline):
            return self.pipeline(est, X, test, names, path, depth, final)
        if isinstance(est, (ColumnTransformer, FeatureUnion)):
            return self.composite(est, X, test, names, path, depth)
        return self.leaf(est, X, test, names, path, depth, final)

    def pipeline(self, est: Pipeline, X: Any, test: Any, names: Any, path: str, depth: int, final: bool) -> _Out | None:
        slot = self._reserve()
        out: _Out | None = _Out(X, test, names, 0.0, 0.0)
        fit_time = transform_time = 0.0
        failed = None
        for i, (name, step) in enumerate(est.steps):
            sub = _join(path, name)
            if failed is not None:
                self.skipped(step, sub, depth + 1, f"{failed} failed")
            elif step is None or step == "passthrough":
                self._add(sub, depth + 1, "passthrough", "passthrough", "ok", X=out.train, output=out.train, names=out.names, inputs=out.names)
            else:
                out_i = self.node(step, out.train, out.test, out.names, sub, depth + 1, final and i == len(est.steps) - 1)
                if out_i is None:
                    failed = sub
                    continue
                fit_time, transform_time = fit_time + out_i.fit_time, transform_time + out_i.transform_time
                out = out_i
        if failed is not None:
            self._fill(slot, path, depth, "pipeline", est, "not run", X, inputs=names, note=f"{failed} failed")
            return None
        self._fill(slot, path, depth, "pipeline", est, "ok", X, inputs=names, output=out.train, names=out.names, fit=fit_time,
                   transform=transform_time)
        return _Out(out.train, out.test, out.names, fit_time, transform_time)

    def composite(self, est: ColumnTransformer | FeatureUnion, X: Any, test: Any, names: Any, path: str, depth: int) -> _Out | None:
        slot = self._reserve()
        kind = "column transformer" if isinstance(est, ColumnTransformer) else "feature union"
        try:
            parts = _columns(est, X) if isinstance(est, ColumnTransformer) else [(n, t, None) for n, t in est.transformer_list]
        except Exception as exc:  # noqa: BLE001 - any estimator's failure is shown, not raised
            self._fill(slot, path, depth, kind, est, "error", X, inputs=names, error=_error(exc))
            for name, part in _children(est):
                self.skipped(part, _join(path, name), depth + 1, None)
            return None
        stand_ins, failed, fit_time, transform_time = {}, [], 0.0, 0.0
        for name, part, columns in parts:
            sub = _join(path, name)
            X_part, test_part = (X, test) if columns is None else (_safe_indexing(X, columns, axis=1), _safe_indexing(test, columns, axis=1))
            names_part = names if columns is None else _selected(X, names, columns)
            if isinstance(part, str) and part in _INERT:
                output = X_part if part == "passthrough" else None
                self._add(sub, depth + 1, part, part, "ok", X=X_part, inputs=names_part, output=output, names=names_part if output is not None else None)
                continue
            out = self.node(part, X_part, test_part, names_part, sub, depth + 1, final=False)
            if out is None:
                failed.append(sub)
                continue
            stand_ins[name] = _Outputs(out.train, out.test, out.names)
            fit_time, transform_time = fit_time + out.fit_time, transform_time + out.transform_time
        if failed:
            self._fill(slot, path, depth, kind, est, "not run", X, inputs=names, note=f"{', '.join(failed)} failed")
            return None
        try:
            assembled = clone(est).set_params(**stand_ins)
            start = time.perf_counter()
            train = assembled.fit_transform(X, self.y)
            fit_time += time.perf_counter() - start
            start = time.perf_counter()
            out_test = assembled.transform(test) if test is not X else train
            transform_time += time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001
            self._fill(slot, path, depth, kind, est, "error", X, inputs=names, error=_error(exc))
            return None
        out_names = _feature_names(assembled, names, train)
        self._fill(slot, path, depth, kind, est, "ok", X, inputs=names, output=train, names=out_names, fit=fit_time, transform=transform_time)
        return _Out(train, out_test, out_names, fit_time, transform_time)

    def leaf(self, est: Any, X: Any, test: Any, names: Any, path: str, depth: int, final: bool) -> _Out | None:
        model = final and hasattr(est, "predict")
        try:
            fitted = clone(est)
            start = time.perf_counter()
            train = None if model else fitted.fit_transform(X, self.y)
            if model:
                fitted.fit(X, self.y)
            fit_time = time.perf_counter() - start
            start = time.perf_counter()
            out_test = fitted.predict(test) if model else fitted.transform(test) if test is not X else train
            transform_time = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - the failing step is shown with its error
            self._add(path, depth, "model" if model else "transformer", type(est).__name__, "error", X=X, inputs=names, error=_error(exc))
            return None
        if model:
            self._add(path, depth, "model", type(est).__name__, "ok", X=X, inputs=names, output=np.asarray(out_test), fit=fit_time,
                      transform=transform_time)
            return _Out(out_test, out_test, None, fit_time, transform_time)
        out_names = _feature_names(fitted, names, train)
        self._add(path, depth, "transformer", type(est).__name__, "ok", X=X, inputs=names, output=train, names=out_names, fit=fit_time,
                  transform=transform_time)
        return _Out(train, out_test, out_names, fit_time, transform_time)

    def skipped(self, est: Any, path: str, depth: int, note: str | None) -> None:
        """``est`` and everything inside it, as not run (``note``, why, on the outermost)."""
        self._add(path, depth, _kind(est), est if isinstance(est, str) else type(est).__name__, "not run", error=note)
        for name, child in _children(est):
            self.skipped(child, _join(path, name), depth + 1, None)

    def _reserve(self) -> int:
        self.steps.append(Step("", 0, "", "", ""))
        return len(self.steps) - 1

    def _fill(self, slot: int, path: str, depth: int, kind: str, est: Any, status: str, X: Any, *, note: str | None = None,
              **described: Any) -> None:
        self.steps[slot] = _step(path, depth, kind, type(est).__name__, status, X=X, error=described.pop("error", None) or note, **described)

    def _add(self, path: str, depth: int, kind: str, name: str, status: str, **described: Any) -> None:
        self.steps.append(_step(path, depth, kind, name, status, **described))


def _step(path: str, depth: int, kind: str, name: str, status: str, *, X: Any = None, inputs: Any = None, output: Any = None,
          names: Any = None, fit: float = math.nan, transform: float = math.nan, error: str | None = None) -> Step:
    """A :class:`Step`: its input ``X`` (with ``inputs``, its column names), its ``output`` (with ``names``) and times."""
    described = _describe(output) if output is not None else {}
    inputs = names_of(X, inputs) if X is not None else None
    return Step(path, depth, kind, name, status, error, width_of(X) if X is not None else None,
                tuple(map(str, inputs[:NAMES_SHOWN])) if inputs is not None else (),
                feature_names=tuple(map(str, names[:NAMES_SHOWN])) if names is not None else (),
                fit_time=fit, transform_time=transform, **described)


def _describe(X: Any) -> dict[str, Any]:
    """Shape, dtypes, share of missing values and of zeros, and memory of an output."""
    if sp.issparse(X):
        size = X.shape[0] * X.shape[1]
        data = X.data
        missing = float(np.isnan(data).sum() / size) if size and data.dtype.kind == "f" else 0.0
        zeros = 1 - (np.count_nonzero(data) / size) if size else float("nan")
        memory = sum(getattr(X, n).nbytes for n in ("data", "indices", "indptr") if hasattr(X, n))
        return {"output_shape": X.shape, "dtypes": f"{X.dtype} ({X.format})", "missing": missing, "sparsity": zeros, "sparse": True,
                "memory": memory}
    if isinstance(X, pd.DataFrame):
        counts = X.dtypes.astype(str).value_counts()
        numeric = X.select_dtypes("number").to_numpy(dtype=float)
        return {"output_shape": X.shape, "dtypes": ", ".join(f"{d} x{n}" for d, n in counts.items()),
                "missing": float(X.isna().to_numpy().mean()) if X.size else 0.0,
                "sparsity": float((numeric == 0).mean()) if numeric.size else float("nan"), "memory": int(X.memory_usage(deep=True).sum())}
    array = np.asarray(X)
    numeric = array.dtype.kind in "biuf"
    return {"output_shape": array.shape, "dtypes": str(array.dtype),
            "missing": float(np.isnan(array).mean()) if array.dtype.kind == "f" and array.size else float(pd.isna(array).mean()) if array.size else 0.0,
            "sparsity": float((array == 0).mean()) if numeric and array.size else float("nan"),
            "memory": int(array.nbytes + (sum(map(sys.getsizeof, array.ravel())) if array.dtype == object else 0))}  # objects: deep


def _columns(est: ColumnTransformer, X: Any) -> list[tuple[str, Any, Any]]:
    """The branches of a ``ColumnTransformer`` with their columns, as scikit-learn resolves them (remainder included)."""
    probe = clone(est).set_params(**{name: "drop" for name, _, _ in est.transformers}, remainder="drop")
    probe.fit(X)
    given = {name: part for name, part, _ in est.transformers}
    given["remainder"] = est.remainder
    return [(name, given[name], columns) for name, _, columns in probe.transformers_
            if not (name == "remainder" and isinstance(est.remainder, str) and est.remainder == "drop")]


def _feature_names(fitted: Any, names: Any, output: Any) -> Any:
    if isinstance(output, pd.DataFrame):
        return list(output.columns)
    try:
        return list(fitted.get_feature_names_out(None if names is None else np.asarray(names, dtype=object)))
    except Exception:  # noqa: BLE001 - feature names are optional in scikit-learn
        return None


def names_of(X: Any, fallback: Any) -> Any:
    return list(X.columns) if isinstance(X, pd.DataFrame) else fallback


def _selected(X: Any, names: Any, columns: Any) -> Any:
    if isinstance(X, pd.DataFrame):
        return list(_safe_indexing(X.iloc[:0], columns, axis=1).columns)
    return None if names is None else list(_safe_indexing(np.asarray(names, dtype=object), columns))


def _children(est: Any) -> list[tuple[str, Any]]:
    """The named parts of a composite (none for anything else)."""
    if isinstance(est, Pipeline):
        return list(est.steps)
    if isinstance(est, ColumnTransformer):
        return [(name, part) for name, part, _ in est.transformers]
    return list(est.transformer_list) if isinstance(est, FeatureUnion) else []


def _kind(est: Any) -> str:
    if isinstance(est, str) or est is None:
        return str(est)
    return ("pipeline" if isinstance(est, Pipeline) else "column transformer" if isinstance(est, ColumnTransformer)
            else "feature union" if isinstance(est, FeatureUnion) else "transformer")


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _join(path: str, name: str) -> str:
    return f"{path}__{name}" if path else name


def width_of(X: Any) -> int:
    shape = getattr(X, "shape", None) or np.shape(X)
    return shape[1] if len(shape) > 1 else 1
