"""FPE splits: how a neuron's (or a filter's) active inputs are partitioned among its
`alpha` children (SPEC §3, *Split strategies*), in one registry for MLP and conv layers.

A `Split` holds a partition for dense layers (`mlp`), for conv layers (`conv`), or
both, with its colour and a one-line description. `expand`, `expand_cnn`,
`expand_nm`, `FPESpec`, every command's `--splits` and the figures read this
registry, so a split registered once (`register_split`) is usable everywhere it
applies:

    >>> from fci.fpe import register_split
    >>> def halves(W, M, alpha, gen, **_):          # (H, n) child ids in [0, alpha)
    ...     H, n = W.shape
    ...     return np.tile(np.arange(n) * alpha // n, (H, 1))
    >>> register_split("halves", halves, color="#8c564b")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from fci.registry import Registry
from fci.seeding import derive_seed, generator

__all__ = ["Split", "SPLITS", "CONV_SPLITS", "register_split", "unregister_split", "split_info", "split_groups",
           "conv_split_groups", "gram_clusters"]

log = logging.getLogger(__name__)

Clause = Sequence[tuple[int, bool]]

SplitFn = Callable[..., "np.ndarray | torch.Tensor"]
"""A dense split: `fn(W, M, alpha, gen, *, clauses, seed, n_clusters) -> (H, n)` child ids in
[0, alpha): W, M are a layer's (H, n) raw weights and mask, `gen` a torch.Generator seeded
for this (split, alpha); entries of inactive inputs are ignored (set to -1 afterwards)."""

ConvSplitFn = Callable[[torch.Tensor, np.ndarray, int, torch.Generator, int], np.ndarray]
"""A conv split: `fn(W (F, C, kh, kw) effective weights, active (F, C, kh, kw) bool, alpha,
gen, seed) -> (F, C, kh, kw)` child ids in [0, alpha) on the active weights, -1 elsewhere."""


@dataclass(frozen=True)
class Split:
    """A registered FPE split: how to partition a unit's inputs, and how to show it.

    Attributes:
        name: the name `expand(..., split=name)`, the CLIs and the studies use.
        mlp: the partition of a dense layer's neurons (`SplitFn`), or None.
        conv: the partition of a conv layer's filters (`ConvSplitFn`), or None.
        needs_clauses: the split reads the task's clauses (so: first hidden layer only).
        color: its colour in every figure.
        description: one line, for --help and the README.
    """

    name: str
    mlp: SplitFn | None = None
    conv: ConvSplitFn | None = None
    needs_clauses: bool = False
    color: str = "#7f7f7f"
    description: str = ""

    @property
    def fn(self) -> SplitFn | None:
        """The dense partition (the name every MLP split used before conv splits joined it)."""
        return self.mlp


#: Every split, dense and conv, by name ("dense" and "restart" are condition names, reserved).
REGISTRY: Registry[Split] = Registry("split", reserved=("dense", "restart"))


class _Names(Sequence[str]):
    """The names of the registered splits that apply to one kind of layer, in registration
    order: a live view, so a module that imported it sees splits registered later."""

    def __init__(self, kind: str):
        self.kind = kind

    def _names(self) -> tuple[str, ...]:
        return tuple(n for n, s in REGISTRY.items() if getattr(s, self.kind) is not None)

    def __getitem__(self, i):  # type: ignore[override]
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __repr__(self) -> str:
        return repr(self._names())

    def __eq__(self, other: object) -> bool:
        return self._names() == (tuple(other) if isinstance(other, (tuple, list, _Names)) else other)

    def __hash__(self) -> int:
        return hash(self._names())


SPLITS: Sequence[str] = _Names("mlp")
"""The splits of dense layers (live)."""
CONV_SPLITS: Sequence[str] = _Names("conv")
"""The splits of conv layers (live)."""


def register_split(name: str, fn: SplitFn | None = None, *, conv: ConvSplitFn | None = None, needs_clauses: bool = False,
                   color: str = "#7f7f7f", description: str = "") -> Split:
    """Add a split for dense layers (`fn`), conv layers (`conv`) or both. Refuses a name
    already taken, a reserved name, and a split with neither partition."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"split name must be an identifier-like string, got {name!r}")
    for what, f in (("fn", fn), ("conv", conv)):
        if f is not None and not callable(f):
            raise ValueError(f"split {what} must be callable, got {f!r}")
    if fn is None and conv is None:
        raise ValueError(f"split {name!r} needs a partition: fn= for dense layers, conv= for conv layers, or both")
    return REGISTRY.register(name, Split(name, fn, conv, bool(needs_clauses), color, description))


