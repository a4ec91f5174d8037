"""Feature channels of known clauses, their collisions and graphs (SPEC §5).

A clause's channel is the set of hidden neurons that every literal of the clause excites;
channels that share neurons collide. For a CNF clause (``form="cnf"``, an OR) the
channel is that of its falsifying term ``¬l1 ∧ … ∧ ¬lk``: the neurons every literal of
the clause *inhibits*, which detect that the clause is false and vote against the
output (readout code -1). A CNF is the negation of the DNF over those terms, so this is
the DNF rule read through the negation. Everything is vectorised over neurons and clauses:
channels of 1,000 clauses on a ``(4096, 4096)`` layer take well under a second
(``python -m benchmarks.codes``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import networkx as nx
import numpy as np

from fci.codes.signs import ArrayT, Relative, Threshold, _bias, _peak_array, _peaks, _readout_signs, _signs
from fci.metrics import (
    Clause,
    _capacity_np,
    _check_clauses,
    _clause_var_index,
    _like,
    _to_numpy,
    _weights_2d,
)
from fci.tasks import _check_form, falsifying_terms, format_clause

__all__ = ["channel_membership", "clause_channels", "readout_votes", "polysemanticity", "collision_matrix", "CollisionGraph", "collision_graph", "channel_graph", "clause_table", "ClauseSplitView", "split_view", "ChannelCode", "channel_code", "code_bound"]


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


def _channel_terms(canon: list[Clause], form: str) -> list[Clause]:
    """The conjunctions whose channels are read: the clauses themselves for a DNF,
    their falsifying terms for a CNF."""
    return canon if _check_form(form) == "dnf" else falsifying_terms(canon)


def _vote_sign(form: str) -> int:
    """The readout code of a vote: +1 for a DNF channel (it raises the output), -1 for
    a CNF channel (it detects a false clause and lowers the output)."""
    return 1 if _check_form(form) == "dnf" else -1


def _codes_and_membership(W1: Any, clauses: Sequence[Any], threshold: Threshold, relative: Relative,
                          form: str = "dnf"):
    W = _weights_2d(W1, "W1")
    canon = _check_clauses(clauses, W.shape[1])
    terms = _channel_terms(canon, form)
    S = _signs(W, threshold, relative)
    return W, canon, S, _membership_np(S, terms)


def _count_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer counts ``a @ b`` of bool matrices via float32 BLAS (exact below 2**24)."""
    return np.rint(a.astype(np.float32) @ b.astype(np.float32)).astype(np.int64)


def channel_membership(
    W1: ArrayT, clauses: Sequence[Clause], threshold: Threshold = "auto", relative: Relative = "neuron",
    form: str = "dnf",
) -> ArrayT:
    """(H, C) bool: neuron i belongs to clause c's feature channel, i.e. every literal
    of clause c excites neuron i (``form="cnf"``: inhibits it)."""
    _, _, _, A = _codes_and_membership(W1, clauses, threshold, relative, form)
    return _like(A, W1)


def clause_channels(
    W1: Any, clauses: Sequence[Clause], threshold: Threshold = "auto", relative: Relative = "neuron",
    form: str = "dnf",
) -> list[list[int]]:
    """Feature channel of every clause: the sorted neurons that every literal of the
    clause excites (literal code +1). With ``form="cnf"`` the clauses are ORs and a
    channel is that of the clause's falsifying term: the neurons every literal of the
    clause inhibits (literal code -1). W1: (H, n) -> C lists of Python ints."""
    _, _, _, A = _codes_and_membership(W1, clauses, threshold, relative, form)
    return _channels_from_membership(A)


