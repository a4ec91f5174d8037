"""Convolutional FPE: filter splitting at a fixed non-zero budget, on digits or your images.

A small CNN (1 or 2 conv layers of 3x3 filters, ReLU, 2x2 max pooling, a linear
softmax head) is pre-trained dense, expanded by conv FPE (every conv layer's
filters split into alpha children by the random, channel, spatial and Gram
splits; the next layer's incoming weights replicated; the non-zero parameter
count kept exactly by global magnitude pruning) and fine-tuned. Its paired
dense baseline trains the same total epochs from the same initialisation, and
the alpha = 1 restart control (the parent fine-tuned with a fresh optimiser,
as the children are) separates the expansion's effect from the restart's.
Per width (filters per layer before expansion) the study reports the relative
improvement and the accuracy per parameter with paired tests (Benjamini–Hochberg
over the widths), and the feature capacity and cosine interference of the
flattened first-layer filters; each claim of the paper is decided by a test with
trials as the unit.

Nothing is downloaded: the default data are scikit-learn's bundled 8x8 grey
digits (1347 train / 450 test). `--images FILE.npz` runs on your images
(`X_train` (N, C, H, W), `y_train`, `X_test`, `y_test`); the file's name and a
hash of its contents go into every job's key.

    python -m analyses.cnn_fpe [--quick] [--out DIR] [--device auto|cpu|cuda]
                               [--trials N] [--seed S] [--shard I/N] [--data DIR]
                               [--images FILE.npz | --split-seed S] [--conv-layers 1,2] [--filters 4,8,16]
                               [--head flatten|gap] [--alphas 2,4] [--splits random,channel,spatial,gram]
                               [--warmup E] [--finetune E] [--batch-size B] [--lr LR]

Default schedule: Adam lr 0.01, batch 64 (21 steps per epoch on digits), 15
dense epochs, then 15 fine-tuning epochs (baseline: 30); 1 conv layer at 4, 8,
16 filters and 2 conv layers at 4, 8 filters, 5 trials. `--quick`: 1 conv
layer at 4 and 8 filters, 3 + 3 epochs, 3 trials.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from analyses import register
from analyses.entries import MODELS, ListedRun, ModelRef, Scanned, epochs, hidden_text, job_rows, register_reader
from analyses.kinds import JobContext, JobStudy, chunked
from analyses.levels import schedule_from
from analyses.real_data import RESTART, check_split_seed, checked_data, condition_name, expansions  # the same restart control and children
from analyses.rows import measure_columns, test_set_columns
from analyses.runner import study_main
from analyses.style import significance_text
from analyses.tables import every_cell_claim, family_claims, mark_cells, resolution_of, restart_reason, sig, verdict_lines
from fci import stats
from fci.cli import add_config_arguments, check_alphas, comma_list
from fci.data import file_sha256, load_once
from fci.data.images import ImageDataset, digit_images, load_images
from fci.fpe.cnn import expand_cnn_layers
from fci.fpe.splits import CONV_SPLITS
from fci.metrics import cosine_interference, feature_capacity, relative_improvement, trial_stats
from fci.models.cnn import HEADS, MaskedCNN, MaskedCNNStack, first_layer_filters
from fci.seeding import derive_seed
from fci.train import TrainConfig
from fci.train.cnn import evaluate_cnn, fit_cnn

__all__ = ["STUDY", "SPLITS", "ARCHS", "SCHEDULES", "main", "model_rows", "stats_table", "paper_comparison", "figure",
           "filter_metrics", "train_trials"]

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("random", "channel", "spatial", "gram")
"""The conv splits (fci.fpe.CONV_SPLITS); --splits picks among them."""

ARCHS: dict[str, tuple[tuple[int, tuple[int, ...]], ...]] = {
    "full": ((1, (4, 8, 16)), (2, (4, 8))),
    "quick": ((1, (4, 8)),),
    "tiny": ((1, (4,)),),
}
"""(conv layers, filters per layer) per run level; --conv-layers / --filters override."""

ALPHAS: dict[str, tuple[int, ...]] = {"full": (2, 4), "quick": (2, 4), "tiny": (2,)}

SCHEDULES: dict[str, TrainConfig] = {
    "full": TrainConfig(lr=0.01, batch_size=64, warmup=15, finetune=15),
    "quick": TrainConfig(lr=0.01, batch_size=64, warmup=3, finetune=3),
    "tiny": TrainConfig(lr=0.02, batch_size=128, warmup=2, finetune=2),
}

KERNEL, POOL = 3, True
MAX_TRIALS_PER_CALL = 64
ORDER = {"dense": 0, RESTART: 1, "random": 2, "channel": 3, "spatial": 4, "gram": 5}
COLORS = {"dense": "#222222", RESTART: "#9467bd", "random": "#ff7f0e", "channel": "#1f77b4", "spatial": "#d62728", "gram": "#2ca02c"}
METRICS = ("test_accuracy", "train_accuracy", "acc_per_param", "test_loss", "train_loss_final", "nnz", "active_filters",
           "feature_capacity", "cosine_interference", "dead_units")
#: What trains the CNNs: `fci.train.cnn.fit_cnn`, plain torch autograd (results.csv `backend`).
CNN_BACKEND = "torch"


# --------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=2)
def _digits(split_seed: int) -> ImageDataset:
    return digit_images(seed=split_seed)


def load_dataset(args: argparse.Namespace) -> ImageDataset:
    if args.images:
        path = os.path.realpath(args.images)
        if not os.path.isfile(path):
            raise ValueError(f"--images: no such file {args.images!r}")
        return load_once(load_images, path)
    return _digits(args.split_seed)


def dataset_id(args: argparse.Namespace) -> dict[str, Any]:
    if args.images:
        return {"source": "images", "file": os.path.basename(args.images), "sha256": file_sha256(args.images), "standardize": True}
    return {"source": "sklearn-digits-images", "split_seed": args.split_seed, "test_fraction": 0.25}


def _dataset_name(args: argparse.Namespace) -> str:
    d = dataset_id(args)
    return f"images-{os.path.splitext(d['file'])[0]}-{d['sha256'][:8]}" if d["source"] == "images" else f"digits-split{d['split_seed']}"


def schedule(args: argparse.Namespace, level: str) -> TrainConfig:
    return schedule_from(SCHEDULES[level], args)


# --------------------------------------------------------------------------- options


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("data")
    g.add_argument("--images", default=None, metavar="FILE.npz",
                   help="your images: an .npz holding X_train (N, C, H, W), y_train, X_test, y_test (labels: integers or "
                        "strings); each channel standardised by the training split (default: scikit-learn's digits)")
    g.add_argument("--split-seed", type=int, default=None, help="seed of digits' stratified 75/25 split (default: 0)")
    g = ap.add_argument_group("sweep")
    g.add_argument("--conv-layers", default=None, help="conv depths, from 1,2 (default: 1 and 2)")
    g.add_argument("--filters", default=None, help="filters per conv layer before expansion, 1-64 (default: 4,8,16 at depth 1; 4,8 at depth 2)")
    g.add_argument("--alphas", default=None, help="expansion factors >= 2 (default: 2,4); an alpha = 1 restart control always runs")
    g.add_argument("--splits", default=None, help=f"conv splits from {','.join(SPLITS)} (default: all)")
    g.add_argument("--head", default="flatten", choices=HEADS,
                   help="what the linear head reads: 'flatten' (every pooled position; each child then costs the head "
                        "P*O replicated weights) or 'gap' (global average pooling: O weights per child) (default: flatten)")
    add_config_arguments(ap, TrainConfig, "schedule", fields=("warmup", "finetune", "batch_size", "lr"),
                         note={f: f"{getattr(SCHEDULES['full'], f):g}" for f in ("warmup", "finetune", "batch_size", "lr")})


def validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every study option, and the images file, checked before any work."""
    level = "tiny" if args.tiny else "quick" if args.quick else "full"
    check_split_seed(ap, args, "--images")
    archs = dict(ARCHS[level])
    if args.conv_layers or args.filters:
        depths = comma_list(ap, "--conv-layers", args.conv_layers, kind=int, low=1) if args.conv_layers else tuple(sorted(archs))
        if any(d > 2 for d in depths):
            ap.error(f"--conv-layers takes depths 1 and 2, got {args.conv_layers!r}")
        filters = comma_list(ap, "--filters", args.filters, kind=int, low=1) if args.filters else None
        if filters and max(filters) > 64:
            ap.error(f"--filters values must be <= 64, got {args.filters!r}")
        archs = {d: filters or archs.get(d, ARCHS["full"][0][1]) for d in depths}
    args.archs = json.dumps(sorted((int(d), list(f)) for d, f in archs.items()))
    args.alphas = ",".join(map(str, comma_list(ap, "--alphas", args.alphas, kind=int, low=2) if args.alphas else ALPHAS[level]))
    args.splits = ",".join(comma_list(ap, "--splits", args.splits, kind=str, choices=SPLITS) if args.splits else SPLITS)
    data = checked_data(ap, args, level, schedule, load_dataset)
    c = data.shape[0]
    check_alphas(ap, "--alphas", _alphas(args), c * KERNEL * KERNEL, f"{data.name} ({c} channel(s) x {KERNEL}x{KERNEL})")
    for depth, fs in _archs(args):
        try:
            MaskedCNN(data.shape, [fs[0]] * depth, data.n_out, KERNEL, POOL, head=args.head)
        except ValueError as e:
            ap.error(f"--conv-layers {depth} on {data.name}: {e}")


