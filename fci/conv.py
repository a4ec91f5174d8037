"""Masked convolutional networks, their stacked (grouped-convolution) form, a
stacked trainer, and Fixed Parameter Expansion of conv filters.

A `MaskedCNN` is `h_l = pool(relu(conv(h_{l-1}, W_l * M_l) + b_l * m_l))` for its
conv layers (stride 1, "same" padding, optional 2x2 max pooling), then
`logits = W_head (flatten h) + b_head` with the head masked the same way. Every
weight and bias carries a 0/1 mask applied inside the forward pass (SPEC §2), so
no optimiser can revive a masked parameter; `nnz()` and `effective_weights()`
follow the MLP's definitions.

`MaskedCNNStack` holds M models behind a model axis and runs them as one
grouped convolution (`groups=M`); narrower models are padded with masked-off
filters. `fit_cnn` trains a stack by the specified step of `fci.train.maths`
(the minibatch orders of `epoch_perms`, `per_model_loss`, the loss summed over
models, torch's Adam with `ADAM_BETAS` / `ADAM_EPS`, fused where the build has
it), on any device.

Conv FPE (`expand_cnn`, SPEC §3 for filters): every filter of a conv layer is
split into `alpha` children that partition its active (in_channel x kh x kw)
weights by a split from `CONV_SPLITS`; the next layer's incoming weights are
replicated (input-channel slices for conv -> conv, the columns of every spatial
position for conv -> flatten -> linear), and the excess non-zeros are pruned by
global magnitude, so `nnz(child) == nnz(parent)` exactly.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from fci._progress import bar as tqdm

from fci.model import MaskedLayers
from fci.seeding import derive_seed, generator
from fci.train.config import ADAM_BETAS, ADAM_EPS, TrainConfig
from fci.train.maths import epoch_perms, one_thread_unless, per_model_loss

__all__ = [
    "MaskedCNN", "MaskedCNNStack", "CNNFitState", "fit_cnn", "evaluate_cnn",
    "step_flops", "CONV_SPLITS", "register_conv_split", "conv_split_groups", "expand_cnn", "expand_cnn_layers", "first_layer_filters",
]


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


class MaskedCNNStack(nn.Module):
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
    def n_models(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def n_conv(self) -> int:
        return len(self.weights) - 1

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def weight_mask(self, l: int) -> torch.Tensor:
        return getattr(self, f"weight_mask_{l}")

    def bias_mask(self, l: int) -> torch.Tensor:
        return getattr(self, f"bias_mask_{l}")

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

    def nnz(self) -> torch.Tensor:
        """(M,) non-zero effective weights plus biases per model."""
        total = torch.zeros(self.n_models, dtype=torch.int64, device=self.weights[0].device)
        for l in range(self.n_layers):
            total += ((self.weights[l] * self.weight_mask(l)) != 0).flatten(1).sum(1)
            total += ((self.biases[l] * self.bias_mask(l)) != 0).sum(1)
        return total


# --------------------------------------------------------------------------- training


class CNNFitState:
    """What `fit_cnn` returns: the run's optimiser; pass it back to continue the
    run (it refuses another stack or other optimiser settings)."""

    def __init__(self, stack: MaskedCNNStack, cfg: TrainConfig, optimizer: torch.optim.Optimizer):
        self._stack = weakref.ref(stack)
        self.settings = cfg.optimizer_settings()
        self.optimizer = optimizer
        self.fused = bool(optimizer.defaults.get("fused"))

    def check(self, stack: MaskedCNNStack, cfg: TrainConfig) -> None:
        if self._stack() is not stack:
            raise ValueError("optimizer was returned by fit_cnn() for a different stack")
        if cfg.optimizer_settings() != self.settings:
            raise ValueError(f"cannot continue a run under other optimiser settings ({self.settings} -> {cfg.optimizer_settings()})")


def _optimizer(stack: MaskedCNNStack, cfg: TrainConfig) -> torch.optim.Optimizer:
    """torch's Adam (or SGD) over the stack, fused where this build and device have it."""
    params = list(stack.parameters())
    kw: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    cls: Any = torch.optim.SGD
    if cfg.optimizer == "adam":
        cls, kw = torch.optim.Adam, {**kw, "betas": ADAM_BETAS, "eps": ADAM_EPS}
    try:
        return cls(params, fused=True, **kw)
    except (RuntimeError, ValueError):  # no fused kernel for this device / dtype
        return cls(params, foreach=True, **kw)


