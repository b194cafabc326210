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
