"""Real data: Fixed Parameter Expansion on digits or on embeddings you supply (paper Figure 5).

A dense one-hidden-layer softmax classifier is pre-trained, expanded by FPE
(random and Gram split, alpha 2 and 4; the non-zero parameter count is kept
exactly) and fine-tuned; its paired dense baseline trains the same total
number of epochs from the same initialisation. Per hidden width (before
expansion) the figure shows, like the paper's Figure 5, the relative
improvement in test accuracy of each FPE child over its paired baseline and
the test accuracy per non-zero parameter, with a control the paper does not
have: the parent "expanded" at alpha = 1 (an unchanged copy fine-tuned with a
fresh optimiser, as the children are), which separates the gain of the
expansion from that of restarting the optimiser.

Nothing is downloaded: the default data are scikit-learn's bundled 8x8 digits
(1347 train / 450 test images, 64 pixels, 10 classes). `--embeddings FILE.npz`
runs on features computed elsewhere (e.g. CLIP image embeddings) stored as
`X_train`, `y_train`, `X_test`, `y_test`; the file's name and a hash of its
contents go into every result's key, so a different file never reuses results.

    python -m analyses.real_data [--quick] [--out DIR] [--device auto|cpu|cuda]
                                 [--trials N] [--seed S] [--shard I/N] [--data DIR]
                                 [--embeddings FILE.npz | --split-seed S]
                                 [--widths 4,8,16] [--alphas 2,4] [--splits random,gram]
                                 [--warmup E] [--finetune E] [--batch-size B] [--lr LR]

Schedule on digits (default and --quick): Adam lr 0.01, batch 64 (21 steps
per epoch), 100 dense epochs, then 100 fine-tuning epochs (baseline: 200).
The paper pre-trains 20-25 epochs on FashionMNIST or CLIP embeddings of
50k-1.3M images, i.e. thousands of optimiser steps; 1347 digits need about
100 epochs (2,100 steps) for the same: by then every width >= 8 fits the
training set (train accuracy >= 99%) and its test accuracy has stopped moving,
while width 4 (4 neurons for 10 classes) is capacity-bound and creeps down
by about 0.02 nats per 50 epochs. On embeddings the default is the paper's
25 pre-training epochs, 25 fine-tuning epochs, batch 256, lr 0.001 (Adam's
default, usual for probes on CLIP features); override any of them.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from analyses import register
from analyses.entries import MODELS, ListedRun, ModelRef, Scanned, epochs, hidden_text, image_shape, job_rows, register_reader
from analyses.kinds import JobContext, JobStudy, chunked
from analyses.levels import schedule_from
from analyses.rows import model_columns, test_set_columns
from analyses.runner import study_main
from analyses.style import add_caption, add_metric_traces, label, style
from analyses.tables import (
    every_cell_claim,
    family_claims,
    largest_at,
    mark_cells,
    p_text,
    resolution_of,
    restart_reason,
    sig,
    verdict_lines,
)
from fci import stats
from fci.cli import add_config_arguments, check_alphas, comma_list
from fci.data import Dataset, DatasetSpec, digits, file_sha256, load_embeddings, load_once
from fci.metrics import relative_improvement, trial_stats
from fci.store import Store, config_key
from fci.train import SCHEDULE_VERSION, FPEResult, FPESpec, ModelResult, TrainConfig, entry_configs, run_fpe

D = TypeVar("D")  # a dataset type (checked_data)

__all__ = [
    "ALPHAS",
    "SCHEDULES",
    "SPLITS",
    "STUDY",
    "WIDTHS",
    "check_split_seed",
    "checked_data",
    "condition_name",
    "dataset_id",
    "dataset_spec",
    "expansions",
    "figure5",
    "file_sha256",
    "inert_children",
    "loss_figure",
    "main",
    "model_rows",
    "paper_comparison",
    "schedule",
    "stats_table",
]

log = logging.getLogger(__name__)

WIDTHS: dict[str, tuple[int, ...]] = {"full": (4, 8, 16, 32, 64), "quick": (4, 8, 16, 32, 64), "tiny": (4, 8)}
"""Hidden widths before expansion, per run level (--widths overrides)."""

ALPHAS: dict[str, tuple[int, ...]] = {"full": (2, 4), "quick": (2, 4), "tiny": (2,)}
"""Expansion factors per run level (--alphas overrides)."""

SPLITS: tuple[str, ...] = ("random", "gram")
"""The splits for data without known clauses (--splits overrides)."""

SCHEDULES: dict[str, TrainConfig] = {
    # 1347 digits: ~2,100 steps per phase (see the module docstring); quick runs
    # the same schedule on fewer trials, so a default run reuses its models.
    "digits": TrainConfig(lr=0.01, batch_size=64, warmup=100, finetune=100),
    # embeddings of tens of thousands of images and more: the paper's 25 epochs.
    "embeddings": TrainConfig(lr=0.001, batch_size=256, warmup=25, finetune=25),
    # the tests: seconds.
    "tiny": TrainConfig(lr=0.02, batch_size=128, warmup=3, finetune=3),
}
"""Default training schedules: per data source, and one for --tiny."""

RESTART = "restart"
"""Condition name of the alpha = 1 control: the parent copied unchanged and
fine-tuned with a fresh optimiser, exactly as the FPE children are."""

RESTART_STYLE = {"color": "#9467bd", "dash": "dash"}  # the control stands apart from dense (black) and the splits
MAX_TRIALS_PER_CALL = 256  # trials per run_fpe call: the unit of a job entry's resume (models resume one by one)
CONDITION_ORDER = {"dense": 0, RESTART: 1, "random": 2, "gram": 3, "clause": 4}
METRICS = ("test_accuracy", "train_accuracy", "acc_per_param", "test_loss", "train_loss_final", "train_loss_late_drop",
           "train_loss_late_drop_rel", "nnz", "active_neurons", "dead_units")


# --------------------------------------------------------------------------- data and its identity


@functools.lru_cache(maxsize=4)
def _digits(split_seed: int) -> Dataset:
    return digits(seed=split_seed)


def dataset_spec(args: argparse.Namespace) -> DatasetSpec:
    """The run's data as a spec: the embeddings file if given, else digits split
    with `--split-seed` (the spec every study uses for digits with that seed).
    Raises ValueError naming a missing file."""
    if args.embeddings:
        path = os.path.realpath(args.embeddings)
        if not os.path.isfile(path):
            raise ValueError(f"--embeddings: no such file {args.embeddings!r}")
        return DatasetSpec.embeddings(path)
    return DatasetSpec.digits(seed=args.split_seed)


def load_dataset(args: argparse.Namespace) -> Dataset:
    """The run's dataset (`dataset_spec(args).build()`). Raises ValueError (from
    `fci.data.load_embeddings`) naming a missing file or a missing or malformed key."""
    spec = dataset_spec(args)
    if spec.kind == "embeddings":
        return load_once(load_embeddings, spec.options["path"])
    return _digits(args.split_seed)


def dataset_id(args: argparse.Namespace) -> dict[str, Any]:
    """What identifies the data in every job's key: digits and its split seed, or
    the embeddings file's name and the sha256 of its contents."""
    if args.embeddings:
        return {"source": "embeddings", "file": os.path.basename(args.embeddings),
                "sha256": file_sha256(args.embeddings), "standardize": True}
    return {"source": "sklearn-digits", "split_seed": args.split_seed, "test_fraction": 0.25}


