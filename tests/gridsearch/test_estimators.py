"""The drop-in ``GridSearchCV`` / ``RandomizedSearchCV``: scikit-learn's results, on the session's cluster."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from distributed import Client
from scipy.stats import loguniform, randint
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import Ridge
from sklearn.metrics import make_scorer, mean_absolute_error
from sklearn.model_selection import GridSearchCV as SklearnGridSearchCV
from sklearn.model_selection import GroupKFold, KFold
from sklearn.model_selection import RandomizedSearchCV as SklearnRandomizedSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

import gridsearch
from gridsearch.log.runlog import read_log

ROWS = 240
CV = KFold(3, shuffle=True, random_state=0)
GRID = {"prep__num__with_std": [True, False], "model__alpha": [0.1, 10.0]}
# scoring=None scores with the pipeline's own score(), a named scorer with scikit-learn's scorer:
# both let the engine share the prefix and split the ColumnTransformer into raw stages.
SCORINGS = pytest.mark.parametrize("scoring", [None, "r2"], ids=["estimator-score", "named-scorer"])
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, pd.Series]:
    """A tiny regression table: two numeric columns of different scales and a categorical one."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=ROWS), "b": rng.normal(5, 30, size=ROWS), "cat": rng.choice(list("pqrs"), size=ROWS)})
    effect = X["cat"].map({"p": 0.0, "q": 1.0, "r": 3.0, "s": -2.0}).to_numpy()
    y = pd.Series(2 * X["a"] - 0.05 * X["b"] + effect + rng.normal(size=ROWS), name="y")
    return X, y


@pytest.fixture(scope="module")
def numeric(frame: tuple[pd.DataFrame, pd.Series]) -> tuple[np.ndarray, np.ndarray]:
    """The numeric columns of :func:`frame` as arrays."""
    X, y = frame
    return X[["a", "b"]].to_numpy(), y.to_numpy()


def pipeline() -> Pipeline:
    """A ColumnTransformer prefix (scaled numbers, one-hot category) and a Ridge."""
    prep = ColumnTransformer([("num", StandardScaler(), ["a", "b"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["cat"])])
    return Pipeline([("prep", prep), ("model", Ridge())])


def assert_same_results(ours: Any, theirs: Any, atol: float = 1e-9) -> None:
    """Every ``cv_results_`` key but times, and the ``best_*`` attributes, equal scikit-learn's."""
    expected, got = theirs.cv_results_, ours.cv_results_
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        if key.endswith("_time"):
            continue
        if key == "params":
            assert got[key] == value
        elif key.startswith("param_"):
            assert got[key].tolist() == value.tolist(), key
            assert np.ma.getmaskarray(got[key]).tolist() == np.ma.getmaskarray(value).tolist(), key
        elif key.startswith("rank_"):
            np.testing.assert_array_equal(got[key], value, err_msg=key)
        else:
            np.testing.assert_allclose(got[key], value, rtol=0, atol=atol, err_msg=key)
    for name in ("best_index_", "best_params_"):
        assert getattr(ours, name, None) == getattr(theirs, name, None), name
    assert hasattr(ours, "best_score_") == hasattr(theirs, "best_score_")
    if hasattr(theirs, "best_score_"):
        assert ours.best_score_ == pytest.approx(theirs.best_score_, abs=atol)


def both(estimator: Any, grid: Mapping[str, Any], X: Any, y: Any, client: Client | str, *, fit_params: Mapping[str, Any] | None = None,
         cache: Path | None = None, **kwargs: Any) -> tuple[Any, Any]:
    """``(ours, scikit-learn's)`` GridSearchCV fitted alike: ``fit_params`` go to both fits, ``cache`` to ours."""
    fit_params = fit_params or {}
    kwargs.setdefault("cv", CV)
    ours = gridsearch.GridSearchCV(estimator, grid, client=client, cache=cache, **kwargs).fit(X, y, **fit_params)
    theirs = SklearnGridSearchCV(estimator, grid, **kwargs).fit(X, y, **fit_params)
    return ours, theirs


@SCORINGS
def test_pipeline_with_shared_prefix_scores_as_sklearn(client: Client, frame: tuple[pd.DataFrame, pd.Series], scoring: str | None) -> None:
    X, y = frame
    ours, theirs = both(pipeline(), GRID, X, y, client, scoring=scoring)
    assert_same_results(ours, theirs)
    assert len(set(np.round(theirs.cv_results_["mean_test_score"], 6))) == 4  # the prefix parameter matters
    np.testing.assert_allclose(ours.best_estimator_.predict(X), theirs.best_estimator_.predict(X), rtol=0, atol=1e-9)


def refit_simplest(cv_results: Mapping[str, Any]) -> int:
    """The largest alpha among the candidates within one std of the best r2 (a refit callable)."""
    means, stds = cv_results["mean_test_r2"], cv_results["std_test_r2"]
    best = int(np.argmax(means))
    near = np.flatnonzero(means >= means[best] - stds[best])
    alphas = np.array([params["model__alpha"] for params in cv_results["params"]])
    return int(near[np.argmax(alphas[near])])


@pytest.mark.parametrize(
    "options",
    [
        {"scoring": ["r2", "neg_mean_absolute_error"], "refit": "neg_mean_absolute_error"},
        {"scoring": {"r2": "r2", "mae": make_scorer(mean_absolute_error, greater_is_better=False)}, "refit": "mae"},
        {"scoring": ["r2", "neg_mean_absolute_error"], "refit": refit_simplest},
        {"scoring": "r2", "return_train_score": True},
        {"scoring": {"r2": "r2", "mae": "neg_mean_absolute_error"}, "refit": "r2", "return_train_score": True},
    ],
    ids=["list-refit-name", "dict-refit-name", "refit-callable", "train-scores", "multimetric-train-scores"],
)
def test_scoring_and_refit_options_match_sklearn(client: Client, frame: tuple[pd.DataFrame, pd.Series], options: dict[str, Any]) -> None:
    X, y = frame
    grid = {"prep__num__with_std": [True, False], "model__alpha": [0.1, 10.0, 300.0]}
    ours, theirs = both(pipeline(), grid, X, y, client, **options)
    assert_same_results(ours, theirs)
    if options.get("return_train_score"):
        assert any(key.startswith("split0_train_") for key in ours.cv_results_)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=0, atol=1e-9)


