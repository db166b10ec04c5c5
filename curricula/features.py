"""The one definition of what a MentorNet sees.

Spec references (``../shared/reference/mentornet-2018-spec.md``):

* §1.1: the input is ``[loss, loss_diff, label, epoch]``. ``label`` is 0 in every 2018 code path, and
  ``epoch`` is training progress in percent, truncated to an integer and clipped above at 99.
* §4.1, steps 3 and 7-9: the progress epoch, the batch p-percentile ("nearest", taken on a descending
  sort with half-to-even rounding), and the moving average ``M_t = decay * M_{t-1} + (1 - decay) * P_t``
  that starts at 0 and defines ``loss_diff = loss - M_t``.

Every other module imports these names; nothing else builds feature tensors by hand.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from .options import check_option_types, option, options_from_mapping

FEATURE_NAMES = ("loss", "loss_diff", "label", "epoch")
NUM_EPOCHS = 100  # the epoch feature takes the values 0..99
MAX_EPOCH = NUM_EPOCHS - 1
EPOCH_ENCODING = "progress_percent"  # floor(100 * step / total_steps), clipped above at 99

# The student-side defaults that define loss_diff (spec §4.2): p = 0.7 is what every released run used.
DEFAULT_LOSS_P_PERCENTILE = 0.7
DEFAULT_LOSS_MOVING_AVERAGE_DECAY = 0.5


def host_checks(tensor: torch.Tensor) -> bool:
    """Whether to check a tensor's values. Reading values from a GPU stalls it every step, so value
    checks run on the CPU only; on a GPU an out-of-range index still fails in the embedding lookup."""
    return tensor.device.type == "cpu"


def _as_1d(name: str, value, dtype: torch.dtype) -> torch.Tensor:
    tensor = torch.as_tensor(value)
    if tensor.dim() == 0:
        tensor = tensor.reshape(1)
    if tensor.dim() != 1:
        raise ValueError(f"MentorFeatures.{name} must be 1-D, got shape {tuple(tensor.shape)}")
    if dtype.is_floating_point:
        if not (tensor.dtype.is_floating_point or tensor.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"MentorFeatures.{name} must be numeric, got {tensor.dtype}")
        return tensor if tensor.dtype.is_floating_point else tensor.to(dtype)
    if tensor.dtype.is_floating_point:
        raise TypeError(f"MentorFeatures.{name} must be an integer tensor, got {tensor.dtype}")
    return tensor.to(dtype)


@dataclass(frozen=True)
class MentorFeatures:
    """The four MentorNet inputs for a batch of samples, as 1-D tensors of equal length.

    ``loss`` and ``loss_diff`` are float tensors; ``label`` and ``epoch`` are int64 tensors. The epoch
    is the encoded training progress (see :func:`encode_epoch`).
    """

    loss: torch.Tensor
    loss_diff: torch.Tensor
    label: torch.Tensor
    epoch: torch.Tensor

    def __post_init__(self):
        loss = _as_1d("loss", self.loss, torch.float32)
        loss_diff = _as_1d("loss_diff", self.loss_diff, loss.dtype)
        label = _as_1d("label", self.label, torch.int64)
        epoch = _as_1d("epoch", self.epoch, torch.int64)
        lengths = {len(loss), len(loss_diff), len(label), len(epoch)}
        if len(lengths) != 1:
            raise ValueError(
                "MentorFeatures tensors must have equal length, got "
                f"loss={len(loss)}, loss_diff={len(loss_diff)}, label={len(label)}, epoch={len(epoch)}"
            )
        if host_checks(epoch) and len(epoch) and int(epoch.min()) < 0:
            raise ValueError(f"MentorFeatures.epoch must be >= 0, got {int(epoch.min())}")
        object.__setattr__(self, "loss", loss)
        object.__setattr__(self, "loss_diff", loss_diff.to(loss.dtype))
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "epoch", epoch)

    def __len__(self) -> int:
        return len(self.loss)

    @classmethod
    def build(cls, loss, loss_diff, *, epoch, label=0) -> "MentorFeatures":
        """Features for a batch of B samples (spec §4.1): ``loss`` and ``loss_diff`` in nats (anything
        ``torch.as_tensor`` reads; flattened to ``[B]``), ``epoch`` the progress epoch 0..99 (percent of
        training done, the 2018 "epoch"; larger values are clipped to 99 by :func:`encode_epoch` where a
        MentorNet reads them) and ``label``, each a whole-number scalar shared by every sample or a ``[B]``
        tensor. The 2018 code and every fit of this toolkit use label 0: row 1 of a MentorNet's label
        embedding is never trained, so label 1 reads its random initial values.

        Raises ``ValueError`` for a fractional scalar epoch or label, a negative epoch or unequal lengths, and
        ``TypeError`` for non-numeric losses or a float tensor of epochs or labels (the checks of the class)."""
        loss = torch.as_tensor(loss).reshape(-1)

        def per_sample(value):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"MentorFeatures epoch and label must be whole numbers, got {value!r}")
            if isinstance(value, (int, float)):  # a fill, not a host-to-device copy
                return torch.full((len(loss),), value, dtype=torch.long, device=loss.device)
            value = torch.as_tensor(value, device=loss.device)
            return value.expand(len(loss)) if value.dim() == 0 else value

        return cls(loss, torch.as_tensor(loss_diff).reshape(-1), per_sample(label), per_sample(epoch))

    @classmethod
    def from_matrix(cls, matrix) -> "MentorFeatures":
        """Inverse of :meth:`as_matrix`: columns in :data:`FEATURE_NAMES` order (the 2018 row layout)."""
        matrix = torch.as_tensor(matrix)
        if matrix.dim() != 2 or matrix.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"a feature matrix must have shape [N, 4], got {tuple(matrix.shape)}")
        return cls(
            loss=matrix[:, 0],
            loss_diff=matrix[:, 1],
            label=matrix[:, 2].long(),
            epoch=encode_epoch(matrix[:, 3]),
        )

    def as_matrix(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A ``[N, 4]`` float tensor in :data:`FEATURE_NAMES` order."""
        return torch.stack([self.loss.to(dtype), self.loss_diff.to(dtype),
                            self.label.to(dtype), self.epoch.to(dtype)], dim=1)

    def to(self, device) -> "MentorFeatures":
        if all(t.device == torch.device(device) for t in (self.loss, self.loss_diff, self.label, self.epoch)):
            return self
        return MentorFeatures(self.loss.to(device), self.loss_diff.to(device),
                              self.label.to(device), self.epoch.to(device))

    def select(self, index) -> "MentorFeatures":
        return MentorFeatures(self.loss[index], self.loss_diff[index], self.label[index], self.epoch[index])


