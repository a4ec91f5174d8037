"""How every study's figures look: one colour per condition (dense, the restart control,
each registered split), one dash and symbol per alpha, labels, error-bar traces,
captions, the loss-curve figure, and writing a figure (self-contained HTML plus its
plotly JSON).

Every written figure is made honest first (`honest`): a value a log axis cannot
draw (0 or below) is drawn at the axis floor as an open triangle and said so in
the figure, instead of vanishing; log axes get readable tick labels (1-2-5
values written in full, no bare minor digits); an axis whose values are all one
number gets that one tick; and the caption promises error bars and stars only
when the figure draws them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.levels import CONFIG_KEYS
from fci.fpe.splits import SPLITS, split_info
from fci.io import atomic_write

__all__ = ["COLORS", "DASHES", "SYMBOLS", "style", "label", "significance_text", "add_metric_traces", "add_caption", "loss_figure",
           "write_figure", "honest", "star_trace", "log_ticks", "FLOOR_NAME"]


def write_figure(fig: go.Figure, path: Path) -> Path:
    """A self-contained HTML file (plotly.js inlined: opens offline), and the
    figure as plotly JSON beside it (`<stem>.plotly.json`, for re-rendering,
    e.g. to PNG with `python -m analyses.pictures`)."""
    path = Path(path)
    fig = honest(fig)
    atomic_write(path.with_suffix(".plotly.json"), lambda p: p.write_text(fig.to_json()))
    return atomic_write(path, lambda p: fig.write_html(str(p), include_plotlyjs=True, full_html=True))


class _Colors(Mapping[str, str]):
    """Condition -> colour: dense black, the restart control purple, each split the
    colour it was registered with (`fci.fpe.register_split`); a live view."""

    FIXED = {"dense": "#222222", "restart": "#9467bd"}

    def __getitem__(self, key: str) -> str:
        if key in self.FIXED:
            return self.FIXED[key]
        if key in SPLITS:
            return split_info(key).color
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter([*self.FIXED, *SPLITS])

    def __len__(self) -> int:
        return len(self.FIXED) + len(SPLITS)


COLORS: Mapping[str, str] = _Colors()


DASHES = {1: "solid", 2: "dot", 4: "solid", 8: "dash", 16: "dashdot"}


SYMBOLS = {1: "circle", 2: "circle-open", 4: "circle", 8: "diamond", 16: "square"}


def style(condition: str, alpha: int) -> dict[str, Any]:
    """Line and marker style of a condition: colour by split, dash by alpha
    (as in the paper: dotted alpha=2, solid alpha=4)."""
    return {"line": {"color": COLORS.get(condition, "#7f7f7f"), "dash": DASHES.get(int(alpha), "longdash")},
            "marker": {"color": COLORS.get(condition, "#7f7f7f"), "symbol": SYMBOLS.get(int(alpha), "x"), "size": 8}}


def label(condition: str, alpha: int) -> str:
    if condition in ("dense", "restart"):
        return condition if condition == "dense" else "restart (α=1)"
    return f"{condition} α={int(alpha)}"


#: Name of the traces that draw a log axis's non-positive values at its floor.
FLOOR_NAME = "≤ 0, drawn at the floor"


def star_trace(x: Sequence[Any], mean: Sequence[float], sem: Sequence[float], p: Sequence[float], color: str, *,
               name: str = "", alpha_level: float = 0.05) -> go.Scatter:
    """'*' above the error bar of each point whose p < alpha_level (clear of the bar)."""
    m = np.asarray(mean, dtype=float)
    e = np.nan_to_num(np.asarray(sem, dtype=float))
    stars = significance_text(p, alpha_level)
    keep = [i for i, t in enumerate(stars) if t]
    return go.Scatter(x=[list(x)[i] for i in keep], y=[m[i] + e[i] for i in keep], mode="text", text=["*"] * len(keep),
                      textposition="top center", textfont={"size": 16, "color": color}, showlegend=False,
                      hoverinfo="skip", name=f"{name} p<{alpha_level:g}" if name else f"p<{alpha_level:g}")


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Tick values and labels of a log axis spanning [lo, hi] (both > 0): every decade,
    with 2 and 5 between when it spans less than three decades; labels written in full."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    vals: list[float] = []
    for steps in ((1,), (1, 2, 5), tuple(range(1, 10))):
        vals = [float(f"{m * 10.0 ** d:.6g}") for d in range(a, b + 1) for m in steps]
        vals = [v for v in vals if lo / 1.0001 <= v <= hi * 1.0001]
        if len(vals) >= 3:
            break
    if len(vals) < 2:  # less than a tenth of a decade: three round values across it
        vals = sorted({float(f"{v:.2g}") for v in np.geomspace(lo, hi, 3)})
    return vals, [f"{v:.6g}" for v in vals]


def _axis_names(fig: go.Figure, letter: str) -> list[str]:
    return [k for k in fig.layout.to_plotly_json() if re.fullmatch(letter + r"axis\d*", k)]


def _trace_axis(t: Any, letter: str) -> str:
    ref = (t.xaxis if letter == "x" else t.yaxis) or letter
    return f"{letter}axis{ref[1:]}"


def _array(v: Any) -> np.ndarray:
    """A trace's data array as floats: a list, a numpy array or plotly's base64 typed array."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape([int(d) for d in str(v.get("shape", len(a))).split(",")]).astype(float)
    return np.asarray([np.nan if u is None else u for u in v], dtype=float)


