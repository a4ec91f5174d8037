"""Interference metrics on effective first-layer weights, computational capacity,
trial summaries and the convergence rule (SPEC §4).

Tests over trials (p-values, corrections, verdicts) live in `fci.stats`.

Every array function accepts a torch tensor or a numpy array and returns the same
kind (torch results land on the input's device). The work is done in numpy,
vectorised (one BLAS product each); a ``(4096, 4096)`` first layer takes one to
three seconds per metric on two CPU cores (see ``python -m benchmarks.codes``).

Weights follow torch: ``W1`` has shape ``(H, n)`` (neurons x input variables).
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar, Union

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = [
    "gram",
    "feature_capacity",
    "clause_capacity",
    "clause_mean_capacity",
    "cosine_interference",
    "cosine_interference_stats",
    "CAPACITY_EPS",
    "CapacityResult",
    "computational_capacity",
    "fold_change",
    "relative_improvement",
    "accuracy_per_parameter",
    "majority_accuracy",
    "accuracy_resolution",
    "trial_stats",
    "LATE_WINDOW",
    "FLAT_ABS",
    "FLAT_REL",
    "late_drop",
    "is_flat",
    "converged",
]

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)
ArrayLike = Union[torch.Tensor, np.ndarray]
Clause = tuple[tuple[int, bool], ...]


# --------------------------------------------------------------------------- helpers
# Shared with fci.codes (private to the package).


def _to_numpy(x: Any, name: str = "array") -> np.ndarray:
    """``x`` (torch tensor, numpy array, or nested sequence) as a numpy array.

    Floating dtypes are kept (float32 stays float32, so threshold comparisons happen
    at the weights' own precision); bool and integer arrays are returned as they are.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.to(torch.float32)
        return t.cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}") from exc


def _like(result: np.ndarray, ref: Any) -> Any:
    """``result`` as the same kind as ``ref``: a tensor on ``ref``'s device if ``ref``
    is a tensor, else the numpy array itself."""
    if isinstance(ref, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(result)).to(ref.device)
    return result


def _float_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a finite floating numpy array (ints and bools become float64)."""
    a = _to_numpy(x, name)
    if a.dtype == object:
        raise ValueError(f"{name} must be numeric, got dtype object")
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return a


def _weights_2d(W: Any, name: str = "W1") -> np.ndarray:
    """A finite 2-D floating weight matrix, or ValueError naming ``name``."""
    a = _float_array(W, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows = neurons), got shape {tuple(a.shape)}")
    return a


def _check_clauses(clauses: Sequence[Sequence[Sequence[Any]]], n_vars: int | None) -> list[Clause]:
    """Canonical clauses: tuples of ``(int var, bool positive)`` with distinct,
    in-range variables. Raises ValueError for an empty clause, a malformed literal, a
    variable out of ``[0, n_vars)`` or a variable repeated within a clause."""
    if isinstance(clauses, (str, bytes)) or not hasattr(clauses, "__iter__"):
        raise ValueError(f"clauses must be a sequence of clauses, got {type(clauses).__name__}")
    out: list[Clause] = []
    for c, clause in enumerate(clauses):
        try:
            lits = list(clause)
        except TypeError:
            raise ValueError(f"clause {c} must be a sequence of (var, positive) pairs, got {clause!r}") from None
        if not lits:
            raise ValueError(f"clause {c} is empty; a clause needs at least one literal")
        canon = []
        seen = set()
        for lit in lits:
            try:
                var, positive = lit
            except (TypeError, ValueError):
                raise ValueError(f"clause {c}: literal {lit!r} is not a (var, positive) pair") from None
            if isinstance(var, (bool, np.bool_)) or not isinstance(var, (int, np.integer)):
                raise ValueError(f"clause {c}: variable {var!r} is not an integer")
            if not isinstance(positive, (bool, np.bool_)):
                raise ValueError(f"clause {c}: polarity {positive!r} of variable {var} is not a bool")
            var = int(var)
            if var < 0 or (n_vars is not None and var >= n_vars):
                bound = f"[0, {n_vars})" if n_vars is not None else ">= 0"
                raise ValueError(f"clause {c} names variable {var}, out of range {bound}")
            if var in seen:
                raise ValueError(f"clause {c} names variable {var} twice")
            seen.add(var)
            canon.append((var, bool(positive)))
        out.append(tuple(canon))
    return out


def _clause_var_index(clauses: Sequence[Clause], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded ``(C, kmax)`` variable indices (padding = ``pad``) and ``(C, kmax)`` bool
    polarities (padding = True) of canonical clauses."""
    C = len(clauses)
    kmax = max((len(c) for c in clauses), default=0)
    var = np.full((C, kmax), pad, dtype=np.int64)
    pos = np.ones((C, kmax), dtype=bool)
    for c, clause in enumerate(clauses):
        if clause:
            v, p = zip(*clause)
            var[c, : len(clause)] = v
            pos[c, : len(clause)] = p
    return var, pos


