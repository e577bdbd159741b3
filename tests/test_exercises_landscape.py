"""Checkers of labkit.exercises.landscape: right answers pass, each named wrong turn fails with its message."""

import math

import numpy as np
import torch

from labkit.exercises import check


def _verdict(capsys, id, answer):
    ok = check(id, answer)
    return ok, capsys.readouterr().out


def test_filter_normalize(capsys):
    right = lambda d, w: d / d.norm(dim=1, keepdim=True) * w.norm(dim=1, keepdim=True)  # noqa: E731
    assert _verdict(capsys, "landscape.filter_normalize", right)[0]
    ok, out = _verdict(capsys, "landscape.filter_normalize", lambda d, w: d / d.norm() * w.norm())
    assert not ok and "whole layer at once" in out
    ok, out = _verdict(capsys, "landscape.filter_normalize", lambda d, w: d / d.norm(dim=1, keepdim=True))
    assert not ok and "unit norm" in out
    ok, out = _verdict(capsys, "landscape.filter_normalize",
                       lambda d, w: d / d.norm(dim=0, keepdim=True) * w.norm(dim=0, keepdim=True))
    assert not ok and "normalised columns" in out
    assert not _verdict(capsys, "landscape.filter_normalize", lambda d, w: torch.zeros_like(d))[0]


def test_barrier(capsys):
    def right(t, v):
        return max(0.0, float(np.max(v - ((1 - t) * v[0] + t * v[-1]))))

    assert _verdict(capsys, "landscape.barrier", right)[0]
    ok, out = _verdict(capsys, "landscape.barrier", lambda t, v: float(v.max() - max(v[0], v[-1])))
    assert not ok and "higher endpoint" in out
    ok, out = _verdict(capsys, "landscape.barrier", lambda t, v: float(v.max() - (v[0] + v[-1]) / 2))
    assert not ok and "mean of the endpoints" in out
    ok, out = _verdict(capsys, "landscape.barrier", lambda t, v: v)
    assert not ok and "one number" in out


def test_random_walk_fraction(capsys):
    assert _verdict(capsys, "landscape.random_walk_fraction", 8 / math.pi**2 * 10 / 9)[0]
    ok, out = _verdict(capsys, "landscape.random_walk_fraction", 6 / math.pi**2 * 1.25)
    assert not ok and "centred on its mean" in out
    ok, out = _verdict(capsys, "landscape.random_walk_fraction", 8 / math.pi**2)
    assert not ok and "first component alone" in out
    assert not _verdict(capsys, "landscape.random_walk_fraction", 0.5)[0]
