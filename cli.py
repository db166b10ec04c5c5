"""Command-line interface: ``python cli.py --help`` or, once installed, ``mentornet --help``.

Each command parses options, builds a config, calls one API function and says where its output went.
Errors in the input end in a one-line ``Error: ...`` and exit status 1, never a traceback.
"""

from __future__ import annotations

import os
import shlex
import sys

# Two OpenMP threads spinning on a busy 2-core machine stall the tiny MentorNet ops.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click  # noqa: E402

USER_ERRORS = (ValueError, TypeError, FileExistsError, FileNotFoundError, KeyError)


class ToolkitGroup(click.Group):
    """Turns the library's input errors, and click's own usage errors, into one-line messages and a
    non-zero exit."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0  # click returns the exit code of --help
        except click.UsageError as error:
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
            click.echo(f"Error: {error.format_message()}{hint}", err=True)
            code = error.exit_code
        except click.ClickException as error:
            error.show()
            code = error.exit_code
        except click.Abort:
            click.echo("Aborted!", err=True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if isinstance(error, KeyError):
                message = f"missing key {message}"
            raise click.ClickException(message) from None


def _command_line() -> str:
    return "python cli.py " + shlex.join(sys.argv[1:])


def _progress_bar(length: int, label: str):
    return click.progressbar(length=length, label=label, file=sys.stderr, show_eta=True,
                             update_min_steps=max(1, length // 200))


# Options that several commands share, declared once.
curriculum_params = click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
                                 help="Curriculum parameter, e.g. -p gamma=2; repeat for several.")


@click.group(cls=ToolkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--plugin", "plugin_files", multiple=True, type=click.Path(dir_okay=False), metavar="FILE.py",
              help="Python file that registers curricula, loaded before the command; repeat for several. "
                   "Installed packages register through the 'mentornet.curricula' entry-point group instead.")
def cli(plugin_files):
    """Learn MentorNets (Jiang et al., ICML 2018) and use them to train on noisy labels.

    \b
    Stages:
      learn-curriculum  fit a MentorNet to a curriculum or to a data-driven dump
      plot              draw weight surfaces of a curriculum or MentorNet
      train-student     train a StudentNet on noisy labels, weighted by a MentorNet
      show, list        describe a checkpoint; list curricula and pretrained MentorNets
    """
    from curricula.plugins import load_entry_point_plugins, load_plugin_file

    load_entry_point_plugins()  # installed plugins first, so their errors come before any output
    for path in dict.fromkeys(plugin_files):
        load_plugin_file(path)


@cli.command("learn-curriculum")
@click.option("--curriculum", "curriculum_name", metavar="NAME",
              help="Registered curriculum to learn (see `list`). Targets come from the 2018 grid.")
@curriculum_params
@click.option("--dump", "dump_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="StudentNet dump (id epoch noisy_label clean_label loss) for a data-driven MentorNet.")
@click.option("--percentile", type=float, default=90.0, show_default=True,
              help="With --dump: loss percentile P (0-100) of the whole dump that defines loss_diff.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Where to write the MentorNet checkpoint (.pt).")
@click.option("--recipe", type=click.Choice(["fast", "paper"]), default="fast", show_default=True,
              help="fast: large batches and a short cosine schedule. paper: the 2018 recipe "
                   "(Adam 0.1*0.9^(t/1000), clip 5, batch 32, 30k steps).")
@click.option("--balance", type=click.Choice(["none", "strata"]), default="none", show_default=True,
              help="strata: draw each batch equally from rows whose target is 0, 1, or in between, "
                   "so rare graded regions (mentornet_pd's late phase) are fitted.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Override the recipe's number of optimiser steps.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Override the recipe's peak learning rate.")
@click.option("--sample-size", type=click.IntRange(min=2), default=100_000, show_default=True,
              help="Grid rows kept for fitting (the 2018 value), split 80/20 into train and held-out.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the row sample, the split, the initial weights and the batches.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def learn_curriculum(curriculum_name, params, dump_path, percentile, out_path, recipe, balance, steps,
                     learning_rate, sample_size, seed, force):
    """Fit a MentorNet to a curriculum's weights, or to data-driven labels from a clean subset.

    \b
    Examples:
      python cli.py learn-curriculum --curriculum self_paced --out sp.pt
      python cli.py learn-curriculum --curriculum focal_loss -p gamma=3 --out focal3.pt
      python cli.py learn-curriculum --dump dump.txt --percentile 90 --out dd.pt
    """
    from mentor_training.learn import plan_learning, run_learning

    if (curriculum_name is None) == (dump_path is None):
        raise click.UsageError("give exactly one of --curriculum NAME or --dump FILE")
    if dump_path is not None and params:
        raise click.UsageError("-p/--param applies to --curriculum, not to --dump")
    plan = plan_learning(curriculum=curriculum_name, params=params, dump=dump_path, percentile=percentile,
                         out=out_path, recipe=recipe, balance=balance, steps=steps,
                         learning_rate=learning_rate, sample_size=sample_size, seed=seed, force=force)
    if dump_path is not None:
        source = plan.split.source
        click.echo(f"dump: {source['num_rows']} samples ({source['duplicates_dropped']} duplicate ids "
                   f"dropped, last line kept), loss threshold {source['loss_threshold']:.4f} at P={percentile:g}")
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
@click.option("--loss-range", "loss_range_text", default="0,10", show_default=True, metavar="LO,HI",
              help="Loss axis: the StudentNet's per-sample cross-entropy, in nats.")
@click.option("--loss-diff-range", "loss_diff_range_text", default="-5,5", show_default=True, metavar="LO,HI",
              help="loss_diff axis: loss minus the moving-average loss percentile, in nats.")
@click.option("--resolution", type=click.IntRange(min=2), default=101, show_default=True,
              help="Grid points per axis.")
@click.option("--animate", "animate_path", type=click.Path(dir_okay=False), metavar="FILE.gif",
              help="Also (or instead of --out) write a GIF of the weight over epochs 0..99.")
@click.option("--frames", type=click.IntRange(1, 100), default=100, show_default=True,
              help="With --animate: number of epochs shown, evenly spaced over 0..99.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=10, show_default=True,
              help="With --animate: frames per second.")
@click.option("--width", type=click.IntRange(min=50), default=None,
              help="Image width in pixels (default: sized to the panels).")
@click.option("--height", type=click.IntRange(min=50), default=None,
              help="Image height in pixels (default: sized to the panels).")
@click.option("--dpi", type=click.FloatRange(min=0, min_open=True), default=100, show_default=True,
              help="Pixels per inch of PNG and GIF output.")
@click.option("--force", is_flag=True, help="Overwrite --out and --animate if they exist.")
def plot_command(curriculum_name, params, mentornet, out_path, kind, compare, epochs_text, loss_range_text,
                 loss_diff_range_text, resolution, animate_path, frames, fps, width, height, dpi, force):
    """Draw the weight a curriculum or MentorNet gives a sample, over (loss, loss_diff), per epoch.

    Like the 2018 visualiser, loss and loss_diff are treated as independent (label 0): on a real
    StudentNet they are not, so parts of each surface are never visited in training.

    \b
    Examples:
      python cli.py plot --curriculum mentornet_pd --out pd.png
      python cli.py plot --curriculum focal_loss -p gamma=3 --kind heatmap --out focal3.pdf
      python cli.py plot --mentornet sp.pt --compare --out sp_vs_self_paced.png
      python cli.py plot --curriculum spcl_linear --animate spcl.gif
      python cli.py plot --curriculum all --out gallery.png
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no window, whatever the environment says
    from visualize import parse_epochs, parse_range, plan_plot, run_plot

    if (curriculum_name is None) == (mentornet is None):
        raise click.UsageError("give exactly one of --curriculum NAME (or 'all') or --mentornet NAME|PATH")
    plan = plan_plot(out=out_path, curriculum=curriculum_name, params=params, mentornet=mentornet, kind=kind,
                     compare=compare, animate=animate_path, frames=frames, fps=fps,
                     epochs=parse_epochs(epochs_text) if epochs_text is not None else None,
                     loss_range=parse_range(loss_range_text, name="--loss-range"),
                     loss_diff_range=parse_range(loss_diff_range_text, name="--loss-diff-range"),
                     resolution=resolution, width=width, height=height, dpi=dpi, force=force)
    if plan.animate is None:
        result = run_plot(plan)
    else:
        with _progress_bar(len(plan.frame_epochs), "drawing GIF frames") as bar:
            result = run_plot(plan, progress=lambda done, total: bar.update(done - bar.pos))
    for note in result.notes:
        click.echo(note)
    for path in result.paths:
        click.echo(f"wrote {path}")


