"""Grokking on modular addition: memorise first, generalise much later, and a Fourier progress measure.

The task is ``(a + b) mod p`` on one-hot pairs (:func:`labkit.data.modular_addition`); the
model a one-hidden-layer MLP (:func:`labkit.models.mlp`) whose first layer ``W`` (width x 2p)
*is* the embedding: ``W[:, :p]`` embeds ``a`` and ``W[:, p:]`` embeds ``b``. Trained full
batch with AdamW and weight decay, it fits the training pairs within tens of steps and
reaches high test accuracy only hundreds to thousands of steps later (Nanda, Chan,
Lieberum, Smith, Steinhardt 2023, "Progress measures for grokking via mechanistic
interpretability", ICLR, arXiv:2301.05217; grokking itself: Power et al. 2022, outside
the seed).

Progress measures (after Nanda et al.): the network that generalises computes with
Fourier modes of ``Z_p`` (``cos(2 pi k a / p + phase)``), so the embedding's power moves onto
a few frequencies ``k``. :func:`fourier_power` splits each hidden unit's power over
``k = 1 .. p // 2`` (the constant ``k = 0`` left out). Two summaries, each with its value for
weights with no Fourier structure (isotropic Gaussian, as at initialisation):

- :func:`concentration`: the share of the whole embedding's power in its ``top_k``
  frequencies (Nanda et al.'s transformer: ~5 key frequencies); even spread gives
  ``top_k / (p // 2)`` (:func:`null_concentration`).
- :func:`neuron_sparsity`: the share of each unit's power at *its own* strongest
  frequency, averaged over units; random weights give :func:`null_sparsity` (~0.17 at
  ``p = 31``), pure Fourier units give 1. This is the one that moves in this MLP: its units
  become single-frequency, but together they use all frequencies, so the top-k share stays
  near its null value (measured; see the notebook ``07_grokking``).

The decision level of each is the :func:`midpoint` between its null value and 1.

:func:`run` trains many networks at once (one vectorised computation, like
:func:`labkit.train.fit_many`), each with its own training fraction, weight decay and
seed. ``fit_many`` shares one dataset between its members; here every member gets its own
split, so the whole table of ``p^2`` pairs goes through the network once per step and a
per-member mask says which pairs it trains on (the others are its test set)::

    res = run(p=31, train_frac=0.7, weight_decay=[1.0, 0.0], steps=2000)
    res.t_mem(0), res.t_grok(0), res.t_grok(1)   # 34, 1229, None: the control (no weight decay) never groks
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.func import stack_module_state

from labkit import _checks, _deprecated, threads
from labkit.data import Dataset, modular_addition
from labkit.history import Callback, StepInfo, as_callbacks
from labkit.losses import resolve
from labkit.models import mlp
from labkit.optim import Functional
from labkit.population.loop import Run

__all__ = ["GROK_ACC", "MEM_ACC", "GrokRun", "concentration", "forward", "fourier_power", "fourier_spectrum",
           "live_plot", "make_model", "midpoint", "neuron_sparsity", "null_concentration", "null_sparsity",
           "record_grid", "run", "split_masks", "table"]

#: Train accuracy that marks memorisation (t_mem) and test accuracy that marks grokking (t_grok).
MEM_ACC, GROK_ACC = 0.99, 0.95

SPLITS = ("pairs", "random")


# ---------------------------------------------------------------- the task


def table(p: int) -> Dataset:
    """All ``p^2`` pairs of :func:`labkit.data.modular_addition` (2p one-hot features), row ``a p + b``."""
    _checks.in_range("p", p, 3, 1000)
    first, rest = modular_addition(p, 0.5, seed=0)
    x = torch.cat([first.inputs, rest.inputs])
    y = torch.cat([first.targets, rest.targets])
    a, b = x[:, :p].argmax(1), x[:, p:].argmax(1)
    order = torch.argsort(a * p + b)
    return Dataset(x[order], y[order], "classification", p, f"modular_addition(p={p}) table")


@_deprecated.keyword_only("seed", "split")
def split_masks(p: int, train_frac: Sequence[float], *, seed: int | Sequence[int] = 0,
                split: str = "pairs") -> torch.Tensor:
    """Boolean training masks ``(members, p^2)`` over :func:`table`'s rows.

    ``split="pairs"`` keeps ``(a, b)`` and ``(b, a)`` on the same side, so a network that
    is symmetric in its inputs cannot score on the test set by memorising the swapped
    pair; ``"random"`` splits ordered pairs (as :func:`labkit.data.modular_addition`). For
    one seed a larger fraction's training set contains a smaller one's.
    """
    _checks.choice("split", split, SPLITS)
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    key = torch.minimum(a, b) * p + torch.maximum(a, b) if split == "pairs" else a * p + b
    keys, inverse = torch.unique(key, return_inverse=True)
    seeds = [seed] * len(train_frac) if isinstance(seed, numbers.Integral) else list(seed)
    if len(seeds) != len(train_frac):
        raise ValueError(f"seed must be one int or one per train_frac ({len(train_frac)}), got {len(seeds)}")
    masks = []
    for f, s in zip(train_frac, seeds):
        _checks.fraction("train_frac", f)
        _checks.seed("seed", s)
        rank = torch.empty(len(keys), dtype=torch.long)
        rank[torch.randperm(len(keys), generator=torch.Generator().manual_seed(int(s)))] = torch.arange(len(keys))
        n_train = min(max(round(f * len(keys)), 1), len(keys) - 1)
        masks.append(rank[inverse] < n_train)
    return torch.stack(masks)


@_deprecated.keyword_only("seed")
def make_model(p: int, width: int = 128, *, seed: int = 0) -> torch.nn.Sequential:
    """The one-hidden-layer ReLU MLP ``2p -> width -> p``; layer ``0`` is the embedding."""
    _checks.positive("p", p, integer=True)
    return mlp(2 * p, [width], p, activation="relu", seed=seed)


def forward(params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    """Logits ``(members, n, p)`` of stacked :func:`make_model` networks (``{name: (members, ...)}``).

    The same function as ``vmap(lambda q: functional_call(make_model(p), q, (inputs,)))(params)``
    (tested), written as two batched products: about 2x faster on a CPU than the vmapped call.
    """
    w1, b1, w2, b2 = params["0.weight"], params["0.bias"], params["2.weight"], params["2.bias"]
    hidden = torch.relu(torch.baddbmm(b1[:, None, :], inputs.expand(len(w1), -1, -1), w1.transpose(1, 2)))
    return torch.baddbmm(b2[:, None, :], hidden, w2.transpose(1, 2))


# ---------------------------------------------------------------- Fourier progress measures


def fourier_power(weight: torch.Tensor, p: int) -> torch.Tensor:
    """Each hidden unit's power at the frequencies ``k = 1 .. p // 2`` of ``Z_p``: ``(..., width, p // 2)``.

    ``weight`` is a first-layer weight ``(..., width, 2p)`` (or an embedding ``(..., width, p)``);
    each half is Fourier transformed along the token axis and ``|F_k|^2`` summed over the
    halves; ``k`` and ``p - k`` count together and the constant ``k = 0`` is left out.
    """
    if weight.ndim < 2 or weight.shape[-1] not in (p, 2 * p):
        raise ValueError(f"weight must be (..., width, p) or (..., width, 2p) with p={p}, got {tuple(weight.shape)}")
    halves = weight.reshape(*weight.shape[:-1], -1, p).double()  # (..., width, halves, p)
    return torch.fft.rfft(halves, dim=-1).abs().square().sum(-2)[..., 1:]


def fourier_spectrum(weight: torch.Tensor, p: int) -> torch.Tensor:
    """Fraction of the whole embedding's power at each frequency ``k = 1 .. p // 2``: ``(..., p // 2)``."""
    power = fourier_power(weight, p).sum(-2)
    return power / power.sum(-1, keepdim=True).clamp_min(1e-300)


