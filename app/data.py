"""What the explorer shows, as data: the run catalogue, loaded runs and their code
analysis at a threshold.

A **run** is one FPE child entry of the store with its paired dense baseline (the
entry with the same config except ``condition``/``alpha``) and the parent at
expansion (stored inside the child entry as ``parent.*`` tensors). Its id is the
child entry's key, so a link to a run stays valid as long as the entry exists.

Nothing here draws; `app.figures` and `app.panels` turn these objects into
figures and components. `Explorer` holds the caches: the catalogue (rescanned
when the store directory changes), loaded runs and per-(run, threshold)
analyses (LRU), so an interaction only recomputes what it has to.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import networkx as nx
import numpy as np
import torch

from fci.codes import (
    ClauseSplitView,
    circuit_agreement,
    clause_recovery,
    clause_table,
    collision_graph,
    decode,
    sign_codes,
    split_view,
)
from fci.metrics import clause_mean_capacity, cosine_interference, feature_capacity, gram
from fci.model import MaskedMLP
from fci.store import Store, StoreEntry, StoreError
from fci.tasks import DNFTask, TaskConfig, format_clause
from fci.train import FPESpec, split_tensors

__all__ = [
    "MODELS",
    "FILTERS",
    "RunInfo",
    "Catalogue",
    "ModelData",
    "LoadedRun",
    "ModelCodes",
    "RunAnalysis",
    "RunError",
    "UnknownRun",
    "Explorer",
    "scan_store",
    "load_run",
    "analyse",
]

log = logging.getLogger(__name__)

Clause = tuple[tuple[int, bool], ...]

#: The three networks of a run, in display order, with their column titles.
MODELS: dict[str, str] = {
    "parent": "Dense parent at expansion",
    "child": "FPE child after fine-tuning",
    "dense": "Paired dense baseline",
}

#: Run fields the picker filters on.
FILTERS = ("task", "hidden", "alpha", "split", "trial")


class RunError(RuntimeError):
    """A run cannot be shown; the message says why, for the page."""


class UnknownRun(RunError, LookupError):
    """No run with this id in the store."""


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class RunInfo:
    """One run of the picker: an FPE child entry and its paired dense entry."""

    id: str  # the child entry's store key
    dense_key: str
    task: str  # short task description, e.g. "C=8 k=3 n=24 disjoint dnf"
    hidden: str  # parent width(s), e.g. "8" or "8-8"
    alpha: int
    split: str
    trial: int  # the trial seed
    epochs: tuple[int, int]  # (warmup, finetune)
    child_accuracy: float
    dense_accuracy: float

    @property
    def label(self) -> str:
        return (f"{self.split} α={self.alpha} · {self.task} · H={self.hidden} · trial {self.trial} · "
                f"acc {self.child_accuracy:.3f} vs dense {self.dense_accuracy:.3f}")

    def field(self, name: str) -> Any:
        if name not in FILTERS:
            raise ValueError(f"unknown run filter {name!r}; expected one of {FILTERS}")
        return getattr(self, name)


@dataclass
class Catalogue:
    """Every showable run of a store, and why other entries were left out."""

    runs: list[RunInfo]
    warnings: list[str] = field(default_factory=list)

    def get(self, run_id: str | None) -> RunInfo | None:
        return next((r for r in self.runs if r.id == run_id), None)

    def values(self, name: str) -> list[Any]:
        """Distinct values of filter `name`, sorted."""
        return sorted({r.field(name) for r in self.runs}, key=lambda v: (str(type(v)), v))

    def select(self, **filters: Sequence[Any] | None) -> list[RunInfo]:
        """Runs whose fields lie in the given value lists (None or empty: any value)."""
        keep = {k: set(v) for k, v in filters.items() if v}
        return [r for r in self.runs if all(r.field(k) in vs for k, vs in keep.items())]


def _task_label(task_cfg: dict[str, Any]) -> str:
    tc = TaskConfig.from_dict(task_cfg)
    outputs = tc.outputs if isinstance(tc.outputs, str) else f"{len(tc.outputs)} groups"
    return f"C={tc.n_clauses} k={tc.clause_size} n={tc.resolved_n_vars} {tc.layout} {outputs}"


def _pair_key(cfg: dict[str, Any]) -> str:
    """What a child and its dense baseline share: the config less format, key,
    condition and alpha."""
    rest = {k: v for k, v in cfg.items() if k not in ("format", "key", "condition", "alpha")}
    return json.dumps(rest, sort_keys=True)


def scan_store(store: Store) -> Catalogue:
    """List the runs of `store`. Unreadable entries and children without their dense
    baseline are left out with a warning each (never an exception)."""
    notes: list[str] = []
    entries: dict[str, StoreEntry] = {}
    for key in store.keys():
        try:
            entries[key] = store.load(key)
        except StoreError as e:
            notes.append(f"skipped a corrupt store entry: {e}")
            log.warning("skipping %s", e)
    dense: dict[str, StoreEntry] = {}
    children: list[StoreEntry] = []
    for e in entries.values():
        if e.config.get("kind") != "boolean-fpe":
            continue
        if e.config.get("condition") == "dense":
            dense[_pair_key(e.config)] = e
        else:
            children.append(e)
    runs = []
    for e in children:
        try:
            cfg, m = e.config, e.metrics
            base = dense.get(_pair_key(cfg))
            if base is None:
                notes.append(f"skipped run {e.key}: its paired dense baseline is not in the store")
                continue
            hidden = cfg["hidden"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                task = _task_label(cfg["task"])
            runs.append(RunInfo(
                id=e.key,
                dense_key=base.key,
                task=task,
                hidden=str(hidden) if isinstance(hidden, int) else "-".join(map(str, hidden)),
                alpha=int(cfg["alpha"]),
                split=str(cfg["condition"]),
                trial=int(cfg["seed"]),
                epochs=(int(cfg["train"]["warmup"]), int(cfg["train"]["finetune"])),
                child_accuracy=float(m["test_accuracy"]),
                dense_accuracy=float(base.metrics["test_accuracy"]),
            ))
        except (KeyError, TypeError, ValueError) as err:
            notes.append(f"skipped run {e.key}: malformed config or metrics ({type(err).__name__}: {err})")
    runs.sort(key=lambda r: (r.task, len(r.hidden), r.hidden, r.trial, r.split, r.alpha))
    return Catalogue(runs=runs, warnings=notes)


# --------------------------------------------------------------------------- loaded runs


@dataclass
class ModelData:
    """One network of a run, with everything that does not depend on the threshold.

    W1: (H, n) effective first-layer weights; M1: (H, n) its 0/1 mask; W2: (O, H)
    effective next-layer weights; row_order: (H,) neurons in display order (children
    grouped under their parent); parent_index: (H,) parent neuron of each child
    (None for a dense network); gram: (n, n); capacity: (n,) feature capacity."""

    name: str
    title: str
    model: MaskedMLP
    W1: np.ndarray
    M1: np.ndarray
    W2: np.ndarray
    parent_index: np.ndarray | None
    row_order: np.ndarray
    gram: np.ndarray
    capacity: np.ndarray
    mean_capacity: float
    cosine: float
    accuracy: float
    nnz: int
    predictions: np.ndarray  # (N_test, O) 0/1, the network's own outputs on the test set

    @property
    def H(self) -> int:
        return self.W1.shape[0]

    def neuron_label(self, i: int) -> str:
        """`h5`, or `h5·p2` for a child of parent neuron 2."""
        return f"h{i}" if self.parent_index is None else f"h{i}·p{int(self.parent_index[i])}"

    @cached_property
    def labels(self) -> list[str]:
        """Neuron labels in display order."""
        return [self.neuron_label(int(i)) for i in self.row_order]


@dataclass
class LoadedRun:
    """A run's three networks and its task, in display terms.

    order: (n,) variables ordered by clause (`task.variable_order()`); col_clause:
    (n,) the clause of each displayed column (first clause reading the variable, -1
    for distractors); polarity: (n,) +1, or -1 where that clause negates the
    variable; x_test: (N, n) the task's test inputs."""

    info: RunInfo
    task: DNFTask
    clauses: list[Clause]
    order: np.ndarray
    col_clause: np.ndarray
    polarity: np.ndarray
    models: dict[str, ModelData]
    x_test: np.ndarray

    @property
    def n_clauses(self) -> int:
        return len(self.clauses)

    @cached_property
    def labels(self) -> list[str]:
        """`x3` / `¬x3` per displayed column (the literal its clause reads)."""
        return [("¬" if p < 0 else "") + f"x{v}" for v, p in zip(self.order.tolist(), self.polarity[self.order].tolist())]

    def clause_label(self, c: int) -> str:
        return format_clause(self.clauses[c])

    def clause_at_column(self, label: str) -> int | None:
        """The clause shown at a column label (`x3`, `¬x3`), or None (distractor/unknown)."""
        try:
            col = self.labels.index(label)
        except ValueError:
            return None
        c = int(self.col_clause[col])
        return c if c >= 0 else None