def readout_votes(
    W2: ArrayT, channels: Sequence[Sequence[int]], threshold: Threshold = "auto", relative: Relative = "neuron",
    peak: Any | None = None, form: str = "dnf",
) -> ArrayT:
    """(C, O) int64: how many neurons of each channel vote for each output. W2: (O, H).

    A vote is a readout code ``+1`` (``form="cnf"``: ``-1``, a channel that detects a
    false clause votes against the output): with per-unit thresholds (``relative="neuron"``) the
    code of the contribution ``W2[o, i] * peak[i]`` within output o, ``peak`` being
    :func:`neuron_peaks` (None: every neuron taken at peak 1, i.e. raw ``W2``, which
    is not scale-free); with ``"global"`` / absolute thresholds the code of raw
    ``W2``. A clause's readout is the outputs with a vote > 0."""
    W = _weights_2d(W2, "W2")
    sign = _vote_sign(form)
    A = _membership_from_channels(channels, W.shape[1])  # (H, C)
    votes = _readout_signs(W, _peak_array(peak, W.shape[1]), threshold, relative) == sign  # (O, H)
    return _like(_count_matmul(A.T, votes.T), W2)  # (C, O)


def polysemanticity(
    W1: ArrayT, clauses: Sequence[Clause], threshold: Threshold = "auto", relative: Relative = "neuron",
    form: str = "dnf",
) -> ArrayT:
    """(H,) int64: for each neuron, the number of clauses whose channel holds it."""
    _, _, _, A = _codes_and_membership(W1, clauses, threshold, relative, form)
    return _like(A.sum(axis=1).astype(np.int64), W1)


def collision_matrix(
    W1: ArrayT, clauses: Sequence[Clause], threshold: Threshold = "auto", relative: Relative = "neuron",
    form: str = "dnf",
) -> ArrayT:
    """(C, C) int64 shared-neuron counts between clause channels (``form`` as in
    :func:`clause_channels`); the diagonal is each channel's size. Two clauses collide
    when their entry is > 0."""
    _, _, _, A = _codes_and_membership(W1, clauses, threshold, relative, form)
    return _like(_count_matmul(A.T, A), W1)


_OTHER_FORM = {"dnf": "cnf", "cnf": "dnf"}


@dataclass(frozen=True)
class ChannelCode:
    """The channels of a network's clauses read as a code (SPEC §5, *Channel codes*).

    Attributes:
        sizes: ``(C,)`` units in each clause's channel.
        overlap: ``(C, C)`` units two channels share (the diagonal is ``sizes``).
        distinct: ``(C,)`` the channel is non-empty and no other clause's channel
            contains it (an identical channel counts as contained): the channel
            identifies its clause.
        private: ``(C,)`` the channel is non-empty and shares no unit with any other
            clause's channel: a code with overlap ``s = 0``.
        orientation: ``"form"`` (channels of the task's form only) or ``"both"``
            (a unit counts when every literal of the clause excites it or every
            literal inhibits it).
    """

    sizes: np.ndarray
    overlap: np.ndarray
    distinct: np.ndarray
    private: np.ndarray
    orientation: str

    @property
    def n_channels(self) -> int:
        """Clauses with a non-empty channel."""
        return int((self.sizes > 0).sum())

    @property
    def n_distinct(self) -> int:
        return int(self.distinct.sum())

    @property
    def n_private(self) -> int:
        return int(self.private.sum())

    @property
    def median_size(self) -> float:
        """Median channel size over the clauses with a channel (NaN when none has one)."""
        s = self.sizes[self.sizes > 0]
        return float(np.median(s)) if s.size else float("nan")

    @property
    def max_overlap(self) -> int:
        """The most units two clauses' channels share (0 with fewer than two clauses)."""
        if self.overlap.shape[0] < 2:
            return 0
        off = self.overlap.copy()
        np.fill_diagonal(off, 0)
        return int(off.max())


