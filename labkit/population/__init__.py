"""Population training: many networks trained as one vectorised computation.

:func:`fit_many` (:mod:`labkit.population.fit`, re-exported as :func:`labkit.train.fit_many`) is the one door;
the loop every engine shares is :class:`Run` (:mod:`labkit.population.loop`); the engines are
:mod:`labkit.population.vmap` (any module) and :mod:`labkit.population.batched` (``models.mlp`` networks, every
layer one batched matmul). :mod:`labkit.population.probes` measures every member at once (the curvature of all
members in one lockstep Lanczos, a sharpness tracker for ``fit_many``), :mod:`labkit.population.regime` labels a
width x learning-rate sweep lazy / feature-learning / catapult / divergent. The namespace is open for more modules.
"""

from labkit._lazy import lazy_exports

__all__ = ["ENGINES", "Engine", "Run", "fit_many", "grid", "member_histories"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {"ENGINES": "fit", "fit_many": "fit", "grid": "fit", "Engine": "loop", "Run": "loop", "member_histories": "loop"},
    submodules=["batched", "fit", "loop", "probes", "regime", "spread", "vmap"],
)
