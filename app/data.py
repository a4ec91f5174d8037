"""What the explorer shows, as data: the run catalogue, loaded runs and their code
analysis at a threshold.

A **run** is what one page shows side by side: up to three networks in the slots
``parent`` / ``child`` / ``dense`` (`MODELS`). Every stored model kind becomes runs
(`SCANNERS`, one scanner per store ``kind``):

- ``boolean-fpe`` (`python -m fci`, the demo): an FPE child entry, its paired dense
  baseline (the entry with the same config except ``condition``/``alpha``) and the
  parent at expansion (``parent.*`` tensors of the child entry). Its id is the child
  entry's key, so a link to it stays valid as long as the entry exists.
- ``real_data-job`` (digits / embeddings) and ``structured_sparsity-job`` (clause,
  random, N:M and dynamic children of one parent): one run per child of the job,
  with the job's parent and dense baseline; id ``<key>/<child prefix>``.
- ``wide_sparse-job`` (one dense, statically sparse or FPE model per entry) and
  ``effective_density-job`` (a deep dense net, shown after training beside its
  initialisation): one run per entry, id ``<key>``.
- ``fpe`` (`fci.train.run_fpe` on a `DatasetSpec`: digits, embeddings, a fixed
  Boolean task; what deep_fpe, real_data and wide_sparse train): like
  ``boolean-fpe``, one run per child entry with its dense baseline and parent.
- ``deep_fpe-job`` entries keep result rows only (their models are ``fpe``
  entries): they are counted in a catalogue note, not listed.

Networks on a Boolean task get the clause analysis (`fci.codes`); networks on
other data (digits, embeddings) get weights, Gram, capacity, interference and
the per-class readout, per layer. Nothing here draws; `app.figures` and
`app.panels` turn these objects into figures and components. `Explorer` holds
the caches: the catalogue (rescanned when the store directory changes), loaded
runs and per-(run, threshold) analyses (LRU).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch

from analyses.columns import canonical_row
from fci.codes import (
    ClauseSplitView,
    DecodedCircuit,
    circuit_agreement,
    clause_recovery,
    clause_table,
    collision_graph,
    decode,
    decode_function,
    sign_codes,
    split_view,
    true_formula_agreement,
)
from fci.metrics import (
    clause_mean_capacity,
    cosine_interference,
    feature_capacity,
    gram,
)
from fci.models.mlp import MaskedMLP
from fci.store import Store, StoreEntry, StoreError
from fci.tasks import DNFTask, TaskConfig, format_clause
from fci.train import FPESpec

__all__ = [
    "FILTERS",
    "HEADLINE",
    "MODELS",
    "SCANNERS",
    "Catalogue",
    "Explorer",
    "LoadedRun",
    "ModelCodes",
    "ModelData",
    "ModelRef",
    "NetworkReading",
    "OutputReading",
    "RunAnalysis",
    "RunError",
    "RunInfo",
    "TermReading",
    "Threshold",
    "UnknownRun",
    "analyse",
    "load_run",
    "natural_key",
    "read_network",
    "scan_store",
]

log = logging.getLogger(__name__)

Clause = tuple[tuple[int, bool], ...]
#: A sign threshold: "auto" (each neuron's two-cluster split of |w|, `fci.codes`'
#: default) or a fraction of each neuron's own max|w|.
Threshold = float | str

#: The three slots of a run, in display order, with their default column titles.
MODELS: dict[str, str] = {
    "parent": "Dense parent at expansion",
    "child": "FPE child after fine-tuning",
    "dense": "Paired dense baseline",
}

#: Run fields the picker filters on.
FILTERS = ("study", "dataset", "task", "hidden", "alpha", "split", "trial")

#: The headline configuration (SPEC: 8 clauses, 8 neurons, alpha 2, clause split):
#: the landing run when it is stored.
HEADLINE = {"study": "fpe", "dataset": "boolean", "n_clauses": 8, "hidden": "8", "alpha": 2, "split": "clause"}


class RunError(RuntimeError):
    """A run cannot be shown; the message says why, for the page."""


class UnknownRun(RunError, LookupError):
    """No run with this id in the store."""


def natural_key(v: Any) -> tuple:
    """Sort key that orders numbers numerically, also inside strings
    (`2 < 4 < 16`, `C=4 < C=16`, `8 < 8-8`)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v))
    parts = re.split(r"(\d+(?:\.\d+)?)", str(v))
    return (1, tuple((1, float(p), "") if k % 2 else (0, 0.0, p.lower()) for k, p in enumerate(parts)))


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class ModelRef:
    """Where one network of a run lives: the store entry `key`, the prefix of its
    tensor names there ("" for the entry's own model, "parent.", "clause_nm." ...),
    its column title and its test accuracy. `init_only`: only weight tensors
    (`<prefix>W<l>`) are stored (an initialisation: no masks, zero biases)."""

    key: str
    prefix: str
    title: str
    accuracy: float
    init_only: bool = False


