"""Deeper networks: FPE of every hidden layer at a fixed non-zero budget, against depth.

MLPs with 2 to 5 hidden layers of constant width (default 8 neurons per layer)
train dense; at the expansion point every hidden layer is split in turn
(`fci.fpe.expand_layers`, layers="all": each step splits one layer's neurons
into alpha children, replicates the next layer's incoming columns and prunes the
excess by magnitude), so the whole network keeps exactly its dense parent's
non-zero parameter count (asserted for every model); children and the paired
dense baseline then train on (`fci.train.run_fpe`, models stored per trial). Datasets: the Boolean
task (8 clauses x 3 literals; clause split on layer 0, deeper layers split at
random, and random split throughout) and scikit-learn's digits (random and Gram
splits). The first-layer-only expansion (layers=(0,), same parent, same layer-0
split) is the comparison. Reported against depth: test accuracy of dense and
children, the relative improvement paired per trial with its dense baseline
(mean ± s.e.m., * q < 0.05: paired test, Benjamini–Hochberg over the depths),
the nnz check and a convergence check; each claim of the paper is decided by a
test with trials as the unit.

    python -m analyses.deep_fpe [--quick] [--out DIR] [--device auto|cpu|cuda]
                                [--trials N] [--seed S] [--shard I/N] [--data DIR]
                                [--datasets boolean,digits] [--depths 2,3,4,5]
                                [--width 8] [--alphas 2] [--no-first-layer]
                                [task options] [training options]

The task options (--vars --layout --outputs --p --negation-prob --train-samples)
and training options (--optimizer --lr --momentum --weight-decay --batch-size
--warmup --finetune) of `python -m fci` apply to the Boolean jobs only; the
digits jobs keep the run level's schedule.

Trials vary the initialisation and split seeds (trial t: seed S+t) on one
dataset per run: the Boolean task drawn with seed derive_seed(S, "task") (in the
disjoint layout all such tasks are alike up to renaming and negating variables)
and the digits split with seed S.
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
    MODELS,
    ListedRun,
    ModelRef,
    Scanned,
    epochs,
    hidden_text,
    image_shape,
    job_rows,
    register_reader,
    task_label,
)
from analyses.kinds import JobContext, JobStudy, regime_caption
from analyses.levels import Level, level_task
from analyses.rows import model_columns, test_set_columns
from analyses.runner import study_main
from analyses.style import COLORS, SYMBOLS, add_caption, significance_text
from analyses.tables import every_cell_claim, family_claims, mark_cells, p_text, resolution_of, restart_reason, sig, verdict_lines
from fci import stats
from fci.cli import check_alphas, comma_list
from fci.data import Dataset, DatasetSpec
from fci.metrics import FLAT_ABS, FLAT_REL, LATE_WINDOW, relative_improvement, trial_stats
from fci.seeding import derive_seed
from fci.store import config_key
from fci.tasks import TaskConfig
from fci.train import SCHEDULE_VERSION, FPEResult, FPESpec, ModelResult, TrainConfig, entry_configs, run_fpe

__all__ = [
    "STUDY", "main", "DATASETS", "DEPTHS", "dataset_spec", "make_dataset", "trial_specs", "study_jobs", "model_rows",
    "check_budget", "loss_curve", "depth_stats", "depth_trends", "pooled",
    "layer_comparison", "paper_comparison", "depth_figure", "curve_table", "loss_figure",
]

#: The splits each dataset is expanded with (the clause split needs clauses).
DATASETS: dict[str, tuple[str, ...]] = {"boolean": ("clause", "random"), "digits": ("random", "gram")}
#: Hidden-layer counts per run level.
DEPTHS: dict[str, tuple[int, ...]] = {"full": (2, 3, 4, 5), "quick": (2, 3, 4, 5), "tiny": (2, 3)}
#: The Boolean task family (SPEC §1 defaults otherwise: disjoint, balanced planting, one DNF output).
BOOLEAN_TASK: dict[str, Any] = {"n_clauses": 8, "clause_size": 3}
DIGITS_TEST_FRACTION = 0.25
LAYERS_ORDER = {"none": 0, "all": 1, "first": 2}
LAYERS_LABEL = {"all": "all layers", "first": "layer 0 only"}
CURVE_POINTS = 20  # loss-curve resolution kept per model


# --------------------------------------------------------------------------- data and jobs


def dataset_spec(job: dict[str, Any]) -> DatasetSpec:
    """The data a job trains on, as a spec (a pure function of `job["data"]`)."""
    d = job["data"]
    if job["dataset"] == "boolean":
        return DatasetSpec.boolean(TaskConfig.from_dict(d["task"]), seed=int(d["task_seed"]))
    if job["dataset"] == "digits":
        return DatasetSpec.digits(seed=int(d["split_seed"]), test_fraction=float(d["test_fraction"]))
    raise ValueError(f"dataset must be one of {tuple(DATASETS)}, got {job['dataset']!r}")


def make_dataset(job: dict[str, Any]) -> Dataset:
    """The Dataset a job trains on."""
    return dataset_spec(job).build()


def trial_specs(job: dict[str, Any], layers: tuple[int, ...] | str = "all") -> FPESpec:
    """The job's FPE trial, expanding `layers` ("all", or (0,): the first layer only).
    Both share the dense parent and baseline (their dense store key is the same)."""
    return FPESpec(data=dataset_spec(job), hidden=tuple(job["hidden"]), seed=int(job["seed"]),
                   expansions=tuple((str(s), int(a)) for s, a in job["expansions"]),
                   train=TrainConfig.from_dict(job["train"]), layers=layers)


def study_jobs(datasets: Sequence[str], depths: Sequence[int], width: int, alphas: Sequence[int], trials: int,
               seed: int, level: Level, first_layer: bool = True, base_level: Level | None = None) -> list[dict[str, Any]]:
    """One job per (dataset, depth, trial): a dense parent of `depth` hidden layers
    of `width` neurons, its paired dense baseline, and one child per (split,
    alpha) for layers="all" (and layers=(0,) with `first_layer`). JSON-able.
    The Boolean jobs train at `level` (the regime options applied), the digits
    jobs at `base_level` (the level before them; default `level`)."""
    jobs = []
    for name in datasets:
        if name not in DATASETS:
            raise ValueError(f"datasets: expected names from {tuple(DATASETS)}, got {name!r}")
        lv = level if name == "boolean" or base_level is None else base_level
        if name == "boolean":
            data = {"task": level_task(level, **BOOLEAN_TASK).to_dict(), "task_seed": derive_seed(seed, "task")}
        else:
            data = {"split_seed": int(seed), "test_fraction": DIGITS_TEST_FRACTION}
        expansions = [[s, int(a)] for a in alphas for s in DATASETS[name]]
        for depth in depths:
            for t in range(trials):
                jobs.append({"dataset": name, "data": data, "depth": int(depth), "width": int(width),
                             "hidden": [int(width)] * int(depth), "trial": t, "seed": seed + t,
                             "expansions": expansions, "first_layer": bool(first_layer),
                             "train": lv.train.to_dict(), "schedule": SCHEDULE_VERSION})
    return jobs


# --------------------------------------------------------------------------- training


def check_budget(child_nnz: int, parent_nnz: int, what: str) -> None:
    """FPE's invariant (SPEC §3): a child has exactly its dense parent's non-zero count."""
    if int(child_nnz) != int(parent_nnz):
        raise AssertionError(f"FPE budget broken for {what}: child nnz {child_nnz} != dense parent nnz {parent_nnz}")


def loss_curve(losses: Sequence[float], points: int = CURVE_POINTS) -> str:
    """The train loss as `points` window means, ';'-joined (a compact results.csv column)."""
    L = np.asarray(losses, dtype=float)
    if len(L) == 0:
        return ""
    return ";".join(f"{v:.5g}" for v in (w.mean() for w in np.array_split(L, min(points, len(L)))))


def _row(res: ModelResult, condition: str, alpha: int, layers: str, parent_nnz: int, dense_acc: float,
         start_epoch: int, x_test: torch.Tensor | None, test_set: dict[str, float]) -> dict[str, Any]:
    eff = res.model.effective_weights()
    hidden = eff[:-1]
    no_input = [(W == 0).all(1) for W, _ in hidden]  # (H_l,) units whose output is the constant relu(b)
    no_output = [(eff[l + 1][0] == 0).all(0) for l in range(len(hidden))]  # (H_l,) units nothing reads
    return {
        "condition": condition, "alpha": int(alpha), "layers": layers,
        "neurons": int(sum(res.model.hidden)),
        "units_without_inputs": int(sum(int(u.sum()) for u in no_input)),
        "inert_units": int(sum(int((u & (b == 0)).sum()) for u, (_, b) in zip(no_input, hidden))),
        "units_without_outputs": int(sum(int(u.sum()) for u in no_output)),
        "dead_end_nnz": int(sum(int((W[u] != 0).sum() + (b[u] != 0).sum()) for u, (W, b) in zip(no_output, hidden))),
        **model_columns(res, x_test), **test_set,
        "rel_improvement": float(relative_improvement(res.test_accuracy, dense_acc)),
        "parent_nnz": int(parent_nnz),
        "loss_start_epoch": int(start_epoch), "loss_epochs": len(res.train_loss), "loss_curve": loss_curve(res.train_loss),
    }


def model_rows(result: FPEResult, first: dict[tuple[str, int], ModelResult] | None = None,
               warmup: int = 0, x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
               loss: str = "bce") -> list[dict[str, Any]]:
    """results.csv rows of one trial: the dense baseline, each all-layer child and
    each first-layer-only child, with the relative improvement over the paired
    dense baseline; the hidden units the budget's pruning left without any input
    (`units_without_inputs`: constant relu(b); `inert_units`: bias 0 too) or
    without any outgoing weight (`units_without_outputs`, whose incoming weights
    and bias, `dead_end_nnz`, spend budget on nothing); and
    the common columns (`analyses.rows.model_columns`: the convergence check,
    dead_units on `x_test`, ...) with a compact loss curve (children's curves
    start at epoch `warmup`), and with `y_test` (labels for `loss`) the test set's
    base_rate and accuracy_resolution. Raises AssertionError if any child's nnz
    differs from its dense parent's (the parent at expansion)."""
    parent_nnz = result.parent.model.nnz()
    dense_acc = result.dense.test_accuracy
    test_set = test_set_columns(y_test, loss) if y_test is not None else {}
    rows = [_row(result.dense, "dense", 1, "none", parent_nnz, dense_acc, 0, x_test, test_set)]
    for layers, children in (("all", result.children), ("first", first or {})):
        for (s, a), res in children.items():
            check_budget(res.model.nnz(), parent_nnz, f"{result.dataset} hidden {result.hidden} seed {result.seed} {s} α={a} ({layers})")
            rows.append(_row(res, s, a, layers, parent_nnz, dense_acc, warmup, x_test, test_set))
    return rows


