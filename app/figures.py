"""Figure builders: pure functions from explorer data (`app.runs`, `app.readings`) to plotly figures.

Conventions shared by every view of a network:
- columns are inputs in display order: on a Boolean task the variables ordered by
  clause (`task.variable_order()`), labelled with the literal their clause reads
  (`x3`, `¬x3`), with dotted clause boundaries; deeper layers read the previous
  layer's neurons;
- rows are neurons in display order, children grouped under their parent (labels
  `h5·p2`), with dotted lines between parent groups;
- masked weights are NaN and show in the distinct `MASK_COLOR`;
- one colour scale per row of the page: `row_scale` gives a robust symmetric
  range shared by the networks side by side (the `ROBUST_PERCENTILE` of |value|,
  so one outlier does not wash the rest out); cells beyond it are ringed and the
  true range is stated on the colour bar beside the range;
- every figure fits its column, so its colour bar is always beside its matrix;
  labels are thinned to one per `LABEL_PX` px;
- inputs that are images (digits, a CNN's filters) are drawn as pictures: one
  small image per neuron (per input channel of a filter), `weight_pictures`;
- the selected clause's literals are outlined (shapes named `clause-var:<v>`) and its
  channel neurons are outlined in `CHANNEL_COLOR` (shapes named
  `channel-neuron:<i>`), so tests and the browser can read the highlight back.

Everything that depends on the selected clause is the figure's **highlight**:
layout shapes, annotations and tick labels, and the trace properties a trace
lists in ``meta.hl``. `split_highlight` separates it from the rest, so a clause
change travels as a small highlight update that the browser applies with
`Plotly.relayout` / `Plotly.restyle` (`assets/highlight.js`), not as new figures.

Figures are plain plotly dicts (`{"data": [...], "layout": {...}}`), not
`go.Figure` objects: plotly's per-property validation cost ~30 ms a figure, more
than the whole rest of an interaction. Matrices travel as base64 typed arrays
(`{"dtype": "f4", "bdata": ..., "shape": "H, n"}`, which plotly.js reads
natively); `array_of` reads one back.
"""

from __future__ import annotations

import base64
import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from app.readings import ModelCodes, RunAnalysis
from app.runs import LoadedRun, ModelData

__all__ = [
    "CHANNEL_COLOR",
    "CLAUSE_COLOR",
    "MASK_COLOR",
    "MIN_CELL",
    "MODEL_COLORS",
    "array_of",
    "capacity_figure",
    "collision_figure",
    "empty_figure",
    "gram_heatmap",
    "highlighted",
    "model_figures",
    "polysemanticity_bar",
    "readout_heatmap",
    "ROBUST_PERCENTILE",
    "Scale",
    "picture_grid",
    "row_range",
    "row_scale",
    "shared_ranges",
    "weight_pictures",
    "split_highlight",
    "weight_heatmap",
]

Figure = dict[str, Any]

MASK_COLOR = "#a9a9a9"
CHANNEL_COLOR = "#00a651"
CLAUSE_COLOR = "#111111"
NONE_COLOR = "#888888"
BOUNDARY_COLOR = "rgba(60,60,60,0.55)"
MODEL_COLORS = {"parent": "#7f7f7f", "child": "#d95f02", "dense": "#1f78b4"}
_COMPONENT_COLORS = ["#e41a1c", "#377eb8", "#984ea3", "#ff7f00", "#a65628", "#f781bf", "#4daf4a", "#999900"]
#: Diverging, red = positive (ColorBrewer RdBu, reversed), white at 0: distinct from MASK_COLOR.
_DIVERGING = [[0.0, "#2166ac"], [1 / 6, "#67a9cf"], [2 / 6, "#d1e5f0"], [0.5, "#f7f7f7"], [4 / 6, "#fddbc7"],
              [5 / 6, "#ef8a62"], [1.0, "#b2182b"]]
_CODE_SCALE = [[0.0, "#2166ac"], [1 / 3, "#2166ac"], [1 / 3, "#f7f7f7"], [2 / 3, "#f7f7f7"], [2 / 3, "#b2182b"], [1.0, "#b2182b"]]
_MASK_SCALE = [[0.0, MASK_COLOR], [0.5, MASK_COLOR], [0.5, "#3b3b3b"], [1.0, "#3b3b3b"]]

_FONT = {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 11, "color": "#222"}

#: Minimum cell size (px) of a heatmap; the plot width a column offers before it
#: scrolls; the least space (px) between two axis labels.
MIN_CELL = 6
_PLOT_W = 330
LABEL_PX = 12
_MIN_ROW, _MAX_ROW = 7, 22


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
        "shapes": [],
        "annotations": [],
    }
    base.update(layout)
    return {"data": data, "layout": base}


def empty_figure(message: str = "", height: int = 200) -> Figure:
    """A blank figure carrying a centred message."""
    return _figure([], "", height, xaxis={"visible": False}, yaxis={"visible": False}, annotations=[
        {"text": message, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper",
         "font": {"size": 12, "color": "#666"}}])


def highlighted(fig: Figure, kind: str) -> list[int]:
    """The ids a figure highlights: kind "clause-var" (variables), "channel-neuron"
    or "clause" (read from the names of its highlight shapes, `kind:3,5,7`)."""
    prefix = kind + ":"
    out: set[int] = set()
    for sh in fig["layout"].get("shapes", []):
        name = sh.get("name") or ""
        if name.startswith(prefix) and sh.get("visible", True):
            out |= {int(x) for x in name[len(prefix):].split(",") if x}
    return sorted(out)


#: Names of highlight shapes start with one of these (then ":" and the ids).
HL_KINDS = ("clause-var", "channel-neuron", "clause", "selected-edges", "selected-node")
_HL_AXIS: tuple[str, ...] = ()  # tick labels do not depend on the selection (the outlines show it)
_HL_SHAPE = ("path", "name", "visible")