@dataclass(frozen=True)
class RunInfo:
    """One run of the picker.

    study: the producing command ("fpe" for `python -m fci` / the demo, else the
    analyses module); dataset: "boolean", "digits", ...; task: short task or data
    description; hidden: parent width(s) ("8" or "8-8"); split: what the shown
    child is (an FPE split, "sparse", "clause_nm", "dense", ...); refs: (slot,
    ModelRef) per network shown; task_config: the Boolean task's TaskConfig dict
    as JSON ("" for other data), its task seed `task_seed`, or deriving from
    `trial` as in `FPESpec.make_task`."""

    id: str
    task: str
    hidden: str
    alpha: int
    split: str
    trial: int
    epochs: tuple[int, int]
    child_accuracy: float
    dense_accuracy: float
    dense_key: str = ""
    study: str = "fpe"
    dataset: str = "boolean"
    refs: tuple[tuple[str, ModelRef], ...] = ()
    task_config: str = ""
    n_clauses: int = 0
    task_seed: int | None = None  # a fixed task's seed (a DatasetSpec's); None: derived from `trial`

    @property
    def label(self) -> str:
        acc = f"acc {self.child_accuracy:.3f}"
        if not math.isnan(self.dense_accuracy) and len(self.refs) > 1:
            acc += f" vs dense {self.dense_accuracy:.3f}"
        what = f"{self.split} α={self.alpha}" if self.alpha > 1 else self.split
        return f"{self.study} · {self.dataset} · {what} · {self.task} · H={self.hidden} · trial {self.trial} · {acc}"

    @property
    def group(self) -> str:
        """The picker group: study and dataset."""
        return f"{self.study} · {self.dataset}"

    @property
    def has_clauses(self) -> bool:
        return bool(self.task_config)

    def field(self, name: str) -> Any:
        if name not in FILTERS:
            raise ValueError(f"unknown run filter {name!r}; expected one of {FILTERS}")
        return getattr(self, name)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("·", " ").lower()).strip()


def _token_pattern(token: str) -> re.Pattern:
    """A search token as a whole-word pattern ("trial 4" does not match "trial 42")."""
    words = [re.escape(w) for w in token.split()]
    return re.compile(r"(?<![\w.])" + r"\s+".join(words) + r"(?![\w.])")


def search_tokens(query: str | None) -> list[str]:
    """The tokens of a picker search: split at `·`, `,`, `;` or `|`; each token
    must match the run label as a whole word sequence (case-insensitive)."""
    return [t for t in (_normalise(p) for p in re.split(r"[·,;|]", query or "")) if t]


@dataclass
class Catalogue:
    """Every showable run of a store, and why other entries were left out."""

    runs: list[RunInfo]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @cached_property
    def _by_id(self) -> dict[str, RunInfo]:
        return {r.id: r for r in self.runs}

    def get(self, run_id: str | None) -> RunInfo | None:
        return self._by_id.get(run_id) if run_id is not None else None

    def values(self, name: str) -> list[Any]:
        """Distinct values of filter `name`, in natural (numeric) order."""
        return sorted({r.field(name) for r in self.runs}, key=natural_key)

    def select(self, query: str | None = None, **filters: Sequence[Any] | None) -> list[RunInfo]:
        """Runs whose fields lie in the given value lists (None or empty: any value)
        and whose label matches every token of `query` (`search_tokens`)."""
        keep = {k: set(v) for k, v in filters.items() if v}
        runs = [r for r in self.runs if all(r.field(k) in vs for k, vs in keep.items())]
        pats = [_token_pattern(t) for t in search_tokens(query)]
        if pats:
            runs = [r for r in runs if all(p.search(_normalise(r.label)) for p in pats)]
        return runs

    def landing(self) -> RunInfo | None:
        """The run a page without `run=` opens: the headline configuration (8
        clauses, 8 neurons, alpha 2, clause split) when stored, else the most
        informative run (`_informative`)."""
        if not self.runs:
            return None
        head = [r for r in self.runs if all(getattr(r, k) == v for k, v in HEADLINE.items())]
        if head:
            return min(head, key=lambda r: r.trial)
        return max(self.runs, key=_informative)


def _informative(r: RunInfo) -> tuple:
    """How much a run shows: the clause analysis, all three networks, an FPE child,
    then a readable size (hidden width and clause count near 8), then trial 0."""
    try:
        h = float(r.hidden.split("-")[0])
    except ValueError:
        h = 0.0
    size = -abs(math.log2(max(h, 1) / 8)) - (abs(math.log2(max(r.n_clauses, 1) / 8)) if r.has_clauses else 0)
    return (r.has_clauses, len(r.refs), r.split in ("clause", "random", "gram"), r.alpha == 2, size, -r.trial)


def _task_label(task_cfg: dict[str, Any]) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tc = TaskConfig.from_dict(task_cfg)
    outputs = tc.outputs if isinstance(tc.outputs, str) else f"{len(tc.outputs)} groups"
    return f"C={tc.n_clauses} k={tc.clause_size} n={tc.resolved_n_vars} {tc.layout} {outputs}"


def _n_clauses(task_cfg: dict[str, Any]) -> int:
    return int(task_cfg.get("n_clauses", 0))


def _hidden(h: Any) -> str:
    return str(h) if isinstance(h, int) else "-".join(map(str, h))


def _pair_key(cfg: dict[str, Any]) -> str:
    """What a child and its dense baseline share: the config less format, key,
    condition, alpha and the expanded layers."""
    rest = {k: v for k, v in cfg.items() if k not in ("format", "key", "condition", "alpha", "layers")}
    return json.dumps(rest, sort_keys=True)


