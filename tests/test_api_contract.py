"""The API contract (docs/architecture.md, "The API contract"), checked on every public name.

Walks every labkit module's ``__all__`` (deprecated alias modules excepted) and every public function, class
constructor and method defined there, and checks each row of the contract table. A failure names the function
and the rule it breaks; a new module passes by following the table.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings

import pytest

import labkit
from labkit.machine import MAX_MEMORY

# one name per concept: the old spellings and the contract's name for them
RENAMED = {"k_steps": "lanczos_steps", "chunk": "chunk_size", "tile": "tile_size", "max_matvec": "max_matvecs",
           "n_matvecs": "n_matvec", "num_probes": "n_probes", "chunksize": "chunk_size", "n_steps": "steps"}
# a model builder's seed may also be None (torch's global generator, as torch.nn layers draw)
MODEL_BUILDERS = {"labkit.models.mlp", "labkit.models.cnn", "labkit.models.resmlp", "labkit.models.mup_mlp"}
# module names shared on purpose: each package's command line, operator classes and probes (always reached
# through their package: hessian.probes, population.probes); exercises and lessons are named after their theme
SHARED_NAMES = {"cli", "operators", "probes"}
MIRRORS = ("labkit.exercises.", "labkit.lessons.")
# functions whose refusal can name max_memory, so they accept it
MAX_MEMORY_REQUIRED = ["labkit.hessian:trace", "labkit.hessian:spectral_density", "labkit.linalg:trace",
                       "labkit.linalg:spectral_density", "labkit.ntk:empirical", "labkit.train:fit_many",
                       "labkit.fractal:scan", "labkit.batchsize:steps_to_target", "labkit.mup:lr_sweep",
                       "labkit.signal:trainability", "labkit.scaling:mlp_sweep", "labkit.ntk:KernelTracker",
                       "labkit.curvature:trace_product"]
# sweeps that can hand work to an executor
EXECUTOR_REQUIRED = ["labkit.train:fit_many", "labkit.fractal:scan", "labkit.fractal:zoom_sequence",
                     "labkit.scaling:mlp_sweep", "labkit.batchsize:steps_to_target", "labkit.signal:trainability",
                     "labkit.mup:lr_sweep"]


def _modules():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for info in pkgutil.walk_packages(labkit.__path__, "labkit."):
            if any(part.startswith("_") for part in info.name.split(".")[1:]):
                continue
            mod = importlib.import_module(info.name)
            if getattr(mod, "__deprecated__", None) is None:
                yield mod


MODULES = list(_modules())


def _callables():
    """(qualified name, function) for every public function, constructor and method defined in labkit."""
    seen = set()
    for mod in MODULES:
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name, None)
            if obj is None or getattr(obj, "__module__", None) != mod.__name__ or id(obj) in seen:
                continue
            seen.add(id(obj))
            if inspect.isfunction(obj):
                yield f"{mod.__name__}.{name}", obj
            elif inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if isinstance(member, (classmethod, staticmethod)):
                        member = member.__func__
                    if inspect.isfunction(member) and (attr == "__init__" or not attr.startswith("_")):
                        yield f"{mod.__name__}.{name}.{attr}", member


CALLABLES = list(_callables())


def _params(fn):
    return inspect.signature(fn).parameters


def _broken(rule):
    return [f"{name}: {msg}" for name, fn in CALLABLES for msg in rule(name, _params(fn))]


def test_the_walk_sees_the_api():
    names = {n for n, _ in CALLABLES}
    assert len(names) > 200
    assert {"labkit.train.fit", "labkit.linalg.stochastic.trace", "labkit.history.History.save"} <= names


def _keyword_only(ps, param, defaults, what):
    """``param`` (if taken) must be keyword-only with a default in ``defaults``."""
    p = ps.get(param)
    if p is None:
        return []
    out = [] if p.kind is p.KEYWORD_ONLY else [f"{param} must be keyword-only (put it after *)"]
    if isinstance(p.default, bool) or p.default not in defaults:
        out.append(f"{param} must default to {what}, defaults to {p.default!r}")
    return out


def _seed(name, ps):
    return _keyword_only(ps, "seed", (0, None) if name in MODEL_BUILDERS else (0,), "0")


def _max_memory(name, ps):
    return _keyword_only(ps, "max_memory", (MAX_MEMORY,), "machine.MAX_MEMORY")


def _names(name, ps):
    return [f"parameter {old}= is spelled {RENAMED[old]}= in labkit" for old in ps if old in RENAMED]


def _model_loss_data(name, ps):
    order = [n for n, p in ps.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"]
    if not order or order[0] != "model" or "loss" not in ps:
        return []
    if {"inputs", "targets"} & set(ps):
        return ["takes data (an (inputs, targets) pair or a Dataset), not inputs=/targets="]
    if "data" not in ps or "loss" not in order:
        return []
    out = []
    if order[:3] != ["model", "loss", "data"]:
        out.append(f"positional arguments must start (model, loss, data), got ({', '.join(order[:3])})")
    elif ps["loss"].default != "auto":
        out.append(f"loss must default to 'auto', defaults to {ps['loss'].default!r}")
    return out


def _progress(name, ps):
    p = ps.get("progress")
    if p is None or (name.startswith("labkit.population.") and not name.endswith(".fit_many")):
        return []  # the engines and the loop get progress from fit_many, which owns the default
    return [] if p.default is True else [f"progress must default to True, defaults to {p.default!r}"]


@pytest.mark.parametrize("rule", [_seed, _max_memory, _names, _model_loss_data, _progress],
                         ids=["seed", "max_memory", "one-name-per-concept", "model-loss-data", "progress"])
def test_signature_rule(rule):
    broken = _broken(rule)
    assert not broken, f"{len(broken)} public function(s) break the {rule.__name__[1:]} rule:\n" + "\n".join(broken)


def _resolve(target):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("target", MAX_MEMORY_REQUIRED)
def test_max_memory_wherever_a_refusal_names_it(target):
    assert "max_memory" in _params(_resolve(target)), f"{target} can refuse for memory but takes no max_memory="


@pytest.mark.parametrize("target", EXECUTOR_REQUIRED)
def test_executor_on_every_sweep(target):
    p = _params(_resolve(target)).get("executor")
    assert p is not None, f"{target} is a sweep but takes no executor="
    assert p.kind is p.KEYWORD_ONLY and p.default is None, f"{target}: executor must be keyword-only, default None"


def test_results_that_serialise_also_save_and_load():
    broken = []
    for mod in MODULES:
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name, None)
            if inspect.isclass(obj) and obj.__module__ == mod.__name__ and hasattr(obj, "to_dict"):
                broken += [f"{mod.__name__}.{name}: has to_dict() but no {m}()" for m in ("save", "load")
                           if not hasattr(obj, m)]
    assert not broken, "\n".join(broken)


def test_trackers_are_read_one_way():
    """``tracker.series(key)`` (Every's) is the one keyed reader; another (``.array(key)``) is a deprecated alias."""
    from labkit.edge import EdgeOfStability
    from labkit.tracking import Every

    broken = []
    for mod in MODULES:
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name, None)
            if inspect.isclass(obj) and issubclass(obj, Every) and obj.__module__ == mod.__name__:
                for attr, fn in vars(obj).items():
                    if (inspect.isfunction(fn) and not attr.startswith("_") and attr != "series"
                            and "key" in _params(fn) and not getattr(fn, "__deprecated__", False)):
                        broken.append(f"{mod.__name__}.{name}.{attr}(key): read records with .series(key)")
    assert not broken, "\n".join(broken)
    tracker = EdgeOfStability(every=1)
    tracker.records, tracker.steps = [{"sharpness": 2.0, "threshold": 4.0}], [0]
    for old in (lambda t: t.array("sharpness"), lambda t: t.top, lambda t: t.thresholds):
        with pytest.warns(DeprecationWarning, match="series"):
            warnings.simplefilter("always")
            from labkit import _deprecated
            _deprecated._warned.clear()
            old(tracker)


