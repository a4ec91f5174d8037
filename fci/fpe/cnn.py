"""Fixed Parameter Expansion of convolutional filters (SPEC §3 applied to conv layers).
"""

from __future__ import annotations

from typing import Sequence

import torch

from fci.fpe.splits import _check_alpha, conv_split_groups, split_info
from fci.models.cnn import MaskedCNN
from fci.seeding import derive_seed

__all__ = ["expand_cnn", "expand_cnn_layers"]


def expand_cnn(model: MaskedCNN, alpha: int, split: str = "random", seed: int = 0, layer: int = 0) -> MaskedCNN:
    """Fixed Parameter Expansion of conv layer `layer` of a MaskedCNN.

    Filter f becomes children f*alpha .. f*alpha+alpha-1, which partition its
    active (C x kh x kw) weights by `split` and copy its bias; the next layer's
    incoming weights are replicated for the children (its input-channel slice
    for a conv layer; the columns of every spatial position for the head). A
    child with an empty group is inert (masks and bias zero; a filter with no
    active weight keeps child 0 as a bias-only unit). The excess non-zeros are
    pruned by global magnitude over the two expanded weight tensors (smallest
    |w| first, ties by position: this layer row-major, then the next), so
    `child.nnz() == model.nnz()`; ValueError when the excess exceeds the
    prunable weights. `alpha=1` returns an equal copy.
    """
    alpha = _check_alpha(alpha)
    split_info(split, "conv")
    if not 0 <= layer < model.n_conv:
        raise ValueError(f"layer must index a conv layer, 0..{model.n_conv - 1}, got {layer}")
    parent = model.copy()
    if alpha == 1:
        parent.parent_index = torch.arange(parent.channels[0]) if layer == 0 else parent.parent_index
        parent.expansion_info = {"alpha": 1, "split": split, "layer": layer, "pruned": 0}
        return parent
    W, Mk = parent.weights[layer].detach(), parent.weight_mask(layer)
    b, bm = parent.biases[layer].detach(), parent.bias_mask(layer)
    Wn, Mn = parent.weights[layer + 1].detach(), parent.weight_mask(layer + 1)
    Fn = W.shape[0]
    groups = conv_split_groups(W, Mk, alpha, split, seed=seed)  # (F, C, kh, kw)
    Fc = Fn * alpha
    child_of = torch.arange(alpha).repeat(Fn)  # (Fc,)
    parent_of = torch.arange(Fn).repeat_interleave(alpha)  # (Fc,)
    in_group = groups[parent_of] == child_of.view(-1, 1, 1, 1)  # (Fc, C, kh, kw)
    nonempty = in_group.flatten(1).any(1)
    no_inputs = ~groups.ge(0).flatten(1).any(1)
    alive = (nonempty | (no_inputs[parent_of] & (child_of == 0))).to(W.dtype)  # (Fc,)

    Wc, Mc = W[parent_of] * in_group, in_group.to(Mk.dtype)
    bc, bmc = b[parent_of] * alive, bm[parent_of] * alive
    if layer + 1 < model.n_conv:  # conv -> conv: input-channel slices
        Wnc = Wn[:, parent_of] * alive.view(1, -1, 1, 1)
        Mnc = Mn[:, parent_of] * alive.view(1, -1, 1, 1)
    else:  # conv -> flatten -> linear: the columns of every spatial position (one for 'gap')
        P = model.out_hw[0] * model.out_hw[1]
        O = Wn.shape[0]
        Wnc = (Wn.view(O, Fn, P)[:, parent_of] * alive.view(1, -1, 1)).reshape(O, Fc * P)
        Mnc = (Mn.view(O, Fn, P)[:, parent_of] * alive.view(1, -1, 1)).reshape(O, Fc * P)

    parent_nnz = parent.nnz()
    eff = parent.effective_weights()
    nz = lambda *ts: sum(int((t != 0).sum()) for t in ts)  # noqa: E731
    others = sum(nz(wt, bb) for l, (wt, bb) in enumerate(eff) if l not in (layer, layer + 1))
    excess = others + nz(Wc * Mc, bc * bmc, Wnc * Mnc, eff[layer + 1][1]) - parent_nnz
    flat = torch.cat([(Wc * Mc).abs().flatten(), (Wnc * Mnc).abs().flatten()])
    live = torch.nonzero(flat != 0).squeeze(1)
    if excess > len(live):
        raise ValueError(f"conv FPE cannot honour the budget: expansion adds {excess} non-zeros but the expanded "
                         f"weight tensors hold only {len(live)} prunable weights")
    if excess > 0:
        drop = live[torch.argsort(flat[live], stable=True)[:excess]]
        keep = torch.ones_like(flat, dtype=torch.bool)
        keep[drop] = False
        k1 = Wc.numel()
        Mc = Mc * keep[:k1].view_as(Mc)
        Mnc = Mnc * keep[k1:].view_as(Mnc)

    a = parent.arch()
    channels = list(a["channels"])
    channels[layer] = Fc
    child = MaskedCNN(a["in_shape"], channels, a["n_out"], a["kernel_size"], a["pool"], head=a["head"])
    child._fill_from(parent, {layer: (Wc, Mc, bc, bmc), layer + 1: (Wnc, Mnc)})
    child.parent_index = parent_of.clone() if layer == 0 else (None if parent.parent_index is None else parent.parent_index.clone())
    child.expansion_info = {"alpha": alpha, "split": split, "layer": layer, "pruned": max(excess, 0)}
    if child.nnz() != parent_nnz:  # an invariant, not an input error
        raise AssertionError(f"conv FPE budget broken: child nnz {child.nnz()} != parent nnz {parent_nnz}")
    return child


def expand_cnn_layers(model: MaskedCNN, alpha: int, split: str = "random", layers: Sequence[int] | str = "all",
                      seed: int = 0) -> MaskedCNN:
    """Conv FPE of several conv layers, first to last (layer l uses the seed
    `derive_seed(seed, "layer", l)`); the budget holds across the network.
    `layers="all"` expands every conv layer."""
    alpha = _check_alpha(alpha)
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all' or a sequence of conv-layer indices, got {layers!r}")
        todo = list(range(model.n_conv))
    else:
        todo = sorted({int(l) for l in layers})
    if not todo or any(not 0 <= l < model.n_conv for l in todo):
        raise ValueError(f"layers must name conv layers in 0..{model.n_conv - 1}, got {layers!r}")
    out, infos, first = model, [], None
    for l in todo:
        out = expand_cnn(out, alpha, split, seed=derive_seed(seed, "layer", l), layer=l)
        infos.append(out.expansion_info)
        if l == 0:
            first = out.parent_index
    out.parent_index = first
    out.expansion_info = {"alpha": alpha, "split": split, "layers": infos, "pruned": sum(i["pruned"] for i in infos)}
    return out
