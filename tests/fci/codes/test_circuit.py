"""The decoded circuit's two forms (`fci.codes.circuit.DecodedCircuit`): a DNF ORs its
conjunctions, a CNF ANDs its disjunctions; `default` is each form's absorbing constant."""

import itertools
import json

import numpy as np
import pytest
import torch

from fci.codes import DecodedCircuit


def _circuit(clauses, readouts, default, form, n=3):
    D = len(clauses)
    return DecodedCircuit(clauses=clauses, channels=[[] for _ in range(D)], readouts=readouts, votes=[[] for _ in range(D)],
                          default=default, n_vars=n, n_outputs=len(default), method="function", form=form)


X = np.array(list(itertools.product([0.0, 1.0], repeat=3)), dtype=np.float32)
A = ((0, True), (1, False))  # x0 ∧ ¬x1 (DNF) or x0 ∨ ¬x1 (CNF)
B = ((2, True),)


def test_a_cnf_ands_its_disjunctions_and_a_dnf_ors_its_conjunctions():
    x0, x1, x2 = X[:, 0] == 1, X[:, 1] == 1, X[:, 2] == 1
    dnf = _circuit([A, B], [[0], [0, 1]], [False, False], "dnf")
    cnf = _circuit([A, B], [[0], [0, 1]], [False, False], "cnf")
    np.testing.assert_array_equal(dnf.evaluate(X), np.stack([(x0 & ~x1) | x2, x2], 1).astype(np.float32))
    np.testing.assert_array_equal(cnf.evaluate(X), np.stack([(x0 | ~x1) & x2, x2], 1).astype(np.float32))
    np.testing.assert_array_equal(cnf.clause_truth(X), np.stack([x0 | ~x1, x2], 1))
    assert dnf.formula() == ["(x0 ∧ ¬x1) ∨ (x2)", "(x2)"]
    assert cnf.formula() == ["(x0 ∨ ¬x1) ∧ (x2)", "(x2)"]
    assert repr(cnf) == "DecodedCircuit[function, cnf](out0 = (x0 ∨ ¬x1) ∧ (x2); out1 = (x2))"
    assert repr(dnf) == "DecodedCircuit[function](out0 = (x0 ∧ ¬x1) ∨ (x2); out1 = (x2))"
    y = cnf.evaluate(torch.tensor(X))
    assert isinstance(y, torch.Tensor) and (y.numpy() == cnf.evaluate(X)).all()
    assert json.loads(json.dumps(cnf.to_dict()))["form"] == "cnf"


def test_constants_are_each_forms_absorbing_and_empty_formulas():
    # default: the absorbing constant (⊤ ORed into a DNF, ⊥ ANDed into a CNF); no clauses: the empty formula
    for form, absorbing, empty in (("dnf", 1.0, 0.0), ("cnf", 0.0, 1.0)):
        c = _circuit([B], [[0]], [True, False], form)
        y = c.evaluate(X)
        assert (y[:, 0] == absorbing).all() and (y[:, 1] == empty).all()
        assert c.formula() == (["⊤", "⊥"] if form == "dnf" else ["⊥", "⊤"])


def test_an_unknown_form_is_refused():
    with pytest.raises(ValueError, match=r"^form must be one of \('dnf', 'cnf'\), got 'xnf'$"):
        _circuit([A], [[0]], [False], "xnf")
