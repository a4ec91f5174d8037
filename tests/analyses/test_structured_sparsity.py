"""fci.fpe.nm and fci.sparsity (N:M masks, exact-count pruning, prune-and-regrow) and the
structured_sparsity study end to end at the tiny level."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from analyses import structured_sparsity as study
from fci.fpe.mlp import expand
from fci.fpe.nm import expand_nm, nm_mask, nm_violations, parse_nm, sibling_overlap
from fci.fpe.splits import split_groups
from fci.models.mlp import MaskedMLP, MaskedMLPStack
from fci.sparsity.magnitude import prune_stack_to_nnz, prune_to_nnz
from fci.sparsity.regrow import DynamicSparsity, effective_weight_gradients, fit_dynamic, prune_and_regrow
from fci.stats import check_verdict
from fci.tasks import DNFTask
from fci.train import TrainConfig, fit
from tests.helpers import tiny_run_fixture

# --------------------------------------------------------------------------- N:M masks


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 4), n=st.integers(1, 13), group=st.sampled_from([2, 3, 4, 8]), data=st.data())
def test_nm_mask_keeps_the_largest_active_weights_of_every_group(rows, n, group, data):
    n_keep = data.draw(st.integers(1, group - 1))
    seed = data.draw(st.integers(0, 10_000))
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(rows, n, generator=g)
    M = (torch.rand(rows, n, generator=g) < 0.7).float()
    K = nm_mask(W, M, n_keep, group)
    assert K.shape == W.shape and nm_violations(K, n_keep, group) == 0
    assert bool((K <= M).all())  # a subset of the mask
    for r in range(rows):
        for s in range(0, n, group):
            act = M[r, s : s + group] != 0
            kept = K[r, s : s + group] != 0
            assert int(kept.sum()) == min(n_keep, int(act.sum()))
            dropped = act & ~kept
            if dropped.any():
                assert W[r, s : s + group].abs()[dropped].max() <= W[r, s : s + group].abs()[kept].min()


def test_nm_mask_by_hand():
    W = torch.tensor([[0.1, -0.9, 0.5, 0.2, 3.0, 1.0, -2.0, 0.0, 0.3, -0.4]])
    M = torch.tensor([[1, 1, 1, 1, 0, 1, 1, 1, 1, 1]], dtype=torch.float32)
    # groups [0..3] keep -0.9, 0.5; [4..7] (3.0 masked) keep 1.0, -2.0; the short group [8, 9] keeps both
    assert nm_mask(W, M, 2, 4).tolist() == [[0, 1, 1, 0, 0, 1, 1, 0, 1, 1]]
    assert nm_violations(torch.ones(2, 10), 2, 4) == 2 * 2  # two full groups per row hold 4 > 2
    assert parse_nm("2:4") == (2, 4) and parse_nm(" 1:8") == (1, 8)


@pytest.mark.parametrize("bad", ["4:2", "2:2", "0:4", "2-4", "a:b", "2:4:8"])
def test_bad_nm_patterns_are_rejected(bad):
    with pytest.raises(ValueError, match="N:M|n_keep|positive"):
        parse_nm(bad)


def _trained_parent(seed=0, hidden=6, epochs=5):
    task = DNFTask.generate(n_clauses=6, clause_size=3, seed=seed)
    x, y = task.sample(256, seed=1)
    parent = MaskedMLP(task.n_vars, hidden, 1, seed=seed)
    stack = MaskedMLPStack.from_models([parent])
    fit(stack, x[None], y[None], TrainConfig(batch_size=64, lr=0.02), range(epochs))
    return stack.to_models()[0], task


@pytest.mark.parametrize("alpha", [2, 4])
@pytest.mark.parametrize("split", ["random", "clause"])
def test_expand_nm_pattern_budget_and_disjoint_children(alpha, split):
    parent, task = _trained_parent()
    child = expand_nm(parent, alpha, split, 2, 4, clauses=task.clauses, seed=3)
    info = child.expansion_info
    assert nm_violations(child.weight_mask(0), 2, 4) == 0
    assert sibling_overlap(child) == 0.0  # children still share no input
    assert child.nnz() == parent.nnz() - info["below_budget"] and info["below_budget"] >= 0
    assert bool((child.parent_index == torch.arange(parent.hidden[0]).repeat_interleave(alpha)).all())
    # the partition of plain FPE with the same seed: every kept input of unit (i, a) lies in group a of parent i
    groups = split_groups(parent.weights[0].detach(), parent.weight_mask(0), alpha, split, clauses=task.clauses, seed=3)
    in_group = groups[child.parent_index] == torch.arange(alpha).repeat(parent.hidden[0])[:, None]
    assert bool(((child.weight_mask(0) != 0) <= in_group).all())
    excess = expand(parent, alpha, split, clauses=task.clauses, seed=3).expansion_info["pruned"]
    assert (info["below_budget"] == 0) == (info["nm_removed"] <= excess)


def test_expand_nm_equals_expand_when_the_pattern_does_not_bind():
    parent, _ = _trained_parent(hidden=4)
    # alpha 4 over 18 inputs: a child holds at most 5 inputs, so 7:8 removes nothing
    child = expand_nm(parent, 4, "random", 7, 8, seed=1)
    plain = expand(parent, 4, "random", seed=1)
    assert child.expansion_info["nm_removed"] == 0
    for k, v in plain.tensors().items():
        assert torch.equal(v, child.tensors()[k]), k


# --------------------------------------------------------------------------- pruning to an exact count


def test_prune_to_nnz_removes_the_smallest_weights_exactly():
    m = MaskedMLP(3, 2, 1, seed=0)
    with torch.no_grad():
        m.weights[0].copy_(torch.tensor([[0.5, -0.1, 2.0], [0.3, -4.0, 0.05]]))
        m.weights[1].copy_(torch.tensor([[0.2, -1.0]]))
    assert m.nnz() == 6 + 2 + 2 + 1
    p = prune_to_nnz(m, 8)  # the 3 smallest |w| over both layers: 0.05, -0.1, 0.2
    assert p.nnz() == 8 and m.nnz() == 11  # a copy
    assert p.weight_mask(0).tolist() == [[1, 0, 1], [1, 1, 0]] and p.weight_mask(1).tolist() == [[0, 1]]
    assert p.bias_mask(0).tolist() == [1, 1]  # biases count but are not pruned
    assert prune_to_nnz(m, 11).tensors()["M0"].sum() == 6  # already at the target: untouched
    with pytest.raises(ValueError, match="exceeds"):
        prune_to_nnz(m, 12)
    with pytest.raises(ValueError, match="cannot reach"):
        prune_to_nnz(m, 2)  # 3 biases can never go


# --------------------------------------------------------------------------- prune and regrow


def _hand_stack():
    """Model 0: 4 inputs, 2 hidden (padded to 3 by model 1), 1 output."""
    a, b = MaskedMLP(4, 2, 1, seed=0), MaskedMLP(4, 3, 1, seed=1)
    with torch.no_grad():
        a.weights[0].copy_(torch.tensor([[0.9, -0.2, 0.0, 0.0], [0.0, 0.0, 0.5, -0.05]]))
    a.set_masks(0, torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1]]))
    return MaskedMLPStack.from_models([a, b])


def test_regrowth_picks_the_largest_gradient_inactive_positions():
    stack = _hand_stack()
    before_b = [t[1].clone() for t in (stack.weights[0], stack.weight_mask(0))]
    g = torch.zeros(2, 3, 4)
    g[0, :2] = torch.tensor([[0.0, 0.0, 0.7, -0.3], [-0.8, 0.1, 0.0, 0.0]])  # inactive: (0,2) .7, (0,3) .3, (1,0) .8, (1,1) .1
    g[0, 2] = 100.0  # padding row of model 0: never regrown
    g[0, 0, 1] = 50.0  # an active position: its gradient is irrelevant
    swapped = prune_and_regrow(stack, [g, torch.zeros_like(stack.weights[1])], 0.5, layers=(0,), models=[0])
    # 4 active -> drop 2 smallest |w| (-0.05, -0.2) and regrow the 2 largest |g| among inactive: (1,0) and (0,2)
    assert swapped[0].tolist() == [2, 0]
    assert stack.weight_mask(0)[0].tolist() == [[1, 0, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert torch.equal(stack.weights[0][0], torch.tensor([[0.9, 0, 0, 0], [0, 0, 0.5, 0], [0, 0, 0, 0]]))  # regrown start at 0
    assert torch.equal(stack.weights[0][1], before_b[0]) and torch.equal(stack.weight_mask(0)[1], before_b[1])  # not chosen


def test_regrowth_skips_zero_gradients_and_just_dropped_positions():
    stack = _hand_stack()
    g = torch.zeros(2, 3, 4)
    g[0, 0, 2] = 0.4  # the only regrowable position of model 0 (dropped ones and zero gradients are not)
    g[0, 0, 1] = g[0, 1, 3] = 9.0
    swapped = prune_and_regrow(stack, [g, torch.zeros_like(stack.weights[1])], 0.5, models=[0])
    assert swapped[0].tolist() == [1, 0]  # k = min(2, 1 regrowable)
    assert stack.weight_mask(0)[0].tolist() == [[1, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert int(stack.weight_mask(0)[0].sum()) == 4


def _tiny_children(n=3, alpha=2, seed=0):
    parent, task = _trained_parent(seed=seed, hidden=4)
    kids = [expand(parent, alpha, "random", seed=s) for s in range(n)]
    x, y = task.sample(256, seed=2)
    xt, yt = task.sample(128, seed=3)
    def rep(t):
        return t[None].expand(n, *t.shape).contiguous()

    return kids, rep(x), rep(y), rep(xt), rep(yt)


def test_prune_and_regrow_keeps_nnz_over_rounds_and_masked_weights_stay_zero():
    kids, x, y, xt, yt = _tiny_children()
    stack = MaskedMLPStack.from_models(kids)
    counts = [(stack.weight_mask(l) != 0).flatten(1).sum(1) for l in range(2)]
    start = stack.weight_mask(0).clone()
    nnz0 = stack.nnz()
    cfg = TrainConfig(batch_size=64, lr=0.02, warmup=0, finetune=8)
    dyn = DynamicSparsity(every=1, fraction=0.3, decay="constant", stop=1.0, grad_batch=128)
    res = fit_dynamic(stack, x, y, cfg, range(0, 8), dyn, models=[1, 2], eval_data=(xt, yt), eval_every=2)
    assert [r["offset"] for r in res.rounds] == list(range(1, 8))
    for r in res.rounds:  # the mask count of the rewired layer never moves
        assert torch.equal(r["mask_nnz"][0], counts[0])
        assert r["swapped"][0][0] == 0 and (r["swapped"][0][1:] > 0).all()
    assert torch.equal((stack.weight_mask(1) != 0).flatten(1).sum(1), counts[1])
    assert torch.equal(stack.nnz(), nnz0)  # regrown weights trained away from zero
    for l in range(2):
        assert bool(((stack.weights[l] * (1 - stack.weight_mask(l))) == 0).all())
    assert torch.equal(stack.weight_mask(0)[0], start[0]) and not torch.equal(stack.weight_mask(0)[1], start[1])
    assert [o for o, _ in res.curve] == [0, 2, 4, 6, 8] and res.losses.shape == (3, 8)

    # the model left alone trained exactly as in a plain fit; chunking changes nothing
    alone = MaskedMLPStack.from_models(kids)
    fit(alone, x, y, cfg, range(0, 8))
    assert torch.equal(alone.weights[0][0], stack.weights[0][0]) and torch.equal(alone.weights[1][0], stack.weights[1][0])
    chunked = MaskedMLPStack.from_models(kids)
    fit_dynamic(chunked, x, y, cfg, range(0, 8), None, eval_data=(xt, yt), eval_every=3)
    assert all(torch.equal(a, b) for a, b in zip(alone.weights, chunked.weights))


def test_gradient_is_the_dense_effective_weight_gradient():
    kids, x, y, _, _ = _tiny_children(n=2)
    stack = MaskedMLPStack.from_models(kids)
    g = effective_weight_gradients(stack, x[:, :32], y[:, :32])
    m = kids[1]
    W = [(w * m.weight_mask(l)).detach().requires_grad_(True) for l, w in enumerate(m.weights)]
    b = [(bb * m.bias_mask(l)).detach() for l, bb in enumerate(m.biases)]
    logits = torch.relu(x[1, :32] @ W[0].T + b[0]) @ W[1].T + b[1]
    torch.nn.functional.binary_cross_entropy_with_logits(logits, y[1, :32]).backward()
    assert torch.allclose(g[0][1], W[0].grad, atol=1e-6) and torch.allclose(g[1][1], W[1].grad, atol=1e-6)
    assert bool((g[0][1][m.weight_mask(0) == 0] != 0).any())  # dense: masked positions get a gradient too


def test_pruned_weights_of_a_training_stack_stay_at_zero():
    kids, x, y, _, _ = _tiny_children(n=2)
    stack = MaskedMLPStack.from_models(kids)
    cfg = TrainConfig(batch_size=64, lr=0.02)
    opt, _ = fit(stack, x, y, cfg, range(2))
    before = stack.weight_mask(0).clone()
    prune_stack_to_nnz(stack, (stack.nnz() - 10).tolist())
    pruned = (before != 0) & (stack.weight_mask(0) == 0)
    assert pruned.any()
    fit(stack, x, y, cfg, range(2, 4), optimizer=opt)
    assert bool((stack.weights[0][pruned] == 0).all())  # fit cleared their moments: pruned weights stay at zero


@pytest.mark.parametrize("kernel", [False, True])
def test_pruning_and_rewiring_hold_in_every_slice_of_a_sliced_stack(kernel):
    """fit may cut a CPU stack into width-sorted slices with their own optimisers
    (torch path), or train each model in the C kernel; pruned and dropped weights
    must stay at zero in every slice and every model."""
    from fci.train import TorchBackend
    from fci.train.backends.kernel import library

    if kernel and not library.available():
        pytest.skip("the C kernel is unavailable here")
    backend = "kernel" if kernel else TorchBackend(min_slice=1)
    kids2, x, y, xt, yt = _tiny_children(n=3, alpha=2)
    kids4, *_ = _tiny_children(n=3, alpha=4)
    kids = [kids4[0], kids2[0], kids4[1], kids2[1], kids2[2], kids4[2]]  # mixed widths, interleaved
    x, y, xt, yt = (torch.cat([t, t]) for t in (x, y, xt, yt))
    stack = MaskedMLPStack.from_models(kids)
    cfg = TrainConfig(batch_size=64, lr=0.02)
    opt, _ = fit(stack, x, y, cfg, range(2), backend=backend, workers=2)
    if not kernel:
        assert len(opt.slices) > 1 and all(flat.rows is not None for flat, _ in opt.slices)
    before = [stack.weight_mask(l).clone() for l in range(2)]
    prune_stack_to_nnz(stack, (stack.nnz() - 6).tolist())
    res = fit_dynamic(stack, x, y, cfg, range(2, 6), DynamicSparsity(every=1, fraction=0.3, stop=1.0), models=[0, 3],
                      optimizer=opt)
    assert all(int(r["swapped"][0][0]) > 0 and int(r["swapped"][0][3]) > 0 for r in res.rounds)
    for l in range(2):  # pruned or dropped weights stayed at zero in every slice
        assert bool((stack.weights[l][stack.weight_mask(l) == 0] == 0).all())
    assert ((before[0] != 0) & (stack.weight_mask(0) == 0)).any()
    counts = [int((stack.weight_mask(0)[m] != 0).sum()) for m in (0, 3)]
    assert counts == [int(r) for r in res.rounds[-1]["mask_nnz"][0][[0, 3]]]


def test_dynamic_schedule_and_its_validation():
    d = DynamicSparsity(every=10, fraction=0.3, stop=0.75)
    r = d.rounds(200)
    assert [t for t, _ in r] == list(range(10, 150, 10))
    fr = [f for _, f in r]
    assert all(a > b for a, b in zip(fr, fr[1:])) and fr[0] < 0.3 and fr[-1] > 0
    assert DynamicSparsity(every=3, decay="constant", stop=1.0).rounds(9) == [(3, 0.3), (6, 0.3)]
    assert DynamicSparsity.from_dict(d.to_dict()) == d
    for kw, field in (({"fraction": 1.5}, "fraction"), ({"every": 0}, "every"), ({"decay": "linear"}, "decay"),
                      ({"stop": 0}, "stop"), ({"grad_batch": 0}, "grad_batch")):
        with pytest.raises(ValueError, match=field):
            DynamicSparsity(**kw)


# --------------------------------------------------------------------------- the study, end to end


tiny_run = tiny_run_fixture(study.main, "structured")


def test_study_writes_equal_nnz_results(tiny_run):
    root, _ = tiny_run
    out = root / "out"
    df = pd.read_csv(out / "results.csv")
    models = df[df.record == "model"]
    assert set(models.condition) == set(study.CONDITIONS) and set(models.alpha) == {2, 4}
    assert len(models) == 2 * 2 * len(study.CONDITIONS)  # tiny: 2 trials x 2 alphas x 6 conditions
    assert (models.groupby(["seed", "alpha"]).nnz.nunique() == 1).all()
    assert (models.nnz == models.target_nnz).all() and (models.target_nnz <= models.budget).all()
    assert (models[models.condition.str.endswith("_nm")].nm_violations == 0).all()
    static = models[models.condition.isin(["clause", "random", "clause_nm", "random_nm"])]
    assert (static.sibling_overlap == 0).all() and (static.mask_changed == 0).all()
    dyn = models[models.condition == "random_dynamic"]
    assert (dyn.rounds > 0).all() and (dyn.swapped > 0).all() and (dyn.mask_changed > 0).all()
    curves = df[df.record == "curve"]
    assert set(curves.epoch) == {0, 1, 2, 3, 4} and curves.test_accuracy.between(0, 1).all()

    stats = pd.read_csv(out / "stats.csv")
    assert len(stats) == 2 * len(study.CONDITIONS) and (stats.n == 2).all()
    assert stats[stats.condition != "dense"].p_vs_dense.notna().all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["trained_jobs"] == 4 and summary["partial"] is False
    assert summary["paper"] and all(check_verdict(p) is None for p in summary["paper"])
    # one family: every (alpha, child) claim of the run, corrected together
    assert {p["family_size"] for p in summary["paper"] if p["q"] is not None} <= {len(summary["paper"])}
    assert any("structured sparsity" in p["claim"] for p in summary["paper"])
    assert any("dynamic" in p["claim"] for p in summary["paper"])
    for stem in ("structured_sparsity", "finetune_curves"):
        html = (out / f"{stem}.html").read_text()
        assert "Plotly.newPlot" in html and "level=tiny" in html and "s.e.m." in html
        assert (out / f"{stem}.plotly.json").is_file()


def test_rerun_trains_nothing(tiny_run, monkeypatch):
    root, args = tiny_run
    monkeypatch.setattr(study, "train_jobs", lambda *a, **k: pytest.fail("a rerun must not train"))
    assert study.main(args) == 0
    assert json.loads((root / "out" / "summary.json").read_text())["run"]["trained_jobs"] == 0


def test_unequal_nnz_is_caught():
    df = pd.DataFrame({"record": ["model"] * 2, "seed": [0, 0], "alpha": [2, 2], "nnz": [100, 101]})
    with pytest.raises(AssertionError, match="unequal nnz"):
        study.check_equal_nnz(df)


@pytest.mark.parametrize("argv, flag", [(["--nm", "4:2"], "--nm"), (["--nm", "x"], "--nm"), (["--fraction", "1.5"], "--fraction"),
                                        (["--alphas", "1"], "--alphas"), (["--alphas", "2,x"], "--alphas"),
                                        (["--alphas", "2,2"], "--alphas"), (["--every", "4"], "--every")])
def test_bad_options_fail_at_once(tmp_path, capsys, argv, flag):
    with pytest.raises(SystemExit):
        study.main(["--tiny", "--data", str(tmp_path)] + argv)
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_nan_free_headline(tiny_run):
    summary = json.loads((tiny_run[0] / "out" / "summary.json").read_text())
    for h in summary["structured"]["headline"]:
        assert math.isfinite(h["test_accuracy_mean"]) and h["nnz_mean"] <= h["budget_mean"]


def test_alphas_are_comma_separated():
    from analyses.kinds import build_job_parser
    ap = build_job_parser(study.STUDY)
    args = ap.parse_args(["--tiny", "--alphas", "4, 2"])
    study.validate(ap, args)
    assert args.alphas == [2, 4]
    defaults = ap.parse_args(["--tiny"])
    study.validate(ap, defaults)
    assert defaults.alphas == [2, 4]