def _epochs(cfg: dict[str, Any]) -> tuple[int, int]:
    t = cfg.get("train", {})
    return int(t.get("warmup", 0)), int(t.get("finetune", 0))


Scanned = tuple[list[RunInfo], list[str]]


def _paired(entries: list[StoreEntry]) -> tuple[list[tuple[StoreEntry, StoreEntry]], list[str]]:
    """(child entry, its dense baseline) pairs of per-model FPE entries, and a note per child without one."""
    dense: dict[str, StoreEntry] = {}
    children: list[StoreEntry] = []
    for e in entries:
        (dense.__setitem__(_pair_key(e.config), e) if e.config.get("condition") == "dense" else children.append(e))
    pairs, notes = [], []
    for e in children:
        base = dense.get(_pair_key(e.config))
        if base is None:
            notes.append(f"skipped run {e.key}: its paired dense baseline is not in the store")
        else:
            pairs.append((e, base))
    return pairs, notes


def _scan_boolean_fpe(entries: list[StoreEntry]) -> Scanned:
    pairs, notes = _paired(entries)
    runs = []
    for e, base in pairs:
        try:
            cfg, m = e.config, e.metrics
            alpha, split = int(cfg["alpha"]), str(cfg["condition"])
            runs.append(RunInfo(
                id=e.key, dense_key=base.key, task=_task_label(cfg["task"]), hidden=_hidden(cfg["hidden"]),
                alpha=alpha, split=split, trial=int(cfg["seed"]), epochs=_epochs(cfg),
                child_accuracy=float(m["test_accuracy"]), dense_accuracy=float(base.metrics["test_accuracy"]),
                study="fpe", dataset="boolean", task_config=json.dumps(cfg["task"], sort_keys=True),
                n_clauses=_n_clauses(cfg["task"]),
                refs=(("parent", ModelRef(e.key, "parent.", MODELS["parent"],
                                          float(m.get("parent", {}).get("test_accuracy", math.nan)))),
                      ("child", ModelRef(e.key, "", f"FPE child ({split} split, α={alpha}) after fine-tuning",
                                         float(m["test_accuracy"]))),
                      ("dense", ModelRef(base.key, "", MODELS["dense"], float(base.metrics["test_accuracy"])))),
            ))
        except (KeyError, TypeError, ValueError) as err:
            notes.append(f"skipped run {e.key}: malformed config or metrics ({type(err).__name__}: {err})")
    return runs, notes


def _scan_fpe(entries: list[StoreEntry]) -> Scanned:
    """One run per FPE child of a `run_fpe` trial on a DatasetSpec (kind "fpe")."""
    pairs, notes = _paired(entries)
    runs = []
    for e, base in pairs:
        try:
            cfg, m = e.config, e.metrics
            data = cfg["data"]
            kind, options = str(data["kind"]), dict(m.get("data", {}).get("options") or data.get("options") or {})
            alpha, split = int(cfg["alpha"]), str(cfg["condition"])
            layers = cfg.get("layers", [0])
            where = "" if layers == [0] else f", layers {layers}"
            task = options if kind == "boolean" else None
            label = _task_label(task) if task else (options.get("name") or f"{kind} (seed {data.get('seed')})")
            what = "restart control (α=1)" if alpha == 1 else f"{split} split, α={alpha}{where}"
            runs.append(RunInfo(
                id=e.key, dense_key=base.key, task=str(label), hidden=_hidden(cfg["hidden"]),
                alpha=alpha, split="restart" if alpha == 1 else split, trial=int(cfg["seed"]), epochs=_epochs(cfg),
                child_accuracy=float(m["test_accuracy"]), dense_accuracy=float(base.metrics["test_accuracy"]),
                study="fpe", dataset=kind, task_config=json.dumps(task, sort_keys=True) if task else "",
                n_clauses=_n_clauses(task) if task else 0, task_seed=int(data["seed"]) if task else None,
                refs=(("parent", ModelRef(e.key, "parent.", MODELS["parent"],
                                          float(m.get("parent", {}).get("test_accuracy", math.nan)))),
                      ("child", ModelRef(e.key, "", f"FPE child ({what}) after fine-tuning", float(m["test_accuracy"]))),
                      ("dense", ModelRef(base.key, "", MODELS["dense"], float(base.metrics["test_accuracy"])))),
            ))
        except (KeyError, TypeError, ValueError) as err:
            notes.append(f"skipped run {e.key}: malformed config or metrics ({type(err).__name__}: {err})")
    return runs, notes


def _rows(entry: StoreEntry) -> list[dict[str, Any]]:
    """A job study's stored result rows under the results.csv names (`analyses.columns`;
    entries written before that vocabulary are renamed on the way in)."""
    return [canonical_row(r) for r in entry.metrics["rows"]]


