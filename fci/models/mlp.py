"""Masked MLPs, single and stacked (SPEC §2).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from fci.models.base import MaskedLayers, MaskedStack, _layer_sizes

__all__ = ["MaskedMLP", "MaskedMLPStack"]


class MaskedMLP(MaskedLayers):
    """One MLP with fixed 0/1 masks on every weight and bias.

    Args:
        n_in: input size n.
        hidden: hidden width (int) or widths of several hidden layers (list).
        n_out: output size O.
        seed: initialisation seed (PyTorch's default Linear init,
            U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases).

    Attributes:
        weights[l]: (out_l, in_l) raw weights; biases[l]: (out_l,).
        parent_index: for an FPE child, (H1,) the parent neuron of each first-layer
            hidden unit (children of parent i are contiguous); None otherwise.
        expansion_info: set by `fci.fpe` on the models they
            make (alpha, split, pruned count, ...); absent on a freshly built model.
    """

    # Set outside __init__; declared so that mypy types it as the dict it holds,
    # not as what nn.Module.__getattr__/__setattr__ allow (Tensor | Module).
    expansion_info: dict[str, Any]

    def __init__(self, n_in: int, hidden: int | Sequence[int], n_out: int, seed: int = 0):
        super().__init__()
        sizes = _layer_sizes(n_in, hidden, n_out)
        self._init_layers([(fan_out, fan_in) for fan_in, fan_out in zip(sizes[:-1], sizes[1:])], seed)

    # -- structure ---------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        """[n_in, *hidden, n_out]."""
        return [self.weights[0].shape[1], *(w.shape[0] for w in self.weights)]

    @property
    def n_in(self) -> int:
        return self.sizes[0]

    @property
    def hidden(self) -> list[int]:
        return self.sizes[1:-1]

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    # -- computation -------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, n_in) -> logits (N, n_out)."""
        h = x
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.nn.functional.linear(h, w * self.weight_mask(l), b * self.bias_mask(l))
            if l < self.n_layers - 1:
                h = torch.relu(h)
        return h

    def hidden_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-ReLU activations of every hidden layer for x: (N, n_in)."""
        acts, h = [], x
        for l, (w, b) in enumerate(zip(self.weights[:-1], self.biases[:-1])):
            h = torch.relu(torch.nn.functional.linear(h, w * self.weight_mask(l), b * self.bias_mask(l)))
            acts.append(h)
        return acts

    # -- persistence -------------------------------------------------------
    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "MaskedMLP":
        """Inverse of `tensors()`; raises ValueError naming a missing or misshapen tensor."""
        n_layers = sum(1 for k in tensors if k.startswith("W") and k[1:].isdigit())
        if n_layers < 2:
            raise ValueError(f"expected weight tensors W0, W1, ...; found keys {sorted(tensors)}")
        for l in range(n_layers):
            for key in (f"W{l}", f"b{l}", f"M{l}", f"m{l}"):
                if key not in tensors:
                    raise ValueError(f"model tensors lack {key!r}")
        sizes = [tensors["W0"].shape[1], *(tensors[f"W{l}"].shape[0] for l in range(n_layers))]
        model = cls(sizes[0], sizes[1:-1], sizes[-1])
        model._load_tensors(tensors)
        return model

    def copy(self) -> "MaskedMLP":
        """An independent deep copy (on CPU)."""
        return MaskedMLP.from_tensors({k: v.clone() for k, v in self.tensors().items()})

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, nnz={self.nnz()}"


class MaskedMLPStack(MaskedStack):
    """M independent masked MLPs behind a leading model axis.

    Parameters have shapes `weights[l]: (M, out_l, in_l)`, `biases[l]: (M, out_l)`;
    `widths: (M, L-1)` records each model's true hidden widths (its neurons are
    the first `widths[m, l]` of layer l; the rest are masked-off padding).
    """

    widths: torch.Tensor  # (M, L-1) int64 buffer, declared so that reads are typed as a Tensor

    def __init__(self, sizes: Sequence[int], n_models: int):
        super().__init__()
        if len(sizes) < 3:
            raise ValueError(f"sizes must be [n_in, *hidden, n_out] with at least one hidden layer, got {list(sizes)}")
        self.weights = nn.ParameterList(
            nn.Parameter(torch.zeros(n_models, o, i)) for i, o in zip(sizes[:-1], sizes[1:])
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(n_models, o)) for o in sizes[1:])
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            self.register_buffer(f"weight_mask_{l}", torch.zeros_like(w))
            self.register_buffer(f"bias_mask_{l}", torch.zeros_like(b))
        self.register_buffer("widths", torch.tensor([list(sizes[1:-1])] * n_models, dtype=torch.int64))
        self.parent_indices: list[torch.Tensor | None] = [None] * n_models



    @classmethod
    def from_models(cls, models: Sequence[MaskedMLP]) -> "MaskedMLPStack":
        """Stack models of equal n_in, n_out and depth; pad narrower layers with masked neurons."""
        if not models:
            raise ValueError("cannot stack an empty list of models")
        first = models[0]
        for m in models:
            if (m.n_in, m.n_out, m.n_layers) != (first.n_in, first.n_out, first.n_layers):
                raise ValueError(
                    "all stacked models need the same n_in, n_out and depth; got "
                    f"{(m.n_in, m.n_out, m.n_layers)} and {(first.n_in, first.n_out, first.n_layers)}"
                )
        hidden = [max(m.hidden[l] for m in models) for l in range(first.n_layers - 1)]
        sizes = [first.n_in, *hidden, first.n_out]
        stack = cls(sizes, len(models))
        device = first.weights[0].device
        stack.to(device)
        with torch.no_grad():
            for i, m in enumerate(models):
                for l in range(m.n_layers):
                    o, k = m.weights[l].shape
                    stack.weights[l][i, :o, :k] = m.weights[l] * m.weight_mask(l)
                    stack.biases[l][i, :o] = m.biases[l] * m.bias_mask(l)
                    stack.weight_mask(l)[i, :o, :k] = m.weight_mask(l)
                    stack.bias_mask(l)[i, :o] = m.bias_mask(l)
                stack.widths[i] = torch.tensor(m.hidden, dtype=torch.int64)
                stack.parent_indices[i] = None if m.parent_index is None else m.parent_index.clone()
        return stack

    def to_models(self) -> list[MaskedMLP]:
        """Unstack into independent CPU models (exact copies, padding dropped)."""
        out = []
        widths = self.widths.cpu().tolist()
        for i in range(self.n_models):
            sizes = [self.weights[0].shape[2], *widths[i], self.weights[-1].shape[1]]
            m = MaskedMLP(sizes[0], sizes[1:-1], sizes[-1])
            with torch.no_grad():
                for l in range(self.n_layers):
                    o, k = sizes[l + 1], sizes[l]
                    m.weights[l].copy_(self.weights[l][i, :o, :k].detach().cpu())
                    m.biases[l].copy_(self.biases[l][i, :o].detach().cpu())
                    m.weight_mask(l).copy_(self.weight_mask(l)[i, :o, :k].cpu())
                    m.bias_mask(l).copy_(self.bias_mask(l)[i, :o].cpu())
            pi = self.parent_indices[i]
            m.parent_index = None if pi is None else pi.clone()
            out.append(m)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (M, N, n_in) -> logits (M, N, n_out)."""
        h = x
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            weff = w * self.weight_mask(l)
            beff = b * self.bias_mask(l)
            h = torch.baddbmm(beff.unsqueeze(1), h, weff.transpose(1, 2))
            if l < self.n_layers - 1:
                h = torch.relu(h)
        return h

