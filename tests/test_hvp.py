"""Double-backward Hessian products and the per-operator choice, against the dense Hessian."""

import pytest
import torch

from labkit import hvp, models, testing
from labkit.curvature import CurvatureOperator, HessianOperator
from labkit.linalg import to_dense


def problem(activation="tanh", classes=0, batch_size=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(20, 3, dtype=torch.float64, generator=g)
    if classes:
        y = torch.randint(0, classes, (20,), generator=g)
        model = models.mlp(3, [6, 5], classes, activation=activation, seed=seed).double()
    else:
        y = torch.randn(20, 2, dtype=torch.float64, generator=g)
        model = models.mlp(3, [6, 5], 2, activation=activation, seed=seed).double()
    return HessianOperator(model, "auto", (x, y), batch_size=batch_size)


@pytest.mark.parametrize("activation, classes, batch_size", [("tanh", 0, None), ("gelu", 3, 7), ("softplus", 0, 6)])
def test_double_backward_matches_dense_hessian(activation, classes, batch_size):
    H = problem(activation, classes, batch_size)
    dense = testing.dense_hessian(H.risk)
    P = H.size
    got = hvp.double_backward(H.risk, torch.eye(P, dtype=torch.float64))  # k = P columns, one batched backward
    testing.assert_matches_dense(got, dense, atol=1e-12, rtol=1e-10)
    v = torch.randn(P, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(hvp.double_backward(H.risk, v), dense @ v, rtol=1e-10, atol=1e-12)  # k = 1


def test_relu_hessian_is_its_gauss_newton_part_and_matches():
    H = problem("relu", 0, None)  # piecewise linear: second derivatives of the activation vanish
    testing.assert_matches_dense(hvp.double_backward(H.risk, torch.eye(H.size, dtype=torch.float64)),
                                 testing.dense_hessian(H.risk))


def test_choice_is_measured_once_and_cached_on_the_operator():
    H = problem()
    fwd = []

    def forward_over_reverse(V):
        fwd.append(V.shape)
        return CurvatureOperator.matmat(H, V)

    V = torch.randn(H.size, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    dense = testing.dense_hessian(H.risk)
    first = hvp.matmat(H, V, forward_over_reverse)
    assert H._hvp_method in hvp.METHODS and set(H._hvp_timings) == set(hvp.METHODS)
    assert len(fwd) == 2  # timed twice, once per round
    torch.testing.assert_close(first, dense @ V, rtol=1e-10, atol=1e-12)
    chosen = H._hvp_method
    second = hvp.matmat(H, V[:, :1], forward_over_reverse)
    assert H._hvp_method == chosen and len(fwd) == 2 + (chosen == "forward_over_reverse")
    torch.testing.assert_close(second, dense @ V[:, :1], rtol=1e-10, atol=1e-12)
    other = problem(seed=1)  # a fresh operator measures for itself
    assert not hasattr(other, "_hvp_method")


def test_forced_method_and_bad_method():
    H = problem()
    V = torch.randn(H.size, 2, dtype=torch.float64)
    a = hvp.matmat(H, V, lambda W: CurvatureOperator.matmat(H, W), method="double_backward")
    b = hvp.matmat(H, V, lambda W: CurvatureOperator.matmat(H, W), method="forward_over_reverse")
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert not hasattr(H, "_hvp_method")  # forcing does not decide for later calls
    with pytest.raises(ValueError, match="method='pearlmutter' is not supported"):
        hvp.matmat(H, V, lambda W: W, method="pearlmutter")


def test_a_failing_method_loses_the_choice():
    H = problem()

    def broken(V):
        raise RuntimeError("no forward-mode rule")

    V = torch.randn(H.size, 2, dtype=torch.float64)
    out = hvp.matmat(H, V, broken)
    assert H._hvp_method == "double_backward"
    torch.testing.assert_close(out, to_dense(H) @ V, rtol=1e-10, atol=1e-12)


class WiredHessian(HessianOperator):
    """The wiring proposed for labkit/curvature.py's HessianOperator (one method)."""

    def matmat(self, V):
        return hvp.matmat(self, V, super().matmat)


def test_wired_operator_lanczos_matches_dense_eigenvalues():
    from labkit import linalg

    H = WiredHessian(problem("tanh", 3).risk)
    dense = testing.dense_hessian(H.risk)
    testing.assert_matches_dense(H, dense)
    top = linalg.top_eigenvalues(H, k=3, tol=1e-10, dense=False)  # Lanczos, not the dense shortcut
    ref = torch.linalg.eigvalsh(dense).flip(0)[:3]
    assert top.converged
    torch.testing.assert_close(top.values, ref, rtol=1e-8, atol=1e-10)
    assert H._hvp_method in hvp.METHODS
