"""Sign codes: each weight categorised into {-1, 0, +1} by its own unit's threshold (SPEC §5).

``tau`` is set per row (a hidden neuron's incoming weights, an output's readouts) from its own
weights, by default a two-cluster split of its ``|w|``, so codes do not change when neurons are
permuted or rescaled. Readouts are judged by their contribution ``W2[o, i] * peak[i]``
(:func:`neuron_peaks`).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Sequence, TypeVar, Union

import numpy as np
import torch

from fci.metrics import (
    Clause,
    _check_clauses,
    _float_array,
    _like,
    _weights_2d,
)

__all__ = ["sign_codes", "literal_codes", "neuron_peaks", "Threshold", "Relative"]


log = logging.getLogger(__name__)


ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


Threshold = Union[float, str]
"""A sign threshold: a number (its meaning set by ``relative``) or ``"auto"``."""


Relative = Union[str, bool]
"""Where a numeric threshold is measured: ``"neuron"`` (each unit's own weights),
``"global"`` (the whole matrix, the former rule) or ``"absolute"``. The booleans
``True`` (``"neuron"``) and ``False`` (``"absolute"``) are deprecated (removed in fci 0.3)."""


_MODES = ("neuron", "global", "absolute")
_DEPRECATED_MODES = {True: "neuron", False: "absolute"}  # the booleans of fci 0.1; removed in fci 0.3


_SEPARATION = 0.8  # a two-cluster split must explain 80% of a row's variance to count


_SPLIT_ROWS = 512  # rows per chunk of the two-cluster split (bounds its float64 scratch memory)


def _check_rule(threshold: Threshold, relative: Relative) -> tuple[float | None, str]:
    """(numeric threshold or None for "auto", mode), or ValueError naming the bad field."""
    if isinstance(relative, bool):
        mode = _DEPRECATED_MODES[relative]
        warnings.warn(f"relative={relative} is deprecated and will be removed in fci 0.3; pass relative={mode!r}",
                      DeprecationWarning, stacklevel=3)
    elif relative in _MODES:
        mode = str(relative)
    else:
        raise ValueError(f"relative must be 'neuron', 'global' or 'absolute', got {relative!r}")
    if isinstance(threshold, str):
        if threshold != "auto":
            raise ValueError(f"threshold must be a number or 'auto', got {threshold!r}")
        if mode == "absolute":
            raise ValueError("threshold='auto' is data-driven and needs relative='neuron' or 'global', got relative='absolute'")
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
    """(O, H) int8 readout categories. With per-unit thresholds (``relative="neuron"``) a
    readout is judged by its contribution ``R[o, i] = W2[o, i] * peak[i]`` within
    output o: a number t codes ``|R| > t * max_i |R[o, i]|``; ``"auto"`` splits the
    positive contributions and the negative ones separately (two-cluster split of
    each, as in :func:`sign_codes`), so strong inhibitors do not hide the neurons
    that vote for the output; a split is used only when it explains at least 80% of
    the contributions' variance (two clear clusters), else every non-zero
    contribution of that sign codes (readouts spread over a continuum, e.g. equal readout weights
    on neurons of unequal peaks, all count). The ``"global"`` and absolute rules read raw ``W2``
    (the former rule)."""
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


def sign_codes(W1: ArrayT, threshold: Threshold = "auto", relative: Relative = "neuron") -> ArrayT:
    """Sign categories of W1 (H, n) -> (H, n) int64 in {-1, 0, +1}.

    ``+1`` if ``w > tau``, ``-1`` if ``w < -tau`` (strict), else 0. ``tau`` per rule:

    - ``threshold="auto"`` (default), ``relative="neuron"``: per neuron, the two-cluster
      split of its ``|w|`` (with a zero anchor; see SPEC §5): ``tau_i`` is the largest
      ``|w|`` of the low cluster, so the neuron's strong weights code and its weak
      ones do not. A neuron with no non-zero weight codes to all 0.
    - a number ``t`` in [0, 1], ``relative="neuron"``: ``tau_i = t * max_v |W1[i, v]|``.
    - ``relative="global"``: ``tau = t * max|W1|`` over the whole matrix (the
      former rule; with ``"auto"``, one split of all ``|W1|``).
    - ``relative="absolute"``: ``tau = t``.

    Column ``v`` is the variable code of ``x_v``. Masked weights are 0 in effective
    weights, hence code 0.
    """
    S = _signs(_weights_2d(W1, "W1"), threshold, relative)
    return _like(S.astype(np.int64), W1)


def literal_codes(
    W1: ArrayT, clauses: Sequence[Clause], threshold: Threshold = "auto", relative: Relative = "neuron"
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


def _bias(b1: Any | None, H: int) -> np.ndarray | None:
    if b1 is None:
        return None
    b = _float_array(b1, "b1")
    if b.shape != (H,):
        raise ValueError(f"b1 must have shape (H={H},), got {tuple(b.shape)}")
    return b
