"""Fixed Parameter Expansion of a masked MLP's hidden layers (SPEC §3).

Split every neuron of a hidden layer into `alpha` children that partition its
active incoming weights, replicate its outgoing weights, and prune the excess
by global magnitude so the non-zero parameter count is unchanged.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from fci.fpe.splits import Clause, _check_alpha, split_groups, split_info
from fci.models.mlp import MaskedMLP
from fci.seeding import derive_seed

__all__ = ["expand", "expand_layers"]


def expand(
    model: MaskedMLP,
    alpha: int,
    split: str = "random",
    clauses: Sequence[Clause] | None = None,
    seed: int = 0,
    layer: int = 0,
    n_clusters: int | None = None,
) -> MaskedMLP:
    """Fixed Parameter Expansion of hidden layer `layer` (SPEC §3).

    Returns a new model whose layer has `alpha * H` neurons; parent i owns units
    `i*alpha .. i*alpha+alpha-1` (`child.parent_index`). Children partition the
    parent's active inputs, copy its bias, replicate its outgoing column; a child
    with an empty group is inert (masks and bias zero; a parent with no active
    input keeps one bias-only child so its constant output survives). The excess
    non-zeros are pruned by global magnitude over the two expanded weight
    matrices, so `child.nnz() == model.nnz()`. `alpha=1` returns an equal copy.
    """
    alpha = _check_alpha(alpha)
    spec = split_info(split, "mlp")
    if not 0 <= layer < model.n_layers - 1:
        raise ValueError(f"layer must index a hidden layer, 0..{model.n_layers - 2}, got {layer}")
    if spec.needs_clauses and not clauses:
        raise ValueError(f"split={split!r} needs the task's clauses (clauses=task.clauses)")
    if spec.needs_clauses and layer != 0:
        raise ValueError(f"split={split!r} applies to the first hidden layer only (clauses are over inputs)")
    parent = model.copy()
    if alpha == 1:
        parent.parent_index = torch.arange(parent.hidden[layer])
        parent.expansion_info = {"alpha": 1, "split": split, "layer": layer, "pruned": 0}
        return parent

    W = parent.weights[layer].detach()
    M = parent.weight_mask(layer)
    b = parent.biases[layer].detach()
    bm = parent.bias_mask(layer)
    Wn = parent.weights[layer + 1].detach()
    Mn = parent.weight_mask(layer + 1)
    H, n = W.shape
    groups = split_groups(W, M, alpha, split, clauses=clauses, seed=seed, n_clusters=n_clusters)  # (H, n)

    Hc = H * alpha
    child_of = torch.arange(alpha).repeat(H)  # (Hc,) a for unit (i, a)
    parent_of = torch.arange(H).repeat_interleave(alpha)  # (Hc,)
    in_group = groups[parent_of] == child_of[:, None]  # (Hc, n)
    nonempty = in_group.any(1)
    no_inputs = ~groups.ge(0).any(1)  # parents without active inputs keep a bias-only child 0
    alive = nonempty | (no_inputs[parent_of] & (child_of == 0))

    W1c = W[parent_of] * in_group
    M1c = in_group.to(M.dtype)
    b1c = b[parent_of] * alive
    bm1c = bm[parent_of] * alive
    W2c = Wn[:, parent_of] * alive
    M2c = Mn[:, parent_of] * alive

    # Budget: prune the excess over the expanded weight matrices, smallest |w| first.
    def _nnz(*ts):
        return sum(int((t != 0).sum()) for t in ts)

    p_eff = parent.effective_weights()
    parent_nnz = parent.nnz()
    others = sum(_nnz(w, bb) for l, (w, bb) in enumerate(p_eff) if l not in (layer, layer + 1))
    child_nnz = others + _nnz(W1c * M1c, b1c * bm1c, W2c * M2c, p_eff[layer + 1][1])
    excess = child_nnz - parent_nnz
    flat = torch.cat([(W1c * M1c).abs().flatten(), (W2c * M2c).abs().flatten()])
    nz = torch.nonzero(flat != 0).squeeze(1)
    if excess > len(nz):
        raise ValueError(
            f"FPE cannot honour the budget: expansion adds {excess} non-zeros but the expanded "
            f"weight matrices hold only {len(nz)} prunable weights"
        )
    if excess > 0:
        order = torch.argsort(flat[nz], stable=True)
        drop = nz[order[:excess]]
        keep = torch.ones_like(flat, dtype=torch.bool)
        keep[drop] = False
        k1 = W1c.numel()
        M1c = M1c * keep[:k1].view_as(M1c)
        M2c = M2c * keep[k1:].view_as(M2c)

    sizes = parent.sizes
    new_hidden = list(sizes[1:-1])
    new_hidden[layer] = Hc
    child = MaskedMLP(sizes[0], new_hidden, sizes[-1])
    child._fill_from(parent, {layer: (W1c, M1c, b1c, bm1c), layer + 1: (W2c, M2c)})
    if layer == 0:
        child.parent_index = parent_of.clone()
    child.expansion_info = {"alpha": alpha, "split": split, "layer": layer, "pruned": max(excess, 0)}
    if child.nnz() != parent_nnz:  # an invariant, not an input error
        raise AssertionError(f"FPE budget broken: child nnz {child.nnz()} != parent nnz {parent_nnz}")
    return child


def _layer_seed(seed: int, layer: int) -> int:
    """The split seed of hidden layer `layer` in `expand_layers`."""
    return seed if layer == 0 else derive_seed(seed, "layer", layer)


def expand_layers(
    model: MaskedMLP,
    alpha: int,
    split: str = "random",
    layers: Sequence[int] | str = "all",
    clauses: Sequence[Clause] | None = None,
    seed: int = 0,
    n_clusters: int | None = None,
) -> MaskedMLP:
    """FPE of several hidden layers, one after another (first to last).

    Each step splits one layer's neurons, replicates the next layer's incoming
    columns, and prunes the excess, so the budget holds across the whole
    network: `result.nnz() == model.nnz()`. `layers="all"` expands every hidden
    layer; the clause split applies to layer 0 only, deeper layers of a
    clause-split network are split at random. Layer 0 uses `seed` itself and
    layer l > 0 `derive_seed(seed, "layer", l)`, so layer 0's split is the same
    whichever layers are expanded, and `layers=(0,)` is exactly `expand(seed=seed)`. `expansion_info["layers"]` lists each
    step's info, and `parent_index` is that of layer 0 when it was expanded.
    """
    alpha = _check_alpha(alpha)
    n_hidden = model.n_layers - 1
    if isinstance(layers, str) and layers != "all" or not isinstance(layers, (str, Sequence, range)) \
            or any(isinstance(l, (bool, str)) or not isinstance(l, (int, np.integer)) for l in ([] if layers == "all" else layers)):
        raise ValueError(f"layers must be 'all' or a sequence of hidden-layer indices, got {layers!r}")
    todo = list(range(n_hidden)) if layers == "all" else sorted(set(int(l) for l in layers))
    if not todo:
        raise ValueError("layers must name at least one hidden layer")
    bad = [l for l in todo if not 0 <= l < n_hidden]
    if bad:
        raise ValueError(f"layers must index hidden layers 0..{n_hidden - 1}, got {bad}")
    out, infos, first_index = model, [], None
    for l in todo:
        s = split if (not split_info(split).needs_clauses or l == 0) else "random"
        out = expand(out, alpha, s, clauses=clauses if split_info(s).needs_clauses else None, seed=_layer_seed(seed, l),
                     layer=l, n_clusters=n_clusters)
        infos.append(out.expansion_info)
        if l == 0:
            first_index = out.parent_index
    if first_index is not None:
        out.parent_index = first_index
    splits = sorted({i["split"] for i in infos})
    out.expansion_info = {"alpha": alpha, "split": splits[0] if len(splits) == 1 else "+".join(splits), "layers": infos,
                          "pruned": sum(i["pruned"] for i in infos)}
    return out
