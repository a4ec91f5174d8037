"""Layer-wise magnitude pruning without retraining, the pruning trajectory, the
effective density, and the overlap of small weights before and after training
(*The Propensity for Density in Feed-forward Models*, §3.2, §4.2, §5.1).

**Schedule.** Every pruning step removes the smallest-magnitude `fraction` (the
paper's 2%) of each weight matrix's *remaining* weights, with no training in
between. Because nothing is retrained, the ranking of a layer's weights never
changes, so step `k` keeps exactly the

    keep_l(k) = round(n_l * (1 - fraction) ** k)

largest-magnitude weights of layer `l`, where `n_l` is the layer's prunable
weights (those whose mask is 1 in the model as given). Rounding the target
rather than each step's removal keeps every layer's density within `0.5 / n_l`
of `(1 - fraction) ** k` without drift, lets a layer too small to lose a whole
weight at one step lose it a few steps later, and empties every layer after
finitely many steps (`steps_to_empty`), as the paper's "repeat until all weights
have been pruned" asks. Ties in magnitude are pruned in flat index order.

**Counting.** Only weight matrices are pruned; biases are neither pruned nor
counted. The density of a pruned model is its kept weights over its prunable
weights (the paper's parameter counts, Table 1, are weight counts:
784*300 + 300*100 + 100*10 = 266,200 for the 1x LeNet-300-100).

**Effective density** (§3.2): the density at the first pruning step whose
accuracy falls more than `drop` below the unpruned model's accuracy; `drop` is
relative (`acc < (1 - drop) * acc_0`, the default) or absolute
(`acc < acc_0 - drop`). The paper says "a 5% decrease in validation accuracy"
without saying which.

    >>> from fci.models import MaskedMLP
    >>> from fci.sparsity.magnitude import keep_counts, prune
    >>> keep_counts(100, 0.02, [0, 1, 2, 35])
    array([100,  98,  96,  49])
    >>> prune(MaskedMLP(24, 8, 1, seed=0), steps=35).nnz_split()["weights"]
    99
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from fci.models.mlp import MaskedMLP, MaskedMLPStack

__all__ = [
    "keep_counts",
    "steps_to_empty",
    "prunable_counts",
    "step_masks",
    "prune",
    "pruned_copies",
    "pruning_trajectory",
    "EffectiveDensity",
    "effective_density",
    "null_density",
    "smallest_overlap",
    "layer_overlaps",
    "DROP_MODES",
]

DROP_MODES = ("relative", "absolute")


def _check_fraction(fraction: float, name: str = "fraction") -> float:
    f = float(fraction)
    if not 0 < f < 1:
        raise ValueError(f"{name} must lie in (0, 1), got {fraction!r}")
    return f


# --------------------------------------------------------------------------- the schedule


def keep_counts(n: int | np.ndarray, fraction: float, steps: int | Sequence[int] | np.ndarray) -> np.ndarray:
    """Weights a layer of `n` prunable weights keeps after each of `steps`
    pruning steps: `round(n * (1 - fraction) ** k)` (halves round up).

    n: int or array (broadcast against steps); steps: int or (S,) step indices >= 0.
    Returns int64 array of the broadcast shape."""
    f = _check_fraction(fraction)
    k = np.asarray(steps, dtype=np.int64)
    if (k < 0).any():
        raise ValueError(f"steps must be >= 0, got {np.asarray(steps).tolist()}")
    n = np.asarray(n, dtype=np.int64)
    if (n < 0).any():
        raise ValueError(f"n must be >= 0, got {n.tolist()}")
    return np.floor(n * np.power(1.0 - f, k.astype(np.float64)) + 0.5).astype(np.int64)


def steps_to_empty(n: int | Sequence[int], fraction: float) -> int:
    """The first step at which layers of `n` prunable weights (int or one per
    layer) are all empty: `round(max(n) * (1 - fraction) ** k) == 0`."""
    f = _check_fraction(fraction)
    n_max = int(np.max(np.asarray(n, dtype=np.int64))) if np.size(n) else 0
    if n_max <= 0:
        return 0
    # smallest k with n_max * (1-f)**k < 0.5, then fix any floating-point slack
    k = max(0, math.ceil(math.log(0.5 / n_max) / math.log(1.0 - f)))
    while k > 0 and keep_counts(n_max, f, k - 1) == 0:
        k -= 1
    while keep_counts(n_max, f, k) > 0:
        k += 1
    return int(k)


def _as_stack_layers(model: MaskedMLP | MaskedMLPStack) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """[(M, out, in) weights], [(M, out, in) masks] with a model axis (M = 1 for a MaskedMLP)."""
    if isinstance(model, MaskedMLPStack):
        return ([w.detach() for w in model.weights], [model.weight_mask(l) for l in range(model.n_layers)])
    if isinstance(model, MaskedMLP):
        return ([w.detach().unsqueeze(0) for w in model.weights],
                [model.weight_mask(l).unsqueeze(0) for l in range(model.n_layers)])
    raise ValueError(f"model must be a MaskedMLP or a MaskedMLPStack, got {type(model).__name__}")


def prunable_counts(model: MaskedMLP | MaskedMLPStack) -> np.ndarray:
    """Prunable weights (mask 1) per model and layer: (M, L) int64 (M = 1 for a MaskedMLP)."""
    _, masks = _as_stack_layers(model)
    return np.stack([(m != 0).flatten(1).sum(1).cpu().numpy() for m in masks], axis=1).astype(np.int64)


def _ranks(w: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w, mask: (M, P). -> (rank (M, P) int64, n (M,) int64): the ascending-|w|
    rank of each prunable weight among its model's prunable weights (ties in
    flat index order); masked weights get negative ranks."""
    prunable = mask != 0
    key = torch.where(prunable, w.abs(), torch.full_like(w, -1.0))  # masked entries sort first
    order = torch.sort(key, dim=1, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(w.shape[1], device=w.device).expand_as(order).contiguous())
    n = prunable.sum(1)
    return rank - (w.shape[1] - n).unsqueeze(1), n


