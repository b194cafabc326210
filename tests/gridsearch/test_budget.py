"""A time budget: no fit started that would not end in time, cancelled at the limit, never recorded as failed."""

from __future__ import annotations

import math
import time

import pandas as pd
import pytest

import gridsearch
from gridsearch.execute.budget import Budget
from gridsearch.execute.engine import config_of_log, search_work
from gridsearch.execute.executor import execute
from gridsearch.log.records import FitRecord, SearchMeta, Status
from gridsearch.log.results import cv_results
from gridsearch.search.grids import Candidate
from gridsearch.search.prepare import prepare_search

# 50 candidates x 3 folds of ~0.1-0.2 s each: ~11 s on the session's two workers when the machine is idle.
SLOW_GRID = {"model": ["sklearn.ensemble.RandomForestRegressor"], "model__n_estimators": [10],
             "model__max_depth": {"range": [4, 29]}, "model__min_samples_leaf": [1, 3], "model__random_state": [0]}
SLOW_FITS = 50 * 3


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _record(status: Status = Status.OK, fit_time: float = 1.0, score_time: float = 0.0) -> FitRecord:
    return FitRecord("s", "c", "{}", 0, status, {}, fit_time=fit_time, score_time=score_time)


def test_budget_starts_anything_until_a_fit_is_measured_then_only_what_ends_in_time():
    clock = Clock()
    budget = Budget(10.0, clock=clock)
    assert budget.per_fit is None and budget.can_start(1000)  # no estimate yet: the first window goes
    budget.observe([_record(fit_time=1.5, score_time=0.5), _record(fit_time=0.5, score_time=0.5)])
    assert budget.per_fit == 1.5
    clock.now += 4.0  # 6 s left: 4 fits of 1.5 s fit, 5 do not
    assert budget.can_start(4) and not budget.stopped
    assert not budget.can_start(5) and budget.stopped
    assert budget.remaining() == 6.0 and not budget.reached()


def test_budget_ignores_lost_and_untimed_fits():
    budget = Budget(10.0, clock=Clock())
    budget.observe([_record(Status.LOST, fit_time=math.nan), _record(fit_time=math.nan)])
    assert budget.per_fit is None
    budget.observe([_record(Status.ERROR, fit_time=2.0)])
    assert budget.per_fit == 2.0


def test_budget_refuses_everything_at_its_limit():
    clock = Clock()
    budget = Budget(5.0, started=clock.now - 5.0, clock=clock)
    assert budget.remaining() == 0.0 and budget.reached() and budget.stopped
    assert not budget.can_start(1)


def test_no_budget_never_stops():
    budget = Budget(None, clock=Clock())
    budget.observe([_record(fit_time=1e9)])
    assert budget.can_start(10**6) and budget.remaining() is None and not budget.reached() and not budget.stopped
    assert str(budget) == "none"


@pytest.mark.parametrize(("seconds", "text"), [(1800, "30min"), (5400, "1h30min"), (90, "1min30s"), (2.5, "2.5s"), (7200, "2h")])
def test_budget_prints_as_people_write_it(seconds, text):
    assert str(Budget(seconds)) == text


@pytest.mark.parametrize(("value", "seconds"), [("1h30min", 5400.0), ("90s", 90.0), (45, 45.0), (None, None)])
def test_search_budget_accepts_durations_and_seconds(config_file, value, seconds):
    assert gridsearch.load_config(config_file(search={"params": {"model__alpha": [1.0]}, "budget": value})).budget == seconds


def test_budget_is_not_part_of_the_search_id(config_file):
    grid = {"params": {"model__alpha": [1.0]}}
    with_budget = prepare_search(config_file("a.yaml", search={**grid, "budget": "30min"}))
    without = prepare_search(config_file("b.yaml", search=grid))
    assert with_budget.search_id == without.search_id


