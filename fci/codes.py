"""Combinatorial code analysis from the weights alone (SPEC §5).

A trained ReLU network that computes an OR of ANDs stores each clause as a *feature
channel*: a set of hidden neurons that every literal of the clause excites. This
module reads those channels statically (no activations, no ground truth needed for
:func:`decode`):

- :func:`sign_codes` categorises weights into {-1, 0, +1} (``+1`` if ``w > tau``,
  ``-1`` if ``w < -tau``, strictly). ``tau`` is set per neuron from its own weights
  (by default a two-cluster split of its ``|w|``; a number is a fraction of the
  neuron's ``max|w|``), so codes are unchanged when neurons are permuted or one
  neuron's incoming weights and bias are divided by ``c > 0`` and its readouts
  multiplied by ``c``. Readouts are judged by their contribution ``W2[o, i]`` times
  neuron i's largest activation over ``{0,1}^n`` (:func:`neuron_peaks`).
  ``relative="global"`` keeps the pre-amendment rule ``tau = threshold * max|W|``.
- :func:`literal_codes`, :func:`clause_channels`, :func:`readout_votes`,
  :func:`polysemanticity`, :func:`collision_matrix`, :func:`collision_graph` and
  :func:`channel_graph` describe the channels of known clauses.
- :func:`split_view` compares a clause's channel in an FPE parent and its child.
- :func:`decode` (static: what the weights code) discovers clauses, channels and
  readouts from the weights and returns an evaluable :class:`DecodedCircuit`;
  :func:`decode_function` (what the network computes) reads an OR of short terms per
  output from the weights and inputs it draws itself. :func:`clause_recovery`,
  :func:`circuit_agreement` and :func:`ceiling_agreement` verify them.

Weights follow torch: ``W1`` (H, n), ``W2`` (O, H). Array functions accept torch
tensors or numpy arrays and return the same kind; channel lists hold Python ints.
Everything is vectorised over neurons and clauses: channels of 1,000 clauses on a
``(4096, 4096)`` layer take well under a second (``python -m benchmarks.codes``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence, TypeVar, Union

import networkx as nx
import numpy as np
import torch

from fci._circuit import DecodedCircuit, _format_clause, _unpack_weights
from fci._decode import decode_function
from fci.metrics import (
    Clause,
    _capacity_np,
    _check_clauses,
    _clause_var_index,
    _float_array,
    _like,
    _to_numpy,
    _weights_2d,
)

log = logging.getLogger(__name__)

__all__ = [
    "sign_codes",
    "literal_codes",
    "channel_membership",
    "clause_channels",
    "neuron_peaks",
    "readout_votes",
    "polysemanticity",
    "collision_matrix",
    "collision_graph",
    "CollisionGraph",
    "channel_graph",
    "clause_table",
    "ClauseSplitView",
    "split_view",
    "DecodedCircuit",
    "decode",
    "decode_function",
    "ceiling_agreement",
    "network_predictions",
    "clause_recovery",
    "circuit_agreement",
]

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


# --------------------------------------------------------------------------- helpers


Threshold = Union[float, str]
"""A sign threshold: a number (its meaning set by ``relative``) or ``"auto"``."""
Relative = Union[bool, str]
"""Where a numeric threshold is measured: ``True``/``"neuron"`` (each unit's own
weights), ``"global"`` (the whole matrix, the pre-amendment rule) or ``False`` (absolute)."""

_MODES = {True: "neuron", "neuron": "neuron", "global": "global", False: "absolute", "absolute": "absolute"}
_SEPARATION = 0.8  # a two-cluster split must explain 80% of a row's variance to count
_SPLIT_ROWS = 512  # rows per chunk of the two-cluster split (bounds its float64 scratch memory)


def _check_rule(threshold: Threshold, relative: Relative) -> tuple[float | None, str]:
    """(numeric threshold or None for "auto", mode), or ValueError naming the bad field."""
    try:
        mode = _MODES[relative] if isinstance(relative, (bool, str)) else None
    except KeyError:
        mode = None
    if mode is None:
        raise ValueError(f"relative must be True/'neuron', 'global' or False/'absolute', got {relative!r}")
    if isinstance(threshold, str):
        if threshold != "auto":
            raise ValueError(f"threshold must be a number or 'auto', got {threshold!r}")
        if mode == "absolute":
            raise ValueError("threshold='auto' is data-driven and needs relative=True/'neuron' or 'global', got relative=False")
        return None, mode
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise ValueError(f"threshold must be a number or 'auto', got {threshold!r}")
    t = float(threshold)
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"threshold must be finite and >= 0, got {threshold!r}")
    if mode != "absolute" and t > 1:
        raise ValueError(f"a relative threshold is a fraction of max|w| in [0, 1], got {threshold!r}")
    return t, mode


def _split_tau(A: np.ndarray, min_separation: float = 0.0, fallback: str = "all") -> np.ndarray:
    """(R,) data-driven thresholds for the rows of ``A`` (R, m), A >= 0.

    Each row's values, together with one anchor value 0 (no connection), are split
    into a low and a high cluster by the two-cluster split of least within-cluster
    sum of squares (1-D k-means with k = 2, solved exactly over the sorted values;
    ties go to the split with the lower threshold). The threshold is the largest
    value of the low cluster, so ``a > tau`` is exactly the high cluster. The anchor
    lets a row whose values are all alike code all of them; an all-zero row codes
    nothing. Scale-free: multiplying a row by c > 0 multiplies its threshold by c.

    ``min_separation``: a split counts only when it explains at least this fraction
    of the row's variance (between-cluster over total sum of squares, anchor
    included): below it the row has no two clear clusters, and its threshold is
    ``fallback`` ("all": 0, every non-zero value codes; "none": the row's max, nothing
    codes)."""
    R, m = A.shape
    tau = np.zeros(R, dtype=A.dtype)
    if m == 0:
        return tau
    for r0 in range(0, R, _SPLIT_ROWS):
        a = np.sort(A[r0: r0 + _SPLIT_ROWS], axis=1)
        a = np.concatenate([np.zeros((a.shape[0], 1), dtype=a.dtype), a], axis=1)  # (r, m + 1), anchor first
        top = a[:, -1:].astype(np.float64)
        z = a / np.where(top > 0, top, 1.0)  # each row in [0, 1]: the split is scale-free
        cs, cs2 = np.cumsum(z, axis=1), np.cumsum(z * z, axis=1)
        s = np.arange(1, m + 1)  # low cluster = z[:, :s]
        lo_n, hi_n = s, m + 1 - s
        lo_sum, lo_sq = cs[:, :-1], cs2[:, :-1]
        hi_sum, hi_sq = cs[:, -1:] - lo_sum, cs2[:, -1:] - lo_sq
        sse = (lo_sq - lo_sum ** 2 / lo_n) + (hi_sq - hi_sum ** 2 / hi_n)
        sse[a[:, :-1] == a[:, 1:]] = np.inf  # split only between distinct values
        best = np.argmin(sse, axis=1)  # first minimum: the lower threshold
        rows = np.arange(a.shape[0])
        t = a[rows, best]
        t[~np.isfinite(sse[rows, best])] = 0  # all values equal (e.g. all 0)
        if min_separation > 0:
            total = cs2[:, -1] - cs[:, -1] ** 2 / (m + 1)
            explained = 1.0 - sse[rows, best] / np.where(total > 0, total, 1.0)
            weak = explained < min_separation
            t[weak] = 0 if fallback == "all" else a[weak, -1]
        tau[r0: r0 + _SPLIT_ROWS] = t
    return tau


def _row_tau(W: np.ndarray, threshold: Threshold, relative: Relative) -> np.ndarray:
    """(R, 1) or scalar threshold for the rows (units) of W (R, m), in W's dtype."""
    t, mode = _check_rule(threshold, relative)
    if mode == "absolute":
        return W.dtype.type(t)
    A = np.abs(W)
    if mode == "global":
        A = A.reshape(1, -1)
    if t is None:
        tau = _split_tau(A, _SEPARATION, "none")
    else:
        tau = W.dtype.type(t) * (A.max(axis=1) if A.shape[1] else np.zeros(A.shape[0], W.dtype))
    return tau[0] if mode == "global" else tau[:, None]


