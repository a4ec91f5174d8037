"""The runner's checks before any work: where a run's outputs go (a folder per level and
options, so runs never overwrite each other), --data that is empty or a file, and plans
too large to start without --yes."""

import importlib

import pytest

from analyses.runner import contract_parser
from fci.cli import run_name


def _ap():
    return contract_parser("toy", "a toy study", "", "quick", "trials")


@pytest.mark.parametrize("argv,level,name", [
    ([], "full", "default"),
    (["--quick"], "quick", "quick"),
    (["--quick", "--seed", "3"], "quick", "quick-seed=3"),
    (["--seed", "3", "--trials", "7"], "full", "default-seed=3-trials=7"),
    (["--out", "x", "--data", "y", "--shard", "1/2"], "full", "default"),  # where, not what: no new folder
])
def test_each_level_and_option_set_has_its_own_folder(argv, level, name):
    ap = _ap()
    assert run_name(ap, ap.parse_args(argv), level) == name


def test_a_long_option_set_gets_a_digest_and_different_options_different_digests():
    ap = _ap()
    ap.add_argument("--widths", default=None)
    a = run_name(ap, ap.parse_args(["--widths", ",".join(map(str, range(40)))]), "full")
    b = run_name(ap, ap.parse_args(["--widths", ",".join(map(str, range(41)))]), "full")
    assert a.startswith("default-") and len(a) <= 80 and a != b


def test_two_runs_with_different_seeds_leave_both_outputs(tmp_path):
    main = importlib.import_module("analyses.superposition_sweep").main
    for seed in ("0", "1"):
        assert main(["--tiny", "--device", "cpu", "--trials", "2", "--seed", seed, "--data", str(tmp_path)]) == 0
    runs = sorted(p.name for p in (tmp_path / "results" / "superposition_sweep").iterdir())
    assert runs == ["tiny-seed=1-trials=2", "tiny-trials=2"]
    for run in runs:
        assert (tmp_path / "results" / "superposition_sweep" / run / "summary.json").is_file()


@pytest.mark.parametrize("data,message", [("", "--data must name a folder"), ("FILE", "is a file; it must be a folder")])
def test_an_empty_or_file_data_is_refused_naming_data(tmp_path, capsys, monkeypatch, data, message):
    monkeypatch.chdir(tmp_path)
    if data == "FILE":
        data = str(tmp_path / "a-file")
        (tmp_path / "a-file").write_text("x")
    main = importlib.import_module("analyses.decoding").main
    with pytest.raises(SystemExit) as e:
        main(["--tiny", "--data", data])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == (["a-file"] if "file" in message else [])


def test_too_many_trials_and_a_plan_of_days_need_yes(tmp_path, capsys, monkeypatch):
    from fci.store import Store

    monkeypatch.setattr(Store, "share", lambda *a, **k: pytest.fail("work started despite the plan check"))
    main = importlib.import_module("analyses.superposition_sweep").main
    with pytest.raises(SystemExit):
        main(["--tiny", "--trials", "1000000000", "--data", str(tmp_path)])
    assert "rerun with --yes" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # 3,000 trials x 16 configurations of the default sweep: days at the assumed rate
        main(["--trials", "3000", "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert "days of training" in err and "rerun with --yes" in err and err.count("\n") == 1
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())
