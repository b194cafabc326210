"""``search.budget`` with ``search.strategy: halving``: a pilot prices the schedules, the budget picks the largest, and stops rounds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.dummy import DummyRegressor
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingGridSearchCV

import gridsearch
from gridsearch.errors import GridsearchError
from gridsearch.estimators.from_config import halving_from_config
from gridsearch.execute.budget import Budget, RoundBudget
from gridsearch.execute.costs import CostModel, Curve, Work, count_work
from gridsearch.execute.halving_budget import SchedulePrices
from gridsearch.log.records import SearchMeta
from gridsearch.search.config import HalvingConfig
from gridsearch.search.prepare import prepare_search, with_max_resources
from gridsearch.search.schedule import halving_schedule, smallest_resources
from gridsearch.search.space import resolve, step_names

HALVING = {"strategy": "halving", "factor": 2, "seed": 3}
GRID = {"features__geohash__encode__precision": [4, 5], "model__alpha": [0.01, 0.1, 1.0, 10.0, 100.0]}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("candidates", "factor", "min_resources", "max_resources", "aggressive"), [
    (10, 2, "exhaust", 1_500, False),
    (27, 3, "exhaust", 1_000, False),
    (10, 3, "smallest", 1_500, False),
    (40, 2, 30, 700, False),
    (40, 2, 30, 700, True),
    (7, 2.5, "exhaust", 333, False),
])
def test_the_schedule_is_scikit_learns(candidates: int, factor: float, min_resources: int | str, max_resources: int,
                                       aggressive: bool) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(1_500, 2)), rng.normal(size=1_500)
    grid = {"strategy": ["quantile"], "quantile": list(np.linspace(0.05, 0.95, candidates))}
    theirs = HalvingGridSearchCV(DummyRegressor(), grid, factor=factor, min_resources=min_resources, max_resources=max_resources,
                                 aggressive_elimination=aggressive, cv=3, random_state=0).fit(X, y)
    settings = HalvingConfig("n_samples", factor, min_resources, max_resources, aggressive)
    ours = halving_schedule(candidates, settings, smallest_resources(3, None, "n_samples"), max_resources)
    assert [r.candidates for r in ours.rounds] == theirs.n_candidates_
    assert [r.resources for r in ours.rounds] == theirs.n_resources_


def _prices(search: Any, seconds_per_row: float = 1e-4) -> SchedulePrices:
    """Prices of ``search``'s schedules with every piece of its plan costing ``seconds_per_row`` per training row."""
    work = tuple(Work(count, Curve(seconds_per_row, 1.0)) for count in count_work(search.plan))
    return SchedulePrices(search, CostModel(work, search.plan.folds, 1.0, threads=2, task_overhead=0.0))


def test_a_smaller_budget_chooses_a_smaller_schedule_within_it(config_file: Callable[..., Path]) -> None:
    search = prepare_search(config_file(search={"params": GRID, **HALVING}))
    prices = _prices(search)
    everything = prices.largest(1e6)
    assert everything is not None and everything.max_resources == prices.cap == len(search.dataset.X)
    smaller = prices.largest(prices.seconds(everything) / 3)
    assert smaller is not None and smaller.max_resources < everything.max_resources
    assert prices.seconds(smaller) <= prices.seconds(everything) / 3 < prices.seconds(prices.schedule(round(smaller.max_resources * 1.1)))
    assert set(str(smaller.max_resources)[2:]) <= {"0"}  # two significant digits
    assert smaller.rounds[0].candidates == len(search.space)
    assert prices.largest(prices.seconds(prices.smallest()) / 2) is None


def test_the_chosen_max_resources_is_the_search_configured_with_it(config_file: Callable[..., Path]) -> None:
    """Its config, the copy its log keeps (so --resume runs the same schedule) and its search id are a config's that says it."""
    search = prepare_search(config_file(search={"params": GRID, **HALVING, "budget": "10min"}))
    chosen = with_max_resources(search, 600)
    configured = prepare_search(config_file(search={"params": GRID, **HALVING, "budget": "10min", "max_resources": 600}))
    assert chosen.config.space.halving.max_resources == 600 and chosen.config.raw["search"]["max_resources"] == 600
    assert chosen.search_id == configured.search_id != search.search_id


def _evaluate(clock: Clock, calls: list[int]) -> Callable[..., Mapping[str, Any]]:
    """An ``evaluate_candidates`` whose round takes 4 s of ``clock``."""
    def evaluate(candidate_params: list[Mapping[str, Any]], cv: Any = None, more_results: Mapping[str, list[Any]] | None = None,
                 **_: Any) -> Mapping[str, Any]:
        calls.append(len(candidate_params))
        clock.now += 4.0
        return {"round": len(calls)}

    return evaluate


def test_a_round_predicted_past_the_deadline_is_not_started() -> None:
    clock = Clock()
    rounds = RoundBudget(Budget(10.0, clock=clock), predict=lambda candidates, resources: candidates * resources / 200, clock=clock)
    calls: list[int] = []
    gate = rounds.gate(_evaluate(clock, calls))
    assert gate([{}] * 8, None, {"n_resources": [50]}) == {"round": 1}  # predicted 2 s of 10, took 4: later predictions x2
    assert gate([{}] * 4, None, {"n_resources": [100]}) == {"round": 2}  # 2 x 2 s, 6 s left
    assert gate([{}] * 2, None, {"n_resources": [200]}) == {"round": 2}  # 2 x 2 s, 2 s left: not started, the results so far
    assert gate([{}], None, {"n_resources": [400]}) == {"round": 2}
    assert calls == [8, 4] and rounds.done == 2 and rounds.refused == 2 and rounds.budget.stopped


