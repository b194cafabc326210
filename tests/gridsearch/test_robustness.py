"""Faults and bad inputs that used to get through: each ends in the promised behaviour."""

from __future__ import annotations

import subprocess
import sys
import textwrap
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
        f"error: {config}: pipeline: subprocess.run is not a scikit-learn estimator class (a BaseEstimator subclass); "
        "name one, e.g. sklearn.linear_model.Ridge"]
