"""Every regime is expressible: the task and training options of `python -m fci` and
the Boolean studies (one definition, fci.cli), recorded in summary.json and the
captions, refused before any work when bad; SGD momentum in every backend that runs it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fci.fpe.splits import register_split, unregister_split
from fci.models.mlp import MaskedMLP, MaskedMLPStack
from fci.store import config_key
from fci.train import BackendUnavailable, TrainConfig, auto_backend, entry_configs, fit
from fci.train.backends.kernel import library as kernel

REGIME = ["--vars", "26", "--layout", "shared", "--outputs", "clauses", "--p", "uniform", "--negation-prob", "0.25",
          "--train-samples", "96", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.5", "--weight-decay", "0.001",
          "--batch-size", "32", "--warmup", "3", "--finetune", "2", "--form", "cnf"]
EXPECTED = {"vars": 26, "layout": "shared", "outputs": "clauses", "p": "uniform", "negation_prob": 0.25,
            "train_samples": 96, "optimizer": "sgd", "lr": 0.05, "momentum": 0.5, "weight_decay": 0.001,
            "batch_size": 32, "warmup": 3, "finetune": 2, "form": "cnf"}

BAD = [
    (["--p", "2"], "--p: p must be a number in [0, 1]"),
    (["--p", "often"], "--p: must be a number in [0, 1], 'balanced' or 'uniform'"),
    (["--vars", "5"], "--vars: n_vars must be >= n_clauses * clause_size"),
    (["--layout", "ring"], "--layout: invalid choice"),
    (["--outputs", "xor"], "--outputs: invalid choice"),
    (["--form", "xyz"], "--form: invalid choice"),
    (["--negation-prob", "1.5"], "--negation-prob: negation_prob must be a number in [0, 1]"),
    (["--train-samples", "0"], "--train-samples"),
    (["--optimizer", "rmsprop"], "--optimizer: invalid choice"),
    (["--lr", "0"], "--lr: lr must be a number in (0, 1000], got 0.0"),
    (["--lr", "inf"], "argument --lr: must be a finite number, got 'inf'"),
    (["--lr", "1e9"], "--lr: lr must be a number in (0, 1000]"),
    (["--momentum", "1"], "--momentum: momentum must be a number in [0, 1)"),
    (["--momentum", "0.9"], "--momentum: momentum applies to optimizer 'sgd' only"),
    (["--weight-decay", "-1"], "--weight-decay: weight_decay must be a number in [0, 1000]"),
    (["--batch-size", "0"], "--batch-size"),
    (["--warmup", "-1"], "--warmup"),
    (["--finetune", "-2"], "--finetune"),
    (["--splits", "random,nonesuch"], "--splits takes distinct names from"),
]


@pytest.fixture
def no_training(monkeypatch):
    """Any attempt to train fails the test: a refusal must come first."""
    import analyses.kinds as common
    import fci.__main__ as cli

    def boom(*a, **k):
        raise AssertionError("training started before the options were checked")

    monkeypatch.setattr(common, "run_fpe", boom)
    monkeypatch.setattr(cli, "run_fpe", boom)


@pytest.mark.parametrize("argv,message", BAD)
@pytest.mark.parametrize("command", ["fci", "study"])
def test_bad_values_are_refused_before_training_with_the_flag_named(no_training, tmp_path, capsys, command, argv, message):
    if command == "fci":
        from fci.__main__ import main
    else:
        from analyses.superposition_sweep import main
    with pytest.raises(SystemExit) as e:
        main([*argv, "--data", str(tmp_path / "d")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and argv[0] in err[0], err
    if message == argv[0]:  # a range check: the allowed range is stated
        assert ">= " in err[0] and argv[1] in err[0], err


def test_python_m_fci_options_reach_the_trial_specs(tmp_path):
    from fci.__main__ import build_parser, validate

    ap = build_parser()
    args = ap.parse_args([*REGIME, "--trials", "1", "--data", str(tmp_path)])
    _, specs = validate(ap, args)
    t, tr = specs[0].task, specs[0].train
    assert (t.n_vars, t.layout, t.outputs, t.p, t.negation_prob, t.n_train) == (26, "shared", "clauses", "uniform", 0.25, 96)
    assert (tr.optimizer, tr.lr, tr.momentum, tr.weight_decay, tr.batch_size, tr.warmup, tr.finetune) == \
        ("sgd", 0.05, 0.5, 0.001, 32, 3, 2)


@pytest.fixture
def toy_split():
    register_split("halves", lambda W, M, alpha, gen, **_: np.tile(np.arange(W.shape[1]) * alpha // W.shape[1], (W.shape[0], 1)),
                   color="#123456")
    try:
        yield "halves"
    finally:
        unregister_split("halves")


def test_a_study_records_every_option_and_runs_a_registered_split(tmp_path, toy_split):
    from analyses.superposition_sweep import main

    out = tmp_path / "out"
    assert main(["--tiny", "--device", "cpu", "--trials", "2", "--out", str(out), "--data", str(tmp_path / "d"),
                 "--splits", f"random,{toy_split}", *REGIME]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["regime"] == EXPECTED
    assert summary["config"]["splits"] == ["random", toy_split]
    df = pd.read_csv(out / "results.csv")
    assert set(df.condition) == {"dense", "restart", "random", toy_split}
    assert df.dead_units.between(0, df.width).all()
    # the caption of every figure names the regime
    html = (out / "loss_curves.html").read_text()
    for text in ("CNF, shared clauses outputs", "p=uniform", "negation 0.25", "n=26", "96 train samples", "sgd lr=0.05",
                 "momentum=0.5", "wd=0.001", "batch 32", "3+2 epochs"):
        assert text in html, text
    # and each stored model was trained under exactly those options
    spec_task, spec_train = summary["config"]["task"], summary["config"]["train"]
    assert spec_task["p"] == "uniform" and spec_task["layout"] == "shared" and spec_train["momentum"] == 0.5
    assert spec_task["form"] == "cnf"
    row = df[df.condition == toy_split].iloc[0]
    assert isinstance(row.store_key, str) and len(row.store_key) > 8


def test_defaults_leave_the_study_regime_and_store_keys_unchanged():
    from analyses.levels import HEADLINE, LEVELS, make_specs

    cfg = TrainConfig()
    assert "momentum" not in cfg.to_dict()  # keys of momentum-free runs are those from before the field
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    spec, _ = make_specs([HEADLINE], LEVELS["full"], trials=1, seed=0)[0]
    keys = {k: config_key(c) for k, c in entry_configs(spec).items()}
    assert ("random", 1) in keys and len(set(keys.values())) == len(keys)
    spec2, _ = make_specs([HEADLINE], LEVELS["full"], trials=1, seed=0, restart=False)[0]
    assert {k: config_key(c) for k, c in entry_configs(spec2).items()}.items() <= keys.items()


def _stack(seed=0):
    models = [MaskedMLP(6, h, 1, seed=seed + i) for i, h in enumerate((3, 5))]
    return MaskedMLPStack.from_models(models)


def test_sgd_momentum_trains_like_torch_sgd_and_the_kernel_refuses_it():
    cfg = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=8)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, 40, 6, generator=g) < 0.5).float()
    y = (torch.rand(2, 40, 1, generator=g) < 0.5).float()
    a, b, c = _stack(), _stack(), _stack()
    _, la = fit(a, x, y, cfg, range(4), backend="torch")
    _, lb = fit(b, x, y, cfg, range(4), backend="reference")
    _, lc = fit(c, x, y, TrainConfig(optimizer="sgd", lr=0.1, batch_size=8), range(4), backend="reference")
    assert torch.allclose(la, lb, atol=1e-5)
    assert not torch.allclose(lb, lc, atol=1e-4)  # momentum changes the run
    for l in range(a.n_layers):
        assert torch.allclose(a.weights[l], b.weights[l], atol=1e-4)
    assert auto_backend(a, cfg).name != "kernel"
    if kernel.available():
        with pytest.raises(BackendUnavailable, match="momentum"):
            fit(_stack(), x, y, cfg, range(1), backend="kernel")


# --------------------------------------------------------------------------- the JobStudy studies on the Boolean task

#: study -> (extra options for a small tiny run on the Boolean task, the caption's figure file)
JOB_STUDIES = {
    "wide_sparse": (["--base-widths", "2", "--alphas", "2"], "wide_sparse.html"),
    "deep_fpe": (["--datasets", "boolean", "--depths", "2"], "deep_fpe.html"),
    "effective_density": (["--datasets", "boolean", "--multipliers", "0.5,1"], "effective_density.html"),
    "structured_sparsity": (["--alphas", "2"], "structured_sparsity.html"),
}
CAPTION = ("CNF, shared clauses outputs", "p=uniform", "negation 0.25", "n=26", "96 train samples", "sgd lr=0.05",
           "momentum=0.5", "wd=0.001", "batch 32", "3+2 epochs")


def _study(name):
    import importlib

    return importlib.import_module(f"analyses.{name}").STUDY


@pytest.mark.parametrize("name", JOB_STUDIES)
def test_a_job_study_records_every_regime_option_and_trains_under_it(tmp_path, name):
    from analyses.runner import run as run_job_study

    extra, figure = JOB_STUDIES[name]
    out = tmp_path / "out"
    assert run_job_study(_study(name), ["--tiny", "--device", "cpu", "--trials", "2", "--out", str(out),
                                        "--data", str(tmp_path / "d"), *extra, *REGIME]) == 0
    summary = json.loads((out / "summary.json").read_text())
    cfg = summary["config"]
    assert cfg["regime"] == EXPECTED
    assert cfg["train"] == {**TrainConfig(optimizer="sgd", lr=0.05, momentum=0.5, weight_decay=0.001, batch_size=32,
                                          warmup=3, finetune=2).to_dict(), "momentum": 0.5}
    assert (cfg["task"]["layout"], cfg["task"]["outputs"], cfg["task"]["p"], cfg["task"]["n_vars"], cfg["task"]["n_train"],
            cfg["task"]["form"]) == ("shared", "clauses", "uniform", 26, 96, "cnf")
    assert not set(cfg["study_options"]) & {k for k in EXPECTED}  # recorded once, under config.regime
    html = (out / figure).read_text()
    for text in CAPTION:  # the figure's caption names the regime
        assert text in html, (name, text)


def _boolean_jobs(name, jobs):
    """(train dict, task dict) of each Boolean job; the train dict of each digits job."""
    boolean, other = [], []
    for j in jobs:
        if name == "structured_sparsity":
            boolean.append((j["train"], j["task"]))
        elif name == "wide_sparse":
            (boolean if j["dataset"]["name"] == "boolean" else other).append((j["train"], j["dataset"].get("task")))
        else:
            (boolean if j["dataset"] == "boolean" else other).append((j["train"], j["data"].get("task")))
    return boolean, other


@pytest.mark.parametrize("name", JOB_STUDIES)
def test_the_regime_reaches_the_boolean_jobs_and_only_them(name):
    from analyses.kinds import JobContext, _check_regime, build_job_parser
    from analyses.levels import LEVELS, regime_level

    study = _study(name)
    ap = build_job_parser(study)
    mixed = {"deep_fpe": ["--datasets", "boolean,digits"], "effective_density": ["--datasets", "boolean,digits"]}.get(name, [])
    args = ap.parse_args(["--tiny", "--trials", "2", *mixed, *REGIME])
    args.trials = 2
    _check_regime(study, ap, args)
    level = regime_level(ap, args)
    ctx = JobContext(args=args, level=level, device=torch.device("cpu"), base_level=LEVELS["tiny"],
                     task=study.boolean_task(args, level))
    boolean, other = _boolean_jobs(name, study.jobs(ctx))
    assert boolean and all(TrainConfig.from_dict(t) == level.train for t, _ in boolean)
    assert level.train.optimizer == "sgd" and level.train.momentum == 0.5
    for _, task in boolean:
        assert (task["layout"], task["outputs"], task["p"], task["negation_prob"], task["n_vars"], task["n_train"]) == \
            ("shared", "clauses", "uniform", 0.25, 26, 96)
    assert bool(other) == bool(mixed)
    assert all(TrainConfig.from_dict(t) == LEVELS["tiny"].train for t, _ in other)  # digits keeps the level's schedule


def test_default_regime_options_leave_the_job_studies_store_keys_unchanged():
    """Without regime options a JobStudy builds the same jobs (and store keys) as before them."""
    from analyses import structured_sparsity as S
    from analyses.kinds import JobContext, build_job_parser
    from analyses.levels import LEVELS, regime_level

    ap = build_job_parser(S.STUDY)
    args = ap.parse_args(["--tiny"])
    args.trials = 2
    S.validate(ap, args)
    assert regime_level(ap, args) == LEVELS["tiny"]
    ctx = JobContext(args=args, level=LEVELS["tiny"], device=torch.device("cpu"))
    jobs = S.jobs(ctx)
    task = {"n_clauses": 8, "clause_size": 3, "n_vars": None, "layout": "disjoint", "negation_prob": 0.5, "outputs": "dnf",
            "p": "balanced", "n_train": LEVELS["tiny"].n_train, "n_test": LEVELS["tiny"].n_test}
    assert all(j["task"] == task and j["train"] == LEVELS["tiny"].train.to_dict() for j in jobs)


JOB_BAD = [b for b in BAD if b[0][0] != "--splits"]


@pytest.fixture
def no_job_training(monkeypatch):
    """Any attempt to run a job fails the test: a refusal must come first."""
    import analyses.kinds as jobs_mod

    def boom(*a, **k):
        raise AssertionError("jobs started before the options were checked")

    monkeypatch.setattr(jobs_mod.Store, "share", boom)


@pytest.mark.parametrize("argv,message", JOB_BAD)
@pytest.mark.parametrize("name", JOB_STUDIES)
def test_a_job_study_refuses_bad_regime_values_before_any_work(no_job_training, tmp_path, capsys, name, argv, message):
    from analyses.runner import run as run_job_study

    with pytest.raises(SystemExit) as e:
        run_job_study(_study(name), ["--tiny", *argv, "--data", str(tmp_path / "d")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and argv[0] in err[0], err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("name,argv", [("wide_sparse", ["--dataset", "digits"]), ("deep_fpe", ["--datasets", "digits"]),
                                       ("effective_density", ["--datasets", "digits"])])
def test_a_regime_option_without_boolean_jobs_is_refused(no_job_training, tmp_path, capsys, name, argv):
    from analyses.runner import run as run_job_study

    with pytest.raises(SystemExit) as e:
        run_job_study(_study(name), ["--tiny", *argv, "--optimizer", "sgd", "--data", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "--optimizer applies to the Boolean" in err and "this run trains no Boolean task" in err
