"""The trade-off figures of one search, one function each; each returns None when the log lacks what it needs.

Every figure of a search shares one source of drawn candidates (:class:`Points`): the
Pareto fronts and the best ones always, a seeded sample of the rest, at most
:data:`gridsearch.view.tables.MAX_POINTS`. Selecting a candidate in one figure selects it in
all of them; the section's "top k" slider fades every candidate ranked below k. Everything
not drawn one by one is aggregated (a density behind the scatter, the best score per cell).
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gridsearch.view import tables
from gridsearch.view.importance import UNSET, Importance, Levels, best_by_pair, by_level, importance, levels

WIDTH, HEIGHT = 640, 400
FADED = 0.15
_TOOLS = "pan,wheel_zoom,box_zoom,tap,reset,save"
_FRONT = "#d62728"


@dataclass
class Points:
    """The candidates drawn one by one, their Bokeh source, and what the figures share."""

    search: tables.SearchData
    frame: pd.DataFrame
    source: Any
    top_k: int
    importance: Importance
    levels: dict[str, Levels]
    sources: list[Any] = field(default_factory=list)  # every source with a rank and an alpha column, for the top-k slider


def points(search: tables.SearchData, top_k: int) -> Points | None:
    """The search's drawn candidates (None when nothing is scored yet)."""
    from bokeh.models import ColumnDataSource

    scored = search.scored
    if scored.empty:
        return None
    fronts = tables.pareto_front(scored["cost"].to_numpy(), scored["score"].to_numpy())
    fronts |= tables.pareto_front(scored["model_size"].to_numpy(), scored["score"].to_numpy())
    drawn = tables.sample(scored.assign(front=fronts), always=fronts, top=max(top_k, 20))
    params = search.params.loc[scored.index]
    ranked = importance(params, scored["score"].to_numpy())
    frame = drawn.assign(label=tables.labels(search.params.loc[drawn.index], tables.varying(params)), short=drawn["candidate_id"].str[:10],
                         alpha=np.where(drawn["rank"] <= top_k, 0.9, FADED))
    level_of = {name: levels(name, params[name]) for name in ranked.ranked}
    for j, name in enumerate(ranked.ranked):
        frame[f"x{j}"] = _slice_x(level_of[name], scored.index.get_indexer(drawn.index), drawn["candidate_id"].to_numpy())
    columns = ["candidate_id", "short", "label", "score", "std", "rank", "cost", "fit_time", "prep_time", "model_size", "alpha",
               "estimated", *(c for c in frame.columns if c.startswith("x") and c[1:].isdigit())]
    source = ColumnDataSource({c: frame[c].to_numpy() for c in columns})
    return Points(search, frame, source, top_k, ranked, level_of, [source])