def _group_key(job: dict[str, Any]) -> tuple:
    return (job["dataset"], repr(job["data"]), repr(job["train"]), repr(job["expansions"]), job["first_layer"], job["depth"])


def run_jobs(jobs: list[dict[str, Any]], ctx: JobContext) -> Iterable[tuple[dict[str, Any], list[dict[str, Any]], dict]]:
    """Per dataset and depth: every trial through `fci.train.run_fpe` (stacked,
    stored), layers="all"; then the first-layer-only trials of the same jobs,
    which find their dense parents and baselines in the store and train only
    their layer-0 children (whose split equals the all-layer child's layer 0)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for j in jobs:
        groups.setdefault(_group_key(j), []).append(j)
    for key in sorted(groups, key=lambda k: (k[0], k[-1])):
        group = groups[key]
        cfg = TrainConfig.from_dict(group[0]["train"])
        data = make_dataset(group[0])
        results = run_fpe([trial_specs(j, "all") for j in group], device=ctx.device, store=ctx.store, executor=ctx.executor)
        if group[0]["first_layer"]:
            first = [r.children for r in run_fpe([trial_specs(j, (0,)) for j in group], device=ctx.device, store=ctx.store,
                                                  executor=ctx.executor)]
        else:
            first = [{} for _ in group]
        for job, res, fl in zip(group, results, first):
            for (s, a), child in fl.items():
                check_budget(child.nnz, res.parent.nnz, f"{res.dataset} trial seed {res.seed} {s} α={a} (layer 0)")
            keys = store_keys(job)  # each model's own entry: the explorer opens the job's runs from them
            rows = [{**r, "store_key": keys[(r["condition"], r["alpha"], r["layers"])]}
                    for r in model_rows(res, fl, cfg.warmup, data.x_test, data.y_test, data.loss)]
            yield job, rows, {}


# --------------------------------------------------------------------------- statistics

KEYS = ["dataset", "depth", "layers", "condition", "alpha"]


def _paired(df: pd.DataFrame) -> pd.DataFrame:
    """Children rows with their dense baseline's accuracy (`dense_test_accuracy`)."""
    dense = df[df.condition == "dense"][["dataset", "depth", "trial", "test_accuracy"]].rename(columns={"test_accuracy": "dense_test_accuracy"})
    return df[df.condition != "dense"].merge(dense, on=["dataset", "depth", "trial"], how="inner")


