"""fci's C training kernel (`fci._kernel`, `fci/_fitkernel.c`) against fit's torch
path, and the properties only the kernel has: a model's result does not depend on
its stack mates or the thread count, and the loss it reports is exact at extreme
logits. Speed is measured by `python -m benchmarks.trainer`, not here."""

from __future__ import annotations

import logging

import pytest
import torch

import fci._kernel as kernel
import fci.train as train
from fci.model import MaskedMLP, MaskedMLPStack
from fci.train import TrainConfig, fit

from conftest import random_masks

pytestmark = pytest.mark.skipif(not kernel.available(), reason=f"the C kernel is unavailable: {kernel.unavailable_reason()}")


def _models(n_in, hidden, n_out, seed=0, p=0.7):
    return [random_masks(MaskedMLP(n_in, h, n_out, seed=seed + i), seed=50 + seed + i, p=p) for i, h in enumerate(hidden)]


def _data(M, N, n_in, n_out, loss, seed=0, binary=True):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(M, N, n_in, generator=g) < 0.5).to(torch.uint8) if binary else torch.randn(M, N, n_in, generator=g)
    if loss == "bce":
        y = (torch.rand(M, N, n_out, generator=g) < 0.5).to(torch.uint8)
    else:
        y = torch.randint(0, n_out, (M, N), generator=g)
    return x, y


def _train(models, x, y, cfg, loss, use_kernel, monkeypatch, epochs=(3, 2), workers=None):
    monkeypatch.setattr(train, "KERNEL", use_kernel)
    if workers is not None:
        monkeypatch.setattr(train, "CPU_WORKERS", workers)
    stack = MaskedMLPStack.from_models(models)
    opt, l1 = fit(stack, x, y, cfg, range(epochs[0]), loss=loss)
    assert isinstance(opt, kernel.KernelState) == use_kernel
    _, l2 = fit(stack, x, y, cfg, range(epochs[0], sum(epochs)), loss=loss, optimizer=opt)
    return stack, torch.cat([l1, l2], 1)


