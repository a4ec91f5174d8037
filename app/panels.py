"""HTML panels: pure functions from explorer data (`app.runs`, `app.readings`) to Dash components.

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

from dash import dcc, html

from app.figures import CHANNEL_COLOR, CLAUSE_COLOR, MASK_COLOR, ROBUST_PERCENTILE
from app.readings import (
    CertifiedReading,
    NetworkReading,
    OutputReading,
    RunAnalysis,
    TermReading,
    certified_reading,
    network_reading,
)
from app.runs import LoadedRun, ModelData
from fci.codes import Cascade, Feature
from fci.tasks import format_clause

__all__ = ["FEATURE_TERMS", "PROVED_BODY", "PROVED_TYPE", "REFERENCE_HOVER", "ROW_TYPE", "certified_panel", "clause_detail",
           "clause_table", "decoded_readings", "legend", "messages", "metrics_table", "run_summary"]

ROW_TYPE = "clause-row"
#: Terms shown per cascade feature (the rest counted: "… (+k)").
FEATURE_TERMS = 4
#: The certified reading's lazy blocks: a `<details>` per network (`open` starts the
#: reading) and its body, ids {"type": ..., "run": run id, "slot": network}.
PROVED_TYPE = "proved-open"
PROVED_BODY = "proved-body"
#: What the reference is, wherever it is shown.
REFERENCE_HOVER = ("the task's true formula vs the network's own test-set outputs (for one output: the test "
                   "accuracy); a reference, not a bound: a reading of what the network computes may exceed it")


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _gap(agreement: float, reference: float) -> str:
    """A reading's gap to the reference, signed ("+0.004": it agrees better)."""
    if any(x is None or math.isnan(x) for x in (agreement, reference)):
        return "—"
    return f"{agreement - reference:+.3f}"


def _with_gap(agreement: float, reference: float) -> str:
    return _fmt(agreement) if math.isnan(agreement) else f"{_fmt(agreement)} ({_gap(agreement, reference)})"


def _neurons(model: ModelData, ids: Sequence[int]) -> str:
    return ", ".join(model.neuron_label(int(i)) for i in ids) if len(ids) else "none"


def _channel_cell(text: str) -> html.Td:
    """A channel cell: the neurons in the highlight colour, "none" in plain grey."""
    return html.Td(text, className="channel-none" if text == "none" else "channel")


def _swatch(color: str, text: str, symbol: str = "■", outline: bool = False) -> html.Span:
    style = {"color": color} if not outline else {"border": f"2px solid {color}", "padding": "0 5px", "color": "white"}
    return html.Span([html.Span(symbol, style=style, className="swatch"), " " + text], className="legend-item")


