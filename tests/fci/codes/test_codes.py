"""Tests for fci.codes: sign codes, channels, collisions, splitting views and static
decoding on hand-built networks with known answers (SPEC §5)."""

from __future__ import annotations

import itertools
import json

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fci.codes import (
    ClauseSplitView,
    DecodedCircuit,
    channel_graph,
    channel_membership,
    circuit_agreement,
    clause_channels,
    clause_recovery,
    clause_table,
    collision_graph,
    collision_matrix,
    decode,
    literal_codes,
    network_predictions,
    polysemanticity,
    readout_votes,
    sign_codes,
    split_view,
)
from tests.helpers import planted_dnf

# --------------------------------------------------------------------------- builders

# Planted superposition: 11 clauses on 7 neurons. Channels of 1-3 neurons overlap;
# clause 10's literals excite different neurons, so it has no channel.
SUPER_CHANNELS = [
    [0, 1, 2], [0, 3], [1, 3, 4], [2, 4], [0, 1], [3, 4], [2], [0, 2, 4],  # entangled group
    [5, 6], [6],  # second group
    [],  # no channel
]
SUPER_C = len(SUPER_CHANNELS)
SUPER_K = 3
SUPER_N = SUPER_C * SUPER_K + 3  # vars 33, 34, 35 are distractors
SUPER_H = 7

# Expected shared-neuron counts, written out by hand from SUPER_CHANNELS.
SUPER_COLLISIONS = np.array([
    # 0  1  2  3  4  5  6  7  8  9 10
    [3, 1, 1, 1, 2, 0, 1, 2, 0, 0, 0],  # 0 {0,1,2}
    [1, 2, 1, 0, 1, 1, 0, 1, 0, 0, 0],  # 1 {0,3}
    [1, 1, 3, 1, 1, 2, 0, 1, 0, 0, 0],  # 2 {1,3,4}
    [1, 0, 1, 2, 0, 1, 1, 2, 0, 0, 0],  # 3 {2,4}
    [2, 1, 1, 0, 2, 0, 0, 1, 0, 0, 0],  # 4 {0,1}
    [0, 1, 2, 1, 0, 2, 0, 1, 0, 0, 0],  # 5 {3,4}
    [1, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0],  # 6 {2}
    [2, 1, 1, 2, 1, 1, 1, 3, 0, 0, 0],  # 7 {0,2,4}
    [0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0],  # 8 {5,6}
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0],  # 9 {6}
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # 10 {}
])
SUPER_POLY = [4, 3, 4, 3, 4, 1, 2]


def superposition_network(extras: bool = True) -> tuple[np.ndarray, np.ndarray, list]:
    """(W1 (7, 36), W2 (2, 7), clauses) with SUPER_CHANNELS planted.

    Literal j of clause c is negated when (c + j) is odd and reads variable 3c + j; it
    gets weight ±(0.5..1) (sign by polarity) on every channel neuron. With ``extras``,
    some literals also excite one neuron outside the channel, and inhibit others
    (literal code -1), which must not change the channels. Distractors carry weights
    at or below tau = 0.1 (max|W1| = 1), which code to 0.
    """
    rng = np.random.default_rng(0)
    W1 = np.zeros((SUPER_H, SUPER_N))
    clauses = []
    for c, channel in enumerate(SUPER_CHANNELS):
        clause = tuple((SUPER_K * c + j, (c + j) % 2 == 0) for j in range(SUPER_K))
        clauses.append(clause)
        for j, (v, positive) in enumerate(clause):
            sign = 1.0 if positive else -1.0
            W1[channel, v] = sign * rng.uniform(0.5, 1.0, size=len(channel))
            if extras:
                outside = [i for i in range(SUPER_H) if i not in channel]
                if j == 0 and outside:
                    W1[outside[0], v] = sign * 0.8  # one literal alone excites it
                if j == 1 and len(outside) > 1:
                    W1[outside[1], v] = -sign * 0.6  # inhibition: literal code -1
    # clause 10: literals excite {5}, {0}, {5}: no common neuron
    for j, (v, positive) in enumerate(clauses[10]):
        W1[:, v] = 0.0
        W1[[5, 0, 5][j], v] = 0.9 if positive else -0.9
    W1[0, 0] = 1.0  # max|W1| = 1 exactly, so tau = 0.1
    W1[:, 33] = 0.05
    W1[:, 34] = -0.1  # exactly -tau: code 0 (strict)
    W1[3, 35] = 0.1  # exactly +tau: code 0 (strict)
    W2 = np.zeros((2, SUPER_H))
    W2[0, :5] = 1.0  # output 0 read by the entangled group
    W2[1, 5:] = 1.0
    W2[1, 0] = -1.0  # inhibitory readout: not a vote
    return W1, W2, clauses


