"""explain: every step, branch and nested branch of any scikit-learn pipeline, fitted once; failures shown, not raised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

import gridsearch
from gridsearch.cli import main
from gridsearch.errors import ArgumentError
from gridsearch.view.explain import Explanation
from kampai.data import load_dataset
from kampai.pipeline import taxifare_pipeline

RNG = np.random.default_rng(0)
FRAME = pd.DataFrame({"a": RNG.normal(size=200), "b": RNG.normal(size=200), "c": RNG.choice(["x", "y", "z"], 200),
                      "d": np.where(RNG.random(200) < 0.25, np.nan, 1.0)})
TARGET = FRAME["a"].to_numpy() * 2


def _boom(X: object) -> object:
    raise ValueError("boom in step")


def steps(explanation: Explanation) -> pd.DataFrame:
    return explanation.table.set_index("path")


def test_the_taxi_pipeline_shows_every_branch_with_shapes_names_sparsity_and_times():
    frame = load_dataset("synthetic-taxifare", rows=1500, seed=1, clean=True)
    X, y = frame.drop(columns=["fare_amount"]), frame["fare_amount"].to_numpy()
    table = steps(gridsearch.explain(taxifare_pipeline(), X.iloc[:1000], y[:1000], X.iloc[1000:]))
    assert list(table.index) == ["", "features", "features__time", "features__time__extract", "features__time__scale",
                                 "features__distance", "features__distance__measure", "features__distance__scale", "features__geohash",
                                 "features__geohash__encode", "features__geohash__onehot", "features__passengers", "model"]
    assert (table["status"] == "ok").all()
    fitted = taxifare_pipeline().fit(X.iloc[:1000], y[:1000])
    assert table.loc["features", "output_shape"] == fitted[:-1].transform(X.iloc[:1000]).shape
    assert table.loc["features", "sparse"] and table.loc["features", "sparsity"] > 0.9
    assert table.loc["features", "feature_names"][:2] == ("time__hour_sin", "time__hour_cos")
    assert table.loc["features__geohash__encode", "dtypes"] == "object" and table.loc["features__geohash__encode", "output_shape"] == (1000, 2)
    assert table.loc["features__distance", "input_names"] == ("pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude")
    assert table.loc["model", "kind"] == "model" and table.loc["model", "output_shape"] == (len(X) - 1000,)
    np.testing.assert_allclose(table.loc["", "fit_time"], table.loc[["features", "model"], "fit_time"].sum())
    assert (table.loc[table["kind"] != "passthrough", "fit_time"] > 0).all() and (table["memory"] > 0).all()


def test_a_nested_column_transformer_with_a_failing_branch_marks_it_and_still_shows_its_siblings():
    inner = ColumnTransformer([("scale", StandardScaler(), ["a"]), ("impute", SimpleImputer(), make_column_selector(pattern="d"))])
    pipeline = Pipeline([("cols", ColumnTransformer([("nested", inner, ["a", "d"]), ("cat", OneHotEncoder(), ["c"]),
                                                     ("bad", FunctionTransformer(_boom), ["b"])])), ("model", Ridge())])
    explanation = gridsearch.explain(pipeline, FRAME, TARGET)
    table = steps(explanation)
    assert table.loc["cols__bad", "status"] == "error" and table.loc["cols__bad", "error"] == "ValueError: boom in step"
    assert table.loc["cols__nested__impute", "status"] == "ok" and table.loc["cols__nested__impute", "missing"] == 0.0
    assert table.loc["cols__nested__impute", "input_names"] == ("d",)  # the callable selector, resolved by scikit-learn
    assert table.loc["cols__cat", "output_shape"] == (200, 3)
    assert table.loc["cols", "status"] == "not run" and table.loc["model", "status"] == "not run"
    assert [step.path for step in explanation.failed] == ["cols__bad"]
    text = str(explanation)
    assert "failed: cols__bad: ValueError: boom in step" in text and "not run: model: cols failed" in text


def test_a_feature_union_and_the_remainder_are_assembled_by_scikit_learn():
    pipeline = Pipeline([("pre", ColumnTransformer([("num", StandardScaler(), ["a", "b"])], remainder=OneHotEncoder())),
                         ("union", FeatureUnion([("pca", PCA(1)), ("same", FunctionTransformer(feature_names_out="one-to-one"))],
                                                transformer_weights={"pca": 10.0})),
                         ("model", Ridge())])
    frame = FRAME.drop(columns=["d"])
    table = steps(gridsearch.explain(pipeline, frame, TARGET))
    assert table.loc["pre__remainder", "input_names"] == ("c",) and table.loc["pre", "output_shape"] == (200, 5)
    assert table.loc["union", "output_shape"] == (200, 6) and table.loc["union__pca", "output_shape"] == (200, 1)
    assert table.loc["union", "feature_names"][:2] == ("pca__pca0", "same__num__a")
    assert table.loc["model", "status"] == "ok" and table.loc["model", "input_columns"] == 6


def test_a_plain_estimator_and_arrays_without_names_work_too():
    table = steps(gridsearch.explain(Pipeline([("scale", StandardScaler()), ("model", Ridge())]), FRAME[["a", "b"]].to_numpy(), TARGET,
                                     rows=50))
    assert table.loc["scale", "output_shape"] == (50, 2) and table.loc["scale", "feature_names"] == ("x0", "x1")
    assert steps(gridsearch.explain(Ridge(), FRAME[["a"]], TARGET)).loc["", "kind"] == "model"
    with pytest.raises(ArgumentError, match="give the rows"):
        gridsearch.explain(Ridge())


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": 1500, "seed": 1},
        "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"},
        "search": {"params": {"features__geohash__encode__precision": [4, 5], "model__alpha": [0.1, 1.0]}},
        "cv": {"folds": 3}, "scoring": ["neg_root_mean_squared_error"], "log": str(tmp_path / "runs"), "cache": {"dir": None}}))
    return path


def test_explain_of_a_config_fits_a_candidate_on_one_fold(tmp_path, capsys):
    config = _config(tmp_path)
    search = gridsearch.prepare_search(config)
    candidate = next(c for c in search.candidates if c.params["features__geohash__encode__precision"] == 4)
    explanation = gridsearch.explain(str(config), candidate=candidate.id[:8], fold=2)
    train, test = search.dataset.folds[2]
    table = steps(explanation)
    assert table.loc["features", "output_shape"][0] == len(train) and table.loc["model", "output_shape"] == (len(test),)
    assert f"candidate {candidate.id}, fold 2" in explanation.data
    assert main(["explain", str(config), "--fold", "1", "--rows", "300"]) == 0
    out = capsys.readouterr().out
    assert "fitted on 300 rows" in out and "OneHotEncoder" in out and "geohash" in out


def test_explain_refuses_an_unknown_candidate_or_fold_naming_the_option(tmp_path, capsys):
    config = _config(tmp_path)
    assert main(["explain", str(config), "--candidate", "zzzz"]) == 2
    assert "error: --candidate: 'zzzz' matches none of the 4 candidates" in capsys.readouterr().err
    assert main(["explain", str(config), "--fold", "3"]) == 2
    assert "error: --fold: expected 0 to 2 (the search has 3 folds), found 3" in capsys.readouterr().err
