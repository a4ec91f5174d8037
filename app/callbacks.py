"""The Dash callbacks, kept thin: unpack, call `app.views`, return.

- `update`: any control, a click, or the URL itself (page load, back/forward)
  -> the next URL, the control values and the whole page, in one round trip.
  The URL is the single source of truth (`views.next_state` maps the event to the
  next view, `views.render_page` draws it); while the URL has bad fields it is
  kept as the user sent it (the page says which field, what was sent and what is
  used instead) until a control changes. Clicks are consumed by resetting the
  graph's clickData, so clicking the same cell twice works. The clause dropdown
  gets its options together with its value. Figures go only as far as they
  changed (`views.figure_updates`, with digests of what the browser draws kept in
  the `drawn` store): selecting a clause sends no figure, only the highlight
  (the `highlight` store), which the clientside callback draws with
  `Plotly.relayout` / `restyle` (assets/highlight.js); panels that did not
  change (the clause table, the metrics) are not sent either
  (`views.part_updates`), and the table's selected row is marked in the browser.
- `prove`: a network's "prove from the weights" button -> its certified static
  reading (and cascade), in its own request, so the page stays responsive while it
  is read (seconds a network; then cached).
- `filter_runs`: the picker's filters and search -> the run and compare options.
"""

from __future__ import annotations

import itertools
from typing import Any

from dash import ALL, MATCH, ClientsideFunction, Dash, Input, Output, State, ctx, no_update

from analyses.entries import FILTERS, MODELS
from app import panels
from app.cache import Explorer
from app.layout import filter_id
from app.state import AUTO
from app.views import (
    CLICK_GRAPHS,
    COMPARE_KINDS,
    RENDER_GRAPHS,
    clause_options,
    figure_updates,
    layer_options,
    next_state,
    part_updates,
    proved_panel,
    render_page,
    run_options,
)

__all__ = ["CONTROLS", "RENDER_GRAPHS", "register_callbacks"]

CONTROLS = ("run", "clause", "threshold", "view", "layer", "compare")
_HIDDEN = {"display": "none"}
#: The compared run's parts interleaved with the run's rows (ids `b-<part>`).
_COMPARE_PARTS = ("titles", *(f"row-{k}" for k in COMPARE_KINDS))
_seq = itertools.count(1)


def _slots_class(titles: dict[str, str], keep_width: bool = False) -> str:
    """`slots-<present slots>`: the stylesheet hides the columns of networks a run
    does not have (a single model gets the full width). `keep_width`: hidden
    columns keep their place (`keep-`), so a compared run's columns stay under
    the run's own."""
    present = [n for n in MODELS if titles.get(n)]
    return ("keep-" if keep_width else "slots-") + "-".join(present or list(MODELS))


def register_callbacks(app: Dash, explorer: Explorer) -> None:
    """Every callback of the explorer: the page, the highlights, proving on request and
    the run filters."""
    _register_page(app, explorer)
    _register_clientside(app)
    _register_prove(app, explorer)
    _register_run_filter(app, explorer)


def _page_outputs() -> list[Output]:
    """What the page callback writes, in the order it returns them."""
    return [
        Output("url", "search"),
        *(Output(c, "value") for c in CONTROLS),
        Output("threshold-auto", "value"),
        Output("threshold", "disabled"),
        Output("clause", "options"),
        Output("layer", "options"),
        *(Output(g, "clickData") for g in CLICK_GRAPHS),
        Output("messages", "children"),
        Output("run-summary", "children"),
        Output("compare-summary", "children"),
        *(Output(g, "figure") for g in RENDER_GRAPHS),
        Output("metrics", "children"),
        Output("compare-metrics", "children"),
        Output("clause-detail", "children"),
        Output("clause-table", "children"),
        Output("decoded", "children"),
        *(Output(f"{p}col-title-{n}", "children") for p in ("", "b-") for n in MODELS),
        Output("clauses-section", "style"),
        Output("network-graphs", "style"),
        Output("compare-section", "style"),
        Output("run-rows", "className"),
        *(Output(f"b-{part}", prop) for part in _COMPARE_PARTS for prop in ("style", "className")),
        Output("compare-head", "style"),
        Output("legend-weights", "children"),
        Output("empty-state", "children"),
        Output("drawn", "data"),
        Output("highlight", "data"),
    ]