def _values(t: Any, letter: str) -> np.ndarray | None:
    v = t.x if letter == "x" else t.y
    if v is None or not hasattr(t, "mode"):
        return None
    try:
        return _array(v)
    except (TypeError, ValueError):
        return None


def honest(fig: go.Figure) -> go.Figure:
    """The figure with nothing hidden by its axes and a caption that says what is drawn
    (see the module docstring); returns it."""
    for letter in ("x", "y"):
        for name in _axis_names(fig, letter):
            axis = fig.layout[name]
            traces = [t for t in fig.data if _trace_axis(t, letter) == name]
            vals = [(t, v) for t in traces if (v := _values(t, letter)) is not None]
            if axis.type == "log":
                _floor_nonpositive(fig, name, letter, vals)
            elif vals and axis.tickvals is None:
                allv = np.concatenate([v[np.isfinite(v)] for _, v in vals]) if vals else np.zeros(0)
                if allv.size and np.all(allv == allv[0]) and not any(_spread(t, letter) for t, _ in vals):
                    fig.layout[name].update(tickvals=[float(allv[0])], ticktext=[f"{allv[0]:.6g}"])
    _honest_caption(fig)
    return fig


def _spread(t: Any, letter: str) -> bool:
    """Whether a trace draws error bars of non-zero length along axis `letter`."""
    e = getattr(t, f"error_{letter}", None)
    return bool(e is not None and e.array is not None and e.visible is not False and np.nan_to_num(_array(e.array)).any())


