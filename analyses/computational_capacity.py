"""Computational capacity: how many features a network of a given width computes, and what FPE does to it at a fixed budget.

For hidden widths H and feature loads F (F clauses of k = 3 literals, one output each,
disjoint variables, each clause true with probability p = 0.5), dense networks and their
FPE children (clause and random split at alpha 2 and 4, at the dense parent's exact nnz,
and the alpha = 1 restart control) are trained and each network's features computed with
error at most eps are counted (`fci.metrics.computational_capacity`). A width's capacity
is the most features it computes at any load; it is fitted against H and against nnz
(per-trial log-log slopes), set beside channel coding's prediction (capacity = the number
of hidden units; exponent 1 in H and 1/2 in nnz), compared between children and dense at
equal nnz (paired tests, Benjamini-Hochberg over the grid), and read against the
networks' channels (features with a distinct or a private channel). The main arm is DNF;
a CNF arm on the widths up to 32 checks the duality of SPEC section 1 (a CNF task is
distributed as the label-negated DNF task, so the two capacities must agree).

    python -m analyses.computational_capacity [--quick] [--out DIR] [--device auto|cpu|cuda]
        [--trials N] [--seed S] [--shard I/N] [--data DIR] [--eps E] [--share S]
        [--widths 4,8,...] [--loads 0.5,1,...] [--dual-widths 4,8,...|none] [--form dnf|cnf]
        [task and training options]

The derivation of the prediction is in docs/concepts.md ("Computational capacity and
channel coding"); what each output holds is in docs/studies.md.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
import warnings
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from analyses import register
from analyses.kinds import trial_plan
from analyses.levels import RESTART
from analyses.rows import condition_order, model_conditions, model_row
from analyses.runner import Outputs, Plan, RunInfo, contract_parser, study_main, study_options
from analyses.style import COLORS, add_caption, label, style
from fci import stats
from fci.cli import add_config_arguments, build_train, comma_list, flag_error, parse_splits, regime_overrides, regime_record, regime_text
from fci.codes import channel_code, code_bound, network_predictions
from fci.metrics import CAPACITY_EPS, computational_capacity
from fci.tasks import TaskConfig
from fci.train import FPEResult, FPESpec, ModelResult, TrainConfig, backends_of, run_fpe

__all__ = ["STUDY", "GRIDS", "Grid", "main", "prediction", "dense_nnz", "capacity_table", "capacity_stats", "exponent_fits",
           "fpe_effect", "duality", "prediction_cells", "resolution_check", "capacity_figure", "load_figure",
           "nnz_figure", "fpe_figure", "channel_figure"]

log = logging.getLogger(__name__)

CLAUSE_SIZE = 3
#: Each clause's planted probability: a clause (and so each output) is true half the time,
#: so a constant output scores 1/2 and the error bound eps is far from trivial.
P_DEFAULT = 0.5
#: The share of a load's features that counts as "still computing" for the critical load.
SHARE_DEFAULT = 0.9
#: Relative sign threshold of the channel reading (the one `clauses_with_channel` uses).
CHANNEL_THRESHOLD = 0.1
SPLITS_DEFAULT = ("clause", "random")
ALPHAS = (2, 4)
#: Equivalence margins of the exponent claims, stated before any run: the width exponent
#: within 0.25 of 1, the nnz exponent within 0.1 of 1/2; CNF within 25% of DNF.
WIDTH_MARGIN, NNZ_MARGIN, DUALITY_MARGIN = 0.25, 0.1, math.log(1.25)
#: "The prediction is reached" at a width: capacity at least 90% of the predicted count.
REACHED = 0.9
LEVEL = 0.95
CAP_KEYS = ["form", "condition", "alpha", "hidden"]
COND_KEYS = ["form", "condition", "alpha"]
SOURCES = {
    "coding": "Adler, Alistarh, Shavit: Towards combinatorial interpretability of neural computation (arXiv 2504.08842)",
    "fpe": "Kong et al.: Expand neurons, not parameters (Fixed Parameter Expansion)",
}


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Grid:
    """One run level of the study.

    Attributes:
        trials: default trials per (form, width, load).
        widths: hidden widths H of the main arm.
        loads: feature loads F / H; a width runs those up to its top load (`top`).
        top: (width limit, top load) pairs, in increasing width: a width runs the
            loads up to the top load of the first limit it does not exceed (the
            counts collapse beyond about twice the capacity, so wide networks need
            fewer loads to bracket it); empty: every load at every width.
        dual_widths: widths of the other form's arm (the duality check).
        n_train, n_test: samples per task.
        train: the schedule (Adam at lr 0.003: at the suite's 0.01 many hidden
            units die at these loads, and the count then follows the live units).
    """

    trials: int
    widths: tuple[int, ...]
    loads: tuple[float, ...]
    top: tuple[tuple[int, float], ...]
    dual_widths: tuple[int, ...]
    n_train: int
    n_test: int
    train: TrainConfig

    def loads_for(self, hidden: int, loads: Sequence[float] | None = None) -> list[int]:
        """The clause counts F run at width `hidden`: round(load * H), at least 1,
        distinct, ascending; `loads` given: those at every width."""
        if loads is None:
            top = next((t for limit, t in self.top if hidden <= limit), max(self.loads))
            loads = [x for x in self.loads if x <= top + 1e-9]
        return sorted({max(1, int(round(x * hidden))) for x in loads})


GRIDS: dict[str, Grid] = {
    "full": Grid(trials=5, widths=(4, 8, 16, 32, 64), loads=(0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0),
                 top=((16, 4.0), (32, 3.0), (1 << 30, 2.0)), dual_widths=(4, 8, 16, 32), n_train=4096, n_test=2048,
                 train=TrainConfig(lr=0.003, batch_size=128, warmup=100, finetune=100)),
    "quick": Grid(trials=3, widths=(4, 8, 16), loads=(0.5, 1.0, 1.5, 2.0, 3.0), top=(), dual_widths=(4, 8, 16),
                  n_train=1024, n_test=1024, train=TrainConfig(lr=0.003, batch_size=64, warmup=40, finetune=40)),
    "tiny": Grid(trials=2, widths=(4, 8), loads=(0.5, 1.0, 2.0), top=(), dual_widths=(4, 8), n_train=128, n_test=128,
                 train=TrainConfig(lr=0.02, batch_size=64, warmup=4, finetune=4)),
}


# --------------------------------------------------------------------------- the prediction


def prediction(units: int, p: float = P_DEFAULT, eps: float = CAPACITY_EPS) -> dict[str, Any]:
    """Channel coding's prediction of how many features `units` hidden units compute
    with error at most `eps`, when each feature is active with probability `p`
    (docs/concepts.md, "Computational capacity and channel coding").

    Two codes: *disjoint* channels of one unit each (``code_bound(units, 1, 0)``:
    every unit computes one feature exactly, ``relu(sum of literals - (k - 1))``),
    and *overlapping* channels of many units, whose readouts tolerate the other
    features on their units while the fluctuation stays under half the signal:
    ``units / (4 z^2 p (1 - p))`` with ``z`` the normal quantile at ``1 - eps``. The
    prediction is the larger; both grow linearly in the units (exponent 1)."""
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 0:
        raise ValueError(f"units must be an integer >= 0, got {units!r}")
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    z = NormalDist().inv_cdf(1.0 - eps)
    disjoint = code_bound(int(units), 1, 0)
    overlapping = units / (4.0 * z * z * p * (1.0 - p))
    return {"units": int(units), "disjoint": disjoint, "overlapping": float(overlapping),
            "capacity": float(max(disjoint, overlapping)),
            "code": "disjoint (one unit per feature)" if disjoint >= overlapping else "overlapping (superposition)"}


def dense_nnz(hidden: int, n_clauses: int, clause_size: int = CLAUSE_SIZE) -> int:
    """nnz of a dense one-hidden-layer network with every weight and bias non-zero on
    a task of `n_clauses` disjoint clauses (n = C k inputs, one output per clause):
    ``H (C k + 1) + C (H + 1)``. At the predicted capacity C = alpha H it is about
    ``(k + 1) alpha H^2``, so capacity ~ sqrt(alpha nnz / (k + 1)): exponent 1/2."""
    return hidden * (n_clauses * clause_size + 1) + n_clauses * (hidden + 1)


# --------------------------------------------------------------------------- tables


def _t_interval(v: np.ndarray, level: float = LEVEL) -> tuple[float, float, float, float]:
    """(mean, s.e.m., low, high): the t-interval at `level` (NaN where it is not defined)."""
    from scipy.stats import t as student

    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = float(v.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    sem = float(v.std(ddof=1) / math.sqrt(n))
    half = float(student.ppf(0.5 + level / 2, n - 1)) * sem
    return mean, sem, mean - half, mean + half


def capacity_table(df: pd.DataFrame, share: float = SHARE_DEFAULT) -> pd.DataFrame:
    """One row per (form, condition, alpha, width, trial): the width's capacity.

    `df` holds one row per model with `capacity_count` (features computed), `capacity_share`,
    `n_clauses` (the load F), `nnz` and `converged`. The capacity is the most features
    computed at any load; `capacity_load` and `capacity_nnz` are the smallest load that
    reaches it and that model's nnz; `critical_load` is the largest load at which at
    least `share` of the features are computed (0 when none); `censored` says the count
    is highest at the largest load run (the capacity may lie beyond the grid);
    `units` is the children's width alpha * H."""
    rows = []
    for key, g in df.groupby(CAP_KEYS + ["trial"], sort=True):
        g = g.sort_values("n_clauses")
        counts = g["capacity_count"].to_numpy(dtype=np.int64)
        loads = g["n_clauses"].to_numpy(dtype=np.int64)
        best = int(counts.max())
        i = int(np.flatnonzero(counts == best)[0])
        ok = g["capacity_share"].to_numpy(dtype=np.float64) >= share - 1e-12
        rec = dict(zip(CAP_KEYS + ["trial"], key))
        rec.update(units=int(rec["alpha"]) * int(rec["hidden"]), capacity=best, capacity_load=int(loads[i]),
                   capacity_nnz=int(g["nnz"].iloc[i]), critical_load=int(loads[ok].max()) if ok.any() else 0,
                   censored=bool(best > 0 and counts[-1] == best), loads=int(len(loads)),
                   converged=bool(g["converged"].iloc[i]))
        rows.append(rec)
    return pd.DataFrame(rows)


