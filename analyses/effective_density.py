"""Effective density: does a wider MLP keep a constant 'core' after magnitude pruning?

After *The Propensity for Density in Feed-forward Models* (Schoots, Jackson et
al.): dense MLPs with two hidden layers at width multipliers 0.1x–5x of a base
width train on the Boolean DNF task (8 clauses x 3 literals) and on
scikit-learn's digits; each trained model is then pruned layer-wise by
magnitude, 2% of each layer's remaining weights per step, without retraining,
and its test accuracy recorded at every step until no weight is left (the
pruning trajectory, `fci.sparsity.magnitude`). The effective density is the density at the
first step whose accuracy falls more than 5% (relative, by default) below the
unpruned model's. Table 2's null hypothesis — the absolute core (the weights
the 1x model of the same seed keeps) is the same at every width — predicts
`min(1, core_1x / weights_w)`; it is compared with the measured effective
density per width (unpaired t-test) and by a one-way ANOVA of core sizes
across widths. Tables 3–4: the overlap of the smallest 40% of each layer's
weights at initialisation and after training, against the 16% chance level.

    python -m analyses.effective_density [--quick] [--out DIR] [--device auto|cpu|cuda]
                                         [--trials N] [--seed S] [--shard I/N] [--data DIR]
                                         [--datasets boolean,digits] [--multipliers 0.1,0.25,0.5,1,2,5]
                                         [--base-hidden 32,16] [--n-clauses 8] [--clause-size 3]
                                         [--prune-fraction 0.02] [--drop 0.05] [--drop-mode relative|absolute]
                                         [--overlap-fraction 0.4] [task options] [training options]

The task options (--vars --layout --outputs --p --negation-prob --train-samples)
and training options (--optimizer --lr --momentum --weight-decay --batch-size
--warmup --finetune; a dense model trains warm-up + fine-tuning epochs) of
`python -m fci` apply to the Boolean jobs only; the digits jobs keep the run
level's schedule.

Every job is one (dataset, width, seed): it trains one dense model (models of
similar size share one stack) and stores the model, its initial weights, one
`model` row (accuracy, weights, per-layer overlap) and one `step` row per
pruning step (step, density, kept weights, test accuracy and loss). The
effective density is computed from the stored trajectory, so `--drop` and
`--drop-mode` change the statistics without retraining anything.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from analyses import register
from analyses.entries import ListedRun, ModelRef, Scanned, dataset_of, hidden_text, image_shape, register_reader, task_label
from analyses.entries import job_rows as stored_rows
from analyses.kinds import JobContext, JobStudy, regime_caption
from analyses.levels import Level, level_task
from analyses.rows import model_columns
from analyses.runner import study_main
from analyses.style import add_caption, significance_text
from analyses.tables import every_cell_claim, family_claims, p_text, sig, verdict_lines
from fci import stats
from fci.cli import comma_list
from fci.data import Dataset, DatasetSpec
from fci.metrics import trial_stats
from fci.models.mlp import MaskedMLP
from fci.seeding import derive_seed
from fci.sparsity.magnitude import DROP_MODES, effective_density, layer_overlaps, null_density, pruning_trajectory
from fci.tasks import TaskConfig
from fci.train import TrainConfig, train_models

__all__ = ["STUDY", "main", "widths", "layer_names", "job_effective_density", "width_stats", "anovas",
           "paper_comparison", "trajectory_figure", "density_figure", "overlap_figure"]

DATASETS = ("boolean", "digits")
DIGITS_TEST_FRACTION = 0.25
# Per level: the width multipliers and the base hidden widths (two hidden layers, as LeNet-300-100).
LEVEL_SWEEP: dict[str, dict[str, tuple]] = {
    "full": {"multipliers": (0.1, 0.25, 0.5, 1.0, 2.0, 5.0), "base_hidden": (32, 16)},
    "quick": {"multipliers": (0.1, 0.25, 0.5, 1.0, 2.0, 5.0), "base_hidden": (32, 16)},
    "tiny": {"multipliers": (0.5, 1.0, 2.0), "base_hidden": (8, 4)},
}
MAX_STACK = 256  # models per training stack


# --------------------------------------------------------------------------- options


def _level_name(args: argparse.Namespace) -> str:
    return "tiny" if args.tiny else "quick" if args.quick else "full"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("effective density (fci.sparsity.magnitude)")
    g.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated subset of {DATASETS} (default: both)")
    g.add_argument("--multipliers", default=None,
                   help=f"comma-separated width multipliers, must include 1 (default: {LEVEL_SWEEP['full']['multipliers']})")
    g.add_argument("--base-hidden", default=None,
                   help=f"comma-separated hidden widths of the 1x model (default: {LEVEL_SWEEP['full']['base_hidden']}); "
                        "width m has round(m * base) neurons per layer, at least 1")
    g.add_argument("--n-clauses", type=int, default=8, help="clauses of the Boolean task (default: 8)")
    g.add_argument("--clause-size", type=int, default=3, help="literals per clause of the Boolean task (default: 3)")
    g.add_argument("--prune-fraction", type=float, default=0.02,
                   help="fraction of each layer's remaining weights pruned per step (default: 0.02, the paper's 2%%)")
    g.add_argument("--drop", type=float, default=0.05,
                   help="accuracy drop that ends the effective density (default: 0.05, the paper's 5%%)")
    g.add_argument("--drop-mode", default="relative", choices=DROP_MODES,
                   help="relative: degraded when acc < (1 - drop) * acc_0; absolute: when acc < acc_0 - drop "
                        "(default: relative; the paper does not say which)")
    g.add_argument("--overlap-fraction", type=float, default=0.4,
                   help="the smallest fraction of weights compared at init and after training (default: 0.4, Tables 3-4)")


def validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check and normalise the study's options (level defaults filled in)."""
    sweep = LEVEL_SWEEP[_level_name(args)]
    args.datasets = comma_list(ap, "--datasets", args.datasets, kind=str, choices=DATASETS)
    mults = (sweep["multipliers"] if args.multipliers is None
             else comma_list(ap, "--multipliers", args.multipliers, kind=float, low=0, strict=True))
    if 1.0 not in mults:
        ap.error(f"--multipliers must include 1 (the base width the null hypothesis refers to), got {args.multipliers!r}")
    args.multipliers = tuple(sorted(mults))
    # per-layer widths: a vector, not a set (order kept, repeats allowed)
    base = (sweep["base_hidden"] if args.base_hidden is None
            else comma_list(ap, "--base-hidden", args.base_hidden, kind=float, ordered=True))
    if any(b < 1 or b != int(b) for b in base):
        ap.error(f"--base-hidden must be positive integers, got {args.base_hidden!r}")
    args.base_hidden = tuple(int(b) for b in base)
    try:
        TaskConfig(n_clauses=args.n_clauses, clause_size=args.clause_size)
    except ValueError as e:
        ap.error(f"--n-clauses/--clause-size: {e}")
    for flag, v in (("--prune-fraction", args.prune_fraction), ("--drop", args.drop), ("--overlap-fraction", args.overlap_fraction)):
        if not 0 < v < 1:
            ap.error(f"{flag} must lie in (0, 1), got {v}")


