"""kampai.registry and kampai.runs on a real SQLite MLflow store: logging, loading back, idempotency, cleanup,
failing fast, parent and child runs."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import kampai.transformers
from kampai.data import load_dataset
from kampai.errors import RegistryError
from kampai.packaging import flatten_params, pip_requirements, skops_trusted_types
from kampai.pipeline import taxifare_pipeline
from kampai.registry import MODEL_VERSION_TAG, ModelRun, load_model, open_store, resolve_tracking_uri
from kampai.runs import ChildRun, ParentRun, children_of, ensure_parent, log_children, promoted_runs

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


def test_pip_requirements_pin_the_installed_packages_an_index_serves(fitted):
    requirements = pip_requirements(fitted[0])
    names = {requirement.partition("==")[0] for requirement in requirements}
    assert names == {"scikit-learn", "numpy", "pandas", "pyarrow", "scipy", "skops"}  # not kampai-gridsearch: it travels as code
    assert all("==" in requirement for requirement in requirements)


def test_skops_trusts_exactly_our_transformers(fitted):
    model, X = fitted
    assert skops_trusted_types(model, X.head(5)) == OUR_TYPES


def test_logged_model_loads_back_with_our_transformers_and_predicts_the_same(store, fitted, tmp_path):
    model, X = fitted
    started = time.perf_counter()
    registered = store.log_model_run("roundtrip", _model_run(fitted, {"id": "a"}))
    # the first model of the process: MLflow's sklearn flavor is imported and the installed distributions read
    # once (~1.5 s on an idle machine, 0.2-0.5 s for the next ones); generous for a busy one
    assert time.perf_counter() - started < 10
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
    # our code travels with the model (only what it imports), and its requirements are what an index serves
    model_id = run.outputs.model_outputs[0].model_id
    location = store.client.get_logged_model(model_id).artifact_location
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(tmp_path)))
    assert sorted(p.name for p in (local / "code" / "kampai").iterdir()) == ["__init__.py", "data.py", "errors.py", "transformers.py"]
    assert (local / "code" / "kampai" / "transformers.py").read_bytes() == Path(kampai.transformers.__file__).read_bytes()
    requirements = (local / "requirements.txt").read_text().split()
    assert not [r for r in requirements if r.startswith("kampai")] and any(r.startswith("mlflow==") for r in requirements)
    assert loaded.metadata["code_modules"] == ["kampai", "kampai.data", "kampai.errors", "kampai.transformers"]


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


def test_a_model_run_can_be_a_child_with_the_times_of_its_fits(store, fitted):
    parent = store.client.create_run(store.experiment("family"), tags={"role": "parent"}).info.run_id
    run = ModelRun(key={"id": "kid"}, name="kid", model=fitted[0], X=fitted[1], metrics={"score": 1.0},
                   parent_run_id=parent, start_time=1_700_000_000_000, end_time=1_700_000_004_500)
    registered = store.log_model_run("family", run)
    info = store.client.get_run(registered.run_id).info
    assert (info.start_time, info.end_time, info.status) == (1_700_000_000_000, 1_700_000_004_500, "FINISHED")
    assert registered.tags["mlflow.parentRunId"] == parent and registered.tags["mlflow.runName"] == "kid"
    [row] = promoted_runs(store.uri, "family").to_dict("records")
    assert row["parent_run_id"] == parent and row["model_version"] == registered.version


def _parent(state: str, results: Path) -> ParentRun:
    return ParentRun(key={"work": "w1"}, state=state, name="work-w1", params={"best_alpha": "0.1", "config__folds": "3"},
                     metrics={"best_cv_score": -2.5, "n_fits": 18.0}, tags={"owner": "test"}, texts={"config.yaml": "folds: 3\n"},
                     files=[results], start_time=1_700_000_000_000, end_time=1_700_000_060_000)


def _children(n: int) -> list[ChildRun]:
    return [ChildRun(key={"work": "w1", "part": f"p{i}"}, name=f"part-{i}", params={"alpha": str(i)}, metrics={"score": float(i)},
                     tags={"rank": str(n - i)}, start_time=1_700_000_000_000 + i * 1000, end_time=1_700_000_000_500 + i * 1000)
            for i in range(n)]


def test_parent_is_written_once_per_state_and_children_nest_under_it(store, tmp_path):
    results = tmp_path / "cv_results.csv"
    results.write_text("candidate,score\na,1\n")
    parent_id, created = ensure_parent(store, "nested", _parent("18:1", results))
    again, created_again = ensure_parent(store, "nested", _parent("18:1", results))
    assert created and (again, created_again) == (parent_id, False)
    run = store.client.get_run(parent_id)
    assert run.data.params == {"best_alpha": "0.1", "config__folds": "3"} and run.data.metrics["best_cv_score"] == -2.5
    assert (run.info.start_time, run.info.end_time, run.info.status) == (1_700_000_000_000, 1_700_000_060_000, "FINISHED")
    assert sorted(a.path for a in store.client.list_artifacts(parent_id)) == ["config.yaml", "cv_results.csv"]

    experiment = store.experiment("nested")
    assert log_children(store, experiment, parent_id, _children(3)) == 3
    assert log_children(store, experiment, parent_id, _children(5)) == 2  # the first three exist: only the rest
    kids = sorted(children_of(store, experiment, parent_id), key=lambda r: r.data.tags["part"])
    assert [k.data.tags["part"] for k in kids] == ["p0", "p1", "p2", "p3", "p4"]
    assert all(k.data.tags["mlflow.parentRunId"] == parent_id and k.info.status == "FINISHED" for k in kids)
    assert (kids[4].info.start_time, kids[4].info.end_time) == (1_700_000_004_000, 1_700_000_004_500)
    assert kids[4].data.params == {"alpha": "4"} and kids[4].data.metrics == {"score": 4.0}

    newer, replaced = ensure_parent(store, "nested", _parent("24:2", results))  # the search grew: a new parent
    assert replaced and newer != parent_id
    assert store.client.get_run(parent_id).info.lifecycle_stage == "deleted"
    assert len(children_of(store, experiment, newer)) == 5 and children_of(store, experiment, parent_id) == []


def test_a_child_that_fails_is_deleted_and_the_ones_before_it_kept(store, tmp_path):
    results = tmp_path / "cv_results.csv"
    results.write_text("a\n1\n")
    parent_id, _ = ensure_parent(store, "failing", ParentRun(key={"work": "w2"}, state="1", name="w2", files=[results]))
    experiment = store.experiment("failing")
    children = _children(3)
    bad = ChildRun(key={"work": "w1", "part": "bad"}, name="bad", params={"not|a valid name": "1"})
    with pytest.raises(RegistryError, match=r"could not log child run bad to sqlite:.* \(3 of 4 were logged; logging again writes the rest\)"):
        log_children(store, experiment, parent_id, [*children, bad])
    kept = children_of(store, experiment, parent_id)
    assert sorted(k.data.tags["part"] for k in kept) == ["p0", "p1", "p2"] and all(k.info.status == "FINISHED" for k in kept)

