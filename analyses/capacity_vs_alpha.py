"""Capacity against alpha: what expansion does to accuracy and interference at equal nnz.

Accuracy, feature capacity (mean over clause variables), cosine interference
and nnz against alpha in {1, 2, 4, 8} (1 is the dense baseline) for clause and
random split, 8 clauses, hidden widths 4, 8 and 16; plus the collision check of
SPEC §3: the measured fraction of clauses kept whole in one child, and of clause
pairs whose 2k literals all land in one child, beside alpha**-(k-1) and
alpha**-(2k-1).

    python -m analyses.capacity_vs_alpha [--quick] [--out DIR] [--device auto|cpu|cuda]
                                         [--trials N] [--seed S] [--shard I/N] [--data DIR]

The collision check reads the split itself: the parent's partition is recomputed
with `fci.fpe.split_groups` and the trial's split seed (the masks of the
trained child agree with it everywhere they are non-zero, which is checked), so
weights removed afterwards by the budget's magnitude pruning do not count as
moved. How many clause weights that pruning removed is reported beside it, as is
the fraction of clauses that some child still carries whole in its (pruned) mask.
The SPEC's formulas assume each literal picks a child independently; the random
split is a *balanced* partition (sampling without replacement), so the exact
expectation for it is reported too.
"""

from __future__ import annotations

import itertools
import logging
import math
import sys

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses import register
from analyses.kinds import Context, Study
from analyses.levels import HEADLINE, Point
from analyses.runner import study_main
from analyses.style import add_caption, star_trace, style
from fci.fpe.splits import split_groups
from fci.metrics import trial_stats
from fci.train import FPEResult, ModelResult

__all__ = ["STUDY", "main", "points", "collision_measures", "balanced_same_group_prob",
           "alpha_figure", "collision_figure", "collision_table"]

log = logging.getLogger(__name__)

ALPHAS = {"full": (2, 4, 8), "quick": (2, 4, 8), "tiny": (2, 4)}
HIDDEN = {"full": (4, 8, 16), "quick": (4, 8), "tiny": (4,)}
SPLITS = ("clause", "random")


def points(level: str) -> list[Point]:
    exps = tuple((s, a) for a in ALPHAS[level] for s in SPLITS)
    return [Point(n_clauses=HEADLINE.n_clauses, hidden=h, expansions=exps) for h in HIDDEN[level]]


# --------------------------------------------------------------------------- the collision check


def _falling(n: int, m: int) -> float:
    return float(math.prod(range(n - m + 1, n + 1))) if m <= n else 0.0


