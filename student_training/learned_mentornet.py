"""``--mentornet learn``: the run learns its own MentorNet from its own clean subset (paper Algorithm 1 in one
command; Jiang et al., ICML 2018, §3 and Algorithm 1).

The clean subset S (``--clean-subset-fraction`` of the pool, or the user's ``--clean-subset-file``) is split,
class-balanced and seeded by its verified labels, into

* **V**, a fifth of S: the validation split that chooses ``best.pt`` (never trained on);
* **P**, the probe (``--learn-probe-fraction`` of the rest): trained exactly like the noisy training set, with
  its noisy labels and the MentorNet's weights, so its losses are distributed like theirs; since its verified
  labels are known, each probe loss is a labelled example of "clean" or "corrupted";
* **T**, trusted: the rest, trained with its verified labels at weight 1, ``--learn-trusted-batch`` samples a step.

Every step records, on the device, each probe sample's loss (and ``loss_diff``) at the current progress epoch.
At each progress epoch of ``--learn-epochs`` a **fresh** MentorNet is fitted (binary cross-entropy, target 1
where the noisy label is the verified one) to the probe's rows of the last ``--learn-window`` progress epochs,
saved as a MentorNet checkpoint in ``mentornets/`` and logged in ``relearn.csv``; from then on it weights the
batches: ``1[v >= τ and loss <= λ]`` (``--learn-weights threshold``, τ = ``--learn-threshold``, λ the largest
probe loss the fit selected: beyond the losses it was fitted on a MentorNet's output is an extrapolation) or
``v`` itself (``soft``, as 2018). ``--learn-precision P`` sets τ per fit instead, to the lowest output at which
a share P of the window's probe rows it selects are clean; with a fixed τ, a fit none of whose outputs reaches
τ sets its threshold that way at P = τ (``--learn-threshold-fallback precision``; see :func:`fit_threshold`).
``--learn-keep-rate probe`` also caps each batch's
selection at the share s of the probe's last-epoch rows the fit selected: only the batch's ⌈s·B⌉ lowest losses
can be selected (a rank, which holds while all losses fall between fits; co-teaching's keep rate R(T), Han et
al., NeurIPS 2018, here measured on the probe instead of given). Selections are asked at the epoch input the
weighting uses until the next fit (the window's last epoch). Its epoch input
is clamped to the fit's window (the saved checkpoint copies the window's first and last epoch-embedding rows
outward, so it answers the same in any loop). Before the
first fit every noisy sample has weight ``--learn-burn-in-weight``. After the last fit the probe is released:
it gets weight 0 in the noisy stream and joins the trusted stream with its verified labels (with
``--learn-trusted-batch 0`` there is no trusted stream, and it leaves training). ``--learn-probe-labels
verified`` releases it at the start instead: it trains with its verified labels throughout, and the fits see
its losses under the noisy labels of a probe that was never trained on them. A noisy-stream sample of weight 0
(every one in the burn-in, then those the MentorNet rejects; never a released probe sample) trains on a
refurbished label when its posterior given the noisy label, with the probe's counted noise transition, is
>= ``--learn-relabel-confidence`` (:class:`Refurbishment`).

Why these choices (measured in the README's mlp regime; the 2018 values are reachable): fits from rows
recorded while training define ``loss_diff`` exactly as the weighting uses it (a dump's percentile does
not); fits every 5 progress epochs keep each fit close to the losses it is used on (a fit at 30 describes
losses before its own weights shift them), and fits to the end follow the losses as the learning rate decays;
a threshold is a decision, where a calibrated probability of about 0.27 on corrupted samples was enough
for them to be memorised; the fallback, 32 trusted samples a step (64 before) and the refurbished labels were chosen on
the validation split (docs/learned_choice.md); the 2018 path (``--dump`` then ``learn-curriculum --dump``, or
``--relearn-mentor``) is unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from curricula.features import NUM_EPOCHS, LossMovingAverage, MentorFeatures, WeighterConfig, feature_spec, \
    progress_percent
from curricula.targets import TargetSet, TargetSplit
from mentor_training.checkpoint import build_checkpoint, save_checkpoint
from mentor_training.model import MentorNetConfig, MentorNetStep
from mentor_training.trainer import fit_mentornet

from .config import CLEAN_VALIDATION_SHARE, StudentConfig, parse_learn_epochs
from .data import balanced_subset, clean_subset_at
from .data_driven import ScheduledFits
from .evaluation import detector_auc

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Run

FIT_STEPS = 500  # Adam steps of each fit (the "fast" recipe); a few thousand rows need no more
MIN_PROBE_EXAMPLES = 10  # clean and corrupted probe samples each, at least, for a fit to learn anything
LEARN_COLUMNS = ("progress_epoch", "step", "rows", "noisy_fraction", "threshold", "selected", "precision",
                 "fit_auc", "loss_auc", "fit_seconds", "checkpoint", "status", "keep_share", "threshold_rule")


@dataclass(frozen=True)
class CleanSubsetParts:
    """Pool indices of the clean subset's parts: validation V, probe P, trusted T (see the module docstring)."""

    validation: torch.Tensor
    probe: torch.Tensor
    trusted: torch.Tensor


