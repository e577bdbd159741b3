"""labkit.scaling: power-law fits on laws with known exponents, the random-feature model's closed forms."""

import numpy as np
import pytest
import torch

from labkit import scaling as S
from labkit.data import teacher_student


@pytest.mark.parametrize(("a", "b", "c"), [(3.0, 0.5, 0.1), (0.7, 1.3, 0.0), (10.0, 0.25, 2.0)])
def test_fit_recovers_exact_power_laws(a, b, c):
    x = np.geomspace(1, 1e4, 12)
    fit = S.fit_power_law(x, a * x**-b + c, bootstrap=0)
    assert fit.b == pytest.approx(b, abs=1e-4) and fit.a == pytest.approx(a, rel=1e-3)
    assert fit.c == pytest.approx(c, abs=1e-4 * max(c, 1))
    np.testing.assert_allclose(fit(x), a * x**-b + c, rtol=1e-4)


def test_fit_without_offset_and_bootstrap_intervals_cover_the_truth():
    """90% intervals hold the true exponent in ~90% of noisy draws (binomial: 0.6 of 20 is 4.5 sigma off)."""
    x = np.geomspace(4, 4096, 15)
    hits = []
    for rep in range(20):
        y = 2.0 * x**-0.8 * np.exp(np.random.default_rng(rep).normal(0, 0.03, x.size))
        fit = S.fit_power_law(x, y, offset=False, bootstrap=50, seed=rep)
        assert fit.c == 0.0
        hits.append(fit.ci["b"][0] < 0.8 < fit.ci["b"][1])
    assert 0.6 <= np.mean(hits) <= 1.0
    again = S.fit_power_law(x, y, offset=False, bootstrap=50, seed=19)
    assert again.ci == fit.ci  # seeded
    assert "bootstrap" in str(fit)


def test_slope_and_its_standard_error():
    x = np.geomspace(1, 100, 8)
    s, se = S.slope(x, 5 * x**-1.5)
    assert s == pytest.approx(-1.5) and se < 1e-10


def test_power_law_check_accepts_power_laws_and_rejects_curved_data():
    x = np.geomspace(1, 1000, 12)
    assert not S.power_law_check(x, x**-0.7).rejected
    assert S.power_law_check(x, np.exp(-x / 200) + 1e-3).rejected  # exponential: no single slope
    assert not S.power_law_check(x, x**-0.7 * (1 + 0.1 * np.log(x) / 7)).rejected  # mild drift within tolerance


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="positive"):
        S.fit_power_law([1, 2, 3], [1, -1, 2])
    with pytest.raises(ValueError, match="same length"):
        S.slope([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 3"):
        S.fit_power_law([1, 2], [1, 2])
    with pytest.raises(ValueError, match="level"):
        S.fit_power_law([1, 2, 3], [3, 2, 1], level=1.5)
    with pytest.raises(ValueError, match="each half"):
        S.power_law_check([1, 2, 3, 4], [4, 3, 2, 1])
    with pytest.raises(ValueError, match="N must be"):
        S.rf_loss_infinite_data(500, *S.spectrum(100, 1.0))


def test_spectrum_and_kappa_equation():
    lam, t = S.spectrum(1000, 1.0, beta=0.5)
    np.testing.assert_allclose(lam[:3], [1, 2**-2, 3**-2])
    np.testing.assert_allclose(t, lam * np.arange(1, 1001) ** -0.5)
    assert np.all(S.spectrum(10, -1.0)[0] == 1.0)  # flat control
    k = S._kappa(lam, 37.0)
    assert (lam / (lam + k)).sum() == pytest.approx(37.0, rel=1e-9)


def test_infinite_data_formula_is_exact_for_a_flat_spectrum():
    """Flat spectrum, N of M directions: the projection keeps N/M of the power, so L = total (1 - N/M)."""
    lam, t = S.spectrum(200, -1.0)
    for n in (10, 50, 150):
        assert S.rf_loss_infinite_data(n, lam, t) == pytest.approx(t.sum() * (1 - n / 200), rel=1e-9)


def test_infinite_data_formula_matches_simulation_and_the_power_law():
    lam, t = S.spectrum(4000, 1.0)
    ns = [16, 64, 256]
    sim = S.rf_simulate(ns, [None], lam, t, seeds=range(6))[..., 0].mean(0)
    exact = S.rf_loss_infinite_data(ns, lam, t)
    np.testing.assert_allclose(sim, exact, rtol=0.1)  # deterministic equivalent: asymptotically exact
    assert abs(S.slope(ns, exact)[0] + 1.0) < 0.1


def test_population_fit_is_the_least_squares_solution():
    lam, t = S.spectrum(50, 0.5)
    prob = S.rf_problem(8, lam, t, seed=3)
    beta, l_inf = prob.population(8)
    # gradient of the population loss at beta vanishes: A beta = b
    torch.testing.assert_close(prob.A @ beta, prob.b)
    assert 0 < l_inf < prob.total


def test_ridgeless_formula_and_simulation_agree():
    assert S.rf_loss_ridgeless(0.5, 10, 111) == pytest.approx(0.5 * (1 + 10 / 100))
    assert np.isnan(S.rf_loss_ridgeless(1.0, 10, 11))
    lam, t = S.spectrum(500, 1.0)
    sim = S.rf_simulate([8], [100, 400, None], lam, t, seeds=range(40))[:, 0, :]
    l_inf = sim[:, 2].mean()
    np.testing.assert_allclose(sim[:, :2].mean(0), S.rf_loss_ridgeless(l_inf, 8, np.array([100, 400])), rtol=0.05)


def test_kernel_limit_interpolates_and_is_resolution_limited():
    lam, t = S.spectrum(3000, 1.0)
    loss = S.rf_simulate_kernel([16, 64, 256], lam, t, seeds=range(3)).mean(0)
    assert np.all(np.diff(loss) < 0)
    assert abs(S.slope([16, 64, 256], loss)[0] + 1.0) < 0.2


def test_frontier_is_the_lower_envelope():
    steps = np.arange(1, 101, dtype=float)
    runs = [(s, s * steps, 1 / np.sqrt(s) + 10 / steps) for s in (1.0, 10.0, 100.0)]
    fr = S.frontier(runs, points=20)
    for c, l_, size in zip(fr.compute, fr.loss, fr.size):
        reachable = [(r[2][r[1] <= c][-1], r[0]) for r in runs if (r[1] <= c).any()]
        assert (l_, size) == min(reachable)
    assert fr.size[0] <= fr.size[-1]  # bigger models win at bigger budgets
    with pytest.raises(ValueError, match="empty"):
        S.frontier([])
    with pytest.raises(ValueError, match="same length"):
        S.frontier([(1, [1, 2], [1])])


def test_mlp_sweep_records_curves_and_parameter_counts():
    data = teacher_student(n=96, dim=3, teacher_width=4, seed=0)
    sw = S.mlp_sweep(data[:64], data[64:], [2, 4], steps=20, seeds=(0,), eval_every=5)
    assert sw.params.tolist() == [3 * 2 + 2 + 2 + 1, 3 * 4 + 4 + 4 + 1]
    assert sw.loss.shape == (2, len(sw.steps)) and np.all(np.isfinite(sw.loss))
    assert sw.compute(1)[-1] == pytest.approx(6 * 21 * 64 * sw.steps[-1])
    assert sw.frontier(points=5).loss.shape == (5,)


def test_live_plot_has_log_axes():
    live = S.live_plot({"loss": ["a"]}, "features N", backend="static")
    live.append(4, a=1.0)
    live.append(8, a=0.5)
    fig = live.figure()
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.title.text == "features N"
