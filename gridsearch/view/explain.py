"""Explain a pipeline: fit it once and show what every step, branch and nested branch puts out.

Works on any scikit-learn estimator. Each node is fitted by itself on what the nodes before
it put out, so each gets its own fit and transform time: a ``Pipeline``'s steps in turn, a
``ColumnTransformer``'s branches on their columns (resolved by scikit-learn itself, callables
and the remainder included), a ``FeatureUnion``'s parts on the whole input. The outputs of a
``ColumnTransformer`` or ``FeatureUnion`` are then assembled by scikit-learn from its parts'
outputs (so sparse thresholds, weights and feature-name prefixes are its own). A node that
raises is recorded with its error, its siblings still run, and what needed its output is
listed as not run. Transform times are measured on the test rows; the other columns describe
the node's output on the training rows (for the final model: its predictions on the test rows).
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.utils import _safe_indexing

from gridsearch.errors import ArgumentError, GridsearchError
from gridsearch.search.config import SearchConfig
from gridsearch.view.walk import Step, Walker, names_of, width_of

__all__ = ["Explanation", "Step", "explain", "explain_fold", "explain_search"]


@dataclass(frozen=True)
class Explanation:
    """Every node of a fitted pipeline, parents before their children; ``table`` as a DataFrame."""

    steps: tuple[Step, ...]
    data: str

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{spec.name: getattr(step, spec.name) for spec in fields(Step)} for step in self.steps])

    @property
    def failed(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.status == "error")

    def rows(self, width: int | None = None) -> list[dict[str, str]]:
        """The table as text cells, as the terminal (cells cut at ``width``) and the report show it."""
        cut = (lambda text: text if len(text) <= width else text[: width - 3] + "...") if width else (lambda text: text)
        return [{"step": "  " * step.depth + (step.path.rpartition("__")[2] or "(pipeline)"), "estimator": step.estimator,
                 "status": step.status, "input": cut(_columns_text(step.input_columns, step.input_names)),
                 "output": _shape(step.output_shape) + (" predictions" if step.kind == "model" and step.status == "ok" else ""),
                 "features": cut(_first(step.feature_names, (step.output_shape or (0, 0))[-1])), "dtypes": cut(step.dtypes), "missing": _share(step.missing),
                 "zeros": _share(step.sparsity), "fit ms": _ms(step.fit_time), "transform ms": _ms(step.transform_time),
                 "memory": _bytes(step.memory)} for step in self.steps]

    def __str__(self) -> str:
        rows = self.rows(width=40)
        names = list(rows[0])
        widths = {name: max(len(name), *(len(row[name]) for row in rows)) for name in names}
        right = {"missing", "zeros", "fit ms", "transform ms", "memory"}
        line = lambda cells: "  ".join(cells[n].rjust(widths[n]) if n in right else cells[n].ljust(widths[n]) for n in names).rstrip()
        lines = [self.data, "", line({n: n for n in names}), *(line(row) for row in rows)]
        for step in self.steps:
            if step.error:
                lines.append(f"{'failed' if step.status == 'error' else 'not run'}: {step.path or '(pipeline)'}: {step.error}")
        return "\n".join(lines)

    def to_html(self) -> str:
        """An HTML table (errors in red), for the report."""
        rows = self.rows()
        head = "".join(f"<th>{html.escape(name)}</th>" for name in rows[0])
        body = []
        for step, cells in zip(self.steps, rows):
            style = ' style="color:#b00"' if step.status == "error" else ' style="color:#888"' if step.status == "not run" else ""
            row = "".join(f"<td>{html.escape(value)}</td>" if name != "step" else f"<td><pre style='margin:0'>{html.escape(value)}</pre></td>"
                          for name, value in cells.items())
            body.append(f"<tr{style}>{row}</tr>")
            if step.error:
                body.append(f'<tr style="color:#b00"><td></td><td colspan="{len(cells) - 1}">{html.escape(step.error)}</td></tr>')
        return (f"<p>{html.escape(self.data)}</p><table style='border-collapse:collapse;font-size:12px' border='1' cellpadding='3'>"
                f"<tr>{head}</tr>{''.join(body)}</table>")


def explain(pipeline: Any, X: Any = None, y: Any = None, X_test: Any = None, *, candidate: str | None = None, fold: int = 0,
            rows: int | None = None, seed: int = 0) -> Explanation:
    """Fit ``pipeline`` once on ``X, y`` and describe every step's output.

    Parameters
    ----------
    pipeline : estimator or path
        Any scikit-learn estimator; or a search config (path or ``SearchConfig``), whose
        pipeline is fitted on fold ``fold`` with ``candidate``'s params (an id or unique
        prefix; default: the pipeline as the config builds it).
    X, y : array-like
        Rows to fit on (not used with a config).
    X_test : array-like, optional
        Rows to time the transforms on (default: ``X``).
    rows : int, optional
        Fit on a seeded sample of this many training rows.
    """
    if isinstance(pipeline, (str, os.PathLike, SearchConfig)):
        return explain_search(pipeline, candidate=candidate, fold=fold, rows=rows)
    if X is None:
        raise ArgumentError("X", "give the rows to fit the pipeline on (or a search config instead of a pipeline)")
    if rows is not None and rows < len(X):
        picked = np.sort(np.random.default_rng(seed).choice(len(X), size=rows, replace=False))
        X, y = _safe_indexing(X, picked), None if y is None else _safe_indexing(y, picked)
    test = X if X_test is None else X_test
    walker = Walker(y)
    walker.node(pipeline, X, test, names_of(X, None), "", 0, final=True)
    where = "the same rows" if X_test is None else f"{len(test):,} test rows"
    return Explanation(tuple(walker.steps), f"fitted on {len(X):,} rows x {width_of(X)} columns; transforms timed on {where}")


def explain_search(config: Any, candidate: str | None = None, fold: int = 0, rows: int | None = None) -> Explanation:
    """:func:`explain` of a search config's pipeline on one of its folds, with a candidate's params."""
    from gridsearch.search.prepare import prepare_search
    from kampai.ids import matching

    search = prepare_search(config)
    params: dict[str, Any] = {}
    what = "the pipeline as the config builds it"
    if candidate is not None:
        found = matching([c.id for c in search.candidates], candidate)
        if len(found) != 1:
            problem = "is ambiguous" if found else "matches none"
            raise ArgumentError("candidate", f"{candidate!r} {problem} of the {len(search.candidates)} candidates of "
                                             f"{search.config.source}; copy an id from 'python -m gridsearch top {search.log_path}'")
        chosen = next(c for c in search.candidates if c.id == found[0])
        params, what = dict(chosen.params), f"candidate {chosen.id}"
    explanation = explain_fold(search.inputs, params, fold, rows)
    return Explanation(explanation.steps, f"{search.config.source}, {what}, fold {fold}: {explanation.data}")


def explain_fold(inputs: Any, params: dict[str, Any], fold: int, rows: int | None) -> Explanation:
    """:func:`explain` of ``inputs.pipeline`` with ``params`` (config values) on fold ``fold`` of ``inputs.dataset``."""
    from gridsearch.search.space import resolve, step_names

    folds = len(inputs.dataset.folds)
    if not 0 <= fold < folds:
        raise ArgumentError("fold", f"expected 0 to {folds - 1} (the search has {folds} folds), found {fold}")
    pipeline = clone(inputs.pipeline)
    try:
        pipeline.set_params(**resolve(params, step_names(pipeline)))
    except (ValueError, TypeError) as exc:
        raise GridsearchError(f"cannot set the candidate's params on the pipeline: {exc}") from None
    X_train, y_train, X_test, _ = inputs.dataset.fold(fold)
    return explain(pipeline, X_train, y_train, X_test, rows=rows)


def _columns_text(count: int | None, names: tuple[str, ...]) -> str:
    return "" if count is None else f"{count}: {_first(names, count)}" if names else str(count)


def _shape(shape: tuple[int, ...] | None) -> str:
    return "" if shape is None else " x ".join(f"{n:,}" for n in shape)


def _first(names: tuple[str, ...], total: int) -> str:
    return ", ".join(names) + (", ..." if names and total > len(names) else "")


def _share(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.1%}"


def _ms(seconds: float) -> str:
    return "" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def _bytes(value: int | None) -> str:
    if value is None:
        return ""
    return f"{value / 2**20:.1f} MiB" if value >= 2**20 else f"{value / 1024:.1f} KiB"
