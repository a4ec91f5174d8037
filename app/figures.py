"""Figure builders: pure functions from explorer data (`app.data`) to plotly figures.

Conventions shared by every view of a network:
- columns are input variables ordered by clause (`task.variable_order()`), labelled
  with the literal their clause reads (`x3`, `¬x3`), with dotted clause boundaries;
- rows are neurons in display order, children grouped under their parent (labels
  `h5·p2`), with dotted lines between parent groups;
- masked weights are NaN and show in the distinct `MASK_COLOR`;
- the selected clause's literals are outlined (shapes named `clause-var:<v>`) and its
  channel neurons are outlined in `CHANNEL_COLOR` (shapes named
  `channel-neuron:<i>`), so tests and the browser can read the highlight back.

Figures are plain plotly dicts (`{"data": [...], "layout": {...}}`), not
`go.Figure` objects: plotly's per-property validation cost ~30 ms a figure, more
than the whole rest of an interaction. Matrices travel as base64 typed arrays
(`{"dtype": "f4", "bdata": ..., "shape": "H, n"}`, which plotly.js reads
natively); `array_of` reads one back.
"""

from __future__ import annotations

import base64
import math
from typing import Any, Sequence

import networkx as nx
import numpy as np

from app.data import MODELS, LoadedRun, ModelCodes, ModelData, RunAnalysis

__all__ = [
    "MASK_COLOR",
    "CHANNEL_COLOR",
    "CLAUSE_COLOR",
    "MODEL_COLORS",
    "empty_figure",
    "weight_heatmap",
    "gram_heatmap",
    "polysemanticity_bar",
    "collision_figure",
    "capacity_figure",
    "model_figures",
    "highlighted",
    "array_of",
]

Figure = dict[str, Any]

MASK_COLOR = "#a9a9a9"
CHANNEL_COLOR = "#00a651"
CLAUSE_COLOR = "#111111"
BOUNDARY_COLOR = "rgba(60,60,60,0.55)"
MODEL_COLORS = {"parent": "#7f7f7f", "child": "#d95f02", "dense": "#1f78b4"}
_COMPONENT_COLORS = ["#e41a1c", "#377eb8", "#984ea3", "#ff7f00", "#a65628", "#f781bf", "#4daf4a", "#999900"]
#: Diverging, red = positive (ColorBrewer RdBu, reversed), white at 0: distinct from MASK_COLOR.
_DIVERGING = [[0.0, "#2166ac"], [1 / 6, "#67a9cf"], [2 / 6, "#d1e5f0"], [0.5, "#f7f7f7"], [4 / 6, "#fddbc7"],
              [5 / 6, "#ef8a62"], [1.0, "#b2182b"]]
_CODE_SCALE = [[0.0, "#2166ac"], [1 / 3, "#2166ac"], [1 / 3, "#f7f7f7"], [2 / 3, "#f7f7f7"], [2 / 3, "#b2182b"], [1.0, "#b2182b"]]

_FONT = {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 11, "color": "#222"}


def array_of(a: Any) -> np.ndarray:
    """A figure array back as numpy: a base64 typed array or a plain list."""
    if isinstance(a, dict) and "bdata" in a:
        out = np.frombuffer(base64.b64decode(a["bdata"]), dtype=np.dtype(a["dtype"]))
        shape = tuple(int(d) for d in str(a.get("shape", len(out))).split(","))
        return out.reshape(shape)
    return np.asarray(a)