def _archs(args) -> list[tuple[int, list[int]]]:
    return [(int(d), [int(v) for v in f]) for d, f in json.loads(args.archs)]


def _alphas(args) -> list[int]:
    return [int(v) for v in args.alphas.split(",")]


def _splits(args) -> list[str]:
    return args.splits.split(",")


# --------------------------------------------------------------------------- jobs


def jobs(ctx: JobContext) -> list[dict[str, Any]]:
    """One job per (conv depth, filters, trial): its dense parent, paired
    baseline, restart control and every child."""
    args = ctx.args
    base = {"dataset": _dataset_name(args), "data": dataset_id(args), "train": schedule(args, ctx.level.name).to_dict(),
            "kernel": KERNEL, "pool": POOL, "head": args.head, "expansions": [list(e) for e in expansions(_splits(args), _alphas(args))]}
    out = [{**base, "conv_layers": d, "filters": f, "seed": args.seed + t}
           for d, fs in _archs(args) for f in fs for t in range(args.trials)]
    if args.images:  # the file is read here; the jobs find its data in the context (on a cluster's workers too)
        ctx.cache["images"] = load_dataset(args)
    return out


def filter_metrics(model: MaskedCNN) -> dict[str, float]:
    """Feature capacity (mean and sum over the C*kh*kw input positions) and mean
    |cos| interference of the flattened first-layer filters (SPEC §4 on (F, C*kh*kw))."""
    W = first_layer_filters(model).double()
    cap = feature_capacity(W)
    return {"feature_capacity": float(cap.mean()), "feature_capacity_sum": float(cap.sum()),
            "cosine_interference": cosine_interference(W)}