def unregister_split(name: str) -> None:
    """Remove a split registered by `register_split` (for tests and notebooks)."""
    REGISTRY.unregister(name)


def split_info(name: str, kind: str | None = None) -> Split:
    """The registered `Split` called `name`; with `kind` ("mlp" or "conv"), one that
    applies to that kind of layer. A ValueError naming the choices otherwise."""
    spec = REGISTRY.get(name)
    if kind is not None and getattr(spec, kind) is None:
        names = SPLITS if kind == "mlp" else CONV_SPLITS
        layer = "dense" if kind == "mlp" else "conv"
        raise ValueError(f"split {name!r} does not apply to {layer} layers; {layer} splits: {', '.join(names)}")
    return spec


def _check_alpha(alpha) -> int:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, np.integer)):
        if isinstance(alpha, float) and alpha.is_integer():
            raise ValueError(f"alpha must be an integer, got the float {alpha!r}; pass {int(alpha)}")
        raise ValueError(f"alpha must be an integer >= 1, got {alpha!r}")
    if alpha < 1:
        raise ValueError(f"alpha must be an integer >= 1, got {alpha}")
    return int(alpha)


def gram_clusters(W: torch.Tensor, n_clusters: int | None = None, seed: int = 0) -> np.ndarray:
    """Cluster input variables into pseudo-features by spectral clustering on |WᵀW|.

    W: (H, n) effective weights. Returns (n,) cluster labels; variables with an
    all-zero column get -1. With `n_clusters=None` the count is chosen by the
    largest eigengap of the normalised Laplacian (between 2 and min(n_active-1, 64)).
    """
    from sklearn.cluster import SpectralClustering

    W = torch.as_tensor(W).detach().cpu().double()
    n = W.shape[1]
    labels = np.full(n, -1, dtype=np.int64)
    active = np.flatnonzero((W != 0).any(0).numpy())
    if len(active) == 0:
        return labels
    if len(active) <= 2:
        labels[active] = np.arange(len(active))
        return labels
    A = (W[:, active].T @ W[:, active]).abs().numpy()
    if n_clusters is None:
        d = A.sum(1)
        dinv = 1.0 / np.sqrt(np.maximum(d, 1e-12))
        L = np.eye(len(active)) - dinv[:, None] * A * dinv[None, :]
        ev = np.sort(np.linalg.eigvalsh(L))
        kmax = min(len(active) - 1, 64)
        gaps = np.diff(ev[: kmax + 1])
        n_clusters = int(np.argmax(gaps[1:]) + 2) if kmax >= 2 else 1
    n_clusters = int(min(max(n_clusters, 1), len(active)))
    if n_clusters == 1:
        labels[active] = 0
        return labels
    sc = SpectralClustering(n_clusters=n_clusters, affinity="precomputed", random_state=derive_seed(seed, "spectral") % (2**31))
    labels[active] = sc.fit_predict(A + 1e-12)
    return labels


def _deal_units(units: list[list[int]], n_in: int, alpha: int, gen: torch.Generator) -> np.ndarray:
    """Deal whole units (lists of variables) round-robin to alpha children after a
    random permutation; a variable goes with the first unit dealt that holds it;
    variables in no unit go to uniformly random children. Returns (n_in,) child ids."""
    assign = np.full(n_in, -1, dtype=np.int64)
    order = torch.randperm(len(units), generator=gen).tolist()
    for slot, u in enumerate(order):
        for v in units[u]:
            if assign[v] < 0:
                assign[v] = slot % alpha
    rest = np.flatnonzero(assign < 0)
    if len(rest):
        assign[rest] = torch.randint(alpha, (len(rest),), generator=gen).numpy()
    return assign


