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
        (dict(parameterization="muq"), "parameterization"),
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


# ---------------------------------------------------------------- init, residual nets


@pytest.mark.parametrize("shape", [(6, 6), (3, 10), (10, 3), (4, 2, 5)])
def test_orthogonal_has_orthonormal_rows_or_columns_and_gaussian_entry_variance(shape):
    w = models.orthogonal(shape, torch.Generator().manual_seed(0), torch.float64)
    out, inp = shape[-2:]
    if out <= inp:
        eye = torch.eye(out, dtype=torch.float64).expand(*shape[:-2], out, out)
        assert torch.allclose(w @ w.transpose(-2, -1), eye, atol=1e-12)
    else:  # tall: orthonormal columns scaled so that entries have variance 1/in, as N(0, 1/in)
        gram = w.transpose(-2, -1) @ w
        assert torch.allclose(gram, out / inp * torch.eye(inp, dtype=torch.float64), atol=1e-12)


def test_orthogonal_is_haar_distributed():
    # Haar: E[W] = 0 and every entry has variance 1/n (a QR without the sign fix biases the diagonal)
    w = models.orthogonal((4000, 3, 3), torch.Generator().manual_seed(1), torch.float64)
    diag = torch.diagonal(w, dim1=-2, dim2=-1)
    assert diag.mean().abs() < 0.03
    assert w.square().mean().item() == pytest.approx(1 / 3, rel=0.02)


def test_mlp_orthogonal_init_and_defaults_unchanged():
    a = models.mlp(8, [16, 16], 4, activation="tanh", init="orthogonal", weight_std=1.3, seed=0).double()
    w = a[2].weight.detach()
    assert torch.allclose(w @ w.T, 1.3**2 * torch.eye(16, dtype=torch.float64), atol=1e-5)
    tall = a[0].weight.detach()  # (16, 8): orthonormal columns, entries of variance 1.3^2 / 8
    assert torch.allclose(tall.T @ tall, 1.3**2 * 16 / 8 * torch.eye(8, dtype=torch.float64), atol=1e-5)
    # the default remains the historical Gaussian draw
    b = models.mlp(8, [16], 4, seed=0)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(b[0].weight.detach(), torch.randn(16, 8, generator=g) * (math.sqrt(2.0) / math.sqrt(8)))


def test_branch_scale_and_resmlp():
    assert models.branch_scale("1", 16) == 1.0
    assert models.branch_scale("1/sqrt(depth)", 16) == 0.25
    assert models.branch_scale("1/depth", 16) == 1 / 16
    assert models.branch_scale(0.3, 16) == 0.3
    with pytest.raises(ValueError, match="branch"):
        models.branch_scale("1/log(depth)", 4)
    net = models.resmlp(3, 12, 5, 2, seed=0)
    blocks = [m for m in net if isinstance(m, models.Residual)]
    assert len(blocks) == 5 and all(b.scale == pytest.approx(1 / math.sqrt(5)) for b in blocks)
    x = torch.randn(4, 3)
    h = net[0](x)
    assert torch.allclose(blocks[0](h), h + blocks[0].scale * blocks[0].branch(h))
    assert net(x).shape == (4, 2)
    assert torch.equal(models.resmlp(3, 12, 5, 2, seed=0)(x), net(x))


@pytest.mark.parametrize("norm", [None, "batch", "layer", "weight"])
def test_mlp_norm_options(norm):
    net = models.mlp(4, [8, 8], 3, norm=norm, seed=0)
    kinds = {type(m).__name__ for m in net}
    expected = {None: "Dense", "batch": "BatchNorm", "layer": "LayerNorm", "weight": "WeightNormDense"}[norm]
    assert expected in kinds
    assert net(torch.randn(6, 4)).shape == (6, 3)


def test_weight_norm_mlp_starts_as_the_plain_mlp():
    x = torch.randn(5, 4)
    plain = models.mlp(4, [8], 3, seed=2)
    wn = models.mlp(4, [8], 3, norm="weight", seed=2)
    assert torch.allclose(plain(x), wn(x), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(init="xavier"), "init='xavier' is not supported"),
        (dict(norm="group"), "norm='group' is not supported"),
        (dict(norm="layer", virtual_batch=4), "virtual_batch"),
        (dict(norm="batch", virtual_batch=1), "virtual_batch"),
    ],
)
def test_mlp_bad_norm_and_init(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.mlp(2, [8], 1, **kwargs)


def test_structure_refuses_norm_layers_and_accepts_residual_dense():
    from labkit import structure

    assert structure.supported(models.resmlp(3, 8, 2, 1, seed=0))
    for norm in ("batch", "layer", "weight"):
        assert not structure.supported(models.mlp(3, [8], 1, norm=norm, seed=0))
