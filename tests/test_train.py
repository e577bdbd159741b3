import contextlib
import json
import math

import numpy as np
import pytest
import torch

from labkit import data, models, train
from labkit.optim import cosine, warmup


def regression(n=64, dtype=torch.float64):
    return data.teacher_student(n=n, dim=3, teacher_width=8, noise=0.05, seed=0).to(dtype=dtype)


def net(seed=0, out=1, dtype=torch.float64):
    return models.mlp(3, [16, 16], out, activation="tanh", seed=seed).to(dtype)


def test_fit_matches_hand_written_loop():
    ds = regression()
    model, ref = net(0), net(0)
    hist = train.fit(model, ds, lr=0.05, steps=30, optimizer="momentum", progress=False)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = ((ref(ds.inputs) - ds.targets) ** 2).sum(1).mean()
        losses.append(loss.item())
        loss.backward()
        opt.step()
    np.testing.assert_allclose(hist.loss, losses, rtol=1e-12)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert hist.steps == 30 and not hist.diverged and hist.lr == [0.05] * 30


def test_minibatch_fit_uses_dataset_batches():
    ds = regression()
    model, ref = net(1), net(1)
    hist = train.fit(model, ds, lr=0.1, steps=12, batch_size=16, seed=7, progress=False)
    batches = ds.batches(16, seed=7)
    for t in range(12):
        x, y = next(batches)
        loss = ((ref(x) - y) ** 2).sum(1).mean()
        assert loss.item() == pytest.approx(hist.loss[t], rel=1e-12)
        grads = torch.autograd.grad(loss, list(ref.parameters()))
        with torch.no_grad():
            for p, g in zip(ref.parameters(), grads):
                p -= 0.1 * g


def test_fit_is_deterministic():
    ds = data.gaussian_mixture(n=128, classes=3, seed=0)
    h1 = train.fit(models.mlp(2, [16], 3, seed=0), ds, lr=0.1, steps=20, batch_size=32, seed=3, progress=False)
    h2 = train.fit(models.mlp(2, [16], 3, seed=0), ds, lr=0.1, steps=20, batch_size=32, seed=3, progress=False)
    assert h1.loss == h2.loss and h1.eval == h2.eval
    h3 = train.fit(models.mlp(2, [16], 3, seed=0), ds, lr=0.1, steps=20, batch_size=32, seed=4, progress=False)
    assert h1.loss != h3.loss


def test_classification_records_accuracy_and_learns():
    ds = data.gaussian_mixture(n=256, classes=3, separation=4.0, seed=0)
    tr, te = ds.split(0.75, seed=0)
    hist = train.fit(models.mlp(2, [32], 3, seed=0), tr, lr=0.5, steps=100, eval_data=te, eval_every=10,
                     progress=False)
    assert hist.eval_steps == [*range(0, 100, 10), 100]
    assert hist.eval["accuracy"][-1] > 0.9 > hist.eval["accuracy"][0]
    assert hist.loss[-1] < hist.loss[0]


def test_divergence_is_recorded_not_raised():
    ds = regression()
    hist = train.fit(net(0), ds, lr=50.0, steps=200, progress=False)
    assert hist.diverged and hist.diverged_at == hist.steps - 1 < 200
    assert not math.isfinite(hist.final_loss)
    assert all(math.isfinite(v) for v in hist.loss[:-1])


def test_callbacks_see_every_step_and_can_stop():
    seen = []

    class Recorder(train.Callback):
        def on_start(self, info):
            seen.append("start")

        def on_step(self, info):
            seen.append((info.step, info.loss, info.lr))
            return info.step == 4

        def on_end(self, history):
            seen.append(("end", history.steps))

    params_at = []
    hist = train.fit(net(0), regression(), lr=0.01, steps=50, progress=False,
                     callbacks=[Recorder(), lambda info: params_at.append(info.model[0].weight[0, 0].item())])
    assert seen[0] == "start" and seen[-1] == ("end", 5)
    assert [s[0] for s in seen[1:-1]] == [0, 1, 2, 3, 4]
    assert [s[1] for s in seen[1:-1]] == hist.loss and hist.stopped_early
    assert len(set(params_at)) == 5  # callbacks see theta_t, before the update


