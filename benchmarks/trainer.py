"""Throughput of fci's trainer (`fci.train.fit`) beside what a competent PyTorch
user writes, and how it scales.

    python -m benchmarks.trainer [--device cpu|cuda] [--quick] [--models M] [--json PATH] [--markdown]
    python -m benchmarks.trainer --scaling [--device cpu|cuda] [--quick]
    python -m benchmarks.trainer --probe

Reference workload: 256 models of the Boolean DNF task (8 clauses of 3 literals,
n = 24 inputs, one output), hidden widths 4-16 mixed in one stack, each model
with its own 4096 training samples (32 distinct tasks, dealt round-robin),
minibatch 256, Adam (lr 0.01).

Trainers, in one alternating run (every round times each once, so all see the
same machine load; rates are medians over rounds):

- fci `fit` with `backend="auto"`, and every other fci backend that can run
  here (the kernel on one thread, the torch backend, the reference; on an x86
  CPU with AVX-512, the kernel's AVX2 build too, `-mno-avx512f`: the other
  ISA, measured on this machine; on Zen 4, the 16-lane AVX-512 build that the
  kernel does not choose there; on a GPU, the torch backend with CUDA graphs);
- peer (1), a padded bmm stack: all models' weights in (M, n, H) tensors padded
  to the widest model and masked, one autograd forward/backward per minibatch
  and one fused `torch.optim.Adam` step over the stacked tensors;
- peer (2), `torch.func`: `vmap(grad(loss))` over stacked module state
  (`stack_module_state` of padded, masked `nn.Sequential`s), fused Adam;
- peer (3), the per-model loop: `nn.Sequential` + `torch.optim.Adam` per model,
  data resident, a fresh `randperm` per epoch, one intra-op thread (its fastest
  setting for tiny models); timed on a subset and reported per model-epoch;
- this machine's sgemm (2048 x 2048 at torch's thread count; 8192 x 8192 on a
  GPU), timed in every round like the trainers.

Peers (1) and (2) run at whichever of 1 or torch's default thread count was
faster in a short probe before the timed rounds. The fraction of sgemm that
`auto` reaches is the median over rounds of its FLOP rate over that round's
sgemm rate (both under the same load), counting 2 FLOP per multiply-add of the
forward pass, the weight gradients and the input gradients of layers >= 1 at
each model's own widths (~4.2 MFLOP per model-epoch on the reference
workload). The last line is

    speedup: <x>x best peer (<y>x per-model loop, <backend>, <cpu model and vector ISA>, <workload>)

`--json PATH` writes the result record (machine, ISA, rates per wall and CPU
second, ratios, fraction of sgemm, load, the command); `--markdown` prints it as
a row of the table in docs/performance.md.

`--scaling` prints throughput and peak memory against stack size (16 -> 4096
models) and hidden width, each point in a fresh subprocess. Peak memory is what
training adds on top of the model and data already in memory: on CPU the rise of
the process's peak RSS (`resource.getrusage`; torch's CPU allocations are
invisible to tracemalloc), on CUDA `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
from torch import nn

from fci.models.mlp import MaskedMLP, MaskedMLPStack
from fci.tasks import DNFTask, TaskConfig
from fci.train import FitState, FPESpec, KernelBackend, TorchBackend, TrainConfig, fit, trial_bytes
from fci.train.backends.kernel import library as _kernel
from fci.train.backends.torch import FlatState
from fci.train.provenance import cpu_features, cpu_model

N_TASKS = 32  # distinct tasks dealt round-robin over the models


# --------------------------------------------------------------------------- workload


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        print(f"CUDA is not available on this machine ({why}; torch {torch.__version__}): nothing was measured. "
              "Run with --device cpu, or on a machine with a GPU.", file=sys.stderr)
        raise SystemExit(2)
    return torch.device(name)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def build_workload(n_models: int, widths: list[int], n_train: int, device: torch.device, n_tasks: int = N_TASKS):
    """Models (fci MaskedMLPs, widths dealt round-robin) and their stacked data.

    Returns (models, x (M, N, 24) uint8, y (M, N, 1) uint8), data on `device`."""
    cfg = TaskConfig(n_clauses=8, clause_size=3, n_train=n_train)
    pool = [DNFTask.from_config(cfg, seed=t).train_data() for t in range(min(n_tasks, n_models))]
    n_in = pool[0][0].shape[1]
    x = torch.empty(n_models, n_train, n_in, dtype=torch.uint8, device=device)
    y = torch.empty(n_models, n_train, 1, dtype=torch.uint8, device=device)
    for i in range(n_models):
        xi, yi = pool[i % len(pool)]
        x[i].copy_(xi)
        y[i].copy_(yi)
    models = [MaskedMLP(n_in, widths[i % len(widths)], 1, seed=i) for i in range(n_models)]
    return models, x, y


def workload_name(n_models: int, widths: list[int], n_train: int, batch: int) -> str:
    w = f"{min(widths)}-{max(widths)} mixed" if len(widths) > 1 else str(widths[0])
    return (f"{n_models} models, DNF 8x3 (n=24), hidden {w}, {n_train} samples/model, batch {batch}, Adam")


# --------------------------------------------------------------------------- the two trainers


class Batched:
    """`fci.train.fit` on one stack through `backend`, continued round after round."""

    def __init__(self, models, x, y, cfg: TrainConfig, device: torch.device, backend="auto", workers: int | None = None):
        self.stack = MaskedMLPStack.from_models(models).to(device)
        self.x, self.y, self.cfg, self.dev = x, y, cfg, device
        self.opt: FitState | None = None  # the run's state, once `run` has trained
        self.epoch = 0
        self.last_loss: torch.Tensor | None = None
        self.backend, self.workers = backend, workers

    def describe(self) -> str:
        """How fit() runs this stack: the backend, its build and threads."""
        if self.opt is None:
            return "-"
        p = self.opt.provenance
        w = p.get("workers", 1)
        if p["backend"] == "kernel":
            return f"C kernel ({p['kernel_isa']}, {p['kernel_vb']}-lane blocks x {p['kernel_s']} samples), {w} thread{'s' if w > 1 else ''}"
        if isinstance(self.opt, FlatState) and self.dev.type == "cpu":
            n = len(self.opt.slices)
            return f"torch backend, {min(w, n)} worker{'s' if w > 1 else ''} x 1 thread, {n} width-sorted slice{'s' if n > 1 else ''}"
        return f"{p['backend']} backend{' + CUDA graphs' if p.get('cuda_graphs') else ''}"

    def run(self, epochs: int) -> int:
        _sync(self.dev)
        backend = "auto" if self.opt is not None else self.backend
        self.opt, losses = fit(self.stack, self.x, self.y, self.cfg, range(self.epoch, self.epoch + epochs), optimizer=self.opt,
                               backend=backend, workers=self.workers)
        _sync(self.dev)
        self.epoch += epochs
        self.last_loss = losses[:, -1]
        return self.stack.n_models * epochs


def _padded_init(models, H: int, device):
    """The models' own initial weights, padded to width H: (W1 (M, n, H), b1 (M, 1, H),
    W2 (M, H, 1), b2 (M, 1, 1)) and the 0/1 padding masks of W1, b1 and W2."""
    M, n = len(models), models[0].n_in
    W1, b1, W2, b2 = torch.zeros(M, n, H), torch.zeros(M, 1, H), torch.zeros(M, H, 1), torch.zeros(M, 1, 1)
    m1, mb1, m2 = torch.zeros(M, n, H), torch.zeros(M, 1, H), torch.zeros(M, H, 1)
    for i, m in enumerate(models):
        h = m.hidden[0]
        W1[i, :, :h], b1[i, 0, :h] = m.weights[0].detach().t(), m.biases[0].detach()
        W2[i, :h, 0], b2[i, 0, 0] = m.weights[1].detach()[0], m.biases[1].detach()[0]
        m1[i, :, :h], mb1[i, 0, :h], m2[i, :h, 0] = 1, 1, 1
    return [t.to(device) for t in (W1, b1, W2, b2)], [t.to(device) for t in (m1, mb1, m2)]


class _Peer:
    """A stacked peer trainer: data (M, N, n) as floats, a shared randperm per epoch."""

    threads: int | None = None

    def __init__(self, models, x, y, cfg: TrainConfig, device):
        self.x, self.y = x.float(), y.float()
        self.B, self.dev, self.M = cfg.batch_size, device, len(models)
        self.H = max(m.hidden[0] for m in models)
        self.last_loss = torch.full((self.M,), float("nan"))

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        """One optimiser step of every model on its minibatch, xb: (M, B, n), yb: (M, B, 1)."""
        raise NotImplementedError

    def run(self, epochs: int) -> int:
        old = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            _sync(self.dev)
            N = self.x.shape[1]
            for _ in range(epochs):
                perm = torch.randperm(N, device=self.dev)
                for s in range(0, N, self.B):
                    idx = perm[s : s + self.B]
                    self.step(self.x[:, idx], self.y[:, idx])
            _sync(self.dev)
        finally:
            torch.set_num_threads(old)
        return self.M * epochs


class BmmPeer(_Peer):
    """Peer (1): a padded bmm stack, autograd, one fused Adam over the stacked tensors."""

    def __init__(self, models, x, y, cfg, device):
        super().__init__(models, x, y, cfg, device)
        params, self.masks = _padded_init(models, self.H, device)
        self.params = [p.requires_grad_() for p in params]
        self.opt = torch.optim.Adam(self.params, lr=cfg.lr, fused=True)

    def step(self, xb, yb):
        W1, b1, W2, b2 = self.params
        m1, mb1, m2 = self.masks
        h = torch.relu(torch.baddbmm(b1 * mb1, xb, W1 * m1))
        z = torch.baddbmm(b2, h, W2 * m2)
        per_model = nn.functional.binary_cross_entropy_with_logits(z, yb, reduction="none").mean((1, 2))
        self.opt.zero_grad(set_to_none=True)
        per_model.sum().backward()
        self.opt.step()
        self.last_loss = per_model.detach()  # no copy to the host: on a GPU that would wait on every step


class VmapPeer(_Peer):
    """Peer (2): torch.func vmap(grad) over stacked module state, fused Adam."""

    def __init__(self, models, x, y, cfg, device):
        super().__init__(models, x, y, cfg, device)
        from torch.func import functional_call, grad, stack_module_state, vmap

        (W1, b1, W2, b2), (m1, mb1, m2) = _padded_init(models, self.H, device)
        n = models[0].n_in
        nets = [nn.Sequential(nn.Linear(n, self.H), nn.ReLU(), nn.Linear(self.H, 1)).to(device) for _ in models]
        params, _ = stack_module_state(nets)
        with torch.no_grad():
            params["0.weight"].copy_(W1.transpose(1, 2))
            params["0.bias"].copy_(b1[:, 0])
            params["2.weight"].copy_(W2.transpose(1, 2))
            params["2.bias"].copy_(b2[:, 0])
        self.params = params
        self.masks = {"0.weight": m1.transpose(1, 2).contiguous(), "0.bias": mb1[:, 0].contiguous(),
                      "2.weight": m2.transpose(1, 2).contiguous()}
        base = nets[0].to("meta")

        def loss(p, mask, xb, yb):
            eff = {k: v * mask[k] if k in mask else v for k, v in p.items()}
            return nn.functional.binary_cross_entropy_with_logits(functional_call(base, eff, (xb,)), yb)

        self.grad = vmap(grad(loss, has_aux=False))
        self.opt = torch.optim.Adam(list(self.params.values()), lr=cfg.lr, fused=True)

    def step(self, xb, yb):
        grads = self.grad(self.params, self.masks, xb, yb)
        for k, p in self.params.items():
            p.grad = grads[k]
        self.opt.step()


class Loop:
    """The straightforward per-model loop, on the first `n_models` models of the workload."""

    def __init__(self, widths: list[int], x, y, n_models: int, cfg: TrainConfig, device: torch.device, threads: int | None):
        self.nets = []
        for i in range(n_models):
            h = widths[i % len(widths)]
            net = nn.Sequential(nn.Linear(x.shape[2], h), nn.ReLU(), nn.Linear(h, 1)).to(device)
            self.nets.append((net, torch.optim.Adam(net.parameters(), lr=cfg.lr)))
        self.x = [x[i].float() for i in range(n_models)]
        self.y = [y[i].float() for i in range(n_models)]
        self.B, self.dev, self.threads = cfg.batch_size, device, threads
        self.last_loss = [float("nan")] * n_models

    def run(self, epochs: int, n_models: int | None = None) -> int:
        n_models = len(self.nets) if n_models is None else n_models
        old = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            _sync(self.dev)
            for i, (net, opt) in enumerate(self.nets[:n_models]):
                x, y = self.x[i], self.y[i]
                N = x.shape[0]
                for _ in range(epochs):
                    perm = torch.randperm(N, device=self.dev)
                    for s in range(0, N, self.B):
                        idx = perm[s : s + self.B]
                        loss = nn.functional.binary_cross_entropy_with_logits(net(x[idx]), y[idx])
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                self.last_loss[i] = float(loss.detach())
            _sync(self.dev)
        finally:
            torch.set_num_threads(old)
        return n_models * epochs


def _timed(fn, *args) -> tuple[float, int]:
    t = time.perf_counter()
    work = fn(*args)
    return time.perf_counter() - t, work


# --------------------------------------------------------------------------- comparison


class Sgemm:
    """This machine's float32 matmul (n x n, at torch's thread count), timed in the
    same rounds as the trainers so that both see the same load: `run(reps)`
    multiplies `reps` times and returns the FLOPs done."""

    def __init__(self, dev: torch.device, n: int):
        self.dev, self.n = dev, n
        self.a, self.b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
        self.run(1)

    def run(self, reps: int) -> float:
        _sync(self.dev)
        for _ in range(reps):
            self.a @ self.b
        _sync(self.dev)
        return 2.0 * self.n**3 * reps


def flops_per_model_epoch(models, n_train: int) -> float:
    """2 FLOP per multiply-add of the forward pass, the weight gradients and
    the input gradients of layers >= 1, at each model's own widths; mean over models."""
    total = 0.0
    for m in models:
        sizes = m.sizes
        macs = [i * o for i, o in zip(sizes[:-1], sizes[1:])]
        total += 2 * (2 * sum(macs) + sum(macs[1:])) * n_train
    return total / len(models)


