"""One entry: its key, its files, how they are written, read and verified.

    <key>/config.json          what was made (the config, with "format" and "key")
    <key>/metrics.json         what was measured (with "format")
    <key>/weights.safetensors  tensors as data (header metadata {"format": ...})
    <key>/checksums.json       sha256 and size of the three files above, the writer, the format

An entry is *sealed* when `checksums.json` is present and the three files match
it; only sealed entries are used. Reading never follows a symbolic link: a link
where an entry file should be makes the entry corrupt.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_bytes
from safetensors.torch import save as _save_bytes

from fci.store import files
from fci.store.errors import StoreError, UnsealedError
from fci.store.formats import FORMAT_VERSION, KEY_FORMAT, declared_format, migrate, release

__all__ = ["FILES", "CHECKSUMS", "StoreEntry", "config_key", "read_entry", "entry_files", "seal_bytes", "parse_tensors"]

FILES = ("config.json", "metrics.json", "weights.safetensors")
CHECKSUMS = "checksums.json"
#: The fields checksums.json may hold, per format (anything else makes it corrupt).
_SUMS_FIELDS = {1: {"format", "files", "writer"}, 2: {"format", "files", "writer", "sealed"}}
_RESERVED = ("format", "key")  # fields of config.json (and "format" of metrics.json) the store owns


def _json_default(o: Any) -> Any:
    if isinstance(o, (tuple, set)):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def canonical(obj: Any) -> str:
    """Sorted keys, no spaces: the JSON that keys are hashed from."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def config_key(config: dict[str, Any]) -> str:
    """Stable 20-hex-digit hash of a config (with the key format folded in)."""
    payload = canonical({"format": KEY_FORMAT, **config})
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass
class StoreEntry:
    """One sealed entry: its config and metrics, and its tensors on first use
    (read again and checked against the recorded checksum)."""

    key: str
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    verified: bool = True  # every entry handed out is sealed (kept for older callers)
    format: int = FORMAT_VERSION
    _sha: str | None = field(default=None, repr=False)
    _tensors: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """Weights, loaded on first use."""
        if self._tensors is None:
            path = self.path / "weights.safetensors"
            raw = _read(path)
            if self._sha is not None and _sha256(raw) != self._sha:
                raise StoreError(f"store entry is corrupt: {path} changed after it was verified (it fails its checksum)")
            self._tensors = parse_tensors(path, raw)
        return self._tensors

    def __repr__(self) -> str:
        what = ", ".join(f"{k}={self.config[k]!r}" for k in ("kind", "condition", "alpha", "hidden", "seed") if k in self.config)
        return f"StoreEntry({self.key!r}, {what})"


def _read(path: Path) -> bytes:
    """An entry file's bytes; StoreError naming it when missing, a link or unreadable."""
    kind = files.what_is(path)
    if kind == "absent":
        raise StoreError(f"store entry is incomplete: {path} is missing")
    if kind == "link":
        raise StoreError(f"store entry is corrupt: {path} is a symbolic link (the store never follows links)")
    if kind != "file":
        raise StoreError(f"store entry is corrupt: {path} is not a regular file")
    try:
        return files.read_regular(path)
    except OSError as e:
        raise StoreError(f"store entry is unreadable: {path} ({e.strerror or e})") from None


def _parse_json(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"store entry is corrupt: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise StoreError(f"store entry is corrupt: {path} does not hold a JSON object")
    return data


def _weights_metadata(path: Path, raw: bytes) -> dict[str, Any]:
    """The safetensors header's metadata; StoreError when the header is malformed."""
    try:
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n].decode()) if 0 < n <= len(raw) - 8 else None
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        raise StoreError(f"store entry is corrupt: {path} could not be read as safetensors (malformed header)")
    meta = header.get("__metadata__") or {}
    return meta if isinstance(meta, dict) else {}


def parse_tensors(path: Path, raw: bytes) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file's bytes; StoreError naming `path` otherwise."""
    try:
        return _load_bytes(raw)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise StoreError(f"store entry is corrupt: {path} could not be read as safetensors ({e})") from None


