"""Sound bounds over cubes (`fci.codes.bounds`): never above the network's least logit on a
cube, equal to the logit on a single input, tight where the maths says they are exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fci.codes.bounds import FREE, OutputBounds, activation_range
from fci.codes.network import ACTIVATIONS, read_network

ACTS = ["relu", "leaky_relu:0.1", "leaky_relu:-0.3", "identity", "tanh", "sigmoid", "gelu", "silu", "softplus", "elu"]


def all_inputs(n: int) -> np.ndarray:
    return ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def random_net(rng: np.random.Generator, n: int, hidden: list[int], outputs: int, act: str, scale: float = 1.5):
    sizes = [n, *hidden, outputs]
    ws = []
    for i in range(len(sizes) - 1):
        ws += [rng.normal(size=(sizes[i + 1], sizes[i])) * scale, rng.normal(size=sizes[i + 1])]
    return read_network(ws, activation=act)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), act=st.sampled_from(ACTS), depth=st.integers(1, 3),
       n=st.integers(1, 7), patterns=st.integers(0, 3))
def test_lower_bounds_never_exceed_the_least_logit_on_a_cube(seed, act, depth, n, patterns):
    rng = np.random.default_rng(seed)
    net = random_net(rng, n, [int(rng.integers(1, 6)) for _ in range(depth)], 2, act)
    X = all_inputs(n)
    L = net.logits(X)
    cubes = rng.integers(-1, 2, size=(24, n)).astype(np.int8)
    for o in range(2):
        for sign in (1, -1):
            b = OutputBounds(net, o, sign, patterns=patterns, sweeps=2)
            lb, g, infl = b.lower(cubes)
            up = b.upper(cubes)
            assert g.shape == infl.shape == cubes.shape and (infl >= 0).all()
            for m, c in enumerate(cubes):
                inside = ((c == FREE) | (X == c)).all(axis=1)
                vals = sign * L[inside, o]
                assert vals.min() >= lb[m] - 1e-9
                assert vals.min() >= b.interval(c[None])[0] - 1e-9
                assert vals.max() <= up[m] + 1e-9


@pytest.mark.parametrize("act", ACTS)
def test_on_a_single_input_the_bound_is_the_logit(act):
    rng = np.random.default_rng(4)
    net = random_net(rng, 6, [5, 4], 1, act)
    X = all_inputs(6)
    lb, _, _ = OutputBounds(net, 0).lower(X.astype(np.int8))
    np.testing.assert_allclose(lb, net.logits(X)[:, 0], atol=1e-9)


@pytest.mark.parametrize("name,z_star", [("gelu", -0.7517915), ("silu", -1.2784645)])
def test_gelu_and_silu_reach_their_minimum_inside_an_interval(name, z_star):
    net = read_network([np.ones((1, 1)), np.zeros(1), np.ones((1, 1)), np.zeros(1)], activation=name)
    lo, hi = np.array([-3.0, -0.5, -3.0]), np.array([1.0, 2.0, -2.0])
    a_lo, a_hi = activation_range(net, 0, lo, hi)
    f = ACTIVATIONS[name]
    assert a_lo[0] == pytest.approx(float(f(np.array([z_star]))[0]), abs=1e-7)  # the minimiser lies inside
    assert a_lo[1] == pytest.approx(float(f(np.array([-0.5]))[0]))  # both ends right of it: the left end
    assert a_lo[2] == pytest.approx(float(f(np.array([-2.0]))[0]))  # both ends left of it: the right end
    grid = np.linspace(lo, hi, 20001)
    np.testing.assert_array_less(a_lo - 1e-9, f(grid).min(axis=0))
    np.testing.assert_allclose(a_hi, f(grid).max(axis=0))


def test_inhibitors_are_split_exactly_where_intervals_and_chords_are_loose():
    """Two AND neurons on x0 ∧ x1, one exciting (+1) and one inhibiting (-1), cancel: the
    logit is 0.5 everywhere. Intervals take the exciter at its least and the inhibitor at
    its most (0.5 - 1 < 0); enumerating the inhibitor's on/off choice proves 0.5."""
    W1 = np.array([[1.0, 1.0], [1.0, 1.0]])
    b1 = np.array([-1.0, -1.0])
    net = read_network([W1, b1, np.array([[1.0, -1.0]]), np.array([0.5])])
    root = np.full((1, 2), FREE, dtype=np.int8)
    assert OutputBounds(net, 0).interval(root)[0] == pytest.approx(-0.5)
    assert OutputBounds(net, 0, patterns=0).lower(root)[0][0] < 0.5 - 1e-6  # the chord alone is loose
    assert OutputBounds(net, 0, patterns=1).lower(root)[0][0] == pytest.approx(0.5)


def test_sign_must_be_plus_or_minus_one():
    net = random_net(np.random.default_rng(0), 3, [2], 1, "relu")
    with pytest.raises(ValueError, match="sign must be 1 or -1"):
        OutputBounds(net, 0, sign=0)