@SCORINGS
@pytest.mark.parametrize("error_score", [np.nan, -5.0], ids=["nan", "number"])
@pytest.mark.parametrize("bad", [{"model__alpha": [-1.0]}, {"prep__num__with_std": ["yes"]}], ids=["final-step", "prefix"])
def test_failing_candidate_scores_error_score_as_sklearn(client: Client, frame: tuple[pd.DataFrame, pd.Series], scoring: str | None,
                                                         error_score: float, bad: dict[str, list[Any]]) -> None:
    X, y = frame
    grid = [{"prep__num__with_std": [True], "model__alpha": [1.0, 10.0]}, {"prep__num__with_std": [True], "model__alpha": [1.0], **bad}]
    with pytest.warns(FitFailedWarning, match="3 fits failed out of a total of 9"):
        ours = gridsearch.GridSearchCV(pipeline(), grid, scoring=scoring, cv=CV, error_score=error_score, return_train_score=True,
                                       client=client).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitFailedWarning)
        theirs = SklearnGridSearchCV(pipeline(), grid, scoring=scoring, cv=CV, error_score=error_score, return_train_score=True).fit(X, y)
    assert_same_results(ours, theirs)
    failed = ours.cv_results_["split0_test_score"][2]
    assert np.isnan(failed) if np.isnan(error_score) else failed == error_score


FINAL_FAILS = {"model__alpha": [1.0, -1.0]}
PREFIX_FAILS = {"prep__num__with_std": [True, "yes"]}


@pytest.mark.parametrize(("scoring", "bad"), [
    pytest.param(None, FINAL_FAILS, id="final-step-estimator-score"),
    pytest.param("r2", FINAL_FAILS, id="final-step-named-scorer"),
    pytest.param(None, PREFIX_FAILS, id="prefix-estimator-score"),
    pytest.param("r2", PREFIX_FAILS, id="prefix-named-scorer"),
])
def test_error_score_raise_raises_the_candidate_exception(client: Client, frame: tuple[pd.DataFrame, pd.Series], scoring: str | None,
                                                          bad: dict[str, list[Any]]) -> None:
    X, y = frame
    search = gridsearch.GridSearchCV(pipeline(), bad, scoring=scoring, cv=CV, error_score="raise", client=client)
    with pytest.raises(InvalidParameterError, match=next(iter(bad)).rpartition("__")[2]) as raised:
        search.fit(X, y)
    assert raised.type is InvalidParameterError


