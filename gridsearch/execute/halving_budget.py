"""``search.budget`` of a halving search: the schedule it affords, priced by a pilot, and the rounds it lets start.

With ``resource: n_samples`` a pilot (:func:`~gridsearch.execute.estimate.pilot_model`, the one
behind ``gridsearch estimate``) prices every schedule, and the largest ``max_resources`` whose
rounds are predicted to end within what is left of the budget is chosen. An estimator
parameter as the resource is not priced: the budget then only stops the rounds
(:class:`~gridsearch.execute.budget.RoundBudget`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from distributed import Client
from sklearn.base import is_classifier

from gridsearch.errors import GridsearchError
from gridsearch.execute.budget import Budget, RoundBudget
from gridsearch.execute.costs import CostModel
from gridsearch.execute.estimate import pilot_model
from gridsearch.search.durations import format_duration
from gridsearch.search.prepare import PreparedSearch, with_max_resources
from gridsearch.search.schedule import Round, Schedule, halving_schedule, largest_schedule, smallest_resources

PILOT_ROWS = 10_000  # training rows of the pilot's largest fits, at most: it is paid from the budget (estimate's goes to 50 000)


@dataclass(frozen=True)
class Afforded:
    """What a budget makes of a halving search: the search to run (its ``max_resources`` chosen), the gate of its rounds,
    and the line that says so (None without a budget)."""

    search: PreparedSearch
    rounds: RoundBudget
    line: str | None


def afford(search: PreparedSearch, client: Client, budget: Budget) -> Afforded:
    """The largest halving schedule of ``search`` predicted within what is left of ``budget``, after a pilot on ``client``.

    Raises
    ------
    GridsearchError
        When even the smallest schedule is predicted to take longer, before anything is written.
    """
    halving = search.config.space.halving
    if budget.seconds is None:
        return Afforded(search, RoundBudget(budget), None)
    if halving.resource != "n_samples":
        return Afforded(search, RoundBudget(budget), (f"budget {budget}: the rounds' {halving.resource} is not priced by a pilot, so "
                                                      "the budget only stops them: a round starts if, scaled from the one before, "
                                                      "it ends in time"))
    prices = SchedulePrices(search, *pilot_model(search, client, PILOT_ROWS))
    left = budget.remaining() or 0.0
    chosen = prices.largest(left)
    if chosen is None:
        smallest = prices.smallest()
        raise GridsearchError(f"budget of {budget}: even the smallest halving schedule ({smallest.said()} rows) is predicted to take "
                              f"{_seconds(prices.seconds(smallest))}, and {_seconds(left)} is left after the pilot; give a longer "
                              "search.budget (--budget), fewer candidates or a larger search.factor")
    line = (f"budget {budget}: max_resources {chosen.max_resources:,} rows of {len(search.dataset.X):,}, {chosen.said()} rows "
            f"(predicted {_seconds(prices.seconds(chosen))} of the {_seconds(left)} left after the pilot)")
    chosen_search = search if chosen.max_resources == prices.cap else with_max_resources(search, chosen.max_resources)
    return Afforded(chosen_search, RoundBudget(budget, prices.round_seconds), line)


class SchedulePrices:
    """A halving search's schedules on ``n_samples`` and their predicted wall time under a pilot's cost model.

    ``max_resources`` ranges from the smallest ``min_resources`` (as configured, or scikit-learn's
    'smallest') up to ``cap``: the configured ``max_resources``, or every row for ``auto``. Times
    are the model's at the load the pilot met: ``contention`` x (its wall over CPU time).
    """

    def __init__(self, search: PreparedSearch, model: CostModel, contention: float = 1.0) -> None:
        settings = search.config.space.halving
        self._settings = settings
        self._model = model
        self._load = max(1.0, contention)
        self._candidates = len(search.space)
        self._groups = len(search.plan.groups)
        self._train_share = len(search.dataset.folds[0][0]) / len(search.dataset.X)
        classes = len(np.unique(search.dataset.y)) if is_classifier(search.pipeline) else None
        self._smallest = smallest_resources(search.plan.folds, classes, "n_samples")
        self._low = self._smallest if isinstance(settings.min_resources, str) else settings.min_resources
        self.cap = len(search.dataset.X) if settings.max_resources == "auto" else settings.max_resources

    def schedule(self, max_resources: int) -> Schedule:
        return halving_schedule(self._candidates, self._settings, self._smallest, max_resources)

    def smallest(self) -> Schedule:
        return self.schedule(self._low)

    def largest(self, budget: float) -> Schedule | None:
        """The schedule of the largest ``max_resources`` predicted within ``budget`` seconds (None: not even the smallest)."""
        return largest_schedule(self.schedule, self.seconds, budget, self._low, self.cap)

    def seconds(self, schedule: Schedule) -> float:
        return self._load * self._model.halving_seconds(schedule, self._train_share, self._groups)

    def round_seconds(self, candidates: int, resources: int) -> float:
        return self._load * self._model.round_seconds(Round(candidates, resources), self._candidates, self._train_share, self._groups)


def _seconds(seconds: float) -> str:
    return format_duration(round(seconds, 1))
