"""The FPE schedule (SPEC §3) over many trials on any data, batched into stacks.

Dense models train `warmup` epochs; the dense state at that moment is the
*parent*; the paired dense baseline continues `finetune` more epochs with the
same optimiser (an uninterrupted `warmup + finetune` run from the same
initialisation and data); each parent is expanded and its children train the
same `finetune` epochs (same minibatch order) with a fresh optimiser. A trial's
data is a Boolean task drawn from its seed or any `DatasetSpec` (digits,
embeddings, a fixed task, an in-memory dataset): one schedule for all of them.
With a store, trials are stored one entry per model, corrupt entries are
retrained, and processes sharing the store split the work by claims. The
schedule knows no backend: it passes `backend` and `workers` through to `fit`.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from fci.data.datasets import Dataset, task_dataset
from fci.data.spec import DatasetSpec
from fci.fpe.mlp import expand, expand_layers
from fci.models.base import resolve_device
from fci.models.mlp import MaskedMLP, MaskedMLPStack
from fci.progress import bar as progress_bar
from fci.store import Store
from fci.tasks import BooleanTask
from fci.train.backends import Backend
from fci.train.config import FPESpec, TrainConfig
from fci.train.executors import Executor, split_evenly
from fci.train.fitting import fit
from fci.train.fitting import results as _results
from fci.train.persistence import Payload, load_fpe_result, result_from_payload, result_payload, save_fpe_result, trial_keys
from fci.train.results import FPEResult, ModelResult

__all__ = ["PlanCost", "plan_cost", "run_fpe", "run_fpe_data", "auto_max_stack", "trial_bytes", "FPERun", "SCHEDULE_VERSION",
           "train_stack"]

log = logging.getLogger(__name__)

#: What a study job records of the schedule that trained its FPE trials, so that a job
#: stored by an earlier schedule is not mistaken for this one's. 2: `run_fpe` on a
#: DatasetSpec, a layer-0 split seeded by the trial's split seed (1: `run_fpe_data`,
#: whose layer-0 split used derive_seed(split seed, "layer", 0)). The models' own
#: store keys need no version: the per-model schedule did not change for them.
SCHEDULE_VERSION = 2


class FPERun(list):
    """`run_fpe`'s answer: one FPEResult per spec, in order (a list), and
    `trained`, the indices of the trials this call trained (the rest came from
    the store, stored before or by another process sharing it)."""

    def __init__(self, results: Iterable[FPEResult], trained: Iterable[int]):
        super().__init__(results)
        self.trained: list[int] = sorted(trained)

    def __repr__(self) -> str:
        return f"FPERun({len(self)} trials, {len(self.trained)} trained here)"


def balanced_chunks(seq: list, size: int) -> Iterable[list]:
    """Split seq into the fewest chunks of at most `size`, of near-equal length."""
    n_chunks = -(-len(seq) // size)
    for k in range(n_chunks):
        yield seq[k * len(seq) // n_chunks : (k + 1) * len(seq) // n_chunks]


def _sizes(spec: FPESpec) -> tuple[int, int, int, int]:
    """(train samples, test samples, inputs, outputs) of a trial's data, without drawing a task."""
    if spec.data is None:
        t = spec.task
        return t.n_train, t.n_test, t.resolved_n_vars, t.n_outputs
    d = spec.dataset()
    return d.n_train, d.n_test, d.n_in, d.n_out


