"""The FPE schedule (SPEC §3) over many trials, batched into stacks.

Dense models train `warmup` epochs; the dense state at that moment is the
*parent*; the paired dense baseline continues `finetune` more epochs with the
same optimiser (an uninterrupted `warmup + finetune` run from the same
initialisation and data); each parent is expanded and its children train the
same `finetune` epochs (same minibatch order) with a fresh optimiser. The
schedule knows no backend: it passes `backend` and `workers` through to `fit`.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from fci.data import Dataset
from fci.expand import SPLITS, expand, expand_layers, split_info
from fci.model import MaskedMLP, MaskedMLPStack, resolve_device
from fci.seeding import derive_seed
from fci.store import Store, config_key
from fci.tasks import DNFTask
from fci.train.backends import Backend
from fci.train.config import FPESpec, TrainConfig
from fci.train.fitting import fit
from fci.train.fitting import results as _results
from fci.train.persistence import entry_configs, load_fpe_result, save_fpe_result
from fci.train.results import DataFPEResult, FPEResult, ModelResult

__all__ = ["run_fpe", "run_fpe_data", "auto_max_stack", "trial_bytes"]

log = logging.getLogger(__name__)


def _chunks(seq: list, size: int) -> Iterable[list]:
    """Split seq into the fewest chunks of at most `size`, of near-equal length."""
    n_chunks = -(-len(seq) // size)
    for k in range(n_chunks):
        yield seq[k * len(seq) // n_chunks : (k + 1) * len(seq) // n_chunks]


def _hidden_list(spec: FPESpec) -> list[int]:
    return spec.hidden_list


def trial_bytes(spec: FPESpec) -> int:
    """Estimated peak memory (bytes, on the training device) that one trial adds
    to a stack in `run_fpe`: its data (stacked as uint8 for the dense model and
    each child; laid out as floats for training), parameters, masks, optimiser
    state and one minibatch of activations. Used to size stacks automatically."""
    N, T = spec.task.n_train, spec.task.n_test
    n, O, B = spec.task.resolved_n_vars, spec.task.n_outputs, min(spec.train.batch_size, N)
    E = len(spec.expansions)
    hidden = _hidden_list(spec)
    alphas = [a for _, a in spec.expansions]

    def params(h: list[int]) -> int:
        sizes = [n, *h, O]
        return sum(o * (i + 1) for i, o in zip(sizes[:-1], sizes[1:]))

    def phase(h: list[int]) -> int:  # fit(): float data (+ its uint8 staging), activations, flat buffers
        return N * (n + 1 + O) * 6 + 4 * B * (4 * sum(h) + n + 1 + 2 * O) + 4 * 8 * params(h)

    child_hidden = [[hidden[0] * a, *hidden[1:]] for a in alphas]
    raw = (1 + E) * (N + T) * (n + O)
    peak = max([phase(hidden)] + [sum(phase(h) for h in child_hidden)])
    kept = 4 * 4 * (params(hidden) * 2 + sum(params(h) for h in child_hidden))  # stacks and CPU copies
    return raw + peak + kept


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
) -> list[FPEResult]:
    """Run the FPE schedule for many trials, batched into stacks.

    Trials with the same input/output sizes, depth, data sizes and schedule
    share stacks of at most `max_stack` trials each (their dense models in one
    stack, their children in another); `"auto"` or None sizes the stacks to
    the device's memory (`auto_max_stack`). Within a group, trials of similar
    width are stacked together (less padding) and chunks have near-equal sizes.
    With a `store`, trials whose every model is stored are loaded instead of
    trained, and each finished stack is written (atomically, one entry per
    model) before the next starts, so an interrupted run resumes where it
    stopped. `backend` and `workers` are `fit`'s; every model records the
    backend that trained it (`ModelResult.provenance`, stored with its
    metrics). Returns one FPEResult per spec, in order; models come back on the CPU.
    """
    dev = resolve_device(device)
    if max_stack is not None and max_stack != "auto" and not isinstance(max_stack, int):
        raise ValueError(f"max_stack must be a positive integer, 'auto' or None, got {max_stack!r}")
    specs = list(specs)
    results: list[FPEResult | None] = [None] * len(specs)
    known: dict[int, FPEResult] = {}  # trials whose dense entry is stored but some child is not
    if store is not None:
        for i, s in enumerate(specs):
            stored = {cond: store.has(config_key(c)) for cond, c in entry_configs(s).items()}
            if all(stored.values()):
                results[i] = load_fpe_result(store, s)
            elif stored[("dense", 1)]:
                known[i] = load_fpe_result(store, s, missing_ok=True)
    todo = [i for i in range(len(specs)) if results[i] is None]
    if store is not None and len(todo) < len(specs):
        log.info("store %s: %d of %d trials already done", store.root, len(specs) - len(todo), len(specs))
    tasks = {i: specs[i].make_task() for i in todo}

    def key(i):
        s, t = specs[i], tasks[i]
        return (t.n_vars, t.n_outputs, len(_hidden_list(s)), s.task.n_train, s.task.n_test, s.train)

    groups: dict[Any, list[int]] = {}
    for i in todo:
        groups.setdefault(key(i), []).append(i)
    chunks = []
    for idx in groups.values():
        if isinstance(max_stack, int):
            size = max(1, max_stack)
        else:
            size = auto_max_stack([specs[i] for i in idx], dev)
        widths = lambda i: (_hidden_list(specs[i]), max((a for _, a in specs[i].expansions), default=1))  # noqa: E731
        chunks += list(_chunks(sorted(idx, key=widths), size))
    log.debug("run_fpe: %d trials in %d stacks of sizes %s", len(todo), len(chunks), [len(c) for c in chunks])
    bar = tqdm(total=len(todo), desc="FPE trials", unit="trial", disable=not progress or not todo)
    for chunk in chunks:
        trained = _run_fpe_chunk([specs[i] for i in chunk], [tasks[i] for i in chunk], dev, progress, [known.get(i) for i in chunk],
                                 backend, workers)
        for i, res in zip(chunk, trained):
            results[i] = res
            if store is not None:
                save_fpe_result(store, res)
        bar.update(len(chunk))
    bar.close()
    return results  # type: ignore[return-value]


def _task_data(task: DNFTask) -> tuple[torch.Tensor, ...]:
    xtr, ytr = task.train_data()
    xte, yte = task.test_data()
    return xtr.to(torch.uint8), ytr.to(torch.uint8), xte.to(torch.uint8), yte.to(torch.uint8)


def _rows(stacked: tuple[torch.Tensor, ...], rows: list[int]) -> tuple[torch.Tensor, ...]:
    """The data of trials `rows` of a stacked data tuple (no copy when it is all of them, in order)."""
    if rows == list(range(stacked[0].shape[0])):
        return stacked
    index = torch.tensor(rows, device=stacked[0].device)
    return tuple(t.index_select(0, index) for t in stacked)


def _run_fpe_chunk(
    specs: list[FPESpec],
    tasks: list[DNFTask],
    dev: torch.device,
    progress: bool,
    known: list[FPEResult | None] | None = None,
    backend: str | Backend = "auto",
    workers: int | None = None,
) -> list[FPEResult]:
    """Train one stack of trials. `known[i]`, when given, is trial i's stored
    parent and baseline with the children already stored: only its missing
    children train (from the stored parent, which is the exact state at
    expansion)."""
    known = known or [None] * len(specs)
    cfg = specs[0].train
    data = [_task_data(t) for t in tasks]
    stacked = tuple(torch.stack([d[j] for d in data]).to(dev) for j in range(4))
    finetune = range(cfg.warmup, cfg.epochs)

    parent_results: list[ModelResult | None] = [k.parent if k else None for k in known]
    dense_results: list[ModelResult | None] = [k.dense if k else None for k in known]
    fresh = [i for i, k in enumerate(known) if k is None]
    if fresh:
        xtr, ytr, xte, yte = ddata = _rows(stacked, fresh)
        parents = [MaskedMLP(tasks[i].n_vars, specs[i].hidden, tasks[i].n_outputs, seed=specs[i].init_seed()) for i in fresh]
        dense = MaskedMLPStack.from_models(parents).to(dev)
        opt, warm_losses = fit(dense, xtr, ytr, cfg, range(cfg.warmup), progress="dense warmup" if progress else False,
                               backend=backend, workers=workers)
        for i, r in zip(fresh, _results(dense, ddata, warm_losses, "bce", opt.provenance)):
            parent_results[i] = r
        _, fine_losses = fit(dense, xtr, ytr, cfg, finetune, optimizer=opt, progress="dense baseline" if progress else False,
                             backend=backend, workers=workers)
        for i, r in zip(fresh, _results(dense, ddata, torch.cat([warm_losses, fine_losses], 1), "bce", opt.provenance)):
            dense_results[i] = r
        del dense, opt, ddata
    # Every trial now has its parent and baseline, stored or just trained.
    parents_done = [r for r in parent_results if r is not None]
    dense_done = [r for r in dense_results if r is not None]
    assert len(parents_done) == len(dense_done) == len(specs)

    # Children of every trial and expansion share stacks, grouped by layout.
    jobs = [
        (i, split, alpha)
        for i, (s, k) in enumerate(zip(specs, known))
        for split, alpha in s.expansions
        if k is None or (split, alpha) not in k.children
    ]
    children = [
        expand(parents_done[i].model, alpha, split, clauses=tasks[i].clauses, seed=specs[i].split_seed(split, alpha))
        for i, split, alpha in jobs
    ]
    child_results: dict[tuple[int, str, int], ModelResult] = {
        (i, *cond): r for i, k in enumerate(known) if k is not None for cond, r in k.children.items()
    }
    if jobs:
        cdata = _rows(stacked, [i for i, _, _ in jobs])
        cstack = MaskedMLPStack.from_models(children).to(dev)
        copt, closs = fit(cstack, cdata[0], cdata[1], cfg, finetune, progress="FPE finetune" if progress else False,
                          backend=backend, workers=workers)
        for job, res in zip(jobs, _results(cstack, cdata, closs, "bce", copt.provenance)):
            child_results[job] = res
    return [
        FPEResult(
            spec=s,
            task=tasks[i],
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
) -> list[DataFPEResult]:
    """The FPE schedule (SPEC §3) for trials on one dataset, batched into stacks.

    trials: (hidden, seed) pairs; hidden is an int or a tuple of widths, and the
    trial's init and split seeds derive from `seed` as in `FPESpec`. Every
    trial's dense parent trains `cfg.warmup` epochs, is expanded into one child
    per (split, alpha) with `expand_layers(..., layers=layers)` (the clause
    split needs `data.info["clauses"]`), and children and the paired dense
    baseline train `cfg.finetune` more epochs. Trials of the same depth share
    stacks of at most `max_stack` trials (narrower ones padded). `backend` and
    `workers` are `fit`'s; `progress` shows a bar over trials and one per fit.
    Returns one result per trial, in order; models come back on the CPU.
    """
    dev = resolve_device(device)
    trials = [(h if isinstance(h, int) else tuple(int(v) for v in h), int(s)) for h, s in trials]
    expansions = [(str(s), int(a)) for s, a in expansions]
    for split, alpha in expansions:
        if split not in SPLITS:
            raise ValueError(f"expansions: split must be one of {SPLITS}, got {split!r}")
        if split_info(split).needs_clauses and not data.info.get("clauses"):
            raise ValueError(f"the {split} split needs clauses; dataset {data.name!r} has none (use random or gram)")
    widths = [(h,) if isinstance(h, int) else h for h, _ in trials]  # 8 and (8,) stack together
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(widths):
        groups.setdefault(len(w), []).append(i)
    results: list[DataFPEResult | None] = [None] * len(trials)
    chunks = [c for idx in groups.values() for c in _chunks(sorted(idx, key=lambda i: widths[i]), max(1, max_stack))]
    bar = tqdm(total=len(trials), desc=f"FPE on {data.name}", unit="trial", disable=not progress or not trials)
    for chunk in chunks:
        for i, r in zip(chunk, _run_fpe_data_chunk(data, [trials[i] for i in chunk], expansions, cfg, layers, dev, progress,
                                                          backend, workers)):
            results[i] = r
        bar.update(len(chunk))
    bar.close()
    return results  # type: ignore[return-value]


def _run_fpe_data_chunk(data, trials, expansions, cfg, layers, dev, progress, backend="auto", workers=None) -> list[DataFPEResult]:
    M = len(trials)
    loss = data.loss
    finetune = range(cfg.warmup, cfg.epochs)
    parents = [MaskedMLP(data.n_in, h, data.n_out, seed=derive_seed(s, "init")) for h, s in trials]
    ddata = data.stacked(M, dev)
    dense = MaskedMLPStack.from_models(parents).to(dev)
    kw: dict[str, Any] = dict(loss=loss, backend=backend, workers=workers)
    opt, warm = fit(dense, ddata[0], ddata[1], cfg, range(cfg.warmup), progress="dense warmup" if progress else False, **kw)
    parent_res = _results(dense, ddata, warm, loss, opt.provenance)
    _, fine = fit(dense, ddata[0], ddata[1], cfg, finetune, optimizer=opt, progress="dense baseline" if progress else False, **kw)
    dense_res = _results(dense, ddata, torch.cat([warm, fine], 1), loss, opt.provenance)
    del dense, opt
    jobs = [(i, split, alpha) for i in range(M) for split, alpha in expansions]
    child_res: dict[tuple[int, str, int], ModelResult] = {}
    if jobs:
        children = [
            expand_layers(parent_res[i].model, alpha, split, layers=layers, clauses=data.info.get("clauses"),
                          seed=derive_seed(trials[i][1], "split", split, alpha))
            for i, split, alpha in jobs
        ]
        cdata = data.stacked(len(children), dev)
        cstack = MaskedMLPStack.from_models(children).to(dev)
        copt, closs = fit(cstack, cdata[0], cdata[1], cfg, finetune, progress="FPE finetune" if progress else False, **kw)
        for job, r in zip(jobs, _results(cstack, cdata, closs, loss, copt.provenance)):
            child_res[job] = r
    return [
        DataFPEResult(dataset=data.name, hidden=h, seed=s, parent=parent_res[i], dense=dense_res[i],
                      children={(sp, a): child_res[(i, sp, a)] for sp, a in expansions})
        for i, (h, s) in enumerate(trials)
    ]