def _floor_nonpositive(fig: go.Figure, name: str, letter: str, vals: list[tuple[Any, np.ndarray]]) -> None:
    """Move a log axis's non-positive values to a marker row at its floor, and give it readable ticks."""
    pos = np.concatenate([v[np.isfinite(v) & (v > 0)] for _, v in vals]) if vals else np.zeros(0)
    if not pos.size:
        return
    lo, hi = float(pos.min()), float(pos.max())
    floor = 10 ** (math.log10(lo) - 0.35)
    floored = 0
    for t, v in vals:
        bad = np.isfinite(v) & (v <= 0)
        if not bad.any() or t.name == FLOOR_NAME:
            continue
        kept = np.where(bad, np.nan, v)
        if letter == "x":
            t.x = [None if np.isnan(u) else float(u) for u in kept]
        else:
            t.y = [None if np.isnan(u) else float(u) for u in kept]
        color = (t.marker.color if t.marker and isinstance(t.marker.color, str) else None) or \
            (t.line.color if t.line else None) or "#444"
        idx = np.flatnonzero(bad)
        raw = t.y if letter == "x" else t.x
        raw_other = list(_array(raw)) if isinstance(raw, dict) else list(raw)
        o = [raw_other[i] for i in idx]
        fx, fy = ([floor] * len(idx), o) if letter == "x" else (o, [floor] * len(idx))
        fig.add_trace(go.Scatter(x=fx, y=fy, mode="markers", name=FLOOR_NAME, showlegend=False, xaxis=t.xaxis,
                                 yaxis=t.yaxis, marker={"symbol": "triangle-down-open", "size": 10, "color": color,
                                                        "line": {"width": 1.5}},
                                 hovertemplate=f"{t.name or ''}: a value ≤ 0 (drawn at the floor)<extra></extra>"))
        floored += len(idx)
    if fig.layout[name].tickvals is None:
        ticks, text = log_ticks(min(lo, floor if floored else lo), hi)
        fig.layout[name].update(tickvals=ticks, ticktext=text)
    if floored:
        vals_now = list(fig.layout[name].tickvals) + [floor]
        text_now = list(fig.layout[name].ticktext or [f"{u:.6g}" for u in fig.layout[name].tickvals]) + ["≤0 ▽"]
        fig.layout[name].update(tickvals=vals_now, ticktext=text_now)
        fig.add_annotation(text=f"▽ at the foot of a log axis: {floored} value{'s' if floored != 1 else ''} ≤ 0, "
                                "which a log axis cannot place", xref="paper", yref="paper", x=1, y=1.0, yshift=18,
                           xanchor="right", yanchor="bottom", showarrow=False, font={"size": 10, "color": "#555"})


_SEM = re.compile(r"(?:bands/)?(?:error bars:? ?)?±1 s\.e\.m\.(?: over (?:trials|seeds))?")
_STAR = re.compile(r"\* ?p ?< ?0\.05(?:,? ?\(?(?:paired|unpaired)[^)·<]*\)?)?")


def _draws_errors(fig: go.Figure) -> bool:
    for t in fig.data:
        for e in (getattr(t, "error_y", None), getattr(t, "error_x", None)):
            if e is not None and e.array is not None and e.visible is not False:
                if np.nan_to_num(_array(e.array)).any():
                    return True
        if getattr(t, "fill", None) in ("toself", "tonexty", "tonextx"):
            return True
    return False


def _draws_stars(fig: go.Figure) -> bool:
    for t in fig.data:
        text = getattr(t, "text", None)
        mode = getattr(t, "mode", None) or ""
        if "text" in mode and text is not None and any("*" in str(v) for v in (text if not isinstance(text, str) else [text])):
            return True
    return any("*" in (a.text or "") and "p<" not in (a.text or "") and "p <" not in (a.text or "")
               for a in fig.layout.annotations)


def _honest_caption(fig: go.Figure) -> None:
    """Drop the caption's promise of error bars or stars when the figure draws none."""
    errors, stars = _draws_errors(fig), _draws_stars(fig)
    for a in fig.layout.annotations:
        text = a.text or ""
        new = text if errors else _SEM.sub("", text)
        new = new if stars else _STAR.sub("", new)
        if new != text:
            new = re.sub(r"(?:\s*[;·,]\s*)+(?=<br>|$)", "", re.sub(r"·\s*[;,]\s*", "· ", new))
            a.text = re.sub(r"(\s*·\s*){2,}", " · ", new).rstrip(" ·;,")


def significance_text(p: Iterable[float], alpha_level: float = 0.05) -> list[str]:
    """'*' where p < alpha_level (SPEC §4: figures mark p < 0.05), '' elsewhere."""
    return ["*" if (p is not None and np.isfinite(p) and p < alpha_level) else "" for p in p]


