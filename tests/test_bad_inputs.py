"""A catalogue of bad inputs across labkit's public entry points (issue 13).

Table 1 (``BAD``): each call must raise a ValueError or TypeError *from labkit's own code* whose
message names the argument (a torch or numpy error from deep inside does not count).
Table 2 (``EDGE``): legitimate edge inputs (float16 data, non-contiguous tensors, numpy arrays,
one-example datasets) must work, or be refused by a clear labkit error.
Hypothesis generates shapes, dtypes and values where one hand-picked example would be arbitrary.

A row whose fix belongs to another module is marked ``xfail(strict=True, reason="needs fix in
<file>")``: it fails today, and must lose the mark when that fix lands (strict: a pass is an error).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import labkit
from labkit import (
    batchsize,
    data,
    exercises,
    fractal,
    grokking,
    hessian,
    linalg,
    models,
    ntk,
    signal,
    train,
    viz,
    widgets,
)

LABKIT = Path(labkit.__file__).resolve().parent
FAST = settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
CLEAR = (ValueError, TypeError)


def bad(name, call, match, fix=None):
    """One row of table 1; ``fix`` names the module that must change for it to pass (strict xfail until then)."""
    marks = pytest.mark.xfail(strict=True, reason=f"needs fix in {fix}") if fix else ()
    return pytest.param(call, match, id=name, marks=marks)


def _ds(n=12, classes=3, dim=2, seed=0):
    return data.gaussian_mixture(n=n, dim=dim, classes=classes, seed=seed)


def _mlp(i=2, o=3, seed=0):
    return models.mlp(i, [8], o, seed=seed)


def _op(n=300):
    return linalg.from_dense(torch.eye(n, dtype=torch.float64))


def _nan_x():
    x = _ds().inputs.clone()
    x[1, 0] = math.nan
    return x


def _fit(**kw):
    kw = {"steps": 2, "progress": False, **kw}
    return train.fit(kw.pop("model", _mlp()), kw.pop("data", _ds()), **kw)


def _fit_many(**kw):
    kw = {"steps": 2, "progress": False, "hparams": {"lr": [0.1]}, **kw}
    return train.fit_many(lambda s: _mlp(seed=s), kw.pop("data", _ds()), **kw)


def _raised_by_labkit(info):
    raiser = Path(str(info.traceback[-1].path)).resolve()
    assert LABKIT in raiser.parents, f"raised in {raiser}, not by labkit: {info.value!r}"


def assert_clear_error(call, match):
    """``call`` raises a ValueError/TypeError matching ``match`` (the argument's name), raised by labkit."""
    with pytest.raises(CLEAR, match=match) as info:
        call()
    _raised_by_labkit(info)


# ---------------------------------------------------------------- table 1: bad inputs -> clear errors

CORE = "labkit/train.py"  # owned by the "core" engineer of issue 13
SCANNER = "labkit/fractal/scanner.py"
PANEL = "labkit/widgets/panel.py + controls.py (the message says value=, not the argument)"

BAD = [
    # data
    bad("data.Dataset NaN inputs", lambda: data.Dataset(_nan_x(), _ds().targets, "classification", 3), "inputs"),
    bad("data.Dataset label >= num_classes", lambda: data.Dataset(_ds().inputs, _ds().targets + 1,
                                                                  "classification", 3), "targets"),
    bad("data.Dataset float labels", lambda: data.Dataset(_ds().inputs, _ds().targets * 0.5, "classification", 3),
        "targets"),
    bad("data.Dataset rows differ", lambda: data.Dataset(_ds().inputs, _ds().targets[:3], "classification", 3),
        "targets"),
    bad("data.as_dataset strings", lambda: data.as_dataset((["a"], [1])), "data"),
    bad("data.as_dataset one tensor", lambda: data.as_dataset(torch.ones(3)), "data"),
    bad("data.load unknown name", lambda: data.load("mnits"), "name"),
    bad("data.gaussian_mixture n=-1", lambda: data.gaussian_mixture(n=-1), "n must"),
    bad("data.gaussian_mixture seed=-1", lambda: data.gaussian_mixture(seed=-1), "seed"),
    bad("data.two_moons noise=nan", lambda: data.two_moons(noise=math.nan), "noise"),
    bad("data.split frac=2", lambda: _ds().split(2.0), "frac"),
    bad("data.split one row", lambda: _ds()[:1].split(0.5), "split"),
    bad("data.batches batch_size=0", lambda: next(_ds().batches(0)), "batch_size"),
    bad("data.digits flat='yes'", lambda: data.digits(flat="yes"), "flat"),
    # models
    bad("models.mlp in_dim=0", lambda: models.mlp(0, [8], 3), "in_dim"),
    bad("models.mlp widths=[-1]", lambda: models.mlp(2, [-1], 3), "widths"),
    bad("models.mlp activation", lambda: models.mlp(2, [8], 3, "sigmoidz"), "activation"),
    bad("models.mlp widths=8 (not a list)", lambda: models.mlp(2, 8, 3), "widths"),
    bad("models.mlp bias_std=-1", lambda: models.mlp(2, [8], 3, bias_std=-1.0), "bias_std"),
    bad("models.cnn image_size=0", lambda: models.cnn(0), "image_size"),
    # train
    bad("train.fit lr=-1", lambda: _fit(lr=-1.0), "lr"),
    bad("train.fit lr=nan", lambda: _fit(lr=math.nan), "lr"),
    bad("train.fit steps=0", lambda: _fit(steps=0), "steps"),
    bad("train.fit batch_size > n", lambda: _fit(batch_size=99), "batch_size"),
    bad("train.fit optimizer", lambda: _fit(optimizer="adan"), "optimizer"),
    bad("train.fit loss name", lambda: _fit(loss="l1"), "loss"),
    bad("train.fit wrong out_dim", lambda: _fit(model=_mlp(2, 5)), "out_dim"),
    bad("train.fit NaN inputs", lambda: _fit(data=(_nan_x(), _ds().targets)), "inputs"),
    bad("train.fit negative labels", lambda: _fit(data=(_ds().inputs, _ds().targets - 1)), "targets"),
    bad("train.fit negative lr_schedule", lambda: _fit(steps=3, lr_schedule=lambda t: -1.0), "lr_schedule"),
    bad("train.fit weight_decay=-1", lambda: _fit(weight_decay=-1.0), "weight_decay"),
    bad("train.fit eval_every=0", lambda: _fit(eval_every=0), "eval_every"),
    bad("train.fit data=None", lambda: _fit(data=None), "data"),
    bad("train.fit mse on classification", lambda: _fit(loss="mse"), "loss"),
    bad("train.fit_many empty hparams", lambda: _fit_many(hparams={"lr": []}), "hparams"),
    bad("train.fit_many lr=-1", lambda: _fit_many(hparams={"lr": [0.1, -1.0]}), "lr"),
    bad("train.fit_many NaN lr_schedule", lambda: _fit_many(steps=3, lr_schedule=lambda t: math.nan), "lr_schedule"),
    bad("train.fit_many unknown hparam", lambda: _fit_many(hparams={"lrr": [0.1]}), "lrr"),
    bad("train.fit_many NaN targets", lambda: _fit_many(data=(_ds().inputs, torch.full((12,), math.nan))),
        "targets"),
    bad("train.fit_many engine='fast'", lambda: _fit_many(engine="fast"), "engine"),
    bad("train.fit_many engine='batched' on a CNN",
        lambda: train.fit_many(lambda s: models.cnn(8, width=2, seed=s), data.digits(), hparams={"seed": [0]},
                               steps=1, progress=False, engine="batched"), "engine"),
    bad("train.evaluate a string", lambda: train.evaluate(_mlp(), "digits"), "data"),
    # linalg
    bad("linalg.top_eigenvalues k=0", lambda: linalg.top_eigenvalues(_op(), k=0), "k must"),
    bad("linalg.top_eigenvalues k > n", lambda: linalg.top_eigenvalues(_op(5), k=6), "k=6"),
    bad("linalg.top_eigenvalues which", lambda: linalg.top_eigenvalues(_op(), which="top"), "which"),
    bad("linalg.top_eigenvalues tol=nan", lambda: linalg.top_eigenvalues(_op(), tol=math.nan), "tol"),
    bad("linalg.top_eigenvalues max_matvecs < k", lambda: linalg.top_eigenvalues(_op(), k=3, max_matvecs=2,
                                                                                 dense=False), "max_matvecs"),
    bad("linalg.top_eigenvalues non-symmetric matrix",
        lambda: linalg.top_eigenvalues(torch.triu(torch.ones(300, 300))), "symmetric"),
    bad("linalg.top_eigenvalues non-symmetric operator",
        lambda: linalg.top_eigenvalues(linalg.from_function(lambda V: torch.roll(V, 1, 0), 300), k=2), "symmetric"),
    bad("linalg.top_eigenvalues numpy", lambda: linalg.top_eigenvalues(np.eye(3)), "op"),
    bad("linalg.top_eigenvalues v0 shape", lambda: linalg.top_eigenvalues(_op(), v0=torch.ones(3), dense=False),
        "v0"),
    bad("linalg.top_eigenvalues v0 NaN", lambda: linalg.top_eigenvalues(
        _op(), v0=torch.full((300,), math.nan, dtype=torch.float64), dense=False), "v0"),
    bad("linalg.top_eigenvalues block_size=0", lambda: linalg.top_eigenvalues(_op(), block_size=0), "block_size"),
    bad("linalg.from_dense NaN", lambda: linalg.from_dense(torch.full((3, 3), math.nan)), "matrix"),
    bad("linalg.from_dense integer", lambda: linalg.from_dense(torch.eye(3, dtype=torch.long)), "matrix"),
    bad("linalg.from_dense non-square", lambda: linalg.from_dense(torch.ones(2, 3)), "matrix"),
    bad("linalg.from_function not callable", lambda: linalg.from_function(3, 4), "matmat_fn"),
    bad("linalg.from_function size=0", lambda: linalg.from_function(lambda V: V, 0), "size"),
    bad("linalg.trace method", lambda: linalg.trace(_op(), method="exact"), "method"),
    bad("linalg.trace n_matvec=0", lambda: linalg.trace(_op(), n_matvec=0), "n_matvec"),
    bad("linalg.spectral_density n_probes=0", lambda: linalg.spectral_density(_op(), n_probes=0), "n_probes"),
    bad("linalg.spectral_density sigma=-1", lambda: linalg.spectral_density(_op(10), 2, 5, sigma=-1.0), "sigma"),
    bad("linalg.spectral_density non-symmetric", lambda: linalg.spectral_density(
        linalg.from_function(lambda V: torch.roll(V, 1, 0), 50), 2, 5), "symmetric"),
    bad("linalg.power_iteration k=0", lambda: linalg.power_iteration(_op(), k=0), "k must"),
    bad("linalg.lanczos lanczos_steps=0", lambda: linalg.lanczos(_op(), 0), "lanczos_steps"),
    bad("linalg operator @ wrong shape", lambda: _op(4) @ torch.ones(5, dtype=torch.float64), "shape"),
    # hessian
    bad("hessian.top_eigenvalues matrix", lambda: hessian.top_eigenvalues(_mlp(), "cross_entropy", _ds(),
                                                                           matrix="fisher"), "matrix"),
    bad("hessian.top_eigenvalues k too big", lambda: hessian.top_eigenvalues(_mlp(), "cross_entropy", _ds(),
                                                                             k=10**6), "k="),
    bad("hessian.HessianOperator no data", lambda: hessian.HessianOperator(_mlp(), "cross_entropy"), "data"),
    bad("hessian.HessianOperator params", lambda: hessian.HessianOperator(_mlp(), "cross_entropy", _ds(),
                                                                           params=["nope"]), "params"),
    bad("hessian.HessianOperator batch_size=0", lambda: hessian.HessianOperator(_mlp(), "cross_entropy", _ds(),
                                                                                 batch_size=0), "batch_size"),
    bad("hessian.HessianOperator NaN data", lambda: hessian.HessianOperator(_mlp(), "cross_entropy",
                                                                             (_nan_x(), _ds().targets)), "inputs"),
    bad("hessian.trace n_matvec=-1", lambda: hessian.trace(_mlp(), "cross_entropy", _ds(), n_matvec=-1),
        "n_matvec"),
    bad("hessian.Sharpness every=0", lambda: hessian.Sharpness(every=0), "every"),
    bad("hessian.batch_sharpness batch_sizes=[0]",
        lambda: hessian.batch_sharpness(_mlp(), "cross_entropy", _ds(), batch_sizes=[0]), "batch_size"),
    bad("hessian.count_outliers empty", lambda: hessian.count_outliers([]), "values"),
    bad("hessian.class_outliers classes=1", lambda: hessian.class_outliers(1), "classes"),
    # ntk
    bad("ntk.empirical list input", lambda: ntk.empirical(_mlp(), [[1.0, 2.0]]), "x1"),
    bad("ntk.empirical wrong features", lambda: ntk.empirical(_mlp(), torch.randn(3, 5)), "accept"),
    bad("ntk.empirical method", lambda: ntk.empirical(_mlp(), torch.randn(3, 2), method="magic"), "method"),
    bad("ntk.empirical chunk_size=0", lambda: ntk.empirical(_mlp(), torch.randn(3, 2), chunk_size=0),
        "chunk_size"),
    bad("ntk.analytic depth=-1", lambda: ntk.analytic(torch.randn(3, 2), depth=-1), "depth"),
    bad("ntk.analytic NaN", lambda: ntk.analytic(torch.full((2, 2), math.nan), depth=1), "x1"),
    bad("ntk.analytic bias_std=-1", lambda: ntk.analytic(torch.randn(3, 2), depth=1, bias_std=-1.0), "bias_std"),
    bad("ntk.predict t=-1", lambda: ntk.predict(torch.eye(3), torch.ones(2, 3), torch.ones(3, 1), t=-1.0), "t must"),
    bad("ntk.predict shapes", lambda: ntk.predict(torch.eye(3), torch.ones(2, 4), torch.ones(3, 1)), "k_test_train"),
    bad("ntk.kernel_distance shapes", lambda: ntk.kernel_distance(torch.eye(3), torch.eye(2)), "k1 and k2"),
    bad("ntk.KernelTracker every=0", lambda: ntk.KernelTracker(torch.randn(3, 2), every=0), "every"),
    # batchsize
    bad("batchsize.scale_lr rule", lambda: batchsize.scale_lr(0.1, 32, 64, rule="cubic"), "rule"),
    bad("batchsize.scale_lr lr=-1", lambda: batchsize.scale_lr(-0.1, 32, 64), "lr"),
    bad("batchsize.scale_lr from_batch=0", lambda: batchsize.scale_lr(0.1, 0, 64), "from_batch"),
    bad("batchsize.scale_beta2 beta2=1.5", lambda: batchsize.scale_beta2(1.5, 32, 64), "beta2"),
    bad("batchsize.scale_ema momentum=-0.1", lambda: batchsize.scale_ema(-0.1, 32, 64), "momentum"),
    bad("batchsize.warmup warmup_steps=0", lambda: batchsize.warmup(32, 64, 0), "warmup_steps"),
    bad("batchsize.noise_scale method", lambda: batchsize.noise_scale(_mlp(), "cross_entropy", _ds(), method="x"),
        "method"),
    bad("batchsize.noise_scale n_samples=0", lambda: batchsize.noise_scale(
        _mlp(), "cross_entropy", _ds(), method="two_batch", batch_sizes=(2, 8), n_samples=0), "n_samples"),
    bad("batchsize.fit_tradeoff lengths", lambda: batchsize.fit_tradeoff([1.0, 2.0], [1.0]), "steps"),
    bad("batchsize.fit_tradeoff negative", lambda: batchsize.fit_tradeoff([1.0, -2.0, 3.0], [3.0, 2.0, 1.0]),
        "steps"),
    bad("batchsize.per_example_grads rows", lambda: batchsize.per_example_grads(
        _mlp(), "cross_entropy", (torch.randn(4, 2), torch.tensor([0, 1]))), "targets"),
    bad("batchsize.NoiseScaleTracker every=0", lambda: batchsize.NoiseScaleTracker(every=0), "every"),
    bad("batchsize.steps_to_target batch_sizes=[]", lambda: batchsize.steps_to_target(
        lambda s: _mlp(), _ds(), batch_sizes=[], target=0.1, lrs=[0.1], progress=False), "batch_sizes"),
    # fractal
    bad("fractal.scan resolution=0", lambda: fractal.scan("quick", resolution=0, progress=False), "resolution"),
    bad("fractal.scan unknown preset", lambda: fractal.scan("nope", progress=False), "nope"),
    bad("fractal.scan x_range reversed", lambda: fractal.scan("quick", x_range=(1.0, 0.1), resolution=4,
                                                               progress=False), "x_range"),
    bad("fractal.scan result over max_memory", lambda: fractal.scan(
        fractal.Experiment.preset("quick", steps=40), resolution=4, max_memory=64, progress=False), "max_memory"),
    bad("fractal.Experiment width=0", lambda: fractal.Experiment(width=0), "width"),
    bad("fractal.Experiment nonlinearity", lambda: fractal.Experiment(nonlinearity="sin"), "nonlinearity"),
    bad("fractal.box_counting_dimension 1-D", lambda: fractal.box_counting_dimension(np.zeros(10, bool)), "mask"),
    bad("fractal.box_counting_dimension NaN", lambda: fractal.box_counting_dimension(np.full((8, 8), np.nan)),
        "mask"),
    bad("fractal.colorize zmin >= zmax", lambda: fractal.colorize(np.zeros((2, 2)), 1.0, -1.0), "zmin",),
    bad("fractal.write_png 2-D array", lambda: fractal.write_png("/nonexistent/x.png", np.zeros((2, 2))), "rgb"),
    # viz
    bad("viz.spectrum 2-D values", lambda: viz.spectrum(np.ones((2, 2))), "values"),
    bad("viz.heatmap 1-D", lambda: viz.heatmap(np.ones(3)), "matrix"),
    bad("viz.image2d 1-D", lambda: viz.image2d(np.ones(3)), "z"),
    bad("viz.LivePlot backend", lambda: viz.LivePlot(["loss"], backend="tk"), "backend"),
    bad("viz.LivePlot fps=0", lambda: viz.LivePlot(["loss"], fps=0), "fps"),
    bad("viz.loss_curves metric", lambda: viz.loss_curves([train.History()], metric="acc"), "metric"),
    bad("viz.density lengths", lambda: viz.density(np.arange(3.0), np.arange(4.0)), "density"),
    # widgets (constructors fail at construction, not in a thread)
    bad("widgets.lr_slider min > max", lambda: widgets.lr_slider(0.1, min=1.0, max=0.01), "min"),
    bad("widgets.int_slider value out of range", lambda: widgets.int_slider("n", 50, 1, 10), "value"),
    bad("widgets.Runner work not callable", lambda: widgets.Runner(3), "work"),
    bad("widgets.train_panel dataset", lambda: widgets.train_panel(dataset="nope"), "dataset",),
    bad("widgets.train_panel lr=-1", lambda: widgets.train_panel(lr=-1.0), "lr"),
    bad("widgets.fractal_explorer resolution=0", lambda: widgets.fractal_explorer(resolution=0), "resolution"),
    bad("widgets.load_split test_frac=0", lambda: widgets.load_split("two_moons", test_frac=0.0), "frac"),
    # exercises
    bad("exercises.check unknown id", lambda: exercises.check("nope.nope", 1), "nope",),
    bad("exercises.hint unknown id", lambda: exercises.hint("nope.nope"), "nope",),
    bad("exercises.hint n=-1", lambda: exercises.hint(exercises.list_exercises()[0], n=-1), "n"),
    # issue 26: the API contract's catalogue
    bad("fractal.scan chunk_size=0", lambda: fractal.scan("quick", resolution=4, chunk_size=0, progress=False),
        "chunk_size"),
    bad("fractal.scan log=(True,)", lambda: fractal.scan("quick", resolution=4, log=(True,), progress=False), "log="),
    bad("fractal.scan log='yes'", lambda: fractal.scan("quick", resolution=4, log="yes", progress=False), "log="),
    bad("fractal.Experiment.preset foo=1", lambda: fractal.Experiment.preset("quick", foo=1), "foo"),
    bad("fractal.Experiment.replace foo=1", lambda: fractal.Experiment().replace(foo=1), "foo"),
    bad("models.mlp weight_std=-1", lambda: models.mlp(2, [4], 1, weight_std=-1.0), "weight_std"),
    bad("models.resmlp weight_std=-1", lambda: models.resmlp(2, 4, 2, 1, weight_std=-1.0), "weight_std"),
    bad("models.mup_mlp weight_std=-1", lambda: models.mup_mlp(2, [4], 1, weight_std=-1.0), "weight_std"),
    bad("fit_many eval_every=-1", lambda: train.fit_many(lambda s: _mlp(seed=s), _ds(), hparams={"lr": [0.1]},
                                                          steps=2, eval_every=-1, progress=False), "eval_every"),
    bad("ntk.predict non-symmetric kernel", lambda: ntk.predict(torch.tensor([[1.0, 2.0], [0.0, 1.0]]),
                                                                torch.ones(1, 2), torch.ones(2, 1)), "k_train_train"),
    bad("ntk.predict NaN kernel", lambda: ntk.predict(torch.tensor([[1.0, math.nan], [math.nan, 1.0]]),
                                                      torch.ones(1, 2), torch.ones(2, 1)), "k_train_train"),
    bad("hessian.count_outliers max_count=-1", lambda: hessian.count_outliers([3.0, 1.0], max_count=-1), "max_count"),
    bad("linalg.to_dense chunk_size=0", lambda: linalg.to_dense(_op(4), chunk_size=0), "chunk_size"),
    bad("hessian.trace data missing", lambda: hessian.trace(_mlp(), "cross_entropy"), "data"),
    bad("per_example_grads data missing", lambda: batchsize.per_example_grads(_mlp()), "data"),
    bad("grokking.split_masks train_frac=1.5", lambda: grokking.split_masks(7, [1.5]), "train_frac"),
    bad("grokking.split_masks seed count", lambda: grokking.split_masks(7, [0.5], seed=[0, 1]), "seed"),
    bad("grokking.run train_frac='x'", lambda: grokking.run(p=7, train_frac="x", steps=2, progress=False),
        "train_frac"),
    bad("grokking.run split_seed=-1", lambda: grokking.run(p=7, steps=2, split_seed=-1, progress=False), "split_seed"),
    bad("grokking.make_model p=0", lambda: grokking.make_model(0), "p must"),
    bad("grokking.null_sparsity samples=0", lambda: grokking.null_sparsity(7, samples=0), "samples"),
    bad("grokking.null_concentration top_k=0", lambda: grokking.null_concentration(7, top_k=0), "top_k"),
    bad("grokking.live_plot p=0", lambda: grokking.live_plot(0), "p must"),
    bad("signal.critical_sigma_w2 lo=-1", lambda: signal.critical_sigma_w2(lo=-1.0), "lo"),
    bad("signal.critical_sigma_w2 lo>hi", lambda: signal.critical_sigma_w2(lo=5.0, hi=1.0), "lo"),
    bad("signal.critical_sigma_w2 iters=0", lambda: signal.critical_sigma_w2(iters=0), "iters"),
    bad("signal.critical_sigma_w2 sigma_b2=-1", lambda: signal.critical_sigma_w2(-1.0), "sigma_b2"),
    bad("signal.iterate sigma_w2=nan", lambda: signal.iterate(3, sigma_w2=math.nan), "sigma_w2"),
    bad("signal.iterate q0=-1", lambda: signal.iterate(3, q0=-1.0), "q0"),
    bad("signal.iterate c0=2", lambda: signal.iterate(3, c0=2.0), "c0"),
    bad("signal.propagate c0=nan", lambda: signal.propagate(depth=2, width=4, c0=math.nan), "c0"),
    bad("hessian.outlier_count lr=-1", lambda: hessian.probes.outlier_count(3, lr=-1.0), "lr"),
    bad("hessian.outlier_count per_class=0", lambda: hessian.probes.outlier_count(3, per_class=0), "per_class"),
    bad("linalg.power_iteration tol=nan", lambda: linalg.power_iteration(_op(4), tol=math.nan), "tol"),
    bad("data.Dataset.to dtype='x'", lambda: _ds().to(dtype="x"), "dtype"),
    bad("scaling.loglog_slope empty", lambda: labkit.scaling.loglog_slope([], []), "x must"),
    bad("scaling.loglog_slope x<=0", lambda: labkit.scaling.loglog_slope([0.0, 1.0, 2.0], [1.0, 2.0, 3.0]), "x must"),
    bad("edge.at_edge thresholds length", lambda: labkit.edge.at_edge([1.0, 2.0, 3.0], [1.0, 2.0]), "thresholds"),
    bad("edge.edge_ratio thresholds length", lambda: labkit.edge.edge_ratio([1.0, 2.0, 3.0], [1.0, 2.0]),
        "thresholds"),
    bad("mup.lr_sweep widths=[]", lambda: labkit.mup.lr_sweep(lambda w, s: models.mlp(2, [w], 3, seed=s), [], [0.1],
                                                               _ds(), steps=2, progress=False), "widths"),
    bad("signal.trainability depths=[]", lambda: signal.trainability(_ds(), [], [1.0], steps=2, progress=False),
        "depths"),
    bad("fit_many make_model=3", lambda: train.fit_many(3, _ds(), hparams={"lr": [0.1]}, steps=2, progress=False),
        "make_model"),
]


@pytest.mark.parametrize("call, match", BAD)
def test_bad_input_is_a_clear_error_from_labkit(call, match):
    assert_clear_error(call, match)


# ---------------------------------------------------------------- generated bad inputs


@FAST
@given(n=st.integers(2, 20), d=st.integers(1, 5), data_=st.data())
def test_any_nan_or_inf_in_inputs_is_named_with_its_first_index(n, d, data_):
    x = torch.randn(n, d, dtype=data_.draw(st.sampled_from([torch.float16, torch.float32, torch.float64])))
    cells = data_.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, d - 1)), min_size=1, max_size=4))
    for i, j in cells:
        x[i, j] = data_.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    first = min(cells)
    with pytest.raises(ValueError, match=rf"inputs contains {len(set(cells))} NaN or inf .* index \({first[0]}, "
                                         rf"{first[1]}\)") as info:
        data.Dataset(x, torch.zeros(n, dtype=torch.long), "classification", 2)
    _raised_by_labkit(info)


