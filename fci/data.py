"""Datasets beyond the Boolean task, with nothing downloaded.

`digits()` is scikit-learn's bundled 8x8 handwritten digits (1797 images, 10
classes, shipped inside the package); `load_embeddings(path)` reads features a
user computed elsewhere (e.g. CLIP image embeddings) from an `.npz` holding
`X_train`, `y_train`, `X_test`, `y_test`; `boolean(config, seed)` wraps a
Boolean DNF task in the same interface. Every study that trains on "some data"
takes a `Dataset`.

    >>> from fci.data import digits
    >>> d = digits(seed=0)
    >>> d.n_in, d.n_out, d.loss
    (64, 10, 'ce')
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from fci.seeding import derive_seed
from fci.tasks import DNFTask, TaskConfig

__all__ = ["Dataset", "DatasetSpec", "DATASET_KINDS", "digits", "load_embeddings", "boolean", "file_sha256", "EMBEDDING_KEYS"]

EMBEDDING_KEYS = ("X_train", "y_train", "X_test", "y_test")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A supervised dataset on the CPU.

    Attributes:
        name: a short identifier (goes into store keys and captions).
        x_train, x_test: (N, n_in) inputs (float32, or uint8 0/1 for Boolean tasks).
        y_train, y_test: (N,) int64 class ids for loss 'ce'; (N, O) 0/1 for 'bce'.
        loss: 'ce' (multi-class softmax) or 'bce' (independent binary outputs).
        info: provenance (source, split seed, scaling, clauses for Boolean tasks).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    loss: str = "ce"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.loss not in ("ce", "bce"):
            raise ValueError(f"loss must be 'ce' or 'bce', got {self.loss!r}")
        for part, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.ndim != 2:
                raise ValueError(f"{self.name}: x_{part} must be (N, n_in), got shape {tuple(x.shape)}")
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"{self.name}: x_{part} has {x.shape[0]} rows but y_{part} has {y.shape[0]}")
            if len(x) == 0:
                raise ValueError(f"{self.name}: the {part} split is empty")
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise ValueError(f"{self.name}: x_train has {self.x_train.shape[1]} features but x_test has {self.x_test.shape[1]}")

    @property
    def n_in(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_out(self) -> int:
        """Classes for 'ce', outputs for 'bce'."""
        if self.loss == "ce":
            return int(max(int(self.y_train.max()), int(self.y_test.max())) + 1)
        return int(self.y_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def stacked(self, n_models: int, device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
        """(x_train, y_train, x_test, y_test), each with a leading model axis of
        size `n_models` (a broadcast view: the data is held once), on `device`."""
        out = []
        for t in (self.x_train, self.y_train, self.x_test, self.y_test):
            t = t.to(device)
            out.append(t.unsqueeze(0).expand(n_models, *t.shape))
        return tuple(out)

    def __repr__(self) -> str:
        kind = "classes" if self.loss == "ce" else "outputs"
        return (f"Dataset({self.name!r}: {self.n_train} train / {self.n_test} test, {self.n_in} inputs, "
                f"{self.n_out} {kind}, loss {self.loss!r})")

    def describe(self) -> str:
        return (f"{self.name}: {self.n_train} train / {self.n_test} test samples, {self.n_in} inputs, "
                f"{self.n_out} {'classes' if self.loss == 'ce' else 'outputs'}")


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    return train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)


def digits(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """scikit-learn's bundled digits (8x8 images, 10 classes), pixel values
    scaled to [0, 1], split stratified with `seed` (the split is part of the
    dataset's identity: `name` records it)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    xtr, xte, ytr, yte = _split(x, y, test_fraction, seed)
    return Dataset(
        name=f"digits-s{seed}-t{test_fraction:g}",
        x_train=torch.from_numpy(xtr), y_train=torch.from_numpy(ytr),
        x_test=torch.from_numpy(xte), y_test=torch.from_numpy(yte),
        loss="ce",
        info={"source": "sklearn.datasets.load_digits", "split_seed": seed, "test_fraction": test_fraction, "scale": "x/16"},
    )


def _read_npz(path: str, keys: Sequence[str], flag: str, what: str) -> dict[str, np.ndarray]:
    """The named arrays `keys` of the .npz at `path` (no pickles). Raises
    ValueError naming `flag` for a missing file, or the file and the missing
    keys, before any array is used."""
    if not os.path.isfile(path):
        raise ValueError(f"{flag}: no such file {path!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise ValueError("it holds a single array, not named arrays")
            files = list(f.files)
            arrays = {k: np.asarray(f[k]) for k in keys if k in files}
    except Exception as e:  # zipfile.BadZipFile, OSError, a pickle it refuses to load, ...
        raise ValueError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}; {what} holds {list(keys)} (found {sorted(files)})")
    return arrays


def load_embeddings(path: str | os.PathLike, standardize: bool = True) -> Dataset:
    """Embeddings from an `.npz` with `X_train`, `y_train`, `X_test`, `y_test`.

    Labels are integers (integral floats such as 1.0 count) or strings; the
    training labels are mapped to class ids 0..K-1 in sorted order, and every
    test label must be one of them. With `standardize`, features are
    centred and scaled by the training split's mean and standard deviation.
    Raises ValueError naming the file and the missing or malformed key."""
    path = os.fspath(path)
    arrays = _read_npz(path, EMBEDDING_KEYS, "--embeddings", "an embeddings file")
    for k in ("X_train", "X_test"):
        a = arrays[k]
        if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"{path}: {k} must be a 2-d numeric array (samples x features), got shape {a.shape} dtype {a.dtype}")
        if not np.isfinite(a).all():
            raise ValueError(f"{path}: {k} holds NaN or infinite values")
    if arrays["X_train"].shape[1] != arrays["X_test"].shape[1]:
        raise ValueError(f"{path}: X_train has {arrays['X_train'].shape[1]} features but X_test has {arrays['X_test'].shape[1]}")
    ytr_ids, yte_ids, classes = class_ids(path, arrays, "sample", "{n} rows but y_{part} has {m}")
    xtr, xte = arrays["X_train"].astype(np.float32), arrays["X_test"].astype(np.float32)
    if standardize:
        mu, sd = xtr.mean(0), xtr.std(0)
        sd[sd == 0] = 1.0
        xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    stem = os.path.splitext(os.path.basename(path))[0]
    return Dataset(
        name=f"embeddings-{stem}",
        x_train=torch.from_numpy(np.ascontiguousarray(xtr)), y_train=torch.from_numpy(ytr_ids),
        x_test=torch.from_numpy(np.ascontiguousarray(xte)), y_test=torch.from_numpy(yte_ids),
        loss="ce",
        info={"source": os.path.abspath(path), "classes": [str(c) for c in classes], "standardize": standardize},
    )


