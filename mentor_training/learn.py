"""``learn-curriculum`` as an API: plan (every input checked, targets built), then fit and save."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

from curricula import check_curriculum, get_curriculum, parse_params
from curricula.features import WeighterConfig, feature_spec
from curricula.targets import (DATA_DRIVEN_WEIGHTER, DEFAULT_TRAIN_FRACTION, TargetSplit, curriculum_targets,
                               data_driven_targets, read_dump)

from curricula.files import check_output_path
from curricula.options import check_seed

from .checkpoint import build_checkpoint, save_checkpoint
from .fidelity import fidelity
from .trainer import BALANCE_CHOICES, Recipe, fit_mentornet, get_recipe

CHECKPOINT_SUFFIX = ".pt"
# Split 80/20, a dump of 20 samples fits on 16 and measures on 4; fewer leave a held-out error of a row or two.
MIN_DUMP_ROWS = 20


@dataclass(frozen=True)
class LearningPlan:
    out: str
    split: TargetSplit
    recipe: Recipe
    balance: str
    seed: int
    force: bool
    curriculum: object | None  # the curriculum, or None for a data-driven fit
    student_defaults: WeighterConfig
    feature_spec: dict


def plan_learning(*, out, curriculum: str | None = None, params: Iterable[str] | dict = (), dump=None,
                  percentile: float = 0.9, recipe: str = "fast", balance: str = "none",
                  steps: int | None = None, learning_rate: float | None = None, sample_size: int = 100_000,
                  seed: int = 0, force: bool = False) -> LearningPlan:
    """Check every input and build the target set, so a bad value never costs a fit or leaves a file.

    The options of ``cli.py learn-curriculum``, by their Python names: exactly one of ``curriculum`` (a
    registered name; ``params`` its parameters, as ``["gamma=3"]`` or ``{"gamma": 3}``) and ``dump`` (a
    data-driven dump file, spec §3; ``percentile`` the fraction of its losses that defines loss_diff), then the
    fit's ``recipe``, ``balance``, ``steps``, ``learning_rate``, ``sample_size`` and ``seed``. ``out`` must end
    in .pt and obeys ``force``; a dump needs at least :data:`MIN_DUMP_ROWS` distinct samples. Every bad value
    raises ``ValueError`` (``FileExistsError`` for an existing ``out`` without ``force``)."""
    if (curriculum is None) == (dump is None):
        raise ValueError("give exactly one of curriculum or dump")
    if Path(out).suffix.lower() != CHECKPOINT_SUFFIX:
        raise ValueError(f"--out {out} must end in {CHECKPOINT_SUFFIX} (a MentorNet checkpoint)")
    check_output_path(out, force=force)
    fit_recipe = get_recipe(recipe, steps=steps)
    if learning_rate is not None:
        if not 0 < float(learning_rate) < math.inf:
            raise ValueError(f"--learning-rate must be a finite number > 0, got {learning_rate}")
        fit_recipe = replace(fit_recipe, learning_rate=float(learning_rate))
    check_seed(seed)
    if balance not in BALANCE_CHOICES:
        raise ValueError(f"unknown balance {balance!r}; choose one of: {', '.join(BALANCE_CHOICES)}")
    if curriculum is not None:
        if isinstance(params, dict):  # values as Python objects; a string is read as on the command line
            kwargs = {key: value for key, value in params.items() if not isinstance(value, str)}
            kwargs.update(parse_params(curriculum, [f"{key}={value}" for key, value in params.items()
                                                    if isinstance(value, str)]))
        else:
            kwargs = parse_params(curriculum, params)
        target_curriculum = get_curriculum(curriculum, **kwargs)
        check_curriculum(target_curriculum)
        split = curriculum_targets(target_curriculum, sample_size=sample_size, seed=seed)
        defaults = type(target_curriculum).student_defaults
        spec = feature_spec(loss_p_percentile=defaults.loss_p_percentile,
                            loss_moving_average_decay=defaults.loss_moving_average_decay)
    else:
        target_curriculum = None
        split = data_driven_targets(read_dump(dump), percentile, seed=seed)
        rows = split.source["num_rows"]
        if rows < MIN_DUMP_ROWS:
            raise ValueError(f"dump {dump} holds {rows} distinct samples; a data-driven MentorNet needs at least "
                             f"{MIN_DUMP_ROWS} (it fits on {DEFAULT_TRAIN_FRACTION:.0%} and measures on the rest)")
        defaults = DATA_DRIVEN_WEIGHTER
        spec = feature_spec(loss_p_percentile=float(percentile), loss_moving_average_decay=None,
                            loss_diff_reference="percentile_of_dump")
    return LearningPlan(out=str(out), split=split, recipe=fit_recipe, balance=balance, seed=seed, force=force,
                        curriculum=target_curriculum, student_defaults=defaults, feature_spec=spec)


def run_learning(plan: LearningPlan, *, command: str | None = None,
                 progress: Callable[[int, float], None] | None = None) -> dict:
    """Fit the MentorNet of ``plan`` (:func:`plan_learning`), measure it on the held-out rows (and, for a curriculum,
    on fresh points: ``metrics["fidelity"]``) and write the checkpoint to ``plan.out`` in one rename; returns the
    checkpoint dict (format: ``shared/design.md``). ``command`` is recorded in its provenance; ``progress(step,
    loss)`` is called as the fit goes.

    Raises ``ValueError`` if the curriculum's ``weight()`` fails on the fidelity points, ``FileExistsError`` if
    ``plan.out`` appeared meanwhile (without ``force``), ``OSError`` if it cannot be written."""
    result = fit_mentornet(plan.split, recipe=plan.recipe, balance=plan.balance, seed=plan.seed,
                           progress=progress)
    metrics = dict(result.metrics)
    if plan.curriculum is not None:
        metrics["fidelity"] = fidelity(result.model, plan.curriculum)
    checkpoint = build_checkpoint(result.model, source=plan.split.source, feature_spec=plan.feature_spec,
                                  student_defaults=plan.student_defaults, metrics=metrics, command=command)
    save_checkpoint(checkpoint, plan.out, force=plan.force)
    return checkpoint


def learn_curriculum(*, command: str | None = None, progress=None, **options) -> dict:
    """Fit a MentorNet to a curriculum or a data-driven dump and write it (paper §3; spec §3): the Python form of
    ``cli.py learn-curriculum``. ``options`` are :func:`plan_learning`'s (``curriculum`` or ``dump``, ``out``,
    ``params``, ``recipe``, ``steps``, ``learning_rate``, ``seed``, ``force``, ...), checked before the fit;
    returns the checkpoint dict, as :func:`run_learning`. Raises what those two raise: ``ValueError`` for bad
    input (an unknown curriculum or parameter, a dump too small, ...), ``FileExistsError`` for an existing
    ``out`` without ``force=True``."""
    return run_learning(plan_learning(**options), command=command, progress=progress)
