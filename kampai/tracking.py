"""Where MLflow writes, and how each call is made: the tracking URI, the environment of a call, batched logging.

Shared by :mod:`kampai.registry` (promoted models) and :mod:`kampai.runs` (a search's parent
run and its children). MLflow is imported on first use.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PARENT_TAG = "mlflow.parentRunId"  # what makes a run a child in the UI and in search_runs
RUN_NAME_TAG = "mlflow.runName"
# An unreachable server must fail in seconds, not after MLflow's 7 retries with backoff (~4 min).
PROBE_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
_PER_BATCH = 100  # MLflow's limit on params (and tags) per log_batch


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


def log_batch(client: Any, run_id: str, params: Mapping[str, str] | None = None, metrics: Mapping[str, float] | None = None,
              tags: Mapping[str, str] | None = None, timestamp: int | None = None) -> None:
    """Params, metrics and tags of a run in as few ``log_batch`` calls as MLflow allows (100 params or tags each).

    NaN metrics are left out (a metric that could not be computed is absent, not NaN).
    """
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000) if timestamp is None else timestamp
    entities = [Param(name, value) for name, value in (params or {}).items()]
    labels = [RunTag(name, value) for name, value in (tags or {}).items()]
    scores = [Metric(name, float(value), now, 0) for name, value in (metrics or {}).items() if not math.isnan(float(value))]
    for start in range(0, max(len(entities), len(labels), 1), _PER_BATCH):
        client.log_batch(run_id, params=entities[start:start + _PER_BATCH], metrics=scores if start == 0 else [],
                         tags=labels[start:start + _PER_BATCH])


def tag_conditions(tags: Mapping[str, str]) -> list[str]:
    """``search_runs`` filter clauses matching every tag of ``tags``."""
    return [f"tags.`{name}` = '{value}'" for name, value in tags.items()]


def search_all(client: Any, experiment_ids: list[str], conditions: list[str]) -> list[Any]:
    """Every run matching ``conditions`` (joined by ``and``), through all pages."""
    runs, token = [], None
    while experiment_ids:
        page = client.search_runs(experiment_ids, " and ".join(conditions), max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, None for other stores."""
    path = uri[len("sqlite:///"):].partition("?")[0] if uri.startswith("sqlite:///") else ""
    return Path(path) if path and path != ":memory:" else None


def artifact_location(uri: str) -> str | None:
    """``<database dir>/mlruns`` for SQLite (MLflow's default next to the default database); the server's otherwise."""
    database = sqlite_path(uri)
    return None if database is None else (database.parent / "mlruns").absolute().as_uri()


@contextmanager
def environment(values: Mapping[str, str], override: bool = False) -> Iterator[None]:
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
def tracking(uri: str, env: Mapping[str, str] = QUIET_ENV) -> Iterator[None]:
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
        with environment(env):
            yield
    finally:
        mlflow.set_tracking_uri(saved_uri)
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env