@cli.command("train-student")
@click.option("--dataset", default="digits", show_default=True,
              help="cifar10, cifar100, fashion-mnist, or the bundled digits (no download needed).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder holding the data set files (CIFAR python archives, Fashion-MNIST idx files).")
@click.option("--download", is_flag=True, help="Fetch a missing data set from its official address (md5-checked).")
@click.option("--subset", type=click.IntRange(min=1), default=None,
              help="Train on a seeded, class-balanced subset of this many training images.")
@click.option("--clean-subset-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Hold this fraction of the training set out as a clean subset (for data-driven MentorNets).")
@click.option("--noise", type=float, default=0.0, show_default=True,
              help="Label noise rate r in [0, 1] (the 2018 data sets used 0.2, 0.4, 0.8).")
@click.option("--noise-type", default="symmetric", show_default=True,
              help="symmetric (exactly r·N labels moved to another class), uniform (each label redrawn over all "
                   "classes with probability r), pairflip or asymmetric.")
@click.option("--noise-file", type=click.Path(dir_okay=False), default=None,
              help="Use these noisy labels instead (.npy/.npz/.pt, e.g. CIFAR-10N: FILE.pt:worse_label).")
@click.option("--studentnet", default="small_cnn", show_default=True,
              help="Student network: resnet101 and inception (the 2018 ones), resnet32, preact_resnet18, "
                   "small_cnn, mlp.")
