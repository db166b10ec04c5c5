"""MentorMix against plain-numpy references written from reference/mentormix-2020-spec.md §2 (S1-S8)."""

from __future__ import annotations

import copy
import dataclasses
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.testing import assert_allclose
from scipy import stats
from torch import nn

from curricula import MentorFeatures
from mentor_training import load_mentornet
from student_training.mentormix import (MentorMix, MixedBatch, draw_mixup_noise, frozen_bn_statistics,
                                        mentor_mix_up, soft_target_cross_entropy)
from student_training.weighting import WeighterConfig


@dataclasses.dataclass(frozen=True)
class FixedWeights:
    """A 'mentor' that returns the given per-sample weights (or one value for all) and records its inputs."""

    values: object = 0.25
    seen: list = dataclasses.field(default_factory=list)

    def weight(self, features: MentorFeatures) -> torch.Tensor:
        self.seen.append(features)
        if np.ndim(self.values) == 0:
            return torch.full_like(features.loss, float(self.values))
        return torch.tensor(self.values, dtype=torch.float32)


def make(mentor=None, *, num_classes=3, alpha=2.0, second_reweight=False, total_steps=100, seed=0, **config):
    return MentorMix(mentor if mentor is not None else FixedWeights(), WeighterConfig(**config),
                     num_classes=num_classes, alpha=alpha, second_reweight=second_reweight,
                     total_steps=total_steps, seed=seed)


def batch_of(size: int, num_classes: int = 3, seed: int = 0, shape=(2, 2)):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(size, *shape, generator=g)
    labels = torch.randint(0, num_classes, (size,), generator=g)
    losses = torch.rand(size, generator=g) * 3
    return inputs, labels, losses


# ------------------------------------------------------------------ numpy references from the spec


def reference_partners(v, u):
    """S4 by inversion: P(j = k) = exp(v_k) / Σ exp(v)."""
    cdf = np.cumsum(np.exp(v) / np.exp(v).sum())
    return np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), len(v) - 1)


def reference_mixing(v, lam):
    """S5: fold, then the example dominates iff v ≥ 0.5."""
    folded = np.maximum(lam, 1 - lam)
    return np.where(v >= 0.5, folded, 1 - folded)


def reference_mix(values, partners, m):
    """S6."""
    m = m.reshape(-1, *[1] * (values.ndim - 1))
    return m * values + (1 - m) * values[partners]


def reference_cross_entropy(logits, labels):
    logits = logits.astype(np.float64)
    log_z = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    return log_z - logits[np.arange(len(labels)), labels]


def reference_percentile(losses, p):
    """TF 'nearest': descending sort, index round((B − 1)(1 − p)) half-to-even (spec S3a)."""
    return np.sort(losses)[::-1][int(np.round((len(losses) - 1) * (1 - p)))]


def one_hot(labels, num_classes):
    return np.eye(num_classes)[labels]


# ------------------------------------------------------------------ S4: partner sampling


def test_partners_follow_softmax_of_the_weights_73_percent_from_the_clean_half():
    mix = make(FixedWeights([1.0] * 64 + [0.0] * 64), num_classes=2)
    inputs, labels = torch.zeros(128, 1), torch.zeros(128, dtype=torch.long)
    shares, metric = [], []
    for step in range(100):
        batch = mix.mix(inputs, labels, torch.rand(128), step)
        shares.append(float((batch.partners < 64).float().mean()))
        metric.append(float(mix.metrics["partner_high_weight_share"]))
    expected = math.e / (1 + math.e)  # 0.731 (spec S4), not 1.0 (∝ v) nor 0.5 (uniform)
    assert abs(np.mean(shares) - expected) < 0.015  # 4 standard errors over 12,800 draws
    assert_allclose(metric, shares)


