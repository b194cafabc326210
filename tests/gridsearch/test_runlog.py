"""The run log: appended as records arrive, readable while written, robust to a torn tail."""

from __future__ import annotations

import pytest

from gridsearch.errors import GridsearchError
from gridsearch.runlog import RunLog, ensure_writable, read_log


def _record(candidate: str, fold: int) -> dict:
    return {"search_id": "s", "candidate_id": candidate, "params": "{}", "fold": fold, "status": "ok", "test_r2": 0.5,
            "fit_time": 0.1, "score_time": 0.01, "prep_time": 0.0, "worker": "w", "error": None, "traceback": None, "warnings": None, "shared_fit": None,
            "started": None, "finished": None, "git_sha": None, "git_dirty": None, "package_version": "0", "data_fingerprint": "f"}


def test_nothing_is_written_before_the_first_record(tmp_path):
    with RunLog(tmp_path / "s", ["r2"], {"search_id": "s"}):
        pass
    assert not (tmp_path / "s").exists()


def test_records_are_readable_while_the_log_is_open(tmp_path):
    log = RunLog(tmp_path / "s", ["r2"], {"search_id": "s"})
    log.append([_record("a", 0), _record("a", 1)])
    assert list(read_log(tmp_path / "s")["fold"]) == [0, 1]
    log.append([_record("b", 0)])
    assert len(read_log(tmp_path / "s")) == 3
    log.close()


def test_each_run_appends_a_new_part(tmp_path):
    for candidate in "ab":
        with RunLog(tmp_path / "s", ["r2"], {"search_id": "s"}) as log:
            log.append([_record(candidate, 0)])
    assert len(list((tmp_path / "s").glob("part-*.arrows"))) == 2
    assert list(read_log(tmp_path / "s")["candidate_id"]) == ["a", "b"]


def test_a_torn_last_record_is_skipped_with_a_warning(tmp_path):
    with RunLog(tmp_path / "s", ["r2"], {"search_id": "s"}) as log:
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
