"""The search space: grids or random samples of ``step__param`` values, as candidates with content ids.

Values stay as written in the config (numbers, strings, import paths) so that they can be
hashed, logged and compared; :func:`resolve` turns them into what ``set_params`` takes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import ParameterGrid, ParameterSampler

from gridsearch.search.config import SearchConfig
from kampai.ids import content_id, did_you_mean
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


@dataclass(frozen=True)
class Candidate:
    """One point of the search space.

    Attributes
    ----------
    id : str
        Content hash of pipeline spec, params, data fingerprint and cv.
    params : mapping
        ``step__param`` values as written in the config.
    """

    id: str
    params: Mapping[str, Any]


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


def expand(config: SearchConfig, pipeline: BaseEstimator, scope: Any) -> list[Candidate]:
    """All candidates of the config's space, deduplicated, in scikit-learn's order.

    Grids expand like :class:`~sklearn.model_selection.ParameterGrid` (keys sorted);
    with ``search.n_iter`` the space is sampled like
    :class:`~sklearn.model_selection.ParameterSampler` with ``search.seed``.

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
    if random:
        points: Iterable[Mapping[str, Any]] = ParameterSampler(grids, n_iter=config.space.n_iter, random_state=config.space.seed)
    else:
        points = ParameterGrid(grids)
    candidates: dict[str, Candidate] = {}
    for point in points:
        params = {name: _plain(value) for name, value in sorted(point.items())}
        candidate_id = content_id(scope, params)
        candidates.setdefault(candidate_id, Candidate(candidate_id, params))
    return list(candidates.values())


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
        known = sorted(estimator.get_params(deep=True))
        for name, values in grid.items():
            if name in swapped:
                continue
            if name not in known:
                context = f" of {', '.join(f'{s}={v}' for s, v in chosen.items())}" if chosen else ""
                raise config.error(f"{where}.{name}", f"unknown parameter{context}{did_you_mean(name, known)}")
            if isinstance(values, list):
                for value in values:
                    _check_value(config, f"{where}.{name}", estimator, name, value, steps)


def _check_value(config: SearchConfig, key: str, estimator: BaseEstimator, name: str, value: Any, steps: frozenset[str]) -> None:
    """Let the owning estimator validate the value, as it would at ``fit``."""
    trial = clone(estimator)
    try:
        trial.set_params(**resolve({name: value}, steps))
        owner_name, _, _ = name.rpartition("__")
        owner = trial.get_params(deep=True)[owner_name] if owner_name else trial
        if hasattr(owner, "_parameter_constraints"):  # scikit-learn's own declared checks
            owner._validate_params()
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
