"""The training maths every backend implements (SPEC §7), stated once.

A *fit* of a stack over epochs `E` (absolute indices) is, for every model on
its own, with its own data `(x, y)` of N samples:

    for e in E:
        perm = randperm(N, generator(shuffle_seed, "epoch", e))    # shared by all models
        for each minibatch idx = perm[s : s + B]:
            loss = mean over the batch (and outputs) of BCE-with-logits, or CE
            g    = d loss / d W  for the effective weights W * M  (so g = 0 under a mask)
            g   += weight_decay * W
            SGD:  W -= lr * g   (with momentum m: v = m v + g, W -= lr v; v starts at g)
            Adam: torch.optim.Adam's update (betas ADAM_BETAS, eps ADAM_EPS,
                  bias correction by the run's global step count)
        report the epoch's loss: the mean over its minibatches of each batch's mean loss

Raw weights under a mask are zero and stay zero; when a mask changes between
two fits, the optimiser moments under the new mask are cleared first. A model's
result depends only on its own data, parameters and the minibatch orders.
The `reference` backend is this text written with autograd and torch.optim;
the fast backends are checked against it.
"""

from __future__ import annotations

from typing import Iterable

import torch

from fci.models.mlp import MaskedMLPStack
from fci.seeding import generator
from fci.train.config import ADAM_BETAS, ADAM_EPS, TrainConfig

__all__ = ["per_model_loss", "epoch_perms", "make_optimizer", "step_flops", "check_fit_inputs", "one_thread_unless"]

LOSSES = ("bce", "ce")


def epoch_perms(seed: int, epochs: range, n: int, device: torch.device) -> torch.Tensor:
    """(len(epochs), n) minibatch orders, a pure function of (seed, epoch)."""
    if len(epochs) == 0:
        return torch.empty(0, n, dtype=torch.int64, device=device)
    perms = [torch.randperm(n, generator=generator(seed, "epoch", e)) for e in epochs]
    return torch.stack(perms).to(device)


def per_model_loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Each model's mean loss on its batch, as training minimises it.
    logits (M, B, O); y (M, B, O) 0/1 for 'bce', (M, B) class ids for 'ce'. -> (M,)"""
    if loss == "bce":
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none").mean((1, 2))
    M, B, O = logits.shape
    return torch.nn.functional.cross_entropy(logits.reshape(M * B, O), y.reshape(M * B).long(), reduction="none").view(M, B).mean(1)


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The specified optimiser as torch writes it (the reference backend's)."""
    params = list(params)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True)


def step_flops(stack: MaskedMLPStack, batch: int) -> float:
    """Multiply-adds x 2 of one padded forward/backward of the stack, (about 6 B P)."""
    return 6.0 * batch * sum(w.numel() for w in stack.weights)


def check_fit_inputs(stack: MaskedMLPStack, x: torch.Tensor, y: torch.Tensor, loss: str) -> None:
    """One-line errors for data that does not fit the stack, before any work."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    device = stack.weights[0].device
    if x.dim() != 3 or x.shape[2] != stack.weights[0].shape[2]:
        raise ValueError(f"x must be (M, N, {stack.weights[0].shape[2]}), got {tuple(x.shape)}")
    M, N = x.shape[:2]
    want = (M, N, stack.weights[-1].shape[1]) if loss == "bce" else (M, N)
    if M != stack.n_models or tuple(y.shape) != want:
        raise ValueError(f"data for {M} models of {N} samples does not match a stack of {stack.n_models} models "
                         f"(y {tuple(y.shape)}, expected {want} for {loss!r})")
    if x.device != device or y.device != device:
        raise ValueError(f"data must be on the stack's device {device}, got x on {x.device} and y on {y.device}")
    if loss == "ce" and y.numel() and (int(y.min()) < 0 or int(y.max()) >= stack.weights[-1].shape[1]):
        raise ValueError(f"class ids must lie in [0, {stack.weights[-1].shape[1]}) for 'ce', got {int(y.min())}..{int(y.max())}")


class one_thread_unless:
    """Run a stack's torch ops on one intra-op thread unless a step is enormous.
    A step is a few dozen small ops; with more threads each op waits on a
    barrier, and on a busy 2-core machine that made a tiny baddbmm ~100x slower.
    The choice is a pure function of the work (above the threshold torch's own
    setting applies, which the caller controls)."""

    def __init__(self, work: float, threshold: float = 1e10):
        self.n = 1 if work < threshold else None

    def __enter__(self):
        self.old = torch.get_num_threads()
        if self.n is not None:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)