def depth_stats(df: pd.DataFrame, restart: str | None = None) -> pd.DataFrame:
    """Per dataset, depth, layers, split and alpha over trials: accuracy and
    relative improvement mean/sem, the paired test of accuracy against the dense
    baseline of the same trial (`fci.stats.paired_test`, guarded by the accuracy's
    resolution: `p`, `test`, `reason`) with its Benjamini–Hochberg `q` over the
    depths (`family_size`; per dataset, layers, split and alpha; degenerate cells
    named and left out, see `analyses.tables.mark_cells`), nnz (and whether every
    child's equals its parent's), neurons, and the convergence check (final loss,
    late drop)."""
    if df.empty:
        return pd.DataFrame()
    dense = df[df.condition == "dense"][["dataset", "depth", "trial", "test_accuracy"]].rename(columns={"test_accuracy": "dense_test_accuracy"})
    merged = df.merge(dense, on=["dataset", "depth", "trial"], how="left")
    out = []
    for key, g in merged.groupby(KEYS, sort=False):
        rec = dict(zip(KEYS, key))
        a = trial_stats(g.test_accuracy.to_numpy(float))
        rec.update(n=a["n"], test_accuracy_mean=a["mean"], test_accuracy_sem=a["sem"])
        g = g.sort_values("trial")
        acc, base = g.test_accuracy.to_numpy(float), g.dense_test_accuracy.to_numpy(float)
        if rec["condition"] == "dense":
            rec.update(dense_test_accuracy_mean=a["mean"], rel_improvement_mean=0.0, rel_improvement_sem=0.0, p=math.nan,
                       test=None, reason=None)
        else:
            ok = np.isfinite(base)
            ri = trial_stats(relative_improvement(acc[ok], base[ok]))
            t = stats.paired_test(acc[ok], base[ok], resolution=resolution_of(g))
            rec.update(dense_test_accuracy_mean=float(base[ok].mean()) if ok.any() else math.nan, rel_improvement_mean=ri["mean"],
                       rel_improvement_sem=ri["sem"], p=math.nan if t.p is None else t.p, test=t.test, reason=t.reason)
        rec.update(nnz_mean=float(g.nnz.mean()), parent_nnz=int(g.parent_nnz.iloc[0]),
                   nnz_equal=bool((g.nnz == g.parent_nnz).all()), neurons=int(g.neurons.iloc[0]),
                   units_without_inputs_mean=float(g.units_without_inputs.mean()), inert_units_mean=float(g.inert_units.mean()),
                   units_without_outputs_mean=float(g.units_without_outputs.mean()),
                   dead_end_nnz_mean=float(g.dead_end_nnz.mean()),
                   train_loss_final_mean=float(g.train_loss_final.mean()), dead_units_mean=float(g.dead_units.mean()),
                   train_loss_late_drop_max=float(g.train_loss_late_drop.max()),
                   converged_frac=float(g.converged.astype(bool).mean()))
        out.append(rec)
    st = pd.DataFrame(out)
    child = st.condition != "dense"
    marked = mark_cells(st[child], df, ["dataset", "depth"], p="p", compare=["condition", "alpha", "layers"],
                        family=["dataset", "layers", "condition", "alpha"], restart=restart)
    st = pd.concat([st[~child], marked], ignore_index=True)
    order = st.layers.map(LAYERS_ORDER)
    return (st.assign(_o=order).sort_values(["dataset", "_o", "condition", "alpha", "depth"]).drop(columns="_o")
            .reset_index(drop=True))


