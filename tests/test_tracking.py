"""The one tracker loop (labkit.tracking.Every) and the three trackers built on it."""

from __future__ import annotations

import json

import pytest
import torch

from labkit import data, models, train
from labkit.batchsize import NoiseScaleTracker
from labkit.edge import EdgeOfStability as Sharpness
from labkit.ntk import KernelTracker
from labkit.tracking import Every

DS = data.teacher_student(n=32, dim=3, teacher_width=8, noise=0.05, seed=0).to(dtype=torch.float64)


def net(seed=0):
    return models.mlp(3, [8], 1, activation="tanh", seed=seed).double()


class FakeLive:
    def __init__(self):
        self.rows = []

    def append(self, step, **values):
        self.rows.append((step, values))


def test_every_measures_records_streams_and_stores_in_history():
    live = FakeLive()
    tracker = Every(4, lambda info: {"loss_seen": info.loss, "tag": "x"}, live=live)
    hist = train.fit(net(), DS, lr=0.05, steps=10, callbacks=[tracker], progress=False)
    assert tracker.steps == [0, 4, 8]
    assert tracker.series("loss_seen") == [hist.loss[s] for s in (0, 4, 8)]  # measured before that step's update
    assert hist.tracked["loss_seen"] == {"steps": [0, 4, 8], "values": tracker.series("loss_seen")}
    assert "tag" not in hist.tracked  # only scalars are stored and plotted
    assert [r[0] for r in live.rows] == [0, 4, 8] and set(live.rows[0][1]) == {"loss_seen"}
    json.dumps(hist.to_dict(), allow_nan=False)


def test_final_measurement_after_the_last_update():
    tracker = Every(4, lambda info: 1.0, name="one", final=True)
    hist = train.fit(net(), DS, lr=0.05, steps=10, callbacks=[tracker], progress=False)
    assert tracker.steps == [0, 4, 8, 10] and hist.tracked["one"]["steps"] == [0, 4, 8, 10]
    again = Every(5, lambda info: 1.0, final=True)
    train.fit(net(), DS, lr=0.05, steps=10, callbacks=[again], progress=False)
    assert again.steps == [0, 5, 10]  # step 10 (after the last update) comes only from final
    negative = Every(4, lambda info: 1.0)  # negative control: without final, nothing after the last update
    train.fit(net(), DS, lr=0.05, steps=10, callbacks=[negative], progress=False)
    assert negative.steps == [0, 4, 8]


@pytest.mark.parametrize("make", [
    lambda: Every(2, lambda info: 0.0),
    lambda: Sharpness(every=2),
    lambda: KernelTracker(DS.inputs[:4], every=2),
    lambda: NoiseScaleTracker(every=2),
])
def test_every_tracker_refuses_fit_many_before_training(make):
    tracker = make()
    with pytest.raises(TypeError, match=r"follows one network: use it with labkit\.train\.fit, not fit_many"):
        train.fit_many(lambda s: net(s), DS, hparams={"seed": [0, 1]}, steps=3, callbacks=[tracker], progress=False)
    assert tracker.steps == []


def test_trackers_write_their_scalars_into_the_history():
    sharp = Sharpness(every=3)
    kern = KernelTracker(DS.inputs[:5], every=3, k=2)
    noise = NoiseScaleTracker(every=3)
    hist = train.fit(net(), DS, lr=0.05, steps=7, callbacks=[sharp, kern, noise], progress=False)
    assert hist.tracked["sharpness"]["values"] == sharp.series("sharpness")
    assert hist.tracked["change"]["steps"] == [0, 3, 6, 7] == kern.steps
    assert hist.tracked["b_simple"]["values"] == noise.b_simple


def test_bad_arguments():
    with pytest.raises(ValueError, match="every"):
        Every(0, lambda info: 0.0)
    with pytest.raises(TypeError, match="measure must be a function"):
        Every(1, 3.0)
    with pytest.raises(NotImplementedError, match="pass measure"):
        train.fit(net(), DS, steps=1, callbacks=[Every(1)], progress=False)