def widths(base: Sequence[int], multiplier: float) -> list[int]:
    """Hidden widths of the model at `multiplier` x `base`: round half up, at least 1."""
    return [max(1, int(math.floor(multiplier * b + 0.5))) for b in base]


def layer_names(n_layers: int) -> list[str]:
    """The paper's layer names: fc1, fc2, ..., proj (the output layer)."""
    return [f"fc{l + 1}" for l in range(n_layers - 1)] + ["proj"]


_LAYER_COLUMN = re.compile(r"^overlap_(fc\d+|proj)(_mean)?$")


def _layers(columns: Iterable[str]) -> list[str]:
    """The layer names (fc1, ..., proj) whose overlap columns a table holds, in order."""
    found = {m.group(1) for c in columns if (m := _LAYER_COLUMN.match(str(c)))}
    fcs = sorted((l for l in found if l != "proj"), key=lambda l: int(l[2:]))
    return fcs + (["proj"] if "proj" in found else [])


def _fmt_mult(m: float) -> str:
    return f"{m:g}x"


# --------------------------------------------------------------------------- jobs and training


def boolean_task(args: argparse.Namespace, level: Level) -> TaskConfig | None:
    """The Boolean task family at a level (the regime's task options applied); None without Boolean jobs."""
    if "boolean" not in args.datasets:
        return None
    return level_task(level, n_clauses=args.n_clauses, clause_size=args.clause_size)


def _boolean_config(ctx: JobContext) -> TaskConfig:
    task = boolean_task(ctx.args, ctx.level)
    assert task is not None
    return task


def jobs(ctx: JobContext) -> list[dict[str, Any]]:
    a = ctx.args
    out = []
    for name in a.datasets:
        data = {"task": _boolean_config(ctx).to_dict()} if name == "boolean" else {"test_fraction": DIGITS_TEST_FRACTION}
        cfg = ctx.level.train if name == "boolean" else ctx.base.train  # the regime options are the Boolean jobs'
        for m in a.multipliers:
            for t in range(a.trials):
                out.append({"dataset": name, "data": data, "multiplier": m, "hidden": widths(a.base_hidden, m),
                            "base_hidden": list(a.base_hidden), "seed": a.seed + t, "train": cfg.to_dict(),
                            "epochs": cfg.epochs, "prune_fraction": a.prune_fraction,
                            "overlap_fraction": a.overlap_fraction})
    return out


def data_spec(job: dict[str, Any]) -> DatasetSpec:
    """The job's data as a spec: its own Boolean task (drawn from its seed, as every
    FPE trial's is), or its own digits split, both from its seed."""
    if job["dataset"] == "boolean":
        return DatasetSpec.boolean(TaskConfig.from_dict(job["data"]["task"]), seed=derive_seed(job["seed"], "task"))
    return DatasetSpec.digits(seed=derive_seed(job["seed"], "data") % (2 ** 32), test_fraction=job["data"]["test_fraction"])


def _dataset(job: dict[str, Any]) -> Dataset:
    return data_spec(job).build()


def _n_weights(n_in: int, hidden: Sequence[int], n_out: int) -> int:
    sizes = [n_in, *hidden, n_out]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def _batches(jobs: list[dict[str, Any]], dims: dict[str, tuple[int, int]]) -> list[list[dict[str, Any]]]:
    """Jobs of one dataset, smallest first, in stacks whose padded size stays within
    twice the models' own (narrow models share a stack; the widest train apart)."""
    out = []
    for name in sorted({j["dataset"] for j in jobs}):
        n_in, n_out = dims[name]
        js = sorted((j for j in jobs if j["dataset"] == name), key=lambda j: (j["hidden"], j["seed"]))
        cur: list[dict[str, Any]] = []
        for j in js:
            trial = cur + [j]
            hid = [max(h) for h in zip(*(x["hidden"] for x in trial))]
            padded = len(trial) * _n_weights(n_in, hid, n_out)
            own = sum(_n_weights(n_in, x["hidden"], n_out) for x in trial)
            if cur and (padded > 2 * own or len(trial) > MAX_STACK):
                out.append(cur)
                cur = [j]
            else:
                cur = trial
        if cur:
            out.append(cur)
    return out


