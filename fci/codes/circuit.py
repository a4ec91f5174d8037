"""The decoded Boolean circuit and the one-hidden-layer weights it is read from.

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
from fci.metrics import (
    Clause,
    _clause_var_index,
    _like,
    _to_numpy,
)

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def _format_clause(clause: Clause, join: str = " ∧ ") -> str:
    """``x3 ∧ ¬x7``: the same format as ``fci.tasks.format_clause`` (``join=" ∨ "`` for a
    CNF's disjunctions)."""
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


@dataclass(repr=False)
class DecodedCircuit:
    """A Boolean circuit read from a network: per output, an OR of conjunctions.

    ``clauses[d]`` (same form as ``task.clauses``) is true when all its literals are;
    ``readouts[d]`` the outputs it is OR'ed into. Output ``o`` is the OR of the
    clauses whose readout holds ``o``, or'ed with the constant ``default[o]``.

    ``method`` says which reading made it. ``"static"`` (:func:`fci.codes.decode`,
    weights only): ``channels[d]`` are the neurons every literal of the clause
    excites, ``votes[d][o]`` the channel neurons voting for output o, and
    ``default[o]`` is true only when the output is provably true on every input
    (``b2[o] > max_inhibition[o]``). ``"function"`` (:func:`fci.codes.decode_function`):
    ``channels[d]`` are the neurons whose strongest weights propose the term,
    ``precision[d][j]`` is ``P(network output readouts[d][j] is 1 | clause d)`` under
    uniform inputs conditioned on the clause, ``certified[d][j]`` says it provably is
    1 on every such input, and per output ``uncovered[o]`` is the fraction of the
    network's positive inputs (uniform) that no term covers, ``positive_rate[o]``
    the network's positive rate and ``sample_agreement[o]`` the circuit's agreement
    with the network, both on the decoder's own evaluation inputs; ``default[o]``
    is true when the constant ⊤ agrees with the network at least as well as any
    OR of terms found. ``"certified"`` (:func:`fci.codes.decode_certified`, weights only):
    every clause is proved by bounds (``certified`` all True); ``coverage[o]`` is the share
    of output o's region its clauses cover (exact where ``coverage_exact[o]``, else a sound
    lower bound), ``search`` the search's own figures and ``seconds`` its time.

    ``form`` says how clauses combine: ``"dnf"`` (each clause a conjunction, output o the OR
    of its clauses) or ``"cnf"`` (each clause a disjunction, output o the AND of its
    clauses; an empty clause is false). ``default[o]`` makes output o constant true in both."""

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
    coverage: list[float] = field(default_factory=list)
    coverage_exact: list[bool] = field(default_factory=list)
    seconds: float | None = None
    search: dict[str, Any] = field(default_factory=dict)

    def clause_truth(self, x: ArrayT) -> ArrayT:
        """(N, D) bool: which decoded clauses ``x`` (N, n) satisfies (a conjunction in a
        DNF, a disjunction in a CNF)."""
        xb = _binary_input(x, self.n_vars)
        N = xb.shape[0]
        cnf = self.form == "cnf"
        truth = np.full((N, len(self.clauses)), not cnf, dtype=bool)
        if self.clauses:
            var, pos = _clause_var_index(self.clauses, pad=self.n_vars)  # (D, kmax)
            x_ext = np.concatenate([xb, np.full((N, 1), not cnf, dtype=bool)], axis=1)  # padding: neutral
            for j in range(var.shape[1]):
                hit = x_ext[:, var[:, j]] == pos[:, j]  # (N, D)
                truth = truth | hit if cnf else truth & hit
        return _like(truth, x)

    def evaluate(self, x: ArrayT) -> ArrayT:
        """(N, O) float32 0/1 outputs of the circuit on ``x`` (N, n), same kind as x."""
        truth = _to_numpy(self.clause_truth(x))  # (N, D)
        R = np.zeros((len(self.clauses), self.n_outputs), dtype=np.float32)
        for d, outs in enumerate(self.readouts):
            R[d, outs] = 1.0
        if self.form == "cnf":  # output o: every clause of o holds
            y = ((~truth).astype(np.float32) @ R < 0.5)
        else:
            y = truth.astype(np.float32) @ R > 0.5
        y = y | np.asarray(self.default, dtype=bool)[None, :]
        return _like(y.astype(np.float32), x)

    def terms(self, output: int = 0) -> list[Clause]:
        """The clauses OR'ed into ``output`` (empty for a constant output)."""
        if not 0 <= output < self.n_outputs:
            raise ValueError(f"output must lie in [0, {self.n_outputs}), got {output!r}")
        return [c for c, r in zip(self.clauses, self.readouts) if output in r]

    def _text(self, clauses: list[Clause]) -> str:
        """Clauses of one output joined in the circuit's form."""
        if self.form == "cnf":
            return " ∧ ".join(f"({_format_clause(c, ' ∨ ')})" if c else "⊥" for c in clauses) or "⊤"
        return " ∨ ".join(f"({_format_clause(c)})" if c else "⊤" for c in clauses) or "⊥"

    def formula(self) -> list[str]:
        """Per output, the decoded formula as text (``"⊤"`` for a constant-true output,
        ``"⊥"`` for a constant-false one)."""
        return ["⊤" if self.default[o] else self._text(self.terms(o)) for o in range(self.n_outputs)]

    def __repr__(self) -> str:
        parts = []
        for o in range(min(self.n_outputs, _REPR_OUTPUTS)):
            if self.default[o]:
                parts.append(f"out{o} = ⊤")
                continue
            terms = self.terms(o)
            text = self._text(terms[:_REPR_TERMS])
            if len(terms) > _REPR_TERMS:
                text += f" {'∧' if self.form == 'cnf' else '∨'} … (+{len(terms) - _REPR_TERMS})"
            parts.append(f"out{o} = {text}")
        if self.n_outputs > _REPR_OUTPUTS:
            parts.append(f"… (+{self.n_outputs - _REPR_OUTPUTS} outputs)")
        return f"DecodedCircuit[{self.method}]({'; '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (clauses as lists of ``[var, positive]``)."""
        d = asdict(self)
        d["clauses"] = [[[v, p] for v, p in c] for c in self.clauses]
        return d


def _readout_lists(pairs: Sequence[tuple[int, int]], D: int) -> list[list[int]]:
    """Per clause d, the sorted outputs o of the (d, o) pairs."""
    out: list[list[int]] = [[] for _ in range(D)]
    for d, o in pairs:
        out[d].append(o)
    return [sorted(r) for r in out]
