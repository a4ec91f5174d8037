"""Recomputing what a stored FPE model records, from what it stores: the store's
re-verification of entries of kind "fpe" and "boolean-fpe" (`fci.store.recompute`).

From the entry's config (the trial: its task or data spec, widths, seed and
schedule, and the condition) the data is rebuilt, and from its tensors the model
and its parent at expansion. Then, for the model and for the parent:

- train accuracy, test accuracy, test exact match and test loss, measured by
  `evaluate` as training measured them, agree within `TOLERANCE` (float32
  precision: the stack a model was evaluated in can move the last bits);
- the non-zero counts (nnz, nnz_weights, nnz_biases) agree exactly;

and for the entry:

- a child's masks and `parent_index` equal those of expanding the stored parent
  again (the split is a pure function of parent, split, alpha and seed); a dense
  baseline's masks equal its parent's;
- the recorded data spec and, on Boolean tasks, the clauses are the trial's.

Not recomputable without training again: the per-epoch `train_loss` curve and
`provenance`, and the raw weights themselves beyond what the measurements see
(a change too small to move any of them at float32 precision, or a raw weight
behind a zero mask, which changes nothing fci reports).
"""

from __future__ import annotations

from typing import Any

import torch

from fci.data import Dataset, DatasetSpec, task_dataset
from fci.models import MaskedMLP, MaskedMLPStack
from fci.store.entries import StoreEntry, canonical
from fci.store.errors import NotRecomputable
from fci.store.recompute import RECOMPUTE, disagreement
from fci.tasks import DNFTask
from fci.train.config import FPESpec
from fci.train.fitting import evaluate
from fci.train.persistence import split_tensors
from fci.train.schedule import _child

__all__ = ["recompute_fpe_entry", "TOLERANCE"]

#: Largest difference accepted between a recorded and a recomputed accuracy
#: (absolute) or loss (relative): a few float32 ulps.
TOLERANCE = 1e-6
_MEASURED = ("train_accuracy", "test_accuracy", "test_exact_match", "test_loss")
_COUNTS = ("nnz", "nnz_weights", "nnz_biases")
_DATA: dict[str, tuple[Dataset, DNFTask | None]] = {}  # a trial's data, for the dense entry and its children


def _spec(config: dict[str, Any], metrics: dict[str, Any]) -> tuple[FPESpec, list[str]]:
    """The trial spec of an entry, and disagreements between its config and metrics about its data."""
    wrong = []
    if config.get("kind") == "fpe":
        recorded = metrics.get("data")
        if not isinstance(recorded, dict):
            raise NotRecomputable("metrics.json records no data spec, so its data cannot be rebuilt")
        try:
            data = DatasetSpec.from_dict(recorded)
        except ValueError as e:
            raise NotRecomputable(f"its data cannot be rebuilt here ({e})") from None
        if data.key() != config.get("data"):
            wrong.append("metrics.json's data spec names other data than config.json")
        config = {**config, "data": data.to_dict()}
    try:
        spec = FPESpec.from_entry_config(config)
    except ValueError as e:
        raise NotRecomputable(f"its config is not a trial's ({e})") from None
    if config.get("kind") == "boolean-fpe" and metrics.get("data") != spec.dataset_spec.to_dict():
        wrong.append(f"data recorded {metrics.get('data')!r}, the trial's is {spec.dataset_spec.to_dict()!r}")
    return spec, wrong


def _data(spec: FPESpec) -> tuple[Dataset, DNFTask | None]:
    """The trial's data, as the schedule builds it, and its Boolean task."""
    ident = canonical({"task": spec.task.to_dict(), "seed": spec.seed} if spec.data is None else {"data": spec.data.key()})
    if ident not in _DATA:
        try:
            if spec.data is None:
                task = spec.make_task()
                made: tuple[Dataset, DNFTask | None] = (task_dataset(task), task)
            else:
                made = (spec.dataset(), spec.make_task() if spec.boolean else None)
        except (ValueError, OSError) as e:
            raise NotRecomputable(f"its data cannot be rebuilt here ({e})") from None
        if len(_DATA) >= 8:
            _DATA.pop(next(iter(_DATA)))
        _DATA[ident] = made
    return _DATA[ident]


def _measurements(who: str, recorded: Any, model: MaskedMLP, data: Dataset, loss: str) -> list[str]:
    if not isinstance(recorded, dict):
        return [f"metrics.json records no measurements of the {who}"]
    stack = MaskedMLPStack.from_models([model])
    tr = evaluate(stack, data.x_train.unsqueeze(0), data.y_train.unsqueeze(0), loss)
    te = evaluate(stack, data.x_test.unsqueeze(0), data.y_test.unsqueeze(0), loss)
    got: dict[str, float | int] = {"train_accuracy": float(tr["accuracy"][0]), "test_accuracy": float(te["accuracy"][0]),
                                   "test_exact_match": float(te["exact_match"][0]), "test_loss": float(te["loss"][0])}
    split = model.nnz_split()
    got.update(nnz=split["total"], nnz_weights=split["weights"], nnz_biases=split["biases"])
    wrong = []
    for name in (*_MEASURED, *_COUNTS):
        if name not in recorded:
            wrong.append(f"the {who}'s {name} is not recorded")
            continue
        if name in _COUNTS:
            d = disagreement(f"the {who}'s {name}", recorded[name], got[name])
        elif name == "test_loss":
            d = disagreement(f"the {who}'s {name}", recorded[name], got[name], rel=TOLERANCE)
        else:
            d = disagreement(f"the {who}'s {name}", recorded[name], got[name], abs_=TOLERANCE)
        if d is not None:
            wrong.append(d)
    return wrong


def _same(what: str, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], names: list[str]) -> list[str]:
    return [f"{n} differs from {what}" for n in names if n not in a or n not in b or not torch.equal(a[n], b[n])]


def recompute_fpe_entry(entry: StoreEntry) -> list[str]:
    """The disagreements between what an FPE model entry records and what its
    weights, config and data give (see the module docstring); empty when none."""
    config = {k: v for k, v in entry.config.items() if k not in ("format", "key")}
    spec, wrong = _spec(config, entry.metrics)
    data, task = _data(spec)
    own, parent_t = split_tensors(entry.tensors)
    model, parent = MaskedMLP.from_tensors(own), MaskedMLP.from_tensors(parent_t)
    wrong += _measurements("model", entry.metrics, model, data, spec.loss)
    wrong += _measurements("parent", entry.metrics.get("parent"), parent, data, spec.loss)
    masks = [f"{m}{l}" for l in range(model.n_layers) for m in ("M", "m")]
    if config["condition"] == "dense":
        wrong += _same("the parent's", model.tensors(), parent.tensors(), masks)
    else:
        clauses = task.clauses if task is not None else data.info.get("clauses")
        child = _child(spec, parent, config["condition"], int(config["alpha"]), clauses)
        wrong += _same("expanding the stored parent again", model.tensors(), child.tensors(), [*masks, "parent_index"])
    if task is not None and entry.metrics.get("clauses") != [list(map(list, c)) for c in task.clauses]:
        wrong.append("the recorded clauses are not the trial's task's")
    return wrong


RECOMPUTE.register("fpe", recompute_fpe_entry)
RECOMPUTE.register("boolean-fpe", recompute_fpe_entry)
