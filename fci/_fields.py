"""Rebuilding config dataclasses from stored dicts."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any


def known_fields(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """The items of `d` that are fields of the dataclass `cls`; unknown keys
    (e.g. written by newer code) are dropped with a warning naming them."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        warnings.warn(f"{cls.__name__}.from_dict: dropping unknown keys {unknown}", stacklevel=3)
    return {k: v for k, v in d.items() if k in names}
