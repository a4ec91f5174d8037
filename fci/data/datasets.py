"""Datasets, with nothing downloaded.

`digits()` is scikit-learn's bundled 8x8 handwritten digits (1797 images, 10
classes, shipped inside the package); `load_embeddings(path)` reads features a
user computed elsewhere (e.g. CLIP image embeddings) from an `.npz` holding
`X_train`, `y_train`, `X_test`, `y_test`; `boolean(config, seed)` wraps a
Boolean task in the same interface. Every study that trains on "some data"
takes a `Dataset`.

    >>> from fci.data import digits
    >>> d = digits(seed=0)
    >>> d.n_in, d.n_out, d.loss
    (64, 10, 'ce')
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch

from fci.tasks import BooleanTask, TaskConfig

__all__ = ["Dataset", "digits", "load_embeddings", "boolean", "task_dataset", "task_name", "class_ids", "file_sha256", "load_once", "EMBEDDING_KEYS"]


T = TypeVar("T")

EMBEDDING_KEYS = ("X_train", "y_train", "X_test", "y_test")


class _TrainTest:
    """The sizes of a train/test split held as `x_train` and `x_test` (samples first)."""

    x_train: torch.Tensor
    x_test: torch.Tensor

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])


@dataclass(frozen=True, eq=False)
class Dataset(_TrainTest):
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
    xtr, xte = _standardized(arrays, standardize, axes=(0,))
    return Dataset(
        name=f"embeddings-{_stem(path)}",
        x_train=torch.from_numpy(xtr), y_train=torch.from_numpy(ytr_ids),
        x_test=torch.from_numpy(xte), y_test=torch.from_numpy(yte_ids),
        loss="ce",
        info={"source": os.path.abspath(path), "classes": [str(c) for c in classes], "standardize": standardize},
    )


def _standardized(arrays: dict[str, np.ndarray], standardize: bool, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """An .npz's `X_train` and `X_test` as contiguous float32; with `standardize`, both
    centred and scaled by the training split's mean and standard deviation over `axes`
    (a constant feature keeps scale 1)."""
    xtr, xte = arrays["X_train"].astype(np.float32), arrays["X_test"].astype(np.float32)
    if standardize:
        mu, sd = xtr.mean(axes, keepdims=True), xtr.std(axes, keepdims=True)
        sd[sd == 0] = 1.0
        xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    return np.ascontiguousarray(xtr), np.ascontiguousarray(xte)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


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
    """A Boolean task, DNF or CNF (SPEC §1), as a Dataset ('bce' over its outputs; 0/1 uint8 inputs).
    `info["clauses"]` holds the task's clauses (for the clause split)."""
    return task_dataset(BooleanTask.from_config(config or TaskConfig(), seed))


def task_dataset(task: BooleanTask) -> Dataset:
    """A drawn Boolean task's samples as a Dataset (see `boolean`), named by `task_name`."""
    xtr, ytr = task.train_data()
    xte, yte = task.test_data()
    return Dataset(
        name=task_name(task),
        x_train=xtr.to(torch.uint8), y_train=ytr.to(torch.uint8),
        x_test=xte.to(torch.uint8), y_test=yte.to(torch.uint8),
        loss="bce",
        info={"source": "fci.tasks.BooleanTask", "task": task.config.to_dict(), "seed": task.seed, "clauses": task.clauses},
    )


def task_name(task: BooleanTask) -> str:
    """A Boolean task's data name: boolean-C<clauses>k<clause size>-s<task seed>, with
    `cnf-` after `boolean-` for a CNF task."""
    form = "cnf-" if task.form == "cnf" else ""
    return f"boolean-{form}C{task.n_clauses}k{task.clause_size}-s{task.seed}"


def load_once(load: Callable[[str], T], path: str | os.PathLike) -> T:
    """`load(path)`, cached per (loader, real path, size, mtime) like `file_sha256`: a
    run's checks, caption and training share one load, and a changed file is read again."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return _load_at(load, real, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load_at(load: Callable[[str], Any], path: str, size: int, mtime_ns: int) -> Any:
    return load(path)


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


def _content_sha256(d: Dataset) -> str:
    """A digest of everything that defines a dataset's samples: tensors (dtype, shape, bytes) and loss."""
    h = hashlib.sha256(d.loss.encode())
    for t in (d.x_train, d.y_train, d.x_test, d.y_test):
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()
