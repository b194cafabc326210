"""The one exception base of the engine; the CLI turns it into a one-line message.

Messages name what a Python caller controls (a config key, a parameter); the CLI adds its
own option names.
"""

from __future__ import annotations

import os


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


class ArgumentError(GridsearchError):
    """A bad argument of a library call; ``argument`` names the parameter (the CLI, its option)."""

    def __init__(self, argument: str, problem: str) -> None:
        self.argument, self.problem = argument, problem
        super().__init__(f"{argument}: {problem}")


class CandidateFailed(GridsearchError):
    """A fit raised while ``search.error_score`` is ``raise``; ``traceback`` holds the worker's."""

    def __init__(self, message: str, traceback: str) -> None:
        super().__init__(message)
        self.traceback = traceback


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C: what was recorded is kept in ``log_path``; the message says how to resume."""

    def __init__(self, log_path: str | os.PathLike[str]) -> None:
        self.log_path = log_path
        super().__init__(f"interrupted; every finished fit is in {log_path}. Resume with gridsearch.resume({str(log_path)!r})")
