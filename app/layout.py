"""The page skeleton. Built per page load (so the run picker sees runs stored since
the server started); every dynamic part is filled by the callbacks."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from app import panels
from app.data import FILTERS, MODELS, Catalogue, Explorer
from app.state import DEFAULT_THRESHOLD, THRESHOLD_MAX
from app.views import graph_id

__all__ = ["build_layout", "filter_id"]

_GRAPH_CONFIG = {"displayModeBar": False}
_FILTER_NAMES = {"task": "task", "hidden": "hidden width", "alpha": "alpha", "split": "split", "trial": "trial"}


def filter_id(name: str) -> str:
    return f"filter-{name}"


def _graph(gid: str) -> dcc.Graph:
    return dcc.Graph(id=gid, config=_GRAPH_CONFIG, className="graph")


def _picker(cat: Catalogue) -> html.Div:
    filters = [
        html.Div([
            html.Label(_FILTER_NAMES[f]),
            dcc.Dropdown(id=filter_id(f), options=[{"label": str(v), "value": v} for v in cat.values(f)],
                         value=[], multi=True, placeholder="any"),
        ], className="filter")
        for f in FILTERS
    ]
    marks = {round(t / 10, 1): f"{t / 10:g}" for t in range(0, int(THRESHOLD_MAX * 10) + 1, 2)}
    return html.Div([
        html.Div(filters, className="filters"),
        html.Div([
            html.Label(f"run ({len(cat.runs)} stored)"),
            dcc.Dropdown(id="run", options=[{"label": r.label, "value": r.id} for r in cat.runs],
                         clearable=False, placeholder="pick a run"),
        ], className="run-picker"),
        html.Div([
            html.Div([html.Label("clause"), dcc.Dropdown(id="clause", options=[], placeholder="no clause")],
                     className="control clause-control"),
            html.Div([
                html.Label("sign threshold (fraction of max|W|)"),
                dcc.Slider(id="threshold", min=0, max=THRESHOLD_MAX, step=0.01, value=DEFAULT_THRESHOLD, marks=marks,
                           updatemode="mouseup", tooltip={"placement": "bottom", "always_visible": False}),
            ], className="control threshold-control"),
            html.Div([
                html.Label("heatmaps show"),
                dcc.RadioItems(id="view", options=[{"label": " weights", "value": "weights"},
                                                   {"label": " literal sign codes", "value": "codes"}],
                               value="weights", inline=True),
            ], className="control"),
        ], className="controls"),
    ], className="picker")


def _row(kind: str) -> html.Div:
    """One graph of each network, side by side."""
    return html.Div([html.Div(_graph(graph_id(n, kind)), className="column") for n in MODELS], className="columns")


def build_layout(explorer: Explorer) -> Any:
    """The layout for one page load."""
    cat = explorer.catalogue()
    return html.Div([
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="drawn", storage_type="memory"),  # digests of the figure data the browser draws
        html.Header([
            html.H1("fci explorer"),
            html.Span("feature channels clause by clause, before and after Fixed Parameter Expansion",
                      className="subtitle"),
        ]),
        _picker(cat),
        html.Div(panels.messages([("warning", w) for w in cat.warnings]), id="catalogue-warnings"),
        html.Div(id="messages"),
        html.Div(id="run-summary", className="summary"),
        html.Div([
            html.H2("Before / after: first-layer weights and Gram matrix"),
            html.Div([html.H3(MODELS[n], className=f"col-title col-{n}") for n in MODELS], className="columns"),
            _row("weights"),
            _row("gram"),
            html.H2("Selected clause"),
            html.Div([
                html.Div(id="clause-detail", className="detail-panel"),
                html.Div(_graph("capacity"), className="capacity-panel"),
            ], className="clause-row-panels"),
            html.H2("All clauses"),
            html.Div(id="clause-table", className="table-wrap"),
            html.H2("Network"),
            html.Div(id="metrics", className="table-wrap"),
            _row("poly"),
            _row("collisions"),
        ]),
    ], className="page")
