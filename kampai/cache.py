"""Memo of expensive deterministic stages across runs: joblib ``Memory``, keyed cheaply and exactly.

A stage is keyed by what defines its output: an id of the data rows (data fingerprint,
cv, fold: computed once by the caller, never by hashing a DataFrame), the stage's
parameters, and a hash of the source files of every class in it, so editing a stage's
code invalidates its entries. joblib writes entries atomically (concurrent workers
sharing the directory are safe) and recomputes, with a warning, an entry it cannot load.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import inspect
import json
import math
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import joblib
import sklearn
from sklearn.base import BaseEstimator

from kampai.compact import compact, expand, stored_bytes
from kampai.ids import content_id

STATS_FILE = "hits.jsonl"
COSTS_DIR = "costs"


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


def _fit_stage(stage: BaseEstimator, X_train: Any, y_train: Any, X_test: Any) -> StageOutput:
    """Fit ``stage`` and transform both sides, timed."""
    start = time.perf_counter()
    train = stage.fit_transform(X_train, y_train)
    test = stage.transform(X_test)
    return StageOutput(stage, train, test, time.perf_counter() - start)


class _NotStored(LookupError):
    """The entry asked for is not in the store (or could not be read): compute it."""


def _stored(key: str, output: StageOutput | None) -> StageOutput:
    """The memoised function: joblib stores ``output`` under ``key`` (all it hashes) and returns it on a hit."""
    if output is None:
        raise _NotStored(key)
    return output


@dataclass(frozen=True)
class MemoPolicy:
    """When an entry is worth its disk: loading it must be clearly cheaper than computing it.

    A new entry is stored when its computation took at least ``min_compute_seconds`` and the
    estimated load (``load_overhead_seconds`` plus its size at ``read_bytes_per_second``) is at
    most ``max_load_share`` of it; an entry whose measured load is above that share is computed
    instead of loaded (and removed). The estimate is conservative (measured here: numeric
    outputs load at over 1 GB/s from the page cache, 3-6 ms per entry); the measured load
    then decides.
    """

    min_compute_seconds: float = 0.05
    max_load_share: float = 0.5
    load_overhead_seconds: float = 0.005
    read_bytes_per_second: float = 500e6

    def estimated_load(self, nbytes: int) -> float:
        return self.load_overhead_seconds + nbytes / self.read_bytes_per_second

    def worth_storing(self, compute_seconds: float, load_seconds: float) -> bool:
        return compute_seconds >= self.min_compute_seconds and load_seconds <= self.max_load_share * compute_seconds

    def worth_loading(self, costs: Costs) -> bool:
        return costs.load_seconds <= self.max_load_share * costs.compute_seconds


ALWAYS = MemoPolicy(min_compute_seconds=0.0, max_load_share=math.inf)
POLICY_VARIABLE = "KAMPAI_MEMO"  # "always": store and load every stage whatever it costs


def default_policy() -> MemoPolicy:
    """The cost rule, or :data:`ALWAYS` when the environment says ``KAMPAI_MEMO=always``."""
    return ALWAYS if os.environ.get(POLICY_VARIABLE, "").strip().lower() == "always" else MemoPolicy()


@dataclass(frozen=True)
class Costs:
    """What an entry cost to compute and, the last time it was loaded, to load: its sidecar."""

    compute_seconds: float
    load_seconds: float

    @classmethod
    def read(cls, path: Path) -> Costs | None:
        """The sidecar at ``path``; None when it is missing or unreadable (the entry is then loaded and timed)."""
        try:
            record = json.loads(path.read_text())
            return cls(float(record["compute_seconds"]), float(record["load_seconds"]))
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def write(self, path: Path) -> None:
        """Replace the sidecar atomically (a reader sees the old or the new one, whole)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            temporary.write_text(json.dumps(asdict(self)))
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)


