"""The CPU training kernel (`_fitkernel.c`): built on first use, loaded with ctypes.

`fit` trains CPU float32 stacks through it whenever it is available: each model
is trained start to finish in a tight C loop, its parameters and optimiser
moments in L1 and its data in L2, at its own layer sizes (no padding). The
kernel is compiled once per machine with the system C compiler (`cc`, or
`$FCI_CC`) into `$FCI_CACHE` or `~/.cache/fci/kernels`, keyed by the source,
the compiler and the CPU, and built for the CPU it runs on (`-march=native`).
Without a compiler, or with `FCI_KERNEL=0`, fit uses its torch path instead:
the same computation, up to float rounding, and slower on a CPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("_fitkernel.c")
_FLAGS = ["-O3", "-g", "-march=native", "-fno-math-errno", "-fPIC", "-shared"]
_ABI = 2
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None


class FitArgs(ctypes.Structure):
    """Mirror of `fci_fit_args` in _fitkernel.c (same field order)."""

    _fields_ = [
        ("n_models", ctypes.c_int64), ("L", ctypes.c_int64), ("P", ctypes.c_int64), ("N", ctypes.c_int64),
        ("n_in", ctypes.c_int64), ("E", ctypes.c_int64), ("B", ctypes.c_int64),
        ("sizes", ctypes.c_void_p), ("pad", ctypes.c_void_p), ("omaj", ctypes.c_void_p),
        ("param", ctypes.c_void_p), ("mask", ctypes.c_void_p), ("m1", ctypes.c_void_p), ("m2", ctypes.c_void_p),
        ("x", ctypes.c_void_p), ("y", ctypes.c_void_p), ("perms", ctypes.c_void_p), ("losses", ctypes.c_void_p),
        ("loss_ce", ctypes.c_int32), ("sgd", ctypes.c_int32),
        ("lr", ctypes.c_double), ("beta1", ctypes.c_double), ("beta2", ctypes.c_double),
        ("eps", ctypes.c_double), ("wd", ctypes.c_double),
        ("step0", ctypes.c_int64),
    ]


def _cpu_id() -> str:
    """What `-march=native` depends on: the CPU's model and feature flags."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def _compiler() -> str | None:
    cc = os.environ.get("FCI_CC") or os.environ.get("CC") or "cc"
    return shutil.which(cc)


def _cache_dir() -> Path:
    root = os.environ.get("FCI_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fci")
    return Path(root) / "kernels"


def _build() -> ctypes.CDLL:
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set FCI_CC, or install cc)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    src = _SOURCE.read_bytes()
    key = hashlib.sha256(src + version.encode() + _cpu_id().encode() + " ".join(_FLAGS).encode()).hexdigest()[:16]
    out = _cache_dir() / f"fitkernel-{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        try:
            r = subprocess.run([cc, *_FLAGS, "-o", tmp, str(_SOURCE), "-lm"], capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"{cc} failed to build {_SOURCE.name}: {r.stderr.strip()[-2000:]}")
            os.replace(tmp, out)  # atomic: concurrent builds each land a whole file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(out))
    if lib.fci_fit_abi() != _ABI:
        raise RuntimeError(f"{out} is a different kernel version")
    lib.fci_fit.argtypes = [ctypes.POINTER(FitArgs), ctypes.c_int64, ctypes.c_int64]
    lib.fci_fit.restype = ctypes.c_int
    return lib


def load() -> ctypes.CDLL | None:
    """The kernel library, built on first use; None (and one warning saying why)
    when it cannot be built or `FCI_KERNEL=0`."""
    global _lib, _error
    if os.environ.get("FCI_KERNEL", "1") == "0":
        return None
    with _lock:
        if _lib is None and _error is None:
            try:
                _lib = _build()
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                _error = str(e)
                log.warning("fci's CPU training kernel is unavailable (%s); training uses the slower torch path", _error)
        return _lib


def available() -> bool:
    """Whether `fit` trains CPU float32 stacks through the kernel."""
    return load() is not None


def unavailable_reason() -> str | None:
    load()
    return _error if _lib is None else None


# --------------------------------------------------------------------------- training through the kernel

VB = 16  # the kernel's output block (VB in _fitkernel.c): padded sizes of layers >= 1 are multiples of it
MAX_LAYERS = 16


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


