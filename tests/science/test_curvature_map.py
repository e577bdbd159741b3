"""The curvature map of 03_fractal_boundary: where the trainability boundary sits on the preconditioned sharpness.

With per-layer learning rates the gradient step is preconditioned: near a point it is stable iff the top eigenvalue
of D^(1/2) H D^(1/2) (D the per-parameter rates) is below 2 (the quadratic model). Above 2 a network trained on the
squared loss can still converge after a catapult up to about 4 (Lewkowycz et al. 2020). So, at initialisation:
cells well below 2 (< 1.5) converge, and the boundary between the phases lies in the band [2, 4] (most of its
cells; "most" = a majority, a threshold from the count, not tuned). Control: the same check with the band scaled
by 0.25 or 4 puts most boundary cells outside it, because the boundary's location is set by the curvature's
actual scale, not by any band of the same width.

Divergence: of the cells whose full number is far above the limit (> 16) only about half diverge here, because tanh
bounds the hidden units: a huge input-layer rate saturates them instead. The readout cannot escape that way: the
loss is exactly quadratic in it, so every cell whose readout block alone (lr_out x lambda_max(H_readout)) is above
the catapult limit diverges. Control: the same check on the input layer's own number, which has no such meaning,
fails (about a third of those cells diverge).
"""

import pytest

from labkit import fractal
from labkit.fractal import curvature_map

MOST = 0.5  # a majority of the boundary cells
WINDOW = ((0.1, 1e3), (0.1, 1e3))


@pytest.fixture(scope="module")
def scanned():
    return fractal.scan("quick", *WINDOW, 32, progress=False, measure="sharpness")


def test_cells_below_the_stable_limit_converge_and_the_boundary_lies_in_the_catapult_band(scanned):
    out = curvature_map.band_check(scanned.converged, scanned.sharpness)
    assert out["n_below"] > 100 and out["below"] == 1.0, out
    assert out["n_boundary"] > 30 and out["in_band"] > MOST, out


@pytest.mark.parametrize("scale", [0.25, 4.0])
def test_mis_scaled_band_control_puts_the_boundary_outside(scanned, scale):
    """The same check with the band 4x too low or too high: most boundary cells fall outside it."""
    out = curvature_map.band_check(scanned.converged, scanned.sharpness, scale=scale)
    assert not out["in_band"] > MOST, out


def _diverged_above_the_limit(scanned, block):
    own = curvature_map.block_sharpness("quick", *WINDOW, 32, block=block)
    far = own > curvature_map.CATAPULT
    return int(far.sum()), float((~scanned.converged[far]).mean())


def test_every_cell_whose_readout_alone_is_above_the_catapult_limit_diverges(scanned):
    n, diverged = _diverged_above_the_limit(scanned, "readout")
    assert n > 50 and diverged == 1.0, (n, diverged)


def test_input_layer_control_the_same_check_fails(scanned):
    """The input layer's own number above the limit: tanh saturates instead of diverging, so the check fails."""
    n, diverged = _diverged_above_the_limit(scanned, "input")
    assert n > 50 and not diverged == 1.0, (n, diverged)