def capacity_stats(cap: pd.DataFrame, p: float = P_DEFAULT, eps: float = CAPACITY_EPS) -> pd.DataFrame:
    """Per (form, condition, alpha, width), over trials: the capacity's mean, s.e.m. and
    95% t-interval, the prediction (`predicted`, channel coding for alpha * H units), the
    efficiency (capacity / units), the critical load, censored trials; and against the
    dense network of the same trial at the same nnz: the mean difference, the ratio
    (geometric mean over trials, with its interval) and the paired test's p (resolution
    one feature), with Benjamini-Hochberg q over every child cell of the grid."""
    dense = cap[cap.condition == "dense"].set_index(["form", "hidden", "trial"])["capacity"]
    rows = []
    for key, g in cap.groupby(CAP_KEYS, sort=True):
        rec: dict[str, Any] = dict(zip(CAP_KEYS, key))
        g = g.sort_values("trial")
        c = g["capacity"].to_numpy(dtype=np.float64)
        m, s, lo, hi = _t_interval(c)
        units = int(g["units"].iloc[0])
        pred = prediction(units, p, eps)["capacity"]
        rec.update(n=int(len(g)), units=units, capacity_mean=m, capacity_sem=s, capacity_ci_low=lo, capacity_ci_high=hi,
                   predicted=pred, efficiency_mean=m / pred if pred else math.nan,
                   capacity_load_mean=float(g["capacity_load"].mean()), capacity_nnz_mean=float(g["capacity_nnz"].mean()),
                   critical_load_mean=float(g["critical_load"].mean()), censored=int(g["censored"].sum()),
                   converged_share=float(g["converged"].mean()))
        b = dense.reindex(pd.MultiIndex.from_arrays([g.form, g.hidden, g.trial])).to_numpy(dtype=np.float64)
        if rec["condition"] == "dense" or not np.isfinite(b).any():
            rec.update(diff_mean=math.nan, ratio_mean=math.nan, ratio_ci_low=math.nan, ratio_ci_high=math.nan, p=math.nan)
        else:
            ok = np.isfinite(b)
            t = stats.paired_test(c[ok], b[ok], resolution=1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                lr = np.log(c[ok] / b[ok])
            lm, _, llo, lhi = _t_interval(np.where(np.isfinite(lr), lr, np.nan))
            rec.update(diff_mean=t.mean_diff, ratio_mean=math.exp(lm) if np.isfinite(lm) else math.nan,
                       ratio_ci_low=math.exp(llo) if np.isfinite(llo) else math.nan,
                       ratio_ci_high=math.exp(lhi) if np.isfinite(lhi) else math.nan,
                       p=t.p if t.p is not None else math.nan)
        rows.append(rec)
    st = pd.DataFrame(rows)
    return stats.add_fdr(st, p="p") if len(st) else st


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    ok = (x > 0) & (y > 0)
    if ok.sum() < 2 or np.ptp(np.log(x[ok])) == 0:
        return math.nan
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def exponent_fits(cap: pd.DataFrame, against: str = "width") -> pd.DataFrame:
    """Per (form, condition, alpha): the exponent b of capacity ~ size^b, fitted per
    trial (least squares of log capacity on log size over the widths, where both
    are > 0) and summarised over trials (mean, s.e.m., 95% t-interval); `against`
    "width" (size = H) or "nnz" (size = the nnz of the model at capacity). The
    pooled line (`intercept`, `pooled_exponent`) fits the mean log capacity per
    width, for drawing. Each fit is tested against the prediction (1 for width,
    1/2 for nnz) by an equivalence test with the stated margin, Benjamini-Hochberg
    over the conditions."""
    if against not in ("width", "nnz"):
        raise ValueError(f"against must be 'width' or 'nnz', got {against!r}")
    xcol, expected, margin = ("hidden", 1.0, WIDTH_MARGIN) if against == "width" else ("capacity_nnz", 0.5, NNZ_MARGIN)
    rows = []
    for key, g in cap.groupby(COND_KEYS, sort=True):
        slopes = np.array([_slope(t[xcol].to_numpy(np.float64), t["capacity"].to_numpy(np.float64))
                           for _, t in g.groupby("trial", sort=True)])
        m, s, lo, hi = _t_interval(slopes)
        per = g[g.capacity > 0].groupby("hidden")
        lx, ly = np.log(per[xcol].mean().to_numpy(np.float64)), per["capacity"].apply(lambda v: np.log(v).mean()).to_numpy()
        pooled, intercept = (np.polyfit(lx, ly, 1) if len(lx) >= 2 and np.ptp(lx) > 0 else (math.nan, math.nan))
        fin = slopes[np.isfinite(slopes)]
        eq = stats.equivalence_test(fin, expected, margin) if fin.size else None
        rows.append({**dict(zip(COND_KEYS, key)), "against": against, "n": int(fin.size),
                     "widths": ",".join(str(int(h)) for h in sorted(g.hidden.unique())),
                     "exponent": m, "exponent_sem": s, "exponent_ci_low": lo, "exponent_ci_high": hi,
                     "pooled_exponent": float(pooled), "intercept": float(intercept), "predicted": expected, "margin": margin,
                     "p": eq.p if eq is not None and eq.p is not None else math.nan,
                     "p_beyond": eq.p_beyond if eq is not None and eq.p_beyond is not None else math.nan,
                     "result": eq})
    fits = pd.DataFrame(rows)
    return stats.add_fdr(fits, p="p", family=["against"]) if len(fits) else fits


def fpe_effect(cap: pd.DataFrame) -> pd.DataFrame:
    """Per (form, condition, alpha) other than dense: do the children (or the restart
    control) compute more features than dense at the same nnz? Each trial's log
    capacity ratio is averaged over its widths and tested across trials (trials as
    the unit, `fci.stats.pooled_paired_test`, two-sided); `ratio` is the geometric
    mean ratio with its interval, `predicted` channel coding's ratio (alpha: the
    children have alpha times the units); Benjamini-Hochberg q over the conditions."""
    dense = cap[cap.condition == "dense"].set_index(["form", "hidden", "trial"])["capacity"]
    rows = []
    for key, g in cap[cap.condition != "dense"].groupby(COND_KEYS, sort=True):
        b = dense.reindex(pd.MultiIndex.from_arrays([g.form, g.hidden, g.trial])).to_numpy(np.float64)
        a = g["capacity"].to_numpy(np.float64)
        with np.errstate(divide="ignore"):
            la, lb = np.log(np.where(a > 0, a, np.nan)), np.log(np.where(b > 0, b, np.nan))
        ok = np.isfinite(la) & np.isfinite(lb)  # a capacity of 0 has no log ratio: that width leaves the trial's mean
        t = stats.pooled_paired_test(la[ok], lb[ok], g["trial"].to_numpy()[ok]) if ok.any() else \
            stats.paired_test(np.array([]), np.array([]))
        lo, hi = t.ci if t.ci is not None else (math.nan, math.nan)
        rows.append({**dict(zip(COND_KEYS, key)), "n": t.n, "widths": ",".join(str(int(h)) for h in sorted(g.hidden.unique())),
                     "ratio": math.exp(t.mean_diff) if np.isfinite(t.mean_diff) else math.nan,
                     "ratio_ci_low": math.exp(lo) if np.isfinite(lo) else math.nan,
                     "ratio_ci_high": math.exp(hi) if np.isfinite(hi) else math.nan,
                     "predicted": float(key[2]), "p": t.p if t.p is not None else math.nan, "result": t})
    eff = pd.DataFrame(rows)
    return stats.add_fdr(eff, p="p") if len(eff) else eff


def duality(cap: pd.DataFrame) -> pd.DataFrame:
    """Per (condition, alpha): CNF capacity against DNF capacity on the widths both
    forms ran. Each trial's log capacities are averaged over those widths; an
    equivalence test (margin: 25%, `DUALITY_MARGIN` in log) says whether they agree,
    and a two-sided paired test whether they differ (a significant difference is a
    bug: a CNF task is distributed as the label-negated DNF task); q over the conditions."""
    if set(cap.form) != {"dnf", "cnf"}:
        return pd.DataFrame()
    rows = []
    for (cond, alpha), g in cap.groupby(["condition", "alpha"], sort=True):
        widths = sorted(set(g[g.form == "dnf"].hidden) & set(g[g.form == "cnf"].hidden))
        if not widths:
            continue
        sub = g[g.hidden.isin(widths) & (g.capacity > 0)].assign(logc=lambda d: np.log(d.capacity))
        per = sub.groupby(["form", "trial"]).logc.mean().unstack("form").reindex(columns=["dnf", "cnf"]).dropna()
        eq = stats.equivalence_test(per["cnf"].to_numpy(), per["dnf"].to_numpy(), DUALITY_MARGIN)
        diff = stats.paired_test(per["cnf"].to_numpy(), per["dnf"].to_numpy())
        rows.append({"condition": cond, "alpha": int(alpha), "widths": ",".join(map(str, widths)), "n": int(len(per)),
                     "ratio": math.exp(eq.mean_diff) if np.isfinite(eq.mean_diff) else math.nan, "margin": DUALITY_MARGIN,
                     "p": eq.p if eq.p is not None else math.nan,
                     "p_beyond": eq.p_beyond if eq.p_beyond is not None else math.nan,
                     "p_differ": diff.p if diff.p is not None else math.nan, "result": eq})
    d = pd.DataFrame(rows)
    if d.empty:
        return d
    d = stats.add_fdr(d, p="p")
    return stats.add_fdr(d, p="p_differ", q="q_differ", size="family_size_differ")


def prediction_cells(cap: pd.DataFrame, p: float = P_DEFAULT, eps: float = CAPACITY_EPS) -> pd.DataFrame:
    """Where the prediction holds: per (form, condition, alpha, width), is the capacity
    at least `REACHED` of the predicted count? A paired non-inferiority test of capacity
    against the prediction with margin (1 - REACHED) x prediction (resolution one
    feature) gives each cell its verdict (`fci.stats.verdict`): "agrees" (reached),
    "disagrees" (significantly below), or "inconclusive"."""
    rows = []
    for key, g in cap.groupby(CAP_KEYS, sort=True):
        pred = prediction(int(g["units"].iloc[0]), p, eps)["capacity"]
        c = g["capacity"].to_numpy(np.float64)
        t = stats.noninferiority_test(c, pred, margin=(1 - REACHED) * pred, resolution=1.0)
        v = stats.verdict(f"capacity reaches {REACHED:.0%} of the predicted {pred:g} features", t)
        rows.append({**dict(zip(CAP_KEYS, key)), "predicted": pred, "capacity_mean": float(c.mean()),
                     "p": v["p"], "verdict": v["verdict"], "test": v["test"]})
    return pd.DataFrame(rows)


def resolution_check(st: pd.DataFrame) -> dict[str, Any]:
    """Do the capacity curves resolve a factor of 2 in width? For each condition and
    each pair of widths a factor 2 apart whose mean capacities differ by 2x or more:
    whether their 95% intervals are disjoint."""
    pairs = []
    for key, g in st.groupby(COND_KEYS, sort=True):
        g = g.set_index("hidden")
        for h in g.index:
            if 2 * h in g.index:
                a, b = g.loc[h], g.loc[2 * h]
                if not (a.capacity_mean > 0 and b.capacity_mean >= 2 * a.capacity_mean):
                    continue
                sep = bool(np.isfinite(a.capacity_ci_high) and np.isfinite(b.capacity_ci_low)
                           and a.capacity_ci_high < b.capacity_ci_low)
                pairs.append({**dict(zip(COND_KEYS, key)), "widths": [int(h), int(2 * h)], "resolved": sep})
    return {"pairs": len(pairs), "resolved": sum(p["resolved"] for p in pairs),
            "unresolved": [p for p in pairs if not p["resolved"]]}


def _public(table: pd.DataFrame) -> pd.DataFrame:
    """A table without the test objects it keeps for the verdicts (column `result`)."""
    return table.drop(columns=["result"], errors="ignore")


# --------------------------------------------------------------------------- verdicts


def _claims(fits: pd.DataFrame, eff: pd.DataFrame) -> list[dict[str, Any]]:
    """The source papers' claims as `fci.stats` verdict records, each with what it
    means here, the measured value and channel coding's number."""
    out = []
    for r in fits[fits.against == "nnz"].itertuples():
        if r.condition == "restart":
            continue
        claim = (f"{label(r.condition, r.alpha)}, {r.form.upper()}: computational capacity grows with the parameter count "
                 f"as nnz^(1/2), the channel-coding prediction at dense activity (within ±{NNZ_MARGIN:g})")
        rec = _fit_verdict(claim, r)
        out.append({**rec, "source": SOURCES["coding"], "measured": _interval_text(r.exponent, r.exponent_ci_low, r.exponent_ci_high),
                    "prediction": 0.5, "widths": r.widths})
    for r in eff.itertuples():
        if r.condition == "restart":
            continue
        claim = (f"{label(r.condition, r.alpha)}, {r.form.upper()}: FPE children compute more features than the dense "
                 f"network at the same nnz (channel coding: up to {r.alpha}x, the children's units)")
        rec = stats.verdict(claim, r.result, expect="greater", q=_q(r.q), family_size=_size(r.family_size))
        out.append({**rec, "source": SOURCES["fpe"], "measured": _interval_text(r.ratio, r.ratio_ci_low, r.ratio_ci_high, "x"),
                    "prediction": float(r.alpha), "widths": r.widths})
    return out


def _q(q: Any) -> float | None:
    return float(q) if q is not None and np.isfinite(q) else None


def _size(n: Any) -> int | None:
    return None if n is None or pd.isna(n) else int(n)


def _interval_text(m: float, lo: float, hi: float, unit: str = "") -> str:
    if not np.isfinite(m):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{m:.3g}{unit} (no interval)"
    return f"{m:.3g}{unit} [{lo:.3g}, {hi:.3g}] (95%)"


def _fit_verdict(claim: str, r: Any) -> dict[str, Any]:
    """The verdict of an exponent claim (equivalence with the prediction), or an
    inconclusive record saying why no trial could be fitted."""
    if r.result is None:
        return stats.verdict_record(claim, "none", p=None, reason="no trial has a capacity above 0 at two widths: nothing to fit")
    return stats.verdict(claim, r.result, q=_q(r.q), family_size=_size(r.family_size))


def _fit_records(fits: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for r in fits.itertuples():
        rec = _fit_verdict(f"{label(r.condition, r.alpha)}, {r.form.upper()}: capacity ~ {r.against}^{r.predicted:g} "
                           f"(within ±{r.margin:g})", r)
        out.append({"form": r.form, "condition": r.condition, "alpha": int(r.alpha), "against": r.against, "n": int(r.n),
                    "widths": r.widths, "exponent": r.exponent, "exponent_sem": r.exponent_sem,
                    "interval": [r.exponent_ci_low, r.exponent_ci_high], "pooled_exponent": r.pooled_exponent,
                    "intercept": r.intercept, "predicted": r.predicted, "verdict": rec})
    return out


# --------------------------------------------------------------------------- figures


def _cond_keys(frame: pd.DataFrame) -> list[tuple[str, int]]:
    order = {"dense": 0, "restart": 1}
    return sorted({(c, int(a)) for c, a in zip(frame.condition, frame.alpha)}, key=lambda t: (order.get(t[0], 2), t[1], t[0]))


def _forms(frame: pd.DataFrame) -> list[str]:
    return [f for f in ("dnf", "cnf") if f in set(frame.form)]


def capacity_figure(st: pd.DataFrame, fits: pd.DataFrame, caption: str = "") -> go.Figure:
    """Capacity against width (log-log), one panel per form: per condition the mean over
    trials with its 95% interval, '*' where the paired test against dense has q < 0.05;
    beside it channel coding's prediction (the children's units, alpha H) as dashed lines."""
    forms = _forms(st)
    fig = make_subplots(rows=1, cols=max(1, len(forms)), subplot_titles=[f"{f.upper()} tasks" for f in forms],
                        horizontal_spacing=0.08)
    widths = sorted(st.hidden.unique()) if len(st) else []
    for col, form in enumerate(forms, start=1):
        s = st[st.form == form]
        for a in sorted(s.alpha.unique()):
            pred = [prediction(int(a * h))["capacity"] for h in widths]
            fig.add_trace(go.Scatter(x=widths, y=pred, mode="lines", line={"color": "#999", "dash": "dash", "width": 1},
                                     name=f"prediction: {int(a)}·H units" if a > 1 else "prediction: H units",
                                     legendgroup=f"pred{a}", showlegend=col == 1), row=1, col=col)
        for cond, a in _cond_keys(s):
            g = s[(s.condition == cond) & (s.alpha == a)].sort_values("hidden")
            f = fits[(fits.form == form) & (fits.condition == cond) & (fits.alpha == a) & (fits.against == "width")]
            b = f.exponent.iloc[0] if len(f) else math.nan
            name = f"{label(cond, a)} (exponent {b:.2f})" if np.isfinite(b) else label(cond, a)
            err = {"type": "data", "symmetric": False, "array": (g.capacity_ci_high - g.capacity_mean).fillna(0),
                   "arrayminus": (g.capacity_mean - g.capacity_ci_low).fillna(0)}
            fig.add_trace(go.Scatter(x=g.hidden, y=g.capacity_mean, error_y=err, mode="lines+markers+text",
                                     text=["*" if np.isfinite(q) and q < stats.ALPHA else "" for q in g.get("q", [])],
                                     textposition="top center", name=name, legendgroup=f"{form}{cond}{a}",
                                     showlegend=True, **style(cond, a),
                                     hovertemplate=f"{label(cond, a)}<br>H=%{{x}}<br>capacity %{{y:.3g}}<extra></extra>"),
                          row=1, col=col)
        fig.update_xaxes(type="log", tickvals=widths, title_text="hidden width H (dense parent)", row=1, col=col)
        fig.update_yaxes(type="log", title_text="capacity: most features computed at any load" if col == 1 else None, row=1, col=col)
    fig.update_layout(title="Computational capacity against width, beside channel coding's prediction (error bars: 95% "
                            "t-interval over trials; * q<0.05 against dense at the same nnz)",
                      height=620, width=620 * max(1, len(forms)) + 200, template="plotly_white")
    return add_caption(fig, caption)


def load_figure(df: pd.DataFrame, caption: str = "") -> go.Figure:
    """Features computed against the load F (mean ± s.e.m. over trials), one panel per
    (form, width), one line per condition, with the line 'every feature computed' (F)
    and the width H."""
    forms = _forms(df)
    widths = sorted(df.hidden.unique()) if len(df) else []
    fig = make_subplots(rows=max(1, len(forms)), cols=max(1, len(widths)), horizontal_spacing=0.04, vertical_spacing=0.14,
                        subplot_titles=[f"{f.upper()}, H={h}" for f in forms for h in widths])
    for i, form in enumerate(forms, start=1):
        for j, h in enumerate(widths, start=1):
            g = df[(df.form == form) & (df.hidden == h)]
            if g.empty:
                continue
            loads = sorted(g.n_clauses.unique())
            fig.add_trace(go.Scatter(x=loads, y=loads, mode="lines", line={"color": "#bbb", "dash": "dot"},
                                     name="every feature computed", legendgroup="all", showlegend=(i == 1 and j == 1)),
                          row=i, col=j)
            fig.add_vline(x=h, line={"color": "#ddd", "width": 1}, row=i, col=j)
            for cond, a in _cond_keys(g):
                gg = g[(g.condition == cond) & (g.alpha == a)].groupby("n_clauses").capacity_count
                m, s = gg.mean(), gg.std(ddof=1) / np.sqrt(gg.count())
                fig.add_trace(go.Scatter(x=m.index, y=m.values, error_y={"type": "data", "array": s.fillna(0).values},
                                         mode="lines+markers", name=label(cond, a), legendgroup=f"{cond}{a}",
                                         showlegend=(i == 1 and j == 1), **style(cond, a)), row=i, col=j)
            fig.update_xaxes(type="log", tickvals=loads, row=i, col=j)
    for j in range(1, len(widths) + 1):
        fig.update_xaxes(title_text="features asked F", row=max(1, len(forms)), col=j)
    fig.update_yaxes(title_text="features computed", col=1)
    fig.update_layout(title="Features computed with error ≤ ε against the load (mean ± s.e.m. over trials); "
                            "the grey line is the width H", height=330 * max(1, len(forms)) + 170,
                      width=260 * max(1, len(widths)) + 260, template="plotly_white")
    return add_caption(fig, caption)


def nnz_figure(cap: pd.DataFrame, fits: pd.DataFrame, clause_size: int = CLAUSE_SIZE, caption: str = "") -> go.Figure:
    """Capacity against the nnz of the model that reaches it (log-log, one point per
    trial and width), one panel per form, beside the prediction: alpha H features at
    the nnz of a dense width-H network asked alpha H features (`dense_nnz`)."""
    forms = _forms(cap)
    fig = make_subplots(rows=1, cols=max(1, len(forms)), subplot_titles=[f"{f.upper()} tasks" for f in forms])
    for col, form in enumerate(forms, start=1):
        s = cap[cap.form == form]
        widths = sorted(s.hidden.unique())
        for a in sorted(s.alpha.unique()):
            xs = [dense_nnz(h, int(a * h), clause_size) for h in widths]
            fig.add_trace(go.Scatter(x=xs, y=[prediction(int(a * h))["capacity"] for h in widths], mode="lines",
                                     line={"color": "#999", "dash": "dash", "width": 1}, legendgroup=f"pred{a}",
                                     name=f"prediction, α={int(a)}", showlegend=col == 1), row=1, col=col)
        for cond, a in _cond_keys(s):
            g = s[(s.condition == cond) & (s.alpha == a)]
            f = fits[(fits.form == form) & (fits.condition == cond) & (fits.alpha == a) & (fits.against == "nnz")]
            b = f.exponent.iloc[0] if len(f) else math.nan
            fig.add_trace(go.Scatter(x=g.capacity_nnz, y=g.capacity, mode="markers", legendgroup=f"{form}{cond}{a}",
                                     name=f"{label(cond, a)} (exponent {b:.2f})" if np.isfinite(b) else label(cond, a),
                                     marker={**style(cond, a)["marker"], "opacity": 0.7}), row=1, col=col)
        fig.update_xaxes(type="log", title_text="nnz of the model at capacity", row=1, col=col)
        fig.update_yaxes(type="log", title_text="capacity" if col == 1 else None, row=1, col=col)
    fig.update_layout(title="Capacity against the non-zero parameter count (one point per trial and width)",
                      height=600, width=620 * max(1, len(forms)) + 200, template="plotly_white")
    return add_caption(fig, caption)


def fpe_figure(st: pd.DataFrame, caption: str = "") -> go.Figure:
    """FPE's effect at a fixed budget: capacity of children (and the restart control)
    over the dense network's at the same nnz, per width (geometric mean over trials,
    95% interval), one panel per form; '*' where q < 0.05; dashed: no change (1)."""
    forms = _forms(st)
    fig = make_subplots(rows=1, cols=max(1, len(forms)), subplot_titles=[f"{f.upper()} tasks" for f in forms])
    for col, form in enumerate(forms, start=1):
        s = st[(st.form == form) & (st.condition != "dense")]
        for cond, a in _cond_keys(s):
            g = s[(s.condition == cond) & (s.alpha == a)].sort_values("hidden")
            err = {"type": "data", "symmetric": False, "array": (g.ratio_ci_high - g.ratio_mean).fillna(0),
                   "arrayminus": (g.ratio_mean - g.ratio_ci_low).fillna(0)}
            fig.add_trace(go.Scatter(x=g.hidden, y=g.ratio_mean, error_y=err, mode="lines+markers+text",
                                     text=["*" if np.isfinite(q) and q < stats.ALPHA else "" for q in g.q],
                                     textposition="top center", name=label(cond, a), legendgroup=f"{cond}{a}",
                                     showlegend=col == 1, **style(cond, a)), row=1, col=col)
        fig.add_hline(y=1, line={"color": "black", "dash": "dash", "width": 1}, row=1, col=col)
        fig.update_xaxes(type="log", tickvals=sorted(st.hidden.unique()), title_text="hidden width H (dense parent)", row=1, col=col)
        fig.update_yaxes(type="log", title_text="capacity / dense capacity (same nnz)" if col == 1 else None, row=1, col=col)
    fig.update_layout(title="What FPE does to capacity at a fixed non-zero budget (channel coding: up to α×; * q<0.05)",
                      height=560, width=620 * max(1, len(forms)) + 200, template="plotly_white")
    return add_caption(fig, caption)


def channel_figure(df: pd.DataFrame, caption: str = "") -> go.Figure:
    """The channels behind the count: per network, features computed against features
    with a distinct channel (top) and with a private channel (bottom), one column per
    form, one colour per condition; on the diagonal every computed feature has one."""
    forms = _forms(df)
    fig = make_subplots(rows=2, cols=max(1, len(forms)), vertical_spacing=0.12,
                        subplot_titles=[f"{f.upper()}: {w} channels" for w in ("distinct", "private") for f in forms])
    top = float(max(df.capacity_count.max(), df.channels_distinct.max(), 1)) if len(df) else 1.0
    for col, form in enumerate(forms, start=1):
        s = df[df.form == form]
        for row, x in enumerate(("channels_distinct", "channels_private"), start=1):
            fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", line={"color": "#bbb", "dash": "dot"},
                                     showlegend=False), row=row, col=col)
            for cond, a in _cond_keys(s):
                g = s[(s.condition == cond) & (s.alpha == a)]
                fig.add_trace(go.Scatter(x=g[x], y=g.capacity_count, mode="markers", name=label(cond, a),
                                         legendgroup=f"{cond}{a}", showlegend=(row == 1 and col == 1),
                                         marker={"color": COLORS.get(cond, "#7f7f7f"), "size": 5, "opacity": 0.5},
                                         customdata=np.stack([g.hidden, g.n_clauses], axis=-1) if len(g) else None,
                                         hovertemplate=f"{label(cond, a)}<br>H=%{{customdata[0]}} F=%{{customdata[1]}}<br>"
                                                       f"{x}=%{{x}}<br>computed=%{{y}}<extra></extra>"), row=row, col=col)
            fig.update_xaxes(title_text=f"features with a {x.split('_')[1]} channel", row=row, col=col)
            fig.update_yaxes(title_text="features computed" if col == 1 else None, row=row, col=col)
    fig.update_layout(title=f"Features computed against features whose channel is distinct (no other clause's channel "
                            f"contains it) or private (shares no unit); channels at relative threshold {CHANNEL_THRESHOLD:g}",
                      height=900, width=560 * max(1, len(forms)) + 200, template="plotly_white")
    return add_caption(fig, caption)


