"""Population probes: the curvature of every member of a population at once, over stacked parameters.

A :class:`Members` is ``M`` networks of one architecture at stacked parameters ``{name: (M, ...)}`` (what
:func:`labkit.train.fit_many` hands its callbacks), with one loss and data shared by all members or one batch per
member. Its products ``H_i v_i`` (Hessian: one reverse pass through the kept gradient graph of all members, the
double-backward product of :mod:`labkit.hvp` over stacked parameters) and ``G_i v_i`` (Gauss-Newton: one ``vmap``
over members of the single-model product) are one computation for all members, optionally
preconditioned, ``D_i^(1/2) H_i D_i^(1/2)`` with ``D_i`` member ``i``'s per-parameter learning rates (gradient
descent at a point is stable iff its top eigenvalue is below 2). :func:`top_eigenvalues` runs
:func:`labkit.linalg.lockstep.lockstep_eigenvalues` on them: one Krylov sequence per member, converged members drop
out of the products, a diverged member (non-finite parameters or loss) reports NaN with ``converged=False``.

The same for gradient noise and kernels: :func:`noise_scales` (``B_simple``, and ``B_noise`` through
:meth:`Members.product` on stacked vectors) returns a :class:`PopulationNoise`; :func:`ntk` the traced or full
empirical NTK of every member, :func:`kernel_change` and :func:`kernel_distance` how far it moved. The
:func:`labkit.train.fit_many` trackers :class:`Sharpness`, :class:`NoiseScales` and :class:`KernelChange` measure a
whole population every ``k`` steps into each member's ``History.tracked``. Every probe equals its single-model
counterpart per member; an undefined value (a diverged member) is NaN, never a crash or a wrong neighbour.

>>> import torch, labkit
>>> ds = labkit.data.teacher_student(32, dim=3, teacher_width=4, seed=0).to(dtype=torch.float64)
>>> nets = [labkit.models.mlp(3, [8], 1, seed=s).double() for s in range(3)]
>>> res = top_eigenvalues(Members.of(nets, "mse", ds), k=1)
>>> tuple(res.values.shape), bool(res.converged.all())
((3, 1), True)
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from labkit import _checks, _deprecated, _io, threads
from labkit.data import as_dataset
from labkit.history import Callback, History, StepInfo
from labkit.linalg.lockstep import lockstep_eigenvalues
from labkit.losses import LOSSES, Loss
from labkit.machine import MAX_MEMORY
from labkit.models import ParamSpec
from labkit.population.batched import chunk_members, dense_layers
from labkit.population.fit import memory_estimate
from labkit.risk import resolve_loss

__all__ = ["ENGINES", "OPERATORS", "OUTPUTS", "KernelChange", "Members", "NoiseScales", "PopulationEigs",
           "PopulationNoise", "Sharpness", "kernel_change", "kernel_distance", "noise_scales", "ntk", "top_eigenvalues"]

#: The curvature operators a population has products of.
OPERATORS = ("hessian", "ggn")
#: How Hessian products are computed: ``"batched"`` (the written-out R-operator of :class:`_MLPHessian`, for
#: ``labkit.models.mlp`` networks), ``"autograd"`` (double backward, any module), ``"auto"`` (batched where it applies).
ENGINES = ("auto", "batched", "autograd")
#: Activations whose first and second derivatives the batched Hessian product writes out, from the activation's
#: output ``h`` (``relu``: ``act'' = 0`` away from the kink, as autograd's double backward has it).
_CURVES = {
    "tanh": lambda h: (1 - h * h, -2 * h * (1 - h * h)),
    "relu": lambda h: ((h > 0).to(h.dtype), None),
    "sigmoid": lambda h: (h * (1 - h), h * (1 - h) * (1 - 2 * h)),
    "identity": lambda h: (None, None),
}


class Members:
    """``M`` networks of one architecture: stacked parameters, a loss, and data shared or one batch per member.

    ``base`` is one member's module (its architecture; its own values are not used), ``params`` the stacked
    ``{name: (M, ...)}``. ``data`` is a dataset (or ``(x, y)``) that every member sees, or a sequence of ``M``
    datasets of equal size, one per member (``per_member=True`` takes ``(x (M, B, ...), y (M, B, ...))``).
    """

    def __init__(self, base: nn.Module, params: Mapping[str, torch.Tensor], loss: Any = "auto", data: Any = None,
                 *, per_member: bool = False, engine: str = "auto"):
        if not isinstance(base, nn.Module):
            raise TypeError(f"base must be an nn.Module (one member's architecture), got {type(base).__name__}")
        if not params:
            raise ValueError("params is empty: pass the stacked parameters {name: (members, ...)}")
        self.params = {k: v.detach() for k, v in params.items()}
        sizes = {k: v.shape[0] for k, v in self.params.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"params must share their leading (member) dimension, got {sizes}")
        self.size = next(iter(sizes.values()))
        self.base = copy.deepcopy(base).to("meta")
        self.spec = ParamSpec.of({k: v[0] for k, v in self.params.items()})
        if data is None:
            raise ValueError("data is required: a dataset, (x, y), or one dataset per member")
        if isinstance(data, Sequence) and not isinstance(data, tuple) and not per_member:
            sets = [as_dataset(d) for d in data]
            if len(sets) != self.size:
                raise ValueError(f"data has {len(sets)} datasets for {self.size} members; pass one per member")
            if len({len(d) for d in sets}) != 1:
                raise ValueError(f"per-member datasets must have equal sizes, got {[len(d) for d in sets]}")
            ds = sets[0]
            x, y = torch.stack([d.inputs for d in sets]), torch.stack([d.targets for d in sets])
            per_member = True
        elif per_member:
            x, y = (torch.as_tensor(t) for t in data)
            if x.shape[0] != self.size or y.shape[0] != self.size:
                raise ValueError(f"per_member data must be (x (M, B, ...), y (M, B, ...)) with M={self.size}, got "
                                 f"{tuple(x.shape)} and {tuple(y.shape)}")
            ds = as_dataset((x[0], y[0]))
        else:
            ds = as_dataset(data)
            x, y = ds.inputs, ds.targets
        self.loss: Loss = resolve_loss(loss, ds)
        dev, dt = self.spec.device, self.spec.dtype
        self.x = x.to(dev, dt) if x.is_floating_point() else x.to(dev)
        self.y = y.to(dev, dt) if y.is_floating_point() else y.to(dev)
        self.per_member = per_member
        self.dtype, self.device = dt, dev
        self._graph: tuple[torch.Tensor, Any, Any] | None = None
        _checks.choice("engine", engine, ENGINES)
        why = self.unbatched()
        if engine == "batched" and why is not None:
            raise ValueError(f"engine='batched' cannot take these members' Hessian products: {why}. It takes "
                             "labkit.models.mlp networks (tanh, relu, sigmoid, identity) with loss 'mse' or "
                             "'cross_entropy' on flat inputs; use engine='auto' or 'autograd' for other models")
        self.engine = "batched" if engine != "autograd" and why is None else "autograd"

    @classmethod
    def of(cls, models: Sequence[nn.Module], loss: Any = "auto", data: Any = None, **kwargs: Any) -> Members:
        """Members from separate modules of one architecture (their parameters stacked)."""
        models = list(models)
        if not models:
            raise ValueError("models is empty: pass at least one module")
        params, _ = torch.func.stack_module_state(models)
        return cls(models[0], params, loss, data, **kwargs)

    def __len__(self) -> int:
        return self.size

    @property
    def numel(self) -> int:
        """Parameters per member."""
        return self.spec.numel

    def unbatched(self) -> str | None:
        """None when the batched Hessian product applies to these members, else why not (a sentence)."""
        layers = dense_layers(self.base)
        if isinstance(layers, str):
            return layers
        if self.loss is not LOSSES["mse"] and self.loss is not LOSSES["cross_entropy"]:
            return f"the loss is {getattr(self.loss, 'name', self.loss)!r}, not labkit's 'mse' or 'cross_entropy'"
        if self.x.ndim != (3 if self.per_member else 2):
            return f"the inputs have shape {tuple(self.x.shape)}, not (examples, features) per member"
        acts = {la.activation for la in layers} - {None}
        if not acts <= set(_CURVES):
            return f"activation(s) {sorted(acts - set(_CURVES))} have no written-out second derivative"
        names = {n for la in layers for n in la.names if n is not None}
        if names != set(self.spec.names):
            return "the model has parameters outside its Dense layers"
        return None

    # ------------------------------------------------------------ per-member functions (vmapped below)
    def _loss(self, p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(functional_call(self.base, p, (x,)), y)

    def _ggn(self, p: dict, v: dict, x: torch.Tensor, y: torch.Tensor) -> dict:
        f = lambda q: functional_call(self.base, q, (x,))  # noqa: E731
        out, Jv = jvp(f, (p,), (v,))
        u = jvp(grad(lambda o: self.loss(o, y)), (out,), (Jv,))[1]  # H_out J v (the loss a batch mean)
        return vjp(f, p)[1](u)[0]

    def losses(self) -> torch.Tensor:
        """Each member's mean loss ``(M,)`` on its data."""
        with torch.no_grad():
            return vmap(self._loss, in_dims=(0, self._dims, self._dims))(self.params, self.x, self.y)

    @property
    def _dims(self) -> int | None:
        return 0 if self.per_member else None

    def diverged(self) -> torch.Tensor:
        """``(M,)`` bool: members with non-finite parameters or loss (their curvature is undefined)."""
        bad = torch.zeros(self.size, dtype=torch.bool, device=self.device)
        for v in self.params.values():
            bad |= ~torch.isfinite(v.reshape(self.size, -1)).all(1)
        return (bad | ~torch.isfinite(self.losses())).cpu()

    def _gradient_graph(self, idx: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], tuple]:
        """The stacked gradient of members ``idx`` with its graph (``create_graph``), kept while the active set
        shrinks by less than half: each Hessian product is then one reverse pass through it (members independent,
        so ``d(sum_i g_i . v_i)/dtheta_i = H_i v_i``); rebuilt over the survivors when they fall to half."""
        return self._held(idx, self._build_graph)

    def _held(self, idx: torch.Tensor, build: Any) -> tuple:
        """``(held members, *state)`` over a superset of ``idx``, kept while ``idx`` is more than half of it."""
        g = self._graph
        if g is not None and len(idx) * 2 > len(g[0]) and bool(torch.isin(idx, g[0]).all()):
            return g
        idx = torch.sort(idx).values  # rows are found by searchsorted
        self._graph = None  # free the old state first
        state = build(idx)
        self._graph = (idx, *state) if isinstance(state, tuple) else (idx, state)
        return self._graph

    def _build_graph(self, idx: torch.Tensor) -> tuple[list[torch.Tensor], tuple]:
        p = [self.params[k].index_select(0, idx).requires_grad_(True) for k in self.spec.names]
        x = self.x.index_select(0, idx) if self.per_member else self.x
        y = self.y.index_select(0, idx) if self.per_member else self.y
        with torch.enable_grad():
            value = vmap(self._loss, in_dims=(0, self._dims, self._dims))(dict(zip(self.spec.names, p)), x, y)
            grads = torch.autograd.grad(value.sum(), p, create_graph=True)
        return p, grads

    def product(self, V: torch.Tensor, active: torch.Tensor | None = None, operator: str = "hessian",
                scale: torch.Tensor | None = None) -> torch.Tensor:
        """``A_i V[j]`` for member ``i = active[j]`` (default all), ``V (len(active), P)``, all members at once.

        ``operator``: ``"hessian"`` (:attr:`engine` ``"batched"``: the written-out R-operator of the MLP,
        :class:`_MLPHessian`; ``"autograd"``: reverse-over-reverse through one kept stacked gradient graph) or ``"ggn"``
        (a vmap over members of jvp, output-space Hessian product, vjp); ``scale (M, P)`` gives ``S_i A_i S_i``
        (``S = D^(1/2)``).
        """
        _checks.choice("operator", operator, OPERATORS)
        idx = torch.arange(self.size, device=self.device) if active is None else active.to(self.device)
        V = V.to(self.device, self.dtype)
        if scale is not None:
            s = scale.to(self.device, self.dtype).index_select(0, idx)
            V = V * s
        if operator == "hessian" and self.engine == "batched":
            held = self._held(idx, lambda i: _MLPHessian(self, i))
            rows = torch.searchsorted(held[0], idx)
            full = V if len(held[0]) == len(idx) else V.new_zeros(len(held[0]), V.shape[1]).index_copy_(0, rows, V)
            out = held[1].product(full)
            out = out if len(held[0]) == len(idx) else out.index_select(0, rows)
        elif operator == "hessian":
            held, p, grads = self._gradient_graph(idx)
            rows = torch.searchsorted(held, idx)
            full = V if len(held) == len(idx) else V.new_zeros(len(held), V.shape[1]).index_copy_(0, rows, V)
            tangents = self.spec.unflatten(full)
            hv = torch.autograd.grad(grads, p, [tangents[k] for k in self.spec.names], retain_graph=True)
            out = torch.cat([h.reshape(len(held), -1) for h in hv], 1)
            out = out if len(held) == len(idx) else out.index_select(0, rows)
        else:
            p = {k: v.index_select(0, idx) for k, v in self.params.items()}
            x = self.x.index_select(0, idx) if self.per_member else self.x
            y = self.y.index_select(0, idx) if self.per_member else self.y
            out = vmap(self._ggn, in_dims=(0, 0, self._dims, self._dims))(p, self.spec.unflatten(V), x, y)
            out = self.spec.flatten(out)
        return out * s if scale is not None else out