def split_groups(
    W: torch.Tensor,
    M: torch.Tensor,
    alpha: int,
    split: str,
    clauses: Sequence[Clause] | None = None,
    seed: int = 0,
    n_clusters: int | None = None,
) -> torch.Tensor:
    """Partition each neuron's active inputs into alpha groups.

    W, M: (H, n) raw weights and mask. Returns (H, n) int64 child ids in
    [0, alpha) for active inputs and -1 elsewhere.
    """
    alpha = _check_alpha(alpha)
    spec = split_info(split, "mlp")
    if spec.needs_clauses and not clauses:
        raise ValueError(f"split={split!r} needs the task's clauses (clauses=task.clauses)")
    H, n = W.shape
    active = ((M != 0) & (W != 0)).cpu().numpy()
    gen = generator(seed, "split", split, alpha)
    assert spec.mlp is not None  # split_info(..., "mlp") checked it
    ids = spec.mlp(W, M, alpha, gen, clauses=clauses, seed=seed, n_clusters=n_clusters)
    out = np.array(torch.as_tensor(ids).cpu().numpy(), dtype=np.int64, copy=True)
    if out.shape != (H, n):
        raise ValueError(f"split {split!r} returned child ids of shape {out.shape}, expected {(H, n)}")
    out[~active] = -1
    if ((out[active] < 0) | (out[active] >= alpha)).any():
        raise ValueError(f"split {split!r} returned a child id outside [0, alpha={alpha}) for an active input")
    return torch.from_numpy(out)


