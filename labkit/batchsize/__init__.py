"""Batch-size science: gradient noise scale, critical batch size, steps-to-target sweeps, scaling rules.

- :func:`per_example_grads`, :func:`per_example_sq_norms`: the per-example gradients ``g_i``
  and their squared norms (the latter from layer structure, without forming ``g_i``).
- :func:`noise_scale` (``B_simple``, exact or two-batch), :func:`b_noise` (with Hessian-vector
  products), :class:`NoiseScaleTracker` (during training): McCandlish et al. 2018.
- :func:`gradient_tests`, :class:`GradientInstruments` (a tracker): the norm, inner-product and
  orthogonality tests, per-layer SNR, B_simple, B_noise and lambda_max from one per-example pass.
- :func:`fit_adaptive` with a :class:`NormTestSchedule`: grow the batch when the norm test fails.
- :func:`steps_to_target` -> :class:`Sweep`: Shallue et al. 2018's measurement, vectorised.
- :func:`fit_tradeoff` -> :class:`Tradeoff`: ``(S/S_min - 1)(E/E_min - 1) = 1`` and ``B_crit``.
- :func:`scale_lr`, :func:`warmup`, :func:`scale_adam`, :func:`scale_ema`, :func:`scale_beta2`: scaling rules.
- :mod:`labkit.batchsize.nqm`: the noisy quadratic model in closed form (:class:`NQM`).

Quick look::

    ns = noise_scale(model, "auto", data)                   # exact B_simple
    sweep = steps_to_target(make_model, data, batch_sizes=[8, 32, 128], target=0.1, lrs=[0.1, 0.3, 1.0])
    sweep.tradeoff().b_crit                                  # fitted critical batch size
"""

from labkit import _deprecated
from labkit.batchsize import nqm
from labkit.batchsize.adaptive import AdaptiveRun, NormTestSchedule, fit_adaptive
from labkit.batchsize.grads import per_example_grads, per_example_sq_norms
from labkit.batchsize.instruments import GradientInstruments, GradientTests, gradient_tests
from labkit.batchsize.noise import NoiseScale, NoiseScaleTracker, b_noise, noise_scale
from labkit.batchsize.nqm import NQM
from labkit.batchsize.rules import scale_adam, scale_beta2, scale_ema, scale_lr, warmup
from labkit.batchsize.sweep import Sweep, first_reached, steps_to_target
from labkit.batchsize.tradeoff import Tradeoff, fit_tradeoff

__all__ = [
    "NQM",
    "AdaptiveRun",
    "GradientInstruments",
    "GradientTests",
    "NoiseScale",
    "NoiseScaleTracker",
    "NormTestSchedule",
    "Sweep",
    "Tradeoff",
    "b_noise",
    "first_reached",
    "fit_adaptive",
    "fit_tradeoff",
    "gradient_tests",
    "noise_scale",
    "nqm",
    "per_example_grads",
    "per_example_sq_norms",
    "scale_adam",
    "scale_beta2",
    "scale_ema",
    "scale_lr",
    "steps_to_target",
    "warmup",
]

# the renamed submodule, reached as an attribute (``package.scaling.name``): one warning, then the new module
__getattr__ = _deprecated.moved(__name__, {"scaling": "labkit.batchsize.rules"})
