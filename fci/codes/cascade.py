"""The cascade: a network read layer by layer, each hidden neuron a Boolean feature of the
layer below, composed into the output as a formula over the inputs (SPEC §5, *Cascade*).

A hidden neuron ``j`` of layer ``l`` with pre-activation ``z`` is a feature ``hl.j``:

- **on** where ``z > τ_j``, with ``τ_j = on · peak_j`` (``on`` = 0.5 by default) and
  ``peak_j`` the most ``z`` can reach over the inputs (interval bounds through the layers
  below; exact for the first layer). "On" thus means "at least half its full strength":
  the layer above may count on a definite magnitude from it. An AND neuron with ±1
  weights (largest value 1, every other value <= 0) is on exactly where its clause holds.
- **off** where ``z <= 0`` (a ReLU neuron passes nothing).
- between the two (``0 <= z <= τ_j``) it is in its **gray zone**: neither literal holds.

**Magnitudes are carried as intervals**, not dropped: a named state stands for "one of the
feature's terms for it holds", so the layer above sees an "on" feature as any value in
``act([least z over its on-terms, peak_j])`` (at least ``act(τ_j)``), an "off" one in
``act([least z, most z over its off-terms])`` and an unnamed one in
``act([least z, peak_j])`` (exact ranges, :func:`fci.codes.bounds.activation_range`).
Over these boxes the next pre-activation is linear, so its bounds are exact for the boxes,
and each feature is read with the certified reader (:mod:`fci.codes.certified`): terms over
the layer below that prove it on, and terms that prove it off. The output is read the same
way over the last hidden layer.

**Composition.** A term over the layer below becomes terms over the inputs by replacing
each feature literal with that feature's own terms over the inputs (on- or off-terms) and
multiplying out, keeping the ``max_terms`` largest. Each composed term is certified by the
chain (every input it holds puts each named feature in its state, so the next layer's
bound applies). Composition is **exact** where no input falls in a gray zone and every
reading decides every state it meets; it **approximates** where a neuron's value lies in
its gray zone, where the interval of an "on" value is too wide for the layer above to
decide (magnitude matters within it), or where products were cut at ``max_terms``. The
composed output terms then seed the end-to-end certified reading of the whole network
(:func:`fci.codes.decode_certified`), whose coverage is what the cascade reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fci.codes.bounds import FREE, OutputBounds, _affine_box, activation_range
from fci.codes.certified import _decode, _options, _read
from fci.codes.circuit import DecodedCircuit
from fci.codes.cubes import contained, cube_share
from fci.codes.network import Network, read_network

__all__ = ["Cascade", "Feature", "cascade"]

_REPR_TERMS = 3
_REPR_FEATURES = 8


class _LinearBounds:
    """Lower bounds of ``c + w·h`` over cubes of the layer below's states (1 on, 0 off,
    FREE unnamed); each variable's value lies in its state's box ``lo[state], hi[state]``
    (3, m). Exact for the boxes (the function is linear)."""

    def __init__(self, w: np.ndarray, c: float, lo: np.ndarray, hi: np.ndarray):
        self.w, self.c, self.lo, self.hi = w, float(c), lo, hi
        self.evaluations = 0
        # the least value of each variable's term in each state (3, m)
        self.least = np.minimum(w * lo, w * hi)
        self.most = np.maximum(w * lo, w * hi)
        span = float(np.abs(self.c) + np.maximum(np.abs(self.least), np.abs(self.most)).max(axis=0).sum())
        self.tol = 1e-9 * (1.0 + span)
        gain_on = self.least[1] - self.least[2]  # (m,) how much naming a variable raises the bound
        gain_off = self.least[0] - self.least[2]
        self.g = np.where(gain_on >= gain_off, gain_on, -gain_off) + 1e-12 * np.sign(w)
        self.influence = np.abs(w) * (hi[2] - lo[2])

    @staticmethod
    def _state(cubes: np.ndarray) -> np.ndarray:
        return np.where(cubes == FREE, 2, cubes).astype(np.intp)

    def interval(self, cubes: np.ndarray) -> np.ndarray:
        st = self._state(cubes)
        return self.c + self.least[st, np.arange(st.shape[1])].sum(axis=1)

    def upper(self, cubes: np.ndarray) -> np.ndarray:
        st = self._state(cubes)
        return self.c + self.most[st, np.arange(st.shape[1])].sum(axis=1)

    def lower(self, cubes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.evaluations += len(cubes)
        free = cubes == FREE
        g = np.where(free, self.g, 0.0)
        return self.interval(cubes), g, np.where(free, self.influence, 0.0)


@dataclass
class Feature:
    """One hidden neuron read as a Boolean feature of the layer below (or one output).

    ``on`` / ``off``: terms over the layer below (cubes: 1 the named feature or input is on
    / 1, 0 off / 0, FREE unnamed) that prove the neuron on (``z > threshold``) / off
    (``z < 0``); for an output, true / false. ``on_inputs`` / ``off_inputs``: the same,
    composed over the inputs. ``coverage``: the share of the on-region (over the layer
    below's states) that the on-terms cover, exact where ``exact``."""

    name: str
    layer: int
    index: int
    threshold: float
    peak: float
    on: np.ndarray
    off: np.ndarray
    on_inputs: np.ndarray
    off_inputs: np.ndarray
    coverage: float
    exact: bool
    below: str = "x"  # the names of the layer below: "x" for inputs, "h1" for layer 1, ...

    def _name(self, v: int) -> str:
        return f"x{v}" if self.below == "x" else f"{self.below}.{v}"

    def formula(self, over: str = "below", state: str = "on", limit: int | None = None) -> str:
        """The on- (or off-) terms as text, over the layer below or over the inputs."""
        cubes = getattr(self, state if over == "below" else f"{state}_inputs")
        shown = cubes if limit is None else cubes[:limit]
        names = self._name if over == "below" else (lambda v: f"x{v}")
        parts = []
        for row in shown:
            lits = [names(int(v)) if row[v] == 1 else f"¬{names(int(v))}" for v in np.flatnonzero(row != FREE)]
            parts.append("(" + " ∧ ".join(lits) + ")" if lits else "⊤")
        text = " ∨ ".join(parts) or "⊥"
        if limit is not None and len(cubes) > limit:
            text += f" ∨ … (+{len(cubes) - limit})"
        return text

    def __repr__(self) -> str:
        return (f"Feature({self.name} = {self.formula(limit=_REPR_TERMS)}; on: z > {self.threshold:.3g}, "
                f"coverage {'=' if self.exact else '≥'} {self.coverage:.3f})")


@dataclass(repr=False)
class Cascade:
    """A network read layer by layer (module docstring): ``layers[l]`` the features of hidden
    layer ``l + 1``, ``readout[o]`` output o over the last hidden layer, ``output`` the
    composed and end-to-end certified reading of every output over the inputs (a
    :class:`DecodedCircuit`, ``method="certified"``)."""

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    on: float
    layers: list[list[Feature]]
    readout: list[Feature]
    output: DecodedCircuit
    seconds: float = 0.0
    composed: list[int] = field(default_factory=list)  # per output, composed terms that seeded the reading

    def features(self, layer: int) -> list[Feature]:
        """The features of hidden layer ``layer`` (1-based)."""
        if not 1 <= layer <= len(self.layers):
            raise ValueError(f"layer must lie in [1, {len(self.layers)}], got {layer!r}")
        return self.layers[layer - 1]

    def __repr__(self) -> str:
        sizes = " → ".join(map(str, self.sizes))
        lines = [f"Cascade({sizes}, {'/'.join(self.activations)}; on: z > {self.on:g} × peak)"]
        for l, feats in enumerate(self.layers):
            lines.append(f"  layer {l + 1} (over {'the inputs' if l == 0 else f'layer {l}'}):")
            for f in feats[:_REPR_FEATURES]:
                text = f"    {f.name} = {f.formula(limit=_REPR_TERMS)}"
                if l:
                    text += f"  ≡ {f.formula(over='inputs', limit=_REPR_TERMS)}"
                lines.append(text)
            if len(feats) > _REPR_FEATURES:
                lines.append(f"    … (+{len(feats) - _REPR_FEATURES} features)")
        for o, f in enumerate(self.readout[:_REPR_FEATURES]):
            cov = self.output.coverage[o]
            mark = "=" if self.output.coverage_exact[o] else "≥"
            lines.append(f"  out{o} = {f.formula(limit=_REPR_TERMS)}  ≡ {self.output.formula()[o][:200]}"
                         f"  [coverage {mark} {cov:.3f}]")
        return "\n".join(lines)


def _layer_ranges(net: Network, patterns: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per hidden layer, sound least and most pre-activations of each neuron over all
    inputs: exact for the first layer; deeper, each neuron is bounded as the output of the
    network cut below it (`OutputBounds`), which is tighter than intervals alone."""
    lo, hi = np.zeros((1, net.n_in)), np.ones((1, net.n_in))
    root = np.full((1, net.n_in), FREE, dtype=np.int8)
    out = []
    for l in range(net.depth):
        W, b = net.layers[l]
        z_lo, z_hi = _affine_box(W, b, lo, hi)
        z_lo, z_hi = z_lo[0], z_hi[0]
        if l:
            for j in range(len(b)):
                cut = Network(tuple(net.layers[:l]) + ((W[j: j + 1], b[j: j + 1]),), net.activations[:l], net.source)
                z_lo[j] = max(z_lo[j], OutputBounds(cut, 0, 1, patterns=patterns).lower(root)[0][0])
                z_hi[j] = min(z_hi[j], -OutputBounds(cut, 0, -1, patterns=patterns).lower(root)[0][0])
        out.append((z_lo, z_hi))
        lo, hi = activation_range(net, l, z_lo[None], z_hi[None])
    return out


def _state_boxes(net: Network, l: int, z_lo: np.ndarray, z_hi: np.ndarray, on_lo: np.ndarray,
                 off_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each (3, H): the value of layer l's neurons when off (``z`` in
    ``[z_lo, off_hi]``), on (``[on_lo, z_hi]``) and unnamed (``[z_lo, z_hi]``), through the
    activation. ``on_lo`` / ``off_hi`` are the least / most ``z`` over the feature's own on- /
    off-terms, so a state stands for "one of its terms holds". A state without terms gets
    the unnamed box (looser, still sound)."""
    f_lo, f_hi = activation_range(net, l, z_lo, z_hi)
    off_lo, off_hi_ = activation_range(net, l, z_lo, np.clip(off_hi, z_lo, z_hi))
    on_lo_, on_hi = activation_range(net, l, np.clip(on_lo, z_lo, z_hi), z_hi)
    no_off, no_on = ~np.isfinite(off_hi), ~np.isfinite(on_lo)
    off_lo, off_hi_ = np.where(no_off, f_lo, off_lo), np.where(no_off, f_hi, off_hi_)
    on_lo_, on_hi = np.where(no_on, f_lo, on_lo_), np.where(no_on, f_hi, on_hi)
    return np.stack([off_lo, on_lo_, f_lo]), np.stack([off_hi_, on_hi, f_hi])


def _compose(terms: np.ndarray, below_on: list[np.ndarray], below_off: list[np.ndarray], n: int,
             max_terms: int) -> np.ndarray:
    """Terms over the layer below -> terms over the inputs: each literal replaced by its
    feature's input terms and multiplied out (conflicting products dropped; literals with
    fewest terms first), keeping the ``max_terms`` largest products along the way."""
    out: list[np.ndarray] = []
    for t in terms:
        acc = np.full((1, n), FREE, dtype=np.int8)
        lits = np.flatnonzero(t != FREE)
        alts = [below_on[v] if t[v] == 1 else below_off[v] for v in lits]
        for alt in sorted(alts, key=len):  # the most constraining first: conflicts prune early
            if not len(alt) or not len(acc):
                acc = acc[:0]
                break
            a = np.repeat(acc, len(alt), axis=0)
            b = np.tile(alt, (len(acc), 1))
            clash = ((a != FREE) & (b != FREE) & (a != b)).any(axis=1)
            merged = np.where(a == FREE, b, a)[~clash]
            if len(merged) > max_terms:
                merged = merged[np.argsort(-cube_share(merged), kind="stable")[:max_terms]]
            acc = np.unique(merged, axis=0) if len(merged) else merged
        out.append(acc)
    res = np.concatenate(out) if out else np.zeros((0, n), dtype=np.int8)
    if len(res) > 1:
        res = np.unique(res, axis=0)
        res = res[np.argsort(-cube_share(res), kind="stable")]
        keep = np.ones(len(res), dtype=bool)
        for i in range(1, len(res)):
            keep[i] = not contained(res[i: i + 1], res[:i][keep[:i]])[0]
        res = res[keep][:max_terms]
    return res


def cascade(model_or_weights: Any, *, on: float = 0.5, max_terms: int = 64, feature_pieces: int = 1024,
            activation: str | None = None, **options: Any) -> Cascade:
    """Read a network layer by layer (module docstring) from its weights alone: each hidden
    neuron as a feature of the layer below and of the inputs, and each output over the last
    hidden layer and, composed and certified end to end, over the inputs.

    ``on``: a feature is on where its pre-activation exceeds ``on`` times its peak (in
    (0, 1]); ``max_terms``: the most terms kept per composed formula; ``feature_pieces``:
    the completion budget of each feature's reading; further keyword options are
    :func:`fci.codes.decode_certified`'s and apply to the end-to-end reading.
    """
    t0 = time.perf_counter()
    if isinstance(on, bool) or not isinstance(on, (int, float)) or not 0 < on <= 1:
        raise ValueError(f"on must be a fraction of a neuron's peak in (0, 1], got {on!r}")
    if isinstance(max_terms, bool) or not isinstance(max_terms, int) or max_terms < 1:
        raise ValueError(f"max_terms must be an integer >= 1, got {max_terms!r}")
    if isinstance(feature_pieces, bool) or not isinstance(feature_pieces, int) or feature_pieces < 0:
        raise ValueError(f"feature_pieces must be an integer >= 0, got {feature_pieces!r}")
    opts = _options(**options)
    net = read_network(model_or_weights, activation=activation)
    n = net.n_in
    # features are linear in the layer below, so their bounds are exact: a narrow search will do
    feat_opts = dict(opts, pieces=feature_pieces, beam=min(opts["beam"], 16), exact_vars=min(opts["exact_vars"], 12))
    ranges = _layer_ranges(net, opts["patterns"])
    layers: list[list[Feature]] = []
    # the layer below, for the next reading: value boxes per state, input terms per feature
    lo = np.stack([np.zeros(n), np.ones(n), np.zeros(n)])
    hi = np.stack([np.zeros(n), np.ones(n), np.ones(n)])
    on_in = [np.where(np.arange(n) == v, 1, FREE).astype(np.int8)[None] for v in range(n)]
    off_in = [np.where(np.arange(n) == v, 0, FREE).astype(np.int8)[None] for v in range(n)]
    for l in range(net.depth):
        W, b = net.layers[l]
        z_lo, z_hi = ranges[l]
        peak = np.maximum(z_hi, 0.0)
        tau = on * peak
        # on: z > τ; off: z <= 0 (read as -z + ε > 0 with ε just above the rounding margin)
        eps = 1e-6 * (1.0 + np.abs(b) + np.abs(W) @ np.maximum(np.abs(lo[2]), np.abs(hi[2])))
        pairs = [(_LinearBounds(W[j], b[j] - tau[j], lo, hi), _LinearBounds(-W[j], -b[j] + eps[j], lo, hi))
                 for j in range(len(b))]
        readings = [_read(p, q, W.shape[1], feat_opts) for p, q in pairs]
        on_lo = np.full(len(b), np.inf)
        off_hi = np.full(len(b), -np.inf)
        for j, r in enumerate(readings):
            z = _LinearBounds(W[j], b[j], lo, hi)
            if len(r.pos):
                on_lo[j] = z.interval(r.pos).min()
            if len(r.neg):
                off_hi[j] = z.upper(r.neg).max()
        feats = []
        for j, r in enumerate(readings):
            feats.append(Feature(
                name=f"h{l + 1}.{j}", layer=l + 1, index=j, threshold=float(tau[j]), peak=float(peak[j]),
                on=r.pos, off=r.neg,
                on_inputs=r.pos if l == 0 else _compose(r.pos, on_in, off_in, n, max_terms),
                off_inputs=r.neg if l == 0 else _compose(r.neg, on_in, off_in, n, max_terms),
                coverage=r.coverage("dnf"), exact=r.exact, below="x" if l == 0 else f"h{l}"))
        layers.append(feats)
        on_in = [f.on_inputs for f in feats]
        off_in = [f.off_inputs for f in feats]
        lo, hi = _state_boxes(net, l, z_lo, z_hi, on_lo, off_hi)
    W, b = net.layers[-1]
    readout = []
    seeds = []
    for o in range(net.n_out):
        r = _read(_LinearBounds(W[o], b[o], lo, hi), _LinearBounds(-W[o], -b[o], lo, hi), W.shape[1], feat_opts)
        pos_in = _compose(r.pos, on_in, off_in, n, max_terms)
        neg_in = _compose(r.neg, on_in, off_in, n, max_terms)
        readout.append(Feature(name=f"out{o}", layer=net.depth + 1, index=o, threshold=0.0, peak=0.0, on=r.pos, off=r.neg,
                               on_inputs=pos_in, off_inputs=neg_in, coverage=r.coverage("dnf"), exact=r.exact,
                               below=f"h{net.depth}"))
        seeds.append((pos_in, neg_in))
    output = _decode(net, opts, seeds)
    output.seconds = time.perf_counter() - t0
    return Cascade(sizes=(n, *net.hidden, net.n_out), activations=net.activations, on=float(on), layers=layers,
                   readout=readout, output=output, seconds=time.perf_counter() - t0,
                   composed=[len(p) for p, _ in seeds])
