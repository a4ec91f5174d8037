"""What a one-hidden-layer network computes, read as an OR of short terms per output.

:func:`decode_function` (SPEC §5) complements the
static :func:`fci.codes.decode`: instead of reading channels from sign codes it asks
the network. Candidate terms (conjunctions of at most ``max_literals`` literals)
come from each neuron's strongest weights; the decoder draws its own inputs
(uniform, then inputs that plant the terms found so far), evaluates the network on
them, and selects per output the OR of terms that agrees best with it. It never sees
a task's data, labels or clauses.

Literals are numbered ``l = v`` for ``x_v`` and ``l = n + v`` for ``¬x_v``; a term is
a row of literal ids sorted by variable, padded with ``2n``.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import numpy as np

from fci.codes.circuit import DecodedCircuit, _unpack_weights
from fci.metrics import Clause

log = logging.getLogger(__name__)

_CHUNK = 8192  # network rows per forward chunk
_PLANT_CHUNK = 16  # terms per chunk when planting terms into precision samples


# --------------------------------------------------------------------------- validation


def _int_arg(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        allowed = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- the network


class _Net:
    """Forward pass of ``relu(x W1ᵀ + b1) W2ᵀ + b2 > 0`` on 0/1 inputs, in chunks."""

    def __init__(self, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray):
        dt = np.result_type(W1.dtype, W2.dtype, np.float32)
        self.W1, self.b1 = W1.astype(dt), b1.astype(dt)
        self.W2, self.b2 = W2.astype(dt), b2.astype(dt)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """X (N, n) bool -> (N, O) bool predictions."""
        out = np.empty((X.shape[0], self.W2.shape[0]), dtype=bool)
        for s in range(0, X.shape[0], _CHUNK):
            h = np.maximum(X[s: s + _CHUNK].astype(self.W1.dtype) @ self.W1.T + self.b1, 0)  # (c, H)
            out[s: s + _CHUNK] = h @ self.W2.T + self.b2 > 0
        return out


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
        out = self.table[terms[:, 0]].copy()
        for j in range(1, terms.shape[1]):
            out &= self.table[terms[:, j]]
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


def _neuron_terms(W1: np.ndarray, top: int, k: int) -> np.ndarray:
    """Candidate terms from each neuron's weights: every conjunction of 1..k of its
    ``top`` strongest exciting literals (those that raise its pre-activation), and the
    same of its strongest inhibiting literals. (M, k) literal ids."""
    H, n = W1.shape
    pad = 2 * n
    L = np.concatenate([W1, -W1], axis=1)  # (H, 2n): x_v true raises i by W1[i,v]; ¬x_v by -W1[i,v]
    m = min(top, n)
    if H == 0 or m == 0:
        return np.zeros((0, k), dtype=np.int64)
    combos = [c + (-1,) * (k - len(c)) for r in range(1, k + 1) for c in itertools.combinations(range(m), r)]
    C = np.array(combos, dtype=np.int64)  # (Q, k), -1 = unused slot
    out = []
    for direction in (1.0, -1.0):
        S = direction * L
        idx = np.argsort(-S, axis=1, kind="stable")[:, :m]  # (H, m) strongest first
        lits = np.where(np.take_along_axis(S, idx, axis=1) > 0, idx, pad)  # only literals that push that way
        lits = np.concatenate([lits, np.full((H, 1), pad, dtype=np.int64)], axis=1)  # slot -1 -> pad
        out.append(lits[:, C].reshape(-1, k))  # (H * Q, k)
    return _canonical(np.concatenate(out), n)


def _best_extensions(terms: np.ndarray, T: np.ndarray, bits: _Bits, ybits: np.ndarray, nbits: np.ndarray,
                     keep: int) -> np.ndarray:
    """For each term (G, k) with truth bits T (G, words), its ``keep`` one-literal
    extensions of largest FOIL gain for the output (ybits / nbits), computed from the
    literal bit rows without building every extension's truth first. (G', k)."""
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


def _to_clause(term: np.ndarray, n: int) -> Clause:
    return tuple((int(l % n), bool(l < n)) for l in term if l != 2 * n)


# --------------------------------------------------------------------------- selection


def _select(T: np.ndarray, ybits: np.ndarray, nbits: np.ndarray, min_gain: float,
            shortlist: int = 2048) -> tuple[list[int], bool, np.ndarray]:
    """Choose an OR of candidate terms that agrees with the network on the pool.

    T (M, words): candidate truth bits; ybits / nbits: the pool's network positives /
    negatives. Sequential covering: each step takes, among the terms that raise the
    pool agreement by more than ``min_gain`` samples, the one of largest FOIL gain
    ``p · (log2 prec - log2 base)`` on the still-uncovered samples (``prec``
    Laplace-smoothed), which prefers precise terms over broad ones; then terms that no
    longer pay for themselves are dropped. The constant ⊤ replaces the OR when it
    agrees at least as well. The search runs over the ``shortlist`` candidates of
    largest FOIL gain on the whole pool. Returns (the OR's candidate rows, whether
    the constant ⊤ replaces it, FOIL gain of every candidate on the whole pool); the
    OR is returned even when ⊤ wins, so that its terms can be planted."""
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
        gain = p - q
        score = np.where(gain > min_gain, _foil(p, q, P_unc, N_unc), -np.inf)
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
    cov = np.zeros_like(ybits)
    for c in chosen:
        cov |= T[c]
    P_unc, N_unc = int(_popcount(ybits & ~cov)), int(_popcount(nbits & ~cov))
    # ⊤ agrees on P_all samples, the OR on P_all - P_unc + N_unc: ⊤ wins ties (simpler)
    constant = P_all > 0 and P_unc - N_unc >= -min_gain
    return [int(short[c]) for c in chosen], constant, foil_all


def _cover(T: np.ndarray, chosen: list[int], like: np.ndarray) -> np.ndarray:
    cov = np.zeros_like(like)
    for c in chosen:
        cov |= T[c]
    return cov


def _local_search(T: np.ndarray, chosen: list[int], ybits: np.ndarray, nbits: np.ndarray, min_gain: float,
                  passes: int = 4) -> list[int]:
    """Improve the pool agreement of an OR of terms by single moves: add the best
    term, or replace (or drop) a chosen term by the candidate that gains most over
    the samples the other chosen terms leave uncovered; each move must gain more
    than ``min_gain`` samples. Stops at the first sweep without a move, or after
    ``passes`` sweeps."""
    chosen = list(chosen)
    for _ in range(passes):
        moved = False
        # add
        free = ~_cover(T, chosen, ybits)
        U = T & free
        gain = _popcount(U & ybits) - _popcount(U & nbits)
        c = int(np.argmax(gain)) if len(gain) else 0
        if len(gain) and gain[c] > min_gain and c not in chosen:
            chosen.append(c)
            moved = True
        # replace or drop
        j = 0
        while j < len(chosen):
            others = chosen[:j] + chosen[j + 1:]
            U = T & ~_cover(T, others, ybits)
            gain = _popcount(U & ybits) - _popcount(U & nbits)  # (M,) each candidate in chosen[j]'s place
            current = int(gain[chosen[j]])
            c = int(np.argmax(gain))
            if gain[c] > current + min_gain and c not in others:
                chosen[j] = c
                moved = True
            elif current < -min_gain:  # dropping it (gain 0) is better
                chosen.pop(j)
                moved = True
                continue
            j += 1
        if not moved:
            break
    return chosen


def _foil(p: np.ndarray, q: np.ndarray, P: int, N: int) -> np.ndarray:
    base = max(P, 1) / max(P + N, 1)
    return p * (np.log2((p + 1) / (p + q + 2)) - math.log2(base))


def _prune(T: np.ndarray, chosen: list[int], ybits: np.ndarray, nbits: np.ndarray) -> list[int]:
    """Drop, worst first, chosen terms whose samples covered by no other chosen term
    hold at least as many network negatives as positives."""
    chosen = list(chosen)
    while chosen:
        once = np.zeros_like(ybits)
        twice = np.zeros_like(ybits)
        for c in chosen:
            twice |= once & T[c]
            once |= T[c]
        only = once & ~twice
        worth = [int(_popcount(T[c] & only & ybits)) - int(_popcount(T[c] & only & nbits)) for c in chosen]
        j = int(np.argmin(worth))
        if worth[j] > 0:
            break
        chosen.pop(j)
    return chosen


# --------------------------------------------------------------------------- inputs


def _uniform(rng: np.random.Generator, N: int, n: int) -> np.ndarray:
    return rng.random((N, n)) < 0.5


def _all_inputs(n: int) -> np.ndarray:
    """(2^n, n) bool, every input once."""
    codes = np.arange(2 ** n, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n - 1, -1, -1)) & 1).astype(bool)


def _plant(rng: np.random.Generator, terms: np.ndarray, N: int, n: int) -> np.ndarray:
    """N inputs in which each of ``terms`` (F, k) is planted (its literals set true)
    independently with probability ``1 - 2**(-1/F)``, so that half the inputs plant
    none, as the task sampler plants clauses (SPEC §1, shared layout): the other
    inputs start uniform, a term not planted but true by chance gets one random
    literal falsified, then the planted terms are set (later plants win conflicts)."""
    X = _uniform(rng, N, n)
    F = len(terms)
    if F == 0:
        return X
    q = 1.0 - 2.0 ** (-1.0 / F)
    planted = rng.random((N, F)) < q
    for f in range(F):  # a term not planted but true by chance gets one random literal falsified
        lits = terms[f][terms[f] != 2 * n]
        var, val = lits % n, lits < n
        hit = np.flatnonzero(~planted[:, f] & (X[:, var] == val).all(axis=1))
        pick = var[rng.integers(0, len(var), size=len(hit))]
        X[hit, pick] = ~X[hit, pick]
    for f in range(F):
        rows = np.flatnonzero(planted[:, f])
        for l in terms[f]:
            if l != 2 * n:
                X[rows, l % n] = l < n
    return X


# --------------------------------------------------------------------------- precision and certificates


def _term_value_table(W1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per literal l (rows 0..2n, row 2n padding = 0): its variable's column of W1
    times the literal's value (``fixed``), and what fixing it removes from the free
    lower / upper pre-activation sums (``lo`` / ``hi``). Shapes (2n + 1, H)."""
    H = W1.shape[0]
    WT = W1.T  # (n, H)
    zero = np.zeros((1, H), dtype=W1.dtype)
    fixed = np.concatenate([WT, np.zeros_like(WT), zero])  # x_v = 1 adds W1[:, v]; ¬x_v (x_v = 0) adds 0
    mn, mx = np.minimum(WT, 0), np.maximum(WT, 0)
    lo = np.concatenate([mn, mn, zero])
    hi = np.concatenate([mx, mx, zero])
    return fixed, lo, hi


