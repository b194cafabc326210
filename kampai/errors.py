"""Exceptions raised by kampai."""

from __future__ import annotations


class KampaiError(ValueError):
    """Base of every error kampai raises on purpose.

    Messages are one line: the problem, then the fix in parentheses.
    """


class DataError(KampaiError):
    """Bad data input: a missing, unsupported or unreadable data source."""


class RegistryError(KampaiError):
    """The MLflow tracking store or model registry refused or could not be reached."""


def one_line(exc: BaseException) -> str:
    """One line naming the cause; connection failures shortened to what happened."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for cause in ("Connection refused", "Name or service not known", "timed out", "unable to open database file"):
        if cause in text:
            return cause.lower() if cause != "Connection refused" else "connection refused"
    return text if len(text) <= 300 else text[:297] + "..."
