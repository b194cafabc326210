"""``gridsearch predict``: a model from the MLflow registry applied to a CSV or Parquet file.

The model is loaded by :mod:`kampai.registry` as MLflow's pyfunc, the same object
``mlflow models serve`` answers with, so a file scored here and a request to the server give
the same numbers. The file is read as the search reads its data and checked against the
model's signature (the training schema) before anything is predicted. A model whose loading
would run code it holds (pickle, cloudpickle) is refused unless ``trust_pickle``. The code that trained
the model (kept in its metadata) is compared with the running code: a difference is a
warning naming both, or a refusal with ``strict_code``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from gridsearch.errors import GridsearchError
from kampai.data import check_table_suffix, read_table, write_table

_NUMERIC = {"double": "numbers", "float": "numbers", "long": "integers", "integer": "integers"}


def predict(
    model: str,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    keep: Sequence[str] = (),
    tracking_uri: str | None = None,
    strict_code: bool = False,
    trust_pickle: bool = False,
) -> pd.DataFrame:
    """Predict every row of a CSV or Parquet file with a registered model and write the predictions.

    Parameters
    ----------
    model : str
        ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or ``runs:/<run id>/model``.
    input_path : path
        ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` with the training columns (the
        target may be there or not; other extra columns are ignored).
    output_path : path
        Where to write; the format follows the suffix, as for the input.
    keep : sequence of str
        Input columns copied next to the predictions, e.g. ``["key"]`` for a Kaggle submission.
    tracking_uri : str, optional
        The store holding the model (default: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``).
    strict_code : bool
        Refuse, rather than warn (:class:`~gridsearch.registry.code.CodeVersionWarning`), when
        the running code differs from the code that trained the model: another commit, dirty
        flag or package version, or other source files for the modules the model carries.
    trust_pickle : bool
        Load the model even if loading it runs code it holds: a pickle or cloudpickle file, a
        ``python_function`` model's ``python_model``, skops told to trust types other than
        those of numpy, scipy, sklearn, pandas, this project and the model's own code (see
        :mod:`kampai.trust`). Only for models whose author you trust; promoted models load without it.

    Returns
    -------
    DataFrame
        What was written: the ``keep`` columns, then one column named after the target the
        model was trained on (``prediction`` if unknown).

    Raises
    ------
    GridsearchError
        Missing or mistyped columns; other code than the model's, with ``strict_code``.
    UntrustedModelError
        A model whose loading would run code it holds, without ``trust_pickle``; nothing is
        deserialized and nothing written.
    KampaiError
        An unreadable input, an unsupported or unwritable output, an unreachable store, an
        unknown model or alias.
    """
    from gridsearch.registry.code import check_model_code
    from kampai.provenance import code_version
    from kampai.registry import load_model

    check_table_suffix(output_path)
    frame = read_table(input_path)
    missing_keep = [column for column in keep if column not in frame.columns]
    if missing_keep:
        raise GridsearchError(f"{input_path}: no column {', '.join(missing_keep)} to keep (columns: {', '.join(map(str, frame.columns))})")
    loaded = load_model(model, tracking_uri, trust_pickle=trust_pickle)
    check_model_code(model, loaded.metadata, code_version(), strict=strict_code)
    X = validate_columns(frame, loaded.inputs, str(input_path))
    predictions = frame[list(keep)].copy()
    predictions[str(loaded.metadata.get("target", "prediction"))] = loaded.predict(X)
    write_table(predictions, output_path)
    return predictions


def validate_columns(frame: pd.DataFrame, inputs: Sequence[tuple[str, str, bool]], source: str) -> pd.DataFrame:
    """``frame``'s columns of the model signature ``inputs``, in its order, checked and typed.

    Integer columns read as floats (a CSV column with a decimal point) are accepted when
    every value is a whole number; missing values in them are refused.
    """
    if not inputs:
        return frame
    names = [name for name, _, _ in inputs]
    missing = [name for name, _, required in inputs if required and name not in frame.columns]
    if missing:
        raise GridsearchError(f"{source}: missing column(s) {', '.join(missing)}; the model was trained on {', '.join(names)}")
    X = frame[[name for name in names if name in frame.columns]].copy()
    for name, kind, _ in inputs:
        if name not in X.columns:
            continue
        column = X[name]
        wanted = _NUMERIC.get(kind)
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        if wanted and not numeric:
            raise GridsearchError(f"{source}: column {name}: expected {wanted} ({kind}), found {column.dtype}")
        if wanted == "integers" and not pd.api.types.is_integer_dtype(column):
            if column.isna().any() or (column % 1 != 0).any():
                bad = int(column.isna().sum() + (column.dropna() % 1 != 0).sum())
                raise GridsearchError(f"{source}: column {name}: expected whole numbers, found {bad} missing or fractional values")
            X[name] = column.astype("int64")
        if kind == "string" and not (pd.api.types.is_string_dtype(column) or column.dtype == object):
            raise GridsearchError(f"{source}: column {name}: expected text, found {column.dtype}")
    return X

