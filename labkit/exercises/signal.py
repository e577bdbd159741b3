"""Exercises of the signal-propagation notebook (05): the ReLU length map, chi_1 by quadrature, trainable depth."""

from __future__ import annotations

import math

import numpy as np

from labkit import signal
from labkit.exercises._core import Wrong, call_student, exercise, expect_close


@exercise(
    "signal.relu_qmap",
    title="The ReLU length map in closed form",
    hints=[
        "q_{l+1} = sigma_w^2 E[relu(sqrt(q) z)^2] + sigma_b^2 with z ~ N(0, 1).",
        "relu(u)^2 is u^2 on half of the symmetric Gaussian and 0 on the other half: E[relu(sqrt(q) z)^2] = q / 2.",
    ],
)
def _relu_qmap(fn) -> None:
    rng = np.random.default_rng(5)
    for _ in range(6):
        q, sw2, sb2 = float(rng.uniform(0.05, 5)), float(rng.uniform(0.5, 4)), float(rng.uniform(0, 0.5))
        got = call_student(fn, q, sw2, sb2)
        want = float(signal.qmap(q, sw2, sb2, "relu"))
        expect_close(got, want, rtol=1e-9, what=f"q_(l+1) for q={q:.3g}, sigma_w2={sw2:.3g}, sigma_b2={sb2:.3g}",
                     mistakes=[(sw2 * q + sb2, "that is the linear network's map: ReLU zeroes half of the Gaussian, "
                                               "so E[relu^2] = q/2"),
                               (sw2 * q / 2, "the bias variance sigma_b^2 is missing")])


_DERIVATIVES = {
    "tanh": (lambda u: 1 / np.cosh(u) ** 2, "tanh"),
    "erf": (lambda u: 2 / math.sqrt(math.pi) * np.exp(-u**2), "erf"),
    "identity": (lambda u: np.ones_like(u), "identity"),
}


@exercise(
    "signal.chi1_quadrature",
    title="chi_1 by Gauss-Hermite quadrature",
    hints=[
        "hermegauss(n) returns nodes z_i and weights w_i with sum_i w_i f(z_i) ~ integral f(z) exp(-z^2/2) dz.",
        "That integral is sqrt(2 pi) E[f(z)]: divide by sum(w) (which equals sqrt(2 pi)) to get an expectation.",
        "chi_1 = sigma_w2 * sum(w * phi_prime(sqrt(q) * z) ** 2) / sum(w).",
    ],
)
def _chi1(fn) -> None:
    rng = np.random.default_rng(11)
    for name, (dphi, act) in _DERIVATIVES.items():
        q, sw2 = float(rng.uniform(0.1, 3)), float(rng.uniform(0.5, 3))
        got = call_student(fn, dphi, sw2, q)
        want = float(signal.chi(sw2, 0.0, act, q=q))
        z, w = np.polynomial.hermite_e.hermegauss(80)
        no_sqrt = sw2 * float(np.sum(w * dphi(q * z) ** 2) / np.sum(w))
        expect_close(got, want, rtol=1e-4, what=f"chi_1 for {name} at sigma_w2={sw2:.3g}, q={q:.3g}", mistakes=[
            (want * math.sqrt(2 * math.pi), "off by sqrt(2 pi): the Hermite weights integrate against exp(-z^2/2), "
                                            "not the normal density; divide by sum(w)"),
            (want / sw2, "sigma_w^2 is missing: chi_1 = sigma_w^2 E[phi'^2]"),
            (no_sqrt, "scale the nodes by sqrt(q) (the standard deviation), not by q")])


@exercise(
    "signal.max_trainable_depth",
    title="How deep can it be?",
    hints=[
        "Correlations approach their fixed point like chi^l = exp(-l / xi_c), so xi_c = -1 / log(chi_c).",
        "Schoenholz et al.: trainable up to about 6 xi_c; at chi_c >= 1 (criticality, within this picture) return inf.",
    ],
)
def _max_depth(fn) -> None:
    for chi_c in (0.3, 0.7, 0.9, 0.99):
        got = call_student(fn, chi_c)
        want = -6 / math.log(chi_c)
        expect_close(got, want, rtol=1e-9, what=f"6 xi_c for chi_c={chi_c}", mistakes=[
            (want / 6, "that is xi_c itself; the trainable depth is about 6 xi_c"),
            (-want, "the sign: log(chi_c) < 0 for chi_c < 1, and depths are positive")])
    got = call_student(fn, 1.0)
    if not (np.ndim(got) == 0 and math.isinf(float(got)) and float(got) > 0):
        raise Wrong("at chi_c = 1 (criticality) the depth scale diverges: return math.inf")