# --------------------------------------------------------------------------- the study


@dataclass
class CapacityContext:
    """What the study's steps share: the run, the grid and options, the sweep, caption and config."""

    run: RunInfo
    grid: Grid
    trials: int
    forms: tuple[str, ...]
    widths: dict[str, tuple[int, ...]]
    eps: float
    share: float
    p: float
    items: list[tuple[FPESpec, int]]
    caption: str
    config: dict[str, Any]
    tasks: dict[str, TaskConfig] = field(default_factory=dict)  # per form, at one load: for captions
    provenance: list[dict[str, Any]] = field(default_factory=list)  # every model's, for the run record


def _number(text: str) -> float:
    """An argparse type: a float, or a one-line error (the range is checked with the other options)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    g = GRIDS["full"]
    ap = contract_parser(
        "computational_capacity", DESCRIPTION,
        epilog=("Outputs: results.csv (one row per model), stats.csv (capacity per form, condition and width), "
                "counts.csv (features computed per load), fits.csv (exponents), summary.json (capacity, fit, "
                "prediction, fpe_effect, duality, channels, paper) and self-contained .html figures. Models come from "
                "the results store under --data, so a rerun trains nothing and an interrupted run resumes."),
        quick_help=(f"widths {','.join(map(str, GRIDS['quick'].widths))} on loads up to 3H, {GRIDS['quick'].trials} trials, "
                    f"{GRIDS['quick'].n_train} train samples, {GRIDS['quick'].train.warmup}+{GRIDS['quick'].train.finetune} "
                    f"epochs; under a minute on 2 cores"),
        units="trials")
    q, tr = GRIDS["quick"], g.train
    level = "the run level's: {full}; --quick: {quick}"
    notes = {"n_vars": "C·k", "layout": "disjoint", "negation_prob": "0.5", "p": f"{P_DEFAULT:g}",
             "outputs": "clauses, the only mode this study takes: one output per feature",
             "form": "dnf; the other form runs on --dual-widths, the duality check",
             "n_train": level.format(full=g.n_train, quick=q.n_train),
             **{f: level.format(full=getattr(tr, f), quick=getattr(q.train, f)) for f in ("lr", "batch_size", "warmup", "finetune")},
             "weight_decay": "0", "optimizer": "adam", "momentum": "0"}
    scope = "They apply to every model of the run."
    add_config_arguments(ap, TaskConfig, "task options (SPEC §1)", regime=True, note=notes, scope=scope)
    add_config_arguments(ap, TrainConfig, "training options (SPEC §7)", regime=True, note=notes, scope=scope)
    ap.add_argument("--splits", default=None,
                    help="FPE splits at alpha 2 and 4, comma-separated from the registered splits (default: clause,random; "
                         "the alpha = 1 restart control always runs)")
    ap.add_argument("--eps", type=_number, default=CAPACITY_EPS,
                    help=f"a feature is computed when its test error is at most eps, in (0, 1) (default: {CAPACITY_EPS:g})")
    ap.add_argument("--share", type=_number, default=SHARE_DEFAULT,
                    help=f"the share of a load's features a network must compute for the load to count in the critical "
                         f"load, in (0, 1] (default: {SHARE_DEFAULT:g})")
    ap.add_argument("--widths", default=None, metavar="H,H,...",
                    help=f"hidden widths of the main arm (default: {','.join(map(str, g.widths))}; --quick: "
                         f"{','.join(map(str, GRIDS['quick'].widths))})")
    ap.add_argument("--loads", default=None, metavar="X,X,...",
                    help=f"loads F/H at every width (default: {','.join(f'{x:g}' for x in g.loads)}, up to 4H at H<=16, "
                         f"3H at 32 and 2H above; --quick: up to 3H)")
    ap.add_argument("--dual-widths", default=None, metavar="H,H,...|none",
                    help=f"widths of the other form's arm, the duality check (default: "
                         f"{','.join(map(str, g.dual_widths))}; 'none' runs one form)")
    return ap


#: The study's title and what it shows (for --help and `python -m analyses`).
DESCRIPTION = "\n\n".join((__doc__ or "").strip().split("\n\n")[:2])


def _validate(ap: argparse.ArgumentParser, args: argparse.Namespace, grid: Grid) -> dict[str, Any]:
    """Every option checked before any work; a bad one exits in one line naming its flag.
    Returns the run's forms, widths per form, loads, schedule and task fields."""
    if not 0.0 < args.eps < 1.0:
        ap.error(f"--eps must be a number in (0, 1), got {args.eps:g}")
    if not 0.0 < args.share <= 1.0:
        ap.error(f"--share must be a number in (0, 1], got {args.share:g}")
    widths = comma_list(ap, "--widths", args.widths, int, low=1) if args.widths is not None else grid.widths
    loads = comma_list(ap, "--loads", args.loads, float, low=0, strict=True) if args.loads is not None else None
    if args.dual_widths is None:
        dual = tuple(h for h in grid.dual_widths)
    elif str(args.dual_widths).strip().lower() == "none":
        dual = ()
    else:
        dual = comma_list(ap, "--dual-widths", args.dual_widths, int, low=1)
    task_set, train_set = regime_overrides(args)
    outputs = task_set.pop("outputs", "clauses")
    if outputs != "clauses":
        ap.error(f"--outputs: computational capacity counts features one output each; this study needs --outputs clauses, "
                 f"got {outputs!r}")
    main_form = task_set.pop("form", "dnf")
    n_train = task_set.pop("n_train", grid.n_train)
    task_set.setdefault("p", P_DEFAULT)
    train = build_train(ap, grid.train, train_set)
    forms = (main_form,) + ((("cnf" if main_form == "dnf" else "dnf"),) if dual else ())
    per_form = {main_form: tuple(widths)}
    if dual:
        per_form[forms[1]] = tuple(dual)
    tasks: dict[str, TaskConfig] = {}
    for form in forms:
        for h in per_form[form]:
            for F in grid.loads_for(h, loads):
                try:
                    task = TaskConfig(n_clauses=F, clause_size=CLAUSE_SIZE, outputs="clauses", n_train=n_train,
                                      n_test=grid.n_test, form=form, **task_set)
                except ValueError as e:
                    flag_error(ap, e)
                rate = task.clause_true_rate  # each output's positive rate
                if min(rate, 1.0 - rate) <= args.eps + 1e-12:
                    ap.error(f"--p: each feature would be true with probability {rate:.3g} at {F} clauses ({form}), so a "
                             f"constant output already has error <= eps={args.eps:g} and the count could not tell computing "
                             f"a feature from ignoring it; give --p a value with min(p, 1-p) > eps (default {P_DEFAULT:g})")
                tasks.setdefault(form, task)
    splits = parse_splits(ap, args.splits) if args.splits is not None else list(SPLITS_DEFAULT)
    return {"forms": forms, "widths": per_form, "loads": loads, "train": train, "task_set": task_set, "n_train": n_train,
            "splits": splits, "tasks": tasks}