def _signs(W: np.ndarray, threshold: Threshold, relative: Relative) -> np.ndarray:
    """int8 sign categories of a numpy matrix whose rows are units (neurons of W1,
    outputs of a readout matrix); comparisons at W's own precision."""
    _check_rule(threshold, relative)
    if W.size == 0:
        return np.zeros(W.shape, dtype=np.int8)
    tau = _row_tau(W, threshold, relative)
    s = (W > tau).astype(np.int8)
    s -= (W < -tau).astype(np.int8)
    return s


def _peaks(W1: np.ndarray, b1: np.ndarray | None) -> np.ndarray:
    """(H,) neuron i's largest activation over {0,1}^n: relu(b1 + Σ_v max(W1[i, v], 0))."""
    pre = np.maximum(W1, 0).sum(axis=1)
    if b1 is not None:
        pre = pre + b1
    return np.maximum(pre, 0).astype(W1.dtype)


def _readout_signs(W2: np.ndarray, peak: np.ndarray | None, threshold: Threshold, relative: Relative) -> np.ndarray:
    """(O, H) int8 readout categories. With per-unit thresholds (``relative=True``) a
    readout is judged by its contribution ``R[o, i] = W2[o, i] * peak[i]`` within
    output o: a number t codes ``|R| > t * max_i |R[o, i]|``; ``"auto"`` splits the
    positive contributions and the negative ones separately (two-cluster split of
    each, as in :func:`sign_codes`), so strong inhibitors do not hide the neurons
    that vote for the output; a split is used only when it explains at least 80% of
    the contributions' variance (two clear clusters), else every non-zero
    contribution of that sign codes (readouts spread over a continuum, e.g. equal readout weights
    on neurons of unequal peaks, all count). The ``"global"`` and absolute rules read raw ``W2``
    (pre-amendment)."""
    t, mode = _check_rule(threshold, relative)
    if mode != "neuron":
        return _signs(W2, threshold, relative)
    R = W2 * peak[None, :].astype(W2.dtype) if peak is not None else W2
    if t is not None or R.size == 0:
        return _signs(R, threshold, relative)
    plus, minus = np.maximum(R, 0), np.maximum(-R, 0)
    s = (plus > _split_tau(plus, _SEPARATION, "all")[:, None]).astype(np.int8)
    s -= (minus > _split_tau(minus, _SEPARATION, "all")[:, None]).astype(np.int8)
    return s


