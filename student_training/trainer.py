"""StudentNet training with a frozen MentorNet (spec §4: ``code/cifar_train_mentornet.py``).

One loop for every student: :func:`prepare_run` checks a :class:`~student_training.config.StudentConfig`,
loads the data and builds the student, optimiser and weighter; :func:`train` runs the epochs
(:func:`train_one_epoch`, :func:`evaluate`, :func:`epoch_row`) and hands every boundary to the run's
callbacks (:mod:`student_training.callbacks`): the run folder's files (:mod:`student_training.run_folder`),
data-driven dumps and MentorNet re-fits (:mod:`student_training.data_driven`), progress display, and
whatever plugins register. ``mentornet="none"`` runs the plain cross-entropy baseline through the same loop.

The loss is the 2018 one (spec §4.1 step 12): the mean over the batch of ``v_i · loss_i``. For
``resnet101`` the weight decay ``wd · Σ‖W‖² / 2`` over conv and FC weights is scaled by the mean
weight, as in 2018; ``inception`` has none (its regulariser was never added); the other students use
plain SGD weight decay.

Under ``torchrun`` the same loop runs data-parallel (see :mod:`student_training.distributed`): each rank
trains on its slice of every global batch, the weighting sees the whole batch, and only rank 0 writes
files. Mixed precision (``--precision``: bf16 where the GPU has it, fp16 with a gradient scaler on older
GPUs; :mod:`student_training.accelerator`), ``channels_last`` and an optional ``torch.compile`` make it
fast on a GPU. Only the student's forward passes run under autocast: losses, MentorNet weights and
percentiles are fp32. The inner loop never waits for the host (the epoch's sums stay on the device).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from curricula.features import WeighterConfig
from curricula.files import atomic_write, check_output_path, check_writable_folder, sha256_of, sweep_stale_temporaries
from curricula.options import flag_name
from mentor_training.pretrained import load_mentornet, resolve_mentornet_path

from . import distributed, run_folder
from .accelerator import Precision, compile_unavailable_reason, resolve_precision
from .callbacks import Callback, check_names, registered_callbacks, step_callbacks
from .config import (LOSS_DIFF_OPTIONS, RESUME_SAFE, StudentConfig, describe_changes, format_value, parse_relearn,
                     same_option)
from .data import ImageDataset, check_clean_subset_file, load_dataset, read_clean_subset_file, with_clean_subset
from .data_driven import data_driven_callbacks
from .epoch_stats import EpochStats, MentorMixStats
from .evaluation import accuracy, detector_auc
from .label_issues import SampleRecordCallback
from .learned_mentornet import CleanSubsetParts, LearnedMentorWeighter, LearnMentorNet, Refurbishment, TrustedStream, \
    check_learn_schedule, check_probe, check_trusted_part, split_clean_subset, warn_untrusted_classes
from .loader import DeviceLoader
from .losses import per_sample_cross_entropy
from .mentormix import MENTORMIX_WEIGHTING, MentorMix
from .models import TrainingRecipe, create_student
from .noise import NoiseResult, load_noise_file, load_noisy_labels, make_noisy_labels, noise_from_labels, \
    save_noisy_labels, split_noise_path
from .weighting import MentorWeighter

METRIC_COLUMNS = ("epoch", "step", "lr", "loss", "weighted_loss", "mean_weight", "data_utilization",
                  "train_accuracy", "fit_noisy", "test_accuracy", "val_accuracy", "weight_clean", "weight_noisy",
                  "detector_auc", "seconds")
VALIDATION_NAMES = {"clean_subset": "the clean subset (clean labels)", "noisy_holdout": "a noisy hold-out",
                    "clean_subset_part": "a fifth of the clean subset (clean labels)", "none": "none"}


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the epoch was not saved."""
# What MentorMix (--mentormix) does, per epoch: the mean of its training loss, of the mixing coefficient m, the
# share of partners whose weight v is >= 0.5, and the mean second weight. NaN in other runs (and in second_weight_mean
# without second reweighting), so every metrics.csv has the same columns.
MENTORMIX_COLUMNS = ("mixed_loss", "mixing_mean", "partner_high_weight_share", "second_weight_mean")
METRIC_COLUMNS += MENTORMIX_COLUMNS


def learning_rate(step: int, total_steps: int, base: float, schedule: str) -> float:
    """The learning rate at ``step`` (spec §4.6), with the 2018 boundaries scaled to ``total_steps``."""
    progress = step / total_steps
    if schedule == "piecewise_2018":  # 0.1 to step 19531 of 39000, then 0.01, 0.001 (25000), 0.0001 (30000)
        scale = 1.0 if step <= 19531 / 39000 * total_steps else 0.1 if step <= 25000 / 39000 * total_steps \
            else 0.01 if step <= 30000 / 39000 * total_steps else 0.001
        return base * scale
    if schedule == "exponential_2018":  # staircase 0.1^floor(t / 78125) over 120000 steps
        return base * 0.1 ** math.floor(step / (78125 / 120000 * total_steps))
    if schedule == "baseline_2018":  # the ResNet baseline: staircase 0.1^floor(t / 19531) over 39000 steps
        return base * 0.1 ** math.floor(step / (19531 / 39000 * total_steps))
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "mentormix_2020":  # 2020 spec §3.2: staircase 0.9^floor(t / 11718.75) over 200000 steps
        return base * 0.9 ** math.floor(step / (11718.75 / 200000 * total_steps))
    return base


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``cuda`` is ``cuda:LOCAL_RANK`` under torchrun, so each rank drives its own GPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA GPU is available")
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        else:
            name = "cpu"
    if name == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} are visible")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


@dataclass
class RunState:
    """What training has done so far: epochs completed, the best validation accuracy and its epoch (which
    best.pt holds), one metrics row per epoch."""

    epoch: int = 0
    best_validation: float = -math.inf
    best_epoch: int = 0
    rows: list[dict] = field(default_factory=list)


