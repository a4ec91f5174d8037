"""The certified static reading: per output, terms that the weights prove, and how much of the
network's positive region they cover (SPEC §5, *Certified reading*).

``decode(model, method="certified")`` calls :func:`decode_certified`. It never runs the
network on inputs: every decision comes from sound bounds of an output's logit over a cube
(a conjunction of literals) computed from the weights and biases
(:class:`fci.codes.bounds.OutputBounds`). A cube is *true-certified* when the lower bound
of the logit over it is > 0 (the output is 1 wherever the term holds) and
*false-certified* when the upper bound is < 0 (the output is 0 there).

Per output, for the output (true terms, the DNF) and its negation (false terms, whose
negations are the CNF's clauses):

1. **Search**, a branch and bound over literals: from the empty term, level by level, each
   undecided term is extended by the ``branch`` free literals that raise its bound most
   (the readout-weighted strength of their weights at that term: the bound's linear
   coefficients), keeping the ``beam`` most promising per level, each parent's best
   children first; a term whose bound certifies is reduced to a prime (below) and kept, one
   whose opposite bound certifies is dropped, and a term inside a kept one is skipped.
   Terms still undecided at ``max_literals`` are *split* on their most influential free
   input (the readout-weighted |weights| through the neurons the cube leaves undecided),
   at most ``split_depth`` times: a term is kept when every piece certifies (a proof by
   cases).
2. **Primes**: a kept term drops the literals it does not need, weakest first, each drop
   re-certified: prime implicants as far as the bounds can prove.
3. **Completion**: the inputs are split, largest pieces first (weighted towards the side
   the search found more of), until every piece lies inside a term or certifies either
   way (true and false pieces become primes too), or until ``pieces`` cubes were bounded
   (every input when ``n <= exact_vars``). The pieces partition the inputs, so the shares
   proved positive, proved negative and undecided are exact sums; a point whose logit lies
   within the rounding margin of 0 stays undecided.
4. **Cover**: an irredundant subset of the terms with the same union.

**Coverage** of the DNF: the share of the positive inputs its terms hold, at least
``|∪ true terms| / (1 - |∪ false terms|)`` (shares of all ``2**n`` inputs: the positive
region can hold at most what the false terms leave); exact when every input is decided.
The CNF's likewise with the roles swapped. ``coverage_exact`` says which.

**Form.** A DNF says 0 where nothing is proved, a CNF says 1: which is more faithful on
the undecided inputs depends on how inputs are drawn, which a reading from the weights does
not know. The default ``form="dnf"`` is the natural reading of an OR of clauses;
``form="auto"`` keeps the form that covers the larger share of its own region (on a tie,
the one with fewer literals), so an exact reading of a network trained on a CNF comes out
as that CNF; both forms' figures are in ``search`` either way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fci.codes.bounds import FREE, OutputBounds
from fci.codes.circuit import DecodedCircuit
from fci.codes.cubes import contained, cube_share, to_clauses, union_share
from fci.codes.network import Network, read_network

log = logging.getLogger(__name__)

__all__ = ["decode_certified", "DEFAULTS"]

_FORMS = ("auto", "dnf", "cnf")


def _int_option(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        allowed = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


@dataclass
class _Reading:
    """One output read both ways: its true terms (the DNF's), its false terms (the CNF's
    negated clauses) and what the completion decided."""

    pos: np.ndarray  # (T, n) int8 true terms, irredundant
    neg: np.ndarray  # (F, n) int8 false terms, irredundant
    decided_pos: float  # share of inputs proved positive (lies in a true term), exact
    decided_neg: float  # share proved negative, exact
    undecided: float  # share no term decides (1 - the two above)
    held_pos: float  # share the true terms hold: a sound lower bound (>= decided_pos), exact when decided
    held_neg: float  # share the false terms hold, likewise
    evaluations: int = 0  # cubes bounded
    splits: int = 0  # cubes split (proofs by cases and the completion)
    split_proofs: int = 0  # terms certified only by splitting

    @property
    def exact(self) -> bool:
        """Every input decided: both forms' coverage is exact."""
        return self.undecided <= 0.0

    def coverage(self, form: str) -> float:
        """The share of the form's region (positive inputs for the DNF, negative for the
        CNF) its terms cover: exact when every input is decided, else a sound lower bound
        (what the terms hold, at least, over what the region can hold, at most: every input
        the other form's terms leave)."""
        got, other = (self.held_pos, self.held_neg) if form == "dnf" else (self.held_neg, self.held_pos)
        region = 1.0 - other
        return min(got / region, 1.0) if region > 0 else 1.0