def test_partner_frequencies_match_softmax_per_index():
    v = [0.0, 0.1, 0.3, 0.5, 0.5, 0.7, 0.9, 1.0]
    mix = make(FixedWeights(v))
    inputs, labels, losses = batch_of(8)
    counts = np.zeros(8)
    for draw in range(1000):  # many draws at the run's last step (its 100 steps end there)
        counts += np.bincount(mix.mix(inputs, labels, losses, min(draw, 99)).partners.numpy(), minlength=8)
    softmax = np.exp(v) / np.exp(v).sum()
    assert stats.chisquare(counts, counts.sum() * softmax).pvalue > 1e-3
    proportional = np.array(v[1:]) / sum(v)  # what a "∝ v" port would give (index 0 never drawn)
    assert counts[0] > 0
    assert stats.chisquare(counts[1:], counts[1:].sum() * proportional).pvalue < 1e-6


@pytest.mark.parametrize("value", [0.0, 0.3, 1.0])
def test_all_equal_weights_give_uniform_partners_and_no_nan(value):
    mix = make(FixedWeights(value))
    inputs, labels, losses = batch_of(8)
    counts, self_pairs = np.zeros(8), 0
    for draw in range(500):  # many draws at the run's last step (its 100 steps end there)
        batch = mix.mix(inputs, labels, losses, min(draw, 99))
        counts += np.bincount(batch.partners.numpy(), minlength=8)
        self_pairs += int((batch.partners == torch.arange(8)).sum())
        assert all(bool(torch.isfinite(t).all()) for t in (batch.inputs, batch.targets, batch.mixing))
    assert stats.chisquare(counts).pvalue > 1e-3
    assert abs(self_pairs / 4000 - 1 / 8) < 0.02  # with replacement, j_i = i allowed (spec S4)
    if value < 0.5:  # every partner dominates
        assert float(batch.mixing.max()) <= 0.5 and float(mix.metrics["partner_high_weight_share"]) == 0.0
    else:
        assert float(batch.mixing.min()) >= 0.5 and float(mix.metrics["partner_high_weight_share"]) == 1.0


# ------------------------------------------------------------------ S5: λ, folding and the direction rule


@pytest.mark.parametrize("alpha, median", [(2.0, 0.67), (4.0, 0.62), (8.0, 0.58)])
def test_lambda_is_beta_and_folds_to_the_spec_quantiles(alpha, median):
    lam, uniforms = draw_mixup_noise(40_000, alpha, torch.Generator().manual_seed(1))
    lam = lam.double().numpy()
    assert (lam < 0.5).mean() > 0.4  # drawn unfolded: the folding is S5's job
    assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    folded = np.maximum(lam, 1 - lam)
    assert abs(np.median(folded) - median) < 0.01  # spec S5's table
    assert stats.kstest(folded, lambda x: 2 * stats.beta.cdf(x, alpha, alpha) - 1).pvalue > 1e-3
    assert stats.kstest(uniforms.double().numpy(), "uniform").pvalue > 1e-3


def test_reference_batch_mixes_images_and_noisy_labels_like_the_spec():
    v = [1.0, 0.5, 0.49, 0.0, 0.8, 0.2, 0.5, 1.0, 0.0, 0.3, 0.6, 0.1]  # ties at exactly 0.5
    mix = make(FixedWeights(v), num_classes=4, alpha=1.0, seed=7)
    inputs, labels, losses = batch_of(12, num_classes=4, shape=(3, 2, 2))
    state = mix.generator.get_state()
    batch = mix.mix(inputs, labels, losses, step=5)
    generator = torch.Generator()
    generator.set_state(state)
    lam, uniforms = (t.double().numpy() for t in draw_mixup_noise(12, 1.0, generator))
    assert (lam < 0.5).any() and (lam > 0.5).any()  # the folding is exercised

    v = np.array(v)
    partners = reference_partners(v, uniforms)
    m = reference_mixing(v, lam)
    assert batch.partners.tolist() == partners.tolist()
    assert_allclose(batch.mixing.numpy(), m, rtol=1e-6)
    assert_allclose(batch.weights.numpy(), v)
    assert_allclose(batch.inputs.numpy(), reference_mix(inputs.double().numpy(), partners, m), rtol=1e-5, atol=1e-6)
    targets = reference_mix(one_hot(labels.numpy(), 4), partners, m)
    assert_allclose(batch.targets.numpy(), targets, rtol=1e-6, atol=1e-7)
    assert_allclose(batch.targets.sum(1).numpy(), 1.0, rtol=1e-6)
    ties = v == 0.5
    assert (batch.mixing.numpy()[ties] >= 0.5).all()  # a tie keeps the example dominant
    assert (batch.mixing.numpy()[v < 0.5] <= 0.5).all() and (batch.mixing.numpy()[v > 0.5] >= 0.5).all()
    assert_allclose(float(mix.metrics["mixing_mean"]), m.mean(), rtol=1e-6)
    assert_allclose(float(mix.metrics["partner_high_weight_share"]), (v[partners] >= 0.5).mean())


