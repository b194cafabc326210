"""Stop a search whose first fits all fail alike, before it runs thousands of doomed ones.

The first records are held back until one fit succeeds. If the first :data:`FIRST_FITS`
all failed with the same error, the search stops with that error in one line and nothing
is written; otherwise what was held is written and every later record goes straight through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gridsearch.errors import GridsearchError
from gridsearch.log.records import FitRecord, Status

FIRST_FITS = 20


class FailFast:
    """Passes records on to ``write``, holding the first ones back until they prove the search can work.

    ``first_fits=None`` passes every record on at once (failures are expected: the pilot said so).
    """

    def __init__(self, write: Callable[[Sequence[FitRecord]], None], first_fits: int | None = FIRST_FITS) -> None:
        self._write = write
        self._first_fits = first_fits or 0
        self._held: list[FitRecord] | None = [] if first_fits else None

    def __call__(self, records: Sequence[FitRecord]) -> None:
        """Write ``records`` now, or hold them; raise when the first fits all failed alike.

        Raises
        ------
        GridsearchError
            Naming the error, a candidate it came from, and that nothing was recorded.
        """
        if self._held is None:
            self._write(records)
            return
        self._held.extend(records)
        if any(record.status is Status.OK for record in self._held):
            self.flush()
        elif len(self._held) >= self._first_fits:
            errors = {record.error for record in self._held}
            if len(errors) == 1:
                first = self._held[0]
                raise GridsearchError(f"the first {len(self._held)} fits all failed, so the search stopped (nothing recorded): "
                                      f"{first.error} (e.g. candidate {first.candidate_id} {first.params} on fold {first.fold})")
            self.flush()

    def flush(self) -> None:
        """Write what is held (the run ends, or is interrupted); later records go straight through."""
        held, self._held = self._held, None
        if held:
            self._write(held)
