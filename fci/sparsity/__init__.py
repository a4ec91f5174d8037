"""Sparsity beyond FPE: what the comparison studies train and measure.

- `fci.sparsity.static`: static random sparsity at initialisation (wide-and-sparse networks);
- `fci.sparsity.magnitude`: magnitude pruning (layer-wise trajectories, effective density,
  pruning to an exact non-zero count);
- `fci.sparsity.regrow`: dynamic sparsity, prune-and-regrow during training. It trains
  through `fci.train`, which itself uses the modules above, so its names load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fci.sparsity.magnitude import prune, prune_stack_to_nnz, prune_to_nnz, pruning_trajectory
from fci.sparsity.static import sparse_mlp

__all__ = ["sparse_mlp", "prune", "pruning_trajectory", "prune_to_nnz", "prune_stack_to_nnz", "DynamicSparsity", "DynamicFit",
           "fit_dynamic", "prune_and_regrow"]

_REGROW = ("DynamicSparsity", "DynamicFit", "fit_dynamic", "prune_and_regrow")

if TYPE_CHECKING:
    from fci.sparsity.regrow import DynamicFit, DynamicSparsity, fit_dynamic, prune_and_regrow  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _REGROW:
        return getattr(importlib.import_module("fci.sparsity.regrow"), name)
    raise AttributeError(f"module 'fci.sparsity' has no attribute {name!r}")
