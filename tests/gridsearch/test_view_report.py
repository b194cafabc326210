"""The report from logs written as a search writes them: which figures each log supports, bounds, log roots, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import gridsearch
from gridsearch.cli import main
from gridsearch.errors import GridsearchError
from gridsearch.log.records import FitRecord, SearchMeta, Status, log_schema, to_batch
from gridsearch.log.runlog import RunLog
from gridsearch.view import activity, tables

SCORING = ("neg_root_mean_squared_error",)
START = 1_767_225_600.0


def records(n: int, folds: int = 2, rows: int | None = None, size: bool = True) -> list[FitRecord]:
    """A complete grid of ``n`` candidates (alpha x precision), ``folds`` each, on two workers."""
    out = []
    for i in range(n):
        alpha, precision = 10.0 ** (i % 25 - 12), 4 + (i // 25) % 3
        params = json.dumps({"features__geohash__encode__precision": precision, "model__alpha": alpha, **({"rows": rows} if rows else {})})
        for fold in range(folds):
            began = START + (i * folds + fold) * 0.01
            out.append(FitRecord(search_id="s", candidate_id=f"{i:016x}", params=params, fold=fold, status=Status.OK,
                                 scores={SCORING[0]: -abs(i % 25 - 12) / 10 - precision / 100 - (rows or 0) / 1e5 - fold / 1000},
                                 fit_time=0.001 * (1 + precision), score_time=0.001, prep_time=0.05 * precision,
                                 worker=f"tcp://127.0.0.1:{i % 2}", started=began, finished=began + 0.008,
                                 model_size=8.0 * 4**precision if size else math.nan))
    return out


def write(directory: Path, rows: list[FitRecord], folds: int = 2, created: str = "2026-01-01T00:00:00", **meta: object) -> Path:
    with RunLog(directory, SearchMeta(directory.name, SCORING, folds, created=created, **meta)) as log:
        log.append(rows)
    return directory


def test_a_logs_report_draws_every_figure_its_records_support(tmp_path):
    log = write(tmp_path / "grid", records(75))
    report = gridsearch.report(log, explain=False)
    assert sorted(report.figures()) == sorted(f"grid/{name}" for name in ("fit_time", "model_size", "parallel", "importance", "heatmap_0",
                                                                          "slice_0", "slice_1", "timeline"))
    importance = report.figures()["grid/importance"]
    assert "exact" in importance.xaxis.axis_label and "complete grid of 75" in importance.xaxis.axis_label


def test_a_log_from_before_model_sizes_has_no_size_figure(tmp_path):
    directory = tmp_path / "old"
    directory.mkdir()
    schema = log_schema(SCORING)
    old = pa.schema([column for column in schema if column.name != "model_size"])
    batch = to_batch(records(20), schema).select(old.names)
    with pa.OSFile(str(directory / "part-20250101T000000.000000000-1.arrows"), "wb") as sink, pa.ipc.new_stream(sink, old) as writer:
        writer.write_batch(batch)
    SearchMeta("old", SCORING, 2).write(directory)
    names = gridsearch.report(directory, explain=False).figures()
    assert "old/fit_time" in names and "old/model_size" not in names


def test_the_file_opens_offline_and_draws_a_bounded_number_of_candidates(tmp_path):
    log = write(tmp_path / "big", records(3 * tables.MAX_POINTS, folds=1), folds=1)
    report = gridsearch.report(log, tmp_path / "out" / "report.html", explain=False)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<script src=" not in page and "cdn.bokeh.org" not in page  # BokehJS inline
    assert report.written == tmp_path / "out" / "report.html" and "wrote" in str(report)
    for name, fig in report.figures().items():
        for renderer in fig.renderers:
            drawn = len(next(iter(renderer.data_source.data.values()), []))
            assert drawn <= tables.MAX_POINTS, f"{name} draws {drawn} glyphs"
    assert page.startswith("<!DOCTYPE html>") and 'srcdoc="&lt;!DOCTYPE html&gt;' in report._repr_html_()


def test_a_log_root_compares_its_searches_and_draws_learning_curves_over_their_rows(tmp_path):
    root = tmp_path / "runs"
    for k, rows in enumerate((1000, 2000, 4000, 8000)):
        write(root / f"rows{rows}", records(30, rows=None), config={"data": {"rows": rows}}, created=f"2026-01-0{k + 1}T00:00:00")
    report = gridsearch.report(root, explain=False)
    names = report.figures()
    assert {"searches", "learning_curve_0", "learning_curve_1"} <= set(names)
    assert [s.meta.search_id for s in report.detailed] == ["rows8000", "rows4000", "rows2000"]  # the most recent in full
    assert not any(name.startswith("rows1000/") for name in names)


def test_the_registry_figure_plots_promoted_runs_by_date_and_code_version():
    table = pd.DataFrame({"model_name": ["taxifare"] * 3, "model_version": ["1", "2", "3"],
                          "start_time": pd.to_datetime(["2026-01-01", "2026-01-05", "2026-02-01"], utc=True),
                          "metrics.mean_test_neg_root_mean_squared_error": [-3.1, -3.0, -2.9],
                          "tags.gridsearch.git_sha": ["aaaa", "aaaa", "bbbb"], "tags.gridsearch.search_id": ["s1", "s1", "s2"]})
    fig = activity.registry_runs(table, SCORING[0])
    source = fig.renderers[0].data_source.data
    assert list(source["score"]) == [-3.1, -3.0, -2.9] and len(set(source["colour"])) == 2
    assert activity.registry_runs(table.iloc[:0], SCORING[0]) is None


def test_a_log_without_records_yet_reports_that_and_draws_nothing(tmp_path):
    directory = tmp_path / "empty"
    directory.mkdir()
    SearchMeta("empty", SCORING, 2).write(directory)
    report = gridsearch.report(directory)
    assert report.figures() == {} and "no fully scored candidate yet" in report.html


def test_the_command_writes_the_report_into_the_log_and_prints_its_path(tmp_path, capsys):
    log = write(tmp_path / "grid", records(30))
    assert main(["report", str(log), "--no-explain"]) == 0
    assert capsys.readouterr().out.strip().startswith(f"report of 1 search under {log}: wrote {log / 'report.html'} (")
    assert main(["report", str(log), "--to", str(tmp_path / "x.txt")]) == 2
    assert "error: --to: expected a file name ending in .html, found 'x.txt'" in capsys.readouterr().err
    assert main(["report", str(log), "--top-k", "0"]) == 2
    with pytest.raises(GridsearchError, match="no run log"):
        gridsearch.report(tmp_path / "missing")