def test_without_a_model_a_round_is_predicted_from_the_one_before() -> None:
    clock = Clock()
    rounds = RoundBudget(Budget(10.0, clock=clock), clock=clock)
    assert rounds.predicted(8, 50) is None
    rounds.finished(8, 50, 2.0)
    assert rounds.predicted(4, 100) == pytest.approx(2.0)
    assert rounds.can_start(4, 100) and not rounds.can_start(4, 1_000)


def test_a_budget_gone_before_the_first_round_records_nothing() -> None:
    clock = Clock()
    rounds = RoundBudget(Budget(1.0, clock=clock), clock=clock)
    clock.now += 2
    with pytest.raises(GridsearchError, match="budget of 1s reached before the first halving round"):
        rounds.gate(_evaluate(clock, []))([{}], None, {"n_resources": [10]})


def _sklearns(search: Any, max_resources: int | str) -> HalvingGridSearchCV:
    """scikit-learn's HalvingGridSearchCV of ``search``'s candidates and folds."""
    steps = step_names(search.pipeline)
    grid = [{name: [value] for name, value in resolve(candidate.params, steps).items()} for candidate in search.candidates]
    return HalvingGridSearchCV(clone(search.pipeline), grid, factor=2, max_resources=max_resources, cv=list(search.dataset.folds),
                               scoring="neg_root_mean_squared_error", refit=False, random_state=3).fit(search.dataset.X, search.dataset.y)


def _assert_same(ours: Any, theirs: HalvingGridSearchCV) -> None:
    for key in ("iter", "n_resources"):
        np.testing.assert_array_equal(ours[key].to_numpy(), theirs.cv_results_[key], err_msg=key)
    assert [repr(p) for p in ours["params"]] == [repr(p) for p in theirs.cv_results_["params"]]
    np.testing.assert_allclose(ours["mean_test_neg_root_mean_squared_error"], theirs.cv_results_["mean_test_score"], rtol=0, atol=1e-9)


def test_a_budget_is_accepted_says_its_schedule_and_keeps_scikit_learns_results(write_config: Callable[..., Path],
                                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(search={"params": GRID, **HALVING, "budget": "10min", "max_resources": 900})
    result = gridsearch.run(path, progress=True)
    out = capsys.readouterr().out
    chosen = SearchMeta.read(result.log_path).config["search"]["max_resources"]  # 900 unless the budget binds
    search = prepare_search(path)
    assert f"budget 10min: max_resources {chosen:,} rows of {len(search.dataset.X):,}, " in out
    assert out.index("budget 10min: max_resources") < out.index("rounds (candidates on n_samples)")
    _assert_same(result.cv_results, _sklearns(search, chosen))


def test_too_small_a_budget_fails_in_one_line_and_writes_nothing(write_config: Callable[..., Path],
                                                                cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    status, _, err = cli("run", str(write_config(search={"params": GRID, **HALVING})), "--budget", "0.01")
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: budget of 0.01s: even the smallest halving schedule (1 round: 10 on 6 rows) is predicted to take")
    assert not any((tmp_path / "runs").glob("*/*"))  # no log: not even search.json


def test_a_round_the_budget_refuses_ends_the_fit_with_the_rounds_done(write_config: Callable[..., Path], client: Any) -> None:
    """The rounds before the refused one are scikit-learn's first rounds; none after it starts."""
    search = prepare_search(write_config(search={"params": GRID, **HALVING}))
    rounds = RoundBudget(Budget(3600.0), predict=lambda candidates, resources: 0.0 if resources < 200 else 1e9)
    fitted = halving_from_config(search, client, rounds=rounds).fit(search.dataset.X, search.dataset.y)
    theirs = _sklearns(search, "auto")
    done = int(np.sum(np.asarray(theirs.n_resources_) < 200))
    assert rounds.done == done and rounds.refused == len(theirs.n_resources_) - done and done >= 1
    assert set(fitted.cv_results_["iter"]) == set(range(done))
    kept = theirs.cv_results_["iter"] < done
    np.testing.assert_allclose(fitted.cv_results_["mean_test_neg_root_mean_squared_error"], theirs.cv_results_["mean_test_score"][kept],
                               rtol=0, atol=1e-9)


def test_an_estimator_parameter_as_the_resource_takes_a_budget_that_only_stops_rounds(write_config: Callable[..., Path],
                                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    search = {"params": GRID, **HALVING, "budget": "10min", "resource": "model__max_iter", "max_resources": 8}
    result = gridsearch.run(write_config(search=search), progress=True)
    assert "budget 10min: the rounds' model__max_iter is not priced by a pilot, so the budget only stops them" in capsys.readouterr().out
    assert sorted(set(result.cv_results["n_resources"])) == [1, 2, 4, 8]
