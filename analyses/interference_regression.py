"""Interference regression (paper Figure 4): does the gain track reduced interference?

Fold changes (FPE / paired dense baseline) of feature capacity (mean over clause
variables) and of cosine interference between neurons, (a) against hidden
width at 8 clauses and (b) against clause count at 8 neurons; (c) least-squares
regressions (scikit-learn) of relative improvement on each fold change, with R²,
per split and alpha, over the configurations of each sweep.

    python -m analyses.interference_regression [--quick] [--out DIR] [--device auto|cpu|cuda]
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
from analyses.style import add_caption, add_metric_traces, label, style
from analyses.tables import paired_rows

__all__ = ["STUDY", "main", "points", "fold_figure", "regressions", "regression_figure", "summarise"]

CHILDREN = [("clause", 2), ("random", 2), ("clause", 4), ("random", 4)]
FOLDS = (("feature_capacity", "feature capacity"), ("cosine_interference", "cosine interference"))
SWEEPS = (("hidden", "hidden"), ("clauses", "n_clauses"))
_SWEEP_TITLE = {"hidden": f"widths at {HEADLINE.n_clauses} clauses", "clauses": f"clause counts at {HEADLINE.hidden} neurons"}


def points(level: str):
    """The two lines of the superposition sweep: widths at 8 clauses, clause counts at 8 neurons."""
    return superposition_points(level, grid=False)


def _sweep(frame: pd.DataFrame, sweep: str) -> pd.DataFrame:
    if sweep == "hidden":
        return frame[frame.n_clauses == HEADLINE.n_clauses]
    return frame[frame.hidden == HEADLINE.hidden]


def _axis(values) -> dict:
    v = sorted({int(x) for x in values})
    return {"type": "log", "tickvals": v, "ticktext": [str(x) for x in v]}


def fold_figure(stats: pd.DataFrame, caption: str = "") -> go.Figure:
    """Figure 4(a, b): capacity and cosine fold changes against width and clause
    count; 1.0 (dense) dashed; '*' where the paired t-test against dense has p < 0.05."""
    fig = make_subplots(rows=2, cols=2, shared_xaxes="columns", vertical_spacing=0.08, horizontal_spacing=0.08,
                        subplot_titles=[f"(a) {HEADLINE.n_clauses} clauses: feature capacity fold change",
                                        f"(b) {HEADLINE.hidden} neurons: feature capacity fold change",
                                        "(a) cosine interference fold change", "(b) cosine interference fold change"])
    for col, (sweep, x) in enumerate(SWEEPS, start=1):
        sub = _sweep(stats[stats.condition != "dense"], sweep)
        for row, (m, _) in enumerate(FOLDS, start=1):
            add_metric_traces(fig, sub, x, f"{m}_fold", row=row, col=col, p=f"{m}_p", conditions=CHILDREN,
                              showlegend=(row == 1 and col == 1))
            fig.add_hline(y=1.0, line={"color": "black", "dash": "dash", "width": 1}, row=row, col=col)
            fig.update_xaxes(**_axis(sub[x]) if len(sub) else {}, row=row, col=col)
        fig.update_xaxes(title_text="hidden neurons (before expansion)" if sweep == "hidden" else "clauses", row=2, col=col)
    fig.update_yaxes(title_text="capacity: FPE / dense", row=1, col=1)
    fig.update_yaxes(title_text="cosine: FPE / dense", row=2, col=1)
    fig.update_layout(title="Interference under FPE (paper Fig. 4a,b): fold change against the paired dense baseline",
                      height=850, width=1200, template="plotly_white")
    return add_caption(fig, caption)


def _fit(x: np.ndarray, y: np.ndarray) -> dict:
    from sklearn.linear_model import LinearRegression

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        return {"n": int(len(x)), "slope": None, "intercept": None, "r2": None}
    reg = LinearRegression().fit(x[:, None], y)
    return {"n": int(len(x)), "slope": float(reg.coef_[0]), "intercept": float(reg.intercept_),
            "r2": float(reg.score(x[:, None], y))}


def regressions(df: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """Least-squares fits of relative improvement on each fold change, per sweep,
    split and alpha: over configuration means (`level="configs"`, as in the paper:
    one point per width or clause count) and over every trial (`level="trials"`)."""
    pr = paired_rows(df)
    rows = []
    for sweep, _ in SWEEPS:
        for (sp, a), g in _sweep(stats[~stats.condition.isin(["dense", "restart"])], sweep).groupby(["condition", "alpha"]):
            t = _sweep(pr[(pr.condition == sp) & (pr.alpha == a)], sweep)
            for m, _ in FOLDS:
                base = {"sweep": sweep, "condition": sp, "alpha": int(a), "fold": m}
                rows.append({**base, "level": "configs", **_fit(g[f"{m}_fold_mean"].to_numpy(float),
                                                                 g["rel_improvement_mean"].to_numpy(float))})
                rows.append({**base, "level": "trials", **_fit(t[f"{m}_fold"].to_numpy(float),
                                                                t["rel_improvement"].to_numpy(float))})
    return pd.DataFrame(rows, columns=["sweep", "condition", "alpha", "fold", "level", "n", "slope", "intercept", "r2"])


def regression_figure(stats: pd.DataFrame, reg: pd.DataFrame, caption: str = "") -> go.Figure:
    """Figure 4(c): relative improvement against each fold change, one point per
    configuration (± s.e. both ways), with the least-squares line and its R²
    (dotted alpha=2, solid alpha=4); top row the width sweep, bottom the clause sweep."""
    fig = make_subplots(rows=2, cols=2, horizontal_spacing=0.08, vertical_spacing=0.12,
                        subplot_titles=[f"{_SWEEP_TITLE[s]}: vs {t} fold change" for s, _ in SWEEPS for _, t in FOLDS])
    for row, (sweep, _) in enumerate(SWEEPS, start=1):
        sub = _sweep(stats[~stats.condition.isin(["dense", "restart"])], sweep)
        for col, (m, title) in enumerate(FOLDS, start=1):
            for sp, a in CHILDREN:
                g = sub[(sub.condition == sp) & (sub.alpha == a)]
                if g.empty:
                    continue
                st = style(sp, a)
                x, y = g[f"{m}_fold_mean"].to_numpy(float), 100 * g["rel_improvement_mean"].to_numpy(float)
                fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=label(sp, a), legendgroup=label(sp, a),
                                         showlegend=False, marker=st["marker"],
                                         error_x={"type": "data", "array": g[f"{m}_fold_sem"].fillna(0)},
                                         error_y={"type": "data", "array": 100 * g["rel_improvement_sem"].fillna(0)},
                                         text=[f"H={h} C={c}" for h, c in zip(g.hidden, g.n_clauses)],
                                         hovertemplate="%{text}<br>fold=%{x:.3f}<br>rel. impr.=%{y:.2f}%<extra></extra>"),
                              row=row, col=col)
                r = reg[(reg.sweep == sweep) & (reg.condition == sp) & (reg.alpha == a) & (reg.fold == m) & (reg.level == "configs")]
                if len(r) and r.iloc[0]["slope"] is not None and not pd.isna(r.iloc[0]["slope"]):
                    rr = r.iloc[0]
                    xs = np.linspace(np.nanmin(x), np.nanmax(x), 20)
                    fig.add_trace(go.Scatter(x=xs, y=100 * (rr["intercept"] + rr["slope"] * xs), mode="lines",
                                             line=st["line"], legendgroup=label(sp, a),
                                             name=f"{label(sp, a)} ({sweep}, {title.split()[0]}): R²={rr['r2']:.2f}"),
                                  row=row, col=col)
            fig.add_vline(x=1.0, line={"color": "black", "dash": "dash", "width": 1}, row=row, col=col)
            fig.update_xaxes(title_text=f"{title} fold change", row=row, col=col)
        fig.update_yaxes(title_text="relative improvement (%)", row=row, col=1)
    fig.update_layout(title="Relative improvement against interference fold change (paper Fig. 4c), one point per configuration",
                      height=900, width=1250, template="plotly_white", legend={"font": {"size": 10}})
    return add_caption(fig, caption)


def figures(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context) -> dict[str, go.Figure]:
    return {"fold_changes": fold_figure(stats, ctx.caption),
            "regressions": regression_figure(stats, regressions(df, stats), ctx.caption)}


def summarise(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context | None = None) -> dict:
    """The regressions, and the direction of the fold changes: how many FPE
    configurations raise capacity / lower cosine interference significantly."""
    reg = regressions(df, stats)
    s = stats[~stats.condition.isin(["dense", "restart"])]
    direction = []
    for (sp, a), g in s.groupby(["condition", "alpha"]):
        direction.append({
            "condition": sp, "alpha": int(a), "configs": int(len(g)),
            "capacity_up": int((g.feature_capacity_fold_mean > 1).sum()),
            "capacity_up_significant": int(((g.feature_capacity_fold_mean > 1) & (g.feature_capacity_p < 0.05)).sum()),
            "cosine_down": int((g.cosine_interference_fold_mean < 1).sum()),
            "cosine_down_significant": int(((g.cosine_interference_fold_mean < 1) & (g.cosine_interference_p < 0.05)).sum()),
            "capacity_fold_mean": float(g.feature_capacity_fold_mean.mean()),
            "cosine_fold_mean": float(g.cosine_interference_fold_mean.mean()),
        })
    return {"regressions": reg.replace({np.nan: None}).to_dict("records"), "fold_direction": direction}


STUDY = register(Study(
    name="interference_regression",
    description=__doc__,
    points=points,
    figures=figures,
    summarise=summarise,
))


def main(argv: Sequence[str] | None = None) -> int:
    return run(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
