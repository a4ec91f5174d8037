"""Throughput of the batched trainer (`fci.train.fit`) beside a straightforward
per-model PyTorch loop, and how it scales.

    python -m benchmarks.trainer [--device cpu|cuda] [--quick]
    python -m benchmarks.trainer --scaling [--device cpu|cuda] [--quick]
    python -m benchmarks.trainer --probe

Reference workload: 256 models of the Boolean DNF task (8 clauses of 3 literals,
n = 24 inputs, one output), hidden widths 4-16 mixed in one padded stack, each
model with its own 4096 training samples (32 distinct tasks, dealt round-robin:
drawing a task costs ~0.1 s, and what the samples say does not change the
timing), minibatch 256, Adam (lr 0.01).

(a) `fit` trains all models as one stack; (b) the loop trains each model alone:
`nn.Sequential(Linear, ReLU, Linear)`, `torch.optim.Adam` with its defaults,
data resident on the device, a fresh `randperm` per epoch, no DataLoader. Both
run the same epochs, batch size and data. The loop is timed on a subset of the
models and reported per model-epoch. On a CPU the loop runs on one intra-op
thread (its fastest setting for tiny models; the default thread count is also
timed, once, and printed). Rounds of (a) and (b) alternate, so both see the
same machine load; rates are medians over rounds. The last line is

    speedup: <ratio>x (batched <a> model-epochs/s, loop <b> model-epochs/s, <workload>)

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
import re
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from fci.model import MaskedMLP, MaskedMLPStack
from fci.tasks import DNFTask, TaskConfig
import fci.train as train
from fci.train import TrainConfig, fit, trial_bytes, FPESpec

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
    """`fci.train.fit` on one stack, continued round after round. `workers`
    overrides `fci.train.CPU_WORKERS` and `kernel` overrides `fci.train.KERNEL`
    (None: fci's own choice) for this stack's fit() calls."""

    def __init__(self, models, x, y, cfg: TrainConfig, device: torch.device, workers: int | None = None,
                 kernel: bool | None = None):
        self.stack = MaskedMLPStack.from_models(models).to(device)
        self.x, self.y, self.cfg, self.dev = x, y, cfg, device
        self.opt, self.epoch, self.last_loss = None, 0, None
        self.workers, self.kernel = workers, kernel

    def describe(self) -> str:
        """How fit() runs this stack: the C kernel on k threads, or the torch path's worker threads and slices."""
        if self.dev.type != "cpu":
            return "one stack"
        if self.opt is None:
            return "-"
        w = self.workers or train._cpu_workers()
        if isinstance(self.opt, train._kernel.KernelState):
            return f"C kernel, {w} thread{'s' if w > 1 else ''}"
        n = len(self.opt.slices)
        w = min(self.opt.workers, n)
        return f"torch path, {w} worker{'s' if w > 1 else ''} x 1 thread, {n} width-sorted slice{'s' if n > 1 else ''}"

    def run(self, epochs: int) -> int:
        _sync(self.dev)
        old = train.CPU_WORKERS, train.KERNEL
        if self.workers is not None:
            train.CPU_WORKERS = self.workers
        if self.kernel is not None:
            train.KERNEL = self.kernel
        try:
            self.opt, losses = fit(self.stack, self.x, self.y, self.cfg, range(self.epoch, self.epoch + epochs), optimizer=self.opt)
        finally:
            train.CPU_WORKERS, train.KERNEL = old
        _sync(self.dev)
        self.epoch += epochs
        self.last_loss = losses[:, -1]
        return self.stack.n_models * epochs


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


def compare(args) -> None:
    dev = _device(args.device)
    quick = args.quick
    M = args.models or (64 if quick else 256)
    widths = list(range(4, 17))
    n_train, cfg = 4096, TrainConfig(lr=0.01, batch_size=256)
    epochs = args.epochs or (2 if quick else 6)  # per batched round: one fit() call continuing the run
    loop_models = args.loop_models or (2 if quick else 8)
    loop_epochs = 1
    rounds = args.rounds or (3 if quick else 9)
    loop_threads = None if args.loop_threads == 0 or dev.type != "cpu" else args.loop_threads
    name = workload_name(M, widths, n_train, cfg.batch_size)

    t0 = time.perf_counter()
    print(f"fci trainer benchmark: {name}")
    print(f"device {dev.type} ({_describe(dev)}), torch {torch.__version__}, python {platform.python_version()}, "
          f"load average {_load()}")
    models, x, y = build_workload(M, widths, n_train, dev)
    batched = Batched(models, x, y, cfg, dev)
    loop = Loop(widths, x, y, loop_models, cfg, dev, loop_threads)
    # warm-up, not timed: first-call costs, and fit()'s one-time set-up (flat buffers and the
    # sample-major float copy of the data), which later calls continuing the run reuse
    setup, _ = _timed(batched.run, 1)
    others = []  # (label, trainer): fit() held to one core, and fit()'s torch path
    if dev.type == "cpu":
        cores = train._cpu_workers()
        if cores > 1:
            others.append(("    the same on one core (CPU_WORKERS=1)", Batched(models, x, y, cfg, dev, workers=1)))
        if isinstance(batched.opt, train._kernel.KernelState):
            others.append(("    fit()'s torch path (fci.train.KERNEL=False)", Batched(models, x, y, cfg, dev, kernel=False)))
    for _, t in others:
        t.run(1)
    loop.run(1, n_models=1)

    b_rates, l_rates = [], []
    o_rates: list[list[float]] = [[] for _ in others]
    for r in range(rounds):
        dt, work = _timed(batched.run, epochs)
        b_rates.append(work / dt)
        for rates, (_, t) in zip(o_rates, others):
            dt, work = _timed(t.run, epochs)
            rates.append(work / dt)
        dt, work = _timed(loop.run, loop_epochs)
        l_rates.append(work / dt)
        more = "".join(f"  {lab.split('(')[0].strip().replace('the same ', '')} {rates[-1]:8.1f}" for rates, (lab, _) in zip(o_rates, others))
        print(f"  round {r + 1}/{rounds}: batched {b_rates[-1]:9.1f}{more}  loop {l_rates[-1]:7.2f} model-epochs/s  "
              f"(ratio {b_rates[-1] / l_rates[-1]:.0f}x)", flush=True)
    default_rate = None
    if dev.type == "cpu" and loop_threads and torch.get_num_threads() != loop_threads:
        probe = Loop(widths, x, y, 1, cfg, dev, threads=None)
        dt, work = _timed(probe.run, 1)
        default_rate = work / dt

    a, b = statistics.median(b_rates), statistics.median(l_rates)
    ratios = [p / q for p, q in zip(b_rates, l_rates)]
    print()
    print(f"{'trainer':<44}{'model-epochs/s':>16}{'min':>10}{'max':>10}   notes")
    print(f"{'(a) fci batched: fit(), one stack of ' + str(M):<44}{a:>16.1f}{min(b_rates):>10.1f}{max(b_rates):>10.1f}"
          f"   {epochs} epochs per fit() call; {batched.describe()}")
    for rates, (lab, t) in zip(o_rates, others):
        c = statistics.median(rates)
        print(f"{lab:<44}{c:>16.1f}{min(rates):>10.1f}{max(rates):>10.1f}   {t.describe()}; {c / b:.0f}x the loop")
    lt = loop_threads or torch.get_num_threads() if dev.type == "cpu" else "-"
    print(f"{'(b) per-model loop (nn.Sequential + Adam)':<44}{b:>16.2f}{min(l_rates):>10.2f}{max(l_rates):>10.2f}"
          f"   {loop_models} models x {loop_epochs} epoch per round; threads {lt}")
    if default_rate is not None:
        print(f"{'    loop at the default thread count':<44}{default_rate:>16.2f}{'':>20}"
              f"   1 model x 1 epoch; threads {torch.get_num_threads()}")
    print(f"fit() set-up (first call: one epoch plus data layout and buffers, untimed above): {setup:.2f} s")
    print(f"rounds {rounds}, medians; per-round ratio {min(ratios):.0f}x-{max(ratios):.0f}x; "
          f"last-epoch train loss, mean over the loop's {loop_models} models: batched {batched.last_loss[:loop_models].mean():.3f} "
          f"after {batched.epoch} epochs, loop {sum(loop.last_loss) / loop_models:.3f} after {rounds * loop_epochs}")
    print(f"wall time {time.perf_counter() - t0:.0f} s; load average now {_load()}")
    print(f"speedup: {a / b:.0f}x (batched {a:.0f} model-epochs/s, loop {b:.2f} model-epochs/s, {name}, {dev.type})")


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

    spec["workers"]: None keeps fci's own choice (`fci.train.CPU_WORKERS`: one
    thread per torch thread); k sets k. spec["kernel"]: False trains through
    fit's torch path instead of the C kernel. spec["torch_threads"]: k trains
    the stack whole, unsliced, on torch's k intra-op threads (torch path)."""
    dev = _device(spec["device"])
    if spec.get("kernel") is False or spec.get("torch_threads"):
        train.KERNEL = False
    if spec.get("torch_threads"):
        torch.set_num_threads(spec["torch_threads"])
        train._MIN_SLICE = 1 << 30  # one slice
        orig = train._threads
        train._threads = lambda work, threshold=0.0: orig(work, threshold=0.0)  # let torch's setting apply
    M, H = spec["models"], spec["hidden"]
    cfg = TrainConfig(lr=0.01, batch_size=256)
    models, x, y = build_workload(M, [H], spec["n_train"], dev, n_tasks=8)
    b = Batched(models, x, y, cfg, dev, workers=spec.get("workers"))
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
    threads = "-" if dev.type == "cuda" else f"{spec['torch_threads']} torch" if spec.get("torch_threads") else re.sub(r", \d+ width-sorted slices?$", "", b.describe()).replace(" x 1 thread", "")
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
    sections = [("against stack size (hidden 16)", [(M, 16, None) for M in sizes]),
                ("against hidden width (256 models)", [(256, H, None) for H in hiddens])]
    if dev.type == "cpu" and (os.cpu_count() or 1) > 1:
        k = os.cpu_count()
        sections.append((f"parallelism and path: the C kernel on {k} threads vs 1 thread vs fit's torch path ({k} workers)",
                         [(p, H, t) for p, H in ((256, 16), (1024, 16), (256, 64)) for t in (None, {"workers": 1}, {"kernel": False})]))
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
    ap.add_argument("--_point", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._point:
        print(json.dumps(point(json.loads(args._point))))
        return 0
    if args.probe:
        probe(args)
    elif args.scaling:
        scaling(args)
    else:
        compare(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
