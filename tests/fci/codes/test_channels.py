"""Channels, collisions and the ceiling of CNF clauses (SPEC §5, *Feature channel of a
CNF clause*), on a hand-built network that computes a CNF exactly; channels read as a
code (distinct and private channels, the Johnson bound) on hand-built weights."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fci.codes import (
    channel_code,
    true_formula_agreement,
    channel_graph,
    channel_membership,
    clause_channels,
    clause_table,
    code_bound,
    collision_graph,
    collision_matrix,
    network_predictions,
    polysemanticity,
    readout_votes,
    split_view,
)
from fci.tasks import BooleanTask, falsifying_terms


def _cnf_network(task: BooleanTask, shared: tuple[int, int] | None = None):
    """One neuron per clause, h_c = relu(1 - Σ_j l_cj) (1 exactly when clause c is
    false), and per output y_o = [1/2 - Σ_{c in group o} h_c > 0]: the smallest exact
    CNF network. `shared=(a, b)` adds a neuron inhibited by every literal of clauses a
    and b, silenced by its bias so the function is unchanged: a known collision."""
    n = task.n_vars
    rows, bias = [], []
    for clause in task.clauses:
        w = np.zeros(n)
        for v, positive in clause:
            w[v] = -1.0 if positive else 1.0  # -l_j as a function of x_v
        rows.append(w)
        bias.append(1.0 - sum(1 for _, positive in clause if not positive))
    if shared is not None:
        w = rows[shared[0]] + rows[shared[1]]
        rows.append(w)
        bias.append(-10.0)  # never fires; its codes are what the test reads
    W1, b1 = np.array(rows), np.array(bias)
    W2 = np.zeros((task.n_outputs, len(rows)))
    for o, group in enumerate(task.groups):
        W2[o, list(group)] = -1.0
    b2 = np.full(task.n_outputs, 0.5)
    return W1, b1, W2, b2


def _all_inputs(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


@pytest.mark.parametrize("outputs", ["dnf", "clauses", [[0, 1], [2, 3], [1]]], ids=["formula", "clauses", "groups"])
def test_cnf_network_channels_are_the_neurons_its_literals_inhibit(outputs):
    task = BooleanTask.generate(n_clauses=4, clause_size=3, n_vars=13, outputs=outputs, form="cnf", seed=2)
    assert {s for c in task.clauses for _, s in c} == {True, False}
    W1, b1, W2, b2 = _cnf_network(task)
    x = _all_inputs(task.n_vars)
    y_net = network_predictions((W1, b1, W2, b2), x)
    np.testing.assert_array_equal(y_net, task.evaluate(x))  # the network computes the CNF exactly
    assert clause_channels(W1, task.clauses, form="cnf") == [[0], [1], [2], [3]]
    assert clause_channels(W1, task.clauses) == [[], [], [], []]  # no literal excites anything
    assert clause_channels(W1, falsifying_terms(task.clauses)) == [[0], [1], [2], [3]]  # the duality
    np.testing.assert_array_equal(collision_matrix(W1, task.clauses, form="cnf"), np.eye(4, dtype=np.int64))
    expected_votes = np.zeros((4, task.n_outputs), dtype=np.int64)
    for o, group in enumerate(task.groups):
        expected_votes[list(group), o] = 1
    channels = clause_channels(W1, task.clauses, form="cnf")
    np.testing.assert_array_equal(readout_votes(W2, channels, form="cnf"), expected_votes)
    assert readout_votes(W2, channels).sum() == 0  # no neuron raises an output
    assert true_formula_agreement(task.clauses, y_net, x, task.groups, form="cnf") == 1.0
    assert true_formula_agreement(task.clauses, y_net, x, task.groups) < 0.9  # read as a DNF it is wrong


def test_cnf_collisions_polysemanticity_and_table():
    task = BooleanTask.generate(n_clauses=3, clause_size=2, n_vars=7, outputs="dnf", form="cnf", seed=1)
    W1, b1, W2, b2 = _cnf_network(task, shared=(0, 2))  # neuron 3 sits in clauses 0 and 2
    assert clause_channels(W1, task.clauses, form="cnf") == [[0, 3], [1], [2, 3]]
    expected = np.array([[2, 0, 1], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(collision_matrix(W1, task.clauses, form="cnf"), expected)
    np.testing.assert_array_equal(polysemanticity(W1, task.clauses, form="cnf"), [1, 1, 1, 2])
    A = channel_membership(W1, task.clauses, form="cnf")
    assert A.shape == (4, 3) and A.sum() == 5
    g = collision_graph(W1, task.clauses, form="cnf")
    assert sorted(g.edges) == [(0, 2)] and g.nodes[0]["label"].count("∨") == 1
    rows = clause_table(W1, W2, task.clauses, b1=b1, form="cnf")
    assert [r["channel"] for r in rows] == [[0, 3], [1], [2, 3]]
    assert [r["readout"] for r in rows] == [[0], [0], [0]]  # each channel's clause neuron votes against y0
    assert [r["collisions"] for r in rows] == [[2], [], [0]]
    assert "∨" in rows[0]["literals"] and "∧" not in rows[0]["literals"]
    graph = channel_graph(W1, W2, task.clauses, b1=b1, form="cnf")
    assert graph.nodes["h3"]["clauses"] == [0, 2]


def test_cnf_split_view_reads_cnf_channels():
    task = BooleanTask.generate(n_clauses=2, clause_size=2, n_vars=4, form="cnf", seed=0)
    W1, *_ = _cnf_network(task)
    child = np.repeat(W1, 2, axis=0)  # alpha = 2, both children keep the parent's row
    child[1] = 0.0  # parent 0's second child lost its weights
    views = split_view(W1, child, np.arange(4) // 2, task.clauses, form="cnf")
    assert [v.parent_channel for v in views] == [[0], [1]]
    assert [v.child_channel for v in views] == [[0], [2, 3]]
    assert views[0].label.count("∨") == 1


def test_bad_form_is_refused_in_one_line():
    task = BooleanTask.generate(n_clauses=2, clause_size=2, form="cnf", seed=0)
    W1, b1, W2, b2 = _cnf_network(task)
    for call in (lambda: clause_channels(W1, task.clauses, form="and"),
                 lambda: readout_votes(W2, [[0], [1]], form="and"),
                 lambda: true_formula_agreement(task.clauses, np.zeros((3, 1)), np.zeros((3, 4)), form="and")):
        with pytest.raises(ValueError, match=r"^form must be one of \('dnf', 'cnf'\), got 'and'$"):
            call()


# --------------------------------------------------------------------------- channels read as a code


def _code_network() -> tuple[np.ndarray, list]:
    """Four disjoint positive clauses of 3 variables (clause c on variables 3c..3c+2).
    Unit 0 is excited by clause 0 alone; unit 1 by clauses 1 and 2; unit 2 by clause 1;
    unit 3 is inhibited by every literal of clause 3."""
    clauses = [tuple((3 * c + j, True) for j in range(3)) for c in range(4)]
    W1 = np.zeros((4, 12))
    W1[0, 0:3] = 1.0
    W1[1, 3:9] = 1.0
    W1[2, 3:6] = 1.0
    W1[3, 9:12] = -1.0
    return W1, clauses


def test_channel_code_names_distinct_and_private_channels():
    W1, clauses = _code_network()
    code = channel_code(W1, clauses, threshold=0.5)
    np.testing.assert_array_equal(code.sizes, [1, 2, 1, 0])
    assert code.overlap[1, 2] == code.overlap[2, 1] == 1 and code.overlap[0, 1] == 0
    # clause 2's channel {1} lies inside clause 1's {1, 2}: not distinct; clause 3 has none
    assert code.distinct.tolist() == [True, True, False, False]
    assert code.private.tolist() == [True, False, False, False]
    assert (code.n_channels, code.n_distinct, code.n_private, code.median_size, code.max_overlap) == (3, 2, 1, 1.0, 1)
    both = channel_code(W1, clauses, threshold=0.5, orientation="both")  # unit 3 is clause 3's inhibited channel
    np.testing.assert_array_equal(both.sizes, [1, 2, 1, 1])
    assert both.private.tolist() == [True, False, False, True] and both.orientation == "both"
    cnf = channel_code(W1, clauses, threshold=0.5, form="cnf")  # read as OR clauses: only inhibited units count
    np.testing.assert_array_equal(cnf.sizes, [0, 0, 0, 1])
    np.testing.assert_array_equal(channel_code(W1, clauses, threshold=0.5, form="cnf", orientation="both").sizes, both.sizes)
    assert channel_code(W1[[0, 0]], clauses[:1], threshold=0.5).n_private == 1  # one clause, two units: private
    assert math.isnan(channel_code(np.zeros((2, 12)), clauses, threshold=0.5).median_size)
    with pytest.raises(ValueError, match="orientation"):
        channel_code(W1, clauses, orientation="sideways")


def test_two_identical_channels_are_neither_distinct_nor_private():
    _, clauses = _code_network()
    W1 = np.zeros((3, 12))
    W1[0, 0:3] = 1.0  # clause 0 alone
    W1[1:3, 3:9] = 1.0  # units 1 and 2 both hold clauses 1 and 2: one channel {1, 2} for two clauses
    code = channel_code(W1, clauses, threshold=0.5)
    np.testing.assert_array_equal(code.sizes, [1, 2, 2, 0])
    assert code.distinct.tolist() == [True, False, False, False] and code.private.tolist() == [True, False, False, False]
    assert code.max_overlap == 2


def _max_packing(units: int, size: int, overlap: int) -> int:
    """The largest family of size-subsets of range(units) pairwise sharing <= overlap (brute force)."""
    import networkx as nx

    subsets = list(itertools.combinations(range(units), size))
    g = nx.Graph()
    g.add_nodes_from(range(len(subsets)))
    g.add_edges_from((i, j) for i, j in itertools.combinations(range(len(subsets)), 2)
                     if len(set(subsets[i]) & set(subsets[j])) <= overlap)
    return max(len(c) for c in nx.find_cliques(g))


def test_code_bound_worked_by_hand():
    assert [code_bound(h, 3, 1) for h in (4, 8, 16, 32, 64)] == [1, 8, 37, 160, 661]  # floor(h/3 floor((h-1)/2))
    assert [code_bound(h, 1, 0) for h in (1, 4, 64)] == [1, 4, 64]  # one unit per channel: the width
    assert code_bound(17, 3, 0) == 5 and code_bound(2, 3, 0) == 0  # disjoint: floor(U/m)
    assert code_bound(10, 3, 2) == math.comb(10, 3) and code_bound(9, 4, 3) == math.comb(9, 4)  # every m-subset
    for bad in ((-1, 3, 1), (8, 0, 0), (8, 3, 3), (8.0, 3, 1), (True, 3, 1)):
        with pytest.raises(ValueError):
            code_bound(*bad)


@pytest.mark.parametrize("units,size,overlap", [(6, 3, 1), (7, 3, 1), (7, 3, 0), (6, 2, 0), (5, 3, 2)])
def test_code_bound_bounds_the_largest_packing(units, size, overlap):
    best = _max_packing(units, size, overlap)
    assert best <= code_bound(units, size, overlap)
    if (units, size, overlap) == (7, 3, 1):
        assert best == code_bound(7, 3, 1) == 7  # the Fano plane meets the bound
