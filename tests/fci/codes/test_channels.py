"""Channels, collisions and the ceiling of CNF clauses (SPEC §5, *Feature channel of a
CNF clause*), on a hand-built network that computes a CNF exactly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fci.codes import (
    true_formula_agreement,
    channel_graph,
    channel_membership,
    clause_channels,
    clause_table,
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
