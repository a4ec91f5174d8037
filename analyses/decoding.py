"""Decoding: can the circuit be read from the network, and does FPE help?

For every model of the superposition sweep's two lines (widths at 8 clauses,
clause counts at 8 neurons; dense and clause/random split at alpha 2 and 4), every
reading (SPEC §5, `fci.readings`): the static channel reading (`decode`: what the
weights code) beside the best constant output's agreement; the certified static
reading (`decode(method="certified")`: what the weights prove, with the share of
each output it covers and the share of outputs fully proved); and `decode_function`
(what the network computes), read on uniform inputs and on the task's own
unlabeled training inputs. Each is verified by its agreement with the network's
predictions on the test set and by clause recovery (F1 and exact F1), beside the
true-formula agreement (the reference: the task's formula against the same
network; a reading may exceed it) and the gap reading - reference. Seconds per
network are recorded for each. Plotted against hidden width, clause count and
alpha.

`paper`: the combinatorial-interpretability paper's claim that static
combinatorial analysis of the weights gives complete interpretations of small
trained networks, tested per configuration and condition: is the certified static
reading's agreement within 0.05 of the reference (paired non-inferiority test
over trials, Benjamini-Hochberg over the cells)?

    python -m analyses.decoding [--quick] [--out DIR] [--device auto|cpu|cuda]
                                [--trials N] [--seed S] [--shard I/N] [--data DIR]
                                [--threshold TAU|auto] [--similarity S]
                                [--max-literals K|auto] [--decode-seed S]
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses import register
from analyses.kinds import Context, Study
from analyses.levels import HEADLINE, superposition_points
from analyses.runner import run
from analyses.style import add_caption, add_metric_traces, significance_text, style
from analyses.tables import family_claims, resolution_of, sig
from fci import stats
from fci.codes import decode, decode_function
from fci.codes.certified import DEFAULTS as CERTIFIED_DEFAULTS
from fci.readings import measure_readings
from fci.train import FPEResult, ModelResult

DEFAULT_SIMILARITY: float = inspect.signature(decode).parameters["similarity"].default
DEFAULT_THRESHOLD = inspect.signature(decode).parameters["threshold"].default
DEFAULT_MAX_LITERALS = inspect.signature(decode_function).parameters["max_literals"].default

__all__ = ["STUDY", "main", "points", "decode_measures", "decoding_figure", "paper_claims"]

CHILDREN = [("clause", 2), ("random", 2), ("clause", 4), ("random", 4)]
_FUNCTIONAL = tuple(f"{p}_{k}" for p in ("function", "inputs_function")
                    for k in ("agreement", "own_agreement", "max_literals", "f1", "exact_f1", "uncovered", "terms", "warnings",
                              "gap", "seconds"))
METRICS = ("decode_f1", "decode_precision", "decode_recall", "decode_exact_f1", "circuit_agreement", "constant_agreement",
           "circuit_accuracy", "n_decoded", "static_seconds", "certified_agreement", "certified_coverage",
           "certified_coverage_exact", "certified_proved", "certified_terms", "certified_gap", "certified_seconds",
           *_FUNCTIONAL, "true_formula_agreement")

#: The paper's claim tested here, and the margin stated before looking.
MARGIN = 0.05
FIDELITY_CLAIM = ("Combinatorial interpretability: static combinatorial analysis of the weights gives complete mechanistic "
                  "interpretations of small networks trained with gradient descent; here, the certified static reading "
                  "(weights alone) agrees with the network within {margin} of the true formula ({clauses} clauses of "
                  "{k} literals, {hidden} neurons, {condition}, {trials} trials)")


#: The certified reading's budget at --tiny: a smoke run of the study's code, not a reading to report.
TINY_PIECES = 256


def points(level: str):
    return superposition_points(level, grid=False)


def _threshold(value: str) -> float | str:
    return value if value == "auto" else float(value)


def _max_literals(value: str) -> int | str:
    return value if value == "auto" else int(value)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("decoding (fci.codes.decode, fci.codes.decode_function)")
    g.add_argument("--threshold", type=_threshold, default=DEFAULT_THRESHOLD,
                   help="static decode's sign threshold: 'auto' (per-neuron two-cluster split) or a fraction of "
                        f"each neuron's max|w| in [0, 1] (default: {DEFAULT_THRESHOLD})")
    g.add_argument("--similarity", type=float, default=DEFAULT_SIMILARITY,
                   help=f"Jaccard similarity at which literal groups merge, in (0, 1] (default: decode's, {DEFAULT_SIMILARITY})")
    g.add_argument("--max-literals", type=_max_literals, default=DEFAULT_MAX_LITERALS,
                   help="decode_function's longest term, or 'auto' (lengthen while the reading improves; "
                        f"default: {DEFAULT_MAX_LITERALS})")
    g.add_argument("--decode-seed", type=int, default=0, help="decode_function's seed for its own inputs (default: 0)")
    g.add_argument("--certified-pieces", type=int, default=None, metavar="N",
                   help="the certified reading's search budget (cubes the completion may split; fewer is faster and "
                        f"proves less): default {CERTIFIED_DEFAULTS['pieces']}, the library's ({TINY_PIECES} at the "
                        "smoke-test level the tests use)")


def validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.threshold != "auto" and not 0 <= args.threshold <= 1:
        ap.error(f"--threshold is 'auto' or a fraction of each neuron's max|w| in [0, 1], got {args.threshold}")
    if not 0 < args.similarity <= 1:
        ap.error(f"--similarity must lie in (0, 1], got {args.similarity}")
    if args.max_literals != "auto" and args.max_literals < 1:
        ap.error(f"--max-literals must be 'auto' or an integer >= 1, got {args.max_literals}")
    if args.decode_seed < 0:
        ap.error(f"--decode-seed must be >= 0, got {args.decode_seed}")
    if args.certified_pieces is None:
        args.certified_pieces = TINY_PIECES if args.tiny else CERTIFIED_DEFAULTS["pieces"]
    if args.certified_pieces < 1:
        ap.error(f"--certified-pieces must be an integer >= 1, got {args.certified_pieces}")


def decode_measures(model, task, x_test, y_test, inputs, threshold: float | str = DEFAULT_THRESHOLD,
                    similarity: float = DEFAULT_SIMILARITY, max_literals: int | str = DEFAULT_MAX_LITERALS,
                    seed: int = 0, certified: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every reading of one model, verified on x_test (`fci.readings.measure_readings`;
    ``inputs``: the task's unlabeled training inputs, the second functional reading's
    input model), and the static channel circuit's own accuracy on y_test."""
    out = measure_readings(model, task, x_test, inputs, threshold=threshold, similarity=similarity,
                           max_literals=max_literals, seed=seed, certified=certified)
    y_circ = np.asarray(decode(model, threshold=threshold, similarity=similarity).evaluate(x_test))
    out["circuit_accuracy"] = float(((y_circ > 0.5) == (np.asarray(y_test) > 0.5)).mean())
    return out


