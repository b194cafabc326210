"""A search in MLflow as ``mlflow.sklearn.autolog`` shows ``GridSearchCV``: one parent run, candidates as children.

The parent run holds what defines the search (its config as params and as ``search.yaml``),
its size (candidates, fits, failed and lost fits), the best candidate's params as
``best_<param>`` and its score as ``best_cv_score``, and the whole ``cv_results`` table as
``cv_results.csv``, plus a report saved into the log directory (``report*.html``). Its children are the
promoted candidates (each with its model) and, with ``all_runs``, every other candidate
(params and scores only). Unlike autolog, which keeps 5 children and gives them made-up
times, every child here has the start and end time of its candidate's fits in the run log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from gridsearch.log.records import SearchMeta, Status
from kampai.packaging import flatten_params
from kampai.provenance import CodeVersion
from kampai.runs import ChildRun, ParentRun

TAG = "gridsearch."
CODE_TAG = f"{TAG}code_tag"
RESULTS_ARTIFACT = "cv_results.csv"
REPORT_GLOB = "report*.html"  # a report saved into the log directory, logged with the parent
# Config sections that say what the search is; cluster, cache, log and registry say where it ran.
_DEFINING = ("data", "pipeline", "search", "cv", "scoring")
_METRIC_PREFIXES = ("mean_", "std_", "rank_", "split")


def search_key(meta: SearchMeta) -> dict[str, str]:
    """The tags identifying a search's parent run."""
    return {f"{TAG}search_id": meta.search_id}


def search_parent(meta: SearchMeta, records: pd.DataFrame, table: pd.DataFrame, log_path: Path,
                  results_file: Path, code_tag: str | None = None) -> ParentRun:
    """The parent run of a search, from its log: ``table`` is its ``cv_results``, best first.

    ``results_file`` is where ``cv_results.csv`` is written for MLflow to upload.
    """
    primary = f"mean_test_{meta.scoring[0]}"
    scored = table[table[primary].notna()]
    best = scored.iloc[0] if len(scored) else None
    status = records["status"].astype(str)
    params = flatten_params({name: value for name, value in (meta.config or {}).items() if name in _DEFINING})
    params.update({"search_id": meta.search_id, "n_candidates": str(len(table)), "folds": str(meta.folds)})
    metrics = {
        "n_candidates": float(len(table)),
        "n_fits": float(len(records)),
        "n_failed_fits": float((status == Status.ERROR).sum()),
        "n_lost_fits": float((status == Status.LOST).sum()),
        "n_failed_candidates": float((table["n_errors"] > 0).sum()),
    }
    tags = {f"{TAG}data_fingerprint": str(meta.data_fingerprint), f"{TAG}scoring": ",".join(meta.scoring),
            **_code_tags(meta.code_version)}
    if best is not None:
        params.update({f"best_{name}": value for name, value in flatten_params(best["params"]).items()})
        metrics["best_cv_score"] = float(best[primary])
        metrics.update({f"best_mean_test_{s}": float(best[f"mean_test_{s}"]) for s in meta.scoring})
        tags[f"{TAG}best_candidate_id"] = str(best["candidate_id"])
    if code_tag:
        tags[CODE_TAG] = code_tag
    tags["mlflow.note.content"] = _note(meta, table, metrics, best)
    _results_csv(table).to_csv(results_file, index=False)
    started, finished = _times(records)
    return ParentRun(
        key=search_key(meta),
        state=_state(records),
        name=f"search-{meta.search_id[:8]}",
        params=params,
        metrics=metrics,
        tags=tags,
        texts={"search.yaml": yaml.safe_dump(dict(meta.config or {}), sort_keys=False)},
        files=[results_file, *sorted(p for p in log_path.glob(REPORT_GLOB) if p.is_file())],
        start_time=started,
        end_time=finished,
    )


