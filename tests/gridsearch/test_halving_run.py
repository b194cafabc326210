"""``search.strategy: halving`` in the YAML: scikit-learn's rounds on the engine, every round in the search's one log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingGridSearchCV

import gridsearch
from gridsearch.log.records import SearchMeta
from gridsearch.search.prepare import prepare_search
from gridsearch.search.space import resolve, step_names

HALVING = {"strategy": "halving", "factor": 2, "seed": 3}
GRID = {"features__geohash__encode__precision": [4, 5], "model__alpha": [0.01, 0.1, 1.0, 10.0, 100.0]}


def test_a_halving_config_keeps_scikit_learns_rounds_and_scores(write_config: Callable[..., Path]) -> None:
    """Same candidates in each round, same n_resources, same scores (to 1e-9) as scikit-learn's HalvingGridSearchCV."""
    path = write_config(search={"params": GRID, **HALVING})
    result = gridsearch.run(path, progress=False)
    search = prepare_search(path)
    steps = step_names(search.pipeline)
    grid = [{name: [value] for name, value in resolve(candidate.params, steps).items()} for candidate in search.candidates]
    theirs = HalvingGridSearchCV(clone(search.pipeline), grid, factor=2, cv=list(search.dataset.folds), scoring="neg_root_mean_squared_error",
                                 refit=False, random_state=3).fit(search.dataset.X, search.dataset.y)
    ours = result.cv_results
    for key in ("iter", "n_resources"):
        np.testing.assert_array_equal(ours[key].to_numpy(), theirs.cv_results_[key], err_msg=key)
    assert [repr(p) for p in ours["params"]] == [repr(p) for p in theirs.cv_results_["params"]]
    np.testing.assert_allclose(ours["mean_test_neg_root_mean_squared_error"], theirs.cv_results_["mean_test_score"], rtol=0, atol=1e-9)
    assert np.isfinite(ours["mean_test_r2"]).all()  # the second scorer is recorded in every round
    last = ours["iter"] == ours["iter"].max()
    assert result.best_candidate_id == ours.loc[ours.loc[last, "mean_test_neg_root_mean_squared_error"].idxmax(), "candidate_id"]


def test_every_round_is_in_the_log_and_a_rerun_resumes_it(write_config: Callable[..., Path]) -> None:
    path = write_config(search={"params": GRID, **HALVING})
    result = gridsearch.run(path, progress=False)
    records = gridsearch.read_log(result.log_path)
    table = result.cv_results
    assert len(records) == len(table) * 3 and set(records["search_id"]) == {result.search_id}
    assert sorted(records["round"].unique()) == sorted(table["iter"].unique())
    assert records.groupby("round")["fit_rows"].max().is_monotonic_increasing
    assert SearchMeta.read(result.log_path).config["search"]["strategy"] == "halving"  # --resume and promote rebuild it
    again = gridsearch.run(path, progress=False)
    assert len(gridsearch.read_log(result.log_path)) == len(records)
    np.testing.assert_array_equal(again.cv_results["mean_test_r2"], table["mean_test_r2"])


def test_a_grid_search_of_the_same_config_has_another_log(write_config: Callable[..., Path]) -> None:
    path = write_config(search={"params": GRID})
    assert prepare_search(path).search_id != prepare_search(write_config(search={"params": GRID, **HALVING})).search_id


@pytest.mark.parametrize(("search", "problem"), [
    ({"factor": 2}, "search.factor: a setting of successive halving: set search.strategy: halving"),
    ({**HALVING, "resource": "model__alpah"}, "search.resource: 'model__alpah' is not a parameter of the pipeline; did you mean"),
    ({**HALVING, "resource": "model__alpha", "max_resources": 10}, "search.resource: 'model__alpha' is also searched"),
    ({**HALVING, "resource": "model__max_iter"}, "search.max_resources: give the largest model__max_iter"),
    ({**HALVING, "factor": 1}, "search.factor: expected"),
    ({**HALVING, "resource": "model__n_estimators", "max_resources": 9}, "search.resource: 'model__n_estimators' is not a parameter of the pipeline"),
])
def test_bad_halving_settings_are_refused_before_any_work(config_file: Callable[..., Path], search: dict[str, object], problem: str) -> None:
    with pytest.raises(gridsearch.ConfigError, match=problem.replace("(", r"\(")):
        prepare_search(config_file(search={"params": GRID, **search}))


