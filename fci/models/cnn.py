"""Masked convolutional networks and their stacked (grouped-convolution) form.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from fci.models.base import MaskedLayers, MaskedStack

__all__ = ["HEADS", "MaskedCNN", "MaskedCNNStack", "first_layer_filters"]


HEADS = ("flatten", "gap")


def _check_arch(in_shape: Sequence[int], channels: Sequence[int], n_out: int, kernel_size: int, pool: bool,
                head: str = "flatten") -> tuple:
    """Checked (in_shape, channels, positions per filter the head reads: (H_L, W_L) or (1, 1) for 'gap')."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if len(in_shape) != 3 or any(not isinstance(v, int) or v < 1 for v in in_shape):
        raise ValueError(f"in_shape must be (C, H, W) of positive ints, got {tuple(in_shape)!r}")
    if not channels or any(not isinstance(v, int) or v < 1 for v in channels):
        raise ValueError(f"channels must be a non-empty list of positive ints (filters per conv layer), got {list(channels)!r}")
    if not isinstance(n_out, int) or n_out < 1:
        raise ValueError(f"n_out must be a positive integer, got {n_out!r}")
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive integer ('same' padding), got {kernel_size!r}")
    h, w = in_shape[1], in_shape[2]
    for _ in channels:
        if pool:
            h, w = h // 2, w // 2
    if h < 1 or w < 1:
        raise ValueError(f"{len(channels)} pooled conv layers shrink a {in_shape[1]}x{in_shape[2]} image to nothing")
    if head == "gap":
        h, w = 1, 1
    return (int(in_shape[0]), int(in_shape[1]), int(in_shape[2])), [int(c) for c in channels], (h, w)


