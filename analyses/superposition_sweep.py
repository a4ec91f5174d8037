"""Superposition sweep (paper Figure 3): does FPE help more when features share neurons?

Relative improvement in test accuracy over the paired dense baseline, and
accuracy per non-zero parameter, (a) against hidden width at 8 clauses and
(b) against clause count at 8 neurons, for clause and random split at alpha 2
and 4; (c) heatmaps of relative improvement over the (hidden x clauses) grid.

    python -m analyses.superposition_sweep [--quick] [--out DIR] [--device auto|cpu|cuda]
                                           [--trials N] [--seed S] [--shard I/N] [--data DIR]
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses import register
from analyses.kinds import Context, Study
from analyses.levels import HEADLINE, superposition_points
from analyses.runner import run
from analyses.style import add_caption, add_metric_traces, significance_text

__all__ = ["STUDY", "main", "points", "trend_figure", "heatmap_figure", "summarise"]

CHILDREN = [("clause", 2), ("random", 2), ("clause", 4), ("random", 4)]


def points(level: str):
    """The full (hidden x clauses) grid; its lines through 8 clauses / 8 neurons give panels (a) and (b)."""
    return superposition_points(level, grid=True)


def _percent(stats: pd.DataFrame) -> pd.DataFrame:
    s = stats.copy()
    s["ri_pct_mean"] = 100 * s["rel_improvement_mean"]
    s["ri_pct_sem"] = 100 * s["rel_improvement_sem"]
    s["ri_pct_p"] = s["rel_improvement_p"]
    return s


def _log2_axis(values: Sequence[int]) -> dict:
    v = sorted({int(x) for x in values})
    return {"type": "log", "tickvals": v, "ticktext": [str(x) for x in v]}


def trend_figure(stats: pd.DataFrame, caption: str = "", n_clauses: int = HEADLINE.n_clauses,
                 hidden: int = HEADLINE.hidden) -> go.Figure:
    """Figure 3(a, b): relative improvement (%) and accuracy per parameter against
    hidden width at `n_clauses` clauses and against clause count at `hidden` neurons."""
    s = _percent(stats)
    by_h = s[(s.n_clauses == n_clauses)]
    by_c = s[(s.hidden == hidden)]
    fig = make_subplots(rows=2, cols=2, shared_xaxes="columns", vertical_spacing=0.08, horizontal_spacing=0.08,
                        subplot_titles=[f"(a) {n_clauses} clauses: relative improvement", f"(b) {hidden} neurons: relative improvement",
                                        "(a) accuracy per non-zero parameter", "(b) accuracy per non-zero parameter"])
    for col, (sub, x) in enumerate(((by_h, "hidden"), (by_c, "n_clauses")), start=1):
        add_metric_traces(fig, sub[sub.condition != "dense"], x, "ri_pct", row=1, col=col, p="ri_pct_p",
                          conditions=CHILDREN, showlegend=col == 1)
        add_metric_traces(fig, sub, x, "acc_per_param", row=2, col=col, p="test_accuracy_p",
                          conditions=[("dense", 1)] + CHILDREN, showlegend=False)
        fig.add_hline(y=0, line={"color": "black", "dash": "dash", "width": 1}, row=1, col=col)
        fig.update_xaxes(**_log2_axis(sub[x]), row=1, col=col)
        fig.update_xaxes(**_log2_axis(sub[x]), title_text="hidden neurons (before expansion)" if x == "hidden" else "clauses",
                         row=2, col=col)
    # The dense line of the accuracy-per-parameter rows.
    for d in fig.data:
        if d.name == "dense":
            d.showlegend = True
            break
    fig.update_yaxes(title_text="relative improvement (%)", row=1, col=1)
    fig.update_yaxes(title_text="accuracy / nnz", type="log", row=2, col=1)
    fig.update_yaxes(type="log", row=2, col=2)
    fig.update_layout(title="FPE gains under superposition (paper Fig. 3a,b): relative improvement over the paired dense "
                            "baseline at equal nnz", height=850, width=1200, template="plotly_white")
    return add_caption(fig, caption)


def heatmap_figure(stats: pd.DataFrame, caption: str = "", alphas: Sequence[int] = (2, 4)) -> go.Figure:
    """Figure 3(c): relative improvement (%) over the (hidden x clauses) grid, one
    heatmap per split (rows) and alpha (columns); '*' marks p < 0.05."""
    s = _percent(stats[stats.condition != "dense"])
    splits = [sp for sp in ("clause", "random", "gram") if sp in set(s.condition)]
    alphas = [a for a in alphas if a in set(s.alpha)] or sorted(set(s.alpha))
    fig = make_subplots(rows=max(1, len(splits)), cols=max(1, len(alphas)), horizontal_spacing=0.1, vertical_spacing=0.12,
                        subplot_titles=[f"{sp} split, α={a}" for sp in splits for a in alphas])
    zmax = float(np.nanmax(np.abs(s["ri_pct_mean"]))) if len(s) else 1.0
    for i, sp in enumerate(splits):
        for j, a in enumerate(alphas):
            g = s[(s.condition == sp) & (s.alpha == a)]
            hs = sorted(g.hidden.unique())
            cs = sorted(g.n_clauses.unique())
            z = np.full((len(hs), len(cs)), np.nan)
            text = [["not run" for _ in cs] for _ in hs]
            for r in g.itertuples():
                hi, ci = hs.index(r.hidden), cs.index(r.n_clauses)
                z[hi, ci] = r.ri_pct_mean
                text[hi][ci] = f"{r.ri_pct_mean:+.1f}{significance_text([r.ri_pct_p])[0]}"
            fig.add_trace(go.Heatmap(z=z, x=[str(c) for c in cs], y=[str(h) for h in hs], text=text, texttemplate="%{text}",
                                     colorscale="RdBu", zmid=0, zmin=-zmax, zmax=zmax, showscale=(i == 0 and j == 0),
                                     colorbar={"title": "rel. impr. (%)"},
                                     hovertemplate="clauses=%{x}<br>hidden=%{y}<br>%{z:.2f}%<extra></extra>"),
                          row=i + 1, col=j + 1)
            fig.update_xaxes(title_text="clauses", type="category", row=i + 1, col=j + 1)
            fig.update_yaxes(title_text="hidden neurons", type="category", row=i + 1, col=j + 1)
    fig.update_layout(title="Relative improvement (%) of FPE over dense at equal nnz (paper Fig. 3c); * p<0.05",
                      height=380 * max(1, len(splits)) + 150, width=1100, template="plotly_white")
    return add_caption(fig, caption)


def figures(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context) -> dict[str, go.Figure]:
    return {"trends": trend_figure(stats, ctx.caption), "heatmaps": heatmap_figure(stats, ctx.caption)}


def summarise(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context | None = None) -> dict:
    """Does the gain grow with superposition load? Spearman correlation of the
    mean relative improvement with hidden width (at 8 clauses; load falls as width
    grows) and with clause count (at 8 neurons; load grows), per split and alpha."""
    from scipy.stats import spearmanr

    out = []
    s = stats[stats.condition != "dense"]
    for (sp, a), g in s.groupby(["condition", "alpha"]):
        rec = {"condition": sp, "alpha": int(a)}
        for name, sub, x in (("hidden", g[g.n_clauses == HEADLINE.n_clauses], "hidden"),
                             ("clauses", g[g.hidden == HEADLINE.hidden], "n_clauses")):
            sub = sub.sort_values(x)
            rec[f"by_{name}"] = {str(int(v)): float(r) for v, r in zip(sub[x], sub.rel_improvement_mean)}
            rec[f"spearman_{name}"] = float(spearmanr(sub[x], sub.rel_improvement_mean)[0]) if len(sub) >= 3 else None
        out.append(rec)
    return {"superposition_trend": out}


STUDY = register(Study(
    name="superposition_sweep",
    description=__doc__,
    points=points,
    figures=figures,
    summarise=summarise,
))


def main(argv: Sequence[str] | None = None) -> int:
    return run(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
