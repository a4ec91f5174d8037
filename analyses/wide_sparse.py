"""Wide and sparse: at a fixed non-zero budget, does width help, and where is the best connectivity?

Golubeva, Gur-Ari & Neyshabur (ICLR 2021) widen a network at a fixed number of
weights by static random sparsity applied at initialisation and find that width,
not the weight count, drives the gain. Here the budget is the nnz of a dense
one-hidden-layer MLP of a base width H0 on the Boolean DNF task (8 clauses,
k=3); at widths H = alpha * H0 three models are trained for every trial:
**sparse** (`fci.sparsity.sparse_mlp`: random masks at initialisation, uniform
within each layer, the budget split across layers by layer size, nnz exactly the
budget), **FPE** (the base-width dense parent split at random into alpha
children after warm-up, `fci.train.run_fpe`; nnz equal to the budget) and
**dense** (same width, more parameters). It reports accuracy against width and
against connectivity (fraction of possible weights present) for several budgets,
and checks the paper's theory prediction that the best connectivity p* follows
width x p* = const (fit of log p* against log width, slope -1 predicted).

    python -m analyses.wide_sparse [--quick] [--out DIR] [--device auto|cpu|cuda]
                                   [--trials N] [--seed S] [--shard I/N] [--data DIR]
                                   [--dataset boolean|digits] [--clauses C]
                                   [--base-widths 2,4,8] [--alphas 2,3,4,6,8,12,16] [--rescale-init]
                                   [task options] [training options]

The task options (--vars --layout --outputs --p --negation-prob --train-samples)
and training options (--optimizer --lr --momentum --weight-decay --batch-size
--warmup --finetune) of `python -m fci` set the Boolean task's regime (with
--dataset digits they are refused: digits keeps the run level's schedule).

Every model trains the same number of epochs (the FPE schedule's warm-up plus
fine-tuning; sparse and dense models train that many from scratch). A trial's
three conditions share its task, data and initialisation seed: the sparse model
keeps a random subset of exactly the dense model's initial weights, and the
dense model at width H0 is also the FPE parent's paired baseline. Sparse models
keep all their biases (biases are not connections), so the weight budget is the
budget minus the biases, and connectivity falls a little faster than 1/width.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from analyses import register
from analyses.entries import (
    ListedRun,
    ModelRef,
    Scanned,
    dataset_of,
    epochs,
    hidden_text,
    image_shape,
    job_rows,
    register_reader,
    task_label,
)
from analyses.kinds import JobContext, JobStudy, chunked, regime_caption
from analyses.levels import Level, level_task, regime_level
from analyses.rows import model_columns, test_set_columns
from analyses.runner import study_main
from analyses.style import add_caption, significance_text
from analyses.tables import claim, largest_at, p_text, resolution_of, sig, verdict_lines
from fci import stats
from fci.cli import comma_list, flag_error
from fci.data import Dataset, DatasetSpec
from fci.metrics import relative_improvement, trial_stats
from fci.models.mlp import MaskedMLP
from fci.seeding import derive_seed
from fci.sparsity.static import connectivity, dense_nnz, possible_weights, sparse_mlp, weight_budget
from fci.store import config_key
from fci.tasks import TaskConfig
from fci.train import SCHEDULE_VERSION, FPESpec, ModelResult, TrainConfig, entry_configs, run_fpe, train_models

__all__ = [
    "STUDY",
    "main",
    "SWEEPS",
    "dataset_spec",
    "make_dataset",
    "make_jobs",
    "sweep_widths",
    "model_row",
    "clause_coverage",
    "family",
    "study_stats",
    "optima",
    "np_check",
    "coverage_link",
    "paper_comparison",
    "wide_sparse_figure",
]

SWEEPS: dict[str, dict[str, tuple]] = {
    "full": {"base_widths": (2, 4, 8), "alphas": (1.5, 2, 3, 4, 6, 8, 16)},
    "quick": {"base_widths": (2, 4, 8), "alphas": (1.5, 2, 4, 8, 16)},
    "tiny": {"base_widths": (2, 4), "alphas": (2, 4)},
}
"""Base widths H0 (each fixes one budget, the nnz of a dense n-H0-O MLP) and the
widening factors alpha (widths H0 * alpha) per run level. FPE needs an integer
alpha; a fractional one (1.5: between dense and the first split) is trained
sparse and dense only, to resolve the optimum near full connectivity."""

SPLIT = "random"  # the FPE split: clause-blind, the one that also exists on real data
MAX_STACK = 384  # models per training stack (dense and sparse)
COLORS = {"sparse": "#d62728", "fpe": "#ff7f0e", "dense": "#222222"}
BUDGET_COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
NAMES = {"sparse": "static random sparse (nnz = budget)", "fpe": f"FPE, {SPLIT} split (nnz = budget)",
         "dense": "dense (more parameters: nnz grows with width)"}


# --------------------------------------------------------------------------- data and jobs


def boolean_task(args: argparse.Namespace, level: Level) -> TaskConfig | None:
    """The Boolean task family at a level (the regime's task options applied); None with --dataset digits."""
    return level_task(level, n_clauses=args.clauses) if args.dataset == "boolean" else None


def dataset_spec(args: argparse.Namespace, level: Level) -> dict[str, Any]:
    """The data every job of a run trains on (JSON; part of each job's store key);
    `level`: the run level with the regime options applied (`JobContext.level`)."""
    task = boolean_task(args, level)
    if task is not None:
        return {"name": "boolean", "task": task.to_dict()}
    return {"name": "digits", "split_seed": int(args.seed), "test_fraction": 0.25}


def data_spec(spec: dict[str, Any]) -> DatasetSpec:
    """The run's data as a `DatasetSpec`: the Boolean task family, drawn per trial
    (trial seed s trains on `FPESpec(seed=s).make_task()`, its own clauses and
    samples), or digits with one stratified split for every trial."""
    if spec["name"] == "boolean":
        return DatasetSpec.boolean(TaskConfig.from_dict(spec["task"]))
    if spec["name"] == "digits":
        return DatasetSpec.digits(seed=int(spec["split_seed"]), test_fraction=float(spec["test_fraction"]))
    raise ValueError(f"dataset must be 'boolean' or 'digits', got {spec['name']!r}")


def make_dataset(spec: dict[str, Any], seed: int) -> Dataset:
    """The Dataset of trial `seed` (the same for every trial on digits)."""
    return data_spec(spec).build(trial_seed=seed)


def _shape(spec: dict[str, Any]) -> tuple[int, int]:
    """(n_in, n_out) of a dataset spec, without building the data."""
    if spec["name"] == "boolean":
        cfg = TaskConfig.from_dict(spec["task"])
        return cfg.resolved_n_vars, cfg.n_outputs
    return 64, 10


def _alpha(a: float) -> int | float:
    return int(a) if float(a).is_integer() else float(a)


def sweep_widths(base_width: int, alphas: Sequence[float]) -> dict[int | float, int]:
    """alpha -> width H0 * alpha; raises ValueError unless every width is an
    integer above H0."""
    out = {}
    for a in alphas:
        w = base_width * a
        if not float(w).is_integer() or w <= base_width:
            raise ValueError(f"width H0*alpha = {base_width}*{a} = {w:g} must be an integer above H0={base_width}")
        out[_alpha(a)] = int(w)
    return out


def make_jobs(spec: dict[str, Any], base_widths: Sequence[int], alphas: Sequence[float], seeds: Sequence[int],
              train: TrainConfig, rescale_init: bool = False) -> list[dict[str, Any]]:
    """Every model of the sweep as a job (one store entry each).

    dense: one per (width, seed) over all widths H0 * alpha (alpha 1 included),
    shared by every budget that reaches that width; sparse: one per (H0, alpha
    > 1, seed), with budget = dense_nnz(n_in, H0, n_out); fpe: the same for the
    integer alphas. The sparse family's alpha = 1 member is the dense base model
    itself (connectivity 1)."""
    n_in, n_out = _shape(spec)
    common = {"dataset": spec, "train": train.to_dict()}
    sweeps = {h0: sweep_widths(h0, alphas) for h0 in base_widths}
    widths = sorted({h0 for h0 in base_widths} | {w for sw in sweeps.values() for w in sw.values()})
    jobs = [{"condition": "dense", "width": h, "seed": s, **common} for h in widths for s in seeds]
    for h0, sw in sweeps.items():
        budget = dense_nnz(n_in, h0, n_out)
        for a, w in sw.items():
            for s in seeds:
                jobs.append({"condition": "sparse", "base_width": h0, "alpha": a, "width": w, "budget": budget,
                             "rescale_init": bool(rescale_init), "seed": s, **common})
                if isinstance(a, int):
                    jobs.append({"condition": "fpe", "split": SPLIT, "base_width": h0, "alpha": a, "width": w,
                                 "budget": budget, "seed": s, "schedule": SCHEDULE_VERSION, **common})
    return jobs


def clause_coverage(W1: torch.Tensor, clauses: Sequence[Sequence[tuple[int, bool]]]) -> tuple[float, float]:
    """How many hidden units can see a whole clause.

    W1: (H, n_in) effective first-layer weights; a unit *covers* a clause when
    it has a non-zero weight from every variable of the clause (only such a unit
    can compute the clause's AND on its own). Returns (fraction of clauses
    covered by at least one unit, mean number of covering units per clause)."""
    present = W1 != 0
    counts = [int(present[:, [v for v, _ in c]].all(1).sum()) for c in clauses]
    if not counts:
        return math.nan, math.nan
    return float(np.mean([c > 0 for c in counts])), float(np.mean(counts))


def model_row(model: MaskedMLP, res: ModelResult, clauses: Sequence | None = None, x_test: torch.Tensor | None = None,
              y_test: torch.Tensor | None = None, loss: str = "bce", **extra: Any) -> dict[str, Any]:
    """One results.csv row: the columns every trained model has
    (`analyses.rows.model_columns`: accuracy, loss, convergence, nnz split,
    dead_units on `x_test`, backend), with `y_test` (labels for `loss`) the test
    set's base_rate and accuracy_resolution, connectivity (overall and
    connectivity_l<l> per layer), the hidden units left without any input weight
    and, for Boolean tasks, clause coverage (`clause_coverage`)."""
    eff = model.effective_weights()
    fan_in = (eff[0][0] != 0).sum(1)  # W1: (H, n_in)
    covered, per_clause = clause_coverage(eff[0][0], clauses) if clauses else (math.nan, math.nan)
    return {
        **model_columns(res, x_test), **(test_set_columns(y_test, loss) if y_test is not None else {}),
        "possible_weights": possible_weights(model.n_in, model.hidden, model.n_out),
        "connectivity": connectivity(model),
        **{f"connectivity_l{l}": float((w != 0).float().mean()) for l, (w, _) in enumerate(eff)},
        "mean_fan_in": float(fan_in.float().mean()), "no_input_units": int((fan_in == 0).sum()),
        "clauses_covered": covered, "units_per_clause": per_clause, **extra,
    }


def _bucket(width: int) -> int:
    """Models whose widths share a power-of-two ceiling train in one stack (padding < 2x)."""
    return 1 << max(0, math.ceil(math.log2(width)))


def _data(ctx: JobContext, spec: dict[str, Any], seed: int) -> Dataset:
    cache = ctx.cache.setdefault("data", {})
    key = (repr(spec), seed)
    if key not in cache:
        cache[key] = make_dataset(spec, seed)
    return cache[key]


def _init_model(job: dict[str, Any], n_in: int, n_out: int) -> MaskedMLP:
    init = derive_seed(job["seed"], "init")  # the FPE parent's initialisation (run_fpe)
    if job["condition"] == "dense":
        return MaskedMLP(n_in, job["width"], n_out, seed=init)
    return sparse_mlp(n_in, job["width"], n_out, job["budget"], seed=init,
                      mask_seed=derive_seed(job["seed"], "mask", job["width"]), rescale=job["rescale_init"])


def run_jobs(todo: list[dict[str, Any]], ctx: JobContext) -> Iterable[tuple[dict[str, Any], list[dict[str, Any]], dict]]:
    """Dense and sparse jobs in stacks of similar width (all trials and budgets
    together); FPE jobs through run_fpe on the run's DatasetSpec,
    grouped by child width."""
    models = sorted((j for j in todo if j["condition"] in ("dense", "sparse")), key=lambda j: (j["width"], j["seed"]))
    groups: dict[tuple, list] = {}
    for j in models:
        groups.setdefault((repr(j["dataset"]), repr(j["train"]), _bucket(j["width"])), []).append(j)
    for batch in (b for g in groups.values() for b in chunked(g, MAX_STACK)):
        spec, cfg = batch[0]["dataset"], TrainConfig.from_dict(batch[0]["train"])
        n_in, n_out = _shape(spec)
        ds = [_data(ctx, spec, j["seed"]) for j in batch]
        inits = [_init_model(j, n_in, n_out) for j in batch]
        results = train_models(inits, [(d.x_train, d.y_train, d.x_test, d.y_test) for d in ds], cfg, cfg.epochs,
                               loss=ds[0].loss, device=ctx.device)
        for j, d, r in zip(batch, ds, results):
            yield j, [model_row(r.model, r, d.info.get("clauses"), d.x_test, d.y_test, d.loss, dataset=d.name)], r.model.tensors()
    yield from _run_fpe([j for j in todo if j["condition"] == "fpe"], ctx)


def _run_fpe(todo: list[dict[str, Any]], ctx: JobContext) -> Iterable[tuple[dict[str, Any], list[dict[str, Any]], dict]]:
    groups: dict[tuple, list] = {}
    for j in todo:
        groups.setdefault((repr(j["dataset"]), repr(j["train"]), _bucket(j["width"])), []).append(j)
    for batch in groups.values():
        spec, cfg = batch[0]["dataset"], TrainConfig.from_dict(batch[0]["train"])
        by_trial: dict[tuple[int, int], list] = {}
        for j in batch:
            by_trial.setdefault((j["seed"], j["base_width"]), []).append(j)
        data = data_spec(spec)
        specs = [FPESpec(data=data, hidden=h0, seed=s, expansions=tuple((SPLIT, j["alpha"]) for j in js), train=cfg)
                 for (s, h0), js in by_trial.items()]
        results = run_fpe(specs, device=ctx.device, store=ctx.store, executor=ctx.executor)  # stored per model: shared with every study
        for ((s, h0), js), res in zip(by_trial.items(), results):
            clauses = res.task.clauses if res.task is not None else None
            keys = entry_configs(res.spec)
            d = _data(ctx, spec, s)
            for j in js:
                child = res.children[(SPLIT, j["alpha"])]
                row = model_row(child.model, child, clauses, d.x_test, d.y_test, d.loss, dataset=d.name,
                                parent_test_accuracy=res.parent.test_accuracy, dense_test_accuracy=res.dense.test_accuracy)
                row["store_key"] = config_key(keys[(SPLIT, j["alpha"])])  # the model's own entry
                yield j, [row], child.model.tensors()


# --------------------------------------------------------------------------- statistics


def family(df: pd.DataFrame, base_width: int, condition: str) -> pd.DataFrame:
    """The models of one budget and condition, one row per (width, seed), with
    the dense base model (width H0, connectivity 1) as the alpha = 1 member.
    For condition 'dense' the dense models at the budget's widths (more nnz)."""
    widths = sorted(set(df.loc[(df.base_width == base_width), "width"].dropna().astype(int)) | {int(base_width)})
    dense = df[(df.condition == "dense") & df.width.isin(widths)]
    base = dense[dense.width == base_width]
    if condition == "dense":
        g = dense
    else:
        g = pd.concat([base, df[(df.condition == condition) & (df.base_width == base_width)]])
    g = g.assign(base_width=int(base_width), alpha=g.width / base_width, budget=int(base.nnz.iloc[0]) if len(base) else np.nan)
    return g.sort_values(["width", "seed"]).reset_index(drop=True)


def _pair(g: pd.DataFrame, ref: pd.DataFrame, col: str = "test_accuracy") -> tuple[np.ndarray, np.ndarray]:
    m = g[["seed", col]].merge(ref[["seed", col]], on="seed", suffixes=("", "_ref"))
    return m[col].to_numpy(float), m[f"{col}_ref"].to_numpy(float)


def study_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per budget (base width), condition and width, over trials: accuracy
    (test, train) mean and s.e.m., nnz (mean, min, max, ratio to the budget),
    connectivity, and paired comparisons by seed (`fci.stats.paired_test`, guarded
    by the accuracy's resolution): gain over the dense base model (mean, s.e.m., p,
    relative improvement), and difference from the dense model of the same width
    (mean, p); each p with its Benjamini–Hochberg q over the widths of its budget
    and condition (`q_vs_base`, `q_vs_dense`)."""
    out = []
    for h0 in sorted(df.base_width.dropna().astype(int).unique()):
        dense = family(df, h0, "dense")
        base = dense[dense.width == h0]
        for cond in ("sparse", "fpe", "dense"):
            fam = family(df, h0, cond)
            for w, g in fam.groupby("width", sort=True):
                acc, tr = trial_stats(g.test_accuracy.to_numpy(float)), trial_stats(g.train_accuracy.to_numpy(float))
                a, b = _pair(g, base)
                d_same = dense[dense.width == w]
                a2, b2 = _pair(g, d_same)
                gain = trial_stats(a - b)
                budget = fam.budget.iloc[0]
                out.append({
                    "base_width": int(h0), "budget": budget, "condition": cond, "width": int(w), "alpha": int(w) / int(h0),
                    "n": acc["n"], "test_accuracy_mean": acc["mean"], "test_accuracy_sem": acc["sem"],
                    "train_accuracy_mean": tr["mean"], "train_accuracy_sem": tr["sem"],
                    "test_loss_mean": float(g.test_loss.mean()),
                    "nnz_mean": float(g.nnz.mean()), "nnz_min": int(g.nnz.min()), "nnz_max": int(g.nnz.max()),
                    "nnz_over_budget": float(g.nnz.mean() / budget),
                    "connectivity_mean": float(g.connectivity.mean()), "no_input_units_mean": float(g.no_input_units.mean()),
                    "clauses_covered_mean": float(g.clauses_covered.mean()) if "clauses_covered" in g else math.nan,
                    "gain_vs_base_mean": gain["mean"], "gain_vs_base_sem": gain["sem"],
                    "p_vs_base": math.nan if w == h0 else _p(stats.paired_test(a, b, resolution=resolution_of(g))),
                    "rel_improvement_mean": float(np.mean(relative_improvement(a, b))) if len(a) else math.nan,
                    "diff_vs_dense_mean": float(np.mean(a2 - b2)) if len(a2) else math.nan,
                    "p_vs_dense": math.nan if cond == "dense" or w == h0 else _p(stats.paired_test(a2, b2, resolution=resolution_of(g))),
                })
    st = pd.DataFrame(out)
    if st.empty:
        return st
    for col in ("p_vs_base", "p_vs_dense"):  # one family per budget and condition: its widths
        st = stats.add_fdr(st, p=col, family=["base_width", "condition"], q=col.replace("p_", "q_"),
                           size=col.replace("p_", "family_size_"))
    return st


def _p(t: stats.Comparison) -> float:
    return math.nan if t.p is None else float(t.p)


def _argbest(g: pd.DataFrame, acc: str, loss: str) -> int:
    """Index of the highest accuracy; ties broken by the lower test loss, then the narrower width."""
    return g.sort_values([acc, loss, "width"], ascending=[False, True, True]).index[0]


def optima(df: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """The best member of each budget's sparse family (widths H0 .. H0*alpha_max).

    One row per budget: from the mean curve (`width_star`, `c_star`,
    `np_star` = width * connectivity, `interior`: the optimum is neither the
    narrowest nor the widest width tried, `c_refined`: vertex of a parabola
    through log2 connectivity and mean accuracy at the optimum and its two
    neighbours), and from each trial's own optimum (mean and s.e.m. of log2 c*
    and of width * c*; `trials_star` lists them)."""
    rows = []
    for h0 in sorted(stats.base_width.unique()):
        st = stats[(stats.base_width == h0) & (stats.condition == "sparse")].sort_values("width").reset_index(drop=True)
        if st.empty:
            continue
        i = _argbest(st, "test_accuracy_mean", "test_loss_mean")
        best = st.loc[i]
        interior = 0 < i < len(st) - 1
        c_ref = best.connectivity_mean
        if interior:
            x = np.log2(st.connectivity_mean.to_numpy(float)[i - 1 : i + 2])
            y = st.test_accuracy_mean.to_numpy(float)[i - 1 : i + 2]
            a2, a1, _ = np.polyfit(x, y, 2)
            if a2 < 0:
                c_ref = float(2 ** np.clip(-a1 / (2 * a2), x.min(), x.max()))
        fam = family(df, h0, "sparse")
        per_trial = [fam.loc[_argbest(g, "test_accuracy", "test_loss")] for _, g in fam.groupby("seed")]
        lc = trial_stats(np.log2([r.connectivity for r in per_trial]))
        npv = trial_stats(np.array([r.width * r.connectivity for r in per_trial]))
        rows.append({
            "base_width": int(h0), "budget": int(best.budget), "width_star": int(best.width), "c_star": float(best.connectivity_mean),
            "np_star": float(best.width * best.connectivity_mean), "test_accuracy_star": float(best.test_accuracy_mean),
            "test_accuracy_star_sem": float(best.test_accuracy_sem), "interior": bool(interior), "c_refined": float(c_ref),
            "base_test_accuracy": float(st.loc[st.width == h0, "test_accuracy_mean"].iloc[0]) if (st.width == h0).any() else math.nan,
            "log2_c_star_mean": lc["mean"], "log2_c_star_sem": lc["sem"], "np_star_trials_mean": npv["mean"],
            "np_star_trials_sem": npv["sem"],
            "trials_star": [{"seed": int(r.seed), "width": int(r.width), "connectivity": float(r.connectivity),
                             "test_accuracy": float(r.test_accuracy)} for r in per_trial],
            "widths": st.width.astype(int).tolist(), "connectivities": st.connectivity_mean.astype(float).tolist(),
        })
    return pd.DataFrame(rows)


def np_check(opt: pd.DataFrame, n_in: int, n_out: int) -> dict[str, Any]:
    """The paper's prediction p* * n = const, tested across budgets.

    fit_width: least-squares fit of log c* against log width* over every
    trial's optimum (slope -1 predicted; slope, its s.e., r, n). fit_budget:
    log c* against log H0 (the width of the dense model that sets the budget;
    -1 if p* falls as 1/H0, another reading of the same relation). np_star per
    budget and its coefficient of variation across budgets (0 if constant).
    identity: within one budget every member has width * connectivity =
    (budget - width - n_out) / (n_in + n_out), fixed by the budget up to the
    bias term, so width * c* can only be constant across budgets if the
    optimum's width grows to absorb the budget's growth in biases."""
    from scipy import stats as sps

    pts = [(math.log(t["width"]), math.log(t["connectivity"]), math.log(r.base_width))
           for r in opt.itertuples() for t in r.trials_star]
    out: dict[str, Any] = {"np_star": {int(r.base_width): float(r.np_star) for r in opt.itertuples()},
                           "np_star_trials": {int(r.base_width): [float(r.np_star_trials_mean), float(r.np_star_trials_sem)]
                                              for r in opt.itertuples()},
                           "identity_np": {int(r.base_width): float((r.budget - n_out) / (n_in + n_out)) for r in opt.itertuples()}}
    v = opt.np_star.to_numpy(float)
    out["np_star_cv"] = float(v.std(ddof=1) / v.mean()) if len(v) >= 2 else math.nan
    for name, xi in (("fit_width", 0), ("fit_budget", 2)):
        x = np.array([p[xi] for p in pts])
        y = np.array([p[1] for p in pts])
        if len(pts) >= 3 and np.ptp(x) > 0:
            fit = sps.linregress(x, y)
            out[name] = {"slope": float(fit.slope), "slope_se": float(fit.stderr), "intercept": float(fit.intercept),
                         "r": float(fit.rvalue), "n": len(pts)}
        else:
            out[name] = {"slope": math.nan, "slope_se": math.nan, "intercept": math.nan, "r": math.nan, "n": len(pts)}
    s = out["fit_width"]
    out["slope_minus_one_within_2se"] = bool(np.isfinite(s["slope"]) and abs(s["slope"] + 1) <= 2 * s["slope_se"])
    return out


# --------------------------------------------------------------------------- the comparison with the papers


def _fmt(m: float, s: float | None = None, pct: bool = False) -> str:
    """`m ± s`, or in percentage points (`+m ± s pp`) with pct."""
    if pct:
        return f"{100 * m:+.2f} ± {100 * s:.2f} pp" if s is not None and np.isfinite(s) else f"{100 * m:+.2f} pp"
    return f"{m:.3f} ± {s:.3f}" if s is not None and np.isfinite(s) else f"{m:.3f}"


def _gains(df: pd.DataFrame, h0: int, cond: str, alpha: float) -> pd.DataFrame:
    """Per seed, the accuracy gain of the `cond` model at width alpha * H0 over the
    dense base model (width H0) of the same trial: columns seed, gain."""
    fam = family(df, h0, cond)
    base = fam[fam.width == h0][["seed", "test_accuracy"]]
    g = fam[np.isclose(fam.alpha, alpha)][["seed", "test_accuracy"]]
    m = g.merge(base, on="seed", suffixes=("", "_base"))
    return pd.DataFrame({"seed": m.seed.to_numpy(), "gain": (m.test_accuracy - m.test_accuracy_base).to_numpy(float),
                         "base_width": h0, "alpha": alpha})


def _pooled_gain(frames: Sequence[pd.DataFrame], reference: float | Sequence[pd.DataFrame] = 0.0) -> stats.Comparison:
    """The gains of several cells pooled with trials (seeds) as the unit, against 0
    or against `reference` cells' gains (paired by seed and cell)."""
    if not frames:
        return stats.pooled_paired_test([], [], unit=[])
    a = pd.concat(frames, ignore_index=True)
    if isinstance(reference, (int, float)):
        return stats.pooled_paired_test(a.gain, np.full(len(a), float(reference)), unit=a.seed)
    b = pd.concat(list(reference), ignore_index=True)
    m = a.merge(b, on=["seed", "base_width", "alpha"], suffixes=("", "_ref"))
    return stats.pooled_paired_test(m.gain, m.gain_ref, unit=m.seed)


