"""Command-line interface: ``python cli.py --help`` or, once installed, ``mentornet --help``.

Each command parses options, builds a config, calls one API function and says where its output went.
Errors end in a one-line ``Error: ...``, never a traceback, with exit status 2 for a usage error (a bad
option, name, combination or input file, found before the work starts: nothing was written) and 1 for
a failure of the work itself (a diverging loss, a full disk).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import sys
import warnings

# Two OpenMP threads spinning on a busy 2-core machine stall the tiny MentorNet ops.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:  # torch loads here, for seconds: Ctrl-C meanwhile is one line, not an import traceback
    import click  # noqa: E402

    from curricula.files import TOOLKIT_VERSION  # noqa: E402
    from curricula.options import MAX_SEED  # noqa: E402
    from mentor_training.trainer import RECIPES as MENTOR_RECIPES  # noqa: E402
    from student_training.callbacks import Callback  # noqa: E402
    from student_training.config import LOSS_DIFF_OPTIONS, StudentConfig  # noqa: E402
    from student_training.trainer import TrainingDiverged  # noqa: E402
    from student_training.label_issues import DEFAULT_SCORE as DEFAULT_ISSUE_SCORE, SCORES as ISSUE_SCORES  # noqa: E402
    from visualize.surface import MAX_RESOLUTION  # noqa: E402
except KeyboardInterrupt:
    sys.stderr.write("Interrupted while starting: nothing was done\n")
    sys.exit(1)

USER_ERRORS = (ValueError, TypeError, FileExistsError, FileNotFoundError, KeyError)
WORK_ERRORS = (TrainingDiverged,)  # failures of the work itself, reported as they are


class ToolkitGroup(click.Group):
    """Turns the library's input errors, and click's own usage errors, into one-line messages and a
    non-zero exit."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0  # click returns the exit code of --help
        except click.UsageError as error:
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
            if isinstance(error, click.NoSuchOption) and error.option_name == "--plugin":
                hint = " (--plugin goes before the command: cli.py --plugin FILE COMMAND ...)"
            click.echo(f"Error: {error.format_message()}{hint}", err=True)
            code = error.exit_code
        except click.ClickException as error:
            error.show()
            code = error.exit_code
        except click.Abort:
            click.echo("Aborted!", err=True)
            code = 1
        except OSError as error:  # a read-only folder, a full disk, no network: one line naming the file
            where = f" ({error.filename})" if error.filename else ""
            click.echo(f"Error: {error.strerror or type(error).__name__}{where}", err=True)
            code = 1
        except MemoryError:
            click.echo("Error: out of memory (a figure or batch too large for this machine?)", err=True)
            code = 1
        except Exception as error:  # noqa: BLE001 - never a traceback; MENTORNET_DEBUG=1 shows it
            if os.environ.get("MENTORNET_DEBUG"):
                raise
            click.echo(f"Error: {type(error).__name__}: {_one_line(error)} (MENTORNET_DEBUG=1 shows the traceback)",
                       err=True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx):
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except USER_ERRORS + WORK_ERRORS as error:
                raise click.ClickException(_one_line(error)) from None
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM that the command itself did not report (click: "Aborted!")
                click.echo("Interrupted: every file is written whole or not at all, so nothing is half-written",
                           err=True)
                raise click.exceptions.Exit(1) from None
            except BrokenPipeError:  # `... | head`: click would exit 1 without a word
                _silence_stdout()
                _stderr_line("Error: the output was closed before the command finished (a pipe into head?); every "
                             "file is written whole or not at all, so nothing is half-written")
                raise click.exceptions.Exit(1) from None


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning is one line on stderr, ``Warning: ...``, never a source excerpt."""
    click.echo(f"Warning: {message}", err=True)


def _one_line(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"missing key {message}" if isinstance(error, KeyError) else message


@contextlib.contextmanager
def _usage_errors():
    """Input errors found before any work starts are usage errors (exit status 2)."""
    try:
        yield
    except USER_ERRORS as error:
        raise click.UsageError(_one_line(error)) from None


def _versions() -> str:
    import torch

    return f"mentornet-toolkit {TOOLKIT_VERSION} (torch {torch.__version__}, Python {sys.version.split()[0]})"


def _program() -> str:
    """How this toolkit was run, for commands it suggests: ``mentornet`` once installed, else ``python`` and the
    path to cli.py as typed (``python cli.py`` where the caller is not cli.py itself, as under a test runner)."""
    name = os.path.basename(sys.argv[0])
    if name == "mentornet":
        return "mentornet"
    return f"python {shlex.quote(sys.argv[0])}" if name == "cli.py" else "python cli.py"


def _command_line() -> str:
    return f"{_program()} {shlex.join(sys.argv[1:])}"


def _stderr_line(message: str) -> None:
    """``message`` on stderr, unless stderr too is a closed pipe."""
    try:
        click.echo(message, err=True)
    except OSError:
        pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null after its pipe closed, so nothing more (nor the flush at exit) fails on it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (a test runner's stream): nothing to flush there
        pass


def _progress_bar(length: int, label: str):
    return click.progressbar(length=length, label=label, file=sys.stderr, show_eta=True,
                             update_min_steps=max(1, length // 200))


# Options that several commands share, declared once.
curriculum_params = click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
                                 help="Curriculum parameter, e.g. -p gamma=2; repeat for several.")


@click.group(cls=ToolkitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _, value: (click.echo(_versions()), ctx.exit()) if value else None,
              help="Show the toolkit, torch and Python versions, and exit.")
@click.option("--plugin", "plugin_files", multiple=True, type=click.Path(dir_okay=False), metavar="FILE.py",
              help="Python file that registers curricula or training callbacks, loaded before the command; repeat "
                   "for several. Installed packages register curricula through the 'mentornet.curricula' "
                   "entry-point group instead.")
def cli(plugin_files):
    """Learn MentorNets (Jiang et al., ICML 2018) and use them to train on noisy labels.

    \b
    Stages:
      learn-curriculum  fit a MentorNet to a curriculum or to a data-driven dump
      plot              draw weight surfaces of a curriculum or MentorNet
      train-student     train a StudentNet on noisy labels, weighted by a MentorNet
      show, list        describe a checkpoint; list curricula and pretrained MentorNets
    Using a trained student:
      evaluate          score a run's StudentNet on its test set or other labelled images
      find-label-issues rank a run's training samples by how likely their label is wrong
      export            write a run's StudentNet as a torch.export program
    """
    from curricula.plugins import load_entry_point_plugins, load_plugin_file

    with _usage_errors():
        load_entry_point_plugins()  # installed plugins first, so their errors come before any output
        for path in dict.fromkeys(plugin_files):
            load_plugin_file(path)


@cli.command("learn-curriculum")
@click.option("--curriculum", "curriculum_name", metavar="NAME",
              help="Registered curriculum to learn (see `list`). Targets come from the 2018 grid.")
@curriculum_params
@click.option("--dump", "dump_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="StudentNet dump (id epoch noisy_label clean_label loss) for a data-driven MentorNet.")
@click.option("--percentile", type=float, default=None,
              help="With --dump: the percentile P of the dump's losses that defines loss_diff, a fraction in "
                   "(0, 1] as every percentile of this toolkit (0.9 is the 90th percentile, the 2018 value). "
                   "[default: 0.9]")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Where to write the MentorNet checkpoint (.pt).")
@click.option("--recipe", type=click.Choice(["fast", "paper"]), default="fast", show_default=True,
              help="fast: large batches and a short cosine schedule. paper: the 2018 recipe "
                   "(Adam 0.1*0.9^(t/1000), clip 5, batch 32, 30k steps).")
@click.option("--balance", type=click.Choice(["none", "strata"]), default="none", show_default=True,
              help="strata: draw each batch equally from rows whose target is 0, 1, or in between, "
                   "so rare graded regions (mentornet_pd's late phase) are fitted.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Optimiser steps, instead of the recipe's ("
                   + "; ".join(f"{name}: {recipe.steps}" for name, recipe in MENTOR_RECIPES.items()) + ").")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Peak learning rate, instead of the recipe's ("
                   + "; ".join(f"{name}: {recipe.learning_rate:g}" for name, recipe in MENTOR_RECIPES.items()) + ").")
@click.option("--sample-size", type=click.IntRange(min=2), default=None,
              help="--curriculum: grid rows kept for fitting, split 80/20 into train and held-out (default: 100000, "
                   "the 2018 value). A dump's rows are all used.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed for the row sample, the split, the initial weights and the batches.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def learn_curriculum(curriculum_name, params, dump_path, percentile, out_path, recipe, balance, steps,
                     learning_rate, sample_size, seed, force):
    """Fit a MentorNet to a curriculum's weights, or to data-driven labels from a clean subset.

    \b
    Examples:
      python cli.py learn-curriculum --curriculum self_paced --out sp.pt
      python cli.py learn-curriculum --curriculum focal_loss -p gamma=3 --out focal3.pt
      python cli.py learn-curriculum --dump dump.txt --percentile 0.9 --out dd.pt
    """
    from mentor_training.learn import plan_learning, run_learning

    if (curriculum_name is None) == (dump_path is None):
        raise click.UsageError("give exactly one of --curriculum NAME or --dump FILE")
    if dump_path is not None and params:
        raise click.UsageError("-p/--param applies to --curriculum, not to --dump")
    if dump_path is None and percentile is not None:
        raise click.UsageError("--percentile applies to --dump (it defines loss_diff of a data-driven fit); a "
                               "curriculum's targets do not use it")
    if dump_path is not None and sample_size is not None:
        raise click.UsageError("--sample-size applies to --curriculum (rows of the curriculum's grid); a dump's rows "
                               "are all used")
    percentile = 0.9 if percentile is None else percentile
    sample_size = 100_000 if sample_size is None else sample_size
    with _usage_errors():
        _refuse_run_file(out_path, "--out")
        plan = plan_learning(curriculum=curriculum_name, params=params, dump=dump_path, percentile=percentile,
                             out=out_path, recipe=recipe, balance=balance, steps=steps,
                             learning_rate=learning_rate, sample_size=sample_size, seed=seed, force=force)
    if dump_path is not None:
        source = plan.split.source
        click.echo(f"dump: {source['num_rows']} samples ({source['duplicates_dropped']} duplicate ids "
                   f"dropped, last line kept), loss threshold {source['loss_threshold']:.4f} at percentile {percentile:g}")
    with _progress_bar(plan.recipe.steps, "fitting MentorNet") as bar:
        checkpoint = run_learning(plan, command=_command_line(),
                                  progress=lambda step, loss: bar.update(step - bar.pos))
    test = checkpoint["metrics"]["test"]
    line = f"held-out ({test['num_rows']} rows, {test['objective']}): mean abs error {test['mae']:.4f}"
    if "binary_accuracy" in test:
        line += f", side-of-0.5 accuracy {test['binary_accuracy']:.4f}"
    if "graded_mae" in test:
        line += f", graded-region MAE {test['graded_mae']:.4f}"
    click.echo(line)
    if "fidelity" in checkpoint["metrics"]:
        fid = checkpoint["metrics"]["fidelity"]
        parts = [f"{k} {fid[k]:.4f}" for k in ("binary_agreement", "graded_mae") if k in fid]
        click.echo(f"fidelity on {fid['num_points']} fresh points: {', '.join(parts)}")
    click.echo(f"wrote {out_path} ({checkpoint['metrics']['fit_seconds']:.1f} s fit)")


@cli.command("plot")
@click.option("--curriculum", "curriculum_name", metavar="NAME",
              help="Registered curriculum to draw (see `list`), or 'all' for a gallery of every one.")
@curriculum_params
@click.option("--mentornet", metavar="NAME|PATH", help="Pretrained MentorNet name or checkpoint file to draw.")
@click.option("--run", "run_dirs", multiple=True, type=click.Path(), metavar="DIR",
              help="A train-student run folder (an unfinished one is drawn up to its last epoch, and said so): "
                   "draw its test accuracy, mean weight on clean and corrupted samples, detector AUC and fitted "
                   "corrupted labels per epoch. Repeat to overlay several runs; the legend names the options in "
                   "which they differ.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Figure to write; .png, .pdf or .svg (the extension picks the format).")
@click.option("--kind", type=click.Choice(["surface", "heatmap"]), default=None,
              help="surface: 3-D weight over (loss, loss_diff); heatmap: the same as 2-D colour maps, better "
                   "for print. Default: surface for one weighter, heatmap for --compare and 'all'.")
@click.option("--compare", is_flag=True,
              help="With --mentornet: draw it beside the curriculum it was fitted to, and their |difference|.")
@click.option("--epochs", "epochs_text", metavar="E1,E2,...",
              help="Epochs (training progress in percent, 0..99), one panel each. Default: the 2018 "
                   "visualiser's 0,10,18,20,30,40,50,60,70,80,90,95,99; 10,50,95 for --compare and 'all'.")
@click.option("--loss-range", "loss_range_text", metavar="LO,HI",
              help="Loss axis: the StudentNet's per-sample cross-entropy, in nats (default: 0,10).")
@click.option("--loss-diff-range", "loss_diff_range_text", metavar="LO,HI",
              help="loss_diff axis: loss minus the moving-average loss percentile, in nats (default: -5,5).")
@click.option("--resolution", type=click.IntRange(2, MAX_RESOLUTION), default=None,
              help="Grid points per axis (default: 101).")
@click.option("--animate", "animate_path", type=click.Path(dir_okay=False), metavar="FILE.gif",
              help="Also (or instead of --out) write a GIF of the weight over epochs 0..99.")
@click.option("--frames", type=click.IntRange(1, 100), default=None,
              help="With --animate: number of epochs shown, evenly spaced over 0..99 (default: 100, every one).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --animate: frames per second (default: 10).")
@click.option("--width", type=click.IntRange(min=50), default=None,
              help="Image width in pixels (default: sized to the panels).")
@click.option("--height", type=click.IntRange(min=50), default=None,
              help="Image height in pixels (default: sized to the panels).")
@click.option("--dpi", type=click.FloatRange(min=0, min_open=True), default=100, show_default=True,
              help="Pixels per inch of PNG and GIF output.")
@click.option("--force", is_flag=True, help="Overwrite --out and --animate if they exist.")
def plot_command(curriculum_name, params, mentornet, run_dirs, out_path, kind, compare, epochs_text, loss_range_text,
                 loss_diff_range_text, resolution, animate_path, frames, fps, width, height, dpi, force):
    """Draw the weight a curriculum or MentorNet gives a sample, over (loss, loss_diff), per epoch; or the
    training curves of finished runs (--run).

    Like the 2018 visualiser, loss and loss_diff are treated as independent (label 0): on a real
    StudentNet they are not, so parts of each surface are never visited in training.

    \b
    Examples:
      python cli.py plot --curriculum mentornet_pd --out pd.png
      python cli.py plot --curriculum focal_loss -p gamma=3 --kind heatmap --out focal3.pdf
      python cli.py plot --mentornet sp.pt --compare --out sp_vs_self_paced.png
      python cli.py plot --curriculum spcl_linear --animate spcl.gif
      python cli.py plot --curriculum all --out gallery.png
      python cli.py plot --run runs/baseline --run runs/pd --out curves.png
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no window, whatever the environment says
    from visualize import parse_epochs, parse_range, plan_plot, run_plot

    # Options left out are None, so plan_plot refuses only those given where they are not used.
    if not run_dirs and (curriculum_name is None) == (mentornet is None):
        raise click.UsageError("give exactly one of --curriculum NAME (or 'all'), --mentornet NAME|PATH or --run DIR")
    with _usage_errors():
        loss_range = parse_range(loss_range_text, name="--loss-range") if loss_range_text is not None else None
        loss_diff_range = (parse_range(loss_diff_range_text, name="--loss-diff-range")
                           if loss_diff_range_text is not None else None)
        plan = plan_plot(out=out_path, curriculum=curriculum_name, params=params, mentornet=mentornet, kind=kind,
                         compare=compare, animate=animate_path, frames=frames, fps=fps,
                         epochs=parse_epochs(epochs_text) if epochs_text is not None else None,
                         loss_range=loss_range, loss_diff_range=loss_diff_range, resolution=resolution,
                         width=width, height=height, dpi=dpi, force=force, runs=run_dirs)
    if plan.animate is None:
        result = run_plot(plan)
    else:
        with _progress_bar(len(plan.frame_epochs), "drawing GIF frames") as bar:
            result = run_plot(plan, progress=lambda done, total: bar.update(done - bar.pos))
    for note in result.notes:
        click.echo(note)
    for path in result.paths:
        click.echo(f"wrote {path}")


