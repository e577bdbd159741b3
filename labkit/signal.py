"""Signal propagation at initialisation: measured layer by layer, with the mean-field theory beside it.

A deep network at initialisation maps two inputs to two pre-activation vectors per layer.
Their length ``q_l = |h_l|^2 / n`` and their correlation ``c_l = h_l . h'_l / (|h_l| |h'_l|)``
follow, at infinite width, deterministic maps (Poole et al. 2016, "Exponential expressivity in
deep neural networks through transient chaos", NeurIPS; Schoenholz et al. 2017, "Deep
Information Propagation", ICLR; both outside the seed; Roberts, Yaida & Hanin, "The Principles
of Deep Learning Theory" in the seed)::

    q_{l+1}  = sigma_w^2 E[phi(u)^2] + sigma_b^2                      u ~ N(0, q_l)
    q12_{l+1} = sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2              (u1, u2) ~ N(0, [[q1, q12], [q12, q2]])
    chi_c    = sigma_w^2 E[phi'(u1) phi'(u2)]   (at the fixed point; chi_1 at c = 1)

Expectations use Gauss-Hermite quadrature, so any elementwise activation works (a name of
:data:`labkit.models.ACTIVATIONS` or a torch function). ``chi_1 = 1`` is the order-to-chaos
line; the correlation depth scale ``xi_c = -1 / log chi_c*`` diverges on it. A residual net
``h_{l+1} = h_l + a (W phi(h_l) + b)`` adds ``a^2`` times the same maps to ``q_l``.

:func:`propagate` measures the same quantities on random networks, vectorised over seeds
(one batched matmul per layer), plus the per-layer gradient norms and the NTK of one input::

    theory = iterate(50, q0=1.0, c0=0.5, sigma_w2=2.0, activation="relu")
    run = propagate(50, 256, activation="relu", sigma_w2=2.0, seeds=8)
    run.q.mean(0)   # ~ theory.q (flat: ReLU at sigma_w^2 = 2 is critical)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.polynomial.hermite_e import hermegauss

from labkit import _checks, threads
from labkit.machine import MAX_MEMORY
from labkit.models import ACTIVATIONS, branch_scale, init_weight

__all__ = [
    "LayerStats",
    "Propagation",
    "Theory",
    "Trainability",
    "chi",
    "covmap",
    "critical_sigma_w2",
    "depth_scales",
    "expect",
    "expect1",
    "fixed_point",
    "iterate",
    "kurtosis_theory",
    "layer_stats",
    "log_slope",
    "output_kurtosis",
    "propagate",
    "qmap",
    "trainability",
]

Act = str | Callable[[torch.Tensor], torch.Tensor]
ORDER = 80  # 1-D Gauss-Hermite nodes (even: symmetric pairs make ReLU's moments and P(u > 0) exact)
ANGLES, RADII = 256, 48  # 2-D: polar rule (trapezoid in angle, Gauss-Legendre in radius on [0, R_MAX])
R_MAX = 12.0


def _act(activation: Act) -> Callable[[torch.Tensor], torch.Tensor]:
    if callable(activation):
        return activation
    return ACTIVATIONS[_checks.choice("activation", activation, ACTIVATIONS)]


def activation_derivative(phi: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """phi' of an elementwise function by autograd (phi(z).sum() differentiated once)."""

    def dphi(z: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            z = z.detach().requires_grad_()
            (g,) = torch.autograd.grad(phi(z).sum(), z)
        return g

    return dphi


def _t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


@functools.lru_cache(maxsize=8)
def _hermite(order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights with sum_i w_i f(z_i) ~ E f(z), z ~ N(0, 1)."""
    z, w = hermegauss(order)
    return torch.as_tensor(z), torch.as_tensor(w / w.sum())


def _polar() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points (z1, z2) and weights of E f(z1, z2), z ~ N(0, I_2), in polar coordinates.

    E f = (1/2pi) int dtheta int r exp(-r^2/2) f(r cos, r sin) dr. The angular trapezoid rule
    is spectrally accurate for smooth integrands and second order across the kinks of
    ReLU-like activations (which lie on rays, where the radial rule stays exact).
    """
    theta = torch.arange(ANGLES, dtype=torch.float64) * (2 * math.pi / ANGLES)
    x, wx = np.polynomial.legendre.leggauss(RADII)
    r = torch.as_tensor((x + 1) * R_MAX / 2)
    wr = torch.as_tensor(wx * R_MAX / 2) * r * torch.exp(-r**2 / 2)
    z1 = (r[:, None] * torch.cos(theta)).reshape(-1)
    z2 = (r[:, None] * torch.sin(theta)).reshape(-1)
    w = (wr[:, None] / ANGLES).expand(RADII, ANGLES).reshape(-1)
    return z1, z2, w / w.sum()


_POLAR: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


def expect(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], q1, q2, q12) -> torch.Tensor:
    """``E[f(u1, u2)]`` for ``(u1, u2) ~ N(0, [[q1, q12], [q12, q2]])``, broadcast over the arguments."""
    global _POLAR
    if _POLAR is None:
        _POLAR = _polar()
    z1, z2, w = _POLAR
    q1, q2, q12 = torch.broadcast_tensors(_t(q1), _t(q2), _t(q12))
    s1, s2 = q1.clamp_min(0).sqrt()[..., None], q2.clamp_min(0).sqrt()[..., None]
    c = (q12 / (q1 * q2).sqrt()).clamp(-1, 1).nan_to_num(0.0)[..., None]
    return (f(s1 * z1, s2 * (c * z1 + (1 - c**2).sqrt() * z2)) * w).sum(-1)


def expect1(f: Callable[[torch.Tensor], torch.Tensor], q, order: int = ORDER) -> torch.Tensor:
    """``E[f(u)]`` for ``u ~ N(0, q)`` by Gauss-Hermite quadrature, broadcast over ``q``."""
    z, w = _hermite(order)
    return (f(_t(q).clamp_min(0).sqrt()[..., None] * z) * w).sum(-1)


def qmap(q, sigma_w2=1.0, sigma_b2=0.0, activation: Act = "tanh", order: int = ORDER) -> torch.Tensor:
    """The length map ``sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2`` (broadcast over all arguments)."""
    phi = _act(activation)
    return _t(sigma_w2) * expect1(lambda u: phi(u) ** 2, q, order) + _t(sigma_b2)


def covmap(q1, q2, q12, sigma_w2=1.0, sigma_b2=0.0, activation: Act = "tanh") -> torch.Tensor:
    """The covariance map ``sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2``."""
    phi = _act(activation)
    return _t(sigma_w2) * expect(lambda a, b: phi(a) * phi(b), q1, q2, q12) + _t(sigma_b2)


@dataclass
class Theory:
    """Mean-field curves over layers ``1..depth`` (pre-activations): lengths ``q``, correlations ``c``."""

    q: np.ndarray
    c: np.ndarray | None


def iterate(depth: int, q0: float = 1.0, c0: float | None = None, sigma_w2=1.0, sigma_b2=0.0,
            activation: Act = "tanh", branch: str | float | None = None) -> Theory:
    """Iterate the maps from inputs with ``|x|^2 / d = q0`` (and correlation ``c0``) through ``depth`` layers.

    Layer 1 is the linear image of the input (``q_1 = sigma_w^2 q0 + sigma_b^2``), every next
    layer applies :func:`qmap` / :func:`covmap`. With ``branch`` (a residual net, see
    :func:`labkit.models.branch_scale`) layer 1 is the embedding ``q_1 = q0`` and every block adds
    ``a^2`` times the maps.
    """
    _checks.positive("depth", depth, integer=True)
    _nonnegative("q0", q0)
    _nonnegative("sigma_w2", sigma_w2)
    _nonnegative("sigma_b2", sigma_b2)
    _correlation("c0", c0)
    a2 = None if branch is None else branch_scale(branch, depth) ** 2
    first = (lambda v: _t(v)) if a2 is not None else (lambda v: _t(sigma_w2) * v + _t(sigma_b2))
    q, q12 = first(q0), (first(c0 * q0) if c0 is not None else None)
    qs, cs = [q], [q12 / q if q12 is not None else None]
    for _ in range(depth - 1):
        nq = qmap(q, sigma_w2, sigma_b2, activation)
        n12 = covmap(q, q, q12, sigma_w2, sigma_b2, activation) if q12 is not None else None
        if a2 is not None:
            nq = q + a2 * nq
            n12 = q12 + a2 * n12 if q12 is not None else None
        q, q12 = nq, n12
        qs.append(q)
        cs.append(q12 / q if q12 is not None else None)
    return Theory(torch.stack(qs).numpy(), torch.stack(cs).numpy() if c0 is not None else None)


def _q_star(sw2: torch.Tensor, sb2: torch.Tensor, activation: Act, steps: int) -> torch.Tensor:
    q = torch.ones_like(sw2)
    for _ in range(steps):
        new = qmap(q, sw2, sb2, activation).clamp_max(1e30)
        done = bool(((new - q).abs() <= 1e-12 * q.abs()).all())
        q = new
        if done:
            break
    return torch.where(q >= 1e30, torch.full_like(q, math.inf), q)


def fixed_point(sigma_w2, sigma_b2=0.0, activation: Act = "tanh", *, steps: int = 500,
                correlation: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """``(q*, c*)``: the length fixed point (from ``q = 1``) and the stable correlation fixed point (from ``c = 0``).

    Broadcast over ``sigma_w2``, ``sigma_b2``. ``q*`` is ``inf`` where lengths grow without
    bound (e.g. ReLU above ``sigma_w^2 = 2``) and ~0 where they vanish. ``c* = 1`` in the
    ordered phase; below 1 in the chaotic one. Near the order-to-chaos line convergence is
    slow (power law), so ``c*`` there is the value after ``steps`` iterations.
    """
    sw2, sb2 = torch.broadcast_tensors(_t(sigma_w2), _t(sigma_b2))
    q = _q_star(sw2, sb2, activation, steps)
    if not correlation:
        return q.numpy(), None
    finite = torch.isfinite(q) & (q > 1e-30)
    qf = torch.where(finite, q, torch.ones_like(q))
    c = torch.zeros_like(q)
    for _ in range(steps):
        new = (covmap(qf, qf, c * qf, sw2, sb2, activation) / qf).clamp(-1, 1)
        done = bool(((new - c).abs() <= 1e-10).all())
        c = new
        if done:
            break
    return q.numpy(), torch.where(finite, c, torch.ones_like(c)).numpy()


def chi(sigma_w2, sigma_b2=0.0, activation: Act = "tanh", c=1.0, q=None) -> np.ndarray:
    """``chi_c = sigma_w^2 E[phi'(u1) phi'(u2)]`` at length ``q`` (default ``q*``) and correlation ``c``.

    ``chi_1`` (``c = 1``) is the mean squared singular value of a layer's Jacobian: gradients
    grow like ``chi_1^depth``; ``chi_1 = 1`` is criticality.
    """
    dphi = activation_derivative(_act(activation))
    if q is None:
        q, _ = fixed_point(sigma_w2, sigma_b2, activation, correlation=False)
    q = _t(q).nan_to_num(posinf=1e30)
    c = _t(c)
    if bool((c == 1).all()):
        e = expect1(lambda u: dphi(u) ** 2, torch.broadcast_tensors(q, c)[0])
    else:
        e = expect(lambda a, b: dphi(a) * dphi(b), q, q, c * q)
    return (_t(sigma_w2) * e).numpy()


def depth_scales(sigma_w2, sigma_b2=0.0, activation: Act = "tanh") -> tuple[np.ndarray, np.ndarray]:
    """``(xi_q, xi_c)``: depths over which lengths and correlations approach their fixed points.

    ``xi_c = -1 / log chi_c*`` with ``chi`` at ``(q*, c*)`` (``chi_1`` in the ordered phase);
    ``xi_q = -1 / log qmap'(q*)``. Both are ``inf`` where the slope is >= 1 (criticality).
    """
    q, c = fixed_point(sigma_w2, sigma_b2, activation)
    chi_c = chi(sigma_w2, sigma_b2, activation, c=c, q=q)
    qt = _t(q).nan_to_num(posinf=1e30)
    h = 1e-5 * qt.clamp_min(1e-8)
    slope = ((qmap(qt + h, sigma_w2, sigma_b2, activation) - qmap(qt - h, sigma_w2, sigma_b2, activation))
             / (2 * h)).numpy()

    def scale(x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            xi = -1.0 / np.log(np.clip(x, 1e-300, None))
        return np.where(x >= 1 - 1e-9, np.inf, xi)

    return scale(slope), scale(chi_c)


def _floats(name: str, value: Any) -> np.ndarray:
    """``value`` (a number, an array of them or a tensor) as finite floats, else raise naming ``name``."""
    try:
        v = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def _nonnegative(name: str, value: Any) -> np.ndarray:
    """``value`` as finite floats, each >= 0, else raise."""
    v = _floats(name, value)
    if np.any(v < 0):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def _correlation(name: str, value: Any) -> None:
    """Refuse a correlation (a number or an array of them) outside [-1, 1] or not finite; None passes."""
    if value is not None and np.any(np.abs(_floats(name, value)) > 1):
        raise ValueError(f"{name} is a correlation: it must be between -1 and 1, got {value!r}")


def critical_sigma_w2(sigma_b2=0.0, activation: Act = "tanh", *, lo: float = 0.05, hi: float = 20.0,
                      iters: int = 40) -> np.ndarray:
    """The order-to-chaos line: ``sigma_w^2`` with ``chi_1 = 1`` at each ``sigma_b2`` (bisection in log sigma_w^2).

    ``nan`` where ``chi_1 - 1`` does not change sign in ``[lo, hi]``.
    """
    _checks.positive("lo", lo)
    _checks.positive("hi", hi)
    if not lo < hi:
        raise ValueError(f"lo must be below hi, got lo={lo!r}, hi={hi!r}")
    _checks.positive("iters", iters, integer=True)
    sb2 = _nonnegative("sigma_b2", sigma_b2)
    a, b = np.full(sb2.shape, math.log(lo)), np.full(sb2.shape, math.log(hi))
    fa = chi(np.exp(a), sb2, activation) - 1
    fb = chi(np.exp(b), sb2, activation) - 1
    ok = np.sign(fa) != np.sign(fb)
    for _ in range(iters):
        m = (a + b) / 2
        fm = chi(np.exp(m), sb2, activation) - 1
        left = np.sign(fm) == np.sign(fa)
        a, fa = np.where(left, m, a), np.where(left, fm, fa)
        b = np.where(left, b, m)
    return np.where(ok, np.exp((a + b) / 2), np.nan)


# ---------------------------------------------------------------- measurement


@dataclass
class Propagation:
    """What :func:`propagate` measured, per seed and layer (layers ``1..depth``, pre-activations).

    ``q``: ``(seeds, depth, P)`` second moment ``|h_l|^2 / n`` of each input's pre-activations;
    ``c``: ``(seeds, depth)`` correlation of inputs 0 and 1 (None for one input);
    ``grad_sq``: ``(seeds, depth)`` squared norm of ``dF/dW_l`` (``F`` = the scalar readout summed
    over the inputs), None without ``backward``; ``ntk``: ``(seeds,)`` the NTK-parameterisation
    kernel ``Theta(x, x) = sum_l |dF/d theta_l|^2`` over all weights, biases and the readout (for
    one input). ``settings`` records the arguments.
    """

    q: np.ndarray
    c: np.ndarray | None
    grad_sq: np.ndarray | None
    ntk: np.ndarray | None
    settings: dict

    def theory(self) -> Theory:
        """The mean-field curves for these settings and inputs (input 0's length, inputs 0-1 correlation)."""
        s = self.settings
        return iterate(s["depth"], s["q0"], s["c0"], s["sigma_w2"], s["sigma_b2"], s["activation"],
                       s["branch"])

    def figure(self, theory: bool = True):
        """Per-layer length and correlation, seeds' median and range, with the theory dashed."""
        from labkit.viz.propagation import propagation_figure

        return propagation_figure(self, self.theory() if theory else None)


def _inputs(inputs, dim: int, c0: float | None, generator: torch.Generator) -> torch.Tensor:
    if inputs is not None:
        x = torch.as_tensor(inputs, dtype=torch.float64)
        if x.ndim != 2:
            raise ValueError(f"inputs must have shape (P, dim), got {tuple(x.shape)}")
        return x
    a, b = torch.randn(2, dim, generator=generator, dtype=torch.float64)
    a = a / a.norm() * math.sqrt(dim)
    b = b - (b @ a) / dim * a
    b = b / b.norm() * math.sqrt(dim)
    cc = 0.5 if c0 is None else float(c0)
    return torch.stack([a, cc * a + math.sqrt(1 - cc**2) * b])  # |x|^2 / d = 1, correlation cc


def _cosine(h: torch.Tensor) -> torch.Tensor:
    """Cosine of inputs 0 and 1's vectors: ``h (..., 2, n) -> (...)``."""
    return (h[..., 0, :] * h[..., 1, :]).sum(-1) / (h[..., 0, :].norm(dim=-1) * h[..., 1, :].norm(dim=-1))


@threads.hot
def propagate(
    depth: int,
    width: int,
    *,
    activation: Act = "tanh",
    sigma_w2: float = 1.0,
    sigma_b2: float = 0.0,
    init: str = "gaussian",
    branch: str | float | None = None,
    inputs: torch.Tensor | None = None,
    c0: float | None = 0.5,
    seeds: int = 8,
    seed: int = 0,
    backward: bool = True,
    dim: int | None = None,
    callback: Callable[[int, np.ndarray, np.ndarray | None], bool | None] | None = None,
) -> Propagation:
    """Push inputs through ``seeds`` random networks of ``depth`` layers of width ``width`` at once.

    ``h_1 = W_1 x + b_1``, ``h_{l+1} = W_{l+1} phi(h_l) + b_{l+1}`` (or ``h_l + a (W phi(h_l) + b)``
    with ``branch``, the embedding ``W_1`` then being N(0, 1/d)), readout
    ``F = sum_p sigma_w w . phi(h_L(x_p)) / sqrt(n)``; ``W ~ N(0, sigma_w^2/fan_in)`` or orthogonal
    with the same entry variance (:func:`labkit.models.orthogonal`), ``b ~ N(0, sigma_b^2)``;
    float64. Default inputs: two of ``|x|^2/d = 1`` and correlation ``c0`` in ``d = width``.
    ``backward`` also differentiates ``F`` (keeps all weights: ``seeds * depth * width^2`` numbers).
    Without it, Gaussian layers are sampled through the Gram matrix of their inputs (exact in
    distribution, ``O(P width)`` per layer instead of ``O(width^2)``). ``callback(layer, q_l, c_l)``
    (``q_l``: ``(seeds, P)``, ``c_l``: ``(seeds,)`` or None) sees each layer as it is computed (a live
    figure); returning True stops (the result then holds the layers so far).
    """
    _checks.positive("depth", depth, integer=True)
    _checks.positive("width", width, integer=True)
    _checks.positive("seeds", seeds, integer=True)
    _checks.positive("sigma_w2", sigma_w2)
    _checks.positive("sigma_b2", sigma_b2, allow_zero=True)
    _correlation("c0", c0)
    _checks.choice("init", init, ("gaussian", "orthogonal"))
    phi = _act(activation)
    g = torch.Generator().manual_seed(int(seed))
    x = _inputs(inputs, dim or width, c0, g)  # (P, d)
    P, d = x.shape
    a = None if branch is None else branch_scale(branch, depth)
    sw, sb = math.sqrt(sigma_w2), math.sqrt(sigma_b2)

    weights: list[torch.Tensor] = []
    biases: list[torch.Tensor] = []
    gram = init == "gaussian" and not backward

    def linear(inp: torch.Tensor, w_std: float, b_std: float) -> torch.Tensor:
        """``inp W^T + b`` for ``seeds`` fresh layers, ``inp``: (S, P, fan_in) -> (S, P, width)."""
        fan_in = inp.shape[-1]
        if gram:
            # exact in distribution and O(P width) per layer: given the layer input, the P images are
            # jointly Gaussian with covariance w_std^2 inp inp^T / fan_in + b_std^2 (weights drawn fresh per layer)
            cov = w_std**2 * inp @ inp.transpose(1, 2) / fan_in + b_std**2  # (S, P, P)
            lam, u = torch.linalg.eigh(cov)
            root = u * lam.clamp_min(0).sqrt().unsqueeze(-2)
            return root @ torch.randn(seeds, P, width, generator=g).double()  # float32 draws: 6x cheaper
        w = init_weight((seeds, width, fan_in), init, g, torch.float64) * w_std
        b = torch.randn(seeds, 1, width, generator=g, dtype=torch.float64) * b_std
        if backward:  # keep them for the gradients (forward-only runs hold one layer at a time)
            weights.append(w.requires_grad_())
            biases.append(b.requires_grad_())
        return inp @ w.transpose(1, 2) + b

    with torch.set_grad_enabled(backward):
        qs, cs = [], []
        h = linear(x.expand(seeds, P, d), 1.0 if a is not None else sw, 0.0 if a is not None else sb)  # (S, P, n)
        for layer in range(depth):
            if layer > 0:
                z = linear(phi(h), sw, sb)
                h = z if a is None else h + a * z
            qs.append(h.detach().square().mean(-1))  # (S, P)
            if P >= 2:
                cs.append(_cosine(h.detach()[:, :2]))  # (S,)
            if callback is not None:
                if callback(layer + 1, qs[-1].numpy(), cs[-1].numpy() if cs else None):
                    depth = layer + 1
                    break
        q = torch.stack(qs, 1)  # (S, depth, P)
        c = torch.stack(cs, 1) if P >= 2 else None  # (S, depth)
        grad_sq = ntk = None
        if backward:
            readout = torch.randn(seeds, width, generator=g, dtype=torch.float64).requires_grad_()
            F = (phi(h) @ readout.unsqueeze(-1)).squeeze(-1).sum(-1) * sw / math.sqrt(width)  # (S,)
            gW = torch.autograd.grad(F.sum(), weights + biases + [readout])
            gw, gb, gr = gW[:depth], gW[depth:2 * depth], gW[-1]
            grad_sq = torch.stack([t.square().sum((1, 2)) for t in gw], 1)  # (S, depth)
            # NTK parameterisation: W = s theta -> dF/dtheta = s dF/dW (s = weight std), b = sigma_b beta
            fan = [d] + [width] * (depth - 1)
            wstd = [(1.0 if (a is not None and i == 0) else sw) ** 2 / f for i, f in enumerate(fan)]
            ntk = sum(s2 * t.square().sum((1, 2)) for s2, t in zip(wstd, gw))
            bstd = [0.0 if (a is not None and i == 0) else sigma_b2 for i in range(depth)]
            ntk = ntk + sum(s2 * t.square().sum((1, 2)) for s2, t in zip(bstd, gb))
            ntk = ntk + gr.square().sum(-1)
    settings = dict(depth=depth, width=width, activation=activation, sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                    init=init, branch=a, seeds=seeds, seed=seed,
                    q0=float(x[0].square().mean()),
                    c0=float(x[0] @ x[1] / (x[0].norm() * x[1].norm())) if P >= 2 else None)
    as_np = lambda t: None if t is None else t.detach().numpy()  # noqa: E731
    return Propagation(as_np(q), as_np(c), as_np(grad_sq), as_np(ntk), settings)


def log_slope(q: np.ndarray, at: np.ndarray | None = None) -> float:
    """Least-squares slope of ``log q_l`` against the layer ``l`` (q: per-layer values), or against ``at``.

    ``exp(log_slope(ratios, at=depths))`` is a per-layer growth factor measured over several depths.
    """
    q = np.asarray(q, dtype=float)
    x = np.arange(1, len(q) + 1) if at is None else np.asarray(at, dtype=float)
    return float(np.polyfit(x, np.log(q), 1)[0])


# ---------------------------------------------------------------- finite width


def kurtosis_theory(activation: Act = "relu") -> float:
    """Excess kurtosis times width of ``f = sum_j v_j phi(h_j) / sqrt(n)`` (one hidden layer, one input).

    The ``n`` terms are i.i.d. (``v ~ N(0, 1)``, ``h ~ N(0, q)``), and excess kurtosis of a sum of
    ``n`` i.i.d. terms is the term's over ``n``: ``kappa n = 3 E[phi^4] / E[phi^2]^2 - 3``. For
    ReLU that is 15, at any ``q`` (positive homogeneity); evaluated at ``q = 1``.
    """
    phi = _act(activation)
    m2, m4 = expect1(lambda u: phi(u) ** 2, 1.0), expect1(lambda u: phi(u) ** 4, 1.0)
    return float(3 * m4 / m2**2 - 3)


@threads.hot
def output_kurtosis(width: int, draws: int = 100_000, activation: Act = "relu", *,
                    seed: int = 0) -> tuple[float, float]:
    """Sample excess kurtosis (and its standard error) of a one-hidden-layer network's output over ``draws`` inits.

    For one fixed input the hidden pre-activations are exactly i.i.d. Gaussian (variance 1
    here), so each draw samples ``h`` and the readout ``v`` directly: ``draws * width`` numbers.
    The standard error is that of the mean over 20 equal batches of draws.
    """
    _checks.positive("width", width, integer=True)
    _checks.in_range("draws", draws, 100, 10**8)
    phi = _act(activation)
    g = torch.Generator().manual_seed(int(seed))

    def sample(chunk: int) -> torch.Tensor:  # (chunk,) outputs: readout v times phi(h), h ~ N(0, 1)
        v, h = torch.randn(2, chunk, width, generator=g).double()
        return (v * phi(h)).sum(-1) / math.sqrt(width)

    f = torch.cat([sample(chunk) for chunk in _chunks(draws, 2**22 // width)])

    def excess(v: torch.Tensor) -> float:
        v = v - v.mean()
        return float((v**4).mean() / (v**2).mean() ** 2 - 3)

    parts = torch.tensor([excess(p) for p in f.chunk(20)])
    return excess(f), float(parts.std() / math.sqrt(20))


def _chunks(total: int, size: int) -> list[int]:
    size = max(1, size)
    return [size] * (total // size) + ([total % size] if total % size else [])


# ---------------------------------------------------------------- trainability


@dataclass
class Trainability:
    """Final training accuracy of a (depth x sigma_w^2) grid, with the correlation depth scale of each column."""

    depths: list[int]
    sigma_w2: list[float]
    sigma_b2: float
    accuracy: np.ndarray  # (len(depths), len(sigma_w2))
    xi_c: np.ndarray      # (len(sigma_w2),)

    def figure(self):
        """The accuracy grid with the depth 6 xi_c above which Schoenholz et al. found no training."""
        from labkit.viz.propagation import trainability_figure

        return trainability_figure(self)


@threads.hot
def trainability(data, depths, sigma_w2, *, sigma_b2: float = 0.05, activation: Act = "tanh", width: int = 32,
                 lr: float = 0.01, steps: int = 300, seed: int = 0, progress: bool = True,
                 executor: Any = None, max_memory: int = MAX_MEMORY) -> Trainability:
    """Train tanh MLPs of every depth and ``sigma_w^2`` with full-batch SGD (one ``fit_many`` per depth).

    Schoenholz et al. (2017) found that random networks train only when ``depth`` is below
    about ``6 xi_c``; at criticality ``xi_c`` diverges and any depth trains. Member ``i`` of a
    depth's ``fit_many`` call is the network with ``sigma_w2[i]`` (its seed picks it). ``progress``,
    ``executor`` (:mod:`labkit.parallel`) and ``max_memory`` are handed to each ``fit_many`` call.
    """
    from labkit.models import mlp
    from labkit.train import fit_many

    sw2 = [float(_checks.positive("sigma_w2", v)) for v in sigma_w2]
    if not sw2 or not len(depths):
        raise ValueError(f"depths and sigma_w2 must not be empty, got {len(depths)} depth(s) and {len(sw2)} value(s)")
    _checks.positive("sigma_b2", sigma_b2, allow_zero=True)
    if not isinstance(activation, str):
        raise TypeError("trainability needs an activation name (it builds labkit.models.mlp networks)")
    k = len(sw2)
    out = np.zeros((len(depths), k))
    for i, depth in enumerate(depths):
        _checks.positive("depth", depth, integer=True)

        def make(s: int, depth: int = depth):
            return mlp(data.inputs.shape[1], [width] * depth, data.num_classes, activation,
                       weight_std=math.sqrt(sw2[s % k]), bias_std=math.sqrt(sigma_b2), seed=seed * k + s)

        hs = fit_many(make, data, hparams={"seed": list(range(k))}, lr=lr, steps=steps, eval_every=steps,
                      progress=progress, executor=executor, max_memory=max_memory)
        out[i] = [h.eval["accuracy"][-1] if not h.diverged else np.nan for h in hs]
    _, xi_c = depth_scales(sw2, sigma_b2, activation)
    return Trainability(list(depths), sw2, float(sigma_b2), out, np.asarray(xi_c))


# ---------------------------------------------------------------- any network, layer by layer


@dataclass
class LayerStats:
    """Per-layer statistics of one batch through one network (see :func:`layer_stats`).

    For each linear layer (in forward order): ``second_moment`` (mean of its output squared),
    ``variance`` and ``mean_sq`` (the channel variance over the batch and the channel mean
    squared, averaged over channels), ``grad_norm`` (Frobenius norm of the loss gradient with
    respect to its weight). ``blocks`` holds ``variance`` and ``mean_sq`` of every residual
    block's output: Brock et al.'s signal propagation plot.
    """

    names: list[str]
    second_moment: np.ndarray
    variance: np.ndarray
    mean_sq: np.ndarray
    grad_norm: np.ndarray
    blocks: dict[str, np.ndarray]

    def spp_figure(self, title: str = "signal propagation plot"):
        """Brock et al.'s plot of the residual blocks (or of the linear layers without blocks)."""
        from labkit.viz.propagation import spp_figure

        stats = self.blocks if len(self.blocks["variance"]) else {"variance": self.variance, "mean_sq": self.mean_sq}
        return spp_figure(stats, title)


@threads.hot
def layer_stats(model: torch.nn.Module, x: torch.Tensor, *, seed: int = 0) -> LayerStats:
    """Forward ``x`` through ``model`` as one batch and backpropagate ``L = <f(x), g> / n`` (``g ~ N(0, 1)``).

    A random cotangent makes the gradient norms a property of the network at initialisation,
    not of a task. Linear layers are :class:`labkit.models.Dense`, ``nn.Linear`` and
    :class:`labkit.models.WeightNormDense` (its ``v``); residual blocks are
    :class:`labkit.models.Residual`.
    """
    from labkit.models import Dense, Residual, WeightNormDense

    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        raise ValueError(f"x must be a (batch, features) tensor, got {type(x).__name__} {getattr(x, 'shape', '')}")
    linear = [(n, m) for n, m in model.named_modules() if isinstance(m, (Dense, torch.nn.Linear, WeightNormDense))]
    blocks = [(n, m) for n, m in model.named_modules() if isinstance(m, Residual)]
    if not linear:
        raise ValueError(f"{type(model).__name__} has no linear layer (Dense, nn.Linear or WeightNormDense)")
    outs: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda mod, a, out, n=n: outs.__setitem__(n, out.detach()))
               for n, m in linear + blocks]
    try:
        p = next(model.parameters())
        f = model(x.to(p.dtype))
    finally:
        for h in handles:
            h.remove()
    g = torch.randn(f.shape, generator=torch.Generator().manual_seed(int(seed))).to(f.dtype)
    weights = [m.v if isinstance(m, WeightNormDense) else m.weight for _, m in linear]
    grads = torch.autograd.grad((f * g).sum() / f.shape[0], weights)

    def moments(names):
        hs = [outs[n] for n in names]
        return (np.array([float(h.var(0, unbiased=False).mean()) for h in hs]),
                np.array([float(h.mean(0).square().mean()) for h in hs]))

    var, msq = moments([n for n, _ in linear])
    bvar, bmsq = moments([n for n, _ in blocks]) if blocks else (np.zeros(0), np.zeros(0))
    return LayerStats([n for n, _ in linear], np.array([float(outs[n].square().mean()) for n, _ in linear]),
                      var, msq, np.array([float(t.norm()) for t in grads]), {"variance": bvar, "mean_sq": bmsq})
