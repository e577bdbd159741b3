"""Gradient instruments against a dense per-example reference (float64, 1e-10), and the tracker in fit."""

from __future__ import annotations

import math

import pytest
import torch

import labkit
from labkit.batchsize import GradientInstruments, gradient_tests


def _problem(classification: bool = False, n: int = 12, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    if classification:
        y = torch.randint(0, 3, (n,), generator=gen)
        model = labkit.models.mlp(3, [5], 3, activation="tanh", seed=seed).double()
        loss = "cross_entropy"
    else:
        y = torch.randn(n, 2, generator=gen, dtype=torch.float64)
        model = labkit.models.mlp(3, [5], 2, activation="tanh", seed=seed).double()
        loss = "mse"
    return model, loss, (x, y)


def _dense_reference(model, loss, data):
    """Per-example gradients one backward pass at a time, the dense Hessian, and every formula written out."""
    x, y = data
    params = [p for p in model.parameters()]
    loss_fn = labkit.losses.resolve(loss, None)
    rows = []
    for i in range(len(x)):
        li = loss_fn(model(x[i : i + 1]), y[i : i + 1])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(li, params)]))
    g = torch.stack(rows)
    b = len(x)
    gb = g.mean(0)
    g2 = gb @ gb
    var = sum(((gi - gb) @ (gi - gb)) for gi in g) / (b - 1)
    proj = torch.stack([gi @ gb for gi in g])
    var_proj = sum((p - proj.mean()) ** 2 for p in proj) / (b - 1)
    perp = torch.stack([gi - (gi @ gb) / g2 * gb for gi in g])
    var_perp = sum(v @ v for v in perp) / (b - 1)

    flat0 = torch.cat([p.detach().reshape(-1) for p in params])
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in params]

    def mean_loss(flat):
        chunks, out = torch.split(flat, [math.prod(s) for s in shapes]), {}
        for n, c, s in zip(names, chunks, shapes):
            out[n] = c.reshape(s)
        return loss_fn(torch.func.functional_call(model, out, (x,)), y)

    H = torch.autograd.functional.hessian(mean_loss, flat0)
    S = sum(torch.outer(gi - gb, gi - gb) for gi in g) / (b - 1)
    return {
        "g": g, "names": names, "sizes": [math.prod(s) for s in shapes],
        "norm_test": math.sqrt(var / (b * g2)),
        "inner_product_test": math.sqrt(var_proj / (b * g2**2)),
        "orthogonality_test": math.sqrt(var_perp / (b * g2)),
        "b_simple": float(var / g2),
        "b_noise": float(torch.trace(H @ S) / (gb @ H @ gb)),
        "lambda_max": float(torch.linalg.eigvalsh(H)[-1]),
    }


@pytest.mark.parametrize("classification", [False, True])
def test_instruments_match_the_dense_reference(classification):
    model, loss, data = _problem(classification)
    ref = _dense_reference(model, loss, data)
    got = gradient_tests(model, loss, data, curvature=True, tol=1e-12)
    for key in ("norm_test", "inner_product_test", "orthogonality_test", "b_simple", "b_noise", "lambda_max"):
        assert getattr(got, key) == pytest.approx(ref[key], rel=1e-10, abs=0), key
    # per-layer SNR: B |g_B,l|^2 / tr(S_l) with the layer's rows of the dense gradients
    g, b = ref["g"], len(data[0])
    blocks = g.split(ref["sizes"], dim=1)
    for layer in got.snr:
        cols = [blk for n, blk in zip(ref["names"], blocks) if n.rsplit(".", 1)[0] == layer]
        gl = torch.cat(cols, 1)
        want = b * float(gl.mean(0) @ gl.mean(0)) / float(((gl - gl.mean(0)) ** 2).sum() / (b - 1))
        assert got.snr[layer] == pytest.approx(want, rel=1e-10), layer
    assert sorted(got.snr) == sorted({n.rsplit(".", 1)[0] for n in ref["names"]})


