"""Regimes: where does random-split FPE help?

Random-split FPE falls below dense at fci's default schedule, yet beats it in
other regimes (short training, SGD, heavy load, one output per clause). This
study maps that: a grid over output mode (dnf, clauses), training length (warm-up
+ fine-tuning epochs), optimiser (Adam lr 0.01, SGD lr 0.1) and load (clauses per
neuron, C / H at H = 8), with the clause and random split at alpha 2 and 4 and
the alpha = 1 restart control, every child paired with the dense baseline of its
trial. Each cell reports the relative accuracy improvement over dense (mean ±
s.e. over trials), the paired test's p and its Benjamini–Hochberg q over the
grid's cells (per child and alpha); cells where every model is identical (at 1.0,
at the base rate) are named degenerate and left out, as is the restart control
under plain SGD (identical to dense by construction). summary.json's `answer`
lists the regimes where each child beats dense at q < 0.05, and those whose raw
p < 0.05 does not survive the correction.

    python -m analyses.regimes [--quick] [--out DIR] [--device auto|cpu|cuda]
                               [--trials N] [--seed S] [--shard I/N] [--data DIR]

With `--shard I/N` only the I-th of N deterministic slices of the trials is
trained into the store, and `results.shard-I-of-N.csv` and
`summary.shard-I-of-N.json` (marked partial) are written; a final run without
`--shard` finds every model in the store and writes the full outputs.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from analyses import register
from analyses.kinds import trial_plan
from analyses.kinds import trial_shard_key as shard_key
from analyses.levels import EXPANSIONS, RESTART
from analyses.rows import model_conditions, model_row
from analyses.runner import Outputs, Plan, RunInfo, contract_parser, study_main
from analyses.style import add_caption, label
from analyses.tables import CORRECTION, mark_cells, p_text, resolution_of, restart_reason
from fci import stats
from fci.metrics import relative_improvement, trial_stats
from fci.tasks import TaskConfig
from fci.train import FPESpec, TrainConfig, run_fpe

__all__ = ["GRIDS", "Grid", "OPTIMIZERS", "specs", "shard_key", "cell_stats", "answer", "heatmap_figure", "main"]

log = logging.getLogger(__name__)

HIDDEN = 8
CLAUSE_SIZE = 3
#: optimiser -> (learning rate): Adam at fci's default, SGD at the rate of the issue's measurement.
OPTIMIZERS = {"adam": 0.01, "sgd": 0.1}
CELL_KEYS = ["outputs", "optimizer", "n_clauses", "warmup", "finetune"]
CHILDREN = tuple(EXPANSIONS) + (RESTART,)


@dataclass(frozen=True)
class Grid:
    """One run level of the regime grid."""

    trials: int
    n_train: int
    n_test: int
    outputs: tuple[str, ...]
    lengths: tuple[int, ...]  # epochs per phase: warm-up = fine-tuning = L
    optimizers: tuple[str, ...]
    clauses: tuple[int, ...]  # C at H = 8: load C / H clauses per neuron
    batch_size: int = 256


GRIDS = {
    "full": Grid(trials=5, n_train=4096, n_test=2048, outputs=("dnf", "clauses"), lengths=(25, 50, 200, 1000),
                 optimizers=("adam", "sgd"), clauses=(4, 8, 16)),
    "quick": Grid(trials=3, n_train=512, n_test=512, outputs=("dnf", "clauses"), lengths=(10, 40),
                  optimizers=("adam", "sgd"), clauses=(8,), batch_size=128),
    "tiny": Grid(trials=2, n_train=128, n_test=128, outputs=("dnf", "clauses"), lengths=(3,),
                 optimizers=("adam", "sgd"), clauses=(8,), batch_size=64),
}


def specs(grid: Grid, trials: int, seed: int) -> list[tuple[FPESpec, int]]:
    """(spec, trial) for every cell of the grid and trial; trial t uses seed `seed + t`."""
    out = []
    for o in grid.outputs:
        for opt in grid.optimizers:
            for C in grid.clauses:
                task = TaskConfig(n_clauses=C, clause_size=CLAUSE_SIZE, outputs=o, n_train=grid.n_train, n_test=grid.n_test)
                for L in grid.lengths:
                    train = TrainConfig(lr=OPTIMIZERS[opt], batch_size=grid.batch_size, warmup=L, finetune=L, optimizer=opt)
                    out += [(FPESpec(task=task, hidden=HIDDEN, seed=seed + t, expansions=CHILDREN, train=train), t)
                            for t in range(trials)]
    return out


def _row(res, trial: int, cond: str, alpha: int, mr, x_test, y_test) -> dict[str, Any]:
    r = model_row(res, trial, cond, alpha, mr, x_test=x_test, y_test=y_test)
    t = res.spec.train
    r.update(outputs=res.spec.task.outputs, optimizer=t.optimizer, lr=t.lr, momentum=t.momentum, warmup=t.warmup,
             finetune=t.finetune, load=res.spec.task.n_clauses / HIDDEN)
    return r


def cell_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell and child condition: accuracy of child and dense, relative
    improvement mean ± s.e. over paired trials, and the paired test of accuracy
    against dense (`fci.stats.paired_test`, guarded by the accuracy's resolution:
    `p`, `test`, `reason`). Then, per child condition and alpha over the grid's
    cells (`analyses.tables.mark_cells`): `degenerate` (child and dense all at 1.0,
    all at the base rate or all identical), `not_applicable` (the restart control
    under plain SGD, identical to dense by construction), and for the rest the
    Benjamini–Hochberg `q` and the `family_size`."""
    dense = df[df.condition == "dense"].set_index(CELL_KEYS + ["trial"])
    rows = []
    for key, g in df[df.condition != "dense"].groupby(CELL_KEYS + ["condition", "alpha"], sort=True):
        g = g.sort_values("trial")
        b = dense.reindex(pd.MultiIndex.from_frame(g[CELL_KEYS + ["trial"]]))["test_accuracy"].to_numpy(float)
        a = g["test_accuracy"].to_numpy(float)
        ok = np.isfinite(b)
        a, b = a[ok], b[ok]
        ri = trial_stats(np.asarray(relative_improvement(a, b)))
        sa, sb = trial_stats(a), trial_stats(b)
        t = stats.paired_test(a, b, resolution=resolution_of(g))  # the cell's test sets (outputs x samples)
        rec = dict(zip(CELL_KEYS + ["condition", "alpha"], key))
        momentum = float(g["momentum"].iloc[0]) if "momentum" in g.columns else 0.0
        rows.append({**rec, "load": key[2] / HIDDEN, "n": int(ok.sum()),
                     "test_accuracy_mean": sa["mean"], "test_accuracy_sem": sa["sem"],
                     "dense_test_accuracy_mean": sb["mean"], "dense_test_accuracy_sem": sb["sem"],
                     "rel_improvement_mean": ri["mean"], "rel_improvement_sem": ri["sem"],
                     "p": math.nan if t.p is None else t.p, "test": t.test, "reason": t.reason,
                     "_restart": restart_reason({"optimizer": rec["optimizer"], "momentum": momentum})})
    st = pd.DataFrame(rows)
    if st.empty:
        return st
    parts = []
    for reason, part in st.groupby(st["_restart"].fillna(""), sort=False):  # restart n/a where the optimiser has no state
        parts.append(mark_cells(part.drop(columns="_restart"), df, CELL_KEYS, p="p", restart=reason or None))
    out = pd.concat(parts, ignore_index=True).sort_values(CELL_KEYS + ["condition", "alpha"], kind="stable")
    # one family per child condition and alpha over every cell of the grid, whatever the optimiser
    skip = out["degenerate"].notna() | out["not_applicable"].notna()
    out = stats.add_fdr(out.drop(columns=["q", "family_size"]), p="p", family=["condition", "alpha"], exclude=skip.to_numpy())
    return out.reset_index(drop=True)


