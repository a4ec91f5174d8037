"""Static decoding: can the circuit be read from the weights alone, and does FPE help?

For every model of the superposition sweep's two lines (widths at 8 clauses,
clause counts at 8 neurons; dense and clause/random split at alpha 2 and 4),
`fci.codes.decode` reads clauses, channels and readouts from the weights (no
activations, no ground truth). It is verified two ways (SPEC §5): clause
recovery against the true clauses (F1 with Jaccard matching) and agreement of
the decoded circuit's outputs with the network's own predictions on the test
set. Both are plotted against hidden width, clause count and alpha.

    python -m analyses.decoding [--quick] [--out DIR] [--device auto|cpu|cuda]
                                [--trials N] [--seed S] [--shard I/N] [--data DIR]
                                [--threshold TAU] [--similarity S]
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses._common import (
    HEADLINE,
    Context,
    Study,
    add_caption,
    add_metric_traces,
    run_study,
    style,
    superposition_points,
)
from fci.codes import circuit_agreement, clause_recovery, decode, network_predictions
from fci.train import FPEResult, ModelResult

DEFAULT_SIMILARITY: float = inspect.signature(decode).parameters["similarity"].default

__all__ = ["STUDY", "main", "points", "decode_measures", "decoding_figure"]

CHILDREN = [("clause", 2), ("random", 2), ("clause", 4), ("random", 4)]
METRICS = ("decode_f1", "decode_precision", "decode_recall", "circuit_agreement", "circuit_accuracy", "n_decoded")


def points(level: str):
    return superposition_points(level, grid=False)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("decoding (fci.codes.decode)")
    g.add_argument("--threshold", type=float, default=0.1, help="relative sign threshold, a fraction of max|W| (default: 0.1)")
    g.add_argument("--similarity", type=float, default=DEFAULT_SIMILARITY,
                   help=f"Jaccard similarity at which literal groups merge, in (0, 1] (default: decode's, {DEFAULT_SIMILARITY})")


def validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 0 <= args.threshold <= 1:
        ap.error(f"--threshold is a fraction of max|W| in [0, 1], got {args.threshold}")
    if not 0 < args.similarity <= 1:
        ap.error(f"--similarity must lie in (0, 1], got {args.similarity}")


def decode_measures(model, clauses, x_test, y_test, threshold: float = 0.1, similarity: float = DEFAULT_SIMILARITY) -> dict:
    """Decode one model and verify it: clause-recovery precision/recall/F1 against
    the true clauses, agreement with the network's predictions on x_test, and the
    decoded circuit's own accuracy on y_test."""
    circuit = decode(model, threshold=threshold, similarity=similarity)
    rec = clause_recovery(circuit.clauses, clauses)
    y_net = network_predictions(model, x_test)
    y_circ = np.asarray(circuit.evaluate(x_test))
    return {
        "decode_f1": float(rec["f1"]),
        "decode_precision": float(rec["precision"]),
        "decode_recall": float(rec["recall"]),
        "decode_exact": int(rec["n_exact"]),
        "n_decoded": int(rec["n_decoded"]),
        "circuit_agreement": float(circuit_agreement(circuit, y_net, x_test)),
        "circuit_accuracy": float(((y_circ > 0.5) == (np.asarray(y_test) > 0.5)).mean()),
    }


def extra_columns(result: FPEResult, trial: int, condition: str, alpha: int, mr: ModelResult, ctx: Context) -> dict:
    key = (result.spec.seed, result.task.config)
    if ctx.cache.get("test_key") != key:  # one task's test set at a time
        ctx.cache["test_key"], ctx.cache["test_data"] = key, result.task.test_data()
    x, y = ctx.cache["test_data"]
    return decode_measures(mr.model, result.task.clauses, x, y, ctx.args.threshold, ctx.args.similarity)


def _axis(values) -> dict:
    v = sorted({int(x) for x in values})
    return {"type": "log", "tickvals": v, "ticktext": [str(x) for x in v]}