def all_inputs(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))


def dnf_truth(clauses: list, x: torch.Tensor) -> torch.Tensor:
    """(N, C) clause truth by direct evaluation."""
    cols = [torch.stack([x[:, v] == (1.0 if p else 0.0) for v, p in cl], 1).all(1) for cl in clauses]
    return torch.stack(cols, 1)


class FakeModel:
    """Anything with effective_weights() works for decode."""

    def __init__(self, layers):
        self._layers = layers

    def effective_weights(self):
        return self._layers


# --------------------------------------------------------------------------- sign codes


def test_sign_codes_threshold_boundaries_relative():
    W = np.array([[1.0, 0.1, -0.1, 0.1000001, -0.1000001, 0.0, -2.0]])
    # relative to the neuron's own max: tau = 0.1 * 2 = 0.2
    np.testing.assert_array_equal(sign_codes(W, threshold=0.1), [[1, 0, 0, 0, 0, 0, -1]])
    W[0, 6] = -1.0  # tau = 0.1: +-0.1 exactly code 0, just above codes +-1
    np.testing.assert_array_equal(sign_codes(W, threshold=0.1), [[1, 0, 0, 1, -1, 0, -1]])
    # per neuron vs the former global rule: a small neuron keeps its code
    W2 = np.array([[1.0, -0.5, 0.05], [0.01, -0.02, 0.0]])
    np.testing.assert_array_equal(sign_codes(W2, threshold=0.1), [[1, -1, 0], [1, -1, 0]])
    np.testing.assert_array_equal(sign_codes(W2, threshold=0.1, relative="global"), [[1, -1, 0], [0, 0, 0]])


def test_sign_codes_threshold_boundaries_absolute_and_torch():
    W = torch.tensor([[0.5, -0.5, 0.51, -0.51, 0.3]])
    S = sign_codes(W, threshold=0.5, relative="absolute")
    assert isinstance(S, torch.Tensor) and S.dtype == torch.int64
    assert S.tolist() == [[0, 0, 1, -1, 0]]
    # float32 boundary: 0.1 stored in float32 is still exactly tau = 0.1 * max
    W32 = torch.tensor([[1.0, 0.1, -0.1]], dtype=torch.float32)
    assert sign_codes(W32).tolist() == [[1, 0, 0]]
    # threshold 0: every non-zero weight has a sign
    assert sign_codes(np.array([[1e-9, -1e-9, 0.0]]), threshold=0.0).tolist() == [[1, -1, 0]]


def test_sign_codes_all_zero_and_bad_threshold():
    assert (sign_codes(np.zeros((3, 4))) == 0).all()
    with pytest.raises(ValueError, match="threshold"):
        sign_codes(np.ones((2, 2)), threshold=-0.1)
    with pytest.raises(ValueError, match="threshold"):
        sign_codes(np.ones((2, 2)), threshold=1.5)  # relative fraction > 1
    with pytest.raises(ValueError, match="2-D"):
        sign_codes(np.ones(3))


def test_literal_codes_negate_for_negated_literals():
    W = np.array([[1.0, -1.0], [-1.0, 0.05]])
    codes = literal_codes(W, [((0, True), (1, False))])
    assert len(codes) == 1
    np.testing.assert_array_equal(codes[0], [[1, 1], [-1, 0]])


