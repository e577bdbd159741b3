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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from labkit import _checks
from labkit.data import as_dataset
from labkit.history import Callback, History, StepInfo
from labkit.linalg.lockstep import lockstep_eigenvalues
from labkit.losses import LOSSES, Loss
from labkit.machine import MAX_MEMORY
from labkit.models import ParamSpec
from labkit.population.batched import chunk_members, dense_layers
from labkit.risk import resolve_loss

__all__ = ["ENGINES", "OPERATORS", "Members", "PopulationEigs", "Sharpness", "noise_scales", "ntk", "top_eigenvalues"]

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
    try:
        res = lockstep_eigenvalues(lambda V, active: members.product(V, active, operator, scale), members.numel,
                                   members.size, k=k, tol=tol, max_matvecs=max_matvecs, seed=seed,
                                   dtype=members.dtype, device=members.device, vectors=vectors,
                                   max_memory=max_memory, skip=skip)
    finally:
        members._graph = None  # the kept gradient graph holds every member's activations: free it
    return PopulationEigs(res.values, res.residuals, res.converged, res.n_matvec, operator, tol, scale is not None,
                          res.message, res.vectors)


class Sharpness(Callback):
    """The top Hessian eigenvalue of every member of a :func:`labkit.train.fit_many` population every ``every``
    steps: one lockstep Lanczos per measurement for the whole population (not one tracker per member).

    ``make_model`` is the ``fit_many`` argument (its architecture is all that is used). At steps ``0, k, 2k, ...``
    (before that step's update, on the full training set, or ``data``) it records per member ``sharpness``
    (lambda_max) and ``lr_sharpness`` (lr x lambda_max; gradient descent's edge of stability is 2) into each
    member's ``History.tracked``; members that have diverged record NaN. ``results[j]`` is the
    :class:`PopulationEigs` of measurement ``j`` at step ``steps[j]``.
    """

    def __init__(self, make_model: Any, every: int = 10, *, k: int = 1, operator: str = "hessian",
                 data: Any = None, tol: float = 1e-6, seed: int = 0, max_memory: int = MAX_MEMORY):
        if not callable(make_model):
            raise TypeError(f"make_model must be fit_many's make_model(seed) -> nn.Module, got {make_model!r}")
        self.every = _checks.positive("every", every, integer=True)
        self.make_model, self.k, self.data, self.tol, self.seed = make_model, k, data, tol, seed
        self.operator = _checks.choice("operator", operator, OPERATORS)
        self.max_memory = max_memory
        self.steps: list[int] = []
        self.lrs: list[torch.Tensor] = []
        self.results: list[PopulationEigs] = []
        self._base: nn.Module | None = None

    def on_start(self, info: StepInfo) -> None:
        if info.params is None:
            raise TypeError("Sharpness measures a fit_many population; for one network use labkit.edge.EdgeOfStability")
        with torch.random.fork_rng(devices=[]):
            self._base = self.make_model(0)

    def on_step(self, info: StepInfo) -> bool | None:
        if info.step % self.every:
            return None
        members = Members(self._base, info.params, info.loss_fn, info.data if self.data is None else self.data)
        alive = torch.isfinite(torch.as_tensor(info.loss)).cpu()
        res = top_eigenvalues(members, self.k, operator=self.operator, tol=self.tol, seed=self.seed,
                              max_memory=self.max_memory, skip=~alive)
        self.steps.append(info.step)
        self.lrs.append(torch.as_tensor(info.lr, dtype=torch.float64).cpu().reshape(-1))
        self.results.append(res)
        return None

    def series(self, member: int) -> list[float]:
        """Member ``member``'s sharpness at :attr:`steps`."""
        return [float(r.top[member]) for r in self.results]

    def on_end(self, history: History | list[History]) -> None:
        if not isinstance(history, list):
            return
        for i, h in enumerate(history):
            for step, lr, res in zip(self.steps, self.lrs, self.results):
                if step < h.steps or (step == h.steps and not h.diverged):
                    lam = float(res.top[i])
                    h.track(step, {"sharpness": lam, "lr_sharpness": float(lr[i]) * lam})


