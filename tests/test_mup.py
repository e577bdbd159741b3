"""labkit.mup: the muP table realised by multipliers (effective init and lr per layer), the coordinate check."""

import math

import numpy as np
import pytest
import torch

import labkit
from labkit import mup


def _effective(net):
    """Per Dense layer: (std of the effective weight w = c theta, c)."""
    dense = [m for m in net if isinstance(m, labkit.models.Dense)]
    return [(float(m.weight.detach().std() * m.weight_mult), m.weight_mult, m.bias_mult) for m in dense]


def test_mup_equals_standard_at_the_base_width():
    sp = labkit.models.mlp(5, [32, 32], 3, seed=0)
    for opt in ("sgd", "adam"):
        net = mup.mlp(5, [32, 32], 3, optimizer=opt, base_width=32, seed=0)
        x = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(net(x), sp(x), atol=1e-6)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_effective_init_follows_the_table(opt):
    n, m = 1024, 1024 / 32
    net = mup.mlp(16, [n, n], 4, optimizer=opt, base_width=32, seed=0)
    (s_in, *_), (s_hid, *_), (s_out, *_) = _effective(net)
    sw = math.sqrt(2)
    assert s_in == pytest.approx(sw / math.sqrt(16), rel=0.05)
    assert s_hid == pytest.approx(sw / math.sqrt(n), rel=0.05)
    assert s_out == pytest.approx(sw / math.sqrt(n * m), rel=0.1)


def _lr_multiplier(net, layer, opt, lr=1e-3):
    """The change of the effective weight w = c theta per unit lr after one step, relative to a plain step."""
    dense = [m for m in net if isinstance(m, labkit.models.Dense)][layer]
    theta = dense.weight.detach().clone()
    g = torch.randn_like(theta)  # dL/dw
    c = dense.weight_mult
    if opt == "sgd":
        new = theta - lr * c * g  # dL/dtheta = c dL/dw
        return float(((new - theta) * c).norm() / (lr * g.norm()))
    opt_ = torch.optim.Adam([torch.nn.Parameter(theta.clone())], lr=lr)
    p = opt_.param_groups[0]["params"][0]
    p.grad = c * g
    opt_.step()
    plain = torch.nn.Parameter(theta.clone())
    o2 = torch.optim.Adam([plain], lr=lr)
    plain.grad = g
    o2.step()
    return float(((p.detach() - theta) * c).norm() / (plain.detach() - theta).norm())


@pytest.mark.parametrize("opt,expected", [("sgd", (32.0, 1.0, 1 / 32)), ("adam", (1.0, 1 / 32, 1 / 32))])
def test_effective_learning_rates_follow_the_table(opt, expected):
    net = mup.mlp(16, [1024, 1024], 4, optimizer=opt, base_width=32, seed=0)
    for layer, want in enumerate(expected):
        assert _lr_multiplier(net, layer, opt) == pytest.approx(want, rel=1e-3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        mup.mlp(2, [8], 1, optimizer="lion")
    with pytest.raises(ValueError, match="at least one hidden layer"):
        mup.mlp(2, [], 1)
    with pytest.raises(ValueError, match="base_width"):
        mup.mlp(2, [8], 1, base_width=0)
    with pytest.raises(ValueError, match="at least 2"):
        mup.coord_check(lambda w, s: mup.mlp(2, [w], 1, seed=s), [8], labkit.data.teacher_student(8, dim=2), lr=0.1)


def test_slopes_of_known_power_laws():
    w = np.array([8, 16, 32, 64.0])
    vals = np.stack([w**0.5, w**0, w**-1], 1)
    assert mup.slopes(w, vals) == pytest.approx([0.5, 0, -1])


def test_coord_check_shapes_and_mup_at_base_width_equals_standard():
    ds = labkit.data.gaussian_mixture(32, dim=4, classes=3, seed=0)
    sp = mup.coord_check(lambda w, s: labkit.models.mlp(4, [w], 3, seed=s), [32, 64], ds, lr=0.1, steps=2)
    mp = mup.coord_check(lambda w, s: mup.mlp(4, [w], 3, seed=s), [32, 64], ds, lr=0.1, steps=2)
    assert sp["size"].shape == sp["change"].shape == (2, 2)
    assert np.allclose(sp["change"][0], mp["change"][0])  # at the base width the two are the same network
