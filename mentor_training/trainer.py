"""Fitting a MentorNet to a target set (spec §3, ``code/training_mentornet/train.py``).

Two named recipes:

* ``paper``: the 2018 recipe. Adam at ``0.1 * 0.9^floor(t / 1000)``, global-norm clip 5, batch 32,
  30,000 steps, the 2018 reader (sequential batches, the remainder dropped and the data reshuffled at
  the end of each pass), BCE on the logits when the targets are exactly {0, 1} and MSE on the sigmoid
  otherwise.
* ``fast`` (the default): the same objective and clip with large batches, a short cosine schedule and
  many fewer steps; ``benchmarks/mentor_fit.py`` shows it matches the paper recipe's held-out error in
  a fraction of the time.

``balance="strata"`` rebalances rare target regions: each batch draws equally from the rows whose
target is 0, 1, or strictly between. The graded part of ``mentornet_pd`` (epoch >= 90,
0 < loss_diff < 1) is about 1 % of the grid, and without rebalancing the 2018 recipe barely fits it.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F

from curricula.targets import TargetSet, TargetSplit

from .model import MentorNet, MentorNetConfig

BALANCE_CHOICES = ("none", "strata")


@dataclass(frozen=True)
class Recipe:
    """Every number of a MentorNet fit."""

    name: str
    steps: int
    batch_size: int
    learning_rate: float
    schedule: str  # "staircase": lr * decay_rate^floor(t / decay_steps); "cosine": to 0 over the run
    decay_rate: float = 0.9
    decay_steps: int = 1000
    warmup_steps: int = 0
    clip_norm: float = 5.0
    sampling: str = "sequential"  # "sequential" (the 2018 reader) or "random" (with replacement)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"recipe {self.name!r}: steps and batch size must be >= 1")
        if self.schedule not in ("staircase", "cosine"):
            raise ValueError(f"recipe {self.name!r}: unknown schedule {self.schedule!r}")
        if self.sampling not in ("sequential", "random"):
            raise ValueError(f"recipe {self.name!r}: unknown sampling {self.sampling!r}")

    def learning_rate_at(self, step: int) -> float:
        if self.schedule == "staircase":
            return self.learning_rate * self.decay_rate ** (step // self.decay_steps)
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


RECIPES = {
    "paper": Recipe(name="paper", steps=30_000, batch_size=32, learning_rate=0.1, schedule="staircase"),
    "fast": Recipe(name="fast", steps=1_500, batch_size=1024, learning_rate=0.2, schedule="cosine",
                   warmup_steps=50, sampling="random"),
}


def get_recipe(name: str, *, steps: int | None = None) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    if steps is not None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        recipe = replace(recipe, steps=steps)
    return recipe


@dataclass
class FitResult:
    model: MentorNet
    metrics: dict
    recipe: Recipe
    seconds: float


@contextlib.contextmanager
def _tiny_model_threading():
    """Tiny fits run fastest on one thread with denormals flushed (about 10x on a 2-core CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def objective_for(train: TargetSet) -> str:
    """``"bce"`` when the training targets are exactly {0, 1}, else ``"mse"`` (spec §3)."""
    return "bce" if train.is_binary else "mse"


def _loss(logits: torch.Tensor, targets: torch.Tensor, objective: str) -> torch.Tensor:
    if objective == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets)
    return torch.mean((targets - torch.sigmoid(logits)) ** 2)


class _Columns:
    """The target set as contiguous tensors, so a batch is a few index_selects."""

    def __init__(self, data: TargetSet):
        self.loss = data.features.loss.float().contiguous()
        self.loss_diff = data.features.loss_diff.float().contiguous()
        self.label = data.features.label.contiguous()
        self.epoch = data.features.epoch.clamp(max=99).contiguous()
        self.targets = data.targets.float().contiguous()

    def batch(self, index: torch.Tensor):
        return (self.loss[index], self.loss_diff[index], self.label[index], self.epoch[index]), self.targets[index]


def _sequential_batches(n: int, batch_size: int, generator: torch.Generator):
    """The 2018 reader: walk the rows in order, drop the remainder, reshuffle, start again.

    The first pass uses the given order (already shuffled by the target builder)."""
    if n < batch_size:
        raise ValueError(f"the training set has {n} rows, fewer than the batch size {batch_size}")
    order = torch.arange(n)
    while True:
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]
        order = torch.randperm(n, generator=generator)