def _click_option(cls, f, *, nested: bool = False):
    """The click option that field ``f`` of ``cls`` declares (see ``curricula.options.option``)."""
    from curricula.options import choices_of, field_type, flag_name

    meta = f.metadata
    kind, nullable = field_type(cls, f.name)
    default = None if nested else f.default
    help_text = meta["help"]
    choices = choices_of(f)
    if choices and not all(choice in help_text for choice in choices):
        help_text += f" One of: {', '.join(choices)}."
    if nested:
        help_text += " Default: the MentorNet's (with --mentormix: MentorMix's, see --mentormix)."
    if kind is bool:
        flags = meta["flags"] or f"{flag_name(f.name)}/--no-{f.name.replace('_', '-')}"
        return click.option(flags, f.name, default=default, show_default=default is not None, help=help_text)
    click_type = {int: click.INT, float: click.FLOAT, str: click.STRING}[kind]
    return click.option(meta["flags"] or flag_name(f.name), f.name, type=click_type, default=default,
                        show_default=default is not None, metavar=meta["metavar"], help=help_text)


def config_options(cls):
    """Decorator adding one click option per option field of ``cls`` (nested option groups flattened)."""
    from curricula.options import option_fields

    def decorate(function):
        options = []
        for f in option_fields(cls):
            if f.metadata["cli"]:
                options.append(_click_option(cls, f))
        for f in dataclasses.fields(cls):
            nested = f.metadata.get("nested")
            if nested is not None:
                options += [_click_option(nested, g, nested=True) for g in option_fields(nested) if g.metadata["cli"]]
        for decorator in reversed(options):
            function = decorator(function)
        return function

    return decorate


