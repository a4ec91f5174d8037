"""fci.sparsity (static random sparsity at a fixed non-zero budget) and the
wide_sparse study: known answers on hand-made inputs, exact budgets, and the
command end to end on its --tiny level."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import fci.sparsity.static  # noqa: F401  (the module the test patches)
from analyses import wide_sparse as ws
from fci import sparsity
from fci.models.mlp import MaskedMLP
from fci.sparsity.static import (
    connectivity,
    dense_nnz,
    layer_budgets,
    max_width,
    possible_weights,
    random_masks,
    sparse_mlp,
    weight_budget,
)
from fci.stats import check_verdict
from fci.train import TrainConfig, train_models
from tests.helpers import refusal, tiny_run_fixture

pytestmark = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")


# --------------------------------------------------------------------------- fci.sparsity


def test_dense_counts_by_hand():
    assert possible_weights(24, 8, 1) == 24 * 8 + 8
    assert dense_nnz(24, 8, 1) == 24 * 8 + 8 + 8 + 1 == 209
    assert dense_nnz(5, [3, 2], 4) == 15 + 6 + 8 + 3 + 2 + 4
    assert weight_budget(24, 32, 1, 209) == 209 - 33
    assert max_width(24, 1, 209) == 206


def test_layer_budgets_known_answers():
    # shares 176*768/800 = 168.96 and 176*32/800 = 7.04: floors 168 + 7, the spare weight to the larger remainder
    assert layer_budgets([24, 32, 1], 176) == [169, 7]
    # shares 1.92 and 0.08 would give [2, 0]: every layer keeps one
    assert layer_budgets([24, 128, 1], 2) == [1, 1]
    assert layer_budgets([4, 4, 4], 32) == [16, 16]  # everything
    for n in range(3, 3 * 10 + 10 * 2 + 1):
        c = layer_budgets([3, 10, 2], n)
        assert sum(c) == n and 1 <= c[0] <= 30 and 1 <= c[1] <= 20
        assert abs(c[0] - n * 30 / 50) <= 1  # proportional up to rounding


def test_random_masks_exact_counts_uniform_and_nested():
    sizes = [6, 5, 2]
    counts = layer_budgets(sizes, 12)
    freq = [torch.zeros(5, 6), torch.zeros(2, 5)]
    trials = 3000
    for s in range(trials):
        ms = random_masks(sizes, 12, seed=s)
        assert [int(m.sum()) for m in ms] == counts
        assert [tuple(m.shape) for m in ms] == [(5, 6), (2, 5)]
        for f, m in zip(freq, ms):
            f += m
    for f, k in zip(freq, counts):
        p = k / f.numel()
        sd = math.sqrt(p * (1 - p) / trials)
        assert (f / trials - p).abs().max() < 5 * sd  # every position equally likely
    small, big = random_masks([24, 16, 1], 30, seed=7), random_masks([24, 16, 1], 200, seed=7)
    for a, b in zip(small, big):
        assert bool((a <= b).all())  # same seed: a smaller budget keeps a subset


@pytest.mark.parametrize("width", [8, 9, 16, 32, 64, 128, 206])
def test_sparse_mlp_holds_the_budget_exactly(width):
    budget = dense_nnz(24, 8, 1)
    m = sparse_mlp(24, width, 1, budget, seed=3)
    assert m.nnz() == budget
    split = m.nnz_split()
    assert split["biases"] == width + 1  # biases are kept
    assert split["weights"] == budget - width - 1
    assert connectivity(m) == pytest.approx(split["weights"] / (width * 25))
    dense = MaskedMLP(24, width, 1, seed=3)
    for l in range(2):  # kept weights are the dense model's initial weights
        mask = m.weight_mask(l).bool()
        assert torch.equal(m.weights[l][mask], dense.weights[l][mask])
        assert bool((m.weights[l][~mask] == 0).all())


def test_sparse_mlp_at_the_base_width_is_the_dense_model():
    m, d = sparse_mlp(24, 8, 1, 209, seed=5), MaskedMLP(24, 8, 1, seed=5)
    assert connectivity(m) == 1.0 and m.nnz() == d.nnz() == 209
    assert all(torch.equal(a, b) for a, b in zip(m.weights, d.weights))


def test_sparse_mlp_replaces_exact_zero_initial_values(monkeypatch):
    class ZeroInit(MaskedMLP):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            with torch.no_grad():
                for w, b in zip(self.weights, self.biases):
                    w.zero_()
                    b.zero_()

    monkeypatch.setattr(sparsity.static, "MaskedMLP", ZeroInit)
    m = sparse_mlp(10, 20, 2, 100, seed=0)
    assert m.nnz() == 100


def test_deeper_sparse_mlp_and_rescaled_init():
    budget = dense_nnz(10, [4, 4], 3)
    m = sparse_mlp(10, [8, 8], 3, budget, seed=1, rescale=True)
    assert m.nnz() == budget
    plain = sparse_mlp(10, [8, 8], 3, budget, seed=1)
    for l in range(3):
        c = float(m.weight_mask(l).mean())
        mask = m.weight_mask(l).bool()
        assert torch.allclose(m.weights[l][mask], plain.weights[l][mask] / math.sqrt(c))


def test_budget_errors_are_clear():
    with pytest.raises(ValueError, match="exceeds the 209"):
        sparse_mlp(24, 8, 1, 210)
    with pytest.raises(ValueError, match="at least one weight"):
        sparse_mlp(24, 208, 1, 209)  # 209 biases, no weight left
    with pytest.raises(ValueError, match="at least one weight"):
        sparse_mlp(24, 207, 1, 209)  # one weight for two layers
    with pytest.raises(ValueError, match="positive integer"):
        sparse_mlp(24, 8, 1, 100.5)
    with pytest.raises(ValueError, match=r"\[2, 20\]"):
        layer_budgets([2, 5, 2], 21)
    with pytest.raises(ValueError, match="cannot hold any"):
        max_width(24, 1, 3)


def test_training_keeps_the_pattern_and_the_budget():
    budget = dense_nnz(6, 2, 1)
    models = [sparse_mlp(6, w, 1, budget, seed=w) for w in (4, 8)]
    masks = [[m.weight_mask(l).clone() for l in range(2)] for m in models]
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 6, generator=g) > 0.5).to(torch.uint8)
    y = (x[:, :1] ^ x[:, 1:2]).to(torch.uint8)
    res = train_models(models, [(x, y, x, y)] * 2, TrainConfig(lr=0.05, batch_size=16), 5, device="cpu")
    for r, mk in zip(res, masks):
        assert r.model.nnz() == budget
        for l in range(2):
            assert torch.equal(r.model.weight_mask(l), mk[l])
            assert bool((r.model.weights[l][mk[l] == 0] == 0).all())


# --------------------------------------------------------------------------- study helpers on hand-made tables


def _synthetic(peak: dict[int, int], trials: int = 3) -> pd.DataFrame:
    """Rows as the study writes them for n_in=24, O=1; sparse accuracy peaks at width peak[H0]."""
    rows = []
    for h0, wpk in peak.items():
        budget = dense_nnz(24, h0, 1)
        for a in (1, 2, 4, 8):
            w = h0 * a
            c = (budget - w - 1) / (25 * w)
            for s in range(trials):
                acc = 0.9 - 0.05 * abs(math.log2(w / wpk)) + 0.001 * s
                if a == 1:
                    rows.append({"condition": "dense", "width": w, "seed": s, "test_accuracy": acc, "train_accuracy": acc,
                                 "test_loss": 1 - acc, "nnz": budget, "connectivity": 1.0, "no_input_units": 0})
                    continue
                for cond in ("sparse", "fpe"):
                    rows.append({"condition": cond, "base_width": h0, "alpha": a, "width": w, "budget": budget, "seed": s,
                                 "test_accuracy": acc, "train_accuracy": acc, "test_loss": 1 - acc, "nnz": budget,
                                 "connectivity": c, "no_input_units": 0})
                rows.append({"condition": "dense", "width": w, "seed": s, "test_accuracy": 0.95, "train_accuracy": 1.0,
                             "test_loss": 0.05, "nnz": dense_nnz(24, w, 1), "connectivity": 1.0, "no_input_units": 0})
    df = pd.DataFrame(rows)  # a dense model that is one budget's base and another's wide model keeps its base accuracy
    df = df.assign(_wide=df.test_accuracy == 0.95).sort_values("_wide", kind="stable").drop(columns="_wide")
    return df.drop_duplicates(subset=["condition", "width", "seed", "base_width"], keep="first").reset_index(drop=True)


def test_stats_and_optima_on_a_hand_made_table():
    df = _synthetic({2: 8, 4: 8})
    st = ws.study_stats(df)
    sp2 = st[(st.base_width == 2) & (st.condition == "sparse")].set_index("width")
    assert list(sp2.index) == [2, 4, 8, 16]
    assert sp2.loc[2, "connectivity_mean"] == 1.0 and math.isnan(sp2.loc[2, "p_vs_base"])
    assert sp2.loc[8, "gain_vs_base_mean"] == pytest.approx(0.10)  # two octaves from the base, 0.05 each
    # a constant paired difference over 3 trials: no variance to test, so the exact sign-flip test, 2 / 2**3
    assert sp2.loc[8, "p_vs_base"] == 0.25 and sp2.loc[8, "q_vs_base"] == 0.25
    assert (st[st.condition == "sparse"].nnz_over_budget == 1).all()
    dn = st[(st.base_width == 2) & (st.condition == "dense")].set_index("width")
    assert dn.loc[16, "nnz_over_budget"] == pytest.approx(dense_nnz(24, 16, 1) / 53)
    opt = ws.optima(df, st).set_index("base_width")
    assert opt.loc[2, "width_star"] == 8 and opt.loc[4, "width_star"] == 8
    assert opt.loc[2, "interior"] and opt.loc[4, "interior"]
    assert opt.loc[2, "c_star"] == pytest.approx((53 - 9) / 200)
    assert opt.loc[2, "c_refined"] == pytest.approx(opt.loc[2, "c_star"], rel=0.2)  # symmetric peak
    claims = ws.paper_comparison(df, st, opt.reset_index(), ws.np_check(opt.reset_index(), 24, 1))
    assert all(check_verdict(c) is None for c in claims) and len(claims) == 5
    # 2x widening gains 5 pp in both budgets in every trial: a constant difference, whose exact test cannot go below 2 / 2**3
    assert claims[0]["verdict"] == "inconclusive" and claims[0]["p"] == 0.25
    five = _synthetic({2: 8, 4: 8}, trials=5)
    st5 = ws.study_stats(five)
    opt5 = ws.optima(five, st5)
    claims = ws.paper_comparison(five, st5, opt5, ws.np_check(opt5, 24, 1))
    # optimum at width 8 in both budgets: width*c* = 1.76 vs 3.84 in every trial, a factor 2.2, beyond the 1.25 margin
    assert claims[3]["verdict"] == "disagrees" and claims[3]["p"] == 1 / 32 and "beyond the margin" in claims[3]["test"]
    assert claims[1]["verdict"] == "inconclusive"  # Page's test needs 3 budgets; two give no trend to test


def test_clause_coverage_by_hand():
    W = torch.tensor([[1.0, 1, 1, 0, 0, 0],
                      [0, 0, 0, 1, 1, 0],
                      [1, 0, 1, 1, 1, 1]])
    c0, c1 = ((0, True), (1, False), (2, True)), ((3, True), (4, True), (5, False))
    assert ws.clause_coverage(W, [c0, c1]) == (1.0, 1.0)  # unit 0 sees clause 0 whole, unit 2 clause 1
    W[0, 1] = 0.0
    assert ws.clause_coverage(W, [c0, c1]) == (0.5, 0.5)
    assert ws.clause_coverage(torch.ones(4, 6), [c0, c1]) == (1.0, 4.0)


def test_np_check_known_answers():
    # optima exactly on width * c = 4: slope -1, CV 0
    opt = pd.DataFrame([{"base_width": h, "budget": dense_nnz(24, h, 1), "np_star": 4.0, "np_star_trials_mean": 4.0,
                         "np_star_trials_sem": 0.0,
                         "trials_star": [{"seed": s, "width": w, "connectivity": 4.0 / w, "test_accuracy": 0.9} for s in range(2)]}
                        for h, w in ((2, 8), (4, 16), (8, 64))])
    npc = ws.np_check(opt, 24, 1)
    assert npc["fit_width"]["slope"] == pytest.approx(-1.0)
    assert npc["np_star_cv"] == 0.0 and npc["slope_minus_one_within_2se"]
    assert npc["identity_np"][2] == pytest.approx(52 / 25)
    # optima that all sit at connectivity 0.5: slope 0, not -1
    for ts in opt.trials_star:
        for t in ts:
            t["connectivity"] = 0.5
    assert ws.np_check(opt, 24, 1)["fit_width"]["slope"] == pytest.approx(0.0, abs=1e-12)


def test_jobs_cover_the_sweep_with_exact_budgets():
    spec = {"name": "boolean", "task": ws.TaskConfig(n_clauses=8, n_train=64, n_test=64).to_dict()}
    jobs = ws.make_jobs(spec, (2, 4), (2, 4), [0, 1], TrainConfig())
    dense = sorted({j["width"] for j in jobs if j["condition"] == "dense"})
    assert dense == [2, 4, 8, 16]
    assert sum(j["condition"] == "sparse" for j in jobs) == sum(j["condition"] == "fpe" for j in jobs) == 8
    assert {j["budget"] for j in jobs if j.get("base_width") == 4} == {105}
    frac = ws.make_jobs(spec, (2,), (1.5, 2), [0], TrainConfig())
    assert sorted((j["condition"], j["width"]) for j in frac) == [
        ("dense", 2), ("dense", 3), ("dense", 4), ("fpe", 4), ("sparse", 3), ("sparse", 4)]  # FPE needs an integer alpha
    with pytest.raises(ValueError, match="must be an integer"):
        ws.sweep_widths(3, (1.5,))


# --------------------------------------------------------------------------- the command, end to end


tiny = tiny_run_fixture(ws.main, "wide_sparse")


def test_tiny_run_writes_everything(tiny):
    root, _ = tiny
    out = root / "out"
    for f in ("results.csv", "stats.csv", "summary.json", "wide_sparse.html", "wide_sparse.plotly.json"):
        assert (out / f).is_file(), f
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 8 + 8 + 8  # dense at widths 2,4,8,16; sparse and FPE at H0 in {2,4} x alpha in {2,4}; 2 trials
    for cond in ("sparse", "fpe"):
        g = df[df.condition == cond]
        assert (g.nnz == g.budget).all() and len(g) == 8  # the budget, exactly, after training
        assert (g.connectivity < 1).all()
    # sparse and FPE models of one width hold the same weight count
    m = df[df.condition == "sparse"].merge(df[df.condition == "fpe"], on=["base_width", "width", "seed"])
    assert (m.nnz_weights_x == m.nnz_weights_y).all()
    # the dense base model is the FPE parent's paired baseline (same init, data and epochs)
    base = df[df.condition == "dense"].set_index(["width", "seed"]).test_accuracy
    fpe = df[df.condition == "fpe"]
    assert np.allclose([base[(int(h), int(s))] for h, s in zip(fpe.base_width, fpe.seed)], fpe.dense_test_accuracy, atol=0.01)
    assert (df[df.condition == "dense"].clauses_covered == 1).all()  # a dense unit sees every clause
    assert df.clauses_covered.between(0, 1).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget_check"]["sparse_nnz_equals_budget"] and summary["budget_check"]["fpe_nnz_equals_budget"]
    assert len(summary["paper"]) == 5
    for c in summary["paper"]:
        assert check_verdict(c) is None and "analyses.regimes" in c["regime_map"] and {"measured", "note", "regime"} <= set(c)
    assert {o["base_width"] for o in summary["optima"]} == {2, 4}
    assert "slope" in summary["np_check"]["fit_width"]
    st = pd.read_csv(out / "stats.csv")
    assert set(st.condition) == {"sparse", "fpe", "dense"} and set(st.base_width) == {2, 4}


def test_rerun_trains_nothing(tiny, monkeypatch, capsys):
    root, argv = tiny

    def boom(*a, **k):
        raise AssertionError("rerun trained a model")

    monkeypatch.setattr(ws, "train_models", boom)
    monkeypatch.setattr(ws, "run_fpe", boom)
    assert ws.main(argv) == 0
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert summary["run"]["trained_jobs"] == 0 and summary["run"]["loaded_jobs"] == 24
    assert "paper comparison" in capsys.readouterr().out


@pytest.mark.parametrize("extra, flag", [
    (["--alphas", "1,2"], "--alphas"),
    (["--alphas", "2,x"], "--alphas"),
    (["--alphas", "2,3,2"], "--alphas"),
    (["--base-widths", "0"], "--base-widths"),
    (["--base-widths", "2,x"], "--base-widths"),
    (["--base-widths", "2", "--alphas", "60"], "--alphas/--base-widths"),
    (["--base-widths", "3", "--alphas", "1.5"], "--alphas/--base-widths"),
    (["--clauses", "0"], "--clauses"),
    (["--dataset", "mnist"], "--dataset"),
])
def test_bad_options_fail_before_any_work(tmp_path, capsys, extra, flag):
    code, err = refusal(ws.main, ["--tiny", "--device", "cpu", "--out", str(tmp_path / "o"), "--data", str(tmp_path / "d"),
                                  *extra], capsys)
    assert code == 2
    assert flag in err
    assert not (tmp_path / "d" / "store").exists()


def test_list_options_parse_and_normalise():
    from analyses.kinds import build_job_parser
    ap = build_job_parser(ws.STUDY)
    args = ap.parse_args(["--tiny", "--base-widths", " 4,2", "--alphas", "4.0, 2,3"])
    ws.validate(ap, args)
    assert args.base_widths == (2, 4) and args.alphas == (2, 3, 4) and all(type(a) is int for a in args.alphas)
    args = ap.parse_args(["--tiny", "--base-widths", "2", "--alphas", "2.5,2"])
    ws.validate(ap, args)
    assert args.alphas == (2, 2.5) and type(args.alphas[0]) is int
