"""Building blocks: the sliders and dropdowns every labkit panel is made of.

All controls report a value only when released (``continuous_update=False``),
so dragging a slider restarts a run once, not fifty times. Powers of two (width,
batch size) sit on a ``SelectionSlider``; the learning rate on a log-scale
slider, because what matters is its order of magnitude.
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as widgets

from labkit import _checks
from labkit.optim import OPTIMIZERS

__all__ = [
    "DATASETS",
    "batch_size_slider",
    "batch_size_value",
    "dataset_dropdown",
    "depth_slider",
    "int_slider",
    "lr_slider",
    "optimizer_dropdown",
    "pow2_slider",
    "steps_slider",
    "width_slider",
]

#: Offline datasets a panel offers, with the keyword arguments they are built with.
DATASETS: dict[str, dict[str, Any]] = {
    "gaussian_mixture": {"dim": 2, "classes": 3},
    "two_moons": {},
    "spirals": {},
    "teacher_student": {"dim": 8},
    "digits": {},
}

_STYLE = {"description_width": "110px"}
_LAYOUT = {"width": "380px"}


def _common(description: str) -> dict[str, Any]:
    return dict(description=description, continuous_update=False, style=_STYLE, layout=_LAYOUT)


def lr_slider(
    value: float = 0.1, min: float = 1e-4, max: float = 10.0, description: str = "learning rate"
) -> widgets.FloatLogSlider:
    """A log-scale learning-rate slider from ``min`` to ``max`` (20 ticks per decade)."""
    _checks.positive("min", min)
    _checks.positive("max", max)
    if not min <= value <= max:
        raise ValueError(f"value must lie in [min, max] = [{min}, {max}], got {value}")
    return widgets.FloatLogSlider(value=value, base=10, min=math.log10(min), max=math.log10(max), step=0.05,
                                  readout_format=".3g", **_common(description))


def int_slider(description: str, value: int, min: int, max: int, step: int = 1) -> widgets.IntSlider:
    """An integer slider (released values only)."""
    _checks.in_range("value", value, min, max)
    return widgets.IntSlider(value=value, min=min, max=max, step=step, **_common(description))


def pow2_slider(description: str, value: int, min: int, max: int, extra: dict[str, Any] | None = None
                ) -> widgets.SelectionSlider:
    """A slider over the powers of two in ``[min, max]`` (plus ``extra`` labelled options at the end)."""
    options = [(str(2**k), 2**k) for k in range(int(math.log2(min)), int(math.log2(max)) + 1) if min <= 2**k <= max]
    options += list((extra or {}).items())
    if value not in [v for _, v in options]:
        raise ValueError(f"value must be one of {[v for _, v in options]}, got {value!r}")
    return widgets.SelectionSlider(options=options, value=value, **_common(description))


def width_slider(value: int = 32, min: int = 4, max: int = 1024) -> widgets.SelectionSlider:
    """Hidden-layer width, in powers of two."""
    return pow2_slider("width", value, min, max)


def depth_slider(value: int = 2, min: int = 1, max: int = 8) -> widgets.IntSlider:
    """Number of hidden layers."""
    return int_slider("depth", value, min, max)


def batch_size_slider(value: int | str | None = 64, min: int = 1, max: int = 1024) -> widgets.SelectionSlider:
    """Batch size in powers of two, or ``"full"`` (the whole training set each step; ``None`` means the same).

    Convert with :func:`batch_size_value` before passing it to ``fit``.
    """
    return pow2_slider("batch size", "full" if value is None else value, min, max, extra={"full": "full"})


def batch_size_value(value: int | str | None, n: int) -> int | None:
    """A batch-size control's value as ``fit`` takes it: None for "full" or any size >= ``n``."""
    return None if value in (None, "full") or value >= n else int(value)


def steps_slider(value: int = 300, min: int = 50, max: int = 5000, step: int = 50) -> widgets.IntSlider:
    """Number of training steps."""
    return int_slider("steps", value, min, max, step)


def dataset_dropdown(value: str = "gaussian_mixture", options: list[str] | None = None) -> widgets.Dropdown:
    """A choice of offline datasets (:data:`DATASETS` by default)."""
    options = list(options or DATASETS)
    _checks.choice("value", value, options)
    return widgets.Dropdown(options=options, value=value, description="dataset", style=_STYLE, layout=_LAYOUT)


def optimizer_dropdown(value: str = "sgd") -> widgets.Dropdown:
    """A choice among labkit's optimisers (``sgd``, ``momentum``, ``adam``, ``adamw``)."""
    _checks.choice("value", value, OPTIMIZERS)
    return widgets.Dropdown(options=list(OPTIMIZERS), value=value, description="optimizer", style=_STYLE,
                            layout=_LAYOUT)
