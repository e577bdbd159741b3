"""Loss landscapes, measured: lines and planes through parameter space, evaluated as one vectorised grid.

- :func:`interpolate` -- the loss on the straight line between two parameter points (:class:`Line`, with its
  barrier; Goodfellow, Vinyals & Saxe 2015);
- :func:`plane` -- the loss on a plane spanned by filter-normalised (Li et al. 2018), random, top-Hessian or
  trajectory-PCA directions, with the optimiser's path projected onto it (:class:`Plane`);
- :class:`Trajectory` -- a ``fit`` callback keeping parameter snapshots every k steps, bounded in memory;
- directions (:func:`random_directions`, :func:`filter_normalize`, :func:`hessian_directions`,
  :func:`pca_directions`) and the evaluator behind both (:func:`evaluate`, :func:`estimate_memory`);
- the experiments of notebook 11, each with its control, are lesson code: :mod:`labkit.lessons.landscape`.

::

    traj = landscape.Trajectory(every=5)
    labkit.train.fit(model, ds, steps=300, callbacks=[traj])
    landscape.plane(model, ds, traj).figure()        # the PCA plane with the path on it
    landscape.plane(model, test, "filter").figure()  # filter-normalised random plane on held-out data
"""

from __future__ import annotations

from labkit._lazy import lazy_exports

_EXPORTS = {
    "PCA": "directions",
    "check_directions": "directions",
    "filter_normalize": "directions",
    "hessian_directions": "directions",
    "pca_directions": "directions",
    "random_directions": "directions",
    "DIRECTIONS": "surface",
    "Line": "surface",
    "Plane": "surface",
    "estimate_memory": "surface",
    "evaluate": "surface",
    "interpolate": "surface",
    "plane": "surface",
    "project": "surface",
    "Trajectory": "recorder",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
