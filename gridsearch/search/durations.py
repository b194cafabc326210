"""Durations as people write them: ``90s``, ``30min``, ``1h``, ``1h30min``, ``1.5h``; read and written."""

from __future__ import annotations

import math
import re

from gridsearch.errors import GridsearchError

_UNITS = {"d": 86400.0, "h": 3600.0, "min": 60.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(d|h|min|m|s)")
_WRITTEN = (("h", 3600), ("min", 60), ("s", 1))  # the units format_duration writes, largest first
_FORMS = "a number of seconds or amounts with units d, h, min (or m), s, e.g. 90s, 30min, 1h, 1h30min, 1.5h"


def parse_duration(text: str | float) -> float:
    """Seconds in a duration such as ``"1h30min"``; a bare number is seconds.

    Parameters
    ----------
    text : str or float
        ``"90s"``, ``"30min"``, ``"1h"``, ``"1h30min"``, ``"1.5h"``, ``"2d"``, ``"3600"`` or ``3600``.

    Returns
    -------
    float
        The duration in seconds, greater than zero.

    Raises
    ------
    GridsearchError
        When ``text`` is not such a duration, or is not positive.
    """
    seconds = _seconds(text)
    if seconds is None or not 0 < seconds < math.inf:
        raise GridsearchError(f"{text!r} is not a positive duration; give {_FORMS}")
    return seconds


def _seconds(text: str | float) -> float | None:
    """The seconds ``text`` spells, or None when it spells no duration."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        return float(text)
    compact = str(text).strip().lower().replace(" ", "")
    try:
        return float(compact)
    except ValueError:
        pass
    parts = _PART.findall(compact)
    if not parts or "".join(number + unit for number, unit in parts) != compact:
        return None
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def format_duration(seconds: float) -> str:
    """``seconds`` as :func:`parse_duration` reads it back: ``1h30min``, ``1min30s``, ``2.5s``."""
    parts, left = [], seconds
    for unit, size in _WRITTEN:
        amount = left // size if size > 1 else left
        if amount:
            parts.append(f"{amount:g}{unit}")
            left -= amount * size
    return "".join(parts) or f"{seconds:g}s"
