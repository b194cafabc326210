"""The stored form of stage outputs: strings as codes, everything rebuilt exactly, the rest untouched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from kampai.compact import CodedFrame, Codes, compact, expand, stored_bytes

CELLS = np.array([["dr5ru", "dr5rv"], ["dr5ru", "dr72h"], ["dr5rv", "dr5ru"]] * 50, dtype=object)


@pytest.mark.parametrize("values", [CELLS, np.asfortranarray(CELLS), CELLS[:, 0], CELLS.T[:, ::3]])
def test_string_arrays_round_trip_in_dtype_shape_order_and_values(values):
    stored = compact(values)
    rebuilt = expand(stored)
    assert isinstance(stored, Codes) and stored.codes.dtype == np.uint8
    assert rebuilt.dtype == object and rebuilt.shape == values.shape and _fortran(rebuilt) == _fortran(values)
    np.testing.assert_array_equal(rebuilt, values)
    assert stored_bytes(stored) < stored_bytes(values)


def _fortran(values: np.ndarray) -> bool:
    return values.flags.f_contiguous and not values.flags.c_contiguous


@pytest.mark.parametrize("values", [
    np.array(["a", None, "a", "a"], dtype=object),  # a missing value: pd.factorize would not rebuild None
    np.array([f"key{i}" for i in range(100)], dtype=object),  # all distinct: codes would not be smaller
    np.array([], dtype=object),
    np.arange(12.0).reshape(4, 3),
])
def test_other_arrays_are_stored_as_they_are(values):
    assert compact(values) is values


def test_frames_keep_their_columns_index_and_dtypes():
    frame = pd.DataFrame({
        "cell": pd.Series(CELLS[:, 0], dtype=object),
        "label": pd.Series(["x", "y", None] * 50, dtype=object),
        "name": pd.Series(["n", "m", "n"] * 50, dtype="str"),
        "km": np.linspace(0, 1, 150),
    }).set_axis(pd.RangeIndex(10, 160))
    frame.columns = ["cell", "label", "cell", "km"]  # a repeated name: columns are kept by position
    stored = compact(frame)
    assert isinstance(stored, CodedFrame) and list(stored.columns) == [0]
    rebuilt = expand(stored)
    pd.testing.assert_frame_equal(rebuilt, frame, check_exact=True)
    assert list(rebuilt.dtypes) == list(frame.dtypes) and frame["km"].dtype == np.float64


def test_sparse_matrices_and_other_values_are_stored_as_they_are():
    matrix = scipy.sparse.random(50, 20, density=0.1, format="csr", random_state=0)
    assert compact(matrix) is matrix and expand(matrix) is matrix
    assert stored_bytes(matrix) == matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
    assert compact(None) is None and expand("text") == "text"
