"""Load ``conf/search.yaml``, apply ``--set`` overrides and check every key before any work.

Only the shape of the config is checked here (keys, types, ranges). What needs the
pipeline or the data (``step__param`` names, the target column) is checked by
:mod:`gridsearch.search.space` and :mod:`gridsearch.search.inputs`, still before anything is computed.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gridsearch.errors import ConfigError, GridsearchError
from gridsearch.search.durations import parse_duration
from kampai.data import SYNTHETIC_SOURCE
from kampai.ids import did_you_mean

_REQUIRED = object()


@dataclass(frozen=True)
class _Field:
    """One allowed key: accepted types, default, and an extra check returning a problem."""

    types: tuple[type, ...]
    default: Any = _REQUIRED
    check: Callable[[Any], str | None] | None = None
    allowed: str = ""


def _at_least(low: int) -> Callable[[Any], str | None]:
    return lambda value: None if value is None or value >= low else f"must be >= {low}"


def _fraction(value: float | None) -> str | None:
    return None if value is None or 0 < value < 1 else "must be between 0 and 1"


def _error_score(value: Any) -> str | None:
    return None if not isinstance(value, str) or value in ("raise", "nan") else "not 'raise' or 'nan'"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"not one of {', '.join(choices)}"


def _non_empty(value: Any) -> str | None:
    return None if value else "must not be empty"


def _count_or(*words: str) -> Callable[[Any], str | None]:
    return lambda value: None if value in words or (isinstance(value, int) and value >= 1) else f"not an integer >= 1 or {' or '.join(words)}"


def _above_one(value: float) -> str | None:
    return None if value > 1 else "must be > 1"


def _duration(value: Any) -> str | None:
    if value is None:
        return None
    try:
        parse_duration(value)
    except GridsearchError:
        return "not a positive duration"
    return None


_INT, _STR, _BOOL, _NONE = (int,), (str,), (bool,), (type(None),)
_HALVING: dict[str, tuple[Any, ...]] = {  # search.<key> of successive halving, as scikit-learn's halving classes name them
    "resource": (_STR, "n_samples", _non_empty, "'n_samples' or a step__param of the pipeline, e.g. model__n_estimators"),
    "factor": ((int, float), 3, _above_one, "the share of candidates kept after each round, as 1/factor (> 1)"),
    "min_resources": (_INT + _STR, "exhaust", _count_or("exhaust", "smallest"), "an integer >= 1, 'exhaust' or 'smallest'"),
    "max_resources": (_INT + _STR, "auto", _count_or("auto"), "an integer >= 1 or 'auto' (every row)"),
    "aggressive_elimination": (_BOOL, False, None, "true or false"),
}
# search.<key> of successive halving that changes how a round fits, not what it scores (so not part of the search id)
_GROWTH: dict[str, tuple[Any, ...]] = {
    "grow_ensembles": (_BOOL, False, None, "true or false (grow each round's forests in the next, along model__n_estimators)"),
}
_SCHEMA: dict[str, dict[str, _Field]] = {
    "data": {
        "source": _Field(_STR, SYNTHETIC_SOURCE, _non_empty, f"'{SYNTHETIC_SOURCE}' or a CSV/Parquet path"),
        "target": _Field(_STR, "fare_amount", _non_empty, "a column name"),
        "rows": _Field(_INT + _NONE, None, _at_least(1), "a row count >= 1 or null for all rows"),
        "seed": _Field(_INT, 0, None, "an integer seed for the synthetic generator"),
        "clean": _Field(_BOOL, True, None, "true or false"),
        "test_size": _Field((float,) + _NONE, None, _fraction, "null or a held-out fraction between 0 and 1, kept out of the search"),
        "workers": _Field(_STR, "auto", _one_of("auto", "ship", "read"),
                          "'ship' (the client sends the rows), 'read' (each worker reads data.source) or 'auto'"),
    },
    "pipeline": {
        "factory": _Field(_STR + _NONE, None, None, "'module:function' returning an estimator"),
        "steps": _Field((list,) + _NONE, None, None, "a list of {name, estimator, params}"),
    },
    "search": {
        "params": _Field((dict, list), _REQUIRED, None, "a grid {step__param: [values]} or a list of grids"),
        "n_iter": _Field(_INT + _NONE, None, _at_least(1), "null for grid search or a sample count >= 1"),
        "seed": _Field(_INT, 0, None, "an integer seed for random search"),
        "error_score": _Field((int, float, str) + _NONE, "nan", _error_score, "'raise', 'nan' or a number, as in scikit-learn"),
        "budget": _Field((int, float, str) + _NONE, None, _duration,
                         "null (no time limit), a number of seconds or a duration such as 90s, 30min, 1h, 1h30min"),
        "strategy": _Field(_STR, "grid", _one_of("grid", "halving"), "'grid' (every candidate on every row) or 'halving'"),
        **{key: _Field(*spec) for key, spec in {**_HALVING, **_GROWTH}.items()},
    },
    "cv": {
        "folds": _Field(_INT, 5, _at_least(2), "an integer >= 2"),
        "shuffle": _Field(_BOOL, False, None, "true or false"),
        "seed": _Field(_INT + _NONE, None, None, "an integer seed or null"),
    },
    "registry": {
        "model_name": _Field(_STR, "taxifare", _non_empty, "the registered model name"),
        "alias": _Field(_STR, "champion", _non_empty, "the alias given to the best promoted version"),
        "tracking_uri": _Field(_STR + _NONE, None, None, "null (MLFLOW_TRACKING_URI or sqlite:///mlflow.db) or an MLflow tracking URI"),
    },
    "cache": {
        "dir": _Field(_STR + _NONE, "cache", None, "a directory for the stage memo, or null to turn it off"),
        "stages": _Field((str, list), "all", None, "'all' or a list of raw stages to memoise, e.g. [features__geohash]"),
    },
    "cluster": {
        "address": _Field(_STR + _NONE, None, None, "null for a LocalCluster or a scheduler address"),
        "workers": _Field(_INT + _NONE, None, _at_least(1), "a worker count >= 1 or null for one per core"),
        "dashboard": _Field(_STR + _NONE, "127.0.0.1:8787", None, "host:port for the dashboard or null"),
    },
}
_TOP_LEVEL: dict[str, _Field] = {
    "scoring": _Field((str, list), _REQUIRED, None, "a scikit-learn scorer name or a list of them"),
    "log": _Field(_STR, "runs", _non_empty, "a directory"),
}


@dataclass(frozen=True)
class DataConfig:
    source: str
    target: str
    rows: int | None
    seed: int
    clean: bool
    test_size: float | None
    workers: str

    @property
    def is_synthetic(self) -> bool:
        return self.source == SYNTHETIC_SOURCE


@dataclass(frozen=True)
class PipelineConfig:
    factory: str | None
    steps: tuple[Mapping[str, Any], ...] | None

    def spec(self) -> Any:
        """What defines the pipeline, for content ids."""
        return self.factory if self.factory else [dict(step) for step in self.steps or ()]


@dataclass(frozen=True)
class SpaceConfig:
    grids: tuple[Mapping[str, Any], ...]
    n_iter: int | None
    seed: int
    halving: HalvingConfig | None = None  # None: every candidate on every row


@dataclass(frozen=True)
class HalvingConfig:
    """``search.strategy: halving`` and its settings, with scikit-learn's names and meanings.

    ``grow_ensembles`` changes how the rounds fit, not their scores: :meth:`as_dict` (what the
    search id hashes) leaves it out.
    """

    resource: str
    factor: float
    min_resources: int | str
    max_resources: int | str
    aggressive_elimination: bool
    grow_ensembles: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _HALVING}


@dataclass(frozen=True)
class CVConfig:
    folds: int
    shuffle: bool
    seed: int | None


@dataclass(frozen=True)
class RegistryConfig:
    model_name: str
    alias: str
    tracking_uri: str | None


@dataclass(frozen=True)
class CacheConfig:
    """``dir`` None: no memo. ``stages`` None: every raw stage."""

    dir: Path | None
    stages: frozenset[str] | None


@dataclass(frozen=True)
class ClusterConfig:
    address: str | None
    workers: int | None
    dashboard: str | None


@dataclass(frozen=True)
class SearchConfig:
    """A validated search config; ``source`` names where it came from, for messages."""

    source: str
    path: Path | None
    data: DataConfig
    pipeline: PipelineConfig
    space: SpaceConfig
    cv: CVConfig
    scoring: tuple[str, ...]
    error_score: float | str
    registry: RegistryConfig
    cluster: ClusterConfig
    cache: CacheConfig
    log_dir: Path
    raw: Mapping[str, Any]
    budget: float | None = None  # seconds (search.budget): a limit of each run, not part of the search

    def error(self, key: str, problem: str) -> ConfigError:
        """A :class:`ConfigError` located in this config."""
        return ConfigError(self.source, key, problem)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["cv.folds=5", "search.params.model__alpha=[1, 2]"]`` into a dict.

    Values are read as YAML, so ``5`` is an int, ``[1, 2]`` a list and ``null`` None.
    """
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", item, "expected KEY=VALUE, e.g. --set cv.folds=5")
        try:
            overrides[key.strip()] = _load_yaml(text, "--set", key.strip())
        except yaml.YAMLError as exc:
            raise ConfigError("--set", key, f"value is not valid YAML: {text!r} ({exc.problem})") from None
    return overrides