class _MLPHessian:
    """Hessian products ``H_i v_i`` of ``labkit.models.mlp`` members, all at once: Pearlmutter's R-operator written
    out as batched matmuls over the layout of :mod:`labkit.population.batched` (weights ``(M, out, in)``).

    Built once per set of members: the forward pass (inputs ``h``, ``act'(z)``) and the backward pass (``dL/dz``,
    and ``dL/dh * act''(z)``) at the fixed parameters. A product is then a forward pass of tangents
    (``Rz = wm (Rh W^T + h V^T) + bm Vb``, ``Rh = act'(z) Rz``), the output Hessian of the loss (closed form for
    ``mse`` and ``cross_entropy``), and a backward pass (``RW = wm (Rdz^T h + dz^T Rh)``,
    ``Rdz' = wm (Rdz W + dz V) act'(z') + dL/dh' act''(z') Rz'``): one ``bmm`` per layer and pass for each term,
    no autograd graph. ``tests/test_population_hvp.py`` checks it against the double-backward path and dense
    Hessians.
    """

    def __init__(self, members: Members, idx: torch.Tensor):
        layers = dense_layers(members.base)
        assert not isinstance(layers, str), layers
        self.layers, self.spec = layers, members.spec
        M = len(idx)
        p = {k: v.index_select(0, idx) for k, v in members.params.items()}
        x = members.x.index_select(0, idx) if members.per_member else members.x.expand(M, *members.x.shape)
        y = members.y.index_select(0, idx) if members.per_member else members.y.expand(M, *members.y.shape)
        self.W = [p[la.names[0]] for la in layers]
        self.h: list[torch.Tensor] = []  # the input of each layer
        self.d1: list[torch.Tensor | None] = []  # act'(z) after each layer (None: identity)
        d2: list[torch.Tensor | None] = []
        h = x
        for la, W in zip(layers, self.W):
            self.h.append(h)
            z = torch.baddbmm(p[la.names[1]].unsqueeze(1) * la.bias_mult, h, W.transpose(1, 2),
                              alpha=la.weight_mult) if la.names[1] else torch.bmm(h, W.transpose(1, 2)) * la.weight_mult
            act = la.activation or "identity"
            h = z if act == "identity" else {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}[act](z)
            a1, a2 = _CURVES[act](h)
            self.d1.append(a1)
            d2.append(a2)
        n = h.shape[1]
        self.mse = members.loss is LOSSES["mse"]
        if self.mse:
            g = (h - y.reshape(h.shape)) * (2.0 / n)
            self.prob = None
        else:
            self.prob = torch.softmax(h, -1)
            g = (self.prob - nn.functional.one_hot(y.long(), h.shape[-1]).to(h.dtype)) / n
        self.n = n
        self.dz: list[torch.Tensor] = [g] * len(layers)  # dL/dz of each layer
        self.c: list[torch.Tensor | None] = [None] * len(layers)  # dL/dh * act''(z) of each hidden layer
        for li in range(len(layers) - 1, 0, -1):
            dh = torch.bmm(self.dz[li], self.W[li]) * layers[li].weight_mult
            a1, a2 = self.d1[li - 1], d2[li - 1]
            self.c[li - 1] = None if a2 is None else dh * a2
            self.dz[li - 1] = dh if a1 is None else dh * a1

    def product(self, V: torch.Tensor) -> torch.Tensor:
        """``H_i V[i]`` for the held members, ``V (M, P)`` flat in the spec's order: members in cache-sized
        chunks (:func:`labkit.population.batched.chunk_members`; all at once on a GPU)."""
        M = V.shape[0]
        step = chunk_members(M, self.n, max(la.out_features for la in self.layers), V.element_size(), V.device)
        if step >= M:
            return self._product(V, slice(0, M))
        out = torch.empty_like(V)
        for lo in range(0, M, step):
            out[lo: lo + step] = self._product(V[lo: lo + step], slice(lo, lo + step))
        return out

    def _product(self, V: torch.Tensor, r: slice) -> torch.Tensor:
        """The product for members ``r`` of the held ones (rows of the kept forward and backward passes). Biases
        and ``weight_mult`` ride in the ``baddbmm`` calls and the backward's elementwise steps are in place: at
        these sizes (tens of units, a cache-sized chunk of members) every pass over an activation costs as much
        as a matmul."""
        v = self.spec.unflatten(V)
        VW = [v[la.names[0]] for la in self.layers]
        Rh: torch.Tensor | None = None
        Rz: list[torch.Tensor] = []
        Rhs: list[torch.Tensor | None] = []
        for la, W, Vw, h, a1 in zip(self.layers, (w[r] for w in self.W), VW, (h[r] for h in self.h),
                                    (None if a is None else a[r] for a in self.d1)):
            Rhs.append(Rh)
            wm = la.weight_mult
            if la.names[1]:
                vb = v[la.names[1]].unsqueeze(1)
                z = torch.baddbmm(vb if la.bias_mult == 1.0 else vb * la.bias_mult, h, Vw.transpose(1, 2), alpha=wm)
            else:
                z = torch.bmm(h, Vw.transpose(1, 2)) if wm == 1.0 else torch.bmm(h, Vw.transpose(1, 2)).mul_(wm)
            if Rh is not None:
                z = z.baddbmm_(Rh, W.transpose(1, 2), alpha=wm)
            Rz.append(z)
            Rh = z if a1 is None else z * a1
        out = Rz[-1]
        if self.mse:
            Rdz = out * (2.0 / self.n)
        else:
            p = self.prob[r]
            po = p * out
            Rdz = po.sub_(p * po.sum(-1, keepdim=True)).div_(self.n)
        res: dict[str, torch.Tensor] = {}
        for li in range(len(self.layers) - 1, -1, -1):
            la = self.layers[li]
            wm = la.weight_mult
            gw = torch.bmm(Rdz.transpose(1, 2), self.h[li][r])
            if Rhs[li] is not None:
                gw = gw.baddbmm_(self.dz[li][r].transpose(1, 2), Rhs[li])
            res[la.names[0]] = gw.mul_(wm) if wm != 1.0 else gw
            if la.names[1]:
                res[la.names[1]] = Rdz.sum(1).mul_(la.bias_mult) if la.bias_mult != 1.0 else Rdz.sum(1)
            if li == 0:
                break
            dh = torch.bmm(Rdz, self.W[li][r]).baddbmm_(self.dz[li][r], VW[li])
            if wm != 1.0:
                dh = dh.mul_(wm)
            a1, c = self.d1[li - 1], self.c[li - 1]
            Rdz = dh if a1 is None else dh.mul_(a1[r])
            if c is not None:
                Rdz = Rdz.addcmul_(c[r], Rz[li - 1])
        return self.spec.flatten(res)


