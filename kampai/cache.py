"""Memo of expensive deterministic stages across runs: joblib ``Memory``, keyed cheaply and exactly.

A stage is keyed by what defines its output: an id of the data rows (data fingerprint,
cv, fold: computed once by the caller, never by hashing a DataFrame), the stage's
parameters, and a hash of the source files of every class in it, so editing a stage's
code invalidates its entries. joblib writes entries atomically (concurrent workers
sharing the directory are safe) and recomputes, with a warning, an entry it cannot load.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import joblib
import sklearn
from sklearn.base import BaseEstimator

from kampai.ids import content_id

STATS_FILE = "hits.jsonl"
_computed = threading.local()


@dataclass(frozen=True)
class StageOutput:
    """A fitted stage and its outputs on the train and test rows of one fold."""

    fitted: BaseEstimator
    train: Any
    test: Any
    seconds: float

    def __deepcopy__(self, memo: dict[int, Any]) -> StageOutput:
        """Outputs are never modified; ``clone`` must not copy the matrices."""
        return self


def stage_key(rows_id: str, path: str, stage: BaseEstimator) -> str:
    """Content id of a stage's work: the rows, its place, its parameters and its code."""
    params = {name: _describe(value) for name, value in stage.get_params(deep=True).items()}
    return content_id(rows_id, path, _describe(stage), params, sorted(code_hash(cls) for cls in _classes(stage)), sklearn.__version__, length=32)


@cache
def code_hash(cls: type) -> str:
    """Hash of the source file defining ``cls`` (any edit to that module invalidates)."""
    try:
        source = Path(inspect.getsourcefile(cls) or "").read_bytes()
    except (TypeError, OSError):
        source = f"{cls.__module__}.{cls.__qualname__}".encode()
    return hashlib.sha256(source).hexdigest()[:16]


def _classes(stage: BaseEstimator) -> set[type]:
    nested = (value for value in stage.get_params(deep=True).values() if hasattr(value, "get_params"))
    return {type(stage), *(type(value) for value in nested)}


def _describe(value: Any) -> Any:
    if hasattr(value, "get_params") or isinstance(value, type):
        cls = value if isinstance(value, type) else type(value)
        return f"{cls.__module__}.{cls.__qualname__}"
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    return value


def _fit_stage(key: str, stage: BaseEstimator, X_train: Any, y_train: Any, X_test: Any) -> StageOutput:
    """Fit ``stage`` and transform both sides; the memoised function (``key`` is all joblib hashes)."""
    _computed.count = _computations() + 1
    start = time.perf_counter()
    train = stage.fit_transform(X_train, y_train)
    test = stage.transform(X_test)
    return StageOutput(stage, train, test, time.perf_counter() - start)


def _computations() -> int:
    """How many stages this thread has computed (not loaded)."""
    return getattr(_computed, "count", 0)


class StageMemo:
    """Fits stages, loading them from ``location`` when an earlier run stored them.

    ``location=None`` turns the memo into a pass-through with the same interface
    (joblib's own ``Memory(None)``), so callers never branch on whether caching is on.

    The memo is an optimisation: a store that cannot be created, read or written never
    fails a stage. The stage is computed, and one ``RuntimeWarning`` line per call says why
    the memo was not used (joblib's own multi-line warnings are folded into it).
    """

    def __init__(self, location: str | os.PathLike[str] | None) -> None:
        self.location = None if location is None else Path(location)
        self._broken: str | None = None
        try:
            memory = joblib.Memory(None if location is None else str(location), verbose=0)
        except OSError as exc:
            self._broken = f"stage memo {location} cannot be used ({exc.strerror or exc}); the stage was computed without it"
            memory = joblib.Memory(None, verbose=0)
        self._cached: Callable[..., StageOutput] = memory.cache(_fit_stage, ignore=["stage", "X_train", "y_train", "X_test"])

    def fit_transform(self, key: str, stage: BaseEstimator, X_train: Any, y_train: Any, X_test: Any) -> tuple[StageOutput, bool]:
        """The stage's output and whether it came from the memo (False: computed now)."""
        problem = self._broken
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                stored = self._cached.check_call_in_cache(key, stage, X_train, y_train, X_test)
                before = _computations()
                output = self._cached(key, stage, X_train, y_train, X_test)
                from_memo = _computations() == before
            except OSError as exc:  # the memo's disk; a stage's own OSError is raised again below
                problem = f"stage memo {self.location} cannot be used ({exc.strerror or exc}); the stage was computed without it"
                stored = from_memo = False
                output = _fit_stage(key, stage, X_train, y_train, X_test)
        for caught_warning in caught:
            if "joblib" in caught_warning.filename:
                problem = problem or f"stage memo entry {key} in {self.location}: {str(caught_warning.message).strip().splitlines()[0]}"
            else:
                warnings.warn_explicit(caught_warning.message, caught_warning.category, caught_warning.filename, caught_warning.lineno)
        if stored and not from_memo:
            problem = f"stage memo entry {key} in {self.location} could not be loaded; it was recomputed and stored again"
        if problem:
            warnings.warn(problem, RuntimeWarning, stacklevel=2)
        return output, from_memo


@dataclass(frozen=True)
class CacheInfo:
    """What ``gridsearch cache info`` shows."""

    location: Path
    entries: int
    bytes: int
    hits: int
    misses: int


def record_hits(location: str | os.PathLike[str], search_id: str, hits: int, misses: int) -> None:
    """Append one run's memo hits and misses to the store's statistics."""
    path = Path(location)
    path.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"search_id": search_id, "hits": hits, "misses": misses, "time": time.time()}) + "\n"
    with open(path / STATS_FILE, "a") as stats:  # one short write: atomic with O_APPEND
        stats.write(line)


def cache_info(location: str | os.PathLike[str]) -> CacheInfo:
    """Entries, size on disk and recorded hits of the memo at ``location``."""
    path = Path(location)
    outputs = list(path.rglob("output.pkl")) if path.is_dir() else []
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0
    hits = misses = 0
    stats = path / STATS_FILE
    if stats.exists():
        for line in stats.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            hits, misses = hits + int(record.get("hits", 0)), misses + int(record.get("misses", 0))
    return CacheInfo(path, len(outputs), size, hits, misses)


def clear_cache(location: str | os.PathLike[str]) -> CacheInfo:
    """Remove every entry and the statistics; returns what was there."""
    info = cache_info(location)
    path = Path(location)
    if path.is_dir():
        joblib.Memory(str(path), verbose=0).clear(warn=False)
        (path / STATS_FILE).unlink(missing_ok=True)
        shutil.rmtree(path / "joblib", ignore_errors=True)
    return info