def _given_options(ctx: click.Context, options: dict) -> dict:
    """The options the user typed on the command line (not defaults)."""
    return {name: value for name, value in options.items()
            if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE}


@cli.command("train-student")
@config_options(StudentConfig)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Start from the options in FILE: a run's config.json (re-runs it exactly) or a JSON/TOML file "
                   "of options written by hand; options given on the command line override it and are reported.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=True), metavar="DIR",
              help="Run folder: config.json, noisy_labels.npz, metrics.csv, last.pt, best.pt.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its last.pt, with its config.json. Options given beside it "
                   "must equal the run's, except --device, --compile and --precision.")
@click.option("--force", is_flag=True, help="Start over in an --out folder that already holds a run.")
@click.pass_context
def train_student(ctx, config_file, out_dir, resume, force, **options):
    """Train a StudentNet on noisy labels, weighting each sample's loss with a MentorNet.

    \b
    Examples:
      python cli.py train-student --dataset digits --noise 0.4 --studentnet mlp --mentornet mentornet_pd --out runs/pd
      python cli.py train-student --dataset cifar10 --data-dir data --noise 0.4 --mentornet mentornet_pd --out runs/c10
      python cli.py train-student --config runs/pd/config.json --seed 1 --out runs/pd_seed1
      python cli.py train-student --out runs/pd --resume
      torchrun --standalone --nproc_per_node 2 cli.py train-student --batch-size 128 ... --out runs/ddp

    \b
    Under torchrun --batch-size is the global batch, split evenly over the processes, and only rank 0
    prints and writes files.
    """
    from pathlib import Path

    from student_training import run_folder
    from student_training.config import (RECIPE_DEPENDS_ON, RECIPE_OPTIONS, StudentConfig, describe_changes,
                                         format_value, read_config_file_with_pins)
    from student_training.data_driven import CleanSubsetDump
    from student_training.distributed import shutdown, world_from_env
    from student_training.trainer import (check_resume_changes, check_run, discard_unsaved_start, prepare_run,
                                          resume_config, summarize, train)

    if not world_from_env().is_main:  # rank 0 speaks for the run; errors still reach stderr
        sys.stdout = open(os.devnull, "w")
    given = _given_options(ctx, options)
    with _usage_errors():
        if resume and force:
            raise click.UsageError("--resume and --force exclude each other")
        if "epochs" in given and given.get("max_steps") is not None:
            raise click.UsageError("--epochs and --max-steps exclude each other: --max-steps N trains N steps "
                                   "(the epochs follow from the batches per epoch); give one")
        if resume and config_file:
            raise click.UsageError("--resume continues with the run's own config.json; drop --config")
        if world_from_env().is_main:  # what a killed --force run left, settled before config.json is read
            run_folder.recover_replaced_run(Path(out_dir))
        if resume:
            base = resume_config(Path(out_dir), None)
            # a typed default (--lr-schedule auto) means the student's own, which for this run is what it recorded
            given = {name: value for name, value in given.items()
                     if not (name in RECIPE_OPTIONS and value == RECIPE_OPTIONS[name])}
            # the options typed that may not change, named before the merged config is checked as a whole
            # (a value typed equal to the one a default stood for, e.g. --lr 0.1 on a run of format 1 that left
            # --lr to the student's 0.1, is no change)
            check_resume_changes(Path(out_dir), [
                (name, getattr(base, name), value) for name, value in given.items()
                if hasattr(base, name) and getattr(base, name) != value
                and not (name in RECIPE_OPTIONS and base.effective(name) == base.with_options({name: value})
                         .effective(name))], saved=base)
            config = base.with_options(given)
        elif config_file:
            base, pins = read_config_file_with_pins(config_file)
            overrides = _overrides(base, given, pins)
            config = base.with_options(overrides)
            note = _run_length_note(base, config, config_file)
            followed = []  # a pinned default that follows an option changed: said after the changes themselves
            for name, old, new in describe_changes(base, config):
                flag = f"--{name.replace('_', '-')}"
                if name == "max_steps" and note:
                    click.echo(note)
                elif name in pins and name not in given:
                    causes = ", ".join(f"--{dep.replace('_', '-')}" for dep in RECIPE_DEPENDS_ON[name]
                                       if dep in given and given[dep] != getattr(base, dep))
                    followed.append(f"{flag} follows {causes}: {config.shown(name)}, where the run in {config_file} "
                                    f"had {base.shown(name)}")
                else:  # a default of RECIPE_OPTIONS is named with the value it stands for
                    typed = config.shown(name) if name in RECIPE_OPTIONS else format_value(new)
                    click.echo(f"{flag} {typed} overrides {base.shown(name)} from {config_file}")
            for line in followed:
                click.echo(line)
        else:
            config = StudentConfig().with_options(options)
        config = check_run(config, out_dir, resume=resume, force=force)
        run = prepare_run(config, out_dir, resume=resume, force=force, callbacks=(_ProgressBar(),))
    finished_before = run.state.epoch >= run.epochs  # a --resume of a finished run trains and writes nothing
    try:
        try:
            _describe_run(run)
        except BaseException:  # a closed pipe or Ctrl-C while the run is described: nothing trained, nothing kept
            discard_unsaved_start(run)
            raise
        train(run)
    except (KeyboardInterrupt, BrokenPipeError) as stop:  # Ctrl-C, SIGTERM or SIGHUP (main), `| head`
        if isinstance(stop, BrokenPipeError):
            _silence_stdout()
        how = "Stopped (its output was closed: a pipe into head?)" if isinstance(stop, BrokenPipeError) \
            else "Interrupted"
        if run.replaced_run_restored:
            _stderr_line(f"{how} before the first epoch was saved: the run's files were removed, and the run that "
                         f"--force was replacing is back in {out_dir}")
        elif (Path(out_dir) / "last.pt").is_file():
            _stderr_line(f"{how}: the epochs finished so far are saved; continue with: {_program()} train-student "
                         f"--out {shlex.quote(str(out_dir))} --resume")
        else:
            _stderr_line(f"{how} before the first epoch was saved: nothing to resume; the run's files were removed, "
                         "so the same command starts over")
        raise click.exceptions.Exit(1) from None  # said above: no "Aborted!" after it
    finally:
        run.release()
    summary = summarize(run.state.rows)
    click.echo(f"final test accuracy {summary['final_test_accuracy']:.4f}; flipped labels fitted "
               f"{summary['final_fit_noisy']:.3f}; weight AUC clean-vs-noisy {summary['final_detector_auc']:.3f}")
    if summary["selected_epoch"] is not None:
        click.echo(f"best.pt: epoch {summary['selected_epoch']}, chosen on {run.validation_description()} "
                   f"(validation accuracy {summary['selected_val_accuracy']:.4f}, test accuracy "
                   f"{summary['selected_test_accuracy']:.4f})")
    else:
        click.echo("no validation split (--validation-fraction 0): best.pt not written; last.pt holds the final student")
    for callback in run.callbacks:
        for row in getattr(callback, "rows", []):
            if row.get("status", "fitted") != "fitted":
                kind = "fit" if run.config.learns_mentornet else "re-fit"
                click.echo(f"{kind} at progress epoch {row['progress_epoch']} {row['status']}")
                continue
            if "heldout_mae" in row:
                click.echo(f"re-fitted the MentorNet at progress epoch {row['progress_epoch']} on {row['rows']} "
                           f"clean-subset samples ({row['noisy_fraction']:.0%} noisy): held-out MAE "
                           f"{row['heldout_mae']:.4f}")
            else:  # --mentornet learn
                click.echo(f"learned a MentorNet at progress epoch {row['progress_epoch']} from {row['rows']} probe "
                           f"losses ({row['noisy_fraction']:.0%} corrupted): AUC {row['fit_auc']:.3f}, selects "
                           f"{row['selected']:.0%} at precision {row['precision']:.3f} -> {row['checkpoint']}")
    if run.config.dump and Path(run.config.dump).is_file() and not finished_before:
        dumped = next((callback.progress for callback in run.callbacks if isinstance(callback, CleanSubsetDump)), None)
        asked = run.config.dump_at_epoch
        when = "" if dumped is None else f" at progress epoch {dumped}" + (
            f" (no step of this run falls on --dump-at-epoch {asked}: the first after it)" if dumped != asked else "")
        click.echo(f"wrote the clean-subset dump {run.config.dump}{when}")
    written = run_folder.run_file_names(run.out)
    click.echo(f"{'the folder holds' if finished_before else 'wrote'} {out_dir}/ ({', '.join(written)})")
    shutdown(run.world)