@dataclass
class PopulationEigs:
    """Per-member top eigenvalues of a population, indexed like its Histories: ``res[i]`` is member ``i``'s
    ``{"values", "residuals", "converged", "n_matvec"}``. ``values (M, k)`` descending (NaN: undefined),
    ``residuals (M, k)``, ``converged (M,)``, ``n_matvec (M,)`` products per member; ``operator``, ``tol``, and
    ``lrs`` (whether the operator was preconditioned by per-parameter learning rates) say what was measured."""

    values: torch.Tensor
    residuals: torch.Tensor
    converged: torch.Tensor
    n_matvec: torch.Tensor
    operator: str = "hessian"
    tol: float = 1e-6
    preconditioned: bool = False
    message: str = ""
    vectors: torch.Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"values": self.values[i].tolist(), "residuals": self.residuals[i].tolist(),
                "converged": bool(self.converged[i]), "n_matvec": int(self.n_matvec[i])}

    @property
    def top(self) -> torch.Tensor:
        """The largest eigenvalue of each member ``(M,)``."""
        return self.values[:, 0]

    def to_dict(self) -> dict[str, Any]:
        """Plain lists; valid JSON (NaN becomes None)."""
        def clean(t: torch.Tensor) -> list:
            return [[None if v != v or abs(v) == float("inf") else v for v in row] for row in t.tolist()]

        return {"values": clean(self.values), "residuals": clean(self.residuals),
                "converged": self.converged.tolist(), "n_matvec": self.n_matvec.tolist(),
                "operator": self.operator, "tol": self.tol, "preconditioned": self.preconditioned,
                "message": self.message}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PopulationEigs:
        def tensor(rows: list) -> torch.Tensor:
            return torch.tensor([[float("nan") if v is None else v for v in r] for r in rows], dtype=torch.float64)

        return cls(tensor(d["values"]), tensor(d["residuals"]), torch.tensor(d["converged"], dtype=torch.bool),
                   torch.tensor(d["n_matvec"], dtype=torch.long), d["operator"], d["tol"], d["preconditioned"],
                   d.get("message", ""))

    def save(self, path: str | Path) -> Path:
        """Write as JSON (atomic; ``.json`` appended when missing)."""
        from labkit._io import with_suffix, write_text

        path = with_suffix(path, ".json")
        return write_text(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> PopulationEigs:
        """Read a file written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def _scale(lrs: Any, members: Members) -> torch.Tensor | None:
    """``sqrt(D)`` as ``(M, P)`` from per-member learning rates: scalars ``(M,)``, per-parameter ``(M, P)``, or
    a dict ``{name: (M,) or (M, *shape)}`` (per-layer rates)."""
    if lrs is None:
        return None
    M, P = members.size, members.numel
    if isinstance(lrs, Mapping):
        parts = []
        for name, n in zip(members.spec.names, members.spec.sizes):
            if name not in lrs:
                raise ValueError(f"lrs has no learning rate for parameter {name!r}; it has {sorted(lrs)}")
            v = torch.as_tensor(lrs[name], dtype=torch.float64)
            parts.append(v.reshape(M, 1).expand(M, n) if v.numel() == M else v.reshape(M, n))
        D = torch.cat(parts, 1)
    else:
        D = torch.as_tensor(lrs, dtype=torch.float64)
        D = D.reshape(M, 1).expand(M, P) if D.numel() == M else D
    if tuple(D.shape) != (M, P):
        raise ValueError(f"lrs must give one rate per member ({M},) or per parameter ({M}, {P}), got "
                         f"{tuple(D.shape)}")
    if bool((D < 0).any()) or not bool(torch.isfinite(D).all()):
        raise ValueError("lrs must be finite and non-negative (they are learning rates)")
    return D.sqrt().to(members.device, members.dtype)


def top_eigenvalues(members: Members, k: int = 1, *, operator: str = "hessian", lrs: Any = None,
                    tol: float = 1e-6, max_matvecs: int | None = None, seed: int = 0, vectors: bool = False,
                    max_memory: int = MAX_MEMORY, skip: torch.Tensor | None = None) -> PopulationEigs:
    """The ``k`` largest eigenvalues of every member's Hessian (or ``operator="ggn"``) in one lockstep Lanczos.

    Member ``i``'s values equal ``labkit.linalg.top_eigenvalues(HessianOperator(model_i, loss, data_i), k,
    tol=tol, seed=seed, dense=False)`` (the same start vector, the same stop). ``lrs`` (per member, per layer
    ``{name: (M,)}`` or per parameter ``(M, P)``) measures ``D^(1/2) H D^(1/2)`` instead: with ``lrs`` the
    learning rates, the step is stable iff its top eigenvalue is below 2. Diverged members: NaN,
    ``converged=False`` (``skip (M,)`` marks more members as undefined, e.g. those a training loop saw diverge).
    ``max_memory`` bounds the Lanczos bases (members run in chunks that fit); the Hessian products hold one
    stacked gradient graph of the chunk's members besides (their activations, as one ``fit_many`` step).
    """
    if not isinstance(members, Members):
        raise TypeError(f"members must be a labkit.population.probes.Members, got {type(members).__name__}")
    _checks.choice("operator", operator, OPERATORS)
    scale = _scale(lrs, members)
    bad = members.diverged()
    skip = bad if skip is None else bad | torch.as_tensor(skip, dtype=torch.bool).cpu()
    rows = members.x.shape[1] if members.per_member else members.x.shape[0]
    try:  # one thread when a busy neighbour holds a core or the products are too small for a barrier
        with threads.for_work(threads.layer_flops(members.base, rows, members.size)):
            res = lockstep_eigenvalues(lambda V, active: members.product(V, active, operator, scale), members.numel,
                                       members.size, k=k, tol=tol, max_matvecs=max_matvecs, seed=seed,
                                       dtype=members.dtype, device=members.device, vectors=vectors,
                                       max_memory=max_memory, skip=skip)
    finally:
        members._graph = None  # the kept gradient graph holds every member's activations: free it
    return PopulationEigs(res.values, res.residuals, res.converged, res.n_matvec, operator, tol, scale is not None,
                          res.message, res.vectors)


# ---------------------------------------------------------------- trackers for fit_many


class _PopulationTracker(Callback):
    """A :func:`labkit.train.fit_many` callback that measures every member every ``every`` steps with one
    population probe per measurement (not one tracker per member).

    At steps ``0, k, 2k, ...`` (before that step's update, on the full training set, or ``data``) :meth:`measure`
    returns ``{key: (M,)}``; members whose loss is non-finite at that step record NaN (their measurement is
    undefined, and they cost nothing). At the end every member's ``History.tracked`` gets its values at the steps
    it was alive for. ``steps[j]`` and ``records[j]`` are measurement ``j``; with members of several batch sizes
    (several groups, trained one after another) they hold the last group's, each History its own.
    """

    #: The keys :meth:`series` reads (the first is its default).
    KEYS: tuple[str, ...] = ()
    #: The tracker to use for one network trained by ``labkit.train.fit``.
    SINGLE = ""

    def __init__(self, make_model: Any, every: int, data: Any, max_memory: int):
        if not callable(make_model):
            raise TypeError(f"make_model must be fit_many's make_model(seed) -> nn.Module, got {make_model!r}")
        self.every = _checks.positive("every", every, integer=True)
        self.max_memory = _checks.positive("max_memory", max_memory, integer=True)
        self.make_model, self.data = make_model, data
        self._base: nn.Module | None = None
        self._reset()

    def _reset(self) -> None:
        self.steps: list[int] = []
        self.records: list[dict[str, torch.Tensor]] = []

    def measure(self, members: Members, info: StepInfo, dead: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{key: (M,)}`` for ``members`` at ``info.step``; ``dead (M,)`` marks members whose loss is non-finite."""
        raise NotImplementedError

    def on_start(self, info: StepInfo) -> None:
        if info.params is None:
            raise TypeError(f"{type(self).__name__} measures a fit_many population; for one network use "
                            f"{self.SINGLE}")
        self._reset()
        with torch.random.fork_rng(devices=[]):  # make_model's draws leave the training seeds untouched
            self._base = self.make_model(0)

    def on_step(self, info: StepInfo) -> bool | None:
        if info.step % self.every:
            return None
        members = Members(self._base, info.params, info.loss_fn, info.data if self.data is None else self.data)
        dead = ~torch.isfinite(torch.as_tensor(info.loss)).cpu().reshape(-1)
        values = self.measure(members, info, dead)
        self.steps.append(info.step)
        self.records.append({k: v.detach().to("cpu", torch.float64) for k, v in values.items()})
        return None

    def series(self, member: int, key: str | None = None) -> list[float]:
        """Member ``member``'s ``key`` (default: the first of :attr:`KEYS`) at :attr:`steps`."""
        keys = tuple(self.records[0]) if self.records else self.KEYS
        key = self.KEYS[0] if key is None else _checks.choice("key", key, keys)
        return [float(r[key][member]) for r in self.records]

    def on_end(self, history: History | list[History]) -> None:
        if not isinstance(history, list):
            return
        for i, h in enumerate(history):
            for step, rec in zip(self.steps, self.records):
                if step < h.steps or (step == h.steps and not h.diverged):
                    h.track(step, {k: float(v[i]) for k, v in rec.items()})


class Sharpness(_PopulationTracker):
    """The top Hessian eigenvalue of every member of a :func:`labkit.train.fit_many` population every ``every``
    steps: one lockstep Lanczos per measurement for the whole population (not one tracker per member).

    ``make_model`` is the ``fit_many`` argument (its architecture is all that is used). At steps ``0, k, 2k, ...``
    (before that step's update, on the full training set, or ``data``) it records per member ``sharpness``
    (lambda_max) and ``lr_sharpness`` (lr x lambda_max; gradient descent's edge of stability is 2) into each
    member's ``History.tracked``; members that have diverged record NaN. ``results[j]`` is the
    :class:`PopulationEigs` of measurement ``j`` at step ``steps[j]``.
    """

    KEYS = ("sharpness", "lr_sharpness")
    SINGLE = "labkit.edge.EdgeOfStability"

    def __init__(self, make_model: Any, every: int = 10, *, k: int = 1, operator: str = "hessian",
                 data: Any = None, tol: float = 1e-6, seed: int = 0, max_memory: int = MAX_MEMORY):
        super().__init__(make_model, every, data, max_memory)
        self.k, self.tol, self.seed = k, tol, seed
        self.operator = _checks.choice("operator", operator, OPERATORS)

    def _reset(self) -> None:
        super()._reset()
        self.lrs: list[torch.Tensor] = []
        self.results: list[PopulationEigs] = []

    def measure(self, members: Members, info: StepInfo, dead: torch.Tensor) -> dict[str, torch.Tensor]:
        res = top_eigenvalues(members, self.k, operator=self.operator, tol=self.tol, seed=self.seed,
                              max_memory=self.max_memory, skip=dead)
        lr = torch.as_tensor(info.lr, dtype=torch.float64).cpu().reshape(-1)
        self.lrs.append(lr)
        self.results.append(res)
        top = res.top.to("cpu", torch.float64)
        return {"sharpness": top, "lr_sharpness": lr * top}


# ---------------------------------------------------------------- gradient noise


def _undefined(members: Members, skip: Any) -> torch.Tensor:
    """``(M,)`` bool on the CPU: members whose measurement is undefined (diverged, or marked in ``skip``)."""
    bad = members.diverged()
    if skip is None:
        return bad
    s = torch.as_tensor(skip, dtype=torch.bool).cpu().reshape(-1)
    if s.numel() != members.size:
        raise ValueError(f"skip must have one entry per member, shape ({members.size},), got {tuple(s.shape)}")
    return bad | s


def _one_example(members: Members, x: torch.Tensor | None = None) -> torch.Tensor:
    """One input ``(1, ...)`` of ``x`` (default: the members' inputs, per member or shared), on the meta device."""
    if x is None:
        x = members.x[0] if members.per_member else members.x
    return x[:1].to("meta")


def _out_dim(members: Members, x: torch.Tensor) -> int:
    """The number of outputs of one member on the one example ``x`` (a pass on the meta device: nothing computed)."""
    with torch.no_grad():
        out = functional_call(members.base, {k: v[0].to("meta") for k, v in members.params.items()}, (x,))
    return out.reshape(1, -1).shape[1]


def _mib(b: float) -> str:
    return f"{b / 2**20:.3g} MiB"


def _json_list(t: torch.Tensor) -> list:
    """A 1-D tensor as a JSON-valid list (non-finite numbers become None)."""
    return [v if math.isfinite(v) else None for v in t.tolist()]


@dataclass
class PopulationNoise:
    """Every member's noise scales (:func:`noise_scales`), indexed like the population's Histories: ``res[i]`` is
    member ``i``'s ``{"b_simple", "trace_cov", "grad_sq_norm"}``, with ``"b_noise"``, ``"trace_h_cov"`` and
    ``"grad_h_grad"`` when measured with ``curvature=True``.

    Each field is ``(M,)`` float64: ``b_simple = trace_cov / grad_sq_norm`` (``tr(Sigma) / |G|^2``) and
    ``b_noise = trace_h_cov / grad_h_grad`` (``tr(H Sigma) / (G^T H G)``); NaN where a member's value is undefined
    (it diverged), ``inf`` where a denominator is 0. ``n``: examples per member. ``res["b_simple"]`` (the dict
    :func:`noise_scales` returned before) still reads a field, with a DeprecationWarning.
    """

    b_simple: torch.Tensor
    trace_cov: torch.Tensor
    grad_sq_norm: torch.Tensor
    b_noise: torch.Tensor | None = None
    trace_h_cov: torch.Tensor | None = None
    grad_h_grad: torch.Tensor | None = None
    n: int = 0

    def _columns(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "n" and getattr(self, f.name) is not None}

    def __len__(self) -> int:
        return len(self.b_simple)

    def __getitem__(self, i: int | str) -> Any:
        cols = self._columns()
        if isinstance(i, str):  # noise_scales returned these columns as a dict until this release
            if i not in cols:
                raise KeyError(f"{i!r}: a PopulationNoise has {sorted(cols)}")
            _deprecated.warn(f"noise_scales(...)[{i!r}]", f"noise_scales(...).{i} (a PopulationNoise)")
            return cols[i]
        return {k: float(v[i]) for k, v in cols.items()}

    def __iter__(self) -> Iterator[dict[str, float]]:
        return (self[i] for i in range(len(self)))

    def to_dict(self) -> dict[str, Any]:
        """Plain lists; valid JSON (NaN and inf become None)."""
        return {**{k: _json_list(v) for k, v in self._columns().items()}, "n": self.n}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PopulationNoise:
        cols = {k: torch.tensor([math.nan if v is None else v for v in d[k]], dtype=torch.float64)
                for k in ("b_simple", "trace_cov", "grad_sq_norm", "b_noise", "trace_h_cov", "grad_h_grad") if k in d}
        return cls(**cols, n=int(d.get("n", 0)))

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomic; ``.json`` appended when missing)."""
        return _io.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> PopulationNoise:
        """Read a file written by :meth:`save` (None comes back as NaN)."""
        return cls.from_dict(_io.read_json(path))


def _quadratic_forms(members: Members, idx: torch.Tensor, V: torch.Tensor, per_call: int) -> torch.Tensor:
    """``v^T H_i v`` for every vector ``V[j, r]`` of member ``i = idx[j]`` (``idx`` ascending), ``V (c, R, P)``:
    ``per_call`` vectors of every member in one :meth:`Members.product` call, that member's row repeated. The held
    state is built over exactly these rows (repeats included) and kept for the next call; a short last block is
    padded with zeros so that every call asks for the same rows."""
    c, R, P = V.shape
    r = min(per_call, R)
    active = idx.repeat_interleave(r)
    out = V.new_empty(c, R)
    members._graph = None
    try:
        for lo in range(0, R, r):
            block = V[:, lo:lo + r]
            k = block.shape[1]
            if k < r:
                block = torch.cat([block, block.new_zeros(c, r - k, P)], 1)
            HV = members.product(block.reshape(c * r, P), active).reshape(c, r, P)
            out[:, lo:lo + k] = (block * HV).sum(2)[:, :k]
    finally:
        members._graph = None  # it holds every row's activations
    return out


def noise_scales(members: Members, *, curvature: bool = False, max_memory: int = MAX_MEMORY,
                 skip: torch.Tensor | None = None) -> PopulationNoise:
    """Every member's gradient noise scales on its data, exactly (McCandlish et al. 2018, "An Empirical Model of
    Large-Batch Training"): ``B_simple = tr(Sigma) / |G|^2`` and, with ``curvature=True``,
    ``B_noise = tr(H Sigma) / (G^T H G)``, the batch size beyond which a larger batch buys little, per member.

    Per member as :func:`labkit.batchsize.noise_scale` (``method="per_example"``) and
    :func:`labkit.batchsize.b_noise` (exact): the data are the distribution, ``Sigma = (1/n) sum_i (g_i - G)(g_i -
    G)^T``, so ``tr(Sigma) = mean_i |g_i|^2 - |G|^2`` and ``tr(H Sigma) = mean_i (g_i - G)^T H (g_i - G)``. All
    members' per-example gradients are one ``vmap`` over members of a ``vmap`` over examples; the ``n + 1`` Hessian
    products per member (its centred gradients and ``G``) go through :meth:`Members.product` on stacked vectors,
    as many per call as fit. Members run in chunks that fit ``max_memory``; when one member alone does not fit, the
    call is refused before any work (the message says how many examples fit). Diverged members (non-finite
    parameters or loss, or marked in ``skip (M,)``) are NaN, undefined, and cost nothing; a zero denominator gives
    ``inf``. Returns a :class:`PopulationNoise` (``res["b_simple"]``, the dict of earlier releases, still reads).
    """
    if not isinstance(members, Members):
        raise TypeError(f"members must be a labkit.population.probes.Members, got {type(members).__name__}")
    if not isinstance(curvature, bool):
        raise TypeError(f"curvature must be True or False, got {curvature!r}")
    _checks.positive("max_memory", max_memory, integer=True)
    n = members.y.shape[1] if members.per_member else members.y.shape[0]
    if n < 2:
        raise ValueError(f"the noise scale of {n} example is undefined (the gradient covariance needs at least 2 "
                         "examples); give the members more data")
    P, item = members.numel, torch.finfo(members.dtype).bits // 8
    grads = 3 * n * P * item  # a member's per-example gradients, their vmap workspace and the centred copy
    row = 0
    if curvature:  # one Hessian-product row holds about four times one member's training step on the batch
        # (fit_many's estimate: parameters, gradient, activations forward and back; the product keeps act' and
        # act'' of the forward pass, the backward pass, and pushes tangents through both)
        step = memory_estimate(members.base, _one_example(members), n, [{"batch_size": None}], "sgd")
        row = 4 * step["per_member"]
    if grads + row > max_memory:
        fit = n * max_memory // (grads + row)  # both parts grow about linearly with the examples
        what = "per-example gradients and Hessian products" if curvature else "per-example gradients"
        raise ValueError(f"one member's {what} on {n} examples need {_mib(grads + row)}, more than max_memory="
                         f"{_mib(max_memory)}; about {max(fit, 0)} examples fit: use fewer examples or raise "
                         "max_memory (bytes)")
    alive = (~_undefined(members, skip)).nonzero().flatten()
    chunk = max(1, min(len(alive), max_memory // (grads + row)))  # members at once, then products per member
    per_call = max(1, (max_memory - chunk * grads) // (chunk * row)) if curvature else 0

    def example_loss(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return members.loss.per_example(functional_call(members.base, p, (x.unsqueeze(0),)), y.unsqueeze(0))[0]

    per_example = vmap(vmap(grad(example_loss), in_dims=(None, 0, 0)), in_dims=(0, members._dims, members._dims))
    names = ("b_simple", "trace_cov", "grad_sq_norm") + (("b_noise", "trace_h_cov", "grad_h_grad") if curvature
                                                         else ())
    cols = {k: torch.full((members.size,), math.nan, dtype=torch.float64) for k in names}
    for lo in threads.over(range(0, len(alive), chunk), threads.layer_flops(members.base, n, min(chunk, members.size))):
        rows = alive[lo:lo + chunk]
        idx = rows.to(members.device)
        p = {k: v.index_select(0, idx) for k, v in members.params.items()}
        x = members.x.index_select(0, idx) if members.per_member else members.x
        y = members.y.index_select(0, idx) if members.per_member else members.y
        with torch.no_grad():
            g = members.spec.flatten(per_example(p, x, y))  # (chunk, n, P)
        mean = g.mean(1)
        sq = mean.square().sum(1)
        cols["grad_sq_norm"][rows] = sq.double().cpu()
        cols["trace_cov"][rows] = (g.square().sum(2).mean(1) - sq).double().cpu()
        if curvature:
            vecs = torch.cat([g.sub_(mean.unsqueeze(1)), mean.unsqueeze(1)], 1)  # (chunk, n + 1, P)
            del g
            quad = _quadratic_forms(members, idx, vecs, per_call).double().cpu()
            cols["trace_h_cov"][rows] = quad[:, :n].mean(1)
            cols["grad_h_grad"][rows] = quad[:, n]
    cols["b_simple"] = _ratio(cols["trace_cov"], cols["grad_sq_norm"])
    if curvature:
        cols["b_noise"] = _ratio(cols["trace_h_cov"], cols["grad_h_grad"])
    return PopulationNoise(**cols, n=n)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den``, ``inf`` where ``den = 0`` (as :mod:`labkit.batchsize` has it), NaN stays NaN."""
    return torch.where(den != 0, num / den, torch.full_like(den, math.inf))


