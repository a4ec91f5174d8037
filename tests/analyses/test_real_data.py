"""analyses.real_data: the statistics on hand-built tables, the dataset's
identity in the job keys, bad --embeddings files failing before any work, and
the study end to end at --tiny on a small synthetic embeddings file."""

from __future__ import annotations

import argparse
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from analyses import real_data as rd
from analyses.levels import LEVELS
from fci.data import DatasetSpec
from fci.fpe.mlp import expand
from fci.models.mlp import MaskedMLP
from fci.stats import check_verdict
from fci.store import config_key
from fci.train import FPEResult, FPESpec, ModelResult
from tests.helpers import refusal

pytestmark = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")



def _fpe_result(hidden, seed, parent, dense, children):
    """A hand-built trial result on digits (the models are the test's own)."""
    spec = FPESpec(data=DatasetSpec.digits(), hidden=hidden, seed=seed, expansions=tuple(children))
    return FPEResult(spec=spec, task=None, parent=parent, dense=dense, children=children)

def _npz(path, seed=0, n_train=96, n_test=48, dim=12, classes=3, **override):
    """Learnable Gaussian-blob embeddings: class c is centred at 3 * e_c."""
    rng = np.random.default_rng(seed)

    def draw(n):
        y = np.arange(n) % classes
        x = rng.normal(0, 1, (n, dim)).astype(np.float32)
        x[np.arange(n), y] += 3.0
        return x, np.array([f"class{c}" for c in y])

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    arrays = {"X_train": xtr, "y_train": ytr, "X_test": xte, "y_test": yte, **override}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _args(**kw):
    base = {"embeddings": None, "split_seed": 0, "warmup": None, "finetune": None, "batch_size": None, "lr": None}
    return argparse.Namespace(**{**base, **kw})


# --------------------------------------------------------------------------- pure pieces


def _table():
    """Two widths x 3 seeds; random children beat dense by exactly 0.05, gram children lose 0.1 in one trial."""
    rows = []
    for h in (4, 8):
        for s in range(3):
            d = 0.6 + 0.1 * s
            for cond, alpha, acc in (("dense", 1, d), ("random", 2, d + 0.05), ("gram", 2, d - (0.1 if s == 0 else 0.0))):
                rows.append({"dataset": "toy", "hidden": h, "seed": s, "condition": cond, "alpha": alpha, "neurons": h * alpha,
                             "test_accuracy": acc, "train_accuracy": 1.0, "acc_per_param": acc / 100, "test_loss": 0.1,
                             "train_loss_final": 0.01, "train_loss_late_drop": 0.0, "train_loss_late_drop_rel": 0.0,
                             "nnz": 100, "parent_nnz": 100, "active_neurons": h * alpha, "dead_units": 0})
    return pd.DataFrame(rows)


def test_stats_table_pairs_each_child_with_its_own_dense_trial():
    st = rd.stats_table(_table().sample(frac=1.0, random_state=0))  # row order must not matter
    st = st.set_index(["hidden", "condition", "alpha"])
    dense, rand, gram = st.loc[(4, "dense", 1)], st.loc[(4, "random", 2)], st.loc[(4, "gram", 2)]
    assert dense.n == 3 and dense.rel_improvement_mean == 0 and math.isnan(dense.rel_improvement_p)
    assert rand.rel_improvement_mean == pytest.approx(np.mean([0.05 / (0.6 + 0.1 * s) for s in range(3)]))
    # a constant paired difference has no measured variance: the exact sign-flip test answers, 2 / 2**3 with 3 trials
    assert rand.rel_improvement_p == 0.25 and rand.rel_improvement_test == "exact sign-flip test"
    assert gram.rel_improvement_mean == pytest.approx(-0.1 / 0.6 / 3)
    assert gram.rel_improvement_sem == pytest.approx(np.std([-0.1 / 0.6, 0, 0], ddof=1) / math.sqrt(3))
    assert 0.05 < gram.rel_improvement_p < 1
    assert rand.test_accuracy_mean == pytest.approx(0.75) and rand.acc_per_param_mean == pytest.approx(0.0075)
    assert st.nnz_equal_parent.all()
    # dense first, then children, per width
    order = rd.stats_table(_table())
    assert list(order.condition[:3]) == ["dense", "random", "gram"] and list(order.hidden) == [4] * 3 + [8] * 3


