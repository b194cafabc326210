"""promote, predict and registry end to end: a real search, a real SQLite MLflow store, real servers.

One search and one promotion (top 3) are shared by the module. The two MLflow servers
(``mlflow models serve`` and a tracking server) take ~20 s each to start on 2 cores, so
the first test starts them and the last ones wait for them, all within bounded loops;
both are killed, whole process group, at the end of the module.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.base import clone
from sklearn.metrics import get_scorer

import gridsearch
from gridsearch.cli import main
from gridsearch.errors import GridsearchError
from gridsearch.registry.predict import predict
from gridsearch.registry.promote import promote, summary
from gridsearch.registry.table import format_registry, registry_table
from gridsearch.search.prepare import prepare_search
from gridsearch.search.space import resolve, step_names
from kampai.data import clean_taxifare, synthetic_taxifare
from kampai.errors import RegistryError
from kampai.registry import MODEL_VERSION_TAG, load_model, open_store

VENV_BIN = str(Path(sys.executable).parent)
SCORING = ["neg_root_mean_squared_error", "r2"]
CONFIG = {
    "data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": 1500, "seed": 1, "test_size": 0.2},
    "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"},
    "search": {"params": {"features__geohash__encode__precision": [4, 5], "model__alpha": [0.1, 1.0, 10.0]}},
    "cv": {"folds": 3, "shuffle": True, "seed": 0},
    "scoring": SCORING,
}


@dataclass(frozen=True)
class Searched:
    root: Path
    config: Path
    result: gridsearch.SearchResult
    uri: str

    @property
    def log(self) -> Path:
        return self.result.log_path


class Server:
    """An MLflow server process in its own session, so the whole group can be ended."""

    def __init__(self, args: list[str], cwd: Path, uri: str, ready: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready = ready
        self.output = cwd / f"server-{self.port}.log"
        env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": uri,
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "mlflow", *args, "--host", "127.0.0.1", "--port", str(self.port)],
                                            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float = 150) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.output.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + self.ready, timeout=2) as response:
                    if response.status == 200:
                        return self.url
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"server not ready after {timeout} s:\n{self.output.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        try:  # workers left in the group after the leader exited
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``python -m gridsearch ARGS`` in this process: the exit status, and its own stdout and stderr."""
    capfd.readouterr()  # what came before (MLflow's logs) is not the command's
    status = main(list(args))
    out, err = capfd.readouterr()
    return status, out, err


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _best_first(result: gridsearch.SearchResult) -> pd.DataFrame:
    return result.cv_results.sort_values(["rank_test_neg_root_mean_squared_error", "candidate_id"])


def _refit_in_process(searched: Searched, params: dict) -> tuple:
    """The production pipeline refitted here, independently of promote."""
    search = prepare_search(searched.config)
    model = clone(search.pipeline).set_params(**resolve(params, step_names(search.pipeline)))
    return model.fit(search.dataset.X, search.dataset.y), search


@pytest.fixture(scope="module")
def searched(tmp_path_factory, cluster_address) -> Searched:
    root = tmp_path_factory.mktemp("promote")
    config = {**copy.deepcopy(CONFIG), "cluster": {"address": cluster_address}, "log": str(root / "runs"), "cache": {"dir": str(root / "cache")}}
    path = root / "search.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return Searched(root, path, gridsearch.run(path, progress=False), f"sqlite:///{root / 'mlflow.db'}")


@pytest.fixture(scope="module")
def promoted(searched) -> list:
    return promote(searched.log, top=3, tracking_uri=searched.uri)


@pytest.fixture(scope="module")
def servers(searched, promoted) -> Iterator[dict[str, Server]]:
    """``mlflow models serve`` of the champion and an empty tracking server, started together."""
    started: dict[str, Server] = {}
    try:
        started["model"] = Server(["models", "serve", "-m", "models:/taxifare@champion", "--env-manager", "local", "--workers", "1"],
                                  searched.root, searched.uri, "/ping")
        tracking = searched.root / "tracking-server"
        tracking.mkdir()
        started["tracking"] = Server(["server", "--backend-store-uri", f"sqlite:///{tracking / 'server.db'}", "--workers", "1"],
                                     tracking, searched.uri, "/health")
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def new_trips(searched) -> Path:
    """Trips the model never saw, with the training columns and without the target."""
    path = searched.root / "new.csv"
    synthetic_taxifare(300, seed=99).query("pickup_latitude > 40 and dropoff_latitude > 40").drop(columns=["fare_amount"]).to_csv(path, index=False)
    return path


