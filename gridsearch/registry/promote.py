"""``gridsearch promote``: the few winners of a search, refitted and kept in MLflow.

A search writes every fit to its run log; only the candidates a person picks reach MLflow.
Each is refitted with the production pipeline (the search's own code, no memo, no
intermediate files) on the search's full training data, scored on the held-out split when
the config keeps one (``data.test_size``), and logged by :mod:`kampai.registry` as one run
with a registered model version. The best version promoted from the search gets the
config's alias (``registry.alias``, ``champion`` by default).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import get_scorer

from gridsearch.errors import ArgumentError, GridsearchError
from gridsearch.log.records import SearchMeta, Status
from gridsearch.log.results import best_first, log_results
from gridsearch.log.runlog import read_log
from gridsearch.search.config import SearchConfig
from gridsearch.search.inputs import load_inputs
from gridsearch.search.space import resolve, step_names
from kampai.ids import matching
from kampai.provenance import CodeVersion, code_version

TAG = "gridsearch."
_CODE_COLUMNS = ("git_sha", "git_dirty", "package_version")


@dataclass(frozen=True)
class Promotion:
    """One promoted candidate: its MLflow run and registered model version.

    ``created`` is False when an earlier promote had logged it (found by its tags); then
    nothing was refitted or written. ``seconds`` is the time spent writing to MLflow,
    ``log_model_seconds`` the part of it in ``mlflow.sklearn.log_model``.
    """

    search_id: str
    candidate_id: str
    rank: int
    params: Mapping[str, Any]
    run_id: str
    model_name: str
    version: str
    created: bool
    metrics: Mapping[str, float]
    tracking_uri: str
    alias: str | None = None
    seconds: float = 0.0
    log_model_seconds: float = 0.0

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"


def promote(
    log_path: str | os.PathLike[str],
    top: int | None = None,
    candidates: Sequence[str] | None = None,
    allow_code_change: bool = False,
    tracking_uri: str | None = None,
) -> list[Promotion]:
    """Refit the chosen candidates of a search and log each to MLflow with a registered model.

    Parameters
    ----------
    log_path : path
        A search's run log directory, ``runs/<search id>``.
    top : int, optional
        Promote the ``top`` best fully scored candidates by the first scorer (default 1).
    candidates : sequence of str, optional
        Or these candidate ids (any unique prefix, as in git).
    allow_code_change : bool
        Refit even though the running code differs from the code recorded in the log (a
        candidate already promoted is not refitted, so not refused); the run records it
        (tags ``gridsearch.code_change_allowed``, ``gridsearch.search_code_version``).
    tracking_uri : str, optional
        Overrides the config's ``registry.tracking_uri``, ``$MLFLOW_TRACKING_URI`` and the
        default ``sqlite:///mlflow.db``.

    Returns
    -------
    list of Promotion
        In the order chosen; promoting a candidate again returns its first run.

    Raises
    ------
    GridsearchError
        An empty log, an unknown or failed candidate, changed code or data; nothing written.
    RegistryError
        An unreachable tracking store (checked before any refit), or a failed write, after
        which nothing of that candidate is kept.
    """
    from kampai.registry import ModelRun, open_store

    log_path = Path(log_path)
    meta, records = _read_search(log_path)
    table = _ranked(records, meta)
    winners = _choose(table, log_path, meta, top, candidates)
    config = meta.search_config(log_path)
    scoring = meta.scoring
    current = code_version()
    store = open_store(tracking_uri or config.registry.tracking_uri)
    model_name = config.registry.model_name

    found = {cid: store.find(_key(meta, cid), model_name) for cid in winners["candidate_id"]}
    todo = winners[[found[cid] is None for cid in winners["candidate_id"]]]
    scored_by = _code_change(meta, records, todo, current, log_path, allow_code_change) if len(todo) else None
    refits = _refit_all(config, meta, todo, scoring) if len(todo) else {}

    done: list[tuple[Any, Any]] = []
    for row in winners.itertuples(index=False):
        cid = row.candidate_id
        if found[cid] is not None:
            done.append((row, found[cid]))
            continue
        model, metrics, X, tags = refits[cid]
        run = ModelRun(
            key=_key(meta, cid),
            name=f"{meta.search_id[:8]}-rank{row.rank}-{cid[:8]}",
            model=model,
            X=X,
            params=model.get_params(deep=True),
            metrics={**_cv_metrics(row, scoring), **metrics},
            tags={**_tags(meta, row, current, scored_by), **tags},
            artifacts={"search.yaml": yaml.safe_dump(dict(meta.config), sort_keys=False)},
            metadata={"target": config.data.target, "search_id": meta.search_id, "candidate_id": cid},
        )
        done.append((row, store.log_model_run(model_name, run)))

    champion = store.set_best_alias(model_name, config.registry.alias, {f"{TAG}search_id": meta.search_id},
                                    f"mean_test_{scoring[0]}")
    return [
        Promotion(
            search_id=meta.search_id, candidate_id=row.candidate_id, rank=int(row.rank), params=dict(row.params),
            run_id=registered.run_id, model_name=model_name, version=registered.version, created=registered.created,
            metrics=dict(registered.metrics), tracking_uri=store.uri,
            alias=config.registry.alias if registered.version == champion else None,
            seconds=registered.seconds, log_model_seconds=registered.log_model_seconds,
        )
        for row, registered in done
    ]


def summary(promotions: Sequence[Promotion]) -> str:
    """What ``gridsearch promote`` prints: one row per promotion, the alias, how to predict."""
    if not promotions:
        return "nothing promoted"
    first = promotions[0]
    scorer = next((k.removeprefix("mean_test_") for k in first.metrics if k.startswith("mean_test_")), None)
    rows = []
    for p in promotions:
        row = {"rank": p.rank, "candidate": p.candidate_id, "version": p.version,
               "run": p.run_id, "status": "new" if p.created else "existing"}
        for name in (f"mean_test_{scorer}", f"holdout_{scorer}", "refit_time"):
            if name in p.metrics:
                row[name] = p.metrics[name]
        row["mlflow_s"] = p.seconds if p.created else float("nan")
        row["alias"] = p.alias or ""
        rows.append(row)
    board = pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-")
    lines = [f"search {first.search_id} -> model {first.model_name} in {first.tracking_uri}", "", board, ""]
    champion = next((p for p in promotions if p.alias), None)
    if champion:
        lines.append(f"alias {champion.alias} -> {champion.model_name} version {champion.version}")
        lines.append(f"predict: python -m gridsearch predict --model models:/{champion.model_name}@{champion.alias} "
                     "--input new.csv --output preds.csv")
    return "\n".join(lines)


def _read_search(log_path: Path) -> tuple[SearchMeta, pd.DataFrame]:
    records = read_log(log_path)
    meta = SearchMeta.read(log_path)
    if records.empty or meta.config is None:
        raise GridsearchError(f"run log {log_path} holds no results; nothing to promote (run the search first)")
    return meta, records


def _ranked(records: pd.DataFrame, meta: SearchMeta) -> pd.DataFrame:
    """The log's cv_results table, best first; candidates are read from the records, so a grown space counts."""
    table = best_first(log_results(records, meta.folds, meta.scoring), meta.scoring[0])
    return table.assign(rank=table[f"rank_test_{meta.scoring[0]}"])


