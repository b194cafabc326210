"""Pipelines from config, and the taxifare default on synthetic and real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.pipeline import Pipeline

import gridsearch
from kampai.data import load_dataset
from kampai.errors import KampaiError
from kampai.pipeline import (
    build_pipeline,
    import_object,
    make_estimator,
    taxifare_pipeline,
)


def test_import_object_takes_colon_or_dot_paths():
    assert import_object("sklearn.linear_model:Ridge") is Ridge
    assert import_object("sklearn.linear_model.Ridge") is Ridge


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("sklearn.linear_model.Rigde", r"cannot import 'sklearn.linear_model.Rigde': module 'sklearn.linear_model' has no 'Rigde'"),
        ("no_such_package.Thing", r"cannot import 'no_such_package.Thing': No module named 'no_such_package'"),
        ("Ridge", r"expected 'package.module:name'"),
    ],
)
def test_import_object_names_what_is_missing(path, message):
    with pytest.raises(KampaiError, match=message):
        import_object(path)


def test_make_estimator_rejects_unknown_arguments_and_non_estimators():
    with pytest.raises(KampaiError, match="cannot build sklearn.linear_model.Ridge"):
        make_estimator("sklearn.linear_model.Ridge", {"alpa": 1})
    with pytest.raises(KampaiError, match="is not a scikit-learn estimator"):
        make_estimator("collections.OrderedDict")


def test_build_pipeline_from_declarative_steps():
    pipeline = build_pipeline(steps=[{"name": "scale", "estimator": "sklearn.preprocessing.StandardScaler"},
                                     {"name": "model", "estimator": "sklearn.linear_model.Ridge", "params": {"alpha": 2.0}}])
    assert isinstance(pipeline, Pipeline) and [name for name, _ in pipeline.steps] == ["scale", "model"]
    assert pipeline.get_params()["model__alpha"] == 2.0


def test_taxifare_pipeline_learns_synthetic_fares():
    trips = load_dataset("synthetic-taxifare", rows=6000, seed=2)
    train, test = trips.iloc[:5000], trips.iloc[5000:]
    model = taxifare_pipeline().fit(train, train["fare_amount"])
    assert r2_score(test["fare_amount"], model.predict(test)) > 0.6


def test_taxifare_pipeline_runs_on_the_real_kaggle_sample(real_sample: Path):
    trips = load_dataset(str(real_sample))
    train, test = trips.iloc[:8000], trips.iloc[8000:]
    model = taxifare_pipeline().fit(train, train["fare_amount"])
    predictions = model.predict(test)
    assert np.isfinite(predictions).all()
    assert r2_score(test["fare_amount"], predictions) > 0.5


def test_default_search_space_runs_on_the_real_kaggle_sample(real_sample: Path, write_config):
    path = write_config(data={"source": str(real_sample), "target": "fare_amount", "rows": 4000})
    result = gridsearch.run(path, progress=False)
    assert result.n_errors == 0 and result.cv_results["mean_test_r2"].max() > 0.5