def legend(run: LoadedRun, view: str, layer: int) -> list[Any]:
    """What the heatmaps show for this run's kind, view and layer: only the
    encodings that are drawn."""
    first = next(iter(run.models.values()))
    pictures = view != "codes" and ((layer == 0 and len(run.image_shape) == 3 and not run.has_clauses)
                                    or (first.is_cnn and layer < len(first.channels)))
    unit = first.unit_name
    items: list[Any] = [html.Span("heatmaps: ", className="legend-key")]
    if view == "codes":
        items += [_swatch("#b2182b", "+1: the literal excites the neuron"), _swatch("#f7f7f7", "0", "□"),
                  _swatch("#2166ac", "−1: it inhibits"), html.Span("(sign codes at the sign threshold)")]
    elif view == "masks":
        items += [_swatch("#3b3b3b", "kept weight (a parameter)"), _swatch(MASK_COLOR, "masked: not a parameter")]
    else:
        items += [_swatch("#b2182b", "positive"), _swatch("#f7f7f7", "0", "□"), _swatch("#2166ac", "negative weight"),
                  html.Span(f"(one scale per row, shared by every network in it: ±max |value|, or the "
                            f"{ROBUST_PERCENTILE:g}th percentile of |value| when outliers would wash the rest out; "
                            "○ then marks the values beyond it, and the figure states the true range)"),
                  _swatch(MASK_COLOR, "masked: not a parameter")]
    if pictures:
        if first.is_cnn:
            C, k, _ = first.picture_shape(layer)
            items.append(html.Span(f"· each {unit} drawn as {C} image{'s' if C > 1 else ''} of {k}×{k} "
                                   f"(one per input channel); Gram and capacity of the flattened filters"))
        else:
            _, h, w = run.image_shape
            items.append(html.Span(f"· each {unit}'s input weights drawn as its {h}×{w} input image"))
    elif layer == 0 and run.has_clauses:
        items += [_swatch(CLAUSE_COLOR, "selected clause's literals", "▯"),
                  _swatch(CHANNEL_COLOR, "its channel neurons", "▭"),
                  html.Span("· dotted lines: clause blocks (columns), parent groups (rows)")]
    elif layer > 0:
        items.append(html.Span(f"· columns: the neurons of hidden layer {layer}"))
    return items


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
    network of the run, and on a Boolean task the test-set agreement with the
    network of the decoded function and of the static decode beside the
    true-formula agreement (the reference), the decoded terms and the channel counts."""
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
        readings = {n: _reading(run, n) for n in names}
        body += [
            row("true-formula agreement (the reference)", [_fmt(readings[n].reference) for n in names],
                REFERENCE_HOVER),
            row("agreement, decoded function (gap)", [_with_gap(readings[n].agreement, readings[n].reference)
                                                      for n in names],
                "decode_function's circuit (what the network computes) vs the network's own test-set outputs; "
                "the gap to the true-formula agreement in brackets (a reading may exceed it)"),
            row(f"agreement, static decode ({_threshold_text(analysis)}) (gap)",
                [_with_gap(c[n].agreement, readings[n].reference) for n in names],
                "the circuit the weights code (fci.codes.decode) vs the network's own test-set outputs; the gap to "
                "the true-formula agreement in brackets"),
            row("decoded terms, function (recovery F1)",
                [f"{len(circuit.clauses)} ({_fmt(readings[n].recovery_f1, 2)})"
                 if (circuit := readings[n].circuit) is not None else "—" for n in names]),
            row("decoded clauses, static (recovery F1)",
                [f"{c[n].n_decoded} ({_fmt(c[n].recovery_f1, 2)})" for n in names]),
            row("clauses with a channel", [f"{sum(1 for r in c[n].rows if r['channel'])} / {C}" for n in names]),
            row("collisions", [str(c[n].graph.number_of_edges()) for n in names],
                "pairs of clauses whose channels share a neuron"),
        ]
    head = html.Tr([html.Th(""), *(html.Th(m[n].title) for n in names)])
    return html.Table([html.Thead(head), html.Tbody(body)], className="metrics", id=table_id)


def _reading(run: LoadedRun, slot: str) -> NetworkReading:
    """A network's functional reading (the run has clauses)."""
    reading = network_reading(run, slot)
    assert reading is not None, "decoding reads Boolean tasks"
    return reading


def _threshold_text(analysis: RunAnalysis) -> str:
    t = analysis.threshold
    return "auto threshold" if isinstance(t, str) else f"threshold {t:g} of each neuron's max|w|"


#: Per form, how a decoded clause relates to a true one it is a subset of, what
#: joins an output's clauses, its constant when it has none, and what a clause is called.
_FORM_TEXT = {
    "dnf": {"subset": "fires on", "subset_title": "fewer literals than these true clauses: it holds wherever they do",
            "join": "an OR of terms", "absorbing": "⊤", "empty": "⊥", "unit": "term", "missed": "fires on"},
    "cnf": {"subset": "fails wherever", "subset_title": "fewer literals than these true clauses: it fails wherever "
                                                        "they fail", "join": "an AND of disjunctions",
            "absorbing": "⊥", "empty": "⊤", "unit": "clause", "missed": "fails on"},
}