def _cell_name(r: dict[str, Any] | pd.Series) -> str:
    return (f"{r['outputs']} outputs, {r['optimizer']}, C={int(r['n_clauses'])} (load {r['n_clauses'] / HIDDEN:g}), "
            f"{int(r['warmup'])}+{int(r['finetune'])} epochs")


def _cells(d: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"cell": _cell_name(r), **{k: r[k] for k in CELL_KEYS}, "rel_improvement": r["rel_improvement_mean"],
             "rel_improvement_sem": r["rel_improvement_sem"], "p": r["p"], "q": r["q"], "family_size": r["family_size"],
             "test": r["test"], "dense_test_accuracy": r["dense_test_accuracy_mean"], "test_accuracy": r["test_accuracy_mean"]}
            for _, r in d.sort_values("rel_improvement_mean", ascending=False).iterrows()]


def answer(st: pd.DataFrame, level: float = stats.ALPHA) -> dict[str, Any]:
    """Where each child beats dense, per condition and alpha over the grid's cells:
    `beats` / `below` (q < level with a positive / negative mean relative
    improvement; q: Benjamini–Hochberg over the cells of that child that can be
    tested), the count of the rest, the cells left out (`degenerate`: every model
    identical, at 1.0 or at the base rate; `not_applicable`: the restart control
    under plain SGD), and `raw_only`: cells with p < level whose q is not (wins and
    losses that do not survive the correction)."""
    out: dict[str, Any] = {"significance_level": level, "correction": CORRECTION,
                           "family": "the cells of the grid, per child condition and alpha"}
    for cond in ("random", "clause", "restart"):
        for alpha in sorted(set(st[st.condition == cond].alpha)):
            s = st[(st.condition == cond) & (st.alpha == alpha)]
            counts = stats.tally(s.assign(degenerate=s["degenerate"].where(s["not_applicable"].isna(), "n/a")),
                                 effect="rel_improvement_mean", alpha=level)
            fin = s["p"].notna() & s["q"].notna()
            beats = s[fin & (s.rel_improvement_mean > 0) & (s.q < level)]
            loses = s[fin & (s.rel_improvement_mean < 0) & (s.q < level)]
            raw = s[fin & (s.p < level) & ~(s.q < level)]
            deg = s[s["degenerate"].notna()]
            na = s[s["not_applicable"].notna()]
            out[f"{cond}-{int(alpha)}"] = {
                "cells": int(len(s)), "family_size": counts["family_size"], "beats_dense": len(beats),
                "below_dense": len(loses), "not_significant": counts["not_significant"],
                "degenerate": len(deg), "not_applicable": len(na), "untested": counts["untested"],
                "raw_p_beats": int((fin & (s.rel_improvement_mean > 0) & (s.p < level)).sum()),
                "raw_p_below": int((fin & (s.rel_improvement_mean < 0) & (s.p < level)).sum()),
                "beats": _cells(beats), "below": _cells(loses), "raw_only": _cells(raw),
                "degenerate_cells": [{"cell": _cell_name(r), "reason": r["degenerate"]} for _, r in deg.iterrows()],
                "not_applicable_reason": na["not_applicable"].iloc[0] if len(na) else None,
                "not_applicable_cells": [_cell_name(r) for _, r in na.iterrows()],
            }
    return out


