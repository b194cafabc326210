"""MLflow for the few models worth keeping: the tracking store, one run per promoted model, the registry.

Every MLflow call of the project is in this module, and MLflow is imported on first use.
A search never comes here (its thousands of fits go to the run log); ``gridsearch promote``
does, with models already refitted, and ``gridsearch predict`` loads them back.

Measured with MLflow 3.17 on 2 cores: one promoted run (tags, params and metrics in one
``log_batch``, the config as an artifact, the model with a signature, an input example and
explicit pip requirements, a registered version) takes 0.2-0.3 s against a local SQLite store.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from kampai.errors import RegistryError, one_line
from kampai.packaging import flatten_params, pip_requirements, skops_trusted_types

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
MODEL_ARTIFACT = "model"
MODEL_NAME_TAG = "kampai.model_name"
MODEL_VERSION_TAG = "kampai.model_version"
# Modules a pickled-free skops model needs at inference, besides those of its estimators.
# An unreachable server must fail in seconds, not after MLflow's 7 retries with backoff (~4 min).
_PROBE_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
_QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
_PARAMS_PER_BATCH = 100  # MLflow's limit on params (and tags) per log_batch


def resolve_tracking_uri(configured: str | None = None) -> str:
    """The tracking store to use: ``configured``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.

    ``configured`` is an explicit option or the config's ``registry.tracking_uri``. The
    default is MLflow's own: a SQLite file in the working directory. A relative SQLite path
    is made absolute so that messages, the UI and later commands name the same file.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and uri != prefix + ":memory:":
        uri = prefix + str(Path(uri[len(prefix):]).absolute())
    return uri


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
        Kept in the MLmodel file, e.g. ``{"target": "fare_amount"}``.
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
        :class:`RegistryError`.
        """
        complete, stale = self._runs_with(run.key, model_name)
        if complete:
            return _registered(complete[0], model_name)
        for leftover in stale:
            self._discard(leftover.info.run_id, model_name, delete_model=False)
        trusted = skops_trusted_types(run.model, run.X.head(5))  # before anything is written
        started = time.perf_counter()
        run_id: str | None = None
        new_model = False
        try:
            import mlflow

            experiment_id = self._experiment(model_name)
            tags = {**run.tags, **run.key, MODEL_NAME_TAG: model_name}
            with _tracking(self.uri, _QUIET_ENV), mlflow.start_run(experiment_id=experiment_id, run_name=run.name, tags=tags) as active:
                run_id = active.info.run_id
                self._log_batch(run_id, flatten_params(run.params), run.metrics)
                for name, text in run.artifacts.items():
                    self.client.log_text(run_id, text, name)
                log_started = time.perf_counter()
                info = _log_sklearn_model(run, trusted)
                log_model_seconds = time.perf_counter() - log_started
                new_model = self._ensure_registered_model(model_name)
                version = self.client.create_model_version(model_name, source=info.model_uri, run_id=run_id,
                                                           model_id=info.model_id, tags=dict(run.key)).version
                self.client.set_tag(run_id, MODEL_VERSION_TAG, str(version))
        except Exception as exc:  # noqa: BLE001 - whatever failed (store, model, registry), undo and report in one line
            if run_id is not None:
                self._discard(run_id, model_name, delete_model=new_model)
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
        conditions = [*_tag_conditions({**among, MODEL_NAME_TAG: model_name}), f"tags.`{MODEL_VERSION_TAG}` != ''",
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

    def promoted_runs(self, model_name: str | None = None, where: Mapping[str, str] | None = None) -> pd.DataFrame:
        """Runs with a registered model, one row each, columns as ``mlflow.search_runs`` names them.

        ``run_id, model_name, model_version, aliases, start_time, status``, then
        ``metrics.<name>``, ``tags.<name>`` (MLflow's own ``mlflow.*`` tags left out) and
        ``params.<name>``, sorted by model name and version.
        """
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        conditions = [f"tags.`{MODEL_VERSION_TAG}` != ''", *_tag_conditions(dict(where or {}))]
        if model_name:
            conditions += _tag_conditions({MODEL_NAME_TAG: model_name})
        runs, token = [], None
        while experiments:
            page = self.client.search_runs(experiments, " and ".join(conditions), max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                break
        aliases = self._aliases({run.data.tags[MODEL_NAME_TAG] for run in runs})
        rows = [_run_row(run, aliases) for run in runs]
        fixed = ["run_id", "model_name", "model_version", "aliases", "start_time", "status"]
        table = pd.DataFrame(rows, columns=None if rows else fixed)
        if rows:
            rest = sorted(set(table.columns) - set(fixed), key=lambda c: (("metrics.", "tags.", "params.").index(c.split(".")[0] + "."), c))
            table = table[fixed + rest]
            table = table.sort_values(["model_name", "model_version"], key=lambda s: s.map(_version_key)).reset_index(drop=True)
        return table

    def _runs_with(self, key: Mapping[str, str], model_name: str) -> tuple[list[Any], list[Any]]:
        """(complete, stale) runs logged for ``key``: stale ones were left by a crash mid-promotion."""
        experiment = self.client.get_experiment_by_name(model_name)
        if experiment is None:
            return [], []
        runs = self.client.search_runs([experiment.experiment_id], " and ".join(_tag_conditions({**key, MODEL_NAME_TAG: model_name})))
        complete = [r for r in runs if r.info.status == "FINISHED" and MODEL_VERSION_TAG in r.data.tags]
        return complete, [r for r in runs if r not in complete]

    def _experiment(self, model_name: str) -> str:
        """The experiment named after the model; with SQLite, its artifacts go next to the database."""
        experiment = self.client.get_experiment_by_name(model_name)
        if experiment is not None and experiment.lifecycle_stage == "deleted":
            raise RegistryError(f"experiment {model_name!r} is deleted in {self.uri} (restore it with "
                                f"'mlflow experiments restore', or set another registry.model_name)")
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(model_name, artifact_location=_artifact_location(self.uri))

    def _log_batch(self, run_id: str, params: Mapping[str, str], metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        entities = [Param(name, value) for name, value in params.items()]
        scores = [Metric(name, float(value), now, 0) for name, value in metrics.items() if not math.isnan(float(value))]
        for start in range(0, max(len(entities), 1), _PARAMS_PER_BATCH):
            chunk = entities[start:start + _PARAMS_PER_BATCH]
            self.client.log_batch(run_id, params=chunk, metrics=scores if start == 0 else [])

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

    def _discard(self, run_id: str, model_name: str, delete_model: bool) -> None:
        """Delete a run and what hangs on it: model versions, logged models (best effort)."""
        for action in (
            lambda: [self.client.delete_model_version(v.name, v.version) for v in self.client.search_model_versions(f"run_id = '{run_id}'")],
            lambda: [self.client.delete_logged_model(m.model_id) for m in (self.client.get_run(run_id).outputs.model_outputs or [])],
            lambda: self.client.delete_run(run_id),
            lambda: delete_model and self.client.delete_registered_model(model_name),
        ):
            try:
                action()
            except Exception:  # noqa: BLE001, S112 - cleanup goes on; the original error is what the user sees
                continue

    def _aliases(self, model_names: set[str]) -> dict[tuple[str, str], list[str]]:
        """(model name, version) to its aliases."""
        found: dict[tuple[str, str], list[str]] = {}
        for name in model_names:
            try:
                aliases = self.client.get_registered_model(name).aliases
            except Exception:  # noqa: BLE001, S112 - a model deleted since: no aliases
                continue
            for alias, version in aliases.items():
                found.setdefault((name, str(version)), []).append(alias)
        return found


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
    database = _sqlite_path(uri)
    if not create and database is not None and not database.exists():
        raise RegistryError(f"no MLflow store at {uri}: {database} does not exist (promote a model first, "
                            "or give --tracking-uri / MLFLOW_TRACKING_URI)")
    try:
        with _environment(_PROBE_ENV, override=True):
            store = Store(uri)
            store.client.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - requests, SQLAlchemy and MLflow errors alike mean unreachable
        raise RegistryError(f"cannot reach the MLflow tracking store {uri}: {one_line(exc)} "
                            "(start the server, or fix MLFLOW_TRACKING_URI / registry.tracking_uri)") from None
    return store


def promoted_runs(tracking_uri: str | None = None, model_name: str | None = None, where: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every run with a registered model in the store; see :meth:`Store.promoted_runs`."""
    return open_store(tracking_uri, create=False).promoted_runs(model_name, where)


def load_model(model_uri: str, tracking_uri: str | None = None) -> LoadedModel:
    """Load ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or ``runs:/<run id>/model``.

    Raises
    ------
    RegistryError
        When the store is unreachable or the model (or its alias) does not exist.
    """
    store = open_store(tracking_uri, create=False)
    try:
        import mlflow

        with _tracking(store.uri, _QUIET_ENV):
            pyfunc = mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:  # noqa: BLE001 - unknown model, alias, artifact or loader error, in one line
        raise RegistryError(f"cannot load model {model_uri} from {store.uri}: {one_line(exc)}") from None
    schema = pyfunc.metadata.get_input_schema()
    inputs = tuple((spec.name, spec.type.name, spec.required) for spec in schema.inputs) if schema else ()
    return LoadedModel(model_uri, pyfunc, inputs, dict(pyfunc.metadata.metadata or {}))


def _log_sklearn_model(run: ModelRun, trusted: list[str]) -> Any:
    import mlflow
    from mlflow.models import infer_signature

    example = run.X.head(5)
    # MLflow reads every value (6.5 s for a million rows); the head and the rows with missing
    # values give the same schema, missing values (optional columns) included.
    sample = pd.concat([run.X.head(1000), run.X[run.X.isna().any(axis=1)].head(1000)])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ii]nteger column", category=UserWarning)
        warnings.filterwarnings("ignore", module=r"mlflow\.")  # MLflow's own deprecations (pandas 4, ...), not the user's
        signature = infer_signature(sample, run.model.predict(example))
        return mlflow.sklearn.log_model(
            run.model,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(run.model),
            serialization_format="skops",
            skops_trusted_types=trusted,
            metadata=dict(run.metadata),
        )