def depth_trends(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Does the FPE gain grow or shrink with depth? Per dataset, layers, split and
    alpha, Page's trend test of each trial's relative improvement over the depths
    (`fci.stats.trend_test`, trials as the unit, two-sided: `rho` > 0 rising, < 0
    falling), with the mean per depth and where the trend breaks."""
    out = []
    for key, g in _paired(df).groupby(["dataset", "layers", "condition", "alpha"], sort=True):
        rec: dict[str, Any] = dict(zip(["dataset", "layers", "condition", "alpha"], key))
        g = g.assign(rel_improvement=relative_improvement(g.test_accuracy.to_numpy(float), g.dense_test_accuracy.to_numpy(float)))
        values, levels = stats.trial_matrix(g, level="depth", value="rel_improvement")
        t = stats.trend_test(values, levels, nan_policy="omit")
        b = t.first_break()
        rec.update(test=t.test, n=t.n, depths=list(levels), rel_improvement_mean=list(t.means), rho=t.rho, p=t.p,
                   p_increasing=t.p_increasing, p_decreasing=t.p_decreasing, direction=t.direction,
                   breaks_after=None if b is None else b.earlier, reason=t.reason)
        out.append(rec)
    return out


def pooled(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Per dataset, layers, split and alpha over every depth, with trials as the
    unit (each trial's depths averaged first; `fci.stats.pooled_paired_test`):
    relative improvement mean/sem over the (depth, trial) pairs and the test of
    accuracy against dense, its p and test, and its Benjamini–Hochberg q over the
    rows (`family_size`)."""
    out = []
    for key, g in _paired(df).groupby(["dataset", "layers", "condition", "alpha"], sort=True):
        a, b = g.test_accuracy.to_numpy(float), g.dense_test_accuracy.to_numpy(float)
        ri = trial_stats(relative_improvement(a, b))
        t = stats.pooled_paired_test(a, b, unit=g.trial.to_numpy(), resolution=resolution_of(g))
        out.append({**dict(zip(["dataset", "layers", "condition", "alpha"], key)), "n_pairs": int(len(g)), "n_trials": t.n,
                    "test_accuracy_mean": float(a.mean()), "dense_test_accuracy_mean": float(b.mean()),
                    "rel_improvement_mean": ri["mean"], "rel_improvement_sem": ri["sem"],
                    "p": math.nan if t.p is None else t.p, "test": t.test, "reason": t.reason})
    c = stats.fdr([r["p"] for r in out])
    for r, q in zip(out, c.q):
        r.update(q=q, family_size=c.family_size)
    return out


def layer_comparison(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Expanding every layer against expanding layer 0 only, paired per trial
    (same parent, same layer-0 split, same dense baseline): mean accuracy
    difference (all - first), its s.e.m., the paired test's p and its
    Benjamini–Hochberg q over the depths, per dataset, split, alpha and depth; and
    pooled over depths with trials as the unit (depth None)."""
    ch = df[df.layers.isin(["all", "first"])]
    if ch.empty or set(ch.layers) != {"all", "first"}:
        return []
    keys = ["dataset", "condition", "alpha", "depth", "trial"]
    wide = ch.pivot_table(index=keys, columns="layers", values="test_accuracy").dropna().reset_index()
    out = []
    for (ds, cond, alpha), g in wide.groupby(["dataset", "condition", "alpha"], sort=True):
        res = resolution_of(ch[ch.dataset == ds])
        recs = []
        for depth, gg in g.groupby("depth", sort=True):
            d = trial_stats(gg["all"].to_numpy(float) - gg["first"].to_numpy(float))
            t = stats.paired_test(gg["all"].to_numpy(float), gg["first"].to_numpy(float), resolution=res)
            recs.append({"dataset": ds, "condition": cond, "alpha": int(alpha), "depth": int(depth), "n": d["n"],
                         "all_minus_first_mean": d["mean"], "all_minus_first_sem": d["sem"],
                         "p": math.nan if t.p is None else t.p, "test": t.test})
        c = stats.fdr([r["p"] for r in recs])
        for r, q in zip(recs, c.q):
            r.update(q=q, family_size=c.family_size)
        d = trial_stats(g["all"].to_numpy(float) - g["first"].to_numpy(float))
        t = stats.pooled_paired_test(g["all"], g["first"], unit=g.trial, resolution=res)
        out += recs + [{"dataset": ds, "condition": cond, "alpha": int(alpha), "depth": None, "n": t.n,
                        "all_minus_first_mean": d["mean"], "all_minus_first_sem": d["sem"],
                        "p": math.nan if t.p is None else t.p, "test": t.test, "q": None, "family_size": None}]
    return out


def stats_hook(df: pd.DataFrame, ctx: JobContext) -> pd.DataFrame:
    return depth_stats(df, restart_reason(ctx.level.train))


# --------------------------------------------------------------------------- the paper


def _fmt(r: dict[str, Any]) -> str:
    q = r.get("q")
    star = "*" if q is not None and np.isfinite(q) and q < stats.ALPHA else ""
    return f"{100 * r['rel_improvement_mean']:+.1f}% ± {100 * (r['rel_improvement_sem'] or 0):.1f}%{star}"


def _per_trial_gain(df: pd.DataFrame, ds: str, cond: str, alpha: int) -> pd.Series:
    """Each trial's relative improvement averaged over the depths (all layers expanded)."""
    g = _paired(df)
    g = g[(g.dataset == ds) & (g.layers == "all") & (g.condition == cond) & (g.alpha == alpha)]
    ri = relative_improvement(g.test_accuracy.to_numpy(float), g.dense_test_accuracy.to_numpy(float))
    return pd.Series(np.asarray(ri), index=g.trial.to_numpy()).groupby(level=0).mean()


def paper_comparison(df: pd.DataFrame, stats_table: pd.DataFrame) -> list[dict[str, Any]]:
    """The source paper's claims about deeper networks, each decided by a test in
    `fci.stats` over this run's trials:

    - 'widening while keeping the non-zero count constant consistently increases
      accuracy' in deeper networks: per dataset, split and alpha (every hidden
      layer expanded), the paired test of accuracy against dense at every depth,
      Benjamini–Hochberg over the depths (`analyses.tables.every_cell_claim`);
    - 'random splits approximate the gains of clause-aligned splits': per alpha,
      each trial's relative improvement averaged over the depths, random against
      half of clause's (paired, two-sided; the margin, half of the clause split's
      gain, is stated with the claim)."""
    claims: list[dict[str, Any]] = []
    if stats_table.empty:
        return claims
    pf = _paired(df)
    ch = stats_table[(stats_table.condition != "dense") & (stats_table.layers == "all")]
    for (ds, cond, alpha), g in ch.groupby(["dataset", "condition", "alpha"], sort=True):
        g = g.sort_values("depth")
        pairs = pf[(pf.dataset == ds) & (pf.layers == "all") & (pf.condition == cond) & (pf.alpha == alpha)]
        res = resolution_of(df[df.dataset == ds])
        cells = {f"depth {int(d)}": stats.paired_test(gg.sort_values("trial").test_accuracy, gg.sort_values("trial").dense_test_accuracy,
                                                      resolution=res)
                 for d, gg in pairs.groupby("depth", sort=True)}
        pool = stats.pooled_paired_test(pairs.test_accuracy, pairs.dense_test_accuracy, unit=pairs.trial, resolution=res)
        claims.append(every_cell_claim(
            ("Abstract / TL;DR: transferring FPE to deeper multilayer networks, widening while keeping the non-zero "
             "parameter count constant consistently increases accuracy: every hidden layer expanded, a gain over the "
             f"paired dense baseline at every depth ({ds}, {cond} split, α={int(alpha)})"),
            cells, "greater", dataset=ds, condition=cond, expansion_alpha=int(alpha),
            measured={"rel_improvement_pct_by_depth": {int(r.depth): round(100 * r.rel_improvement_mean, 2) for r in g.itertuples()},
                      "q_by_depth": {int(r.depth): sig(r.q) for r in g.itertuples()},
                      "dense_test_accuracy_by_depth": {int(r.depth): round(r.dense_test_accuracy_mean, 4) for r in g.itertuples()},
                      "pooled_over_depths": {"mean_diff": sig(pool.mean_diff), "p": sig(pool.p), "test": pool.test}},
            note=("Agrees when every depth gains at q < 0.05 (Benjamini-Hochberg over the depths), disagrees when some depth "
                  "loses at q < 0.05. nnz equals the dense parent's in every model (asserted); the paper gives no numbers for "
                  "depth in the text we have." + (" Deeper layers of the clause-split network are split at random (clauses "
                                                  "live on the inputs)." if cond == "clause" else ""))))
    items = []
    for (ds, alpha), g in ch.groupby(["dataset", "alpha"], sort=True):
        if not {"clause", "random"} <= set(g.condition):
            continue
        c, r = _per_trial_gain(df, ds, "clause", int(alpha)), _per_trial_gain(df, ds, "random", int(alpha))
        common = sorted(set(c.index) & set(r.index))
        t = stats.paired_test(r[common].to_numpy(float), 0.5 * c[common].to_numpy(float))
        items.append({"claim": ("Abstract: random splits of neuron weights approximate the gains of clause-aligned splits: "
                                f"random keeps at least half of the clause split's gain ({ds}, α={int(alpha)}, every layer "
                                "expanded, averaged over the depths)"),
                      "result": t, "expect": "greater", "dataset": ds, "expansion_alpha": int(alpha),
                      "measured": {"random_pct": round(100 * float(r[common].mean()), 2),
                                   "clause_pct": round(100 * float(c[common].mean()), 2), "trials": len(common)},
                      "note": ("Margin stated with the claim: half of the clause split's relative improvement, per trial "
                               "(each trial's gain averaged over the depths, trials as the unit; random - clause/2, paired, "
                               "two-sided). q: Benjamini-Hochberg over the datasets and alphas.")})
    return claims + family_claims(items)


def summarise(df: pd.DataFrame, stats: pd.DataFrame, ctx: JobContext) -> dict[str, Any]:
    pool = pooled(df)
    ch = stats[stats.condition != "dense"] if not stats.empty else stats
    headline = [{k: r[k] for k in ("dataset", "depth", "layers", "condition", "alpha", "n", "dense_test_accuracy_mean",
                                   "test_accuracy_mean", "test_accuracy_sem", "rel_improvement_mean", "rel_improvement_sem", "p",
                                   "q", "family_size", "test", "degenerate", "nnz_mean", "neurons", "units_without_inputs_mean", "inert_units_mean",
                                   "units_without_outputs_mean", "dead_end_nnz_mean")}
                for r in ch.to_dict("records")]
    nnz = {"all_children_equal_parent": bool((df.nnz == df.parent_nnz).all()) if len(df) else None,
           "dense_nnz_by_depth": {f"{ds}-{int(d)}": int(n) for (ds, d), n in
                                  df[df.condition == "dense"].groupby(["dataset", "depth"]).parent_nnz.first().items()}}
    flat = df.converged.astype(bool)
    conv = {"window": LATE_WINDOW, "flat_abs": FLAT_ABS, "flat_rel": FLAT_REL,
            "definition": ("fci.metrics.is_flat: a model's phase counts as converged when its mean train loss over the last 10% of its epochs "
                           f"is less than {FLAT_ABS} (absolute) or {100 * FLAT_REL:.0f}% (relative) below that over the 10% before"),
            "flat_fraction": float(flat.mean()) if len(df) else None,
            "flat_fraction_by_condition": {f"{ds}/{c}/{l}": float(g.mean()) for (ds, c, l), g in
                                           flat.groupby([df.dataset, df.condition, df.layers])},
            "per_condition": [{k: r[k] for k in ("dataset", "depth", "layers", "condition", "alpha", "train_loss_final_mean",
                                                 "train_loss_late_drop_max", "converged_frac")} for r in stats.to_dict("records")]}
    a = ctx.args
    return {
        "design": {"datasets": list(a.datasets), "depths": list(a.depths), "width": a.width, "alphas": list(a.alphas),
                   "first_layer": a.first_layer, "splits": {d: list(DATASETS[d]) for d in a.datasets},
                   "boolean_task": {**BOOLEAN_TASK, "n_train": ctx.level.n_train, "n_test": ctx.level.n_test,
                                    "task_seed": derive_seed(a.seed, "task")},
                   "digits": {"split_seed": a.seed, "test_fraction": DIGITS_TEST_FRACTION},
                   "train": ctx.level.train.to_dict()},
        "headline": headline,
        "pooled": pool,
        "depth_trend": depth_trends(df),
        "all_vs_first_layer": layer_comparison(df),
        "nnz": nnz,
        "convergence": conv,
        "paper": paper_comparison(df, stats),
    }


def print_summary(summary: dict[str, Any], ctx: JobContext) -> list[str]:
    lines = [f"relative improvement over the paired dense baseline (mean ± s.e.m.; * q<0.05, Benjamini-Hochberg over the "
             f"depths; pooled: trials as the unit, over the rows), {ctx.args.width} neurons per hidden layer before expansion:"]
    rows = summary.get("headline", [])
    depths = sorted({r["depth"] for r in rows})
    lines.append(f"{'dataset':<9}{'condition':<28}" + "".join(f"{'depth ' + str(d):>18}" for d in depths) + f"{'pooled':>18}")
    keyed: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        keyed.setdefault((r["dataset"], r["layers"], r["condition"], r["alpha"]), {})[r["depth"]] = r
    pool = {(r["dataset"], r["layers"], r["condition"], r["alpha"]): r for r in summary.get("pooled", [])}
    for key, by_d in sorted(keyed.items(), key=lambda kv: (kv[0][0], LAYERS_ORDER[kv[0][1]], kv[0][2], kv[0][3])):
        ds, layers, cond, alpha = key
        cells = "".join(f"{_fmt(by_d[d]) if d in by_d else '':>18}" for d in depths)
        lines.append(f"{ds:<9}{f'{cond} α={alpha} {LAYERS_LABEL[layers]}':<28}{cells}{_fmt(pool[key]) if key in pool else '':>18}")
    dense = {(r["dataset"], r["depth"]): r["dense_test_accuracy_mean"] for r in rows}
    lines.append("dense accuracy: " + ", ".join(f"{ds} d{d} {v:.3f}" for (ds, d), v in sorted(dense.items())))
    lines.append(f"nnz: every child == its dense parent: {summary['nnz']['all_children_equal_parent']}; "
                 f"dense nnz {summary['nnz']['dense_nnz_by_depth']}")
    comp = [c for c in summary.get("all_vs_first_layer", []) if c["depth"] is None]
    if comp:
        lines.append("all layers - layer 0 only, accuracy, pooled over depths: " + ", ".join(
            f"{c['dataset']} {c['condition']} α={c['alpha']} {c['all_minus_first_mean']:+.4f} ± {c['all_minus_first_sem'] or 0:.4f} "
            f"(p={p_text(c['p'])})" for c in comp))
    uw = [r for r in rows if r["layers"] == "all"]
    if uw:
        lines.append("after the budget's pruning (all layers), hidden units without inputs / without outputs of all units, "
                     "and the non-zeros feeding units without outputs: "
                     + ", ".join(f"{r['dataset']} {r['condition']} d{r['depth']} {r['units_without_inputs_mean']:.1f}/"
                                 f"{r['units_without_outputs_mean']:.1f}/{r['neurons']} ({r['dead_end_nnz_mean']:.0f} of "
                                 f"{r['nnz_mean']:.0f} nnz)" for r in uw))
    conv = summary["convergence"]
    lines.append(f"convergence: {100 * (conv['flat_fraction'] or 0):.0f}% of models flat over the last 10% of their epochs ("
                 + ", ".join(f"{k} {100 * v:.0f}%" for k, v in conv["flat_fraction_by_condition"].items()) + ")")
    lines.append("paper comparison:")
    return lines + verdict_lines(summary["paper"])


# --------------------------------------------------------------------------- figures


def _style(condition: str, alpha: int, layers: str) -> dict[str, Any]:
    color = COLORS.get(condition, "#7f7f7f")
    return {"line": {"color": color, "dash": "dot" if layers == "first" else "solid"},
            "marker": {"color": color, "symbol": SYMBOLS.get(int(alpha), "x") if layers != "first" else "diamond-open", "size": 8}}


def _label(condition: str, alpha: int, layers: str) -> str:
    return "dense" if condition == "dense" else f"{condition} α={int(alpha)}, {LAYERS_LABEL[layers]}"


def depth_figure(stats: pd.DataFrame, caption: str = "") -> go.Figure:
    """Test accuracy (top) and relative improvement over the paired dense
    baseline (bottom) against the number of hidden layers, one column per
    dataset; solid lines expand every layer, dotted ones layer 0 only; ±1 s.e.m.,
    '*' where the paired test against dense has q < 0.05 (Benjamini–Hochberg over
    the depths)."""
    datasets = list(dict.fromkeys(stats.dataset)) if not stats.empty else []
    cols = max(1, len(datasets))
    fig = make_subplots(rows=2, cols=cols, shared_xaxes=True, vertical_spacing=0.09, horizontal_spacing=0.08,
                        subplot_titles=[f"{ds}: {t}" for t in ("test accuracy", "relative improvement vs dense") for ds in datasets] or None)
    seen = set()
    for c, ds in enumerate(datasets, start=1):
        s = stats[stats.dataset == ds]
        for (cond, alpha, layers), g in sorted(s.groupby(["condition", "alpha", "layers"]),
                                               key=lambda kv: (kv[0][0] != "dense", LAYERS_ORDER[kv[0][2]], kv[0][0], kv[0][1])):
            g = g.sort_values("depth")
            name = _label(cond, alpha, layers)
            st = _style(cond, alpha, layers)
            for r, (y, sem, scale) in enumerate((("test_accuracy_mean", "test_accuracy_sem", 1.0),
                                                ("rel_improvement_mean", "rel_improvement_sem", 100.0)), start=1):
                if r == 2 and cond == "dense":
                    continue
                text = significance_text(g.q) if cond != "dense" else None
                fig.add_trace(go.Scatter(
                    x=g.depth, y=g[y] * scale, error_y={"type": "data", "array": g[sem].fillna(0) * scale, "visible": True},
                    mode="lines+markers+text" if text else "lines+markers", text=text, textposition="top center",
                    textfont={"size": 16, "color": st["line"]["color"]}, name=name, legendgroup=name,
                    showlegend=name not in seen, hovertemplate=f"{name}<br>depth=%{{x}}<br>%{{y:.4g}}<extra>{ds}</extra>", **st),
                    row=r, col=c)
                seen.add(name)
        fig.add_hline(y=0, line={"color": "#222", "dash": "dash", "width": 1}, row=2, col=c)
        depths = sorted({int(d) for d in s.depth})
        fig.update_xaxes(tickvals=depths, row=2, col=c, title_text="hidden layers")
        fig.update_xaxes(tickvals=depths, row=1, col=c)
    fig.update_yaxes(title_text="test accuracy", row=1, col=1)
    fig.update_yaxes(title_text="relative improvement (%)", row=2, col=1)
    fig.update_layout(title="FPE of every hidden layer at a fixed non-zero budget, against depth",
                      height=800, width=max(700, 560 * cols + 250), template="plotly_white")
    return add_caption(fig, caption)


def curve_table(df: pd.DataFrame) -> pd.DataFrame:
    """The compact loss curves of results.csv as a long table, averaged over
    trials: dataset, depth, layers, condition, alpha, epoch (window centre,
    absolute: children start at the warm-up's end), loss_mean, loss_sem."""
    recs = []
    for r in df.itertuples(index=False):
        if not isinstance(r.loss_curve, str) or not r.loss_curve:
            continue
        vals = [float(v) for v in r.loss_curve.split(";")]
        centres = [float(w.mean()) for w in np.array_split(np.arange(int(r.loss_epochs)), len(vals))]
        for k, (e, v) in enumerate(zip(centres, vals)):
            recs.append({"dataset": r.dataset, "depth": r.depth, "layers": r.layers, "condition": r.condition, "alpha": r.alpha,
                         "k": k, "epoch": int(r.loss_start_epoch) + e, "loss": v})
    cols = ["dataset", "depth", "layers", "condition", "alpha", "k", "epoch"]
    if not recs:
        return pd.DataFrame(columns=cols + ["loss_mean", "loss_sem"])
    long = pd.DataFrame(recs)
    g = long.groupby(cols, sort=True).loss
    out = g.mean().rename("loss_mean").to_frame().join(g.sem().rename("loss_sem")).reset_index()
    return out.drop(columns="k")


def loss_figure(df: pd.DataFrame, caption: str = "") -> go.Figure:
    """Mean train loss (log scale) against epoch, one panel per dataset and
    depth, one line per condition: the evidence that the schedule converges.
    Children start where the dense warm-up ends (the parent at expansion); the
    dense line goes on as the paired baseline."""
    curves = curve_table(df)
    datasets = list(dict.fromkeys(curves.dataset))
    depths = sorted({int(d) for d in curves.depth})
    fig = make_subplots(rows=max(1, len(datasets)), cols=max(1, len(depths)), shared_xaxes=True, shared_yaxes=False,
                        subplot_titles=[f"{ds}, {d} hidden layers" for ds in datasets for d in depths] or None,
                        vertical_spacing=0.12, horizontal_spacing=0.05)
    seen = set()
    for i, ds in enumerate(datasets, start=1):
        for j, d in enumerate(depths, start=1):
            c = curves[(curves.dataset == ds) & (curves.depth == d)]
            for (cond, alpha, layers), g in sorted(c.groupby(["condition", "alpha", "layers"]),
                                                   key=lambda kv: (kv[0][0] != "dense", LAYERS_ORDER[kv[0][2]], kv[0][0], kv[0][1])):
                name = _label(cond, alpha, layers)
                fig.add_trace(go.Scatter(x=g.epoch, y=g.loss_mean, mode="lines", name=name, legendgroup=name,
                                         showlegend=name not in seen, line=_style(cond, alpha, layers)["line"],
                                         hovertemplate=f"{name}<br>epoch %{{x:.0f}}<br>loss %{{y:.4g}}<extra>{ds} d{d}</extra>"),
                              row=i, col=j)
                seen.add(name)
    fig.update_yaxes(type="log")
    fig.update_xaxes(title_text="epoch", row=max(1, len(datasets)))
    fig.update_yaxes(title_text="train loss", col=1)
    fig.update_layout(title="Train loss, mean over trials (window means of 5% of each phase's epochs)",
                      height=320 * max(1, len(datasets)) + 170, width=max(800, 330 * len(depths) + 250), template="plotly_white")
    return add_caption(fig, caption)


def figures(df: pd.DataFrame, stats: pd.DataFrame, ctx: JobContext) -> dict[str, go.Figure]:
    return {"deep_fpe": depth_figure(stats, ctx.caption), "loss_curves": loss_figure(df, ctx.caption)}


# --------------------------------------------------------------------------- the command


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("deep FPE")
    g.add_argument("--datasets", default=",".join(DATASETS), metavar="NAME,...",
                   help=f"comma-separated datasets from {','.join(DATASETS)} (default: {','.join(DATASETS)}; splits: "
                        + ", ".join(f"{d}: {'/'.join(s)}" for d, s in DATASETS.items()) + ")")
    g.add_argument("--depths", default=None, metavar="D,...",
                   help=f"comma-separated numbers of hidden layers (default: {','.join(map(str, DEPTHS['full']))})")
    g.add_argument("--width", type=int, default=8, help="neurons per hidden layer before expansion (default: 8)")
    g.add_argument("--alphas", default="2", metavar="A,...", help="comma-separated expansion factors, each >= 2 (default: 2)")
    g.add_argument("--no-first-layer", dest="first_layer", action="store_false",
                   help="skip the first-layer-only comparison (layers=(0,))")


def validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    args.datasets = list(comma_list(ap, "--datasets", args.datasets, kind=str, choices=tuple(DATASETS)))
    args.depths = (list(DEPTHS["tiny" if args.tiny else "quick" if args.quick else "full"]) if args.depths is None
                   else list(comma_list(ap, "--depths", args.depths, kind=int, low=1)))
    if args.width < 1:
        ap.error(f"--width must be >= 1, got {args.width}")
    args.alphas = list(comma_list(ap, "--alphas", args.alphas, kind=int, low=2))
    n_in = {"boolean": max(args.vars or 0, BOOLEAN_TASK["n_clauses"] * BOOLEAN_TASK["clause_size"]), "digits": 64}
    for name in args.datasets:
        check_alphas(ap, "--alphas", args.alphas, n_in[name], f"the {name} task")


def jobs_hook(ctx: JobContext) -> list[dict[str, Any]]:
    a = ctx.args
    return study_jobs(a.datasets, a.depths, a.width, a.alphas, a.trials, a.seed, ctx.level, a.first_layer, ctx.base)


def boolean_task(args: argparse.Namespace, level: Level) -> TaskConfig | None:
    """The Boolean task family at a level (the regime's task options applied); None without Boolean jobs."""
    return level_task(level, **BOOLEAN_TASK) if "boolean" in args.datasets else None


def caption(ctx: JobContext) -> str:
    a, lv = ctx.args, ctx.level
    data = []
    if "boolean" in a.datasets:
        t = lv.train
        data.append(f"Boolean {BOOLEAN_TASK['n_clauses']} clauses × {BOOLEAN_TASK['clause_size']} ({lv.n_test} test samples; "
                    f"task seed from S): clause split on layer 0 + random deeper, random · {regime_caption(ctx)} "
                    f"(dense baseline {t.epochs})")
    if "digits" in a.datasets:
        t = ctx.base.train
        data.append(f"digits (sklearn, 8×8, split seed S, {int(100 * DIGITS_TEST_FRACTION)}% test): random, Gram · "
                    f"{t.optimizer} lr={t.lr}, batch {t.batch_size}, {t.warmup} dense warm-up + {t.finetune} fine-tuning "
                    f"epochs (dense baseline {t.epochs})")
    return (f"deep_fpe · level={lv.name} · trials={a.trials} (seeds {a.seed}..{a.seed + a.trials - 1}, S={a.seed}) · "
            f"{a.width} neurons per hidden layer before expansion, α={','.join(map(str, a.alphas))} · device={ctx.device.type}<br>"
            + "<br>".join(data) + "<br>"
            "every child's nnz == its dense parent's (asserted) · error bars ±1 s.e.m.; * q<0.05 (paired test vs dense, "
            "Benjamini-Hochberg over the depths)")


# --------------------------------------------------------------------------- the explorer's reader


def store_keys(job: dict[str, Any]) -> dict[tuple[str, int, str], str]:
    """(condition, alpha, layers) -> the store key of that model of a job: its
    models are `run_fpe` entries (kind "fpe"), the dense one shared by both layer settings."""
    out: dict[tuple[str, int, str], str] = {}
    for layers, spec_layers in (("all", "all"), ("first", (0,))):
        for (s, a), cfg in entry_configs(trial_specs(job, spec_layers)).items():
            out[(s, int(a), "none" if s == "dense" else layers)] = config_key(cfg)
    return out


@register_reader("deep_fpe-job")
def read_entries(entries: list[Any]) -> Scanned:
    """One explorer run per child of a deep trial (all layers, or layer 0 only),
    beside its parent at expansion and the paired dense baseline: the job's rows
    name each model's own store entry (`store_key`)."""
    runs: list[ListedRun] = []
    for e in entries:
        job, rows = e.config, job_rows(e)
        keys = store_keys(job)
        dense = next(r for r in rows if r["condition"] == "dense")
        dense_acc = float(dense["test_accuracy"])
        name = str(job["dataset"])
        task = job["data"].get("task") if name == "boolean" else None
        for r in rows:
            s, a, layers = str(r["condition"]), int(r["alpha"]), str(r.get("layers", "all"))
            if s == "dense":
                continue
            key = str(r.get("store_key") or keys[(s, a, layers)])
            where = "all hidden layers" if layers == "all" else "layer 1 only"
            runs.append(ListedRun(
                id=f"{e.key}/{s}-{a}-{layers}", task=task_label(task) if task else name,
                hidden=hidden_text(job["hidden"]), alpha=a, split=f"{s} ({layers})", trial=int(job["seed"]),
                epochs=epochs(job), child_accuracy=float(r["test_accuracy"]), dense_accuracy=dense_acc,
                study="deep_fpe", dataset=name, task_config=json.dumps(task, sort_keys=True) if task else "",
                n_clauses=int(task.get("n_clauses", 0)) if task else 0,
                task_seed=int(job["data"]["task_seed"]) if task else None, image_shape=image_shape(name),
                refs=(("parent", ModelRef(key, "parent.", MODELS["parent"], math.nan)),
                      ("child", ModelRef(key, "", f"FPE child ({s} split, α={a}, {where}) after fine-tuning",
                                         float(r["test_accuracy"]))),
                      ("dense", ModelRef(keys[("dense", 1, "none")], "", MODELS["dense"], dense_acc))),
            ))
    return runs, []


STUDY = register(JobStudy.from_module(
    __name__, "deep_fpe", jobs=jobs_hook,
    regime_scope="the Boolean jobs only (--datasets boolean; the digits jobs keep the run level's schedule)",
    cluster="driver",  # every model trains through run_fpe
))
main = study_main(STUDY)


if __name__ == "__main__":
    sys.exit(main())