def _each_neuron(W: torch.Tensor, M: torch.Tensor, assign: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(H, n) child ids: -1 at every inactive input; for each neuron with active
    inputs `act` (indices, ascending), `assign(act)` gives their ids, in order.
    Neurons are visited first to last, so a split's random draws keep their order."""
    H, n = W.shape
    active = ((M != 0) & (W != 0)).cpu().numpy()
    out = np.full((H, n), -1, dtype=np.int64)
    for i in range(H):
        act = np.flatnonzero(active[i])
        if len(act):
            out[i, act] = assign(act)
    return out


def _deal(units: list[list[int]], W: torch.Tensor, M: torch.Tensor, alpha: int, gen: torch.Generator) -> np.ndarray:
    """Per neuron with an active input, deal `units` whole to the children (`_deal_units`)."""
    n = W.shape[1]
    return _each_neuron(W, M, lambda act: _deal_units(units, n, alpha, gen)[act])


def _clause_split(W, M, alpha, gen, *, clauses=None, **_: Any) -> np.ndarray:
    """Whole clauses dealt round-robin to the children; variables in no clause at random."""
    n = W.shape[1]
    units = []
    for c, clause in enumerate(clauses or ()):
        vars_ = [int(v) for v, _ in clause]
        if not vars_:
            raise ValueError(f"clause {c} is empty")
        if min(vars_) < 0 or max(vars_) >= n:
            raise ValueError(f"clause {c} names a variable outside 0..{n - 1}: {vars_}")
        units.append(vars_)
    return _deal(units, W, M, alpha, gen)


def _random_split(W, M, alpha, gen, **_: Any) -> np.ndarray:
    """A uniformly random balanced partition of each neuron's active inputs."""

    def assign(act: np.ndarray) -> np.ndarray:
        ids = np.empty(len(act), dtype=np.int64)
        ids[torch.randperm(len(act), generator=gen).numpy()] = np.arange(len(act)) % alpha
        return ids

    return _each_neuron(W, M, assign)


def _gram_split(W, M, alpha, gen, *, seed=0, n_clusters=None, **_: Any) -> np.ndarray:
    """Spectral clusters of |WᵀW| (pseudo-features) dealt whole, like clauses."""
    labels = gram_clusters(W * M, n_clusters=n_clusters, seed=seed)
    units = [np.flatnonzero(labels == k).tolist() for k in range(int(labels.max()) + 1)] if labels.max() >= 0 else []
    return _deal(units, W, M, alpha, gen)


def _deal_array(units: np.ndarray, alpha: int, gen: torch.Generator) -> np.ndarray:
    """Unit -> child: the units in a random order, dealt round-robin (counts differ by at most one)."""
    order = torch.randperm(len(units), generator=gen).numpy()
    out = np.empty(len(units), dtype=np.int64)
    out[order] = np.arange(len(units)) % alpha
    return out


def _conv_random(W, active, alpha, gen, seed) -> np.ndarray:
    """A balanced random partition of each filter's active weights."""
    out = np.full(active.shape, -1, dtype=np.int64)
    for f in range(active.shape[0]):
        pos = np.flatnonzero(active[f])
        if len(pos):
            out[f].reshape(-1)[pos] = _deal_array(pos, alpha, gen)
    return out


def _conv_by_units(active: np.ndarray, alpha: int, gen: torch.Generator, unit_of: np.ndarray) -> np.ndarray:
    """Deal whole units (unit_of: (C, kh, kw) unit ids) of each filter's active weights."""
    out = np.full(active.shape, -1, dtype=np.int64)
    for f in range(active.shape[0]):
        units = np.unique(unit_of[active[f]])
        if len(units) == 0:
            continue
        child = dict(zip(units.tolist(), _deal_array(units, alpha, gen).tolist()))
        where = active[f]
        out[f][where] = np.vectorize(child.__getitem__, otypes=[np.int64])(unit_of[where])
    return out


def _conv_channel(W, active, alpha, gen, seed) -> np.ndarray:
    """Deal whole input channels (all kernel positions of a channel go to one child)."""
    _, C, kh, kw = active.shape
    return _conv_by_units(active, alpha, gen, np.broadcast_to(np.arange(C)[:, None, None], (C, kh, kw)))


def _conv_spatial(W, active, alpha, gen, seed) -> np.ndarray:
    """Deal kernel positions (all input channels at a position go to one child)."""
    _, C, kh, kw = active.shape
    return _conv_by_units(active, alpha, gen, np.broadcast_to(np.arange(kh * kw).reshape(1, kh, kw), (C, kh, kw)))


def _conv_gram(W, active, alpha, gen, seed) -> np.ndarray:
    """Cluster the (C*kh*kw) input positions by the Gram matrix of the flattened
    filters (spectral clustering, `gram_clusters`, one clustering per
    layer), then deal the clusters."""
    Fn, C, kh, kw = active.shape
    labels = gram_clusters(W.reshape(Fn, -1), seed=seed).reshape(C, kh, kw)
    # positions no filter uses (label -1) are never active, so never placed
    return _conv_by_units(active, alpha, gen, labels)


def _register_builtins() -> None:
    register_split("clause", _clause_split, needs_clauses=True, color="#1f77b4",
                   description="whole clauses dealt to the children (needs the task's clauses)")
    register_split("random", _random_split, conv=_conv_random, color="#ff7f0e",
                   description="a uniformly random balanced partition")
    register_split("gram", _gram_split, conv=_conv_gram, color="#2ca02c",
                   description="spectral clusters of |WᵀW| dealt whole")
    register_split("channel", conv=_conv_channel, color="#9467bd",
                   description="whole input channels dealt to the children (conv layers)")
    register_split("spatial", conv=_conv_spatial, color="#8c564b",
                   description="whole kernel positions dealt to the children (conv layers)")


_register_builtins()


def conv_split_groups(W: torch.Tensor, M: torch.Tensor, alpha: int, split: str, seed: int = 0) -> torch.Tensor:
    """Partition each filter's active weights into alpha groups.
    W, M: (F, C, kh, kw) raw weights and mask -> (F, C, kh, kw) int64 child ids
    in [0, alpha) on active weights (mask 1, weight != 0), -1 elsewhere."""
    alpha = _check_alpha(alpha)
    fn = split_info(split, "conv").conv
    assert fn is not None  # split_info(..., "conv") checked it
    W = W.detach().cpu()
    active = ((M.cpu() != 0) & (W != 0)).numpy()
    gen = generator(seed, "conv-split", split, alpha)
    return torch.from_numpy(fn((W * M.cpu()).double(), active, alpha, gen, seed))