def load_config(path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> SearchConfig:
    """Read, override and validate a search config.

    Parameters
    ----------
    path : path-like
        The YAML file.
    overrides : mapping, optional
        Dotted keys (``"cv.folds"``) or nested dicts, applied on top of the file.

    Raises
    ------
    ConfigError
        On the first problem, naming the file and the key.
    """
    return from_mapping(_read_yaml(Path(path)), str(path), overrides, Path(path).resolve())


def from_mapping(raw: Mapping[str, Any], source: str, overrides: Mapping[str, Any] | None = None, path: Path | None = None) -> SearchConfig:
    """Validate a config already read (e.g. the copy a run log keeps).

    ``source`` names it in errors; ``path`` is the YAML file it came from, if any.
    """
    raw = copy.deepcopy(dict(raw))
    if overrides:
        source += " (with overrides)"
        raw = _apply_overrides(raw, overrides)
    return _validate(source, raw, path)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(str(path), "", "config file not found (give the path of a search YAML, e.g. conf/search.yaml)") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read config file ({type(exc).__name__}: {exc})") from None
    try:
        raw = _load_yaml(text, str(path), "")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(str(path), "", f"YAML syntax error at {where}: {exc.problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "", f"expected a mapping of sections (data, pipeline, search, ...), found {_kind(raw)}")
    return raw


class _DuplicateKey(Exception):
    def __init__(self, key: Any, lines: tuple[int, int]) -> None:
        super().__init__(key)
        self.key, self.lines = key, lines


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error, not 'the last wins'."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # an unhashable key: the base loader reports it
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(key, (seen[key], line))
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, source: str, key: str) -> Any:
    """``text`` read as YAML (safe types only); a duplicate key is a :class:`ConfigError` naming both lines."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe types only
    except _DuplicateKey as exc:
        where = f"{key}.{exc.key}" if key else str(exc.key)
        raise ConfigError(source, where, f"given twice, at lines {exc.lines[0]} and {exc.lines[1]}; keep one") from None


def _apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = raw
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = merged
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError("overrides", dotted, f"{'.'.join(parents[: i + 1])} is not a section")
            node = child
        if isinstance(value, Mapping) and isinstance(node.get(leaf), dict) and leaf != "params":
            node[leaf] = {**node[leaf], **value}
        else:
            node[leaf] = value
    return merged


def _validate(source: str, raw: dict[str, Any], path: Path | None) -> SearchConfig:
    allowed_top = sorted([*_SCHEMA, *_TOP_LEVEL])
    _reject_unknown(source, "", raw, allowed_top)
    sections = {}
    for name, fields in _SCHEMA.items():
        section = raw.get(name, {})
        if name == "pipeline" and isinstance(section, str):
            section = {"factory": section}
        if name == "cache" and isinstance(section, str):
            section = {"dir": section}
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise ConfigError(source, name, f"expected a mapping with keys {sorted(fields)}, found {_kind(section)}")
        _reject_unknown(source, name, section, sorted(fields))
        sections[name] = {key: _value(source, f"{name}.{key}", section, key, field) for key, field in fields.items()}
    top = {key: _value(source, key, raw, key, field) for key, field in _TOP_LEVEL.items()}
    error_score = sections["search"]["error_score"]
    return SearchConfig(
        source=source,
        path=path,
        data=DataConfig(**sections["data"]),
        pipeline=_pipeline(source, sections["pipeline"]),
        space=SpaceConfig(grids=_grids(source, sections["search"]["params"]), n_iter=sections["search"]["n_iter"], seed=sections["search"]["seed"],
                          halving=_halving(source, sections["search"], raw.get("search") or {})),
        cv=CVConfig(**sections["cv"]),
        scoring=_scoring(source, top["scoring"]),
        error_score="raise" if error_score == "raise" else float("nan" if error_score is None else error_score),
        registry=RegistryConfig(**sections["registry"]),
        cluster=ClusterConfig(**sections["cluster"]),
        cache=_cache(source, sections["cache"]),
        log_dir=Path(top["log"]),
        raw=raw,
        budget=None if sections["search"]["budget"] is None else parse_duration(sections["search"]["budget"]),
    )


def _halving(source: str, search: Mapping[str, Any], given: Mapping[str, Any]) -> HalvingConfig | None:
    """The halving settings when ``search.strategy`` is ``halving``; a setting of it given otherwise is refused."""
    if search["strategy"] != "halving":
        for key in {**_HALVING, **_GROWTH}:
            if key in given:
                raise ConfigError(source, f"search.{key}", "a setting of successive halving: set search.strategy: halving, or remove it")
        return None
    return HalvingConfig(**{key: search[key] for key in {**_HALVING, **_GROWTH}})


def _reject_unknown(source: str, where: str, mapping: Mapping[str, Any], allowed: list[str]) -> None:
    for key in mapping:
        if key not in allowed:
            dotted = f"{where}.{key}" if where else str(key)
            raise ConfigError(source, dotted, f"unknown key{did_you_mean(str(key), allowed)} (allowed: {', '.join(allowed)})")


def _value(source: str, dotted: str, mapping: Mapping[str, Any], key: str, field: _Field) -> Any:
    if key not in mapping:
        if field.default is _REQUIRED:
            raise ConfigError(source, dotted, f"missing; expected {field.allowed}")
        return field.default
    value = mapping[key]
    type_ok = isinstance(value, field.types) and not (isinstance(value, bool) and bool not in field.types)
    problem = None if type_ok else "wrong type"
    if type_ok and field.check is not None:
        problem = field.check(value)
    if problem:
        raise ConfigError(source, dotted, f"expected {field.allowed}, found {value!r} ({problem})")
    return value


def _pipeline(source: str, section: dict[str, Any]) -> PipelineConfig:
    factory, steps = section["factory"], section["steps"]
    if (factory is None) == (steps is None):
        raise ConfigError(source, "pipeline", "give exactly one of pipeline.factory ('module:function') or pipeline.steps (a list of steps)")
    if factory is not None and ":" not in factory:
        raise ConfigError(source, "pipeline.factory", f"expected 'module:function', found {factory!r}")
    if steps is not None:
        if not steps:
            raise ConfigError(source, "pipeline.steps", "must list at least one step")
        for i, step in enumerate(steps):
            where = f"pipeline.steps[{i}]"
            if not isinstance(step, dict) or not {"name", "estimator"} <= set(step) or set(step) - {"name", "estimator", "params"}:
                raise ConfigError(source, where, f"expected {{name: str, estimator: import.path, params: {{...}}}}, found {step!r}")
            if not isinstance(step.get("params", {}), dict):
                raise ConfigError(source, f"{where}.params", f"expected a mapping of constructor arguments, found {_kind(step['params'])}")
        steps = tuple(steps)
    return PipelineConfig(factory=factory, steps=steps)


def _grids(source: str, params: dict[str, Any] | list[Any]) -> tuple[Mapping[str, Any], ...]:
    grids = params if isinstance(params, list) else [params]
    if not grids:
        raise ConfigError(source, "search.params", "empty list of grids; give at least one {step__param: [values]}")
    for i, grid in enumerate(grids):
        where = "search.params" if isinstance(params, dict) else f"search.params[{i}]"
        if not isinstance(grid, dict) or not grid:
            raise ConfigError(source, where, f"expected a non-empty grid {{step__param: [values]}}, found {grid!r}")
        for key, values in grid.items():
            if isinstance(values, list) and not values:
                raise ConfigError(source, f"{where}.{key}", "empty list of values; give at least one value")
    return tuple(grids)


def _cache(source: str, section: dict[str, Any]) -> CacheConfig:
    stages = section["stages"]
    if isinstance(stages, str) and stages != "all":
        raise ConfigError(source, "cache.stages", f"expected 'all' or a list of stage paths, found {stages!r}")
    if isinstance(stages, list) and not all(isinstance(stage, str) for stage in stages):
        raise ConfigError(source, "cache.stages", f"expected a list of stage paths such as features__geohash, found {stages!r}")
    return CacheConfig(dir=None if section["dir"] is None else Path(section["dir"]), stages=None if stages == "all" else frozenset(stages))


def _scoring(source: str, scoring: str | list[Any]) -> tuple[str, ...]:
    from sklearn.metrics import get_scorer_names

    names = [scoring] if isinstance(scoring, str) else scoring
    if not names:
        raise ConfigError(source, "scoring", "empty list; give at least one scorer name, e.g. neg_root_mean_squared_error")
    known = sorted(get_scorer_names())
    for name in names:
        if not isinstance(name, str) or name not in known:
            raise ConfigError(source, "scoring", f"unknown scorer {name!r}{did_you_mean(str(name), known)} (see sklearn.metrics.get_scorer_names())")
    if len(set(names)) != len(names):
        raise ConfigError(source, "scoring", f"scorer listed twice in {names}")
    return tuple(names)


def _kind(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"