def _np_star(opt: pd.DataFrame, base_width: int) -> pd.Series:
    """Per seed, width * connectivity at that trial's own optimum in the budget of `base_width`."""
    r = opt[opt.base_width == base_width].iloc[0]
    return pd.Series({int(t["seed"]): float(t["width"] * t["connectivity"]) for t in r.trials_star}).sort_index()


NP_MARGIN = 1.25
"""How far apart (as a ratio) width·c* may lie in two budgets and still count as the predicted constant."""


def paper_comparison(df: pd.DataFrame, stats_table: pd.DataFrame, opt: pd.DataFrame, npc: dict[str, Any]) -> list[dict[str, Any]]:
    """Claims of the two source papers, each decided by a test in `fci.stats` with
    trials (seeds) as the unit (`df`: results; `stats_table`: `study_stats`; `opt`:
    `optima`; `npc`: `np_check`)."""
    out: list[dict[str, Any]] = []
    sp = stats_table[(stats_table.condition == "sparse") & (stats_table.alpha > 1)]
    fp = stats_table[(stats_table.condition == "fpe") & (stats_table.alpha > 1)]
    budgets = sorted(int(h) for h in stats_table.base_width.unique())
    a2 = sp[sp.alpha == 2].set_index("base_width")

    def cell(r: Any) -> dict[str, Any]:
        return {"gain_pp": round(100 * float(r.gain_vs_base_mean), 2), "p": sig(r.p_vs_base), "q": sig(r.q_vs_base)}

    # 1. width helps at a fixed budget (first widening step, pre-specified: alpha = 2)
    t = _pooled_gain([_gains(df, h, "sparse", 2) for h in budgets if h in a2.index])
    out.append(claim(
        "Golubeva et al. 2021 (slides 'Results: ResNet-18', ImageNet table): at a fixed number of weights, performance "
        "improves as width is increased by static random sparsity (the pre-specified first step: twice the base width)",
        t, "greater", measured={f"H0={h}": cell(a2.loc[h]) for h in budgets if h in a2.index},
        note="Gain = test accuracy minus the dense base-width model of the same trial, pooled over the budgets with trials "
             "as the unit; per budget: p and q (Benjamini-Hochberg over the widths of that budget)."))

    # 2. the gain is largest for the smallest models
    g2 = pd.concat([_gains(df, h, "sparse", 2) for h in budgets if h in a2.index] or [pd.DataFrame(columns=["seed", "gain", "base_width"])])
    if len(budgets) >= 2 and len(g2):
        values, levels = stats.trial_matrix(g2, level="base_width", value="gain", unit="seed")
        tr = stats.trend_test(values, levels, alternative="decreasing", nan_policy="omit")
        out.append(claim(
            "Golubeva et al. 2021 (slides, ResNet-18 on CIFAR and SVHN): the improvement is strongest for smaller models",
            tr, "decreasing", measured={"base_widths": list(levels), "gain_pp_at_2x": [round(100 * m, 2) for m in tr.means],
                                        "largest_at": largest_at(levels, tr.means)},
            note="Page's L test over the budgets (base widths, ascending) of each trial's gain at twice the base width, "
                 "trials as the unit; the pre-specified 2x step avoids picking the best width on the data."))

    # 3. most of the dense gain is due to width
    cells = [(h, a) for a in (2, 4) for h in budgets
             if ((sp.base_width == h) & (sp.alpha == a)).any() and ((stats_table.condition == "dense") & (stats_table.base_width == h)
                                                                     & (stats_table.alpha == a)).any()]
    sparse_g = [_gains(df, h, "sparse", a) for h, a in cells]
    half_dense = [_gains(df, h, "dense", a).assign(gain=lambda d: 0.5 * d.gain) for h, a in cells]
    t = _pooled_gain(sparse_g, half_dense)
    out.append(claim(
        "Golubeva et al. 2021 (slides 'How much improvement is due to width only?'): as long as the model reaches high "
        "training accuracy, most of the improvement of wide & dense models is reached by wide & sparse ones",
        t, "greater",
        measured={f"H0={h} x{a}": {"sparse_pp": round(100 * float(sg.gain.mean()), 2), "dense_pp": round(200 * float(dg.gain.mean()), 2)}
                  for (h, a), sg, dg in zip(cells, sparse_g, half_dense)},
        note="'Most' as a margin stated with the claim: the sparse model's gain against half the dense model's (both over "
             "the dense base model of the same trial), at 2x and 4x the base width, pooled over those cells with trials as "
             "the unit. Dense models there hold about 2x and 4x the budget."))

    # 4. theory: p* n = const
    fw = npc["fit_width"]
    interior = sorted(int(o.base_width) for o in opt.itertuples() if o.interior) if len(opt) else []
    measured4 = {"np_star": npc["np_star"], "np_star_cv": sig(npc["np_star_cv"]), "pooled_fit_slope": sig(fw["slope"]),
                 "pooled_fit_slope_se": sig(fw["slope_se"]), "interior_optima": interior}
    text4 = ("Golubeva et al. 2021 (slides 'Sparse GP kernel and its distance to the ∞-width kernel', 1-hidden-layer ReLU "
             "MLP): theory predicts an optimal connectivity p* with n·p* = const across budgets")
    note4 = (f"Per trial, width·c* at its own optimum in the smallest and the largest budget whose optimum lies inside the "
             f"sweep, compared on a log scale for equivalence within a factor {NP_MARGIN:g} (two one-sided tests across "
             "trials). Caution: within one budget width·connectivity = (budget - width - O)/(n_in + O) for every model, so "
             "across budgets width·c* mostly tracks the budget; an optimum at the edge of the sweep (c = 1: the dense "
             "model) carries no information. The paper's own check is on GP-kernel distances, not trained accuracy.")
    if len(interior) < 2:
        rec = stats.verdict_record(text4, "paired TOST of log(width·c*) between budgets", p=None,
                                   reason="fewer than two budgets have their optimum inside the sweep: nothing to compare")
        out.append({**rec, "measured": measured4, "note": note4})
    else:
        small, large = _np_star(opt, interior[0]), _np_star(opt, interior[-1])
        seeds = sorted(set(small.index) & set(large.index))
        e = stats.equivalence_test(np.log(large[seeds].to_numpy()), np.log(small[seeds].to_numpy()), margin=math.log(NP_MARGIN))
        out.append(claim(text4, e, measured={**measured4, "compared": [interior[0], interior[-1]]}, note=note4))

    # 5. FPE paper: widening at a fixed nnz increases accuracy, random split included
    f2 = fp[fp.alpha.isin([2, 4])]
    t = _pooled_gain([_gains(df, int(r.base_width), "fpe", r.alpha) for r in f2.itertuples()])
    out.append(claim(
        "Expand Neurons, Not Parameters (abstract): widening while keeping the non-zero count fixed increases accuracy; "
        "random splits of neuron weights approximate the gains", t, "greater",
        measured={f"H0={int(r.base_width)} α={int(r.alpha)}": cell(r) for r in f2.itertuples()},
        note="Random-split FPE's gain over the paired dense baseline at H0 (which trains warm-up + fine-tuning epochs from "
             "the same initialisation), pooled over (H0, α in {2, 4}) with trials as the unit; per cell: p and q."))
    return out


