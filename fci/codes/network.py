"""The networks the readers accept, in one form: a stack of dense layers with a named
elementwise activation after each hidden layer (SPEC §5, *What the readers accept*).

`read_network(obj, activation=None)` turns what a researcher brings into a `Network`,
or refuses it in one line saying what was given and what is accepted:

- fci's `MaskedMLP` of any depth (ReLU; the masks applied);
- a torch ``nn.Sequential`` of ``nn.Linear`` layers with elementwise activations
  between them (``ReLU``, ``LeakyReLU``, ``Tanh``, ``Sigmoid``, ``GELU``, ``SiLU``,
  ``ELU``, ``Softplus``; ``Identity``, ``Dropout`` and ``Flatten`` of a 2-d input are
  skipped), nested Sequentials flattened;
- a weight list ``(W1, b1, W2, b2, ..., WL, bL)`` (torch layout, ``W`` of shape
  ``(out, in)``) whose shapes chain, with the hidden activation stated by
  ``activation=`` (default ``"relu"``: a list of a Tanh network's weights must say
  ``activation="tanh"``, since weights alone cannot tell).

Everything else (convolutions, attention, a custom ``forward`` fci cannot see
through, weights whose shapes do not chain) raises ``ValueError``. The output of the
last layer is read as logits: output ``o`` is 1 where its logit is > 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.special import erf, expit

__all__ = ["Network", "read_network", "ACTIVATIONS", "ACCEPTED"]

#: What the readers accept, for the one-line refusals.
ACCEPTED = ("a MaskedMLP, an nn.Sequential of nn.Linear layers with elementwise activations, "
            "or a (W1, b1, ..., WL, bL) weight list with activation= stated")


def _gelu(z: np.ndarray) -> np.ndarray:
    return 0.5 * z * (1.0 + erf(z / np.sqrt(2.0)))


#: Elementwise activations by name (numpy, float64).
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "sigmoid": expit,
    "gelu": _gelu,
    "silu": lambda z: z * expit(z),
    "softplus": lambda z: np.logaddexp(0.0, z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
    "identity": lambda z: z,
}


def _leaky(slope: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda z: np.where(z > 0, z, slope * z)


@dataclass(frozen=True)
class Network:
    """Dense layers ``[(W, b), ...]`` (``W``: (out, in), float64, masks applied) and the
    activation after each hidden layer (``activations[l]`` follows layer ``l``; none
    after the last). ``source`` says what it was read from, for messages."""

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    activations: tuple[str, ...]
    source: str = "weights"

    @property
    def n_in(self) -> int:
        return self.layers[0][0].shape[1]

    @property
    def n_out(self) -> int:
        return self.layers[-1][0].shape[0]

    @property
    def depth(self) -> int:
        """The number of hidden layers."""
        return len(self.layers) - 1

    @property
    def hidden(self) -> tuple[int, ...]:
        return tuple(W.shape[0] for W, _ in self.layers[:-1])

    def activation(self, l: int) -> Callable[[np.ndarray], np.ndarray]:
        name = self.activations[l]
        if name.startswith("leaky_relu:"):
            return _leaky(float(name.split(":", 1)[1]))
        return ACTIVATIONS[name]

    def logits(self, X: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """X (N, n) -> (N, O) float64 logits, evaluated in chunks of rows."""
        X = np.asarray(X)
        out = np.empty((X.shape[0], self.n_out))
        for s in range(0, X.shape[0], chunk):
            h = X[s: s + chunk].astype(np.float64)
            for l, (W, b) in enumerate(self.layers):
                h = h @ W.T + b
                if l < self.depth:
                    h = self.activation(l)(h)
            out[s: s + chunk] = h
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """X (N, n) -> (N, O) bool: logit > 0."""
        return self.logits(X) > 0

    def is_relu_shallow(self) -> bool:
        return self.depth == 1 and self.activations == ("relu",)

    def shallow(self, reader: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(W1, b1, W2, b2) of a one-hidden-layer ReLU network; ValueError naming `reader` otherwise."""
        if self.depth != 1:
            raise ValueError(f"{reader} reads one hidden layer; {self.source} has {self.depth} hidden layers")
        if self.activations != ("relu",):
            raise ValueError(f"{reader} reads ReLU networks; {self.source} uses {self.activations[0]}")
        (W1, b1), (W2, b2) = self.layers
        return W1, b1, W2, b2

    def __repr__(self) -> str:
        sizes = " → ".join(str(s) for s in (self.n_in, *self.hidden, self.n_out))
        return f"Network({sizes}, {'/'.join(self.activations) or 'linear'}, from {self.source})"