def test_schedules():
    assert [warmup(4)(t) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    c = cosine(10)
    assert c(0) == 1.0 and c(10) == pytest.approx(0.0) and c(5) == pytest.approx(0.5)
    hist = train.fit(net(0), regression(), lr=0.1, steps=20, lr_schedule="warmup", progress=False)
    assert hist.lr[0] == pytest.approx(0.05) and hist.lr[5] == pytest.approx(0.1)
    hist = train.fit(net(0), regression(), lr=0.1, steps=5, lr_schedule=lambda t: 0.5**t, progress=False)
    assert hist.lr == pytest.approx([0.1, 0.05, 0.025, 0.0125, 0.00625])


def test_custom_optimizer_and_loss():
    hist = train.fit(net(0), regression(), optimizer=lambda p, lr, weight_decay: torch.optim.Adagrad(p, lr=lr),
                     loss=lambda pred, y: (pred - y).abs().mean(), lr=0.05, steps=10, progress=False)
    assert hist.steps == 10 and hist.loss[-1] < hist.loss[0]


def test_history_serialises():
    hist = train.fit(net(0), regression(), lr=0.05, steps=3, progress=False)
    d = hist.to_dict()
    assert d["loss"] == hist.loss and d["hparams"]["lr"] == 0.05 and d["diverged"] is False


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(lr=0.0), ValueError, "lr must be > 0, got 0.0"),
        (dict(lr=-1.0), ValueError, "lr must be > 0"),
        (dict(steps=0), ValueError, "steps must be > 0"),
        (dict(steps=2.5), TypeError, "steps must be an int"),
        (dict(batch_size=0), ValueError, "batch_size must be between 1 and 64, got 0"),
        (dict(batch_size=65), ValueError, "batch_size must be between 1 and 64, got 65"),
        (dict(optimizer="rmsprop"), ValueError, "optimizer='rmsprop' is not supported; choose one of"),
        (dict(loss="hinge"), ValueError, "loss='hinge' is not supported; choose one of"),
        (dict(lr_schedule="step"), ValueError, "lr_schedule='step' is not supported"),
        (dict(weight_decay=-0.1), ValueError, "weight_decay must be >= 0"),
    ],
)
def test_fit_bad_input(kwargs, exc, match):
    model = net(0)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(exc, match=match):
        train.fit(model, regression(), **({"steps": 5} | kwargs), progress=False)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))  # nothing trained


def test_model_data_mismatch_is_explained():
    with pytest.raises(ValueError, match=r"inputs have shape \(3,\)"):
        train.fit(models.mlp(5, [4], 1).double(), regression(), steps=1, progress=False)
    with pytest.raises(ValueError, match="has 3 classes; build the model with out_dim=3"):
        train.fit(models.mlp(2, [4], 2), data.gaussian_mixture(n=30, classes=3), steps=1, progress=False)
    with pytest.raises(ValueError, match="needs a classification task"):
        train.fit(net(0), regression(), loss="cross_entropy", steps=1, progress=False)


# ---------------------------------------------------------------- fit_many

ENGINES = pytest.mark.parametrize("engine", ["batched", "vmap"])  # both engines, each against separate fits


def compare(many, single, rtol=1e-6):
    assert many.diverged == single.diverged and many.diverged_at == single.diverged_at
    assert len(many.loss) == len(single.loss)
    a, b = np.array(many.loss), np.array(single.loss)
    finite = np.isfinite(b)
    np.testing.assert_allclose(a[finite], b[finite], rtol=rtol)
    assert np.array_equal(np.isfinite(a), finite)
    assert many.eval_steps == single.eval_steps
    for k in single.eval:
        np.testing.assert_allclose(many.eval[k], single.eval[k], rtol=rtol)