def trial_bytes(spec: FPESpec) -> int:
    """Estimated peak memory (bytes, on the training device) that one trial adds
    to a stack in `run_fpe`: its data (stacked as uint8 for the dense model and
    each child; laid out as floats for training), parameters, masks, optimiser
    state and one minibatch of activations. Used to size stacks automatically."""
    N, T, n, O = _sizes(spec)
    B = min(spec.train.batch_size, N)
    E = len(spec.expansions)
    hidden = spec.hidden_list
    alphas = [a for _, a in spec.expansions]

    def params(h: list[int]) -> int:
        sizes = [n, *h, O]
        return sum(o * (i + 1) for i, o in zip(sizes[:-1], sizes[1:]))

    def phase(h: list[int]) -> int:  # fit(): float data (+ its uint8 staging), activations, flat buffers
        return N * (n + 1 + O) * 6 + 4 * B * (4 * sum(h) + n + 1 + 2 * O) + 4 * 8 * params(h)

    grown = (lambda h, a: [w * a for w in h]) if spec.layers == "all" else \
        (lambda h, a: [w * a if l in spec.layers else w for l, w in enumerate(h)])
    child_hidden = [grown(hidden, a) for a in alphas]
    raw = (1 + E) * (N + T) * (n + O)
    peak = max([phase(hidden)] + [sum(phase(h) for h in child_hidden)])
    kept = 4 * 4 * (params(hidden) * 2 + sum(params(h) for h in child_hidden))  # stacks and CPU copies
    return raw + peak + kept


@dataclass(frozen=True)
class PlanCost:
    """What a list of trials asks of the machine, estimated before any work.

    Attributes:
        trials, models: how many (models: each trial's dense baseline, parent and children).
        flops: multiply-adds x 2 of every training step (forward and backward, about
            6 per parameter and sample), summed over models and epochs.
        peak_bytes: the largest single trial's memory in a stack (`trial_bytes`).
        store_bytes: what the store will hold (float32 weights and masks of every model).
    """

    trials: int
    models: int
    flops: float
    peak_bytes: int
    store_bytes: int

    def seconds(self, flops_per_second: float) -> float:
        return self.flops / flops_per_second


def plan_cost(specs: Sequence[FPESpec]) -> PlanCost:
    """The cost of training `specs` (`PlanCost`), from their sizes alone (trials that
    differ only in their seed cost the same, so each distinct one is sized once)."""
    per: dict[tuple, tuple[float, int, int, int]] = {}
    flops, models, store, peak = 0.0, 0, 0, 0
    for spec in specs:
        key = (spec.task, spec.hidden, spec.expansions, spec.train, spec.data, spec.layers)
        if key not in per:
            N, _, n, O = _sizes(spec)
            sizes = [n, *spec.hidden_list, O]
            params = sum(o * (i + 1) for i, o in zip(sizes[:-1], sizes[1:]))
            k = 2 + len(spec.expansions)  # baseline, parent (warm-up only) and children
            widest = max([1] + [a for _, a in spec.expansions])
            # parent + baseline: warmup + finetune epochs at the parent's size; each child finetune epochs at <= alpha x
            epochs = spec.train.warmup + spec.train.finetune + spec.train.finetune * sum(a for _, a in spec.expansions)
            per[key] = (6.0 * N * params * epochs, k, 8 * params * (k + widest * len(spec.expansions)), trial_bytes(spec))
        f, k, b, t = per[key]
        flops, models, store, peak = flops + f, models + k, store + b, max(peak, t)
    return PlanCost(len(specs), models, flops, peak, store)


def _memory_budget(dev: torch.device) -> int:
    """Bytes a run may fill: half the free GPU memory, or a quarter of the
    available host memory (the machine is usually shared)."""
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return free // 2
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if ":" in line}
        return info.get("MemAvailable", info.get("MemFree", 8 << 30)) // 4
    except OSError:
        return 2 << 30


#: Largest automatic stack per device type. On a CPU, throughput per model
#: stops growing well below 1024 models (see `python -m benchmarks.trainer
#: --scaling`) while bigger stacks only delay the store's checkpoints; a GPU
#: needs large stacks to fill it.
_AUTO_STACK_CAP = {"cpu": 1024, "cuda": 16384}


