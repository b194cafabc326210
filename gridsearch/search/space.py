"""The search space: grids or random samples of ``step__param`` values, as candidates with content ids.

Values stay as written in the config (numbers, strings, import paths) so that they can be
hashed, logged and compared; :func:`resolve` turns them into what ``set_params`` takes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import ParameterGrid, ParameterSampler

from gridsearch.search.config import SearchConfig
from gridsearch.search.grids import Candidate, Point, ProductSpace
from kampai.ids import content_id, did_you_mean, value_text
from kampai.pipeline import make_estimator

_STEP_LITERALS = ("passthrough", "drop")
_GENERATORS = {
    "logspace": lambda start, stop, num: np.logspace(start, stop, int(num)).tolist(),
    "linspace": lambda start, stop, num: np.linspace(start, stop, int(num)).tolist(),
    "range": lambda start, stop, step=1: list(range(start, stop, step)),
}
_DISTRIBUTIONS = {
    "loguniform": lambda low, high: stats.loguniform(low, high),
    "uniform": lambda low, high: stats.uniform(low, high - low),
    "randint": lambda low, high: stats.randint(low, high + 1),
}


Selects = Callable[[str], bool]  # which parameter names a split or a filter reads


@runtime_checkable
class Members(Protocol):
    """Some candidates of a space (one prefix group's), counted and walked."""

    def __len__(self) -> int: ...

    def walk(self) -> Iterator[Point]:
        """Each candidate, in search-space order, with its params as the run log writes them."""

    def where(self, selects: Selects, accept: Callable[[Mapping[str, Any]], bool]) -> Iterator[Point]:
        """:meth:`walk`, only where ``accept`` takes the candidate's values of the ``selects`` names."""


@runtime_checkable
class Space(Protocol):
    """A search space: :class:`~gridsearch.search.grids.ProductSpace` (grids) or :class:`ListSpace` (samples)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Candidate]: ...

    def split_by(self, selects: Selects) -> list[tuple[dict[str, Any], Members]]:
        """The distinct values of the ``selects`` names, in order of first use, each with its candidates."""

    def firsts(self, selects: Selects, label: Callable[[Mapping[str, Any]], str]) -> list[Candidate]:
        """The first candidate of each distinct ``label`` of its ``selects`` values."""

    def values(self) -> Iterator[Any]:
        """Every value a candidate may take."""


class ListSpace:
    """Candidates one by one (a random sample, or a plan's own list), as a :class:`Space`."""

    def __init__(self, candidates: Iterable[Candidate]) -> None:
        self._candidates = tuple(candidates)

    def __len__(self) -> int:
        return len(self._candidates)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self._candidates)

    def split_by(self, selects: Selects) -> list[tuple[dict[str, Any], Members]]:
        parts: dict[str, tuple[dict[str, Any], _Listed]] = {}
        for candidate in self._candidates:
            values = _selected(candidate, selects)
            parts.setdefault(json.dumps(values, sort_keys=True, default=value_text), (values, _Listed([])))[1].candidates.append(candidate)
        return list(parts.values())

    def firsts(self, selects: Selects, label: Callable[[Mapping[str, Any]], str]) -> list[Candidate]:
        found: dict[str, Candidate] = {}
        for candidate in self._candidates:
            found.setdefault(label(_selected(candidate, selects)), candidate)
        return list(found.values())

    def values(self) -> Iterator[Any]:
        return (value for candidate in self._candidates for value in candidate.params.values())


class _Listed:
    """Candidates of a :class:`ListSpace` that share some values."""

    def __init__(self, candidates: list[Candidate]) -> None:
        self.candidates = candidates

    def __len__(self) -> int:
        return len(self.candidates)

    def walk(self) -> Iterator[Point]:
        return ((candidate, json.dumps(candidate.params, sort_keys=True, default=value_text)) for candidate in self.candidates)

    def where(self, selects: Selects, accept: Callable[[Mapping[str, Any]], bool]) -> Iterator[Point]:
        return (point for point in self.walk() if accept(_selected(point[0], selects)))


def _selected(candidate: Candidate, selects: Selects) -> dict[str, Any]:
    return {name: value for name, value in candidate.params.items() if selects(name)}


def step_names(estimator: BaseEstimator) -> frozenset[str]:
    """Parameter names whose value is a whole step, so a swappable one: an estimator, or a
    ``"passthrough"`` / ``"drop"`` slot that an estimator may take."""
    return frozenset(
        name for name, value in estimator.get_params(deep=True).items()
        if hasattr(value, "get_params") or (isinstance(value, str) and value in _STEP_LITERALS)
    )


def resolve(params: Mapping[str, Any], steps: frozenset[str]) -> dict[str, Any]:
    """Config values to ``set_params`` values: import paths of whole steps become estimators."""
    return {
        name: make_estimator(value) if name in steps and isinstance(value, str) and value not in _STEP_LITERALS else value
        for name, value in params.items()
    }


def expand(config: SearchConfig, pipeline: BaseEstimator, scope: Any) -> Space:
    """All candidates of the config's space, deduplicated, in scikit-learn's order.

    Grids expand like :class:`~sklearn.model_selection.ParameterGrid` (keys sorted), as a
    :class:`~gridsearch.search.grids.ProductSpace` that counts and walks them without
    building them; with ``search.n_iter`` the space is sampled like
    :class:`~sklearn.model_selection.ParameterSampler` with ``search.seed``, and the
    ``n_iter`` samples are built.

    Parameters
    ----------
    scope
        What else defines the work (pipeline spec, data fingerprint, cv), hashed into ids.

    Raises
    ------
    ConfigError
        For unknown ``step__param`` names, invalid values, or a distribution in a grid.
    """
    random = config.space.n_iter is not None
    grids = [_parse_grid(config, i, grid, random) for i, grid in enumerate(config.space.grids)]
    for i, grid in enumerate(grids):
        _validate_grid(config, _where(config, i), grid, pipeline)
    if not random:
        ParameterGrid(grids)  # its checks of the lists, as before
        return ProductSpace([{name: _unique([_plain(value) for value in values]) for name, values in grid.items()} for grid in grids], scope)
    points: Iterable[Mapping[str, Any]] = ParameterSampler(grids, n_iter=config.space.n_iter, random_state=config.space.seed)
    candidates: dict[str, Candidate] = {}
    for point in points:
        params = {name: _plain(value) for name, value in sorted(point.items())}
        candidate_id = content_id(scope, params)
        candidates.setdefault(candidate_id, Candidate(candidate_id, params))
    return ListSpace(candidates.values())


def _where(config: SearchConfig, index: int) -> str:
    return "search.params" if len(config.space.grids) == 1 else f"search.params[{index}]"


def _parse_grid(config: SearchConfig, index: int, grid: Mapping[str, Any], random: bool) -> dict[str, Any]:
    parsed = {}
    for name, values in grid.items():
        key = f"{_where(config, index)}.{name}"
        if isinstance(values, dict) and len(values) == 1 and next(iter(values)) in _GENERATORS:
            parsed[name] = _generate(config, key, values)
        elif isinstance(values, dict):
            if not random:
                raise config.error(key, f"a distribution {values!r} needs random search; set search.n_iter, or give a list of values")
            parsed[name] = _distribution(config, key, values)
        else:
            parsed[name] = _unique(values) if isinstance(values, list) else [values]
    return parsed


def _generate(config: SearchConfig, key: str, spec: dict[str, Any]) -> list[Any]:
    """``{logspace: [start, stop, num]}``, ``{linspace: [...]}``, ``{range: [start, stop, step]}``."""
    (kind, args), = spec.items()
    numbers = isinstance(args, list) and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
    if kind == "range":
        usage = "[start, stop] or [start, stop, step] of integers, step not 0"
        valid = numbers and len(args) in (2, 3) and all(isinstance(a, int) for a in args) and args[2:] != [0]
    else:
        usage = f"[start, stop, num] with an integer num >= 1{' (powers of ten)' if kind == 'logspace' else ''}"
        valid = numbers and len(args) == 3 and isinstance(args[2], int) and args[2] >= 1
    values = _GENERATORS[kind](*args) if valid else []
    if not values:
        raise config.error(key, f"{kind} needs {usage}, found {args!r}")
    return values


def _distribution(config: SearchConfig, key: str, spec: dict[str, Any]) -> Any:
    allowed = "one of {loguniform: [low, high]}, {uniform: [low, high]}, {randint: [low, high]} (inclusive), {choice: [values]}"
    if len(spec) != 1:
        raise config.error(key, f"expected {allowed}, found {spec!r}")
    (kind, args), = spec.items()
    if kind == "choice" and isinstance(args, list) and args:
        return list(args)
    if kind not in _DISTRIBUTIONS:
        raise config.error(key, f"unknown distribution {kind!r}{did_you_mean(str(kind), [*_DISTRIBUTIONS, 'choice'])}; expected {allowed}")
    numeric = isinstance(args, list) and len(args) == 2 and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
    if not numeric or not args[0] < args[1] or (kind == "loguniform" and args[0] <= 0):
        raise config.error(key, f"{kind} needs [low, high] with low < high{' and low > 0' if kind == 'loguniform' else ''}, found {args!r}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise config.error(key, f"randint needs integer bounds, found {args!r}")
    return _DISTRIBUTIONS[kind](*args)


def _validate_grid(config: SearchConfig, where: str, grid: Mapping[str, Any], pipeline: BaseEstimator) -> None:
    """Check names against ``get_params()`` for every combination of swapped steps, then values."""
    steps = step_names(pipeline)
    swapped = sorted(name for name in grid if name in steps)
    swaps = [grid[name] if isinstance(grid[name], list) else [None] for name in swapped]
    for combination in itertools.product(*swaps):
        chosen = {name: value for name, value in zip(swapped, combination) if value is not None}
        try:
            estimator = clone(pipeline).set_params(**resolve(chosen, steps))
        except (ValueError, TypeError) as exc:
            raise config.error(f"{where}.{next(iter(chosen), '')}", str(exc)) from None
        owners = estimator.get_params(deep=True)
        known = sorted(owners)
        for name, values in grid.items():
            if name in swapped:
                continue
            if name not in known:
                context = f" of {', '.join(f'{s}={v}' for s, v in chosen.items())}" if chosen else ""
                raise config.error(f"{where}.{name}", f"unknown parameter{context}{did_you_mean(name, known)}")
            if isinstance(values, list):
                for value in values:
                    _check_value(config, f"{where}.{name}", owners.get(name.rpartition("__")[0], estimator), name, value, steps)


def _check_value(config: SearchConfig, key: str, owner: Any, name: str, value: Any, steps: frozenset[str]) -> None:
    """Let the estimator owning ``name`` validate the value, as it would at ``fit``.

    A copy of the owner alone takes the value, not of the whole pipeline: a grid of many
    values is checked in milliseconds per value, not tens.
    """
    trial = clone(owner, safe=False)
    try:
        trial.set_params(**{name.rpartition("__")[2]: resolve({name: value}, steps)[name]})
        if hasattr(trial, "_parameter_constraints"):  # scikit-learn's own declared checks
            trial._validate_params()
    except (ValueError, TypeError) as exc:
        raise config.error(key, f"{str(exc).splitlines()[0]} (value {value!r})") from None


def _unique(values: list[Any]) -> list[Any]:
    """Values without repeats, first occurrence kept (lists and dicts included)."""
    unique: dict[str, Any] = {}
    for value in values:
        unique.setdefault(json.dumps(value, sort_keys=True, default=repr), value)
    return list(unique.values())


def _plain(value: Any) -> Any:
    """Numpy scalars to Python ones, so params are JSON."""
    return value.item() if isinstance(value, np.generic) else value
