"""The code version from train to pred: what promote refuses, tags and records, and what predict compares.

The run log records the code of every fit (git commit, uncommitted changes, package
version); ``promote`` refuses to refit with other code unless allowed, can tag the search's
commit in git (``tag_code``: "label the trained code") and records the code in each model
(its MLmodel metadata: the code version and a hash of the shipped sources). ``predict``
compares the model's code with the running code and warns, or refuses, when they differ.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from gridsearch.errors import ArgumentError, GridsearchError
from gridsearch.log.records import SearchMeta, Status
from gridsearch.registry.parent import CODE_TAG, TAG
from kampai.errors import KampaiError
from kampai.packaging import installed_sources, source_digest
from kampai.provenance import CodeVersion, check_tag, delete_tag, tag_commit

_CODE_COLUMNS = ("git_sha", "git_dirty", "package_version")


class CodeVersionWarning(UserWarning):
    """A model is applied by other code than the code that trained it."""


def code_change(meta: SearchMeta, records: pd.DataFrame, winners: pd.DataFrame, current: CodeVersion,
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


def commit_to_tag(meta: SearchMeta, records: pd.DataFrame, name: str, tag_dirty: bool, repo: Any) -> str:
    """The commit the search ran, checked taggable as ``name`` before anything is written."""
    code = dict(meta.code_version or {})
    sha = code.get("git_sha")
    if not sha:
        raise ArgumentError("tag_code", f"given, but search {meta.search_id} recorded no git commit (it ran outside a git "
                            "checkout); there is no commit to tag")
    dirty = bool(code.get("git_dirty")) or bool(records["git_dirty"].fillna(False).astype(bool).any())
    if dirty and not tag_dirty:
        raise ArgumentError("tag_dirty", f"not given, and search {meta.search_id} ran on uncommitted changes: commit {sha[:12]} "
                            "does not hold the code that scored it (commit, rerun the search and tag it; or give it)")
    try:
        check_tag(name, sha, repo)
    except KampaiError as exc:
        raise ArgumentError("tag_code", str(exc)) from None
    return sha


def record_tag(store: Any, model_name: str, name: str, sha: str, meta: SearchMeta, run_ids: list[str], repo: Any) -> None:
    """Create the git tag, then record it on the runs and their model versions; a failed record removes a new tag."""
    message = f"gridsearch: search {meta.search_id} promoted to MLflow model {model_name}"
    try:
        created = tag_commit(name, sha, message, repo)
    except KampaiError as exc:
        raise ArgumentError("tag_code", str(exc)) from None
    try:
        store.tag(run_ids, {CODE_TAG: name, f"{TAG}code_tag_commit": sha}, model_name)
    except Exception:
        if created:
            delete_tag(name, repo)
        raise


def check_model_code(uri: str, metadata: Mapping[str, Any], current: CodeVersion, strict: bool = False) -> str | None:
    """Compare the code that trained a model (its MLmodel metadata) with ``current``; the difference in one line, or None.

    Different means another commit, dirty flag or package version, or, for the modules the
    model carries (e.g. ``kampai.transformers``), other source files here than in the model.
    Warns with :class:`CodeVersionWarning`, or raises with ``strict``.

    Raises
    ------
    GridsearchError
        With ``strict``, when the code differs.
    """
    recorded = metadata.get("code_version")
    if not recorded:
        return None
    trained = CodeVersion(recorded.get("git_sha"), recorded.get("git_dirty"), str(recorded.get("package_version")))
    modules = list(metadata.get("code_modules") or [])
    here = installed_sources(modules) if modules else {}
    same_source = here is not None and (not modules or source_digest(here) == metadata.get("code_digest"))
    if trained == current and same_source:
        return None
    checkout = f"git checkout {recorded.get('tag') or trained.git_sha}" if trained.git_sha else "install the code it was trained with"
    sources = "its modules " + ", ".join(modules) + (" are the same here" if same_source else " differ here") if modules else ""
    message = (f"model {uri} was trained by {trained}, this is {current}" + (f"; {sources}" if sources else "")
               + f" (to predict with the model's code: {checkout})")
    if strict:
        raise GridsearchError(f"refused (strict_code): {message}")
    warnings.warn(message, CodeVersionWarning, stacklevel=3)
    return message


def _none(value: Any) -> Any:
    """Arrow nulls come back as None or NaN."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
