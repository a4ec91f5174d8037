"""One measurement-row builder: the results.csv columns every trained model has.

Every study that trains models writes these columns under these names (see
`analyses._columns.COLUMNS` for their meanings), computed here once:

    test_accuracy, train_accuracy, test_loss, train_loss_final,
    train_loss_late_drop, train_loss_late_drop_rel, converged,
    nnz, nnz_weights, nnz_biases, acc_per_param, dead_units, backend

`model_columns` takes a `fci.train.ModelResult`; `measure_columns` takes the same
quantities one by one, for studies whose trainer returns them separately (the
structured-sparsity stacks, the CNNs).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from fci.metrics import accuracy_per_parameter, is_flat, late_drop
from fci.train import ModelResult

__all__ = ["MODEL_COLUMNS", "model_columns", "measure_columns", "dead_units"]

#: The columns `model_columns` writes, in order.
MODEL_COLUMNS = ("test_accuracy", "train_accuracy", "test_loss", "train_loss_final", "train_loss_late_drop",
                 "train_loss_late_drop_rel", "converged", "nnz", "nnz_weights", "nnz_biases", "acc_per_param",
                 "dead_units", "backend")


def dead_units(model: Any, x: torch.Tensor) -> int:
    """First-hidden-layer units that never fire on the inputs x: pre-activation
    <= 0 on every input (inert FPE children included). Their gradient is zero, so
    they stay dead. An MLP (x: (N, n)) counts neurons; a CNN (x: (N, C, H, W))
    counts first-layer filters that are <= 0 at every position of every input."""
    W, b = model.effective_weights()[0]  # MLP: (H, n), (H,); CNN: (F, C, kh, kw), (F,)
    x = x.to(device=W.device, dtype=W.dtype)
    if W.dim() == 4:
        pre = F.conv2d(x, W, b, padding=model.kernel_size // 2)  # (N, F, H, W)
        return int((pre <= 0).transpose(0, 1).flatten(1).all(1).sum())
    pre = x @ W.T + b  # (N, H)
    return int((pre <= 0).all(0).sum())


def measure_columns(model: Any, *, test_accuracy: float, train_accuracy: float, test_loss: float,
                    train_loss: Sequence[float], x_test: torch.Tensor | None = None,
                    backend: str | None = None) -> dict[str, Any]:
    """The common columns of one trained model (an MLP or a CNN with `nnz_split`).
    `train_loss`: the model's mean train loss per epoch of its phase(s); the late
    drop and `converged` follow `fci.metrics.late_drop` / `is_flat` (SPEC §4).
    `dead_units` is NaN without `x_test`, `backend` None when not known."""
    split = model.nnz_split()
    losses = [float(v) for v in train_loss]
    drop_abs, drop_rel = late_drop(losses) if losses else (math.nan, math.nan)
    return {
        "test_accuracy": float(test_accuracy),
        "train_accuracy": float(train_accuracy),
        "test_loss": float(test_loss),
        "train_loss_final": losses[-1] if losses else math.nan,
        "train_loss_late_drop": drop_abs,
        "train_loss_late_drop_rel": drop_rel,
        "converged": is_flat(drop_abs, drop_rel),
        "nnz": int(split["total"]),
        "nnz_weights": int(split["weights"]),
        "nnz_biases": int(split["biases"]),
        "acc_per_param": float(accuracy_per_parameter(test_accuracy, split["total"])) if split["total"] else math.nan,
        "dead_units": dead_units(model, x_test) if x_test is not None else math.nan,
        "backend": backend,
    }


def model_columns(res: ModelResult, x_test: torch.Tensor | None = None) -> dict[str, Any]:
    """The common columns of a `ModelResult` (its backend from `res.provenance`)."""
    return measure_columns(res.model, test_accuracy=res.test_accuracy, train_accuracy=res.train_accuracy,
                           test_loss=res.test_loss, train_loss=res.train_loss, x_test=x_test,
                           backend=res.provenance.get("backend"))