# --------------------------------------------------------------------------- planted superposition


@pytest.mark.parametrize("extras", [False, True])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_superposition_channels_recovered_exactly(extras, kind):
    W1, W2, clauses = superposition_network(extras)
    W = torch.tensor(W1, dtype=torch.float32) if kind == "torch" else W1
    assert SUPER_C > SUPER_H  # more clauses than neurons
    assert clause_channels(W, clauses) == SUPER_CHANNELS
    assert clause_channels(W, clauses, threshold=0.1, relative="absolute") == SUPER_CHANNELS
    M = collision_matrix(W, clauses)
    assert type(M) is type(W)
    np.testing.assert_array_equal(np.asarray(M), SUPER_COLLISIONS)
    np.testing.assert_array_equal(np.asarray(polysemanticity(W, clauses)), SUPER_POLY)
    A = np.asarray(channel_membership(W, clauses))
    assert A.shape == (SUPER_H, SUPER_C) and A.dtype == bool
    assert [np.flatnonzero(A[:, c]).tolist() for c in range(SUPER_C)] == SUPER_CHANNELS


def test_superposition_codes_of_distractors_are_zero():
    W1, _, _ = superposition_network()
    S = sign_codes(W1)
    assert (S[:, 33:] == 0).all()
    assert S.shape == (SUPER_H, SUPER_N)


def test_superposition_collision_graph():
    W1, _, clauses = superposition_network()
    g = collision_graph(W1, clauses)
    assert set(g.nodes) == set(range(SUPER_C))
    expected_edges = {
        (a, b): int(SUPER_COLLISIONS[a, b]) for a in range(SUPER_C) for b in range(a + 1, SUPER_C)
        if SUPER_COLLISIONS[a, b] > 0
    }
    assert len(expected_edges) == 21
    assert {tuple(sorted(e)): w for *e, w in g.edges(data="weight")} == expected_edges
    components = sorted(sorted(c) for c in nx.connected_components(g))
    assert components == [[0, 1, 2, 3, 4, 5, 6, 7], [8, 9], [10]]
    assert g.nodes[4]["channel"] == [0, 1] and g.nodes[4]["clause"] == clauses[4]
    assert g.nodes[0]["label"] == "x0 ∧ ¬x1 ∧ x2"


def test_readout_votes_count_positive_votes_only():
    W1, W2, clauses = superposition_network()
    votes = readout_votes(W2, SUPER_CHANNELS)
    expected = [[len([i for i in ch if i < 5]), len([i for i in ch if i >= 5])] for ch in SUPER_CHANNELS]
    np.testing.assert_array_equal(votes, expected)  # W2[1, 0] = -1 is not a vote
    with pytest.raises(ValueError, match="out of range"):
        readout_votes(W2, [[7]])


def test_clause_table_rows():
    W1, W2, clauses = superposition_network()
    rows = clause_table(W1, W2, clauses)
    json.dumps(rows)
    assert len(rows) == SUPER_C
    r = rows[8]
    assert r["literals"] == "x24 ∧ ¬x25 ∧ x26"
    assert r["channel"] == [5, 6] and r["readout"] == [1] and r["votes"] == [0, 2]
    assert r["collisions"] == [9] and r["polysemantic"] == [6]
    assert rows[10]["channel"] == [] and rows[10]["collisions"] == []
    assert rows[0]["collisions"] == [1, 2, 3, 4, 6, 7]
    assert 0 < r["capacity"] <= 1


