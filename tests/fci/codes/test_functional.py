"""Tests for the scale-free sign rules and the two readings of a network (SPEC §5):
static `decode` (what the weights code) and `decode_function` (what it computes).
Hand-built networks with known answers, planted families, and property tests."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fci.codes import (
    CollisionGraph,
    DecodedCircuit,
    circuit_agreement,
    clause_channels,
    clause_recovery,
    clause_table,
    collision_graph,
    decode,
    decode_function,
    network_predictions,
    neuron_peaks,
    readout_votes,
    sign_codes,
    true_formula_agreement,
)
from fci.models.mlp import MaskedMLP

# --------------------------------------------------------------------------- builders


def planted_superposition(seed: int, C: int = 16, H: int = 8, k: int = 3, size: int = 3, noise: float = 0.1,
                          distractors: int = 8):
    """The issue's planted family: C clauses of k literals in H neurons, each clause's
    channel a distinct ``size``-neuron subset; W1 = ±1 (sign by polarity) on channel
    neurons plus N(0, noise) everywhere, zero biases, W2 = ones, b2 = -0.5. Literals
    are negated at random and clause 0 is all-negated; ``distractors`` variables no
    clause reads. Returns (W1, b1, W2, b2, sorted clauses)."""
    rng = np.random.default_rng(seed)
    subsets = list(itertools.combinations(range(H), size))
    channels = [subsets[i] for i in rng.choice(len(subsets), C, replace=False)]
    n = C * k + distractors
    var = rng.permutation(n)[: C * k].reshape(C, k)
    W1 = rng.normal(0.0, noise, (H, n)) if noise else np.zeros((H, n))
    clauses = []
    for c in range(C):
        negated = rng.random(k) < 0.5
        if c == 0:
            negated[:] = True
        clause = tuple(sorted((int(v), not bool(g)) for v, g in zip(var[c], negated)))
        clauses.append(clause)
        for v, positive in clause:
            W1[list(channels[c]), v] += 1.0 if positive else -1.0
    return W1, np.zeros(H), np.ones((1, H)), np.full(1, -0.5), sorted(clauses)


def and_network(clauses, n: int, outputs: str = "dnf", scale: float = 1.0):
    """Clean AND network: one neuron per clause, ±``scale`` per literal, bias
    ``scale * (1 - #positive)`` (fires only when every literal holds), readout +1
    (to one OR output, or to the clause's own output), b2 = -0.5·scale."""
    C = len(clauses)
    W1, b1 = np.zeros((C, n)), np.zeros(C)
    W2 = np.zeros((1 if outputs == "dnf" else C, C))
    for c, clause in enumerate(clauses):
        for v, positive in clause:
            W1[c, v] = scale if positive else -scale
        b1[c] = scale * (1 - sum(p for _, p in clause))
        W2[0 if outputs == "dnf" else c, c] = 1.0
    return W1, b1, W2, np.full(W2.shape[0], -0.5 * scale)


def all_inputs(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)), dtype=np.float32)


def truth(clauses, x: np.ndarray) -> np.ndarray:
    """(N, C) clause truth by direct evaluation."""
    return np.stack([np.all([x[:, v] == (1.0 if p else 0.0) for v, p in cl], axis=0) for cl in clauses], 1)


AND_CLAUSES = [((0, True), (1, False), (2, True)), ((3, False), (4, False)), ((5, True),), ((6, False), (7, True), (8, False))]
AND_N = 10  # x9 is a distractor


def transform(weights, perm: np.ndarray, scale: np.ndarray):
    """Permute the hidden neurons and divide neuron i's incoming weights and bias by
    scale[i] > 0 while multiplying its readouts by scale[i]: the same function."""
    W1, b1, W2, b2 = weights
    return (W1[perm] / scale[:, None], b1[perm] / scale, W2[:, perm] * scale[None, :], b2)


# --------------------------------------------------------------------------- sign rules


def test_auto_threshold_splits_each_neuron_into_strong_and_weak_weights():
    W = np.array([
        [0.02, -0.03, 1.0, -0.9, 0.01, 0.0],  # two strong weights among noise
        [0.5, -0.5, 0.5, 0.0, 0.0, 0.0],  # all alike: every non-zero weight codes
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # nothing to code
        [30.0, 0.2, -0.1, -28.0, 29.0, 0.0],  # a large neuron: its own scale
    ])
    np.testing.assert_array_equal(sign_codes(W), [[0, 0, 1, -1, 0, 0], [1, -1, 1, 0, 0, 0],
                                                  [0, 0, 0, 0, 0, 0], [1, 0, 0, -1, 1, 0]])
    # the former global rule codes the small neurons to 0
    glob = sign_codes(W, threshold=0.1, relative="global")
    assert (glob[:3] == 0).all() and glob[3].tolist() == [1, 0, 0, -1, 1, 0]
    # a row of pure noise has no two clear clusters and codes nothing
    noise = np.random.default_rng(0).normal(0, 1, (1, 60))
    assert (sign_codes(noise) == 0).all()


