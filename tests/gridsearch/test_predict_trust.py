"""predict refuses models whose loading runs code they hold (issue 10, case 10), on a real SQLite MLflow store.

The traps are real: a cloudpickled sklearn model whose ``__reduce__`` and a ``PythonModel``
whose ``__setstate__`` create a marker file when unpickled (standing for the shell command of
the issue). The marker file is named by an environment variable read at unpickling time, so
each test has its own. ``trust_pickle=True`` loads them, and the marker appears: the refusals
are what keeps it away.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from gridsearch.cli import main
from gridsearch.registry.predict import predict
from kampai.data import load_dataset
from kampai.errors import UntrustedModelError
from kampai.pipeline import taxifare_pipeline
from kampai.registry import ModelRun, load_model, open_store
from kampai.tracking import tracking

REPO = Path(__file__).resolve().parents[2]
MARKER_ENV = "KAMPAI_TEST_TRAP_MARKER"
# explicit: MLflow would otherwise infer them by loading the model in a subprocess (~25 s, and the trap with it)
REQUIREMENTS = ["scikit-learn", "mlflow"]


def _rebuild(model: Ridge) -> Ridge:
    """What unpickling the trap calls: any code at all; here, it creates the marker file."""
    Path(os.environ[MARKER_ENV]).touch()
    return model


class Trap:
    """A regressor that, when unpickled, runs :func:`_rebuild` first."""

    def __init__(self, model: Ridge) -> None:
        self.model = model

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.model.predict(X)

    def __reduce__(self) -> tuple:
        return _rebuild, (self.model,)


class Echo(mlflow.pyfunc.PythonModel):
    """A pyfunc model whose ``__setstate__`` (run by cloudpickle on load) creates the marker file."""

    def predict(self, context, model_input, params=None):
        return np.zeros(len(model_input))

    def __setstate__(self, state: dict) -> None:
        Path(os.environ[MARKER_ENV]).touch()
        self.__dict__.update(state)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return open_store(f"sqlite:///{tmp_path_factory.mktemp('trust') / 'mlflow.db'}")


@pytest.fixture(scope="module")
def rows() -> tuple[pd.DataFrame, np.ndarray]:
    X = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    return X, 2 * X["a"].to_numpy() - X["b"].to_numpy()


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "trap-ran"
    monkeypatch.setenv(MARKER_ENV, str(path))
    return path


@pytest.fixture
def trips(tmp_path, rows) -> Path:
    path = tmp_path / "rows.csv"
    rows[0].to_csv(path, index=False)
    return path


def _registered(store, name: str, log) -> str:
    """``log(registered_model_name=name)`` in a new run of ``store``; the URI of version 1."""
    with tracking(store.uri), mlflow.start_run(experiment_id=store.experiment(name)):
        log(registered_model_name=name)
    return f"models:/{name}/1"


@pytest.fixture(scope="module")
def pickled(store, rows) -> str:
    model = Ridge().fit(*rows)
    return _registered(store, "pickled", lambda **kw: mlflow.sklearn.log_model(
        Trap(model), name="model", serialization_format="cloudpickle", pip_requirements=REQUIREMENTS, **kw))


@pytest.fixture(scope="module")
def python_model(store) -> str:
    return _registered(store, "echo", lambda **kw: mlflow.pyfunc.log_model(
        name="model", python_model=Echo(), pip_requirements=REQUIREMENTS, **kw))


@pytest.fixture(scope="module")
def promoted(store) -> tuple[str, Any, pd.DataFrame]:
    """A model logged as ``promote`` logs it (:meth:`Store.log_model_run`: skops, our trusted transformers, our code)."""
    frame = load_dataset("synthetic-taxifare", rows=400, seed=5)
    X = frame.drop(columns=["fare_amount"])
    model = taxifare_pipeline().fit(X, frame["fare_amount"])
    registered = store.log_model_run("promoted", ModelRun(key={"id": "p"}, name="p", model=model, X=X, metadata={"target": "fare_amount"}))
    return registered.model_uri, model, X


def test_a_cloudpickle_model_is_refused_in_one_line_before_it_is_unpickled(store, pickled, trips, marker, tmp_path):
    with pytest.raises(UntrustedModelError) as refused:
        predict(pickled, trips, tmp_path / "preds.csv", tracking_uri=store.uri)
    assert str(refused.value) == (f"model {pickled} would run code when loaded: its sklearn model is saved with cloudpickle, and "
                                  "unpickling runs any code the file holds (pass trust_pickle=True if you trust who logged it)")
    assert not marker.exists() and not (tmp_path / "preds.csv").exists()


def test_trust_pickle_loads_it_and_its_code_runs(store, pickled, trips, rows, marker, tmp_path):
    written = predict(pickled, trips, tmp_path / "preds.csv", tracking_uri=store.uri, trust_pickle=True)
    assert marker.exists()  # the trap is real: only the refusal keeps it from running
    np.testing.assert_allclose(written["prediction"], Ridge().fit(*rows).predict(rows[0]))


def test_a_python_model_is_refused(store, python_model, trips, marker, tmp_path):
    with pytest.raises(UntrustedModelError, match=r"^model models:/echo/1 would run code when loaded: it is a python_function model whose "
                       r"python_model is cloudpickled \(or a code file it runs\), .* \(pass trust_pickle=True if you trust who logged it\)$"):
        predict(python_model, trips, tmp_path / "preds.csv", tracking_uri=store.uri)
    assert not marker.exists() and not (tmp_path / "preds.csv").exists()
    load_model(python_model, store.uri, trust_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize("unsafe", ["builtins.exec", "os.system", "subprocess.Popen"])
def test_a_skops_model_told_to_trust_an_unsafe_type_is_refused(store, rows, trips, marker, tmp_path, unsafe):
    model = Ridge().fit(*rows)
    name = f"skops-{unsafe.replace('.', '-')}"
    uri = _registered(store, name, lambda **kw: mlflow.sklearn.log_model(model, name="model", serialization_format="skops",
                                                                         skops_trusted_types=[unsafe], pip_requirements=REQUIREMENTS, **kw))
    with pytest.raises(UntrustedModelError, match=rf"^model {uri} would run code when loaded: it tells skops to trust {unsafe}, not a type"):
        predict(uri, trips, tmp_path / "preds.csv", tracking_uri=store.uri)
    assert not (tmp_path / "preds.csv").exists()


def test_a_promoted_model_loads_without_the_flag_and_predicts_as_mlflow_loads_it(store, promoted, tmp_path):
    uri, model, X = promoted
    path_before = list(sys.path)
    loaded = load_model(uri, store.uri)
    assert sys.path == path_before  # the model's shipped code is not put on sys.path: ours is imported from here
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    with tracking(store.uri):
        by_mlflow = mlflow.pyfunc.load_model(uri)  # what `mlflow models serve` loads and answers with
    np.testing.assert_array_equal(loaded.predict(X), np.asarray(by_mlflow.predict(X)))
    assert loaded.inputs == tuple((s.name, s.type.name, s.required) for s in by_mlflow.metadata.get_input_schema().inputs)
    trips = tmp_path / "trips.csv"
    X.head(30).to_csv(trips, index=False)
    written = predict(uri, trips, tmp_path / "preds.csv", tracking_uri=store.uri)
    np.testing.assert_array_equal(written["fare_amount"], model.predict(X.head(30)))


def test_cli_refuses_with_one_error_line_naming_the_option(store, pickled, trips, marker, tmp_path):
    out = tmp_path / "cli.csv"
    command = ["predict", "--model", pickled, "--input", str(trips), "--output", str(out), "--tracking-uri", store.uri]
    refused = subprocess.run([sys.executable, "-m", "gridsearch", *command], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert lines[0] == (f"error: model {pickled} would run code when loaded: its sklearn model is saved with cloudpickle, and "
                        "unpickling runs any code the file holds (pass --trust-pickle if you trust who logged it)")
    assert not marker.exists() and not out.exists()


def test_cli_trust_pickle_loads_it(store, pickled, trips, marker, tmp_path, capsys):
    out = tmp_path / "cli.csv"
    # in process: the trap's module (this file) is importable here, as it would not be in a child
    assert main(["predict", "--model", pickled, "--input", str(trips), "--output", str(out), "--tracking-uri", store.uri,
                 "--trust-pickle"]) == 0
    assert marker.exists() and len(pd.read_csv(out)) == 20
    assert f"20 predictions of {pickled} written to {out}" in capsys.readouterr().out