def test_stats_table_refuses_a_child_without_its_dense_baseline():
    df = _table()
    df = df[~((df.condition == "dense") & (df.hidden == 8) & (df.seed == 2))]
    with pytest.raises(ValueError, match="no paired dense baseline"):
        rd.stats_table(df)


def _claims_table():
    """Three widths x 5 seeds: random gains 8, 5 and 2 points (falling with width), gram
    gains 3 points at widths 4 and 8 and loses 5 at width 16; a little noise per trial."""
    rng = np.random.default_rng(1)
    rows = []
    for h, rand_gain, gram_gain in ((4, 0.08, 0.03), (8, 0.05, 0.03), (16, 0.02, -0.05)):
        for s in range(5):
            d = 0.6 + 0.02 * s
            for cond, alpha, acc in (("dense", 1, d), ("random", 2, d + rand_gain + 0.004 * rng.standard_normal()),
                                     ("gram", 2, d + gram_gain + 0.004 * rng.standard_normal())):
                rows.append({"dataset": "toy", "hidden": h, "seed": s, "condition": cond, "alpha": alpha, "neurons": h * alpha,
                             "test_accuracy": acc, "train_accuracy": 1.0, "acc_per_param": acc / (10 * h), "test_loss": 0.1,
                             "train_loss_final": 0.01, "train_loss_late_drop": 0.0, "train_loss_late_drop_rel": 0.0,
                             "nnz": 10 * h, "parent_nnz": 10 * h, "active_neurons": h * alpha, "dead_units": 0})
    return pd.DataFrame(rows)


def test_paper_comparison_decides_each_claim_by_its_test():
    df = _claims_table()
    claims = rd.paper_comparison(df, rd.stats_table(df), "toy data.")
    assert all(check_verdict(c) is None for c in claims)  # every verdict follows from its own p or q
    consistent = [c for c in claims if "consistently" in c["claim"]]
    rand, gram = (next(c for c in consistent if c["condition"] == k) for k in ("random", "gram"))
    assert rand["verdict"] == "agrees" and rand["family_size"] == 3 and rand["q"] < 0.05  # a gain at every width
    assert gram["verdict"] == "disagrees" and "width 16" in rand["test"] + gram["test"] and gram["supports"] is False
    trend = [c for c in claims if "narrowest" in c["claim"]]
    assert {c["condition"]: c["verdict"] for c in trend} == {"random": "agrees", "gram": "agrees"}
    assert next(c for c in trend if c["condition"] == "random")["measured"]["largest_at"] == 4
    falls = [c for c in claims if "falls with width" in c["claim"]]
    assert len(falls) == 3 and all(c["verdict"] == "agrees" for c in falls)  # acc / (10 h) falls for every condition
    assert len(claims) == 2 + 2 + 2 + 3


def test_inert_children_counts_empty_children_and_collapsed_alphas():
    df = _table()
    df.loc[df.condition == "gram", "alpha"] = 4
    df.loc[df.condition == "gram", "neurons"] = df.hidden * 4
    extra = df[df.condition == "gram"].copy().assign(alpha=2, neurons=lambda d: d.hidden * 2)
    extra.loc[extra.seed == 1, "test_accuracy"] += 0.01  # one trial where alpha 2 differs
    gram4 = df.condition == "gram"
    df.loc[gram4, "active_neurons"] = df.loc[gram4, "hidden"] * 2  # half of the alpha-4 children are inert
    out = rd.inert_children(pd.concat([df, extra], ignore_index=True))
    assert out["gram-4"]["inert_fraction"] == pytest.approx(0.5) and out["gram-2"]["inert_fraction"] == 0
    assert out["random-2"]["inert_fraction"] == 0
    assert out["gram-4-equals-gram-2"] == {"trials": 4, "of": 6}


