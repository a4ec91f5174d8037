"""The CPU training kernel (`fitkernel.c`): built on first use, loaded with ctypes.

The kernel is compiled once per machine and variant with the system C compiler
(`cc`, or `$FCI_CC`) into `$FCI_CACHE` or `~/.cache/fci/kernels`, keyed by the
source, the compiler, the flags and the CPU. The default variant is built for
the CPU it runs on (`-march=native`); its vector width and sample grouping
follow the CPU's features (AVX-512, AVX2, NEON or generic), chosen by the C
preprocessor. Every constant the Python side needs (vector block, sample group,
maximum depth, the argument struct's size and field offsets, the ISA) is read
from the built library, and every buffer is checked at this boundary (and again
by the kernel) before the kernel touches it.

`FCI_KERNEL=0` makes `auto` leave the kernel alone on this machine.
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
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fitkernel.c")
_BASE_FLAGS = ["-O3", "-g", "-fno-math-errno", "-fPIC", "-shared"]
ABI = 5
_lock = threading.Lock()


class FitArgs(ctypes.Structure):
    """Mirror of `fci_fit_args` in fitkernel.c; checked against the library's own offsets on load."""

    _fields_ = [
        ("n_models", ctypes.c_int64), ("L", ctypes.c_int64), ("P", ctypes.c_int64), ("N", ctypes.c_int64),
        ("n_in", ctypes.c_int64), ("E", ctypes.c_int64), ("B", ctypes.c_int64),
        ("sizes", ctypes.c_void_p), ("pad", ctypes.c_void_p), ("omaj", ctypes.c_void_p),
        ("param", ctypes.c_void_p), ("mask", ctypes.c_void_p), ("m1", ctypes.c_void_p), ("m2", ctypes.c_void_p),
        ("x", ctypes.c_void_p), ("y", ctypes.c_void_p), ("perms", ctypes.c_void_p), ("losses", ctypes.c_void_p),
        ("loss_ce", ctypes.c_int32), ("sgd", ctypes.c_int32),
        ("lr", ctypes.c_double), ("beta1", ctypes.c_double), ("beta2", ctypes.c_double),
        ("eps", ctypes.c_double), ("wd", ctypes.c_double),
        ("step0", ctypes.c_int64), ("binary", ctypes.c_int32), ("pad_", ctypes.c_int32),
        ("len_sizes", ctypes.c_int64), ("len_pad", ctypes.c_int64), ("len_omaj", ctypes.c_int64),
        ("len_param", ctypes.c_int64), ("len_mask", ctypes.c_int64), ("len_m1", ctypes.c_int64),
        ("len_m2", ctypes.c_int64), ("len_x", ctypes.c_int64), ("len_y", ctypes.c_int64),
        ("len_perms", ctypes.c_int64), ("len_losses", ctypes.c_int64),
        ("codes", ctypes.c_void_p), ("len_codes", ctypes.c_int64),
    ]


