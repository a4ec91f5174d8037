"""The reference backend: the specified step (`fci.train.maths`) through autograd."""

from __future__ import annotations

import torch

from fci.models.mlp import MaskedMLPStack
from fci.progress import bar as tqdm
from fci.train.backends.base import Backend, FitState
from fci.train.config import TrainConfig
from fci.train.maths import make_optimizer, one_thread_unless, per_model_loss, step_flops


class ReferenceState(FitState):
    """A torch optimiser over the stack's own parameters. `external`: built by
    the caller (its settings are its own; fit only steps it)."""

    def __init__(self, backend, stack, cfg, workers, optimizer: torch.optim.Optimizer | None = None):
        super().__init__(backend, stack, cfg, workers)
        self.external = optimizer is not None
        self.optimizer = optimizer if optimizer is not None else make_optimizer(stack.parameters(), cfg)

    def check(self, stack, cfg, backend) -> None:
        if self.external:
            cfg = TrainConfig(**{**cfg.to_dict(), **{k: v for k, v in self.settings.items() if k in ("optimizer", "lr", "weight_decay")}})
        super().check(stack, cfg, backend)


class ReferenceBackend(Backend):
    name = "reference"

    def why_not(self, stack, cfg, loss) -> str | None:
        return None

    def start(self, stack, cfg, loss, workers) -> ReferenceState:
        return ReferenceState(self, stack, cfg, workers)

    def wrap(self, stack: MaskedMLPStack, cfg: TrainConfig, optimizer: torch.optim.Optimizer, workers: int) -> ReferenceState:
        return ReferenceState(self, stack, cfg, workers, optimizer)

    def describe(self, state=None) -> dict:
        return {}

    @torch.no_grad()
    def _hold_masks(self, state: ReferenceState, stack: MaskedMLPStack) -> None:
        """Raw weights under a mask are zero, and so are their moments (masks may have changed)."""
        masks = {id(p): m for ps, ms in ((stack.weights, [stack.weight_mask(l) for l in range(stack.n_layers)]),
                                          (stack.biases, [stack.bias_mask(l) for l in range(stack.n_layers)]))
                 for p, m in zip(ps, ms)}
        for p in stack.parameters():
            if id(p) in masks:
                p.mul_(masks[id(p)])
                for t in state.optimizer.state.get(p, {}).values():
                    if torch.is_tensor(t) and t.shape == p.shape:
                        t.mul_(masks[id(p)])

    def run(self, state, stack, x, y, cfg, perms, loss, workers, progress) -> torch.Tensor:
        M, N = x.shape[:2]
        B = cfg.batch_size
        n_batches = (N + B - 1) // B
        dtype = stack.weights[0].dtype
        losses = torch.zeros(M, perms.shape[0], device=x.device)
        self._hold_masks(state, stack)
        opt = state.optimizer
        it = range(perms.shape[0])
        if progress:
            it = tqdm(it, desc=progress, unit="epoch", leave=False)
        work = step_flops(stack, B) if x.device.type == "cpu" else float("inf")
        with one_thread_unless(work), torch.enable_grad():
            for k in it:
                perm = perms[k]
                acc = torch.zeros(M, device=x.device)
                for s in range(0, N, B):
                    idx = perm[s : s + B]
                    per_model = per_model_loss(stack(x[:, idx].to(dtype)), y[:, idx], loss)
                    opt.zero_grad(set_to_none=True)
                    per_model.sum().backward()
                    opt.step()
                    acc += per_model.detach()
                losses[:, k] = acc / n_batches
        return losses.cpu()
