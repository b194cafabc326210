"""Figures of how searches ran and compare: worker timelines, learning curves, halving rounds, searches side by side, the registry.

Each function returns None when the logs lack what it needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from gridsearch.view import tables
from gridsearch.view.figures import HEIGHT, WIDTH

_OK, _FAILED = "#1f77b4", "#d62728"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def timeline(search: tables.SearchData) -> Any | None:
    """Each worker's busy time fitting and scoring (from the records' start and end); the gaps are idle or other work."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    line = tables.timeline(search.records)
    if line is None:
        return None
    names = {row.worker: f"{row.worker} (idle {row.idle:.0%})" for row in line.workers.itertuples()}
    segments = line.segments.assign(lane=line.segments["worker"].map(names), seconds=line.segments["end"] - line.segments["start"])
    how = f"shade: busy share of each {segments['seconds'].iloc[0]:.3g} s" if line.binned else "a bar: one fit task or more"
    fig = figure(title="tasks per worker (red: failed fits)", y_range=sorted(names.values()), width=2 * WIDTH, height=110 + 45 * len(names),
                 tools="xpan,xwheel_zoom,reset,save", x_axis_label=f"seconds since the first fit started ({how}; gaps: preprocessing, data, idle)")
    source = ColumnDataSource({c: segments[c].to_numpy() for c in ("lane", "start", "end", "share", "failed", "seconds")})
    bars = fig.hbar(y="lane", left="start", right="end", height=0.7, fill_color=_OK, fill_alpha="share", line_color=None, source=source)
    fig.hbar(y="lane", left="start", right="end", height=0.7, fill_color=_FAILED, fill_alpha="failed", line_color=None, source=source)
    fig.add_tools(HoverTool(renderers=[bars], tooltips=[("worker", "@lane"), ("from", "@start{0.000} s"), ("for", "@seconds{0.000} s"),
                                                        ("busy", "@share{0%}"), ("failed", "@failed{0%}")]))
    return fig


def learning_curves(searches: Sequence[tables.SearchData], settings: int = 8) -> list[Any]:
    """Score and fit time against training rows, one line per parameter setting (the ``settings`` best at the most rows)."""
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    curves = tables.learning_curves(searches)
    if curves is None:
        return []
    largest = curves.loc[curves.groupby("params")["rows"].idxmax()]
    chosen = list(largest.sort_values("score", ascending=False)["params"].head(settings))
    scorer = searches[0].scorer
    figures = []
    for value, label in (("score", scorer), ("fit_time", "fit time per fit, s")):
        fig = figure(title=f"learning curve: {label} against training rows", x_axis_type="log", width=WIDTH, height=HEIGHT,
                     tools=_TOOLS, x_axis_label="rows", y_axis_label=label, y_axis_type="log" if value == "fit_time" else "linear")
        for k, params in enumerate(chosen):
            curve = curves[curves["params"] == params]
            colour = _PALETTE[k % len(_PALETTE)]
            fig.line(curve["rows"], curve[value], line_color=colour, line_width=2)
            dots = fig.scatter(curve["rows"], curve[value], size=7, fill_color=colour, line_color=None)
            fig.add_tools(HoverTool(renderers=[dots], tooltips=[("params", _short(params)), ("rows", "@x"), (value, "@y{0.0000}")]))
        figures.append(fig)
    return figures


