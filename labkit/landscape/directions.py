"""Directions in parameter space that span a landscape picture: random, filter-normalised, Hessian, PCA.

Every direction is a flat vector in the layout of :class:`labkit.models.ParamSpec` (a block of ``k``
directions is a ``(k, P)`` tensor):

- :func:`random_directions` -- Gaussian entries;
- :func:`filter_normalize` -- Li, Xu, Taylor, Studer & Goldstein 2018 ("Visualizing the loss landscape of
  neural nets"): each filter of the direction (a dense layer's output neuron: one row of its weight) is
  rescaled to the norm of the weights it perturbs, and biases and normalisation parameters (anything of
  one dimension) are set to zero, so that two networks related by a rescaling symmetry get the same picture;
- :func:`hessian_directions` -- the top eigenvectors of the loss Hessian (:func:`labkit.linalg.top_eigenvalues`);
- :func:`pca_directions` -- the first principal components of a recorded trajectory, with the trajectory
  projected onto them and the fraction of its variance they explain (Li et al. 2018, section 7; Antognini &
  Sohl-Dickstein 2018 for why a large fraction is not by itself evidence of low-dimensional training).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from labkit import _checks
from labkit.models import ParamSpec, param_dict

__all__ = ["PCA", "check_directions", "filter_normalize", "hessian_directions", "pca_directions",
           "random_directions"]


def _spec(params: nn.Module | Mapping[str, torch.Tensor] | ParamSpec) -> ParamSpec:
    return params if isinstance(params, ParamSpec) else ParamSpec.of(params)


def check_directions(name: str, directions: Any, spec: ParamSpec) -> torch.Tensor:
    """``directions`` as a ``(k, P)`` tensor of the model's dtype, refusing wrong shapes, dtypes and zero vectors."""
    if isinstance(directions, (list, tuple)):
        if not all(isinstance(d, torch.Tensor) for d in directions):
            raise TypeError(f"{name} must be torch tensors of shape ({spec.numel},), got "
                            f"{[type(d).__name__ for d in directions]}")
        if len({tuple(d.shape) for d in directions}) > 1:
            raise ValueError(f"{name} must all have shape ({spec.numel},), got {[tuple(d.shape) for d in directions]}")
        directions = torch.stack(list(directions))
    _checks.tensor(name, directions)
    d = directions.unsqueeze(0) if directions.ndim == 1 else directions
    if d.ndim != 2 or d.shape[1] != spec.numel:
        raise ValueError(f"{name} must have shape (k, {spec.numel}) (one flat vector per direction, "
                         f"ParamSpec order), got {tuple(directions.shape)}")
    if not d.is_floating_point():
        raise TypeError(f"{name} must be floating point ({spec.dtype}), got {d.dtype}")
    if d.dtype != spec.dtype:
        raise TypeError(f"{name} has dtype {d.dtype} but the model's parameters are {spec.dtype}; "
                        f"convert with {name}.to({spec.dtype})")
    _checks.finite(name, d)
    norms = d.norm(dim=1)
    if bool((norms == 0).any()):
        zero = [int(i) for i in (norms == 0).nonzero().flatten()]
        raise ValueError(f"{name}: direction(s) {zero} are zero vectors; a plane needs nonzero directions "
                         "(a filter-normalised direction is zero when every parameter is a bias)")
    return d.to(spec.device)


def random_directions(params: nn.Module | Mapping[str, torch.Tensor] | ParamSpec, k: int = 2, *,
                      seed: int = 0) -> torch.Tensor:
    """``k`` directions with independent N(0, 1) entries, ``(k, P)`` in the parameters' dtype."""
    spec = _spec(params)
    _checks.positive("k", k, integer=True)
    g = torch.Generator().manual_seed(_checks.seed("seed", seed))
    return torch.randn(k, spec.numel, generator=g, dtype=torch.float64).to(spec.device, spec.dtype)


