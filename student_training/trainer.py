"""StudentNet training with a frozen MentorNet (spec §4: ``code/cifar_train_mentornet.py``).

One loop for every student: :func:`train_one_epoch`, :func:`evaluate`, and :func:`train_student`,
which prepares a run folder, trains, logs one row per epoch to ``metrics.csv`` and checkpoints
``last.pt`` (every epoch, atomically) and ``best.pt``. ``mentornet="none"`` runs the plain
cross-entropy baseline through the same loop.

The loss is the 2018 one (spec §4.1 step 12): the mean over the batch of ``v_i · loss_i``. For
``resnet101`` the weight decay ``wd · Σ‖W‖² / 2`` over conv and FC weights is scaled by the mean
weight, as in 2018; ``inception`` has none (its regulariser was never added); the other students use
plain SGD weight decay.

Under ``torchrun`` the same loop runs data-parallel (see :mod:`student_training.distributed`): each rank
trains on its slice of every global batch, the weighting sees the whole batch, and only rank 0 writes
files. AMP (bf16 where the GPU has it), ``channels_last`` and an optional ``torch.compile`` make it fast
on a GPU; the inner loop never waits for the host (the epoch's sums stay on the device).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F

from mentor_training.checkpoint import atomic_write
from mentor_training.pretrained import load_mentornet

from .data import ImageDataset, load_dataset
from . import distributed
from .epoch_stats import EpochStats
from .data_driven import check_dump_epoch, parse_relearn, run_due_events
from .evaluation import accuracy, detector_auc
from .loader import DeviceLoader
from .models import create_student
from .noise import NoiseResult, load_noise_file, load_noisy_labels, make_noisy_labels, save_noisy_labels
from .weighting import MentorWeighter, WeighterConfig

RUN_FORMAT_VERSION = 1
RUN_FILES = ("config.json", "noisy_labels.npz", "metrics.csv", "last.pt", "best.pt", "relearn.csv")
LR_SCHEDULES = ("auto", "piecewise_2018", "exponential_2018", "baseline_2018", "cosine", "constant")
METRIC_COLUMNS = ("epoch", "step", "lr", "loss", "weighted_loss", "mean_weight", "data_utilization",
                  "train_accuracy", "fit_noisy", "test_accuracy", "weight_clean", "weight_noisy",
                  "detector_auc", "seconds")

# Per-student training defaults (spec §4.4-4.6 for the 2018 students). "scaled" is the 2018 ResNet's
# weight decay times the mean sample weight; "sgd" is ordinary decoupled-from-v SGD weight decay.
STUDENT_RECIPES = {
    "resnet101": {"lr_schedule": "piecewise_2018", "weight_decay": 2e-4, "decay_mode": "scaled", "pad": 2},
    "inception": {"lr_schedule": "exponential_2018", "weight_decay": 0.0, "decay_mode": "none", "pad": 8},
    "mlp": {"lr_schedule": "cosine", "weight_decay": 0.0, "decay_mode": "sgd", "pad": 4},
}
DEFAULT_RECIPE = {"lr_schedule": "cosine", "weight_decay": 5e-4, "decay_mode": "sgd", "pad": 4}
AUGMENTED_DATASETS = ("cifar10", "cifar100")


@dataclass(frozen=True)
class StudentConfig:
    """Everything a run needs; written to ``config.json`` and into every checkpoint."""

    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    subset: int | None = None
    clean_subset_fraction: float = 0.0
    noise: float = 0.0
    noise_type: str = "symmetric"
    noise_file: str | None = None
    studentnet: str = "small_cnn"
    mentornet: str = "none"
    weighter: dict = field(default_factory=dict)  # WeighterConfig fields, resolved
    epochs: int = 100
    max_steps: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    lr_schedule: str = "auto"
    momentum: float = 0.9
    weight_decay: float | None = None
    augment: bool | None = None
    seed: int = 0
    device: str = "auto"
    dump: str | None = None  # write a dump of the clean subset here ...
    dump_at_epoch: int | None = None  # ... when training progress reaches this epoch
    relearn_mentor: str = "never"  # never, lr-drops, or progress epochs "E1,E2"
    relearn_percentile: float | None = None  # default: the MentorNet's own, else 90
    compile: bool = False  # torch.compile the student for training (checkpoints hold the plain module)
    sync_bn: bool = False  # SyncBatchNorm across ranks under torchrun (CUDA only)

    def __post_init__(self):
        if not 0.0 <= float(self.noise) <= 1.0:
            raise ValueError(f"noise rate must lie in [0, 1], got {self.noise}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max steps must be >= 1, got {self.max_steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {self.lr_schedule!r}; choose one of: "
                             f"{', '.join(LR_SCHEDULES)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if (self.dump is None) != (self.dump_at_epoch is None):
            raise ValueError("give --dump FILE and --dump-at-epoch E together")
        check_dump_epoch(self.dump_at_epoch)
        parse_relearn(self.relearn_mentor, self.recipe["lr_schedule"])
        needs_clean = "--dump" if self.dump else "--relearn-mentor" if self.relearn_mentor != "never" else None
        if needs_clean and not 0.0 < self.clean_subset_fraction < 1.0:
            raise ValueError(f"{needs_clean} needs a clean subset: pass --clean-subset-fraction in (0, 1)")
        if self.relearn_mentor != "never" and self.mentornet == "none":
            raise ValueError("--relearn-mentor needs a MentorNet to re-fit; --mentornet is none")

    @property
    def recipe(self) -> dict:
        recipe = dict(STUDENT_RECIPES.get(self.studentnet, DEFAULT_RECIPE))
        if self.lr_schedule != "auto":
            recipe["lr_schedule"] = self.lr_schedule
        if self.weight_decay is not None:
            recipe["weight_decay"] = self.weight_decay
        recipe["augment"] = self.dataset in AUGMENTED_DATASETS if self.augment is None else self.augment
        return recipe


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
    return base


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``cuda`` is ``cuda:LOCAL_RANK`` under torchrun, so each rank drives its own GPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA GPU is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} are visible")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


@dataclass
class Run:
    """A prepared run: data on the device, labels, student, optimiser, weighter and bookkeeping."""

    config: StudentConfig
    out: Path
    device: torch.device
    data: ImageDataset
    noise: NoiseResult
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    weighter: MentorWeighter | None
    train_loader: DeviceLoader
    test_loader: DeviceLoader
    total_steps: int
    autocast_dtype: torch.dtype | None
    rows: list = field(default_factory=list)
    start_epoch: int = 0
    best_accuracy: float = -1.0
    dump_done: bool = False
    relearn_rows: list = field(default_factory=list)
    world: distributed.World = field(default_factory=distributed.World)
    train_model: torch.nn.Module | None = None  # the DDP- and/or compile-wrapped student; None: ``model``

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files."""
        return self.world.is_main

    @property
    def forward_model(self) -> torch.nn.Module:
        return self.model if self.train_model is None else self.train_model

    @property
    def relearn_points(self) -> tuple[int, ...]:
        return parse_relearn(self.config.relearn_mentor, self.config.recipe["lr_schedule"])

    def relearn_pending(self) -> list[int]:
        done = {row["progress_epoch"] for row in self.relearn_rows}
        return [point for point in self.relearn_points if point not in done]

    @property
    def has_events(self) -> bool:
        return bool(self.config.dump) or bool(self.relearn_points)


