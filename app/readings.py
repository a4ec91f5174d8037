"""What the explorer reads from a run's networks on a Boolean task: what each
network computes (`fci.codes.decode_function`, decoded once per network and
process: `network_reading`), what its weights prove (the certified static reading,
`fci.codes.decode(model, method="certified")`, and `fci.codes.cascade` for networks
with several hidden layers: `certified_reading`, read only when asked for) and what its
weights code at a sign threshold (channels and the static `fci.codes.decode`:
`analyse`). Every reading is set beside the true-formula agreement, the reference.
Nothing here draws.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from app.lru import LRU
from app.runs import Clause, LoadedRun, ModelData
from fci.codes import (
    Cascade,
    ClauseSplitView,
    DecodedCircuit,
    cascade,
    circuit_agreement,
    clause_recovery,
    clause_table,
    collision_graph,
    decode,
    decode_function,
    sign_codes,
    split_view,
    true_formula_agreement,
)
from fci.models.mlp import MaskedMLP
from fci.tasks import format_clause

__all__ = ["CertifiedReading", "ModelCodes", "NetworkReading", "OutputReading", "RunAnalysis", "TermReading",
           "Threshold", "analyse", "certified_reading", "network_reading", "read_network"]

log = logging.getLogger(__name__)

#: A sign threshold: "auto" (each neuron's two-cluster split of |w|, `fci.codes`'
#: default) or a fraction of each neuron's own max|w|.
Threshold = float | str


# --------------------------------------------------------------------------- what the networks compute


@dataclass(frozen=True)
class TermReading:
    """One decoded term of one output (`fci.codes.decode_function`).

    precision: P(the output is 1 | the term holds), other inputs uniform;
    certified: proved 1 on every input where the term holds (interval bounds or
    enumeration); matches: the true clause of this output with exactly the term's
    literals (None if none); broader: true clauses of this output whose literals
    include all of the term's (the term fires wherever they hold), the match included."""

    clause: Clause
    text: str
    precision: float
    certified: bool
    matches: int | None
    broader: tuple[int, ...]


@dataclass(frozen=True)
class OutputReading:
    """What one output computes, read by `decode_function`.

    constant: the output reads as ⊤ (the constant agrees at least as well as any OR
    of terms); true_clauses: the task's clauses OR'ed into this output
    (`task.groups`); missed: those no decoded term fires on (no term's literals are a
    subset of theirs); uncovered: the fraction of the network's positive inputs
    (uniform inputs; all 2^n when n <= 14) that no term covers; positive_rate: the
    network's positive rate there; sample_agreement: the circuit's agreement with
    the network on those inputs."""

    output: int
    label: str
    constant: bool
    terms: tuple[TermReading, ...]
    true_clauses: tuple[int, ...]
    missed: tuple[int, ...]
    uncovered: float
    positive_rate: float
    sample_agreement: float


@dataclass(frozen=True)
class NetworkReading:
    """One network's functional reading, independent of the sign threshold.

    circuit: `decode_function(model)` (None with `reason` when it cannot read the
    network); agreement: the circuit vs the network's own test-set outputs;
    reference: the true-formula agreement, the task's formula vs the same outputs
    (`fci.codes.true_formula_agreement`; a reading may exceed it); recovery_f1: the
    terms against the true clauses (`fci.codes.clause_recovery`); seconds: decoding time."""

    circuit: DecodedCircuit | None
    outputs: tuple[OutputReading, ...]
    agreement: float
    reference: float
    recovery_f1: float
    seconds: float
    reason: str = ""


def _literal_set(clause: Sequence[tuple[int, bool]]) -> frozenset[tuple[int, bool]]:
    return frozenset((int(v), bool(p)) for v, p in clause)