FORESTS = {"model": ["sklearn.ensemble.RandomForestRegressor"], "model__random_state": [0], "model__max_depth": [3, 6, 9]}
TREES = {**HALVING, "resource": "model__n_estimators", "min_resources": 2, "max_resources": 8}


def test_a_resource_of_the_model_every_candidate_swaps_in_scores_as_scikit_learn(write_config: Callable[..., Path]) -> None:
    """The pipeline keeps Ridge; every candidate swaps a forest in, so model__n_estimators is every candidate's parameter.

    Scikit-learn checks the resource on its base estimator: it gets the forest the candidates set (their own, each time)."""
    path = write_config(search={"params": FORESTS, **TREES})
    result = gridsearch.run(path, progress=False)
    search = prepare_search(path)
    steps = step_names(search.pipeline)
    grid = [{name: [value] for name, value in resolve(candidate.params, steps).items()} for candidate in search.candidates]
    base = clone(search.pipeline).set_params(**resolve({"model": FORESTS["model"][0]}, steps))
    theirs = HalvingGridSearchCV(base, grid, factor=2, resource="model__n_estimators", min_resources=2, max_resources=8,
                                 cv=list(search.dataset.folds), scoring="neg_root_mean_squared_error", refit=False,
                                 random_state=3).fit(search.dataset.X, search.dataset.y)
    ours = result.cv_results
    np.testing.assert_array_equal(ours["n_resources"].to_numpy(), theirs.cv_results_["n_resources"])
    np.testing.assert_allclose(ours["mean_test_neg_root_mean_squared_error"], theirs.cv_results_["mean_test_score"], rtol=0, atol=1e-9)


def test_a_resource_some_candidates_lack_is_refused_naming_their_steps(config_file: Callable[..., Path]) -> None:
    grids = [FORESTS, {"model": ["sklearn.linear_model.Ridge"], "model__alpha": [1.0, 10.0]}]
    with pytest.raises(gridsearch.ConfigError, match="'model__n_estimators' is not a parameter of the pipeline with model=Ridge"):
        prepare_search(config_file(search={"params": grids, **TREES}))


def test_top_show_and_export_read_any_round(write_config: Callable[..., Path], cli: Callable[..., tuple[int, str, str]],
                                            tmp_path: Path) -> None:
    """``top`` ranks the last round by default (as the best is chosen), ``--round K`` any round; export keeps every round;
    the report draws them."""
    result = gridsearch.run(write_config(search={"params": GRID, **HALVING}), progress=False)
    table, log = result.cv_results, str(result.log_path)
    last = table[table["iter"] == table["iter"].max()]
    board = gridsearch.top(log, n=100)
    assert board.table["candidate_id"].iloc[0] == result.best_candidate_id and len(board.table) == len(last)
    first_round = gridsearch.top(log, n=100, round_=0).table
    assert set(first_round["candidate_id"]) == set(table.loc[table["iter"] == 0, "candidate_id"])
    status, out, _ = cli("top", log, "--round", "0", "-n", "3")
    assert status == 0 and first_round["candidate_id"].iloc[0] in out
    status, _, err = cli("top", log, "--round", "99")
    assert status == 2 and err.startswith("error: --round: no round 99 in this log")
    assert gridsearch.show(log, first_round["candidate_id"].iloc[-1][:10]).summary["round"] == 0
    written = gridsearch.export(log, tmp_path / "all.csv")
    assert written.rows == len(table) and "iter" in written.columns
    gridsearch.report(log, to=tmp_path / "report.html", explain=False)
    counts = ", ".join(f"{n} in round {r}" for r, n in table.groupby("iter").size().items())
    assert f"halving rounds: {counts}" in (tmp_path / "report.html").read_text()  # the figure of the rounds, drawn


def test_round_is_refused_for_a_log_without_rounds(write_config: Callable[..., Path], cli: Callable[..., tuple[int, str, str]]) -> None:
    result = gridsearch.run(write_config(), progress=False)
    status, _, err = cli("top", str(result.log_path), "--round", "0")
    assert status == 2 and "this log has no halving rounds" in err