def run_jobs(todo: list[dict[str, Any]], ctx: JobContext) -> Iterable[tuple[dict[str, Any], list[dict[str, Any]], dict]]:
    key = lambda j: (j["dataset"], j["seed"], repr(j["data"]))  # noqa: E731
    data: dict[tuple, Dataset] = {}
    for j in todo:
        if key(j) not in data:
            data[key(j)] = _dataset(j)
    dims = {j["dataset"]: (data[key(j)].n_in, data[key(j)].n_out) for j in todo}
    for batch in _batches(todo, dims):
        ds = [data[key(j)] for j in batch]
        cfg = TrainConfig.from_dict(batch[0]["train"])
        inits = [MaskedMLP(d.n_in, j["hidden"], d.n_out, seed=derive_seed(j["seed"], "init")) for j, d in zip(batch, ds)]
        trained = train_models(inits, [(d.x_train, d.y_train, d.x_test, d.y_test) for d in ds], cfg, batch[0]["epochs"],
                               loss=ds[0].loss, device=ctx.device)
        for j, d, init, res in zip(batch, ds, inits, trained):
            yield j, job_rows(j, d, init, res, ctx.device), {**res.model.tensors(),
                                                            **{f"init.W{l}": w.detach().cpu().contiguous()
                                                               for l, w in enumerate(init.weights)}}


def job_rows(job: dict[str, Any], data: Dataset, init: MaskedMLP, res, device) -> list[dict[str, Any]]:
    """The stored rows of one job: one `model` row, then one `step` row per pruning step."""
    model = res.model.to(device)
    names = layer_names(model.n_layers)
    ov = layer_overlaps(init, res.model, job["overlap_fraction"])
    n_tot = sum(o["n"] for o in ov)
    row: dict[str, Any] = {
        "record": "model", "hidden_label": "x".join(map(str, job["hidden"])), "dataset_name": data.name,
        "n_weights": int(sum(w.numel() for w in model.weights)),
        **model_columns(res, data.x_test),
        "overlap_all": sum(o["overlap"] * o["n"] for o in ov) / n_tot,
        "chance_all": sum(o["chance"] * o["n"] for o in ov) / n_tot,
    }
    for name, o in zip(names, ov):
        row[f"overlap_{name}"], row[f"chance_{name}"], row[f"n_{name}"] = o["overlap"], o["chance"], o["n"]
    traj = pruning_trajectory(model, data.x_test, data.y_test, data.loss, job["prune_fraction"])
    row["n_steps"] = len(traj) - 1
    return [row] + [{"record": "step", "hidden_label": row["hidden_label"], **_step_columns(r)} for r in traj]


#: A pruning step's measurements (`fci.sparsity.magnitude.pruning_trajectory`, on the test set) under the study's column names.
STEP_COLUMNS = {"accuracy": "test_accuracy", "loss": "test_loss", "exact_match": "test_exact_match"}


def _step_columns(r: dict[str, Any]) -> dict[str, Any]:
    return {STEP_COLUMNS.get(k, k): v for k, v in r.items()}


# --------------------------------------------------------------------------- statistics


def job_effective_density(df: pd.DataFrame, drop: float = 0.05, mode: str = "relative") -> pd.DataFrame:
    """One row per job (dataset, multiplier, seed): its effective density, the
    step and kept weights (the 'core') there, and the unpruned accuracy, from
    the job's stored `step` rows; plus `null_ed`, the density the 1x model of
    the same dataset and seed predicts (Table 2's null hypothesis). A model
    whose accuracy never falls below the threshold (e.g. one still at chance)
    has `degraded` False and NaN effective density, core and null (for every
    width of its seed when it is the 1x model): it is left out of the statistics."""
    steps = df[df.record == "step"]
    models = df[df.record == "model"].set_index(["dataset", "multiplier", "seed"])
    out = []
    for (name, m, seed), g in steps.groupby(["dataset", "multiplier", "seed"], sort=True):
        g = g.sort_values("step")
        if int(g.step.iloc[0]) != 0:
            raise ValueError(f"the trajectory of {name} {m}x seed {seed} does not start at the unpruned model (step 0)")
        ed = effective_density(g.density.to_numpy(), g.test_accuracy.to_numpy(), drop, mode)
        i = ed.index if ed.index is not None else len(g) - 1
        mr = models.loc[(name, m, seed)]
        ok = ed.degraded  # a model that never degrades (e.g. one at chance) has no effective density
        out.append({"dataset": name, "multiplier": float(m), "seed": int(seed), "hidden_label": mr["hidden_label"],
                    "n_weights": int(mr["n_weights"]), "test_accuracy_0": ed.base_accuracy, "threshold": ed.threshold,
                    "effective_density": ed.effective_density if ok else math.nan,
                    "ed_step": float(g.step.iloc[i]) if ok else math.nan,
                    "core_weights": float(g.kept_weights.iloc[i]) if ok else math.nan, "degraded": ok})
    ed = pd.DataFrame(out)
    if ed.empty:
        return ed
    base = ed[ed.multiplier == 1.0].set_index(["dataset", "seed"]).core_weights
    core_1x = base.reindex(pd.MultiIndex.from_frame(ed[["dataset", "seed"]])).to_numpy(dtype=float)
    ed["core_1x"] = core_1x
    ed["null_ed"] = np.where(np.isfinite(core_1x), null_density(np.nan_to_num(core_1x), ed.n_weights), np.nan)
    return ed


