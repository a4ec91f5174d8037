"""One measurement-row builder: the results.csv columns every trained model has.

Every study that trains models writes these columns under these names (see
`analyses.columns.COLUMNS` for their meanings), computed here once:

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

from analyses.levels import RESTART
from fci.codes import clause_channels
from fci.fpe.splits import SPLITS
from fci.metrics import (
    accuracy_per_parameter,
    accuracy_resolution,
    clause_mean_capacity,
    cosine_interference_stats,
    feature_capacity,
    is_flat,
    late_drop,
    majority_accuracy,
)
from fci.store import config_key
from fci.train import FPEResult, FPESpec, ModelResult, entry_configs

__all__ = ["MODEL_COLUMNS", "model_columns", "measure_columns", "dead_units", "model_row", "model_conditions", "condition_order",
           "trial_width", "test_set_columns"]

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


def test_set_columns(y_test: Any, loss: str = "bce") -> dict[str, float]:
    """What the statistics need to know about a trial's test set: `base_rate` (the
    accuracy of always predicting its majority; a cell whose models all sit there
    learned nothing) and `accuracy_resolution` (the smallest step its accuracy can
    take, 1 / (samples x outputs): differences within it are rounding, not spread).
    `y_test`: (N, O) 0/1 targets for "bce", (N,) class labels for "ce"."""
    return {"base_rate": majority_accuracy(y_test, loss), "accuracy_resolution": accuracy_resolution(y_test, loss)}


def trial_width(spec: FPESpec) -> int:
    """The hidden width of a one-hidden-layer trial (every sweep of these studies)."""
    if not isinstance(spec.hidden, int):
        raise ValueError(f"these studies train one hidden layer, got hidden={spec.hidden!r}")
    return spec.hidden


def model_row(result: FPEResult, trial: int, condition: str, alpha: int, res: ModelResult,
              channel_threshold: float = 0.1, x_test: torch.Tensor | None = None,
              y_test: torch.Tensor | None = None) -> dict[str, Any]:
    """One results.csv row: what the model is and what it measures.

    The measurements every trained model has (test_accuracy, train_loss_final,
    converged, nnz, dead_units, backend, ...) come from `analyses.rows.model_columns`;
    dead_units counts first-layer units that never fire on the test inputs
    `x_test` (drawn from the task when not given). Beside them:
    feature_capacity is the mean capacity over clause variables and
    cosine_interference the mean |cos| between non-zero neuron rows, both on the
    effective first-layer weights (SPEC §4); clauses_with_channel counts clauses
    whose feature channel (SPEC §5, relative threshold `channel_threshold`) is
    non-empty; base_rate and accuracy_resolution describe the test set
    (`test_set_columns`; `y_test` its targets, drawn from the task when not given).
    Condition 'restart' is the alpha = 1 control (stored as the split `RESTART`).
    Column meanings: `analyses.columns.COLUMNS`.
    """
    spec, task = result.spec, result.boolean_task
    W1 = res.model.effective_weights()[0][0]  # (H', n)
    clauses = task.clauses
    cap = clause_mean_capacity(feature_capacity(W1), clauses)
    cos = cosine_interference_stats(W1)
    channels = clause_channels(W1, clauses, threshold=channel_threshold, form=task.form)
    cfg = entry_configs(spec)[RESTART if condition == "restart" else (condition, alpha)]
    if x_test is None or y_test is None:
        x_drawn, y_drawn = task.test_data()
        x_test = x_drawn if x_test is None else x_test
        y_test = y_drawn if y_test is None else y_test
    return {
        "condition": condition,
        "alpha": int(alpha),
        "hidden": trial_width(spec),
        "width": int(res.model.hidden[0]),
        "n_clauses": task.n_clauses,
        "clause_size": task.clause_size,
        "n_vars": task.n_vars,  # type: ignore[has-type]  # fci.tasks does not type-check yet
        "trial": int(trial),
        "seed": int(spec.seed),
        **model_columns(res, x_test),
        **test_set_columns(y_test),
        "feature_capacity": float(cap),
        "cosine_interference": float(cos["abs_mean"]),
        "cosine_signed": float(cos["signed_mean"]),
        "active_neurons": int((W1 != 0).any(1).sum()),
        "clauses_with_channel": int(sum(1 for ch in channels if ch)),
        "store_key": config_key(cfg),
    }


def condition_order(condition: str) -> int:
    """Where a condition goes in tables and legends: dense, the alpha = 1 restart
    control, then the registered splits in registration order (fci.fpe.SPLITS)."""
    fixed = {"dense": 0, "restart": 1}
    if condition in fixed:
        return fixed[condition]
    return 2 + (list(SPLITS).index(condition) if condition in SPLITS else len(SPLITS))


def model_conditions(result: FPEResult) -> list[tuple[str, int, ModelResult]]:
    """(condition, alpha, model) of a trial: dense, each child, the restart control as 'restart'."""
    return [("dense", 1, result.dense)] + [("restart" if (s, a) == RESTART else s, a, r)
                                           for (s, a), r in result.children.items()]
