"""Static random sparsity at initialisation (the wide-and-sparse construction).

Golubeva, Gur-Ari & Neyshabur (ICLR 2021, "Are wider nets better given the same
number of parameters?") widen a network at a fixed number of weights by removing
weights at random before training and never bringing them back: the sparsity
pattern is random, applied at initialisation and static; the number of weights
kept in each layer is proportional to the layer's size, and within a layer the
kept weights are a uniform random subset of all its positions.

Here the budget is a non-zero count in the sense of SPEC §2 (non-zero weights
plus non-zero biases), so that a sparse model, a dense model and an FPE child
(whose `nnz(child) == nnz(parent)` also counts biases) are compared on one
scale. Biases are not connections: a sparse model keeps all of them, and the
weights get what is left of the budget:

    weights = budget - (sum(hidden) + n_out),
    layer l keeps round(weights * |W_l| / sum_m |W_m|) of its |W_l| = out_l * in_l
    positions (largest-remainder rounding, so the total is exact; every layer
    keeps at least one),

so `sparse_mlp(...).nnz() == budget` exactly. The **connectivity** of a model
is the fraction of possible weights present, `nnz_weights / sum_l |W_l|` (the
paper's `p`); with the proportional split every layer has (nearly) the same
connectivity.

    >>> from fci.sparsity import dense_nnz, sparse_mlp, connectivity
    >>> budget = dense_nnz(24, 8, 1)             # a dense 24-8-1 MLP: 209
    >>> m = sparse_mlp(24, 32, 1, budget, seed=0)
    >>> m.nnz() == budget, round(connectivity(m), 3)
    (True, 0.22)
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from fci.models.base import _layer_sizes
from fci.models.mlp import MaskedMLP
from fci.seeding import generator

__all__ = [
    "dense_nnz",
    "possible_weights",
    "weight_budget",
    "layer_budgets",
    "random_masks",
    "sparse_mlp",
    "connectivity",
    "max_width",
]


def _sizes(n_in: int, hidden: int | Sequence[int], n_out: int) -> list[int]:
    return _layer_sizes(n_in, hidden if isinstance(hidden, int) else [int(h) for h in hidden], n_out)


def possible_weights(n_in: int, hidden: int | Sequence[int], n_out: int) -> int:
    """Number of weight positions of the MLP, `sum_l out_l * in_l` (biases not included)."""
    s = _sizes(n_in, hidden, n_out)
    return sum(i * o for i, o in zip(s[:-1], s[1:]))


def dense_nnz(n_in: int, hidden: int | Sequence[int], n_out: int) -> int:
    """Non-zero parameters of a dense MLP (SPEC §2): all weights plus all biases."""
    s = _sizes(n_in, hidden, n_out)
    return possible_weights(n_in, hidden, n_out) + sum(s[1:])


def weight_budget(n_in: int, hidden: int | Sequence[int], n_out: int, budget: int) -> int:
    """The weights a sparse MLP of this shape may keep under a total non-zero
    `budget` (weights + biases) when it keeps all its biases.

    Raises ValueError when the budget exceeds the dense count (the model cannot
    be made denser than dense) or leaves fewer weights than layers (every layer
    needs at least one weight to pass a signal)."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive integer (non-zero weights + biases), got {budget!r}")
    s = _sizes(n_in, hidden, n_out)
    n_layers = len(s) - 1
    full = dense_nnz(n_in, hidden, n_out)
    if budget > full:
        raise ValueError(f"budget={budget} exceeds the {full} non-zero parameters of a dense MLP of sizes {s}; "
                         f"a sparse model cannot hold more than its dense version (widen it or lower the budget)")
    n_biases = sum(s[1:])
    weights = budget - n_biases
    if weights < n_layers:
        raise ValueError(f"budget={budget} leaves {weights} weights after the {n_biases} biases of sizes {s}, "
                         f"but each of the {n_layers} layers needs at least one weight: need budget >= {n_biases + n_layers} "
                         f"(the MLP is too wide for this budget)")
    return weights


