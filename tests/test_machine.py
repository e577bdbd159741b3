"""labkit.machine: the device description and the matmul ceiling every benchmark quotes against."""

import pytest
import torch

from labkit import machine


def test_matmul_rate_is_a_measured_flop_rate():
    fast = machine.matmul_rate(torch.float32, "cpu", n=128)
    slow = machine.matmul_rate(torch.float32, "cpu", n=8)  # a tiny product is far from the BLAS's peak
    assert 1e6 < fast < 1e14 and slow < fast


def test_timed_takes_the_best_of_reps_after_a_warm_up():
    seen = []
    t = machine.timed(lambda: seen.append(1), "cpu", reps=3)
    assert len(seen) == 4 and 0 <= t < 0.1


@pytest.mark.parametrize("kwargs,match", [({"n": 0}, "n must be a positive integer, got 0"),
                                          ({"n": 2.5}, "n must be a positive integer, got 2.5"),
                                          ({"reps": 0}, "reps must be a positive integer, got 0")])
def test_bad_sizes_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        machine.matmul_rate(torch.float32, "cpu", **kwargs)


def test_describe_names_the_device_and_its_memory():
    info = machine.describe("cpu")
    assert info["device"] == "cpu" and info["name"] and info["threads"] == str(torch.get_num_threads())
    assert info["memory"] == "unknown" or info["memory"].endswith(" GiB")