def test_channel_graph_small():
    W1 = np.array([[1.0, -1.0, 0.0], [0.5, 0.5, 0.0]])
    W2 = np.array([[1.0, -1.0]])
    clauses = [((0, True), (1, False))]
    g = channel_graph(W1, W2, clauses)
    assert set(g.nodes) == {"x0", "~x1", "h0", "y0"}
    assert g.nodes["~x1"]["label"] == "¬x1" and g.nodes["h0"]["clauses"] == [0]
    assert g.edges["x0", "h0"] == {"sign": 1, "weight": 1.0, "raw_weight": 1.0}
    assert g.edges["~x1", "h0"] == {"sign": 1, "weight": 1.0, "raw_weight": -1.0}
    assert g.edges["h0", "y0"] == {"sign": 1, "weight": 1.0}
    g2 = channel_graph(W1, W2, clauses, neurons="coded")
    assert g2.edges["~x1", "h1"]["sign"] == -1 and g2.edges["~x1", "h1"]["weight"] == -0.5
    assert g2.edges["h1", "y0"] == {"sign": -1, "weight": -1.0}
    assert g2.nodes["h1"]["polysemanticity"] == 0
    assert [n for n, d in g2.nodes(data=True) if d["kind"] == "output"] == ["y0"]
    g3 = channel_graph(W1, W2, None, neurons="all")
    assert {"x0", "x1", "h0", "h1", "y0"} <= set(g3.nodes) and "x2" in g3.nodes
    assert g3.edges["x1", "h0"]["sign"] == -1


def test_channel_graph_of_superposition_network():
    W1, W2, clauses = superposition_network()
    g = channel_graph(W1, W2, clauses)
    lit_nodes = [n for n, d in g.nodes(data=True) if d["kind"] == "literal"]
    assert len(lit_nodes) == SUPER_C * SUPER_K
    for c, ch in enumerate(SUPER_CHANNELS):  # every channel neuron receives every literal of its clause
        for v, p in clauses[c]:
            lit = f"x{v}" if p else f"~x{v}"
            for i in ch:
                assert g.edges[lit, f"h{i}"]["sign"] == 1
    assert g.nodes["h6"]["clauses"] == [8, 9]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 8), st.integers(1, 10), st.integers(1, 6))
def test_collision_invariants(seed, H, n, C):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(H, n)) * (rng.random((H, n)) < 0.6)
    clauses = []
    for _ in range(C):
        k = int(rng.integers(1, min(3, n) + 1))
        vs = rng.choice(n, size=k, replace=False)
        clauses.append(tuple((int(v), bool(rng.random() < 0.5)) for v in vs))
    channels = clause_channels(W, clauses)
    M = collision_matrix(W, clauses)
    assert (M == M.T).all()
    assert M.diagonal().tolist() == [len(ch) for ch in channels]
    for a, b in itertools.combinations(range(C), 2):
        assert M[a, b] == len(set(channels[a]) & set(channels[b]))
    assert polysemanticity(W, clauses).sum() == sum(len(ch) for ch in channels)
    # permuting neurons permutes channels
    perm = rng.permutation(H)
    inv = np.argsort(perm)
    assert clause_channels(W[perm], clauses) == [sorted(int(inv[i]) for i in ch) for ch in channels]


@pytest.mark.parametrize(
    "clauses, match",
    [
        ([((36, True),)], "out of range"),
        ([((-1, True),)], "out of range"),
        ([()], "empty"),
        ([((0, True), (0, True))], "twice"),
    ],
)
def test_bad_clauses_raise(clauses, match):
    W1, W2, _ = superposition_network()
    for fn in (clause_channels, collision_matrix, collision_graph, polysemanticity, literal_codes):
        with pytest.raises(ValueError, match=match):
            fn(W1, clauses)


def test_bad_shapes_raise():
    W1, W2, clauses = superposition_network()
    with pytest.raises(ValueError, match="2-D"):
        clause_channels(W1[0], clauses)
    with pytest.raises(ValueError, match="W2"):
        channel_graph(W1, W2[:, :3], clauses)
    with pytest.raises(ValueError, match="W2"):
        clause_table(W1, W2.T, clauses)
    with pytest.raises(ValueError, match="neurons"):
        channel_graph(W1, W2, clauses, neurons="some")


# --------------------------------------------------------------------------- split view