@dataclass
class Run:
    """A prepared run: its config and what it resolved to, the data on the device, the student, the
    optimiser and weighter, the callbacks, and the training state."""

    config: StudentConfig
    out: Path
    device: torch.device
    world: distributed.World
    data: ImageDataset
    noise: NoiseResult
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    weighter: MentorWeighter | None
    weighting: WeighterConfig | None  # the weighting options in force (None without a MentorNet)
    mentornet_sha256: str | None
    recipe: TrainingRecipe
    train_loader: DeviceLoader
    test_loader: DeviceLoader
    validation_loader: DeviceLoader | None  # the split best.pt is chosen on (None: no validation split)
    epochs: int
    total_steps: int
    precision: Precision  # the forward passes' autocast dtype, and fp16's gradient scaler
    train_model: torch.nn.Module | None = None  # the DDP- and/or compile-wrapped student; None: ``model``
    callbacks: list[Callback] = field(default_factory=list)
    state: RunState = field(default_factory=RunState)
    metric_columns: tuple[str, ...] = METRIC_COLUMNS
    mentormix: MentorMix | None = None  # with --mentormix (then ``weighter`` is None: MentorMix holds both weightings)
    verified_labels: torch.Tensor | None = None  # the pool's labels as known to be right (clean subset: verified)
    clean_parts: CleanSubsetParts | None = None  # the clean subset's validation, probe and trusted parts
    trusted: TrustedStream | None = None  # --mentornet learn: the trusted batches added to every step
    trusted_mask: torch.Tensor | None = None  # samples of the noisy stream trained at weight 1 with verified labels
    refurbishment: Refurbishment | None = None  # --learn-relabel-confidence: unselected samples trained on new labels
    lock: run_folder.RunLock | None = None  # held from prepare_run until train ends (rank 0 only)
    replaced_run_restored: bool = False  # stopped before its first epoch: the run --force replaced is back
    created_folder: bool = False  # prepare_run created ``out``: a run that saves no epoch removes it again

    def release(self) -> None:
        """Release the run folder's lock (:func:`train` does when it ends)."""
        if self.lock is not None:
            self.lock.release()

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files."""
        return self.world.is_main

    @property
    def forward_model(self) -> torch.nn.Module:
        return self.model if self.train_model is None else self.train_model

    @property
    def mentor_weighter(self):
        """The weighting of the batch's own losses by the MentorNet: the run's weighter, or with MentorMix its first
        weighting (v on the unmixed loss, 2020 spec S2-S3); None without a MentorNet."""
        return self.weighter if self.mentormix is None else self.mentormix.first_weighter

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype of the student's forward passes under autocast (None: fp32)."""
        return self.precision.dtype

    def resolved(self) -> dict:
        """What the config's defaults meant for this run (``config.json``'s ``resolved``)."""
        recipe = self.recipe
        return {"weighter": self.weighting.to_dict() if self.weighting is not None else None,
                "mentornet_sha256": self.mentornet_sha256, "lr": recipe.lr, "lr_schedule": recipe.lr_schedule,
                "weight_decay": recipe.weight_decay, "decay_mode": recipe.decay_mode, "pad": recipe.pad,
                "augment": self.config.augmented, "epochs": self.epochs, "total_steps": self.total_steps,
                "device": str(self.device), "precision": self.precision.name,
                "validation": self.validation_description(),
                "mentormix": self._resolved_mentormix(),
                "working_directory": os.getcwd()}  # what the config's relative paths are relative to

    def validation_description(self) -> str:
        """Which split chooses best.pt, in words (recorded in config.json and best.pt)."""
        config = self.config
        if config.validation == "noisy_holdout":
            return f"a noisy hold-out of {len(self.data.validation_indices)} training images ({config.holdout_fraction:g})"
        if config.validation == "clean_subset":
            return f"the clean subset of {len(self.data.clean_subset_indices)} images, with their clean labels"
        if config.validation == "clean_subset_part":
            return (f"{len(self.clean_parts.validation)} of the clean subset's {len(self.data.clean_subset_indices)} "
                    "images (a fifth, never trained on), with their clean labels")
        return "none"

    def _resolved_mentormix(self) -> dict | None:
        if self.mentormix is None:
            return None
        return {"mixup_alpha": self.mentormix.alpha, "second_reweight": self.mentormix.second_reweight,
                "weighting_defaults": "mentormix", "clean_pass_updates_bn": self.mentormix.clean_pass_updates_bn}

    def check_world_size(self, saved: int) -> None:
        if saved != self.world.size:
            hint = f"resume it with torchrun --nproc_per_node {saved}" if saved > 1 else "resume it without torchrun"
            raise ValueError(f"mismatched resume across world sizes: {self.out} was trained by {saved} "
                             f"process(es), this launch has {self.world.size}; {hint}")

    def add_callback(self, callback: Callback) -> None:
        """Register ``callback`` before the run folder's writer (which saves every callback's state)."""
        writers = [i for i, c in enumerate(self.callbacks) if isinstance(c, RunFolderWriter)]
        self.callbacks.insert(writers[0] if writers else len(self.callbacks), callback)
        check_names(self.callbacks)


class RunFolderWriter(Callback):
    """Writes ``config.json`` and ``noisy_labels.npz`` when a fresh run starts, then ``metrics.csv``,
    ``best.pt`` and ``last.pt`` after every epoch (rank 0 only)."""

    name = "run_folder"

    def on_epoch_end(self, run: Run, epoch: int, row: dict) -> None:
        if run.is_main:
            run_folder.save_epoch(run)
            run_folder.discard_replaced_run(run.out)  # the earlier run --force set aside: replaced now


class PrecisionState(Callback):
    """Carries the run's precision and fp16's gradient-scaler state in ``last.pt``. A run may resume at
    another precision: a new fp16 scaler then starts afresh, and a saved scaler is dropped at bf16 or fp32."""

    name = "precision"

    def __init__(self, run: Run):
        self.run = run
        self.resumed_from: str | None = None  # the precision last.pt was saved at (on resume)

    def state_dict(self) -> dict:
        return self.run.precision.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.resumed_from = state.get("name")
        self.run.precision.load_state_dict(state)


class MentorMixState(Callback):
    """Carries the run's :class:`MentorMix` state (both moving averages, all generators) in ``last.pt``, so a
    resumed MentorMix run continues exactly."""

    name = "mentormix"

    def __init__(self, mentormix: MentorMix):
        self.mentormix = mentormix

    def state_dict(self) -> dict:
        return self.mentormix.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.mentormix.load_state_dict(state)