def test_burn_in_makes_every_weight_one_and_every_example_dominant():
    mix = make(FixedWeights(0.1), burn_in_epoch=10)  # total 100 steps: one progress epoch per step
    inputs, labels, losses = batch_of(32)
    late_burn_in = mix.mix(inputs, labels, losses, step=8)  # the 2018 off-by-one: e ≤ 8 only
    assert late_burn_in.weights.tolist() == [1.0] * 32 and float(late_burn_in.mixing.min()) >= 0.5
    after = mix.mix(inputs, labels, losses, step=9)
    assert_allclose(after.weights.numpy(), 0.1) and float(after.mixing.max()) <= 0.5


# ------------------------------------------------------------------ S7-S8: the loss


def test_soft_target_loss_is_the_mixture_of_two_cross_entropies():
    mix = make(FixedWeights([0.9, 0.1, 0.5, 0.0, 1.0, 0.7]), num_classes=5, alpha=0.5)
    inputs, labels, losses = batch_of(6, num_classes=5)
    batch = mix.mix(inputs, labels, losses, step=0)
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(2))
    m = batch.mixing
    expected = (m * F.cross_entropy(logits, labels, reduction="none")
                + (1 - m) * F.cross_entropy(logits, labels[batch.partners], reduction="none"))
    assert_allclose(soft_target_cross_entropy(logits, batch.targets).numpy(), expected.numpy(), rtol=1e-5)
    assert_allclose(float(mix.loss(logits, batch)), float(expected.mean()), rtol=1e-5)  # S8a: plain mean


def test_second_reweight_normalises_by_the_batch_size_not_the_weight_sum():
    v = [0.9, 0.1, 0.5, 0.0, 1.0, 0.2]
    inputs, labels, losses = batch_of(6)
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(3))
    off, on = make(FixedWeights(v), seed=4), make(FixedWeights(v), seed=4, second_reweight=True)
    batch_off, batch_on = off.mix(inputs, labels, losses, 3), on.mix(inputs, labels, losses, 3)
    assert torch.equal(batch_off.inputs, batch_on.inputs)  # the first weighting and the draws agree
    mixed = soft_target_cross_entropy(logits, batch_on.targets).numpy()
    loss_on = float(on.loss(logits, batch_on))
    assert_allclose(loss_on, (np.array(v) * mixed).sum() / 6, rtol=1e-6)  # S8b: (1/B) Σ v2 ℓ̃
    assert abs(loss_on - (np.array(v) * mixed).sum() / sum(v)) > 1e-3
    assert_allclose(float(off.loss(logits, batch_off)), mixed.mean(), rtol=1e-6)  # S8a
    assert_allclose(float(on.metrics["second_weight_mean"]), np.mean(v), rtol=1e-6)
    assert math.isnan(float(off.metrics["second_weight_mean"]))


def test_all_zero_second_weights_give_a_zero_loss_and_no_gradient():
    mix = make(FixedWeights(0.0), second_reweight=True)
    inputs, labels, losses = batch_of(8)
    batch = mix.mix(inputs, labels, losses, 0)
    logits = torch.randn(8, 3, requires_grad=True)
    loss = mix.loss(logits, batch)
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(logits.grad.abs().sum()) == 0.0  # no guard, as in the code


