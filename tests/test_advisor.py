"""The batch-size advisor panel, headless: it trains, streams the instruments, advises and checks itself."""

from __future__ import annotations

import math

import pytest

import labkit
from labkit.widgets import BatchSizeAdvisor, batch_size_advisor


def _make(seed):
    return labkit.models.mlp(4, [8], 1, activation="tanh", seed=seed)


@pytest.fixture
def data():
    return labkit.data.teacher_student(n=128, dim=4, teacher_width=8, noise=0.1, seed=0)


def test_advisor_runs_streams_and_checks(data):
    adv = batch_size_advisor(_make, data, lr=0.1, batch_size=8, steps=60, every=20, probe_batch=64,
                             sweep_batches=(2, 8, 32), sweep_lrs=(0.05, 0.2), sweep_steps=400, backend="static")
    assert isinstance(adv, BatchSizeAdvisor)
    hist = adv.run(wait=True, timeout=120)
    assert hist is not None and len(adv.records) == 3
    rec = adv.records[-1]
    assert rec["max_lr"] == pytest.approx(2 / rec["lambda_max"])  # SGD's threshold on a quadratic
    assert "B_noise" in adv.summary.value and "largest stable lr" in adv.summary.value
    series = adv.live.figure()
    names = {t.name for t in series.data}
    assert {"B_simple", "largest stable lr"} <= names
    c = adv.check(target=0.05)
    assert c["predicted"] > 0 and c["measured"] > 0 and math.isclose(c["ratio"], c["predicted"] / c["measured"])
    adv._check_clicked()  # the button's path: never raises into the page
    assert "predicted B_crit" in adv.check_line.value


def test_momentum_threshold_and_bad_inputs(data):
    adv = BatchSizeAdvisor(_make, data, optimizer="momentum", backend="static")
    assert adv.threshold == pytest.approx(3.8)
    with pytest.raises(ValueError, match="run the advisor first"):
        adv.check(0.1)
    with pytest.raises(ValueError, match="optimizer"):
        BatchSizeAdvisor(_make, data, optimizer="adam")
    with pytest.raises(TypeError, match="make_model"):
        BatchSizeAdvisor("mlp", data)
