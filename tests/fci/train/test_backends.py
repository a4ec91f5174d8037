"""The backends of `fci.train.fit` against each other and against the
reference (autograd) backend, their selection (`auto`), their refusals, and the
provenance every trained model records."""

from __future__ import annotations

import typing

import pytest
import torch

from fci.models.mlp import MaskedMLP, MaskedMLPStack
from fci.store import Store
from fci.train import (
    BackendUnavailable,
    FitState,
    TrainConfig,
    auto_backend,
    backend_names,
    backends_of,
    fit,
    load_fpe_result,
    run_fpe,
)
from fci.train.backends.kernel import library as kernel
from tests.helpers import assert_trained_alike, random_masks, tiny_spec

needs_kernel = pytest.mark.skipif(not kernel.available(), reason=f"the C kernel is unavailable: {kernel.unavailable_reason()}")
FAST = [pytest.param("kernel", marks=needs_kernel), "torch"]


def _models(n_in, hidden, n_out, seed=0):
    return [random_masks(MaskedMLP(n_in, h, n_out, seed=seed + i), seed=50 + seed + i, p=0.7) for i, h in enumerate(hidden)]


def _data(M, N, n_in, n_out, loss, seed=0, binary=True):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(M, N, n_in, generator=g) < 0.5).to(torch.uint8) if binary else torch.randn(M, N, n_in, generator=g)
    y = (torch.rand(M, N, n_out, generator=g) < 0.5).to(torch.uint8) if loss == "bce" else torch.randint(0, n_out, (M, N), generator=g)
    return x, y


CASES = {
    "wide-adam": (10, (3, 17, 40), 1, "bce", TrainConfig(lr=0.02, batch_size=20), True),
    "deep-adam-wd": (9, ((8, 3, 6), (20, 4, 2), (5, 2, 9)), 3, "bce", TrainConfig(lr=0.02, batch_size=13, weight_decay=0.01), True),
    "many-classes-sgd-real": (6, (5, 12), 21, "ce", TrainConfig(lr=0.1, batch_size=11, optimizer="sgd", weight_decay=0.02), False),
    "ce-adam-binary": (37, ((6, 5), (9, 9)), 4, "ce", TrainConfig(lr=0.01, batch_size=32), True),
    "sgd-bce-real": (8, (4, 9), 2, "bce", TrainConfig(lr=0.05, batch_size=16, optimizer="sgd"), False),
}


def _run(models, x, y, cfg, loss, backend):
    """Two fits, a mask changed between them (moments under it must clear), continued."""
    stack = MaskedMLPStack.from_models(models)
    state, l1 = fit(stack, x, y, cfg, range(3), loss=loss, backend=backend)
    with torch.no_grad():
        stack.weight_mask(0)[:, :2, :3] = 0
        stack.weights[0][:, :2, :3] = 0
    _, l2 = fit(stack, x, y, cfg, range(3, 5), loss=loss, optimizer=state)
    return stack, torch.cat([l1, l2], 1), state


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("case", list(CASES))
def test_every_backend_agrees_with_the_reference(case, backend):
    n_in, hidden, n_out, loss, cfg, binary = CASES[case]
    models = _models(n_in, hidden, n_out)
    x, y = _data(len(models), 101, n_in, n_out, loss, binary=binary)
    s, ls, state = _run(models, x, y, cfg, loss, backend)
    r, lr, _ = _run(models, x, y, cfg, loss, "reference")
    assert state.provenance["backend"] == backend
    assert torch.allclose(ls, lr, atol=3e-5), (ls - lr).abs().max()
    assert_trained_alike(s, r, atol=3e-4)


def _first_model(backend, models, x, y, workers):
    stack = MaskedMLPStack.from_models(models)
    fit(stack, x, y, TrainConfig(lr=0.03, batch_size=16), range(3), backend=backend, workers=workers)
    return stack.to_models()[0]


@pytest.mark.parametrize("backend", ["kernel", "torch", "reference"])
def test_results_are_bit_identical_across_thread_counts(backend):
    if backend == "kernel" and not kernel.available():
        pytest.skip(f"the C kernel is unavailable: {kernel.unavailable_reason()}")
    models = _models(12, (5, 16, 3, 40, 9, 5) * 6, 1, seed=3)
    x, y = _data(len(models), 90, 12, 1, "bce", seed=4)
    one, two = (_first_model(backend, models, x, y, w) for w in (1, 2))
    for a, b in zip(one.weights, two.weights):
        assert torch.equal(a, b)


@needs_kernel
def test_kernel_results_are_bit_identical_across_stack_mates():
    """The kernel runs each model at its own sizes; torch and reference pad
    every model to the stack's widest, so their float sums (and roundings)
    follow the stack: they agree across stack mates to ~1e-7, not bit for bit."""
    models = _models(12, (5, 16, 3, 40, 9, 5), 1, seed=3)
    x, y = _data(len(models), 90, 12, 1, "bce", seed=4)
    alone = _first_model("kernel", models[:1], x[:1], y[:1], 1)
    mates = _first_model("kernel", models, x, y, 2)
    for a, b in zip([*alone.weights, *alone.biases], [*mates.weights, *mates.biases]):
        assert torch.equal(a, b)
    for backend in ("torch", "reference"):
        a, b = _first_model(backend, models[:1], x[:1], y[:1], 1), _first_model(backend, models, x, y, 1)
        for p, q in zip(a.weights, b.weights):
            assert torch.allclose(p, q, atol=1e-6)


