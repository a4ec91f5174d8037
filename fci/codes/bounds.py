"""Sound bounds on a network's output over cubes of the Boolean hypercube, from the weights
alone (SPEC §5, *Certified reading*).

A **cube** is a partial assignment of the ``n`` inputs: an int8 row holding 1 (the input is
1), 0 (it is 0) or ``FREE`` (-1: it ranges over {0, 1}). A conjunction of literals is a cube,
and so is a single input (no free entry). :class:`OutputBounds` gives, for a batch of cubes,
numbers ``lb`` with ``lb <= sign * logit[output](x)`` for every input ``x`` of the cube: the
certified reader keeps a term where the lower bound of the logit is > 0 (the output is 1
wherever the term holds) and a false term where the lower bound of the negated logit is
>= 0 (the output is 0 there).

How the bounds are made:

- **Intervals through every layer** (any depth, any activation that
  :mod:`fci.codes.network` reads): each pre-activation's least and most value over the box
  (``W⁺ lo + W⁻ hi + b``), then the activation's exact range over that interval. Monotone
  activations (ReLU, leaky ReLU with a slope >= 0, sigmoid, tanh, softplus, ELU, identity)
  map the ends; GELU and SiLU fall then rise, so their least value over ``[l, u]`` is at
  their minimiser ``z*`` when ``l <= z* <= u`` (GELU ``z* = -0.7518``, SiLU ``z* = -1.2785``,
  computed to machine precision); a leaky ReLU with a negative slope has its least value at 0.
- **The last hidden layer, when it is piecewise linear** (ReLU, leaky ReLU, identity), is
  bounded more tightly over the box of its inputs (the cube itself for one hidden layer).
  Write the logit as ``c + Σ_i a_i relu(z_i) + (linear)``. A neuron with ``a_i < 0`` (it
  inhibits the output) contributes ``min(0, a_i z_i)``: the least value over the box is the
  least, over the choices "off" (0) or "on" (``a_i z_i``) of every undecided inhibitor, of
  a *convex* function, so enumerating the choices loses nothing (at most ``2**patterns``
  choices of the most damaging inhibitors; the rest take the chord of their interval). A
  neuron with ``a_i > 0`` contributes at least ``a_i λ_i z_i`` for any ``λ_i ∈ [0, 1]``;
  the slopes are chosen per choice by exact coordinate ascent on the resulting bound
  (every slope gives a valid bound). The minimum of a linear function over a box is exact.
  The larger of this and the interval bound is returned.

Both are sound for every input of the cube; on a cube with no free input the interval
bound is the network's own logit (up to float rounding, which :attr:`OutputBounds.tol`
absorbs), so splitting cubes decides every input in the end.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fci.codes.network import Network

__all__ = ["FREE", "OutputBounds", "cube_box", "activation_range"]

#: The value of a free input in a cube.
FREE = -1


def cube_box(cubes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cubes (M, n) int8 -> the box (xlo, xhi), each (M, n) float64."""
    return (cubes == 1).astype(np.float64), (cubes != 0).astype(np.float64)


@lru_cache(maxsize=None)
def _minimiser(name: str) -> tuple[float, float]:
    """(z*, act(z*)) of an activation that falls then rises (GELU, SiLU)."""
    from scipy.optimize import minimize_scalar

    from fci.codes.network import ACTIVATIONS

    f = ACTIVATIONS[name]
    r = minimize_scalar(lambda z: float(f(np.array([z]))[0]), bounds=(-4.0, 0.0), method="bounded",
                        options={"xatol": 1e-12})
    z = float(r.x)
    return z, float(f(np.array([z]))[0])


def _leaky_slope(name: str) -> float | None:
    if name == "relu":
        return 0.0
    if name == "identity":
        return 1.0
    if name.startswith("leaky_relu:"):
        return float(name.split(":", 1)[1])
    return None