def _load_mentor(config: StudentConfig, device: torch.device):
    if config.mentornet == "none":
        return None, {}
    mentor = load_mentornet(config.mentornet, device=device)
    return mentor, mentor.student_defaults


def _noisy_labels(config: StudentConfig, data: ImageDataset) -> NoiseResult:
    if config.noise_file:
        return load_noise_file(config.noise_file, data.train_labels, data.num_classes,
                               indices=data.source_indices)
    return make_noisy_labels(data.train_labels, noise_type=config.noise_type, rate=config.noise,
                             num_classes=data.num_classes, seed=config.seed, dataset=config.dataset)


def _optimizer(model: torch.nn.Module, config: StudentConfig) -> torch.optim.Optimizer:
    recipe = config.recipe
    weights = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim <= 1]
    decay = recipe["weight_decay"] if recipe["decay_mode"] == "sgd" else 0.0
    groups = [{"params": weights, "weight_decay": decay}, {"params": others, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


def prepare_run(config: StudentConfig, out: str | os.PathLike, *, weighter_overrides: dict | None = None,
                resume: bool = False, force: bool = False) -> Run:
    """Check the folder, load data and labels, build the student; restore ``last.pt`` with ``resume``.

    The weighter settings come from ``weighter_overrides`` where given (None means not given), then
    from the MentorNet's ``student_defaults``. With ``resume`` the run's own ``config.json`` is used.
    Under torchrun this joins the process group; every rank checks its input before any rank writes.
    """
    out = Path(out)
    world = distributed.world_from_env()
    if resume:
        config = _resume_config(out, world)
    else:
        _check_run_folder(out, force=force, delete=False)
    distributed.check_batch_size(config.batch_size, world)
    device = resolve_device(config.device, world.local_rank)
    if config.sync_bn and (device.type != "cuda"):
        raise ValueError(f"--sync-bn needs CUDA GPUs (SyncBatchNorm has no CPU kernel), this run is on {device}")
    mentor, defaults = _load_mentor(config, device)
    if config.relearn_mentor != "never" and not hasattr(mentor, "state_dict"):
        raise ValueError("--relearn-mentor needs a learned MentorNet, not a curriculum")
    if not resume:
        config = replace(config, weighter=asdict(WeighterConfig.from_defaults(defaults, **(weighter_overrides or {}))))
    data = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download, subset=config.subset,
                        clean_subset_fraction=config.clean_subset_fraction, seed=config.seed)
    noise = load_noisy_labels(out / "noisy_labels.npz") if resume else _noisy_labels(config, data)
    model = create_student(config.studentnet, num_classes=data.num_classes, in_channels=data.in_channels,
                           image_size=data.image_size, seed=config.seed).to(device)
    channels_last = config.studentnet != "mlp"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, test_loader = _loaders(config, data, noise, device, channels_last, world)
    total_steps = config.max_steps or config.epochs * len(train_loader)
    if config.max_steps:
        config = replace(config, epochs=math.ceil(config.max_steps / len(train_loader)))
    weighter = None
    if mentor is not None:
        weighter = MentorWeighter(mentor, WeighterConfig(**config.weighter), total_steps=total_steps,
                                  seed=config.seed)
    distributed.init_process_group(world, device)  # after every rank's input checks, before any write
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()  # fp16 would need a GradScaler: fp32 instead
    run = Run(config=config, out=out, device=device, data=data, noise=noise, model=model,
              optimizer=_optimizer(model, config), weighter=weighter, train_loader=train_loader,
              test_loader=test_loader, total_steps=total_steps, autocast_dtype=torch.bfloat16 if bf16 else None,
              world=world)
    if resume:
        _restore(run)
    elif run.is_main:
        _check_run_folder(out, force=force, delete=True)
        out.mkdir(parents=True, exist_ok=True)
        save_noisy_labels(out / "noisy_labels.npz", noise)
        _write_json(out / "config.json", {"format_version": RUN_FORMAT_VERSION, "config": asdict(config),
                                          "world_size": world.size})
    distributed.barrier(world)
    run.train_model = _training_module(run)
    return run


def _resume_config(out: Path, world: distributed.World) -> StudentConfig:
    if not (out / "last.pt").is_file():
        raise ValueError(f"cannot resume: {out / 'last.pt'} does not exist")
    saved = json.loads((out / "config.json").read_text())
    _check_world_size(saved.get("world_size", 1), world, out)
    return StudentConfig(**saved["config"])


def _check_world_size(saved: int, world: distributed.World, out: Path) -> None:
    if saved != world.size:
        raise ValueError(f"mismatched resume across world sizes: {out} was trained by {saved} process(es), this "
                         f"launch has {world.size}; resume it with torchrun --nproc_per_node {saved}"
                         if saved > 1 else f"mismatched resume across world sizes: {out} was trained by 1 "
                         f"process, this launch has {world.size}; resume it without torchrun")


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


def _loaders(config: StudentConfig, data: ImageDataset, noise: NoiseResult, device: torch.device,
             channels_last: bool, world: distributed.World | None = None) -> tuple[DeviceLoader, DeviceLoader]:
    """The global-batch training loader, and the test loader over this rank's contiguous part of the test set."""
    recipe = config.recipe
    world = world or distributed.World()
    train_loader = DeviceLoader(data.train_images, noise.noisy_labels, data.train_indices,
                                batch_size=config.batch_size, augment=recipe["augment"], pad=recipe["pad"],
                                seed=config.seed, device=device, channels_last=channels_last)
    test_indices = torch.arange(len(data.test_labels)).tensor_split(world.size)[world.rank]
    test_loader = DeviceLoader(data.test_images, data.test_labels, test_indices if world.enabled else None,
                               batch_size=1000, augment=False, shuffle=False, drop_last=False, device=device,
                               channels_last=channels_last)
    return train_loader, test_loader


def _check_run_folder(out: Path, *, force: bool, delete: bool = True) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, expected a folder")
    if not out.parent.is_dir():
        raise ValueError(f"the folder above --out, {out.parent}, does not exist")
    present = [name for name in RUN_FILES if (out / name).exists()]
    if present and not force:
        raise FileExistsError(f"{out} already holds a run ({', '.join(present)}); pass --resume to continue it "
                              "or --force to start over")
    for name in present if delete else ():
        (out / name).unlink(missing_ok=True)


def _write_json(path: Path, payload: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n"),
                 force=True)


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


def train_one_epoch(run: Run, epoch: int, *, on_step: Callable[[int], None] | None = None) -> EpochStats:
    """One pass; under DDP this rank trains on its shard, and the stats cover the whole global batch."""
    model, config, world = run.forward_model, run.config, run.world
    model.train()
    stats = EpochStats(run.data.num_train, run.device)
    decay = run.config.recipe["weight_decay"] if run.config.recipe["decay_mode"] == "scaled" else 0.0
    decayed = [p for p in run.model.parameters() if p.ndim > 1] if decay else []
    step = epoch * len(run.train_loader)
    kill_at = _fault_injection_step()
    for images, labels, indices in distributed.shard_batches(run.train_loader, epoch, world):
        if step >= run.total_steps:
            break
        if step == kill_at:
            os._exit(137)
        if run.has_events:
            _run_events(run, step)
        lr = learning_rate(step, run.total_steps, config.lr, config.recipe["lr_schedule"])
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(run.device.type, dtype=run.autocast_dtype or torch.bfloat16,
                            enabled=run.autocast_dtype is not None):
            logits = model(images)
        losses = F.cross_entropy(logits.float(), labels, reduction="none")
        all_losses, predictions = distributed.gather_batch(losses, logits.detach().argmax(dim=1), world)
        if run.weighter is None:
            mentor_weights = all_weights = torch.ones_like(all_losses)
        else:
            mentor_weights = run.weighter.mentor_weights(all_losses, step)
            all_weights = run.weighter.example_dropout(mentor_weights, run.weighter.last["epoch"])
        weights = all_weights[world.shard(len(all_weights))]
        loss = student_loss(losses, weights, decayed, decay, mean_weight=all_weights.mean())
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        stats.add(all_losses, all_weights, mentor_weights, predictions, indices)
        step += 1
        if on_step is not None:
            on_step(step)
    return stats


def _run_events(run: Run, step: int) -> None:
    """Dumps and MentorNet re-fits (rank 0 writes; every rank then uses rank 0's re-fitted MentorNet)."""
    refits = len(run.relearn_rows)
    run_due_events(run, step)
    if len(run.relearn_rows) != refits:
        distributed.broadcast_module(run.weighter.mentor, run.world)


def _fault_injection_step() -> int | None:
    """Tests kill a run part-way with MENTORNET_KILL_AT_STEP: at that step the process dies as if SIGKILLed."""
    kill_at = os.environ.get("MENTORNET_KILL_AT_STEP")
    return int(kill_at) if kill_at is not None else None


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


def epoch_row(run: Run, epoch: int, stats: EpochStats, test_accuracy: float, seconds: float) -> dict:
    """One ``metrics.csv`` row, including how well the MentorNet weights separate clean from noisy."""
    seen = ~torch.isnan(stats.sample_weight)
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
        "lr": learning_rate(step - 1, run.total_steps, run.config.lr, run.config.recipe["lr_schedule"]),
        "loss": float(stats.loss) / count,
        "weighted_loss": float(stats.weighted_loss) / count,
        "mean_weight": float(stats.weight) / count,
        "data_utilization": float(stats.utilized) / count,
        "train_accuracy": float((predictions == noisy_labels).float().mean()),
        "fit_noisy": _mean((predictions == noisy_labels)[flipped]),
        "test_accuracy": test_accuracy,
        "weight_clean": float(weights[clean].mean()) if clean.any() else float("nan"),
        "weight_noisy": float(weights[~clean].mean()) if (~clean).any() else float("nan"),
        "detector_auc": detector_auc(weights, clean),
        "seconds": round(seconds, 3),
    }


