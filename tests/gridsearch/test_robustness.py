"""Faults and bad inputs that used to get through: each ends in the promised behaviour."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.model_selection import GridSearchCV

import gridsearch
from kampai.errors import KampaiError
from kampai.pipeline import make_estimator

REPO = Path(__file__).resolve().parents[2]
USER_MODULE = textwrap.dedent('''
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline

    from kampai.pipeline import taxifare_features


    class Doubler(TransformerMixin, BaseEstimator):
        """Stateless, with no fitted attribute: as many hand-written transformers are."""

        def __init__(self, factor=2.0):
            self.factor = factor

        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return X * self.factor


    def pipeline():
        return Pipeline([("features", taxifare_features()), ("double", Doubler()), ("model", Ridge())])
''')
SMALL = {"data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": 900, "seed": 1},
         "search": {"params": {"double__factor": [1.0, 3.0], "model__alpha": [0.1, 1.0]}},
         "cv": {"folds": 2, "shuffle": True, "seed": 0}, "scoring": ["r2"], "cache": {"dir": None}}


def _user_module(tmp_path: Path) -> Path:
    code = tmp_path / "user_code"
    code.mkdir()
    (code / "mypipe.py").write_text(USER_MODULE)
    return code


def test_three_searches_in_one_process_keep_the_users_module(tmp_path):
    """The notebook case: a LocalCluster per search, each shipping the user's module; the client's module is never replaced."""
    code = _user_module(tmp_path)
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "pipeline": {"factory": "mypipe:pipeline"}, "log": str(tmp_path / "runs"),
                                      "cluster": {"workers": 1, "dashboard": None}}))
    script = textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {str(code)!r})
        import gridsearch, mypipe
        if __name__ == "__main__":
            source = mypipe.__file__
            for _ in range(3):
                result = gridsearch.run({str(config)!r}, progress=False)
                assert result.n_errors == 0, gridsearch.read_log(result.log_path)["error"].dropna().iloc[0]
                assert mypipe.__file__ == source and sys.modules["mypipe"] is mypipe, mypipe.__file__
            print("three searches ok")
    ''')
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and "three searches ok" in done.stdout, done.stderr[-3000:]


def test_a_stateless_user_transformer_in_the_prefix_scores_as_in_gridsearchcv(tmp_path, cluster_address, monkeypatch):
    monkeypatch.syspath_prepend(str(_user_module(tmp_path)))
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "pipeline": {"factory": "mypipe:pipeline"}, "log": str(tmp_path / "runs"),
                                      "cluster": {"address": cluster_address}}))
    search = gridsearch.prepare_search(config)
    result = gridsearch.run(config, progress=False)
    assert result.n_errors == 0
    reference = GridSearchCV(search.pipeline, SMALL["search"]["params"], scoring=["r2"], refit=False, cv=list(search.dataset.folds)).fit(
        search.dataset.X, search.dataset.y)
    np.testing.assert_allclose(result.cv_results["mean_test_r2"], reference.cv_results_["mean_test_r2"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("path", ["subprocess.run", "os.system", "builtins.print", "sklearn.base.clone", "json.JSONDecoder"])
def test_an_import_path_that_names_no_estimator_class_is_refused_before_it_is_called(path):
    with pytest.raises(KampaiError, match=rf"{path} is not a scikit-learn estimator class"):
        make_estimator(path, {"args": ["touch", "/tmp/never"], "shell": True})


def test_a_step_that_names_a_function_is_refused_on_dry_run_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    config = tmp_path / "search.yaml"
    steps = [{"name": "run", "estimator": "subprocess.run", "params": {"args": f"touch {marker}", "shell": True}},
             {"name": "model", "estimator": "sklearn.linear_model.Ridge"}]
    config.write_text(yaml.safe_dump({**SMALL, "pipeline": {"steps": steps}, "search": {"params": {"model__alpha": [1.0]}}}))
    done = subprocess.run([sys.executable, "-m", "gridsearch", "run", str(config), "--dry-run"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and not marker.exists()
    assert done.stderr.strip().splitlines() == [
        (f"error: {config}: pipeline: subprocess.run is not a scikit-learn estimator class (a BaseEstimator subclass); "
         "name one, e.g. sklearn.linear_model.Ridge")]


def _config(tmp_path: Path, **sections) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"},
                                    "search": {"params": {"model__alpha": [1.0]}}, "log": str(tmp_path / "runs"), **sections}))
    return path


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    path = _config(tmp_path)
    path.write_text(path.read_text() + "cv:\n  folds: 3\n")
    first = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("cv:"))
    last = len(path.read_text().splitlines()) - 1
    with pytest.raises(gridsearch.ConfigError, match=rf"search.yaml: cv: given twice, at lines {first} and {last}; keep one"):
        gridsearch.load_config(path)
    nested = tmp_path / "nested.yaml"
    nested.write_text("scoring: r2\nsearch:\n  params: {model__alpha: [1.0]}\n  seed: 1\n  seed: 2\n")
    with pytest.raises(gridsearch.ConfigError, match="nested.yaml: seed: given twice, at lines 4 and 5"):
        gridsearch.load_config(nested)


def test_a_hold_out_that_leaves_too_few_rows_is_reported_under_test_size(tmp_path):
    path = _config(tmp_path, data={**SMALL["data"], "rows": 5, "clean": False, "test_size": 0.9})
    with pytest.raises(gridsearch.ConfigError, match=r"data.test_size: holding out 5 of 5 rows leaves 0 for 2 folds; lower data.test_size"):
        gridsearch.prepare_search(path)


def test_a_malformed_scheduler_address_is_one_line_and_leaves_no_log_directory(tmp_path):
    done = subprocess.run([sys.executable, "-m", "gridsearch", "run", str(_config(tmp_path)), "--scheduler", "notanaddress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: cluster.address: missing port number in address 'notanaddress'; give a scheduler address such as tcp://127.0.0.1:8786"]
    assert not (tmp_path / "runs").exists()


def test_no_dashboard_means_no_link_and_no_fixed_port(tmp_path, capsys):
    from gridsearch.execute.executor import open_client
    from gridsearch.search.config import ClusterConfig

    with open_client(ClusterConfig(address=None, workers=1, dashboard=None)) as client:
        assert client.cluster.scheduler.http_server.port != 8787
    gridsearch.run(_config(tmp_path, cluster={"workers": 1, "dashboard": None}), progress=True)
    out = capsys.readouterr().out
    assert "best r2 = " in out and "dashboard:" not in out


@pytest.mark.parametrize(("body", "message"), [
    ("def pipeline():\n    raise RuntimeError('no model today')\n", r"badfactory:pipeline\(\) raised RuntimeError: no model today$"),
    ("def pipeline(precision):\n    return None\n",
     (r"badfactory:pipeline\(\) raised TypeError: pipeline\(\) missing 1 required positional argument: 'precision' "
      r"\(a factory is called with no arguments\)$")),
    ("pipeline = 3\n", r"badfactory:pipeline is not a function returning an estimator \(found int\)$"),
])
def test_a_factory_that_fails_is_a_one_line_error(tmp_path, monkeypatch, body, message):
    (tmp_path / "badfactory.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "badfactory", raising=False)
    with pytest.raises(gridsearch.ConfigError, match=rf"search.yaml: pipeline: {message}"):
        gridsearch.prepare_search(_config(tmp_path, pipeline={"factory": "badfactory:pipeline"}))


def test_a_text_fare_with_cleaning_is_a_one_line_error(tmp_path):
    from kampai.data import synthetic_taxifare

    data = tmp_path / "trips.csv"
    synthetic_taxifare(50, seed=0).astype({"fare_amount": str}).assign(fare_amount=lambda f: "$" + f["fare_amount"]).to_csv(data, index=False)
    with pytest.raises(gridsearch.ConfigError, match=r"data.source: fare_amount must be numeric to clean taxi-fare data, found dtype"):
        gridsearch.prepare_search(_config(tmp_path, data={"source": str(data), "target": "fare_amount"}))


def test_export_where_no_directory_can_be_made_is_one_line(tmp_path):
    from gridsearch.log.records import FitRecord, SearchMeta, Status
    from gridsearch.log.runlog import RunLog

    with RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 1)) as log:
        log.append([FitRecord(search_id="s", candidate_id="a", params="{}", fold=0, status=Status.OK, scores={"r2": 0.5})])
    (tmp_path / "file").write_text("")
    done = subprocess.run([sys.executable, "-m", "gridsearch", "export", str(tmp_path / "s"), "--to", str(tmp_path / "file" / "out.csv")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: --to: cannot create directory {tmp_path / 'file'} (File exists); choose a writable place"]


def test_string_class_labels_score_as_in_gridsearchcv(tmp_path, cluster_address):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    labels = np.where(X @ [1.0, -1.0, 0.5] + rng.normal(scale=0.5, size=400) > 0, "yes", "no")
    data = tmp_path / "churn.csv"
    import pandas as pd

    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "churn": labels}).to_csv(data, index=False)
    steps = [{"name": "scale", "estimator": "sklearn.preprocessing.StandardScaler"},
             {"name": "model", "estimator": "sklearn.linear_model.LogisticRegression"}]
    grid = {"scale__with_mean": [True, False], "model__C": [0.01, 1.0]}
    path = _config(tmp_path, data={"source": str(data), "target": "churn"}, pipeline={"steps": steps}, search={"params": grid},
                   scoring=["accuracy", "f1_macro"], cv={"folds": 3, "shuffle": True, "seed": 0}, cluster={"address": cluster_address})
    search = gridsearch.prepare_search(path)
    result = gridsearch.run(path, progress=False)
    assert result.n_errors == 0
    reference = GridSearchCV(search.pipeline, grid, scoring=["accuracy", "f1_macro"], refit=False, cv=list(search.dataset.folds)).fit(
        search.dataset.X, search.dataset.y)
    for scorer in ("accuracy", "f1_macro"):
        np.testing.assert_allclose(result.cv_results[f"mean_test_{scorer}"], reference.cv_results_[f"mean_test_{scorer}"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("damage", ["cut 1 byte", "cut 100 bytes", "cut half", "append garbage"])
def test_a_torn_compacted_part_keeps_every_message_before_the_tear(tmp_path, monkeypatch, damage):
    from gridsearch.log import runlog
    from gridsearch.log.records import FitRecord, SearchMeta, Status
    from gridsearch.log.runlog import RunLog, read_log

    monkeypatch.setattr(runlog, "COMPACT_ROWS", 60)
    with RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 1)) as log:
        for i in range(runlog.COMPACT_MIN_MESSAGES + 36):  # 100 messages of 6 records, compacted into 10 of 60
            log.append([FitRecord(search_id="s", candidate_id=f"c{i:03d}-{j}", params="{}", fold=0, status=Status.OK, scores={"r2": 0.5})
                        for j in range(6)])
    part = next((tmp_path / "s").glob("part-*.arrows"))
    data = part.read_bytes()
    damaged = {"cut 1 byte": data[:-1], "cut 100 bytes": data[:-100], "cut half": data[: len(data) // 2],
               "append garbage": data + b"\xff" * 1000}[damage]
    part.write_bytes(damaged)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = read_log(tmp_path / "s")
    ids = list(records["candidate_id"])
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # a clean prefix of what was written
    if damage == "append garbage":
        assert len(records) == 600 and not caught
    else:
        assert 600 - len(records) <= 60 + (300 if damage == "cut half" else 0)
        assert len(records) % 60 == 0 and len(records) > 0
        assert len(caught) == 1 and f"run log part {part.name} ends in a partial record" in str(caught[0].message)


def test_a_candidate_that_kills_its_worker_fails_alone_and_the_others_are_scored(tmp_path, monkeypatch):
    import dask

    (tmp_path / "killer.py").write_text(textwrap.dedent('''
        import os

        from sklearn.linear_model import Ridge


        class Suicidal(Ridge):
            """Kills the process fitting it when alpha is 13, as a segfaulting native library would."""

            def fit(self, X, y, sample_weight=None):
                if self.alpha == 13.0:
                    os._exit(1)
                return super().fit(X, y, sample_weight)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = {"model": ["killer.Suicidal"], "model__alpha": [0.1, 1.0, 13.0, 30.0, 100.0, 300.0]}
    path = _config(tmp_path, search={"params": grid}, cluster={"workers": 2, "dashboard": None})
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # one death makes a KilledWorker: a quicker test
        result = gridsearch.run(path, progress=False)
    log = gridsearch.read_log(result.log_path)
    assert len(log) == result.n_fits == 12 and not log.duplicated(["candidate_id", "fold"]).any()
    killer = log["params"].str.contains('"model__alpha": 13.0')
    assert set(log.loc[~killer, "status"]) == {"ok"}, log.loc[~killer, ["params", "status", "error"]]
    assert set(log.loc[killer, "status"]) == {"error"}
    assert log.loc[killer, "error"].str.startswith("the worker fitting this candidate died, on every worker that tried it").all()
    assert result.n_errors == 2


def test_a_memo_that_cannot_be_used_is_one_line_and_never_a_candidate_failure(tmp_path, cluster_address, capsys):
    (tmp_path / "not-a-directory").write_text("")
    memo = tmp_path / "not-a-directory" / "cache"
    path = _config(tmp_path, cache={"dir": str(memo)}, cluster={"address": cluster_address},
                   search={"params": {"features__geohash__encode__precision": [4, 5], "model__alpha": [1.0]}})
    result = gridsearch.run(path, progress=True)
    out = capsys.readouterr().out
    assert result.n_errors == 0 and set(gridsearch.read_log(result.log_path)["status"]) == {"ok"}
    memo_lines = [line for line in out.splitlines() if "stage memo" in line]
    assert memo_lines == [f"stage memo {memo} cannot be used (Not a directory); the stage was computed without it"]


def test_ctrl_c_in_a_terminal_prints_only_the_resume_line(tmp_path):
    """A terminal sends SIGINT to the whole process group, the LocalCluster's workers included."""
    import os
    import signal
    import time

    # 30 000 fits: still running long after its first records are written, however fast the engine gets
    path = _config(tmp_path, cluster={"workers": 2, "dashboard": None},
                   search={"params": {"features__geohash__encode__precision": [4, 5], "model__alpha": {"logspace": [-3, 3, 3000]}}})
    process = subprocess.Popen([sys.executable, "-m", "gridsearch", "run", str(path), "--quiet"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "runs").glob("*/part-*.arrows")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    log = next((tmp_path / "runs").iterdir())
    assert process.returncode == 130
    assert stderr.strip().splitlines() == [f"interrupted; every finished fit is in {log}. Resume with: python -m gridsearch run --resume {log}"]


def test_a_failing_scorer_does_not_erase_the_other_scores(tmp_path):
    from gridsearch.execute.tasks import FitSetup, Prepared, fit_batch
    from gridsearch.log.records import FitItem, RecordStamp, Status
    from gridsearch.search.plan import FitFamily

    search = gridsearch.prepare_search(_config(tmp_path, cluster={"address": None}, cache={"dir": None}))
    X_train, y_train, X_test, y_test = search.dataset.fold(0)
    numeric = Prepared(X_train.select_dtypes("number"), y_train, X_test.select_dtypes("number"), y_test, 0.0)
    family = [FitFamily("default", (FitItem("c", {}, "{}"),))]
    model = make_estimator("sklearn.linear_model.Ridge")
    [record] = fit_batch(numeric, 0, family, FitSetup.of(model, RecordStamp("s", "f", None, None, "0", ("r2", "roc_auc"), error_score=-1.0)))
    assert record.status is Status.OK and np.isfinite(record.scores["r2"]) and record.scores["roc_auc"] == -1.0
    assert "ScorerError: roc_auc failed, scored error_score: " in record.warnings
    [failed] = fit_batch(numeric, 0, family, FitSetup.of(model, RecordStamp("s", "f", None, None, "0", ("roc_auc",))))
    assert failed.status is Status.ERROR and failed.error


USER_STAGE = textwrap.dedent('''
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline

    from kampai.pipeline import taxifare_features


    class Squared(TransformerMixin, BaseEstimator):
        """A hand-written raw stage: the squared passenger count."""

        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return X.to_numpy(dtype=float) ** 2


    def pipeline():
        features = taxifare_features()
        features.transformers = [*features.transformers, ("squared", Squared(), ["passenger_count"])]
        return Pipeline([("features", features), ("model", Ridge())])
''')


@pytest.mark.parametrize("cluster", ["cluster_address", "module_real_cluster"], ids=["local-cluster", "shipped-to-real-workers"])
def test_a_user_module_raw_stage_is_memoised_and_prints_nothing(tmp_path, monkeypatch, capfd, request, cluster):
    """Issue 10 case 15: joblib could not hash a user's class re-imported from a scratch directory."""
    fixture = request.getfixturevalue(cluster)
    address = fixture if isinstance(fixture, str) else fixture.address
    code = tmp_path / "user_code"
    code.mkdir()
    (code / "mystage.py").write_text(USER_STAGE)
    monkeypatch.syspath_prepend(str(code))
    path = _config(tmp_path, pipeline={"factory": "mystage:pipeline"}, cache={"dir": str(tmp_path / "cache")},
                   cluster={"address": address}, search={"params": {"model__alpha": [0.1, 1.0]}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cold = gridsearch.run(path, progress=False)
        warm = gridsearch.run(path, progress=False, log=str(tmp_path / "again"))
    out, err = capfd.readouterr()
    assert cold.stages_computed == 2 * 4 and cold.stages_from_memo == 0  # time, distance, geohash, squared per fold
    assert warm.stages_from_memo == 2 * 4 and warm.stages_computed == 0
    assert (out, err) == ("", "") and [str(w.message) for w in caught] == []
    np.testing.assert_array_equal(warm.cv_results["mean_test_r2"], cold.cv_results["mean_test_r2"])
