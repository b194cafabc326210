"""MLflow for the few models worth keeping: the tracking store, one run per promoted model, the registry.

Every MLflow call of the project is in this module, :mod:`kampai.tracking`,
:mod:`kampai.runs` and :mod:`kampai.trust` (which models load without running their code),
and MLflow is imported on first use. A search never comes here (its
thousands of fits go to the run log); ``gridsearch promote`` does, with models already
refitted, and ``gridsearch predict`` loads them back.

A promoted model carries the code no index serves (ours) and requires only what an index
serves (:mod:`kampai.packaging`), so it loads where this project is not installed. A model
run may be the child of a parent run (:mod:`kampai.runs`), with the real times of its fits.

Measured with MLflow 3.17 on 2 cores: one promoted run (tags, params and metrics in one
``log_batch``, the config as an artifact, the model with a signature, an input example,
explicit pip requirements and its code, a registered version) takes 0.2-0.3 s against a
local SQLite store.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from kampai.errors import RegistryError, UntrustedModelError, one_line
from kampai.packaging import ModelCode, flatten_params, model_code, skops_trusted_types
from kampai.tracking import (
    DEFAULT_TRACKING_URI,
    PARENT_TAG,
    PROBE_ENV,
    QUIET_ENV,
    RUN_NAME_TAG,
    artifact_location,
    environment,
    log_batch,
    resolve_tracking_uri,
    sqlite_path,
    tag_conditions,
    tracking,
)

MODEL_ARTIFACT = "model"
MODEL_NAME_TAG = "kampai.model_name"
MODEL_VERSION_TAG = "kampai.model_version"


@dataclass(frozen=True)
class ModelRun:
    """What one promoted model writes to MLflow.

    Attributes
    ----------
    key : mapping
        Tags that identify the model (e.g. search and candidate ids): a second
        :meth:`Store.log_model_run` with the same key and model name finds the first run.
    name : str
        The run name shown in the UI.
    model : estimator
        The fitted model.
    X : DataFrame
        Training inputs: the signature is inferred from them, the input example is their head.
    params : mapping
        ``step__param`` values, e.g. ``model.get_params(deep=True)``; see :func:`flatten_params`.
    metrics, tags : mapping
        Logged with the params in batches; ``key`` is added to the tags.
    artifacts : mapping
        File name to text, e.g. the search config.
    metadata : mapping
        Kept in the MLmodel file, e.g. ``{"target": "fare_amount"}``; the modules of the
        shipped code and their digest are added (``code_modules``, ``code_digest``).
    parent_run_id : str, optional
        Makes the run a child of this run (tag ``mlflow.parentRunId``).
    start_time, end_time : int, optional
        The run's times in epoch milliseconds, e.g. those of the fits it stands for (default: now).
    """

    key: Mapping[str, str]
    name: str
    model: BaseEstimator
    X: pd.DataFrame
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    artifacts: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    parent_run_id: str | None = None
    start_time: int | None = None
    end_time: int | None = None


@dataclass(frozen=True)
class RegisteredRun:
    """A run holding a registered model version; ``created`` is False when it already existed."""

    run_id: str
    model_name: str
    version: str
    created: bool
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    seconds: float = 0.0
    log_model_seconds: float = 0.0

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"


@dataclass(frozen=True)
class LoadedModel:
    """A model loaded from MLflow as a pyfunc, with the input columns of its signature.

    Attributes
    ----------
    inputs : tuple of (column, type, required)
        MLflow type names: ``string``, ``double``, ``long``, ...
    """

    uri: str
    pyfunc: Any
    inputs: tuple[tuple[str, str, bool], ...]
    metadata: Mapping[str, Any]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predictions for ``X``, through MLflow's schema enforcement as ``mlflow models serve`` does."""
        try:
            return np.asarray(self.pyfunc.predict(X))
        except Exception as exc:  # noqa: BLE001 - MLflow schema errors and the model's own errors alike, in one line
            raise RegistryError(f"model {self.uri} cannot predict this input: {one_line(exc)}") from None