def class_ids(path: str, arrays: dict[str, np.ndarray], unit: str, counts: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train ids, test ids, classes) of an .npz's `y_train` / `y_test`: each 1-d
    with one label per `unit` of its X (`counts` words the mismatch, with {part},
    {n} and {m}); labels integers or strings (`_labels`), of one kind, at least
    two training classes, every test label a training one. Ids are int64 indices
    into the sorted training classes. Raises ValueError naming the file and key."""
    for k in ("y_train", "y_test"):
        if arrays[k].ndim != 1:
            raise ValueError(f"{path}: {k} must be 1-d (one label per {unit}), got shape {arrays[k].shape}")
    for part in ("train", "test"):
        n, m = len(arrays[f"X_{part}"]), len(arrays[f"y_{part}"])
        if n != m:
            raise ValueError(f"{path}: X_{part} has " + counts.format(part=part, n=n, m=m))
    ytr, yte = (_labels(path, k, arrays[k]) for k in ("y_train", "y_test"))
    if (ytr.dtype.kind in "US") != (yte.dtype.kind in "US"):
        raise ValueError(f"{path}: y_train holds {_kind(ytr)} but y_test holds {_kind(yte)}; labels must be of one kind")
    classes = np.unique(ytr)
    if len(classes) < 2:
        raise ValueError(f"{path}: y_train holds a single class ({classes.tolist()}); need at least 2")
    unseen = np.setdiff1d(np.unique(yte), classes)
    if len(unseen):
        shown = unseen[:10].tolist()
        raise ValueError(f"{path}: y_test holds labels that y_train never shows: {shown}{' ...' if len(unseen) > 10 else ''} "
                         f"(allowed: the training labels {classes[:10].tolist()}{' ...' if len(classes) > 10 else ''})")
    return np.searchsorted(classes, ytr).astype(np.int64), np.searchsorted(classes, yte).astype(np.int64), classes


def _kind(y: np.ndarray) -> str:
    return "strings" if y.dtype.kind in "US" else "numbers"


def _labels(path: str, key: str, y: np.ndarray) -> np.ndarray:
    """Class labels as integers or strings; integral floats (1.0) become integers,
    anything else (0.5, NaN, complex, bytes of other kinds) is refused naming `key`."""
    if y.dtype.kind in "US":
        return y.astype(str)
    if y.dtype.kind in "biu":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise ValueError(f"{path}: {key} must hold class labels, integers or strings; got non-integral "
                             f"numbers such as {y[bad][:3].tolist()}")
        return y.astype(np.int64)
    raise ValueError(f"{path}: {key} must hold class labels, integers or strings; got dtype {y.dtype}")


def boolean(config: TaskConfig | None = None, seed: int = 0) -> Dataset:
    """A Boolean DNF task (SPEC §1) as a Dataset ('bce' over its outputs; 0/1 uint8 inputs).
    `info["clauses"]` holds the task's clauses (for the clause split)."""
    return task_dataset(DNFTask.from_config(config or TaskConfig(), seed))


