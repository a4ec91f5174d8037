"""Every reading of one trained network beside its reference (SPEC §5, *Verification*):
the numbers `python -m fci` prints and `analyses.decoding` records, computed in one place.

Four readings of a network, each with its agreement with the network's own predictions
on the task's test inputs (the inputs the reference is measured on):

- ``decode_*``/``circuit_agreement``: the static channel reading (``decode(model)``, what
  the weights code), beside ``constant_agreement``, the best constant output's agreement,
  so a reading that explains less than "always 1" or "always 0" shows it;
- ``certified_*``: the certified static reading (``decode(model, method="certified")``,
  what the weights prove): agreement, mean ``coverage`` of each output's region, the share
  of outputs whose coverage is exact (not a lower bound) and the share fully proved;
- ``function_*``: ``decode_function`` on uniform inputs (its default input model), and
  ``inputs_function_*``: on the task's own unlabeled training inputs (never labels), each
  with its agreement on its own distribution, named in ``*_distribution``, the form and
  term length it chose, exact clause recovery beside F1 and its warnings count;
- ``true_formula_agreement``: the reference, and ``*_gap`` = reading - reference (a
  reading of what the network computes may exceed it: the network is not its formula).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from fci.codes import circuit_agreement, clause_recovery, decode, decode_function, network_predictions, true_formula_agreement
from fci.codes.circuit import DecodedCircuit
from fci.metrics import _to_numpy

__all__ = ["best_constant_agreement", "measure_readings", "FUNCTIONAL", "TEXT_KEYS"]

#: The two functional readings: key prefix -> what its inputs are.
FUNCTIONAL = {"function": "uniform inputs", "inputs_function": "the task's unlabeled training inputs"}

#: Keys of `measure_readings` that hold text (distribution, form), not numbers.
TEXT_KEYS = tuple(f"{p}_{k}" for p in FUNCTIONAL for k in ("distribution", "form"))


def best_constant_agreement(network_output: Any) -> float:
    """The agreement with ``network_output`` (N, O) (logits or 0/1; output 1 where > 0) of
    the best constant reading: per output the larger of always-1 and always-0 (its
    positive rate or one minus it), averaged over outputs like `circuit_agreement`
    averages over (input, output) entries. A reading below it explains less than a
    constant."""
    y = _to_numpy(network_output, "network_output")
    if y.ndim != 2 or y.shape[0] == 0:
        raise ValueError(f"network_output must have shape (N >= 1, O), got {tuple(y.shape)}")
    rate = (y > 0).mean(axis=0)
    return float(np.maximum(rate, 1.0 - rate).mean())


def _functional(circuit: DecodedCircuit, prefix: str, clauses, y_net, x_test, reference: float, seconds: float) -> dict[str, Any]:
    rec = clause_recovery(circuit.clauses, clauses)
    agreement = float(circuit_agreement(circuit, y_net, x_test))
    return {
        f"{prefix}_agreement": agreement,
        f"{prefix}_own_agreement": float(np.mean(circuit.sample_agreement)),
        f"{prefix}_distribution": str(circuit.distribution),
        f"{prefix}_form": circuit.form,
        f"{prefix}_max_literals": int(circuit.max_literals) if circuit.max_literals is not None else np.nan,
        f"{prefix}_f1": float(rec["f1"]),
        f"{prefix}_exact_f1": float(rec["exact_f1"]),
        f"{prefix}_uncovered": float(np.mean(circuit.uncovered)),
        f"{prefix}_terms": len(circuit.clauses),
        f"{prefix}_warnings": len(circuit.warnings),
        f"{prefix}_gap": agreement - reference,
        f"{prefix}_seconds": seconds,
    }


def measure_readings(model: Any, task: Any, x_test: Any, inputs: Any, *, threshold: float | str = "auto",
                     similarity: float = 1.0, max_literals: int | str = "auto", seed: int = 0,
                     certified: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every reading of ``model`` (trained on ``task``, a `BooleanTask`) verified on
    ``x_test`` (N, n), the task's test inputs: see the module docstring for the keys.
    ``inputs`` (M, n) are the task's unlabeled training inputs, the second functional
    reading's input model. ``threshold`` and ``similarity`` belong to the channel
    reading, ``max_literals`` and ``seed`` to `decode_function`, ``certified`` (options of
    `fci.codes.decode_certified`, e.g. ``{"pieces": 1024}``) to the certified reading."""
    clauses = task.clauses
    y_net = network_predictions(model, x_test)
    reference = float(true_formula_agreement(clauses, y_net, x_test, task.groups, form=task.form))
    t0 = time.perf_counter()
    static = decode(model, threshold=threshold, similarity=similarity)
    static_s = time.perf_counter() - t0
    rec = clause_recovery(static.clauses, clauses)
    t0 = time.perf_counter()
    proved = decode(model, method="certified", **(certified or {}))
    certified_s = time.perf_counter() - t0
    certified_agreement = float(circuit_agreement(proved, y_net, x_test))
    out: dict[str, Any] = {
        "decode_f1": float(rec["f1"]),
        "decode_precision": float(rec["precision"]),
        "decode_recall": float(rec["recall"]),
        "decode_exact": int(rec["n_exact"]),
        "decode_exact_f1": float(rec["exact_f1"]),
        "n_decoded": int(rec["n_decoded"]),
        "circuit_agreement": float(circuit_agreement(static, y_net, x_test)),
        "constant_agreement": best_constant_agreement(y_net),
        "static_seconds": static_s,
        "certified_agreement": certified_agreement,
        "certified_coverage": float(np.mean(proved.coverage)),
        "certified_coverage_exact": float(np.mean(proved.coverage_exact)),
        "certified_proved": float(np.mean([e and c >= 1.0 for c, e in zip(proved.coverage, proved.coverage_exact)])),
        "certified_terms": len(proved.clauses),
        "certified_gap": certified_agreement - reference,
        "certified_seconds": certified_s,
    }
    for prefix, given in (("function", None), ("inputs_function", inputs)):
        t0 = time.perf_counter()
        circuit = decode_function(model, max_literals=max_literals, seed=seed, inputs=given)
        out.update(_functional(circuit, prefix, clauses, y_net, x_test, reference, time.perf_counter() - t0))
    out["true_formula_agreement"] = reference
    return out
