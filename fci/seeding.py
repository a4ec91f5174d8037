"""Deterministic seed derivation.

Every random step in fci takes an explicit seed. Sub-steps (clause drawing, train
data, test data, initialisation, splits) get their own sub-seed derived from the
parent seed and a few tags, so that a result is a pure function of its config and
adding a new random step never shifts the random numbers of an existing one.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["derive_seed", "generator"]

_MASK_63 = (1 << 63) - 1


def derive_seed(seed: int, *tags: str | int) -> int:
    """Deterministic sub-seed of ``seed`` for the step named by ``tags``.

    The sha256 of ``repr((seed, *tags))``, first 8 bytes read big-endian, masked to
    63 bits so it is a valid non-negative seed for torch and numpy. Stable across
    processes and Python versions (unlike ``hash``).
    """
    digest = hashlib.sha256(repr((seed, *tags)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & _MASK_63


def generator(seed: int, *tags: str | int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``derive_seed(seed, *tags)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *tags))
    return g
