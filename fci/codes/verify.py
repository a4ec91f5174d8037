"""Verifying a reading: the network's own predictions, a circuit's agreement with them, the
true formula's agreement (the reference a reading is compared with) and clause recovery
(SPEC §5, *Verification*).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from fci.codes.circuit import DecodedCircuit, _unpack_weights
from fci.codes.signs import ArrayT
from fci.metrics import (
    Clause,
    _check_clauses,
    _like,
    _to_numpy,
)
from fci.tasks import _check_form, falsifying_terms

__all__ = ["network_predictions", "circuit_agreement", "ceiling_agreement", "clause_recovery"]


def ceiling_agreement(true_clauses: Sequence[Clause], network_output: Any, x: Any,
                      groups: Sequence[Sequence[int]] | None = None, form: str = "dnf") -> float:
    """The ceiling of clause-based decoding: the agreement with the network's
    predictions ``network_output > 0`` (N, O) of the task's *true* formula on ``x``
    (N, n): output o is the OR of the true clauses in ``groups[o]`` (``task.groups``;
    None: every clause when O == 1, clause o when O == C), or with ``form="cnf"``
    (``task.form``) the AND of those clauses, each an OR of its literals. A decoder
    that reaches it agrees with the network as well as the true clauses do."""
    y_net = _to_numpy(network_output, "network_output")
    if y_net.ndim != 2:
        raise ValueError(f"network_output must be 2-D (N, O), got shape {tuple(y_net.shape)}")
    O = y_net.shape[1]
    canon = _check_clauses(true_clauses, None)
    if _check_form(form) == "cnf":
        # A CNF is the negated DNF of its falsifying terms, and agreement is unchanged
        # when both sides are negated.
        canon = falsifying_terms(canon)
        y_net = np.logical_not(y_net > 0).astype(np.float32)
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
