"""``python cli.py plot`` as an API: check every input, compute the surfaces, draw, and write atomically.

Outputs are checked before anything is computed (extension, folder, an existing file without
``force``), and each file is written to a temporary file in the same folder with the same extension,
then moved into place, so a failure never leaves a half-written figure behind.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from curricula import check_curriculum, curriculum_parameters, get_curriculum, list_curricula, parse_params
from curricula.registry import REQUIRED
from curricula.features import MAX_EPOCH, NUM_EPOCHS
from curricula.files import atomic_write, check_output_path

from . import draw
from .runs import read_runs
from .surface import (DEFAULT_EPOCHS, DEFAULT_LOSS_DIFF_RANGE, DEFAULT_LOSS_RANGE, DEFAULT_RESOLUTION,
                      SUMMARY_EPOCHS, check_epochs, check_loss_range, check_range,
                      check_resolution, compare_surfaces, evenly_spaced_epochs, gallery_surfaces,
                      reference_curriculum, weight_surface)

FIGURE_EXTENSIONS = (".png", ".pdf", ".svg")
ANIMATION_EXTENSIONS = (".gif",)
ALL_CURRICULA = "all"
DEFAULT_FPS = 10.0  # animation frames per second
_SHORT_PARAMS = 24  # show every parameter when they fit in this many characters, else only changed ones


@dataclass(frozen=True)
class Subject:
    """What is plotted: a weighter and the words that name it in titles."""

    weighter: object
    name: str  # e.g. "spcl_linear (gamma=1)" or "MentorNet sp.pt"
    title: str  # e.g. "MentorNet sp.pt, fitted to spcl_linear (gamma=1)"


@dataclass
class PlotResult:
    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one-line summaries for the user


def _format_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_curriculum(curriculum) -> str:
    """``"focal_loss (gamma=2)"``; when the parameters are long, only those changed from the defaults."""
    name = getattr(curriculum, "name", type(curriculum).__name__)
    params = dataclasses.asdict(curriculum) if dataclasses.is_dataclass(curriculum) else {}
    text = ", ".join(f"{k}={_format_value(v)}" for k, v in params.items())
    if len(text) > _SHORT_PARAMS:
        defaults = curriculum_parameters(name)
        text = ", ".join(f"{k}={_format_value(v)}" for k, v in params.items() if v != defaults.get(k))
    return f"{name} ({text})" if text else name


def curriculum_subject(name: str, params: Iterable[str] | dict = ()) -> Subject:
    """A registered curriculum, checked once (``check_curriculum``) before it is plotted."""
    kwargs = dict(params) if isinstance(params, dict) else parse_params(name, params)
    curriculum = get_curriculum(name, **kwargs)
    check_curriculum(curriculum)
    described = describe_curriculum(curriculum)
    return Subject(curriculum, described, f"Curriculum {described}")


def mentornet_subject(name_or_path: str | os.PathLike) -> Subject:
    """A MentorNet from a pretrained name or a checkpoint path, titled with what its checkpoint records."""
    from mentor_training import load_mentornet

    mentornet = load_mentornet(name_or_path)
    name = f"MentorNet {Path(str(name_or_path)).name}"
    title = f"{name}, {_mentornet_origin(getattr(mentornet, 'source', {}) or {})}"
    if not getattr(getattr(mentornet, "config", None), "uses_loss_diff", True):
        # Fitted with loss_diff = 0 (train-student --mentornet learn): the surface is flat along that axis.
        title += "\nits weight does not depend on loss_diff (fitted on the loss alone)"
    return Subject(mentornet, name, title)


def _mentornet_origin(source: dict) -> str:
    """How a MentorNet was made, from its checkpoint's ``source``: ``"fitted to self_paced"``."""
    kind = source.get("type")
    if kind == "curriculum":
        params = dict(source.get("params") or {})
        try:  # the title only: a curriculum that is not loaded (or has changed since) is named as stored
            return f"fitted to {describe_curriculum(get_curriculum(source['name'], **params))}"
        except (ValueError, TypeError):
            shown = ", ".join(f"{key}={_format_value(value)}" for key, value in params.items())
            return f"fitted to {source.get('name', '?')}" + (f" ({shown})" if shown else "")
    if kind == "data_driven":
        return f"data-driven (loss percentile {_format_value(source.get('percentile', '?'))})"
    if kind == "learned_in_run":
        run = f" {Path(str(source['run'])).name}" if source.get("run") else ""
        when = f" at progress epoch {source['progress_epoch']}" if "progress_epoch" in source else ""
        details = [str(source["dataset"])] if source.get("dataset") else []
        details += [f"noise {_format_value(source['noise'])}"] if source.get("noise") is not None else []
        details += [f"{source['num_rows']} rows"] if "num_rows" in source else []
        return f"learned in run{run}{when}" + (f" ({', '.join(details)})" if details else "")
    return f"source {kind or 'unknown'}"


