"""Deprecated: the hand-batched engine is :mod:`labkit.population.batched` (its ``fit_group`` is ``train_group``);
``labkit.batched.fit_many`` is :func:`labkit.train.fit_many`, which picks this engine itself (``engine="auto"``)."""

from labkit import _deprecated

__deprecated__ = "labkit.population.batched"

__getattr__ = _deprecated.moved(__name__, {
    "fit_many": "labkit.train:fit_many",
    "fit_group": "labkit.population.batched:train_group",
    "supports": "labkit.population.batched:supports",
    "unsupported": "labkit.population.batched:unsupported",
})