def _is_hl(shape: dict) -> bool:
    return (shape.get("name") or "").split(":")[0] in HL_KINDS


def _get(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part, {}) if isinstance(d, dict) else {}
    return d


def _pop(d: dict, dotted: str) -> None:
    *path, last = dotted.split(".")
    node: Any = d
    for part in path:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(last, None)


def split_highlight(fig: Figure) -> tuple[Figure, dict[str, Any]]:
    """(the figure without its highlight, the highlight) of a figure.

    Highlight shapes sit at fixed indices whatever the clause (one path shape per
    kind, hidden when empty), so the highlight is a set of attribute edits:
    {"layout": {"shapes[2].path": ..., "shapes[2].name": ..., "xaxis.ticktext": ...},
    "traces": [[index, {"marker.color": [...]}], ...]}: the arguments of
    `Plotly.relayout` and `Plotly.restyle`, which redraw only the shapes, the ticks
    and the restyled trace (no new plot)."""
    layout = fig["layout"]
    hl_layout: dict[str, Any] = {}
    shapes = []
    for i, sh in enumerate(layout.get("shapes", [])):
        if _is_hl(sh):
            for k in _HL_SHAPE:
                hl_layout[f"shapes[{i}].{k}"] = sh.get(k, True if k == "visible" else None)
            sh = {k: v for k, v in sh.items() if k not in _HL_SHAPE}
        shapes.append(sh)
    for ax in ("xaxis", "yaxis"):
        for k in _HL_AXIS:
            if k in layout.get(ax, {}):
                hl_layout[f"{ax}.{k}"] = layout[ax][k]
    base_layout = {**layout, "shapes": shapes}
    for ax in ("xaxis", "yaxis"):
        if ax in base_layout:
            base_layout[ax] = {k: v for k, v in base_layout[ax].items() if k not in _HL_AXIS}
    traces, base_data = [], []
    for i, t in enumerate(fig["data"]):
        keys = (t.get("meta") or {}).get("hl", [])
        if keys:
            traces.append([i, {k: _get(t, k) for k in keys}])
            t = copy.deepcopy(t)
            for k in keys:
                _pop(t, k)
        base_data.append(t)
    return {"data": base_data, "layout": base_layout}, {"layout": hl_layout, "traces": traces}


# --------------------------------------------------------------------------- helpers


def _mark(label: str, color: str) -> str:
    return f'<span style="color:{color}"><b>{label}</b></span>'


def _swatch(color: str, text: str, symbol: str = "■") -> str:
    return f'<span style="color:{color}">{symbol}</span> {text}'


def _boundaries(keys: np.ndarray) -> list[int]:
    """Positions p where keys[p] != keys[p-1] (a new block starts)."""
    return [int(p) for p in np.flatnonzero(keys[1:] != keys[:-1]) + 1]


def _line(x0, y0, x1, y1, **kw) -> dict:
    return {"type": "line", "x0": x0, "y0": y0, "x1": x1, "y1": y1, "layer": "above",
            "line": {"color": BOUNDARY_COLOR, "width": 1, "dash": "dot"}, **kw}


def _hl_shape(kind: str, ids: Sequence[int], rects: Sequence[tuple[float, float, float, float]], color: str,
              width: float = 2.0, yref: str = "y", fill: str = "rgba(0,0,0,0)", extra_path: str = "") -> dict:
    """A highlight slot: one path shape outlining `rects` ((x0, x1, y0, y1) each),
    named `kind:<ids>`; present (hidden) even when nothing is highlighted, so its
    index does not depend on the selection."""
    path = " ".join(f"M{x0:g},{y0:g} H{x1:g} V{y1:g} H{x0:g} Z" for x0, x1, y0, y1 in rects) + extra_path
    return {"type": "path", "name": f"{kind}:{','.join(str(int(i)) for i in ids)}", "path": path or "M0,0",
            "visible": True, "xref": "x", "yref": yref, "layer": "above" if fill.endswith("0)") else "below",
            "line": {"color": color, "width": width if fill.endswith("0)") else 0}, "fillcolor": fill}


def _clause_vars(run: LoadedRun, clause: int | None) -> list[int]:
    return [] if clause is None or not run.has_clauses else [v for v, _ in run.clauses[clause]]


def _clause_columns(run: LoadedRun, clause: int | None) -> list[int]:
    """Display columns of the selected clause's variables."""
    pos = {int(v): p for p, v in enumerate(run.order)}
    return [pos[v] for v in _clause_vars(run, clause)]


def _channel(codes: ModelCodes | None, clause: int | None) -> list[int]:
    return [] if codes is None or clause is None else list(codes.rows[clause]["channel"])


def _plot_width(n: int, min_cell: int = MIN_CELL) -> float:
    """The plot area's width in px: the column's (every figure fits its column)."""
    return _PLOT_W


def _thin(n: int, px: float) -> int:
    """Label every k-th of n positions on an axis of `px` pixels (k >= 1)."""
    return max(1, math.ceil(LABEL_PX / max(px / max(n, 1), 1e-9)))


#: The colour range of a row is this percentile of the row's non-zero |values|,
#: when the largest |value| exceeds it by more than OUTLIER_FACTOR (else the largest).
ROBUST_PERCENTILE = 95.0
OUTLIER_FACTOR = 5.0
#: Most cells ringed as beyond the colour range in one figure.
MAX_RINGS = 256


@dataclass(frozen=True)
class Scale:
    """A row's symmetric colour range ±`zmax` and the true range [lo, hi] of its
    values; `beyond`: how many values lie outside the colour range."""

    zmax: float
    lo: float = 0.0
    hi: float = 0.0
    beyond: int = 0

    @property
    def clipped(self) -> bool:
        return self.beyond > 0


