"""What a network computes, read per output as a DNF or a CNF of short terms.

:func:`decode_function` (SPEC §5) complements the static :func:`fci.codes.decode`:
instead of reading channels from sign codes it asks the network. It accepts any
network :func:`fci.codes.network.read_network` reads with ``whole=True`` (dense
layers of any depth and elementwise activation, or a module evaluated through its
own forward) and evaluates it whole. Candidate terms come from the first layer's
weights and from the network's own responses (single literals grown one literal at
a time where the network agrees); the decoder draws inputs from a stated input
model (uniform, or the unlabeled inputs the caller passes), evaluates the network
on them, and selects per output the OR of terms that agrees best with it — for the
output itself (a DNF) and for its negation (whose terms, negated, are the clauses of
a CNF). It never sees a task's labels or clauses.

Literals are numbered ``l = v`` for ``x_v`` and ``l = n + v`` for ``¬x_v``; a term is
a row of literal ids sorted by variable, padded with ``2n``.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fci.codes.circuit import DecodedCircuit
from fci.codes.network import Network, Readable, activation_valley, read_network
from fci.metrics import Clause, _to_numpy

__all__ = ["decode_function", "AUTO_MAX_LITERALS", "PRECISION_BOUND", "UNCOVERED_BOUND", "AGREEMENT_BOUND"]

log = logging.getLogger(__name__)

#: The longest terms ``max_literals="auto"`` tries.
AUTO_MAX_LITERALS = 6
#: A reading warns when an output's terms have a mean precision below this ...
PRECISION_BOUND = 0.9
#: ... or leave more than this share of the network's outputs they explain (its 1s for a DNF, 0s for a CNF) ...
UNCOVERED_BOUND = 0.1
#: ... or when it agrees with the network on less than this share of the inputs.
AGREEMENT_BOUND = 0.9
#: "auto" takes a longer term length only if it raises the agreement by more than this.
LENGTH_GAIN = 0.002

_FORMS = ("dnf", "cnf")
_PATIENCE = 2  # rounds a longer term length gets to beat the kept one
_AUTO_FIRST = 3  # "auto" starts here: shorter terms are candidates too, and a clause's pairs read no better than its literals
_COMBO_LITERALS = 3  # candidates from neuron weights have at most this many literals; longer ones grow
_GIVEN_ROWS = 4  # the search reads at most this many times n_samples of the given rows; agreements use them all
_CHUNK = 8192  # network rows per forward chunk
_PLANT_CHUNK = 16  # terms per chunk when planting terms into precision samples


# --------------------------------------------------------------------------- validation


def _int_arg(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        allowed = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


def _given_inputs(inputs: Any, n: int) -> np.ndarray:
    """``inputs`` as an (N, n) bool array, or ValueError in one line: unlabeled 0/1
    input rows only (never labels, clauses or (x, y) pairs)."""
    if isinstance(inputs, (tuple, list)) and inputs and not np.isscalar(inputs[0]) and len(inputs) == 2 \
            and any(hasattr(a, "shape") for a in inputs):
        raise ValueError(f"inputs must be one (N, n={n}) 0/1 array of input rows, got a pair: pass x alone, never labels")
    try:
        a = _to_numpy(inputs, "inputs")
    except ValueError:
        raise ValueError(f"inputs must be an (N, n={n}) 0/1 array of input rows (never labels or clauses), "
                         f"got {type(inputs).__name__}") from None
    if a.dtype == object or a.ndim != 2 or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"inputs must be an (N, n={n}) 0/1 array of input rows (never labels or clauses), "
                         f"got shape {tuple(a.shape)}")
    if a.shape[1] != n:
        extra = " (a column more than the network's inputs: labels? pass x alone)" if a.shape[1] == n + 1 else ""
        raise ValueError(f"inputs must have n={n} columns, one per network input, got shape {tuple(a.shape)}{extra}")
    if a.shape[0] == 0:
        raise ValueError("inputs holds no rows")
    if not ((a == 0) | (a == 1)).all():
        raise ValueError("inputs must hold only 0/1 values (unlabeled input rows)")
    return a.astype(bool)


# --------------------------------------------------------------------------- the network


class _Model:
    """The network as the decoder uses it: predictions on 0/1 inputs, its first layer
    (candidate terms), term precisions by planting, and certificates where its layers
    are known."""

    def __init__(self, net: Readable):
        self.net = net
        self.W1, self.b1 = net.first_layer
        self.n, self.O = net.n_in, net.n_out
        self.dense = isinstance(net, Network)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """X (N, n) bool -> (N, O) bool predictions (logit > 0)."""
        out = np.empty((X.shape[0], self.O), dtype=bool)
        for s in range(0, X.shape[0], _CHUNK):
            out[s: s + _CHUNK] = self.net.logits(X[s: s + _CHUNK]) > 0
        return out

    def _after_first(self, P: np.ndarray) -> np.ndarray:
        """Logits from first-layer pre-activations P (..., H) of a dense network."""
        assert isinstance(self.net, Network)
        h = P
        for l, (W, b) in enumerate(self.net.layers[1:]):
            h = self.net.activation(l)(h) @ W.T + b
        return h

    def planted(self, terms: np.ndarray, X0: np.ndarray) -> np.ndarray:
        """(D, O): the share of the inputs X0 (S, n) with output 1 when each term (D, k)
        is planted (its literals set). For dense layers only the term's columns
        change, so each term costs an (S, H) update of the shared first-layer
        pre-activations, not a forward pass."""
        n = self.n
        out = np.zeros((len(terms), self.O))
        if not self.dense:
            for d, t in enumerate(terms):
                lits = t[t != 2 * n]
                X = X0.copy()
                X[:, lits % n] = lits < n
                out[d] = self(X).mean(axis=0)
            return out
        W1 = self.W1
        P0 = X0.astype(np.float64) @ W1.T + self.b1  # (S, H)
        W1e = np.concatenate([W1, np.zeros((W1.shape[0], 1))], axis=1)  # (H, n + 1), column n: padding
        Xe = np.concatenate([X0, np.zeros((X0.shape[0], 1), dtype=bool)], axis=1)
        for s in range(0, len(terms), _PLANT_CHUNK):
            t = terms[s: s + _PLANT_CHUNK]  # (c, k)
            var = np.where(t == 2 * n, n, t % n)  # (c, k)
            val = (t < n).astype(np.float64)  # (c, k) the value each literal sets
            delta = (val[None] - Xe[:, var]) * (var != n)[None]  # (S, c, k)
            P = P0[:, None, :] + np.einsum("sck,hck->sch", delta, W1e[:, var])  # (S, c, H)
            out[s: s + len(t)] = (self._after_first(P) > 0).mean(axis=0)
        return out

    def bounds(self, terms: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Interval bounds (lo, hi), each (D, O), on the logits over every input where
        term d holds (free inputs range over {0, 1}); None for a module fci evaluates
        only through its forward. Each layer's pre-activation interval goes through
        its activation (a non-monotone one at its valley) and the next layer takes
        each unit at the end of its interval that bounds the sum."""
        if not isinstance(self.net, Network):
            return None
        W1, b1 = self.W1, self.b1
        WT = W1.T  # (n, H)
        zero = np.zeros((1, W1.shape[0]))
        fixed = np.concatenate([WT, np.zeros_like(WT), zero])  # x_v = 1 adds W1[:, v]; ¬x_v (x_v = 0) adds 0
        mn, mx = np.minimum(WT, 0), np.maximum(WT, 0)
        free_lo = np.concatenate([mn, mn, zero])  # what fixing the literal's variable removes from the free sums
        free_hi = np.concatenate([mx, mx, zero])
        lo = b1 + np.minimum(W1, 0).sum(axis=1) + (fixed[terms] - free_lo[terms]).sum(axis=1)  # (D, H)
        hi = b1 + np.maximum(W1, 0).sum(axis=1) + (fixed[terms] - free_hi[terms]).sum(axis=1)
        for l, (W, b) in enumerate(self.net.layers[1:]):
            f, valley = self.net.activation(l), activation_valley(self.net.activations[l])
            f_lo, f_hi = f(lo), f(hi)
            a_lo, a_hi = np.minimum(f_lo, f_hi), np.maximum(f_lo, f_hi)
            if valley is not None:
                a_lo = np.where((lo <= valley) & (valley <= hi), f(np.full(1, valley))[0], a_lo)
            Wp, Wm = np.maximum(W, 0), np.minimum(W, 0)
            lo, hi = a_lo @ Wp.T + a_hi @ Wm.T + b, a_hi @ Wp.T + a_lo @ Wm.T + b
        return lo, hi