def _typed(a: np.ndarray) -> dict[str, str]:
    """A float32 matrix as a plotly.js typed array (NaN survives, unlike in JSON)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    return {"dtype": "f4", "bdata": base64.b64encode(a.tobytes()).decode("ascii"),
            "shape": ", ".join(str(d) for d in a.shape)}


def _figure(data: list[dict], title: str, height: int, uirevision: str | None = None, **layout: Any) -> Figure:
    base = {
        "title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 12}},
        "height": height,
        "font": _FONT,
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "margin": {"l": 60, "r": 10, "t": 40, "b": 40},
        "hoverlabel": {"font": {"size": 11}},
        "uirevision": uirevision,
    }
    base.update(layout)
    return {"data": data, "layout": base}


def empty_figure(message: str = "", height: int = 200) -> Figure:
    """A blank figure carrying a centred message."""
    return _figure([], "", height, xaxis={"visible": False}, yaxis={"visible": False}, annotations=[
        {"text": message, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper",
         "font": {"size": 12, "color": "#666"}}])


def highlighted(fig: Figure, kind: str) -> list[int]:
    """The ids a figure highlights: kind "clause-var" (variables) or "channel-neuron"."""
    prefix = kind + ":"
    names = (s.get("name") or "" for s in fig["layout"].get("shapes", []))
    return sorted({int(n[len(prefix):]) for n in names if n.startswith(prefix)})


# --------------------------------------------------------------------------- helpers


def _mark(label: str, color: str) -> str:
    return f'<span style="color:{color}"><b>{label}</b></span>'


def _boundaries(keys: np.ndarray) -> list[int]:
    """Positions p where keys[p] != keys[p-1] (a new block starts)."""
    return [int(p) for p in np.flatnonzero(keys[1:] != keys[:-1]) + 1]


def _line(x0, y0, x1, y1, **kw) -> dict:
    return {"type": "line", "x0": x0, "y0": y0, "x1": x1, "y1": y1, "layer": "above",
            "line": {"color": BOUNDARY_COLOR, "width": 1, "dash": "dot"}, **kw}


def _rect(name: str, x0, x1, y0, y1, color: str, width: float = 2.0) -> dict:
    return {"type": "rect", "name": name, "x0": x0, "x1": x1, "y0": y0, "y1": y1, "layer": "above",
            "line": {"color": color, "width": width}, "fillcolor": "rgba(0,0,0,0)"}


def _clause_vars(run: LoadedRun, clause: int | None) -> list[int]:
    return [] if clause is None else [v for v, _ in run.clauses[clause]]


def _clause_columns(run: LoadedRun, clause: int | None) -> list[int]:
    """Display columns of the selected clause's variables."""
    pos = {int(v): p for p, v in enumerate(run.order)}
    return [pos[v] for v in _clause_vars(run, clause)]


def _channel(codes: ModelCodes | None, clause: int | None) -> list[int]:
    return [] if codes is None or clause is None else list(codes.rows[clause]["channel"])


#: Above these sizes, axes label only the selection (and every few clauses) and
#: boundary lines are left out: a label or a line per 4-pixel cell is noise.
_ALL_LABELS = 48
_MAX_BLOCKS = 32


def _column_axis(run: LoadedRun, clause: int | None) -> dict:
    """Category axis over the displayed variables: every literal label when there
    are few columns, else the name of every few clauses; the selected clause's
    literals in bold either way."""
    labels = run.labels
    sel = set(_clause_columns(run, clause))
    n = len(labels)
    if n <= _ALL_LABELS:
        vals = labels
        text = [_mark(l, CLAUSE_COLOR) if p in sel else l for p, l in enumerate(labels)]
    else:
        starts = [0, *_boundaries(run.col_clause)]
        step = max(1, math.ceil(len(starts) / 16))
        marks = {p: (f"c{int(run.col_clause[p])}" if run.col_clause[p] >= 0 else "—") for p in starts[::step]}
        marks.update({p: _mark(labels[p], CLAUSE_COLOR) for p in sel})
        vals = [labels[p] for p in sorted(marks)]
        text = [marks[p] for p in sorted(marks)]
    return {"type": "category", "tickmode": "array", "tickvals": vals, "ticktext": text,
            "tickangle": -90 if n > 16 else 0, "tickfont": {"size": 9 if n > 24 else 10}, "showgrid": False,
            "zeroline": False, "constrain": "domain"}


def _row_axis(model: ModelData, channel: Sequence[int]) -> dict:
    """Category axis over neurons in display order: every label when there are few,
    else only the highlighted channel's; channel neurons in CHANNEL_COLOR."""
    labels = model.labels
    ch = {int(i) for i in channel}
    H = len(labels)
    keep = [r for r, i in enumerate(model.row_order) if H <= _ALL_LABELS or int(i) in ch]
    return {"type": "category", "tickmode": "array", "tickvals": [labels[r] for r in keep],
            "ticktext": [_mark(labels[r], CHANNEL_COLOR) if int(model.row_order[r]) in ch else labels[r] for r in keep],
            "autorange": "reversed", "tickfont": {"size": 9 if H > 24 else 10}, "showgrid": False, "zeroline": False}


def _row_height(H: int) -> int:
    return int(min(22, max(4, 420 / max(H, 1))))


def _clause_lines(run: LoadedRun) -> list[int]:
    """Columns where a clause block starts, when there are few enough to draw."""
    return _boundaries(run.col_clause) if run.n_clauses <= _MAX_BLOCKS else []