# --------------------------------------------------------------------------- figures


def _log2_axis(values: Iterable[float]) -> dict[str, Any]:
    v = sorted({int(x) for x in values})
    return {"type": "log", "tickvals": v, "ticktext": [str(x) for x in v]}


def wide_sparse_figure(stats: pd.DataFrame, opt: pd.DataFrame, npc: dict[str, Any], caption: str = "") -> go.Figure:
    """Row 1: test accuracy against width, one panel per budget (sparse, FPE and
    dense; the alpha = 1 point of every line is the dense base model; '*' where
    the paired test against it has q < 0.05, Benjamini–Hochberg over the widths).
    Row 2: accuracy against
    connectivity for the sparse families with each optimum starred; width * c*
    at the optimum against the budget (with the value every member of a budget
    has, dotted); log c* against log width* over the trials' optima with the
    fitted line and the predicted slope -1 (marker area: number of trials)."""
    budgets = sorted(stats.base_width.unique())
    cols = max(len(budgets), 3)
    row2 = [{"colspan": cols - 2}] + [None] * (cols - 3) + [{}, {}]
    titles = [f"H0 = {h}: budget {int(stats[stats.base_width == h].budget.iloc[0])} nnz" for h in budgets]
    titles += [""] * (cols - len(budgets))
    titles += ["accuracy vs connectivity (sparse; ★ optimum)", "width·c* at the optimum vs budget", "log c* vs log width* (trials)"]
    fig = make_subplots(rows=2, cols=cols, specs=[[{}] * cols, row2], subplot_titles=titles,
                        vertical_spacing=0.16, horizontal_spacing=0.06)
    for k, h in enumerate(budgets, start=1):
        st = stats[stats.base_width == h]
        for cond in ("sparse", "fpe", "dense"):
            g = st[st.condition == cond].sort_values("width")
            fig.add_trace(go.Scatter(
                x=g.width, y=g.test_accuracy_mean, error_y={"type": "data", "array": g.test_accuracy_sem.fillna(0)},
                mode="lines+markers+text", text=significance_text(g.q_vs_base), textposition="top center",
                textfont={"color": COLORS[cond], "size": 15}, name=NAMES[cond], legendgroup=cond, showlegend=k == 1,
                line={"color": COLORS[cond], "dash": "dot" if cond == "dense" else "solid"},
                marker={"color": COLORS[cond], "symbol": "square-open" if cond == "dense" else "circle"},
                customdata=np.stack([g.nnz_mean, g.connectivity_mean, g.train_accuracy_mean], axis=1),
                hovertemplate=(f"{cond}<br>width %{{x}}<br>test acc %{{y:.4f}}<br>nnz %{{customdata[0]:.0f}}"
                               "<br>connectivity %{customdata[1]:.3f}<br>train acc %{customdata[2]:.4f}<extra></extra>")),
                row=1, col=k)
        fig.update_xaxes(title_text="hidden width", row=1, col=k, **_log2_axis(st.width))
    fig.update_yaxes(title_text="test accuracy", row=1, col=1)

    for k, o in enumerate(opt.itertuples()):
        colr = BUDGET_COLORS[k % len(BUDGET_COLORS)]
        st = stats[(stats.base_width == o.base_width) & (stats.condition == "sparse")].sort_values("connectivity_mean")
        fig.add_trace(go.Scatter(x=st.connectivity_mean, y=st.test_accuracy_mean, error_y={"type": "data", "array": st.test_accuracy_sem.fillna(0)},
                                 mode="lines+markers", name=f"sparse, H0={o.base_width} (budget {o.budget})", legendgroup=f"b{k}",
                                 line={"color": colr}, marker={"color": colr},
                                 customdata=st.width, hovertemplate="width %{customdata}<br>c %{x:.3f}<br>acc %{y:.4f}<extra></extra>"),
                      row=2, col=1)
        fig.add_trace(go.Scatter(x=[o.c_star], y=[o.test_accuracy_star], mode="markers", showlegend=False, legendgroup=f"b{k}",
                                 marker={"symbol": "star", "size": 17, "color": colr, "line": {"color": "black", "width": 1}},
                                 hovertemplate=f"optimum H0={o.base_width}: width {o.width_star}, c*={o.c_star:.3f}<extra></extra>"),
                      row=2, col=1)
        fig.add_trace(go.Scatter(x=[o.budget], y=[o.np_star_trials_mean], error_y={"type": "data", "array": [o.np_star_trials_sem or 0]},
                                 mode="markers", marker={"symbol": "star", "size": 15, "color": colr}, showlegend=False,
                                 legendgroup=f"b{k}", hovertemplate=f"H0={o.base_width}: width·c* %{{y:.2f}} (trials' optima)<extra></extra>"),
                      row=2, col=cols - 1)
        tr = pd.DataFrame(list(o.trials_star)).groupby("width").agg(c=("connectivity", "mean"), n=("seed", "size")).reset_index()
        fig.add_trace(go.Scatter(x=tr.width, y=tr.c, mode="markers", showlegend=False, legendgroup=f"b{k}",
                                 marker={"color": colr, "size": 7 + 4 * tr.n, "opacity": 0.75, "line": {"color": "white", "width": 1}},
                                 customdata=tr.n, hovertemplate=(f"H0={o.base_width}: %{{customdata}} trial(s)<br>width* %{{x}}"
                                                                 "<br>c* %{y:.3f}<extra></extra>")), row=2, col=cols)
    cticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1) if t >= 0.8 * stats.connectivity_mean.min()]
    fig.update_xaxes(type="log", tickvals=cticks, ticktext=[f"{t:g}" for t in cticks],
                     title_text="connectivity (fraction of possible weights present)", row=2, col=1)
    fig.update_yaxes(title_text="test accuracy", row=2, col=1)
    if len(opt):
        b = opt.budget.to_numpy(float)
        fig.add_trace(go.Scatter(x=b, y=[npc["identity_np"][int(h)] for h in opt.base_width], mode="lines",
                                 line={"color": "#999", "dash": "dot"}, name="(budget − O)/(n_in + O): width·c of a budget's members is this minus width/(n_in + O)",
                                 hoverinfo="skip"), row=2, col=cols - 1)
        fig.add_trace(go.Scatter(x=b, y=[float(np.mean(opt.np_star_trials_mean))] * len(b), mode="lines",
                                 line={"color": "#555", "dash": "dash"}, name="prediction: width·c* constant", hoverinfo="skip"),
                      row=2, col=cols - 1)
        fig.update_xaxes(type="log", title_text="budget (nnz)", row=2, col=cols - 1)
        fig.update_yaxes(type="log", title_text="width · c*", row=2, col=cols - 1)
        fw = npc["fit_width"]
        allw = np.array([t["width"] for ts in opt.trials_star for t in ts], float)
        allc = np.array([t["connectivity"] for ts in opt.trials_star for t in ts], float)
        xs = np.array([allw.min(), allw.max()])
        if np.isfinite(fw["slope"]):
            fig.add_trace(go.Scatter(x=xs, y=np.exp(fw["intercept"]) * xs ** fw["slope"], mode="lines", line={"color": "black"},
                                     name=f"fit: slope {fw['slope']:.2f} ± {fw['slope_se']:.2f}", hoverinfo="skip"), row=2, col=cols)
        gm_w, gm_c = np.exp(np.log(allw).mean()), np.exp(np.log(allc).mean())
        fig.add_trace(go.Scatter(x=xs, y=gm_c * (xs / gm_w) ** -1.0, mode="lines", line={"color": "#555", "dash": "dash"},
                                 name="predicted slope -1 (through the centroid)", hoverinfo="skip"), row=2, col=cols)
        fig.update_xaxes(type="log", title_text="width at the optimum", row=2, col=cols)
        fig.update_yaxes(type="log", title_text="c* (connectivity at the optimum)", row=2, col=cols)
    fig.update_layout(title="Wide & sparse at a fixed non-zero budget: static random sparsity vs FPE vs dense (more parameters)",
                      height=1000, width=1400, template="plotly_white",
                      legend={"orientation": "h", "yanchor": "top", "y": -0.1, "x": 0})
    return add_caption(fig, caption, height_px=150)