def width_stats(ed: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and width over seeds: unpruned accuracy, effective density,
    core weights, the null-hypothesis density and the test of the measured
    effective density against it: the paper's unpaired test (`fci.stats.unpaired_test`,
    `ed_p`, `ed_test`; NaN at 1x, where both are the same numbers) with its
    Benjamini–Hochberg q over the widths of the dataset (`ed_q`, `family_size`),
    and the paired test by seed (`ed_paired_p`); and the mean overlap of the
    smallest weights per layer with its chance level. `n` counts seeds, `n_ed`
    those with an effective density (the others never degraded)."""
    ov_cols = [f"overlap_{l}" for l in _layers(models.columns)] + ["overlap_all"]
    rows = []
    for (name, m), g in ed.groupby(["dataset", "multiplier"], sort=True):
        mg = models[(models.dataset == name) & (models.multiplier == m)]
        r: dict[str, Any] = {"dataset": name, "multiplier": float(m), "hidden": g.hidden_label.iloc[0],
                             "n_weights": int(g.n_weights.iloc[0]), "n": int(len(g)),
                             "n_ed": int(g.effective_density.notna().sum())}
        for col, key in (("test_accuracy_0", "test_accuracy"), ("effective_density", "ed"), ("core_weights", "core"),
                         ("null_ed", "null_ed"), ("ed_step", "ed_step")):
            s = trial_stats(g[col].dropna().to_numpy(dtype=float))
            r[f"{key}_mean"], r[f"{key}_std"], r[f"{key}_sem"] = s["mean"], s["std"], s["sem"]
        r["degraded_frac"] = float(g.degraded.mean())
        if float(m) == 1.0:
            r["ed_t"] = r["ed_p"] = r["ed_paired_p"] = math.nan
            r["ed_test"] = None
        else:
            t = stats.unpaired_test(g.effective_density, g.null_ed, nan_policy="omit")
            r["ed_t"], r["ed_p"], r["ed_test"] = _nan(t.statistic), _nan(t.p), t.test
            ok = (g.null_ed.notna() & g.effective_density.notna()).to_numpy()
            r["ed_paired_p"] = _nan(stats.paired_test(g.effective_density[ok], g.null_ed[ok]).p)
        for c in ov_cols:
            s = trial_stats(mg[c].dropna().to_numpy(dtype=float))
            layer = c[len("overlap_"):]
            r[f"{c}_mean"], r[f"{c}_sem"] = s["mean"], s["sem"]
            r[f"chance_{layer}"] = float(mg[f"chance_{layer}"].mean()) if f"chance_{layer}" in mg else math.nan
        rows.append(r)
    out = pd.DataFrame(rows)
    return stats.add_fdr(out, p="ed_p", family=["dataset"], q="ed_q") if not out.empty else out


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _tables(df: pd.DataFrame, ctx: JobContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    key = ("ed", ctx.args.drop, ctx.args.drop_mode, id(df))
    if ctx.cache.get("ed_key") != key:
        ctx.cache["ed_key"] = key
        ctx.cache["ed"] = job_effective_density(df, ctx.args.drop, ctx.args.drop_mode)
        ctx.cache["models"] = df[df.record == "model"].reset_index(drop=True)
    return ctx.cache["ed"], ctx.cache["models"]


def stats_hook(df: pd.DataFrame, ctx: JobContext) -> pd.DataFrame:
    ed, models = _tables(df, ctx)
    return width_stats(ed, models)


def anovas(ed: pd.DataFrame) -> list[dict[str, Any]]:
    """Per dataset: one-way ANOVA across widths of the core size (the paper's test
    of the null hypothesis, §4.2; counts of weights, resolution 1) and of the
    effective density itself (`fci.stats.anova`)."""
    out = []
    for name, g in ed.groupby("dataset", sort=True):
        groups = [x for _, x in g.groupby("multiplier", sort=True)]
        core = stats.anova([x.core_weights for x in groups], resolution=1, nan_policy="omit")
        dens = stats.anova([x.effective_density for x in groups], nan_policy="omit")
        out.append({"dataset": name, "widths": len(groups), "core_F": _nan(core.statistic), "core_p": _nan(core.p),
                    "core_reason": core.reason, "ed_F": _nan(dens.statistic), "ed_p": _nan(dens.p), "ed_reason": dens.reason})
    return out


# --------------------------------------------------------------------------- the paper


def _pct(v: float) -> str:
    return "nan" if v is None or not np.isfinite(v) else f"{100 * v:.1f}%"


def _overlap_text(r: pd.Series, layers: Sequence[str], chance: float) -> str:
    """'fc1 18.8%, fc2 16.7% (chance 11.1%), ...': a layer's own chance level where it differs from `chance`."""
    return ", ".join(f"{l} {_pct(r[f'overlap_{l}_mean'])}"
                     + (f" (chance {_pct(r[f'chance_{l}'])})" if abs(r[f"chance_{l}"] - chance) > 0.005 else "")
                     for l in layers)


def _overlap_cells(models: pd.DataFrame, mults: Sequence[float], layers: Sequence[str]) -> dict[str, stats.Comparison]:
    """Per (width, layer): the paired test over seeds of the overlap against its chance level."""
    out = {}
    for m in mults:
        g = models[models.multiplier == m].sort_values("seed")
        for l in layers:
            ok = g[f"overlap_{l}"].notna() & g[f"chance_{l}"].notna()
            out[f"{_fmt_mult(m)} {l}"] = stats.paired_test(g[f"overlap_{l}"][ok], g[f"chance_{l}"][ok])
    return out


