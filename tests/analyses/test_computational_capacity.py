"""The computational-capacity study: its tables from hand-made results (known answers),
the exponent fit on synthetic data with a known exponent, channel coding's prediction
against hand-worked values, bad options refused before any work, and the command end
to end at the tiny level (budgets equal across conditions, every claim's verdict
consistent with its numbers)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import analyses.computational_capacity as cc
from analyses.columns import unknown
from fci import stats
from fci.models.mlp import MaskedMLP
from tests.helpers import refusal, run_tiny

pytestmark = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # scipy, near-constant pairs

Z98 = 2.053748910631823  # the standard normal quantile at 0.98, from a table


# --------------------------------------------------------------------------- the prediction


def test_prediction_worked_by_hand():
    p = cc.prediction(16, p=0.5, eps=0.02)
    # disjoint one-unit channels: 16; overlapping channels: 16 / (4 z^2 p (1-p)) = 16 / z^2
    assert p["disjoint"] == 16 and p["overlapping"] == pytest.approx(16 / Z98**2) == pytest.approx(3.7934, abs=1e-4)
    assert p["capacity"] == 16 and p["code"].startswith("disjoint")
    sparse = cc.prediction(16, p=0.03, eps=0.02)  # 4 z^2 * 0.03 * 0.97 = 0.49096...: superposition wins
    assert sparse["overlapping"] == pytest.approx(16 / (4 * Z98**2 * 0.03 * 0.97)) == pytest.approx(32.589, abs=1e-3)
    assert sparse["capacity"] == sparse["overlapping"] and sparse["code"].startswith("overlapping")
    assert cc.prediction(0)["capacity"] == 0
    for bad in ({"units": -1}, {"units": 4, "p": 0.0}, {"units": 4, "eps": 1.0}, {"units": 2.5}):
        with pytest.raises(ValueError):
            cc.prediction(**bad)


def test_dense_nnz_is_the_nnz_of_a_dense_network():
    for hidden, clauses in ((4, 4), (8, 12), (3, 7)):
        model = MaskedMLP(3 * clauses, hidden, clauses, seed=0)  # every weight and bias non-zero
        assert cc.dense_nnz(hidden, clauses, 3) == model.nnz()
    assert cc.dense_nnz(4, 4, 3) == 4 * 13 + 4 * 5 == 72


def test_grid_brackets_each_width_with_its_own_loads():
    g = cc.GRIDS["full"]
    assert g.loads_for(4) == [2, 3, 4, 6, 8, 12, 16] and g.loads_for(16)[-1] == 64
    assert g.loads_for(32) == [16, 24, 32, 48, 64, 96] and g.loads_for(64) == [32, 48, 64, 96, 128]
    assert g.loads_for(4, [0.1, 0.25, 0.3]) == [1]  # rounded, at least one clause, distinct
    assert cc.GRIDS["quick"].loads_for(16) == [8, 16, 24, 32, 48]


# --------------------------------------------------------------------------- tables from hand-made results


def _results(rows):
    """results.csv rows: (form, condition, alpha, hidden, trial, F, count, nnz)."""
    out = []
    for form, cond, alpha, hidden, trial, F, count, nnz in rows:
        out.append({"form": form, "condition": cond, "alpha": alpha, "hidden": hidden, "trial": trial, "n_clauses": F,
                    "capacity_count": count, "capacity_share": count / F, "nnz": nnz, "converged": True})
    return pd.DataFrame(out)


def test_capacity_from_a_hand_made_results_table():
    df = _results([
        # dense H=4, trial 0: computes 2 of 2, 4 of 4, 1 of 8 -> capacity 4 at load 4
        ("dnf", "dense", 1, 4, 0, 2, 2, 50), ("dnf", "dense", 1, 4, 0, 4, 4, 90), ("dnf", "dense", 1, 4, 0, 8, 1, 170),
        # trial 1: 2, 3, 3 -> capacity 3, first reached at load 4, and as high at the top load (censored);
        # the share 0.9 holds at load 2 only
        ("dnf", "dense", 1, 4, 1, 2, 2, 50), ("dnf", "dense", 1, 4, 1, 4, 3, 90), ("dnf", "dense", 1, 4, 1, 8, 3, 170),
        # the clause child: 2, 4, 8 -> every load computed: censored at the top
        ("dnf", "clause", 2, 4, 0, 2, 2, 50), ("dnf", "clause", 2, 4, 0, 4, 4, 90), ("dnf", "clause", 2, 4, 0, 8, 8, 170),
        ("dnf", "clause", 2, 4, 1, 2, 2, 50), ("dnf", "clause", 2, 4, 1, 4, 4, 90), ("dnf", "clause", 2, 4, 1, 8, 6, 170),
    ])
    cap = cc.capacity_table(df, share=0.9).set_index(["condition", "trial"])
    d0, d1, c0, c1 = cap.loc[("dense", 0)], cap.loc[("dense", 1)], cap.loc[("clause", 0)], cap.loc[("clause", 1)]
    assert (d0.capacity, d0.capacity_load, d0.capacity_nnz, d0.critical_load, d0.censored) == (4, 4, 90, 4, False)
    assert (d1.capacity, d1.capacity_load, d1.capacity_nnz, d1.critical_load, d1.censored) == (3, 4, 90, 2, True)
    assert (c0.capacity, c0.capacity_load, c0.critical_load, c0.censored, c0.units) == (8, 8, 8, True, 8)
    assert (c1.capacity, c1.critical_load, c1.censored) == (6, 4, True)
    assert (d0.units, d0.loads) == (4, 3)

    st = cc.capacity_stats(cc.capacity_table(df)).set_index("condition")
    dense, child = st.loc["dense"], st.loc["clause"]
    assert dense.capacity_mean == 3.5 and dense.capacity_sem == pytest.approx(0.5)
    assert dense.capacity_ci_high - dense.capacity_mean == pytest.approx(12.706204736 * 0.5)  # t(0.975, 1 df)
    assert dense.predicted == 4 and child.predicted == 8 and child.efficiency_mean == pytest.approx(7 / 8)
    assert child.diff_mean == 3.5 and child.ratio_mean == pytest.approx(math.sqrt((8 / 4) * (6 / 3)))  # geometric mean
    assert child.censored == 2 and dense.censored == 1 and math.isnan(dense.p) and child.p == pytest.approx(
        stats.paired_test([8, 6], [4, 3], resolution=1.0).p)
    assert child.q == pytest.approx(child.p) and child.family_size == 1  # one child cell: a family of one


def _cap_table(exponents, widths=(4, 8, 16, 32, 64), scale=(1.0, 1.3, 0.8, 1.1, 0.9), forms=("dnf",)):
    """Capacities c_t * H^b (per condition b) and nnz 4 H * capacity, per trial t."""
    rows = []
    for form in forms:
        for (cond, alpha), b in exponents.items():
            for t, c in enumerate(scale):
                for h in widths:
                    capacity = c * h ** b
                    rows.append({"form": form, "condition": cond, "alpha": alpha, "hidden": h, "trial": t, "units": alpha * h,
                                 "capacity": capacity, "capacity_nnz": 4.0 * h * capacity, "censored": False,
                                 "converged": True})
    return pd.DataFrame(rows)


def test_the_fit_recovers_a_known_exponent():
    cap = _cap_table({("dense", 1): 0.7, ("clause", 2): 1.0})
    width = cc.exponent_fits(cap, "width").set_index("condition")
    assert width.loc["dense"].exponent == pytest.approx(0.7) and width.loc["clause"].exponent == pytest.approx(1.0)
    assert width.loc["dense"].n == 5 and width.loc["dense"].widths == "4,8,16,32,64"
    assert width.loc["dense"].pooled_exponent == pytest.approx(0.7)
    # nnz = 4 H c H^b, so capacity ~ nnz^(b / (1 + b))
    nnz = cc.exponent_fits(cap, "nnz").set_index("condition")
    assert nnz.loc["dense"].exponent == pytest.approx(0.7 / 1.7) and nnz.loc["clause"].exponent == pytest.approx(0.5)
    # a constant slope has no measured variance: the exact sign-flip tests decide, 5 trials give p = 1/32
    assert width.loc["clause"].p == pytest.approx(1 / 32) and width.loc["dense"].p_beyond == pytest.approx(1 / 32)
    assert stats.verdict("b = 1", width.loc["dense"].result)["verdict"] == "disagrees"
    assert stats.verdict("b = 1", width.loc["clause"].result)["verdict"] == "agrees"


def test_the_fit_on_noisy_trials_has_an_interval_around_the_exponent():
    rng = np.random.default_rng(0)
    cap = _cap_table({("dense", 1): 0.8}, scale=tuple(rng.uniform(0.8, 1.2, 8)))
    cap["capacity"] *= np.exp(rng.normal(0, 0.05, len(cap)))
    fit = cc.exponent_fits(cap, "width").iloc[0]
    assert fit.exponent_ci_low < 0.8 < fit.exponent_ci_high and fit.exponent_ci_high - fit.exponent_ci_low < 0.1
    slopes = [np.polyfit(np.log(g.hidden), np.log(g.capacity), 1)[0] for _, g in cap.groupby("trial")]
    assert fit.exponent == pytest.approx(np.mean(slopes))
    with pytest.raises(ValueError, match="against"):
        cc.exponent_fits(cap, "depth")


def test_fpe_effect_duality_and_where_the_prediction_holds():
    cap = _cap_table({("dense", 1): 1.0, ("clause", 2): 1.0}, widths=(4, 8, 16), forms=("dnf", "cnf"))
    cap.loc[cap.condition == "clause", "capacity"] *= 2  # the children compute twice as many features
    eff = cc.fpe_effect(cap).set_index(["form", "condition"])
    assert eff.loc[("dnf", "clause")].ratio == pytest.approx(2.0) and eff.loc[("dnf", "clause")].p == pytest.approx(1 / 16)
    rec = stats.verdict("children compute more", eff.loc[("dnf", "clause")].result, expect="greater")
    assert rec["verdict"] == "inconclusive"  # a constant ratio over 5 trials: the sign-flip floor 1/16 two-sided
    dual = cc.duality(cap).set_index("condition")
    assert dual.loc["dense"].ratio == pytest.approx(1.0) and dual.loc["dense"].widths == "4,8,16"
    assert dual.loc["dense"].p_differ == 1.0  # CNF and DNF equal in every trial
    assert cc.duality(cap[cap.form == "dnf"]).empty  # one form: nothing to compare

    # capacity = the predicted units at every trial (dense), then half of them (clause child at alpha 2 = 2 H units)
    cap2 = _cap_table({("dense", 1): 1.0, ("clause", 2): 1.0}, widths=(4, 8), scale=(1.0,) * 5)
    cells = cc.prediction_cells(cap2).set_index(["condition", "hidden"])
    assert cells.loc[("dense", 4)].verdict == "agrees" and cells.loc[("dense", 4)].p == pytest.approx(1 / 32)
    assert cells.loc[("clause", 8)].predicted == 16 and cells.loc[("clause", 8)].verdict == "disagrees"


def test_resolution_check_names_overlapping_intervals():
    st = pd.DataFrame([
        {"form": "dnf", "condition": "dense", "alpha": 1, "hidden": 4, "capacity_mean": 3.0, "capacity_ci_low": 2.5, "capacity_ci_high": 3.5},
        {"form": "dnf", "condition": "dense", "alpha": 1, "hidden": 8, "capacity_mean": 7.0, "capacity_ci_low": 6.0, "capacity_ci_high": 8.0},
        {"form": "dnf", "condition": "dense", "alpha": 1, "hidden": 16, "capacity_mean": 14.0, "capacity_ci_low": 7.5, "capacity_ci_high": 20.0},
    ])
    res = cc.resolution_check(st)
    assert (res["pairs"], res["resolved"]) == (2, 1) and res["unresolved"][0]["widths"] == [8, 16]


# --------------------------------------------------------------------------- the command


@pytest.fixture
def no_training(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("training started before the options were checked")

    monkeypatch.setattr(cc, "run_fpe", boom)


@pytest.mark.parametrize("argv, flag", [
    (["--form", "xyz"], "--form: invalid choice"),
    (["--eps", "0"], "--eps must be a number in (0, 1), got 0"),
    (["--eps", "1"], "--eps must be a number in (0, 1), got 1"),
    (["--eps", "1.5"], "--eps must be a number in (0, 1), got 1.5"),
    (["--eps", "-0.1"], "--eps must be a number in (0, 1)"),
    (["--eps", "often"], "--eps: must be a number"),
    (["--share", "0"], "--share must be a number in (0, 1]"),
    (["--outputs", "dnf"], "--outputs: computational capacity counts features one output each"),
    (["--p", "0.01"], "--p: each feature would be true with probability 0.01"),
    # balanced planting at 64 clauses: each is true with probability 1 - 2**(-1/64) = 0.0108 < eps
    (["--p", "balanced", "--widths", "64"], "--p: each feature would be true with probability 0.0108 at 64 clauses"),
    (["--widths", "0,4"], "--widths values must be >= 1"),
    (["--loads", "1,-2"], "--loads values must be > 0"),
    (["--dual-widths", "x"], "--dual-widths must be comma-separated integers"),
    (["--vars", "5"], "--vars: n_vars must be >= n_clauses * clause_size"),
    (["--lr", "0"], "--lr: lr must be a number in (0, 1000]"),
])
def test_bad_options_are_refused_in_one_line_before_any_work(no_training, tmp_path, capsys, argv, flag):
    code, err = refusal(cc.main, ["--tiny", "--data", str(tmp_path / "d"), *argv], capsys)
    assert code == 2
    err = err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and argv[0] in err[0], err
    assert not (tmp_path / "d" / "store").exists()  # nothing ran


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("capacity")
    run_tiny(cc.main, root)
    return root / "out"


def test_tiny_run_end_to_end(tiny_run):
    df = pd.read_csv(tiny_run / "results.csv")
    assert unknown(df.columns) == []
    assert set(df.form) == {"dnf", "cnf"} and set(df.condition) == {"dense", "restart", "clause", "random"}
    assert set(zip(df.condition, df.alpha)) == {("dense", 1), ("restart", 1), ("clause", 2), ("random", 2), ("clause", 4),
                                                ("random", 4)}
    # the budget: every condition of a (form, width, load, trial) has the dense parent's exact nnz
    assert (df.groupby(["form", "hidden", "n_clauses", "trial"]).nnz.nunique() == 1).all()
    assert (df.width == df.hidden * df.alpha).all() and np.allclose(df.load, df.n_clauses / df.hidden)
    assert (df.capacity_count <= df.n_clauses).all() and np.allclose(df.capacity_share, df.capacity_count / df.n_clauses)
    assert (df.computed_private <= df.computed_distinct).all() and (df.computed_distinct <= df.capacity_count).all()
    assert (df.channels_private <= df.channels_distinct).all() and (df.capacity_trivial == 0).all()
    g = cc.GRIDS["tiny"]
    assert len(df) == 2 * sum(len(g.loads_for(h)) for h in g.widths) * g.trials * 6

    summary = json.loads((tiny_run / "summary.json").read_text())
    assert {"capacity", "fit", "prediction", "fpe_effect", "duality", "channels", "paper"} <= set(summary)
    assert summary["fit"]["exponent"] and all({"exponent", "interval", "predicted"} <= set(f) for f in summary["fit"]["exponent"])
    pred = summary["prediction"]
    assert pred["words"] and pred["exponent_width"] == 1.0 and pred["exponent_nnz"] == 0.5
    assert {(r["hidden"], r["predicted"]) for r in pred["per_width"] if r["condition"] == "dense"} == {(4, 4.0), (8, 8.0)}
    for rec in summary["paper"]:
        assert stats.check_verdict(rec) is None, rec
        assert rec["verdict"] in stats.VERDICTS and rec["regime"] and rec["source"]
    assert len(summary["paper"]) == 2 * (5 + 4)  # per form: the nnz exponent of dense and 4 children, FPE of 4 children
    assert summary["config"]["forms"] == ["dnf", "cnf"] and summary["config"]["eps"] == 0.02
    for name in ("capacity", "loads", "capacity_nnz", "fpe_effect", "channels"):
        assert f"{name}.html" in summary["figures"] and (tiny_run / f"{name}.html").exists()
    st = pd.read_csv(tiny_run / "stats.csv")
    assert {"capacity_mean", "capacity_ci_low", "capacity_ci_high", "predicted", "ratio_mean", "q"} <= set(st.columns)
    assert len(st) == 2 * 2 * 6  # forms x widths x conditions
    assert {"n_clauses", "capacity_count_mean", "q"} <= set(pd.read_csv(tiny_run / "counts.csv").columns)


def test_one_form_runs_without_the_duality_arm(tmp_path):
    out = tmp_path / "out"
    assert cc.main(["--tiny", "--device", "cpu", "--out", str(out), "--data", str(tmp_path / "d"), "--form", "cnf",
                    "--dual-widths", "none", "--widths", "4", "--loads", "1", "--trials", "2", "--splits", "clause"]) == 0
    df = pd.read_csv(out / "results.csv")
    assert set(df.form) == {"cnf"} and set(df.n_clauses) == {4} and set(df.condition) == {"dense", "restart", "clause"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["duality"]["tests"] == [] and "Not run" in summary["duality"]["note"]