def test_promote_logs_one_run_per_winner_in_rank_order(searched, promoted, servers):  # servers: start them now, in the background
    best = _best_first(searched.result).head(3)
    assert [p.candidate_id for p in promoted] == list(best["candidate_id"])
    assert [p.rank for p in promoted] == [1, 2, 3]
    assert all(p.created for p in promoted) and [p.version for p in promoted] == ["1", "2", "3"]
    store = open_store(searched.uri)
    experiment = store.client.get_experiment_by_name("taxifare")
    runs = store.client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("kampai.run_kind") == "parent"]  # the search, with the 3 as children
    assert len(runs) == 4 and parent.info.run_id == promoted.parent_run_id and promoted.parent_created
    assert sorted(r.info.run_id for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id) == \
        sorted(p.run_id for p in promoted)
    assert [v.run_id for v in sorted(store.client.search_model_versions("name = 'taxifare'"), key=lambda v: int(v.version))] == \
        [p.run_id for p in promoted]


def test_run_holds_params_scores_provenance_config_and_model(searched, promoted):
    store = open_store(searched.uri)
    first, row = promoted[0], _best_first(searched.result).iloc[0]
    run = store.client.get_run(first.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["model"] == "Ridge" and params["features"] == "ColumnTransformer"
    assert params["model__alpha"] == str(row["params"]["model__alpha"])
    assert params["features__geohash__encode__precision"] == str(row["params"]["features__geohash__encode__precision"])
    assert json.loads(params["steps"]) == [["features", "ColumnTransformer"], ["model", "Ridge"]]
    for scorer in SCORING:
        assert metrics[f"mean_test_{scorer}"] == pytest.approx(row[f"mean_test_{scorer}"], abs=1e-12)
        assert metrics[f"std_test_{scorer}"] == pytest.approx(row[f"std_test_{scorer}"], abs=1e-12)
        assert f"holdout_{scorer}" in metrics
    assert metrics["refit_time"] > 0
    # one log_batch: every metric carries the same timestamp
    assert len({store.client.get_metric_history(first.run_id, name)[0].timestamp for name in metrics}) == 1
    meta = json.loads((searched.log / "search.json").read_text())
    assert tags["gridsearch.search_id"] == searched.result.search_id and tags["gridsearch.candidate_id"] == first.candidate_id
    assert tags["gridsearch.rank"] == "1" and tags["gridsearch.data_fingerprint"] == meta["data_fingerprint"]
    assert tags["gridsearch.git_sha"] == (meta["code_version"]["git_sha"] or "none")
    assert tags["gridsearch.git_dirty"] == str(meta["code_version"]["git_dirty"]).lower()
    assert tags["gridsearch.package_version"] == meta["code_version"]["package_version"]
    assert "gridsearch.code_change_allowed" not in tags
    config = store.client.download_artifacts(first.run_id, "search.yaml", str(searched.root))
    assert yaml.safe_load(Path(config).read_text()) == meta["config"]
    model = store.client.get_logged_model(run.outputs.model_outputs[0].model_id)
    assert model.name == "model" and model.source_run_id == first.run_id
    loaded = load_model(first.model_uri, searched.uri)
    assert [name for name, _, _ in loaded.inputs] == list(prepare_search(searched.config).dataset.X.columns)  # the signature
    assert loaded.pyfunc.metadata.saved_input_example_info["type"] == "dataframe"
    code = meta["code_version"]
    assert loaded.metadata == {"target": "fare_amount", "search_id": searched.result.search_id, "candidate_id": first.candidate_id,
                               "code_version": {k: code[k] for k in ("git_sha", "git_dirty", "package_version")},
                               "code_modules": ["kampai", "kampai.data", "kampai.errors", "kampai.transformers"],
                               "code_digest": loaded.metadata["code_digest"]}  # the code predict compares with its own


def test_refit_is_the_production_pipeline_on_the_full_training_data(searched, promoted):
    first = promoted[0]
    model, search = _refit_in_process(searched, dict(first.params))
    X_test, y_test = search.holdout
    for scorer in SCORING:
        assert first.metrics[f"holdout_{scorer}"] == get_scorer(scorer)(model, X_test, y_test)
    tags = open_store(searched.uri).client.get_run(first.run_id).data.tags
    assert tags["gridsearch.n_train"] == str(len(search.dataset.X)) and tags["gridsearch.n_holdout"] == str(len(X_test))
    assert len(search.dataset.X) + len(X_test) == len(clean_taxifare(synthetic_taxifare(1500, seed=1)))


def test_best_promoted_version_gets_the_champion_alias(searched, promoted):
    store = open_store(searched.uri)
    assert str(store.client.get_model_version_by_alias("taxifare", "champion").version) == promoted[0].version
    assert [p.alias for p in promoted] == ["champion", None, None]
    text = summary(promoted)
    assert "alias champion -> taxifare version 1" in text and "models:/taxifare@champion" in text


def test_promoting_again_creates_no_second_run(searched, promoted):
    store = open_store(searched.uri)
    experiment = store.client.get_experiment_by_name("taxifare")
    before = len(store.client.search_runs([experiment.experiment_id]))
    again = promote(searched.log, top=3, tracking_uri=searched.uri)
    by_prefix = promote(searched.log, candidates=[promoted[1].candidate_id[:6]], tracking_uri=searched.uri)
    assert [(p.run_id, p.version, p.created) for p in again] == [(p.run_id, p.version, False) for p in promoted]
    assert by_prefix[0].run_id == promoted[1].run_id and not by_prefix[0].created
    assert len(store.client.search_runs([experiment.experiment_id])) == before
    assert str(store.client.get_model_version_by_alias("taxifare", "champion").version) == promoted[0].version


def test_config_tracking_uri_overrides_the_environment(searched, promoted, tmp_path, monkeypatch):
    log = tmp_path / "copy"
    shutil.copytree(searched.log, log)
    meta = json.loads((log / "search.json").read_text())
    meta["config"]["registry"] = {"tracking_uri": searched.uri}
    (log / "search.json").write_text(json.dumps(meta))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")  # closed: would fail if used
    [found] = promote(log, top=1)
    assert found.run_id == promoted[0].run_id and found.tracking_uri == searched.uri


def test_changed_code_is_refused_unless_allowed_and_then_recorded(searched, promoted, tmp_path):
    log = tmp_path / "copy"
    shutil.copytree(searched.log, log)
    meta = json.loads((log / "search.json").read_text())
    meta["code_version"] = {"git_sha": "0" * 40, "git_dirty": False, "package_version": "0.0.1"}
    (log / "search.json").write_text(json.dumps(meta))
    fourth = _best_first(searched.result)["candidate_id"].iloc[3]
    cache_before = sorted((searched.root / "cache").rglob("*"))
    with pytest.raises(GridsearchError, match=r"allow_code_change: not given, and the code changed since the search: .* scored by "
                                              r"kampai-gridsearch 0\.0\.1 \(000000000000\), this is .*rerun the search, or give it"):
        promote(log, candidates=[fourth], tracking_uri=searched.uri)
    store = open_store(searched.uri)
    assert store.find({"gridsearch.search_id": meta["search_id"], "gridsearch.candidate_id": fourth}, "taxifare") is None
    [kept] = promote(log, candidates=[promoted[0].candidate_id], tracking_uri=searched.uri)  # nothing to refit: not refused
    assert kept.run_id == promoted[0].run_id and not kept.created
    [allowed] = promote(log, candidates=[fourth], allow_code_change=True, tracking_uri=searched.uri)
    tags = store.client.get_run(allowed.run_id).data.tags
    assert allowed.created and allowed.rank == 4 and allowed.alias is None
    assert tags["gridsearch.code_change_allowed"] == "true"
    assert tags["gridsearch.search_code_version"] == "kampai-gridsearch 0.0.1 (000000000000)"
    assert str(store.client.get_model_version_by_alias("taxifare", "champion").version) == promoted[0].version
    assert sorted((searched.root / "cache").rglob("*")) == cache_before  # the refit writes no intermediate files


def test_bad_requests_are_one_line_errors_that_write_nothing(searched, promoted, tmp_path, capfd, monkeypatch):
    database = Path(searched.uri.removeprefix("sqlite:///"))
    before = _digest(database)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["promote", str(searched.log), "--candidate", "ffffffffzz", "--tracking-uri", searched.uri], "candidate 'ffffffffzz' is not in run log"),
        (["promote", str(empty), "--tracking-uri", searched.uri], f"no run log at {empty}: no search.json or part-*.arrows in it"),
        (["promote", str(searched.log), "--top", "1", "--tracking-uri", f"http://127.0.0.1:{_free_port()}"],
         "cannot reach the MLflow tracking store http://127.0.0.1:"),
    ]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")  # the user's own setting: still fails fast
    for args, message in cases:
        started = time.perf_counter()
        status, _, err = _cli(capfd, *args)
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
        assert time.perf_counter() - started < 15
    assert _digest(database) == before