def test_sign_rule_bad_input():
    W = np.ones((2, 3))
    with pytest.raises(ValueError, match="relative"):
        sign_codes(W, relative="rows")
    with pytest.raises(ValueError, match="auto"):
        sign_codes(W, threshold="auto", relative="absolute")
    with pytest.raises(ValueError, match="threshold"):
        sign_codes(W, threshold="median")
    with pytest.raises(ValueError, match="threshold"):
        decode(and_network(AND_CLAUSES, AND_N), threshold=2.0)


def test_readouts_are_judged_by_contribution():
    # neuron 0 can reach activation 10, neuron 1 only 0.1: equal W2, unequal say
    W1 = np.array([[10.0, 0.0], [0.0, 0.1]])
    b1 = np.zeros(2)
    peak = neuron_peaks(W1, b1)
    np.testing.assert_allclose(peak, [10.0, 0.1])
    W2 = np.array([[1.0, 1.0]])
    assert readout_votes(W2, [[0], [1]], threshold=0.1, peak=peak).tolist() == [[1], [0]]
    assert readout_votes(W2, [[0], [1]], threshold=0.1).tolist() == [[1], [1]]  # raw W2 (no peaks)
    # a neuron that can never fire (bias -20) contributes nothing
    assert neuron_peaks(W1, np.array([-20.0, 0.0])).tolist() == [0.0, pytest.approx(0.1)]
    with pytest.raises(ValueError, match="peak"):
        readout_votes(W2, [[0]], peak=np.ones(3))


def _random_network(seed: int, H: int, n: int, O: int):
    rng = np.random.default_rng(seed)
    W1 = rng.normal(0, 0.05, (H, n))
    strong = rng.random((H, n)) < 0.3
    W1[strong] += rng.choice([-1.0, 1.0], size=strong.sum()) * rng.uniform(0.6, 1.4, size=strong.sum())
    b1 = rng.normal(0, 0.5, H)
    W2 = rng.normal(0, 1, (O, H))
    b2 = rng.normal(0, 0.5, O)
    clauses = [tuple(sorted((int(v), bool(rng.random() < 0.5)) for v in rng.choice(n, 2, replace=False)))
               for _ in range(4)]
    return (W1, b1, W2, b2), clauses


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 9), st.integers(3, 12), st.integers(1, 3), st.data())
def test_codes_channels_and_decode_are_invariant_to_permutation_and_neuron_scale(seed, H, n, O, data):
    weights, clauses = _random_network(seed, H, n, O)
    perm = np.array(data.draw(st.permutations(range(H))))
    scale = np.array(data.draw(st.lists(st.floats(0.1, 10.0), min_size=H, max_size=H)))
    moved = transform(weights, perm, scale)
    inv = np.argsort(perm)
    for rule in ({}, {"threshold": 0.25}):
        S, S2 = sign_codes(weights[0], **rule), sign_codes(moved[0], **rule)
        np.testing.assert_array_equal(S2, S[perm])
        ch, ch2 = clause_channels(weights[0], clauses, **rule), clause_channels(moved[0], clauses, **rule)
        assert ch2 == [sorted(int(inv[i]) for i in c) for c in ch]
        peak, peak2 = neuron_peaks(weights[0], weights[1]), neuron_peaks(moved[0], moved[1])
        assert readout_votes(moved[2], ch2, peak=peak2, **rule).tolist() == readout_votes(weights[2], ch, peak=peak, **rule).tolist()
        d, d2 = decode(weights, **rule), decode(moved, **rule)
        assert d2.clauses == d.clauses and d2.readouts == d.readouts and d2.default == d.default
        assert d2.channels == [sorted(int(inv[i]) for i in c) for c in d.channels]