def _overrides(base, given: dict, pins: dict | None = None) -> dict:
    """``given`` (options typed on the command line over a config file's ``base``), with what they clear in the
    file: ``--no-mentormix`` clears the file's own MentorMix options (--mixup-alpha, --second-reweight), which apply
    only with it (else they would be refused as given without --mentormix, though the user did not type them), and
    ``--epochs`` clears the file's ``max_steps``, which would otherwise set the run's length in its place. A value
    the file's run ``pins`` to its own default (see :func:`student_training.config.recipe_pins`) goes back to the
    default when an option it depends on changes (``RECIPE_DEPENDS_ON``: a run's weight decay follows
    ``--studentnet`` and ``--mentormix``, its augmentation ``--dataset``). Each change is then listed."""
    from student_training.config import RECIPE_DEPENDS_ON, RECIPE_OPTIONS

    cleared = {name: RECIPE_OPTIONS[name] for name in (pins or {}) if name not in given
               and any(dep in given and given[dep] != getattr(base, dep) for dep in RECIPE_DEPENDS_ON[name])}
    if given.get("mentormix") is False and base.mentormix:
        cleared.update({name: None for name in ("mixup_alpha", "second_reweight")
                        if getattr(base, name) is not None and name not in given})
    if "epochs" in given and base.max_steps is not None and "max_steps" not in given:
        cleared["max_steps"] = None
    return {**given, **cleared}


