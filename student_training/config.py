"""The one declaration of a StudentNet run: :class:`StudentConfig`.

Each ``train-student`` option is a field of :class:`StudentConfig`, declared once with its type,
default, help text and command-line spelling (:func:`curricula.options.option`); the weighting options
are the fields of :class:`curricula.features.WeighterConfig`, held here as overrides of the MentorNet's
own ``student_defaults``. From that declaration come the click options (``cli.py``), ``config.json``,
``--config FILE`` (JSON or TOML, checked key by key), the ``--resume`` conflict check and the
checkpoints, which embed the config.

Everything a name refers to (data set, student, noise type, learning-rate schedule) is checked against
its registry when the config is made, before any data or model is loaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from curricula.features import MAX_EPOCH, WeighterConfig, check_percentile
from curricula.options import check_option_types, check_seed, flag_name, option, option_fields, options_from_mapping

from .accelerator import PRECISIONS
from .data import check_dataset_name, list_datasets
from .mentormix import DEFAULT_MIXUP_ALPHA, DEFAULT_SECOND_REWEIGHT
from .models import TrainingRecipe, list_students, student_recipe
from .noise import list_noise_types, split_key

LR_SCHEDULES = ("auto", "piecewise_2018", "exponential_2018", "baseline_2018", "cosine", "constant", "mentormix_2020")
DEVICES = ("auto", "cpu", "cuda")
AUGMENTED_DATASETS = ("cifar10", "cifar100")
# Options whose default (None, or "auto" for the schedule) stands for the student's own value (the data set's, for
# augment): the value it stands for is StudentConfig.effective(name), and a run records it in config.json's
# ``resolved`` under the same name, which pins it when the folder is read back (run_config_values).
RECIPE_OPTIONS = {"lr": None, "lr_schedule": "auto", "weight_decay": None, "augment": None}
# What each default depends on: a pinned value holds only while these stay as the run had them (a --config rerun
# that overrides one puts the pinned option back to its default, which the new values then decide).
RECIPE_DEPENDS_ON = {"lr": ("studentnet",), "lr_schedule": ("studentnet",),
                     "weight_decay": ("studentnet", "mentormix", "second_reweight"), "augment": ("dataset",)}
CONFIG_SUFFIXES = (".json", ".toml")
TRAIN_ON = ("noisy", "clean_subset", "noisy+clean_subset")
LEARN = "learn"  # --mentornet learn: the run learns its own MentorNet from its clean subset
# --learn-threshold's default (chosen on the validation split, docs/learned_choice.md)
THRESHOLD_DEFAULT = 0.9
# --learn-threshold-fallback and --learn-trusted-batch (none and 64 before; chosen on validation, docs/learned_choice.md)
THRESHOLD_FALLBACK_DEFAULT = "precision"
THRESHOLD_PRIOR_DEFAULT = "none"
TRUSTED_BATCH_DEFAULT = 32
# how the value check of an option with a fixed set of values names it (default: its flag)
CHOICE_NAMES = {"lr_schedule": "learning-rate schedule", "device": "device", "precision": "precision"}
TRUSTED_LOSS_DEFAULT = "per-sample"  # --learn-trusted-loss (mean before; chosen on validation, docs/learned_choice.md)
# --learn-relabel-confidence, --learn-relabel-target and --learn-relabel-in-burn-in (0, i.e. no relabelling,
# before; chosen on validation, docs/learned_choice.md)
RELABEL_CONFIDENCE_DEFAULT = 0.9
RELABEL_TARGET_DEFAULT = "posterior"
RELABEL_IN_BURN_IN_DEFAULT = True
CLEAN_VALIDATION_SHARE = 0.2  # of the clean subset, held out when the clean subset is trained on
DEFAULT_VALIDATION_FRACTION = 0.1
# The weighting options that define loss_diff (its percentile and moving average): they do nothing for a MentorNet
# fitted without loss_diff.
LOSS_DIFF_OPTIONS = ("loss_p_percentile", "loss_moving_average_decay")


def learn_only(name: str) -> bool:
    """Whether option ``name`` (its field name) applies only to ``--mentornet learn`` (the ``--learn-*`` options)."""
    return name.startswith("learn_")


def has_fixed_threshold(values: Mapping) -> bool:
    """Whether learned-mode options ``values`` (field names) weight with a fixed ``--learn-threshold``, the only
    case ``--learn-threshold-fallback`` applies to (not ``--learn-precision``, not ``--learn-weights soft``)."""
    return values.get("learn_precision") is None and values.get("learn_weights", "threshold") == "threshold"


# Progress epochs at which the 2018 schedules drop the learning rate (spec §4.6).
LR_DROP_EPOCHS = {"piecewise_2018": (50, 64), "exponential_2018": (65,)}


def parse_relearn(text: str, lr_schedule: str) -> tuple[int, ...]:
    """``never``, ``lr-drops`` (the first two drops of the 2018 schedule, as in the paper), or progress
    epochs ``E1,E2,...`` in 1..99 (any order)."""
    text = str(text).strip()
    if text == "never":
        return ()
    if text == "lr-drops":
        if lr_schedule not in LR_DROP_EPOCHS:
            raise ValueError(f"--relearn-mentor lr-drops needs a stepped learning-rate schedule (piecewise_2018 "
                             f"or exponential_2018), this run uses {lr_schedule}; give progress epochs, e.g. 30,60")
        return LR_DROP_EPOCHS[lr_schedule]
    return parse_epoch_list(text, "--relearn-mentor", "never, lr-drops or progress epochs like 30,60")


def parse_learn_epochs(text: str) -> tuple[int, ...]:
    """``--learn-epochs E1,E2,...``: progress epochs in 1..99, at least one."""
    return parse_epoch_list(text, "--learn-epochs", "progress epochs like 5,10,15")


def parse_epoch_list(text: str, option: str, expected: str) -> tuple[int, ...]:
    """Progress epochs ``E1,E2,...`` in 1..99, each once, in increasing order (given in any order); ``ValueError``
    naming ``option`` (``expected`` says what it takes) for an empty entry, a non-integer, a repeat or a value out of
    range."""
    try:
        epochs = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise ValueError(f"{option} must be {expected}; got {text!r}") from None
    repeated = sorted({epoch for epoch in epochs if epochs.count(epoch) > 1})
    if repeated:
        raise ValueError(f"{option} lists progress epoch {repeated[0]} more than once: {text!r}")
    if min(epochs) < 1 or max(epochs) > MAX_EPOCH:
        raise ValueError(f"{option} epochs must lie in 1..{MAX_EPOCH}, got {text!r}")
    return tuple(sorted(epochs))


def _datasets() -> list[str]:
    return [*list_datasets(), "npz:PATH"]


@dataclass(frozen=True)
class StudentConfig:
    """Everything a run needs; written to ``config.json`` and embedded in every checkpoint.

    ``weighter`` holds only the weighting options given for this run (field names of
    :class:`~curricula.features.WeighterConfig`); the rest come from the MentorNet's ``student_defaults``.
    """

    # data and labels
    dataset: str = option("digits", metavar="NAME", choices=_datasets,
                          help="cifar10, cifar100, fashion-mnist, the bundled digits (no download needed), or "
                               "npz:PATH for your own arrays (see README).")
    data_dir: str | None = option(None, metavar="DIR",
                                  help="Folder holding the data set files (CIFAR python archives, Fashion-MNIST idx "
                                       "files).")
    download: bool = option(False, help="Fetch a missing data set from its official address (md5-checked).")
    subset: int | None = option(None, metavar="N",
                                help="Train on a seeded, class-balanced subset of N training images.")
    clean_subset_fraction: float = option(0.0, metavar="F",
                                          help="Hold this fraction of the training set out as a clean subset "
                                               "(for data-driven MentorNets: --dump, --relearn-mentor, and --mentornet learn, which "
                                               "needs it), in [0, 1).")
    validation_fraction: float | None = option(
        None, metavar="F",
        help="Fraction of the training pool held out, with its noisy labels, as the validation split that "
             "chooses best.pt (the test set never does). Default: the clean subset, with its clean labels, when "
             "there is one (a fifth of it when it is trained on: --train-on, --mentornet learn), else 0.1; 0: no "
             "validation split, and no best.pt.")
    noise: float = option(0.0, metavar="RATE",
                          help="Label noise rate r in [0, 1] (the 2018 data sets used 0.2, 0.4, 0.8).")
    noise_type: str = option("symmetric", metavar="TYPE", choices=list_noise_types,
                             help="symmetric (exactly r·N labels moved to another class), uniform (each label "
                                  "redrawn over all classes with probability r), pairflip or asymmetric.")
    noise_file: str | None = option(None, metavar="FILE",
                                    help="Use these noisy labels instead: FILE (.npy/.npz/.pt), or FILE:KEY for "
                                         "one array of several (e.g. CIFAR-10N: FILE.pt:worse_label).")
    # networks
    studentnet: str = option("small_cnn", metavar="NAME", choices=list_students,
                             help="Student network: resnet101 and inception (the 2018 ones), resnet32, "
                                  "preact_resnet18, small_cnn, mlp.")
    mentornet: str = option("none", metavar="NAME|PATH|none|learn",
                            help="Pretrained MentorNet name, checkpoint file, none for the plain cross-entropy "
                                 "baseline (2018: --trained_mentornet_dir), or learn: the run learns its own "
                                 "MentorNet from its clean subset (paper Algorithm 1; see the --learn-* options).")
    weighter: dict = field(default_factory=dict, metadata={"nested": WeighterConfig})
    # optimisation
    epochs: int = option(100, metavar="N", help="Passes over the training set.")
    max_steps: int | None = option(None, metavar="N",
                                   help="Stop after this many steps instead (2018: --max_number_of_steps, 39000 for "
                                        "ResNet).")
    batch_size: int = option(128, metavar="B", help="Samples per step (the global batch under torchrun).")
    lr: float | None = option(None, metavar="LR",
                              help="Peak learning rate (2018: --learning_rate). Default: the student's own, 0.02 for "
                                   "preact_resnet18 (DivideMix's) and 0.1 for the others (2018's).")
    lr_schedule: str = option("auto", metavar="NAME", choices=LR_SCHEDULES,
                              help="auto: the student's own (the 2018 piecewise schedule for resnet101, exponential "
                                   "for inception, cosine for the others); baseline_2018: the 2018 ResNet "
                                   "baseline's (the peak, then a tenth of it from step 19531 of 39000); "
                                   "mentormix_2020: MentorMix's (x0.9 every 11718.75 of 200000 steps, scaled to "
                                   "the run).")
    momentum: float = option(0.9, metavar="M", help="SGD momentum.")
    weight_decay: float | None = option(None, metavar="WD",
                                        help="Default: 2e-4 scaled by the mean weight for resnet101 (2018), none for "
                                             "inception (2018), 0 for mlp, 5e-4 otherwise.")
    augment: bool | None = option(None, help="Pad-and-crop plus flip. Default: on for CIFAR, off otherwise.")
    seed: int = option(0, help="Seed for noise, subsets, initial weights, batches and example dropout.")
    # where it runs
    device: str = option("auto", choices=DEVICES, resume_safe=True,
                         help="auto, cpu or cuda; under torchrun, cuda means cuda:LOCAL_RANK (one GPU per process).")
    compile: bool = option(False, resume_safe=True,
                           help="torch.compile the student for training (slower start, faster steps on a GPU). "
                                "Refused before training when the compiler it needs is missing (Triton and a C "
                                "compiler on a GPU, a C++ compiler on the CPU).")
    precision: str = option("auto", choices=PRECISIONS, resume_safe=True,
                            help="Arithmetic of the student's forward passes (torch.autocast): auto is bf16 on a "
                                 "GPU that has it (A100, H100, ...), fp16 with a gradient scaler on older GPUs "
                                 "(V100, T4, P100), fp32 on the CPU; bf16 also runs on the CPU, fp16 needs a GPU. "
                                 "Losses, MentorNet weights and percentiles are fp32 whatever this is.")
    sync_bn: bool = option(False, help="Under torchrun on GPUs: SyncBatchNorm, so BN statistics span the global "
                                       "batch as in one process (default: each rank's BN sees its shard).")
    # data-driven MentorNets
    dump: str | None = option(None, metavar="FILE",
                              help="Write a data-driven dump of the clean subset, a CSV file whatever its name "
                                   "(columns sample_id,epoch,noisy_label,clean_label,loss; the 2018 code named it "
                                   "dump.txt), for learn-curriculum --dump. Needs a clean subset "
                                   "(--clean-subset-fraction or --clean-subset-file) and --dump-at-epoch.")
    dump_at_epoch: int | None = option(None, metavar="E",
                                       help="Training progress epoch (0..99) at which to take the dump (2018: "
                                            "about 18); a run whose steps skip it dumps at the next one it reaches, "
                                            "and says which.")
    relearn_mentor: str = option("never", metavar="never|lr-drops|E1,E2",
                                 help="Re-fit the MentorNet from its current weights on a dump of the current "
                                      "student at these progress epochs, 1..99 in any order (paper Algorithm 1, step "
                                      "6; lr-drops: after the first two 2018 LR drops).")
    relearn_percentile: float | None = option(None, metavar="P",
                                              help="Loss percentile P of each re-fit's dump, a fraction in (0, 1] "
                                                   "(0.9 is the 90th percentile). Default: the MentorNet's own, "
                                                   "else 0.9.")
    # the clean subset a user has, and what trains on it
    clean_subset_file: str | None = option(
        None, metavar="FILE",
        help="Your own clean subset, instead of --clean-subset-fraction: a CSV with the header sample_id,label "
             "(positions in the official training set, and their verified labels; e.g. CIFAR-10N's clean labels for "
             "some of the images). With --subset every id must be among the images its seeded draw keeps.")
    train_on: str = option(
        "noisy", choices=TRAIN_ON,
        help="noisy: the noisy training set, the clean subset held out (2018); clean_subset: the clean subset alone "
             "with its clean labels (in batches of at most its size); noisy+clean_subset: both, the clean subset "
             "with its clean labels at weight 1. With a clean subset trained on, a fifth of it is held out as the "
             "validation split.")
    # --mentornet learn: the run learns its own MentorNet from its clean subset (paper Algorithm 1)
    learn_epochs: str = option(
        "5,10,15,20,25,30,35,40,45,50,55,60,65,70,75,80,85,90,95", metavar="E1,E2,...",
        help="With --mentornet learn: progress epochs (1..99, in any order) at which a fresh MentorNet is fitted to "
             "the probe's recent losses.")
    learn_window: int = option(
        5, metavar="W", help="With --mentornet learn: each fit uses the probe's losses of the last W progress epochs "
                             "(1..99; a progress epoch is 1% of the run's steps).")
    learn_weights: str = option(
        "threshold", choices=("threshold", "soft"),
        help="With --mentornet learn: threshold gives weight 1 where the MentorNet's output is >= "
             "--learn-threshold and 0 elsewhere; soft uses the output itself (2018).")
    learn_threshold: float = option(
        THRESHOLD_DEFAULT, metavar="TAU",
        help="With --mentornet learn --learn-weights threshold: weight 1 where the MentorNet's output is >= TAU, in "
             "(0, 1), and the loss is no larger than the largest loss the fit selected on the probe; else 0 (see "
             "--learn-threshold-fallback for a fit that never outputs TAU).")
    learn_precision: float | None = option(
        None, metavar="P",
        help="With --mentornet learn --learn-weights threshold: instead of a fixed --learn-threshold, each fit sets it "
             "to the lowest output at which a share P of the probe rows it selects carry their right label (nothing "
             "is selected if none does); P in (0, 1).")
    learn_threshold_fallback: str = option(
        THRESHOLD_FALLBACK_DEFAULT, choices=("precision", "min", "none"),
        help="With --mentornet learn and a fixed --learn-threshold TAU (not with --learn-precision or --learn-weights "
             "soft): what a fit does when no probe row reaches TAU (a fit to few clean rows can rank them well and "
             "never output TAU); precision: that fit's threshold falls to the lowest output at which a share TAU of "
             "the probe rows it selects are clean (nothing, if no top rows are that clean); min: every fit, whether "
             "or not a row reaches TAU, lowers its threshold to that one where it is below TAU (never raises it; "
             "measured worse); none: it selects nothing (the default until this option's release).")
    learn_threshold_prior: str = option(
        THRESHOLD_PRIOR_DEFAULT, choices=("none", "odds"),
        help="With --mentornet learn and a fixed --learn-threshold TAU (not with --learn-precision or --learn-weights "
             "soft): none: TAU is the bar on the MentorNet's output, a probability of being clean whatever the noise "
             "rate; odds: TAU is read at an even prior, so a fit whose probe is a share pi clean selects where the "
             "output's odds are at least TAU/(1-TAU) x pi/(1-pi) (a likelihood ratio of TAU/(1-TAU), 9 at 0.9), never "
             "below TAU: 0.931 at a clean share of 60%, 0.973 at 80%, TAU itself at 50% or less.")
    learn_keep_rate: str = option(
        "none", choices=("none", "probe"),
        help="With --mentornet learn --learn-weights threshold: probe caps each batch's selection at the share of "
             "the probe's last-epoch samples the fit selected (the batch's lowest losses; a rank, so it holds as "
             "losses fall between fits); none: no cap.")
    learn_features: str = option(
        "loss", choices=("loss", "loss_diff"),
        help="With --mentornet learn: the MentorNet sees the loss and the epoch (loss), or also loss_diff = loss - "
             "the moving average of the batch loss percentile (loss_diff, as in 2018).")
    learn_burn_in_weight: float = option(
        0.0, metavar="W",
        help="With --mentornet learn: the weight of every noisy sample before the first fit, in [0, 1] (1: plain "
             "training, as the 2018 burn-in; 0: the student starts from the trusted part alone).")
    learn_probe_fraction: float = option(
        0.5, metavar="F",
        help="With --mentornet learn: the share of the clean subset (after the validation fifth) whose losses fit the "
             "MentorNet, trained like the noisy samples with its noisy labels (see --learn-probe-labels); the rest is "
             "trusted.")
    learn_probe_labels: str = option(
        "noisy", choices=("noisy", "verified"),
        help="With --mentornet learn: how the probe is trained until the last fit; noisy: like the noisy samples, "
             "with its noisy labels and the MentorNet's weights (its losses are distributed like theirs); verified: "
             "with its verified labels in the trusted stream from the start (needs --learn-trusted-batch > 0), its "
             "losses under the noisy labels still recorded for the fits.")
    learn_trusted_batch: int = option(
        TRUSTED_BATCH_DEFAULT, metavar="B",
        help="With --mentornet learn: each step also trains on B trusted samples with their clean labels (and on "
             "the probe too: after the last fit, or from the start with --learn-probe-labels verified); 0: the trusted "
             "part is not trained on.")
    learn_trusted_loss: str = option(
        TRUSTED_LOSS_DEFAULT, choices=("mean", "per-sample"),
        help="With --mentornet learn: how a step adds its trusted batch to the noisy batch's loss (the mean over the "
             "noisy batch of weight x loss); per-sample: each trusted sample counts as one noisy sample of weight 1 "
             "(its losses summed and divided by the noisy batch size); mean: the trusted batch's mean loss added "
             "(the previous default).")
    learn_relabel_confidence: float = option(
        RELABEL_CONFIDENCE_DEFAULT, metavar="C",
        help="With --mentornet learn: a noisy sample the MentorNet gives weight 0 is trained, at weight 1, on a new "
             "label when that label has probability >= C, in (0, 1) (label refurbishment, as SELFIE, Song et al. ICML "
             "2019; see --learn-relabel-target and --learn-relabel-in-burn-in). Never a released probe sample; with "
             "--learn-weights soft no weight is 0 after the first fit. 0: such a sample is not trained on (the "
             "default until this option's release).")
    learn_relabel_in_burn_in: bool = option(
        RELABEL_IN_BURN_IN_DEFAULT,
        help="With --learn-relabel-confidence C > 0: relabel in the burn-in before the first fit too, where every noisy "
             "sample has weight --learn-burn-in-weight (0 by default, so every sure one is relabelled: self-training "
             "from the trusted part's start); --no-learn-relabel-in-burn-in: from the first fit on.")
    learn_relabel_target: str = option(
        RELABEL_TARGET_DEFAULT, choices=("posterior", "other", "prediction"),
        help="With --learn-relabel-confidence C > 0: posterior: the new label is the class of highest P(class | "
             "image, noisy label), the student's softmax times the probe's estimated noise transition P(noisy label "
             "| class), used when that is >= C (it may be the noisy label itself); other: the same posterior "
             "among the classes other than the noisy label, used when that is >= C (measured far worse: in the "
             "burn-in, and for a clean sample no fit selects, weight 0 is no verdict on the label; "
             "docs/learned_choice.md); prediction: the student's predicted class, used when its "
             "softmax probability is >= C.")
    # MentorMix (Jiang, Huang, Liu, Yang, ICML 2020; reference/mentormix-2020-spec.md)
    mentormix: bool = option(False, help="Train with MentorMix (2020): each sample's --mentornet weight steers mixup "
                                         "(partners drawn with softmax(v), the sample dominates its mix if v >= 0.5). "
                                         "Weighting defaults are MentorMix's, not the MentorNet's student_defaults: "
                                         "p 0.7, decay 0.5, burn-in 10, no example dropout (--loss-p-percentile "
                                         "and the other weighting options override them). Plain mixup: "
                                         "--mentornet baseline_mentornet.")
    mixup_alpha: float | None = option(None, metavar="A",
                                       help="With --mentormix: alpha > 0 of the Beta(alpha, alpha) mixing "
                                            "coefficient (2020: --mixup_alpha; 2, 8, 8, 4 for CIFAR-10 at noise 0.2, "
                                            "0.4, 0.6, 0.8). Default: 8, the official default.")
    second_reweight: bool | None = option(None, help="With --mentormix: weight the mixed losses with the MentorNet "
                                                     "again (2020: --second_reweight; on for noise 0.6 and 0.8). "
                                                     "Default: on, the official default; then, as in the official "
                                                     "code, no weight decay unless --weight-decay is given.")
    # what the run records
    record_samples: bool = option(True, help="After every epoch, record each training sample's loss and MentorNet "
                                             "weight (one extra eval pass over the training set) for "
                                             "find-label-issues.")

    def __post_init__(self):
        check_option_types(self)
        object.__setattr__(self, "weighter", options_from_mapping(WeighterConfig, self.weighter,
                                                                  origin="weighter options"))
        WeighterConfig().with_overrides(self.weighter)  # each given value is valid on its own
        check_dataset_name(self.dataset)
        student_recipe(self.studentnet)  # a registered student
        if self.noise_type not in list_noise_types():
            raise ValueError(f"unknown noise type {self.noise_type!r}; choose one of: {', '.join(list_noise_types())}")
        for f in option_fields(StudentConfig):  # every option with a fixed set of values (given by a file or code too)
            choices, value = f.metadata["choices"], getattr(self, f.name)
            if isinstance(choices, (tuple, list)) and value not in choices:
                raise ValueError(f"unknown {CHOICE_NAMES.get(f.name, flag_name(f.name))} {value!r}; choose one of: "
                                 f"{', '.join(choices)}")
        self._check_ranges()
        self._check_mentormix()
        self._check_data_driven()
        self._check_clean_subset_use()
        self._check_nothing_ignored()

    def _check_nothing_ignored(self) -> None:
        """An option that would have no effect in this combination is an error, not silently dropped."""
        if self.noise_file and (self.noise or self.noise_type != "symmetric"):
            raise ValueError("--noise-file gives the noisy labels; --noise and --noise-type would be ignored, drop them")
        if not self.noise_file and not self.noise and self.noise_type != "symmetric":
            raise ValueError(f"--noise-type {self.noise_type} needs a noise rate (--noise)")
        if self.relearn_percentile is not None and self.relearn_mentor == "never":
            raise ValueError("--relearn-percentile applies to re-fits; give --relearn-mentor too")
        if self.mentornet == "none" and self.weighter:
            given = ", ".join("--" + name.replace("_", "-") for name in self.weighter)
            raise ValueError(f"{given} set the MentorNet weighting; --mentornet is none, so there is none")
        if self.download and (self.dataset == "digits" or self.dataset.startswith("npz:")):
            raise ValueError(f"--download does not apply to {self.dataset} (nothing to fetch)")

    def _check_ranges(self) -> None:
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise rate must lie in [0, 1], got {self.noise}")
        if not 0.0 <= self.clean_subset_fraction < 1.0:
            raise ValueError(f"--clean-subset-fraction must lie in [0, 1), got {self.clean_subset_fraction}")
        if self.validation_fraction is not None and not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"--validation-fraction must lie in [0, 1), got {self.validation_fraction}")
        for name, low in (("epochs", 1), ("max_steps", 1), ("batch_size", 1), ("subset", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ValueError(f"{flag_name(name)} must be >= {low}, got {value}")
        if self.lr is not None and not 0 < self.lr < math.inf:
            raise ValueError(f"--lr must be a finite number > 0, got {self.lr}")
        check_seed(self.seed)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise ValueError(f"weight decay must be >= 0, got {self.weight_decay}")
        if self.relearn_percentile is not None:
            check_percentile(self.relearn_percentile, name="--relearn-percentile")

    def _check_data_driven(self) -> None:
        if (self.dump is None) != (self.dump_at_epoch is None):
            raise ValueError("give --dump FILE and --dump-at-epoch E together")
        if self.dump_at_epoch is not None and not 0 <= self.dump_at_epoch <= MAX_EPOCH:
            raise ValueError(f"dump epoch {self.dump_at_epoch} is beyond the run: training progress runs over "
                             f"epochs 0..{MAX_EPOCH}")
        parse_relearn(self.relearn_mentor, self.recipe.lr_schedule)
        needs_clean = "--dump" if self.dump else "--relearn-mentor" if self.relearn_mentor != "never" else None
        if needs_clean and not self.has_clean_subset:
            raise ValueError(f"{needs_clean} needs a clean subset: pass --clean-subset-fraction in (0, 1) or "
                             "--clean-subset-file FILE")
        if self.relearn_mentor != "never" and self.mentornet == "none":
            raise ValueError("--relearn-mentor needs a MentorNet to re-fit; --mentornet is none")

    @property
    def has_clean_subset(self) -> bool:
        return self.clean_subset_fraction > 0 or self.clean_subset_file is not None

    @property
    def learns_mentornet(self) -> bool:
        """``--mentornet learn``: the run fits its own MentorNets from its clean subset."""
        return self.mentornet == LEARN

    @property
    def trains_on_clean_subset(self) -> bool:
        return self.train_on != "noisy" or self.learns_mentornet

    def _check_clean_subset_use(self) -> None:
        if self.clean_subset_file is not None and self.clean_subset_fraction:
            raise ValueError("give --clean-subset-file or --clean-subset-fraction, not both")
        needs = "--mentornet learn" if self.learns_mentornet else f"--train-on {self.train_on}" \
            if self.train_on != "noisy" else None
        if needs and not self.has_clean_subset:
            raise ValueError(f"{needs} needs a clean subset: pass --clean-subset-fraction in (0, 1) or "
                             "--clean-subset-file FILE")
        if self.train_on == "clean_subset" and self.mentornet != "none":
            raise ValueError("--train-on clean_subset trains on clean labels only: there is nothing for a MentorNet "
                             "to weight; use --mentornet none")
        if self.train_on != "noisy":
            for other, given in (("--dump", self.dump), ("--relearn-mentor", self.relearn_mentor != "never"),
                                 ("--mentormix", self.mentormix)):
                if given:
                    raise ValueError(f"--train-on {self.train_on} trains on the clean subset, which {other} needs held "
                                     "out (as noisy samples); drop one of them")
        learn_given = [f.name for f in option_fields(StudentConfig) if learn_only(f.name)
                       and getattr(self, f.name) != f.default]
        if not self.learns_mentornet:
            if learn_given:
                raise ValueError(f"{flag_name(learn_given[0])} applies only with --mentornet learn")
            return
        if self.train_on != "noisy":
            raise ValueError("--mentornet learn chooses what trains on the clean subset itself; drop --train-on")
        for other, given in (("--mentormix", self.mentormix), ("--dump", self.dump),
                             ("--relearn-mentor", self.relearn_mentor != "never")):
            if given:
                raise ValueError(f"--mentornet learn fits its own MentorNets during the run; it does not combine with "
                                 f"{other} (use a fitted checkpoint from the run folder's mentornets/ instead)")
        ignored = [name for name in self.weighter if name not in LOSS_DIFF_OPTIONS]
        if ignored:
            raise ValueError(f"{flag_name(ignored[0])} does not apply to --mentornet learn (its burn-in is "
                             "--learn-burn-in-weight; it uses no example dropout)")
        if self.weighter and self.learn_features != "loss_diff":
            raise ValueError(f"{flag_name(next(iter(self.weighter)))} defines loss_diff, which --learn-features loss "
                             "does not use; add --learn-features loss_diff or drop it")
        parse_learn_epochs(self.learn_epochs)
        if not 1 <= self.learn_window <= MAX_EPOCH:
            raise ValueError(f"--learn-window must lie in 1..{MAX_EPOCH} progress epochs, got {self.learn_window}")
        if not 0.0 < self.learn_threshold < 1.0:
            raise ValueError(f"--learn-threshold must lie in (0, 1), got {self.learn_threshold}")
        if self.learn_precision is not None and not 0.0 < self.learn_precision < 1.0:
            raise ValueError(f"--learn-precision must lie in (0, 1), got {self.learn_precision}")
        if self.learn_precision is not None and self.learn_threshold != THRESHOLD_DEFAULT:
            raise ValueError("--learn-threshold fixes the threshold and --learn-precision sets it at each fit; give one")
        if self.learn_weights == "soft" and (self.learn_threshold != THRESHOLD_DEFAULT
                                            or self.learn_precision is not None):
            raise ValueError("--learn-weights soft uses the MentorNet's output as the weight, with no threshold; drop "
                             f"{'--learn-precision' if self.learn_precision is not None else '--learn-threshold'}")
        for name, default in (("learn_threshold_fallback", THRESHOLD_FALLBACK_DEFAULT),
                              ("learn_threshold_prior", THRESHOLD_PRIOR_DEFAULT)):
            if getattr(self, name) != default and not has_fixed_threshold(vars(self)):
                raise ValueError(f"{flag_name(name)} applies to a fixed --learn-threshold; "
                                 + ("--learn-weights soft has no threshold" if self.learn_weights == "soft" else
                                    "--learn-precision sets every fit's threshold itself"))
        if self.learn_weights == "soft" and self.learn_keep_rate != "none":
            raise ValueError("--learn-keep-rate caps a thresholded selection; --learn-weights soft selects nothing")
        if not 0.0 <= self.learn_burn_in_weight <= 1.0:
            raise ValueError(f"--learn-burn-in-weight must lie in [0, 1], got {self.learn_burn_in_weight}")
        if not 0.0 <= self.learn_relabel_confidence < 1.0:
            raise ValueError(f"--learn-relabel-confidence must lie in (0, 1), or be 0 for no relabelling, got "
                             f"{self.learn_relabel_confidence}")
        if self.learn_relabel_in_burn_in != RELABEL_IN_BURN_IN_DEFAULT and not self.learn_relabel_confidence:
            raise ValueError("--no-learn-relabel-in-burn-in says when --learn-relabel-confidence relabels, and "
                             "--learn-relabel-confidence 0 relabels nothing; drop one of them")
        if self.learn_relabel_target != RELABEL_TARGET_DEFAULT and not self.learn_relabel_confidence:
            raise ValueError("--learn-relabel-target chooses the label of --learn-relabel-confidence, and "
                             "--learn-relabel-confidence 0 relabels nothing; drop one of them")
        if not 0.0 < self.learn_probe_fraction <= 1.0:
            raise ValueError(f"--learn-probe-fraction must lie in (0, 1], got {self.learn_probe_fraction}")
        if self.learn_trusted_batch < 0:
            raise ValueError(f"--learn-trusted-batch must be >= 0, got {self.learn_trusted_batch}")
        if self.learn_trusted_batch == 0 and self.learn_probe_labels == "verified":
            raise ValueError("--learn-probe-labels verified trains the probe in the trusted stream, and "
                             "--learn-trusted-batch 0 has none; drop one of them")
        if self.learn_trusted_batch == 0 and self.learn_trusted_loss != TRUSTED_LOSS_DEFAULT:
            raise ValueError("--learn-trusted-loss weighs the trusted batches, and --learn-trusted-batch 0 has none; "
                             "drop one of them")
        if self.learn_trusted_batch == 0 and self.learn_burn_in_weight == 0:
            raise ValueError("--learn-trusted-batch 0 with --learn-burn-in-weight 0 trains nothing before the first fit, "
                             "so the fits see an untrained student; give --learn-burn-in-weight 1 (as 2018) or trusted "
                             "batches")

    def _check_mentormix(self) -> None:
        if not self.mentormix:
            given = [flag_name(name) for name in ("mixup_alpha", "second_reweight") if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{given[0]} applies only with --mentormix (without it, it would be ignored)")
            return
        if self.mentornet == "none":
            raise ValueError("--mentormix needs a MentorNet to weight the samples, but --mentornet is none; for "
                             "plain mixup give --mentornet baseline_mentornet (every weight 1)")
        if self.mixup_alpha is not None and not self.mixup_alpha > 0:
            raise ValueError(f"--mixup-alpha must be > 0 (Beta(alpha, alpha); 0 would not mix), got {self.mixup_alpha}")
        if not student_recipe(self.studentnet).mixable:
            raise ValueError(f"--mentormix mixes the inputs, and student {self.studentnet!r} takes inputs that cannot "
                             "be mixed (its recipe says mixable=False)")
        if self.relearn_mentor != "never":
            raise ValueError("--mentormix cannot re-fit its MentorNet during training: drop --relearn-mentor")

    # ------------------------------------------------------------------------------ derived values

    @property
    def resolved_mixup_alpha(self) -> float | None:
        """MentorMix's alpha in force (None without --mentormix)."""
        if not self.mentormix:
            return None
        return DEFAULT_MIXUP_ALPHA if self.mixup_alpha is None else self.mixup_alpha

    @property
    def resolved_second_reweight(self) -> bool | None:
        """Whether MentorMix weights the mixed losses again (None without --mentormix)."""
        if not self.mentormix:
            return None
        return DEFAULT_SECOND_REWEIGHT if self.second_reweight is None else self.second_reweight

    @property
    def recipe(self) -> TrainingRecipe:
        """The student's training recipe with this run's ``--lr``, ``--lr-schedule`` and ``--weight-decay``."""
        recipe = student_recipe(self.studentnet)
        if self.lr is not None:
            recipe = replace(recipe, lr=self.lr)
        if self.lr_schedule != "auto":
            recipe = replace(recipe, lr_schedule=self.lr_schedule)
        if self.weight_decay is not None:
            recipe = replace(recipe, weight_decay=self.weight_decay)
        elif self.resolved_second_reweight:  # the official code's regulariser is 0 then (2020 spec §5 item 5)
            recipe = replace(recipe, weight_decay=0.0)
        return recipe

    @property
    def augmented(self) -> bool:
        return self.dataset in AUGMENTED_DATASETS if self.augment is None else self.augment

    @property
    def validation(self) -> str:
        """Where checkpoints are chosen: ``clean_subset``, ``noisy_holdout`` or ``none``."""
        if self.validation_fraction is None:
            if self.trains_on_clean_subset:
                return "clean_subset_part"
            return "clean_subset" if self.has_clean_subset else "noisy_holdout"
        return "noisy_holdout" if self.validation_fraction > 0 else "none"

    @property
    def holdout_fraction(self) -> float:
        """The fraction of the pool held out as a noisy validation split (0 when there is none)."""
        if self.validation != "noisy_holdout":
            return 0.0
        return DEFAULT_VALIDATION_FRACTION if self.validation_fraction is None else self.validation_fraction

    def weighter_config(self, defaults: WeighterConfig) -> WeighterConfig:
        """The weighting this run uses: the MentorNet's ``defaults`` with this run's options applied."""
        return defaults.with_overrides(self.weighter)

    # ------------------------------------------------------------------------------ conversions

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping, *, origin: str = "config") -> "StudentConfig":
        """From a plain mapping such as ``config.json``'s ``config``; unknown keys are an error."""
        values = dict(values)
        weighter = values.pop("weighter", {}) or {}
        misplaced = [key for key in values if key in WEIGHTER_OPTIONS]
        if misplaced:
            raise ValueError(f"{origin}: {misplaced[0]!r} is a weighting option: put it in the [weighter] table "
                             f"(JSON: \"weighter\": {{\"{misplaced[0]}\": ...}})")
        config = options_from_mapping(cls, values, origin=origin)
        weighter = options_from_mapping(WeighterConfig, weighter, origin=f"{origin} [weighter]")
        if origin == "config":  # built in code: the command-line names are the ones users know
            return cls(**config, weighter=weighter)
        try:
            return cls(**config, weighter=weighter)
        except ValueError as error:  # a file's options are keys, not flags: name them as the file does
            raise ValueError(f"{origin}: {as_file_keys(str(error))}") from None

    def options(self) -> dict:
        """Every option by its command-line name (weighting options flat, None where not given)."""
        flat = {f.name: getattr(self, f.name) for f in option_fields(StudentConfig)}
        flat.update({f.name: self.weighter.get(f.name) for f in option_fields(WeighterConfig)})
        return flat

    def effective(self, name: str):
        """The value in force of one of :data:`RECIPE_OPTIONS`: the option if given, else the student's own (the
        data set's, for ``augment``)."""
        if name == "augment":
            return self.augmented
        return getattr(self.recipe, name)

    def shown(self, name: str) -> str:
        """Option ``name``'s value as messages print it; a default names the value it stands for."""
        value = self.options()[name]
        if name in RECIPE_OPTIONS and value == RECIPE_OPTIONS[name]:
            shown = format_value(self.effective(name))
            if name == "weight_decay" and self.resolved_second_reweight:
                return f"MentorMix's default with second reweighting ({shown}, as in the official code)"
            return f"the {'data set' if name == 'augment' else 'student'}'s default ({shown})"
        return "its default" if value is None else format_value(value)

    def applicable_options(self) -> dict:
        """:meth:`options` without those that do not apply to this run (the ``--learn-*`` options of a run that does
        not learn its MentorNet)."""
        return {name: value for name, value in self.options().items()
                if self.learns_mentornet or not learn_only(name)}

    def with_options(self, options: Mapping) -> "StudentConfig":
        """A copy with ``options`` (command-line names, weighting options flat) applied."""
        own = {k: v for k, v in options.items() if k in OWN_OPTIONS}
        weighter = {**self.weighter, **{k: v for k, v in options.items() if k in WEIGHTER_OPTIONS}}
        unknown = set(options) - OWN_OPTIONS - WEIGHTER_OPTIONS
        if unknown:
            raise ValueError(f"unknown option {sorted(unknown)[0]!r}")
        if not has_fixed_threshold({**vars(self), **own}) and "learn_threshold_fallback" not in own:
            own["learn_threshold_fallback"] = THRESHOLD_FALLBACK_DEFAULT  # unused without a fixed threshold
        if not has_fixed_threshold({**vars(self), **own}) and "learn_threshold_prior" not in own:
            own["learn_threshold_prior"] = THRESHOLD_PRIOR_DEFAULT  # likewise
        return replace(self, **own, weighter={k: v for k, v in weighter.items() if v is not None})