def _grid_shapes(run: LoadedRun, model: ModelData | None, n_rows: int) -> list[dict]:
    """Dotted clause boundaries (vertical) and, for a child, parent-group boundaries."""
    shapes = [_line(b - 0.5, -0.5, b - 0.5, n_rows - 0.5) for b in _clause_lines(run)]
    if model is not None and model.parent_index is not None:
        groups = model.parent_index[model.row_order]
        if len(set(groups.tolist())) <= _MAX_BLOCKS:
            n = len(run.order)
            shapes += [_line(-0.5, b - 0.5, n - 0.5, b - 0.5) for b in _boundaries(groups)]
    return shapes


def _clause_annotations(run: LoadedRun, clause: int | None) -> list[dict]:
    """Clause names above their column blocks (when there are few clauses)."""
    if run.n_clauses > _MAX_BLOCKS:
        return []
    out = []
    cc = run.col_clause
    for c in range(run.n_clauses):
        cols = np.flatnonzero(cc == c)
        if not len(cols):
            continue
        text = _mark(f"c{c}", CLAUSE_COLOR) if c == clause else f"c{c}"
        out.append(dict(x=float(cols.mean()), y=1.0, xref="x", yref="paper", yanchor="bottom", text=text,
                        showarrow=False, font=dict(size=9, color="#555")))
    return out


# --------------------------------------------------------------------------- first-layer weights


def weight_heatmap(run: LoadedRun, model: ModelData, codes: ModelCodes | None = None, clause: int | None = None,
                   view: str = "weights") -> Figure:
    """The first-layer weights of one network: rows = neurons (children under their
    parent), columns = variables by clause, masked weights in MASK_COLOR.

    view "weights": effective weights W1 (diverging scale, symmetric about 0);
    view "codes": literal codes (the sign code, negated for a negated literal, so
    +1 = the literal excites the neuron; needs `codes`). The selected clause's
    columns and its channel neurons in this network are outlined."""
    if view not in ("weights", "codes"):
        raise ValueError(f"view must be 'weights' or 'codes', got {view!r}")
    rows, cols = model.row_order, run.order
    masked = model.M1[np.ix_(rows, cols)] == 0  # (H, n) display order
    if view == "weights":
        z = model.W1[np.ix_(rows, cols)].astype(np.float32)
        zmax = float(np.abs(model.W1).max()) or 1.0
        scale = {"colorscale": _DIVERGING, "zmin": -zmax, "zmax": zmax,
                 "colorbar": {"title": {"text": "w", "side": "right"}, "thickness": 10, "len": 0.8}}
        hover = "%{y} · %{x}<br>w = %{z:.3f}<extra></extra>"
    else:
        if codes is None:
            raise ValueError("view='codes' needs the network's codes")
        z = (codes.signs[np.ix_(rows, cols)] * run.polarity[cols][None, :]).astype(np.float32)
        scale = {"colorscale": _CODE_SCALE, "zmin": -1.5, "zmax": 1.5,
                 "colorbar": {"tickvals": [-1, 0, 1], "ticktext": ["−1", "0", "+1 excites"], "thickness": 10, "len": 0.8}}
        hover = "%{y} · %{x}<br>literal code %{z}<extra></extra>"
    z[masked] = np.nan
    H = len(rows)
    channel = _channel(codes, clause)
    trace = {"type": "heatmap", "z": _typed(z), "x": run.labels, "y": model.labels,
             "hoverongaps": False, "hovertemplate": hover, **scale}
    shapes = _grid_shapes(run, model, H)
    for p in _clause_columns(run, clause):
        shapes.append(_rect(f"clause-var:{int(cols[p])}", p - 0.5, p + 0.5, -0.5, H - 0.5, CLAUSE_COLOR))
    row_pos = {int(i): r for r, i in enumerate(rows)}
    for i in channel:
        r = row_pos[int(i)]
        shapes.append(_rect(f"channel-neuron:{int(i)}", -0.5, len(cols) - 0.5, r - 0.5, r + 0.5, CHANNEL_COLOR, 2.5))
    title = f"{H} neurons · test acc {model.accuracy:.3f} · nnz {model.nnz}"
    if masked.any():
        title += f' · <span style="color:{MASK_COLOR}">■</span> masked'
    return _figure([trace], title, 110 + H * _row_height(H), uirevision=run.info.id,
                   xaxis=_column_axis(run, clause), yaxis=_row_axis(model, channel), shapes=shapes,
                   annotations=_clause_annotations(run, clause), plot_bgcolor=MASK_COLOR,
                   margin={"l": 70, "r": 10, "t": 48, "b": 50})


