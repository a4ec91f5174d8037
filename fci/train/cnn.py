"""Training and evaluating stacks of masked CNNs (the conv counterpart of `fci.train.fit`).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.nn import functional as F

from fci.models.cnn import MaskedCNNStack
from fci.progress import bar as tqdm
from fci.train.config import ADAM_BETAS, ADAM_EPS, TrainConfig
from fci.train.maths import epoch_perms, one_thread_unless, per_model_loss

__all__ = ["CNNFitState", "fit_cnn", "evaluate_cnn", "step_flops"]


class CNNFitState:
    """What `fit_cnn` returns: the run's optimiser; pass it back to continue the
    run (it refuses another stack or other optimiser settings)."""

    def __init__(self, stack: MaskedCNNStack, cfg: TrainConfig, optimizer: torch.optim.Optimizer):
        self._stack = weakref.ref(stack)
        self.settings = cfg.optimizer_settings()
        self.optimizer = optimizer
        self.fused = bool(optimizer.defaults.get("fused"))

    def check(self, stack: MaskedCNNStack, cfg: TrainConfig) -> None:
        if self._stack() is not stack:
            raise ValueError("optimizer was returned by fit_cnn() for a different stack")
        if cfg.optimizer_settings() != self.settings:
            raise ValueError(f"cannot continue a run under other optimiser settings ({self.settings} -> {cfg.optimizer_settings()})")


def _optimizer(stack: MaskedCNNStack, cfg: TrainConfig) -> torch.optim.Optimizer:
    """torch's Adam (or SGD) over the stack, fused where this build and device have it."""
    params = list(stack.parameters())
    kw: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    cls: Any = torch.optim.SGD
    if cfg.optimizer == "adam":
        cls, kw = torch.optim.Adam, {**kw, "betas": ADAM_BETAS, "eps": ADAM_EPS}
    try:
        return cls(params, fused=True, **kw)
    except (RuntimeError, ValueError):  # no fused kernel for this device / dtype
        return cls(params, foreach=True, **kw)


def _check_data(stack: MaskedCNNStack, x: torch.Tensor, y: torch.Tensor, loss: str) -> None:
    if loss not in ("ce", "bce"):
        raise ValueError(f"loss must be 'ce' or 'bce', got {loss!r}")
    want = tuple(stack.in_shape)
    if x.dim() != 4 or tuple(x.shape[1:]) != want:
        raise ValueError(f"x must be (N, {', '.join(map(str, want))}) images shared by the stack's models, got {tuple(x.shape)}")
    O = int(stack.weights[-1].shape[1])
    if y.shape[0] != x.shape[0] or (loss == "ce" and y.dim() != 1) or (loss == "bce" and tuple(y.shape[1:]) != (O,)):
        raise ValueError(f"y must be ({x.shape[0]},) class ids for 'ce' or ({x.shape[0]}, {O}) for 'bce', got {tuple(y.shape)}")
    dev = stack.weights[0].device
    if x.device != dev or y.device != dev:
        raise ValueError(f"data must be on the stack's device {dev}, got x on {x.device} and y on {y.device}")
    if loss == "ce" and y.numel() and (int(y.min()) < 0 or int(y.max()) >= O):
        raise ValueError(f"class ids must lie in [0, {O}), got {int(y.min())}..{int(y.max())}")