# --------------------------------------------------------------------------- interference


def gram(W1: ArrayT) -> ArrayT:
    """Gram matrix ``G = W1ᵀ W1`` of the input features. W1: (H, n) -> (n, n)."""
    W = _weights_2d(W1)
    return _like(W.T @ W, W1)


def _capacity_np(W: np.ndarray) -> np.ndarray:
    """Feature capacity from a numpy ``(H, n)`` matrix, see :func:`feature_capacity`."""
    G = W.T @ W  # (n, n)
    diag = np.diagonal(G)  # (n,)
    denom = np.einsum("ij,ij->j", G, G)  # (n,) sum_m G[j, m]^2 (G symmetric)
    cap = np.zeros(G.shape[0], dtype=G.dtype)
    ok = diag > 0
    cap[ok] = diag[ok] ** 2 / denom[ok]
    return cap


def feature_capacity(W1: ArrayT) -> ArrayT:
    """Capacity of every input feature, ``cap_j = G[j,j]² / Σ_m G[j,m]²`` (0 when
    ``G[j,j] == 0``), with ``G = W1ᵀW1``. W1: (H, n) -> (n,).

    1 for a feature orthogonal to all others, 1/2 for an antipodal pair, and
    ``Σ_j cap_j <= rank(W1) <= H``: how much of a neuron each feature gets to itself.
    """
    return _like(_capacity_np(_weights_2d(W1)), W1)


def clause_capacity(cap: ArrayT, clauses: Sequence[Clause]) -> ArrayT:
    """Per-clause capacity: the mean of ``cap`` (n,) over each clause's variables -> (C,)."""
    c = _float_array(cap, "cap")
    if c.ndim != 1:
        raise ValueError(f"cap must be 1-D (one value per variable), got shape {tuple(c.shape)}")
    canon = _check_clauses(clauses, c.shape[0])
    var, _ = _clause_var_index(canon, pad=c.shape[0])  # (C, kmax)
    padded = np.concatenate([c, np.zeros(1, dtype=c.dtype)])  # padding reads 0
    sizes = np.array([len(cl) for cl in canon], dtype=c.dtype)
    out = padded[var].sum(axis=1) / sizes if canon else np.zeros(0, dtype=c.dtype)
    return _like(out, cap)


def clause_mean_capacity(cap: ArrayLike, clauses: Sequence[Clause]) -> float:
    """Mean of ``cap`` (n,) over the union of clause variables (each variable counted
    once, distractors excluded); NaN when there are no clauses."""
    c = _float_array(cap, "cap")
    if c.ndim != 1:
        raise ValueError(f"cap must be 1-D (one value per variable), got shape {tuple(c.shape)}")
    canon = _check_clauses(clauses, c.shape[0])
    used = sorted({v for clause in canon for v, _ in clause})
    return float(c[used].mean()) if used else math.nan


