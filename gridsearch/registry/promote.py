"""``gridsearch promote``: the few winners of a search, refitted and kept in MLflow.

A search writes every fit to its run log; only the candidates a person picks reach MLflow.
Each is refitted with the production pipeline (the search's own code, no memo, no
intermediate files) on the search's full training data, scored on the held-out split when
the config keeps one (``data.test_size``), and logged by :mod:`kampai.registry` as one run
with a registered model version, a child of the search's parent run
(:mod:`gridsearch.registry.parent`). The best version promoted from the search gets the
config's alias (``registry.alias``, ``champion`` by default). ``tag_code`` labels the
search's git commit, so the code of a model can be checked out by name. A search class's log
(``log=``) has no config: its winners are refitted from the estimator and rows it keeps
(:mod:`gridsearch.log.refit_inputs`), as scikit-learn refits ``best_estimator_``, and
registered under the config's defaults.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import pandas as pd
import yaml

from gridsearch.errors import GridsearchError
from gridsearch.log.query import find_logs
from gridsearch.log.records import SearchMeta
from gridsearch.log.results import best_first, choose, log_results
from gridsearch.log.runlog import read_log
from gridsearch.registry.code import code_change, commit_to_tag, record_tag
from gridsearch.registry.parent import (
    RESULTS_ARTIFACT,
    TAG,
    candidate_children,
    candidate_metrics,
    candidate_times,
    run_name,
    search_parent,
)
from gridsearch.registry.refit import refit_origin
from kampai.provenance import CodeVersion, code_version


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
    parent_run_id: str | None = None

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"


@dataclass(frozen=True)
class Promotions(Sequence[Promotion]):
    """What one ``promote`` did: the promotions in the order chosen (indexable as a list), and the search's runs.

    ``parent_run_id`` is the search's parent run (``parent_created``: written by this
    call); ``children_logged`` the model-less child runs ``all_runs`` wrote, in
    ``children_seconds``; ``code_tag`` the git tag of the search's commit, if asked for.
    """

    items: tuple[Promotion, ...]
    search_id: str
    model_name: str
    tracking_uri: str
    parent_run_id: str
    parent_created: bool = False
    children_logged: int = 0
    children_seconds: float = 0.0
    code_tag: str | None = None

    @overload
    def __getitem__(self, index: int) -> Promotion: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Promotion]: ...
    def __getitem__(self, index: int | slice) -> Promotion | Sequence[Promotion]:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)


def promote(
    log_path: str | os.PathLike[str],
    top: int | None = None,
    candidates: Sequence[str] | None = None,
    allow_code_change: bool = False,
    tracking_uri: str | None = None,
    *,
    all_runs: bool = False,
    tag_code: str | None = None,
    tag_dirty: bool = False,
    code_repo: str | os.PathLike[str] | None = None,
    trust_types: bool = False,
) -> Promotions:
    """Refit the chosen candidates of a search and log each to MLflow with a registered model.

    The search gets one parent run (config, size, ``best_<param>``, ``best_cv_score``, the
    ``cv_results`` table as ``cv_results.csv``, the log's report files); each promoted
    candidate is its child run, with the start and end times of its fits in the log.

    Parameters
    ----------
    log_path : path
        A search's run log directory, ``runs/<search id>``, or a log root holding one search.
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
    all_runs : bool
        Also log every other candidate of the search as a child run without a model (its
        params, ``cv_results`` numbers and fit times), in one ``log_batch`` each.
    tag_code : str, optional
        Tag the git commit the search ran (e.g. ``taxifare-v3``, an annotated tag in the
        checkout of this code, or ``code_repo``) and record the tag (``gridsearch.code_tag``)
        on the parent run, the promoted runs and their model versions.
    tag_dirty : bool
        Tag even though the search ran on uncommitted changes (the commit is not the code
        that scored it).
    code_repo : path, optional
        The git repository to tag in (default: the checkout this code is imported from).
    trust_types : bool
        A search class's log: load its kept estimator even though it holds types of other
        packages than numpy, scipy, scikit-learn, pandas and this project (e.g. your own
        module's transformer), whose code loading it runs. Only for a log whose writer you trust.

    Returns
    -------
    Promotions
        The promotions in the order chosen; promoting a candidate again returns its first run.

    Raises
    ------
    GridsearchError
        An empty log, a log root with several searches, an unknown or failed candidate,
        changed code or data, a commit that cannot be tagged; nothing written.
    RegistryError
        An unreachable tracking store (checked before any refit), or a failed write, after
        which nothing of that candidate is kept (nor the parent run, if it has no children).
    """
    from kampai.registry import open_store
    from kampai.runs import children_of, log_children

    log_path = one_search(log_path)
    meta, records = _read_search(log_path)
    table = _ranked(records, meta)
    if top is not None and candidates:
        raise GridsearchError("give either top or candidates, not both")
    winners = choose(table, meta.scoring[0], meta.folds, log_path, 1 if top is None else top, candidates, "promoted")
    origin = refit_origin(meta, log_path, trust_types)
    registry = origin.registry
    current = code_version()
    tagged_sha = commit_to_tag(meta, records, tag_code, tag_dirty, code_repo) if tag_code else None
    store = open_store(tracking_uri or registry.tracking_uri)
    model_name = registry.model_name

    found = {cid: store.find(_key(meta, cid), model_name) for cid in winners["candidate_id"]}
    todo = winners[[found[cid] is None for cid in winners["candidate_id"]]]
    scored_by = code_change(meta, records, todo, current, log_path, allow_code_change) if len(todo) else None
    refits = origin.refit(todo) if len(todo) else {}

    parent_id, parent_created = _parent(store, model_name, meta, records, table, log_path)
    experiment_id = store.experiment(model_name)
    try:
        done = _log_models(store, model_name, origin.target, meta, records, winners, found, refits, current, scored_by, parent_id,
                           tag_code)
    except Exception:
        if parent_created and not children_of(store, experiment_id, parent_id):
            store.discard(parent_id)
        raise
    promoted = {row.candidate_id for row, _ in done}
    _drop_plain_children(store, experiment_id, parent_id, promoted)
    started = time.perf_counter()
    logged = log_children(store, experiment_id, parent_id, candidate_children(meta, records, table, promoted)) if all_runs else 0
    children_seconds = time.perf_counter() - started
    if tag_code and tagged_sha:
        record_tag(store, model_name, tag_code, tagged_sha, meta, [parent_id, *(r.run_id for _, r in done)], code_repo)

    champion = store.set_best_alias(model_name, registry.alias, {f"{TAG}search_id": meta.search_id},
                                    f"mean_test_{meta.scoring[0]}")
    alias = (registry.alias, champion)
    items = tuple(_promotion(meta.search_id, row, registered, model_name, store.uri, alias, parent_id) for row, registered in done)
    return Promotions(items, meta.search_id, model_name, store.uri, parent_id, parent_created, logged, children_seconds, tag_code)


def _drop_plain_children(store: Any, experiment_id: str, parent_id: str, promoted: set[str]) -> None:
    """A model-less child run (``all_runs``) of a promoted candidate gives way to its model's run."""
    from kampai.registry import MODEL_VERSION_TAG
    from kampai.runs import children_of

    for child in children_of(store, experiment_id, parent_id):
        if child.data.tags.get(f"{TAG}candidate_id") in promoted and MODEL_VERSION_TAG not in child.data.tags:
            store.discard(child.info.run_id)


def _promotion(search_id: str, row: Any, registered: Any, model_name: str, uri: str, alias: tuple[str, str | None],
               parent_id: str) -> Promotion:
    """What one promoted candidate became; ``alias`` is (the alias, the version it points to)."""
    return Promotion(
        search_id=search_id, candidate_id=row.candidate_id, rank=int(row.rank), params=dict(row.params),
        run_id=registered.run_id, model_name=model_name, version=registered.version, created=registered.created,
        metrics=dict(registered.metrics), tracking_uri=uri, alias=alias[0] if registered.version == alias[1] else None,
        seconds=registered.seconds, log_model_seconds=registered.log_model_seconds, parent_run_id=parent_id,
    )


def one_search(path: str | os.PathLike[str]) -> Path:
    """The log directory of the one search at ``path``: a search's directory, or a log root holding only it.

    Raises
    ------
    GridsearchError
        No search at ``path``, or several (naming the latest three).
    """
    logs = find_logs(path)
    if len(logs) == 1:
        return logs[0]
    latest = sorted(logs, key=_created, reverse=True)[:3]
    root = str(Path(path)).rstrip("/") + "/"
    raise GridsearchError(f"{len(logs)} searches under {root}: give one, e.g. {latest[0]} "
                          f"(the latest: {', '.join(str(log) for log in latest)}; see 'python -m gridsearch top {Path(path)}')")


def summary(promotions: Sequence[Promotion]) -> str:
    """What ``gridsearch promote`` prints: one row per promotion, the parent run, the alias, how to predict."""
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
    if isinstance(promotions, Promotions):
        status = "new" if promotions.parent_created else "existing"
        lines.append(f"parent run {promotions.parent_run_id} ({status}): the search, with the promoted runs as its children")
        if promotions.children_logged:
            lines.append(f"{promotions.children_logged} more candidates logged as child runs in {promotions.children_seconds:.1f} s")
        if promotions.code_tag:
            lines.append(f"git tag {promotions.code_tag} -> the search's commit (push it: git push origin {promotions.code_tag})")
    champion = next((p for p in promotions if p.alias), None)
    if champion:
        lines.append(f"alias {champion.alias} -> {champion.model_name} version {champion.version}")
        lines.append(f"predict: python -m gridsearch predict --model models:/{champion.model_name}@{champion.alias} "
                     "--input new.csv --output preds.csv")
    return "\n".join(lines)


def _parent(store: Any, model_name: str, meta: SearchMeta, records: pd.DataFrame, table: pd.DataFrame,
            log_path: Path) -> tuple[str, bool]:
    """The search's parent run in the model's experiment: found in the log's current state, or written now."""
    from kampai.runs import ensure_parent

    with tempfile.TemporaryDirectory(prefix="gridsearch-parent-") as directory:
        return ensure_parent(store, model_name, search_parent(meta, records, table, log_path, Path(directory) / RESULTS_ARTIFACT))


def _log_models(store: Any, model_name: str, target: str | None, meta: SearchMeta, records: pd.DataFrame, winners: pd.DataFrame,
                found: Mapping[str, Any], refits: Mapping[str, Any], current: CodeVersion, scored_by: str | None,
                parent_id: str, code_tag: str | None) -> list[tuple[Any, Any]]:
    """Each winner's model run (a child of ``parent_id``), or the run an earlier promote logged.

    The model's metadata keeps the code version that refitted it (and ``code_tag``), which
    ``predict`` compares with its own.
    """
    from kampai.registry import ModelRun

    times = candidate_times(records)
    done: list[tuple[Any, Any]] = []
    for row in winners.itertuples(index=False):
        cid = row.candidate_id
        if found[cid] is not None:
            done.append((row, found[cid]))
            continue
        model, metrics, X, tags = refits[cid]
        started, finished = times.get(cid, (None, None))
        run = ModelRun(
            key=_key(meta, cid),
            name=run_name(meta, cid, int(row.rank)),
            model=model,
            X=X,
            params=model.get_params(deep=True),
            metrics={**candidate_metrics(row._asdict()), **metrics},
            tags={**_tags(meta, row, current, scored_by), **tags},
            artifacts={"search.yaml": yaml.safe_dump(dict(meta.config), sort_keys=False)} if meta.config else {},
            metadata={**({"target": target} if target else {}), "search_id": meta.search_id, "candidate_id": cid,
                      "code_version": {**current.as_dict(), **({"tag": code_tag} if code_tag else {})}},
            parent_run_id=parent_id,
            start_time=started,
            end_time=finished,
        )
        done.append((row, store.log_model_run(model_name, run)))
    return done


def _created(log: Path) -> str:
    """When a search started (``search.json``), for naming the latest; its directory's time when it says nothing."""
    return SearchMeta.read(log).created or str(log.stat().st_mtime)


def _read_search(log_path: Path) -> tuple[SearchMeta, pd.DataFrame]:
    records = read_log(log_path)
    meta = SearchMeta.read(log_path)
    if records.empty:
        raise GridsearchError(f"run log {log_path} holds no results; nothing to promote (run the search first)")
    return meta, records


def _ranked(records: pd.DataFrame, meta: SearchMeta) -> pd.DataFrame:
    """The log's cv_results table, best first; candidates are read from the records, so a grown space counts."""
    table = best_first(log_results(records, meta.folds, meta.scoring), meta.scoring[0])
    return table.assign(rank=table[f"rank_test_{meta.scoring[0]}"])


def _key(meta: SearchMeta, candidate_id: str) -> dict[str, str]:
    return {f"{TAG}search_id": meta.search_id, f"{TAG}candidate_id": candidate_id}


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
    tags[f"{TAG}code_version"] = str(current)
    if scored_by is not None:
        tags[f"{TAG}code_change_allowed"] = "true"
        tags[f"{TAG}search_code_version"] = scored_by
    return tags
