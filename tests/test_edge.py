"""labkit.edge: the preconditioned Hessian against a dense P^-1/2 H P^-1/2, thresholds against quadratics."""

import math

import pytest
import torch
import torch.nn.functional as F

import labkit
from labkit import edge, linalg
from labkit.curvature import HessianOperator
from labkit.risk import Risk
from labkit.testing import assert_matches_dense, dense_hessian


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    y = F.one_hot(torch.randint(0, 2, (12,), generator=g), 2).double()
    model = labkit.models.mlp(3, [5], 2, activation="tanh", seed=seed).double()
    return model, (x, y)


def _diag(n, seed=0):
    return torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 10 + 0.01


def test_preconditioned_operator_matches_explicit_sandwich():
    model, data = _problem()
    risk = Risk(model, "mse", data)
    P = _diag(risk.spec.numel)
    H = dense_hessian(risk)
    S = torch.diag(P.rsqrt())
    assert_matches_dense(edge.Preconditioned(HessianOperator(risk), P), S @ H @ S)
    # the eigenvalues of P^-1/2 H P^-1/2 are those of P^-1 H
    top = linalg.top_eigenvalues(edge.Preconditioned(HessianOperator(risk), P), 1, dense=False, tol=1e-10).values[0]
    ev = torch.linalg.eigvals(torch.diag(1 / P) @ H).real.max()
    assert abs(float(top) - float(ev)) < 1e-7 * abs(float(ev))


def test_preconditioned_refuses_bad_diagonals():
    model, data = _problem()
    H = HessianOperator(model, "mse", data)
    with pytest.raises(ValueError, match="diagonal must be a tensor of shape"):
        edge.Preconditioned(H, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="finite and > 0"):
        edge.Preconditioned(H, torch.zeros(H.size, dtype=torch.float64))


def test_thresholds_and_their_errors():
    assert edge.threshold(0.1, "sgd") == pytest.approx(20)
    assert edge.threshold(0.1, "momentum") == pytest.approx(38)  # labkit's momentum: beta = 0.9
    assert edge.threshold(0.1, "momentum", beta=0.5) == pytest.approx(30)
    assert edge.threshold(0.01, "adam") == pytest.approx(3800)  # 38 / lr for beta1 = 0.9
    assert edge.threshold(0.1, "rmsprop") == pytest.approx(20)
    assert edge.threshold(0.1, "nesterov") == pytest.approx(3.8 / 2.8 / 0.1)  # (2 + 2b) / ((1 + 2b) lr)
    with pytest.raises(ValueError, match="optimizer"):
        edge.threshold(0.1, "lion")
    with pytest.raises(ValueError, match="lr"):
        edge.threshold(-1.0)
    with pytest.raises(ValueError, match="beta"):
        edge.threshold(0.1, "momentum", beta=1.0)


def _quadratic(eigs, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return (Q * torch.tensor(eigs, dtype=torch.float64)) @ Q.T


def _torch_run(A, optimizer, lr, steps=3000):
    """Train 1/2 p^T A p with labkit's own torch optimiser (Nesterov: torch's, momentum 0.9); the final |p|."""
    p = torch.nn.Parameter(torch.ones(A.shape[0], dtype=torch.float64))
    if optimizer == "nesterov":
        opt = torch.optim.SGD([p], lr=lr, momentum=0.9, nesterov=True)
    else:
        opt = labkit.optim.torch_optimizer(optimizer, [p], lr)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * p @ A @ p).backward()
        opt.step()
    return float(p.detach().norm())


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_gd_and_heavy_ball_diverge_exactly_at_the_threshold(optimizer):
    A = _quadratic([3.0, 1.0, 0.2])
    lr = edge.threshold(1.0, optimizer) / 3.0  # lr * lambda_max == the threshold's numerator
    assert _torch_run(A, optimizer, 0.99 * lr) < 1e-3
    assert _torch_run(A, optimizer, 1.01 * lr) > 1e3


