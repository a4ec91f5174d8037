"""The batched trainer (SPEC §2–3).

Every model trains inside a `MaskedMLPStack`: one forward/backward and one
optimiser step per minibatch for the whole stack. The stack's loss is the *sum*
of each model's own mean loss, so every model receives exactly the gradient it
would receive alone, and Adam (elementwise) updates it exactly as it would alone.

Minibatch order is a fixed function of `(TrainConfig.shuffle_seed, epoch)`, shared
by all models of a stack, so a model's training does not depend on which stack
it lands in: a stack trains to the same weights as each model alone.

The FPE schedule (`run_fpe`): dense models train `warmup` epochs; the dense
state at that moment is the *parent*; the paired dense baseline continues
`finetune` more epochs with the same optimiser (an uninterrupted
`warmup + finetune` run from the same initialisation and data); each parent is
expanded and its children train the same `finetune` epochs (same minibatch
order) with a fresh optimiser.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from fci.expand import SPLITS, expand, expand_layers
from fci import _kernel
from fci._fields import known_fields
from fci.data import Dataset
from fci.model import MaskedMLP, MaskedMLPStack, resolve_device
from fci.seeding import derive_seed, generator
from fci.store import Store, config_key
from fci.tasks import DNFTask, TaskConfig

__all__ = [
    "TrainConfig",
    "FPESpec",
    "ModelResult",
    "FPEResult",
    "fit",
    "evaluate",
    "per_model_loss",
    "train_models",
    "run_fpe",
    "run_fpe_data",
    "DataFPEResult",
    "auto_max_stack",
    "trial_bytes",
    "entry_configs",
    "save_fpe_result",
    "load_fpe_result",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """How models train.

    Attributes:
        lr: Adam learning rate (> 0).
        batch_size: minibatch size (>= 1).
        warmup: dense epochs before expansion (>= 0).
        finetune: epochs after expansion; the dense baseline trains warmup + finetune (>= 0).
        weight_decay: L2 penalty added to the gradient, as torch.optim.Adam does (>= 0).
        optimizer: "adam" (default) or "sgd".
        shuffle_seed: seed of the minibatch order, shared by every model of a stack.
    """

    lr: float = 0.01
    batch_size: int = 256
    warmup: int = 200
    finetune: int = 200
    weight_decay: float = 0.0
    optimizer: str = "adam"
    shuffle_seed: int = 0

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        for name in ("warmup", "finetune"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0 (epochs), got {v!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")

    @property
    def epochs(self) -> int:
        return self.warmup + self.finetune

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return cls(**known_fields(cls, d))


# ---------------------------------------------------------------------------
# The stacked fit loop
#
# On a CPU (float32) `fit` trains through fci's C kernel (`fci._kernel`,
# `fci/_fitkernel.c`) when the machine can build it: each model start to finish
# in one loop. Otherwise, and on a GPU, it takes the torch path below.
#
# The torch path trains through a hand-written forward/backward over one flat buffer
# (no autograd graph, no per-model Python work): per minibatch a gather, two
# batched matmuls per layer, an in-place ReLU, one mask multiply on the flat
# gradient and one fused optimiser step. It computes exactly what autograd
# computes for `MaskedMLPStack.forward` (the effective weight W * M): the raw
# weights under a mask are kept at zero, so W * M == W in the forward pass, and
# the gradient is multiplied by the mask before the optimiser sees it, so no
# optimiser state or weight decay can revive a masked weight (SPEC §2).


class _threads:
    """Run stacks on one intra-op thread unless a step is enormous. A step is a
    few dozen small ops; with more threads each op waits on a barrier, and on a
    busy 2-core machine that made a tiny baddbmm ~100x slower and whole stacks
    of 1024 models (or 256 of width 64) 4-6x slower (`benchmarks.trainer
    --scaling` prints both). Results do not depend on the machine's load: the
    choice is a pure function of the stack's shape (above the threshold torch's
    own setting applies, which the caller controls)."""

    def __init__(self, work: float, threshold: float = 1e10):
        self.n = 1 if work < threshold else None

    def __enter__(self):
        self.old = torch.get_num_threads()
        if self.n is not None:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


def _step_flops(stack: MaskedMLPStack, batch: int) -> float:
    return 6.0 * batch * sum(w.numel() for w in stack.weights)


def _make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """A torch optimiser over the stack's own parameters (the autograd path)."""
    params = list(params)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def _epoch_perms(seed: int, epochs: range, n: int, device: torch.device) -> torch.Tensor:
    """(len(epochs), n) minibatch orders, a pure function of (seed, epoch)."""
    if len(epochs) == 0:
        return torch.empty(0, n, dtype=torch.int64, device=device)
    perms = [torch.randperm(n, generator=generator(seed, "epoch", e)) for e in epochs]
    return torch.stack(perms).to(device)