def _array(a: Any, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    try:
        out = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array, got {type(a).__name__}") from None
    if not np.isfinite(out).all():
        raise ValueError(f"{name} holds non-finite values")
    return out


def _check_chain(layers: Sequence[tuple[np.ndarray, np.ndarray]], source: str) -> None:
    for l, (W, b) in enumerate(layers):
        if W.ndim != 2:
            raise ValueError(f"{source}: W{l + 1} must be 2-d (out, in), got shape {W.shape}; accepted: {ACCEPTED}")
        if b.shape != (W.shape[0],):
            raise ValueError(f"{source}: b{l + 1} must have shape ({W.shape[0]},) to match W{l + 1} {W.shape}, got {b.shape}")
        if l and W.shape[1] != layers[l - 1][0].shape[0]:
            raise ValueError(f"{source}: the shapes do not chain: W{l} is {layers[l - 1][0].shape}, W{l + 1} is {W.shape} "
                             f"(W{l + 1} must take {layers[l - 1][0].shape[0]} inputs)")


_MODULE_ACTIVATIONS = {
    torch.nn.ReLU: "relu", torch.nn.Tanh: "tanh", torch.nn.Sigmoid: "sigmoid", torch.nn.GELU: "gelu",
    torch.nn.SiLU: "silu", torch.nn.Softplus: "softplus", torch.nn.ELU: "elu",
}
_SKIPPED = (torch.nn.Identity, torch.nn.Dropout, torch.nn.Flatten)


def _activation_name(mod: torch.nn.Module) -> str | None:
    if isinstance(mod, torch.nn.LeakyReLU):
        return f"leaky_relu:{mod.negative_slope}"
    if isinstance(mod, torch.nn.GELU) and mod.approximate != "none":
        return None
    if isinstance(mod, torch.nn.Softplus) and (mod.beta != 1 or mod.threshold != 20):
        return None
    if isinstance(mod, torch.nn.ELU) and mod.alpha != 1.0:
        return None
    return _MODULE_ACTIVATIONS.get(type(mod))


def _flatten(seq: torch.nn.Sequential) -> list[torch.nn.Module]:
    out: list[torch.nn.Module] = []
    for m in seq:
        out.extend(_flatten(m) if isinstance(m, torch.nn.Sequential) else [m])
    return out


def _from_sequential(seq: torch.nn.Sequential) -> Network:
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    acts: list[str] = []
    for m in _flatten(seq):
        if isinstance(m, _SKIPPED):
            continue
        if isinstance(m, torch.nn.Linear):
            if len(layers) > len(acts):  # two linear layers in a row: one linear map
                raise ValueError("nn.Sequential has two nn.Linear layers with no activation between them; "
                                 f"accepted: {ACCEPTED}")
            b = m.bias if m.bias is not None else torch.zeros(m.out_features)
            layers.append((_array(m.weight, "weight"), _array(b, "bias")))
            continue
        name = _activation_name(m)
        if name is None:
            raise ValueError(f"nn.Sequential holds {type(m).__name__}, which fci cannot read; accepted: {ACCEPTED}")
        if len(layers) != len(acts) + 1:
            raise ValueError(f"nn.Sequential has {type(m).__name__} where a linear layer must come first; "
                             f"accepted: {ACCEPTED}")
        acts.append(name)
    if not layers:
        raise ValueError(f"nn.Sequential holds no nn.Linear layer; accepted: {ACCEPTED}")
    if len(acts) == len(layers):
        raise ValueError(f"nn.Sequential ends with an activation ({acts[-1]}); fci reads the last linear layer's "
                         "outputs as logits (output 1 where the logit is > 0), so end with nn.Linear")
    _check_chain(layers, "nn.Sequential")
    return Network(tuple(layers), tuple(acts), source="nn.Sequential")


def _check_activation(activation: str) -> str:
    if activation in ACTIVATIONS or (activation.startswith("leaky_relu:") and _is_float(activation.split(":", 1)[1])):
        return activation
    raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)} or 'leaky_relu:<slope>', got {activation!r}")


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def read_network(obj: Any, activation: str | None = None) -> Network:
    """`obj` as a `Network`, or ValueError in one line (see the module's docstring).

    ``activation`` names the hidden activation of a weight list (default ``"relu"``);
    for a model or module it must be None or agree with what the model uses."""
    if isinstance(obj, Network):
        net = obj
    elif hasattr(obj, "effective_weights"):
        ws = list(obj.effective_weights())
        if any(_array(W, "W").ndim != 2 for W, _ in ws):
            raise ValueError(f"{type(obj).__name__} is convolutional; the readers read dense layers ({ACCEPTED})")
        layers = tuple((_array(W, f"W{l + 1}"), _array(b, f"b{l + 1}")) for l, (W, b) in enumerate(ws))
        _check_chain(layers, type(obj).__name__)
        net = Network(layers, ("relu",) * (len(layers) - 1), source=type(obj).__name__)
    elif isinstance(obj, torch.nn.Sequential):
        net = _from_sequential(obj)
    elif isinstance(obj, torch.nn.Linear):
        raise ValueError(f"a single nn.Linear has no hidden layer; accepted: {ACCEPTED}")
    elif isinstance(obj, torch.nn.Module):
        raise ValueError(f"{type(obj).__name__} is a module with its own forward(), which fci cannot see through; "
                         f"accepted: {ACCEPTED}")
    elif isinstance(obj, (tuple, list)):
        if len(obj) < 4 or len(obj) % 2:
            raise ValueError(f"a weight tuple or list must be (W1, b1, ..., WL, bL) with at least two layers, got {len(obj)} "
                             f"items; accepted: {ACCEPTED}")
        act = _check_activation(activation or "relu")
        layers = tuple((_array(obj[2 * l], f"W{l + 1}"), _array(obj[2 * l + 1], f"b{l + 1}")) for l in range(len(obj) // 2))
        _check_chain(layers, "the weight list")
        return Network(layers, (act,) * (len(layers) - 1), source="a weight list")
    else:
        raise ValueError(f"cannot read {type(obj).__name__}; accepted: {ACCEPTED}")
    if activation is not None and set(net.activations) != {_check_activation(activation)}:
        raise ValueError(f"activation={activation!r} was given, but {net.source} uses {'/'.join(sorted(set(net.activations)))}")
    return net