def test_log_ticks_span_the_values_with_readable_labels():
    t = rd._log_ticks([0.0002, 0.003, float("nan")])
    assert t["type"] == "log" and t["tickvals"][0] <= 0.0002 * 2 and t["tickvals"][-1] >= 0.003
    assert 0.001 in t["tickvals"] and t["ticktext"] == [f"{v:.3g}" for v in t["tickvals"]]
    assert rd._log_ticks([float("nan")]) == {"type": "log"}


def _result(hidden=4, alphas=((1, "random"), (2, "random"), (2, "gram"))):
    parent = MaskedMLP(12, hidden, 3, seed=0)
    dense = MaskedMLP(12, hidden, 3, seed=0)

    def mr(model, acc, loss):
        return ModelResult(model, train_accuracy=1.0, test_accuracy=acc, test_exact_match=acc, test_loss=0.3, train_loss=loss)

    children = {(s, a): mr(expand(parent, a, s, seed=1), 0.8, [1.0, 0.5, 0.5, 0.25]) for a, s in alphas}
    return _fpe_result(hidden=hidden, seed=0, parent=mr(parent, 0.7, [2.0]),
                         dense=mr(dense, 0.75, [2.0] * 9 + [1.0] * 10 + [0.9]), children=children)


def test_model_rows_label_the_control_keep_the_budget_and_measure_the_late_drop():
    rows = {(r["condition"], r["alpha"]): r for r in rd.model_rows(_result())}
    assert set(rows) == {("dense", 1), ("restart", 1), ("random", 2), ("gram", 2)}
    parent_nnz = MaskedMLP(12, 4, 3, seed=0).nnz()
    assert all(r["nnz"] == r["parent_nnz"] == parent_nnz for r in rows.values())
    assert rows[("random", 2)]["neurons"] == 8 and rows[("restart", 1)]["neurons"] == 4
    assert rows[("random", 2)]["active_neurons"] == 8  # 12 inputs split in two: no empty child
    assert rows[("dense", 1)]["acc_per_param"] == pytest.approx(0.75 / parent_nnz)
    # fci.metrics.late_drop: dense, 20 epochs, windows of 2: mean(1.0, 1.0) -> mean(1.0, 0.9), a fall of 0.05 (5%);
    # children, 4 epochs, windows of 1: 0.5 -> 0.25 (50%). Neither is flat (>= 0.005 absolute and >= 5% relative).
    assert rows[("dense", 1)]["train_loss_late_drop"] == pytest.approx(0.05)
    assert rows[("dense", 1)]["train_loss_late_drop_rel"] == pytest.approx(0.05)
    assert rows[("random", 2)]["train_loss_late_drop"] == pytest.approx(0.25)
    assert rows[("random", 2)]["train_loss_late_drop_rel"] == pytest.approx(0.5)
    assert not rows[("dense", 1)]["converged"] and not rows[("random", 2)]["converged"]
    assert rows[("dense", 1)]["train_loss_final"] == 0.9 and rows[("dense", 1)]["test_accuracy"] == 0.75
    assert rows[("random", 2)]["parent_test_accuracy"] == 0.7
    tensors = rd._tensors(_result())
    assert torch.equal(tensors["loss.random-2"], torch.tensor([1.0, 0.5, 0.5, 0.25]))
    assert "parent.W0" in tensors and "gram-2.M0" in tensors and "loss.parent" not in tensors


def test_expansions_always_hold_the_restart_control():
    assert rd.expansions(["random", "gram"], [2, 4]) == [("random", 1), ("random", 2), ("gram", 2), ("random", 4), ("gram", 4)]
    assert rd.condition_name("gram", 1) == "restart" and rd.condition_name("gram", 4) == "gram"