def _split_fixture():
    clauses = [((0, True), (1, True)), ((2, True), (3, False)), ((5, True),)]
    parent = np.array([
        [1.0, 1.0, 1.0, -1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, -1.0, 0.0, 0.05],  # x5 below tau in the parent
    ])
    child = np.array([
        [1.0, 1.0, 0.0, 0.0, 0.0, 0.0],  # parent 0: carries clause 0 whole
        [0.0, 0.0, 1.0, -1.0, 0.0, 0.0],  # parent 0: carries clause 1 whole
        [0.0, 0.0, 0.9, 0.0, 0.0, 0.0],  # parent 1: clause 1 split across its children
        [0.0, 0.0, 0.0, -0.8, 0.0, 0.9],  # parent 1: now reads x5
    ])
    mask = (child != 0).astype(np.float32)
    return parent, child, mask, clauses


@pytest.mark.parametrize("with_mask", [True, False])
def test_split_view_known_answer(with_mask):
    parent, child, mask, clauses = _split_fixture()
    pidx = np.arange(4) // 2
    views = split_view(parent, torch.tensor(child), torch.tensor(pidx), clauses,
                       child_mask=torch.tensor(mask) if with_mask else None)
    assert [type(v) for v in views] == [ClauseSplitView] * 3
    v0, v1, v2 = views
    assert v0.parent_channel == [0] and v0.children_carrying_whole == {0: [0]}
    assert v0.child_channel == [0] and v0.preserved == [0] and v0.new == [] and v0.lost == []
    assert v1.parent_channel == [0, 1] and v1.children_carrying_whole == {0: [1], 1: []}
    assert v1.child_channel == [1] and v1.preserved == [1] and v1.lost == [1]
    assert v2.parent_channel == [] and v2.children_carrying_whole == {}
    assert v2.child_channel == [3] and v2.new == [3] and v2.preserved == []
    assert v1.label == "x2 ∧ ¬x3" and v1.survived
    d = json.loads(json.dumps(v1.to_dict()))
    assert d["children_carrying_whole"] == {"0": [1], "1": []} and d["literals"] == [[2, True], [3, False]]


