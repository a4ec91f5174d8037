"""What every training backend is: the `Backend` protocol, the `FitState` a run
returns, and `BackendUnavailable`."""

from __future__ import annotations

import weakref
from typing import Any

import torch

from fci.models.mlp import MaskedMLPStack
from fci.train.config import TrainConfig

__all__ = ["Backend", "FitState", "BackendUnavailable"]


class BackendUnavailable(RuntimeError):
    """A backend asked for by name cannot train this stack here (the message says why)."""


class FitState:
    """What `fit` returns: one run's optimiser state, in its backend's own layout.
    Passing it back to `fit` continues the run; it refuses a different stack,
    other optimiser settings or another backend."""

    def __init__(self, backend: "Backend", stack: MaskedMLPStack, cfg: TrainConfig, workers: int):
        self.backend = backend
        self._stack = weakref.ref(stack)
        self.shapes = [tuple(w.shape) for w in stack.weights]
        self.widths = stack.widths.detach().cpu().clone()
        self.settings = cfg.optimizer_settings()
        self.workers = workers
        self.provenance: dict[str, Any] = {}

    def check(self, stack: MaskedMLPStack, cfg: TrainConfig, backend: str) -> None:
        """Raise ValueError unless this state can continue on (stack, cfg, backend)."""
        if self._stack() is not stack or [tuple(w.shape) for w in stack.weights] != self.shapes \
                or not torch.equal(stack.widths.detach().cpu(), self.widths):
            raise ValueError("optimizer was returned by fit() for a different stack")
        if backend not in ("auto", self.backend.name):
            raise ValueError(f"optimizer comes from the {self.backend.name!r} backend; it cannot continue on {backend!r}")
        settings = cfg.optimizer_settings()
        if settings != self.settings:
            diff = ", ".join(f"{k} {self.settings.get(k)!r} -> {settings.get(k)!r}"
                             for k in sorted(set(settings) | set(self.settings)) if settings.get(k) != self.settings.get(k))
            raise ValueError(f"cannot continue a run under other optimiser settings ({diff}); start a new fit")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend.name!r}, models={self.shapes[0][0]}, {self.settings})"


class Backend:
    """A way to train stacks. Subclasses set `name` and implement `why_not`, `start` and `run`."""

    name = "?"

    def why_not(self, stack: MaskedMLPStack, cfg: TrainConfig, loss: str) -> str | None:
        """None when this backend can train the stack here; else the reason, one line."""
        raise NotImplementedError

    def start(self, stack: MaskedMLPStack, cfg: TrainConfig, loss: str, workers: int) -> FitState:
        """A fresh run's state (optimiser moments at zero, step 0)."""
        raise NotImplementedError

    def run(self, state: FitState, stack: MaskedMLPStack, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
            perms: torch.Tensor, loss: str, workers: int, progress: str | None) -> torch.Tensor:
        """Train over the epochs whose minibatch orders are `perms` (E, N);
        -> mean train loss per model and epoch, (M, E) on CPU."""
        raise NotImplementedError

    def describe(self, state: FitState | None = None) -> dict[str, Any]:
        """Provenance: what built this backend (versions, build ids), for the run `state`."""
        return {}

    def __repr__(self) -> str:
        return f"<fci backend {self.name!r}>"
