"""Curvature operators against the dense float64 references of labkit.testing (MLP and CNN, CE and MSE)."""

from __future__ import annotations

import pytest
import torch

from labkit import curvature, linalg, models, testing
from labkit.batchsize import noise_scale
from labkit.risk import Risk

TOL = 1e-10


def test_second_moment_operators_match_dense(problem):
    risk = problem
    testing.assert_matches_dense(curvature.GradientCovariance(risk), testing.dense_gradient_covariance(risk), atol=TOL)
    testing.assert_matches_dense(curvature.EmpiricalFisher(risk), testing.dense_empirical_fisher(risk), atol=TOL)
    testing.assert_matches_dense(curvature.Fisher(risk), testing.dense_fisher(risk), atol=TOL)


def test_hessian_and_ggn_match_dense(problem):
    risk = problem
    testing.assert_matches_dense(curvature.HessianOperator(risk), testing.dense_hessian(risk), atol=TOL)
    testing.assert_matches_dense(curvature.GaussNewtonOperator(risk), testing.dense_ggn(risk), atol=TOL)


def test_operators_match_dense_in_float32(problem32):
    """The same operators in float32: agreement to float32 rounding (eps 1.2e-7 times the entries' scale)."""
    risk = problem32
    scale = float(testing.dense_hessian(risk).abs().max())
    testing.assert_matches_dense(curvature.HessianOperator(risk), testing.dense_hessian(risk), atol=1e-5 * scale)
    testing.assert_matches_dense(curvature.GaussNewtonOperator(risk), testing.dense_ggn(risk), atol=1e-5 * scale)


def test_fisher_equals_gauss_newton(problem):
    """The loss is the NLL of the predictive (softmax; N(f, I/2) for MSE): then F = G exactly (Martens 2020)."""
    risk = problem
    G = linalg.to_dense(curvature.GaussNewtonOperator(risk))
    testing.assert_matches_dense(curvature.Fisher(risk), G, atol=TOL)
    if risk.loss.name == "mse":  # the unit-variance Gaussian reading: F = J^T J / N = G / 2
        testing.assert_matches_dense(curvature.Fisher(risk, variance=1.0), G / 2, atol=TOL)
    # negative control: the empirical Fisher is not the Fisher away from the optimum
    with pytest.raises(AssertionError, match="differs from the dense reference"):
        testing.assert_matches_dense(curvature.EmpiricalFisher(risk), G, atol=1e-6)


def test_sigma_is_empirical_fisher_minus_mean_gradient(make_problem):
    risk = make_problem("mlp", "cross_entropy")
    G = risk.gradient()
    ef = linalg.to_dense(curvature.EmpiricalFisher(risk))
    testing.assert_matches_dense(curvature.GradientCovariance(risk), ef - torch.outer(G, G), atol=TOL)
    sigma = curvature.GradientCovariance(risk)
    assert abs(sigma.trace() - float(torch.trace(testing.dense_gradient_covariance(risk)))) < TOL
    C = sigma.factor()
    testing.assert_matches_dense(C @ C.T, testing.dense_gradient_covariance(risk), atol=TOL)


def test_product_operator_and_trace_of_h_sigma(make_problem):
    risk = make_problem("mlp", "mse")
    H, S = curvature.HessianOperator(risk), curvature.GradientCovariance(risk)
    Hd, Sd = testing.dense_hessian(risk), testing.dense_gradient_covariance(risk)
    testing.assert_matches_dense(H @ S, Hd @ Sd, atol=TOL)
    exact = float(torch.trace(Hd @ Sd))
    assert abs(curvature.trace_product(H, S) - exact) < TOL * max(1.0, abs(exact))
    assert abs(curvature.trace_product(H, curvature.HessianOperator(risk)) - float(torch.trace(Hd @ Hd))) < 1e-8
    est = curvature.trace_product(H, S, n_matvec=20, seed=0)  # Hutch++ on the product: an estimate
    assert abs(est - exact) < 0.5 * abs(exact)


def test_ntk_matches_explicit_jacobians(make_problem):
    from labkit.ntk import empirical

    risk = make_problem("cnn", "mse")
    x = risk.batches[0][0]
    for method in ("jacobian", "ntk_vp", "structured"):
        testing.assert_matches_dense(empirical(risk.model, x, method=method), testing.dense_ntk(risk.model, x),
                                     atol=TOL)


