"""MentorWeighter against batches computed by hand from spec §4.1."""

import dataclasses

import pytest
import torch
from numpy.testing import assert_allclose

from curricula import MentorFeatures, get_curriculum
from mentor_training import load_mentornet
from student_training.weighting import MentorWeighter, WeighterConfig, parse_dropout_schedule


@dataclasses.dataclass(frozen=True)
class Recorder:
    """A 'mentor' that returns a fixed weight and remembers the features it saw."""

    value: float = 0.25
    seen: list = dataclasses.field(default_factory=list)

    def weight(self, features: MentorFeatures):
        self.seen.append(features)
        return torch.full_like(features.loss, self.value)


def test_dropout_schedule_parses_like_2018():
    rates = parse_dropout_schedule("0.5,17,0.05,83")
    assert len(rates) == 100 and rates[16] == 0.5 and rates[17] == 0.05 and rates[99] == 0.05
    assert parse_dropout_schedule("0.0,100") == (0.0,) * 100


@pytest.mark.parametrize("text, message", [
    ("0.5,17,0.05,80", "sum to 97"),
    ("1.5,100", "outside"),
    ("-0.1,100", "outside"),
    ("0.5,17,0.05", "pairs"),
    ("a,100", "numbers"),
    ("0.5,10.5,0.1,89.5", "whole number"),
])
def test_bad_dropout_schedules(text, message):
    with pytest.raises(ValueError, match=message):
        parse_dropout_schedule(text)


def test_hand_computed_batch_with_self_paced_curriculum():
    weighter = MentorWeighter(get_curriculum("self_paced"), WeighterConfig(loss_p_percentile=0.5), total_steps=100)
    loss = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0])
    # p = 0.5 of 5 values: descending index round(4 * 0.5) = 2 -> 2.0; M = 0.5 * 0 + 0.5 * 2.0 = 1.0
    weights = weighter(loss, step=0)
    assert float(weighter.moving_average.value) == 1.0
    assert weights.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]  # loss_diff <= 0 for 0.5 and 1.0
    # Next step: P = 4.0 (p=0.5 of these), M = 0.5 * 1.0 + 0.5 * 4.0 = 2.5
    weights = weighter(torch.tensor([1.0, 2.0, 4.0, 6.0, 9.0]), step=1)
    assert float(weighter.moving_average.value) == 2.5
    assert weights.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_features_fed_to_the_mentor():
    mentor = Recorder()
    weighter = MentorWeighter(mentor, WeighterConfig(loss_p_percentile=0.7, loss_moving_average_decay=0.9),
                              total_steps=1000)
    loss = torch.arange(10, dtype=torch.float32)
    weighter(loss, step=537)
    features = mentor.seen[-1]
    # p = 0.7 of 10: descending index round(9 * 0.3) = 3 -> ascending 6 -> 6.0; M = 0.1 * 6.0
    assert_allclose(features.loss_diff.numpy(), (loss - 0.6).numpy(), rtol=1e-6)
    assert features.epoch.tolist() == [53] * 10 and features.label.tolist() == [0] * 10


def test_burn_in_2018_is_one_epoch_short_and_exact_is_not():
    steps = 100  # one step per progress epoch
    mentor = Recorder(0.25)
    old = MentorWeighter(mentor, WeighterConfig(burn_in_epoch=18), total_steps=steps)
    exact = MentorWeighter(mentor, WeighterConfig(burn_in_epoch=18, burn_in_2018=False), total_steps=steps)
    loss = torch.rand(8)
    assert old(loss, step=16).tolist() == [1.0] * 8
    assert old(loss, step=17).tolist() == [0.25] * 8  # 2018: epochs 0..16 only
    assert exact(loss, step=17).tolist() == [1.0] * 8
    assert exact(loss, step=18).tolist() == [0.25] * 8


def test_fixed_epoch_after_burn_in_freezes_the_epoch_and_dropout_index():
    mentor = Recorder(0.5)
    config = WeighterConfig(burn_in_epoch=18, fixed_epoch_after_burn_in=True, example_dropout_rates="0.5,17,0.05,78,0.9,5")
    weighter = MentorWeighter(mentor, config, total_steps=100)
    weighter(torch.rand(40), step=97)
    assert mentor.seen[-1].epoch.tolist() == [18] * 40
    assert weighter.last["epoch"] == 18 and weighter.last["dropout_rate"] == 0.05  # the 0.9 segment is unreachable