def fit_cnn(stack: MaskedCNNStack, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, epochs: range, loss: str = "ce",
            optimizer: CNNFitState | None = None, progress: bool | str = False) -> tuple[CNNFitState, torch.Tensor]:
    """Train a CNN stack in place by the specified step (`fci.train.maths`):
    per epoch e the minibatch order `epoch_perms(cfg.shuffle_seed, e)`, the loss
    summed over models (each model gets its own gradient), the gradient taken
    through the effective weights `W * M` (zero under a mask) and torch's
    Adam/SGD with `weight_decay` (raw weights under a mask are zero, so they
    stay zero). x: (N, C, H, W), y: (N,) class ids for 'ce' or (N, O) for
    'bce', shared by every model. Returns the state and the mean train loss per
    model and epoch, (M, len(epochs)), on CPU."""
    _check_data(stack, x, y, loss)
    if optimizer is None:
        state = CNNFitState(stack, cfg, _optimizer(stack, cfg))
    elif isinstance(optimizer, CNNFitState):
        optimizer.check(stack, cfg)
        state = optimizer
    else:
        raise ValueError(f"optimizer must be a state returned by fit_cnn() or None, got {type(optimizer).__name__}")
    with torch.no_grad():  # raw weights under a mask are zero (SPEC §2)
        for l in range(stack.n_layers):
            stack.weights[l].mul_(stack.weight_mask(l))
            stack.biases[l].mul_(stack.bias_mask(l))
    M, N, B = stack.n_models, x.shape[0], cfg.batch_size
    perms = epoch_perms(cfg.shuffle_seed, epochs, N, x.device)
    losses = torch.zeros(M, len(epochs))
    n_batches = (N + B - 1) // B
    opt = state.optimizer
    it = range(perms.shape[0])
    if progress:
        it = tqdm(it, desc=progress if isinstance(progress, str) else "train", unit="epoch", leave=False)
    dtype = stack.weights[0].dtype
    work = step_flops(stack, B) if x.device.type == "cpu" else float("inf")
    with one_thread_unless(work), torch.enable_grad():
        for k in it:
            acc = torch.zeros(M, device=x.device)
            for s in range(0, N, B):
                idx = perms[k, s : s + B]
                yb = y[idx]
                yb = yb.unsqueeze(0).expand(M, *yb.shape)
                per_model = per_model_loss(stack(x[idx].to(dtype)), yb, loss)
                opt.zero_grad(set_to_none=True)
                per_model.sum().backward()
                opt.step()
                acc += per_model.detach()
            losses[:, k] = (acc / n_batches).cpu()
    return state, losses


def step_flops(stack: MaskedCNNStack, batch: int) -> float:
    """Multiply-adds x 2 of one forward/backward of the padded stack (about 6 B
    per weight use): what decides whether torch's threads pay off on a CPU."""
    h, w = stack.in_shape[1], stack.in_shape[2]
    uses = 0
    for l in range(stack.n_conv):
        uses += stack.weights[l].numel() * h * w
        if stack.pool:
            h, w = h // 2, w // 2
    return 6.0 * batch * (uses + stack.weights[-1].numel())


@torch.no_grad()
def evaluate_cnn(stack: MaskedCNNStack, x: torch.Tensor, y: torch.Tensor, loss: str = "ce", chunk: int = 512) -> dict[str, torch.Tensor]:
    """Accuracy (argmax for 'ce', mean over outputs of (logit > 0) == y for 'bce')
    and mean loss per model, each (M,) on CPU; the loss is reduced in float64, so
    it does not depend on the stack's other models."""
    _check_data(stack, x, y, loss)
    with one_thread_unless(step_flops(stack, chunk) / 3 if x.device.type == "cpu" else float("inf")):
        return _evaluate(stack, x, y, loss, chunk)


def _evaluate(stack: MaskedCNNStack, x: torch.Tensor, y: torch.Tensor, loss: str, chunk: int) -> dict[str, torch.Tensor]:
    M, N = stack.n_models, x.shape[0]
    correct = torch.zeros(M, dtype=torch.float64, device=x.device)
    total = torch.zeros(M, dtype=torch.float64, device=x.device)
    for s in range(0, N, chunk):
        logits = stack(x[s : s + chunk].to(stack.weights[0].dtype))  # (M, B, O)
        yb = y[s : s + chunk].unsqueeze(0).expand(M, *y[s : s + chunk].shape)
        if loss == "ce":
            terms = F.cross_entropy(logits.flatten(0, 1), yb.flatten().long(), reduction="none").view(M, -1)
            total += terms.double().sum(1)
            correct += (logits.argmax(2) == yb).double().sum(1)
        else:
            terms = F.binary_cross_entropy_with_logits(logits, yb.to(logits.dtype), reduction="none")
            total += terms.double().mean(2).sum(1)
            correct += ((logits > 0) == (yb > 0.5)).double().mean(2).sum(1)
    return {"accuracy": (correct / N).float().cpu(), "loss": (total / N).float().cpu()}