OWN_OPTIONS = frozenset(f.name for f in option_fields(StudentConfig))
WEIGHTER_OPTIONS = frozenset(f.name for f in option_fields(WeighterConfig))
RESUME_SAFE = tuple(f.name for f in option_fields(StudentConfig) if f.metadata["resume_safe"])


# Options whose value is (or holds) a path: a run's config.json keeps them as typed, relative to the directory the
# run started in (its ``resolved.working_directory``).
PATH_OPTIONS = ("dataset", "data_dir", "noise_file", "clean_subset_file", "mentornet", "dump")


def _split_path(name: str, value) -> tuple[str, str, str] | None:
    """``(prefix, path, suffix)`` of option ``name``'s value (``npz:`` of a data set, ``:KEY`` of a noise file),
    or None where the value names no file (a data set or shipped MentorNet by name, none)."""
    if value is None:
        return None
    text = str(value)
    if name == "dataset":
        return ("npz:", text[4:], "") if text.startswith("npz:") else None
    if name == "noise_file":
        file, key = split_key(text)
        return "", str(file), "" if key is None else f":{key}"
    if name == "mentornet" and (text in ("none", LEARN) or ("/" not in text and not text.endswith((".pt", ".pth")))):
        return None  # a shipped MentorNet's name
    return "", text, ""