def test_a_run_continues_only_on_its_own_backend_instance():
    from fci.train import TorchBackend

    stack = MaskedMLPStack.from_models(_models(6, (4, 5), 1))
    x, y = _data(2, 20, 6, 1, "bce")
    mine = TorchBackend(min_slice=1)
    state, _ = fit(stack, x, y, TrainConfig(batch_size=8), range(1), backend=mine)
    fit(stack, x, y, TrainConfig(batch_size=8), range(1, 2), optimizer=state, backend=mine)
    with pytest.raises(ValueError, match="another 'torch' backend instance"):
        fit(stack, x, y, TrainConfig(batch_size=8), range(2, 3), optimizer=state, backend=TorchBackend())


def test_auto_is_a_pure_function_of_the_machine_and_the_stack():
    stack = MaskedMLPStack.from_models(_models(6, (4, 5), 1))
    cfg = TrainConfig(batch_size=8)
    picks = {auto_backend(stack, cfg).name for _ in range(5)}
    assert len(picks) == 1
    want = "kernel" if kernel.available() else "torch"
    assert picks == {want}
    x, y = _data(2, 20, 6, 1, "bce")
    assert {fit(stack, x, y, cfg, range(1))[0].provenance["backend"] for _ in range(3)} == {want}
    assert auto_backend(stack.double(), cfg).name == "torch"  # float64: the kernel cannot, torch can


def test_a_named_backend_that_cannot_run_says_why():
    stack = MaskedMLPStack.from_models(_models(6, (4, 5), 1)).double()
    x, y = _data(2, 20, 6, 1, "bce")
    with pytest.raises(BackendUnavailable, match="backend 'kernel' cannot train this stack: it trains float32 stacks"):
        fit(stack, x, y, TrainConfig(batch_size=8), range(1), backend="kernel")
    with pytest.raises(ValueError, match=r"unknown backend 'cuda-graph'; known: kernel, torch, reference"):
        fit(stack, x, y, TrainConfig(batch_size=8), range(1), backend="cuda-graph")
    assert backend_names() == ["kernel", "torch", "reference"]


def test_fit_returns_what_its_annotation_says():
    hints = typing.get_type_hints(fit)
    assert hints["return"] == tuple[FitState, torch.Tensor]
    stack = MaskedMLPStack.from_models(_models(6, (4,), 1))
    x, y = _data(1, 20, 6, 1, "bce")
    for backend in ["torch", "reference"] + (["kernel"] if kernel.available() else []):
        state, losses = fit(stack, x, y, TrainConfig(batch_size=8), range(2), backend=backend)
        assert isinstance(state, FitState) and losses.shape == (1, 2) and losses.device.type == "cpu"
    own = torch.optim.SGD(stack.parameters(), lr=0.01)
    state, _ = fit(stack, x, y, TrainConfig(batch_size=8), range(1), optimizer=own)
    assert isinstance(state, FitState) and state.optimizer is own and state.backend.name == "reference"


def test_provenance_is_written_to_the_store_and_read_back(tmp_path):
    store = Store(tmp_path)
    spec = tiny_spec(expansions=(("random", 2),))
    (res,) = run_fpe([spec], device="cpu", store=store, backend="torch")
    for r in (res.parent, res.dense, res.children[("random", 2)]):
        p = r.provenance
        assert p["backend"] == "torch" and p["torch"] == torch.__version__ and p["device"] == "cpu"
        assert "cpu_features" in p and "kernel_build" in p
    back = load_fpe_result(store, spec)
    assert back.dense.provenance == res.dense.provenance
    assert back.parent.provenance == res.parent.provenance
    assert back.children[("random", 2)].provenance == res.children[("random", 2)].provenance
    assert backends_of([back.dense.provenance, back.children[("random", 2)].provenance]) == ["torch"]
    assert backends_of([{}, {"backend": "kernel", "kernel_isa": "avx2"}]) == ["kernel (avx2)", "unknown"]


@needs_kernel
def test_kernel_provenance_names_its_build():
    (res,) = run_fpe([tiny_spec(expansions=())], device="cpu", backend="kernel")
    p = res.dense.provenance
    lib = kernel.load()
    assert p["backend"] == "kernel" and p["kernel_build"] == lib.build_id and p["kernel_isa"] == lib.isa


def test_results_print_one_line_per_model():
    (res,) = run_fpe([tiny_spec(expansions=(("clause", 2), ("random", 2)))], device="cpu")
    lines = repr(res).splitlines()
    assert len(lines) == 1 + 4  # header, parent, dense, two children
    assert "random x2" in lines[-1] and f"nnz {res.children[('random', 2)].nnz:>6}" in lines[-1]
    assert f"test acc {res.dense.test_accuracy:.4f}" in lines[2]


