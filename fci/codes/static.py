"""The static reading, :func:`decode`: the clauses, channels and readouts the weights code,
from sign codes alone (no activations, no ground truth; SPEC §5, *Static decoding*).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fci.codes import certified as _certified
from fci.codes.channels import _channels_from_membership, _count_matmul, _membership_np
from fci.codes.circuit import DecodedCircuit, _unpack_weights
from fci.codes.signs import Relative, Threshold, _check_rule, _peaks, _readout_signs, _signs
from fci.metrics import Clause

__all__ = ["decode"]


def _group_literals(E: np.ndarray, similarity: float) -> np.ndarray:
    """Cluster labels for the columns of E (H, m) bool (excitation sets, non-empty).

    Average-linkage agglomerative clustering under Jaccard distance, cut so that groups
    merge while their mean pairwise Jaccard similarity is >= ``similarity``; at 1.0 it
    is exactly "identical sets", computed by hashing."""
    m = E.shape[1]
    if m <= 1:
        return np.zeros(m, dtype=np.int64)
    if similarity >= 1.0:
        packed = np.packbits(E.T, axis=1)  # (m, ceil(H/8))
        _, labels = np.unique(packed, axis=0, return_inverse=True)
        return labels.reshape(-1).astype(np.int64)
    from scipy import sparse
    from scipy.cluster.hierarchy import fcluster, linkage

    Es = sparse.csc_matrix(E, dtype=np.float32)  # excitation sets are sparse
    inter = sparse.triu(Es.T @ Es, k=1).tocoo()  # (m, m) shared neurons, pairs a < b
    size = E.sum(axis=0).astype(np.float64)  # (m,)
    a, b = inter.row.astype(np.int64), inter.col.astype(np.int64)
    jac = inter.data / (size[a] + size[b] - inter.data)
    # Condensed distance vector (scipy order: pairs (a, b), a < b, row by row).
    dist = np.ones(m * (m - 1) // 2, dtype=np.float64)
    # Rounded so that equal Jaccard ratios tie exactly: ties then break in scipy's
    # fixed order instead of by rounding noise.
    dist[m * a - a * (a + 1) // 2 + (b - a - 1)] = np.round(1.0 - jac, 12)
    Z = linkage(dist, method="average")
    return fcluster(Z, t=1.0 - similarity + 1e-9, criterion="distance").astype(np.int64)


_METHODS = ("channels", "certified")


def decode(
    model_or_weights: Any,
    threshold: Threshold = "auto",
    relative: Relative = "neuron",
    similarity: float = 1.0,
    method: str = "channels",
    **options: Any,
) -> DecodedCircuit:
    """A static reading of a network from its weights alone (no activations, no ground truth).

    ``method="channels"`` (default): what the weights code, read from sign codes (below);
    the right tool to see how clauses are stored (which neurons carry which clause, which
    outputs they vote for), exact on networks whose codes are clean. ``method="certified"``:
    what the weights prove, :func:`fci.codes.decode_certified` (``options`` are its
    keywords): terms that sound bounds show imply the output on every input they hold,
    and how much of the output they cover; the right tool when a statement must hold on
    every input, and for networks of any depth or activation. ``threshold``, ``relative``
    and ``similarity`` belong to the channel reading.

    ``model_or_weights``: an object with ``effective_weights() -> [(W1, b1), (W2, b2)]``
    (masks applied) or a tuple ``(W1, b1, W2, b2)``; W1 (H, n), W2 (O, H) (the certified
    reading accepts anything :func:`fci.codes.network.read_network` reads).

    Rule (SPEC §5; every step is unchanged by permuting neurons and by dividing a
    neuron's incoming weights and bias by ``c > 0`` while multiplying its readouts by
    ``c``, and treats a negated literal exactly like a positive one):

    1. First-layer codes by :func:`sign_codes` (``threshold``, ``relative``); readout
       codes by :func:`readout_votes` on the contributions ``W2[o, i] * peak[i]``
       (``peak`` = :func:`neuron_peaks`, so a neuron that can never fire votes for
       nothing). A neuron *votes* for output o where its readout code is +1. The
       *carriers* are the neurons that can fire (``peak > 0``) and are not purely
       inhibitory (no vote, and readout code -1 for some output): they hold channels.
    2. The *excitation set* of a literal is the carriers its literal code excites
       (+1). Each variable takes one polarity: the literal with the larger
       excitation set (ties: the larger summed excitatory weight, each neuron's
       weights divided by its own ``max|w|``; then positive). Variables whose chosen
       literal excites no carrier (distractors) are left out.
    3. Literals are grouped into discovered clauses by their excitation sets. At the
       default ``similarity=1`` a group is exactly the literals with *identical*
       excitation sets; ``similarity < 1`` merges groups by average-linkage clustering
       under Jaccard distance while the mean pairwise similarity is ``>= similarity``
       (looser: it can merge channels that share neurons). Every group is kept: no
       clause is dropped for its polarity.
    4. A clause's channel is the neurons every one of its literals excites; its
       readout is the outputs any channel neuron votes for.

    The circuit's output ``o`` is the OR of the clauses that read out to ``o``, or'ed
    with ``default[o]``, true iff the output is provably true on every binary input:
    ``b2[o] > max_inhibition[o] = Σ_i max(-W2[o, i], 0) · peak[i]``, the most the
    neurons with a negative readout can lower the logit. Otherwise the inhibitory
    neurons are taken to hold the output off when no decoded clause is true.

    On planted channels (each clause's literals exciting their own set of neurons,
    negations and all-negated clauses included, noise up to 10% of the signal) the
    defaults recover every clause exactly. On trained networks literals of one clause
    play unequal roles (AND thresholds, graded counting codes, inhibitors), which sign
    codes cannot fully capture: :func:`decode_function` reads what such a network
    computes. Discovered clauses are ordered by their smallest variable, literals by
    variable.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if method == "certified":
        return _decode_certified(model_or_weights, threshold, relative, similarity, options)
    if options:
        raise ValueError(f"method='channels' takes threshold, relative and similarity; got {sorted(options)[0]!r} "
                         "(options of method='certified')")
    if isinstance(similarity, bool) or not isinstance(similarity, (int, float)) or not 0 < similarity <= 1:
        raise ValueError(f"similarity must lie in (0, 1], got {similarity!r}")
    _check_rule(threshold, relative)
    return _channel_circuit(*_unpack_weights(model_or_weights), threshold, relative, float(similarity))


