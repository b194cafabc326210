"""kampai.registry on a real SQLite MLflow store: logging, loading back, idempotency, cleanup, failing fast."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from kampai.data import load_dataset
from kampai.errors import RegistryError
from kampai.packaging import flatten_params, pip_requirements, skops_trusted_types
from kampai.pipeline import taxifare_pipeline
from kampai.registry import MODEL_VERSION_TAG, ModelRun, load_model, open_store, promoted_runs, resolve_tracking_uri

OUR_TYPES = ["kampai.transformers.Geohash", "kampai.transformers.HaversineDistance", "kampai.transformers.TimeFeatures"]


@pytest.fixture(scope="module")
def fitted():
    frame = load_dataset("synthetic-taxifare", rows=800, seed=3)
    X, y = frame.drop(columns=["fare_amount"]), frame["fare_amount"].to_numpy()
    return taxifare_pipeline().fit(X, y), X


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return open_store(f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}")


def _model_run(fitted, key: dict[str, str]) -> ModelRun:
    model, X = fitted
    return ModelRun(key=key, name=f"test-{key['id']}", model=model, X=X, params=model.get_params(deep=True),
                    metrics={"score": 0.5}, tags={"owner": "test"}, artifacts={"note.txt": "hello"}, metadata={"target": "fare_amount"})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_resolve_tracking_uri_prefers_option_then_environment_then_sqlite_here(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri() == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:///other.db") == f"sqlite:///{tmp_path / 'other.db'}"
    assert resolve_tracking_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"


def test_flatten_params_names_estimators_by_class_and_flattens_nested_values():
    pipeline = Pipeline([("scale", StandardScaler()), ("model", Ridge(alpha=0.5))])
    flat = flatten_params({**pipeline.get_params(deep=True), "weights": {"a": 1, "b": {"c": np.float64(2.0)}}})
    assert flat["model"] == "Ridge" and flat["scale"] == "StandardScaler"
    assert flat["model__alpha"] == "0.5" and flat["memory"] == "None" and flat["scale__with_mean"] == "True"
    assert flat["steps"] == '[["scale", "StandardScaler"], ["model", "Ridge"]]'
    assert flat["weights__a"] == "1" and flat["weights__b__c"] == "2.0"
    assert all(isinstance(value, str) for value in flat.values())


def test_pip_requirements_pin_the_installed_packages_the_model_needs(fitted):
    requirements = pip_requirements(fitted[0])
    names = {requirement.partition("==")[0] for requirement in requirements}
    assert {"kampai-gridsearch", "scikit-learn", "numpy", "pandas", "scipy", "skops"} <= names
    assert all("==" in requirement for requirement in requirements)


def test_skops_trusts_exactly_our_transformers(fitted):
    model, X = fitted
    assert skops_trusted_types(model, X.head(5)) == OUR_TYPES


def test_logged_model_loads_back_with_our_transformers_and_predicts_the_same(store, fitted):
    model, X = fitted
    started = time.perf_counter()
    registered = store.log_model_run("roundtrip", _model_run(fitted, {"id": "a"}))
    assert time.perf_counter() - started < 5  # ~0.2 s on an idle machine; generous for a busy one
    assert registered.created and registered.version == "1"
    run = store.client.get_run(registered.run_id)
    assert run.info.status == "FINISHED" and run.data.tags[MODEL_VERSION_TAG] == "1"
    assert run.data.params["model"] == "Ridge" and run.data.params["features__geohash__encode__precision"] == "6"
    assert run.data.metrics == {"score": 0.5} and run.data.tags["owner"] == "test"
    assert [a.path for a in store.client.list_artifacts(registered.run_id)] == ["note.txt"]

    loaded = load_model("models:/roundtrip/1", store.uri)
    raw = loaded.pyfunc.get_raw_model()
    extract = raw.named_steps["features"].named_transformers_["time"].named_steps["extract"]
    assert type(extract).__module__ == "kampai.transformers" and type(extract).__name__ == "TimeFeatures"
    np.testing.assert_array_equal(loaded.predict(X.head(50)), model.predict(X.head(50)))
    assert [name for name, _, _ in loaded.inputs] == list(X.columns)
    assert loaded.metadata["target"] == "fare_amount"
    flavor = loaded.pyfunc.metadata.flavors["sklearn"]
    assert flavor["serialization_format"] == "skops" and flavor["skops_trusted_types"] == OUR_TYPES


def test_logging_the_same_key_twice_returns_the_first_run(store, fitted):
    first = store.log_model_run("twice", _model_run(fitted, {"id": "b"}))
    again = store.log_model_run("twice", _model_run(fitted, {"id": "b"}))
    assert first.created and not again.created
    assert (again.run_id, again.version) == (first.run_id, first.version)
    experiment = store.client.get_experiment_by_name("twice")
    assert len(store.client.search_runs([experiment.experiment_id])) == 1
    assert store.find({"id": "b"}, "twice").run_id == first.run_id
    assert store.find({"id": "zzz"}, "twice") is None


def test_failed_registration_keeps_nothing(store, fitted):
    with pytest.raises(RegistryError, match=r"could not log test-c to sqlite:.*Invalid model name 'bad/name'.*\(nothing was kept\)"):
        store.log_model_run("bad/name", _model_run(fitted, {"id": "c"}))
    experiment = store.client.get_experiment_by_name("bad/name")
    assert store.client.search_runs([experiment.experiment_id]) == []
    assert store.client.search_registered_models("name = 'bad/name'") == []


def test_a_run_left_incomplete_by_a_crash_is_replaced(store, fitted):
    store.log_model_run("crash", _model_run(fitted, {"id": "d0"}))  # creates the experiment
    experiment = store.client.get_experiment_by_name("crash")
    stale = store.client.create_run(experiment.experiment_id, tags={"id": "d", "kampai.model_name": "crash"})  # RUNNING, no version
    registered = store.log_model_run("crash", _model_run(fitted, {"id": "d"}))
    assert registered.created and registered.run_id != stale.info.run_id
    assert store.client.get_run(stale.info.run_id).info.lifecycle_stage == "deleted"
    assert store.find({"id": "d"}, "crash").run_id == registered.run_id


def test_best_alias_follows_the_metric(store, fitted):
    model, X = fitted
    versions = {}
    for name, score in (("low", 0.1), ("high", 0.9)):
        run = ModelRun(key={"id": name, "group": "g"}, name=name, model=model, X=X, metrics={"score": score})
        versions[name] = store.log_model_run("aliased", run).version
    assert store.set_best_alias("aliased", "champion", {"group": "g"}, "score") == versions["high"]
    assert str(store.client.get_model_version_by_alias("aliased", "champion").version) == versions["high"]
    assert store.set_best_alias("aliased", "champion", {"group": "none"}, "score") is None


@pytest.mark.parametrize("kind", ["closed port", "database under a file"])
def test_unreachable_store_fails_in_seconds(tmp_path, kind):
    if kind == "closed port":
        uri = f"http://127.0.0.1:{_closed_port()}"
    else:
        (tmp_path / "afile").write_text("not a directory")
        uri = f"sqlite:///{tmp_path / 'afile' / 'mlflow.db'}"
    started = time.perf_counter()
    with pytest.raises(RegistryError, match=r"^cannot reach the MLflow tracking store ") as caught:
        open_store(uri)
    assert time.perf_counter() - started < 15
    assert uri in str(caught.value) and "\n" not in str(caught.value)


def test_reading_a_store_that_does_not_exist_creates_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'missing.db'}"
    with pytest.raises(RegistryError, match=r"no MLflow store at .*missing\.db does not exist"):
        promoted_runs(uri)
    with pytest.raises(RegistryError, match="no MLflow store at"):
        load_model("models:/taxifare@champion", uri)
    assert not (tmp_path / "missing.db").exists()
