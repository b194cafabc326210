"""The run log: appended as records arrive, readable while written, robust to a torn tail."""

from __future__ import annotations

import pyarrow as pa
import pytest

from gridsearch.errors import GridsearchError
from gridsearch.log import runlog
from gridsearch.log.records import FitRecord, SearchMeta, Status
from gridsearch.log.runlog import COMPACT_MIN_MESSAGES, RunLog, ensure_writable, read_log


def _record(candidate: str, fold: int) -> FitRecord:
    return FitRecord(search_id="s", candidate_id=candidate, params="{}", fold=fold, status=Status.OK, scores={"r2": 0.5},
                     fit_time=0.1, score_time=0.01, prep_time=0.0, worker="w", package_version="0", data_fingerprint="f")


def test_nothing_is_written_before_the_first_record(tmp_path):
    with RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 2)):
        pass
    assert not (tmp_path / "s").exists()


def test_records_are_readable_while_the_log_is_open(tmp_path):
    log = RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 2))
    log.append([_record("a", 0), _record("a", 1)])
    assert list(read_log(tmp_path / "s")["fold"]) == [0, 1]
    log.append([_record("b", 0)])
    assert len(read_log(tmp_path / "s")) == 3
    log.close()


def test_each_run_appends_a_new_part(tmp_path):
    for candidate in "ab":
        with RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 2)) as log:
            log.append([_record(candidate, 0)])
    assert len(list((tmp_path / "s").glob("part-*.arrows"))) == 2
    assert list(read_log(tmp_path / "s")["candidate_id"]) == ["a", "b"]


def test_a_torn_last_record_is_skipped_with_a_warning(tmp_path):
    with RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 2)) as log:
        log.append([_record("a", 0)])
        log.append([_record("b", 0)])
    part = next((tmp_path / "s").glob("part-*.arrows"))
    part.write_bytes(part.read_bytes()[:-200])
    with pytest.warns(UserWarning, match="ends in a partial record"):
        assert list(read_log(tmp_path / "s")["candidate_id"]) == ["a"]


def test_missing_log_directory_is_a_clear_error(tmp_path):
    with pytest.raises(GridsearchError, match="no run log at"):
        read_log(tmp_path / "nothing")


def test_log_directory_under_a_file_is_reported(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(GridsearchError, match="is not writable"):
        ensure_writable(tmp_path / "file" / "runs")


def test_a_closed_part_is_compacted_into_few_messages_with_the_same_records(tmp_path):
    with RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 2)) as log:
        for i in range(COMPACT_MIN_MESSAGES + 1):
            log.append([_record(f"c{i}", 0), _record(f"c{i}", 1)])
        written = read_log(tmp_path / "s")
    part = next((tmp_path / "s").glob("part-*.arrows"))
    with pa.ipc.open_stream(pa.OSFile(str(part))) as reader:
        assert sum(1 for _ in reader) == 1
    assert read_log(tmp_path / "s").equals(written)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [part.name, "search.json"]  # no temporary file left


def test_a_part_with_few_messages_is_left_as_written(tmp_path):
    with RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 2)) as log:
        for i in range(3):
            log.append([_record(f"c{i}", 0)])
    part = next((tmp_path / "s").glob("part-*.arrows"))
    with pa.ipc.open_stream(pa.OSFile(str(part))) as reader:
        assert sum(1 for _ in reader) == 3


def test_a_torn_tail_warning_points_at_the_caller(tmp_path):
    with RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 2)) as log:
        log.append([_record("a", 0)])
        log.append([_record("b", 0)])
    part = next((tmp_path / "s").glob("part-*.arrows"))
    part.write_bytes(part.read_bytes()[:-200])
    with pytest.warns(UserWarning, match="ends in a partial record") as caught:
        read_log(tmp_path / "s")
    assert caught[0].filename == __file__


def test_a_long_run_rolls_over_to_new_compacted_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(runlog, "ROLL_MESSAGES", 4)
    monkeypatch.setattr(runlog, "COMPACT_MIN_MESSAGES", 2)
    with RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 2)) as log:
        for i in range(10):
            log.append([_record(f"c{i}", 0)])
    parts = sorted((tmp_path / "s").glob("part-*.arrows"))
    messages = []
    for part in parts:
        with pa.ipc.open_stream(pa.OSFile(str(part))) as reader:
            messages.append(sum(1 for _ in reader))
    assert messages == [1, 1, 1]  # 4 + 4 + 2 batches, each part compacted
    assert list(read_log(tmp_path / "s")["candidate_id"]) == [f"c{i}" for i in range(10)]


def test_a_failed_compaction_leaves_the_part_as_written(tmp_path, monkeypatch):
    def full_disk(part):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runlog, "_compact", full_disk)
    log = RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 2))
    for i in range(COMPACT_MIN_MESSAGES):
        log.append([_record(f"c{i}", 0)])
    with pytest.warns(UserWarning, match="was not compacted .*No space left on device.*; it stays as written"):
        log.close()
    assert len(read_log(tmp_path / "s")) == COMPACT_MIN_MESSAGES


@pytest.mark.parametrize("max_chunks", [1, 256])
def test_records_read_the_same_with_or_without_joining_chunks(tmp_path, monkeypatch, max_chunks):
    monkeypatch.setattr(runlog, "MAX_CHUNKS", max_chunks)
    with RunLog(tmp_path / "s", SearchMeta("s", ("r2",), 2)) as log:
        for i in range(3):
            log.append([_record(f"c{i}", 0), _record(f"c{i}", 1)])
        records = read_log(tmp_path / "s")
    assert list(records["candidate_id"]) == ["c0", "c0", "c1", "c1", "c2", "c2"]
    assert list(records["fold"]) == [0, 1] * 3 and (records["test_r2"] == 0.5).all()