class Store:
    """An MLflow tracking store and its model registry (the same URI), already checked reachable.

    Use :func:`open_store` to get one.
    """

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def find(self, key: Mapping[str, str], model_name: str) -> RegisteredRun | None:
        """The complete run (finished, with a registered version) logged for ``key``, if any."""
        complete, _ = self._runs_with(key, model_name)
        return _registered(complete[0], model_name) if complete else None

    def log_model_run(self, model_name: str, run: ModelRun) -> RegisteredRun:
        """Log ``run`` as one MLflow run and register its model under ``model_name``.

        Idempotent: when a complete run with the same key exists, it is returned
        (``created=False``) and nothing is written. Runs with that key left incomplete by a
        crash are deleted first. On any failure, everything this call created is deleted
        again (run, logged model, model version, a new registered model) before the
        :class:`RegistryError`. The model version tag is written last: it marks a complete run.
        """
        complete, stale = self._runs_with(run.key, model_name)
        if complete:
            return _registered(complete[0], model_name)
        for leftover in stale:
            self.discard(leftover.info.run_id, model_name)
        trusted = skops_trusted_types(run.model, run.X.head(5))  # before anything is written
        code = model_code(run.model, trusted)
        started = time.perf_counter()
        run_id: str | None = None
        new_model = False
        try:
            import mlflow

            experiment_id = self.experiment(model_name)
            tags = {**run.tags, **run.key, MODEL_NAME_TAG: model_name, RUN_NAME_TAG: run.name}
            if run.parent_run_id:
                tags[PARENT_TAG] = run.parent_run_id
            run_id = self.client.create_run(experiment_id, start_time=run.start_time, tags=tags, run_name=run.name).info.run_id
            with tracking(self.uri), mlflow.start_run(run_id=run_id):
                log_batch(self.client, run_id, flatten_params(run.params), run.metrics)
                for name, text in run.artifacts.items():
                    self.client.log_text(run_id, text, name)
                log_started = time.perf_counter()
                info = _log_sklearn_model(run, trusted, code)
                log_model_seconds = time.perf_counter() - log_started
                new_model = self._ensure_registered_model(model_name)
                version = self.client.create_model_version(model_name, source=info.model_uri, run_id=run_id,
                                                           model_id=info.model_id, tags=dict(run.key)).version
            if run.end_time is not None:
                self.client.set_terminated(run_id, "FINISHED", end_time=max(run.end_time, run.start_time or 0))
            self.client.set_tag(run_id, MODEL_VERSION_TAG, str(version))
        except Exception as exc:  # noqa: BLE001 - whatever failed (store, model, registry), undo and report in one line
            if run_id is not None:
                self.discard(run_id, model_name, delete_model=new_model)
            raise RegistryError(f"could not log {run.name} to {self.uri}: {one_line(exc)} (nothing was kept)") from None
        logged = self.client.get_run(run_id)
        return RegisteredRun(run_id, model_name, str(version), True, dict(logged.data.metrics), dict(logged.data.tags),
                             time.perf_counter() - started, log_model_seconds)

    def set_best_alias(self, model_name: str, alias: str, among: Mapping[str, str], metric: str) -> str | None:
        """Point ``alias`` at the version whose run, among runs tagged ``among``, has the highest ``metric``.

        Returns the version, or None when no such run exists.
        """
        experiment = self.client.get_experiment_by_name(model_name)
        if experiment is None:
            return None
        conditions = [*tag_conditions({**among, MODEL_NAME_TAG: model_name}), f"tags.`{MODEL_VERSION_TAG}` != ''",
                      "attributes.status = 'FINISHED'"]
        best = self.client.search_runs([experiment.experiment_id], " and ".join(conditions),
                                       order_by=[f"metrics.`{metric}` DESC"], max_results=1)
        if not best:
            return None
        version = best[0].data.tags[MODEL_VERSION_TAG]
        try:
            self.client.set_registered_model_alias(model_name, alias, version)
        except Exception as exc:  # noqa: BLE001 - a store error of any kind, in one line
            raise RegistryError(f"could not set alias {alias!r} of model {model_name} in {self.uri}: {one_line(exc)}") from None
        return version

    def tag(self, run_ids: list[str], tags: Mapping[str, str], model_name: str | None = None) -> None:
        """Set ``tags`` on runs and, with ``model_name``, on the model versions those runs registered."""
        for run_id in run_ids:
            log_batch(self.client, run_id, tags=tags)
            if model_name:
                for version in self.client.search_model_versions(f"run_id = '{run_id}'"):
                    for name, value in tags.items():
                        self.client.set_model_version_tag(model_name, version.version, name, value)

    def experiment(self, model_name: str) -> str:
        """The id of the experiment named after the model, created if needed (with SQLite, artifacts next to the database)."""
        experiment = self.client.get_experiment_by_name(model_name)
        if experiment is not None and experiment.lifecycle_stage == "deleted":
            raise RegistryError(f"experiment {model_name!r} is deleted in {self.uri} (restore it with "
                                f"'mlflow experiments restore', or set another registry.model_name)")
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(model_name, artifact_location=artifact_location(self.uri))

    def discard(self, run_id: str, model_name: str | None = None, delete_model: bool = False) -> None:
        """Delete a run and what hangs on it: model versions, logged models (best effort).

        ``delete_model`` also deletes the registered model ``model_name`` (one this call created).
        """
        for action in (
            lambda: [self.client.delete_model_version(v.name, v.version) for v in self.client.search_model_versions(f"run_id = '{run_id}'")],
            lambda: [self.client.delete_logged_model(m.model_id) for m in (self.client.get_run(run_id).outputs.model_outputs or [])],
            lambda: self.client.delete_run(run_id),
            lambda: delete_model and model_name and self.client.delete_registered_model(model_name),
        ):
            try:
                action()
            except Exception:  # noqa: BLE001, S112 - cleanup goes on; the original error is what the user sees
                continue

    def _runs_with(self, key: Mapping[str, str], model_name: str) -> tuple[list[Any], list[Any]]:
        """(complete, stale) runs logged for ``key``: stale ones were left by a crash mid-promotion."""
        experiment = self.client.get_experiment_by_name(model_name)
        if experiment is None:
            return [], []
        runs = self.client.search_runs([experiment.experiment_id], " and ".join(tag_conditions({**key, MODEL_NAME_TAG: model_name})))
        complete = [r for r in runs if r.info.status == "FINISHED" and MODEL_VERSION_TAG in r.data.tags]
        return complete, [r for r in runs if r not in complete]

    def _ensure_registered_model(self, model_name: str) -> bool:
        """Create the registered model if needed; True when this call created it."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(model_name)
            return False
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        self.client.create_registered_model(model_name)
        return True

def open_store(tracking_uri: str | None = None, create: bool = True) -> Store:
    """The store at ``tracking_uri`` (see :func:`resolve_tracking_uri`), checked reachable in seconds.

    With ``create=False`` (reading: ``predict``, ``registry``) a missing SQLite file is an
    error rather than a new empty store.

    Raises
    ------
    RegistryError
        When the store cannot be reached or opened, e.g. a server that is down or a
        SQLite path that cannot be created.
    """
    uri = resolve_tracking_uri(tracking_uri)
    database = sqlite_path(uri)
    if not create and database is not None and not database.exists():
        raise RegistryError(f"no MLflow store at {uri}: {database} does not exist (promote a model first, "
                            "or give --tracking-uri / MLFLOW_TRACKING_URI)")
    try:
        with environment(PROBE_ENV, override=True):
            store = Store(uri)
            store.client.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - requests, SQLAlchemy and MLflow errors alike mean unreachable
        raise RegistryError(f"cannot reach the MLflow tracking store {uri}: {one_line(exc)} "
                            "(start the server, or fix MLFLOW_TRACKING_URI / registry.tracking_uri)") from None
    return store


def load_model(model_uri: str, tracking_uri: str | None = None, trust_pickle: bool = False) -> LoadedModel:
    """Load ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or ``runs:/<run id>/model``.

    The model is downloaded and its MLmodel file read before anything is deserialized.
    Without ``trust_pickle`` only a model that loads without running code it holds is loaded:
    an sklearn model saved with skops trusting only types we accept (see :mod:`kampai.trust`),
    as every promoted model is. ``trust_pickle`` loads any model as ``mlflow.pyfunc.load_model``
    does, running its pickles and its shipped code: only for models whose author you trust.

    Raises
    ------
    UntrustedModelError
        Without ``trust_pickle``, for a model whose loading would run code it holds.
    RegistryError
        When the store is unreachable or the model (or its alias) does not exist.
    """
    from kampai.trust import load_without_code

    store = open_store(tracking_uri, create=False)
    try:
        import mlflow

        with tracking(store.uri, QUIET_ENV):
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
            pyfunc = mlflow.pyfunc.load_model(str(local)) if trust_pickle else load_without_code(model_uri, local)
    except UntrustedModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - unknown model, alias, artifact or loader error, in one line
        raise RegistryError(f"cannot load model {model_uri} from {store.uri}: {one_line(exc)}") from None
    schema = pyfunc.metadata.get_input_schema()
    inputs = tuple((spec.name, spec.type.name, spec.required) for spec in schema.inputs) if schema else ()
    return LoadedModel(model_uri, pyfunc, inputs, dict(pyfunc.metadata.metadata or {}))


def _log_sklearn_model(run: ModelRun, trusted: list[str], code: ModelCode) -> Any:
    """``mlflow.sklearn.log_model`` into the active run: skops, signature, input example, requirements, code."""
    import mlflow
    from mlflow.models import infer_signature

    example = run.X.head(5)
    # MLflow reads every value (6.5 s for a million rows); the head and the rows with missing
    # values give the same schema, missing values (optional columns) included.
    sample = pd.concat([run.X.head(1000), run.X[run.X.isna().any(axis=1)].head(1000)])
    metadata = {**run.metadata, "code_modules": list(code.sources), "code_digest": code.digest}
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="kampai-code-") as shipped:
        warnings.filterwarnings("ignore", message=".*[Ii]nteger column", category=UserWarning)
        warnings.filterwarnings("ignore", module=r"mlflow\.")  # MLflow's own deprecations (pandas 4, ...), not the user's
        signature = infer_signature(sample, run.model.predict(example))
        return mlflow.sklearn.log_model(
            run.model,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=example,
            pip_requirements=list(code.requirements),
            code_paths=code.write(Path(shipped)) or None,
            serialization_format="skops",
            skops_trusted_types=trusted,
            metadata=metadata,
        )


def _registered(run: Any, model_name: str) -> RegisteredRun:
    tags = run.data.tags
    return RegisteredRun(run.info.run_id, model_name, tags[MODEL_VERSION_TAG], False, dict(run.data.metrics), dict(tags))


__all__ = [
    "DEFAULT_TRACKING_URI",
    "LoadedModel",
    "ModelRun",
    "RegisteredRun",
    "Store",
    "load_model",
    "open_store",
    "resolve_tracking_uri",
]
