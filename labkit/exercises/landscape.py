"""Exercises of notebook 11 (loss landscapes): filter normalisation, the barrier of a line, a random walk's PCA."""

from __future__ import annotations

import math

import numpy as np
import torch

from labkit.exercises._core import Wrong, call_student, exercise, expect_close


@exercise(
    "landscape.filter_normalize",
    title="Filter-normalise a direction for one dense layer",
    hints=[
        "A filter of a dense layer is one output neuron: one row of the weight matrix.",
        "Row by row: d_f / |d_f| * |w_f|, with |.| the Euclidean norm of the row "
        "(torch.linalg.norm(d, dim=1, keepdim=True)).",
    ],
)
def _filter_normalize(fn) -> None:
    g = torch.Generator().manual_seed(11)
    for rows, cols in ((3, 4), (5, 2), (1, 6)):
        w = torch.randn(rows, cols, generator=g, dtype=torch.float64) * torch.linspace(0.5, 3, rows)[:, None]
        d = torch.randn(rows, cols, generator=g, dtype=torch.float64)
        got = call_student(fn, d.clone(), w.clone())
        want = d / d.norm(dim=1, keepdim=True) * w.norm(dim=1, keepdim=True)
        expect_close(torch.as_tensor(got).detach().numpy() if isinstance(got, torch.Tensor) else got, want.numpy(),
                     rtol=1e-9, what=f"the normalised {rows}x{cols} direction", mistakes=[
                         ((d / d.norm() * w.norm()).numpy(), "that normalises the whole layer at once; Li et al. "
                          "rescale each filter (each row) to the norm of its own weights"),
                         ((d / d.norm(dim=1, keepdim=True)).numpy(), "your rows have unit norm: multiply each by "
                          "the norm of the weight row it perturbs"),
                         ((d / d.norm(dim=0, keepdim=True) * w.norm(dim=0, keepdim=True)).numpy(),
                          "you normalised columns (inputs); a filter is an output neuron, a row"),
                     ])


@exercise(
    "landscape.barrier",
    title="The barrier on the line between two solutions",
    hints=[
        "The barrier compares the loss on the line with the straight chord between the two endpoint losses.",
        "For t in [0, 1]: max_t of values(t) - ((1 - t) values(0) + t values(1)), and never below 0.",
    ],
)
def _barrier(fn) -> None:
    t = np.linspace(0, 1, 21)
    cases = [0.3 + 0.2 * t + np.sin(np.pi * t) * 0.5,  # a bump over a tilted chord
             1.0 - 0.9 * t + 0.01 * np.sin(np.pi * t),  # a small bump
             (t - 0.5) ** 2]  # convex: no barrier
    for values in cases:
        got = call_student(fn, t.copy(), values.copy())
        chord = (1 - t) * values[0] + t * values[-1]
        want = max(0.0, float(np.max(values - chord)))
        if np.ndim(got) != 0:
            raise Wrong("return one number, the barrier")
        expect_close(float(got), want, rtol=1e-9, atol=1e-12, what="the barrier", mistakes=[
            (float(values.max() - max(values[0], values[-1])), "you measured from the higher endpoint; the barrier "
             "is measured from the chord between the endpoint losses, point by point"),
            (float(values.max() - (values[0] + values[-1]) / 2), "you compared the maximum with the mean of the "
             "endpoints; compare each point with the chord at the same t"),
        ])


@exercise(
    "landscape.random_walk_fraction",
    title="How much of a random walk a PCA plane explains",
    hints=[
        "Centred on its final point, a long random walk is Brownian motion started at 0 (time reversed); its "
        "covariance is min(s, t), whose eigenvalues are proportional to 1 / (k - 1/2)^2.",
        "The eigenvalues sum to pi^2 / 2 (in those units); add the first two and divide.",
    ],
)
def _random_walk_fraction(answer) -> None:
    want = 8 / math.pi**2 * (1 + 1 / 9)
    if np.ndim(answer) != 0:
        raise Wrong("give one number: the fraction (between 0 and 1)")
    expect_close(answer, want, rtol=1e-3, what="the fraction", mistakes=[
        (6 / math.pi**2 * (1 + 1 / 4), "that is the walk centred on its mean (eigenvalues ~ 1/k^2); Li et al.'s PCA "
         "plane is centred on the final point"),
        (8 / math.pi**2, "that is the first component alone; the plane has two"),
    ])
