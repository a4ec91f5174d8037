"""fci's C training kernel (`fci.train.backends.kernel.library`, `fitkernel.c`) against fit's torch
path, and the properties only the kernel has: a model's result does not depend on
its stack mates or the thread count, and the loss it reports is exact at extreme
logits. Speed is measured by `python -m benchmarks.trainer`, not here."""

from __future__ import annotations

import logging

import pytest
import torch

from fci.models.mlp import MaskedMLP, MaskedMLPStack
from fci.train import BackendUnavailable, FitState, TrainConfig, fit
from fci.train.backends.kernel import KernelState
from fci.train.backends.kernel import library as kernel
from fci.train.backends.torch import FlatState
from tests.helpers import assert_trained_alike, random_masks

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


def _train(models, x, y, cfg, loss, use_kernel, epochs=(3, 2), workers=None, backend=None):
    backend = backend or ("kernel" if use_kernel else "torch")
    stack = MaskedMLPStack.from_models(models)
    opt, l1 = fit(stack, x, y, cfg, range(epochs[0]), loss=loss, backend=backend, workers=workers)
    assert isinstance(opt, KernelState) == use_kernel
    _, l2 = fit(stack, x, y, cfg, range(epochs[0], sum(epochs)), loss=loss, optimizer=opt, workers=workers)
    return stack, torch.cat([l1, l2], 1)


