"""Dynamic sparsity: prune-and-regrow (RigL-style) rewiring during training.

`fit_dynamic` trains a stack with `fci.train.fit` in
chunks of epochs and, every `DynamicSparsity.every` epochs, rewires chosen
models RigL-style (`prune_and_regrow`): per model and layer, drop the fraction
`f` of active weights with the smallest |w| and regrow as many inactive
positions with the largest |dL/dW_eff| (the dense gradient with respect to the
effective weight, on one minibatch, for the whole stack in one backward pass;
`effective_weight_gradients`). The mask count of every layer is kept exactly;
regrown weights start at 0. Every `fit` call reloads masks and effective
weights from the stack (`KernelState.load` on the C kernel's path, `_FlatStack.load`
for each slice on the torch path), so a
changed mask is honoured by the next chunk, and `fit` clears the optimiser's
moments under every mask, so a dropped weight stays at zero and a regrown one
starts from fresh moments.

Differences from RigL's reference implementation, chosen so that every round
really moves weights: a position dropped in a round cannot be regrown in the
same round, and only positions with a non-zero gradient are regrown (a zero
gradient means a dead or disconnected unit, where a regrown weight would stay
0 and the non-zero count would silently fall); when fewer such positions exist
than the drop count, fewer weights are swapped (the count is reported).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from fci.io import known_fields
from fci.models.mlp import MaskedMLPStack
from fci.seeding import generator
from fci.sparsity.magnitude import _rank_select
from fci.train import FitState, TrainConfig, evaluate, fit, per_model_loss

__all__ = ["DynamicSparsity", "effective_weight_gradients", "prune_and_regrow", "fit_dynamic", "DynamicFit"]


@dataclass(frozen=True)
class DynamicSparsity:
    """A prune-and-regrow schedule for fine-tuning (RigL-style).

    Attributes:
        every: epochs between rewiring rounds (>= 1); rounds happen after
            `every`, `2*every`, ... epochs of the phase.
        fraction: fraction of each layer's active weights dropped (and as many
            regrown) in a round, before decay, in (0, 1).
        decay: "cosine" (RigL: fraction * (1 + cos(pi t / T_end)) / 2 at offset t)
            or "constant".
        stop: fraction of the phase after which no round happens (T_end =
            stop * epochs), in (0, 1]; rounds also never happen at the very end,
            so every regrown weight trains at least `every` epochs.
        layers: weight layers that are rewired (0 = the first layer, which FPE splits).
        grad_batch: samples in the minibatch whose gradient scores the regrowth
            (>= 1; capped at the training set size).
    """

    every: int = 10
    fraction: float = 0.3
    decay: str = "cosine"
    stop: float = 0.75
    layers: tuple[int, ...] = (0,)
    grad_batch: int = 256

    def __post_init__(self):
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be an integer >= 1 (epochs), got {self.every!r}")
        if not 0 < self.fraction < 1:
            raise ValueError(f"fraction must lie in (0, 1), got {self.fraction}")
        if self.decay not in ("cosine", "constant"):
            raise ValueError(f"decay must be 'cosine' or 'constant', got {self.decay!r}")
        if not 0 < self.stop <= 1:
            raise ValueError(f"stop must lie in (0, 1], got {self.stop}")
        layers = tuple(int(l) for l in self.layers)
        if not layers or min(layers) < 0:
            raise ValueError(f"layers must name at least one weight layer (indices >= 0), got {self.layers!r}")
        object.__setattr__(self, "layers", layers)
        if isinstance(self.grad_batch, bool) or not isinstance(self.grad_batch, int) or self.grad_batch < 1:
            raise ValueError(f"grad_batch must be an integer >= 1, got {self.grad_batch!r}")

    def rounds(self, epochs: int) -> list[tuple[int, float]]:
        """(offset, fraction) of every round in a phase of `epochs` epochs."""
        t_end = self.stop * epochs
        out = []
        for t in range(self.every, epochs, self.every):
            if t >= t_end:
                break
            f = self.fraction if self.decay == "constant" else self.fraction * (1 + math.cos(math.pi * t / t_end)) / 2
            out.append((t, f))
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DynamicSparsity":
        kw = known_fields(cls, d)
        if "layers" in kw:
            kw["layers"] = tuple(kw["layers"])
        return cls(**kw)


def effective_weight_gradients(stack: MaskedMLPStack, x: torch.Tensor, y: torch.Tensor, loss: str = "bce") -> list[torch.Tensor]:
    """The dense gradient of each model's mean loss on (x, y) with respect to its
    effective weights, for the whole stack in one backward pass.

    x: (M, B, n_in); y: (M, B, O) for 'bce', (M, B) for 'ce'. Returns one
    (M, out_l, in_l) tensor per layer, non-zero also where the mask is 0
    (that is what scores a regrowth).
    """
    if loss not in ("bce", "ce"):
        raise ValueError(f"loss must be 'bce' or 'ce', got {loss!r}")
    dtype = stack.weights[0].dtype
    weff = [(w * stack.weight_mask(l)).detach().requires_grad_(True) for l, w in enumerate(stack.weights)]
    beff = [(b * stack.bias_mask(l)).detach() for l, b in enumerate(stack.biases)]
    with torch.enable_grad():
        h = x.to(dtype)
        for l, (w, b) in enumerate(zip(weff, beff)):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if l < len(weff) - 1:
                h = torch.relu(h)
        per_model = per_model_loss(h, y, loss)
        grads = torch.autograd.grad(per_model.sum(), weff)
    return [g.detach() for g in grads]


def _true_region(stack: MaskedMLPStack, l: int) -> torch.Tensor:
    """(M, out, in) bool: positions of layer l inside each model's true widths (not padding)."""
    M, o, i = stack.weights[l].shape
    dev = stack.weights[l].device
    widths = stack.widths.to(dev)
    sizes = torch.cat([torch.full((M, 1), stack.weights[0].shape[2], device=dev), widths,
                       torch.full((M, 1), stack.weights[-1].shape[1], device=dev)], 1)
    rows = torch.arange(o, device=dev)[None, :, None] < sizes[:, l + 1, None, None]
    cols = torch.arange(i, device=dev)[None, None, :] < sizes[:, l, None, None]
    return rows & cols


