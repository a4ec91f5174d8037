"""Training backends, registered by name.

Each backend trains a `MaskedMLPStack` by the specified step (`fci.train.maths`):

- ``kernel``: fci's C kernel (`fci/train/backends/kernel/fitkernel.c`), CPU float32; each model start
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

from typing import Callable

from fci.models.mlp import MaskedMLPStack
from fci.registry import Registry
from fci.train.backends.base import Backend, BackendUnavailable, FitState
from fci.train.backends.kernel import KernelBackend
from fci.train.backends.reference import ReferenceBackend
from fci.train.backends.torch import TorchBackend
from fci.train.config import TrainConfig

__all__ = ["Backend", "FitState", "BackendUnavailable", "BACKENDS", "register", "get", "names", "resolve", "auto_backend",
           "KernelBackend", "ReferenceBackend", "TorchBackend"]

#: Backend factories by name ("auto" is reserved: it picks one of these).
BACKENDS: Registry[Callable[[], Backend]] = Registry("backend", reserved=("auto",))
_INSTANCES: dict[str, Backend] = {}


def register(name: str, factory: Callable[[], Backend]) -> None:
    """Register a backend under `name` (refuses a duplicate)."""
    BACKENDS.register(name, factory)


def names() -> list[str]:
    return BACKENDS.names()


def get(name: str) -> Backend:
    """The backend registered under `name` (one shared instance)."""
    factory = BACKENDS.get(name)
    if name not in _INSTANCES:
        _INSTANCES[name] = factory()
    return _INSTANCES[name]


#: Preference order of `auto` per device type.
_AUTO_ORDER = {"cpu": ("kernel", "torch", "reference")}
_AUTO_OTHER = ("torch", "reference")


def auto_backend(stack: MaskedMLPStack, cfg: TrainConfig, loss: str = "bce") -> Backend:
    """The first backend of the device's preference order that can train the stack."""
    order = _AUTO_ORDER.get(stack.weights[0].device.type, _AUTO_OTHER)
    for name in order:
        if name in BACKENDS and get(name).why_not(stack, cfg, loss) is None:
            return get(name)
    raise BackendUnavailable("no backend can train this stack: "
                             + "; ".join(f"{n}: {get(n).why_not(stack, cfg, loss)}" for n in order if n in BACKENDS))


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


register("kernel", KernelBackend)
register("torch", TorchBackend)
register("reference", ReferenceBackend)
