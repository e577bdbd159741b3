"""The hand-batched MLP trainer against separate ``train.fit`` runs (the reference) and fit_many's vmap engine."""

import math

import numpy as np
import pytest
import torch

from labkit import _deprecated, data, models, train
from labkit.losses import LOSSES, resolve
from labkit.population import batched


def fit_batched(make, ds, **kw):
    """``fit_many`` forced onto the hand-batched engine (an error if it does not apply)."""
    return train.fit_many(make, ds, engine="batched", **kw)


def regression(n=64, dtype=torch.float64):
    return data.teacher_student(n=n, dim=3, teacher_width=8, noise=0.05, seed=0).to(dtype=dtype)


def net(seed=0, dtype=torch.float64, **kw):
    kw = {"activation": "tanh", **kw}
    return models.mlp(3, [16, 16], 1, seed=seed, **kw).to(dtype)


def compare(many, single, rtol):
    assert many.diverged == single.diverged and many.diverged_at == single.diverged_at
    assert len(many.loss) == len(single.loss) and many.lr == pytest.approx(single.lr, rel=1e-15)
    a, b = np.array(many.loss), np.array(single.loss)
    finite = np.isfinite(b)
    np.testing.assert_allclose(a[finite], b[finite], rtol=rtol)
    assert np.array_equal(np.isfinite(a), finite)
    assert many.eval_steps == single.eval_steps
    assert set(many.eval) == set(single.eval)
    for k in single.eval:
        np.testing.assert_allclose(many.eval[k], single.eval[k], rtol=rtol)
    assert many.stopped_early == single.stopped_early


def separate(make, ds, hp, i, **kw):
    return train.fit(make(hp["seed"][i]), ds, lr=hp["lr"][i], weight_decay=hp.get("weight_decay", [0.0] * 99)[i],
                     seed=hp["seed"][i], batch_size=hp.get("batch_size", [kw.pop("batch_size", None)] * 99)[i],
                     progress=False, **kw)


def test_supports_exactly_dense_mlps():
    ds = regression()
    mse = LOSSES["mse"]
    assert batched.supports([net(0), net(1)], ds, mse, "adam")
    assert batched.supports([models.mlp(3, [], 1), models.mlp(3, [], 1, seed=1)], ds, mse, "sgd")  # linear model
    assert not batched.supports([net(0), net(0, activation="relu")], ds, mse, "sgd")  # different members
    assert not batched.supports([net(0), models.mlp(3, [8, 16], 1).double()], ds, mse, "sgd")
    assert not batched.supports([net(0)], ds, mse, lambda p, lr, weight_decay: torch.optim.SGD(p, lr))
    assert not batched.supports([net(0)], ds, resolve(lambda p, y: ((p - y) ** 2).mean()), "sgd")
    assert not batched.supports([models.cnn(8, seed=0)], data.digits(), LOSSES["cross_entropy"], "sgd")
    frozen = net(0)
    frozen[0].bias.requires_grad_(False)
    assert not batched.supports([frozen], ds, mse, "sgd")
    assert not batched.supports([torch.nn.Sequential(torch.nn.Linear(3, 1))], ds, mse, "sgd")
    assert not batched.supports([net(0), net(1, dtype=torch.float32)], ds, mse, "sgd")


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw"])
def test_equals_separate_fits_with_weight_decay_and_divergence(optimizer):
    ds = regression()
    lrs = {"sgd": [0.01, 0.1, 0.05, 300.0, 3000.0], "momentum": [0.01, 0.05, 0.2, 300.0, 3000.0],
           "adam": [1e-3, 1e-2, 0.05, 1e3, 1e5], "adamw": [1e-3, 1e-2, 0.05, 1e3, 1e5]}[optimizer]
    hp = {"lr": lrs, "seed": [0, 1, 2, 3, 4], "weight_decay": [0.0, 0.01, 0.0, 0.0, 0.1]}
    many = fit_batched(net, ds, hparams=hp, steps=60, optimizer=optimizer, progress=False)
    diverged = 0
    for i, h in enumerate(many):
        compare(h, separate(net, ds, hp, i, steps=60, optimizer=optimizer), rtol=1e-11)
        diverged += h.diverged
    if optimizer != "adam":  # adam's steps are bounded by lr: even lr=1e5 stays finite here
        assert diverged >= 1  # the comparison covered diverging members