class Bounds(Protocol):
    """What the reader needs of a bound: `OutputBounds` (an output of a network over input
    cubes) or the cascade's bounds of one neuron over the states of the layer below."""

    tol: float
    evaluations: int

    def lower(self, cubes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def interval(self, cubes: np.ndarray) -> np.ndarray: ...

    def upper(self, cubes: np.ndarray) -> np.ndarray: ...


class _Prover:
    """Certifies cubes for one sign of one function: ``cert`` bounds it from below,
    ``refute`` bounds the opposite sign (a cube it certifies can hold no term of this sign)."""

    def __init__(self, cert: Bounds, refute: Bounds):
        self.cert, self.refute = cert, refute
        self.splits = 0

    def certified(self, cubes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ok, lb, g, influence) for each cube (`OutputBounds.lower`): ok when the bound
        certifies it."""
        lb, g, infl = self.cert.lower(cubes)
        return lb > self.cert.tol, lb, g, infl

    def refuted(self, cubes: np.ndarray) -> np.ndarray:
        """The cubes where the opposite sign certifies by intervals (cheap)."""
        return self.refute.interval(cubes) > self.refute.tol

    def prove(self, cubes: np.ndarray, depth: int) -> np.ndarray:
        """(M,) bool: each cube certified by splitting on its most influential free input,
        at most ``depth`` times along any branch (every piece must certify)."""
        M = len(cubes)
        proved = np.zeros(M, dtype=bool)
        if not M:
            return proved
        alive = np.ones(M, dtype=bool)  # no piece of the cube has failed yet
        owner = np.arange(M)
        pieces = cubes.copy()
        for d in range(depth + 1):
            if not len(pieces):
                break
            ok, _, _, infl = self.certified(pieces)
            bad = ~ok & (self.refuted(pieces) | (d == depth) | ((pieces != FREE).all(axis=1)))
            alive[owner[bad]] = False
            go = ~ok & ~bad & alive[owner]
            if not go.any():
                break
            split = pieces[go]
            owner_go = owner[go]
            score = np.where(split == FREE, infl[go] + 1e-12, -1.0)
            v = np.argmax(score, axis=1)
            self.splits += len(split)
            lo_, hi_ = split.copy(), split.copy()
            r = np.arange(len(split))
            lo_[r, v], hi_[r, v] = 0, 1
            pieces = np.concatenate([lo_, hi_])
            owner = np.concatenate([owner_go, owner_go])
        proved[:] = alive  # every piece certified (an open piece at the depth limit failed above)
        return proved


def _extend(cubes: np.ndarray, g: np.ndarray, branch: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cube extended by its ``branch`` free inputs of largest |g|, each set to the
    value that raises the bound (x = 1 where g > 0). Returns the distinct new cubes and,
    for each, the cube it extends (the first one, for cubes reached twice)."""
    M, n = cubes.shape
    score = np.where(cubes == FREE, np.abs(g), -1.0)
    k = min(branch, n)
    top = np.argsort(-score, axis=1, kind="stable")[:, :k]  # (M, k)
    ok = (np.take_along_axis(score, top, axis=1) > 0).reshape(-1)
    val = (np.take_along_axis(g, top, axis=1) > 0).astype(np.int8)
    out = np.repeat(cubes, k, axis=0)
    rows = np.arange(M * k)
    out[rows, top.reshape(-1)] = val.reshape(-1)
    parent = np.repeat(np.arange(M), k)
    out, parent = out[ok], parent[ok]
    if not len(out):
        return out, parent
    out, first = np.unique(out, axis=0, return_index=True)
    return out, parent[first]


def _diverse(lb: np.ndarray, parent: np.ndarray, beam: int) -> np.ndarray:
    """Indices of at most ``beam`` cubes: each parent's best child first, then each
    parent's second best, ... (ties by bound), so one strong parent cannot fill the beam."""
    order = np.lexsort((-lb, parent))  # by parent, best first
    p = parent[order]
    start = np.r_[0, np.flatnonzero(np.diff(p)) + 1]
    rank = np.arange(len(p)) - np.repeat(start, np.diff(np.r_[start, len(p)]))
    pick = order[np.lexsort((-lb[order], rank))]
    return pick[:beam]


def _reduce(prover: _Prover, terms: np.ndarray) -> np.ndarray:
    """Drop from each term the literals it does not need, weakest first (by |g| at the
    term), each drop re-certified: prime implicants as far as the bounds prove."""
    if not len(terms):
        return terms
    terms = terms.copy()
    _, _, g, _ = prover.certified(terms)
    weight = np.where(terms != FREE, np.abs(g), np.inf)
    order = np.argsort(weight, axis=1, kind="stable")  # weakest fixed literal first
    n_fixed = (terms != FREE).sum(axis=1)
    for r in range(int(n_fixed.max(initial=0))):
        rows = np.flatnonzero(n_fixed > r)
        if not len(rows):
            break
        v = order[rows, r]
        trial = terms[rows].copy()
        trial[np.arange(len(rows)), v] = FREE
        ok = prover.certified(trial)[0]
        terms[rows[ok]] = trial[ok]
    return terms


def _irredundant(terms: np.ndarray, exact_up_to: int = 64) -> np.ndarray:
    """A subset of the terms with the same union: duplicates and terms inside another go;
    then, for at most ``exact_up_to`` terms, each term (smallest first) that the others
    already cover (checked exactly by counting; a check too long to finish keeps the term)."""
    if len(terms) <= 1:
        return terms
    terms = np.unique(terms, axis=0)
    terms = terms[np.argsort(-cube_share(terms), kind="stable")]  # largest first
    keep = np.ones(len(terms), dtype=bool)
    for i in range(1, len(terms)):  # a term inside a larger (or equal-size earlier) one adds nothing
        if contained(terms[i: i + 1], terms[:i][keep[:i]])[0]:
            keep[i] = False
    terms = terms[keep]
    if len(terms) > exact_up_to:
        return terms
    keep = np.ones(len(terms), dtype=bool)
    for i in range(len(terms) - 1, -1, -1):  # smallest first
        if _covers(terms[keep & (np.arange(len(terms)) != i)], terms[i]):
            keep[i] = False
    return terms[keep]


def _covers(terms: np.ndarray, cube: np.ndarray, budget: int = 1000) -> bool:
    """Whether the union of ``terms`` holds every input of ``cube`` (exactly; False when
    counting would take more than ``budget`` splits)."""
    fixed = cube != FREE
    compatible = ((terms[:, fixed] == FREE) | (terms[:, fixed] == cube[fixed])).all(axis=1)
    sub = terms[compatible][:, ~fixed]
    if not len(sub):
        return False
    share, exact = union_share(sub, budget=budget)
    return exact and share >= 1.0


def _search(prover: _Prover, n: int, max_literals: int, beam: int, branch: int, split_depth: int) -> tuple[np.ndarray, dict[str, int]]:
    """Branch and bound over literals (module docstring, step 1): the certified terms found,
    each reduced to a prime as it is found (so later levels skip what it covers)."""
    found = np.zeros((0, n), dtype=np.int8)
    level = np.full((1, n), FREE, dtype=np.int8)
    parent = np.zeros(1, dtype=np.int64)
    stats = {"levels": 0, "split_proofs": 0}
    for j in range(max_literals + 1):
        inside = contained(level, found)
        level, parent = level[~inside], parent[~inside]
        if not len(level):
            break
        stats["levels"] = j + 1
        ok, lb, g, _ = prover.certified(level)
        if ok.any():
            found = np.concatenate([found, _reduce(prover, level[ok])])
        rest = ~ok
        rest[rest] = ~prover.refuted(level[rest])
        level, lb, g, parent = level[rest], lb[rest], g[rest], parent[rest]
        if len(level) > beam:
            top = _diverse(lb, parent, beam)
            level, lb, g = level[top], lb[top], g[top]
        if j == max_literals:
            if split_depth and len(level):
                proved = prover.prove(level, split_depth)
                stats["split_proofs"] = int(proved.sum())
                found = np.concatenate([found, _reduce(prover, level[proved])])
            break
        level, parent = _extend(level, g, branch)
    return found, stats


def _complete(pos: _Prover, neg: _Prover, T_pos: np.ndarray, T_neg: np.ndarray, n: int, limit: int,
              focus: int, batch: int = 1024) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """Split the inputs until every piece lies inside a term or certifies one way or the
    other (true pieces are reduced to primes and join ``T_pos``, false ones ``T_neg``), or
    until ``limit`` pieces were bounded. Each round splits the ``batch`` open pieces of
    largest share weighted by how much of the piece's bound interval lies above 0
    (``focus`` 1) or below it (``focus`` -1), so the budget goes where that form has most
    to gain.

    The pieces partition the inputs, so the shares are exact sums: returns (T_pos, T_neg,
    share proved positive, share proved negative, share undecided). A point neither sign
    certifies (its logit within the rounding margin of 0) stays undecided."""
    parts_pos: list[np.ndarray] = [T_pos]
    parts_neg: list[np.ndarray] = [T_neg]
    got_pos = got_neg = open_mass = 0.0
    side = np.zeros(0)
    frontier = np.zeros((0, n), dtype=np.int8)
    prio = np.zeros(0)
    infl = np.zeros((0, n))
    pending = np.full((1, n), FREE, dtype=np.int8)
    seen = 0
    while True:
        mass = cube_share(pending)
        in_pos = contained(pending, np.concatenate(parts_pos))
        in_neg = contained(pending, np.concatenate(parts_neg)) & ~in_pos
        got_pos += float(mass[in_pos].sum())
        got_neg += float(mass[in_neg].sum())
        pending = pending[~in_pos & ~in_neg]
        if len(pending):
            seen += len(pending)
            ok_p, lb, _, inf_p = pos.certified(pending)
            ok_n, lb_n, _, _ = neg.certified(pending)
            ok_n &= ~ok_p
            mass = cube_share(pending)
            got_pos += float(mass[ok_p].sum())
            got_neg += float(mass[ok_n].sum())
            new_pos = _reduce(pos, pending[ok_p])
            new_neg = _reduce(neg, pending[ok_n])
            parts_pos.append(new_pos)
            parts_neg.append(new_neg)
            open_ = ~ok_p & ~ok_n
            point = open_ & (pending != FREE).all(axis=1)  # within the rounding margin of 0
            # a piece where neither side can hold anywhere (a cascade feature's gray zone) is not split
            point |= open_ & (pos.cert.upper(pending) <= pos.cert.tol) & (neg.cert.upper(pending) <= neg.cert.tol)
            open_mass += float(mass[point].sum())
            keep = open_ & ~point
            ub = -lb_n[keep]
            above = np.clip(ub / np.maximum(ub - lb[keep], 1e-300), 0.0, 1.0)  # share of the interval above 0
            # open pieces that a new term holds are decided now
            if len(frontier) and (len(new_pos) or len(new_neg)):
                f_mass = cube_share(frontier)
                hp = contained(frontier, new_pos)
                hn = contained(frontier, new_neg) & ~hp
                got_pos += float(f_mass[hp].sum())
                got_neg += float(f_mass[hn].sum())
                stay = ~hp & ~hn
                frontier, prio, side, infl = frontier[stay], prio[stay], side[stay], infl[stay]
            frontier = np.concatenate([frontier, pending[keep]])
            prio = np.concatenate([prio, mass[keep]])
            side = np.concatenate([side, above])
            infl = np.concatenate([infl, inf_p[keep]])
        if not len(frontier) or seen >= limit:
            break
        weight = prio * ((side if focus > 0 else 1.0 - side) + 1e-3)
        take = np.argsort(-weight, kind="stable")[: min(batch, max(1, (limit - seen) // 2))]
        split, score = frontier[take], np.where(frontier[take] == FREE, infl[take] + 1e-12, -1.0)
        rest = np.ones(len(frontier), dtype=bool)
        rest[take] = False
        frontier, prio, side, infl = frontier[rest], prio[rest], side[rest], infl[rest]
        v = np.argmax(score, axis=1)  # the most influential free input
        pos.splits += len(split)
        lo_, hi_ = split.copy(), split.copy()
        r = np.arange(len(split))
        lo_[r, v], hi_[r, v] = 0, 1
        pending = np.concatenate([lo_, hi_])
    open_mass += float(cube_share(frontier).sum())
    return np.concatenate(parts_pos), np.concatenate(parts_neg), got_pos, got_neg, open_mass


def _read(pos_bounds: Bounds, neg_bounds: Bounds, n: int, opts: dict[str, int],
          seeds: tuple[np.ndarray, np.ndarray] | None = None) -> _Reading:
    """A function read both ways (``pos_bounds`` bound it from below, ``neg_bounds`` its
    negation): search, completion, irredundant cover. ``seeds`` are terms already
    certified (true, false) that the completion starts from."""
    provers = (_Prover(pos_bounds, neg_bounds), _Prover(neg_bounds, pos_bounds))
    found = []
    split_proofs = 0
    for k, prover in enumerate(provers):
        terms, stats = _search(prover, n, opts["max_literals"], opts["beam"], opts["branch"], opts["split_depth"])
        if seeds is not None:
            terms = np.concatenate([seeds[k], terms])
        found.append(terms)
        split_proofs += stats["split_proofs"]
    limit = opts["exact_limit"] if n <= opts["exact_vars"] else opts["pieces"]
    # spend the completion on the side the search found more of
    focus = 1 if union_share(found[0], budget=500)[0] >= union_share(found[1], budget=500)[0] else -1
    T_pos, T_neg, d_pos, d_neg, undecided = _complete(provers[0], provers[1], found[0], found[1], n, limit, focus)
    if undecided <= 0.0:  # rounding of the sums
        d_pos, d_neg = d_pos / (d_pos + d_neg), d_neg / (d_pos + d_neg)
    T_pos, T_neg = _irredundant(T_pos), _irredundant(T_neg)
    held = [max(d, union_share(T, budget=opts["count_budget"])[0]) for d, T in ((d_pos, T_pos), (d_neg, T_neg))]
    if undecided <= 0.0:
        held = [d_pos, d_neg]
    return _Reading(pos=T_pos, neg=T_neg, decided_pos=d_pos, decided_neg=d_neg,
                    undecided=max(undecided, 0.0), held_pos=held[0], held_neg=held[1],
                    evaluations=pos_bounds.evaluations + neg_bounds.evaluations,
                    splits=sum(p.splits for p in provers), split_proofs=split_proofs)


def _read_output(net: Network, o: int, opts: dict[str, int], seeds: tuple[np.ndarray, np.ndarray] | None = None) -> _Reading:
    """Output ``o`` of the network read both ways."""
    return _read(OutputBounds(net, o, 1, patterns=opts["patterns"]), OutputBounds(net, o, -1, patterns=opts["patterns"]),
                 net.n_in, opts, seeds)


#: The certified reading's options and their defaults (`decode_certified`'s keywords).
DEFAULTS: dict[str, Any] = {"max_literals": 8, "beam": 64, "branch": 6, "split_depth": 3, "patterns": 6,
                            "exact_vars": 14, "pieces": 16384, "form": "dnf"}


def _options(**options: Any) -> dict[str, Any]:
    """The certified reading's options, checked (one-line errors), with defaults filled in."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for the certified reading; its options are {', '.join(DEFAULTS)}")
    o = {**DEFAULTS, **options}
    out: dict[str, Any] = {
        "max_literals": _int_option("max_literals", o["max_literals"], 1),
        "beam": _int_option("beam", o["beam"], 1),
        "branch": _int_option("branch", o["branch"], 1),
        "split_depth": _int_option("split_depth", o["split_depth"], 0, 16),
        "patterns": _int_option("patterns", o["patterns"], 0, 12),
        "exact_vars": _int_option("exact_vars", o["exact_vars"], 0, 24),
        "pieces": _int_option("pieces", o["pieces"], 0),
        "exact_limit": 1 << 20,
        "count_budget": 20000,
    }
    if o["form"] not in _FORMS:
        raise ValueError(f"form must be one of {_FORMS}, got {o['form']!r}")
    out["form"] = o["form"]
    return out


def decode_certified(
    model_or_weights: Any,
    *,
    max_literals: int = DEFAULTS["max_literals"],
    beam: int = DEFAULTS["beam"],
    branch: int = DEFAULTS["branch"],
    split_depth: int = DEFAULTS["split_depth"],
    patterns: int = DEFAULTS["patterns"],
    exact_vars: int = DEFAULTS["exact_vars"],
    pieces: int = DEFAULTS["pieces"],
    form: str = DEFAULTS["form"],
    activation: str | None = None,
) -> DecodedCircuit:
    """What the weights prove: per output, terms certified by sound bounds over the inputs
    they leave free, read from the weights and biases alone (no forward pass on any input).

    ``model_or_weights``: anything :func:`fci.codes.network.read_network` reads (a
    ``MaskedMLP``, an ``nn.Sequential`` of linear layers and elementwise activations, or a
    weight list with ``activation=`` stated). Every activation it reads is supported:
    monotone ones through their interval ends, GELU and SiLU through their exact least value
    over an interval; a ReLU, leaky ReLU or identity last hidden layer gets the tighter
    bound. A network with several hidden layers is read through :func:`fci.codes.cascade`
    first: its composed terms seed the reading.

    Options: ``max_literals``, the longest term the search builds (the completion and
    proofs by cases certify longer ones); ``beam``, undecided terms kept per search level;
    ``branch``, literals tried per term; ``split_depth``, splits per proof by cases;
    ``patterns``, inhibitor on/off choices enumerated per bound (``2**patterns``);
    ``exact_vars``, up to this many inputs the reading is completed until it is exact;
    ``pieces``, the completion's budget of cubes bounded beyond that, shared by the
    outputs; ``form``, ``"dnf"`` (default), ``"cnf"`` or ``"auto"`` (the form that covers
    more of its own region; see the module docstring). The result is a function of the
    weights and these options.

    Every clause of the result is certified (``certified`` all True). ``coverage[o]`` is
    the share of output o's region (its positive inputs for a DNF, its negative inputs for
    a CNF) that the clauses cover, exact where ``coverage_exact[o]``, else a sound lower
    bound; ``search`` holds both forms' coverage and sizes, the shares proved positive,
    proved negative and undecided, cubes bounded and splits; ``seconds`` the time taken.

    When to use it: when a statement about what the network computes must hold on every
    input (a proof, not a sample). On trained networks it is partial: their decisions near
    the boundary depend on many small weights, so certified terms are long and cover part
    of the output (the coverage says how much). :func:`fci.codes.decode_function` reads more
    of a trained network's behaviour with short terms that need not hold everywhere, and the
    channel reading (``decode``'s default) says what the weights code.
    """
    opts = _options(max_literals=max_literals, beam=beam, branch=branch, split_depth=split_depth, patterns=patterns,
                    exact_vars=exact_vars, pieces=pieces, form=form)
    net = read_network(model_or_weights, activation=activation)
    if net.depth > 1:
        from fci.codes.cascade import cascade

        return cascade(net, **{k: v for k, v in opts.items() if k in DEFAULTS}).output
    return _decode(net, opts)


def _decode(net: Network, opts: dict[str, Any], seeds: list[tuple[np.ndarray, np.ndarray]] | None = None) -> DecodedCircuit:
    """The certified reading of every output (``seeds``: per output, certified true and
    false terms to start from)."""
    t0 = time.perf_counter()
    n, O = net.n_in, net.n_out
    if n == 0:
        raise ValueError("the network must have at least one input (n >= 1)")
    per_output = dict(opts, pieces=opts["pieces"] // O)  # the budget is the network's, shared by its outputs
    readings = [_read_output(net, o, per_output, seeds[o] if seeds else None) for o in range(O)]
    form = opts["form"]
    if form == "auto":  # the form that covers more of its own region; on a tie, fewer literals
        key = {f: (-round(sum(r.coverage(f) for r in readings), 9),
                   sum(int(((r.pos if f == "dnf" else r.neg) != FREE).sum()) for r in readings)) for f in ("dnf", "cnf")}
        form = min(("dnf", "cnf"), key=lambda f: key[f])
    circuit = _assemble(net, readings, form)
    circuit.seconds = time.perf_counter() - t0
    circuit.search = {
        "dnf_coverage": [r.coverage("dnf") for r in readings],
        "cnf_coverage": [r.coverage("cnf") for r in readings],
        "dnf_terms": [len(r.pos) for r in readings],
        "cnf_terms": [len(r.neg) for r in readings],
        "proved_positive": [r.held_pos for r in readings],
        "proved_negative": [r.held_neg for r in readings],
        # the three shares partition the inputs: what neither form's terms are known to hold, at most
        "undecided": [max(0.0, 1.0 - r.held_pos - r.held_neg) for r in readings],
        "evaluations": sum(r.evaluations for r in readings),
        "splits": sum(r.splits for r in readings),
        "split_proofs": sum(r.split_proofs for r in readings),
        "options": {k: v for k, v in opts.items() if k in DEFAULTS},
    }
    log.debug("decode_certified: %s", circuit.search)
    return circuit


def _assemble(net: Network, readings: list[_Reading], form: str) -> DecodedCircuit:
    """The chosen form as a DecodedCircuit: a DNF of true terms, or a CNF whose clauses are
    the negated false terms; a provably constant-true output is the DNF's constant ⊤ or
    the CNF's empty AND."""
    n, O = net.n_in, net.n_out
    index: dict[bytes, int] = {}
    cubes: list[np.ndarray] = []
    readouts: list[list[int]] = []
    default = [False] * O
    for o, r in enumerate(readings):
        terms = r.pos if form == "dnf" else r.neg
        if form == "dnf" and (terms == FREE).all(axis=1).any():  # the empty term: always 1
            default[o] = True
            continue
        if form == "cnf":
            if not len(terms):  # no false term: the empty AND, always 1 (no clause)
                continue
            terms = np.where(terms == FREE, FREE, 1 - terms).astype(np.int8)  # ¬(l1 ∧ l2) = ¬l1 ∨ ¬l2
        for t in sorted(terms, key=lambda t: (int((t != FREE).sum()), to_clauses(t[None])[0])):  # short first, then by variable
            key = t.tobytes()
            if key not in index:
                index[key] = len(cubes)
                cubes.append(t)
                readouts.append([])
            readouts[index[key]].append(o)
    clauses = to_clauses(np.array(cubes, dtype=np.int8).reshape(-1, n))
    return DecodedCircuit.of_terms(
        clauses, readouts, n, O,
        channels=[[] for _ in clauses],
        default=default,
        method="certified",
        certified=[[True] * len(r) for r in readouts],
        form=form,
        coverage=[r.coverage(form) for r in readings],
        coverage_exact=[r.exact for r in readings],
    )
