"""Offline datasets: seeded synthetic tasks and the bundled 8x8 digits.

Every dataset is a :class:`Dataset` of device-resident tensors. Mini-batches are
drawn by indexing those tensors (no DataLoader), so training loops stay on the
device::

    ds = gaussian_mixture(n=512, dim=2, classes=3, seed=0)
    train, test = ds.split(0.8, seed=0)
    for x, y in train.batches(64, seed=0): ...
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from labkit import _checks, _deprecated

Task = Literal["classification", "regression"]

__all__ = [
    "Dataset",
    "as_dataset",
    "batch_indices",
    "cifar10",
    "digits",
    "gaussian_mixture",
    "load",
    "mnist",
    "modular_addition",
    "sparse_parity",
    "spirals",
    "teacher_student",
    "two_moons",
]


@dataclass(frozen=True)
class Dataset:
    """Inputs and targets as tensors, plus what kind of task they pose.

    ``targets`` are int64 class labels of shape ``(n,)`` for classification and
    floats of shape ``(n, out_dim)`` for regression.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    task: Task
    num_classes: int | None = None
    name: str = "dataset"

    def __post_init__(self) -> None:
        _checks.tensor("inputs", self.inputs)
        _checks.tensor("targets", self.targets)
        if self.inputs.ndim == 0 or self.targets.ndim == 0:
            raise ValueError(f"inputs and targets need a first (row) dimension, got shapes "
                             f"{tuple(self.inputs.shape)} and {tuple(self.targets.shape)}")
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise ValueError(
                f"inputs and targets must have the same number of rows, got "
                f"{self.inputs.shape[0]} and {self.targets.shape[0]}"
            )
        _checks.choice("task", self.task, ["classification", "regression"])
        _checks.finite("inputs", self.inputs)
        if self.task == "classification":
            self._check_labels()
        else:
            if self.targets.ndim != 2:
                raise ValueError(f"regression targets must be 2-D (n, out_dim), got {tuple(self.targets.shape)}")
            if not self.targets.is_floating_point():
                raise TypeError(f"regression targets must be floating point, got {self.targets.dtype}; "
                                "use targets.float(), or task='classification' for class labels")
            _checks.finite("targets", self.targets)

    def _check_labels(self) -> None:
        """Class labels: 1-D integers in ``[0, num_classes)`` (``num_classes`` defaults to the largest label + 1)."""
        y = self.targets
        if y.ndim != 1:
            raise ValueError(f"classification targets must be 1-D labels, got {tuple(y.shape)}")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(f"classification targets must be integer class labels, got dtype {y.dtype}; "
                            "use targets.long() for whole-number labels, or task='regression' for real values")
        if self.num_classes is None:
            if len(y) == 0:
                raise ValueError("num_classes is required for a classification dataset with no rows")
            object.__setattr__(self, "num_classes", int(y.max()) + 1)
        _checks.positive("num_classes", self.num_classes, integer=True)
        if len(y) == 0:
            return
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= self.num_classes:
            bad = lo if lo < 0 else hi
            row = int((y == bad).nonzero()[0])
            raise ValueError(f"targets has label {bad} at row {row}, outside [0, num_classes={self.num_classes}); "
                             "class labels must be 0, 1, ..., num_classes - 1")

    def _derive(self, **changes: Any) -> Dataset:
        """A copy with some tensors changed in ways that keep them valid (a subset, a device move): no re-check."""
        new = object.__new__(Dataset)
        for f in fields(self):
            object.__setattr__(new, f.name, changes.get(f.name, getattr(self, f.name)))
        return new

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: Any) -> Dataset:
        """A subset (slice, index tensor or boolean mask) as a new Dataset."""
        return self._derive(inputs=self.inputs[index], targets=self.targets[index])

    def __repr__(self) -> str:
        extra = f", num_classes={self.num_classes}" if self.num_classes else ""
        return (
            f"Dataset({self.name!r}, n={len(self)}, inputs={tuple(self.inputs.shape[1:])}, "
            f"task={self.task!r}{extra}, device={self.inputs.device.type})"
        )

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(self.inputs.shape[1:])

    @property
    def out_dim(self) -> int:
        """Number of network outputs the task needs (classes, or target dimension)."""
        if self.task == "classification":
            return int(self.num_classes or 0)
        return int(self.targets.shape[1])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Dataset:
        """Move to ``device``; cast floating inputs (and regression targets) to ``dtype``.

        ``ds.to(torch.float64)`` casts, as ``tensor.to(torch.float64)`` does."""
        if isinstance(device, torch.dtype):
            if dtype is not None:
                raise TypeError(f"Dataset.to got two dtypes, {device} and dtype={dtype}; give one")
            device, dtype = None, device
        if dtype is not None and not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype such as torch.float64, got {dtype!r}")
        x = self.inputs.to(device=device)
        y = self.targets.to(device=device)
        if dtype is None:
            return self._derive(inputs=x, targets=y)
        if x.is_floating_point():
            x = x.to(dtype)
        if y.is_floating_point():
            y = y.to(dtype)
        return replace(self, inputs=x, targets=y)  # checked again: a cast to float16 can overflow to inf

    @_deprecated.keyword_only("seed")
    def split(self, frac: float, *, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Random split into ``(first, rest)`` with ``round(frac * n)`` rows in ``first``."""
        _checks.fraction("frac", frac)
        _checks.seed("seed", seed)
        if len(self) < 2:
            raise ValueError(f"cannot split a dataset of {len(self)} row(s) into two non-empty parts")
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=g).to(self.inputs.device)
        k = min(max(round(frac * len(self)), 1), len(self) - 1)
        return self[perm[:k]], self[perm[k:]]

    @_deprecated.keyword_only("seed")
    def batches(self, batch_size: int, *, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless random mini-batches ``(inputs, targets)``.

        Each epoch is a fresh permutation cut into full batches (a remainder
        smaller than ``batch_size`` is skipped), so every batch has exactly
        ``batch_size`` rows. The index stream is :func:`batch_indices`.
        """
        _checks.in_range("batch_size", batch_size, 1, len(self))
        _checks.seed("seed", seed)
        for idx in _index_stream(len(self), batch_size, seed):
            idx = idx.to(self.inputs.device)
            yield self.inputs[idx], self.targets[idx]


def _index_stream(n: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    per_epoch = n // batch_size
    while True:
        perm = torch.randperm(n, generator=g)
        for b in range(per_epoch):
            yield perm[b * batch_size : (b + 1) * batch_size]


@_deprecated.keyword_only("seed")
def batch_indices(n: int, batch_size: int, steps: int, *, seed: int = 0) -> torch.Tensor:
    """The first ``steps`` index batches of :meth:`Dataset.batches`, as a ``(steps, batch_size)`` tensor."""
    _checks.positive("n", n, integer=True)
    _checks.in_range("batch_size", batch_size, 1, n)
    _checks.positive("steps", steps, integer=True)
    _checks.seed("seed", seed)
    stream = _index_stream(n, batch_size, seed)
    return torch.stack([next(stream) for _ in range(steps)])


def as_dataset(data: Dataset | tuple[torch.Tensor, torch.Tensor], name: str = "data") -> Dataset:
    """Accept a Dataset or an ``(inputs, targets)`` pair of tensors.

    For a pair, integer targets mean classification (classes = max label + 1)
    and floating targets mean regression (1-D targets become one column).
    """
    if isinstance(data, Dataset):
        return data
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(
            f"data must be a labkit Dataset or an (inputs, targets) pair of tensors, got {type(data).__name__}"
        )
    try:
        x, y = (t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t)) for t in data)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"data must be numeric (inputs, targets) arrays or tensors; could not convert: {err}") from err
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"inputs and targets need a row dimension, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) == 0:
        raise ValueError("data is empty: inputs has 0 rows")
    if y.is_floating_point():
        return Dataset(x, y.reshape(len(y), -1), "regression", None, name)
    if y.dtype == torch.bool:
        raise TypeError("targets are booleans; use targets.long() for two classes 0 and 1")
    if y.ndim != 1:
        raise TypeError(f"integer targets must be 1-D class labels, got shape {tuple(y.shape)}")
    y = y.long()
    if len(y) and int(y.min()) < 0:
        row = int(torch.nonzero(y < 0)[0, 0])
        raise ValueError(f"targets has label {int(y[row])} at row {row}; class labels must be >= 0 "
                         "(0, 1, ..., num_classes - 1)")
    return Dataset(x, y, "classification", int(y.max()) + 1, name)