def paper_comparison(ed: pd.DataFrame, models: pd.DataFrame, st: pd.DataFrame, an: list[dict[str, Any]],
                     overlap_fraction: float = 0.4) -> list[dict[str, Any]]:
    """The paper's claims (MLP on MNIST unless stated), per dataset, each decided by
    a test in `fci.stats` with seeds as the unit (`ed`: per job effective
    densities; `models`: per model overlaps; `st`: `width_stats`; `an`: `anovas`).
    Claims of one kind are corrected over the datasets (or the widths, Table 2)."""
    an_by = {a["dataset"]: a for a in an}
    q2 = overlap_fraction ** 2
    anova_items, trend_items, core_items, out = [], [], [], []
    for name, g in st.groupby("dataset", sort=True):
        g = g.sort_values("multiplier")
        e = ed[ed.dataset == name]
        mo = models[models.dataset == name]
        lo, hi = g.iloc[0], g.iloc[-1]
        a = an_by.get(name, {})
        groups = [x.core_weights for _, x in e.groupby("multiplier", sort=True)]
        anova_items.append({
            "claim": "§4.2: a one-way ANOVA across widths of the pruned ('core') model size gives p < 0.0001 for every "
                     "model type, so the core size changes with width and the null hypothesis (a constant core) is rejected",
            "result": stats.anova(groups, resolution=1, nan_policy="omit"), "expect": "different", "dataset": name,
            "measured": {"core_F": sig(a.get("core_F")), "core_p": sig(a.get("core_p")), "effective_density_F": sig(a.get("ed_F")),
                         "effective_density_p": sig(a.get("ed_p")), "widths": a.get("widths")},
            "note": "One-way ANOVA of the core (weights kept at the effective density) across widths, seeds as the unit. "
                    "q: Benjamini-Hochberg over the datasets."})
        width_items = []
        for _, r in g[g.multiplier != 1.0].iterrows():
            x = e[e.multiplier == r.multiplier]
            t = stats.unpaired_test(x.effective_density, x.null_ed, nan_policy="omit")
            below = r.multiplier < 1
            width_items.append({
                "claim": (f"Table 2: at {_fmt_mult(r.multiplier)} the measured effective density is "
                          f"{'below' if below else 'above'} the constant-core prediction (narrower MLPs sparser, wider "
                          "denser than predicted; paper: unpaired t-test, p < 0.0001)"),
                "result": t, "expect": "less" if below else "greater", "dataset": name, "multiplier": float(r.multiplier),
                "measured": {"effective_density": sig(r.ed_mean), "null": sig(r.null_ed_mean), "seeds": int(r.n_ed)},
                "note": "Paper: 0.1x 70.6% vs 100%, 0.5x 50.7% vs 91.0%, 2x 39.0% vs 19.5%, 5x 32.2% vs 6.0%. q: "
                        "Benjamini-Hochberg over the widths of this dataset."})
        out += family_claims(width_items)
        values, levels = stats.trial_matrix(e, level="multiplier", value="effective_density", unit="seed")
        trend_items.append({
            "claim": "§4.1 / Table 2: effective density falls with width (more slowly than a constant core predicts: the "
                     "paper's 70.6% at 0.1x, 43.3% at 1x, 32.2% at 5x, where the null predicts 6.0%)",
            "result": stats.trend_test(values, levels, alternative="decreasing", nan_policy="omit"), "expect": "decreasing",
            "dataset": name,
            "measured": {"multipliers": [float(v) for v in levels],
                         "effective_density": [sig(v) for v in g.ed_mean], "null": [sig(v) for v in g.null_ed_mean]},
            "note": "Page's L test over the widths, seeds as the unit (seeds without an effective density at some width "
                    "left out). 'More slowly than the null' is Table 2's per-width claim above. q: Benjamini-Hochberg over "
                    "the datasets."})
        smaller = g[g.multiplier < hi.multiplier]
        if len(smaller):
            biggest = smaller.iloc[-1]
            core = e[e.multiplier == hi.multiplier].core_weights.dropna()
            core_items.append({
                "claim": "§4.1 / Fig. 5: the absolute pruned size grows with width: the pruned widest MLPs are bigger than "
                         "the unpruned smaller architectures",
                "result": stats.paired_test(core.to_numpy(float), float(biggest.n_weights), resolution=1), "expect": "greater",
                "dataset": name,
                "measured": {f"core_{_fmt_mult(hi.multiplier)}": sig(hi.core_mean), f"weights_{_fmt_mult(biggest.multiplier)}":
                             int(biggest.n_weights), "seeds": int(core.size)},
                "note": "One-sample test of the widest model's core (per seed) against the weight count of the largest "
                        "smaller architecture (above it means above all of them). q: Benjamini-Hochberg over the datasets."})
        layers = _layers(mo.columns)
        hidden_layers = [l for l in layers if l != "proj"]
        out.append(every_cell_claim(
            "Table 3 (MLP, SGD, Glorot): the overlap of the smallest 40% of weights at initialisation and after training is "
            "above chance (16%) in every layer of the narrowest MLPs (paper, 0.1x: fc1 25.5%, fc2 22.1%, proj 34.1%)",
            _overlap_cells(mo, [lo.multiplier], layers), "greater", dataset=name,
            measured=f"{_fmt_mult(lo.multiplier)}: {_overlap_text(lo, layers, q2)}; chance {_pct(q2)} unless stated",
            note="Paired test over seeds of each layer's overlap against its chance level (k/n)^2, Benjamini-Hochberg over "
                 "the layers; the paper's MLPs trained with SGD, ours with Adam."))
        out.append(every_cell_claim(
            "Table 3: for wider MLPs the overlap in the hidden layers falls below chance (paper, 5x: fc1 3.1%, fc2 4.6%), so "
            "initialisation does not explain the MLPs' density",
            _overlap_cells(mo, [hi.multiplier], hidden_layers), "less", dataset=name,
            measured=f"{_fmt_mult(hi.multiplier)}: {_overlap_text(hi, layers, q2)}; chance {_pct(q2)} unless stated",
            note="Paired test over seeds of each hidden layer's overlap against its chance level, Benjamini-Hochberg over "
                 "the layers; the paper's MLPs trained with SGD, ours with Adam."))
        out.append(every_cell_claim(
            "Table 4 (Conv-2 trained with Adam): the overlap is above chance in every layer at every width (conv 58-60%, "
            "fc1 40-48%, fc2 18-25%, proj 28-33%)",
            _overlap_cells(mo, list(g.multiplier), layers), "greater", dataset=name,
            measured=f"mean over widths and layers {_pct(float(g.overlap_all_mean.mean()))}",
            note="A convolutional-net claim, listed because our MLPs train with Adam as those conv nets did; paired test "
                 "per (width, layer), Benjamini-Hochberg over every cell."))
    return family_claims(anova_items) + out + family_claims(trend_items) + family_claims(core_items)