def row_scale(values: Iterable[np.ndarray], percentile: float = ROBUST_PERCENTILE) -> Scale:
    """The robust symmetric colour range shared by a row of matrices: the
    `percentile` of their non-zero finite |values| (NaN and exact zeros, i.e.
    masked weights, ignored) when the largest is an outlier (more than
    `OUTLIER_FACTOR` times it), else the largest; 1 when every value is 0; with
    the true range."""
    arrays = [np.asarray(v, dtype=np.float64).ravel() for v in values]
    flat = np.concatenate(arrays) if arrays else np.zeros(0)
    flat = flat[np.isfinite(flat)]
    nz = np.abs(flat[flat != 0])
    if not nz.size:
        return Scale(1.0)
    zmax = float(np.percentile(nz, percentile))
    top = float(nz.max())
    if not zmax > 0 or top <= OUTLIER_FACTOR * zmax:  # no outlier: the whole range, nothing clipped
        zmax = top
    return Scale(zmax, float(flat.min()), float(flat.max()), int((nz > zmax * (1 + 1e-6)).sum()))


def row_range(values: Iterable[np.ndarray]) -> float:
    """The colour range ±zmax of `row_scale`."""
    return row_scale(values).zmax


def number_text(z: float) -> str:
    """A number as every label of a scale writes it (3 significant digits)."""
    return f"{z:.3g}".replace("-", "−")


def _range_text(z: float) -> str:
    return f"±{number_text(z)}"


def _scale_of(zmax: float | Scale | None, values: np.ndarray) -> Scale:
    if isinstance(zmax, Scale):
        return zmax
    return Scale(float(zmax)) if zmax else row_scale([values])


def _colorbar(symbol: str, scale: Scale) -> dict[str, Any]:
    """The colour bar of a diverging heatmap: the range, its ticks written alike,
    and the true range when values lie beyond it (ringed in the matrix)."""
    z = scale.zmax
    return {"title": {"text": f"{symbol}<br>{_range_text(z)}", "side": "top"}, "thickness": 10, "len": 1,
            "tickvals": [-z, 0, z], "ticktext": [number_text(-z), "0", number_text(z)]}


def _range_note(symbol: str, scale: Scale) -> str:
    """The title's second line when values lie beyond the colour range: the true range."""
    if not scale.clipped:
        return ""
    return (f"<br><span style='font-size:10px;color:#555'>colour ±{number_text(scale.zmax)} ({ROBUST_PERCENTILE:g}th pct of "
            f"|{symbol}|) · true range {number_text(scale.lo)} … {number_text(scale.hi)} · ○ {scale.beyond} beyond</span>")


def _beyond_trace(z: np.ndarray, zmax: float, xs: Sequence[Any], ys: Sequence[Any]) -> list[dict]:
    """Rings on the cells of `z` (rows ys, columns xs) whose |value| exceeds the colour range."""
    with np.errstate(invalid="ignore"):
        r, c = np.nonzero(np.abs(z) > zmax * (1 + 1e-6))
    if not r.size or r.size > MAX_RINGS:  # past that many the rings would hide the matrix; the title gives the count
        return []
    return [{"type": "scatter", "mode": "markers", "x": [xs[int(j)] for j in c], "y": [ys[int(i)] for i in r],
             "marker": {"symbol": "circle-open", "size": 4, "color": "#000", "line": {"width": 0.8}},
             "hoverinfo": "skip", "showlegend": False, "name": "beyond the colour range"}]


def _column_axis(run: LoadedRun, clause: int | None, labels: Sequence[str] | None = None, clause_cols: bool = True,
                 min_cell: int = MIN_CELL) -> dict:
    """Category axis over the displayed columns: labels thinned to one per
    `LABEL_PX` px (clause names `c<j>` at block starts when the literals do not
    fit), the selected clause's literals always, in bold."""
    labels = list(run.labels if labels is None else labels)
    n = len(labels)
    step = _thin(n, _plot_width(n, min_cell))
    if step == 1:
        marks = {p: labels[p] for p in range(n)}
    elif clause_cols and run.has_clauses:
        starts = [0, *_boundaries(run.col_clause)]
        block_px = _plot_width(n, min_cell) / max(len(starts), 1)
        every = max(1, math.ceil(LABEL_PX * 2.5 / block_px))
        marks = {p: (f"c{int(run.col_clause[p])}" if run.col_clause[p] >= 0 else "—") for p in starts[::every]}
    else:
        marks = {p: labels[p] for p in range(0, n, step)}
    vals = [labels[p] for p in sorted(marks)]
    text = [marks[p] for p in sorted(marks)]
    return {"type": "category", "tickmode": "array", "tickvals": vals, "ticktext": text,
            "tickangle": -90 if n > 12 else 0, "tickfont": {"size": 9 if n > 24 else 10}, "showgrid": False,
            "zeroline": False}


def _row_axis(labels: Sequence[str], ids: Sequence[int] | np.ndarray, channel: Sequence[int], px: float) -> dict:
    """Category axis over neurons in display order, thinned to one label per
    `LABEL_PX` px; the highlighted channel's labels always, in CHANNEL_COLOR."""
    H = len(labels)
    step = _thin(H, px)
    keep = [r for r in range(H) if r % step == 0]
    return {"type": "category", "tickmode": "array", "tickvals": [labels[r] for r in keep],
            "ticktext": [labels[r] for r in keep],
            "autorange": "reversed", "tickfont": {"size": 9 if H > 24 else 10}, "showgrid": False, "zeroline": False}


def _row_height(H: int) -> int:
    return int(min(_MAX_ROW, max(_MIN_ROW, 420 / max(H, 1))))


#: Above this many blocks, boundary lines are left out (a line per few pixels is noise).
_MAX_BLOCKS = 32


def _clause_lines(run: LoadedRun) -> list[int]:
    """Columns where a clause block starts, when there are few enough to draw."""
    return _boundaries(run.col_clause) if run.has_clauses and run.n_clauses <= _MAX_BLOCKS else []