def _term_relation(term: TermReading, form: str = "dnf") -> html.Td:
    """The true clause a decoded term is (= c3), or holds on (DNF: a subset of c3's
    literals fires wherever c3 holds; CNF: fails wherever c3 fails)."""
    if term.matches is not None:
        return html.Td(f"= c{term.matches}", className="term-match", title="exactly the true clause's literals")
    if term.broader:
        text = _FORM_TEXT[form]
        return html.Td(text["subset"] + " " + ", ".join(f"c{c}" for c in term.broader),
                       title=text["subset_title"])
    return html.Td("no true clause", className="term-other",
                   title="not a subset of any true clause of this output's literals")


def _output_reading(out: OutputReading, slot: str, many: bool, form: str = "dnf") -> list[Any]:
    text = _FORM_TEXT[form]
    items: list[Any] = []
    group = ", ".join(f"c{c}" for c in out.true_clauses) or "no clause"
    if many:
        items.append(html.H4(f"output {out.label} (true: {'AND' if form == 'cnf' else 'OR'} of {group})"))
    if out.constant:
        items.append(html.P(f"reads as {text['absorbing']}: the constant agrees with the network at least as well as "
                            f"{text['join']}", className="note"))
    elif not out.terms:
        items.append(html.P(f"no {text['unit']}: reads as {text['empty']} (constant)", className="note"))
    else:
        certified = any(t.certified for t in out.terms)  # the column only when some term is proved
        precision = ("P(output 1 | term), the other inputs uniform" if form == "dnf"
                     else "P(output 0 | clause fails), the other inputs uniform")
        head = html.Tr([html.Th(text["unit"]), html.Th("precision", title=precision),
                        *([html.Th("certified", title="proved wherever the term decides the output (interval "
                                                      "bounds or all inputs)")] if certified else []),
                        html.Th("true clause")])
        rows = [html.Tr([html.Td(t.text, className="term"), html.Td(_fmt(t.precision)),
                         *([html.Td("✓" if t.certified else "—")] if certified else []), _term_relation(t, form)])
                for t in out.terms]
        items.append(html.Table([html.Thead(head), html.Tbody(rows)], className="terms",
                                id=f"decoded-terms-{slot}-{out.output}"))
        if not certified:
            items.append(html.P(f"no {text['unit']} is certified: no interval bound or enumeration proves it on "
                                "every input", className="note"))
    ones = "1s" if form == "dnf" else "0s"
    items.append(html.P([
        html.Span(f"uncovered {'positive' if form == 'dnf' else 'negative'} mass {_fmt(out.uncovered)}",
                  className="uncovered"),
        (f" (of the inputs where the network outputs {ones[0]}, the fraction no {text['unit']} explains) · network "
         f"positive rate {_fmt(out.positive_rate)} · circuit agreement with the network {_fmt(out.sample_agreement)} "
         "(both on the reading's inputs, named above)")], id=f"decoded-uncovered-{slot}-{out.output}"))
    missed = ", ".join(f"c{c}" for c in out.missed)
    items.append(html.P([f"true clauses no {text['unit']} {text['missed']}: ",
                         html.Span(missed, className="missed") if missed else "none"],
                        id=f"decoded-missed-{slot}-{out.output}"))
    return items


def _agreement_line(label: str, agreement: float, reference: float, slot: str, kind: str) -> html.P:
    """`<label> 0.912 beside the true-formula agreement 0.905 (gap +0.007)`."""
    return html.P([
        "agreement with the network (test set): ", html.B(f"{label} {_fmt(agreement)}"),
        " beside the ", html.B(f"true-formula agreement {_fmt(reference)}", title=REFERENCE_HOVER),
        f" (gap {_gap(agreement, reference)})"], id=f"{kind}-agreement-{slot}")