def _tag_conditions(tags: Mapping[str, str]) -> list[str]:
    return [f"tags.`{name}` = '{value}'" for name, value in tags.items()]


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, None for other stores."""
    path = uri[len("sqlite:///"):].partition("?")[0] if uri.startswith("sqlite:///") else ""
    return Path(path) if path and path != ":memory:" else None


def _artifact_location(uri: str) -> str | None:
    """``<database dir>/mlruns`` for SQLite (MLflow's default next to the default database); the server's otherwise."""
    database = _sqlite_path(uri)
    return None if database is None else (database.parent / "mlruns").absolute().as_uri()


def _run_row(run: Any, aliases: Mapping[tuple[str, str], list[str]]) -> dict[str, Any]:
    tags = run.data.tags
    name, version = tags[MODEL_NAME_TAG], tags[MODEL_VERSION_TAG]
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "model_name": name,
        "model_version": version,
        "aliases": ",".join(sorted(aliases.get((name, version), []))),
        "start_time": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC"),
        "status": run.info.status,
    }
    row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
    row.update({f"tags.{k}": v for k, v in tags.items() if not k.startswith("mlflow.") and k not in (MODEL_NAME_TAG, MODEL_VERSION_TAG)})
    row.update({f"params.{k}": v for k, v in run.data.params.items()})
    return row


def _registered(run: Any, model_name: str) -> RegisteredRun:
    tags = run.data.tags
    return RegisteredRun(run.info.run_id, model_name, tags[MODEL_VERSION_TAG], False, dict(run.data.metrics), dict(tags))


def _version_key(value: Any) -> Any:
    return int(value) if isinstance(value, str) and value.isdigit() else value


@contextmanager
def _environment(values: Mapping[str, str], override: bool = False) -> Iterator[None]:
    """Set environment variables for a block; those the user set are kept unless ``override``."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update({name: value for name, value in values.items() if override or saved[name] is None})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _tracking(uri: str, env: Mapping[str, str]) -> Iterator[None]:
    """Point MLflow's fluent API (``start_run``, ``log_model``, ``pyfunc.load_model``) at ``uri`` for a block.

    The fluent API reads a module-level URI; the caller's (and ``$MLFLOW_TRACKING_URI``,
    which ``set_tracking_uri`` overwrites) are restored afterwards.
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_uri = tracking_utils._tracking_uri
    saved_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        with _environment(env):
            yield
    finally:
        mlflow.set_tracking_uri(saved_uri)
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


__all__ = [
    "DEFAULT_TRACKING_URI",
    "LoadedModel",
    "ModelRun",
    "RegisteredRun",
    "Store",
    "load_model",
    "open_store",
    "promoted_runs",
    "resolve_tracking_uri",
]