def _certify(terms: np.ndarray, W1, b1, W2, b2) -> np.ndarray:
    """(D, O) bool: interval bounds prove output o is 1 on every input where term d
    holds. Free variables range over {0, 1}; each neuron's pre-activation interval
    goes through the ReLU, and the logit's lower bound takes each neuron at the end
    of its interval that hurts most."""
    fixed, lo_t, hi_t = _term_value_table(W1)
    base_lo = b1 + np.minimum(W1, 0).sum(axis=1)  # (H,)
    base_hi = b1 + np.maximum(W1, 0).sum(axis=1)
    lo = base_lo + (fixed[terms] - lo_t[terms]).sum(axis=1)  # (D, H)
    hi = base_hi + (fixed[terms] - hi_t[terms]).sum(axis=1)
    a_lo, a_hi = np.maximum(lo, 0), np.maximum(hi, 0)
    Wp, Wm = np.maximum(W2, 0), np.minimum(W2, 0)  # (O, H)
    bound = a_lo @ Wp.T + a_hi @ Wm.T + b2  # (D, O)
    return bound > 0


def _planted_precision(net: _Net, terms: np.ndarray, X0: np.ndarray) -> np.ndarray:
    """(D, O): fraction of inputs with output 1 when each term is planted into the
    uniform inputs X0 (S, n). Only the term's columns change, so each term costs an
    (S, H) update of the shared pre-activations, not a forward pass."""
    W1, b1, W2, b2 = net.W1, net.b1, net.W2, net.b2
    n = W1.shape[1]
    P0 = X0.astype(W1.dtype) @ W1.T + b1  # (S, H)
    out = np.zeros((len(terms), W2.shape[0]))
    Xe = np.concatenate([X0, np.zeros((X0.shape[0], 1), dtype=bool)], axis=1)  # column n: padding
    for s in range(0, len(terms), _PLANT_CHUNK):
        t = terms[s: s + _PLANT_CHUNK]  # (c, k)
        var = np.where(t == 2 * n, n, t % n)  # (c, k)
        val = (t < n).astype(W1.dtype)  # (c, k) value the literal sets
        cur = Xe[:, var].astype(W1.dtype)  # (S, c, k) current values
        W1e = np.concatenate([W1, np.zeros((W1.shape[0], 1), dtype=W1.dtype)], axis=1)  # (H, n + 1)
        delta = (val[None] - cur) * (var != n)[None]  # (S, c, k)
        P = P0[:, None, :] + np.einsum("sck,hck->sch", delta, W1e[:, var])  # (S, c, H)
        y = np.maximum(P, 0) @ W2.T + b2 > 0  # (S, c, O)
        out[s: s + len(t)] = y.mean(axis=0)
    return out


