"""Training backends, registered by name.

Each backend trains a `MaskedMLPStack` by the specified step (`fci.train.maths`):

- ``kernel``: fci's C kernel (`fci/_fitkernel.c`), CPU float32; each model start
  to finish in a tight loop at its own sizes, models spread over worker threads.
- ``torch``: a hand-written forward/backward over flat buffers and torch's fused
  optimiser step, any device (the GPU path; on a CPU, width-sorted slices on
  worker threads).
- ``reference``: autograd through `MaskedMLPStack.forward` and torch.optim; the
  plainest statement of the step, which the fast backends are checked against.

``auto`` is a pure function of the machine and the stack: on a CPU the kernel
when it can be built and can train the stack (a compiler is present, float32,
at most its maximum depth), else ``torch``; on a GPU ``torch``. It never
measures anything. A backend asked for by name that cannot train the stack
raises `BackendUnavailable` saying why.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import torch

from fci.model import MaskedMLPStack
from fci.train.config import TrainConfig

__all__ = ["Backend", "FitState", "BackendUnavailable", "register", "get", "names", "resolve", "auto_backend"]


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


_REGISTRY: dict[str, Callable[[], Backend]] = {}
_INSTANCES: dict[str, Backend] = {}


def register(name: str, factory: Callable[[], Backend]) -> None:
    """Register a backend under `name` (refuses a duplicate)."""
    if name in _REGISTRY or name == "auto":
        raise ValueError(f"a backend named {name!r} is already registered")
    _REGISTRY[name] = factory


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> Backend:
    """The backend registered under `name` (one shared instance)."""
    if name not in _REGISTRY:
        raise ValueError(f"backend must be 'auto' or one of {names()}, got {name!r}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _REGISTRY[name]()
    return _INSTANCES[name]


#: Preference order of `auto` per device type.
_AUTO_ORDER = {"cpu": ("kernel", "torch", "reference")}
_AUTO_OTHER = ("torch", "reference")


def auto_backend(stack: MaskedMLPStack, cfg: TrainConfig, loss: str = "bce") -> Backend:
    """The first backend of the device's preference order that can train the stack."""
    order = _AUTO_ORDER.get(stack.weights[0].device.type, _AUTO_OTHER)
    for name in order:
        if name in _REGISTRY and get(name).why_not(stack, cfg, loss) is None:
            return get(name)
    raise BackendUnavailable("no backend can train this stack: "
                             + "; ".join(f"{n}: {get(n).why_not(stack, cfg, loss)}" for n in order if n in _REGISTRY))


def resolve(backend: "str | Backend", stack: MaskedMLPStack, cfg: TrainConfig, loss: str) -> Backend:
    """The backend `fit` uses: 'auto', a registered name or a Backend instance;
    raises BackendUnavailable when the one named cannot train the stack."""
    if isinstance(backend, Backend):
        b = backend
    elif backend == "auto":
        return auto_backend(stack, cfg, loss)
    elif isinstance(backend, str):
        b = get(backend)
    else:
        raise ValueError(f"backend must be 'auto', one of {names()} or a Backend, got {backend!r}")
    why = b.why_not(stack, cfg, loss)
    if why is not None:
        raise BackendUnavailable(f"backend {b.name!r} cannot train this stack: {why}")
    return b


def _register_builtins() -> None:
    from fci.train.backends.kernel import KernelBackend
    from fci.train.backends.reference import ReferenceBackend
    from fci.train.backends.flat import TorchBackend

    register("kernel", KernelBackend)
    register("torch", TorchBackend)
    register("reference", ReferenceBackend)


_register_builtins()
