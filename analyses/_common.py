"""Shared machinery of the study commands (`python -m analyses.<name>`).

A study is data: a sweep (a list of `Point`s per run level), optional extra
per-model measurements, and figure builders that are pure functions of the
results table. This module turns a `Study` into a command with the common
contract:

    python -m analyses.<name> [--quick] [--out DIR] [--device auto|cpu|cuda]
                              [--trials N] [--seed S] [--shard I/N] [--data DIR]

It validates the options before any work, trains every model of the sweep in
one `fci.train.run_fpe` call backed by the results store (a rerun trains
nothing, an interrupted run resumes), measures each model (accuracy, nnz,
feature capacity, cosine interference, ...), pairs every FPE child with the
dense baseline of its trial, and writes atomically:

    results.csv      one row per trained model
    stats.csv        per condition: mean, s.e., n, relative improvement, p-values
    loss_curves.csv  mean train loss per epoch and condition (the convergence check)
    summary.json     config, environment, per-condition statistics, convergence
    *.html           self-contained plotly figures (plotly.js inlined, offline)

With `--shard I/N` only the I-th slice of the trials runs, and only
`results.shard-I-of-N.csv` and `summary.shard-I-of-N.json` (marked partial) are
written; a final run without `--shard` finds every model in the store and
writes the full outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from tqdm.auto import tqdm

from analyses._rows import model_columns
from analyses._runner import Outputs, Plan, RunInfo, run
from fci.cli import (
    TASK_OPTIONS,
    TRAIN_OPTIONS,
    OneLineParser,
    add_regime_arguments,
    build_train,
    check_writable,
    flag_error,
    mean_sem_text,
    parse_splits,
    regime_overrides,
    regime_record,
    regime_text,
)
from fci.codes import clause_channels
from fci.fpe.splits import SPLITS, split_info
from fci.io import environment, jsonable, write_json
from fci.metrics import (
    LATE_WINDOW,
    clause_mean_capacity,
    cosine_interference_stats,
    feature_capacity,
    fold_change,
    is_flat,
    late_drop,
    paired_ttest,
    relative_improvement,
    trial_stats,
)
from fci.models.base import resolve_device
from fci.sharding import parse_shard
from fci.store import Store, config_key
from fci.tasks import TaskConfig
from fci.train import FPEResult, FPESpec, ModelResult, TrainConfig, backends_of, entry_configs, run_fpe, trial_keys

__all__ = [
    "Level",
    "LEVELS",
    "Point",
    "Study",
    "Context",
    "EXPANSIONS",
    "HEADLINE",
    "SUPERPOSITION",
    "superposition_points",
    "paired_rows",
    "GROUP_KEYS",
    "CONFIG_KEYS",
    "default_train",
    "make_specs",
    "trial_keys",
    "model_row",
    "condition_stats",
    "pooled_stats",
    "loss_curves",
    "convergence",
    "environment",
    "build_parser",
    "contract_parser",
    "study_options",
    "write_shard",
    "run_study",
    "write_csv",
    "write_json",
    "write_figure",
    "add_caption",
    "add_metric_traces",
    "loss_figure",
    "style",
    "significance_text",
    "jsonable",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- run levels


@dataclass(frozen=True)
class Level:
    """How big a run is: the default trial count, the data sizes and the schedule.

    Attributes:
        name: "full" (the default run), "quick" (--quick) or "tiny" (tests only).
        trials: default number of trials (--trials overrides).
        n_train: training samples per task (--train-samples overrides).
        n_test: test samples per task.
        train: the training schedule, shared by every study at this level so
            that identical (task, width, seed) trials are trained once (the
            training options override its fields).
        task: TaskConfig fields beyond the point's C and k and the sample sizes
            (--vars, --layout, --outputs, --p, --negation-prob); empty = defaults.
    """

    name: str
    trials: int
    n_train: int
    n_test: int
    train: TrainConfig
    task: dict[str, Any] = field(default_factory=dict)  # TaskConfig fields set by the task options (--p, ...)


LEVELS: dict[str, Level] = {
    # The default run: TrainConfig's defaults (lr 0.01, batch 256, 200 dense
    # warm-up epochs + 200 fine-tuning epochs, i.e. 6400 dense steps), on the
    # SPEC's data sizes.
    "full": Level("full", trials=5, n_train=4096, n_test=2048, train=TrainConfig()),
    # A smoke run that finishes in under 2 minutes on 2 cores.
    "quick": Level("quick", trials=3, n_train=512, n_test=512,
                   train=TrainConfig(lr=0.01, batch_size=128, warmup=100, finetune=100)),
    # For the tests: seconds.
    "tiny": Level("tiny", trials=2, n_train=128, n_test=128,
                  train=TrainConfig(lr=0.02, batch_size=64, warmup=4, finetune=4)),
}


def default_train(quick: bool = False) -> TrainConfig:
    """The training schedule every study uses at the default or --quick level."""
    return LEVELS["quick" if quick else "full"].train


EXPANSIONS: tuple[tuple[str, int], ...] = (("clause", 2), ("random", 2), ("clause", 4), ("random", 4))
"""The expansions most studies train: clause and random split at alpha 2 and 4."""


@dataclass(frozen=True)
class Point:
    """One configuration of a sweep; every trial of it is one `FPESpec`.

    Attributes:
        n_clauses: C, clauses of the DNF task.
        hidden: H, hidden width of the dense parent.
        expansions: (split, alpha) pairs the parent is expanded into.
        clause_size: k, literals per clause.
    """

    n_clauses: int
    hidden: int
    expansions: tuple[tuple[str, int], ...] = EXPANSIONS
    clause_size: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {"n_clauses": self.n_clauses, "hidden": self.hidden, "clause_size": self.clause_size,
                "expansions": [list(e) for e in self.expansions]}


HEADLINE = Point(n_clauses=8, hidden=8)
"""The paper's headline configuration: 8 clauses, 8 neurons, alpha 2 and 4."""