class NoiseScales(_PopulationTracker):
    """The noise scales of every member of a :func:`labkit.train.fit_many` population every ``every`` steps: one
    :func:`noise_scales` call per measurement for the whole population (not one tracker per member).

    At steps ``0, k, 2k, ...`` (before that step's update, on the full training set, or ``data``) it records per
    member ``b_simple``, ``trace_cov`` and ``grad_sq_norm``, with ``curvature=True`` also ``b_noise``,
    ``trace_h_cov`` and ``grad_h_grad``, into each member's ``History.tracked``; diverged members record NaN.
    ``results[j]`` is the :class:`PopulationNoise` at step ``steps[j]``. The values are the exact ones at each
    step; :class:`labkit.batchsize.NoiseScaleTracker` (one network) smooths the two parts with moving averages,
    which the tracked parts allow here too.
    """

    KEYS = ("b_simple", "trace_cov", "grad_sq_norm", "b_noise", "trace_h_cov", "grad_h_grad")
    SINGLE = "labkit.batchsize.NoiseScaleTracker"

    def __init__(self, make_model: Any, every: int = 10, *, curvature: bool = False, data: Any = None,
                 max_memory: int = MAX_MEMORY):
        super().__init__(make_model, every, data, max_memory)
        if not isinstance(curvature, bool):
            raise TypeError(f"curvature must be True or False, got {curvature!r}")
        self.curvature = curvature

    def _reset(self) -> None:
        super()._reset()
        self.results: list[PopulationNoise] = []

    def measure(self, members: Members, info: StepInfo, dead: torch.Tensor) -> dict[str, torch.Tensor]:
        res = noise_scales(members, curvature=self.curvature, max_memory=self.max_memory, skip=dead)
        self.results.append(res)
        return res._columns()