def split_clean_subset(indices: torch.Tensor, verified: torch.Tensor, *, probe_fraction: float | None,
                       validation: bool, seed: int) -> CleanSubsetParts:
    """Split the clean subset ``indices`` (pool indices; ``verified`` their labels) class-balanced and seeded.

    ``validation``: hold out a fifth as V. ``probe_fraction``: the share of the rest that is the probe P
    (None: no probe, everything left is trusted)."""
    indices = torch.as_tensor(indices, dtype=torch.long)
    labels = torch.as_tensor(verified).numpy()
    rng_seed = 7919 + seed
    held = balanced_subset(labels, int(round(CLEAN_VALIDATION_SHARE * len(labels))), seed=rng_seed) \
        if validation else np.zeros(0, dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(labels)), held)
    probe = rest[balanced_subset(labels[rest], int(round(probe_fraction * len(rest))), seed=rng_seed + 1)] \
        if probe_fraction else np.zeros(0, dtype=np.int64)
    trusted = np.setdiff1d(rest, probe)
    pick = lambda part: indices[torch.from_numpy(np.sort(part).astype(np.int64))]  # noqa: E731
    return CleanSubsetParts(pick(held), pick(probe), pick(trusted))


def probe_counts(config: StudentConfig, parts: CleanSubsetParts, is_clean: torch.Tensor) -> tuple[int, int]:
    clean = int(is_clean[parts.probe].sum())
    return clean, len(parts.probe) - clean


def smallest_fraction(config: StudentConfig, labels: torch.Tensor, is_clean: torch.Tensor) -> float | None:
    """The smallest ``--clean-subset-fraction`` (in steps of 0.005) whose probe, split as this run would split
    it, holds :data:`MIN_PROBE_EXAMPLES` clean and corrupted samples each; None if no fraction below 0.9 does."""
    for fraction in np.arange(0.005, 0.9, 0.005):
        subset = torch.from_numpy(clean_subset_at(labels.numpy(), float(fraction), seed=config.seed).astype(np.int64))
        if _probe_is_enough(config, subset, labels, is_clean, config.learn_probe_fraction):
            return round(float(fraction), 3)
    return None


def _probe_is_enough(config: StudentConfig, subset: torch.Tensor, labels: torch.Tensor, is_clean: torch.Tensor,
                     probe_fraction: float) -> bool:
    """Whether the probe of clean subset ``subset`` (pool indices; ``labels``: the pool's verified labels), split at
    ``probe_fraction`` as this run would split it, holds :data:`MIN_PROBE_EXAMPLES` clean and corrupted samples."""
    parts = split_clean_subset(subset, labels[subset], probe_fraction=probe_fraction,
                               validation=config.validation == "clean_subset_part", seed=config.seed)
    return min(probe_counts(config, parts, is_clean)) >= MIN_PROBE_EXAMPLES


def smallest_probe_fraction(config: StudentConfig, parts: CleanSubsetParts, is_clean: torch.Tensor,
                            labels: torch.Tensor) -> float | None:
    """The smallest ``--learn-probe-fraction`` (in steps of 0.05, up to 1) whose probe of this clean subset (``parts``
    together; ``labels``: the pool's verified labels), split as this run would split it, holds
    :data:`MIN_PROBE_EXAMPLES` clean and corrupted samples each; None if none does."""
    subset = torch.sort(torch.cat([parts.validation, parts.probe, parts.trusted])).values
    for fraction in (*np.arange(0.05, 0.99, 0.05), 1.0):
        if _probe_is_enough(config, subset, labels, is_clean, float(fraction)):
            return round(float(fraction), 2)
    return None


def check_probe(config: StudentConfig, parts: CleanSubsetParts, is_clean: torch.Tensor, labels: torch.Tensor) -> None:
    """Refuse, before training, a probe without :data:`MIN_PROBE_EXAMPLES` clean and corrupted samples, naming the
    smallest clean-subset fraction that works (``labels``: the pool's clean labels)."""
    clean, corrupted = probe_counts(config, parts, is_clean)
    if clean >= MIN_PROBE_EXAMPLES and corrupted >= MIN_PROBE_EXAMPLES:
        return
    if config.clean_subset_file:
        probe_fraction = smallest_probe_fraction(config, parts, is_clean, labels)
        hint = (f"raise --learn-probe-fraction to {probe_fraction:g} or more, or list more samples in the file"
                if probe_fraction is not None else
                "list more samples in the file (no --learn-probe-fraction makes a probe of them that is enough)")
        source = f"--clean-subset-file {config.clean_subset_file}"
    else:
        smallest = smallest_fraction(config, labels, is_clean)
        hint = (f"use --clean-subset-fraction {smallest:g} or more" if smallest is not None else
                "no clean-subset fraction below 0.9 is enough at this noise rate")
        source = f"--clean-subset-fraction {config.clean_subset_fraction:g}"
    raise ValueError(f"the probe of {len(parts.probe)} images ({source}) holds {clean} clean and {corrupted} corrupted "
                     f"labels; --mentornet learn needs {MIN_PROBE_EXAMPLES} of each: {hint}")


