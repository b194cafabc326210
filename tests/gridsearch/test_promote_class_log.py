"""A search class fitted with ``log=`` is promoted and read like a search run from a config (issue 11, item 5).

One real ``GridSearchCV`` on the session's LocalCluster writes the log shared by the module;
each promotion goes to its own SQLite MLflow store in ``tmp_path``. Tests that change a log
change a copy of it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import Lasso, Ridge
from sklearn.pipeline import Pipeline

import gridsearch
from gridsearch.errors import ArgumentError, GridsearchError
from gridsearch.log.refit_inputs import REFIT_DIR, keep_refit_inputs, read_refit_inputs
from gridsearch.log.runlog import read_log
from gridsearch.registry.promote import promote
from kampai.data import clean_taxifare, synthetic_taxifare
from kampai.ids import value_text
from kampai.pipeline import taxifare_pipeline
from kampai.registry import load_model, open_store

TARGET = "fare_amount"
GRID = [{"model__alpha": [0.1, 10.0], "features__geohash__encode__precision": [4, 5]}, {"model": [Lasso(alpha=0.01)]}]


class Doubler(TransformerMixin, BaseEstimator):
    """A transformer of this test module: a type skops is not trusted to load."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(X) * 2


@dataclass(frozen=True)
class Fitted:
    search: gridsearch.GridSearchCV
    log: Path
    X: pd.DataFrame
    y: pd.Series


def _search(log_root: Path, client) -> gridsearch.GridSearchCV:
    return gridsearch.GridSearchCV(taxifare_pipeline(), GRID, cv=3, scoring="neg_root_mean_squared_error", log=log_root, client=client)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, client) -> Fitted:
    root = tmp_path_factory.mktemp("class-log")
    data = clean_taxifare(synthetic_taxifare(1500, seed=1))
    X, y = data.drop(columns=[TARGET]), data[TARGET]
    search = _search(root / "runs", client).fit(X, y)
    [log] = (root / "runs").iterdir()
    return Fitted(search, log, X, y)


@pytest.fixture
def new_rows() -> pd.DataFrame:
    return clean_taxifare(synthetic_taxifare(300, seed=99)).drop(columns=[TARGET])


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _copy(fitted: Fitted, tmp_path: Path) -> Path:
    return Path(shutil.copytree(fitted.log, tmp_path / "runs" / fitted.log.name))


def _candidate(fitted: Fitted, **params: object) -> str:
    """The id of the candidate whose params are ``params``, by its JSON in the log."""
    records = read_log(fitted.log).drop_duplicates("candidate_id")
    text = json.dumps(params, sort_keys=True, default=value_text)
    [candidate] = records.loc[records["params"] == text, "candidate_id"]
    return candidate


def test_class_log_keeps_estimator_and_rows_once(fitted, client):
    folder = fitted.log / REFIT_DIR
    assert sorted(p.name for p in folder.iterdir()) == ["X.parquet", "estimator.skops", "inputs.json", "y.parquet"]
    kept = read_refit_inputs(fitted.log)
    pd.testing.assert_frame_equal(kept.X, fitted.X)
    pd.testing.assert_series_equal(kept.y, fitted.y)
    assert type(kept.estimator) is Pipeline and not hasattr(kept.estimator, "n_features_in_")  # unfitted
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    _search(fitted.log.parent, client).fit(fitted.X, fitted.y)  # resumes the same log: its fits are read, the inputs kept as they are
    assert list(fitted.log.parent.iterdir()) == [fitted.log]
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert not [p for p in fitted.log.iterdir() if p.name.startswith(".")]  # no temporary directory left


def test_fitting_again_keeps_the_inputs_of_a_log_written_without_them(fitted, tmp_path, client):
    log = _copy(fitted, tmp_path)
    shutil.rmtree(log / REFIT_DIR)  # as a log written before they were kept
    records = len(read_log(log))
    _search(log.parent, client).fit(fitted.X, fitted.y)
    assert list(log.parent.iterdir()) == [log] and len(read_log(log)) == records  # every fit read from the log, none redone
    pd.testing.assert_frame_equal(read_refit_inputs(log).X, fitted.X)


def test_promoted_best_predicts_as_best_estimator(fitted, tmp_path, new_rows):
    promoted = promote(fitted.log, top=1, tracking_uri=_uri(tmp_path))
    [best] = promoted
    assert best.created and best.candidate_id == _candidate(fitted, **fitted.search.best_params_)
    model = load_model(best.model_uri, _uri(tmp_path))
    np.testing.assert_allclose(model.predict(new_rows), fitted.search.best_estimator_.predict(new_rows), rtol=0, atol=1e-9)
    assert model.metadata["target"] == TARGET and model.metadata["candidate_id"] == best.candidate_id
    store = open_store(_uri(tmp_path))
    run, parent = store.client.get_run(best.run_id), store.client.get_run(promoted.parent_run_id)
    fingerprint = read_log(fitted.log)["data_fingerprint"].iloc[0]
    assert run.data.tags["gridsearch.data_fingerprint"] == fingerprint == parent.data.tags["gridsearch.data_fingerprint"]
    assert run.data.tags["mlflow.parentRunId"] == promoted.parent_run_id and run.data.tags["gridsearch.n_train"] == str(len(fitted.X))
    assert parent.data.tags["gridsearch.package_version"] == run.data.tags["gridsearch.package_version"]
    assert parent.data.metrics["n_candidates"] == 5 and run.info.start_time < run.info.end_time
    assert promote(fitted.log, top=1, tracking_uri=_uri(tmp_path))[0].created is False  # found by its tags, nothing written


