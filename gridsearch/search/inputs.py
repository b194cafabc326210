"""A search's inputs: the pipeline, the rows, the folds and the hold-out, loaded and checked once.

Both a search (:mod:`gridsearch.search.prepare`) and a promotion (:mod:`gridsearch.registry.promote`)
start here, so they train on the same rows by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator, is_classifier
from sklearn.utils.multiclass import type_of_target

from gridsearch.search.config import SearchConfig
from gridsearch.search.dataset import Dataset, DataSpec, Holdout, split
from kampai.data import fingerprint, load_dataset
from kampai.errors import KampaiError
from kampai.ids import content_id
from kampai.pipeline import build_pipeline


@dataclass(frozen=True)
class SearchInputs:
    """What a search trains and scores on.

    ``frame`` is the loaded data when workers cannot load it themselves (None when they
    do); ``scope`` is what defines the work apart from the search space (pipeline spec,
    data fingerprint, hold-out, cv), hashed into candidate and search ids; ``rows_id``
    identifies the rows and folds alone, for memo keys shared by any search on them.
    """

    config: SearchConfig
    pipeline: BaseEstimator
    data_spec: DataSpec
    frame: pd.DataFrame | None
    dataset: Dataset
    holdout: Holdout | None
    data_fingerprint: str
    scope: dict[str, Any]
    rows_id: str


def load_inputs(cfg: SearchConfig) -> SearchInputs:
    """Build the pipeline, load and check the data, split off the hold-out and make the folds.

    Raises
    ------
    ConfigError
        Naming the key: an unbuildable pipeline, unreadable data, a bad target column,
        folds that cannot be made.
    """
    try:
        pipeline = build_pipeline(cfg.pipeline.factory, cfg.pipeline.steps)
    except KampaiError as exc:
        raise cfg.error("pipeline", str(exc)) from None
    frame = _load_data(cfg)
    _check_target(cfg, pipeline, frame)
    data_fingerprint = fingerprint(frame)
    data_spec = _data_spec(cfg, pipeline, frame, data_fingerprint)
    _check_holdout(cfg, len(frame))
    try:
        dataset, holdout = split(data_spec, frame)
    except ValueError as exc:
        raise cfg.error("cv.folds", str(exc)) from None
    rows = {"data": data_fingerprint, "holdout": cfg.data.test_size, "cv": [cfg.cv.folds, cfg.cv.shuffle, cfg.cv.seed]}
    return SearchInputs(
        config=cfg, pipeline=pipeline, data_spec=data_spec, frame=None if _workers_read(cfg) else frame, dataset=dataset,
        holdout=holdout, data_fingerprint=data_fingerprint, scope={"pipeline": cfg.pipeline.spec(), **rows}, rows_id=content_id(rows),
    )


def _load_data(cfg: SearchConfig) -> pd.DataFrame:
    data = cfg.data
    try:
        frame = load_dataset(data.source, rows=data.rows, seed=data.seed, clean=data.clean)
    except KampaiError as exc:
        raise cfg.error("data.source", str(exc)) from None
    if data.target not in frame.columns:
        raise cfg.error("data.target", f"column {data.target!r} not in the data (columns: {', '.join(map(str, frame.columns))})")
    if frame.empty:
        raise cfg.error("data.source", "no rows left after loading and cleaning; check the file, data.rows and data.clean")
    return frame


def _check_holdout(cfg: SearchConfig, rows: int) -> None:
    """The hold-out must leave rows for every fold (scikit-learn holds out ``ceil(test_size * rows)``)."""
    if cfg.data.test_size is None:
        return
    held = math.ceil(cfg.data.test_size * rows)
    if rows - held < cfg.cv.folds:
        raise cfg.error("data.test_size", f"holding out {held} of {rows} rows leaves {rows - held} for {cfg.cv.folds} folds; "
                                          "lower data.test_size or load more rows")


def _check_target(cfg: SearchConfig, pipeline: BaseEstimator, frame: pd.DataFrame) -> None:
    """A regressor needs numbers; a classifier any class labels scikit-learn takes (numbers, strings, booleans)."""
    target = frame[cfg.data.target]
    if target.isna().any():
        raise cfg.error("data.target", f"column {cfg.data.target!r} has {int(target.isna().sum())} missing values; drop or fill them")
    if is_classifier(pipeline):
        kind = type_of_target(target.to_numpy())
        if kind not in ("binary", "multiclass"):
            raise cfg.error("data.target", f"column {cfg.data.target!r} holds {kind} values; a classifier needs class labels "
                                           "(binary or multiclass)")
    elif not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
        raise cfg.error("data.target", f"column {cfg.data.target!r} must be numeric for a regressor, found dtype {target.dtype}")


def _data_spec(cfg: SearchConfig, pipeline: BaseEstimator, frame: pd.DataFrame, frame_fingerprint: str) -> DataSpec:
    """How the rows and folds are made; stratified folds for classifiers, as ``check_cv`` does."""
    stratify = is_classifier(pipeline) and type_of_target(frame[cfg.data.target]) in ("binary", "multiclass")
    data, cv = cfg.data, cfg.cv
    source = data.source if data.is_synthetic else str(Path(data.source).resolve())
    return DataSpec(source, data.rows, data.seed, data.clean, data.target, data.test_size,
                    cv.folds, cv.shuffle, cv.seed, stratify, frame_fingerprint)


def _workers_read(cfg: SearchConfig) -> bool:
    """Whether workers load the data themselves: always for the generator, for files when told."""
    return cfg.data.workers == "read" or (cfg.data.workers == "auto" and cfg.data.is_synthetic)
