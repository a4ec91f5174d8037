"""The Dash callbacks, kept thin: unpack, call `app.views`, return.

- `update`: any control, a click, or the URL itself (page load, back/forward)
  -> the next URL, the control values and the whole page, in one round trip.
  The URL is the single source of truth (`views.next_state` maps the event to the
  next view, `views.render_page` draws it). Clicks are consumed by resetting the
  graph's clickData, so clicking the same cell twice works. The clause dropdown
  gets its options together with its value (a value set before its options would
  be cleared by the dropdown). Figures go only as far as they changed
  (`views.figure_updates`, with digests of what the browser draws kept in the
  `drawn` store): selecting a clause sends the heatmaps' layout, not their data.
- `filter_runs`: the picker's filters -> the run dropdown's options.
"""

from __future__ import annotations

from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, no_update

from app import panels
from app.data import FILTERS, MODELS, Explorer
from app.layout import filter_id
from app.views import (CLICK_GRAPHS, GRAPH_KINDS, clause_options, figure_updates, graph_id, next_state, render_page,
                       run_options)

__all__ = ["register_callbacks", "CONTROLS", "RENDER_GRAPHS"]

CONTROLS = ("run", "clause", "threshold", "view")
RENDER_GRAPHS = [graph_id(n, k) for n in MODELS for k in GRAPH_KINDS] + ["capacity"]


def register_callbacks(app: Dash, explorer: Explorer) -> None:
    outputs = [
        Output("url", "search"),
        *(Output(c, "value") for c in CONTROLS),
        Output("clause", "options"),
        *(Output(g, "clickData") for g in CLICK_GRAPHS),
        Output("messages", "children"),
        Output("run-summary", "children"),
        *(Output(g, "figure") for g in RENDER_GRAPHS),
        Output("metrics", "children"),
        Output("clause-detail", "children"),
        Output("clause-table", "children"),
        Output("drawn", "data"),
    ]

    @app.callback(
        *outputs,
        Input("url", "search"),
        *(Input(c, "value") for c in CONTROLS),
        *(Input(g, "clickData") for g in CLICK_GRAPHS),
        Input({"type": panels.ROW_TYPE, "index": ALL}, "n_clicks"),
        State("drawn", "data"),
    )
    def update(search, *args):
        drawn = args[-1]
        if search is None:  # the Location has not reported the address yet
            return (no_update,) * len(outputs)
        trigger = ctx.triggered_id
        value = ctx.triggered[0]["value"] if ctx.triggered else None
        state = next_state(explorer, search, trigger, value)
        if state is None:
            return (no_update,) * len(outputs)
        new_search = state.to_search()
        page = render_page(explorer, new_search)
        figs, digests = figure_updates(page.figures, drawn)
        return (
            new_search if new_search != search else no_update,
            state.run, state.clause, state.threshold, state.view, clause_options(explorer, state.run),
            *(None if g == trigger else no_update for g in CLICK_GRAPHS),
            panels.messages(page.messages), page.summary,
            *(figs[g] for g in RENDER_GRAPHS),
            page.metrics, page.detail, page.table, digests,
        )

    @app.callback(
        Output("run", "options"),
        *(Input(filter_id(f), "value") for f in FILTERS),
        State("run", "value"),
        prevent_initial_call=True,
    )
    def filter_runs(*args: Any):
        *values, current = args
        return run_options(explorer, dict(zip(FILTERS, values)), current)