def _check_data(stack: MaskedCNNStack, x: torch.Tensor, y: torch.Tensor, loss: str) -> None:
    if loss not in ("ce", "bce"):
        raise ValueError(f"loss must be 'ce' or 'bce', got {loss!r}")
    want = tuple(stack.in_shape)
    if x.dim() != 4 or tuple(x.shape[1:]) != want:
        raise ValueError(f"x must be (N, {', '.join(map(str, want))}) images shared by the stack's models, got {tuple(x.shape)}")
    O = int(stack.weights[-1].shape[1])
    if y.shape[0] != x.shape[0] or (loss == "ce" and y.dim() != 1) or (loss == "bce" and tuple(y.shape[1:]) != (O,)):
        raise ValueError(f"y must be ({x.shape[0]},) class ids for 'ce' or ({x.shape[0]}, {O}) for 'bce', got {tuple(y.shape)}")
    dev = stack.weights[0].device
    if x.device != dev or y.device != dev:
        raise ValueError(f"data must be on the stack's device {dev}, got x on {x.device} and y on {y.device}")
    if loss == "ce" and y.numel() and (int(y.min()) < 0 or int(y.max()) >= O):
        raise ValueError(f"class ids must lie in [0, {O}), got {int(y.min())}..{int(y.max())}")


def fit_cnn(stack: MaskedCNNStack, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, epochs: range, loss: str = "ce",
            optimizer: CNNFitState | None = None, progress: bool | str = False) -> tuple[CNNFitState, torch.Tensor]:
    """Train a CNN stack in place by the specified step (`fci.train.maths`):
    per epoch e the minibatch order `epoch_perms(cfg.shuffle_seed, e)`, the loss
    summed over models (each model gets its own gradient), the gradient taken
    through the effective weights `W * M` (zero under a mask) and torch's
    Adam/SGD with `weight_decay` (raw weights under a mask are zero, so they
    stay zero). x: (N, C, H, W), y: (N,) class ids for 'ce' or (N, O) for
    'bce', shared by every model. Returns the state and the mean train loss per
    model and epoch, (M, len(epochs)), on CPU."""
    _check_data(stack, x, y, loss)
    if optimizer is None:
        state = CNNFitState(stack, cfg, _optimizer(stack, cfg))
    elif isinstance(optimizer, CNNFitState):
        optimizer.check(stack, cfg)
        state = optimizer
    else:
        raise ValueError(f"optimizer must be a state returned by fit_cnn() or None, got {type(optimizer).__name__}")
    with torch.no_grad():  # raw weights under a mask are zero (SPEC §2)
        for l in range(stack.n_layers):
            stack.weights[l].mul_(stack.weight_mask(l))
            stack.biases[l].mul_(stack.bias_mask(l))
    M, N, B = stack.n_models, x.shape[0], cfg.batch_size
    perms = epoch_perms(cfg.shuffle_seed, epochs, N, x.device)
    losses = torch.zeros(M, len(epochs))
    n_batches = (N + B - 1) // B
    opt = state.optimizer
    it = range(perms.shape[0])
    if progress:
        it = tqdm(it, desc=progress if isinstance(progress, str) else "train", unit="epoch", leave=False)
    dtype = stack.weights[0].dtype
    work = step_flops(stack, B) if x.device.type == "cpu" else float("inf")
    with one_thread_unless(work), torch.enable_grad():
        for k in it:
            acc = torch.zeros(M, device=x.device)
            for s in range(0, N, B):
                idx = perms[k, s : s + B]
                yb = y[idx]
                yb = yb.unsqueeze(0).expand(M, *yb.shape)
                per_model = per_model_loss(stack(x[idx].to(dtype)), yb, loss)
                opt.zero_grad(set_to_none=True)
                per_model.sum().backward()
                opt.step()
                acc += per_model.detach()
            losses[:, k] = (acc / n_batches).cpu()
    return state, losses


