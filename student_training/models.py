"""StudentNet architectures and their registry (spec §4.4, §4.5).

- ``resnet101``: the 2018 "Wide ResNet-101", really a pre-activation wide ResNet with 9 units per stage
  and widths 16→160→320→640 (spec §4.4): leaky ReLU 0.1, ReLU-then-BN in the first unit, average-pool
  plus zero-pad shortcuts, BN ε 1e-3 (TF decay 0.9 = PyTorch momentum 0.1), fan-out He init,
  FC U(±√(3/640)). 84,627,034 parameters for 10 classes.
- ``inception``: the 2018 "Inception", really TF-slim CifarNet (spec §4.5): pool→LRN, then LRN→pool,
  fc 384/192 with dropout 0.2. 1,756,426 parameters for 10 classes.
- ``resnet32``: the MentorMix student (google-research/mentormix ``resnet_model.py``): the same
  network family as ``resnet101`` with a 64-wide stem, widths 64→128→256→512 and 5 units per stage.
- ``preact_resnet18``: the DivideMix/ELR student (DivideMix ``PreResNet.py``).
- ``small_cnn``: a small airbench-style network (conv-pool-BN-GELU blocks) that trains fast on a CPU.
- ``mlp``: two hidden layers of 512 with ReLU on the flattened pixels.

Every factory takes ``num_classes``, ``in_channels`` and ``image_size``; the registry is filled by the
decorators in this module, which ``student_training/__init__.py`` imports.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DECAY_MODES", "TrainingRecipe", "create_student", "list_students", "register_student", "student_recipe"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_RECIPES: dict[str, "TrainingRecipe"] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DECAY_MODES = ("sgd", "scaled", "none")


@dataclass(frozen=True)
class TrainingRecipe:
    """How a student trains unless a run says otherwise (spec §4.4-4.6 for the 2018 students).

    ``lr`` is the peak learning rate of SGD (``--lr`` overrides it); ``lr_schedule`` names a schedule of
    :func:`student_training.trainer.learning_rate`; ``decay_mode``
    is ``sgd`` (plain SGD weight decay on weight matrices), ``scaled`` (the 2018 ResNet's
    ``wd · Σ‖W‖² / 2`` times the mean sample weight) or ``none``; ``pad`` is the random crop's padding
    in pixels (2018: 2 for the ResNets, 8 for CifarNet); ``channels_last`` is the memory format the
    student runs fastest in. ``mixable``: the student's input is a float tensor that mixup may interpolate
    (``--mentormix`` refuses a student with ``mixable=False``, e.g. one that reads token ids).
    """

    lr_schedule: str = "cosine"
    weight_decay: float = 5e-4
    decay_mode: str = "sgd"
    pad: int = 4
    channels_last: bool = True
    mixable: bool = True
    lr: float = 0.1  # last, so that a recipe built positionally before it existed still builds

    def __post_init__(self):
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf:
            raise ValueError(f"a TrainingRecipe's lr must be a finite number > 0, got {self.lr!r}")
        if self.decay_mode not in DECAY_MODES:
            raise ValueError(f"decay mode must be one of {', '.join(DECAY_MODES)}, got {self.decay_mode!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight decay must be >= 0, got {self.weight_decay}")
        if isinstance(self.pad, bool) or not isinstance(self.pad, int) or self.pad < 0:
            raise ValueError(f"pad must be an integer >= 0, got {self.pad!r}")


def register_student(name: str, *, recipe: TrainingRecipe | None = None
                     ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a factory ``f(*, num_classes, in_channels, image_size) -> nn.Module``,
    with the :class:`TrainingRecipe` runs of that student use by default."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"student name must be lower_snake_case, got {name!r}")

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"student {name!r} is already registered")
        _REGISTRY[name] = factory
        _RECIPES[name] = recipe or TrainingRecipe()
        return factory

    return decorator


def list_students() -> list[str]:
    """Registered student names, sorted."""
    return sorted(_REGISTRY)


def check_student(name: str) -> str:
    """``name`` if it is a registered student, else ``ValueError`` listing the valid ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown student {name!r}; choose one of: {', '.join(list_students())}")
    return name


def student_recipe(name: str) -> TrainingRecipe:
    """The default training recipe of student ``name``."""
    return _RECIPES[check_student(name)]


