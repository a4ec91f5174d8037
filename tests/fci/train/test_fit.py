"""Every backend of `fci.train.fit` (the C kernel, the torch path, the autograd
reference) against the plainest reference there is: each model alone,
`MaskedMLP.forward` through autograd, a torch optimiser, and the same minibatch
order (`epoch_perms`). Speed is measured by `python -m benchmarks.trainer`, not here."""

from __future__ import annotations

import pytest
import torch

from fci.models.mlp import MaskedMLP, MaskedMLPStack
from fci.train import TorchBackend, TrainConfig, fit, run_fpe
from fci.train.maths import epoch_perms, make_optimizer
from tests.helpers import random_masks, tiny_spec


@pytest.fixture(params=["kernel", "torch", "reference"])
def path(request):
    """Run a test on every backend (the kernel where it builds)."""
    from fci.train.backends.kernel import library as kernel

    if request.param == "kernel" and not kernel.available():
        pytest.skip(f"the C kernel is unavailable here: {kernel.unavailable_reason()}")
    return request.param


def _random_masks(model: MaskedMLP, seed: int, p: float = 0.7) -> MaskedMLP:
    return random_masks(model, seed, p)


def _reference(model: MaskedMLP, x, y, cfg: TrainConfig, epochs: range, loss: str = "bce"):
    """One model, autograd, torch optimiser, the trainer's minibatch order.
    Returns the trained copy and its mean loss per epoch."""
    model = model.copy()
    opt = make_optimizer(model.parameters(), cfg)
    perms = epoch_perms(cfg.shuffle_seed, epochs, x.shape[0], torch.device("cpu"))
    x = x.float()
    curve = []
    for perm in perms:
        batch_losses = []
        for s in range(0, x.shape[0], cfg.batch_size):
            idx = perm[s : s + cfg.batch_size]
            logits = model(x[idx])
            if loss == "bce":
                l = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx].float())
            else:
                l = torch.nn.functional.cross_entropy(logits, y[idx].long())
            opt.zero_grad()
            l.backward()
            opt.step()
            batch_losses.append(l.item())
        curve.append(sum(batch_losses) / len(batch_losses))
    return model, curve


def _assert_close(trained: MaskedMLP, ref: MaskedMLP, atol: float = 2e-5):
    for (w, b), (rw, rb) in zip(trained.effective_weights(), ref.effective_weights()):
        assert torch.allclose(w, rw, atol=atol), (w - rw).abs().max()
        assert torch.allclose(b, rb, atol=atol), (b - rb).abs().max()


def _data(n_models: int, n: int, n_out: int, N: int = 100, loss: str = "bce", seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n_models, N, n, generator=g) < 0.5).to(torch.uint8)
    if loss == "bce":
        w = torch.randn(n_models, n, n_out, generator=g)
        y = (torch.bmm(x.float() - 0.5, w) > 0).to(torch.uint8)
    else:
        y = torch.bmm(x.float(), torch.randn(n_models, n, n_out, generator=g)).argmax(2)
    return x, y


@pytest.mark.parametrize(
    "hidden, n_out, loss, cfg",
    [
        ((3, 7, 5), 1, "bce", TrainConfig(lr=0.03, batch_size=32, weight_decay=0.01)),  # mixed widths, partial last batch
        (([5, 4], [3, 6], [6, 2]), 3, "bce", TrainConfig(lr=0.02, batch_size=25)),  # two hidden layers, multi-output
        ((6, 4), 4, "ce", TrainConfig(lr=0.02, batch_size=16)),  # multi-class
        ((5, 8), 1, "bce", TrainConfig(lr=0.1, batch_size=20, optimizer="sgd", weight_decay=0.05)),
    ],
)
def test_fit_matches_the_per_model_reference(hidden, n_out, loss, cfg, path):
    n = 9
    models = [_random_masks(MaskedMLP(n, h, n_out, seed=i), seed=10 + i) for i, h in enumerate(hidden)]
    x, y = _data(len(models), n, n_out, loss=loss)
    stack = MaskedMLPStack.from_models(models)
    epochs = range(4)
    _, losses = fit(stack, x, y, cfg, epochs, loss=loss, backend=path)
    for i, (m, trained) in enumerate(zip(models, stack.to_models())):
        ref, curve = _reference(m, x[i], y[i], cfg, epochs, loss)
        _assert_close(trained, ref)
        assert losses[i].tolist() == pytest.approx(curve, abs=1e-5)
        # masks held: nothing under a mask moved off zero, padding stayed padding
        for l in range(trained.n_layers):
            assert torch.all(trained.weights[l][trained.weight_mask(l) == 0] == 0)
            assert torch.all(trained.biases[l][trained.bias_mask(l) == 0] == 0)
        assert trained.hidden == m.hidden