def rebase_paths(config: "StudentConfig", start: str | None, *, outputs: bool = True) -> "StudentConfig":
    """``config`` (a run's, read back) with its relative paths made to work from the current directory: each of
    :data:`PATH_OPTIONS` that names nothing from here but exists from ``start`` (the directory the run started in)
    becomes that absolute path, and with ``outputs`` (the run itself goes on: a resume) so does ``dump``, a file the
    run writes, whenever ``start`` is elsewhere; without, a new run writes its dump from here.
    Without ``start`` (a run from before it was recorded), or from ``start`` itself, ``config`` is returned."""
    if not start or not Path(start).is_dir() or Path(start).resolve() == Path.cwd().resolve():
        return config
    changes = {}
    for name in PATH_OPTIONS:
        parts = _split_path(name, getattr(config, name))
        if parts is None or Path(parts[1]).is_absolute():
            continue
        prefix, path, suffix = parts
        there = Path(start) / path
        if name == "dump" and not outputs:
            continue
        if name == "dump" or (not Path(path).exists() and there.exists()):
            changes[name] = f"{prefix}{there}{suffix}"
    return replace(config, **changes) if changes else config


def working_directory(payload: dict) -> str | None:
    """The directory a run started in (its ``config.json`` ``payload``'s ``resolved.working_directory``), which its
    config's relative paths are relative to; None for a run from before it was recorded."""
    value = (payload.get("resolved") or {}).get("working_directory")
    return value if isinstance(value, str) else None