def extra_columns(result: FPEResult, trial: int, condition: str, alpha: int, mr: ModelResult, ctx: Context) -> dict:
    key = (result.spec.seed, result.boolean_task.config)
    if ctx.cache.get("test_key") != key:  # one task's data at a time; the training inputs only, never their labels
        ctx.cache["test_key"] = key
        ctx.cache["test_data"], ctx.cache["inputs"] = result.boolean_task.test_data(), result.boolean_task.train_data()[0]
    x, y = ctx.cache["test_data"]
    a = ctx.args
    return decode_measures(mr.model, result.task, x, y, ctx.cache["inputs"], a.threshold, a.similarity, a.max_literals,
                           a.decode_seed, {"pieces": a.certified_pieces})


def _axis(values) -> dict:
    v = sorted({int(x) for x in values})
    return {"type": "log", "tickvals": v, "ticktext": [str(x) for x in v]}


ROWS = (("circuit_agreement", "channels agreement"), ("certified_coverage", "certified coverage"),
        ("certified_gap", "certified − reference"), ("function_gap", "function − reference (uniform)"),
        ("inputs_function_gap", "function − reference (task inputs)"))
GAPS = ("certified_gap", "function_gap", "inputs_function_gap")


def decoding_figure(stats: pd.DataFrame, caption: str = "") -> go.Figure:
    """The channel reading's agreement with the network, the certified reading's
    coverage, and each reading's gap to the true-formula agreement (reading −
    reference, dotted at 0 and −0.02; a reading may lie above 0),
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
        if m in GAPS:
            for c in range(1, 4):
                for y in (0.0, -0.02):
                    fig.add_hline(y=y, line={"dash": "dot", "color": "#999"}, row=r, col=c)
    fig.update_xaxes(title_text="hidden neurons (before expansion)", row=len(rows), col=1)
    fig.update_xaxes(title_text="clauses", row=len(rows), col=2)
    fig.update_xaxes(title_text="α", row=len(rows), col=3)
    fig.update_layout(title="Reading the network (SPEC §5): static channels and certified readings (weights) and decode_function "
                            "(what it computes), against the true-formula agreement (a reference a reading may exceed)",
                      height=1850, width=1350, template="plotly_white")
    return add_caption(fig, caption)


def figures(df: pd.DataFrame, stats: pd.DataFrame, ctx: Context) -> dict[str, go.Figure]:
    return {"decoding": decoding_figure(stats, ctx.caption)}


def _fidelity_item(g: pd.DataFrame, n_clauses: int, clause_size: int, hidden: int, condition: str, alpha: int) -> dict[str, Any]:
    """The certified static reading of one cell (configuration x condition) against the reference: the paired
    non-inferiority test over trials, and what was measured."""
    g = g.sort_values("trial")
    t = stats.noninferiority_test(g.certified_agreement.to_numpy(float), g.true_formula_agreement.to_numpy(float), MARGIN,
                                  resolution=resolution_of(g))
    name = "dense" if condition == "dense" else f"{condition} split, α={alpha}"
    width = hidden if condition == "dense" else hidden * alpha
    measured = {"certified_agreement": round(float(g.certified_agreement.mean()), 4),
                "true_formula_agreement": round(float(g.true_formula_agreement.mean()), 4),
                "gap": round(float(t.mean_diff), 4), "certified_coverage": round(float(g.certified_coverage.mean()), 4),
                "outputs_proved": round(float(g.certified_proved.mean()), 4),
                "coverage_exact": round(float(g.certified_coverage_exact.mean()), 4),
                "function_agreement": round(float(g.function_agreement.mean()), 4),
                "constant_agreement": round(float(g.constant_agreement.mean()), 4),
                "certified_seconds": round(float(g.certified_seconds.mean()), 3),
                "p_below_margin": sig(t.p_beyond), "trials": int(t.n), "width": int(width)}
    return {"claim": FIDELITY_CLAIM.format(margin=MARGIN, clauses=n_clauses, k=clause_size, hidden=width, condition=name,
                                           trials=int(t.n)),
            "result": t, "measured": measured, "condition": condition, "expansion_alpha": int(alpha),
            "n_clauses": int(n_clauses), "hidden": int(hidden),
            "note": (f"Paired non-inferiority test over trials of the certified static reading's agreement with the network "
                     f"against the true formula's, on the same test inputs, margin {MARGIN} stated before looking; q: "
                     "Benjamini-Hochberg over every configuration and condition. A corrected non-inferiority test can only "
                     "agree or be inconclusive: where it does not hold, measured.q_below_margin (Benjamini-Hochberg over "
                     "the same cells of the one-sided test that the reading is more than the margin below) < 0.05 says it "
                     "fails. Coverage: the share of each output's positive inputs its certified terms cover (exact, or a "
                     "sound lower bound); outputs_proved: the share of outputs whose every input is proved.")}


def paper_claims(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The combinatorial-interpretability paper's claim that a static reading of the weights explains small trained
    networks, per configuration of the sweep and condition (dense, clause and random split at each alpha; the
    restart control is left out): the certified static reading's agreement against the true formula's, margin
    `MARGIN` (`fci.stats.noninferiority_test`, Benjamini-Hochberg over the cells)."""
    if df.empty or "certified_agreement" not in df.columns:
        return []
    items = [_fidelity_item(g, int(c), int(k), int(h), cond, int(a))
             for (c, k, h, cond, a), g in df[df.condition != "restart"].groupby(["n_clauses", "clause_size", "hidden",
                                                                                 "condition", "alpha"])]
    below = stats.fdr([it["result"].p_beyond for it in items])
    for it, q in zip(items, below.q):
        it["measured"]["q_below_margin"] = sig(q)
    return family_claims(items)