def summarise(df: pd.DataFrame, st: pd.DataFrame, ctx: JobContext) -> dict[str, Any]:
    ed, _ = _tables(df, ctx)
    an = anovas(ed)
    a = ctx.args
    return {
        "effective_density": {
            "definition": (f"density (kept / prunable weights, biases excluded) at the first layer-wise pruning step "
                           f"({a.prune_fraction:g} of each layer's remaining weights per step, no retraining) whose test "
                           f"accuracy is {'below (1 - drop) * acc_0' if a.drop_mode == 'relative' else 'below acc_0 - drop'}"),
            "drop": a.drop, "drop_mode": a.drop_mode, "prune_fraction": a.prune_fraction,
            "overlap_fraction": a.overlap_fraction, "multipliers": list(a.multipliers), "base_hidden": list(a.base_hidden),
            "train": ctx.level.train.to_dict(),
            "anova": an,
            "never_degraded": int((~ed.degraded).sum()) if len(ed) else 0,
        },
        "paper": paper_comparison(ed, _tables(df, ctx)[1], st, an, a.overlap_fraction),
        "differences_from_paper": [
            ("data: the Boolean DNF task and scikit-learn's digits instead of MNIST (and CIFAR-10); accuracy on each "
             "trial's test split, where the paper uses a 5,000-image validation set"),
            (f"architecture: two hidden layers of m x {'x'.join(map(str, a.base_hidden))} neurons instead of m x 300x100 "
             "(LeNet-300-100); no convolutional or residual nets"),
            (f"training: {ctx.level.train.optimizer} lr {ctx.level.train.lr} for a fixed {ctx.level.train.epochs} epochs, "
             "where the paper's MLPs train with SGD (lr 1e-3) until the train loss reaches 0.2; initialisation is "
             "PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in)), where the paper compares Glorot and He"),
            ("seeds: trial seed s draws the initialisation and the task or data split (the paper crosses 10 "
             "initialisation seeds with 5 data seeds)"),
            (f"effective density: a {a.drop_mode} drop of {a.drop:g} (the paper's '5% decrease' does not say which); "
             "step k keeps round(n_l (1 - f)^k) weights per layer, so every layer empties after finitely many steps"),
        ],
    }


def print_summary(summary: dict[str, Any], ctx: JobContext) -> list[str]:
    lines = [f"effective density (drop {ctx.args.drop:g}, {ctx.args.drop_mode}) per width, mean ± s.e.m. over seeds "
             "(p: unpaired test against the constant-core null; q: Benjamini-Hochberg over the widths):"]
    st = pd.DataFrame(summary.get("stats", []))
    for name, g in st.groupby("dataset", sort=True):
        lines.append(f"  {name}")
        lines.append(f"    {'width':>6} {'hidden':>9} {'weights':>8} {'acc_0':>7} {'ED':>15} {'null ED':>8} {'p':>8} {'q':>8} "
                     f"{'core':>8} {'overlap fc1/…/proj':>24}")
        layers = _layers(g.columns)
        for _, r in g.sort_values("multiplier").iterrows():
            ov = "/".join(f"{100 * r[f'overlap_{l}_mean']:.0f}" for l in layers)
            lines.append(f"    {_fmt_mult(r.multiplier):>6} {r.hidden:>9} {int(r.n_weights):>8} {r.test_accuracy_mean:>7.3f} "
                         f"{_pct(r.ed_mean):>7} ± {_pct(r.ed_sem):>5} {_pct(r.null_ed_mean):>8} {p_text(r.ed_p):>8} "
                         f"{p_text(r.get('ed_q')):>8} {r.core_mean:>8.0f} {ov:>24}")
    for a in summary["effective_density"]["anova"]:
        lines.append(f"  one-way ANOVA across widths, {a['dataset']}: core size F={p_text(a['core_F'], 4)} p={p_text(a['core_p'], 3)}; "
                     f"effective density F={p_text(a['ed_F'], 4)} p={p_text(a['ed_p'], 3)}")
    n_flat = summary["effective_density"].get("never_degraded", 0)
    if n_flat:
        lines.append(f"  {n_flat} model(s) never fell below the threshold (e.g. still at chance): left out of the statistics")
    lines.append("paper vs measured:")
    return lines + verdict_lines([{**c, "claim": f"({c['dataset']}) {c['claim']}"} for c in summary["paper"]])


# --------------------------------------------------------------------------- figures


def _colors(mults: Sequence[float]) -> dict[float, str]:
    cols = sample_colorscale("Viridis", [0.9 * i / max(1, len(mults) - 1) for i in range(len(mults))])
    return dict(zip(sorted(mults), cols))


def _band(fig, x, mean, sem, color, name, group, showlegend, row, col, dash="solid"):
    sem = np.nan_to_num(np.asarray(sem, dtype=float))
    mean = np.asarray(mean, dtype=float)
    x = np.asarray(x, dtype=float)
    fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([mean + sem, (mean - sem)[::-1]]),
                             fill="toself", fillcolor=color, opacity=0.2, line={"width": 0}, hoverinfo="skip",
                             showlegend=False, legendgroup=group), row=row, col=col)
    fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", line={"color": color, "dash": dash, "width": 2}, name=name,
                             legendgroup=group, showlegend=showlegend,
                             hovertemplate=f"{name}<br>density=%{{x:.4f}}<br>%{{y:.4f}}<extra></extra>"), row=row, col=col)


