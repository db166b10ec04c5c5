"""Weight surfaces of curricula and MentorNets: computing them (tidy pandas frames) apart from drawing them.

``from visualize import weight_surface, plot``

* :mod:`visualize.surface`: :func:`weight_surface`, :func:`compare_surfaces`, :func:`gallery_surfaces`;
  numbers only, no matplotlib.
* :mod:`visualize.draw`: matplotlib figures from those frames, built without pyplot.
* :mod:`visualize.plot`: :func:`plan_plot` (checks every input) and :func:`run_plot` (draws and writes),
  or both at once with :func:`plot`: the ``python cli.py plot`` command as an API.

Importing this package never imports pyplot or chooses a matplotlib backend; the caller does (the CLI
chooses Agg).
"""

from .plot import PlotPlan, PlotResult, describe_curriculum, plan_plot, plot, run_plot
from .surface import (
    DEFAULT_EPOCHS,
    DEFAULT_LOSS_DIFF_RANGE,
    DEFAULT_LOSS_RANGE,
    DEFAULT_RESOLUTION,
    SUMMARY_EPOCHS,
    compare_surfaces,
    gallery_surfaces,
    parse_epochs,
    parse_range,
    reference_curriculum,
    surface_grid,
    weight_surface,
)

__all__ = [
    "DEFAULT_EPOCHS", "DEFAULT_LOSS_DIFF_RANGE", "DEFAULT_LOSS_RANGE", "DEFAULT_RESOLUTION", "SUMMARY_EPOCHS",
    "PlotPlan", "PlotResult", "compare_surfaces", "describe_curriculum", "gallery_surfaces", "parse_epochs",
    "parse_range", "plan_plot", "plot", "reference_curriculum", "run_plot", "surface_grid", "weight_surface",
]