# ---------------------------------------------------------------------------------------- preparing


def resume_config(out: Path, config: StudentConfig | None) -> StudentConfig:
    """The config of the run in ``out``; ``config`` may differ from it only in resume-safe options."""
    try:
        saved, _ = run_folder.read_config(out)
    except ValueError as error:
        raise ValueError(f"cannot resume: {error}") from None
    if config is None:
        return saved
    changes = describe_changes(saved, config)
    check_resume_changes(out, changes, saved=saved, asked=config)
    # a path typed from elsewhere that names the run's own file: the run's value stays (it is what config.json
    # records, read from the folder the run began in), so its checkpoints never hold a path relative to here
    kept = {name: old for name, old, new in changes if name not in RESUME_SAFE and same_option(name, old, new)}
    return config.with_options(kept) if kept else config


def check_resume_changes(out: Path, changed: list[tuple[str, object, object]], *, saved: StudentConfig | None = None,
                         asked: StudentConfig | None = None) -> None:
    """``ValueError`` naming every ``(option, the run's value, new value)`` of ``changed`` that may not change on
    resume (all but :data:`~student_training.config.RESUME_SAFE`); ``saved`` and ``asked``, the two configs, name
    what a ``None`` stands for."""
    def shown(config: StudentConfig | None, name: str, value) -> str:
        return config.shown(name) if config is not None else "its default" if value is None else format_value(value)

    unsafe = [change for change in changed if change[0] not in RESUME_SAFE and not same_option(*change)]
    if unsafe:
        listed = ", ".join(f"--{name.replace('_', '-')} {shown(asked, name, new)} (the run has "
                           f"{shown(saved, name, old)})" for name, old, new in unsafe)
        safe = ", ".join(f"--{name.replace('_', '-')}" for name in RESUME_SAFE)
        raise ValueError(f"cannot resume {out} with changed options: {listed}; only {safe} may change on resume")


def mentornet_file_change(out: Path, config: StudentConfig) -> str | None:
    """Why the MentorNet file ``config.mentornet`` names is not the one the run in ``out`` began with (its
    sha256 differs from the one ``config.json`` records), or ``None`` when it is the same, the run uses no
    MentorNet file (baseline, ``--mentornet learn``), or the folder predates the record."""
    if config.mentornet == "none" or config.learns_mentornet:
        return None
    try:
        _, payload = run_folder.read_config(out)
    except ValueError:
        return None  # resume_config reports an unreadable config.json
    recorded = (payload.get("resolved") or {}).get("mentornet_sha256")
    if not isinstance(recorded, str):
        return None
    current = sha256_of(resolve_mentornet_path(config.mentornet))
    if current == recorded:
        return None
    return (f"the MentorNet {config.mentornet} has changed since the run in {out} began (sha256 {current[:12]}, "
            f"the run used {recorded[:12]})")


def check_run(config: StudentConfig | None, out: str | os.PathLike, *, resume: bool = False,
              force: bool = False) -> StudentConfig:
    """Every check that needs no data or model: the folder, the resume conflicts, the device, the batch
    under torchrun, and the files the config names. Returns the config to run (the run's own on resume).

    Cheap, so the CLI calls it before anything is loaded, and :func:`prepare_run` calls it again.
    """
    out = Path(out)
    world = distributed.world_from_env()
    if world.is_main and out.is_dir():
        run_folder.recover_replaced_run(out)  # what a killed --force run left: the earlier run back, or deleted
    if resume:
        config = resume_config(out, config)
        if not (out / "last.pt").is_file():
            raise ValueError(f"cannot resume: {out} holds no saved epoch ({out / 'last.pt'} does not exist: the run "
                             "was stopped before its first epoch ended); start over with --force")
        change = mentornet_file_change(out, config)
        if change:
            raise ValueError(f"cannot resume: {change}; restore that file, or start a new run in another folder")
        check_writable_folder(out, what="run folder")
    else:
        run_folder.check_run_folder(out, force=force, delete=False)
    if config.mentormix and world.enabled:
        raise ValueError(f"--mentormix runs in one process (partners and percentiles come from the whole batch on "
                         f"one device); this launch has {world.size} torchrun processes")
    if config.dump:  # the run's own dump may exist on resume; any other file there needs --force
        run_folder.check_not_run_file(Path(config.dump), option="--dump")
        check_output_path(config.dump, force=force or resume, option="--dump",  # a run in out was refused above
                          advice="pass --force to overwrite it, or choose another --dump path")
    distributed.check_batch_size(config.batch_size, world)
    device = resolve_device(config.device, world.local_rank)
    resolve_precision(config.precision, device)
    if config.compile:
        reason = compile_unavailable_reason(device)
        if reason:
            raise ValueError(f"--compile cannot run on the {device.type} here: {reason}")
    if config.sync_bn and device.type != "cuda":
        raise ValueError(f"--sync-bn needs CUDA GPUs (SyncBatchNorm has no CPU kernel), this run is on {device}")
    if config.sync_bn and not world.enabled:
        raise ValueError("--sync-bn synchronises BatchNorm across torchrun processes; this run has one process")
    if config.noise_file:
        split_noise_path(config.noise_file)
    if config.train_on != "noisy" and world.enabled:
        raise ValueError(f"--train-on {config.train_on} runs in one process; this launch has {world.size} torchrun "
                         "processes")
    if config.learns_mentornet and world.enabled:
        raise ValueError(f"--mentornet learn runs in one process (it records its probe's losses on one device); this "
                         f"launch has {world.size} torchrun processes")
    if config.clean_subset_file is not None and not resume:
        check_clean_subset_file(config.clean_subset_file)
    if config.mentornet != "none" and not config.learns_mentornet:
        load_mentornet(config.mentornet)  # resolves, sha256-checks a shipped file, and validates it (a few KB)
    return config


def _mentornet(config: StudentConfig, device: torch.device):
    """The MentorNet and its file's sha256, or (None, None) for the baseline."""
    if config.mentornet == "none" or config.learns_mentornet:
        return None, None
    path = resolve_mentornet_path(config.mentornet)
    return load_mentornet(config.mentornet, device=device), sha256_of(path)