def test_bad_budget_exits_2_with_one_line(cli, config_file):
    status, out, err = cli("run", str(config_file(search={"params": {"model__alpha": [1.0]}})), "--budget", "nonsense")
    assert status == 2 and out == ""
    assert err.count("\n") == 1
    assert "search.budget: expected null (no time limit), a number of seconds or a duration such as 90s" in err
    assert "found 'nonsense' (not a positive duration)" in err


def test_a_candidate_missing_folds_ranks_below_complete_ones():
    candidates = [Candidate("complete", {"model__alpha": 1.0}), Candidate("partial", {"model__alpha": 2.0})]
    records = pd.DataFrame({"candidate_id": ["complete", "complete", "partial"], "fold": [0, 1, 0], "status": ["ok"] * 3,
                            "fit_time": [1.0] * 3, "score_time": [0.1] * 3, "prep_time": [0.0] * 3, "test_r2": [0.5, 0.5, 0.9]})
    table = cv_results(records, candidates, 2, ["r2"]).set_index("candidate_id")
    assert table.loc["partial", "n_missing"] == 1 and math.isnan(table.loc["partial", "mean_test_r2"])
    assert table.loc["complete", "rank_test_r2"] == 1 and table.loc["partial", "rank_test_r2"] == 2


def _run_until_a_fit_ends_in_budget(path) -> tuple[gridsearch.SearchResult, str]:
    """A run of ``path`` with a budget of 6 s, doubled while the machine is so busy that no fit ended within it."""
    for budget in ("6s", "12s", "24s"):
        try:
            return gridsearch.run(path, top=3, **{"search.budget": budget}), budget
        except gridsearch.GridsearchError as exc:
            assert f"budget of {budget} reached before any fit finished, so nothing was recorded" in str(exc)
    pytest.fail("no fit ended within 24 s")


def test_budget_stops_a_run_part_way_and_resume_runs_exactly_the_missing_fits(write_config, cli, capfd):
    path = write_config(search={"params": SLOW_GRID})
    capfd.readouterr()
    result, budget = _run_until_a_fit_ends_in_budget(path)
    out = capfd.readouterr().out
    first = gridsearch.read_log(result.log_path)
    assert 0 < len(first) < SLOW_FITS, "the budget did not stop the run part way; it tested nothing"
    assert set(first["status"]) == {Status.OK}  # nothing cancelled is recorded, as failed or as lost
    assert (f"budget of {budget} reached: {len(first)} of {SLOW_FITS} fits done (unfinished candidates rank last); "
            f"continue with: python -m gridsearch run --resume {result.log_path} [--budget ...]") in out
    partial = result.cv_results[result.cv_results["n_missing"] > 0]
    assert len(partial) and partial["mean_test_r2"].isna().all()  # no mean of the folds done passes for a full score

    assert SearchMeta.read(result.log_path).config["search"]["budget"] == budget  # kept in the log, yet not for a resume:
    assert config_of_log(result.log_path).budget is None
    assert config_of_log(result.log_path, **{"search.budget": "10min"}).budget == 600  # run --resume LOG --budget 10min
    status, out, err = cli("run", "--resume", str(result.log_path), "--quiet")
    assert status == 0, err
    log = gridsearch.read_log(result.log_path)
    assert len(log) == SLOW_FITS and set(log["status"]) == {Status.OK}
    assert not log.duplicated(["candidate_id", "fold"]).any()


def test_budget_limit_cancels_running_fits_and_records_none(config_file, cluster_address, client):
    slow = {"model": ["sklearn.ensemble.RandomForestRegressor"], "model__n_estimators": [300], "model__random_state": [0, 1]}
    search = prepare_search(config_file(search={"params": slow}, cluster={"address": cluster_address}))
    records: list[FitRecord] = []
    started = time.monotonic()
    budget = Budget(0.5, started=started)
    execute(client, search_work(search), lambda candidate, fold: True, records.extend, budget=budget)
    assert time.monotonic() - started < 1.5  # a fit alone takes longer: the call returned at the limit
    assert records == [] and budget.stopped
