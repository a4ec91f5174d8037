"""Studies on a damaged or shared store: a corrupt entry is quarantined and
retrained by the rerun (exit 0), two concurrent processes train each model once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analyses import superposition_sweep as study  # any trial study: the cheapest to train and measure
from fci.store import Store
from tests.fci.store.test_fault_injection import _assert_identical  # byte identity, with a per-cell message
from tests.fci.store.test_heal import CORRUPTIONS, NAMED
from tests.helpers import ROOT


def _run(tmp_path: Path, out: str = "out") -> int:
    return study.main(["--tiny", "--device", "cpu", "--trials", "1", "--data", str(tmp_path / "data"),
                       "--out", str(tmp_path / out)])


@pytest.mark.parametrize("what", list(CORRUPTIONS))
@pytest.mark.parametrize("which", ["dense", "child"])
def test_a_corrupt_entry_is_quarantined_and_retrained_by_the_rerun(tmp_path, caplog, capsys, what, which):
    assert _run(tmp_path) == 0
    before = (tmp_path / "out" / "results.csv").read_text()
    rows = [r.split(",") for r in before.splitlines()]
    key_col, cond_col = rows[0].index("store_key"), rows[0].index("condition")
    key = next(r[key_col] for r in rows[1:] if (r[cond_col] == "dense") == (which == "dense"))
    store = Store(tmp_path / "data")
    intact = {k: (store.path(k) / "weights.safetensors").read_bytes() for k in store.keys() if k != key}
    CORRUPTIONS[what](store.path(key))
    capsys.readouterr()
    with caplog.at_level("WARNING"):
        assert _run(tmp_path) == 0
    warned = [r.getMessage() for r in caplog.records if key in r.getMessage()]
    assert len(warned) == 1 and NAMED[what] in warned[0] and "quarantined" in warned[0]
    assert "Traceback" not in capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["run"]["trained_trials"] == 1  # the trial with the bad model was retrained...
    assert store.has(key) and len(store.quarantined()) == 1
    for k, w in intact.items():  # ...and nothing intact was lost or rewritten
        assert (store.path(k) / "weights.safetensors").read_bytes() == w
    _assert_identical((tmp_path / "out" / "results.csv").read_bytes(), before.encode(), what)


def test_two_concurrent_study_processes_train_each_model_once(tmp_path):
    args = ["--tiny", "--device", "cpu", "--trials", "6", "--data", str(tmp_path / "data")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "analyses.superposition_sweep", *args, "--out", str(tmp_path / f"out{i}")],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    runs = [json.loads((tmp_path / f"out{i}" / "summary.json").read_text())["run"] for i in range(2)]
    assert runs[0]["trials"] == runs[1]["trials"] > 0
    assert runs[0]["trained_trials"] + runs[1]["trained_trials"] == runs[0]["trials"]  # each trial trained once
    store = Store(tmp_path / "data")
    writers = {json.loads((store.path(k) / "checksums.json").read_text())["writer"]["pid"] for k in store.keys()}
    assert writers <= {p.pid for p in procs}
    _assert_identical((tmp_path / "out0" / "results.csv").read_bytes(), (tmp_path / "out1" / "results.csv").read_bytes(), "concurrent")
    assert not list((store.dir / ".claims").iterdir())  # every claim released