def _register_page(app: Dash, explorer: Explorer) -> None:
    """The page: every control, click and address change renders the next state."""
    outputs = _page_outputs()

    @app.callback(
        *outputs,
        Input("url", "search"),
        *(Input(c, "value") for c in CONTROLS),
        Input("threshold-auto", "value"),
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
        # on a page load the URL as sent (its bad fields become messages), else the next state
        page = render_page(explorer, search if trigger in (None, "url") else state.to_search())
        shown = page.state or state
        new_search = shown.to_search()
        if trigger in (None, "url") and page.url_problems:
            new_search = search  # keep what the user sent until they change a control
        auto = shown.threshold == AUTO  # the slider keeps its last fraction, greyed out
        figs, highlights, digests = figure_updates(page.figures, drawn)
        parts, part_digests = part_updates({
            "clause-options": clause_options(explorer, shown.run), "layer-options": layer_options(page.n_layers),
            "metrics": page.metrics, "compare-metrics": page.compare_metrics, "table": page.table,
            "decoded": page.decoded, "legend": page.legend,
            "summary": page.summary, "compare-summary": page.compare_summary,
            # control values go only when they change: each one sent re-renders its component
            **{f"value:{c}": getattr(shown, c) for c in CONTROLS if c != "threshold"},
            "value:threshold": no_update if auto else shown.threshold,
            "threshold-auto": [AUTO] if auto else [], "threshold-disabled": auto,
        }, drawn)
        digests.update(part_digests)
        a = page.analysis
        clauses = _HIDDEN if a is not None and not page.has_clauses else {}
        return (
            new_search if new_search != search else no_update,
            *(parts[f"value:{c}"] for c in CONTROLS),
            parts["threshold-auto"], parts["threshold-disabled"],
            parts["clause-options"], parts["layer-options"],
            *(None if g == trigger else no_update for g in CLICK_GRAPHS),
            panels.messages(page.messages), parts["summary"], parts["compare-summary"],
            *(figs[g] for g in RENDER_GRAPHS),
            parts["metrics"], parts["compare-metrics"], page.detail, parts["table"], parts["decoded"],
            *(page.titles.get(n, "") or "—" for n in MODELS),
            *(page.compare_titles.get(n, "") or "same network as above" for n in MODELS),
            clauses, clauses, {} if page.compare is not None else _HIDDEN,
            _slots_class(page.titles) + ("" if a is not None else " empty"),
            *(v for _ in _COMPARE_PARTS for v in (
                {} if page.compare is not None else _HIDDEN,
                "compare-row " + _slots_class(page.compare_titles, page.compare is not None))),
            {} if page.compare is not None else _HIDDEN,
            parts["legend"],
            page.empty,
            digests,
            {"seq": next(_seq), "graphs": highlights} if highlights else no_update,
        )


def _register_clientside(app: Dash) -> None:
    """Highlights and the selected table row, drawn in the browser."""
    app.clientside_callback(ClientsideFunction(namespace="fci", function_name="highlight"),
                            Output("highlight-done", "data"), Input("highlight", "data"), prevent_initial_call=True)
    app.clientside_callback(ClientsideFunction(namespace="fci", function_name="selectRow"),
                            Output("row-selected", "data"), Input("clause", "value"), Input("clause-table", "children"))


def _register_prove(app: Dash, explorer: Explorer) -> None:
    """The certified reading of one network, on request (its button), in its own request."""
    @app.callback(
        Output({"type": panels.PROVED_BODY, "run": MATCH, "slot": MATCH}, "children"),
        Input({"type": panels.PROVED_TYPE, "run": MATCH, "slot": MATCH}, "n_clicks"),
        prevent_initial_call=True,
    )
    def prove(n_clicks):
        if not n_clicks:
            return no_update
        key = ctx.triggered_id
        return proved_panel(explorer, key["run"], key["slot"])


def _register_run_filter(app: Dash, explorer: Explorer) -> None:
    """The run list, filtered by the catalogue's facets and a search."""
    @app.callback(
        Output("run", "options"),
        Output("compare", "options"),
        Output("run-count", "children"),
        *(Input(filter_id(f), "value") for f in FILTERS),
        Input("run-search", "value"),
        Input("run", "value"),  # the current run is always listed, even beyond the first MAX_OPTIONS
        Input("compare", "value"),
        prevent_initial_call=True,
    )
    def filter_runs(*args: Any):
        *values, query, current, other = args
        filters = dict(zip(FILTERS, values))
        cat = explorer.catalogue()
        n = len(cat.select(query, **filters))
        options = run_options(explorer, filters, current, query)
        extra = " (and the current run)" if current and all(o["value"] != current for o in run_options(
            explorer, filters, None, query)) and cat.get(current) is not None else ""
        return (options, run_options(explorer, filters, other, query),
                f"run ({n} of {len(cat.runs)} match{extra}, grouped by study and dataset)")
