"""Drawing weight surfaces with matplotlib: 3-D surfaces, heatmaps, comparisons, galleries and GIFs.

Every function takes a tidy frame from :mod:`visualize.surface` and returns a
:class:`matplotlib.figure.Figure` built without pyplot, so no window can open and no global figure
state is touched. Matplotlib is imported inside the functions: importing :mod:`visualize` never picks
a backend (the CLI chooses Agg).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .surface import surface_grid

WEIGHT_CMAP = "viridis"
DIFF_CMAP = "magma"
LOSS_LABEL = "loss (nats)"
LOSS_DIFF_LABEL = "loss_diff (nats)"
WEIGHT_LABEL = "weight"
PANEL_INCHES = {"heatmap": (3.0, 2.4), "surface": (3.2, 2.9)}
ANIMATION_INCHES = (6.4, 4.8)
KINDS = ("surface", "heatmap")


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown plot kind {kind!r}; choose surface or heatmap")
    return kind


def grid_shape(num_panels: int) -> tuple[int, int]:
    """(rows, columns) for ``num_panels`` panels, a little wider than tall."""
    ncols = min(num_panels, math.ceil(math.sqrt(1.6 * num_panels)))
    return math.ceil(num_panels / ncols), ncols


def figure_size(nrows: int, ncols: int, kind: str, *, extra_width: float = 0.8,
                extra_height: float = 0.6) -> tuple[float, float]:
    """Default size in inches: one panel's size times the grid, plus room for a colour bar and title."""
    width, height = PANEL_INCHES[kind]
    return ncols * width + extra_width, nrows * height + extra_height


def surface_figure_size(num_epochs: int, kind: str) -> tuple[float, float]:
    return figure_size(*grid_shape(num_epochs), kind)


def compare_figure_size(num_epochs: int, kind: str) -> tuple[float, float]:
    return figure_size(num_epochs, 3, kind, extra_width=0.4, extra_height=1.4)


def gallery_figure_size(num_curricula: int, num_epochs: int, kind: str) -> tuple[float, float]:
    return figure_size(num_epochs, num_curricula, kind, extra_width=1.2)


def new_figure(figsize: tuple[float, float], dpi: float):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi, layout="constrained")


def _add_axes(fig, nrows: int, ncols: int, index: int, kind: str):
    if kind == "surface":
        ax = fig.add_subplot(nrows, ncols, index, projection="3d")
        ax.set_box_aspect(None, zoom=0.82)  # room for the z label inside the panel
        return ax
    return fig.add_subplot(nrows, ncols, index)


def paint(ax, loss_axis: np.ndarray, loss_diff_axis: np.ndarray, values: np.ndarray, *, kind: str,
          cmap: str = WEIGHT_CMAP, vmin: float = 0.0, vmax: float = 1.0, zlabel: str = WEIGHT_LABEL):
    """Draw one grid on ``ax`` as a heatmap or a 3-D surface; returns the colour mappable."""
    if kind == "heatmap":
        return _paint_heatmap(ax, loss_axis, loss_diff_axis, values, cmap=cmap, vmin=vmin, vmax=vmax)
    return _paint_surface(ax, loss_axis, loss_diff_axis, values, cmap=cmap, vmin=vmin, vmax=vmax, zlabel=zlabel)


def _half_step(axis: np.ndarray) -> float:
    return (axis[-1] - axis[0]) / (2 * (len(axis) - 1))


def _paint_heatmap(ax, loss_axis, loss_diff_axis, values, *, cmap, vmin, vmax):
    dx, dy = _half_step(loss_axis), _half_step(loss_diff_axis)
    extent = (loss_axis[0] - dx, loss_axis[-1] + dx, loss_diff_axis[0] - dy, loss_diff_axis[-1] + dy)
    image = ax.imshow(values, origin="lower", extent=extent, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                      interpolation="nearest")
    if loss_diff_axis[0] < 0 < loss_diff_axis[-1]:  # where the loss equals the moving-average percentile
        ax.axhline(0.0, color="white", linewidth=0.6, linestyle=(0, (4, 3)), alpha=0.6)
    return image


def _paint_surface(ax, loss_axis, loss_diff_axis, values, *, cmap, vmin, vmax, zlabel):
    from matplotlib.ticker import MaxNLocator

    loss, loss_diff = np.meshgrid(loss_axis, loss_diff_axis)
    surface = ax.plot_surface(loss, loss_diff, values, cmap=cmap, vmin=vmin, vmax=vmax, rcount=60, ccount=60,
                              linewidth=0, antialiased=False)
    ax.set_zlim(vmin, vmax)
    ax.view_init(elev=25, azim=-35)  # loss_diff rises to the right, so a falling weight faces the viewer
    ax.set_xlabel(LOSS_LABEL, fontsize=8, labelpad=-2)
    ax.set_ylabel(LOSS_DIFF_LABEL, fontsize=8, labelpad=-2)
    ax.zaxis.set_major_locator(MaxNLocator(nbins=3, steps=[1, 2, 5, 10]))  # short tick labels
    ax.set_zlabel(zlabel, fontsize=8, labelpad=0)
    ax.tick_params(labelsize=7, pad=-2)
    return surface


