"""`python -m analyses.regimes`: the regime map of where random-split FPE beats dense."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analyses.regimes import CELL_KEYS, CHILDREN, GRIDS, answer, cell_stats, main, specs
from fci.stats import fdr


def test_the_grid_covers_every_axis_with_paired_children():
    g = GRIDS["full"]
    items = specs(g, g.trials, seed=0)
    assert len(items) == len(g.outputs) * len(g.lengths) * len(g.optimizers) * len(g.clauses) * g.trials
    assert g.trials >= 5 and {"dnf", "clauses"} == set(g.outputs) and {"adam", "sgd"} == set(g.optimizers)
    assert len(g.clauses) >= 2 and min(g.lengths) <= 25 and max(g.lengths) >= 1000
    s = items[0][0]
    assert {("clause", 2), ("random", 2), ("clause", 4), ("random", 4), ("random", 1)} == set(s.expansions) == set(CHILDREN)
    trains = {(sp.train.optimizer, sp.train.lr, sp.train.warmup, sp.train.finetune) for sp, _ in items}
    assert ("sgd", 0.1, 1000, 1000) in trains and ("adam", 0.01, 25, 25) in trains


def _rows(rel: float, n: int = 5, noise: float = 0.0, optimizer: str = "adam", n_clauses: int = 8, dense=None,
          condition: str = "random", alpha: int = 2, child=None):
    """A hand-built results table: one cell, dense at 0.8 + 0.01 t (or `dense`) and a child at dense * (1 + rel)
    (or `child`), on test sets of 2048 samples whose majority share is 0.55."""
    rng = np.random.default_rng(0)
    rows = []
    for t in range(n):
        base = {"outputs": "dnf", "optimizer": optimizer, "n_clauses": n_clauses, "warmup": 50, "finetune": 50, "trial": t,
                "base_rate": 0.55, "accuracy_resolution": 1 / 2048}
        d = 0.8 + 0.01 * t if dense is None else dense[t]
        c = d * (1 + rel) + noise * rng.standard_normal() if child is None else child[t]
        rows.append({**base, "condition": "dense", "alpha": 1, "test_accuracy": d})
        rows.append({**base, "condition": condition, "alpha": alpha, "test_accuracy": c})
    return pd.DataFrame(rows)


def test_cell_stats_pair_each_child_with_its_trials_dense_baseline():
    st = cell_stats(_rows(0.05, noise=0.001))
    (r,) = st.to_dict("records")
    assert r["n"] == 5 and r["rel_improvement_mean"] == pytest.approx(0.05, abs=0.005) and r["p"] < 1e-3
    assert r["dense_test_accuracy_mean"] == pytest.approx(0.82) and r["test"] == "paired t-test"
    assert set(CELL_KEYS) <= set(r) and r["q"] == r["p"] and r["family_size"] == 1  # a family of one cell
    assert r["degenerate"] is None and r["not_applicable"] is None


@pytest.mark.parametrize("rel,beats,below", [(0.05, 1, 0), (-0.05, 0, 1)])
def test_answer_names_the_cells_where_random_beats_dense(rel, beats, below):
    a = answer(cell_stats(_rows(rel, noise=0.001)))["random-2"]
    assert (a["beats_dense"], a["below_dense"], a["cells"], a["family_size"]) == (beats, below, 1, 1)
    if beats:
        assert a["beats"][0]["cell"] == "dnf outputs, adam, C=8 (load 1), 50+50 epochs" and a["beats"][0]["q"] < 0.05


def test_a_degenerate_cell_is_named_and_left_out_of_the_family_and_the_counts():
    """Three cells of one child: a clear gain, a loss, and one where dense and child all
    solve the task (every model at 1.0): that one is degenerate, not 'not significant',
    and the family the other two are corrected over has two members."""
    gain = _rows(0.05, noise=0.001, n_clauses=8)
    loss = _rows(-0.05, noise=0.001, n_clauses=16)
    solved = _rows(0.0, n_clauses=4, dense=[1.0] * 5, child=[1.0] * 5)
    at_base = _rows(0.0, n_clauses=32, dense=[0.55] * 5, child=[0.55, 0.55, 0.55, 0.55, 0.55])
    st = cell_stats(pd.concat([gain, loss, solved, at_base], ignore_index=True)).set_index("n_clauses")
    assert st.loc[4, "degenerate"] == "every model at 1" and np.isnan(st.loc[4, "q"])
    assert "base rate" in st.loc[32, "degenerate"] and np.isnan(st.loc[32, "q"])
    assert st.loc[8, "degenerate"] is None and st.loc[8, "family_size"] == 2 == st.loc[16, "family_size"]
    assert [st.loc[8, "q"], st.loc[16, "q"]] == pytest.approx(fdr([st.loc[8, "p"], st.loc[16, "p"]]).q)  # BH over the two
    a = answer(st.reset_index())["random-2"]
    assert (a["cells"], a["family_size"], a["beats_dense"], a["below_dense"], a["not_significant"], a["degenerate"]) == (4, 2, 1, 1, 0, 2)
    assert sorted(c["cell"].split(", ")[2] for c in a["degenerate_cells"]) == ["C=32 (load 4)", "C=4 (load 0.5)"]


def test_the_restart_under_plain_sgd_is_not_applicable_and_not_counted():
    """Plain SGD keeps no optimiser state: the alpha = 1 restart is dense by construction.
    Under Adam the same control is tested."""
    sgd = _rows(0.0, optimizer="sgd", condition="random", alpha=1, child=[0.8 + 0.01 * t for t in range(5)])
    adam = _rows(0.002, noise=0.0005, optimizer="adam", condition="random", alpha=1)
    df = pd.concat([sgd, adam], ignore_index=True).assign(
        condition=lambda d: d.condition.where(~((d.condition == "random") & (d.alpha == 1)), "restart"))
    st = cell_stats(df).set_index("optimizer")
    assert "plain SGD" in st.loc["sgd", "not_applicable"] and np.isnan(st.loc["sgd", "q"])
    assert st.loc["sgd", "degenerate"] is None  # named for what it is, not as a degenerate cell
    assert st.loc["adam", "not_applicable"] is None and st.loc["adam", "family_size"] == 1
    a = answer(st.reset_index())["restart-1"]
    assert (a["cells"], a["family_size"], a["not_applicable"], a["degenerate"]) == (2, 1, 1, 0)
    assert "plain SGD" in a["not_applicable_reason"] and a["not_applicable_cells"] == ["dnf outputs, sgd, C=8 (load 1), 50+50 epochs"]


def test_regimes_quick_end_to_end(tmp_path):
    out = tmp_path / "out"
    assert main(["--quick", "--device", "cpu", "--data", str(tmp_path / "data"), "--out", str(out)]) == 0
    g = GRIDS["quick"]
    df = pd.read_csv(out / "results.csv")
    cells = len(g.outputs) * len(g.lengths) * len(g.optimizers) * len(g.clauses)
    assert len(df) == cells * g.trials * (1 + len(CHILDREN))
    assert set(df.condition) == {"dense", "clause", "random", "restart"} and set(df.outputs) == set(g.outputs)
    st = pd.read_csv(out / "stats.csv")
    assert len(st) == cells * len(CHILDREN) and (st.n == g.trials).all()
    summary = json.loads((out / "summary.json").read_text())
    for key in ("random-2", "random-4", "clause-2", "clause-4", "restart-1"):
        a = summary["answer"][key]
        assert a["cells"] == cells
        assert a["beats_dense"] + a["below_dense"] + a["not_significant"] == a["family_size"]
        assert a["family_size"] + a["degenerate"] + a["not_applicable"] + a["untested"] == cells
        assert all(c["q"] < 0.05 and c["rel_improvement"] > 0 for c in a["beats"])
        assert all(c["p"] < 0.05 <= c["q"] for c in a["raw_only"])
    assert summary["correction"] == "benjamini-hochberg"
    assert summary["answer"]["restart-1"]["not_applicable"] == cells // 2  # the SGD half of the grid
    st = pd.read_csv(out / "stats.csv")
    tested = st[st.degenerate.isna() & st.not_applicable.isna()]
    assert tested.q.notna().all() and (tested.q >= tested.p - 1e-12).all() and st[~st.index.isin(tested.index)].q.isna().all()
    assert {"base_rate", "accuracy_resolution", "momentum"} <= set(df.columns)
    assert (df[df.outputs == "dnf"].accuracy_resolution == 1 / g.n_test).all()
    html = (out / "regime_map.html").read_text()
    assert "Plotly.newPlot" in html and "level=quick" in html
    # a rerun trains nothing
    assert main(["--quick", "--device", "cpu", "--data", str(tmp_path / "data"), "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["run"]["trained_trials"] == 0


def test_bad_options_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--trials", "1", "--data", str(tmp_path)])
    assert "--trials must be >= 2" in capsys.readouterr().err


def test_two_shards_then_a_final_run_equal_an_unsharded_run(tmp_path):
    """--shard I/N trains a disjoint slice into the store and writes partial outputs;
    the final run trains nothing and writes what an unsharded run writes."""
    common = ["--tiny", "--device", "cpu"]
    whole = tmp_path / "whole"
    assert main([*common, "--data", str(whole / "data"), "--out", str(whole / "out")]) == 0
    sharded = tmp_path / "sharded"
    out = sharded / "out"
    parts = []
    for i in range(2):
        assert main([*common, "--shard", f"{i}/2", "--data", str(sharded / "data"), "--out", str(out)]) == 0
        part = json.loads((out / f"summary.shard-{i}-of-2.json").read_text())
        assert part["partial"] is True and part["config"]["shard"] == f"{i}/2" and "answer" not in part
        assert part["run"]["trained_trials"] == part["run"]["trials"]
        parts.append(pd.read_csv(out / f"results.shard-{i}-of-2.csv"))
    assert not (out / "results.csv").exists() and not (out / "regime_map.html").exists()
    keys = [set(zip(p.seed, p.outputs, p.optimizer, p.n_clauses, p.warmup)) for p in parts]
    assert keys[0] and keys[1] and not keys[0] & keys[1]  # two non-empty, disjoint slices
    assert main([*common, "--data", str(sharded / "data"), "--out", str(out)]) == 0
    final = json.loads((out / "summary.json").read_text())
    assert final["run"]["trained_trials"] == 0 and final["run"]["loaded_trials"] == final["run"]["trials"]
    ref = json.loads((whole / "out" / "summary.json").read_text())
    assert final["run"]["trials"] == ref["run"]["trials"] == sum(p["run"]["trials"] for p in
                                                                  (json.loads((out / f"summary.shard-{i}-of-2.json").read_text())
                                                                   for i in range(2)))
    a, b = pd.read_csv(out / "results.csv"), pd.read_csv(whole / "out" / "results.csv")
    pd.testing.assert_frame_equal(a, b)
    cols = list(b.columns)
    union = pd.concat(parts).sort_values(["store_key"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(union[cols], b.sort_values(["store_key"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(pd.read_csv(out / "stats.csv"), pd.read_csv(whole / "out" / "stats.csv"))
    assert final["answer"] == ref["answer"]


def test_a_bad_shard_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--tiny", "--shard", "2/2", "--data", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "--shard I/N needs N >= 1 and 0 <= I < N" in err
    assert not (tmp_path / "d").exists()