def trajectory_figure(df: pd.DataFrame, drop: float, mode: str, caption: str = "", min_density: float = 1e-3) -> go.Figure:
    """Pruning trajectories: test accuracy (top) and accuracy relative to the
    unpruned model (bottom; the effective-density threshold dashed) against
    density, one line per width (mean ± s.e.m. band over seeds), one column per
    dataset; the x axis runs from 1 (unpruned) down to `min_density`."""
    steps = df[df.record == "step"]
    names = sorted(steps.dataset.unique())
    fig = make_subplots(rows=2, cols=max(1, len(names)), shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[f"{n}: test accuracy" for n in names] + [
                            f"{n}: {'accuracy / unpruned' if mode == 'relative' else 'accuracy − unpruned'}" for n in names])
    colors = _colors(sorted(steps.multiplier.unique()))
    base = steps[steps.step == 0].set_index(["dataset", "multiplier", "seed"]).test_accuracy
    for c, name in enumerate(names, start=1):
        s = steps[steps.dataset == name]
        for m, g in sorted(s.groupby("multiplier"), key=lambda t: t[0]):
            acc0 = base.reindex(pd.MultiIndex.from_frame(g[["dataset", "multiplier", "seed"]])).to_numpy()
            rel = g.test_accuracy.to_numpy() / acc0 if mode == "relative" else g.test_accuracy.to_numpy() - acc0
            g = g.assign(rel=rel)
            agg = g.groupby("step").agg(density=("density", "mean"), acc=("test_accuracy", "mean"),
                                        acc_sem=("test_accuracy", "sem"), rel=("rel", "mean"), rel_sem=("rel", "sem"))
            agg = agg[agg.density > 0]
            hid = g.hidden_label.iloc[0]
            label = f"{_fmt_mult(m)} ({hid})"
            _band(fig, agg.density, agg.acc, agg.acc_sem, colors[m], label, label, c == 1, 1, c)
            _band(fig, agg.density, agg.rel, agg.rel_sem, colors[m], label, label, False, 2, c)
        fig.add_hline(y=(1 - drop) if mode == "relative" else -drop, line={"dash": "dash", "color": "#c00"}, row=2, col=c,
                      annotation_text=(f"threshold: {1 - drop:g} × unpruned" if mode == "relative" else f"threshold: unpruned − {drop:g}"),
                      annotation_position="bottom left")
        fig.update_xaxes(type="log", range=[0.02, math.log10(min_density)], row=1, col=c)
        fig.update_xaxes(type="log", range=[0.02, math.log10(min_density)], title_text="density (kept / all weights, log)",
                         row=2, col=c)
    fig.update_yaxes(title_text="test accuracy", row=1, col=1)
    fig.update_yaxes(title_text="relative to unpruned", row=2, col=1)
    fig.update_layout(title="Pruning trajectories: layer-wise magnitude pruning without retraining (mean ± s.e.m. over seeds)",
                      height=850, width=600 * max(1, len(names)) + 200, template="plotly_white", legend_title_text="width")
    return add_caption(fig, caption)


def density_figure(st: pd.DataFrame, caption: str = "") -> go.Figure:
    """Top: effective density against width, measured (mean ± s.e.m.) and the
    constant-core null hypothesis of Table 2 ('*': unpaired test q < 0.05,
    Benjamini–Hochberg over the widths).
    Bottom: absolute core weights against width beside the total weights and
    the 1x core (the null's constant core), log-log."""
    names = sorted(st.dataset.unique())
    fig = make_subplots(rows=2, cols=max(1, len(names)), vertical_spacing=0.1,
                        subplot_titles=[f"{n}: effective density" for n in names] + [f"{n}: weights kept (the 'core')" for n in names])
    for c, name in enumerate(names, start=1):
        g = st[st.dataset == name].sort_values("multiplier")
        first = c == 1
        fig.add_trace(go.Scatter(x=g.multiplier, y=g.ed_mean, error_y={"type": "data", "array": g.ed_sem.fillna(0)},
                                 mode="lines+markers+text", text=significance_text(g.ed_q), textposition="top center",
                                 textfont={"size": 16, "color": "#1f77b4"}, line={"color": "#1f77b4"}, marker={"size": 9},
                                 name="measured", legendgroup="measured", showlegend=first,
                                 customdata=np.stack([g.hidden, g.ed_p], axis=1),
                                 hovertemplate="%{x}x (%{customdata[0]})<br>ED=%{y:.3f}<br>p=%{customdata[1]:.2g}<extra></extra>"),
                      row=1, col=c)
        fig.add_trace(go.Scatter(x=g.multiplier, y=g.null_ed_mean, error_y={"type": "data", "array": g.null_ed_sem.fillna(0)},
                                 mode="lines+markers", line={"color": "#d62728", "dash": "dash"}, marker={"symbol": "x", "size": 9},
                                 name="null hypothesis (constant core)", legendgroup="null", showlegend=first), row=1, col=c)
        fig.add_trace(go.Scatter(x=g.multiplier, y=g.core_mean, error_y={"type": "data", "array": g.core_sem.fillna(0)},
                                 mode="lines+markers", line={"color": "#1f77b4"}, marker={"size": 9}, name="core (kept at ED)",
                                 legendgroup="measured", showlegend=False), row=2, col=c)
        fig.add_trace(go.Scatter(x=g.multiplier, y=g.n_weights, mode="lines+markers", line={"color": "#7f7f7f"},
                                 marker={"symbol": "square", "size": 7}, name="all weights (unpruned)", legendgroup="all",
                                 showlegend=first), row=2, col=c)
        one = g[g.multiplier == 1.0]
        if len(one):
            fig.add_trace(go.Scatter(x=g.multiplier, y=[float(one.core_mean.iloc[0])] * len(g), mode="lines",
                                     line={"color": "#d62728", "dash": "dash"}, name="null: the 1x core", legendgroup="null",
                                     showlegend=False), row=2, col=c)
        ticks = {"type": "log", "tickvals": list(g.multiplier), "ticktext": [_fmt_mult(m) for m in g.multiplier]}
        fig.update_xaxes(**ticks, row=1, col=c)
        fig.update_xaxes(**ticks, title_text="width multiplier", row=2, col=c)
        fig.update_yaxes(range=[0, 1.08], row=1, col=c)
        fig.update_yaxes(type="log", row=2, col=c)
    fig.update_yaxes(title_text="effective density", row=1, col=1)
    fig.update_yaxes(title_text="weights", row=2, col=1)
    fig.update_layout(title="Effective density vs width, against the constant-core null hypothesis (paper Table 2, Fig. 5)",
                      height=850, width=600 * max(1, len(names)) + 200, template="plotly_white")
    return add_caption(fig, caption)


