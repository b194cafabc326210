"""The report: what a search found, as figures in one self-contained HTML file (BokehJS inline, no CDN).

``report(log)`` reads a search's log (or every search under a log root), tabulates it once
and returns a :class:`Report`; it shows itself in a notebook and ``save`` writes the file.
Each figure is drawn only when the log has what it needs; the sections are:

- for a log root: its searches side by side (and learning curves across searches that
  differ only in their rows), then the :data:`DETAILED` most recent searches in full;
- per search: a summary and a "top k" slider, score vs fit time and vs model size with
  their Pareto fronts, parallel coordinates, parameter importance, heatmaps of the best
  score per pair of the most important parameters, one slice per parameter, learning
  curves and halving rounds when the records have them, the workers' timeline, and
  ``explain`` of the best candidate's pipeline on fold 0 (when the log keeps its config);
- with a tracking URI: the promoted runs of the registry over time.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from gridsearch.errors import ArgumentError, GridsearchError
from gridsearch.log.query import find_logs
from gridsearch.view import activity, figures, tables
from gridsearch.view.explain import Explanation, explain_fold

DETAILED = 3  # searches of a log root drawn in full, the most recent ones
TOP_K = 10
_PAGE = 2 * figures.WIDTH + 40


@dataclass
class Report:
    """The figures of one or more searches; ``save`` writes them as one HTML file.

    ``searches`` are all the searches read, ``detailed`` those drawn in full,
    ``explanations`` each detailed search's :class:`Explanation` (or why there is none).
    """

    path: Path
    searches: tuple[tables.SearchData, ...]
    detailed: tuple[tables.SearchData, ...]
    top_k: int = TOP_K
    registry: pd.DataFrame | None = None
    explanations: dict[str, Explanation | str] = field(default_factory=dict)
    written: Path | None = None

    def figures(self) -> dict[str, Any]:
        """Every figure drawn, by name (``<search id>/fit_time``, ``searches``, ...): new Bokeh models each call."""
        return {name: model for _, section in self._sections() for name, model in section if not name.endswith(("/summary", "/explain"))}

    def layout(self) -> Any:
        """The whole report as one Bokeh layout (new models each call)."""
        from bokeh.layouts import column, row
        from bokeh.models import Div

        title = (f"<h1>gridsearch report</h1><p>{html.escape(str(self.path))}: {len(self.searches)} search"
                 f"{'es' if len(self.searches) != 1 else ''}, generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>")
        blocks: list[Any] = [Div(text=title, width=_PAGE)]
        for heading, section in self._sections():
            blocks.append(Div(text=f"<h2>{html.escape(heading)}</h2>", width=_PAGE))
            pending: list[Any] = []  # figures side by side while they fit the page's width
            for name, model in section:
                width = _PAGE if name.endswith(("/summary", "/explain")) else (getattr(model, "width", None) or _PAGE) + 20
                if pending and sum(w for w, _ in pending) + width > _PAGE:
                    blocks.append(row(*(m for _, m in pending)))
                    pending = []
                pending.append((width, model))
            if pending:
                blocks.append(row(*(m for _, m in pending)))
        return column(*blocks)

    @cached_property
    def html(self) -> str:
        """The self-contained page: BokehJS and the data inline, so it opens offline."""
        from bokeh.embed import file_html
        from bokeh.resources import INLINE

        return file_html(self.layout(), INLINE, title=f"gridsearch report: {self.path.name}")

    def save(self, to: str | os.PathLike[str]) -> Path:
        """Write the page to ``to`` (atomically) and return its path."""
        target = Path(to)
        if target.suffix.lower() not in (".html", ".htm"):
            raise ArgumentError("to", f"expected a file name ending in .html, found {target.name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        temporary.write_text(self.html, encoding="utf-8")
        os.replace(temporary, target)
        self.written = target
        return target

    def show(self) -> None:
        """Show the report in a notebook (or a browser tab outside one)."""
        from bokeh.io import output_notebook, show

        output_notebook(hide_banner=True)
        show(self.layout())

    def _repr_html_(self) -> str:
        """Notebooks display the page in a frame of its own (no notebook extension needed)."""
        return f'<iframe srcdoc="{html.escape(self.html)}" style="width:100%;height:900px;border:0"></iframe>'

    def __str__(self) -> str:
        where = f"wrote {self.written} ({self.written.stat().st_size / 1e6:.1f} MB)" if self.written else "not written yet"
        return f"report of {len(self.searches)} search{'es' if len(self.searches) != 1 else ''} under {self.path}: {where}"

    def _sections(self) -> list[tuple[str, list[tuple[str, Any]]]]:
        sections = []
        if len(self.searches) > 1:
            overview = [("searches", activity.searches_side_by_side(self.searches))]
            overview += [(f"learning_curve_{k}", fig) for k, fig in enumerate(activity.learning_curves(self.searches))]
            sections.append((f"{len(self.searches)} searches side by side", [(n, m) for n, m in overview if m is not None]))
        for search in self.detailed:
            sections.append((f"search {search.meta.search_id}", self._search_section(search)))
        if self.registry is not None:
            scorer = self.searches[0].scorer if self.searches else None
            runs = activity.registry_runs(self.registry, scorer)
            sections.append(("the registry", [("registry", runs)] if runs is not None else [("registry/summary", _note("no promoted runs"))]))
        return sections

    def _search_section(self, search: tables.SearchData) -> list[tuple[str, Any]]:
        from bokeh.layouts import column

        sid = search.meta.search_id
        drawn = figures.points(search, self.top_k)
        summary = _summary(search)
        if drawn is None:
            return [(f"{sid}/summary", _note(summary + "<p>no fully scored candidate yet: nothing to draw.</p>", raw=True))]
        named = [("fit_time", figures.fit_time(drawn)), ("model_size", figures.model_size(drawn)), ("parallel", figures.parallel(drawn)),
                 ("importance", figures.importance_bars(drawn))]
        named += [(f"heatmap_{k}", fig) for k, fig in enumerate(figures.heatmaps(drawn))]
        named += [(f"slice_{k}", fig) for k, fig in enumerate(figures.slices(drawn))]
        named += [(f"learning_curve_{k}", fig) for k, fig in enumerate(activity.learning_curves([search]))]
        named += [("rounds", activity.halving_rounds(search)), ("timeline", activity.timeline(search))]
        head = column(_note(summary, raw=True), _top_k_slider(drawn))
        section = [(f"{sid}/summary", head), *((f"{sid}/{name}", fig) for name, fig in named if fig is not None)]
        explained = self.explanations.get(sid)
        if explained is not None:
            text = explained.to_html() if isinstance(explained, Explanation) else f"<p>{html.escape(explained)}</p>"
            section.append((f"{sid}/explain", _note(f"<h3>explain: the best candidate's pipeline, step by step</h3>{text}", raw=True)))
        return section


def report(log: str | os.PathLike[str], to: str | os.PathLike[str] | None = None, *, top_k: int = TOP_K,
           tracking_uri: str | None = None, explain: bool = True) -> Report:
    """The figures of a search's log, or of every search under a log root; written to ``to`` if given.

    Parameters
    ----------
    log : path
        ``runs/<search id>`` or a log root such as ``runs``.
    to : path, optional
        An ``.html`` file to write (self-contained: it opens offline).
    top_k : int
        Candidates highlighted at first (a slider in the page changes it).
    tracking_uri : str, optional
        An MLflow store: adds its promoted runs over time.
    explain : bool
        Fit the best candidate's pipeline once on fold 0 and show each step's output
        (needs the config kept in ``search.json`` and the data it names).

    Raises
    ------
    GridsearchError
        For a missing log or an unreachable store.
    """
    if top_k < 1:
        raise ArgumentError("top_k", f"expected an integer >= 1, found {top_k}")
    root = Path(log)
    searches = tuple(tables.load_search(path) for path in find_logs(root))
    detailed = tuple(sorted(searches, key=lambda s: s.meta.created or "", reverse=True)[:DETAILED]) if len(searches) > 1 else searches
    registry = None
    if tracking_uri is not None:
        from gridsearch.registry.table import registry_table

        registry = registry_table(tracking_uri)
    explanations = {s.meta.search_id: _explain_best(s) for s in detailed} if explain else {}
    result = Report(root, searches, detailed, top_k, registry, explanations)
    if to is not None:
        result.save(to)
    return result


def _explain_best(search: tables.SearchData) -> Explanation | str:
    """``explain`` of the best candidate on fold 0, or why it cannot be shown."""
    from gridsearch.search.inputs import load_inputs
    from kampai.errors import KampaiError

    scored = search.scored
    if scored.empty:
        return "no scored candidate to explain yet"
    if search.meta.config is None:
        return f"not shown: {search.path / 'search.json'} keeps no config to rebuild the pipeline and data from"
    try:
        inputs = load_inputs(search.meta.search_config(search.path))
        return explain_fold(inputs, _params_of(search, scored["candidate_id"].iloc[0]), 0, rows=None)
    except (GridsearchError, KampaiError) as exc:
        return f"not shown: {exc}"


def _params_of(search: tables.SearchData, candidate_id: str) -> dict[str, Any]:
    """A candidate's params exactly as logged (the JSON of its first record)."""
    return json.loads(search.records.loc[search.records["candidate_id"] == candidate_id, "params"].iloc[0])


