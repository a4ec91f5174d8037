"""The study commands in analyses/: pure helpers directly, each command end to
end on a tiny configuration (hidden --tiny level: 128 samples, 4+4 epochs)."""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pandas as pd
import pytest

from analyses import study_names
from analyses.capacity_vs_alpha import balanced_same_group_prob, collision_figure
from analyses.interference_regression import regressions
from analyses.levels import HEADLINE, LEVELS, make_specs, superposition_points
from analyses.style import significance_text
from analyses.superposition_sweep import heatmap_figure, trend_figure
from analyses.tables import condition_stats, paired_rows, pooled_stats, restart_reason
from fci.io import jsonable
from fci.train import TrainConfig
from tests.helpers import refusal

ALL_STUDIES = study_names()
STUDIES = study_names("Study")  # the sweeps of Boolean FPE trials

REQUIRED = ["condition", "alpha", "hidden", "n_clauses", "clause_size", "trial", "seed", "test_accuracy", "nnz",
            "feature_capacity", "cosine_interference"]
SPECIFIC = {
    "capacity_vs_alpha": ({"metrics_vs_alpha", "collisions"}, ["whole_frac", "pair_frac", "theory_whole", "theory_pair"]),
    "superposition_sweep": ({"trends", "heatmaps"}, []),
    "interference_regression": ({"fold_changes", "regressions"}, []),
    "code_gallery": ({"gallery_alpha2", "gallery_alpha4"}, []),
    "decoding": ({"decoding"}, ["decode_f1", "circuit_agreement"]),
}


def _main(name):
    return importlib.import_module(f"analyses.{name}").main


def _n_store(data):
    d = data / "store"
    return len([p for p in d.iterdir() if not p.name.startswith(".")]) if d.is_dir() else 0


# --------------------------------------------------------------------------- pure helpers


def _synthetic(trials=4):
    """Two configurations; clause children beat dense by 0.1, random by noise."""
    rng = np.random.default_rng(0)
    rows = []
    for h in (4, 8):
        for t in range(trials):
            base = 0.7 + 0.01 * t
            for cond, alpha, acc in (("dense", 1, base), ("clause", 2, base + 0.1), ("random", 2, base + rng.normal(0, 0.02))):
                rows.append({"condition": cond, "alpha": alpha, "hidden": h, "n_clauses": 8, "clause_size": 3, "trial": t,
                             "seed": t, "test_accuracy": acc, "acc_per_param": acc / 100, "nnz": 100,
                             "feature_capacity": 0.5 if cond == "dense" else 0.6,
                             "cosine_interference": 0.4 if cond == "dense" else 0.2 + 0.01 * t})
    return pd.DataFrame(rows)


pytestmark = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # scipy, near-constant pairs


def test_condition_stats_pairs_children_with_their_dense_trial():
    df = _synthetic()
    st = condition_stats(df).set_index(["hidden", "condition", "alpha"])
    dense, clause = st.loc[(4, "dense", 1)], st.loc[(4, "clause", 2)]
    assert dense.n == 4 and dense.rel_improvement_mean == 0 and math.isnan(dense.test_accuracy_p)
    expected = np.mean([0.1 / (0.7 + 0.01 * t) for t in range(4)])
    assert clause.rel_improvement_mean == pytest.approx(expected)
    # a constant paired difference: no variance to estimate, so the exact sign-flip test answers, 2 / 2**4 with 4 trials
    assert clause.test_accuracy_p == 0.125 and clause.rel_improvement_test == "exact sign-flip test"
    assert clause.rel_improvement_q == 0.125 and clause.family_size == 2 and clause.degenerate is None  # BH over 2 widths
    assert clause.feature_capacity_fold_mean == pytest.approx(1.2)
    assert clause.cosine_interference_fold_mean == pytest.approx(np.mean([(0.2 + 0.01 * t) / 0.4 for t in range(4)]))
    pr = paired_rows(df)
    assert len(pr) == 16 and set(pr.condition) == {"clause", "random"}