def layer_budgets(sizes: Sequence[int], n_weights: int) -> list[int]:
    """Split `n_weights` across layers in proportion to layer size.

    sizes: [n_in, *hidden, n_out]; layer l has `sizes[l] * sizes[l+1]` positions.
    Returns one count per layer, summing exactly to `n_weights`: the floors of
    the proportional shares, the remainder dealt by largest fractional part
    (ties to the earlier layer); a layer that would get none gets one, taken
    from the layer with the most. Every count lies in [1, layer size].
    Raises ValueError when `n_weights` is below the number of layers or above
    the number of positions."""
    sizes = [int(v) for v in sizes]
    if len(sizes) < 2 or any(v < 1 for v in sizes):
        raise ValueError(f"sizes must be >= 2 positive layer sizes [n_in, ..., n_out], got {sizes}")
    caps = [i * o for i, o in zip(sizes[:-1], sizes[1:])]
    total = sum(caps)
    if isinstance(n_weights, bool) or not isinstance(n_weights, int):
        raise ValueError(f"n_weights must be an integer, got {n_weights!r}")
    if not len(caps) <= n_weights <= total:
        raise ValueError(f"n_weights={n_weights} must lie in [{len(caps)}, {total}] for sizes {sizes} "
                         f"(at least one weight per layer, at most every position)")
    shares = [n_weights * c / total for c in caps]
    counts = [int(math.floor(s)) for s in shares]
    order = sorted(range(len(caps)), key=lambda l: (-(shares[l] - counts[l]), l))
    for l in order[: n_weights - sum(counts)]:
        counts[l] += 1
    for l in range(len(caps)):
        if counts[l] == 0:
            donor = max(range(len(caps)), key=lambda m: (counts[m], -m))
            counts[donor] -= 1
            counts[l] = 1
    assert sum(counts) == n_weights and all(1 <= c <= cap for c, cap in zip(counts, caps)), (counts, caps)
    return counts


def random_masks(sizes: Sequence[int], n_weights: int, seed: int) -> list[torch.Tensor]:
    """Static random weight masks: layer l keeps exactly `layer_budgets(sizes,
    n_weights)[l]` positions, a uniformly random subset of its `out * in`.

    Returns masks[l]: (sizes[l+1], sizes[l]) float 0/1. Layer l draws from
    `generator(seed, "mask", l)`, so for the same seed and shape a smaller
    budget keeps a subset of a larger one's positions (nested masks)."""
    counts = layer_budgets(sizes, n_weights)
    masks = []
    for l, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        keep = torch.randperm(i * o, generator=generator(seed, "mask", l))[: counts[l]]
        m = torch.zeros(i * o)
        m[keep] = 1.0
        masks.append(m.view(o, i))
    return masks


def sparse_mlp(
    n_in: int,
    hidden: int | Sequence[int],
    n_out: int,
    budget: int,
    seed: int = 0,
    mask_seed: int | None = None,
    rescale: bool = False,
) -> MaskedMLP:
    """A MaskedMLP of the given width whose non-zero count is exactly `budget`.

    Args:
        n_in: input features.
        hidden: hidden width (int), or a list of widths for deeper nets.
        n_out: outputs.
        budget: total non-zero parameters (weights + biases, SPEC §2); all biases
            are kept and `weight_budget(...)` weights are spread by `random_masks`.
        seed: initialisation seed, as `MaskedMLP(seed=...)`: the kept weights
            are exactly those of the dense model with this seed.
        mask_seed: seed of the sparsity pattern (default: `seed`).
        rescale: multiply layer l's kept weights by `1/sqrt(connectivity_l)`, so
            a unit's pre-activation variance at initialisation matches the dense
            model's (off by default: the dense initialisation, masked).

    A kept weight or bias whose initial value is exactly 0.0 (probability about
    1e-7 each) is set to a tiny non-zero value, so `nnz() == budget` holds.
    Raises ValueError (from `weight_budget`) when the budget cannot be met.
    """
    n_weights = weight_budget(n_in, hidden, n_out, budget)
    model = MaskedMLP(n_in, hidden, n_out, seed=seed)
    sizes = model.sizes
    masks = random_masks(sizes, n_weights, seed if mask_seed is None else mask_seed)
    for l, m in enumerate(masks):
        model.set_masks(l, m, torch.ones_like(model.biases[l]))
        with torch.no_grad():
            w, b = model.weights[l], model.biases[l]
            if rescale:
                w.mul_(1.0 / math.sqrt(float(m.mean())))
            tiny = 1e-6 / math.sqrt(sizes[l])
            w[(m > 0) & (w == 0)] = tiny
            b[b == 0] = tiny
    if model.nnz() != budget:  # pragma: no cover - guarded by construction
        raise RuntimeError(f"sparse_mlp: built nnz={model.nnz()} for budget={budget}")
    return model


def connectivity(model: MaskedMLP) -> float:
    """Fraction of the model's weight positions that hold a non-zero effective
    weight (biases not counted), in [0, 1]."""
    eff = model.effective_weights()
    present = sum(int((w != 0).sum()) for w, _ in eff)
    return present / sum(w.numel() for w, _ in eff)


def max_width(n_in: int, n_out: int, budget: int) -> int:
    """The widest one-hidden-layer MLP that `budget` can hold with all its
    biases and at least one weight per layer: `budget - n_out - 2`.
    Raises ValueError when not even width 1 fits."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive integer, got {budget!r}")
    h = budget - n_out - 2
    if h < 1:
        raise ValueError(f"budget={budget} cannot hold any {n_in}-H-{n_out} MLP (need at least {n_out + 3})")
    return h
