"""Per-condition tables over trials: means, standard errors and paired comparisons with
the dense baseline of the same trial (stats.csv, summary.json), each grid's family of
tests corrected, degenerate cells and controls that cannot differ named, pooled
comparisons with trials as the unit, the verdict records of the source papers'
claims, the mean loss curves and the convergence record.

Every p-value here comes from `fci.stats` (SPEC §4, "Statistics over trials").
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from analyses.levels import CONFIG_KEYS, GROUP_KEYS
from analyses.rows import model_conditions, trial_width
from fci import stats
from fci.io import jsonable
from fci.metrics import (
    LATE_WINDOW,
    fold_change,
    is_flat,
    late_drop,
    relative_improvement,
    trial_stats,
)
from fci.train import FPEResult

__all__ = ["BASE_METRICS", "FOLD_METRICS", "CORRECTION", "condition_stats", "paired_rows", "pooled_stats", "loss_curves",
           "convergence", "resolution_of", "restart_reason", "mark_cells", "claim", "family_claims", "every_cell_claim",
           "verdict_lines", "p_text", "largest_at", "sig"]


BASE_METRICS = ("test_accuracy", "acc_per_param", "feature_capacity", "cosine_interference", "nnz",
                "clauses_with_channel", "train_accuracy", "train_loss_final", "dead_units")


FOLD_METRICS = ("feature_capacity", "cosine_interference")


CORRECTION = "benjamini-hochberg"
"""The correction every family of tests gets (summary.json's `correction`)."""


def _finite(v: np.ndarray) -> np.ndarray:
    return v[np.isfinite(v)]


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def resolution_of(frame: pd.DataFrame, column: str = "accuracy_resolution") -> float | None:
    """The accuracy resolution of the models in `frame` (the coarsest, where test
    sets differ: call it on one configuration's rows), or None when the column is
    missing (results written before it): the tests then guard against float noise only."""
    if column not in frame.columns:
        return None
    v = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return float(v.max()) if v.size else None


def restart_reason(train: Any) -> str | None:
    """Why the alpha = 1 restart control cannot differ from dense under the schedule
    `train` (a `fci.train.TrainConfig`, or a dict or row with its optimizer and
    momentum), or None when it can: plain SGD without momentum keeps no state, so
    restarting it changes nothing and the restart trains exactly as dense does."""
    get = train.get if isinstance(train, Mapping) else (lambda k, d=None: getattr(train, k, d))
    optimizer, momentum = get("optimizer", "adam"), get("momentum", 0.0)
    momentum = 0.0 if momentum is None or (isinstance(momentum, float) and math.isnan(momentum)) else float(momentum)
    if optimizer == "sgd" and momentum == 0.0:
        return ("plain SGD (no momentum) keeps no optimiser state, so the alpha = 1 restart trains exactly as dense "
                "does: identical by construction, nothing to test")
    return None


def mark_cells(table: pd.DataFrame, results: pd.DataFrame, cell: Sequence[str], *, p: str,
               family: Sequence[str] = ("condition", "alpha"), restart: str | None = None, q: str = "q",
               size: str = "family_size", baseline: Mapping[str, Any] | None = None,
               compare: Sequence[str] = ("condition", "alpha")) -> pd.DataFrame:
    """`table` (one row per cell and child condition, raw `p`) with the rows that
    cannot be tested named and left out of their family, and the rest corrected:

    - `degenerate`: the child and its dense baseline are all at 1.0, all at their
      test sets' base rate, or all identical (`fci.stats.mark_degenerate`, on
      `results`' test_accuracy, base_rate and accuracy_resolution where present;
      `compare` names the columns that tell a cell's children apart);
    - `not_applicable`: the reason a restart control cannot differ (`restart`, from
      `restart_reason`) on the restart rows, else empty;
    - `q` and `size`: Benjamini–Hochberg q-values and family sizes over the
      remaining rows of each `family` (by default one family per child condition
      and alpha: the cells of the grid)."""
    baseline = dict(baseline or {"condition": "dense"})
    out = table.copy()
    if out.empty:
        return out.assign(degenerate=None, not_applicable=None, **{q: math.nan, size: pd.NA})
    res = "accuracy_resolution" if resolution_of(results) is not None and results["accuracy_resolution"].notna().all() else None
    base_rate = "base_rate" if "base_rate" in results.columns and results["base_rate"].notna().all() else None
    cmp = [c for c in compare if c in out.columns and c not in cell]
    out = stats.mark_degenerate(out, results, cell=list(cell), compare=cmp, baseline=baseline, base_rate=base_rate,
                                resolution=res)
    na = (out["condition"] == "restart") if restart else pd.Series(False, index=out.index)
    out["not_applicable"] = pd.Series([restart if x else None for x in na], index=out.index, dtype=object)
    out.loc[na, "degenerate"] = None
    skip = out["degenerate"].notna().to_numpy() | na.to_numpy()
    return stats.add_fdr(out, p=p, family=list(family), exclude=skip, q=q, size=size)


def condition_stats(df: pd.DataFrame, metrics: Sequence[str] = BASE_METRICS, *, restart: str | None = None) -> pd.DataFrame:
    """Per configuration and condition, over trials, paired with the dense
    baseline of the same trial: `<m>_mean`, `<m>_sem`, `<m>_p` (`fci.stats.paired_test`
    against dense; accuracy guarded by its resolution) and `<m>_q` (Benjamini–Hochberg
    over the configurations of the sweep, per condition and alpha) for each metric;
    `rel_improvement_mean/_sem/_p/_q` for accuracy with the test's name and reason
    (`rel_improvement_test`, `rel_improvement_reason`), `family_size`, `degenerate`
    and `not_applicable` (see `mark_cells`; `restart` is `restart_reason` of the
    run's schedule); `<m>_fold_mean/_sem` for the fold changes of capacity and
    cosine interference; and `n` (trials)."""
    metrics = [m for m in metrics if m in df.columns]
    dense = df[df.condition == "dense"].set_index(CONFIG_KEYS + ["trial"])
    out = []
    for key, g in df.groupby(GROUP_KEYS, sort=True):
        res = resolution_of(g)  # this configuration's test sets
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
                continue
            b = paired[m].to_numpy(dtype=float)
            keep = ok & np.isfinite(v) & np.isfinite(b)
            t = stats.paired_test(v[keep], b[keep], resolution=res if m == "test_accuracy" else None)
            rec[f"{m}_p"] = _nan(t.p)
            if m == "test_accuracy":
                rec["rel_improvement_test"], rec["rel_improvement_reason"] = t.test, t.reason
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
    st = pd.DataFrame(out)
    if st.empty:
        return st
    child = st.condition != "dense"
    marked = mark_cells(st[child], df, CONFIG_KEYS, p="rel_improvement_p", restart=restart, q="rel_improvement_q")
    for m in metrics:
        if m != "test_accuracy":
            marked = stats.add_fdr(marked, p=f"{m}_p", family=["condition", "alpha"], exclude=marked["not_applicable"].notna().to_numpy(),
                                   q=f"{m}_q", size=f"{m}_family_size").drop(columns=f"{m}_family_size")
    marked["test_accuracy_q"] = marked["rel_improvement_q"]
    st = pd.concat([st[~child], marked], ignore_index=True)
    return st.sort_values(GROUP_KEYS, kind="stable").reset_index(drop=True)


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


def pooled_stats(df: pd.DataFrame, by: Sequence[str] = ("condition", "alpha"), *, restart: str | None = None) -> pd.DataFrame:
    """Per condition over every configuration, with trials as the unit: each
    trial's (child, baseline) pairs are averaged over the configurations, then the
    per-trial means are compared (`fci.stats.pooled_paired_test`; configurations
    of one trial share its seed). Columns: condition, alpha, n_pairs, n_trials,
    accuracy mean/sem, relative improvement mean/sem, `p` and its test, `q`
    (Benjamini–Hochberg over the conditions) and `family_size`; the restart row
    under an optimiser without state is `not_applicable` (no p)."""
    dense = df[df.condition == "dense"].set_index(CONFIG_KEYS + ["trial"])
    res = resolution_of(df)
    rows = []
    for key, g in df[df.condition != "dense"].groupby(list(by), sort=True):
        paired = dense.reindex(pd.MultiIndex.from_frame(g[CONFIG_KEYS + ["trial"]]))
        ok = paired["test_accuracy"].notna().to_numpy()
        a, b = g["test_accuracy"].to_numpy(dtype=float)[ok], paired["test_accuracy"].to_numpy(dtype=float)[ok]
        s, ri = trial_stats(a), trial_stats(np.asarray(relative_improvement(a, b)))
        rec = {**dict(zip(by, key)), "n_pairs": int(ok.sum()), "n_trials": int(g["trial"][ok].nunique()),
               "test_accuracy_mean": s["mean"], "test_accuracy_sem": s["sem"],
               "dense_test_accuracy_mean": float(b.mean()) if len(b) else math.nan,
               "rel_improvement_mean": ri["mean"], "rel_improvement_sem": ri["sem"], "not_applicable": None}
        if restart and rec.get("condition") == "restart":
            rec.update(p=math.nan, test="none", reason=restart, not_applicable=restart)
        else:
            t = stats.pooled_paired_test(a, b, unit=g["trial"].to_numpy()[ok], resolution=res)
            rec.update(p=_nan(t.p), test=t.test, reason=t.reason)
        rows.append(rec)
    out = pd.DataFrame(rows)
    return stats.add_fdr(out, p="p") if not out.empty else out


# --------------------------------------------------------------------------- verdicts


def claim(text: str, result: Any, expect: stats.Expect | None = None, *, measured: Any = None, note: str | None = None,
          q: float | None = None, family_size: int | None = None, alpha: float = stats.ALPHA, **extra: Any) -> dict[str, Any]:
    """One `paper` entry: the verdict record of `text` from the test `result`
    (`fci.stats.verdict`: test, p, q, alpha, correction, family size, verdict),
    with what was measured and a note; `extra` fields (e.g. the dataset) go beside."""
    rec = stats.verdict(text, result, expect, q=q, correction=CORRECTION if q is not None else None,
                        family_size=family_size, alpha=alpha)
    return _with(rec, extra, measured, note)


def _with(rec: dict[str, Any], extra: Mapping[str, Any], measured: Any, note: str | None) -> dict[str, Any]:
    clash = sorted(set(extra) & (set(rec) | {"measured", "note"}))
    if clash:
        raise ValueError(f"extra fields {clash} would overwrite the verdict record's own")
    return {**rec, **extra, "measured": measured, "note": note}


def family_claims(items: Sequence[Mapping[str, Any]], alpha: float = stats.ALPHA) -> list[dict[str, Any]]:
    """Claims of one kind tested in several places (each split and alpha, each
    dataset), corrected together: each item holds `claim`, `result`, `expect` and
    optionally `measured`, `note` and extra fields; the results' p-values get
    Benjamini–Hochberg q-values over the items that have one, and each verdict is
    read from its q (a family of one is left uncorrected)."""
    c = stats.fdr([it["result"].p for it in items])
    out = []
    for it, q in zip(items, c.q):
        extra = {k: v for k, v in it.items() if k not in ("claim", "result", "expect", "measured", "note")}
        corrected = q is not None and c.family_size > 1
        out.append(claim(it["claim"], it["result"], it.get("expect"), measured=it.get("measured"), note=it.get("note"),
                         alpha=alpha, q=q if corrected else None, family_size=c.family_size if corrected else None, **extra))
    return out


def every_cell_claim(text: str, cells: Mapping[Any, stats.Comparison], expect: str, *, measured: Any = None,
                     note: str | None = None, alpha: float = stats.ALPHA, **extra: Any) -> dict[str, Any]:
    """A claim that holds in every cell (every width, every layer): each cell's
    two-sided test, Benjamini–Hochberg over the cells. It disagrees when some cell
    differs significantly against `expect` ("greater" or "less"; the verdict is
    that cell's q), agrees when every cell differs significantly in its direction
    (the verdict is the largest q: all are below alpha exactly when it is), and is
    inconclusive otherwise (again the largest q, or a cell without a p)."""
    if expect not in ("greater", "less"):
        raise ValueError(f"expect must be 'greater' or 'less', got {expect!r}")
    if not cells:
        raise ValueError("a claim over cells needs at least one cell")
    keys = list(cells)
    c = stats.fdr([cells[k].p for k in keys])
    sign = 1.0 if expect == "greater" else -1.0
    q = dict(zip(keys, c.q))
    against = [k for k in keys if q[k] is not None and q[k] < alpha and sign * cells[k].mean_diff < 0]
    untested = [k for k in keys if q[k] is None]
    m = c.family_size
    if against:
        k = min(against, key=lambda k: q[k])
        supports, why = False, f"{k}: significantly {'below' if sign > 0 else 'above'} ({len(against)} of {len(keys)} cells)"
    elif untested:
        k, supports = untested[0], None
        why = f"{k}: {cells[k].reason}"
    else:
        k = max(keys, key=lambda k: q[k])
        supports = sign * cells[k].mean_diff > 0
        why = f"the weakest cell is {k}"
    t = cells[k]
    test = f"{t.test}, two-sided, in every one of {len(keys)} cells (decided by {k})"
    if untested and not against:
        rec = stats.verdict_record(text, test, p=None, reason=why, alpha=alpha)
    elif m > 1:
        rec = stats.verdict_record(text, test, p=t.p, q=q[k], correction=CORRECTION,
                                   family_size=m, supports=supports, reason=why, alpha=alpha)
    else:
        rec = stats.verdict_record(text, test, p=t.p, supports=supports, reason=why, alpha=alpha)
    return _with(rec, extra, measured, note)


def largest_at(levels: Sequence[Any], means: Sequence[float]) -> Any:
    """The level with the largest mean (where a gain peaks), or None without means."""
    m = np.asarray(means, dtype=float)
    return None if not np.isfinite(m).any() else levels[int(np.nanargmax(m))]


def sig(x: Any, digits: int = 3) -> float | None:
    """A p, q or statistic rounded for a summary (`digits` significant figures); None stays None."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)) or pd.isna(x):
        return None
    return float(f"{float(x):.{digits}g}")


def p_text(p: Any, digits: int = 2) -> str:
    """A p or q for tables: 'n/a' where the test gave none."""
    if p is None or (isinstance(p, float) and not math.isfinite(p)):
        return "n/a"
    return f"{float(p):.{digits}g}"


def verdict_lines(paper: Iterable[Mapping[str, Any]], measured_chars: int = 400) -> list[str]:
    """The printed form of a study's `paper` entries: the verdict and the claim, then
    the test that decided it with its p (and q over its family), then what was measured."""
    import json

    lines = []
    for c in paper:
        lines.append(f"  [{c['verdict']}] {c['claim']}")
        fam = f", q = {p_text(c['q'])} ({c['correction']} over {c['family_size']})" if c.get("q") is not None else ""
        lines.append(f"      test: {c['test']}; p = {p_text(c['p'])}{fam}; alpha = {c['alpha']:g}"
                     + (f" ({c['reason']})" if c.get("reason") else ""))
        if c.get("measured") is not None:
            m = c["measured"] if isinstance(c["measured"], str) else json.dumps(jsonable(c["measured"]), ensure_ascii=False)
            lines.append(f"      measured: {m if len(m) <= measured_chars else m[:measured_chars] + ' ... (summary.json)'}")
    return lines


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