def test_minibatches_schedules_and_classification_follow_fit():
    ds = data.gaussian_mixture(n=96, classes=3, seed=1).to(dtype=torch.float64)
    tr, te = ds.split(0.75, seed=0)

    def make(seed):
        return models.mlp(2, [8, 8], 3, seed=seed).double()

    hp = {"lr": [0.1, 0.3, 0.3, 1e200, 0.2], "seed": [0, 1, 2, 3, 4], "batch_size": [16, 16, 32, 16, 8]}
    diverged = []
    for schedule in ("cosine", "warmup", lambda t: 0.5 ** (t // 10)):
        many = fit_batched(make, tr, hparams=hp, steps=40, eval_every=5, lr_schedule=schedule, eval_data=te,
                                optimizer="momentum", progress=False)
        for i, h in enumerate(many):
            compare(h, separate(make, tr, hp, i, steps=40, eval_every=5, lr_schedule=schedule, eval_data=te,
                                optimizer="momentum"), rtol=1e-11)
            assert "accuracy" in h.eval and h.hparams["batch_size"] == hp["batch_size"][i]
        diverged += [h.diverged for h in many]
    assert any(diverged) and not all(diverged)  # both kinds of member were compared


def test_shared_seed_shares_batches_and_full_batch_classification():
    ds = regression()
    many = fit_batched(net, ds, hparams={"lr": [0.01, 0.02]}, seed=3, batch_size=8, steps=10, progress=False)
    for h, lr in zip(many, [0.01, 0.02]):
        compare(h, train.fit(net(3), ds, lr=lr, batch_size=8, seed=3, steps=10, progress=False), rtol=1e-11)
    cls = data.gaussian_mixture(n=64, classes=3, seed=0).to(dtype=torch.float64)
    make = lambda s: models.mlp(2, [8], 3, activation="relu", seed=s).double()  # noqa: E731
    hp = {"lr": [0.1, 1.0, 1e4], "seed": [0, 1, 2]}
    for i, h in enumerate(fit_batched(make, cls, hparams=hp, steps=30, eval_every=4, progress=False)):
        compare(h, separate(make, cls, hp, i, steps=30, eval_every=4), rtol=1e-11)


@pytest.mark.parametrize("activation", ["relu", "gelu", "softplus", "erf", "sigmoid", "identity"])
@pytest.mark.parametrize("parameterization", ["standard", "ntk", "mean_field"])
def test_every_activation_and_parameterization(activation, parameterization):
    ds = regression(32)

    def make(seed):
        return models.mlp(3, [8, 8], 2 if parameterization == "ntk" else 1, activation=activation, seed=seed,
                          parameterization=parameterization, bias=parameterization != "mean_field").double()

    ds2 = data.Dataset(ds.inputs, ds.targets.repeat(1, 2), "regression", name="two outputs") \
        if parameterization == "ntk" else ds
    hp = {"lr": [0.01, 0.05], "seed": [0, 1], "weight_decay": [0.0, 0.01]}
    for i, h in enumerate(fit_batched(make, ds2, hparams=hp, steps=15, optimizer="adam", progress=False)):
        compare(h, separate(make, ds2, hp, i, steps=15, optimizer="adam"), rtol=1e-11)


def test_float32_follows_fit_to_float32_rounding():
    ds = data.teacher_student(n=256, dim=2, teacher_width=16, noise=0.05, seed=0)  # float32

    def make(seed):
        return models.mlp(2, [32, 32], 1, seed=seed)

    hp = {"lr": [0.01, 0.05, 0.1], "seed": [0, 1, 2]}
    for i, h in enumerate(fit_batched(make, ds, hparams=hp, steps=20, progress=False)):
        compare(h, separate(make, ds, hp, i, steps=20), rtol=2e-6)


def test_equals_fit_many_vmap_path_with_callbacks_and_stopping():
    ds = regression()
    g = train.grid(lr=[0.1, 0.2], seed=[0, 1, 2])
    seen_b, seen_v = [], []

    def spy(seen):
        return lambda info: seen.append((info.loss.clone(), {k: v.clone() for k, v in info.params.items()})) \
            or info.step == 3

    fast = fit_batched(net, ds, hparams=g, steps=8, progress=False, callbacks=[spy(seen_b)])
    slow = train.fit_many(net, ds, hparams=g, steps=8, progress=False, callbacks=[spy(seen_v)], engine="vmap")
    assert all(h.steps == 4 and h.stopped_early for h in fast)
    for a, b in zip(fast, slow):
        compare(a, b, rtol=1e-12)
    assert len(seen_b) == len(seen_v) == 4
    for (la, pa), (lb, pb) in zip(seen_b, seen_v):
        torch.testing.assert_close(la, lb, rtol=1e-12, atol=0)
        assert pa.keys() == pb.keys()
        for k in pa:
            torch.testing.assert_close(pa[k], pb[k], rtol=1e-12, atol=1e-15)


def test_unsupported_models_fall_back_to_vmap():
    full = data.digits()
    ds = (full.inputs[:32].double(), full.targets[:32])

    def make(seed):
        return models.cnn(8, width=2, seed=seed).double()

    hp = {"lr": [0.05, 0.1], "seed": [0, 1]}
    a = train.fit_many(make, ds, hparams=hp, steps=3, progress=False)  # engine="auto"
    b = train.fit_many(make, ds, hparams=hp, steps=3, progress=False, engine="vmap")
    for x, y in zip(a, b):
        compare(x, y, rtol=0)
    with pytest.raises(ValueError, match=r"engine='batched' cannot train these members: layer '0' is a Unflatten, "
                                         r"not a labkit\.models\.Dense\. It takes labkit\.models\.mlp networks"):
        fit_batched(make, ds, hparams=hp, steps=3, progress=False)
    with pytest.raises(ValueError, match=r"engine must be one of \('auto', 'batched', 'vmap'\), got 'fast'"):
        train.fit_many(make, ds, hparams=hp, steps=3, progress=False, engine="fast")


def test_divergence_is_data_and_everyone_else_is_unaffected():
    ds = regression()
    hp = {"lr": [0.05, 1e4, 0.05], "seed": [0, 1, 0]}
    many = fit_batched(net, ds, hparams=hp, steps=50, progress=False)
    assert many[1].diverged and not math.isfinite(many[1].final_loss) and many[1].diverged_at < 49
    assert many[0].loss == many[2].loss  # the same member twice, bit for bit, beside a diverging one


def test_chunking_does_not_change_any_member(monkeypatch):
    """Members are independent: one member per chunk and everyone in one chunk give the same numbers bit for bit."""
    ds = regression(n=48)
    hp = {"lr": [0.02, 0.05, 0.1, 0.2, 1e4], "seed": [0, 1, 2, 3, 4]}
    cpu = torch.device("cpu")
    monkeypatch.setattr(batched, "_CHUNK_BYTES_PER_THREAD", 1)
    assert batched._chunk_members(5, 48, 16, 8, cpu) == 1
    one = fit_batched(net, ds, hparams=hp, steps=30, eval_every=7, progress=False)
    monkeypatch.setattr(batched, "_CHUNK_BYTES_PER_THREAD", 1 << 30)
    assert batched._chunk_members(5, 48, 16, 8, cpu) == 5
    everyone = fit_batched(net, ds, hparams=hp, steps=30, eval_every=7, progress=False)
    for a, b in zip(one, everyone):
        compare(a, b, rtol=0)
    assert one[-1].diverged


def test_old_entry_point_warns_and_still_works():
    ds = regression(n=16)
    import labkit.batched as old_module

    _deprecated._warned.clear()
    with pytest.warns(DeprecationWarning, match="labkit.batched.fit_many is deprecated: use labkit.train.fit_many"):
        old = old_module.fit_many(net, ds, hparams={"lr": [0.05]}, steps=5, progress=False)
    with pytest.warns(DeprecationWarning, match="labkit.population.batched.train_group"):
        assert old_module.fit_group is batched.train_group
    compare(old[0], fit_batched(net, ds, hparams={"lr": [0.05]}, steps=5, progress=False)[0], rtol=0)


def test_chunks_follow_the_threads_on_a_cpu_and_take_everyone_on_a_gpu(monkeypatch):
    one_thread = batched._CHUNK_BYTES_PER_THREAD // (256 * 32 * 4)  # rows x width x float32: 32 KiB a member
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert batched._chunk_members(256, 256, 32, 4, torch.device("cpu")) == one_thread
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert batched._chunk_members(256, 256, 32, 4, torch.device("cpu")) == 2 * one_thread
    assert batched._chunk_members(4096, 256, 32, 4, torch.device("cuda")) == 4096  # memory was checked by fit_many


@pytest.mark.parametrize("case,why", [
    ("optimizer", "the optimizer is <function"),
    ("images", "the inputs have shape (4, 1, 8, 8), not (examples, features)"),
    ("loss", "not labkit's 'mse' or 'cross_entropy'"),
    ("readout", "the readout is followed by an activation"),
    ("mixed", "member 1 has a different architecture from member 0"),
    ("dtype", "member 1 has parameters of another dtype or device than member 0"),
    ("frozen", "layer '0' has frozen parameters"),
])
def test_unsupported_says_why(case, why):
    ds, mse = regression(n=8), LOSSES["mse"]
    members, opt = [net(0), net(1)], "sgd"
    if case == "optimizer":
        opt = lambda p, lr, weight_decay: torch.optim.SGD(p, lr)  # noqa: E731
    elif case == "images":
        ds = data.as_dataset((torch.zeros(4, 1, 8, 8, dtype=torch.float64), torch.zeros(4, 1, dtype=torch.float64)))
    elif case == "loss":
        mse = resolve(lambda p, y: ((p - y) ** 2).mean())
    elif case == "readout":
        members = [models.mlp(3, [4], 1, seed=0).double().append(models.Activation("tanh"))]
    elif case == "mixed":
        members = [net(0), net(1, activation="relu")]
    elif case == "dtype":
        members = [net(0), net(1, dtype=torch.float32)]
    elif case == "frozen":
        members[0][0].weight.requires_grad_(False)
    assert why in batched.unsupported(members, ds, mse, opt)
    assert batched.unsupported([net(0), net(1)], regression(n=8), LOSSES["mse"], "sgd") is None