CASES = {
    # widths past one vector block (16) and a single logit (stored output-major)
    "wide-bce": (10, (3, 17, 40), 1, "bce", TrainConfig(lr=0.02, batch_size=20)),
    # two hidden layers, the second narrow enough to be output-major, with ReLU; multi-output
    "deep-narrow": (9, ((8, 3), (20, 4), (5, 2)), 3, "bce", TrainConfig(lr=0.02, batch_size=13, weight_decay=0.01)),
    # more classes than one vector block holds, real-valued inputs, SGD
    "ce-many-classes": (6, (5, 12), 21, "ce", TrainConfig(lr=0.1, batch_size=11, optimizer="sgd", weight_decay=0.02)),
    "ce-adam": (7, ((6, 5), (9, 9)), 4, "ce", TrainConfig(lr=0.01, batch_size=32)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_kernel_and_torch_path_train_alike(case, monkeypatch):
    """Same models, data, minibatch orders and optimiser: the two paths agree to
    float rounding (batch sizes that are not a multiple of the kernel's sample
    group, a partial last batch, a continued run, masks)."""
    n_in, hidden, n_out, loss, cfg = CASES[case]
    models = _models(n_in, hidden, n_out)
    x, y = _data(len(models), 101, n_in, n_out, loss, binary=case != "ce-many-classes")
    k, lk = _train(models, x, y, cfg, loss, True, monkeypatch)
    t, lt = _train(models, x, y, cfg, loss, False, monkeypatch)
    assert torch.allclose(lk, lt, atol=2e-5), (lk - lt).abs().max()
    for l in range(k.n_layers):
        assert torch.allclose(k.weights[l], t.weights[l], atol=2e-4), (k.weights[l] - t.weights[l]).abs().max()
        assert torch.allclose(k.biases[l], t.biases[l], atol=2e-4)
        # nothing under a mask, padding included, moved off zero
        assert torch.all(k.weights[l][k.weight_mask(l) == 0] == 0)
        assert torch.all(k.biases[l][k.bias_mask(l) == 0] == 0)
    assert torch.equal(k.widths, t.widths)


def test_a_models_result_depends_only_on_itself(monkeypatch):
    """Trained alone, or among wider stack mates on one or two threads, a model
    comes out bit for bit the same (the kernel runs each model at its own sizes)."""
    models = _models(12, (5, 16, 3, 40, 9, 5), 1, seed=3)
    x, y = _data(len(models), 90, 12, 1, "bce", seed=4)
    cfg = TrainConfig(lr=0.03, batch_size=16)
    alone, l_alone = _train([models[0]], x[:1], y[:1], cfg, "bce", True, monkeypatch)
    for workers in (1, 2):
        mates, l_mates = _train(models, x, y, cfg, "bce", True, monkeypatch, workers=workers)
        a, b = alone.to_models()[0], mates.to_models()[0]
        for (w, bias), (w2, bias2) in zip(a.effective_weights(), b.effective_weights()):
            assert torch.equal(w, w2) and torch.equal(bias, bias2)
        assert torch.equal(l_alone[0], l_mates[0])


def _frozen_loss(model, x, y, loss, batch, monkeypatch):
    """The loss fit reports for epoch 0 when SGD barely moves (lr 1e-30): the
    initial model's mean batch loss."""
    monkeypatch.setattr(train, "KERNEL", True)
    stack = MaskedMLPStack.from_models([model])
    _, losses = fit(stack, x[None], y[None], TrainConfig(lr=1e-30, batch_size=batch, optimizer="sgd"), range(1), loss=loss)
    return float(losses[0, 0])


def _logit_model(n_out):
    """Hidden units copy the (non-negative) inputs; logit k reads a fixed +-1 combination."""
    model = MaskedMLP(4, 4, n_out, seed=0)
    read = torch.tensor([[1.0, -1.0, 0, 0], [0, 1.0, 0, 0], [-1.0, 0, 0, 0]])[:n_out]
    with torch.no_grad():
        model.weights[0].copy_(torch.eye(4))
        model.biases[0].zero_()
        model.weights[1].copy_(read)
        model.biases[1].fill_(0.25)
    return model


@pytest.mark.parametrize("values", [
    [300.0, 88.0, 40.0, 17.0, 3.0, 0.5, 0.0, 1e-4, 1e-7],  # overflow territory for a naive exp
    [5.0, 2.5, 1.25, 0.75, 0.3, 0.1, 0.01, 0.0],  # where log1p's accuracy shows
])
def test_reported_loss_is_exact_at_any_logit(values, monkeypatch):
    """The kernel's own vectorised exp and log1p (BCE) and softmax (CE): the loss
    it reports is torch's, computed by hand as the mean over batches of each
    batch's mean loss."""
    N, B = 40, 8
    z = torch.tensor(values)
    pad = torch.zeros(N)
    a = torch.cat([z, torch.zeros_like(z), pad]).repeat(4)[:N]
    b = torch.cat([torch.zeros_like(z), z, pad]).repeat(4)[:N]
    x = torch.stack([a, b, torch.zeros(N), torch.zeros(N)], 1)
    for loss, n_out in (("bce", 1), ("ce", 3)):
        model = _logit_model(n_out)
        y = (torch.arange(N) % 3 == 0).float()[:, None] if loss == "bce" else torch.arange(N) % 3
        with torch.no_grad():
            logits = model(x)
        assert logits.abs().max() >= max(values)  # the extremes are really there
        f = torch.nn.functional.binary_cross_entropy_with_logits if loss == "bce" else torch.nn.functional.cross_entropy
        want = torch.stack([f(logits[s : s + B], y[s : s + B]) for s in range(0, N, B)]).mean()
        assert _frozen_loss(model, x, y, loss, B, monkeypatch) == pytest.approx(float(want), rel=2e-6, abs=1e-7)


def test_without_a_compiler_fit_warns_once_and_uses_the_torch_path(monkeypatch, caplog):
    monkeypatch.setattr(kernel, "_lib", None)
    monkeypatch.setattr(kernel, "_error", None)
    monkeypatch.setenv("FCI_CC", "/nonexistent/cc")
    with caplog.at_level(logging.WARNING, logger="fci._kernel"):
        models = _models(6, (4, 5), 1)
        x, y = _data(2, 40, 6, 1, "bce")
        opt, _ = fit(MaskedMLPStack.from_models(models), x, y, TrainConfig(batch_size=10), range(1))
        fit(MaskedMLPStack.from_models(models), x, y, TrainConfig(batch_size=10), range(1))
    assert isinstance(opt, train._FitState)
    assert not kernel.available() and "no C compiler" in kernel.unavailable_reason()
    assert sum("kernel is unavailable" in r.getMessage() for r in caplog.records) == 1


def test_fci_kernel_0_turns_it_off(monkeypatch):
    monkeypatch.setenv("FCI_KERNEL", "0")
    assert not kernel.available()
    opt, _ = fit(MaskedMLPStack.from_models(_models(5, (3,), 1)), *_data(1, 20, 5, 1, "bce"), TrainConfig(batch_size=8), range(1))
    assert isinstance(opt, train._FitState)


@pytest.mark.parametrize("use_kernel", [True, False])
def test_class_ids_out_of_range_are_named(use_kernel, monkeypatch):
    monkeypatch.setattr(train, "KERNEL", use_kernel)
    x, y = _data(1, 20, 5, 3, "ce")
    y[0, 4] = 3
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 3\)"):
        fit(MaskedMLPStack.from_models(_models(5, (4,), 3)), x, y, TrainConfig(batch_size=8), range(1), loss="ce")