def step_masks(weights: torch.Tensor, masks: torch.Tensor, steps: Sequence[int], fraction: float = 0.02) -> torch.Tensor:
    """The weight masks of one layer after each number of pruning steps.

    weights, masks: (M, out, in) (M models); steps: S step counts.
    Returns (M, S, out, in) float masks: weight (i, j) of model m survives `steps[s]`
    steps iff its mask is 1 and it is among the `keep_counts(n_m, fraction, steps[s])`
    largest |w| of the model's prunable weights of this layer."""
    if weights.shape != masks.shape or weights.ndim != 3:
        raise ValueError(f"weights and masks must both be (M, out, in), got {tuple(weights.shape)} and {tuple(masks.shape)}")
    M, o, i = weights.shape
    rank, n = _ranks(weights.reshape(M, o * i), masks.reshape(M, o * i))
    kept = torch.from_numpy(keep_counts(n.cpu().numpy()[:, None], fraction, list(steps))).to(weights.device)  # (M, S)
    keep = rank.unsqueeze(1) >= (n.unsqueeze(1) - kept).unsqueeze(2)  # (M, S, P); masked ranks are < 0 <= n - kept
    return keep.to(weights.dtype).view(M, kept.shape[1], o, i)


def prune(model: MaskedMLP | MaskedMLPStack, steps: int, fraction: float = 0.02) -> MaskedMLP | MaskedMLPStack:
    """A copy of `model` after `steps` layer-wise magnitude-pruning steps (no
    retraining): masks cut, the raw weights they hide zeroed, biases untouched.
    A stack prunes each model within its own prunable weights (padding stays masked)."""
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    _check_fraction(fraction)
    ws, ms = _as_stack_layers(model)
    if isinstance(model, MaskedMLP):
        out = model.copy().to(ws[0].device)
        for l, (w, m) in enumerate(zip(ws, ms)):
            out.set_masks(l, step_masks(w, m, [int(steps)], fraction)[0, 0])
        return out
    stack = MaskedMLPStack([model.weights[0].shape[2], *(w.shape[1] for w in model.weights)], model.n_models).to(ws[0].device)
    stack.load_state_dict(model.state_dict())
    stack.parent_indices = [None if p is None else p.clone() for p in model.parent_indices]
    with torch.no_grad():
        for l, (w, m) in enumerate(zip(ws, ms)):
            new = step_masks(w, m, [int(steps)], fraction)[:, 0]
            stack.weight_mask(l).copy_(new)
            stack.weights[l].mul_(new)
    return stack