def _specs(grid: Grid, opts: dict[str, Any], trials: int, seed: int) -> list[tuple[FPESpec, int]]:
    """(spec, trial) for every form, width, load and trial; trial t uses seed `seed + t`."""
    exps = tuple((s, a) for a in ALPHAS for s in opts["splits"]) + (RESTART,)
    out = []
    for form in opts["forms"]:
        for h in opts["widths"][form]:
            for F in grid.loads_for(h, opts["loads"]):
                task = TaskConfig(n_clauses=F, clause_size=CLAUSE_SIZE, outputs="clauses", n_train=opts["n_train"],
                                  n_test=grid.n_test, form=form, **opts["task_set"])
                out += [(FPESpec(task=task, hidden=h, seed=seed + t, expansions=exps, train=opts["train"]), t)
                        for t in range(trials)]
    return out


class CapacityStudy:
    """The computational-capacity study as a kind the one runner runs (`analyses.runner.run`)."""

    name = "computational_capacity"
    description = DESCRIPTION

    def parser(self) -> argparse.ArgumentParser:
        return build_parser()

    def prepare(self, ap: argparse.ArgumentParser, info: RunInfo) -> CapacityContext:
        args, grid = info.args, GRIDS[info.level]
        trials = grid.trials if args.trials is None else args.trials
        opts = _validate(ap, args, grid)
        items = _specs(grid, opts, trials, args.seed)
        forms, train = opts["forms"], opts["train"]
        task = opts["tasks"][forms[0]]
        p = task.resolved_p
        arms = "; ".join(f"{f.upper()} widths {','.join(map(str, opts['widths'][f]))}" for f in forms)
        dual_note = (f" ({forms[1].upper()} arm: the duality check of SPEC §1)" if len(forms) > 1 else " (one form: no duality check)")
        caption = (f"computational_capacity · level={info.level} · trials={trials} (seeds {args.seed}..{args.seed + trials - 1}) · "
                   f"{arms}{dual_note} · k={CLAUSE_SIZE}, loads F/H "
                   f"{','.join(f'{x:g}' for x in (opts['loads'] or grid.loads))} · ε={args.eps:g} · {grid.n_test} test samples"
                   f"<br>{regime_text(task, train)} (dense baseline {train.epochs}) · α=1 restart control · "
                   f"device={info.device.type}")
        regime = regime_record(task, train)
        config = {"study": self.name, "description": self.description, "level": info.level, "trials": trials, "seed": args.seed,
                  "seeds": [args.seed + t for t in range(trials)], "shard": args.shard, "device": str(info.device),
                  "data": str(args.data), "out": str(info.out), "forms": list(forms),
                  "widths": {f: list(w) for f, w in opts["widths"].items()},
                  "loads": {f: {str(h): grid.loads_for(h, opts["loads"]) for h in opts["widths"][f]} for f in forms},
                  "clause_size": CLAUSE_SIZE, "eps": args.eps, "share": args.share, "p": p,
                  "channel_threshold": CHANNEL_THRESHOLD, "splits": opts["splits"], "alphas": list(ALPHAS),
                  "regime": regime, "task": {**task.to_dict(), "n_clauses": "per load", "form": "per arm"},
                  "train": {**train.to_dict(), "momentum": train.momentum}, "study_options": study_options(args),
                  "caption": caption,
                  "margins": {"width_exponent": WIDTH_MARGIN, "nnz_exponent": NNZ_MARGIN, "duality_log_ratio": DUALITY_MARGIN,
                              "reached": REACHED}}
        return CapacityContext(run=info, grid=grid, trials=trials, forms=forms, widths=opts["widths"], eps=args.eps,
                               share=args.share, p=p, items=items, caption=caption, config=config, tasks=opts["tasks"])

    def plan(self, ctx: CapacityContext) -> Plan:
        cells = len(ctx.items) // max(1, ctx.trials)
        return trial_plan(ctx.items, ctx.run, f"{cells} (form, width, load) cells x {ctx.trials} trials")

    def table(self, units: list[tuple[FPESpec, int]], ctx: CapacityContext) -> pd.DataFrame:
        """One row per model: the suite's columns, the count of features computed, the channels."""
        results = run_fpe([s for s, _ in units], device=ctx.run.device, store=ctx.run.store)
        ctx.provenance = [r.provenance for res in results for _, _, r in model_conditions(res)]
        rows = []
        with _one_thread():
            for res, (_, trial) in tqdm(list(zip(results, units)), desc="measure", unit="trial", leave=False):
                rows += _rows(res, trial, ctx.eps)
        df = pd.DataFrame(rows)
        if df.empty:
            return df
        order = {"dnf": 0, "cnf": 1}
        df = df.assign(_f=df.form.map(order), _c=df.condition.map(condition_order))
        return df.sort_values(["_f", "hidden", "n_clauses", "trial", "_c", "alpha"]).drop(columns=["_f", "_c"]).reset_index(drop=True)

    def run_record(self, units: list[tuple[FPESpec, int]], ctx: CapacityContext) -> dict[str, Any]:
        backends = backends_of(ctx.provenance)
        return {"models": sum(1 + len(s.expansions) for s, _ in units), "backends": backends,
                "mixed_backends": len({b.split(" ")[0] for b in backends}) > 1}

    def finish(self, df: pd.DataFrame, ctx: CapacityContext) -> Outputs:
        return finish(df, ctx)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Measure on one CPU thread: the products of a measurement are small, and threads
    that wait for each other on a shared machine cost more than they save."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def _rows(res: FPEResult, trial: int, eps: float) -> list[dict[str, Any]]:
    """The results.csv rows of one trial's models."""
    task = res.boolean_task
    x_test, y_test = task.test_data()
    out = []
    for cond, alpha, mr in model_conditions(res):
        row = model_row(res, trial, cond, alpha, mr, channel_threshold=CHANNEL_THRESHOLD, x_test=x_test)
        row.update(_capacity_columns(task, mr, x_test, y_test, eps), load=row["n_clauses"] / row["hidden"])
        out.append(row)
    return out


