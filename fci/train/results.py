"""What training returns: one `ModelResult` per model, grouped per trial."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from fci.data.datasets import task_name
from fci.models.mlp import MaskedMLP
from fci.tasks import BooleanTask
from fci.train.config import FPESpec

__all__ = ["ModelResult", "FPEResult"]


@dataclass
class ModelResult:
    """One trained model and its measurements. `provenance`: how it was made
    (backend, torch version, kernel build, CPU; see `fci.train.provenance`)."""

    model: MaskedMLP
    train_accuracy: float
    test_accuracy: float
    test_exact_match: float
    test_loss: float
    train_loss: list[float] = field(default_factory=list)  # per epoch, this model's phase(s)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def nnz(self) -> int:
        return self.model.nnz()

    def metrics(self) -> dict[str, Any]:
        split = self.model.nnz_split()
        return {
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "test_exact_match": self.test_exact_match,
            "test_loss": self.test_loss,
            "nnz": split["total"],
            "nnz_weights": split["weights"],
            "nnz_biases": split["biases"],
            "train_loss": self.train_loss,
            "provenance": self.provenance,
        }

    def line(self, name: str) -> str:
        return f"  {name:<14} hidden {str(self.model.hidden):<10} nnz {self.nnz:>6}  test acc {self.test_accuracy:.4f}"

    def __repr__(self) -> str:
        return (f"ModelResult(hidden={self.model.hidden}, nnz={self.nnz}, test_accuracy={self.test_accuracy:.4f}, "
                f"backend={self.provenance.get('backend', '?')})")


def _lines(head: str, parent: ModelResult, dense: ModelResult, children: dict[tuple[str, int], ModelResult]) -> str:
    rows = [head, parent.line("parent"), dense.line("dense")]
    rows += [r.line(f"{split} x{alpha}") for (split, alpha), r in children.items()]
    return "\n".join(rows)


@dataclass(repr=False)
class FPEResult:
    """What one trial produced: the parent at expansion, the paired dense baseline
    (warmup + finetune epochs) and one child per expansion. `task` is the trial's
    Boolean task (None for other data)."""

    spec: FPESpec
    task: BooleanTask | None
    parent: ModelResult
    dense: ModelResult
    children: dict[tuple[str, int], ModelResult]

    @property
    def boolean_task(self) -> BooleanTask:
        """The trial's Boolean task; ValueError for a trial on other data."""
        if self.task is None:
            raise ValueError(f"trial seed {self.spec.seed} trains on {self.spec.dataset_spec!r}, not a Boolean task")
        return self.task

    @property
    def hidden(self) -> int | tuple[int, ...]:
        return self.spec.hidden

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def dataset(self) -> str:
        """The data's name: the task's for a Boolean trial, else the dataset's."""
        if self.task is not None:
            return task_name(self.task)
        return self.spec.dataset().name

    def __repr__(self) -> str:
        if self.task is not None and self.spec.data is None:
            t = self.spec.task
            head = f"FPEResult(seed {self.spec.seed}, {t.form.upper()} {t.n_clauses}x{t.clause_size}, n={t.resolved_n_vars}):"
        else:
            head = f"FPEResult({self.dataset}, hidden {self.hidden}, seed {self.seed}):"
        return _lines(head, self.parent, self.dense, self.children)


def __getattr__(name: str) -> Any:
    if name == "DataFPEResult":  # the former name of a trial's result on a dataset; every trial is an FPEResult now
        warnings.warn("DataFPEResult is deprecated and will be removed in fci 0.3: use FPEResult", DeprecationWarning,
                      stacklevel=2)
        return FPEResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
