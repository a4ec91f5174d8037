"""The CUDA path: the torch backend on a GPU trains every model as the reference
backend does on the CPU (to float rounding), never waits on the host inside an
epoch, and with CUDA graphs replays its eager epochs. Run on a GPU by
`benchmarks/gpu_check.sh` (`pytest -m cuda`); skipped, with the reason, without
a CUDA device."""

from __future__ import annotations

import pytest
import torch

from fci.models import MaskedMLP, MaskedMLPStack
from fci.train import TorchBackend, TrainConfig, fit
from fci.train.backends import torch as torch_backend
from fci.train.backends.kernel import library as kernel
from tests.helpers import random_masks

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CASES = {
    "wide-adam": (10, (3, 17, 40), 1, "bce", TrainConfig(lr=0.02, batch_size=20), True),
    "deep-adam-wd": (9, ((8, 3, 6), (20, 4, 2), (5, 2, 9)), 3, "bce", TrainConfig(lr=0.02, batch_size=13, weight_decay=0.01), True),
    "many-classes-sgd-real": (6, (5, 12), 21, "ce", TrainConfig(lr=0.1, batch_size=11, optimizer="sgd", weight_decay=0.02), False),
    "ce-adam-binary": (37, ((6, 5), (9, 9)), 4, "ce", TrainConfig(lr=0.01, batch_size=32), True),
}


def _case(case):
    n_in, hidden, n_out, loss, cfg, binary = CASES[case]
    models = [random_masks(MaskedMLP(n_in, h, n_out, seed=i), seed=50 + i, p=0.7) for i, h in enumerate(hidden)]
    g = torch.Generator().manual_seed(0)
    M, N = len(models), 101
    x = (torch.rand(M, N, n_in, generator=g) < 0.5).to(torch.uint8) if binary else torch.randn(M, N, n_in, generator=g)
    y = (torch.rand(M, N, n_out, generator=g) < 0.5).to(torch.uint8) if loss == "bce" else torch.randint(0, n_out, (M, N), generator=g)
    return models, x, y, cfg, loss


def _run(models, x, y, cfg, loss, backend, device):
    """Two fits on `device`, a mask changed between them, continued; -> (stack on CPU, losses, state)."""
    stack = MaskedMLPStack.from_models(models).to(device)
    x, y = x.to(device), y.to(device)
    state, l1 = fit(stack, x, y, cfg, range(3), loss=loss, backend=backend)
    with torch.no_grad():
        stack.weight_mask(0)[:, :2, :3] = 0
        stack.weights[0][:, :2, :3] = 0
    _, l2 = fit(stack, x, y, cfg, range(3, 5), loss=loss, optimizer=state)
    return stack.to("cpu"), torch.cat([l1, l2], 1), state


@pytest.mark.parametrize("case", list(CASES))
def test_the_torch_backend_on_cuda_agrees_with_the_reference_on_the_cpu(case):
    models, x, y, cfg, loss = _case(case)
    g, lg, state = _run(models, x, y, cfg, loss, "torch", "cuda")
    r, lr, _ = _run(models, x, y, cfg, loss, "reference", "cpu")
    assert state.provenance["backend"] == "torch" and state.provenance["device"].startswith("cuda")
    assert torch.allclose(lg, lr, atol=3e-5), (lg - lr).abs().max()
    for l in range(g.n_layers):
        assert torch.allclose(g.weights[l], r.weights[l], atol=3e-4), (g.weights[l] - r.weights[l]).abs().max()
        assert torch.all(g.weights[l][g.weight_mask(l) == 0] == 0)


@pytest.mark.skipif(not kernel.available(), reason="the C kernel is unavailable")
def test_a_stack_trained_on_cuda_matches_the_cpu_kernel():
    models, x, y, cfg, loss = _case("wide-adam")
    g, lg, _ = _run(models, x, y, cfg, loss, "torch", "cuda")
    k, lk, _ = _run(models, x, y, cfg, loss, "kernel", "cpu")
    assert torch.allclose(lg, lk, atol=3e-5)
    for a, b in zip(g.weights, k.weights):
        assert torch.allclose(a, b, atol=3e-4)


@pytest.mark.parametrize("case", ["wide-adam", "ce-adam-binary"])
def test_cuda_graphs_replay_the_eager_epochs(case):
    """The same kernels, launched once per epoch from a graph instead of one by
    one: the same weights and losses (to the last bits, unless cuBLAS picks
    another algorithm under capture), over two fits with a mask changed between;
    and the graph's warm-up leaves no trace (a stray step would move weights by ~lr)."""
    models, x, y, cfg, loss = _case(case)
    e, le, eager = _run(models, x, y, cfg, loss, TorchBackend(), "cuda")
    g, lg, graphs = _run(models, x, y, cfg, loss, TorchBackend(cuda_graphs=True), "cuda")
    assert graphs.provenance["cuda_graphs"] is True and "cuda_graphs" not in eager.provenance
    assert torch.allclose(le, lg, rtol=0, atol=1e-6), (le - lg).abs().max()
    for a, b in zip([*e.weights, *e.biases], [*g.weights, *g.biases]):
        assert torch.allclose(a, b, rtol=0, atol=1e-6), (a - b).abs().max()


def test_cuda_graphs_say_why_they_do_not_apply():
    models, x, y, cfg, loss = _case("many-classes-sgd-real")  # SGD: no fused Adam step to capture
    _, _, state = _run(models, x, y, cfg, loss, TorchBackend(cuda_graphs=True), "cuda")
    assert state.provenance["cuda_graphs"] is False and "fused Adam" in state.provenance["cuda_graphs_why_not"]


@pytest.mark.parametrize("graphs", [False, True])
def test_no_host_sync_inside_an_epoch_on_cuda(monkeypatch, graphs):
    """torch's sync debug mode turns any wait on the device inside an epoch
    (a value read back, a copy to the host) into an error."""
    original, ran = torch_backend._epoch, []

    def strict(*args, **kw):
        torch.cuda.set_sync_debug_mode("error")
        try:
            ran.append(1)
            return original(*args, **kw)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(torch_backend, "_epoch", strict)
    for case in ("wide-adam", "ce-adam-binary"):
        models, x, y, cfg, loss = _case(case)
        _run(models, x, y, cfg, loss, TorchBackend(cuda_graphs=graphs), "cuda")
    assert ran
