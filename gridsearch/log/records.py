"""The shapes of what a search records: a fit's status, a fit record, and the search's metadata.

:class:`FitRecord` is the only shape of a (candidate, fold) result: workers build it where
the fit ran, the executor builds it for a task that died, the run log writes it, and the
log's Arrow schema is derived from its fields. :class:`SearchMeta` alone reads and writes a
log's ``search.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gridsearch.errors import GridsearchError
from gridsearch.search.config import SearchConfig, from_mapping

META_FILE = "search.json"
PART_GLOB = "part-*.arrows"
SCHEMA_VERSION = 1  # of search.json and the records; files without one are version 0
_ARROW = "arrow"
_NAN = float("nan")


class Status(StrEnum):
    """How a (candidate, fold) fit ended."""

    OK = "ok"  # scored
    ERROR = "error"  # the candidate's own failure: recorded, never retried
    LOST = "lost"  # its task died (e.g. its worker, three times): redone on resume


def _column(arrow_type: pa.DataType, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    return field(default=default, default_factory=default_factory, metadata={_ARROW: arrow_type})


@dataclass(frozen=True)
class RecordStamp:
    """What every record of one run of a search shares: search, data, code, and how failures score."""

    search_id: str
    data_fingerprint: str
    git_sha: str | None
    git_dirty: bool | None
    package_version: str
    scoring: tuple[str, ...]
    error_score: float = _NAN

    def failed_scores(self) -> dict[str, float]:
        """Scores of a failed fit: ``error_score`` for every scorer, as in scikit-learn."""
        return dict.fromkeys(self.scoring, self.error_score)


@dataclass(frozen=True)
class FitItem:
    """One candidate's fit on a fold, as the plan hands it to a worker.

    ``params`` address the final step as in the whole pipeline; ``params_json`` is the
    candidate's full params, as the log keeps them; ``n_estimators`` is set for members of
    a family sharing one fit along ``n_estimators``.
    """

    candidate_id: str
    params: Mapping[str, Any]
    params_json: str
    n_estimators: int | None = None


@dataclass(frozen=True)
class FitRecord:
    """One (candidate, fold) fit: a row of the run log.

    ``scores`` become the columns ``test_<scorer>`` (``train_scores``, when a search scores
    its train rows too, ``train_<scorer>``); ``started`` and ``finished`` are epoch seconds
    (timestamps in the log). A fit that shared another's (``shared_fit``) has
    ``fit_time`` 0.
    """

    search_id: str = _column(pa.string())
    candidate_id: str = _column(pa.string())
    params: str = _column(pa.string())
    fold: int = _column(pa.int32())
    status: Status = _column(pa.string())  # noqa: RUF009 - field() with Arrow metadata, not a shared default
    scores: Mapping[str, float] = _column(pa.float64())
    fit_time: float = _column(pa.float64(), _NAN)
    score_time: float = _column(pa.float64(), _NAN)
    prep_time: float = _column(pa.float64(), _NAN)
    worker: str | None = _column(pa.string(), None)
    error: str | None = _column(pa.string(), None)
    traceback: str | None = _column(pa.string(), None)
    warnings: str | None = _column(pa.string(), None)
    shared_fit: str | None = _column(pa.string(), None)
    started: float | None = _column(pa.timestamp("ms", tz="UTC"), None)
    finished: float | None = _column(pa.timestamp("ms", tz="UTC"), None)
    git_sha: str | None = _column(pa.string(), None)
    git_dirty: bool | None = _column(pa.bool_(), None)
    package_version: str = _column(pa.string(), "")
    data_fingerprint: str = _column(pa.string(), "")
    model_size: float = _column(pa.float64(), _NAN)  # bytes of the fitted final estimator's arrays (gridsearch.execute.sizes)
    train_scores: Mapping[str, float] = _column(pa.float64(), default_factory=dict)  # columns train_<scorer>, when asked
    round: int | None = _column(pa.int32(), None)  # the successive-halving round (iter), when the search has rounds
    fit_rows: int | None = _column(pa.int64(), None)  # rows the fit trained on, when a search varies them (halving, curves)

    @classmethod
    def of(cls, stamp: RecordStamp, item: FitItem, fold: int, status: Status, scores: Mapping[str, float], **outcome: Any) -> FitRecord:
        """A record of ``item`` on ``fold``; a failure scores ``stamp.error_score``."""
        return cls(
            search_id=stamp.search_id, candidate_id=item.candidate_id, params=item.params_json, fold=fold, status=status,
            scores=dict(scores) if status is Status.OK else stamp.failed_scores(), git_sha=stamp.git_sha,
            git_dirty=stamp.git_dirty, package_version=stamp.package_version, data_fingerprint=stamp.data_fingerprint, **outcome,
        )


def log_schema(scoring: Sequence[str], train: bool = False) -> pa.Schema:
    """The run log's columns, derived from :class:`FitRecord`: ``scores`` as ``test_<scorer>``
    each, and with ``train`` the ``train_scores`` as ``train_<scorer>``."""
    columns = []
    for spec in fields(FitRecord):
        arrow_type = spec.metadata[_ARROW]
        if spec.name in _SCORES:
            columns += [(f"{_SCORES[spec.name]}{name}", arrow_type) for name in scoring] if train or spec.name == "scores" else []
        else:
            columns.append((spec.name, arrow_type))
    return pa.schema(columns)


def to_batch(records: Sequence[FitRecord], schema: pa.Schema) -> pa.RecordBatch:
    """``records`` as one Arrow batch of ``schema`` (a column at a time)."""
    columns = []
    for column in schema:
        scores = next((name for name, prefix in _SCORES.items() if column.name.startswith(prefix)), None)
        if scores is not None and column.name not in _PLAIN_FIELDS:
            scorer = column.name.removeprefix(_SCORES[scores])
            values: list[Any] = [getattr(record, scores).get(scorer, _NAN) for record in records]
        elif pa.types.is_timestamp(column.type):
            values = [None if (s := getattr(record, column.name)) is None else int(s * 1000) for record in records]
        else:
            values = [getattr(record, column.name) for record in records]
        columns.append(pa.array(values, type=column.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


_SCORES = {"scores": "test_", "train_scores": "train_"}  # score fields: the prefix of their columns
_PLAIN_FIELDS = frozenset(spec.name for spec in fields(FitRecord))


@dataclass(frozen=True)
class SearchMeta:
    """What a search is, kept as its log's ``search.json``.

    ``config`` is the validated config as a mapping (what ``--resume`` and ``promote``
    rebuild the search from), ``scope`` what its id hashes, ``code_version`` the code that
    started it, ``train_scored`` whether its records score the train rows too. Older or partial files read with the missing fields None (``folds`` and
    ``scoring`` then come from the records).
    """

    search_id: str
    scoring: tuple[str, ...]
    folds: int | None
    config: Mapping[str, Any] | None = None
    config_source: str | None = None
    config_path: str | None = None
    scope: Mapping[str, Any] | None = None
    data_fingerprint: str | None = None
    code_version: Mapping[str, Any] | None = None
    created: str | None = None
    schema_version: int = SCHEMA_VERSION
    train_scored: bool = False  # the records hold train_<scorer> columns too

    def write(self, directory: Path) -> None:
        """Write ``search.json`` into ``directory`` atomically, unless an earlier run did."""
        path = directory / META_FILE
        if path.exists():
            return
        temporary = path.with_suffix(f".tmp-{os.getpid()}")
        content = {spec.name: getattr(self, spec.name) for spec in fields(self)}
        temporary.write_text(json.dumps({**content, "scoring": list(self.scoring)}, indent=2, default=str))
        os.replace(temporary, path)

    def search_config(self, directory: Path, overrides: Mapping[str, Any] | None = None) -> SearchConfig:
        """The validated config the search at ``directory`` ran with (``overrides`` on top).

        Raises
        ------
        GridsearchError
            When the log keeps no config (not made by a search).
        """
        if self.config is None:
            raise GridsearchError(f"{directory} holds no search config in {META_FILE} (a search class fitted from Python keeps "
                                  "none: its pipeline and rows are the caller's); give a log directory made by 'gridsearch run' "
                                  "or gridsearch.run (e.g. runs/<search id>)")
        path = Path(self.config_path) if self.config_path else None
        return from_mapping(self.config, str(directory / META_FILE), overrides, path)

    @classmethod
    def read(cls, directory: Path) -> SearchMeta:
        """The metadata of the log at ``directory``; what ``search.json`` lacks is None or read from the parts."""
        path = directory / META_FILE
        stored = json.loads(path.read_text()) if path.is_file() else {}
        known = {spec.name for spec in fields(cls)}
        values = {name: value for name, value in stored.items() if name in known}
        values.setdefault("schema_version", 0)
        values.setdefault("search_id", directory.name)
        if not values.get("scoring") or values.get("folds") is None:
            scoring, folds = _read_from_parts(directory)
            values["scoring"] = values.get("scoring") or scoring
            values["folds"] = values.get("folds") or folds
        return cls(**{**values, "scoring": tuple(values["scoring"])})


def _read_from_parts(directory: Path) -> tuple[tuple[str, ...], int | None]:
    """Scorers (the ``test_`` columns) and fold count (the highest fold + 1) of the log's parts."""
    scoring: list[str] = []
    folds = None
    for part in sorted(directory.glob(PART_GLOB)):
        try:
            with pa.OSFile(str(part)) as source:
                reader = pa.ipc.open_stream(source)
                scoring = scoring or [name.removeprefix("test_") for name in reader.schema.names
                                      if name.startswith("test_") and name not in _PLAIN_FIELDS]
                for batch in reader:
                    top = pc.max(batch.column("fold")).as_py()
                    folds = max(folds or 0, top + 1) if top is not None else folds
        except (pa.ArrowInvalid, OSError):
            continue  # a torn part: what it holds is read by read_log, with its warning
    return tuple(scoring), folds

