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

Parameterization = Literal["standard", "ntk", "mean_field", "mup"]

__all__ = [
    "ACTIVATIONS",
    "BRANCH_SCALES",
    "INITS",
    "NORMS",
    "PARAMETERIZATIONS",
    "BatchNorm",
    "Dense",
    "LayerNorm",
    "LayerScale",
    "ParamSpec",
    "Residual",
    "WeightNormDense",
    "branch_scale",
    "call",
    "cnn",
    "init_weight",
    "mlp",
    "mup_mlp",
    "mup_multipliers",
    "orthogonal",
    "param_dict",
    "resmlp",
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


# ---------------------------------------------------------------- initialisation

INITS = ("gaussian", "orthogonal")


def orthogonal(shape: tuple[int, ...], generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Haar-random ``(..., out, in)`` matrices with the per-entry variance ``1 / in`` of a N(0, 1/in) matrix.

    Orthonormal rows when ``out <= in``, orthonormal columns (times ``sqrt(out / in)``) when
    ``out > in``: either way ``E|W x|^2 = (out / in) |x|^2``, as for Gaussian weights, so
    swapping the init changes the spectrum and nothing else. (``nn.init.orthogonal_`` leaves
    a tall matrix with orthonormal columns, i.e. entry variance ``1 / out``.) Leading
    dimensions give a batch of independent matrices. QR of a Gaussian matrix with the signs
    of ``R``'s diagonal moved into ``Q`` is Haar-distributed (Mezzadri 2007).
    """
    *batch, out, inp = shape
    a = torch.randn(*batch, max(out, inp), min(out, inp), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)                                       # q: (..., max, min), orthonormal columns
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    if out < inp:
        q = q.transpose(-2, -1)                                     # orthonormal rows, entries of variance 1/in
    else:
        q = q * math.sqrt(out / inp)                                # entries of variance 1/out -> 1/in
    return q.to(dtype)


def init_weight(shape: tuple[int, ...], init: str = "gaussian", generator: torch.Generator | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Weights ``(..., out, in)`` of per-entry variance ``1 / in`` (multiply by ``sigma_w``): Gaussian or orthogonal."""
    _checks.choice("init", init, INITS)
    fan_in = shape[-1]
    if init == "gaussian":
        return torch.randn(*shape, generator=generator, dtype=dtype) / math.sqrt(fan_in)
    return orthogonal(shape, generator, dtype)


# ---------------------------------------------------------------- parameterisations


@dataclass(frozen=True)
class LayerScale:
    """How one layer is scaled: forward multipliers and the std of its N(0, std^2) parameters."""

    weight_mult: float
    bias_mult: float
    weight_std: float  # the std of one weight entry (e.g. sigma_w / sqrt(fan_in))
    bias_std: float


def _standard(fan_in: int, fan_out: int, readout: bool, sw: float, sb: float) -> LayerScale:
    return LayerScale(1.0, 1.0, sw / math.sqrt(fan_in), sb)


def _ntk(fan_in: int, fan_out: int, readout: bool, sw: float, sb: float) -> LayerScale:
    return LayerScale(sw / math.sqrt(fan_in), sb, 1.0, 1.0)


def _mean_field(fan_in: int, fan_out: int, readout: bool, sw: float, sb: float) -> LayerScale:
    return LayerScale(1.0 / (fan_in if readout else math.sqrt(fan_in)), 1.0, 1.0, 1.0)


#: parameterisation name -> ``f(fan_in, fan_out, readout, sigma_w, sigma_b) -> LayerScale``.
#: A new parameterisation (e.g. muP) is one more entry here.
PARAMETERIZATIONS: dict[str, Callable[[int, int, bool, float, float], LayerScale]] = {
    "standard": _standard,
    "ntk": _ntk,
    "mean_field": _mean_field,
}


# ---------------------------------------------------------------- muP: a parameterisation with per-layer lr


def mup_multipliers(n_layers: int, width_ratio: float, optimizer: str = "sgd") -> list[dict[str, float]]:
    """muP's table (Yang et al. 2021, Table 3) for ``n_layers`` layers at width ratio ``m = width / base_width``:
    per layer ``{"init": variance factor, "lr": weight lr factor, "bias_lr": bias lr factor}``."""
    _checks.choice("optimizer", optimizer, ("sgd", "momentum", "adam", "adamw"))
    m = _checks.positive("width_ratio", width_ratio)
    sgd = optimizer in ("sgd", "momentum")
    out = []
    for i in range(n_layers):
        first, last = i == 0, i == n_layers - 1
        if last:
            row = {"init": 1 / m, "lr": 1 / m, "bias_lr": 1.0}
        elif first:
            row = {"init": 1.0, "lr": m if sgd else 1.0, "bias_lr": m if sgd else 1.0}
        else:
            row = {"init": 1.0, "lr": 1.0 if sgd else 1 / m, "bias_lr": m if sgd else 1.0}
        out.append(row)
    return out


def mup_mlp(in_dim: int, widths: Iterable[int], out_dim: int, activation: str = "relu", bias: bool = True, *,
        optimizer: str = "sgd", base_width: int = 32, weight_std: float | None = None, bias_std: float = 0.1,
        seed: int | None = None) -> nn.Sequential:
    """An MLP of :class:`Dense` layers in muP for ``optimizer`` (Yang et al. 2021, "Tensor Programs V", Table 3;
    the table and the forward multipliers are explained in :mod:`labkit.mup`'s docstring).

    ``base_width``: the width at which it equals :func:`labkit.models.mlp`'s standard parameterisation
    (the width ratio ``m`` is the last hidden width over it). Train it with one global ``lr``.
    """
    widths = list(widths)
    _checks.positive("in_dim", in_dim, integer=True)
    _checks.positive("out_dim", out_dim, integer=True)
    if not widths:
        raise ValueError("muP needs at least one hidden layer (widths=[] is a linear model)")
    for i, w in enumerate(widths):
        _checks.positive(f"widths[{i}]", w, integer=True)
    _checks.positive("base_width", base_width, integer=True)
    _checks.choice("activation", activation, ACTIVATIONS)
    sgd = _checks.choice("optimizer", optimizer, ("sgd", "momentum", "adam", "adamw")) in ("sgd", "momentum")
    if weight_std is not None:
        _checks.positive("weight_std", weight_std, allow_zero=True)
    _checks.positive("bias_std", bias_std, allow_zero=True)
    sw = float(weight_std) if weight_std is not None else (math.sqrt(2.0) if activation == "relu" else 1.0)
    sizes = [in_dim, *widths, out_dim]
    rows = mup_multipliers(len(sizes) - 1, widths[-1] / base_width, optimizer)
    g = None if seed is None else torch.Generator().manual_seed(int(seed))
    layers: list[nn.Module] = []
    for (fan_in, fan_out), row in zip(itertools.pairwise(sizes), rows):
        c_w = math.sqrt(row["lr"]) if sgd else row["lr"]
        c_b = math.sqrt(row["bias_lr"]) if sgd else row["bias_lr"]
        layer = Dense(fan_in, fan_out, bias, c_w, c_b)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(fan_out, fan_in, generator=g) * sw * math.sqrt(row["init"] / fan_in) / c_w)
            if layer.bias is not None:
                layer.bias.copy_(torch.randn(fan_out, generator=g) * bias_std / c_b)
        layers.append(layer)
        if len(layers) < 2 * len(rows) - 1:
            layers.append(Activation(activation))
    return nn.Sequential(*layers)



# ---------------------------------------------------------------- normalisation layers


class BatchNorm(nn.Module):
    """Batch normalisation over the batch dimension with the statistics of the batch it is given.

    ``y = gamma (x - mean_B) / sqrt(var_B + eps) + beta`` (Ioffe & Szegedy 2015), biased
    variance as in torch's training mode. No running averages: the layer is a pure function
    of its input batch (what matters at initialisation and during training, and what
    ``train.fit_many``'s functional calls need). ``virtual_batch`` splits the batch into
    ghost batches of that size, each normalised on its own (Hoffer et al. 2017).
    It couples the examples of a batch, so per-example probes cannot run through it.
    """

    couples_batch = True  # examples interact: per-example gradients / NTKs are undefined

    def __init__(self, features: int, eps: float = 1e-5, affine: bool = True, virtual_batch: int | None = None):
        super().__init__()
        _checks.positive("features", features, integer=True)
        if virtual_batch is not None:
            _checks.in_range("virtual_batch", virtual_batch, 2, 2**31)
        self.features, self.eps, self.virtual_batch = features, float(eps), virtual_batch
        self.weight = nn.Parameter(torch.ones(features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(features)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        v = self.virtual_batch or n
        if n % v or v < 2:
            raise ValueError(
                f"BatchNorm needs a batch of >= 2 examples divisible by virtual_batch={self.virtual_batch}, "
                f"got a batch of {n}; per-example probes (vmap over single examples, labkit.structure) cannot run "
                "through batch norm: use norm='layer' or measure on whole batches")
        g = x.reshape(n // v, v, *x.shape[1:])
        mean = g.mean(1, keepdim=True)
        var = g.var(1, unbiased=False, keepdim=True)
        y = ((g - mean) / torch.sqrt(var + self.eps)).reshape(x.shape)
        return y if self.weight is None else y * self.weight + self.bias

    def extra_repr(self) -> str:
        return (f"{self.features}, eps={self.eps:g}, affine={self.weight is not None}, "
                f"virtual_batch={self.virtual_batch}")


class LayerNorm(nn.Module):
    """Layer normalisation over the features of each example (Ba et al. 2016): no batch dependence."""

    def __init__(self, features: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        _checks.positive("features", features, integer=True)
        self.features, self.eps = features, float(eps)
        self.weight = nn.Parameter(torch.ones(features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(features)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, unbiased=False, keepdim=True)
        y = (x - mean) / torch.sqrt(var + self.eps)
        return y if self.weight is None else y * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.features}, eps={self.eps:g}, affine={self.weight is not None}"


class WeightNormDense(nn.Module):
    """``y = x W^T + b`` with ``W = g v / |v|`` row by row (Salimans & Kingma 2016).

    The output is invariant to ``v -> c v`` (c > 0), so the gradient with respect to ``v``
    is orthogonal to ``v``. Parameters ``v``, ``g``, ``bias`` (not :class:`Dense`'s
    ``weight``: structured probes treat the layer as unsupported and fall back).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.v = nn.Parameter(torch.empty(out_features, in_features))
        self.g = nn.Parameter(torch.ones(out_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight ``g v / |v|``."""
        return self.g.unsqueeze(1) * self.v / self.v.norm(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bias={self.bias is not None}"


NORMS = (None, "batch", "layer", "weight")


def _check_norm(norm: str | None, virtual_batch: int | None) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not supported; choose one of {list(NORMS)}")
    if virtual_batch is not None and norm != "batch":
        raise ValueError(f"virtual_batch={virtual_batch} needs norm='batch' (ghost batch norm), got norm={norm!r}")


def _norm_layer(norm: str | None, features: int, virtual_batch: int | None) -> nn.Module | None:
    if norm == "batch":
        return BatchNorm(features, virtual_batch=virtual_batch)
    if norm == "layer":
        return LayerNorm(features)
    return None


def _linear(fan_in: int, fan_out: int, bias: bool, scale: LayerScale, init: str, norm: str | None,
            g: torch.Generator | None) -> nn.Module:
    """One initialised linear layer (a :class:`Dense`, or a :class:`WeightNormDense` for ``norm="weight"``)."""
    if init == "gaussian":  # randn * std, the historical draw (bit-identical models for a seed)
        w = torch.randn(fan_out, fan_in, generator=g) * scale.weight_std
    else:
        w = orthogonal((fan_out, fan_in), g) * (scale.weight_std * math.sqrt(fan_in))
    b = torch.randn(fan_out, generator=g) * scale.bias_std if bias else None
    if norm == "weight":
        layer = WeightNormDense(fan_in, fan_out, bias)
        with torch.no_grad():
            layer.v.copy_(w * scale.weight_mult)
            layer.g.copy_(layer.v.norm(dim=1))   # the same function as the plain layer at init
            if bias:
                layer.bias.copy_(b * scale.bias_mult)
        return layer
    layer = Dense(fan_in, fan_out, bias, scale.weight_mult, scale.bias_mult)
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias:
            layer.bias.copy_(b)
    return layer


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
    init: str = "gaussian",
    norm: str | None = None,
    virtual_batch: int | None = None,
    seed: int | None = None,
) -> nn.Sequential:
    """A fully connected network ``in_dim -> widths... -> out_dim`` of :class:`Dense` layers.

    Parameterisations (``fan_in`` is a layer's input size, sigma_w = ``weight_std``,
    sigma_b = ``bias_std``; the table is :data:`PARAMETERIZATIONS`):

    - ``"standard"``: W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2); plain ``x W^T + b``.
    - ``"ntk"``: W, b ~ N(0, 1); layer computes ``sigma_w / sqrt(fan_in) x W^T + sigma_b b``
      (Jacot et al. 2018; the convention of neural-tangents' ``stax.Dense(..., parameterization="ntk")``).
    - ``"mean_field"``: W, b ~ N(0, 1); hidden layers ``x W^T / sqrt(fan_in)``, the readout
      ``x W^T / fan_in`` (the fractal paper's setup; ``weight_std`` is ignored).

    ``weight_std`` defaults to sqrt(2) for ReLU and 1 otherwise. ``init="orthogonal"``
    draws Haar-orthogonal weights with the same per-entry variance (:func:`orthogonal`).
    ``norm`` adds a normalisation after every hidden linear layer, before its activation:
    ``"batch"`` (:class:`BatchNorm`, ghost batches of ``virtual_batch``), ``"layer"``
    (:class:`LayerNorm`); ``"weight"`` reparameterises every linear layer
    (:class:`WeightNormDense`). ``seed`` makes the initialisation reproducible without
    touching the global RNG.
    """
    if isinstance(widths, (int, float, str)) or not hasattr(widths, "__iter__"):
        raise TypeError(f"widths must be a list of hidden-layer widths such as [64, 64], got {widths!r}")
    widths = list(widths)
    _checks.positive("bias_std", bias_std, allow_zero=True)
    if weight_std is not None:
        _checks.positive("weight_std", weight_std, allow_zero=True)
    _checks.positive("in_dim", in_dim, integer=True)
    _checks.positive("out_dim", out_dim, integer=True)
    for i, w in enumerate(widths):
        _checks.positive(f"widths[{i}]", w, integer=True)
    _checks.choice("activation", activation, ACTIVATIONS)
    _checks.choice("parameterization", parameterization, [*PARAMETERIZATIONS, "mup"])
    if parameterization == "mup":  # muP is its own table (mup_mlp: SGD's, at base width 32)
        if init != "gaussian" or norm is not None:
            raise ValueError(f"parameterization='mup' supports init='gaussian' and norm=None, got init={init!r}, "
                             f"norm={norm!r}")
        return mup_mlp(in_dim, widths, out_dim, activation, bias, weight_std=weight_std, bias_std=bias_std, seed=seed)
    _checks.choice("init", init, INITS)
    _check_norm(norm, virtual_batch)
    sw = float(weight_std) if weight_std is not None else (math.sqrt(2.0) if activation == "relu" else 1.0)
    g = _generator(seed)
    sizes = [in_dim, *widths, out_dim]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        readout = i == len(sizes) - 2
        scale = PARAMETERIZATIONS[parameterization](fan_in, fan_out, readout, sw, float(bias_std))
        layers.append(_linear(fan_in, fan_out, bias, scale, init, norm, g))
        if not readout:
            norm_layer = _norm_layer(norm, fan_out, virtual_batch)
            if norm_layer is not None:
                layers.append(norm_layer)
            layers.append(Activation(activation))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- residual networks

BRANCH_SCALES = ("1", "1/sqrt(depth)", "1/depth")


def branch_scale(scale: str | float, depth: int) -> float:
    """The residual branch multiplier: ``"1"``, ``"1/sqrt(depth)"``, ``"1/depth"`` or a positive number."""
    _checks.positive("depth", depth, integer=True)
    if isinstance(scale, str):
        _checks.choice("branch", scale, BRANCH_SCALES)
        return {"1": 1.0, "1/sqrt(depth)": 1 / math.sqrt(depth), "1/depth": 1 / depth}[scale]
    return float(_checks.positive("branch", scale))


class Residual(nn.Module):
    """``x + scale * branch(x)``."""

    def __init__(self, branch: nn.Module, scale: float):
        super().__init__()
        self.branch, self.scale = branch, float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.branch(x)

    def extra_repr(self) -> str:
        return f"scale={self.scale:.4g}"


def resmlp(
    in_dim: int,
    width: int,
    depth: int,
    out_dim: int,
    activation: str = "relu",
    *,
    branch: str | float = "1/sqrt(depth)",
    weight_std: float | None = None,
    bias_std: float = 0.0,
    init: str = "gaussian",
    norm: str | None = None,
    virtual_batch: int | None = None,
    seed: int | None = None,
) -> nn.Sequential:
    """A residual MLP: ``x_0 = W_in x``, ``x_{l+1} = x_l + a * (W_l phi(N(x_l)) + b_l)``, output ``W_out x_L``.

    ``depth`` residual blocks of width ``width``; ``a = branch_scale(branch, depth)``
    (1/sqrt(depth) is the scaling of Hayou 2023 and Hayou & Yang 2023, under which the
    infinite-depth and infinite-width limits exist and commute); ``N`` is the pre-norm
    ``norm`` (None, ``"batch"``, ``"layer"``; ``"weight"`` reparameterises the branch
    layers). Standard parameterisation; ``weight_std`` defaults to sqrt(2) for ReLU, else 1;
    the embedding and readout are ``N(0, 1/fan_in)``.
    """
    _checks.positive("in_dim", in_dim, integer=True)
    _checks.positive("width", width, integer=True)
    _checks.positive("out_dim", out_dim, integer=True)
    _checks.choice("activation", activation, ACTIVATIONS)
    _checks.choice("init", init, INITS)
    if weight_std is not None:
        _checks.positive("weight_std", weight_std, allow_zero=True)
    _checks.positive("bias_std", bias_std, allow_zero=True)
    _check_norm(norm, virtual_batch)
    a = branch_scale(branch, depth)
    sw = float(weight_std) if weight_std is not None else (math.sqrt(2.0) if activation == "relu" else 1.0)
    g = _generator(seed)
    layers: list[nn.Module] = [_linear(in_dim, width, True, LayerScale(1.0, 1.0, in_dim**-0.5, 0.0), init, None, g)]
    for _ in range(depth):
        parts = [m for m in (_norm_layer(norm, width, virtual_batch),) if m is not None]
        parts += [Activation(activation),
                  _linear(width, width, True, LayerScale(1.0, 1.0, sw / math.sqrt(width), float(bias_std)), init,
                          norm, g)]
        layers.append(Residual(nn.Sequential(*parts), a))
    layers.append(_linear(width, out_dim, True, LayerScale(1.0, 1.0, width**-0.5, 0.0), init, None, g))
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
