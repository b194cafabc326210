"""Durations such as ``1h30min`` parse to seconds; anything else is refused naming the accepted forms."""

from __future__ import annotations

import pytest

from gridsearch.errors import GridsearchError
from gridsearch.search.durations import format_duration, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("30min", 1800.0), ("1h", 3600.0), ("1h30min", 5400.0), ("1.5h", 5400.0), ("2d", 172800.0),
    ("45m", 2700.0), ("1h 30min 15s", 5415.0), (" 2H ", 7200.0), ("3600", 3600.0), ("0.5", 0.5), (3600, 3600.0), (1.5, 1.5),
])
def test_parse_duration_reads_units_and_bare_seconds(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "1hour", "one hour", "1h30", "h1", "0s", "-5", "0", "inf", "nan", True, "1h-30min"])
def test_parse_duration_rejects_what_is_not_a_positive_duration(text: str | float) -> None:
    with pytest.raises(GridsearchError, match=r"is not a positive duration; give .*90s, 30min, 1h, 1h30min"):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(5400, "1h30min"), (90, "1min30s"), (2.5, "2.5s"), (7200, "2h")])
def test_format_duration_writes_what_parse_duration_reads(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text and parse_duration(text) == seconds
