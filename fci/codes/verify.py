"""Verifying a reading: the network's own predictions, a circuit's agreement with them, the
true formula's agreement (the reference a reading is compared with) and clause recovery
(SPEC §5, *Verification*).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from fci.codes.circuit import DecodedCircuit
from fci.codes.network import Network, ModuleNetwork, read_network
from fci.codes.signs import ArrayT
from fci.metrics import (
    Clause,
    _check_clauses,
    _like,
    _to_numpy,
)
from fci.tasks import _check_form

__all__ = ["network_predictions", "circuit_agreement", "true_formula_agreement", "reading_gap", "ceiling_agreement",
           "clause_recovery"]


def true_formula_agreement(true_clauses: Sequence[Clause], network_output: Any, x: Any,
                           groups: Sequence[Sequence[int]] | None = None, form: str = "dnf") -> float:
    """The reference a reading is compared with: the agreement with the network's
    predictions (``network_output`` (N, O) logits or 0/1, or the network itself) of
    the task's *true* formula on ``x`` (N, n). ``form="dnf"``: output o is the OR of
    the true clauses (conjunctions) in ``groups[o]``; ``"cnf"``: the AND of the true
    clauses (disjunctions) in it (``task.groups``; None: every clause when O == 1,
    clause o when O == C). For a one-output task read on its test inputs it is the
    network's test accuracy. It is a reference, not a bound: a reading of what the
    network computes may agree with the network better than the true formula does
    (the network is not the formula it was trained on)."""
    _check_form(form)
    xa = _to_numpy(x, "x")
    if xa.ndim != 2:
        raise ValueError(f"x must have shape (N, n), got {tuple(xa.shape)}")
    y_net = _predictions(network_output, xa)
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
    readouts = [[o for o, g in enumerate(groups) if c in g] for c in range(len(canon))]
    circuit = DecodedCircuit(clauses=canon, channels=[[] for _ in canon], readouts=readouts,
                             votes=[[] for _ in canon], default=[False] * O, n_vars=xa.shape[1], n_outputs=O,
                             threshold=None, relative=None, similarity=None, method="true", form=form)
    return circuit_agreement(circuit, y_net, xa)


def ceiling_agreement(true_clauses: Sequence[Clause], network_output: Any, x: Any,
                      groups: Sequence[Sequence[int]] | None = None, form: str = "dnf") -> float:
    """Deprecated alias of :func:`true_formula_agreement` (the true formula's agreement
    is a reference, not a ceiling: a reading may exceed it); warns, and will be
    removed in fci 0.3."""
    warnings.warn("ceiling_agreement is renamed true_formula_agreement (a reference a reading may exceed, not a "
                  "ceiling); the old name will be removed in fci 0.3", DeprecationWarning, stacklevel=2)
    return true_formula_agreement(true_clauses, network_output, x, groups, form)


def reading_gap(circuit: DecodedCircuit, true_clauses: Sequence[Clause], network_output: Any, x: Any,
                groups: Sequence[Sequence[int]] | None = None, form: str = "dnf") -> dict[str, float]:
    """A reading beside its reference on the same inputs ``x`` (N, n): ``agreement``
    (the circuit's with the network), ``true_formula_agreement`` and ``gap`` =
    agreement - reference. A positive gap is no error: the reading describes the
    network better than the formula it was trained on does."""
    xa = _to_numpy(x, "x")
    y_net = _predictions(network_output, xa)
    agreement = circuit_agreement(circuit, y_net, xa)
    reference = true_formula_agreement(true_clauses, y_net, xa, groups, form)
    return {"agreement": agreement, "true_formula_agreement": reference, "gap": agreement - reference}


def _is_network(obj: Any) -> bool:
    return isinstance(obj, (torch.nn.Module, Network, ModuleNetwork, tuple)) or hasattr(obj, "effective_weights")


def _predictions(network_output: Any, xa: np.ndarray) -> np.ndarray:
    """(N, O) array of the network's outputs: given, or computed when a network is passed."""
    if _is_network(network_output):
        return _to_numpy(network_predictions(network_output, xa))
    return _to_numpy(network_output, "network_output")


def network_predictions(model_or_weights: Any, x: ArrayT, activation: str | None = None) -> ArrayT:
    """(N, O) float32 0/1 predictions ``logit > 0`` on ``x`` (N, n) of any network
    :func:`fci.codes.network.read_network` reads with ``whole=True`` (a MaskedMLP or
    an nn.Sequential of any depth, a module evaluated through its forward, or a weight
    list ``(W1, b1, ..., WL, bL)`` whose hidden activation is ``activation``, default
    ``"relu"``); same kind as x."""
    net = read_network(model_or_weights, activation, whole=True)
    xa = _to_numpy(x, "x")
    if xa.ndim != 2 or xa.shape[1] != net.n_in:
        raise ValueError(f"x must have shape (N, n={net.n_in}), got {tuple(xa.shape)}")
    return _like(net.predict(xa).astype(np.float32), x)


def circuit_agreement(circuit: DecodedCircuit, network_output: Any, x: Any) -> float:
    """Fraction of (sample, output) entries where the decoded circuit's output on x
    (N, n) equals the network's own prediction ``network_output > 0``.
    ``network_output`` (N, O) may be logits or 0/1 predictions (``> 0`` keeps those),
    or the network itself (anything :func:`network_predictions` reads). The agreement
    is measured on ``x``: name its distribution beside it."""
    y_net = _predictions(network_output, _to_numpy(x, "x"))
    y_circ = _to_numpy(circuit.evaluate(x))
    if y_net.shape != y_circ.shape:
        raise ValueError(f"network_output must have shape {tuple(y_circ.shape)}, got {tuple(y_net.shape)}")
    if y_net.size == 0:
        return math.nan
    return float(((y_net > 0) == (y_circ > 0.5)).mean())


def clause_recovery(
    decoded_clauses: Sequence[Clause], true_clauses: Sequence[Clause], min_jaccard: float = 0.5
) -> dict[str, Any]:
    """Precision, recall and F1 of discovered clauses against true clauses, and the
    same counting exact matches only.

    Matching rule: clauses are compared as sets of literals ``(var, positive)`` (a
    flipped polarity is a different literal) by Jaccard similarity; an optimal
    one-to-one assignment maximising total Jaccard is found with
    ``scipy.optimize.linear_sum_assignment``, and an assigned pair counts as a match
    when its Jaccard is ``>= min_jaccard`` (default 0.5). ``precision = matched /
    decoded``, ``recall = matched / true`` (0 when the denominator is 0, 1.0 for
    both when both lists are empty). A loose match can hide a misreading (three
    literals of a four-literal clause match at Jaccard 0.75), so beside them come
    ``n_exact`` (decoded clauses identical to a true clause, each counted once) and
    ``exact_precision``, ``exact_recall``, ``exact_f1`` from those. Also returns
    ``mean_jaccard`` over matches and ``matches`` as ``(decoded, true, jaccard)``
    triples.
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
                "n_exact": 0, "exact_precision": v, "exact_recall": v, "exact_f1": v, "mean_jaccard": math.nan,
                "matches": []}
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
    precision, recall, f1 = _prf(k, D, T)
    exact = len({frozenset(c) for c in dec} & {frozenset(c) for c in tru})
    exact_precision, exact_recall, exact_f1 = _prf(exact, D, T)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "n_matched": k,
        "n_decoded": D,
        "n_true": T,
        "n_exact": exact,
        "exact_precision": exact_precision,
        "exact_recall": exact_recall,
        "exact_f1": exact_f1,
        "mean_jaccard": float(np.mean([m[2] for m in matches])) if matches else math.nan,
        "matches": matches,
    }


def _prf(k: int, D: int, T: int) -> tuple[float, float, float]:
    """Precision k / D, recall k / T and their harmonic mean (0 when k is 0)."""
    precision, recall = k / D, k / T
    return precision, recall, (2 * precision * recall / (precision + recall) if k else 0.0)