def _all_rows(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(C, H) bool: AND over j of ``table[index[c, j]]``, with ``table`` (R, H) bool.

    Row gathers on a row-major table keep memory access contiguous; the loop runs
    over the k literal positions only."""
    out = np.ones((index.shape[0], table.shape[1]), dtype=bool)
    for j in range(index.shape[1]):
        out &= table[index[:, j]]
    return out


def _membership_np(S: np.ndarray, clauses: Sequence[Clause]) -> np.ndarray:
    """(H, C) bool: neuron i is in clause c's channel (every literal excites it).

    S: (H, n) int8 sign codes. Vectorised over neurons and clauses."""
    H, n = S.shape
    var, pos = _clause_var_index(clauses, pad=n)  # (C, kmax)
    # Excitation table over literals: row v = x_v, row n + v = ¬x_v, row 2n = padding.
    table = np.empty((2 * n + 1, H), dtype=bool)
    ST = S.T
    np.equal(ST, 1, out=table[:n])
    np.equal(ST, -1, out=table[n: 2 * n])
    table[2 * n] = True
    lit = np.where(var == n, 2 * n, var + n * (~pos))  # (C, kmax) literal rows
    return _all_rows(table, lit).T  # (H, C)


def _channels_from_membership(A: np.ndarray) -> list[list[int]]:
    """Sorted neuron lists per clause from a (H, C) membership matrix."""
    C = A.shape[1]
    clause_idx, neuron_idx = np.nonzero(A.T)  # sorted by clause, then neuron
    counts = np.bincount(clause_idx, minlength=C)
    return [chunk.tolist() for chunk in np.split(neuron_idx, np.cumsum(counts)[:-1])] if C else []


def _membership_from_channels(channels: Sequence[Sequence[int]], H: int) -> np.ndarray:
    """(H, C) bool membership from channel lists, validating neuron ids."""
    A = np.zeros((H, len(channels)), dtype=bool)
    for c, ch in enumerate(channels):
        idx = np.asarray(list(ch), dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= H):
            raise ValueError(f"channel {c} names neuron {int(idx.max()) if idx.max() >= H else int(idx.min())}, "
                             f"out of range [0, {H})")
        A[idx, c] = True
    return A


def _codes_and_membership(W1: Any, clauses: Sequence[Any], threshold: Threshold, relative: Relative):
    W = _weights_2d(W1, "W1")
    canon = _check_clauses(clauses, W.shape[1])
    S = _signs(W, threshold, relative)
    return W, canon, S, _membership_np(S, canon)


def _count_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer counts ``a @ b`` of bool matrices via float32 BLAS (exact below 2**24)."""
    return np.rint(a.astype(np.float32) @ b.astype(np.float32)).astype(np.int64)


# --------------------------------------------------------------------------- codes


def sign_codes(W1: ArrayT, threshold: Threshold = "auto", relative: Relative = True) -> ArrayT:
    """Sign categories of W1 (H, n) -> (H, n) int64 in {-1, 0, +1}.

    ``+1`` if ``w > tau``, ``-1`` if ``w < -tau`` (strict), else 0. ``tau`` per rule:

    - ``threshold="auto"`` (default), ``relative=True``: per neuron, the two-cluster
      split of its ``|w|`` (with a zero anchor; see SPEC §5): ``tau_i`` is the largest
      ``|w|`` of the low cluster, so the neuron's strong weights code and its weak
      ones do not. A neuron with no non-zero weight codes to all 0.
    - a number ``t`` in [0, 1], ``relative=True``: ``tau_i = t * max_v |W1[i, v]|``.
    - ``relative="global"``: ``tau = t * max|W1|`` over the whole matrix (the
      pre-amendment rule; with ``"auto"``, one split of all ``|W1|``).
    - ``relative=False``: ``tau = t``, absolute.

    Column ``v`` is the variable code of ``x_v``. Masked weights are 0 in effective
    weights, hence code 0.
    """
    S = _signs(_weights_2d(W1, "W1"), threshold, relative)
    return _like(S.astype(np.int64), W1)


def literal_codes(
    W1: ArrayT, clauses: Sequence[Clause], threshold: Threshold = "auto", relative: Relative = True
) -> list[ArrayT]:
    """Literal codes of each clause: a list of (H, k_c) int64 arrays whose column j is
    the code of the clause's j-th literal (the variable code, negated for a negated
    literal). The literal excites neuron i where the entry is +1."""
    W = _weights_2d(W1, "W1")
    canon = _check_clauses(clauses, W.shape[1])
    S = _signs(W, threshold, relative).astype(np.int64)
    out = []
    for clause in canon:
        var = [v for v, _ in clause]
        flip = np.array([1 if p else -1 for _, p in clause], dtype=np.int64)
        out.append(_like(S[:, var] * flip, W1))
    return out


def channel_membership(
    W1: ArrayT, clauses: Sequence[Clause], threshold: Threshold = "auto", relative: Relative = True
) -> ArrayT:
    """(H, C) bool: neuron i belongs to clause c's feature channel, i.e. every literal
    of clause c excites neuron i."""
    _, _, _, A = _codes_and_membership(W1, clauses, threshold, relative)
    return _like(A, W1)


def clause_channels(
    W1: Any, clauses: Sequence[Clause], threshold: Threshold = "auto", relative: Relative = True
) -> list[list[int]]:
    """Feature channel of every clause: the sorted neurons that every literal of the
    clause excites (literal code +1). W1: (H, n) -> C lists of Python ints."""
    _, _, _, A = _codes_and_membership(W1, clauses, threshold, relative)
    return _channels_from_membership(A)


def neuron_peaks(W1: ArrayT, b1: Any | None = None) -> ArrayT:
    """(H,) each neuron's largest activation over ``{0,1}^n``:
    ``relu(b1[i] + Σ_v max(W1[i, v], 0))`` (``b1`` None: zero biases). W1: (H, n).
    ``W2[o, i] * peak[i]`` is the most neuron i can move output o: the scale-free
    measure of a readout."""
    W = _weights_2d(W1, "W1")
    b = None if b1 is None else _float_array(b1, "b1")
    if b is not None and b.shape != (W.shape[0],):
        raise ValueError(f"b1 must have shape (H={W.shape[0]},), got {tuple(b.shape)}")
    return _like(_peaks(W, b), W1)


def _peak_array(peak: Any | None, H: int) -> np.ndarray | None:
    if peak is None:
        return None
    p = _float_array(peak, "peak")
    if p.shape != (H,) or (p < 0).any():
        raise ValueError(f"peak must be a non-negative array of shape (H={H},), got {tuple(p.shape)}")
    return p


def readout_votes(
    W2: ArrayT, channels: Sequence[Sequence[int]], threshold: Threshold = "auto", relative: Relative = True,
    peak: Any | None = None,
) -> ArrayT:
    """(C, O) int64: how many neurons of each channel vote for each output. W2: (O, H).

    A vote is a readout code ``+1``: with per-unit thresholds (``relative=True``) the
    code of the contribution ``W2[o, i] * peak[i]`` within output o, ``peak`` being
    :func:`neuron_peaks` (None: every neuron taken at peak 1, i.e. raw ``W2``, which
    is not scale-free); with ``"global"`` / absolute thresholds the code of raw
    ``W2``. A clause's readout is the outputs with a vote > 0."""
    W = _weights_2d(W2, "W2")
    A = _membership_from_channels(channels, W.shape[1])  # (H, C)
    votes = _readout_signs(W, _peak_array(peak, W.shape[1]), threshold, relative) == 1  # (O, H)
    return _like(_count_matmul(A.T, votes.T), W2)  # (C, O)


def polysemanticity(
    W1: ArrayT, clauses: Sequence[Clause], threshold: Threshold = "auto", relative: Relative = True
) -> ArrayT:
    """(H,) int64: for each neuron, the number of clauses whose channel holds it."""
    _, _, _, A = _codes_and_membership(W1, clauses, threshold, relative)
    return _like(A.sum(axis=1).astype(np.int64), W1)


def collision_matrix(
    W1: ArrayT, clauses: Sequence[Clause], threshold: Threshold = "auto", relative: Relative = True
) -> ArrayT:
    """(C, C) int64 shared-neuron counts between clause channels; the diagonal is each
    channel's size. Two clauses collide when their entry is > 0."""
    _, _, _, A = _codes_and_membership(W1, clauses, threshold, relative)
    return _like(_count_matmul(A.T, A), W1)


class CollisionGraph(nx.Graph):
    """A networkx.Graph of clause collisions (see :func:`collision_graph`) whose repr
    says what it holds: ``CollisionGraph(8 clauses, 5 collisions, 4 components)``."""

    def __repr__(self) -> str:
        C, E = self.number_of_nodes(), self.number_of_edges()
        K = nx.number_connected_components(self) if C else 0
        return (f"CollisionGraph({C} clause{'s' * (C != 1)}, {E} collision{'s' * (E != 1)}, "
                f"{K} component{'s' * (K != 1)})")

    __str__ = __repr__


def _collision_graph_np(canon: list[Clause], A: np.ndarray) -> CollisionGraph:
    M = _count_matmul(A.T, A)  # (C, C)
    channels = _channels_from_membership(A)
    g = CollisionGraph()
    g.add_nodes_from(
        (c, {"clause": canon[c], "label": _format_clause(canon[c]), "channel": channels[c], "size": len(channels[c])})
        for c in range(len(canon))
    )
    i, j = np.nonzero(np.triu(M, k=1))
    g.add_edges_from((int(a), int(b), {"weight": int(w)}) for a, b, w in zip(i, j, M[i, j]))
    return g


def collision_graph(
    W1: Any, clauses: Sequence[Clause], threshold: Threshold = "auto", relative: Relative = True
) -> CollisionGraph:
    """A :class:`CollisionGraph` (a networkx.Graph): clauses as nodes ``0..C-1`` (attributes ``clause``, ``label``, ``channel``,
    ``size``), an edge per colliding pair weighted by shared neurons (``weight``).
    ``nx.connected_components`` gives the entangled clause groups."""
    _, canon, _, A = _codes_and_membership(W1, clauses, threshold, relative)
    return _collision_graph_np(canon, A)


def _bias(b1: Any | None, H: int) -> np.ndarray | None:
    if b1 is None:
        return None
    b = _float_array(b1, "b1")
    if b.shape != (H,):
        raise ValueError(f"b1 must have shape (H={H},), got {tuple(b.shape)}")
    return b


def _literal_node(var: int, positive: bool) -> str:
    return f"x{var}" if positive else f"~x{var}"


def channel_graph(
    W1: Any,
    W2: Any,
    clauses: Sequence[Clause] | None = None,
    threshold: Threshold = "auto",
    relative: Relative = True,
    neurons: str = "channels",
    b1: Any | None = None,
) -> nx.DiGraph:
    """Literal -> neuron -> output graph of the non-zero signs, for an explorer to draw.

    Nodes (string ids, attribute ``kind`` and ``layer`` 0/1/2 for a layered layout):
    literals ``"x3"`` / ``"~x3"`` (``var``, ``positive``, ``label`` such as ``¬x3``,
    ``clauses``), neurons ``"h12"`` (``index``, ``clauses`` whose channel holds it,
    ``polysemanticity``), outputs ``"y0"`` (``index``). Literal -> neuron edges exist
    where the literal code is non-zero, with ``sign`` (the literal code) and
    ``weight`` (the literal's weight: ``W1[i, v]``, negated for a negated literal;
    ``raw_weight`` keeps ``W1[i, v]``). Neuron -> output edges exist where
    the readout code is non-zero (:func:`readout_votes`: the contribution
    ``W2[o, i] * peak[i]`` with ``peak`` from ``W1`` and ``b1``; ``b1`` None takes zero
    biases), with ``sign`` and ``weight = W2[o, i]``.

    ``clauses``: the literals to draw (None: the positive literal of every variable).
    ``neurons``: ``"channels"`` (neurons in some clause channel; all neurons with a
    non-zero code when ``clauses`` is None), ``"coded"`` (neurons any drawn literal
    codes to), or ``"all"``.
    """
    Wa = _weights_2d(W1, "W1")
    Wb = _weights_2d(W2, "W2")
    H, n = Wa.shape
    if Wb.shape[1] != H:
        raise ValueError(f"W2 must have shape (O, H={H}), got {tuple(Wb.shape)}")
    if neurons not in ("channels", "coded", "all"):
        raise ValueError(f"neurons must be 'channels', 'coded' or 'all', got {neurons!r}")
    S1 = _signs(Wa, threshold, relative)
    S2 = _readout_signs(Wb, _peaks(Wa, _bias(b1, H)), threshold, relative)
    if clauses is None:
        canon: list[Clause] = []
        literals = [(v, True) for v in range(n)]
        lit_clauses: dict[tuple[int, bool], list[int]] = {lit: [] for lit in literals}
        A = np.zeros((H, 0), dtype=bool)
    else:
        canon = _check_clauses(clauses, n)
        lit_clauses = {}
        for c, clause in enumerate(canon):
            for lit in clause:
                lit_clauses.setdefault(lit, []).append(c)
        literals = sorted(lit_clauses)
        A = _membership_np(S1, canon)
    var = np.array([v for v, _ in literals], dtype=np.int64)
    flip = np.array([1 if p else -1 for _, p in literals], dtype=np.int8)
    L = S1[:, var] * flip  # (H, L) literal codes
    if neurons == "all":
        keep = np.arange(H)
    elif neurons == "coded" or clauses is None:
        keep = np.flatnonzero((L != 0).any(axis=1))
    else:
        keep = np.flatnonzero(A.any(axis=1))
    neuron_clauses = _channels_from_membership(A.T) if A.size else [[] for _ in range(H)]

    g = nx.DiGraph()
    g.add_nodes_from(
        (_literal_node(v, p), {"kind": "literal", "layer": 0, "var": v, "positive": p,
                               "label": _format_clause(((v, p),)), "clauses": lit_clauses[(v, p)]})
        for v, p in literals
    )
    g.add_nodes_from(
        (f"h{i}", {"kind": "neuron", "layer": 1, "index": int(i), "label": f"h{i}",
                   "clauses": neuron_clauses[i], "polysemanticity": len(neuron_clauses[i])})
        for i in keep
    )
    O = Wb.shape[0]
    g.add_nodes_from((f"y{o}", {"kind": "output", "layer": 2, "index": o, "label": f"y{o}"}) for o in range(O))

    Lk = L[keep]  # (H', L)
    ii, ll = np.nonzero(Lk)
    g.add_edges_from(
        (_literal_node(*literals[l]), f"h{keep[i]}",
         {"sign": int(Lk[i, l]), "weight": float(Wa[keep[i], var[l]] * flip[l]), "raw_weight": float(Wa[keep[i], var[l]])})
        for i, l in zip(ii, ll)
    )
    S2k = S2[:, keep]  # (O, H')
    oo, ii = np.nonzero(S2k)
    g.add_edges_from(
        (f"h{keep[i]}", f"y{o}", {"sign": int(S2k[o, i]), "weight": float(Wb[o, keep[i]])}) for o, i in zip(oo, ii)
    )
    return g


def clause_table(
    W1: Any,
    W2: Any | None,
    clauses: Sequence[Clause],
    threshold: Threshold = "auto",
    relative: Relative = True,
    b1: Any | None = None,
) -> list[dict[str, Any]]:
    """One JSON-ready row per clause for an explorer table: ``clause`` index,
    ``literals`` (e.g. ``"x0 ∧ ¬x3"``), ``channel``, ``readout`` (outputs with a vote;
    empty when ``W2`` is None), ``votes`` (per output), ``collisions`` (ids of clauses
    whose channel shares a neuron), ``polysemantic`` (channel neurons shared with
    another clause) and ``capacity`` (mean feature capacity over the clause's
    variables). Readouts as in :func:`readout_votes`, with peaks from ``W1`` and
    ``b1`` (None: zero biases)."""
    W, canon, _, A = _codes_and_membership(W1, clauses, threshold, relative)
    channels = _channels_from_membership(A)
    M = _count_matmul(A.T, A)
    poly = A.sum(axis=1)
    cap = _capacity_np(W)
    if W2 is not None:
        Wb = _weights_2d(W2, "W2")
        if Wb.shape[1] != W.shape[0]:
            raise ValueError(f"W2 must have shape (O, H={W.shape[0]}), got {tuple(Wb.shape)}")
        S2 = _readout_signs(Wb, _peaks(W, _bias(b1, W.shape[0])), threshold, relative)
        votes = _count_matmul(A.T, (S2 == 1).T)  # (C, O)
    else:
        votes = np.zeros((len(canon), 0), dtype=np.int64)
    rows = []
    for c, clause in enumerate(canon):
        others = np.flatnonzero(M[c] > 0)
        rows.append({
            "clause": c,
            "literals": _format_clause(clause),
            "channel": channels[c],
            "readout": np.flatnonzero(votes[c] > 0).tolist(),
            "votes": votes[c].tolist(),
            "collisions": [int(o) for o in others if o != c],
            "polysemantic": [i for i in channels[c] if poly[i] > 1],
            "capacity": float(cap[[v for v, _ in clause]].mean()),
        })
    return rows


# --------------------------------------------------------------------------- before/after splitting


@dataclass
class ClauseSplitView:
    """One clause seen before and after Fixed Parameter Expansion.

    ``parent_channel``: the clause's channel in the parent. ``children_carrying_whole``:
    for each parent channel neuron, its children whose first-layer mask holds every
    variable of the clause (the children that could still compute the clause alone).
    ``child_channel``: the clause's channel in the (fine-tuned) child. ``preserved``:
    child channel neurons whose parent was in the parent channel; ``new``: the other
    child channel neurons; ``lost``: parent channel neurons with no child in the child
    channel."""

    clause_index: int
    literals: Clause
    label: str
    parent_channel: list[int]
    children_carrying_whole: dict[int, list[int]]
    child_channel: list[int]
    preserved: list[int]
    new: list[int]
    lost: list[int]

    @property
    def survived(self) -> bool:
        """The clause still has a channel after expansion."""
        return bool(self.child_channel)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (literals as ``[var, positive]`` lists, parent ids as string keys)."""
        d = asdict(self)
        d["literals"] = [[v, p] for v, p in self.literals]
        d["children_carrying_whole"] = {str(k): v for k, v in self.children_carrying_whole.items()}
        d["survived"] = self.survived
        return d


def split_view(
    parent_W1: Any,
    child_W1: Any,
    parent_index: Any,
    clauses: Sequence[Clause],
    threshold: Threshold = "auto",
    relative: Relative = True,
    child_mask: Any | None = None,
) -> list[ClauseSplitView]:
    """Per-clause before/after view of an FPE child and its parent.

    parent_W1: (H, n); child_W1: (H_child, n), after fine-tuning; parent_index:
    (H_child,) ints, the parent of every child neuron (``arange(H_child) // alpha``
    for the contiguous layout of SPEC §3, but any map is accepted); child_mask:
    (H_child, n) first-layer 0/1 mask of the child (None: ``child_W1 != 0``).
    Each model's neurons are thresholded by the same rule as :func:`sign_codes`.
    """
    Wp = _weights_2d(parent_W1, "parent_W1")
    Wc = _weights_2d(child_W1, "child_W1")
    Hp, n = Wp.shape
    Hc = Wc.shape[0]
    if Wc.shape[1] != n:
        raise ValueError(f"child_W1 must have n={n} columns like parent_W1, got shape {tuple(Wc.shape)}")
    pidx = _to_numpy(parent_index, "parent_index")
    if pidx.shape != (Hc,) or not (np.issubdtype(pidx.dtype, np.integer) or pidx.size == 0):
        raise ValueError(f"parent_index must be an integer array of shape (H_child={Hc},), got "
                         f"{pidx.dtype} {tuple(pidx.shape)}")
    pidx = pidx.astype(np.int64)
    if pidx.size and (pidx.min() < 0 or pidx.max() >= Hp):
        raise ValueError(f"parent_index values must lie in [0, H_parent={Hp})")
    if child_mask is None:
        mask = Wc != 0
    else:
        mask = _to_numpy(child_mask, "child_mask")
        if mask.shape != Wc.shape:
            raise ValueError(f"child_mask must have shape {tuple(Wc.shape)}, got {tuple(mask.shape)}")
        mask = mask != 0
    canon = _check_clauses(clauses, n)

    A_parent = _membership_np(_signs(Wp, threshold, relative), canon)  # (Hp, C)
    A_child = _membership_np(_signs(Wc, threshold, relative), canon)  # (Hc, C)
    # Children whose mask holds every variable of clause c: (Hc, C).
    var, _ = _clause_var_index(canon, pad=n)
    mask_table = np.concatenate([mask.T, np.ones((1, Hc), dtype=bool)], axis=0)  # (n + 1, Hc)
    whole = _all_rows(mask_table, var).T  # (Hc, C)

    parent_channels = _channels_from_membership(A_parent)
    child_channels = _channels_from_membership(A_child)
    order = np.argsort(pidx, kind="stable")
    starts = np.searchsorted(pidx[order], np.arange(Hp + 1))
    views = []
    for c, clause in enumerate(canon):
        carrying = {}
        for p in parent_channels[c]:
            kids = order[starts[p]: starts[p + 1]]
            carrying[p] = sorted(int(k) for k in kids[whole[kids, c]])
        in_parent = A_parent[pidx, c] if Hc else np.zeros(0, dtype=bool)  # (Hc,) parent in channel
        child_ch = child_channels[c]
        preserved = [j for j in child_ch if in_parent[j]]
        hit_parents = {int(pidx[j]) for j in child_ch}
        views.append(ClauseSplitView(
            clause_index=c,
            literals=clause,
            label=_format_clause(clause),
            parent_channel=parent_channels[c],
            children_carrying_whole=carrying,
            child_channel=child_ch,
            preserved=preserved,
            new=[j for j in child_ch if not in_parent[j]],
            lost=[p for p in parent_channels[c] if p not in hit_parents],
        ))
    return views


# --------------------------------------------------------------------------- static decoding


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


def decode(
    model_or_weights: Any,
    threshold: Threshold = "auto",
    relative: Relative = True,
    similarity: float = 1.0,
) -> DecodedCircuit:
    """What the weights code: the clauses, channels and readouts of a one-hidden-layer
    network read from its weights alone (no activations, no ground truth).

    ``model_or_weights``: an object with ``effective_weights() -> [(W1, b1), (W2, b2)]``
    (masks applied) or a tuple ``(W1, b1, W2, b2)``; W1 (H, n), W2 (O, H).

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
    if isinstance(similarity, bool) or not isinstance(similarity, (int, float)) or not 0 < similarity <= 1:
        raise ValueError(f"similarity must lie in (0, 1], got {similarity!r}")
    _check_rule(threshold, relative)
    W1, b1, W2, b2 = _unpack_weights(model_or_weights)
    H, n = W1.shape
    S1 = _signs(W1, threshold, relative)  # (H, n)
    peak = _peaks(W1, b1)  # (H,)
    S2 = _readout_signs(W2, peak, threshold, relative)  # (O, H)
    vote = S2 == 1  # (O, H)
    # Neurons that carry channels: those that can fire and are not purely inhibitory.
    carrier = (peak > 0) & (vote.any(axis=0) | ~(S2 == -1).any(axis=0))  # (H,)

    pos = (S1 == 1) & carrier[:, None]  # (H, n) x_v excites i
    neg = (S1 == -1) & carrier[:, None]  # (H, n) ¬x_v excites i
    n_pos, n_neg = pos.sum(axis=0), neg.sum(axis=0)
    scale = np.abs(W1).max(axis=1, keepdims=True) if n else np.ones((H, 1), W1.dtype)
    Wn = W1 / np.where(scale > 0, scale, 1)  # each neuron's weights on its own scale
    m_pos = np.where(pos, Wn, 0).sum(axis=0)
    m_neg = np.where(neg, -Wn, 0).sum(axis=0)
    positive = (n_pos > n_neg) | ((n_pos == n_neg) & (m_pos >= m_neg))  # (n,)
    E = np.where(positive[None, :], pos, neg)  # (H, n) excitation sets
    active = np.flatnonzero(E.any(axis=0))

    labels = _group_literals(E[:, active], float(similarity))
    groups: dict[int, list[int]] = {}
    for v, lab in zip(active.tolist(), labels.tolist()):
        groups.setdefault(lab, []).append(v)
    candidates = sorted(groups.values(), key=lambda vs: vs[0])  # vars ascending within groups
    clauses = [tuple((v, bool(positive[v])) for v in vs) for vs in candidates]

    A = _membership_np(S1, clauses)  # (H, D)
    votes = _count_matmul(A.T, vote.T)  # (D, O)
    max_inhibition = np.maximum(-W2, 0) @ peak  # (O,)
    return DecodedCircuit(
        clauses=clauses,
        channels=_channels_from_membership(A),
        readouts=[np.flatnonzero(row > 0).tolist() for row in votes],
        votes=votes.tolist(),
        default=[bool(b > m) for b, m in zip(b2, max_inhibition)],
        n_vars=n,
        n_outputs=W2.shape[0],
        threshold=threshold if isinstance(threshold, str) else float(threshold),
        relative=relative,
        similarity=float(similarity),
        max_inhibition=[float(m) for m in max_inhibition],
        method="static",
    )


def ceiling_agreement(true_clauses: Sequence[Clause], network_output: Any, x: Any,
                      groups: Sequence[Sequence[int]] | None = None) -> float:
    """The ceiling of clause-based decoding: the agreement with the network's
    predictions ``network_output > 0`` (N, O) of the task's *true* formula on ``x``
    (N, n): output o is the OR of the true clauses in ``groups[o]`` (``task.groups``;
    None: every clause when O == 1, clause o when O == C). A decoder that reaches it
    agrees with the network as well as the true clauses do."""
    y_net = _to_numpy(network_output, "network_output")
    if y_net.ndim != 2:
        raise ValueError(f"network_output must be 2-D (N, O), got shape {tuple(y_net.shape)}")
    O = y_net.shape[1]
    canon = _check_clauses(true_clauses, None)
    if groups is None:
        if O == 1:
            groups = [list(range(len(canon)))]
        elif O == len(canon):
            groups = [[c] for c in range(len(canon))]
        else:
            raise ValueError(f"groups must be given when O={O} is neither 1 nor the clause count {len(canon)}")
    if len(groups) != O or any(not 0 <= c < len(canon) for g in groups for c in g):
        raise ValueError(f"groups must list, for each of the O={O} outputs, clause indices in [0, {len(canon)})")
    xa = _to_numpy(x, "x")
    if xa.ndim != 2:
        raise ValueError(f"x must have shape (N, n), got {tuple(xa.shape)}")
    readouts = [[o for o, g in enumerate(groups) if c in g] for c in range(len(canon))]
    circuit = DecodedCircuit(clauses=canon, channels=[[] for _ in canon], readouts=readouts,
                             votes=[[] for _ in canon], default=[False] * O, n_vars=xa.shape[1], n_outputs=O,
                             threshold=None, relative=None, similarity=None, method="true")
    return circuit_agreement(circuit, y_net, xa)


def network_predictions(model_or_weights: Any, x: ArrayT) -> ArrayT:
    """(N, O) float32 0/1 predictions ``logit > 0`` of a one-hidden-layer network
    (model or ``(W1, b1, W2, b2)``) on ``x`` (N, n); same kind as x."""
    W1, b1, W2, b2 = _unpack_weights(model_or_weights, reader="network_predictions")
    xa = _to_numpy(x, "x").astype(W1.dtype)
    if xa.ndim != 2 or xa.shape[1] != W1.shape[1]:
        raise ValueError(f"x must have shape (N, n={W1.shape[1]}), got {tuple(xa.shape)}")
    h = np.maximum(xa @ W1.T + b1, 0)  # (N, H)
    logits = h @ W2.T + b2  # (N, O)
    return _like((logits > 0).astype(np.float32), x)


def circuit_agreement(circuit: DecodedCircuit, network_output: Any, x: Any) -> float:
    """Fraction of (sample, output) entries where the decoded circuit's output on x
    (N, n) equals the network's own prediction ``network_output > 0``.
    ``network_output`` (N, O) may be logits or 0/1 predictions (``> 0`` keeps those)."""
    y_net = _to_numpy(network_output, "network_output")
    y_circ = _to_numpy(circuit.evaluate(x))
    if y_net.shape != y_circ.shape:
        raise ValueError(f"network_output must have shape {tuple(y_circ.shape)}, got {tuple(y_net.shape)}")
    if y_net.size == 0:
        return math.nan
    return float(((y_net > 0) == (y_circ > 0.5)).mean())


def clause_recovery(
    decoded_clauses: Sequence[Clause], true_clauses: Sequence[Clause], min_jaccard: float = 0.5
) -> dict[str, Any]:
    """Precision, recall and F1 of discovered clauses against true clauses.

    Matching rule: clauses are compared as sets of literals ``(var, positive)`` (a
    flipped polarity is a different literal) by Jaccard similarity; an optimal
    one-to-one assignment maximising total Jaccard is found with
    ``scipy.optimize.linear_sum_assignment``, and an assigned pair counts as a match
    when its Jaccard is ``>= min_jaccard`` (default 0.5). ``precision = matched /
    decoded``, ``recall = matched / true`` (0 when the denominator is 0, 1.0 for
    both when both lists are empty). Also returns ``n_exact`` (matches with Jaccard
    1), ``mean_jaccard`` over matches, and ``matches`` as ``(decoded, true,
    jaccard)`` triples.
    """
    if not 0 < min_jaccard <= 1:
        raise ValueError(f"min_jaccard must lie in (0, 1], got {min_jaccard!r}")
    dec = _check_clauses(decoded_clauses, None)
    tru = _check_clauses(true_clauses, None)
    D, T = len(dec), len(tru)
    if D == 0 or T == 0:
        both = D == 0 and T == 0
        v = 1.0 if both else 0.0
        return {"precision": v, "recall": v, "f1": v, "n_matched": 0, "n_decoded": D, "n_true": T,
                "n_exact": 0, "mean_jaccard": math.nan, "matches": []}
    from scipy import sparse
    from scipy.optimize import linear_sum_assignment

    def incidence(cls: list[Clause], n_lits: int) -> sparse.csr_matrix:
        rows = [c for c, clause in enumerate(cls) for _ in clause]
        cols = [2 * v + int(p) for clause in cls for v, p in clause]
        return sparse.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(len(cls), n_lits))

    n_lits = 2 * (max(v for clause in dec + tru for v, _ in clause) + 1)
    Md, Mt = incidence(dec, n_lits), incidence(tru, n_lits)
    inter = (Md @ Mt.T).toarray()  # (D, T)
    sd = np.array([len(c) for c in dec], dtype=np.float64)
    st = np.array([len(c) for c in tru], dtype=np.float64)
    J = inter / (sd[:, None] + st[None, :] - inter)
    rows, cols = linear_sum_assignment(J, maximize=True)
    matches = [(int(r), int(c), float(J[r, c])) for r, c in zip(rows, cols) if J[r, c] >= min_jaccard - 1e-12]
    k = len(matches)
    precision, recall = k / D, k / T
    f1 = 2 * precision * recall / (precision + recall) if k else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "n_matched": k,
        "n_decoded": D,
        "n_true": T,
        "n_exact": sum(1 for m in matches if m[2] >= 1.0 - 1e-12),
        "mean_jaccard": float(np.mean([m[2] for m in matches])) if matches else math.nan,
        "matches": matches,
    }
