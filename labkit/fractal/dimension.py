"""Box-counting dimension of a set of pixels (e.g. the trainability boundary).

Cover the image with a grid of ``s x s`` boxes and count the boxes ``N(s)`` that
contain at least one pixel of the set; for a fractal ``N(s) ~ s^-D``, so the
dimension ``D`` is minus the slope of ``log N`` against ``log s`` (Falconer,
*Fractal Geometry*, 2003, ch. 3; the paper measures its boundaries this way).

The fit uses the scales where it is meaningful: boxes from ``min_size`` pixels
(the pixel scale itself is distorted by rasterisation) up to a quarter of the
shorter side (larger boxes are too few to count). Sizes are the powers of 2 and 3
in that range, each counted with the grid anchored at the image corner, so a set
drawn on a 2^k or 3^k pixel image is covered by aligned boxes.

>>> import numpy as np
>>> square = np.ones((256, 256), bool)
>>> round(box_counting_dimension(square)[0], 3)
2.0
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_count", "box_counting_dimension"]


def box_count(mask: np.ndarray, size: int) -> int:
    """Number of ``size x size`` boxes (grid anchored at the corner) containing a True pixel."""
    h, w = mask.shape
    ph, pw = -h % size, -w % size
    m = np.pad(mask, ((0, ph), (0, pw))) if ph or pw else mask
    return int(m.reshape(m.shape[0] // size, size, m.shape[1] // size, size).any(axis=(1, 3)).sum())


def _sizes(lo: int, hi: int, shape: tuple[int, int]) -> np.ndarray:
    """Powers of the base (2 or 3) that divides the image best, between lo and hi."""

    def powers(base: int) -> list[int]:
        return [base**k for k in range(0, 64) if lo <= base**k <= hi]

    two, three = powers(2), powers(3)
    fits3 = all(n % 3 == 0 for n in shape) and sum(n % 2 for n in shape) > 0
    return np.array(three if fits3 and len(three) >= 3 else two)


def box_counting_dimension(
    mask: np.ndarray, *, min_size: int = 2, max_size: int | None = None
) -> tuple[float, np.ndarray, np.ndarray]:
    """Box-counting dimension of the True pixels of a 2-D ``mask``.

    Returns ``(dimension, sizes, counts)``: the least-squares slope of ``-log N(s)``
    against ``log s`` over the valid sizes, and the sizes and counts it used.
    ``dimension`` is NaN when fewer than three sizes are valid or the set is empty.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D array, got shape {mask.shape}")
    mask = mask.astype(bool)
    if not isinstance(min_size, int) or min_size < 1:
        raise ValueError(f"min_size must be an int >= 1, got {min_size!r}")
    hi = min(mask.shape) // 4 if max_size is None else max_size
    sizes = _sizes(min_size, hi, mask.shape)
    counts = np.array([box_count(mask, int(s)) for s in sizes])
    valid = counts > 0
    sizes, counts = sizes[valid], counts[valid]
    if len(sizes) < 3:
        return float("nan"), sizes, counts
    slope = np.polyfit(np.log(sizes), np.log(counts), 1)[0]
    return float(-slope), sizes, counts
