"""The cascade (`fci.codes.cascade`, SPEC §5): a hand-built two-layer network reads as its
known features, layer by layer and composed over the inputs; every feature's terms hold on
every input they cover; bad requests are refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fci.codes import Cascade, cascade, decode
from fci.codes.bounds import FREE
from fci.codes.cubes import to_clauses
from fci.codes.network import read_network


def all_inputs(n: int) -> np.ndarray:
    return ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def two_layer():
    """x0..x7 -> a = x0 ∧ x1, b = x2 ∧ ¬x3, c = x4 ∧ x5 (x6, x7 unread) -> p = relu(a + b - 1),
    q = relu(b + c) -> out = p + q - 0.5 > 0, i.e. (a ∧ b) ∨ b ∨ c = b ∨ c. AND neurons have
    ±1 weights (value 1 where the clause holds, <= 0 elsewhere). q counts: its peak is 2, so
    it is on (z > 1) where b ∧ c, off where neither, and b xor c is its gray zone."""
    W1 = np.zeros((3, 8))
    W1[0, [0, 1]] = 1.0
    W1[1, 2], W1[1, 3] = 1.0, -1.0
    W1[2, [4, 5]] = 1.0
    b1 = np.array([-1.0, 0.0, -1.0])
    W2 = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    b2 = np.array([-1.0, 0.0])
    W3 = np.array([[1.0, 1.0]])
    b3 = np.array([-0.5])
    return read_network([W1, b1, W2, b2, W3, b3])


def clauses(cubes: np.ndarray) -> set:
    return set(to_clauses(cubes))


def test_a_hand_built_two_layer_network_reads_as_its_features():
    c = cascade(two_layer())
    assert isinstance(c, Cascade) and c.sizes == (8, 3, 2, 1)
    h1 = c.features(1)
    assert [clauses(f.on) for f in h1] == [{((0, True), (1, True))}, {((2, True), (3, False))}, {((4, True), (5, True))}]
    assert [f.threshold for f in h1] == [0.5, 0.5, 0.5]  # half of each neuron's peak (1)
    assert clauses(h1[0].off) == {((0, False),), ((1, False),)}
    assert all(f.exact and f.coverage == 1.0 for f in h1)
    p, q = c.features(2)
    # over layer 1 (the on-values of layer 1 are exactly 1, carried from their terms)
    assert clauses(p.on) == {((0, True), (1, True))}
    assert clauses(q.on) == {((1, True), (2, True))} and clauses(q.off) == {((1, False), (2, False))}
    assert p.exact and p.coverage == 1.0 and not q.exact  # b xor c: q is in its gray zone
    # over the inputs
    assert clauses(p.on_inputs) == {((0, True), (1, True), (2, True), (3, False))}
    assert clauses(q.on_inputs) == {((2, True), (3, False), (4, True), (5, True))}
    assert p.formula() == "(h1.0 ∧ h1.1)"
    assert q.formula(over="inputs") == "(x2 ∧ ¬x3 ∧ x4 ∧ x5)"
    # q's gray zone (b xor c) leaves the composed output partial; the end-to-end reading
    # certifies the rest: out = (x2 ∧ ¬x3) ∨ (x4 ∧ x5), exact
    assert set(c.output.terms(0)) == {((2, True), (3, False)), ((4, True), (5, True))}
    assert c.output.coverage == [1.0] and c.output.coverage_exact == [True]
    X = all_inputs(8)
    np.testing.assert_array_equal(c.output.evaluate(X)[:, 0] > 0.5, two_layer().predict(X)[:, 0])
    text = repr(c)
    assert "h2.0 = (h1.0 ∧ h1.1)  ≡ (x0 ∧ x1 ∧ x2 ∧ ¬x3)" in text and "layer 2 (over layer 1)" in text


def test_decode_certified_reads_a_deep_network_through_its_cascade():
    net = two_layer()
    assert decode(net, method="certified").formula() == cascade(net).output.formula()


def pre_activations(net, X: np.ndarray) -> list[np.ndarray]:
    out, h = [], X
    for l in range(net.depth):
        W, b = net.layers[l]
        z = h @ W.T + b
        out.append(z)
        h = net.activation(l)(z)
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), n=st.integers(2, 9), act=st.sampled_from(["relu", "tanh", "gelu", "leaky_relu:0.1"]))
def test_every_feature_term_holds_on_every_input_it_covers(seed, n, act):
    """Random two-layer networks, every input enumerated: a feature's on-terms over the
    inputs imply its pre-activation is above its threshold, its off-terms that it is <= 0
    (to the margin), and the composed output terms imply output 1."""
    rng = np.random.default_rng(seed)
    sizes = [n, int(rng.integers(2, 5)), int(rng.integers(2, 5)), 1]
    ws = []
    for i in range(3):
        ws += [rng.normal(size=(sizes[i + 1], sizes[i])) * 1.5, rng.normal(size=sizes[i + 1])]
    net = read_network(ws, activation=act)
    c = cascade(net, pieces=256, beam=16, feature_pieces=256)
    X = all_inputs(n)
    zs = pre_activations(net, X)
    for l, feats in enumerate(c.layers):
        for f in feats:
            z = zs[l][:, f.index]
            for t in f.on_inputs:
                inside = ((t == FREE) | (X == t)).all(axis=1)
                assert (z[inside] > f.threshold).all()
            for t in f.off_inputs:
                inside = ((t == FREE) | (X == t)).all(axis=1)
                assert (z[inside] <= 1e-5 * (1 + np.abs(z).max())).all()
    y = net.predict(X)[:, 0]
    for t in c.readout[0].on_inputs:
        inside = ((t == FREE) | (X == t)).all(axis=1)
        assert y[inside].all()
    got = c.output.evaluate(X)[:, 0] > 0.5
    assert not (got & ~y).any() if c.output.form == "dnf" else not (~got & y).any()


@pytest.mark.parametrize("kwargs,message", [
    (dict(on=0.0), r"on must be a fraction of a neuron's peak in \(0, 1\]"),
    (dict(on=1.5), r"on must be a fraction"),
    (dict(max_terms=0), "max_terms must be an integer >= 1"),
    (dict(feature_pieces=-2), "feature_pieces must be an integer >= 0"),
    (dict(beam=0), "beam must be an integer >= 1"),
    (dict(colour="red"), "unknown option 'colour' for the certified reading"),
])
def test_bad_requests_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        cascade(two_layer(), **kwargs)
    assert "\n" not in str(err.value)


def test_features_of_a_missing_layer_are_refused():
    with pytest.raises(ValueError, match=r"layer must lie in \[1, 2\]"):
        cascade(two_layer()).features(3)