def _dataset_name(args: argparse.Namespace) -> str:
    d = dataset_id(args)
    if d["source"] == "embeddings":
        return f"embeddings-{os.path.splitext(d['file'])[0]}-{d['sha256'][:8]}"
    return f"digits-split{d['split_seed']}"


def schedule(args: argparse.Namespace, level: str) -> TrainConfig:
    """The training schedule: the level's (tiny) or the data source's default,
    with --warmup/--finetune/--batch-size/--lr applied. Raises ValueError naming
    a bad value."""
    return schedule_from(SCHEDULES["tiny" if level == "tiny" else "embeddings" if args.embeddings else "digits"], args)


def expansions(splits: Sequence[str], alphas: Sequence[int]) -> list[tuple[str, int]]:
    """The (split, alpha) children of every trial, plus the alpha = 1 restart control."""
    return [("random", 1)] + [(s, int(a)) for a in alphas for s in splits]


def condition_name(split: str, alpha: int) -> str:
    """'restart' for the alpha = 1 control, else the split's name."""
    return RESTART if int(alpha) == 1 else split


# --------------------------------------------------------------------------- options


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("data")
    g.add_argument("--embeddings", default=None, metavar="FILE.npz",
                   help="features computed elsewhere (e.g. CLIP image embeddings): an .npz holding X_train, y_train, "
                        "X_test, y_test (labels: any integers or strings); standardised with the training split's "
                        "mean and s.d. (default: scikit-learn's bundled digits)")
    g.add_argument("--split-seed", type=int, default=None,
                   help="seed of the stratified 75/25 train/test split of digits (default: 0; digits only)")
    g = ap.add_argument_group("sweep")
    g.add_argument("--widths", default=None,
                   help=f"hidden widths before expansion, comma-separated (default: {','.join(map(str, WIDTHS['full']))})")
    g.add_argument("--alphas", default=None,
                   help=f"expansion factors >= 2 (default: {','.join(map(str, ALPHAS['full']))}); an alpha = 1 "
                        "restart control always runs")
    g.add_argument("--splits", default=None, help=f"FPE splits, comma-separated from random, gram (default: {','.join(SPLITS)})")
    d, e = SCHEDULES["digits"], SCHEDULES["embeddings"]
    add_config_arguments(ap, TrainConfig, "schedule", fields=("warmup", "finetune", "batch_size", "lr"),
                         note={f: f"digits {getattr(d, f):g}, embeddings {getattr(e, f):g}"
                               for f in ("warmup", "finetune", "batch_size", "lr")})


def validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check every study option, and read the embeddings file, before any work."""
    level = "tiny" if args.tiny else "quick" if args.quick else "full"
    check_split_seed(ap, args, "--embeddings")
    args.widths = ",".join(map(str, comma_list(ap, "--widths", args.widths, kind=int, low=1) if args.widths else WIDTHS[level]))
    args.alphas = ",".join(map(str, comma_list(ap, "--alphas", args.alphas, kind=int, low=2) if args.alphas else ALPHAS[level]))
    # the given order is kept (no choices=): it orders the job key's "expansions"
    splits = comma_list(ap, "--splits", args.splits, kind=str) if args.splits else SPLITS
    if any(s not in SPLITS for s in splits):
        ap.error(f"--splits takes distinct names from {list(SPLITS)} (the clause split needs clauses, which real data "
                 f"do not have), got {args.splits!r}")
    args.splits = ",".join(splits)
    data = checked_data(ap, args, level, schedule, load_dataset)
    check_alphas(ap, "--alphas", _alphas(args), data.n_in, data.name)
    if data.loss != "ce":  # pragma: no cover - both sources are multi-class
        ap.error(f"{data.name}: this study trains multi-class softmax classifiers, got loss {data.loss!r}")


def check_split_seed(ap: argparse.ArgumentParser, args: argparse.Namespace, file_flag: str) -> None:
    """--split-seed splits digits only (a file given with `file_flag` brings its own
    split); without a file it defaults to 0."""
    given = getattr(args, file_flag.removeprefix("--").replace("-", "_"))
    if given is not None and args.split_seed is not None:
        ap.error(f"--split-seed splits digits; an {file_flag} file brings its own train/test split")
    if given is None and args.split_seed is None:
        args.split_seed = 0


def checked_data(ap: argparse.ArgumentParser, args: argparse.Namespace, level: str,
                 schedule: Callable[[argparse.Namespace, str], TrainConfig], load: Callable[[argparse.Namespace], D]) -> D:
    """The run's schedule checked, then its data read: a bad value exits in one line
    (a schedule's prefixed "schedule: ")."""
    try:
        schedule(args, level)
    except ValueError as e:
        ap.error(f"schedule: {e}")
    try:
        return load(args)
    except ValueError as e:
        ap.error(str(e))


def _widths(args) -> list[int]:
    return [int(v) for v in args.widths.split(",")]


def _alphas(args) -> list[int]:
    return [int(v) for v in args.alphas.split(",")]


def _splits(args) -> list[str]:
    return args.splits.split(",")


# --------------------------------------------------------------------------- jobs


def jobs(ctx: JobContext) -> list[dict[str, Any]]:
    """One job per (hidden width, trial): its dense parent, paired baseline and
    every child. The key holds the dataset's identity, width, seed, schedule and
    the children trained."""
    args = ctx.args
    base = {
        "dataset": _dataset_name(args),
        "data": dataset_id(args),
        "train": schedule(args, ctx.level.name).to_dict(),
        "expansions": [list(e) for e in expansions(_splits(args), _alphas(args))],
    }
    out = [{**base, "hidden": h, "seed": args.seed + t, "schedule": SCHEDULE_VERSION} for h in _widths(args)
           for t in range(args.trials)]
    ctx.cache["jobs"] = out
    return out


def model_rows(result: FPEResult, x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None) -> list[dict[str, Any]]:
    """One results row per model of a trial: the paired dense baseline
    (condition 'dense', alpha 1), the restart control and each FPE child.

    Columns: condition, split, alpha, neurons (hidden units after expansion),
    active_neurons (units with a non-zero incoming mask), parent_nnz,
    parent_test_accuracy (the parent at expansion), and the columns every
    trained model has (`analyses.rows.model_columns`: test_accuracy,
    train_loss_final, train_loss_late_drop, converged, nnz, dead_units on
    `x_test`, ...), and with `y_test` (the test labels) the test set's base_rate
    and accuracy_resolution; meanings in `analyses.columns.COLUMNS`."""
    h = result.hidden if isinstance(result.hidden, int) else result.hidden[0]
    parent_nnz = result.parent.model.nnz()
    models: list[tuple[str, str, int, ModelResult]] = [("dense", "none", 1, result.dense)]
    models += [(condition_name(s, a), s, a, mr) for (s, a), mr in result.children.items()]
    rows = []
    test_set = test_set_columns(y_test, "ce") if y_test is not None else {}
    for cond, split, alpha, mr in models:
        rows.append({
            "condition": cond, "split": split, "alpha": int(alpha), "neurons": h * int(alpha),
            "active_neurons": int((mr.model.weight_mask(0).sum(1) > 0).sum()),
            **model_columns(mr, x_test), **test_set,
            "parent_nnz": parent_nnz, "parent_test_accuracy": result.parent.test_accuracy,
        })
    return rows


def _tensors(result: FPEResult) -> dict[str, torch.Tensor]:
    """Every model's weights and masks (prefixed parent., dense., <split>-<alpha>.)
    and train-loss curves (loss.<prefix>), for reopening without this code."""
    out: dict[str, torch.Tensor] = {}
    named = [("parent", result.parent), ("dense", result.dense)]
    named += [(f"{s}-{a}", mr) for (s, a), mr in result.children.items()]
    for prefix, mr in named:
        out.update({f"{prefix}.{k}": v for k, v in mr.model.tensors().items()})
        if prefix != "parent":
            out[f"loss.{prefix}"] = torch.tensor(mr.train_loss, dtype=torch.float32)
    return out


def run_jobs(todo: list[dict[str, Any]], ctx: JobContext) -> Iterable[tuple[dict[str, Any], list[dict[str, Any]], dict[str, torch.Tensor]]]:
    """Train the jobs' trials with `fci.train.run_fpe` on the run's `DatasetSpec`:
    every width and seed that share a schedule in one call (stacked, narrower
    models padded). The models go to the store under their FPE keys, so another
    study training the same spec, widths, seeds and schedule loads them."""
    spec = dataset_spec(ctx.args)
    data = spec.build()
    x_test, y_test = data.x_test, data.y_test
    groups: dict[str, list[dict[str, Any]]] = {}
    for j in todo:
        groups.setdefault(json.dumps([j["train"], j["expansions"]], sort_keys=True), []).append(j)
    for group in groups.values():
        cfg = TrainConfig.from_dict(group[0]["train"])
        exps = tuple((str(s), int(a)) for s, a in group[0]["expansions"])
        for chunk in chunked(group, MAX_TRIALS_PER_CALL):
            specs = [FPESpec(data=spec, hidden=j["hidden"], seed=j["seed"], expansions=exps, train=cfg) for j in chunk]
            results = run_fpe(specs, device=ctx.device, progress=ctx.level.name != "tiny", store=ctx.store,
                              executor=ctx.executor)
            for j, r in zip(chunk, results):
                keys = {cond: config_key(c) for cond, c in entry_configs(r.spec).items()}  # the models' own entries
                order = [keys[("dense", 1)]] + [keys[cond] for cond in r.children]  # model_rows' row order
                yield j, [{**row, "store_key": k} for row, k in zip(model_rows(r, x_test, y_test), order)], _tensors(r)


# --------------------------------------------------------------------------- statistics


def _order(df: pd.DataFrame) -> pd.DataFrame:
    o = df.condition.map(CONDITION_ORDER).fillna(len(CONDITION_ORDER))
    return df.assign(_o=o).sort_values(["dataset", "hidden", "_o", "alpha"]).drop(columns="_o").reset_index(drop=True)


def stats_table(df: pd.DataFrame, restart: str | None = None) -> pd.DataFrame:
    """Per (dataset, hidden, condition, alpha): mean, s.e.m. and n over trials of
    every metric in METRICS, and against the paired dense baseline of the same
    (dataset, hidden, seed): the relative improvement (mean, s.e.m. over trials;
    `fci.metrics.relative_improvement`) and the paired test of accuracy
    (`fci.stats.paired_test`, guarded by the accuracy's resolution:
    `rel_improvement_p`, `rel_improvement_test`; NaN for dense itself), its
    Benjamini–Hochberg q over the widths (`rel_improvement_q`, `family_size`, per
    dataset, condition and alpha), and the cells that cannot be tested
    (`degenerate`, `not_applicable`: see `analyses.tables.mark_cells`)."""
    if df.empty:
        return pd.DataFrame()
    keys = ["dataset", "hidden", "seed"]
    dense = df[df.condition == "dense"].set_index(keys)
    if dense.index.has_duplicates:
        raise ValueError("results hold two dense baselines for one (dataset, hidden, seed)")
    res = resolution_of(df)
    rows = []
    for (ds, h, cond, alpha), g in df.groupby(["dataset", "hidden", "condition", "alpha"], sort=False):
        idx = pd.MultiIndex.from_frame(g[keys])
        missing = idx.difference(dense.index)
        if len(missing):
            raise ValueError(f"{len(missing)} {cond} α={alpha} models have no paired dense baseline, e.g. {missing[0]}")
        base = dense.loc[idx]
        acc, acc0 = g.test_accuracy.to_numpy(float), base.test_accuracy.to_numpy(float)
        row: dict[str, Any] = {"dataset": ds, "hidden": int(h), "condition": cond, "alpha": int(alpha),
                               "neurons": int(g.neurons.iloc[0]), "n": len(g)}
        for m in METRICS:
            st = trial_stats(g[m].to_numpy(float))
            row[f"{m}_mean"], row[f"{m}_sem"] = st["mean"], st["sem"]
        rel = trial_stats(relative_improvement(acc, acc0))
        row["rel_improvement_mean"], row["rel_improvement_sem"] = rel["mean"], rel["sem"]
        row["test_accuracy_diff_mean"] = float(np.mean(acc - acc0))
        if cond != "dense":
            t = stats.paired_test(acc, acc0, resolution=res)
            row.update(rel_improvement_p=math.nan if t.p is None else t.p, rel_improvement_test=t.test,
                       rel_improvement_reason=t.reason)
        else:
            row.update(rel_improvement_p=math.nan, rel_improvement_test=None, rel_improvement_reason=None)
        row["nnz_equal_parent"] = bool((g.nnz.to_numpy() == g.parent_nnz.to_numpy()).all())
        rows.append(row)
    st = pd.DataFrame(rows)
    child = st.condition != "dense"
    marked = mark_cells(st[child], df, ["dataset", "hidden"], p="rel_improvement_p", family=["dataset", "condition", "alpha"],
                        restart=restart, q="rel_improvement_q")
    return _order(pd.concat([st[~child], marked], ignore_index=True))


def stats_hook(df: pd.DataFrame, ctx: JobContext) -> pd.DataFrame:
    return stats_table(df, restart_reason(schedule(ctx.args, ctx.level.name)))


# --------------------------------------------------------------------------- the paper


def _fpe_conditions(st: pd.DataFrame) -> list[tuple[str, int]]:
    c = st[~st.condition.isin(["dense", RESTART])]
    return sorted({(s, int(a)) for s, a in zip(c.condition, c.alpha)}, key=lambda t: (t[1], CONDITION_ORDER.get(t[0], 9)))


def _paired_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Every model row with its paired dense baseline's accuracy and accuracy per
    parameter (`dense_test_accuracy`, `dense_acc_per_param`) and the relative improvement."""
    keys = ["dataset", "hidden", "seed"]
    dense = df[df.condition == "dense"][keys + ["test_accuracy", "acc_per_param"]].rename(
        columns={"test_accuracy": "dense_test_accuracy", "acc_per_param": "dense_acc_per_param"})
    out = df.merge(dense, on=keys, how="inner")
    return out.assign(rel_improvement=relative_improvement(out.test_accuracy.to_numpy(float),
                                                           out.dense_test_accuracy.to_numpy(float)))


def paper_comparison(df: pd.DataFrame, st: pd.DataFrame, dataset_note: str) -> list[dict[str, Any]]:
    """The paper's Figure 5 claims, each decided by a test in `fci.stats` over this
    run's trials (`df`: the results table; `st`: `stats_table`'s output):

    - FPE 'consistently increases accuracy': in every width, the paired test of
      accuracy against dense, Benjamini–Hochberg over the widths
      (`analyses.tables.every_cell_claim`), per split and alpha;
    - the gain is largest for the narrowest network: Page's trend test of the
      per-trial relative improvement over the widths (decreasing; where it breaks);
    - accuracy per parameter is higher for FPE at every width, and falls with
      width for every condition (trend test)."""
    out: list[dict[str, Any]] = []
    conds = _fpe_conditions(st)
    if not conds:
        return out
    pf = _paired_frame(df)
    res = resolution_of(df)
    restart = st[st.condition == RESTART].sort_values("hidden")
    control = {int(h): round(100 * float(r), 2) for h, r in zip(restart.hidden, restart.rel_improvement_mean)}
    dense = st[st.condition == "dense"].sort_values("hidden")
    dense_train = {int(h): round(float(a), 4) for h, a in zip(dense.hidden, dense.train_accuracy_mean)}
    for s, a in conds:
        g = pf[(pf.condition == s) & (pf.alpha == a)].sort_values(["hidden", "seed"])
        cells = {f"width {int(h)}": stats.paired_test(gg.test_accuracy, gg.dense_test_accuracy, resolution=res)
                 for h, gg in g.groupby("hidden", sort=True)}
        row = st[(st.condition == s) & (st.alpha == a)].sort_values("hidden")
        pooled = stats.pooled_paired_test(g.test_accuracy, g.dense_test_accuracy, unit=g.seed, resolution=res)
        out.append(every_cell_claim(
            f"Figure 5 / abstract: widening by FPE at a constant non-zero parameter count consistently increases accuracy "
            f"on real data: relative improvement over the paired dense baseline > 0 at every hidden width ({s} split, α={a})",
            cells, "greater", condition=s, expansion_alpha=a,
            measured={"rel_improvement_pct_by_width": {int(h): round(100 * float(r), 2) for h, r in zip(row.hidden, row.rel_improvement_mean)},
                      "q_by_width": {int(h): sig(q) for h, q in zip(row.hidden, row.rel_improvement_q)},
                      "degenerate_widths": [int(h) for h, d in zip(row.hidden, row.degenerate) if isinstance(d, str)],
                      "pooled_over_widths": {"mean_diff": sig(pooled.mean_diff), "p": sig(pooled.p), "test": pooled.test},
                      "restart_control_pct_by_width": control, "dense_train_accuracy_by_width": dense_train},
            note=f"{dataset_note} Agrees when every width gains at q < 0.05 (Benjamini-Hochberg over the widths), "
                 "disagrees when some width loses at q < 0.05. The alpha = 1 restart control (not in the paper) separates "
                 "the expansion's effect from restarting the optimiser; dense_train_accuracy_by_width shows where the dense "
                 "baseline already fits the training set."))
    items = []
    for s, a in conds:
        g = pf[(pf.condition == s) & (pf.alpha == a)]
        if g.hidden.nunique() < 2:
            continue
        values, levels = stats.trial_matrix(g, level="hidden", value="rel_improvement", unit="seed")
        t = stats.trend_test(values, levels, alternative="decreasing", nan_policy="omit")
        b = t.first_break()
        items.append({"claim": "Abstract / Figure 3 (and the width axis of Figure 5): the benefit of FPE grows with "
                               f"interference, i.e. it is largest for the narrowest networks ({s} split, α={a})",
                      "result": t, "expect": "decreasing", "condition": s, "expansion_alpha": a,
                      "measured": {"widths": list(levels), "rel_improvement_pct": [round(100 * m, 2) for m in t.means],
                                   "largest_at": largest_at(levels, t.means), "breaks_after": None if b is None else b.earlier,
                                   "breaks_to": None if b is None else b.later},
                      "note": "Page's L test of each trial's relative improvement over the widths (trials as the unit); a "
                              "wider network significantly above a narrower one breaks the trend. q: Benjamini-Hochberg "
                              "over the splits and alphas."})
    out += family_claims(items)
    for s, a in conds:
        g = pf[(pf.condition == s) & (pf.alpha == a)]
        cells = {f"width {int(h)}": stats.paired_test(gg.acc_per_param, gg.dense_acc_per_param)
                 for h, gg in g.groupby("hidden", sort=True)}
        out.append(every_cell_claim(
            "Figure 5, second row: test accuracy per non-zero parameter is higher for FPE than for the dense model of the "
            f"same (pre-expansion) width, at every width ({s} split, α={a})", cells, "greater", condition=s, expansion_alpha=a,
            measured={int(h): {"fpe": sig(gg.acc_per_param.mean(), 4), "dense": sig(gg.dense_acc_per_param.mean(), 4)}
                      for h, gg in g.groupby("hidden", sort=True)},
            note="FPE keeps nnz exactly (nnz_equal_parent in stats.csv), so this restates the accuracy comparison divided "
                 "by the shared budget."))
    items = []
    for cond, a in [("dense", 1)] + conds:
        g = pf[(pf.condition == cond) & (pf.alpha == a)]
        if g.hidden.nunique() < 2:
            continue
        values, levels = stats.trial_matrix(g, level="hidden", value="acc_per_param", unit="seed")
        t = stats.trend_test(values, levels, alternative="decreasing", nan_policy="omit")
        items.append({"claim": f"Figure 5, second row: test accuracy per non-zero parameter falls with width ({label(cond, a)})",
                      "result": t, "expect": "decreasing", "condition": cond, "expansion_alpha": a,
                      "measured": {"widths": list(levels), "acc_per_param": [sig(m, 4) for m in t.means]},
                      "note": "Page's L test over the widths, trials as the unit. q: Benjamini-Hochberg over the conditions."})
    return out + family_claims(items)


def summarise(df: pd.DataFrame, st: pd.DataFrame, ctx: JobContext) -> dict[str, Any]:
    data = load_dataset(ctx.args)
    cfg = schedule(ctx.args, ctx.level.name)
    note = (f"Our data: {data.describe()} (the paper's datasets are not bundled; nothing is downloaded); "
            f"{ctx.args.trials} trials per width.")
    conv = {}
    if not df.empty:
        for (cond, a), g in df.groupby(["condition", "alpha"]):
            conv[f"{cond}-{int(a)}"] = {
                "train_loss_final_by_width": {int(h): float(v) for h, v in g.groupby("hidden").train_loss_final.mean().items()},
                "late_drop_by_width": {int(h): float(v) for h, v in g.groupby("hidden").train_loss_late_drop_rel.mean().items()},
                "converged_fraction_by_width": {int(h): float(v) for h, v in g.groupby("hidden").converged.mean().items()},
                "train_accuracy_by_width": {int(h): float(v) for h, v in g.groupby("hidden").train_accuracy.mean().items()},
            }
    return {
        "dataset": {"name": _dataset_name(ctx.args), "id": dataset_id(ctx.args), "describe": data.describe(),
                    "info": {k: v for k, v in data.info.items() if k != "classes"}},
        "train": cfg.to_dict(),
        "widths": _widths(ctx.args), "alphas": _alphas(ctx.args), "splits": _splits(ctx.args),
        "budget_kept": bool(st.nnz_equal_parent.all()) if not st.empty else None,
        "convergence": {"late_drop": "relative fall of the mean train loss from the second-to-last to the last 10% of a "
                                    "model's epochs (fci.metrics.late_drop); converged: fci.metrics.is_flat", **conv},
        "inert_children": inert_children(df),
        "paper": paper_comparison(df, st, note),
    }


def inert_children(df: pd.DataFrame) -> dict[str, Any]:
    """How many of each split's children are inert (no incoming weight left:
    an empty group, or all its weights pruned by the budget), and for each pair
    of alphas of one split the trials whose larger-alpha child has exactly the
    active neurons and test accuracy of the smaller one (the extra children
    are all inert, e.g. when the Gram clustering finds only 2 pseudo-features)."""
    out: dict[str, Any] = {}
    kids = df[~df.condition.isin(["dense", RESTART])]
    for (cond, a), g in kids.groupby(["condition", "alpha"]):
        out[f"{cond}-{int(a)}"] = {"inert_fraction": float(1 - (g.active_neurons / g.neurons).mean())}
    for cond, g in kids.groupby("condition"):
        alphas = sorted(int(a) for a in g.alpha.unique())
        piv = g.pivot_table(index=["dataset", "hidden", "seed"], columns="alpha", values=["active_neurons", "test_accuracy"])
        for i, lo in enumerate(alphas):
            for hi in alphas[i + 1:]:
                same = (piv["active_neurons"][lo] == piv["active_neurons"][hi]) & (piv["test_accuracy"][lo] == piv["test_accuracy"][hi])
                out[f"{cond}-{hi}-equals-{cond}-{lo}"] = {"trials": int(same.sum()), "of": len(same)}
    return out


def print_summary(summary: dict[str, Any], ctx: JobContext) -> list[str]:
    st = pd.DataFrame(summary["stats"])
    t = summary["train"]
    lines = [f"data: {summary['dataset']['describe']}",
             (f"schedule: {t['warmup']} dense + {t['finetune']} fine-tuning epochs, batch {t['batch_size']}, lr {t['lr']}; "
              f"nnz kept exactly: {summary['budget_kept']}"),
             f"{'width':>6} {'condition':<12}{'test accuracy':>20}{'rel. improvement':>22}{'p':>9}{'q':>9}{'train loss':>12}"]
    for r in st.to_dict("records"):
        p, q = r["rel_improvement_p"], r.get("rel_improvement_q")
        flag = "  degenerate" if isinstance(r.get("degenerate"), str) else "  n/a" if isinstance(r.get("not_applicable"), str) else ""
        lines.append(f"{r['hidden']:>6} {label(r['condition'], r['alpha']):<12}{r['test_accuracy_mean']:>11.4f} ± {_f(r['test_accuracy_sem'])}"
                     f"{100 * r['rel_improvement_mean']:>+13.2f}% ± {100 * _n(r['rel_improvement_sem']):.2f}%"
                     f"{p_text(p):>9}{p_text(q):>9}{r['train_loss_final_mean']:>12.4f}{flag}")
    lines.append("q: Benjamini-Hochberg over the widths, per split and alpha")
    for k, v in summary.get("inert_children", {}).items():
        if "-equals-" in k and v["trials"]:
            lines.append(f"note: {k.replace('-equals-', ' = ')} (same active neurons and accuracy) in {v['trials']} of {v['of']} trials")
    lines.append("paper comparison:")
    return lines + verdict_lines(summary["paper"])


def _n(v) -> float:
    return 0.0 if v is None or not np.isfinite(v) else float(v)


def _f(v) -> str:
    return f"{_n(v):.4f}"


# --------------------------------------------------------------------------- figures


def _axis(values) -> dict[str, Any]:
    v = sorted({int(x) for x in values})
    return {"type": "log", "tickvals": v, "ticktext": [str(x) for x in v]}


def _log_ticks(values) -> dict[str, Any]:
    """Explicit 1-2-5 ticks for a log axis over the finite positive `values`
    (plotly's own labels a short range with bare mantissa digits)."""
    v = np.asarray([x for x in np.asarray(values, float).ravel() if np.isfinite(x) and x > 0])
    if v.size == 0:
        return {"type": "log"}
    lo, hi = math.floor(math.log10(v.min())), math.ceil(math.log10(v.max()))
    ticks = [m * 10.0**e for e in range(lo, hi + 1) for m in (1, 2, 5) if v.min() / 2 <= m * 10.0**e <= v.max() * 2]
    return {"type": "log", "tickvals": ticks, "ticktext": [f"{t:.3g}" for t in ticks]}


def figure5(st: pd.DataFrame, dataset: str, caption: str = "") -> go.Figure:
    """The paper's Figure 5 for one dataset, plus two panels of evidence.

    Left column (Figure 5): relative improvement in test accuracy over the paired
    dense baseline (row 1; * q < 0.05: paired test, Benjamini–Hochberg over the
    widths) and test accuracy per
    non-zero parameter (row 2, log scale) against the hidden width before
    expansion. Right column: the raw test accuracy (row 1) and the final train
    loss (row 2, log scale; shows which widths fit the training set)."""
    fig = make_subplots(rows=2, cols=2, shared_xaxes=True, vertical_spacing=0.09, horizontal_spacing=0.09,
                        subplot_titles=["relative improvement vs paired dense", "test accuracy",
                                        "test accuracy per non-zero parameter", "final train loss (mean over epoch)"])
    if not st.empty:
        children = [(RESTART, 1)] + _fpe_conditions(st)
        everyone = [("dense", 1)] + children
        add_metric_traces(fig, st, "hidden", "rel_improvement", row=1, col=1, p="rel_improvement_q", conditions=children)
        add_metric_traces(fig, st, "hidden", "acc_per_param", row=2, col=1, conditions=everyone, showlegend=False)
        add_metric_traces(fig, st, "hidden", "test_accuracy", row=1, col=2, conditions=everyone, showlegend=True)
        add_metric_traces(fig, st, "hidden", "train_loss_final", row=2, col=2, conditions=everyone, showlegend=False)
        _restyle_restart(fig)
        # one legend entry per condition: drop the duplicates of the second panel that shows it
        seen = set()
        for tr in fig.data:
            if tr.showlegend is not False:
                tr.showlegend = tr.name not in seen
                seen.add(tr.name)
        fig.add_hline(y=0, line={"color": "#999", "width": 1}, row=1, col=1)
        for r in (1, 2):
            for c in (1, 2):
                fig.update_xaxes(**_axis(st.hidden), row=r, col=c)
    fig.update_yaxes(tickformat=".1%", row=1, col=1)
    if not st.empty:
        fig.update_yaxes(**_log_ticks(st.acc_per_param_mean), row=2, col=1)
        fig.update_yaxes(**_log_ticks(st.train_loss_final_mean), row=2, col=2)
    fig.update_xaxes(title_text="hidden neurons (before expansion)", row=2)
    fig.update_layout(title=f"FPE on real data ({dataset}): relative improvement and accuracy per parameter vs width "
                            "(cf. paper Fig. 5)", height=820, width=1300, template="plotly_white")
    return add_caption(fig, caption)


def _restyle_restart(fig: go.Figure) -> None:
    for tr in fig.data:
        if tr.name == label(RESTART, 1):
            tr.update(line=RESTART_STYLE)
            if tr.mode and "markers" in tr.mode:
                tr.update(marker={"color": RESTART_STYLE["color"]}, textfont={"color": RESTART_STYLE["color"]})


def loss_figure(curves: pd.DataFrame, caption: str = "", warmup: int | None = None) -> go.Figure:
    """Mean train loss per epoch (log scale), one panel per hidden width, one
    line per condition; children start after the `warmup` dense epochs.
    curves: columns hidden, condition, alpha, epoch, loss (mean over trials)."""
    widths = sorted(curves.hidden.unique()) if not curves.empty else []
    cols = max(1, min(3, len(widths)))
    rows = max(1, math.ceil(len(widths) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"width {h}" for h in widths], vertical_spacing=0.12,
                        horizontal_spacing=0.07)
    for i, h in enumerate(widths):
        g = curves[curves.hidden == h]
        for (cond, a), gg in sorted(g.groupby(["condition", "alpha"]), key=lambda t: (CONDITION_ORDER.get(t[0][0], 9), t[0][1])):
            gg = gg.sort_values("epoch")
            fig.add_trace(go.Scatter(x=gg.epoch, y=gg.loss, mode="lines", name=label(cond, a), legendgroup=label(cond, a),
                                     showlegend=i == 0, line=style(cond, a)["line"]), row=i // cols + 1, col=i % cols + 1)
        if warmup:
            fig.add_vline(x=warmup, line={"color": "#bbb", "dash": "dot", "width": 1}, row=i // cols + 1, col=i % cols + 1)
    _restyle_restart(fig)
    fig.update_yaxes(type="log")
    fig.update_xaxes(title_text="epoch", row=rows)
    fig.update_yaxes(title_text="train loss (cross-entropy)", col=1)
    fig.update_layout(title="Train loss per epoch (mean over trials): dense baseline from epoch 1, children after expansion",
                      height=300 * rows + 170, width=1300, template="plotly_white")
    return add_caption(fig, caption)


def _curves(ctx: JobContext) -> pd.DataFrame:
    """Mean train-loss curves from the stored tensors of this run's jobs."""
    store = Store(ctx.args.data)
    acc: dict[tuple[int, str, int], list[np.ndarray]] = {}
    warm: dict[int, int] = {}
    for job in ctx.cache.get("jobs", []):
        tensors = store.load(config_key(STUDY.job_config(job))).tensors
        w = job["train"]["warmup"]
        for name, t in tensors.items():
            if not name.startswith("loss."):
                continue
            prefix = name[len("loss."):]
            split, alpha = ("dense", 1) if prefix == "dense" else (prefix.rsplit("-", 1)[0], int(prefix.rsplit("-", 1)[1]))
            acc.setdefault((job["hidden"], condition_name(split, alpha) if split != "dense" else "dense", alpha), []).append(t.numpy())
            warm[job["hidden"]] = w
    rows = []
    for (h, cond, a), curves in acc.items():
        n = min(len(c) for c in curves)
        mean = np.mean([c[:n] for c in curves], 0)
        start = 0 if cond == "dense" else warm[h]
        rows += [{"hidden": h, "condition": cond, "alpha": a, "epoch": start + e + 1, "loss": float(v)} for e, v in enumerate(mean)]
    return pd.DataFrame(rows)


def figures(df: pd.DataFrame, st: pd.DataFrame, ctx: JobContext) -> dict[str, go.Figure]:
    cfg = schedule(ctx.args, ctx.level.name)
    return {"real_data": figure5(st, _dataset_name(ctx.args), ctx.caption),
            "real_data_loss": loss_figure(_curves(ctx), ctx.caption, warmup=cfg.warmup)}


def caption(ctx: JobContext) -> str:
    a = ctx.args
    data = load_dataset(a)
    t = schedule(a, ctx.level.name)
    src = f"embeddings {os.path.basename(a.embeddings)} (sha256 {dataset_id(a)['sha256'][:12]}…, standardised)" if a.embeddings \
        else f"sklearn digits, stratified split seed {a.split_seed}"
    return (f"real_data · level={ctx.level.name} · {src}: {data.n_train} train / {data.n_test} test, {data.n_in} inputs, "
            f"{data.n_out} classes · widths {a.widths} · splits {a.splits}, α {a.alphas} (+ α=1 restart control) · "
            f"trials={a.trials} (seeds {a.seed}..{a.seed + a.trials - 1})<br>"
            f"softmax MLP, Adam lr={t.lr}, batch {t.batch_size}, {t.warmup} dense pre-training + {t.finetune} fine-tuning "
            f"epochs (dense baseline {t.epochs}) · device={ctx.device.type} · error bars: ±1 s.e.m.; "
            f"* q<0.05 (paired test vs dense, Benjamini-Hochberg over the widths)")


# --------------------------------------------------------------------------- the explorer's reader


def _data_text(cfg: dict[str, Any]) -> str:
    d = cfg.get("data", {})
    if "source" in d:
        return f"({d['source']}, test {d.get('test_fraction', '?')})"
    return ""


@register_reader("real_data-job")
def read_entries(entries: list[Any]) -> Scanned:
    """One explorer run per FPE child of a real-data trial (α=1: the restart control),
    beside the trial's parent and dense baseline (all stored in the job entry)."""
    runs: list[ListedRun] = []
    for e in entries:
        cfg, rows = e.config, job_rows(e)
        acc = {(r["split"], int(r["alpha"])): float(r["test_accuracy"]) for r in rows}
        parent_acc = float(rows[0].get("parent_test_accuracy", math.nan))
        dense_acc = acc.get(("none", 1), math.nan)
        dataset = str(cfg["dataset"])
        for split, alpha in cfg["expansions"]:
            alpha = int(alpha)
            what = "restart control (α=1)" if alpha == 1 else f"{split} split, α={alpha}"
            runs.append(ListedRun(
                id=f"{e.key}/{split}-{alpha}", task=f"{dataset} {_data_text(cfg)}", hidden=hidden_text(cfg["hidden"]),
                alpha=alpha, split=RESTART if alpha == 1 else str(split), trial=int(cfg["seed"]),
                epochs=epochs(cfg), child_accuracy=acc.get((split, alpha), math.nan), dense_accuracy=dense_acc,
                study="real_data", dataset=dataset.split("-")[0], image_shape=image_shape(dataset),
                refs=(("parent", ModelRef(e.key, "parent.", MODELS["parent"], parent_acc)),
                      ("child", ModelRef(e.key, f"{split}-{alpha}.", f"FPE child ({what}) after fine-tuning",
                                         acc.get((split, alpha), math.nan))),
                      ("dense", ModelRef(e.key, "dense.", MODELS["dense"], dense_acc))),
            ))
    return runs, []


STUDY = register(JobStudy.from_module(
    __name__, "real_data",
    cluster="driver",  # every model trains through run_fpe (an embeddings file is sent to the workers)
))
main = study_main(STUDY)


if __name__ == "__main__":
    sys.exit(main())
