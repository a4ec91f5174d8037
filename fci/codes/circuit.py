"""The decoded Boolean circuit (a DNF or a CNF per output) and the one-hidden-layer
weights the static reader reads it from.

Shared by the static decoder (:func:`fci.codes.decode`) and the functional one
(:func:`fci.codes.decode_function`); the public names are re-exported from
:mod:`fci.codes`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence, TypeVar

import numpy as np
import torch

from fci.codes.network import read_network
from fci.tasks import _check_form
from fci.metrics import (
    Clause,
    _clause_var_index,
    _like,
    _to_numpy,
)

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def _format_clause(clause: Clause, join: str = " ∧ ") -> str:
    """``x3 ∧ ¬x7``: the same format as ``fci.tasks.format_clause`` (``join=" ∨ "`` for
    a CNF's clause)."""
    return join.join(f"x{v}" if positive else f"¬x{v}" for v, positive in clause)


def _unpack_weights(model_or_weights: Any, reader: str = "decode") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(W1, b1, W2, b2) as float64 numpy of a one-hidden-layer ReLU network read by
    `fci.codes.network.read_network`; ValueError (naming ``reader``) for anything else."""
    return read_network(model_or_weights).shallow(reader)


def _binary_input(x: Any, n: int) -> np.ndarray:
    xa = _to_numpy(x, "x")
    if xa.ndim != 2 or xa.shape[1] != n:
        raise ValueError(f"x must have shape (N, n_vars={n}), got {tuple(xa.shape)}")
    if not ((xa == 0) | (xa == 1)).all():
        raise ValueError("x must hold only 0/1 values")
    return xa.astype(bool)


_REPR_TERMS = 3
_REPR_OUTPUTS = 3


#: A form's operators: (within a clause, between clauses, the absorbing constant, the empty one).
_FORM = {"dnf": (" ∧ ", " ∨ ", "⊤", "⊥"), "cnf": (" ∨ ", " ∧ ", "⊥", "⊤")}


@dataclass(repr=False)
class DecodedCircuit:
    """A Boolean circuit read from a network: per output, a DNF or (``form="cnf"``) a CNF.

    ``form="dnf"`` (the default): ``clauses[d]`` (same form as ``task.clauses``) is a
    conjunction, true when all its literals are; output ``o`` is the OR of the clauses
    whose ``readouts[d]`` hold ``o``, or'ed with the constant ``default[o]`` (⊤).
    ``form="cnf"``: ``clauses[d]`` is a disjunction, true when any literal is; output
    ``o`` is the AND of its clauses, and'ed with ``not default[o]`` (``default[o]``
    is the empty clause ⊥). So ``default[o]`` is the form's absorbing constant.

    ``method`` says which reading made it. ``"static"`` (:func:`fci.codes.decode`,
    weights only): ``channels[d]`` are the neurons every literal of the clause
    excites, ``votes[d][o]`` the channel neurons voting for output o, and
    ``default[o]`` is true only when the output is provably true on every input
    (``b2[o] > max_inhibition[o]``). ``"function"`` (:func:`fci.codes.decode_function`):
    ``channels[d]`` are the first-layer neurons whose strongest weights propose the
    term; per clause and output, ``precision[d][j]`` is ``P(output readouts[d][j] is
    1 | clause d holds)`` for a DNF, ``P(output is 0 | clause d fails)`` for a CNF,
    and ``certified[d][j]`` says that holds on every input. Per output, measured on
    the inputs ``distribution`` names (``"uniform"``, or ``"given inputs (N=...)"``):
    ``sample_agreement[o]`` the circuit's agreement with the network,
    ``dnf_agreement[o]`` / ``cnf_agreement[o]`` that of the output's best DNF and
    CNF reading (nan for a form not read), ``positive_rate[o]`` the network's
    positive rate, and ``uncovered[o]`` the share of the network's 1s (DNF) or 0s
    (CNF) that no clause explains. ``max_literals`` is the longest term length the
    reading allowed (the one ``"auto"`` chose); ``length_search`` holds, per length
    tried, ``[length, mean DNF agreement, mean CNF agreement]``. ``warnings`` say,
    one line each, where a reading is imprecise and what may help. ``"certified"``
    (:func:`fci.codes.decode_certified`, weights only): every clause is proved by bounds
    (``certified`` all True); ``coverage[o]`` is the share of output o's region its
    clauses cover (exact where ``coverage_exact[o]``, else a sound lower bound),
    ``search`` the search's own figures and ``seconds`` its time."""

    clauses: list[Clause]
    channels: list[list[int]]
    readouts: list[list[int]]
    votes: list[list[int]]
    default: list[bool]
    n_vars: int
    n_outputs: int
    threshold: float | str | None = "auto"
    relative: bool | str | None = True
    similarity: float | None = 1.0
    max_inhibition: list[float] = field(default_factory=list)
    method: str = "static"
    precision: list[list[float]] = field(default_factory=list)
    certified: list[list[bool]] = field(default_factory=list)
    uncovered: list[float] = field(default_factory=list)
    positive_rate: list[float] = field(default_factory=list)
    sample_agreement: list[float] = field(default_factory=list)
    max_literals: int | None = None
    seed: int | None = None
    form: str = "dnf"
    distribution: str | None = None
    dnf_agreement: list[float] = field(default_factory=list)
    cnf_agreement: list[float] = field(default_factory=list)
    length_search: list[list[float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    coverage: list[float] = field(default_factory=list)
    coverage_exact: list[bool] = field(default_factory=list)
    seconds: float | None = None
    search: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.form not in _FORM:
            _check_form(self.form)

    @classmethod
    def of_terms(cls, clauses: list[Clause], readouts: list[list[int]], n_vars: int, n_outputs: int,
                 **fields: Any) -> DecodedCircuit:
        """A circuit read other than by channels (no threshold, relative or similarity):
        each clause votes once for every output it reads out to."""
        return cls(clauses=clauses, readouts=readouts, votes=[[int(o in r) for o in range(n_outputs)] for r in readouts],
                   n_vars=n_vars, n_outputs=n_outputs, threshold=None, relative=None, similarity=None, **fields)

    def clause_truth(self, x: ArrayT) -> ArrayT:
        """(N, D) bool: which decoded clauses ``x`` (N, n) satisfies (all literals of a
        DNF's conjunction, any literal of a CNF's disjunction)."""
        xb = _binary_input(x, self.n_vars)
        if self.form == "cnf":  # a disjunction holds unless every literal fails: the negated conjunction
            neg = [tuple((v, not p) for v, p in c) for c in self.clauses]
            fails = _conjunction_truth(xb, neg, self.n_vars)
            return _like(~fails, x)
        return _like(_conjunction_truth(xb, self.clauses, self.n_vars), x)

    def evaluate(self, x: ArrayT) -> ArrayT:
        """(N, O) float32 0/1 outputs of the circuit on ``x`` (N, n), same kind as x."""
        truth = _to_numpy(self.clause_truth(x))  # (N, D)
        R = np.zeros((len(self.clauses), self.n_outputs), dtype=np.float32)
        for d, outs in enumerate(self.readouts):
            R[d, outs] = 1.0
        default = np.asarray(self.default, dtype=bool)[None, :]
        if self.form == "cnf":  # an output fails where any of its clauses fails
            y = ((~truth).astype(np.float32) @ R < 0.5) & ~default
        else:
            y = (truth.astype(np.float32) @ R > 0.5) | default
        return _like(y.astype(np.float32), x)

    def terms(self, output: int = 0) -> list[Clause]:
        """The clauses of ``output`` (conjunctions OR'ed for a DNF, disjunctions AND'ed
        for a CNF; empty for a constant output)."""
        if not 0 <= output < self.n_outputs:
            raise ValueError(f"output must lie in [0, {self.n_outputs}), got {output!r}")
        return [c for c, r in zip(self.clauses, self.readouts) if output in r]

    def formula(self) -> list[str]:
        """Per output, the decoded formula as text: ``(x0 ∧ ¬x1) ∨ (x2)`` for a DNF,
        ``(x0 ∨ ¬x1) ∧ (x2)`` for a CNF; ``"⊤"`` / ``"⊥"`` for a constant output."""
        return [self._output_text(o, None) for o in range(self.n_outputs)]

    def _output_text(self, o: int, limit: int | None) -> str:
        inner, outer, absorbing, empty = _FORM[self.form]
        if self.default[o]:
            return absorbing
        terms = self.terms(o)
        shown = terms if limit is None else terms[:limit]
        text = outer.join(f"({_format_clause(c, inner)})" if c else absorbing for c in shown) or empty  # an empty clause is the absorbing constant
        if len(terms) > len(shown):
            text += f"{outer}… (+{len(terms) - len(shown)})"
        return text

    def __repr__(self) -> str:
        parts = [f"out{o} = {self._output_text(o, _REPR_TERMS)}" for o in range(min(self.n_outputs, _REPR_OUTPUTS))]
        if self.n_outputs > _REPR_OUTPUTS:
            parts.append(f"… (+{self.n_outputs - _REPR_OUTPUTS} outputs)")
        kind = self.method if self.form == "dnf" else f"{self.method}, {self.form}"
        return f"DecodedCircuit[{kind}]({'; '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (clauses as lists of ``[var, positive]``)."""
        d = asdict(self)
        d["clauses"] = [[[v, p] for v, p in c] for c in self.clauses]
        return d


def _conjunction_truth(xb: np.ndarray, clauses: Sequence[Clause], n: int) -> np.ndarray:
    """(N, D) bool: where each conjunction of literals holds on xb (N, n) bool."""
    N = xb.shape[0]
    truth = np.ones((N, len(clauses)), dtype=bool)
    if clauses:
        var, pos = _clause_var_index(clauses, pad=n)  # (D, kmax)
        x_ext = np.concatenate([xb, np.ones((N, 1), dtype=bool)], axis=1)
        for j in range(var.shape[1]):
            truth &= x_ext[:, var[:, j]] == pos[:, j]  # (N, D)
    return truth


def _readout_lists(pairs: Sequence[tuple[int, int]], D: int) -> list[list[int]]:
    """Per clause d, the sorted outputs o of the (d, o) pairs."""
    out: list[list[int]] = [[] for _ in range(D)]
    for d, o in pairs:
        out[d].append(o)
    return [sorted(r) for r in out]