def same_option(name: str, a, b) -> bool:
    """Whether two values of option ``name`` are the same: equal, or paths to the same file."""
    if a == b:
        return True
    if name not in PATH_OPTIONS:
        return False
    first, second = _split_path(name, a), _split_path(name, b)
    if not (first and second) or (first[0], first[2]) != (second[0], second[2]):
        return False
    return Path(first[1]).resolve() == Path(second[1]).resolve()


def as_file_keys(message: str) -> str:
    """``message`` (a check's error, worded for the command line) with each ``--option`` named as a config file's
    key: ``max_steps`` for ``--max-steps``, ``[weighter] loss_p_percentile`` for a weighting option."""
    def key(match: re.Match) -> str:
        name = match.group(1).replace("-", "_")
        if name in WEIGHTER_OPTIONS:
            return f"[weighter] {name}"
        return name if name in OWN_OPTIONS else match.group(0)
    return re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)", key, message)


def read_config_file(path: str | Path) -> StudentConfig:
    """A config from a JSON or TOML file: a run's ``config.json`` or a file written by hand (see
    :func:`read_config_file_with_pins`)."""
    return read_config_file_with_pins(path)[0]


def read_config_file_with_pins(path: str | Path) -> tuple[StudentConfig, dict]:
    """A config from a JSON or TOML file: a run's ``config.json`` or a file written by hand, and the options of
    :data:`RECIPE_OPTIONS` a run's ``config.json`` left to their defaults and its ``resolved`` pins (name: value;
    empty for a hand-written file).

    A hand-written file is a table of options named as the fields of :class:`StudentConfig` (the
    command-line names with ``_`` for ``-``), with the weighting options in a ``weighter`` table.
    Unknown keys and wrong types are errors naming the key.
    """
    path = Path(path)
    if path.suffix.lower() not in CONFIG_SUFFIXES:
        raise ValueError(f"config file {path} must end in .json or .toml")
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
        values = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"config file {path} is malformed: {str(error).splitlines()[0]}") from None
    start, pins = None, {}
    if isinstance(values, dict) and "config" in values and "format_version" in values:
        start = working_directory(values)  # a run's config.json: its relative paths are relative to where it began
        pins = recipe_pins(values)
        values = run_config_values(values, origin=str(path))
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a table of options")
    return rebase_paths(StudentConfig.from_dict(values, origin=f"config file {path}"), start, outputs=False), pins


