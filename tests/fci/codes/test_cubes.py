"""Cubes and their unions (`fci.codes.cubes`): exact counts against enumeration, and a sound
lower bound when the count is cut short."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fci.codes.bounds import FREE
from fci.codes.cubes import contained, cube_share, to_clauses, to_cubes, union_share


def enumerate_union(C: np.ndarray, n: int) -> float:
    X = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
    hit = np.zeros(2 ** n, dtype=bool)
    for c in C:
        hit |= ((c == FREE) | (X == c)).all(axis=1)
    return float(hit.mean())


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), n=st.integers(1, 10), T=st.integers(0, 12), p_free=st.floats(0.2, 0.8))
def test_union_share_is_exact_against_enumeration(seed, n, T, p_free):
    rng = np.random.default_rng(seed)
    C = rng.integers(0, 2, size=(T, n)).astype(np.int8)
    C[rng.random((T, n)) < p_free] = FREE
    share, exact = union_share(C)
    assert exact
    assert abs(share - enumerate_union(C, n)) < 1e-12


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), budget=st.integers(0, 3))
def test_a_count_cut_short_is_a_lower_bound_and_says_so(seed, budget):
    rng = np.random.default_rng(seed)
    n = 9
    C = rng.integers(0, 2, size=(10, n)).astype(np.int8)
    C[rng.random((10, n)) < 0.6] = FREE
    share, exact = union_share(C, budget=budget)
    truth = enumerate_union(C, n)
    assert share <= truth + 1e-12
    if exact:
        assert abs(share - truth) < 1e-12


def test_disjoint_clauses_count_as_independent_events():
    # 8 disjoint 3-literal clauses over 24 inputs: 1 - (7/8)**8, without enumerating 2**24 inputs
    clauses = [tuple((3 * c + j, bool((c + j) % 2)) for j in range(3)) for c in range(8)]
    share, exact = union_share(to_cubes(clauses, 24))
    assert exact and abs(share - (1 - (7 / 8) ** 8)) < 1e-12


def test_cubes_and_clauses_round_trip_and_containment():
    clauses = [((0, True), (2, False)), ((1, True),), ()]
    cubes = to_cubes(clauses, 4)
    assert to_clauses(cubes) == clauses
    np.testing.assert_allclose(cube_share(cubes), [0.25, 0.5, 1.0])
    # (x0 ∧ ¬x2 ∧ x3) lies inside (x0 ∧ ¬x2) and inside ⊤; (x1) lies inside ⊤ only
    probe = to_cubes([((0, True), (2, False), (3, True)), ((1, True),)], 4)
    assert contained(probe, cubes[:1]).tolist() == [True, False]
    assert contained(probe, cubes[2:]).tolist() == [True, True]