def create_student(
    name: str, *, num_classes: int, in_channels: int = 3, image_size: int = 32, seed: int | None = None
) -> nn.Module:
    """Build student ``name``. With ``seed``, initialisation is reproducible and leaves the global RNG alone."""
    check_student(name)
    for label, value, low in (("num_classes", num_classes, 2), ("in_channels", in_channels, 1),
                              ("image_size", image_size, 4)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    if seed is None:
        return _REGISTRY[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _REGISTRY[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size)


# ------------------------------------------------------------------ TF-style wide pre-activation ResNet


class _TFBatchNorm(nn.BatchNorm2d):
    """BN with TF's ε = 1e-3 and decay 0.9 (PyTorch momentum 0.1)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-3, momentum=0.1)


class _TFResidualUnit(nn.Module):
    """One unit of the 2018 ``resnet_model._residual`` (spec §4.4)."""

    def __init__(self, in_width: int, out_width: int, stride: int, activate_before_residual: bool,
                 leakiness: float) -> None:
        super().__init__()
        self.activate_before_residual = activate_before_residual
        self.stride = stride
        self.leakiness = leakiness
        self.pad = (out_width - in_width) // 2
        self.bn1 = _TFBatchNorm(in_width)
        self.conv1 = nn.Conv2d(in_width, out_width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _TFBatchNorm(out_width)
        self.conv2 = nn.Conv2d(out_width, out_width, 3, stride=1, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate_before_residual:  # ReLU then BN, and the shortcut sees the result (spec §4.4)
            x = self.bn1(F.leaky_relu(x, self.leakiness))
            shortcut = x
        else:
            shortcut = x
            x = F.leaky_relu(self.bn1(x), self.leakiness)
        x = self.conv1(x)
        x = self.conv2(F.leaky_relu(self.bn2(x), self.leakiness))
        return x + self._shortcut(shortcut)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad == 0 and self.stride == 1:
            return x
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride, self.stride)
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))


class TFPreActResNet(nn.Module):
    """The ResNet of the 2018 MentorNet and 2020 MentorMix code: stem, 3 stages, BN-ReLU-pool-FC."""

    def __init__(self, *, num_classes: int, in_channels: int, stem_width: int, widths: tuple[int, int, int],
                 units_per_stage: int, leakiness: float = 0.1) -> None:
        super().__init__()
        self.leakiness = leakiness
        self.stem = nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False)
        units, previous = [], stem_width
        for stage, (width, stride) in enumerate(zip(widths, (1, 2, 2))):
            for index in range(units_per_stage):
                first = index == 0
                units.append(_TFResidualUnit(previous, width, stride if first else 1,
                                             activate_before_residual=first and stage == 0, leakiness=leakiness))
                previous = width
        self.units = nn.Sequential(*units)
        self.final_bn = _TFBatchNorm(previous)
        self.fc = nn.Linear(previous, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # N(0, sqrt(2 / (k·k·out))): fan-out He init
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        bound = math.sqrt(3.0 / self.fc.in_features)  # uniform_unit_scaling_initializer(factor=1)
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.units(self.stem(x))
        x = F.leaky_relu(self.final_bn(x), self.leakiness)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register_student("resnet101", recipe=TrainingRecipe(lr_schedule="piecewise_2018", weight_decay=2e-4,
                                                       decay_mode="scaled", pad=2))
def resnet101(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """The 2018 "resnet101" (spec §4.4): 9 units per stage, widths 16→160→320→640."""
    return TFPreActResNet(num_classes=num_classes, in_channels=in_channels, stem_width=16,
                          widths=(160, 320, 640), units_per_stage=9)


@register_student("resnet32")
def resnet32(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """MentorMix's "ResNet-32": 5 units per stage, 64-wide stem, stage widths 128→256→512, as in its code."""
    return TFPreActResNet(num_classes=num_classes, in_channels=in_channels, stem_width=64,
                          widths=(128, 256, 512), units_per_stage=5)


# ---------------------------------------------------------------------------------------- CifarNet


class CifarNet(nn.Module):
    """TF-slim CifarNet, the 2018 "inception" student (spec §4.5)."""

    def __init__(self, *, num_classes: int, in_channels: int, image_size: int, dropout: float = 0.2) -> None:
        super().__init__()
        flat = 64 * (image_size // 4) ** 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 5, padding=2), nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.LocalResponseNorm(size=9, alpha=0.001, beta=0.75, k=1.0),  # TF: radius 4, α 0.001/9
            nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(),
            nn.LocalResponseNorm(size=9, alpha=0.001, beta=0.75, k=1.0),
            nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 384), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(384, 192), nn.ReLU(),
            nn.Linear(192, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        fcs = [m for m in self.classifier if isinstance(m, nn.Linear)]
        for module, std, bias in [(c, 0.05, 0.0) for c in convs] + [(fcs[0], 0.04, 0.1), (fcs[1], 0.04, 0.1),
                                                                    (fcs[2], 1.0 / 192.0, 0.0)]:
            nn.init.trunc_normal_(module.weight, 0.0, std, -2.0 * std, 2.0 * std)
            nn.init.constant_(module.bias, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_student("inception", recipe=TrainingRecipe(lr_schedule="exponential_2018", weight_decay=0.0,
                                                       decay_mode="none", pad=8))
def inception(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return CifarNet(num_classes=num_classes, in_channels=in_channels, image_size=image_size)


# -------------------------------------------------------------------------------- PreAct ResNet-18


class _PreActBlock(nn.Module):
    def __init__(self, in_width: int, width: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_width)
        self.conv1 = nn.Conv2d(in_width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.shortcut = nn.Identity()
        if stride != 1 or in_width != width:
            self.shortcut = nn.Conv2d(in_width, width, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if not isinstance(self.shortcut, nn.Identity) else x
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class PreActResNet18(nn.Module):
    """DivideMix's PreActResNet18: conv-BN-ReLU stem, 4 stages of 2 pre-activation blocks, pool, linear."""

    def __init__(self, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        blocks, previous = [], 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [_PreActBlock(previous, width, stride), _PreActBlock(width, width, 1)]
            previous = width
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# lr 0.02: DivideMix (Li et al., ICLR 2020, §4) and ELR train this network with SGD at 0.02. At the 2018
# students' 0.1 its cross-entropy baseline diverged on the full Fashion-MNIST at 40% noise on a GPU; 3 epochs
# reached test accuracy 0.170 in fp32 (epoch-1 loss 46) and 0.675 in bf16 at 0.1, 0.899 in bf16 at 0.02
# (docs/gpu_acceptance_h200.md).
@register_student("preact_resnet18", recipe=TrainingRecipe(lr=0.02))
def preact_resnet18(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return PreActResNet18(num_classes=num_classes, in_channels=in_channels)


# ------------------------------------------------------------------------------------- small CNN


def _conv_bn_gelu(in_width: int, out_width: int) -> list[nn.Module]:
    return [nn.Conv2d(in_width, out_width, 3, padding=1, bias=False), nn.BatchNorm2d(out_width), nn.GELU()]


class SmallCNN(nn.Module):
    """airbench-style: a stem conv, then blocks of [pool, conv-BN-GELU], global max pool, scaled linear."""

    def __init__(self, *, num_classes: int, in_channels: int, widths: tuple[int, ...] = (16, 32, 64, 128),
                 logit_scale: float = 1.0 / 8.0) -> None:
        super().__init__()
        layers = _conv_bn_gelu(in_channels, widths[0])
        for previous, width in zip(widths, widths[1:]):
            layers += [nn.MaxPool2d(2, ceil_mode=True)] + _conv_bn_gelu(previous, width)
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(widths[-1], num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(F.adaptive_max_pool2d(self.features(x), 1), 1)
        return self.linear(x) * self.logit_scale


@register_student("small_cnn")
def small_cnn(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return SmallCNN(num_classes=num_classes, in_channels=in_channels)


# ------------------------------------------------------------------------------------------ MLP


@register_student("mlp", recipe=TrainingRecipe(weight_decay=0.0, channels_last=False))
def mlp(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Two hidden layers of 512 with ReLU on the flattened pixels."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * image_size * image_size, 512), nn.ReLU(),
        nn.Linear(512, 512), nn.ReLU(),
        nn.Linear(512, num_classes),
    )