class KernelState:
    """What `fit` returns as its optimiser on the kernel path: every model's
    parameters, mask and optimiser moments in the kernel's packed layout, and
    the optimiser's step count. Passing it back to `fit` continues the run."""

    def __init__(self, stack, cfg):
        self._stack = weakref.ref(stack)
        self.shapes = [tuple(w.shape) for w in stack.weights]
        self.cfg_key = (cfg.optimizer, cfg.lr, cfg.weight_decay)
        M = stack.n_models
        n_in, O = stack.weights[0].shape[2], stack.weights[-1].shape[1]
        self.sizes = torch.cat([torch.full((M, 1), n_in), stack.widths.cpu().to(torch.int64), torch.full((M, 1), O)], 1).contiguous()
        hidden = [w.shape[1] for w in stack.weights[:-1]]
        self.pad = torch.tensor([n_in] + [_round_up(h, VB) for h in hidden] + [_round_up(O, VB)], dtype=torch.int64)
        p = self.pad.tolist()
        # narrow layers past the first (a single logit, say) are stored output-major (see _fitkernel.c)
        self.omaj = torch.tensor([int(l >= 1 and w.shape[1] <= VB // 4) for l, w in enumerate(stack.weights)], dtype=torch.int32)
        self.blocks = []  # (offset of Wt, offset of b) per layer
        off = 0
        for l in range(len(p) - 1):
            self.blocks.append((off, off + p[l] * p[l + 1]))
            off += p[l] * p[l + 1] + p[l + 1]
        self.P = off
        self.param = torch.zeros(M, self.P)
        self.mask = torch.zeros(M, self.P)
        self.m1 = torch.zeros(M, self.P) if cfg.optimizer == "adam" else torch.zeros(1)
        self.m2 = torch.zeros_like(self.m1)
        self.step = 0
        self._data = None

    def matches(self, stack) -> bool:
        return self._stack() is stack and [tuple(w.shape) for w in stack.weights] == self.shapes

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

    def load(self, stack) -> None:
        """Copy the stack's masks and effective parameters in (masked raw
        weights become 0), and zero any optimiser moment under a mask: masks
        may have changed since the last call."""
        with torch.no_grad():
            for l, ((W, b), (mW, mb)) in enumerate(zip(self._views(self.param), self._views(self.mask))):
                wm, bm = stack.weight_mask(l), stack.bias_mask(l)
                o, i = wm.shape[1:]
                mW[:, :i, :o].copy_(wm.transpose(1, 2))
                mb[:, :o].copy_(bm)
                W[:, :i, :o].copy_((stack.weights[l] * wm).transpose(1, 2))
                b[:, :o].copy_(stack.biases[l] * bm)
            if self.m1.shape == self.param.shape:
                self.m1.mul_(self.mask)
                self.m2.mul_(self.mask)

    def store(self, stack) -> None:
        """Copy the trained parameters back into the stack."""
        with torch.no_grad():
            for l, (W, b) in enumerate(self._views(self.param)):
                o, i = stack.weights[l].shape[1:]
                stack.weights[l].copy_(W[:, :i, :o].transpose(1, 2))
                stack.biases[l].copy_(b[:, :o])

    def data_for(self, x, y, loss: str):
        """x as float32 (M, N, n_in) and y as float32 (M, N, O) ('bce') or int64
        (M, N) ('ce'), contiguous; reused while the caller passes the same,
        unmodified tensors."""
        c = self._data
        if c is not None and c[0] is x and c[1] is y and c[2] == (x._version, y._version) and c[3] == loss:
            return c[4]
        xs = x.to(torch.float32).contiguous()
        ys = y.to(torch.float32 if loss == "bce" else torch.int64).contiguous()
        self._data = (x, y, (x._version, y._version), loss, (xs, ys))
        return xs, ys


def usable(stack) -> bool:
    """Whether the kernel can train this stack: CPU, float32, at most MAX_LAYERS layers."""
    w = stack.weights[0]
    return (w.device.type == "cpu" and w.dtype == torch.float32 and stack.n_layers <= MAX_LAYERS
            and all(t.dtype == torch.float32 for t in list(stack.weights) + list(stack.biases)) and available())


def run(state: KernelState, stack, x, y, cfg, perms, loss: str, workers: int, bar=None):
    """Train every model of the stack over the epochs whose minibatch orders are
    `perms` (E, N); returns the mean train loss per model and epoch, (M, E)."""
    lib = load()
    M, N = x.shape[:2]
    E = perms.shape[0]
    state.load(stack)
    xs, ys = state.data_for(x, y, loss)
    perms = perms.to(torch.int64).contiguous()
    losses = torch.zeros(M, E)
    if E == 0 or M == 0:
        state.store(stack)
        return losses
    n_in = xs.shape[2]
    beta1, beta2 = 0.9, 0.999
    args = FitArgs(
        n_models=M, L=stack.n_layers, P=state.P, N=N, n_in=n_in, E=E, B=cfg.batch_size,
        sizes=state.sizes.data_ptr(), pad=state.pad.data_ptr(), omaj=state.omaj.data_ptr(), param=state.param.data_ptr(), mask=state.mask.data_ptr(),
        m1=state.m1.data_ptr(), m2=state.m2.data_ptr(), x=xs.data_ptr(), y=ys.data_ptr(), perms=perms.data_ptr(),
        losses=losses.data_ptr(), loss_ce=int(loss == "ce"), sgd=int(cfg.optimizer == "sgd"),
        lr=cfg.lr, beta1=beta1, beta2=beta2, eps=1e-8, wd=cfg.weight_decay, step0=state.step,
    )
    # small chunks, handed out in turn: threads stay busy whatever the models' widths
    size = max(1, min(64, M // (8 * max(1, workers))))
    chunks = [(a, min(M, a + size)) for a in range(0, M, size)]

    def one(c):
        if lib.fci_fit(ctypes.byref(args), c[0], c[1]) != 0:
            raise RuntimeError("fci's training kernel failed: out of memory for its workspace, or a layout it cannot train")
        if bar is not None:
            bar.update((c[1] - c[0]) * E)

    if workers > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            list(pool.map(one, chunks))
    else:
        for c in chunks:
            one(c)
    state.step += E * ((N + cfg.batch_size - 1) // cfg.batch_size)
    state.store(stack)
    return losses
