"""Normalisation layers: against torch's own where they overlap, and their defining properties."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labkit import models


def _copy_affine(ours: nn.Module, ref: nn.Module) -> None:
    with torch.no_grad():
        ours.weight.copy_(torch.randn(ours.weight.shape))
        ours.bias.copy_(torch.randn(ours.bias.shape))
        ref.weight.copy_(ours.weight)
        ref.bias.copy_(ours.bias)


def test_batch_norm_matches_torch_training_mode():
    torch.manual_seed(0)
    x = torch.randn(32, 7, dtype=torch.float64) * 3 + 1
    ours = models.BatchNorm(7).double()
    ref = nn.BatchNorm1d(7).double().train()
    _copy_affine(ours, ref)
    assert torch.allclose(ours(x), ref(x), atol=1e-12)
    # gradients too
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    (ours(xa) ** 3).sum().backward()
    (ref(xb) ** 3).sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-10)


def test_ghost_batch_norm_is_batch_norm_per_virtual_batch():
    x = torch.randn(24, 5, dtype=torch.float64)
    ghost = models.BatchNorm(5, virtual_batch=8, affine=False)
    whole = models.BatchNorm(5, affine=False)
    out = ghost(x)
    for k in range(3):
        assert torch.allclose(out[8 * k:8 * (k + 1)], whole(x[8 * k:8 * (k + 1)]), atol=1e-12)
    assert not torch.allclose(out, whole(x))
    with pytest.raises(ValueError, match="virtual_batch=8"):
        ghost(x[:20])


def test_batch_norm_refuses_one_example():
    with pytest.raises(ValueError, match="per-example"):
        models.BatchNorm(3)(torch.randn(1, 3))


def test_layer_norm_matches_torch():
    x = torch.randn(9, 11, dtype=torch.float64) * 2 - 1
    ours = models.LayerNorm(11).double()
    ref = nn.LayerNorm(11).double()
    _copy_affine(ours, ref)
    assert torch.allclose(ours(x), ref(x), atol=1e-12)


def test_layer_norm_output_does_not_depend_on_the_batch_but_batch_norm_does():
    net_ln = models.mlp(4, [16, 16], 2, norm="layer", seed=0).double()
    net_bn = models.mlp(4, [16, 16], 2, norm="batch", seed=0).double()
    x = torch.randn(8, 4, dtype=torch.float64)
    other = torch.cat([x[:1], torch.randn(7, 4, dtype=torch.float64)])
    assert (net_ln(x)[0] - net_ln(other)[0]).abs().max() < 1e-12
    assert (net_bn(x)[0] - net_bn(other)[0]).abs().max() > 1e-3


def test_weight_norm_invariance_and_orthogonal_gradient():
    layer = models.WeightNormDense(6, 4).double()
    with torch.no_grad():
        layer.v.copy_(torch.randn(4, 6))
    x = torch.randn(10, 6, dtype=torch.float64)
    y = layer(x)
    with torch.no_grad():
        layer.v.mul_(3.7)
    assert torch.allclose(layer(x), y, atol=1e-12)
    layer.zero_grad()
    (layer(x).sin()).sum().backward()
    # row by row, <grad_v, v> = 0
    assert (layer.v.grad * layer.v).sum(1).abs().max() < 1e-10
    assert layer.v.grad.abs().max() > 1e-3