@torch.no_grad()
def prune_and_regrow(
    stack: MaskedMLPStack,
    grads: Sequence[torch.Tensor],
    fraction: float,
    layers: Sequence[int] = (0,),
    models: Sequence[int] | None = None,
    allowed: Sequence[torch.Tensor | None] | None = None,
) -> dict[int, torch.Tensor]:
    """One rewiring round, in place, for the chosen models of a stack.

    For every model in `models` (default all) and layer in `layers`: with `a`
    active weights, `k = min(floor(fraction * a), r)` where `r` counts the
    regrowable positions (inactive before the round, inside the model's true
    widths and `allowed[l]` if given, with a non-zero gradient); the `k` active
    weights of smallest |w| are dropped (mask 0, weight 0) and the `k`
    regrowable positions of largest |grads[l]| become active with weight 0
    (ties: the lower index). The layer's mask count is unchanged; the next `fit`
    call clears the optimiser moments under the new mask. grads: per layer (M, out, in), e.g. `effective_weight_gradients`.
    Returns {layer: (M,) weights swapped}.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction}")
    M = stack.n_models
    dev = stack.weights[0].device
    sel = torch.zeros(M, dtype=torch.bool, device=dev)
    if models is None:
        sel[:] = True
    else:
        idx = [int(m) for m in models]
        if any(not 0 <= m < M for m in idx):
            raise ValueError(f"models must index the stack's {M} models, got {idx}")
        sel[idx] = True
    layers = [int(l) for l in layers]
    if any(not 0 <= l < stack.n_layers for l in layers):
        raise ValueError(f"layers must index weight layers 0..{stack.n_layers - 1}, got {layers}")
    swapped = {}
    for l in layers:
        W, mask, g = stack.weights[l], stack.weight_mask(l), grads[l].to(dev)
        if g.shape != W.shape:
            raise ValueError(f"grads[{l}] must have shape {tuple(W.shape)}, got {tuple(g.shape)}")
        active = mask != 0
        region = _true_region(stack, l)
        allow = None if allowed is None else allowed[l]
        if allow is not None:
            region = region & allow.to(dev).bool()
        regrowable = ~active & region & (g != 0)
        n_active = active.flatten(1).sum(1)
        k = torch.minimum(torch.floor(fraction * n_active.double()).long(), regrowable.flatten(1).sum(1))
        k = torch.where(sel, k, torch.zeros_like(k))
        inf = torch.full_like(W, math.inf)
        drop = _rank_select(torch.where(active, W.abs(), inf).flatten(1), k).view_as(W)
        grow = _rank_select(torch.where(regrowable, -g.abs(), inf).flatten(1), k).view_as(W)
        mask.masked_fill_(drop, 0).masked_fill_(grow, 1)
        W.masked_fill_(drop | grow, 0)
        swapped[l] = k.cpu()
    return swapped


@dataclass
class DynamicFit:
    """What `fit_dynamic` returns.

    optimizer: to continue training (pass back to `fit` / `fit_dynamic`): the
        state `fit` returned, or the optimizer passed in when `epochs` is empty;
    losses: (M, epochs) mean train loss per model and epoch, on CPU;
    curve: [(offset, (M,) test accuracy)] at offsets 0, every `eval_every`
        epochs (before that offset's round) and the end, when eval data was given;
    rounds: [{"offset", "epoch", "fraction", "swapped": {layer: (M,)}, "mask_nnz": {layer: (M,)}}].
    """

    optimizer: FitState | torch.optim.Optimizer
    losses: torch.Tensor
    curve: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)


def fit_dynamic(
    stack: MaskedMLPStack,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    epochs: range,
    dynamic: DynamicSparsity | None = None,
    models: Sequence[int] | None = None,
    loss: str = "bce",
    optimizer: FitState | torch.optim.Optimizer | None = None,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    eval_every: int | None = None,
) -> DynamicFit:
    """Train a stack over `epochs` (absolute indices, step 1) with `fit`, in
    chunks, rewiring `models` (default all) by `dynamic`'s schedule.

    x: (M, N, n_in), y: (M, N, O) or (M, N), on the stack's device, as for
    `fit`. At each round the gradient is taken on one minibatch of
    `dynamic.grad_batch` samples drawn with `generator(cfg.shuffle_seed,
    "regrow", epoch)` (the same samples for every model, so a model's run does
    not depend on its stack). With `dynamic=None` (or no models) this is `fit`
    cut into chunks, which trains to the same weights as one call. `eval_data`
    (x_test, y_test) records test accuracy every `eval_every` epochs (default:
    `dynamic.every`, else only at the start and the end).
    """
    if not isinstance(epochs, range) or epochs.step != 1:
        raise ValueError(f"epochs must be a range with step 1, got {epochs!r}")
    if eval_every is not None and (not isinstance(eval_every, int) or eval_every < 1):
        raise ValueError(f"eval_every must be an integer >= 1, got {eval_every!r}")
    E = len(epochs)
    rounds = dict(dynamic.rounds(E)) if dynamic is not None and (models is None or len(models) > 0) else {}
    if dynamic is not None and any(l >= stack.n_layers for l in dynamic.layers):
        raise ValueError(f"dynamic.layers {dynamic.layers} name a layer beyond the stack's {stack.n_layers}")
    every = eval_every or (dynamic.every if dynamic is not None else E or 1)
    evals = set(range(0, E, every)) | {E} if eval_data is not None else set()
    cuts = sorted(set(rounds) | evals | {0, E})
    opt = optimizer
    curve: list[tuple[int, torch.Tensor]] = []
    round_log: list[dict[str, Any]] = []
    chunks = []
    N = x.shape[1]
    for a, b in zip(cuts, cuts[1:] + [None]):
        if a in evals:
            assert eval_data is not None  # evals is empty without it
            curve.append((a, evaluate(stack, eval_data[0], eval_data[1], loss)["accuracy"]))
        if a in rounds:
            assert dynamic is not None  # rounds is empty without it
            e = epochs.start + a
            B = min(dynamic.grad_batch, N)
            idx = torch.randperm(N, generator=generator(cfg.shuffle_seed, "regrow", e))[:B].to(x.device)
            grads = effective_weight_gradients(stack, x.index_select(1, idx), y.index_select(1, idx), loss)
            swapped = prune_and_regrow(stack, grads, rounds[a], layers=dynamic.layers, models=models)
            round_log.append({"offset": a, "epoch": e, "fraction": rounds[a], "swapped": swapped,
                              "mask_nnz": {l: (stack.weight_mask(l) != 0).flatten(1).sum(1).cpu() for l in dynamic.layers}})
        if b is None:
            break
        opt, losses = fit(stack, x, y, cfg, range(epochs.start + a, epochs.start + b), loss=loss, optimizer=opt)
        chunks.append(losses)
    if chunks:
        losses = torch.cat(chunks, 1)
    elif opt is None:  # an empty phase: an optimiser for the caller to continue with
        opt, losses = fit(stack, x, y, cfg, range(epochs.start, epochs.start), loss=loss)
    else:
        losses = torch.zeros(stack.n_models, 0)
    assert opt is not None  # fit ran at least once, or the caller passed one
    return DynamicFit(optimizer=opt, losses=losses, curve=curve, rounds=round_log)
