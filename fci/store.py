"""The results store: one immutable directory per trained model.

    <root>/store/<key>/config.json        what was trained (full config, format version)
    <root>/store/<key>/metrics.json       what was measured
    <root>/store/<key>/weights.safetensors  tensors as data (no pickles)

`key` is a stable hash of the config JSON. An entry is written into a temporary
directory and renamed into place, so an interrupted run never leaves a
half-written result, and merging shards from several machines is copying
directories. Loading a corrupt or incomplete entry raises `StoreError` naming
the file; listing the store skips such entries with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = ["FORMAT_VERSION", "Store", "StoreEntry", "StoreError", "config_key"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_FILES = ("config.json", "metrics.json", "weights.safetensors")


class StoreError(RuntimeError):
    """A store entry is missing, corrupt or incomplete; the message names the file."""


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(o: Any):
    if isinstance(o, (tuple, set)):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def config_key(config: dict[str, Any]) -> str:
    """Stable 20-hex-digit hash of a config (with the format version folded in)."""
    payload = _canonical({"format": FORMAT_VERSION, **config})
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass
class StoreEntry:
    key: str
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    _tensors: dict[str, torch.Tensor] | None = None

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """Weights, loaded on first use."""
        if self._tensors is None:
            self._tensors = _load_tensors(self.path / "weights.safetensors")
        return self._tensors


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise StoreError(f"store entry is incomplete: {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"store entry is corrupt: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise StoreError(f"store entry is corrupt: {path} does not hold a JSON object")
    return data


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise StoreError(f"store entry is incomplete: {path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise StoreError(f"store entry is corrupt: {path} could not be read as safetensors ({e})") from None


class Store:
    """A directory of immutable per-model entries under `<root>/store/`."""

    def __init__(self, root: str | os.PathLike = "data"):
        self.root = Path(root)
        self.dir = self.root / "store"

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.dir / key

    def has(self, key: str) -> bool:
        """True when a complete entry exists (all files present)."""
        p = self.path(key)
        return all((p / f).is_file() for f in _FILES)

    def save(self, config: dict[str, Any], metrics: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
        """Write one entry atomically; returns its key. An existing entry is kept as is."""
        key = config_key(config)
        final = self.path(key)
        if self.has(key):
            return key
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=self.dir))
        try:
            with open(tmp / "config.json", "w") as f:
                f.write(json.dumps({"format": FORMAT_VERSION, "key": key, **config}, indent=1, sort_keys=True, default=_json_default))
            with open(tmp / "metrics.json", "w") as f:
                f.write(json.dumps(metrics, indent=1, sort_keys=True, default=_json_default))
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "weights.safetensors"))
            if self.has(key):  # another writer (a parallel shard) finished first
                return key
            if final.exists():  # an incomplete leftover under the final name: move it aside, never delete in place
                stale = final.with_name(f".{key}.stale-{uuid.uuid4().hex[:8]}")
                try:
                    os.rename(final, stale)
                    shutil.rmtree(stale, ignore_errors=True)
                except OSError:
                    pass
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.has(key):  # losing the rename is fine only if the winner's entry is complete
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return key

    def load(self, key: str) -> StoreEntry:
        """Load one entry (tensors lazily); raises StoreError naming the bad file."""
        p = self.path(key)
        if not p.is_dir():
            raise StoreError(f"no store entry {key!r} under {self.dir}")
        config = _read_json(p / "config.json")
        metrics = _read_json(p / "metrics.json")
        if not (p / "weights.safetensors").is_file():
            raise StoreError(f"store entry is incomplete: {p / 'weights.safetensors'} is missing")
        return StoreEntry(key=key, path=p, config=config, metrics=metrics)

    def keys(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(d.name for d in self.dir.iterdir() if d.is_dir() and not d.name.startswith("."))

    def entries(self, check_tensors: bool = False) -> Iterator[StoreEntry]:
        """Every readable entry; corrupt ones are skipped with a warning naming the file."""
        for key in self.keys():
            try:
                entry = self.load(key)
                if check_tensors:
                    entry.tensors
            except StoreError as e:
                warnings.warn(f"skipping {e}", stacklevel=2)
                log.warning("skipping %s", e)
                continue
            yield entry

    def delete(self, key: str) -> None:
        shutil.rmtree(self.path(key), ignore_errors=True)
