"""The progress bar of a search: fits done, rate, ETA, and the best mean score so far."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from gridsearch.log.records import FitRecord


class Progress:
    """A tqdm bar of fits, with the best mean score among fully scored candidates."""

    def __init__(self, scorer: str, folds: int, total: int, initial: int, enabled: bool) -> None:
        self._scorer = scorer
        self._folds = folds
        self._scores: dict[str, list[float]] = {}
        self._best = float("-inf")
        self._bar = tqdm(total=total, initial=initial, unit="fit", disable=not enabled, file=sys.stderr)

    def update(self, records: Sequence[FitRecord]) -> None:
        """Count ``records`` and refresh the best mean score."""
        for record in records:
            scores = self._scores.setdefault(record.candidate_id, [])
            scores.append(record.scores.get(self._scorer, float("nan")))
            if len(scores) == self._folds:
                self._best = max(self._best, float(np.mean(scores))) if not np.isnan(scores).any() else self._best
                del self._scores[record.candidate_id]
        self._bar.update(len(records))
        if self._best > float("-inf"):
            self._bar.set_postfix_str(f"best {self._scorer}={self._best:.4g}", refresh=False)

    def close(self) -> None:
        """End the bar."""
        self._bar.close()
