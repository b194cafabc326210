"""Reading run logs: top, show and export, from Python and from the command line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import gridsearch
from gridsearch.cli import main
from gridsearch.errors import GridsearchError
from gridsearch.log.query import export, show, to_json, top
from gridsearch.log.records import FitRecord, SearchMeta, Status
from gridsearch.log.results import best_first, log_results
from gridsearch.log.runlog import RunLog, read_log

REPO = Path(__file__).resolve().parents[2]
SPACE = [
    {"features__geohash__encode__precision": [4, 5], "model__alpha": [0.1, 1.0, 10.0]},
    {"model": ["sklearn.linear_model.LogisticRegression"]},  # fails: a classifier on a continuous target
    {"model": ["sklearn.linear_model.Lasso"], "model__alpha": [1e-6], "model__max_iter": [1]},  # ConvergenceWarning
]


@pytest.fixture(scope="module")
def searches(tmp_path_factory, cluster_address):
    """Two real searches under one log root (3 and 2 folds), with their results."""
    root = tmp_path_factory.mktemp("query")
    results = []
    for folds in (3, 2):
        config = {
            "data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": 1500, "seed": 1},
            "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"},
            "search": {"params": SPACE},
            "cv": {"folds": folds, "shuffle": True, "seed": 0},
            "scoring": ["neg_root_mean_squared_error", "r2"],
            "cluster": {"address": cluster_address},
            "log": str(root / "runs"),
            "cache": {"dir": str(root / "cache")},
        }
        path = root / f"search{folds}.yaml"
        path.write_text(yaml.safe_dump(config))
        results.append(gridsearch.run(path, progress=False))
    return root / "runs", results


def _gridsearch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gridsearch", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=120)


def _cli_json(capfd: pytest.CaptureFixture[str], *args: str) -> dict:
    """What ``python -m gridsearch ARGS --json`` prints, run in this process."""
    capfd.readouterr()
    status = main([*args, "--json"])
    out, err = capfd.readouterr()
    assert status == 0, err
    return json.loads(out)


def test_top_of_one_search_matches_its_cv_results(searches):
    _, (result, _) = searches
    board = top(result.log_path, n=3)
    expected = result.cv_results.sort_values(["rank_test_neg_root_mean_squared_error", "candidate_id"]).head(3)
    assert board.metric == "neg_root_mean_squared_error" and board.n_searches == 1
    assert list(board.table["candidate_id"]) == list(expected["candidate_id"])
    np.testing.assert_allclose(board.table["mean_test_r2"], expected["mean_test_r2"])
    assert list(board.table["rank_test_neg_root_mean_squared_error"]) == [1, 2, 3]
    assert len(board.results) == len(result.cv_results) == 8
    text = str(board)
    assert text.startswith(f"top 3 of 8 candidates in search {result.search_id}")
    assert "precision=4" in text and "alpha=" in text


def test_top_over_a_log_root_ranks_every_search_together(searches):
    runs, results = searches
    board = top(runs, n=100, metric="r2")
    assert board.n_searches == 2 and len(board.table) == 16
    assert set(board.table["search_id"]) == {r.search_id for r in results}
    means = board.table["mean_test_r2"].to_numpy()
    finite = means[~np.isnan(means)]
    assert (np.diff(finite) <= 0).all() and np.isnan(means[-2:]).all()  # failed candidates rank last
    assert list(board.table["rank_test_r2"])[:3] == [1, 2, 3]
    assert "2 searches under" in str(board) and "search" in str(board).splitlines()[2]


@pytest.mark.parametrize("spelling", ["r2", "test_r2", "mean_test_r2"])
def test_metric_may_be_given_as_scorer_or_column_name(searches, spelling):
    runs, _ = searches
    assert top(runs, metric=spelling).metric == "r2"


def test_failed_candidates_show_their_error_count(searches):
    _, (result, _) = searches
    board = top(result.log_path, n=10)
    failed = board.table[board.table["n_errors"] > 0]
    assert len(failed) == 1 and failed["n_errors"].iloc[0] == 3 and failed["n_missing"].iloc[0] == 0
    assert " failed " in str(board).splitlines()[2] + " "


def test_show_prints_params_scores_folds_errors_and_warnings(searches):
    _, (result, _) = searches
    board = top(result.log_path, n=10).table
    failing = board[board["params"].map(lambda p: "LogisticRegression" in str(p.get("model")))]["candidate_id"].iloc[0]
    detail = show(result.log_path, failing[:6])
    assert detail.candidate_id == failing and detail.summary["n_errors"] == 3
    assert list(detail.records["fold"]) == [0, 1, 2] and set(detail.records["status"]) == {"error"}
    text = str(detail)
    assert "folds 0, 1, 2: ValueError: Unknown label type" in text and "Traceback (most recent call last)" in text
    warned = board[board["params"].map(lambda p: p.get("model__max_iter") == 1)]["candidate_id"].iloc[0]
    assert "ConvergenceWarning" in str(show(result.log_path, warned))


def test_show_finds_a_candidate_under_a_log_root_by_prefix(searches):
    runs, (_, second) = searches
    best = second.best_candidate_id
    detail = show(runs, best[:8])
    assert detail.search_id == second.search_id and detail.summary["rank_test_neg_root_mean_squared_error"] == 1
    assert detail.params == second.best_params
    assert math.isclose(detail.summary["mean_test_neg_root_mean_squared_error"], second.best_score)


def test_show_json_is_strict_and_complete(searches):
    _, (result, _) = searches
    data = json.loads(to_json(show(result.log_path, result.best_candidate_id)))
    assert data["candidate_id"] == result.best_candidate_id and data["params"] == result.best_params
    assert len(data["records"]) == 3 and data["records"][0]["status"] == "ok"
    assert data["records"][0]["error"] is None and data["records"][0]["finished"].endswith("+00:00")


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        ("zzzz", "no candidate 'zzzz' in .* \\(16 candidates\\); list them with 'python -m gridsearch top"),
        ("", "candidate id is empty"),
    ],
)
def test_show_rejects_unknown_ids(searches, candidate, message):
    runs, _ = searches
    with pytest.raises(GridsearchError, match=message):
        show(runs, candidate)


def test_show_rejects_an_ambiguous_prefix(searches):
    runs, _ = searches
    ids = top(runs, n=100).table["candidate_id"]
    prefix = next(p for p in "0123456789abcdef" if ids.str.startswith(p).sum() > 1)
    with pytest.raises(GridsearchError, match=f"candidate id '{prefix}' is ambiguous in .*; give more characters"):
        show(runs, prefix)


def test_show_explains_a_search_id_given_as_candidate(searches):
    runs, (result, _) = searches
    with pytest.raises(GridsearchError, match="that is a search id"):
        show(runs, result.search_id)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_writes_cv_results(searches, tmp_path, suffix):
    _, (result, _) = searches
    written = export(result.log_path, tmp_path / f"results{suffix}")
    table = pd.read_parquet(written.path) if suffix == ".parquet" else pd.read_csv(written.path)
    assert written.what == "cv_results" and written.rows == len(table) == 8
    expected = result.cv_results.set_index("candidate_id")
    table = table.set_index("candidate_id").loc[expected.index]
    np.testing.assert_allclose(table["mean_test_r2"], expected["mean_test_r2"])
    assert [json.loads(p) for p in table["params"]] == list(expected["params"])


def test_export_writes_each_candidates_params_text_as_its_first_record_has_it(tmp_path):
    texts = {"aaaa": '{"model__alpha":0.10, "b": [1,2]}', "bbbb": '{"model__alpha": 1e1}'}  # not json.dumps' own spelling
    with RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 2)) as log:
        for fold in range(2):
            log.append([replace(_record("s", cid, fold, {"r2": 0.5}), params=text) for cid, text in texts.items()])
    table = pd.read_parquet(export(tmp_path / "s", tmp_path / "results.parquet").path)
    assert dict(zip(table["candidate_id"], table["params"])) == texts
    assert list(table["param_model__alpha"]) == [0.1, 10.0] and table["param_b"].iloc[0].tolist() == [1, 2]


def test_export_records_over_a_log_root(searches, tmp_path):
    runs, _ = searches
    written = export(runs, tmp_path / "out" / "records.parquet", records=True)
    records = pd.read_parquet(written.path)
    assert written.what == "records" and len(records) == 8 * 3 + 8 * 2
    assert records["search_id"].nunique() == 2 and "traceback" in records.columns


def test_export_rejects_an_unknown_format(searches, tmp_path):
    runs, _ = searches
    with pytest.raises(GridsearchError, match="to: expected a file name ending in .csv, .csv.gz, .parquet, .pq, found 'r.xlsx'"):
        export(runs, tmp_path / "r.xlsx")


def test_missing_log_and_unknown_metric_are_one_line_errors(searches, tmp_path):
    runs, _ = searches
    with pytest.raises(GridsearchError, match="no run log at"):
        top(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GridsearchError, match="no run log at .*empty: no search.json"):
        top(tmp_path / "empty")
    with pytest.raises(GridsearchError, match="metric: unknown metric 'rmse' .*; the log has scores for: neg_root_mean_squared_error, r2"):
        top(runs, metric="rmse")


def _record(search: str, candidate: str, fold: int, scores: dict[str, float], status: Status = Status.OK) -> FitRecord:
    return FitRecord(search_id=search, candidate_id=candidate, params=json.dumps({"model__alpha": fold}), fold=fold, status=status,
                     scores=scores, fit_time=0.1, score_time=0.01, prep_time=0.0)


def test_a_running_search_ranks_complete_candidates_and_counts_missing_folds(tmp_path):
    with RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 3)) as log:
        log.append([_record("s", "aaaa", fold, {"r2": 0.5}) for fold in range(3)])
        log.append([_record("s", "bbbb", 0, {"r2": 0.9})])
    board = top(tmp_path / "s")
    assert list(board.table["candidate_id"]) == ["aaaa", "bbbb"]
    assert list(board.table["n_missing"]) == [0, 2] and list(board.table["n_errors"]) == [0, 0]
    assert "missing" in str(board)


def test_searches_ranked_by_different_scorers_need_a_metric(tmp_path):
    for search, scoring in (("s1", ["r2"]), ("s2", ["neg_mean_absolute_error", "r2"])):
        with RunLog(tmp_path / search, SearchMeta(search, tuple(scoring), 1)) as log:
            log.append([_record(search, f"{search}-c", 0, dict.fromkeys(scoring, 0.5))])
    with pytest.raises(GridsearchError, match="metric: not given, and the searches under .* rank by different scorers \\(neg_mean_absolute_error, r2\\); choose one"):
        top(tmp_path)
    assert top(tmp_path, metric="r2").n_searches == 2
    board = top(tmp_path, metric="neg_mean_absolute_error")
    assert board.n_searches == 1 and board.skipped == ("s1",) and "left out (no neg_mean_absolute_error scores): s1" in str(board)


def test_an_empty_log_has_an_empty_leaderboard(tmp_path):
    with RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 3)) as log:
        log.append([_record("s", "aaaa", 0, {"r2": 0.5})])
    for part in (tmp_path / "s").glob("part-*.arrows"):
        part.unlink()
    board = top(tmp_path / "s")
    assert board.table.empty and str(board) == f"no records yet in {tmp_path / 's'}"
    assert json.loads(to_json(board))["rows"] == []


def test_results_read_from_the_columns_they_need_match_the_full_records(tmp_path):
    """Errors, a lost fit redone in a second run, a missing fold and two scorers: the last record counts."""
    scoring = ("r2", "neg_mean_absolute_error")
    first = [_record("s", "aaaa", 0, {"r2": 0.5, "neg_mean_absolute_error": -2.0}),
             _record("s", "aaaa", 1, {}, Status.LOST), _record("s", "bbbb", 0, {}, Status.ERROR),
             _record("s", "bbbb", 1, {"r2": 0.7, "neg_mean_absolute_error": -1.0}), _record("s", "cccc", 1, {"r2": 0.9, "neg_mean_absolute_error": -3.0})]
    for records in (first, [_record("s", "aaaa", 1, {"r2": 0.6, "neg_mean_absolute_error": -1.5})]):
        with RunLog(tmp_path / "s", SearchMeta("s", scoring, 2)) as log:
            log.append(records)
    board = top(tmp_path / "s", metric="r2")
    expected = log_results(read_log(tmp_path / "s"), 2, scoring)
    pd.testing.assert_frame_equal(board.results.drop(columns="search_id"), best_first(expected, "r2"))
    rows = board.results.set_index("candidate_id")
    assert rows.loc["aaaa", "mean_test_r2"] == pytest.approx(0.55) and rows.loc["aaaa", "n_errors"] == 0
    assert list(rows.loc["bbbb", ["n_errors", "n_missing"]]) == [1, 0] and list(rows.loc["cccc", ["n_errors", "n_missing"]]) == [0, 1]
    assert rows.loc["aaaa", "params"] == {"model__alpha": 0} and rows.loc["cccc", "params"] == {"model__alpha": 1}
    assert list(board.results["candidate_id"]) == ["aaaa", "bbbb", "cccc"]  # NaN means rank last, ties by id
    detail = show(tmp_path / "s", "cc")
    assert detail.params == {"model__alpha": 1} and detail.summary["rank_test_neg_mean_absolute_error"] == 2  # NaN means tie
    assert list(detail.records["fold"]) == [1] and detail.summary["n_missing"] == 1


def test_python_api_exports_the_query_functions():
    assert gridsearch.top is top and gridsearch.show is show and gridsearch.export is export


@pytest.mark.parametrize("command", ["top", "show", "export"])
def test_cli_help_has_examples(command, capfd):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    out, _ = capfd.readouterr()
    assert exited.value.code == 0 and "examples:" in out and f"python -m gridsearch {command}" in out


def test_cli_prints_json_for_tools(searches, tmp_path, capfd):
    runs, (result, _) = searches
    board = _cli_json(capfd, "top", str(runs), "-n", "2")
    assert board["metric"] == "neg_root_mean_squared_error" and len(board["rows"]) == 2 and board["n_candidates"] == 16
    detail = _cli_json(capfd, "show", str(result.log_path), result.best_candidate_id[:7])
    assert detail["candidate_id"] == result.best_candidate_id
    written = _cli_json(capfd, "export", str(runs), "--to", str(tmp_path / "r.csv"))
    assert written["rows"] == 16 and Path(written["path"]).is_file()


@pytest.mark.parametrize("args", [["top", "{runs}", "--metric", "rmse"], ["show", "{runs}", "zzzz"]])
def test_cli_errors_are_one_line_with_exit_2(searches, capfd, args):
    runs, _ = searches
    status = main([arg.format(runs=runs) for arg in args])
    _, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err


def test_cli_error_in_a_fresh_process_is_one_line_on_stderr(tmp_path):
    done = _gridsearch("top", str(tmp_path / "nothing"))
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.startswith(f"error: no run log at {tmp_path / 'nothing'}") and done.stderr.count("\n") == 1, done.stderr