def _summary(search: tables.SearchData) -> str:
    table = search.candidates
    scored = search.scored
    meta = search.meta
    code = meta.code_version or {}
    lines = [(f"<b>{html.escape(str(search.path))}</b>: {len(table):,} candidates, {len(search.records):,} records; "
             f"{len(scored):,} fully scored, {int((table['n_errors'] > 0).sum()):,} with failed folds, "
             f"{int((table['n_missing'] > 0).sum()):,} with folds not recorded yet. Ranked by {html.escape(search.scorer)}"
             f"{f' over {meta.folds} folds' if meta.folds else ''}.")]
    if len(scored):
        best = scored.iloc[0]
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in _params_of(search, best["candidate_id"]).items())
        lines.append(f"Best: <code>{best['candidate_id']}</code> {best['score']:.4f} ± {best['std']:.4f}, "
                     f"fit {best['cost']:.4g} s per fit: {html.escape(shown)}.")
    if code or meta.created:
        lines.append(f"Started {html.escape(str(meta.created or '?'))[:19]}, code {html.escape(str(code.get('git_sha') or '?'))[:12]}"
                     f"{' (uncommitted changes)' if code.get('git_dirty') else ''}.")
    lines.append("Hover a point for its candidate and params; click one to select it in every figure; the slider fades "
                 "every candidate ranked below k. Grey cells: every candidate (density); points: the best, the Pareto fronts "
                 f"and a sample, {tables.MAX_POINTS:,} at most. Score axes start at the 5th percentile: zoom out for the rest.")
    return "<p>" + "<br>".join(lines) + "</p>"


def _top_k_slider(drawn: figures.Points) -> Any:
    from bokeh.models import CustomJS, Slider

    end = int(max(min(drawn.frame["rank"].max(), 200), 2))
    slider = Slider(start=1, end=end, value=min(drawn.top_k, end), step=1, title="top k candidates bright", width=400)
    slider.js_on_change("value", CustomJS(args={"sources": drawn.sources, "faded": figures.FADED}, code="""
        const k = cb_obj.value;
        for (const source of sources) {
            const rank = source.data.rank, alpha = source.data.alpha;
            for (let i = 0; i < rank.length; i++) alpha[i] = rank[i] <= k ? 0.9 : faded;
            source.change.emit();
        }"""))
    return slider


def _note(text: str, raw: bool = False) -> Any:
    from bokeh.models import Div

    return Div(text=text if raw else f"<p>{html.escape(text)}</p>", width=_PAGE, styles={"overflow-x": "auto"})