def heatmap_figure(st: pd.DataFrame, caption: str) -> go.Figure:
    """The regime map: one heatmap per child condition; rows are (outputs,
    optimiser, load), columns training lengths; colour the relative improvement
    over dense, text its value with * where q < 0.05 (paired test, Benjamini–Hochberg
    over the child's cells); '(deg.)' marks a degenerate cell, 'n/a' a restart
    control that cannot differ from dense (plain SGD)."""
    conds = [(c, a) for c, a in CHILDREN if ((st.condition == ("restart" if (c, a) == RESTART else c)) & (st.alpha == a)).any()]
    names = [("restart" if (c, a) == RESTART else c, a) for c, a in conds]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[label(c, a) for c, a in names], shared_yaxes=True,
                        horizontal_spacing=0.02)
    v = 100 * st.rel_improvement_mean.abs().max() if len(st) else 1.0
    for i, (c, a) in enumerate(names):
        s = st[(st.condition == c) & (st.alpha == a)]
        rows = sorted({(o, opt, C) for o, opt, C in zip(s.outputs, s.optimizer, s.n_clauses)})
        cols = sorted(set(s.warmup))
        z, text = [], []
        for o, opt, C in rows:
            zr: list[float | None] = []
            tr: list[str] = []
            for L in cols:
                r = s[(s.outputs == o) & (s.optimizer == opt) & (s.n_clauses == C) & (s.warmup == L)]
                if r.empty:
                    zr.append(None)
                    tr.append("")
                    continue
                r0 = r.iloc[0]
                zr.append(100 * r0.rel_improvement_mean)
                if isinstance(r0.get("not_applicable"), str):
                    tr.append("n/a")
                    continue
                star = "*" if np.isfinite(r0.q) and r0.q < stats.ALPHA else ""
                tr.append(f"{100 * r0.rel_improvement_mean:+.1f}{star}" + (" (deg.)" if isinstance(r0.get("degenerate"), str) else ""))
            z.append(zr)
            text.append(tr)
        fig.add_trace(go.Heatmap(z=z, x=[f"{L}+{L}" for L in cols], y=[f"{o} · {opt} · C={C}" for o, opt, C in rows],
                                 text=text, texttemplate="%{text}", zmin=-v, zmax=v, colorscale="RdBu",
                                 showscale=i == len(names) - 1, colorbar={"title": "rel. impr. %"},
                                 hovertemplate="%{y}<br>%{x} epochs<br>%{z:.2f}%<extra></extra>"),
                      row=1, col=i + 1)
        fig.update_xaxes(title_text="warm-up + fine-tune epochs", row=1, col=i + 1)
    fig.update_layout(title="Where does FPE beat dense? Relative test-accuracy improvement over the paired dense baseline "
                            "(%, * q<0.05, Benjamini-Hochberg over the cells)", height=260 + 34 * max(1, len(set(zip(st.outputs, st.optimizer, st.n_clauses)))),
                      width=360 * len(names) + 240, template="plotly_white")
    return add_caption(fig, caption)