def _grid_shapes(run: LoadedRun, model: ModelData | None, n_rows: int, n_cols: int, layer: int) -> list[dict]:
    """Dotted clause boundaries (vertical, first layer) and, for a child, parent-group boundaries."""
    shapes = [_line(b - 0.5, -0.5, b - 0.5, n_rows - 0.5) for b in _clause_lines(run)] if layer == 0 else []
    if model is not None and model.parent_index is not None and layer == 0:
        groups = model.parent_index[model.row_order]
        if len(set(groups.tolist())) <= _MAX_BLOCKS:
            shapes += [_line(-0.5, b - 0.5, n_cols - 0.5, b - 0.5) for b in _boundaries(groups)]
    return shapes


def _clause_annotations(run: LoadedRun, clause: int | None, n: int) -> list[dict]:
    """Clause names above their column blocks, thinned so they never overlap."""
    if not run.has_clauses:
        return []
    cc = run.col_clause
    px = _plot_width(n) / max(n, 1)
    out: list[dict] = []
    last = -1e9
    for c in range(run.n_clauses):
        cols = np.flatnonzero(cc == c)
        if not len(cols):
            continue
        x = float(cols.mean())
        if c != clause and (x - last) * px < 2.2 * LABEL_PX:
            continue
        if c == clause:
            out = [a for a in out if abs(a["x"] - x) * px >= 2.2 * LABEL_PX]
        text = _mark(f"c{c}", CLAUSE_COLOR) if c == clause else f"c{c}"
        out.append({"x": x, "y": 1.0, "xref": "x", "yref": "paper", "yanchor": "bottom", "text": text,
                    "showarrow": False, "font": {"size": 9, "color": "#555"}})
        last = x
    return out


def _layer_columns(run: LoadedRun, model: ModelData, layer: int) -> tuple[np.ndarray, list[str]]:
    """(input indices of layer `layer` in display order, their labels)."""
    if layer == 0:
        return run.order, run.labels
    return model.inputs_of(layer)


# --------------------------------------------------------------------------- weights


def weight_heatmap(run: LoadedRun, model: ModelData, codes: ModelCodes | None = None, clause: int | None = None,
                   view: str = "weights", layer: int = 0, zmax: float | Scale | None = None) -> Figure:
    """One layer's weights of one network: rows = neurons (children under their
    parent), columns = inputs (variables by clause), masked weights in MASK_COLOR.

    view "weights": effective weights (diverging scale, symmetric, ±`zmax`: pass
    the row's `row_scale` so the networks side by side share it); "codes": literal
    codes (the sign code, negated for a negated literal, so +1 = the literal
    excites the neuron; needs `codes`, first layer); "masks": the 0/1 mask. The
    selected clause's columns and its channel neurons are outlined."""
    if view not in ("weights", "codes", "masks"):
        raise ValueError(f"view must be 'weights', 'codes' or 'masks', got {view!r}")
    if not 0 <= layer < model.n_hidden_layers:
        raise ValueError(f"layer must be in 0..{model.n_hidden_layers - 1}, got {layer}")
    W, M = model.layers[layer]
    rows = model.layer_rows(layer)
    cols, col_labels = _layer_columns(run, model, layer)
    masked = M[np.ix_(rows, cols)] == 0  # (H, n) display order
    if view == "weights":
        z = W[np.ix_(rows, cols)].astype(np.float32)
        sc = _scale_of(zmax, W)
        scale = {"colorscale": _DIVERGING, "zmin": -sc.zmax, "zmax": sc.zmax, "colorbar": _colorbar("w", sc)}
        hover = "%{y} · %{x}<br>w = %{z:.3f}<extra></extra>"
    elif view == "codes":
        if codes is None or layer != 0:
            raise ValueError("view='codes' needs the network's codes (first layer of a Boolean task)")
        z = (codes.signs[np.ix_(rows, cols)] * run.polarity[cols][None, :]).astype(np.float32)
        scale = {"colorscale": _CODE_SCALE, "zmin": -1.5, "zmax": 1.5,
                 "colorbar": {"tickvals": [-1, 0, 1], "ticktext": ["−1 inhibits", "0", "+1 excites"], "thickness": 10,
                              "len": 1, "title": {"text": "code", "side": "top"}}}
        hover = "%{y} · %{x}<br>literal code %{z}<extra></extra>"
    else:
        z = (M[np.ix_(rows, cols)] != 0).astype(np.float32)
        scale = {"colorscale": _MASK_SCALE, "zmin": 0, "zmax": 1,
                 "colorbar": {"tickvals": [0.25, 0.75], "ticktext": ["masked", "kept"], "thickness": 10, "len": 1,
                              "title": {"text": "mask", "side": "top"}}}
        hover = "%{y} · %{x}<br>mask %{z}<extra></extra>"
    if view != "masks":
        z[masked] = np.nan
    H, n = len(rows), len(cols)
    channel = _channel(codes, clause) if layer == 0 else []
    row_labels = model.layer_labels(layer)
    trace = {"type": "heatmap", "z": _typed(z), "x": list(col_labels), "y": row_labels,
             "hoverongaps": False, "hovertemplate": hover, "xgap": 0, "ygap": 0, **scale}
    data = [trace] + (_beyond_trace(z, float(scale["zmax"]), list(col_labels), row_labels)  # type: ignore[arg-type]
                      if view == "weights" else [])
    shapes = _grid_shapes(run, model, H, n, layer)
    if layer == 0 and run.has_clauses:
        ps = _clause_columns(run, clause)
        shapes.append(_hl_shape("clause-var", [int(cols[p]) for p in ps], [(p - 0.5, p + 0.5, -0.5, H - 0.5) for p in ps],
                                CLAUSE_COLOR))
        row_pos = {int(i): r for r, i in enumerate(rows)}
        rs = [row_pos[int(i)] for i in channel]
        shapes.append(_hl_shape("channel-neuron", channel, [(-0.5, n - 0.5, r - 0.5, r + 0.5) for r in rs],
                                CHANNEL_COLOR, 2.5))
    layer_text = f"layer {layer + 1} · " if model.n_hidden_layers > 1 else ""
    possible = int(M.size)
    kept = int((M != 0).sum())
    title = f"{layer_text}{H} {model.unit_name}s · test acc {_acc(model.accuracy)} · nnz {model.nnz}"
    if view == "masks" or masked.any():
        title += f' · <span style="color:{MASK_COLOR}">■</span> masked ({possible - kept} of {possible})'
    if view == "weights":
        title += _range_note("w", _scale_of(zmax, W))
    row_h = _row_height(H)
    fig = _figure(data, title, 118 + H * row_h, uirevision=run.info.id,
                  xaxis=_column_axis(run, clause, col_labels, clause_cols=layer == 0),
                  yaxis=_row_axis(row_labels, rows, channel, H * row_h), shapes=shapes,
                  annotations=_clause_annotations(run, None, n) if layer == 0 else [], plot_bgcolor=MASK_COLOR,
                  margin={"l": 70, "r": 70, "t": 62, "b": 56})
    return fig