def _capacity_columns(task: Any, mr: ModelResult, x_test: Any, y_test: Any, eps: float) -> dict[str, Any]:
    """A model's count of features computed, its channels read as a code, and how the two meet."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # trivial features are counted in a column and warned about once per run
        cap = computational_capacity(network_predictions(mr.model, x_test), y_test, eps)
    code = channel_code(mr.model.effective_weights()[0][0], task.clauses, threshold=CHANNEL_THRESHOLD, form=task.form)
    return {"form": task.form, "capacity_count": cap.count, "capacity_share": cap.share, "capacity_trivial": cap.trivial,
            "test_exact_match": float(mr.test_exact_match), "channels_distinct": code.n_distinct,
            "channels_private": code.n_private, "channel_size_median": code.median_size,
            "channel_overlap_max": code.max_overlap, "computed_distinct": int((cap.computed & code.distinct).sum()),
            "computed_private": int((cap.computed & code.private).sum())}


def _convergence(df: pd.DataFrame, cap: pd.DataFrame) -> dict[str, Any]:
    per = df.groupby(COND_KEYS).converged.mean()
    return {"rule": "fci.metrics.is_flat on each model's train-loss curve (SPEC §4)",
            "share_converged": float(df.converged.mean()) if len(df) else math.nan,
            "share_converged_at_capacity": float(cap.converged.mean()) if len(cap) else math.nan,
            "per_condition": [{"form": f, "condition": c, "alpha": int(a), "share_converged": float(v)}
                              for (f, c, a), v in per.items()]}


def _counts(df: pd.DataFrame) -> pd.DataFrame:
    """counts.csv: per (form, condition, alpha, width, load), the features computed
    (mean, s.e.m.) and the paired test against dense at the same nnz (resolution one
    feature), with Benjamini-Hochberg q over every child cell."""
    keys = CAP_KEYS + ["n_clauses"]
    dense = df[df.condition == "dense"].set_index(["form", "hidden", "n_clauses", "trial"])["capacity_count"]
    rows = []
    for key, g in df.groupby(keys, sort=True):
        rec: dict[str, Any] = dict(zip(keys, key))
        c = g.sort_values("trial")
        v = c.capacity_count.to_numpy(np.float64)
        m, s, _, _ = _t_interval(v)
        rec.update(n=int(len(v)), capacity_count_mean=m, capacity_count_sem=s, capacity_share_mean=float(c.capacity_share.mean()),
                   channels_distinct_mean=float(c.channels_distinct.mean()), channels_private_mean=float(c.channels_private.mean()),
                   nnz_mean=float(c.nnz.mean()), test_accuracy_mean=float(c.test_accuracy.mean()),
                   converged_share=float(c.converged.mean()))
        if rec["condition"] == "dense":
            rec.update(diff_mean=math.nan, p=math.nan)
        else:
            b = dense.reindex(pd.MultiIndex.from_arrays([c.form, c.hidden, c.n_clauses, c.trial])).to_numpy(np.float64)
            ok = np.isfinite(b)
            t = stats.paired_test(v[ok], b[ok], resolution=1.0) if ok.sum() else None
            rec.update(diff_mean=t.mean_diff if t else math.nan, p=t.p if t and t.p is not None else math.nan)
        rows.append(rec)
    out = pd.DataFrame(rows)
    return stats.add_fdr(out, p="p") if len(out) else out


def _channels(df: pd.DataFrame) -> dict[str, Any]:
    per = df.groupby(COND_KEYS).agg(computed=("capacity_count", "sum"), computed_distinct=("computed_distinct", "sum"),
                                    computed_private=("computed_private", "sum"), size=("channel_size_median", "median"),
                                    overlap=("channel_overlap_max", "median"))
    rows = []
    for (f, c, a), r in per.iterrows():
        n = float(r.computed)
        rows.append({"form": f, "condition": c, "alpha": int(a), "features_computed": int(n),
                     "share_with_distinct_channel": float(r.computed_distinct / n) if n else None,
                     "share_with_private_channel": float(r.computed_private / n) if n else None,
                     "median_channel_size": float(r["size"]) if np.isfinite(r["size"]) else None,
                     "median_max_overlap": float(r.overlap)})
    return {"threshold": CHANNEL_THRESHOLD,
            "note": ("over every model: of the features computed, the share whose channel (SPEC §5, in the task's form) is "
                     "distinct (no other clause's channel contains it) and private (shares no unit: a code with overlap 0)"),
            "per_condition": rows}


def _prediction_summary(cells: pd.DataFrame, ctx: CapacityContext, k: int) -> dict[str, Any]:
    example = prediction(16, ctx.p, ctx.eps)
    where = []
    for (f, c, a), g in cells.groupby(COND_KEYS, sort=True):
        where.append({"form": f, "condition": c, "alpha": int(a),
                      "reached_at": [int(h) for h in g[g.verdict == "agrees"].hidden],
                      "below_at": [int(h) for h in g[g.verdict == "disagrees"].hidden],
                      "inconclusive_at": [int(h) for h in g[g.verdict == "inconclusive"].hidden]})
    return {
        "words": (f"Channel coding at dense activity (each feature active with probability p = {ctx.p:g}): a feature needs a "
                  f"code that no other active feature disturbs. Disjoint one-unit channels let W hidden units compute W "
                  f"features exactly; overlapping channels tolerate the other features on their units only up to "
                  f"W / (4 z² p (1-p)) features (z the normal quantile at 1 - ε), which at p = {ctx.p:g} and ε = {ctx.eps:g} "
                  f"is {example['overlapping'] / 16:.2f} W. So capacity = W: the width H for dense networks, α·H for FPE "
                  f"children (α times dense at the same nnz), exponent 1 in H; at capacity the dense nnz is about "
                  f"(k+1)·α·H², so capacity ~ sqrt(α·nnz/(k+1)), exponent 1/2 in nnz. Derivation: docs/concepts.md."),
        "code": example["code"],
        "units_to_capacity": {"disjoint": 1.0, "overlapping": example["overlapping"] / 16},
        "exponent_width": 1.0, "exponent_nnz": 0.5,
        "fpe_ratio": {str(a): float(a) for a in ALPHAS},
        "per_width": [{"form": r.form, "condition": r.condition, "alpha": int(r.alpha), "hidden": int(r.hidden),
                       "predicted": r.predicted, "capacity": r.capacity_mean, "verdict": r.verdict, "p": r.p}
                      for r in cells.itertuples()],
        "where_it_holds": where,
        "reached_means": f"capacity at least {REACHED:.0%} of the predicted count (paired non-inferiority test, one feature resolution)",
        "nnz_at_capacity": {"formula": "H (C k + 1) + C (H + 1) for a dense network, C = alpha H", "clause_size": k},
    }


def finish(df: pd.DataFrame, ctx: CapacityContext) -> Outputs:
    """Capacity, fits, prediction, FPE's effect, duality and channels from the results table."""
    cap = capacity_table(df, ctx.share)
    st = capacity_stats(cap, ctx.p, ctx.eps)
    fits = pd.concat([exponent_fits(cap, "width"), exponent_fits(cap, "nnz")], ignore_index=True)
    eff = fpe_effect(cap)
    dual = duality(cap)
    cells = prediction_cells(cap, ctx.p, ctx.eps)
    counts = _counts(df)
    res = resolution_check(st)
    warn = []
    cens = cap[cap.censored]
    if len(cens):
        cells_c = sorted({(r.form, r.condition, int(r.alpha), int(r.hidden)) for r in cens.itertuples()})
        warn.append(f"{len(cens)} of {len(cap)} capacities are highest at the largest load run (they may lie beyond the grid): "
                    + ", ".join(f"{f} {label(c, a)} H={h}" for f, c, a, h in cells_c[:8]) + ("…" if len(cells_c) > 8 else ""))
    if int(df.capacity_trivial.sum()):
        warn.append(f"{int(df.capacity_trivial.sum())} features (over all models) have labels so unbalanced that a constant "
                    f"output passes eps; they are counted as computed")
    sig = dual[dual.q_differ < stats.ALPHA] if len(dual) else dual
    if len(sig):
        warn.append("CNF and DNF capacities differ significantly for " + ", ".join(label(r.condition, r.alpha) for r in sig.itertuples())
                    + ": the duality of SPEC §1 says they cannot; look for a bug")
    for w in warn:
        log.warning("computational_capacity: %s", w)
    summary: dict[str, Any] = {
        "capacity": _public(st).to_dict("records"),
        "fit": {"exponent": _fit_records(fits), "method": ("per trial, least squares of log capacity on log size over the "
                                                             "widths; mean over trials with its 95% t-interval")},
        "prediction": _prediction_summary(cells, ctx, CLAUSE_SIZE),
        "fpe_effect": _public(eff).to_dict("records"),
        "duality": {"note": ("a CNF task is distributed as the label-negated DNF task (SPEC §1): the capacities must agree. "
                             + (f"The {ctx.forms[1].upper()} arm runs widths {','.join(map(str, ctx.widths[ctx.forms[1]]))}."
                                if len(ctx.forms) > 1 else "Not run: one form.")),
                     "tests": [{**{k: v for k, v in r.items() if k != "result"},
                                "verdict": stats.verdict(f"{label(r['condition'], r['alpha'])}: CNF capacity equals DNF capacity "
                                                         f"(within 25%)", r["result"], q=_q(r["q"]),
                                                         family_size=_size(r["family_size"]))}
                               for r in dual.to_dict("records")] if len(dual) else []},
        "channels": _channels(df),
        "resolution": res,
        "convergence": _convergence(df, cap),
        "warnings": warn,
        "paper": _claims(fits, eff),
    }
    figs = {"capacity": capacity_figure(st, fits, ctx.caption), "loads": load_figure(df, ctx.caption),
            "capacity_nnz": nnz_figure(cap, fits, CLAUSE_SIZE, ctx.caption), "fpe_effect": fpe_figure(st, ctx.caption),
            "channels": channel_figure(df, ctx.caption)}
    return Outputs(stats=_public(st), summary=summary, figures=figs,
                   tables={"counts": counts, "fits": _public(fits)}, lines=_lines)


