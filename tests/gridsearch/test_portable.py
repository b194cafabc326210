"""A promoted model loads where this project is not installed: a fresh virtual environment, and a server in one.

``mlflow models serve --env-manager uv`` builds that environment itself from the model
alone: a uv virtual environment with the recorded Python, then ``uv pip install`` of the
model's requirements from the index (seconds with uv's cache; pip took ~2.5 min here). The same environment then loads ``models:/taxifare@champion`` from the
registry in an isolated interpreter (``python -I``, nothing of this checkout on its path),
so one environment serves both tests. Its transformers come from the code the model carries.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import gridsearch
from gridsearch.registry.predict import predict
from gridsearch.registry.promote import promote
from kampai.data import synthetic_taxifare

CONFIG = {
    "data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": 1000, "seed": 7},
    "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"},
    "search": {"params": {"features__geohash__encode__precision": [5], "model__alpha": [0.1, 1.0]}},
    "cv": {"folds": 2, "shuffle": True, "seed": 0},
    "scoring": ["neg_root_mean_squared_error"],
}
READY_TIMEOUT = 900  # the environment is built before the server starts: seconds here with a warm uv cache, minutes with a cold one
LOAD = """
import importlib.metadata, importlib.util, json, sys
import pandas as pd
assert importlib.util.find_spec("kampai") is None, "kampai importable before the model is loaded"
try:
    importlib.metadata.version("kampai-gridsearch")
    raise SystemExit("kampai-gridsearch is installed in this environment")
except importlib.metadata.PackageNotFoundError:
    pass
import mlflow
model = mlflow.pyfunc.load_model("models:/taxifare@champion")
import kampai.transformers
rows = pd.read_csv(sys.argv[1], dtype={"key": "str", "pickup_datetime": "str"})
print(json.dumps({"predictions": [float(v) for v in model.predict(rows)], "transformers": kampai.transformers.__file__,
                  "mlflow": mlflow.__version__}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def champion(tmp_path_factory, cluster_address) -> dict:
    root = tmp_path_factory.mktemp("portable")
    config = {**copy.deepcopy(CONFIG), "cluster": {"address": cluster_address}, "log": str(root / "runs"), "cache": {"dir": None}}
    path = root / "search.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = gridsearch.run(path, progress=False)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    [promoted] = promote(result.log_path, top=1, tracking_uri=uri)
    trips = root / "trips.csv"
    synthetic_taxifare(200, seed=11).query("pickup_latitude > 40 and dropoff_latitude > 40").drop(columns=["fare_amount"]).to_csv(trips, index=False)
    here = predict("models:/taxifare@champion", trips, root / "here.csv", tracking_uri=uri)["fare_amount"].to_numpy()
    return {"root": root, "uri": uri, "trips": trips, "here": here, "promoted": promoted}


@pytest.fixture(scope="module")
def served(champion) -> Iterator[dict]:
    """``mlflow models serve --env-manager uv`` of the champion on 127.0.0.1, in its own environment root."""
    root = champion["root"]
    envs, port, output = root / "envs", _free_port(), root / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": champion["uri"], "MLFLOW_ENV_ROOT": str(envs), "UV_COMPILE_BYTECODE": "1",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    started = time.monotonic()
    with open(output, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/taxifare@champion",
                                    "--env-manager", "uv", "--workers", "1", "--host", "127.0.0.1", "--port", str(port)],
                                   cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow models serve exited with {process.returncode}:\n{output.read_text()[-4000:]}")
            if time.monotonic() - started > READY_TIMEOUT:
                pytest.fail(f"not serving after {READY_TIMEOUT} s:\n{output.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(1)
        [environment] = [p for p in envs.iterdir() if p.is_dir()]
        print(f"environment built and serving after {time.monotonic() - started:.0f} s: {environment}")
        yield {"url": url, "python": environment / "bin" / "python", "seconds": time.monotonic() - started}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        try:  # uvicorn left in the group after the leader exited
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_promoted_model_loads_from_the_registry_in_a_fresh_environment_without_this_project(champion, served, tmp_path):
    uv = Path(sys.executable).with_name("uv")  # a uv environment has no pip
    requirements = subprocess.run([str(uv), "pip", "freeze", "--python", str(served["python"])], capture_output=True, text=True,
                                  check=True, timeout=120)
    assert "kampai" not in requirements.stdout.lower() and "mlflow==" in requirements.stdout
    done = subprocess.run([str(served["python"]), "-I", "-c", LOAD, str(champion["trips"])], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, "MLFLOW_TRACKING_URI": champion["uri"]})
    assert done.returncode == 0, done.stderr[-4000:]
    there = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(there["predictions"], champion["here"], rtol=0, atol=1e-9)
    carried = Path(there["transformers"])  # the model's own copy of our code, not this checkout's
    assert carried.parts[-3:] == ("code", "kampai", "transformers.py") and Path(gridsearch.__file__).parents[1] not in carried.parents


def test_model_served_by_mlflow_in_its_own_environment_answers_the_same_over_http(champion, served):
    rows = pd.read_csv(champion["trips"], dtype={"key": "str", "pickup_datetime": "str"})
    body = json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}).encode()
    request = urllib.request.Request(served["url"] + "/invocations", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answered = json.loads(response.read())["predictions"]
    np.testing.assert_allclose(answered, champion["here"], rtol=0, atol=1e-9)