def test_no_two_modules_share_a_name():
    by_name = {}
    for mod in MODULES:
        by_name.setdefault(mod.__name__.rsplit(".", 1)[-1], []).append(mod.__name__)
    clashes = {k: v for k, v in by_name.items()
               if k not in SHARED_NAMES and len([m for m in v if not m.startswith(MIRRORS)]) > 1}
    assert not clashes, f"modules sharing a name (rename one, keep a deprecated alias module): {clashes}"


def test_old_names_warn_once_naming_the_new():
    from labkit import _deprecated

    _deprecated._warned.discard("labkit.batchsize.scaling.scale_lr")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from labkit.batchsize import scaling

        assert scaling.scale_lr is labkit.batchsize.rules.scale_lr
        assert scaling.scale_lr is labkit.batchsize.rules.scale_lr
    msgs = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert msgs == ["labkit.batchsize.scaling.scale_lr is deprecated: use labkit.batchsize.rules.scale_lr "
                    "(the old name goes in the next release)"]


def test_a_planted_breach_is_caught():
    """The rules fail on a function that breaks them (so a passing run means something)."""

    def bad(model, data, loss, seed=None, *, chunk=3, progress=False, max_memory=1):
        """A function breaking six rules."""

    ps = _params(bad)
    found = [m for rule in (_seed, _max_memory, _names, _model_loss_data, _progress) for m in rule("bad", ps)]
    assert len(found) == 6, found