def _lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    for w in summary.get("warnings", []):
        lines.append(f"warning: {w}")
    lines.append(f"{'form':<5}{'condition':<14}{'exponent in H':>26}{'exponent in nnz':>26}{'FPE ratio (same nnz)':>30}")
    fits = {(f["form"], f["condition"], f["alpha"], f["against"]): f for f in summary["fit"]["exponent"]}
    eff = {(r["form"], r["condition"], r["alpha"]): r for r in summary["fpe_effect"]}
    for (form, cond, alpha, against), f in fits.items():
        if against != "width":
            continue
        g = fits.get((form, cond, alpha, "nnz"))
        e = eff.get((form, cond, alpha))
        ratio = _interval_text(e["ratio"], e["ratio_ci_low"], e["ratio_ci_high"], "x") if e else "-"
        lines.append(f"{form:<5}{label(cond, alpha):<14}"
                     f"{_interval_text(f['exponent'], *f['interval']):>26}"
                     f"{_interval_text(g['exponent'], *g['interval']) if g else '-':>26}{ratio:>30}")
    lines.append("prediction (channel coding): capacity = hidden units; exponent 1 in H, 1/2 in nnz; FPE up to α× at the same nnz")
    for w in summary["prediction"]["where_it_holds"]:
        lines.append(f"  {w['form']} {label(w['condition'], w['alpha']):<14} reaches {REACHED:.0%} of it at H={w['reached_at']}, "
                     f"below at H={w['below_at']}, inconclusive at H={w['inconclusive_at']}")
    for rec in summary["paper"]:
        q = rec["q"] if rec["q"] is not None else rec["p"]
        lines.append(f"  [{rec['verdict']}] {rec['claim']}: {rec['measured']}"
                     + (f" (q={q:.2g})" if q is not None else f" ({rec['reason']})"))
    return lines


STUDY = register(CapacityStudy())
main = study_main(STUDY)


if __name__ == "__main__":
    sys.exit(main())
