"""The certified static reading (`decode(model, method="certified")`, SPEC §5): every term it
returns holds on every input it covers, planted families are recovered exactly, the network
is never run on inputs, coverage is exact where it says so, and bad requests are refused in
one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fci.codes import DecodedCircuit, decode, decode_certified
from fci.codes.network import Network, read_network
from fci.models import MaskedMLP

ACTS = ["relu", "leaky_relu:0.1", "tanh", "sigmoid", "gelu", "silu", "softplus"]


def all_inputs(n: int) -> np.ndarray:
    return ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


# --------------------------------------------------------------------------- planted families


def and_neuron(clause, n: int, w) -> tuple[np.ndarray, float]:
    """A neuron whose pre-activation is min(w)/2 > 0 where the clause holds and <= -min(w)/2
    elsewhere: weight +w on a positive literal, -w on a negated one."""
    row = np.zeros(n)
    for (v, positive), wi in zip(clause, w):
        row[v] = wi if positive else -wi
    return row, -sum(wi for (_, p), wi in zip(clause, w) if p) + min(w) / 2


def random_clauses(rng, C: int, k: int, n: int):
    vs = rng.permutation(n)[: C * k].reshape(C, k)
    return [tuple(sorted((int(v), bool(rng.random() < 0.5)) for v in row)) for row in vs]


def planted(rng, family: str, C: int = 5, k: int = 3, n: int = 20):
    """(network, expected terms of its output). ``clean``: one ±1 AND neuron per clause,
    readouts 1; ``graded``: two AND neurons per clause with |w| and readouts drawn from
    [0.5, 1.5] (one clause spread over neurons of different strengths); ``inhibit``: the
    OR of C clauses switched off by an inhibitory neuron (readout -10) on a veto clause."""
    cl = random_clauses(rng, C + 1, k, n)
    veto, cl = cl[-1], cl[:C]
    rows, biases, readout = [], [], []
    per = 2 if family == "graded" else 1
    for c in cl:
        for _ in range(per):
            w = rng.uniform(0.5, 1.5, size=k) if family == "graded" else np.ones(k)
            r, b = and_neuron(c, n, w)
            rows.append(r)
            biases.append(b)
            readout.append(float(rng.uniform(0.5, 1.5)) if family == "graded" else 1.0)
    expect = set(cl)
    if family == "inhibit":
        r, b = and_neuron(veto, n, np.ones(k))
        rows.append(r)
        biases.append(b)
        readout.append(-10.0)
        expect = {tuple(sorted(c + ((v, not p),))) for c in cl for v, p in veto}
    # each firing neuron adds readout * (its pre-activation >= min(w)/2): the output's
    # threshold lies below the weakest neuron's contribution
    least = min(ro * min(abs(x) for x in row if x) / 2 for ro, row in zip(readout, rows) if ro > 0)
    net = read_network([np.array(rows), np.array(biases), np.array([readout]), np.array([-least / 2])])
    return net, expect


@pytest.mark.parametrize("family", ["clean", "graded", "inhibit"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_families_are_recovered_exactly(family, seed):
    """n = 20 inputs (above exact_vars): the search and the completion must find every term,
    and the coverage must be proved exact, not merely counted."""
    net, expect = planted(np.random.default_rng(seed), family)
    circuit = decode(net, method="certified")
    assert circuit.form == "dnf"
    assert set(circuit.terms(0)) == expect
    assert circuit.coverage == [1.0] and circuit.coverage_exact == [True]
    X = (np.random.default_rng(seed).random((20000, 20)) < 0.5).astype(np.float64)
    np.testing.assert_array_equal(circuit.evaluate(X)[:, 0] > 0.5, net.predict(X)[:, 0])


def test_a_cnf_network_reads_as_its_cnf():
    """y = (x0 ∨ x1) ∧ (x2 ∨ ¬x3): a neuron fires where a clause is false and switches the
    output off. Both forms are exact (n <= exact_vars) and prove every input; form="auto"
    keeps the shorter, the CNF."""
    n = 6
    W1 = np.zeros((2, n))
    W1[0, [0, 1]] = -1.0
    W1[1, 2], W1[1, 3] = -1.0, 1.0
    b1 = np.array([1.0, 0.0])  # neuron 0: 1 - x0 - x1 > 0 iff both false; neuron 1: x3 - x2 > 0 iff x2=0, x3=1
    net = read_network([W1, b1, np.array([[-10.0, -10.0]]), np.array([0.5])])
    circuit = decode_certified(net, form="auto")
    assert circuit.form == "cnf"
    assert set(circuit.terms(0)) == {((0, True), (1, True)), ((2, True), (3, False))}
    assert circuit.formula() == ["(x0 ∨ x1) ∧ (x2 ∨ ¬x3)"]
    assert circuit.search["dnf_coverage"] == [1.0] and circuit.search["cnf_coverage"] == [1.0]
    X = all_inputs(n)
    np.testing.assert_array_equal(circuit.evaluate(X)[:, 0] > 0.5, net.predict(X)[:, 0])
    dnf = decode_certified(net)  # the default form
    assert dnf.form == "dnf" and len(dnf.terms(0)) == 4  # (x0 ∨ x1) ∧ (x2 ∨ ¬x3) multiplied out
    np.testing.assert_array_equal(dnf.evaluate(X), circuit.evaluate(X))


def test_splitting_decides_what_the_bounds_alone_cannot():
    """XOR from two ReLUs: no bound over the whole hypercube decides it, so the reading must
    split; the result is exact and the splits are counted."""
    W1 = np.array([[1.0, -1.0], [-1.0, 1.0]])
    net = read_network([W1, np.zeros(2), np.array([[1.0, 1.0]]), np.array([-0.5])])
    circuit = decode_certified(net)
    assert set(circuit.terms(0)) == {((0, True), (1, False)), ((0, False), (1, True))}
    assert circuit.search["splits"] > 0
    assert circuit.coverage_exact == [True]


def test_a_provably_constant_output_is_its_constant():
    W1 = np.array([[1.0, 1.0]])
    net = read_network([W1, np.zeros(1), np.array([[1.0], [-1.0]]), np.array([0.5, -0.5])])
    circuit = decode_certified(net)
    assert circuit.formula() == ["⊤", "⊥"]
    assert circuit.default == [True, False]


# --------------------------------------------------------------------------- soundness


def random_network(rng, n: int, depth: int, outputs: int, act: str) -> Network:
    sizes = [n] + [int(rng.integers(2, 7)) for _ in range(depth)] + [outputs]
    ws = []
    for i in range(len(sizes) - 1):
        ws += [rng.normal(size=(sizes[i + 1], sizes[i])) * 1.5, rng.normal(size=sizes[i + 1])]
    return read_network(ws, activation=act)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), n=st.integers(1, 12), depth=st.integers(1, 2), outputs=st.integers(1, 2),
       act=st.sampled_from(ACTS), form=st.sampled_from(["dnf", "cnf"]), exact_vars=st.sampled_from([0, 14]))
def test_every_certified_term_holds_on_every_input_it_covers(seed, n, depth, outputs, act, form, exact_vars):
    """Random networks, every input enumerated: a DNF's terms imply output 1 and a CNF's
    clauses hold wherever the output is 1 (its false terms imply 0). With ``exact_vars=14``
    the reading is complete: coverage exact and equal to what enumeration counts."""
    rng = np.random.default_rng(seed)
    net = random_network(rng, n, depth, outputs, act)
    circuit = decode_certified(net, form=form, exact_vars=exact_vars, pieces=256, beam=16)
    assert all(all(c) for c in circuit.certified)
    X = all_inputs(n)
    y = net.predict(X)
    got = circuit.evaluate(X) > 0.5
    for o in range(outputs):
        if form == "dnf":
            assert not (got[:, o] & ~y[:, o]).any(), "a DNF term holds where the network says 0"
            region, covered = y[:, o], got[:, o] & y[:, o]
        else:
            assert not (~got[:, o] & y[:, o]).any(), "a CNF clause fails where the network says 1"
            region, covered = ~y[:, o], ~got[:, o] & ~y[:, o]
        true_cov = covered.sum() / region.sum() if region.any() else 1.0
        assert circuit.coverage[o] <= true_cov + 1e-9, "coverage must be a lower bound"
        if circuit.coverage_exact[o]:
            assert circuit.coverage[o] == pytest.approx(true_cov)
        if exact_vars == 14 and circuit.coverage_exact[o]:
            assert true_cov == 1.0
        # the search's three shares partition the inputs, each proved share a lower bound on the truth
        pos, neg, und = (circuit.search[k][o] for k in ("proved_positive", "proved_negative", "undecided"))
        assert pos + neg + und == pytest.approx(1.0) and pos <= y[:, o].mean() + 1e-9 and neg <= (~y[:, o]).mean() + 1e-9


# --------------------------------------------------------------------------- no forward pass


def test_the_certified_reading_never_runs_the_network(monkeypatch):
    """The reader works on weights whose forward passes are disabled: the result equals the
    reading of the same weights with forward passes allowed."""
    torch.manual_seed(0)
    model = MaskedMLP(8, 5, 1, seed=0)
    want = decode(model, method="certified").formula()

    def refuse(*args, **kwargs):
        raise AssertionError("the certified reading ran the network on inputs")

    monkeypatch.setattr(Network, "logits", refuse)
    monkeypatch.setattr(Network, "predict", refuse)
    monkeypatch.setattr(MaskedMLP, "forward", refuse)
    monkeypatch.setattr(torch.nn.Module, "__call__", refuse)
    assert decode(model, method="certified").formula() == want
    deep = MaskedMLP(6, [4, 3], 1, seed=1)
    decode(deep, method="certified")


# --------------------------------------------------------------------------- the circuit and refusals


def test_a_cnf_circuit_evaluates_as_an_and_of_ors():
    c = DecodedCircuit(clauses=[((0, True), (1, True)), ((2, False),), ()], channels=[[], [], []],
                       readouts=[[0], [0], [1]], votes=[[1, 0], [1, 0], [0, 1]], default=[False, False], n_vars=3,
                       n_outputs=2, threshold=None, relative=None, similarity=None, method="certified", form="cnf")
    X = all_inputs(3)
    want0 = ((X[:, 0] == 1) | (X[:, 1] == 1)) & (X[:, 2] == 0)
    np.testing.assert_array_equal(c.evaluate(X)[:, 0] > 0.5, want0)
    np.testing.assert_array_equal(c.evaluate(X)[:, 1], 0.0)  # the empty clause is false
    assert c.formula() == ["(x0 ∨ x1) ∧ (¬x2)", "⊥"]
    assert repr(c) == "DecodedCircuit[certified, cnf](out0 = (x0 ∨ x1) ∧ (¬x2); out1 = ⊥)"


@pytest.mark.parametrize("kwargs,message", [
    (dict(method="certify"), "method must be one of"),
    (dict(method="certified", threshold=0.3), "threshold belongs to method='channels'"),
    (dict(method="certified", similarity=0.5), "similarity belongs to method='channels'"),
    (dict(beam=4), "method='channels' takes threshold, relative and similarity"),
    (dict(method="certified", depth=3), "unknown option 'depth' for method='certified'"),
    (dict(method="certified", max_literals=0), "max_literals must be an integer >= 1"),
    (dict(method="certified", form="xnf"), "form must be one of"),
    (dict(method="certified", pieces=-1), "pieces must be an integer >= 0"),
    (dict(method="certified", patterns=13), r"patterns must be an integer in \[0, 12\]"),
    (dict(method="certified", activation="cosine"), "activation must be one of"),
])
def test_bad_requests_are_refused_in_one_line(kwargs, message):
    W1 = np.array([[1.0, 1.0]])
    weights = (W1, np.zeros(1), np.array([[1.0]]), np.array([-0.5]))
    with pytest.raises(ValueError, match=message) as err:
        decode(weights, **kwargs)
    assert "\n" not in str(err.value)