def _label_heatmap(ax, *, left: bool, bottom: bool) -> None:
    ax.tick_params(labelsize=8)
    if left:
        ax.set_ylabel(LOSS_DIFF_LABEL, fontsize=9)
    if bottom:
        ax.set_xlabel(LOSS_LABEL, fontsize=9)


def _is_bottom(index: int, num_panels: int, ncols: int) -> bool:
    """Whether panel ``index`` (0-based) has no panel below it in a row-major grid."""
    return index + ncols >= num_panels


def _weight_colorbar(fig, mappable, axes, *, label: str = WEIGHT_LABEL, shrink: float = 0.9,
                     location: str = "right") -> None:
    bar = fig.colorbar(mappable, ax=axes, shrink=shrink, aspect=30 if location == "right" else 25,
                       pad=0.02, location=location)
    bar.set_label(label, fontsize=9)
    bar.ax.tick_params(labelsize=8)


def surface_figure(frame: pd.DataFrame, *, kind: str, title: str, figsize: tuple[float, float] | None = None,
                   dpi: float = 100):
    """One panel per epoch of ``frame`` (a :func:`~visualize.surface.weight_surface` frame)."""
    check_kind(kind)
    epochs = list(dict.fromkeys(frame["epoch"].tolist()))
    nrows, ncols = grid_shape(len(epochs))
    fig = new_figure(figsize or surface_figure_size(len(epochs), kind), dpi)
    axes = []
    for index, epoch in enumerate(epochs):
        ax = _add_axes(fig, nrows, ncols, index + 1, kind)
        mappable = paint(ax, *surface_grid(frame, epoch), kind=kind)
        ax.set_title(f"epoch {epoch}", fontsize=10)
        if kind == "heatmap":
            _label_heatmap(ax, left=index % ncols == 0, bottom=_is_bottom(index, len(epochs), ncols))
        axes.append(ax)
    _weight_colorbar(fig, mappable, axes)
    fig.suptitle(title, fontsize=12, wrap=True)  # a MentorNet's title may be wider than a panel or two
    return fig


def compare_figure(frame: pd.DataFrame, *, kind: str, names: Sequence[str], title: str,
                   figsize: tuple[float, float] | None = None, dpi: float = 100):
    """Rows of epochs, columns MentorNet | curriculum | |difference| (a
    :func:`~visualize.surface.compare_surfaces` frame). ``names`` label the first two columns."""
    check_kind(kind)
    epochs = list(dict.fromkeys(frame["epoch"].tolist()))
    diff_max = max(float(frame["abs_diff"].max()), 1e-3)
    columns = [("mentornet", names[0]), ("curriculum", f"curriculum {names[1]}"), ("abs_diff", "|difference|")]
    fig = new_figure(figsize or compare_figure_size(len(epochs), kind), dpi)
    weight_axes, diff_axes = [], []
    for row, epoch in enumerate(epochs):
        for col, (column, label) in enumerate(columns):
            ax = _add_axes(fig, len(epochs), 3, row * 3 + col + 1, kind)
            is_diff = column == "abs_diff"
            mappable = paint(ax, *surface_grid(frame, epoch, value=column), kind=kind,
                             cmap=DIFF_CMAP if is_diff else WEIGHT_CMAP, vmax=diff_max if is_diff else 1.0,
                             zlabel="|difference|" if is_diff else WEIGHT_LABEL)
            ax.set_title(f"{label}, epoch {epoch}", fontsize=9)
            if kind == "heatmap":
                _label_heatmap(ax, left=col == 0, bottom=row == len(epochs) - 1)
            (diff_axes if is_diff else weight_axes).append(ax)
            if is_diff:
                diff_mappable = mappable
            else:
                weight_mappable = mappable
    # Under the columns they describe, so the three columns keep one width.
    _weight_colorbar(fig, weight_mappable, weight_axes, location="bottom", shrink=0.8)
    _weight_colorbar(fig, diff_mappable, diff_axes, label="|MentorNet - curriculum|", location="bottom")
    fig.suptitle(title, fontsize=12)
    return fig