def pruned_copies(model: MaskedMLP, steps: Sequence[int], fraction: float = 0.02) -> MaskedMLPStack:
    """One pruned copy of `model` per entry of `steps`, as a stack on the model's
    device (copy s has been pruned `steps[s]` steps), for evaluating a whole
    pruning trajectory in one batched forward pass."""
    if not isinstance(model, MaskedMLP):
        raise ValueError(f"model must be a MaskedMLP, got {type(model).__name__}")
    steps = [int(s) for s in steps]
    if not steps:
        raise ValueError("steps is empty; give at least one step count")
    dev = model.weights[0].device
    stack = MaskedMLPStack(model.sizes, len(steps)).to(dev)
    ws, ms = _as_stack_layers(model)
    with torch.no_grad():
        for l, (w, m) in enumerate(zip(ws, ms)):
            new = step_masks(w, m, steps, fraction)[0]  # (S, out, in)
            stack.weight_mask(l).copy_(new)
            stack.weights[l].copy_(w * new)
            stack.bias_mask(l).copy_(model.bias_mask(l))
            stack.biases[l].copy_(model.biases[l].detach() * model.bias_mask(l))
    return stack


def pruning_trajectory(
    model: MaskedMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "bce",
    fraction: float = 0.02,
    steps: Sequence[int] | None = None,
    max_weights_per_stack: int = 1 << 22,
) -> list[dict[str, Any]]:
    """Accuracy of `model` along its pruning trajectory (no retraining).

    x: (N, n_in) and y: (N, O) 0/1 ('bce') or (N,) class ids ('ce'), evaluated
    with `fci.train.evaluate` on stacks of pruned copies (at most
    `max_weights_per_stack` weights per stack). steps: the step counts to
    evaluate (default 0, 1, ..., `steps_to_empty`, i.e. until every weight is gone).
    Returns one row per step: `step`, `density` (kept / prunable weights),
    `kept_weights`, `accuracy`, `exact_match`, `loss`."""
    from fci.train import evaluate

    _check_fraction(fraction)
    if not isinstance(model, MaskedMLP):
        raise ValueError(f"model must be a MaskedMLP, got {type(model).__name__}")
    n_layer = prunable_counts(model)[0]  # (L,)
    total = int(n_layer.sum())
    if total == 0:
        raise ValueError("the model has no prunable weights (every weight is masked)")
    steps = list(range(steps_to_empty(n_layer, fraction) + 1)) if steps is None else [int(s) for s in steps]
    if any(s < 0 for s in steps):
        raise ValueError(f"steps must be >= 0, got {steps}")
    if x.ndim != 2 or x.shape[1] != model.n_in or y.shape[0] != x.shape[0]:
        raise ValueError(f"x must be (N, {model.n_in}) with one label row per sample, got x {tuple(x.shape)}, y {tuple(y.shape)}")
    dev = model.weights[0].device
    x, y = x.to(dev), y.to(dev)
    per_copy = sum(w.numel() for w in model.weights)
    size = max(1, int(max_weights_per_stack) // max(1, per_copy))
    rows = []
    for s0 in range(0, len(steps), size):
        chunk = steps[s0 : s0 + size]
        stack = pruned_copies(model, chunk, fraction)
        S = len(chunk)
        res = evaluate(stack, x.unsqueeze(0).expand(S, *x.shape), y.unsqueeze(0).expand(S, *y.shape), loss)
        kept = keep_counts(n_layer[None, :], fraction, np.asarray(chunk)[:, None]).sum(1)  # (S,)
        for j, k in enumerate(chunk):
            rows.append({"step": k, "density": float(kept[j]) / total, "kept_weights": int(kept[j]),
                         "accuracy": float(res["accuracy"][j]), "exact_match": float(res["exact_match"][j]),
                         "loss": float(res["loss"][j])})
    return rows


# --------------------------------------------------------------------------- effective density


@dataclass(frozen=True)
class EffectiveDensity:
    """The effective density of one pruning trajectory.

    Attributes:
        effective_density: the density at `index` (the last density if the
            accuracy never fell below `threshold`).
        index: position in the trajectory of the first step below the
            threshold, or None when it never fell below it.
        threshold: the accuracy the pruned model must stay at or above.
        base_accuracy: the accuracy at position 0 (the unpruned model).
        degraded: whether any step fell below the threshold.
    """

    effective_density: float
    index: int | None
    threshold: float
    base_accuracy: float
    degraded: bool


def effective_density(density: Sequence[float], accuracy: Sequence[float], drop: float = 0.05,
                      mode: str = "relative") -> EffectiveDensity:
    """The density at the first step whose accuracy falls more than `drop` below
    the unpruned model's (position 0 of the trajectory).

    density, accuracy: (S,) along the trajectory, position 0 unpruned.
    mode: "relative" (degraded when `acc < (1 - drop) * acc_0`) or "absolute"
    (`acc < acc_0 - drop`). A trajectory that never falls below the threshold
    (e.g. an untrained model already at chance) gets its last density and
    `degraded=False`."""
    d = np.asarray(density, dtype=np.float64).reshape(-1)
    a = np.asarray(accuracy, dtype=np.float64).reshape(-1)
    if d.shape != a.shape or d.size == 0:
        raise ValueError(f"density and accuracy must be non-empty and of equal length, got {d.size} and {a.size}")
    if mode not in DROP_MODES:
        raise ValueError(f"mode must be one of {DROP_MODES}, got {mode!r}")
    if not 0 < drop < 1:
        raise ValueError(f"drop must lie in (0, 1), got {drop!r}")
    base = float(a[0])
    threshold = base * (1.0 - drop) if mode == "relative" else base - drop
    below = np.flatnonzero(a < threshold)
    if below.size == 0:
        return EffectiveDensity(float(d[-1]), None, threshold, base, False)
    i = int(below[0])
    return EffectiveDensity(float(d[i]), i, threshold, base, True)


def null_density(core_weights: Any, n_weights: Any) -> np.ndarray:
    """The effective density a constant core would give (Table 2's null
    hypothesis): `min(1, core_weights / n_weights)`, elementwise."""
    c = np.asarray(core_weights, dtype=np.float64)
    n = np.asarray(n_weights, dtype=np.float64)
    if (n <= 0).any():
        raise ValueError(f"n_weights must be > 0, got {n.tolist()}")
    if (c < 0).any():
        raise ValueError(f"core_weights must be >= 0, got {c.tolist()}")
    return np.minimum(1.0, c / n)


# --------------------------------------------------------------------------- small weights at init vs after training


def smallest_overlap(w_init: Any, w_trained: Any, fraction: float = 0.4, mask: Any = None) -> dict[str, float | int]:
    """Overlap of the smallest-|w| `fraction` of a layer's weights at
    initialisation and after training (Tables 3–4).

    w_init, w_trained: same shape (e.g. (out, in)); mask: optional same-shape
    0/1, only weights under 1 count. With n counted weights and
    k = round(fraction * n) smallest of each, returns `overlap` = |A ∩ B| / n
    (the paper's percentage of the layer), `chance` = (k / n)**2 (its 16% for
    40%: the expected overlap of two independent random k-subsets), `k`, `n`.
    Ties in magnitude are broken by flat index."""
    f = _check_fraction(fraction)
    a = np.abs(np.asarray(w_init.detach().cpu() if isinstance(w_init, torch.Tensor) else w_init, dtype=np.float64))
    b = np.abs(np.asarray(w_trained.detach().cpu() if isinstance(w_trained, torch.Tensor) else w_trained, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"w_init and w_trained must have the same shape, got {a.shape} and {b.shape}")
    a, b = a.reshape(-1), b.reshape(-1)
    if mask is not None:
        m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask).reshape(-1)
        if m.shape != a.shape:
            raise ValueError(f"mask must have the weights' shape {a.shape}, got {m.shape}")
        a, b = a[m != 0], b[m != 0]
    n = a.size
    if n == 0:
        return {"overlap": math.nan, "chance": math.nan, "k": 0, "n": 0}
    k = int(math.floor(f * n + 0.5))
    A = np.argsort(a, kind="stable")[:k]
    B = np.argsort(b, kind="stable")[:k]
    inter = np.intersect1d(A, B, assume_unique=True).size
    return {"overlap": inter / n, "chance": (k / n) ** 2, "k": k, "n": int(n)}


def layer_overlaps(initial: MaskedMLP, trained: MaskedMLP, fraction: float = 0.4) -> list[dict[str, float | int]]:
    """`smallest_overlap` of every weight matrix (W1 first) between a model at
    initialisation and after training; weights masked in the trained model do not count."""
    if initial.sizes != trained.sizes:
        raise ValueError(f"initial and trained models differ in shape: {initial.sizes} vs {trained.sizes}")
    return [smallest_overlap(initial.weights[l], trained.weights[l], fraction, mask=trained.weight_mask(l))
            for l in range(trained.n_layers)]


# --------------------------------------------------------------------------- to an exact count


def _rank_select(score: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(M, P) bool: per row, the k[m] positions of smallest score (ties: lower index)."""
    order = torch.argsort(score, dim=1, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(score.shape[1], device=score.device).expand_as(order))
    return rank < k.to(score.device)[:, None]


@torch.no_grad()
def prune_stack_to_nnz(
    stack: MaskedMLPStack,
    targets: Sequence[int] | torch.Tensor,
    layers: Sequence[int] | None = None,
) -> torch.Tensor:
    """Prune every model of a stack to exactly `targets[m]` non-zero parameters.

    Global magnitude pruning (smallest |W * M| first, ties: earlier layer, then
    lower index) over the weight matrices `layers` (default: all); biases count
    but are not pruned (SPEC §3 step 5). A model already at its target is left
    alone. Training can go on with the optimiser `fit` returned: `fit` clears
    the moments of masked weights, so pruned weights stay at zero. Returns (M,) the number of weights pruned per model.
    """
    layers = list(range(stack.n_layers)) if layers is None else [int(l) for l in layers]
    if not layers or any(not 0 <= l < stack.n_layers for l in layers):
        raise ValueError(f"layers must index weight layers 0..{stack.n_layers - 1}, got {layers}")
    dev = stack.weights[0].device
    targets = torch.as_tensor(targets, dtype=torch.int64, device=dev).reshape(-1)
    if targets.numel() != stack.n_models:
        raise ValueError(f"targets needs one count per model ({stack.n_models}), got {targets.numel()}")
    nnz = stack.nnz()
    effs = [(stack.weights[l] * stack.weight_mask(l)).abs().flatten(1) for l in layers]
    score = torch.cat(effs, 1)  # (M, P)
    nonzero = score != 0
    n_drop = nnz - targets
    if bool((n_drop < 0).any()):
        m = int(torch.nonzero(n_drop < 0)[0])
        raise ValueError(f"target {int(targets[m])} exceeds model {m}'s nnz {int(nnz[m])}: pruning cannot add parameters")
    if bool((n_drop > nonzero.sum(1)).any()):
        m = int(torch.nonzero(n_drop > nonzero.sum(1))[0])
        raise ValueError(f"model {m} cannot reach {int(targets[m])} non-zeros: only {int(nonzero[m].sum())} weights "
                         f"in layers {layers} can be pruned, {int(n_drop[m])} would have to go")
    drop = _rank_select(torch.where(nonzero, score, torch.full_like(score, math.inf)), n_drop)
    start = 0
    for l, e in zip(layers, effs):
        d = drop[:, start : start + e.shape[1]].view_as(stack.weights[l])
        start += e.shape[1]
        stack.weight_mask(l).masked_fill_(d, 0)
        stack.weights[l].masked_fill_(d, 0)
    return n_drop.cpu()


def prune_to_nnz(model: MaskedMLP, target: int, layers: Sequence[int] | None = None) -> MaskedMLP:
    """A copy of `model` pruned to exactly `target` non-zero parameters by global
    magnitude over the weight matrices `layers` (default all; biases are not
    pruned). See `prune_stack_to_nnz`."""
    stack = MaskedMLPStack.from_models([model])
    prune_stack_to_nnz(stack, [int(target)], layers=layers)
    out = stack.to_models()[0]
    info = dict(getattr(model, "expansion_info", {}) or {})
    out.expansion_info = info
    return out
