"""The one exception base of the engine; the CLI turns it into a one-line message."""

from __future__ import annotations


class GridsearchError(ValueError):
    """Bad input to the engine: a config, a search space, a log."""


class ConfigError(GridsearchError):
    """A config value that cannot be used, located by file and key.

    Parameters
    ----------
    source : str
        The config file (and ``--set`` when the value came from an override).
    key : str
        Dotted path of the offending key, e.g. ``cv.folds``.
    problem : str
        What is allowed and what was found.
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


class CandidateFailed(GridsearchError):
    """A fit raised while ``search.error_score`` is ``raise``; ``traceback`` holds the worker's."""

    def __init__(self, message: str, traceback: str) -> None:
        super().__init__(message)
        self.traceback = traceback


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C: what was recorded is kept; the message says how to resume."""
