"""A search's rows and folds: split as scikit-learn splits them, rebuilt only from the same data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from gridsearch.errors import GridsearchError
from gridsearch.search.dataset import Dataset, DataSpec, rebuild, split
from kampai.data import fingerprint, load_dataset


def _frame(rows: int = 60, classes: int | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    target = rng.integers(0, classes, rows) if classes else rng.normal(size=rows)
    return pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows), "y": target})


def _spec(frame: pd.DataFrame, **changes: object) -> DataSpec:
    spec = DataSpec(source="synthetic-taxifare", rows=len(frame), seed=3, clean=True, target="y", test_size=None, folds=4,
                    shuffle=True, cv_seed=7, stratify=False, fingerprint=fingerprint(frame))
    return dataclasses.replace(spec, **changes)


def _assert_same_folds(dataset: Dataset, expected: list[tuple[np.ndarray, np.ndarray]]) -> None:
    assert len(dataset.folds) == len(expected)
    for (train, test), (want_train, want_test) in zip(dataset.folds, expected):
        np.testing.assert_array_equal(train, want_train)
        np.testing.assert_array_equal(test, want_test)


def test_split_makes_kfold_folds_with_the_configured_seed() -> None:
    """Without a hold-out the folds are ``KFold(folds, shuffle, cv_seed)`` on the whole frame."""
    frame = _frame()
    dataset, holdout = split(_spec(frame), frame)
    assert holdout is None and "y" not in dataset.X.columns and len(dataset.X) == 60
    np.testing.assert_array_equal(dataset.y, frame["y"].to_numpy())
    _assert_same_folds(dataset, list(KFold(4, shuffle=True, random_state=7).split(dataset.X)))
    seeded_elsewhere, _ = split(_spec(frame, cv_seed=8), frame)
    assert not np.array_equal(seeded_elsewhere.folds[0][1], dataset.folds[0][1])


def test_split_without_shuffle_makes_contiguous_folds() -> None:
    """``shuffle: false`` ignores the seed, as ``KFold`` requires."""
    frame = _frame()
    dataset, _ = split(_spec(frame, shuffle=False), frame)
    _assert_same_folds(dataset, list(KFold(4).split(dataset.X)))


def test_split_makes_stratified_folds_for_classifiers() -> None:
    """A classifier's folds are ``StratifiedKFold``'s, so every class is in every fold."""
    frame = _frame(classes=3)
    dataset, _ = split(_spec(frame, stratify=True), frame)
    _assert_same_folds(dataset, list(StratifiedKFold(4, shuffle=True, random_state=7).split(dataset.X, dataset.y)))
    assert all(len(set(dataset.y[test])) == 3 for _, test in dataset.folds)


def test_split_holds_rows_out_before_making_folds() -> None:
    """The hold-out is ``train_test_split`` with the data seed; folds cover only the other rows."""
    frame = _frame()
    dataset, holdout = split(_spec(frame, test_size=0.25), frame)
    X_test, y_test = holdout
    X_rest, X_want, _, y_want = train_test_split(frame.drop(columns=["y"]), frame["y"].to_numpy(), test_size=0.25, random_state=3)
    pd.testing.assert_frame_equal(X_test, X_want)
    np.testing.assert_array_equal(y_test, y_want)
    pd.testing.assert_frame_equal(dataset.X, X_rest)
    assert set(dataset.X.index).isdisjoint(X_test.index)
    assert set(dataset.X.index) | set(X_test.index) == set(frame.index)
    _assert_same_folds(dataset, list(KFold(4, shuffle=True, random_state=7).split(X_rest)))
    for k in range(4):
        X_train, y_train, X_fold_test, y_fold_test = dataset.fold(k)
        assert set(X_train.index).isdisjoint(X_test.index) and set(X_fold_test.index).isdisjoint(X_test.index)
        np.testing.assert_array_equal(y_train, frame.loc[X_train.index, "y"].to_numpy())
        np.testing.assert_array_equal(y_fold_test, frame.loc[X_fold_test.index, "y"].to_numpy())


def test_split_refuses_more_folds_than_rows() -> None:
    """Folds that cannot be made raise scikit-learn's ValueError (the config loader names the key)."""
    frame = _frame(rows=3)
    with pytest.raises(ValueError, match="n_splits=4"):
        split(_spec(frame), frame)


def test_rebuild_from_the_same_frame_gives_the_same_folds() -> None:
    """A worker given the client's frame makes the client's dataset."""
    frame = _frame()
    dataset = rebuild(_spec(frame, test_size=0.25), frame.copy())
    expected, _ = split(_spec(frame, test_size=0.25), frame)
    pd.testing.assert_frame_equal(dataset.X, expected.X)
    _assert_same_folds(dataset, list(expected.folds))


def test_rebuild_loads_the_source_when_given_no_frame() -> None:
    """Without a frame the worker loads the source itself (here the seeded generator)."""
    frame = load_dataset("synthetic-taxifare", rows=120, seed=3, clean=True)
    spec = _spec(frame, rows=120, folds=3, target="fare_amount")
    dataset = rebuild(spec, None)
    assert len(dataset.X) == len(frame) and len(dataset.folds) == 3


def test_rebuild_refuses_other_data_naming_both_fingerprints() -> None:
    """Rows that differ from the client's raise one line naming the found and the expected fingerprint."""
    frame = _frame()
    other = frame.copy()
    other.loc[0, "a"] += 1.0
    spec = _spec(frame)
    with pytest.raises(GridsearchError) as raised:
        rebuild(spec, other)
    message = str(raised.value)
    assert "\n" not in message
    assert f"fingerprint {fingerprint(other)}, expected {spec.fingerprint}" in message
    assert fingerprint(other) != spec.fingerprint