def _slice_x(level: Levels, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """A candidate's x in its parameter's slice: the value on a continuous axis, else its level with a fixed jitter."""
    if level.numeric and level.binned:
        return level.values[rows]
    jitter = (np.array([zlib.crc32(str(i).encode()) % 1000 for i in ids]) / 1000 - 0.5) * 0.5  # the same in every report
    return level.codes[rows] + jitter


def fit_time(p: Points) -> Any | None:
    """Score against fit time per fit, Pareto front marked; colour: the shared preprocessing the candidate's group paid."""
    return _trade_off(p, "cost", "fit time per fit, s (the final estimator alone; scaled from the leader for a shared fit)",
                      f"{p.search.scorer} vs fit time (red: Pareto front)", "prep_time", "shared preprocessing, s per fold and group")


def model_size(p: Points) -> Any | None:
    """Score against model size (bytes of the fitted final estimator's arrays), Pareto front marked."""
    return _trade_off(p, "model_size", "model size, bytes (the fitted final estimator's arrays)",
                      f"{p.search.scorer} vs model size (red: Pareto front)", "cost", "fit time per fit, s")


def _trade_off(p: Points, x: str, x_label: str, title: str, colour: str, colour_label: str) -> Any | None:
    from bokeh.models import ColorBar, HoverTool, LogColorMapper
    from bokeh.plotting import figure

    scored = p.search.scored
    values = scored[x].to_numpy(dtype=float)
    if (np.isfinite(values) & (values > 0)).sum() < 2:
        return None
    fig = figure(title=title, x_axis_type="log", width=WIDTH, height=HEIGHT, tools=_TOOLS, x_axis_label=x_label, y_axis_label=p.search.scorer,
                 y_range=_score_range(scored["score"].to_numpy()))
    cells = tables.density(values, scored["score"].to_numpy(dtype=float))
    if len(scored) > len(p.frame) and len(cells):
        shade = 0.08 + 0.3 * np.log1p(cells["count"]) / np.log1p(cells["count"].max())
        fig.quad(left=cells["left"], right=cells["right"], bottom=cells["bottom"], top=cells["top"], fill_color="gray",
                 fill_alpha=shade, line_alpha=0, legend_label=f"all {len(scored):,} candidates (density)")
    shades = p.frame[colour].to_numpy(dtype=float)
    positive = shades[np.isfinite(shades) & (shades > 0)]
    mapper = LogColorMapper(palette="Viridis256", low=positive.min() if len(positive) else 1e-3, high=positive.max() if len(positive) else 1)
    dots = fig.scatter(x, "score", source=p.source, size=7, fill_color={"field": colour, "transform": mapper}, line_color=None,
                       fill_alpha="alpha", selection_line_color="black", nonselection_fill_alpha=0.1)
    front = p.frame[tables.pareto_front(p.frame[x].to_numpy(), p.frame["score"].to_numpy())].sort_values(x)
    if len(front):
        fig.step(front[x], front["score"], mode="after", line_color=_FRONT, line_width=2, legend_label=f"Pareto front ({len(front)})")
        fig.scatter(front[x], front["score"], size=9, fill_color=None, line_color=_FRONT, line_width=2)
    fig.add_layout(ColorBar(color_mapper=mapper, title=colour_label, width=10), "right")
    fig.add_tools(HoverTool(renderers=[dots], tooltips=_TOOLTIPS))
    fig.legend.location = "bottom_right"
    return fig


def _score_range(scores: np.ndarray) -> Any:
    """The y range shown first: the best 95 % of the candidates (a few very bad ones would squash the rest; zoom out for them)."""
    from bokeh.models import Range1d

    low, high = float(np.quantile(scores, 0.05)), float(scores.max())
    pad = 0.06 * ((high - low) or abs(high) or 1.0)
    return Range1d(low - pad, high + pad)


_TOOLTIPS = [("candidate", "@short"), ("rank", "@rank"), ("score", "@score{0.0000} ± @std{0.0000}"), ("fit", "@cost{0.0000} s (estimated: @estimated)"),
             ("prep", "@prep_time{0.000} s"), ("size", "@model_size{0,0} B"), ("params", "@label")]


def parallel(p: Points) -> Any | None:
    """Parallel coordinates: the parameters (most important first) and the score, one line per drawn candidate."""
    from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, LinearColorMapper
    from bokeh.plotting import figure

    names = p.importance.ranked[:8]
    if not names or len(p.frame) < 2:
        return None
    frame = p.frame.sort_values("rank", ascending=False)  # the best drawn last, on top
    rows = p.search.scored.index.get_indexer(frame.index)
    axes = [_unit(p.levels[name], rows) for name in names]
    score = frame["score"].to_numpy(dtype=float)
    axes.append((score - score.min()) / (np.ptp(score) or 1.0))
    ys = np.round(np.column_stack(axes), 4)
    xs = list(range(len(axes)))
    source = ColumnDataSource({"xs": [xs] * len(frame), "ys": ys.tolist(), "score": score, "rank": frame["rank"].to_numpy(),
                               "short": frame["short"].to_numpy(), "label": frame["label"].to_numpy(),
                               "alpha": np.where(frame["rank"] <= p.top_k, 0.9, FADED)})
    p.sources.append(source)
    fig = figure(title=f"parameters and {p.search.scorer}, one line per candidate", width=2 * WIDTH, height=HEIGHT,
                 tools=_TOOLS, x_range=(-0.3, len(axes) - 0.7), y_range=(-0.08, 1.08))
    mapper = LinearColorMapper(palette="Viridis256", low=score.min(), high=score.max())
    lines = fig.multi_line("xs", "ys", source=source, line_color={"field": "score", "transform": mapper}, line_alpha="alpha",
                           line_width=1.5, hover_line_color="black", hover_line_width=3, selection_line_color="black")
    fig.segment(x0=xs, x1=xs, y0=0, y1=1, line_color="black", line_width=1)
    labels = {"x": [], "y": [], "text": []}
    for j, name in enumerate(names):
        level = p.levels[name]
        ticks = _ticks(level)
        labels["x"] += [j + 0.03] * len(ticks)
        labels["y"] += [y for y, _ in ticks]
        labels["text"] += [t for _, t in ticks]
    labels["x"] += [len(names) + 0.03] * 2
    labels["y"] += [0.0, 1.0]
    labels["text"] += [f"{score.min():.4g}", f"{score.max():.4g}"]
    fig.text("x", "y", "text", source=ColumnDataSource(labels), text_font_size="8pt", text_baseline="middle")
    fig.xaxis.ticker = FixedTicker(ticks=xs)
    fig.xaxis.major_label_overrides = {j: name.rpartition("__")[2] for j, name in enumerate([*names, p.search.scorer])}
    fig.yaxis.visible = False
    fig.ygrid.visible = False
    fig.add_tools(HoverTool(renderers=[lines], tooltips=[("candidate", "@short"), ("rank", "@rank"), ("score", "@score{0.0000}"),
                                                         ("params", "@label")]))
    return fig


def _unit(level: Levels, rows: np.ndarray) -> np.ndarray:
    """Positions in [0, 1] on a parallel axis: numbers by value (log when they span decades), levels evenly; unset above."""
    if level.numeric and level.binned:
        values = np.log10(level.values) if level.log else level.values
        low, high = np.nanmin(values), np.nanmax(values)
        return np.where(np.isfinite(values[rows]), (values[rows] - low) / ((high - low) or 1.0), 1.05)
    return level.codes[rows] / max(len(level.labels) - 1, 1)


def _ticks(level: Levels) -> list[tuple[float, str]]:
    if level.numeric and level.binned:
        finite = level.values[np.isfinite(level.values)]
        return [(0.0, f"{finite.min():.3g}"), (1.0, f"{finite.max():.3g}"), *([(1.05, UNSET)] if UNSET in level.labels else [])]
    k = len(level.labels)
    return [(i / max(k - 1, 1), label[:18]) for i, label in enumerate(level.labels)]


def importance_bars(p: Points) -> Any | None:
    """Each parameter's share of the score variance (exact on a complete grid, else an estimate)."""
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    table = p.importance.table[p.importance.table["levels"] > 1]
    if table.empty or p.importance.n < 3:
        return None
    how = (f"exact: variance of the per-value means, complete grid of {p.importance.n:,}" if p.importance.method == "exact"
           else f"estimated over {p.importance.n:,} candidates: per-value means, bias-corrected")
    names = list(table["param"])[::-1]
    fig = figure(title="parameter importance: share of the score variance", y_range=names, width=WIDTH,
                 height=max(180, 70 + 28 * len(names)), tools="save,reset", x_range=(0, 1), x_axis_label=how)
    bars = fig.hbar(y=names, right=table["importance"].to_numpy()[::-1], height=0.7, fill_color="#1f77b4", line_color=None)
    fig.add_tools(HoverTool(renderers=[bars], tooltips=[("param", "@y"), ("share", "@right{0.000}")]))
    return fig


def heatmaps(p: Points, pairs: int = 3) -> list[Any]:
    """The best score in each cell of every pair of the most important parameters (up to ``pairs`` pairs)."""
    from bokeh.models import ColorBar, ColumnDataSource, HoverTool, LinearColorMapper
    from bokeh.plotting import figure

    scored = p.search.scored
    figures = []
    for a, b in _pairs(p, pairs):
        cells = best_by_pair(p.levels[a], p.levels[b], scored["score"].to_numpy(), scored["candidate_id"].to_numpy())
        mapper = LinearColorMapper(palette="Viridis256", low=cells["best"].min(), high=cells["best"].max())
        fig = figure(title=f"best {p.search.scorer} per cell", x_range=list(p.levels[a].labels), y_range=list(p.levels[b].labels),
                     width=WIDTH, height=HEIGHT, tools="hover,save,reset", x_axis_label=a, y_axis_label=b)
        source = ColumnDataSource({**{c: cells[c].to_numpy() for c in ("a", "b", "best", "count")}, "short": cells["candidate_id"].str[:10]})
        fig.rect("a", "b", 1, 1, source=source, fill_color={"field": "best", "transform": mapper}, line_color="white")
        fig.select_one(HoverTool).tooltips = [(a, "@a"), (b, "@b"), ("best", "@best{0.0000}"), ("candidate", "@short"), ("candidates", "@count")]
        fig.xaxis.major_label_orientation = 0.8
        fig.add_layout(ColorBar(color_mapper=mapper, width=10), "right")
        figures.append(fig)
    return figures


def _pairs(p: Points, pairs: int) -> list[tuple[str, str]]:
    """Pairs of the most important parameters that candidates set together (not two steps' exclusive params)."""
    chosen = []
    for a, b in itertools.combinations(p.importance.ranked[:5], 2):
        both = _set(p.levels[a]) & _set(p.levels[b])
        if both.sum() >= 4 and len(np.unique(p.levels[a].codes[both])) > 1 and len(np.unique(p.levels[b].codes[both])) > 1:
            chosen.append((a, b))
    return chosen[:pairs]


def _set(level: Levels) -> np.ndarray:
    return level.codes != level.labels.index(UNSET) if UNSET in level.labels else np.ones(len(level.codes), dtype=bool)


def slices(p: Points, limit: int = 4) -> list[Any]:
    """One slice per parameter (the ``limit`` most important): each drawn candidate's score at its value, and the best per value."""
    from bokeh.models import FixedTicker, HoverTool
    from bokeh.plotting import figure

    figures = []
    scored = p.search.scored
    for j, name in enumerate(p.importance.ranked[:limit]):
        level = p.levels[name]
        continuous = level.numeric and level.binned
        fig = figure(title=f"slice: {name}", width=WIDTH // 2 + 40, height=HEIGHT - 60, tools=_TOOLS, x_axis_label=name.rpartition("__")[2],
                     y_axis_label=p.search.scorer, x_axis_type="log" if continuous and level.log else "linear",
                     y_range=_score_range(scored["score"].to_numpy()))
        dots = fig.scatter(f"x{j}", "score", source=p.source, size=5, fill_alpha="alpha", line_color=None, selection_line_color="black")
        best = by_level(level, scored["score"].to_numpy())
        if continuous:
            best = best[best["label"] != UNSET]  # the middle value of each bin
            best = best.assign(x=[float(np.median(level.values[level.codes == level.labels.index(t)])) for t in best["label"]])
        else:
            best = best.assign(x=[level.labels.index(t) for t in best["label"]])
            fig.xaxis.ticker = FixedTicker(ticks=list(range(len(level.labels))))
            fig.xaxis.major_label_overrides = {k: t[:14] for k, t in enumerate(level.labels)}
            fig.xaxis.major_label_orientation = 0.6
        fig.line(best["x"], best["best"], line_color=_FRONT, line_width=2, legend_label="best per value")
        fig.legend.location = "bottom_right"
        fig.add_tools(HoverTool(renderers=[dots], tooltips=_TOOLTIPS))
        figures.append(fig)
    return figures