# ---------------------------------------------------------------- synthetic tasks


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(_checks.seed("seed", seed))


@_deprecated.keyword_only("seed")
def gaussian_mixture(
    n: int = 512, dim: int = 2, classes: int = 3, separation: float = 3.0, *, seed: int = 0
) -> Dataset:
    """Isotropic unit Gaussians around ``classes`` random means at distance ``separation`` from 0.

    Balanced classes (labels cycle 0, 1, ..., classes - 1). With well separated
    means this is the task of Sagun et al.'s and Papyan's Hessian-outlier studies.
    """
    _checks.positive("n", n, integer=True)
    _checks.positive("dim", dim, integer=True)
    _checks.in_range("classes", classes, 2, 10_000)
    _checks.positive("separation", separation, allow_zero=True)
    g = _gen(seed)
    means = torch.randn(classes, dim, generator=g)
    means = separation * means / means.norm(dim=1, keepdim=True)
    y = torch.arange(n) % classes
    x = means[y] + torch.randn(n, dim, generator=g)
    return Dataset(x, y, "classification", classes, "gaussian_mixture")


@_deprecated.keyword_only("seed")
def two_moons(n: int = 512, noise: float = 0.1, *, seed: int = 0) -> Dataset:
    """Two interleaved half circles in 2-D (two classes)."""
    _checks.positive("n", n, integer=True)
    _checks.positive("noise", noise, allow_zero=True)
    g = _gen(seed)
    y = torch.arange(n) % 2
    t = torch.rand(n, generator=g) * math.pi
    x = torch.stack([torch.cos(t), torch.sin(t)], 1)
    x[y == 1] = torch.stack([1 - torch.cos(t[y == 1]), 0.5 - torch.sin(t[y == 1])], 1)
    x = x + noise * torch.randn(n, 2, generator=g)
    return Dataset(x, y, "classification", 2, "two_moons")