def _run_length_note(base, config, config_file: str) -> str | None:
    """What ``--max-steps`` typed over a config file does to the file's ``epochs`` (the steps set the run's length;
    the epochs follow from the batches per epoch), or ``--epochs`` to its ``max_steps``, in words; None when the
    length is not changed that way."""
    if config.max_steps == base.max_steps:
        return None
    if config.max_steps is None:  # cleared by --epochs (_overrides)
        return (f"--epochs {config.epochs} sets the run's length in place of max_steps = {base.max_steps} from "
                f"{config_file}")
    if base.max_steps is not None:
        return None  # one step count for another: the usual override line says it
    return (f"--max-steps {config.max_steps} sets the run's length in place of epochs = {base.epochs} from "
            f"{config_file} (the epochs follow from the batches per epoch)")


class _ProgressBar(Callback):
    """One progress bar over the run's epochs, on stderr (rank 0 only)."""

    name = "progress_bar"

    def on_train_start(self, run):
        stream = sys.stderr if run.is_main else open(os.devnull, "w")
        self.bar = click.progressbar(length=run.epochs, label="training", item_show_func=lambda row: row, file=stream)
        self.bar.__enter__()
        self.bar.update(run.state.epoch)

    def on_epoch_end(self, run, epoch, row):
        text = f"epoch {row['epoch']} loss {row['loss']:.3f} test acc {row['test_accuracy']:.4f}"
        fits = [fit for callback in run.callbacks for fit in getattr(callback, "rows", [])]
        if fits:  # the latest MentorNet fit or re-fit, as it happens (all of them are listed at the end)
            last = fits[-1]
            done = last.get("status", "fitted") == "fitted"
            text += (f"; fit at progress epoch {last['progress_epoch']}: "
                     + (f"selects {last['selected']:.0%}" if done and "selected" in last else
                        "done" if done else "skipped"))
        self.bar.update(1, text)

    def on_train_end(self, run):
        self.bar.__exit__(None, None, None)