def recipe_pins(payload: dict) -> dict:
    """The options of :data:`RECIPE_OPTIONS` that a run's ``config.json`` payload (format 2) left to their defaults,
    with the values its ``resolved`` records for them (only values the option can take)."""
    if payload.get("format_version") != 2:
        return {}
    values, resolved = payload.get("config") or {}, payload.get("resolved") or {}
    return {name: resolved[name] for name, default in RECIPE_OPTIONS.items()
            if values.get(name, default) == default and _recorded_value(name, resolved.get(name))}


def run_config_values(payload: dict, *, origin: str) -> dict:
    """The option values of a run's ``config.json`` payload, format 1 (toolkit 0.1) or 2."""
    version = payload.get("format_version")
    values = dict(payload.get("config") or {})
    if version == 1:  # 0.1 stored the resolved weighting as the options, and had no validation split
        values["weighter"] = {k: v for k, v in (values.get("weighter") or {}).items()}
        values.setdefault("validation_fraction", 0.0)
        return values
    if version != 2:
        raise ValueError(f"{origin} has run format version {version!r}; this toolkit reads versions 1 and 2")
    values.update(recipe_pins(payload))  # what it ran with: a later change of a default changes no resume
    if values.get("mentornet") != LEARN:  # --learn-* apply only to --mentornet learn: another run's are the
        return {k: v for k, v in values.items() if not learn_only(k)}  # defaults of its release
    values.setdefault("learn_relabel_confidence", 0.0)  # a learned run of a release without it relabelled nothing
    if not has_fixed_threshold(values):
        values.pop("learn_threshold_fallback", None)  # no fixed threshold: whatever its release recorded, it is unused
    else:  # a learned run of a release without the option selected nothing when no probe row reached the threshold
        values.setdefault("learn_threshold_fallback", "none")
    return values