def decoding_figure(stats: pd.DataFrame, caption: str = "") -> go.Figure:
    """Clause-recovery F1 and circuit agreement against hidden width (at 8
    clauses), clause count (at 8 neurons) and alpha (at the headline point, 1 =
    dense); '*' where the paired t-test against dense has p < 0.05."""
    rows = (("decode_f1", "clause-recovery F1"), ("circuit_agreement", "agreement with the network"))
    fig = make_subplots(rows=2, cols=3, shared_xaxes="columns", vertical_spacing=0.08, horizontal_spacing=0.07,
                        subplot_titles=[f"{t} vs width ({HEADLINE.n_clauses} clauses)" if c == 0 else
                                        f"{t} vs clauses ({HEADLINE.hidden} neurons)" if c == 1 else
                                        f"{t} vs α (C={HEADLINE.n_clauses}, H={HEADLINE.hidden})"
                                        for _, t in rows for c in range(3)])
    by_h = stats[stats.n_clauses == HEADLINE.n_clauses]
    by_c = stats[stats.hidden == HEADLINE.hidden]
    head = stats[(stats.n_clauses == HEADLINE.n_clauses) & (stats.hidden == HEADLINE.hidden)]
    for r, (m, t) in enumerate(rows, start=1):
        for c, (sub, x) in enumerate(((by_h, "hidden"), (by_c, "n_clauses")), start=1):
            add_metric_traces(fig, sub, x, m, row=r, col=c, p=f"{m}_p", conditions=[("dense", 1)] + CHILDREN,
                              showlegend=(r == 1 and c == 1))
            if len(sub):
                fig.update_xaxes(**_axis(sub[x]), row=r, col=c)
        for sp in ("clause", "random"):
            d = head[head.condition == "dense"].assign(condition=sp)
            g = pd.concat([d, head[head.condition == sp]]).sort_values("alpha")
            if g.empty:
                continue
            col = style(sp, 4)["line"]["color"]
            fig.add_trace(go.Scatter(x=g.alpha, y=g[f"{m}_mean"], error_y={"type": "data", "array": g[f"{m}_sem"].fillna(0)},
                                     mode="lines+markers+text", name=f"{sp} split (α=1: dense)", legendgroup=f"{sp}-alpha",
                                     showlegend=r == 1, line={"color": col}, marker={"color": col, "size": 8},
                                     text=["*" if np.isfinite(p) and p < 0.05 else "" for p in g[f"{m}_p"].astype(float)],
                                     textposition="top center", textfont={"size": 16, "color": col}), row=r, col=3)
        if len(head):
            fig.update_xaxes(**_axis(head.alpha), row=r, col=3)
        fig.update_yaxes(title_text=t, row=r, col=1)
    fig.update_xaxes(title_text="hidden neurons (before expansion)", row=2, col=1)
    fig.update_xaxes(title_text="clauses", row=2, col=2)
    fig.update_xaxes(title_text="α", row=2, col=3)
    fig.update_layout(title="Static decoding from the weights alone (SPEC §5): clause recovery and circuit agreement",
                      height=850, width=1350, template="plotly_white")
    return add_caption(fig, caption)


def figures(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context) -> dict[str, go.Figure]:
    return {"decoding": decoding_figure(stats, ctx.caption)}


def summarise(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context) -> dict:
    pooled = []
    for (cond, a), g in df.groupby(["condition", "alpha"]):
        pooled.append({"condition": cond, "alpha": int(a), "models": int(len(g)),
                       **{f"{m}_mean": float(g[m].mean()) for m in METRICS}})
    return {"decoding": {"threshold": ctx.args.threshold, "similarity": ctx.args.similarity, "pooled": pooled}}


STUDY = Study(
    name="decoding",
    description=__doc__,
    points=points,
    figures=figures,
    extra_columns=extra_columns,
    summarise=summarise,
    add_arguments=add_arguments,
    validate=validate,
    extra_metrics=METRICS,
)


def main(argv: Sequence[str] | None = None) -> int:
    return run_study(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
