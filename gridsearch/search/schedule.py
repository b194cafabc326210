"""The rounds of successive halving, as scikit-learn's halving classes schedule them, and the largest one within a time budget.

Pure Python, no data and no Dask: :func:`halving_schedule` computes what
``HalvingGridSearchCV`` fits in each round (``n_candidates_`` and ``n_resources_``) for a given
``max_resources``, with the same arithmetic, so a schedule can be priced before it runs;
:func:`largest_schedule` finds the largest ``max_resources`` whose predicted time fits a budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from gridsearch.search.config import HalvingConfig

SMALLEST_PER_SPLIT = 2  # scikit-learn's min_resources 'smallest' on n_samples: 2 rows per split (and per class)


@dataclass(frozen=True)
class Round:
    """One round: how many candidates it fits, on how much of the resource (rows, or the estimator parameter's value)."""

    candidates: int
    resources: int


@dataclass(frozen=True)
class Schedule:
    """The rounds of a halving search with ``max_resources``."""

    max_resources: int
    rounds: tuple[Round, ...]

    def said(self) -> str:
        """The rounds in one phrase, e.g. ``3 rounds: 27 on 1,200, 9 on 3,600, 3 on 10,800``."""
        count = f"{len(self.rounds)} round{'s' if len(self.rounds) > 1 else ''}"
        return f"{count}: " + ", ".join(f"{r.candidates} on {r.resources:,}" for r in self.rounds)


def smallest_resources(folds: int, classes: int | None, resource: str) -> int:
    """scikit-learn's ``min_resources`` 'smallest' (the start of 'exhaust'): 2 rows per split and class; 1 of a parameter."""
    if resource != "n_samples":
        return 1
    return folds * SMALLEST_PER_SPLIT * (classes or 1)


def halving_schedule(n_candidates: int, settings: HalvingConfig, smallest: int, max_resources: int) -> Schedule:
    """What scikit-learn's halving fits in each round, as its ``_run_search`` computes it, for ``max_resources``.

    ``smallest`` is :func:`smallest_resources` of the search (used when ``min_resources`` is a word).
    """
    factor = settings.factor
    minimum = smallest if isinstance(settings.min_resources, str) else settings.min_resources
    required = 1 + math.floor(math.log(n_candidates, factor))
    if settings.min_resources == "exhaust":  # the last round on max_resources
        minimum = max(minimum, max_resources // factor ** (required - 1))
    possible = 1 + math.floor(math.log(max_resources // minimum, factor))
    n_rounds = required if settings.aggressive_elimination else min(possible, required)
    rounds, candidates = [], n_candidates
    for index in range(n_rounds):
        power = max(0, index - required + possible) if settings.aggressive_elimination else index
        rounds.append(Round(candidates, min(int(factor**power * minimum), max_resources)))
        candidates = math.ceil(candidates / factor)
    return Schedule(max_resources, tuple(rounds))


def largest_schedule(schedule_of: Callable[[int], Schedule], seconds: Callable[[Schedule], float], budget: float,
                     low: int, high: int) -> Schedule | None:
    """The schedule of the largest ``max_resources`` in ``[low, high]`` predicted within ``budget`` seconds (None: not even ``low``).

    Bisection on ``max_resources``, whose predicted cost grows with it (more rows in each round);
    a ``max_resources`` below ``high`` is rounded down to two significant digits, so that
    budgets close to each other choose the same schedule (and search id).
    """
    def fits(value: int) -> bool:
        return seconds(schedule_of(value)) <= budget

    if not fits(low):
        return None
    if fits(high):
        return schedule_of(high)
    inside, outside = low, high
    while outside - inside > 1:
        middle = (inside + outside) // 2
        inside, outside = (middle, outside) if fits(middle) else (inside, middle)
    return schedule_of(max(low, _two_digits(inside)))


def _two_digits(value: int) -> int:
    """``value`` rounded down to two significant digits: 123,456 -> 120,000."""
    step = 10 ** max(0, len(str(value)) - 2)
    return value // step * step
