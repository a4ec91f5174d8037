"""Regimes: where does random-split FPE help?

Random-split FPE falls below dense at fci's default schedule, yet beats it in
other regimes (short training, SGD, heavy load, one output per clause). This
study maps that: a grid over output mode (dnf, clauses), training length (warm-up
+ fine-tuning epochs), optimiser (Adam lr 0.01, SGD lr 0.1) and load (clauses per
neuron, C / H at H = 8), with the clause and random split at alpha 2 and 4 and
the alpha = 1 restart control, every child paired with the dense baseline of its
trial. Each cell reports the relative accuracy improvement over dense (mean ±
s.e. over trials) and the paired t-test's p; summary.json's `answer` lists the
regimes where random split beats dense, and with what p.

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
from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from analyses import register
from analyses.levels import EXPANSIONS, RESTART
from analyses.rows import model_conditions, model_row
from analyses.runner import Outputs, Plan, RunInfo, contract_parser, run
from analyses.style import add_caption, label
from fci.metrics import paired_ttest, relative_improvement, trial_stats
from fci.tasks import TaskConfig
from fci.train import FPESpec, TrainConfig, entry_configs, plan_cost, run_fpe, trial_keys

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


def shard_key(item: tuple[FPESpec, int]) -> dict[str, Any]:
    """A trial's identity for `--shard`: its dense model's store config (as every study's)."""
    return entry_configs(item[0])[("dense", 1)]


def _row(res, trial: int, cond: str, alpha: int, mr, x_test) -> dict[str, Any]:
    r = model_row(res, trial, cond, alpha, mr, x_test=x_test)
    t = res.spec.train
    r.update(outputs=res.spec.task.outputs, optimizer=t.optimizer, lr=t.lr, warmup=t.warmup, finetune=t.finetune,
             load=res.spec.task.n_clauses / HIDDEN)
    return r


def cell_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell and child condition: accuracy of child and dense, relative
    improvement mean ± s.e. over paired trials, and the paired t-test's p."""
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
        rows.append({**dict(zip(CELL_KEYS + ["condition", "alpha"], key)), "load": key[2] / HIDDEN, "n": int(ok.sum()),
                     "test_accuracy_mean": sa["mean"], "test_accuracy_sem": sa["sem"],
                     "dense_test_accuracy_mean": sb["mean"], "dense_test_accuracy_sem": sb["sem"],
                     "rel_improvement_mean": ri["mean"], "rel_improvement_sem": ri["sem"],
                     "p": paired_ttest(a, b)["p"] if len(a) > 1 else math.nan})
    return pd.DataFrame(rows)


def _cell_name(r: dict[str, Any] | pd.Series) -> str:
    return (f"{r['outputs']} outputs, {r['optimizer']}, C={int(r['n_clauses'])} (load {r['n_clauses'] / HIDDEN:g}), "
            f"{int(r['warmup'])}+{int(r['finetune'])} epochs")


def answer(st: pd.DataFrame, level: float = 0.05) -> dict[str, Any]:
    """Where random split beats dense: per alpha, the cells with a positive mean
    relative improvement and p < level ('beats'), those significantly below
    ('loses'), and the rest; plus the same count for the clause split and restart."""
    out: dict[str, Any] = {"significance_level": level}
    for cond in ("random", "clause", "restart"):
        for alpha in sorted(set(st[st.condition == cond].alpha)):
            s = st[(st.condition == cond) & (st.alpha == alpha)]
            fin = s["p"].notna()
            beats = s[fin & (s.rel_improvement_mean > 0) & (s.p < level)]
            loses = s[fin & (s.rel_improvement_mean < 0) & (s.p < level)]

            def cells(d: pd.DataFrame) -> list[dict[str, Any]]:
                return [{"cell": _cell_name(r), **{k: r[k] for k in CELL_KEYS}, "rel_improvement": r["rel_improvement_mean"],
                         "rel_improvement_sem": r["rel_improvement_sem"], "p": r["p"],
                         "dense_test_accuracy": r["dense_test_accuracy_mean"], "test_accuracy": r["test_accuracy_mean"]}
                        for _, r in d.sort_values("rel_improvement_mean", ascending=False).iterrows()]

            out[f"{cond}-{int(alpha)}"] = {"cells": int(len(s)), "beats_dense": len(beats), "below_dense": len(loses),
                                          "not_significant": int(len(s) - len(beats) - len(loses)),
                                          "beats": cells(beats), "below": cells(loses)}
    return out


def heatmap_figure(st: pd.DataFrame, caption: str) -> go.Figure:
    """The regime map: one heatmap per child condition; rows are (outputs,
    optimiser, load), columns training lengths; colour the relative improvement
    over dense, text its value with * where p < 0.05 (paired t-test)."""
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
                star = "*" if np.isfinite(r0.p) and r0.p < 0.05 else ""
                tr.append(f"{100 * r0.rel_improvement_mean:+.1f}{star}")
            z.append(zr)
            text.append(tr)
        fig.add_trace(go.Heatmap(z=z, x=[f"{L}+{L}" for L in cols], y=[f"{o} · {opt} · C={C}" for o, opt, C in rows],
                                 text=text, texttemplate="%{text}", zmin=-v, zmax=v, colorscale="RdBu",
                                 showscale=i == len(names) - 1, colorbar={"title": "rel. impr. %"},
                                 hovertemplate="%{y}<br>%{x} epochs<br>%{z:.2f}%<extra></extra>"),
                      row=1, col=i + 1)
        fig.update_xaxes(title_text="warm-up + fine-tune epochs", row=1, col=i + 1)
    fig.update_layout(title="Where does FPE beat dense? Relative test-accuracy improvement over the paired dense baseline "
                            "(%, * p<0.05)", height=260 + 34 * max(1, len(set(zip(st.outputs, st.optimizer, st.n_clauses)))),
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
        def produce(items: list[tuple[FPESpec, int]]) -> None:
            run_fpe([s for s, _ in items], device=ctx.run.device, progress=True, store=ctx.run.store, executor=ctx.run.executor)

        return Plan(units=ctx.items, keys=lambda item: trial_keys([item[0]])[0], produce=produce, shard_key=shard_key,
                    cost=lambda items: plan_cost([s for s, _ in items]),
                    unit="trials", describe=f"{ctx.config['cells']} cells x {ctx.trials} trials")

    def table(self, units: list[tuple[FPESpec, int]], ctx: RegimeContext) -> pd.DataFrame:
        results = run_fpe([s for s, _ in units], device=ctx.run.device, store=ctx.run.store)
        rows = []
        for res, (_, trial) in tqdm(list(zip(results, units)), desc="measure", unit="trial", leave=False):
            x_test = res.boolean_task.test_data()[0]
            rows += [_row(res, trial, c, a, mr, x_test) for c, a, mr in model_conditions(res)]
        return pd.DataFrame(rows)

    def run_record(self, units: list[tuple[FPESpec, int]], ctx: RegimeContext) -> dict[str, Any]:
        return {"models": len(units) * (1 + len(CHILDREN))}

    def finish(self, df: pd.DataFrame, ctx: RegimeContext) -> Outputs:
        st = cell_stats(df)
        return Outputs(stats=st, summary={"answer": answer(st), "cells": st.to_dict("records")},
                       figures={"regime_map": heatmap_figure(st, ctx.caption)}, lines=_answer_lines)


def _answer_lines(summary: dict[str, Any]) -> list[str]:
    a, lines = summary["answer"], []
    for key in [k for k in a if k != "significance_level"]:
        v = a[key]
        lines.append(f"{key:<10} beats dense (p<0.05) in {v['beats_dense']}/{v['cells']} cells, below in {v['below_dense']}")
        lines += [f"    + {c['cell']}: {100 * c['rel_improvement']:+.1f}% (p={c['p']:.2g})" for c in v["beats"][:6]]
    return lines


STUDY = register(RegimesStudy())


def main(argv: Sequence[str] | None = None) -> int:
    return run(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