def _describe_run(run) -> None:
    config = run.config
    if run.state.epoch and run.state.epoch >= run.epochs:
        click.echo(f"the run in {run.out} has finished its {run.epochs} epoch{'s' * (run.epochs != 1)}: nothing to "
                   "train, nothing rewritten "
                   "(its summary follows)")
    click.echo(f"{'resuming at epoch ' + str(run.state.epoch) if run.state.epoch else 'run'}: "
               f"{config.dataset} ({len(run.data.train_indices)} train, {len(run.data.clean_subset_indices)} "
               f"clean held out, {len(run.data.test_labels)} test), student {config.studentnet}, "
               f"mentornet {config.mentornet}, device {run.device}"
               + (f", {run.world.size} processes (DistributedDataParallel)" if run.world.enabled else ""))
    click.echo(f"labels: {run.noise.summary()}")
    click.echo(f"precision: {run.precision.describe()}" + _precision_change(run))
    recipe = run.recipe
    click.echo(f"optimiser: SGD momentum {config.momentum}, lr {recipe.lr} ({recipe.lr_schedule}), "
               f"weight decay {recipe.weight_decay} ({recipe.decay_mode}), batch {config.batch_size}, "
               f"{run.epochs} epoch{'s' * (run.epochs != 1)} = {run.total_steps} "
               f"step{'s' * (run.total_steps != 1)}, augment {config.augmented}")
    if config.learns_mentornet:
        parts = run.clean_parts
        click.echo(f"learning the MentorNet from the clean subset: {len(parts.probe)} probe images (noisy labels, "
                   f"weighted), {len(parts.trusted)} trusted (verified labels, {config.learn_trusted_batch} a step), "
                   f"{len(parts.validation)} validation; fresh fits at progress epochs {config.learn_epochs} on the last "
                   f"{config.learn_window}; weights {config.learn_weights}{_learned_threshold(config)}"
                   + f"; features {config.learn_features}; before the first fit weight {config.learn_burn_in_weight:g}")
    elif run.weighting is not None:
        origin = (f" (--mentormix defaults, not {config.mentornet}'s student_defaults: p 0.7, decay 0.5, burn-in 10, "
                  "no example dropout; weighting options given override them)" if run.mentormix is not None else "")
        shown, weighter = run.weighting.to_dict(), run.mentor_weighter
        if not getattr(getattr(weighter, "mentor", None), "config", None) or weighter.mentor.config.uses_loss_diff:
            unused = ""
        else:  # fitted on the loss alone: the percentile and its moving average feed nothing
            shown = {key: value for key, value in shown.items() if key not in LOSS_DIFF_OPTIONS}
            unused = f" ({', '.join(LOSS_DIFF_OPTIONS)} unused: {config.mentornet} was fitted without loss_diff)"
        click.echo("weighting: " + ", ".join(f"{k}={v}" for k, v in shown.items()) + unused + origin)
    if run.mentormix is not None:
        second = run.mentormix.second_reweight
        decay = ("no weight decay unless --weight-decay is given, as in the official code" if second and
                 config.weight_decay is None else "no weight decay" if recipe.weight_decay == 0
                 else f"weight decay {recipe.weight_decay:g}")
        click.echo(f"mentormix: mixup alpha {run.mentormix.alpha:g}, second reweighting {'on' if second else 'off'} "
                   f"({decay}); clean pass keeps the BN statistics; evaluated with the raw weights (no EMA)")


def _learned_threshold(config) -> str:
    """How ``--mentornet learn`` sets its threshold, for the start-up line ("" with soft weights)."""
    if config.learn_weights != "threshold":
        return ""
    if config.learn_precision is not None:
        return f" set by each fit for probe precision {config.learn_precision:g}"
    raised = config.learn_threshold_prior == "odds"
    tau = "its raised threshold" if raised else f"{config.learn_threshold:g}"
    fallback = {"precision": f"; a fit whose outputs never reach it selects down to a probe precision of {tau}",
                "min": f"; each fit lowers it to the lowest output whose probe selection's clean share is at least "
                       f"{tau}, where that is below it"}
    prior = " read at an even prior, so raised by each fit's probe clean share" if raised else ""
    rule = fallback.get(config.learn_threshold_fallback, "")
    return f" at {config.learn_threshold:g}{prior}{f' ({rule[2:]})' if rule else ''}"


def _precision_change(run) -> str:
    """On a resume at another precision, what the run computed in before."""
    state = next((callback for callback in run.callbacks if callback.name == "precision"), None)
    before = getattr(state, "resumed_from", None)
    return f" (until this resume: {before})" if before and before != run.precision.name else ""