def test_example_dropout_keeps_a_fixed_size_uniform_subset():
    weighter = MentorWeighter(Recorder(0.75), WeighterConfig(example_dropout_rates="0.5,17,0.05,83"), total_steps=100,
                              seed=3)
    weights = weighter(torch.rand(128), step=0)
    assert int((weights > 0).sum()) == 64 and set(weights.unique().tolist()) == {0.0, 0.75}
    weights = weighter(torch.rand(128), step=50)
    assert int((weights > 0).sum()) == 121  # int(128 * 0.95)
    kept = [weighter(torch.rand(128), step=1) > 0 for _ in range(200)]
    frequency = torch.stack(kept).float().mean(0)
    assert float(frequency.min()) > 0.3 and float(frequency.max()) < 0.7  # uniform, independent of v


def test_full_dropout_zeroes_everything():
    weighter = MentorWeighter(Recorder(1.0), WeighterConfig(example_dropout_rates="1.0,100"), total_steps=10)
    assert float(weighter(torch.rand(16), step=3).sum()) == 0.0


def test_weights_are_detached_and_the_mentornet_is_frozen():
    mentor = load_mentornet("mentornet_pd")
    weighter = MentorWeighter(mentor, WeighterConfig(), total_steps=100)
    loss = (torch.rand(32) * 3).requires_grad_()
    weights = weighter(loss * 1.0, step=95)
    assert not weights.requires_grad
    assert not any(p.requires_grad for p in mentor.parameters())
    assert float(weights.min()) >= 0 and float(weights.max()) <= 1


def test_state_round_trip_continues_identically():
    config = WeighterConfig(example_dropout_rates="0.3,100")
    a = MentorWeighter(Recorder(0.9), config, total_steps=50, seed=1)
    for step in range(5):
        a(torch.rand(20), step)
    b = MentorWeighter(Recorder(0.9), config, total_steps=50, seed=99)
    b.load_state_dict(a.state_dict())
    loss = torch.rand(20)
    assert torch.equal(a(loss, 5), b(loss, 5))
    assert float(a.moving_average.value) == float(b.moving_average.value)


def test_config_falls_back_to_checkpoint_defaults():
    defaults = load_mentornet("mentornet_pd").student_defaults
    config = WeighterConfig.from_defaults(defaults, loss_p_percentile=0.75, burn_in_epoch=None)
    assert config.loss_p_percentile == 0.75 and config.example_dropout_rates == "0.5,17,0.05,83"
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        WeighterConfig(loss_p_percentile=1.2)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        WeighterConfig(loss_p_percentile=0.0)


# The review of the library API (a user's own loop): defaults, bad input, state.

def test_the_mentornets_own_student_defaults_unless_a_config_is_given():
    """Report: MentorWeighter(mentornet_pd) used WeighterConfig() ('0.0,100'), not the '0.5,17,0.05,83' that
    train-student uses with it."""
    mentor = load_mentornet("mentornet_dd")
    assert MentorWeighter(mentor, total_steps=10).config == mentor.student_defaults
    assert MentorWeighter(mentor, total_steps=10).config.burn_in_epoch == 18
    given = WeighterConfig(loss_p_percentile=0.5)
    assert MentorWeighter(mentor, given, total_steps=10).config is given
    assert MentorWeighter(mentor, {"loss_p_percentile": 0.5}, total_steps=10).config == given  # a dict is read
    assert MentorWeighter(Recorder(), total_steps=10).config == WeighterConfig()  # no student_defaults: 2018's
    curriculum = get_curriculum("mentornet_pd")
    assert MentorWeighter(curriculum, total_steps=10).config == curriculum.student_defaults