def _scan_real_data(entries: list[StoreEntry]) -> Scanned:
    """One run per FPE child of a real-data trial (α=1: the restart control)."""
    runs: list[RunInfo] = []
    for e in entries:
        cfg, rows = e.config, _rows(e)
        acc = {(r["split"], int(r["alpha"])): float(r["test_accuracy"]) for r in rows}
        parent_acc = float(rows[0].get("parent_test_accuracy", math.nan))
        dense_acc = acc.get(("none", 1), math.nan)
        dataset = str(cfg["dataset"])
        for split, alpha in cfg["expansions"]:
            alpha = int(alpha)
            what = "restart control (α=1)" if alpha == 1 else f"{split} split, α={alpha}"
            runs.append(RunInfo(
                id=f"{e.key}/{split}-{alpha}", task=f"{dataset} {_data_text(cfg)}", hidden=_hidden(cfg["hidden"]),
                alpha=alpha, split="restart" if alpha == 1 else str(split), trial=int(cfg["seed"]),
                epochs=_epochs(cfg), child_accuracy=acc.get((split, alpha), math.nan), dense_accuracy=dense_acc,
                study="real_data", dataset=dataset.split("-")[0],
                refs=(("parent", ModelRef(e.key, "parent.", MODELS["parent"], parent_acc)),
                      ("child", ModelRef(e.key, f"{split}-{alpha}.", f"FPE child ({what}) after fine-tuning",
                                         acc.get((split, alpha), math.nan))),
                      ("dense", ModelRef(e.key, "dense.", MODELS["dense"], dense_acc))),
            ))
    return runs, []


def _data_text(cfg: dict[str, Any]) -> str:
    d = cfg.get("data", {})
    if "source" in d:
        return f"({d['source']}, test {d.get('test_fraction', '?')})"
    return ""


_STRUCTURED_TITLES = {"clause": "clause-split child", "random": "random-split child",
                      "clause_nm": "clause-split child, N:M mask", "random_nm": "random-split child, N:M mask",
                      "random_dynamic": "random-split child, prune-and-regrow mask"}


def _scan_structured(entries: list[StoreEntry]) -> Scanned:
    """One run per child condition of a structured-sparsity job (all at one nnz)."""
    runs: list[RunInfo] = []
    for e in entries:
        cfg = e.config
        models = {r["condition"]: r for r in _rows(e) if r.get("record") == "model"}
        dense_acc = float(models.get("dense", {}).get("test_accuracy", math.nan))
        alpha = int(cfg["alpha"])
        for cond, title in _STRUCTURED_TITLES.items():
            if cond not in models:
                continue
            nm = f" ({cfg['nm']})" if cond.endswith("_nm") else ""
            runs.append(RunInfo(
                id=f"{e.key}/{cond}", task=_task_label(cfg["task"]), hidden=_hidden(cfg["hidden"]), alpha=alpha,
                split=cond, trial=int(cfg["seed"]), epochs=_epochs(cfg), child_accuracy=float(models[cond]["test_accuracy"]),
                dense_accuracy=dense_acc, study="structured_sparsity", dataset="boolean",
                task_config=json.dumps(cfg["task"], sort_keys=True), n_clauses=_n_clauses(cfg["task"]),
                refs=(("parent", ModelRef(e.key, "parent.", MODELS["parent"], math.nan)),
                      ("child", ModelRef(e.key, f"{cond}.", f"{title}{nm}, α={alpha}, after fine-tuning",
                                         float(models[cond]["test_accuracy"]))),
                      ("dense", ModelRef(e.key, "dense.", "Dense baseline pruned to the same nnz", dense_acc))),
            ))
    return runs, []


def _dataset_of(spec: Any) -> tuple[str, dict[str, Any] | None]:
    """(dataset name, Boolean task config or None) of a job's dataset field."""
    if isinstance(spec, dict):
        return str(spec.get("name", "?")), spec.get("task") if spec.get("name") == "boolean" else None
    return str(spec), None


def _scan_wide_sparse(entries: list[StoreEntry]) -> Scanned:
    """One run per model: dense, statically sparse (its mask) or FPE child."""
    runs: list[RunInfo] = []
    for e in entries:
        cfg, row = e.config, _rows(e)[0]
        name, task = _dataset_of(cfg["dataset"])
        cond = str(cfg["condition"])
        alpha = int(cfg.get("alpha", 1)) if cond != "dense" else 1
        title = {"dense": f"Dense model, width {cfg['width']}",
                 "sparse": f"Statically sparse model, width {cfg['width']} (random mask, {row.get('nnz')} nnz)",
                 "fpe": f"FPE child ({cfg.get('split', '?')} split, α={alpha}, {row.get('nnz')} nnz)"}.get(cond, cond)
        runs.append(RunInfo(
            id=e.key, task=_task_label(task) if task else name, hidden=_hidden(cfg["width"]), alpha=alpha,
            split=cond if cond != "fpe" else f"fpe-{cfg.get('split', '?')}", trial=int(cfg["seed"]), epochs=_epochs(cfg),
            child_accuracy=float(row["test_accuracy"]), dense_accuracy=float(row.get("dense_test_accuracy", math.nan)),
            study="wide_sparse", dataset=name, task_config=json.dumps(task, sort_keys=True) if task else "",
            n_clauses=_n_clauses(task) if task else 0,
            refs=(("child", ModelRef(e.key, "", title, float(row["test_accuracy"]))),),
        ))
    return runs, []