def filter_normalize(directions: torch.Tensor, params: nn.Module | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Li et al.'s filter normalisation of ``(k, P)`` (or ``(P,)``) directions at the point ``params``.

    For every parameter with two or more dimensions, each filter ``f`` (index along the first dimension:
    a dense layer's output neuron, a convolution's output channel) becomes ``d_f / |d_f| * |theta_f|``;
    parameters of one dimension (biases, normalisation gains and shifts) become zero. A filter whose
    direction is zero stays zero.
    """
    p = param_dict(params) if isinstance(params, nn.Module) else dict(params)
    spec = ParamSpec.of(p)
    single = isinstance(directions, torch.Tensor) and directions.ndim == 1
    d = check_directions("directions", directions, spec)
    blocks = spec.unflatten(d)  # {name: (k, *shape)}
    out = {}
    for name, shape in zip(spec.names, spec.shapes):
        block = blocks[name]
        if len(shape) < 2:
            out[name] = torch.zeros_like(block)
            continue
        rows = block.reshape(block.shape[0], shape[0], -1)
        norm_d = rows.norm(dim=2, keepdim=True)
        norm_w = p[name].reshape(1, shape[0], -1).norm(dim=2, keepdim=True)
        scale = torch.where(norm_d > 0, norm_w / norm_d.clamp_min(torch.finfo(d.dtype).tiny), 0.0)
        out[name] = (rows * scale).reshape(block.shape)
    flat = spec.flatten(out)
    return flat[0] if single else flat


def hessian_directions(model: Any, loss: Any = "auto", data: Any = None, k: int = 2, *, seed: int = 0,
                       batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` eigenpairs of the loss Hessian: ``(values (k,), directions (k, P))`` (unit vectors).

    ``model`` is a module (with ``loss`` and ``data``) or a :class:`labkit.risk.Risk`.
    """
    from labkit import linalg
    from labkit.curvature import HessianOperator

    res = linalg.top_eigenvalues(HessianOperator(model, loss, data, batch_size=batch_size), k=k, seed=seed)
    if not res.converged:
        raise ValueError(f"the top {k} Hessian eigenvectors did not converge ({res.message}); "
                         "pass the directions yourself or raise k")
    return res.values, res.vectors.T.contiguous()


@dataclass
class PCA:
    """Principal directions of a trajectory about its final point (Li et al. 2018, section 7).

    ``directions (k, P)`` (orthonormal), ``origin (P,)`` (the final snapshot), ``coords (T, k)`` (each
    snapshot minus the origin, projected), ``explained (k,)`` (the fraction of the trajectory's variance
    about the origin along each direction; ``explained.sum()`` is the plane's share), ``steps`` the
    snapshots' step labels.
    """

    directions: torch.Tensor
    origin: torch.Tensor
    coords: np.ndarray
    explained: np.ndarray
    steps: list[int]

    @property
    def explained_total(self) -> float:
        """The fraction of the trajectory's variance the ``k`` directions explain together."""
        return float(self.explained.sum())


def pca_directions(snapshots: Any, k: int = 2, *, steps: Sequence[int] | None = None) -> PCA:
    """The first ``k`` principal directions of ``snapshots (T, P)`` about the last one (T >= 3).

    Centred on the final point, as Li et al. do, so the plane passes through the solution; the SVD of the
    centred ``(T, P)`` matrix gives the directions (right singular vectors, sign fixed so the first
    snapshot has a non-negative coordinate), the projections and the explained fractions ``s_i^2 / sum s^2``.
    ``snapshots`` may also be a :class:`labkit.landscape.Trajectory`.
    """
    if hasattr(snapshots, "snapshots") and hasattr(snapshots, "steps"):
        steps = list(snapshots.steps) if steps is None else steps
        snapshots = snapshots.snapshots
    _checks.tensor("snapshots", snapshots)
    if snapshots.ndim != 2:
        raise ValueError(f"snapshots must be a (T, P) tensor of flat parameter vectors, got shape "
                         f"{tuple(snapshots.shape)}")
    t = snapshots.shape[0]
    if t < 3:
        raise ValueError(f"a PCA plane needs a trajectory of at least 3 snapshots, got {t}; record more often "
                         "(Trajectory(every=...)) or train longer")
    if not snapshots.is_floating_point():
        raise TypeError(f"snapshots must be floating point, got {snapshots.dtype}")
    _checks.finite("snapshots", snapshots)
    _checks.in_range("k", k, 1, t - 1)
    origin = snapshots[-1]
    centred = (snapshots - origin).double()
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    total = float((s**2).sum())
    if total == 0:
        raise ValueError("the trajectory never moves (every snapshot equals the last): no principal directions")
    vh = vh[:k]
    coords = centred @ vh.T
    signs = torch.where(coords[0] < 0, -1.0, 1.0).to(vh.dtype)
    vh, coords = vh * signs[:, None], coords * signs
    steps = list(range(t)) if steps is None else [int(s) for s in steps]
    if len(steps) != t:
        raise ValueError(f"steps has {len(steps)} entries for {t} snapshots")
    return PCA(vh.to(snapshots.dtype), origin.clone(), coords.cpu().numpy(), (s[:k] ** 2 / total).cpu().numpy(), steps)