@SCORINGS
def test_sample_weight_routed_to_pipeline_step_scores_as_sklearn(client: Client, frame: tuple[pd.DataFrame, pd.Series],
                                                                 scoring: str | None) -> None:
    X, y = frame
    weight = np.random.default_rng(1).uniform(0.05, 5.0, size=ROWS)
    ours, theirs = both(pipeline(), GRID, X, y, client, scoring=scoring, fit_params={"model__sample_weight": weight})
    assert_same_results(ours, theirs)
    unweighted = SklearnGridSearchCV(pipeline(), GRID, scoring=scoring, cv=CV).fit(X, y)
    assert not np.allclose(unweighted.cv_results_["split0_test_score"], ours.cv_results_["split0_test_score"])


def test_sample_weight_on_bare_estimator_scores_as_sklearn(client: Client, numeric: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = numeric
    weight = np.random.default_rng(1).uniform(0.05, 5.0, size=ROWS)
    ours, theirs = both(Ridge(), {"alpha": [0.1, 100.0, 3000.0]}, X, y, client, fit_params={"sample_weight": weight})
    assert_same_results(ours, theirs)
    unweighted = SklearnGridSearchCV(Ridge(), {"alpha": [0.1, 100.0, 3000.0]}, cv=CV).fit(X, y)
    assert not np.allclose(unweighted.cv_results_["split0_test_score"], ours.cv_results_["split0_test_score"])


def test_groups_go_to_the_splitter(client: Client, frame: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = frame
    groups = np.arange(ROWS) % 7
    ours, theirs = both(pipeline(), GRID, X, y, client, scoring="r2", cv=GroupKFold(3), fit_params={"groups": groups})
    assert_same_results(ours, theirs)


@pytest.mark.parametrize("as_generator", [False, True], ids=["list", "generator"])
def test_cv_as_iterable_of_index_pairs(client: Client, frame: tuple[pd.DataFrame, pd.Series], as_generator: bool) -> None:
    X, y = frame
    order = np.random.default_rng(2).permutation(ROWS)
    pairs = [(order[:150], order[150:]), (order[90:], order[:90]), (order[::2], order[1::2])]
    ours = gridsearch.GridSearchCV(pipeline(), GRID, cv=(pair for pair in pairs) if as_generator else pairs, client=client).fit(X, y)
    theirs = SklearnGridSearchCV(pipeline(), GRID, cv=pairs).fit(X, y)
    assert ours.n_splits_ == 3
    assert_same_results(ours, theirs)


@pytest.mark.parametrize("kind", ["numpy", "pandas", "sparse", "lists"])
def test_input_containers_score_as_sklearn(client: Client, numeric: tuple[np.ndarray, np.ndarray], kind: str) -> None:
    X, y = numeric
    X, y = {
        "numpy": (X, y),
        "pandas": (pd.DataFrame(X, columns=["a", "b"]), pd.Series(y)),
        "sparse": (sp.csr_matrix(X), y),
        "lists": (X.tolist(), y.tolist()),
    }[kind]
    estimator = Pipeline([("scale", StandardScaler(with_mean=False)), ("model", Ridge())])
    grid = {"scale__with_std": [True, False], "model__alpha": [0.1, 1000.0]}
    ours, theirs = both(estimator, grid, X, y, client)
    assert_same_results(ours, theirs)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=0, atol=1e-9)


def test_forest_along_n_estimators_is_fitted_once_and_scores_exactly_as_sklearn(client: Client, numeric: tuple[np.ndarray, np.ndarray],
                                                                                tmp_path: Path) -> None:
    X, y = numeric
    forest = RandomForestRegressor(max_depth=4, random_state=0)
    ours = gridsearch.GridSearchCV(forest, {"n_estimators": [10, 30]}, cv=CV, client=client, log=tmp_path).fit(X, y)
    theirs = SklearnGridSearchCV(forest, {"n_estimators": [10, 30]}, cv=CV).fit(X, y)
    assert_same_results(ours, theirs, atol=0.0)
    (log,) = tmp_path.iterdir()
    records = read_log(log)
    shared = records[records["params"].map(json.loads).map(lambda params: params["n_estimators"]) == 10]
    assert len(shared) == 3
    assert shared["shared_fit"].notna().all()  # scored on the 30-tree forest's first 10 trees, not fitted again
    assert (shared["fit_time"] == 0).all()


def test_randomized_search_samples_and_scores_as_sklearn(client: Client, frame: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = frame
    space = {"model__alpha": loguniform(1e-2, 1e3), "model__max_iter": randint(50, 500), "prep__num__with_std": [True, False]}
    ours = gridsearch.RandomizedSearchCV(pipeline(), space, n_iter=5, cv=CV, random_state=3, client=client).fit(X, y)
    theirs = SklearnRandomizedSearchCV(pipeline(), space, n_iter=5, cv=CV, random_state=3).fit(X, y)
    assert len({params["model__alpha"] for params in ours.cv_results_["params"]}) == 5
    assert_same_results(ours, theirs)


def test_clone_and_get_params_keep_the_engine_arguments(tmp_path: Path, cluster_address: str) -> None:
    search = gridsearch.GridSearchCV(Ridge(alpha=3.0), {"alpha": [1.0]}, scoring="r2", refit=False, cv=4, error_score=-1.0,
                                     client=cluster_address, cache=tmp_path / "memo", log=tmp_path / "runs")
    params = search.get_params(deep=False)
    assert {key: params[key] for key in ("client", "cache", "log")} == {"client": cluster_address, "cache": tmp_path / "memo",
                                                                         "log": tmp_path / "runs"}
    copy = clone(search)
    assert type(copy) is gridsearch.GridSearchCV
    assert copy.get_params(deep=False).keys() == params.keys()
    assert {key: value for key, value in copy.get_params(deep=False).items() if key != "estimator"} == {
        key: value for key, value in params.items() if key != "estimator"}
    assert copy.estimator is not search.estimator and copy.estimator.get_params() == search.estimator.get_params()


@pytest.mark.parametrize("by", [
    "address",
    "client",
])
def test_fitted_search_survives_pickle(client: Client, cluster_address: str, numeric: tuple[np.ndarray, np.ndarray], by: str) -> None:
    X, y = numeric
    search = gridsearch.GridSearchCV(Ridge(), {"alpha": [0.1, 100.0]}, cv=CV, client=cluster_address if by == "address" else client).fit(X, y)
    restored = pickle.loads(pickle.dumps(search))
    np.testing.assert_array_equal(restored.predict(X), search.predict(X))
    assert restored.best_params_ == search.best_params_
    assert restored.cv_results_["params"] == search.cv_results_["params"]


def test_search_nested_in_a_pipeline_fits_and_predicts(client: Client, numeric: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = numeric
    inner = gridsearch.GridSearchCV(Ridge(), {"alpha": [0.1, 100.0]}, cv=CV, client=client)
    outer = Pipeline([("scale", StandardScaler()), ("search", inner)]).fit(X, y)
    reference = Pipeline([("scale", StandardScaler()), ("search", SklearnGridSearchCV(Ridge(), {"alpha": [0.1, 100.0]}, cv=CV))]).fit(X, y)
    np.testing.assert_allclose(outer.predict(X), reference.predict(X), rtol=0, atol=1e-9)
    assert outer.named_steps["search"].best_params_ == reference.named_steps["search"].best_params_


def test_repr_html_is_html(cluster_address: str) -> None:
    html = gridsearch.GridSearchCV(pipeline(), GRID, client=cluster_address)._repr_html_()
    assert isinstance(html, str)
    assert html.lstrip().startswith("<") and "GridSearchCV" in html and "Ridge" in html


def _logged_records(log: Path) -> int:
    """Records in the only search log under ``log``."""
    (directory,) = [path for path in log.iterdir() if path.is_dir()]
    return len(read_log(directory))


def test_log_resumes_a_finished_search_without_new_fits(client: Client, frame: tuple[pd.DataFrame, pd.Series], tmp_path: Path) -> None:
    X, y = frame
    first = gridsearch.GridSearchCV(pipeline(), GRID, cv=CV, scoring=["r2", "neg_mean_absolute_error"], refit="r2", client=client,
                                    log=tmp_path).fit(X, y)
    recorded = _logged_records(tmp_path)
    assert recorded == 4 * 3
    second = gridsearch.GridSearchCV(pipeline(), GRID, cv=CV, scoring=["r2", "neg_mean_absolute_error"], refit="r2", client=client,
                                     log=tmp_path).fit(X, y)
    assert _logged_records(tmp_path) == recorded
    assert sorted(second.cv_results_) == sorted(first.cv_results_)
    for key, value in first.cv_results_.items():
        if key == "params":
            assert second.cv_results_[key] == value
        else:
            np.testing.assert_array_equal(second.cv_results_[key], value, err_msg=key)


def test_log_queries_read_a_search_log(client: Client, frame: tuple[pd.DataFrame, pd.Series], tmp_path: Path) -> None:
    X, y = frame
    search = gridsearch.GridSearchCV(pipeline(), GRID, cv=CV, scoring=["r2", "neg_mean_absolute_error"], refit="r2", client=client,
                                     log=tmp_path / "runs").fit(X, y)
    (log,) = (tmp_path / "runs").iterdir()
    board = gridsearch.top(log, n=2)
    assert board.metric == "r2"
    assert len(board.table) == 2 and len(board.results) == 4
    assert board.table["params"].iloc[0] == search.best_params_
    assert board.table["mean_test_r2"].iloc[0] == pytest.approx(search.best_score_, abs=1e-12)
    detail = gridsearch.show(log, board.table["candidate_id"].iloc[0][:8])
    assert dict(detail.params) == search.best_params_
    assert list(detail.records["fold"]) == [0, 1, 2]
    exported = gridsearch.export(tmp_path / "runs", tmp_path / "out" / "results.csv")
    table = pd.read_csv(exported.path)
    assert exported.rows == len(table) == 4
    np.testing.assert_allclose(sorted(table["mean_test_r2"]), sorted(search.cv_results_["mean_test_r2"]), rtol=0, atol=1e-12)
    assert json.loads((log / "refit" / "inputs.json").read_text())["rows"]  # promotable: tests/gridsearch/test_promote_class_log.py


def _memo_entries(memo: Path) -> list[Path]:
    """The stored stage outputs of a memo directory (joblib writes one ``output.pkl`` per entry)."""
    return sorted(path.relative_to(memo) for path in memo.rglob("output.pkl"))


@pytest.mark.parametrize("scoring", [
    None,
    "r2",
], ids=["estimator-score", "named-scorer"])
def test_cache_memoises_the_column_transformer_across_searches(client: Client, frame: tuple[pd.DataFrame, pd.Series],
                                                               tmp_path: Path, scoring: str | None) -> None:
    X, y = frame
    memo = tmp_path / "memo"
    gridsearch.GridSearchCV(pipeline(), {"model__alpha": [0.1, 1.0]}, scoring=scoring, cv=CV, client=client, cache=memo).fit(X, y)
    entries = _memo_entries(memo)
    assert len(entries) == 2 * 3  # two ColumnTransformer branches, three folds
    grid = {"model__alpha": [10.0, 300.0], "model__fit_intercept": [True, False]}
    ours, theirs = both(pipeline(), grid, X, y, client, scoring=scoring, cache=memo)
    assert_same_results(ours, theirs)
    assert _memo_entries(memo) == entries  # the second search read its stages from the memo


SESSION_SCRIPT = """
import json
import numpy as np
from distributed import Client
from sklearn.linear_model import Ridge
import gridsearch
from gridsearch.estimators import session


def scheduler_address():
    (client,) = session._clients.values()
    return client.scheduler.address


def transitions(client):
    return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)


if __name__ == "__main__":
    try:
        Client.current()
    except ValueError:
        pass
    else:
        raise SystemExit("a default client exists")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 2)), rng.normal(size=60)
    gridsearch.GridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=3).fit(X, y)
    first = scheduler_address()
    before = transitions(session._clients[""])
    gridsearch.GridSearchCV(Ridge(), {"alpha": [10.0, 100.0]}, cv=3).fit(X, y)
    after = transitions(session._clients[""])
    print(json.dumps({"first": first, "second": scheduler_address(), "clients": len(session._clients), "ran": after - before}))
"""


def test_client_none_reuses_one_local_cluster_per_process(tmp_path: Path) -> None:
    script = tmp_path / "two_fits.py"
    script.write_text(textwrap.dedent(SESSION_SCRIPT))
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["first"] == seen["second"]
    assert seen["first"].startswith("tcp://127.0.0.1:")
    assert seen["clients"] == 1
    assert seen["ran"] > 0  # the second fit's tasks ran on that cluster


def test_an_unknown_parameter_is_scikit_learns_error_before_any_work(client: Client, numeric: tuple[np.ndarray, np.ndarray],
                                                                     tmp_path: Path) -> None:
    """As scikit-learn raises it (``set_params`` outside the fits' failure handling), and no fit is logged."""
    X, y = numeric
    search = gridsearch.GridSearchCV(Ridge(), [{"alpha": [1.0]}, {"alpah": [1.0]}], cv=CV, client=client, log=tmp_path / "runs")
    with pytest.raises(ValueError, match="Invalid parameter 'alpah' for estimator Ridge"):
        search.fit(X, y)
    assert not (tmp_path / "runs").exists()