def _results(stack: MaskedCNNStack, data: ImageDataset, dev, losses: torch.Tensor) -> list[dict[str, Any]]:
    tr = evaluate_cnn(stack, data.x_train.to(dev), data.y_train.to(dev))
    te = evaluate_cnn(stack, data.x_test.to(dev), data.y_test.to(dev))
    return [{"model": m, "train_accuracy": float(tr["accuracy"][i]), "test_accuracy": float(te["accuracy"][i]),
             "test_loss": float(te["loss"][i]), "train_loss": [float(v) for v in losses[i]]}
            for i, m in enumerate(stack.to_models())]


def train_trials(data: ImageDataset, trials: Sequence[tuple[int, int, int]], exps: Sequence[tuple[str, int]], cfg: TrainConfig,
                 device: torch.device, progress: bool = False, head: str = "flatten") -> list[dict[str, Any]]:
    """The FPE schedule for trials (conv layers, filters, seed) of one
    architecture: dense parents train `cfg.warmup` epochs in one stack, go on
    `cfg.finetune` epochs as the paired baselines; each parent is expanded
    (`expand_cnn_layers`, every conv layer) into one child per (split, alpha),
    and the children (stacked per shape) fine-tune with a fresh optimiser.
    Returns per trial {"parent", "dense", "children": {(split, alpha): result}}."""
    xtr, ytr = data.x_train.to(device), data.y_train.to(device)
    parents = [MaskedCNN(data.shape, [f] * d, data.n_out, KERNEL, POOL, seed=derive_seed(s, "init"), head=head) for d, f, s in trials]
    stack = MaskedCNNStack.from_models(parents).to(device)
    warm_range, fine_range = range(cfg.warmup), range(cfg.warmup, cfg.epochs)
    opt, warm = fit_cnn(stack, xtr, ytr, cfg, warm_range, progress="dense warmup" if progress else False)
    parent_res = _results(stack, data, device, warm)
    _, fine = fit_cnn(stack, xtr, ytr, cfg, fine_range, optimizer=opt, progress="dense baseline" if progress else False)
    dense_res = _results(stack, data, device, torch.cat([warm, fine], 1))
    todo = [(i, s, a) for i in range(len(trials)) for s, a in exps]
    children = {job: expand_cnn_layers(parent_res[job[0]]["model"], job[2], job[1], seed=derive_seed(trials[job[0]][2], "split", job[1], job[2]))
                for job in todo}
    by_shape: dict[tuple[int, ...], list[tuple[int, str, int]]] = {}
    for job, m in children.items():
        by_shape.setdefault(tuple(m.channels), []).append(job)
    child_res: dict[tuple[int, str, int], dict[str, Any]] = {}
    for shape_jobs in by_shape.values():
        cstack = MaskedCNNStack.from_models([children[j] for j in shape_jobs]).to(device)
        _, closs = fit_cnn(cstack, xtr, ytr, cfg, fine_range, progress="FPE finetune" if progress else False)
        for j, r in zip(shape_jobs, _results(cstack, data, device, closs)):
            r["model"].expansion_info = children[j].expansion_info  # unstacking keeps tensors only
            child_res[j] = r
    return [{"parent": parent_res[i], "dense": dense_res[i], "children": {(s, a): child_res[(i, s, a)] for s, a in exps}}
            for i in range(len(trials))]