def encode_epoch(epoch) -> torch.Tensor:
    """The MentorNet epoch input: truncate to an integer and clip above at 99 (spec §1.1).

    Like the 2018 code there is no lower clip, so a negative value is an error here rather than a
    silent out-of-range lookup.
    """
    epoch = torch.as_tensor(epoch)
    if epoch.dtype.is_floating_point:
        if host_checks(epoch) and not bool(torch.isfinite(epoch).all()):
            raise ValueError("epoch values must be finite")
        epoch = torch.trunc(epoch)
    epoch = epoch.long()
    if host_checks(epoch) and epoch.numel() and int(epoch.min()) < 0:
        raise ValueError(f"epoch must be >= 0, got {int(epoch.min())}")
    return epoch.clamp(max=MAX_EPOCH)


def progress_percent(step: int, total_steps: int) -> int:
    """Training progress as the 2018 "epoch": ``floor(100 * step / total_steps)``, clipped at 99 (§4.1 step 3)."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return min((100 * step) // total_steps, MAX_EPOCH)


PERCENTILE_SCALE = "a fraction in (0, 1]"  # every percentile of this toolkit: 0.7 is the 70th percentile


def check_percentile(p: float, *, name: str = "loss percentile p") -> float:
    """``p`` as a float if it is a percentile on the toolkit's one scale, a fraction in (0, 1].

    A value that looks like a percent (1 < p <= 100) is refused with the fraction it probably meant.
    """
    p = float(p)
    if 1.0 < p <= 100.0:
        raise ValueError(f"{name} must lie in (0, 1], got {p:g}: percentiles are fractions throughout this toolkit "
                         f"(0.7 is the 70th percentile); did you mean {p / 100:g}?")
    if not (0.0 < p <= 1.0) or math.isnan(p):
        raise ValueError(f"{name} must lie in (0, 1], got {p:g}")
    return p


def percentile_index(batch_size: int, p: float) -> int:
    """Ascending index of the batch p-percentile under TF's "nearest" rule (spec §4.1 step 7).

    TF sorts descending and takes ``round((B - 1) * (1 - q / 100))`` with half-to-even rounding, with
    ``q = 100 * p`` computed in float32 and the rest in float64. For B = 128 this gives 89 for p = 0.7
    and 63 (not numpy's 64) for p = 0.5.
    """
    check_percentile(p)
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    q = float(np.float32(p) * np.float32(100.0))
    descending = round((batch_size - 1) * (1.0 - q / 100.0))  # Python's round is half-to-even
    return batch_size - 1 - int(descending)


# The index depends on (B, p) only; a training run asks for the same one every step.
_cached_percentile_index = functools.lru_cache(maxsize=64)(percentile_index)


def batch_loss_percentile(loss: torch.Tensor, p: float) -> torch.Tensor:
    """The batch p-percentile of the (unweighted) per-sample losses, as a 0-d tensor (one ``kthvalue``;
    no host synchronisation on a GPU)."""
    if loss.dim() != 1:
        loss = loss.reshape(-1)
    if loss.requires_grad:
        loss = loss.detach()
    k = _cached_percentile_index(loss.numel(), p)
    # kthvalue is 1-based and avoids a full sort.
    return torch.kthvalue(loss, k + 1).values


class LossMovingAverage:
    """The moving average of batch loss percentiles that defines ``loss_diff`` (spec §4.1 steps 7-9).

    It starts at 0, as in 2018 (the variable was never restored, so early ``loss_diff`` values are
    biased upward), and the *updated* value is used in the same step.

    ``value`` is the average as a 0-d tensor. A caller that keeps it on the host (``MentorWeighter`` on the
    CPU) writes it as a Python float with :meth:`set_host_value`; ``value`` then makes the float32 tensor when
    it is read, so a step that never reads it creates none.
    """

    def __init__(self, p: float = DEFAULT_LOSS_P_PERCENTILE,
                 decay: float = DEFAULT_LOSS_MOVING_AVERAGE_DECAY, value: float = 0.0):
        self.p = check_percentile(p)
        decay = float(decay)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"loss moving-average decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self._host = None  # the average as a Python float, when set_host_value wrote it last
        self.value = torch.tensor(float(value))

    @property
    def value(self) -> torch.Tensor:
        """The average, a 0-d tensor (float32 on the CPU when :meth:`set_host_value` wrote it last)."""
        if self._value is None:
            self._value = torch.scalar_tensor(self._host, dtype=torch.float32)
        return self._value

    @value.setter
    def value(self, value: torch.Tensor) -> None:
        self._value, self._host = value, None

    @property
    def host_value(self) -> float | None:
        """The Python float that :meth:`set_host_value` wrote, or None once ``value`` was set since."""
        return self._host

    def set_host_value(self, value: float) -> None:
        """Set the average to ``value``, a Python float equal to a float32 (no tensor is made until ``value`` is
        read)."""
        self._host, self._value = value, None

    def update(self, loss: torch.Tensor, p: float | None = None) -> torch.Tensor:
        """Fold in this batch's percentile and return the new average (a 0-d tensor)."""
        percentile = batch_loss_percentile(loss, self.p if p is None else p)
        self.value = self.decay * self.value.to(percentile) + (1.0 - self.decay) * percentile
        return self.value

    def loss_diff(self, loss: torch.Tensor, p: float | None = None) -> torch.Tensor:
        """Update with this batch and return ``loss - M_t`` per sample."""
        return loss.detach() - self.update(loss, p)

    def state_dict(self) -> dict:
        value = self._host if self._value is None else float(self._value)  # the tensor, if made, as it is now
        return {"p": self.p, "decay": self.decay, "value": value}

    def load_state_dict(self, state: dict) -> None:
        self.p = check_percentile(state["p"])
        self.decay = float(state["decay"])
        self.value = torch.tensor(float(state["value"]))


def feature_spec(*, loss_p_percentile: float | None = DEFAULT_LOSS_P_PERCENTILE,
                 loss_moving_average_decay: float | None = DEFAULT_LOSS_MOVING_AVERAGE_DECAY,
                 loss_diff_reference: str = "moving_average_of_batch_percentile") -> dict:
    """The feature description stored in every MentorNet checkpoint.

    ``names`` and ``epoch_encoding`` must match exactly for a checkpoint to load. The percentile and
    decay say how the ``loss_diff`` the MentorNet was fitted on was defined; for a data-driven
    MentorNet that is a fixed percentile of the whole dump (spec §2.3).
    """
    return {
        "names": list(FEATURE_NAMES),
        "epoch_encoding": EPOCH_ENCODING,
        "num_epochs": NUM_EPOCHS,
        "loss_diff_reference": loss_diff_reference,
        "loss_p_percentile": loss_p_percentile,
        "loss_moving_average_decay": loss_moving_average_decay,
    }


def check_feature_spec(spec) -> None:
    """Raise ``ValueError`` if a stored feature spec is not the one this toolkit computes."""
    if not isinstance(spec, dict):
        raise ValueError(f"feature_spec must be a dict, got {type(spec).__name__}")
    expected = feature_spec()
    for key in ("names", "epoch_encoding", "num_epochs"):
        if spec.get(key) != expected[key]:
            raise ValueError(
                f"feature spec mismatch: {key} is {spec.get(key)!r}, this toolkit uses {expected[key]!r}"
            )


# ------------------------------------------------------------------------- the student-side settings


def parse_dropout_schedule(text: str) -> tuple[float, ...]:
    """``"rate,epochs,rate,epochs,..."`` to one rate per progress epoch 0..99 (``utils.parse_dropout_rate_list``).

    Each rate must lie in [0, 1] and the epochs must be whole numbers summing to 100.
    """
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts or len(parts) % 2:
        raise ValueError(f"example dropout schedule {text!r} must be pairs of rate,epochs")
    rates: list[float] = []
    for rate_text, epochs_text in zip(parts[0::2], parts[1::2]):
        try:
            rate, epochs = float(rate_text), float(epochs_text)
        except ValueError:
            raise ValueError(f"example dropout schedule {text!r} must hold numbers") from None
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"example dropout rate {rate_text} in {text!r} is outside [0, 1]")
        if epochs < 0 or not epochs.is_integer():
            raise ValueError(f"example dropout epochs {epochs_text} in {text!r} must be a whole number >= 0")
        rates += [rate] * int(epochs)
    if len(rates) != NUM_EPOCHS:
        raise ValueError(f"example dropout epochs in {text!r} sum to {len(rates)}, they must sum to 100")
    return tuple(rates)