def test_default_store_is_sqlite_in_the_working_directory(searched, promoted, tmp_path, capfd, monkeypatch):
    env = {name: value for name, value in os.environ.items() if name != "MLFLOW_TRACKING_URI"}
    # --allow-code-change: this subprocess reads the code version afresh, and the working tree may move meanwhile
    done = subprocess.run([sys.executable, "-m", "gridsearch", "promote", str(searched.log), "--allow-code-change"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert f"in sqlite:///{tmp_path / 'mlflow.db'}" in done.stdout and "alias champion -> taxifare version 1" in done.stdout
    assert (tmp_path / "mlflow.db").is_file() and any((tmp_path / "mlruns").iterdir())
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    status, out, err = _cli(capfd, "registry")  # the same default, read in this process
    assert status == 0 and promoted[0].candidate_id in out and "champion" in out, err


@pytest.mark.parametrize("command", ["promote", "predict", "registry"])
def test_help_explains_the_command_with_examples(command, capfd):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    out, _ = capfd.readouterr()
    assert exited.value.code == 0 and "examples:" in out and f"python -m gridsearch {command}" in out


def test_run_never_writes_to_mlflow(write_config, searched, promoted, tmp_path):
    database = Path(searched.uri.removeprefix("sqlite:///"))
    before = _digest(database)
    config = write_config(data={**CONFIG["data"], "seed": 2})
    script = f"import sys, gridsearch; gridsearch.run({str(config)!r}, progress=False); print('mlflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "MLFLOW_TRACKING_URI": searched.uri})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"  # mlflow not even imported
    assert _digest(database) == before
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    assert any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("model_uri", ["models:/taxifare@champion", "models:/taxifare/1", "runs:/{run_id}/model"])
def test_predict_equals_the_in_process_refit(searched, promoted, new_trips, model_uri):
    uri = model_uri.format(run_id=promoted[0].run_id)
    model, _ = _refit_in_process(searched, dict(promoted[0].params))
    expected = model.predict(pd.read_csv(new_trips, dtype={"key": "str", "pickup_datetime": "str"}))
    written = predict(uri, new_trips, searched.root / "preds.parquet", keep=["key"], tracking_uri=searched.uri)
    assert list(written.columns) == ["key", "fare_amount"]
    np.testing.assert_array_equal(pd.read_parquet(searched.root / "preds.parquet")["fare_amount"], expected)
    np.testing.assert_array_equal(written["fare_amount"], expected)


def test_predict_cli_reads_parquet_and_writes_csv(searched, promoted, new_trips, capfd):
    trips = searched.root / "new.parquet"
    pd.read_csv(new_trips, dtype={"key": "str", "pickup_datetime": "str"}).assign(fare_amount=1.0).to_parquet(trips)
    out = searched.root / "cli-preds.csv"
    status, printed, err = _cli(capfd, "predict", "--model", "models:/taxifare@champion", "--input", str(trips), "--output", str(out),
                                "--tracking-uri", searched.uri)
    assert status == 0, err
    assert f"written to {out}" in printed
    expected = predict("models:/taxifare@champion", new_trips, searched.root / "p.parquet", tracking_uri=searched.uri)
    np.testing.assert_allclose(pd.read_csv(out)["fare_amount"], expected["fare_amount"], rtol=1e-15)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns=["pickup_latitude", "key"]), r"missing column\(s\) key, pickup_latitude; the model was trained on key, "),
        (lambda df: df.assign(passenger_count="two"), r"column passenger_count: expected integers \(long\), found"),
        (lambda df: df.assign(passenger_count=1.5), r"column passenger_count: expected whole numbers"),
    ],
)
def test_predict_validates_columns_against_the_training_schema(searched, promoted, new_trips, change, message):
    bad = searched.root / "bad.csv"
    change(pd.read_csv(new_trips)).to_csv(bad, index=False)
    with pytest.raises(GridsearchError, match=message):
        predict("models:/taxifare@champion", bad, searched.root / "never.csv", tracking_uri=searched.uri)
    assert not (searched.root / "never.csv").exists()