def test_split_view_bad_input():
    parent, child, mask, clauses = _split_fixture()
    with pytest.raises(ValueError, match="parent_index"):
        split_view(parent, child, np.arange(3), clauses)
    with pytest.raises(ValueError, match="parent_index"):
        split_view(parent, child, np.array([0, 0, 1, 2]), clauses)
    with pytest.raises(ValueError, match="child_mask"):
        split_view(parent, child, np.arange(4) // 2, clauses, child_mask=mask[:, :3])
    with pytest.raises(ValueError, match="child_W1"):
        split_view(parent, child[:, :5], np.arange(4) // 2, clauses)


# --------------------------------------------------------------------------- decoding


DNF_CLAUSES = [((0, True), (1, False), (2, True)), ((3, False), (4, True)), ((5, True),)]
DNF_N = 8  # vars 6, 7 are distractors


@pytest.mark.parametrize("copies", [1, 2])
def test_planted_dnf_decodes_exactly_and_agrees_on_all_inputs(copies):
    weights = planted_dnf(DNF_CLAUSES, DNF_N, copies=copies)
    x = all_inputs(DNF_N)
    truth = dnf_truth(DNF_CLAUSES, x).any(1, keepdim=True).float()
    net = network_predictions(weights, x)
    assert torch.equal(net, truth)  # the fixture computes the formula

    circuit = decode(weights)
    assert isinstance(circuit, DecodedCircuit)
    assert circuit.clauses == DNF_CLAUSES
    assert circuit.channels == [list(range(c * copies, (c + 1) * copies)) for c in range(3)]
    assert circuit.readouts == [[0], [0], [0]]
    assert circuit.default == [False]
    assert circuit.formula() == ["(x0 ∧ ¬x1 ∧ x2) ∨ (¬x3 ∧ x4) ∨ (x5)"]
    y = circuit.evaluate(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2 ** DNF_N, 1)
    assert torch.equal(y, net)
    assert circuit_agreement(circuit, net, x) == 1.0
    rec = clause_recovery(circuit.clauses, DNF_CLAUSES)
    assert rec["precision"] == rec["recall"] == rec["f1"] == 1.0 and rec["n_exact"] == 3


@pytest.mark.parametrize("similarity", [1.0, 0.5])
def test_planted_dnf_multi_output_from_model_object(similarity):
    W1, b1, W2, b2 = planted_dnf(DNF_CLAUSES, DNF_N, outputs="clauses")
    model = FakeModel([(W1, b1), (W2, b2)])
    circuit = decode(model, similarity=similarity)
    assert circuit.clauses == DNF_CLAUSES and circuit.readouts == [[0], [1], [2]]
    x = all_inputs(DNF_N).numpy()
    y = circuit.evaluate(x)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    np.testing.assert_array_equal(y, dnf_truth(DNF_CLAUSES, torch.tensor(x)).float().numpy())
    logits = torch.relu(torch.tensor(x) @ W1.T + b1) @ W2.T + b2
    assert circuit_agreement(circuit, logits, x) == 1.0
    json.dumps(circuit.to_dict())


def test_decode_positive_output_bias_is_constant_true():
    W1, b1, W2, _ = planted_dnf(DNF_CLAUSES, DNF_N)
    circuit = decode((W1, b1, W2, torch.tensor([0.5])))
    assert circuit.default == [True] and circuit.formula() == ["⊤"]
    assert (circuit.evaluate(all_inputs(DNF_N)) == 1).all()


def with_inhibitors(weights, b2: float, w_inh: float = -0.25):
    """Append to a planted DNF network (one output) one inhibitory neuron per clause,
    as trained networks grow them: every literal of the clause inhibits it (weight -1
    for a positive literal, +1 for a negated one, bias #positive), so its activation is
    the number of the clause's false literals; readout ``w_inh`` < 0. The output bias
    is set to ``b2``."""
    W1, b1, W2, _ = weights
    rows, biases = [], []
    for clause in DNF_CLAUSES:
        row = torch.zeros(W1.shape[1])
        for v, positive in clause:
            row[v] = -1.0 if positive else 1.0
        rows.append(row)
        biases.append(float(sum(p for _, p in clause)))
    W1 = torch.cat([W1, torch.stack(rows)])
    b1 = torch.cat([b1, torch.tensor(biases)])
    W2 = torch.cat([W2, torch.full((1, len(rows)), w_inh)], dim=1)
    return W1, b1, W2, torch.tensor([b2])


def test_decode_positive_bias_with_inhibitory_neurons_decodes_the_dnf():
    # b2 = 0.5 > 0, but with no clause true every inhibitor has >= 1 false literal:
    # logit <= 0.5 - 3 * 0.25 < 0; with a clause true its channel neuron adds 1 and the
    # other inhibitors remove at most 0.25 * 5. The network computes the DNF exactly.
    weights = with_inhibitors(planted_dnf(DNF_CLAUSES, DNF_N), b2=0.5)
    x = all_inputs(DNF_N)
    net = network_predictions(weights, x)
    assert torch.equal(net, dnf_truth(DNF_CLAUSES, x).any(1, keepdim=True).float())
    circuit = decode(weights)
    assert circuit.clauses == DNF_CLAUSES and circuit.channels == [[0], [1], [2]]
    assert circuit.readouts == [[0], [0], [0]]
    assert circuit.default == [False]
    assert circuit.max_inhibition == pytest.approx([0.25 * (3 + 2 + 1)])  # peak = #literals
    assert circuit.formula() == ["(x0 ∧ ¬x1 ∧ x2) ∨ (¬x3 ∧ x4) ∨ (x5)"]
    assert torch.equal(circuit.evaluate(x), net)
    assert circuit_agreement(circuit, net, x) == 1.0
    json.dumps(circuit.to_dict())


def test_decode_default_true_only_when_inhibition_cannot_switch_the_output_off():
    x = all_inputs(DNF_N)
    # b2 = 1.6 > max inhibition 1.5: the network is true on every input
    weights = with_inhibitors(planted_dnf(DNF_CLAUSES, DNF_N), b2=1.6)
    assert (network_predictions(weights, x) == 1).all()
    circuit = decode(weights)
    assert circuit.default == [True] and circuit.formula() == ["⊤"]
    assert circuit_agreement(circuit, network_predictions(weights, x), x) == 1.0
    # b2 = 1.5 = max inhibition: the all-inhibitors input (x = 0, x1 = x3 = 1) gives
    # logit 0, predicted false, so the output is not constant and the default is false
    weights = with_inhibitors(planted_dnf(DNF_CLAUSES, DNF_N), b2=1.5)
    assert not (network_predictions(weights, x) == 1).all()
    assert decode(weights).default == [False]
    # a tiny uncoded inhibitory readout still counts: the bound is exact, not coded
    W1, b1, W2, _ = planted_dnf(DNF_CLAUSES, DNF_N)
    W2 = W2.clone()
    W2[0, -1] = -0.05  # the dead neuron (bias 0, no weights) peaks at 0: no inhibition
    assert decode((W1, b1, W2, torch.tensor([0.01]))).default == [True]
    b1 = b1.clone()
    b1[-1] = 1.0  # now it is always active at 1 and lowers the logit by 0.05
    circuit = decode((W1, b1, W2, torch.tensor([0.01])))
    assert circuit.default == [False] and circuit.max_inhibition == pytest.approx([0.05])


def test_decode_superposition_network_recovers_clauses():
    W1, W2, clauses = superposition_network(extras=False)
    b1 = np.zeros(SUPER_H)
    b2 = -np.ones(2)
    circuit = decode((W1, b1, W2, b2), similarity=1.0)
    # clause 10 has no channel: its literals split by excitation set ({5}, {0}, {5});
    # every group is kept, whatever its polarity (¬x31 alone)
    assert circuit.clauses[:10] == clauses[:10]
    assert circuit.clauses[10:] == [((30, True), (32, True)), ((31, False),)]
    assert circuit.channels[10:] == [[5], [0]]
    found = {cl: ch for cl, ch in zip(circuit.clauses, circuit.channels)}
    for c in range(10):
        assert found[clauses[c]] == SUPER_CHANNELS[c]
    rec = clause_recovery(circuit.clauses, clauses)
    # the partial clause matches clause 10 with Jaccard 2/3; ¬x31 matches nothing
    assert rec["n_exact"] == 10 and rec["n_matched"] == 11 and rec["recall"] == 1.0
    assert rec["precision"] == pytest.approx(11 / 12)
    idx = circuit.clauses.index(clauses[8])
    assert circuit.readouts[idx] == [1] and circuit.votes[idx] == [0, 2]


def test_decode_ignores_non_voting_neurons_and_picks_exciting_polarity():
    # neuron 0 computes x0 AND x1 and votes; neuron 1 is excited by ¬x0, ¬x1 but votes no
    W1 = torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]])
    b1 = torch.tensor([-1.0, 1.0])
    W2 = torch.tensor([[1.0, -1.0]])
    circuit = decode((W1, b1, W2, torch.tensor([-0.5])))
    assert circuit.clauses == [((0, True), (1, True))] and circuit.channels == [[0]]