def _warns_once(call, match):
    """``call()`` twice: the first warns (DeprecationWarning naming the new spelling), the second is silent."""
    from labkit import _deprecated

    _deprecated._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = call()
        second = call()
    msgs = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning) and "labkit" in str(w.message)]
    assert len(msgs) == 1 and match in msgs[0], msgs
    return first, second


def test_old_spellings_keep_working_for_one_release():
    import torch

    from labkit import batchsize, data, fractal, hessian, linalg, models

    A = linalg.from_dense(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
    old, _ = _warns_once(lambda: linalg.lanczos(A, k_steps=3), "lanczos_steps=")
    assert torch.equal(old.alpha, linalg.lanczos(A, lanczos_steps=3).alpha)
    old, _ = _warns_once(lambda: linalg.trace(A, 5, "hutchpp", 3), "seed=")  # seed by position
    assert old.value == linalg.trace(A, 5, "hutchpp", seed=3).value
    old, _ = _warns_once(lambda: data.spirals(20, 2, 0.1, 1.5, 4), "seed=")
    assert torch.equal(old.inputs, data.spirals(20, 2, 0.1, 1.5, seed=4).inputs)
    old, _ = _warns_once(lambda: linalg.to_dense(A, chunk=2), "chunk_size=")
    assert torch.equal(old, linalg.to_dense(A))
    net, ds = models.mlp(2, [4], 3, seed=0).double(), data.gaussian_mixture(12, classes=3, seed=0).to(torch.float64)
    old, _ = _warns_once(lambda: batchsize.per_example_grads(net, "cross_entropy", ds.inputs, ds.targets),
                         "(inputs, targets)")
    torch.testing.assert_close(old, batchsize.per_example_grads(net, "cross_entropy", (ds.inputs, ds.targets)))
    old, _ = _warns_once(lambda: hessian.batch_sharpness(net, "cross_entropy", ds, [4], n_batches=2), "batch_sizes=")
    assert old.full == hessian.batch_sharpness(net, "cross_entropy", ds, batch_sizes=[4], n_batches=2).full
    exp = fractal.Experiment.preset("quick")
    old, _ = _warns_once(lambda: fractal.scan(exp, (0.1, 10.0), (0.1, 10.0), 4, chunk=8, progress=False), "chunk_size=")
    new = fractal.scan(exp, (0.1, 10.0), (0.1, 10.0), 4, chunk_size=8, progress=False)
    assert (old.converged == new.converged).all()
    with pytest.raises(TypeError, match="chunk_size"):
        linalg.to_dense(A, chunk=2, chunk_size=2)


def test_loss_auto_is_the_default_for_every_model_loss_data_probe():
    import torch

    from labkit import batchsize, data, hessian, models

    net, ds = models.mlp(2, [4], 3, seed=0).double(), data.gaussian_mixture(12, classes=3, seed=0).to(torch.float64)
    assert hessian.trace(net, data=ds, n_matvec=6).value == hessian.trace(net, "cross_entropy", ds, n_matvec=6).value
    assert float(hessian.top_eigenvalues(net, data=ds).values[0]) == pytest.approx(
        float(hessian.top_eigenvalues(net, "cross_entropy", ds).values[0]), rel=1e-8)
    assert batchsize.noise_scale(net, data=ds).b_simple == batchsize.noise_scale(net, "cross_entropy", ds).b_simple
    with pytest.raises(ValueError, match="max_memory"):
        hessian.spectral_density(net, data=ds, n_probes=2, lanczos_steps=4, max_memory=1)


def test_history_and_experiment_save_and_load(tmp_path):
    import math

    from labkit import fractal
    from labkit.history import History

    h = History(loss=[1.0, 0.5, math.inf], lr=[0.1] * 3, eval_steps=[0, 2], eval={"loss": [1.0, math.nan]},
                diverged=True, diverged_at=2, hparams={"lr": 0.1, "seed": 3},
                tracked={"sharpness": {"steps": [0], "values": [2.5]}})
    back = History.load(h.save(tmp_path / "run"))
    assert (tmp_path / "run.json").exists()
    assert back.loss[:2] == [1.0, 0.5] and math.isnan(back.loss[2])  # JSON has no inf: it comes back undefined
    assert back.eval_steps == [0, 2] and math.isnan(back.eval["loss"][1]) and back.tracked == h.tracked
    assert (back.diverged, back.diverged_at, back.hparams) == (True, 2, {"lr": 0.1, "seed": 3})
    exp = fractal.Experiment.preset("offset", steps=50)
    assert fractal.Experiment.load(exp.save(tmp_path / "exp")) == exp