def task_dataset(task: DNFTask) -> Dataset:
    """A drawn DNF task's samples as a Dataset (see `boolean`), named by `task_name`."""
    xtr, ytr = task.train_data()
    xte, yte = task.test_data()
    return Dataset(
        name=task_name(task),
        x_train=xtr.to(torch.uint8), y_train=ytr.to(torch.uint8),
        x_test=xte.to(torch.uint8), y_test=yte.to(torch.uint8),
        loss="bce",
        info={"source": "fci.tasks.DNFTask", "task": task.config.to_dict(), "seed": task.seed, "clauses": task.clauses},
    )


def task_name(task: DNFTask) -> str:
    """A Boolean task's data name: boolean-C<clauses>k<clause size>-s<task seed>."""
    return f"boolean-C{task.n_clauses}k{task.clause_size}-s{task.seed}"


# --------------------------------------------------------------------------- dataset specs


def file_sha256(path: str | os.PathLike) -> str:
    """A file's sha256 (hex), cached per (real path, size, mtime): a spec built again
    for the same file reads it once, and a changed file is read again."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return _sha256_at(real, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_at(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def _content_sha256(d: Dataset) -> str:
    """A digest of everything that defines a dataset's samples: tensors (dtype, shape, bytes) and loss."""
    h = hashlib.sha256(d.loss.encode())
    for t in (d.x_train, d.y_train, d.x_test, d.y_test):
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class _Kind:
    options: Callable[[Mapping[str, Any]], dict[str, Any]]  # validate and normalise
    build: Callable[[dict[str, Any], int], Dataset]  # (options, data seed) -> data
    identity: Callable[[dict[str, Any]], dict[str, Any]]  # the options that name the data (store keys)
    seeded: bool  # whether the seed changes the data