def test_dataset_identity_follows_file_contents_not_its_name(tmp_path):
    a = _npz(tmp_path / "emb.npz", seed=0)
    same = _npz(tmp_path / "copy.npz", seed=0)
    ida, idsame = rd.dataset_id(_args(embeddings=str(a))), rd.dataset_id(_args(embeddings=str(same)))
    assert ida["sha256"] == idsame["sha256"] and ida["file"] == "emb.npz"
    other = tmp_path / "other"
    other.mkdir()
    b = _npz(other / "emb.npz", seed=1)  # same file name, other contents
    assert rd.dataset_id(_args(embeddings=str(b)))["sha256"] != ida["sha256"]
    assert rd.dataset_id(_args(split_seed=3)) == {"source": "sklearn-digits", "split_seed": 3, "test_fraction": 0.25}
    # the schedule: per data source, overridable, validated
    assert rd.schedule(_args(), "full").batch_size == 64
    assert rd.schedule(_args(embeddings=str(a)), "full").warmup == 25
    assert rd.schedule(_args(warmup=7, lr=0.5), "full").warmup == 7
    with pytest.raises(ValueError, match="batch_size"):
        rd.schedule(_args(batch_size=0), "quick")


# --------------------------------------------------------------------------- the command


def _run(tmp_path, *extra, tag="out"):
    return rd.main(["--tiny", "--device", "cpu", "--data", str(tmp_path / "data"), "--out", str(tmp_path / tag), *extra])


@pytest.mark.parametrize("override, message", [
    ({"y_test": None}, r"missing key\(s\) \['y_test'\]"),
    ({"X_train": np.zeros(96, dtype=np.float32)}, "X_train must be a 2-d numeric array"),
    ({"y_train": np.arange(95)}, "X_train has 96 rows but y_train has 95"),
])
def test_a_bad_embeddings_file_fails_before_any_work(tmp_path, capsys, override, message):
    bad = _npz(tmp_path / "bad.npz", **override)
    with pytest.raises(SystemExit) as e:
        _run(tmp_path, "--embeddings", str(bad))
    assert e.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--embeddings", "/nonexistent/emb.npz"], "no such file"),
    (["--embeddings", "EMB", "--split-seed", "1"], "--split-seed splits digits"),
    (["--widths", "4,x"], "--widths must be comma-separated integers"),
    (["--widths", "4,8,4"], "--widths lists 4 more than once"),
    (["--alphas", "1,2"], "--alphas values must be >= 2"),
    (["--splits", "random,clause"], "--splits takes distinct names"),
    (["--splits", "random, random"], "--splits lists random more than once"),
    (["--batch-size", "0"], "schedule: batch_size"),
])
def test_bad_options_name_themselves(tmp_path, capsys, argv, message):
    argv = [str(_npz(tmp_path / "emb.npz")) if a == "EMB" else a for a in argv]
    _, err = refusal(lambda a: _run(tmp_path, *a), argv, capsys)
    assert message in err
    assert not (tmp_path / "data").exists()


def test_not_an_npz_file(tmp_path, capsys):
    junk = tmp_path / "emb.npz"
    junk.write_text("not a zip")
    with pytest.raises(SystemExit):
        _run(tmp_path, "--embeddings", str(junk))
    assert "not a readable .npz file" in capsys.readouterr().err


