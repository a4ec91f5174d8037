"""Structured sparsity: does FPE's gain survive N:M masks and dynamic prune-and-regrow?

On the Boolean task (8 clauses x 3 literals, disjoint layout, balanced
planting; dense parent of 8 neurons) every trial's parent trains the dense
warm-up; it is expanded at alpha 2 and 4 by the clause and the random split,
plainly (`fci.fpe.expand`) and with 2:4 first-layer child masks
(`fci.fpe.expand_nm`); a copy of the random child fine-tunes with
RigL-style prune-and-regrow of its first layer (`fci.sparsity.fit_dynamic`).
Everything is compared with the paired dense baseline at the SAME non-zero
count: per trial and alpha the target is the smallest count any condition
reaches (the dense budget, or less where the N:M pattern removes more than
FPE's excess), and every other model, the dense baseline included, is pruned
to it by global magnitude at the expansion epoch (biases count, are not
pruned); the run asserts equal nnz. Accuracy mean +/- s.e.m. over trials, paired
t-tests against dense (and N:M / dynamic against plain FPE of the same split).
A dense row carries the alpha of the comparison it belongs to (its target).

    python -m analyses.structured_sparsity [--quick] [--out DIR] [--device auto|cpu|cuda]
                                           [--trials N] [--seed S] [--shard I/N] [--data DIR]
                                           [--nm N:M] [--alphas 2,4] [--every K] [--fraction F]
                                           [task options] [training options]

The task options (--vars --layout --outputs --p --negation-prob --train-samples)
and training options (--optimizer --lr --momentum --weight-decay --batch-size
--warmup --finetune) of `python -m fci` set the regime of every job (the
study's 8 clauses x 3 literals stay; the regrow gradient batch is the batch size).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from analyses import register
from analyses.entries import MODELS, ListedRun, ModelRef, Scanned, epochs, hidden_text, job_rows, register_reader, task_label
from analyses.kinds import JobContext, JobStudy, chunked, regime_caption
from analyses.levels import Level, level_task, regime_level
from analyses.rows import measure_columns, test_set_columns
from analyses.runner import study_main
from analyses.style import add_caption
from analyses.tables import family_claims, p_text, resolution_of, verdict_lines
from fci import stats
from fci.cli import check_alphas, comma_list
from fci.data import boolean
from fci.fpe.mlp import expand
from fci.fpe.nm import expand_nm, nm_violations, parse_nm, sibling_overlap
from fci.metrics import (
    clause_mean_capacity,
    cosine_interference,
    feature_capacity,
    relative_improvement,
    trial_stats,
)
from fci.models.mlp import MaskedMLP, MaskedMLPStack
from fci.seeding import derive_seed
from fci.sparsity.magnitude import prune_stack_to_nnz, prune_to_nnz
from fci.sparsity.regrow import DynamicSparsity, fit_dynamic
from fci.tasks import TaskConfig
from fci.train import TrainConfig, evaluate, fit

__all__ = ["STUDY", "main", "CONDITIONS", "train_jobs", "condition_stats", "check_equal_nnz",
           "accuracy_figure", "curve_figure"]

N_CLAUSES, CLAUSE_SIZE, HIDDEN = 8, 3, 8
SPLITS = ("clause", "random")
CHILD_CONDITIONS = ("clause", "random", "clause_nm", "random_nm", "random_dynamic")
CONDITIONS = ("dense", *CHILD_CONDITIONS)
PLAIN = {"clause_nm": "clause", "random_nm": "random", "random_dynamic": "random"}
EVERY = {"full": 10, "quick": 5, "tiny": 1}  # default epochs between prune-and-regrow rounds
COLORS = {"dense": "#222222", "clause": "#1f77b4", "random": "#ff7f0e", "clause_nm": "#6baed6",
          "random_nm": "#fdae6b", "random_dynamic": "#2ca02c"}
SYMBOLS = {"dense": "circle", "clause": "circle", "random": "circle", "clause_nm": "square", "random_nm": "square",
           "random_dynamic": "diamond"}


def label(condition: str, nm: str = "2:4") -> str:
    return {"dense": "dense", "clause": "FPE clause", "random": "FPE random", "clause_nm": f"FPE clause {nm}",
            "random_nm": f"FPE random {nm}", "random_dynamic": "FPE random + regrow"}.get(condition, condition)


# --------------------------------------------------------------------------- options and jobs


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("structured sparsity")
    g.add_argument("--nm", default="2:4", help="N:M pattern of the children's first layer, N < M (default: 2:4)")
    g.add_argument("--alphas", default="2,4", metavar="A,...", help="comma-separated expansion factors, each >= 2 (default: 2,4)")
    g.add_argument("--every", type=int, default=None,
                   help=f"fine-tuning epochs between prune-and-regrow rounds (default: {EVERY['full']}; --quick: {EVERY['quick']})")
    g.add_argument("--fraction", type=float, default=0.3,
                   help="fraction of active first-layer weights dropped and regrown per round, before cosine decay, in (0, 1) (default: 0.3)")


def validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    try:
        parse_nm(args.nm)
    except ValueError as e:
        ap.error(f"--nm: {e}")
    args.alphas = list(comma_list(ap, "--alphas", args.alphas, kind=int, low=2))
    check_alphas(ap, "--alphas", args.alphas, max(args.vars or 0, N_CLAUSES * CLAUSE_SIZE), "the headline task")
    if args.every is not None and args.every < 1:
        ap.error(f"--every must be >= 1 (epochs), got {args.every}")
    if not 0 < args.fraction < 1:
        ap.error(f"--fraction must lie in (0, 1), got {args.fraction}")
    finetune = regime_level(ap, args).train.finetune
    if args.every is not None and args.every >= finetune:
        ap.error(f"--every {args.every} leaves no prune-and-regrow round in {finetune} fine-tuning epochs")


def boolean_task(args: argparse.Namespace, level: Level) -> TaskConfig:
    """The study's task family at a level (the regime's task options applied)."""
    return level_task(level, n_clauses=N_CLAUSES, clause_size=CLAUSE_SIZE)


def _dynamic(ctx: JobContext) -> DynamicSparsity:
    t = ctx.level.train
    every = ctx.args.every or EVERY[ctx.level.name]
    return DynamicSparsity(every=every, fraction=ctx.args.fraction, grad_batch=t.batch_size)


def jobs(ctx: JobContext) -> list[dict[str, Any]]:
    """One job per (alpha, trial): a dense parent, its baseline and five children."""
    lv, a = ctx.level, ctx.args
    task = boolean_task(a, lv)
    dyn = _dynamic(ctx)
    return [
        {"n_clauses": N_CLAUSES, "clause_size": CLAUSE_SIZE, "hidden": HIDDEN, "alpha": int(alpha), "seed": a.seed + t,
         "nm": a.nm, "task": task.to_dict(), "train": lv.train.to_dict(), "dynamic": dyn.to_dict()}
        for alpha in sorted(set(a.alphas)) for t in range(a.trials)
    ]


def caption(ctx: JobContext) -> str:
    lv, a = ctx.level, ctx.args
    t, d = lv.train, _dynamic(ctx)
    return (f"structured_sparsity · level={lv.name} · trials={a.trials} (seeds {a.seed}..{a.seed + a.trials - 1}) · "
            f"{N_CLAUSES} clauses x {CLAUSE_SIZE} literals · {HIDDEN} neurons · {lv.n_test} test samples · "
            f"device={ctx.device.type}<br>{regime_caption(ctx)} ({t.warmup} warm-up + {t.finetune} fine-tuning)<br>"
            f"{a.nm}: first-layer child masks, largest |w| per group kept · regrow: every {d.every} epochs drop "
            f"{d.fraction:g} of layer-0 weights (cosine decay, none after {d.stop:g} of fine-tuning), regrow the "
            f"largest |grad| on {d.grad_batch} samples<br>"
            f"equal nnz: every model of a trial pruned by magnitude to the smallest count any condition reaches · "
            f"error bars ±1 s.e.m. over trials · * q<0.05, paired test vs dense (Benjamini-Hochberg over the comparisons)")


# --------------------------------------------------------------------------- training


def _group_key(job: dict[str, Any]) -> str:
    return json.dumps([job["task"], job["train"], job["hidden"], job["nm"], job["dynamic"]], sort_keys=True)


def run_jobs(todo: list[dict[str, Any]], ctx: JobContext):
    groups: dict[str, list[dict[str, Any]]] = {}
    for j in todo:
        groups.setdefault(_group_key(j), []).append(j)
    for group in groups.values():
        for batch in chunked(group, 64):
            for job, (rows, tensors) in zip(batch, train_jobs(batch, ctx.device)):
                yield job, rows, tensors


def _model_measures(model: MaskedMLP, clauses, n_keep: int, group: int) -> dict[str, float]:
    W1 = model.effective_weights()[0][0]
    return {
        "feature_capacity": float(clause_mean_capacity(feature_capacity(W1), clauses)),
        "cosine_interference": float(cosine_interference(W1)),
        "nm_violations": nm_violations(model.weight_mask(0), n_keep, group),
        "sibling_overlap": sibling_overlap(model),
    }


def _backend(state: Any) -> str | None:
    """The training backend recorded by `fit` in its optimiser state (None when not recorded)."""
    return getattr(state, "provenance", {}).get("backend")


def train_jobs(jobs: Sequence[dict[str, Any]], device: torch.device) -> list[tuple[list[dict[str, Any]], dict[str, torch.Tensor]]]:
    """Train a batch of jobs (same task sizes, schedule, pattern and dynamic
    schedule): all dense models in one stack, all children in another.
    Returns (rows, tensors) per job, in order."""
    jobs = list(jobs)
    if len({_group_key(j) for j in jobs}) != 1:
        raise ValueError("train_jobs: a batch must share task sizes, schedule, hidden width, N:M pattern and dynamic schedule")
    cfg = TrainConfig.from_dict(jobs[0]["train"])
    dyn = DynamicSparsity.from_dict(jobs[0]["dynamic"])
    n_keep, group = parse_nm(jobs[0]["nm"])
    datas = [boolean(TaskConfig.from_dict(j["task"]), derive_seed(j["seed"], "task")) for j in jobs]
    xtr, ytr, xte, yte = (torch.stack([getattr(d, k) for d in datas]).to(device) for k in ("x_train", "y_train", "x_test", "y_test"))
    finetune = range(cfg.warmup, cfg.epochs)

    # Dense warm-up: one copy per job (alpha 2 and 4 of a seed train identically).
    dense = MaskedMLPStack.from_models([MaskedMLP(d.n_in, j["hidden"], d.n_out, seed=derive_seed(j["seed"], "init"))
                                        for j, d in zip(jobs, datas)]).to(device)
    opt, warm_losses = fit(dense, xtr, ytr, cfg, range(cfg.warmup))  # (M, warmup)
    parents = dense.to_models()

    # Children, and the common non-zero target of each job.
    order: list[tuple[int, str]] = []
    children: list[MaskedMLP] = []
    info: list[dict[str, Any]] = []
    for i, (j, p, d) in enumerate(zip(jobs, parents, datas)):
        a, clauses = j["alpha"], d.info["clauses"]
        seeds = {sp: derive_seed(j["seed"], "split", sp, a) for sp in SPLITS}
        models = {sp: expand(p, a, sp, clauses=clauses, seed=seeds[sp]) for sp in SPLITS}
        models.update({f"{sp}_nm": expand_nm(p, a, sp, n_keep, group, clauses=clauses, seed=seeds[sp]) for sp in SPLITS})
        budget = p.nnz()
        natural = {"dense": budget, **{c: m.nnz() for c, m in models.items()}}
        target = min(natural.values())
        models = {c: (prune_to_nnz(m, target) if m.nnz() > target else m) for c, m in models.items()}
        models["random_dynamic"] = models["random"].copy()
        natural["random_dynamic"] = natural["random"]
        info.append({"budget": budget, "target": target, "natural": natural,
                     "nm_removed": {f"{sp}_nm": int(models[f"{sp}_nm"].expansion_info["nm_removed"]) for sp in SPLITS}})
        for c in CHILD_CONDITIONS:
            order.append((i, c))
            children.append(models[c])
    pruned = prune_stack_to_nnz(dense, [inf["target"] for inf in info])

    rows_of = [i for i, _ in order]
    idx = torch.tensor(rows_of, device=device)
    cdata = tuple(t.index_select(0, idx) for t in (xtr, ytr, xte, yte))
    cstack = MaskedMLPStack.from_models(children).to(device)
    start_masks = cstack.weight_mask(0).clone()
    dyn_models = [k for k, (_, c) in enumerate(order) if c == "random_dynamic"]
    cres = fit_dynamic(cstack, cdata[0], cdata[1], cfg, finetune, dyn, models=dyn_models,
                       eval_data=(cdata[2], cdata[3]), eval_every=dyn.every)
    dres = fit_dynamic(dense, xtr, ytr, cfg, finetune, None, optimizer=opt, eval_data=(xte, yte), eval_every=dyn.every)

    def finals(stack, data):
        tr, te = evaluate(stack, data[0], data[1]), evaluate(stack, data[2], data[3])
        return tr["accuracy"], te["accuracy"], te["loss"]

    d_tr, d_te, d_loss = finals(dense, (xtr, ytr, xte, yte))
    c_tr, c_te, c_loss = finals(cstack, cdata)
    swapped = sum((r["swapped"][0] for r in cres.rounds), torch.zeros(len(order), dtype=torch.int64))
    changed = ((cstack.weight_mask(0) != 0) & (start_masks == 0)).flatten(1).sum(1).cpu()
    start_active = (start_masks != 0).flatten(1).sum(1).cpu()

    dense_models, child_models = dense.to_models(), cstack.to_models()
    out = []
    for i, j in enumerate(jobs):
        inf, clauses = info[i], datas[i].info["clauses"]
        # (condition, model, train acc, test acc, test loss, train losses, pruned, index in cstack or None, curve)
        entries: list[tuple[str, MaskedMLP, Any, Any, Any, Any, int, int | None, list[tuple[int, Any]]]] = [
            ("dense", dense_models[i], d_tr[i], d_te[i], d_loss[i], torch.cat([warm_losses[i].cpu(), dres.losses[i]]),
             int(pruned[i]), None, [(o, a[i]) for o, a in dres.curve])]
        for k, (ji, c) in enumerate(order):
            if ji == i:
                entries.append((c, child_models[k], c_tr[k], c_te[k], c_loss[k], cres.losses[k], inf["natural"][c] - inf["target"],
                                k, [(o, a[k]) for o, a in cres.curve]))
        rows, tensors = [], {f"parent.{n}": t for n, t in parents[i].tensors().items()}
        for c, m, tr, te, loss, train_loss, n_pruned, stack_k, curve in entries:
            split = m.nnz_split()
            if split["total"] != inf["target"]:  # the study's invariant: every condition at the same nnz
                raise AssertionError(f"seed {j['seed']} alpha {j['alpha']}: {c} has nnz {split['total']}, "
                                     f"expected the common target {inf['target']}")
            dynamic = c == "random_dynamic"
            rows.append({
                "record": "model", "condition": c, "width": m.hidden[0],
                **measure_columns(m, test_accuracy=float(te), train_accuracy=float(tr), test_loss=float(loss),
                                  train_loss=train_loss.tolist(), x_test=datas[i].x_test,
                                  backend=_backend(dres.optimizer if c == "dense" else cres.optimizer)),
                **test_set_columns(datas[i].y_test, datas[i].loss),
                "budget": inf["budget"], "target_nnz": inf["target"], "natural_nnz": inf["natural"][c],
                "pruned_to_target": n_pruned, "nm_removed": inf["nm_removed"].get(c, 0),
                "rounds": len(cres.rounds) if dynamic else 0,
                "swapped": int(swapped[stack_k]) if dynamic else 0,
                "mask_changed": float(changed[stack_k] / start_active[stack_k]) if dynamic else 0.0,
                **_model_measures(m, clauses, n_keep, group),
            })
            rows += [{"record": "curve", "condition": c, "epoch": int(o), "test_accuracy": float(acc)} for o, acc in curve]
            tensors.update({f"{c}.{n}": t for n, t in m.tensors().items()})
        out.append((rows, tensors))
    return out


# --------------------------------------------------------------------------- statistics


def check_equal_nnz(df: pd.DataFrame) -> None:
    """Raise unless every condition of a (seed, alpha) has the same nnz."""
    m = df[df.record == "model"]
    bad = m.groupby(["seed", "alpha"]).nnz.nunique()
    bad = bad[bad != 1]
    if len(bad):
        raise AssertionError(f"unequal nnz within (seed, alpha) {list(bad.index)[:5]}: the comparison would not be at a fixed budget")


def condition_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per (alpha, condition): accuracy mean/s.e.m. over trials, relative
    improvement and the paired test of accuracy against the dense baseline of the
    same (seed, alpha) (`fci.stats.paired_test`, guarded by the accuracy's
    resolution: `p_vs_dense`, `test_vs_dense`), and N:M / dynamic against plain FPE
    of the same split (`p_vs_plain`); each with its Benjamini–Hochberg q over every
    comparison of its kind in the table (`q_vs_dense`, `q_vs_plain`)."""
    check_equal_nnz(df)
    m = df[df.record == "model"]
    res = resolution_of(m)
    out = []
    for alpha, ga in m.groupby("alpha"):
        piv = ga.pivot(index="seed", columns="condition", values="test_accuracy")
        for c in [c for c in CONDITIONS if c in piv.columns]:
            g = ga[ga.condition == c]
            acc = piv[c].dropna()
            s = trial_stats(acc)
            row = {"alpha": int(alpha), "condition": c, "n": s["n"], "test_accuracy_mean": s["mean"], "test_accuracy_sem": s["sem"],
                   "test_accuracy_std": s["std"], "nnz_mean": float(g.nnz.mean()), "budget_mean": float(g.budget.mean()),
                   "nnz_fraction_of_budget": float((g.nnz / g.budget).mean())}
            if c != "dense" and "dense" in piv:
                pair = piv[[c, "dense"]].dropna()
                t = stats.paired_test(pair[c], pair["dense"], resolution=res)
                ri = trial_stats(relative_improvement(pair[c].to_numpy(), pair["dense"].to_numpy()))
                row.update({"diff_vs_dense": t.mean_diff, "p_vs_dense": _nan(t.p), "test_vs_dense": t.test,
                            "rel_improvement_mean": ri["mean"], "rel_improvement_sem": ri["sem"]})
            if c in PLAIN and PLAIN[c] in piv:
                pair = piv[[c, PLAIN[c]]].dropna()
                t = stats.paired_test(pair[c], pair[PLAIN[c]], resolution=res)
                row.update({"vs_plain": PLAIN[c], "diff_vs_plain": t.mean_diff, "p_vs_plain": _nan(t.p)})
            for k in ("feature_capacity", "cosine_interference", "sibling_overlap", "nm_violations", "mask_changed", "nm_removed",
                      "pruned_to_target", "train_loss_final", "dead_units"):
                v = g[k].to_numpy(dtype=float)
                row[f"{k}_mean"] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
            out.append(row)
    st = pd.DataFrame(out)
    for col in ("p_vs_dense", "p_vs_plain"):
        if col in st.columns:
            st = stats.add_fdr(st, p=col, q=col.replace("p_", "q_"), size=col.replace("p_", "family_size_"))
    return st


