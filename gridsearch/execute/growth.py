"""Halving along ``n_estimators`` that grows each survivor's ensembles instead of refitting them.

A round's fit tasks keep their fitted final estimators as Dask futures held here, in the
client (one per candidate and fold, on the worker that fitted it); the next round's fit of
the same candidate (the same params but the resource) on the same fold reads that future,
so Dask's locality sends it to that worker, and grows a copy of it to the new number of
trees (:func:`gridsearch.execute.tasks.grow_batch`). The futures of candidates a round
eliminated are released when the next round starts, and all of them when the fit ends.
Scikit-learn checks that every round splits the rows the same way, and the prefix is fitted
with the same params each round, so a grown fit is the refit, bit for bit
(:func:`gridsearch.search.ensembles.grown`).

:class:`Refits` is the executor's plain fit task with the same interface, so the executor
never asks whether ensembles grow.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

from distributed import Client, Future
from sklearn.base import BaseEstimator

from gridsearch.execute.batching import FitBatch
from gridsearch.execute.tasks import FitSetup, final_estimator, fit_batch, grow_batch, model_of, records_of
from gridsearch.log.records import FitItem, FitRecord
from gridsearch.search.ensembles import PATH_PARAM, growth_key, why_not_grown
from gridsearch.search.plan import Plan, final_step_name
from gridsearch.search.space import resolve

Slot = tuple[str, int]  # (growth key, fold)


class Refits:
    """Every fit from scratch, nothing kept: the executor's plain fit task (the default)."""

    task: Callable[..., Any] = staticmethod(fit_batch)

    def start_round(self, plan: Plan, setup: FitSetup) -> None:
        """A round's plan is about to run."""

    def inputs(self, batch: FitBatch) -> tuple[Any, ...]:
        """What :attr:`task` takes after ``(source, fold, families, setup)``."""
        return ()

    def reads_models(self, batch: FitBatch) -> bool:
        """Whether ``batch``'s task reads models held on workers (then Dask's locality places it)."""
        return False

    def submitted(self, future: Future, batch: FitBatch) -> None:
        """``batch``'s task was submitted as ``future``."""

    def records(self, future: Future) -> list[FitRecord]:
        """The records of a task that finished."""
        return future.result()

    def release(self) -> None:
        """The fit is over: nothing is kept."""


class Growth(Refits):
    """Each round's fitted ensembles kept as futures, grown in the next round (see the module's text)."""

    task = staticmethod(grow_batch)

    def __init__(self, client: Client, resource: str) -> None:
        self._client, self._resource = client, resource
        self._models: dict[Slot, tuple[int, Future]] = {}  # the last fitted model of each (candidate, fold), with its trees
        self._pending: dict[str, tuple[Future, list[tuple[Slot, int, Future]]]] = {}  # by fit task key: its records, its models
        self._grows: dict[str, bool] = {}  # by growth key

    def start_round(self, plan: Plan, setup: FitSetup) -> None:
        """Release the models of candidates this round no longer has; say which new candidates cannot grow."""
        leaders = [(group.params, family.items[0]) for group in plan.groups for family in group.families]
        alive = set()
        refused: dict[str, int] = {}
        for prefix, item in leaders:
            key = self._key(prefix, item)
            alive.add(key)
            if key not in self._grows:
                reason = _why_not(setup, item)
                self._grows[key] = reason is None
                if reason is not None:
                    refused[reason] = refused.get(reason, 0) + 1
        self._models = {slot: model for slot, model in self._models.items() if slot[0] in alive}
        if refused:  # only the first round has candidates not seen before
            said = "; ".join(f"{count} ({reason})" for reason, count in refused.items())
            warnings.warn(f"grow_ensembles: {sum(refused.values())} of {len(leaders)} candidates cannot grow, they refit every "
                          f"round: {said}", UserWarning, stacklevel=2)

    def inputs(self, batch: FitBatch) -> tuple[Any, ...]:
        return (tuple(self._previous(batch, item) for item in _leaders(batch)),)

    def reads_models(self, batch: FitBatch) -> bool:
        return any(model is not None for model in self.inputs(batch)[0])

    def submitted(self, future: Future, batch: FitBatch) -> None:
        models = []
        for index, item in enumerate(_leaders(batch)):
            key = self._key(batch.group.params, item)
            if self._grows[key]:
                models.append(((key, batch.fold), item.n_estimators, self._client.submit(model_of, future, index, key=f"model{index}-{future.key}")))
        self._pending[future.key] = (self._client.submit(records_of, future, key=f"records-{future.key}"), models)

    def records(self, future: Future) -> list[FitRecord]:
        """The task's records; its models now stand for their candidates' (a failed task's models are never kept)."""
        records, models = self._pending.pop(future.key)
        for slot, n_estimators, model in models:
            self._models[slot] = (n_estimators, model)
        return records.result()

    def release(self) -> None:
        self._models.clear()
        self._pending.clear()

    def _key(self, prefix: Mapping[str, Any], item: FitItem) -> str:
        return growth_key({**prefix, **item.params}, self._resource)

    def _previous(self, batch: FitBatch, item: FitItem) -> Future | None:
        """The model ``item`` grows from on ``batch``'s fold: the last one fitted for its candidate, if it has fewer trees."""
        kept = self._models.get((self._key(batch.group.params, item), batch.fold))
        return None if kept is None or item.n_estimators is None or kept[0] >= item.n_estimators else kept[1]


def growth_for(estimator: BaseEstimator, resource: str, client: Client) -> Refits:
    """:class:`Growth` along ``resource``, when it is the final estimator's ``n_estimators``; else :class:`Refits`, said in one line."""
    final_step = final_step_name(estimator)
    grown = PATH_PARAM if final_step is None else f"{final_step}__{PATH_PARAM}"
    if resource == grown:
        return Growth(client, resource)
    warnings.warn(f"grow_ensembles: the resource {resource} is not the final estimator's {grown}; every round refits",
                  UserWarning, stacklevel=3)
    return Refits()


def _leaders(batch: FitBatch) -> list[FitItem]:
    """The fitted item of each family of ``batch``, in order."""
    return [family.items[0] for family in batch.families]


def _why_not(setup: FitSetup, item: FitItem) -> str | None:
    """Why ``item``'s fit cannot be grown (None: it can), from the estimator its fit task would make."""
    if setup.final_step is None and final_step_name(setup.pipeline) is not None:
        return "the pipeline is fitted whole, its prefix not shared (a custom scorer, or fit params not for one step)"
    if item.n_estimators is None:
        return "not a forest or a gradient boosting without early stopping"
    estimator = final_estimator(setup, resolve(item.params, setup.steps))
    return why_not_grown(estimator)
