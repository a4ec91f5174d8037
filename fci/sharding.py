"""Deterministic sharding of a sweep across machines (`--shard I/N`).

A sweep is a list of trials; shard I of N takes the trials whose stable key
hashes to I modulo N. The slices are disjoint, cover the sweep, and do not
depend on the order of the list or on which other trials it holds, so any job
scheduler (a SLURM array, Kubernetes jobs, Ray tasks) can run them anywhere and
the store directories are merged by copying.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Sequence, TypeVar

__all__ = ["parse_shard", "in_shard", "shard_items"]

T = TypeVar("T")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'I/N' -> (I, N) with 0 <= I < N; None or '' -> None (no sharding)."""
    if text is None or text == "":
        return None
    try:
        i_s, n_s = str(text).split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard I/N needs N >= 1 and 0 <= I < N, got {text!r}")
    return i, n


def _bucket(key: Any, n: int) -> int:
    payload = json.dumps(key, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(payload).digest()[:8], "big") % n


def in_shard(key: Any, shard: tuple[int, int] | None) -> bool:
    """Whether the item with this JSON-able key belongs to the shard."""
    return shard is None or _bucket(key, shard[1]) == shard[0]


def shard_items(items: Sequence[T], shard: tuple[int, int] | None, key: Callable[[T], Any]) -> list[T]:
    """The items of `items` that fall in `shard` (all of them when shard is None)."""
    return [it for it in items if in_shard(key(it), shard)]