def noise_scales(members: Members, *, max_memory: int = MAX_MEMORY) -> dict[str, torch.Tensor]:
    """Every member's simple noise scale ``B_simple = tr(Sigma) / |G|^2`` (McCandlish et al. 2018), exactly.

    As :func:`labkit.batchsize.noise_scale` (``method="per_example"``) per member: ``|G|^2`` from the mean gradient
    and ``tr(Sigma) = mean_i |g_i|^2 - |G|^2`` from per-example gradients, all members' per-example gradients one
    ``vmap`` over members of a ``vmap`` over examples, in chunks of members that fit ``max_memory``. Returns
    ``{"b_simple", "trace_cov", "grad_sq_norm"}``, each ``(M,)`` (``inf`` where ``|G| = 0``; NaN for a diverged
    member).
    """
    if not isinstance(members, Members):
        raise TypeError(f"members must be a labkit.population.probes.Members, got {type(members).__name__}")
    _checks.positive("max_memory", max_memory, integer=True)
    n = members.y.shape[1] if members.per_member else members.y.shape[0]
    per = 3 * n * members.numel * torch.finfo(members.dtype).bits // 8
    if per > max_memory:
        raise ValueError(f"one member's per-example gradients need {per / 2**20:.3g} MiB, more than max_memory="
                         f"{max_memory / 2**20:.3g} MiB; use fewer examples or raise max_memory (bytes)")
    chunk = max(1, max_memory // per)

    def example_loss(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self_loss.per_example(functional_call(members.base, p, (x.unsqueeze(0),)), y.unsqueeze(0))[0]

    self_loss = members.loss
    per_member = vmap(vmap(grad(example_loss), in_dims=(None, 0, 0)), in_dims=(0, members._dims, members._dims))
    tr, g2 = [], []
    with torch.no_grad():
        for lo in range(0, members.size, chunk):
            idx = torch.arange(lo, min(members.size, lo + chunk), device=members.device)
            p = {k: v.index_select(0, idx) for k, v in members.params.items()}
            x = members.x.index_select(0, idx) if members.per_member else members.x
            y = members.y.index_select(0, idx) if members.per_member else members.y
            g = members.spec.flatten(per_member(p, x, y))  # (chunk, N, P)
            mean = g.mean(1)
            sq = mean.square().sum(1)
            g2.append(sq)
            tr.append(g.square().sum(2).mean(1) - sq)
    trace_cov, grad_sq = torch.cat(tr).double().cpu(), torch.cat(g2).double().cpu()
    b = torch.where(grad_sq != 0, trace_cov / grad_sq, torch.full_like(grad_sq, float("inf")))
    return {"b_simple": b, "trace_cov": trace_cov, "grad_sq_norm": grad_sq}


def ntk(members: Members, x: torch.Tensor | None = None, *, max_memory: int = MAX_MEMORY) -> torch.Tensor:
    """Every member's empirical NTK, traced over outputs: ``(M, n, n)`` with ``K_m = sum_o J_m,o J_m,o^T`` on ``x``
    (default: the members' own inputs), as :func:`labkit.ntk.empirical` (``output="trace"``) per member.

    The Jacobians of all members are one ``vmap`` over members of ``jacrev`` (chunks of members that fit
    ``max_memory``), the kernels one batched contraction.
    """
    if not isinstance(members, Members):
        raise TypeError(f"members must be a labkit.population.probes.Members, got {type(members).__name__}")
    _checks.positive("max_memory", max_memory, integer=True)
    xs = members.x if x is None else torch.as_tensor(x).to(members.device, members.dtype)
    dims = members._dims if x is None else None
    n = xs.shape[1] if dims == 0 else xs.shape[0]
    with torch.no_grad():
        out_dim = functional_call(members.base.to("meta"), {k: v[0].to("meta") for k, v in members.params.items()},
                                  (xs[0] if dims == 0 else xs[:1]).to("meta")).reshape(1, -1).shape[1]
    per = 2 * n * out_dim * members.numel * torch.finfo(members.dtype).bits // 8 + 8 * n * n
    if per > max_memory:
        raise ValueError(f"one member's Jacobian needs {per / 2**20:.3g} MiB, more than max_memory="
                         f"{max_memory / 2**20:.3g} MiB; use fewer inputs or raise max_memory (bytes)")
    chunk = max(1, max_memory // per)

    def jac(p: dict, xb: torch.Tensor) -> torch.Tensor:
        J = torch.func.jacrev(lambda q: functional_call(members.base, q, (xb,)))(p)  # {name: (n, out, *shape)}
        return torch.cat([J[k].reshape(n, -1, J[k][0, 0].numel()) for k in members.spec.names], 2)  # (n, out, P)

    jacobians = vmap(jac, in_dims=(0, dims))
    parts = []
    with torch.no_grad():
        for lo in range(0, members.size, chunk):
            idx = torch.arange(lo, min(members.size, lo + chunk), device=members.device)
            p = {k: v.index_select(0, idx) for k, v in members.params.items()}
            J = jacobians(p, xs.index_select(0, idx) if dims == 0 else xs)  # (c, n, out, P)
            parts.append(torch.einsum("cnop,cmop->cnm", J, J))
    return torch.cat(parts)