def _recorded_value(name: str, value) -> bool:
    """Whether ``value``, from a run's ``resolved``, is a value option ``name`` of :data:`RECIPE_OPTIONS` can take."""
    if name == "augment":
        return isinstance(value, bool)
    if name == "lr_schedule":
        return value in LR_SCHEDULES and value != "auto"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value > 0 if name == "lr" else value >= 0


def describe_changes(old: StudentConfig, new: StudentConfig) -> list[tuple[str, object, object]]:
    """``(option, old value, new value)`` for every option that differs, by command-line name. An option of
    :data:`RECIPE_OPTIONS` differs only when the values in force differ: a default equals the value it stands for."""
    before, after = old.options(), new.options()
    return [(name, before[name], after[name]) for name in after
            if before[name] != after[name]
            and not (name in RECIPE_OPTIONS and old.effective(name) == new.effective(name))]


def format_value(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and (value == 0 or 1e-4 <= abs(value) < 1e6) and math.isfinite(value):
        return f"{value:g}"
    return "none" if value is None else str(value)


__all__ = ["LR_DROP_EPOCHS", "LR_SCHEDULES", "OWN_OPTIONS", "PATH_OPTIONS", "RECIPE_DEPENDS_ON", "RECIPE_OPTIONS",
           "RESUME_SAFE", "StudentConfig", "WEIGHTER_OPTIONS", "as_file_keys", "describe_changes", "format_value",
           "parse_relearn", "read_config_file", "read_config_file_with_pins", "recipe_pins", "rebase_paths",
           "run_config_values", "same_option", "working_directory"]
