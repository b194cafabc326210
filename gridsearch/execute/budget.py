"""A time budget for a search run: submit only what can finish in time, cancel what runs at the limit.

The executor asks :meth:`Budget.can_start` before each fit task and tells :meth:`Budget.observe`
each batch of records as it arrives; the mean time per fit measured so far predicts how long
the next task takes (one task runs on one worker, so its fits run one after another). A
``Budget(None)`` has no limit: it stands in for "no budget" with the same interface.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

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
