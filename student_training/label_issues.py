"""Which training labels does a run believe are wrong? A ranking from per-sample losses and MentorNet weights.

During every ``train-student`` run (unless ``--no-record-samples``) the :class:`SampleRecordCallback` scores the whole noisy training set
once per epoch, after the epoch's test evaluation: the student's cross-entropy against each sample's given
label (eval mode, no augmentation), and the weight the run's MentorNet gives that loss at that point of
training (``mentor.weight`` of the loss, ``loss − M`` with the run's moving-average percentile ``M``, and the
epoch the MentorNet sees; without the burn-in floor or example dropout, so it is the MentorNet's own
opinion). It keeps running means and the last values (:class:`SampleRecord`), saved in ``last.pt``.

:func:`label_issue_scores` turns losses and weights into one score per sample (higher: the given label is
more likely wrong); :data:`DEFAULT_SCORE` is the score chosen on runs whose truth is known (README, "Using a
trained student"; ``benchmarks/label_issues.py``). :func:`rank_label_issues` ranks samples by it, for a
run (:func:`find_label_issues`) or for a user's own training loop. :func:`precision_recall_at` and
:func:`ranking_auc` measure a ranking where the corrupted labels are known.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from curricula.files import atomic_write

from .callbacks import Callback
from .evaluation import detector_auc
from .losses import per_sample_cross_entropy
from .noise import load_noisy_labels
from .run_folder import check_guarded_files, read_config, read_last, recover_replaced_run

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Run

# score name -> what it is; every score is "higher: the given label is more likely wrong"
SCORES = {
    "mean_loss": "mean over the recorded epochs of the sample's loss (cross-entropy against its given label)",
    "early_loss": "mean of the sample's loss over the epochs up to the one the validation split chose (the "
                  "best val_accuracy, before the student memorises its noisy labels)",
    "mean_weight": "1 minus the mean over the recorded epochs of the MentorNet weight of the sample's loss",
    "final_loss": "the sample's loss at the end of training",
    "final_weight": "1 minus the MentorNet weight of the sample's loss at the end of training",
}
DEFAULT_SCORE = "mean_loss"
ISSUE_COLUMNS = ("sample_id", "given_label", "predicted_label", "score")
RECORD_NAME = "sample_record"


# ------------------------------------------------------------------------------------- the ranking


def _as_matrix(values, name: str) -> np.ndarray:
    """``[N]`` or ``[E, N]`` finite numbers as float64 ``[E, N]``."""
    array = values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) else \
        np.asarray(values, dtype=np.float64)
    if array.ndim not in (1, 2) or array.shape[-1] == 0:
        raise ValueError(f"{name} must be a non-empty array [N] or [epochs, N], got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array.reshape(-1, array.shape[-1])


def label_issue_scores(losses, weights=None, *, score: str = DEFAULT_SCORE, until: int | None = None) -> np.ndarray:
    """One score per sample, higher when its given label is more likely wrong (float64 ``[N]``).

    ``losses`` are per-sample losses against the given labels (nats), ``weights`` the MentorNet weights of
    those losses (in [0, 1]), each ``[N]`` (one epoch) or ``[E, N]`` (E epochs of the same N samples, in
    training order; the mean scores average over them, the final scores take the last row). ``score`` is
    one of :data:`SCORES`; ``early_loss`` averages the first ``until`` rows (the epochs up to the one a
    validation split chose). Without ``weights`` only the loss scores exist, as for a plain cross-entropy run.

    Raises ``ValueError`` for an unknown score, mismatched shapes, NaN, weights outside [0, 1], or an
    ``until`` outside 1..E (or missing) for ``early_loss``.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of: {', '.join(SCORES)}")
    losses = _as_matrix(losses, "losses")
    if score == "early_loss":
        if until is None or not 1 <= until <= len(losses):
            raise ValueError(f"early_loss averages the first `until` epochs, 1..{len(losses)}; got {until!r}")
        return losses[:until].mean(axis=0)
    if score.endswith("_weight"):
        if weights is None:
            raise ValueError(f"score {score!r} needs MentorNet weights; a run that recorded none (no MentorNet) has "
                             "only losses: use mean_loss or final_loss")
        weights = _as_matrix(weights, "weights")
        if weights.shape != losses.shape:
            raise ValueError(f"weights have shape {weights.shape}, losses {losses.shape}")
        if weights.min() < 0 or weights.max() > 1:
            raise ValueError(f"weights must lie in [0, 1], got [{weights.min():g}, {weights.max():g}]")
        return 1.0 - (weights.mean(axis=0) if score == "mean_weight" else weights[-1])
    return losses.mean(axis=0) if score == "mean_loss" else losses[-1]


