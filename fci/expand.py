"""Fixed Parameter Expansion (SPEC §3).

Split every neuron of a hidden layer into `alpha` children that partition its
active incoming weights, replicate its outgoing weights, and prune the excess
by global magnitude so the non-zero parameter count is unchanged.
"""

from __future__ import annotations

import logging
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from fci.model import MaskedMLP
from fci.seeding import derive_seed, generator

__all__ = ["expand", "expand_layers", "split_groups", "gram_clusters", "SPLITS", "Split", "register_split",
           "unregister_split", "split_info"]

log = logging.getLogger(__name__)

Clause = Sequence[tuple[int, bool]]

SplitFn = Callable[..., "np.ndarray | torch.Tensor"]
"""`fn(W, M, alpha, gen, *, clauses, seed, n_clusters) -> (H, n)` child ids in [0, alpha):
W, M are a layer's (H, n) raw weights and mask, `gen` a torch.Generator seeded for this
(split, alpha); entries of inactive inputs are ignored (set to -1 afterwards)."""


@dataclass(frozen=True)
class Split:
    """A registered FPE split: how to partition a neuron's inputs, and how to show it.

    Attributes:
        name: the name `expand(..., split=name)`, the CLIs and the studies use.
        fn: the partition (see `SplitFn`).
        needs_clauses: the split reads the task's clauses (so: first hidden layer only).
        color: its colour in every figure.
        description: one line, for --help and the README.
    """

    name: str
    fn: SplitFn
    needs_clauses: bool = False
    color: str = "#7f7f7f"
    description: str = ""


_REGISTRY: dict[str, Split] = {}


class _SplitNames(Sequence[str]):
    """The registered split names, in registration order: a live view, so a module
    that imported `SPLITS` sees splits registered later (the figure order too)."""

    def __getitem__(self, i):  # type: ignore[override]
        return tuple(_REGISTRY)[i]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_REGISTRY))

    def __contains__(self, name: object) -> bool:
        return name in _REGISTRY

    def __repr__(self) -> str:
        return repr(tuple(_REGISTRY))

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, (tuple, list, _SplitNames)) else other)

    def __hash__(self) -> int:
        return hash(tuple(self))


SPLITS: Sequence[str] = _SplitNames()
"""Every registered split name (live)."""


def register_split(name: str, fn: SplitFn, *, needs_clauses: bool = False, color: str = "#7f7f7f",
                   description: str = "") -> Split:
    """Add a split: `expand`, `FPESpec`, `python -m fci --splits`, the studies' `--splits`
    and the figures (colour, order) all read this registry. Refuses a name already taken."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"split name must be an identifier-like string, got {name!r}")
    if name in _REGISTRY or name in ("dense", "restart"):
        raise ValueError(f"split {name!r} is already registered (or reserved); registered: {tuple(_REGISTRY)}")
    if not callable(fn):
        raise ValueError(f"split fn must be callable, got {fn!r}")
    _REGISTRY[name] = spec = Split(name, fn, bool(needs_clauses), color, description)
    return spec


def unregister_split(name: str) -> None:
    """Remove a split registered by `register_split` (for tests and notebooks)."""
    if name not in _REGISTRY:
        raise ValueError(f"split {name!r} is not registered; registered: {tuple(_REGISTRY)}")
    del _REGISTRY[name]


def split_info(name: str) -> Split:
    """The registered `Split` called `name`; a ValueError naming the choices otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"split must be one of {tuple(_REGISTRY)}, got {name!r}") from None


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
    spec = split_info(split)
    if spec.needs_clauses and not clauses:
        raise ValueError(f"split={split!r} needs the task's clauses (clauses=task.clauses)")
    H, n = W.shape
    active = ((M != 0) & (W != 0)).cpu().numpy()
    gen = generator(seed, "split", split, alpha)
    ids = spec.fn(W, M, alpha, gen, clauses=clauses, seed=seed, n_clusters=n_clusters)
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


register_split("clause", _clause_split, needs_clauses=True, color="#1f77b4",
               description="whole clauses dealt to the children (needs the task's clauses)")