def channel_code(
    W1: Any, clauses: Sequence[Clause], threshold: Threshold = "auto", relative: Relative = "neuron",
    form: str = "dnf", orientation: str = "form",
) -> ChannelCode:
    """Read the clauses' channels as a code: their sizes, pairwise overlaps, and which
    clauses have a distinct or a private channel. W1: (H, n).

    ``orientation="both"`` also counts units that every literal of a clause
    inhibits (the other form's channel): with one output per clause either
    orientation computes the clause alone (SPEC §5), so a network may hold it
    either way."""
    if orientation not in ("form", "both"):
        raise ValueError(f"orientation must be 'form' or 'both', got {orientation!r}")
    _, canon, S, A = _codes_and_membership(W1, clauses, threshold, relative, form)  # A: (H, C)
    if orientation == "both":
        A = A | _membership_np(S, _channel_terms(canon, _OTHER_FORM[_check_form(form)]))
    overlap = _count_matmul(A.T, A)  # (C, C)
    sizes = np.diagonal(overlap).copy()
    off = overlap.copy()
    np.fill_diagonal(off, 0)
    contained = (off >= sizes[:, None]) & (sizes[:, None] > 0)  # contained[c, d]: channel c inside channel d
    nonempty = sizes > 0
    return ChannelCode(sizes=sizes, overlap=overlap, distinct=nonempty & ~contained.any(axis=1),
                       private=nonempty & ~(off > 0).any(axis=1), orientation=orientation)