def check_output(path, *, extensions: tuple[str, ...], option: str, force: bool) -> Path:
    """Raise ``ValueError``/``FileExistsError`` unless ``path`` may be written as one of ``extensions``."""
    path = Path(path)
    if path.suffix.lower() not in extensions:
        raise ValueError(f"unsupported extension {path.suffix or '(none)'!r} for {option} {path}; "
                         f"use {', '.join(extensions)}")
    return check_output_path(path, force=force, option=option)


def write_atomically(path: Path, write: Callable[[str], None]) -> Path:
    """``write(tmp)`` to a temporary file with ``path``'s extension in its folder, then rename it
    (the existence of ``path`` was checked when the plot was planned)."""
    return atomic_write(path, write, force=True)


def save_figure(fig, path: Path) -> Path:
    return write_atomically(path, lambda tmp: fig.savefig(tmp, format=path.suffix[1:].lower()))


MAX_SIDE_PIXELS = 20_000  # matplotlib's own limit is 2^16 per side; far below what memory allows
MAX_PIXELS = 100_000_000  # 400 MB of RGBA: a canvas beyond this is refused before it is drawn


def figure_size(default: tuple[float, float], *, width: int | None, height: int | None,
                dpi: float) -> tuple[float, float]:
    """Inches from pixel sizes; one missing side keeps the default aspect ratio. A canvas beyond
    :data:`MAX_SIDE_PIXELS` per side or :data:`MAX_PIXELS` in all is a ``ValueError``."""
    for name, value in (("width", width), ("height", height)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 50):
            raise ValueError(f"{name} must be an integer number of pixels >= 50, got {value!r}")
    if not 0 < dpi < math.inf:
        raise ValueError(f"dpi must be a finite number > 0, got {dpi!r}")
    if width is None and height is None:
        width_in, height_in = default
    else:
        aspect = default[1] / default[0]
        width_in = width / dpi if width is not None else height / dpi / aspect
        height_in = height / dpi if height is not None else width_in * aspect
    pixels = (round(width_in * dpi), round(height_in * dpi))
    if max(pixels) > MAX_SIDE_PIXELS or pixels[0] * pixels[1] > MAX_PIXELS:
        raise ValueError(f"a {pixels[0]} x {pixels[1]} pixel canvas is too large to draw (at most "
                         f"{MAX_SIDE_PIXELS} per side and {MAX_PIXELS // 1_000_000} million in all); lower --width, "
                         "--height or --dpi")
    return width_in, height_in


@dataclass(frozen=True)
class _Grid:
    loss_range: tuple[float, float]
    loss_diff_range: tuple[float, float]
    resolution: int

    def options(self) -> dict:
        return dict(loss_range=self.loss_range, loss_diff_range=self.loss_diff_range, resolution=self.resolution)


