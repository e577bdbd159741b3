"""Small networks and the functional helpers every probe shares.

Networks are ordinary ``nn.Module``\\ s built from :class:`Dense` layers, so
probes can exploit their structure (a dense layer's per-example weight
gradient is an outer product). Probes never touch ``.grad``: they read the
parameters as a dict, call the module functionally and flatten when they need
one vector::

    model = mlp(2, [32, 32], 1, seed=0)
    params = param_dict(model)             # {name: tensor}
    out = call(model, params, x)           # torch.func.functional_call
    spec = ParamSpec.of(model)             # name/shape/offset table
    vec = spec.flatten(params)             # one vector of spec.numel entries
    params2 = spec.unflatten(vec)          # and back
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call

from labkit import _checks

Parameterization = Literal["standard", "ntk", "mean_field"]

__all__ = [
    "ACTIVATIONS",
    "Dense",
    "ParamSpec",
    "call",
    "cnn",
    "mlp",
    "param_dict",
]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "erf": torch.erf,
    "gelu": nn.functional.gelu,
    "sigmoid": torch.sigmoid,
    "softplus": nn.functional.softplus,
    "identity": lambda z: z,
}


class Activation(nn.Module):
    """A named elementwise nonlinearity (see :data:`ACTIVATIONS`)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = _checks.choice("activation", name, ACTIVATIONS)
        self.fn = ACTIVATIONS[name]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)

    def extra_repr(self) -> str:
        return self.name


class Dense(nn.Module):
    """``y = weight_mult * x @ weight.T + bias_mult * bias``.

    With ``weight_mult = bias_mult = 1`` this is ``nn.Linear``. The multipliers
    express the NTK and mean-field parameterisations, where the trainable
    weights are N(0, 1) and the scale lives in the forward pass.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, weight_mult: float = 1.0, bias_mult: float = 1.0
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight_mult, self.bias_mult = float(weight_mult), float(bias_mult)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight_mult == 1.0 and self.bias_mult == 1.0:
            return nn.functional.linear(x, self.weight, self.bias)
        # scale the (small) output, not the (large) weight matrix: cost O(outputs), not O(weights)
        y = nn.functional.linear(x, self.weight)
        if self.weight_mult != 1.0:
            y = y * self.weight_mult
        if self.bias is not None:
            y = y + (self.bias if self.bias_mult == 1.0 else self.bias_mult * self.bias)
        return y

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, bias={self.bias is not None}, "
            f"weight_mult={self.weight_mult:.4g}, bias_mult={self.bias_mult:.4g}"
        )


def _generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def mlp(
    in_dim: int,
    widths: Iterable[int],
    out_dim: int,
    activation: str = "relu",
    bias: bool = True,
    parameterization: Parameterization = "standard",
    *,
    weight_std: float | None = None,
    bias_std: float = 0.1,
    seed: int | None = None,
) -> nn.Sequential:
    """A fully connected network ``in_dim -> widths... -> out_dim`` of :class:`Dense` layers.

    Parameterisations (``fan_in`` is a layer's input size, sigma_w = ``weight_std``,
    sigma_b = ``bias_std``):

    - ``"standard"``: W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2); plain ``x W^T + b``.
    - ``"ntk"``: W, b ~ N(0, 1); layer computes ``sigma_w / sqrt(fan_in) x W^T + sigma_b b``
      (Jacot et al. 2018; the convention of neural-tangents' ``stax.Dense(..., parameterization="ntk")``).
    - ``"mean_field"``: W, b ~ N(0, 1); hidden layers ``x W^T / sqrt(fan_in)``, the readout
      ``x W^T / fan_in`` (the fractal paper's setup; ``weight_std`` is ignored).

    ``weight_std`` defaults to sqrt(2) for ReLU and 1 otherwise. ``seed`` makes
    the initialisation reproducible without touching the global RNG.
    """
    widths = list(widths)
    _checks.positive("in_dim", in_dim, integer=True)
    _checks.positive("out_dim", out_dim, integer=True)
    for i, w in enumerate(widths):
        _checks.positive(f"widths[{i}]", w, integer=True)
    _checks.choice("activation", activation, ACTIVATIONS)
    _checks.choice("parameterization", parameterization, ["standard", "ntk", "mean_field"])
    sw = float(weight_std) if weight_std is not None else (math.sqrt(2.0) if activation == "relu" else 1.0)
    g = _generator(seed)
    sizes = [in_dim, *widths, out_dim]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        readout = i == len(sizes) - 2
        if parameterization == "standard":
            layer = Dense(fan_in, fan_out, bias)
            w_std, b_std = sw / math.sqrt(fan_in), bias_std
        elif parameterization == "ntk":
            layer = Dense(fan_in, fan_out, bias, sw / math.sqrt(fan_in), bias_std)
            w_std, b_std = 1.0, 1.0
        else:
            layer = Dense(fan_in, fan_out, bias, 1.0 / (fan_in if readout else math.sqrt(fan_in)), 1.0)
            w_std, b_std = 1.0, 1.0
        with torch.no_grad():
            layer.weight.copy_(torch.randn(fan_out, fan_in, generator=g) * w_std)
            if layer.bias is not None:
                layer.bias.copy_(torch.randn(fan_out, generator=g) * b_std)
        layers.append(layer)
        if not readout:
            layers.append(Activation(activation))
    return nn.Sequential(*layers)


class Flatten(nn.Module):
    """Flatten everything after the batch dimension."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class Unflatten(nn.Module):
    """Reshape flat rows of ``c * side * side`` features back to images (accepts images unchanged)."""

    def __init__(self, channels: int, side: int):
        super().__init__()
        self.channels, self.side = channels, side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.channels, self.side, self.side)


def cnn(
    image_size: int = 8,
    channels: int = 1,
    num_classes: int = 10,
    width: int = 16,
    activation: str = "relu",
    *,
    seed: int | None = None,
) -> nn.Sequential:
    """A small CNN for 8x8 (digits) or 28x28 (MNIST) images.

    Two 3x3 convolutions (``width`` and ``2 width`` channels), each followed by the
    activation and 2x2 average pooling, then a dense readout. Accepts images
    ``(n, channels, s, s)`` or flat rows ``(n, channels * s * s)``.
    """
    _checks.in_range("image_size", image_size, 4, 1024)
    _checks.positive("channels", channels, integer=True)
    _checks.positive("num_classes", num_classes, integer=True)
    _checks.positive("width", width, integer=True)
    _checks.choice("activation", activation, ACTIVATIONS)
    side = image_size // 2 // 2
    net = nn.Sequential(
        Unflatten(channels, image_size),
        nn.Conv2d(channels, width, 3, padding=1),
        Activation(activation),
        nn.AvgPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        Activation(activation),
        nn.AvgPool2d(2),
        Flatten(),
        Dense(2 * width * side * side, num_classes),
    )
    g = _generator(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, Dense)):
                fan_in = m.weight[0].numel()
                gain = math.sqrt(2.0) if activation == "relu" else 1.0
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * gain / math.sqrt(fan_in))
                m.bias.zero_()
    return net


