"""A fitted model's size: the bytes of the arrays it holds, measured in microseconds.

The size is the sum of ``nbytes`` of every numpy array and scipy sparse matrix reachable
from the fitted estimator: its attributes, recursively through lists, dicts and
sub-estimators (a forest's trees), and the state of objects that keep their arrays out of
``__dict__`` (scikit-learn's Cython ``Tree``: its ``__getstate__`` arrays of nodes and
values, views, not copies). Python scalars and strings are not counted: for the models a
search compares, the arrays are the model (coefficients, trees, support vectors, a nearest
neighbours' training rows). It is not the pickle's size, which adds framing and object
overhead, but it orders models the same way at a fraction of the cost (about 2 µs for a
linear model, 1-3 ms for a forest of 100 trees; ``bench/bench_report.py`` measures it).
"""

from __future__ import annotations

import math
import types
from typing import Any

import numpy as np
import scipy.sparse as sp

_MAX_DEPTH = 12  # estimator -> list of trees -> tree -> Tree -> state: 5; generous for nested meta-estimators
_SKIP = (str, bytes, int, float, complex, bool, type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
         types.MethodType, np.random.RandomState, np.random.Generator)


def model_size(estimator: Any) -> float:
    """Bytes of the arrays held by a fitted ``estimator`` (NaN if they cannot be walked)."""
    try:
        return float(_walk(estimator, {}, 0))
    except Exception:  # noqa: BLE001 - a size is a nicety: it must never fail a fit
        return math.nan


def _walk(value: Any, seen: dict[int, Any], depth: int) -> int:
    """Bytes of the arrays under ``value``; ``seen`` holds what was counted (alive, so no id is reused)."""
    if value is None or isinstance(value, _SKIP) or id(value) in seen or depth > _MAX_DEPTH:
        return 0
    seen[id(value)] = value
    if isinstance(value, np.ndarray):
        return value.nbytes + (sum(_walk(item, seen, depth + 1) for item in value.flat) if value.dtype == object else 0)
    if sp.issparse(value):
        return sum(getattr(value, name).nbytes for name in ("data", "indices", "indptr", "row", "col", "offsets") if hasattr(value, name))
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(_walk(item, seen, depth + 1) for item in value)
    if isinstance(value, dict):
        return sum(_walk(item, seen, depth + 1) for item in value.values())
    state = getattr(value, "__dict__", None)
    if state is None and hasattr(value, "__getstate__") and hasattr(value, "__reduce__"):
        state = value.__getstate__()  # a Cython object such as sklearn's Tree: its arrays live in its state
        if not isinstance(state, dict):
            return 0
        seen[id(state)] = state  # views made for this call: kept alive until the walk ends
    return 0 if state is None else sum(_walk(item, seen, depth + 1) for item in state.values())
