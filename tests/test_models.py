"""StudentNets: registry, parameter counts (spec §4.4, §4.5), structure, forward and backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from student_training import create_student, list_students, register_student

CHEAP = ["inception", "mlp", "preact_resnet18", "resnet32", "small_cnn"]
SHAPES = [(3, 32), (1, 28)]


def _count(name: str, num_classes: int, in_channels: int = 3) -> int:
    with torch.device("meta"):  # no memory, no init cost
        model = create_student(name, num_classes=num_classes, in_channels=in_channels)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_registry_lists_every_student():
    assert list_students() == sorted(CHEAP + ["resnet101"])


@pytest.mark.parametrize(
    ("name", "num_classes", "expected"),
    [
        ("resnet101", 10, 84_627_034),  # spec §4.4
        ("resnet101", 100, 84_684_724),
        ("inception", 10, 1_756_426),  # spec §4.5
        ("inception", 100, 1_773_796),
        ("preact_resnet18", 10, 11_171_274),  # DivideMix PreResNet.py
        ("mlp", 10, 3072 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10),
    ],
)
def test_parameter_counts(name, num_classes, expected):
    assert _count(name, num_classes) == expected


def test_resnet101_structure_follows_spec():
    with torch.device("meta"):
        model = create_student("resnet101", num_classes=10, in_channels=3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 55 and all(c.kernel_size == (3, 3) and c.bias is None for c in convs)
    assert all(n.eps == 1e-3 and n.momentum == 0.1 for n in norms)
    assert sum(c.weight.numel() for c in convs) == 84_580_272
    assert sum(2 * n.num_features for n in norms) == 40_352


def test_resnet101_init_is_fan_out_he_and_uniform_fc():
    model = create_student("resnet101", num_classes=10, in_channels=3, seed=0)
    conv = model.units[-1].conv2
    torch.testing.assert_close(conv.weight.std().item(), (2.0 / (9 * 640)) ** 0.5, rtol=0.01, atol=0)
    bound = (3.0 / 640) ** 0.5
    assert model.fc.weight.abs().max() <= bound and model.fc.weight.abs().max() > 0.9 * bound
    assert torch.all(model.fc.bias == 0)


def test_cifarnet_layer_order_pool_lrn_then_lrn_pool():
    model = create_student("inception", num_classes=10, in_channels=3)
    kinds = [type(m).__name__ for m in model.features]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "LocalResponseNorm", "Conv2d", "ReLU", "LocalResponseNorm",
                     "MaxPool2d"]
    lrn = model.features[3]
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (9, 0.001, 0.75, 1.0)
    assert model.classifier[3].p == pytest.approx(0.2)


def test_mlp_has_exactly_two_hidden_layers_of_512():
    model = create_student("mlp", num_classes=10, in_channels=1, image_size=28)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 512), (512, 512), (512, 10)]
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 2


def check_forward_backward(model: nn.Module, batch: int, channels: int, size: int, num_classes: int) -> None:
    model.train()
    inputs = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0))
    logits = model(inputs)
    assert logits.shape == (batch, num_classes) and torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.arange(batch) % num_classes).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("name", CHEAP)
@pytest.mark.parametrize(("channels", "size"), SHAPES)
@pytest.mark.parametrize("batch", [1, 2])
def test_forward_backward(name, channels, size, batch):
    model = create_student(name, num_classes=10, in_channels=channels, image_size=size, seed=0)
    check_forward_backward(model, batch, channels, size, 10)


@pytest.mark.parametrize(("channels", "size", "batch"), [(3, 32, 1), (1, 28, 2)])
def test_resnet101_forward_backward_once_per_shape(channels, size, batch):
    model = create_student("resnet101", num_classes=10, in_channels=channels, image_size=size, seed=0)
    check_forward_backward(model, batch, channels, size, 10)


@pytest.mark.parametrize("name", ["inception", "mlp", "resnet32", "small_cnn"])
def test_bundled_digits_shape(name):
    model = create_student(name, num_classes=10, in_channels=1, image_size=8, seed=0)
    check_forward_backward(model, 2, 1, 8, 10)


def test_seed_makes_init_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    first = create_student("small_cnn", num_classes=10, in_channels=3, seed=3).state_dict()
    again = create_student("small_cnn", num_classes=10, in_channels=3, seed=3).state_dict()
    assert torch.equal(state, torch.random.get_rng_state())
    for key in first:
        torch.testing.assert_close(first[key], again[key])


def test_channels_last_gives_the_same_logits():
    model = create_student("small_cnn", num_classes=10, in_channels=3, seed=0).eval()
    inputs = torch.randn(4, 3, 32, 32)
    expected = model(inputs)
    model = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model(inputs.contiguous(memory_format=torch.channels_last)), expected,
                               rtol=1e-4, atol=1e-5)


def test_eval_mode_is_deterministic():
    model = create_student("inception", num_classes=10, in_channels=3, seed=0).eval()
    inputs = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(inputs), model(inputs))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "vgg16"}, "unknown student 'vgg16'; choose one of: inception, mlp"),
        ({"num_classes": 1}, "num_classes must be an integer >= 2, got 1"),
        ({"in_channels": 0}, "in_channels must be an integer >= 1, got 0"),
        ({"image_size": 2}, "image_size must be an integer >= 4, got 2"),
    ],
)
def test_bad_student_arguments(kwargs, message):
    arguments = {"name": "mlp", "num_classes": 10, "in_channels": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        create_student(arguments.pop("name"), **arguments)


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_student("mlp")(lambda **kwargs: nn.Identity())
    with pytest.raises(ValueError, match="lower_snake_case"):
        register_student("Bad-Name")
