import math

import pytest
import torch
from torch import nn

from labkit import models


def test_mlp_shapes_and_seed():
    a = models.mlp(3, [8, 5], 2, seed=0)
    b = models.mlp(3, [8, 5], 2, seed=0)
    c = models.mlp(3, [8, 5], 2, seed=1)
    x = torch.randn(4, 3)
    assert a(x).shape == (4, 2)
    assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))
    assert sum(p.numel() for p in a.parameters()) == 3 * 8 + 8 + 8 * 5 + 5 + 5 * 2 + 2


@pytest.mark.parametrize("parameterization", ["standard", "ntk", "mean_field"])
def test_parameterizations_have_the_documented_scales(parameterization):
    torch.manual_seed(0)
    width = 2000
    net = models.mlp(50, [width], 1, activation="identity", parameterization=parameterization,
                     weight_std=1.0, bias=False, seed=0).double()
    first, readout = net[0], net[2]
    if parameterization == "standard":
        assert first.weight_mult == 1.0
        assert abs(first.weight.std().item() - 1 / math.sqrt(50)) < 0.01 / math.sqrt(50) * 5
    elif parameterization == "ntk":
        assert first.weight_mult == pytest.approx(1 / math.sqrt(50))
        assert readout.weight_mult == pytest.approx(1 / math.sqrt(width))
        assert abs(first.weight.std().item() - 1) < 0.02
    else:
        assert first.weight_mult == pytest.approx(1 / math.sqrt(50))
        assert readout.weight_mult == pytest.approx(1 / width)
    # Dense agrees with nn.Linear applied to the scaled weights
    x = torch.randn(7, 50, dtype=torch.float64)
    ref = nn.functional.linear(x, first.weight * first.weight_mult)
    assert torch.allclose(first(x), ref)


def test_ntk_parameterization_preactivation_variance():
    # NTK param: a hidden pre-activation has variance sigma_w^2 |x|^2 / d + sigma_b^2 at init
    net = models.mlp(10, [4000], 1, activation="relu", parameterization="ntk", weight_std=1.5, bias_std=0.3, seed=1)
    x = torch.ones(1, 10)
    z = net[0](x)
    assert z.var().item() == pytest.approx(1.5**2 + 0.3**2, rel=0.1)


def test_cnn_accepts_flat_and_images():
    net = models.cnn(8, 1, 10, width=4, seed=0)
    x = torch.rand(5, 64)
    assert net(x).shape == (5, 10)
    assert torch.equal(net(x), net(x.reshape(5, 1, 8, 8)))
    assert models.cnn(28, 1, 10, width=4, seed=0)(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_param_spec_roundtrip_and_call():
    net = models.mlp(3, [4], 2, seed=0).double()
    params = models.param_dict(net)
    spec = models.ParamSpec.of(net)
    assert spec.numel == sum(p.numel() for p in net.parameters())
    assert list(spec.names) == [n for n, _ in net.named_parameters()]
    vec = spec.flatten(params)
    back = spec.unflatten(vec)
    assert all(torch.equal(back[k], params[k]) for k in params)
    # batched flatten/unflatten keeps leading dims
    stacked = {k: torch.stack([v, 2 * v]) for k, v in params.items()}
    bvec = spec.flatten(stacked)
    assert bvec.shape == (2, spec.numel) and torch.equal(bvec[1], 2 * vec)
    assert torch.equal(spec.unflatten(bvec)[spec.names[0]][1], 2 * params[spec.names[0]])
    x = torch.randn(5, 3, dtype=torch.float64)
    assert torch.allclose(models.call(net, params, x), net(x))
    doubled = {k: 2 * v for k, v in params.items()}
    assert not torch.allclose(models.call(net, doubled, x), net(x))
    with pytest.raises(ValueError, match="entries"):
        spec.unflatten(torch.zeros(spec.numel + 1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(activation="swish"), "activation='swish' is not supported; choose one of"),
        (dict(parameterization="mup"), "parameterization"),
        (dict(widths=[8, 0]), r"widths\[1\]"),
        (dict(in_dim=0), "in_dim"),
    ],
)
def test_mlp_bad_input(kwargs, match):
    args = dict(in_dim=2, widths=[8], out_dim=1) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        models.mlp(**args)


def test_param_dict_rejects_frozen_model():
    net = models.mlp(2, [3], 1)
    for p in net.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        models.param_dict(net)
