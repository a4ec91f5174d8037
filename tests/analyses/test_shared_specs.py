"""The same dataset spec in two different studies names the same stored models:
the second study finds every FPE trial it asks for in the store and trains none.

`analyses.real_data` (FPE on digits, split seed S) runs first; `analyses.wide_sparse
--dataset digits` (whose FPE arm trains random-split children on the same digits
split, seeds S..S+T-1) runs second on the same store, with the training schedule
set to the same values. Its FPE trials must all load: the schedule's stack
trainer is replaced by one that fails."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import analyses.real_data as rd
import analyses.wide_sparse as ws
import fci.train.schedule as schedule
from analyses.levels import LEVELS
from fci.store import Store


def _fpe_keys(store: Store) -> set[str]:
    return {k for k in store.keys() if store.load(k).config.get("kind") == "fpe"}


def test_a_dataset_spec_shared_by_two_studies_trains_once(tmp_path, monkeypatch):
    data, t = tmp_path / "data", LEVELS["tiny"].train
    widths, alphas, seed, trials = ws.SWEEPS["tiny"]["base_widths"], ws.SWEEPS["tiny"]["alphas"], 3, 2
    schedule_args = ["--warmup", str(t.warmup), "--finetune", str(t.finetune), "--batch-size", str(t.batch_size),
                     "--lr", str(t.lr)]
    assert rd.main(["--tiny", "--data", str(data), "--out", str(tmp_path / "rd"), "--split-seed", str(seed), "--seed",
                    str(seed), "--trials", str(trials), "--widths", ",".join(map(str, widths)), "--alphas",
                    ",".join(map(str, alphas)), "--splits", "random", *schedule_args]) == 0
    store = Store(data)
    first = _fpe_keys(store)
    assert first, "real_data stored no FPE model"

    def no_training(*a, **k):
        raise AssertionError("the second study trained an FPE trial that the first had stored")

    monkeypatch.setattr(schedule, "_run_chunk", no_training)
    assert ws.main(["--tiny", "--dataset", "digits", "--data", str(data), "--out", str(tmp_path / "ws"), "--seed", str(seed),
                    "--trials", str(trials)]) == 0
    assert _fpe_keys(store) == first  # nothing new under the shared spec's keys
    summary = json.loads((tmp_path / "ws" / "summary.json").read_text())
    assert summary["run"]["jobs"] > 0
    rows = pd.read_csv(tmp_path / "ws" / "results.csv")
    assert (rows.condition == "fpe").sum() == len(widths) * len(alphas) * trials  # its FPE arm, all loaded


def test_the_studies_name_digits_by_one_spec():
    """Both studies' digits with split seed S are the same `DatasetSpec`."""
    class A:
        embeddings, split_seed = None, 4
    a = rd.dataset_spec(A())
    b = ws.data_spec({"name": "digits", "split_seed": 4, "test_fraction": 0.25})
    assert a == b and a.key() == b.key()
    with pytest.raises(ValueError):
        ws.data_spec({"name": "mnist"})
