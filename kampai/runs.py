"""Runs as MLflow users know them: a hierarchy like ``mlflow.sklearn.autolog`` of ``GridSearchCV``, and a table.

One parent run stands for a whole piece of work (a search: its config, its best params and
score, its results table as an artifact); child runs (tag ``mlflow.parentRunId``) stand for
its parts (candidates), with the real start and end times of their work rather than the
moment they were logged. The UI nests the children under their parent, and
``search_runs`` finds them by that tag.

A run is written completely or not at all: created, filled, then marked ``FINISHED``; a
failure deletes it. A parent is identified by its key tags and the state it was built from
(e.g. how many records its search had): a parent of another state is replaced by a new
complete one, and its children move to the new one, so each key keeps one parent.

:func:`promoted_runs` is the table of every run holding a registered model, with its parent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kampai.errors import RegistryError, one_line
from kampai.registry import MODEL_NAME_TAG, MODEL_VERSION_TAG, Store, open_store
from kampai.tracking import PARENT_TAG, RUN_NAME_TAG, log_batch, search_all, tag_conditions

KIND_TAG = "kampai.run_kind"  # "parent" on parent runs
STATE_TAG = "kampai.state"


@dataclass(frozen=True)
class ParentRun:
    """A parent run: what it is (``key``), what it was built from (``state``) and what it holds.

    Attributes
    ----------
    key : mapping
        Tags identifying the parent, e.g. ``{"gridsearch.search_id": ...}``.
    state : str
        What the content was built from; a parent with the same key and another state is replaced.
    params, metrics, tags : mapping
        Params are strings (see :func:`kampai.packaging.flatten_params`).
    texts : mapping
        Artifact name to text, e.g. the config.
    files : sequence of Path
        Local files logged as artifacts under their own names, e.g. a results table.
    start_time, end_time : int, optional
        Epoch milliseconds of the work the run stands for.
    """

    key: Mapping[str, str]
    state: str
    name: str
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    texts: Mapping[str, str] = field(default_factory=dict)
    files: Sequence[Path] = ()
    start_time: int | None = None
    end_time: int | None = None


@dataclass(frozen=True)
class ChildRun:
    """A child run without a model: a part of its parent's work, e.g. one candidate of a search."""

    key: Mapping[str, str]
    name: str
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    start_time: int | None = None
    end_time: int | None = None


def ensure_parent(store: Store, experiment_name: str, parent: ParentRun) -> tuple[str, bool]:
    """The id of the complete parent run for ``parent.key`` and ``parent.state``, and whether this call created it.

    Other runs with that key (an older state, or left running by a crash) are deleted after
    their children are moved to the returned parent.

    Raises
    ------
    RegistryError
        When the parent cannot be written; nothing of it is kept.
    """
    experiment_id = store.experiment(experiment_name)
    runs = search_all(store.client, [experiment_id], tag_conditions({**parent.key, KIND_TAG: "parent"}))
    current = [r for r in runs if r.info.status == "FINISHED" and r.data.tags.get(STATE_TAG) == parent.state]
    created = not current
    run_id = current[0].info.run_id if current else _create_parent(store, experiment_id, parent)
    for other in runs:
        if other.info.run_id != run_id:
            for child in children_of(store, experiment_id, other.info.run_id):
                store.client.set_tag(child.info.run_id, PARENT_TAG, run_id)
            store.discard(other.info.run_id)
    return run_id, created


def children_of(store: Store, experiment_id: str, parent_id: str) -> list[Any]:
    """Every run (any status) whose ``mlflow.parentRunId`` is ``parent_id``."""
    return search_all(store.client, [experiment_id], [f"tags.`{PARENT_TAG}` = '{parent_id}'"])


def log_children(store: Store, experiment_id: str, parent_id: str, children: Sequence[ChildRun],
                 progress: Callable[[int], None] | None = None) -> int:
    """Log ``children`` under ``parent_id``, skipping those whose key a finished child already has.

    Each child is one ``create_run`` (its tags and start time), one ``log_batch`` (params and
    metrics, more only past 100 params) and one ``set_terminated`` (its end time). Children
    with a key left unfinished by a crash are replaced. Returns how many were created;
    ``progress`` is called with that count every 500.

    Raises
    ------
    RegistryError
        When a child cannot be written: that child is deleted, the ones written before it
        are complete and kept (logging again writes only the rest).
    """
    if not children:
        return 0
    names = sorted(children[0].key)
    existing = children_of(store, experiment_id, parent_id)
    done = {tuple(r.data.tags.get(n) for n in names) for r in existing if r.info.status == "FINISHED"}
    for stale in (r for r in existing if r.info.status != "FINISHED"):
        store.discard(stale.info.run_id)
    created = 0
    for child in children:
        if tuple(child.key[n] for n in names) in done:
            continue
        run_id = None
        try:
            tags = {**child.tags, **child.key, PARENT_TAG: parent_id, RUN_NAME_TAG: child.name}
            run_id = store.client.create_run(experiment_id, start_time=child.start_time, tags=tags, run_name=child.name).info.run_id
            log_batch(store.client, run_id, child.params, child.metrics, timestamp=child.end_time)
            store.client.set_terminated(run_id, "FINISHED", end_time=_end(child.start_time, child.end_time))
        except Exception as exc:  # noqa: BLE001 - a store error of any kind, in one line
            if run_id is not None:
                store.discard(run_id)
            raise RegistryError(f"could not log child run {child.name} to {store.uri}: {one_line(exc)} "
                                f"({created} of {len(children)} were logged; logging again writes the rest)") from None
        created += 1
        if progress and created % 500 == 0:
            progress(created)
    return created