def model_rows(result: dict[str, Any], filters: int, conv_layers: int, x_test: torch.Tensor | None = None,
               y_test: torch.Tensor | None = None) -> list[dict[str, Any]]:
    """One row per model of a trial: dense, restart and every child, with
    accuracy, nnz, accuracy per parameter and the first-layer filter metrics (and,
    with `y_test`, the test set's base_rate and accuracy_resolution)."""
    parent = result["parent"]
    parent_nnz = parent["model"].nnz()
    named = [("dense", "none", 1, result["dense"])] + [(condition_name(s, a), s, a, r) for (s, a), r in result["children"].items()]
    rows = []
    test_set = test_set_columns(y_test, "ce") if y_test is not None else {}
    for cond, split, alpha, r in named:
        m: MaskedCNN = r["model"]
        rows.append({
            "condition": cond, "split": split, "alpha": int(alpha), "conv_layers": conv_layers, "filters": filters,
            "channels_after": "x".join(map(str, m.channels)),
            "active_filters": int((m.weight_mask(0).flatten(1).sum(1) > 0).sum()),
            **measure_columns(m, test_accuracy=r["test_accuracy"], train_accuracy=r["train_accuracy"], test_loss=r["test_loss"],
                              train_loss=r["train_loss"], x_test=x_test, backend=CNN_BACKEND), **test_set,
            "parent_nnz": parent_nnz, "parent_test_accuracy": parent["test_accuracy"],
            "pruned": int(m.expansion_info.get("pruned", 0)),
            **filter_metrics(m),
        })
    return rows