# --------------------------------------------------------------------------- the input model


class _Inputs:
    """The stated input distribution: uniform over {0,1}^n (every input once when
    ``n <= exact_vars``) or the rows the caller gave."""

    def __init__(self, n: int, given: np.ndarray | None, exact_vars: int, n_samples: int, rng: np.random.Generator):
        self.n, self.given, self.n_samples, self.rng = n, given, n_samples, rng
        self.exact = given is None and n <= exact_vars
        self.name = "uniform" if given is None else f"given inputs (N={len(given)})"

    def draw(self, N: int) -> np.ndarray:
        """N fresh draws (N, n) bool."""
        if self.given is None:
            return self.rng.random((N, self.n)) < 0.5
        return self.given[self.rng.integers(0, len(self.given), size=N)]

    def search(self) -> np.ndarray:
        """The first search inputs: every input, the given rows (at most
        ``_GIVEN_ROWS * n_samples`` of them, drawn without replacement), or fresh draws."""
        if self.exact:
            return _all_inputs(self.n)
        if self.given is None:
            return self.draw(self.n_samples)
        cap = _GIVEN_ROWS * self.n_samples
        return self.given if len(self.given) <= cap else self.given[np.sort(self.rng.choice(len(self.given), cap, replace=False))]

    def evaluation(self, search: np.ndarray) -> np.ndarray:
        """The inputs agreements are measured on: every input (exact), the given rows,
        or fresh uniform draws (not the ones searched)."""
        if self.exact:
            return search[: 2 ** self.n]
        return self.given if self.given is not None else self.draw(self.n_samples)


def _all_inputs(n: int) -> np.ndarray:
    """(2^n, n) bool, every input once."""
    codes = np.arange(2 ** n, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n - 1, -1, -1)) & 1).astype(bool)


# --------------------------------------------------------------------------- bit tables


def _popcount(a: np.ndarray) -> np.ndarray:
    """Set bits along the last axis of a uint64 array."""
    return np.bitwise_count(a).sum(axis=-1, dtype=np.int64)


