"""labkit.grokking: the task, the vectorised forward pass, the Fourier measures against closed forms, the run."""

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from labkit import grokking as G
from labkit.data import modular_addition


def test_table_is_every_pair_once_in_row_order():
    p = 7
    d = G.table(p)
    a, b = d.inputs[:, :p].argmax(1), d.inputs[:, p:].argmax(1)
    assert torch.equal(a * p + b, torch.arange(p * p))
    assert torch.equal(d.targets, (a + b) % p)
    assert d.inputs.sum(1).eq(2).all()
    first, _ = modular_addition(p, 0.5)  # same encoding as labkit.data's task
    assert first.inputs.shape[1] == d.inputs.shape[1]


@pytest.mark.parametrize("split", ["pairs", "random"])
def test_split_masks_fraction_nesting_and_symmetry(split):
    p = 11
    masks = G.split_masks(p, [0.3, 0.6], seed=[4, 4], split=split)
    assert masks.shape == (2, p * p)
    assert bool((masks[0] <= masks[1]).all())  # same seed: the larger training set contains the smaller
    for m, f in zip(masks, (0.3, 0.6)):
        assert abs(float(m.float().mean()) - f) < 0.05
    sym = masks[0].reshape(p, p)
    if split == "pairs":
        assert torch.equal(sym, sym.T)  # (a, b) and (b, a) on the same side
    else:
        assert not torch.equal(sym, sym.T)


def test_split_masks_rejects_bad_fraction_and_split():
    with pytest.raises(ValueError, match="train_frac"):
        G.split_masks(7, [1.0], seed=[0])
    with pytest.raises(ValueError, match="split"):
        G.split_masks(7, [0.5], seed=[0], split="diagonal")


def test_forward_matches_vmapped_functional_call():
    p = 7
    models = [G.make_model(p, 5, seed=s) for s in range(3)]
    params, _ = stack_module_state(models)
    x = G.table(p).inputs
    ref = vmap(lambda q: functional_call(models[0], q, (x,)))(params)
    torch.testing.assert_close(G.forward(params, x), ref)


def test_fourier_power_of_pure_modes_and_the_even_p_nyquist_mode():
    p = 13
    a = torch.arange(p, dtype=torch.float64)
    for k in (1, 4, 6):
        w = torch.cos(2 * math.pi * k * a / p + 0.3)[None, :]  # one unit, one half
        power = G.fourier_power(w, p)[0]
        assert int(power.argmax()) == k - 1
        torch.testing.assert_close(power[k - 1], torch.tensor(p * p / 4, dtype=torch.float64))  # |F_k|^2 = (p/2)^2
        assert float(G.neuron_sparsity(w, p)) == pytest.approx(1.0)
    # Parseval: total non-constant power = p * (sum of squares) - |sum|^2 ... counted once per pair (k, p - k)
    w = torch.randn(3, 2 * p, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    halves = w.reshape(3, 2, p)
    parseval = (p * halves.square().sum(-1) - halves.sum(-1).square()).sum(-1) / 2  # (unit,)
    torch.testing.assert_close(G.fourier_power(w, p).sum(-1), parseval)


def test_spectrum_concentration_and_null_values():
    p = 31
    g = torch.Generator().manual_seed(1)
    w = torch.randn(4000, 2 * p, generator=g, dtype=torch.float64)  # isotropic: power spread evenly
    spec = G.fourier_spectrum(w, p)
    assert float(spec.sum()) == pytest.approx(1.0)
    assert float(G.concentration(spec, 5)) == pytest.approx(G.null_concentration(p, 5), abs=0.02)
    assert float(G.neuron_sparsity(w, p)) == pytest.approx(G.null_sparsity(p), abs=0.01)
    assert 0.1 < G.null_sparsity(p) < 0.25
    assert G.midpoint(0.2) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="p=31"):
        G.fourier_power(torch.zeros(3, 30), p)


def test_run_records_consistent_curves_and_stops_on_callback():
    res = G.run(7, [0.5, 0.7], [1.0, 0.0], steps=30, records=8, width=16)
    assert res.train_acc.shape == (2, 31) and res.test_acc.shape == (2, 31)
    assert res.record_steps[0] == 0 and res.record_steps[-1] == 30
    assert res.spectrum.shape == (2, len(res.record_steps), 3)
    np.testing.assert_allclose(res.spectrum.sum(-1), 1.0)
    assert [h["n_train"] for h in res.hparams] == [int(m.sum()) for m in G.split_masks(7, [0.5, 0.7], seed=[0, 0])]
    assert np.all(np.diff(res.train_loss[0, :10]) < 0.5)  # finite and not diverging
    seen = []
    stopped = G.run(7, 0.5, 1.0, steps=200, records=50, width=8, callbacks=[lambda info: seen.append(info.step)
                                                                             or info.step >= 20])
    assert stopped.stopped_early and stopped.steps[-1] <= 30 and seen[-1] >= 20
    assert stopped.train_acc.shape[1] == stopped.steps.size


def test_run_matches_an_independent_adamw_loop():
    """One member of run() equals torch.optim.AdamW on the training pairs (float32, full batch)."""
    p, frac, wd, steps = 7, 0.6, 0.5, 15
    res = G.run(p, frac, wd, steps=steps, width=8, lr=1e-2, records=3)
    d = G.table(p)
    mask = G.split_masks(p, [frac], seed=[0])[0]
    model = G.make_model(p, 8, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=wd)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(d.inputs[mask]), d.targets[mask]).backward()
        opt.step()
    with torch.no_grad():
        final = torch.nn.functional.cross_entropy(model(d.inputs[mask]), d.targets[mask])
        test_acc = (model(d.inputs[~mask]).argmax(1) == d.targets[~mask]).float().mean()
    assert res.train_loss[0, -1] == pytest.approx(float(final), rel=1e-4)
    assert res.test_acc[0, -1] == pytest.approx(float(test_acc), abs=1e-6)


def test_times_and_bad_arguments():
    res = G.run(7, 0.5, 1.0, steps=5, width=4, records=3)
    res.train_acc[0] = [0, 0.5, 0.995, 1, 1, 1]
    res.test_acc[0] = [0, 0, 0, 0, 0.96, 1]
    assert res.t_mem() == 2 and res.t_grok() == 4
    res.test_acc[0] = 0
    assert res.t_grok() is None
    with pytest.raises(ValueError, match="equal lengths"):
        G.run(7, [0.5, 0.6], [1.0, 0.0, 0.0], steps=2)
    with pytest.raises(ValueError, match="weight_decay"):
        G.run(7, 0.5, -1.0, steps=2)
    with pytest.raises(TypeError, match="steps"):
        G.run(7, 0.5, 1.0, steps=2.5)
    with pytest.raises(ValueError, match="measure"):
        res.t_fourier(0, measure="entropy")


def test_figures_and_live_plot_build():
    res = G.run(7, [0.5, 0.7], 1.0, steps=10, width=4, records=4)
    assert len(res.figure().data) == 14
    assert len(res.spectrum_figure().data) == 2
    live = G.live_plot(7, backend="static")
    res2 = G.run(7, 0.5, 1.0, steps=10, width=4, records=4, live=live)
    x, _ = live.series("test accuracy")
    assert x[0] == 1 and len(x) == len(res2.record_steps)
    layout = live.figure().layout
    assert layout.xaxis.type == "log"