@ENGINES
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw"])
def test_fit_many_equals_separate_fits_with_divergent_members(optimizer, engine):
    ds = regression()
    lrs = {"sgd": [0.01, 0.1, 0.05, 300.0, 3000.0], "momentum": [0.01, 0.05, 0.2, 300.0, 3000.0],
           "adam": [1e-3, 1e-2, 0.05, 1e3, 1e5], "adamw": [1e-3, 1e-2, 0.05, 1e3, 1e5]}[optimizer]
    hp = {"lr": lrs, "seed": [0, 1, 2, 3, 4], "weight_decay": [0.0, 0.01, 0.0, 0.0, 0.1]}
    many = train.fit_many(net, ds, hparams=hp, steps=60, optimizer=optimizer, progress=False, engine=engine)
    diverged = 0
    for i, h in enumerate(many):
        single = train.fit(net(hp["seed"][i]), ds, lr=hp["lr"][i], weight_decay=hp["weight_decay"][i], steps=60,
                           optimizer=optimizer, seed=hp["seed"][i], progress=False)
        compare(h, single)
        diverged += h.diverged
    if optimizer in ("sgd", "momentum"):
        assert diverged >= 1  # the comparison covered diverging members


@ENGINES
def test_fit_many_minibatch_mixed_batch_sizes_and_classification(engine):
    ds = data.gaussian_mixture(n=96, classes=3, seed=1).to(dtype=torch.float64)

    def make(seed):
        return models.mlp(2, [8], 3, seed=seed).double()

    hp = {"lr": [0.1, 0.3, 0.3, 5e3], "seed": [0, 1, 2, 3], "batch_size": [16, 16, 32, 16]}
    many = train.fit_many(make, ds, hparams=hp, steps=40, eval_every=5, progress=False, engine=engine)
    for i, h in enumerate(many):
        single = train.fit(make(hp["seed"][i]), ds, lr=hp["lr"][i], batch_size=hp["batch_size"][i],
                           seed=hp["seed"][i], steps=40, eval_every=5, progress=False)
        compare(h, single)
        assert h.hparams["batch_size"] == hp["batch_size"][i]


@ENGINES
def test_fit_many_shared_seed_shares_batches(engine):
    ds = regression()
    many = train.fit_many(net, ds, hparams={"lr": [0.01, 0.02]}, seed=3, batch_size=8, steps=10, progress=False,
                          engine=engine)
    for h, lr in zip(many, [0.01, 0.02]):
        compare(h, train.fit(net(3), ds, lr=lr, batch_size=8, seed=3, steps=10, progress=False))


@ENGINES
def test_fit_many_callbacks_and_grid(engine):
    g = train.grid(lr=[0.1, 0.2], seed=[0, 1, 2])
    assert g == {"lr": [0.1, 0.1, 0.1, 0.2, 0.2, 0.2], "seed": [0, 1, 2, 0, 1, 2]}
    seen = []
    many = train.fit_many(net, regression(), hparams=g, steps=8, progress=False, engine=engine,
                          callbacks=[lambda info: seen.append(info.loss.shape) or info.step == 3])
    assert seen == [(6,)] * 4 and all(h.steps == 4 and h.stopped_early for h in many)


@pytest.mark.parametrize(
    "hparams, match",
    [
        ({"lr": [0.1, -0.1]}, "lr must be > 0"),
        ({"lr": [0.1], "seed": [0, 1]}, "equal lengths"),
        ({"momentum": [0.9]}, "unknown keys"),
        ({"lr": []}, "empty"),
        ({"lr": [0.1], "batch_size": [1000]}, "batch_size must be between"),
    ],
)
def test_fit_many_bad_input(hparams, match):
    with pytest.raises(ValueError, match=match):
        train.fit_many(net, regression(), hparams=hparams, steps=2, progress=False)


