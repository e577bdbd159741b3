"""Exercises of notebook 10 (width transfer): muP's learning-rate multipliers, the coordinate-check slope."""

from __future__ import annotations

import numpy as np

from labkit import mup
from labkit.exercises._core import Wrong, call_student, exercise, expect_close


@exercise(
    "width.mup_lr_multipliers",
    title="muP's per-layer learning-rate multipliers",
    hints=[
        "m = width / base_width. Table 3 of Tensor Programs V gives (input, hidden, output) weight lr factors.",
        "SGD: (m, 1, 1/m). Adam: (1, 1/m, 1/m).",
    ],
)
def _multipliers(fn) -> None:
    for m in (2.0, 16.0, 0.5):
        for optimizer in ("sgd", "adam"):
            got = call_student(fn, m, optimizer)
            want = [row["lr"] for row in mup.multipliers(3, m, optimizer)]
            arr = np.asarray(got, dtype=float) if np.ndim(got) == 1 and len(got) == 3 else None
            if arr is None:
                raise Wrong("return three numbers: the (input, hidden, output) lr multipliers")
            other = [row["lr"] for row in mup.multipliers(3, m, "adam" if optimizer == "sgd" else "sgd")]
            if not np.allclose(arr, want) and np.allclose(arr, other):
                raise Wrong(f"those are the multipliers for {'adam' if optimizer == 'sgd' else 'sgd'}: "
                            "SGD's step scales with the gradient, Adam's does not")
            expect_close(arr, want, rtol=1e-9, what=f"the {optimizer} multipliers at m={m:g}")


@exercise(
    "width.slope",
    title="The coordinate-check slope",
    hints=[
        "Fit log(value) = a + b log(width) by least squares; b is the slope.",
        "np.polyfit(np.log(widths), np.log(values), 1)[0]",
    ],
)
def _slope(fn) -> None:
    rng = np.random.default_rng(2)
    for b in (0.5, 0.0, -1.0):
        widths = np.array([32, 64, 128, 256, 512.0])
        values = 0.3 * widths**b * np.exp(rng.normal(0, 0.05, size=5))
        got = call_student(fn, widths.copy(), values.copy())
        want = float(mup.slopes(widths, values[:, None])[0])
        if np.ndim(got) == 0 and np.isfinite(float(got)):
            lin = np.polyfit(widths, values, 1)[0]
            if np.isclose(float(got), lin):
                raise Wrong("fit on log-log axes: a power law width^b is a straight line of slope b only there")
        expect_close(got, want, rtol=1e-6, atol=1e-9, what=f"the slope (true exponent {b})")