def _function_reading(reading: NetworkReading, slot: str) -> list[Any]:
    """The functional reading of one network: form, input distribution, warnings, terms."""
    body: list[Any] = [_agreement_line("decoded function", reading.agreement, reading.reference, slot, "decoded")]
    circuit = reading.circuit
    if circuit is None:
        body.append(html.P(f"decode_function cannot read this network: {reading.reason}", className="note refused",
                           id=f"decoded-refused-{slot}"))
        return body
    unit = _FORM_TEXT[circuit.form]["unit"]
    body.append(html.P(
        f"{circuit.form.upper()} · inputs {circuit.distribution or 'uniform'} · {len(circuit.clauses)} {unit}s of ≤ "
        f"{circuit.max_literals} literals, recovery F1 {_fmt(reading.recovery_f1, 2)} against the true clauses · "
        f"decoded in {reading.seconds:.2f} s", className="note", id=f"decoded-form-{slot}"))
    for w in circuit.warnings:
        body.append(html.P(w, className="warning-line", id=f"decoded-warning-{slot}"))
    for out in reading.outputs:
        body += _output_reading(out, slot, len(reading.outputs) > 1, circuit.form)
    return body


def decoded_readings(run: LoadedRun) -> list[Any]:
    """Per network, what it computes (`fci.codes.decode_function`, in the task's
    form, with its input distribution and warnings): per output its decoded terms
    with their precision and certificates, which true clause each term is, which true
    clauses no term holds on, the uncovered mass; the circuit's test-set agreement
    beside the true-formula agreement, with the gap; and, read only when opened, what
    the weights prove (`certified_panel`). Independent of the sign threshold: the
    static decode's agreement is in `metrics_table`."""
    if not run.has_clauses:
        return [html.P(f"Decoding reads Boolean tasks: the {run.info.dataset} data have no clauses to read the "
                       "networks against.", className="note", id="decoded-none")]
    blocks = []
    for slot, m in run.models.items():
        reading = _reading(run, slot)
        deep = m.n_hidden_layers > 1
        # read only when asked for (seconds a network): the button's callback replaces the body with the reading
        proved = html.Div([
            html.H4("what its weights prove (certified static reading" + (", cascade" if deep else "") + ")"),
            dcc.Loading(html.Div(html.Button(
                "prove from the weights", id={"type": PROVED_TYPE, "run": run.info.id, "slot": slot}, n_clicks=0,
                title="decode(model, method=\"certified\")" + (" and cascade(model)" if deep else "")
                      + ": seconds for a small network, read once"),
                id={"type": PROVED_BODY, "run": run.info.id, "slot": slot}))], className="proved")
        blocks.append(html.Div([html.H3(m.title), html.H4("what it computes (decode_function)"),
                                *_function_reading(reading, slot), proved],
                               className=f"decoded-net col-{slot}", id=f"decoded-{slot}"))
    return [html.P("Each network read two ways. What it computes (fci.codes.decode_function): per output a DNF or a "
                   "CNF of short terms, in the task's form, from inputs the decoder draws itself, never the task's "
                   "data. What its weights prove (decode(model, method=\"certified\"); the cascade for networks "
                   "with several hidden layers): terms that hold on every input, with the share of the output they "
                   "cover. Each agreement is set beside the true-formula agreement (the task's formula against the "
                   "network): a reference, not a bound, so a reading may exceed it. What the weights code (the "
                   "static decode, at the sign threshold) is in the table above and per clause.", className="note"),
            html.Div(blocks, className="decoded-grid")]


def _shares(search: dict[str, Any], o: int, form: str) -> str:
    """" · its terms hold on at least 0.142 of all inputs" (a sound lower bound, exact when every input is decided)."""
    try:
        share = float(search["proved_positive" if form == "dnf" else "proved_negative"][o])
    except (KeyError, IndexError, TypeError):
        return ""
    return f" · they decide the output on at least {_fmt(share)} of all inputs"