# --------------------------------------------------------------------------- hooks


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("wide_sparse")
    g.add_argument("--dataset", default="boolean", choices=("boolean", "digits"),
                   help="boolean: the DNF task, one task per trial (default); digits: sklearn's 8x8 digits")
    g.add_argument("--clauses", type=int, default=8, help="clauses of the Boolean task (k=3, disjoint; default: 8)")
    g.add_argument("--base-widths", default=None, metavar="H0,...",
                   help=f"base widths, each fixing one budget (default: {','.join(map(str, SWEEPS['full']['base_widths']))}; "
                        f"--quick: {','.join(map(str, SWEEPS['quick']['base_widths']))})")
    g.add_argument("--alphas", default=None, metavar="A,...",
                   help=f"widening factors > 1, widths H0*A (integers); FPE runs the integer ones "
                        f"(default: {','.join(map(str, SWEEPS['full']['alphas']))}; "
                        f"--quick: {','.join(map(str, SWEEPS['quick']['alphas']))})")
    g.add_argument("--rescale-init", action="store_true",
                   help="scale each sparse layer's kept initial weights by 1/sqrt(connectivity) (default: the dense init, masked)")


def validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    level = "tiny" if args.tiny else "quick" if args.quick else "full"
    if args.clauses < 1:
        ap.error(f"--clauses must be >= 1, got {args.clauses}")
    args.base_widths = (comma_list(ap, "--base-widths", args.base_widths, kind=int, low=1) if args.base_widths is not None
                        else SWEEPS[level]["base_widths"])
    args.alphas = (tuple(_alpha(v) for v in comma_list(ap, "--alphas", args.alphas, kind=float, low=1, strict=True))
                   if args.alphas is not None else SWEEPS[level]["alphas"])
    try:
        n_in, n_out = _shape(dataset_spec(args, regime_level(ap, args)))
    except ValueError as e:  # a task option the Boolean task refuses
        flag_error(ap, e)
    for h0 in args.base_widths:
        budget = dense_nnz(n_in, h0, n_out)
        try:
            widths = sweep_widths(h0, args.alphas)
        except ValueError as e:
            ap.error(f"--alphas/--base-widths: {e}")
        for a, w in widths.items():
            try:
                weight_budget(n_in, w, n_out, budget)
            except ValueError as e:
                ap.error(f"--alphas/--base-widths: width {h0}*{a} = {w} cannot hold the budget of H0={h0}: {e}")