def cosine_interference_stats(W1: ArrayLike) -> dict[str, float | int]:
    """Cosine similarity between neuron rows of W1 (H, n), over the pairs of distinct
    neurons whose rows are non-zero: ``abs_mean`` (mean |cos|), ``signed_mean`` (mean
    cos) and ``n_pairs``. Both means are NaN when fewer than two rows are non-zero."""
    W = _weights_2d(W1)
    norms = np.linalg.norm(W, axis=1)  # (H,)
    rows = W[norms > 0] / norms[norms > 0, None]  # (H', n) unit rows
    m = rows.shape[0]
    n_pairs = m * (m - 1) // 2
    if n_pairs == 0:
        return {"abs_mean": math.nan, "signed_mean": math.nan, "n_pairs": 0}
    cos = rows @ rows.T  # (H', H')
    np.clip(cos, -1.0, 1.0, out=cos)
    diag = np.diagonal(cos)
    # Sum over i < i' = (total - diagonal) / 2, for |cos| and cos alike.
    abs_sum = (np.abs(cos).sum(dtype=np.float64) - np.abs(diag).sum(dtype=np.float64)) / 2
    signed_sum = (cos.sum(dtype=np.float64) - diag.sum(dtype=np.float64)) / 2
    return {"abs_mean": float(abs_sum / n_pairs), "signed_mean": float(signed_sum / n_pairs), "n_pairs": int(n_pairs)}


def cosine_interference(W1: ArrayLike) -> float:
    """Mean |cos| between pairs of distinct non-zero neuron rows of W1 (H, n); NaN if
    fewer than two rows are non-zero. See :func:`cosine_interference_stats`."""
    return float(cosine_interference_stats(W1)["abs_mean"])


# --------------------------------------------------------------------------- computational capacity

CAPACITY_EPS = 0.02
"""The default error bound of :func:`computational_capacity`: a feature counts as
computed when its test accuracy is at least 98%."""