def weighting_defaults(config: StudentConfig, mentor) -> WeighterConfig:
    """What the weighting options override: MentorMix's settings with ``--mentormix`` (2020 spec §3.1: burn-in
    10, decay 0.5, no example dropout; a 2018 checkpoint's defaults carry the 2018 dropout schedule, which
    the MentorMix runs did not use), else the MentorNet's own ``student_defaults``."""
    return MENTORMIX_WEIGHTING if config.mentormix else mentor.student_defaults


def _check_loss_diff_options(config: StudentConfig, mentor) -> None:
    """Refuse the options that define loss_diff (the percentile and its moving average) for a MentorNet fitted
    without it: its weights would not change (as ``--mentornet learn --learn-features loss`` refuses them)."""
    config_of = getattr(mentor, "config", None)
    if getattr(config_of, "uses_loss_diff", True):
        return
    given = [name for name in LOSS_DIFF_OPTIONS if name in config.weighter]
    if given:
        raise ValueError(f"{flag_name(given[0])} defines loss_diff, which the MentorNet {config.mentornet} was fitted "
                         "without (it sees the loss and the epoch): drop it")


def _noisy_labels(config: StudentConfig, data: ImageDataset) -> NoiseResult:
    if config.noise_file:
        return load_noise_file(config.noise_file, data.train_labels, data.num_classes,
                               indices=data.source_indices, source_size=data.source_size)
    if data.noisy_train_labels is not None:
        if config.noise:
            raise ValueError(f"{config.dataset} brings its own noisy labels (train_labels beside clean_labels); "
                             "--noise would replace them: drop it, or drop clean_labels from the file")
        return noise_from_labels(data.noisy_train_labels, data.train_labels, data.num_classes, source=data.source)
    return make_noisy_labels(data.train_labels, noise_type=config.noise_type, rate=config.noise,
                             num_classes=data.num_classes, seed=config.seed, dataset=config.dataset)