# ---------------------------------------------------------------- functional core


def param_dict(model: nn.Module, *, trainable_only: bool = True, detach: bool = True) -> dict[str, torch.Tensor]:
    """The model's parameters as ``{name: tensor}`` (detached by default, so probes own their graph)."""
    out = {}
    for name, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        out[name] = p.detach() if detach else p
    if not out:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    return out


def call(model: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on ``x`` with ``params`` in place of its own (``torch.func.functional_call``).

    Parameters missing from ``params`` (e.g. frozen ones) keep the module's own values.
    """
    return functional_call(model, dict(params), (x,))


@dataclass(frozen=True)
class ParamSpec:
    """Names, shapes and offsets that map a parameter dict to one flat vector and back."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of(cls, params: nn.Module | Mapping[str, torch.Tensor]) -> ParamSpec:
        """The spec of a module's trainable parameters, or of a parameter dict."""
        if isinstance(params, nn.Module):
            params = param_dict(params)
        if not params:
            raise ValueError("cannot build a ParamSpec from an empty parameter dict")
        first = next(iter(params.values()))
        return cls(tuple(params), tuple(p.shape for p in params.values()), first.dtype, first.device)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of entries of each parameter."""
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def numel(self) -> int:
        """Total number of parameters (the length of a flat vector)."""
        return sum(self.sizes)

    def flatten(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate ``params`` into one vector of length :attr:`numel` (order of :attr:`names`).

        Works for batched dicts too: leading dimensions before each parameter's
        own shape are kept, giving ``(*batch, numel)``.
        """
        first = params[self.names[0]]
        batch = first.shape[: first.ndim - len(self.shapes[0])]
        return torch.cat([params[n].reshape(*batch, -1) for n in self.names], dim=-1)

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a vector (or ``(*batch, numel)`` tensor) into a parameter dict of views."""
        if vec.shape[-1] != self.numel:
            raise ValueError(f"vector has {vec.shape[-1]} entries, the parameters have {self.numel}")
        batch = vec.shape[:-1]
        chunks = torch.split(vec, self.sizes, dim=-1)
        return {n: c.reshape(*batch, *s) for n, c, s in zip(self.names, chunks, self.shapes)}
