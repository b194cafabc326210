"""A search before any work: its inputs loaded, its space expanded and its plan made; nothing computed."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sklearn.base import BaseEstimator, clone

from gridsearch.search.config import SearchConfig, from_mapping, load_config
from gridsearch.search.dataset import Dataset, Holdout
from gridsearch.search.inputs import SearchInputs, load_inputs
from gridsearch.search.plan import Plan, make_plan
from gridsearch.search.space import Candidate, Space, expand, resolve, step_names
from gridsearch.search.stages import raw_stages
from kampai.ids import content_id, did_you_mean


@dataclass(frozen=True)
class PreparedSearch:
    """Everything known before any work is sent: validated, expanded, planned.

    ``search_id`` hashes the scope and the scorers: one id for the log directory, the
    records and the Dask task keys. ``space`` counts and walks the candidates without
    holding them (a grid of 10^7 is a few lists of values).
    """

    inputs: SearchInputs
    search_id: str
    space: Space
    plan: Plan

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """Every candidate, built now (each call): for results and small searches, not for planning."""
        return tuple(self.space)

    @property
    def config(self) -> SearchConfig:
        return self.inputs.config

    @property
    def pipeline(self) -> BaseEstimator:
        return self.inputs.pipeline

    @property
    def dataset(self) -> Dataset:
        return self.inputs.dataset

    @property
    def holdout(self) -> Holdout | None:
        return self.inputs.holdout

    @property
    def scope(self) -> dict[str, Any]:
        """What the search id hashes: the inputs' scope and the scorers (and the halving settings of a halving search)."""
        halving = self.config.space.halving
        return {**self.inputs.scope, "scoring": list(self.config.scoring), **({} if halving is None else {"halving": halving.as_dict()})}

    @property
    def log_path(self) -> Path:
        return self.config.log_dir / self.search_id


def prepare_search(config: str | os.PathLike[str] | SearchConfig, **overrides: Any) -> PreparedSearch:
    """Validate the config against the pipeline and the data, expand and plan; compute nothing.

    Raises
    ------
    ConfigError
        On the first problem, naming the file and the key.
    """
    cfg = config if isinstance(config, SearchConfig) else load_config(config, overrides)
    inputs = load_inputs(cfg)
    _check_memo_stages(cfg, inputs.pipeline)
    space = expand(cfg, inputs.pipeline, inputs.scope)
    _check_resource(cfg, inputs.pipeline, space)
    return PreparedSearch(inputs=inputs, search_id=_search_id(inputs, cfg), space=space,
                          plan=make_plan(space, inputs.pipeline, cfg.cv.folds, inputs.scope))


def with_max_resources(search: PreparedSearch, max_resources: int) -> PreparedSearch:
    """The halving search with ``search.max_resources`` set (as a budget chooses it): in its config, the copy its log keeps, its id."""
    cfg = from_mapping(search.config.raw, search.config.source, {"search.max_resources": max_resources}, search.config.path)
    return replace(search, inputs=replace(search.inputs, config=cfg), search_id=_search_id(search.inputs, cfg))


def _search_id(inputs: SearchInputs, cfg: SearchConfig) -> str:
    """The scope and the scorers hashed, and a halving search's settings (a grid search's id is as it was before halving)."""
    halving = () if cfg.space.halving is None else (cfg.space.halving.as_dict(),)
    return content_id(inputs.scope, list(cfg.scoring), *halving)


def _check_resource(cfg: SearchConfig, pipeline: BaseEstimator, space: Space) -> None:
    """A halving resource other than rows must be a parameter of every candidate's pipeline (with the steps it
    swaps in, such as ``model: [sklearn.ensemble.RandomForestRegressor]``) that no grid searches."""
    halving = cfg.space.halving
    if halving is None or halving.resource == "n_samples":
        return
    steps = step_names(pipeline)
    for candidate in space.firsts(steps.__contains__, _swapped):
        swapped = {name: value for name, value in candidate.params.items() if name in steps}
        known = list(clone(pipeline).set_params(**resolve(swapped, steps)).get_params())
        if halving.resource not in known:
            whose = f"the pipeline with {_swapped(swapped)}" if swapped else "the pipeline"
            raise cfg.error("search.resource", f"{halving.resource!r} is not a parameter of {whose}{did_you_mean(halving.resource, known)} "
                            "(give n_samples or a step__param such as model__n_estimators)")
    if any(halving.resource in grid for grid in cfg.space.grids):
        raise cfg.error("search.resource", f"{halving.resource!r} is also searched in search.params: the rounds set it; remove it there")
    if halving.max_resources == "auto":
        raise cfg.error("search.max_resources", f"give the largest {halving.resource} to reach (auto means every row: resource n_samples only)")


def _check_memo_stages(cfg: SearchConfig, pipeline: BaseEstimator) -> None:
    known = sorted(raw_stages(pipeline))
    for stage in sorted(cfg.cache.stages or ()):
        if stage not in known:
            allowed = ", ".join(known) if known else "none: the pipeline has no step before its final estimator"
            raise cfg.error("cache.stages", f"unknown stage {stage!r}{did_you_mean(stage, known)} (raw stages: {allowed})")


def _swapped(steps: dict[str, Any]) -> str:
    """``model=RandomForestRegressor``: the whole steps a candidate swaps in."""
    return " ".join(f"{name}={str(value).rpartition('.')[2]}" for name, value in steps.items())