def candidate_children(meta: SearchMeta, records: pd.DataFrame, table: pd.DataFrame, skip: set[str]) -> list[ChildRun]:
    """One model-less child run per candidate of ``table`` not in ``skip``: its params, scores and fit times."""
    times = candidate_times(records)
    children = []
    for row in table.to_dict("records"):
        cid = row["candidate_id"]
        if cid in skip:
            continue
        rank = int(row[f"rank_test_{meta.scoring[0]}"])
        started, finished = times.get(cid, (None, None))
        children.append(ChildRun(
            key={f"{TAG}search_id": meta.search_id, f"{TAG}candidate_id": cid},
            name=run_name(meta, cid, rank),
            params=flatten_params(row["params"]),
            metrics=candidate_metrics(row),
            tags={f"{TAG}rank": str(rank), f"{TAG}n_errors": str(int(row["n_errors"]))},
            start_time=started,
            end_time=finished,
        ))
    return children


def candidate_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """A candidate's numbers of ``cv_results``: ``mean_/std_/rank_test_*``, ``splitK_test_*``, mean fit and score times."""
    metrics = {}
    for name, value in row.items():
        numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        if name.startswith(_METRIC_PREFIXES) and numeric and not math.isnan(float(value)):
            metrics[name] = float(value)
    return metrics


def candidate_times(records: pd.DataFrame) -> dict[str, tuple[int | None, int | None]]:
    """Candidate id to (first fit started, last fit finished), epoch milliseconds."""
    if records.empty:
        return {}
    grouped = records.groupby("candidate_id", sort=False).agg(started=("started", "min"), finished=("finished", "max"))
    return {cid: (_ms(row.started), _ms(row.finished)) for cid, row in grouped.iterrows()}


def run_name(meta: SearchMeta, candidate_id: str, rank: int) -> str:
    """``<search id>-rank<rank>-<candidate id>``, shortened: a child's name in the UI."""
    return f"{meta.search_id[:8]}-rank{rank}-{candidate_id[:8]}"


def _times(records: pd.DataFrame) -> tuple[int | None, int | None]:
    if records.empty:
        return None, None
    return _ms(records["started"].min()), _ms(records["finished"].max())


def _ms(value: Any) -> int | None:
    """Epoch milliseconds of a timestamp, None when missing."""
    if value is None or pd.isna(value):
        return None
    return int(pd.Timestamp(value).timestamp() * 1000)


def _state(records: pd.DataFrame) -> str:
    """What the parent is built from: the number of records and the last one's time (a resumed search changes it)."""
    return f"{len(records)}:{_ms(records['finished'].max()) if len(records) else 0}"


def _code_tags(code: Mapping[str, Any] | None) -> dict[str, str]:
    if not code:
        return {}
    version = CodeVersion(code.get("git_sha"), code.get("git_dirty"), str(code.get("package_version")))
    tags = {f"{TAG}git_sha": version.git_sha or "none", f"{TAG}git_dirty": str(version.git_dirty).lower(),
            f"{TAG}package_version": version.package_version, f"{TAG}code_version": str(version)}
    if version.git_sha:
        tags["mlflow.source.git.commit"] = version.git_sha
    return tags


def _note(meta: SearchMeta, table: pd.DataFrame, metrics: Mapping[str, float], best: Any) -> str:
    """The run's description in the UI."""
    text = (f"Grid search {meta.search_id}: {len(table)} candidates x {meta.folds} folds, {int(metrics['n_fits'])} fits "
            f"({int(metrics['n_failed_fits'])} failed, {int(metrics['n_lost_fits'])} lost).")
    if best is not None:
        text += f" Best: {best['candidate_id']}, mean_test_{meta.scoring[0]} {best[f'mean_test_{meta.scoring[0]}']:.6g}."
    return text + " Every fit is in the run log; its children are the candidates promoted (with models) or logged."


def _results_csv(table: pd.DataFrame) -> pd.DataFrame:
    """``cv_results`` as a CSV keeps it: params as JSON, everything else as is."""
    return table.assign(params=[json.dumps(p, sort_keys=True, default=str) for p in table["params"]])


__all__: Sequence[str] = ["candidate_children", "candidate_metrics", "candidate_times", "search_key", "search_parent"]