def jobs(ctx: JobContext) -> list[dict[str, Any]]:
    a = ctx.args
    seeds = [a.seed + t for t in range(a.trials)]
    train = ctx.level.train if a.dataset == "boolean" else ctx.base.train  # the regime options are the Boolean task's
    return make_jobs(dataset_spec(a, ctx.level), a.base_widths, a.alphas, seeds, train, a.rescale_init)


def caption(ctx: JobContext) -> str:
    a, lv = ctx.args, ctx.level
    spec = dataset_spec(a, lv)
    n_in, n_out = _shape(spec)
    data = (f"Boolean DNF, {a.clauses} clauses, k=3, one task per trial, {lv.n_test} test samples; {regime_caption(ctx)}"
            if a.dataset == "boolean" else "sklearn digits (8x8), 75/25 split")
    budgets = ", ".join(f"H0={h}: {dense_nnz(n_in, h, n_out)}" for h in a.base_widths)
    t = lv.train if a.dataset == "boolean" else ctx.base.train
    opt = (f"{t.optimizer} lr={t.lr:g}" + (f" momentum={t.momentum:g}" if t.momentum else "")
           + (f" wd={t.weight_decay:g}" if t.weight_decay else ""))
    return (f"wide_sparse · level={lv.name} · trials={a.trials} (seeds {a.seed}..{a.seed + a.trials - 1}) · {data}<br>"
            f"budgets (nnz of a dense {n_in}-H0-{n_out} MLP) {budgets} · widths H0×{{1,{','.join(map(str, a.alphas))}}}<br>"
            f"every model trains {t.epochs} epochs ({opt}, batch {t.batch_size}); FPE: {t.warmup} dense warm-up epochs, "
            f"{SPLIT} split, {t.finetune} fine-tuning epochs · sparse: random masks at init, uniform per layer, split by layer size, "
            f"biases kept{', init rescaled' if a.rescale_init else ''} · dense: more parameters<br>"
            f"error bars ±1 s.e.m. over trials; * q<0.05, paired test against the dense base-width model (α=1) of the same trial "
            "(Benjamini-Hochberg over the widths) "
            f"· device={ctx.device.type}")