def test_adam_with_a_frozen_preconditioner_diverges_at_38_over_lr():
    A = _quadratic([3.0, 1.0, 0.2, 0.05], seed=1)
    P = _diag(4, seed=2)
    lam = float(linalg.top_eigenvalues(edge.Preconditioned(linalg.from_dense(A), P), 1, dense=False,
                                       tol=1e-12).values[0])
    b1 = 0.9

    def run(lr, steps=4000):  # Adam's first moment with P held fixed (Cohen et al. 2022's frozen analysis)
        p, m = torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
        for t in range(1, steps + 1):
            m = b1 * m + (1 - b1) * (A @ p)
            p = p - lr * (m / (1 - b1**t)) / P
        return float(p.norm())

    lr_edge = edge.threshold(1.0, "adam") / lam  # lam = 38 / lr
    assert run(0.99 * lr_edge) < 1e-3
    assert run(1.01 * lr_edge) > 1e3
    # the raw curvature says nothing: GD's 2/lr on H itself is far from Adam's edge
    assert abs(2 / lr_edge - float(torch.linalg.eigvalsh(A).max())) > 0.5


def _fit(optimizer, lr=0.01, steps=12, weight_decay=0.0, tracker=None, **kw):
    model, data = _problem(1)
    tracker = tracker or edge.EdgeOfStability(4)
    hist = labkit.train.fit(model, data, loss="mse", optimizer=optimizer, lr=lr, steps=steps,
                            weight_decay=weight_decay, callbacks=[tracker], progress=False, **kw)
    return tracker, hist


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop])
def test_preconditioner_is_what_torch_divides_by(cls, weight_decay):
    """optim.preconditioner, read before opt.step(), equals P built from torch's own state after that step."""
    model, (x, y) = _problem(1)
    params = list(model.parameters())
    opt = cls(params, lr=1e-3, weight_decay=weight_decay)
    for _ in range(3):
        opt.zero_grad()
        ((model(x) - y) ** 2).sum(1).mean().backward()
        P = labkit.optim.preconditioner(opt, params)
        opt.step()
        if cls is torch.optim.RMSprop:
            v = torch.cat([opt.state[p]["square_avg"].flatten() for p in params])
            ref = v.sqrt() + 1e-8
        else:
            v = torch.cat([opt.state[p]["exp_avg_sq"].flatten() for p in params])
            t = int(opt.state[params[0]]["step"])
            ref = (v / (1 - 0.999**t)).sqrt() + 1e-8
        assert torch.allclose(P, ref, rtol=1e-12, atol=0)
    assert labkit.optim.preconditioner(torch.optim.SGD(params, lr=0.1, momentum=0.9), params) is None


def test_named_and_factory_built_adam_give_the_same_record():
    named, _ = _fit("adam", weight_decay=0.05)
    read = edge.EdgeOfStability(4)
    read, _ = _fit(read.optimizer(torch.optim.Adam, betas=(0.9, 0.999), eps=1e-8), weight_decay=0.05, tracker=read)
    assert named.steps == read.steps == [0, 4, 8]
    for key in ("sharpness", "preconditioned", "threshold"):
        assert named.series(key) == pytest.approx(read.series(key), rel=1e-6)


def test_tracked_preconditioned_sharpness_matches_dense_at_a_step():
    """At step 0, v = (1 - beta2) g^2 and v_hat = g^2: P = |g| + eps; check against dense P^-1/2 H P^-1/2."""
    model, data = _problem(1)
    risk = Risk(model, "mse", data)
    P = risk.gradient().abs() + 1e-8
    S = torch.diag(P.rsqrt())
    expected = float(torch.linalg.eigvalsh(S @ dense_hessian(risk) @ S).max())
    tracker, _ = _fit("adam", steps=1)
    assert tracker.series("preconditioned")[0] == pytest.approx(expected, rel=1e-4)
    assert tracker.series("sharpness")[0] == pytest.approx(float(torch.linalg.eigvalsh(dense_hessian(risk)).max()),
                                                          rel=1e-4)


def test_sgd_and_momentum_record_raw_sharpness_as_preconditioned_and_their_thresholds():
    for name, thr in (("sgd", 2 / 0.05), ("momentum", 3.8 / 0.05)):
        tracker, hist = _fit(name, lr=0.05)
        assert tracker.series("preconditioned") == tracker.series("sharpness")
        assert tracker.series("threshold") == pytest.approx([thr] * 3)
        assert hist.tracked["sharpness"]["steps"] == [0, 4, 8]


