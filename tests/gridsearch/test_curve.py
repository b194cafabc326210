"""Learning curves on a real LocalCluster: sklearn's scores, their own log, the report, resume, the CLI."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import learning_curve

import gridsearch
from gridsearch.errors import ArgumentError
from gridsearch.execute.curve import parse_sizes, train_sizes
from gridsearch.execute.engine import config_of_log
from gridsearch.search.space import resolve, step_names

SIZES = (0.3, 0.6, 1.0)


@dataclass(frozen=True)
class Curved:
    search: gridsearch.SearchResult
    board_before: str
    curves: gridsearch.CurveResult


@pytest.fixture(scope="module")
def curved(tmp_path_factory, config_writer, cluster_address) -> Curved:
    """The base config's search, then the curves of its top 2."""
    write = config_writer(tmp_path_factory.mktemp("curve"), cluster_address)
    search = gridsearch.run(write(), progress=False)
    board = str(gridsearch.top(search.log_path))
    return Curved(search, board, gridsearch.curve(search.log_path, top=2, sizes=SIZES))


def test_curve_scores_equal_sklearn_learning_curve_on_the_search_folds(curved):
    prepared = gridsearch.prepare_search(config_of_log(curved.search.log_path))
    data, pipeline, scorer = prepared.dataset, prepared.pipeline, curved.curves.scorer
    best = curved.search.cv_results.sort_values(f"rank_test_{scorer}")["candidate_id"].head(2).tolist()
    assert list(curved.curves.candidates) == best
    for candidate, params in zip(best, curved.search.cv_results.set_index("candidate_id").loc[best, "params"]):
        estimator = clone(pipeline).set_params(**resolve(params, step_names(pipeline)))
        sizes, _, expected = learning_curve(estimator, data.X, data.y, cv=list(data.folds), train_sizes=SIZES, scoring=scorer)
        assert curved.curves.sizes == tuple(sizes)
        np.testing.assert_allclose(curved.curves.scores(candidate), expected, rtol=0, atol=1e-9)
        means = curved.curves.table.set_index(["candidate_id", "fit_rows"]).loc[candidate, "score"].to_numpy()
        np.testing.assert_allclose(means, expected.mean(axis=1), rtol=0, atol=1e-9)


def test_curve_records_carry_rows_and_folds_and_stay_out_of_the_search(curved):
    records = curved.curves.records
    assert len(records) == 2 * 3 * 3 and set(records["status"]) == {"ok"}
    assert sorted(records["fold"].unique()) == [0, 1, 2] and tuple(sorted(records["fit_rows"].unique())) == curved.curves.sizes
    assert curved.curves.log_path == curved.search.log_path / "curve"
    assert str(gridsearch.top(curved.search.log_path)) == curved.board_before
    assert len(gridsearch.read_log(curved.search.log_path)) == 18
    assert gridsearch.read_log(curved.search.log_path)["fit_rows"].isna().all()


def test_the_report_draws_the_learning_curves(curved):
    names = gridsearch.report(curved.search.log_path, explain=False).figures()
    sid = curved.search.search_id
    assert {f"{sid}/learning_curve_0", f"{sid}/learning_curve_1"} <= set(names)
    score = names[f"{sid}/learning_curve_0"]
    assert set(curved.curves.sizes) <= set(score.renderers[0].data_source.data["x"])


def test_a_second_call_fits_nothing_new_and_needs_no_cluster(curved):
    again = gridsearch.curve(curved.search.log_path, top=2, sizes=SIZES, scheduler="tcp://127.0.0.1:9")  # nothing listens there
    assert (again.n_fits, again.n_resumed) == (0, 18)
    np.testing.assert_array_equal(again.scores(again.candidates[0]), curved.curves.scores(again.candidates[0]))


def test_the_cli_fits_only_the_sizes_the_log_lacks_and_prints_the_table(curved, cli, cluster_address):
    first = curved.curves.candidates[0]
    status, out, err = cli("curve", str(curved.search.log_path), "--candidate", first[:8], "--sizes", "0.3,0.45,1.0",
                           "--scheduler", cluster_address)
    assert status == 0, err
    assert f"learning curves of 1 candidate of search {curved.search.search_id}" in out
    assert "9 fits (6 from an earlier run)" in out and f"curve log: {curved.curves.log_path}" in out
    new = gridsearch.read_log(curved.curves.log_path).query("fit_rows not in @curved.curves.sizes")
    assert len(new) == 3 and set(new["candidate_id"]) == {first} and sorted(new["fold"]) == [0, 1, 2]


@pytest.mark.parametrize(("sizes", "message"), [("0,0.5", "fractions must be in (0, 1], found 0"),
                                                ("0.5,1.5", "found 1.5"), ("", "no sizes given"),
                                                ("10,100000", "row counts must be in [1, "), ("a,b", "comma-separated numbers")])
def test_bad_sizes_exit_2_naming_the_option(curved, cli, sizes, message):
    status, out, err = cli("curve", str(curved.search.log_path), "--sizes", sizes)
    assert status == 2 and not out
    assert err.startswith("error: --sizes: ") and message in err and len(err.strip().splitlines()) == 1


def test_sizes_translate_as_learning_curve_does():
    assert train_sizes([0.1, 0.1, 0.55, 1.0], 100) == (10, 55, 100)
    assert train_sizes([0.001], 100) == (1,)
    assert train_sizes([5, 10], 10) == (5, 10)
    assert parse_sizes("0.1, 3e-1,1") == [0.1, 0.3, 1]
    with pytest.raises(ArgumentError, match="fractions must be in"):
        train_sizes(parse_sizes("1,0.5,2"), 10)  # a float among them: all are fractions, as in scikit-learn