def balanced_same_group_prob(n_items: int, alpha: int, m: int) -> float:
    """P(m given items all land in one group) for a uniformly random balanced
    partition of n_items into alpha groups (sizes differ by at most one)."""
    if m > n_items or n_items == 0:
        return math.nan
    sizes = [n_items // alpha + (1 if a < n_items % alpha else 0) for a in range(alpha)]
    return sum(_falling(s, m) for s in sizes) / _falling(n_items, m)


def _dealt_same_child_prob(n_units: int, alpha: int, m: int) -> float:
    """P(m given units share a child) when n_units are dealt round-robin after a random permutation."""
    return balanced_same_group_prob(n_units, alpha, m)


def collision_measures(result: FPEResult, split: str, alpha: int, child: ModelResult) -> dict[str, float]:
    """The collision check for one child: over parent neurons whose clause
    literals are all active, the fraction of clauses whose variables the split
    sends to one child (`whole_frac`), and of clause pairs whose 2k variables all
    go to one child (`pair_frac`); the exact expectations under the split
    (`expected_whole`, `expected_pair`), the SPEC's independent-assignment
    formulas (`theory_whole` = alpha**-(k-1), `theory_pair` = alpha**-(2k-1)),
    `whole_after_prune_frac` (some child's pruned mask still holds the whole
    clause), `pruned_clause_frac` (clause weights the budget pruning removed) and
    `mask_mismatch` (split entries the child's mask contradicts; 0 expected)."""
    spec, task = result.spec, result.boolean_task
    parent = result.parent.model
    W, M = parent.weights[0].detach(), parent.weight_mask(0)  # (H, n)
    groups = split_groups(W, M, alpha, split, clauses=task.clauses, seed=spec.split_seed(split, alpha)).numpy()
    mask = child.model.weight_mask(0).detach().numpy() != 0  # (H*alpha, n)
    H, n = groups.shape
    k = task.clause_size
    kids = mask.reshape(H, alpha, n)
    # Consistency: a child's mask entry must lie in that child's group.
    owner = np.where(groups >= 0, groups, 0)
    in_group = np.zeros_like(kids)
    np.put_along_axis(in_group, owner[:, None, :], (groups >= 0)[:, None, :], axis=1)
    mismatch = int((kids & ~in_group).sum())
    vars_ = [[v for v, _ in c] for c in task.clauses]
    whole, pair, whole_mask, exp_w, exp_p = [], [], [], [], []
    pruned = kept = 0
    C = len(vars_)
    for i in range(H):
        active = groups[i] >= 0
        n_act = int(active.sum())
        full = [c for c in range(C) if active[vars_[c]].all()]
        if split == "random":
            pw, pp = balanced_same_group_prob(n_act, alpha, k), balanced_same_group_prob(n_act, alpha, 2 * k)
        else:  # clause split deals whole clauses round-robin
            pw, pp = 1.0, _dealt_same_child_prob(C, alpha, 2)
        for c in full:
            g = groups[i, vars_[c]]
            whole.append(len(set(g.tolist())) == 1)
            whole_mask.append(bool(kids[i][:, vars_[c]].all(1).any()))
            exp_w.append(pw)
            sel = kids[i][g, vars_[c]]
            kept += int(sel.sum())
            pruned += int((~sel).sum())
        for c1, c2 in itertools.combinations(full, 2):
            pair.append(len(set(groups[i, vars_[c1] + vars_[c2]].tolist())) == 1)
            exp_p.append(pp)
    mean = lambda v: float(np.mean(v)) if len(v) else math.nan  # noqa: E731
    return {
        "whole_frac": mean(whole),
        "pair_frac": mean(pair),
        "expected_whole": mean(exp_w),
        "expected_pair": mean(exp_p),
        "theory_whole": float(alpha ** -(k - 1)),
        "theory_pair": float(alpha ** -(2 * k - 1)),
        "whole_after_prune_frac": mean(whole_mask),
        "pruned_clause_frac": pruned / (pruned + kept) if pruned + kept else math.nan,
        "n_clause_checks": len(whole),
        "n_pair_checks": len(pair),
        "mask_mismatch": mismatch,
    }


def extra_columns(result: FPEResult, trial: int, condition: str, alpha: int, mr: ModelResult, ctx: Context | None = None) -> dict:
    if condition in SPLITS and alpha > 1:
        m = collision_measures(result, condition, alpha, mr)
        if m["mask_mismatch"]:
            log.warning("collision check: child %s alpha=%d of seed %d disagrees with the recomputed split in %d entries",
                        condition, alpha, result.spec.seed, m["mask_mismatch"])
        return m
    return {}


# --------------------------------------------------------------------------- figures


def _with_dense(stats: pd.DataFrame, split: str) -> pd.DataFrame:
    """A split's rows plus the dense rows relabelled as that split at alpha 1."""
    d = stats[stats.condition == "dense"].copy()
    d["condition"] = split
    return pd.concat([d, stats[stats.condition == split]]).sort_values("alpha")


METRICS = (("test_accuracy", "test accuracy", "test_accuracy_q"), ("feature_capacity", "feature capacity", "feature_capacity_q"),
           ("cosine_interference", "cosine interference", "cosine_interference_q"), ("nnz", "non-zero parameters", None))


def alpha_figure(stats: pd.DataFrame, caption: str = "") -> go.Figure:
    """Accuracy, capacity, cosine interference and nnz against alpha (1 = dense),
    one column per hidden width; '*' where the paired test against dense has q < 0.05
    (Benjamini–Hochberg over the configurations, per split and alpha)."""
    hs = sorted(stats.hidden.unique())
    fig = make_subplots(rows=len(METRICS), cols=len(hs), shared_xaxes=True, vertical_spacing=0.05, horizontal_spacing=0.06,
                        subplot_titles=[f"H={h}: {t}" if r == 0 else t for r, (_, t, _) in enumerate(METRICS) for h in hs])
    for col, h in enumerate(hs, start=1):
        sub = stats[stats.hidden == h]
        for row, (m, _, p) in enumerate(METRICS, start=1):
            for sp in SPLITS:
                g = _with_dense(sub, sp)
                c = style(sp, 4)["line"]["color"]
                fig.add_trace(go.Scatter(
                    x=g.alpha, y=g[f"{m}_mean"], error_y={"type": "data", "array": g[f"{m}_sem"].fillna(0)},
                    mode="lines+markers", name=f"{sp} split", legendgroup=sp, showlegend=(row == 1 and col == 1),
                    line={"color": c}, marker={"color": c, "size": 8},
                    hovertemplate=f"{sp}<br>α=%{{x}}<br>{m}=%{{y:.4g}}<extra></extra>"), row=row, col=col)
                if p:  # '*' above the error bar, clear of it
                    fig.add_trace(star_trace(g.alpha, g[f"{m}_mean"], g[f"{m}_sem"], g[p], c, name=sp), row=row, col=col)
            fig.update_xaxes(type="log", tickvals=[1, 2, 4, 8, 16], ticktext=["1", "2", "4", "8", "16"], row=row, col=col)
        fig.update_xaxes(title_text="α (expansion factor; 1 = dense)", row=len(METRICS), col=col)
    for row, (_, t, _) in enumerate(METRICS, start=1):
        fig.update_yaxes(title_text=t, row=row, col=1)
    fig.update_layout(title=f"Metrics against α at equal nnz ({HEADLINE.n_clauses} clauses, k=3)",
                      height=1100, width=1250, template="plotly_white")
    return add_caption(fig, caption)


def collision_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per split and alpha (pooled over widths and trials): measured fractions and expectations."""
    cols = ["whole_frac", "pair_frac", "expected_whole", "expected_pair", "theory_whole", "theory_pair",
            "whole_after_prune_frac", "pruned_clause_frac"]
    ch = df[~df.condition.isin(["dense", "restart"])]
    if "whole_frac" not in ch:
        return pd.DataFrame()
    rows = []
    for (sp, a), g in ch.groupby(["condition", "alpha"]):
        rec = {"condition": sp, "alpha": int(a), "models": int(len(g)), "clause_checks": int(g.n_clause_checks.sum()),
               "pair_checks": int(g.n_pair_checks.sum()), "mask_mismatch": int(g.mask_mismatch.sum())}
        for c in cols:
            s = trial_stats(g[c].dropna().to_numpy(float))
            rec[f"{c}_mean"], rec[f"{c}_sem"] = s["mean"], s["sem"]
        rows.append(rec)
    return pd.DataFrame(rows)


def collision_figure(df: pd.DataFrame, caption: str = "") -> go.Figure:
    """Measured collision fractions against alpha beside alpha**-(k-1), alpha**-(2k-1)
    and the exact balanced-partition expectation (log scale; a measured 0 is drawn
    at the axis floor, `analyses.style.honest`)."""
    tab = collision_table(df)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=["one clause kept whole in one child", "two clauses (all 2k literals) in one child"])
    if tab.empty:
        return add_caption(fig, caption)
    k = int(df.clause_size.iloc[0])
    for col, (what, th) in enumerate((("whole", f"α^-(k-1), k={k}"), ("pair", f"α^-(2k-1), k={k}")), start=1):
        for sp in SPLITS:
            g = tab[tab.condition == sp].sort_values("alpha")
            if g.empty:
                continue
            c = style(sp, 4)["line"]["color"]
            fig.add_trace(go.Scatter(x=g.alpha, y=g[f"{what}_frac_mean"], error_y={"type": "data", "array": g[f"{what}_frac_sem"].fillna(0)},
                                     mode="lines+markers", name=f"{sp} split: measured", legendgroup=f"{sp}m", showlegend=col == 1,
                                     line={"color": c}, marker={"color": c, "size": 9}), row=1, col=col)
            fig.add_trace(go.Scatter(x=g.alpha, y=g[f"expected_{what}_mean"],
                                     mode="lines+markers", name=f"{sp} split: exact expectation", legendgroup=f"{sp}e",
                                     showlegend=col == 1, line={"color": c, "dash": "dot"}, marker={"color": c, "symbol": "x", "size": 7}),
                          row=1, col=col)
        g = tab.drop_duplicates("alpha").sort_values("alpha")
        fig.add_trace(go.Scatter(x=g.alpha, y=g[f"theory_{what}_mean"], mode="lines", name=f"SPEC §3 theory: {th}",
                                 line={"color": "black", "dash": "dash" if what == "whole" else "longdashdot"}), row=1, col=col)
        fig.update_xaxes(type="log", tickvals=sorted(tab.alpha.unique()), title_text="α", row=1, col=col)
        fig.update_yaxes(type="log", title_text="fraction" if col == 1 else None, row=1, col=col)
    fig.update_layout(title="Collision check under FPE splits (SPEC §3): measured on the trained parents' splits",
                      height=550, width=1200, template="plotly_white")
    return add_caption(fig, caption)


def figures(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context) -> dict[str, go.Figure]:
    return {"metrics_vs_alpha": alpha_figure(stats, ctx.caption), "collisions": collision_figure(df, ctx.caption)}


def summarise(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context | None = None) -> dict:
    return {"collisions": collision_table(df).to_dict("records"),
            "collision_note": ("whole/pair fractions are over parent neurons whose clause variables are all active "
                               "(all of them for a dense parent); measured on the split before the budget pruning, "
                               "which removed pruned_clause_frac of the clause weights; expected_* is exact for the "
                               "balanced random partition (or the round-robin deal of the clause split), theory_* the "
                               "SPEC's independent-assignment formulas.")}


STUDY = register(Study.from_module(__name__, "capacity_vs_alpha"))
main = study_main(STUDY)


if __name__ == "__main__":
    sys.exit(main())
