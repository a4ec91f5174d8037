"""Cubes of the Boolean hypercube and their unions, counted exactly.

A cube (a conjunction of literals, a partial assignment) is an int8 row over the ``n``
inputs holding 1, 0 or ``FREE`` (-1). The certified reader keeps its terms as cubes; this
module says which cubes hold which, turns cubes into clauses and back, and measures a
union of cubes: the share of the ``2**n`` inputs that at least one cube holds.

The count is exact (#DNF by splitting on the most used input, with independent groups of
inputs counted apart) unless it needs more than ``budget`` splits; then it returns a sound
lower bound and says so.
"""

from __future__ import annotations

import numpy as np
from fci.codes.bounds import FREE
from fci.metrics import Clause

__all__ = ["to_cubes", "to_clauses", "contained", "union_share", "cube_share"]


def to_cubes(clauses: list[Clause], n: int) -> np.ndarray:
    """Conjunctions in the task's clause form -> (T, n) int8 cubes."""
    out = np.full((len(clauses), n), FREE, dtype=np.int8)
    for t, clause in enumerate(clauses):
        for v, positive in clause:
            out[t, v] = int(positive)
    return out


def to_clauses(cubes: np.ndarray) -> list[Clause]:
    """(T, n) cubes -> conjunctions ``((var, positive), ...)`` ordered by variable."""
    return [tuple((int(v), bool(row[v])) for v in np.flatnonzero(row != FREE)) for row in cubes]


def _pack(cubes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask, value) bit rows of cubes (M, n) -> each (M, words) uint64: bit v set in
    ``mask`` where input v is fixed, in ``value`` where it is fixed to 1."""
    M, n = cubes.shape
    words = -(-n // 64)
    out = []
    for bits in (cubes != FREE, cubes == 1):
        b = np.zeros((M, 8 * words), dtype=np.uint8)
        b[:, : -(-n // 8)] = np.packbits(bits, axis=1, bitorder="little")
        out.append(b.view(np.uint64))
    return out[0], out[1]


def contained(cubes: np.ndarray, terms: np.ndarray, chunk: int = 512) -> np.ndarray:
    """(M,) bool: cube m lies inside some term (every literal of the term is in the cube)."""
    out = np.zeros(len(cubes), dtype=bool)
    if not len(terms) or not len(cubes):
        return out
    cm, cv = _pack(cubes)  # (M, w)
    tm, tv = _pack(terms)  # (T, w)
    for s in range(0, len(terms), chunk):
        m, v = tm[None, s: s + chunk], tv[None, s: s + chunk]  # (1, t, w)
        inside = ((cm[:, None] & m) == m) & ((cv[:, None] & m) == v)  # (M, t, w)
        out |= inside.all(axis=2).any(axis=1)
    return out


def cube_share(cubes: np.ndarray) -> np.ndarray:
    """(M,) the share of all inputs each cube holds: 2**-(fixed inputs)."""
    return np.exp2(-(cubes != FREE).sum(axis=1).astype(np.float64))


def union_share(cubes: np.ndarray, budget: int = 200_000) -> tuple[float, bool]:
    """(share, exact): the share of inputs that at least one cube holds, exactly unless
    counting needs more than ``budget`` splits (then a sound lower bound, ``exact`` False)."""
    cubes = np.asarray(cubes, dtype=np.int8)
    counter = _Counter(budget)
    share = counter.count(cubes)
    return share, not counter.short


def _groups(fixed: np.ndarray) -> np.ndarray:
    """(R,) a label per cube such that cubes of different labels fix disjoint inputs
    (connected components of the cube-input incidence; every input is fixed by some cube)."""
    m = fixed.shape[1]
    lab = np.arange(m)
    while True:
        row = np.where(fixed, lab, m).min(axis=1)  # (R,) smallest label among a cube's inputs
        new = np.minimum(lab, np.where(fixed, row[:, None], m).min(axis=0))
        if (new == lab).all():
            return row
        lab = new


class _Counter:
    def __init__(self, budget: int):
        self.left = budget
        self.short = False
        self.memo: dict[tuple[bytes, int], float] = {}

    def count(self, C: np.ndarray) -> float:
        if not len(C):
            return 0.0
        fixed = C != FREE
        if (~fixed).all(axis=1).any():  # a cube with no literal holds everything
            return 1.0
        used = fixed.any(axis=0)
        if not used.all():  # inputs no cube fixes do not matter
            C, fixed = C[:, used], fixed[:, used]
        size = fixed.sum(axis=1)
        if len(C) == 1:
            return float(np.exp2(-size[0]))
        if len(C) == 2:  # inclusion-exclusion
            meet = 0.0 if ((C[0] != C[1]) & fixed[0] & fixed[1]).any() else float(np.exp2(-(fixed[0] | fixed[1]).sum()))
            return float(np.exp2(-size[0]) + np.exp2(-size[1])) - meet
        key = (C.tobytes(), C.shape[1])
        if key in self.memo:
            return self.memo[key]
        if self.left <= 0:  # out of budget: the largest cube is a sound lower bound
            self.short = True
            return float(np.exp2(-size.min()))
        self.left -= 1
        label = _groups(fixed)
        groups = np.unique(label)
        if len(groups) > 1:  # independent groups of inputs: the chances that none holds multiply
            none = 1.0
            for gl in groups:
                none *= 1.0 - self.count(C[label == gl])
            out = 1.0 - none
        else:
            v = int(np.argmax(fixed.sum(axis=0)))
            out = 0.0
            for val in (0, 1):
                keep = (C[:, v] == FREE) | (C[:, v] == val)
                out += 0.5 * self.count(np.delete(C[keep], v, axis=1))
        self.memo[key] = out
        return out
