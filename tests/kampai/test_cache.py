"""The memo's cost rule: what it stores, what it loads, what it computes instead; its sidecars and stored form."""

from __future__ import annotations

import json
import math
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from kampai.cache import ALWAYS, Costs, MemoPolicy, StageMemo, clear_cache, default_policy
from kampai.compact import Codes
from kampai.data import COORDINATE_COLUMNS, synthetic_taxifare
from kampai.transformers import Geohash, HaversineDistance, TimeFeatures

# Loads cost 5 ms whatever the size: a stage is costly when it computes for 10 ms or more.
COSTLY_ENOUGH = MemoPolicy(min_compute_seconds=0.01, read_bytes_per_second=math.inf)


@pytest.fixture(scope="module")
def trips() -> tuple[pd.DataFrame, pd.DataFrame]:
    """100 000 synthetic trips with string timestamps, split 2:1 as a fold's train and test rows."""
    frame = synthetic_taxifare(100_000, seed=3)
    return frame.iloc[:66_000], frame.iloc[66_000:]


def _entries(location: Path) -> list[Path]:
    return list(location.rglob("output.pkl"))


def _parse_times(memo: StageMemo, trips: tuple[pd.DataFrame, pd.DataFrame]):
    train, test = trips
    return memo.fit_transform("times", TimeFeatures(), train[["pickup_datetime"]], None, test[["pickup_datetime"]])


def test_a_cheap_stage_is_computed_and_not_stored(tmp_path, trips):
    train, test = (frame.iloc[:300][list(COORDINATE_COLUMNS)] for frame in trips)
    memo = StageMemo(tmp_path, MemoPolicy())
    calls = [memo.fit_transform("distance", HaversineDistance(), train, None, test) for _ in range(2)]
    assert [from_memo for _, from_memo in calls] == [False, False] and _entries(tmp_path) == []
    np.testing.assert_array_equal(calls[0][0].train, HaversineDistance().fit_transform(train))


def test_a_costly_stage_is_stored_and_loaded_with_its_costs(tmp_path, trips):
    memo = StageMemo(tmp_path, COSTLY_ENOUGH)
    computed, first = _parse_times(memo, trips)
    loaded, second = _parse_times(memo, trips)
    assert (first, second) == (False, True) and len(_entries(tmp_path)) == 1
    np.testing.assert_array_equal(loaded.train, computed.train)
    np.testing.assert_array_equal(loaded.test, computed.test)
    costs = Costs.read(tmp_path / "costs" / "times.json")
    assert costs is not None and costs.compute_seconds == computed.seconds and costs.load_seconds > 0
    assert clear_cache(tmp_path).entries == 1 and not (tmp_path / "costs").exists()


def test_a_hit_whose_load_was_slow_is_computed_and_removed(tmp_path, trips):
    memo = StageMemo(tmp_path, COSTLY_ENOUGH)
    computed, _ = _parse_times(memo, trips)
    Costs(compute_seconds=0.1, load_seconds=1.0).write(tmp_path / "costs" / "times.json")
    again, from_memo = _parse_times(memo, trips)
    assert not from_memo and _entries(tmp_path) == []  # joblib's validation removed it; not stored again
    np.testing.assert_array_equal(again.train, computed.train)
    assert not _parse_times(memo, trips)[1]


@pytest.mark.parametrize("sidecar", [b"{not json", b"null", b'{"compute_seconds": "fast"}', b"[1, 2]", b"\xff\xfe"])
def test_a_corrupt_sidecar_never_fails_a_stage(tmp_path, trips, sidecar):
    memo = StageMemo(tmp_path, COSTLY_ENOUGH)
    computed, _ = _parse_times(memo, trips)
    path = tmp_path / "costs" / "times.json"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(sidecar)
    loaded, from_memo = _parse_times(memo, trips)
    assert from_memo and json.loads(path.read_text())["compute_seconds"] == computed.seconds  # measured again
    np.testing.assert_array_equal(loaded.train, computed.train)


def test_a_sidecar_that_cannot_be_written_never_fails_a_stage(tmp_path, trips):
    memo = StageMemo(tmp_path, COSTLY_ENOUGH)
    _parse_times(memo, trips)
    (tmp_path / "costs" / "times.json").mkdir(parents=True)  # a directory where the file goes
    assert _parse_times(memo, trips)[1]
    assert [path.name for path in (tmp_path / "costs").iterdir()] == ["times.json"]  # no temporary left


def test_string_outputs_are_stored_as_codes_and_returned_exactly(tmp_path, trips):
    train, test = (frame[list(COORDINATE_COLUMNS)] for frame in trips)
    memo = StageMemo(tmp_path, ALWAYS)
    computed, _ = memo.fit_transform("cells", Geohash(precision=5), train, None, test)
    loaded, from_memo = memo.fit_transform("cells", Geohash(precision=5), train, None, test)
    expected = Geohash(precision=5).fit_transform(train)
    assert from_memo and computed.train.dtype == loaded.train.dtype == object
    np.testing.assert_array_equal(computed.train, expected)
    np.testing.assert_array_equal(loaded.train, expected)
    assert loaded.train.shape == expected.shape and loaded.test.shape == computed.test.shape
    [entry] = _entries(tmp_path)
    assert isinstance(joblib.load(entry).train, Codes)


def test_always_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("KAMPAI_MEMO", "always")
    assert default_policy() == ALWAYS
    monkeypatch.setenv("KAMPAI_MEMO", "")
    assert default_policy() == MemoPolicy()