def _tensors(result: dict[str, Any]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    named = [("parent", result["parent"]), ("dense", result["dense"])] + [(f"{s}-{a}", r) for (s, a), r in result["children"].items()]
    for prefix, r in named:
        out.update({f"{prefix}.{k}": v for k, v in r["model"].tensors().items()})
        if prefix != "parent":
            out[f"loss.{prefix}"] = torch.tensor(r["train_loss"], dtype=torch.float32)
    return out


def run_jobs(todo: list[dict[str, Any]], ctx: JobContext) -> Iterable[tuple[dict[str, Any], list[dict[str, Any]], dict[str, torch.Tensor]]]:
    """Train the jobs: trials of one architecture and schedule share stacks."""
    data = ctx.cache["images"] if "images" in ctx.cache else load_dataset(ctx.args)
    groups: dict[str, list[dict[str, Any]]] = {}
    for j in todo:
        groups.setdefault(json.dumps([j["train"], j["expansions"], j["conv_layers"], j["filters"], j["head"]], sort_keys=True), []).append(j)
    for group in groups.values():
        cfg = TrainConfig.from_dict(group[0]["train"])
        exps = [(str(s), int(a)) for s, a in group[0]["expansions"]]
        for chunk in chunked(group, MAX_TRIALS_PER_CALL):
            results = train_trials(data, [(j["conv_layers"], j["filters"], j["seed"]) for j in chunk], exps, cfg, ctx.device,
                                   progress=ctx.level.name != "tiny", head=group[0]["head"])
            for j, r in zip(chunk, results):
                yield j, model_rows(r, j["filters"], j["conv_layers"], data.x_test, data.y_test), _tensors(r)


# --------------------------------------------------------------------------- statistics


def stats_table(df: pd.DataFrame, restart: str | None = None) -> pd.DataFrame:
    """Per (dataset, conv_layers, filters, condition, alpha): mean, s.e.m. of
    METRICS over trials; the relative improvement over the paired dense
    baseline (mean, s.e.m.) with the paired test of accuracy (`fci.stats.paired_test`,
    guarded by the accuracy's resolution) and its Benjamini–Hochberg q over the
    widths (`rel_improvement_q`, `family_size`, per dataset, depth, condition and
    alpha; degenerate and not-applicable cells named and left out, see
    `analyses.tables.mark_cells`), and the paired test against the restart control
    of the same trial (`vs_restart_p`, `vs_restart_q` over the same family)."""
    if df.empty:
        return pd.DataFrame()
    keys = ["dataset", "conv_layers", "filters", "seed"]
    dense = df[df.condition == "dense"].set_index(keys)
    restart_rows = df[df.condition == RESTART].set_index(keys)
    if dense.index.has_duplicates:
        raise ValueError("results hold two dense baselines for one (dataset, conv_layers, filters, seed)")
    res = resolution_of(df)
    rows = []
    for (ds, L, f, cond, alpha), g in df.groupby(["dataset", "conv_layers", "filters", "condition", "alpha"], sort=False):
        idx = pd.MultiIndex.from_frame(g[keys])
        base = dense.loc[idx]
        acc, acc0 = g.test_accuracy.to_numpy(float), base.test_accuracy.to_numpy(float)
        row: dict[str, Any] = {"dataset": ds, "conv_layers": int(L), "filters": int(f), "condition": cond, "alpha": int(alpha), "n": len(g)}
        for m in METRICS:
            st = trial_stats(g[m].to_numpy(float))
            row[f"{m}_mean"], row[f"{m}_sem"] = st["mean"], st["sem"]
        rel = trial_stats(relative_improvement(acc, acc0))
        row["rel_improvement_mean"], row["rel_improvement_sem"] = rel["mean"], rel["sem"]
        if cond != "dense":
            t = stats.paired_test(acc, acc0, resolution=res)
            row.update(rel_improvement_p=_nan(t.p), rel_improvement_test=t.test, rel_improvement_reason=t.reason)
        else:
            row.update(rel_improvement_p=math.nan, rel_improvement_test=None, rel_improvement_reason=None)
        if cond not in ("dense", RESTART) and idx.isin(restart_rows.index).all():
            r0 = restart_rows.loc[idx].test_accuracy.to_numpy(float)
            row["vs_restart_diff_mean"] = float(np.mean(acc - r0))
            row["vs_restart_p"] = _nan(stats.paired_test(acc, r0, resolution=res).p)
        else:
            row["vs_restart_diff_mean"], row["vs_restart_p"] = math.nan, math.nan
        row["nnz_equal_parent"] = bool((g.nnz.to_numpy() == g.parent_nnz.to_numpy()).all())
        rows.append(row)
    st = pd.DataFrame(rows)
    child = st.condition != "dense"
    family = ["dataset", "conv_layers", "condition", "alpha"]
    marked = mark_cells(st[child], df, ["dataset", "conv_layers", "filters"], p="rel_improvement_p", family=family,
                        restart=restart, q="rel_improvement_q")
    marked = stats.add_fdr(marked, p="vs_restart_p", family=family, q="vs_restart_q", size="vs_restart_family_size")
    st = pd.concat([st[~child], marked], ignore_index=True)
    st["_o"] = st.condition.map(ORDER).fillna(len(ORDER))
    return st.sort_values(["dataset", "conv_layers", "filters", "_o", "alpha"]).drop(columns="_o").reset_index(drop=True)


def _nan(p: float | None) -> float:
    return math.nan if p is None else float(p)


def stats_hook(df: pd.DataFrame, ctx: JobContext) -> pd.DataFrame:
    return stats_table(df, restart_reason(schedule(ctx.args, ctx.level.name)))


# --------------------------------------------------------------------------- the paper


def _fpe(st: pd.DataFrame) -> list[tuple[int, str, int]]:
    c = st[~st.condition.isin(["dense", RESTART])]
    return sorted({(int(L), s, int(a)) for L, s, a in zip(c.conv_layers, c.condition, c.alpha)}, key=lambda t: (t[0], t[2], ORDER.get(t[1], 9)))


def _paired(df: pd.DataFrame, ref: str, cols: Sequence[str]) -> pd.DataFrame:
    """Every row of `df` with the `cols` of the trial's `ref` model (dense or restart) as `<ref>_<col>`."""
    keys = ["dataset", "conv_layers", "filters", "seed"]
    base = df[df.condition == ref][keys + list(cols)].rename(columns={c: f"{ref}_{c}" for c in cols})
    return df.merge(base, on=keys, how="inner")


def paper_comparison(df: pd.DataFrame, st: pd.DataFrame, regime: str) -> list[dict[str, Any]]:
    """The paper's CNN claim, and the restart, per-parameter and interference
    readings of it, each decided by a test in `fci.stats` over this run's trials
    (`df`: results; `st`: `stats_table`'s output), per depth, split and alpha:
    accuracy gains at every width (paired test per width, Benjamini–Hochberg over
    the widths); children beat the restart control, accuracy per parameter is
    higher and cosine interference lower than dense (each pooled over the widths
    with trials as the unit; Benjamini–Hochberg over the children)."""
    out: list[dict[str, Any]] = []
    kids = _fpe(st)
    if not kids:
        return out
    res = resolution_of(df)
    pd_dense = _paired(df, "dense", ["test_accuracy", "acc_per_param", "cosine_interference"])
    pd_restart = _paired(df, RESTART, ["test_accuracy"])
    restart = st[st.condition == RESTART].sort_values(["conv_layers", "filters"])
    control = {f"L{int(L)}-{int(f)}": round(100 * float(r), 2)
               for L, f, r in zip(restart.conv_layers, restart.filters, restart.rel_improvement_mean)}
    for L, s, a in kids:
        g = pd_dense[(pd_dense.conv_layers == L) & (pd_dense.condition == s) & (pd_dense.alpha == a)]
        row = st[(st.conv_layers == L) & (st.condition == s) & (st.alpha == a)].sort_values("filters")
        cells = {f"{int(f)} filters": stats.paired_test(gg.test_accuracy, gg.dense_test_accuracy, resolution=res)
                 for f, gg in g.groupby("filters", sort=True)}
        out.append(every_cell_claim(
            "FPE paper (latest version), CNNs: widening at a constant non-zero parameter count increases accuracy: filters "
            f"split into children at equal nnz beat the paired dense CNN at every width ({L} conv layer(s), {s} split, α={a})",
            cells, "greater", conv_layers=L, condition=s, expansion_alpha=a,
            measured={"rel_improvement_pct_by_filters": {int(f): round(100 * float(r), 2) for f, r in zip(row.filters, row.rel_improvement_mean)},
                      "q_by_filters": {int(f): sig(q) for f, q in zip(row.filters, row.rel_improvement_q)},
                      "restart_control_pct": control},
            note=f"{regime} Agrees when every width gains at q < 0.05 (Benjamini-Hochberg over the widths), disagrees when "
                 "some width loses at q < 0.05."))
    specs = (
        ("(our control, not in the paper) The gain is due to the expansion, not to restarting the optimiser: children beat "
         "the alpha = 1 restart control of the same trial", pd_restart, "test_accuracy", f"{RESTART}_test_accuracy", "greater", res),
        ("FPE paper: test accuracy per non-zero parameter is higher for the expanded network than for the dense one of the "
         "same width (at equal nnz)", pd_dense, "acc_per_param", "dense_acc_per_param", "greater", None),
        ("FPE paper (mechanism): splitting neurons lowers interference between them; here the mean |cos| between the "
         "flattened first-layer filters is lower than dense's", pd_dense, "cosine_interference", "dense_cosine_interference",
         "less", None),
    )
    for text, frame, a_col, b_col, expect, r in specs:
        items = []
        for L, s, a in kids:
            g = frame[(frame.conv_layers == L) & (frame.condition == s) & (frame.alpha == a)]
            ok = np.isfinite(g[a_col].to_numpy(float)) & np.isfinite(g[b_col].to_numpy(float))
            t = stats.pooled_paired_test(g[a_col][ok], g[b_col][ok], unit=g.seed[ok], resolution=r)
            items.append({"claim": f"{text} ({L} conv layer(s), {s} split, α={a})", "result": t, "expect": expect,
                          "conv_layers": L, "condition": s, "expansion_alpha": a,
                          "measured": {int(f): {"fpe": sig(gg[a_col].mean(), 4), "reference": sig(gg[b_col].mean(), 4)}
                                       for f, gg in g[ok].groupby("filters", sort=True)},
                          "note": "Pooled over the widths with trials as the unit (each trial's widths averaged, then "
                                  "compared across trials); q: Benjamini-Hochberg over the depths, splits and alphas."
                                  + (" Children of one filter have disjoint supports (cos 0 between them), so a lower mean "
                                     "|cos| partly restates the split." if a_col == "cosine_interference" else "")})
        out += family_claims(items)
    return out


def summarise(df: pd.DataFrame, st: pd.DataFrame, ctx: JobContext) -> dict[str, Any]:
    data = load_dataset(ctx.args)
    cfg = schedule(ctx.args, ctx.level.name)
    regime = (f"Regime: {data.describe()}; CNNs of {', '.join(f'{d} conv layer(s) at {fs} filters' for d, fs in _archs(ctx.args))}, "
              f"3x3 'same' convolutions, ReLU, 2x2 max pooling, linear softmax head on the {'flattened maps' if ctx.args.head == 'flatten' else 'globally averaged maps'}; every conv layer expanded; Adam lr {cfg.lr}, "
              f"batch {cfg.batch_size}, {cfg.warmup} dense + {cfg.finetune} fine-tuning epochs; {ctx.args.trials} trials. "
              "The paper's CNN datasets are not bundled (nothing is downloaded).")
    inert = {}
    kids = df[~df.condition.isin(["dense", RESTART])]
    for (L, c, a), g in kids.groupby(["conv_layers", "condition", "alpha"]):
        inert[f"L{int(L)}-{c}-{int(a)}"] = float(1 - (g.active_filters / (g.filters * g.alpha)).mean())
    return {
        "dataset": {"name": _dataset_name(ctx.args), "id": dataset_id(ctx.args), "describe": data.describe()},
        "train": cfg.to_dict(), "archs": _archs(ctx.args), "alphas": _alphas(ctx.args), "splits": _splits(ctx.args),
        "budget_kept": bool(st.nnz_equal_parent.all()) if not st.empty else None,
        "inert_first_layer_filters": inert,
        "paper": paper_comparison(df, st, regime),
    }


def print_summary(summary: dict[str, Any], ctx: JobContext) -> list[str]:
    st = pd.DataFrame(summary["stats"])
    lines = [f"data: {summary['dataset']['describe']}; nnz kept exactly: {summary['budget_kept']}",
             f"{'L':>2} {'filters':>7} {'condition':<14}{'test accuracy':>18}{'rel. impr.':>12}{'p':>9}{'q':>9}{'vs restart q':>14}"]
    for r in st.to_dict("records"):
        lines.append(f"{r['conv_layers']:>2} {r['filters']:>7} {_label(r['condition'], r['alpha']):<14}{r['test_accuracy_mean']:>10.4f} ± {_n(r['test_accuracy_sem']):.4f}"
                     f"{100 * r['rel_improvement_mean']:>+11.2f}%{_p(r['rel_improvement_p']):>9}{_p(r.get('rel_improvement_q')):>9}"
                     f"{_p(r.get('vs_restart_q')):>14}" + ("  degenerate" if isinstance(r.get("degenerate"), str) else ""))
    lines.append("q: Benjamini-Hochberg over the widths, per depth, split and alpha")
    lines.append("paper comparison:")
    return lines + verdict_lines(summary["paper"])


def _n(v) -> float:
    return 0.0 if v is None or not np.isfinite(v) else float(v)


def _p(v) -> str:
    return "" if v is None or not np.isfinite(v) else f"{v:.2g}"


# --------------------------------------------------------------------------- figures


def _label(cond: str, alpha: int) -> str:
    return cond if cond in ("dense", RESTART) else f"{cond} α={int(alpha)}"


PANELS = (("rel_improvement", "relative improvement vs paired dense"), ("test_accuracy", "test accuracy"),
          ("acc_per_param", "test accuracy per non-zero parameter"), ("cosine_interference", "cosine interference, first-layer filters"),
          ("feature_capacity", "mean feature capacity, first-layer filters"))


def figure(st: pd.DataFrame, dataset: str, caption: str = "") -> go.Figure:
    """Rows: relative improvement (* q < 0.05: paired test vs dense, Benjamini–Hochberg
    over the widths), test
    accuracy, accuracy per parameter (log), cosine interference and feature
    capacity of the first-layer filters, against filters per layer before
    expansion; one column per conv depth."""
    depths = sorted(st.conv_layers.unique()) if not st.empty else [1]
    fig = make_subplots(rows=len(PANELS), cols=len(depths), shared_xaxes=True, vertical_spacing=0.05, horizontal_spacing=0.08,
                        subplot_titles=[f"{t} · {d} conv layer{'s' if d > 1 else ''}" for t, _ in [(p[1], 0) for p in PANELS] for d in depths])
    for c, d in enumerate(depths, start=1):
        sd = st[st.conv_layers == d]
        conds = [("dense", 1), (RESTART, 1)] + [(s, a) for L, s, a in _fpe(st) if L == d]
        for r, (metric, _) in enumerate(PANELS, start=1):
            for cond, a in conds:
                if metric == "rel_improvement" and cond == "dense":
                    continue
                g = sd[(sd.condition == cond) & (sd.alpha == a)].sort_values("filters")
                if g.empty:
                    continue
                text = significance_text(g.rel_improvement_q) if metric == "rel_improvement" else None
                fig.add_trace(go.Scatter(
                    x=g.filters, y=g[f"{metric}_mean"], error_y={"type": "data", "array": g[f"{metric}_sem"].fillna(0), "visible": True},
                    mode="lines+markers+text" if text else "lines+markers", text=text, textposition="top center",
                    textfont={"size": 18, "color": COLORS.get(cond, "#7f7f7f")},
                    name=_label(cond, a), legendgroup=_label(cond, a), showlegend=(r == 1 and c == 1) or (cond == "dense" and r == 2 and c == 1),
                    line={"color": COLORS.get(cond, "#7f7f7f"), "dash": {1: "dash", 2: "dot", 4: "solid"}.get(int(a), "dashdot")},
                    marker={"color": COLORS.get(cond, "#7f7f7f"), "symbol": "circle-open" if int(a) == 2 else "circle", "size": 7},
                ), row=r, col=c)
            fig.update_xaxes(type="log", tickvals=sorted(sd.filters.unique()) if not sd.empty else None, row=r, col=c)
        fig.add_hline(y=0, line={"color": "#999", "width": 1}, row=1, col=c)
        fig.update_yaxes(tickformat=".1%", row=1, col=c)
        fig.update_yaxes(type="log", row=3, col=c)
        fig.update_xaxes(title_text="filters per conv layer (before expansion)", row=len(PANELS), col=c)
    fig.update_layout(title=f"Conv FPE on {dataset}: filters split at a fixed non-zero parameter count", height=1500,
                      width=650 * len(depths) + 250, template="plotly_white")
    fig.update_layout(margin={"b": 140})
    fig.add_annotation(text=caption, xref="paper", yref="paper", x=0, y=0, yshift=-90, xanchor="left", yanchor="top",
                       showarrow=False, align="left", font={"size": 11, "color": "#555"})
    return fig


def figures(df: pd.DataFrame, st: pd.DataFrame, ctx: JobContext) -> dict[str, go.Figure]:
    return {"cnn_fpe": figure(st, f"{_dataset_name(ctx.args)}, {ctx.args.head} head", ctx.caption)}


def caption(ctx: JobContext) -> str:
    a = ctx.args
    data = load_dataset(a)
    t = schedule(a, ctx.level.name)
    return (f"cnn_fpe · level={ctx.level.name} · {data.describe()} · archs {_archs(a)} (conv layers, filters) · splits {a.splits}, "
            f"α {a.alphas} (+ α=1 restart) · trials={a.trials} (seeds {a.seed}..{a.seed + a.trials - 1})<br>"
            f"3x3 conv + ReLU + 2x2 max pool, linear softmax head ({a.head}); every conv layer expanded; Adam lr={t.lr}, batch {t.batch_size}, "
            f"{t.warmup} dense + {t.finetune} fine-tuning epochs (baseline {t.epochs}) · device={ctx.device.type} · ±1 s.e.m.; * q<0.05 (paired test vs dense, Benjamini-Hochberg over the widths)")


# --------------------------------------------------------------------------- the explorer's reader


@register_reader("cnn_fpe-job")
def read_entries(entries: list[Any]) -> Scanned:
    """One explorer run per child of a CNN trial (α=1: the restart control),
    beside the trial's parent and dense baseline (all stored in the job entry):
    first-layer filters as pictures per input channel, their Gram, capacity and
    interference, and the head's readout."""
    runs: list[ListedRun] = []
    for e in entries:
        cfg, rows = e.config, job_rows(e)
        acc = {(str(r["split"]), int(r["alpha"])): float(r["test_accuracy"]) for r in rows}
        dense_acc = acc.get(("none", 1), math.nan)
        parent_acc = float(rows[0].get("parent_test_accuracy", math.nan))
        source = cfg.get("data", {}).get("source", "")
        for split, alpha in cfg["expansions"]:
            split, alpha = str(split), int(alpha)
            what = "restart control (α=1)" if alpha == 1 else f"{split} split, α={alpha}"
            runs.append(ListedRun(
                id=f"{e.key}/{split}-{alpha}", task=f"{source} · {cfg['conv_layers']} conv, head {cfg.get('head')}",
                hidden=hidden_text([int(cfg["filters"])] * int(cfg["conv_layers"])), alpha=alpha,
                split=RESTART if alpha == 1 else split, trial=int(cfg["seed"]), epochs=epochs(cfg),
                child_accuracy=acc.get((split, alpha), math.nan), dense_accuracy=dense_acc,
                study="cnn_fpe", dataset=str(cfg["dataset"]).split("-")[0], architecture="cnn",
                refs=(("parent", ModelRef(e.key, "parent.", MODELS["parent"], parent_acc)),
                      ("child", ModelRef(e.key, f"{split}-{alpha}.", f"FPE child ({what}) after fine-tuning",
                                         acc.get((split, alpha), math.nan))),
                      ("dense", ModelRef(e.key, "dense.", MODELS["dense"], dense_acc))),
            ))
    return runs, []


STUDY = register(JobStudy.from_module(__name__, "cnn_fpe", cluster="workers"))
main = study_main(STUDY)

assert set(SPLITS) <= set(CONV_SPLITS)


if __name__ == "__main__":
    sys.exit(main())
