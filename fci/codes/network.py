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

With ``whole=True`` (the functional readers, which only evaluate the network) it
also accepts a module with its own ``forward`` whose submodules are only
``nn.Linear`` layers and elementwise activations: a `ModuleNetwork`, evaluated
whole through that forward. Its first layer (whose weights propose candidate terms)
is the one ``nn.Linear`` that receives the module's input; fci finds it by running
the forward once on probe inputs, and refuses the module when that is ambiguous,
when the forward mixes the rows of a batch, or when it is not deterministic.

Everything else (convolutions, attention, recurrence, normalisation, weights whose
shapes do not chain) raises ``ValueError``. The output of the last layer is read as
logits: output ``o`` is 1 where its logit is > 0.

What cannot be detected: a weight list's activation (the list of a Tanh network
read with the default ``"relu"`` computes another function, so state it), and
layers of a deeper network glued into a shorter list whose shapes chain by accident
(``(W1, b1, W3, b3)`` where ``W3`` happens to take ``W1``'s outputs): such a list is a
valid network, just not the one trained. Pass the module itself where you can: it
is always read as what it computes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence, Union, overload

import numpy as np
import torch
from scipy.special import erf, expit

__all__ = ["Network", "ModuleNetwork", "Readable", "read_network", "ACTIVATIONS", "ACCEPTED"]

log = logging.getLogger(__name__)

#: What the readers accept, for the one-line refusals.
ACCEPTED = ("a MaskedMLP, an nn.Sequential of nn.Linear layers with elementwise activations, "
            "or a (W1, b1, ..., WL, bL) weight list with activation= stated")
#: What the functional readers accept besides (``whole=True``).
ACCEPTED_WHOLE = ("a MaskedMLP, an nn.Sequential of nn.Linear layers with elementwise activations, a module whose "
                  "forward() uses only nn.Linear layers and elementwise activations, "
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


#: Where a non-monotone activation takes its minimum (each falls to it and rises
#: after); the others are non-decreasing. Interval bounds use it.
VALLEYS = {"gelu": -0.7517915241, "silu": -1.2784645428}


def activation_valley(name: str) -> float | None:
    """The minimum's location of a non-monotone activation ``name`` (single valley),
    None for a non-decreasing one."""
    if name.startswith("leaky_relu:"):
        return 0.0 if float(name.split(":", 1)[1]) < 0 else None
    return VALLEYS.get(name)


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

    @property
    def first_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """(W1, b1) of the layer that reads the inputs: (H, n), (H,)."""
        return self.layers[0]

    @property
    def warnings(self) -> tuple[str, ...]:
        """Doubts about how the network was read: none for layers fci sees."""
        return ()

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


class ModuleNetwork:
    """A torch module evaluated whole through its own ``forward`` (``read_network(...,
    whole=True)``): fci sees its first layer (``first_layer``, the one ``nn.Linear``
    receiving the inputs) but not how the rest is wired, so only readers that
    evaluate the network accept it. ``warnings`` hold doubts found while probing it."""

    def __init__(self, module: torch.nn.Module, first: torch.nn.Linear, n_out: int, warnings: tuple[str, ...] = ()):
        self.module = module
        b = first.bias if first.bias is not None else torch.zeros(first.out_features)
        self._first = (_array(first.weight, "weight"), _array(b, "bias"))
        self._n_out = n_out
        self.warnings = warnings
        self.source = type(module).__name__

    @property
    def n_in(self) -> int:
        return self._first[0].shape[1]

    @property
    def n_out(self) -> int:
        return self._n_out

    @property
    def first_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """(W1, b1) of the nn.Linear that receives the inputs: (H, n), (H,)."""
        return self._first

    def logits(self, X: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """X (N, n) -> (N, O) float64 logits: the module's forward in eval mode, no grad."""
        X = np.asarray(X)
        out = np.empty((X.shape[0], self.n_out))
        for s in range(0, X.shape[0], chunk):
            out[s: s + chunk] = _forward(self.module, X[s: s + chunk])
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """X (N, n) -> (N, O) bool: logit > 0."""
        return self.logits(X) > 0

    def __repr__(self) -> str:
        return f"ModuleNetwork({self.n_in} → … → {self.n_out}, evaluated through {self.source}.forward)"


#: What the readers read: dense layers fci sees, or a module it evaluates whole.
Readable = Union[Network, ModuleNetwork]


def _forward(module: torch.nn.Module, X: np.ndarray) -> np.ndarray:
    """The module's outputs on X (N, n) as float64 numpy, in eval mode (Dropout off),
    without gradients; each submodule's training flag is restored afterwards."""
    param = next(module.parameters())
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            y = module(torch.as_tensor(np.asarray(X), dtype=param.dtype, device=param.device))
    finally:
        for m, training in modes:
            m.training = training
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{type(module).__name__}.forward returned {type(y).__name__}; fci reads (N, O) logits")
    return y.detach().to(torch.float64).cpu().numpy()


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


#: Elementwise activation modules a module evaluated whole may hold (besides those above).
_ELEMENTWISE = (
    torch.nn.ReLU, torch.nn.ReLU6, torch.nn.LeakyReLU, torch.nn.PReLU, torch.nn.RReLU, torch.nn.ELU, torch.nn.SELU,
    torch.nn.CELU, torch.nn.GELU, torch.nn.SiLU, torch.nn.Mish, torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.Hardtanh,
    torch.nn.Hardsigmoid, torch.nn.Hardswish, torch.nn.Softplus, torch.nn.Softsign, torch.nn.Tanhshrink,
    torch.nn.Softshrink, torch.nn.Hardshrink, torch.nn.LogSigmoid, torch.nn.Threshold,
)
_PROBE_ROWS = 64


def _foreign(module: torch.nn.Module) -> torch.nn.Module | None:
    """The first submodule that is neither a container nor an nn.Linear, an elementwise
    activation or a skipped layer, or that holds parameters of its own outside them."""
    for m in module.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.PReLU)):
            continue
        if isinstance(m, _ELEMENTWISE + _SKIPPED):
            continue
        if any(True for _ in m.parameters(recurse=False)) or not any(True for _ in m.children()):
            return m
    return None


def _check_sequence(seq: torch.nn.Sequential) -> None:
    """What can be told of an nn.Sequential of Linear layers and elementwise
    activations before running it: it ends with a linear layer and its shapes chain."""
    mods = [m for m in _flatten(seq) if not isinstance(m, _SKIPPED)]
    if mods and isinstance(mods[-1], _ELEMENTWISE):
        raise ValueError(f"nn.Sequential ends with an activation ({type(mods[-1]).__name__}); fci reads the last linear "
                         "layer's outputs as logits (output 1 where the logit is > 0), so end with nn.Linear")
    linears = [m for m in mods if isinstance(m, torch.nn.Linear)]
    for l in range(1, len(linears)):
        if linears[l].in_features != linears[l - 1].out_features:
            raise ValueError(f"nn.Sequential: the shapes do not chain: layer {l} gives {linears[l - 1].out_features} "
                             f"outputs, layer {l + 1} takes {linears[l].in_features} inputs")


def _probe(module: torch.nn.Module, X: torch.Tensor, linears: list[torch.nn.Linear]) -> tuple[np.ndarray, list, list]:
    """The module's outputs on X, the nn.Linear layers called (in order) and those
    called with X itself."""
    called: list[torch.nn.Linear] = []
    given: list[torch.nn.Linear] = []

    def hook(mod: torch.nn.Module, inp: tuple, out: Any) -> None:
        called.append(mod)  # type: ignore[arg-type]
        if inp and isinstance(inp[0], torch.Tensor) and inp[0].shape == X.shape and torch.equal(inp[0], X):
            given.append(mod)  # type: ignore[arg-type]

    handles = [m.register_forward_hook(hook) for m in linears]
    try:
        y = _forward(module, X.numpy())
    finally:
        for h in handles:
            h.remove()
    return y, called, given


def _from_module(module: torch.nn.Module) -> ModuleNetwork:
    """A module with its own forward(), evaluated whole, or ValueError in one line."""
    name = type(module).__name__
    bad = _foreign(module)
    if bad is not None:
        raise ValueError(f"{name} holds {type(bad).__name__}, which fci cannot read; accepted: {ACCEPTED_WHOLE}")
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(f"{name} holds no nn.Linear layer; accepted: {ACCEPTED_WHOLE}")
    g = torch.Generator().manual_seed(0)
    runs, errors = [], []
    for w in sorted({m.in_features for m in linears}):
        X = (torch.rand((_PROBE_ROWS, w), generator=g) < 0.5).to(torch.float64)
        try:
            runs.append((w, X, *_probe(module, X, linears)))
        except Exception as e:  # probing: a width the forward does not take raises
            errors.append(str(e).splitlines()[0] if str(e) else type(e).__name__)
    if not runs:
        raise ValueError(f"{name}.forward() fails on (N, w) 0/1 inputs for every nn.Linear input width w "
                         f"({errors[-1]}); accepted: {ACCEPTED_WHOLE}")
    if len(runs) > 1:
        raise ValueError(f"{name}.forward() runs on inputs of widths {', '.join(str(r[0]) for r in runs)}; fci cannot tell "
                         "which is the network's input; pass an nn.Sequential or a weight list")
    n, X, y, called, given = runs[0]
    if y.ndim != 2 or y.shape[0] != _PROBE_ROWS:
        raise ValueError(f"{name}.forward() returns shape {tuple(y.shape)} for {_PROBE_ROWS} inputs; fci reads (N, O) logits")
    firsts = list(dict.fromkeys(m for m in called if m.in_features == n))
    if len(firsts) > 1:
        firsts = list(dict.fromkeys(given))
    if len(firsts) != 1:
        raise ValueError(f"{name} has {len(firsts) or 'no'} nn.Linear layers taking its {n} inputs; fci takes candidate "
                         "terms from one first layer; pass an nn.Sequential or a weight list")
    perm = torch.randperm(_PROBE_ROWS, generator=g)
    again = _forward(module, X.numpy())
    if not np.array_equal(again, y, equal_nan=True):
        raise ValueError(f"{name}.forward() is not deterministic in eval mode; fci reads a fixed function")
    shuffled, part = _forward(module, X[perm].numpy()), _forward(module, X[:5].numpy())
    if not (np.allclose(shuffled, y[perm.numpy()], rtol=1e-4, atol=1e-6) and np.allclose(part, y[:5], rtol=1e-4, atol=1e-6)):
        raise ValueError(f"{name}.forward() mixes the rows of a batch (an input's output changes with the other inputs, "
                         "as normalisation across the batch does); fci reads one input at a time")
    warnings: tuple[str, ...] = ()
    if ((y > 0) & (y < 1)).all():
        warnings = (f"{name}'s outputs all lie in (0, 1) on {_PROBE_ROWS} probe inputs: if its forward() ends with a "
                    "sigmoid or softmax, every output reads as 1; fci reads logits (output 1 where the logit is > 0)",)
        log.warning(warnings[0])
    return ModuleNetwork(module, firsts[0], int(y.shape[1]), warnings)


@overload
def read_network(obj: Any, activation: str | None = None, *, whole: Literal[False] = False) -> Network: ...


@overload
def read_network(obj: Any, activation: str | None = None, *, whole: bool) -> Readable: ...


def read_network(obj: Any, activation: str | None = None, *, whole: bool = False) -> Readable:
    """`obj` as a `Network`, or ValueError in one line (see the module's docstring).

    ``activation`` names the hidden activation of a weight list (default ``"relu"``);
    for a model or module it must be None or agree with what the model uses.
    ``whole=True`` (readers that only evaluate the network) also accepts a module
    with its own forward() built from nn.Linear layers and elementwise activations,
    returned as a `ModuleNetwork` evaluated through that forward."""
    if isinstance(obj, ModuleNetwork):
        if not whole:
            raise ValueError(f"{obj.source} is evaluated through its own forward(), whose layers fci cannot see; "
                             f"this reader needs the layers: {ACCEPTED}")
        if activation is not None:
            raise ValueError(f"activation= names a weight list's activation; {obj.source} is evaluated through its forward()")
        return obj
    if whole and isinstance(obj, torch.nn.Module) and not isinstance(obj, torch.nn.Linear) \
            and not hasattr(obj, "effective_weights"):
        bad = _foreign(obj)
        if bad is not None:
            what = type(obj).__name__ if bad is obj else f"{type(obj).__name__} holds {type(bad).__name__}"
            raise ValueError(f"{what}, which fci cannot read; accepted: {ACCEPTED_WHOLE}")
        if isinstance(obj, torch.nn.Sequential):
            _check_sequence(obj)
        try:
            return read_network(obj, activation)
        except ValueError:
            if activation is not None:
                raise
        return _from_module(obj)
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
        bad = _foreign(obj)
        if bad is not None and bad is not obj:
            raise ValueError(f"{type(obj).__name__} holds {type(bad).__name__}, which fci cannot read; accepted: {ACCEPTED}")
        hint = "" if bad is not None else " (decode_function and network_predictions evaluate it whole)"
        raise ValueError(f"{type(obj).__name__} is a module with its own forward(), which fci cannot see through; "
                         f"accepted: {ACCEPTED}{hint}")
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