@cli.command("show")
@click.argument("mentornet", metavar="NAME|PATH")
def show_command(mentornet):
    """Describe a MentorNet checkpoint: its source, held-out metrics and StudentNet defaults."""
    import json

    from mentor_training.checkpoint import mentornet_from_checkpoint, read_checkpoint
    from mentor_training.pretrained import resolve_mentornet_path

    with _usage_errors():
        path = resolve_mentornet_path(mentornet)
        checkpoint = read_checkpoint(path)
        mentornet_from_checkpoint(checkpoint, origin=str(path))  # what loading it checks: its weights fit the net
    shown = {key: checkpoint[key] for key in ("source", "student_defaults", "feature_spec", "model_config",
                                              "provenance")}
    shown["metrics"] = {k: v for k, v in checkpoint["metrics"].items() if k in ("test", "fidelity", "fit_seconds")}
    if not checkpoint["model_config"].get("uses_loss_diff", True):
        shown["student_defaults_unused"] = dict.fromkeys(
            LOSS_DIFF_OPTIONS, "not used: fitted without loss_diff (train-student refuses the option)")
    shown["format_version"] = checkpoint["format_version"]
    click.echo(json.dumps(shown, indent=2, sort_keys=True))


@cli.command("list")
def list_command():
    """Show the registered curricula with their parameters, and the pretrained MentorNets."""
    from curricula import curriculum_parameters, list_curricula
    from mentor_training import read_manifest

    click.echo("Curricula (learn with: learn-curriculum --curriculum NAME [-p key=value]):")
    for name in list_curricula():
        params = curriculum_parameters(name)
        shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "no parameters"
        click.echo(f"  {name:<22} {shown}")
    click.echo("")
    click.echo("Pretrained MentorNets (use by name, e.g. load_mentornet('mentornet_pd')):")
    manifest = read_manifest()
    if not manifest:
        click.echo("  none")
    for name, entry in sorted(manifest.items()):
        metrics, source = entry.get("metrics", {}), entry.get("source", {})
        if source.get("type") == "learned_in_run":  # fitted on its own rows: no held-out split
            fit = metrics.get("fit") or {}
            click.echo(f"  {name:<30} from {'learned in a run':<22} fit AUC {fit.get('fit_auc', float('nan')):.4f}")
            continue
        test = metrics.get("test") or {}
        origin = source.get("name") or f"data-driven, P={source.get('percentile')}"
        click.echo(f"  {name:<30} from {origin:<22} held-out MAE {test.get('mae', float('nan')):.4f}")


# ----------------------------------------------------------------------- using a trained student

def _refuse_run_file(path, option: str) -> None:
    """Refuse an output path that is one of a run folder's own files, --force or not (it would break the run)."""
    from pathlib import Path

    from student_training.run_folder import check_not_run_file

    check_not_run_file(Path(path), option=option)


run_option = click.option("--run", "run_dir", required=True, type=click.Path(), metavar="DIR",
                          help="A train-student run folder (config.json, noisy_labels.npz, last.pt, best.pt).")
checkpoint_option = click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default=None,
                                 help="With a run folder: best: best.pt, the student at the epoch the run chose as "
                                      "its best (the default); last: last.pt, the student after the last epoch "
                                      "trained. (--run FILE.pt names the file itself.)")


@cli.command("evaluate")
@run_option
@checkpoint_option
@click.option("--dataset", metavar="NAME", default=None,
              help="Score on this data set instead of the run's own (cifar10, cifar100, fashion-mnist, digits, or "
                   "npz:PATH); its classes and image shape must be the student's.")
@click.option("--data-dir", metavar="DIR", default=None,
              help="Folder holding the data set files. Default: the run's --data-dir for its own data set.")
@click.option("--split", type=click.Choice(["test", "train"]), default=None,
              help="test (the default): the test set. train: the training images (the run's --subset for its own "
                   "data set), against their true labels.")
@click.option("--noise-file", metavar="FILE[:KEY]", default=None,
              help="Score the training images against the labels in FILE (.npy/.npz/.pt, full length, official "
                   "order, read as train-student --noise-file reads it, e.g. CIFAR-10_human.pt:worse_label); "
                   "implies --split train.")
@click.option("--per-class", is_flag=True, help="Also print the accuracy of each class (by the label scored against).")
@click.option("--predictions", "predictions_path", type=click.Path(dir_okay=False), metavar="FILE.csv",
              help="Write one row per image: sample_id (test-set index, or for --split train the index in the "
                   "official training set), label (scored against), prediction (top-1 class), confidence (its "
                   "softmax probability).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Images per forward pass.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the student runs.")
