"""The torch backend: a hand-written forward/backward over flat buffers.

Per minibatch: a gather, two batched matmuls per layer, an in-place ReLU, one
mask multiply on the flat gradient and one fused optimiser step, all written
into preallocated memory (no autograd graph, no per-model Python work). It
computes the specified step (`fci.train.maths`): the raw weights under a mask
are kept at zero, so W * M == W in the forward pass, and the gradient is
multiplied by the mask before the optimiser sees it.

On a GPU the stack trains whole: one sequence of kernel launches per step
for every model at once, and nothing inside an epoch waits on the device (no
`.item()`, no copy to the host, no branch on a tensor's value): the per-model
losses accumulate on the device and come back once per `fit`. With
`TorchBackend(cuda_graphs=True)` each epoch's steps are captured once as a
CUDA graph and replayed, one launch per epoch. On a CPU a stack whose steps
are small is cut into width-sorted slices trained on worker threads, one
intra-op thread each (the slices are independent models, so the workers never
wait on each other within a step). Results do not depend on the slicing to
float rounding.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from fci.models.mlp import MaskedMLPStack
from fci.progress import bar as tqdm
from fci.train.backends.base import Backend, FitState
from fci.train.config import ADAM_BETAS, ADAM_EPS, TrainConfig
from fci.train.maths import one_thread_unless, step_flops

log = logging.getLogger(__name__)


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
        # param's gradient, never replaced: gA0, gW and gb are views into it
        self.grad = self.param.grad = torch.zeros_like(self.param)
        self.mask = torch.zeros_like(self.param)
        self.A0, self.W, self.b = self._views(self.param)
        self.gA0, self.gW, self.gb = self._views(self.grad)
        self.mA0, self.mW, self.mb = self._views(self.mask)
        self._data: tuple | None = None  # (x, y, their versions, loss, _TrainData) of the last fit
        self._buffers: dict[tuple, _StepBuffers] = {}
        self._graph: _EpochGraph | None = None  # the captured epoch (CUDA graphs), for one data layout

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



def plan_slices(stack: MaskedMLPStack, batch: int, workers: int, backend: "TorchBackend") -> list[tuple[torch.Tensor | None, list[int]]]:
    """How the torch backend cuts a stack: [(rows or None, layer sizes)].

    On a GPU, or when one step is so large that torch's own threads pay off,
    the stack trains whole. Otherwise models are ordered by width and cut into
    contiguous slices of near-equal work (less padding: each slice is only as
    wide as its widest model); the slice count does not depend on `workers`."""
    dev = stack.weights[0].device
    full = [stack.weights[0].shape[2]] + [w.shape[1] for w in stack.weights]
    M = stack.n_models
    if dev.type != "cpu" or step_flops(stack, batch) >= backend.thread_threshold:
        return [(None, full)]
    widths = stack.widths.cpu()  # (M, hidden layers)
    mixed = bool((widths != widths[:1]).any())
    n_slices = min(backend.slices or (4 if mixed else 2), max(1, M // backend.min_slice))
    if n_slices == 1 and not mixed:
        return [(None, full)]
    n, O = full[0], full[-1]
    sizes = torch.cat([torch.full((M, 1), n), widths, torch.full((M, 1), O)], 1).double()
    work = (sizes[:, :-1] + 1).mul(sizes[:, 1:]).sum(1)  # parameters per model
    order = sorted(range(M), key=lambda i: tuple(widths[i].tolist()))
    cum = torch.cumsum(work[order], 0)
    total = float(cum[-1])
    cuts = [0] + [int(torch.searchsorted(cum, total * k / n_slices)) + 1 for k in range(1, n_slices)] + [M]
    cuts = sorted(set(min(M, max(0, c)) for c in cuts))
    slices: list[tuple[torch.Tensor | None, list[int]]] = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        if b <= a:
            continue
        rows = torch.tensor(order[a:b], dtype=torch.int64, device=dev)
        hidden = widths[order[a:b]].max(0).values.tolist()
        slices.append((rows, [n, *hidden, O]))
    return slices




class FlatAdam(torch.optim.Adam):
    """torch's fused Adam over one flat buffer, stepped by calling the fused
    kernel directly once the state exists: the same update, without the
    generic optimiser's per-call bookkeeping (about 0.3 ms a step on a CPU,
    as much as a small slice's whole optimiser update). Its step count lives
    on the parameter's device, so a step never waits on the host."""

    def init_state(self) -> None:
        """Create the moments and step count as torch's first step would (zeros),
        so that every step takes the fused path (a CUDA graph captures it)."""
        (p,) = self.param_groups[0]["params"]
        if not self.state.get(p):
            self.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                             "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                             "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}

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
    kw: dict[str, Any] = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    akw: dict[str, Any] = dict(kw, betas=ADAM_BETAS, eps=ADAM_EPS)
    if cfg.optimizer == "adam" and hasattr(torch, "_fused_adam_"):
        try:
            return FlatAdam([flat.param], fused=True, **akw)
        except (RuntimeError, ValueError):
            pass
    cls, kws = (torch.optim.Adam, akw) if cfg.optimizer == "adam" else (torch.optim.SGD, dict(kw, momentum=cfg.momentum))
    try:
        return cls([flat.param], fused=True, **kws)
    except (RuntimeError, ValueError):  # no fused kernel for this device / dtype
        return cls([flat.param], foreach=True, **kws)


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
        self.minus_one = torch.full((M, 1, B), -1.0, device=dev, dtype=dt)  # CE: the target's -1 in softmax - onehot


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
    flat.grad.mul_(flat.mask)
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
    grad = torch.exp(logp, out=bufs.dz).scatter_add_(1, target, bufs.minus_one)
    return per_model, grad.mul_(1.0 / B)



