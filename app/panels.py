"""HTML panels: pure functions from explorer data (`app.data`) to Dash components.

- `metrics_table`: network-level figures of the three networks side by side;
- `clause_detail`: the selected clause, before and after splitting;
- `clause_table`: every clause with the same figures; rows are clickable
  (id `{"type": "clause-row", "index": c}`) and the selected row has class
  `selected`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from dash import html

from app.data import MODELS, ModelData, RunAnalysis

__all__ = ["ROW_TYPE", "messages", "metrics_table", "clause_detail", "clause_table", "run_summary"]

ROW_TYPE = "clause-row"


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _neurons(model: ModelData, ids: Sequence[int]) -> str:
    return ", ".join(model.neuron_label(int(i)) for i in ids) if len(ids) else "none"


def messages(items: Sequence[tuple[str, str]]) -> list[html.Div]:
    """(level, text) pairs as banners; level is "error", "warning" or "info"."""
    return [html.Div(text, className=f"msg msg-{level}") for level, text in items]


def run_summary(analysis: RunAnalysis) -> str:
    info = analysis.run.info
    w, f = info.epochs
    return (f"{info.split}-split FPE, α={info.alpha}, of a {info.hidden}-neuron parent · task {info.task} · "
            f"trial {info.trial} · {w} dense epochs, then {f} after expansion · run {info.id}")


def metrics_table(analysis: RunAnalysis) -> html.Table:
    """Accuracy, nnz, mean feature capacity, cosine interference and decoded-circuit
    agreement of parent, child and dense baseline."""
    run = analysis.run
    names = list(run.models)

    def row(label: str, values: list[str], title: str = "") -> html.Tr:
        return html.Tr([html.Th(label, title=title), *(html.Td(v) for v in values)])

    m = run.models
    c = analysis.codes
    C = run.n_clauses
    body = [
        row("test accuracy", [_fmt(m[n].accuracy) for n in names]),
        row("nnz (weights + biases)", [str(m[n].nnz) for n in names], "non-zero effective parameters"),
        row("mean feature capacity", [_fmt(m[n].mean_capacity) for n in names], "mean over clause variables"),
        row("cosine interference", [_fmt(m[n].cosine) for n in names], "mean |cos| over pairs of non-zero neuron rows"),
        row("decoded-circuit agreement", [_fmt(c[n].agreement) for n in names],
            "the circuit decoded from the weights alone vs the network's own test-set outputs"),
        row("decoded clauses (recovery F1)", [f"{c[n].n_decoded} ({_fmt(c[n].recovery_f1, 2)})" for n in names]),
        row("clauses with a channel", [f"{sum(1 for r in c[n].rows if r['channel'])} / {C}" for n in names]),
        row("collisions", [str(c[n].graph.number_of_edges()) for n in names], "pairs of clauses whose channels share a neuron"),
    ]
    head = html.Tr([html.Th(""), *(html.Th(MODELS[n]) for n in names)])
    return html.Table([html.Thead(head), html.Tbody(body)], className="metrics", id="metrics-table")


def _carriers(analysis: RunAnalysis, c: int) -> str:
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
    if clause is None:
        return [html.P("Pick a clause (dropdown, a click on a heatmap, the graph or the table).")]
    run = analysis.run
    view = analysis.split[clause]
    names = list(run.models)

    def row(label: str, values: list[str], cls: str = "") -> html.Tr:
        return html.Tr([html.Th(label), *(html.Td(v, className=cls) for v in values)])

    channels = [_neurons(run.models[n], analysis.codes[n].rows[clause]["channel"]) for n in names]
    child = run.models["child"]
    body = [
        row("channel", channels, "channel"),
        row("collisions", [_collisions(analysis, n, clause) for n in names]),
        row("feature capacity", [_fmt(analysis.codes[n].rows[clause]["capacity"]) for n in names]),
        row("readout", [_readout(analysis, n, clause) for n in names]),
    ]
    split = html.Ul([
        html.Li(["children carrying it whole: ", html.Span(_carriers(analysis, clause), id="clause-carriers")]),
        html.Li(f"child channel neurons whose parent was in the channel (preserved): {_neurons(child, view.preserved)}"),
        html.Li(f"new in the child: {_neurons(child, view.new)}"),
        html.Li(f"parent channel neurons lost (no child in the channel): "
                f"{', '.join(f'h{p}' for p in view.lost) or 'none'}"),
    ])
    return [
        html.H3([f"Clause c{clause}: ", html.Span(view.label, className="literals")], id="clause-title"),
        html.Table([html.Thead(html.Tr([html.Th(""), *(html.Th(MODELS[n]) for n in names)])), html.Tbody(body)],
                   className="detail"),
        html.H4("What splitting did"),
        split,
    ]


def clause_table(analysis: RunAnalysis, clause: int | None) -> html.Table:
    """All clauses with their channels (parent / child / dense), the children
    carrying them whole, collisions and capacity; click a row to select it."""
    run = analysis.run
    m, c = run.models, analysis.codes
    head = html.Tr([html.Th(h) for h in (
        "clause", "literals", "channel: parent", "channel: child", "channel: dense", "carried whole by",
        "collisions (child)", "capacity p / c / d", "readout (child)")])
    rows = []
    for j in range(run.n_clauses):
        cells = [
            f"c{j}",
            run.clause_label(j),
            _neurons(m["parent"], c["parent"].rows[j]["channel"]),
            _neurons(m["child"], c["child"].rows[j]["channel"]),
            _neurons(m["dense"], c["dense"].rows[j]["channel"]),
            _carriers(analysis, j),
            ", ".join(f"c{o}" for o in c["child"].rows[j]["collisions"]) or "none",
            " / ".join(_fmt(c[n].rows[j]["capacity"], 2) for n in ("parent", "child", "dense")),
            _readout(analysis, "child", j),
        ]
        rows.append(html.Tr([html.Td(x) for x in cells], id={"type": ROW_TYPE, "index": j}, n_clicks=0,
                            className="selected" if j == clause else ""))
    return html.Table([html.Thead(head), html.Tbody(rows)], className="clauses", id="clause-table-inner")