def _mean(values: torch.Tensor) -> float:
    return float(values.float().mean()) if values.numel() else float("nan")


def _save_epoch(run: Run, epoch: int) -> None:
    """metrics.csv, then best.pt if improved, then last.pt: a run killed in between resumes correctly."""
    frame = pd.DataFrame(run.rows, columns=list(METRIC_COLUMNS))
    atomic_write(run.out / "metrics.csv", lambda tmp: frame.to_csv(tmp, index=False), force=True)
    accuracy_now = run.rows[-1]["test_accuracy"]
    model_state = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
    if accuracy_now > run.best_accuracy:
        run.best_accuracy = accuracy_now
        best = {"kind": "student", "format_version": RUN_FORMAT_VERSION, "config": asdict(run.config),
                "epoch": epoch + 1, "test_accuracy": accuracy_now, "model": model_state}
        atomic_write(run.out / "best.pt", lambda tmp: torch.save(best, tmp), force=True)
    last = {"kind": "student_run", "format_version": RUN_FORMAT_VERSION, "config": asdict(run.config),
            "epoch": epoch + 1, "model": model_state, "optimizer": run.optimizer.state_dict(),
            "weighter": run.weighter.state_dict() if run.weighter is not None else None,
            "best_accuracy": run.best_accuracy, "torch_rng": torch.get_rng_state(), "world_size": run.world.size,
            "dump_done": run.dump_done, "relearn_rows": run.relearn_rows,
            "mentornet": _mentor_state(run) if run.relearn_points else None,
            "cuda_rng": torch.cuda.get_rng_state() if run.device.type == "cuda" else None}
    atomic_write(run.out / "last.pt", lambda tmp: torch.save(last, tmp), force=True)