def test_predict_of_an_unknown_alias_is_a_registry_error(searched, promoted, new_trips):
    with pytest.raises(RegistryError, match="cannot load model models:/taxifare@nope .*alias nope not found"):
        predict("models:/taxifare@nope", new_trips, searched.root / "never.csv", tracking_uri=searched.uri)


def test_registry_lists_promoted_runs_and_exports_csv(searched, promoted, capfd):
    table = registry_table(searched.uri, model_name="taxifare", search_id=searched.result.search_id)
    assert set(promoted_ids := [p.run_id for p in promoted]) <= set(table["run_id"])
    first = table.set_index("run_id").loc[promoted[0].run_id]
    assert first["aliases"] == "champion" and first["model_version"] == "1"
    assert first["parent_run_id"] == promoted.parent_run_id  # the hierarchy: each promoted run under its search's run
    assert first["tags.gridsearch.candidate_id"] == promoted[0].candidate_id
    assert first["metrics.mean_test_r2"] == pytest.approx(promoted[0].metrics["mean_test_r2"])
    assert "params.model__alpha" in table.columns and not any(c.startswith("tags.mlflow.") for c in table.columns)
    assert "champion" in format_registry(table) and promoted.parent_run_id[:8] in format_registry(table)
    out = searched.root / "registry.csv"
    status, printed, err = _cli(capfd, "registry", "--tracking-uri", searched.uri, "--csv", str(out))
    assert status == 0, err
    assert "champion" in printed and f"runs written to {out}" in printed
    exported = pd.read_csv(out)
    assert set(promoted_ids) <= set(exported["run_id"]) and "metrics.holdout_r2" in exported.columns
    assert registry_table(searched.uri, search_id="0" * 16).empty


