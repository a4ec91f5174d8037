import re
import subprocess
import sys
from pathlib import Path

import pytest

from fci.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def test_single_configuration_command(tmp_path, capsys):
    args = ["--clauses", "3", "--hidden", "4", "--alpha", "2", "--trials", "2", "--warmup", "2", "--finetune", "2",
            "--train-samples", "128", "--test-samples", "64", "--device", "cpu", "--data", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = {m.group(1): m for m in re.finditer(r"^(dense|clause α=2|random α=2)\s+([\d.]+) ± ([\d.]+)\s+(\d+)$", out, re.M)}
    assert set(rows) == {"dense", "clause α=2", "random α=2"}
    assert len({r.group(4) for r in rows.values()}) == 1  # one nnz for every condition
    assert len([p for p in (tmp_path / "store").iterdir() if not p.name.startswith(".")]) == 6
    table = out.split("interference and static decoding")[1]
    for name in ("dense", "clause α=2", "random α=2"):
        (line,) = [l for l in table.splitlines() if l.startswith(name)]
        values = [float(v) for v in re.findall(r"(-?[\d.]+|nan) ±", line)]
        assert len(values) == 4
        cap, cos, f1, agree = values
        assert 0 < cap <= 1 and 0 <= cos <= 1 and 0 <= f1 <= 1 and 0 <= agree <= 1


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
    (["--lr", "0"], "--lr: lr must be > 0"),
    (["--negation-prob", "1.5"], "--negation-prob: negation_prob must be a number in [0, 1]"),
    (["--device", "tpu"], "--device"),
    (["--layout", "ring"], "--layout"),
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
