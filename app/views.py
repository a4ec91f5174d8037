"""What the callbacks do, as plain functions: turn the URL into a page, and an
input event into the next URL. The Dash callbacks (`app.callbacks`) only unpack
their arguments, call these and return the result.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from dash import Patch, no_update

from app import figures, panels
from app.data import MODELS, Explorer, RunAnalysis, RunError
from app.state import THRESHOLD_MAX, ViewState

__all__ = ["GRAPH_KINDS", "graph_id", "CLICK_GRAPHS", "Page", "render_page", "figure_updates", "next_state",
           "clause_options", "run_options"]

log = logging.getLogger(__name__)

#: Per-network graphs, each shown for parent, child and dense baseline.
GRAPH_KINDS = ("weights", "gram", "poly", "collisions")


def graph_id(network: str, kind: str) -> str:
    return f"{network}-{kind}"


#: Graphs whose clicks select a clause.
CLICK_GRAPHS = [graph_id(n, k) for n in MODELS for k in ("weights", "gram", "collisions")] + ["capacity"]


@dataclass
class Page:
    """Everything the render callback writes."""

    messages: list[tuple[str, str]] = field(default_factory=list)
    summary: str = ""
    figures: dict[str, figures.Figure] = field(default_factory=dict)  # graph id -> figure
    metrics: Any = None
    detail: Any = None
    table: Any = None
    analysis: RunAnalysis | None = None
    state: ViewState | None = None


def _blank(message: str) -> dict[str, figures.Figure]:
    out = {graph_id(n, k): figures.empty_figure(message if k == "weights" else "") for n in MODELS for k in GRAPH_KINDS}
    out["capacity"] = figures.empty_figure("")
    return out


def render_page(explorer: Explorer, search: str | None) -> Page:
    """The page for a URL query string. Never raises: an unknown run, a corrupt
    entry or a bad URL field becomes a message in the page."""
    state, problems = ViewState.from_search(search)
    notes = [("warning", p) for p in problems]
    try:
        return _render(explorer, state, notes)
    except Exception as e:  # the server must answer every request
        log.exception("rendering %r failed", search)
        return Page(messages=notes + [("error", f"Internal error while drawing this view: {type(e).__name__}: {e}")],
                    figures=_blank("internal error"), state=state)


def _render(explorer: Explorer, state: ViewState, notes: list[tuple[str, str]]) -> Page:
    cat = explorer.catalogue()
    if state.run is None:
        if not cat.runs:
            msg = f"No runs in {explorer.store.dir}. Start `python -m app` on an empty store to train the demo."
            return Page(messages=notes + [("error", msg)], figures=_blank("no runs"), state=state)
        state = state.with_(run=cat.runs[0].id)
    try:
        analysis = explorer.analysis(state.run, state.threshold)
    except RunError as e:
        return Page(messages=notes + [("error", f"Cannot show run {state.run!r}: {e}. Pick a run above.")],
                    figures=_blank("run not available"), state=state)
    run = analysis.run
    clause = state.clause
    if clause is not None and clause >= run.n_clauses:
        notes.append(("warning", f"clause {clause} is out of range: this task has clauses 0..{run.n_clauses - 1}"))
        clause = None
    figs = {}
    for name, kinds in figures.model_figures(analysis, clause, state.view).items():
        for kind, fig in kinds.items():
            figs[graph_id(name, kind)] = fig
    figs["capacity"] = figures.capacity_figure(analysis, clause)
    return Page(
        messages=notes,
        summary=panels.run_summary(analysis),
        figures=figs,
        metrics=panels.metrics_table(analysis),
        detail=panels.clause_detail(analysis, clause),
        table=panels.clause_table(analysis, clause),
        analysis=analysis,
        state=state.with_(clause=clause),
    )


def _digest(part: Any) -> str:
    return hashlib.sha1(json.dumps(part, separators=(",", ":")).encode()).hexdigest()


def figure_updates(figs: dict[str, figures.Figure], drawn: dict[str, list[str]] | None
                   ) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """What to send for each figure, given digests of what the browser already
    draws (`drawn`: graph id -> [data digest, layout digest]). An unchanged figure
    is not sent (`no_update`); one whose data are unchanged (a heatmap when only
    the selected clause changed) goes as a `Patch` of its layout, so plotly.js
    moves the highlight instead of receiving the matrix again; the rest go whole.
    Returns (updates, new digests)."""
    drawn = drawn or {}
    updates, digests = {}, {}
    for gid, fig in figs.items():
        digests[gid] = [_digest(fig["data"]), _digest(fig["layout"])]
        old = drawn.get(gid)
        if old == digests[gid]:
            updates[gid] = no_update
        elif old is not None and old[0] == digests[gid][0]:
            patch = Patch()
            patch["layout"] = fig["layout"]
            updates[gid] = patch
        else:
            updates[gid] = fig
    return updates, digests


def _clicked_clause(explorer: Explorer, state: ViewState, source: str, click: Any) -> int | None:
    """The clause a click on a graph points at, or None."""
    if not click or not click.get("points") or state.run is None:
        return None
    point = click["points"][0]
    if source == "capacity":
        x = str(point.get("x", ""))
        return int(x[1:]) if x.startswith("c") and x[1:].isdigit() else None
    if source.endswith("-collisions"):
        c = point.get("customdata")
        return int(c) if isinstance(c, (int, float)) else None
    try:
        run = explorer.run(state.run)
    except RunError:
        return None
    return run.clause_at_column(str(point.get("x", "")))


def next_state(explorer: Explorer, search: str | None, trigger: Any, value: Any) -> ViewState | None:
    """The view after an input event, or None when the event changes nothing.

    trigger: the id of the component that fired (None or "url" on page load or
    history navigation, where the URL wins; a control id; a graph id for a click;
    or a clause-row dict); value: its new value."""
    state, _ = ViewState.from_search(search)
    if trigger is None or trigger == "url":
        if state.run is None:
            runs = explorer.catalogue().runs
            state = state.with_(run=runs[0].id if runs else None)
        return state
    if isinstance(trigger, dict):
        if trigger.get("type") == panels.ROW_TYPE and value:
            return state.with_(clause=int(trigger["index"]))
        return None
    if trigger == "run":
        return state.with_(run=value) if value and value != state.run else None
    if trigger == "clause":
        return state.with_(clause=None if value is None else int(value))
    if trigger == "threshold":
        try:
            t = min(max(float(value), 0.0), THRESHOLD_MAX)
        except (TypeError, ValueError):
            return None
        return state.with_(threshold=t)
    if trigger == "view":
        return state.with_(view=value) if value in ("weights", "codes") else None
    if trigger in CLICK_GRAPHS:
        c = _clicked_clause(explorer, state, trigger, value)
        return None if c is None else state.with_(clause=c)
    return None


def clause_options(explorer: Explorer, run_id: str | None) -> list[dict[str, Any]]:
    """Clause dropdown options of a run (none when it cannot be loaded)."""
    try:
        run = explorer.run(run_id) if run_id else None
    except RunError:
        run = None
    return [] if run is None else [{"label": f"c{c}: {run.clause_label(c)}", "value": c} for c in range(run.n_clauses)]


def run_options(explorer: Explorer, filters: dict[str, Any], current: str | None) -> list[dict[str, str]]:
    """Run dropdown options matching the filters (the current run always kept)."""
    cat = explorer.catalogue()
    runs = cat.select(**filters)
    if current and all(r.id != current for r in runs) and cat.get(current) is not None:
        runs = [cat.get(current), *runs]
    return [{"label": r.label, "value": r.id} for r in runs]
