"""Record types: the fit record and its Arrow schema, the status enum, and ``search.json``."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from gridsearch.log.records import FitItem, FitRecord, RecordStamp, SearchMeta, Status, log_schema, to_batch
from gridsearch.log.runlog import RunLog, read_log

SCORING = ("r2", "neg_mean_absolute_error")
STAMP = RecordStamp("search", "fingerprint", "abc123", False, "1.2.3", SCORING)
ITEM = FitItem("cand", {"model__alpha": 1.0}, '{"model__alpha": 1.0}')
KNOWN_COLUMNS = ["search_id", "candidate_id", "params", "fold", "status", "test_r2", "test_neg_mean_absolute_error", "fit_time",
                 "score_time", "prep_time", "worker", "error", "traceback", "warnings", "shared_fit", "started", "finished",
                 "git_sha", "git_dirty", "package_version", "data_fingerprint"]


def _records() -> list[FitRecord]:
    ok = FitRecord.of(STAMP, ITEM, 0, Status.OK, {"r2": 0.75, "neg_mean_absolute_error": -1.5}, fit_time=0.25, score_time=0.01,
                      prep_time=0.125, worker="tcp://127.0.0.1:1234", warnings="UserWarning: a\nRuntimeWarning: b",
                      started=1_700_000_000.123, finished=1_700_000_001.5)
    shared = FitRecord.of(STAMP, FitItem("small", {}, "{}", 3), 1, Status.OK, {"r2": 0.5, "neg_mean_absolute_error": -2.0},
                          fit_time=0.0, score_time=0.02, prep_time=0.125, worker="local", shared_fit="cand",
                          started=1_700_000_002.0, finished=1_700_000_002.25)
    error = FitRecord.of(STAMP, ITEM, 2, Status.ERROR, {}, prep_time=0.125, worker="local", error="ValueError: bad",
                         traceback="Traceback (most recent call last):\n...\nValueError: bad\n", started=1_700_000_003.0,
                         finished=1_700_000_003.001)
    lost = FitRecord.of(RecordStamp("search", "fingerprint", None, None, "1.2.3", SCORING), ITEM, 1, Status.LOST, {},
                        error="KilledWorker: gone")
    return [ok, shared, error, lost]


def _same(read: Any, written: Any) -> bool:
    """A value read back from the log equals the one written: None as null, NaN as NaN."""
    if written is None:
        return read is None or (isinstance(read, float) and math.isnan(read)) or read is pd.NaT
    if isinstance(written, float) and math.isnan(written):
        return isinstance(read, float) and math.isnan(read)
    return read == written


def test_status_values_are_the_log_strings() -> None:
    """The log stores statuses as these strings; readers compare them with the enum."""
    assert [status.value for status in Status] == ["ok", "error", "lost"]
    assert Status("lost") is Status.LOST and Status.ERROR == "error"


def test_log_schema_starts_with_the_identity_then_one_column_per_scorer() -> None:
    """The scorers' columns follow ``status`` in the scoring order; the other fields follow in order."""
    names = log_schema(list(SCORING)).names
    assert names[:8] == KNOWN_COLUMNS[:8]
    assert [name for name in names if name in KNOWN_COLUMNS] == KNOWN_COLUMNS
    assert log_schema(["r2"]).names[5:7] == ["test_r2", "fit_time"]


def test_log_schema_types() -> None:
    """Folds are int32, times UTC millisecond timestamps, scores float64."""
    schema = log_schema(list(SCORING))
    assert schema.field("fold").type == pa.int32()
    assert schema.field("started").type == pa.timestamp("ms", tz="UTC") == schema.field("finished").type
    assert schema.field("test_r2").type == pa.float64() == schema.field("test_neg_mean_absolute_error").type
    assert schema.field("status").type == pa.string() and schema.field("git_dirty").type == pa.bool_()


def test_fit_record_of_scores_failures_with_error_score() -> None:
    """Non-OK records score ``error_score`` for every scorer, whatever scores they were given; OK ones keep theirs."""
    scores = {"r2": 0.5, "neg_mean_absolute_error": -1.0}
    strict = RecordStamp("s", "f", None, None, "0", SCORING, error_score=-1.0)
    assert FitRecord.of(strict, ITEM, 0, Status.OK, scores).scores == scores
    assert FitRecord.of(strict, ITEM, 0, Status.ERROR, scores).scores == {"r2": -1.0, "neg_mean_absolute_error": -1.0}
    assert FitRecord.of(strict, ITEM, 0, Status.LOST, {}).scores == {"r2": -1.0, "neg_mean_absolute_error": -1.0}
    assert all(math.isnan(value) for value in FitRecord.of(STAMP, ITEM, 0, Status.ERROR, scores).scores.values())


def test_fit_record_of_takes_identity_from_stamp_and_item() -> None:
    """Search, code and data come from the stamp; candidate and params from the item."""
    record = FitRecord.of(STAMP, ITEM, 2, Status.OK, {"r2": 1.0})
    assert (record.search_id, record.candidate_id, record.params, record.fold) == ("search", "cand", '{"model__alpha": 1.0}', 2)
    assert (record.git_sha, record.git_dirty, record.package_version, record.data_fingerprint) == ("abc123", False, "1.2.3", "fingerprint")
    assert math.isnan(record.fit_time) and record.worker is None and record.started is None


