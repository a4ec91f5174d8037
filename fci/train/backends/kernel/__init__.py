"""The kernel backend: fci's C kernel (`fci/train/backends/kernel/fitkernel.c`, built and called by `library.py`).

Each model trains start to finish in one tight loop: its parameters, optimiser
moments and gradient in L1, its data in L2, at its own layer sizes (no work on
padding beyond one vector block). Models are independent, so worker threads
take them in small chunks; a model's result is bit for bit the same alone or
in any stack, on any number of threads.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from fci.models.mlp import MaskedMLPStack
from fci.progress import bar as tqdm
from fci.train.backends.base import Backend, FitState
from fci.train.backends.kernel import library
from fci.train.backends.kernel.library import Library
from fci.train.config import ADAM_BETAS, ADAM_EPS, TrainConfig
from fci.train.maths import one_thread_unless


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def _is_binary(x: torch.Tensor, chunk: int = 1 << 22) -> bool:
    """Whether every entry of x is 0 or 1, without a full-size temporary."""
    if x.numel() == 0:
        return True
    if not x.dtype.is_floating_point:
        return int(x.min()) >= 0 and int(x.max()) <= 1
    flat = x.reshape(-1)
    return all(bool(((c == 0) | (c == 1)).all()) for c in flat.split(chunk))


class KernelState(FitState):
    """Every model's parameters, mask and optimiser moments in the kernel's
    packed layout (`fitkernel.c`), and the optimiser's step count."""

    def __init__(self, backend: "KernelBackend", stack: MaskedMLPStack, cfg: TrainConfig, workers: int,
                 lib: Library):
        super().__init__(backend, stack, cfg, workers)
        self.lib = lib  # the build this run uses (fixed for the run: its layout follows lib.vb)
        VB = lib.vb
        self.build_id = lib.build_id
        M = stack.n_models
        n_in, O = stack.weights[0].shape[2], stack.weights[-1].shape[1]
        self.sizes = torch.cat([torch.full((M, 1), n_in), stack.widths.cpu().to(torch.int64), torch.full((M, 1), O)], 1).contiguous()
        hidden = [w.shape[1] for w in stack.weights[:-1]]
        self.pad = torch.tensor([n_in] + [_round_up(h, VB) for h in hidden] + [_round_up(O, VB)], dtype=torch.int64)
        p = self.pad.tolist()
        # a last layer of few outputs (a single logit, say) after a hidden layer is stored output-major
        # (see fitkernel.c); it depends on the output count alone, never on the hidden widths of stack mates
        L = len(stack.weights)
        self.omaj = torch.tensor([int(l == L - 1 and l >= 1 and O <= max(1, VB // 4)) for l in range(L)], dtype=torch.int32)
        self.blocks = []  # (offset of Wt, offset of b) per layer
        off = 0
        for l in range(len(p) - 1):
            self.blocks.append((off, off + p[l] * p[l + 1]))
            off += p[l] * p[l + 1] + p[l + 1]
        self.P = off
        self.param = torch.zeros(M, self.P)
        self.mask = torch.zeros(M, self.P)
        adam = cfg.optimizer == "adam"
        self.m1 = torch.zeros(M, self.P) if adam else None
        self.m2 = torch.zeros(M, self.P) if adam else None
        self.step = 0
        self._data: Any = None  # (x, y, their versions, loss, (xs, ys, binary)) of the last call

    def _views(self, t):
        """Per layer: (W, b) views of a packed (M, P) tensor, W as (M, in, out) whatever
        the layer's layout (an output-major block is viewed transposed)."""
        p = self.pad.tolist()
        M = t.shape[0]
        out = []
        for l, (a, b) in enumerate(self.blocks):
            if self.omaj[l]:
                W = t[:, a:b].view(M, p[l + 1], p[l]).transpose(1, 2)
            else:
                W = t[:, a:b].view(M, p[l], p[l + 1])
            out.append((W, t[:, b : b + p[l + 1]]))
        return out

    @torch.no_grad()
    def load(self, stack) -> None:
        """Copy the stack's masks and effective parameters in (masked raw
        weights become 0), and zero any optimiser moment under a mask: masks
        may have changed since the last call."""
        for l, ((W, b), (mW, mb)) in enumerate(zip(self._views(self.param), self._views(self.mask))):
            wm, bm = stack.weight_mask(l), stack.bias_mask(l)
            o, i = wm.shape[1:]
            mW[:, :i, :o].copy_(wm.transpose(1, 2))
            mb[:, :o].copy_(bm)
            W[:, :i, :o].copy_((stack.weights[l] * wm).transpose(1, 2))
            b[:, :o].copy_(stack.biases[l] * bm)
        if self.m1 is not None and self.m2 is not None:
            self.m1.mul_(self.mask)
            self.m2.mul_(self.mask)

    @torch.no_grad()
    def store(self, stack) -> None:
        """Copy the trained parameters back into the stack."""
        for l, (W, b) in enumerate(self._views(self.param)):
            o, i = stack.weights[l].shape[1:]
            stack.weights[l].copy_(W[:, :i, :o].transpose(1, 2))
            stack.biases[l].copy_(b[:, :o])

    def data_for(self, x, y, loss: str):
        """The kernel's layout of the data, reused while the caller passes the
        same, unmodified tensors: (xs, ys, binary, codes). 0/1 data (binary)
        comes as nibble codes (`library.binary_layout`) and xs is None; other
        data as float32 xs (M, N, n_in). ys: float32 (M, N, O) for 'bce', int64
        (M, N) for 'ce'."""
        c = self._data
        if c is not None and c[0] is x and c[1] is y and c[2] == (x._version, y._version) and c[3] == loss:
            return c[4]
        binary = _is_binary(x)
        if binary:
            xs, codes = None, library.binary_layout(x)
        else:
            xs, codes = x.to(torch.float32).contiguous(), None
        ys = y.to(torch.float32 if loss == "bce" else torch.int64).contiguous()
        self._data = (x, y, (x._version, y._version), loss, (xs, ys, binary, codes))
        return xs, ys, binary, codes


class KernelBackend(Backend):
    """The C kernel. `march`, `extra_flags`: build a variant other than the
    machine's native one (an AVX2 build on an AVX-512 CPU, a sanitizer build)."""

    name = "kernel"

    def __init__(self, march: str | None = "native", extra_flags: tuple[str, ...] = (), tag: str = "",
                 wide_lanes: bool = False):
        self.march, self.extra_flags, self.tag = march, tuple(extra_flags), tag
        self._lib: Library | None = None
        self._error: str | None = None
        self._wide: Library | None | bool = None  # Zen 4's 16-lane build (False: it did not build)
        # Off by default: the choice follows the stack's mix of widths, so a model's last float bits
        # would depend on its stack mates (an FPE trial with its alpha = 1 restart control trains
        # 8-lane, the same trial resumed without its stored narrow models 16-lane).
        self.wide_lanes = bool(wide_lanes)

    @property
    def native(self) -> bool:
        return self.march == "native" and not self.extra_flags

    def library(self) -> Library:
        lib = self._library()
        if lib is None:
            raise RuntimeError(f"the C kernel is unavailable: {self._error}")
        return lib

    def _library(self) -> Library | None:
        if self.native:
            lib = library.load()
            self._error = library.unavailable_reason()
            return lib
        if self._lib is None and self._error is None:
            try:
                self._lib = library.build(self.march, self.extra_flags, self.tag)
            except (OSError, RuntimeError) as e:
                self._error = str(e)
        return self._lib

    def library_for(self, stack: MaskedMLPStack) -> Library:
        """The build that trains this stack: the backend's own, except on Zen 4
        (native build `avx512-zen4`, 8-lane blocks), where a stack with few
        narrow models (under a quarter with every hidden layer <= 8) trains in
        the 16-lane build, 3-23% faster there at uniform widths 16-128. A pure
        function of the machine and the stack's widths. Only with `wide_lanes=True`
        (opt-in): otherwise every stack trains in the native build, so each model's
        result depends on its own widths alone, whatever it is stacked with."""
        lib = self.library()
        if not self.wide_lanes or not self.native or lib.isa != "avx512-zen4":
            return lib
        widths = stack.widths.detach().cpu()
        narrow = int((widths <= 8).all(1).sum()) if widths.numel() else stack.n_models
        if 4 * narrow >= stack.n_models:
            return lib
        if self._wide is None:
            try:
                self._wide = library.build(extra_flags=("-DFCI_VB=16",), tag="vb16")
            except (OSError, RuntimeError) as e:
                library.log.warning("the 16-lane kernel build failed (%s); using the 8-lane one", e)
                self._wide = False
        return self._wide if isinstance(self._wide, Library) else lib

    def why_not(self, stack, cfg, loss) -> str | None:
        if self.native and os.environ.get("FCI_KERNEL", "1") == "0":
            return "FCI_KERNEL=0 turns the kernel off on this machine"
        if cfg.momentum:
            return "it trains Adam and plain SGD; SGD with momentum runs on the torch backend"
        w = stack.weights[0]
        if w.device.type != "cpu":
            return f"it trains on the CPU, the stack is on {w.device}"
        if any(t.dtype != torch.float32 for t in list(stack.weights) + list(stack.biases)):
            return f"it trains float32 stacks, this one is {w.dtype}"
        lib = self._library()
        if lib is None:
            return self._error
        if stack.n_layers > lib.max_layers:
            return f"it trains at most {lib.max_layers} layers, the stack has {stack.n_layers}"
        return None

    def describe(self, state=None) -> dict:
        lib = state.lib if isinstance(state, KernelState) else self._library()
        if lib is None:
            return {}
        return {"kernel_build": lib.build_id, "kernel_isa": lib.isa, "kernel_vb": lib.vb, "kernel_s": lib.s,
                "kernel_flags": " ".join(lib.flags)}

    def start(self, stack, cfg, loss, workers) -> KernelState:
        return KernelState(self, stack, cfg, workers, self.library_for(stack))

    def run(self, state, stack, x, y, cfg, perms, loss, workers, progress) -> torch.Tensor:
        assert isinstance(state, KernelState)
        lib = state.lib
        M, N = x.shape[:2]
        E = perms.shape[0]
        with one_thread_unless(0.0):  # small strided copies: torch's threads would only wait on each other
            state.load(stack)
        xs, ys, binary, codes = state.data_for(x, y, loss)
        perms = perms.to(torch.int64).contiguous()
        losses = torch.zeros(M, E)
        if E == 0 or M == 0:
            with one_thread_unless(0.0):
                state.store(stack)
            return losses
        bar = tqdm(total=M * E, desc=progress, unit="model-epoch", leave=False) if progress else None
        # small chunks, handed out in turn: threads stay busy whatever the models' widths
        size = max(1, min(64, M // (8 * max(1, workers))))
        chunks = [(a, min(M, a + size)) for a in range(0, M, size)]
        try:
            library.call(lib, sizes=state.sizes, pad=state.pad, omaj=state.omaj, param=state.param, mask=state.mask,
                         m1=state.m1, m2=state.m2, x=xs, y=ys, perms=perms, losses=losses, loss=loss,
                         sgd=cfg.optimizer == "sgd", lr=cfg.lr, beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], eps=ADAM_EPS,
                         wd=cfg.weight_decay, step0=state.step, binary=binary, batch=cfg.batch_size, chunks=chunks,
                         workers=workers, done=(lambda c: bar.update((c[1] - c[0]) * E)) if bar is not None else None,
                         codes=codes, n_samples=N)
        finally:
            if bar is not None:
                bar.close()
        state.step += E * ((N + cfg.batch_size - 1) // cfg.batch_size)
        with one_thread_unless(0.0):
            state.store(stack)
        return losses
