"""N:M structured sparsity for FPE children.

Sparse tensor cores (e.g. NVIDIA's 2:4) need every group of `M` consecutive inputs
of a neuron to hold at most `N` non-zeros. `nm_mask` builds such a mask (largest |w|
kept), and `expand_nm` applies it to an FPE child's first layer *before* the budget
is settled: the weights the pattern removes count towards FPE's excess (SPEC §3
step 5); if they are fewer than the excess, the rest is pruned by global magnitude
as plain FPE does and the child lands exactly on the parent's budget; if they are
more, the child ends *below* the budget and says so (`expansion_info["below_budget"]`).
To compare at an equal count, prune the other models down to it with
`fci.sparsity.prune_to_nnz` / `prune_stack_to_nnz`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from fci.fpe.mlp import expand
from fci.fpe.splits import split_groups
from fci.models.mlp import MaskedMLP
from fci.sparsity.magnitude import prune_to_nnz

__all__ = ["parse_nm", "nm_mask", "nm_violations", "expand_nm", "sibling_overlap"]


def _check_nm(n_keep: int, group: int) -> tuple[int, int]:
    for name, v in (("n_keep", n_keep), ("group", group)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if n_keep >= group:
        raise ValueError(f"an N:M pattern needs n_keep < group (N < M), got {n_keep}:{group}")
    return n_keep, group


def parse_nm(text: str) -> tuple[int, int]:
    """'2:4' -> (2, 4); ValueError unless it is 'N:M' with integers 1 <= N < M."""
    parts = str(text).split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"an N:M pattern is written 'N:M' with integers, e.g. '2:4', got {text!r}")
    return _check_nm(int(parts[0]), int(parts[1]))


def nm_mask(W: torch.Tensor, mask: torch.Tensor | None = None, n_keep: int = 2, group: int = 4) -> torch.Tensor:
    """The N:M restriction of a mask along the last (input) axis.

    W: (..., n) weights; mask: (..., n) 0/1 (None: all ones). In every group of
    `group` consecutive inputs of a row (the last group may be shorter when n is
    not a multiple of `group`), keep at most `n_keep` of the mask's active
    positions, those with the largest |W| (ties: the lower index). Returns a
    (..., n) 0/1 mask in W's dtype, a subset of `mask`.
    """
    n_keep, group = _check_nm(n_keep, group)
    W = torch.as_tensor(W)
    if not W.is_floating_point():
        W = W.float()
    if mask is None:
        active = torch.ones_like(W, dtype=torch.bool)
    else:
        mask = torch.as_tensor(mask, device=W.device)
        if mask.shape != W.shape:
            raise ValueError(f"mask must have W's shape {tuple(W.shape)}, got {tuple(mask.shape)}")
        active = mask != 0
    if W.dim() == 0:
        raise ValueError("W must have at least one axis (the inputs)")
    n = W.shape[-1]
    pad = (-n) % group
    score = torch.where(active, W.abs(), torch.full_like(W, -1.0))  # inactive: never kept
    score = torch.nn.functional.pad(score, (0, pad), value=-1.0)
    g = score.reshape(*score.shape[:-1], -1, group)
    order = torch.sort(g, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(group, device=W.device).expand_as(order))
    keep = (rank < n_keep) & (g >= 0)
    return keep.reshape(score.shape)[..., :n].to(W.dtype)


def nm_violations(mask: torch.Tensor, n_keep: int = 2, group: int = 4) -> int:
    """Number of (row, group) pairs of `mask` (..., n) holding more than `n_keep`
    non-zeros among `group` consecutive inputs (0 for a valid N:M mask)."""
    n_keep, group = _check_nm(n_keep, group)
    m = (torch.as_tensor(mask) != 0).to(torch.int64)
    pad = (-m.shape[-1]) % group
    m = torch.nn.functional.pad(m, (0, pad))
    return int((m.reshape(*m.shape[:-1], -1, group).sum(-1) > n_keep).sum())


def expand_nm(
    model: MaskedMLP,
    alpha: int,
    split: str = "random",
    n_keep: int = 2,
    group: int = 4,
    clauses: Sequence | None = None,
    seed: int = 0,
) -> MaskedMLP:
    """FPE of the first hidden layer with N:M child masks.

    The children's first-layer groups are exactly those of
    `expand(model, alpha, split, clauses=clauses, seed=seed)` (same seed, same
    partition). The N:M pattern is applied to the unpruned children first
    (`nm_mask`, largest |w| kept); then, as in SPEC §3 step 5, the excess over
    the parent's nnz still left is pruned by global magnitude over the two
    expanded weight matrices. So `child.nnz() == model.nnz()` when the pattern
    removes no more than FPE's excess, and `child.nnz() < model.nnz()`
    otherwise. `child.expansion_info` records `nm` ("N:M"), `nm_removed`
    (weights the pattern removed), `pruned` (removed by magnitude afterwards),
    `budget` and `below_budget` (budget - nnz, >= 0).
    """
    n_keep, group = _check_nm(n_keep, group)
    child = expand(model, alpha, split, clauses=clauses, seed=seed)  # validates; biases, lineage, deeper layers
    alpha = child.expansion_info["alpha"]
    budget = model.nnz()
    W = model.weights[0].detach()
    M = model.weight_mask(0)
    H = W.shape[0]
    groups = split_groups(W, M, alpha, split, clauses=clauses, seed=seed) if alpha > 1 else \
        torch.where((M != 0) & (W != 0), 0, -1).to(torch.int64)
    child_of = torch.arange(alpha).repeat(H)
    parent_of = torch.arange(H).repeat_interleave(alpha)
    in_group = groups[parent_of] == child_of[:, None]  # (H*alpha, n)
    if not bool(((child.weight_mask(0) != 0) <= in_group).all()):  # expand and split_groups must agree
        raise AssertionError("expand_nm: the children of expand() do not match split_groups() for the same seed")
    no_inputs = ~groups.ge(0).any(1)
    alive = (in_group.any(1) | (no_inputs[parent_of] & (child_of == 0))).to(W.dtype)

    W1 = W[parent_of] * in_group
    M1 = in_group.to(W.dtype)
    M1_nm = nm_mask(W1, M1, n_keep, group)
    W2 = model.weights[1].detach()[:, parent_of] * alive
    M2 = model.weight_mask(1)[:, parent_of] * alive
    with torch.no_grad():
        child.weights[0].copy_(W1)
        child.set_masks(0, M1_nm)
        child.weights[1].copy_(W2)
        child.set_masks(1, M2)
    excess = child.nnz() - budget
    if excess > 0:
        child = prune_to_nnz(child, budget, layers=(0, 1))
    child.expansion_info = {
        "alpha": alpha, "split": split, "layer": 0, "nm": f"{n_keep}:{group}",
        "nm_removed": int(M1.sum() - M1_nm.sum()), "pruned": max(excess, 0),
        "budget": budget, "below_budget": budget - child.nnz(),
    }
    if nm_violations(child.weight_mask(0), n_keep, group):  # an invariant, not an input error
        raise AssertionError("expand_nm: the child's first layer breaks the N:M pattern")
    return child


def sibling_overlap(model: MaskedMLP) -> float:
    """For an FPE child: mean over parents of (inputs used by two or more of its
    children) / (inputs used by any of them), on the first layer's mask. 0 right
    after FPE (children share no input); dynamic regrowth can raise it. NaN for
    a model without `parent_index` or without active inputs."""
    pi = model.parent_index
    if pi is None:
        return math.nan
    used = model.weight_mask(0) != 0  # (H1, n)
    vals = []
    for p in torch.unique(pi).tolist():
        counts = used[pi == p].sum(0)
        any_ = int((counts >= 1).sum())
        if any_:
            vals.append(int((counts >= 2).sum()) / any_)
    return float(sum(vals) / len(vals)) if vals else math.nan
