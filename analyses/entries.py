"""What the results store's entries show: each entry kind's reader turns entries
into the runs the explorer lists (`python -m app`).

Every store entry's `config.json` carries its `"kind"`: `boolean-fpe` and `fpe`
(one trained model, `fci.train.run_fpe`) or `<study>-job` (a study's job). A
reader is registered per kind (`READERS`, one `fci.registry.Registry`): the two
model kinds here, each job study's in its own module, so a study brings what is
needed to open its entries and the explorer names no study. `readers(kinds)`
imports the studies that write those kinds (they register as they are imported)
and returns the registry.

A **run** (`ListedRun`) is what one explorer page shows side by side: up to three
networks in the slots ``parent`` / ``child`` / ``dense`` (`MODELS`), each a
`ModelRef` naming its store entry and tensor prefix.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable

from fci.registry import Registry
from fci.store import StoreEntry
from fci.tasks import TaskConfig

__all__ = [
    "DIGITS_SHAPE",
    "FILTERS",
    "MODELS",
    "READERS",
    "ListedRun",
    "ModelRef",
    "Reader",
    "Scanned",
    "epochs",
    "hidden_text",
    "job_rows",
    "paired",
    "readers",
    "register_reader",
    "task_label",
]

#: The three slots of a run, in display order, with their default column titles.
MODELS: dict[str, str] = {
    "parent": "Dense parent at expansion",
    "child": "FPE child after fine-tuning",
    "dense": "Paired dense baseline",
}

#: Run fields the explorer's picker filters on.
FILTERS = ("study", "dataset", "task", "hidden", "alpha", "split", "trial")

#: (channels, height, width) of scikit-learn's bundled digits (`fci.data.digits`).
DIGITS_SHAPE = (1, 8, 8)


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
class ListedRun:
    """One run of the explorer's picker.

    study: the producing command ("fpe" for `python -m fci` / the demo, else the
    study's name); dataset: "boolean", "digits", ...; task: short task or data
    description; hidden: parent width(s) ("8" or "8-8"); split: what the shown
    child is (an FPE split, "sparse", "clause_nm", "dense", ...); refs: (slot,
    ModelRef) per network shown; task_config: the Boolean task's TaskConfig dict
    as JSON ("" for other data), its task seed `task_seed`, or deriving from
    `trial` as in `FPESpec.make_task`; image_shape: (C, H, W) of image inputs
    (each neuron's input weights are drawn as pictures), () otherwise;
    architecture: "mlp" or "cnn" (the first layer's rows are filters)."""

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
    image_shape: tuple[int, ...] = ()
    architecture: str = "mlp"

    @property
    def what(self) -> str:
        """The shown child in a few words: `clause α=2`, `sparse`."""
        return f"{self.split} α={self.alpha}" if self.alpha > 1 else self.split

    @property
    def accuracy_text(self) -> str:
        acc = f"test acc {self.child_accuracy:.3f}"
        if not math.isnan(self.dense_accuracy) and len(self.refs) > 1:
            acc += f" vs dense {self.dense_accuracy:.3f}"
        return acc

    @property
    def label(self) -> str:
        return (f"{self.study} · {self.dataset} · {self.what} · {self.task} · H={self.hidden} · trial {self.trial} · "
                f"{self.accuracy_text}")

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


Scanned = tuple[list[ListedRun], list[str]]
#: A reader: every entry of one kind -> (runs, notes on entries left out).
Reader = Callable[[list[StoreEntry]], Scanned]

#: Entry kind -> its reader.
READERS: Registry[Reader] = Registry("store entry kind")


def register_reader(kind: str) -> Callable[[Reader], Reader]:
    """Decorator: `fn` reads the store entries whose config has `"kind": kind`."""
    return READERS.register(kind)


def readers(kinds: Iterable[str] | None = None) -> Registry[Reader]:
    """The readers, after importing the studies that register them: those whose job
    kinds (`<study>-job`) are in `kinds`, or every study (when `kinds` is None or
    names a kind no such import registers)."""
    from analyses import studies

    if kinds is None:
        studies()
        return READERS
    wanted = set(kinds)
    for kind in wanted - set(READERS.names()):
        name = kind.removesuffix("-job")
        if kind.endswith("-job") and name.isidentifier() and importlib.util.find_spec(f"analyses.{name}") is not None:
            importlib.import_module(f"analyses.{name}")
    if wanted - set(READERS.names()):
        studies()
    return READERS


# --------------------------------------------------------------------------- helpers for readers


def task_label(task_cfg: dict[str, Any]) -> str:
    """`C=8 k=3 n=24 grouped single`: a Boolean task in a few words."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tc = TaskConfig.from_dict(task_cfg)
    outputs = tc.outputs if isinstance(tc.outputs, str) else f"{len(tc.outputs)} groups"
    return f"C={tc.n_clauses} k={tc.clause_size} n={tc.resolved_n_vars} {tc.layout} {outputs}"


def n_clauses(task_cfg: dict[str, Any] | None) -> int:
    return int(task_cfg.get("n_clauses", 0)) if task_cfg else 0


def hidden_text(h: Any) -> str:
    """`8` or `8-8` (one width per hidden layer)."""
    return str(h) if isinstance(h, int) else "-".join(map(str, h))


def epochs(cfg: dict[str, Any]) -> tuple[int, int]:
    """(dense warm-up, fine-tuning) epochs of an entry's train config."""
    t = cfg.get("train", {})
    return int(t.get("warmup", 0)), int(t.get("finetune", 0))


def _pair_key(cfg: dict[str, Any]) -> str:
    """What a child and its dense baseline share: the config less format, key,
    condition, alpha and the expanded layers."""
    rest = {k: v for k, v in cfg.items() if k not in ("format", "key", "condition", "alpha", "layers")}
    return json.dumps(rest, sort_keys=True)


def paired(entries: list[StoreEntry]) -> tuple[list[tuple[StoreEntry, StoreEntry]], list[str]]:
    """(child entry, its dense baseline) pairs of per-model FPE entries, and a note per child without one."""
    dense: dict[str, StoreEntry] = {}
    children: list[StoreEntry] = []
    for e in entries:
        if e.config.get("condition") == "dense":
            dense[_pair_key(e.config)] = e
        else:
            children.append(e)
    pairs, notes = [], []
    for e in children:
        base = dense.get(_pair_key(e.config))
        if base is None:
            notes.append(f"skipped run {e.key}: its paired dense baseline is not in the store")
        else:
            pairs.append((e, base))
    return pairs, notes


def job_rows(entry: StoreEntry) -> list[dict[str, Any]]:
    """A job entry's stored result rows under the results.csv names (`analyses.columns`;
    entries written before that vocabulary are renamed on the way in)."""
    from analyses.columns import canonical_row

    return [canonical_row(r) for r in entry.metrics["rows"]]


def dataset_of(spec: Any) -> tuple[str, dict[str, Any] | None]:
    """(dataset name, Boolean task config or None) of a job's dataset field."""
    if isinstance(spec, dict):
        return str(spec.get("name", "?")), spec.get("task") if spec.get("name") == "boolean" else None
    return str(spec), None


def image_shape(dataset: str) -> tuple[int, ...]:
    """(C, H, W) of a dataset whose inputs are images, () otherwise."""
    return DIGITS_SHAPE if dataset.split("-")[0] == "digits" else ()


def fpe_refs(child: StoreEntry, base: StoreEntry, child_title: str) -> tuple[tuple[str, ModelRef], ...]:
    """The three networks of an FPE child entry: the parent inside it, itself, its dense baseline."""
    m = child.metrics
    return (("parent", ModelRef(child.key, "parent.", MODELS["parent"],
                                float(m.get("parent", {}).get("test_accuracy", math.nan)))),
            ("child", ModelRef(child.key, "", child_title, float(m["test_accuracy"]))),
            ("dense", ModelRef(base.key, "", MODELS["dense"], float(base.metrics["test_accuracy"]))))


def _malformed(e: StoreEntry, err: Exception) -> str:
    return f"skipped run {e.key}: malformed config or metrics ({type(err).__name__}: {err})"


# --------------------------------------------------------------------------- the two model kinds


def _read_pairs(entries: list[StoreEntry], run_of: Callable[[StoreEntry, StoreEntry], ListedRun]) -> Scanned:
    """One run per FPE child entry paired with its dense baseline (`paired`); an entry
    whose config or metrics `run_of` cannot read is skipped with a note."""
    pairs, notes = paired(entries)
    runs = []
    for e, base in pairs:
        try:
            runs.append(run_of(e, base))
        except (KeyError, TypeError, ValueError) as err:
            notes.append(_malformed(e, err))
    return runs, notes


def boolean_fpe_run(e: StoreEntry, base: StoreEntry) -> ListedRun:
    """The run of one FPE child entry of a trial on a per-trial Boolean task (kind "boolean-fpe")."""
    cfg, m = e.config, e.metrics
    alpha, split = int(cfg["alpha"]), str(cfg["condition"])
    return ListedRun(
        id=e.key, dense_key=base.key, task=task_label(cfg["task"]), hidden=hidden_text(cfg["hidden"]),
        alpha=alpha, split=split, trial=int(cfg["seed"]), epochs=epochs(cfg),
        child_accuracy=float(m["test_accuracy"]), dense_accuracy=float(base.metrics["test_accuracy"]),
        study="fpe", dataset="boolean", task_config=json.dumps(cfg["task"], sort_keys=True),
        n_clauses=n_clauses(cfg["task"]),
        refs=fpe_refs(e, base, f"FPE child ({split} split, α={alpha}) after fine-tuning"),
    )


@register_reader("boolean-fpe")
def read_boolean_fpe(entries: list[StoreEntry]) -> Scanned:
    """One run per FPE child of a trial on a per-trial Boolean task (`python -m fci`, the demo)."""
    return _read_pairs(entries, boolean_fpe_run)


def fpe_run(e: StoreEntry, base: StoreEntry, study: str = "fpe", run_id: str | None = None) -> ListedRun:
    """The run of one FPE child entry of `run_fpe` on a DatasetSpec (kind "fpe")."""
    cfg, m = e.config, e.metrics
    data = cfg["data"]
    kind, options = str(data["kind"]), dict(m.get("data", {}).get("options") or data.get("options") or {})
    alpha, split = int(cfg["alpha"]), str(cfg["condition"])
    layers = cfg.get("layers", [0])
    where = "" if layers == [0] else f", layers {layers}"
    task = options if kind == "boolean" else None
    label = task_label(task) if task else (options.get("name") or f"{kind} (seed {data.get('seed')})")
    what = "restart control (α=1)" if alpha == 1 else f"{split} split, α={alpha}{where}"
    return ListedRun(
        id=run_id or e.key, dense_key=base.key, task=str(label), hidden=hidden_text(cfg["hidden"]),
        alpha=alpha, split="restart" if alpha == 1 else split,
        trial=int(cfg["seed"]), epochs=epochs(cfg),
        child_accuracy=float(m["test_accuracy"]), dense_accuracy=float(base.metrics["test_accuracy"]),
        study=study, dataset=kind, task_config=json.dumps(task, sort_keys=True) if task else "",
        n_clauses=n_clauses(task), task_seed=int(data["seed"]) if task else None, image_shape=image_shape(kind),
        refs=fpe_refs(e, base, f"FPE child ({what}) after fine-tuning"),
    )


@register_reader("fpe")
def read_fpe(entries: list[StoreEntry]) -> Scanned:
    """One run per FPE child of a `run_fpe` trial on a DatasetSpec (digits, embeddings, a fixed Boolean task)."""
    return _read_pairs(entries, fpe_run)