def make_optimizer(model: torch.nn.Module, recipe: TrainingRecipe, momentum: float) -> torch.optim.Optimizer:
    """SGD at ``recipe.lr`` with ``momentum``; plain weight decay (``decay_mode`` ``sgd``) on the weight matrices
    and kernels only, never on biases or batch-norm parameters (the ``scaled`` 2018 decay is added to the loss
    in the training step instead)."""
    weights = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim <= 1]
    decay = recipe.weight_decay if recipe.decay_mode == "sgd" else 0.0
    groups = [{"params": weights, "weight_decay": decay}, {"params": others, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=momentum)


def prepare_run(config: StudentConfig | None, out: str | os.PathLike, *, resume: bool = False,
                force: bool = False, callbacks: tuple[Callback, ...] = ()) -> Run:
    """Check the folder, load data and labels, build the student; restore ``last.pt`` with ``resume``.

    With ``resume`` the run's own ``config.json`` is used; a ``config`` given beside it may differ only in
    the options that are safe to change on resume (:data:`~student_training.config.RESUME_SAFE`), else
    ``ValueError``.
    The weighting is the MentorNet's ``student_defaults`` with the config's weighting options applied.
    ``callbacks`` are added to the built-in ones (data-driven events, the run folder's writer) and to
    those registered with :func:`~student_training.callbacks.register_callback`.
    Under torchrun this joins the process group; every rank checks its input before any rank writes.

    The run folder is locked (:class:`~student_training.run_folder.RunLock`) from here until :func:`train`
    ends or :meth:`Run.release` is called; a second run on the same folder is refused meanwhile. If
    preparing fails, the lock is released and a folder this call created is removed again.
    """
    out = Path(out)
    config = check_run(config, out, resume=resume, force=force)
    world = distributed.world_from_env()
    lock, created = None, False
    if world.is_main:
        created = not out.exists()
        out.mkdir(exist_ok=True)
        lock = run_folder.RunLock(out).acquire()
        sweep_stale_temporaries(out)  # what a killed run's atomic writes left behind
    try:
        run = _build_run(config, out, world, resume=resume, force=force, callbacks=callbacks)
    except BaseException:
        if lock is not None:  # failed after --force set the earlier run aside: the earlier run comes back
            if not resume and not (out / "last.pt").is_file():
                run_folder.restore_replaced_run(out)
            lock.release()
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    run.lock, run.created_folder = lock, created
    return run


def discard_unsaved_start(run: Run) -> None:
    """Settle a run stopped before its first epoch was saved (Ctrl-C, divergence, an error, a closed pipe): there is
    nothing to resume, so its files are removed, the run ``--force`` set aside comes back
    (``run.replaced_run_restored``), the lock is released and a folder :func:`prepare_run` created is removed once
    empty. Does nothing once ``last.pt`` exists, or on ranks other than 0."""
    if not run.is_main or (run.out / "last.pt").is_file():
        return
    run.replaced_run_restored = run_folder.restore_replaced_run(run.out)
    if not run.replaced_run_restored:
        run_folder.remove_run_files(run.out)
    run.release()
    if run.created_folder:
        try:
            run.out.rmdir()
        except OSError:  # it holds other files (the user's, a --dump written inside it): it stays
            pass


def _build_run(config: StudentConfig, out: Path, world: distributed.World, *, resume: bool, force: bool,
               callbacks: tuple[Callback, ...]) -> Run:
    last = run_folder.read_last(out) if resume else None  # read once; its record of the files is checked first
    if last is not None:
        run_folder.check_guarded_files(out, last)
    device = resolve_device(config.device, world.local_rank)
    mentor, mentor_sha256 = _mentornet(config, device)
    _check_loss_diff_options(config, mentor)
    data = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download, subset=config.subset,
                        clean_subset_fraction=config.clean_subset_fraction,
                        validation_fraction=config.holdout_fraction, seed=config.seed)
    verified = data.train_labels
    if config.clean_subset_file is not None:  # on resume, the copy the run folder keeps (guarded by sha256)
        kept = out / "clean_subset.npz"
        if resume and kept.is_file():
            with np.load(kept, allow_pickle=False) as saved:
                subset, subset_labels = torch.from_numpy(saved["pool_index"]), torch.from_numpy(saved["label"])
        else:
            subset, subset_labels = read_clean_subset_file(config.clean_subset_file, data)
        data = with_clean_subset(data, subset)
        verified = data.train_labels.clone()
        verified[subset] = subset_labels
    noise = load_noisy_labels(out / "noisy_labels.npz") if resume else _noisy_labels(config, data)
    parts = _clean_parts(config, data, verified)
    recipe = config.recipe
    model = create_student(config.studentnet, num_classes=data.num_classes, in_channels=data.in_channels,
                           image_size=data.image_size, seed=config.seed).to(device)
    _check_batch_norm_batch(config, model, world)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_labels, train_indices, trusted_mask = _training_pool(config, data, noise, verified, parts)
    train_loader, test_loader = _loaders(config, recipe, data, train_labels, device, world, indices=train_indices)
    total_steps = config.max_steps or config.epochs * len(train_loader)
    epochs = math.ceil(config.max_steps / len(train_loader)) if config.max_steps else config.epochs
    _check_event_epochs(config, total_steps)
    _check_clean_subset(config, data, noise, verified)
    is_clean = noise.noisy_labels == verified
    if config.learns_mentornet:
        check_learn_schedule(config, total_steps)
        check_probe(config, parts, is_clean, verified)
        check_trusted_part(config, parts)
        if not resume and world.is_main:
            warn_untrusted_classes(config, parts, verified, data.num_classes)
    weighting = None  # the weighting options in force: the MentorNet's defaults (learned: the toolkit's) + the run's
    if mentor is not None:
        weighting = config.weighter_config(weighting_defaults(config, mentor))
    elif config.learns_mentornet:
        weighting = config.weighter_config(WeighterConfig())
    weighter = MentorWeighter(mentor, weighting, total_steps=total_steps, seed=config.seed) \
        if mentor and not config.mentormix else None
    trusted = None
    if config.learns_mentornet:
        weighter = LearnedMentorWeighter(config, weighting, total_steps=total_steps, num_samples=len(data.train_labels),
                                         probe=parts.probe, is_clean=is_clean, device=device)
        if config.learn_trusted_batch:
            scale = config.learn_trusted_batch / config.batch_size if config.learn_trusted_loss == "per-sample" else 1.0
            trusted = TrustedStream(parts.trusted, config.learn_trusted_batch, config.seed, scale)
    mentormix = MentorMix(mentor, weighting, num_classes=data.num_classes, alpha=config.resolved_mixup_alpha,
                          second_reweight=config.resolved_second_reweight, total_steps=total_steps,
                          seed=config.seed) if config.mentormix else None
    refurbishment = Refurbishment.for_run(config, parts, noise.noisy_labels, verified, data.num_classes,
                                          device) if config.learns_mentornet else None  # checks its input too
    distributed.init_process_group(world, device)  # after every rank's input checks, before any write
    precision = Precision.create(resolve_precision(config.precision, device), device)
    run = Run(config=config, out=out, device=device, world=world, data=data, noise=noise, model=model,
              optimizer=make_optimizer(model, recipe, config.momentum), weighter=weighter, weighting=weighting,
              mentornet_sha256=mentor_sha256, recipe=recipe, train_loader=train_loader, test_loader=test_loader,
              validation_loader=_validation_loader(config, recipe, data, noise, verified, parts, device),
              epochs=epochs, total_steps=total_steps, precision=precision, mentormix=mentormix,
              verified_labels=verified, clean_parts=parts, trusted=trusted,
              trusted_mask=None if trusted_mask is None else trusted_mask.to(device),
              refurbishment=refurbishment)
    mentormix_state = (MentorMixState(mentormix),) if mentormix is not None else ()
    learning = (LearnMentorNet(run),) if config.learns_mentornet else ()
    for callback in (PrecisionState(run), *data_driven_callbacks(run), *mentormix_state, *learning,
                     SampleRecordCallback(),
                     *registered_callbacks(run), *callbacks, RunFolderWriter()):
        run.add_callback(callback)
    if resume:
        run_folder.restore(run, last)
    elif run.is_main:
        run_folder.check_run_folder(out, force=force, delete=True)
        save_noisy_labels(out / "noisy_labels.npz", noise)
        if config.clean_subset_file is not None:
            subset = data.clean_subset_indices
            atomic_write(out / "clean_subset.npz", lambda tmp: np.savez(
                tmp, pool_index=subset.numpy(), sample_id=data.source_indices[subset].numpy(),
                label=verified[subset].numpy()), force=True)
        run_folder.write_config(run)
    distributed.barrier(world)
    run.train_model = _training_module(run)
    return run


def _check_batch_norm_batch(config: StudentConfig, model: torch.nn.Module, world: distributed.World) -> None:
    """Refuse a batch of one sample per process for a student with BatchNorm, which cannot train on it."""
    per_process = config.batch_size // max(world.size, 1)
    if per_process < 2 and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        where = " per process" if world.enabled else ""
        raise ValueError(f"--batch-size {config.batch_size} gives {per_process} sample{where} a step, and "
                         f"{config.studentnet} has BatchNorm, which needs at least 2 to train: use --batch-size 2 "
                         "or more")


def _check_event_epochs(config: StudentConfig, total_steps: int) -> None:
    """A dump or re-fit at a progress epoch the run never reaches is refused before training starts."""
    events = [("--dump-at-epoch", config.dump_at_epoch)] if config.dump else []
    events += [("--relearn-mentor", point) for point in parse_relearn(config.relearn_mentor, config.recipe.lr_schedule)]
    for option, epoch in events:
        first_step = math.ceil(epoch * total_steps / 100)  # the first step whose progress epoch is >= epoch
        if first_step >= total_steps:
            needed = math.floor(100 * (total_steps - 1) / total_steps)
            raise ValueError(f"{option} epoch {epoch} is never reached: {total_steps} steps reach progress epoch "
                             f"{needed} at most; run at least {math.ceil(100 / (100 - epoch))} steps "
                             f"(--epochs or --max-steps) or pick an earlier epoch")