def gallery_figure(frame: pd.DataFrame, *, kind: str, title: str, labels: dict[str, str] | None = None,
                   figsize: tuple[float, float] | None = None, dpi: float = 100):
    """One column per curriculum, one row per epoch (a :func:`~visualize.surface.gallery_surfaces`
    frame). ``labels`` maps a curriculum name to its column heading."""
    check_kind(kind)
    names = list(dict.fromkeys(frame["curriculum"].tolist()))
    epochs = list(dict.fromkeys(frame["epoch"].tolist()))
    labels = labels or {}
    fig = new_figure(figsize or gallery_figure_size(len(names), len(epochs), kind), dpi)
    axes = []
    for col, name in enumerate(names):
        rows = frame[frame["curriculum"] == name]
        for row, epoch in enumerate(epochs):
            ax = _add_axes(fig, len(epochs), len(names), row * len(names) + col + 1, kind)
            mappable = paint(ax, *surface_grid(rows, epoch), kind=kind)
            if row == 0:
                ax.set_title(labels.get(name, name), fontsize=11, fontweight="bold", pad=8)
            if col == 0:
                _row_label(ax, f"epoch {epoch}", offset=48 if kind == "heatmap" else 16)
            if kind == "heatmap":
                _label_heatmap(ax, left=col == 0, bottom=row == len(epochs) - 1)
            axes.append(ax)
    _weight_colorbar(fig, mappable, axes)
    fig.suptitle(title, fontsize=13)
    return fig


def _row_label(ax, text: str, *, offset: float) -> None:
    """A bold label left of a row of panels, outside the y-axis label."""
    ax.annotate(text, xy=(0, 0.5), xycoords="axes fraction", xytext=(-offset, 0), textcoords="offset points",
                rotation=90, ha="right", va="center", fontsize=11, fontweight="bold")


def write_animation(frame: pd.DataFrame, path: str, *, kind: str, title: str, fps: float = 10,
                    figsize: tuple[float, float] | None = None, dpi: float = 100,
                    progress: Callable[[int], None] | None = None) -> None:
    """A GIF with one frame per epoch of ``frame``, written to ``path`` (which must end in .gif) with
    matplotlib's Pillow writer, as the 2018 README showed each curriculum."""
    from matplotlib.animation import PillowWriter

    check_kind(kind)
    epochs = list(dict.fromkeys(frame["epoch"].tolist()))
    fig = new_figure(figsize or ANIMATION_INCHES, dpi)
    ax = _add_axes(fig, 1, 1, 1, kind)
    if kind == "heatmap":
        _label_heatmap(ax, left=True, bottom=True)
    mappable = paint(ax, *surface_grid(frame, epochs[0]), kind=kind)
    _weight_colorbar(fig, mappable, [ax], shrink=0.7 if kind == "surface" else 0.9)
    fig.suptitle(title, fontsize=11, wrap=True)  # a MentorNet's title may be wider than the panel
    ax.set_title(f"epoch {epochs[-1]}", fontsize=10)
    fig.draw_without_rendering()
    fig.set_layout_engine("none")  # lay out once: frames keep one geometry and draw twice as fast
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, path, dpi):
        for index, epoch in enumerate(epochs):
            mappable = _redraw(ax, mappable, frame, epoch, kind)
            ax.set_title(f"epoch {epoch}", fontsize=10)
            writer.grab_frame()
            if progress is not None:
                progress(index + 1)


def _redraw(ax, mappable, frame: pd.DataFrame, epoch: int, kind: str):
    loss_axis, loss_diff_axis, values = surface_grid(frame, epoch)
    if kind == "heatmap":
        mappable.set_data(values)
        return mappable
    mappable.remove()
    return paint(ax, loss_axis, loss_diff_axis, values, kind=kind)


# ------------------------------------------------------------------------------------ finished runs

RUNS_INCHES = (10.0, 7.2)
_RUN_PANELS = (
    ("test_accuracy", "test accuracy", "test accuracy"),
    ("weights", "mean MentorNet weight", "weight: clean (solid), corrupted (dashed)"),
    ("detector_auc", "AUC", "weight as a clean-vs-corrupted detector (AUC)"),
    ("fit_noisy", "fraction fitted", "corrupted labels the student predicts"),
)


def runs_figure(frame: pd.DataFrame, *, title: str, figsize: tuple[float, float] | None = None, dpi: float = 100):
    """Training curves of runs, finished or not (a frame from :func:`visualize.runs.read_runs`), one colour per run:
    test accuracy, the mean weight on clean and on corrupted samples, the detector AUC, and the fraction
    of corrupted labels fitted, per epoch."""
    fig = new_figure(figsize or RUNS_INCHES, dpi)
    axes = fig.subplots(2, 2, sharex=True).reshape(-1)
    colours = [f"C{i % 10}" for i in range(frame["run"].nunique())]
    for colour, (label, run) in zip(colours, frame.groupby("run", sort=False)):
        style = dict(color=colour, linewidth=1.3, marker="o" if len(run) == 1 else None)  # one epoch: a point
        for ax, (column, _, _) in zip(axes, _RUN_PANELS):
            if column == "weights":
                ax.plot(run["epoch"], run["weight_clean"], label=label, **style)
                ax.plot(run["epoch"], run["weight_noisy"], linestyle="--", **style)
            else:
                ax.plot(run["epoch"], run[column], label=label, **style)
    for ax, (_, ylabel, panel_title) in zip(axes, _RUN_PANELS):
        ax.set_title(panel_title, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    for ax in axes[2:]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no 1.5 ticks
    # Below the panels, where it covers no curve (inside a panel it hid a run's first points).
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig
