"""A run loaded for the explorer: its networks (`ModelData`) and its task or data
(`LoadedRun`), in display terms, from the store entries its `ListedRun` names.

Networks on a Boolean task are rebuilt as models (the readings run them); other
networks are their stored tensors, flattened per layer: an MLP's (out, in)
weights, a CNN's filters as (F, C*k*k) rows and its head. Nothing here draws.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

from analyses.entries import MODELS, ListedRun, ModelRef
from fci.metrics import clause_mean_capacity, cosine_interference, feature_capacity, gram
from fci.models.mlp import MaskedMLP
from fci.store import Store, StoreEntry, StoreError
from fci.tasks import DNFTask, TaskConfig, format_clause
from fci.train import FPESpec

__all__ = ["Clause", "LoadedRun", "ModelData", "RunError", "UnknownRun", "load_run"]

Clause = tuple[tuple[int, bool], ...]


class RunError(RuntimeError):
    """A run cannot be shown; the message says why, for the page."""


class UnknownRun(RunError, LookupError):
    """No run with this id in the store."""


@dataclass
class ModelData:
    """One network of a run, with everything that does not depend on the threshold.

    layers: per layer l, (W_l (out, in) effective weights, M_l its 0/1 mask); W1/M1
    (H, n) the first layer, W2 (O or H2, H) the next; row_order: (H,) first-layer
    neurons in display order (children grouped under their parent);
    parent_index: (H,) parent neuron of each child (None otherwise); gram: (n, n)
    first-layer Gram; capacity: (n,) first-layer feature capacity. A CNN's conv
    layer l is its filters flattened, (F_l, C_l*k*k), `kernel` (k, k) and `channels`
    the C_l of each conv layer; its head reads F_L*P inputs (P positions per filter)."""

    name: str
    title: str
    model: MaskedMLP | None
    layers: list[tuple[np.ndarray, np.ndarray]]
    parent_index: np.ndarray | None
    row_order: np.ndarray
    mean_capacity: float
    cosine: float
    accuracy: float
    nnz: int
    predictions: np.ndarray | None  # (N_test, O) 0/1, the network's own outputs on the test set
    biases: list[np.ndarray] = field(default_factory=list)  # per layer l, (out_l,) effective biases
    kernel: tuple[int, ...] = ()  # a CNN's (k, k); () for an MLP
    channels: tuple[int, ...] = ()  # a CNN's input channels per conv layer

    @property
    def is_cnn(self) -> bool:
        return bool(self.kernel)

    @property
    def unit_name(self) -> str:
        """What a first-layer row is: "neuron", or a CNN's "filter"."""
        return "filter" if self.is_cnn else "neuron"

    @property
    def W1(self) -> np.ndarray:
        return self.layers[0][0]

    @property
    def b1(self) -> np.ndarray | None:
        """(H,) first-layer biases (None when not known)."""
        return self.biases[0] if self.biases else None

    @property
    def M1(self) -> np.ndarray:
        return self.layers[0][1]

    @property
    def W2(self) -> np.ndarray:
        return self.layers[1][0]

    @property
    def H(self) -> int:
        return self.W1.shape[0]

    @property
    def n_hidden_layers(self) -> int:
        return len(self.layers) - 1

    @cached_property
    def gram(self) -> np.ndarray:
        return self.gram_of(0)

    @cached_property
    def capacity(self) -> np.ndarray:
        return self.capacity_of(0)

    @cached_property
    def _per_layer(self) -> dict[tuple[str, int], Any]:  # arrays (gram, capacity) and floats (cosine)
        return {}

    def gram_of(self, l: int) -> np.ndarray:
        """(in_l, in_l) Gram matrix W_lᵀW_l of layer l (cached)."""
        if ("gram", l) not in self._per_layer:
            self._per_layer[("gram", l)] = gram(self.layers[l][0])
        return self._per_layer[("gram", l)]

    def capacity_of(self, l: int) -> np.ndarray:
        """(in_l,) feature capacity of layer l's inputs (cached)."""
        if ("capacity", l) not in self._per_layer:
            self._per_layer[("capacity", l)] = feature_capacity(self.layers[l][0])
        return self._per_layer[("capacity", l)]

    def cosine_of(self, l: int) -> float:
        """Cosine interference of layer l's neuron rows (cached)."""
        if ("cosine", l) not in self._per_layer:
            self._per_layer[("cosine", l)] = self.cosine if l == 0 else cosine_interference(self.layers[l][0])
        return self._per_layer[("cosine", l)]

    def layer_rows(self, l: int) -> np.ndarray:
        """Display order of layer l's neurons (children grouped for l = 0)."""
        return self.row_order if l == 0 else np.arange(self.layers[l][0].shape[0])

    def neuron_label(self, i: int, l: int = 0) -> str:
        """`h5`, or `h5·p2` for a child of parent neuron 2; `L2·h5` in layer 2
        (`f5`, `f5·p2`, `L2·f5` for a CNN's filters)."""
        unit = "f" if self.is_cnn else "h"
        if l > 0:
            return f"L{l + 1}·{unit}{i}"
        return f"{unit}{i}" if self.parent_index is None else f"{unit}{i}·p{int(self.parent_index[i])}"

    def picture_shape(self, l: int) -> tuple[int, ...]:
        """(C, k, k) of a CNN's conv layer l: how a filter's flattened row is drawn."""
        return (self.channels[l], *self.kernel)

    def inputs_of(self, l: int) -> tuple[np.ndarray, list[str]]:
        """(input indices of layer l >= 1 in display order, their labels): the previous
        layer's neurons, or for a CNN's conv layer the previous maps' channels × kernel offsets."""
        if self.is_cnn and l < len(self.channels):
            C, kh, kw = self.picture_shape(l)
            return np.arange(C * kh * kw), [f"{self.neuron_label(c, l - 1)} ({y},{x})"
                                            for c in range(C) for y in range(kh) for x in range(kw)]
        return self.layer_rows(l - 1), self.layer_labels(l - 1)

    def readout_inputs(self) -> tuple[np.ndarray, list[str]]:
        """(columns of the last layer in display order, their labels): the last hidden
        neurons, or a CNN head's filter × position inputs (filter-major)."""
        last = self.n_hidden_layers
        if self.is_cnn:
            F = self.layers[last - 1][0].shape[0]
            P = max(self.layers[last][0].shape[1] // max(F, 1), 1)
            return np.arange(F * P), [f"{self.neuron_label(f, last - 1)} @{p}" for f in range(F) for p in range(P)]
        return self.layer_rows(last - 1), self.layer_labels(last - 1)

    def layer_labels(self, l: int) -> list[str]:
        return [self.neuron_label(int(i), l) for i in self.layer_rows(l)]

    @cached_property
    def labels(self) -> list[str]:
        """First-layer neuron labels in display order."""
        return self.layer_labels(0)


@dataclass
class LoadedRun:
    """A run's networks and its task or data, in display terms.

    task: the Boolean task (None for other data); order: (n,) inputs in display
    order (by clause on a Boolean task); col_clause: (n,) the clause of each
    displayed column (first clause reading the variable, -1 for distractors and
    for non-Boolean data); polarity: (n,) +1, or -1 where that clause negates the
    variable; x_test: (N, n) the task's test inputs (None without a task);
    out_labels: names of the outputs (`y0`, or the class `0`..`9`); image_shape:
    (C, H, W) of image inputs (first-layer rows drawn as pictures), () otherwise."""

    info: ListedRun
    task: DNFTask | None
    clauses: list[Clause]
    order: np.ndarray
    col_clause: np.ndarray
    polarity: np.ndarray
    models: dict[str, ModelData]
    x_test: np.ndarray | None
    input_names: list[str] = field(default_factory=list)
    out_labels: list[str] = field(default_factory=list)
    image_shape: tuple[int, ...] = ()
    readings: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # app.readings.network_reading
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # panels of the run (app.views)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def n_clauses(self) -> int:
        return len(self.clauses)

    @property
    def has_clauses(self) -> bool:
        return bool(self.clauses)

    @property
    def form(self) -> str:
        """The task's formula, "dnf" or "cnf" ("dnf" without a task)."""
        return self.task.form if self.task is not None else "dnf"

    @property
    def n_hidden_layers(self) -> int:
        return min(m.n_hidden_layers for m in self.models.values())

    @cached_property
    def labels(self) -> list[str]:
        """Column labels: `x3` / `¬x3` (the literal its clause reads), or the input's name."""
        if not self.has_clauses:
            return [self.input_names[int(v)] for v in self.order]
        return [("¬" if p < 0 else "") + f"x{v}" for v, p in zip(self.order.tolist(), self.polarity[self.order].tolist())]

    def clause_label(self, c: int) -> str:
        return format_clause(self.clauses[c], self.form)

    @property
    def groups(self) -> list[tuple[int, ...]]:
        """Per output, the clauses it ORs (`task.groups`; empty without a task)."""
        return list(self.task.groups) if self.task is not None else []

    def clause_at_column(self, label: str) -> int | None:
        """The clause shown at a column label (`x3`, `¬x3`), or None (distractor/unknown)."""
        try:
            col = self.labels.index(label)
        except ValueError:
            return None
        c = int(self.col_clause[col])
        return c if c >= 0 else None


def _dense_columns(clauses: Sequence[Clause], order: Sequence[int] | np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    first_clause = np.full(n, -1, dtype=np.int64)
    polarity = np.ones(n, dtype=np.int64)
    for c, clause in enumerate(clauses):
        for v, positive in clause:
            if first_clause[v] < 0:
                first_clause[v] = c
                polarity[v] = 1 if positive else -1
    return first_clause[np.asarray(order)], polarity



def _layers(tensors: dict[str, torch.Tensor]) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """Per layer, (effective W flattened to (out, in), its 0/1 mask) and the effective biases."""
    n = sum(1 for k in tensors if re.fullmatch(r"W\d+", k))
    layers, biases = [], []
    for l in range(n):
        W, M = tensors[f"W{l}"].float(), tensors[f"M{l}"].float()
        b, m = tensors[f"b{l}"].float(), tensors[f"m{l}"].float()
        layers.append(((W * M).reshape(W.shape[0], -1).numpy(), M.reshape(M.shape[0], -1).numpy()))
        biases.append((b * m).numpy())
    return layers, biases


def _nnz(layers: list[tuple[np.ndarray, np.ndarray]], biases: list[np.ndarray]) -> int:
    return int(sum(int(np.count_nonzero(W)) for W, _ in layers) + sum(int(np.count_nonzero(b)) for b in biases))


def _model_data(name: str, title: str, tensors: dict[str, torch.Tensor], model: MaskedMLP | None, accuracy: float,
                x_test: torch.Tensor | None, clauses: list[Clause], parent_index: np.ndarray | None) -> ModelData:
    """One network's display data; `model` is None for a CNN (its tensors are drawn, not run)."""
    layers, biases = _layers(tensors)
    kernel: tuple[int, ...] = ()
    channels: tuple[int, ...] = ()
    if model is None:
        convs = [tensors[f"W{l}"] for l in range(len(layers)) if tensors[f"W{l}"].dim() == 4]
        kernel = tuple(int(v) for v in convs[0].shape[2:])
        channels = tuple(int(W.shape[1]) for W in convs)
    W1 = layers[0][0]
    H = W1.shape[0]
    row_order = np.arange(H) if parent_index is None else np.argsort(parent_index, kind="stable")
    cap = feature_capacity(W1)
    preds = None
    if x_test is not None and model is not None:
        with torch.no_grad():
            preds = (model(x_test) > 0).to(torch.float32).numpy()
    return ModelData(
        name=name, title=title, model=model, layers=layers, parent_index=parent_index, row_order=row_order,
        mean_capacity=clause_mean_capacity(cap, clauses) if clauses else float(np.mean(cap)),
        cosine=cosine_interference(W1), accuracy=accuracy, nnz=_nnz(layers, biases), predictions=preds,
        biases=biases, kernel=kernel, channels=channels,
    )


def _model(tensors: dict[str, torch.Tensor], what: str, key: str) -> MaskedMLP:
    if not tensors:
        raise RunError(f"store entry {key} holds no tensors for the {what}")
    try:
        return MaskedMLP.from_tensors(tensors)
    except ValueError as e:
        raise RunError(f"store entry {key}: the {what} cannot be rebuilt ({e})") from None


def _check_tensors(tensors: dict[str, torch.Tensor], what: str, key: str) -> None:
    """A CNN's tensors: every layer's weight, bias and masks, conv layers first."""
    n = sum(1 for k in tensors if re.fullmatch(r"W\d+", k))
    if n < 2:
        raise RunError(f"store entry {key} holds no layers for the {what}")
    for l in range(n):
        for k in (f"W{l}", f"b{l}", f"M{l}", f"m{l}"):
            if k not in tensors:
                raise RunError(f"store entry {key}: the {what} lacks tensor {k!r}")
    if tensors["W0"].dim() != 4:
        raise RunError(f"store entry {key}: the {what}'s first layer is not a convolution (shape "
                       f"{tuple(tensors['W0'].shape)})")


def _ref_tensors(tensors: dict[str, torch.Tensor], ref: ModelRef) -> dict[str, torch.Tensor]:
    """A network's own tensors of an entry, prefix stripped (an initialisation
    gets full masks and zero biases)."""
    n = len(ref.prefix)
    own = {k[n:]: v for k, v in tensors.items() if k.startswith(ref.prefix) and "." not in k[n:]}
    if ref.init_only:
        for l in range(sum(1 for k in own if re.fullmatch(r"W\d+", k))):
            W = own[f"W{l}"]
            own.update({f"b{l}": torch.zeros(W.shape[0]), f"M{l}": torch.ones_like(W), f"m{l}": torch.ones(W.shape[0])})
    return own


def _make_task(info: ListedRun) -> DNFTask:
    """The run's Boolean task, redrawn as every study draws it (`FPESpec.make_task`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            task = TaskConfig.from_dict(json.loads(info.task_config))
            if info.task_seed is not None:
                return DNFTask.from_config(task, info.task_seed)
            spec = FPESpec(task=task, hidden=1, seed=info.trial, expansions=())
        except (ValueError, TypeError) as e:
            raise RunError(f"run {info.id}: {e}") from None
    return spec.make_task()


def _input_names(info: ListedRun, n: int, first: ModelData) -> list[str]:
    """Names of the first layer's inputs: pixels `r3c4` of an image (`ch1 r3c4` with
    several channels), a CNN filter's kernel offsets, else `i7`."""
    shape = first.picture_shape(0) if first.is_cnn else info.image_shape
    if len(shape) == 3 and int(np.prod(shape)) == n:
        C, h, w = shape
        return [(f"ch{c} " if C > 1 else "") + f"r{y}c{x}" for c in range(C) for y in range(h) for x in range(w)]
    return [f"i{i}" for i in range(n)]


def _parent_index(info: ListedRun, own: dict[str, dict[str, torch.Tensor]]) -> np.ndarray | None:
    """(H_child,) the parent neuron of each first-layer child neuron, when the run shows a child."""
    if "child" not in own:
        return None
    child = own["child"]
    pidx = child["parent_index"].numpy().astype(np.int64) if "parent_index" in child else None
    refs = dict(info.refs)
    if "parent" in own and not refs["parent"].init_only:
        Hp, Hc = int(own["parent"]["W0"].shape[0]), int(child["W0"].shape[0])
        if pidx is None and Hc == Hp * info.alpha:  # SPEC §3: parent i owns children i*alpha .. i*alpha + alpha - 1
            pidx = np.arange(Hc) // info.alpha
        elif pidx is None and info.study == "fpe":
            raise RunError(f"run {info.id}: the child has {Hc} neurons and no parent_index; "
                           f"cannot map it to a parent of {Hp} neurons at alpha={info.alpha}")
        if pidx is not None and (pidx.shape != (Hc,) or (pidx.size and (pidx.min() < 0 or pidx.max() >= Hp))):
            raise RunError(f"run {info.id}: parent_index does not map {Hc} children to {Hp} parent neurons")
    return pidx


def load_run(store: Store, info: ListedRun) -> LoadedRun:
    """Load a run's networks and rebuild its task; raises RunError (with a
    message for the page) when an entry is corrupt or inconsistent."""
    entries: dict[str, StoreEntry] = {}
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    try:
        for _, ref in info.refs:
            if ref.key not in entries:
                entries[ref.key] = store.load(ref.key)
                tensors[ref.key] = entries[ref.key].tensors
    except StoreError as e:
        raise RunError(str(e)) from None
    task = _make_task(info) if info.has_clauses else None
    refs = dict(info.refs)
    if task is not None and "child" in refs:
        stored = entries[refs["child"].key].metrics.get("clauses")
        if stored is not None and [tuple((int(v), bool(p)) for v, p in c) for c in stored] != task.clauses:
            raise RunError(f"run {info.id}: the clauses stored with the run differ from those regenerated from its "
                           "config; the task generator changed since it was trained")
    x_test_t = task.test_data()[0] if task is not None else None
    clauses = task.clauses if task is not None else []
    own = {slot: _ref_tensors(tensors[ref.key], ref) for slot, ref in info.refs}
    mlps: dict[str, MaskedMLP | None] = {}
    for slot, ref in info.refs:
        if info.architecture == "cnn":
            _check_tensors(own[slot], ref.title, ref.key)
            mlps[slot] = None
        else:
            mlps[slot] = _model(own[slot], ref.title, ref.key)
    order_slots = sorted(refs, key=lambda s: list(MODELS).index(s))
    pidx = _parent_index(info, own)
    n_in = int(np.prod(own[order_slots[0]]["W0"].shape[1:]))
    if task is not None:
        if task.n_vars != n_in:
            raise RunError(f"run {info.id}: the regenerated task has {task.n_vars} variables, the stored models "
                           f"{n_in} inputs")
        order = np.asarray(task.variable_order(), dtype=np.int64)
        col_clause, polarity = _dense_columns(clauses, order, task.n_vars)
    else:
        order, col_clause, polarity = np.arange(n_in), np.full(n_in, -1), np.ones(n_in, dtype=np.int64)
    models = {slot: _model_data(slot, refs[slot].title, own[slot], mlps[slot], float(refs[slot].accuracy), x_test_t,
                                clauses, pidx if slot == "child" else None) for slot in order_slots}
    first = next(iter(models.values()))
    n_out = first.layers[-1][0].shape[0]
    out_labels = ([str(k) for k in range(n_out)] if info.dataset.startswith("digits") else [f"y{o}" for o in range(n_out)])
    return LoadedRun(info=info, task=task, clauses=clauses, order=order, col_clause=col_clause, polarity=polarity,
                     models=models, x_test=None if x_test_t is None else x_test_t.numpy(),
                     input_names=_input_names(info, n_in, first), out_labels=out_labels,
                     image_shape=tuple(first.picture_shape(0)) if first.is_cnn else tuple(info.image_shape))
