"""How every study's figures look: one colour per condition (dense, the restart control,
each registered split), one dash and symbol per alpha, labels, error-bar traces,
captions, the loss-curve figure, and writing a figure (self-contained HTML plus its
plotly JSON).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.levels import CONFIG_KEYS
from fci.fpe.splits import SPLITS, split_info
from fci.io import atomic_write

__all__ = ["COLORS", "DASHES", "SYMBOLS", "style", "label", "significance_text", "add_metric_traces", "add_caption", "loss_figure", "write_figure"]


def write_figure(fig: go.Figure, path: Path) -> Path:
    """A self-contained HTML file (plotly.js inlined: opens offline), and the
    figure as plotly JSON beside it (`<stem>.plotly.json`, for re-rendering,
    e.g. to PNG with `python -m analyses.pictures`)."""
    path = Path(path)
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
        text = significance_text(g[p]) if p and p in g else None
        fig.add_trace(
            go.Scatter(
                x=g[x], y=g[f"{y}_mean"],
                error_y={"type": "data", "array": g[f"{y}_sem"].fillna(0), "visible": True},
                mode="lines+markers+text" if text else "lines+markers",
                text=text, textposition="top center", textfont={"size": 16, "color": COLORS.get(cond, "#7f7f7f")},
                name=label(cond, alpha), legendgroup=label(cond, alpha), showlegend=showlegend,
                hovertemplate=f"{label(cond, alpha)}<br>{x}=%{{x}}<br>{y}=%{{y:.4g}}<extra></extra>",
                **style(cond, alpha),
            ),
            row=row, col=col,
        )


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
    fig.update_layout(title=title, height=300 * rows + 150, width=1200, template="plotly_white")
    return add_caption(fig, caption)
