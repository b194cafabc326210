"""The code version from train to pred: predict compares the model's code with its own, warns in one line or refuses.

The comparison itself on metadata as MLflow keeps it, then end to end: a model logged to a
real SQLite store with another code version, predicted from Python and from the command line.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from gridsearch.cli import main
from gridsearch.errors import GridsearchError
from gridsearch.registry.code import CodeVersionWarning, check_model_code
from gridsearch.registry.predict import predict
from kampai.data import load_dataset
from kampai.packaging import model_code
from kampai.pipeline import taxifare_pipeline
from kampai.provenance import CodeVersion, code_version
from kampai.registry import ModelRun, open_store

OTHER = {"git_sha": "0" * 40, "git_dirty": False, "package_version": "0.0.1"}


@pytest.fixture(scope="module")
def fitted():
    frame = load_dataset("synthetic-taxifare", rows=400, seed=5)
    X = frame.drop(columns=["fare_amount"])
    return taxifare_pipeline().fit(X, frame["fare_amount"]), X


@pytest.fixture(scope="module")
def code(fitted):
    return model_code(fitted[0])


def _metadata(code, version: dict, digest: str | None = None) -> dict:
    return {"code_version": version, "code_modules": list(code.sources), "code_digest": digest or code.digest}


def test_the_same_code_passes_silently(code):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_model_code("m", _metadata(code, code_version().as_dict()), code_version()) is None
        assert check_model_code("m", {"target": "fare_amount"}, code_version()) is None  # a model from before: nothing to compare


def test_another_commit_warns_in_one_line_naming_both(code):
    current = CodeVersion("a" * 40, False, "0.1.0")
    with pytest.warns(CodeVersionWarning) as caught:
        message = check_model_code("models:/taxifare@champion", _metadata(code, {**OTHER, "tag": "taxifare-v3"}), current)
    assert str(caught[0].message) == message and "\n" not in message
    assert message == ("model models:/taxifare@champion was trained by kampai-gridsearch 0.0.1 (000000000000), this is "
                       "kampai-gridsearch 0.1.0 (aaaaaaaaaaaa); its modules kampai, kampai.data, kampai.errors, "
                       "kampai.transformers are the same here (to predict with the model's code: git checkout taxifare-v3)")


def test_other_sources_under_the_same_version_are_a_difference_too(code):
    current = code_version()
    with pytest.warns(CodeVersionWarning, match=r"this is .*; its modules kampai, .* differ here \(to predict with"):
        check_model_code("m", _metadata(code, current.as_dict(), digest="0" * 16), current)


def test_strict_code_refuses(code):
    with pytest.raises(GridsearchError, match=r"^refused \(strict_code\): model m was trained by kampai-gridsearch 0\.0\.1"):
        check_model_code("m", _metadata(code, OTHER), code_version(), strict=True)


def test_predict_warns_or_refuses_for_a_model_of_other_code(fitted, tmp_path, capfd):
    model, X = fitted
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = ModelRun(key={"id": "old"}, name="old", model=model, X=X, metadata={"target": "fare_amount", "code_version": OTHER})
    registered = open_store(uri).log_model_run("oldcode", run)
    trips = tmp_path / "trips.csv"
    X.head(20).to_csv(trips, index=False)

    with pytest.warns(CodeVersionWarning, match=r"was trained by kampai-gridsearch 0\.0\.1 \(000000000000\), this is kampai-gridsearch "):
        written = predict(registered.model_uri, trips, tmp_path / "preds.csv", tracking_uri=uri)
    assert len(written) == 20
    with pytest.raises(GridsearchError, match=r"refused \(strict_code\)"):
        predict(registered.model_uri, trips, tmp_path / "never.csv", tracking_uri=uri, strict_code=True)
    assert not (tmp_path / "never.csv").exists()

    command = ["predict", "--model", registered.model_uri, "--input", str(trips), "--output", str(tmp_path / "cli.csv"), "--tracking-uri", uri]
    warned = subprocess.run([sys.executable, "-m", "gridsearch", *command], capture_output=True, text=True, timeout=300, check=False)
    lines = warned.stderr.strip().splitlines()  # a fresh process: what a user sees on stderr, nothing else
    assert warned.returncode == 0 and len(lines) == 1 and lines[0].startswith(f"warning: model {registered.model_uri} was trained by"), warned.stderr
    assert Path(tmp_path / "cli.csv").is_file()
    capfd.readouterr()
    status = main([*command, "--strict-code"])
    _, err = capfd.readouterr()
    assert status == 2 and err.startswith("error: refused (strict_code): model ") and err.count("\n") == 1, err