@dataclass(frozen=True)
class CapacityResult:
    """How many of the features asked a network computes (SPEC §4, computational capacity).

    Attributes:
        count: features whose test error is at most ``eps``.
        share: ``count / n_features``.
        per_feature_accuracy: ``(F,)`` float64 test accuracy of each feature.
        eps: the error bound.
        computed: ``(F,)`` bool, the features that count.
        constant_accuracy: ``(F,)`` float64 accuracy of the best constant output on
            each feature's labels, ``max(rate, 1 - rate)``: the floor a network that
            ignores its input reaches.
        trivial: features on which a constant output already has error at most
            ``eps``; ``count`` cannot tell computing them from ignoring them.
        n_samples: test samples ``N`` behind each accuracy.
    """

    count: int
    share: float
    per_feature_accuracy: np.ndarray
    eps: float
    computed: np.ndarray
    constant_accuracy: np.ndarray
    trivial: int
    n_samples: int

    @property
    def n_features(self) -> int:
        """Features asked, ``F``."""
        return int(self.per_feature_accuracy.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (arrays as lists)."""
        return {"count": self.count, "share": self.share, "eps": self.eps, "n_features": self.n_features,
                "n_samples": self.n_samples, "trivial": self.trivial,
                "per_feature_accuracy": self.per_feature_accuracy.tolist(), "computed": self.computed.tolist(),
                "constant_accuracy": self.constant_accuracy.tolist()}


def _binary_matrix(x: Any, name: str) -> np.ndarray:
    """``x`` as a 2-D bool ``(N, F)`` array of 0/1 values, or ValueError naming ``name``."""
    a = _to_numpy(x, name)
    if a.dtype == object or not (a.dtype == bool or np.issubdtype(a.dtype, np.number)):
        raise ValueError(f"{name} must be a numeric 0/1 array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N samples, F features), got shape {tuple(a.shape)}")
    if not ((a == 0) | (a == 1)).all():
        raise ValueError(f"{name} must hold only 0/1 values (threshold logits at 0 first, e.g. "
                         f"fci.codes.network_predictions)")
    return a.astype(bool)


def computational_capacity(predictions: Any, labels: Any, eps: float = CAPACITY_EPS) -> CapacityResult:
    """The features a network computes with error at most ``eps`` (SPEC §4).

    predictions, labels: ``(N, F)`` 0/1, the network's outputs and the true labels
    on a test set, one column per feature (a task with ``outputs="clauses"``: one
    output per clause). Feature f is *computed* when its accuracy over the N samples
    is at least ``1 - eps`` (to 1e-12, so that a decimal ``eps`` such as 0.3 admits
    an error rate of exactly 3/10). Returns the count, its share of the F features
    and the per-feature accuracies. Warns when some features' labels are so
    unbalanced that a constant output passes them (see ``CapacityResult.trivial``).
    """
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0.0 < float(eps) < 1.0:
        raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
    eps = float(eps)
    y_net = _binary_matrix(predictions, "predictions")
    y = _binary_matrix(labels, "labels")
    if y_net.shape != y.shape:
        raise ValueError(f"predictions and labels must have the same shape (N, F), got {tuple(y_net.shape)} "
                         f"and {tuple(y.shape)}")
    N, F = y.shape
    if N == 0 or F == 0:
        raise ValueError(f"need at least one sample and one feature, got shape (N={N}, F={F})")
    errors = (y_net != y).sum(axis=0)  # (F,)
    computed = errors / N <= eps + 1e-12  # (F,)
    rate = y.mean(axis=0)  # (F,) positive rate of each feature
    constant = np.maximum(rate, 1.0 - rate)  # (F,)
    trivial = int((1.0 - constant <= eps + 1e-12).sum())
    if trivial:
        warnings.warn(
            f"computational_capacity: {trivial} of {F} features have labels so unbalanced that a constant "
            f"output has error <= eps={eps:g}; the count cannot tell computing them from ignoring them "
            f"(draw balanced labels, e.g. p=0.5 with outputs='clauses')", stacklevel=2)
    count = int(computed.sum())
    return CapacityResult(count=count, share=count / F, per_feature_accuracy=1.0 - errors / N, eps=eps,
                          computed=computed, constant_accuracy=constant, trivial=trivial, n_samples=N)


# --------------------------------------------------------------------------- comparisons


def _binary(a: Any, b: Any, op) -> Any:
    """Apply ``op`` elementwise to numbers/arrays/tensors; return a's kind (float for
    Python scalars)."""
    ref = a if isinstance(a, (torch.Tensor, np.ndarray)) else b
    x = _to_numpy(a, "a").astype(np.float64)
    y = _to_numpy(b, "b").astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = op(x, y)
    if isinstance(ref, (torch.Tensor, np.ndarray)):
        return _like(np.asarray(out), ref)
    return float(out)


def fold_change(metric_fpe: Any, metric_dense: Any) -> Any:
    """``metric_fpe / metric_dense`` against the paired dense baseline (1.0 = no
    change). Elementwise; a zero baseline gives inf or NaN, as IEEE division does."""
    return _binary(metric_fpe, metric_dense, np.divide)


def relative_improvement(acc_fpe: Any, acc_dense: Any) -> Any:
    """``(acc_fpe - acc_dense) / acc_dense``, elementwise."""
    return _binary(acc_fpe, acc_dense, lambda a, b: (a - b) / b)


def accuracy_per_parameter(acc: Any, nnz: Any) -> Any:
    """``acc / nnz`` with ``nnz`` the non-zero parameter count (must be positive)."""
    if (_to_numpy(nnz, "nnz") <= 0).any():
        raise ValueError("nnz must be positive")
    return _binary(acc, nnz, np.divide)


def majority_accuracy(y: Any, loss: str = "bce") -> float:
    """The base rate of a test set: the accuracy of always predicting its majority.

    ``y``: ``(N,)`` class labels for ``loss="ce"`` (the most common class's share), or
    ``(N,)`` / ``(N, O)`` 0/1 targets for ``loss="bce"`` (per output the larger of the
    shares of ones and zeros, averaged over outputs, as multi-output accuracy is).
    A model at this accuracy has learned nothing the labels' balance does not give."""
    v = _to_numpy(y, "y")
    if v.size == 0:
        raise ValueError("y is empty: a test set needs samples")
    if loss == "ce":
        _, counts = np.unique(v.reshape(-1), return_counts=True)
        return float(counts.max() / v.size)
    if loss != "bce":
        raise ValueError(f"loss must be 'bce' or 'ce', got {loss!r}")
    v = v.reshape(v.shape[0], -1).astype(np.float64)  # (N, O)
    ones = (v > 0.5).mean(axis=0)  # (O,)
    return float(np.maximum(ones, 1.0 - ones).mean())


def accuracy_resolution(y: Any, loss: str = "bce") -> float:
    """The smallest step a test accuracy on ``y`` can take: ``1 / (N * O)`` for ``(N, O)``
    binary targets (accuracy is averaged over outputs), ``1 / N`` for class labels."""
    v = _to_numpy(y, "y")
    if v.size == 0:
        raise ValueError("y is empty: a test set needs samples")
    return 1.0 / (v.shape[0] if loss == "ce" else v.size)


# --------------------------------------------------------------------------- statistics


def _vector(values: Any, name: str) -> np.ndarray:
    v = _to_numpy(values, name)
    if v.dtype == object:
        raise ValueError(f"{name} must be numeric")
    if v.ndim > 1:
        raise ValueError(f"{name} must be 1-D (one value per trial)")
    return v.astype(np.float64).reshape(-1)


def trial_stats(values: Any) -> dict[str, float | int]:
    """Mean, sample standard deviation, standard error of the mean and count over
    trials. With one trial ``std`` and ``sem`` are NaN; with none, everything but
    ``n`` is NaN."""
    v = _vector(values, "values")
    n = int(v.size)
    mean = float(v.mean()) if n else math.nan
    std = float(v.std(ddof=1)) if n >= 2 else math.nan
    sem = std / math.sqrt(n) if n >= 2 else math.nan
    return {"mean": mean, "std": std, "sem": sem, "n": n}


# --------------------------------------------------------------------------- convergence

LATE_WINDOW = 0.1
"""The convergence window: the last 10% of a phase's epochs, compared with the 10% before."""
FLAT_ABS = 0.005
"""A loss curve is flat when its late drop is below this (absolute, in loss units) ..."""
FLAT_REL = 0.05
"""... or below this fraction of the earlier window's mean loss (5%)."""


def late_drop(losses: Any, window: float = LATE_WINDOW) -> tuple[float, float]:
    """How much a train-loss curve still fell at the end (SPEC §4, convergence):
    with ``w = max(1, round(window * epochs))``, ``prev`` the mean loss over the
    epochs ``[-2w, -w)`` and ``last`` the mean over the final ``w``, returns
    ``(prev - last, (prev - last) / prev)`` (relative drop 0 when ``prev <= 0``).
    Both are NaN when the curve has fewer than ``2w`` epochs; a negative drop
    means the loss rose (noise)."""
    if not 0 < window <= 0.5:
        raise ValueError(f"window must be in (0, 0.5], got {window}")
    L = _vector(losses, "losses")
    w = max(1, int(round(window * L.size)))
    if L.size < 2 * w:
        return math.nan, math.nan
    prev, last = float(L[-2 * w:-w].mean()), float(L[-w:].mean())
    drop = prev - last
    return drop, (drop / prev if prev > 0 else 0.0)


def is_flat(drop_abs: float, drop_rel: float) -> bool:
    """The suite's one convergence rule: flat when the late drop is below
    ``FLAT_ABS`` (absolute) or below ``FLAT_REL`` (relative). The absolute test
    keeps a solved task (loss 1e-4 -> 5e-5: a 50% relative fall) from counting as
    still training; the relative test keeps a high, slowly falling loss honest.
    NaN drops (too few epochs) are not flat."""
    return bool(math.isfinite(drop_abs) and (drop_abs < FLAT_ABS or drop_rel < FLAT_REL))


def converged(losses: Any, window: float = LATE_WINDOW) -> bool:
    """Whether a train-loss curve (one value per epoch) has flattened:
    ``is_flat(*late_drop(losses, window))``."""
    return is_flat(*late_drop(losses, window))