class MaskedCNN(MaskedLayers):
    """One CNN with fixed 0/1 masks on every weight and bias.

    Args:
        in_shape: (C, H, W) of the input images.
        channels: filters of each conv layer, e.g. [8] or [8, 8].
        n_out: classes (softmax head) or outputs.
        kernel_size: odd; stride 1, padding kernel_size // 2 ("same").
        pool: a 2x2 max pool after every conv layer.
        head: 'flatten' (the head reads every position of the last maps) or
            'gap' (global average pooling first: one input per filter).
        seed: initialisation seed, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
            weights and biases (fan_in = C * kh * kw for a conv layer).

    Attributes:
        weights[l]: conv layers (F_l, C_l, k, k), then the head (O, F_L * P)
            with P = H_L * W_L spatial positions (flatten order: filter-major);
        biases[l]: (F_l,) and (O,). Masks alike (`weight_mask(l)`, `bias_mask(l)`).
        parent_index: for an FPE child, (F_0,) the parent of each first-layer filter.
    """

    def __init__(self, in_shape: Sequence[int], channels: Sequence[int], n_out: int, kernel_size: int = 3,
                 pool: bool = True, seed: int = 0, head: str = "flatten"):
        super().__init__()
        in_shape, channels, (h, w) = _check_arch(in_shape, channels, n_out, kernel_size, pool, head)
        self.in_shape, self.channels, self.kernel_size, self.pool, self.head = in_shape, channels, kernel_size, bool(pool), head
        self.out_hw = (h, w)
        shapes: list[tuple[int, ...]] = [(c_out, c_in, kernel_size, kernel_size) for c_in, c_out in zip([in_shape[0], *channels[:-1]], channels)]
        shapes.append((n_out, channels[-1] * h * w))
        self._init_layers(shapes, seed)  # n_layers: the conv layers plus the head
        self.expansion_info: dict[str, Any] = {}

    @property
    def n_conv(self) -> int:
        return len(self.channels)

    @property
    def n_out(self) -> int:
        return int(self.weights[-1].shape[0])

    def arch(self) -> dict[str, Any]:
        return {"in_shape": list(self.in_shape), "channels": list(self.channels), "n_out": self.n_out,
                "kernel_size": self.kernel_size, "pool": self.pool, "head": self.head}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> logits (N, O)."""
        h = x
        for l in range(self.n_conv):
            h = torch.relu(F.conv2d(h, self.weights[l] * self.weight_mask(l), self.biases[l] * self.bias_mask(l),
                                    padding=self.kernel_size // 2))
            if self.pool:
                h = F.max_pool2d(h, 2)
        h = h.mean((2, 3)) if self.head == "gap" else h.flatten(1)
        return F.linear(h, self.weights[-1] * self.weight_mask(self.n_conv),
                        self.biases[-1] * self.bias_mask(self.n_conv))

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> "MaskedCNN":
        """Copy `tensors()` output of a model of this architecture in; returns self."""
        self._load_tensors(tensors)
        return self

    def copy(self) -> "MaskedCNN":
        """An independent deep copy (on CPU)."""
        a = self.arch()
        m = MaskedCNN(a["in_shape"], a["channels"], a["n_out"], a["kernel_size"], a["pool"], head=a["head"])
        m.load_tensors({k: v.clone() for k, v in self.tensors().items()})
        m.expansion_info = dict(self.expansion_info)
        return m

    def extra_repr(self) -> str:
        return f"in={list(self.in_shape)}, channels={self.channels}, out={self.n_out}, k={self.kernel_size}, pool={self.pool}, head={self.head}, nnz={self.nnz()}"


class MaskedCNNStack(MaskedStack):
    """M masked CNNs of one depth, input shape, kernel, pooling and output size,
    behind a leading model axis, computed as grouped convolutions (`groups=M`).

    weights[l]: (M, F_l, C_l, k, k) for conv layers, (M, O, F_L * P) for the
    head; biases (M, F_l), (M, O); masks alike. `channels: (M, L)` holds each
    model's true filter counts: its filters are the first `channels[m, l]`, the
    rest are masked-off padding (zero weights, biases and masks: they output 0).
    """

    channels: torch.Tensor

    def __init__(self, in_shape: Sequence[int], channels: Sequence[int], n_out: int, n_models: int, kernel_size: int = 3,
                 pool: bool = True, head: str = "flatten"):
        super().__init__()
        in_shape, channels, (h, w) = _check_arch(in_shape, channels, n_out, kernel_size, pool, head)
        self.in_shape, self.kernel_size, self.pool, self.out_hw, self.head = in_shape, kernel_size, bool(pool), (h, w), head
        shapes: list[tuple[int, ...]] = [(c_out, c_in, kernel_size, kernel_size) for c_in, c_out in zip([in_shape[0], *channels[:-1]], channels)]
        shapes.append((n_out, channels[-1] * h * w))
        self.weights = nn.ParameterList(nn.Parameter(torch.zeros(n_models, *s)) for s in shapes)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(n_models, s[0])) for s in shapes)
        for l, (wt, b) in enumerate(zip(self.weights, self.biases)):
            self.register_buffer(f"weight_mask_{l}", torch.zeros_like(wt))
            self.register_buffer(f"bias_mask_{l}", torch.zeros_like(b))
        self.register_buffer("channels", torch.tensor([channels] * n_models, dtype=torch.int64))
        self.parent_indices: list[torch.Tensor | None] = [None] * n_models


    @property
    def n_conv(self) -> int:
        return len(self.weights) - 1


    @classmethod
    def from_models(cls, models: Sequence[MaskedCNN]) -> "MaskedCNNStack":
        """Stack models of one architecture but for their filter counts; narrower layers are padded."""
        if not models:
            raise ValueError("cannot stack an empty list of models")
        first = models[0]
        sig = lambda m: (tuple(m.in_shape), m.n_conv, m.n_out, m.kernel_size, m.pool, m.head)  # noqa: E731
        for m in models:
            if sig(m) != sig(first):
                raise ValueError(f"stacked CNNs need the same input shape, depth, outputs, kernel, pooling and head; got {sig(m)} and {sig(first)}")
        widest = [max(m.channels[l] for m in models) for l in range(first.n_conv)]
        stack = cls(first.in_shape, widest, first.n_out, len(models), first.kernel_size, first.pool, first.head)
        stack.to(first.weights[0].device)
        P = first.out_hw[0] * first.out_hw[1]
        with torch.no_grad():
            for i, m in enumerate(models):
                for l in range(m.n_layers):
                    idx = (i,) + tuple(slice(0, s) for s in m.weights[l].shape)
                    stack.weights[l][idx] = m.weights[l] * m.weight_mask(l)
                    stack.weight_mask(l)[idx] = m.weight_mask(l)
                    stack.biases[l][i, : m.biases[l].shape[0]] = m.biases[l] * m.bias_mask(l)
                    stack.bias_mask(l)[i, : m.biases[l].shape[0]] = m.bias_mask(l)
                assert m.weights[-1].shape[1] == m.channels[-1] * P
                stack.channels[i] = torch.tensor(m.channels, dtype=torch.int64)
                stack.parent_indices[i] = None if m.parent_index is None else m.parent_index.clone()
        return stack

    def to_models(self) -> list[MaskedCNN]:
        """Unstack into independent CPU models (exact copies, padding dropped)."""
        out = []
        O = int(self.weights[-1].shape[1])
        for i, ch in enumerate(self.channels.cpu().tolist()):
            m = MaskedCNN(self.in_shape, ch, O, self.kernel_size, self.pool, head=self.head)
            with torch.no_grad():
                for l in range(self.n_layers):
                    idx = (i,) + tuple(slice(0, s) for s in m.weights[l].shape)
                    m.weights[l].copy_(self.weights[l][idx].detach().cpu())
                    m.weight_mask(l).copy_(self.weight_mask(l)[idx].cpu())
                    m.biases[l].copy_(self.biases[l][i, : m.biases[l].shape[0]].detach().cpu())
                    m.bias_mask(l).copy_(self.bias_mask(l)[i, : m.biases[l].shape[0]].cpu())
            pi = self.parent_indices[i]
            m.parent_index = None if pi is None else pi.clone()
            out.append(m)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) shared by every model, or (M, N, C, H, W) one batch per
        model -> logits (M, N, O). Conv layers are grouped convolutions
        (groups=M; shared input: the first layer is one plain convolution)."""
        M = self.n_models
        pad = self.kernel_size // 2
        if x.dim() == 4:
            N = x.shape[0]
            w0 = (self.weights[0] * self.weight_mask(0)).flatten(0, 1)  # (M*F0, C, k, k)
            h = F.conv2d(x, w0, (self.biases[0] * self.bias_mask(0)).flatten(), padding=pad)
        elif x.dim() == 5 and x.shape[0] == M:
            N = x.shape[1]
            xm = x.transpose(0, 1).flatten(1, 2)  # (N, M*C, H, W)
            w0 = (self.weights[0] * self.weight_mask(0)).flatten(0, 1)
            h = F.conv2d(xm, w0, (self.biases[0] * self.bias_mask(0)).flatten(), padding=pad, groups=M)
        else:
            raise ValueError(f"x must be (N, C, H, W) or ({M}, N, C, H, W), got {tuple(x.shape)}")
        h = torch.relu(h)
        if self.pool:
            h = F.max_pool2d(h, 2)
        for l in range(1, self.n_conv):
            wl = (self.weights[l] * self.weight_mask(l)).flatten(0, 1)  # (M*F_l, F_{l-1}, k, k)
            h = torch.relu(F.conv2d(h, wl, (self.biases[l] * self.bias_mask(l)).flatten(), padding=pad, groups=M))
            if self.pool:
                h = F.max_pool2d(h, 2)
        if self.head == "gap":
            h = h.mean((2, 3))
        flat = h.reshape(N, M, -1).transpose(0, 1)  # (M, N, F_L * P), filter-major per model (P = 1 for 'gap')
        wh = self.weights[-1] * self.weight_mask(self.n_conv)
        bh = self.biases[-1] * self.bias_mask(self.n_conv)
        return torch.baddbmm(bh.unsqueeze(1), flat, wh.transpose(1, 2))



def first_layer_filters(model: MaskedCNN) -> torch.Tensor:
    """The effective first-layer filters flattened, (F_0, C * kh * kw): the `W1`
    of `fci.metrics.feature_capacity` / `cosine_interference` for a CNN."""
    return model.effective_weights()[0][0].flatten(1)