def fidelity(claims: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the certified static reading explains the network (within the margin of the reference, q < 0.05),
    where it is shown to fall short (q_below_margin < 0.05), and where the trials cannot tell, with the cells."""
    cells = [{"n_clauses": c["n_clauses"], "hidden": c["hidden"], "condition": c["condition"], "alpha": c["expansion_alpha"],
              "verdict": c["verdict"], "q": c["q"], **c["measured"]} for c in claims]
    holds = [x for x in cells if x["verdict"] == "agrees"]
    fails = [x for x in cells if x["q_below_margin"] is not None and x["q_below_margin"] < stats.ALPHA]
    return {"margin": MARGIN, "cells": len(cells), "holds": len(holds), "falls_short": len(fails),
            "undecided": len(cells) - len(holds) - len(fails), "by_cell": cells}


def summarise(df: pd.DataFrame, stats_table: pd.DataFrame, ctx: Context) -> dict:
    pooled = []
    for (cond, a), g in df.groupby(["condition", "alpha"]):
        pooled.append({"condition": cond, "alpha": int(a), "models": len(g),
                       **{f"{m}_mean": float(g[m].mean()) for m in METRICS}})
    a = ctx.args
    claims = paper_claims(df)
    return {"decoding": {"threshold": a.threshold, "similarity": a.similarity, "max_literals": a.max_literals,
                         "decode_seed": a.decode_seed, "pooled": pooled, "fidelity": fidelity(claims)},
            "paper": claims}


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
