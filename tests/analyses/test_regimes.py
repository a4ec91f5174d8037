"""`python -m analyses.regimes`: the regime map of where random-split FPE beats dense."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analyses.regimes import CELL_KEYS, CHILDREN, GRIDS, answer, cell_stats, main, specs


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


def _rows(rel: float, n: int = 5, noise: float = 0.0):
    """A hand-built results table: one cell, dense at 0.8 and random alpha 2 at 0.8 * (1 + rel)."""
    rng = np.random.default_rng(0)
    rows = []
    for t in range(n):
        base = {"outputs": "dnf", "optimizer": "adam", "n_clauses": 8, "warmup": 50, "finetune": 50, "trial": t}
        d = 0.8 + 0.01 * t
        rows.append({**base, "condition": "dense", "alpha": 1, "test_accuracy": d})
        rows.append({**base, "condition": "random", "alpha": 2, "test_accuracy": d * (1 + rel) + noise * rng.standard_normal()})
    return pd.DataFrame(rows)


def test_cell_stats_pair_each_child_with_its_trials_dense_baseline():
    st = cell_stats(_rows(0.05, noise=0.001))
    (r,) = st.to_dict("records")
    assert r["n"] == 5 and r["rel_improvement_mean"] == pytest.approx(0.05, abs=0.005) and r["p"] < 1e-3
    assert r["dense_test_accuracy_mean"] == pytest.approx(0.82)
    assert set(CELL_KEYS) <= set(r)


@pytest.mark.parametrize("rel,beats,below", [(0.05, 1, 0), (-0.05, 0, 1)])
def test_answer_names_the_cells_where_random_beats_dense(rel, beats, below):
    a = answer(cell_stats(_rows(rel, noise=0.001)))["random-2"]
    assert (a["beats_dense"], a["below_dense"], a["cells"]) == (beats, below, 1)
    if beats:
        assert a["beats"][0]["cell"] == "dnf outputs, adam, C=8 (load 1), 50+50 epochs" and a["beats"][0]["p"] < 0.05


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
        assert a["cells"] == cells and a["beats_dense"] + a["below_dense"] + a["not_significant"] == cells
        assert all(c["p"] < 0.05 and c["rel_improvement"] > 0 for c in a["beats"])
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