def stats_hook(df: pd.DataFrame, ctx: JobContext) -> pd.DataFrame:
    st = study_stats(df)
    ctx.cache["optima"] = opt = optima(df, st)
    n_in, n_out = _shape(dataset_spec(ctx.args, ctx.level))
    ctx.cache["np_check"] = np_check(opt, n_in, n_out)
    return st


def figures(df: pd.DataFrame, stats: pd.DataFrame, ctx: JobContext) -> dict[str, go.Figure]:
    return {"wide_sparse": wide_sparse_figure(stats, ctx.cache["optima"], ctx.cache["np_check"], ctx.caption)}


def summarise(df: pd.DataFrame, stats: pd.DataFrame, ctx: JobContext) -> dict[str, Any]:
    opt, npc = ctx.cache["optima"], ctx.cache["np_check"]
    sp = df[df.condition == "sparse"]
    fp = df[df.condition == "fpe"]
    return {
        "budget_check": {"sparse_models": int(len(sp)), "sparse_nnz_equals_budget": bool((sp.nnz == sp.budget).all()),
                         "fpe_models": int(len(fp)), "fpe_nnz_equals_budget": bool((fp.nnz == fp.budget).all())},
        "optima": opt.to_dict("records"),
        "np_check": npc,
        "clause_coverage": coverage_link(df),
        "paper": paper_comparison(df, stats, opt, npc),
    }