def halving_rounds(search: tables.SearchData) -> Any | None:
    """Scores per halving round (when the records have rounds): every candidate of a round, the best of each."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    table = tables.rounds(search)
    if table is None:
        return None
    counts = table.groupby("round").size()
    drawn = table.sort_values("score", ascending=False, kind="stable").groupby("round").head(tables.MAX_POINTS // max(len(counts), 1))
    fig = figure(title=f"halving rounds: {', '.join(f'{n} in round {r}' for r, n in counts.items())}", width=WIDTH, height=HEIGHT,
                 tools=_TOOLS, x_axis_label="round", y_axis_label=search.scorer)
    jitter = (np.arange(len(drawn)) % 17 / 17 - 0.5) * 0.4
    source = ColumnDataSource({"x": drawn["round"].to_numpy() + jitter, "score": drawn["score"].to_numpy(),
                               "short": drawn["candidate_id"].str[:10].to_numpy()})
    dots = fig.scatter("x", "score", source=source, size=5, fill_alpha=0.6, line_color=None)
    best = table.groupby("round")["score"].max()
    fig.line(best.index.to_numpy(), best.to_numpy(), line_color=_FAILED, line_width=2, legend_label="best per round")
    fig.add_tools(HoverTool(renderers=[dots], tooltips=[("candidate", "@short"), ("score", "@score{0.0000}")]))
    return fig


def searches_side_by_side(searches: Sequence[tables.SearchData]) -> Any | None:
    """Every search of a log root by its first scorer: the spread of its candidates' scores, its best, when it ran."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    rows = []
    for search in searches:
        scores = search.scored["score"].to_numpy()
        if not len(scores):
            continue
        q = np.quantile(scores, [0.0, 0.25, 0.5, 0.75, 1.0])
        code = (search.meta.code_version or {}).get("git_sha") or ""
        rows.append({"search": f"{search.meta.search_id[:10]} {(search.meta.created or '')[:16]}", "scorer": search.scorer,
                     "low": q[0], "q1": q[1], "median": q[2], "q3": q[3], "best": q[4], "n": len(scores),
                     "rows": tables.config_rows(search) or "-", "code": str(code)[:10], "created": search.meta.created or ""})
    table = pd.DataFrame(rows)
    if len(table) < 2:
        return None
    table = table.sort_values("created", kind="stable")
    scorers = sorted(set(table["scorer"]))
    fig = figure(title=f"searches side by side: candidates' {' / '.join(scorers)} (box: quartiles, line: all, dot: best)",
                 x_range=list(table["search"]), width=2 * WIDTH, height=HEIGHT, tools="save,reset", y_axis_label=" / ".join(scorers))
    source = ColumnDataSource({c: table[c].to_numpy() for c in table.columns})
    fig.segment("search", "low", "search", "best", source=source, line_color="black")
    boxes = fig.vbar("search", 0.6, "q3", "q1", source=source, fill_color=_OK, fill_alpha=0.5, line_color="black")
    fig.scatter("search", "best", source=source, size=9, fill_color=_FAILED, line_color=None)
    fig.add_tools(HoverTool(renderers=[boxes], tooltips=[("search", "@search"), ("candidates", "@n"), ("best", "@best{0.0000}"),
                                                         ("median", "@median{0.0000}"), ("data rows", "@rows"), ("code", "@code")]))
    fig.xaxis.major_label_orientation = 0.6
    return fig


def registry_runs(table: pd.DataFrame, scorer: str | None) -> Any | None:
    """Promoted runs over time: their cross-validated score against the date, coloured by code version."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    metric = f"metrics.mean_test_{scorer}" if scorer else None
    if metric not in table.columns:
        metric = next((c for c in table.columns if c.startswith("metrics.mean_test_")), None)
    if table.empty or metric is None or "start_time" not in table.columns:
        return None
    shas = table.get("tags.gridsearch.git_sha", pd.Series("", index=table.index)).fillna("").astype(str).str[:10]
    colours = {sha: _PALETTE[k % len(_PALETTE)] for k, sha in enumerate(sorted(set(shas)))}
    source = ColumnDataSource({"date": pd.to_datetime(table["start_time"]).dt.tz_localize(None).to_numpy(),
                               "score": table[metric].to_numpy(dtype=float), "code": shas.to_numpy(),
                               "colour": shas.map(colours).to_numpy(), "model": table["model_name"].astype(str).to_numpy(),
                               "version": table["model_version"].astype(str).to_numpy(),
                               "search": table.get("tags.gridsearch.search_id", pd.Series("", index=table.index)).astype(str).to_numpy()})
    fig = figure(title=f"promoted runs over time: {metric.removeprefix('metrics.')} (colour: code version)", x_axis_type="datetime",
                 width=2 * WIDTH, height=HEIGHT, tools=_TOOLS, y_axis_label=metric.removeprefix("metrics."))
    dots = fig.scatter("date", "score", source=source, size=10, fill_color="colour", line_color="black")
    fig.add_tools(HoverTool(renderers=[dots], tooltips=[("model", "@model v@version"), ("search", "@search"), ("code", "@code"),
                                                        ("score", "@score{0.0000}"), ("date", "@date{%F %T}")],
                            formatters={"@date": "datetime"}))
    return fig


_TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def _short(params: str) -> str:
    return params if len(params) < 120 else params[:117] + "..."