def _check_clean_subset(config: StudentConfig, data: ImageDataset, noise: NoiseResult, verified: torch.Tensor) -> None:
    """A data-driven dump or re-fit needs clean and corrupted samples in the clean subset."""
    if not (config.dump or config.relearn_mentor != "never"):
        return
    held = data.clean_subset_indices
    corrupted = int((noise.noisy_labels[held] != verified[held]).sum())
    if 0 < corrupted < len(held):
        return
    rate = max(noise.noise_rate, 1e-3)
    smallest = min(0.99, math.ceil(1000 * 10 / (rate * len(data.train_labels))) / 1000)
    kind = "no corrupted" if corrupted == 0 else "only corrupted"
    raise ValueError(f"the clean subset of {len(held)} images holds {kind} labels at noise rate "
                     f"{noise.noise_rate:.3f}, so a data-driven MentorNet has nothing to learn; use "
                     f"--clean-subset-fraction {smallest:g} or more (about 10 corrupted samples)")


def _training_module(run: Run) -> torch.nn.Module | None:
    """The student as the training step calls it: SyncBatchNorm, DDP, then torch.compile, as asked.

    ``run.model`` stays the plain module: checkpoints, evaluation and dumps use it and its state dict.
    """
    if not run.world.enabled and not run.config.compile:
        return None
    module = run.model
    if run.config.sync_bn and run.world.enabled:
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)  # same parameters and buffers
        run.model = module
    module = distributed.wrap_model(module, run.world, run.device)
    return torch.compile(module) if run.config.compile else module


def _clean_parts(config: StudentConfig, data: ImageDataset, verified: torch.Tensor) -> CleanSubsetParts | None:
    """The clean subset's parts when it is trained on: V (a fifth, unless --validation-fraction chose a noisy
    hold-out), and for --mentornet learn the probe P; the rest is trusted."""
    if not config.trains_on_clean_subset:
        return None
    subset = data.clean_subset_indices
    return split_clean_subset(subset, verified[subset], validation=config.validation == "clean_subset_part",
                              probe_fraction=config.learn_probe_fraction if config.learns_mentornet else None,
                              seed=config.seed)


