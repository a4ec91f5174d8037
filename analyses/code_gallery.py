"""Code gallery (paper Figure 2): the weights and Gram matrices behind the codes.

For one configuration (8 clauses, 8 neurons by default), the first-layer
weights W1 and the Gram matrices W1ᵀW1 of the dense baseline and of the
clause-split and random-split FPE children (one figure per alpha), variables
ordered by clause, masked entries marked with x, clause boundaries drawn, and
children grouped under their parent. Each panel's title lists the clauses that
have a feature channel (SPEC §5: a neuron every literal of the clause excites),
the "clear codes" of the paper's caption.

    python -m analyses.code_gallery [--quick] [--out DIR] [--device auto|cpu|cuda]
                                    [--trials N] [--seed S] [--shard I/N] [--data DIR]
                                    [--show-trial T] [--threshold TAU]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses import register
from analyses.kinds import Context, Study
from analyses.levels import HEADLINE, Point
from analyses.runner import study_main
from analyses.style import add_caption
from fci.codes import clause_channels
from fci.metrics import gram
from fci.tasks import format_clause

__all__ = ["STUDY", "main", "points", "panel_data", "gallery_figure"]


def points(level: str) -> list[Point]:
    return [HEADLINE]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("gallery")
    g.add_argument("--show-trial", type=int, default=0, help="which trial's models to draw (default: 0)")
    g.add_argument("--threshold", type=float, default=0.1,
                   help="relative sign threshold for the channels named in the titles (default: 0.1)")


def validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 0 <= args.show_trial < args.trials:
        ap.error(f"--show-trial must lie in [0, --trials={args.trials}), got {args.show_trial}")
    if not 0 <= args.threshold <= 1:
        ap.error(f"--threshold is a fraction of max|W1| in [0, 1], got {args.threshold}")


def panel_data(name: str, W1: np.ndarray, mask: np.ndarray, clauses, order: Sequence[int], parent_of: Sequence[int] | None,
               threshold: float = 0.1, form: str = "dnf") -> dict[str, Any]:
    """What one gallery row shows, as plain lists (JSON-able): W1 (H, n) and its
    mask with columns in `order`, the Gram matrix in the same order, and the
    clauses that have a feature channel (of the task's `form`)."""
    W1 = np.asarray(W1, dtype=float)
    mask = np.asarray(mask) != 0
    ch = clause_channels(W1, clauses, threshold=threshold, form=form)
    o = list(order)
    return {
        "name": name,
        "W1": W1[:, o].tolist(),
        "mask": mask[:, o].astype(int).tolist(),
        "gram": np.asarray(gram(W1))[np.ix_(o, o)].tolist(),
        "parent_of": None if parent_of is None else [int(p) for p in parent_of],
        "clear_codes": [c for c, neurons in enumerate(ch) if neurons],
        "channels": ch,
    }


def _lines(fig: go.Figure, row: int, col: int, v: Sequence[float] = (), h: Sequence[float] = (),
           **line: Any) -> list[dict]:
    """Shape dicts for vertical lines at x in `v` and horizontal lines at y in `h`
    spanning subplot (row, col) (built in one go: add_vline per line is slow)."""
    sp = fig.get_subplot(row, col)
    xr, yr = sp.xaxis.plotly_name.replace("axis", ""), sp.yaxis.plotly_name.replace("axis", "")
    out = [{"type": "line", "xref": xr, "yref": f"{yr} domain", "x0": x, "x1": x, "y0": 0, "y1": 1, "line": line} for x in v]
    out += [{"type": "line", "xref": f"{xr} domain", "yref": yr, "x0": 0, "x1": 1, "y0": y, "y1": y, "line": line} for y in h]
    return out


def gallery_figure(panels: Sequence[dict[str, Any]], var_labels: Sequence[str], clause_size: int, n_clauses: int,
                   title: str, caption: str = "") -> go.Figure:
    """Rows: models; columns: W1 (neurons x variables) and Gram (variables x
    variables). A pure function of `panel_data` dicts. Masked weights are black
    x's; solid lines separate clauses (variables ordered by clause, distractors
    last); thin dotted lines separate the children of different parents."""
    rows = len(panels)
    heights = [max(len(p["W1"]), 8) for p in panels]
    fig = make_subplots(rows=rows, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.09, vertical_spacing=0.06,
                        row_heights=[h / sum(heights) for h in heights],
                        subplot_titles=[t for p in panels for t in (
                            f"{p['name']}: W1 ({len(p['W1'])} neurons) · clauses with a channel: "
                            f"{', '.join(map(str, p['clear_codes'])) or 'none'} ({len(p['clear_codes'])}/{n_clauses})",
                            f"{p['name']}: Gram W1ᵀW1")])
    wmax = max(float(np.abs(np.asarray(p["W1"])).max()) for p in panels) or 1.0
    gmax = max(float(np.abs(np.asarray(p["gram"])).max()) for p in panels) or 1.0
    n = len(var_labels)
    xs = list(range(n))
    bounds = [clause_size * c - 0.5 for c in range(1, n_clauses + (1 if n > clause_size * n_clauses else 0))]
    shapes: list[dict] = []
    for r, p in enumerate(panels, start=1):
        W = np.asarray(p["W1"])
        M = np.asarray(p["mask"])
        H = W.shape[0]
        fig.add_trace(go.Heatmap(z=W, x=xs, y=list(range(H)), coloraxis="coloraxis",
                                 hovertemplate="neuron %{y}<br>%{customdata}<br>w=%{z:.3f}<extra></extra>",
                                 customdata=[list(var_labels)] * H), row=r, col=1)
        yy, xx = np.nonzero(M == 0)
        if len(xx):
            fig.add_trace(go.Scatter(x=xx, y=yy, mode="markers", marker={"symbol": "x-thin", "size": 6, "color": "black",
                                                                          "line": {"width": 1.2, "color": "black"}},
                                     name="masked (0)", legendgroup="masked", showlegend=r == 2 or (rows == 1),
                                     hoverinfo="skip"), row=r, col=1)
        G = np.asarray(p["gram"])
        fig.add_trace(go.Heatmap(z=G, x=xs, y=xs, coloraxis="coloraxis2",
                                 hovertemplate="%{x} · %{y}<br>G=%{z:.3f}<extra></extra>"), row=r, col=2)
        shapes += _lines(fig, r, 1, v=bounds, color="#333", width=1.2)
        shapes += _lines(fig, r, 2, v=bounds, h=bounds, color="#333", width=1.2)
        if p.get("parent_of"):
            po = p["parent_of"]
            seps = [i - 0.5 for i in range(1, H) if po[i] != po[i - 1]]
            shapes += _lines(fig, r, 1, h=seps, color="#888", width=0.8, dash="dot")
        ticks = {"tickvals": xs, "ticktext": list(var_labels), "tickfont": {"size": 9}, "tickangle": -90}
        fig.update_xaxes(**ticks, range=[-0.5, n - 0.5], row=r, col=1)
        fig.update_xaxes(**ticks, range=[-0.5, n - 0.5], row=r, col=2)
        fig.update_yaxes(autorange="reversed", title_text="neuron", row=r, col=1)
        fig.update_yaxes(autorange="reversed", tickvals=xs, ticktext=list(var_labels), tickfont={"size": 8}, row=r, col=2)
    fig.update_layout(
        shapes=shapes, title=title, template="plotly_white", width=1300, height=260 * rows + 12 * sum(heights) + 150,
        coloraxis={"colorscale": "RdBu_r", "cmin": -wmax, "cmax": wmax,
                   "colorbar": {"title": "W1", "x": 1.02, "len": 0.4, "y": 0.78, "yanchor": "middle"}},
        coloraxis2={"colorscale": "RdBu_r", "cmin": -gmax, "cmax": gmax,
                    "colorbar": {"title": "Gram", "x": 1.02, "len": 0.4, "y": 0.28, "yanchor": "middle"}},
        legend={"orientation": "h", "y": 1.02, "x": 0.0, "yanchor": "bottom"},
    )
    for a in fig.layout.annotations:
        a.font = {"size": 11}
    return add_caption(fig, caption)


def _gallery(ctx: Context) -> dict[str, Any]:
    """panel_data for the shown trial: dense, then clause and random children per alpha."""
    pick = [(res, t) for res, t in ctx.results if t == ctx.args.show_trial]
    if not pick:
        return {}
    res, trial = pick[0]
    task = res.boolean_task
    order = task.variable_order()
    pol = {v: p for c in task.clauses for v, p in c}
    labels = [(f"x{v}" if pol[v] else f"¬x{v}") if v in pol else f"x{v}·" for v in order]
    thr = ctx.args.threshold

    def panel(name, mr):
        m = mr.model
        return panel_data(name, m.effective_weights()[0][0].numpy(), m.weight_mask(0).numpy(), task.clauses, order,
                          None if m.parent_index is None else m.parent_index.tolist(), thr, task.form)

    dense = panel(f"dense (H={res.spec.hidden}, acc {res.dense.test_accuracy:.3f})", res.dense)
    by_alpha: dict[int, list] = {}
    for (sp, a), mr in sorted(((k, v) for k, v in res.children.items() if k[1] > 1), key=lambda kv: (kv[0][1], kv[0][0])):
        by_alpha.setdefault(a, []).append(panel(f"{sp} split α={a} (acc {mr.test_accuracy:.3f})", mr))
    return {"trial": trial, "seed": res.spec.seed, "n_clauses": task.n_clauses, "clause_size": task.clause_size,
            "clauses": [format_clause(c, task.form) for c in task.clauses], "var_order": order, "var_labels": labels,
            "dense": dense, "children": {str(a): ps for a, ps in by_alpha.items()}}


def figures(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context) -> dict[str, go.Figure]:
    if "gallery" not in ctx.cache:
        ctx.cache["gallery"] = _gallery(ctx)
    g = ctx.cache["gallery"]
    if not g:
        return {}
    out = {}
    for a, ps in g["children"].items():
        title = (f"Dense vs FPE codes (paper Fig. 2): C={g['n_clauses']}, k={g['clause_size']}, H={ctx.points[0].hidden}, "
                 f"α={a}, trial {g['trial']} (seed {g['seed']}); x = masked weight")
        out[f"gallery_alpha{a}"] = gallery_figure([g["dense"], *ps], g["var_labels"], g["clause_size"], g["n_clauses"],
                                                  title, ctx.caption)
    return out


def summarise(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context) -> dict:
    """Clear codes (clauses with a channel) per condition over trials, and the drawn weights."""
    if "gallery" not in ctx.cache:
        ctx.cache["gallery"] = _gallery(ctx)
    g = ctx.cache["gallery"]
    codes = stats[["condition", "alpha", "n", "clauses_with_channel_mean", "clauses_with_channel_sem", "clauses_with_channel_p", "clauses_with_channel_q",
                   "test_accuracy_mean", "test_accuracy_sem"]]
    return {"clear_codes": codes.to_dict("records"), "gallery": g}


STUDY = register(Study.from_module(__name__, "code_gallery"))
main = study_main(STUDY)


if __name__ == "__main__":
    sys.exit(main())
