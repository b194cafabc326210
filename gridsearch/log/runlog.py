"""The run log: one append-only record per (candidate, fold), readable while it grows.

A search's log is a directory ``<log dir>/<search id>/`` holding ``search.json`` (what the
search is) and Arrow IPC streams (``part-*.arrows``), each written by one run. Each
arriving batch of records is written and flushed at once, so a crashed driver loses
at most the batch being written; a torn last message is skipped with a warning.

A part is closed after :data:`ROLL_MESSAGES` batches, and when its run ends, then
rewritten in large messages (atomically), so loading stays fast: decoding costs per
message, and a crash leaves at most one part of small ones.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import pandas as pd
import pyarrow as pa

from gridsearch.errors import GridsearchError
from gridsearch.log.records import PART_GLOB, FitRecord, SearchMeta, log_schema, to_batch

COMPACT_ROWS = 4_096  # rows per message of a closed part: what a torn part can lose at most
COMPACT_MIN_MESSAGES = 64  # closed parts with fewer messages are left as written
ROLL_MESSAGES = 1024  # a part this long is closed (compacted) and the next append starts a new one
MAX_CHUNKS = 256  # read_log joins a column's chunks into one beyond this many


def ensure_writable(directory: Path) -> None:
    """Fail before any work when records could not be written under ``directory``; leave nothing behind.

    A real write is tried (permissions alone do not tell, e.g. for root or a full disk), and
    the directories made for it are removed again: a search that fails later leaves no
    empty log directory.
    """
    missing = [parent for parent in (directory, *directory.parents) if not parent.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as exc:
        raise GridsearchError(f"log directory {directory} is not writable ({exc.strerror or exc}); set log: to a writable directory") from None
    finally:
        for made in missing:
            with contextlib.suppress(OSError):
                made.rmdir()


class RunLog:
    """Appends one search's records to new parts of its log directory; no other writer touches them.

    Nothing is created on disk until the first :meth:`append`, so a search that fails
    before its first result leaves no log behind.
    """

    def __init__(self, directory: Path, meta: SearchMeta) -> None:
        self.directory = directory
        self.schema = log_schema(meta.scoring, meta.train_scored)
        self._meta = meta
        self._sink: Any = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._part: Path | None = None
        self._messages = 0

    def append(self, records: Sequence[FitRecord]) -> None:
        """Write ``records`` and flush them."""
        if not records:
            return
        if self._writer is None:
            self._open()
        self._writer.write_batch(to_batch(records, self.schema))
        self._sink.flush()
        self._messages += 1
        if self._messages >= ROLL_MESSAGES:
            self.close()  # so a crash leaves at most ROLL_MESSAGES small messages to decode

    def close(self) -> None:
        """End the part cleanly, compacting its many small messages; safe to call twice."""
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None
            if self._messages >= COMPACT_MIN_MESSAGES:
                try:
                    _compact(self._part)
                except (pa.ArrowException, OSError) as exc:  # an optimisation: the records are safe as written
                    warnings.warn(f"run log part {self._part.name} was not compacted ({exc}); it stays as written", stacklevel=2)
            self._messages = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._meta.write(self.directory)
        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9))
        self._part = self.directory / f"part-{stamp}.{now % 10**9:09d}-{os.getpid()}.arrows"  # sorts by time
        self._sink = open(self._part, "xb")  # noqa: SIM115 - open until close()
        self._writer = pa.ipc.new_stream(self._sink, self.schema)


def read_log(path: str | os.PathLike[str]) -> pd.DataFrame:
    """All records of a search's log directory as a DataFrame, one row per record.

    Works while the search is still writing. A torn last message (a crash mid-write)
    is skipped with a warning.
    """
    directory = _log_directory(path)
    table = _read_parts(directory)
    if table is None:
        meta = SearchMeta.read(directory)
        return pd.DataFrame(columns=log_schema(meta.scoring, meta.train_scored).names)
    return table.to_pandas()


def read_table(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pa.Table:
    """The records of a search's log directory as an Arrow table, as :func:`read_log` reads them.

    Only ``columns`` (those the log has; default: all) are kept: the parts are memory-mapped,
    so the others are never copied or converted.
    """
    directory = _log_directory(path)
    table = _read_parts(directory)
    if table is None:
        meta = SearchMeta.read(directory)
        table = log_schema(meta.scoring, meta.train_scored).empty_table()
    return table if columns is None else table.select([name for name in columns if name in table.schema.names])


def _log_directory(path: str | os.PathLike[str]) -> Path:
    directory = Path(path)
    if not directory.is_dir():
        raise GridsearchError(f"no run log at {directory} (give a directory made by 'gridsearch run', under the config's log:)")
    return directory


def _read_parts(directory: Path) -> pa.Table | None:
    """Every part's records in one table, None when there is no complete record yet."""
    tables = []
    for part in sorted(directory.glob(PART_GLOB)):  # a loop, not a comprehension: warnings' stacklevel
        if (table := _read_part(part)) is not None:
            tables.append(table)
    if not tables:
        return None
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
    return _few_chunks(table)


def _few_chunks(table: pa.Table) -> pa.Table:
    """``table``, its columns joined into one chunk each if they have more than :data:`MAX_CHUNKS`.

    String columns stay Arrow-backed in pandas, chunks and all: thousands of small ones
    would slow every later filter and groupby. A few are fine, and not copying a large
    log saves time and memory.
    """
    return table.combine_chunks() if table.num_columns and table.column(0).num_chunks > MAX_CHUNKS else table


def _read_part(part: Path) -> pa.Table | None:
    """A part's records; the whole stream in one C++ call unless its tail is torn."""
    try:
        with pa.memory_map(str(part)) as source:  # the table's buffers keep the mapping, not a copy
            return _few_chunks(pa.ipc.open_stream(source).read_all())
    except (pa.ArrowInvalid, OSError):
        table = _read_complete_batches(part)
        return None if table is None else _few_chunks(table)


def _read_complete_batches(part: Path) -> pa.Table | None:
    """The messages of a part up to the first torn one, with a warning (slow path)."""
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
            warnings.warn(f"run log part {part.name} has no complete record yet ({exc}); skipped", stacklevel=5)
            return None
        warnings.warn(f"run log part {part.name} ends in a partial record ({exc}); it was skipped", stacklevel=5)
    return pa.Table.from_batches(batches, schema=schema)


def _compact(part: Path) -> None:
    """Rewrite a closed part in large batches, atomically: same records, fast to load.

    A search appends one small message per finished task; a million records in
    10-record messages take seconds to decode, in 4k-row ones a fraction of that, and a part
    torn later (a truncated copy, a disk fault) loses at most the one message it is torn in.
    Readers holding the old file keep reading it; a crash leaves the old file whole.
    """
    with pa.OSFile(str(part)) as source:
        table = pa.ipc.open_stream(source).read_all()
    tmp = part.with_name(f".{part.name}.compacting")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table.combine_chunks(), max_chunksize=COMPACT_ROWS)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, part)
    finally:
        tmp.unlink(missing_ok=True)
