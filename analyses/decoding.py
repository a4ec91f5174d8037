"""Decoding: can the circuit be read from the network, and does FPE help?

For every model of the superposition sweep's two lines (widths at 8 clauses,
clause counts at 8 neurons; dense and clause/random split at alpha 2 and 4), two
readings (SPEC §5): `fci.codes.decode` reads what the weights code (clauses,
channels and readouts from sign codes alone), and `fci.codes.decode_function`
reads what the network computes (an OR of short terms per output, from the
weights and inputs it draws itself). Each is verified by clause recovery against
the true clauses (F1 with Jaccard matching) and by the agreement of its circuit
with the network's own predictions on the test set, beside the ceiling: the
agreement of the OR of the true clauses with the same network. Seconds per
network are recorded for both. Plotted against hidden width, clause count and
alpha.

    python -m analyses.decoding [--quick] [--out DIR] [--device auto|cpu|cuda]
                                [--trials N] [--seed S] [--shard I/N] [--data DIR]
                                [--threshold TAU|auto] [--similarity S]
                                [--max-literals K] [--decode-seed S]
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses import register
from analyses.kinds import Context, Study
from analyses.levels import HEADLINE, superposition_points
from analyses.runner import run
from analyses.style import add_caption, add_metric_traces, significance_text, style
from fci.codes import (
    circuit_agreement,
    clause_recovery,
    decode,
    decode_function,
    network_predictions,
    true_formula_agreement,
)
from fci.train import FPEResult, ModelResult

DEFAULT_SIMILARITY: float = inspect.signature(decode).parameters["similarity"].default
DEFAULT_THRESHOLD = inspect.signature(decode).parameters["threshold"].default

__all__ = ["STUDY", "main", "points", "decode_measures", "decoding_figure"]

CHILDREN = [("clause", 2), ("random", 2), ("clause", 4), ("random", 4)]
METRICS = ("decode_f1", "decode_precision", "decode_recall", "circuit_agreement", "circuit_accuracy", "n_decoded",
           "static_seconds", "function_f1", "function_agreement", "function_uncovered", "n_terms", "function_seconds",
           "ceiling", "ceiling_gap")


def points(level: str):
    return superposition_points(level, grid=False)


def _threshold(value: str) -> float | str:
    return value if value == "auto" else float(value)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("decoding (fci.codes.decode, fci.codes.decode_function)")
    g.add_argument("--threshold", type=_threshold, default=DEFAULT_THRESHOLD,
                   help="static decode's sign threshold: 'auto' (per-neuron two-cluster split) or a fraction of "
                        f"each neuron's max|w| in [0, 1] (default: {DEFAULT_THRESHOLD})")
    g.add_argument("--similarity", type=float, default=DEFAULT_SIMILARITY,
                   help=f"Jaccard similarity at which literal groups merge, in (0, 1] (default: decode's, {DEFAULT_SIMILARITY})")
    g.add_argument("--max-literals", type=int, default=3, help="decode_function's longest term (default: 3)")
    g.add_argument("--decode-seed", type=int, default=0, help="decode_function's seed for its own inputs (default: 0)")


def validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.threshold != "auto" and not 0 <= args.threshold <= 1:
        ap.error(f"--threshold is 'auto' or a fraction of each neuron's max|w| in [0, 1], got {args.threshold}")
    if not 0 < args.similarity <= 1:
        ap.error(f"--similarity must lie in (0, 1], got {args.similarity}")
    if args.max_literals < 1:
        ap.error(f"--max-literals must be >= 1, got {args.max_literals}")
    if args.decode_seed < 0:
        ap.error(f"--decode-seed must be >= 0, got {args.decode_seed}")


def decode_measures(model, task, x_test, y_test, threshold: float | str = DEFAULT_THRESHOLD,
                    similarity: float = DEFAULT_SIMILARITY, max_literals: int = 3, seed: int = 0) -> dict:
    """Both readings of one model, verified: clause-recovery precision/recall/F1
    against the true clauses, agreement with the network's predictions on x_test
    and seconds, for static `decode` and `decode_function`; the ceiling (agreement
    of the true formula with the network) and its gap to decode_function's
    agreement; the static circuit's own accuracy on y_test."""
    clauses = task.clauses
    y_net = network_predictions(model, x_test)
    t0 = time.perf_counter()
    circuit = decode(model, threshold=threshold, similarity=similarity)
    static_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    function = decode_function(model, max_literals=max_literals, seed=seed)
    function_s = time.perf_counter() - t0
    rec = clause_recovery(circuit.clauses, clauses)
    y_circ = np.asarray(circuit.evaluate(x_test))
    agreement = float(circuit_agreement(function, y_net, x_test))
    ceiling = float(true_formula_agreement(clauses, y_net, x_test, task.groups, form=task.form))
    return {
        "decode_f1": float(rec["f1"]),
        "decode_precision": float(rec["precision"]),
        "decode_recall": float(rec["recall"]),
        "decode_exact": int(rec["n_exact"]),
        "n_decoded": int(rec["n_decoded"]),
        "circuit_agreement": float(circuit_agreement(circuit, y_net, x_test)),
        "circuit_accuracy": float(((y_circ > 0.5) == (np.asarray(y_test) > 0.5)).mean()),
        "static_seconds": static_s,
        "function_f1": float(clause_recovery(function.clauses, clauses)["f1"]),
        "function_agreement": agreement,
        "function_uncovered": float(np.mean(function.uncovered)),
        "n_terms": len(function.clauses),
        "function_seconds": function_s,
        "ceiling": ceiling,
        "ceiling_gap": ceiling - agreement,
    }