def rank_label_issues(losses, weights=None, *, given_labels, predicted_labels=None, sample_ids=None,
                      score: str = DEFAULT_SCORE, until: int | None = None) -> pd.DataFrame:
    """Samples ranked by how likely their given label is wrong, most likely first.

    ``losses`` and ``weights`` as for :func:`label_issue_scores`; ``given_labels`` ``[N]`` the labels trained
    on, ``predicted_labels`` ``[N]`` the student's top-1 classes (-1 where not given), ``sample_ids`` ``[N]``
    (default ``0..N-1``). Returns a DataFrame with columns ``sample_id, given_label, predicted_label, score``
    and a ``rank`` index from 0; ties keep sample order.

    Use it from your own loop: keep each sample's loss and MentorNet weight per epoch (e.g. the
    ``losses`` and ``mentor.opinion(losses, step)`` of each batch of a
    :class:`~student_training.weighting.MentorWeighter` ``mentor``, put at the batch's sample indices) and call
    ``rank_label_issues(np.stack(epoch_losses), np.stack(epoch_weights), given_labels=labels)``. ``opinion`` is
    what a run records: the MentorNet's weight without the burn-in floor and example dropout, whose random zeros
    (half of every early batch with the 2018 schedule) would say nothing about the label.
    """
    values = label_issue_scores(losses, weights, score=score, until=until)
    count = len(values)
    given = _labels(given_labels, count, "given_labels")
    predicted = np.full(count, -1, dtype=np.int64) if predicted_labels is None else \
        _labels(predicted_labels, count, "predicted_labels", allow_missing=True)
    ids = np.arange(count, dtype=np.int64) if sample_ids is None else _labels(sample_ids, count, "sample_ids")
    order = np.argsort(-values, kind="stable")
    frame = pd.DataFrame({"sample_id": ids[order], "given_label": given[order], "predicted_label": predicted[order],
                          "score": values[order]}, columns=list(ISSUE_COLUMNS))
    frame.index.name = "rank"
    return frame


def _labels(values, count: int, name: str, *, allow_missing: bool = False) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.shape != (count,) or not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise ValueError(f"{name} must be {count} integers, got {array.dtype} of shape {array.shape}")
    if len(array) and array.min() < (-1 if allow_missing else 0):
        raise ValueError(f"{name} must be >= {-1 if allow_missing else 0}, found {array.min()}")
    return array.astype(np.int64)


def parse_top(text: str | int, count: int) -> int:
    """``K`` (samples) or ``P%`` (of ``count``, rounded) as a number of samples in 1..count."""
    text = str(text).strip()
    match = re.fullmatch(r"(\d+(?:\.\d*)?)%", text)
    try:
        top = int(round(float(match.group(1)) / 100 * count)) if match else int(text)
    except ValueError:
        raise ValueError(f"--top must be a number of samples K or a percentage like 20%, got {text!r}") from None
    if not 1 <= top <= count:
        raise ValueError(f"--top {text} selects {top} samples; it must select between 1 and {count}")
    return top


def precision_recall_at(ranked_is_wrong, k: int) -> tuple[float, float]:
    """Precision and recall of the first ``k`` samples of a ranking as a detector of wrong labels.

    ``ranked_is_wrong`` is ``[N]`` booleans in ranking order (True: the given label is wrong). Precision is
    the wrong fraction of the top ``k``; recall the fraction of all wrong labels found there (NaN when none
    is wrong).
    """
    wrong = np.asarray(ranked_is_wrong, dtype=bool).reshape(-1)
    if not 1 <= k <= len(wrong):
        raise ValueError(f"k must lie in 1..{len(wrong)}, got {k}")
    found = int(wrong[:k].sum())
    total = int(wrong.sum())
    return found / k, found / total if total else float("nan")


def ranking_auc(scores, is_wrong) -> float:
    """ROC AUC of ``scores`` as a detector of wrong labels (1: every wrong label scores above every right
    one; ties count half; NaN when either group is empty)."""
    return detector_auc(-np.asarray(scores, dtype=np.float64), ~np.asarray(is_wrong, dtype=bool))