def _training_pool(config: StudentConfig, data: ImageDataset, noise: NoiseResult, verified: torch.Tensor,
                   parts: CleanSubsetParts | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The labels and pool indices the training loader draws from, and which of them are trusted (trained at
    weight 1 with their verified labels; None: none).

    ``--train-on noisy``: the noisy training set (plus, for --mentornet learn, the probe, with its noisy labels;
    the trusted part comes in its own batches). ``clean_subset``: the clean subset's trusted part alone.
    ``noisy+clean_subset``: both, in the same batches."""
    if parts is None:
        return noise.noisy_labels, data.train_indices, None
    labels = noise.noisy_labels.clone()
    labels[parts.trusted] = verified[parts.trusted]
    if config.learns_mentornet:
        return labels, torch.sort(torch.cat([data.train_indices, parts.probe])).values, None
    trusted = torch.zeros(len(labels), dtype=torch.bool)
    trusted[parts.trusted] = True
    if config.train_on == "clean_subset":
        return labels, parts.trusted, trusted
    return labels, torch.sort(torch.cat([data.train_indices, parts.trusted])).values, trusted


def _loaders(config: StudentConfig, recipe: TrainingRecipe, data: ImageDataset, labels: torch.Tensor,
             device: torch.device, world: distributed.World | None = None, *,
             indices: torch.Tensor | None = None) -> tuple[DeviceLoader, DeviceLoader]:
    """The global-batch training loader over ``indices`` (default: the noisy training set) with ``labels``, and
    the test loader over this rank's contiguous part of the test set."""
    world = world or distributed.World()
    indices = data.train_indices if indices is None else indices
    batch_size = config.batch_size
    if config.train_on == "clean_subset":  # a small clean subset: one batch of all of it per step at most
        batch_size = min(batch_size, len(indices))
    if len(indices) < 2:
        fix = (_larger_clean_subset(config) if config.train_on == "clean_subset" else
               "lower --validation-fraction" if config.clean_subset_file else
               "lower --clean-subset-fraction or --validation-fraction")
        raise ValueError(f"{len(indices)} training image{'' if len(indices) == 1 else 's'} left to train on, too few "
                         f"for a step that learns anything; {fix}, or use more images")
    if batch_size > len(indices):
        raise ValueError(f"--batch-size {config.batch_size} is larger than the {len(indices)} training images; "
                         f"use --batch-size {len(indices)} or less")
    train_loader = DeviceLoader(data.train_images, labels, indices,
                                batch_size=batch_size, augment=config.augmented, pad=recipe.pad,
                                seed=config.seed, device=device, channels_last=recipe.channels_last)
    test_indices = torch.arange(len(data.test_labels)).tensor_split(world.size)[world.rank]
    test_loader = DeviceLoader(data.test_images, data.test_labels, test_indices if world.enabled else None,
                               batch_size=1000, augment=False, shuffle=False, drop_last=False, device=device,
                               channels_last=recipe.channels_last)
    return train_loader, test_loader


SMALL_VALIDATION = 50  # a validation split smaller than this chooses best.pt mostly by chance: warned


def _larger_clean_subset(config: StudentConfig) -> str:
    """How this run gets a larger clean subset: more samples in its --clean-subset-file, else a larger fraction."""
    return "list more samples in --clean-subset-file" if config.clean_subset_file else "raise --clean-subset-fraction"


def _validation_loader(config: StudentConfig, recipe: TrainingRecipe, data: ImageDataset, noise: NoiseResult,
                       verified: torch.Tensor, parts: CleanSubsetParts | None,
                       device: torch.device) -> DeviceLoader | None:
    """The split best.pt is chosen on: the clean subset (or its held-out fifth) with its verified labels, or a
    noisy hold-out."""
    if config.validation == "clean_subset":
        indices, labels = data.clean_subset_indices, verified
    elif config.validation == "clean_subset_part":
        indices, labels = parts.validation, verified
    elif config.validation == "noisy_holdout":
        indices, labels = data.validation_indices, noise.noisy_labels
    else:
        return None
    if not len(indices):
        raise ValueError(f"the validation split ({config.validation.replace('_', ' ')}) is empty: the training pool "
                         f"of {len(data.train_labels)} images is too small for it")
    if len(indices) < SMALL_VALIDATION:
        more = "raise --validation-fraction" if config.validation == "noisy_holdout" else _larger_clean_subset(config)
        warnings.warn(f"best.pt is chosen on a validation split of {len(indices)} images, where one image is "
                      f"{100 / len(indices):.3g} points of accuracy: the choice is mostly chance; {more} for "
                      f"{SMALL_VALIDATION} images or more", stacklevel=2)
    return DeviceLoader(data.train_images, labels, indices, batch_size=1000, augment=False, shuffle=False,
                        drop_last=False, device=device, channels_last=recipe.channels_last)


# ------------------------------------------------------------------------------------------ training


def student_loss(losses: torch.Tensor, weights: torch.Tensor, decayed: list, decay: float, *,
                 mean_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Spec §4.1 step 12: mean over the batch (not over Σv) of v·loss, plus for the 2018 ResNet
    ``mean(v) · wd · Σ‖W‖² / 2`` over ``decayed`` (conv and FC weights). Under DDP ``losses`` and
    ``weights`` are a rank's shard and ``mean_weight`` is the mean weight of the global batch."""
    loss = (weights * losses).mean()
    if decayed and decay:
        mean_weight = weights.mean() if mean_weight is None else mean_weight
        loss = loss + mean_weight * decay * 0.5 * sum(p.pow(2).sum() for p in decayed)
    return loss


def train_one_epoch(run: Run, epoch: int, callbacks: list[Callback] | tuple = ()) -> EpochStats:
    """One pass; under DDP this rank trains on its shard, and the stats cover the whole global batch.

    ``callbacks`` are those whose :meth:`~student_training.callbacks.Callback.on_step` runs before each step.
    """
    model, config, world = run.forward_model, run.config, run.world
    model.train()
    stats = (EpochStats if run.mentormix is None else MentorMixStats)(run.data.num_train, run.device)
    decay = run.recipe.weight_decay if run.recipe.decay_mode == "scaled" else 0.0
    decayed = [p for p in run.model.parameters() if p.ndim > 1] if decay else []
    step = epoch * len(run.train_loader)
    for images, labels, indices in distributed.shard_batches(run.train_loader, epoch, world):
        if step >= run.total_steps:
            break
        for callback in callbacks:
            callback.on_step(run, step)
        lr = learning_rate(step, run.total_steps, run.recipe.lr, run.recipe.lr_schedule)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        if run.mentormix is not None:
            mentormix_step(run, images, labels, indices, step, stats, decayed, decay)
            step += 1
            continue
        with run.precision.autocast():
            logits = model(images)
        losses = per_sample_cross_entropy(logits.float(), labels)
        all_losses, predictions = distributed.gather_batch(losses, logits, world)
        if run.weighter is None:
            mentor_weights = all_weights = torch.ones_like(all_losses)
        else:
            mentor_weights = run.weighter.mentor_weights(all_losses, step, indices)
            all_weights = run.weighter.example_dropout(mentor_weights, run.weighter.last["epoch"])
        if run.trusted_mask is not None:  # trusted samples in the same batches: weight 1, verified labels
            all_weights = torch.where(run.trusted_mask[indices], 1.0, all_weights)
        weights = world.local(all_weights)
        loss = student_loss(losses, weights, decayed, decay, mean_weight=all_weights.mean() if decayed else None)
        if run.refurbishment is not None and (config.learn_relabel_in_burn_in or not run.weighter.last["burn_in"]):
            candidates = world.local(run.weighter.in_noisy_stream(indices))  # not a released probe sample
            loss = loss + run.refurbishment.loss(logits.float(), labels, weights, candidates)
        if run.trusted is not None:
            loss = loss + run.trusted.loss(run, model)
        run.precision.backward_step(loss, run.optimizer)
        stats.add(all_losses, all_weights, mentor_weights, predictions, indices)
        step += 1
    return stats


def validate(run: Run) -> float:
    """Accuracy on the validation split (NaN without one); every rank scores the whole split."""
    if run.validation_loader is None:
        return float("nan")
    return accuracy(run.model, run.validation_loader, autocast_dtype=run.autocast_dtype)


def mentormix_step(run: Run, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, step: int,
                   stats: MentorMixStats, decayed: list, decay: float) -> None:
    """One MentorMix step (2020 spec §2, S1-S9) with the run's :class:`MentorMix`: the clean pass in train mode
    without gradient (its BN statistics kept), weighting, mixing, the mixed pass and the update.

    ``weight_clean``, ``weight_noisy``, ``detector_auc``, ``mean_weight`` and ``weighted_loss`` describe the
    first weighting on the clean pass; the mixed pass's loss and the mixing go to :data:`MENTORMIX_COLUMNS`.
    """
    mix, model = run.mentormix, run.forward_model
    with mix.clean_pass(run.model), run.precision.autocast():
        logits = model(images)
    losses = per_sample_cross_entropy(logits.float(), labels)
    batch = mix.mix(images, labels, losses, step)
    with run.precision.autocast():
        mixed_logits = model(batch.inputs)
    loss = mix.loss(mixed_logits.float(), batch)
    mixed_loss = loss.detach()
    if decayed and decay:  # the 2018 ResNet's decay, scaled by the mean (second) weight the loss used
        mean_weight = mix.metrics["second_weight_mean"] if mix.second_reweight else 1.0
        loss = loss + mean_weight * decay * 0.5 * sum(p.pow(2).sum() for p in decayed)
    run.precision.backward_step(loss, run.optimizer)
    stats.add(losses, batch.weights, batch.mentor_weights, logits, indices)
    stats.add_mix(mixed_loss, mix.metrics, len(losses))


def evaluate(run: Run) -> float:
    """Test accuracy; under DDP each rank scores its part of the test set with rank 0's BN statistics."""
    if not run.world.enabled:
        return accuracy(run.model, run.test_loader, autocast_dtype=run.autocast_dtype)
    distributed.broadcast_module(run.model, run.world)  # BN running statistics differ per shard
    count = len(run.test_loader.indices)
    correct = round(accuracy(run.model, run.test_loader, autocast_dtype=run.autocast_dtype) * count)
    totals = torch.tensor([correct, count], dtype=torch.float64, device=run.device)
    totals = distributed.all_reduce_sum(totals, run.world)
    return float(totals[0] / totals[1].clamp(min=1))


def epoch_row(run: Run, epoch: int, stats: EpochStats, test_accuracy: float, val_accuracy: float,
              seconds: float) -> dict:
    """One ``metrics.csv`` row, including how well the MentorNet weights separate clean from noisy."""
    seen = ~torch.isnan(stats.sample_weight)
    if run.clean_parts is not None:  # the weight, detector and fitting columns describe the noisy training set only
        seen[run.clean_parts.probe.to(seen.device)] = False
        seen[run.clean_parts.trusted.to(seen.device)] = False
    weights = stats.sample_weight[seen].cpu().numpy()
    noisy_labels = run.noise.noisy_labels.to(run.device)[seen]
    clean = (noisy_labels == run.data.train_labels.to(run.device)[seen]).cpu().numpy()
    predictions = stats.sample_prediction[seen]
    flipped = torch.from_numpy(~clean).to(run.device)
    count = max(stats.count, 1)
    step = min((epoch + 1) * len(run.train_loader), run.total_steps)
    return {
        "epoch": epoch + 1,
        "step": step,
        "lr": learning_rate(step - 1, run.total_steps, run.recipe.lr, run.recipe.lr_schedule),
        "loss": float(stats.loss) / count,
        "weighted_loss": float(stats.weighted_loss) / count,
        "mean_weight": float(stats.weight) / count,
        "data_utilization": float(stats.utilized) / count,
        "train_accuracy": float((predictions == noisy_labels).float().mean()),
        "fit_noisy": _mean((predictions == noisy_labels)[flipped]),
        "test_accuracy": test_accuracy,
        "val_accuracy": val_accuracy,
        "weight_clean": float(weights[clean].mean()) if clean.any() else float("nan"),
        "weight_noisy": float(weights[~clean].mean()) if (~clean).any() else float("nan"),
        "detector_auc": detector_auc(weights, clean),
        "seconds": round(seconds, 3),
        **mentormix_columns(stats),
    }


def mentormix_columns(stats: EpochStats) -> dict:
    """The epoch's :data:`MENTORMIX_COLUMNS`: means over its samples, NaN for a run without MentorMix."""
    if not isinstance(stats, MentorMixStats):
        return dict.fromkeys(MENTORMIX_COLUMNS, float("nan"))
    count = max(stats.count, 1)
    sums = (stats.mixed_loss, stats.mixing, stats.partner_share, stats.second_weight)
    return {name: float(total) / count for name, total in zip(MENTORMIX_COLUMNS, sums)}


def _mean(values: torch.Tensor) -> float:
    return float(values.float().mean()) if values.numel() else float("nan")


LOW_MEAN_WEIGHT = 0.01  # an epoch's mean MentorNet weight below this: train() warns that the student barely trains


def train(run: Run) -> list[dict]:
    """Train from the run's state to the end, calling its callbacks; returns every metrics row."""
    for callback in run.callbacks:
        callback.on_train_start(run)
    stepping = step_callbacks(run.callbacks)
    warned = False
    try:
        for epoch in range(run.state.epoch, run.epochs):
            start = time.perf_counter()
            stats = train_one_epoch(run, epoch, stepping)
            check_finite(stats, epoch)
            test_accuracy = evaluate(run)  # under DDP this also gives every rank rank 0's BN statistics
            row = epoch_row(run, epoch, stats, test_accuracy, validate(run), time.perf_counter() - start)
            run.state.rows.append(row)
            run.state.epoch = epoch + 1
            if row["val_accuracy"] > run.state.best_validation:  # NaN (no validation split) never is: no best.pt
                run.state.best_validation, run.state.best_epoch = row["val_accuracy"], epoch + 1
            for callback in run.callbacks:
                callback.on_epoch_end(run, epoch, row)
            if not warned and run.is_main and type(run.weighter) is MentorWeighter \
                    and row["mean_weight"] < LOW_MEAN_WEIGHT:
                warned = True
                warnings.warn(f"epoch {epoch + 1}: the MentorNet's mean weight is {row['mean_weight']:.4f}, so the "
                              "student barely trains; a MentorNet fitted on other losses (another data set, or late "
                              "in another run) can give these losses weights near 0")
    except BaseException:  # stopped before an epoch was saved: no half-written run is left behind
        discard_unsaved_start(run)
        raise
    for callback in run.callbacks:
        callback.on_train_end(run)
    run.release()
    return run.state.rows


def check_finite(stats: EpochStats, epoch: int) -> None:
    """Stop a run whose loss became NaN or infinite, before the epoch is saved (one host read per epoch)."""
    total = float(stats.weighted_loss) + float(stats.loss)
    if not math.isfinite(total):
        kept = f"last.pt keeps epoch {epoch}" if epoch else "nothing was kept"
        raise TrainingDiverged(f"training diverged in epoch {epoch + 1}: the loss became {float(stats.loss):g}; "
                               f"{kept}; lower --lr and start over")


def summarize(rows: list[dict]) -> dict:
    """The final row, the epoch the validation split chose (its test accuracy is what best.pt scores), and
    the best test accuracy over epochs (an oracle no checkpoint choice may use)."""
    final = rows[-1]
    scored = [r for r in rows if math.isfinite(r.get("val_accuracy", float("nan")))]
    chosen = max(scored, key=lambda r: r["val_accuracy"]) if scored else None
    return {"final_test_accuracy": final["test_accuracy"],
            "best_test_accuracy": max(r["test_accuracy"] for r in rows),
            "selected_epoch": chosen["epoch"] if chosen else None,
            "selected_test_accuracy": chosen["test_accuracy"] if chosen else float("nan"),
            "selected_val_accuracy": chosen["val_accuracy"] if chosen else float("nan"),
            "final_fit_noisy": final["fit_noisy"], "final_detector_auc": final["detector_auc"],
            "epochs": final["epoch"], "steps": final["step"]}

__all__ = ["METRIC_COLUMNS", "MENTORMIX_COLUMNS", "MentorMixState", "PrecisionState", "Run", "RunFolderWriter",
           "RunState", "SMALL_VALIDATION", "StudentConfig", "TrainingDiverged", "check_run", "discard_unsaved_start",
           "epoch_row", "evaluate", "learning_rate", "mentormix_step", "mentornet_file_change", "prepare_run",
           "resume_config", "student_loss", "summarize", "train", "train_one_epoch", "validate", "weighting_defaults"]