def extra_columns(result: FPEResult, trial: int, condition: str, alpha: int, mr: ModelResult, ctx: Context) -> dict:
    key = (result.spec.seed, result.boolean_task.config)
    if ctx.cache.get("test_key") != key:  # one task's test set at a time
        ctx.cache["test_key"], ctx.cache["test_data"] = key, result.boolean_task.test_data()
    x, y = ctx.cache["test_data"]
    a = ctx.args
    return decode_measures(mr.model, result.task, x, y, a.threshold, a.similarity, a.max_literals, a.decode_seed)


def _axis(values) -> dict:
    v = sorted({int(x) for x in values})
    return {"type": "log", "tickvals": v, "ticktext": [str(x) for x in v]}


ROWS = (("decode_f1", "static F1"), ("function_f1", "function F1"),
        ("function_agreement", "function agreement"), ("ceiling_gap", "ceiling − agreement"))


def decoding_figure(stats: pd.DataFrame, caption: str = "") -> go.Figure:
    """Static decode's clause F1, decode_function's clause F1 and agreement with the
    network, and the ceiling's lead over that agreement (target: within 0.02),
    against hidden width (at 8 clauses), clause count (at 8 neurons) and alpha (at
    the headline point, 1 = dense); '*' where the paired test against dense has
    q < 0.05 (Benjamini–Hochberg over the configurations, per split and alpha)."""
    rows = ROWS
    fig = make_subplots(rows=len(rows), cols=3, shared_xaxes="columns", vertical_spacing=0.05, horizontal_spacing=0.07,
                        subplot_titles=[f"{t} vs width ({HEADLINE.n_clauses} clauses)" if c == 0 else
                                        f"{t} vs clauses ({HEADLINE.hidden} neurons)" if c == 1 else
                                        f"{t} vs α (C={HEADLINE.n_clauses}, H={HEADLINE.hidden})"
                                        for _, t in rows for c in range(3)])
    by_h = stats[stats.n_clauses == HEADLINE.n_clauses]
    by_c = stats[stats.hidden == HEADLINE.hidden]
    head = stats[(stats.n_clauses == HEADLINE.n_clauses) & (stats.hidden == HEADLINE.hidden)]
    for r, (m, t) in enumerate(rows, start=1):
        for c, (sub, x) in enumerate(((by_h, "hidden"), (by_c, "n_clauses")), start=1):
            add_metric_traces(fig, sub, x, m, row=r, col=c, p=f"{m}_q", conditions=[("dense", 1)] + CHILDREN,
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
                                     text=significance_text(g[f"{m}_q"].astype(float)),
                                     textposition="top center", textfont={"size": 16, "color": col}), row=r, col=3)
        if len(head):
            fig.update_xaxes(**_axis(head.alpha), row=r, col=3)
        fig.update_yaxes(title_text=t, row=r, col=1)
        if m == "ceiling_gap":
            for c in range(1, 4):
                fig.add_hline(y=0.02, line={"dash": "dot", "color": "#999"}, row=r, col=c)
    fig.update_xaxes(title_text="hidden neurons (before expansion)", row=len(rows), col=1)
    fig.update_xaxes(title_text="clauses", row=len(rows), col=2)
    fig.update_xaxes(title_text="α", row=len(rows), col=3)
    fig.update_layout(title="Reading the network (SPEC §5): static decode (weights) and decode_function (what it computes), "
                            "against the ceiling (the true clauses' agreement)",
                      height=1500, width=1350, template="plotly_white")
    return add_caption(fig, caption)


def figures(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context) -> dict[str, go.Figure]:
    return {"decoding": decoding_figure(stats, ctx.caption)}


def summarise(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context) -> dict:
    pooled = []
    for (cond, a), g in df.groupby(["condition", "alpha"]):
        pooled.append({"condition": cond, "alpha": int(a), "models": len(g),
                       **{f"{m}_mean": float(g[m].mean()) for m in METRICS}})
    a = ctx.args
    return {"decoding": {"threshold": a.threshold, "similarity": a.similarity, "max_literals": a.max_literals,
                         "decode_seed": a.decode_seed, "pooled": pooled}}


STUDY = register(Study(
    name="decoding",
    description=__doc__,
    points=points,
    figures=figures,
    extra_columns=extra_columns,
    summarise=summarise,
    add_arguments=add_arguments,
    validate=validate,
    extra_metrics=METRICS,
))


def main(argv: Sequence[str] | None = None) -> int:
    return run(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