def machine_label(dev: torch.device, lib) -> str:
    """The CPU model and the vector ISA the kernel was built for (or the GPU)."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    feats = cpu_features()
    isa = lib.isa if lib is not None else next((f for f in ("avx512f", "avx2", "asimd", "neon") if f in feats), "scalar")
    return f"{cpu_model()}, {isa}"


def _probe_threads(make, dev, rounds: int = 3) -> int | None:
    """1 or torch's default thread count, whichever trains `make()` faster
    (median of `rounds` alternating one-epoch runs each)."""
    if dev.type != "cpu" or torch.get_num_threads() == 1:
        return None
    trainers = {}
    for threads in (1, None):
        t = make()
        t.threads = threads
        t.run(1)
        trainers[threads] = t
    times: dict[int | None, list[float]] = {1: [], None: []}
    for _ in range(rounds):
        for threads, t in trainers.items():
            times[threads].append(_timed(t.run, 1)[0])
    return min(times, key=lambda k: statistics.median(times[k]))


def _fci_others(models, x, y, cfg: TrainConfig, dev: torch.device, auto: Batched, lib) -> list[tuple[str, Batched]]:
    """fci's other trainers of the workload, each warmed up by one epoch: the automatic
    backend on one thread and its other kernel builds (CPU), CUDA graphs (GPU), and
    the torch and reference backends where auto is neither."""
    assert auto.opt is not None  # run() trained it
    auto_backend = auto.opt.provenance["backend"]
    fci_others: list[tuple[str, Batched]] = []
    cores = torch.get_num_threads()
    if dev.type == "cpu" and auto_backend == "kernel":
        if cores > 1:
            fci_others.append(("    the same on one thread (workers=1)", Batched(models, x, y, cfg, dev, "kernel", workers=1)))
        variants = []
        if lib is not None and lib.isa.startswith("avx512") and platform.machine() in ("x86_64", "AMD64"):
            variants.append(("    kernel, AVX2 build (-mno-avx512f)", KernelBackend(extra_flags=("-mno-avx512f",), tag="avx2")))
        if lib is not None and lib.isa == "avx512-zen4":
            variants.append(("    kernel, 16-lane AVX-512 build", KernelBackend(extra_flags=("-DFCI_VB=16",), tag="vb16")))
        for label, variant in variants:
            if variant.why_not(auto.stack, cfg, "bce") is None:
                fci_others.append((label, Batched(models, x, y, cfg, dev, variant)))
    if dev.type == "cuda":
        fci_others.append(("    fci torch backend + CUDA graphs", Batched(models, x, y, cfg, dev, TorchBackend(cuda_graphs=True))))
    for label, backend in (("    fci torch backend", "torch"), ("    fci reference backend (autograd)", "reference")):
        if backend != auto_backend:
            fci_others.append((label, Batched(models, x, y, cfg, dev, backend)))
    for _, t in fci_others:
        t.run(1)
    return fci_others


def _peers(models, x, y, cfg: TrainConfig, dev: torch.device) -> list[tuple[str, _Peer]]:
    """The batched peers (padded bmm, torch.func vmap), each on its faster thread
    count and warmed up by one epoch."""
    peers: list[tuple[str, _Peer]] = []
    for label, cls in (("(1) padded bmm stack + fused Adam", BmmPeer), ("(2) torch.func vmap(grad) + fused Adam", VmapPeer)):
        threads = _probe_threads(lambda cls=cls: cls(models, x, y, cfg, dev), dev)
        p = cls(models, x, y, cfg, dev)
        p.threads = threads
        p.run(1)
        peers.append((label, p))
    return peers


def _alternate(rows: list[tuple[str, Any, int]], rounds: int) -> tuple[list[list[float]], list[list[float]]]:
    """`rounds` rounds, each running every row's trainer once in turn (so that load
    changes hit every row alike); per row, each round's wall-clock rate and rate per
    CPU-second of this process (all its threads). Prints a line per round."""
    rates: list[list[float]] = [[] for _ in rows]
    cpu_rates: list[list[float]] = [[] for _ in rows]  # per CPU-second of this process (all its threads)
    for r in range(rounds):
        for k, (_, trainer, e) in enumerate(rows):
            c = time.process_time()
            dt, work = _timed(trainer.run, e)
            rates[k].append(work / dt)
            cpu_rates[k].append(work / max(time.process_time() - c, 1e-9))
        print(f"  round {r + 1}/{rounds}: " + "  ".join(f"{v[-1]:.0f}" for v in rates[:-1]) +
              f"  model-epochs/s; sgemm {rates[-1][-1] / 1e9:.0f} GFLOP/s", flush=True)
    return rates, cpu_rates


def _print_table(rows: list[tuple[str, Any, int]], rates: list[list[float]], med: list[float], cpu_med: list[float],
                 ratio: list[float], loop_models: int, loop_threads: int | None) -> None:
    """The table of the trainers' rates (every row but sgemm's)."""
    print(f"{'trainer':<48}{'model-epochs/s':>16}{'min':>10}{'max':>10}{'per CPU-s':>11}{'auto/row':>10}   notes")
    for k, (label, trainer, e) in enumerate(rows[:-1]):
        if isinstance(trainer, Batched):
            note = f"{trainer.describe()}; {e} epochs per fit() call"
        elif isinstance(trainer, _Peer):
            note = f"threads {trainer.threads or torch.get_num_threads()}"
        else:
            note = f"{loop_models} models x 1 epoch per round; threads {loop_threads or torch.get_num_threads()}"
        print(f"{label:<48}{med[k]:>16.1f}{min(rates[k]):>10.1f}{max(rates[k]):>10.1f}{cpu_med[k]:>11.0f}{ratio[k]:>9.2f}x   {note}")


def compare(args) -> dict:
    """The alternating comparison; prints the table and returns the result record."""
    dev = _device(args.device)
    quick = args.quick
    M = args.models or (64 if quick else 256)
    widths = list(range(4, 17))
    n_train, cfg = 4096, TrainConfig(lr=0.01, batch_size=256)
    epochs = args.epochs or (4 if quick else 12)  # per fci round: one fit() call continuing the run
    peer_epochs = max(1, epochs // 6)
    loop_models = args.loop_models or (2 if quick else 8)
    rounds = args.rounds or (3 if quick else 9)
    loop_threads = None if args.loop_threads == 0 or dev.type != "cpu" else args.loop_threads
    name = workload_name(M, widths, n_train, cfg.batch_size)
    load_before = _load()

    t0 = time.perf_counter()
    print(f"fci trainer benchmark: {name}")
    print(f"device {dev.type} ({_describe(dev)}), torch {torch.__version__}, python {platform.python_version()}, "
          f"load average {load_before}")
    models, x, y = build_workload(M, widths, n_train, dev)
    auto = Batched(models, x, y, cfg, dev)
    setup, _ = _timed(auto.run, 1)  # warm-up, not timed: first-call costs and fit's one-time set-up
    assert auto.opt is not None  # run() trained it
    auto_backend = auto.opt.provenance["backend"]
    lib = _kernel.load() if auto_backend == "kernel" else None
    fci_others = _fci_others(models, x, y, cfg, dev, auto, lib)
    peers = _peers(models, x, y, cfg, dev)
    loop = Loop(widths, x, y, loop_models, cfg, dev, loop_threads)
    loop.run(1, n_models=1)
    n_sgemm = 8192 if dev.type == "cuda" else 2048
    sgemm = Sgemm(dev, n_sgemm)

    rows: list[tuple[str, Batched | _Peer | Loop | Sgemm, int]] = [("fci auto: fit(), one stack of " + str(M), auto, epochs)]
    rows += [(lab, t, epochs) for lab, t in fci_others]
    rows += [(lab, p, peer_epochs) for lab, p in peers]
    rows += [("(3) per-model loop (nn.Sequential + Adam)", loop, 1)]
    rows += [(f"sgemm {n_sgemm}^2 (FLOP/s)", sgemm, 5 if dev.type == "cpu" else 20)]
    rates, cpu_rates = _alternate(rows, rounds)
    med = [statistics.median(v) for v in rates]
    cpu_med = [statistics.median(v) for v in cpu_rates]
    ratio = [statistics.median(a_ / b_ for a_, b_ in zip(rates[0], v)) for v in rates]  # auto / row, per round
    flops = flops_per_model_epoch(models, n_train)
    of_sgemm = statistics.median(a_ * flops / g for a_, g in zip(rates[0], rates[-1]))  # per round, same load
    of_sgemm_cpu = statistics.median(a_ * flops / g for a_, g in zip(cpu_rates[0], cpu_rates[-1]))  # per CPU-second
    print()
    print("model-epochs/s: median over rounds of wall-clock rates; per CPU-s: the same per CPU-second the process used "
          "(less sensitive to other load on a shared machine); auto/row: median of the per-round ratios")
    _print_table(rows, rates, med, cpu_med, ratio, loop_models, loop_threads)
    n_fci = 1 + len(fci_others)
    best_peer = min(range(n_fci, n_fci + len(peers)), key=lambda k: ratio[k])  # the fastest peer against auto
    a = med[0]
    where = "the GPU" if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"fit() set-up (first call: one epoch plus data layout and buffers, untimed above): {setup:.2f} s")
    print(f"sgemm {n_sgemm}^2 on {where}, in the same rounds: {med[-1] / 1e9:.1f} GFLOP/s (median); the workload is "
          f"{flops / 1e6:.2f} MFLOP per model-epoch, so auto runs at {a * flops / 1e9:.1f} GFLOP/s, {100 * of_sgemm:.0f}% of "
          f"sgemm (median of the per-round ratios; dense ceiling {med[-1] / flops:.0f} model-epochs/s)" +
          (f"; per CPU-second {100 * of_sgemm_cpu:.0f}% of sgemm's" if dev.type == "cpu" else ""))
    slower = [f"{rows[k][0].strip()} ({1 / ratio[k]:.2f}x auto in the median round)" for k in range(1, n_fci) if ratio[k] < 1]
    load_after = _load()
    print(f"auto ({auto_backend}) is {'slower than ' + ', '.join(slower) if slower else 'the fastest fci backend here'}; "
          f"rounds {rounds}, medians; wall time {time.perf_counter() - t0:.0f} s; load average now {load_after}")
    machine = machine_label(dev, lib)
    print(f"speedup: {ratio[best_peer]:.1f}x best peer ({ratio[-2]:.0f}x per-model loop, {auto.describe()}, "
          f"{machine}, {name})")
    return {
        "command": "python -m benchmarks.trainer " + " ".join(args.argv),
        "date": time.strftime("%Y-%m-%d"),
        "device": dev.type,
        "machine": machine,
        "cpu_model": cpu_model() if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "isa": lib.isa if lib is not None else ("cuda" if dev.type == "cuda" else ", ".join(cpu_features())),
        "threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "torch": torch.__version__,
        "workload": name,
        "backend": auto.describe(),
        "model_epochs_per_s": a,
        "model_epochs_per_cpu_s": cpu_med[0] if dev.type == "cpu" else None,
        "best_peer": rows[best_peer][0],
        "best_peer_model_epochs_per_s": med[best_peer],
        "best_peer_model_epochs_per_cpu_s": cpu_med[best_peer] if dev.type == "cpu" else None,
        "ratio_to_best_peer": ratio[best_peer],
        "ratio_to_loop": ratio[-2],
        "sgemm_gflops": med[-1] / 1e9,
        "fraction_of_sgemm": of_sgemm,
        "fraction_of_sgemm_per_cpu_s": of_sgemm_cpu if dev.type == "cpu" else None,
        "rounds": rounds,
        "load_average": [load_before, load_after],
        "rows": [{"trainer": rows[k][0].strip(), "model_epochs_per_s": med[k], "min": min(rates[k]), "max": max(rates[k]),
                  "per_cpu_s": cpu_med[k], "auto_over_row": ratio[k]} for k in range(len(rows) - 1)],
    }


def markdown_row(res: dict) -> str:
    """One row of docs/performance.md's table, from a result record."""
    per_cpu = "-" if res["model_epochs_per_cpu_s"] is None else \
        f"{res['model_epochs_per_cpu_s']:,.0f} vs {res['best_peer_model_epochs_per_cpu_s']:,.0f}"
    cpu_sgemm = "" if res.get("fraction_of_sgemm_per_cpu_s") is None else f" ({100 * res['fraction_of_sgemm_per_cpu_s']:.0f}% per CPU-s)"
    return (f"| {res['cpu_model']} | {res['isa']} | {res['backend']} | {res['model_epochs_per_s']:,.0f} | "
            f"{res['ratio_to_best_peer']:.1f}x | {100 * res['fraction_of_sgemm']:.0f}%{cpu_sgemm} | {per_cpu} | "
            f"{res['load_average'][0]} | `{res['command']}`, {res['date']} |")