def check_trusted_part(config: StudentConfig, parts: CleanSubsetParts) -> None:
    """Refuse, before training, trusted batches with nothing to draw from before the first fit while the noisy
    samples have weight 0 (so nothing would train), or larger than both the verified images the stream holds at
    the start (each batch would repeat images) and the batch size (``per-sample`` scales the trusted loss by
    B / batch size: a B far above both only multiplies the loss, until training diverges)."""
    if not config.learn_trusted_batch:
        return  # refused in StudentConfig unless --learn-burn-in-weight trains the noisy samples
    start = len(parts.trusted) + (len(parts.probe) if config.learn_probe_labels == "verified" else 0)
    if start == 0 and config.learn_burn_in_weight == 0:
        raise ValueError(f"--learn-probe-fraction {config.learn_probe_fraction:g} leaves no trusted images before the "
                         "last fit, and --learn-burn-in-weight 0 gives the noisy samples weight 0 until the first, so "
                         "nothing trains: lower --learn-probe-fraction, or give --learn-burn-in-weight 1")
    available = start or len(parts.probe)  # with no trusted part the stream starts when the probe joins it
    if config.learn_trusted_batch > max(available, config.batch_size):
        raise ValueError(f"--learn-trusted-batch {config.learn_trusted_batch} exceeds both the {available} verified "
                         f"images the trusted stream draws from and the batch size {config.batch_size}; give at most "
                         f"{max(available, config.batch_size)}")