@click.option("--mentornet", default="none", show_default=True, metavar="NAME|PATH|none",
              help="Pretrained MentorNet name, checkpoint file, or none for the plain cross-entropy baseline "
                   "(2018: --trained_mentornet_dir).")
@click.option("--loss-p-percentile", type=float, default=None,
              help="p of the batch loss percentile whose moving average defines loss_diff "
                   "(2018: --loss_p_percentile; every released run used 0.7). Default: the MentorNet's.")
@click.option("--burn-in-epoch", type=click.IntRange(0, 100), default=None,
              help="Weights are 1 for the first epochs of training progress (2018: --burn_in_epoch). "
                   "Default: the MentorNet's.")
@click.option("--fixed-epoch-after-burn-in/--no-fixed-epoch-after-burn-in", default=None,
              help="Feed the MentorNet the burn-in epoch once past it (2018: --fixed_epoch_after_burn_in; "
                   "set for MentorNet DD). Default: the MentorNet's.")
@click.option("--burn-in-2018/--burn-in-exact", default=True, show_default=True,
              help="2018: the burn-in ends one epoch early (epochs 0..16 for 18); exact: epochs 0..17.")
@click.option("--loss-moving-average-decay", type=float, default=None,
              help="Decay of the loss-percentile moving average (2018: --loss_moving_average_decay, 0.5). "
                   "Default: the MentorNet's.")
@click.option("--example-dropout-rates", default=None, metavar="RATE,EPOCHS,...",
              help="Piecewise probability of zeroing a sample's weight over the 100 progress epochs "
                   "(2018: --example_dropout_rates, e.g. 0.5,17,0.05,83). Default: the MentorNet's.")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True,
              help="Passes over the training set.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Stop after this many steps instead (2018: --max_number_of_steps, 39000 for ResNet).")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="Peak learning rate (2018: --learning_rate).")
@click.option("--lr-schedule", type=click.Choice(["auto", "piecewise_2018", "exponential_2018", "baseline_2018",
                                                  "cosine", "constant"]), default="auto", show_default=True,
              help="auto: the 2018 schedule for resnet101 (piecewise) and inception (exponential), "
                   "cosine for the others; baseline_2018: the 2018 ResNet baseline's (0.1, then 0.01 from "
                   "step 19531 of 39000).")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None,
              help="Default: 2e-4 scaled by the mean weight for resnet101 (2018), none for inception (2018), "
                   "0 for mlp, 5e-4 otherwise.")
