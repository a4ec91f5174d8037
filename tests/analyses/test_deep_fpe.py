"""The deep_fpe study (analyses/deep_fpe.py) and the expansion it rests on,
`fci.fpe.expand_layers`: FPE of every hidden layer of a deeper MLP."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from analyses import deep_fpe as D
from analyses.levels import LEVELS
from fci.data import DatasetSpec
from fci.fpe.mlp import expand, expand_layers
from fci.fpe.splits import split_groups
from fci.models.mlp import MaskedMLP
from fci.seeding import derive_seed
from fci.stats import check_verdict
from fci.store import Store
from fci.tasks import DNFTask, TaskConfig
from fci.train import FPEResult, FPESpec, ModelResult, TrainConfig, run_fpe
from tests.helpers import tiny_run_fixture

pytestmark = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning",  # scipy, near-constant pairs
                                        "ignore:Graph is not fully connected:UserWarning")  # sklearn spectral clustering



def _fpe_result(hidden, seed, parent, dense, children):
    """A hand-built trial result on digits (the models are the test's own)."""
    spec = FPESpec(data=DatasetSpec.digits(), hidden=hidden, seed=seed, expansions=tuple(children))
    return FPEResult(spec=spec, task=None, parent=parent, dense=dense, children=children)

def _parent(n_in: int, hidden: list[int], n_out: int, seed: int, zero_frac: float = 0.0) -> MaskedMLP:
    """A model with trained-like weights; `zero_frac` of every weight matrix masked off."""
    m = MaskedMLP(n_in, hidden, n_out, seed=seed)
    if zero_frac:
        g = torch.Generator().manual_seed(seed)
        for l in range(m.n_layers):
            m.set_masks(l, (torch.rand(m.weights[l].shape, generator=g) >= zero_frac).float())
    return m


def assert_lineage(parent: MaskedMLP, child: MaskedMLP, alpha: int) -> None:
    """Children partition each parent's weights (SPEC §3, applied layer by layer):
    hidden unit r of the child descends from parent unit r // alpha in every
    hidden layer; each non-zero child weight equals the weight between the two
    parents; children of one parent share no input; output weights are replicated
    copies (or pruned); non-zero hidden biases are the parent's; output bias kept."""
    P, C = parent.effective_weights(), child.effective_weights()
    L = parent.n_layers
    assert child.hidden == [alpha * h for h in parent.hidden]
    for l in range(L):
        (Wp, bp), (Wc, bc) = P[l], C[l]
        rows = torch.arange(Wc.shape[0]) // alpha if l < L - 1 else torch.arange(Wc.shape[0])
        cols = torch.arange(Wc.shape[1]) // alpha if l > 0 else torch.arange(Wc.shape[1])
        expected = Wp[rows][:, cols]
        nz = Wc != 0
        assert torch.equal(Wc[nz], expected[nz]), f"layer {l}: a child weight is not its parents' weight"
        if l < L - 1:
            per_parent = nz.view(Wp.shape[0], alpha, Wc.shape[1]).sum(1)  # (H_parent, inputs)
            assert (per_parent <= 1).all(), f"layer {l}: two children of one parent share an input"
            assert torch.equal(bc[bc != 0], bp[rows][bc != 0])
        else:
            assert torch.equal(bc, bp)


# --------------------------------------------------------------------------- expand_layers (review)


@settings(max_examples=40, deadline=None)
@given(
    depth=st.integers(2, 5),
    width=st.integers(2, 9),
    alpha=st.integers(2, 4),
    split=st.sampled_from(["clause", "random"]),
    zero_frac=st.sampled_from([0.0, 0.3, 0.8]),
    n_out=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_expand_layers_budget_is_exact_across_the_network(depth, width, alpha, split, zero_frac, n_out, seed):
    task = DNFTask.generate(n_clauses=4, clause_size=3, n_vars=14, seed=seed)
    parent = _parent(task.n_vars, [width] * depth, n_out, seed, zero_frac)
    child = expand_layers(parent, alpha, split, layers="all", clauses=task.clauses, seed=seed)
    assert child.nnz() == parent.nnz()
    assert child.hidden == [alpha * width] * depth
    assert child.parent_index.tolist() == [i // alpha for i in range(alpha * width)]
    assert_lineage(parent, child, alpha)
    info = child.expansion_info
    assert [i["layer"] for i in info["layers"]] == list(range(depth))
    assert [i["split"] for i in info["layers"]] == [split] + ["random"] * (depth - 1)  # clauses live on the inputs


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
def test_gram_split_keeps_the_budget_and_lineage_at_every_depth(depth):
    parent = _parent(12, [6] * depth, 3, seed=depth)
    child = expand_layers(parent, 2, "gram", seed=depth)
    assert child.nnz() == parent.nnz()
    assert_lineage(parent, child, 2)


def _inert(child: MaskedMLP) -> list[torch.Tensor]:
    """Per hidden layer, (H,) bool: units with no incoming weight and no bias (SPEC §3 rule 4)."""
    eff = child.effective_weights()
    return [((W == 0).all(1) & (b == 0)) for W, b in eff[:-1]]


@pytest.mark.parametrize("depth, width", [(2, 5), (3, 5), (4, 5), (5, 5), (5, 3)])
def test_missing_weights_are_the_pruned_ones_and_those_of_inert_children(depth, width):
    """From a dense parent, each weight of layer l >= 1 appears alpha times before
    pruning (once per replicated column, each copy in exactly one child), layer 0's
    once. What the child lacks is exactly what the budget pruned plus the outgoing
    columns of inert children: a step's pruning can leave a deeper neuron fewer
    than alpha inputs, so some of its children get an empty group at the next
    step. Every other hidden bias is the parent's."""
    alpha = 3
    parent = _parent(10, [width] * depth, 2, seed=7)
    child = expand_layers(parent, alpha, "random", seed=1)
    P, C = parent.effective_weights(), child.effective_weights()
    inert = _inert(child)
    before = sum(int((W != 0).sum()) * (1 if l == 0 else alpha) for l, (W, _) in enumerate(P))
    after = sum(int((W != 0).sum()) for W, _ in C)
    lost_with_inert = sum(int((P[l + 1][0][:, u // alpha] != 0).sum()) for l in range(depth) for u in inert[l].nonzero().flatten().tolist())
    assert before - after == child.expansion_info["pruned"] + lost_with_inert
    assert child.expansion_info["pruned"] > 0
    for l in range(depth):
        alive = ~inert[l]
        assert torch.equal(C[l][1][alive], P[l][1].repeat_interleave(alpha)[alive])
    assert child.nnz() == parent.nnz()


def test_each_step_prunes_the_smallest_magnitudes_of_its_two_matrices():
    """Step l of expand_layers is expand(layer=l) on the previous step's output:
    replay the split, and check that every pruned weight is no larger in
    magnitude than any kept weight of that step's pool (W_l and W_{l+1})."""
    parent = _parent(9, [6, 6, 6], 2, seed=3)
    model, alpha, seed = parent, 2, 11
    for l in range(3):
        s = seed if l == 0 else derive_seed(seed, "layer", l)
        nxt = expand(model, alpha, "random", seed=s, layer=l)
        W, M = model.weights[l].detach(), model.weight_mask(l)
        groups = split_groups(W, M, alpha, "random", seed=s)
        H = W.shape[0]
        parent_of, child_of = torch.arange(H).repeat_interleave(alpha), torch.arange(alpha).repeat(H)
        pre_in = (W * M)[parent_of] * (groups[parent_of] == child_of[:, None])
        pre_out = model.effective_weights()[l + 1][0][:, parent_of]
        pre = torch.cat([pre_in.flatten(), pre_out.flatten()]).abs()
        post = torch.cat([nxt.effective_weights()[l][0].flatten(), nxt.effective_weights()[l + 1][0].flatten()]).abs()
        pruned, kept = pre[(pre != 0) & (post == 0)], post[post != 0]
        assert len(pruned) == nxt.expansion_info["pruned"] > 0
        assert pruned.max() <= kept.min()
        assert nxt.nnz() == parent.nnz()
        model = nxt
    final = expand_layers(parent, alpha, "random", seed=seed)
    assert all(torch.equal(a, b) for a, b in zip(final.tensors().values(), model.tensors().values()) if a.dtype.is_floating_point)


@pytest.mark.parametrize("split", ["clause", "random", "gram"])
def test_expand_layers_is_deterministic_per_seed(split):
    task = DNFTask.generate(n_clauses=4, clause_size=3, n_vars=14, seed=2)
    parent = _parent(task.n_vars, [6, 6, 6], 1, seed=2)
    a = expand_layers(parent, 2, split, clauses=task.clauses, seed=4)
    b = expand_layers(parent, 2, split, clauses=task.clauses, seed=4)
    c = expand_layers(parent, 2, split, clauses=task.clauses, seed=5)
    assert a.tensors().keys() == b.tensors().keys()
    assert all(torch.equal(a.tensors()[k], b.tensors()[k]) for k in a.tensors())
    # another seed gives another split in every layer but the gram split's layer 0 (a clustering, no randomness
    # left when the clusters deal the same way) -- at least in the deeper, randomly split layers
    assert any(not torch.equal(a.weight_mask(l), c.weight_mask(l)) for l in (1, 2))


def test_first_layer_only_expansion_leaves_deeper_layers_narrow():
    parent = _parent(10, [4, 4, 4], 2, seed=0)
    child = expand_layers(parent, 3, "random", layers=(0,), seed=0)
    assert child.hidden == [12, 4, 4] and child.nnz() == parent.nnz()
    for l in (2, 3):  # untouched layers
        assert torch.equal(child.effective_weights()[l][0], parent.effective_weights()[l][0])


@pytest.mark.parametrize("layers, match", [((5,), "hidden layers"), ((), "at least one")])
def test_expand_layers_bad_layers_raise(layers, match):
    with pytest.raises(ValueError, match=match):
        expand_layers(_parent(6, [3, 3], 1, seed=0), 2, "random", layers=layers)


@pytest.mark.parametrize("layers", ["first", 0, "10", [0.5], [True]])
def test_expand_layers_names_layers_for_a_malformed_value(layers):
    with pytest.raises(ValueError, match="layers"):
        expand_layers(_parent(6, [3, 3], 1, seed=0), 2, "random", layers=layers)


# --------------------------------------------------------------------------- study helpers


def _mr(model: MaskedMLP, acc: float, loss=(0.5, 0.4, 0.3, 0.3)) -> ModelResult:
    return ModelResult(model=model, train_accuracy=acc, test_accuracy=acc, test_exact_match=acc, test_loss=0.1,
                       train_loss=list(loss))


def test_model_rows_pair_with_dense_and_assert_the_budget():
    parent = _parent(8, [4, 4], 1, seed=0)
    child = expand_layers(parent, 2, "random", seed=0)
    res = _fpe_result(hidden=(4, 4), seed=0, parent=_mr(parent, 0.7), dense=_mr(parent, 0.8),
                        children={("random", 2): _mr(child, 0.9)})
    rows = D.model_rows(res, {("random", 2): _mr(expand_layers(parent, 2, "random", layers=(0,), seed=0), 0.6)})
    assert [(r["condition"], r["layers"]) for r in rows] == [("dense", "none"), ("random", "all"), ("random", "first")]
    assert [r["rel_improvement"] for r in rows] == pytest.approx([0.0, 0.1 / 0.8, -0.2 / 0.8])
    assert {r["nnz"] for r in rows} == {r["parent_nnz"] for r in rows} == {parent.nnz()}
    assert [r["neurons"] for r in rows] == [8, 16, 12]
    broken = child.copy()
    broken.set_masks(0, torch.zeros_like(broken.weight_mask(0)))  # loses weights: budget broken
    res.children[("random", 2)] = _mr(broken, 0.9)
    with pytest.raises(AssertionError, match="budget"):
        D.model_rows(res)


def test_rows_count_units_left_without_inputs():
    m = MaskedMLP(4, [3, 2], 1, seed=0)
    wm, bm = torch.ones(3, 4), torch.ones(3)
    wm[1], wm[2], bm[1] = 0, 0, 0  # unit 1: no inputs, no bias (inert); unit 2: no inputs, bias kept (constant)
    m.set_masks(0, wm, bm)
    res = _fpe_result(hidden=(3, 2), seed=0, parent=_mr(m, 0.5), dense=_mr(m, 0.5), children={})
    m.set_masks(1, torch.tensor([[1.0, 1, 0], [1, 1, 0]]))  # and unit 2 of layer 0 feeds nothing
    (row,) = D.model_rows(res)
    assert row["units_without_inputs"] == 2 and row["inert_units"] == 1 and row["neurons"] == 5
    assert row["units_without_outputs"] == 1 and row["dead_end_nnz"] == 1  # unit 2's bias


def test_loss_curve_known_answers():  # the convergence rule itself: tests/analyses/test_columns.py
    assert D.loss_curve([1.0, 3.0, 5.0, 7.0], points=2) == "2;6"
    assert D.loss_curve(list(range(50)), points=20).count(";") == 19


def _synthetic(trials: int = 4) -> pd.DataFrame:
    """Two datasets x depths 2..4; 'random' beats dense by 0.01 * depth, 'gram' loses 0.05 (+ noise)."""
    rng = np.random.default_rng(0)
    rows = []
    for ds in ("boolean", "digits"):
        for depth in (2, 3, 4):
            for t in range(trials):
                base = 0.8 + 0.01 * t
                for cond, layers, acc in (("dense", "none", base), ("random", "all", base * (1 + 0.01 * depth)),
                                          ("gram", "all", base - 0.05 + rng.normal(0, 0.005))):
                    rows.append({"dataset": ds, "depth": depth, "trial": t, "condition": cond, "alpha": 1 if cond == "dense" else 2,
                                 "layers": layers, "test_accuracy": acc, "nnz": 100, "parent_nnz": 100, "neurons": 8 * depth,
                                 "units_without_inputs": 0, "inert_units": 0, "units_without_outputs": 0,
                                 "dead_end_nnz": 0, "train_loss_final": 0.1, "dead_units": 0,
                                 "train_loss_late_drop_rel": 0.01, "train_loss_late_drop": 0.001, "converged": True,
                                 "loss_start_epoch": 0 if cond == "dense" else 4, "loss_epochs": 8 if cond == "dense" else 4,
                                 "loss_curve": "4;3;2;1" if cond == "dense" else "2;1"})
    return pd.DataFrame(rows)


def test_depth_stats_trends_and_paper_comparison_on_known_tables():
    df = _synthetic()
    st = D.depth_stats(df).set_index(["dataset", "depth", "layers", "condition", "alpha"])
    r = st.loc[("boolean", 3, "all", "random", 2)]
    assert r.n == 4 and r.rel_improvement_mean == pytest.approx(0.03) and r.rel_improvement_sem == pytest.approx(0, abs=1e-12)
    assert r.p < 0.05 and r.nnz_equal and r.dense_test_accuracy_mean == pytest.approx(0.815)
    assert st.loc[("boolean", 3, "none", "dense", 1)].rel_improvement_mean == 0 and math.isnan(st.loc[("boolean", 3, "none", "dense", 1)].p)
    trend = {(t["dataset"], t["condition"]): t for t in D.depth_trends(df)}
    up = trend[("digits", "random")]  # +1% per layer in every trial: every trial ranks the depths in order
    assert up["n"] == 4 and up["rho"] == pytest.approx(1.0) and up["direction"] == "increasing" and up["p"] < 0.05
    assert up["rel_improvement_mean"] == pytest.approx([0.02, 0.03, 0.04]) and up["breaks_after"] is None
    pool = {(r["dataset"], r["condition"]): r for r in D.pooled(df)}
    assert pool[("boolean", "random")]["n_trials"] == 4 and pool[("boolean", "random")]["n_pairs"] == 12  # trials, not pairs
    stats = D.depth_stats(df)
    claims = D.paper_comparison(df, stats)
    assert all(check_verdict(c) is None for c in claims)
    verdict = {(c["dataset"], c["condition"]): c["verdict"] for c in claims if "consistently" in c["claim"]}
    assert verdict == {("boolean", "gram"): "disagrees", ("boolean", "random"): "agrees", ("digits", "gram"): "disagrees",
                       ("digits", "random"): "agrees"}
    assert all(c["family_size"] == 3 and c["correction"] == "benjamini-hochberg" for c in claims if "consistently" in c["claim"])
    # every layer vs layer 0 only: paired per trial (here the synthetic 'gram' rows stand in as "first")
    two = pd.concat([df[df.condition != "gram"], df[df.condition == "gram"].assign(condition="random", layers="first")])
    comp = {(c["dataset"], c["depth"]): c for c in D.layer_comparison(two)}
    c = comp[("boolean", 2)]
    assert c["n"] == 4 and c["p"] < 0.05 and c["all_minus_first_mean"] == pytest.approx(
        np.mean(two[(two.dataset == "boolean") & (two.depth == 2) & (two.layers == "all")].test_accuracy.to_numpy()
                - two[(two.dataset == "boolean") & (two.depth == 2) & (two.layers == "first")].test_accuracy.to_numpy()))
    assert comp[("boolean", None)]["n"] == 4  # pooled over the depths with trials as the unit
    assert comp[("boolean", 2)]["family_size"] == 3 and comp[("boolean", 2)]["q"] >= comp[("boolean", 2)]["p"]
    curves = D.curve_table(df)
    dense = curves[(curves.dataset == "boolean") & (curves.depth == 2) & (curves.condition == "dense")]
    assert dense.epoch.tolist() == [0.5, 2.5, 4.5, 6.5] and dense.loss_mean.tolist() == [4, 3, 2, 1]
    child = curves[(curves.dataset == "boolean") & (curves.depth == 2) & (curves.condition == "random")]
    assert child.epoch.tolist() == [4.5, 6.5]  # children start where the warm-up ends
    assert len(D.loss_figure(df, "c").data) == 2 * 3 * 3
    fig = D.depth_figure(stats, "caption line")
    assert len(fig.data) == 2 * (1 + 2 + 2)  # per dataset: dense accuracy, and each child's accuracy and improvement
    stars = [t for tr in fig.data if tr.text is not None for t in tr.text]
    assert "*" in stars


def test_study_jobs_are_json_and_validate_datasets():
    lv = LEVELS["tiny"]
    jobs = D.study_jobs(["boolean", "digits"], [2, 3], 8, [2], trials=2, seed=5, level=lv)
    assert len(jobs) == 2 * 2 * 2 and json.loads(json.dumps(jobs)) == jobs
    assert {j["seed"] for j in jobs} == {5, 6} and all(j["hidden"] == [8] * j["depth"] for j in jobs)
    assert {tuple(map(tuple, j["expansions"])) for j in jobs} == {(("clause", 2), ("random", 2)), (("random", 2), ("gram", 2))}
    with pytest.raises(ValueError, match="datasets"):
        D.study_jobs(["mnist"], [2], 8, [2], 1, 0, lv)


def test_first_layer_trials_reuse_the_stored_parents_and_train_what_a_fresh_run_trains(tmp_path, monkeypatch):
    """The study's first-layer-only trials find their dense parents and baselines in
    the store (trained by the all-layer trials) and train only their children; those
    equal a fresh layers=(0,) run without a store, and share the all-layer child's
    layer-0 split."""
    import fci.train.schedule as schedule

    job = {"dataset": "boolean", "data": {"task": TaskConfig(n_clauses=4, clause_size=3, n_train=128, n_test=128).to_dict(),
                                          "task_seed": 1},
           "hidden": [4, 4], "seed": 0, "expansions": [["clause", 2], ["random", 2]],
           "train": TrainConfig(lr=0.02, batch_size=64, warmup=3, finetune=3).to_dict()}
    jobs = [job, {**job, "seed": 1}]
    store = Store(tmp_path)
    full = run_fpe([D.trial_specs(j, "all") for j in jobs], device="cpu", store=store)
    fits = []
    real_fit = schedule.fit
    monkeypatch.setattr(schedule, "fit", lambda stack, *a, **k: (fits.append(stack.n_models), real_fit(stack, *a, **k))[1])
    mine = run_fpe([D.trial_specs(j, (0,)) for j in jobs], device="cpu", store=store)
    assert sum(fits) == 4 and len(fits) <= 2  # 2 trials x 2 children fine-tuned; no dense model retrained
    monkeypatch.setattr(schedule, "fit", real_fit)
    ref = run_fpe([D.trial_specs(j, (0,)) for j in jobs], device="cpu")
    for r, m in zip(ref, mine):
        assert set(m.children) == set(r.children)
        for k in r.children:
            assert m.children[k].model.hidden == [8, 4] and m.children[k].model.nnz() == r.parent.model.nnz()
            assert m.children[k].test_accuracy == r.children[k].test_accuracy
            assert all(torch.equal(a, b) for a, b in zip(m.children[k].model.tensors().values(),
                                                         r.children[k].model.tensors().values()))
    for f, m in zip(full, mine):  # the all-layer child has the same layer-0 split
        for k in m.children:
            assert torch.equal(f.children[k].model.weight_mask(0), m.children[k].model.weight_mask(0))


# --------------------------------------------------------------------------- the command, end to end


tiny_run = tiny_run_fixture(D.main, "deep_fpe")


def test_tiny_run_writes_results_stats_summary_and_figure(tiny_run):
    root, _ = tiny_run
    out = root / "out"
    df = pd.read_csv(out / "results.csv")
    # 2 datasets x depths (2, 3) x 2 trials, each: dense + 2 splits x (all layers, layer 0 only)
    assert len(df) == 2 * 2 * 2 * 5
    assert set(df.layers) == {"none", "all", "first"} and set(df.depth) == {2, 3}
    assert (df.nnz == df.parent_nnz).all()  # the budget, per model
    assert (df.groupby(["dataset", "depth", "trial"]).nnz.nunique() == 1).all()
    w = df.width.iloc[0]
    allx = df[df.layers == "all"]
    assert (allx.neurons == 2 * w * allx.depth).all()
    first = df[df.layers == "first"]
    assert (first.neurons == w * (first.depth + 1)).all()
    assert set(df[df.dataset == "boolean"].condition) == {"dense", "clause", "random"}
    assert set(df[df.dataset == "digits"].condition) == {"dense", "random", "gram"}
    dense = df[df.condition == "dense"].set_index(["dataset", "depth", "trial"]).test_accuracy
    ch = df[df.condition != "dense"]
    expected = (ch.test_accuracy.to_numpy() - dense.loc[list(zip(ch.dataset, ch.depth, ch.trial))].to_numpy()) / dense.loc[
        list(zip(ch.dataset, ch.depth, ch.trial))].to_numpy()
    assert ch.rel_improvement.to_numpy() == pytest.approx(expected)

    stats = pd.read_csv(out / "stats.csv")
    assert len(stats) == 2 * 2 * 5 and stats.nnz_equal.all() and (stats.n == 2).all()

    s = json.loads((out / "summary.json").read_text())
    assert s["partial"] is False and s["config"]["level"] == "tiny"
    assert s["nnz"]["all_children_equal_parent"] is True
    assert s["paper"] and all(check_verdict(c) is None for c in s["paper"])
    assert s["design"]["depths"] == [2, 3] and s["design"]["train"] == LEVELS["tiny"].train.to_dict()
    assert {(t["dataset"], t["layers"]) for t in s["depth_trend"]} == {(d, l) for d in ("boolean", "digits") for l in ("all", "first")}
    html = (out / "deep_fpe.html").read_text()
    assert "Plotly.newPlot" in html and "level=tiny" in html and "nnz == its dense parent" in html
    assert (out / "deep_fpe.plotly.json").is_file() and "Plotly.newPlot" in (out / "loss_curves.html").read_text()
    assert (df.loss_curve.str.count(";") == np.minimum(D.CURVE_POINTS, df.loss_epochs) - 1).all()
    assert df.converged.isin([True, False]).all()
    assert set(df.loss_epochs) == {LEVELS["tiny"].train.epochs, LEVELS["tiny"].train.finetune}
    assert set(df[df.condition != "dense"].loss_start_epoch) == {LEVELS["tiny"].train.warmup}
    assert {(c["dataset"], c["depth"]) for c in s["all_vs_first_layer"]} == {(d, x) for d in ("boolean", "digits") for x in (2, 3, None)}


def test_rerun_trains_nothing(tiny_run, monkeypatch):
    root, argv = tiny_run
    monkeypatch.setattr(D, "run_fpe", lambda *a, **k: pytest.fail("a rerun must not train"))
    assert D.main(argv) == 0
    run = json.loads((root / "out" / "summary.json").read_text())["run"]
    assert run["trained_jobs"] == 0 and run["loaded_jobs"] == run["jobs"] == 8


@pytest.mark.parametrize("extra, flag", [(["--datasets", "mnist"], "--datasets"), (["--depths", "0"], "--depths"),
                                         (["--alphas", "1"], "--alphas"), (["--width", "0"], "--width"),
                                         (["--depths", "2,2"], "--depths"), (["--depths", "2,x"], "--depths"),
                                         (["--alphas", "2,4,2"], "--alphas"), (["--datasets", "boolean,boolean"], "--datasets"),
                                         (["--depths", "2", "3"], "unrecognized arguments: 3")])
def test_bad_options_fail_at_once(tmp_path, capsys, extra, flag):
    with pytest.raises(SystemExit):
        D.main(["--tiny", "--device", "cpu", "--out", str(tmp_path / "o"), "--data", str(tmp_path / "d"), *extra])
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "d" / "store").exists()


def test_list_options_are_comma_separated():
    from analyses.kinds import build_job_parser
    ap = build_job_parser(D.STUDY)
    args = ap.parse_args(["--tiny", "--datasets", "digits, boolean", "--depths", "4,2", "--alphas", " 4,2"])
    D.validate(ap, args)
    assert args.datasets == ["boolean", "digits"] and args.depths == [2, 4] and args.alphas == [2, 4]
    defaults = ap.parse_args(["--tiny"])
    D.validate(ap, defaults)
    assert defaults.datasets == list(D.DATASETS) and defaults.depths == list(D.DEPTHS["tiny"]) and defaults.alphas == [2]
