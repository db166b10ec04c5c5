"""The curriculum zoo: each formula against a numpy oracle written from its paper, parameters, invariants."""

import math
import re

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from curricula import MentorFeatures, check_curriculum, get_curriculum, list_curricula
from curricula.features import WeighterConfig
from curricula.zoo import ZOO


def _points(n=6000, seed=0):
    """The grid's domain (λ = ℓ − Δ may be ≤ 0 there), plus edges: ℓ = 0, Δ = 0, λ = 0 exactly."""
    rng = np.random.default_rng(seed)
    loss = rng.uniform(0, 29, n)
    loss_diff = rng.uniform(-5, 5, n)
    loss[:40] = 0.0
    loss_diff[40:80] = 0.0
    loss_diff[80:120] = loss[80:120]  # λ = 0
    loss[120:160] = rng.uniform(0, 3, 40)  # small losses, where the soft self-paced rules are graded
    loss_diff[120:160] = -rng.uniform(0, 5, 40)
    epoch = rng.integers(0, 100, n)
    epoch[:12] = [0, 1, 5, 9, 10, 11, 50, 99, 0, 2, 10, 3]
    features = MentorFeatures(torch.tensor(loss), torch.tensor(loss_diff), torch.zeros(n, dtype=torch.long),
                              torch.tensor(epoch))
    return features, loss, loss_diff, epoch


# Plain numpy versions written from each paper's rule, per sample, independently of curricula/zoo.py.
def np_spl_linear(loss, d, e, age=1.0):
    out = np.zeros_like(loss)
    for i, (l, lam) in enumerate(zip(loss, age * (loss - d))):
        out[i] = max(0.0, 1.0 - l / lam) if lam > 0 else 0.0
    return out


def np_spl_logarithmic(loss, d, e, age=1.0, lam=0.5):
    out = np.zeros_like(loss)
    zeta = 1.0 - lam
    for i, (l, threshold) in enumerate(zip(loss, age * (loss - d))):
        if threshold > 0 and l < threshold:
            scaled = lam * l / threshold  # the loss in units where the age is lam
            out[i] = math.log(scaled + zeta) / math.log(zeta)
    return out


def np_spl_mixture(loss, d, e, age=1.0, ratio=0.5):
    out = np.zeros_like(loss)
    for i, (l, lam) in enumerate(zip(loss, age * (loss - d))):
        if lam <= 0 or l >= lam:
            continue
        lam_inner = ratio * lam
        zeta = lam * lam_inner / (lam - lam_inner)
        out[i] = 1.0 if l <= lam_inner else zeta / l - zeta / lam
    return out


def np_huber(loss, d, e, scale=1.0):
    x = np.maximum(d, 0.0)
    return np.array([1.0 if math.sqrt(v) <= scale else scale / math.sqrt(v) for v in x])


def np_cauchy(loss, d, e, scale=1.0):
    return 1.0 / (1.0 + np.maximum(d, 0.0) / scale ** 2)


def np_l1_l2(loss, d, e, scale=1.0):
    return 1.0 / np.sqrt(1.0 + np.maximum(d, 0.0) / scale ** 2)


def np_welsch(loss, d, e, scale=1.0):
    return np.exp(-np.maximum(d, 0.0) / scale ** 2)


def np_small_loss(loss, d, e, forget_rate=0.5, ramp_epochs=10, p=0.7):
    out = np.zeros_like(loss)
    for i, (l, m, epoch) in enumerate(zip(loss, loss - d, e)):
        tau = forget_rate * min(epoch / ramp_epochs, 1.0)
        if tau == 0:
            out[i] = 1.0
        else:  # keep the smallest (1 - tau) fraction: the (1 - tau)-quantile of an exponential tail
            out[i] = 1.0 if l <= m * math.log(tau) / math.log(1 - p) else 0.0
    return out


ORACLES = {
    "spl_linear": (np_spl_linear, [{}, {"age": 0.5}, {"age": 2.0}]),
    "spl_logarithmic": (np_spl_logarithmic, [{}, {"lam": 0.1}, {"lam": 0.9, "age": 1.5}]),
    "spl_mixture": (np_spl_mixture, [{}, {"ratio": 0.2}, {"ratio": 0.8, "age": 0.7}]),
    "implicit_huber": (np_huber, [{}, {"scale": 0.5}, {"scale": 2.0}]),
    "implicit_cauchy": (np_cauchy, [{}, {"scale": 0.5}, {"scale": 2.0}]),
    "implicit_l1_l2": (np_l1_l2, [{}, {"scale": 0.5}, {"scale": 2.0}]),
    "implicit_welsch": (np_welsch, [{}, {"scale": 0.5}, {"scale": 2.0}]),
    "small_loss": (np_small_loss, [{}, {"forget_rate": 0.2}, {"forget_rate": 0.8, "ramp_epochs": 40}]),
}
CASES = [(name, params) for name, (_, variants) in ORACLES.items() for params in variants]