def _describe(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


# --------------------------------------------------------------------------- scaling


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def point(spec: dict) -> dict:
    """One scaling point, meant for a fresh process: throughput and peak memory of fit().

    spec["workers"]: None keeps fit's default (torch's thread count); k sets k.
    spec["backend"]: fit's backend (default auto). spec["torch_threads"]: k
    trains the stack whole, unsliced, on torch's k intra-op threads (torch backend)."""
    dev = _device(spec["device"])
    backend = spec.get("backend", "auto")
    if spec.get("torch_threads"):
        torch.set_num_threads(spec["torch_threads"])
        backend = TorchBackend(min_slice=1 << 30, thread_threshold=0.0)  # one slice, torch's own threads
    M, H = spec["models"], spec["hidden"]
    cfg = TrainConfig(lr=0.01, batch_size=256)
    models, x, y = build_workload(M, [H], spec["n_train"], dev, n_tasks=8)
    b = Batched(models, x, y, cfg, dev, backend, workers=spec.get("workers"))
    del models
    if dev.type == "cuda":
        _sync(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    else:
        before, peak_before = _rss(), _maxrss()
    t_first, _ = _timed(b.run, 1)  # also the memory probe
    if dev.type == "cuda":
        peak, exact = torch.cuda.max_memory_allocated(dev) - before, True
    else:
        after = _maxrss()
        peak, exact = after - before, after > peak_before
    epochs = max(1, min(20, math.ceil(spec["seconds"] / max(t_first, 1e-3))))
    dt, work = _timed(b.run, epochs)
    assert b.opt is not None  # run() trained it
    w = b.opt.provenance["workers"]
    threads = "-" if dev.type == "cuda" else f"{spec['torch_threads']} torch" if spec.get("torch_threads") else \
        f"{b.opt.provenance['backend']}, {w} thread{'s' if w > 1 else ''}"
    task = TaskConfig(n_clauses=8, clause_size=3, n_train=spec["n_train"])
    est = M * trial_bytes(FPESpec(task=task, hidden=H, expansions=())) - (x.numel() + y.numel()) * (1 + task.n_test / task.n_train)
    return {"rate": work / dt, "epochs": epochs, "peak": peak, "exact": exact, "threads": threads, "est": est}


def scaling(args) -> None:
    dev = _device(args.device)
    quick = args.quick
    sizes = [16, 64, 256, 1024] if quick else [16, 64, 256, 1024, 4096]
    hiddens = [4, 16, 64] if quick else [4, 8, 16, 32, 64, 128]
    seconds = 1.0 if quick else 3.0
    n_train = 4096
    t0 = time.perf_counter()
    print(f"fci trainer scaling: DNF 8x3 (n=24), {n_train} samples/model (uint8, resident), batch 256, Adam; "
          f"device {dev.type} ({_describe(dev)}), torch {torch.__version__}; load average {_load()}")
    print("peak MiB: what one fit() adds over the model and data already resident "
          f"({'torch.cuda.max_memory_allocated' if dev.type == 'cuda' else 'rise of the peak RSS, fresh process per row'}); "
          "estimate: the same from fci.train.trial_bytes")
    # (title, [(models, hidden, parallelism: extra --_point settings or None)])
    sections: list[tuple[str, list[tuple[int, int, dict[str, Any] | None]]]] = [
        ("against stack size (hidden 16)", [(M, 16, None) for M in sizes]),
        ("against hidden width (256 models)", [(256, H, None) for H in hiddens]),
    ]
    if dev.type == "cpu" and (os.cpu_count() or 1) > 1:
        k = os.cpu_count()
        sections.append((f"parallelism and backend: auto on {k} threads vs 1 thread vs the torch backend ({k} workers)",
                         [(p, H, t) for p, H in ((256, 16), (1024, 16), (256, 64)) for t in (None, {"workers": 1}, {"backend": "torch"})]))
    for title, points in sections:
        print(f"\n{title}")
        print(f"{'models':>7}{'hidden':>7}{'parallelism':>24}{'model-epochs/s':>16}{'peak MiB':>10}{'MiB/model':>11}{'estimate MiB':>14}")
        for M, H, par in points:
            spec = {"device": dev.type, "models": M, "hidden": H, "n_train": n_train, "seconds": seconds, **(par or {})}
            out = subprocess.run([sys.executable, "-m", "benchmarks.trainer", "--_point", json.dumps(spec)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(f"point {spec} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            res = json.loads(out.stdout.strip().splitlines()[-1])
            mib = res["peak"] / 2**20
            peak = f"{mib:.0f}" if res["exact"] else f"<={mib:.0f}"
            print(f"{M:>7}{H:>7}{res['threads']:>24}{res['rate']:>16.1f}{peak:>10}{mib / M:>11.2f}{res['est'] / 2**20:>14.0f}", flush=True)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s; load average now {_load()}")


# --------------------------------------------------------------------------- parallel probe


def probe(args) -> None:
    """How far this machine's cores scale on compute-bound vs the workload's
    memory-bound ops: the same single-threaded op loop on 1 thread, then on
    `cores` threads at once (cores x the work)."""
    import threading

    torch.set_num_threads(1)
    cores = os.cpu_count() or 1
    big = torch.randn(512, 512)
    x, w = torch.randn(64, 256, 25), torch.randn(64, 25, 12)  # a 64-model slice's layer-0 product
    ops = {"512x512 matmul (compute-bound)": lambda: big @ big,
           "bmm 64 x (256x25 @ 25x12), the trainer's layer 0 (memory-bound)": lambda: torch.bmm(x, w)}
    print(f"parallel probe: {cores} cores, load average {_load()}")
    for name, op in ops.items():
        n = max(1, int(1.0 / max(_timed(lambda: [op() for _ in range(10)])[0] / 10, 1e-6)))
        loop = lambda: [op() for _ in range(n)]  # noqa: E731
        ratios = []
        for _ in range(3):
            t1, _ = _timed(loop)
            threads = [threading.Thread(target=loop) for _ in range(cores)]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            ratios.append(cores * t1 / (time.perf_counter() - t))
        print(f"  {name}: {cores} threads do {statistics.median(ratios):.2f}x the work of one "
              f"(3 rounds: {', '.join(f'{r:.2f}' for r in ratios)})")


# --------------------------------------------------------------------------- cli


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.trainer", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--quick", action="store_true", help="a smaller run (64 models, fewer rounds)")
    ap.add_argument("--scaling", action="store_true", help="throughput and peak memory against stack size and width")
    ap.add_argument("--models", type=int, default=None, help="stack size (default 256; 64 with --quick)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per batched round")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds of (a) and (b)")
    ap.add_argument("--loop-models", type=int, default=None, help="models the loop trains per round")
    ap.add_argument("--loop-threads", type=int, default=1, help="intra-op threads for the loop on CPU (0: torch's default)")
    ap.add_argument("--probe", action="store_true", help="how far the cores scale on compute- vs memory-bound ops")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the comparison's result record as JSON")
    ap.add_argument("--markdown", action="store_true", help="also print the result as a row of docs/performance.md's table")
    ap.add_argument("--_point", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args._point:
        print(json.dumps(point(json.loads(args._point))))
        return 0
    if args.probe:
        probe(args)
    elif args.scaling:
        scaling(args)
    else:
        res = compare(args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
            print(f"result written to {args.json}")
        if args.markdown:
            print(markdown_row(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