def overlap_figure(st: pd.DataFrame, overlap_fraction: float = 0.4, caption: str = "") -> go.Figure:
    """Overlap of the smallest `overlap_fraction` of weights at initialisation and
    after training, per layer, against width (mean ± s.e.m.), with the chance
    level `overlap_fraction**2` (paper Tables 3–4)."""
    names = sorted(st.dataset.unique())
    fig = make_subplots(rows=1, cols=max(1, len(names)), subplot_titles=[f"{n}" for n in names])
    layers = _layers(st.columns)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
    for c, name in enumerate(names, start=1):
        g = st[st.dataset == name].sort_values("multiplier")
        for i, l in enumerate(layers):
            fig.add_trace(go.Scatter(x=g.multiplier, y=g[f"overlap_{l}_mean"], error_y={"type": "data", "array": g[f"overlap_{l}_sem"].fillna(0)},
                                     mode="lines+markers", line={"color": palette[i % len(palette)]}, marker={"size": 8},
                                     name=l, legendgroup=l, showlegend=c == 1,
                                     customdata=g[f"chance_{l}"],
                                     hovertemplate=f"{l}<br>%{{x}}x<br>overlap=%{{y:.3f}}<br>chance=%{{customdata:.3f}}<extra></extra>"),
                          row=1, col=c)
        fig.add_hline(y=overlap_fraction ** 2, line={"dash": "dash", "color": "#c00"}, row=1, col=c,
                      annotation_text=f"chance {overlap_fraction:g}² = {overlap_fraction ** 2:.0%}", annotation_position="top left")
        fig.update_xaxes(type="log", tickvals=list(g.multiplier), ticktext=[_fmt_mult(m) for m in g.multiplier],
                         title_text="width multiplier", row=1, col=c)
    fig.update_yaxes(title_text=f"share of the layer in both smallest-{overlap_fraction:.0%} sets", row=1, col=1)
    fig.update_layout(title=f"Smallest {overlap_fraction:.0%} of weights at initialisation vs after training (paper Tables 3–4)",
                      height=520, width=600 * max(1, len(names)) + 200, template="plotly_white", legend_title_text="layer")
    return add_caption(fig, caption)


def figures(df: pd.DataFrame, st: pd.DataFrame, ctx: JobContext) -> dict[str, go.Figure]:
    return {
        "trajectories": trajectory_figure(df, ctx.args.drop, ctx.args.drop_mode, ctx.caption),
        "effective_density": density_figure(st, ctx.caption),
        "overlap": overlap_figure(st, ctx.args.overlap_fraction, ctx.caption),
    }


def caption(ctx: JobContext) -> str:
    a, lv = ctx.args, ctx.level
    data = []
    if "boolean" in a.datasets:
        t = lv.train
        data.append(f"boolean: C={a.n_clauses} k={a.clause_size}, {lv.n_test} test, {regime_caption(ctx)} "
                    f"(dense: {t.epochs} epochs)")
    if "digits" in a.datasets:
        t = ctx.base.train
        data.append(f"digits: sklearn 8x8, stratified {1 - DIGITS_TEST_FRACTION:.0%}/{DIGITS_TEST_FRACTION:.0%} split per seed, "
                    f"dense training: {t.optimizer} lr={t.lr}, batch {t.batch_size}, {t.epochs} epochs")
    rule = f"acc < {1 - a.drop:g}·acc₀ (relative)" if a.drop_mode == "relative" else f"acc < acc₀ − {a.drop:g} (absolute)"
    return (f"effective_density · level={lv.name} · trials={a.trials} (seeds {a.seed}..{a.seed + a.trials - 1}) · "
            f"widths {', '.join(_fmt_mult(m) for m in a.multipliers)} of hidden {'x'.join(map(str, a.base_hidden))}"
            f"<br>{'<br>'.join(data)}<br>"
            f"pruning: {a.prune_fraction:.0%} of each layer's remaining weights per step, no retraining, test accuracy · "
            f"effective density: first step with {rule} · overlap: smallest {a.overlap_fraction:.0%} · device={ctx.device.type} · "
            f"bands/error bars ±1 s.e.m.; * q<0.05 (unpaired test vs the null, Benjamini-Hochberg over the widths)")


# --------------------------------------------------------------------------- the explorer's reader


@register_reader("effective_density-job")
def read_entries(entries: list[Any]) -> Scanned:
    """One explorer run per deep dense model, after training beside its initialisation."""
    runs: list[ListedRun] = []
    for e in entries:
        cfg = e.config
        row = next(r for r in stored_rows(e) if r.get("record") == "model")
        name, _ = dataset_of(cfg["dataset"])
        task = cfg.get("data", {}).get("task") if name == "boolean" else None
        acc = float(row["test_accuracy"])
        runs.append(ListedRun(
            id=e.key, task=task_label(task) if task else name, hidden=hidden_text(cfg["hidden"]), alpha=1,
            split=f"dense x{cfg.get('multiplier', '?')}", trial=int(cfg["seed"]), epochs=(int(cfg.get("epochs", 0)), 0),
            child_accuracy=acc, dense_accuracy=math.nan, study="effective_density", dataset=name,
            task_config=json.dumps(task, sort_keys=True) if task else "",
            n_clauses=int(task.get("n_clauses", 0)) if task else 0, image_shape=image_shape(name),
            refs=(("parent", ModelRef(e.key, "init.", "The same network at initialisation", math.nan, init_only=True)),
                  ("child", ModelRef(e.key, "", f"Deep dense net {hidden_text(cfg['hidden'])} after training", acc))),
        ))
    return runs, []


STUDY = register(JobStudy.from_module(
    __name__, "effective_density",
    regime_scope="the Boolean jobs only (--datasets boolean; the digits jobs keep the run level's schedule)",
    cluster="workers",  # a job's data is its own Boolean task or digits split, built from the job
))
main = study_main(STUDY)


if __name__ == "__main__":
    sys.exit(main())