def _random_batches(strata: list[torch.Tensor], batch_size: int, generator: torch.Generator):
    """Rows drawn with replacement; with several strata each batch takes equal shares of each."""
    shares = [batch_size // len(strata) + (i < batch_size % len(strata)) for i in range(len(strata))]
    while True:
        yield torch.cat([rows[torch.randint(len(rows), (share,), generator=generator)]
                         for rows, share in zip(strata, shares)])


def target_strata(targets: torch.Tensor) -> list[torch.Tensor]:
    """Row indices whose target is 0, 1, or strictly between; empty groups are left out."""
    groups = [targets == 0, targets == 1, (targets > 0) & (targets < 1)]
    return [torch.nonzero(g).flatten() for g in groups if bool(g.any())]


@torch.no_grad()
def evaluate(model: MentorNet, data: TargetSet, *, objective: str | None = None) -> dict:
    """Held-out metrics: the fit objective, the mean absolute error of the weight, and agreement on
    which side of 0.5 the weight falls where the target is exactly 0 or 1."""
    objective = objective or objective_for(data)
    columns = _Columns(data)
    logits = model.logits_from_tensors(columns.loss, columns.loss_diff, columns.label, columns.epoch)
    weights = torch.sigmoid(logits)
    targets = columns.targets
    hard = (targets == 0) | (targets == 1)
    graded = ~hard
    metrics = {
        "objective": objective,
        "loss": float(_loss(logits, targets, objective)),
        "mae": float((weights - targets).abs().mean()),
        "num_rows": len(targets),
    }
    if bool(hard.any()):
        metrics["binary_accuracy"] = float(((weights >= 0.5) == (targets >= 0.5))[hard].float().mean())
    if bool(graded.any()):
        metrics["graded_mae"] = float((weights - targets).abs()[graded].mean())
    return metrics


def fit_mentornet(split: TargetSplit, *, recipe: str | Recipe = "fast", balance: str = "none", seed: int = 0,
                  config: MentorNetConfig | None = None, init: MentorNet | None = None,
                  steps: int | None = None,
                  progress: Callable[[int, float], None] | None = None) -> FitResult:
    """Fit a MentorNet to ``split.train`` and report held-out metrics on ``split.test``.

    ``init`` continues from an existing MentorNet (its epoch embedding included) instead of a fresh,
    seeded one. ``progress(step, loss)`` is called after every step.
    """
    recipe = get_recipe(recipe, steps=steps) if isinstance(recipe, str) else recipe
    if balance not in BALANCE_CHOICES:
        raise ValueError(f"unknown balance {balance!r}; choose one of: {', '.join(BALANCE_CHOICES)}")
    if balance == "strata" and recipe.sampling == "sequential":
        recipe = replace(recipe, sampling="random")
    generator = torch.Generator().manual_seed(seed)
    if init is not None:
        model = MentorNet(init.config)
        model.load_state_dict(init.state_dict())
    else:
        model = MentorNet(config or MentorNetConfig())
        model.reset_parameters(generator)
    model.requires_grad_(True).train()
    objective = objective_for(split.train)
    columns = _Columns(split.train)
    if recipe.sampling == "sequential":
        batches = _sequential_batches(len(split.train), recipe.batch_size, generator)
    else:
        strata = target_strata(columns.targets) if balance == "strata" else [torch.arange(len(split.train))]
        batches = _random_batches(strata, recipe.batch_size, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.learning_rate, foreach=True)
    parameters = list(model.parameters())
    start = time.perf_counter()
    with _tiny_model_threading():
        for step in range(recipe.steps):
            for group in optimizer.param_groups:
                group["lr"] = recipe.learning_rate_at(step)
            inputs, targets = columns.batch(next(batches))
            loss = _loss(model.logits_from_tensors(*inputs), targets, objective)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, recipe.clip_norm, foreach=True)
            optimizer.step()
            if progress is not None:
                progress(step + 1, float(loss.detach()))
        seconds = time.perf_counter() - start
        model.requires_grad_(False).eval()
        metrics = {"test": evaluate(model, split.test, objective=objective),
                   "train": evaluate(model, split.train, objective=objective)}
    metrics.update({"recipe": asdict(recipe), "balance": balance, "seed": seed,
                    "fit_seconds": round(seconds, 3)})
    return FitResult(model=model, metrics=metrics, recipe=recipe, seconds=seconds)