def _cpu_id() -> str:
    """What `-march=native` depends on: the CPU's model and feature flags."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def compiler() -> str | None:
    cc = os.environ.get("FCI_CC") or os.environ.get("CC") or "cc"
    return shutil.which(cc)


def _cache_dir() -> Path:
    root = os.environ.get("FCI_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fci")
    return Path(root) / "kernels"


@dataclass(frozen=True)
class Library:
    """A built kernel and the constants read from it."""

    lib: ctypes.CDLL
    path: Path
    build_id: str  # hash of source, compiler, flags and CPU
    isa: str       # the variant's vector ISA: avx512, avx2, neon, generic or custom
    vb: int        # outputs per vector block: padded sizes of layers >= 1 are multiples of it
    s: int         # samples per group
    max_layers: int
    flags: tuple[str, ...]


def build(march: str | None = "native", extra_flags: tuple[str, ...] = (), tag: str = "") -> Library:
    """Build (or find in the cache) and load a kernel variant. `march`: the
    target CPU (`native`, or e.g. `znver3` for an AVX2 build on any x86;
    None: the compiler's baseline); `extra_flags`, e.g. sanitizers or
    `-DFCI_VB=8`. Raises RuntimeError saying why."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set FCI_CC, or install cc)")
    flags = [*_BASE_FLAGS, *([f"-march={march}"] if march else []), *extra_flags]
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + version.encode() + _cpu_id().encode() + " ".join(flags).encode()).hexdigest()[:16]
    out = _cache_dir() / f"fitkernel-{tag + '-' if tag else ''}{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        try:
            r = subprocess.run([cc, *flags, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"{cc} failed to build {SOURCE.name}: {r.stderr.strip()[-2000:]}")
            os.replace(tmp, out)  # atomic: concurrent builds each land a whole file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(out))
    lib.fci_fit_const.argtypes = [ctypes.c_int64]
    lib.fci_fit_const.restype = ctypes.c_int64
    if lib.fci_fit_const(0) != ABI:
        raise RuntimeError(f"{out} is kernel ABI {lib.fci_fit_const(0)}, this fci needs {ABI}")
    if lib.fci_fit_const(4) != ctypes.sizeof(FitArgs):
        raise RuntimeError(f"{out}: argument struct is {lib.fci_fit_const(4)} bytes, the ctypes mirror {ctypes.sizeof(FitArgs)}")
    offsets = (ctypes.c_int64 * 64)()
    lib.fci_fit_layout.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.fci_fit_layout.restype = ctypes.c_int64
    n = lib.fci_fit_layout(offsets, 64)
    mine = [getattr(FitArgs, f[0]).offset for f in FitArgs._fields_]
    if list(offsets[:n]) != mine:
        raise RuntimeError(f"{out}: argument struct layout {list(offsets[:n])} differs from the ctypes mirror {mine}")
    lib.fci_fit.argtypes = [ctypes.POINTER(FitArgs), ctypes.c_int64, ctypes.c_int64]
    lib.fci_fit.restype = ctypes.c_int
    lib.fci_fit_error.argtypes = [ctypes.c_int]
    lib.fci_fit_error.restype = ctypes.c_char_p
    lib.fci_fit_isa.restype = ctypes.c_char_p
    return Library(lib=lib, path=out, build_id=key, isa=lib.fci_fit_isa().decode(), vb=int(lib.fci_fit_const(1)),
                   s=int(lib.fci_fit_const(2)), max_layers=int(lib.fci_fit_const(3)), flags=tuple(flags))


_native: Library | None = None
_error: str | None = None


def load() -> Library | None:
    """The native kernel, built on first use; None (and one warning saying why)
    when it cannot be built. The outcome is remembered for the process."""
    global _native, _error
    with _lock:
        if _native is None and _error is None:
            try:
                _native = build()
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                _error = str(e)
                log.warning("fci's CPU training kernel is unavailable (%s); training uses the slower torch path", _error)
        return _native


def unavailable_reason() -> str | None:
    """Why the native kernel cannot run here (None when it can)."""
    if os.environ.get("FCI_KERNEL", "1") == "0":
        return "FCI_KERNEL=0 turns the kernel off on this machine"
    load()
    return _error if _native is None else None


def available() -> bool:
    return unavailable_reason() is None


# --------------------------------------------------------------------------- the call, checked


def _check(name: str, t: torch.Tensor, dtype: torch.dtype, shape: tuple[int, ...]) -> int:
    """t's element count, after checking that it is a contiguous CPU tensor of
    this dtype and shape (the kernel reads and writes exactly that)."""
    if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.dtype != dtype or tuple(t.shape) != shape \
            or not t.is_contiguous():
        got = f"{t.dtype} {tuple(t.shape)} on {t.device}, contiguous={t.is_contiguous()}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"kernel buffer {name}: expected a contiguous CPU {dtype} {shape}, got {got}")
    return t.numel()


def binary_layout(x: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """The kernel's layout of 0/1 data x (M, N, n): nibble codes (M, N, ceil(n/4))
    uint8, bit j of byte g = x[..., 4g + j]. Built `chunk` models at a time,
    without a float copy."""
    M, N, n = x.shape
    codes = torch.zeros(M, N, -(-n // 4), dtype=torch.uint8)
    for a in range(0, M, chunk):
        x8 = x[a : a + chunk].to(torch.uint8)
        for j in range(4):
            bits = x8[..., j::4]  # inputs 4g + j, g < ceil((n - j) / 4)
            codes[a : a + chunk, :, : bits.shape[2]] |= bits << j
    return codes


def call(lib: Library, *, sizes, pad, omaj, param, mask, m1, m2, x, y, perms, losses, loss: str, sgd: bool,
         lr: float, beta1: float, beta2: float, eps: float, wd: float, step0: int, binary: bool, batch: int,
         chunks: list[tuple[int, int]], workers: int, done=None, codes=None, n_samples: int | None = None) -> None:
    """Run fci_fit on model ranges `chunks` (on `workers` threads), after checking
    every buffer's dtype, shape and contiguity against the layout. With
    `binary`, `codes` (`binary_layout`) replace x (which may be None)."""
    M, Lp1 = sizes.shape
    L = Lp1 - 1
    P = param.shape[1] if param.dim() == 2 else -1
    E = perms.shape[0] if perms.dim() == 2 else -1
    if n_samples is not None:
        N = n_samples
    elif x is not None:
        N = x.shape[1] if x.dim() == 3 else -1
    else:
        raise ValueError("kernel: give x or n_samples")
    n_in = int(pad[0])
    O = int(pad[-1])
    lens = {
        "sizes": _check("sizes", sizes, torch.int64, (M, L + 1)),
        "pad": _check("pad", pad, torch.int64, (L + 1,)),
        "omaj": _check("omaj", omaj, torch.int32, (L,)),
        "param": _check("param", param, torch.float32, (M, P)),
        "mask": _check("mask", mask, torch.float32, (M, P)),
        "x": 0 if binary and x is None else _check("x", x, torch.float32, (M, N, n_in)),
        "y": _check("y", y, torch.int64, (M, N)) if loss == "ce" else _check("y", y, torch.float32, (M, N, int(sizes[0, -1]) if M else O)),
        "perms": _check("perms", perms, torch.int64, (E, N)),
        "losses": _check("losses", losses, torch.float32, (M, E)),
    }
    lens["codes"] = _check("codes", codes, torch.uint8, (M, N, -(-n_in // 4))) if binary else 0
    if sgd:
        m1 = m2 = None
        lens["m1"] = lens["m2"] = 0
    else:
        lens["m1"] = _check("m1 (Adam moment)", m1, torch.float32, (M, P))
        lens["m2"] = _check("m2 (Adam moment)", m2, torch.float32, (M, P))
    if M and not bool((sizes[:, -1] == sizes[0, -1]).all()):
        raise ValueError("kernel: every model of a call needs the same output count")
    args = FitArgs(
        n_models=M, L=L, P=P, N=N, n_in=n_in, E=E, B=batch,
        sizes=sizes.data_ptr(), pad=pad.data_ptr(), omaj=omaj.data_ptr(), param=param.data_ptr(), mask=mask.data_ptr(),
        m1=m1.data_ptr() if m1 is not None else None, m2=m2.data_ptr() if m2 is not None else None,
        x=x.data_ptr() if x is not None else None, y=y.data_ptr(), perms=perms.data_ptr(), losses=losses.data_ptr(),
        codes=codes.data_ptr() if binary else None,
        loss_ce=int(loss == "ce"), sgd=int(sgd), lr=lr, beta1=beta1, beta2=beta2, eps=eps, wd=wd, step0=step0,
        binary=int(binary), pad_=0, **{f"len_{k}": v for k, v in lens.items()},
    )

    def one(c):
        rc = lib.lib.fci_fit(ctypes.byref(args), c[0], c[1])
        if rc != 0:
            raise RuntimeError(f"fci's training kernel refused the call: {lib.lib.fci_fit_error(rc).decode()}")
        if done is not None:
            done(c)

    if workers > 1 and len(chunks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            list(pool.map(one, chunks))
    else:
        for c in chunks:
            one(c)