def _choose(table: pd.DataFrame, log_path: Path, meta: SearchMeta, top: int | None, candidates: Sequence[str] | None) -> pd.DataFrame:
    """The rows to promote: the ``top`` best complete candidates, or the ones named."""
    primary = f"mean_test_{meta.scoring[0]}"
    complete = (table["n_errors"] == 0) & (table["n_missing"] == 0) & table[primary].notna()
    if top is not None and candidates:
        raise GridsearchError("give either top or candidates, not both")
    if not candidates:
        top = 1 if top is None else top
        if top < 1:
            raise ArgumentError("top", f"expected an integer >= 1, found {top}")
        if not complete.any():
            raise GridsearchError(f"no candidate in {log_path} was scored on every fold; nothing to promote")
        return table[complete].head(top)
    chosen: list[int] = []
    position = {cid: index for index, cid in enumerate(table["candidate_id"])}
    for wanted in candidates:
        matches = [position[cid] for cid in matching(table["candidate_id"], wanted)]
        if not matches:
            best = table["candidate_id"].iloc[0]
            raise GridsearchError(f"candidate {wanted!r} is not in run log {log_path} ({len(table)} candidates; "
                                  f"the best is {best}; see 'python -m gridsearch top {log_path}')")
        if len(matches) > 1:
            raise GridsearchError(f"candidate prefix {wanted!r} matches {len(matches)} candidates in {log_path} "
                                  f"({', '.join(table['candidate_id'].iloc[matches[:3]])}, ...); give more characters")
        index = matches[0]
        if not complete.iloc[index]:
            raise GridsearchError(f"candidate {table['candidate_id'].iloc[index]} failed or is missing folds in {log_path} "
                                  f"({int(table['n_errors'].iloc[index] + table['n_missing'].iloc[index])} of {meta.folds} not ok); only fully scored candidates can be promoted")
        if index not in chosen:
            chosen.append(index)
    return table.iloc[chosen]