def test_scaling_one_neuron_keeps_decode_and_the_function():
    # the example: one neuron's weights and bias / 10, its readout x 10
    weights = and_network(AND_CLAUSES, AND_N)
    scale = np.ones(len(AND_CLAUSES))
    scale[1] = 10.0
    moved = transform(weights, np.arange(len(AND_CLAUSES)), scale)
    x = all_inputs(AND_N)
    np.testing.assert_array_equal(network_predictions(moved, x), network_predictions(weights, x))
    assert decode(moved).clauses == decode(weights).clauses == AND_CLAUSES
    assert clause_recovery(decode(moved).clauses, AND_CLAUSES)["f1"] == 1.0


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_negated_literals_are_read_like_positive_ones(seed, data):
    # flipping input v (x_v -> 1 - x_v: W1[:, v] -> -W1[:, v], b1 += W1[:, v]) computes
    # the same function of the flipped input; the decoded clauses flip v's polarity
    W1, b1, W2, b2, _ = planted_superposition(seed % 50, noise=0.05)
    n = W1.shape[1]
    flip = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    W1f = np.where(flip[None, :], -W1, W1)
    b1f = b1 + (W1 * flip[None, :]).sum(axis=1)
    d, df = decode((W1, b1, W2, b2)), decode((W1f, b1f, W2, b2))
    flipped = [tuple((v, p != bool(flip[v])) for v, p in c) for c in d.clauses]
    assert df.clauses == flipped


def test_collision_graph_repr():
    # three clauses; channels {0, 1}, {1}, {2}: one collision, two components
    W1 = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    clauses = [((0, True), (1, True)), ((2, True),), ((3, True),)]
    g = collision_graph(W1, clauses)
    assert isinstance(g, CollisionGraph) and sorted(g.edges) == [(0, 1)]
    assert repr(g) == str(g) == "CollisionGraph(3 clauses, 1 collision, 2 components)"
    assert repr(collision_graph(np.zeros((2, 3)), [((0, True),)])) == "CollisionGraph(1 clause, 0 collisions, 1 component)"


# --------------------------------------------------------------------------- static decoding


@pytest.mark.parametrize("noise", [0.0, 0.01, 0.05, 0.1])
@pytest.mark.parametrize("seed", range(12))
def test_planted_superposition_decodes_exactly_at_defaults(seed, noise):
    W1, b1, W2, b2, clauses = planted_superposition(seed, noise=noise)
    assert len(clauses) > W1.shape[0]  # more clauses than neurons
    assert any(not p for c in clauses for _, p in c) and any(all(not p for _, p in c) for c in clauses)
    circuit = decode((W1, b1, W2, b2))
    assert sorted(circuit.clauses) == clauses  # every clause, all-negated ones included, no extras
    rec = clause_recovery(circuit.clauses, clauses)
    assert rec["f1"] == 1.0 and rec["n_exact"] == len(clauses)
    # each clause's channel is its planted neuron subset
    assert [len(ch) for ch in circuit.channels] == [3] * len(clauses)
    assert clause_channels(W1, circuit.clauses) == circuit.channels


@pytest.mark.parametrize("scale", [1.0, 0.01, 50.0])
def test_clean_and_network_decodes_to_its_formula(scale):
    weights = and_network(AND_CLAUSES, AND_N, scale=scale)
    x = all_inputs(AND_N)
    net = network_predictions(weights, x)
    np.testing.assert_array_equal(net[:, 0], truth(AND_CLAUSES, x).any(axis=1))
    circuit = decode(weights)
    assert circuit.clauses == AND_CLAUSES and circuit.readouts == [[0]] * 4 and circuit.default == [False]
    assert circuit_agreement(circuit, net, x) == 1.0
    assert repr(circuit) == "DecodedCircuit[static](out0 = (x0 ∧ ¬x1 ∧ x2) ∨ (¬x3 ∧ ¬x4) ∨ (x5) ∨ … (+1))"


# --------------------------------------------------------------------------- decode_function


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_decode_function_reads_a_clean_and_network_from_weights_alone(kind):
    weights = and_network(AND_CLAUSES, AND_N)
    if kind == "torch":
        weights = tuple(torch.tensor(w, dtype=torch.float32) for w in weights)
    circuit = decode_function(weights)  # a weight tuple: no task, no data
    assert isinstance(circuit, DecodedCircuit) and circuit.method == "function"
    assert sorted(circuit.clauses) == sorted(AND_CLAUSES)
    x = all_inputs(AND_N)
    assert circuit_agreement(circuit, network_predictions(weights, x), x) == 1.0
    # n <= exact_vars: every input enumerated, so precisions are exact and certified
    assert circuit.precision == [[1.0]] * 4 and circuit.certified == [[True]] * 4
    assert circuit.uncovered == [0.0] and circuit.sample_agreement == [1.0]
    assert circuit.positive_rate[0] == pytest.approx(truth(AND_CLAUSES, x).any(axis=1).mean())
    json.dumps(circuit.to_dict())