@_deprecated.keyword_only("seed")
def spirals(n: int = 512, classes: int = 2, noise: float = 0.1, turns: float = 1.5, *,
            seed: int = 0) -> Dataset:
    """``classes`` interleaved spiral arms in 2-D: a classic hard task for small MLPs."""
    _checks.positive("n", n, integer=True)
    _checks.in_range("classes", classes, 2, 100)
    _checks.positive("noise", noise, allow_zero=True)
    _checks.positive("turns", turns)
    g = _gen(seed)
    y = torch.arange(n) % classes
    r = torch.rand(n, generator=g)
    angle = 2 * math.pi * (turns * r + y / classes)
    x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1)
    x = x + noise * torch.randn(n, 2, generator=g) * r[:, None]
    return Dataset(x, y, "classification", classes, "spirals")


@_deprecated.keyword_only("seed", "out_dim")
def teacher_student(
    n: int = 512,
    dim: int = 10,
    teacher_width: int = 32,
    noise: float = 0.0,
    *,
    seed: int = 0,
    out_dim: int = 1,
) -> Dataset:
    """Regression on the outputs of a random one-hidden-layer tanh teacher, plus Gaussian noise."""
    _checks.positive("n", n, integer=True)
    _checks.positive("dim", dim, integer=True)
    _checks.positive("teacher_width", teacher_width, integer=True)
    _checks.positive("noise", noise, allow_zero=True)
    _checks.positive("out_dim", out_dim, integer=True)
    g = _gen(seed)
    w1 = torch.randn(dim, teacher_width, generator=g) / math.sqrt(dim)
    w2 = torch.randn(teacher_width, out_dim, generator=g) / math.sqrt(teacher_width)
    x = torch.randn(n, dim, generator=g)
    y = torch.tanh(x @ w1) @ w2 + noise * torch.randn(n, out_dim, generator=g)
    return Dataset(x, y, "regression", None, "teacher_student")


@_deprecated.keyword_only("seed")
def modular_addition(p: int = 97, train_frac: float = 0.5, *, seed: int = 0) -> tuple[Dataset, Dataset]:
    """All pairs ``(a, b)`` labelled ``(a + b) mod p``, split into ``(train, test)`` (grokking tasks).

    Inputs are the two one-hot codes side by side (``2 p`` features).
    """
    _checks.in_range("p", p, 2, 1000)
    _checks.fraction("train_frac", train_frac)
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    x = torch.cat([torch.nn.functional.one_hot(a, p), torch.nn.functional.one_hot(b, p)], 1).float()
    full = Dataset(x, (a + b) % p, "classification", p, f"modular_addition(p={p})")
    return full.split(train_frac, seed=seed)