SUPERPOSITION: dict[str, dict[str, tuple]] = {
    "full": {"hidden": (2, 4, 8, 16), "clauses": (4, 8, 16, 32), "skip": ()},
    "quick": {"hidden": (4, 8, 16), "clauses": (4, 8, 16), "skip": ()},
    "tiny": {"hidden": (4, 8), "clauses": (4, 8), "skip": ()},
}
"""The superposition sweep shared by several studies: hidden widths (at
HEADLINE.n_clauses clauses) and clause counts (at HEADLINE.hidden neurons);
`skip` lists (clauses, hidden) cells of the grid that are not run."""


def superposition_points(level: str, grid: bool = True) -> list[Point]:
    """The (hidden x clauses) grid, or with grid=False only its two lines through
    the headline point: widths at 8 clauses and clause counts at 8 neurons."""
    sw = SUPERPOSITION[level]
    if grid:
        pairs = [(c, h) for c in sw["clauses"] for h in sw["hidden"] if (c, h) not in set(sw["skip"])]
    else:
        pairs = [(HEADLINE.n_clauses, h) for h in sw["hidden"]] + [(c, HEADLINE.hidden) for c in sw["clauses"]]
    seen, out = set(), []
    for c, h in pairs:
        if (c, h) not in seen:
            seen.add((c, h))
            out.append(Point(n_clauses=c, hidden=h))
    return out


CONFIG_KEYS = ["n_clauses", "clause_size", "hidden"]
"""Columns that name a configuration (a trial's dense baseline shares them)."""
GROUP_KEYS = CONFIG_KEYS + ["condition", "alpha"]
"""Columns that name one condition of one configuration."""


RESTART: tuple[str, int] = ("random", 1)
"""The alpha = 1 restart control: the parent at the end of warm-up, copied unchanged
and fine-tuned with a fresh optimiser, like every child (condition 'restart')."""


def point_task(point: Point, level: Level) -> TaskConfig:
    """The task family of a point at a level (its C and k, the level's sizes and task options)."""
    return TaskConfig(n_clauses=point.n_clauses, clause_size=point.clause_size, n_train=level.n_train,
                      n_test=level.n_test, **level.task)


def point_expansions(point: Point, splits: Sequence[str] | None = None, restart: bool = True) -> tuple[tuple[str, int], ...]:
    """The point's (split, alpha) children; with `splits`, those splits at each of the
    point's alphas instead; with `restart`, the alpha = 1 restart control too."""
    exps = tuple(point.expansions)
    if splits is not None:
        alphas = list(dict.fromkeys(a for _, a in exps if a > 1))
        exps = tuple((s, a) for a in alphas for s in splits)
    if restart and RESTART not in exps:
        exps = exps + (RESTART,)
    return exps


def make_specs(points: Sequence[Point], level: Level, trials: int, seed: int, splits: Sequence[str] | None = None,
               restart: bool = True) -> list[tuple[FPESpec, int]]:
    """(spec, trial) for every point and trial; trial t uses seed `seed + t`."""
    out = []
    for p in points:
        task = point_task(p, level)
        exps = point_expansions(p, splits, restart)
        for t in range(trials):
            out.append((FPESpec(task=task, hidden=p.hidden, seed=seed + t, expansions=exps, train=level.train), t))
    return out


def _shard_key(item: tuple[FPESpec, int]) -> dict[str, Any]:
    """A trial's identity for sharding: its dense model's store config."""
    return entry_configs(item[0])[("dense", 1)]


# --------------------------------------------------------------------------- per-model rows


def _width(spec: FPESpec) -> int:
    """The hidden width of a one-hidden-layer trial (every sweep of these studies)."""
    if not isinstance(spec.hidden, int):
        raise ValueError(f"these studies train one hidden layer, got hidden={spec.hidden!r}")
    return spec.hidden