def _epoch(flat: _FlatStack, data: _TrainData, perm: torch.Tensor, B: int, loss: str, optimizer: torch.optim.Optimizer,
           acc: torch.Tensor) -> None:
    """One epoch of steps in the minibatch order perm (N,); acc (M,) receives each
    model's mean batch loss. Every shape and slice is fixed by N and B alone, and
    nothing here reads a tensor's value on the host, so the device never waits
    for Python and a CUDA graph can capture the epoch whole."""
    N = data.x.shape[0]
    starts = range(0, N, B)
    acc.zero_()
    for s in starts:
        idx = perm[s : s + B]
        bufs = flat.buffers(min(B, N - s), data)
        xb = torch.index_select(data.x, 0, idx, out=bufs.xb).transpose(0, 1)
        yb = torch.index_select(data.y, 0, idx, out=bufs.yb).transpose(0, 1)
        acc += _flat_step(flat, xb, yb, loss, bufs)
        optimizer.step()
    acc /= len(starts)


def graphs_unavailable(flat: _FlatStack, optimizer: torch.optim.Optimizer) -> str | None:
    """Why an epoch of this slice cannot be captured as a CUDA graph (None: it can)."""
    if flat.device.type != "cuda":
        return f"CUDA graphs need a CUDA device, the stack is on {flat.device}"
    if not hasattr(torch.cuda, "CUDAGraph"):
        return f"this torch build ({torch.__version__}) has no CUDA graphs"
    if not isinstance(optimizer, FlatAdam):
        return "CUDA graphs capture the fused Adam step only (SGD and a non-fused Adam run eagerly)"
    return None


class _EpochGraph:
    """An epoch of one slice captured as a CUDA graph: `run(perm, acc)` copies the
    epoch's minibatch order into the captured buffer, replays (one launch) and
    copies the losses out, all on the device. The parameters, masks, moments
    and data it reads are the slice's own buffers, updated in place, so a graph
    stays valid across fits while the data layout is the same."""

    def __init__(self, flat: _FlatStack, data: _TrainData, B: int, loss: str, optimizer: FlatAdam):
        self.data, self.B, self.loss = data, B, loss
        N, M = data.x.shape[0], flat.shapes[0][0]
        self.perm = torch.arange(N, device=flat.device)
        self.acc = torch.zeros(M, device=flat.device, dtype=flat.dtype)
        optimizer.init_state()
        (p,) = optimizer.param_groups[0]["params"]
        state = optimizer.state[p]
        # warm-up on a side stream (buffers, cuBLAS workspaces), then put back what it changed
        saved = [t.clone() for t in (flat.param, state["exp_avg"], state["exp_avg_sq"], state["step"])]
        side = torch.cuda.Stream(flat.device)
        side.wait_stream(torch.cuda.current_stream(flat.device))
        with torch.cuda.stream(side):
            _epoch(flat, data, self.perm, B, loss, optimizer, self.acc)
        torch.cuda.current_stream(flat.device).wait_stream(side)
        for t, v in zip((flat.param, state["exp_avg"], state["exp_avg_sq"], state["step"]), saved):
            t.copy_(v)
        self.buffers = list(flat._buffers.values())  # what the graph writes stays allocated while it lives
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            _epoch(flat, data, self.perm, B, loss, optimizer, self.acc)

    def run(self, perm: torch.Tensor, acc: torch.Tensor) -> None:
        self.perm.copy_(perm)
        self.graph.replay()
        acc.copy_(self.acc)