def test_the_two_moving_averages_are_independent_and_updated_before_use():
    mentor = FixedWeights(0.7)
    mix = make(mentor, second_reweight=True, loss_p_percentile=0.6, total_steps=50)
    first_average = second_average = 0.0
    g = torch.Generator().manual_seed(11)
    for step in range(4):
        inputs, labels, losses = batch_of(16, seed=step)
        batch = mix.mix(inputs, labels, losses, step)
        logits = torch.randn(16, 3, generator=g) * 2
        mix.loss(logits, batch)
        mixed = soft_target_cross_entropy(logits, batch.targets).numpy()
        first_average = 0.5 * first_average + 0.5 * reference_percentile(losses.numpy(), 0.6)
        second_average = 0.5 * second_average + 0.5 * reference_percentile(mixed, 0.6)
        first_seen, second_seen = mentor.seen[-2], mentor.seen[-1]
        assert_allclose(first_seen.loss_diff.numpy(), losses.numpy() - first_average, rtol=1e-5, atol=1e-6)
        assert_allclose(second_seen.loss.numpy(), mixed, rtol=1e-5)  # v2 is computed on ℓ̃
        assert_allclose(second_seen.loss_diff.numpy(), mixed - second_average, rtol=1e-5, atol=1e-6)
        assert first_seen.epoch.tolist() == second_seen.epoch.tolist() == [2 * step] * 16
    assert_allclose(float(mix.first_weighter.moving_average.value), first_average, rtol=1e-6)
    assert_allclose(float(mix.second_weighter.moving_average.value), second_average, rtol=1e-6)
    assert abs(first_average - second_average) > 1e-3


# ------------------------------------------------------------------ plain mixup on the same path


def test_plain_mixup_is_textbook_mixup_with_folded_lambda():
    mix = MentorMix.plain_mixup(num_classes=4, alpha=2.0, total_steps=10, seed=3)
    inputs, labels, losses = batch_of(16, num_classes=4)
    state = mix.generator.get_state()
    batch = mix.mix(inputs, labels, losses, step=2)
    generator = torch.Generator()
    generator.set_state(state)
    lam, uniforms = (t.double().numpy() for t in draw_mixup_noise(16, 2.0, generator))
    partners = np.floor(uniforms * 16).astype(int)  # uniform with replacement
    lam = np.maximum(lam, 1 - lam)
    x, y = inputs.double().numpy(), labels.numpy()
    assert batch.weights.tolist() == [1.0] * 16
    assert batch.partners.tolist() == partners.tolist()
    assert_allclose(batch.mixing.numpy(), lam, rtol=1e-6)
    assert_allclose(batch.inputs.numpy(), lam[:, None, None] * x + (1 - lam[:, None, None]) * x[partners],
                    rtol=1e-5, atol=1e-6)
    logits = torch.randn(16, 4, generator=torch.Generator().manual_seed(5))
    expected = (lam * reference_cross_entropy(logits.numpy(), y)
                + (1 - lam) * reference_cross_entropy(logits.numpy(), y[partners])).mean()
    assert_allclose(float(mix.loss(logits, batch)), expected, rtol=1e-5)


# ------------------------------------------------------------------ randomness, determinism, resume


def test_the_same_seed_gives_the_same_batches_and_another_seed_does_not():
    inputs, labels, losses = batch_of(64)
    a, b, c = make(seed=5), make(seed=5), make(seed=6)
    for step in range(3):
        batch_a, batch_b = a.mix(inputs, labels, losses, step), b.mix(inputs, labels, losses, step)
        assert torch.equal(batch_a.partners, batch_b.partners) and torch.equal(batch_a.inputs, batch_b.inputs)
    assert not torch.equal(c.mix(inputs, labels, losses, 3).partners, a.mix(inputs, labels, losses, 3).partners)


def test_the_three_random_streams_are_seeded_apart():
    mix = make(second_reweight=True, seed=0)
    states = [mix.generator.get_state(), mix.first_weighter.generator.get_state(),
              mix.second_weighter.generator.get_state()]
    assert not any(torch.equal(states[i], states[k]) for i, k in ((0, 1), (0, 2), (1, 2)))  # no shared dropout mask
    again = make(second_reweight=True, seed=0)
    assert torch.equal(again.second_weighter.generator.get_state(), states[2])