def test_at_least_six_new_curricula_are_registered_with_oracles():
    assert len(ZOO) >= 6 and set(ZOO) == set(ORACLES)
    assert set(ZOO) <= set(list_curricula())


@pytest.mark.parametrize("name, params", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_formula_matches_numpy_oracle(name, params):
    oracle, _ = ORACLES[name]
    features, loss, d, e = _points()
    got = get_curriculum(name, **params).weight(features).numpy()
    assert_allclose(got, oracle(loss, d, e, **params), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ZOO)
def test_docstring_cites_a_paper_and_states_the_formula(name):
    doc = type(get_curriculum(name)).__doc__
    assert re.search(r"(19|20)\d\d", doc) and ("v*" in doc or "σ(x)" in doc)


@pytest.mark.parametrize("name", ZOO)
def test_contract_on_the_whole_grid_domain(name):
    curriculum = get_curriculum(name)
    check_curriculum(curriculum)
    features, *_ = _points(seed=3)
    weights = curriculum.weight(features)
    assert weights.dtype == torch.float64 and weights.shape == features.loss.shape
    assert bool(torch.isfinite(weights).all()) and 0 <= float(weights.min()) <= float(weights.max()) <= 1
    assert curriculum.weight(MentorFeatures.build(torch.rand(5) * 29, torch.rand(5) * 10 - 5,
                                                  epoch=50)).dtype == torch.float32
    assert isinstance(type(curriculum).student_defaults, WeighterConfig)


@pytest.mark.parametrize("name", ["spl_linear", "spl_logarithmic", "spl_mixture"])
def test_soft_self_paced_weights_fall_with_loss_at_a_fixed_threshold(name):
    loss = torch.linspace(0, 6, 601, dtype=torch.float64)
    threshold = 4.0  # λ: the sample's loss_diff is ℓ − λ
    w = get_curriculum(name).weight(MentorFeatures.build(loss, loss - threshold, epoch=50))
    assert bool((w[1:] <= w[:-1]).all())
    assert float(w[0]) == 1.0 and float(w[-1]) == 0.0


@pytest.mark.parametrize("name", ["implicit_huber", "implicit_cauchy", "implicit_l1_l2", "implicit_welsch"])
def test_implicit_weights_are_one_below_the_percentile_and_fall_above(name):
    d = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    w = get_curriculum(name).weight(MentorFeatures.build(torch.full_like(d, 3.0), d, epoch=10))
    assert bool((w[d <= 0] == 1).all()) and bool((w[1:] <= w[:-1]).all()) and float(w[-1]) < 1


def test_small_loss_forgets_more_as_training_progresses():
    curriculum = get_curriculum("small_loss", forget_rate=0.5, ramp_epochs=10)
    rng = np.random.default_rng(0)
    loss = torch.tensor(rng.exponential(1.0, 20000))
    percentile = float(np.quantile(loss.numpy(), 0.7))
    kept = [float(curriculum.weight(MentorFeatures.build(loss, loss - percentile, epoch=e)).mean())
            for e in (0, 2, 5, 10, 60)]
    assert kept[0] == 1.0 and kept == sorted(kept, reverse=True)
    assert abs(kept[3] - 0.5) < 0.02 and kept[3] == kept[4]  # the exponential tail assumption holds here


@pytest.mark.parametrize("name, params, message", [
    ("spl_linear", {"age": 0.0}, "age must be a finite number > 0, got 0.0"),
    ("spl_linear", {"age": float("nan")}, "age must be a finite number > 0"),
    ("spl_logarithmic", {"lam": 1.0}, "lam must lie strictly between 0 and 1, got 1.0"),
    ("spl_logarithmic", {"age": -1.0}, "age must be"),
    ("spl_mixture", {"ratio": 0.0}, "ratio must lie strictly between 0 and 1"),
    ("implicit_huber", {"scale": 0.0}, "implicit_huber scale must be a finite number > 0"),
    ("implicit_cauchy", {"scale": -2.0}, "implicit_cauchy scale"),
    ("implicit_l1_l2", {"scale": float("inf")}, "implicit_l1_l2 scale"),
    ("implicit_welsch", {"scale": "big"}, "implicit_welsch scale"),
    ("small_loss", {"forget_rate": 1.0}, "forget_rate must lie strictly between 0 and 1"),
    ("small_loss", {"ramp_epochs": 0}, "ramp_epochs must be an integer in 1..100, got 0"),
    ("small_loss", {"ramp_epochs": 2.5}, "ramp_epochs"),
])
def test_invalid_parameters_are_rejected_in_one_line(name, params, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        get_curriculum(name, **params)
    assert "\n" not in str(error.value)