def test_off_the_cpu_auto_picks_the_torch_backend_and_the_kernel_says_why_not():
    """The GPU's choice, checked without a GPU: a stack on another device (meta
    here) gets the torch backend, which trains the whole stack as one slice
    there; the kernel refuses, naming the device."""
    stack = MaskedMLPStack.from_models(_models(6, (4, 5), 1)).to("meta")
    cfg = TrainConfig(batch_size=8)
    assert auto_backend(stack, cfg).name == "torch"
    from fci.train import KernelBackend
    from fci.train.backends.torch import plan_slices

    assert "it trains on the CPU, the stack is on meta" in KernelBackend().why_not(stack, cfg, "bce")
    from fci.train import TorchBackend

    assert plan_slices(stack, 8, 4, TorchBackend(min_slice=1)) == [(None, [6, 5, 1])]


def test_a_study_whose_models_mix_backends_says_so(tmp_path, capsys):
    """summary.json lists the backends that made the study's models and flags a
    mix; the console warns. One stored entry is re-labelled as made by another
    backend, then the study reruns from the store."""
    import json

    from analyses.superposition_sweep import main

    args = ["--tiny", "--device", "cpu", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "data")]
    assert main(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["run"]["mixed_backends"] is False and len({b.split(" ")[0] for b in summary["run"]["backends"]}) == 1
    entry = sorted(p for p in (tmp_path / "data" / "store").iterdir() if not p.name.startswith("."))[0] / "metrics.json"
    m = json.loads(entry.read_text())
    m["provenance"] = {**m["provenance"], "backend": "reference", "kernel_isa": None}
    entry.write_text(json.dumps(m))
    sums_path = entry.parent / "checksums.json"  # a deliberate relabel, not damage: record its checksum
    sums = json.loads(sums_path.read_text())
    import hashlib

    sums["files"]["metrics.json"] = {"bytes": entry.stat().st_size, "sha256": hashlib.sha256(entry.read_bytes()).hexdigest()}
    sums_path.write_text(json.dumps(sums))
    capsys.readouterr()
    assert main(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["run"]["mixed_backends"] is True and "reference" in summary["run"]["backends"]
    assert "trained by different backends" in capsys.readouterr().out


def test_the_torch_backend_never_reads_the_device_inside_an_epoch(monkeypatch):
    """On a GPU, a value read back by Python inside the epoch loop (.item(), .cpu(),
    a branch on a tensor) would make every step wait for the device. Checked here
    on the CPU, where the logic is the same: while an epoch runs, no tensor is
    read back, for BCE and CE, a full and a partial last batch, Adam and SGD."""
    from fci.train.backends import torch as torch_backend

    inside = []
    original = torch_backend._epoch

    def watched(*args, **kw):
        inside.append(True)
        try:
            return original(*args, **kw)
        finally:
            inside.pop()

    def forbid(name):
        method = getattr(torch.Tensor, name)

        def guard(self, *args, **kw):
            assert not inside, f"Tensor.{name} called inside an epoch"
            return method(self, *args, **kw)
        return guard

    monkeypatch.setattr(torch_backend, "_epoch", watched)
    for name in ("item", "cpu", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, forbid(name))
    step, steps = torch_backend._flat_step, []
    monkeypatch.setattr(torch_backend, "_flat_step", lambda *a, **k: (steps.append(bool(inside)), step(*a, **k))[1])
    for loss, n_out, cfg in (("bce", 1, TrainConfig(batch_size=16)), ("ce", 3, TrainConfig(batch_size=7, optimizer="sgd"))):
        x, y = _data(3, 30, 6, n_out, loss)
        fit(MaskedMLPStack.from_models(_models(6, (4, 5, 3), n_out)), x, y, cfg, range(2), loss=loss, backend="torch")
    assert steps == [True] * (2 * 2 + 2 * 5)  # every step ran under the guard
    inside.append(True)
    with pytest.raises(AssertionError, match="Tensor.item called inside an epoch"):  # and the guard bites
        torch.ones(1).item()


def test_cuda_graphs_asked_for_off_the_gpu_say_why_and_change_nothing():
    from fci.train import TorchBackend

    models = _models(6, (4, 5), 1)
    x, y = _data(2, 40, 6, 1, "bce")
    runs = []
    for backend in (TorchBackend(cuda_graphs=True), TorchBackend()):
        stack = MaskedMLPStack.from_models(models)
        state, losses = fit(stack, x, y, TrainConfig(batch_size=16), range(2), backend=backend)
        runs.append((stack, losses, state))
    (a, la, sa), (b, lb, sb) = runs
    assert sa.provenance["cuda_graphs"] is False and "need a CUDA device, the stack is on cpu" in sa.provenance["cuda_graphs_why_not"]
    assert "cuda_graphs" not in sb.provenance
    assert torch.equal(la, lb) and all(torch.equal(p, q) for p, q in zip(a.weights, b.weights))