def warn_untrusted_classes(config: StudentConfig, parts: CleanSubsetParts, verified: torch.Tensor,
                           num_classes: int) -> list[int]:
    """Warn (and return them) about the classes with no verified image in the trusted part: the student sees
    no verified label of them before the last fit, and the fits select noisy samples it already predicts
    right, so such a class may never be learned. Happens with a ``--clean-subset-file`` that has few samples of
    a class: the validation fifth and the probe take equal counts per class first."""
    if not config.learn_trusted_batch or config.learn_probe_labels == "verified" or not len(parts.trusted):
        return []  # no trusted part at all is a choice (--learn-probe-fraction 1), not a starved class
    counts = lambda part: torch.bincount(verified[part], minlength=num_classes).tolist()  # noqa: E731
    trusted, held, probe = counts(parts.trusted), counts(parts.validation), counts(parts.probe)
    missing = [c for c in range(num_classes) if trusted[c] == 0]
    if missing:
        detail = ", ".join(f"class {c} ({held[c] + probe[c]} verified: {held[c]} validation, {probe[c]} probe)"
                           for c in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        warnings.warn(f"no verified image of {detail} is left for the trusted part, so the student may never learn "
                      f"{'it' if len(missing) == 1 else 'them'}: give more verified samples of "
                      f"{'that class' if len(missing) == 1 else 'those classes'}, or a smaller --learn-probe-fraction",
                      stacklevel=2)
    return missing


def check_learn_schedule(config: StudentConfig, total_steps: int) -> None:
    """Refuse a fit epoch the step budget never reaches, naming the smallest run length that works."""
    last = parse_learn_epochs(config.learn_epochs)[-1]
    if math.ceil(last * total_steps / 100) < total_steps:
        return
    reachable = math.floor(100 * (total_steps - 1) / total_steps)
    raise ValueError(f"--learn-epochs {last} is never reached: {total_steps} steps reach progress epoch {reachable} at "
                     f"most; run at least {math.ceil(100 / (100 - last))} steps (--epochs or --max-steps) or fit earlier")


def precision_threshold(v: torch.Tensor, clean: torch.Tensor, precision: float) -> float:
    """The lowest threshold τ among the outputs ``v`` (shape [N]) at which the rows with ``v >= τ`` are at
    least a share ``precision`` clean (``clean``: bool, shape [N], the noisy label is the verified one); rows
    are taken from the highest output down; a NaN output, which no threshold selects, is left out. ``inf``
    (nothing is selected) when no threshold reaches it."""
    missing = torch.isnan(v)
    if bool(missing.any()):
        v, clean = v[~missing], clean[~missing]
    order = torch.argsort(v, descending=True, stable=True)
    ranked, hits = v[order], clean[order].double().cumsum(0)
    # a threshold selects every row tied with it, so only the last row of each run of equal outputs counts
    ends = torch.ones(len(v), dtype=torch.bool)
    ends[:-1] = ranked[1:] != ranked[:-1]
    share = hits / torch.arange(1, len(v) + 1, dtype=torch.float64)
    ok = torch.nonzero(ends & (share >= precision)).flatten()
    return float(ranked[ok[-1]]) if len(ok) else math.inf


def fit_threshold(v: torch.Tensor, clean: torch.Tensor, config: StudentConfig) -> tuple[float, str]:
    """A fit's threshold on its outputs ``v`` (shape [N], the window's probe rows; ``clean``: bool, shape [N]) and
    the rule that set it: ``precision`` (``--learn-precision P``: :func:`precision_threshold` at P), ``fixed``
    (``--learn-threshold τ``), ``""`` (``--learn-weights soft``: τ, which only measures the logged selection), or
    ``fallback``: no row reaches τ, and ``--learn-threshold-fallback precision``
    lowers the threshold to :func:`precision_threshold` at τ, the lowest output at which a share τ of the rows
    it selects are clean (``inf``, nothing selected, when no set of top-ranked rows is that clean). A fit in
    which a single row reaches τ keeps τ, however few rows that selects; with ``--learn-threshold-fallback min``
    every fit takes the lower of τ and that threshold (``fallback`` when it is lower or no row reaches τ, else
    ``fixed``).

    Why the fallback: a fit to few clean rows (about 34 of 200 probe images at 80% noise) can rank them almost
    perfectly (AUC 0.98) and still never output τ = 0.9, its probabilities held down by the corrupted majority;
    without it such a fit selects nothing and the run trains on its trusted part alone (docs/learned_choice.md).

    With ``--learn-threshold-prior odds`` τ is first raised to :func:`prior_threshold` of the window's clean share
    (rule ``odds`` when that raises it), and the fallback then works with the raised τ."""
    if config.learn_precision is not None:
        return precision_threshold(v, clean, config.learn_precision), "precision"
    threshold = config.learn_threshold
    if config.learn_weights != "threshold":
        return threshold, ""
    fixed = "fixed"
    if config.learn_threshold_prior == "odds":
        raised = prior_threshold(threshold, float(clean.float().mean()) if len(clean) else 0.0)
        if raised > threshold:
            threshold, fixed = raised, "odds"
    rule, reached = config.learn_threshold_fallback, bool((v >= threshold).any())
    if rule == "min" or (rule == "precision" and not reached):
        lowered = precision_threshold(v, clean, threshold)
        if lowered < threshold or not reached:
            return lowered, "fallback"
    return threshold, fixed


def prior_threshold(tau: float, clean_share: float) -> float:
    """``--learn-threshold-prior odds``: the output (a fitted probability of being clean, whose prior is the probe's
    ``clean_share`` π) at which the posterior odds are τ/(1−τ) · π/(1−π), i.e. the likelihood ratio is the one τ
    demands at an even prior (Bayes' rule in odds form); never below ``tau``. 1.0 for a probe all clean (π = 1),
    ``tau`` for π <= 0.5."""
    if clean_share >= 1.0:
        return 1.0
    odds = tau / (1.0 - tau) * clean_share / (1.0 - clean_share)
    return max(tau, odds / (1.0 + odds))


class LearnedMentorWeighter:
    """The weighting of ``--mentornet learn``: records the probe's losses and weights with the latest fit.

    Has :class:`~student_training.weighting.MentorWeighter`'s interface (``mentor_weights``,
    ``example_dropout``, ``last``, ``epoch_at``, ``moving_average``), plus the batch's sample indices.
    """

    def __init__(self, config: StudentConfig, weighting: WeighterConfig, *, total_steps: int, num_samples: int,
                 probe: torch.Tensor, is_clean: torch.Tensor, device: torch.device):
        self.config, self.total_steps = config, int(total_steps)
        self.moving_average = LossMovingAverage(weighting.loss_p_percentile, weighting.loss_moving_average_decay)
        self.uses_loss_diff = config.learn_features == "loss_diff"
        self.probe = probe.clone()
        self.probe_clean = is_clean[probe].float()
        # Row of each pool sample in the probe's tables; every other sample writes to a spare last row, so
        # recording needs no boolean indexing (no host synchronisation on a GPU).
        row = torch.full((num_samples,), len(probe), dtype=torch.long)
        row[probe] = torch.arange(len(probe))
        self.row = row.to(device)
        self.losses = torch.full((len(probe) + 1, NUM_EPOCHS), float("nan"), device=device)
        self.loss_diffs = torch.full_like(self.losses, float("nan"))
        self.released = torch.zeros(num_samples, dtype=torch.bool, device=device)
        self.mentor = None
        self.threshold = config.learn_threshold  # set by each fit with --learn-precision
        self.max_loss = math.inf  # the largest loss the MentorNet in use selected on the probe
        self.keep_share = 1.0  # with --learn-keep-rate probe: the most of a batch it selects (its lowest losses)
        self.last_fitted_epoch = 0
        self.last = {}
        self._step = None  # the fused forward of self.mentor (MentorNetStep), made at its first batch
        self._inputs = None  # its input (MentorNetStep.input_buffer), reused while the batch size and device stay

    def epoch_at(self, step: int) -> int:
        """The epoch input: the progress epoch, clamped to the last epoch the MentorNet was fitted on."""
        epoch = progress_percent(step, self.total_steps)
        return min(epoch, self.last_fitted_epoch) if self.mentor is not None else epoch

    @torch.no_grad()
    def mentor_weights(self, loss: torch.Tensor, step: int, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Weights of the batch's noisy-stream samples (``indices``: their pool indices, required)."""
        if indices is None:
            raise ValueError("--mentornet learn records the probe's losses, so it needs the batch's sample indices")
        loss = loss.detach().reshape(-1).float()
        progress = progress_percent(step, self.total_steps)
        loss_diff = self.moving_average.loss_diff(loss) if self.uses_loss_diff else torch.zeros_like(loss)
        indices = indices.to(self.row.device)
        rows = self.row[indices]
        self.losses[rows, progress] = loss
        self.loss_diffs[rows, progress] = loss_diff
        epoch = self.epoch_at(step)
        if self.mentor is None:
            weights = torch.full_like(loss, self.config.learn_burn_in_weight)
        else:
            v = self._mentor_output(loss, loss_diff, epoch)
            if self.config.learn_weights == "threshold":
                chosen = (v >= self.threshold) & (loss <= self.max_loss)
                if self.keep_share < 1.0:  # a rank cap: the batch's ceil(share B) lowest losses at most
                    keep = math.ceil(self.keep_share * len(loss))
                    chosen &= loss <= torch.kthvalue(loss, keep)[0] if keep else torch.zeros_like(chosen)
                weights = chosen.float()
            else:
                weights = v
        weights = torch.where(self.released[indices], 0.0, weights)
        self.last = {"epoch": epoch, "dropout_rate": 0.0, "burn_in": self.mentor is None}
        return weights

    def in_noisy_stream(self, indices: torch.Tensor) -> torch.Tensor:
        """[B] bool: which of the batch's samples (pool indices) still train in the noisy stream, i.e. are not a
        released probe sample (those train in the trusted stream with their verified labels)."""
        return ~self.released[indices.to(self.released.device)]

    def _mentor_output(self, loss: torch.Tensor, loss_diff: torch.Tensor, epoch: int) -> torch.Tensor:
        """``self.mentor.weight`` of the batch, through the fused step of MentorWeighter (the same values, without
        a parallel region per tiny product on the CPU) where it applies."""
        step = self._step
        if step is None or step.mentor is not self.mentor:
            step = self._step = MentorNetStep(self.mentor) if MentorNetStep.supports(self.mentor) else None
        if step is not None:
            if self._inputs is None or self._inputs[0].shape[0] != len(loss) or self._inputs[0].device != loss.device:
                self._inputs = MentorNetStep.input_buffer(len(loss), loss.device)
            x, losses, loss_diffs = self._inputs
            losses.copy_(loss)
            loss_diffs.copy_(loss_diff)
            weights = step.weights(x, epoch)
            if weights is not None:
                return weights
        return self.mentor.weight(MentorFeatures.build(loss, loss_diff, epoch=epoch)).to(loss.device, torch.float32)

    def example_dropout(self, weights: torch.Tensor, epoch: int) -> torch.Tensor:
        return weights  # none in this mode

    @torch.no_grad()
    def opinion(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        """The MentorNet's output for ``loss`` at ``step`` without changing any state (find-label-issues); the
        burn-in weight before the first fit."""
        loss = loss.detach().reshape(-1).float()
        if self.mentor is None:
            return torch.full_like(loss, self.config.learn_burn_in_weight)
        loss_diff = loss - self.moving_average.value.to(loss) if self.uses_loss_diff else torch.zeros_like(loss)
        features = MentorFeatures.build(loss, loss_diff, epoch=self.epoch_at(step))
        return self.mentor.weight(features).to(loss.device, torch.float32)

    def fit(self, point: int, seed: int) -> tuple[dict, object | None, TargetSplit | None]:
        """Fit a fresh MentorNet to the probe's rows of the last ``--learn-window`` progress epochs before
        ``point``; returns the log row, the MentorNet (None when skipped) and its target split."""
        start = max(0, point - self.config.learn_window)
        losses = self.losses[:-1, start:point].cpu()
        diffs = self.loss_diffs[:-1, start:point].cpu()
        seen = ~torch.isnan(losses)
        epochs = torch.arange(start, point).expand_as(losses)[seen]
        targets = self.probe_clean.cpu()[:, None].expand_as(losses)[seen]
        row = {"progress_epoch": point, "rows": int(seen.sum()),
               "noisy_fraction": float(1 - targets.mean()) if len(targets) else float("nan")}
        clean_rows = int((targets > 0.5).sum())
        if min(clean_rows, len(targets) - clean_rows) < MIN_PROBE_EXAMPLES:
            # Too few rows of one kind to learn where clean ends (a short run sees each probe sample in few
            # progress epochs): the previous MentorNet, or the burn-in weight, stays in use.
            reason = ("the probe has no recorded losses in its window" if len(targets) == 0 else
                      f"the window holds {clean_rows} clean and {len(targets) - clean_rows} corrupted probe rows, "
                      f"fewer than the {MIN_PROBE_EXAMPLES} of each a fit needs (a longer run, a larger "
                      "--learn-window or a larger clean subset gives more)")
            return {**row, "status": f"skipped: {reason}"}, None, None
        features = MentorFeatures(losses[seen], diffs[seen], torch.zeros(len(targets), dtype=torch.long), epochs)
        data = TargetSet(features, targets.float())
        source = {"type": "learned_in_run", "window": [start, point - 1], "num_rows": len(targets),
                  "features": self.config.learn_features, "weights": self.config.learn_weights, "seed": seed}
        split = TargetSplit(data, data, source)
        result = fit_mentornet(split, recipe="fast", steps=FIT_STEPS, seed=seed,
                               config=MentorNetConfig(uses_loss_diff=self.uses_loss_diff))
        mentor = result.model.eval().requires_grad_(False)
        first, last = int(epochs.min()), int(epochs.max())  # the window's epochs that hold rows
        with torch.no_grad():  # outside them, the epoch input acts as the nearest fitted epoch, in any loop
            embedding = mentor.epoch_embedding
            embedding[last + 1:] = embedding[last].clone()
            embedding[:first] = embedding[first].clone()
        mentor.last_fitted_epoch = last
        clean = targets > 0.5
        fit_auc = detector_auc(mentor.weight(features).numpy(), clean.numpy())  # each row at its own epoch
        # Until the next fit the weighting asks at the window's last epoch (epoch_at clamps to it): the threshold
        # and the selection are measured there, on every row of the window.
        v = mentor.weight(MentorFeatures(features.loss, features.loss_diff, features.label,
                                         torch.full_like(epochs, last)))
        threshold, rule = fit_threshold(v, clean, self.config)
        chosen = v >= threshold
        # A MentorNet is fitted on the losses the probe had; where losses grow past them (corrupted samples, once the
        # student stops training on them) its output is an extrapolation, so a sample with a larger loss than any
        # the fit selected is not selected.
        max_loss = float(features.loss[chosen].max()) if chosen.any() else -math.inf
        # --learn-keep-rate probe: the share selected among the rows of the window's last epoch, the losses closest
        # to those it is used on
        keep_share = float(chosen[epochs == last].float().mean()) if self.config.learn_keep_rate == "probe" else 1.0
        if self.config.learn_weights == "threshold":  # what the checkpoint records of the decision
            split = dataclasses.replace(split, source={
                **source, "threshold": threshold if math.isfinite(threshold) else None,  # None: selects nothing
                "precision_target": self.config.learn_precision, "threshold_rule": rule,
                "max_selected_loss": max_loss if math.isfinite(max_loss) else None,
                "keep_share": keep_share if keep_share < 1.0 else None})
        mentor.threshold, mentor.max_selected_loss, mentor.keep_share = threshold, max_loss, keep_share
        row.update(threshold=threshold, selected=float(chosen.float().mean()),
                   precision=float(clean[chosen].float().mean()) if chosen.any() else float("nan"),
                   fit_auc=fit_auc,
                   loss_auc=detector_auc(-features.loss.numpy(), clean.numpy()),
                   fit_seconds=round(result.seconds, 3), status="fitted", keep_share=keep_share,
                   threshold_rule=rule)
        return row, mentor, split

    def use(self, mentor, point: int) -> None:
        """Weight with ``mentor`` from now on; its epoch input stops at the last epoch it was fitted on."""
        self.mentor = mentor.to(self.row.device)
        self.last_fitted_epoch = getattr(mentor, "last_fitted_epoch", point - 1)
        self.threshold = getattr(mentor, "threshold", self.config.learn_threshold)
        self.max_loss = getattr(mentor, "max_selected_loss", math.inf)
        self.keep_share = getattr(mentor, "keep_share", 1.0)

    def release(self, probe: torch.Tensor) -> None:
        self.released[probe.to(self.released.device)] = True

    def state_dict(self) -> dict:
        mentor = None if self.mentor is None else {
            "state_dict": {k: v.detach().cpu() for k, v in self.mentor.state_dict().items()},
            "config": self.mentor.config.to_dict()}
        return {"moving_average": self.moving_average.state_dict(), "losses": self.losses.cpu(),
                "loss_diffs": self.loss_diffs.cpu(), "released": self.released.cpu(), "mentor": mentor,
                "last_fitted_epoch": self.last_fitted_epoch, "threshold": self.threshold, "max_loss": self.max_loss,
                "keep_share": self.keep_share, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        from mentor_training.model import MentorNet

        if state["total_steps"] != self.total_steps:
            raise ValueError(f"weighter state is for {state['total_steps']} steps, this run has {self.total_steps}")
        self.moving_average.load_state_dict(state["moving_average"])
        device = self.row.device
        self.losses, self.loss_diffs = state["losses"].to(device), state["loss_diffs"].to(device)
        self.released = state["released"].to(device)
        self.last_fitted_epoch = int(state["last_fitted_epoch"])
        self.threshold = state.get("threshold", self.config.learn_threshold)
        self.max_loss = state.get("max_loss", math.inf)
        self.keep_share = state.get("keep_share", 1.0)
        if state["mentor"] is not None:
            mentor = MentorNet(MentorNetConfig(**state["mentor"]["config"]))
            mentor.load_state_dict(state["mentor"]["state_dict"])
            self.mentor = mentor.eval().requires_grad_(False).to(device)


class TrustedStream:
    """Batches of trusted samples (pool indices) with their verified labels, cycling through seeded
    permutations; the probe joins it when released.

    On an accelerator the queue of indices has a copy on the device, filled once per permutation, and the
    verified labels are moved there once, so a step copies nothing to the device but its crop/flip draws
    (one copy, only with augmentation)."""

    def __init__(self, indices: torch.Tensor, batch_size: int, seed: int, scale: float = 1.0):
        self.indices = torch.as_tensor(indices, dtype=torch.long).clone()
        self.batch_size = int(batch_size)
        self.scale = float(scale)  # the factor of the batch's mean loss (--learn-trusted-loss)
        self.generator = torch.Generator().manual_seed(seed + 104729)
        self.queue = torch.zeros(0, dtype=torch.long)
        self.device_queue = self.queue  # the queue on the device of the last next(device)
        self.labels = None  # the run's verified labels on its device

    def add(self, indices: torch.Tensor) -> None:
        self.indices = torch.cat([self.indices, torch.as_tensor(indices, dtype=torch.long)])

    def next(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The next ``batch_size`` pool indices, on ``device``."""
        if not len(self.indices):
            raise ValueError("the trusted stream holds no samples")
        if self.device_queue.device != torch.device(device):
            self.device_queue = self.queue.to(device)
        while len(self.queue) < self.batch_size:
            order = self.indices[torch.randperm(len(self.indices), generator=self.generator)]
            self.queue = torch.cat([self.queue, order])
            self.device_queue = torch.cat([self.device_queue, order.to(device)])
        batch = self.device_queue[:self.batch_size]
        self.queue, self.device_queue = self.queue[self.batch_size:], self.device_queue[self.batch_size:]
        return batch

    def loss(self, run: "Run", model: torch.nn.Module) -> torch.Tensor | float:
        """The mean cross-entropy of the next trusted batch against its verified labels (fp32), times ``scale``; 0
        while the stream is empty (``--learn-probe-fraction 1``, before the probe joins it)."""
        if not len(self.indices):
            return 0.0
        batch = self.next(run.device)
        if self.labels is None or self.labels.device != batch.device:
            self.labels = run.verified_labels.to(batch.device)
        # the same pad-and-crop and flip as the noisy stream, drawn from this stream's generator
        images = run.train_loader.batch_of(batch, self.generator)
        with run.precision.autocast():
            logits = model(images)
        loss = F.cross_entropy(logits.float(), self.labels[batch])
        return loss * self.scale if self.scale != 1.0 else loss

    def state_dict(self) -> dict:
        return {"indices": self.indices.clone(), "generator": self.generator.get_state(), "queue": self.queue.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.indices = state["indices"].clone()
        self.generator.set_state(state["generator"])
        self.queue = state["queue"].clone()
        self.device_queue = self.queue


def probe_transition(noisy: torch.Tensor, verified: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The noise transition ``T[c, j] = P(noisy label j | true class c)`` estimated from the probe's label pairs
    (``noisy``, ``verified``: [N] class ids), add-one smoothed per row; float32 [C, C], each row sums to 1."""
    counts = torch.ones(num_classes, num_classes)
    counts.index_put_((verified.long().cpu(), noisy.long().cpu()), torch.ones(len(noisy)), accumulate=True)
    return counts / counts.sum(dim=1, keepdim=True)


class Refurbishment:
    """``--learn-relabel-confidence``: a noisy-stream sample the MentorNet gives weight 0 is trained on a
    refurbished label when that label is sure enough, each such sample counting as one sample of the batch mean
    (label refurbishment as in SELFIE, Song, Kim and Lee, ICML 2019, §3.2, with the MentorNet's weight 0 in place
    of its uncertainty test). The trainer applies it in the burn-in before the first fit too, where every noisy
    sample has weight ``--learn-burn-in-weight`` (unless ``--no-learn-relabel-in-burn-in``), and never to a
    released probe sample; with ``--learn-weights soft`` no weight is exactly 0 after the first fit. The 2018
    ResNet recipe's weight decay, scaled by the mean weight, does not count the relabelled samples.

    A ``[C, C]`` ``transition`` (``--learn-relabel-target posterior``, the default): the label is the class of
    highest posterior ``P(c | x, noisy label) ∝ softmax(x)_c · T[c, noisy label]`` (Bayes' rule with the probe's
    estimated noise transition, :func:`probe_transition`), sure when that posterior is >= ``confidence``; the
    noisy label is evidence, so a hard clean sample keeps its label unless the student is surer than the noise
    rate allows (and a sample may be trained on its own noisy label, past the MentorNet's decision and its loss
    bound, when the posterior says so). With ``exclude_noisy`` (``--learn-relabel-target other``) the noisy label
    is ruled out, on the premise that weight 0 says it is wrong: the label is the class of highest posterior among
    the other classes, renormalised over them, ``P(c | x, noisy label, c != noisy label)`` (measured far worse:
    weight 0 in the burn-in, or for a clean sample no fit selects, is no such verdict; docs/learned_choice.md). ``transition`` None
    (``prediction``): the label is the student's predicted class, sure when its softmax probability is >=
    ``confidence``.

    Raises ``ValueError`` for ``exclude_noisy`` without a ``transition``, or with fewer than 3 classes."""

    def __init__(self, confidence: float, transition: torch.Tensor | None = None, *, exclude_noisy: bool = False):
        if exclude_noisy and transition is None:
            raise ValueError("excluding the noisy label needs the noise transition of the posterior")
        if exclude_noisy and len(transition) < 3:
            raise ValueError(f"--learn-relabel-target other needs 3 classes or more (this data set has "
                             f"{len(transition)}): with 2 it moves every sample of weight 0 to the other class")
        self.log_confidence = math.log(confidence)
        self.log_transition = None if transition is None else transition.log()
        self.exclude_noisy = bool(exclude_noisy)

    @classmethod
    def for_run(cls, config: StudentConfig, parts: CleanSubsetParts, noisy: torch.Tensor, verified: torch.Tensor,
                num_classes: int, device: torch.device) -> "Refurbishment | None":
        """The run's rule (None with ``--learn-relabel-confidence 0``): ``noisy`` and ``verified`` are the pool's
        labels [N], of which the probe's pairs give the transition; ``device`` holds it. Raises ``ValueError`` as
        the constructor does (``--learn-relabel-target other`` with fewer than 3 classes)."""
        if not config.learn_relabel_confidence:
            return None
        transition = None
        if config.learn_relabel_target in ("posterior", "other"):
            transition = probe_transition(noisy[parts.probe], verified[parts.probe], num_classes).to(device)
        return cls(config.learn_relabel_confidence, transition, exclude_noisy=config.learn_relabel_target == "other")

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
             candidates: torch.Tensor | None = None) -> torch.Tensor:
        """``logits`` [B, C] float, ``labels`` [B] (the noisy labels), ``weights`` [B] (the step's weights),
        ``candidates`` [B] bool (the samples that may be relabelled; None: all): Σ -log softmax(logits)[new
        label] / B over the candidates of weight 0 whose new label is sure. Under DDP these are the rank's shard
        and B its size, as in the student's loss."""
        log_p = torch.log_softmax(logits, dim=1)
        evidence = log_p.detach()
        if self.log_transition is not None:
            evidence = evidence + self.log_transition[:, labels].T
            if self.exclude_noisy:
                evidence = evidence.scatter(1, labels[:, None], -math.inf)
            evidence = torch.log_softmax(evidence, dim=1)
        log_sure, target = evidence.max(dim=1)
        chosen = (weights == 0) & (log_sure >= self.log_confidence)
        if candidates is not None:
            chosen &= candidates
        return -(log_p.gather(1, target[:, None]).squeeze(1) * chosen).sum() / max(len(weights), 1)


class LearnMentorNet(ScheduledFits):
    """Fits the run's MentorNet at each ``--learn-epochs`` progress epoch: saves it as
    ``mentornets/epoch_EE.pt`` (a MentorNet checkpoint ``plot``, ``show`` and ``--mentornet PATH`` accept),
    logs it in ``relearn.csv``, weights with it, and releases the probe after the last fit (with
    ``--learn-probe-labels verified`` it was released at the start). Its state (the
    fits so far, the recorded losses, the MentorNet in use, the trusted stream) is saved in ``last.pt``."""

    name = "learn_mentornet"
    columns = LEARN_COLUMNS

    def __init__(self, run: "Run"):
        super().__init__(parse_learn_epochs(run.config.learn_epochs))
        self.weighter: LearnedMentorWeighter = run.weighter
        self.trusted: TrustedStream | None = run.trusted
        self.probe = run.clean_parts.probe
        self.release_at_end = run.config.learn_probe_labels == "noisy"
        if not self.release_at_end:  # verified: trained with its verified labels from the start (a resume then
            self._release_probe()   # restores the saved state over this)

    def _release_probe(self) -> None:
        """Weight 0 for the probe in the noisy stream; its verified labels in the trusted stream, where there is one."""
        self.weighter.release(self.probe)
        if self.trusted is not None:
            self.trusted.add(self.probe)

    def on_step(self, run: "Run", step: int) -> None:
        progress = progress_percent(step, run.total_steps)
        for point in [p for p in self.pending() if progress >= p]:
            start = time.perf_counter()
            seed = run.config.seed + point
            row, mentor, split = self.weighter.fit(point, seed)
            row["step"] = step
            if mentor is not None:
                path = run.out / "mentornets" / f"epoch_{point:02d}.pt"
                if run.is_main:
                    save_fitted(mentor, split, row, path, run)
                row["checkpoint"] = str(path.relative_to(run.out))
                self.weighter.use(mentor, point)
            else:
                row["checkpoint"] = ""
            row.setdefault("fit_seconds", round(time.perf_counter() - start, 3))
            self.rows.append(row)
            if not self.pending() and self.release_at_end:
                self._release_probe()
            self.write_log(run)

    def on_train_end(self, run: "Run") -> None:
        if self.rows and not any(row.get("status") == "fitted" for row in self.rows) and run.is_main:
            status = self.rows[0]["status"]
            what = (f"the run's one fit learned no MentorNet (it was {status})" if len(self.rows) == 1 else
                    f"none of the {len(self.rows)} fits learned a MentorNet (the first was {status})")
            warnings.warn(f"{what}, so no learned MentorNet weighted this run: its noisy samples kept "
                          f"--learn-burn-in-weight {run.config.learn_burn_in_weight:g} throughout (relearn.csv lists "
                          "every fit)", stacklevel=2)

    def state_dict(self) -> dict:
        # The weighter's own state (recorded losses, the MentorNet in use) is saved with the run's weighter.
        return {"rows": list(self.rows), "trusted": self.trusted.state_dict() if self.trusted is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])
        if self.trusted is not None:
            self.trusted.load_state_dict(state["trusted"])


def save_fitted(mentor, split: TargetSplit, row: dict, path: Path, run: "Run") -> None:
    """Write one fit as a MentorNet checkpoint (its source says how and when it was learned)."""
    path.parent.mkdir(exist_ok=True)
    weighting = run.weighting or WeighterConfig()
    spec = feature_spec(loss_p_percentile=weighting.loss_p_percentile if run.weighter.uses_loss_diff else None,
                        loss_moving_average_decay=weighting.loss_moving_average_decay
                        if run.weighter.uses_loss_diff else None,
                        loss_diff_reference="moving_average_of_batch_percentile" if run.weighter.uses_loss_diff
                        else "unused (fitted with loss_diff = 0)")
    # Measured on the fit's own rows: the probe is too small to hold a part out (the run's validation split
    # and detector AUC judge the MentorNet in use).
    metrics = {"fit": {key: row[key] for key in ("rows", "noisy_fraction", "selected", "precision", "fit_auc",
                                                 "loss_auc")},
               "test": None, "fit_seconds": row["fit_seconds"]}
    source = {**split.source, "run": str(run.out), "progress_epoch": row["progress_epoch"],
              "dataset": run.config.dataset, "noise": run.noise.noise_rate}
    # every option of the run, re-run into a new folder (the run's own holds this checkpoint)
    command = f"train-student --config {run.out / 'config.json'} --out NEW_FOLDER"
    checkpoint = build_checkpoint(mentor, source=source, feature_spec=spec, student_defaults=weighting,
                                  metrics=metrics, command=command)
    save_checkpoint(checkpoint, path, force=True)


__all__ = ["CleanSubsetParts", "LEARN_COLUMNS", "LearnMentorNet", "LearnedMentorWeighter", "TrustedStream",
           "check_learn_schedule", "check_probe", "check_trusted_part", "precision_threshold", "smallest_fraction",
           "smallest_probe_fraction", "split_clean_subset"]