def _nan(p: float | None) -> float:
    return math.nan if p is None else float(p)


def stats_hook(df: pd.DataFrame, ctx: JobContext) -> pd.DataFrame:
    return condition_stats(df)


# --------------------------------------------------------------------------- figures


def _star(p) -> str:
    return "*" if p is not None and np.isfinite(p) and p < 0.05 else ""


def accuracy_figure(st: pd.DataFrame, nm: str = "2:4", caption: str = "") -> go.Figure:
    """Test accuracy (mean ± s.e.m.) per condition, one panel per alpha, at the
    trial's common nnz; '*' where the paired test against dense has q < 0.05
    (Benjamini–Hochberg over the table's comparisons with dense);
    the dashed line is the dense mean."""
    alphas = sorted(st.alpha.unique()) if len(st) else []
    titles = [f"α={a} · nnz {st[st.alpha == a].nnz_mean.iloc[0]:.0f} (budget {st[st.alpha == a].budget_mean.iloc[0]:.0f})"
              for a in alphas]
    fig = make_subplots(rows=1, cols=max(1, len(alphas)), shared_yaxes=True, subplot_titles=titles or None,
                        horizontal_spacing=0.05)
    for col, a in enumerate(alphas, start=1):
        g = st[st.alpha == a].set_index("condition")
        conds = [c for c in CONDITIONS if c in g.index]
        for c in conds:
            r = g.loc[c]
            sem = 0.0 if pd.isna(r.test_accuracy_sem) else float(r.test_accuracy_sem)
            fig.add_trace(go.Scatter(x=[label(c, nm)], y=[r.test_accuracy_mean + sem], mode="text", text=[_star(r.get("q_vs_dense"))],
                                     textposition="top center", textfont={"size": 20, "color": COLORS[c]}, showlegend=False,
                                     hoverinfo="skip"), row=1, col=col)
            fig.add_trace(go.Scatter(
                x=[label(c, nm)], y=[r.test_accuracy_mean], error_y={"type": "data", "array": [sem]},
                mode="markers", marker={"color": COLORS[c], "symbol": SYMBOLS[c], "size": 12},
                name=label(c, nm), showlegend=False,
                hovertemplate=(f"{label(c, nm)} α={a}<br>accuracy %{{y:.4f}} ± {r.test_accuracy_sem:.4f}"
                               f"<br>Δ vs dense {r.get('diff_vs_dense', 0):+.4f}<extra></extra>")), row=1, col=col)
        if "dense" in g.index:
            fig.add_hline(y=g.loc["dense"].test_accuracy_mean, line={"color": COLORS["dense"], "dash": "dash", "width": 1}, row=1, col=col)
    if len(st):  # head room for the stars above the error bars
        sem = st.test_accuracy_sem.fillna(0)
        lo, hi = float((st.test_accuracy_mean - sem).min()), float((st.test_accuracy_mean + sem).max())
        fig.update_yaxes(range=[lo - 0.1 * (hi - lo) - 0.005, hi + 0.15 * (hi - lo) + 0.01])
    fig.update_yaxes(title_text="test accuracy", row=1, col=1)
    fig.update_layout(title=f"FPE with {nm} child masks and with prune-and-regrow, at the same non-zero count as dense",
                      template="plotly_white", height=620, width=1250)
    fig.update_xaxes(tickangle=-30)
    return add_caption(fig, caption, height_px=110)


