"""Boolean DNF and CNF tasks (SPEC §1).

A task is a formula over ``n`` binary variables made of ``C`` clauses of ``k``
literals. Under ``form="dnf"`` a clause is an AND and an output the OR of its group
of clauses; under ``form="cnf"`` a clause is an OR and an output the AND of its
group. Outputs: one for the whole formula, one per clause, or explicit groups.
Inputs come from a *planted* sampler that plants each clause's informative event
(a DNF clause satisfied, a CNF clause falsified) with probability ``p``, so that
the task does not degenerate into a constant as it would under uniform inputs.

A CNF task is the exact dual of a DNF task: its clause c is the negation of the
*falsifying term* ``¬l1 ∧ … ∧ ¬lk`` and its outputs the negations of the DNF over
those terms, sampled by the DNF sampler of the terms (same ``p``).

Everything is a pure function of ``(TaskConfig, seed)``::

    task = BooleanTask.generate(n_clauses=8, clause_size=3, seed=0)   # form="cnf" for a CNF
    x, y = task.sample(4096, seed=1)     # (N, n), (N, O) float32 0/1
    task.evaluate(x)                     # (N, O), labels from the formula
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from fci.io import known_fields
from fci.options import option
from fci.seeding import derive_seed, generator

__all__ = ["BooleanTask", "Clause", "DNFTask", "FORMS", "Literal", "TaskConfig", "falsifying_terms", "format_clause"]

Literal = tuple[int, bool]
"""``(var, positive)``: true when ``x[var] == 1`` if ``positive``, else when ``x[var] == 0``."""

Clause = tuple[Literal, ...]
"""Literals over distinct variables, sorted by variable: an AND in a DNF task, an OR in a CNF task."""

FORMS = ("dnf", "cnf")  # OR of ANDs, AND of ORs
_LAYOUTS = ("disjoint", "shared")
_OUTPUT_MODES = ("dnf", "clauses")
P_MODES = ("balanced", "uniform")  # the named planting modes beside a number in [0, 1]


def parse_p(value: str) -> float | str:
    """`--p`: a number in [0, 1] (checked by TaskConfig), 'balanced' or 'uniform'."""
    if value in P_MODES:
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"must be a number in [0, 1], 'balanced' or 'uniform', got {value!r}") from None

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)

#: Fields added after the first store keys were written, with the default under
#: which ``TaskConfig.to_dict`` leaves them out (keys of older configs stay valid).
_KEYED_WHEN_SET: dict[str, Any] = {"form": "dnf"}


# --------------------------------------------------------------------------- config


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``, or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_prob(name: str, value: Any) -> float:
    """``value`` as a float in [0, 1], or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TaskConfig:
    """Configuration of a Boolean task, DNF or CNF (SPEC §1).

    Attributes:
        n_clauses: ``C``, number of clauses (>= 1).
        clause_size: ``k``, literals per clause, over distinct variables (>= 1).
        n_vars: ``n``, number of input variables. ``None`` means ``C * k``. In the
            ``disjoint`` layout ``n >= C * k`` and variables beyond the clauses are
            distractors; in the ``shared`` layout ``k <= n`` and ``comb(n, k) >= C``.
        layout: ``"disjoint"`` (each variable in at most one clause) or ``"shared"``
            (each clause draws ``k`` distinct variables uniformly; clauses may
            overlap; duplicate clauses are redrawn).
        negation_prob: probability that each literal is negated, in [0, 1].
        outputs: ``"dnf"`` (one output, the whole formula: the OR of all clauses,
            or their AND under ``form="cnf"``), ``"clauses"`` (one output per
            clause), or explicit groups of clause indices (one output per group: the
            OR of its clauses, or their AND under ``form="cnf"``). Groups are stored
            as a tuple of tuples so the config stays hashable.
        p: probability that the sampler plants each clause's event, in [0, 1]: a
            DNF clause is made true, a CNF clause false (so a CNF clause is true
            with probability ``1 - p``). ``"balanced"`` for ``1 - 2**(-1/C)``: the
            whole formula is then true with probability 1/2 in either form;
            ``"uniform"``: no planting, every variable a fair coin and labels from
            the formula (disjoint layout: positive rate exactly
            ``1 - (1 - 2**-k)**C`` for a DNF, ``(1 - 2**-k)**C`` for a CNF).
        n_train: size of the training set (>= 1).
        n_test: size of the test set (>= 1).
        form: ``"dnf"`` (default; clauses are ANDs of literals, outputs ORs of
            clauses) or ``"cnf"`` (clauses are ORs of literals, outputs ANDs of
            clauses). Stored configs name it only when it is ``"cnf"``, so DNF
            configs keep the store keys they had before CNF tasks existed.
    """

    n_clauses: int = option(8, flag="--clauses", help="number of clauses C")
    clause_size: int = option(3, help="literals per clause k")
    n_vars: int | None = option(None, flag="--vars", parse=int, metavar="N", regime=True, shown="C*k",
                                help="input variables n; variables beyond the clauses are distractors")
    layout: str = option("disjoint", choices=_LAYOUTS, regime=True,
                         help="variable layout: each variable in at most one clause, or clauses drawn independently")
    negation_prob: float = option(0.5, regime=True, help="probability that a literal is negated, in [0, 1]")
    outputs: str | Sequence[Sequence[int]] = option("dnf", choices=_OUTPUT_MODES, regime=True,
                                                    help="one output (the whole formula) or one output per clause")
    p: float | str = option("balanced", parse=parse_p, metavar="P", regime=True,
                            help="probability in [0, 1] that the sampler plants each clause's event (a DNF clause "
                                 "true, a CNF clause false), 'balanced' (formula true half the time) or 'uniform' "
                                 "(fair coins, no planting)")
    n_train: int = option(4096, flag="--train-samples", regime=True, help="training samples per task")
    n_test: int = option(2048, flag="--test-samples", help="test samples per task")
    form: str = option("dnf", choices=FORMS, regime=True,
                       help="'dnf' (an OR of clauses, each an AND of literals) or 'cnf' (an AND of clauses, "
                            "each an OR of literals)")

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        C = _check_int("n_clauses", self.n_clauses)
        k = _check_int("clause_size", self.clause_size)
        set_("n_clauses", C)
        set_("clause_size", k)
        set_("n_train", _check_int("n_train", self.n_train))
        set_("n_test", _check_int("n_test", self.n_test))
        set_("negation_prob", _check_prob("negation_prob", self.negation_prob))

        if self.layout not in _LAYOUTS:
            raise ValueError(f"layout must be one of {_LAYOUTS}, got {self.layout!r}")
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {self.form!r}")

        if self.n_vars is not None:
            set_("n_vars", _check_int("n_vars", self.n_vars))
        n = self.resolved_n_vars
        if k > n:
            raise ValueError(f"clause_size must be <= n_vars, got clause_size={k} > n_vars={n}")
        if self.layout == "disjoint" and n < C * k:
            raise ValueError(
                f"n_vars must be >= n_clauses * clause_size = {C * k} in the disjoint "
                f"layout, got n_vars={n}"
            )
        if self.layout == "shared" and math.comb(n, k) < C:
            raise ValueError(
                f"n_vars too small for the shared layout: comb(n_vars={n}, clause_size={k})"
                f" = {math.comb(n, k)} < n_clauses={C}, cannot draw distinct clauses"
            )

        if isinstance(self.p, str):
            if self.p not in P_MODES:
                raise ValueError(f"p must be a number in [0, 1], 'balanced' or 'uniform', got {self.p!r}")
        else:
            set_("p", _check_prob("p", self.p))

        set_("outputs", self._normalise_outputs(self.outputs, C))

    @staticmethod
    def _normalise_outputs(outputs: Any, n_clauses: int) -> str | tuple[tuple[int, ...], ...]:
        """Validate ``outputs``; explicit groups become a tuple of tuples of ints."""
        if isinstance(outputs, str):
            if outputs not in _OUTPUT_MODES:
                raise ValueError(
                    f"outputs must be one of {_OUTPUT_MODES} or a list of clause-index "
                    f"groups, got {outputs!r}"
                )
            return outputs
        if not isinstance(outputs, Sequence) or len(outputs) == 0:
            raise ValueError(
                f"outputs must be one of {_OUTPUT_MODES} or a non-empty list of "
                f"clause-index groups, got {outputs!r}"
            )
        groups = []
        for i, group in enumerate(outputs):
            if isinstance(group, str) or not isinstance(group, Sequence) or len(group) == 0:
                raise ValueError(
                    f"outputs group {i} must be a non-empty list of clause indices, got {group!r}"
                )
            for c in group:
                if isinstance(c, bool) or not isinstance(c, numbers.Integral):
                    raise ValueError(f"outputs group {i} holds a non-integer clause index {c!r}")
                if not 0 <= int(c) < n_clauses:
                    raise ValueError(
                        f"outputs group {i} names clause {c}, outside [0, n_clauses={n_clauses})"
                    )
            groups.append(tuple(int(c) for c in group))
        return tuple(groups)

    @property
    def resolved_n_vars(self) -> int:
        """``n_vars``, with ``None`` resolved to ``n_clauses * clause_size``."""
        return self.n_clauses * self.clause_size if self.n_vars is None else self.n_vars

    @property
    def n_outputs(self) -> int:
        """Number of outputs ``O`` (one per clause group)."""
        return len(_resolve_groups(self.outputs, self.n_clauses))

    @property
    def resolved_p(self) -> float:
        """The probability of each clause's planted event (a DNF clause true, a CNF
        clause false): ``p``, with ``"balanced"`` resolved to ``1 - 2**(-1/C)`` and
        ``"uniform"`` to ``2**-k`` (k fair coins all matching; in the shared layout
        clauses are then not independent). The same number in both forms, as a CNF
        task is the DNF of its falsifying terms, negated."""
        if self.p == "balanced":
            return 1.0 - 2.0 ** (-1.0 / self.n_clauses)
        if self.p == "uniform":
            return 2.0 ** -self.clause_size
        return float(self.p)

    @property
    def clause_true_rate(self) -> float:
        """The probability that each clause is true: ``resolved_p`` for a DNF,
        ``1 - resolved_p`` for a CNF (exact in the disjoint layout and under
        ``"uniform"``; in the shared layout planting may break other clauses).
        With ``outputs="clauses"`` it is each output's positive rate."""
        return self.resolved_p if self.form == "dnf" else 1.0 - self.resolved_p

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields (explicit groups as lists of lists). A field
        added after store keys were first written (``form``) appears only when it
        differs from its default, so older configs keep their keys."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if not isinstance(self.outputs, str):
            d["outputs"] = [list(group) for group in self.outputs]
        for name, default in _KEYED_WHEN_SET.items():
            if d[name] == default:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskConfig:
        """Inverse of ``to_dict``. Unknown keys (e.g. from newer code) are dropped with a warning."""
        return cls(**known_fields(cls, d))