def _mentor_state(run: Run) -> dict:
    mentor = run.weighter.mentor
    return {"state_dict": {k: v.detach().cpu() for k, v in mentor.state_dict().items()},
            "source": mentor.source}


def _restore(run: Run) -> None:
    state = torch.load(run.out / "last.pt", map_location="cpu", weights_only=True)
    if state.get("kind") != "student_run" or state.get("format_version") != RUN_FORMAT_VERSION:
        raise ValueError(f"{run.out / 'last.pt'} is not a student run checkpoint of this toolkit")
    _check_world_size(state.get("world_size", 1), run.world, run.out)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.weighter is not None:
        run.weighter.load_state_dict(state["weighter"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"])
    run.start_epoch, run.best_accuracy = state["epoch"], state["best_accuracy"]
    run.dump_done, run.relearn_rows = state["dump_done"], list(state["relearn_rows"])
    if state["mentornet"] is not None:  # the MentorNet as re-fitted so far
        run.weighter.mentor.load_state_dict(state["mentornet"]["state_dict"])
        run.weighter.mentor.source = state["mentornet"]["source"]
    rows = pd.read_csv(run.out / "metrics.csv").to_dict("records")
    run.rows = [row for row in rows if row["epoch"] <= run.start_epoch]


def train(run: Run, *, on_epoch: Callable[[dict], None] | None = None,
          on_step: Callable[[int], None] | None = None) -> list[dict]:
    """Train from ``run.start_epoch`` to the end; returns every metrics row."""
    for epoch in range(run.start_epoch, run.config.epochs):
        start = time.perf_counter()
        stats = train_one_epoch(run, epoch, on_step=on_step)
        row = epoch_row(run, epoch, stats, evaluate(run), time.perf_counter() - start)
        run.rows.append(row)
        if run.is_main:
            _save_epoch(run, epoch)
        if on_epoch is not None:
            on_epoch(row)
    return run.rows


def summarize(rows: list[dict]) -> dict:
    final = rows[-1]
    return {"final_test_accuracy": final["test_accuracy"],
            "best_test_accuracy": max(r["test_accuracy"] for r in rows),
            "final_fit_noisy": final["fit_noisy"], "final_detector_auc": final["detector_auc"],
            "epochs": final["epoch"], "steps": final["step"]}


__all__ = ["StudentConfig", "Run", "prepare_run", "train", "student_loss", "train_one_epoch", "evaluate",
           "learning_rate", "summarize", "STUDENT_RECIPES", "METRIC_COLUMNS"]