def test_rmsprop_read_from_torch_state_matches_dense():
    tracker = edge.EdgeOfStability(1)
    model, data = _problem(1)
    risk0 = Risk(model, "mse", data)
    g0 = risk0.gradient()
    labkit.train.fit(model, data, loss="mse", optimizer=tracker.optimizer(torch.optim.RMSprop, alpha=0.99), lr=1e-3,
                     steps=1, callbacks=[tracker], progress=False)
    P = (0.01 * g0 * g0).sqrt() + 1e-8  # torch's RMSprop default eps is 1e-8
    S = torch.diag(P.rsqrt())
    expected = float(torch.linalg.eigvalsh(S @ dense_hessian(risk0) @ S).max())
    assert tracker.series("preconditioned")[0] == pytest.approx(expected, rel=1e-4)
    assert tracker.series("threshold")[0] == pytest.approx(2 / 1e-3)


def test_unknown_optimisers_are_refused_before_training():
    tracker = edge.EdgeOfStability(2)
    with pytest.raises(TypeError, match=r"EdgeOfStability needs .*Adagrad"):
        _fit(tracker.optimizer(torch.optim.Adagrad), tracker=tracker)
    t2 = edge.EdgeOfStability(2)
    with pytest.raises(TypeError, match="dampening"):
        _fit(lambda params, lr, weight_decay: torch.optim.SGD(params, lr=lr, momentum=0.9, dampening=0.5), tracker=t2)


def test_any_readable_torch_optimiser_is_read_from_step_info():
    """A plain factory (no tracker.optimizer) works: the state comes from StepInfo.optimizer_state."""
    tracker, _ = _fit(lambda params, lr, weight_decay: torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True),
                      lr=0.05)
    assert tracker.series("threshold") == pytest.approx([edge.threshold(0.05, "nesterov")] * 3)
    assert tracker.series("preconditioned") == tracker.series("sharpness")


def test_top_k_values_are_the_dense_spectrum_at_step_0():
    model, data = _problem(1)
    ev = torch.linalg.eigvalsh(dense_hessian(Risk(model, "mse", data))).flip(0)[:3]
    tracker, _ = _fit("sgd", tracker=edge.EdgeOfStability(4, k=3), steps=1)
    assert tracker.series("values")[0] == pytest.approx(ev.tolist(), rel=1e-4)
    assert tracker.series("sharpness")[0] == pytest.approx(float(ev[0]), rel=1e-4)


def test_at_edge_returns_its_evidence_and_can_fail():
    holds = edge.at_edge([10.0] * 5 + [20.2] * 25, 20.0)
    assert holds and holds.holds and holds.start == pytest.approx(0.5) and holds.end == pytest.approx(1.01)
    assert holds.n_end == 10  # the last third of 30 measurements
    assert not edge.at_edge([20.5] * 30, 20.0)  # starts at the edge: nothing climbed
    assert not edge.at_edge([10.0] * 20 + [20.2] * 10 + [10.0] * 10, 20.0)  # fell back below it
    with pytest.raises(ValueError, match="at least 3"):
        edge.at_edge([1.0, 2.0], 2.0)


def test_divergence_is_data_not_a_crash():
    tracker, hist = _fit("sgd", lr=1e150, steps=30)
    assert hist.diverged and all(math.isfinite(v) for v in tracker.series("threshold"))


def test_monitor_has_the_panels():
    live = edge.monitor("adam", backend="static")
    _fit("adam", tracker=edge.EdgeOfStability(4, live=live))
    assert len(live.series("preconditioned")[0]) == 3 and len(live.series("threshold")[0]) == 3


def test_old_names_are_aliases_of_the_one_and_warn_once():
    from labkit import _deprecated, hessian
    from labkit.hessian import probes

    _deprecated._warned.clear()
    with pytest.warns(DeprecationWarning, match="labkit.edge.EdgeOfStability"):
        assert hessian.Sharpness is edge.EdgeOfStability
    with pytest.warns(DeprecationWarning, match="labkit.edge.at_edge"):
        old = probes.at_edge_of_stability([10.0] * 5 + [20.2] * 25, 20.0)
    assert old == edge.at_edge([10.0] * 5 + [20.2] * 25, 20.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second use is silent
        probes.at_edge_of_stability([10.0] * 5 + [20.2] * 25, 20.0)
    with pytest.warns(DeprecationWarning, match="labkit.edge.threshold"):
        assert probes.stability_threshold(0.01, "adam") == edge.threshold(0.01, "adam")  # 38/lr, no longer NaN
    with pytest.warns(DeprecationWarning, match="labkit.edge.EdgeVerdict"):
        assert probes.EdgeOfStability is edge.EdgeVerdict
    from labkit.lessons import edge as lesson

    with pytest.warns(DeprecationWarning, match="labkit.lessons.edge.demo_run"):
        assert edge.demo_run is lesson.demo_run
