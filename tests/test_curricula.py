"""The curriculum registry: oracle tests against numpy versions written from spec §2.1, the contract
over every registered curriculum, invariants, and the registry's strictness."""

import dataclasses

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

import curricula.registry as registry
from curricula import MentorFeatures, check_curriculum, get_curriculum, list_curricula, parse_params, register_curriculum


def _points(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    loss = rng.uniform(0, 29, n)
    loss_diff = rng.uniform(-5, 5, n)
    loss_diff[:50] = 0.0  # the step curricula's boundary
    epoch = rng.integers(0, 100, n)
    epoch[50:60] = [0, 18, 19, 89, 90, 99, 17, 91, 50, 1]
    label = np.zeros(n, dtype=np.int64)
    features = MentorFeatures(torch.tensor(loss, dtype=torch.float64), torch.tensor(loss_diff, dtype=torch.float64),
                              torch.tensor(label), torch.tensor(epoch))
    return features, loss, loss_diff, label, epoch


# Plain numpy versions of spec §2.1, written independently of the library.
def np_baseline(loss, d, y, e):
    return np.ones_like(loss)


def np_self_paced(loss, d, y, e):
    return np.where(d <= 0, 1.0, 0.0)


def np_hard(loss, d, y, e):
    return np.where(y > 0, 1.0, np.where(d >= 0, 1.0, 0.0))


def np_focal(loss, d, y, e, gamma=2.0):
    return (1 - np.exp(-loss)) ** gamma


def np_spcl(loss, d, y, e, gamma=1.0):
    return np.clip(1 - d / gamma, 0, 1)


def np_pd(loss, d, y, e):
    return np.where(e <= 18, 1.0, np.where(e < 90, np_self_paced(loss, d, y, e), np_spcl(loss, d, y, e, 1.0)))


ORACLES = {
    "baseline": (np_baseline, {}),
    "self_paced": (np_self_paced, {}),
    "hard_example_mining": (np_hard, {}),
    "focal_loss": (np_focal, {}),
    "spcl_linear": (np_spcl, {}),
    "mentornet_pd": (np_pd, {}),
}


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_formula_matches_numpy_oracle(name):
    oracle, params = ORACLES[name]
    features, loss, d, y, e = _points()
    got = get_curriculum(name, **params).weight(features).numpy()
    assert_allclose(got, oracle(loss, d, y, e), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 3.0])
def test_focal_and_spcl_use_their_gamma(gamma):
    features, loss, d, y, e = _points(seed=1)
    assert_allclose(get_curriculum("focal_loss", gamma=gamma).weight(features).numpy(),
                    np_focal(loss, d, y, e, gamma), rtol=1e-12)
    assert_allclose(get_curriculum("spcl_linear", gamma=gamma).weight(features).numpy(),
                    np_spcl(loss, d, y, e, gamma), rtol=1e-12)


def test_hard_example_mining_forces_positive_labels_to_one():
    features = MentorFeatures.build([1.0, 1.0], [-2.0, -2.0], epoch=10, label=torch.tensor([0, 1]))
    assert get_curriculum("hard_example_mining").weight(features).tolist() == [0.0, 1.0]


def test_pd_thresholds_and_parts_are_fields():
    pd = get_curriculum("mentornet_pd", first_threshold=10, second_threshold=50, late="focal_loss")
    features = MentorFeatures.build([2.0, 2.0, 2.0], [1.0, 1.0, 1.0], epoch=torch.tensor([10, 11, 50]))
    assert_allclose(pd.weight(features).numpy(), [1.0, 0.0, (1 - np.exp(-2.0)) ** 2], rtol=1e-6)
    names = [f.name for f in dataclasses.fields(pd)]
    assert names == ["first_threshold", "second_threshold", "early", "middle", "late"]


@pytest.mark.parametrize("name", list_curricula())
def test_contract_shape_range_no_nan_deterministic(name):
    curriculum = get_curriculum(name)
    features, *_ = _points(seed=2)
    first = curriculum.weight(features)
    second = curriculum.weight(features)
    assert isinstance(first, torch.Tensor) and first.dtype.is_floating_point
    assert first.shape == features.loss.shape
    assert not torch.isnan(first).any()
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    assert torch.equal(first, second)
    check_curriculum(curriculum)
    float32 = MentorFeatures.build(torch.rand(7), torch.randn(7), epoch=5)
    assert curriculum.weight(float32).dtype == torch.float32


