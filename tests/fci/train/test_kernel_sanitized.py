"""The C kernel built with -fsanitize=address,undefined trains small stacks
through every code path (Adam and SGD, BCE and CE, 0/1 and real inputs, deep,
wide, narrow output-major layers, partial batches, a mask changed between
fits, continued runs) without a sanitizer report, and agrees with the
reference backend. It runs in a child process with libasan preloaded (a
sanitized library cannot be loaded into an unsanitized Python otherwise).
Skipped, with the reason, only where no C compiler or no libasan exists."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fci.train.backends.kernel import library as kernel
from tests.helpers import ROOT

CHILD = r'''
import ctypes, sys
import torch
from fci.models import MaskedMLP, MaskedMLPStack
from fci.train import KernelBackend, TrainConfig, fit

assert hasattr(ctypes.CDLL(None), "__asan_init"), "libasan is not loaded"
SAN = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all")
# the native build, and 16-lane blocks (AVX-512's width, lowered to this CPU's vectors): up to 4 output-major logits
builds = [KernelBackend(extra_flags=SAN, tag="sanitized"), KernelBackend(extra_flags=(*SAN, "-DFCI_VB=16"), tag="sanitized-vb16")]
for san in builds:
    assert "-fsanitize=address,undefined" in san.library().flags
torch.manual_seed(0)

def masked(m, seed):
    g = torch.Generator().manual_seed(seed)
    for l in range(m.n_layers):
        m.set_masks(l, (torch.rand(m.weights[l].shape, generator=g) < 0.7).float(),
                    (torch.rand(m.biases[l].shape, generator=g) < 0.7).float())
    return m

CASES = [  # name, n_in, hidden per model, n_out, loss, cfg, binary inputs
    ("adam-bce-wide", 10, [3, 17, 40], 1, "bce", TrainConfig(lr=0.02, batch_size=20), True),
    ("sgd-bce-real", 9, [5, 12], 1, "bce", TrainConfig(lr=0.05, batch_size=13, optimizer="sgd", weight_decay=0.01), False),
    ("adam-deep-narrow", 9, [(8, 3, 5), (20, 4, 2), (5, 2, 7)], 3, "bce", TrainConfig(lr=0.02, batch_size=11, weight_decay=0.01), True),
    ("ce-many-classes", 6, [5, 12], 21, "ce", TrainConfig(lr=0.1, batch_size=11, optimizer="sgd", weight_decay=0.02), False),
    ("ce-adam-binary", 37, [(6, 5), (9, 9)], 4, "ce", TrainConfig(lr=0.01, batch_size=32), True),
    ("adam-two-logits", 5, [4, 33], 2, "bce", TrainConfig(lr=0.02, batch_size=7), True),
    ("ce-two-classes", 11, [(6, 3), (17, 9)], 2, "ce", TrainConfig(lr=0.05, batch_size=9), True),
    ("ce-four-classes-real", 7, [3, 20], 4, "ce", TrainConfig(lr=0.05, batch_size=10), False),
]
worst = 0.0
for (name, n_in, hidden, n_out, loss, cfg, binary), san in [(c, b) for b in builds for c in CASES]:
    models = [masked(MaskedMLP(n_in, h, n_out, seed=i), 10 + i) for i, h in enumerate(hidden)]
    M, N = len(models), 61
    x = (torch.rand(M, N, n_in) < 0.5).float() if binary else torch.randn(M, N, n_in)
    y = (torch.rand(M, N, n_out) < 0.5).float() if loss == "bce" else torch.randint(0, n_out, (M, N))
    out = {}
    for backend in (san, "reference"):
        stack = MaskedMLPStack.from_models(models)
        state, l1 = fit(stack, x, y, cfg, range(2), loss=loss, backend=backend, workers=2)
        with torch.no_grad():  # a mask changed between fits: the moments under it are cleared
            stack.weight_mask(0)[:, :1, :2] = 0
            stack.weights[0][:, :1, :2] = 0
        _, l2 = fit(stack, x, y, cfg, range(2, 4), loss=loss, optimizer=state, workers=1)  # continued
        out[backend if isinstance(backend, str) else "kernel"] = (stack, torch.cat([l1, l2], 1))
    (k, lk), (r, lr) = out["kernel"], out["reference"]
    for l in range(k.n_layers):
        worst = max(worst, float((k.weights[l] - r.weights[l]).abs().max()))
        assert torch.allclose(k.weights[l], r.weights[l], atol=3e-4), (name, l)
        assert torch.all(k.weights[l][k.weight_mask(l) == 0] == 0), name
    assert torch.allclose(lk, lr, atol=3e-5), name
    print("ok", name, san.library().vb, flush=True)
print("worst weight difference", worst)
'''


def _libasan() -> str | None:
    cc = kernel.compiler()
    if cc is None:
        return None
    out = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return out if out and os.path.isabs(out) and os.path.exists(out) else None


@pytest.mark.slow
def test_sanitized_kernel_trains_every_path_cleanly():
    if kernel.compiler() is None:
        pytest.skip("no C compiler: the kernel (and its sanitized build) cannot be built here")
    asan = _libasan()
    if asan is None:
        pytest.skip("the C compiler has no libasan (-fsanitize=address is unsupported here)")
    env = {**os.environ, "LD_PRELOAD": asan, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1", "PYTHONPATH": str(ROOT), "FCI_KERNEL": "1"}
    r = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    report = r.stdout[-3000:] + r.stderr[-6000:]
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, report
    assert r.returncode == 0, report
    assert r.stdout.count("ok ") == 16, report
