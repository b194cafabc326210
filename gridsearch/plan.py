"""The plan: which preprocessing each candidate needs, so each distinct one runs once per fold.

A pipeline's steps before the final estimator (its *prefix*) depend only on the
parameters addressed to them. Candidates with the same prefix parameters share one
fitted-and-transformed prefix per fold; only their final estimators are fitted apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from gridsearch.space import Candidate, content_id
from gridsearch.stages import raw_stages, splits_into_stages, stage_params


@dataclass(frozen=True)
class PrepGroup:
    """Candidates that share their preprocessing.

    Attributes
    ----------
    id : str
        Content hash of the search scope and the prefix parameters.
    params : mapping
        The parameters addressed to the prefix (empty when there is none).
    candidates : tuple of Candidate
        In search-space order.
    """

    id: str
    params: Mapping[str, Any]
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class Plan:
    """The whole work of a search: groups times folds."""

    groups: tuple[PrepGroup, ...]
    folds: int
    stages_per_fold: int

    @property
    def n_candidates(self) -> int:
        return sum(len(group.candidates) for group in self.groups)

    @property
    def n_fits(self) -> int:
        return self.n_candidates * self.folds

    @property
    def n_prep_tasks(self) -> int:
        return len(self.groups) * self.folds

    def summary(self) -> str:
        """One line for ``--dry-run`` and the start of a run."""
        reuse = self.n_fits / self.n_prep_tasks if self.n_prep_tasks else 0.0
        stages = f" on {self.stages_per_fold} raw stage tasks per fold" if self.stages_per_fold else ""
        return (
            f"{self.n_candidates} candidates x {self.folds} folds = {self.n_fits} fits; "
            f"{self.n_prep_tasks} prefix tasks ({len(self.groups)} per fold){stages}, "
            f"each prefix reused by {reuse:.1f} fits on average"
        )


def final_step_name(pipeline: BaseEstimator) -> str | None:
    """Name of the final step when ``pipeline`` has a prefix to share, else None."""
    if isinstance(pipeline, Pipeline) and len(pipeline.steps) > 1:
        return pipeline.steps[-1][0]
    return None


def split_params(params: Mapping[str, Any], final_step: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(prefix_params, final_params)``: final ones address the last step or swap it."""
    if final_step is None:
        return {}, dict(params)
    prefix, final = {}, {}
    for name, value in params.items():
        is_final = name == final_step or name.startswith(f"{final_step}__")
        (final if is_final else prefix)[name] = value
    return prefix, final


def make_plan(candidates: Sequence[Candidate], pipeline: BaseEstimator, folds: int, scope: Any) -> Plan:
    """Group ``candidates`` by their prefix parameters, groups in order of first use."""
    final_step = final_step_name(pipeline)
    members: dict[str, list[Candidate]] = {}
    prefixes: dict[str, dict[str, Any]] = {}
    for candidate in candidates:
        prefix, _ = split_params(candidate.params, final_step)
        group_id = content_id(scope, prefix)
        prefixes.setdefault(group_id, prefix)
        members.setdefault(group_id, []).append(candidate)
    groups = tuple(PrepGroup(gid, prefixes[gid], tuple(members[gid])) for gid in members)
    return Plan(groups=groups, folds=folds, stages_per_fold=_distinct_stages(pipeline, groups))


def _distinct_stages(pipeline: BaseEstimator, groups: tuple[PrepGroup, ...]) -> int:
    """How many raw stage tasks one fold needs: distinct (stage, its parameters) pairs."""
    if not splits_into_stages(pipeline, sorted({name for group in groups for name in group.params})):
        return 0
    return len({(path, content_id(stage_params(group.params, path))) for group in groups for path in raw_stages(pipeline)})