def _decode_certified(model_or_weights: Any, threshold: Threshold, relative: Relative, similarity: float,
                      options: dict[str, Any]) -> DecodedCircuit:
    """`decode(method="certified")`: refuses the channel reading's options (one that is
    not at its default) and options `decode_certified` does not take, then reads."""
    changed = [name for name, value, default in (("threshold", threshold, "auto"), ("relative", relative, "neuron"),
                                                 ("similarity", similarity, 1.0)) if value != default]
    if changed:
        raise ValueError(f"{changed[0]} belongs to method='channels'; method='certified' takes "
                         f"{', '.join(_certified.DEFAULTS)} and activation")
    unknown = sorted(set(options) - set(_certified.DEFAULTS) - {"activation"})
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for method='certified'; its options are "
                         f"{', '.join(_certified.DEFAULTS)} and activation")
    return _certified.decode_certified(model_or_weights, **options)


def _channel_circuit(W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray, threshold: Threshold,
                     relative: Relative, similarity: float) -> DecodedCircuit:
    """The channel reading of checked weights, steps 1-4 of `decode`'s rule, and each
    output's default."""
    S1 = _signs(W1, threshold, relative)  # (H, n)
    peak = _peaks(W1, b1)  # (H,)
    S2 = _readout_signs(W2, peak, threshold, relative)  # (O, H)
    vote = S2 == 1  # (O, H)
    # Neurons that carry channels: those that can fire and are not purely inhibitory.
    carrier = (peak > 0) & (vote.any(axis=0) | ~(S2 == -1).any(axis=0))  # (H,)
    positive, E = _excitation_sets(W1, S1, carrier)
    clauses = _grouped_clauses(E, positive, similarity)

    A = _membership_np(S1, clauses)  # (H, D)
    votes = _count_matmul(A.T, vote.T)  # (D, O)
    max_inhibition = np.maximum(-W2, 0) @ peak  # (O,)
    return DecodedCircuit(
        clauses=clauses,
        channels=_channels_from_membership(A),
        readouts=[np.flatnonzero(row > 0).tolist() for row in votes],
        votes=votes.tolist(),
        default=[bool(b > m) for b, m in zip(b2, max_inhibition)],
        n_vars=W1.shape[1],
        n_outputs=W2.shape[0],
        threshold=threshold if isinstance(threshold, str) else float(threshold),
        relative=relative,
        similarity=similarity,
        max_inhibition=[float(m) for m in max_inhibition],
        method="static",
    )


def _excitation_sets(W1: np.ndarray, S1: np.ndarray, carrier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 2: each variable's polarity (n,) (True: x_v) and the carriers its chosen
    literal excites, E (H, n)."""
    H, n = W1.shape
    pos = (S1 == 1) & carrier[:, None]  # (H, n) x_v excites i
    neg = (S1 == -1) & carrier[:, None]  # (H, n) ¬x_v excites i
    n_pos, n_neg = pos.sum(axis=0), neg.sum(axis=0)
    scale = np.abs(W1).max(axis=1, keepdims=True) if n else np.ones((H, 1), W1.dtype)
    Wn = W1 / np.where(scale > 0, scale, 1)  # each neuron's weights on its own scale
    m_pos = np.where(pos, Wn, 0).sum(axis=0)
    m_neg = np.where(neg, -Wn, 0).sum(axis=0)
    positive = (n_pos > n_neg) | ((n_pos == n_neg) & (m_pos >= m_neg))  # (n,)
    return positive, np.where(positive[None, :], pos, neg)


def _grouped_clauses(E: np.ndarray, positive: np.ndarray, similarity: float) -> list[Clause]:
    """Step 3: the literals that excite some carrier, grouped by their excitation sets
    into clauses, ordered by their smallest variable (literals by variable)."""
    active = np.flatnonzero(E.any(axis=0))
    labels = _group_literals(E[:, active], similarity)
    groups: dict[int, list[int]] = {}
    for v, lab in zip(active.tolist(), labels.tolist()):
        groups.setdefault(lab, []).append(v)
    candidates = sorted(groups.values(), key=lambda vs: vs[0])  # vars ascending within groups
    return [tuple((v, bool(positive[v])) for v in vs) for vs in candidates]