def _scan_effective_density(entries: list[StoreEntry]) -> Scanned:
    """One run per deep dense model, after training beside its initialisation."""
    runs: list[RunInfo] = []
    for e in entries:
        cfg = e.config
        row = next(r for r in _rows(e) if r.get("record") == "model")
        name, task = _dataset_of(cfg["dataset"])
        task = cfg.get("data", {}).get("task") if name == "boolean" else None
        acc = float(row["test_accuracy"])
        runs.append(RunInfo(
            id=e.key, task=_task_label(task) if task else name, hidden=_hidden(cfg["hidden"]), alpha=1,
            split=f"dense x{cfg.get('multiplier', '?')}", trial=int(cfg["seed"]), epochs=(int(cfg.get("epochs", 0)), 0),
            child_accuracy=acc, dense_accuracy=math.nan, study="effective_density", dataset=name,
            task_config=json.dumps(task, sort_keys=True) if task else "", n_clauses=_n_clauses(task) if task else 0,
            refs=(("parent", ModelRef(e.key, "init.", "The same network at initialisation", math.nan, init_only=True)),
                  ("child", ModelRef(e.key, "", f"Deep dense net {_hidden(cfg['hidden'])} after training", acc))),
        ))
    return runs, []


def _scan_rows_only(entries: list[StoreEntry]) -> Scanned:
    note = f"{len(entries)} deep_fpe entries hold result rows only (the study stores no weights); they are not listed"
    return [], [note] if entries else []


#: store kind -> scanner(entries of that kind) -> (runs, notes).
SCANNERS: dict[str, Callable[[list[StoreEntry]], Scanned]] = {
    "boolean-fpe": _scan_boolean_fpe,
    "fpe": _scan_fpe,
    "real_data-job": _scan_real_data,
    "structured_sparsity-job": _scan_structured,
    "wide_sparse-job": _scan_wide_sparse,
    "effective_density-job": _scan_effective_density,
    "deep_fpe-job": _scan_rows_only,
}


def scan_store(store: Store) -> Catalogue:
    """List the runs of `store`. Unreadable entries and runs without their paired
    baseline are left out with a warning each (never an exception)."""
    warns: list[str] = []
    notes: list[str] = []
    by_kind: dict[str, list[StoreEntry]] = {}
    for key in store.keys():
        try:
            e = store.load(key)
        except StoreError as err:
            warns.append(f"skipped a corrupt store entry: {err}")
            log.warning("skipping %s", err)
            continue
        by_kind.setdefault(str(e.config.get("kind")), []).append(e)
    # A model that a study's job entry already shows (its rows name the model's store key) is not listed again.
    shown = {str(r["store_key"]) for kind, es in by_kind.items() if kind.endswith("-job") for e in es
             for r in (e.metrics.get("rows") or []) if isinstance(r, dict) and r.get("store_key")}
    for kind in ("fpe", "boolean-fpe"):
        if kind in by_kind:
            by_kind[kind] = [e for e in by_kind[kind] if e.config.get("condition") == "dense" or e.key not in shown]
    runs: list[RunInfo] = []
    for kind, entries in by_kind.items():
        scanner = SCANNERS.get(kind)
        if scanner is None:
            notes.append(f"{len(entries)} store entries of kind {kind!r} have no explorer view")
            continue
        try:
            found, msgs = scanner(entries)
        except (KeyError, TypeError, ValueError, StopIteration) as err:
            warns.append(f"skipped the {kind} entries: malformed config or metrics ({type(err).__name__}: {err})")
            continue
        runs += found
        (warns if kind == "boolean-fpe" else notes).extend(msgs)
    runs.sort(key=lambda r: (natural_key(r.study != "fpe"), natural_key(r.group), natural_key(r.task),
                             natural_key(r.hidden), r.trial, natural_key(r.split), r.alpha))
    return Catalogue(runs=runs, warnings=warns, notes=notes)


# --------------------------------------------------------------------------- loaded runs