class _Bits:
    """Samples X (N, n) as bit rows: one row of N bits per literal (plus an all-ones
    padding row), so a term's truth on every sample is an AND of <= k rows."""

    def __init__(self, X: np.ndarray):
        N, n = X.shape
        self.N, self.n = N, n
        self.words = max(1, -(-N // 64))
        self.valid = self.pack(np.ones(N, dtype=bool))
        table = np.empty((2 * n + 1, self.words), dtype=np.uint64)
        table[:n] = self._pack_rows(X.T)
        table[n: 2 * n] = ~table[:n] & self.valid
        table[2 * n] = self.valid
        self.table = table

    def _pack_rows(self, rows: np.ndarray) -> np.ndarray:
        """(R, N) bool -> (R, words) uint64, bit j of sample j, tail bits 0."""
        b = np.packbits(rows, axis=1, bitorder="little")
        pad = self.words * 8 - b.shape[1]
        if pad:
            b = np.concatenate([b, np.zeros((b.shape[0], pad), dtype=np.uint8)], axis=1)
        return np.ascontiguousarray(b).view(np.uint64)

    def pack(self, y: np.ndarray) -> np.ndarray:
        """(N,) bool -> (words,) uint64."""
        return self._pack_rows(y[None, :])[0]

    def truth(self, terms: np.ndarray) -> np.ndarray:
        """(M, k) literal ids -> (M, words) uint64 truth bits."""
        if not len(terms):
            return np.zeros((0, self.words), dtype=np.uint64)
        out = self.table[terms[:, 0]]
        longer = np.flatnonzero(terms[:, 1] != 2 * self.n) if terms.shape[1] > 1 else np.zeros(0, dtype=np.int64)
        for j in range(1, terms.shape[1]):
            longer = longer[terms[longer, j] != 2 * self.n]  # rows sorted by variable: padding comes last
            out[longer] &= self.table[terms[longer, j]]
        return out


# --------------------------------------------------------------------------- terms


def _canonical(terms: np.ndarray, n: int) -> np.ndarray:
    """Rows sorted by variable (padding last), duplicates and empty rows removed,
    ordered by length then lexicographically (so ties prefer shorter terms)."""
    if terms.size == 0:
        return terms.reshape(0, terms.shape[1] if terms.ndim == 2 else 1)
    pad = 2 * n
    key = np.where(terms == pad, 2 * n + 1, terms % n)
    terms = np.take_along_axis(terms, np.argsort(key, axis=1, kind="stable"), axis=1)
    terms = terms[(terms != pad).any(axis=1)]
    if not len(terms):
        return terms
    terms = np.unique(terms, axis=0)
    length = (terms != pad).sum(axis=1)
    order = np.lexsort(tuple(terms[:, j] for j in range(terms.shape[1] - 1, -1, -1)) + (length,))
    return terms[order]


def _neuron_terms(W1: np.ndarray, top: int, k: int, width: int | None = None) -> np.ndarray:
    """Candidate terms from each neuron's weights: every conjunction of 1..k of its
    ``top`` strongest exciting literals (those that raise its pre-activation), and the
    same of its strongest inhibiting literals. (M, width) literal ids (width >= k)."""
    H, n = W1.shape
    width = k if width is None else width
    pad = 2 * n
    L = np.concatenate([W1, -W1], axis=1)  # (H, 2n): x_v true raises i by W1[i,v]; ¬x_v by -W1[i,v]
    m = min(top, n)
    if H == 0 or m == 0 or k == 0:
        return np.zeros((0, width), dtype=np.int64)
    combos = [c + (-1,) * (width - len(c)) for r in range(1, k + 1) for c in itertools.combinations(range(m), r)]
    C = np.array(combos, dtype=np.int64)  # (Q, width), -1 = unused slot
    out = []
    for direction in (1.0, -1.0):
        S = direction * L
        idx = np.argsort(-S, axis=1, kind="stable")[:, :m]  # (H, m) strongest first
        lits = np.where(np.take_along_axis(S, idx, axis=1) > 0, idx, pad)  # only literals that push that way
        lits = np.concatenate([lits, np.full((H, 1), pad, dtype=np.int64)], axis=1)  # slot -1 -> pad
        out.append(lits[:, C].reshape(-1, width))  # (H * Q, width)
    return _canonical(np.concatenate(out), n)


def _singles(n: int, width: int) -> np.ndarray:
    """Every literal as a one-literal term: (2n, width)."""
    out = np.full((2 * n, width), 2 * n, dtype=np.int64)
    out[:, 0] = np.arange(2 * n)
    return out


def _best_extensions(terms: np.ndarray, T: np.ndarray, bits: _Bits, ybits: np.ndarray, nbits: np.ndarray,
                     keep: int) -> np.ndarray:
    """For each term (G, width) with truth bits T (G, words), its ``keep`` one-literal
    extensions of largest FOIL gain for the target (ybits / nbits), computed from the
    literal bit rows without building every extension's truth first. (G', width)."""
    n = bits.n
    pad = 2 * n
    P, N = int(_popcount(ybits)), int(_popcount(nbits))
    lit = bits.table[:pad]  # (2n, words)
    out = []
    for t, tb in zip(terms, T):
        if not (t == pad).any():
            continue
        U = lit & tb
        score = _foil(_popcount(U & ybits).astype(np.float64), _popcount(U & nbits).astype(np.float64), P, N)
        used = t[t != pad] % n
        score[np.concatenate([used, used + n])] = -np.inf
        best = np.argsort(-score, kind="stable")[:keep]
        best = best[np.isfinite(score[best])]
        ext = np.repeat(t[None, :], len(best), axis=0)
        ext[:, np.argmax(t == pad)] = best
        out.append(ext)
    return np.concatenate(out) if out else np.zeros((0, terms.shape[1]), dtype=np.int64)


def _to_clause(term: np.ndarray, n: int, negate: bool = False) -> Clause:
    """A term's literals as ``(var, positive)`` pairs (negated for a CNF clause)."""
    return tuple((int(l % n), bool(l < n) != negate) for l in term if l != 2 * n)


# --------------------------------------------------------------------------- selection


def _foil(p: np.ndarray, q: np.ndarray, P: int, N: int) -> np.ndarray:
    base = max(P, 1) / max(P + N, 1)
    return p * (np.log2((p + 1) / (p + q + 2)) - math.log2(base))


def _gain(T: np.ndarray, mask: np.ndarray, ybits: np.ndarray, nbits: np.ndarray) -> np.ndarray:
    """(M,) per candidate: target positives minus negatives it covers within ``mask``."""
    return _popcount(T & (mask & ybits)) - _popcount(T & (mask & nbits))


def _select(T: np.ndarray, ybits: np.ndarray, nbits: np.ndarray, min_gain: float,
            shortlist: int = 2048) -> tuple[list[int], bool, np.ndarray]:
    """Choose an OR of candidate terms that agrees with the target on the pool.

    T (M, words): candidate truth bits; ybits / nbits: the pool's target positives /
    negatives. Sequential covering: each step takes, among the terms that raise the
    pool agreement by more than ``min_gain`` samples, the one of largest FOIL gain
    ``p · (log2 prec - log2 base)`` on the still-uncovered samples (``prec``
    Laplace-smoothed), which prefers precise terms over broad ones; then terms that no
    longer pay for themselves are dropped, and a local search adds, replaces or drops
    single terms. The constant ⊤ replaces the OR when it agrees at least as well. The
    search runs over the ``shortlist`` candidates of largest FOIL gain on the whole
    pool. Returns (the OR's candidate rows, whether the constant ⊤ replaces it, FOIL
    gain of every candidate on the whole pool); the OR is returned even when ⊤ wins,
    so that its terms can be extended."""
    P_all, N_all = int(_popcount(ybits)), int(_popcount(nbits))
    p = _popcount(T & ybits).astype(np.float64)  # (M,)
    q = _popcount(T & nbits).astype(np.float64)
    foil_all = _foil(p, q, P_all, N_all)
    short = np.sort(np.argsort(-foil_all, kind="stable")[:shortlist])  # candidate order kept: shorter first
    T, p, q = T[short], p[short], q[short]
    chosen: list[int] = []
    cov = np.zeros_like(ybits)
    P_unc, N_unc = P_all, N_all
    while P_unc > 0:
        score = np.where(p - q > min_gain, _foil(p, q, P_unc, N_unc), -np.inf)
        c = int(np.argmax(score))
        if not np.isfinite(score[c]):
            break
        chosen.append(c)
        new = T[c] & ~cov
        cov |= new
        dp, dq = _popcount(T & (new & ybits)), _popcount(T & (new & nbits))
        p -= dp
        q -= dq
        P_unc, N_unc = P_unc - int(dp[c]), N_unc - int(dq[c])
    chosen = _local_search(T, _prune(T, chosen, ybits, nbits), ybits, nbits, min_gain)
    cov = _cover(T, chosen, ybits)
    P_unc, N_unc = int(_popcount(ybits & ~cov)), int(_popcount(nbits & cov))
    # ⊤ agrees on P_all samples, the OR on P_all - P_unc + N_all - N_cov: ⊤ wins ties (simpler)
    constant = P_all > 0 and P_unc - (N_all - N_unc) >= -min_gain
    return [int(short[c]) for c in chosen], constant, foil_all


def _cover(T: np.ndarray, chosen: list[int], like: np.ndarray) -> np.ndarray:
    cov = np.zeros_like(like)
    for c in chosen:
        cov |= T[c]
    return cov


def _counts(T: np.ndarray, chosen: list[int], like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples covered by at least one / at least two chosen terms."""
    once, twice = np.zeros_like(like), np.zeros_like(like)
    for c in chosen:
        twice |= once & T[c]
        once |= T[c]
    return once, twice


def _local_search(T: np.ndarray, chosen: list[int], ybits: np.ndarray, nbits: np.ndarray, min_gain: float,
                  passes: int = 4) -> list[int]:
    """Improve the pool agreement of an OR of terms by single moves: add the best
    term, or replace (or drop) a chosen term by the candidate that gains most over
    the samples the other chosen terms leave uncovered; each move must gain more
    than ``min_gain`` samples. Stops at the first sweep without a move, or after
    ``passes`` sweeps.

    A candidate c in chosen term j's place gains ``free[c] + only_j[c]``: what it
    covers where no chosen term does, plus what it covers where j alone does. The
    first is one pass for all j; the second is bounded by j's target positives there,
    so it is computed only for the candidates that bound lets win."""
    chosen = list(chosen)
    for _ in range(passes):
        moved = False
        once, twice = _counts(T, chosen, ybits)
        free = _gain(T, ~once, ybits, nbits)  # (M,)
        c = int(np.argmax(free)) if len(free) else 0
        if len(free) and free[c] > min_gain and c not in chosen:
            chosen.append(c)
            moved = True
            once, twice = _counts(T, chosen, ybits)
            free = _gain(T, ~once, ybits, nbits)
        j = 0
        while j < len(chosen):
            only = T[chosen[j]] & ~twice  # samples chosen[j] alone covers
            current = int(_popcount(only & ybits)) - int(_popcount(only & nbits))
            if current < -min_gain:  # dropping it (gain 0) is better
                chosen.pop(j)
                moved = True
                once, twice = _counts(T, chosen, ybits)
                free = _gain(T, ~once, ybits, nbits)
                continue
            reach = free + int(_popcount(only & ybits))  # an upper bound on each candidate's gain in j's place
            maybe = np.flatnonzero(reach > current + min_gain)
            if len(maybe):
                g = free[maybe] + _gain(T[maybe], only, ybits, nbits)
                best = int(np.argmax(g))
                c = int(maybe[best])
                if g[best] > current + min_gain and c not in chosen:
                    chosen[j] = c
                    moved = True
                    once, twice = _counts(T, chosen, ybits)
                    free = _gain(T, ~once, ybits, nbits)
            j += 1
        if not moved:
            break
    return chosen


def _prune(T: np.ndarray, chosen: list[int], ybits: np.ndarray, nbits: np.ndarray) -> list[int]:
    """Drop, worst first, chosen terms whose samples covered by no other chosen term
    hold at least as many target negatives as positives."""
    chosen = list(chosen)
    while chosen:
        once, twice = _counts(T, chosen, ybits)
        only = once & ~twice
        worth = [int(_popcount(T[c] & only & ybits)) - int(_popcount(T[c] & only & nbits)) for c in chosen]
        j = int(np.argmin(worth))
        if worth[j] > 0:
            break
        chosen.pop(j)
    return chosen


# --------------------------------------------------------------------------- the search


class _Reading:
    """One output read in one form at one term length: the chosen terms (rows of
    literal ids; for a CNF, the terms of the output's negation), whether the form's
    constant replaces them, and the agreement with the network on the evaluation
    inputs."""

    def __init__(self, terms: np.ndarray, constant: bool, agreement: float, length: int, n: int):
        self.terms, self.constant, self.agreement, self.length = terms, constant, agreement, length
        self.literals = 0 if constant else int((terms != 2 * n).sum())

    def better_than(self, other: _Reading | None, tol: float = 0.0) -> bool:
        """More faithful by more than ``tol``, or as faithful and shorter."""
        if other is None:
            return True
        if abs(self.agreement - other.agreement) <= tol:
            return self.literals < other.literals
        return self.agreement > other.agreement


def _agreement(eval_bits: _Bits, terms: np.ndarray, constant: bool, target: np.ndarray) -> float:
    """Share of the evaluation inputs where the OR of ``terms`` (or the constant ⊤)
    equals ``target`` (N,) bool."""
    if constant:
        return float(target.mean())
    covered = _unpack(_cover(eval_bits.truth(terms), list(range(len(terms))), eval_bits.valid), eval_bits.N)
    return float((covered == target).mean())


def _unpack(bits: np.ndarray, N: int) -> np.ndarray:
    """(words,) uint64 -> (N,) bool."""
    return np.unpackbits(bits.view(np.uint8), bitorder="little")[:N].astype(bool)


class _Search:
    """The decoder's search: inputs pooled over rounds, candidate terms, and the best
    reading found per (output, form)."""

    def __init__(self, model: _Model, inputs: _Inputs, forms: tuple[str, ...], width: int, top: int, extend: int,
                 min_gain: float):
        self.model, self.inputs, self.forms = model, inputs, forms
        self.n, self.O = model.n, model.O
        self.width, self.top, self.extend, self.min_gain = width, top, extend, min_gain
        self.X = inputs.search()
        self.Y = model(self.X)
        self.Xe = inputs.evaluation(self.X)
        same = self.Xe is self.X or (inputs.exact and len(self.Xe) == len(self.X))  # evaluated on the search inputs
        self.Ye = self.Y if same else model(self.Xe)
        self.eval_bits = _Bits(self.Xe)
        self.cands = _singles(self.n, width)
        self.combo = 0
        self.best: dict[tuple[int, str, int], _Reading] = {}  # (output, form, length) -> best reading

    def add_combos(self, k: int) -> None:
        """Neuron-weight candidates up to length ``min(k, 3)``."""
        k = min(k, _COMBO_LITERALS)
        if k > self.combo:
            self.cands = _canonical(np.concatenate([self.cands, _neuron_terms(self.model.W1, self.top, k, self.width)]),
                                    self.n)
            self.combo = k

    def step(self, plans: list[tuple[str, int]], grow: dict[tuple[str, int], int], draw: bool = True) \
            -> dict[tuple[str, int], float]:
        """One round: per output and plan (form, longest term), select on the pool and
        keep the best reading; extend the best candidates of the plans in ``grow`` (up
        to the length it maps them to); draw ``n_samples`` more pool inputs from a
        uniform input model. Returns each plan's mean agreement over outputs."""
        n, pad = self.n, 2 * self.n
        bits = _Bits(self.X)
        length = (self.cands != pad).sum(axis=1)
        kmax = max(k for _, k in plans)
        cands = self.cands[length <= kmax]
        T, length = bits.truth(cands), length[length <= kmax]
        grown, means = [], {}
        for f, k in plans:
            elig = np.flatnonzero(length <= k)
            Tf = T if len(elig) == len(T) else T[elig]
            agreements = []
            for o in range(self.O):
                target = self.Y[:, o] if f == "dnf" else ~self.Y[:, o]
                ybits = bits.pack(target)
                nbits = ~ybits & bits.valid
                chosen, constant, foil = _select(Tf, ybits, nbits, self.min_gain * bits.N)
                terms = cands[elig[chosen]]
                target_e = self.Ye[:, o] if f == "dnf" else ~self.Ye[:, o]
                a = _agreement(self.eval_bits, terms, constant, target_e)
                if not constant and target_e.mean() >= a:  # the form's constant is as faithful on the input model
                    constant, a = True, float(target_e.mean())
                r = _Reading(terms, constant, a, k, n)
                agreements.append(r.agreement)
                if r.better_than(self.best.get((o, f, k))):
                    self.best[(o, f, k)] = r
                g = grow.get((f, k), 0)
                if self.extend and g:
                    short = length[elig] < g
                    ranked = np.argsort(-np.where(short, foil, -np.inf), kind="stable")[: self.extend]
                    bases = sorted(set(ranked[short[ranked]].tolist()) | {c for c in chosen if short[c]})
                    grown.append(_best_extensions(cands[elig[bases]], Tf[bases], bits, ybits, nbits, keep=4))
            means[(f, k)] = float(np.mean(agreements))
        if grown:
            self.cands = _canonical(np.concatenate([self.cands] + grown), n)
        if draw and not self.inputs.exact and self.inputs.given is None:
            fresh = self.inputs.draw(self.inputs.n_samples)
            self.X, self.Y = np.concatenate([self.X, fresh]), np.concatenate([self.Y, self.model(fresh)])
        log.debug("decode_function round %s: %d candidates", plans, len(self.cands))
        return means

    def reading(self, o: int, form: str, k: int) -> _Reading:
        """The best reading of output o in ``form`` with terms of at most k literals."""
        best: _Reading | None = None
        for (o2, f, kk), r in sorted(self.best.items(), key=lambda item: item[0][2]):
            if o2 == o and f == form and kk <= k and r.better_than(best):
                best = r
        assert best is not None
        return best


# --------------------------------------------------------------------------- the decoder


def decode_function(model_or_weights: Any, max_literals: int | str = "auto", seed: int = 0, *, inputs: Any = None,
                    form: str = "auto", activation: str | None = None, n_samples: int = 4096, rounds: int = 4,
                    top_literals: int = 8, extend: int = 32, exact_vars: int = 14, min_gain: float = 1e-3,
                    precision_samples: int = 2048) -> DecodedCircuit:
    """What a network computes: per output, an OR of conjunctions (a DNF) or an AND of
    disjunctions (a CNF) of short terms, read from the network's first-layer weights
    and its answers on inputs the decoder draws itself (never a task's labels or
    clauses).

    ``model_or_weights``: anything :func:`fci.codes.network.read_network` reads with
    ``whole=True``: a ``MaskedMLP`` of any depth, an ``nn.Sequential`` of
    ``nn.Linear`` layers and elementwise activations, a module whose forward uses
    only those (evaluated through it), or a weight list ``(W1, b1, ..., WL, bL)``
    whose hidden activation is ``activation`` (default ``"relu"``: weights cannot
    say, so a Tanh network's list must state ``activation="tanh"``; layers of a deeper
    network glued into a shorter list whose shapes chain by accident cannot be
    detected — pass the module). Outputs are logits: output o is 1 where > 0.

    ``inputs``: the input distribution the reading is faithful to. None (default):
    uniform over ``{0,1}^n`` (every input once when ``n <= exact_vars``: then the
    selection, precisions and agreements are exact). Or an (N, n) 0/1 array of
    unlabeled input rows (e.g. a task's inputs, so that a network is read where it is
    used): the search uses those rows (at most ``4 * n_samples`` of them, drawn
    without replacement) and every agreement all of them; never labels or clauses.
    ``circuit.distribution`` names it, and every agreement on the circuit is
    measured on it.

    ``max_literals``: the longest term, or ``"auto"`` (default): the first round reads
    terms of up to 3 literals (shorter terms are candidates at every length); each
    later round reads the kept length and the next on the same inputs and candidates,
    and the next is kept once it agrees with the network better by more than
    ``LENGTH_GAIN`` (0.2%) on the evaluation inputs; the search stops after two rounds
    in which it does not (longer terms grow over rounds), at agreement 1, or at
    ``AUTO_MAX_LITERALS`` (6). ``circuit.max_literals`` reports the length kept,
    ``circuit.length_search`` each round's agreements. ``form``:
    ``"auto"`` (default) reads each output as a DNF and, through its negation, as a
    CNF, and keeps the form more faithful over all outputs (the one with fewer
    literals when they agree within ``min_gain``); ``"dnf"`` or ``"cnf"`` reads one.

    1. **Inputs.** ``n_samples`` draws from the input model (every input once when
       exact; the given rows), and ``n_samples`` fresh uniform draws more each round.
       The selection is made on these draws alone, so the reading is faithful to
       the stated distribution. With a fixed ``max_literals`` there are ``rounds``
       rounds after the first.
    2. **Candidates**: every single literal; from each first-layer neuron's weights,
       every conjunction of up to 3 of its ``top_literals`` strongest exciting
       literals, and of its strongest inhibiting ones (a literal's weight is
       ``W1[i, v]`` for ``x_v`` and ``-W1[i, v]`` for ``¬x_v``); and after each round
       the chosen terms and the ``extend`` best candidates per output and form,
       extended by the literal that best separates the network's answers, so terms
       grow from the network's responses and may mix literals of several neurons.
    3. **Selection** per output and form on the pooled inputs: sequential covering by
       FOIL gain, keeping a term only if it raises agreement with the network by more
       than ``min_gain`` of the pool; then terms that no longer pay for themselves
       are dropped, a local search adds, replaces or drops single terms, and the
       form's constant replaces the terms when it agrees at least as well.
    4. **Report**, on the evaluation inputs (fresh draws, the given rows, or every
       input): per term, ``precision`` (DNF: P(output 1 | term holds); CNF: P(output
       0 | clause fails), with the term planted into draws from the input model, or
       exact) and ``certified`` (interval bounds through every layer over all inputs
       where the term holds, or exact enumeration, prove it; never for a module
       evaluated through its forward beyond enumeration); per output ``uncovered``,
       ``positive_rate``, ``sample_agreement``, ``dnf_agreement``, ``cnf_agreement``.
       ``circuit.warnings`` (also logged) says, in one line, which outputs are read
       imprecisely and what may help: those whose terms have a mean precision below
       ``PRECISION_BOUND`` (0.9), leave more than ``UNCOVERED_BOUND`` (0.1) of the
       network's outputs they explain uncovered, or agree with the network on less
       than ``AGREEMENT_BOUND`` (0.9) of the inputs.

    The result is a function of the network, the inputs and ``seed`` alone (the
    draws use ``numpy.random.default_rng(seed)``).
    """
    opt = _options(max_literals, seed, form, min_gain, n_samples=n_samples, rounds=rounds, top_literals=top_literals,
                   extend=extend, exact_vars=exact_vars, precision_samples=precision_samples)
    model = _Model(read_network(model_or_weights, activation, whole=True))
    if model.n == 0:
        raise ValueError("the network must have at least one input (n >= 1)")
    given = None if inputs is None else _given_inputs(inputs, model.n)
    k = min(opt.k, model.n)
    draws = _Inputs(model.n, given, opt.exact_vars, opt.n_samples, np.random.default_rng(opt.seed))
    search = _Search(model, draws, _FORMS if opt.form == "auto" else (opt.form,), k, opt.top_literals, opt.extend, opt.min_gain)
    kept, history = _auto_lengths(search, k) if opt.auto else _fixed_length(search, k, opt.rounds)
    return _circuit(search, kept, history, opt.auto, opt.seed, opt.precision_samples, opt.top_literals)


@dataclass(frozen=True)
class _Options:
    """`decode_function`'s options, checked."""

    auto: bool  # max_literals="auto": the length search
    k: int  # the longest term (AUTO_MAX_LITERALS with auto), before the cap at n
    seed: int
    form: str
    min_gain: float
    n_samples: int
    rounds: int
    top_literals: int
    extend: int
    exact_vars: int
    precision_samples: int


def _options(max_literals: int | str, seed: int, form: str, min_gain: float, **sizes: int) -> _Options:
    """The options checked before any work: a bad value is a one-line ValueError naming it."""
    auto = max_literals == "auto"
    k = AUTO_MAX_LITERALS if auto else _int_arg("max_literals", max_literals, 1)
    if isinstance(max_literals, str) and not auto:
        raise ValueError(f"max_literals must be a positive integer or 'auto', got {max_literals!r}")
    seed = _int_arg("seed", seed, 0)
    bounds = {"n_samples": (64, None), "rounds": (0, None), "top_literals": (1, None), "extend": (0, None),
              "exact_vars": (0, 24), "precision_samples": (1, None)}  # in the order they are checked
    checked = {key: _int_arg(key, sizes[key], lo, hi) for key, (lo, hi) in bounds.items()}
    if isinstance(min_gain, bool) or not isinstance(min_gain, (int, float)) or not 0 <= min_gain < 1:
        raise ValueError(f"min_gain must be a fraction in [0, 1), got {min_gain!r}")
    if form not in ("auto",) + _FORMS:
        raise ValueError(f"form must be 'auto', 'dnf' or 'cnf', got {form!r}")
    return _Options(auto=auto, k=k, seed=seed, form=form, min_gain=min_gain, **checked)


def _auto_lengths(search: _Search, k: int) -> tuple[dict[str, int], list[tuple[int, dict[str, float]]]]:
    """max_literals="auto": the term length kept per form (from `_AUTO_FIRST` up to `k`)
    and each round's mean agreements per length."""
    forms = search.forms
    history: list[tuple[int, dict[str, float]]] = []  # (length, form -> mean agreement) per plan and round
    first = min(_AUTO_FIRST, k)
    kept = {f: first for f in forms}
    search.add_combos(first)
    # each round reads the kept length and the next on the same inputs and candidates; the next is kept
    # while it agrees better by more than LENGTH_GAIN (a longer cap also gives the search more to grow)
    active = list(forms)
    plans = [(f, first) for f in forms]
    misses = {f: 0 for f in forms}
    while plans:
        longest = {f: max(kk for f2, kk in plans if f2 == f) for f, _ in plans}
        means = search.step(plans, {(f, kk): kk + 1 for f, kk in longest.items() if kk < k})
        _record(history, means)
        for f in list(active):
            if (f, kept[f] + 1) in means:
                if means[(f, kept[f] + 1)] > means[(f, kept[f])] + LENGTH_GAIN:
                    kept[f], misses[f] = kept[f] + 1, 0
                else:
                    misses[f] += 1  # longer terms grow over rounds: give them _PATIENCE rounds to win
            if misses[f] >= _PATIENCE or means[(f, kept[f])] >= 1.0 or kept[f] >= k:
                active.remove(f)
        plans = [(f, kk) for f in active for kk in (kept[f], kept[f] + 1)]
        if plans:
            search.add_combos(max(kk for _, kk in plans))
    return kept, history


def _fixed_length(search: _Search, k: int, rounds: int) -> tuple[dict[str, int], list[tuple[int, dict[str, float]]]]:
    """A fixed max_literals `k`: `rounds` rounds that draw and grow, then a last
    selection; the length (k per form) and each round's mean agreements."""
    forms = search.forms
    history: list[tuple[int, dict[str, float]]] = []
    search.add_combos(k)
    for r in range(rounds + 1):
        _record(history, search.step([(f, k) for f in forms], {(f, k): k for f in forms} if r < rounds else {},
                                     draw=r < rounds))
    return {f: k for f in forms}, history


def _record(history: list[tuple[int, dict[str, float]]], means: dict[tuple[str, int], float]) -> None:
    """Append one round's mean agreements, one entry per length."""
    for k in sorted({kk for _, kk in means}):
        history.append((k, {f: a for (f, kk), a in means.items() if kk == k}))


def _choose_form(search: _Search, kept: dict[str, int], min_gain: float) -> str:
    """The form whose readings agree best over all outputs; the one with fewer
    literals when they agree within ``min_gain``, a DNF when those tie too."""
    forms = search.forms

    def total(f: str) -> tuple[float, int]:
        rs = [search.reading(o, f, kept[f]) for o in range(search.O)]
        return float(np.mean([r.agreement for r in rs])), sum(r.literals for r in rs)

    chosen = forms[0]
    for f in forms[1:]:
        (a, lits), (a0, lits0) = total(f), total(chosen)
        if a > a0 + min_gain or (abs(a - a0) <= min_gain and lits < lits0):
            chosen = f
    return chosen


def _circuit(search: _Search, kept: dict[str, int], history: list[tuple[int, dict[str, float]]], auto: bool,
             seed: int, precision_samples: int, top: int) -> DecodedCircuit:
    """The circuit of the chosen form, with its precisions, certificates, agreements
    on the evaluation inputs and warnings."""
    model, inputs = search.model, search.inputs
    n, O = search.n, search.O
    form = _choose_form(search, kept, search.min_gain)
    cnf = form == "cnf"
    readings = [search.reading(o, form, kept[form]) for o in range(O)]
    default = [r.constant for r in readings]

    # unique terms across outputs, shortest first, then in the order of their clauses
    rows = [r.terms for r in readings if not r.constant]
    terms = _canonical(np.concatenate(rows), n) if rows else np.zeros((0, search.width), dtype=np.int64)
    terms = terms[sorted(range(len(terms)), key=lambda d: (int((terms[d] != 2 * n).sum()), _to_clause(terms[d], n, cnf)))]
    index = {t.tobytes(): d for d, t in enumerate(terms)}
    readouts: list[list[int]] = [[] for _ in terms]
    for o, r in enumerate(readings):
        if not r.constant:
            for t in _canonical(r.terms, n):
                readouts[index[t.tobytes()]].append(o)

    # precision (of the output's value the term claims) and certificates
    Xe, Ye = search.Xe, search.Ye
    claim = ~Ye if cnf else Ye  # a DNF term claims 1s; a CNF clause fails where it claims 0s
    if len(terms) and inputs.exact:
        eb = search.eval_bits
        Tt = eb.truth(terms)
        hits = np.stack([_popcount(Tt & eb.pack(claim[:, o])) for o in range(O)], axis=1)
        prec = hits / np.maximum(_popcount(Tt), 1)[:, None]  # (D, O)
        cert = prec >= 1.0
    elif len(terms):
        ones = model.planted(terms, inputs.draw(precision_samples))  # (D, O) share of outputs 1
        prec = 1.0 - ones if cnf else ones
        b = model.bounds(terms)
        cert = np.zeros_like(prec, dtype=bool) if b is None else (b[1] <= 0 if cnf else b[0] > 0)
    else:
        prec, cert = np.zeros((0, O)), np.zeros((0, O), dtype=bool)

    circuit = DecodedCircuit.of_terms(
        [_to_clause(t, n, negate=cnf) for t in terms], readouts, n, O,
        channels=_proposers(model.W1, terms, top),
        default=default,
        method="function",
        precision=[[float(prec[d, o]) for o in readouts[d]] for d in range(len(terms))],
        certified=[[bool(cert[d, o]) for o in readouts[d]] for d in range(len(terms))],
        max_literals=kept[form],
        seed=seed,
        form=form,
        distribution=inputs.name,
        dnf_agreement=[search.reading(o, "dnf", kept["dnf"]).agreement if "dnf" in kept else math.nan for o in range(O)],
        cnf_agreement=[search.reading(o, "cnf", kept["cnf"]).agreement if "cnf" in kept else math.nan for o in range(O)],
        length_search=[[float(k), a.get("dnf", math.nan), a.get("cnf", math.nan)] for k, a in history],
    )
    y = circuit.evaluate(Xe) > 0.5  # (S, O)
    eb = search.eval_bits
    circuit.sample_agreement = [float((y[:, o] == Ye[:, o]).mean()) for o in range(O)]
    circuit.positive_rate = [float(Ye[:, o].mean()) for o in range(O)]
    circuit.uncovered = []
    for o, r in enumerate(readings):
        explained = _unpack(_cover(eb.truth(r.terms), list(range(len(r.terms))), eb.valid), eb.N) if len(r.terms) \
            else np.zeros(eb.N, dtype=bool)
        side = claim[:, o]
        circuit.uncovered.append(0.0 if r.constant else float((side & ~explained).sum() / max(side.sum(), 1)))
    circuit.warnings = _warnings(circuit, auto, inputs.given is None) + list(model.net.warnings)
    for w in circuit.warnings:
        log.warning(w)
    return circuit


def _warnings(c: DecodedCircuit, auto: bool, uniform: bool) -> list[str]:
    """One line naming the outputs read imprecisely, why, and what may help (empty
    when every output is read faithfully)."""
    claims = "1" if c.form == "dnf" else "0"
    constant = "⊤" if c.form == "dnf" else "⊥"
    problems = []
    for o in range(c.n_outputs):
        why = []
        prec = [c.precision[d][r.index(o)] for d, r in enumerate(c.readouts) if o in r]
        if c.default[o] or not prec:
            why.append(f"reads as the constant {constant if c.default[o] else _EMPTY[c.form]}")
        elif float(np.mean(prec)) < PRECISION_BOUND:
            why.append(f"mean term precision {np.mean(prec):.2f} < {PRECISION_BOUND}")
        if not c.default[o] and c.uncovered[o] > UNCOVERED_BOUND:
            why.append(f"{c.uncovered[o]:.0%} of its {claims}s unexplained > {UNCOVERED_BOUND:.0%}")
        if c.sample_agreement[o] < AGREEMENT_BOUND:
            why.append(f"agreement {c.sample_agreement[o]:.3f} < {AGREEMENT_BOUND}")
        if why and (len(why) > 1 or not why[0].startswith("reads as")):
            problems.append(f"output {o}: {', '.join(why)}")
    if not problems:
        return []
    shown = "; ".join(problems[:3]) + (f"; … (+{len(problems) - 3} outputs)" if len(problems) > 3 else "")
    remedy = (["longer terms (max_literals='auto')"] if not auto else []) + \
        (["the inputs the network is used on (inputs=)"] if uniform else [])
    hint = f"try {' or '.join(remedy)}" if remedy else "no DNF or CNF of short terms found reads it better: treat it as approximate"
    where = "uniform inputs" if uniform else c.distribution
    return [f"decode_function: the reading is imprecise on {where} ({shown}); {hint}"]


_EMPTY = {"dnf": "⊥", "cnf": "⊤"}


def _proposers(W1: np.ndarray, terms: np.ndarray, top: int) -> list[list[int]]:
    """Per term, the neurons among whose ``top`` strongest exciting or inhibiting
    literals all of the term's literals are."""
    H, n = W1.shape
    if not len(terms) or H == 0:
        return [[] for _ in terms]
    L = np.concatenate([W1, -W1], axis=1)
    m = min(top, n)
    member = np.zeros((H, len(terms)), dtype=bool)
    for direction in (1.0, -1.0):
        S = direction * L
        idx = np.argsort(-S, axis=1, kind="stable")[:, :m]
        ok = np.take_along_axis(S, idx, axis=1) > 0
        hit = np.zeros((H, 2 * n + 1), dtype=bool)
        np.put_along_axis(hit, np.where(ok, idx, 2 * n), True, axis=1)
        hit[:, 2 * n] = True
        all_in = np.ones((H, len(terms)), dtype=bool)
        for j in range(terms.shape[1]):
            all_in &= hit[:, terms[:, j]]
        member |= all_in
    return [np.flatnonzero(member[:, d]).tolist() for d in range(len(terms))]
