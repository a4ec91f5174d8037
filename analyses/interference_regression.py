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
import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses import register
from analyses.kinds import Context, Study
from analyses.levels import HEADLINE, superposition_points
from analyses.runner import study_main
from analyses.style import add_caption, add_metric_traces, label, style
from analyses.tables import family_claims, paired_rows, sig
from fci import stats

__all__ = ["STUDY", "main", "points", "fold_figure", "regressions", "regression_figure", "summarise", "paper_claims"]

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
    count; 1.0 (dense) dashed; '*' where the paired test against dense has q < 0.05
    (Benjamini–Hochberg over the configurations, per split and alpha)."""
    fig = make_subplots(rows=2, cols=2, shared_xaxes="columns", vertical_spacing=0.08, horizontal_spacing=0.08,
                        subplot_titles=[f"(a) {HEADLINE.n_clauses} clauses: feature capacity fold change",
                                        f"(b) {HEADLINE.hidden} neurons: feature capacity fold change",
                                        "(a) cosine interference fold change", "(b) cosine interference fold change"])
    for col, (sweep, x) in enumerate(SWEEPS, start=1):
        sub = _sweep(stats[stats.condition != "dense"], sweep)
        for row, (m, _) in enumerate(FOLDS, start=1):
            add_metric_traces(fig, sub, x, f"{m}_fold", row=row, col=col, p=f"{m}_q", conditions=CHILDREN,
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


METRIC_CLAIM = ("Abstract: FPE systematically reduces polysemanticity metrics: {what} ({split} split, α={alpha}, pooled over "
                "the configurations of both sweeps)")
TRACK_CLAIM = ("Abstract / Fig. 4c: the gain corresponds with a decrease in interference: across widths at {clauses} clauses, "
               "trials with a larger {fold} fold change have a {direction} relative improvement ({split} split, α={alpha})")
_METRIC = {"feature_capacity": ("feature capacity rises over the paired dense baseline", "greater"),
           "cosine_interference": ("cosine interference falls below the paired dense baseline", "less")}
_TRACK = {"feature_capacity": ("capacity", "higher", "greater"), "cosine_interference": ("cosine", "lower", "less")}
R_MAX = 1 - 1e-9  # a perfect within-trial correlation (|r| = 1) is kept finite in Fisher's z


def _fisher_z(pr: pd.DataFrame, fold: str) -> tuple[np.ndarray, list[float]]:
    """Per trial, Fisher's z of the Pearson correlation between the relative
    improvement and the fold change over the configurations of the trial; trials
    where either does not vary give none."""
    zs, rs = [], []
    for _, g in pr.groupby("trial"):
        x, y = g[f"{fold}_fold"].to_numpy(float), g["rel_improvement"].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        r = float(np.corrcoef(x, y)[0, 1])
        rs.append(r)
        zs.append(math.atanh(max(-R_MAX, min(R_MAX, r))))
    return np.asarray(zs), rs


def paper_claims(df: pd.DataFrame, stats_table: pd.DataFrame) -> list[dict[str, Any]]:
    """The paper's interference claims, each decided by a test with trials as the
    unit: FPE raises feature capacity and lowers cosine interference over its
    paired dense baseline (`fci.stats.pooled_paired_test` over every configuration;
    the per-configuration counts at q < 0.05 beside it), and the gain tracks the
    fall in interference (per trial, the Pearson r between relative improvement
    and fold change across the widths at 8 clauses; Fisher's z tested against 0).
    Each claim kind is corrected over the children (Benjamini–Hochberg)."""
    if df.empty or stats_table.empty:
        return []
    pr = paired_rows(df)
    kids = sorted({(c, int(a)) for c, a in zip(pr.condition, pr.alpha) if c != "restart"}, key=lambda t: (t[1], t[0]))
    out: list[dict[str, Any]] = []
    for m, (what, expect) in _METRIC.items():
        items = []
        for sp, a in kids:
            g = pr[(pr.condition == sp) & (pr.alpha == a)]
            ok = np.isfinite(g[m].to_numpy(float)) & np.isfinite(g[f"dense_{m}"].to_numpy(float))
            t = stats.pooled_paired_test(g[m][ok], g[f"dense_{m}"][ok], unit=g.trial[ok])
            cells = stats_table[(stats_table.condition == sp) & (stats_table.alpha == a)]
            fold, q = cells[f"{m}_fold_mean"], cells[f"{m}_q"]  # a fold change lies above or below 1
            counts = {"family_size": int(q.notna().sum()), "higher": int(((fold > 1) & (q < stats.ALPHA)).sum()),
                      "lower": int(((fold < 1) & (q < stats.ALPHA)).sum())}
            counts["not_significant"] = counts["family_size"] - counts["higher"] - counts["lower"]
            items.append({"claim": METRIC_CLAIM.format(what=what, split=sp, alpha=a), "result": t, "expect": expect,
                          "condition": sp, "expansion_alpha": a, "metric": m,
                          "measured": {"mean_diff": sig(t.mean_diff), "fold_mean": sig(cells[f"{m}_fold_mean"].mean()),
                                       "configurations_by_q": counts, "trials": t.n},
                          "note": "configurations_by_q counts the configurations whose paired test against dense has "
                                  "q < 0.05 (Benjamini-Hochberg over the configurations) above and below a fold change "
                                  "of 1; the verdict's q is over the four children."})
        out += family_claims(items)
    width = pr[pr.n_clauses == HEADLINE.n_clauses]
    for m, (fold, direction, expect) in _TRACK.items():
        items = []
        for sp, a in kids:
            z, rs = _fisher_z(width[(width.condition == sp) & (width.alpha == a)], m)
            t = stats.paired_test(z, 0.0)
            items.append({"claim": TRACK_CLAIM.format(clauses=HEADLINE.n_clauses, fold=fold, direction=direction, split=sp, alpha=a),
                          "result": t, "expect": expect, "condition": sp, "expansion_alpha": a, "metric": m,
                          "measured": {"per_trial_r": [round(r, 3) for r in rs], "mean_z": sig(t.mean_diff),
                                       "widths": sorted(int(h) for h in width.hidden.unique())},
                          "note": "Per trial, Pearson r over the widths (one point per width, as Fig. 4c's regression); "
                                  "Fisher's z = atanh(r) tested against 0 across trials (one-sample t-test, guarded). "
                                  "q: Benjamini-Hochberg over the four children."})
        out += family_claims(items)
    return out


def summarise(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context | None = None) -> dict:
    """The regressions, the direction of the fold changes (how many FPE
    configurations raise capacity / lower cosine interference at q < 0.05,
    Benjamini–Hochberg over the configurations), and the paper's claims with the
    test that decides each (`paper`)."""
    reg = regressions(df, stats)
    s = stats[~stats.condition.isin(["dense", "restart"])]
    direction = []
    for (sp, a), g in s.groupby(["condition", "alpha"]):
        direction.append({
            "condition": sp, "alpha": int(a), "configs": int(len(g)),
            "capacity_up": int((g.feature_capacity_fold_mean > 1).sum()),
            "capacity_up_significant": int(((g.feature_capacity_fold_mean > 1) & (g.feature_capacity_q < 0.05)).sum()),
            "cosine_down": int((g.cosine_interference_fold_mean < 1).sum()),
            "cosine_down_significant": int(((g.cosine_interference_fold_mean < 1) & (g.cosine_interference_q < 0.05)).sum()),
            "capacity_fold_mean": float(g.feature_capacity_fold_mean.mean()),
            "cosine_fold_mean": float(g.cosine_interference_fold_mean.mean()),
        })
    return {"regressions": reg.replace({np.nan: None}).to_dict("records"), "fold_direction": direction,
            "paper": paper_claims(df, stats)}


STUDY = register(Study.from_module(__name__, "interference_regression"))
main = study_main(STUDY)


if __name__ == "__main__":
    sys.exit(main())