@dataclass
class ModelData:
    """One network of a run, with everything that does not depend on the threshold.

    layers: per layer l, (W_l (out, in) effective weights, M_l its 0/1 mask); W1/M1
    (H, n) the first layer, W2 (O or H2, H) the next; row_order: (H,) first-layer
    neurons in display order (children grouped under their parent);
    parent_index: (H,) parent neuron of each child (None otherwise); gram: (n, n)
    first-layer Gram; capacity: (n,) first-layer feature capacity."""

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
        """`h5`, or `h5·p2` for a child of parent neuron 2; `L2·h5` in layer 2."""
        if l > 0:
            return f"L{l + 1}·h{i}"
        return f"h{i}" if self.parent_index is None else f"h{i}·p{int(self.parent_index[i])}"

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
    out_labels: names of the outputs (`y0`, or the class `0`..`9`)."""

    info: RunInfo
    task: DNFTask | None
    clauses: list[Clause]
    order: np.ndarray
    col_clause: np.ndarray
    polarity: np.ndarray
    models: dict[str, ModelData]
    x_test: np.ndarray | None
    input_names: list[str] = field(default_factory=list)
    out_labels: list[str] = field(default_factory=list)
    _readings: dict[str, NetworkReading] = field(default_factory=dict, repr=False, compare=False)
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # panels of the run (app.views)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def n_clauses(self) -> int:
        return len(self.clauses)

    @property
    def has_clauses(self) -> bool:
        return bool(self.clauses)

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
        return format_clause(self.clauses[c])

    @property
    def groups(self) -> list[tuple[int, ...]]:
        """Per output, the clauses it ORs (`task.groups`; empty without a task)."""
        return list(self.task.groups) if self.task is not None else []

    def reading(self, slot: str) -> NetworkReading | None:
        """What network `slot` computes (`read_network`; decoded once per network and
        process, whatever the threshold); None without clauses (decoding reads
        Boolean tasks)."""
        if not self.has_clauses or self.x_test is None:
            return None
        with self._lock:
            if slot not in self._readings:
                m = self.models[slot]
                assert m.predictions is not None
                try:
                    if m.model is None:
                        raise ValueError("the network's model is not loaded")
                    circuit, seconds = _decoded(m.model)
                except ValueError as e:  # a network decode_function cannot read
                    self._readings[slot] = NetworkReading(
                        None, (), math.nan, true_formula_agreement(self.clauses, m.predictions, self.x_test, self.groups),
                        math.nan, math.nan, reason=str(e))
                else:
                    self._readings[slot] = read_network(m.model, self.clauses, self.groups, self.x_test,
                                                        m.predictions, self.out_labels, circuit, seconds)
            return self._readings[slot]

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


def _model_data(name: str, title: str, model: MaskedMLP, accuracy: float, x_test: torch.Tensor | None,
                clauses: list[Clause], parent_index: np.ndarray | None) -> ModelData:
    eff = model.effective_weights()
    layers = [(W.numpy(), model.weight_mask(l).detach().numpy()) for l, (W, _) in enumerate(eff)]
    W1 = layers[0][0]
    H = W1.shape[0]
    row_order = np.arange(H) if parent_index is None else np.argsort(parent_index, kind="stable")
    cap = feature_capacity(W1)
    preds = None
    if x_test is not None:
        with torch.no_grad():
            preds = (model(x_test) > 0).to(torch.float32).numpy()
    return ModelData(
        name=name, title=title, model=model, layers=layers, parent_index=parent_index, row_order=row_order,
        mean_capacity=clause_mean_capacity(cap, clauses) if clauses else float(np.mean(cap)),
        cosine=cosine_interference(W1), accuracy=accuracy, nnz=model.nnz(), predictions=preds,
        biases=[b.numpy() for _, b in eff],
    )


def _model(tensors: dict[str, torch.Tensor], what: str, key: str) -> MaskedMLP:
    if not tensors:
        raise RunError(f"store entry {key} holds no tensors for the {what}")
    try:
        return MaskedMLP.from_tensors(tensors)
    except ValueError as e:
        raise RunError(f"store entry {key}: the {what} cannot be rebuilt ({e})") from None


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


def _make_task(info: RunInfo) -> DNFTask:
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


def _input_names(info: RunInfo, n: int) -> list[str]:
    if info.dataset.startswith("digits") and n == 64:
        return [f"r{i // 8}c{i % 8}" for i in range(64)]  # the 8x8 image, row-major
    return [f"i{i}" for i in range(n)]


def load_run(store: Store, info: RunInfo) -> LoadedRun:
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
    nets = {slot: (_model(_ref_tensors(tensors[ref.key], ref), ref.title, ref.key), ref) for slot, ref in info.refs}
    task = _make_task(info) if info.has_clauses else None
    if task is not None and info.study == "fpe":
        stored = entries[info.id].metrics.get("clauses")
        if stored is not None and [tuple((int(v), bool(p)) for v, p in c) for c in stored] != task.clauses:
            raise RunError(f"run {info.id}: the clauses stored with the run differ from those regenerated from its "
                           "config; the task generator changed since it was trained")
    pidx = None
    if "child" in nets and "parent" in nets and not nets["parent"][1].init_only:
        child, parent = nets["child"][0], nets["parent"][0]
        Hp, Hc = parent.hidden[0], child.hidden[0]
        if child.parent_index is not None:
            pidx = child.parent_index.numpy().astype(np.int64)
        elif Hc == Hp * info.alpha:  # SPEC §3: parent i owns children i*alpha .. i*alpha + alpha - 1
            pidx = np.arange(Hc) // info.alpha
        elif info.study == "fpe":
            raise RunError(f"run {info.id}: the child has {Hc} neurons and no parent_index; "
                           f"cannot map it to a parent of {Hp} neurons at alpha={info.alpha}")
        if pidx is not None and (pidx.shape != (Hc,) or (pidx.size and (pidx.min() < 0 or pidx.max() >= Hp))):
            raise RunError(f"run {info.id}: parent_index does not map {Hc} children to {Hp} parent neurons")
    elif "child" in nets and nets["child"][0].parent_index is not None:
        pidx = nets["child"][0].parent_index.numpy().astype(np.int64)
    n_in = next(iter(nets.values()))[0].sizes[0]
    if task is not None:
        if task.n_vars != n_in:
            raise RunError(f"run {info.id}: the regenerated task has {task.n_vars} variables, the stored models "
                           f"{n_in} inputs")
        x_test_t, _ = task.test_data()
        clauses = task.clauses
        order = np.asarray(task.variable_order(), dtype=np.int64)
        col_clause, polarity = _dense_columns(clauses, order, task.n_vars)
    else:
        x_test_t, clauses = None, []
        order, col_clause, polarity = np.arange(n_in), np.full(n_in, -1), np.ones(n_in, dtype=np.int64)
    models = {slot: _model_data(slot, ref.title, m, float(ref.accuracy), x_test_t, clauses,
                                pidx if slot == "child" else None)
              for slot, (m, ref) in sorted(nets.items(), key=lambda kv: list(MODELS).index(kv[0]))}
    n_out = next(iter(nets.values()))[0].sizes[-1]
    out_labels = ([str(k) for k in range(n_out)] if info.dataset.startswith("digits") else [f"y{o}" for o in range(n_out)])
    return LoadedRun(info=info, task=task, clauses=clauses, order=order, col_clause=col_clause, polarity=polarity,
                     models=models, x_test=None if x_test_t is None else x_test_t.numpy(),
                     input_names=_input_names(info, n_in), out_labels=out_labels)


# --------------------------------------------------------------------------- what the networks compute


@dataclass(frozen=True)
class TermReading:
    """One decoded term of one output (`fci.codes.decode_function`).

    precision: P(the output is 1 | the term holds), other inputs uniform;
    certified: proved 1 on every input where the term holds (interval bounds or
    enumeration); matches: the true clause of this output with exactly the term's
    literals (None if none); broader: true clauses of this output whose literals
    include all of the term's (the term fires wherever they hold), the match included."""

    clause: Clause
    text: str
    precision: float
    certified: bool
    matches: int | None
    broader: tuple[int, ...]


