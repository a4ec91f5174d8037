"""Persistence of trials: one store entry per model (config, metrics with
provenance, tensors; the parent at expansion rides along in every entry)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from fci.models.mlp import MaskedMLP
from fci.store import Store, config_key
from fci.train.config import FPESpec
from fci.train.results import FPEResult, ModelResult

__all__ = ["entry_configs", "trial_keys", "save_fpe_result", "load_fpe_result", "split_tensors", "result_payload",
           "result_from_payload"]


def entry_configs(spec: FPESpec) -> dict[tuple[str, int], dict[str, Any]]:
    """The store config of every model of a trial: ("dense", 1) and each (split, alpha).

    `expansions` is left out of the shared part, so adding an expansion to a
    sweep leaves the keys of models already trained unchanged. A trial on a
    per-trial Boolean task is keyed by its task family (kind "boolean-fpe");
    one on any other data by the data's `DatasetSpec.key()` (kind "fpe"), so
    the same spec in two studies names the same models. Children record the
    expanded `layers` unless they are (0,), and the dense baseline never does:
    it is the same model whichever layers its children split."""
    base: dict[str, Any]
    if spec.data is None:
        base = {"kind": "boolean-fpe", "task": spec.task.to_dict()}
    else:
        base = {"kind": "fpe", "data": spec.data.key()}
    base.update(hidden=spec.hidden if isinstance(spec.hidden, int) else list(spec.hidden), seed=spec.seed,
                train=spec.train.to_dict())
    layers = {} if spec.layers == (0,) else {"layers": spec.layers if isinstance(spec.layers, str) else list(spec.layers)}
    out = {("dense", 1): {**base, "condition": "dense", "alpha": 1}}
    for split, alpha in spec.expansions:
        out[(split, alpha)] = {**base, "condition": split, "alpha": alpha, **layers}
    return out


def trial_keys(specs: "Sequence[FPESpec]") -> list[list[str]]:
    """The store keys of every model of each trial (dense first)."""
    return [[config_key(c) for c in entry_configs(s).values()] for s in specs]


def save_fpe_result(store: Store, result: FPEResult) -> dict[tuple[str, int], str]:
    """Store every model of a trial; each entry carries the parent at expansion
    (tensors prefixed `parent.`) so it can be reopened on its own."""
    parent_tensors = {f"parent.{k}": v for k, v in result.parent.model.tensors().items()}
    parent_metrics = result.parent.metrics()
    keys = {}
    for cond, cfg in entry_configs(result.spec).items():
        res = result.dense if cond == ("dense", 1) else result.children[cond]
        metrics = {**res.metrics(), "parent": parent_metrics, "data": result.spec.dataset_spec.to_dict()}
        if result.task is not None:
            metrics["clauses"] = [list(map(list, c)) for c in result.task.clauses]
        keys[cond] = store.save(cfg, metrics, {**res.model.tensors(), **parent_tensors})
    return keys


def _model_result(model: MaskedMLP, m: dict[str, Any]) -> ModelResult:
    return ModelResult(
        model=model,
        train_accuracy=m["train_accuracy"],
        test_accuracy=m["test_accuracy"],
        test_exact_match=m["test_exact_match"],
        test_loss=m["test_loss"],
        train_loss=list(m.get("train_loss", [])),
        provenance=dict(m.get("provenance") or {}),
    )


def split_tensors(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(model tensors, parent tensors) of a store entry."""
    own = {k: v for k, v in tensors.items() if not k.startswith("parent.")}
    parent = {k[len("parent."):]: v for k, v in tensors.items() if k.startswith("parent.")}
    return own, parent


def load_fpe_result(store: Store, spec: FPESpec, missing_ok: bool = False) -> FPEResult:
    """Reopen a stored trial; raises StoreError naming a missing or corrupt file.
    With `missing_ok`, children not in the store are left out of `children`
    (the dense entry, which carries the parent, must exist)."""
    entries = {
        cond: store.load(config_key(cfg))
        for cond, cfg in entry_configs(spec).items()
        if not missing_ok or cond == ("dense", 1) or store.has(config_key(cfg))
    }
    dense = entries[("dense", 1)]
    own, parent = split_tensors(dense.tensors)
    return FPEResult(
        spec=spec,
        task=spec.make_task() if spec.boolean else None,
        parent=_model_result(MaskedMLP.from_tensors(parent), dense.metrics["parent"]),
        dense=_model_result(MaskedMLP.from_tensors(own), dense.metrics),
        children={
            cond: _model_result(MaskedMLP.from_tensors(split_tensors(e.tensors)[0]), e.metrics)
            for cond, e in entries.items()
            if cond != ("dense", 1)
        },
    )


# ---------------------------------------------------------------------------
# A trial as plain data (tensors and JSON-able metrics), the way the store holds it: what
# a cluster worker sends back to the driver, and what the driver sends a worker of a trial
# whose parent is stored already.

Payload = dict[str, Any]


def _model_payload(res: ModelResult) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return {k: v.detach().cpu().contiguous() for k, v in res.model.tensors().items()}, res.metrics()


def _from_model_payload(p: tuple[dict[str, torch.Tensor], dict[str, Any]]) -> ModelResult:
    return _model_result(MaskedMLP.from_tensors(p[0]), p[1])


def result_payload(result: FPEResult) -> Payload:
    """A trial's models as tensors and metrics (what `save_fpe_result` stores, without
    the files); `result_from_payload` rebuilds the same FPEResult bit for bit."""
    return {"parent": _model_payload(result.parent), "dense": _model_payload(result.dense),
            "children": [(split, alpha, _model_payload(r)) for (split, alpha), r in result.children.items()]}


def result_from_payload(spec: FPESpec, payload: Payload) -> FPEResult:
    """The FPEResult of `spec` from `result_payload`'s answer (as `load_fpe_result` rebuilds a stored one)."""
    return FPEResult(
        spec=spec,
        task=spec.make_task() if spec.boolean else None,
        parent=_from_model_payload(payload["parent"]),
        dense=_from_model_payload(payload["dense"]),
        children={(split, alpha): _from_model_payload(p) for split, alpha, p in payload["children"]},
    )