def _steps(mix, start, count, weight_matrix):
    out = []
    for step in range(start, start + count):
        inputs, labels, losses = batch_of(20, seed=step)
        batch = mix.mix(inputs, labels, losses, step)
        loss = mix.loss(batch.inputs.flatten(1) @ weight_matrix, batch)
        out.append((batch, loss))
    return out


def test_state_dict_round_trip_resumes_to_identical_numbers():
    kwargs = dict(second_reweight=True, example_dropout_rates="0.2,100", total_steps=40)
    mentor = load_mentornet("mentornet_pd")
    weight_matrix = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    a = make(mentor, seed=1, **kwargs)
    _steps(a, 0, 3, weight_matrix)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # plain types and tensors only
    b, fresh = make(mentor, seed=99, **kwargs), make(mentor, seed=99, **kwargs)
    _steps(fresh, 0, 3, weight_matrix)
    b.load_state_dict(state)
    for (batch_a, loss_a), (batch_b, loss_b), (batch_c, _) in zip(_steps(a, 3, 3, weight_matrix),
                                                                  _steps(b, 3, 3, weight_matrix),
                                                                  _steps(fresh, 3, 3, weight_matrix)):
        for field in ("inputs", "targets", "partners", "mixing", "weights", "mentor_weights"):
            assert torch.equal(getattr(batch_a, field), getattr(batch_b, field)), field
        assert torch.equal(loss_a, loss_b)
        assert not torch.equal(batch_a.partners, batch_c.partners)  # without the state they differ
    assert (a.first_weighter.moving_average.value == b.first_weighter.moving_average.value).item()
    assert (a.second_weighter.moving_average.value == b.second_weighter.moving_average.value).item()


def test_loading_a_state_with_other_settings_is_refused():
    state = make(alpha=2.0).state_dict()
    with pytest.raises(ValueError, match="alpha=2.0"):
        make(alpha=4.0).load_state_dict(state)
    with pytest.raises(ValueError, match="second_reweight=False"):
        make(second_reweight=True).load_state_dict(state)


# ------------------------------------------------------------------ S1: the clean pass


def small_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(16, 8), nn.BatchNorm1d(8, momentum=None), nn.Linear(8, 3))
    model(torch.randn(6, 3, 4, 4))  # non-trivial running statistics
    return model


def buffers(model):
    return {name: buffer.clone() for name, buffer in model.named_buffers()}


def test_clean_pass_uses_batch_statistics_but_keeps_the_running_ones():
    model, mix = small_model(), make()
    x = torch.randn(6, 3, 4, 4) * 3 + 1
    before = buffers(model)
    reference = copy.deepcopy(model)
    with mix.clean_pass(model):
        out = model(x)
    assert set(before) >= {"1.running_mean", "1.running_var", "1.num_batches_tracked", "5.running_mean"}
    for name, value in buffers(model).items():
        assert torch.equal(value, before[name]), name
    assert_allclose(out.numpy(), reference(x).detach().numpy(), rtol=1e-6)  # train mode: batch statistics
    assert not np.allclose(out.numpy(), reference.eval()(x).detach().numpy(), atol=1e-3)
    assert not out.requires_grad


def test_naive_switch_updates_the_statistics_twice_as_ports_do():
    model = small_model()
    mix = MentorMix(FixedWeights(), num_classes=3, alpha=2.0, second_reweight=False, total_steps=10,
                    clean_pass_updates_bn=True)
    x = torch.randn(6, 3, 4, 4)
    reference = copy.deepcopy(model)
    reference(x)
    with mix.clean_pass(model):
        model(x)
    assert torch.equal(model[1].running_mean, reference[1].running_mean)
    assert int(model[1].num_batches_tracked) == 2


