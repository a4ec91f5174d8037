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
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses import register
from analyses.kinds import Context, Study
from analyses.levels import HEADLINE, superposition_points
from analyses.runner import study_main
from analyses.style import add_caption, add_metric_traces, significance_text
from analyses.tables import claim, family_claims, largest_at, paired_rows, resolution_of, sig
from fci import stats

__all__ = ["STUDY", "main", "points", "trend_figure", "heatmap_figure", "summarise", "paper_claims"]

CHILDREN = [("clause", 2), ("random", 2), ("clause", 4), ("random", 4)]


def points(level: str):
    """The full (hidden x clauses) grid; its lines through 8 clauses / 8 neurons give panels (a) and (b)."""
    return superposition_points(level, grid=True)


def _percent(stats: pd.DataFrame) -> pd.DataFrame:
    s = stats.copy()
    s["ri_pct_mean"] = 100 * s["rel_improvement_mean"]
    s["ri_pct_sem"] = 100 * s["rel_improvement_sem"]
    s["ri_pct_q"] = s["rel_improvement_q"]
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
        add_metric_traces(fig, sub[sub.condition != "dense"], x, "ri_pct", row=1, col=col, p="ri_pct_q",
                          conditions=CHILDREN, showlegend=col == 1)
        add_metric_traces(fig, sub, x, "acc_per_param", row=2, col=col, p="test_accuracy_q",
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
    heatmap per split (rows) and alpha (columns); '*' marks q < 0.05 (Benjamini–Hochberg
    over the grid's configurations per split and alpha)."""
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
                text[hi][ci] = f"{r.ri_pct_mean:+.1f}{significance_text([r.ri_pct_q])[0]}"
            fig.add_trace(go.Heatmap(z=z, x=[str(c) for c in cs], y=[str(h) for h in hs], text=text, texttemplate="%{text}",
                                     colorscale="RdBu", zmid=0, zmin=-zmax, zmax=zmax, showscale=(i == 0 and j == 0),
                                     colorbar={"title": "rel. impr. (%)"},
                                     hovertemplate="clauses=%{x}<br>hidden=%{y}<br>%{z:.2f}%<extra></extra>"),
                          row=i + 1, col=j + 1)
            fig.update_xaxes(title_text="clauses", type="category", row=i + 1, col=j + 1)
            fig.update_yaxes(title_text="hidden neurons", type="category", row=i + 1, col=j + 1)
    fig.update_layout(title="Relative improvement (%) of FPE over dense at equal nnz (paper Fig. 3c); * q<0.05",
                      height=380 * max(1, len(splits)) + 150, width=1100, template="plotly_white")
    return add_caption(fig, caption)


def figures(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context) -> dict[str, go.Figure]:
    return {"trends": trend_figure(stats, ctx.caption), "heatmaps": heatmap_figure(stats, ctx.caption)}


LOAD_CLAIM = ("Abstract: the benefits of FPE grow with polysemantic load: at {hidden} neurons the relative improvement "
              "over dense grows with the number of clauses ({split} split, α={alpha})")
WIDTH_CLAIM = ("Abstract / Fig. 3a: the benefits of FPE are largest where interference is highest: at {clauses} clauses the "
               "relative improvement over dense falls as the network widens ({split} split, α={alpha})")
GAIN_CLAIM = ("Abstract / Fig. 3: {split}-split FPE yields higher task accuracy than dense at the same non-zero count "
              "({clauses} clauses, {hidden} neurons, α={alpha})")
RANDOM_CLAIM = ("Abstract: random splits approximate the gains of clause-aligned splits: random keeps at least half of the "
                "clause split's relative improvement ({clauses} clauses, {hidden} neurons, α={alpha})")


def _trend_item(pr: pd.DataFrame, split: str, alpha: int, level: str, expect: Literal["increasing", "decreasing"],
                text: str) -> dict[str, Any] | None:
    """The trend claim of one child along one line of the grid, trials as the unit."""
    sub = pr[(pr.condition == split) & (pr.alpha == alpha)]
    sub = sub[sub.hidden == HEADLINE.hidden] if level == "n_clauses" else sub[sub.n_clauses == HEADLINE.n_clauses]
    if sub[level].nunique() < 2:
        return None
    values, levels = stats.trial_matrix(sub, level=level, value="rel_improvement")
    t = stats.trend_test(values, levels, alternative=expect, nan_policy="omit")
    b = t.first_break()
    measured = {"levels": list(levels), "rel_improvement_pct": [round(100 * m, 2) for m in t.means],
                "sem_pct": [None if e is None else round(100 * e, 2) for e in t.sems], "trials": t.n, "rho": sig(t.rho),
                "largest_at": largest_at(levels, t.means), "breaks_after": None if b is None else b.earlier, "breaks_to": None if b is None else b.later}
    return {"claim": text, "result": t, "expect": expect, "measured": measured, "condition": split, "expansion_alpha": int(alpha),
            "note": ("Page's L test over trials x levels of each trial's relative improvement; every pair of levels is "
                     "also tested (one-sided paired test, Benjamini-Hochberg over the pairs), and a later level "
                     "significantly below an earlier one breaks the trend. q: Benjamini-Hochberg over the four children.")}


def paper_claims(df: pd.DataFrame, st: pd.DataFrame) -> list[dict[str, Any]]:
    """The source paper's Boolean claims on this sweep, each decided by a test in
    `fci.stats`: the gain grows with load (clauses at 8 neurons) and falls with
    width (at 8 clauses) — Page's trend test with trials as the unit, where the
    trend breaks; clause and random FPE beat dense at the headline point (the
    paired test, its q over the grid's cells); random keeps at least half of
    the clause split's gain there (paired test of random against half of clause)."""
    if st.empty or df.empty:
        return []
    pr = paired_rows(df)
    kids = sorted({(c, int(a)) for c, a in zip(pr.condition, pr.alpha) if c != "restart"}, key=lambda t: (t[1], t[0]))
    out: list[dict[str, Any]] = []
    lines: tuple[tuple[str, Literal["increasing", "decreasing"], str], ...] = (
        ("n_clauses", "increasing", LOAD_CLAIM), ("hidden", "decreasing", WIDTH_CLAIM))
    for level, expect, tmpl in lines:
        items = [_trend_item(pr, sp, a, level, expect, tmpl.format(split=sp, alpha=a, hidden=HEADLINE.hidden,
                                                                    clauses=HEADLINE.n_clauses)) for sp, a in kids]
        out += family_claims([it for it in items if it is not None])
    head = pr[(pr.n_clauses == HEADLINE.n_clauses) & (pr.hidden == HEADLINE.hidden)]
    for sp, a in kids:
        g = head[(head.condition == sp) & (head.alpha == a)].sort_values("trial")
        row = st[(st.n_clauses == HEADLINE.n_clauses) & (st.hidden == HEADLINE.hidden) & (st.condition == sp) & (st.alpha == a)]
        if g.empty or row.empty:
            continue
        r = row.iloc[0]
        t = stats.paired_test(g.test_accuracy, g.dense_test_accuracy, resolution=resolution_of(g))
        q = None if pd.isna(r.rel_improvement_q) else float(r.rel_improvement_q)
        out.append(claim(GAIN_CLAIM.format(split=sp, alpha=a, clauses=HEADLINE.n_clauses, hidden=HEADLINE.hidden), t, "greater",
                         q=q, family_size=None if q is None else int(r.family_size), condition=sp, expansion_alpha=a,
                         measured={"rel_improvement_pct": round(100 * float(r.rel_improvement_mean), 2),
                                   "sem_pct": round(100 * float(r.rel_improvement_sem), 2),
                                   "dense": round(float(r.test_accuracy_mean - t.mean_diff), 4),
                                   "fpe": round(float(r.test_accuracy_mean), 4), "trials": t.n,
                                   "degenerate": r.get("degenerate")},
                         note="Paired test of accuracy against the dense baseline of the same trial; q: Benjamini-Hochberg "
                              "over the grid's configurations for this split and alpha (stats.csv rel_improvement_q)."))
    approx: list[dict[str, Any]] = []
    for a in sorted({a for _, a in kids}):
        c = head[(head.condition == "clause") & (head.alpha == a)].set_index("trial").rel_improvement
        r = head[(head.condition == "random") & (head.alpha == a)].set_index("trial").rel_improvement
        common = sorted(set(c.index) & set(r.index))
        if len(common) < 1:
            continue
        t = stats.paired_test(r[common].to_numpy(float), 0.5 * c[common].to_numpy(float))
        approx.append({"claim": RANDOM_CLAIM.format(alpha=a, clauses=HEADLINE.n_clauses, hidden=HEADLINE.hidden), "result": t,
                      "expect": "greater", "expansion_alpha": a,
                      "measured": {"random_pct": round(100 * float(r[common].mean()), 2),
                                   "clause_pct": round(100 * float(c[common].mean()), 2), "trials": len(common)},
                      "note": "Margin stated before looking: half of the clause split's gain, per trial (random - clause/2, "
                              "paired, two-sided). q: Benjamini-Hochberg over the alphas."})
    return out + family_claims(approx)


def summarise(df: pd.DataFrame, stats_table: pd.DataFrame, ctx: Context | None = None) -> dict:
    """Does the gain grow with superposition load? Per split and alpha, the mean
    relative improvement along the two lines of the grid (widths at 8 clauses, clause
    counts at 8 neurons), and the paper's claims with the trend test that decides
    each (`paper`)."""
    out = []
    s = stats_table[~stats_table.condition.isin(["dense", "restart"])]
    for (sp, a), g in s.groupby(["condition", "alpha"]):
        rec: dict[str, Any] = {"condition": sp, "alpha": int(a)}
        for name, sub, x in (("hidden", g[g.n_clauses == HEADLINE.n_clauses], "hidden"),
                             ("clauses", g[g.hidden == HEADLINE.hidden], "n_clauses")):
            sub = sub.sort_values(x)
            rec[f"by_{name}"] = {str(int(v)): float(r) for v, r in zip(sub[x], sub.rel_improvement_mean)}
            rec[f"q_by_{name}"] = {str(int(v)): sig(q) for v, q in zip(sub[x], sub.rel_improvement_q)}
        out.append(rec)
    return {"superposition_trend": out, "paper": paper_claims(df, stats_table)}


STUDY = register(Study.from_module(__name__, "superposition_sweep"))
main = study_main(STUDY)


if __name__ == "__main__":
    sys.exit(main())