@dataclass(frozen=True)
class WeighterConfig:
    """The StudentNet-side settings of the 2018 weighting (spec §4.2), with their 2018 defaults.

    The percentile and decay define the ``loss_diff`` a MentorNet sees; burn-in, the fixed epoch and
    example dropout shape how its weights are used. Every MentorNet checkpoint carries one of these as
    its ``student_defaults`` (the values the 2018 commands used with it), and each field is also a
    ``train-student`` option that overrides it.
    """

    loss_p_percentile: float = option(
        DEFAULT_LOSS_P_PERCENTILE, metavar="P",
        help="Percentile p of the batch losses whose moving average defines loss_diff, a fraction in (0, 1] "
             "(0.7 is the 70th percentile; 2018: --loss_p_percentile, which every released run used at 0.7).")
    loss_moving_average_decay: float = option(
        DEFAULT_LOSS_MOVING_AVERAGE_DECAY, metavar="DECAY",
        help="Decay in [0, 1) of the loss-percentile moving average (2018: --loss_moving_average_decay, 0.5).")
    burn_in_epoch: int = option(
        0, metavar="E",
        help="Weights are 1 for the first E epochs of training progress, 0..100 (2018: --burn_in_epoch).")
    fixed_epoch_after_burn_in: bool = option(
        False, help="Feed the MentorNet the burn-in epoch once past it (2018: --fixed_epoch_after_burn_in; "
                    "set for MentorNet DD).")
    example_dropout_rates: str = option(
        "0.0,100", metavar="RATE,EPOCHS,...",
        help="Piecewise probability of zeroing a sample's weight over the 100 progress epochs "
             "(2018: --example_dropout_rates, e.g. 0.5,17,0.05,83).")
    burn_in_2018: bool = option(
        True, flags="--burn-in-2018/--burn-in-exact",
        help="2018: the burn-in ends one epoch early (epochs 0..16 for 18); exact: epochs 0..17.")

    def __post_init__(self):
        check_option_types(self)
        check_percentile(self.loss_p_percentile)
        if not 0.0 <= self.loss_moving_average_decay < 1.0:
            raise ValueError(f"loss moving-average decay must lie in [0, 1), got {self.loss_moving_average_decay}")
        if not 0 <= self.burn_in_epoch <= 100:
            raise ValueError(f"burn-in epoch must be an integer in 0..100, got {self.burn_in_epoch!r}")
        parse_dropout_schedule(self.example_dropout_rates)

    @classmethod
    def from_dict(cls, values: dict, *, origin: str = "weighter settings") -> "WeighterConfig":
        """From a plain dict such as a checkpoint's ``student_defaults``; unknown keys are an error."""
        return cls(**options_from_mapping(cls, values, origin=origin))

    def with_overrides(self, overrides: dict | None) -> "WeighterConfig":
        """A copy with the non-None entries of ``overrides`` (e.g. the options a user gave) applied."""
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        return replace(self, **options_from_mapping(WeighterConfig, given, origin="weighter options"))

    @classmethod
    def coerce(cls, value: "WeighterConfig | dict", *, origin: str = "weighter settings") -> "WeighterConfig":
        """``value`` itself, or the config a dict (a checkpoint's ``student_defaults``) describes."""
        return value if isinstance(value, cls) else cls.from_dict(value, origin=origin)

    @classmethod
    def from_defaults(cls, defaults: "WeighterConfig | dict", **overrides) -> "WeighterConfig":
        """Start from a MentorNet's ``student_defaults``; ``None`` overrides keep the default."""
        return cls.coerce(defaults).with_overrides(overrides)

    def to_dict(self) -> dict:
        return asdict(self)


# The weighting every curriculum gets unless it declares its own ``student_defaults``.
DEFAULT_WEIGHTER = WeighterConfig()