# ---------------------------------------------------------------- kernels

#: The kernels :func:`ntk` returns per member, as ``labkit.ntk.empirical``'s ``output``.
OUTPUTS = ("trace", "full")


def ntk(members: Members, x: torch.Tensor | None = None, *, output: str = "trace", max_memory: int = MAX_MEMORY,
        skip: torch.Tensor | None = None) -> torch.Tensor:
    """Every member's empirical NTK ``J_m(x) J_m(x)^T`` at once, as :func:`labkit.ntk.empirical` per member: the
    kernel a network trains by in the lazy regime, for a whole population in one vectorised computation.

    ``x``: inputs ``(n, ...)`` shared by all members (default: the members' own inputs, one batch per member when
    they have their own). ``output="trace"`` sums over the outputs, ``(M, n, n)``; ``"full"`` keeps them,
    ``(M, n, n, out, out)`` with ``[m, a, b, i, j] = J_m(x_a)_i . J_m(x_b)_j``. The Jacobians of all members are
    one ``vmap`` over members of ``jacrev`` (chunks of members that fit ``max_memory``), the kernels one batched
    matmul. ``max_memory`` bounds the result of all members plus one chunk's Jacobians; a request that does not fit
    is refused before any work. Diverged members (non-finite parameters or loss, or marked in ``skip (M,)``) are
    NaN, undefined, and cost nothing.
    """
    if not isinstance(members, Members):
        raise TypeError(f"members must be a labkit.population.probes.Members, got {type(members).__name__}")
    _checks.choice("output", output, OUTPUTS)
    _checks.positive("max_memory", max_memory, integer=True)
    xs = members.x if x is None else torch.as_tensor(x).to(members.device, members.dtype)
    dims = members._dims if x is None else None
    n = xs.shape[1] if dims == 0 else xs.shape[0]
    o = _out_dim(members, _one_example(members, xs[0] if dims == 0 else xs))
    full, item, M = output == "full", torch.finfo(members.dtype).bits // 8, members.size
    each = n * n * (o * o if full else 1) * item  # one member's kernel
    work = 2 * n * o * members.numel * item  # one member's Jacobian and its workspace
    if M * each + work > max_memory:
        shape = f"({M}, {n}, {n}, {o}, {o})" if full else f"({M}, {n}, {n})"
        how = "; use fewer inputs" + (f", output='trace' (a {o * o} times smaller result)" if full else "")
        fit = (max_memory - work) // each
        raise ValueError(f"the empirical NTK of {M} members needs about {_mib(M * each + work)} ({_mib(M * each)} for "
                         f"the {shape} result, {_mib(work)} for one member's Jacobian), more than max_memory="
                         f"{_mib(max_memory)}; about {max(fit, 0)} members fit{how}, or raise max_memory (bytes)")
    chunk = max(1, (max_memory - M * each) // work)

    def jac(p: dict, xb: torch.Tensor) -> torch.Tensor:
        J = torch.func.jacrev(lambda q: functional_call(members.base, q, (xb,)))(p)  # {name: (n, out, *shape)}
        return torch.cat([J[k].reshape(n, -1, J[k][0, 0].numel()) for k in members.spec.names], 2)  # (n, out, P)

    jacobians = vmap(jac, in_dims=(0, dims))
    out = torch.full((M, n, n, o, o) if full else (M, n, n), math.nan, dtype=members.dtype, device=members.device)
    alive = (~_undefined(members, skip)).nonzero().flatten().to(members.device)
    with torch.no_grad(), threads.for_work(threads.layer_flops(members.base, n, min(chunk, M))):
        for lo in range(0, len(alive), chunk):
            idx = alive[lo:lo + chunk]
            p = {k: v.index_select(0, idx) for k, v in members.params.items()}
            J = jacobians(p, xs.index_select(0, idx) if dims == 0 else xs)  # (c, n, out, P)
            c = len(idx)
            if full:  # (c, n out, P) @ (c, P, n out) -> (c, n, out, n, out) -> (c, n, n, out, out)
                Jf = J.reshape(c, n * o, -1)
                out[idx] = torch.bmm(Jf, Jf.transpose(1, 2)).view(c, n, o, n, o).permute(0, 1, 3, 2, 4)
            else:  # the sum over outputs folds into the contraction
                Jt = J.reshape(c, n, -1)
                out[idx] = torch.bmm(Jt, Jt.transpose(1, 2))
    return out


def _kernel_pair(K: Any, K0: Any) -> tuple[torch.Tensor, torch.Tensor]:
    for name, k in (("K", K), ("K0", K0)):
        if not isinstance(k, torch.Tensor) or k.ndim < 2:
            raise TypeError(f"{name} must be a tensor of per-member kernels (M, n, n, ...), got "
                            f"{getattr(k, 'shape', type(k).__name__)}")
    if K.shape != K0.shape:
        raise ValueError(f"K and K0 must have the same shape, got {tuple(K.shape)} and {tuple(K0.shape)}")
    return K.flatten(1), K0.flatten(1).to(K.dtype)


def kernel_change(K: torch.Tensor, K0: torch.Tensor) -> torch.Tensor:
    """Each member's relative kernel change ``|K_m - K0_m|_F / |K0_m|_F``, ``(M,)``, for kernels ``(M, ...)`` as
    :func:`ntk` returns them: how far training moved the kernel, scale included (small: lazy training;
    :mod:`labkit.population.regime`'s measure, per member :func:`labkit.ntk.relative_change`). NaN where
    ``K0_m = 0`` or either kernel is undefined."""
    a, b = _kernel_pair(K, K0)
    base = b.norm(dim=1)
    return torch.where(base > 0, (a - b).norm(dim=1) / base, torch.full_like(base, math.nan))


def kernel_distance(K: torch.Tensor, K0: torch.Tensor) -> torch.Tensor:
    """Each member's ``1 - <K_m, K0_m>_F / (|K_m|_F |K0_m|_F)``, ``(M,)``: 0 for kernels equal up to scale, so it
    measures how the kernel turned, not how it grew (Fort et al. 2020; per member :func:`labkit.ntk.kernel_distance`).
    NaN where either kernel is all zero or undefined."""
    a, b = _kernel_pair(K, K0)
    denom = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(denom > 0, 1 - (a * b).sum(1) / denom, torch.full_like(denom, math.nan))


class KernelChange(_PopulationTracker):
    """How far every member's empirical NTK has moved from its value at step 0, every ``every`` steps, for a
    :func:`labkit.train.fit_many` population: one :func:`ntk` call per measurement for all members.

    Records per member ``kernel_change`` (:func:`kernel_change`, the lazy / feature-learning measure of
    :mod:`labkit.population.regime`) and ``kernel_distance`` (:func:`kernel_distance`) into each member's
    ``History.tracked``, as :class:`labkit.ntk.KernelTracker` does for one network. The kernel is on ``x`` (default:
    the training inputs, or ``data``'s), ``output`` as :func:`ntk`'s; ``initial`` and ``final`` are the kernels of
    the first and the latest measurement. Members that have diverged record NaN.
    """

    KEYS = ("kernel_change", "kernel_distance")
    SINGLE = "labkit.ntk.KernelTracker"

    def __init__(self, make_model: Any, every: int = 10, *, x: torch.Tensor | None = None, output: str = "trace",
                 data: Any = None, max_memory: int = MAX_MEMORY):
        super().__init__(make_model, every, data, max_memory)
        self.output = _checks.choice("output", output, OUTPUTS)
        if x is not None and (not isinstance(x, torch.Tensor) or x.ndim < 2):
            raise ValueError(f"x must be a tensor of inputs (n, features...), got {getattr(x, 'shape', x)!r}")
        self.x = x

    def _reset(self) -> None:
        super()._reset()
        self.initial: torch.Tensor | None = None
        self.final: torch.Tensor | None = None

    def measure(self, members: Members, info: StepInfo, dead: torch.Tensor) -> dict[str, torch.Tensor]:
        K = ntk(members, self.x, output=self.output, max_memory=self.max_memory, skip=dead)
        if self.initial is None:
            self.initial = K
        self.final = K
        return {"kernel_change": kernel_change(K, self.initial), "kernel_distance": kernel_distance(K, self.initial)}