@pytest.mark.parametrize("loss, step, error, message", [
    ([0.1, 2.0], 0, TypeError, "losses must be a torch.Tensor of shape \\[B\\], got list"),
    (torch.rand(4, 1), 0, ValueError, "losses must be 1-D \\[B\\].*got shape \\(4, 1\\)"),
    (torch.tensor([1, 2]), 0, TypeError, "losses must be floating point, got torch.int64"),
    (torch.rand(4), 3.5, TypeError, "step must be an integer.*3.5"),
    (torch.rand(4), 10, ValueError, "step 10 is outside 0..9 .*not of epochs"),
    (torch.rand(4), -1, ValueError, "step -1 is outside"),
])
def test_bad_losses_or_steps_are_one_line_errors(loss, step, error, message):
    """Report: a [B, 1] loss gave [B] weights, so weights * losses was [B, B]; a list gave an AttributeError."""
    weighter = MentorWeighter(load_mentornet("mentornet_pd"), total_steps=10)
    for call in (weighter, weighter.mentor_weights, weighter.opinion):
        with pytest.raises(error, match=message):
            call(loss, step)


@pytest.mark.parametrize("total_steps, error", [(None, TypeError), (10.5, TypeError), (True, TypeError),
                                                (0, ValueError)])
def test_bad_total_steps(total_steps, error):
    with pytest.raises(error, match="total_steps"):
        MentorWeighter(load_mentornet("mentornet_pd"), total_steps=total_steps)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_batch_with_a_non_finite_percentile_leaves_the_moving_average_alone(bad):
    """Report: one batch of NaN (or inf) losses made every later weight NaN (or the same for every sample)."""
    config = WeighterConfig(loss_p_percentile=0.5, loss_moving_average_decay=0.5, burn_in_epoch=0)
    reference = MentorWeighter(load_mentornet("mentornet_pd"), config, total_steps=100)
    weighter = MentorWeighter(load_mentornet("mentornet_pd"), config, total_steps=100)
    first, later = torch.tensor([0.1, 0.4, 1.0, 2.0]), torch.tensor([0.1, 0.2, 2.0, 0.5])
    reference(first, 0)
    weighter(first, 0)
    weights = weighter(torch.tensor([0.1, bad, bad, bad]), 1)
    assert float(weighter.moving_average.value) == float(reference.moving_average.value)
    assert torch.isfinite(weights[0]) and (bad == bad or torch.isnan(weights[1:]).all())
    expected = reference(later, 2)
    got = weighter(later, 2)
    assert torch.isfinite(got).all() and torch.equal(got, expected)


def test_a_curriculum_is_checked_once_when_the_weighter_is_made(isolated_plugins):
    """Report: a curriculum whose weights were [B, 1] and 2.0 went through the weighter unchecked."""
    from curricula import register_curriculum

    @register_curriculum("review_bad_shape")
    @dataclasses.dataclass(frozen=True)
    class BadShape:
        def weight(self, features):
            return (2 * torch.ones_like(features.loss)).unsqueeze(1)

    with pytest.raises(ValueError, match="curriculum 'review_bad_shape': weight\\(\\) returned shape"):
        MentorWeighter(get_curriculum("review_bad_shape"), total_steps=10)


def test_a_state_saved_under_another_config_is_refused():
    """Report: load_state_dict took a state saved with p 0.7 and decay 0.5 into a weighter configured with p 0.2
    and decay 0.9, which then computed with the saved values while its config said otherwise."""
    mentor = load_mentornet("mentornet_pd")
    saved = MentorWeighter(mentor, WeighterConfig(loss_p_percentile=0.7, loss_moving_average_decay=0.5),
                           total_steps=10)
    saved(torch.rand(8), 0)
    other = MentorWeighter(mentor, WeighterConfig(loss_p_percentile=0.2, loss_moving_average_decay=0.9),
                           total_steps=10)
    with pytest.raises(ValueError, match="another config: loss_p_percentile 0.7 there, 0.2 here, "
                                         "loss_moving_average_decay 0.5 there, 0.9 here"):
        other.load_state_dict(saved.state_dict())
    same = MentorWeighter(mentor, saved.config, total_steps=10)
    same.load_state_dict(saved.state_dict())
    assert float(same.moving_average.value) == float(saved.moving_average.value)