CASES = {
    # widths past one vector block (16) and a single logit (stored output-major)
    "wide-bce": (10, (3, 17, 40), 1, "bce", TrainConfig(lr=0.02, batch_size=20)),
    # two hidden layers, the second narrow enough to be output-major, with ReLU; multi-output
    "deep-narrow": (9, ((8, 3), (20, 4), (5, 2)), 3, "bce", TrainConfig(lr=0.02, batch_size=13, weight_decay=0.01)),
    # more classes than one vector block holds, real-valued inputs, SGD
    "ce-many-classes": (6, (5, 12), 21, "ce", TrainConfig(lr=0.1, batch_size=11, optimizer="sgd", weight_decay=0.02)),
    "ce-adam": (7, ((6, 5), (9, 9)), 4, "ce", TrainConfig(lr=0.01, batch_size=32)),
    # two classes: few enough logits for the output-major last layer (lane-wise softmax over samples)
    "ce-two-classes": (8, (5, 12, 3), 2, "ce", TrainConfig(lr=0.05, batch_size=12, weight_decay=0.01)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_kernel_and_torch_path_train_alike(case):
    """Same models, data, minibatch orders and optimiser: the two paths agree to
    float rounding (batch sizes that are not a multiple of the kernel's sample
    group, a partial last batch, a continued run, masks)."""
    n_in, hidden, n_out, loss, cfg = CASES[case]
    models = _models(n_in, hidden, n_out)
    x, y = _data(len(models), 101, n_in, n_out, loss, binary=case != "ce-many-classes")
    k, lk = _train(models, x, y, cfg, loss, True)
    t, lt = _train(models, x, y, cfg, loss, False)
    assert torch.allclose(lk, lt, atol=2e-5), (lk - lt).abs().max()
    assert_trained_alike(k, t, atol=2e-4)  # nothing under a mask, padding included, moved off zero
    assert torch.equal(k.widths, t.widths)


@pytest.mark.parametrize("build", ["native", "vb16-s8", "vb4-s4"])
@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_a_models_result_depends_only_on_itself(build, loss):
    """Trained alone, or among wider stack mates on one or two threads, a model
    comes out bit for bit the same (the kernel runs each model at its own sizes):
    in this machine's build and in the 16-lane build that AVX-512 CPUs select
    (here lowered to this CPU's vectors), on 0/1 and real inputs, with an
    output-major last layer (one logit, two classes) and with wide logit rows."""
    from fci.train import KernelBackend

    backend = None if build == "native" else KernelBackend(march=None, extra_flags=VARIANTS[build][1], tag=build)
    for n_out, binary in ((1, True), (2, False)) if loss == "bce" else ((2, True), (11, False)):
        models = _models(12, (5, 16, 3, 40, 9, 5), n_out, seed=3)
        x, y = _data(len(models), 90, 12, n_out, loss, seed=4, binary=binary)
        cfg = TrainConfig(lr=0.03, batch_size=16)
        alone, l_alone = _train([models[0]], x[:1], y[:1], cfg, loss, True, backend=backend)
        for workers in (1, 2):
            mates, l_mates = _train(models, x, y, cfg, loss, True, workers=workers, backend=backend)
            a, b = alone.to_models()[0], mates.to_models()[0]
            for (w, bias), (w2, bias2) in zip(a.effective_weights(), b.effective_weights()):
                assert torch.equal(w, w2) and torch.equal(bias, bias2), (n_out, binary, workers)
            assert torch.equal(l_alone[0], l_mates[0])


def _frozen_loss(model, x, y, loss, batch):
    """The loss fit reports for epoch 0 when SGD barely moves (lr 1e-30): the
    initial model's mean batch loss."""
    stack = MaskedMLPStack.from_models([model])
    _, losses = fit(stack, x[None], y[None], TrainConfig(lr=1e-30, batch_size=batch, optimizer="sgd"), range(1), loss=loss,
                    backend="kernel")
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
def test_reported_loss_is_exact_at_any_logit(values):
    """The kernel's own vectorised exp and log1p (BCE) and softmax (CE): the loss
    it reports is torch's, computed by hand as the mean over batches of each
    batch's mean loss."""
    N, B = 40, 8
    z = torch.tensor(values)
    pad = torch.zeros(N)
    a = torch.cat([z, torch.zeros_like(z), pad]).repeat(4)[:N]
    b = torch.cat([torch.zeros_like(z), z, pad]).repeat(4)[:N]
    x = torch.stack([a, b, torch.zeros(N), torch.zeros(N)], 1)
    for loss, n_out in (("bce", 1), ("bce", 2), ("ce", 2), ("ce", 3)):
        model = _logit_model(n_out)
        if loss == "bce":
            y = torch.stack([torch.arange(N) % 3 == 0, torch.arange(N) % 2 == 0], 1).float()[:, :n_out]
        else:
            y = torch.arange(N) % n_out
        with torch.no_grad():
            logits = model(x)
        assert logits.abs().max() >= max(values)  # the extremes are really there
        f = torch.nn.functional.binary_cross_entropy_with_logits if loss == "bce" else torch.nn.functional.cross_entropy
        want = torch.stack([f(logits[s : s + B], y[s : s + B]) for s in range(0, N, B)]).mean()
        assert _frozen_loss(model, x, y, loss, B) == pytest.approx(float(want), rel=2e-6, abs=1e-7)


def test_without_a_compiler_auto_warns_once_and_uses_the_torch_path(monkeypatch, caplog):
    monkeypatch.setattr(kernel, "_native", None)
    monkeypatch.setattr(kernel, "_error", None)
    monkeypatch.setenv("FCI_CC", "/nonexistent/cc")
    with caplog.at_level(logging.WARNING, logger="fci.train.backends.kernel.library"):
        models = _models(6, (4, 5), 1)
        x, y = _data(2, 40, 6, 1, "bce")
        opt, _ = fit(MaskedMLPStack.from_models(models), x, y, TrainConfig(batch_size=10), range(1))
        fit(MaskedMLPStack.from_models(models), x, y, TrainConfig(batch_size=10), range(1))
        with pytest.raises(BackendUnavailable, match="backend 'kernel' cannot train this stack: no C compiler"):
            fit(MaskedMLPStack.from_models(models), x, y, TrainConfig(batch_size=10), range(1), backend="kernel")
    assert isinstance(opt, FlatState) and opt.provenance["backend"] == "torch"
    assert not kernel.available() and "no C compiler" in kernel.unavailable_reason()
    assert sum("kernel is unavailable" in r.getMessage() for r in caplog.records) == 1


def test_fci_kernel_0_turns_it_off(monkeypatch):
    monkeypatch.setenv("FCI_KERNEL", "0")
    assert not kernel.available()
    stack = MaskedMLPStack.from_models(_models(5, (3,), 1))
    opt, _ = fit(stack, *_data(1, 20, 5, 1, "bce"), TrainConfig(batch_size=8), range(1))
    assert isinstance(opt, FlatState)
    with pytest.raises(BackendUnavailable, match="FCI_KERNEL=0"):
        fit(stack, *_data(1, 20, 5, 1, "bce"), TrainConfig(batch_size=8), range(1), backend="kernel")


@pytest.mark.parametrize("backend", ["kernel", "torch", "reference"])
def test_class_ids_out_of_range_are_named(backend):
    x, y = _data(1, 20, 5, 3, "ce")
    y[0, 4] = 3
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 3\)"):
        fit(MaskedMLPStack.from_models(_models(5, (4,), 3)), x, y, TrainConfig(batch_size=8), range(1), loss="ce",
            backend=backend)


def test_kernel_constants_come_from_the_library():
    lib = kernel.load()
    assert lib.vb in (4, 8, 16) and 1 <= lib.s <= min(lib.vb, 8) and lib.max_layers >= 2
    assert lib.isa in ("avx512", "avx512-zen4", "avx2", "neon", "generic", "custom")
    stack = MaskedMLPStack.from_models(_models(7, (3, 11), 1))
    state, _ = fit(stack, *_data(2, 30, 7, 1, "bce"), TrainConfig(batch_size=8), range(1), backend="kernel")
    assert all(p % lib.vb == 0 for p in state.pad.tolist()[1:])
    assert state.provenance["kernel_build"] == lib.build_id and state.provenance["kernel_isa"] == lib.isa


def _call_args(state, x, y, perms, loss="bce", sgd=False):
    M, E = state.param.shape[0], perms.shape[0]
    return dict(sizes=state.sizes, pad=state.pad, omaj=state.omaj, param=state.param, mask=state.mask, m1=state.m1,
                m2=state.m2, x=x, y=y, perms=perms, losses=torch.zeros(M, E), loss=loss, sgd=sgd, lr=0.01, beta1=0.9,
                beta2=0.999, eps=1e-8, wd=0.0, step0=0, binary=False, batch=8, chunks=[(0, M)], workers=1)


def test_every_buffer_is_checked_at_the_boundary():
    """Wrong dtypes, shapes, missing Adam moments and out-of-range indices are
    refused with the buffer's name, before the kernel runs (no crash)."""
    lib = kernel.load()
    models = _models(6, (4, 5), 1)
    stack = MaskedMLPStack.from_models(models)
    x, y = _data(2, 24, 6, 1, "bce")
    sgd_state, _ = fit(stack, x, y, TrainConfig(batch_size=8, optimizer="sgd"), range(1), backend="kernel")
    xs, ys = x.float().contiguous(), y.float().contiguous()
    perms = torch.stack([torch.randperm(24)])
    kernel.call(lib, **_call_args(sgd_state, xs, ys, perms, sgd=True))  # well-formed: runs
    with pytest.raises(ValueError, match="m1"):  # Adam on a state allocated for SGD
        kernel.call(lib, **_call_args(sgd_state, xs, ys, perms, sgd=False))
    with pytest.raises(ValueError, match="kernel buffer x"):
        kernel.call(lib, **_call_args(sgd_state, xs[:, :10], ys, perms, sgd=True))
    with pytest.raises(ValueError, match="kernel buffer y"):
        kernel.call(lib, **_call_args(sgd_state, xs, ys.double(), perms, sgd=True))
    with pytest.raises(ValueError, match="kernel buffer perms"):
        kernel.call(lib, **_call_args(sgd_state, xs, ys, perms[:, :5], sgd=True))
    with pytest.raises(RuntimeError, match="minibatch order holds an index outside"):
        kernel.call(lib, **_call_args(sgd_state, xs, ys, perms + 5, sgd=True))
    args = _call_args(sgd_state, xs, ys, perms, sgd=True)
    args["pad"] = sgd_state.pad.clone()
    args["pad"][1] += 1  # not a multiple of the vector block
    with pytest.raises(RuntimeError, match="padded size"):
        kernel.call(lib, **args)
    args = _call_args(sgd_state, xs, ys, perms, sgd=True)
    args["omaj"] = torch.tensor([1, 0], dtype=torch.int32)  # the first layer output-major
    with pytest.raises(RuntimeError, match="only the last layer, of at most 4 outputs and after a hidden layer"):
        kernel.call(lib, **args)


@pytest.mark.parametrize("backend", ["kernel", "torch", "reference"])
def test_continuing_with_other_settings_or_backend_raises(backend):
    """A state continues only the run it belongs to: SGD -> Adam (the kernel
    once wrote P floats into a one-element moment buffer), another lr or weight
    decay, another stack or another backend all raise, naming what differs."""
    models = _models(6, (4, 5), 1)
    x, y = _data(2, 40, 6, 1, "bce")
    stack = MaskedMLPStack.from_models(models)
    sgd = TrainConfig(batch_size=8, optimizer="sgd", lr=0.05)
    state, _ = fit(stack, x, y, sgd, range(1), backend=backend)
    assert isinstance(state, FitState) and state.backend.name == backend
    for other, what in ((TrainConfig(batch_size=8), "optimizer 'sgd' -> 'adam'"),
                        (TrainConfig(batch_size=8, optimizer="sgd", lr=0.01), "lr 0.05 -> 0.01"),
                        (TrainConfig(batch_size=8, optimizer="sgd", lr=0.05, weight_decay=0.1), "weight_decay 0.0 -> 0.1")):
        with pytest.raises(ValueError, match=what):
            fit(stack, x, y, other, range(1, 2), optimizer=state)
    with pytest.raises(ValueError, match="different stack"):
        fit(MaskedMLPStack.from_models(models), x, y, sgd, range(1, 2), optimizer=state)
    other_backend = "torch" if backend != "torch" else "reference"
    with pytest.raises(ValueError, match=f"from the '{backend}' backend; it cannot continue on '{other_backend}'"):
        fit(stack, x, y, sgd, range(1, 2), optimizer=state, backend=other_backend)
    fit(stack, x, y, TrainConfig(batch_size=16, optimizer="sgd", lr=0.05), range(1, 2), optimizer=state)  # batch size may change


VARIANTS = {  # every vector width and sample group the build can select, on this machine
    "vb16-s8": (None, ("-DFCI_VB=16", "-DFCI_S=8")),
    "vb8-s8": (None, ("-DFCI_VB=8", "-DFCI_S=8")),
    "vb4-s4": (None, ("-DFCI_VB=4", "-DFCI_S=4")),
    "baseline": (None, ()),  # the compiler's default target: the generic path
    "native-no-avx512": ("native", ("-mno-avx512f",)),  # x86 with AVX-512: the AVX2 path
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_kernel_variant_trains_like_the_reference(variant):
    """Builds selected by other CPUs (block widths, sample groups, ISAs) compute
    the same step: checked here on this CPU against the reference backend,
    0/1 and real inputs, BCE and CE, narrow output-major and wide layers."""
    from fci.train import KernelBackend

    march, flags = VARIANTS[variant]
    backend = KernelBackend(march=march, extra_flags=flags, tag=variant)
    probe = MaskedMLPStack.from_models(_models(5, (3,), 1))
    why = backend.why_not(probe, TrainConfig(), "bce")
    if why is not None:
        pytest.skip(f"the {variant} build is not possible here: {why[:200]}")
    for n_in, hidden, n_out, loss, cfg in (CASES["wide-bce"], CASES["deep-narrow"], CASES["ce-many-classes"],
                                           CASES["ce-two-classes"]):
        models = _models(n_in, hidden, n_out)
        x, y = _data(len(models), 57, n_in, n_out, loss, binary=loss == "bce")
        k, lk = _train(models, x, y, cfg, loss, True, backend=backend)
        r, lr = _train(models, x, y, cfg, loss, False, backend="reference")
        assert torch.allclose(lk, lr, atol=3e-5), (variant, (lk - lr).abs().max())
        for l in range(k.n_layers):
            assert torch.allclose(k.weights[l], r.weights[l], atol=3e-4), (variant, l)


def test_binary_layout_by_hand_and_its_buffers_are_checked():
    """0/1 data reaches the kernel as nibble codes (bit j of byte g = x[4g + j]),
    never as a float copy; the kernel refuses short codes and a code byte past 15."""
    x = torch.tensor([[[1, 0, 1, 1, 0, 1]], [[0, 0, 0, 0, 1, 1]]], dtype=torch.uint8)  # (M=2, N=1, n=6)
    codes = kernel.binary_layout(x)
    assert codes.tolist() == [[[0b1101, 0b10]], [[0, 0b11]]]
    lib = kernel.load()
    stack = MaskedMLPStack.from_models(_models(6, (4, 5), 1))
    xb, yb = _data(2, 24, 6, 1, "bce")
    state, _ = fit(stack, xb, yb, TrainConfig(batch_size=8), range(1), backend="kernel")
    assert state._data[4][0] is None  # no float copy of 0/1 data
    codes = kernel.binary_layout(xb)
    args = _call_args(state, None, yb.float().contiguous(), torch.stack([torch.randperm(24)]))
    kernel.call(lib, **{**args, "binary": True, "codes": codes, "n_samples": 24})
    with pytest.raises(ValueError, match="kernel buffer codes"):
        kernel.call(lib, **{**args, "binary": True, "codes": codes[:, :10], "n_samples": 24})
    bad = codes.clone()
    bad[1, 23, 0] = 16
    with pytest.raises(RuntimeError, match="code byte exceeds 15"):
        kernel.call(lib, **{**args, "binary": True, "codes": bad, "n_samples": 24})


def test_the_build_that_trains_a_stack_follows_its_widths_only_on_zen4():
    """On Zen 4 the native build has 8-lane blocks; a stack with few narrow models
    trains in the 16-lane build. Elsewhere every stack uses the native build.
    Either way the choice is a pure function of the machine and the widths, and
    the run records the build it used."""
    from fci.train import KernelBackend

    default = KernelBackend()
    backend = KernelBackend(wide_lanes=True)
    narrow = MaskedMLPStack.from_models(_models(6, (4, 20, 5, 30), 1))  # half the models <= 8
    wide = MaskedMLPStack.from_models(_models(6, (20, 32, 17, 9), 1))
    native = kernel.load()
    assert default.library_for(wide) is native  # by default: one build, whatever the stack mix
    assert backend.library_for(narrow) is native
    picked = backend.library_for(wide)
    assert backend.library_for(wide) is picked
    if native.isa == "avx512-zen4":
        assert picked.vb == 16 and picked.isa == "avx512-zen4-vb16"
    else:
        assert picked is native
    x, y = _data(4, 30, 6, 1, "bce")
    state, _ = fit(wide, x, y, TrainConfig(batch_size=8), range(1), backend=backend)
    assert state.provenance["kernel_build"] == picked.build_id and state.provenance["kernel_vb"] == picked.vb
    r, _ = _train(_models(6, (20, 32, 17, 9), 1), x, y, TrainConfig(batch_size=8), "bce", False, backend="reference")
    k, _ = _train(_models(6, (20, 32, 17, 9), 1), x, y, TrainConfig(batch_size=8), "bce", True, backend=backend)
    for l in range(k.n_layers):
        assert torch.allclose(k.weights[l], r.weights[l], atol=3e-4)


def test_by_default_a_wide_model_trains_the_same_alone_and_among_narrow_mates():
    """Alone, a width-20 model is a stack without narrow models; among these mates
    most are narrow. A build chosen by the stack's widths would train it in two
    builds; the default backend uses one, so it comes out bit for bit the same."""
    models = _models(6, (20, 4, 5, 8, 6, 7), 1, seed=2)
    x, y = _data(len(models), 40, 6, 1, "bce", seed=3)
    cfg = TrainConfig(lr=0.03, batch_size=8)
    alone, _ = _train(models[:1], x[:1], y[:1], cfg, "bce", True)
    mixed, _ = _train(models, x, y, cfg, "bce", True)
    for (w, b), (w2, b2) in zip(alone.to_models()[0].effective_weights(), mixed.to_models()[0].effective_weights()):
        assert torch.equal(w, w2) and torch.equal(b, b2)