def test_cli_promotes_a_candidate_given_as_an_estimator(fitted, tmp_path, cli, new_rows):
    lasso = _candidate(fitted, model=Lasso(alpha=0.01))
    status, out, err = cli("promote", str(fitted.log), "--candidate", lasso[:8], "--tracking-uri", _uri(tmp_path))
    assert status == 0, err
    assert lasso in out and "alias champion -> taxifare version 1" in out
    expected = clone(fitted.search.estimator).set_params(model=Lasso(alpha=0.01)).fit(fitted.X, fitted.y).predict(new_rows)
    np.testing.assert_allclose(load_model("models:/taxifare/1", _uri(tmp_path)).predict(new_rows), expected, rtol=0, atol=1e-9)


def test_top_show_and_export_read_a_class_log(fitted, tmp_path, cli):
    best = _candidate(fitted, **fitted.search.best_params_)
    status, out, err = cli("top", str(fitted.log))
    assert status == 0, err
    assert best[:8] in out
    status, out, err = cli("show", str(fitted.log), best[:8])
    assert status == 0, err
    assert best in out
    status, out, err = cli("export", str(fitted.log), "--to", str(tmp_path / "results.csv"))
    assert status == 0, err
    assert len(pd.read_csv(tmp_path / "results.csv")) == 5


def test_an_untrusted_estimator_type_is_refused_unless_trusted(fitted, tmp_path, cli):
    log = _copy(fitted, tmp_path)
    shutil.rmtree(log / REFIT_DIR)
    keep_refit_inputs(log, Pipeline([("double", Doubler()), ("model", Ridge())]), [], fitted.X[["passenger_count"]], fitted.y, {})
    with pytest.raises(ArgumentError, match=r"trust_types: not given, and the estimator kept in .* holds .*Doubler, not a type of numpy"):
        promote(log, tracking_uri=_uri(tmp_path))
    status, _, err = cli("promote", str(log), "--tracking-uri", _uri(tmp_path))
    assert status == 2 and "error: --trust-types: not given" in err and "Doubler" in err
    assert not (tmp_path / "mlflow.db").exists()  # refused before the store is opened
    assert type(read_refit_inputs(log, trust_types=True).estimator.steps[0][1]).__name__ == "Doubler"


def test_a_log_without_refit_inputs_is_refused_saying_how_to_keep_them(fitted, tmp_path, cli):
    log = _copy(fitted, tmp_path)
    shutil.rmtree(log / REFIT_DIR)  # as a log written before they were kept
    with pytest.raises(GridsearchError, match="holds neither a search config nor the estimator and rows .* fit the search again"):
        promote(log, tracking_uri=_uri(tmp_path))
    status, _, err = cli("promote", str(log), "--tracking-uri", _uri(tmp_path))
    assert status == 2 and "holds neither a search config" in err


@pytest.mark.parametrize(("X", "fit_params", "problem"), [
    ([[1.0], [2.0], [3.0]], {}, "X is a list; the log keeps pandas frames and series"),
    (np.ones((3, 1)), {"model__sample_weight": 2.0}, "fit parameter model__sample_weight is a float, not one value per row"),
    (pd.DataFrame({0: [1.0, 2.0, 3.0]}), {}, "X has column names that are not strings"),
])
def test_rows_the_log_cannot_keep_make_it_unpromotable(fitted, tmp_path, X, fit_params, problem):
    log = _copy(fitted, tmp_path)
    shutil.rmtree(log / REFIT_DIR)
    keep_refit_inputs(log, Ridge(), [], X, np.arange(3.0), fit_params)
    assert os.listdir(log / REFIT_DIR) == ["inputs.json"]
    with pytest.raises(GridsearchError, match=f"cannot be promoted: {problem}"):
        promote(log, tracking_uri=_uri(tmp_path))


def test_arrays_sparse_rows_fit_params_and_values_round_trip(tmp_path):
    X = scipy.sparse.random(50, 4, density=0.3, format="csr", random_state=0)
    y, weights = np.arange(50.0), pd.Series(np.linspace(1, 2, 50), name="w")
    values = [{"alpha": np.float64(0.5), "solver": "auto", "ngram": (1, 2), "model": Ridge(alpha=3.0)}]
    keep_refit_inputs(tmp_path, Ridge(), values, X, y, {"sample_weight": weights})
    kept = read_refit_inputs(tmp_path)
    assert (kept.X != X).nnz == 0 and np.array_equal(kept.y, y)
    pd.testing.assert_series_equal(kept.fit_params["sample_weight"], weights)
    logged = json.loads(json.dumps({"alpha": 0.5, "solver": "auto", "ngram": [1, 2], "model": "Ridge(alpha=3.0)", "extra": 7}))
    params = kept.params("c1", logged)
    assert params["ngram"] == (1, 2) and isinstance(params["model"], Ridge) and params["model"].alpha == 3.0
    assert type(params["alpha"]) is np.float64 and params["extra"] == 7
    with pytest.raises(GridsearchError, match=r"candidate c2: model=\"Lasso\(\)\" is not among the values its log keeps"):
        kept.params("c2", {"model": "Lasso()"})