# --------------------------------------------------------------------------- the decoder


def decode_function(
    model_or_weights: Any,
    max_literals: int = 3,
    seed: int = 0,
    *,
    n_samples: int = 4096,
    rounds: int = 4,
    top_literals: int = 8,
    extend: int = 32,
    exact_vars: int = 14,
    min_gain: float = 1e-3,
    precision_samples: int = 2048,
) -> DecodedCircuit:
    """What a one-hidden-layer network computes: per output, an OR of conjunctions of
    at most ``max_literals`` literals, read from the weights and from inputs the
    decoder draws itself (never a task's data, labels or clauses).

    ``model_or_weights``: a model with ``effective_weights()`` or a ``(W1, b1, W2, b2)``
    tuple; W1 (H, n), W2 (O, H).

    1. **Inputs.** ``n_samples`` uniform inputs (every input once when
       ``n <= exact_vars``: then the selection, precisions and coverage are exact).
       After each of ``rounds`` rounds, ``n_samples`` more inputs in which the terms
       found so far are planted (each with probability ``1 - 2**(-1/F)``, F terms, so
       half the inputs hold none), so the terms are tested against each other.
    2. **Candidates** come from each neuron's weights: every conjunction of up to
       ``max_literals`` of its ``top_literals`` strongest exciting literals, and of its
       strongest inhibiting ones (a literal's weight is ``W1[i, v]`` for ``x_v`` and
       ``-W1[i, v]`` for ``¬x_v``, so negations are treated alike). After each round
       the chosen terms and the ``extend`` best candidates per output are extended by
       every literal, so a term may mix literals of several neurons.
    3. **Selection** per output on the pooled inputs: sequential covering by FOIL
       gain, keeping a term only if it raises agreement with the network by more than
       ``min_gain`` of the pool; then terms that no longer pay for themselves are
       dropped, and the constant ⊤ replaces the OR when it agrees at least as well.
    4. **Report.** Each term's ``precision``: P(output 1 | term) with the other
       inputs uniform (exact when ``n <= exact_vars``, else estimated by planting the
       term into ``precision_samples`` fresh uniform inputs). ``certified``: interval
       bounds over the free inputs (or exact enumeration) prove the output is 1
       wherever the term holds. Per output, on fresh uniform inputs (all inputs when
       exact): ``uncovered`` (fraction of the network's positive inputs no term
       covers), ``positive_rate`` and ``sample_agreement``.

    The result is a function of the weights and ``seed`` alone (the draws use
    ``numpy.random.default_rng(seed)``).
    """
    k = _int_arg("max_literals", max_literals, 1)
    seed = _int_arg("seed", seed, 0)
    n_samples = _int_arg("n_samples", n_samples, 64)
    rounds = _int_arg("rounds", rounds, 0)
    top = _int_arg("top_literals", top_literals, 1)
    extend = _int_arg("extend", extend, 0)
    exact_vars = _int_arg("exact_vars", exact_vars, 0, 24)
    precision_samples = _int_arg("precision_samples", precision_samples, 1)
    if isinstance(min_gain, bool) or not isinstance(min_gain, (int, float)) or not 0 <= min_gain < 1:
        raise ValueError(f"min_gain must be a fraction in [0, 1), got {min_gain!r}")
    W1, b1, W2, b2 = _unpack_weights(model_or_weights, reader="decode_function")
    n = W1.shape[1]
    O = W2.shape[0]
    if n == 0:
        raise ValueError("W1 must have at least one input column (n >= 1)")
    k = min(k, n)
    net = _Net(W1, b1, W2, b2)
    rng = np.random.default_rng(seed)
    exact = n <= exact_vars
    pad = 2 * n

    X = _all_inputs(n) if exact else _uniform(rng, n_samples, n)
    Y = net(X)
    cands = _neuron_terms(W1, top, k)
    result: list[tuple[list[int], bool]] = []
    for r in range(rounds + 1):
        bits = _Bits(X)
        T = bits.truth(cands) if len(cands) else np.zeros((0, bits.words), dtype=np.uint64)
        length = (cands != pad).sum(axis=1)
        result, grown = [], []
        for o in range(O):
            ybits = bits.pack(Y[:, o])
            nbits = ~ybits & bits.valid
            if len(cands):
                chosen, constant, foil = _select(T, ybits, nbits, min_gain * bits.N)
            else:
                chosen, constant, foil = [], bool(Y[:, o].mean() >= 0.5), np.zeros(0)
            result.append((chosen, constant))
            if r < rounds and extend and len(cands):
                best = np.argsort(-np.where(length < k, foil, -np.inf), kind="stable")[:extend]
                bases = sorted(set(best[length[best] < k].tolist()) | {c for c in chosen if length[c] < k})
                grown.append(_best_extensions(cands[bases], T[bases], bits, ybits, nbits, keep=4))
        if r == rounds:
            break
        found = _canonical(cands[sorted({c for ch, _ in result for c in ch})], n)  # ⊤ outputs' ORs too
        if grown:
            cands = _canonical(np.concatenate([cands] + grown), n)
        if not exact:
            Xp = _plant(rng, found, n_samples, n)
            X, Y = np.concatenate([X, Xp]), np.concatenate([Y, net(Xp)])
        log.debug("decode_function round %d: %d candidates, %d terms", r, len(cands), len(found))

    # Assemble: unique terms across outputs, in candidate order (shortest first).
    result = [([] if constant else ch, constant) for ch, constant in result]
    used = sorted({c for ch, _ in result for c in ch})
    index = {c: d for d, c in enumerate(used)}
    terms = cands[used] if used else np.zeros((0, k), dtype=np.int64)
    readouts: list[list[int]] = [[] for _ in used]
    for o, (ch, _) in enumerate(result):
        for c in ch:
            readouts[index[c]].append(o)

    # Precision and certificates.
    X_eval = X[: 2 ** n] if exact else _uniform(rng, n_samples, n)
    Y_eval = Y[: 2 ** n] if exact else net(X_eval)
    if len(terms):
        if exact:
            eb = _Bits(X_eval)
            Tt = eb.truth(terms)
            prec = np.stack([_popcount(Tt & eb.pack(Y_eval[:, o])) for o in range(O)], axis=1) / np.maximum(
                _popcount(Tt), 1)[:, None]  # (D, O)
            cert = prec >= 1.0
        else:
            prec = _planted_precision(net, terms, _uniform(rng, precision_samples, n))
            cert = _certify(terms, net.W1, net.b1, net.W2, net.b2)
    else:
        prec = np.zeros((0, O))
        cert = np.zeros((0, O), dtype=bool)

    clauses = [_to_clause(t, n) for t in terms]
    default = [const for _, const in result]
    circuit = DecodedCircuit(
        clauses=clauses,
        channels=_proposers(W1, terms, top),
        readouts=readouts,
        votes=[[int(o in r) for o in range(O)] for r in readouts],
        default=default,
        n_vars=n,
        n_outputs=O,
        threshold=None,
        relative=None,
        similarity=None,
        method="function",
        precision=[[float(prec[d, o]) for o in readouts[d]] for d in range(len(clauses))],
        certified=[[bool(cert[d, o]) for o in readouts[d]] for d in range(len(clauses))],
        max_literals=int(max_literals),
        seed=seed,
    )
    y_circ = circuit.evaluate(X_eval.astype(np.float32)) > 0.5  # (S, O)
    covered = y_circ & ~np.asarray(default)[None, :]
    circuit.positive_rate = [float(Y_eval[:, o].mean()) for o in range(O)]
    circuit.uncovered = [float((Y_eval[:, o] & ~covered[:, o]).sum() / max(Y_eval[:, o].sum(), 1)) if not default[o] else 0.0
                         for o in range(O)]
    circuit.sample_agreement = [float((y_circ[:, o] == Y_eval[:, o]).mean()) for o in range(O)]
    return circuit


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
