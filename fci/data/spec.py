"""`DatasetSpec`: which data a trial trains on, as data (SPEC §3, *Data*), and the
registry of dataset kinds it can name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from fci.data.datasets import Dataset, _content_sha256, boolean, digits, file_sha256, load_embeddings
from fci.registry import Registry
from fci.seeding import derive_seed
from fci.tasks import TaskConfig

__all__ = ["DatasetSpec", "DatasetKind", "DATASET_KINDS", "register_dataset_kind"]


def _boolean_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return TaskConfig.from_dict(dict(options)).to_dict()  # validates every field, fills the defaults


def _digits_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - {"test_fraction"})
    if unknown:
        raise ValueError(f"DatasetSpec digits: unknown option(s) {unknown} (allowed: test_fraction)")
    tf = options.get("test_fraction", 0.25)
    if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 < tf < 1:
        raise ValueError(f"DatasetSpec digits: test_fraction must be a number in (0, 1), got {tf!r}")
    return {"test_fraction": float(tf)}


def _embeddings_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - {"path", "standardize", "sha256"})
    if unknown:
        raise ValueError(f"DatasetSpec embeddings: unknown option(s) {unknown} (allowed: path, standardize, sha256)")
    path = options.get("path")
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"DatasetSpec embeddings: path must name an .npz file, got {path!r}")
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise ValueError(f"DatasetSpec embeddings: no such file {path!r}")
    standardize = options.get("standardize", True)
    if not isinstance(standardize, bool):
        raise ValueError(f"DatasetSpec embeddings: standardize must be true or false, got {standardize!r}")
    digest = file_sha256(path)
    if options.get("sha256") not in (None, digest):
        raise ValueError(f"DatasetSpec embeddings: {path} has changed since the spec was written "
                         f"(sha256 {digest[:12]}..., the spec records {str(options['sha256'])[:12]}...)")
    return {"path": path, "standardize": standardize, "sha256": digest}


def _memory_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - {"name", "sha256"})
    if unknown or not isinstance(options.get("sha256"), str):
        raise ValueError(f"DatasetSpec memory: options are name and sha256 (use DatasetSpec.from_dataset), got {sorted(options)}")
    return {"name": str(options.get("name", "")), "sha256": options["sha256"]}


def _memory_build(options: dict[str, Any], seed: int) -> Dataset:
    data = _MEMORY.get(options["sha256"])
    if data is None:
        raise ValueError(f"DatasetSpec memory: the in-memory dataset {options['name']!r} (sha256 {options['sha256'][:12]}...) "
                         "is not loaded in this process; pass it to DatasetSpec.from_dataset first")
    return data


@dataclass(frozen=True)
class DatasetKind:
    """A kind of data a `DatasetSpec` can name.

    Attributes:
        options: validates and normalises a spec's options (raises ValueError naming the field).
        build: (options, data seed) -> the `Dataset`.
        identity: the options that name the data in store keys.
        seeded: whether the seed changes the data.
        portable: whether `build` needs nothing but the options and seed (no file, nothing
            held in memory), so another machine with fci installed builds the same data;
            a cluster run sends the data itself to its workers otherwise.
    """

    options: Callable[[Mapping[str, Any]], dict[str, Any]]
    build: Callable[[dict[str, Any], int], Dataset]
    identity: Callable[[dict[str, Any]], dict[str, Any]]
    seeded: bool
    portable: bool = False


#: The dataset kinds a `DatasetSpec` can name.
DATASET_KINDS: Registry[DatasetKind] = Registry("dataset kind")


def register_dataset_kind(name: str, kind: DatasetKind) -> DatasetKind:
    """Make `DatasetSpec(kind=name, ...)` build data of a new kind (refuses a duplicate)."""
    return DATASET_KINDS.register(name, kind)


register_dataset_kind("boolean", DatasetKind(_boolean_options, lambda o, seed: boolean(TaskConfig.from_dict(o), seed), dict, True,
                                             portable=True))
register_dataset_kind("digits", DatasetKind(_digits_options, lambda o, seed: digits(seed=seed, test_fraction=o["test_fraction"]),
                                            dict, True, portable=True))  # scikit-learn's bundled copy
# An embeddings file is named by its content, not its path: moving it keeps the keys.
register_dataset_kind("embeddings", DatasetKind(
    _embeddings_options, lambda o, seed: load_embeddings(o["path"], standardize=o["standardize"]),
    lambda o: {"sha256": o["sha256"], "standardize": o["standardize"]}, False))
# A Dataset built in memory (`DatasetSpec.from_dataset`), named by its content.
register_dataset_kind("memory", DatasetKind(_memory_options, _memory_build, lambda o: {"sha256": o["sha256"]}, False))
_MEMORY: dict[str, Dataset] = {}  # in-memory datasets by content digest (DatasetSpec.from_dataset)


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """Which data a trial trains on, as data.

    Attributes:
        kind: "boolean" (a DNF or CNF task, SPEC §1), "digits" (scikit-learn's bundled
            8x8 digits) or "embeddings" (an .npz of features; see `load_embeddings`).
        options: the kind's options, validated and completed with their defaults:
            boolean: the `TaskConfig` fields; digits: `test_fraction`; embeddings:
            `path`, `standardize` and the file's `sha256` (checked on every load).
        seed: the data seed: the Boolean task's draw, the digits split; None (Boolean
            only) draws each trial's own task from its trial seed, as `FPESpec` does.

    Two specs are equal when they name the same data (`key()`); `build()` makes it
    (cached per process: specs that are equal share one `Dataset`).
    """

    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = 0

    def __post_init__(self):
        if self.kind not in DATASET_KINDS:
            raise ValueError(f"DatasetSpec: {DATASET_KINDS.unknown_message(self.kind)}")
        if not isinstance(self.options, Mapping):
            raise ValueError(f"DatasetSpec: options must be a mapping, got {type(self.options).__name__}")
        object.__setattr__(self, "options", DATASET_KINDS.get(self.kind).options(self.options))
        if self.seed is None and self.kind != "boolean":
            raise ValueError(f"DatasetSpec: seed=None (a task per trial) is for kind 'boolean', not {self.kind!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"DatasetSpec: seed must be an integer or None, got {self.seed!r}")
        if not DATASET_KINDS.get(self.kind).seeded:
            object.__setattr__(self, "seed", 0)

    # -- constructors
    @classmethod
    def boolean(cls, task: TaskConfig | None = None, seed: int | None = None) -> "DatasetSpec":
        """A Boolean task (DNF or CNF); `seed=None` (default): each trial draws its own from its seed."""
        return cls("boolean", (task or TaskConfig()).to_dict(), seed)

    @classmethod
    def digits(cls, seed: int = 0, test_fraction: float = 0.25) -> "DatasetSpec":
        return cls("digits", {"test_fraction": test_fraction}, seed)

    @classmethod
    def embeddings(cls, path: str | os.PathLike, standardize: bool = True) -> "DatasetSpec":
        return cls("embeddings", {"path": os.fspath(path), "standardize": standardize})

    @classmethod
    def from_dataset(cls, data: Dataset) -> "DatasetSpec":
        """A spec for a `Dataset` built in memory, named by a digest of its samples
        (two equal datasets get equal specs and store keys); `build()` returns it in
        this process only."""
        if not isinstance(data, Dataset):
            raise ValueError(f"DatasetSpec.from_dataset takes a fci.data.Dataset, got {type(data).__name__}")
        digest = _content_sha256(data)
        _MEMORY.setdefault(digest, data)
        return cls("memory", {"name": data.name, "sha256": digest})

    # -- identity
    @property
    def per_trial(self) -> bool:
        """Whether every trial draws its own data (a Boolean task per trial seed)."""
        return self.seed is None

    @property
    def has_clauses(self) -> bool:
        """Whether the data comes with a Boolean formula's clauses (for the clause split)."""
        if self.kind == "boolean":
            return True
        return self.kind == "memory" and bool(self.build().info.get("clauses"))

    @property
    def task(self) -> TaskConfig | None:
        """The task family of a Boolean spec, else None."""
        return TaskConfig.from_dict(dict(self.options)) if self.kind == "boolean" else None

    def key(self) -> dict[str, Any]:
        """What names the data (goes into store keys): kind, identifying options, seed."""
        return {"kind": self.kind, "options": DATASET_KINDS.get(self.kind).identity(dict(self.options)), "seed": self.seed}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatasetSpec) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(json.dumps(self.key(), sort_keys=True))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "options": dict(self.options), "seed": self.seed}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DatasetSpec":
        unknown = sorted(set(d) - {"kind", "options", "seed"})
        if unknown or "kind" not in d:
            raise ValueError(f"DatasetSpec.from_dict: expected keys kind, options, seed; got {sorted(d)}")
        return cls(d["kind"], d.get("options", {}), d.get("seed", 0))

    # -- data
    def data_seed(self, trial_seed: int | None = None) -> int:
        """The seed the data is drawn with (per-trial specs: derived from `trial_seed`)."""
        if self.seed is not None:
            return self.seed
        if trial_seed is None:
            raise ValueError("this DatasetSpec draws a task per trial (seed=None): build(trial_seed=...) needs the trial's seed")
        return derive_seed(trial_seed, "task")

    @property
    def portable(self) -> bool:
        """Whether any machine with fci builds this data from the spec alone (its kind's `portable`)."""
        return DATASET_KINDS.get(self.kind).portable

    def install(self, data: Dataset, trial_seed: int | None = None) -> None:
        """Make `build(trial_seed)` return `data` in this process: data built from this
        spec on another machine (a cluster's driver) and sent here."""
        if not isinstance(data, Dataset):
            raise ValueError(f"DatasetSpec.install takes a fci.data.Dataset, got {type(data).__name__}")
        _INSTALLED[(json.dumps(self.key(), sort_keys=True), self.data_seed(trial_seed))] = data

    def build(self, trial_seed: int | None = None) -> Dataset:
        """The dataset (a per-trial spec needs the trial's seed)."""
        seed = self.data_seed(trial_seed)
        cache_key = (json.dumps(self.key(), sort_keys=True), seed)
        if cache_key in _INSTALLED:
            return _INSTALLED[cache_key]
        if cache_key not in _BUILT:
            if len(_BUILT) >= 64:
                _BUILT.pop(next(iter(_BUILT)))
            _BUILT[cache_key] = DATASET_KINDS.get(self.kind).build(dict(self.options), seed)
        return _BUILT[cache_key]

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.options.items() if k not in ("sha256", "path")}
        if self.kind == "embeddings":
            shown = {"file": os.path.basename(self.options["path"]), "standardize": self.options["standardize"]}
        elif self.kind == "boolean":
            t = self.task
            assert t is not None
            shown = {"C": t.n_clauses, "k": t.clause_size, "outputs": t.outputs, "p": t.p, "n_train": t.n_train}
            if t.form != "dnf":
                shown = {"form": t.form, **shown}
        seed = "per trial" if self.seed is None else self.seed
        return f"DatasetSpec({self.kind}, {', '.join(f'{k}={v}' for k, v in shown.items())}, seed={seed})"


_BUILT: dict[tuple[str, int], Dataset] = {}  # DatasetSpec.build's cache (small: a study uses a handful)
_INSTALLED: dict[tuple[str, int], Dataset] = {}  # data sent by a cluster's driver (DatasetSpec.install): never evicted
