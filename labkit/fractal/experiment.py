"""The setup of a trainability-boundary scan (Sohl-Dickstein 2024, arXiv 2402.06184).

One network, one dataset and one initialisation are shared by every cell of the
grid; only two hyperparameters change from cell to cell. The network is a
one-hidden-layer, bias-free MLP in mean-field parameterisation with N(0, 1)
weights (input dimension = width)::

    hidden = phi(x @ W0 / sqrt(d))          phi(z) = tanh(sqrt(2) z) | sqrt(2) relu(z) | z
    f      = hidden @ W1 / sqrt(h) / sqrt(h) (the readout's 1/sqrt(fan_in) and a further 1/sqrt(width))

trained by full-batch (or mini-batch) gradient descent on the mean squared error
``mean_i (f_i - y_i)^2`` with one learning rate per layer. Presets reproduce the
paper's six setups plus ``"quick"`` (small enough to explore interactively on a
laptop CPU)::

    exp = Experiment.preset("quick")
    exp.num_params, exp.n_points      # (272, 16)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from labkit import _checks, _io

__all__ = ["AXES", "NONLINEARITIES", "PRESETS", "Experiment"]

NONLINEARITIES = ("tanh", "relu", "identity")
#: The two kinds of axes: per-layer learning rates, or a weight offset against one shared learning rate.
AXES = {("lr_in", "lr_out"), ("offset", "lr")}
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class Experiment:
    """Everything that defines a scan except the window and the resolution."""

    width: int = 16  # hidden units h; the input dimension d equals the width
    nonlinearity: str = "tanh"  # "tanh": tanh(sqrt2 z), "relu": sqrt2 relu(z), "identity": z
    n_points: int | None = None  # None: as many points as parameters (d*h + h)
    steps: int = 500  # gradient-descent steps
    batch_size: int | None = None  # None: full batch; else samples drawn with replacement per step
    tail: int = 20  # converged <=> mean normalised loss over the last `tail` steps < 1
    offset_every_step: bool = False  # offset axes: False adds the offset once at init (labkit); True as the notebook
    dtype: str = "float64"
    seed: int = field(default=0, kw_only=True)  # initial weights (keyword-only, as every labkit seed)
    data_seed: int = 1  # inputs and targets
    batch_seed: int = 2  # the mini-batch sequence (same for every cell)
    axes: tuple[str, str] = ("lr_in", "lr_out")  # default axes of this setup
    x_range: tuple[float, float] = (1e-3, 1e6)  # default first window
    y_range: tuple[float, float] = (1e-3, 1e6)
    name: str = "custom"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # free-form notes, saved with a scan

    def __post_init__(self) -> None:
        _checks.positive("width", self.width, integer=True)
        _checks.choice("nonlinearity", self.nonlinearity, NONLINEARITIES)
        if self.n_points is not None:
            _checks.positive("n_points", self.n_points, integer=True)
        _checks.positive("steps", self.steps, integer=True)
        if self.batch_size is not None:
            _checks.positive("batch_size", self.batch_size, integer=True)
        _checks.in_range("tail", self.tail, 1, self.steps)
        _checks.choice("dtype", self.dtype, list(_DTYPES))
        for name in ("seed", "data_seed", "batch_seed"):
            _checks.positive(name, getattr(self, name), integer=True, allow_zero=True)
        if tuple(self.axes) not in AXES:
            raise ValueError(f"axes={self.axes!r} is not supported; choose one of {sorted(AXES)}")
        object.__setattr__(self, "axes", tuple(self.axes))
        object.__setattr__(self, "x_range", tuple(float(v) for v in self.x_range))
        object.__setattr__(self, "y_range", tuple(float(v) for v in self.y_range))

    # ------------------------------------------------------------------ derived quantities
    @property
    def input_dim(self) -> int:
        return self.width

    @property
    def num_params(self) -> int:
        """d*h + h weights (no biases): 272 at width 16."""
        return self.width * self.width + self.width

    @property
    def points(self) -> int:
        """The number of training points actually used."""
        return self.num_params if self.n_points is None else self.n_points

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    @property
    def gain(self) -> float:
        """sqrt(2) for tanh and ReLU (the paper's variance-preserving gain), 1 for the identity."""
        return 1.0 if self.nonlinearity == "identity" else math.sqrt(2.0)

    def replace(self, **changes: Any) -> Experiment:
        """A copy with some fields changed: ``exp.replace(steps=100)``."""
        names = [f.name for f in fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise TypeError(f"Experiment has no field {', '.join(unknown)}; the fields are {names}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able values (tuples become lists)."""
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (``.json`` appended if missing), atomically; returns the path."""
        return _io.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Experiment:
        """The Experiment :meth:`save` wrote."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in _io.read_json(path).items()})

    # ------------------------------------------------------------------ shared data and weights
    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(n, d)`` ~ N(0, I) and targets ``(n, 1)`` ~ N(0, 1), float64 on the CPU."""
        g = torch.Generator().manual_seed(self.data_seed)
        x = torch.randn(self.points, self.input_dim, generator=g, dtype=torch.float64)
        y = torch.randn(self.points, 1, generator=g, dtype=torch.float64)
        return x, y

    def init_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared initialisation ``W0 (d, h)`` and ``W1 (h, 1)``, N(0, 1), float64 on the CPU."""
        g = torch.Generator().manual_seed(self.seed)
        w0 = torch.randn(self.input_dim, self.width, generator=g, dtype=torch.float64)
        w1 = torch.randn(self.width, 1, generator=g, dtype=torch.float64)
        return w0, w1

    def batch_indices(self) -> torch.Tensor | None:
        """``(steps, batch_size)`` sample indices (with replacement), or None for full batch."""
        if self.batch_size is None:
            return None
        g = torch.Generator().manual_seed(self.batch_seed)
        return torch.randint(0, self.points, (self.steps, self.batch_size), generator=g)

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, **changes: Any) -> Experiment:
        """One of :data:`PRESETS` (the paper's six setups and ``"quick"``), with optional field changes."""
        _checks.choice("name", name, list(PRESETS))
        return PRESETS[name].replace(**changes)


_LR_WINDOW = dict(x_range=(1e-3, 1e6), y_range=(1e-3, 1e6))

#: The paper's six setups (width 16, float64, 500 steps) and a CPU-friendly ``"quick"`` one.
PRESETS: dict[str, Experiment] = {
    "paper": Experiment(name="paper", **_LR_WINDOW),
    "relu": Experiment(name="relu", nonlinearity="relu", **_LR_WINDOW),
    "identity": Experiment(name="identity", nonlinearity="identity", n_points=16, **_LR_WINDOW),
    "minibatch": Experiment(name="minibatch", batch_size=16, **_LR_WINDOW),
    "single_point": Experiment(name="single_point", n_points=1, **_LR_WINDOW),
    "offset": Experiment(name="offset", axes=("offset", "lr"), x_range=(-2.0, 2.0), y_range=(1e-2, 1e3)),
    "quick": Experiment(name="quick", n_points=16, steps=100, **_LR_WINDOW),
}