class StageMemo:
    """Fits stages, loading them from ``location`` when an earlier run stored them.

    ``location=None`` turns the memo into a pass-through with the same interface
    (joblib's own ``Memory(None)``), so callers never branch on whether caching is on.

    What is stored is decided per entry by ``policy`` (:class:`MemoPolicy`): an output cheaper
    to compute than to load is not stored; an entry whose measured load is not clearly cheaper
    than its computation is computed instead. Each entry's costs are in a sidecar,
    ``costs/<key>.json``; outputs are stored in their compact form (:mod:`kampai.compact`).

    The memo is an optimisation: a store that cannot be created, read or written never
    fails a stage. The stage is computed, and one ``RuntimeWarning`` line per call says why
    the memo was not used (joblib's own multi-line warnings are folded into it).
    """

    def __init__(self, location: str | os.PathLike[str] | None, policy: MemoPolicy | None = None) -> None:
        self.location = None if location is None else Path(location)
        self.policy = policy or default_policy()
        self._broken: str | None = None
        try:
            memory = joblib.Memory(None if location is None else str(location), verbose=0)
        except OSError as exc:
            self._broken = f"stage memo {location} cannot be used ({exc.strerror or exc}); the stage was computed without it"
            memory = joblib.Memory(None, verbose=0)
        self._store = location is not None and self._broken is None
        self._cached: Callable[..., StageOutput] = memory.cache(_stored, ignore=["output"], cache_validation_callback=self._worth_loading)

    def fit_transform(self, key: str, stage: BaseEstimator, X_train: Any, y_train: Any, X_test: Any) -> tuple[StageOutput, bool]:
        """The stage's output and whether it came from the memo (False: computed now)."""
        problem = self._broken
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                stored = self._store and self._cached.check_call_in_cache(key, None)
                output = self._load(key) if stored else None
                from_memo = output is not None
                if output is None:
                    output = _fit_stage(stage, X_train, y_train, X_test)
                    self._store_if_worth(key, output)
            except OSError as exc:  # the memo's disk; a stage's own OSError is raised again below
                problem = f"stage memo {self.location} cannot be used ({exc.strerror or exc}); the stage was computed without it"
                from_memo = False
                output = _fit_stage(stage, X_train, y_train, X_test)
        for caught_warning in caught:
            if "joblib" in caught_warning.filename:
                problem = problem or f"stage memo entry {key} in {self.location}: {str(caught_warning.message).strip().splitlines()[0]}"
            else:
                warnings.warn_explicit(caught_warning.message, caught_warning.category, caught_warning.filename, caught_warning.lineno)
        if stored and not from_memo:
            problem = f"stage memo entry {key} in {self.location} could not be loaded; it was recomputed"
        if problem:
            warnings.warn(problem, RuntimeWarning, stacklevel=2)
        return output, from_memo

    def _load(self, key: str) -> StageOutput | None:
        """The stored output, its load timed into the sidecar; None when the entry could not be read."""
        start = time.perf_counter()
        try:
            kept = self._cached(key, None)
        except _NotStored:  # unreadable: removed, so that a cheap stage does not warn again on every run
            with contextlib.suppress(_NotStored, OSError):
                self._cached.call_and_shelve(key, None).clear()
            return None
        output = StageOutput(kept.fitted, expand(kept.train), expand(kept.test), kept.seconds)
        self._write_costs(key, Costs(output.seconds, time.perf_counter() - start))
        return output

    def _store_if_worth(self, key: str, output: StageOutput) -> None:
        """Store ``output`` in its compact form when loading it is expected to be clearly cheaper than computing it."""
        if not self._store or output.seconds < self.policy.min_compute_seconds:  # too cheap: not even compacted
            return
        kept = StageOutput(output.fitted, compact(output.train), compact(output.test), output.seconds)
        measured = Costs.read(self._costs_path(key))
        load = self.policy.estimated_load(stored_bytes(kept.train) + stored_bytes(kept.test)) if measured is None else measured.load_seconds
        if self.policy.worth_storing(output.seconds, load):
            self._cached(key, kept)

    def _worth_loading(self, metadata: dict[str, Any]) -> bool:
        """joblib's validation of a hit: False (the entry is removed and computed) when its last load was too slow."""
        try:
            key = ast.literal_eval(metadata["input_args"]["key"])
        except (KeyError, TypeError, ValueError, SyntaxError):
            return True
        costs = Costs.read(self._costs_path(str(key)))
        return costs is None or self.policy.worth_loading(costs)

    def _write_costs(self, key: str, costs: Costs) -> None:
        with contextlib.suppress(OSError):  # a sidecar that cannot be written only loses a measurement
            costs.write(self._costs_path(key))

    def _costs_path(self, key: str) -> Path:
        return Path(self.location or ".") / COSTS_DIR / f"{key}.json"


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
        shutil.rmtree(path / COSTS_DIR, ignore_errors=True)
        shutil.rmtree(path / "joblib", ignore_errors=True)
    return info