# --------------------------------------------------------------------------- recording during a run


@dataclass
class SampleRecord:
    """Per-sample running means over the recorded epochs and the last values, for the N noisy training
    samples of a run: ``positions`` (index in the run's training pool, the order of ``noisy_labels.npz``),
    ``sample_ids`` (index in the official training set), float64 ``loss_sum`` and ``weight_sum``, the last
    ``final_loss``, ``final_weight`` and ``prediction``, and ``epochs`` recorded; ``early_loss_sum`` and
    ``early_epochs`` are ``loss_sum`` and ``epochs`` as they stood at the epoch of the best validation
    accuracy so far (0 epochs without a validation split). ``weight_sum`` is None for a run without a
    MentorNet."""

    positions: torch.Tensor
    sample_ids: torch.Tensor
    loss_sum: torch.Tensor
    weight_sum: torch.Tensor | None
    final_loss: torch.Tensor
    final_weight: torch.Tensor | None
    prediction: torch.Tensor
    epochs: int = 0
    early_loss_sum: torch.Tensor | None = None
    early_epochs: int = 0

    @classmethod
    def empty(cls, positions: torch.Tensor, sample_ids: torch.Tensor, *, weighted: bool) -> "SampleRecord":
        count = len(positions)
        zeros = lambda dtype: torch.zeros(count, dtype=dtype)  # noqa: E731
        return cls(positions.cpu().clone(), sample_ids.cpu().clone(), zeros(torch.float64),
                   zeros(torch.float64) if weighted else None, zeros(torch.float32),
                   zeros(torch.float32) if weighted else None, torch.full((count,), -1, dtype=torch.long))

    def add_epoch(self, losses: torch.Tensor, weights: torch.Tensor | None, predictions: torch.Tensor, *,
                  best_validation: bool = False) -> None:
        """Fold in one epoch's ``[N]`` losses, weights (None without a MentorNet) and predictions;
        ``best_validation``: this epoch has the best validation accuracy so far (the early-loss snapshot)."""
        losses = losses.detach().cpu().float()
        self.loss_sum += losses.double()
        if best_validation:
            self.early_loss_sum, self.early_epochs = self.loss_sum.clone(), self.epochs + 1
        self.final_loss = losses
        if self.weight_sum is not None:
            weights = weights.detach().cpu().float()
            self.weight_sum += weights.double()
            self.final_weight = weights
        self.prediction = predictions.detach().cpu().long()
        self.epochs += 1

    def losses_and_weights(self, score: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The ``[N]`` losses and weights that :func:`label_issue_scores` needs for ``score``."""
        if self.epochs == 0:
            raise ValueError("no epoch has been recorded")
        if score == "early_loss":
            if not self.early_epochs:
                raise ValueError("early_loss needs the epoch a validation split chose, and this run had no validation "
                                 "split (--validation-fraction 0); use mean_loss")
            return (self.early_loss_sum / self.early_epochs).numpy(), None
        mean = score.startswith("mean")
        losses = (self.loss_sum / self.epochs) if mean else self.final_loss.double()
        weights = None if self.weight_sum is None else \
            ((self.weight_sum / self.epochs) if mean else self.final_weight.double()).clamp(0, 1)
        return losses.numpy(), None if weights is None else weights.numpy()

    def state_dict(self) -> dict:
        return {key: getattr(self, key) for key in _RECORD_FIELDS}

    @classmethod
    def from_state_dict(cls, state: dict) -> "SampleRecord":
        return cls(**{key: state[key] for key in _RECORD_FIELDS if key in state})


_RECORD_FIELDS = ("positions", "sample_ids", "loss_sum", "weight_sum", "final_loss", "final_weight", "prediction",
                  "epochs", "early_loss_sum", "early_epochs")


@torch.no_grad()
def training_set_losses(run: "Run", *, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's eval-mode cross-entropy against the given (noisy) label, and its top-1 class, for every
    noisy training sample of ``run`` (``run.data.train_indices`` order), on the run's device."""
    model, indices = run.model, run.data.train_indices
    was_training = model.training
    model.eval()
    losses, predictions = [], []
    for start in range(0, len(indices), batch_size):
        batch = indices[start:start + batch_size]
        images = run.test_loader.prepare(run.data.train_images[batch].to(run.device))
        with run.precision.autocast():
            logits = model(images).float()
        losses.append(per_sample_cross_entropy(logits, run.noise.noisy_labels[batch].to(run.device)))
        predictions.append(logits.argmax(dim=1))
    model.train(was_training)
    return torch.cat(losses), torch.cat(predictions)


@torch.no_grad()
def mentor_opinion(run: "Run", losses: torch.Tensor, step: int) -> torch.Tensor:
    """The MentorNet weight of ``losses`` at ``step`` with the run's current moving-average percentile,
    without the burn-in floor or example dropout (the weighter's state is not changed)."""
    return _opinion_source(run).opinion(losses, step)


def _opinion_source(run: "Run"):
    """The weighter whose opinion the record keeps (:attr:`~student_training.trainer.Run.mentor_weighter`); None for
    a weighting without ``opinion(loss, step)``."""
    weighter = run.mentor_weighter
    return weighter if callable(getattr(weighter, "opinion", None)) else None


def _weighs(run: "Run") -> bool:
    """Whether the run's weighting gives a MentorNet opinion :func:`mentor_opinion` can ask for (a weighting scheme
    without ``opinion(loss, step)`` is recorded by its losses alone)."""
    return _opinion_source(run) is not None


class SampleRecordCallback(Callback):
    """Records every noisy training sample's loss, MentorNet weight and prediction after each epoch
    (see the module docstring); its :class:`SampleRecord` is saved in ``last.pt`` under ``sample_record``.

    Cost: one eval-mode forward pass over the noisy training set per epoch, on top of the epoch's own
    forward and backward passes over it. Measured for the mlp on 5,000 Fashion-MNIST images (1 CPU thread):
    0.29 s per epoch against 0.95 s for the training pass (median of 5 epochs), so about a third of the
    training pass, as a forward pass costs about a third of a forward and backward one. Under torchrun
    only rank 0 records.
    """

    name = RECORD_NAME

    def __init__(self):
        self.record: SampleRecord | None = None

    def on_epoch_end(self, run: "Run", epoch: int, row: dict) -> None:
        if not run.is_main or not getattr(run.config, "record_samples", True):
            return
        if self.record is None:
            indices = run.data.train_indices
            self.record = SampleRecord.empty(indices, run.data.source_indices[indices], weighted=_weighs(run))
        losses, predictions = training_set_losses(run)
        weights = None
        if self.record.weight_sum is not None:
            step = min((epoch + 1) * len(run.train_loader), run.total_steps) - 1
            weights = mentor_opinion(run, losses, step)
        self.record.add_epoch(losses, weights, predictions, best_validation=run.state.best_epoch == epoch + 1)

    def state_dict(self) -> dict:
        return {} if self.record is None else self.record.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.record = SampleRecord.from_state_dict(state) if state else None


# ------------------------------------------------------------------------------------------ a run


@dataclass(frozen=True)
class LabelIssues:
    """The ranking of a run's noisy training samples (:func:`find_label_issues`).

    ``ranking`` has the columns ``sample_id, given_label, predicted_label, score`` (most likely wrong first);
    ``is_wrong`` ``[N]`` says, in ranking order, whether each given label differs from the clean one, or is
    None when the run knows no clean labels (none of its labels differ from them); ``score`` names the score,
    ``epochs`` how many epochs the record covers, ``weighted`` whether MentorNet weights were available.
    """

    ranking: pd.DataFrame
    is_wrong: np.ndarray | None
    score: str
    epochs: int
    weighted: bool

    def precision_recall(self, k: int) -> tuple[float, float]:
        """Precision and recall of the top ``k`` (``ValueError`` when the run knows no clean labels)."""
        if self.is_wrong is None:
            raise ValueError("the run knows no clean labels, so precision and recall cannot be measured")
        return precision_recall_at(self.is_wrong, k)

    @property
    def auc(self) -> float:
        """ROC AUC of the ranking as a detector of wrong labels (NaN when the truth is unknown)."""
        return float("nan") if self.is_wrong is None else ranking_auc(self.ranking["score"], self.is_wrong)


def read_sample_record(run_dir: str | os.PathLike) -> SampleRecord:
    """The per-sample record of the finished run in ``run_dir``, from its ``last.pt``.

    Raises ``ValueError`` when the folder has no ``config.json`` or ``last.pt``, the run has not finished
    its epochs, or it was trained without the record (``--no-record-samples``, or by a toolkit from before the record).
    """
    return _record_of(Path(run_dir), _finished_state(Path(run_dir)))


def _finished_state(run_dir: Path) -> dict:
    """``last.pt`` of the finished run in ``run_dir`` (errors as :func:`read_sample_record`)."""
    _, payload = read_config(run_dir)
    if not (run_dir / "last.pt").is_file():
        raise ValueError(f"{run_dir} holds no finished checkpoint: last.pt does not exist")
    try:
        state = read_last(run_dir)
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 - the safe unpickler fails in many ways on junk input
        raise ValueError(f"{run_dir / 'last.pt'} is not a readable checkpoint ({type(error).__name__})") from None
    epochs = (payload.get("resolved") or {}).get("epochs")
    if isinstance(epochs, int) and state["epoch"] < epochs:
        raise ValueError(f"the run in {run_dir} has not finished: it stopped after epoch {state['epoch']} of "
                         f"{epochs}; continue it with train-student --out {run_dir} --resume")
    return state


def _record_of(run_dir: Path, state: dict) -> SampleRecord:
    saved = (state.get("callbacks") or {}).get(RECORD_NAME)
    if not saved:
        raise ValueError(f"the run in {run_dir} has no per-sample record (it was trained with --no-record-samples, "
                         "or by a toolkit without the record); train it again to rank its labels")
    return SampleRecord.from_state_dict(saved)


def find_label_issues(run_dir: str | os.PathLike, *, score: str = DEFAULT_SCORE) -> LabelIssues:
    """Rank the noisy training samples of a finished run by how likely their given label is wrong.

    Reads ``last.pt`` (the :class:`SampleRecord`, ``weights_only=True``) and ``noisy_labels.npz`` of
    ``run_dir``; no data set is loaded. ``score`` is one of :data:`SCORES` (default :data:`DEFAULT_SCORE`);
    a run that recorded no MentorNet weights (no MentorNet, or a MentorMix run from before they were recorded) has
    only the loss scores. Raises ``ValueError`` as :func:`read_sample_record` does, for a ``noisy_labels.npz`` that
    is not the one the run trained on (``last.pt`` records its sha256), and for a weight score on such a run.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of: {', '.join(SCORES)}")
    run_dir = Path(run_dir)
    if run_dir.is_dir():
        recover_replaced_run(run_dir)  # an earlier run that a killed --force run set aside: back in place
    state = _finished_state(run_dir)
    record = _record_of(run_dir, state)
    # the labels the run trained on: a noisy_labels.npz copied from another run would rank against wrong labels
    check_guarded_files(run_dir, state, names=("noisy_labels.npz",), action="rank its labels")
    if score.endswith("_weight") and record.weight_sum is None:
        raise ValueError(f"the run in {run_dir} recorded no MentorNet weights (it trained without a MentorNet, or is "
                         f"a MentorMix run from before they recorded them), so it has no weights for score {score!r}; "
                         "use mean_loss or final_loss")
    noise = load_noisy_labels(run_dir / "noisy_labels.npz")
    positions = record.positions
    given = noise.noisy_labels[positions].numpy()
    losses, weights = record.losses_and_weights(score)
    until = 1 if score == "early_loss" else None  # the record's early loss is already the mean up to that epoch
    ranking = rank_label_issues(losses, weights, given_labels=given, predicted_labels=record.prediction.numpy(),
                                sample_ids=record.sample_ids.numpy(), score=score, until=until)
    wrong = (noise.noisy_labels[positions] != noise.clean_labels[positions]).numpy()
    order = np.argsort(-label_issue_scores(losses, weights, score=score, until=until), kind="stable")
    return LabelIssues(ranking=ranking, is_wrong=wrong[order] if wrong.any() else None, score=score,
                       epochs=record.epochs, weighted=record.weight_sum is not None)


def write_label_issues(issues: LabelIssues, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write the ranking as CSV (``sample_id, given_label, predicted_label, score``; score to 6 decimals)."""
    frame = issues.ranking
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6f"), force=force)


__all__ = ["DEFAULT_SCORE", "ISSUE_COLUMNS", "LabelIssues", "SCORES", "SampleRecord", "SampleRecordCallback",
           "find_label_issues", "label_issue_scores", "mentor_opinion", "parse_top", "precision_recall_at",
           "rank_label_issues", "ranking_auc", "read_sample_record", "training_set_losses", "write_label_issues"]
