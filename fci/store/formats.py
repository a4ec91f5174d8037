"""Store formats: what this fci writes, what it reads, and how older files are read.

Every file the store writes declares its format: `config.json`, `metrics.json`
and `checksums.json` in a top-level `"format"` field, `weights.safetensors` in
its header metadata (`{"format": "2"}`), and each claim in its JSON body.

- **Format 1** (entries written before this release): `config.json` and
  `checksums.json` declare `"format": 1`; `metrics.json`, the weights and the
  claims declare nothing; `checksums.json` records no fci release. *Migration
  to 2:* a file without a declared format is format 1, and its content is read
  unchanged (format 2 added fields; it changed none).
- **Format 2**: every file declares `"format": 2`; `checksums.json` records the
  writing fci release (`writer.fci`) and, for an entry sealed after the fact,
  how it was vouched for (`sealed`).

A file declaring a newer format than `FORMAT_VERSION` is refused with a
`FormatError` naming the format and the fci release that wrote it. Store keys
do not depend on the file format (`KEY_FORMAT` stays 1), so a format change
never orphans stored entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fci.store.errors import FormatError, StoreError

__all__ = ["FORMAT_VERSION", "KEY_FORMAT", "FORMATS", "declared_format", "migrate", "release"]

#: The format this fci writes; it reads every format from 1 up to this one.
FORMAT_VERSION = 2
#: The format number folded into every store key (unchanged since format 1).
KEY_FORMAT = 1
#: What each format is, for messages and docs.
FORMATS: dict[int, str] = {
    1: "config.json and checksums.json declare their format; metrics.json, weights and claims do not",
    2: "every file declares its format; checksums.json records the writing fci release",
}


def release() -> str:
    """This fci's release (the package version)."""
    from fci import __version__

    return __version__


def declared_format(path: Path, declared: Any, writer: str | None = None) -> int:
    """The format of the file at `path` from its `declared` value (None: format 1,
    which declared none in metrics.json, weights and claims). A newer format than
    this fci reads raises FormatError naming it and `writer` (the fci release that
    wrote it, when recorded); a value that is not a format number raises StoreError."""
    if declared is None:
        return 1
    if isinstance(declared, str) and declared.isdigit():  # safetensors metadata holds strings
        declared = int(declared)
    if isinstance(declared, bool) or not isinstance(declared, int) or declared < 1:
        raise StoreError(f"store entry is corrupt: {path} declares format {declared!r}, which is not a format number")
    if declared > FORMAT_VERSION:
        by = f"written by fci {writer}" if writer else f"written by an fci release newer than {release()}"
        raise FormatError(f"{path} is store format {declared}, {by}; this fci {release()} reads formats 1-{FORMAT_VERSION}: "
                          f"read it with fci {writer + ' or later' if writer else 'of that release'} (it is left untouched)",
                          path, declared, writer)
    return declared


def migrate(fmt: int, content: dict[str, Any]) -> dict[str, Any]:
    """A JSON file's content of format `fmt`, as format `FORMAT_VERSION` reads it
    (each step in `_MIGRATIONS`)."""
    for f in range(fmt, FORMAT_VERSION):
        content = _MIGRATIONS[f](content)
    return content


def _from_1(content: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: unchanged. Format 2 only added fields (every file's format,
    the writer's release), and a file without them reads as format 1."""
    return content


_MIGRATIONS = {1: _from_1}