def coverage_link(df: pd.DataFrame) -> dict[str, Any]:
    """Does accuracy follow clause coverage? Per condition (sparse, fpe) and trial,
    the Pearson correlation over the trial's models of test accuracy with the
    fraction of clauses that some hidden unit sees whole; Fisher's z of the
    per-trial r tested against 0 across trials (`fci.stats.paired_test`; trials as
    the unit). Boolean tasks only (empty otherwise)."""
    out: dict[str, Any] = {}
    if "clauses_covered" not in df:
        return out
    for cond in ("sparse", "fpe"):
        rs = []
        for _, g in df[df.condition == cond].dropna(subset=["clauses_covered"]).groupby("seed"):
            if len(g) >= 3 and g.clauses_covered.nunique() > 1 and g.test_accuracy.nunique() > 1:
                rs.append(float(np.corrcoef(g.clauses_covered, g.test_accuracy)[0, 1]))
        if not rs:
            continue
        z = np.arctanh(np.clip(rs, -1 + 1e-9, 1 - 1e-9))
        t = stats.paired_test(z, 0.0)
        out[cond] = {"r_per_trial": [round(r, 3) for r in rs], "r_mean": float(np.mean(rs)), "z_mean": float(z.mean()),
                     "p": t.p, "test": f"{t.test} of Fisher's z across trials", "reason": t.reason, "trials": len(rs),
                     "mean_covered": float(df[df.condition == cond].clauses_covered.mean())}
    return out