def picture_grid(images: np.ndarray, per_row: int) -> tuple[np.ndarray, np.ndarray]:
    """Tile images (N, C, h, w) into one mosaic: each image's C channels side by
    side, `per_row` images a row, one blank (NaN) cell between tiles. Returns
    (mosaic (R, K), index (R, K): the flat position n*C*h*w + c*h*w + y*w + x of
    each cell in `images`, -1 in the gaps)."""
    N, C, h, w = images.shape
    tw, th = C * (w + 1) - 1, h
    rows = max(1, math.ceil(N / per_row))
    R_, K = rows * (th + 1) - 1, per_row * (tw + 1) - 1
    mosaic = np.full((R_, K), np.nan, dtype=np.float32)
    index = np.full((R_, K), -1, dtype=np.int64)
    flat = np.arange(images.size).reshape(images.shape)
    for i in range(N):
        r0, c0 = (i // per_row) * (th + 1), (i % per_row) * (tw + 1)
        for c in range(C):
            x0 = c0 + c * (w + 1)
            mosaic[r0:r0 + h, x0:x0 + w] = images[i, c]
            index[r0:r0 + h, x0:x0 + w] = flat[i, c]
    return mosaic, index


def weight_pictures(run: LoadedRun, model: ModelData, view: str = "weights", layer: int = 0,
                    zmax: float | Scale | None = None) -> Figure:
    """Each neuron's input weights as a picture (the input image's shape: 8×8 for
    digits), or each CNN filter as one small image per input channel; neurons in
    display order (children under their parent), left to right. view "weights": the
    diverging scale ±`zmax` (the row's shared `row_scale`), masked weights grey,
    values beyond the range ringed; "masks": the 0/1 mask."""
    W, M = model.layers[layer]
    rows = model.layer_rows(layer)
    shape = model.picture_shape(layer) if model.is_cnn else tuple(run.image_shape)
    C, h, w = (int(v) for v in shape)
    H = len(rows)
    imgs = W[rows].reshape(H, C, h, w).astype(np.float32)
    mask = M[rows].reshape(H, C, h, w)
    per_row = max(1, min(16, math.ceil(math.sqrt(H * max(h, 1) / max(C * (w + 1), 1))), H))
    z, index = picture_grid(imgs if view == "weights" else (mask != 0).astype(np.float32), per_row)
    mz, _ = picture_grid((mask == 0).astype(np.float32), per_row)
    labels = model.layer_labels(layer)
    names = _pixel_names(shape, model, layer, run)
    text = np.full(z.shape, "", dtype=object)
    ok = index >= 0
    size = C * h * w
    text[ok] = [f"{labels[int(k) // size]} · {names[int(k) % size]}" for k in index[ok]]
    data: list[dict] = []
    if view == "weights":
        sc = _scale_of(zmax, W)
        zz = z.copy()
        zz[mz == 1] = np.nan
        data.append({"type": "heatmap", "z": _typed(zz), "text": text.tolist(), "colorscale": _DIVERGING,
                     "zmin": -sc.zmax, "zmax": sc.zmax, "colorbar": _colorbar("w", sc), "hoverongaps": False,
                     "hovertemplate": "%{text}<br>w = %{z:.3f}<extra></extra>", "name": "weights"})
        masked_cells = np.where(mz == 1, 1.0, np.nan).astype(np.float32)
        if np.isfinite(masked_cells).any():
            data.append({"type": "heatmap", "z": _typed(masked_cells), "colorscale": [[0, MASK_COLOR], [1, MASK_COLOR]],
                         "showscale": False, "hoverinfo": "skip", "name": "masked"})
        R_, K = zz.shape
        data += _beyond_trace(zz, sc.zmax, list(range(K)), list(range(R_)))
    else:
        data.append({"type": "heatmap", "z": _typed(z), "text": text.tolist(), "colorscale": _MASK_SCALE,
                     "zmin": 0, "zmax": 1, "hoverongaps": False, "hovertemplate": "%{text}<br>mask %{z}<extra></extra>",
                     "colorbar": {"tickvals": [0.25, 0.75], "ticktext": ["masked", "kept"], "thickness": 10, "len": 1,
                                  "title": {"text": "mask", "side": "top"}}})
    tw, th = C * (w + 1) - 1, h
    notes = [{"x": (i % per_row) * (tw + 1) + (tw - 1) / 2, "y": (i // per_row) * (th + 1) - 0.6, "text": labels[i],
              "showarrow": False, "xref": "x", "yref": "y", "yanchor": "bottom", "font": {"size": 8, "color": "#555"}}
             for i in range(H)] if H <= 64 else []
    what = f"{C}×{h}×{w}" if C > 1 else f"{h}×{w}"
    layer_text = f"layer {layer + 1} · " if model.n_hidden_layers > 1 else ""
    title = f"{layer_text}{H} {model.unit_name}s · {what} pictures · test acc {_acc(model.accuracy)} · nnz {model.nnz}"
    if view == "weights":
        title += _range_note("w", _scale_of(zmax, W))
    n_rows = z.shape[0]
    px = max(4.0, min(14.0, _PLOT_W / max(z.shape[1], 1)))
    axis = {"visible": False, "showgrid": False, "zeroline": False}
    return _figure(data, title, int(96 + n_rows * px * 1.15), uirevision=run.info.id,
                   xaxis={**axis, "range": [-0.5, z.shape[1] - 0.5]},
                   yaxis={**axis, "autorange": "reversed", "scaleanchor": "x"}, annotations=notes,
                   plot_bgcolor="white", margin={"l": 10, "r": 70, "t": 62, "b": 10})


def _pixel_names(shape: Sequence[int], model: ModelData, layer: int, run: LoadedRun) -> list[str]:
    """Names of a picture's cells: the first layer's input names, else `ch c (y,x)`."""
    if layer == 0:
        return list(run.input_names)
    return model.inputs_of(layer)[1]


def _acc(a: float) -> str:
    return "—" if a is None or math.isnan(a) else f"{a:.3f}"


def gram_heatmap(run: LoadedRun, model: ModelData, clause: int | None = None, layer: int = 0,
                 zmax: float | Scale | None = None) -> Figure:
    """The Gram matrix G = W_lᵀW_l of one layer of a network, inputs in display
    order, on the symmetric range ±`zmax` (the row's shared range); the selected
    clause's rows and columns are outlined."""
    cols, labels = _layer_columns(run, model, layer)
    G = model.gram_of(layer)
    z = G[np.ix_(cols, cols)].astype(np.float32)
    sc = _scale_of(zmax, G)
    n = len(cols)
    trace = {"type": "heatmap", "z": _typed(z), "x": list(labels), "y": list(labels), "colorscale": _DIVERGING,
             "zmin": -sc.zmax, "zmax": sc.zmax, "colorbar": _colorbar("G", sc),
             "hovertemplate": "%{y} · %{x}<br>G = %{z:.3f}<extra></extra>"}
    bounds = _clause_lines(run) if layer == 0 else []
    shapes = [_line(b - 0.5, -0.5, b - 0.5, n - 0.5) for b in bounds]
    shapes += [_line(-0.5, b - 0.5, n - 0.5, b - 0.5) for b in bounds]
    if layer == 0 and run.has_clauses:
        ps = _clause_columns(run, clause)
        rects = [(p - 0.5, p + 0.5, -0.5, n - 0.5) for p in ps] + [(-0.5, n - 0.5, p - 0.5, p + 0.5) for p in ps]
        shapes.append(_hl_shape("clause-var", [int(cols[p]) for p in ps], rects, CLAUSE_COLOR, 1.5))
    cell = max(MIN_CELL - 2, 4)
    xaxis = _column_axis(run, clause, labels, clause_cols=layer == 0, min_cell=cell)
    yaxis = {**_column_axis(run, clause, labels, clause_cols=layer == 0, min_cell=cell), "autorange": "reversed",
             "tickangle": 0, "scaleanchor": "x"}
    cap = model.mean_capacity if layer == 0 else float(np.mean(model.capacity_of(layer)))
    what = "clause" if run.has_clauses and layer == 0 else "feature"
    sym = f"W{layer + 1}"
    head = ("Gram of the flattened filters" if model.is_cnn and layer < len(model.channels) else f"Gram {sym}ᵀ{sym}")
    fig = _figure([trace] + _beyond_trace(z, sc.zmax, list(labels), list(labels)),
                  f"{head} · mean {what} capacity {cap:.3f}" + _range_note("G", sc),
                  _PLOT_W + 140,
                  uirevision=run.info.id, xaxis=xaxis, yaxis=yaxis, shapes=shapes,
                  margin={"l": 56, "r": 70, "t": 62, "b": 56})
    return fig


def readout_heatmap(run: LoadedRun, model: ModelData, zmax: float | Scale | None = None) -> Figure:
    """The readout: last-layer weights, one row per output (class), one column per
    last hidden neuron (a CNN head's: per filter and position), on the row's
    shared range ±`zmax`."""
    last = model.n_hidden_layers
    W, M = model.layers[last]
    cols, labels = model.readout_inputs()
    z = W[:, cols].astype(np.float32)
    z[M[:, cols] == 0] = np.nan
    sc = _scale_of(zmax, W)
    O, n = z.shape
    outs = run.out_labels or [f"y{o}" for o in range(O)]
    trace = {"type": "heatmap", "z": _typed(z), "x": labels, "y": outs, "colorscale": _DIVERGING,
             "zmin": -sc.zmax, "zmax": sc.zmax, "hoverongaps": False, "colorbar": _colorbar("w", sc),
             "hovertemplate": "output %{y} · %{x}<br>w = %{z:.3f}<extra></extra>"}
    row_h = max(16, _row_height(O))
    inputs = f"{model.unit_name}s" if not model.is_cnn else "filter × position inputs"
    fig = _figure([trace] + _beyond_trace(z, sc.zmax, labels, outs),
                  f"readout: {O} output{'s' if O != 1 else ''} × {n} {inputs} (layer {last + 1})"
                  + _range_note("w", sc),
                  max(210, 110 + O * row_h), uirevision=run.info.id,
                  xaxis=_column_axis(run, None, labels, clause_cols=False),
                  yaxis={"type": "category", "autorange": "reversed", "tickfont": {"size": 10}, "title": {"text": "class"
                         if O > 1 else ""}}, plot_bgcolor=MASK_COLOR, margin={"l": 56, "r": 70, "t": 62, "b": 56})
    return fig


# --------------------------------------------------------------------------- network-level panels


def polysemanticity_bar(run: LoadedRun, model: ModelData, codes: ModelCodes, clause: int | None = None) -> Figure:
    """Clauses per neuron (in display order); the selected clause's channel in
    CHANNEL_COLOR. The title is the legend."""
    rows = model.row_order
    channel = set(_channel(codes, clause))
    colors = [CHANNEL_COLOR if int(i) in channel else MODEL_COLORS[model.name] for i in rows]
    trace = {"type": "bar", "x": model.labels, "y": codes.polysemanticity[rows].tolist(), "name": "neurons",
             "marker": {"color": colors}, "meta": {"hl": ["marker.color"]},
             "hovertemplate": "%{x}: in %{y} clause channels<extra></extra>"}
    shapes = []
    if model.parent_index is not None and len(set(model.parent_index.tolist())) <= _MAX_BLOCKS:
        shapes = [_line(b - 0.5, 0, b - 0.5, 1, yref="paper") for b in _boundaries(model.parent_index[rows])]
    mean = float(codes.polysemanticity.mean()) if len(rows) else math.nan
    legend = (f"{_swatch(MODEL_COLORS[model.name], 'neuron (bar: clause channels it is in)')} · "
              f"{_swatch(CHANNEL_COLOR, 'in the selected clause’s channel')}")
    H = len(rows)
    fig = _figure([trace], f"polysemanticity · mean {mean:.2f} clauses/neuron<br><span style='font-size:10px'>"
                           f"{legend}</span>", 240, uirevision=run.info.id,
                  xaxis={"type": "category", "tickangle": -90, "tickfont": {"size": 9}, "tickmode": "array",
                         "tickvals": model.labels[::_thin(H, _plot_width(H, 8))]},
                  yaxis={"title": {"text": "clauses"}, "dtick": 1, "rangemode": "tozero", "gridcolor": "#eee"},
                  shapes=shapes, bargap=0.15, margin={"l": 50, "r": 10, "t": 52, "b": 56})
    return fig


def _ring(xy: tuple[float, float], r: float = 0.13) -> str:
    """A closed 24-gon path around a node (the selected clause)."""
    pts = [(xy[0] + r * math.cos(2 * math.pi * k / 24), xy[1] + r * math.sin(2 * math.pi * k / 24)) for k in range(24)]
    return "M" + " L".join(f"{x:.4f},{y:.4f}" for x, y in pts) + " Z"


def _circle(nodes: list[int]) -> dict[int, tuple[float, float]]:
    """Nodes on a circle, clockwise from the top (deterministic)."""
    n = max(len(nodes), 1)
    return {c: (math.sin(2 * math.pi * k / n), math.cos(2 * math.pi * k / n)) for k, c in enumerate(nodes)}


_COLLISION_LEGEND = ("<span style='font-size:10px'>node = clause · colour: entangled group · "
                     "<span style='color:#9e9e9e'>●</span> no collision · ○ no channel<br>"
                     "edge = channels sharing neurons (width: how many) · "
                     f"<span style='color:{CHANNEL_COLOR}'>━</span> the selected clause’s</span>")


def collision_figure(run: LoadedRun, graph: nx.Graph, clause: int | None = None, title: str = "") -> Figure:
    """The collision graph (networkx): clauses on a circle, an edge per pair of
    colliding channels (width = shared neurons), nodes coloured by entangled group
    (connected component with an edge; grey when alone), hollow when the clause has
    no channel. The selected clause's edges are drawn on top in CHANNEL_COLOR
    (highlight shape `selected-edges:<partners>`) and its node is ringed
    (`selected-node:<c>`). Node customdata is the clause index, for click-to-select."""
    nodes = sorted(graph.nodes)
    pos = _circle(nodes)
    comps = sorted((sorted(c) for c in nx.connected_components(graph) if len(c) > 1), key=lambda c: c[0])
    comp_of = {c: k for k, comp in enumerate(comps) for c in comp}
    by_weight: dict[int, list[tuple[int, int]]] = {}
    for a, b, d in graph.edges(data=True):
        by_weight.setdefault(int(d.get("weight", 1)), []).append((a, b))

    def segments(edges):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for a, b in edges:
            xs += [pos[a][0], pos[b][0], None]
            ys += [pos[a][1], pos[b][1], None]
        return xs, ys

    data = []
    for w, edges in sorted(by_weight.items()):
        xs, ys = segments(edges)
        data.append({"type": "scatter", "x": xs, "y": ys, "mode": "lines", "hoverinfo": "skip", "showlegend": False,
                     "name": f"collisions sharing {w}",
                     "line": {"width": 1 + 1.5 * min(w, 4), "color": "rgba(90,90,90,0.45)"}})
    colors, sizes, symbols, widths, hovers = [], [], [], [], []
    for c in nodes:
        d = graph.nodes[c]
        k = comp_of.get(c)
        colors.append(_COMPONENT_COLORS[k % len(_COMPONENT_COLORS)] if k is not None else "#9e9e9e")
        size = int(d.get("size", 0))
        sizes.append(14 + 3 * min(size, 6))
        symbols.append("circle" if size else "circle-open")
        widths.append(0.5 if size else 1.5)
        partners = ", ".join(f"c{o} ({graph[c][o].get('weight', 1)})" for o in sorted(graph[c])) or "none"
        hovers.append(f"c{c}: {d.get('label', '')}<br>channel {d.get('channel', [])}<br>collides with {partners}")
    data.append({
        "type": "scatter", "x": [pos[c][0] for c in nodes], "y": [pos[c][1] for c in nodes],
        "mode": "markers+text" if len(nodes) <= 40 else "markers", "text": [f"c{c}" for c in nodes],
        "textposition": "middle center", "textfont": {"size": 9, "color": "#111"}, "customdata": nodes,
        "hovertext": hovers, "hoverinfo": "text", "showlegend": False, "name": "clauses",
        "marker": {"color": colors, "size": sizes, "symbol": symbols, "line": {"color": CLAUSE_COLOR, "width": widths}},
    })
    sel_edges, sel_node, sel_partners = "", "", []
    if clause is not None and clause in pos:
        x0, y0 = pos[clause]
        sel_partners = sorted(graph[clause])
        sel_edges = " ".join(f"M{x0:.4f},{y0:.4f} L{pos[o][0]:.4f},{pos[o][1]:.4f}" for o in sel_partners)
        sel_node = _ring(pos[clause])
    shapes = [_hl_shape("selected-edges", sel_partners, [], CHANNEL_COLOR, 3, extra_path=sel_edges),
              _hl_shape("selected-node", [clause] if clause is not None and sel_node else [], [], CLAUSE_COLOR, 3, extra_path=sel_node)]
    n_edges = graph.number_of_edges()
    head = title + " · " if title else ""
    return _figure(data, f"{head}{n_edges} collision{'s' if n_edges != 1 else ''}, {len(comps)} entangled group"
                         f"{'s' if len(comps) != 1 else ''}<br>{_COLLISION_LEGEND}", 380, uirevision=run.info.id,
                   xaxis={"visible": False, "range": [-1.3, 1.3]}, shapes=shapes,
                   yaxis={"visible": False, "range": [-1.3, 1.3], "scaleanchor": "x"},
                   margin={"l": 10, "r": 10, "t": 72, "b": 10})


def capacity_figure(analysis: RunAnalysis, clause: int | None = None, layer: int = 0) -> Figure:
    """Feature capacity of every network: per clause (mean over its variables) on
    a Boolean task's first layer, the selected clause shaded; otherwise per input
    of the layer. Bars' x is the clause name `c<j>` (or the input's label)."""
    run = analysis.run
    per_clause = run.has_clauses and layer == 0 and analysis.codes
    if per_clause:
        names = [f"c{c}" for c in range(run.n_clauses)]
        ys = {name: [r["capacity"] for r in codes.rows] for name, codes in analysis.codes.items()}
        title = "Feature capacity per clause (mean over its variables)"
    else:
        first = next(iter(run.models.values()))
        cols, names = _layer_columns(run, first, layer)
        names = list(names)
        ys = {name: m.capacity_of(layer)[cols].tolist() for name, m in run.models.items()}
        title = f"Feature capacity per input of layer {layer + 1}"
    data = [{"type": "bar", "x": names, "y": y, "name": run.models[name].title,
             "marker": {"color": MODEL_COLORS[name]},
             "hovertemplate": "%{x}: capacity %{y:.3f}<extra>" + run.models[name].title + "</extra>"}
            for name, y in ys.items()]
    shapes = []
    if per_clause:
        sel = [] if clause is None else [clause]
        shapes.append(_hl_shape("clause", sel, [(c - 0.5, c + 0.5, 0, 1) for c in sel], CHANNEL_COLOR, yref="paper",
                                fill="rgba(0,166,81,0.15)"))
    n = len(names)
    fig = _figure(data, title, 280, uirevision=run.info.id, barmode="group",
                  xaxis={"type": "category", "tickmode": "array", "tickvals": names[::_thin(n, _plot_width(n, 6) * 1.5)],
                         "tickfont": {"size": 9}},
                  yaxis={"range": [0, 1.05], "gridcolor": "#eee", "title": {"text": "capacity"}},
                  shapes=shapes, legend={"orientation": "h", "y": -0.3}, margin={"l": 50, "r": 10, "t": 36, "b": 50})
    return fig


def model_figures(analysis: RunAnalysis, clause: int | None, view: str, layer: int = 0,
                  ranges: dict[str, Scale] | None = None) -> dict[str, dict[str, Figure]]:
    """Every per-network figure: {network: {"weights", "gram", "readout"[, "poly",
    "collisions"]}}, on the shared row ranges `ranges` ({"weights", "gram",
    "readout"} -> zmax; computed from this run's networks when not given)."""
    run = analysis.run
    ranges = ranges or shared_ranges([run], layer)
    out = {}
    for name, model in run.models.items():
        codes = analysis.codes.get(name)
        v = view if (view != "codes" or (codes is not None and layer == 0)) else "weights"
        pictures = v != "codes" and ((layer == 0 and len(run.image_shape) == 3 and not run.has_clauses)
                                     or (model.is_cnn and layer < len(model.channels)))
        figs = {
            "weights": (weight_pictures(run, model, v, layer, ranges["weights"]) if pictures
                        else weight_heatmap(run, model, codes, clause, v, layer, ranges["weights"])),
            "gram": gram_heatmap(run, model, clause, layer, ranges["gram"]),
            "readout": readout_heatmap(run, model, ranges["readout"]),
        }
        if codes is not None:
            figs["poly"] = polysemanticity_bar(run, model, codes, clause)
            figs["collisions"] = collision_figure(run, codes.graph, clause, title=model.title.split(" (")[0])
        out[name] = figs
    return out


def shared_ranges(runs: Sequence[LoadedRun], layer: int = 0) -> dict[str, Scale]:
    """The robust symmetric colour scales (`row_scale`) of the weights, Gram and
    readout rows, shared by every network of `runs` (one scale per row, also
    across compared runs)."""
    models = [m for r in runs for m in r.models.values()]
    lay = [min(layer, m.n_hidden_layers - 1) for m in models]
    return {
        "weights": row_scale(m.layers[l][0] for m, l in zip(models, lay)),
        "gram": row_scale(m.gram_of(l) for m, l in zip(models, lay)),
        "readout": row_scale(m.layers[-1][0] for m in models),
    }