def step_flops(stack: MaskedCNNStack, batch: int) -> float:
    """Multiply-adds x 2 of one forward/backward of the padded stack (about 6 B
    per weight use): what decides whether torch's threads pay off on a CPU."""
    h, w = stack.in_shape[1], stack.in_shape[2]
    uses = 0
    for l in range(stack.n_conv):
        uses += stack.weights[l].numel() * h * w
        if stack.pool:
            h, w = h // 2, w // 2
    return 6.0 * batch * (uses + stack.weights[-1].numel())


@torch.no_grad()
def evaluate_cnn(stack: MaskedCNNStack, x: torch.Tensor, y: torch.Tensor, loss: str = "ce", chunk: int = 512) -> dict[str, torch.Tensor]:
    """Accuracy (argmax for 'ce', mean over outputs of (logit > 0) == y for 'bce')
    and mean loss per model, each (M,) on CPU; the loss is reduced in float64, so
    it does not depend on the stack's other models."""
    _check_data(stack, x, y, loss)
    with one_thread_unless(step_flops(stack, chunk) / 3 if x.device.type == "cpu" else float("inf")):
        return _evaluate(stack, x, y, loss, chunk)


def _evaluate(stack: MaskedCNNStack, x: torch.Tensor, y: torch.Tensor, loss: str, chunk: int) -> dict[str, torch.Tensor]:
    M, N = stack.n_models, x.shape[0]
    correct = torch.zeros(M, dtype=torch.float64, device=x.device)
    total = torch.zeros(M, dtype=torch.float64, device=x.device)
    for s in range(0, N, chunk):
        logits = stack(x[s : s + chunk].to(stack.weights[0].dtype))  # (M, B, O)
        yb = y[s : s + chunk].unsqueeze(0).expand(M, *y[s : s + chunk].shape)
        if loss == "ce":
            terms = F.cross_entropy(logits.flatten(0, 1), yb.flatten().long(), reduction="none").view(M, -1)
            total += terms.double().sum(1)
            correct += (logits.argmax(2) == yb).double().sum(1)
        else:
            terms = F.binary_cross_entropy_with_logits(logits, yb.to(logits.dtype), reduction="none")
            total += terms.double().mean(2).sum(1)
            correct += ((logits > 0) == (yb > 0.5)).double().mean(2).sum(1)
    return {"accuracy": (correct / N).float().cpu(), "loss": (total / N).float().cpu()}


# --------------------------------------------------------------------------- conv FPE


SplitFn = Callable[[torch.Tensor, np.ndarray, int, torch.Generator, int], np.ndarray]
"""A conv split: (W (F, C, kh, kw) effective weights, active (F, C, kh, kw) bool,
alpha, generator, seed) -> (F, C, kh, kw) child ids in [0, alpha) on the active
weights and -1 elsewhere."""

CONV_SPLITS: dict[str, SplitFn] = {}
"""The conv splits by name. (Kept here, apart from the MLP's split registry in
fci/expand.py, until the two are joined.)"""


def register_conv_split(name: str, fn: SplitFn) -> SplitFn:
    """Register a conv split under `name` (refuses a duplicate)."""
    if name in CONV_SPLITS:
        raise ValueError(f"a conv split named {name!r} is already registered")
    CONV_SPLITS[name] = fn
    return fn


def _deal(units: np.ndarray, alpha: int, gen: torch.Generator) -> np.ndarray:
    """Unit -> child: the units in a random order, dealt round-robin (counts differ by at most one)."""
    order = torch.randperm(len(units), generator=gen).numpy()
    out = np.empty(len(units), dtype=np.int64)
    out[order] = np.arange(len(units)) % alpha
    return out