def test_condition_stats_name_a_restart_that_cannot_differ_and_leave_it_out():
    df = _synthetic()
    restart = df[df.condition == "dense"].assign(condition="restart")  # plain SGD: the restart is dense, bit for bit
    st = condition_stats(pd.concat([df, restart], ignore_index=True), restart=restart_reason(TrainConfig(optimizer="sgd", lr=0.1)))
    r = st[st.condition == "restart"]
    assert r.not_applicable.str.contains("plain SGD").all() and r.rel_improvement_q.isna().all() and r.family_size.isna().all()
    assert st[st.condition == "clause"].not_applicable.isna().all()
    assert restart_reason(TrainConfig()) is None and restart_reason(TrainConfig(optimizer="sgd", momentum=0.9)) is None
    pooled = pooled_stats(pd.concat([df, restart], ignore_index=True), restart="no state").set_index("condition")
    assert pooled.loc["restart", "not_applicable"] == "no state" and math.isnan(pooled.loc["restart", "q"])
    assert pooled.loc["clause", "n_trials"] == 4 and pooled.loc["clause", "family_size"] == 2  # trials, not 8 pairs


def test_balanced_partition_collision_probability():
    assert balanced_same_group_prob(4, 2, 2) == pytest.approx(2 * (2 * 1) / (4 * 3))
    assert balanced_same_group_prob(24, 1, 3) == pytest.approx(1.0)
    assert balanced_same_group_prob(24, 8, 6) == 0.0  # groups of 3 cannot hold 6
    # many items: approaches the independent-assignment formula alpha**-(m-1)
    assert balanced_same_group_prob(10_000, 4, 3) == pytest.approx(4 ** -2, rel=1e-3)


def test_figure_builders_are_pure_functions_of_the_tables():
    st = condition_stats(_synthetic(trials=6))  # 6 trials: the exact test of a constant gain can reach 2 / 2**6
    assert significance_text([0.01, 0.2, float("nan"), None]) == ["*", "", "", ""]
    fig = trend_figure(st, "caption", n_clauses=8, hidden=4)
    marks = [t for d in fig.data if d.text is not None for t in d.text]
    assert "*" in marks  # the clause split's constant gain is significant
    hm = heatmap_figure(st, "caption", alphas=(2,))
    assert any("*" in str(t) for d in hm.data for row in d.text for t in row)
    assert "caption" in str(fig.layout.annotations[-1].text)


def test_jsonable_makes_strict_json():
    obj = jsonable({"a": float("nan"), "b": np.float32(1.5), "c": [np.int64(3), float("inf")], "d": np.bool_(True)})
    assert json.loads(json.dumps(obj, allow_nan=False)) == {"a": None, "b": 1.5, "c": [3, None], "d": True}