#: The dataset kinds a `DatasetSpec` can name.
DATASET_KINDS: dict[str, _Kind] = {
    "boolean": _Kind(_boolean_options, lambda o, seed: boolean(TaskConfig.from_dict(o), seed), dict, True),
    "digits": _Kind(_digits_options, lambda o, seed: digits(seed=seed, test_fraction=o["test_fraction"]), dict, True),
    # An embeddings file is named by its content, not its path: moving it keeps the keys.
    "embeddings": _Kind(_embeddings_options, lambda o, seed: load_embeddings(o["path"], standardize=o["standardize"]),
                        lambda o: {"sha256": o["sha256"], "standardize": o["standardize"]}, False),
    # A Dataset built in memory (`DatasetSpec.from_dataset`), named by its content.
    "memory": _Kind(_memory_options, _memory_build, lambda o: {"sha256": o["sha256"]}, False),
}
_MEMORY: dict[str, Dataset] = {}  # in-memory datasets by content digest (DatasetSpec.from_dataset)


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """Which data a trial trains on, as data.

    Attributes:
        kind: "boolean" (a DNF task, SPEC §1), "digits" (scikit-learn's bundled
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
            raise ValueError(f"DatasetSpec: kind must be one of {', '.join(DATASET_KINDS)}, got {self.kind!r}")
        if not isinstance(self.options, Mapping):
            raise ValueError(f"DatasetSpec: options must be a mapping, got {type(self.options).__name__}")
        object.__setattr__(self, "options", DATASET_KINDS[self.kind].options(self.options))
        if self.seed is None and self.kind != "boolean":
            raise ValueError(f"DatasetSpec: seed=None (a task per trial) is for kind 'boolean', not {self.kind!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"DatasetSpec: seed must be an integer or None, got {self.seed!r}")
        if not DATASET_KINDS[self.kind].seeded:
            object.__setattr__(self, "seed", 0)

    # -- constructors
    @classmethod
    def boolean(cls, task: TaskConfig | None = None, seed: int | None = None) -> "DatasetSpec":
        """A DNF task; `seed=None` (default): each trial draws its own from its seed."""
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
        """Whether the data comes with a DNF formula's clauses (for the clause split)."""
        if self.kind == "boolean":
            return True
        return self.kind == "memory" and bool(self.build().info.get("clauses"))

    @property
    def task(self) -> TaskConfig | None:
        """The task family of a Boolean spec, else None."""
        return TaskConfig.from_dict(dict(self.options)) if self.kind == "boolean" else None

    def key(self) -> dict[str, Any]:
        """What names the data (goes into store keys): kind, identifying options, seed."""
        return {"kind": self.kind, "options": DATASET_KINDS[self.kind].identity(dict(self.options)), "seed": self.seed}

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

    def build(self, trial_seed: int | None = None) -> Dataset:
        """The dataset (a per-trial spec needs the trial's seed)."""
        seed = self.data_seed(trial_seed)
        cache_key = (json.dumps(self.key(), sort_keys=True), seed)
        if cache_key not in _BUILT:
            if len(_BUILT) >= 64:
                _BUILT.pop(next(iter(_BUILT)))
            _BUILT[cache_key] = DATASET_KINDS[self.kind].build(dict(self.options), seed)
        return _BUILT[cache_key]

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.options.items() if k not in ("sha256", "path")}
        if self.kind == "embeddings":
            shown = {"file": os.path.basename(self.options["path"]), "standardize": self.options["standardize"]}
        elif self.kind == "boolean":
            t = self.task
            assert t is not None
            shown = {"C": t.n_clauses, "k": t.clause_size, "outputs": t.outputs, "p": t.p, "n_train": t.n_train}
        seed = "per trial" if self.seed is None else self.seed
        return f"DatasetSpec({self.kind}, {', '.join(f'{k}={v}' for k, v in shown.items())}, seed={seed})"


_BUILT: dict[tuple[str, int], Dataset] = {}  # DatasetSpec.build's cache (small: a study uses a handful)