@click.option("--force", is_flag=True, help="Overwrite --predictions if it exists.")
def evaluate_command(run_dir, which, dataset, data_dir, split, noise_file, per_class, predictions_path, batch_size,
                     device, force):
    """Score a run's StudentNet: top-1 accuracy on its test set, another data set, or a noise file's labels.

    \b
    Examples:
      python cli.py evaluate --run runs/pd
      python cli.py evaluate --run runs/pd --checkpoint last --per-class --predictions pd_test.csv
      python cli.py evaluate --run runs/pd --dataset npz:other.npz
      python cli.py evaluate --run runs/c10 --noise-file CIFAR-10_human.pt:worse_label
    """
    from curricula.files import check_output_path
    from student_training.inference import evaluate_student, evaluation_data, load_student, write_predictions
    from student_training.trainer import resolve_device

    with _usage_errors():
        if noise_file is not None and split == "test":
            raise click.UsageError("--noise-file scores the training images against its labels; it cannot go with "
                                   "--split test (drop --split, or give --split train)")
        split = split or "test"
        if predictions_path is not None:
            _refuse_run_file(predictions_path, "--predictions")
            check_output_path(predictions_path, force=force)
        model, config = load_student(run_dir, which=which)
        model.to(resolve_device(device))
        data = evaluation_data(model, config, dataset=dataset, data_dir=data_dir, split=split, noise_file=noise_file)
    _describe_checkpoint(model)
    with _progress_bar(len(data.images), "scoring") as bar:
        result = evaluate_student(model, data, batch_size=batch_size,
                                  progress=lambda done, total: bar.update(done - bar.pos))
    click.echo(f"{data.description}: top-1 accuracy {result.accuracy:.4f} "
               f"({int((result.prediction == result.label).sum())}/{len(result.label)})")
    if data.true_labels is not None:
        true = data.true_labels.numpy()
        click.echo(f"against the true labels: top-1 accuracy {float((result.prediction == true).mean()):.4f}")
    if per_class:
        click.echo(result.per_class().to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if predictions_path is not None:
        click.echo(f"wrote {write_predictions(result, predictions_path, force=force)}")


def _describe_checkpoint(model) -> None:
    info = model.checkpoint
    state = {None: "", True: f" (the run is finished: {info.run_epochs} of {info.run_epochs} epochs)",
             False: f" (the run is unfinished: {info.epochs_done if info.epochs_done is not None else info.epoch} of "
                    f"{info.run_epochs} epochs planned)"}[info.finished]
    click.echo(f"student: {info.path} ({info.which}, epoch {info.epoch}){state}")


@cli.command("find-label-issues")
@run_option
@click.option("--out", "out_path", type=click.Path(dir_okay=False), metavar="FILE.csv", default=None,
              help="Where to write the ranking. Default: label_issues.csv in the run folder.")
@click.option("--score", type=click.Choice(list(ISSUE_SCORES)), default=DEFAULT_ISSUE_SCORE, show_default=True,
              help="mean_loss: the sample's loss against its given label, averaged over every epoch (chosen on "
                   "runs with known truth, see README); early_loss: averaged over the epochs up to the one the "
                   "validation split chose, before the student memorises (better under symmetric noise, worse "
                   "under pair flips, see README); mean_weight: 1 - its mean MentorNet weight; final_loss, "
                   "final_weight: the same after the last epoch only. Runs without a MentorNet have only the loss "
                   "scores.")
@click.option("--top", default="20%", show_default=True, metavar="K|P%",
              help="Measure precision and recall of the first K samples (or P percent of them) when the run knows "
                   "the clean labels.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def find_label_issues_command(run_dir, out_path, score, top, force):
    """Rank a finished run's training samples by how likely their given label is wrong.

    Writes sample_id (index in the official training set), given_label, predicted_label (the final
    student's top-1 class) and score (higher: more likely wrong), most likely wrong first. The score comes
    from the per-sample losses and MentorNet weights recorded after every epoch of the run. Where the run
    knows which labels it corrupted, prints the precision and recall of the top K and the ranking's AUC.

    \b
    Examples:
      python cli.py find-label-issues --run runs/pd
      python cli.py find-label-issues --run runs/pd --top 500 --out pd_issues.csv
    """
    from pathlib import Path

    from curricula.files import check_output_path
    from student_training.label_issues import SCORES, find_label_issues, parse_top, write_label_issues

    out_path = out_path or str(Path(run_dir) / "label_issues.csv")
    with _usage_errors():
        if not Path(run_dir).is_dir():
            raise ValueError(f"--run {run_dir} is not a folder")
        _refuse_run_file(out_path, "--out")
        check_output_path(out_path, force=force)
        issues = find_label_issues(run_dir, score=score)
        k = parse_top(top, len(issues.ranking))
    source = "MentorNet weights and losses" if issues.weighted else "losses alone (the run recorded no MentorNet weights)"
    click.echo(f"{len(issues.ranking)} training samples ranked by {score} ({SCORES[score]}), from {source} over "
               f"{issues.epochs} epochs")
    if issues.is_wrong is None:
        click.echo("the run knows no corrupted labels (none differ from the clean ones): precision and recall "
                   "cannot be measured")
    else:
        precision, recall = issues.precision_recall(k)
        found, total = int(issues.is_wrong[:k].sum()), int(issues.is_wrong.sum())
        click.echo(f"top {k}: precision {precision:.4f} ({found} of {k} labels are corrupted), recall {recall:.4f} "
                   f"({found} of {total} corrupted labels); ranking AUC {issues.auc:.4f}")
    click.echo(f"wrote {write_label_issues(issues, out_path, force=force)}")


@cli.command("export")
@run_option
@checkpoint_option
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), metavar="FILE.pt2",
              help="Where to write the exported student (torch.export format, .pt2).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def export_command(run_dir, which, out_path, force):
    """Export a run's StudentNet with torch.export, so plain PyTorch runs it without this toolkit.

    The program takes uint8 images N x C x H x W (pixel values 0..255, any N; the per-image
    standardisation is inside) and returns float32 logits N x classes:

    \b
      program = torch.export.load("student.pt2")
      logits = program.module()(images)

    \b
    Examples:
      python cli.py export --run runs/pd --out student.pt2
    """
    from curricula.files import check_output_path
    from student_training.inference import export_student, load_student

    with _usage_errors():
        if not out_path.endswith(".pt2"):
            raise ValueError(f"--out {out_path} must end in .pt2 (torch.export's file format)")
        check_output_path(out_path, force=force)
        model, _ = load_student(run_dir, which=which)
    _describe_checkpoint(model)
    info = model.checkpoint
    path = export_student(model, out_path, force=force, source=f"{info.path} (epoch {info.epoch})")
    click.echo(f"wrote {path}: uint8 images {'x'.join(map(str, ('N', *model.image_shape)))} in, logits "
               f"N x {model.num_classes} out")
def _terminate(signum, frame):
    """SIGTERM (e.g. torchrun stopping its workers, a job scheduler's timeout) and SIGHUP (the terminal closed)
    unwind like Ctrl-C, so temporary files are removed, a run that saved no epoch leaves nothing, and the run
    folder's lock is released."""
    raise KeyboardInterrupt


def main():
    import signal

    from student_training.host_memory import keep_freed_memory

    signal.signal(signal.SIGTERM, _terminate)
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:  # not under nohup
        signal.signal(signal.SIGHUP, _terminate)
    keep_freed_memory()  # freed activation buffers stay for the next step: no page faults per step on the CPU
    cli(prog_name="mentornet" if os.path.basename(sys.argv[0]) == "mentornet" else "cli.py")


if __name__ == "__main__":
    main()