def test_frozen_bn_statistics_restores_after_an_exception():
    model = small_model()
    before = buffers(model)
    with pytest.raises(RuntimeError, match="boom"), frozen_bn_statistics(model):
        model(torch.randn(6, 3, 4, 4))
        raise RuntimeError("boom")
    assert all(torch.equal(value, before[name]) for name, value in buffers(model).items())


def test_clean_pass_needs_train_mode():
    with pytest.raises(ValueError, match="eval mode"), make().clean_pass(small_model().eval()):
        pass
    with pytest.raises(TypeError, match="Module"), make().clean_pass(lambda x: x):
        pass


def test_no_gradient_flows_from_the_clean_pass_or_the_mixing():
    model, mix = small_model(), make(FixedWeights([0.9, 0.2, 0.6, 0.1, 0.5, 1.0]))
    x = torch.randn(6, 3, 4, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    with mix.clean_pass(model):
        clean_losses = F.cross_entropy(model(x), y, reduction="none")
    assert not clean_losses.requires_grad
    grad_losses = F.cross_entropy(model(x), y, reduction="none")  # a caller who forgot the context
    batch = mix.mix(x, y, grad_losses, 0)
    for field in ("inputs", "targets", "mixing", "weights", "mentor_weights"):
        assert not getattr(batch, field).requires_grad, field
    assert all(p.grad is None for p in model.parameters())
    mix.loss(model(batch.inputs), batch).backward()
    assert x.grad is None and all(p.grad is not None for p in model.parameters())


# ------------------------------------------------------------------ α ≤ 0, metrics, a real MentorNet


def test_mentor_mix_up_with_alpha_at_most_zero_returns_the_batch_unmixed():
    x, targets = torch.randn(5, 2), torch.eye(5)[:, :3]
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    mixed_x, mixed_targets, partners, mixing = mentor_mix_up(x, targets, torch.rand(5), alpha=0.0,
                                                             generator=generator)
    assert torch.equal(mixed_x, x) and torch.equal(mixed_targets, targets)
    assert partners.tolist() == list(range(5)) and mixing.tolist() == [1.0] * 5
    assert torch.equal(generator.get_state(), state)  # nothing drawn
    mixed_x, *_ = mentor_mix_up(x, targets, torch.rand(5), alpha=1.0, generator=generator)
    assert not torch.equal(mixed_x, x)


def test_metrics_are_zero_dimensional_tensors():
    mix = make(second_reweight=True)
    batch = mix.mix(*batch_of(8), 0)
    mix.loss(torch.randn(8, 3), batch)
    assert set(mix.metrics) == {"mixing_mean", "partner_high_weight_share", "second_weight_mean"}
    assert all(isinstance(t, torch.Tensor) and t.dim() == 0 for t in mix.metrics.values())
    assert_allclose(float(mix.metrics["second_weight_mean"]), 0.25)


def test_a_real_mentornet_trains_a_small_student():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    mix = MentorMix(load_mentornet("mentornet_pd"), WeighterConfig(burn_in_epoch=10), num_classes=3, alpha=8.0,
                    second_reweight=True, total_steps=20, seed=0)
    start = copy.deepcopy(model.state_dict())
    for step in range(0, 20, 4):
        x, y = torch.randn(16, 3, 4, 4), torch.randint(0, 3, (16,))
        with mix.clean_pass(model):
            losses = F.cross_entropy(model(x), y, reduction="none")
        batch = mix.mix(x, y, losses, step)
        loss = mix.loss(model(batch.inputs), batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        assert math.isfinite(float(loss.detach()))
        assert 0.0 <= float(batch.weights.min()) and float(batch.weights.max()) <= 1.0
    assert not torch.equal(model[0].weight, start["0.weight"])
    assert int(model[1].num_batches_tracked) == int(start["1.num_batches_tracked"]) + 5  # mixed passes only


# ------------------------------------------------------------------ bad input


BAD_MIX_CALLS = [
    ("integer inputs", dict(inputs=torch.zeros(4, 2, dtype=torch.uint8)), TypeError, "uint8"),
    ("numpy inputs", dict(inputs=np.zeros((4, 2), dtype=np.float32)), TypeError, "ndarray"),
    ("float labels", dict(labels=torch.zeros(4)), TypeError, "float32"),
    ("2-D labels", dict(labels=torch.zeros(4, 1, dtype=torch.long)), ValueError, r"\(4, 1\)"),
    ("short labels", dict(labels=torch.zeros(3, dtype=torch.long)), ValueError, r"\(3,\)"),
    ("label too large", dict(labels=torch.tensor([0, 1, 3, 2])), ValueError, "label 3"),
    ("negative label", dict(labels=torch.tensor([0, -1, 1, 2])), ValueError, "label -1"),
    ("short losses", dict(losses=torch.zeros(3)), ValueError, "3 samples"),
    ("2-D losses", dict(losses=torch.zeros(4, 2)), ValueError, r"\(4, 2\)"),
    ("integer losses", dict(losses=torch.zeros(4, dtype=torch.long)), TypeError, "int64"),
    ("negative step", dict(step=-1), ValueError, "-1"),
]


@pytest.mark.parametrize("name, change, error, message", BAD_MIX_CALLS, ids=[c[0] for c in BAD_MIX_CALLS])
def test_bad_mix_arguments_name_the_value(name, change, error, message):
    arguments = dict(inputs=torch.zeros(4, 2), labels=torch.tensor([0, 1, 2, 0]), losses=torch.rand(4), step=0)
    arguments.update(change)
    with pytest.raises(error, match=message):
        make().mix(**arguments)


BAD_SETTINGS = [
    ("alpha zero", dict(alpha=0.0), ValueError, "alpha > 0, got 0.0"),
    ("alpha negative", dict(alpha=-1), ValueError, "got -1"),
    ("alpha nan", dict(alpha=float("nan")), ValueError, "nan"),
    ("alpha inf", dict(alpha=float("inf")), ValueError, "inf"),
    ("alpha text", dict(alpha="8"), TypeError, "'8'"),
    ("alpha bool", dict(alpha=True), TypeError, "True"),
    ("one class", dict(num_classes=1), ValueError, "num_classes.*1"),
    ("flag text", dict(second_reweight="yes"), TypeError, "second_reweight.*'yes'"),
    ("negative seed", dict(seed=-2), ValueError, "seed.*-2"),
    ("no steps", dict(total_steps=0), ValueError, "total_steps.*0"),
    ("not a mentor", dict(mentor=object()), TypeError, "weight"),
]


@pytest.mark.parametrize("name, change, error, message", BAD_SETTINGS, ids=[c[0] for c in BAD_SETTINGS])
def test_bad_settings_name_the_value(name, change, error, message):
    arguments = dict(mentor=FixedWeights(), num_classes=3, alpha=2.0, second_reweight=False, total_steps=10)
    arguments.update(change)
    with pytest.raises(error, match=message):
        MentorMix(arguments.pop("mentor"), **arguments)


def test_bad_loss_and_function_arguments_name_the_value():
    mix = make()
    batch = mix.mix(*batch_of(4), 0)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 2\)"):
        mix.loss(torch.zeros(4, 2), batch)
    with pytest.raises(TypeError, match="tuple"):
        mix.loss(torch.zeros(4, 3), tuple(dataclasses.astuple(batch)))
    with pytest.raises(TypeError, match="generator"):
        draw_mixup_noise(4, 1.0, None)
    with pytest.raises(ValueError, match="alpha > 0, got -0.5"):
        draw_mixup_noise(4, -0.5, torch.Generator())
    with pytest.raises(ValueError, match=r"targets must be \[B, C\].*\(4,\)"):
        mentor_mix_up(torch.zeros(4, 2), torch.zeros(4), torch.ones(4), alpha=1.0, generator=torch.Generator())
    assert isinstance(batch, MixedBatch)


# The GPU check that lived here (a step under torch.cuda.set_sync_debug_mode("error")) is in
# benchmarks/gpu_acceptance.py; its CPU side (no host read in a step, on the meta device) is in tests/test_gpu_paths.py.
