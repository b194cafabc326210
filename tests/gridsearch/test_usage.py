"""Where a run's worker time went: exact sums on hand-built records, and the end-of-run line of a real run."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import pytest
from dask.utils import key_split
from distributed import get_task_stream

import gridsearch
from gridsearch.log.records import FitRecord, SearchMeta, Status
from gridsearch.log.runlog import RunLog, read_log
from gridsearch.log.usage import StageTime, worker_usage

SCORING = ("neg_root_mean_squared_error",)
START = 1_767_225_600.0
LINE = re.compile(r"workers: (\d+) x ([\d.]+) s wall, (\d+)% busy \(fits (\d+)%, scoring (\d+)%, preprocessing (\d+)%, "
                  r"memo loads (\d+)%\), idle or overhead (\d+)%")


def record(candidate: str, fold: int, started: float | None, finished: float | None, fit: float, score: float,
           prep: float, **fields: object) -> FitRecord:
    values = {"search_id": "s", "candidate_id": candidate, "params": json.dumps({"model__alpha": 1.0}), "fold": fold,
              "status": Status.OK, "scores": {SCORING[0]: -1.0}, "fit_time": fit, "score_time": score, "prep_time": prep,
              "worker": "tcp://127.0.0.1:1", "started": started, "finished": finished}
    return FitRecord(**{**values, **fields})


def logged(directory: Path, records: list[FitRecord]):
    with RunLog(directory, SearchMeta(directory.name, SCORING, 2)) as log:
        log.append(records)
    return read_log(directory)


RECORDS = [
    record("old", 0, START - 100, START - 99, 50.0, 1.0, 9.0),  # an earlier run's (resumed): not this run's
    record("a", 0, START + 1, START + 2, 0.6, 0.1, 0.5),  # fold 0's prefix task took 0.5 s, raw stages included
    record("b", 0, START + 1, START + 2, 0.0, 0.1, 0.5, shared_fit="a"),  # scored on a's fit, same prefix task
    record("c", 1, START + 2, START + 4, 1.0, 0.2, 0.8),  # fold 1's prefix task: 0.8 s
    record("d", 1, START + 3, START + 5, 0.5, 0.1, 0.8),
    record("e", 1, None, None, math.nan, math.nan, math.nan, status=Status.LOST),  # its task died: no times
]
# A raw stage of 0.3 s computed and read by both prefix tasks, one of 0.2 s loaded from the memo and read by fold 1's.
STAGES = StageTime(computed=0.3, from_memo=0.2, in_prefixes=0.3 * 2 + 0.2)


def test_usage_counts_this_runs_records_shared_fits_and_prefix_tasks_once(tmp_path):
    usage = worker_usage(logged(tmp_path / "s", RECORDS), threads=2, since=START, stages=STAGES)
    assert usage.wall == pytest.approx(5.0) and usage.capacity == pytest.approx(10.0)
    assert usage.fits == 4
    assert usage.fit_time == pytest.approx(0.6 + 1.0 + 0.5)  # b's fit is a's
    assert usage.score_time == pytest.approx(0.5)
    assert usage.prep_time == pytest.approx((0.5 + 0.8 - 0.8) + 0.3)  # prefixes alone, then the stages once each
    assert usage.memo_time == pytest.approx(0.2)
    assert usage.busy == pytest.approx(3.6) and usage.idle == pytest.approx(10.0 - 3.6)
    assert usage.efficiency == pytest.approx(0.36)
    assert sum(usage.shares().values()) == pytest.approx(1.0)
    assert usage.line() == ("workers: 2 x 5.0 s wall, 36% busy (fits 21%, scoring 5%, preprocessing 8%, memo loads 2%), "
                            "idle or overhead 64%")


def test_usage_without_a_start_counts_every_record_from_the_first(tmp_path):
    usage = worker_usage(logged(tmp_path / "s", RECORDS), threads=2)
    assert usage.wall == pytest.approx(105.0) and usage.fits == 5
    assert usage.fit_time == pytest.approx(52.1) and usage.prep_time == pytest.approx(9.0 + 0.5 + 0.8)


def test_usage_of_a_run_that_fitted_nothing_says_so(tmp_path):
    usage = worker_usage(logged(tmp_path / "s", RECORDS), threads=2, since=START + 10)
    assert usage.fits == 0 and math.isnan(usage.efficiency) and usage.shares() == {}
    assert usage.line() == "workers: 2 x 0.0 s wall, no timed fits in this run"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, config_writer, cluster_address, client) -> list[tuple[gridsearch.SearchResult, str, dict[str, float]]]:
    """The base search run once, then again with a grown grid (its first 18 fits resumed).

    Each run's result, printed output, and compute seconds per task kind from Dask's task stream.
    """
    write = config_writer(tmp_path_factory.mktemp("usage"), cluster_address)
    outputs = []
    for alphas in ([0.1, 1.0, 10.0], [0.1, 1.0, 10.0, 100.0]):
        grid = {"features__geohash__encode__precision": [4, 5], "model__alpha": alphas}
        with contextlib.redirect_stdout(io.StringIO()) as printed, get_task_stream(client) as stream:
            result = gridsearch.run(write(search={"params": grid}), progress=True)
        computed: dict[str, float] = {}
        for task in stream.data:
            kind = key_split(task["key"])
            computed[kind] = computed.get(kind, 0.0) + sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")
        outputs.append((result, printed.getvalue(), computed))
    return outputs


def test_the_summary_prints_worker_time_whose_shares_add_up(runs):
    result, output, _ = runs[0]
    [match] = LINE.findall(output)
    threads, wall, busy, *parts, idle = match
    assert int(threads) == 2 and float(wall) == pytest.approx(result.usage.wall, abs=0.05)
    assert abs(sum(map(int, parts)) - int(busy)) <= 2 and abs(int(busy) + int(idle) - 100) <= 1  # each share rounded
    assert int(busy) == round(100 * result.usage.efficiency)
    assert result.usage.fits == 18 and result.usage.prep_time > 0
    assert ("overhead-bound" in output) == (result.usage.efficiency < 0.5)


def test_a_resumed_run_counts_only_its_own_fits(runs):
    _, (second, output, _) = runs
    assert second.n_resumed == 18 and second.usage.fits == 6
    assert second.stages_from_memo > 0 and second.usage.memo_time > 0  # the first run's raw stages, from the memo
    assert LINE.search(output) is not None


@pytest.mark.parametrize("run", [0, 1], ids=["computed stages", "stages from the memo"])
def test_preprocessing_is_the_stage_and_prefix_tasks_counted_once(runs, run):
    result, _, computed = runs[run]
    on_workers = computed.get("stage", 0.0) + computed.get("prep", 0.0)  # the tasks' whole compute: fold slicing too (0.67-0.9 of it)
    timed = result.usage.prep_time + result.usage.memo_time  # a stage counted per prefix reading it would exceed it
    assert 0.3 * on_workers <= timed <= on_workers, (timed, computed)


def test_a_halving_run_prints_its_worker_time_over_every_round(write_config):
    grid = {"features__geohash__encode__precision": [4, 5], "model__alpha": [0.01, 0.1, 1.0, 10.0]}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        result = gridsearch.run(write_config(search={"params": grid, "strategy": "halving", "factor": 2}), progress=True)
    [match] = LINE.findall(printed.getvalue())
    assert int(match[0]) == result.usage.threads == 2
    assert result.usage.fits == len(gridsearch.read_log(result.log_path)) == len(result.cv_results) * 3  # all rounds' fits
    assert result.usage.fit_time > 0 and result.usage.prep_time > 0