def test_decode_neuron_that_can_never_fire_carries_no_clause():
    # neuron 1 is excited by x2 (weight 0.5) but its bias -1 keeps it silent: peak 0
    W1 = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.5]])
    b1 = torch.tensor([-1.0, -1.0])
    W2 = torch.tensor([[1.0, 1.0]])
    circuit = decode((W1, b1, W2, torch.tensor([-0.5])))
    assert circuit.clauses == [((0, True), (1, True))]
    circuit = decode((W1, torch.tensor([-1.0, 0.0]), W2, torch.tensor([-0.5])))
    assert circuit.clauses == [((0, True), (1, True)), ((2, True),)]


def test_decode_bad_input():
    W1, b1, W2, b2 = planted_dnf(DNF_CLAUSES, DNF_N)
    with pytest.raises(ValueError, match="W2"):
        decode((W1, b1, W2[:, :2], b2))
    with pytest.raises(ValueError, match="b1"):
        decode((W1, b1[:2], W2, b2))
    with pytest.raises(ValueError, match="tuple"):
        decode((W1, b1))
    H = W1.shape[0]
    with pytest.raises(ValueError, match="decode reads one hidden layer; FakeModel has 2 hidden layers"):
        decode(FakeModel([(W1, b1), (torch.eye(H), torch.zeros(H)), (W2, b2)]))
    with pytest.raises(ValueError, match="the shapes do not chain"):
        decode(FakeModel([(W1, b1), (W2, b2), (W2, b2)]))
    with pytest.raises(ValueError, match="similarity"):
        decode((W1, b1, W2, b2), similarity=0.0)
    circuit = decode((W1, b1, W2, b2))
    with pytest.raises(ValueError, match="shape"):
        circuit.evaluate(torch.zeros(4, DNF_N + 1))
    with pytest.raises(ValueError, match="0/1"):
        circuit.evaluate(torch.full((4, DNF_N), 0.5))
    with pytest.raises(ValueError, match="shape"):
        circuit_agreement(circuit, torch.zeros(4, 2), torch.zeros(4, DNF_N))