def build_parser() -> argparse.ArgumentParser:
    g = GRIDS["full"]
    return contract_parser(
        "regimes", __doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        epilog="Outputs: results.csv (one row per model), stats.csv (per cell and condition), summary.json "
               "(with `answer`), regime_map.html. Models come from the results store under --data.",
        quick_help=f"a 2x2x2 grid (no load axis) that finishes in about a minute (default: {len(g.outputs)} x "
                   f"{len(g.lengths)} x {len(g.optimizers)} x {len(g.clauses)} cells, {g.trials} trials)",
        units="trials")


@dataclass
class RegimeContext:
    """What the regimes study's steps share: options, grid, sweep, caption, config."""

    run: RunInfo
    grid: Grid
    trials: int
    items: list[tuple[FPESpec, int]]
    caption: str
    config: dict[str, Any]
    results: list = field(default_factory=list)


#: The study's title and what it shows (for --help and `python -m analyses`).
DESCRIPTION = "\n\n".join((__doc__ or "").strip().split("\n\n")[:2])


class RegimesStudy:
    """The regime map as a study of Boolean FPE trials (`analyses.runner.run`)."""

    name = "regimes"
    description = DESCRIPTION

    def parser(self) -> argparse.ArgumentParser:
        return build_parser()

    def prepare(self, ap: argparse.ArgumentParser, info: RunInfo) -> RegimeContext:
        args, grid = info.args, GRIDS[info.level]
        trials = grid.trials if args.trials is None else args.trials
        if trials < 2:
            ap.error(f"--trials must be >= 2 (a paired test needs two pairs), got {trials}")
        items = specs(grid, trials, args.seed)
        cells = len(items) // trials
        caption = (f"regimes · level={info.level} · trials={trials} (seeds {args.seed}..{args.seed + trials - 1}) · "
                   f"k={CLAUSE_SIZE} disjoint DNF, balanced planting, H={HIDDEN}, {grid.n_train} train / {grid.n_test} "
                   f"test samples, batch {grid.batch_size}<br>Adam lr={OPTIMIZERS['adam']}, SGD lr={OPTIMIZERS['sgd']} "
                   f"(no momentum); warm-up = fine-tune epochs; dense baseline trains both · α=1 restart control · "
                   f"device={info.device.type}")
        config = {"study": "regimes", "level": info.level, "trials": trials, "seed": args.seed,
                  "seeds": [args.seed + t for t in range(trials)], "shard": args.shard, "device": str(info.device),
                  "grid": {**grid.__dict__}, "cells": cells, "optimizers": OPTIMIZERS, "hidden": HIDDEN,
                  "clause_size": CLAUSE_SIZE, "children": [list(c) for c in CHILDREN], "data": str(args.data),
                  "out": str(info.out), "caption": caption}
        return RegimeContext(run=info, grid=grid, trials=trials, items=items, caption=caption, config=config)

    def plan(self, ctx: RegimeContext) -> Plan:
        return trial_plan(ctx.items, ctx.run, f"{ctx.config['cells']} cells x {ctx.trials} trials")

    def table(self, units: list[tuple[FPESpec, int]], ctx: RegimeContext) -> pd.DataFrame:
        results = run_fpe([s for s, _ in units], device=ctx.run.device, store=ctx.run.store)
        rows = []
        for res, (_, trial) in tqdm(list(zip(results, units)), desc="measure", unit="trial", leave=False):
            x_test, y_test = res.boolean_task.test_data()
            rows += [_row(res, trial, c, a, mr, x_test, y_test) for c, a, mr in model_conditions(res)]
        return pd.DataFrame(rows)

    def run_record(self, units: list[tuple[FPESpec, int]], ctx: RegimeContext) -> dict[str, Any]:
        return {"models": len(units) * (1 + len(CHILDREN))}

    def finish(self, df: pd.DataFrame, ctx: RegimeContext) -> Outputs:
        st = cell_stats(df)
        return Outputs(stats=st, summary={"answer": answer(st), "cells": st.to_dict("records")},
                       figures={"regime_map": heatmap_figure(st, ctx.caption)}, lines=_answer_lines)