def gram_heatmap(run: LoadedRun, model: ModelData, clause: int | None = None) -> Figure:
    """The Gram matrix G = W1ᵀW1 of one network, variables by clause; the selected
    clause's rows and columns are outlined."""
    cols = run.order
    z = model.gram[np.ix_(cols, cols)].astype(np.float32)
    zmax = float(np.abs(z).max()) or 1.0
    labels = run.labels
    n = len(cols)
    trace = {"type": "heatmap", "z": _typed(z), "x": labels, "y": labels, "colorscale": _DIVERGING,
             "zmin": -zmax, "zmax": zmax,
             "colorbar": {"title": {"text": "G", "side": "right"}, "thickness": 10, "len": 0.8},
             "hovertemplate": "%{y} · %{x}<br>G = %{z:.3f}<extra></extra>"}
    bounds = _clause_lines(run)
    shapes = [_line(b - 0.5, -0.5, b - 0.5, n - 0.5) for b in bounds]
    shapes += [_line(-0.5, b - 0.5, n - 0.5, b - 0.5) for b in bounds]
    for p in _clause_columns(run, clause):
        v = int(cols[p])
        shapes.append(_rect(f"clause-var:{v}", p - 0.5, p + 0.5, -0.5, n - 0.5, CLAUSE_COLOR, 1.5))
        shapes.append(_rect(f"clause-var:{v}", -0.5, n - 0.5, p - 0.5, p + 0.5, CLAUSE_COLOR, 1.5))
    yaxis = {**_column_axis(run, clause), "autorange": "reversed", "tickangle": 0, "scaleanchor": "x"}
    return _figure([trace], f"Gram matrix W1ᵀW1 · mean clause capacity {model.mean_capacity:.3f}", 380,
                   uirevision=run.info.id, xaxis=_column_axis(run, clause), yaxis=yaxis, shapes=shapes,
                   margin={"l": 50, "r": 10, "t": 40, "b": 50})


# --------------------------------------------------------------------------- network-level panels


def polysemanticity_bar(run: LoadedRun, model: ModelData, codes: ModelCodes, clause: int | None = None) -> Figure:
    """Clauses per neuron (in display order); the selected clause's channel in
    CHANNEL_COLOR."""
    rows = model.row_order
    channel = set(_channel(codes, clause))
    colors = [CHANNEL_COLOR if int(i) in channel else MODEL_COLORS[model.name] for i in rows]
    trace = {"type": "bar", "x": model.labels, "y": codes.polysemanticity[rows].tolist(),
             "marker": {"color": colors}, "hovertemplate": "%{x}: in %{y} clause channels<extra></extra>"}
    shapes = []
    if model.parent_index is not None and len(set(model.parent_index.tolist())) <= _MAX_BLOCKS:
        shapes = [_line(b - 0.5, 0, b - 0.5, 1, yref="paper") for b in _boundaries(model.parent_index[rows])]
    mean = float(codes.polysemanticity.mean()) if len(rows) else math.nan
    return _figure([trace], f"{model.title}: polysemanticity · mean {mean:.2f} clauses/neuron", 220,
                   uirevision=run.info.id,
                   xaxis={"type": "category", "tickangle": -90, "tickfont": {"size": 9}, "showticklabels": len(rows) <= _ALL_LABELS},
                   yaxis={"title": {"text": "clauses"}, "dtick": 1, "rangemode": "tozero", "gridcolor": "#eee"},
                   shapes=shapes, bargap=0.15, margin={"l": 50, "r": 10, "t": 36, "b": 50})


def _circle(nodes: list[int]) -> dict[int, tuple[float, float]]:
    """Nodes on a circle, clockwise from the top (deterministic)."""
    n = max(len(nodes), 1)
    return {c: (math.sin(2 * math.pi * k / n), math.cos(2 * math.pi * k / n)) for k, c in enumerate(nodes)}