def test_decode_function_certifies_terms_by_interval_bounds_beyond_enumeration():
    # 40 inputs: too many to enumerate; every planted AND is provably sufficient
    clauses = [((4 * c, True), (4 * c + 1, False), (4 * c + 2, True)) for c in range(6)]
    weights = and_network(clauses, 40)
    circuit = decode_function(weights, seed=3)
    assert sorted(circuit.clauses) == sorted(clauses)
    assert all(c == [True] for c in circuit.certified)
    assert all(p == [1.0] for p in circuit.precision)
    assert circuit.uncovered[0] < 0.01


def test_decode_function_per_output():
    weights = and_network(AND_CLAUSES, AND_N, outputs="clauses")
    circuit = decode_function(weights)
    assert circuit.n_outputs == 4
    for o, clause in enumerate(AND_CLAUSES):
        assert circuit.terms(o) == [clause]
    x = all_inputs(AND_N)
    np.testing.assert_array_equal(circuit.evaluate(x), truth(AND_CLAUSES, x).astype(np.float32))
    assert true_formula_agreement(AND_CLAUSES, network_predictions(weights, x), x) == 1.0


def test_decode_function_grouped_outputs():
    # output 0 = clause 0 OR clause 1, output 1 = clause 2 OR clause 3
    W1, b1, W2, b2 = and_network(AND_CLAUSES, AND_N)
    W2 = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    weights = (W1, b1, W2, np.full(2, -0.5))
    circuit = decode_function(weights)
    assert sorted(circuit.terms(0)) == sorted(AND_CLAUSES[:2]) and sorted(circuit.terms(1)) == sorted(AND_CLAUSES[2:])
    x = all_inputs(AND_N)
    net = network_predictions(weights, x)
    assert circuit_agreement(circuit, net, x) == 1.0
    assert true_formula_agreement(AND_CLAUSES, net, x, groups=[[0, 1], [2, 3]]) == 1.0
    static = decode(weights)
    assert static.clauses == AND_CLAUSES and static.readouts == [[0], [0], [1], [1]]


def test_clause_table_judges_readouts_by_contribution_with_biases():
    # neuron 1 reads x1 but its bias -5 keeps it silent: with b1 it votes for nothing
    W1 = np.array([[1.0, 0.0], [0.0, 1.0]])
    W2 = np.array([[1.0, 1.0]])
    rows = clause_table(W1, W2, [((0, True),), ((1, True),)], b1=np.array([0.0, -5.0]))
    assert [r["readout"] for r in rows] == [[0], []]
    rows = clause_table(W1, W2, [((0, True),), ((1, True),)])  # no b1: zero biases, both can fire
    assert [r["readout"] for r in rows] == [[0], [0]]


def test_decode_function_reads_what_the_network_computes_not_its_planted_code():
    # zero biases and all readouts positive: the network outputs 1 almost everywhere,
    # whatever clauses its codes plant; it must read as (near-)constant true
    W1, b1, W2, b2, clauses = planted_superposition(0, noise=0.01)
    weights = (W1, b1, W2, b2)
    x = (np.random.default_rng(9).random((4000, W1.shape[1])) < 0.5).astype(np.float32)
    net = network_predictions(weights, x)
    assert net.mean() > 0.85
    assert sorted(decode(weights).clauses) == clauses  # the static code is the planted DNF
    circuit = decode_function(weights)
    y = circuit.evaluate(x)
    # as faithful as the constant ⊤ up to sampling noise (terms may win a fraction of a percent on the decoder's own draws)
    assert y.mean() > 0.85 and circuit_agreement(circuit, net, x) >= net.mean() - 0.01
    assert clause_recovery(circuit.clauses, clauses)["f1"] < 0.5  # not the planted DNF
    assert circuit_agreement(circuit, net, x) > true_formula_agreement(clauses, net, x)


def test_decode_function_constant_outputs():
    W1 = np.array([[1.0, -1.0, 0.0]])
    b1 = np.zeros(1)
    # output 0 always on, output 1 never on
    W2 = np.array([[1.0], [1.0]])
    b2 = np.array([0.5, -5.0])
    circuit = decode_function((W1, b1, W2, b2))
    assert circuit.default == [True, False] and circuit.formula() == ["⊤", "⊥"]
    assert circuit.clauses == [] and circuit.uncovered == [0.0, 0.0]
    assert repr(circuit) == "DecodedCircuit[function](out0 = ⊤; out1 = ⊥)"


def test_decode_function_is_deterministic_for_a_seed():
    rng = np.random.default_rng(5)
    weights = (rng.normal(size=(12, 30)), rng.normal(size=12), rng.normal(size=(2, 12)), rng.normal(size=2))
    a = decode_function(weights, seed=7)
    b = decode_function(weights, seed=7)
    assert a.to_dict() == b.to_dict()
    c = decode_function(tuple(w.copy() for w in weights), seed=7)
    assert c.clauses == a.clauses and c.precision == a.precision