def test_self_paced_never_rises_with_loss_diff():
    d = torch.linspace(-5, 5, 1001)
    for epoch in (0, 50, 99):
        for loss in (0.1, 2.0, 20.0):
            w = get_curriculum("self_paced").weight(MentorFeatures.build(torch.full_like(d, loss), d, epoch=epoch))
            assert bool((w[1:] <= w[:-1]).all())


def test_focal_never_falls_with_loss():
    loss = torch.linspace(0, 29, 2001, dtype=torch.float64)
    for gamma in (0.5, 2.0, 5.0):
        w = get_curriculum("focal_loss", gamma=gamma).weight(MentorFeatures.build(loss, torch.zeros_like(loss), epoch=0))
        assert bool((w[1:] >= w[:-1]).all())


@pytest.mark.parametrize("name, params, message", [
    ("focal_loss", {"gamma": 0.0}, "gamma must be a finite number > 0"),
    ("focal_loss", {"gamma": -1.0}, "gamma must be a finite number > 0"),
    ("spcl_linear", {"gamma": 0.0}, "non-zero"),
    ("mentornet_pd", {"first_threshold": 95}, "must be below"),
    ("mentornet_pd", {"late": "nope"}, "unknown curriculum 'nope'"),
    ("mentornet_pd", {"middle": "mentornet_pd"}, "cannot be mentornet_pd"),
])
def test_invalid_parameters_are_rejected(name, params, message):
    with pytest.raises(ValueError, match=message):
        get_curriculum(name, **params)


def test_unknown_name_and_parameter_list_the_valid_ones():
    with pytest.raises(ValueError, match="choose one of: baseline, focal_loss"):
        get_curriculum("nope")
    with pytest.raises(ValueError, match="valid: gamma"):
        get_curriculum("focal_loss", gama=2.0)


def test_parse_params_converts_by_field_type():
    assert parse_params("focal_loss", ["gamma=3"]) == {"gamma": 3.0}
    assert parse_params("mentornet_pd", ["first_threshold=10", "late=focal_loss"]) == {
        "first_threshold": 10, "late": "focal_loss"}
    with pytest.raises(ValueError, match="expects float"):
        parse_params("focal_loss", ["gamma=abc"])
    with pytest.raises(ValueError, match="key=value"):
        parse_params("focal_loss", ["gamma"])


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_users_register_their_own_curriculum(scratch_registry):
    @register_curriculum("half")
    @dataclasses.dataclass(frozen=True)
    class Half:
        scale: float = 0.5

        def weight(self, features):
            return torch.full_like(features.loss, self.scale)

    assert "half" in list_curricula()
    assert get_curriculum("half", scale=0.25).weight(MentorFeatures.build([1.0], [0.0], epoch=0)).tolist() == [0.25]
    register_curriculum("half")(Half)  # the same definition again (a notebook cell re-run): it replaces itself

    @register_curriculum("half")
    @dataclasses.dataclass(frozen=True)
    class Half:  # noqa: F811 - edited and run again: the new version is the one used
        scale: float = 0.5

        def weight(self, features):
            return torch.full_like(features.loss, 2 * self.scale)

    assert get_curriculum("half", scale=0.25).weight(MentorFeatures.build([1.0], [0.0], epoch=0)).tolist() == [0.5]

    @dataclasses.dataclass(frozen=True)
    class Other:
        def weight(self, features):
            return torch.zeros_like(features.loss)

    with pytest.raises(ValueError, match="already registered"):  # another class under a taken name
        register_curriculum("half")(Other)


def test_registry_refuses_non_dataclasses_and_bad_names(scratch_registry):
    with pytest.raises(TypeError, match="frozen dataclass"):
        register_curriculum("plain")(type("Plain", (), {"weight": lambda self, f: f.loss}))
    with pytest.raises(ValueError, match="lower_snake_case"):
        register_curriculum("Bad Name")


def test_check_curriculum_catches_bad_weights(scratch_registry):
    @dataclasses.dataclass(frozen=True)
    class TooBig:
        def weight(self, features):
            return features.loss

    @dataclasses.dataclass(frozen=True)
    class WrongShape:
        def weight(self, features):
            return torch.zeros(3)

    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        check_curriculum(TooBig())
    with pytest.raises(ValueError, match="shape"):
        check_curriculum(WrongShape())