def _fit_flat_epochs(flat, data, perms, B, loss, optimizer, losses, bar, graphs: bool = False) -> None:
    """Train one slice over the epochs whose orders are perms (E, N); losses (E, M)."""
    graph = None
    if graphs:
        if flat._graph is not None and flat._graph.data is data and flat._graph.B == B and flat._graph.loss == loss:
            graph = flat._graph
        else:
            flat._graph = graph = _EpochGraph(flat, data, B, loss, optimizer)
    for k in range(perms.shape[0]):
        if graph is not None:
            graph.run(perms[k], losses[k])
        else:
            _epoch(flat, data, perms[k], B, loss, optimizer, losses[k])
        if bar is not None:
            bar.update(1)




class FlatState(FitState):
    """Each slice's flat buffers and torch optimiser; `graphs`: whether its
    epochs replay as CUDA graphs (`graphs_why_not` says why not, when asked for)."""

    def __init__(self, backend, stack, cfg, workers, slices):
        super().__init__(backend, stack, cfg, workers)
        self.slices = slices
        self.graphs = False
        self.graphs_why_not: str | None = None


class TorchBackend(Backend):
    """The torch backend. `min_slice`: smallest slice worth its own buffers;
    `slices`: the slice count (None: 4 when widths differ, else 2; never the
    worker count, so that results do not depend on it);
    `thread_threshold`: step FLOPs above which a CPU stack trains whole on
    torch's own intra-op threads; `cuda_graphs`: on a CUDA device with Adam,
    capture each epoch once as a CUDA graph and replay it (where it does not
    apply, epochs run eagerly and the run's provenance says why)."""

    name = "torch"

    def __init__(self, min_slice: int = 16, slices: int | None = None, thread_threshold: float = 1e10,
                 cuda_graphs: bool = False):
        self.min_slice, self.slices, self.thread_threshold = min_slice, slices, thread_threshold
        self.cuda_graphs = bool(cuda_graphs)

    def why_not(self, stack, cfg, loss) -> str | None:
        if not stack.weights[0].dtype.is_floating_point:
            return f"needs floating-point parameters, got {stack.weights[0].dtype}"
        return None

    def describe(self, state=None) -> dict:
        if not self.cuda_graphs or not isinstance(state, FlatState):
            return {}
        return {"cuda_graphs": state.graphs, **({"cuda_graphs_why_not": state.graphs_why_not} if state.graphs_why_not else {})}

    def _work(self, stack, batch) -> float:
        return step_flops(stack, batch) if stack.weights[0].device.type == "cpu" else float("inf")

    def start(self, stack, cfg, loss, workers) -> FlatState:
        plan = plan_slices(stack, cfg.batch_size, workers, self)
        device, dtype = stack.weights[0].device, stack.weights[0].dtype
        slices = []
        for rows, sizes in plan:
            flat = _FlatStack(sizes, rows, stack.n_models if rows is None else len(rows), device, dtype)
            opt = _flat_optimizer(flat, cfg)
            if isinstance(opt, FlatAdam):
                opt.init_state()  # every step takes the fused path, the first included
            slices.append((flat, opt))
        state = FlatState(self, stack, cfg, workers, slices)
        if self.cuda_graphs:
            why = next((w for w in (graphs_unavailable(f, o) for f, o in slices) if w), None)
            state.graphs, state.graphs_why_not = why is None, why
            if why:
                log.info("torch backend: epochs run eagerly: %s", why)
        return state

    def run(self, state, stack, x, y, cfg, perms, loss, workers, progress) -> torch.Tensor:
        M, device = stack.n_models, x.device
        E = perms.shape[0]
        losses = torch.zeros(E, M, device=device)
        bar = tqdm(total=E * len(state.slices), desc=progress, unit="epoch", leave=False) if progress else None

        @torch.no_grad()  # on every worker thread: grad mode is per thread
        def one(flat: _FlatStack, opt: torch.optim.Optimizer) -> None:
            flat.load(stack)
            for t in opt.state.get(flat.param, {}).values():  # masks may have changed since the last call:
                if torch.is_tensor(t) and t.shape == flat.param.shape:  # no moment may move a masked weight
                    t.mul_(flat.mask)
            data = flat.data_for(x, y, loss)
            part = torch.zeros(E, flat.shapes[0][0], device=device)
            _fit_flat_epochs(flat, data, perms, cfg.batch_size, loss, opt, part, bar, graphs=state.graphs)
            flat.store(stack)
            if flat.rows is None:
                losses.copy_(part)
            else:
                losses.index_copy_(1, flat.rows, part)

        with one_thread_unless(self._work(stack, cfg.batch_size), self.thread_threshold):
            if len(state.slices) > 1 and workers > 1:
                with ThreadPoolExecutor(max_workers=min(workers, len(state.slices))) as pool:
                    for f in [pool.submit(one, flat, opt) for flat, opt in state.slices]:
                        f.result()
            else:
                for flat, opt in state.slices:
                    one(flat, opt)
        if bar is not None:
            bar.close()
        return losses.t().cpu()