# --------------------------------------------------------------------------- task


def _check_form(form: str) -> str:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    return form


def format_clause(clause: Clause, form: str = "dnf") -> str:
    """Human-readable clause: ``x3 ∧ ¬x7 ∧ x12`` (DNF, an AND) or ``x3 ∨ ¬x7 ∨ x12``
    (``form="cnf"``, an OR)."""
    joiner = " ∧ " if _check_form(form) == "dnf" else " ∨ "
    return joiner.join(f"x{v}" if positive else f"¬x{v}" for v, positive in clause)


def falsifying_terms(clauses: Sequence[Clause]) -> list[Clause]:
    """Each clause with every literal negated. For a CNF clause ``l1 ∨ … ∨ lk`` this
    is its falsifying term ``¬l1 ∧ … ∧ ¬lk`` (true exactly when the clause is false),
    so a CNF over ``clauses`` is the negation of the DNF over these terms."""
    return [tuple((int(v), not bool(positive)) for v, positive in clause) for clause in clauses]


def _draw_clauses(config: TaskConfig, seed: int) -> list[Clause]:
    """The task's clauses, from ``generator(seed, "clauses")``."""
    g = generator(seed, "clauses")
    C, k, n = config.n_clauses, config.clause_size, config.resolved_n_vars

    def make(vars_: torch.Tensor, negated: torch.Tensor) -> Clause:
        order = torch.argsort(vars_)
        return tuple((int(vars_[i]), not bool(negated[i])) for i in order)

    if config.layout == "disjoint":
        blocks = torch.randperm(n, generator=g)[: C * k].view(C, k)
        negated = torch.rand((C, k), generator=g) < config.negation_prob
        return [make(blocks[c], negated[c]) for c in range(C)]

    clauses: list[Clause] = []
    seen: set[Clause] = set()
    while len(clauses) < C:  # terminates: validation guarantees comb(n, k) >= C
        vars_ = torch.randperm(n, generator=g)[:k]
        negated = torch.rand(k, generator=g) < config.negation_prob
        clause = make(vars_, negated)
        if clause not in seen:
            seen.add(clause)
            clauses.append(clause)
    return clauses