def test_decode_function_on_a_model():
    model = MaskedMLP(6, 5, 1, seed=0)
    circuit = decode_function(model, max_literals=2)
    assert all(len(c) <= 2 for c in circuit.clauses)
    x = all_inputs(6)
    # exact enumeration: the reported agreement is the agreement on every input
    assert circuit.sample_agreement[0] == pytest.approx(circuit_agreement(circuit, network_predictions(model, x), x))


def test_decode_function_bad_input():
    weights = and_network(AND_CLAUSES, AND_N)
    W1, b1, W2, b2 = weights
    with pytest.raises(ValueError, match="W2"):
        decode_function((W1, b1, W2[:, :2], b2))
    with pytest.raises(ValueError, match="b1"):
        decode_function((W1, b1[:2], W2, b2))
    with pytest.raises(ValueError, match="max_literals"):
        decode_function(weights, max_literals=0)
    with pytest.raises(ValueError, match="seed"):
        decode_function(weights, seed=-1)
    with pytest.raises(ValueError, match="n_samples"):
        decode_function(weights, n_samples=10)
    with pytest.raises(ValueError, match="min_gain"):
        decode_function(weights, min_gain=1.5)
    with pytest.raises(ValueError, match="one hidden layer"):
        decode(MaskedMLP(4, [3, 3], 1, seed=0))
    with pytest.raises(ValueError, match="tuple"):
        decode_function((W1, b1))


def test_true_formula_agreement_known_answer():
    clauses = [((0, True), (1, True))]
    x = all_inputs(3)
    net = (x[:, :1] == 1).astype(np.float32)  # network: x0
    # the true clause x0 ∧ x1 agrees except where x0 = 1, x1 = 0: 2 of 8 inputs differ
    assert true_formula_agreement(clauses, net, x) == pytest.approx(6 / 8)
    with pytest.raises(ValueError, match="groups"):
        true_formula_agreement(clauses, np.zeros((8, 2)), x)
    # grouped outputs: output 0 = clause 0, output 1 = clause 0 OR clause 1
    two = [((0, True), (1, True)), ((2, False),)]
    net2 = np.stack([truth(two[:1], x).any(1), truth(two, x).any(1)], 1).astype(np.float32)
    assert true_formula_agreement(two, net2, x, groups=[[0], [0, 1]]) == 1.0
    assert true_formula_agreement(two, net2, x, groups=[[0, 1], [0, 1]]) == pytest.approx(1 - 0.5 * 3 / 8)


# --------------------------------------------------------------------------- any network, both forms, stated inputs


def cnf_network(clauses, n: int, scale: float = 1.0):
    """Clean CNF network: one neuron per clause, firing where the clause fails (every
    literal false: the AND network of the negated literals), readout -1, b2 = 0.5·scale:
    the output is 1 exactly where every clause holds."""
    W1, b1, W2, _ = and_network([tuple((v, not p) for v, p in c) for c in clauses], n, scale=scale)
    return W1, b1, -W2, np.full(1, 0.5 * scale)


def cnf_truth(clauses, x: np.ndarray) -> np.ndarray:
    return np.all([np.any([x[:, v] == (1.0 if p else 0.0) for v, p in c], axis=0) for c in clauses], axis=0)


CNF_CLAUSES = [((0, True), (1, False), (2, True)), ((3, False), (4, True), (5, True)), ((6, True), (7, True), (8, False)),
               ((9, False), (10, False), (11, True))]