def _coverage_text(proved: CertifiedReading, o: int) -> str:
    """"coverage exactly 0.488" or "coverage at least 0.141" of output o."""
    c = proved.circuit
    assert c is not None
    return f"coverage {'exactly' if c.coverage_exact[o] else 'at least'} {_fmt(c.coverage[o])}"


def _feature_rows(features: Sequence[Feature], over_inputs: bool) -> list[html.Tr]:
    rows = []
    for f in features:
        cells = [html.Td(f.name, className="term"), html.Td(f.formula(limit=FEATURE_TERMS), className="term")]
        if over_inputs:
            cells.append(html.Td(f.formula(over="inputs", limit=FEATURE_TERMS), className="term"))
        cells.append(html.Td(f"{'=' if f.exact else '≥'} {_fmt(f.coverage)}"))
        rows.append(html.Tr(cells, id=f"feature-{f.name}"))
    return rows


def _cascade_block(steps: Cascade, slot: str) -> list[Any]:
    """Each hidden layer's features as formulas over the layer below (and, from layer 2
    on, over the inputs), then the outputs over the last hidden layer."""
    items: list[Any] = [html.H5(f"cascade: {len(steps.layers)} hidden layers, "
                                + " → ".join(map(str, steps.sizes)), id=f"cascade-{slot}"),
                        html.P(f"feature hl.j is on where neuron j of layer l reaches {steps.on:g} of its peak, off "
                               "where it passes nothing; formulas list the terms proving it on (coverage: the share "
                               "of its on-region over the layer below they cover, = exact, ≥ a lower bound)",
                               className="note")]
    for l, feats in enumerate(steps.layers):
        below = "the inputs" if l == 0 else f"layer {l}"
        head = [html.Th("feature"), html.Th(f"on over {below}")] + ([html.Th("over the inputs")] if l else []) + [
            html.Th("coverage")]
        items.append(html.Table([html.Thead(html.Tr(head)), html.Tbody(_feature_rows(feats, l > 0))],
                                className="terms cascade-layer", id=f"cascade-{slot}-layer-{l + 1}"))
    head = [html.Th("output"), html.Th(f"true over layer {len(steps.layers)}"), html.Th("over the inputs"),
            html.Th("coverage")]
    items.append(html.Table([html.Thead(html.Tr(head)), html.Tbody(_feature_rows(steps.readout, True))],
                            className="terms cascade-layer", id=f"cascade-{slot}-readout"))
    return items


def certified_panel(run: LoadedRun, slot: str) -> list[Any]:
    """What the weights of network `slot` prove (`app.readings.certified_reading`): per
    output every certified term with the true clauses it implies, the coverage (exact
    or a lower bound), the circuit's agreement beside the true-formula agreement, and
    for a network with several hidden layers the cascade."""
    proved = certified_reading(run, slot)
    if proved is None:
        return [html.P("Decoding reads Boolean tasks.", className="note")]
    if proved.circuit is None:
        return [_agreement_line("certified", proved.agreement, proved.reference, slot, "proved"),
                html.P(f"the certified reader cannot read this network: {proved.reason}", className="note refused",
                       id=f"proved-refused-{slot}")]
    c = proved.circuit
    text = _FORM_TEXT[c.form]
    s = c.search
    items: list[Any] = [
        _agreement_line("certified", proved.agreement, proved.reference, slot, "proved"),
        html.P(f"{c.form.upper()} · {len(c.clauses)} {text['unit']}s, every one proved on every input it decides "
               f"(no forward pass) · read in {proved.seconds:.2f} s · where nothing is proved the circuit says "
               f"{'0' if c.form == 'dnf' else '1'}, so a partial reading agrees less than its terms are right",
               className="note", id=f"proved-summary-{slot}"),
    ]
    if proved.cascade is not None:
        items += _cascade_block(proved.cascade, slot)
    many = c.n_outputs > 1
    for o in range(c.n_outputs):
        label = run.out_labels[o] if run.out_labels else f"y{o}"
        terms = c.terms(o)
        region = "positive" if c.form == "dnf" else "negative"
        items.append(html.P(([html.B(f"output {label}: ")] if many else [])
                            + [f"{len(terms)} proved {text['unit']}s, {_coverage_text(proved, o)} of its {region} "
                               f"inputs{_shares(s, o, c.form)}"], id=f"proved-coverage-{slot}-{o}"))
        if c.default[o]:
            items.append(html.P(f"proved {text['absorbing']}: the output is constant on every input", className="note"))
            continue
        rel = proved.relations[o]
        rows = [html.Tr([html.Td(format_clause(t, c.form), className="term"),
                         html.Td(", ".join(f"c{k}" for k in rel[i]) or "—",
                                 className="term-match" if rel[i] else "term-other")])
                for i, t in enumerate(terms)]
        items.append(html.Div(html.Table([
            html.Thead(html.Tr([html.Th(f"proved {text['unit']}"),
                                html.Th("true clauses", title=f"the true clauses of this output the {text['unit']} "
                                        + ("implies (they hold wherever it holds)" if c.form == "dnf" else
                                           "implies fail (they fail wherever it fails)"))])),
            html.Tbody(rows)], className="terms", id=f"proved-terms-{slot}-{o}"), className="proved-list"))
    return items