register_split("random", _random_split, color="#ff7f0e", description="a uniformly random balanced partition")
register_split("gram", _gram_split, color="#2ca02c", description="spectral clusters of |WᵀW| dealt whole")


def expand(
    model: MaskedMLP,
    alpha: int,
    split: str = "random",
    clauses: Sequence[Clause] | None = None,
    seed: int = 0,
    layer: int = 0,
    n_clusters: int | None = None,
) -> MaskedMLP:
    """Fixed Parameter Expansion of hidden layer `layer` (SPEC §3).

    Returns a new model whose layer has `alpha * H` neurons; parent i owns units
    `i*alpha .. i*alpha+alpha-1` (`child.parent_index`). Children partition the
    parent's active inputs, copy its bias, replicate its outgoing column; a child
    with an empty group is inert (masks and bias zero; a parent with no active
    input keeps one bias-only child so its constant output survives). The excess
    non-zeros are pruned by global magnitude over the two expanded weight
    matrices, so `child.nnz() == model.nnz()`. `alpha=1` returns an equal copy.
    """
    alpha = _check_alpha(alpha)
    spec = split_info(split)
    if not 0 <= layer < model.n_layers - 1:
        raise ValueError(f"layer must index a hidden layer, 0..{model.n_layers - 2}, got {layer}")
    if spec.needs_clauses and not clauses:
        raise ValueError(f"split={split!r} needs the task's clauses (clauses=task.clauses)")
    if spec.needs_clauses and layer != 0:
        raise ValueError(f"split={split!r} applies to the first hidden layer only (clauses are over inputs)")
    parent = model.copy()
    if alpha == 1:
        parent.parent_index = torch.arange(parent.hidden[layer])
        parent.expansion_info = {"alpha": 1, "split": split, "layer": layer, "pruned": 0}
        return parent

    W = parent.weights[layer].detach()
    M = parent.weight_mask(layer)
    b = parent.biases[layer].detach()
    bm = parent.bias_mask(layer)
    Wn = parent.weights[layer + 1].detach()
    Mn = parent.weight_mask(layer + 1)
    H, n = W.shape
    groups = split_groups(W, M, alpha, split, clauses=clauses, seed=seed, n_clusters=n_clusters)  # (H, n)

    Hc = H * alpha
    child_of = torch.arange(alpha).repeat(H)  # (Hc,) a for unit (i, a)
    parent_of = torch.arange(H).repeat_interleave(alpha)  # (Hc,)
    in_group = groups[parent_of] == child_of[:, None]  # (Hc, n)
    nonempty = in_group.any(1)
    no_inputs = ~groups.ge(0).any(1)  # parents without active inputs keep a bias-only child 0
    alive = nonempty | (no_inputs[parent_of] & (child_of == 0))

    W1c = W[parent_of] * in_group
    M1c = in_group.to(M.dtype)
    b1c = b[parent_of] * alive
    bm1c = bm[parent_of] * alive
    W2c = Wn[:, parent_of] * alive
    M2c = Mn[:, parent_of] * alive

    # Budget: prune the excess over the expanded weight matrices, smallest |w| first.
    def _nnz(*ts):
        return sum(int((t != 0).sum()) for t in ts)

    p_eff = parent.effective_weights()
    parent_nnz = parent.nnz()
    others = sum(_nnz(w, bb) for l, (w, bb) in enumerate(p_eff) if l not in (layer, layer + 1))
    child_nnz = others + _nnz(W1c * M1c, b1c * bm1c, W2c * M2c, p_eff[layer + 1][1])
    excess = child_nnz - parent_nnz
    flat = torch.cat([(W1c * M1c).abs().flatten(), (W2c * M2c).abs().flatten()])
    nz = torch.nonzero(flat != 0).squeeze(1)
    if excess > len(nz):
        raise ValueError(
            f"FPE cannot honour the budget: expansion adds {excess} non-zeros but the expanded "
            f"weight matrices hold only {len(nz)} prunable weights"
        )
    if excess > 0:
        order = torch.argsort(flat[nz], stable=True)
        drop = nz[order[:excess]]
        keep = torch.ones_like(flat, dtype=torch.bool)
        keep[drop] = False
        k1 = W1c.numel()
        M1c = M1c * keep[:k1].view_as(M1c)
        M2c = M2c * keep[k1:].view_as(M2c)

    sizes = parent.sizes
    new_hidden = list(sizes[1:-1])
    new_hidden[layer] = Hc
    child = MaskedMLP(sizes[0], new_hidden, sizes[-1])
    child._fill_from(parent, {layer: (W1c, M1c, b1c, bm1c), layer + 1: (W2c, M2c)})
    if layer == 0:
        child.parent_index = parent_of.clone()
    child.expansion_info = {"alpha": alpha, "split": split, "layer": layer, "pruned": max(excess, 0)}
    if child.nnz() != parent_nnz:  # an invariant, not an input error
        raise AssertionError(f"FPE budget broken: child nnz {child.nnz()} != parent nnz {parent_nnz}")
    return child


