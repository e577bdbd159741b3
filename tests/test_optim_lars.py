"""LARS and LAMB against updates written out by hand (float64), the warm-up schedules, and use in fit."""

from __future__ import annotations

import math

import pytest
import torch

import labkit
from labkit.optim import LAMB, LARS, polynomial, warmup_fraction


def _params(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    b = torch.zeros(3, dtype=torch.float64)  # a zero bias: trust ratio 1 there
    grads = [(torch.randn(4, 3, generator=gen, dtype=torch.float64), torch.randn(3, generator=gen,
                                                                                dtype=torch.float64))
             for _ in range(4)]
    return w, b, grads


def _run(opt_cls, w, b, grads, **kw):
    pw, pb = torch.nn.Parameter(w.clone()), torch.nn.Parameter(b.clone())
    opt = opt_cls([pw, pb], **kw)
    for gw, gb in grads:
        pw.grad, pb.grad = gw.clone(), gb.clone()
        opt.step()
    return pw.detach(), pb.detach()


def _ratio(wn, un):
    return wn / un if wn > 0 and un > 0 else 1.0


def test_lars_matches_the_update_written_out():
    w, b, grads = _params()
    lr, mom, wd, eta = 0.7, 0.9, 1e-2, 1e-3
    got = _run(LARS, w, b, grads, lr=lr, momentum=mom, weight_decay=wd, trust_coefficient=eta)
    params, vel = [w.clone(), b.clone()], [torch.zeros_like(w), torch.zeros_like(b)]
    for gs in grads:
        for k, g in enumerate(gs):
            p = params[k]
            wn, gn = float(p.norm()), float(g.norm())
            local = eta * _ratio(wn, gn + wd * wn)
            vel[k] = mom * vel[k] + lr * local * (g + wd * p)
            params[k] = p - vel[k]
    for a, e in zip(got, params):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-14)


def test_lamb_matches_the_update_written_out():
    w, b, grads = _params(1)
    lr, (b1, b2), eps, wd = 0.01, (0.9, 0.999), 1e-6, 0.1
    got = _run(LAMB, w, b, grads, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    params = [w.clone(), b.clone()]
    m = [torch.zeros_like(w), torch.zeros_like(b)]
    v = [torch.zeros_like(w), torch.zeros_like(b)]
    for t, gs in enumerate(grads, start=1):
        for k, g in enumerate(gs):
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            r = (m[k] / (1 - b1**t)) / (torch.sqrt(v[k] / (1 - b2**t)) + eps)
            u = r + wd * params[k]
            params[k] = params[k] - lr * _ratio(float(params[k].norm()), float(u.norm())) * u
    for a, e in zip(got, params):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-14)


def test_the_trust_ratio_makes_the_step_scale_free():
    """LARS's step size does not depend on the gradient's scale (the point of the trust ratio); SGD's does."""
    w, b, grads = _params(2)
    small = _run(LARS, w, b, [(g[0], g[1]) for g in grads[:1]], lr=1.0, momentum=0.0)
    large = _run(LARS, w, b, [(1e3 * g[0], 1e3 * g[1]) for g in grads[:1]], lr=1.0, momentum=0.0)
    torch.testing.assert_close(small[0], large[0], rtol=1e-12, atol=1e-14)
    sgd_small = _run(torch.optim.SGD, w, b, grads[:1], lr=1.0)
    sgd_large = _run(torch.optim.SGD, w, b, [(1e3 * g[0], 1e3 * g[1]) for g in grads[:1]], lr=1.0)
    assert not torch.allclose(sgd_small[0], sgd_large[0])


def test_lars_and_lamb_train_in_fit():
    ds = labkit.data.teacher_student(64, dim=3, teacher_width=4, seed=0)
    for opt, lr in ((LARS, 5.0), (LAMB, 0.01)):
        model = labkit.models.mlp(3, [16], 1, activation="tanh", seed=0)
        hist = labkit.train.fit(model, ds, optimizer=opt, lr=lr, steps=60, progress=False)
        assert hist.eval["loss"][-1] < 0.5 * hist.eval["loss"][0]


def test_schedules():
    f = polynomial(100, warmup_steps=10, power=2.0)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx((1 - 45 / 90) ** 2) and f(100) == 0.0
    g = warmup_fraction(0.05, 200)  # 10 steps
    assert [g(t) for t in (0, 4, 9, 50)] == pytest.approx([0.1, 0.5, 1.0, 1.0])


@pytest.mark.parametrize("bad", [dict(lr=-1.0), dict(momentum=1.0), dict(trust_coefficient=0.0),
                                 dict(weight_decay=-0.1)])
def test_lars_refuses_bad_settings(bad):
    p = torch.nn.Parameter(torch.ones(2))
    kw = dict(lr=1.0) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        LARS([p], **kw)


def test_lamb_refuses_bad_betas_and_schedules_bad_fractions():
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="betas"):
        LAMB([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="fraction"):
        warmup_fraction(1.5, 100)
    assert math.isfinite(polynomial(10)(3))
