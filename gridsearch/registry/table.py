"""The registry as a table: every promoted run, for comparing trainings across searches."""

from __future__ import annotations

import pandas as pd

from gridsearch.registry.promote import TAG


def registry_table(tracking_uri: str | None = None, model_name: str | None = None, search_id: str | None = None) -> pd.DataFrame:
    """Every promoted run in the store, for comparing trainings across searches.

    One row per run with a registered model version: ``run_id, parent_run_id,
    model_name, model_version, aliases, start_time, end_time, status``, then ``metrics.*``
    (CV scores per scorer and fold, fit times, held-out scores, refit time), ``tags.*``
    (search, candidate, rank, code version and tag, data fingerprint) and ``params.*``.
    ``parent_run_id`` is the search's parent run, whose children the promoted runs are.
    """
    from kampai.runs import promoted_runs

    return promoted_runs(tracking_uri, model_name, {f"{TAG}search_id": search_id} if search_id else None)


def format_registry(table: pd.DataFrame) -> str:
    """The columns of :func:`registry_table` worth reading in a terminal."""
    if table.empty:
        return "no promoted runs"
    short = {"parent_run_id": "parent", "tags.gridsearch.search_id": "search", "tags.gridsearch.candidate_id": "candidate",
             "tags.gridsearch.rank": "rank", "tags.gridsearch.git_sha": "git_sha", "tags.gridsearch.code_tag": "code_tag"}
    columns = ["model_name", "model_version", "aliases", *short]
    columns += [c for prefix in ("metrics.mean_test_", "metrics.holdout_") for c in table.columns if c.startswith(prefix)]
    columns += ["metrics.refit_time", "start_time"]
    shown = table[[c for c in columns if c in table.columns]].copy()
    for column, width in (("tags.gridsearch.git_sha", 12), ("parent_run_id", 8)):
        if column in shown:
            shown[column] = shown[column].fillna("").str[:width]
    if "tags.gridsearch.code_tag" in shown:
        shown["tags.gridsearch.code_tag"] = shown["tags.gridsearch.code_tag"].fillna("")
    shown["start_time"] = shown["start_time"].dt.strftime("%Y-%m-%d %H:%M")
    shown = shown.rename(columns={**short, "model_name": "model", "model_version": "version"})
    shown.columns = [c.removeprefix("metrics.") for c in shown.columns]
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-")