def test_served_model_answers_like_predict(searched, promoted, new_trips, servers):
    url = servers["model"].wait()
    rows = pd.read_csv(new_trips, dtype={"key": "str", "pickup_datetime": "str"}).head(5)
    body = json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}).encode()
    request = urllib.request.Request(url + "/invocations", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        served = json.loads(response.read())["predictions"]
    expected = predict("models:/taxifare@champion", new_trips, searched.root / "p.csv", tracking_uri=searched.uri)
    np.testing.assert_allclose(served, expected["fare_amount"].head(5), rtol=1e-12)


def test_a_tracking_server_works_the_same(searched, promoted, new_trips, servers):
    url = servers["tracking"].wait()
    [remote] = promote(searched.log, top=1, tracking_uri=url)
    assert remote.created and remote.candidate_id == promoted[0].candidate_id and remote.alias == "champion"
    assert remote.metrics["holdout_r2"] == pytest.approx(promoted[0].metrics["holdout_r2"], abs=1e-12)
    assert not promote(searched.log, top=1, tracking_uri=url)[0].created
    local = predict("models:/taxifare@champion", new_trips, searched.root / "local.parquet", tracking_uri=searched.uri)
    served = predict("models:/taxifare@champion", new_trips, searched.root / "remote.parquet", tracking_uri=url)
    np.testing.assert_array_equal(served["fare_amount"], local["fare_amount"])
    run = open_store(url).client.get_run(remote.run_id)
    assert run.data.tags[MODEL_VERSION_TAG] == "1" and run.data.tags["gridsearch.candidate_id"] == remote.candidate_id