def _check_sums(p: Path, raw: dict[str, bytes], doc: dict[str, Any], fmt: int) -> None:
    unknown = sorted(set(doc) - _SUMS_FIELDS[fmt])
    if unknown:
        raise StoreError(f"store entry is corrupt: {p / CHECKSUMS} has unknown field(s) {unknown} for format {fmt}")
    sums = doc.get("files")
    if not isinstance(sums, dict):
        raise StoreError(f"store entry is corrupt: {p / CHECKSUMS} lacks a 'files' object")
    for name in FILES:
        want = sums.get(name)
        if not isinstance(want, dict) or "sha256" not in want:
            raise StoreError(f"store entry is corrupt: {p / CHECKSUMS} has no checksum for {name}")
        got = _sha256(raw[name])
        if got != want["sha256"]:
            raise StoreError(f"store entry is corrupt: {p / name} fails its checksum "
                             f"({len(raw[name])} bytes, sha256 {got[:12]}…; recorded {want.get('bytes')} bytes, "
                             f"sha256 {str(want['sha256'])[:12]}…)")


def read_entry(p: Path, key: str) -> StoreEntry:
    """Read and verify the entry folder `p` (named `key`). Raises FormatError for a
    newer format, UnsealedError (holding what was read) when `checksums.json` is
    missing, and StoreError naming the file for anything else wrong: a missing,
    linked, unparsable or altered file, or a config that does not hash to `key`."""
    raw = {name: _read(p / name) for name in FILES}
    sums_kind = files.what_is(p / CHECKSUMS)
    doc: dict[str, Any] | None = None
    writer = None
    if sums_kind != "absent":
        doc = _parse_json(p / CHECKSUMS, _read(p / CHECKSUMS))
        w = doc.get("writer")
        writer = str(w["fci"]) if isinstance(w, dict) and "fci" in w else None
        fmt = declared_format(p / CHECKSUMS, doc.get("format"), writer)  # a newer format: refused before anything else
        _check_sums(p, raw, doc, fmt)
    config = _parse_json(p / "config.json", raw["config.json"])
    cfmt = declared_format(p / "config.json", config.get("format"), writer)
    metrics = _parse_json(p / "metrics.json", raw["metrics.json"])
    mfmt = declared_format(p / "metrics.json", metrics.get("format"), writer)
    wfmt = declared_format(p / "weights.safetensors", _weights_metadata(p / "weights.safetensors", raw["weights.safetensors"])
                           .get("format"), writer)
    config, metrics = migrate(cfmt, config), migrate(mfmt, metrics)
    metrics.pop("format", None)
    own = {k: v for k, v in config.items() if k not in _RESERVED}
    if config.get("key") != key:
        raise StoreError(f"store entry is corrupt: {p / 'config.json'} names key {config.get('key')!r}, not its folder's {key!r}")
    if config_key(own) != key:
        raise StoreError(f"store entry is corrupt: {p / 'config.json'} does not hash to its key {key} "
                         f"(it hashes to {config_key(own)}: the config was altered)")
    fmt = min(cfmt, mfmt, wfmt)
    if doc is None:
        tensors = parse_tensors(p / "weights.safetensors", raw["weights.safetensors"])
        raise UnsealedError(f"store entry is not sealed: {p / CHECKSUMS} is missing, so nothing vouches for its files",
                            {"raw": raw, "config": config, "metrics": metrics, "tensors": tensors, "format": fmt})
    return StoreEntry(key=key, path=p, config=config, metrics=metrics, format=fmt,
                      _sha=_sha256(raw["weights.safetensors"]))


def _writer() -> dict[str, Any]:
    return {"host": files.HOST, "pid": os.getpid(), "fci": release()}


def seal_bytes(raw: dict[str, bytes], sealed: dict[str, Any] | None = None) -> bytes:
    """checksums.json (current format) for the entry files `raw`; `sealed` records
    how an entry written without checksums was vouched for before sealing."""
    doc: dict[str, Any] = {"format": FORMAT_VERSION, "files": {n: {"sha256": _sha256(raw[n]), "bytes": len(raw[n])} for n in FILES},
                           "writer": _writer()}
    if sealed is not None:
        doc["sealed"] = {**sealed, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def entry_files(key: str, config: dict[str, Any], metrics: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, bytes]:
    """The four files of a new entry (current format), as bytes."""
    for name, d in (("config", config), ("metrics", metrics)):
        taken = [k for k in (_RESERVED if name == "config" else ("format",)) if k in d]
        if taken:
            raise ValueError(f"a store {name} may not hold the field(s) {taken}: the store writes them")
    dump = lambda d: json.dumps(d, indent=1, sort_keys=True, default=_json_default).encode()  # noqa: E731
    raw = {
        "config.json": dump({"format": FORMAT_VERSION, "key": key, **config}),
        "metrics.json": dump({"format": FORMAT_VERSION, **metrics}),
        "weights.safetensors": _save_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                                           metadata={"format": str(FORMAT_VERSION)}),
    }
    raw[CHECKSUMS] = seal_bytes(raw)
    return raw