def test_tiny_run_on_embeddings_end_to_end_and_rerun_trains_nothing(tmp_path, monkeypatch):
    emb = _npz(tmp_path / "clip.npz")
    assert _run(tmp_path, "--embeddings", str(emb), "--widths", "2,4", "--splits", "random,gram") == 0
    out = tmp_path / "out"
    df = pd.read_csv(out / "results.csv")
    # 2 widths x 2 trials x (dense + restart + random-2 + gram-2)
    assert len(df) == 16
    assert set(zip(df.condition, df.alpha)) == {("dense", 1), ("restart", 1), ("random", 2), ("gram", 2)}
    assert (df.nnz == df.parent_nnz).all()  # FPE keeps the budget exactly
    assert df.dataset.str.startswith("embeddings-clip-").all() and sorted(df.seed.unique()) == [0, 1]
    assert df.test_accuracy.between(0, 1).all() and df.neurons.equals(df.hidden * df.alpha)
    st = pd.read_csv(out / "stats.csv")
    assert len(st) == 8 and (st.n == 2).all() and st.nnz_equal_parent.all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["trained_jobs"] == 4 and summary["budget_kept"] is True
    assert summary["dataset"]["id"]["sha256"] == rd.file_sha256(emb) and summary["dataset"]["id"]["file"] == "clip.npz"
    assert summary["train"]["warmup"] == rd.SCHEDULES["tiny"].warmup
    # per split: gains at every width, largest at the narrowest, accuracy per parameter; per condition: it falls with width
    assert len(summary["paper"]) == 2 + 2 + 2 + 3 and all(check_verdict(c) is None for c in summary["paper"])
    assert summary["correction"] == "benjamini-hochberg" and {"rel_improvement_q", "family_size", "degenerate"} <= set(st.columns)
    assert summary["figures"] == ["real_data.html", "real_data_loss.html"]
    assert {"random-2", "gram-2"} <= set(summary["inert_children"])
    for f in ("real_data.html", "real_data_loss.html", "real_data.plotly.json"):
        assert (out / f).stat().st_size > 1000
    fig = json.loads((out / "real_data.plotly.json").read_text())
    assert "clip.npz" in json.dumps(fig["layout"]["annotations"])  # the caption names the file

    # the job key holds the file's hash: a rerun loads everything and trains nothing
    def refuse(*a, **k):
        raise AssertionError("the rerun trained a model")

    monkeypatch.setattr(rd, "run_fpe", refuse)
    assert _run(tmp_path, "--embeddings", str(emb), "--widths", "2,4", "--splits", "random,gram", tag="again") == 0
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert again["run"]["trained_jobs"] == 0 and again["run"]["loaded_jobs"] == 4
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "results.csv"), df)
    # ... while a file with other contents under the same name is new work
    other = tmp_path / "other"
    other.mkdir()
    _npz(other / "clip.npz", seed=5)
    with pytest.raises(AssertionError, match="the rerun trained"):
        _run(tmp_path, "--embeddings", str(other / "clip.npz"), "--widths", "2,4", tag="other")


def test_jobs_identify_the_digits_split(tmp_path):
    ctx = rd.JobContext(args=_args(split_seed=2, trials=2, seed=5, widths="4,8", alphas="2", splits="random"),
                        level=LEVELS["tiny"], device=torch.device("cpu"))
    jobs = rd.jobs(ctx)
    assert [(j["hidden"], j["seed"]) for j in jobs] == [(4, 5), (4, 6), (8, 5), (8, 6)]
    assert all(j["data"] == {"source": "sklearn-digits", "split_seed": 2, "test_fraction": 0.25} for j in jobs)
    ctx.args.split_seed = 3
    assert {config_key(rd.STUDY.job_config(j)) for j in jobs}.isdisjoint(
        config_key(rd.STUDY.job_config(j)) for j in rd.jobs(ctx))


def test_list_options_parse_and_keep_the_split_order():
    from analyses.kinds import build_job_parser
    ap = build_job_parser(rd.STUDY)
    args = ap.parse_args(["--tiny", "--widths", "8, 4", "--alphas", "4,2", "--splits", "gram, random"])
    rd.validate(ap, args)
    # stored as before: comma-joined strings, numbers sorted, splits in the given order (they order the job key)
    assert (args.widths, args.alphas, args.splits) == ("4,8", "2,4", "gram,random")
    args = ap.parse_args(["--tiny"])
    rd.validate(ap, args)
    assert (args.widths, args.alphas, args.splits) == ("4,8", "2", "random,gram")