def model_row(result: FPEResult, trial: int, condition: str, alpha: int, res: ModelResult,
              channel_threshold: float = 0.1, x_test: torch.Tensor | None = None) -> dict[str, Any]:
    """One results.csv row: what the model is and what it measures.

    The measurements every trained model has (test_accuracy, train_loss_final,
    converged, nnz, dead_units, backend, ...) come from `analyses._rows.model_columns`;
    dead_units counts first-layer units that never fire on the test inputs
    `x_test` (drawn from the task when not given). Beside them:
    feature_capacity is the mean capacity over clause variables and
    cosine_interference the mean |cos| between non-zero neuron rows, both on the
    effective first-layer weights (SPEC §4); clauses_with_channel counts clauses
    whose feature channel (SPEC §5, relative threshold `channel_threshold`) is
    non-empty. Condition 'restart' is the alpha = 1 control (stored as the split
    `RESTART`). Column meanings: `analyses._columns.COLUMNS`.
    """
    spec, task = result.spec, result.boolean_task
    W1 = res.model.effective_weights()[0][0]  # (H', n)
    clauses = task.clauses
    cap = clause_mean_capacity(feature_capacity(W1), clauses)
    cos = cosine_interference_stats(W1)
    channels = clause_channels(W1, clauses, threshold=channel_threshold)
    cfg = entry_configs(spec)[RESTART if condition == "restart" else (condition, alpha)]
    if x_test is None:
        x_test = task.test_data()[0]
    return {
        "condition": condition,
        "alpha": int(alpha),
        "hidden": _width(spec),
        "width": int(res.model.hidden[0]),
        "n_clauses": task.n_clauses,
        "clause_size": task.clause_size,
        "n_vars": task.n_vars,  # type: ignore[has-type]  # fci.tasks does not type-check yet
        "trial": int(trial),
        "seed": int(spec.seed),
        **model_columns(res, x_test),
        "feature_capacity": float(cap),
        "cosine_interference": float(cos["abs_mean"]),
        "cosine_signed": float(cos["signed_mean"]),
        "active_neurons": int((W1 != 0).any(1).sum()),
        "clauses_with_channel": int(sum(1 for ch in channels if ch)),
        "store_key": config_key(cfg),
    }


def condition_order(condition: str) -> int:
    """Where a condition goes in tables and legends: dense, the alpha = 1 restart
    control, then the registered splits in registration order (fci.fpe.SPLITS)."""
    fixed = {"dense": 0, "restart": 1}
    if condition in fixed:
        return fixed[condition]
    return 2 + (list(SPLITS).index(condition) if condition in SPLITS else len(SPLITS))


def _conditions(result: FPEResult) -> list[tuple[str, int, ModelResult]]:
    """(condition, alpha, model) of a trial: dense, each child, the restart control as 'restart'."""
    return [("dense", 1, result.dense)] + [("restart" if (s, a) == RESTART else s, a, r)
                                           for (s, a), r in result.children.items()]


# --------------------------------------------------------------------------- statistics

BASE_METRICS = ("test_accuracy", "acc_per_param", "feature_capacity", "cosine_interference", "nnz",
                "clauses_with_channel", "train_accuracy", "train_loss_final", "dead_units")
FOLD_METRICS = ("feature_capacity", "cosine_interference")


def _finite(v: np.ndarray) -> np.ndarray:
    return v[np.isfinite(v)]


def condition_stats(df: pd.DataFrame, metrics: Sequence[str] = BASE_METRICS) -> pd.DataFrame:
    """Per configuration and condition, over trials, paired with the dense
    baseline of the same trial: `<m>_mean`, `<m>_sem`, `<m>_p` (paired t-test
    against dense) for each metric; `rel_improvement_mean/_sem/_p` for accuracy
    (p of the paired test of accuracy against dense); `<m>_fold_mean/_sem` for
    the fold changes of capacity and cosine interference; and `n` (trials)."""
    metrics = [m for m in metrics if m in df.columns]
    dense = df[df.condition == "dense"].set_index(CONFIG_KEYS + ["trial"])
    out = []
    for key, g in df.groupby(GROUP_KEYS, sort=True):
        rec = dict(zip(GROUP_KEYS, key))
        g = g.sort_values("trial")
        idx = pd.MultiIndex.from_frame(g[CONFIG_KEYS + ["trial"]])
        paired = dense.reindex(idx)
        ok = paired["test_accuracy"].notna().to_numpy()
        rec["n"] = int(len(g))
        rec["n_paired"] = int(ok.sum())
        for m in metrics:
            v = g[m].to_numpy(dtype=float)
            s = trial_stats(_finite(v))
            rec[f"{m}_mean"], rec[f"{m}_sem"] = s["mean"], s["sem"]
            if rec["condition"] == "dense":
                rec[f"{m}_p"] = math.nan
            else:
                b = paired[m].to_numpy(dtype=float)
                keep = ok & np.isfinite(v) & np.isfinite(b)
                rec[f"{m}_p"] = paired_ttest(v[keep], b[keep])["p"]
        a, b = g["test_accuracy"].to_numpy(dtype=float)[ok], paired["test_accuracy"].to_numpy(dtype=float)[ok]
        ri = trial_stats(np.asarray(relative_improvement(a, b)))
        rec["rel_improvement_mean"], rec["rel_improvement_sem"] = ri["mean"], ri["sem"]
        rec["rel_improvement_p"] = rec.get("test_accuracy_p", math.nan)
        for m in FOLD_METRICS:
            if m in metrics:
                f = fold_change(g[m].to_numpy(dtype=float)[ok], paired[m].to_numpy(dtype=float)[ok])
                fs = trial_stats(_finite(f))
                rec[f"{m}_fold_mean"], rec[f"{m}_fold_sem"] = fs["mean"], fs["sem"]
        out.append(rec)
    return pd.DataFrame(out)


