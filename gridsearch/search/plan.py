"""The plan: every piece of work of a search, decided once, before anything runs.

A pipeline's steps before the final estimator (its *prefix*) depend only on the parameters
addressed to them, so candidates with the same prefix parameters form a :class:`PrepGroup`
that shares one fitted prefix per fold. Each group carries the raw stages its prefix reads
the data with (:mod:`gridsearch.search.stages`) and its fit families: candidates whose
final estimators can share one fit (:mod:`gridsearch.search.ensembles`). ``--dry-run``
counts these, the executor submits them, and workers run them; none of them re-plans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sklearn.base import BaseEstimator, clone
from sklearn.pipeline import Pipeline

from gridsearch.log.records import FitItem
from gridsearch.search.ensembles import EARLY_STOPPING, PATH_PARAM, family_key, supports_path
from gridsearch.search.space import Candidate, ListSpace, Members, Space, resolve, step_names
from gridsearch.search.stages import raw_stages, splits_into_stages, stage_estimator, stage_params
from kampai.ids import content_id
from kampai.pipeline import make_estimator

DEFAULT_KIND = "default"  # the final estimator the pipeline was built with


@dataclass(frozen=True)
class RawStage:
    """A raw stage as one group's prefix configures it; one task per fold for each distinct ``id``.

    ``estimator`` is the configured (unfitted) stage, ``columns`` the columns it reads
    (None: all of them).
    """

    path: str
    params: Mapping[str, Any]
    estimator: BaseEstimator
    columns: Any
    id: str


@dataclass(frozen=True)
class FitFamily:
    """Candidates of one final-estimator ``kind`` that one fit serves.

    ``items[0]`` is fitted; the others differ from it only in a smaller ``n_estimators``
    and are scored on its first trees. Most families have one item.
    """

    kind: str
    items: tuple[FitItem, ...]

    def pending(self, keep: Any) -> FitFamily | None:
        """The family without the items ``keep(item)`` rejects, or None when none is left."""
        items = tuple(item for item in self.items if keep(item))
        return None if not items else self if len(items) == len(self.items) else FitFamily(self.kind, items)


class LazyFamilies(Sequence[FitFamily]):
    """A group's fit families, made as they are walked: a plan of 10^7 candidates holds none of them.

    Iterating walks the group's candidates again each time; ``len`` (families) and
    ``n_candidates`` are known without walking. Indexing walks up to the index: for tests
    and small plans.
    """

    def __init__(self, walk: Callable[[], Iterator[FitFamily]], n_families: int, n_candidates: int) -> None:
        self._walk, self._len, self.n_candidates = walk, n_families, n_candidates

    def __iter__(self) -> Iterator[FitFamily]:
        return self._walk()

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: Any) -> Any:
        return tuple(self)[index]


@dataclass(frozen=True)
class PrepGroup:
    """Candidates that share their preprocessing.

    Attributes
    ----------
    id : str
        Content hash of the search scope and the prefix parameters.
    params : mapping
        The parameters addressed to the prefix (empty when there is none).
    stages : tuple of RawStage
        The raw stages the prefix is assembled from (empty when it is fitted whole).
    families : sequence of FitFamily
        The group's candidates, in search-space order of their first member: a tuple, or
        :class:`LazyFamilies` in a plan made by :func:`make_plan`.
    """

    id: str
    params: Mapping[str, Any]
    stages: tuple[RawStage, ...]
    families: Sequence[FitFamily]

    @property
    def n_candidates(self) -> int:
        if isinstance(self.families, LazyFamilies):
            return self.families.n_candidates
        return sum(len(family.items) for family in self.families)


@dataclass(frozen=True)
class Plan:
    """The whole work of a search: groups times folds.

    ``final_step`` names the pipeline's final step when its prefix is shared. It is None
    for an estimator fitted whole (a pipeline that is its final estimator alone, or one the
    search asked to fit whole): then there is no preprocessing task, and fits read the
    fold's rows directly.
    """

    groups: tuple[PrepGroup, ...]
    folds: int
    final_step: str | None

    @property
    def has_prefix(self) -> bool:
        return self.final_step is not None

    @property
    def n_candidates(self) -> int:
        return sum(group.n_candidates for group in self.groups)

    @property
    def n_fits(self) -> int:
        return self.n_candidates * self.folds

    @property
    def n_prep_tasks(self) -> int:
        return len(self.groups) * self.folds if self.has_prefix else 0

    @property
    def stages_per_fold(self) -> int:
        return len({stage.id for group in self.groups for stage in group.stages})

    @property
    def n_families(self) -> int:
        return sum(len(group.families) for group in self.groups)

    def summary(self) -> str:
        """One line for ``--dry-run`` and the start of a run: the tasks that will run."""
        fits = f"{self.n_candidates} candidates x {self.folds} folds = {self.n_fits} fits"
        shared = (f"; {self.n_families * self.folds} fits along n_estimators serve them"
                  if self.n_families < self.n_candidates else "")
        if not self.has_prefix:
            return f"{fits}{shared}; no preprocessing to share (the pipeline is its final estimator alone)"
        reuse = self.n_fits / self.n_prep_tasks if self.n_prep_tasks else 0.0
        stages = f" on {self.stages_per_fold} raw stage tasks per fold" if self.stages_per_fold else ""
        return (f"{fits}{shared}; {self.n_prep_tasks} prefix tasks ({len(self.groups)} per fold){stages}, "
                f"each prefix reused by {reuse:.1f} fits on average")


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


def make_plan(candidates: Space | Sequence[Candidate], pipeline: BaseEstimator, folds: int, scope: Any, *,
              share_prefix: bool = True, split_stages: bool = True) -> Plan:
    """Group ``candidates`` by their prefix parameters (groups in order of first use), each with
    its raw stages and fit families.

    From a :class:`~gridsearch.search.grids.ProductSpace` the groups are the distinct
    combinations of the prefix parameters' values, counted without building candidates;
    their families are made as the executor walks them. Only candidates of estimators
    that share fits along ``n_estimators`` are walked here, to form their families.

    Without ``share_prefix`` the pipeline is fitted whole by every candidate; without
    ``split_stages`` its prefix is fitted whole, never assembled from raw stages (for what
    the raw stages cannot see, e.g. fit parameters addressed to them).
    """
    space = candidates if isinstance(candidates, Space) else ListSpace(candidates)
    final_step = final_step_name(pipeline) if share_prefix else None
    parts = space.split_by(lambda name: not _is_final(name, final_step))
    names = sorted({name for prefix, _ in parts for name in prefix})
    split = split_stages and final_step is not None and splits_into_stages(pipeline, names)
    groups = tuple(
        PrepGroup(content_id(scope, prefix), prefix, _stages(pipeline, prefix) if split else (), _families(pipeline, members, final_step))
        for prefix, members in parts
    )
    return Plan(groups=groups, folds=folds, final_step=final_step)


def _is_final(name: str, final_step: str | None) -> bool:
    return final_step is None or name == final_step or name.startswith(f"{final_step}__")


def _stages(pipeline: BaseEstimator, prefix_params: Mapping[str, Any]) -> tuple[RawStage, ...]:
    """The raw stages a group's prefix reads the data with, as the group configures it.

    A branch the group sets to ``drop`` or ``passthrough`` is none; one it swaps in for
    them (``features__passengers: sklearn.preprocessing.StandardScaler``) is one.
    """
    configured = clone(pipeline).set_params(**resolve(prefix_params, step_names(pipeline)))
    prefix = configured[:-1]
    stages = []
    for path in raw_stages(configured):
        estimator, columns = stage_estimator(prefix, path)
        params = stage_params(prefix_params, path)
        stages.append(RawStage(path, params, estimator, columns, content_id(path, params)))
    return tuple(stages)


def _families(pipeline: BaseEstimator, members: Members, final_step: str | None) -> LazyFamilies:
    """A group's candidates grouped so that each group needs one fit, largest ``n_estimators`` first.

    Families of more than one candidate are made now (from the candidates whose final
    estimator has a path); every other candidate is a family of its own, made when walked.
    """
    shared = _path_families(pipeline, members, final_step)
    n_families = len(members) - len(shared) + sum(family is not None for family in shared.values())

    def walk() -> Iterator[FitFamily]:
        for candidate, params_json in members.walk():
            family = shared.get(candidate.id, _ALONE)
            if family is _ALONE:
                final = split_params(candidate.params, final_step)[1]
                yield FitFamily(_kind(final, final_step), (FitItem(candidate.id, final, params_json),))
            elif family is not None:
                yield family

    return LazyFamilies(walk, n_families, len(members))


_ALONE = FitFamily(DEFAULT_KIND, ())  # a candidate that is a family of its own


def _path_families(pipeline: BaseEstimator, members: Members, final_step: str | None) -> dict[str, FitFamily | None]:
    """For each candidate of a final estimator with a path: its family if it is the family's first member, else None."""

    def selects(name: str) -> bool:
        return name == (final_step or "") or (_is_final(name, final_step) and name.rpartition("__")[2] == EARLY_STOPPING)

    def has_path(values: Mapping[str, Any]) -> bool:
        estimator = _final_kind(pipeline, values, final_step)
        return estimator is not None and supports_path(estimator, values)

    families: dict[tuple[str, str], list[FitItem]] = {}
    for candidate, params_json in members.where(selects, has_path):
        final = split_params(candidate.params, final_step)[1]
        kind = _kind(final, final_step)
        estimator = _final_kind(pipeline, final, final_step)
        item = FitItem(candidate.id, final, params_json, _n_estimators(estimator, final))
        families.setdefault((kind, family_key(estimator, final)), []).append(item)
    shared: dict[str, FitFamily | None] = {}
    for (kind, _), items in families.items():
        shared.update(dict.fromkeys((item.candidate_id for item in items), None))
        shared[items[0].candidate_id] = FitFamily(kind, tuple(sorted(items, key=lambda item: -(item.n_estimators or 0))))
    return shared


def _kind(final_params: Mapping[str, Any], final_step: str | None) -> str:
    return str(final_params.get(final_step or "", DEFAULT_KIND))


def _n_estimators(estimator: BaseEstimator, final_params: Mapping[str, Any]) -> int:
    given = [value for name, value in final_params.items() if name.rpartition("__")[2] == PATH_PARAM]
    return int(given[0]) if given else int(getattr(estimator, PATH_PARAM))


def _final_kind(pipeline: BaseEstimator, final_params: Mapping[str, Any], final_step: str | None) -> BaseEstimator | None:
    """The final estimator a candidate swaps in (an estimator given as a value is itself), or the default."""
    value = final_params.get(final_step or "")
    return value if hasattr(value, "get_params") else _kind_estimator(pipeline, _kind(final_params, final_step), final_step)


@cache
def _kind_estimator(pipeline: BaseEstimator, kind: str, final_step: str | None) -> BaseEstimator | None:
    """A default instance of a final estimator kind, to know whether it has a path."""
    if kind == DEFAULT_KIND:
        return pipeline.steps[-1][1] if final_step else pipeline
    try:
        return make_estimator(kind)
    except ValueError:
        return None