@click.option("--augment/--no-augment", default=None,
              help="Pad-and-crop plus flip. Default: on for CIFAR, off otherwise.")
@click.option("--dump", "dump_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write a data-driven dump of the clean subset (sample_id,epoch,noisy_label,clean_label,loss) "
                   "for learn-curriculum --dump. Needs --clean-subset-fraction and --dump-at-epoch.")
@click.option("--dump-at-epoch", type=int, default=None, metavar="E",
              help="Training progress epoch (0..99) at which to take the dump (2018: about 18).")
@click.option("--relearn-mentor", default="never", show_default=True, metavar="never|lr-drops|E1,E2",
              help="Re-fit the MentorNet from its current weights on a dump of the current student at these "
                   "progress epochs (paper Algorithm 1, step 6; lr-drops: after the first two 2018 LR drops).")
@click.option("--relearn-percentile", type=click.FloatRange(0, 100), default=None,
              help="Loss percentile P of each re-fit's dump. Default: the MentorNet's own, else 90.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for noise, subset, init, batches, dropout.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Under torchrun, cuda means cuda:LOCAL_RANK (one GPU per process).")
@click.option("--compile", "compile_model", is_flag=True,
              help="torch.compile the student for training (slower start, faster steps on a GPU).")
@click.option("--sync-bn", is_flag=True,
              help="Under torchrun on GPUs: SyncBatchNorm, so BN statistics span the global batch as in one "
                   "process (default: each rank's BN sees its shard).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=True), metavar="DIR",
              help="Run folder: config.json, noisy_labels.npz, metrics.csv, last.pt, best.pt.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt, with its config.json.")
@click.option("--force", is_flag=True, help="Start over in an --out folder that already holds a run.")
def train_student(dataset, data_dir, download, subset, clean_subset_fraction, noise, noise_type, noise_file,
                  studentnet, mentornet, loss_p_percentile, burn_in_epoch, fixed_epoch_after_burn_in, burn_in_2018,
                  loss_moving_average_decay, example_dropout_rates, epochs, max_steps, batch_size, lr,
                  lr_schedule, weight_decay, augment, dump_path, dump_at_epoch, relearn_mentor, relearn_percentile,
                  seed, device, compile_model, sync_bn, out_dir, resume, force):
    """Train a StudentNet on noisy labels, weighting each sample's loss with a MentorNet.

    \b
    Examples:
      python cli.py train-student --dataset digits --noise 0.4 --studentnet mlp --mentornet mentornet_pd --out runs/pd
      python cli.py train-student --dataset cifar10 --data-dir data --noise 0.4 --mentornet mentornet_pd --out runs/c10
      python cli.py train-student --out runs/pd --resume
      torchrun --standalone --nproc_per_node 2 cli.py train-student --batch-size 128 ... --out runs/ddp

    \b
    Under torchrun --batch-size is the global batch, split evenly over the processes, and only rank 0
    prints and writes files.
    """
    from student_training.distributed import shutdown, world_from_env
    from student_training.trainer import StudentConfig, prepare_run, summarize, train

    if not world_from_env().is_main:  # rank 0 speaks for the run; errors still reach stderr
        sys.stdout = open(os.devnull, "w")

    if resume and force:
        raise click.UsageError("--resume and --force exclude each other")
    config = StudentConfig(dataset=dataset, data_dir=data_dir, download=download, subset=subset,
                           clean_subset_fraction=clean_subset_fraction, noise=noise, noise_type=noise_type,
                           noise_file=noise_file, studentnet=studentnet, mentornet=mentornet, epochs=epochs,
                           max_steps=max_steps, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
                           weight_decay=weight_decay, augment=augment, seed=seed, device=device, dump=dump_path,
                           dump_at_epoch=dump_at_epoch, relearn_mentor=relearn_mentor,
                           relearn_percentile=relearn_percentile, compile=compile_model, sync_bn=sync_bn)
    overrides = {"loss_p_percentile": loss_p_percentile, "burn_in_epoch": burn_in_epoch,
                 "fixed_epoch_after_burn_in": fixed_epoch_after_burn_in, "burn_in_2018": burn_in_2018,
                 "loss_moving_average_decay": loss_moving_average_decay,
                 "example_dropout_rates": example_dropout_rates}
    run = prepare_run(config, out_dir, weighter_overrides=overrides, resume=resume, force=force)
    _describe_run(run)
    with click.progressbar(length=run.config.epochs, label="training", file=sys.stderr if run.is_main else sys.stdout,
                           item_show_func=lambda row: row) as bar:
        if run.start_epoch:
            bar.update(run.start_epoch)
        train(run, on_epoch=lambda row: bar.update(1, f"epoch {row['epoch']} loss {row['loss']:.3f} "
                                                      f"test acc {row['test_accuracy']:.4f}"))
    summary = summarize(run.rows)
    click.echo(f"final test accuracy {summary['final_test_accuracy']:.4f} (best {summary['best_test_accuracy']:.4f}); "
               f"flipped labels fitted {summary['final_fit_noisy']:.3f}; "
               f"weight AUC clean-vs-noisy {summary['final_detector_auc']:.3f}")
    for row in run.relearn_rows:
        click.echo(f"re-fitted the MentorNet at progress epoch {row['progress_epoch']} on {row['rows']} clean-subset "
                   f"samples ({row['noisy_fraction']:.0%} noisy): held-out MAE {row['heldout_mae']:.4f}")
    if run.config.dump:
        click.echo(f"wrote the clean-subset dump {run.config.dump}")
    extra = ", relearn.csv" if run.relearn_rows else ""
    click.echo(f"wrote {out_dir}/ (config.json, noisy_labels.npz, metrics.csv, last.pt, best.pt{extra})")
    shutdown(run.world)


