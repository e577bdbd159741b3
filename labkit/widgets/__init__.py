"""ipywidgets building blocks and ready-made panels for live notebooks.

- controls (:mod:`~labkit.widgets.controls`): ``lr_slider`` (log scale), ``int_slider``,
  ``width_slider``, ``depth_slider``, ``batch_size_slider``, ``steps_slider``,
  ``dataset_dropdown``, ``optimizer_dropdown``;
- :class:`~labkit.widgets.runner.Runner`: Run / Stop buttons running your work
  function in a background thread (cancel-and-restart when a control changes);
- :func:`~labkit.widgets.panel.train_panel`: a ready live-training panel;
- :func:`~labkit.widgets.advisor.batch_size_advisor`: the live batch-size advisor (B_simple, B_noise,
  the largest stable lr, a check against a steps-to-target sweep).
- :func:`~labkit.widgets.landscape_panel.landscape_explorer`: the loss landscape live (path, slider, click to probe).

Names are imported lazily from the submodules listed in ``_EXPORTS``.
"""

from __future__ import annotations

from labkit._lazy import lazy_exports

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "BatchSizeAdvisor": "advisor",
    "batch_size_advisor": "advisor",
    "fractal_explorer": "explorer",
    "LandscapeExplorer": "landscape_panel",
    "landscape_explorer": "landscape_panel",
    "DATASETS": "controls",
    "batch_size_slider": "controls",
    "batch_size_value": "controls",
    "dataset_dropdown": "controls",
    "depth_slider": "controls",
    "int_slider": "controls",
    "lr_slider": "controls",
    "optimizer_dropdown": "controls",
    "pow2_slider": "controls",
    "steps_slider": "controls",
    "width_slider": "controls",
    "RunContext": "runner",
    "Runner": "runner",
    "TrainPanel": "panel",
    "load_split": "panel",
    "train_panel": "panel",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
