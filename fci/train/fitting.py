"""`fit`: train a stack in place through a backend; `evaluate`; `train_models`.

Every model trains inside a `MaskedMLPStack`. The stack's loss is the *sum* of
each model's own mean loss, so every model receives exactly the gradient it
would receive alone, and the optimiser (elementwise) updates it exactly as it
would alone. Minibatch order is a fixed function of `(TrainConfig.shuffle_seed,
epoch)`, shared by all models of a stack, so a model's training does not depend
on which stack it lands in.
"""

from __future__ import annotations

from typing import Sequence

import torch

from fci.models.base import resolve_device
from fci.models.mlp import MaskedMLP, MaskedMLPStack
from fci.train import backends as _backends
from fci.train.backends import Backend, FitState
from fci.train.backends.reference import ReferenceBackend
from fci.train.config import TrainConfig
from fci.train.maths import check_fit_inputs, epoch_perms, one_thread_unless, step_flops
from fci.train.provenance import provenance
from fci.train.results import ModelResult

__all__ = ["fit", "evaluate", "train_models", "default_workers"]


def default_workers(workers: int | None = None) -> int:
    """CPU worker threads: `workers`, or torch's intra-op thread count."""
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}")
    return max(1, workers or torch.get_num_threads())


def fit(
    stack: MaskedMLPStack,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    epochs: range,
    loss: str = "bce",
    optimizer: FitState | torch.optim.Optimizer | None = None,
    progress: bool | str = False,
    backend: str | Backend = "auto",
    workers: int | None = None,
) -> tuple[FitState, torch.Tensor]:
    """Train a stack in place over the given epoch indices, by the specified
    step (`fci.train.maths`).

    x: (M, N, n_in) on the stack's device (any dtype; 0/1 uint8 is fine);
    y: (M, N, O) for 'bce' or (M, N) class ids for 'ce'. `epochs` are absolute
    epoch indices (they pick the minibatch orders), so a run is continued by
    passing back the returned state as `optimizer`; the state refuses another
    stack, other optimiser settings or another backend. A torch optimiser built
    elsewhere over `stack.parameters()` is stepped through autograd
    (`reference`). `backend`: 'auto' (the kernel on a CPU where it builds, else
    'torch'; a continued run keeps its backend), 'kernel', 'torch',
    'reference', or a Backend instance; one named that cannot train this stack
    raises BackendUnavailable saying why. `workers`: CPU threads (default
    torch's thread count); results do not depend on it.
    Returns the run's state and the mean train loss per model and epoch,
    (M, len(epochs)), on CPU.
    """
    check_fit_inputs(stack, x, y, loss)
    n_workers = default_workers(workers)
    if isinstance(optimizer, torch.optim.Optimizer):
        if backend not in ("auto", "reference"):
            raise ValueError(f"a torch optimizer trains through the 'reference' backend, not {backend!r}")
        ref = _backends.get("reference")
        assert isinstance(ref, ReferenceBackend)  # registered under that name by fci.train.backends
        state: FitState = ref.wrap(stack, cfg, optimizer, n_workers)
    elif isinstance(optimizer, FitState):
        if isinstance(backend, Backend) and backend is not optimizer.backend:
            raise ValueError(f"optimizer comes from another {optimizer.backend.name!r} backend instance "
                             "(another build or setting); continue with backend='auto' or that instance")
        optimizer.check(stack, cfg, backend if isinstance(backend, str) else backend.name)
        state = optimizer
    elif optimizer is None:
        chosen = _backends.resolve(backend, stack, cfg, loss)
        state = chosen.start(stack, cfg, loss, n_workers)
        state.provenance = provenance(chosen, stack.weights[0].device, n_workers, state)
    else:
        raise ValueError(f"optimizer must be a state returned by fit(), a torch optimizer or None, got {type(optimizer).__name__}")
    if not state.provenance:
        state.provenance = provenance(state.backend, stack.weights[0].device, n_workers, state)
    perms = epoch_perms(cfg.shuffle_seed, epochs, x.shape[1], x.device)
    label = (progress if isinstance(progress, str) else "train") if progress else None
    losses = state.backend.run(state, stack, x, y, cfg, perms, loss, n_workers, label)
    return state, losses


