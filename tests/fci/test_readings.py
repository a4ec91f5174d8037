"""Every reading of one network (fci.readings): on planted AND networks whose function is
known, each number equals the library call it reports and the hand-worked answer."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fci.codes import circuit_agreement, clause_recovery, decode, decode_function, true_formula_agreement
from fci.readings import best_constant_agreement, measure_readings
from tests.helpers import planted_dnf

C0 = ((0, True), (1, True), (2, False))
C1 = ((3, True), (4, False), (5, True))


def _all_inputs(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))


def test_best_constant_is_the_larger_of_always_1_and_always_0_per_output_averaged():
    y = np.array([[1, 0], [1, 0], [1, 1], [0, 0]], dtype=float)  # rates 3/4 and 1/4: a constant agrees 3/4 on each
    assert best_constant_agreement(y) == 0.75
    assert best_constant_agreement(np.array([[2.0], [-1.0], [-3.0]])) == pytest.approx(2 / 3)  # logits: > 0 is 1
    with pytest.raises(ValueError, match="network_output must have shape"):
        best_constant_agreement(np.zeros(3))


def test_every_reading_of_a_planted_network_equals_its_library_call_and_the_hand_answer():
    """y = C0 ∨ C1 on 6 inputs, two disjoint 3-literal clauses: positive on 1 - (7/8)^2 = 15/64 of all
    inputs, so the best constant (always 0) agrees on 49/64; every reading is exact."""
    net = planted_dnf([list(C0), list(C1)], 6)
    x = _all_inputs(6)
    inputs = x[x[:, 0] == 1]  # unlabeled rows, a skewed distribution: x0 always 1
    task = SimpleNamespace(clauses=[C0, C1], groups=[[0, 1]], form="dnf")
    m = measure_readings(net, task, x, inputs)
    assert m["constant_agreement"] == 49 / 64
    assert m["circuit_agreement"] == circuit_agreement(decode(net), net, x) == 1.0
    assert m["decode_f1"] == m["decode_exact_f1"] == 1.0
    assert m["certified_agreement"] == circuit_agreement(decode(net, method="certified"), net, x) == 1.0
    assert m["certified_coverage"] == m["certified_coverage_exact"] == m["certified_proved"] == 1.0
    assert m["true_formula_agreement"] == true_formula_agreement(task.clauses, net, x, task.groups) == 1.0
    assert m["function_agreement"] == m["function_own_agreement"] == 1.0 and m["function_gap"] == m["certified_gap"] == 0.0
    assert m["function_f1"] == m["function_exact_f1"] == 1.0 and m["function_form"] == "dnf" and m["function_warnings"] == 0
    assert m["function_distribution"] == "uniform"
    # Read where x0 is always 1, the reading is faithful there (x0 need not appear in it); its agreement on the
    # test inputs is its circuit's, and its gap that minus the reference.
    given = decode_function(net, inputs=inputs)
    assert m["inputs_function_distribution"] == given.distribution == "given inputs (N=32)"
    assert m["inputs_function_own_agreement"] == float(np.mean(given.sample_agreement)) == 1.0
    assert m["inputs_function_agreement"] == circuit_agreement(given, net, x)
    assert m["inputs_function_gap"] == m["inputs_function_agreement"] - 1.0

def test_a_reading_may_exceed_the_true_formula_and_its_gap_says_so():
    """The network computes C0 alone, the task says C0 ∨ C1: they differ where C1 holds and C0 does not,
    on (1/8)(7/8) = 7/64 of the inputs, so the reference is 57/64 while exact readings agree on 1:
    every gap is +7/64. The best constant (always 0) agrees on 7/8."""
    net = planted_dnf([list(C0)], 6)
    x = _all_inputs(6)
    task = SimpleNamespace(clauses=[C0, C1], groups=[[0, 1]], form="dnf")
    m = measure_readings(net, task, x, x)
    assert m["true_formula_agreement"] == 57 / 64 and m["constant_agreement"] == 7 / 8
    for key in ("certified_gap", "function_gap", "inputs_function_gap"):
        assert m[key] == pytest.approx(7 / 64)
    assert m["decode_f1"] == clause_recovery(decode(net).clauses, task.clauses)["f1"] == pytest.approx(2 / 3)