def _join(names: list[str]) -> str:
    """``"--fps"``, ``"--frames and --fps"``, ``"--kind, --frames and --fps"``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _check_combination(*, curriculum, mentornet, compare: bool, animate, out, runs, params,
                       surface_options: dict, animation_options: dict) -> None:
    """Refuse combinations that cannot work, and options the plot would not use. In ``surface_options``
    (the weight-surface options, by flag) and ``animation_options`` (``--animate``'s), None means not given."""
    if runs:
        given = [flag for flag, value in {"--curriculum": curriculum, "--mentornet": mentornet, "-p": params or None,
                                          "--compare": compare or None, "--animate": animate, **surface_options,
                                          **animation_options}.items() if value is not None]
        if given:
            raise ValueError(f"--run draws the training curves of finished runs, not weight surfaces; drop "
                             f"{_join(given)}")
        if out is None:
            raise ValueError("--run needs an output file (--out)")
        return
    if (curriculum is None) == (mentornet is None):
        raise ValueError("give exactly one of a curriculum (or 'all'), a MentorNet, or run folders (--run)")
    if out is None and animate is None:
        raise ValueError("give an output file (--out) or an animation (--animate FILE.gif)")
    if compare and mentornet is None:
        raise ValueError("--compare needs a MentorNet: it draws the MentorNet beside its curriculum")
    if mentornet is not None and params:
        raise ValueError("-p/--param sets a curriculum's parameters; a MentorNet's were fixed when it was learned")
    if curriculum == ALL_CURRICULA and params:
        raise ValueError("-p/--param applies to one curriculum, not to 'all'")
    if animate is not None and (compare or curriculum == ALL_CURRICULA):
        raise ValueError("--animate draws one curriculum or MentorNet; drop --compare and 'all'")
    given = [flag for flag, value in animation_options.items() if value is not None]
    if animate is None and given:
        raise ValueError(f"{_join(given)} {'applies' if len(given) == 1 else 'apply'} to the animation; add "
                         f"--animate FILE.gif or drop {_join(given)}")
    if out is None and surface_options.get("--epochs") is not None:
        raise ValueError("--epochs picks the panels of --out; the animation shows --frames epochs evenly spaced over "
                         f"0..{MAX_EPOCH}: add --out FILE or drop --epochs")


@dataclass(frozen=True)
class PlotPlan:
    """Every input of a plot, checked; ``run_plot`` only computes, draws and writes."""

    out: Path | None
    animate: Path | None
    subject: Subject | None  # None for the gallery of every curriculum
    reference: object | None  # with compare: the curriculum the MentorNet was fitted to
    kind: str
    epochs: tuple[int, ...]
    frame_epochs: tuple[int, ...]
    grid: _Grid
    fps: float
    size: dict
    runs: object = None  # with --run: the runs' curves (visualize.runs.read_runs)


def plan_plot(*, out=None, curriculum: str | None = None, params: Iterable[str] | dict = (), mentornet=None,
              kind: str | None = None, compare: bool = False, epochs: Iterable[int] | None = None,
              loss_range=None, loss_diff_range=None, resolution: int | None = None, animate=None,
              frames: int | None = None, fps: float | None = None, width: int | None = None,
              height: int | None = None, dpi: float = 100, force: bool = False,
              runs: Iterable[str | os.PathLike] = ()) -> PlotPlan:
    """Check every input and load the weighter (or the runs), so a bad value never costs a drawing or
    leaves a file.

    The surface options (``kind``, ``epochs``, ``loss_range`` (default :data:`DEFAULT_LOSS_RANGE`),
    ``loss_diff_range`` (:data:`DEFAULT_LOSS_DIFF_RANGE`), ``resolution`` (:data:`DEFAULT_RESOLUTION`))
    and the animation's (``frames``, default every epoch 0..99, and ``fps``, default
    :data:`DEFAULT_FPS`) are None when not given: one given where it is not used (a surface option
    with ``runs``, an animation option without ``animate``) is a ``ValueError``, never ignored."""
    runs = list(runs)
    _check_combination(curriculum=curriculum, mentornet=mentornet, compare=compare, animate=animate, out=out,
                       runs=runs, params=params,
                       surface_options={"--kind": kind, "--epochs": epochs, "--loss-range": loss_range,
                                        "--loss-diff-range": loss_diff_range, "--resolution": resolution},
                       animation_options={"--frames": frames, "--fps": fps})
    loss_range = DEFAULT_LOSS_RANGE if loss_range is None else loss_range
    loss_diff_range = DEFAULT_LOSS_DIFF_RANGE if loss_diff_range is None else loss_diff_range
    resolution = DEFAULT_RESOLUTION if resolution is None else resolution
    frames = NUM_EPOCHS if frames is None else frames
    fps = DEFAULT_FPS if fps is None else fps
    out = None if out is None else check_output(out, extensions=FIGURE_EXTENSIONS, option="--out", force=force)
    animate = None if animate is None else check_output(animate, extensions=ANIMATION_EXTENSIONS,
                                                        option="--animate", force=force)
    if out is not None and out == animate:
        raise ValueError(f"--out and --animate are the same file {out}")
    single = not compare and curriculum != ALL_CURRICULA
    epochs = check_epochs(epochs if epochs is not None else DEFAULT_EPOCHS if single else SUMMARY_EPOCHS)
    grid = _Grid(check_loss_range(loss_range), check_range("loss_diff range", loss_diff_range),
                 check_resolution(resolution))
    size = dict(width=width, height=height, dpi=dpi)
    figure_size((1.0, 1.0), **size)  # checks the sizes
    if not 0 < fps < math.inf:
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
    if runs:
        plan = PlotPlan(out=out, animate=None, subject=None, reference=None, kind="heatmap", epochs=epochs,
                        frame_epochs=(), grid=grid, fps=float(fps), size=size, runs=read_runs(runs))
        _check_canvases(plan)
        return plan
    if curriculum == ALL_CURRICULA:
        subject = None
        for name in list_curricula():  # each one as the gallery builds it, so a broken one stops us here
            missing = [key for key, default in curriculum_parameters(name).items() if default is REQUIRED]
            if missing:
                raise ValueError(f"'all' draws every curriculum with its default parameters, and {name!r} has none "
                                 f"for {', '.join(missing)}: draw it on its own (--curriculum {name} "
                                 + " ".join(f"-p {key}=VALUE" for key in missing) + ")")
            curriculum_subject(name)
    else:
        subject = curriculum_subject(curriculum, params) if curriculum is not None else mentornet_subject(mentornet)
    plan = PlotPlan(out=out, animate=animate, subject=subject,
                    reference=reference_curriculum(subject.weighter) if compare else None,
                    kind=draw.check_kind(kind or ("surface" if single else "heatmap")), epochs=epochs,
                    frame_epochs=evenly_spaced_epochs(frames) if animate is not None else (),
                    grid=grid, fps=float(fps), size=size)
    _check_canvases(plan)
    return plan


def run_plot(plan: PlotPlan, *, progress: Callable[[int, int], None] | None = None) -> PlotResult:
    """Compute, draw and atomically write what ``plan`` asks for. ``progress(done, total)`` is called
    once per animation frame."""
    result = PlotResult()
    if plan.runs is not None:
        _plot_runs(result, plan)
    elif plan.out is not None and plan.subject is None:
        _plot_gallery(result, plan)
    elif plan.out is not None and plan.reference is not None:
        _plot_compare(result, plan)
    elif plan.out is not None:
        _plot_surfaces(result, plan)
    if plan.animate is not None:
        _plot_animation(result, plan, progress=progress)
    return result


def plot(*, progress: Callable[[int, int], None] | None = None, **options) -> PlotResult:
    """Draw weight surfaces of a curriculum (``curriculum="all"``: a gallery of every one) or a MentorNet.

    ``kind`` is ``"surface"`` (default for one weighter) or ``"heatmap"`` (default for ``compare`` and
    the gallery). ``epochs`` defaults to the 2018 visualiser's for one weighter and to 10, 50, 95 for
    ``compare`` and the gallery. ``animate`` is a .gif path showing ``frames`` evenly spaced epochs of
    0..99. See :func:`plan_plot` for every option.
    """
    return run_plot(plan_plot(**options), progress=progress)


def _figsize(plan: PlotPlan, default: tuple[float, float]) -> tuple[float, float]:
    return figure_size(default, **plan.size)


def _check_canvases(plan: PlotPlan) -> None:
    """Every figure the plan will draw fits the canvas limits (checked before anything is computed)."""
    epochs, kind = len(plan.epochs), plan.kind
    defaults = []
    if plan.out is not None:
        defaults.append(draw.RUNS_INCHES if plan.runs is not None else
                        draw.gallery_figure_size(len(list_curricula()), epochs, kind) if plan.subject is None else
                        draw.compare_figure_size(epochs, kind) if plan.reference is not None else
                        draw.surface_figure_size(epochs, kind))
    if plan.animate is not None:
        defaults.append(draw.ANIMATION_INCHES)
    for default in defaults:
        _figsize(plan, default)


def _plot_surfaces(result: PlotResult, plan: PlotPlan) -> None:
    frame = weight_surface(plan.subject.weighter, epochs=plan.epochs, **plan.grid.options())
    fig = draw.surface_figure(frame, kind=plan.kind, title=plan.subject.title, dpi=plan.size["dpi"],
                              figsize=_figsize(plan, draw.surface_figure_size(len(plan.epochs), plan.kind)))
    result.paths.append(save_figure(fig, plan.out))


def _plot_compare(result: PlotResult, plan: PlotPlan) -> None:
    subject, kind = plan.subject, plan.kind
    frame = compare_surfaces(subject.weighter, plan.reference, epochs=plan.epochs, **plan.grid.options())
    described = describe_curriculum(plan.reference)
    fig = draw.compare_figure(frame, kind=kind, names=(subject.name, described), dpi=plan.size["dpi"],
                              title=f"{subject.name} against the curriculum it was fitted to",
                              figsize=_figsize(plan, draw.compare_figure_size(len(plan.epochs), kind)))
    result.paths.append(save_figure(fig, plan.out))
    worst = frame.loc[frame["abs_diff"].idxmax()]
    result.notes.append(
        f"|MentorNet - {described}| over the plotted grid: mean {frame['abs_diff'].mean():.4f}, "
        f"max {worst['abs_diff']:.4f} at loss {worst['loss']:.2f}, loss_diff {worst['loss_diff']:.2f}, "
        f"epoch {int(worst['epoch'])}")


def _plot_runs(result: PlotResult, plan: PlotPlan) -> None:
    runs = plan.runs
    count = runs["run"].nunique()
    title = f"{count} run{'s' * (count > 1)}: " + ", ".join(dict.fromkeys(runs["folder"].map(lambda f: Path(f).name)))
    fig = draw.runs_figure(runs, title=title if len(title) < 110 else f"{count} runs",
                           figsize=_figsize(plan, draw.RUNS_INCHES), dpi=plan.size["dpi"])
    result.paths.append(save_figure(fig, plan.out))
    for label, run in runs.groupby("run", sort=False):
        last = run.iloc[-1]
        epochs, planned = int(last["epoch"]), int(last["planned_epochs"])
        unfinished = f" (unfinished: {planned} planned)" if epochs < planned else ""
        result.notes.append(f"{label}: {epochs} epoch{'s' * (epochs != 1)}{unfinished}, "
                            f"{'last' if unfinished else 'final'} test accuracy {last['test_accuracy']:.4f}")


def _plot_gallery(result: PlotResult, plan: PlotPlan) -> None:
    frame = gallery_surfaces(epochs=plan.epochs, **plan.grid.options())
    names = list(dict.fromkeys(frame["curriculum"].tolist()))
    labels = {name: describe_curriculum(get_curriculum(name)) for name in names}
    default = draw.gallery_figure_size(len(names), len(plan.epochs), plan.kind)
    fig = draw.gallery_figure(frame, kind=plan.kind, labels=labels, figsize=_figsize(plan, default),
                              dpi=plan.size["dpi"],
                              title="MentorNet curricula: weight by loss and loss_diff (default parameters, label 0)")
    result.paths.append(save_figure(fig, plan.out))


def _plot_animation(result: PlotResult, plan: PlotPlan, *, progress) -> None:
    frame = weight_surface(plan.subject.weighter, epochs=plan.frame_epochs, **plan.grid.options())
    total = len(plan.frame_epochs)
    report = None if progress is None else (lambda done: progress(done, total))
    write_atomically(plan.animate, lambda tmp: draw.write_animation(
        frame, tmp, kind=plan.kind, title=plan.subject.title, fps=plan.fps, dpi=plan.size["dpi"],
        figsize=_figsize(plan, draw.ANIMATION_INCHES), progress=report))
    result.paths.append(plan.animate)