def read_network(model: Any, clauses: Sequence[Clause], groups: Sequence[Sequence[int]], x_test: np.ndarray,
                 predictions: np.ndarray, out_labels: Sequence[str] | None = None,
                 circuit: DecodedCircuit | None = None, seconds: float = math.nan, form: str = "dnf") -> NetworkReading:
    """The functional reading of a one-hidden-layer network on a Boolean task.

    model: a model or (W1, b1, W2, b2) tuple; clauses: the task's true clauses;
    groups: per output, the clause indices it ORs (`task.groups`); x_test (N, n),
    predictions (N, O) 0/1: the test inputs and the network's outputs on them;
    circuit: an already decoded `decode_function(model)` (decoded here if None);
    form: the task's formula ("cnf": clauses are ORs, outputs ANDs; the reference
    reads it so). The reference is computed even when the network cannot be decoded."""
    reference = true_formula_agreement(clauses, predictions, x_test, groups, form=form)
    if circuit is None:
        t0 = time.perf_counter()
        try:
            circuit = decode_function(model, form=form)  # the task's form: terms set beside its clauses
        except ValueError as e:  # a network decode_function cannot read
            return NetworkReading(None, (), math.nan, reference, math.nan, math.nan, reason=str(e))
        seconds = time.perf_counter() - t0
    truth = [_literal_set(c) for c in clauses]
    outputs = []
    for o in range(circuit.n_outputs):
        own = tuple(int(c) for c in groups[o])
        terms = []
        for d, (clause, outs) in enumerate(zip(circuit.clauses, circuit.readouts)):
            if o not in outs:
                continue
            j = outs.index(o)
            lits = _literal_set(clause)
            terms.append(TermReading(
                clause=clause, text=format_clause(clause, circuit.form),
                precision=float(circuit.precision[d][j]) if circuit.precision else math.nan,
                certified=bool(circuit.certified[d][j]) if circuit.certified else False,
                matches=next((c for c in own if truth[c] == lits), None),
                broader=tuple(c for c in own if lits <= truth[c])))
        constant = bool(circuit.default[o])
        fired = {c for t in terms for c in t.broader}
        outputs.append(OutputReading(
            output=o, label=out_labels[o] if out_labels else f"y{o}", constant=constant, terms=tuple(terms),
            true_clauses=own, missed=() if constant else tuple(c for c in own if c not in fired),
            uncovered=float(circuit.uncovered[o]) if circuit.uncovered else math.nan,
            positive_rate=float(circuit.positive_rate[o]) if circuit.positive_rate else math.nan,
            sample_agreement=float(circuit.sample_agreement[o]) if circuit.sample_agreement else math.nan))
    return NetworkReading(
        circuit=circuit, outputs=tuple(outputs), agreement=circuit_agreement(circuit, predictions, x_test),
        reference=reference, recovery_f1=float(clause_recovery(circuit.clauses, clauses)["f1"]), seconds=seconds)


def _weights_digest(model: MaskedMLP) -> str:
    """The content of a network's effective weights: equal networks (a parent or a
    baseline shown in several runs) share one decoding."""
    h = hashlib.sha1()
    for W, b in model.effective_weights():
        for t in (W, b):
            a = np.ascontiguousarray(t.numpy())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()


#: decode_function's circuits (and seconds) by weights digest: ~0.2-0.9 s a small
#: network, several seconds at 128 x 256, so each network is decoded once per process.
_CIRCUITS = LRU(64)


def _decoded(model: MaskedMLP, form: str = "dnf") -> tuple[DecodedCircuit, float]:
    """`decode_function`'s reading of `model` in `form`, and its seconds (a ValueError is
    not cached: the caller says why)."""
    def read() -> tuple[DecodedCircuit, float]:
        t0 = time.perf_counter()
        circuit = decode_function(model, form=form)
        return circuit, time.perf_counter() - t0

    return _CIRCUITS.get((_weights_digest(model), form), read)


_READ_LOCK = threading.Lock()


