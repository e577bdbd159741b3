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
    """Batch norm's first/last-layer gradient ratio grows > 1.10 per layer (halfway on a log scale between no growth
    and the mean-field rate sqrt(pi/(pi-1)) = 1.211); plain He init and layer norm, whose mean-field rate is 1, must
    fail the same per-layer threshold (a 2x bar over all depths was passed by layer norm's 1.68x: too weak)."""
    depths = [5, 10, 20, 40]
    per_layer = lambda r: math.exp(signal.log_slope(r, at=depths))  # noqa: E731
    bn = [_grad_ratio("batch", d, 32, seeds=3) for d in depths]
    assert np.all(np.diff(bn) > 0) and per_layer(bn) > 1.10
    for control in (None, "layer"):
        assert not per_layer([_grad_ratio(control, d, 32) for d in depths]) > 1.10


def _spread(net, batch, trials=8):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 32, generator=g, dtype=torch.float64)
    with torch.no_grad():
        outs = torch.stack([net(torch.cat([x0, torch.randn(batch - 1, 32, generator=g, dtype=torch.float64)]))[0]
                            for _ in range(trials)])
    return float((outs - outs.mean(0)).norm(dim=1).mean() / outs.mean(0).norm())


def test_batch_dependence_batch_vs_layer_vs_ghost():
    """Batch norm couples an example to its batch like a batch mean does: spread ~ B^-1/2 (log-log slope within
    0.15 of -0.5, not merely "decreasing"). Control: ghost BN with v = 8 normalises groups of 8 whatever B, so its
    spread does not follow 1/sqrt(B) and the same slope check fails. Layer norm does not couple at all."""
    def make(norm, v=None):
        return models.mlp(32, [64] * 4, 10, norm=norm, virtual_batch=v, seed=0).double()

    sizes = [8, 32, 128]
    bn = {b: _spread(make("batch"), b) for b in sizes}
    ghost = {b: _spread(make("batch", 8), b) for b in sizes}
    slope = lambda d: signal.log_slope([d[b] for b in sizes], at=np.log(sizes))  # noqa: E731
    assert max(_spread(make("layer"), b) for b in (8, 128)) < 1e-6
    assert min(bn.values()) > 1e-3 and abs(slope(bn) + 0.5) < 0.15
    assert not abs(slope(ghost) + 0.5) < 0.15  # control
    assert ghost[128] >= 2 * bn[128]


def test_residual_net_without_normalisation_has_a_mean_shift():
    """Brock et al.: without normalisation a ReLU residual net's squared channel mean outgrows the channel variance
    (positive ReLU outputs add a positive mean per block). Control: batch norm on the branch re-centres every
    branch, so mean^2 stays below the variance and the same check fails."""
    xs = torch.randn(256, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for seed in (0, 1):
        ratio = {}
        for norm in (None, "batch"):
            b = signal.layer_stats(models.resmlp(32, 128, 32, 10, branch=0.5, norm=norm, seed=seed).double(), xs).blocks
            ratio[norm] = b["mean_sq"][-1] / b["variance"][-1]
        assert ratio[None] > 1 and not ratio["batch"] > 1


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