def curve_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Mean ± s.e.m. test accuracy over fine-tuning epochs per (alpha, condition)."""
    c = df[df.record == "curve"]
    rows = []
    for (a, cond, e), g in c.groupby(["alpha", "condition", "epoch"]):
        s = trial_stats(g.test_accuracy)
        rows.append({"alpha": int(a), "condition": cond, "epoch": int(e), "mean": s["mean"], "sem": s["sem"]})
    return pd.DataFrame(rows)


def curve_figure(df: pd.DataFrame, rounds: Sequence[int] = (), nm: str = "2:4", caption: str = "") -> go.Figure:
    """Test accuracy over fine-tuning (epoch 0 = right after expansion and pruning
    to the common nnz), mean ± s.e.m. per condition, one panel per alpha; dotted
    lines mark the prune-and-regrow rounds (accuracy is taken before each round)."""
    cs = curve_stats(df)
    alphas = sorted(cs.alpha.unique()) if len(cs) else []
    fig = make_subplots(rows=1, cols=max(1, len(alphas)), shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=[f"α={a}" for a in alphas] or None)
    for col, a in enumerate(alphas, start=1):
        for c in CONDITIONS:
            g = cs[(cs.alpha == a) & (cs.condition == c)].sort_values("epoch")
            if g.empty:
                continue
            fig.add_trace(go.Scatter(x=g.epoch, y=g["mean"], error_y={"type": "data", "array": g["sem"].fillna(0), "thickness": 1},
                                     mode="lines+markers", name=label(c, nm), legendgroup=c, showlegend=col == 1,
                                     line={"color": COLORS[c], "dash": "dot" if c.endswith("_nm") else "solid"},
                                     marker={"color": COLORS[c], "symbol": SYMBOLS[c], "size": 6}), row=1, col=col)
        for r in rounds:
            fig.add_vline(x=r, line={"color": "#2ca02c", "dash": "dot", "width": 1}, opacity=0.35, row=1, col=col)
        fig.update_xaxes(title_text="fine-tuning epoch", row=1, col=col)
    fig.update_yaxes(title_text="test accuracy", row=1, col=1)
    fig.update_layout(title="Test accuracy during fine-tuning (green dotted: prune-and-regrow rounds of 'FPE random + regrow')",
                      template="plotly_white", height=580, width=1350)
    return add_caption(fig, caption, height_px=70)


def figures(df: pd.DataFrame, st: pd.DataFrame, ctx: JobContext) -> dict[str, go.Figure]:
    t = ctx.level.train
    rounds = [o for o, _ in _dynamic(ctx).rounds(t.finetune)]
    return {"structured_sparsity": accuracy_figure(st, ctx.args.nm, ctx.caption),
            "finetune_curves": curve_figure(df, rounds, ctx.args.nm, ctx.caption)}


# --------------------------------------------------------------------------- summary


def _fmt(r: pd.Series) -> str:
    return (f"acc {r.test_accuracy_mean:.4f} ± {r.test_accuracy_sem:.4f} vs dense {r.test_accuracy_mean - r.diff_vs_dense:.4f} "
            f"(Δ {r.diff_vs_dense:+.4f}, p={p_text(r.p_vs_dense, 3)}, q={p_text(r.q_vs_dense, 3)}, n={r.n})")


def summarise(df: pd.DataFrame, st: pd.DataFrame, ctx: JobContext) -> dict[str, Any]:
    """The headline table and the paper's claims, each decided by the paired test of
    accuracy against dense at equal nnz (`fci.stats.paired_test`), Benjamini–Hochberg
    over every (alpha, condition) claim of the run."""
    nm = ctx.args.nm
    headline, items = [], []
    m = df[df.record == "model"]
    res = resolution_of(m)
    for a in sorted(st.alpha.unique()):
        g = st[st.alpha == a].set_index("condition")
        piv = m[m.alpha == a].pivot(index="seed", columns="condition", values="test_accuracy")
        nnz = f"nnz {g.loc['dense'].nnz_mean:.1f} of budget {g.loc['dense'].budget_mean:.0f}"
        for c in CHILD_CONDITIONS:
            if c not in g.index:
                continue
            r = g.loc[c]
            headline.append({"alpha": int(a), "condition": c, "test_accuracy_mean": r.test_accuracy_mean, "test_accuracy_sem": r.test_accuracy_sem,
                             "dense_mean": r.test_accuracy_mean - r.diff_vs_dense, "diff_vs_dense": r.diff_vs_dense,
                             "p_vs_dense": r.p_vs_dense, "q_vs_dense": r.q_vs_dense, "diff_vs_plain": r.get("diff_vs_plain"),
                             "p_vs_plain": r.get("p_vs_plain"), "q_vs_plain": r.get("q_vs_plain"),
                             "nnz_mean": r.nnz_mean, "budget_mean": r.budget_mean})
        for c, text in (
            ("random", ("Random splits of neuron weights approximate the gains of clause-aligned FPE: random-split FPE beats "
                        "dense at the same non-zero count (abstract; Fig. 3, 8 clauses, 8 neurons)")),
            ("clause", ("Clause-aligned FPE yields higher task accuracy than dense at the same non-zero count "
                        "(abstract; Fig. 3, 8 clauses, 8 neurons)")),
            ("random_nm", (f"FPE is compatible with structured sparsity (TL;DR; the seed text gives no numbers): random-split "
                           f"FPE with {nm} child masks keeps a gain over dense")),
            ("clause_nm", (f"FPE is compatible with structured sparsity (TL;DR): clause-split FPE with {nm} child masks "
                           f"keeps its gain over dense")),
            ("random_dynamic", ("FPE is compatible with dynamic pruning (TL;DR; the seed text gives no numbers): random-split "
                                "FPE with prune-and-regrow during fine-tuning keeps a gain over dense")),
        ):
            if c not in g.index or "dense" not in piv:
                continue
            r = g.loc[c]
            pair = piv[[c, "dense"]].dropna()
            note = f"alpha={a}; {nnz} (every model of a trial pruned to the smallest count any condition reaches)"
            if c in PLAIN:
                base = g.loc[PLAIN[c]] if PLAIN[c] in g.index else None
                note += f"; vs plain {PLAIN[c]} FPE: Δ {r.diff_vs_plain:+.4f} (p={p_text(r.p_vs_plain, 3)})"
                if base is not None:
                    note += f", and plain {PLAIN[c]} FPE itself vs dense: Δ {base.diff_vs_dense:+.4f} (p={p_text(base.p_vs_dense, 3)})"
            if c.endswith("_nm"):
                note += f"; {r.nm_removed_mean:.1f} weights removed by the pattern on average"
            if c == "random_dynamic":
                note += (f"; {100 * r.mask_changed_mean:.1f}% of first-layer positions moved, sibling input overlap "
                         f"{r.sibling_overlap_mean:.3f} (0 after plain FPE)")
            items.append({"claim": f"{text} (α={a})", "result": stats.paired_test(pair[c], pair["dense"], resolution=res),
                          "expect": "greater", "condition": c, "expansion_alpha": int(a), "measured": f"alpha={a}: {_fmt(r)}",
                          "note": note + ". q: Benjamini-Hochberg over every claim of this run."})
    return {"structured": {"nm": nm, "dynamic": _dynamic(ctx).to_dict(), "headline": headline}, "paper": family_claims(items)}


def print_summary(summary: dict[str, Any], ctx: JobContext) -> list[str]:
    nm = summary["structured"]["nm"]
    lines = ["accuracy at equal nnz (mean ± s.e.m.; Δ, p and q: paired vs dense, Benjamini-Hochberg over the table; "
             "vs plain: N:M / regrow against plain FPE):"]
    for h in summary["structured"]["headline"]:
        extra = "" if h["diff_vs_plain"] is None or (isinstance(h["diff_vs_plain"], float) and math.isnan(h["diff_vs_plain"])) else \
            f"  vs plain Δ {h['diff_vs_plain']:+.4f} (p={p_text(h['p_vs_plain'], 3)}, q={p_text(h.get('q_vs_plain'), 3)})"
        lines.append(f"  α={h['alpha']} {label(h['condition'], nm):<22} {h['test_accuracy_mean']:.4f} ± {h['test_accuracy_sem']:.4f}  "
                     f"dense {h['dense_mean']:.4f}  Δ {h['diff_vs_dense']:+.4f} p={p_text(h['p_vs_dense'], 3)} "
                     f"q={p_text(h.get('q_vs_dense'), 3)}  nnz {h['nnz_mean']:.1f}/{h['budget_mean']:.0f}{extra}")
    lines.append("paper comparison:")
    return lines + verdict_lines(summary["paper"])


# --------------------------------------------------------------------------- the explorer's reader

_TITLES = {"clause": "clause-split child", "random": "random-split child",
           "clause_nm": "clause-split child, N:M mask", "random_nm": "random-split child, N:M mask",
           "random_dynamic": "random-split child, prune-and-regrow mask"}


@register_reader("structured_sparsity-job")
def read_entries(entries: list[Any]) -> Scanned:
    """One explorer run per child condition of a job (all at one nnz), beside the
    parent and the dense baseline pruned to the same nnz."""
    runs: list[ListedRun] = []
    for e in entries:
        cfg = e.config
        models = {r["condition"]: r for r in job_rows(e) if r.get("record") == "model"}
        dense_acc = float(models.get("dense", {}).get("test_accuracy", math.nan))
        alpha = int(cfg["alpha"])
        for cond, title in _TITLES.items():
            if cond not in models:
                continue
            nm = f" ({cfg['nm']})" if cond.endswith("_nm") else ""
            acc = float(models[cond]["test_accuracy"])
            runs.append(ListedRun(
                id=f"{e.key}/{cond}", task=task_label(cfg["task"]), hidden=hidden_text(cfg["hidden"]), alpha=alpha,
                split=cond, trial=int(cfg["seed"]), epochs=epochs(cfg), child_accuracy=acc,
                dense_accuracy=dense_acc, study="structured_sparsity", dataset="boolean",
                task_config=json.dumps(cfg["task"], sort_keys=True), n_clauses=int(cfg["task"].get("n_clauses", 0)),
                refs=(("parent", ModelRef(e.key, "parent.", MODELS["parent"], math.nan)),
                      ("child", ModelRef(e.key, f"{cond}.", f"{title}{nm}, α={alpha}, after fine-tuning", acc)),
                      ("dense", ModelRef(e.key, "dense.", "Dense baseline pruned to the same nnz", dense_acc))),
            ))
    return runs, []


STUDY = register(JobStudy.from_module(
    __name__, "structured_sparsity",
    regime_scope="every job (the study trains the Boolean task only; the regrow gradient batch is --batch-size)",
    cluster="workers",  # a job's data is its own Boolean task, built from the job
))
main = study_main(STUDY)


if __name__ == "__main__":
    sys.exit(main())