def code_bound(units: int, size: int, overlap: int) -> int:
    """The Johnson bound: at most how many ``size``-unit channels ``units`` units hold
    when any two channels share at most ``overlap`` units,
    ``floor(U/m · floor((U-1)/(m-1) · … floor((U-s)/(m-s))))`` (U units, m = size,
    s = overlap). Exact for ``s = 0`` (``floor(U/m)``: disjoint channels) and for
    ``s = m - 1`` (every m-subset, ``C(U, m)``); for ``s`` fixed it grows as
    ``U**(s+1)``."""
    for name, v, low in (("units", units, 0), ("size", size, 1), ("overlap", overlap, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    if overlap >= size:
        raise ValueError(f"overlap must be below size (two channels of {size} units sharing {overlap} are one), got {overlap}")
    count = 1
    for i in range(int(overlap), -1, -1):
        count = (int(units) - i) * count // (int(size) - i)
    return max(count, 0)


class CollisionGraph(nx.Graph):
    """A networkx.Graph of clause collisions (see :func:`collision_graph`) whose repr
    says what it holds: ``CollisionGraph(8 clauses, 5 collisions, 4 components)``."""

    def __repr__(self) -> str:
        C, E = self.number_of_nodes(), self.number_of_edges()
        K = nx.number_connected_components(self) if C else 0
        return (f"CollisionGraph({C} clause{'s' * (C != 1)}, {E} collision{'s' * (E != 1)}, "
                f"{K} component{'s' * (K != 1)})")

    __str__ = __repr__


def _collision_graph_np(canon: list[Clause], A: np.ndarray, form: str = "dnf") -> CollisionGraph:
    M = _count_matmul(A.T, A)  # (C, C)
    channels = _channels_from_membership(A)
    g = CollisionGraph()
    g.add_nodes_from(
        (c, {"clause": canon[c], "label": format_clause(canon[c], form), "channel": channels[c],
             "size": len(channels[c])})
        for c in range(len(canon))
    )
    i, j = np.nonzero(np.triu(M, k=1))
    g.add_edges_from((int(a), int(b), {"weight": int(w)}) for a, b, w in zip(i, j, M[i, j]))
    return g


def collision_graph(
    W1: Any, clauses: Sequence[Clause], threshold: Threshold = "auto", relative: Relative = "neuron",
    form: str = "dnf",
) -> CollisionGraph:
    """A :class:`CollisionGraph` (a networkx.Graph): clauses as nodes ``0..C-1`` (attributes ``clause``, ``label``, ``channel``,
    ``size``), an edge per colliding pair weighted by shared neurons (``weight``).
    ``nx.connected_components`` gives the entangled clause groups. ``form`` as in
    :func:`clause_channels`."""
    _, canon, _, A = _codes_and_membership(W1, clauses, threshold, relative, form)
    return _collision_graph_np(canon, A, form)


def _literal_node(var: int, positive: bool) -> str:
    return f"x{var}" if positive else f"~x{var}"


def channel_graph(
    W1: Any,
    W2: Any,
    clauses: Sequence[Clause] | None = None,
    threshold: Threshold = "auto",
    relative: Relative = "neuron",
    neurons: str = "channels",
    b1: Any | None = None,
    form: str = "dnf",
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
    codes to), or ``"all"``. ``form`` as in :func:`clause_channels`.
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
        A = _membership_np(S1, _channel_terms(canon, form))
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
                               "label": format_clause(((v, p),)), "clauses": lit_clauses[(v, p)]})
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
    relative: Relative = "neuron",
    b1: Any | None = None,
    form: str = "dnf",
) -> list[dict[str, Any]]:
    """One JSON-ready row per clause for an explorer table: ``clause`` index,
    ``literals`` (e.g. ``"x0 ∧ ¬x3"``, or ``"x0 ∨ ¬x3"`` under ``form="cnf"``, whose
    channels and votes are as in :func:`clause_channels`), ``channel``, ``readout`` (outputs with a vote;
    empty when ``W2`` is None), ``votes`` (per output), ``collisions`` (ids of clauses
    whose channel shares a neuron), ``polysemantic`` (channel neurons shared with
    another clause) and ``capacity`` (mean feature capacity over the clause's
    variables). Readouts as in :func:`readout_votes`, with peaks from ``W1`` and
    ``b1`` (None: zero biases)."""
    W, canon, _, A = _codes_and_membership(W1, clauses, threshold, relative, form)
    channels = _channels_from_membership(A)
    M = _count_matmul(A.T, A)
    poly = A.sum(axis=1)
    cap = _capacity_np(W)
    if W2 is not None:
        Wb = _weights_2d(W2, "W2")
        if Wb.shape[1] != W.shape[0]:
            raise ValueError(f"W2 must have shape (O, H={W.shape[0]}), got {tuple(Wb.shape)}")
        S2 = _readout_signs(Wb, _peaks(W, _bias(b1, W.shape[0])), threshold, relative)
        votes = _count_matmul(A.T, (S2 == _vote_sign(form)).T)  # (C, O)
    else:
        votes = np.zeros((len(canon), 0), dtype=np.int64)
    rows = []
    for c, clause in enumerate(canon):
        others = np.flatnonzero(M[c] > 0)
        rows.append({
            "clause": c,
            "literals": format_clause(clause, form),
            "channel": channels[c],
            "readout": np.flatnonzero(votes[c] > 0).tolist(),
            "votes": votes[c].tolist(),
            "collisions": [int(o) for o in others if o != c],
            "polysemantic": [i for i in channels[c] if poly[i] > 1],
            "capacity": float(cap[[v for v, _ in clause]].mean()),
        })
    return rows


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
    relative: Relative = "neuron",
    child_mask: Any | None = None,
    form: str = "dnf",
) -> list[ClauseSplitView]:
    """Per-clause before/after view of an FPE child and its parent.

    parent_W1: (H, n); child_W1: (H_child, n), after fine-tuning; parent_index:
    (H_child,) ints, the parent of every child neuron (``arange(H_child) // alpha``
    for the contiguous layout of SPEC §3, but any map is accepted); child_mask:
    (H_child, n) first-layer 0/1 mask of the child (None: ``child_W1 != 0``).
    Each model's neurons are thresholded by the same rule as :func:`sign_codes`;
    ``form`` as in :func:`clause_channels`.
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
    terms = _channel_terms(canon, form)

    A_parent = _membership_np(_signs(Wp, threshold, relative), terms)  # (Hp, C)
    A_child = _membership_np(_signs(Wc, threshold, relative), terms)  # (Hc, C)
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
            label=format_clause(clause, form),
            parent_channel=parent_channels[c],
            children_carrying_whole=carrying,
            child_channel=child_ch,
            preserved=preserved,
            new=[j for j in child_ch if not in_parent[j]],
            lost=[p for p in parent_channels[c] if p not in hit_parents],
        ))
    return views