def _sequential(act: type[torch.nn.Module], sizes, seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    mods: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods += [torch.nn.Linear(a, b)] + ([act()] if i < len(sizes) - 2 else [])
    return torch.nn.Sequential(*mods)


class _Forward(torch.nn.Module):
    """The same layers behind a forward of its own (activations as functions)."""

    def __init__(self, seq: torch.nn.Sequential, fn):
        super().__init__()
        self.linears = torch.nn.ModuleList(m for m in seq if isinstance(m, torch.nn.Linear))
        self.fn = fn

    def forward(self, x):
        for layer in self.linears[:-1]:
            x = self.fn(layer(x))
        return self.linears[-1](x)


_ACTS = [(torch.nn.ReLU, "relu", torch.relu), (torch.nn.Tanh, "tanh", torch.tanh),
         (torch.nn.GELU, "gelu", torch.nn.functional.gelu)]


@pytest.mark.parametrize("act,name,fn", _ACTS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_modules_of_any_depth_and_activation_read_as_their_weight_lists(act, name, fn, depth):
    sizes = (8,) + (6,) * depth + (2,)
    seq = _sequential(act, sizes, seed=depth)
    weights = [t.detach() for m in seq if isinstance(m, torch.nn.Linear) for t in (m.weight, m.bias)]
    x = all_inputs(8)
    want = (seq(torch.tensor(x)) > 0).float().numpy()
    np.testing.assert_array_equal(network_predictions(seq, x), want)  # evaluated whole, every layer
    np.testing.assert_array_equal(network_predictions(weights, x, activation=name), want)
    from_module = decode_function(seq).to_dict()
    assert decode_function(weights, activation=name).to_dict() == from_module
    # the same layers behind a forward fci cannot see through: evaluated whole, read the same (8 inputs: exact)
    assert decode_function(_Forward(seq, fn)).to_dict() == from_module
    circuit = decode_function(seq)
    assert circuit.sample_agreement == pytest.approx(
        [float((circuit.evaluate(x)[:, o] == want[:, o]).mean()) for o in range(2)])


def test_a_tanh_network_is_read_as_tanh_from_its_module_or_its_weight_list_with_activation_stated():
    seq = _sequential(torch.nn.Tanh, (10, 6, 1), seed=3)
    W1, b1, W2, b2 = (t.detach().numpy() for m in seq if isinstance(m, torch.nn.Linear) for t in (m.weight, m.bias))
    x = all_inputs(10)
    tanh = (seq(torch.tensor(x)) > 0).float().numpy()
    relu = ((np.maximum(x @ W1.T + b1, 0) @ W2.T + b2) > 0).astype(np.float32)
    assert (tanh != relu).sum() > 10  # the two readings of these weights differ
    np.testing.assert_array_equal(network_predictions((W1, b1, W2, b2), x, activation="tanh"), tanh)
    np.testing.assert_array_equal(network_predictions((W1, b1, W2, b2), x), relu)  # the documented default
    circuit = decode_function(seq)
    assert circuit.to_dict() == decode_function((W1, b1, W2, b2), activation="tanh").to_dict()
    assert circuit_agreement(circuit, tanh, x) == circuit.sample_agreement[0]  # exact: measured on every input
    with pytest.raises(ValueError, match="activation='relu' was given, but nn.Sequential uses tanh"):
        decode_function(seq, activation="relu")


def test_glued_layers_whose_shapes_do_not_chain_are_refused_and_a_full_weight_list_reads_as_its_module():
    seq = _sequential(torch.nn.ReLU, (6, 5, 4, 2), seed=0)
    W1, b1, W2, b2, W3, b3 = (t.detach() for m in seq if isinstance(m, torch.nn.Linear) for t in (m.weight, m.bias))
    with pytest.raises(ValueError, match="the shapes do not chain") as e:
        decode_function((W1, b1, W3, b3))
    assert "\n" not in str(e.value)
    assert decode_function((W1, b1, W2, b2, W3, b3)).to_dict() == decode_function(seq).to_dict()


@pytest.mark.parametrize("hidden", [[8, 8], [6, 5, 4]])
def test_a_deep_masked_mlp_is_evaluated_whole(hidden):
    model = MaskedMLP(9, hidden, 2, seed=1)
    x = all_inputs(9)
    y = network_predictions(model, x)
    np.testing.assert_array_equal(y, (model(torch.tensor(x)) > 0).float().numpy())
    circuit = decode_function(model)
    assert circuit.sample_agreement[0] == pytest.approx(float((circuit.evaluate(x)[:, 0] == y[:, 0]).mean()))


def test_a_cnf_network_reads_as_its_cnf():
    # 40 inputs, beyond enumeration: certificates come from interval bounds, precisions from planting
    weights = cnf_network(CNF_CLAUSES, 40)
    circuit = decode_function(weights, seed=1)
    assert circuit.form == "cnf" and sorted(circuit.clauses) == sorted(CNF_CLAUSES)
    assert circuit.cnf_agreement == [1.0] and circuit.dnf_agreement[0] < 0.95  # its DNF has 81 terms of 4 literals
    assert circuit.precision == [[1.0]] * 4 and circuit.certified == [[True]] * 4 and circuit.uncovered == [0.0]
    x = (np.random.default_rng(0).random((3000, 40)) < 0.5).astype(np.float32)
    np.testing.assert_array_equal(circuit.evaluate(x)[:, 0], cnf_truth(CNF_CLAUSES, x))
    assert repr(circuit).startswith("DecodedCircuit[function, cnf](out0 = (x0 ∨ ¬x1 ∨ x2) ∧ ")
    assert circuit.warnings == []
    dnf = decode_function(weights, seed=1, form="dnf")
    assert dnf.form == "dnf" and math.isnan(dnf.cnf_agreement[0]) and dnf.sample_agreement[0] < 0.95


def test_a_network_trained_on_a_cnf_reads_as_that_cnf():
    from fci.models.mlp import MaskedMLPStack
    from fci.train import TrainConfig
    from fci.train.fitting import fit

    x = all_inputs(12)
    y = torch.tensor(cnf_truth(CNF_CLAUSES, x), dtype=torch.float32)[:, None]
    stack = MaskedMLPStack.from_models([MaskedMLP(12, 8, 1, seed=s) for s in range(3)])
    fit(stack, torch.tensor(x).expand(3, -1, -1).contiguous(), y.expand(3, -1, -1).contiguous(),
        TrainConfig(lr=0.02, batch_size=128), range(400))
    for model in stack.to_models():
        y_net = network_predictions(model, x)
        reference = true_formula_agreement(CNF_CLAUSES, y_net, x, form="cnf")
        assert reference > 0.9  # trained: the network mostly computes the CNF
        circuit = decode_function(model)
        assert circuit.form == "cnf" and circuit.cnf_agreement[0] > circuit.dnf_agreement[0] + 0.1
        assert circuit_agreement(circuit, y_net, x) >= reference  # every input: as faithful as the true CNF
        if reference == 1.0:
            assert sorted(circuit.clauses) == sorted(CNF_CLAUSES)


def test_auto_term_length_picks_the_length_of_the_clauses():
    four = [tuple((4 * c + j, bool((c + j) % 2)) for j in range(4)) for c in range(5)]
    weights = and_network(four, 24)  # 24 inputs: read on draws, not enumerated
    circuit = decode_function(weights)
    assert circuit.max_literals == 4 and sorted(circuit.clauses) == sorted(four) and circuit.form == "dnf"
    # the DNF's rounds: 3; then 3 beside 4 on the same draws, where 4 reads it exactly and nothing longer is tried
    dnf = [(k, a) for k, a, _ in circuit.length_search if not math.isnan(a)]
    assert [k for k, _ in dnf] == [3, 3, 4] and dnf[1][1] < 0.99 and dnf[2][1] == 1.0
    assert clause_recovery(circuit.clauses, four)["exact_f1"] == 1.0
    three = decode_function(and_network(AND_CLAUSES, 24))  # clauses of 1 to 3 literals
    assert three.max_literals == 3 and sorted(three.clauses) == sorted(AND_CLAUSES)
    # at 3 literals the 4-literal clauses cannot be read: F1 forgives subsets, exact recovery does not
    short = decode_function(weights, max_literals=3)
    assert short.max_literals == 3 and all(len(c) <= 3 for c in short.clauses)
    assert short.sample_agreement[0] < circuit.sample_agreement[0] == 1.0
    assert clause_recovery(short.clauses, four)["exact_f1"] == 0.0 and short.warnings


def test_an_imprecise_reading_warns_in_one_line_naming_the_remedy(caplog):
    circuit = decode_function(and_network(AND_CLAUSES, AND_N), max_literals=1)
    assert circuit.warnings and all("\n" not in w for w in circuit.warnings)
    assert any("imprecise" in w or "unexplained" in w for w in circuit.warnings)
    assert all("max_literals='auto'" in w and "inputs=" in w for w in circuit.warnings)
    assert circuit.warnings[0] in caplog.text
    # parity of 10 inputs is no short DNF or CNF: read at defaults, it still warns
    n = 10
    s_w = np.ones((n + 3, n))
    b = -np.arange(-1, n + 2, dtype=float)  # neuron m fires relu(Σx - m), m = -1..n+1
    W2 = np.zeros((1, n + 3))
    for j in range(1, n + 1, 2):  # a tent at each odd count j: relu(s-j+1) - 2 relu(s-j) + relu(s-j-1)
        W2[0, j] += 1.0
        W2[0, j + 1] -= 2.0
        W2[0, j + 2] += 1.0
    parity = (s_w, b, W2, np.array([-0.5]))
    x = all_inputs(n)
    np.testing.assert_array_equal(network_predictions(parity, x)[:, 0], x.sum(axis=1) % 2)
    odd = decode_function(parity)
    assert odd.sample_agreement[0] < 0.9 and odd.warnings
    assert decode_function(and_network(AND_CLAUSES, AND_N)).warnings == []


def test_the_reading_is_faithful_to_the_inputs_it_is_given():
    weights = and_network([((0, True), (1, True))], 12)  # the network computes x0 ∧ x1
    uniform = decode_function(weights)
    assert uniform.distribution == "uniform" and uniform.clauses == [((0, True), (1, True))]
    rows = (np.random.default_rng(0).random((500, 12)) < 0.5).astype(np.float32)
    rows[:, 0] = 1.0  # inputs where x0 is always on: x1 alone says the same
    given = decode_function(weights, inputs=rows)
    assert given.distribution == "given inputs (N=500)" and given.clauses == [((1, True),)]
    y = network_predictions(weights, rows)
    assert given.sample_agreement[0] == circuit_agreement(given, y, rows) == 1.0  # measured on the given rows
    x = all_inputs(12)
    assert circuit_agreement(given, network_predictions(weights, x), x) == 0.75  # not faithful off them
    assert decode_function(weights, inputs=torch.tensor(rows)).to_dict() == given.to_dict()


@pytest.mark.parametrize("inputs,match", [
    (np.zeros((10, AND_N + 1)), "a column more than the network's inputs: labels"),
    (np.zeros((10, AND_N - 1)), f"n={AND_N} columns"),
    (np.full((10, AND_N), 0.5), "only 0/1 values"),
    (np.zeros(AND_N), "shape"),
    (np.zeros((0, AND_N)), "no rows"),
    ((np.zeros((10, AND_N)), np.zeros((10, 1))), "pass x alone, never labels"),
    (AND_CLAUSES, "never labels or clauses"),
    ("x.npy", "0/1 array"),
])
def test_labels_clauses_or_bad_arrays_as_inputs_are_refused_in_one_line(inputs, match):
    with pytest.raises(ValueError, match=match) as e:
        decode_function(and_network(AND_CLAUSES, AND_N), inputs=inputs)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("obj,kw,match", [
    (torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.ReLU(), torch.nn.Linear(2, 1)), {}, "Conv1d"),
    (torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU(), torch.nn.Linear(3, 1)), {},
     "BatchNorm1d"),
    (torch.nn.GRU(4, 3), {}, "GRU"),
    ((np.ones((3, 4)), np.ones(3), np.ones((1, 5)), np.ones(1)), {}, "the shapes do not chain"),
    ((np.ones((3, 4)), np.ones(3), np.ones((1, 3)), np.ones(1)), {"activation": "swish"}, "activation must be one of"),
    ((np.ones((3, 4)), np.ones(3), np.ones((1, 3)), np.ones(1)), {"form": "xnf"}, "form must be"),
    ((np.ones((3, 4)), np.ones(3), np.ones((1, 3)), np.ones(1)), {"max_literals": "long"}, "max_literals"),
])
def test_what_decode_function_cannot_read_is_refused_in_one_line(obj, kw, match):
    with pytest.raises(ValueError, match=match) as e:
        decode_function(obj, **kw)
    assert "\n" not in str(e.value)