def _code_change(meta: SearchMeta, records: pd.DataFrame, winners: pd.DataFrame, current: CodeVersion,
                 log_path: Path, allowed: bool) -> str | None:
    """The recorded code, when it is not the running code (else None); refuses unless ``allowed``.

    Recorded means the log's ``search.json`` (the code that started the search) and the
    records of the winners (the code that scored them, which differs if a search was resumed).
    A dirty tree is compared by its flag only: uncommitted edits since the search go unseen.
    """
    scored = records[records["candidate_id"].isin(set(winners["candidate_id"])) & (records["status"] == Status.OK)]
    versions = {
        CodeVersion(_none(sha), None if _none(dirty) is None else bool(dirty), str(package))
        for sha, dirty, package in zip(*(scored[c] for c in _CODE_COLUMNS))
    }
    if meta.code_version:
        versions.add(CodeVersion(**{c: meta.code_version.get(c) for c in _CODE_COLUMNS}))
    others = sorted(str(v) for v in versions if v != current)
    if not others:
        return None
    if not allowed:
        raise ArgumentError("allow_code_change", f"not given, and the code changed since the search: {log_path} was scored by "
                            f"{', '.join(others)}, this is {current}; the refit would run other code (rerun the search, or give it)")
    return ", ".join(others)


def _refit_all(config: SearchConfig, meta: SearchMeta, winners: pd.DataFrame,
               scoring: Sequence[str]) -> dict[str, tuple[BaseEstimator, dict[str, float], pd.DataFrame, dict[str, str]]]:
    """Every winner refitted before anything is written, so a failing refit leaves MLflow untouched."""
    inputs = load_inputs(config)
    if inputs.data_fingerprint != meta.data_fingerprint:
        raise GridsearchError(f"the data changed since the search: fingerprint {meta.data_fingerprint} in the log, "
                              f"{inputs.data_fingerprint} now; the refit would train on other data (restore it, or rerun the search)")
    X, y = inputs.dataset.X, inputs.dataset.y
    steps = step_names(inputs.pipeline)
    refits = {}
    for row in winners.itertuples(index=False):
        model = _uncached(clone(inputs.pipeline)).set_params(**resolve(row.params, steps))
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model.fit(X, y)
            except Exception as exc:  # noqa: BLE001 - any failure of the user's pipeline is reported in one line
                raise GridsearchError(f"refit of candidate {row.candidate_id} failed: {type(exc).__name__}: {exc}") from None
        metrics = {"refit_time": time.perf_counter() - started}
        tags = {f"{TAG}n_train": str(len(X))}
        if inputs.holdout is not None:
            X_test, y_test = inputs.holdout
            metrics.update({f"holdout_{name}": float(get_scorer(name)(model, X_test, y_test)) for name in scoring})
            tags[f"{TAG}n_holdout"] = str(len(X_test))
        if caught:
            tags[f"{TAG}refit_warnings"] = "; ".join(sorted({f"{w.category.__name__}: {w.message}" for w in caught}))[:5000]
        refits[row.candidate_id] = (model, metrics, X, tags)
    return refits


def _uncached(model: BaseEstimator) -> BaseEstimator:
    """No ``Pipeline(memory=...)`` anywhere: the production pipeline writes no intermediate files."""
    memory = {name: None for name, value in model.get_params(deep=True).items()
              if (name == "memory" or name.endswith("__memory")) and value is not None}
    return model.set_params(**memory) if memory else model


def _key(meta: SearchMeta, candidate_id: str) -> dict[str, str]:
    return {f"{TAG}search_id": meta.search_id, f"{TAG}candidate_id": candidate_id}


def _cv_metrics(row: Any, scoring: Sequence[str]) -> dict[str, float]:
    values = row._asdict()
    return {f"{kind}_test_{name}": float(values[f"{kind}_test_{name}"]) for name in scoring for kind in ("mean", "std")}


def _tags(meta: SearchMeta, row: Any, current: CodeVersion, scored_by: str | None) -> dict[str, str]:
    tags = {
        f"{TAG}rank": str(int(row.rank)),
        f"{TAG}git_sha": current.git_sha or "none",
        f"{TAG}git_dirty": str(current.git_dirty).lower(),
        f"{TAG}package_version": current.package_version,
        f"{TAG}data_fingerprint": str(meta.data_fingerprint),
        f"{TAG}scoring": ",".join(meta.scoring),
        f"{TAG}params": json.dumps(dict(row.params), sort_keys=True)[:5000],
    }
    if current.git_sha:
        tags["mlflow.source.git.commit"] = current.git_sha
    if scored_by is not None:
        tags[f"{TAG}code_change_allowed"] = "true"
        tags[f"{TAG}search_code_version"] = scored_by
    return tags


def _none(value: Any) -> Any:
    """Arrow nulls come back as None or NaN."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