def test_keyboard_interrupt_returns_the_history_so_far():
    def interrupt(info):
        if info.step == 3:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="interrupted"):
        hist = train.fit(net(0), regression(), lr=0.01, steps=50, callbacks=[interrupt], progress=False)
    # interrupted before update 3: three updates were applied, and every record says so
    assert hist.stopped_early and hist.steps == 3 and hist.eval_steps[-1] == 3


@ENGINES
@pytest.mark.parametrize("how", ["stop", "interrupt"])
def test_interrupted_history_is_the_same_in_fit_and_fit_many(how, engine):
    def callback(info):
        if info.step == 3:
            if how == "interrupt":
                raise KeyboardInterrupt
            return True
        return None

    kw = dict(lr=0.05, steps=20, eval_every=2, callbacks=[callback], progress=False)
    ctx = pytest.warns(UserWarning, match="interrupted") if how == "interrupt" else contextlib.nullcontext()
    with ctx:
        single = train.fit(net(0), regression(), **kw)
    with ctx if how == "interrupt" else contextlib.nullcontext():
        many = train.fit_many(net, regression(), hparams={"seed": [0]}, engine=engine, **kw)[0]
    assert single.steps == many.steps == (3 if how == "interrupt" else 4)
    assert single.eval_steps == many.eval_steps  # each labelled with the step it was measured at, no duplicates
    assert len(set(single.eval_steps)) == len(single.eval_steps) and single.eval_steps[-1] == single.steps
    np.testing.assert_allclose(single.loss, many.loss, rtol=1e-5)
    np.testing.assert_allclose(single.eval["loss"], many.eval["loss"], rtol=1e-5)
    assert single.stopped_early and many.stopped_early


def test_history_to_dict_is_valid_json():
    hist = train.fit(net(0), regression(), lr=1e6, steps=200, progress=False)
    assert hist.diverged
    text = json.dumps(hist.to_dict(), allow_nan=False)  # raises on NaN / inf
    assert json.loads(text)["loss"][-1] is None


def test_explicit_device_moves_model_and_data():
    model = net(0)
    hist = train.fit(model, regression(), lr=0.01, steps=2, device="cpu", progress=False)
    assert hist.steps == 2 and next(model.parameters()).device.type == "cpu"


def test_evaluate_casts_data_to_the_model():
    metrics = train.evaluate(models.mlp(2, [8], 3, seed=0).double(), data.gaussian_mixture(n=64, classes=3))
    assert set(metrics) == {"loss", "accuracy"} and 0 <= metrics["accuracy"] <= 1


@ENGINES
def test_fit_many_callbacks_see_each_members_learning_rate(engine):
    seen = []
    train.fit_many(net, regression(), hparams={"lr": [0.5, 0.05]}, steps=3, lr_schedule=lambda t: 0.5**t,
                   progress=False, engine=engine, callbacks=[lambda info: seen.append(info.lr.tolist())])
    assert seen == [pytest.approx([0.5, 0.05]), pytest.approx([0.25, 0.025]), pytest.approx([0.125, 0.0125])]


def test_numpy_scalars_are_accepted():
    hist = train.fit(net(0), regression(), lr=np.float32(0.01), steps=np.int64(3), batch_size=np.int64(8),
                     progress=False)
    assert hist.steps == 3


def test_auto_engine_hand_batches_mlps_and_vmaps_the_rest(monkeypatch):
    from labkit.population import batched

    calls = []
    real = batched.train_group
    monkeypatch.setattr(batched, "train_group", lambda *a, **k: calls.append(1) or real(*a, **k))
    train.fit_many(net, regression(), hparams={"seed": [0, 1]}, steps=2, progress=False)
    assert calls == [1]  # an mlp: the batched engine
    train.fit_many(net, regression(), hparams={"seed": [0, 1]}, steps=2, progress=False, engine="vmap")
    conv = data.digits()
    train.fit_many(lambda s: models.cnn(8, width=2, seed=s), (conv.inputs[:16], conv.targets[:16]),
                   hparams={"seed": [0, 1]}, steps=2, progress=False)
    assert calls == [1]  # vmap when asked, and for a CNN
