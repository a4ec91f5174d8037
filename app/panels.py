"""HTML panels: pure functions from explorer data (`app.data`) to Dash components.

- `metrics_table`: network-level figures of the three networks side by side;
- `clause_detail`: the selected clause, before and after splitting;
- `clause_table`: every clause with the same figures; rows are clickable
  (id `{"type": "clause-row", "index": c}`) and the selected row has class
  `selected`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from dash import html

from app.data import ModelData, RunAnalysis

__all__ = ["ROW_TYPE", "clause_detail", "clause_table", "decoded_readings", "messages", "metrics_table", "run_summary"]

ROW_TYPE = "clause-row"


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _neurons(model: ModelData, ids: Sequence[int]) -> str:
    return ", ".join(model.neuron_label(int(i)) for i in ids) if len(ids) else "none"


def _channel_cell(text: str) -> html.Td:
    """A channel cell: the neurons in the highlight colour, "none" in plain grey."""
    return html.Td(text, className="channel-none" if text == "none" else "channel")


def messages(items: Sequence[tuple[str, str]]) -> list[html.Div]:
    """(level, text) pairs as banners; level is "error", "warning" or "info"."""
    return [html.Div(text, className=f"msg msg-{level}") for level, text in items]


def run_summary(analysis: RunAnalysis) -> str:
    info = analysis.run.info
    w, f = info.epochs
    if info.study in ("fpe", "real_data", "structured_sparsity"):
        what = (f"{info.split} child, α={info.alpha}, of a {info.hidden}-neuron parent · {w} dense epochs, then {f} "
                "after expansion")
    else:
        what = f"{info.split} · hidden {info.hidden} · {w + f} epochs"
    return (f"{info.study} · dataset {info.dataset} · {what} · task {info.task} · trial {info.trial} · run {info.id}")


def metrics_table(analysis: RunAnalysis, table_id: str = "metrics-table") -> html.Table:
    """Accuracy, nnz, feature capacity and cosine interference (per layer) of each
    network of the run, and on a Boolean task the decoded-circuit agreement, the
    decoded clauses and the channel counts."""
    run = analysis.run
    names = list(run.models)
    m = run.models

    def row(label: str, values: list[str], title: str = "") -> html.Tr:
        return html.Tr([html.Th(label, title=title), *(html.Td(v) for v in values)])

    L = max(x.n_hidden_layers for x in m.values())
    body = [
        row("test accuracy", [_fmt(m[n].accuracy) for n in names]),
        row("nnz (weights + biases)", [str(m[n].nnz) for n in names], "non-zero effective parameters"),
        row("mean feature capacity" + (" (clause variables)" if run.has_clauses else ""),
            [_fmt(m[n].mean_capacity) for n in names], "first layer"),
    ]
    for l in range(L):
        body.append(row(f"cosine interference, layer {l + 1}" if L > 1 else "cosine interference",
                        [_fmt(m[n].cosine_of(l)) if l < m[n].n_hidden_layers else "—"
                         for n in names], "mean |cos| over pairs of non-zero neuron rows"))
    if run.has_clauses:
        c = analysis.codes
        C = run.n_clauses
        body += [
            row("decoded-circuit agreement", [_fmt(c[n].agreement) for n in names],
                "the circuit decoded from the weights alone vs the network's own test-set outputs"),
            row("decoded clauses (recovery F1)", [f"{c[n].n_decoded} ({_fmt(c[n].recovery_f1, 2)})" for n in names]),
            row("clauses with a channel", [f"{sum(1 for r in c[n].rows if r['channel'])} / {C}" for n in names]),
            row("collisions", [str(c[n].graph.number_of_edges()) for n in names],
                "pairs of clauses whose channels share a neuron"),
        ]
    head = html.Tr([html.Th(""), *(html.Th(m[n].title) for n in names)])
    return html.Table([html.Thead(head), html.Tbody(body)], className="metrics", id=table_id)


def decoded_readings(analysis: RunAnalysis) -> list[Any]:
    """The place of the decoded readings (per clause: its channel's decoded term;
    per network: the decoded terms with their precision; the circuit's agreement
    beside the ceiling). For now the numbers of the current `fci.codes` decoding;
    the per-clause decoded terms come with the decoding issue."""
    run = analysis.run
    if not run.has_clauses:
        return [html.P("No clauses on this dataset: decoding reads Boolean tasks only.", className="note")]
    c = analysis.codes
    items = [html.Li(f"{run.models[n].title}: {c[n].n_decoded} decoded clauses, recovery F1 "
                     f"{_fmt(c[n].recovery_f1, 2)}, circuit agreement {_fmt(c[n].agreement)}") for n in run.models]
    return [html.Ul(items), html.P("Per-clause decoded terms and their precision, and the agreement ceiling (the OR "
                                   "of the true clauses): pending the decoding issue.", className="note",
                                   id="decoded-terms-pending")]


def _carriers(analysis: RunAnalysis, c: int) -> str:
    if analysis.split is None:
        return "—"
    view = analysis.split[c]
    child = analysis.run.models["child"]
    parts = [f"p{p} → {_neurons(child, kids)}" for p, kids in view.children_carrying_whole.items() if kids]
    if parts:
        return "; ".join(parts)
    return "no parent channel" if not view.parent_channel else "none: split across children"


def _collisions(analysis: RunAnalysis, name: str, c: int) -> str:
    g = analysis.codes[name].graph
    parts = [f"c{o} ({g[c][o].get('weight', 1)} shared)" for o in sorted(g[c])]
    return ", ".join(parts) or "none"


def _readout(analysis: RunAnalysis, name: str, c: int) -> str:
    r = analysis.codes[name].rows[c]
    return ", ".join(f"y{o} ({r['votes'][o]} vote{'s' if r['votes'][o] != 1 else ''})" for o in r["readout"]) or "none"


def clause_detail(analysis: RunAnalysis, clause: int | None) -> list[Any]:
    """The selected clause: literals, channel before and after (and in the dense
    baseline), which children carry it whole, collisions, capacity and readout."""
    run = analysis.run
    if not run.has_clauses:
        return [html.P(f"The {run.info.dataset} data have no clauses: the rows above show the weights, Gram "
                       "matrices, readout and capacity of each network; clause channels are defined on Boolean "
                       "tasks only.", id="clause-title")]
    if clause is None:
        return [html.P("Pick a clause (dropdown, a click on a heatmap, the graph or the table).")]
    names = list(run.models)

    def row(label: str, cells: list[Any]) -> html.Tr:
        return html.Tr([html.Th(label), *cells])

    channels = [_channel_cell(_neurons(run.models[n], analysis.codes[n].rows[clause]["channel"])) for n in names]
    body = [
        row("channel", channels),
        row("collisions", [html.Td(_collisions(analysis, n, clause)) for n in names]),
        row("feature capacity", [html.Td(_fmt(analysis.codes[n].rows[clause]["capacity"])) for n in names]),
        row("readout", [html.Td(_readout(analysis, n, clause)) for n in names]),
    ]
    out = [
        html.H3([f"Clause c{clause}: ", html.Span(run.clause_label(clause), className="literals")], id="clause-title"),
        html.Table([html.Thead(html.Tr([html.Th(""), *(html.Th(run.models[n].title) for n in names)])),
                    html.Tbody(body)], className="detail"),
    ]
    if analysis.split is not None:
        view = analysis.split[clause]
        child = run.models["child"]
        out += [html.H4("What splitting did"), html.Ul([
            html.Li(["children carrying it whole: ", html.Span(_carriers(analysis, clause), id="clause-carriers")]),
            html.Li(f"child channel neurons whose parent was in the channel (preserved): "
                    f"{_neurons(child, view.preserved)}"),
            html.Li(f"new in the child: {_neurons(child, view.new)}"),
            html.Li(f"parent channel neurons lost (no child in the channel): "
                    f"{', '.join(f'h{p}' for p in view.lost) or 'none'}"),
        ])]
    return out


def clause_table(analysis: RunAnalysis, clause: int | None) -> html.Table:
    """All clauses with their channels (per network), the children carrying them
    whole, collisions and capacity; click a row to select it."""
    run = analysis.run
    m, c = run.models, analysis.codes
    names = list(m)
    main = "child" if "child" in m else names[0]
    head = html.Tr([html.Th(h) for h in (
        "clause", "literals", *(f"channel: {n}" for n in names), "carried whole by",
        f"collisions ({main})", "capacity " + " / ".join(n[0] for n in names), f"readout ({main})")])
    rows = []
    for j in range(run.n_clauses):
        cells = [
            html.Td(f"c{j}"),
            html.Td(run.clause_label(j)),
            *(_channel_cell(_neurons(m[n], c[n].rows[j]["channel"])) for n in names),
            html.Td(_carriers(analysis, j)),
            html.Td(", ".join(f"c{o}" for o in c[main].rows[j]["collisions"]) or "none"),
            html.Td(" / ".join(_fmt(c[n].rows[j]["capacity"], 2) for n in names)),
            html.Td(_readout(analysis, main, j)),
        ]
        rows.append(html.Tr(cells, id={"type": ROW_TYPE, "index": j}, n_clicks=0,
                            className="selected" if j == clause else ""))
    return html.Table([html.Thead(head), html.Tbody(rows)], className="clauses", id="clause-table-inner")