def _layer_seed(seed: int, layer: int) -> int:
    """The split seed of hidden layer `layer` in `expand_layers`."""
    return seed if layer == 0 else derive_seed(seed, "layer", layer)


def expand_layers(
    model: MaskedMLP,
    alpha: int,
    split: str = "random",
    layers: Sequence[int] | str = "all",
    clauses: Sequence[Clause] | None = None,
    seed: int = 0,
    n_clusters: int | None = None,
) -> MaskedMLP:
    """FPE of several hidden layers, one after another (first to last).

    Each step splits one layer's neurons, replicates the next layer's incoming
    columns, and prunes the excess, so the budget holds across the whole
    network: `result.nnz() == model.nnz()`. `layers="all"` expands every hidden
    layer; the clause split applies to layer 0 only, deeper layers of a
    clause-split network are split at random. Layer 0 uses `seed` itself and
    layer l > 0 `derive_seed(seed, "layer", l)`, so layer 0's split is the same
    whichever layers are expanded, and `layers=(0,)` is exactly `expand(seed=seed)`. `expansion_info["layers"]` lists each
    step's info, and `parent_index` is that of layer 0 when it was expanded.
    """
    alpha = _check_alpha(alpha)
    n_hidden = model.n_layers - 1
    if isinstance(layers, str) and layers != "all" or not isinstance(layers, (str, Sequence, range)) \
            or any(isinstance(l, (bool, str)) or not isinstance(l, (int, np.integer)) for l in ([] if layers == "all" else layers)):
        raise ValueError(f"layers must be 'all' or a sequence of hidden-layer indices, got {layers!r}")
    todo = list(range(n_hidden)) if layers == "all" else sorted(set(int(l) for l in layers))
    if not todo:
        raise ValueError("layers must name at least one hidden layer")
    bad = [l for l in todo if not 0 <= l < n_hidden]
    if bad:
        raise ValueError(f"layers must index hidden layers 0..{n_hidden - 1}, got {bad}")
    out, infos, first_index = model, [], None
    for l in todo:
        s = split if (not split_info(split).needs_clauses or l == 0) else "random"
        out = expand(out, alpha, s, clauses=clauses if split_info(s).needs_clauses else None, seed=_layer_seed(seed, l),
                     layer=l, n_clusters=n_clusters)
        infos.append(out.expansion_info)
        if l == 0:
            first_index = out.parent_index
    if first_index is not None:
        out.parent_index = first_index
    splits = sorted({i["split"] for i in infos})
    out.expansion_info = {"alpha": alpha, "split": splits[0] if len(splits) == 1 else "+".join(splits), "layers": infos,
                          "pruned": sum(i["pruned"] for i in infos)}
    return out


class _CallableModule(types.ModuleType):
    """`fci.expand` is both this module and, called, its `expand` function. The
    import system binds the submodule to the package attribute `fci.expand`, which
    the top-level notebook name `fci.expand(model, ...)` shares; so the module
    itself forwards calls, whatever was imported first."""

    def __call__(self, *args, **kwargs):
        return expand(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