def test_clause_recovery_matching_rule():
    true = [((0, True), (1, True), (2, True)), ((3, True), (4, False)), ((5, True),)]
    # exact, one flipped literal (Jaccard 2/4 = 0.5, matches), and a stray clause
    dec = [((3, True), (4, False)), ((0, True), (1, True), (2, False)), ((7, True), (8, True))]
    r = clause_recovery(dec, true)
    assert r["n_matched"] == 2 and r["n_exact"] == 1
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3)
    assert sorted(m[:2] for m in r["matches"]) == [(0, 1), (1, 0)]
    strict = clause_recovery(dec, true, min_jaccard=0.6)
    assert strict["n_matched"] == 1
    assert clause_recovery([], [])["f1"] == 1.0
    assert clause_recovery([], true)["recall"] == 0.0
    with pytest.raises(ValueError, match="empty"):
        clause_recovery([()], true)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.3, 0.5, 0.8, 1.0]))
def test_literal_grouping_matches_dense_average_linkage(seed, similarity):
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    from fci.codes.static import _group_literals

    rng = np.random.default_rng(seed)
    H, m = 12, 9
    E = rng.random((H, m)) < 0.3
    E[rng.integers(0, H, size=m), np.arange(m)] = True  # non-empty sets
    E[:, 1] = E[:, 0]  # a guaranteed identical pair
    labels = _group_literals(E, similarity)
    dist = np.round(pdist(E.T, "jaccard"), 12)  # equal ratios tie exactly, as in _group_literals
    ref = fcluster(linkage(dist, "average"), t=1 - similarity + 1e-9, criterion="distance")

    def partition(lab):
        return sorted(sorted(np.flatnonzero(lab == v).tolist()) for v in np.unique(lab))

    assert partition(labels) == partition(ref)
    assert labels[0] == labels[1]


def test_the_boolean_spellings_of_relative_still_work_but_warn():
    W = torch.tensor([[1.0, -0.2, 0.6], [0.1, 0.9, -0.7]])
    with pytest.warns(DeprecationWarning, match="relative=True is deprecated and will be removed in fci 0.3; pass relative='neuron'"):
        old = sign_codes(W, threshold=0.5, relative=True)
    assert torch.equal(old, sign_codes(W, threshold=0.5, relative="neuron"))
    with pytest.warns(DeprecationWarning, match="pass relative='absolute'"):
        assert torch.equal(sign_codes(W, threshold=0.5, relative=False), sign_codes(W, threshold=0.5, relative="absolute"))
    with pytest.raises(ValueError, match="relative must be 'neuron', 'global' or 'absolute', got 'per-neuron'"):
        sign_codes(W, relative="per-neuron")
