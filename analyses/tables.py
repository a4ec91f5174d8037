"""Per-condition tables over trials: means, standard errors and paired comparisons with
the dense baseline of the same trial (stats.csv, summary.json), pooled comparisons,
the mean loss curves and the convergence record.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from analyses.levels import CONFIG_KEYS, GROUP_KEYS
from analyses.rows import model_conditions, trial_width
from fci.io import jsonable
from fci.metrics import (
    LATE_WINDOW,
    fold_change,
    is_flat,
    late_drop,
    paired_ttest,
    relative_improvement,
    trial_stats,
)
from fci.train import FPEResult

__all__ = ["BASE_METRICS", "FOLD_METRICS", "condition_stats", "paired_rows", "pooled_stats", "loss_curves", "convergence"]


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
        for cond, alpha, mr in model_conditions(res):
            key = (t.n_clauses, t.clause_size, trial_width(res.spec), cond, int(alpha))
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