def add_metric_traces(fig: go.Figure, stats: pd.DataFrame, x: str, y: str, *, row: int | None = None,
                      col: int | None = None, p: str | None = None, conditions: Sequence[tuple[str, int]] | None = None,
                      showlegend: bool = True, customdata: Sequence[str] | None = None) -> None:
    """One line per (condition, alpha) of `stats`: `<y>_mean` against `x` with
    `<y>_sem` error bars and '*' above points whose `p` column is < 0.05."""
    if stats.empty:
        return
    keys = conditions or sorted({(c, int(a)) for c, a in zip(stats.condition, stats.alpha)}, key=lambda t: (t[0] != "dense", t[1], t[0]))
    for cond, alpha in keys:
        g = stats[(stats.condition == cond) & (stats.alpha == alpha)].sort_values(x)
        if g.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=g[x], y=g[f"{y}_mean"],
                error_y={"type": "data", "array": g[f"{y}_sem"].fillna(0), "visible": True},
                mode="lines+markers",
                name=label(cond, alpha), legendgroup=label(cond, alpha), showlegend=showlegend,
                hovertemplate=f"{label(cond, alpha)}<br>{x}=%{{x}}<br>{y}=%{{y:.4g}}<extra></extra>",
                **style(cond, alpha),
            ),
            row=row, col=col,
        )
        if p and p in g and significance_text(g[p]).count("*"):
            fig.add_trace(star_trace(g[x], g[f"{y}_mean"], g[f"{y}_sem"], g[p], COLORS.get(cond, "#7f7f7f"),
                                     name=label(cond, alpha)), row=row, col=col)


def add_caption(fig: go.Figure, caption: str, height_px: int = 70) -> go.Figure:
    """Put the run's configuration under the figure (paper coordinates)."""
    b = fig.layout.margin.b or 0
    fig.update_layout(margin={"b": max(b, height_px + 70)})
    fig.add_annotation(text=caption, xref="paper", yref="paper", x=0, y=0, yshift=-(height_px + 20), xanchor="left",
                       yanchor="top", showarrow=False, align="left", font={"size": 11, "color": "#555"})
    return fig


def loss_figure(curves: pd.DataFrame, title: str, caption: str, max_panels: int = 16) -> go.Figure:
    """Mean train loss per epoch (log scale), one panel per configuration, one line
    per condition: the evidence that the schedule converges. Children start where
    the dense warm-up ends; the dense line goes on as the paired baseline."""
    from plotly.subplots import make_subplots

    configs = sorted({tuple(r) for r in curves[CONFIG_KEYS].itertuples(index=False)})[:max_panels]
    cols = min(4, max(1, len(configs)))
    rows = max(1, math.ceil(len(configs) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"C={c} k={k} H={h}" for c, k, h in configs],
                        shared_xaxes=True, vertical_spacing=0.12 / max(1, rows - 1) if rows > 1 else 0.1)
    for i, (c, k, h) in enumerate(configs):
        g = curves[(curves.n_clauses == c) & (curves.clause_size == k) & (curves.hidden == h)]
        for (cond, alpha), gg in sorted(g.groupby(["condition", "alpha"]), key=lambda t: (t[0][0] != "dense", t[0][1], t[0][0])):
            gg = gg.sort_values("epoch")
            fig.add_trace(go.Scatter(x=gg.epoch, y=gg.loss_mean, mode="lines", name=label(cond, alpha),
                                     legendgroup=label(cond, alpha), showlegend=i == 0, line=style(cond, alpha)["line"]),
                          row=i // cols + 1, col=i % cols + 1)
    fig.update_yaxes(type="log")
    fig.update_xaxes(title_text="epoch", row=rows)
    fig.update_yaxes(title_text="train loss (BCE)", col=1)
    height, top, bottom = 300 * rows + 230, 130, 140  # bottom: add_caption's margin
    fig.update_layout(title=title, height=height, width=1200, template="plotly_white", margin={"t": top},
                      # above the panels' titles, every entry in view (a legend beside them scrolled)
                      legend={"orientation": "h", "x": 0, "y": 1 + 44 / (height - top - bottom), "yanchor": "bottom"})
    return add_caption(fig, caption)