def _resolve_groups(outputs: str | Sequence[Sequence[int]], n_clauses: int) -> list[tuple[int, ...]]:
    """Clause indices read by each output (``outputs`` as normalised by ``TaskConfig``)."""
    if outputs == "dnf":
        return [tuple(range(n_clauses))]
    if outputs == "clauses":
        return [(c,) for c in range(n_clauses)]
    assert not isinstance(outputs, str)  # TaskConfig admits only the two modes above
    return [tuple(group) for group in outputs]


class BooleanTask:
    """A DNF or CNF formula with its sampler (SPEC §1). ``DNFTask`` is the same class
    (the name notebooks have always used); ``config.form`` says which formula it is.

    Attributes:
        config: the ``TaskConfig``.
        seed: the task seed; clauses and train/test data derive from it.
        clauses: ``C`` clauses, each a tuple of ``(var, positive)`` sorted by var
            (ANDs of their literals in a DNF, ORs in a CNF). The same seed draws the
            same clauses in both forms.
        n_vars: number of input variables ``n``.
        groups: per output, the tuple of clause indices it combines (OR in a DNF,
            AND in a CNF).
        n_outputs: number of outputs ``O``.
        p: planting probability of each clause's event, a DNF clause true or a CNF
            clause false (``TaskConfig.resolved_p``).
    """

    def __init__(self, config: TaskConfig, seed: int = 0) -> None:
        if not isinstance(config, TaskConfig):
            raise TypeError(f"config must be a TaskConfig, got {type(config).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.config: TaskConfig = config
        self.seed: int = int(seed)
        self.n_vars: int = config.resolved_n_vars
        self.p: float = config.resolved_p
        self.clauses: list[Clause] = _draw_clauses(config, self.seed)
        self.groups: list[tuple[int, ...]] = _resolve_groups(config.outputs, config.n_clauses)
        self.n_outputs: int = len(self.groups)

        C, k, n = self.n_clauses, self.clause_size, self.n_vars
        # Literal tables, (C, k): variable index and sign of each literal.
        self._vars: torch.Tensor = torch.tensor([[v for v, _ in c] for c in self.clauses], dtype=torch.long)
        self._signs: torch.Tensor = torch.tensor([[s for _, s in c] for c in self.clauses], dtype=torch.bool)
        # The planted terms' signs, (C, k): the clauses themselves in a DNF, their
        # falsifying terms (every literal negated) in a CNF. The samplers plant terms.
        self._term_signs: torch.Tensor = self._signs if self.form == "dnf" else ~self._signs
        # Literal matrix, (C, n): +1 for a positive literal, -1 for a negated one, so the
        # number of true literals of clause c is x @ lit[c] + n_negated[c].
        self._lit: torch.Tensor = torch.zeros(C, n)
        self._lit[torch.arange(C).unsqueeze(1).expand(C, k), self._vars] = self._signs.float() * 2 - 1
        self._n_negated: torch.Tensor = (~self._signs).sum(dim=1).to(torch.float32)  # (C,)
        # Output matrix, (O, C): 1 where output o reads clause c.
        self._group_matrix: torch.Tensor = torch.zeros(self.n_outputs, C)
        for o, group in enumerate(self.groups):
            self._group_matrix[o, list(group)] = 1.0
        # Clauses that must be true for output o: at least one (OR) or all of its group (AND).
        self._group_need: torch.Tensor = (
            torch.full((self.n_outputs,), 1.0) if self.form == "dnf" else self._group_matrix.sum(dim=1)
        )  # (O,)

    # ----------------------------------------------------------------- builders

    @classmethod
    def generate(cls, n_clauses: int = 8, clause_size: int = 3, seed: int = 0, **kwargs: Any) -> BooleanTask:
        """Build a task from ``TaskConfig`` fields given as keywords (SPEC §6)."""
        return cls(TaskConfig(n_clauses=n_clauses, clause_size=clause_size, **kwargs), seed)

    @classmethod
    def from_config(cls, config: TaskConfig, seed: int) -> BooleanTask:
        """Build a task from a config and a seed."""
        return cls(config, seed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description: config, seed, and the clauses (for reading, and for
        ``from_dict`` to detect that the generator changed since it was saved)."""
        return {
            "config": self.config.to_dict(),
            "seed": self.seed,
            "clauses": [[[v, s] for v, s in clause] for clause in self.clauses],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BooleanTask:
        """Rebuild from ``to_dict``; raises if stored clauses differ from regenerated ones."""
        task = cls(TaskConfig.from_dict(d["config"]), d["seed"])
        if "clauses" in d:
            stored = [tuple((int(v), bool(s)) for v, s in clause) for clause in d["clauses"]]
            if stored != task.clauses:
                raise ValueError(
                    "stored clauses differ from those regenerated from (config, seed); "
                    "the clause generator has changed since this task was saved"
                )
        return task

    # ----------------------------------------------------------------- shape

    @property
    def n_clauses(self) -> int:
        """``C``."""
        return self.config.n_clauses

    @property
    def clause_size(self) -> int:
        """``k``."""
        return self.config.clause_size

    @property
    def layout(self) -> str:
        """``"disjoint"`` or ``"shared"``."""
        return self.config.layout

    @property
    def form(self) -> str:
        """``"dnf"`` (OR of ANDs) or ``"cnf"`` (AND of ORs)."""
        return self.config.form

    def variable_order(self) -> list[int]:
        """All variables ordered by clause: clause 0's, clause 1's, ..., then the
        variables no clause reads. Each variable appears once, at its first clause."""
        seen: set[int] = set()
        order: list[int] = []
        for clause in self.clauses:
            for v, _ in clause:
                if v not in seen:
                    seen.add(v)
                    order.append(v)
        order.extend(v for v in range(self.n_vars) if v not in seen)
        return order

    def clause_of_var(self) -> np.ndarray:
        """``(n,)`` int64: the clause reading each variable, or -1 for distractors.

        Only defined for the disjoint layout, where each variable has at most one clause.
        """
        if self.layout != "disjoint":
            raise ValueError(
                f"clause_of_var needs layout='disjoint', this task has layout={self.layout!r}"
            )
        out = np.full(self.n_vars, -1, dtype=np.int64)
        for c, clause in enumerate(self.clauses):
            for v, _ in clause:
                out[v] = c
        return out

    def distractors(self) -> list[int]:
        """Variables that no clause reads, ascending."""
        used = {v for clause in self.clauses for v, _ in clause}
        return [v for v in range(self.n_vars) if v not in used]

    # ----------------------------------------------------------------- formula

    def _as_binary_tensor(self, x: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
        """``x`` as a float32 ``(N, n)`` tensor, and whether it came as numpy."""
        is_numpy = not isinstance(x, torch.Tensor)
        if isinstance(x, torch.Tensor):
            xt = x.to(torch.float32)
        else:
            xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
        if xt.ndim != 2 or xt.shape[1] != self.n_vars:
            raise ValueError(f"x must have shape (N, n_vars={self.n_vars}), got {tuple(xt.shape)}")
        if not ((xt == 0) | (xt == 1)).all():
            raise ValueError("x must hold only 0/1 values")
        return xt, is_numpy

    def _clause_truth(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` bool truth of each clause; ``x`` a float 0/1 ``(N, n)`` tensor."""
        lit = self._lit.to(x.device)  # (C, n)
        n_true = x @ lit.T + self._n_negated.to(x.device)  # (N, C): true literals per clause
        need = self.clause_size if self.form == "dnf" else 1  # AND: all k literals; OR: one
        return n_true > need - 0.5

    def clause_truth(self, x: ArrayT) -> ArrayT:
        """``(N, C)`` bool: which clauses ``x`` ``(N, n)`` satisfies. Torch in, torch out;
        numpy in, numpy out."""
        xt, _ = self._as_binary_tensor(x)
        truth = self._clause_truth(xt)
        if isinstance(x, torch.Tensor):
            return truth
        return truth.cpu().numpy()

    def _evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, O)`` float32 labels; ``x`` a float 0/1 ``(N, n)`` tensor."""
        truth = self._clause_truth(x).to(torch.float32)  # (N, C)
        n_true = truth @ self._group_matrix.to(x.device).T  # (N, O): true clauses per group
        return (n_true > self._group_need.to(x.device) - 0.5).to(torch.float32)

    def evaluate(self, x: ArrayT) -> ArrayT:
        """``(N, O)`` float32 0/1 labels of ``x`` ``(N, n)``, computed from the formula.
        Torch in, torch out (same device); numpy in, numpy out."""
        xt, _ = self._as_binary_tensor(x)
        y = self._evaluate(xt)
        if isinstance(x, torch.Tensor):
            return y
        return y.cpu().numpy()

    # ----------------------------------------------------------------- sampling

    def sample(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` samples from the task's sampler (SPEC §1; planted, or fair coins
        with ``p="uniform"``): ``x`` ``(n, n_vars)`` and
        ``y`` ``(n, n_outputs)``, float32 0/1 on the CPU. ``y`` is always
        ``evaluate(x)``. A pure function of ``(task, n, seed)``.

        The planted samplers plant *terms*: a DNF's clauses, a CNF's falsifying
        terms. So a CNF clause is falsified (all its literals false) with probability
        ``p`` and otherwise takes one of its ``2**k - 1`` satisfying assignments
        uniformly (disjoint layout), exactly as the DNF sampler treats the terms."""
        n = _check_int("n", n, minimum=0)
        g = generator(seed, "sample")
        if self.config.p == "uniform":
            x = torch.randint(0, 2, (n, self.n_vars), generator=g).to(torch.float32)
        elif self.layout == "disjoint":
            x = self._sample_disjoint(n, g)
        else:
            x = self._sample_shared(n, g)
        return x, self._evaluate(x)

    def _sample_disjoint(self, N: int, g: torch.Generator) -> torch.Tensor:
        """Planted terms all true; unplanted ones take a uniform falsifying
        assignment (rejection sampling); distractors are fair coins."""
        C, k = self.n_clauses, self.clause_size
        x = torch.randint(0, 2, (N, self.n_vars), generator=g).to(torch.float32)
        planted = torch.rand((N, C), generator=g) < self.p  # (N, C)
        lit_true = torch.randint(0, 2, (N, C, k), generator=g).bool()  # (N, C, k)
        bad = ~planted & lit_true.all(dim=-1)  # unplanted but satisfied
        while bad.any():
            idx = bad.nonzero(as_tuple=True)
            lit_true[idx] = torch.randint(0, 2, (idx[0].numel(), k), generator=g).bool()
            bad &= lit_true.all(dim=-1)
        lit_true[planted] = True
        values = lit_true == self._term_signs  # (N, C, k): x[var] == 1 iff (term literal true) == positive
        x[:, self._vars.reshape(-1)] = values.reshape(N, C * k).to(torch.float32)
        return x

    def _sample_shared(self, N: int, g: torch.Generator) -> torch.Tensor:
        """Fair coins; then, term by term, an unplanted term that is satisfied at
        that point gets one uniformly chosen literal falsified; then the planted
        terms' literals are set true, in clause order (planting wins; a later
        planted term overrides an earlier one on a conflicting variable)."""
        C, k = self.n_clauses, self.clause_size
        x = torch.randint(0, 2, (N, self.n_vars), generator=g).to(torch.float32)
        planted = torch.rand((N, C), generator=g) < self.p  # (N, C)
        pick = torch.randint(0, k, (N, C), generator=g)  # literal to falsify
        signs = self._term_signs.to(torch.float32)  # (C, k): value making each term literal true
        xt = x.T.contiguous()  # (n, N): a variable's column is contiguous, gathers are fast
        for c in range(C):
            vars_c = self._vars[c]  # (k,)
            satisfied = (xt[vars_c] == signs[c].unsqueeze(1)).all(dim=0)  # (N,)
            rows = (satisfied & ~planted[:, c]).nonzero().squeeze(1)
            j = pick[rows, c]
            xt[vars_c[j], rows] = 1.0 - signs[c, j]
        for c in range(C):
            vars_c = self._vars[c]
            xt[vars_c] = torch.where(planted[:, c], signs[c].unsqueeze(1), xt[vars_c])
        return xt.T.contiguous()

    def train_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``sample(config.n_train, derive_seed(seed, "train"))``."""
        return self.sample(self.config.n_train, derive_seed(self.seed, "train"))

    def test_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``sample(config.n_test, derive_seed(seed, "test"))``."""
        return self.sample(self.config.n_test, derive_seed(self.seed, "test"))

    # ----------------------------------------------------------------- display

    def __repr__(self) -> str:
        """``DNFTask(C=8, k=3, ...)`` or ``CNFTask(...)``: the formula's form, then its shape."""
        outputs = self.config.outputs if isinstance(self.config.outputs, str) else f"groups[{self.n_outputs}]"
        return (
            f"{self.form.upper()}Task(C={self.n_clauses}, k={self.clause_size}, n={self.n_vars}, "
            f"{self.layout}, {outputs}, p={self.p:.3g}, seed={self.seed})"
        )

    def __str__(self) -> str:
        lines = [repr(self)]
        lines += [f"  c{c}: {format_clause(clause, self.form)}" for c, clause in enumerate(self.clauses)]
        if not isinstance(self.config.outputs, str):
            op = "OR" if self.form == "dnf" else "AND"
            lines += [f"  y{o} = {op}{list(group)}" for o, group in enumerate(self.groups)]
        return "\n".join(lines)


DNFTask = BooleanTask
"""The stable notebook name of :class:`BooleanTask` (SPEC §6); it holds CNF tasks too."""