def paired_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The FPE rows of `df` with their paired dense baseline's values:
    `dense_<m>` for the base metrics, `rel_improvement`, and the fold changes
    `feature_capacity_fold` and `cosine_interference_fold`."""
    cols = [c for c in BASE_METRICS if c in df.columns]
    dense = df[df.condition == "dense"][CONFIG_KEYS + ["trial"] + cols].rename(columns={c: f"dense_{c}" for c in cols})
    out = df[df.condition != "dense"].merge(dense, on=CONFIG_KEYS + ["trial"], how="inner")
    out["rel_improvement"] = relative_improvement(out["test_accuracy"].to_numpy(float), out["dense_test_accuracy"].to_numpy(float))
    for m in FOLD_METRICS:
        if m in cols:
            out[f"{m}_fold"] = fold_change(out[m].to_numpy(float), out[f"dense_{m}"].to_numpy(float))
    return out


def pooled_stats(df: pd.DataFrame, by: Sequence[str] = ("condition", "alpha")) -> pd.DataFrame:
    """Per condition over every configuration: all (child, baseline) pairs pooled.
    Columns: condition, alpha, n_pairs, accuracy mean/sem, relative improvement
    mean/sem, and the paired t-test p of accuracy against dense."""
    dense = df[df.condition == "dense"].set_index(CONFIG_KEYS + ["trial"])
    rows = []
    for key, g in df[df.condition != "dense"].groupby(list(by), sort=True):
        paired = dense.reindex(pd.MultiIndex.from_frame(g[CONFIG_KEYS + ["trial"]]))
        ok = paired["test_accuracy"].notna().to_numpy()
        a, b = g["test_accuracy"].to_numpy(dtype=float)[ok], paired["test_accuracy"].to_numpy(dtype=float)[ok]
        s, ri = trial_stats(a), trial_stats(np.asarray(relative_improvement(a, b)))
        rows.append({**dict(zip(by, key)), "n_pairs": int(ok.sum()), "test_accuracy_mean": s["mean"], "test_accuracy_sem": s["sem"],
                     "dense_test_accuracy_mean": float(b.mean()) if len(b) else math.nan,
                     "rel_improvement_mean": ri["mean"], "rel_improvement_sem": ri["sem"],
                     "p": paired_ttest(a, b)["p"]})
    return pd.DataFrame(rows)


def loss_curves(results: Iterable[tuple[FPEResult, int]]) -> pd.DataFrame:
    """Mean (and s.e.) train loss per epoch over trials, per configuration and
    condition. Epochs are absolute: dense runs 0..warmup+finetune-1, children
    warmup..warmup+finetune-1 (they start from the parent at `warmup`)."""
    curves: dict[tuple, list[list[float]]] = {}
    offsets: dict[tuple, int] = {}
    for res, _ in results:
        t = res.boolean_task
        for cond, alpha, mr in _conditions(res):
            key = (t.n_clauses, t.clause_size, _width(res.spec), cond, int(alpha))
            curves.setdefault(key, []).append(list(mr.train_loss))
            offsets[key] = 0 if cond == "dense" else res.spec.train.warmup
    out = []
    for key, losses in sorted(curves.items(), key=lambda kv: str(kv[0])):
        L = np.array([l for l in losses if len(l) == len(losses[0])], dtype=float)  # (trials, epochs)
        if L.size == 0:
            continue
        mean = L.mean(0)
        sem = L.std(0, ddof=1) / np.sqrt(len(L)) if len(L) > 1 else np.full(L.shape[1], np.nan)
        for e, (m, s) in enumerate(zip(mean, sem)):
            out.append({**dict(zip(GROUP_KEYS, key)), "epoch": offsets[key] + e, "loss_mean": float(m), "loss_sem": float(s)})
    return pd.DataFrame(out, columns=GROUP_KEYS + ["epoch", "loss_mean", "loss_sem"])


def convergence(curves: pd.DataFrame, window: float = LATE_WINDOW) -> dict[str, Any]:
    """Did training flatten? Per configuration and condition, on the mean train
    loss curve: the final mean train loss, `late_drop_abs` and `late_drop`
    (absolute and relative fall over the last `window` of the phase's epochs,
    `fci.metrics.late_drop`) and `flat` (`fci.metrics.is_flat`: the suite's one
    rule, the same as each model's `converged` column). `worst` gives, per
    condition, the curve with the largest absolute late drop."""
    if curves.empty:
        return {"window": window, "per_condition": [], "worst": {}, "flat_fraction": None}
    per = []
    for key, g in curves.groupby(GROUP_KEYS, sort=True):
        L = g.sort_values("epoch")["loss_mean"].to_numpy()
        drop_abs, drop = late_drop(L, window)
        per.append({**dict(zip(GROUP_KEYS, key)), "epochs": int(len(L)), "first_loss": float(L[0]), "final_loss": float(L[-1]),
                    "late_drop_abs": drop_abs, "late_drop": drop, "flat": is_flat(drop_abs, drop)})
    pdf = pd.DataFrame(per)
    worst = {}
    for (cond, alpha), g in pdf.groupby(["condition", "alpha"]):
        i = g["late_drop_abs"].idxmax() if g["late_drop_abs"].notna().any() else g.index[0]
        worst[f"{cond}-{alpha}"] = {k: jsonable(v) for k, v in pdf.loc[i].items()}
    return {"window": window, "per_condition": per, "worst": worst, "flat_fraction": float(pdf["flat"].mean())}


# --------------------------------------------------------------------------- environment and files


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Write through a temporary file beside `path`, then rename into place."""
    path = Path(path)
    tmp = _tmp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    return _atomic(path, lambda p: df.to_csv(p, index=False))


def write_figure(fig: go.Figure, path: Path) -> Path:
    """A self-contained HTML file (plotly.js inlined: opens offline), and the
    figure as plotly JSON beside it (`<stem>.plotly.json`, for re-rendering,
    e.g. to PNG with `python -m analyses.pictures`)."""
    path = Path(path)
    _atomic(path.with_suffix(".plotly.json"), lambda p: p.write_text(fig.to_json()))
    return _atomic(path, lambda p: fig.write_html(str(p), include_plotlyjs=True, full_html=True))


# --------------------------------------------------------------------------- figure helpers

class _Colors(Mapping[str, str]):
    """Condition -> colour: dense black, the restart control purple, each split the
    colour it was registered with (`fci.fpe.register_split`); a live view."""

    FIXED = {"dense": "#222222", "restart": "#9467bd"}

    def __getitem__(self, key: str) -> str:
        if key in self.FIXED:
            return self.FIXED[key]
        if key in SPLITS:
            return split_info(key).color
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter([*self.FIXED, *SPLITS])

    def __len__(self) -> int:
        return len(self.FIXED) + len(SPLITS)


COLORS: Mapping[str, str] = _Colors()
DASHES = {1: "solid", 2: "dot", 4: "solid", 8: "dash", 16: "dashdot"}
SYMBOLS = {1: "circle", 2: "circle-open", 4: "circle", 8: "diamond", 16: "square"}


def style(condition: str, alpha: int) -> dict[str, Any]:
    """Line and marker style of a condition: colour by split, dash by alpha
    (as in the paper: dotted alpha=2, solid alpha=4)."""
    return {"line": {"color": COLORS.get(condition, "#7f7f7f"), "dash": DASHES.get(int(alpha), "longdash")},
            "marker": {"color": COLORS.get(condition, "#7f7f7f"), "symbol": SYMBOLS.get(int(alpha), "x"), "size": 8}}


def label(condition: str, alpha: int) -> str:
    if condition in ("dense", "restart"):
        return condition if condition == "dense" else "restart (α=1)"
    return f"{condition} α={int(alpha)}"


def significance_text(p: Iterable[float], alpha_level: float = 0.05) -> list[str]:
    """'*' where p < alpha_level (SPEC §4: figures mark p < 0.05), '' elsewhere."""
    return ["*" if (p is not None and np.isfinite(p) and p < alpha_level) else "" for p in p]


def add_metric_traces(fig: go.Figure, stats: pd.DataFrame, x: str, y: str, *, row: int | None = None,
                      col: int | None = None, p: str | None = None, conditions: Sequence[tuple[str, int]] | None = None,
                      showlegend: bool = True, customdata: Sequence[str] | None = None) -> None:
    """One line per (condition, alpha) of `stats`: `<y>_mean` against `x` with
    `<y>_sem` error bars and '*' above points whose `p` column is < 0.05."""
    if stats.empty:
        return
    keys = conditions or sorted({(c, int(a)) for c, a in zip(stats.condition, stats.alpha)}, key=lambda t: (t[0] != "dense", t[1], t[0]))
    for cond, alpha in keys:
        g = stats[(stats.condition == cond) & (stats.alpha == alpha)].sort_values(x)
        if g.empty:
            continue
        text = significance_text(g[p]) if p and p in g else None
        fig.add_trace(
            go.Scatter(
                x=g[x], y=g[f"{y}_mean"],
                error_y={"type": "data", "array": g[f"{y}_sem"].fillna(0), "visible": True},
                mode="lines+markers+text" if text else "lines+markers",
                text=text, textposition="top center", textfont={"size": 16, "color": COLORS.get(cond, "#7f7f7f")},
                name=label(cond, alpha), legendgroup=label(cond, alpha), showlegend=showlegend,
                hovertemplate=f"{label(cond, alpha)}<br>{x}=%{{x}}<br>{y}=%{{y:.4g}}<extra></extra>",
                **style(cond, alpha),
            ),
            row=row, col=col,
        )


def add_caption(fig: go.Figure, caption: str, height_px: int = 70) -> go.Figure:
    """Put the run's configuration under the figure (paper coordinates)."""
    b = fig.layout.margin.b or 0
    fig.update_layout(margin={"b": max(b, height_px + 70)})
    fig.add_annotation(text=caption, xref="paper", yref="paper", x=0, y=0, yshift=-(height_px + 20), xanchor="left",
                       yanchor="top", showarrow=False, align="left", font={"size": 11, "color": "#555"})
    return fig


def loss_figure(curves: pd.DataFrame, title: str, caption: str, max_panels: int = 16) -> go.Figure:
    """Mean train loss per epoch (log scale), one panel per configuration, one line
    per condition: the evidence that the schedule converges. Children start where
    the dense warm-up ends; the dense line goes on as the paired baseline."""
    from plotly.subplots import make_subplots

    configs = sorted({tuple(r) for r in curves[CONFIG_KEYS].itertuples(index=False)})[:max_panels]
    cols = min(4, max(1, len(configs)))
    rows = max(1, math.ceil(len(configs) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"C={c} k={k} H={h}" for c, k, h in configs],
                        shared_xaxes=True, vertical_spacing=0.12 / max(1, rows - 1) if rows > 1 else 0.1)
    for i, (c, k, h) in enumerate(configs):
        g = curves[(curves.n_clauses == c) & (curves.clause_size == k) & (curves.hidden == h)]
        for (cond, alpha), gg in sorted(g.groupby(["condition", "alpha"]), key=lambda t: (t[0][0] != "dense", t[0][1], t[0][0])):
            gg = gg.sort_values("epoch")
            fig.add_trace(go.Scatter(x=gg.epoch, y=gg.loss_mean, mode="lines", name=label(cond, alpha),
                                     legendgroup=label(cond, alpha), showlegend=i == 0, line=style(cond, alpha)["line"]),
                          row=i // cols + 1, col=i % cols + 1)
    fig.update_yaxes(type="log")
    fig.update_xaxes(title_text="epoch", row=rows)
    fig.update_yaxes(title_text="train loss (BCE)", col=1)
    fig.update_layout(title=title, height=300 * rows + 150, width=1200, template="plotly_white")
    return add_caption(fig, caption)


# --------------------------------------------------------------------------- the command


@dataclass
class Context:
    """What a study's hooks get besides the results table."""

    args: argparse.Namespace
    level: Level
    points: list[Point]
    caption: str
    results: list[tuple[FPEResult, int]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # for hooks that share work (not written)
    run: RunInfo | None = None  # the run's device, store and folders
    items: list[tuple[FPESpec, int]] = field(default_factory=list)  # (trial spec, trial index) of the whole sweep


@dataclass(frozen=True)
class Study:
    """A study as data plus hooks.

    Attributes:
        name: module name; the default output folder is data/results/<name>/.
        description: for --help and summary.json; give the study module's
            `__doc__` and its first two paragraphs are kept (title and what it shows).
        points: level name -> the sweep's configurations.
        figures: (results, stats, ctx) -> {file stem: figure}; pure functions of
            the tables except where a study shows weights (the gallery).
        extra_columns: optional (result, trial, condition, alpha, model result, ctx)
            -> extra columns of that model's results.csv row.
        summarise: optional (results, stats, ctx) -> extra summary.json fields.
        add_arguments: optional, adds study-specific options to the parser.
        validate: optional (parser, args) -> None; calls parser.error on a bad
            study-specific option (before any work).
        extra_metrics: extra results.csv columns to summarise per condition.
    """

    name: str
    description: str
    points: Callable[[str], list[Point]]
    figures: Callable[[pd.DataFrame, pd.DataFrame, Context], dict[str, go.Figure]]
    extra_columns: Callable[[FPEResult, int, str, int, ModelResult, Context], dict[str, Any]] | None = None
    summarise: Callable[[pd.DataFrame, pd.DataFrame, Context], dict[str, Any]] | None = None
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    validate: Callable[[argparse.ArgumentParser, argparse.Namespace], None] | None = None
    extra_metrics: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "description", "\n\n".join(self.description.strip().split("\n\n")[:2]))

    # -- how the runner (`analyses._runner.run`) runs a study of Boolean FPE trials

    def parser(self) -> argparse.ArgumentParser:
        return build_parser(self)

    def prepare(self, ap: argparse.ArgumentParser, info: RunInfo) -> Context:
        args = info.args
        if args.trials is None:
            args.trials = LEVELS[info.level].trials
        level = apply_regime(ap, args, LEVELS[info.level], self.points(info.level))
        if self.validate:
            self.validate(ap, args)
        points = self.points(level.name)
        items = make_specs(points, level, args.trials, args.seed, splits=args.splits)
        config = {
            "study": self.name, "description": self.description, "level": level.name,
            "trials": args.trials, "seed": args.seed, "seeds": [args.seed + t for t in range(args.trials)],
            "shard": args.shard, "device": str(info.device), "data": str(args.data), "out": str(info.out),
            "points": [p.to_dict() for p in points],
            "task": {**TaskConfig().to_dict(), **level.task, "n_train": level.n_train, "n_test": level.n_test,
                     "n_clauses": "per point", "clause_size": "per point",
                     **({} if "n_vars" in level.task else {"n_vars": "C*k"})},
            "train": level.train.to_dict(),
            "regime": level_regime(level),
            "splits": args.splits or "the study's",
            "channel_threshold": 0.1,
            "study_options": study_options(args),
        }
        return Context(args=args, level=level, points=points, caption=caption_for(self, level, args, info.device),
                       config=config, run=info, items=items)

    def plan(self, ctx: Context) -> Plan:
        assert ctx.run is not None
        info = ctx.run

        def produce(items: list[tuple[FPESpec, int]]) -> None:
            run_fpe([s for s, _ in items], device=info.device, progress=True, store=info.store)

        return Plan(units=ctx.items, keys=lambda item: trial_keys([item[0]])[0], produce=produce, shard_key=_shard_key,
                    unit="trials", describe=f"{len(ctx.points)} configurations x {ctx.args.trials} trials")

    def table(self, units: list[tuple[FPESpec, int]], ctx: Context) -> pd.DataFrame:
        """One row per model (every model is stored by now: run_fpe loads them)."""
        assert ctx.run is not None
        results = run_fpe([s for s, _ in units], device=ctx.run.device, store=ctx.run.store)
        ctx.results = list(zip(results, [t for _, t in units]))
        rows = []
        for res, trial in tqdm(ctx.results, desc="measure", unit="trial", leave=False):
            x_test = res.boolean_task.test_data()[0]  # one draw per trial, shared by its conditions
            for cond, alpha, mr in _conditions(res):
                row = model_row(res, trial, cond, alpha, mr, x_test=x_test)
                if self.extra_columns:
                    row.update(self.extra_columns(res, trial, cond, alpha, mr, ctx))
                rows.append(row)
        df = pd.DataFrame(rows)
        if not df.empty:
            order = df.condition.map(condition_order)
            df = df.assign(_order=order).sort_values(CONFIG_KEYS + ["_order", "alpha", "trial"]).drop(columns="_order")
            df = df.reset_index(drop=True)
        return df

    def run_record(self, units: list[tuple[FPESpec, int]], ctx: Context) -> dict[str, Any]:
        provs = [r.provenance for res, _ in ctx.results for _, _, r in _conditions(res)]
        provs += [res.parent.provenance for res, _ in ctx.results]
        backends = backends_of(provs)
        # Kernel builds (8- and 16-lane) differ by block only; a mix means two backends (kernel, torch, reference).
        return {"models": sum(1 + len(s.expansions) for s, _ in units), "backends": backends,
                "mixed_backends": len({b.split(" ")[0] for b in backends}) > 1}

    def finish(self, df: pd.DataFrame, ctx: Context) -> Outputs:
        stats = condition_stats(df, BASE_METRICS + tuple(self.extra_metrics))
        curves = loss_curves(ctx.results)
        summary: dict[str, Any] = {"conditions": stats.to_dict("records"), "pooled": pooled_stats(df).to_dict("records")}
        head = stats[(stats.n_clauses == HEADLINE.n_clauses) & (stats.hidden == HEADLINE.hidden)
                     & (stats.clause_size == HEADLINE.clause_size)]
        summary["headline"] = head[["condition", "alpha", "n", "test_accuracy_mean", "test_accuracy_sem", "rel_improvement_mean",
                                    "rel_improvement_sem", "rel_improvement_p", "nnz_mean"]].to_dict("records") \
            if not head.empty else []
        summary["convergence"] = convergence(curves)
        if self.summarise:
            summary.update(self.summarise(df, stats, ctx))
        figs = dict(self.figures(df, stats, ctx))
        figs["loss_curves"] = loss_figure(curves, f"{self.name}: train loss (mean over trials)", ctx.caption)
        return Outputs(stats=stats, summary=summary, figures=figs, tables={"loss_curves": curves}, lines=_pooled_lines)


def contract_parser(name: str, description: str, epilog: str, quick_help: str, units: str) -> argparse.ArgumentParser:
    """The options every study takes (`units`: what --shard slices, e.g. "trials")."""
    ap = OneLineParser(prog=f"python -m analyses.{name}", description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # seconds-long runs for the tests
    ap.add_argument("--out", default=None, help=f"output folder (default: <data>/results/{name}/)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] (default: auto)")
    ap.add_argument("--trials", type=int, default=None,
                    help=f"trials per configuration (default: {LEVELS['full'].trials}; --quick: {LEVELS['quick'].trials}); "
                         "trial t uses seed S+t")
    ap.add_argument("--seed", type=int, default=0, help="base seed S (default: 0)")
    ap.add_argument("--shard", default=None, metavar="I/N",
                    help=f"run only the I-th of N disjoint deterministic slices of the {units} and write partial results; "
                         "a final run without --shard collects everything from the store and writes the figures")
    ap.add_argument("--data", default="data", help="results store root (default: data)")
    return ap


def build_parser(study: Study) -> argparse.ArgumentParser:
    ap = contract_parser(
        study.name, study.description,
        epilog=("Outputs: results.csv (one row per model), stats.csv, loss_curves.csv, summary.json and "
                "self-contained .html figures. Models come from the results store under --data, so a rerun "
                "trains nothing and an interrupted run resumes."),
        quick_help=(f"a small sweep that finishes in under 2 minutes ({LEVELS['quick'].n_train} train samples, "
                    f"{LEVELS['quick'].train.warmup}+{LEVELS['quick'].train.finetune} epochs)"),
        units="trials",
    )
    add_regime_arguments(ap, default_note="the run level's")
    ap.add_argument("--splits", default=None,
                    help=f"FPE splits at each of the study's alphas, comma-separated from the registered splits "
                         f"({','.join(SPLITS)}) (default: the study's; the alpha = 1 restart control always runs)")
    if study.add_arguments:
        study.add_arguments(ap)
    return ap


#: The options every study takes; the rest are the study's own (recorded in summary.json).
CONTRACT_OPTIONS = frozenset({"quick", "tiny", "out", "device", "trials", "seed", "shard", "data", "splits",
                              *(f[2:].replace("-", "_") for f in (*TASK_OPTIONS, *TRAIN_OPTIONS))})


def study_options(args: argparse.Namespace) -> dict[str, Any]:
    """The study's own options (everything but the common contract's)."""
    return {k: v for k, v in vars(args).items() if k not in CONTRACT_OPTIONS}


def write_shard(df: pd.DataFrame, summary: dict[str, Any], out: Path, shard: tuple[int, int], t_start: float) -> Path:
    """Write a shard's partial outputs (`results.shard-I-of-N.csv`, and
    `summary.shard-I-of-N.json` marked partial); returns the CSV's path."""
    suffix = f".shard-{shard[0]}-of-{shard[1]}"
    summary["partial"] = True
    csv = write_csv(df, out / f"results{suffix}.csv")
    summary["run"]["total_seconds"] = round(time.perf_counter() - t_start, 2)
    write_json(summary, out / f"summary{suffix}.json")
    return csv


def check_contract(ap: argparse.ArgumentParser, args: argparse.Namespace, name: str) -> RunInfo:
    """Check the options every study takes (level, device, trials, shard, folders);
    a bad one exits with a message naming it. The folders are checked for
    writing by the runner after the study's own checks, before any work; a
    study fills in its own default --trials (`args.trials` None)."""
    level = "tiny" if args.tiny else "quick" if args.quick else "full"
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        ap.error(f"--device: {e}")
    if args.trials is not None and args.trials < 1:
        ap.error(f"--trials must be >= 1, got {args.trials}")
    try:
        shard = parse_shard(args.shard)
    except ValueError as e:
        ap.error(str(e))
    out = Path(args.out) if args.out is not None else Path(args.data) / "results" / name
    return RunInfo(args=args, level=level, device=device, out=out, store=Store(args.data), shard=shard)


def check_folders(ap: argparse.ArgumentParser, info: RunInfo) -> None:
    """--out and --data must be writable (checked before any work)."""
    for flag, folder in (("--out", info.out), ("--data", Path(info.args.data))):
        check_writable(ap, flag, folder)


def apply_regime(ap: argparse.ArgumentParser, args: argparse.Namespace, level: Level, points: Sequence[Point]) -> Level:
    """The level with the task and training options applied, every point's task
    checked (a bad value exits naming its flag, before any work); `args.splits`
    becomes a list of registered names (or None: the study's own)."""
    task_set, train_set = regime_overrides(args)
    n_train = task_set.pop("n_train", level.n_train)
    lv = dataclasses.replace(level, n_train=n_train, train=build_train(ap, level.train, train_set), task={**level.task, **task_set})
    for p in points:
        try:
            point_task(p, lv)
        except ValueError as e:
            flag_error(ap, e)
    args.splits = parse_splits(ap, args.splits) if args.splits is not None else None
    return lv


def level_regime(level: Level) -> dict[str, Any]:
    """The regime options' values at a level (summary.json's `config.regime`)."""
    task = {**TaskConfig().to_dict(), "n_vars": None, **level.task, "n_train": level.n_train}
    return regime_record(task, level.train)


def caption_for(study: Study, level: Level, args: argparse.Namespace, device: torch.device) -> str:
    t = level.train
    task = {**TaskConfig().to_dict(), "n_vars": None, **level.task, "n_train": level.n_train}
    return (f"{study.name} · level={level.name} · trials={args.trials} (seeds {args.seed}..{args.seed + args.trials - 1}) · "
            f"k-literal DNF, {level.n_test} test samples<br>{regime_text(task, t)} "
            f"(dense baseline {t.epochs}) · device={device.type} · α=1 restart control · "
            f"error bars: ±1 s.e.m.; * p<0.05 (paired t-test vs dense)")


def run_study(study: Study, argv: Sequence[str] | None = None) -> int:
    """Parse, validate, train (or load), measure and write (`analyses._runner.run`); returns 0."""
    return run(study, argv)


def _pooled_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    if summary["run"].get("mixed_backends"):
        lines.append(f"warning: the models of this study were trained by different backends "
                     f"({', '.join(summary['run']['backends'])}); they agree to float rounding, not bit for bit")
    lines.append(f"{'condition':<14}{'n pairs':>8}{'accuracy':>18}{'rel. improvement':>22}{'p':>10}   (pooled over configurations)")
    for r in summary["pooled"]:
        n = r["n_pairs"]
        acc = mean_sem_text(r["test_accuracy_mean"], r["test_accuracy_sem"], n)
        rel = mean_sem_text(r["rel_improvement_mean"], r["rel_improvement_sem"], n, digits=2, scale=100, unit="%", sign=True)
        p = f"{r['p']:.2g}" if np.isfinite(r["p"]) else "n/a"  # a paired t-test needs 2 pairs
        lines.append(f"{label(r['condition'], r['alpha']):<14}{n:>8}{acc:>18}{rel:>22}{p:>10}")
    return lines