def _answer_lines(summary: dict[str, Any]) -> list[str]:
    a, lines = summary["answer"], []
    lines.append(f"per child over the grid's cells: q < {a['significance_level']:g} ({a['correction']} over the cells that "
                 "can be tested); raw p < 0.05 counts beside them")
    for key in [k for k in a if k not in ("significance_level", "correction", "family")]:
        v = a[key]
        left = (f"; {v['degenerate']} degenerate" if v["degenerate"] else "") + \
               (f"; {v['not_applicable']} not applicable" if v["not_applicable"] else "")
        lines.append(f"{key:<10} beats dense in {v['beats_dense']}/{v['family_size']} cells, below in {v['below_dense']} "
                     f"(raw p: {v['raw_p_beats']}/{v['raw_p_below']}){left}")
        lines += [f"    + {c['cell']}: {100 * c['rel_improvement']:+.1f}% (p={p_text(c['p'])}, q={p_text(c['q'])})"
                  for c in v["beats"][:6]]
        lines += [f"    - {c['cell']}: {100 * c['rel_improvement']:+.1f}% (p={p_text(c['p'])}, q={p_text(c['q'])})"
                  for c in v["below"][::-1][:3]]
        lines += [f"    ? {c['cell']}: {100 * c['rel_improvement']:+.1f}% (p={p_text(c['p'])}, q={p_text(c['q'])}: "
                  "does not survive the correction)" for c in v["raw_only"][:6]]
        if v["not_applicable"]:
            lines.append(f"    n/a: {v['not_applicable_reason']}")
    return lines


STUDY = register(RegimesStudy())
main = study_main(STUDY)


if __name__ == "__main__":
    sys.exit(main())