def test_to_batch_fills_missing_scores_with_nan() -> None:
    """A scorer a record lacks is NaN, not null, so it ranks last as in scikit-learn."""
    record = FitRecord.of(STAMP, ITEM, 0, Status.OK, {"r2": 0.5})
    batch = to_batch([record], log_schema(list(SCORING)))
    assert batch.column("test_r2").to_pylist() == [0.5]
    assert math.isnan(batch.column("test_neg_mean_absolute_error")[0].as_py())
    assert batch.column("test_neg_mean_absolute_error").null_count == 0


def test_records_round_trip_through_the_run_log(tmp_path: Path) -> None:
    """Every field written is read back: scores per scorer (NaN kept), times as UTC timestamps, nulls as nulls."""
    records = _records()
    with RunLog(tmp_path / "search", SearchMeta("search", SCORING, 3)) as log:
        log.append(records[:2])
        log.append(records[2:])
    frame = read_log(tmp_path / "search")
    assert len(frame) == len(records)
    assert str(frame["started"].dtype) == "datetime64[ms, UTC]"
    for (_, row), record in zip(frame.iterrows(), records):
        for spec in fields(FitRecord):
            if spec.name == "scores":
                for scorer in SCORING:
                    assert _same(row[f"test_{scorer}"], record.scores[scorer]), scorer
            elif spec.name == "train_scores":  # not asked for: no train_ columns
                assert not record.train_scores and not any(name.startswith("train_") for name in frame.columns)
            elif spec.name in ("started", "finished"):
                written = getattr(record, spec.name)
                expected = None if written is None else pd.Timestamp(round(written * 1000), unit="ms", tz="UTC")
                assert _same(row[spec.name], expected), spec.name
            else:
                assert _same(row[spec.name], getattr(record, spec.name)), spec.name
    assert list(frame["status"]) == ["ok", "ok", "error", "lost"]
    assert math.isnan(frame.loc[2, "test_r2"]) and frame.loc[0, "test_r2"] == 0.75


def _meta() -> SearchMeta:
    return SearchMeta(search_id="abc", scoring=SCORING, folds=5, config={"cv": {"folds": 5}, "scoring": list(SCORING)},
                      config_source="conf/search.yaml", config_path="/abs/conf/search.yaml", scope={"pipeline": "p", "cv": [5, True, 0]},
                      data_fingerprint="fingerprint", code_version={"git_sha": "abc123", "git_dirty": False},
                      created="2024-01-01T00:00:00+00:00")


def test_search_meta_write_then_read_is_the_same(tmp_path: Path) -> None:
    """``search.json`` keeps every field; scoring reads back as a tuple."""
    meta = _meta()
    meta.write(tmp_path)
    assert SearchMeta.read(tmp_path) == meta
    assert json.loads((tmp_path / "search.json").read_text())["schema_version"] == meta.schema_version >= 1
    assert [path.name for path in tmp_path.iterdir()] == ["search.json"]  # no temporary file left behind


def test_search_meta_write_keeps_an_existing_file(tmp_path: Path) -> None:
    """The first run's ``search.json`` stays: a resumed run never overwrites it."""
    _meta().write(tmp_path)
    SearchMeta("other", ("r2",), 2).write(tmp_path)
    assert SearchMeta.read(tmp_path) == _meta()


def _write_parts(directory: Path, folds: int) -> None:
    """A part with records on ``folds`` folds, written as an older run did (no ``search.json`` from it)."""
    directory.mkdir(parents=True, exist_ok=True)
    schema = log_schema(list(SCORING))
    with pa.OSFile(str(directory / "part-20240101T000000.000000000-1.arrows"), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(to_batch([FitRecord.of(STAMP, ITEM, fold, Status.OK, {"r2": 0.5}) for fold in range(folds)], schema))


def test_older_search_json_gets_folds_and_scoring_from_the_parts(tmp_path: Path) -> None:
    """A file without schema_version, folds or scoring reads as version 0, the rest taken from the records."""
    directory = tmp_path / "old"
    _write_parts(directory, folds=4)
    (directory / "search.json").write_text(json.dumps({"search_id": "old-id", "config": {"cv": {"folds": 4}}, "unknown_key": 1}))
    meta = SearchMeta.read(directory)
    assert (meta.search_id, meta.scoring, meta.folds, meta.schema_version) == ("old-id", SCORING, 4, 0)
    assert meta.config == {"cv": {"folds": 4}} and meta.scope is None


def test_older_search_json_keeps_what_it_has(tmp_path: Path) -> None:
    """Folds or scoring present in the file win over the records'."""
    directory = tmp_path / "old"
    _write_parts(directory, folds=2)
    (directory / "search.json").write_text(json.dumps({"search_id": "old-id", "scoring": ["r2"]}))
    meta = SearchMeta.read(directory)
    assert (meta.scoring, meta.folds) == (("r2",), 2)


def test_missing_search_json_reads_from_the_parts_and_the_directory_name(tmp_path: Path) -> None:
    """Parts alone: the search id is the directory's name, scoring and folds come from the records."""
    directory = tmp_path / "0123abcd"
    _write_parts(directory, folds=3)
    meta = SearchMeta.read(directory)
    assert (meta.search_id, meta.scoring, meta.folds, meta.schema_version, meta.config) == ("0123abcd", SCORING, 3, 0, None)


def test_search_meta_without_config_cannot_rebuild_the_search(tmp_path: Path) -> None:
    """A log that keeps no config says so, naming the directory."""
    from gridsearch.errors import GridsearchError

    with pytest.raises(GridsearchError, match="holds no search config in search.json"):
        SearchMeta("s", ("r2",), 2).search_config(tmp_path)
