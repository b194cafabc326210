"""What a search class's run log keeps so that ``promote`` can refit its winners: the estimator and the rows.

A search run from a config refits from the config (its pipeline factory, its data source).
A search class fitted from Python has neither: its estimator and rows are the caller's. So
its log directory keeps them, once, in ``refit/``: the unfitted estimator and the distinct
values of the candidates' parameters with skops (the log's ``params`` column is JSON, in
which an estimator or a tuple becomes text), ``X`` and ``y`` as Parquet (pandas), ``.npy``
(numpy) or ``.npz`` (scipy.sparse), and the per-row fit parameters (``sample_weight``) the
same way. Rows of another container, or a fit parameter that is not per row, make the log
not promotable, and ``refit/inputs.json`` says why. The directory is written whole under a
temporary name and renamed, so it is complete or absent; a resumed fit finds it and writes
nothing.

Reading back loads the estimator with skops under :mod:`kampai.trust`'s policy (types of
numpy, scipy, scikit-learn, pandas and this project); any other type is refused unless
``trust_types``, as importing its module runs its code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import _num_samples

from gridsearch.errors import ArgumentError, GridsearchError
from kampai.errors import one_line
from kampai.ids import value_text
from kampai.trust import ACCEPTED_PACKAGES, untrusted_types

REFIT_DIR = "refit"
MANIFEST = "inputs.json"
ESTIMATOR_FILE = "estimator.skops"
_SERIES_COLUMN = "__series__"  # the one column a Series is kept in (its name is in the manifest)
_KINDS = "pandas frames and series, numpy arrays and scipy.sparse matrices"


class _NotKept(Exception):
    """Why the inputs cannot be kept: the log is not promotable."""


@dataclass(frozen=True)
class RefitInputs:
    """What a search class's log keeps: the unfitted estimator, the candidates' values, the rows.

    ``values`` maps a parameter name to the JSON text of each value (as the log's ``params``
    column writes it) and the value itself.
    """

    estimator: BaseEstimator
    values: Mapping[str, Mapping[str, Any]]
    X: Any
    y: Any
    fit_params: Mapping[str, Any]

    def params(self, candidate_id: str, logged: Mapping[str, Any]) -> dict[str, Any]:
        """The candidate's parameters as objects again (cloned, as scikit-learn's refit does).

        Raises
        ------
        GridsearchError
            For a value the log keeps only as text (one not among the kept values, other than a number).
        """
        params = {}
        for name, value in logged.items():
            text = _text(value)
            kept = self.values.get(name, {})
            if text in kept:
                params[name] = clone(kept[text], safe=False)
            elif value is None or isinstance(value, (bool, int, float)):
                params[name] = value  # e.g. a later halving round's resource: a number is its own JSON
            else:
                raise GridsearchError(f"candidate {candidate_id}: {name}={text} is not among the values its log keeps "
                                      "(only their JSON text is logged); refit it from Python")
        return params


def keep_refit_inputs(directory: Path, estimator: BaseEstimator, candidate_params: Sequence[Mapping[str, Any]],
                      X: Any, y: Any, fit_params: Mapping[str, Any]) -> None:
    """Keep in ``directory/refit`` what a refit of the candidates needs, unless an earlier fit did.

    What cannot be kept is no error here (the search goes on): the manifest says why, and
    ``promote`` refuses with it.
    """
    target = directory / REFIT_DIR
    if target.exists():
        return
    building = directory / f".{REFIT_DIR}-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    try:
        building.mkdir()
        try:
            manifest = _write(building, estimator, candidate_params, X, y, fit_params)
        except _NotKept as exc:
            for written in building.iterdir():
                written.unlink()
            manifest = {"refused": str(exc)}
        (building / MANIFEST).write_text(json.dumps(manifest, indent=2))
        with contextlib.suppress(OSError):  # another fit of the same search renamed its copy first: the same inputs
            os.rename(building, target)
    except OSError as exc:  # a full disk: the search's results stand, only promote will refuse the log
        warnings.warn(f"{directory}: the estimator and rows for promote were not kept ({exc})", stacklevel=3)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def read_refit_inputs(directory: Path, trust_types: bool = False) -> RefitInputs:
    """What the log at ``directory`` keeps for a refit.

    Raises
    ------
    GridsearchError
        When the log keeps none (written before they were kept), or could not keep them.
    ArgumentError
        ``trust_types``: not given, and the estimator holds types outside the trusted packages.
    """
    import skops.io

    folder = directory / REFIT_DIR
    if not (folder / MANIFEST).is_file():
        raise GridsearchError(f"{directory} holds neither a search config nor the estimator and rows of a search class "
                              "(its fit predates them, or was interrupted): fit the search again with the same log= "
                              "to keep them (its fits are read from the log, not redone)")
    manifest = json.loads((folder / MANIFEST).read_text())
    if "refused" in manifest:
        raise GridsearchError(f"{directory} cannot be promoted: {manifest['refused']}")
    path = folder / ESTIMATOR_FILE
    types = skops.io.get_untrusted_types(file=path)
    outside = untrusted_types(types)
    if outside and not trust_types:
        raise ArgumentError("trust_types", f"not given, and the estimator kept in {folder} holds {', '.join(outside)}, not a type "
                            f"of {', '.join(ACCEPTED_PACKAGES)}: loading it imports and runs that code (give it if you "
                            "trust who wrote the log)")
    kept = skops.io.load(path, trusted=types)
    rows = {name: _read_rows(folder, spec) for name, spec in manifest["rows"].items()}
    fit_params = {name: _read_rows(folder, spec) for name, spec in manifest["fit_params"].items()}
    return RefitInputs(kept["estimator"], kept["values"], rows["X"], rows.get("y"), fit_params)


def _write(folder: Path, estimator: BaseEstimator, candidate_params: Sequence[Mapping[str, Any]], X: Any, y: Any,
           fit_params: Mapping[str, Any]) -> dict[str, Any]:
    """Write the estimator and the rows into ``folder``; their manifest."""
    import skops.io

    n_rows = _num_samples(X)
    for name, value in fit_params.items():
        if _rows_of(value) != n_rows:
            raise _NotKept(f"fit parameter {name} is a {type(value).__name__}, not one value per row of X "
                           f"({_KINDS}); refit it from Python")
    rows = {"X": X} if y is None else {"X": X, "y": y}
    manifest = {"rows": {name: _write_rows(folder, name, value) for name, value in rows.items()},
                "fit_params": {name: _write_rows(folder, f"fit-{index}", value) for index, (name, value) in enumerate(fit_params.items())}}
    values: dict[str, dict[str, Any]] = {}
    for params in candidate_params:
        for name, value in params.items():
            values.setdefault(name, {})[_text(value)] = value
    try:
        skops.io.dump({"estimator": estimator, "values": values}, folder / ESTIMATOR_FILE)
    except Exception as exc:  # noqa: BLE001 - skops raises many kinds for objects it cannot save
        raise _NotKept(f"skops cannot save its estimator or parameter values ({one_line(exc)})") from None
    return manifest


def _write_rows(folder: Path, name: str, value: Any) -> dict[str, Any]:
    """Write ``value`` as ``folder/<name>.<format>``; how to read it back."""
    try:
        if isinstance(value, pd.DataFrame):
            if not all(isinstance(column, str) for column in value.columns):
                raise _NotKept(f"{name} has column names that are not strings ({list(value.columns)[:3]}...), which Parquet cannot keep")
            value.to_parquet(folder / f"{name}.parquet")
            return {"kind": "frame", "file": f"{name}.parquet"}
        if isinstance(value, pd.Series):
            value.to_frame(_SERIES_COLUMN).to_parquet(folder / f"{name}.parquet")
            label = value.name if value.name is None or isinstance(value.name, (str, int)) else str(value.name)
            return {"kind": "series", "file": f"{name}.parquet", "name": label}
        if isinstance(value, np.ndarray):
            with open(folder / f"{name}.npy", "wb") as out:
                np.save(out, value, allow_pickle=False)
            return {"kind": "array", "file": f"{name}.npy"}
        if scipy.sparse.issparse(value):
            with open(folder / f"{name}.npz", "wb") as out:
                scipy.sparse.save_npz(out, value, compressed=False)
            return {"kind": "sparse", "file": f"{name}.npz"}
    except (ValueError, TypeError, NotImplementedError) as exc:  # pyarrow's and numpy's refusals (a disk error is no refusal)
        raise _NotKept(f"{name} cannot be written ({one_line(exc)})") from None
    raise _NotKept(f"{name} is a {type(value).__name__}; the log keeps {_KINDS} (fit with one of those)")


def _read_rows(folder: Path, spec: Mapping[str, Any]) -> Any:
    path = folder / spec["file"]
    if spec["kind"] == "frame":
        return pd.read_parquet(path)
    if spec["kind"] == "series":
        return pd.read_parquet(path)[_SERIES_COLUMN].rename(spec["name"])
    if spec["kind"] == "array":
        return np.load(path, allow_pickle=False)
    return scipy.sparse.load_npz(path)


def _rows_of(value: Any) -> int | None:
    """The rows of a value the log can keep, None for anything else (a scalar, a list, a dict)."""
    keepable = isinstance(value, (pd.DataFrame, pd.Series, np.ndarray)) or scipy.sparse.issparse(value)
    return value.shape[0] if keepable and len(value.shape) > 0 else None


def _text(value: Any) -> str:
    """A parameter value's JSON text, as the log's ``params`` column writes it (:func:`kampai.ids.value_text`)."""
    return json.dumps(value, sort_keys=True, default=value_text)


__all__: Sequence[str] = ["RefitInputs", "keep_refit_inputs", "read_refit_inputs"]