@torch.no_grad()
def evaluate(stack: MaskedMLPStack, x: torch.Tensor, y: torch.Tensor, loss: str = "bce", chunk: int | None = None) -> dict[str, torch.Tensor]:
    """Accuracy (mean over samples and outputs of (logit > 0) == y, or argmax for
    'ce'), exact match (all outputs right) and mean loss per model; each (M,) on CPU.
    `chunk` samples per forward pass (default: about 2**24 hidden activations)."""
    if chunk is None:
        width = max(w.shape[1] for w in stack.weights)
        chunk = max(256, (1 << 24) // max(1, stack.n_models * width))
    with one_thread_unless(step_flops(stack, chunk) / 3 if x.device.type == "cpu" else float("inf")):
        return _evaluate(stack, x, y, loss, chunk)


def _summed_loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """(M,) each model's loss summed over the batch (mean over outputs for BCE),
    computed from the logits in float64 and rounded once by the caller, so that its
    value does not depend on how many models share the stack: in float32 both the
    reduction order over (M, B, O) and the vectorised-or-scalar path an element's
    exp/log1p takes change with M, and a resumed or sharded study would then
    differ from an uninterrupted one in the last bit."""
    logits = logits.double()
    if loss == "bce":
        terms = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none")
        return terms.sum((1, 2)) / terms.shape[2]
    M, B, O = logits.shape
    terms = torch.nn.functional.cross_entropy(logits.reshape(M * B, O), y.reshape(M * B).long(),
                                              reduction="none").view(M, B)
    return terms.sum(1)


def _logits64(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    """The stack's forward pass in float64: (M, B, n_in) -> (M, B, O)."""
    h = x
    for l, (w, b) in enumerate(layers):
        h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if l < len(layers) - 1:
            h = torch.relu(h)
    return h


def _evaluate(stack, x, y, loss, chunk) -> dict[str, torch.Tensor]:
    # In float64: a float32 forward pass sums each model's hidden units in an order set
    # by the stack's padded widths, so a model's logits (and its test loss) would change
    # in the last bits with its stack mates; in float64 those differences lie far below
    # the float32 rounding of the reported values.
    layers = [((w * stack.weight_mask(l)).double(), (b * stack.bias_mask(l)).double())
              for l, (w, b) in enumerate(zip(stack.weights, stack.biases))]
    M, N = x.shape[:2]
    correct = torch.zeros(M, device=x.device)
    exact = torch.zeros(M, device=x.device)
    total_loss = torch.zeros(M, device=x.device, dtype=torch.float64)
    for s in range(0, N, chunk):
        xb, yb = x[:, s : s + chunk].double(), y[:, s : s + chunk]
        logits = _logits64(layers, xb)
        total_loss += _summed_loss(logits, yb, loss)
        if loss == "bce":
            right = (logits > 0) == (yb > 0.5)
            correct += right.float().mean(2).sum(1)
            exact += right.all(2).float().sum(1)
        else:
            right = (logits.argmax(2) == yb.long()).float()
            correct += right.sum(1)
            exact += right.sum(1)
    return {"accuracy": (correct / N).cpu(), "exact_match": (exact / N).cpu(), "loss": (total_loss / N).float().cpu()}


def train_models(
    models: Sequence[MaskedMLP],
    data: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
    cfg: TrainConfig,
    epochs: int | range,
    loss: str = "bce",
    device: str | torch.device = "auto",
    progress: bool | str = True,
    backend: str | Backend = "auto",
    workers: int | None = None,
) -> list[ModelResult]:
    """Train independent models (same n_in, n_out, depth; same sample counts) as
    one stack. data[i] = (x_train, y_train, x_test, y_test) for model i.
    `progress`: a tqdm bar over model-epochs (a string labels it)."""
    dev = resolve_device(device)
    epochs = range(epochs) if isinstance(epochs, int) else epochs
    stack = MaskedMLPStack.from_models(list(models)).to(dev)
    xtr, ytr, xte, yte = (torch.stack([d[j] for d in data]).to(dev) for j in range(4))
    state, losses = fit(stack, xtr, ytr, cfg, epochs, loss=loss, progress=progress, backend=backend, workers=workers)
    return results(stack, (xtr, ytr, xte, yte), losses, loss, state.provenance)


def results(stack, data, losses, loss, prov: dict | None = None) -> list[ModelResult]:
    """One ModelResult per model of a trained stack (measured on its train and test data)."""
    xtr, ytr, xte, yte = data
    tr = evaluate(stack, xtr, ytr, loss)
    te = evaluate(stack, xte, yte, loss)
    return [
        ModelResult(
            model=m,
            train_accuracy=float(tr["accuracy"][i]),
            test_accuracy=float(te["accuracy"][i]),
            test_exact_match=float(te["exact_match"][i]),
            test_loss=float(te["loss"][i]),
            train_loss=[float(v) for v in losses[i]],
            provenance=dict(prov or {}),
        )
        for i, m in enumerate(stack.to_models())
    ]