@dataclass(frozen=True)
class OutputReading:
    """What one output computes, read by `decode_function`.

    constant: the output reads as ⊤ (the constant agrees at least as well as any OR
    of terms); true_clauses: the task's clauses OR'ed into this output
    (`task.groups`); missed: those no decoded term fires on (no term's literals are a
    subset of theirs); uncovered: the fraction of the network's positive inputs
    (uniform inputs; all 2^n when n <= 14) that no term covers; positive_rate: the
    network's positive rate there; sample_agreement: the circuit's agreement with
    the network on those inputs."""

    output: int
    label: str
    constant: bool
    terms: tuple[TermReading, ...]
    true_clauses: tuple[int, ...]
    missed: tuple[int, ...]
    uncovered: float
    positive_rate: float
    sample_agreement: float


@dataclass(frozen=True)
class NetworkReading:
    """One network's functional reading, independent of the sign threshold.

    circuit: `decode_function(model)` (None with `reason` when it cannot read the
    network, e.g. more than one hidden layer); agreement: the circuit vs the
    network's own test-set outputs; ceiling: the OR of the true clauses vs the same
    outputs (`fci.codes.true_formula_agreement`); recovery_f1: the terms against the
    true clauses (`fci.codes.clause_recovery`); seconds: decoding time."""

    circuit: DecodedCircuit | None
    outputs: tuple[OutputReading, ...]
    agreement: float
    ceiling: float
    recovery_f1: float
    seconds: float
    reason: str = ""


def _literal_set(clause: Sequence[tuple[int, bool]]) -> frozenset[tuple[int, bool]]:
    return frozenset((int(v), bool(p)) for v, p in clause)


def read_network(model: Any, clauses: Sequence[Clause], groups: Sequence[Sequence[int]], x_test: np.ndarray,
                 predictions: np.ndarray, out_labels: Sequence[str] | None = None,
                 circuit: DecodedCircuit | None = None, seconds: float = math.nan) -> NetworkReading:
    """The functional reading of a one-hidden-layer network on a Boolean task.

    model: a model or (W1, b1, W2, b2) tuple; clauses: the task's true clauses;
    groups: per output, the clause indices it ORs (`task.groups`); x_test (N, n),
    predictions (N, O) 0/1: the test inputs and the network's outputs on them;
    circuit: an already decoded `decode_function(model)` (decoded here if None).
    The ceiling is computed even when the network cannot be decoded."""
    ceiling = true_formula_agreement(clauses, predictions, x_test, groups)
    if circuit is None:
        t0 = time.perf_counter()
        try:
            circuit = decode_function(model, form="dnf")  # the explorer shows DNF terms
        except ValueError as e:  # a network decode_function cannot read
            return NetworkReading(None, (), math.nan, ceiling, math.nan, math.nan, reason=str(e))
        seconds = time.perf_counter() - t0
    truth = [_literal_set(c) for c in clauses]
    outputs = []
    for o in range(circuit.n_outputs):
        own = tuple(int(c) for c in groups[o])
        terms = []
        for d, (clause, outs) in enumerate(zip(circuit.clauses, circuit.readouts)):
            if o not in outs:
                continue
            j = outs.index(o)
            lits = _literal_set(clause)
            terms.append(TermReading(
                clause=clause, text=format_clause(clause),
                precision=float(circuit.precision[d][j]) if circuit.precision else math.nan,
                certified=bool(circuit.certified[d][j]) if circuit.certified else False,
                matches=next((c for c in own if truth[c] == lits), None),
                broader=tuple(c for c in own if lits <= truth[c])))
        constant = bool(circuit.default[o])
        fired = {c for t in terms for c in t.broader}
        outputs.append(OutputReading(
            output=o, label=out_labels[o] if out_labels else f"y{o}", constant=constant, terms=tuple(terms),
            true_clauses=own, missed=() if constant else tuple(c for c in own if c not in fired),
            uncovered=float(circuit.uncovered[o]) if circuit.uncovered else math.nan,
            positive_rate=float(circuit.positive_rate[o]) if circuit.positive_rate else math.nan,
            sample_agreement=float(circuit.sample_agreement[o]) if circuit.sample_agreement else math.nan))
    return NetworkReading(
        circuit=circuit, outputs=tuple(outputs), agreement=circuit_agreement(circuit, predictions, x_test),
        ceiling=ceiling, recovery_f1=float(clause_recovery(circuit.clauses, clauses)["f1"]), seconds=seconds)