@FAST
@given(labels=st.lists(st.integers(-5, 8), min_size=1, max_size=20), classes=st.integers(1, 4))
def test_any_label_outside_the_classes_is_refused(labels, classes):
    y = torch.tensor(labels)
    x = torch.zeros(len(labels), 2)
    if all(0 <= v < classes for v in labels):
        assert data.Dataset(x, y, "classification", classes).num_classes == classes
        return
    with pytest.raises(ValueError, match=r"targets has label -?\d+ at row \d+, outside \[0, num_classes") as info:
        data.Dataset(x, y, "classification", classes)
    _raised_by_labkit(info)


@FAST
@given(value=st.one_of(st.floats(max_value=-1e-12), st.just(math.nan), st.just(math.inf)), at=st.integers(0, 9))
def test_any_bad_lr_schedule_value_is_refused_before_training(value, at):
    from labkit.optim import schedule

    with pytest.raises(ValueError, match=rf"lr_schedule returned .* at step {at}") as info:
        schedule(lambda t: value if t == at else 1.0, 10)
    _raised_by_labkit(info)


@FAST
@given(n=st.integers(3, 40), rel=st.floats(1e-6, 1.0), seed=st.integers(0, 99))
def test_asymmetry_above_rounding_is_refused_and_below_is_accepted(n, rel, seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = A + A.T
    E = torch.zeros(n, n, dtype=torch.float64)
    E[0, n - 1] = rel * float(A.abs().max())
    with pytest.raises(ValueError, match="matrix must be symmetric: entry") as info:
        linalg.from_dense(A + E)
    _raised_by_labkit(info)
    linalg.from_dense(A + 1e-3 * E * 1e-12 / rel)  # asymmetry ~1e-15 of the largest entry: rounding


@FAST
@given(lr=st.one_of(st.floats(max_value=0.0), st.just(math.nan)), to_batch=st.integers(-10**6, 0))
def test_scale_lr_refuses_non_positive_values(lr, to_batch):
    for args, name in (((lr, 32, 64), "lr"), ((0.1, 32, to_batch), "to_batch")):
        with pytest.raises(CLEAR, match=name) as info:
            batchsize.scale_lr(*args)
        _raised_by_labkit(info)


# ---------------------------------------------------------------- table 2: legitimate edge inputs


def _finite_losses(hist):
    return all(math.isfinite(v) for v in hist.loss)


def edge(name, call, check, fix=None):
    marks = pytest.mark.xfail(strict=True, reason=f"needs fix in {fix}") if fix else ()
    return pytest.param(call, check, id=name, marks=marks)


_XT = torch.randn(2, 12, generator=torch.Generator().manual_seed(0)).T  # (12, 2), not contiguous
_M300 = torch.randn(300, 300, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
_SYM300 = (_M300 + _M300.T).T  # a transposed (non-contiguous) view


def _noise_scale_of_one_example():
    ns = batchsize.noise_scale(_mlp(), "cross_entropy", _ds()[:1])
    return ns


EDGE = [
    edge("fit on float16 data and model", lambda: _fit(model=_mlp().half(), data=_ds().to(dtype=torch.float16)),
         _finite_losses),
    edge("fit_many on float16 data", lambda: _fit_many(data=_ds().to(dtype=torch.float16))[0], _finite_losses),
    edge("fit on non-contiguous inputs", lambda: _fit(data=(_XT, _ds().targets)), _finite_losses),
    edge("fit on numpy arrays", lambda: _fit(data=(_ds().inputs.numpy(), _ds().targets.numpy())), _finite_losses),
    edge("fit on one example", lambda: _fit(data=_ds()[:1]), _finite_losses),
    edge("fit_many on one example", lambda: _fit_many(data=_ds()[:1])[0], _finite_losses),
    edge("evaluate one example", lambda: train.evaluate(_mlp(), _ds()[:1]), lambda r: math.isfinite(r["loss"])),
    edge("as_dataset numpy float16", lambda: data.as_dataset((_ds().inputs.numpy().astype(np.float16),
                                                               _ds().targets.numpy())),
         lambda d: d.inputs.dtype == torch.float16 and d.num_classes == 3),
    edge("Dataset to float16 keeps labels", lambda: _ds().to(dtype=torch.float16),
         lambda d: d.targets.dtype == torch.int64),
    edge("hessian top-2 of one example", lambda: hessian.top_eigenvalues(_mlp(), "cross_entropy", _ds()[:1], k=2),
         lambda r: len(r.values) == 2 and r.converged),
    edge("hessian on float16 model", lambda: hessian.top_eigenvalues(_mlp().half(), "cross_entropy",
                                                                     _ds().to(dtype=torch.float16), k=2),
         lambda r: r.values.dtype == torch.float16 and torch.isfinite(r.values).all()),
    edge("hessian on numpy data", lambda: hessian.top_eigenvalues(_mlp(), "cross_entropy",
                                                                  (_ds().inputs.numpy(), _ds().targets.numpy())),
         lambda r: len(r.values) == 1),
    edge("linalg non-contiguous matrix", lambda: linalg.top_eigenvalues(_SYM300, k=3),
         lambda r: torch.allclose(r.values, torch.linalg.eigvalsh(_SYM300).flip(0)[:3])),
    edge("linalg float16 matrix", lambda: linalg.top_eigenvalues(2 * torch.eye(4, dtype=torch.float16), k=2),
         lambda r: r.values.tolist() == [2.0, 2.0]),
    edge("linalg non-contiguous v0", lambda: linalg.top_eigenvalues(
        _SYM300, k=2, v0=torch.randn(2, 300, dtype=torch.float64).T, dense=False),
         lambda r: torch.allclose(r.values, torch.linalg.eigvalsh(_SYM300).flip(0)[:2])),
    edge("ntk.empirical non-contiguous", lambda: ntk.empirical(_mlp(), _XT[:4]),
         lambda k: torch.allclose(k, ntk.empirical(_mlp(), _XT[:4].contiguous()))),
    edge("ntk.empirical numpy", lambda: ntk.empirical(_mlp(), _XT[:4].numpy()), lambda k: k.shape == (4, 4)),
    edge("ntk.analytic float16", lambda: ntk.analytic(_XT[:4].half(), depth=1),
         lambda kt: all(torch.isfinite(t).all() for t in kt)),
    edge("ntk.analytic numpy", lambda: ntk.analytic(_XT[:4].numpy(), depth=1), lambda kt: kt[0].shape == (4, 4)),
    edge("per_example_grads one example", lambda: batchsize.per_example_grads(
        _mlp(), "cross_entropy", (_ds().inputs[:1], _ds().targets[:1])), lambda g: g.shape[0] == 1),
    edge("noise_scale of one example is undefined", _noise_scale_of_one_example,
         lambda ns: math.isnan(ns.b_simple)),
    edge("box_counting_dimension of a list", lambda: fractal.box_counting_dimension(np.ones((64, 64)).tolist()),
         lambda d: abs(d.value - 2) < 1e-9),
    edge("viz.spectrum of a tensor", lambda: viz.spectrum(torch.tensor([3.0, 1.0])), lambda f: len(f.data) >= 1),
    edge("data.Dataset.to(torch.float64) casts", lambda: _ds().to(torch.float64),
         lambda d: d.inputs.dtype == torch.float64),
    edge("hessian.count_outliers max_count=0 is none", lambda: hessian.count_outliers([5.0, 1.0, 0.9], max_count=0),
         lambda c: c == 0),
    edge("float32 + float64 operators promote", lambda: (linalg.from_dense(torch.eye(3, dtype=torch.float64))
                                                         + linalg.from_dense(2 * torch.eye(3)))
         @ torch.ones(3, dtype=torch.float64), lambda v: v.dtype == torch.float64 and v.tolist() == [3.0] * 3),
    edge("float32 @ float64 operators promote", lambda: (linalg.from_dense(torch.eye(3))
                                                         @ linalg.from_dense(2 * torch.eye(3, dtype=torch.float64)))
         @ torch.ones(3), lambda v: v.dtype == torch.float64 and v.tolist() == [2.0] * 3),
    edge("hessian.trace max_memory", lambda: hessian.trace(_mlp(), "cross_entropy", _ds(), n_matvec=6,
                                                           max_memory=2**30), lambda e: math.isfinite(e.value)),
]


@pytest.mark.parametrize("call, check", EDGE)
def test_edge_input_works_or_is_refused_clearly(call, check):
    try:
        out = call()
    except CLEAR as err:  # a refusal is fine if it is labkit's and says what to do
        tb = err.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        raiser = Path(tb.tb_frame.f_code.co_filename).resolve()
        assert LABKIT in raiser.parents, f"refused from {raiser}, not by labkit: {err!r}"
        return
    assert check(out), out