def collision_figure(run: LoadedRun, graph: nx.Graph, clause: int | None = None, title: str = "") -> Figure:
    """The collision graph (networkx): clauses on a circle, an edge per pair of
    colliding channels (width = shared neurons), nodes coloured by entangled group
    (connected component with an edge; grey when alone), hollow when the clause has
    no channel. The selected clause and its edges stand out. Node customdata is the
    clause index, for click-to-select."""
    nodes = sorted(graph.nodes)
    pos = _circle(nodes)
    comps = sorted((sorted(c) for c in nx.connected_components(graph) if len(c) > 1), key=lambda c: c[0])
    comp_of = {c: k for k, comp in enumerate(comps) for c in comp}
    by_weight: dict[tuple[bool, int], list[tuple[int, int]]] = {}
    for a, b, d in graph.edges(data=True):
        sel = clause is not None and clause in (a, b)
        by_weight.setdefault((sel, int(d.get("weight", 1))), []).append((a, b))
    data = []
    for (sel, w), edges in sorted(by_weight.items()):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for a, b in edges:
            xs += [pos[a][0], pos[b][0], None]
            ys += [pos[a][1], pos[b][1], None]
        data.append({"type": "scatter", "x": xs, "y": ys, "mode": "lines", "hoverinfo": "skip", "showlegend": False,
                     "name": f"{'selected ' if sel else ''}collisions sharing {w}",
                     "line": {"width": 1 + 1.5 * min(w, 4), "color": CHANNEL_COLOR if sel else "rgba(90,90,90,0.45)"}})
    colors, sizes, symbols, widths, texts, hovers = [], [], [], [], [], []
    for c in nodes:
        d = graph.nodes[c]
        k = comp_of.get(c)
        colors.append(_COMPONENT_COLORS[k % len(_COMPONENT_COLORS)] if k is not None else "#9e9e9e")
        size = int(d.get("size", 0))
        sizes.append(14 + 3 * min(size, 6) + (8 if c == clause else 0))
        symbols.append("circle" if size else "circle-open")
        widths.append(3 if c == clause else (0.5 if size else 1.5))
        texts.append(_mark(f"c{c}", CLAUSE_COLOR) if c == clause else f"c{c}")
        partners = ", ".join(f"c{o} ({graph[c][o].get('weight', 1)})" for o in sorted(graph[c])) or "none"
        hovers.append(f"c{c}: {d.get('label', '')}<br>channel {d.get('channel', [])}<br>collides with {partners}")
    data.append({
        "type": "scatter", "x": [pos[c][0] for c in nodes], "y": [pos[c][1] for c in nodes],
        "mode": "markers+text", "text": texts, "textposition": "middle center",
        "textfont": {"size": 9, "color": "#111"}, "customdata": nodes, "hovertext": hovers, "hoverinfo": "text",
        "showlegend": False, "name": "clauses",
        "marker": {"color": colors, "size": sizes, "symbol": symbols, "line": {"color": CLAUSE_COLOR, "width": widths}},
    })
    n_edges = graph.number_of_edges()
    head = title + " · " if title else ""
    return _figure(data, f"{head}{n_edges} collision{'s' if n_edges != 1 else ''}, {len(comps)} entangled group"
                         f"{'s' if len(comps) != 1 else ''}", 320, uirevision=run.info.id,
                   xaxis={"visible": False, "range": [-1.3, 1.3]},
                   yaxis={"visible": False, "range": [-1.3, 1.3], "scaleanchor": "x"},
                   margin={"l": 10, "r": 10, "t": 36, "b": 10})


def capacity_figure(analysis: RunAnalysis, clause: int | None = None) -> Figure:
    """Feature capacity per clause (mean over its variables) in each network; the
    selected clause is shaded. Bars' x is the clause name `c<j>`."""
    run = analysis.run
    names = [f"c{c}" for c in range(run.n_clauses)]
    data = [{"type": "bar", "x": names, "y": [r["capacity"] for r in codes.rows], "name": MODELS[name],
             "marker": {"color": MODEL_COLORS[name]},
             "hovertemplate": "%{x}: capacity %{y:.3f}<extra>" + MODELS[name] + "</extra>"}
            for name, codes in analysis.codes.items()]
    shapes = []
    if clause is not None:
        shapes.append({"type": "rect", "name": f"clause:{clause}", "xref": "x", "yref": "paper", "x0": clause - 0.5,
                       "x1": clause + 0.5, "y0": 0, "y1": 1, "layer": "below", "line": {"width": 0},
                       "fillcolor": "rgba(0,166,81,0.15)"})
    return _figure(data, "Feature capacity per clause (mean over its variables)", 260, uirevision=run.info.id,
                   barmode="group", xaxis={"type": "category"}, yaxis={"range": [0, 1.05], "gridcolor": "#eee"},
                   shapes=shapes, legend={"orientation": "h", "y": -0.2}, margin={"l": 40, "r": 10, "t": 36, "b": 40})


def model_figures(analysis: RunAnalysis, clause: int | None, view: str) -> dict[str, dict[str, Figure]]:
    """Every per-network figure: {network: {"weights", "gram", "poly", "collisions"}}."""
    run = analysis.run
    out = {}
    for name, model in run.models.items():
        codes = analysis.codes[name]
        out[name] = {
            "weights": weight_heatmap(run, model, codes, clause, view),
            "gram": gram_heatmap(run, model, clause),
            "poly": polysemanticity_bar(run, model, codes, clause),
            "collisions": collision_figure(run, codes.graph, clause, title=MODELS[name]),
        }
    return out