def auto_max_stack(specs: Sequence[FPESpec], device: str | torch.device = "auto") -> int:
    """How many trials like these fit one stack on `device` (at least 1)."""
    dev = resolve_device(device)
    per_trial = max(trial_bytes(s) for s in specs)
    cap = _AUTO_STACK_CAP.get(dev.type, 1024)
    return int(max(1, min(cap, _memory_budget(dev) // per_trial)))


def run_fpe(
    specs: Sequence[FPESpec],
    device: str | torch.device = "auto",
    progress: bool = False,
    max_stack: int | str | None = "auto",
    store: "Store | None" = None,
    backend: str | Backend = "auto",
    workers: int | None = None,
    executor: Executor | None = None,
) -> FPERun:
    """Run the FPE schedule for many trials, batched into stacks.

    Each spec is one trial on its data (`FPESpec.data`, or a Boolean task drawn
    from its seed). Trials with the same input/output sizes, depth, data sizes,
    loss and schedule share stacks of at most `max_stack` trials each (their
    dense models in one stack, their children in another); `"auto"` or None
    sizes the stacks to the device's memory (`auto_max_stack`). Within a group,
    trials of similar width are stacked together (less padding) and chunks have
    near-equal sizes. Trials on one shared dataset hold it once.

    With a `store`: corrupt or incomplete entries are quarantined (one warning
    each) and retrained; trials whose every model is stored are loaded; the
    rest are trained in batches claimed on the store (`Store.share`), so two
    processes on one store split the work and a crashed owner's claims expire;
    each finished stack is written (atomically, one entry per model) before the
    next starts, so an interrupted run resumes where it stopped. `backend` and
    `workers` are `fit`'s; every model records the backend that trained it
    (`ModelResult.provenance`, stored with its metrics). Returns one FPEResult
    per spec, in order (an `FPERun`: its `trained` lists the trials this call
    trained); models come back on the CPU.

    With an `executor` (`fci.train.executors`: a `DaskExecutor` trains on a Dask
    cluster) the stacks train there: each task gets its stack's specs (data that
    only this process can build is sent once per run), and sends back the models'
    tensors and metrics, which this process stores. Stacks are then cut small
    enough that every worker thread gets one per group of alike trials. The
    kernel's results do not depend on stack mates (SPEC §7), so they equal a run
    here bit for bit; the torch backend's agree to float rounding. `backend` must
    then be a name, and `device` is resolved here and used on the workers.
    """
    dev = resolve_device(device)
    if executor is not None and isinstance(backend, Backend):
        raise ValueError(f"run_fpe: with an executor, backend must be a name (a Backend instance is not sent to workers), "
                         f"got {type(backend).__name__}")
    if max_stack is not None and max_stack != "auto" and (isinstance(max_stack, bool) or not isinstance(max_stack, int)):
        raise ValueError(f"max_stack must be a positive integer, 'auto' or None, got {max_stack!r}")
    specs = list(specs)
    for s in specs:
        if not isinstance(s, FPESpec):
            raise ValueError(f"run_fpe takes FPESpec trials, got {type(s).__name__}")
    if store is None:
        return FPERun(_train(specs, [None] * len(specs), dev, progress, max_stack, backend, workers, executor=executor),
                      range(len(specs)))

    keys = trial_keys(specs)
    store.heal(k for g in keys for k in g)  # a corrupt entry is quarantined (one warning) and retrained
    results: list[FPEResult | None] = [None] * len(specs)
    todo = [i for i, g in enumerate(keys) if not all(store.has(k) for k in g)]
    if len(todo) < len(specs):
        log.info("store %s: %d of %d trials already done", store.root, len(specs) - len(todo), len(specs))
    bar = progress_bar(total=len(todo), desc="FPE trials", unit="trial", disable=not progress or not todo)

    def work(batch: list[int]) -> None:
        idx = [todo[j] for j in batch]
        # a trial whose dense entry (which carries the parent) is stored trains only its missing children
        known = [load_fpe_result(store, specs[i], missing_ok=True) if store.has(keys[i][0]) else None for i in idx]

        def done(rows: list[int], trained: list[FPEResult]) -> None:
            for r, res in zip(rows, trained):
                save_fpe_result(store, res)
                results[idx[r]] = res
            bar.update(len(rows))

        _train([specs[i] for i in idx], known, dev, progress, max_stack, backend, workers, done, executor)

    # Claims split the trials with other processes on this store; a cluster gets them all at once (to fill its workers).
    mine = store.share([keys[i] for i in todo], work, batch=len(todo) if executor is not None else None)
    bar.close()
    for i, res in enumerate(results):
        if res is None:  # stored before, or by another process
            results[i] = load_fpe_result(store, specs[i])
    return FPERun(results, (todo[j] for j in mine))  # type: ignore[arg-type]


def _stacks(specs: list[FPESpec], dev: torch.device, max_stack: int | str | None, parallelism: int = 1) -> list[list[int]]:
    """The stacks that train `specs` (indices): alike trials (same data sizes, depth,
    schedule and loss) share stacks of at most `max_stack` (auto: what fits `dev`),
    and, for `parallelism` > 1, of at most 1/parallelism of their group."""
    shapes = {i: (*_sizes(s), len(s.hidden_list), s.train, s.loss) for i, s in enumerate(specs)}
    groups: dict[Any, list[int]] = {}
    for i in range(len(specs)):
        groups.setdefault(shapes[i], []).append(i)
    chunks: list[list[int]] = []
    for idx in groups.values():
        size = max(1, max_stack) if isinstance(max_stack, int) else auto_max_stack([specs[i] for i in idx], dev)
        size = min(size, split_evenly(len(idx), parallelism))
        widths = lambda i: (specs[i].hidden_list, max((a for _, a in specs[i].expansions), default=1))  # noqa: E731
        chunks += list(balanced_chunks(sorted(idx, key=widths), size))
    return chunks


def _train(
    specs: list[FPESpec],
    known: list[FPEResult | None],
    dev: torch.device,
    progress: bool,
    max_stack: int | str | None,
    backend: str | Backend,
    workers: int | None,
    done: Callable[[list[int], list[FPEResult]], None] | None = None,
    executor: Executor | None = None,
) -> list[FPEResult]:
    """Train the trials (`known[i]`: trial i's stored parent and baseline, whose
    missing children alone train), stack by stack, here or through `executor`;
    `done(rows, results)` after each stack."""
    results: list[FPEResult | None] = [None] * len(specs)
    chunks = _stacks(specs, dev, max_stack, executor.parallelism if executor is not None else 1)
    log.debug("run_fpe: %d trials in %d stacks of sizes %s", len(specs), len(chunks), [len(c) for c in chunks])
    bar = progress_bar(total=len(specs), desc="FPE trials", unit="trial", disable=not progress or not specs or done is not None)

    def finish(chunk: list[int], trained: list[FPEResult]) -> None:
        for i, res in zip(chunk, trained):
            results[i] = res
        if done is not None:
            done(chunk, trained)
        bar.update(len(chunk))

    if executor is None:
        for chunk in chunks:
            finish(chunk, _run_chunk([specs[i] for i in chunk], [known[i] for i in chunk], dev, progress, backend, workers))
    else:
        if not isinstance(backend, str):
            raise ValueError(f"run_fpe: with an executor, backend must be a name, got {type(backend).__name__}")
        fn = functools.partial(train_stack, device=str(dev), backend=backend, workers=workers)
        calls = [([specs[i] for i in c], [_payload(known[i]) for i in c]) for c in chunks]
        shipped = _shipped_data(specs)
        for k, payloads in executor.run(fn, calls, shared={"data": shipped} if shipped else None, name="fci-stack"):
            finish(chunks[k], [result_from_payload(specs[i], p) for i, p in zip(chunks[k], payloads)])
    bar.close()
    return results  # type: ignore[return-value]


def _payload(result: FPEResult | None) -> Payload | None:
    return result_payload(result) if result is not None else None


def _shipped_data(specs: list[FPESpec]) -> list[tuple[DatasetSpec, Dataset]]:
    """The datasets a worker cannot build from their spec (a file, data in this
    process's memory), built here to be sent along."""
    out: dict[DatasetSpec, Dataset] = {}
    for s in specs:
        if s.data is not None and not s.data.portable and s.data not in out:
            out[s.data] = s.data.build()
    return list(out.items())


def train_stack(
    specs: list[FPESpec],
    known: list[Payload | None],
    device: str,
    backend: str = "auto",
    workers: int | None = None,
    data: list[tuple[DatasetSpec, Dataset]] | None = None,
) -> list[Payload]:
    """One stack of `run_fpe`, where an executor runs it (e.g. a Dask worker): train
    the trials of `specs` (`known[i]`: trial i's stored parent and baseline as a
    `result_payload`, whose missing children alone train) on `device`, with `data`
    sent by the driver installed first; returns each trial's `result_payload`."""
    for spec, dataset in data or ():
        spec.install(dataset)
    prior = [result_from_payload(s, p) if p is not None else None for s, p in zip(specs, known)]
    return [result_payload(r) for r in _run_chunk(specs, prior, torch.device(device), False, backend, workers)]


class _TrialData:
    """The data of a stack's trials: each trial's `Dataset` (Boolean tasks as 0/1
    uint8), stacked on the device per phase; trials on one shared dataset are a
    broadcast view of it (held once)."""

    def __init__(self, specs: list[FPESpec], dev: torch.device):
        self.tasks: list[BooleanTask | None] = []
        self.data: list[Dataset] = []
        for s in specs:
            if s.data is None:
                task = s.make_task()
                self.tasks.append(task)
                self.data.append(task_dataset(task))
            else:
                self.tasks.append(s.make_task() if s.boolean else None)
                self.data.append(s.dataset())
        self.dev = dev

    def clauses(self, i: int):
        task = self.tasks[i]
        return task.clauses if task is not None else self.data[i].info.get("clauses")

    def rows(self, rows: list[int]) -> tuple[torch.Tensor, ...]:
        picked = [self.data[i] for i in rows]
        if all(d is picked[0] for d in picked):
            return picked[0].stacked(len(picked), self.dev)
        return tuple(torch.stack([getattr(d, f) for d in picked]).to(self.dev) for f in ("x_train", "y_train", "x_test", "y_test"))


def _child(spec: FPESpec, parent: MaskedMLP, split: str, alpha: int, clauses) -> MaskedMLP:
    """The trial's (split, alpha) child of its parent: `expand` of layer 0, or
    `expand_layers` over the trial's `layers`."""
    seed = spec.split_seed(split, alpha)
    if spec.layers == (0,):
        return expand(parent, alpha, split, clauses=clauses, seed=seed)
    return expand_layers(parent, alpha, split, layers=spec.layers, clauses=clauses, seed=seed)


def _run_chunk(
    specs: list[FPESpec],
    known: list[FPEResult | None],
    dev: torch.device,
    progress: bool,
    backend: str | Backend = "auto",
    workers: int | None = None,
) -> list[FPEResult]:
    """Train one stack of trials. `known[i]`, when given, is trial i's stored
    parent and baseline with some children already stored: only its missing
    children train (from the stored parent, which is the exact state at
    expansion)."""
    cfg, loss = specs[0].train, specs[0].loss
    data = _TrialData(specs, dev)
    finetune = range(cfg.warmup, cfg.epochs)
    kw: dict[str, Any] = dict(loss=loss, backend=backend, workers=workers)

    parent_results: list[ModelResult | None] = [k.parent if k else None for k in known]
    dense_results: list[ModelResult | None] = [k.dense if k else None for k in known]
    fresh = [i for i, k in enumerate(known) if k is None]
    if fresh:
        xtr, ytr, xte, yte = ddata = data.rows(fresh)
        parents = [MaskedMLP(data.data[i].n_in, specs[i].hidden, data.data[i].n_out, seed=specs[i].init_seed()) for i in fresh]
        dense = MaskedMLPStack.from_models(parents).to(dev)
        opt, warm_losses = fit(dense, xtr, ytr, cfg, range(cfg.warmup), progress="dense warmup" if progress else False, **kw)
        for i, r in zip(fresh, _results(dense, ddata, warm_losses, loss, opt.provenance)):
            parent_results[i] = r
        _, fine_losses = fit(dense, xtr, ytr, cfg, finetune, optimizer=opt, progress="dense baseline" if progress else False, **kw)
        for i, r in zip(fresh, _results(dense, ddata, torch.cat([warm_losses, fine_losses], 1), loss, opt.provenance)):
            dense_results[i] = r
        del dense, opt, ddata
    # Every trial now has its parent and baseline, stored or just trained.
    parents_done = [r for r in parent_results if r is not None]
    dense_done = [r for r in dense_results if r is not None]
    assert len(parents_done) == len(dense_done) == len(specs)

    # Children of every trial and expansion share stacks.
    jobs = [
        (i, split, alpha)
        for i, (s, k) in enumerate(zip(specs, known))
        for split, alpha in s.expansions
        if k is None or (split, alpha) not in k.children
    ]
    child_results: dict[tuple[int, str, int], ModelResult] = {
        (i, *cond): r for i, k in enumerate(known) if k is not None for cond, r in k.children.items()
    }
    if jobs:
        children = [_child(specs[i], parents_done[i].model, split, alpha, data.clauses(i)) for i, split, alpha in jobs]
        cdata = data.rows([i for i, _, _ in jobs])
        cstack = MaskedMLPStack.from_models(children).to(dev)
        copt, closs = fit(cstack, cdata[0], cdata[1], cfg, finetune, progress="FPE finetune" if progress else False, **kw)
        for job, res in zip(jobs, _results(cstack, cdata, closs, loss, copt.provenance)):
            child_results[job] = res
    return [
        FPEResult(
            spec=s,
            task=data.tasks[i],
            parent=parents_done[i],
            dense=dense_done[i],
            children={(sp, a): child_results[(i, sp, a)] for sp, a in s.expansions},
        )
        for i, s in enumerate(specs)
    ]


# ---------------------------------------------------------------------------
def run_fpe_data(
    data: Dataset,
    trials: Sequence[tuple[int | Sequence[int], int]],
    expansions: Sequence[tuple[str, int]],
    cfg: TrainConfig,
    layers: Sequence[int] | str = (0,),
    device: str | torch.device = "auto",
    progress: bool = True,
    max_stack: int = 512,
    backend: str | Backend = "auto",
    workers: int | None = None,
    store: "Store | None" = None,
) -> FPERun:
    """`run_fpe` on one in-memory dataset: (hidden, seed) trials, each expanded
    into every (split, alpha) of `expansions` over `layers`.

    Deprecated: build `FPESpec(data=DatasetSpec..., hidden=..., seed=...)` trials
    and call `run_fpe` (a `DatasetSpec` names the data, so the models can be
    stored and shared between studies; `DatasetSpec.from_dataset(data)` names an
    in-memory one by its content)."""
    warnings.warn("run_fpe_data is deprecated and will be removed in fci 0.3: pass FPESpec(data=DatasetSpec...) trials "
                  "to run_fpe", DeprecationWarning, stacklevel=2)
    spec = DatasetSpec.from_dataset(data)
    layers_ = layers if isinstance(layers, str) else tuple(int(v) for v in layers)
    specs = [FPESpec(hidden=h if isinstance(h, int) else tuple(int(v) for v in h), seed=int(s), expansions=tuple(expansions),
                     train=cfg, data=spec, layers=layers_) for h, s in trials]
    return run_fpe(specs, device=device, progress=progress, max_stack=max_stack, store=store, backend=backend, workers=workers)