def test_b_simple_is_the_norm_tests_suggested_batch():
    model, loss, data = _problem()
    t = gradient_tests(model, loss, data)
    assert t.b_simple == pytest.approx(t.batch_size * t.norm_test**2, rel=1e-12)
    assert t.suggested_batch(0.5) == math.ceil(t.b_simple / 0.25)


def test_on_the_whole_data_b_simple_is_n_over_n_minus_1_times_noise_scale():
    model, loss, data = _problem(n=20)
    ns = labkit.batchsize.noise_scale(model, loss, data)
    assert gradient_tests(model, loss, data).b_simple == pytest.approx(ns.b_simple * 20 / 19, rel=1e-10)


def test_identical_examples_have_no_noise():
    """A batch of one example repeated: every g_i = g_B, so all three tests pass at 0 and B_simple = 0."""
    model, loss, (x, y) = _problem()
    t = gradient_tests(model, loss, (x[:1].repeat(6, 1), y[:1].repeat(6, 1)))
    assert t.norm_test < 1e-7 and t.inner_product_test < 1e-7 and t.b_simple < 1e-14


def test_zero_gradients_are_undefined_not_an_error():
    """At a minimum with zero residuals every g_i = 0: the tests divide 0 by 0 and say so with NaN."""
    x = torch.randn(6, 2, dtype=torch.float64)
    model = labkit.models.mlp(2, [], 1, bias=False, seed=0).double()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    t = gradient_tests(model, "mse", (x, torch.zeros(6, 1, dtype=torch.float64)))
    assert t.grad_sq_norm == 0
    assert all(math.isnan(v) for v in (t.norm_test, t.inner_product_test, t.orthogonality_test, t.b_simple))


def test_memory_is_refused_up_front_naming_what_fits():
    model, loss, data = _problem(n=12)
    p = sum(t.numel() for t in model.parameters())
    with pytest.raises(ValueError, match=r"max_memory.*about 2 examples fit"):
        gradient_tests(model, loss, data, max_memory=p * 8 * 2 + 1)
    with pytest.raises(ValueError, match="about 0 examples fit"):
        gradient_tests(model, loss, data, curvature=True, max_memory=p * 8 * 2)
    assert gradient_tests(model, loss, data, max_memory=p * 8 * 12).batch_size == 12


def test_bad_inputs_are_refused_with_the_argument_named():
    model, loss, (x, y) = _problem()
    with pytest.raises(ValueError, match="at least 2"):
        gradient_tests(model, loss, (x[:1], y[:1]))
    with pytest.raises(ValueError, match="batch_size"):
        GradientInstruments(5, batch_size=1)
    with pytest.raises(ValueError, match="every"):
        GradientInstruments(0)


def test_tracker_records_in_fit_and_measures_the_drawn_batch():
    model, loss, data = _problem(n=32)
    tracker = GradientInstruments(5, batch_size=8, curvature=True, seed=3)
    hist = labkit.train.fit(model, data, loss=loss, lr=0.05, steps=11, callbacks=[tracker], progress=False)
    assert tracker.steps == [0, 5, 10]
    assert hist.tracked["norm_test"]["steps"] == [0, 5, 10]
    assert all(r["batch_size"] == 8 for r in tracker.records)
    # the record at step 10 equals a direct measurement on the same batch at the final parameters
    x, y = data
    idx = torch.randperm(32, generator=torch.Generator().manual_seed(13))[:8]
    fresh = labkit.models.mlp(3, [5], 2, activation="tanh", seed=0).double()
    labkit.train.fit(fresh, data, loss=loss, lr=0.05, steps=10, progress=False)
    direct = gradient_tests(fresh, loss, (x[idx], y[idx]))
    assert tracker.norm_test[-1] == pytest.approx(direct.norm_test, rel=1e-10)