def promoted_runs(tracking_uri: str | None = None, model_name: str | None = None, where: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every run with a registered model in the store, one row each, columns as ``mlflow.search_runs`` names them.

    ``run_id, parent_run_id, model_name, model_version, aliases, start_time, end_time,
    status``, then ``metrics.<name>``, ``tags.<name>`` (MLflow's own ``mlflow.*`` tags left
    out) and ``params.<name>``, sorted by model name and version. ``parent_run_id`` is the
    run the model's run is a child of (its search's run), or empty. ``where`` keeps runs
    with these tags.
    """
    store = open_store(tracking_uri, create=False)
    experiments = [e.experiment_id for e in store.client.search_experiments()]
    conditions = [f"tags.`{MODEL_VERSION_TAG}` != ''", *tag_conditions(dict(where or {}))]
    if model_name:
        conditions += tag_conditions({MODEL_NAME_TAG: model_name})
    runs = search_all(store.client, experiments, conditions)
    aliases = _aliases(store, {run.data.tags[MODEL_NAME_TAG] for run in runs})
    rows = [_run_row(run, aliases) for run in runs]
    fixed = ["run_id", "parent_run_id", "model_name", "model_version", "aliases", "start_time", "end_time", "status"]
    table = pd.DataFrame(rows, columns=None if rows else fixed)
    if rows:
        rest = sorted(set(table.columns) - set(fixed), key=lambda c: (("metrics.", "tags.", "params.").index(c.split(".")[0] + "."), c))
        table = table[fixed + rest]
        table = table.sort_values(["model_name", "model_version"], key=lambda s: s.map(_version_key)).reset_index(drop=True)
    return table


def _create_parent(store: Store, experiment_id: str, parent: ParentRun) -> str:
    run_id = None
    try:
        tags = {**parent.tags, **parent.key, KIND_TAG: "parent", STATE_TAG: parent.state, RUN_NAME_TAG: parent.name}
        run_id = store.client.create_run(experiment_id, start_time=parent.start_time, tags=tags, run_name=parent.name).info.run_id
        log_batch(store.client, run_id, parent.params, parent.metrics, timestamp=parent.end_time)
        for name, text in parent.texts.items():
            store.client.log_text(run_id, text, name)
        for path in parent.files:
            store.client.log_artifact(run_id, str(path))
        store.client.set_terminated(run_id, "FINISHED", end_time=_end(parent.start_time, parent.end_time))
    except Exception as exc:  # noqa: BLE001 - a store error of any kind, in one line
        if run_id is not None:
            store.discard(run_id)
        raise RegistryError(f"could not log run {parent.name} to {store.uri}: {one_line(exc)} (nothing was kept)") from None
    return run_id


def _end(start: int | None, end: int | None) -> int:
    """An end time for ``set_terminated``: ``end`` (never before ``start``), else now."""
    if end is None:
        return int(time.time() * 1000)
    return max(end, start or end)


def _aliases(store: Store, model_names: set[str]) -> dict[tuple[str, str], list[str]]:
    """(model name, version) to its aliases."""
    found: dict[tuple[str, str], list[str]] = {}
    for name in model_names:
        try:
            aliases = store.client.get_registered_model(name).aliases
        except Exception:  # noqa: BLE001, S112 - a model deleted since: no aliases
            continue
        for alias, version in aliases.items():
            found.setdefault((name, str(version)), []).append(alias)
    return found


def _run_row(run: Any, aliases: Mapping[tuple[str, str], list[str]]) -> dict[str, Any]:
    tags = run.data.tags
    name, version = tags[MODEL_NAME_TAG], tags[MODEL_VERSION_TAG]
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "parent_run_id": tags.get(PARENT_TAG, ""),
        "model_name": name,
        "model_version": version,
        "aliases": ",".join(sorted(aliases.get((name, version), []))),
        "start_time": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC"),
        "end_time": pd.Timestamp(run.info.end_time, unit="ms", tz="UTC") if run.info.end_time else pd.NaT,
        "status": run.info.status,
    }
    row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
    row.update({f"tags.{k}": v for k, v in tags.items() if not k.startswith("mlflow.") and k not in (MODEL_NAME_TAG, MODEL_VERSION_TAG)})
    row.update({f"params.{k}": v for k, v in run.data.params.items()})
    return row


def _version_key(value: Any) -> Any:
    return int(value) if isinstance(value, str) and value.isdigit() else value
