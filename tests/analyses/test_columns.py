"""One results.csv vocabulary, one measurement-row builder, one convergence rule:
the rule on hand-made curves, the row builder on a hand-built network, the
registry against analyses/README.md, and every study's tiny run against the registry."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from analyses import study_names
from analyses.columns import (
    COLUMNS,
    CORE,
    LEGACY,
    MODEL_CORE,
    PATTERNS,
    README_END,
    README_START,
    canonical_row,
    describe,
    readme_table,
    unknown,
)
from analyses.rows import MODEL_COLUMNS, model_columns
from analyses.tables import convergence
from fci.metrics import FLAT_ABS, FLAT_REL, LATE_WINDOW, converged, is_flat, late_drop
from fci.models.mlp import MaskedMLP
from fci.train import ModelResult
from tests.helpers import ROOT

# --------------------------------------------------------------------------- the convergence rule


def test_the_rule_and_its_constants():
    assert (LATE_WINDOW, FLAT_ABS, FLAT_REL) == (0.1, 0.005, 0.05)
    # 20 epochs, windows of 2: the mean of the last two against the two before
    assert late_drop([1.0] * 20) == (0.0, 0.0)
    assert late_drop([1.0] * 18 + [0.9, 0.8]) == pytest.approx((0.15, 0.15))
    assert late_drop([4.0] * 18 + [4.0, 2.0], window=0.05) == pytest.approx((2.0, 0.5))
    assert late_drop([3.0] * 10 + [2.0] * 10, window=0.5) == pytest.approx((1.0, 1 / 3))
    assert late_drop(np.r_[np.zeros(18), 0.0, 0.0]) == (0.0, 0.0)  # prev = 0: relative drop 0, not 0/0
    assert all(math.isnan(v) for v in late_drop([1.0]))  # too short for two windows
    assert is_flat(0.004, 0.5) and is_flat(0.1, 0.04) and not is_flat(0.1, 0.2) and not is_flat(math.nan, math.nan)
    with pytest.raises(ValueError, match="window"):
        late_drop([1.0] * 10, window=0.0)


def test_hand_made_curves():
    still_falling = np.r_[np.full(18, 0.10), 0.09, 0.09]  # falls 0.01 (10%) over the last window
    assert late_drop(still_falling) == pytest.approx((0.01, 0.1)) and not converged(still_falling)
    solved = np.r_[np.full(18, 1e-4), 5e-5, 5e-5]  # halves, but by 5e-5: a solved task, not still training
    assert late_drop(solved)[1] == pytest.approx(0.5) and converged(solved)
    high_slow = np.r_[np.full(18, 2.0), 1.95, 1.95]  # 0.05 absolute, but 2.5% relative
    assert converged(high_slow)
    assert converged(np.full(50, 0.3))  # flat is flat
    assert converged(np.r_[np.full(18, 0.1), 0.2, 0.2])  # a rising loss has stopped improving
    assert not converged([0.5])


def test_curve_level_and_model_level_use_the_same_rule():
    curves = {"still": np.r_[np.full(18, 0.10), 0.09, 0.09], "solved": np.r_[np.full(18, 1e-4), 5e-5, 5e-5],
              "flat": np.full(20, 0.3)}
    rows = [{"n_clauses": 8, "clause_size": 3, "hidden": 8, "condition": name, "alpha": 1, "epoch": e, "loss_mean": v,
             "loss_sem": 0.0} for name, L in curves.items() for e, v in enumerate(L)]
    per = {r["condition"]: r for r in convergence(pd.DataFrame(rows))["per_condition"]}
    for name, L in curves.items():
        assert per[name]["flat"] == converged(L)
        assert (per[name]["late_drop_abs"], per[name]["late_drop"]) == pytest.approx(late_drop(L))
    assert [per[n]["flat"] for n in ("still", "solved", "flat")] == [False, True, True]


# --------------------------------------------------------------------------- the row builder


def _hand_built() -> MaskedMLP:
    """3 inputs, 3 hidden units: unit 0 fires on x0, unit 1 never (weights <= 0, bias < 0), unit 2 is all-zero."""
    m = MaskedMLP(3, 3, 1, seed=0)
    with torch.no_grad():
        m.weights[0].copy_(torch.tensor([[1.0, 0.0, 0.0], [-1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]))
        m.biases[0].copy_(torch.tensor([0.0, -0.5, 0.0]))
        m.weights[1].copy_(torch.tensor([[1.0, 1.0, 0.0]]))
        m.biases[1].zero_()
    m.set_masks(0, (m.weights[0] != 0).float(), (m.biases[0] != 0).float())
    m.set_masks(1, (m.weights[1] != 0).float(), (m.biases[1] != 0).float())
    return m


def test_model_columns_on_a_hand_built_network():
    m = _hand_built()
    res = ModelResult(m, train_accuracy=0.9, test_accuracy=0.8, test_exact_match=0.8, test_loss=0.4,
                      train_loss=[1.0] * 18 + [0.9, 0.8], provenance={"backend": "reference"})
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    row = model_columns(res, x)
    assert tuple(row) == MODEL_COLUMNS
    # nnz: W0 has 3 non-zeros, b0 one, W1 two
    assert (row["nnz"], row["nnz_weights"], row["nnz_biases"]) == (6, 5, 1)
    assert row["acc_per_param"] == pytest.approx(0.8 / 6)
    assert row["dead_units"] == 2  # unit 1 (always < 0) and unit 2 (always 0); unit 0 fires on x0 = 1
    assert model_columns(res, x[:1])["dead_units"] == 3
    assert (row["train_loss_final"], row["train_loss_late_drop"]) == pytest.approx((0.8, 0.15))
    assert row["converged"] is False and row["backend"] == "reference" and row["test_accuracy"] == 0.8
    no_x = model_columns(ModelResult(m, 1.0, 1.0, 1.0, 0.0, train_loss=[]))
    assert math.isnan(no_x["dead_units"]) and math.isnan(no_x["train_loss_final"]) and no_x["backend"] is None
    assert not no_x["converged"]


def test_legacy_rows_read_under_the_registered_names():
    old = {"accuracy": 0.7, "final_train_loss": 0.2, "capacity": 0.5, "row": "model", "seed": 3}
    assert canonical_row(old) == {"test_accuracy": 0.7, "train_loss_final": 0.2, "feature_capacity": 0.5, "record": "model",
                                  "seed": 3}
    # real_data's old train_loss_late_drop had another definition: dropped, not relabelled
    assert "train_loss_late_drop" not in canonical_row({"train_loss_end": 0.1, "train_loss_late_drop": 0.3})
    assert canonical_row({"accuracy": 0.1, "test_accuracy": 0.2}) == {"accuracy": 0.1, "test_accuracy": 0.2}
    assert all(describe(new) for new in LEGACY.values()) and not any(describe(old) for old in LEGACY)
    # a decoding row from before the reference was named: ceiling_gap was reference - reading, now reading - reference
    assert canonical_row({"ceiling": 0.8, "ceiling_gap": 0.05, "n_terms": 4}) == {
        "true_formula_agreement": 0.8, "function_gap": -0.05, "function_terms": 4}


# --------------------------------------------------------------------------- the registry and the README


def test_readme_table_matches_the_registry():
    text = (ROOT / "analyses" / "README.md").read_text()
    a, b = text.index(README_START) + len(README_START), text.index(README_END)
    assert text[a:b].strip() == readme_table(), "regenerate it: python -m analyses.columns"
    assert describe("connectivity_l3") and describe("overlap_fc2") and describe("n_proj")
    assert not describe("accuracy") and not describe("capacity") and not describe("connectivity_lx")
    assert set(MODEL_COLUMNS) <= set(MODEL_CORE) | {"train_loss_late_drop_rel"} and set(MODEL_CORE) < set(CORE)


def test_readme_table_cells_render_as_written():
    """Every row has two cells (a `|` in a meaning is escaped) and no meaning holds a
    `<word` that Markdown would swallow as an HTML tag (`embeddings-<file>`)."""
    import re

    rows = readme_table().splitlines()[2:]
    assert len(rows) == len(COLUMNS) + len(PATTERNS)
    for row in rows:
        cells = re.split(r"(?<!\\)\|", row.strip())[1:-1]
        assert len(cells) == 2, row
        assert not re.search(r"<[A-Za-z/!?]", cells[1]), row
    assert "mean \\|cos\\|" in readme_table() and "embeddings-&lt;file>" in readme_table()


# --------------------------------------------------------------------------- every study's results.csv


@pytest.fixture(scope="module")
def tables(tiny_runs):
    """Every study's results.csv at the tiny level (one shared store, `tiny_runs`)."""
    return {name: pd.read_csv(tiny_runs / "results" / name / "tiny" / "results.csv") for name in study_names()}


@pytest.mark.parametrize("name", study_names())
def test_every_study_writes_registered_columns_and_the_core(tables, name):
    df = tables[name]
    assert unknown(df.columns) == [], f"{name} writes unregistered columns (add them to analyses/columns.py)"
    core = MODEL_CORE if name == "effective_density" else CORE
    assert set(core) <= set(df.columns), f"{name} lacks {sorted(set(core) - set(df.columns))}"
    models = df[df["record"] == "model"] if "record" in df.columns else df
    assert models.test_accuracy.between(0, 1).all() and models.train_accuracy.between(0, 1).all()
    assert (models.nnz == models.nnz_weights + models.nnz_biases).all() and (models.nnz > 0).all()
    assert models.acc_per_param.to_numpy() == pytest.approx((models.test_accuracy / models.nnz).to_numpy())
    assert models.converged.isin([True, False]).all() and models.backend.notna().all()
    assert (models.dead_units >= 0).all() and (models.trial == models.seed).all()  # --seed 0: trial t has seed t