def _dense_columns(clauses: Sequence[Clause], order: Sequence[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    first_clause = np.full(n, -1, dtype=np.int64)
    polarity = np.ones(n, dtype=np.int64)
    for c, clause in enumerate(clauses):
        for v, positive in clause:
            if first_clause[v] < 0:
                first_clause[v] = c
                polarity[v] = 1 if positive else -1
    return first_clause[np.asarray(order)], polarity


def _model_data(name: str, model: MaskedMLP, accuracy: float, x_test: torch.Tensor, clauses: list[Clause],
                parent_index: np.ndarray | None) -> ModelData:
    (W1, _), (W2, _) = model.effective_weights()[:2]
    W1n, W2n = W1.numpy(), W2.numpy()
    H = W1n.shape[0]
    if parent_index is None:
        row_order = np.arange(H)
    else:
        row_order = np.argsort(parent_index, kind="stable")
    cap = feature_capacity(W1n)
    with torch.no_grad():
        preds = (model(x_test) > 0).to(torch.float32).numpy()
    return ModelData(
        name=name,
        title=MODELS[name],
        model=model,
        W1=W1n,
        M1=model.weight_mask(0).detach().numpy(),
        W2=W2n,
        parent_index=parent_index,
        row_order=row_order,
        gram=gram(W1n),
        capacity=cap,
        mean_capacity=clause_mean_capacity(cap, clauses),
        cosine=cosine_interference(W1n),
        accuracy=accuracy,
        nnz=model.nnz(),
        predictions=preds,
    )


def _model(tensors: dict[str, torch.Tensor], what: str, key: str) -> MaskedMLP:
    if not tensors:
        raise RunError(f"store entry {key} holds no tensors for the {what}")
    try:
        return MaskedMLP.from_tensors(tensors)
    except ValueError as e:
        raise RunError(f"store entry {key}: the {what} cannot be rebuilt ({e})") from None


def load_run(store: Store, info: RunInfo) -> LoadedRun:
    """Load a run's three networks and rebuild its task; raises RunError (with a
    message for the page) when an entry is corrupt or inconsistent."""
    try:
        child_e, dense_e = store.load(info.id), store.load(info.dense_key)
        own, parent_t = split_tensors(child_e.tensors)
        dense_t, _ = split_tensors(dense_e.tensors)
    except StoreError as e:
        raise RunError(str(e)) from None
    parent = _model(parent_t, "parent at expansion", info.id)
    child = _model(own, "FPE child", info.id)
    dense = _model(dense_t, "dense baseline", info.dense_key)
    cfg = child_e.config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            spec = FPESpec.from_entry_config(cfg)
        except ValueError as e:
            raise RunError(f"run {info.id}: {e}") from None
    task = spec.make_task()
    stored = child_e.metrics.get("clauses")
    if stored is not None and [tuple((int(v), bool(p)) for v, p in c) for c in stored] != task.clauses:
        raise RunError(f"run {info.id}: the clauses stored with the run differ from those regenerated from its "
                       "config; the task generator changed since it was trained")
    Hp, Hc = parent.hidden[0], child.hidden[0]
    if child.parent_index is not None:
        pidx = child.parent_index.numpy().astype(np.int64)
    elif Hc == Hp * info.alpha:  # SPEC §3: parent i owns children i*alpha .. i*alpha + alpha - 1
        pidx = np.arange(Hc) // info.alpha
    else:
        raise RunError(f"run {info.id}: the child has {Hc} neurons and no parent_index; "
                       f"cannot map it to a parent of {Hp} neurons at alpha={info.alpha}")
    if pidx.shape != (Hc,) or (pidx.size and (pidx.min() < 0 or pidx.max() >= Hp)):
        raise RunError(f"run {info.id}: parent_index does not map {Hc} children to {Hp} parent neurons")
    x_test, _ = task.test_data()
    clauses = task.clauses
    order = np.asarray(task.variable_order(), dtype=np.int64)
    col_clause, polarity = _dense_columns(clauses, order, task.n_vars)
    accuracy = {
        "parent": child_e.metrics.get("parent", {}).get("test_accuracy", math.nan),
        "child": child_e.metrics.get("test_accuracy", math.nan),
        "dense": dense_e.metrics.get("test_accuracy", math.nan),
    }
    nets = {"parent": (parent, None), "child": (child, pidx), "dense": (dense, None)}
    models = {name: _model_data(name, m, float(accuracy[name]), x_test, clauses, p) for name, (m, p) in nets.items()}
    return LoadedRun(info=info, task=task, clauses=clauses, order=order, col_clause=col_clause, polarity=polarity,
                     models=models, x_test=x_test.numpy())


# --------------------------------------------------------------------------- code analysis


@dataclass
class ModelCodes:
    """One network's codes at a threshold.

    signs: (H, n) sign categories of W1; rows: `fci.codes.clause_table` rows (channel,
    readout, votes, collisions, polysemantic, capacity per clause); polysemanticity:
    (H,) clauses per neuron; graph: the collision graph; agreement: decoded-circuit
    agreement with the network's own test-set outputs."""

    signs: np.ndarray
    rows: list[dict[str, Any]]
    polysemanticity: np.ndarray
    graph: nx.Graph
    agreement: float
    n_decoded: int
    recovery_f1: float

    @property
    def channels(self) -> list[list[int]]:
        return [r["channel"] for r in self.rows]


@dataclass
class RunAnalysis:
    """A run's codes at one relative threshold: per network, and the per-clause
    before/after view of the split (parent -> child)."""

    run: LoadedRun
    threshold: float
    codes: dict[str, ModelCodes]
    split: list[ClauseSplitView]


def _codes(m: ModelData, clauses: list[Clause], x_test: np.ndarray, threshold: float) -> ModelCodes:
    rows = clause_table(m.W1, m.W2, clauses, threshold=threshold)
    poly = np.zeros(m.H, dtype=np.int64)
    for r in rows:
        poly[r["channel"]] += 1
    try:
        circuit = decode(m.model, threshold=threshold)
        agreement = circuit_agreement(circuit, m.predictions, x_test)
        n_decoded = len(circuit.clauses)
        f1 = clause_recovery(circuit.clauses, clauses)["f1"]
    except ValueError as e:  # e.g. more than one hidden layer: decode reads one
        log.info("decode skipped for the %s: %s", m.name, e)
        agreement, n_decoded, f1 = math.nan, 0, math.nan
    return ModelCodes(
        signs=sign_codes(m.W1, threshold=threshold),
        rows=rows,
        polysemanticity=poly,
        graph=collision_graph(m.W1, clauses, threshold=threshold),
        agreement=agreement,
        n_decoded=n_decoded,
        recovery_f1=f1,
    )


def analyse(run: LoadedRun, threshold: float) -> RunAnalysis:
    """The code analysis of every network of `run` at a relative threshold."""
    codes = {name: _codes(m, run.clauses, run.x_test, threshold) for name, m in run.models.items()}
    child = run.models["child"]
    views = split_view(run.models["parent"].W1, child.W1, child.parent_index, run.clauses,
                       threshold=threshold, child_mask=child.M1)
    return RunAnalysis(run=run, threshold=threshold, codes=codes, split=views)


# --------------------------------------------------------------------------- caches


class _LRU:
    """A small thread-safe LRU of computed values (exceptions are not cached)."""

    def __init__(self, size: int):
        self.size = size
        self._d: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        value = make()
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


class Explorer:
    """The explorer's view of a results store, with caches.

    `catalogue()` is rescanned when the store directory changes (an entry added or
    removed); `run(id)` and `analysis(id, threshold)` are LRU-cached."""

    def __init__(self, data_dir: str | Path = "data", cache_size: int = 8):
        self.store = Store(data_dir)
        self._catalogue: Catalogue | None = None
        self._stamp: Any = None
        self._lock = threading.Lock()
        self._runs = _LRU(cache_size)
        self._analyses = _LRU(4 * cache_size)

    def _store_stamp(self) -> Any:
        try:
            st = self.store.dir.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_ino

    def catalogue(self) -> Catalogue:
        stamp = self._store_stamp()
        with self._lock:
            if self._catalogue is None or stamp != self._stamp:
                self._catalogue, self._stamp = scan_store(self.store), stamp
            return self._catalogue

    def run(self, run_id: str) -> LoadedRun:
        """A loaded run; UnknownRun for an id not in the catalogue, RunError when it
        cannot be loaded."""
        info = self.catalogue().get(run_id)
        if info is None:
            raise UnknownRun(f"unknown run {run_id!r}: no such run in {self.store.dir}")
        return self._runs.get(run_id, lambda: load_run(self.store, info))

    def analysis(self, run_id: str, threshold: float) -> RunAnalysis:
        t = round(float(threshold), 6)
        return self._analyses.get((run_id, t), lambda: analyse(self.run(run_id), t))
