"""fci.sparsity.magnitude (layer-wise magnitude pruning without retraining, effective density,
small-weight overlap) on hand-built inputs, and analyses.effective_density end to
end at the tiny level."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from analyses import effective_density as study
from analyses.runner import run as run_job_study
from fci.models.mlp import MaskedMLP, MaskedMLPStack
from fci.sparsity.magnitude import (
    effective_density,
    keep_counts,
    layer_overlaps,
    null_density,
    prunable_counts,
    prune,
    pruned_copies,
    pruning_trajectory,
    smallest_overlap,
    step_masks,
    steps_to_empty,
)
from fci.stats import check_verdict
from fci.train import evaluate
from tests.helpers import refusal, run_tiny

# --------------------------------------------------------------------------- the schedule


def test_keep_counts_and_steps_to_empty():
    assert keep_counts(100, 0.02, [0, 1, 2, 35]).tolist() == [100, 98, 96, 49]  # 100 * 0.98**35 = 49.3
    assert keep_counts(6, 0.5, range(5)).tolist() == [6, 3, 2, 1, 0]  # 1.5 rounds up, 0.375 down
    assert keep_counts(np.array([[10], [3]]), 0.5, [0, 1]).tolist() == [[10, 5], [3, 2]]
    for n, f in ((1, 0.02), (100, 0.02), (12800, 0.02), (6, 0.5), (7, 0.3)):
        k = steps_to_empty(n, f)
        assert keep_counts(n, f, k) == 0 and keep_counts(n, f, k - 1) > 0
    assert steps_to_empty([5, 100, 7], 0.02) == steps_to_empty(100, 0.02)
    assert steps_to_empty(0, 0.02) == 0
    with pytest.raises(ValueError, match="fraction"):
        keep_counts(10, 1.0, 1)
    with pytest.raises(ValueError, match="steps"):
        keep_counts(10, 0.1, -1)


def test_step_masks_keep_the_largest_magnitudes_and_honour_the_mask():
    W = torch.tensor([[[0.1, -0.5, 0.3], [0.2, 0.0, -0.4]]])  # (1, 2, 3)
    M = torch.ones_like(W)
    masks = step_masks(W, M, [0, 1, 2, 3, 4], fraction=0.5)[0]  # keeps 6, 3, 2, 1, 0
    assert masks.shape == (5, 2, 3)
    assert masks[0].sum() == 6
    assert masks[1].tolist() == [[0, 1, 1], [0, 0, 1]]  # 0.5, 0.4, 0.3
    assert masks[2].tolist() == [[0, 1, 0], [0, 0, 1]]
    assert masks[3].tolist() == [[0, 1, 0], [0, 0, 0]]
    assert masks[4].sum() == 0
    # a masked weight is never kept and does not count: 5 prunable, step 1 keeps round(2.5) = 3
    M2 = M.clone()
    M2[0, 0, 1] = 0
    m2 = step_masks(W, M2, [0, 1], fraction=0.5)[0]
    assert m2[0].tolist() == [[1, 0, 1], [1, 1, 1]]
    assert m2[1].tolist() == [[0, 0, 1], [1, 0, 1]]  # 0.4, 0.3, 0.2
    # ties are pruned in flat index order
    tie = step_masks(torch.ones(1, 1, 4), torch.ones(1, 1, 4), [1], fraction=0.5)[0, 0]
    assert tie.tolist() == [[0, 0, 1, 1]]


def _trained_like(seed=0, n_in=12, hidden=(10, 6), n_out=3):
    return MaskedMLP(n_in, list(hidden), n_out, seed=seed)


def test_prune_is_layerwise_magnitude_pruning_of_a_copy():
    model = _trained_like()
    before = [w.detach().clone() for w in model.weights]
    steps, f = 30, 0.02
    p = prune(model, steps, f)
    n = prunable_counts(model)[0]
    assert prunable_counts(p)[0].tolist() == keep_counts(n, f, steps).tolist()
    for l in range(model.n_layers):
        kept = p.weight_mask(l).bool()
        w = before[l].abs()
        assert w[kept].min() >= w[~kept].max()  # survivors are the largest magnitudes of their layer
        assert torch.equal(p.weights[l][~kept], torch.zeros_like(w[~kept]))  # hidden raw weights are zeroed
        assert torch.equal(p.biases[l], model.biases[l])  # biases are never pruned
        assert torch.equal(model.weights[l], before[l]) and model.weight_mask(l).all()  # the original is untouched
    assert p.nnz_split()["weights"] == int(keep_counts(n, f, steps).sum())


def test_prune_of_a_stack_prunes_each_model_within_its_own_weights():
    models = [_trained_like(0, hidden=(4, 2)), _trained_like(1, hidden=(10, 6))]
    stack = MaskedMLPStack.from_models(models)
    ps = prune(stack, 12, 0.05).to_models()
    for m, q in zip(models, ps):
        ref = prune(m, 12, 0.05)
        for l in range(m.n_layers):
            assert torch.equal(q.weight_mask(l), ref.weight_mask(l))
            assert torch.equal(q.weights[l], ref.weights[l])
    assert prunable_counts(prune(stack, 12, 0.05)).tolist() == [prunable_counts(prune(m, 12, 0.05))[0].tolist() for m in models]


def test_trajectory_matches_pruning_each_copy_alone():
    torch.manual_seed(0)
    model = _trained_like(3)
    x = torch.rand(200, 12)
    y = torch.randint(0, 3, (200,))
    rows = pruning_trajectory(model, x, y, loss="ce", fraction=0.05, max_weights_per_stack=2000)  # several stacks
    assert [r["step"] for r in rows] == list(range(len(rows)))
    assert rows[0]["density"] == 1.0 and rows[-1]["density"] == 0.0 and rows[-2]["kept_weights"] > 0
    d = [r["density"] for r in rows]
    assert all(a >= b for a, b in zip(d, d[1:]))
    for s in (0, 7, 25, len(rows) - 1):
        alone = evaluate(MaskedMLPStack.from_models([prune(model, s, 0.05)]), x[None], y[None], "ce")
        assert rows[s]["accuracy"] == pytest.approx(float(alone["accuracy"][0]), abs=1e-6)
        assert rows[s]["loss"] == pytest.approx(float(alone["loss"][0]), rel=1e-5)
    copies = pruned_copies(model, [0, 5], 0.05)
    assert copies.n_models == 2 and torch.equal(copies.to_models()[1].weight_mask(0), prune(model, 5, 0.05).weight_mask(0))
    with pytest.raises(ValueError, match="x must be"):
        pruning_trajectory(model, torch.rand(5, 3), y[:5], "ce")


# --------------------------------------------------------------------------- effective density, null, overlap


def test_effective_density_on_a_hand_made_trajectory():
    density = [1.0, 0.98, 0.96, 0.94, 0.92]
    acc = [0.9, 0.88, 0.85, 0.5, 0.9]
    rel = effective_density(density, acc, 0.05, "relative")  # threshold 0.855: 0.85 is below
    assert rel.index == 2 and rel.effective_density == 0.96 and rel.degraded and rel.threshold == pytest.approx(0.855)
    ab = effective_density(density, acc, 0.05, "absolute")  # threshold 0.85: 0.85 is not below, 0.5 is
    assert ab.index == 3 and ab.effective_density == 0.94
    flat = effective_density([1.0, 0.5, 0.0], [0.5, 0.5, 0.5])
    assert not flat.degraded and flat.index is None and flat.effective_density == 0.0
    with pytest.raises(ValueError, match="mode"):
        effective_density(density, acc, 0.05, "percent")
    with pytest.raises(ValueError, match="drop"):
        effective_density(density, acc, 5)


def test_null_density_caps_at_one():
    assert null_density([400, 400, 400], [200, 800, 4000]).tolist() == [1.0, 0.5, 0.1]
    with pytest.raises(ValueError, match="n_weights"):
        null_density(1, 0)


def test_smallest_overlap_known_answers():
    w = torch.arange(1, 101, dtype=torch.float32).view(10, 10)
    same = smallest_overlap(w, -w, 0.4)  # same magnitudes: the two sets coincide
    assert same == {"overlap": 0.4, "chance": pytest.approx(0.16), "k": 40, "n": 100}
    assert smallest_overlap(w, 1.0 / w, 0.4)["overlap"] == 0.0  # reversed order: disjoint smallest sets
    g = np.random.default_rng(0)
    rnd = smallest_overlap(g.normal(size=(300, 300)), g.normal(size=(300, 300)), 0.4)
    assert rnd["overlap"] == pytest.approx(0.16, abs=0.005)  # independent weights: chance
    mask = torch.zeros(10, 10)
    mask[:5] = 1  # only the first 50 weights count
    m = smallest_overlap(w, w, 0.4, mask=mask)
    assert m["n"] == 50 and m["k"] == 20 and m["overlap"] == 0.4
    a, b = _trained_like(0), _trained_like(1)
    ov = layer_overlaps(a, b, 0.4)
    assert len(ov) == 3 and all(0 <= o["overlap"] <= 0.4 for o in ov)
    with pytest.raises(ValueError, match="same shape"):
        smallest_overlap(w, w[:5], 0.4)


def test_widths_tests_and_anova_edge_cases():
    assert study.widths((32, 16), 0.1) == [3, 2] and study.widths((32, 16), 5) == [160, 80]
    assert study.widths((8, 4), 0.1) == [1, 1]  # at least one neuron
    assert study.layer_names(3) == ["fc1", "fc2", "proj"]
    # core sizes are counts (resolution 1): groups that never vary give no F and no p, not p = 0
    ed = pd.DataFrame({"dataset": "d", "multiplier": [0.5] * 3 + [1.0] * 3, "core_weights": [10.0] * 3 + [20.0] * 3,
                       "effective_density": [0.5, 0.6, 0.55, 0.3, 0.35, 0.32]})
    (an,) = study.anovas(ed)
    assert math.isnan(an["core_p"]) and "variance is not measured" in an["core_reason"]
    assert an["ed_p"] < 0.01 and an["ed_F"] > 10  # the densities do vary, and differ
    ed.loc[ed.multiplier == 1.0, "core_weights"] = [19.0, 20.0, 22.0]
    assert study.anovas(ed)[0]["core_p"] < 0.01


def _hand_results():
    """Results rows of 2 seeds x widths 1x (100 weights) and 2x (400 weights)."""
    rows = []
    traj = {  # (multiplier, seed): accuracies at densities 1, .5, .25, 0
        (1.0, 0): [0.9, 0.9, 0.5, 0.5], (1.0, 1): [0.8, 0.5, 0.5, 0.5],
        (2.0, 0): [0.9, 0.9, 0.9, 0.5], (2.0, 1): [0.9, 0.9, 0.5, 0.5],
    }
    for (m, seed), acc in traj.items():
        n = 100 if m == 1 else 400
        rows.append({"record": "model", "dataset": "digits", "multiplier": m, "seed": seed, "hidden_label": f"h{m}",
                     "n_weights": n, "overlap_fc1": 0.2, "chance_fc1": 0.16, "overlap_proj": 0.1, "chance_proj": 0.16,
                     "overlap_all": 0.15, "chance_all": 0.16})
        for k, (d, a) in enumerate(zip([1.0, 0.5, 0.25, 0.0], acc)):
            rows.append({"record": "step", "dataset": "digits", "multiplier": m, "seed": seed, "hidden_label": f"h{m}",
                         "step": k, "density": d, "kept_weights": int(d * n), "test_accuracy": a})
    return pd.DataFrame(rows)


def test_job_effective_density_and_the_null_hypothesis():
    ed = study.job_effective_density(_hand_results()).set_index(["multiplier", "seed"])
    assert ed.loc[(1.0, 0)].effective_density == 0.25 and ed.loc[(1.0, 0)].core_weights == 25
    assert ed.loc[(1.0, 1)].effective_density == 0.5 and ed.loc[(1.0, 1)].core_weights == 50
    assert ed.loc[(2.0, 0)].effective_density == 0.0 and ed.loc[(2.0, 1)].effective_density == 0.25
    # the null: the 1x core of the same seed over 400 weights
    assert ed.loc[(2.0, 0)].null_ed == 25 / 400 and ed.loc[(2.0, 1)].null_ed == 50 / 400
    assert (ed.loc[1.0].null_ed == ed.loc[1.0].effective_density).all()
    st = study.width_stats(ed.reset_index(), _hand_results().query("record == 'model'"))
    two = st[st.multiplier == 2.0].iloc[0]
    assert two.ed_mean == 0.125 and two.null_ed_mean == pytest.approx(0.09375) and two.n == 2
    assert math.isnan(st[st.multiplier == 1.0].ed_p.iloc[0])
    assert two.overlap_fc1_mean == pytest.approx(0.2) and two.chance_proj == 0.16
    assert study._layers(st.columns) == ["fc1", "proj"]
    # a model that never degrades has no effective density and leaves the statistics
    df = _hand_results()
    df.loc[(df.record == "step") & (df.multiplier == 2.0) & (df.seed == 1), "test_accuracy"] = 0.5
    ed2 = study.job_effective_density(df)
    flat = ed2[(ed2.multiplier == 2.0) & (ed2.seed == 1)].iloc[0]
    assert not flat.degraded and math.isnan(flat.effective_density) and math.isnan(flat.core_weights)
    two = study.width_stats(ed2, df.query("record == 'model'")).query("multiplier == 2.0").iloc[0]
    assert two.n == 2 and two.n_ed == 1 and two.ed_mean == 0.0


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("effective_density")
    run_tiny(study.main, root)
    return root / "out", root / "data"


def test_tiny_run_writes_trajectories_stats_and_the_paper_comparison(tiny):
    out, _ = tiny
    df = pd.read_csv(out / "results.csv")
    models, steps = df[df.record == "model"], df[df.record == "step"]
    mults = study.LEVEL_SWEEP["tiny"]["multipliers"]
    assert len(models) == 2 * len(mults) * 2  # datasets x widths x trials
    assert set(models.dataset) == {"boolean", "digits"} and set(models.multiplier) == set(mults)
    for (name, m, seed), g in steps.groupby(["dataset", "multiplier", "seed"]):
        g = g.sort_values("step")
        mr = models[(models.dataset == name) & (models.multiplier == m) & (models.seed == seed)].iloc[0]
        assert g.step.tolist() == list(range(int(mr.n_steps) + 1))
        assert g.density.iloc[0] == 1.0 and g.density.iloc[-1] == 0.0 and g.kept_weights.iloc[0] == mr.n_weights
        assert g.test_accuracy.iloc[0] == pytest.approx(mr.test_accuracy, abs=1e-6)  # step 0 is the trained model
        assert g.density.is_monotonic_decreasing
    st = pd.read_csv(out / "stats.csv")
    assert len(st) == 2 * len(mults) and (st.n == 2).all()
    assert st.ed_mean.between(0, 1).all() and (st[st.multiplier == 1].ed_mean == st[st.multiplier == 1].null_ed_mean).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial"] is False and summary["run"]["trained_jobs"] == len(models)
    assert {a["dataset"] for a in summary["effective_density"]["anova"]} == {"boolean", "digits"}
    paper = summary["paper"]
    assert len(paper) >= 10 and all(check_verdict(c) is None for c in paper)
    assert all(c["dataset"] in ("boolean", "digits") for c in paper) and summary["correction"] == "benjamini-hochberg"
    assert any("Table 2" in c["claim"] for c in paper) and any("Table 3" in c["claim"] for c in paper)
    assert set(summary["figures"]) == {"trajectories.html", "effective_density.html", "overlap.html"}
    for f in summary["figures"]:
        html = (out / f).read_text()
        assert "Plotly.newPlot" in html and "level=tiny" in html and '<script src="http' not in html


def test_rerun_trains_nothing_and_a_new_drop_rule_needs_no_training(tiny, capsys):
    out, data = tiny

    def boom(jobs, ctx):
        raise AssertionError(f"the run hook was called for {len(jobs)} jobs")

    no_run = dataclasses.replace(study.STUDY, run=boom)
    before = pd.read_csv(out / "stats.csv")
    assert run_job_study(no_run, ["--tiny", "--device", "cpu", "--out", str(out), "--data", str(data)]) == 0
    assert json.loads((out / "summary.json").read_text())["run"]["trained_jobs"] == 0
    assert "paper vs measured" in capsys.readouterr().out
    out2 = out.parent / "out-absolute"
    assert run_job_study(no_run, ["--tiny", "--device", "cpu", "--out", str(out2), "--data", str(data),
                                  "--drop-mode", "absolute", "--drop", "0.3"]) == 0
    after = pd.read_csv(out2 / "stats.csv")
    res = pd.read_csv(out2 / "results.csv")
    loose, strict = study.job_effective_density(res, 0.3, "absolute"), study.job_effective_density(res, 0.05, "relative")
    both = loose.effective_density.notna() & strict.effective_density.notna()
    assert both.any() and (loose.effective_density[both] <= strict.effective_density[both]).all()  # prunes at least as far
    np.testing.assert_allclose(after.ed_mean, study.width_stats(loose, res[res.record == "model"]).ed_mean)
    np.testing.assert_allclose(before.ed_mean, study.width_stats(strict, res[res.record == "model"]).ed_mean)
    assert json.loads((out2 / "summary.json").read_text())["effective_density"]["drop_mode"] == "absolute"


@pytest.mark.parametrize("argv, flag", [
    (["--multipliers", "0.5,2"], "--multipliers"),
    (["--multipliers", "1,-2"], "--multipliers"),
    (["--multipliers", "1,x"], "--multipliers"),
    (["--multipliers", "1,2,1"], "--multipliers"),
    (["--datasets", "mnist"], "--datasets"),
    (["--datasets", "digits,digits"], "--datasets"),
    (["--base-hidden", "8,0"], "--base-hidden"),
    (["--prune-fraction", "1.5"], "--prune-fraction"),
    (["--drop", "0"], "--drop"),
    (["--drop-mode", "percent"], "--drop-mode"),
    (["--clause-size", "0"], "--clause-size"),
])
def test_bad_options_fail_before_any_work(tmp_path, capsys, argv, flag):
    code, err = refusal(study.main, ["--tiny", "--data", str(tmp_path)] + argv, capsys)
    assert code == 2 and flag in err
    assert not (tmp_path / "store").exists()


def test_list_options_parse_and_normalise():
    from analyses.kinds import build_job_parser
    ap = build_job_parser(study.STUDY)
    args = ap.parse_args(["--tiny", "--datasets", "digits, boolean", "--multipliers", "2, 0.5,1", "--base-hidden", "16,32,16"])
    study.validate(ap, args)
    assert args.datasets == ("boolean", "digits") and args.multipliers == (0.5, 1.0, 2.0)
    assert args.base_hidden == (16, 32, 16)  # per-layer widths: order kept, repeats allowed
    args = ap.parse_args(["--tiny", "--datasets", "digits"])
    study.validate(ap, args)
    assert args.datasets == ("digits",) and args.multipliers == study.LEVEL_SWEEP["tiny"]["multipliers"]