def network_reading(run: LoadedRun, slot: str) -> NetworkReading | None:
    """What network `slot` of `run` computes (`read_network`; decoded once per
    network and process, whatever the threshold); None without clauses (decoding
    reads Boolean tasks)."""
    if not run.has_clauses or run.x_test is None:
        return None
    with _READ_LOCK:
        if slot not in run.readings:
            m = run.models[slot]
            assert m.predictions is not None
            try:
                if m.model is None:
                    raise ValueError("the network's model is not loaded")
                circuit, seconds = _decoded(m.model, run.form)
            except ValueError as e:  # a network decode_function cannot read
                run.readings[slot] = NetworkReading(
                    None, (), math.nan,
                    true_formula_agreement(run.clauses, m.predictions, run.x_test, run.groups, form=run.form),
                    math.nan, math.nan, reason=str(e))
            else:
                run.readings[slot] = read_network(m.model, run.clauses, run.groups, run.x_test, m.predictions,
                                                  run.out_labels, circuit, seconds, form=run.form)
        return run.readings[slot]


# --------------------------------------------------------------------------- what the weights prove


@dataclass(frozen=True)
class CertifiedReading:
    """One network's certified static reading: terms proved from the weights alone.

    circuit: `decode(model, method="certified", form=...)` in the task's form (for a
    network with several hidden layers, `cascade.output`, the same reading); cascade:
    `fci.codes.cascade(model)` when the network has more than one hidden layer, else
    None; relations[o][k]: the true clauses of output o that term k of
    `circuit.terms(o)` implies (DNF: the clause holds wherever the term does; CNF: the
    clause fails wherever the term fails); agreement: the circuit vs the network's own
    test-set outputs (0 where nothing is proved for a DNF, 1 for a CNF); reference:
    the true-formula agreement on the same outputs; seconds: reading time; reason:
    why there is no reading (circuit None)."""

    circuit: DecodedCircuit | None
    cascade: Cascade | None
    relations: tuple[tuple[tuple[int, ...], ...], ...]
    agreement: float
    reference: float
    seconds: float
    reason: str = ""

    @property
    def gap(self) -> float:
        """Agreement minus the reference (positive where the reading agrees better)."""
        return self.agreement - self.reference


#: Certified readings (and cascades) by weights digest: up to ~10 s for a 16-neuron
#: network, so each network is read once per process, and only when asked for.
_CERTIFIED = LRU(64)


def _proved(model: MaskedMLP, form: str = "dnf") -> tuple[DecodedCircuit, Cascade | None, float]:
    """The certified reading of `model` in `form`, through the cascade when it is deep."""
    def read() -> tuple[DecodedCircuit, Cascade | None, float]:
        t0 = time.perf_counter()
        if len(model.effective_weights()) > 2:  # several hidden layers: the cascade's output is the reading
            steps = cascade(model, form=form)
            return steps.output, steps, time.perf_counter() - t0
        return decode(model, method="certified", form=form), None, time.perf_counter() - t0

    return _CERTIFIED.get((_weights_digest(model), form), read)


_PROVE_LOCK = threading.Lock()


def certified_reading(run: LoadedRun, slot: str) -> CertifiedReading | None:
    """What the weights of network `slot` of `run` prove (read once per network and
    process); None without clauses. A network the certified reader refuses gets a
    reading with its reason."""
    if not run.has_clauses or run.x_test is None:
        return None
    key = f"certified:{slot}"
    with _PROVE_LOCK:
        if key not in run.readings:
            m = run.models[slot]
            assert m.predictions is not None
            reference = true_formula_agreement(run.clauses, m.predictions, run.x_test, run.groups, form=run.form)
            try:
                if m.model is None:
                    raise ValueError("the network's model is not loaded")
                circuit, steps, seconds = _proved(m.model, run.form)
            except ValueError as e:  # a network the certified reader cannot read
                run.readings[key] = CertifiedReading(None, None, (), math.nan, reference, math.nan, reason=str(e))
            else:
                truth = [_literal_set(c) for c in run.clauses]
                relations = tuple(
                    tuple(tuple(c for c in run.groups[o] if truth[c] <= _literal_set(t)) for t in circuit.terms(o))
                    for o in range(circuit.n_outputs))
                run.readings[key] = CertifiedReading(
                    circuit, steps, relations, circuit_agreement(circuit, m.predictions, run.x_test), reference,
                    seconds)
        return run.readings[key]


# --------------------------------------------------------------------------- code analysis


@dataclass
class ModelCodes:
    """One network's codes at a threshold.

    signs: (H, n) sign categories of W1; rows: `fci.codes.clause_table` rows (channel,
    readout, votes, collisions, polysemantic, capacity per clause); polysemanticity:
    (H,) clauses per neuron; graph: the collision graph; static: the circuit the
    static `fci.codes.decode` reads from the weights at this threshold (None when
    it cannot read the network); agreement: its agreement with the network's own
    test-set outputs; recovery_f1: its clauses against the true ones."""

    signs: np.ndarray
    rows: list[dict[str, Any]]
    polysemanticity: np.ndarray
    graph: nx.Graph
    agreement: float
    n_decoded: int
    recovery_f1: float
    static: DecodedCircuit | None = None

    @property
    def channels(self) -> list[list[int]]:
        return [r["channel"] for r in self.rows]


@dataclass
class RunAnalysis:
    """A run's codes at one sign threshold ("auto" or a fraction of each neuron's
    max|w|): per network, and the per-clause before/after view of the split
    (parent -> child)."""

    run: LoadedRun
    threshold: Threshold
    codes: dict[str, ModelCodes]
    split: list[ClauseSplitView] | None
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # panels drawn from it (app.views)

    @property
    def has_split(self) -> bool:
        return self.split is not None


def _codes(m: ModelData, clauses: list[Clause], x_test: np.ndarray, threshold: Threshold, form: str = "dnf") -> ModelCodes:
    rows = clause_table(m.W1, m.W2, clauses, threshold=threshold, b1=m.b1, form=form)
    poly = np.zeros(m.H, dtype=np.int64)
    for r in rows:
        poly[r["channel"]] += 1
    circuit: DecodedCircuit | None
    try:
        circuit = decode(m.model, threshold=threshold)
        agreement = circuit_agreement(circuit, m.predictions, x_test)
        n_decoded = len(circuit.clauses)
        f1 = clause_recovery(circuit.clauses, clauses)["f1"]
    except ValueError as e:  # e.g. more than one hidden layer: decode reads one
        log.info("decode skipped for the %s: %s", m.name, e)
        circuit, agreement, n_decoded, f1 = None, math.nan, 0, math.nan
    return ModelCodes(
        signs=sign_codes(m.W1, threshold=threshold),
        rows=rows,
        polysemanticity=poly,
        graph=collision_graph(m.W1, clauses, threshold=threshold, form=form),
        agreement=agreement,
        n_decoded=n_decoded,
        recovery_f1=f1,
        static=circuit,
    )


def analyse(run: LoadedRun, threshold: Threshold) -> RunAnalysis:
    """The code analysis of every network of `run` at a sign threshold ("auto" or
    a fraction of each neuron's max|w|; none
    without clauses); the before/after split view when the run has a parent and a
    child mapped onto it."""
    if not run.has_clauses:
        return RunAnalysis(run=run, threshold=threshold, codes={}, split=None)
    assert run.x_test is not None  # load_run sets x_test whenever the run has clauses (both come from the task)
    codes = {name: _codes(m, run.clauses, run.x_test, threshold, run.form) for name, m in run.models.items()}
    child, parent = run.models.get("child"), run.models.get("parent")
    views = None
    if child is not None and parent is not None and child.parent_index is not None:
        views = split_view(parent.W1, child.W1, child.parent_index, run.clauses, threshold=threshold,
                           child_mask=child.M1, form=run.form)
    return RunAnalysis(run=run, threshold=threshold, codes=codes, split=views)