@_deprecated.keyword_only("seed")
def sparse_parity(n: int = 1024, n_bits: int = 20, k: int = 3, *, seed: int = 0) -> Dataset:
    """Random +-1 strings labelled by the parity of a secret subset of ``k`` of their ``n_bits`` bits."""
    _checks.positive("n", n, integer=True)
    _checks.in_range("n_bits", n_bits, 1, 10_000)
    _checks.in_range("k", k, 1, n_bits)
    g = _gen(seed)
    secret = torch.randperm(n_bits, generator=g)[:k]
    x = torch.randint(0, 2, (n, n_bits), generator=g).float() * 2 - 1
    y = (x[:, secret] < 0).sum(1) % 2
    return Dataset(x, y, "classification", 2, f"sparse_parity(n_bits={n_bits}, k={k})")


# ---------------------------------------------------------------- bundled data


def data_dir() -> Path:
    """Folder of the bundled data files (inside an installed wheel, or the repository's ``data/``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_bundled" / "data", here.parent / "data"):
        if (candidate / "digits.csv.gz").exists():
            return candidate
    raise FileNotFoundError(
        "labkit's bundled data folder was not found; reinstall labkit (pip install labkit-dynamics) "
        "or run from a checkout of the repository"
    )


def digits(flat: bool = True) -> Dataset:
    """The 1,797 8x8 handwritten digits (UCI; see ``data/README.md``), pixels scaled to [0, 1].

    ``flat=True`` gives 64 features per image; ``flat=False`` gives ``(1, 8, 8)`` images.
    """
    if not isinstance(flat, bool):
        raise TypeError(f"flat must be True or False, got {flat!r}")
    with gzip.open(data_dir() / "digits.csv.gz", "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = torch.from_numpy(table[:, :64] / 16.0)
    y = torch.from_numpy(table[:, 64].astype(np.int64))
    if not flat:
        x = x.reshape(-1, 1, 8, 8)
    return Dataset(x, y, "classification", 10, "digits")


def _torchvision(name: str, train: bool, root: str | None) -> Dataset:
    try:
        import torchvision  # noqa: F401
        from torchvision import datasets
    except Exception as err:  # pragma: no cover - optional dependency
        raise RuntimeError(
            f"{name} needs torchvision (pip install torchvision) and network access to download; "
            "offline, use labkit.data.digits() instead"
        ) from err
    cls = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10}[name]  # pragma: no cover
    try:  # pragma: no cover
        raw = cls(root or str(Path.home() / ".cache" / "labkit"), train=train, download=True)
    except Exception as err:  # pragma: no cover
        raise RuntimeError(f"could not download {name}: {err}; offline, use labkit.data.digits()") from err
    x = torch.as_tensor(np.asarray(raw.data), dtype=torch.float32) / 255.0  # pragma: no cover
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # pragma: no cover
    y = torch.as_tensor(np.asarray(raw.targets), dtype=torch.long)  # pragma: no cover
    return Dataset(x, y, "classification", 10, name)  # pragma: no cover


def mnist(train: bool = True, root: str | None = None) -> Dataset:
    """MNIST as (n, 1, 28, 28) images via torchvision (optional; needs the network once)."""
    return _torchvision("mnist", train, root)


def cifar10(train: bool = True, root: str | None = None) -> Dataset:
    """CIFAR-10 as (n, 3, 32, 32) images via torchvision (optional; needs the network once)."""
    return _torchvision("cifar10", train, root)


_REGISTRY: dict[str, Callable[..., Any]] = {
    "gaussian_mixture": gaussian_mixture,
    "two_moons": two_moons,
    "spirals": spirals,
    "teacher_student": teacher_student,
    "modular_addition": modular_addition,
    "sparse_parity": sparse_parity,
    "digits": digits,
    "mnist": mnist,
    "cifar10": cifar10,
}


def names() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(_REGISTRY)


def load(name: str, **kwargs: Any) -> Any:
    """Look a dataset up by name: ``load("two_moons", n=256, seed=1)``."""
    _checks.choice("name", name, names())
    return _REGISTRY[name](**kwargs)