def concentration(spectrum: torch.Tensor, top_k: int = 5) -> torch.Tensor:
    """Fraction of the (non-constant) power in the ``top_k`` strongest frequencies of a spectrum."""
    _checks.in_range("top_k", top_k, 1, spectrum.shape[-1])
    return spectrum.topk(top_k, dim=-1).values.sum(-1)


def neuron_sparsity(weight: torch.Tensor, p: int) -> torch.Tensor:
    """Power-weighted mean over hidden units of the fraction of a unit's power at its strongest frequency.

    1 when every unit is a pure Fourier mode ``cos(2 pi k a / p + phase)`` (each unit may use
    its own ``k``); well below 1 for weights with no Fourier structure (:func:`null_sparsity`).
    """
    power = fourier_power(weight, p)  # (..., width, p // 2)
    total = power.sum(-1)
    top = power.max(-1).values
    return top.sum(-1) / total.sum(-1).clamp_min(1e-300)


def null_concentration(p: int, top_k: int = 5) -> float:
    """:func:`concentration` of weights with no Fourier structure: power spread evenly, ``top_k / (p // 2)``."""
    _checks.in_range("p", p, 2, 10**6)
    _checks.in_range("top_k", top_k, 1, p // 2)
    return top_k / (p // 2)


@_deprecated.keyword_only("seed")
def null_sparsity(p: int, samples: int = 4096, *, seed: int = 0) -> float:
    """:func:`neuron_sparsity` of isotropic Gaussian weights (no Fourier structure), by seeded Monte Carlo."""
    _checks.in_range("p", p, 2, 10**6)
    _checks.positive("samples", samples, integer=True)
    g = torch.Generator().manual_seed(seed)
    return float(neuron_sparsity(torch.randn(samples, 2 * p, generator=g, dtype=torch.float64), p))


def midpoint(null: float) -> float:
    """The decision level halfway between no Fourier structure (``null``) and all of it (1)."""
    return 0.5 * (null + 1.0)


# ---------------------------------------------------------------- training


SPARSITY, TOP_K = "Fourier: per-unit", "Fourier: top-k of total"


@dataclass
class GrokRun:
    """Curves of a :func:`run`: one row per member.

    ``train_acc``, ``test_acc``, ``train_loss``, ``test_loss`` and ``weight_norm`` are
    ``(members, len(steps))`` with a column for every step (measured before that step's
    update; the last column after the final update). ``record_steps`` is the log-spaced
    grid where the Fourier measures were taken: ``spectrum`` ``(members, records, p // 2)``
    (:func:`fourier_spectrum`), ``concentration`` (its top-``top_k`` share,
    :func:`concentration`) and ``sparsity`` (:func:`neuron_sparsity`), both
    ``(members, records)``. ``params`` are the final stacked parameters.
    """

    p: int
    top_k: int
    hparams: list[dict[str, Any]]
    steps: np.ndarray
    train_acc: np.ndarray
    test_acc: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    weight_norm: np.ndarray
    record_steps: np.ndarray
    spectrum: np.ndarray
    concentration: np.ndarray
    sparsity: np.ndarray
    wall_time: float = 0.0
    stopped_early: bool = False
    params: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def sparsity_level(self) -> float:
        """Decision level for :attr:`sparsity`: midway between random weights (:func:`null_sparsity`) and 1."""
        return midpoint(null_sparsity(self.p))

    @property
    def concentration_level(self) -> float:
        """Decision level for :attr:`concentration`: midway between an even spread and 1."""
        return midpoint(null_concentration(self.p, self.top_k))

    @staticmethod
    def _first(curve: np.ndarray, level: float, steps: np.ndarray) -> int | None:
        hit = np.flatnonzero(curve >= level)
        return int(steps[hit[0]]) if hit.size else None

    def t_mem(self, member: int = 0, level: float = MEM_ACC) -> int | None:
        """First step with train accuracy >= ``level`` (None if never)."""
        return self._first(self.train_acc[member], level, self.steps)

    def t_grok(self, member: int = 0, level: float = GROK_ACC) -> int | None:
        """First step with test accuracy >= ``level`` (None if never)."""
        return self._first(self.test_acc[member], level, self.steps)

    def t_fourier(self, member: int = 0, level: float | None = None, measure: str = "sparsity") -> int | None:
        """First recorded step where ``measure`` (``"sparsity"`` or ``"concentration"``) reaches ``level``.

        ``level`` defaults to the measure's midpoint (:attr:`sparsity_level`, :attr:`concentration_level`).
        """
        _checks.choice("measure", measure, ["sparsity", "concentration"])
        if level is None:
            level = self.sparsity_level if measure == "sparsity" else self.concentration_level
        return self._first(getattr(self, measure)[member], level, self.record_steps)

    def norm_path(self, member: int = 0) -> dict[str, Any]:
        """The weight norm's path after memorisation: is it monotone, and does it keep growing?

        ``peak`` (and ``t_peak``): the largest norm before ``10 t_mem`` (memorisation's bump); ``low``/``t_low``:
        the smallest norm after the peak; ``at_mem``, ``at_grok`` (None if no grokking), ``end``. Verdicts:
        ``falls``: the low is > 10% below the peak (weight decay pulling the memorising weights in);
        ``grows_after_mem``: the final norm is > 25% above the norm at ``t_mem`` (nothing holds it: cross-entropy
        keeps scaling up a fitted network's logits, as for separable data).
        """
        w, steps = self.weight_norm[member], np.asarray(self.steps)
        t_mem, t_grok = self.t_mem(member), self.t_grok(member)
        if t_mem is None:
            raise ValueError(f"member {member} never memorised (train accuracy < {MEM_ACC}): no path after it")
        early = steps <= 10 * t_mem
        i_peak = int(np.argmax(np.where(early, w, -np.inf)))
        i_low = i_peak + int(np.argmin(w[i_peak:]))
        at = lambda t: float(w[np.searchsorted(steps, t)])  # noqa: E731
        out = {"peak": float(w[i_peak]), "t_peak": int(steps[i_peak]), "low": float(w[i_low]),
               "t_low": int(steps[i_low]), "at_mem": at(t_mem), "at_grok": None if t_grok is None else at(t_grok),
               "end": float(w[-1])}
        out["falls"] = out["low"] < 0.9 * out["peak"]
        out["grows_after_mem"] = out["end"] > 1.25 * out["at_mem"]
        return out

    def labels(self) -> list[str]:
        """One short label per member."""
        return [f"frac {h['train_frac']:.2f}, wd {h['weight_decay']:g}" + (f", seed {h['seed']}" if h["seed"] else "")
                for h in self.hparams]

    def figure(self, labels: Sequence[str] | None = None) -> Any:
        """Accuracy, loss, weight norm and the Fourier measures against the step (log axis)."""
        from plotly.subplots import make_subplots

        from labkit.viz import theme

        labels = list(labels) if labels is not None else self.labels()
        fig = make_subplots(rows=1, cols=4, subplot_titles=["accuracy (dotted: test)", "loss (dotted: test)",
                                                            "weight norm", "Fourier (dotted: top-k of total)"])
        theme.apply(fig)
        x = self.steps + 1
        for i, name in enumerate(labels):
            c = theme.COLORS[i % len(theme.COLORS)]
            # train solid, test dotted: the same styles as the live figure (live_plot)
            series = [(x, self.train_acc[i], "solid", 1), (x, self.test_acc[i], "dot", 1),
                      (x, self.train_loss[i], "solid", 2), (x, self.test_loss[i], "dot", 2),
                      (x, self.weight_norm[i], "solid", 3), (self.record_steps + 1, self.sparsity[i], "solid", 4),
                      (self.record_steps + 1, self.concentration[i], "dot", 4)]
            for j, (xs, ys, dash, col) in enumerate(series):
                fig.add_scatter(x=xs, y=ys, mode="lines", line=dict(color=c, dash=dash), name=name,
                                legendgroup=name, showlegend=j == 0, row=1, col=col)
        fig.add_hline(y=self.sparsity_level, line=dict(dash="dash", color=theme.REFERENCE), row=1, col=4)
        fig.update_xaxes(type="log", title_text="step + 1")
        fig.update_yaxes(type="log", row=1, col=2)
        fig.update_layout(height=380)
        return theme.decade_ticks(fig)  # four narrow log-x panels: one label per decade

    def spectrum_figure(self, record: int = -1, labels: Sequence[str] | None = None) -> Any:
        """Each member's embedding spectrum at one recorded step: fraction of power at each ``k``."""
        from labkit.viz import theme

        labels = list(labels) if labels is not None else self.labels()
        step = int(self.record_steps[record])
        fig = theme.figure(f"Fourier power of the embedding at step {step}", "frequency k", "fraction of power",
                           height=320)
        k = np.arange(1, self.spectrum.shape[-1] + 1)
        for i, name in enumerate(labels):
            fig.add_bar(x=[str(v) for v in k], y=self.spectrum[i, record], name=name)
        fig.update_xaxes(type="category")  # k is a whole number: one bar group per frequency, every k labelled
        return fig


def _members(**columns: Any) -> list[dict[str, Any]]:
    lengths = {k: len(v) for k, v in columns.items() if isinstance(v, (list, tuple, np.ndarray))}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"train_frac, weight_decay and seed sequences must have equal lengths, got {lengths}")
    n = next(iter(lengths.values()), 1)
    if n < 1:
        raise ValueError("empty sequences: nothing to train")
    return [{k: (v[i] if k in lengths else v) for k, v in columns.items()} for i in range(n)]


def record_grid(steps: int, records: int) -> np.ndarray:
    """About ``records`` log-spaced steps in ``[0, steps]`` (0 and ``steps`` included)."""
    return np.unique(np.concatenate([[0], np.geomspace(1, steps, records).round().astype(int), [steps]]))


@threads.hot  # its set-up (checks, dry runs) too: a busy neighbour holds a core
def run(
    p: int = 31,
    train_frac: float | Sequence[float] = 0.7,
    weight_decay: float | Sequence[float] = 1.0,
    *,
    seed: int | Sequence[int] = 0,
    split_seed: int = 0,
    split: str = "pairs",
    lr: float = 2e-2,
    width: int = 128,
    steps: int = 2000,
    records: int = 60,
    top_k: int | None = None,
    live: Any = None,
    callbacks: Iterable[Callback | Callable] = (),
    device: torch.device | str | None = None,
    progress: bool = True,
) -> GrokRun:
    """Train one network per member on modular addition, full batch, AdamW; return the curves.

    ``train_frac``, ``weight_decay`` and ``seed`` (initialisation) are scalars or
    per-member sequences (zipped, as in ``fit_many``); member ``i`` trains on
    ``split_masks(p, [train_frac_i], seed=[split_seed], split=split)`` and is tested on the other
    pairs. At ~``records`` log-spaced steps the measures go to ``live`` (a
    :class:`labkit.viz.LivePlot`, e.g. :func:`live_plot`) and to ``callbacks`` (labkit
    callbacks or functions of :class:`~labkit.train.StepInfo`; ``info.metrics`` holds one
    value per member; returning True stops the run after that step's update, which is then measured as the
    last step). ``top_k`` (default ``min(5, p // 2)``) sets :attr:`GrokRun.concentration`. A non-finite loss
    is recorded, not raised. The loop is the population loop of :func:`labkit.train.fit_many`
    (:class:`labkit.population.Run`: progress bar, Ctrl-C, the all-diverged stop).
    """
    members = _members(train_frac=train_frac, weight_decay=weight_decay, seed=seed)
    _checks.in_range("p", p, 3, 1000)
    _checks.positive("lr", lr)
    _checks.positive("width", width, integer=True)
    _checks.positive("steps", steps, integer=True)
    _checks.in_range("records", records, 2, 10**6)
    top_k = min(5, p // 2) if top_k is None else _checks.in_range("top_k", top_k, 1, p // 2)
    for m in members:
        _checks.positive("weight_decay", m["weight_decay"], allow_zero=True)
        _checks.fraction("train_frac", m["train_frac"])
        _checks.seed("seed", m["seed"])
    _checks.seed("split_seed", split_seed)
    cbs = as_callbacks(callbacks)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    data = table(p).to(dev)
    x, y = data.inputs, data.targets
    train = split_masks(p, [m["train_frac"] for m in members], seed=[split_seed] * len(members), split=split).to(dev)
    train_w = train.float() / train.sum(1, keepdim=True)  # (M, p^2): mean over each member's training pairs
    test_w = (~train).float() / (~train).sum(1, keepdim=True)
    params, _ = stack_module_state([make_model(p, width, seed=m["seed"]).to(dev) for m in members])
    params = {k: v.detach() for k, v in params.items()}
    M = len(members)
    lr_t = torch.full((M,), float(lr), device=dev)
    wd_t = torch.tensor([float(m["weight_decay"]) for m in members], device=dev)
    opt = Functional("adamw", params)
    grid = record_grid(steps, records)
    is_record = np.zeros(steps + 1, dtype=bool)
    is_record[grid] = True
    curves = torch.full((steps + 1, 5, M), math.nan, device=dev)
    spectra, sparsity, recorded = [], [], []
    loss_fn = resolve("cross_entropy")
    names = ("train accuracy", "test accuracy", "train loss", "test loss", "weight norm")
    # The shared population loop (labkit.population.loop.Run): progress bar, Ctrl-C, the all-diverged stop, and
    # the final measurement after the last update. A callback's stop takes effect after that step's update, as in
    # fit and fit_many (steps count updates applied).
    pop = Run([{**m, "lr": lr} for m in members], data, None, steps)
    if live is not None:
        live.clear()

    def measure(t: int, logits: torch.Tensor, ce: torch.Tensor, train_loss: torch.Tensor, final: bool) -> bool:
        """Step ``t``'s curves (every step) and, at record steps and at the end, the Fourier measures."""
        with torch.no_grad():
            right = (logits.argmax(-1) == y).float()
            norm = sum(v.square().flatten(1).sum(1) for v in params.values()).sqrt()
            curves[t] = torch.stack([(right * train_w).sum(1),
                                     (right * test_w).sum(1), train_loss, (ce * test_w).sum(1), norm])
        if not (is_record[t] or final):
            return False
        w1 = params["0.weight"]
        spectra.append(fourier_spectrum(w1, p))
        sparsity.append(neuron_sparsity(w1, p))
        recorded.append(t)
        pop.evaluated(t, {"loss": curves[t, 3], "accuracy": curves[t, 1]})  # the test set's, per member
        metrics = dict(zip(names, curves[t].cpu().double().numpy()))
        metrics[SPARSITY] = sparsity[-1].cpu().numpy()
        metrics[TOP_K] = concentration(spectra[-1], top_k).cpu().numpy()
        if live is not None:
            live.append(t + 1, **metrics)
        info = StepInfo(t, curves[t, 2], lr_t, metrics, None, params, loss_fn, data, None, "adamw", None, opt)
        return any([bool(cb.on_step(info)) for cb in cbs])

    def losses(prm: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = forward(prm, x)  # (M, p^2, p): every pair, training and test alike
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y.expand(M, -1), reduction="none")
        return logits, ce, (ce * train_w).sum(1)  # train loss (M,)

    def step(t: int) -> bool:
        nonlocal params
        prm = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        logits, ce, train_loss = losses(prm)
        pop.record(t, train_loss.detach())
        stop = measure(t, logits, ce, train_loss.detach(), False)
        grads = torch.autograd.grad(train_loss.sum(), list(prm.values()))  # members independent: sum = each
        params = opt.step(params, dict(zip(prm, grads)), lr_t, wd_t)
        return stop

    def final(t: int) -> None:  # after the last update applied: measured, recorded, shown
        nonlocal taken
        taken = t
        with torch.no_grad():
            measure(t, *losses(params), True)

    taken = steps
    start = time.perf_counter()
    with threads.for_work(2.0 * max(v.numel() for v in params.values()) * p * p):  # a layer over every pair
        pop.drive(step, f"grokking ({M} models)", progress, "adamw", lambda t: 1.0, final, cbs)
    wall = time.perf_counter() - start
    if live is not None:
        live.flush()

    c = curves[: taken + 1].cpu().double().numpy()
    rec = np.array(recorded)
    spec = torch.stack(spectra, 1)  # (M, records, p // 2)
    res = GrokRun(
        p=p, top_k=top_k,
        hparams=[{**m, "lr": lr, "width": width, "split": split, "split_seed": split_seed,
                  "n_train": int(train[i].sum())} for i, m in enumerate(members)],
        steps=np.arange(taken + 1), train_acc=c[:, 0].T, test_acc=c[:, 1].T, train_loss=c[:, 2].T,
        test_loss=c[:, 3].T, weight_norm=c[:, 4].T, record_steps=rec, spectrum=spec.cpu().numpy(),
        concentration=concentration(spec, top_k).cpu().numpy(),
        sparsity=torch.stack(sparsity, 1).cpu().numpy(), wall_time=wall, stopped_early=taken < steps,
        params={k: v.cpu() for k, v in params.items()},
    )
    return res


def live_plot(p: int, member_labels: Sequence[str] | None = None, **kwargs: Any) -> Any:
    """A :class:`labkit.viz.LivePlot` laid out for :func:`run`: accuracy, loss, weight norm, Fourier measures.

    Steps are drawn on a log axis (``step + 1``); the Fourier panel has the per-unit
    sparsity's decision level (:attr:`GrokRun.sparsity_level`) as a dashed line. Line styles match
    :meth:`GrokRun.figure`: train solid, test dotted (LivePlot dots the series :func:`run` reports second).
    """
    from labkit.viz import LivePlot

    _checks.in_range("p", p, 2, 10**6)
    kwargs.setdefault("title", "solid: train, dotted: test (Fourier: solid per-unit sparsity, dotted top-k share)")
    kwargs.setdefault("height", 400)  # per row of panels: room between row 1's axis titles and row 2's panel title
    live = LivePlot({"accuracy": ["train accuracy", "test accuracy"], "loss": ["train loss", "test loss"],
                     "weight norm": ["weight norm"], "Fourier": [SPARSITY, TOP_K]}, x_title="step + 1", log_x=True,
                    member_labels=member_labels, log_y={"loss"}, **kwargs)
    live.reference("Fourier", midpoint(null_sparsity(p)), "per-unit midpoint")
    return live
