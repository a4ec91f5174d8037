"""The page skeleton. Built per page load (so the run picker sees runs stored since
the server started); every dynamic part is filled by the callbacks."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from analyses.entries import FILTERS, MODELS
from app import panels
from app.cache import Explorer
from app.catalogue import Catalogue
from app.figures import empty_figure
from app.state import AUTO, DEFAULT_FRACTION, DEFAULT_THRESHOLD, THRESHOLD_MAX
from app.views import graph_id, run_options

__all__ = ["build_layout", "filter_id"]

_GRAPH_CONFIG: dcc.Graph.Config = {"displayModeBar": False}
_FILTER_NAMES = {"study": "study", "dataset": "dataset", "task": "task", "hidden": "hidden width", "alpha": "alpha",
                 "split": "split / kind", "trial": "trial"}


def filter_id(name: str) -> str:
    return f"filter-{name}"


_BLANK = empty_figure("", 40)


def _graph(gid: str) -> dcc.Graph:
    # a blank figure until the page callback draws one: never plotly's empty 0-4 axes
    return dcc.Graph(id=gid, config=_GRAPH_CONFIG, className="graph", figure=_BLANK)


def _picker(explorer: Explorer, cat: Catalogue) -> html.Div:
    filters = [
        html.Div([
            html.Label(_FILTER_NAMES[f]),
            dcc.Dropdown(id=filter_id(f), options=[{"label": str(v), "value": v} for v in cat.values(f)],
                         value=[], multi=True, placeholder="any"),
        ], className="filter")
        for f in FILTERS
    ]
    marks = {round(t / 10, 1): f"{t / 10:g}" for t in range(0, int(THRESHOLD_MAX * 10) + 1, 2)}
    options = run_options(explorer, {}, None)
    return html.Div([
        html.Div(filters, className="filters"),
        html.Div([
            html.Div([
                html.Label(["search runs (words of a run's label, fields separated by · or commas, e.g. ",
                            html.Code("H=16 · trial 4"), ")"]),
                dcc.Input(id="run-search", type="search", debounce=0.25, placeholder="H=16 · trial 4",
                          className="search"),
            ], className="search-box"),
            html.Div([
                html.Label(f"run ({len(cat.runs)} stored, grouped by study and dataset)", id="run-count"),
                dcc.Dropdown(id="run", options=options, clearable=False, placeholder="pick a run", searchable=False,
                             optionHeight=28, maxHeight=420),
            ], className="run-picker"),
        ], className="run-row"),
        html.Div([
            html.Div([html.Label("clause"), dcc.Dropdown(id="clause", options=[], placeholder="no clause")],
                     className="control clause-control"),
            html.Div([
                html.Label("sign threshold: auto (each neuron's own split of |w|) or a fraction of each neuron's "
                           "max|w|", id="threshold-label",
                           title="auto: per neuron, a two-cluster split of |w| (fci.codes' default); untick it to "
                                 "set a fraction of each neuron's own largest |w| with the slider"),
                html.Div([
                    dcc.Checklist(id="threshold-auto", options=[{"label": " auto", "value": AUTO}],
                                  value=[AUTO] if DEFAULT_THRESHOLD == AUTO else [], className="threshold-auto"),
                    html.Div(dcc.Slider(id="threshold", min=0, max=THRESHOLD_MAX, step=0.01, value=DEFAULT_FRACTION,
                                        marks=marks, updatemode="mouseup", disabled=DEFAULT_THRESHOLD == AUTO,
                                        tooltip={"placement": "top", "always_visible": False}),
                             className="threshold-slider"),
                ], className="threshold-row"),
            ], className="control threshold-control"),
            html.Div([
                html.Label("heatmaps show"),
                dcc.RadioItems(id="view", options=[{"label": " weights", "value": "weights"},
                                                   {"label": " literal sign codes", "value": "codes"},
                                                   {"label": " masks", "value": "masks"}],
                               value="weights", inline=True),
            ], className="control"),
            html.Div([html.Label("hidden layer"), dcc.Dropdown(id="layer", options=[{"label": "layer 1", "value": 0}],
                                                        value=0, clearable=False)], className="control"),
            html.Div([html.Label("compare with (second run, with its own baseline)"),
                      dcc.Dropdown(id="compare", options=options, placeholder="no comparison", optionHeight=28,
                                   searchable=False)],
                     className="control compare-control"),
        ], className="controls"),
    ], className="picker")


def _titles(prefix: str = "") -> html.Div:
    return html.Div([html.H3(MODELS[n], id=f"{prefix}col-title-{n}", className=f"col-title col-{n}") for n in MODELS],
                    className="columns")


def _row(kind: str, compare: bool = False) -> html.Div:
    """One graph of each network, side by side (every figure fits its column)."""
    return html.Div([html.Div(_graph(graph_id(n, kind, compare)), className="column") for n in MODELS],
                    className="columns")


def _pair(kind: str) -> list[Any]:
    """A row of the run, and right below it the same row of the compared run (hidden
    without a comparison), on the same colour scale: a comparison reads row by row."""
    return [_row(kind), html.Div([
        html.Div(f"compared run · {kind}", className="compare-tag"), _row(kind, True)],
        id=f"b-row-{kind}", className="compare-row", style={"display": "none"})]


def build_layout(explorer: Explorer) -> Any:
    """The layout for one page load."""
    cat = explorer.catalogue()
    return html.Div([
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="drawn", storage_type="memory"),  # digests of the figure data the browser draws
        dcc.Store(id="highlight", storage_type="memory"),  # clause highlights to apply in the browser
        dcc.Store(id="highlight-done", storage_type="memory"),
        dcc.Store(id="row-selected", storage_type="memory"),
        html.Header([
            html.H1("fci explorer"),
            html.Span("feature channels clause by clause, before and after Fixed Parameter Expansion",
                      className="subtitle"),
        ]),
        _picker(explorer, cat),
        html.Div(panels.messages([("warning", w) for w in cat.warnings] + [("info", n) for n in cat.notes]),
                 id="catalogue-warnings"),
        html.Div(id="messages"),
        html.Div(id="run-summary", className="summary"),
        html.Div(id="empty-state", className="empty-state"),
        html.Div([
            html.H2("Before / after: weights, Gram matrix and readout"),
            html.Div(id="legend-weights", className="legend"),
            _titles(),
            html.Div([html.Span("compared run: ", className="legend-key"), html.Span(id="compare-summary")],
                     id="compare-head", className="summary compare-head", style={"display": "none"}),
            html.Div(_titles("b-"), id="b-titles", className="compare-row", style={"display": "none"}),
            *_pair("weights"),
            *_pair("gram"),
            *_pair("readout"),
            html.Div([
                html.H2("Selected clause"),
                html.Div(id="clause-detail", className="detail-panel"),
            ], id="clause-section"),
            html.Div(_graph("capacity"), className="capacity-panel"),
            html.Div([
                html.H2("All clauses"),
                html.Div(id="clause-table", className="table-wrap"),
            ], id="clauses-section"),
            html.H2("Network"),
            html.Div(id="metrics", className="table-wrap"),
            html.H2("What each network computes, and what its weights prove"),
            html.Div(id="decoded", className="detail-panel"),
            html.Div([_row("poly"), _row("collisions")], id="network-graphs"),
        ], id="run-rows", className="slots-parent-child-dense"),
        html.Div([
            html.H2("Compared run: network"),
            html.Div(id="compare-metrics", className="table-wrap"),
        ], id="compare-section", style={"display": "none"}),
    ], className="page")