def _split_random(W, active, alpha, gen, seed) -> np.ndarray:
    """A balanced random partition of each filter's active weights."""
    out = np.full(active.shape, -1, dtype=np.int64)
    for f in range(active.shape[0]):
        pos = np.flatnonzero(active[f])
        if len(pos):
            out[f].reshape(-1)[pos] = _deal(pos, alpha, gen)
    return out


def _split_by_units(active: np.ndarray, alpha: int, gen: torch.Generator, unit_of: np.ndarray) -> np.ndarray:
    """Deal whole units (unit_of: (C, kh, kw) unit ids) of each filter's active weights."""
    out = np.full(active.shape, -1, dtype=np.int64)
    for f in range(active.shape[0]):
        units = np.unique(unit_of[active[f]])
        if len(units) == 0:
            continue
        child = dict(zip(units.tolist(), _deal(units, alpha, gen).tolist()))
        where = active[f]
        out[f][where] = np.vectorize(child.__getitem__, otypes=[np.int64])(unit_of[where])
    return out


def _split_channel(W, active, alpha, gen, seed) -> np.ndarray:
    """Deal whole input channels (all kernel positions of a channel go to one child)."""
    _, C, kh, kw = active.shape
    return _split_by_units(active, alpha, gen, np.broadcast_to(np.arange(C)[:, None, None], (C, kh, kw)))


def _split_spatial(W, active, alpha, gen, seed) -> np.ndarray:
    """Deal kernel positions (all input channels at a position go to one child)."""
    _, C, kh, kw = active.shape
    return _split_by_units(active, alpha, gen, np.broadcast_to(np.arange(kh * kw).reshape(1, kh, kw), (C, kh, kw)))


def _split_gram(W, active, alpha, gen, seed) -> np.ndarray:
    """Cluster the (C*kh*kw) input positions by the Gram matrix of the flattened
    filters (spectral clustering, `fci.expand.gram_clusters`, one clustering per
    layer), then deal the clusters."""
    from fci.expand import gram_clusters

    Fn, C, kh, kw = active.shape
    labels = gram_clusters(W.reshape(Fn, -1), seed=seed).reshape(C, kh, kw)
    # positions no filter uses (label -1) are never active, so never placed
    return _split_by_units(active, alpha, gen, labels)


register_conv_split("random", _split_random)
register_conv_split("channel", _split_channel)
register_conv_split("spatial", _split_spatial)
register_conv_split("gram", _split_gram)


def _check_alpha(alpha: Any) -> int:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, np.integer)) or alpha < 1:
        raise ValueError(f"alpha must be an integer >= 1, got {alpha!r}")
    return int(alpha)


def conv_split_groups(W: torch.Tensor, M: torch.Tensor, alpha: int, split: str, seed: int = 0) -> torch.Tensor:
    """Partition each filter's active weights into alpha groups.
    W, M: (F, C, kh, kw) raw weights and mask -> (F, C, kh, kw) int64 child ids
    in [0, alpha) on active weights (mask 1, weight != 0), -1 elsewhere."""
    alpha = _check_alpha(alpha)
    if split not in CONV_SPLITS:
        raise ValueError(f"split must be one of {sorted(CONV_SPLITS)}, got {split!r}")
    W = W.detach().cpu()
    active = ((M.cpu() != 0) & (W != 0)).numpy()
    gen = generator(seed, "conv-split", split, alpha)
    return torch.from_numpy(CONV_SPLITS[split]((W * M.cpu()).double(), active, alpha, gen, seed))


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
    if split not in CONV_SPLITS:
        raise ValueError(f"split must be one of {sorted(CONV_SPLITS)}, got {split!r}")
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


def first_layer_filters(model: MaskedCNN) -> torch.Tensor:
    """The effective first-layer filters flattened, (F_0, C * kh * kw): the `W1`
    of `fci.metrics.feature_capacity` / `cosine_interference` for a CNN."""
    return model.effective_weights()[0][0].flatten(1)
