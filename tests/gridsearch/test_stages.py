"""Raw stages: which steps read the raw data, their parameters, and the precomputed stand-ins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures, StandardScaler

from gridsearch.search.stages import (
    Precomputed,
    assemble,
    fit_stage,
    is_inert,
    raw_stages,
    splits_into_stages,
    stage_estimator,
    stage_params,
)
from kampai.cache import StageMemo, StageOutput
from kampai.data import synthetic_taxifare
from kampai.pipeline import taxifare_pipeline

TAXI_STAGES = ("features__time", "features__distance", "features__geohash")


def _dense(matrix: object) -> np.ndarray:
    return matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)


def _numeric_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(rows, 3)), columns=["a", "b", "c"])


def _scaled(train: pd.DataFrame, test: pd.DataFrame) -> StageOutput:
    scaler = StandardScaler().fit(train)
    return StageOutput(scaler, scaler.transform(train), scaler.transform(test), 0.0)


def test_taxi_pipeline_stages_are_its_column_transformer_branches() -> None:
    """Time, distance and geohash are stages; the passthrough passenger count is not."""
    assert raw_stages(taxifare_pipeline()) == TAXI_STAGES


def test_first_step_that_is_not_a_column_transformer_is_one_stage() -> None:
    """A first step of another kind is a single stage; a pipeline without prefix has none."""
    assert raw_stages(Pipeline([("scale", StandardScaler()), ("poly", PolynomialFeatures()), ("model", Ridge())])) == ("scale",)
    assert raw_stages(Pipeline([("model", Ridge())])) == ()
    assert raw_stages(Ridge()) == ()


@pytest.mark.parametrize("first", ["passthrough", None])
def test_an_inert_first_step_is_not_a_stage(first: str | None) -> None:
    """A first step that passes the data through has nothing to compute (the rest of the prefix is fitted whole)."""
    assert raw_stages(Pipeline([("scale", first), ("poly", PolynomialFeatures()), ("model", Ridge())])) == ()


def test_drop_and_passthrough_branches_are_not_stages() -> None:
    """Nothing to compute in ``drop`` or ``passthrough``, so no task for them."""
    features = ColumnTransformer([("dropped", "drop", ["a"]), ("kept", "passthrough", ["b"]), ("scaled", StandardScaler(), ["c"])])
    assert raw_stages(Pipeline([("features", features), ("model", Ridge())])) == ("features__scaled",)
    assert is_inert("drop") and is_inert("passthrough") and is_inert(None)
    assert not is_inert(StandardScaler()) and not is_inert("sklearn.preprocessing.StandardScaler")


def test_stage_params_are_those_under_the_stage_path_with_its_swap() -> None:
    """A stage's params are its swap and ``path__...``; a sibling with a longer name is not one of them."""
    params = {"features__geohash": "drop", "features__geohash__encode__precision": 5, "features__geohashes__x": 1,
              "features__time__extract__timezone": "UTC", "model__alpha": 1.0}
    assert stage_params(params, "features__geohash") == {"features__geohash": "drop", "features__geohash__encode__precision": 5}
    assert stage_params(params, "features__time") == {"features__time__extract__timezone": "UTC"}
    assert stage_params(params, "features__distance") == {}


def test_splits_into_stages_unless_the_first_step_itself_is_searched() -> None:
    """Swapping the first step or its transformers list leaves no fixed branches to compute apart."""
    pipeline = taxifare_pipeline()
    assert splits_into_stages(pipeline, ["features__geohash__encode__precision", "model__alpha"])
    assert splits_into_stages(pipeline, [])
    assert not splits_into_stages(pipeline, ["features", "model__alpha"])
    assert not splits_into_stages(pipeline, ["features__transformers"])
    assert not splits_into_stages(Pipeline([("model", Ridge())]), ["model__alpha"])


def test_stage_estimator_finds_a_branch_and_its_columns() -> None:
    """A branch comes with its columns; a whole first step reads all of them (None)."""
    prefix = taxifare_pipeline()[:-1]
    estimator, columns = stage_estimator(prefix, "features__time")
    assert estimator is prefix.named_steps["features"].transformers[0][1] and columns == ["pickup_datetime"]
    scale = Pipeline([("scale", StandardScaler()), ("model", Ridge())])[:-1]
    assert stage_estimator(scale, "scale") == (scale.named_steps["scale"], None)
    with pytest.raises(KeyError):
        stage_estimator(prefix, "features__nothing")


