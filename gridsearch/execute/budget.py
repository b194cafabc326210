"""A time budget for a search run: submit only what can finish in time, cancel what runs at the limit.

The executor asks :meth:`Budget.can_start` before each fit task and tells :meth:`Budget.observe`
each batch of records as it arrives; the mean time per fit measured so far predicts how long
the next task takes (one task runs on one worker, so its fits run one after another). A
``Budget(None)`` has no limit: it stands in for "no budget" with the same interface.
A halving search asks :class:`RoundBudget` before each round instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gridsearch.errors import GridsearchError
from gridsearch.log.records import FitRecord, Status
from gridsearch.search.durations import format_duration

Clock = Callable[[], float]  # seconds, monotonic


class Budget:
    """A deadline ``seconds`` after ``started`` (default: now), and the time per fit so far.

    Parameters
    ----------
    seconds : float or None
        The budget; None for none (every answer as if there were all the time in the world).
    started : float, optional
        When the budget started, on ``clock``'s scale.
    clock : callable
        Current time in seconds (``time.monotonic``; tests inject their own).
    """

    def __init__(self, seconds: float | None, started: float | None = None, clock: Clock = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._deadline = math.inf if seconds is None else (clock() if started is None else started) + seconds
        self._fit_seconds = 0.0
        self._fits = 0
        self.stopped = False  # True once the budget refused work, or its limit passed

    @property
    def per_fit(self) -> float | None:
        """Mean seconds per fit (fit and score) of the fits recorded so far; None before the first."""
        return self._fit_seconds / self._fits if self._fits else None

    def observe(self, records: Sequence[FitRecord]) -> None:
        """Learn from one task's records: its fits' fit and score times (lost fits have none)."""
        for record in records:
            seconds = record.fit_time + record.score_time
            if record.status is not Status.LOST and math.isfinite(seconds):
                self._fit_seconds += seconds
                self._fits += 1

    def can_start(self, fits: int) -> bool:
        """Whether a task of ``fits`` fits, started now, would end before the deadline.

        Before any fit was measured there is no estimate: the answer is yes until the deadline.
        """
        now = self._clock()
        per_fit = self.per_fit
        in_time = now < self._deadline and (per_fit is None or now + fits * per_fit <= self._deadline)
        self.stopped = self.stopped or not in_time
        return in_time

    def remaining(self) -> float | None:
        """Seconds to the hard limit (0 once passed); None without a budget."""
        if self.seconds is None:
            return None
        return max(0.0, self._deadline - self._clock())

    def reached(self) -> bool:
        """Whether the hard limit has passed (then the budget counts as stopped)."""
        passed = self._clock() >= self._deadline
        self.stopped = self.stopped or passed
        return passed

    def __str__(self) -> str:
        """The budget as people write it, e.g. ``1h30min`` (``none`` without one)."""
        return "none" if self.seconds is None else format_duration(self.seconds)


Predict = Callable[[int, int], float]  # seconds of a round of (candidates, resources)


class RoundBudget:
    """The rounds of a halving search under ``budget``: a round starts only if its predicted time ends before the deadline.

    ``predict(candidates, resources)`` is the cost model's wall seconds of a round, corrected by
    how long the rounds so far took against their prediction. Without one, a round is
    predicted from the one before, scaled by candidates x resources (the first always starts).
    """

    def __init__(self, budget: Budget, predict: Predict | None = None, clock: Clock = time.monotonic) -> None:
        self.budget = budget
        self._predict = predict
        self._clock = clock
        self._taken = self._foreseen = 0.0
        self._last: tuple[int, int, float] | None = None  # candidates, resources, seconds of the last round done
        self.done = 0  # rounds run to their end
        self.refused = 0  # rounds not started

    def predicted(self, candidates: int, resources: int) -> float | None:
        """Wall seconds a round of ``candidates`` on ``resources`` should take (None: nothing to predict from yet)."""
        if self._predict is not None:
            return self._predict(candidates, resources) * (self._taken / self._foreseen if self._foreseen > 0 else 1.0)
        if self._last is None:
            return None
        done_candidates, done_resources, seconds = self._last
        return seconds * candidates * resources / (done_candidates * done_resources)

    def can_start(self, candidates: int, resources: int) -> bool:
        """Whether the round would end before the deadline; once one is refused, none starts."""
        remaining = self.budget.remaining()
        seconds = self.predicted(candidates, resources)
        in_time = remaining is None or (not self.refused and remaining > 0 and (seconds is None or seconds <= remaining))
        self.budget.stopped = self.budget.stopped or not in_time
        return in_time

    def finished(self, candidates: int, resources: int, seconds: float) -> None:
        """Learn from a round run to its end."""
        if self._predict is not None:
            self._taken += seconds
            self._foreseen += self._predict(candidates, resources)
        self._last = (candidates, resources, seconds)
        self.done += 1

    def gate(self, evaluate: Callable[..., Mapping[str, Any]]) -> Callable[..., Mapping[str, Any]]:
        """scikit-learn's ``evaluate_candidates`` of a halving fit, asking first: a refused round fits nothing and
        gives back the results so far (so no candidate goes on and the fit ends with the rounds done)."""
        results: Mapping[str, Any] | None = None

        def evaluate_in_time(candidate_params: Iterable[Mapping[str, Any]], cv: Any = None,
                             more_results: Mapping[str, list[Any]] | None = None, **kwargs: Any) -> Mapping[str, Any]:
            nonlocal results
            candidates = list(candidate_params)
            resources = int(((more_results or {}).get("n_resources") or [0])[0])  # none after a refused round: no one left
            if not self.can_start(len(candidates), resources):
                self.refused += 1
                if results is None:
                    raise GridsearchError(f"budget of {self.budget} reached before the first halving round, so nothing was recorded; "
                                          "give a longer search.budget (--budget)")
                return results
            start = self._clock()
            results = evaluate(candidates, cv, more_results, **kwargs)
            self.finished(len(candidates), resources, self._clock() - start)
            return results

        return evaluate_in_time
