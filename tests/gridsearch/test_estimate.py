"""``gridsearch estimate``: the cost model on known timings, the pilot on the session's cluster, the command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gridsearch.errors import ArgumentError
from gridsearch.execute.costs import FIT, PREFIX, STAGE, CostModel, Curve, Work, WorkCount, count_work, fit_curves
from gridsearch.execute.estimate import _samples, estimate
from gridsearch.search.prepare import prepare_search

GRID = [
    {"features__geohash__encode__precision": [4, 5], "model": ["sklearn.linear_model.Ridge"], "model__alpha": [0.1, 1.0, 10.0]},
    {"features__geohash__encode__precision": [5], "model": ["sklearn.ensemble.RandomForestRegressor"],
     "model__n_estimators": [2, 4], "model__max_depth": [2, 3], "model__random_state": [0]},
]


def test_curve_fit_recovers_a_power_law_exactly() -> None:
    rows = [1_000, 3_000, 10_000, 30_000]
    curve = Curve.fit(rows, [2e-6 * n**1.3 for n in rows])
    assert curve.a == pytest.approx(2e-6, rel=1e-9)
    assert curve.b == pytest.approx(1.3, rel=1e-9)
    assert curve.seconds(100_000) == pytest.approx(2e-6 * 100_000**1.3, rel=1e-9)


def test_curve_fit_never_lets_cost_fall_with_rows_and_scales_one_point_linearly() -> None:
    assert Curve.fit([100, 1_000], [0.5, 0.05]) == Curve(pytest.approx(0.5**0.5 * 0.05**0.5), 0.0)
    assert Curve.fit([1_000, 1_000], [0.2, 0.2]) == Curve(pytest.approx(2e-4), 1.0)


def _model(*curves: tuple[str, Curve], folds: int = 2) -> CostModel:
    work = tuple(Work(WorkCount(FIT, ("g", kind), kind, 10, 10 * folds, frozenset(["g"])), curve) for kind, curve in curves)
    return CostModel(work, folds, train_fraction=0.5, threads=2, task_overhead=0.0, fixed=1.0)


def test_wall_seconds_spread_the_work_over_the_threads() -> None:
    model = _model(("Ridge", Curve(1e-3, 1.0)))
    # 10 families x 2 folds x 1e-3 s x 500 training rows, on 2 threads, after 1 s fixed
    assert model.cpu_seconds(1_000) == pytest.approx(10.0)
    assert model.wall_seconds(1_000) == pytest.approx(1.0 + 5.0)


def test_largest_rows_inverts_the_predicted_wall_time() -> None:
    model = _model(("Ridge", Curve(1e-5, 1.2)), ("Tree", Curve(3e-6, 1.5)))
    largest = model.largest_rows(600.0)
    assert model.wall_seconds(largest) <= 600.0 < model.wall_seconds(largest * 1.002)
    assert model.largest_rows(60.0) < largest
    assert model.largest_rows(0.5) is None  # the fixed second alone is over budget
    alone = model.largest_rows(600.0, model.for_kind("Ridge"))
    assert alone > largest and model.wall_seconds(alone, model.for_kind("Ridge")) <= 600.0


def test_cheap_fits_are_counted_in_batched_tasks() -> None:
    work = Work(WorkCount(FIT, ("g", "Ridge"), "Ridge", 1_000, 1_000, frozenset(["g"])), Curve(1e-3, 0.0))  # 1 ms a fit
    assert work.tasks(train_rows=100, folds=3) == 3 * 4  # 250 families of 1 ms per 0.25 s task
    slow = Work(work.count, Curve(1.0, 0.0))
    assert slow.tasks(train_rows=100, folds=3) == 3 * 1_000


def test_count_work_counts_what_the_plan_runs_once(config_file: Callable[..., Path]) -> None:
    plan = prepare_search(config_file(search={"params": GRID})).plan
    work = count_work(plan)
    total = {what: sum(piece.per_fold for piece in work if piece.what == what) * plan.folds for what in (STAGE, PREFIX, FIT)}
    assert total[STAGE] == plan.stages_per_fold * plan.folds  # time and distance shared by both precisions
    assert total[PREFIX] == plan.n_prep_tasks
    assert total[FIT] == plan.n_families * plan.folds  # forests of 2 trees scored on the 4-tree fits
    assert sum(piece.fits for piece in work) == plan.n_fits
    forest = [piece for piece in work if piece.what == FIT and piece.key[1].endswith("RandomForestRegressor")]
    assert [(piece.per_fold, piece.fits) for piece in forest] == [(2, 4 * plan.folds)]


def test_estimate_pilots_on_the_cluster_and_predicts_a_tiny_search(write_config: Callable[..., Path]) -> None:
    result = estimate(write_config(search={"params": GRID}), "1h", pilot_rows=3_000)
    assert result.n_fits == 10 * 3 and result.threads == 2
    assert {piece.what for piece in result.pieces} == {STAGE, PREFIX, FIT}
    assert all(seconds > 0 for piece in result.pieces for seconds in piece.pilot_seconds)
    sizes = {rows for piece in result.pieces for rows in piece.pilot_rows}
    assert sorted(sizes) == [333, 1_000, 3_000]  # times are not compared: tiny pilots drown in a busy machine's noise
    assert 0 < result.cpu_seconds and result.model.fixed < result.wall_seconds < 60
    assert result.pilot_rows > result.rows  # generated beyond data.rows
    assert result.largest_rows > result.rows and result.extrapolated
    assert [kind.kind for kind in result.kinds] == ["Ridge", "RandomForestRegressor"]
    assert sum(kind.fits for kind in result.kinds) == result.n_fits
    text = "\n".join(result.lines())
    assert "predicted wall time of the search as configured (1,500 rows, 30 fits on 2 worker threads)" in text
    assert "largest data.rows within 60 min: ~" in text and "extrapolated beyond the pilot's" in text


def test_estimate_refuses_a_bad_budget_before_any_work(config_file: Callable[..., Path]) -> None:
    with pytest.raises(ArgumentError, match=r"budget: '1 hour' is not a positive duration; give .*1h30min"):
        estimate(config_file(), "1 hour")


def test_cli_estimate_prints_the_prediction(write_config: Callable[..., Path], cli: Callable[..., tuple[int, str, str]]) -> None:
    status, out, err = cli("estimate", str(write_config()), "--budget", "30min", "--pilot-rows", "600")
    assert status == 0, err
    assert "predicted wall time of the search as configured (1,500 rows, 18 fits" in out
    assert "largest data.rows within 30 min: ~" in out
    assert "fit Ridge precision=4" in out and "model kind alone" in out


def test_cli_estimate_bad_budget_exits_2(config_file: Callable[..., Path], cli: Callable[..., tuple[int, str, str]]) -> None:
    status, out, err = cli("estimate", str(config_file()), "--budget", "soon")
    assert status == 2 and out == ""
    assert err.startswith("error: --budget: 'soon' is not a positive duration")


def test_fit_curves_share_one_exponent_across_series() -> None:
    rows = [1_000, 3_000, 10_000]
    noisy = [1e-6 * n**1.2 * wobble for n, wobble in zip(rows, [1.1, 0.9, 1.05])]
    steady = [4e-6 * n**1.2 * wobble for n, wobble in zip(rows, [0.95, 1.1, 0.95])]
    first, second = fit_curves([(rows, noisy), (rows, steady)])
    assert first.b == second.b == pytest.approx(1.2, abs=0.05)
    assert second.a / first.a == pytest.approx(4.0, rel=0.1)
    exact = fit_curves([(rows, [2e-6 * n**1.3 for n in rows]), ([500, 5_000], [7e-6 * n**1.3 for n in (500, 5_000)])])
    assert [curve.a for curve in exact] == [pytest.approx(2e-6), pytest.approx(7e-6)] and exact[0].b == pytest.approx(1.3)


def test_pilot_samples_spread_over_each_kinds_families(config_file: Callable[..., Path]) -> None:
    grid = [{**GRID[0], "model__alpha": [0.01, 0.1, 1.0, 10.0, 100.0]}, GRID[1]]
    forests, ridges = prepare_search(config_file(search={"params": grid})).plan.groups[1], prepare_search(config_file()).plan.groups[0]
    assert [len(families) for families in _samples(forests).values()] == [3, 2]  # Ridge 3 of 5, both forest depths
    assert [family.items[0].params["model__alpha"] for family in _samples(forests)["sklearn.linear_model.Ridge"]] == [0.01, 1.0, 100.0]
    assert [len(families) for families in _samples(ridges).values()] == [3]