def test_precomputed_gives_back_the_outputs_of_its_fold() -> None:
    """Train rows get the train output, test rows the test output, as they were computed."""
    train, test = _numeric_frame(10), _numeric_frame(6, seed=1)
    output = _scaled(train, test)
    stand_in = Precomputed(output)
    assert stand_in.fit_transform(train) is output.train
    assert stand_in.transform(test) is output.test
    assert clone(stand_in).output is output  # ColumnTransformer clones it: the matrices are not copied


def test_precomputed_refuses_rows_of_another_shape() -> None:
    """Rows of another fold are refused, naming both row counts."""
    output = _scaled(_numeric_frame(10), _numeric_frame(6, seed=1))
    with pytest.raises(ValueError, match="precomputed stage has 10 rows, got 7: not the fold it was computed on"):
        Precomputed(output).fit(_numeric_frame(7))
    with pytest.raises(ValueError, match="precomputed stage has 6 rows, got 10: not the fold it was computed on"):
        Precomputed(output).transform(_numeric_frame(10))


def test_precomputed_passes_feature_names_through() -> None:
    """Feature names are the fitted stage's, so an assembled prefix names its columns as the uncached one."""
    output = _scaled(_numeric_frame(10), _numeric_frame(6, seed=1))
    assert list(Precomputed(output).get_feature_names_out()) == ["a", "b", "c"]
    assert list(Precomputed(output).get_feature_names_out(["a", "b", "c"])) == ["a", "b", "c"]


def test_fit_stage_memo_key_holds_the_columns_it_reads(tmp_path: Path) -> None:
    """The same stage and rows on other (or reordered) columns is another memo entry; the same columns load."""
    frame, test = _numeric_frame(20), _numeric_frame(5, seed=1)
    memo = StageMemo(tmp_path)
    loaded = [fit_stage(frame[columns], None, test[columns], FunctionTransformer(np.negative), "rows", "negate", memo)[1]
              for columns in (["a", "b"], ["b", "a"], ["a"], "a", ["a", "b"])]
    assert loaded == [False, False, False, False, True]


def test_assemble_puts_precomputed_branches_in_the_column_transformer() -> None:
    """The assembled taxi prefix gives the uncached prefix's output and feature names."""
    frame = synthetic_taxifare(200, seed=0)
    X, y = frame.drop(columns=["fare_amount"]), frame["fare_amount"].to_numpy()
    X_train, y_train, X_test = X.iloc[:150], y[:150], X.iloc[150:]
    pipeline = taxifare_pipeline().set_params(features__geohash__encode__precision=5)
    prefix = pipeline[:-1]
    outputs = {}
    for path in raw_stages(pipeline):
        stage, columns = stage_estimator(prefix, path)
        outputs[path], from_memo = fit_stage(X_train[columns], y_train, X_test[columns], stage, "rows", path, StageMemo(None))
        assert not from_memo
    assembled = assemble(clone(pipeline)[:-1], outputs)
    assert all(isinstance(assembled.named_steps["features"].get_params()[path.partition("__")[2]], Precomputed) for path in TAXI_STAGES)
    uncached = clone(pipeline)[:-1]
    np.testing.assert_allclose(_dense(assembled.fit_transform(X_train, y_train)), _dense(uncached.fit_transform(X_train, y_train)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(_dense(assembled.transform(X_test)), _dense(uncached.transform(X_test)), rtol=0, atol=1e-12)
    assert list(assembled.get_feature_names_out()) == list(uncached.get_feature_names_out())


def test_assemble_replaces_a_whole_first_step() -> None:
    """A stage that is the first step itself stands in for that step; later steps still run."""
    train, test = _numeric_frame(40), _numeric_frame(15, seed=1)
    pipeline = Pipeline([("scale", StandardScaler()), ("poly", PolynomialFeatures()), ("model", Ridge())])
    assembled = assemble(clone(pipeline)[:-1], {"scale": _scaled(train, test)})
    assert isinstance(assembled.named_steps["scale"], Precomputed)
    uncached = clone(pipeline)[:-1]
    np.testing.assert_allclose(assembled.fit_transform(train), uncached.fit_transform(train), rtol=0, atol=1e-12)
    np.testing.assert_allclose(assembled.transform(test), uncached.transform(test), rtol=0, atol=1e-12)
