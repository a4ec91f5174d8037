"""Verifying a reading (`fci.codes.verify`): the true formula's agreement (a reference a
reading may exceed), the gap, exact matches beside F1, and predictions of any network."""

import itertools

import numpy as np
import pytest
import torch

from fci.codes import (
    DecodedCircuit,
    ceiling_agreement,
    circuit_agreement,
    clause_recovery,
    network_predictions,
    reading_gap,
    true_formula_agreement,
)

X = np.array(list(itertools.product([0.0, 1.0], repeat=4)), dtype=np.float32)


def test_the_true_formula_agreement_of_a_cnf_and_a_dnf_by_hand():
    clauses = [((0, True), (1, True)), ((2, False),)]
    x0, x1, x2 = X[:, 0] == 1, X[:, 1] == 1, X[:, 2] == 1
    net = ((x0 | x1) & ~x2)[:, None].astype(np.float32)  # the network computes the CNF
    assert true_formula_agreement(clauses, net, X, form="cnf") == 1.0
    dnf = (x0 & x1) | ~x2  # read as a DNF, the same clauses disagree where the two formulas differ
    assert true_formula_agreement(clauses, net, X) == pytest.approx(float(((net[:, 0] == 1) == dnf).mean()))
    with pytest.raises(ValueError, match="form must be"):
        true_formula_agreement(clauses, net, X, form="xnf")


def test_ceiling_agreement_is_a_deprecated_alias():
    clauses = [((0, True), (1, True))]
    net = (X[:, :1] == 1).astype(np.float32)
    with pytest.warns(DeprecationWarning, match="true_formula_agreement.*removed in fci 0.3"):
        old = ceiling_agreement(clauses, net, X)
    assert old == true_formula_agreement(clauses, net, X) == 12 / 16


def test_a_reading_may_exceed_the_true_formula_and_the_gap_says_by_how_much():
    # the network computes x0; the task's true formula is x0 ∧ x1; the reading x0 agrees everywhere
    net = (X[:, :1] == 1).astype(np.float32)
    reading = DecodedCircuit(clauses=[((0, True),)], channels=[[]], readouts=[[0]], votes=[[]], default=[False],
                             n_vars=4, n_outputs=1, method="function")
    gap = reading_gap(reading, [((0, True), (1, True))], net, X)
    assert gap == {"agreement": 1.0, "true_formula_agreement": 0.75, "gap": 0.25}


def test_exact_matches_beside_f1():
    true = [((0, True), (1, True), (2, False), (3, True)), ((4, True), (5, True))]
    subset = [((0, True), (1, True), (2, False)), ((4, True), (5, True))]  # 3 of 4 literals: Jaccard 0.75
    rec = clause_recovery(subset, true)
    assert rec["f1"] == 1.0 and rec["n_exact"] == 1 and rec["exact_f1"] == 0.5
    assert rec["exact_precision"] == 0.5 and rec["exact_recall"] == 0.5
    assert clause_recovery(true, true)["exact_f1"] == 1.0
    assert clause_recovery([], [])["exact_f1"] == 1.0 and clause_recovery(subset, [])["exact_f1"] == 0.0


def test_predictions_and_agreement_of_any_network():
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.GELU(), torch.nn.Linear(5, 3), torch.nn.Tanh(),
                              torch.nn.Linear(3, 2))
    want = (seq(torch.tensor(X)) > 0).float()
    y = network_predictions(seq, torch.tensor(X))
    assert isinstance(y, torch.Tensor) and torch.equal(y, want)
    circuit = DecodedCircuit(clauses=[((0, True),)], channels=[[]], readouts=[[0, 1]], votes=[[]], default=[False, False],
                             n_vars=4, n_outputs=2, method="function")
    assert circuit_agreement(circuit, seq, X) == circuit_agreement(circuit, want.numpy(), X)
    with pytest.raises(ValueError, match="x must have shape"):
        network_predictions(seq, X[:, :3])