def activation_range(net: Network, l: int, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact least and most value of layer ``l``'s activation over ``[lo, hi]`` (elementwise)."""
    name = net.activations[l]
    act = net.activation(l)
    a_lo, a_hi = act(lo), act(hi)
    if name in ("gelu", "silu"):
        z, v = _minimiser(name)
        inside = (lo <= z) & (z <= hi)
        return np.where(inside, v, np.minimum(a_lo, a_hi)), np.maximum(a_lo, a_hi)
    s = _leaky_slope(name)
    if s is not None and s < 0:  # V-shaped: least value 0 at z = 0
        inside = (lo <= 0) & (0 <= hi)
        return np.where(inside, 0.0, np.minimum(a_lo, a_hi)), np.maximum(a_lo, a_hi)
    return a_lo, a_hi  # monotone non-decreasing


def _affine_box(W: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The interval of ``W x + b`` (M, out) over the boxes [lo, hi] (M, in)."""
    Wp, Wm = np.maximum(W, 0), np.minimum(W, 0)
    return lo @ Wp.T + hi @ Wm.T + b, hi @ Wp.T + lo @ Wm.T + b


class OutputBounds:
    """Lower bounds of ``sign * logit[output]`` over cubes of a :class:`Network`'s inputs.

    ``patterns``: at most ``2**patterns`` on/off choices of undecided inhibitors are
    enumerated per cube (the rest are bounded by their chord); ``sweeps``: rounds of slope
    ascent. ``evaluations`` counts the cubes bounded so far. ``tol`` is the margin a bound
    must clear (``lb > tol``) to certify anything: 1e-9 of the logit's scale, far above the
    float64 rounding of a forward pass."""

    def __init__(self, net: Network, output: int, sign: int = 1, patterns: int = 6, sweeps: int = 1):
        if sign not in (1, -1):
            raise ValueError(f"sign must be 1 or -1, got {sign!r}")
        self.net, self.output, self.sign = net, int(output), sign
        self.patterns, self.sweeps = int(patterns), int(sweeps)
        self.evaluations = 0
        W_out, b_out = net.layers[-1]
        self.a = sign * W_out[output]  # (H,) readout of the last hidden layer
        self.c = float(sign * b_out[output])
        last = net.depth - 1
        self.slope = _leaky_slope(net.activations[last]) if net.depth else None
        # The logit's scale, for the rounding margin: its interval over the whole hypercube.
        root = np.full((1, net.n_in), FREE, dtype=np.int8)
        boxes = self._boxes(root)
        h_lo, h_hi = boxes[-1]
        span = self.c + np.abs(self.a) @ np.maximum(np.abs(h_lo), np.abs(h_hi))[0]
        self.tol = 1e-9 * (1.0 + abs(float(span)))

    # ------------------------------------------------------------------ intervals

    def _boxes(self, cubes: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per layer, the box of its input: [inputs, h1, ..., h_depth] (each (M, width))."""
        lo, hi = cube_box(cubes)
        out = [(lo, hi)]
        for l in range(self.net.depth):
            W, b = self.net.layers[l]
            z_lo, z_hi = _affine_box(W, b, lo, hi)
            lo, hi = activation_range(self.net, l, z_lo, z_hi)
            out.append((lo, hi))
        return out

    def interval(self, cubes: np.ndarray) -> np.ndarray:
        """(M,) lower bound of sign * logit by intervals alone (cheap, looser)."""
        h_lo, h_hi = self._boxes(cubes)[-1]
        return self.c + h_lo @ np.maximum(self.a, 0) + h_hi @ np.minimum(self.a, 0)

    def upper(self, cubes: np.ndarray) -> np.ndarray:
        """(M,) upper bound of sign * logit by intervals (no input of the cube goes above it)."""
        h_lo, h_hi = self._boxes(cubes)[-1]
        return self.c + h_hi @ np.maximum(self.a, 0) + h_lo @ np.minimum(self.a, 0)

    # ------------------------------------------------------------------ the bound

    def lower(self, cubes: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lb, g, influence) for cubes (M, n): ``lb`` (M,) a lower bound of sign * logit
        over each cube; ``g`` (M, n) how fixing an input would raise it (``g_v > 0``: setting
        ``x_v = 1`` raises a linear lower bound by about ``g_v``; ``g_v < 0``: setting
        ``x_v = 0`` raises it by ``-g_v``; where the bound's own coefficients are 0, the
        readout-weighted strength of the weights through the neurons that can fire);
        ``influence`` (M, n) >= 0: the readout-weighted |weights| of each input through
        the neurons whose state the cube leaves undecided (where a split helps most)."""
        cubes = np.asarray(cubes, dtype=np.int8)
        M, n = cubes.shape
        self.evaluations += M
        lb = np.empty(M)
        g = np.empty((M, n))
        infl = np.empty((M, n))
        for s in range(0, M, chunk):
            lb[s: s + chunk], g[s: s + chunk], infl[s: s + chunk] = self._lower(cubes[s: s + chunk])
        return lb, g, infl

    def _lower(self, cubes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        net = self.net
        boxes = self._boxes(cubes)
        h_lo, h_hi = boxes[-1]
        ibp = self.c + h_lo @ np.maximum(self.a, 0) + h_hi @ np.minimum(self.a, 0)
        # pre-activations of the last hidden layer, for which neurons are undecided / alive
        W, b = net.layers[net.depth - 1]
        x_lo, x_hi = boxes[-2]
        z_lo, z_hi = _affine_box(W, b, x_lo, x_hi)
        kink = 0.0 if self.slope is not None else None
        undecided = (z_lo < 0) & (z_hi > 0) if kink is not None else (h_hi > h_lo)
        strength = self._down(boxes, self.a * (h_hi > h_lo), signed=True)
        influence = self._down(boxes, np.abs(self.a) * undecided, signed=False)
        if self.slope is None:  # no linear refinement: the interval bound
            return ibp, strength, influence
        s = self.slope
        lin = (self.a * s) @ W  # (in,) the linear part of a leaky activation
        const = self.c + float((self.a * s) @ b)
        pl, coef = _piecewise_lower(x_lo, x_hi, W, b, self.a * (1.0 - s), lin, const, self.patterns, self.sweeps,
                                    self.tol)
        g = self._down(boxes, coef + self.a * s, signed=True)
        g = np.where(g != 0, g, 1e-9 * strength)  # where the bound is blind, the weights' strength decides
        return np.maximum(ibp, pl), g, influence

    def _down(self, boxes: list[tuple[np.ndarray, np.ndarray]], coef: np.ndarray, signed: bool) -> np.ndarray:
        """Carry per-neuron coefficients (M, H_last) on the last hidden layer's
        pre-activations down to the inputs; through each lower layer only neurons whose
        activation can still change pass anything (``signed=False``: by |weights|)."""
        W = self.net.layers[self.net.depth - 1][0]
        v = coef @ (W if signed else np.abs(W))
        for l in range(self.net.depth - 2, -1, -1):
            lo, hi = boxes[l + 1]
            W = self.net.layers[l][0]
            v = (v * (hi > lo)) @ (W if signed else np.abs(W))
        return v


def _piecewise_lower(x_lo: np.ndarray, x_hi: np.ndarray, W: np.ndarray, b: np.ndarray, a: np.ndarray,
                     lin: np.ndarray, const: float, patterns: int, sweeps: int,
                     tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower bound of ``F(x) = const + lin·x + Σ_i a_i relu(W_i x + b_i)`` over boxes
    [x_lo, x_hi] (M, m); W (H, m). Returns (lb (M,), the linear coefficients (M, H) on
    ``W x + b`` of the inhibitor choice that attains it). See the module docstring.

    The slopes are only optimised for cubes the bound might still certify (``lb <= tol``
    so far, and ``F`` > tol at every choice's minimising corner: a corner where ``F <= tol``
    shows that no bound over this box can clear ``tol``)."""
    M = x_lo.shape[0]
    lo, hi = _affine_box(W, b, x_lo, x_hi)  # (M, H)
    inhibit = (a < 0) & (lo < 0) & (hi > 0)
    n_inh = np.minimum(inhibit.sum(axis=1), patterns)  # (M,) inhibitors enumerated per cube
    lb = np.empty(M)
    coef_out = np.empty((M, W.shape[0]))
    for u in np.unique(n_inh):
        rows = np.flatnonzero(n_inh == u)
        lb[rows], coef_out[rows] = _patterns_lower(x_lo[rows], x_hi[rows], lo[rows], hi[rows], W, b, a, lin, const,
                                                   int(u), sweeps, tol)
    return lb, coef_out


def _patterns_lower(x_lo: np.ndarray, x_hi: np.ndarray, lo: np.ndarray, hi: np.ndarray, W: np.ndarray, b: np.ndarray,
                    a: np.ndarray, lin: np.ndarray, const: float, u: int, sweeps: int,
                    tol: float) -> tuple[np.ndarray, np.ndarray]:
    """`_piecewise_lower` for cubes that enumerate exactly ``u`` inhibitors each."""
    M, H = lo.shape
    S = 1 << u
    unstable = (lo < 0) & (hi > 0)
    inhibit = (a < 0) & unstable
    excite = (a > 0) & unstable
    # The u most damaging undecided inhibitors (largest |a| * hi) are enumerated; the rest take chords.
    damage = np.where(inhibit, -a * hi, -np.inf)
    chosen = np.argsort(-damage, axis=1, kind="stable")[:, :u]  # (M, u)
    enum = np.zeros((M, H), dtype=bool)
    np.put_along_axis(enum, chosen, True, axis=1)
    chord = inhibit & ~enum
    slope = np.where(unstable, hi / np.where(unstable, hi - lo, 1.0), 0.0)
    coef0 = np.where(lo >= 0, a, 0.0) + np.where(chord, a * slope, 0.0)  # (M, H)
    const0 = const + np.where(chord, -a * slope * lo, 0.0).sum(axis=1)  # (M,)
    lam = np.where(excite, (hi >= -lo).astype(np.float64), 0.0)  # CROWN's initial slopes
    coef = np.repeat((coef0 + a * lam)[:, None, :], S, axis=1)  # (M, S, H)
    if u:
        bits = ((np.arange(S)[:, None] >> np.arange(u)) & 1).astype(bool)  # (S, u)
        on = np.zeros((M, S, H), dtype=bool)
        np.put_along_axis(on, np.broadcast_to(chosen[:, None, :], (M, S, u)), np.broadcast_to(bits[None], (M, S, u)), axis=2)
        coef = np.where(on, a, coef)
    val, g = _value(coef, const0, W, b, lin, x_lo, x_hi)
    # Slope ascent, only where it might certify (see `_piecewise_lower`).
    corner = np.where(g > 0, x_lo[:, None, :], x_hi[:, None, :])  # (M, S, m) each choice's minimiser
    F = const + corner @ lin + np.maximum(corner @ W.T + b, 0.0) @ a  # (M, S) the function there
    rows = np.flatnonzero((val.min(axis=1) <= tol) & (F.min(axis=1) > tol) & excite.any(axis=1))
    if sweeps and len(rows):
        c2, v2, g2 = _ascend(coef[rows], val[rows], g[rows], const0[rows], x_lo[rows], x_hi[rows], excite[rows],
                             W, b, a, lin, sweeps)
        coef[rows], val[rows], g[rows] = c2, v2, g2
    worst = np.argmin(val, axis=1)  # (M,)
    r = np.arange(M)
    return val[r, worst], coef[r, worst]


def _value(coef: np.ndarray, const0: np.ndarray, W: np.ndarray, b: np.ndarray, lin: np.ndarray, x_lo: np.ndarray,
           x_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The linear bound ``const0 + coef·(W x + b) + lin·x`` minimised over the box: (M, S)
    values and the coefficients g (M, S, m) on x."""
    g = coef @ W + lin  # (M, S, m)
    low = np.einsum("msj,mj->ms", g, x_lo) + np.einsum("msj,mj->ms", np.minimum(g, 0.0), x_hi - x_lo)
    return const0[:, None] + coef @ b + low, g


def _ascend(coef, val, g, const0, x_lo, x_hi, excite, W, b, a, lin, sweeps):
    """Coordinate ascent on the slopes of the undecided exciting neurons: for each in
    turn, the slope in [0, 1] that maximises the (concave, piecewise linear) bound, found
    exactly from its sorted breakpoints. Each step keeps only improvements."""
    span = x_hi - x_lo  # (M, m)
    for _ in range(sweeps):
        for i in np.flatnonzero(excite.any(axis=0)):
            d = a[i] * W[i]  # (m,) the slope's direction
            lam_i = coef[:, :, i] / a[i]  # (M, S)
            h = g - lam_i[..., None] * d  # (M, S, m) everything but neuron i
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where((span[:, None, :] > 0) & (d != 0), -h / d, np.inf)
            # the derivative at λ = 0+: a_i b_i + Σ_j d_j * (x_lo if the coefficient is > 0 else x_hi)
            up = np.where(h != 0, h > 0, d > 0)
            D0 = a[i] * b[i] + np.where(up, d * x_lo[:, None, :], d * x_hi[:, None, :]).sum(axis=2)
            inside = (t > 0) & (t < 1)
            ts = np.where(inside, t, np.inf)
            order = np.argsort(ts, axis=2)
            ts = np.take_along_axis(ts, order, axis=2)
            drop = np.take_along_axis(np.where(inside, np.abs(d) * span[:, None, :], 0.0), order, axis=2)
            Dk = D0[..., None] - np.cumsum(drop, axis=2)  # the derivative just after each breakpoint
            k = np.argmax(Dk <= 0, axis=2)
            hit = np.take_along_axis(Dk <= 0, k[..., None], axis=2)[..., 0]
            best = np.where(D0 <= 0, 0.0, np.where(hit, np.take_along_axis(ts, k[..., None], axis=2)[..., 0], 1.0))
            best = np.where(excite[:, i][:, None] & np.isfinite(best), best, lam_i)
            trial = coef.copy()
            trial[:, :, i] = a[i] * best
            v2, g2 = _value(trial, const0, W, b, lin, x_lo, x_hi)
            better = v2 > val
            coef = np.where(better[..., None], trial, coef)
            val = np.where(better, v2, val)
            g = np.where(better[..., None], g2, g)
    return coef, val, g
