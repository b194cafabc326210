"""The report's tables: candidates as cv_results counts them, Pareto fronts, bounded samples, worker timelines, learning curves."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from gridsearch.log.records import FitRecord, SearchMeta, Status
from gridsearch.log.results import log_results
from gridsearch.log.runlog import RunLog, read_log
from gridsearch.view import tables

SCORING = ("neg_root_mean_squared_error", "r2")
START = 1_767_225_600.0


def record(candidate: str, fold: int, score: float, **fields: object) -> FitRecord:
    """A record as a worker makes it; ``fields`` override the defaults."""
    values = {"search_id": "s", "candidate_id": candidate, "params": json.dumps({"model__alpha": 1.0}), "fold": fold,
              "status": Status.OK, "scores": {"neg_root_mean_squared_error": score, "r2": score / 10}, "fit_time": 0.1,
              "score_time": 0.01, "prep_time": 0.5, "worker": "tcp://127.0.0.1:1", "started": START + fold, "finished": START + fold + 0.5,
              "model_size": 800.0}
    return FitRecord(**{**values, **fields})


def write(directory: Path, records: list[FitRecord], folds: int = 2, **meta: object) -> Path:
    with RunLog(directory, SearchMeta(directory.name, SCORING, folds, **meta)) as log:
        log.append(records)
    return directory


def test_candidate_table_agrees_with_cv_results_and_keeps_the_last_record_of_a_redone_fold(tmp_path):
    records = [record("a", 0, -3.0), record("a", 1, -9.0), record("b", 0, -2.0), record("b", 1, -4.0),
               record("a", 1, -5.0),  # a resumed search redid fold 1 of a: this one counts
               record("c", 0, -1.0),  # c is missing fold 1: no mean, as in cv_results
               record("d", 0, math.nan, status=Status.ERROR), record("d", 1, -1.0)]
    log = read_log(write(tmp_path / "s", records))
    table, _ = tables.candidate_table(log, SCORING, 2)
    expected = log_results(log, 2, list(SCORING)).set_index("candidate_id")
    table = table.set_index("candidate_id")
    for name in SCORING:
        np.testing.assert_allclose(table[f"mean_test_{name}"], expected.loc[table.index, f"mean_test_{name}"], equal_nan=True)
    np.testing.assert_array_equal(table["rank"], expected.loc[table.index, f"rank_test_{SCORING[0]}"])
    assert table.loc["a", "score"] == -4.0 and math.isnan(table.loc["c", "score"]) and math.isnan(table.loc["d", "score"])
    assert table.loc["c", "n_missing"] == 1 and table.loc["d", "n_errors"] == 1
    assert table.loc["b", "std"] == 1.0


def test_a_member_of_a_shared_fit_costs_its_share_of_the_leaders_trees(tmp_path):
    params = lambda n: json.dumps({"model": "sklearn.ensemble.RandomForestRegressor", "model__n_estimators": n})
    records = [record("big", k, -1.0, params=params(100), fit_time=2.0) for k in range(2)]
    records += [record("small", k, -1.5, params=params(25), fit_time=0.0, shared_fit="big") for k in range(2)]
    table, _ = tables.candidate_table(read_log(write(tmp_path / "s", records)), SCORING, 2)
    table = table.set_index("candidate_id")
    assert table.loc["small", "fit_time"] == 0.0  # what the search paid
    assert table.loc["small", "cost"] == 0.5 and table.loc["small", "estimated"]  # what fitting it alone costs
    assert table.loc["big", "cost"] == 2.0 and not table.loc["big", "estimated"]


def test_params_parse_to_typed_columns_and_fall_back_when_a_parameter_mixes_types():
    typed = tables.parse_params(pa.array(['{"a": 1, "m": "x.Ridge"}', '{"a": 3, "b": 0.5}']))
    assert list(typed.columns) == ["a", "b", "m"] and typed["a"].tolist() == [1, 3] and pd.isna(typed.loc[0, "b"])
    mixed = tables.parse_params(pa.array(['{"max_features": "sqrt"}', '{"max_features": 0.5}']))
    assert mixed["max_features"].tolist() == ["sqrt", 0.5]


def test_pareto_front_is_the_set_no_candidate_beats_on_both_cost_and_score():
    rng = np.random.default_rng(0)
    cost, score = rng.random(400), rng.random(400)
    score[7] = np.nan
    front = tables.pareto_front(cost, score)
    brute = [not np.isnan(score[i]) and not any((cost[j] <= cost[i]) & (score[j] >= score[i]) & ((cost[j] < cost[i]) | (score[j] > score[i]))
                                                for j in range(400) if not np.isnan(score[j])) for i in range(400)]
    np.testing.assert_array_equal(front, brute)


def test_sample_is_bounded_and_keeps_the_front_and_the_best():
    table = pd.DataFrame({"rank": np.arange(1, 100_001)})
    always = np.zeros(len(table), dtype=bool)
    always[[50_000, 99_999]] = True
    kept = tables.sample(table, bound=1000, always=always, top=30)
    assert len(kept) == 1000
    assert {50_000, 99_999} | set(range(30)) <= set(kept.index)


def test_timeline_joins_a_tasks_records_and_counts_idle_time(tmp_path):
    records = [record("a", 0, -1.0, started=START, finished=START + 1.0), record("b", 0, -1.0, started=START, finished=START + 2.0),
               record("c", 0, -1.0, started=START + 3.0, finished=START + 4.0, status=Status.ERROR),
               record("d", 0, -1.0, worker="tcp://127.0.0.1:2", started=START + 1.0, finished=START + 4.0)]
    line = tables.timeline(read_log(write(tmp_path / "s", records)))
    one = line.segments[line.segments["worker"] == "tcp://127.0.0.1:1"]
    assert one[["start", "end"]].to_numpy().tolist() == [[0.0, 2.0], [3.0, 4.0]] and one["failed"].tolist() == [0.0, 1.0]
    idle = line.workers.set_index("worker")["idle"]
    assert math.isclose(idle["tcp://127.0.0.1:1"], 0.25) and idle["tcp://127.0.0.1:2"] == 0.0
    assert not line.binned


def test_timeline_bins_time_past_a_bound_and_keeps_the_busy_share():
    n = 3 * tables.MAX_SEGMENTS
    start = START + np.arange(n) * 1.0
    frame = pd.DataFrame({"started": pd.to_datetime(start, unit="s", utc=True), "finished": pd.to_datetime(start + 0.5, unit="s", utc=True),
                          "worker": "w", "status": Status.OK})
    line = tables.timeline(frame)
    assert line.binned and len(line.segments) == tables.TIMELINE_BINS
    busy = ((line.segments["end"] - line.segments["start"]) * line.segments["share"]).sum()
    assert math.isclose(busy, 0.5 * n, rel_tol=1e-9)


def test_learning_curves_join_searches_that_differ_only_in_their_rows(tmp_path):
    for rows in (1000, 4000):
        records = [record(f"{rows}-{c}", k, -5.0 + rows / 1000 + c, params=json.dumps({"model__alpha": c}), fit_time=rows / 1e4)
                   for c in (1, 2) for k in range(2)]
        write(tmp_path / f"rows{rows}", records, config={"data": {"rows": rows}})
    searches = [tables.load_search(tmp_path / f"rows{rows}") for rows in (1000, 4000)]
    curves = tables.learning_curves(searches)
    assert sorted(curves.groupby("params")["rows"].apply(list).tolist()) == [[1000, 4000], [1000, 4000]]
    assert curves.loc[curves["rows"] == 4000, "fit_time"].tolist() == [0.4, 0.4]
    assert tables.learning_curves(searches[:1]) is None  # one search: no rows vary


def test_rounds_are_read_when_the_records_have_them(tmp_path):
    log = read_log(write(tmp_path / "s", [record(c, k, -1.0) for c in "ab" for k in range(2)]))
    search = tables.SearchData(tmp_path / "s", SearchMeta("s", SCORING, 2), log.assign(round=[0, 0, 0, 1], fit_rows=[10, 10, 10, 40]),
                               *tables.candidate_table(log, SCORING, 2))
    rounds = tables.rounds(search)
    assert rounds["round"].tolist() == [0, 0, 1] and rounds["rows"].tolist() == [10, 10, 40]
    assert tables.rounds(tables.load_search(tmp_path / "s")) is None


def test_two_hundred_thousand_records_tabulate_in_a_fraction_of_a_second():
    n, folds = 200_000, 5  # bench/bench_report.py times a million, end to end
    candidates = np.arange(n) // folds
    rng = np.random.default_rng(0)
    records = pd.DataFrame({
        "candidate_id": pd.Series((candidates * 2654435761 % 2**32).astype(str)).astype("string[pyarrow]"),
        "params": pd.Series([f'{{"a": {c % 7}, "b": {c % 11 / 10}}}' for c in candidates]).astype("string[pyarrow]"),
        "fold": np.tile(np.arange(folds), n // folds), "status": "ok", "test_s": rng.random(n), "fit_time": rng.random(n),
        "prep_time": 0.1, "model_size": 100.0})
    start = time.perf_counter()
    table, params = tables.candidate_table(records, ("s",), folds)
    seconds = time.perf_counter() - start
    assert len(table) == n // folds and list(params.columns) == ["a", "b"]
    assert seconds < 1.5, f"{seconds:.2f} s to tabulate {n:,} records"
