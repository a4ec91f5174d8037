import re
import subprocess
import sys

import pytest

from fci.__main__ import main
from tests.helpers import ROOT


def test_single_configuration_command(tmp_path, capsys):
    args = ["--clauses", "3", "--hidden", "4", "--alpha", "2", "--trials", "2", "--warmup", "2", "--finetune", "2",
            "--train-samples", "128", "--test-samples", "64", "--device", "cpu", "--data", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = {m.group(1): m for m in re.finditer(r"^(dense|clause α=2|random α=2)\s+([\d.]+) ± ([\d.]+)\s+(\d+)$", out, re.M)}
    assert set(rows) == {"dense", "clause α=2", "random α=2"}
    assert len({r.group(4) for r in rows.values()}) == 1  # one nnz for every condition
    assert len([p for p in (tmp_path / "store").iterdir() if not p.name.startswith(".")]) == 6
    table = out.split("interference (mean")[1]
    for name in ("dense", "clause α=2", "random α=2"):
        (line,) = [l for l in table.splitlines() if l.startswith(name)]
        values = [float(v) for v in re.findall(r"(-?[\d.]+|nan) ±", line)]
        assert len(values) == 2
        cap, cos = values
        assert 0 < cap <= 1 and 0 <= cos <= 1


BAD = [
    (["--hidden", "0"], "--hidden must be an integer >= 1, got 0"),
    (["--hidden", "-3"], "--hidden must be an integer >= 1"),
    (["--threshold", "5"], "--threshold is a fraction of each neuron's max|w| in [0, 1] (omit it for 'auto'), got 5.0"),
    (["--threshold", "nan"], "--threshold"),
    (["--alpha", "100"], "--alpha must lie in [1, n=24]"),
    (["--alpha", "0"], "--alpha must be an integer >= 1"),
    (["--trials", "0"], "--trials must be an integer >= 1"),
    (["--splits", "clause,banana"], "--splits takes distinct names from clause,random,gram"),
    (["--clause-size", "0"], "--clause-size must be an integer >= 1"),
    (["--vars", "3"], "--vars: n_vars must be >= n_clauses * clause_size"),
    (["--p", "2"], "--p: p must be a number in [0, 1]"),
    (["--p", "often"], "--p: must be a number in [0, 1], 'balanced' or 'uniform'"),
    (["--lr", "0"], "--lr: lr must be a number in (0, 1000], got 0.0"),
    (["--lr", "inf"], "argument --lr: must be a finite number, got 'inf'"),
    (["--lr", "1e9"], "--lr: lr must be a number in (0, 1000]"),
    (["--negation-prob", "1.5"], "--negation-prob: negation_prob must be a number in [0, 1]"),
    (["--device", "tpu"], "--device"),
    (["--layout", "ring"], "--layout"),
    (["--form", "xyz"], "argument --form: invalid choice: 'xyz'"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_every_bad_option_is_refused_before_any_work_in_one_line(tmp_path, capsys, monkeypatch, argv, message):
    import fci.__main__ as cli

    monkeypatch.setattr(cli, "run_fpe", lambda *a, **k: pytest.fail("trained despite a bad option"))
    with pytest.raises(SystemExit) as e:
        main([*argv, "--data", str(tmp_path / "data")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("python -m fci: error: ")  # one line, no usage dump
    assert not (tmp_path / "data").exists()


def test_an_unwritable_data_folder_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as e:
        main(["--data", str(blocker / "sub")])
    assert e.value.code == 2 and "--data" in capsys.readouterr().err


def test_one_trial_reports_n_1_not_nan(tmp_path, capsys):
    args = ["--clauses", "3", "--hidden", "4", "--trials", "1", "--warmup", "2", "--finetune", "2",
            "--train-samples", "64", "--test-samples", "64", "--device", "cpu", "--data", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "nan" not in out
    assert re.search(r"^dense\s+[\d.]+ \(n=1\)\s+\d+$", out, re.M)


def test_the_explorer_refuses_an_unwritable_data_folder_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = subprocess.run([sys.executable, "-m", "app", "--data", str(blocker / "sub")], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (f"python -m app: error: --data {str(blocker / 'sub')!r} must be a writable folder "
                                "(Not a directory) (see --help)")


def test_study_errors_are_one_line_with_status_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "analyses.decoding", "--tiny", "--threshold", "5", "--data", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "--threshold is 'auto' or a fraction of each neuron's max|w| in [0, 1], got 5.0" in r.stderr


def test_real_data_refuses_test_labels_unseen_in_training_before_any_work(tmp_path, capsys):
    import numpy as np

    from analyses import real_data

    emb = tmp_path / "emb.npz"
    rng = np.random.default_rng(0)
    np.savez(emb, X_train=rng.normal(size=(30, 4)), y_train=np.arange(30) % 3,
             X_test=rng.normal(size=(9, 4)), y_test=5 + np.arange(9) % 3)
    with pytest.raises(SystemExit) as e:
        real_data.main(["--tiny", "--embeddings", str(emb), "--data", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "y_test holds labels that y_train never shows: [5, 6, 7]" in err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("study, limit", [("structured_sparsity", 24), ("deep_fpe", 24), ("real_data", 64)])
def test_studies_refuse_an_alpha_above_the_inputs_before_any_work(tmp_path, capsys, study, limit):
    import importlib

    main_ = importlib.import_module(f"analyses.{study}").main
    with pytest.raises(SystemExit) as e:
        main_(["--tiny", "--alphas", f"2,{limit + 1}", "--data", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"--alphas values must be <= {limit}" in err and f"got {limit + 1}" in err
    assert not (tmp_path / "data").exists()


#: Every option of `python -m fci` at a value other than its default (a tiny run).
EVERY_OPTION = {
    "--clauses": "3", "--clause-size": "2", "--test-samples": "48", "--vars": "8", "--layout": "shared",
    "--outputs": "clauses", "--p": "uniform", "--negation-prob": "0.25", "--train-samples": "40", "--optimizer": "sgd",
    "--lr": "0.05", "--momentum": "0.5", "--weight-decay": "0.001", "--batch-size": "16", "--warmup": "2", "--finetune": "1",
    "--hidden": "3", "--alpha": "3", "--splits": "random,gram", "--trials": "2", "--seed": "4", "--device": "cpu",
    "--threshold": "0.3", "--form": "cnf", "--shuffle-seed": "5", "--claim-ttl": "120",
}


def test_every_option_round_trips_into_summary_json(tmp_path):
    import json

    from fci.__main__ import build_parser

    ap = build_parser()
    argv = [a for kv in EVERY_OPTION.items() for a in kv] + ["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--yes"]
    flags = {a.option_strings[0]: a for a in ap._actions if a.option_strings and a.dest != "help"}
    assert set(flags) == set(EVERY_OPTION) | {"--data", "--out", "--yes", "--dask"}, "an option of python -m fci is not covered here"
    del flags["--dask"]  # needs a cluster: tests/fci/train/test_dask.py runs it
    parsed = ap.parse_args(argv)
    for flag, action in flags.items():
        assert getattr(parsed, action.dest) != action.default, f"{flag} is set to its default"
    assert main(argv) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    cfg = summary["config"]
    for flag, action in flags.items():
        assert cfg["options"][action.dest] == getattr(parsed, action.dest), flag
    assert cfg["regime"] == {"vars": 8, "layout": "shared", "outputs": "clauses", "p": "uniform", "negation_prob": 0.25,
                             "train_samples": 40, "form": "cnf", "optimizer": "sgd", "lr": 0.05, "momentum": 0.5, "weight_decay": 0.001,
                             "batch_size": 16, "warmup": 2, "finetune": 1}
    assert cfg["task"]["n_test"] == 48 and cfg["task"]["form"] == "cnf" and cfg["splits"] == ["random", "gram"] and cfg["seeds"] == [4, 5]
    assert cfg["threshold"] == 0.3 and cfg["device"] == "cpu" and cfg["train"]["momentum"] == 0.5
    assert summary["run"]["backends"] == ["torch"]  # the kernel does not run SGD momentum
    assert summary["environment"]["packages"]["torch"] and summary["environment"]["cpu"]
    conds = {c["condition"]: c for c in summary["conditions"]}
    assert list(conds) == ["dense", "random α=3", "gram α=3"]
    dense = conds["dense"]
    assert dense["n"] == 2 and "paired_p" not in dense
    for c in conds.values():  # the record is the trials' own numbers
        acc = c["test_accuracy"]
        assert len(acc) == 2 and c["test_accuracy_mean"] == pytest.approx(sum(acc) / 2)
        assert c["test_accuracy_sem"] == pytest.approx(abs(acc[0] - acc[1]) / 2)
    for name in ("random α=3", "gram α=3"):
        c = conds[name]
        rel = [(a - d) / d for a, d in zip(c["test_accuracy"], dense["test_accuracy"])]
        assert c["rel_improvement_mean"] == pytest.approx(sum(rel) / 2) and c["n_pairs"] == 2
        assert c["paired_p"] is None or 0 <= c["paired_p"] <= 1
        assert c["function_f1"]["n"] == 2


def test_an_unwritable_out_folder_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import fci.__main__ as cli

    monkeypatch.setattr(cli, "run_fpe", lambda *a, **k: pytest.fail("trained despite a bad option"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as e:
        main(["--data", str(tmp_path / "d"), "--out", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "--out" in err and "must be a writable folder" in err


def test_recorded_readings_are_the_library_calls_and_nothing_speaks_of_a_ceiling(tmp_path, capsys):
    """summary.json's reading of each condition (one trial) equals fci.readings.measure_readings on the stored
    model; the functional reading on the task's inputs names that distribution; no output says 'ceiling'."""
    import json

    from fci.__main__ import build_parser, validate
    from fci.readings import TEXT_KEYS, measure_readings
    from fci.store import Store
    from fci.train import run_fpe

    argv = ["--clauses", "2", "--hidden", "4", "--alpha", "2", "--trials", "1", "--warmup", "2", "--finetune", "2",
            "--train-samples", "64", "--test-samples", "64", "--device", "cpu", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    helptext = capsys.readouterr().out
    summary = (tmp_path / "o" / "summary.json").read_text()
    assert "ceiling" not in out.lower() and "ceiling" not in summary.lower() and "ceiling" not in helptext.lower()
    ap = build_parser()
    _, specs = validate(ap, ap.parse_args(argv))
    (r,) = run_fpe(specs, device="cpu", store=Store(tmp_path))
    task = r.boolean_task
    x, inputs = task.test_data()[0], task.train_data()[0]
    conds = {c["condition"]: c for c in json.loads(summary)["conditions"]}
    for name, model in (("dense", r.dense.model), ("clause α=2", r.children[("clause", 2)].model)):
        expect = measure_readings(model, task, x, inputs)
        rec = conds[name]
        assert rec["inputs_function_distribution"] == [f"given inputs (N={len(inputs)})"]
        assert rec["function_distribution"] == ["uniform"]
        for key, value in expect.items():
            if key in TEXT_KEYS:
                assert rec[key] == [value], key
            elif not key.endswith("seconds"):
                assert rec[key]["n"] == 1 and rec[key]["mean"] == pytest.approx(value), key
        assert f"{rec['true_formula_agreement']['mean']:.4f} (n=1)" in out  # printed beside its readings
