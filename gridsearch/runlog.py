"""The run log: one append-only record per (candidate, fold), readable while it grows.

A search's log is a directory ``<log dir>/<search id>/`` holding ``search.json`` (what the
search is) and one Arrow IPC stream per run that wrote to it (``part-*.arrows``). Each
arriving batch of records is written and flushed at once, so a crashed driver loses
at most the batch being written; a torn last message is skipped with a warning.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import pandas as pd
import pyarrow as pa

from gridsearch.errors import GridsearchError

PART_GLOB = "part-*.arrows"
META_FILE = "search.json"
_FIXED_FIELDS = [
    ("search_id", pa.string()),
    ("candidate_id", pa.string()),
    ("params", pa.string()),
    ("fold", pa.int32()),
    ("status", pa.string()),
]
_TAIL_FIELDS = [
    ("fit_time", pa.float64()),
    ("score_time", pa.float64()),
    ("prep_time", pa.float64()),
    ("worker", pa.string()),
    ("error", pa.string()),
    ("traceback", pa.string()),
    ("warnings", pa.string()),
    ("shared_fit", pa.string()),
    ("started", pa.timestamp("ms", tz="UTC")),
    ("finished", pa.timestamp("ms", tz="UTC")),
    ("git_sha", pa.string()),
    ("git_dirty", pa.bool_()),
    ("package_version", pa.string()),
    ("data_fingerprint", pa.string()),
]


def log_schema(scoring: Sequence[str]) -> pa.Schema:
    """Columns of a search's records: ``test_<scorer>`` for each scorer."""
    scores = [(f"test_{name}", pa.float64()) for name in scoring]
    return pa.schema(_FIXED_FIELDS + scores + _TAIL_FIELDS)


def ensure_writable(directory: Path) -> None:
    """Fail before any work when records could not be written under ``directory``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as exc:
        raise GridsearchError(f"log directory {directory} is not writable ({exc.strerror or exc}); set log: to a writable directory") from None


class RunLog:
    """Appends one search's records to a new part of its log directory.

    Nothing is created on disk until the first :meth:`append`, so a search that fails
    before its first result leaves no log behind.
    """

    def __init__(self, directory: Path, scoring: Sequence[str], metadata: Mapping[str, Any]) -> None:
        self.directory = directory
        self.schema = log_schema(scoring)
        self._metadata = dict(metadata)
        self._sink: Any = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Write ``records`` (dicts keyed by the schema's columns) and flush them."""
        if not records:
            return
        if self._writer is None:
            self._open()
        self._writer.write_batch(pa.RecordBatch.from_pylist(list(records), schema=self.schema))
        self._sink.flush()

    def close(self) -> None:
        """End the part cleanly; safe to call twice."""
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = self.directory / META_FILE
        if not meta.exists():
            tmp = meta.with_suffix(f".tmp-{os.getpid()}")
            tmp.write_text(json.dumps(self._metadata, indent=2, default=str))
            os.replace(tmp, meta)
        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9))
        part = self.directory / f"part-{stamp}.{now % 10**9:09d}-{os.getpid()}.arrows"  # sorts by time
        self._sink = open(part, "xb")  # noqa: SIM115 - open until close()
        self._writer = pa.ipc.new_stream(self._sink, self.schema)


def read_log(path: str | os.PathLike[str]) -> pd.DataFrame:
    """All records of a search's log directory as a DataFrame, one row per record.

    Works while the search is still writing. A torn last message (a crash mid-write)
    is skipped with a warning.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise GridsearchError(f"no run log at {directory} (give a directory made by 'gridsearch run', under the config's log:)")
    tables = [table for part in sorted(directory.glob(PART_GLOB)) if (table := _read_part(part)) is not None]
    if not tables:
        return pd.DataFrame(columns=log_schema(read_metadata(directory).get("scoring", ())).names)
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def read_metadata(directory: Path) -> dict[str, Any]:
    """The ``search.json`` of a log directory (empty when not written yet)."""
    meta = directory / META_FILE
    return json.loads(meta.read_text()) if meta.exists() else {}


def _read_part(part: Path) -> pa.Table | None:
    batches = []
    try:
        with pa.OSFile(str(part)) as source:
            reader = pa.ipc.open_stream(source)
            schema = reader.schema
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
    except (pa.ArrowInvalid, OSError) as exc:
        if not batches:
            warnings.warn(f"run log part {part.name} has no complete record yet ({exc}); skipped", stacklevel=3)
            return None
        warnings.warn(f"run log part {part.name} ends in a partial record ({exc}); it was skipped", stacklevel=3)
    return pa.Table.from_batches(batches, schema=schema)
