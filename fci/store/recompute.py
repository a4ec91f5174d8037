"""Recomputing what an entry records from what it stores, per entry kind.

An entry without checksums is trusted only after its recorded measurements have
been recomputed from its weights, config and data and found equal; `verify
--deep` does the same for sealed entries. Each entry kind that can be recomputed
registers a function here: it takes the entry and returns its disagreements
(empty when everything recomputable agrees), or raises `NotRecomputable` when
this process cannot rebuild what the measurements depend on. The FPE model
kinds ("fpe", "boolean-fpe") are recomputed by `fci.train.recompute`, imported
on first need; other kinds (a study's job entries) have none and are quarantined
when unsealed.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable

from fci.registry import Registry
from fci.store.entries import StoreEntry
from fci.store.errors import NotRecomputable

__all__ = ["RECOMPUTE", "Recompute", "recompute", "recomputable", "disagreement"]

Recompute = Callable[[StoreEntry], list[str]]
#: entry kind -> its recomputation (see the module docstring).
RECOMPUTE: Registry[Recompute] = Registry("recomputable store entry kind")
_BUILTIN = {"fpe": "fci.train.recompute", "boolean-fpe": "fci.train.recompute"}


def _lookup(kind: Any) -> Recompute | None:
    if not isinstance(kind, str):
        return None
    if kind not in RECOMPUTE and kind in _BUILTIN:
        importlib.import_module(_BUILTIN[kind])
    return RECOMPUTE.get(kind) if kind in RECOMPUTE else None


def recomputable(entry: StoreEntry) -> bool:
    """Whether entries of this one's kind have a recomputation."""
    return _lookup(entry.config.get("kind")) is not None


def recompute(entry: StoreEntry) -> list[str]:
    """The entry's disagreements between what it records and what its stored
    contents give when recomputed (empty: all agree). NotRecomputable when its
    kind has no recomputation or its data cannot be rebuilt here; a failure to
    rebuild the model from its tensors is a disagreement."""
    kind = entry.config.get("kind")
    fn = _lookup(kind)
    if fn is None:
        raise NotRecomputable(f"entries of kind {kind!r} cannot be recomputed (no recomputation is registered for it)")
    try:
        return fn(entry)
    except NotRecomputable:
        raise
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError, AssertionError, ArithmeticError) as e:
        return [f"its stored contents could not be recomputed ({type(e).__name__}: {e})"]  # e.g. tensors that fit no model


def disagreement(what: str, recorded: Any, recomputed: float | int, rel: float = 0.0, abs_: float = 0.0) -> str | None:
    """None when `recorded` equals `recomputed` within `rel` (relative) or `abs_`
    (absolute) tolerance, both NaN counting as equal; else one phrase naming both."""
    ok = False
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        r = float(recorded)
        ok = (math.isnan(r) and math.isnan(recomputed)) or abs(r - recomputed) <= max(abs_, rel * abs(recomputed))
    return None if ok else f"{what} recorded {recorded!r}, recomputed {recomputed!r}"