def test_sweeps_share_the_headline_point_and_seeds():
    for level in ("full", "quick"):
        assert HEADLINE in superposition_points(level)
        assert HEADLINE in superposition_points(level, grid=False)
    specs = make_specs([HEADLINE], LEVELS["full"], trials=5, seed=10)
    assert [s.seed for s, _ in specs] == [10, 11, 12, 13, 14] and [t for _, t in specs] == list(range(5))
    assert all(s.train == LEVELS["full"].train for s, _ in specs)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every study once at the tiny level, into one shared store."""
    root = tmp_path_factory.mktemp("analyses")
    data = root / "data"
    out = {}
    for name in STUDIES:
        o = root / name
        assert _main(name)(["--tiny", "--device", "cpu", "--out", str(o), "--data", str(data)]) == 0
        out[name] = o
    return data, out


@pytest.mark.parametrize("name", STUDIES)
def test_study_writes_its_outputs(runs, name):
    _, out = runs
    o = out[name]
    df = pd.read_csv(o / "results.csv")
    assert set(REQUIRED + SPECIFIC[name][1]) <= set(df.columns)
    assert set(df.condition) <= {"dense", "restart", "clause", "random", "gram"} and {"dense", "restart"} <= set(df.condition)
    assert (df[df.condition.isin(["dense", "restart"])].alpha == 1).all()
    # dead units: a count of first-layer units, at most the layer's width
    assert df.dead_units.between(0, df.width).all()
    # FPE keeps the budget: one nnz per trial across all its conditions
    assert (df.groupby(["n_clauses", "hidden", "trial"]).nnz.nunique() == 1).all()
    assert df.test_accuracy.between(0, 1).all() and df.feature_capacity.between(0, 1).all()
    # one row per model: dense + every expansion, per trial
    assert len(df) == df.groupby(["n_clauses", "hidden", "trial"]).ngroups * (1 + df[df.condition != "dense"]
                                                                            .groupby(["condition", "alpha"]).ngroups)

    summary = json.loads((o / "summary.json").read_text())
    assert summary["partial"] is False
    assert summary["config"]["train"] == LEVELS["tiny"].train.to_dict() and summary["config"]["trials"] == LEVELS["tiny"].trials
    assert summary["environment"]["packages"]["torch"] and summary["environment"]["device"] == "cpu"
    conds = summary["conditions"]
    assert {(c["condition"], c["alpha"]) for c in conds} == set(zip(df.condition, df.alpha))
    for c in conds:
        for key in ("test_accuracy_mean", "test_accuracy_sem", "n", "rel_improvement_mean", "rel_improvement_p"):
            assert key in c
        assert c["n"] == LEVELS["tiny"].trials
    assert any(c["rel_improvement_p"] is not None for c in conds if c["condition"] != "dense")
    conv = summary["convergence"]
    assert conv["per_condition"] and {"final_loss", "late_drop_abs", "flat"} <= set(conv["per_condition"][0])

    figs = SPECIFIC[name][0] | {"loss_curves"}
    assert set(summary["figures"]) == {f"{f}.html" for f in figs}
    for f in figs:
        html = (o / f"{f}.html").read_text()
        assert "Plotly.newPlot" in html and "<script src=\"http" not in html and len(html) > 1e6  # plotly.js inlined
        assert "level=tiny" in html  # the config caption
    curves = pd.read_csv(o / "loss_curves.csv")
    assert curves.epoch.max() == LEVELS["tiny"].train.epochs - 1


def test_capacity_collision_check(runs):
    _, out = runs
    df = pd.read_csv(out["capacity_vs_alpha"] / "results.csv")
    ch = df[~df.condition.isin(["dense", "restart"])]
    assert (ch.mask_mismatch == 0).all()  # the recomputed split agrees with the trained masks
    assert (ch[ch.condition == "clause"].whole_frac == 1).all()  # clause split never cuts a clause
    rnd = ch[ch.condition == "random"]
    assert (rnd.whole_frac <= 1).all() and (rnd.theory_whole == rnd.alpha.astype(float) ** -2).all()
    assert len(collision_figure(df).data) > 0
    summary = json.loads((out["capacity_vs_alpha"] / "summary.json").read_text())
    assert {(c["condition"], c["alpha"]) for c in summary["collisions"]} == {(s, a) for s in ("clause", "random") for a in (2, 4)}


def test_regression_and_decoding_summaries(runs):
    _, out = runs
    reg = json.loads((out["interference_regression"] / "summary.json").read_text())["regressions"]
    assert {r["fold"] for r in reg} == {"feature_capacity", "cosine_interference"}
    assert all(r["r2"] is None or r["r2"] <= 1 + 1e-9 for r in reg)
    df = pd.read_csv(out["decoding"] / "results.csv")
    assert df.decode_f1.between(0, 1).all() and df.circuit_agreement.between(0, 1).all()
    gal = json.loads((out["code_gallery"] / "summary.json").read_text())["gallery"]
    assert len(gal["var_labels"]) == 3 * HEADLINE.n_clauses and gal["dense"]["W1"]


def test_rerun_trains_nothing(runs):
    data, out = runs
    before = _n_store(data)
    o = out["decoding"]
    assert _main("decoding")(["--tiny", "--device", "cpu", "--out", str(o), "--data", str(data)]) == 0
    run = json.loads((o / "summary.json").read_text())["run"]
    assert run["trained_trials"] == 0 and run["loaded_trials"] == run["trials"] > 0
    assert _n_store(data) == before


def test_shards_then_a_plain_run_give_the_union(tmp_path):
    main = _main("capacity_vs_alpha")
    args = ["--tiny", "--device", "cpu", "--trials", "4", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "data")]
    parts = []
    for i in range(2):
        assert main(args + ["--shard", f"{i}/2"]) == 0
        parts.append(pd.read_csv(tmp_path / "out" / f"results.shard-{i}-of-2.csv"))
        s = json.loads((tmp_path / "out" / f"summary.shard-{i}-of-2.json").read_text())
        assert s["partial"] is True
    assert not list((tmp_path / "out").glob("*.html")) and not (tmp_path / "out" / "results.csv").exists()
    assert all(len(p) for p in parts) and not set(parts[0].trial) & set(parts[1].trial)  # disjoint, both non-empty
    assert main(args) == 0
    full = pd.read_csv(tmp_path / "out" / "results.csv")
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["run"]["trained_trials"] == 0
    union = pd.concat(parts)
    cols = ["store_key", "test_accuracy", "nnz", "feature_capacity"]
    pd.testing.assert_frame_equal(union[cols].sort_values("store_key").reset_index(drop=True),
                                  full[cols].sort_values("store_key").reset_index(drop=True))


@pytest.mark.parametrize("argv, flag", [
    (["--device", "banana"], "--device"),
    (["--trials", "0"], "--trials"),
    (["--shard", "2/2"], "--shard"),
    (["--shard", "x"], "--shard"),
])
def test_bad_options_fail_at_once(tmp_path, capsys, argv, flag):
    code, err = refusal(_main("capacity_vs_alpha"), ["--tiny", "--data", str(tmp_path)] + argv, capsys)
    assert code == 2
    assert flag in err
    assert not (tmp_path / "store").exists()  # nothing ran


def test_unwritable_out_and_study_options_fail(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as e:
        _main("decoding")(["--tiny", "--out", str(blocker / "sub"), "--data", str(tmp_path)])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _main("code_gallery")(["--tiny", "--show-trial", "5", "--data", str(tmp_path)])
    assert "--show-trial" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _main("decoding")(["--tiny", "--similarity", "0", "--data", str(tmp_path)])
    assert "--similarity" in capsys.readouterr().err


@pytest.mark.parametrize("name", ALL_STUDIES)
def test_help_names_the_contract(capsys, name):
    with pytest.raises(SystemExit) as e:
        _main(name)(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--quick", "--out", "--device", "--trials", "--seed", "--shard", "--data"):
        assert opt in text
    assert "--tiny" not in text


def test_regressions_from_synthetic_tables():
    df = _synthetic()
    df = pd.concat([df, df.assign(hidden=df.hidden * 4, test_accuracy=df.test_accuracy * 0.9)])  # more configurations
    reg = regressions(df, condition_stats(df))
    assert set(reg.level) == {"configs", "trials"} and set(reg.sweep) == {"hidden", "clauses"}


@pytest.mark.parametrize("name", ALL_STUDIES)
def test_every_study_runs_through_the_one_runner(monkeypatch, name):
    """`python -m analyses.<name>` is `analyses.runner.run` on the module's STUDY,
    which has every step the runner calls."""
    import importlib

    import analyses.runner as runner

    mod = importlib.import_module(f"analyses.{name}")
    for step in ("parser", "prepare", "plan", "table", "run_record", "finish"):
        assert callable(getattr(mod.STUDY, step, None)), f"{name}.STUDY lacks {step}"
    seen = []
    monkeypatch.setattr(runner, "run", lambda study, argv=None: seen.append((study, argv)) or 0)
    for m in ("analyses.kinds", f"analyses.{name}"):
        if hasattr(importlib.import_module(m), "run"):
            monkeypatch.setattr(importlib.import_module(m), "run", runner.run)
    assert mod.main(["--tiny"]) == 0
    assert seen == [(mod.STUDY, ["--tiny"])]