def print_summary(summary: dict[str, Any], ctx: JobContext) -> list[str]:
    st = pd.DataFrame(summary["stats"])
    lines = [f"{'H0':>3} {'budget':>6} {'width':>5} {'conn.':>6} {'sparse':>15} {'FPE':>15} {'dense (nnz)':>22}"]
    for (h0, w), g in st.groupby(["base_width", "width"]):
        r = {c: g[g.condition == c].iloc[0] for c in ("sparse", "fpe", "dense") if (g.condition == c).any()}
        cell = {c: f"{r[c].test_accuracy_mean:.4f}±{r[c].test_accuracy_sem:.4f}" if c in r else "-" for c in ("sparse", "fpe", "dense")}
        dn = f"{cell['dense']} ({r['dense'].nnz_mean:.0f})" if "dense" in r else "-"
        lines.append(f"{h0:>3} {int(r['sparse'].budget):>6} {w:>5} {r['sparse'].connectivity_mean:>6.3f} {cell['sparse']:>15} "
                     f"{cell['fpe']:>15} {dn:>22}")
    bc = summary["budget_check"]
    lines.append(f"nnz == budget: sparse {bc['sparse_nnz_equals_budget']} ({bc['sparse_models']} models), "
                 f"FPE {bc['fpe_nnz_equals_budget']} ({bc['fpe_models']} models)")
    for o in summary["optima"]:
        lines.append(f"optimum H0={o['base_width']}: width {o['width_star']}, c*={o['c_star']:.3f}, width*c*={o['np_star']:.2f}, "
                     f"acc {o['test_accuracy_star']:.4f} (base {o['base_test_accuracy']:.4f}){'' if o['interior'] else ' [at the edge of the sweep]'}")
    for cond, c in summary.get("clause_coverage", {}).items():
        lines.append(f"{cond}: accuracy vs fraction of clauses some unit sees whole: mean within-trial r = {c['r_mean']:.2f} "
                     f"(p={p_text(c['p'])}, {c['test']}, {c['trials']} trials; mean coverage {c['mean_covered']:.2f})")
    fw = summary["np_check"]["fit_width"]
    lines.append(f"n*p check: log c* vs log width* slope {fw['slope']:.2f} ± {fw['slope_se']:.2f} (predicted -1), "
                 f"width*c* CV across budgets {summary['np_check']['np_star_cv']:.2f}")
    lines.append("paper comparison:")
    return lines + verdict_lines(summary["paper"])


# --------------------------------------------------------------------------- the explorer's reader


@register_reader("wide_sparse-job")
def read_entries(entries: list[Any]) -> Scanned:
    """One explorer run per model: dense, statically sparse (its mask) or FPE child."""
    runs: list[ListedRun] = []
    for e in entries:
        cfg, row = e.config, job_rows(e)[0]
        name, task = dataset_of(cfg["dataset"])
        cond = str(cfg["condition"])
        alpha = int(cfg.get("alpha", 1)) if cond != "dense" else 1
        title = {"dense": f"Dense model, width {cfg['width']}",
                 "sparse": f"Statically sparse model, width {cfg['width']} (random mask, {row.get('nnz')} nnz)",
                 "fpe": f"FPE child ({cfg.get('split', '?')} split, α={alpha}, {row.get('nnz')} nnz)"}.get(cond, cond)
        runs.append(ListedRun(
            id=e.key, task=task_label(task) if task else name, hidden=hidden_text(cfg["width"]), alpha=alpha,
            split=cond if cond != "fpe" else f"fpe-{cfg.get('split', '?')}", trial=int(cfg["seed"]), epochs=epochs(cfg),
            child_accuracy=float(row["test_accuracy"]), dense_accuracy=float(row.get("dense_test_accuracy", math.nan)),
            study="wide_sparse", dataset=name, task_config=json.dumps(task, sort_keys=True) if task else "",
            n_clauses=int(task.get("n_clauses", 0)) if task else 0, image_shape=image_shape(name),
            refs=(("child", ModelRef(e.key, "", title, float(row["test_accuracy"]))),),
        ))
    return runs, []


STUDY = register(JobStudy.from_module(
    __name__, "wide_sparse",
    regime_scope="the Boolean task only (--dataset boolean, the default)",
    cluster="driver",  # the FPE children train through run_fpe on the cluster; dense and sparse models here
))
main = study_main(STUDY)


if __name__ == "__main__":
    sys.exit(main())
