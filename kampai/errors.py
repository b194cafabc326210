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


class UntrustedModelError(RegistryError):
    """A model whose loading would run code it holds; ``option`` is how the caller allows it anyway.

    Python callers pass ``trust_pickle=True``; the CLI names its own option (``--trust-pickle``).
    """

    def __init__(self, uri: str, reason: str, option: str = "trust_pickle=True") -> None:
        self.uri, self.reason = uri, reason
        super().__init__(f"model {uri} would run code when loaded: {reason} (pass {option} if you trust who logged it)")


def one_line(exc: BaseException) -> str:
    """One line naming the cause; connection failures shortened to what happened."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for cause in ("Connection refused", "Name or service not known", "timed out", "unable to open database file"):
        if cause in text:
            return cause.lower() if cause != "Connection refused" else "connection refused"
    return text if len(text) <= 300 else text[:297] + "..."
