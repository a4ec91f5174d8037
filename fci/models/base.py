"""What every masked model shares (SPEC §2): weights and 0/1 masks per layer, the mask applied inside the forward pass, the non-zero count, and `resolve_device`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from fci.seeding import generator

__all__ = ["MaskedLayers", "MaskedParameters", "MaskedStack", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"` picks CUDA when present, else CPU; anything else must name a usable device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available on this machine")
    return torch.device(device)


def _layer_sizes(n_in: int, hidden: int | Sequence[int], n_out: int) -> list[int]:
    hidden = [hidden] if isinstance(hidden, int) else list(hidden)
    sizes = [n_in, *hidden, n_out]
    for name, value in (("n_in", n_in), ("n_out", n_out)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not hidden or any((not isinstance(h, int)) or h < 1 for h in hidden):
        raise ValueError(f"hidden must be a positive int or a non-empty list of positive ints, got {hidden!r}")
    return sizes


class MaskedParameters:
    """Layer access shared by single models and stacks: `weights` and `biases` (parameter
    lists) with their masks registered as buffers `weight_mask_<l>` and `bias_mask_<l>`."""

    weights: nn.ParameterList

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def weight_mask(self, l: int) -> torch.Tensor:
        return getattr(self, f"weight_mask_{l}")

    def bias_mask(self, l: int) -> torch.Tensor:
        return getattr(self, f"bias_mask_{l}")


class MaskedStack(MaskedParameters, nn.Module):
    """What the stacks of models share: every weight and bias carries a leading model
    axis (M, ...), and so does the non-zero count."""

    weights: nn.ParameterList
    biases: nn.ParameterList

    @property
    def n_models(self) -> int:
        return int(self.weights[0].shape[0])

    def nnz(self) -> torch.Tensor:
        """(M,) non-zero effective weights plus biases per model."""
        total = torch.zeros(self.n_models, dtype=torch.int64, device=self.weights[0].device)
        for l in range(self.n_layers):
            total += ((self.weights[l] * self.weight_mask(l)) != 0).flatten(1).sum(1)
            total += ((self.biases[l] * self.bias_mask(l)) != 0).sum(1)
        return total


class MaskedLayers(MaskedParameters, nn.Module):
    """What every masked model shares: per layer a raw weight tensor and bias,
    each with a fixed 0/1 mask applied inside the forward pass, and the
    bookkeeping on them (masks, effective weights, nnz, the storage dict).
    `MaskedMLP` (linear layers) and `fci.models.MaskedCNN` (conv layers and a head)
    differ only in their shapes and their forward pass."""

    parent_index: torch.Tensor | None

    def _init_layers(self, shapes: Sequence[tuple[int, ...]], seed: int) -> None:
        """Weights (shape) and biases (shape[0]) ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        fan_in the product of shape[1:] (PyTorch's default init), drawn layer by
        layer, weight before bias, from generator(seed, "init"); all-ones masks."""
        gen = generator(seed, "init")
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for shape in shapes:
            bound = 1.0 / math.sqrt(math.prod(shape[1:]))
            self.weights.append(nn.Parameter((torch.rand(shape, generator=gen) * 2 - 1) * bound))
            self.biases.append(nn.Parameter((torch.rand(shape[0], generator=gen) * 2 - 1) * bound))
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            self.register_buffer(f"weight_mask_{l}", torch.ones_like(w))
            self.register_buffer(f"bias_mask_{l}", torch.ones_like(b))
        self.parent_index = None


    def set_masks(self, l: int, weight_mask: torch.Tensor, bias_mask: torch.Tensor | None = None) -> None:
        """Set layer l's masks and zero the raw parameters they hide."""
        wm = weight_mask.to(self.weights[l].dtype)
        if wm.shape != self.weights[l].shape:
            raise ValueError(f"weight mask of layer {l} must have shape {tuple(self.weights[l].shape)}, got {tuple(wm.shape)}")
        self.weight_mask(l).copy_(wm)
        if bias_mask is not None:
            bm = bias_mask.to(self.biases[l].dtype)
            if bm.shape != self.biases[l].shape:
                raise ValueError(f"bias mask of layer {l} must have shape {tuple(self.biases[l].shape)}, got {tuple(bm.shape)}")
            self.bias_mask(l).copy_(bm)
        with torch.no_grad():
            self.weights[l].mul_(self.weight_mask(l))
            self.biases[l].mul_(self.bias_mask(l))

    def effective_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(W_l * M_l, b_l * m_l), ...], first layer first, detached."""
        return [
            ((w * self.weight_mask(l)).detach(), (b * self.bias_mask(l)).detach())
            for l, (w, b) in enumerate(zip(self.weights, self.biases))
        ]

    def nnz_split(self) -> dict[str, int]:
        """Non-zero effective weights and biases (SPEC §2)."""
        eff = self.effective_weights()
        n_w = sum(int((w != 0).sum()) for w, _ in eff)
        n_b = sum(int((b != 0).sum()) for _, b in eff)
        return {"weights": n_w, "biases": n_b, "total": n_w + n_b}

    def nnz(self) -> int:
        """Non-zero effective weights plus non-zero biases."""
        return self.nnz_split()["total"]

    # -- persistence -------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat name -> tensor dict (raw weights, biases, masks, lineage) for storage."""
        out: dict[str, torch.Tensor] = {}
        for l in range(self.n_layers):
            out[f"W{l}"] = self.weights[l].detach().cpu().contiguous()
            out[f"b{l}"] = self.biases[l].detach().cpu().contiguous()
            out[f"M{l}"] = self.weight_mask(l).detach().cpu().contiguous()
            out[f"m{l}"] = self.bias_mask(l).detach().cpu().contiguous()
        if self.parent_index is not None:
            out["parent_index"] = self.parent_index.detach().cpu().to(torch.int64).contiguous()
        return out

    def _load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy a `tensors()` dict of this architecture in; ValueError names a missing or misshapen tensor."""
        with torch.no_grad():
            for l in range(self.n_layers):
                for key, target in ((f"W{l}", self.weights[l]), (f"b{l}", self.biases[l]),
                                    (f"M{l}", self.weight_mask(l)), (f"m{l}", self.bias_mask(l))):
                    if key not in tensors:
                        raise ValueError(f"model tensors lack {key!r}")
                    if tuple(tensors[key].shape) != tuple(target.shape):
                        raise ValueError(f"tensor {key!r} has shape {tuple(tensors[key].shape)}, expected {tuple(target.shape)}")
                    target.copy_(tensors[key])
        if "parent_index" in tensors:
            self.parent_index = tensors["parent_index"].to(torch.int64).clone()

    def _fill_from(self, parent: "MaskedLayers", replaced: dict[int, tuple[torch.Tensor, ...]]) -> None:
        """Every layer's weights, biases and masks from `parent`, except the layers in
        `replaced`: l -> (W, M, b, m), or (W, M) to keep the parent's bias and bias mask.
        (How FPE builds a child: the split layer and the next one change, the rest is copied.)"""
        with torch.no_grad():
            for l in range(parent.n_layers):
                new = replaced.get(l, ())
                w, m = new[:2] if new else (parent.weights[l].detach(), parent.weight_mask(l))
                b, bm = new[2:4] if len(new) == 4 else (parent.biases[l].detach(), parent.bias_mask(l))
                self.weights[l].copy_(w)
                self.biases[l].copy_(b)
                self.set_masks(l, m, bm)
