"""Deprecated alias module: renamed to labkit.batchsize.rules (the batch-size scaling rules).

No two labkit modules share a name; the old path keeps the same names for one release, each warning once."""

from labkit import _deprecated

__deprecated__ = "labkit.batchsize.rules"
_NAMES = ("RULES", "compare_rule", "scale_adam", "scale_beta2", "scale_ema", "scale_lr", "warmup")
__getattr__ = _deprecated.moved(__name__, {n: f"labkit.batchsize.rules:{n}" for n in _NAMES})