def test_continuing_with_the_returned_optimizer_equals_one_run(path):
    models = [MaskedMLP(8, h, 1, seed=h) for h in (4, 6)]
    x, y = _data(2, 8, 1, N=96)
    cfg = TrainConfig(lr=0.02, batch_size=32)
    one = MaskedMLPStack.from_models(models)
    _, l_one = fit(one, x, y, cfg, range(6), backend=path)
    two = MaskedMLPStack.from_models(models)
    opt, l_a = fit(two, x, y, cfg, range(3), backend=path)
    _, l_b = fit(two, x, y, cfg, range(3, 6), optimizer=opt)
    for a, b in zip(one.parameters(), two.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(l_one, torch.cat([l_a, l_b], 1))
    with pytest.raises(ValueError, match="different stack"):
        fit(MaskedMLPStack.from_models(models), x, y, cfg, range(1), optimizer=opt)


def test_a_callers_own_torch_optimizer_still_works():
    m = _random_masks(MaskedMLP(8, 5, 1, seed=1), seed=2)
    x, y = _data(1, 8, 1)
    cfg = TrainConfig(lr=0.02, batch_size=32)
    stack = MaskedMLPStack.from_models([m])
    opt = torch.optim.Adam(stack.parameters(), lr=cfg.lr, foreach=True)
    fit(stack, x, y, cfg, range(3), optimizer=opt)
    ref, _ = _reference(m, x[0], y[0], cfg, range(3))
    _assert_close(stack.to_models()[0], ref)


def test_uint8_and_float_data_train_identically(path):
    models = [MaskedMLP(8, h, 1, seed=h) for h in (3, 5)]
    x, y = _data(2, 8, 1)
    cfg = TrainConfig(lr=0.02, batch_size=32)
    a, b = MaskedMLPStack.from_models(models), MaskedMLPStack.from_models(models)
    fit(a, x, y, cfg, range(2), backend=path)
    fit(b, x.float(), y.float(), cfg, range(2), backend=path)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_run_fpe_with_auto_chunks_matches_explicit_chunks():
    specs = [tiny_spec(seed=s, hidden=h) for s, h in ((0, 4), (1, 6), (2, 4))]
    auto = run_fpe(specs, device="cpu")  # max_stack="auto"
    one_by_one = run_fpe(specs, device="cpu", max_stack=1)
    for r, q in zip(auto, one_by_one):
        _assert_close(r.dense.model, q.dense.model)
        for cond in r.children:
            _assert_close(r.children[cond].model, q.children[cond].model)


def test_continued_fit_sees_data_changed_in_place(path):
    """The prepared data is reused across continued fits only while x and y are unmodified."""
    models = [MaskedMLP(8, 4, 1, seed=0)]
    x, y = _data(1, 8, 1, N=64)
    x2 = x.clone()
    x2[0, :32] = 1 - x2[0, :32]
    cfg = TrainConfig(lr=0.02, batch_size=32)
    a = MaskedMLPStack.from_models(models)
    opt, _ = fit(a, x, y, cfg, range(2), backend=path)
    x[0, :32] = 1 - x[0, :32]  # in place: now equal to x2
    fit(a, x, y, cfg, range(2, 4), optimizer=opt)
    b = MaskedMLPStack.from_models(models)
    x, _ = _data(1, 8, 1, N=64)
    opt, _ = fit(b, x, y, cfg, range(2), backend=path)
    fit(b, x2, y, cfg, range(2, 4), optimizer=opt)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_chunks_are_balanced_and_auto_stack_size_follows_memory():
    from fci.train import auto_max_stack, trial_bytes
    from fci.train.schedule import balanced_chunks

    assert [len(c) for c in balanced_chunks(list(range(10)), 4)] == [3, 3, 4]
    assert [len(c) for c in balanced_chunks(list(range(8)), 4)] == [4, 4]
    assert sum(balanced_chunks(list(range(7)), 100), []) == list(range(7))
    small, big = tiny_spec(), tiny_spec(n_train=100_000)
    assert trial_bytes(big) > 10 * trial_bytes(small)
    assert 1 <= auto_max_stack([big], "cpu") <= auto_max_stack([small], "cpu") <= 1024
    with pytest.raises(ValueError, match="max_stack"):
        run_fpe([small], device="cpu", max_stack="lots")


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("loss,n_out,hidden", [("bce", 1, (3, 9, 5, 7, 4, 8)), ("ce", 4, ((4, 3), (6, 2), (2, 5), (5, 5)))])
def test_sliced_parallel_fit_equals_one_stack(workers, loss, n_out, hidden):
    """The torch backend cuts a CPU stack into width-sorted slices trained on
    worker threads; every model must come out as the one-stack run has it."""
    models = [_random_masks(MaskedMLP(9, h, n_out, seed=i), seed=20 + i) for i, h in enumerate(hidden)]
    x, y = _data(len(models), 9, n_out, loss=loss)
    cfg = TrainConfig(lr=0.03, batch_size=24)
    whole = MaskedMLPStack.from_models(models)
    one_slice = TorchBackend(min_slice=10_000)
    opt, l_whole = fit(whole, x, y, cfg, range(3), loss=loss, backend=one_slice)
    assert len(opt.slices) == 1
    fit(whole, x, y, cfg, range(3, 5), loss=loss, optimizer=opt)

    sliced = MaskedMLPStack.from_models(models)
    opt, l_a = fit(sliced, x, y, cfg, range(3), loss=loss, backend=TorchBackend(min_slice=1), workers=workers)
    assert 1 < len(opt.slices) <= 4  # a fixed count, whatever the workers
    rows = sorted(r for flat, _ in opt.slices for r in flat.rows.tolist())
    assert rows == list(range(len(models)))  # the slices partition the stack
    for flat, _ in opt.slices:  # each slice is only as wide as its widest model
        assert flat.sizes[1:-1] == [max(models[r].hidden[l] for r in flat.rows.tolist()) for l in range(len(flat.sizes) - 2)]
    _, l_b = fit(sliced, x, y, cfg, range(3, 5), loss=loss, optimizer=opt, workers=workers)  # continuing a sliced run
    assert torch.allclose(torch.cat([l_a, l_b], 1)[:, :3], l_whole, atol=1e-6)
    for a, b in zip(whole.to_models(), sliced.to_models()):
        _assert_close(a, b, atol=1e-6)
        assert a.hidden == b.hidden
    # padding stays zero in the stack
    for l in range(sliced.n_layers):
        assert torch.all(sliced.weights[l][sliced.weight_mask(l) == 0] == 0)


def test_a_mask_changed_between_fits_holds_despite_optimizer_moments(path):
    """Continuing a run after masking weights that already have Adam moments:
    the masked weights must stay exactly zero (fit clears their optimiser state)."""
    models = [MaskedMLP(8, h, 1, seed=h) for h in (4, 6)]
    x, y = _data(2, 8, 1, N=96)
    cfg = TrainConfig(lr=0.05, batch_size=32)
    stack = MaskedMLPStack.from_models(models)
    opt, _ = fit(stack, x, y, cfg, range(3), backend=path)
    with torch.no_grad():
        drop = torch.zeros_like(stack.weight_mask(0), dtype=torch.bool)
        drop[:, :2, :3] = True  # trained weights with non-zero moments
        stack.weight_mask(0).masked_fill_(drop, 0)
        stack.weights[0].masked_fill_(drop, 0)
    fit(stack, x, y, cfg, range(3, 6), optimizer=opt)
    assert torch.all(stack.weights[0][drop] == 0)
    assert not torch.all(stack.weights[0][~drop & (stack.weight_mask(0) > 0)] == 0)


def test_flat_adam_steps_exactly_as_torch_fused_adam():
    """fit's optimiser calls the fused Adam kernel directly after its first step;
    the update must be torch's, bit for bit."""
    from fci.train.backends.torch import FlatAdam

    g = torch.Generator().manual_seed(0)
    p1 = torch.randn(500, generator=g)
    p2 = p1.clone()
    p1.grad, p2.grad = torch.zeros_like(p1), torch.zeros_like(p2)
    ref = torch.optim.Adam([p1], lr=0.01, weight_decay=0.01, fused=True)
    ours = FlatAdam([p2], lr=0.01, weight_decay=0.01, fused=True)
    for _ in range(12):
        grad = torch.randn(500, generator=g)
        p1.grad.copy_(grad)
        p2.grad.copy_(grad)
        ref.step()
        ours.step()
    assert torch.equal(p1, p2)
    assert torch.equal(ref.state[p1]["exp_avg"], ours.state[p2]["exp_avg"])
    assert float(ours.state[p2]["step"]) == 12
