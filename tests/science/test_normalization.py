"""Notebook 06's claims at test size, each with the negative control that must fail (fixed seeds)."""

from __future__ import annotations

import math

import numpy as np
import torch

from labkit import data, models, signal

X = torch.randn(128, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_batch_norm_removes_the_depth_growth_of_the_forward_signal():
    for sw2 in (0.5, 8.0):
        slopes = {}
        for norm in (None, "batch"):
            nets = [models.mlp(32, [256] * 30, 10, norm=norm, weight_std=math.sqrt(sw2), bias_std=0.0, seed=s).double()
                    for s in range(4)]
            q = np.mean([signal.layer_stats(n, X).second_moment[1:-1] for n in nets], axis=0)
            slopes[norm] = signal.log_slope(q)
        flat = lambda s, sw2=sw2: abs(s) < 0.05 * abs(math.log(sw2 / 2))  # noqa: E731
        assert flat(slopes["batch"])
        assert not flat(slopes[None])  # control


def _grad_ratio(norm, depth, batch, seeds=8):
    first, last = [], []
    for s in range(seeds):
        net = models.mlp(32, [128] * depth, 10, norm=norm, bias_std=0.0, seed=s).double()
        xb = torch.randn(batch, 32, generator=torch.Generator().manual_seed(100 + s), dtype=torch.float64)
        g = signal.layer_stats(net, xb, seed=s).grad_norm
        first.append(g[0] ** 2)
        last.append(g[-2] ** 2)
    return float(np.sqrt(np.mean(first) / np.mean(last)))


def test_batch_norm_gradients_explode_with_depth_at_init():
    depths = [5, 10, 20, 40]
    bn = [_grad_ratio("batch", d, 32, seeds=3) for d in depths]
    assert np.all(np.diff(bn) > 0)
    for control in (None, "layer"):
        r = [_grad_ratio(control, d, 32) for d in depths]
        assert max(r) / min(r) < 2
    assert not max(bn) / min(bn) < 2


def _spread(net, batch, trials=8):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 32, generator=g, dtype=torch.float64)
    with torch.no_grad():
        outs = torch.stack([net(torch.cat([x0, torch.randn(batch - 1, 32, generator=g, dtype=torch.float64)]))[0]
                            for _ in range(trials)])
    return float((outs - outs.mean(0)).norm(dim=1).mean() / outs.mean(0).norm())


def test_batch_dependence_batch_vs_layer_vs_ghost():
    def make(norm, v=None):
        return models.mlp(32, [64] * 4, 10, norm=norm, virtual_batch=v, seed=0).double()

    bn = {b: _spread(make("batch"), b) for b in (8, 32, 128)}
    assert max(_spread(make("layer"), b) for b in (8, 128)) < 1e-6
    assert min(bn.values()) > 1e-3 and bn[8] > bn[32] > bn[128]
    assert _spread(make("batch", 8), 128) >= 2 * bn[128]
    assert not _spread(make("batch", 128), 128) >= 2 * bn[128]  # control: v = B is plain batch norm


def test_weight_norm_pythagoras_and_plain_control():
    blobs = data.gaussian_mixture(n=256, dim=8, classes=4, seed=0)
    x = blobs.inputs.double()

    def errors(net, weight, lr=0.5, steps=30):
        params = list(net.parameters())
        k = next(i for i, p in enumerate(params) if p is weight)
        errs, norms = [], [float(weight.detach().norm())]
        for _ in range(steps):
            grads = torch.autograd.grad(torch.nn.functional.cross_entropy(net(x), blobs.targets), params)
            with torch.no_grad():
                before = float(weight.square().sum())
                for p, gp in zip(params, grads):
                    p.sub_(lr * gp)
                step_sq = lr**2 * float(grads[k].square().sum())
                errs.append(abs(float(weight.square().sum()) - before - step_sq) / before)
                norms.append(float(weight.norm()))
        return max(errs), norms

    wn = models.mlp(8, [32, 32], 4, norm="weight", seed=0).double()
    with torch.no_grad():
        wn[2].v.mul_(0.2)
    err, norms = errors(wn, wn[2].v)
    assert err < 1e-9 and np.all(np.diff(norms) >= 0) and norms[-1] > 1.5 * norms[0]
    plain = models.mlp(8, [32, 32], 4, seed=0).double()
    assert not errors(plain, plain[2].weight)[0] < 1e-9  # control