def _describe_run(run) -> None:
    config = run.config
    click.echo(f"{'resuming at epoch ' + str(run.start_epoch) if run.start_epoch else 'run'}: "
               f"{config.dataset} ({len(run.data.train_indices)} train, {len(run.data.clean_subset_indices)} "
               f"clean held out, {len(run.data.test_labels)} test), student {config.studentnet}, "
               f"mentornet {config.mentornet}, device {run.device}"
               + (f", {run.world.size} processes (DistributedDataParallel)" if run.world.enabled else ""))
    click.echo(f"labels: {run.noise.summary()}")
    recipe = config.recipe
    click.echo(f"optimiser: SGD momentum {config.momentum}, lr {config.lr} ({recipe['lr_schedule']}), "
               f"weight decay {recipe['weight_decay']} ({recipe['decay_mode']}), batch {config.batch_size}, "
               f"{config.epochs} epochs = {run.total_steps} steps, augment {recipe['augment']}")
    if run.weighter is not None:
        click.echo("weighting: " + ", ".join(f"{k}={v}" for k, v in config.weighter.items()))


@cli.command("show")
@click.argument("mentornet", metavar="NAME|PATH")
def show_command(mentornet):
    """Describe a MentorNet checkpoint: its source, held-out metrics and StudentNet defaults."""
    import json

    from mentor_training.checkpoint import read_checkpoint
    from mentor_training.pretrained import resolve_mentornet_path

    checkpoint = read_checkpoint(resolve_mentornet_path(mentornet))
    shown = {key: checkpoint[key] for key in ("source", "student_defaults", "feature_spec", "model_config",
                                              "provenance")}
    shown["metrics"] = {k: v for k, v in checkpoint["metrics"].items() if k in ("test", "fidelity", "fit_seconds")}
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
        test = entry.get("metrics", {}).get("test", {})
        source = entry.get("source", {})
        origin = source.get("name") or f"data-driven, P={source.get('percentile')}"
        click.echo(f"  {name:<30} from {origin:<22} held-out MAE {test.get('mae', float('nan')):.4f}")


def main():
    cli(prog_name="mentornet" if os.path.basename(sys.argv[0]) == "mentornet" else "cli.py")


if __name__ == "__main__":
    main()