def _clause_term(analysis: RunAnalysis, slot: str, c: int, short: bool = False) -> str:
    """How the decoded function reads true clause c: the term equal to it, or the
    terms that fire on it (fewer literals; `short`: without their precisions), or
    none."""
    reading = network_reading(analysis.run, slot)
    if reading is None or reading.circuit is None:
        return "—"
    text = _FORM_TEXT[reading.circuit.form]
    parts = []
    for out in reading.outputs:
        if c not in out.true_clauses:
            continue
        if out.constant:
            parts.append(f"{out.label} {text['absorbing']}")
            continue
        exact = [t for t in out.terms if t.matches == c]
        wider = [t for t in out.terms if c in t.broader and t.matches != c]
        where = f"{out.label}: " if len(reading.outputs) > 1 else ""
        if exact:
            t = exact[0]
            parts.append(f"{where}exact {text['unit']}, precision {_fmt(t.precision, 2)}{', certified' if t.certified else ''}")
        elif wider:
            parts.append(where + ("fired on by " if reading.circuit.form == "dnf" else "fails wherever it fails: ")
                         + "; ".join(t.text + ("" if short else f" ({_fmt(t.precision, 2)})") for t in wider))
        else:
            parts.append(f"{where}no {text['unit']}")
    return ", ".join(parts) or "—"


def _static_reads(analysis: RunAnalysis, slot: str, c: int) -> str:
    static = analysis.codes[slot].static
    if static is None:
        return "—"
    want = frozenset(analysis.run.clauses[c])
    return "reads it exactly" if any(frozenset(d) == want for d in static.clauses) else "not as one clause"


def _term_cell(text: str) -> html.Td:
    return html.Td(text, className="term-match" if "exact " in text else
                   "missed" if text.endswith(("no term", "no clause")) else "")


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
        row("channel (what the weights code)", channels),
        row("static decode", [html.Td(_static_reads(analysis, n, clause)) for n in names]),
        row("decoded function (what it computes)", [html.Td(_clause_term(analysis, n, clause)) for n in names]),
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
        f"collisions ({main})", "capacity " + " / ".join(n[0] for n in names), f"readout ({main})",
        f"decoded term ({main})")])
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
            _term_cell(_clause_term(analysis, main, j, short=True)),
        ]
        rows.append(html.Tr(cells, id={"type": ROW_TYPE, "index": j}, n_clicks=0,
                            className="selected" if j == clause else ""))
    return html.Table([html.Thead(head), html.Tbody(rows)], className="clauses", id="clause-table-inner")
