"""The stored form of stage outputs: string arrays and columns as codes into their distinct values.

A stage that returns object arrays of strings (geohash cells, categories) pickles one Python
object per cell. :func:`compact` stores such an array as integer codes and its categories
(``pd.factorize``), and :func:`expand` rebuilds it exactly: same dtype, shape, memory order
and values. Numbers, sparse matrices and anything else are stored as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse

_BYTES_PER_STRING = 64  # a pickled short Python string, for size estimates


@dataclass(frozen=True)
class Codes:
    """An object array of strings as integer codes into its distinct values."""

    codes: np.ndarray
    categories: np.ndarray
    shape: tuple[int, ...]
    order: str

    @classmethod
    def of(cls, values: np.ndarray) -> Codes:
        order = "F" if values.flags.f_contiguous and not values.flags.c_contiguous else "C"
        codes, categories = pd.factorize(values.ravel(order=order))
        small = codes.astype(np.min_scalar_type(max(len(categories) - 1, 0)))
        return cls(small, np.asarray(categories, dtype=object), values.shape, order)

    def decode(self) -> np.ndarray:
        return self.categories.take(self.codes).reshape(self.shape, order=self.order)


@dataclass(frozen=True)
class CodedFrame:
    """A DataFrame whose string columns of object dtype hold their codes; ``columns`` by position."""

    frame: pd.DataFrame
    columns: dict[int, Codes]

    def decode(self) -> pd.DataFrame:
        frame = self.frame.copy(deep=False)
        for position, coded in self.columns.items():
            frame.isetitem(position, pd.Series(coded.decode(), index=frame.index, dtype=object))
        return frame


def compact(value: Any) -> Any:
    """``value`` in its stored form: a :class:`Codes` or :class:`CodedFrame` where strings repeat, else itself."""
    if isinstance(value, np.ndarray):
        return _coded(value) or value
    if isinstance(value, pd.DataFrame):
        objects = [position for position, dtype in enumerate(value.dtypes) if dtype == np.dtype(object)]
        columns = {position: coded for position in objects if (coded := _coded(value.iloc[:, position].to_numpy()))}
        if columns:
            frame = value.copy(deep=False)
            for position, coded in columns.items():
                frame.isetitem(position, coded.codes)
            return CodedFrame(frame, columns)
    return value


def expand(value: Any) -> Any:
    """The value :func:`compact` was given."""
    return value.decode() if isinstance(value, Codes | CodedFrame) else value


def stored_bytes(value: Any) -> int:
    """An estimate of the bytes a value takes on disk (arrays, sparse matrices, frames, their stored forms)."""
    if isinstance(value, Codes):
        return value.codes.nbytes + value.categories.size * _BYTES_PER_STRING
    if isinstance(value, CodedFrame):
        return stored_bytes(value.frame) + sum(stored_bytes(coded) for coded in value.columns.values())
    if isinstance(value, np.ndarray):
        return value.size * _BYTES_PER_STRING if value.dtype == object else value.nbytes
    if scipy.sparse.issparse(value):
        return sum(getattr(value, part).nbytes for part in ("data", "indices", "indptr", "row", "col") if hasattr(value, part))
    if isinstance(value, pd.DataFrame | pd.Series):
        return int(np.sum(value.memory_usage(deep=True)))
    return 0


def _coded(values: np.ndarray) -> Codes | None:
    """``values`` as codes when it is an object array of strings that repeat (else None: stored as it is)."""
    if values.dtype != object or values.size == 0 or pd.api.types.infer_dtype(values.ravel(), skipna=False) != "string":
        return None
    coded = Codes.of(values)
    return coded if 2 * coded.categories.size <= values.size else None