def per_model_loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Each model's mean loss on its batch, as training minimises it.
    logits (M, B, O); y (M, B, O) 0/1 for 'bce', (M, B) class ids for 'ce'. -> (M,)"""
    if loss == "bce":
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none").mean((1, 2))
    M, B, O = logits.shape
    return torch.nn.functional.cross_entropy(logits.reshape(M * B, O), y.reshape(M * B).long(), reduction="none").view(M, B).mean(1)


class _FlatStack:
    """A slice of a stack's models: parameters, gradients and masks, each in one
    flat buffer, trimmed to the slice's own widest layers.

    Layer 0 is stored augmented, `A0: (M, H1, n_in + 1)` = [W0 | b0], so that with
    a column of ones appended to the input the first layer (the largest) is one
    plain bmm and its bias gradient comes out of the weight-gradient bmm. Layers
    l >= 1 hold `W[l]: (M, out, in)` then `b[l]: (M, out)`. One flat buffer lets
    the mask multiply and the optimiser step run as one op each, whatever M is.
    `rows` are the slice's models in the stack (None: all of them).
    """

    def __init__(self, sizes: Sequence[int], rows: torch.Tensor | None, n_models: int, device, dtype):
        self.device, self.dtype = device, dtype
        self.rows, self.sizes = rows, list(sizes)
        self.n_layers = len(sizes) - 1
        M = n_models
        self.shapes = [(M, sizes[l + 1], sizes[l]) for l in range(self.n_layers)]
        _, H1, n = self.shapes[0]
        numels = [M * H1 * (n + 1)]
        for l in range(1, self.n_layers):
            Ml, o, i = self.shapes[l]
            numels += [Ml * o * i, Ml * o]
        self.offsets = [0]
        for k in numels:
            self.offsets.append(self.offsets[-1] + k)
        size = self.offsets[-1]
        self.param = torch.zeros(size, device=self.device, dtype=self.dtype)
        self.param.grad = torch.zeros_like(self.param)
        self.mask = torch.zeros_like(self.param)
        self.A0, self.W, self.b = self._views(self.param)
        self.gA0, self.gW, self.gb = self._views(self.param.grad)
        self.mA0, self.mW, self.mb = self._views(self.mask)
        self._data: tuple | None = None  # (x, y, their versions, loss, _TrainData) of the last fit
        self._buffers: dict[tuple, _StepBuffers] = {}

    def data_for(self, x: torch.Tensor, y: torch.Tensor, loss: str) -> "_TrainData":
        """The training layout of this slice of (x, y), reused when a continued
        fit passes the same, unmodified tensors (as run_fpe's dense phases do)."""
        c = self._data
        if c is not None and c[0] is x and c[1] is y and c[2] == (x._version, y._version) and c[3] == loss:
            return c[4]
        xs, ys = (x, y) if self.rows is None else (x.index_select(0, self.rows), y.index_select(0, self.rows))
        data = _TrainData.build(xs, ys, loss, self.dtype)
        self._data = (x, y, (x._version, y._version), loss, data)
        return data

    def buffers(self, B: int, data: "_TrainData") -> "_StepBuffers":
        """The step buffers for minibatches of B of this data layout (an epoch
        has at most two batch sizes; a new loss or layout replaces them)."""
        key = (B, data.y.dtype, tuple(data.y.shape[1:]))
        if key not in self._buffers:
            if len(self._buffers) >= 4:
                self._buffers.clear()
            self._buffers[key] = _StepBuffers(self, B, data)
        return self._buffers[key]

    def _views(self, flat: torch.Tensor):
        M, H1, n = self.shapes[0]
        A0 = flat[: self.offsets[1]].view(M, H1, n + 1)
        W: list[torch.Tensor | None] = [None]
        b: list[torch.Tensor | None] = [None]
        for l in range(1, self.n_layers):
            s = self.offsets[2 * l - 1], self.offsets[2 * l], self.offsets[2 * l + 1]
            W.append(flat[s[0] : s[1]].view(self.shapes[l]))
            b.append(flat[s[1] : s[2]].view(self.shapes[l][:2]))
        return A0, W, b

    def _take(self, t: torch.Tensor, l: int, bias: bool = False) -> torch.Tensor:
        """This slice's part of a stacked (M, out, in) or (M, out) tensor of layer l."""
        if self.rows is not None:
            t = t.index_select(0, self.rows)
        o, i = self.sizes[l + 1], self.sizes[l]
        return t[:, :o] if bias else t[:, :o, :i]

    @torch.no_grad()
    def load(self, stack: MaskedMLPStack) -> None:
        """Copy the stack's masks and effective parameters in (masked raw weights become 0)."""
        n = self.sizes[0]
        wm, bm = self._take(stack.weight_mask(0), 0), self._take(stack.bias_mask(0), 0, True)
        self.mA0[..., :n].copy_(wm)
        self.mA0[..., n].copy_(bm)
        self.A0[..., :n].copy_(self._take(stack.weights[0], 0) * wm)
        self.A0[..., n].copy_(self._take(stack.biases[0], 0, True) * bm)
        for l in range(1, self.n_layers):
            wm, bm = self._take(stack.weight_mask(l), l), self._take(stack.bias_mask(l), l, True)
            self.mW[l].copy_(wm)
            self.mb[l].copy_(bm)
            self.W[l].copy_(self._take(stack.weights[l], l) * wm)
            self.b[l].copy_(self._take(stack.biases[l], l, True) * bm)

    @torch.no_grad()
    def store(self, stack: MaskedMLPStack) -> None:
        """Copy the trained parameters back into the stack (its padding is left as it was: zero)."""
        n = self.sizes[0]
        pairs = [(stack.weights[0], self.A0[..., :n]), (stack.biases[0], self.A0[..., n])]
        for l in range(1, self.n_layers):
            pairs += [(stack.weights[l], self.W[l]), (stack.biases[l], self.b[l])]
        for target, value in pairs:
            idx = (slice(None),) + tuple(slice(0, k) for k in value.shape[1:])
            if self.rows is None:
                target[idx].copy_(value)
            else:
                target[(self.rows,) + idx[1:]] = value


#: Train CPU float32 stacks through fci's C kernel (`fci._kernel`) when it can
#: be built; False: always the torch path below.
KERNEL: bool = True

#: CPU worker threads for `fit` (None: torch's intra-op thread count). A stack
#: whose steps are small is cut into slices of similar width, and each worker
#: trains whole slices on one intra-op thread: the slices are independent models,
#: so the workers never wait on each other within a step (torch's own threading
#: puts a barrier after every small op). The results do not depend on it.
CPU_WORKERS: int | None = None

def _cpu_workers() -> int:
    """Worker threads `fit` uses on a CPU: `CPU_WORKERS`, or torch's thread count."""
    return max(1, CPU_WORKERS or torch.get_num_threads())


#: Smallest slice worth its own buffers and per-step Python work.
_MIN_SLICE = 16
_SLICES: int | None = None


def _plan_slices(stack: MaskedMLPStack, batch: int) -> tuple[list[tuple[torch.Tensor | None, list[int]]], int]:
    """How `fit` cuts a stack: [(rows or None, layer sizes)], and the worker count.

    On a GPU, or when one step is so large that torch's own threads pay off,
    the stack trains whole. Otherwise models are ordered by width and cut into
    contiguous slices of near-equal work (less padding: each slice is only as
    wide as its widest model), two per worker when widths differ."""
    dev = stack.weights[0].device
    full = [stack.weights[0].shape[2]] + [w.shape[1] for w in stack.weights]
    M = stack.n_models
    workers = _cpu_workers()
    if dev.type != "cpu" or _threads(_step_flops(stack, batch)).n is None:
        return [(None, full)], workers
    widths = stack.widths.cpu()  # (M, hidden layers)
    mixed = bool((widths != widths[:1]).any())
    n_slices = min(_SLICES or workers * (2 if mixed else 1), max(1, M // _MIN_SLICE))
    if n_slices == 1 and not mixed:
        return [(None, full)], workers
    n, O = full[0], full[-1]
    sizes = torch.cat([torch.full((M, 1), n), widths, torch.full((M, 1), O)], 1).double()
    work = (sizes[:, :-1] + 1).mul(sizes[:, 1:]).sum(1)  # parameters per model
    order = sorted(range(M), key=lambda i: tuple(widths[i].tolist()))
    cum = torch.cumsum(work[order], 0)
    total = float(cum[-1])
    cuts = [0] + [int(torch.searchsorted(cum, total * k / n_slices)) + 1 for k in range(1, n_slices)] + [M]
    cuts = sorted(set(min(M, max(0, c)) for c in cuts))
    slices = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        if b <= a:
            continue
        rows = torch.tensor(order[a:b], dtype=torch.int64, device=dev)
        hidden = widths[order[a:b]].max(0).values.tolist()
        slices.append((rows, [n, *hidden, O]))
    return slices, workers


class _FitState:
    """What `fit` returns as its optimiser: each slice's flat buffers and torch
    optimiser. Passing it back to `fit` continues the same run."""

    def __init__(self, stack: MaskedMLPStack, slices: list[tuple[_FlatStack, torch.optim.Optimizer]], workers: int):
        self._stack = weakref.ref(stack)
        self.shapes = [tuple(w.shape) for w in stack.weights]
        self.slices, self.workers = slices, workers

    def matches(self, stack: MaskedMLPStack) -> bool:
        return self._stack() is stack and [tuple(w.shape) for w in stack.weights] == self.shapes


class _FlatAdam(torch.optim.Adam):
    """torch's fused Adam over one flat buffer, stepped by calling the fused
    kernel directly once the state exists: the same update, without the
    generic optimiser's per-call bookkeeping (about 0.3 ms a step on a CPU,
    as much as a small slice's whole optimiser update)."""

    def step(self, closure=None):  # noqa: D102
        group = self.param_groups[0]
        (p,) = group["params"]
        state = self.state.get(p)
        if closure is not None or not state or group["amsgrad"] or group["maximize"] or group["decoupled_weight_decay"]:
            return super().step(closure)
        state["step"].add_(1)
        beta1, beta2 = group["betas"]
        torch._fused_adam_([p], [p.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]],
                           amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                           eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)
        return None


def _flat_optimizer(flat: _FlatStack, cfg: TrainConfig) -> torch.optim.Optimizer:
    """torch's Adam (or SGD) over the flat buffer, fused where the build supports it."""
    kw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam" and hasattr(torch, "_fused_adam_"):
        try:
            return _FlatAdam([flat.param], fused=True, **kw)
        except (RuntimeError, ValueError):
            pass
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD
    try:
        return cls([flat.param], fused=True, **kw)
    except (RuntimeError, ValueError):  # no fused kernel for this device / dtype
        return cls([flat.param], foreach=True, **kw)


@dataclass
class _TrainData:
    """Training data laid out for fast minibatch gathers: sample-major, so one
    `index_select` along dim 0 fetches a minibatch of every model at once.

    x: (N, M, n_in + 1) in the stack's dtype, last column ones (the layer-0 bias);
    y: (N, M, O) in the stack's dtype for 'bce', (N, M) int64 class ids for 'ce'.
    """

    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def build(cls, x: torch.Tensor, y: torch.Tensor, loss: str, dtype: torch.dtype) -> "_TrainData":
        # append the ones and transpose in x's own dtype (often uint8), then convert
        xa = torch.cat([x, torch.ones_like(x[..., :1])], 2).transpose(0, 1).contiguous().to(dtype)
        if loss == "bce":
            ya = y.transpose(0, 1).to(dtype).contiguous()
        else:
            ya = y.transpose(0, 1).to(torch.int64).contiguous()
        return cls(xa, ya)


class _StepBuffers:
    """Preallocated activations and gradients of one slice's step at one batch
    size, so a step allocates (almost) nothing: large allocations are fresh
    pages from the OS on every call, and those page faults cost more than the
    small products themselves (and serialise worker threads)."""

    def __init__(self, flat: _FlatStack, B: int, data: "_TrainData"):
        M, dev, dt = flat.shapes[0][0], flat.device, flat.dtype
        sizes, O = flat.sizes, flat.sizes[-1]
        self.xb = torch.empty((B, *data.x.shape[1:]), device=dev, dtype=data.x.dtype)
        self.yb = torch.empty((B, *data.y.shape[1:]), device=dev, dtype=data.y.dtype)
        self.hidden = [torch.empty(M, B, h, device=dev, dtype=dt) for h in sizes[1:-1]]  # post-ReLU outputs
        self.back = [torch.empty(M, B, h, device=dev, dtype=dt) for h in sizes[1:-1]]  # grads w.r.t. pre-activations
        self.z = torch.empty(M, O, B, device=dev, dtype=dt)
        self.dz = torch.empty(M, O, B, device=dev, dtype=dt)
        self.tmp = torch.empty(M, O, B, device=dev, dtype=dt)
        self.zero = torch.zeros((), device=dev, dtype=dt)


def _flat_step(flat: _FlatStack, xb: torch.Tensor, yb: torch.Tensor, loss: str, bufs: _StepBuffers) -> torch.Tensor:
    """One forward/backward of the whole stack; writes the masked gradient into
    `flat.param.grad` and returns each model's mean loss on the batch, (M,).

    xb: (M, B, n_in + 1) with a ones column; yb: (M, B, O) or (M, B).
    The last layer computes its logits transposed, (M, O, B): a (O, H) @ (H, B)
    product per model is several times cheaper than the (B, H) @ (H, O)
    matrix-vector product when O is small. Every activation and gradient is
    written into `bufs` (`flat.buffers`), preallocated memory."""
    L = flat.n_layers
    hs, backs = bufs.hidden, bufs.back
    torch.bmm(xb, flat.A0.transpose(1, 2), out=hs[0])  # (M, B, H1)
    hs[0].clamp_min_(0)
    for l in range(1, L):
        if l < L - 1:
            torch.baddbmm(flat.b[l].unsqueeze(1), hs[l - 1], flat.W[l].transpose(1, 2), out=hs[l])
            hs[l].clamp_min_(0)
        else:
            torch.baddbmm(flat.b[l].unsqueeze(2), flat.W[l], hs[l - 1].transpose(1, 2), out=bufs.z)  # (M, O, B)
    per_model, dz = _loss_and_grad(bufs.z, yb, loss, bufs)  # dz: d(sum of model losses)/d logits, (M, O, B)
    torch.bmm(dz, hs[L - 2], out=flat.gW[L - 1])
    torch.sum(dz, 2, out=flat.gb[L - 1])
    back = torch.bmm(dz.transpose(1, 2), flat.W[L - 1], out=backs[L - 2])  # (M, B, H)
    torch.ops.aten.threshold_backward.grad_input(back, hs[L - 2], 0, grad_input=back)
    for l in range(L - 2, 0, -1):
        h = hs[l - 1]
        torch.bmm(back.transpose(1, 2), h, out=flat.gW[l])
        torch.sum(back, 1, out=flat.gb[l])
        back = torch.bmm(back, flat.W[l], out=backs[l - 1])
        torch.ops.aten.threshold_backward.grad_input(back, h, 0, grad_input=back)
    torch.bmm(back.transpose(1, 2), xb, out=flat.gA0)
    flat.param.grad.mul_(flat.mask)
    return per_model


def _loss_and_grad(zt: torch.Tensor, yb: torch.Tensor, loss: str, bufs: _StepBuffers) -> tuple[torch.Tensor, torch.Tensor]:
    """zt: logits (M, O, B); yb: (M, B, O) targets for 'bce', (M, B) class ids for 'ce'.
    -> (per-model mean loss (M,), gradient of their sum w.r.t. zt (M, O, B), in bufs.dz)."""
    M, O, B = zt.shape
    if loss == "bce":
        yt = yb.transpose(1, 2)
        # softplus(z) - y z is binary cross-entropy with logits (logaddexp keeps it stable)
        per_model = torch.logaddexp(zt, bufs.zero, out=bufs.tmp).addcmul_(zt, yt, value=-1).mean((1, 2))
        return per_model, torch.sigmoid(zt, out=bufs.dz).sub_(yt).mul_(1.0 / (B * O))
    logp = torch.log_softmax(zt, 1)
    target = yb.unsqueeze(1)  # (M, 1, B)
    per_model = -logp.gather(1, target).mean((1, 2))
    grad = torch.exp(logp, out=bufs.dz).scatter_add_(1, target, torch.full(target.shape, -1.0, dtype=zt.dtype, device=zt.device))
    return per_model, grad.mul_(1.0 / B)


def fit(
    stack: MaskedMLPStack,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    epochs: range,
    loss: str = "bce",
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool | str = False,
) -> tuple[torch.optim.Optimizer, torch.Tensor]:
    """Train a stack in place over the given epoch indices.

    x: (M, N, n_in) on the stack's device (any dtype; 0/1 uint8 is fine);
    y: (M, N, O) for 'bce' or (M, N) for 'ce'. `epochs` are absolute epoch
    indices (they pick the minibatch orders), so a run can be continued by
    passing back the returned optimiser. A torch optimiser built elsewhere over
    `stack.parameters()` is honoured too (through autograd, slower).
    Returns the optimiser and the mean train loss per model and epoch,
    (M, len(epochs)), on CPU.
    """
    if loss not in ("bce", "ce"):
        raise ValueError(f"loss must be 'bce' or 'ce', got {loss!r}")
    device = stack.weights[0].device
    M, N = x.shape[:2]
    if M != stack.n_models or y.shape[:2] != (M, N):
        raise ValueError(f"data for {M} models of {N} samples does not match a stack of {stack.n_models} models (y {tuple(y.shape)})")
    if x.device != device or y.device != device:
        raise ValueError(f"data must be on the stack's device {device}, got x on {x.device} and y on {y.device}")
    if loss == "ce" and y.numel() and (int(y.min()) < 0 or int(y.max()) >= stack.weights[-1].shape[1]):
        raise ValueError(f"class ids must lie in [0, {stack.weights[-1].shape[1]}) for 'ce', got {int(y.min())}..{int(y.max())}")
    perms = _epoch_perms(cfg.shuffle_seed, epochs, N, device)

    if isinstance(optimizer, _kernel.KernelState) or (optimizer is None and KERNEL and _kernel.usable(stack)):
        if optimizer is None:
            optimizer = _kernel.KernelState(stack, cfg)
        elif not optimizer.matches(stack):
            raise ValueError("optimizer was returned by fit() for a different stack")
        bar = None
        if progress:
            bar = tqdm(total=M * len(epochs), desc=progress if isinstance(progress, str) else "train",
                       unit="model-epoch", leave=False)
        losses = _kernel.run(optimizer, stack, x, y, cfg, perms, loss, _cpu_workers(), bar)
        if bar is not None:
            bar.close()
        return optimizer, losses

    work = _step_flops(stack, cfg.batch_size) if device.type == "cpu" else float("inf")

    if optimizer is not None and not isinstance(optimizer, _FitState):  # a caller's own torch optimiser: autograd path
        it = range(len(epochs))
        if progress:
            it = tqdm(it, desc=progress if isinstance(progress, str) else "train", unit="epoch", leave=False)
        losses = torch.zeros(M, len(epochs), device=device)
        with _threads(work):
            _fit_epochs(stack, x, y, perms, cfg.batch_size, loss, optimizer, losses, it, stack.weights[0].dtype)
        return optimizer, losses.cpu()

    if optimizer is None:
        plan, workers = _plan_slices(stack, cfg.batch_size)
        dtype = stack.weights[0].dtype
        slices = []
        for rows, sizes in plan:
            flat = _FlatStack(sizes, rows, stack.n_models if rows is None else len(rows), device, dtype)
            slices.append((flat, _flat_optimizer(flat, cfg)))
        optimizer = _FitState(stack, slices, workers)
    elif not optimizer.matches(stack):
        raise ValueError("optimizer was returned by fit() for a different stack")
    losses = torch.zeros(len(epochs), M, device=device)
    state = optimizer
    bar = None
    if progress:
        bar = tqdm(total=len(epochs) * len(state.slices), desc=progress if isinstance(progress, str) else "train",
                   unit="epoch", leave=False)

    @torch.no_grad()  # on every worker thread: grad mode is per thread
    def run(flat: _FlatStack, opt: torch.optim.Optimizer) -> None:
        flat.load(stack)
        for t in opt.state.get(flat.param, {}).values():  # masks may have changed since the last call:
            if torch.is_tensor(t) and t.shape == flat.param.shape:  # no moment may move a masked weight
                t.mul_(flat.mask)
        data = flat.data_for(x, y, loss)
        part = torch.zeros(len(epochs), flat.shapes[0][0], device=device)
        _fit_flat_epochs(flat, data, perms, cfg.batch_size, loss, opt, part, bar)
        flat.store(stack)
        if flat.rows is None:
            losses.copy_(part)
        else:
            losses.index_copy_(1, flat.rows, part)

    with _threads(work):  # one intra-op thread whenever the stack is sliced (see _plan_slices)
        if len(state.slices) > 1 and state.workers > 1:
            with ThreadPoolExecutor(max_workers=min(state.workers, len(state.slices))) as pool:
                for f in [pool.submit(run, flat, opt) for flat, opt in state.slices]:
                    f.result()
        else:
            for flat, opt in state.slices:
                run(flat, opt)
    if bar is not None:
        bar.close()
    return optimizer, losses.t().cpu()


def _fit_flat_epochs(flat, data, perms, B, loss, optimizer, losses, bar) -> None:
    N = data.x.shape[0]
    starts = range(0, N, B)
    for k in range(perms.shape[0]):
        perm, acc = perms[k], losses[k]
        for s in starts:
            idx = perm[s : s + B]
            bufs = flat.buffers(len(idx), data)
            xb = torch.index_select(data.x, 0, idx, out=bufs.xb).transpose(0, 1)
            yb = torch.index_select(data.y, 0, idx, out=bufs.yb).transpose(0, 1)
            acc += _flat_step(flat, xb, yb, loss, bufs)
            optimizer.step()
        acc /= len(starts)
        if bar is not None:
            bar.update(1)


def _fit_epochs(stack, x, y, perms, B, loss, optimizer, losses, it, dtype) -> None:
    """The autograd path (for a caller's own optimiser)."""
    M, N = x.shape[:2]
    n_batches = (N + B - 1) // B
    for k in it:
        perm = perms[k]
        acc = torch.zeros(M, device=x.device)
        for s in range(0, N, B):
            idx = perm[s : s + B]
            xb = x[:, idx].to(dtype)
            yb = y[:, idx]
            per_model = per_model_loss(stack(xb), yb, loss)
            optimizer.zero_grad(set_to_none=True)
            per_model.sum().backward()
            optimizer.step()
            acc += per_model.detach()
        losses[:, k] = acc / n_batches


@torch.no_grad()
def evaluate(stack: MaskedMLPStack, x: torch.Tensor, y: torch.Tensor, loss: str = "bce", chunk: int | None = None) -> dict[str, torch.Tensor]:
    """Accuracy (mean over samples and outputs of (logit > 0) == y, or argmax for
    'ce'), exact match (all outputs right) and mean loss per model; each (M,) on CPU.
    `chunk` samples per forward pass (default: about 2**24 hidden activations)."""
    if chunk is None:
        width = max(w.shape[1] for w in stack.weights)
        chunk = max(256, (1 << 24) // max(1, stack.n_models * width))
    with _threads(_step_flops(stack, chunk) / 3 if x.device.type == "cpu" else float("inf")):
        return _evaluate(stack, x, y, loss, chunk)


def _evaluate(stack, x, y, loss, chunk) -> dict[str, torch.Tensor]:
    dtype = stack.weights[0].dtype
    M, N = x.shape[:2]
    correct = torch.zeros(M, device=x.device)
    exact = torch.zeros(M, device=x.device)
    total_loss = torch.zeros(M, device=x.device)
    for s in range(0, N, chunk):
        xb, yb = x[:, s : s + chunk].to(dtype), y[:, s : s + chunk]
        logits = stack(xb)
        n = xb.shape[1]
        total_loss += per_model_loss(logits, yb, loss) * n
        if loss == "bce":
            right = (logits > 0) == (yb > 0.5)
            correct += right.float().mean(2).sum(1)
            exact += right.all(2).float().sum(1)
        else:
            right = (logits.argmax(2) == yb.long()).float()
            correct += right.sum(1)
            exact += right.sum(1)
    return {"accuracy": (correct / N).cpu(), "exact_match": (exact / N).cpu(), "loss": (total_loss / N).cpu()}


# ---------------------------------------------------------------------------
# Results


@dataclass
class ModelResult:
    """One trained model and its measurements."""

    model: MaskedMLP
    train_accuracy: float
    test_accuracy: float
    test_exact_match: float
    test_loss: float
    train_loss: list[float] = field(default_factory=list)  # per epoch, this model's phase(s)

    @property
    def nnz(self) -> int:
        return self.model.nnz()

    def metrics(self) -> dict[str, Any]:
        split = self.model.nnz_split()
        return {
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "test_exact_match": self.test_exact_match,
            "test_loss": self.test_loss,
            "nnz": split["total"],
            "nnz_weights": split["weights"],
            "nnz_biases": split["biases"],
            "train_loss": self.train_loss,
        }


def train_models(
    models: Sequence[MaskedMLP],
    data: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
    cfg: TrainConfig,
    epochs: int | range,
    loss: str = "bce",
    device: str | torch.device = "auto",
    progress: bool | str = False,
) -> list[ModelResult]:
    """Train independent models (same n_in, n_out, depth; same sample counts) as
    one stack. data[i] = (x_train, y_train, x_test, y_test) for model i."""
    dev = resolve_device(device)
    epochs = range(epochs) if isinstance(epochs, int) else epochs
    stack = MaskedMLPStack.from_models(list(models)).to(dev)
    xtr, ytr, xte, yte = (torch.stack([d[j] for d in data]).to(dev) for j in range(4))
    _, losses = fit(stack, xtr, ytr, cfg, epochs, loss=loss, progress=progress)
    return _results(stack, (xtr, ytr, xte, yte), losses, loss)


def _results(stack, data, losses, loss) -> list[ModelResult]:
    xtr, ytr, xte, yte = data
    tr = evaluate(stack, xtr, ytr, loss)
    te = evaluate(stack, xte, yte, loss)
    return [
        ModelResult(
            model=m,
            train_accuracy=float(tr["accuracy"][i]),
            test_accuracy=float(te["accuracy"][i]),
            test_exact_match=float(te["exact_match"][i]),
            test_loss=float(te["loss"][i]),
            train_loss=[float(v) for v in losses[i]],
        )
        for i, m in enumerate(stack.to_models())
    ]


# ---------------------------------------------------------------------------
# The FPE schedule


@dataclass(frozen=True)
class FPESpec:
    """One trial: a Boolean task, a dense parent and its FPE children.

    Attributes:
        task: the task family; the task itself is drawn with seed derive_seed(seed, "task").
        hidden: hidden width of the dense parent (int) or widths (tuple) for deeper nets.
        seed: the trial seed; task, data, initialisation and split seeds derive from it.
        expansions: (split, alpha) pairs to expand the parent into.
        train: the training schedule.
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    hidden: int | tuple[int, ...] = 8
    seed: int = 0
    expansions: tuple[tuple[str, int], ...] = (("clause", 2), ("random", 2))
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        object.__setattr__(self, "expansions", tuple((str(s), int(a)) for s, a in self.expansions))
        for split, alpha in self.expansions:
            if split not in SPLITS:
                raise ValueError(f"expansions: split must be one of {SPLITS}, got {split!r}")
            if alpha < 1:
                raise ValueError(f"expansions: alpha must be an integer >= 1, got {alpha}")

    @classmethod
    def from_entry_config(cls, config: dict[str, Any]) -> "FPESpec":
        """The trial spec of a stored model's config (see `entry_configs`), with
        that model's expansion (none for the dense baseline). Unknown keys in
        the task or train dicts are dropped with a warning."""
        try:
            cond, alpha = config["condition"], int(config["alpha"])
            return cls(
                task=TaskConfig.from_dict(config["task"]),
                hidden=config["hidden"],  # __post_init__ makes a list a tuple
                seed=int(config["seed"]),
                expansions=() if cond == "dense" else ((cond, alpha),),
                train=TrainConfig.from_dict(config["train"]),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not an FPE trial config (missing or malformed {e}): keys {sorted(config)}") from None

    def make_task(self) -> DNFTask:
        return DNFTask.from_config(self.task, derive_seed(self.seed, "task"))

    def init_seed(self) -> int:
        return derive_seed(self.seed, "init")

    def split_seed(self, split: str, alpha: int) -> int:
        return derive_seed(self.seed, "split", split, alpha)


@dataclass
class FPEResult:
    """What one trial produced: the parent at expansion, the paired dense baseline
    (warmup + finetune epochs) and one child per expansion."""

    spec: FPESpec
    task: DNFTask
    parent: ModelResult
    dense: ModelResult
    children: dict[tuple[str, int], ModelResult]


def _chunks(seq: list, size: int) -> Iterable[list]:
    """Split seq into the fewest chunks of at most `size`, of near-equal length."""
    n_chunks = -(-len(seq) // size)
    for k in range(n_chunks):
        yield seq[k * len(seq) // n_chunks : (k + 1) * len(seq) // n_chunks]


def _hidden_list(spec: FPESpec) -> list[int]:
    return [spec.hidden] if isinstance(spec.hidden, int) else list(spec.hidden)


def trial_bytes(spec: FPESpec) -> int:
    """Estimated peak memory (bytes, on the training device) that one trial adds
    to a stack in `run_fpe`: its data (stacked as uint8 for the dense model and
    each child; laid out as floats for training), parameters, masks, optimiser
    state and one minibatch of activations. Used to size stacks automatically."""
    N, T = spec.task.n_train, spec.task.n_test
    n, O, B = spec.task.resolved_n_vars, spec.task.n_outputs, min(spec.train.batch_size, N)
    E = len(spec.expansions)
    hidden = _hidden_list(spec)
    alphas = [a for _, a in spec.expansions]

    def params(h: list[int]) -> int:
        sizes = [n, *h, O]
        return sum(o * (i + 1) for i, o in zip(sizes[:-1], sizes[1:]))

    def phase(h: list[int]) -> int:  # fit(): float data (+ its uint8 staging), activations, flat buffers
        return N * (n + 1 + O) * 6 + 4 * B * (4 * sum(h) + n + 1 + 2 * O) + 4 * 8 * params(h)

    child_hidden = [[hidden[0] * a, *hidden[1:]] for a in alphas]
    raw = (1 + E) * (N + T) * (n + O)
    peak = max([phase(hidden)] + [sum(phase(h) for h in child_hidden)])
    kept = 4 * 4 * (params(hidden) * 2 + sum(params(h) for h in child_hidden))  # stacks and CPU copies
    return raw + peak + kept


def _memory_budget(dev: torch.device) -> int:
    """Bytes a run may fill: half the free GPU memory, or a quarter of the
    available host memory (the machine is usually shared)."""
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return free // 2
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if ":" in line}
        return info.get("MemAvailable", info.get("MemFree", 8 << 30)) // 4
    except OSError:
        return 2 << 30


#: Largest automatic stack per device type. On a CPU, throughput per model
#: stops growing well below 1024 models (see `python -m benchmarks.trainer
#: --scaling`) while bigger stacks only delay the store's checkpoints; a GPU
#: needs large stacks to fill it.
_AUTO_STACK_CAP = {"cpu": 1024, "cuda": 16384}


def auto_max_stack(specs: Sequence[FPESpec], device: str | torch.device = "auto") -> int:
    """How many trials like these fit one stack on `device` (at least 1)."""
    dev = resolve_device(device)
    per_trial = max(trial_bytes(s) for s in specs)
    cap = _AUTO_STACK_CAP.get(dev.type, 1024)
    return int(max(1, min(cap, _memory_budget(dev) // per_trial)))


def run_fpe(
    specs: Sequence[FPESpec],
    device: str | torch.device = "auto",
    progress: bool = False,
    max_stack: int | str | None = "auto",
    store: "Store | None" = None,
) -> list[FPEResult]:
    """Run the FPE schedule for many trials, batched into stacks.

    Trials with the same input/output sizes, depth, data sizes and schedule
    share stacks of at most `max_stack` trials each (their dense models in one
    stack, their children in another); `"auto"` or None sizes the stacks to
    the device's memory (`auto_max_stack`). Within a group, trials of similar
    width are stacked together (less padding) and chunks have near-equal sizes.
    With a `store`, trials whose every model is stored are loaded instead of
    trained, and each finished stack is written (atomically, one entry per
    model) before the next starts, so an interrupted run resumes where it
    stopped. Returns one FPEResult per spec, in order; models come back on the CPU.
    """
    dev = resolve_device(device)
    if max_stack is not None and max_stack != "auto" and not isinstance(max_stack, int):
        raise ValueError(f"max_stack must be a positive integer, 'auto' or None, got {max_stack!r}")
    specs = list(specs)
    results: list[FPEResult | None] = [None] * len(specs)
    known: dict[int, FPEResult] = {}  # trials whose dense entry is stored but some child is not
    if store is not None:
        for i, s in enumerate(specs):
            stored = {cond: store.has(config_key(c)) for cond, c in entry_configs(s).items()}
            if all(stored.values()):
                results[i] = load_fpe_result(store, s)
            elif stored[("dense", 1)]:
                known[i] = load_fpe_result(store, s, missing_ok=True)
    todo = [i for i in range(len(specs)) if results[i] is None]
    if store is not None and len(todo) < len(specs):
        log.info("store %s: %d of %d trials already done", store.root, len(specs) - len(todo), len(specs))
    tasks = {i: specs[i].make_task() for i in todo}

    def key(i):
        s, t = specs[i], tasks[i]
        return (t.n_vars, t.n_outputs, len(_hidden_list(s)), s.task.n_train, s.task.n_test, s.train)

    groups: dict[Any, list[int]] = {}
    for i in todo:
        groups.setdefault(key(i), []).append(i)
    chunks = []
    for idx in groups.values():
        if isinstance(max_stack, int):
            size = max(1, max_stack)
        else:
            size = auto_max_stack([specs[i] for i in idx], dev)
        widths = lambda i: (_hidden_list(specs[i]), max((a for _, a in specs[i].expansions), default=1))  # noqa: E731
        chunks += list(_chunks(sorted(idx, key=widths), size))
    log.debug("run_fpe: %d trials in %d stacks of sizes %s", len(todo), len(chunks), [len(c) for c in chunks])
    bar = tqdm(total=len(todo), desc="FPE trials", unit="trial", disable=not progress or not todo)
    for chunk in chunks:
        trained = _run_fpe_chunk([specs[i] for i in chunk], [tasks[i] for i in chunk], dev, progress, [known.get(i) for i in chunk])
        for i, res in zip(chunk, trained):
            results[i] = res
            if store is not None:
                save_fpe_result(store, res)
        bar.update(len(chunk))
    bar.close()
    return results  # type: ignore[return-value]


def _task_data(task: DNFTask) -> tuple[torch.Tensor, ...]:
    xtr, ytr = task.train_data()
    xte, yte = task.test_data()
    return xtr.to(torch.uint8), ytr.to(torch.uint8), xte.to(torch.uint8), yte.to(torch.uint8)


def _rows(stacked: tuple[torch.Tensor, ...], rows: list[int]) -> tuple[torch.Tensor, ...]:
    """The data of trials `rows` of a stacked data tuple (no copy when it is all of them, in order)."""
    if rows == list(range(stacked[0].shape[0])):
        return stacked
    index = torch.tensor(rows, device=stacked[0].device)
    return tuple(t.index_select(0, index) for t in stacked)


def _run_fpe_chunk(
    specs: list[FPESpec],
    tasks: list[DNFTask],
    dev: torch.device,
    progress: bool,
    known: list[FPEResult | None] | None = None,
) -> list[FPEResult]:
    """Train one stack of trials. `known[i]`, when given, is trial i's stored
    parent and baseline with the children already stored: only its missing
    children train (from the stored parent, which is the exact state at
    expansion)."""
    known = known or [None] * len(specs)
    cfg = specs[0].train
    data = [_task_data(t) for t in tasks]
    stacked = tuple(torch.stack([d[j] for d in data]).to(dev) for j in range(4))
    finetune = range(cfg.warmup, cfg.epochs)

    parent_results: list[ModelResult | None] = [k.parent if k else None for k in known]
    dense_results: list[ModelResult | None] = [k.dense if k else None for k in known]
    fresh = [i for i, k in enumerate(known) if k is None]
    if fresh:
        xtr, ytr, xte, yte = ddata = _rows(stacked, fresh)
        parents = [MaskedMLP(tasks[i].n_vars, specs[i].hidden, tasks[i].n_outputs, seed=specs[i].init_seed()) for i in fresh]
        dense = MaskedMLPStack.from_models(parents).to(dev)
        opt, warm_losses = fit(dense, xtr, ytr, cfg, range(cfg.warmup), progress="dense warmup" if progress else False)
        for i, r in zip(fresh, _results(dense, ddata, warm_losses, "bce")):
            parent_results[i] = r
        _, fine_losses = fit(dense, xtr, ytr, cfg, finetune, optimizer=opt, progress="dense baseline" if progress else False)
        for i, r in zip(fresh, _results(dense, ddata, torch.cat([warm_losses, fine_losses], 1), "bce")):
            dense_results[i] = r
        del dense, opt, ddata

    # Children of every trial and expansion share stacks, grouped by layout.
    jobs = [
        (i, split, alpha)
        for i, s in enumerate(specs)
        for split, alpha in s.expansions
        if known[i] is None or (split, alpha) not in known[i].children
    ]
    children = [
        expand(parent_results[i].model, alpha, split, clauses=tasks[i].clauses, seed=specs[i].split_seed(split, alpha))
        for i, split, alpha in jobs
    ]
    child_results: dict[tuple[int, str, int], ModelResult] = {
        (i, *cond): r for i, k in enumerate(known) if k is not None for cond, r in k.children.items()
    }
    if jobs:
        cdata = _rows(stacked, [i for i, _, _ in jobs])
        cstack = MaskedMLPStack.from_models(children).to(dev)
        _, closs = fit(cstack, cdata[0], cdata[1], cfg, finetune, progress="FPE finetune" if progress else False)
        for job, res in zip(jobs, _results(cstack, cdata, closs, "bce")):
            child_results[job] = res
    return [
        FPEResult(
            spec=s,
            task=tasks[i],
            parent=parent_results[i],
            dense=dense_results[i],
            children={(sp, a): child_results[(i, sp, a)] for sp, a in s.expansions},
        )
        for i, s in enumerate(specs)
    ]


# ---------------------------------------------------------------------------
# Persistence of trials: one store entry per model


def entry_configs(spec: FPESpec) -> dict[tuple[str, int], dict[str, Any]]:
    """The store config of every model of a trial: ("dense", 1) and each (split, alpha).

    `expansions` is left out of the shared part, so adding an expansion to a
    sweep leaves the keys of models already trained unchanged."""
    base = {
        "kind": "boolean-fpe",
        "task": spec.task.to_dict(),
        "hidden": spec.hidden if isinstance(spec.hidden, int) else list(spec.hidden),
        "seed": spec.seed,
        "train": spec.train.to_dict(),
    }
    out = {("dense", 1): {**base, "condition": "dense", "alpha": 1}}
    for split, alpha in spec.expansions:
        out[(split, alpha)] = {**base, "condition": split, "alpha": alpha}
    return out


def save_fpe_result(store: Store, result: FPEResult) -> dict[tuple[str, int], str]:
    """Store every model of a trial; each entry carries the parent at expansion
    (tensors prefixed `parent.`) so it can be reopened on its own."""
    parent_tensors = {f"parent.{k}": v for k, v in result.parent.model.tensors().items()}
    parent_metrics = result.parent.metrics()
    keys = {}
    for cond, cfg in entry_configs(result.spec).items():
        res = result.dense if cond == ("dense", 1) else result.children[cond]
        metrics = {**res.metrics(), "parent": parent_metrics, "clauses": [list(map(list, c)) for c in result.task.clauses]}
        keys[cond] = store.save(cfg, metrics, {**res.model.tensors(), **parent_tensors})
    return keys


def _model_result(model: MaskedMLP, m: dict[str, Any]) -> ModelResult:
    return ModelResult(
        model=model,
        train_accuracy=m["train_accuracy"],
        test_accuracy=m["test_accuracy"],
        test_exact_match=m["test_exact_match"],
        test_loss=m["test_loss"],
        train_loss=list(m.get("train_loss", [])),
    )


def split_tensors(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(model tensors, parent tensors) of a store entry."""
    own = {k: v for k, v in tensors.items() if not k.startswith("parent.")}
    parent = {k[len("parent."):]: v for k, v in tensors.items() if k.startswith("parent.")}
    return own, parent


def load_fpe_result(store: Store, spec: FPESpec, missing_ok: bool = False) -> FPEResult:
    """Reopen a stored trial; raises StoreError naming a missing or corrupt file.
    With `missing_ok`, children not in the store are left out of `children`
    (the dense entry, which carries the parent, must exist)."""
    entries = {
        cond: store.load(config_key(cfg))
        for cond, cfg in entry_configs(spec).items()
        if not missing_ok or cond == ("dense", 1) or store.has(config_key(cfg))
    }
    dense = entries[("dense", 1)]
    own, parent = split_tensors(dense.tensors)
    return FPEResult(
        spec=spec,
        task=spec.make_task(),
        parent=_model_result(MaskedMLP.from_tensors(parent), dense.metrics["parent"]),
        dense=_model_result(MaskedMLP.from_tensors(own), dense.metrics),
        children={
            cond: _model_result(MaskedMLP.from_tensors(split_tensors(e.tensors)[0]), e.metrics)
            for cond, e in entries.items()
            if cond != ("dense", 1)
        },
    )


# ---------------------------------------------------------------------------
# The FPE schedule on any dataset (digits, user embeddings, Boolean tasks)


@dataclass
class DataFPEResult:
    """One trial of `run_fpe_data`: the parent at expansion, the paired dense
    baseline (warmup + finetune epochs, same init and data) and the children."""

    dataset: str
    hidden: int | tuple[int, ...]
    seed: int
    parent: ModelResult
    dense: ModelResult
    children: dict[tuple[str, int], ModelResult]


def run_fpe_data(
    data: Dataset,
    trials: Sequence[tuple[int | Sequence[int], int]],
    expansions: Sequence[tuple[str, int]],
    cfg: TrainConfig,
    layers: Sequence[int] | str = (0,),
    device: str | torch.device = "auto",
    progress: bool = False,
    max_stack: int = 512,
) -> list[DataFPEResult]:
    """The FPE schedule (SPEC §3) for trials on one dataset, batched into stacks.

    trials: (hidden, seed) pairs; hidden is an int or a tuple of widths, and the
    trial's init and split seeds derive from `seed` as in `FPESpec`. Every
    trial's dense parent trains `cfg.warmup` epochs, is expanded into one child
    per (split, alpha) with `expand_layers(..., layers=layers)` (the clause
    split needs `data.info["clauses"]`), and children and the paired dense
    baseline train `cfg.finetune` more epochs. Trials of the same depth share
    stacks of at most `max_stack` trials (narrower ones padded). Returns one
    result per trial, in order; models come back on the CPU.
    """
    dev = resolve_device(device)
    trials = [(h if isinstance(h, int) else tuple(int(v) for v in h), int(s)) for h, s in trials]
    expansions = [(str(s), int(a)) for s, a in expansions]
    for split, alpha in expansions:
        if split not in SPLITS:
            raise ValueError(f"expansions: split must be one of {SPLITS}, got {split!r}")
        if split == "clause" and not data.info.get("clauses"):
            raise ValueError(f"the clause split needs clauses; dataset {data.name!r} has none (use random or gram)")
    widths = [(h,) if isinstance(h, int) else h for h, _ in trials]  # 8 and (8,) stack together
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(widths):
        groups.setdefault(len(w), []).append(i)
    results: list[DataFPEResult | None] = [None] * len(trials)
    chunks = [c for idx in groups.values() for c in _chunks(sorted(idx, key=lambda i: widths[i]), max(1, max_stack))]
    bar = tqdm(total=len(trials), desc=f"FPE on {data.name}", unit="trial", disable=not progress or not trials)
    for chunk in chunks:
        for i, r in zip(chunk, _run_fpe_data_chunk(data, [trials[i] for i in chunk], expansions, cfg, layers, dev, progress)):
            results[i] = r
        bar.update(len(chunk))
    bar.close()
    return results  # type: ignore[return-value]


def _run_fpe_data_chunk(data, trials, expansions, cfg, layers, dev, progress) -> list[DataFPEResult]:
    M = len(trials)
    loss = data.loss
    finetune = range(cfg.warmup, cfg.epochs)
    parents = [MaskedMLP(data.n_in, h, data.n_out, seed=derive_seed(s, "init")) for h, s in trials]
    ddata = data.stacked(M, dev)
    dense = MaskedMLPStack.from_models(parents).to(dev)
    opt, warm = fit(dense, ddata[0], ddata[1], cfg, range(cfg.warmup), loss=loss, progress="dense warmup" if progress else False)
    parent_res = _results(dense, ddata, warm, loss)
    _, fine = fit(dense, ddata[0], ddata[1], cfg, finetune, loss=loss, optimizer=opt, progress="dense baseline" if progress else False)
    dense_res = _results(dense, ddata, torch.cat([warm, fine], 1), loss)
    del dense, opt
    jobs = [(i, split, alpha) for i in range(M) for split, alpha in expansions]
    child_res: dict[tuple[int, str, int], ModelResult] = {}
    if jobs:
        children = [
            expand_layers(parent_res[i].model, alpha, split, layers=layers, clauses=data.info.get("clauses"),
                          seed=derive_seed(trials[i][1], "split", split, alpha))
            for i, split, alpha in jobs
        ]
        cdata = data.stacked(len(children), dev)
        cstack = MaskedMLPStack.from_models(children).to(dev)
        _, closs = fit(cstack, cdata[0], cdata[1], cfg, finetune, loss=loss, progress="FPE finetune" if progress else False)
        for job, r in zip(jobs, _results(cstack, cdata, closs, loss)):
            child_res[job] = r
    return [
        DataFPEResult(dataset=data.name, hidden=h, seed=s, parent=parent_res[i], dense=dense_res[i],
                      children={(sp, a): child_res[(i, sp, a)] for sp, a in expansions})
        for i, (h, s) in enumerate(trials)
    ]