def test_snapshot_semantics_are_the_same_for_every_operator(make_problem):
    """Operators are evaluated at the parameters they were built with, even if the model then changes."""
    from labkit.ntk import NTKOperator

    risk = make_problem("mlp", "cross_entropy")
    ops = {name: cls(risk) for name, cls in [("H", curvature.HessianOperator), ("G", curvature.GaussNewtonOperator),
                                              ("F", curvature.Fisher), ("S", curvature.GradientCovariance)]}
    x = risk.batches[0][0]
    ops["K"] = NTKOperator(risk.model, x)
    before = {k: linalg.to_dense(op) for k, op in ops.items()}
    value = risk.value()
    with torch.no_grad():
        for p in risk.model.parameters():
            p.add_(0.3)
    for k, op in ops.items():
        testing.assert_matches_dense(op, before[k], atol=1e-12)
    assert risk.value() == value
    moved = risk.at(risk.model)
    assert moved.value() != value
    # a negative control: a new operator at the new parameters differs
    with pytest.raises(AssertionError):
        testing.assert_matches_dense(curvature.HessianOperator(moved), before["H"], atol=1e-6)


def test_loss_resolution_is_one_rule_and_refuses_mismatches():
    x = torch.randn(6, 3, dtype=torch.float64)
    labels, floats = torch.arange(6) % 3, torch.randn(6, 3, dtype=torch.float64)
    model = models.mlp(3, [4], 3, seed=0).double()
    assert Risk(model, "auto", (x, labels)).loss.name == "cross_entropy"
    assert Risk(model, "auto", (x, floats)).loss.name == "mse"
    with pytest.raises(ValueError, match="loss='mse' needs float regression targets"):
        Risk(model, "mse", (x, labels))
    with pytest.raises(ValueError, match="loss='cross_entropy' needs a classification task"):
        Risk(model, "cross_entropy", (x, floats))
    with pytest.raises(ValueError, match="labels go up to 5"):
        Risk(model, "cross_entropy", (x, torch.arange(6)))
    with pytest.raises(ValueError, match="loss='mse' needs float regression targets"):
        curvature.HessianOperator(model, "mse", (x, labels))
    from labkit import train

    with pytest.raises(ValueError, match="loss='mse' needs float regression targets"):
        train.fit(model, (x, labels), loss="mse", steps=1, progress=False)
    with pytest.raises(TypeError, match="Fisher knows the predictive"):
        curvature.Fisher(model, lambda f, y: (f - y).pow(2).sum(1), (x, floats))


def test_noise_scale_of_one_example_is_undefined():
    x, y = torch.randn(1, 3, dtype=torch.float64), torch.randn(1, 1, dtype=torch.float64)
    model = models.mlp(3, [4], 1, seed=0).double()
    with pytest.raises(ValueError, match="undefined"):
        noise_scale(model, "mse", (x, y))
    with pytest.raises(ValueError, match="undefined"):
        curvature.GradientCovariance(model, "mse", (x, y))


def test_risk_value_gradient_and_per_example_gradients_match_references(make_problem):
    risk = make_problem("cnn", "cross_entropy")
    g = testing.per_example_gradients(risk)
    testing.assert_matches_dense(risk.per_example_gradients(), g, atol=TOL)
    testing.assert_matches_dense(risk.gradient()[None], g.mean(0)[None], atol=TOL)
    assert torch.allclose(risk.per_example_sq_norms(), g.square().sum(1), atol=TOL, rtol=0)


def test_subset_and_examples_keep_the_snapshot(make_problem):
    risk = make_problem("mlp", "cross_entropy")
    x, y = risk.examples()
    assert x.shape[0] == risk.num_examples == 12
    idx = torch.tensor([0, 3, 7])
    sub = risk.subset(idx)
    fresh = Risk(risk.model, "cross_entropy", (x[idx], y[idx]))
    assert sub.num_examples == 3 and abs(sub.value() - fresh.value()) < 1e-14
    with torch.no_grad():
        for p in risk.model.parameters():
            p.mul_(2.0)
    assert abs(risk.subset(idx).value() - sub.value()) < 1e-14  # still the snapshot, not the moved model
    with pytest.raises(ValueError, match="class labels must be >= 0"):
        Risk(risk.model, "cross_entropy", (x, -torch.ones(12, dtype=torch.long)))
