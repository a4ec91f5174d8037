"""What the store refuses, as exceptions whose message is one line naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["StoreError", "FormatError", "UnsealedError", "NotRecomputable", "SettingError"]


class StoreError(RuntimeError):
    """A store entry is missing, corrupt, incomplete or refused; the message names the file."""


class FormatError(StoreError):
    """A stored file declares a format newer than this fci reads. It is refused,
    never read and never quarantined: a newer fci sharing the store wrote it."""

    def __init__(self, message: str, path: Path, found: int, writer: str | None = None):
        super().__init__(message)
        self.path = path
        self.found = found
        self.writer = writer  # the fci release that wrote it, when recorded


class UnsealedError(StoreError):
    """An entry without `checksums.json`: its files parse, but nothing vouches for
    them. It is never used as is: it is re-verified by recomputation and sealed,
    or quarantined (`Store.heal`, `Store.repair`). `parts` holds what was read."""

    def __init__(self, message: str, parts: dict[str, Any]):
        super().__init__(message)
        self.parts = parts


class NotRecomputable(StoreError):
    """What an entry's metrics depend on cannot be rebuilt here (no recomputation
    for its kind, or its data is not available); the message says which."""


class SettingError(StoreError, ValueError):
    """A store setting has a bad value (the claim expiry); the message names where it came from."""