def _weights_digest(model: MaskedMLP) -> str:
    """The content of a network's effective weights: equal networks (a parent or a
    baseline shown in several runs) share one decoding."""
    h = hashlib.sha1()
    for W, b in model.effective_weights():
        for t in (W, b):
            a = np.ascontiguousarray(t.numpy())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()


#: decode_function's circuits (and seconds) by weights digest: ~0.2-0.9 s a small
#: network, several seconds at 128 x 256, so each network is decoded once per process.
_CIRCUITS: OrderedDict[str, tuple[DecodedCircuit, float]] = OrderedDict()
_CIRCUITS_LOCK = threading.Lock()
_CIRCUITS_SIZE = 64


def _decoded(model: MaskedMLP) -> tuple[DecodedCircuit, float]:
    key = _weights_digest(model)
    with _CIRCUITS_LOCK:
        if key in _CIRCUITS:
            _CIRCUITS.move_to_end(key)
            return _CIRCUITS[key]
    t0 = time.perf_counter()
    circuit = decode_function(model, form="dnf")  # the explorer shows DNF terms; a ValueError is not cached
    value = (circuit, time.perf_counter() - t0)
    with _CIRCUITS_LOCK:
        _CIRCUITS[key] = value
        while len(_CIRCUITS) > _CIRCUITS_SIZE:
            _CIRCUITS.popitem(last=False)
    return value



# --------------------------------------------------------------------------- code analysis


@dataclass
class ModelCodes:
    """One network's codes at a threshold.

    signs: (H, n) sign categories of W1; rows: `fci.codes.clause_table` rows (channel,
    readout, votes, collisions, polysemantic, capacity per clause); polysemanticity:
    (H,) clauses per neuron; graph: the collision graph; static: the circuit the
    static `fci.codes.decode` reads from the weights at this threshold (None when
    it cannot read the network); agreement: its agreement with the network's own
    test-set outputs; recovery_f1: its clauses against the true ones."""

    signs: np.ndarray
    rows: list[dict[str, Any]]
    polysemanticity: np.ndarray
    graph: nx.Graph
    agreement: float
    n_decoded: int
    recovery_f1: float
    static: DecodedCircuit | None = None

    @property
    def channels(self) -> list[list[int]]:
        return [r["channel"] for r in self.rows]


@dataclass
class RunAnalysis:
    """A run's codes at one sign threshold ("auto" or a fraction of each neuron's
    max|w|): per network, and the per-clause before/after view of the split
    (parent -> child)."""

    run: LoadedRun
    threshold: Threshold
    codes: dict[str, ModelCodes]
    split: list[ClauseSplitView] | None
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # panels drawn from it (app.views)

    @property
    def has_split(self) -> bool:
        return self.split is not None


def _codes(m: ModelData, clauses: list[Clause], x_test: np.ndarray, threshold: Threshold) -> ModelCodes:
    rows = clause_table(m.W1, m.W2, clauses, threshold=threshold, b1=m.b1)
    poly = np.zeros(m.H, dtype=np.int64)
    for r in rows:
        poly[r["channel"]] += 1
    circuit: DecodedCircuit | None
    try:
        circuit = decode(m.model, threshold=threshold)
        agreement = circuit_agreement(circuit, m.predictions, x_test)
        n_decoded = len(circuit.clauses)
        f1 = clause_recovery(circuit.clauses, clauses)["f1"]
    except ValueError as e:  # e.g. more than one hidden layer: decode reads one
        log.info("decode skipped for the %s: %s", m.name, e)
        circuit, agreement, n_decoded, f1 = None, math.nan, 0, math.nan
    return ModelCodes(
        signs=sign_codes(m.W1, threshold=threshold),
        rows=rows,
        polysemanticity=poly,
        graph=collision_graph(m.W1, clauses, threshold=threshold),
        agreement=agreement,
        n_decoded=n_decoded,
        recovery_f1=f1,
        static=circuit,
    )


def analyse(run: LoadedRun, threshold: Threshold) -> RunAnalysis:
    """The code analysis of every network of `run` at a sign threshold ("auto" or
    a fraction of each neuron's max|w|; none
    without clauses); the before/after split view when the run has a parent and a
    child mapped onto it."""
    if not run.has_clauses:
        return RunAnalysis(run=run, threshold=threshold, codes={}, split=None)
    assert run.x_test is not None  # load_run sets x_test whenever the run has clauses (both come from the task)
    codes = {name: _codes(m, run.clauses, run.x_test, threshold) for name, m in run.models.items()}
    child, parent = run.models.get("child"), run.models.get("parent")
    views = None
    if child is not None and parent is not None and child.parent_index is not None:
        views = split_view(parent.W1, child.W1, child.parent_index, run.clauses, threshold=threshold,
                           child_mask=child.M1)
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

    def analysis(self, run_id: str, threshold: Threshold) -> RunAnalysis:
        t = threshold if isinstance(threshold, str) else round(float(threshold), 6)
        return self._analyses.get((run_id, t), lambda: analyse(self.run(run_id), t))