_DEEP_ACTS = ["relu", "tanh", "gelu", "silu", "sigmoid", "leaky_relu:0.1", "leaky_relu:-0.3", "softplus", "elu"]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.integers(2, 6), min_size=1, max_size=3), st.sampled_from(_DEEP_ACTS),
       st.sampled_from(["dnf", "cnf"]))
def test_certificates_through_every_layer_are_sound(seed, hidden, act, form):
    # read on draws (exact_vars=0), so certificates come from interval bounds; enumerate to check each
    rng = np.random.default_rng(seed)
    n, sizes = 7, [7] + hidden + [2]
    weights = [a for i, o in zip(sizes[:-1], sizes[1:]) for a in (rng.normal(0, 1.5, (o, i)), rng.normal(0, 1, o))]
    circuit = decode_function(weights, activation=act, form=form, exact_vars=0, n_samples=256)
    x = all_inputs(n)
    y = network_predictions(weights, x, activation=act)
    truth = circuit.clause_truth(x)
    for d, outs in enumerate(circuit.readouts):
        for o, cert in zip(outs, circuit.certified[d]):
            if cert and form == "dnf":  # the output is 1 wherever the term holds
                assert (y[truth[:, d], o] == 1).all()
            elif cert:  # the output is 0 wherever the clause fails
                assert (y[~truth[:, d], o] == 0).all()


def test_many_given_inputs_are_searched_in_part_and_measured_in_full():
    weights = and_network(AND_CLAUSES, AND_N)
    rows = (np.random.default_rng(1).random((5000, AND_N)) < 0.5).astype(np.float32)
    circuit = decode_function(weights, inputs=rows, n_samples=64)  # searches 4 * 64 of the rows
    assert circuit.distribution == "given inputs (N=5000)"
    y = network_predictions(weights, rows)
    assert circuit.sample_agreement[0] == circuit_agreement(circuit, y, rows)
    assert circuit.positive_rate[0] == pytest.approx(float(y.mean()))
