"""The fast per-step weighting and bookkeeping (issue #15, part 3).

1. Equality: :class:`MentorWeighter` (fused MentorNet forward, cached constants) and :class:`EpochStats`
   against a frozen copy, kept below, of the computation they replaced (commit 72bebb2), over many random
   batches: every shipped MentorNet, burn-in (2018 and exact), a fixed epoch after burn-in, example-dropout
   schedules, several percentiles and decays, batch sizes 128, odd ones and 1, a swapped and a reloaded
   mentor, a restored state, and two intra-op threads.
2. No host synchronisation: the step runs on the ``meta`` device, a stand-in for a GPU whose tensors hold
   no values, under :class:`HostSyncGuard`, which fails on every read of a device value (``item``, ``bool``,
   ``float``, ``int``, ``tolist``, ``numpy``, ``cpu``, printing, a data-dependent shape such as ``nonzero``
   or a boolean mask) and records every host-to-device copy: only the example-dropout mask may be copied,
   once a step, without waiting. Separate tests show the guard fails on each such read and on a read added
   to the weighter, and run a whole ``train_one_epoch`` on the CPU under it; on a CUDA machine, an epoch
   also runs under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import curricula.features
import mentor_training.model
from curricula import MentorFeatures, get_curriculum, list_curricula
from mentor_training import MentorNet, MentorNetConfig, list_pretrained, load_mentornet, mkl_threads
from mentor_training.model import MentorNetStep
from student_training import distributed
from student_training.callbacks import Callback
from student_training.epoch_stats import EpochStats, MentorMixStats
from student_training.losses import per_sample_cross_entropy
from student_training.trainer import StudentConfig, prepare_run, student_loss, train_one_epoch
from student_training.weighting import MentorWeighter, WeighterConfig

ATOL = 1e-6  # issue #15: the weights equal today's within 1e-6


# --- the frozen reference: MentorWeighter and _EpochStats as of commit 72bebb2 ----------------------------

def reference_dropout_rates(text: str) -> tuple[float, ...]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    rates = []
    for rate, epochs in zip(parts[0::2], parts[1::2]):
        rates += [float(rate)] * int(float(epochs))
    assert len(rates) == 100
    return tuple(rates)


def reference_percentile_index(batch: int, p: float) -> int:
    q = float(np.float32(p) * np.float32(100.0))
    return batch - 1 - int(round((batch - 1) * (1.0 - q / 100.0)))


def reference_mentornet_weights(mentor: MentorNet, loss, loss_diff, epoch: int) -> torch.Tensor:
    """``mentor.weight(MentorFeatures.build(loss, loss_diff, epoch=epoch))``: logits_from_tensors, label 0."""
    batch = len(loss)
    label = torch.zeros(batch, dtype=torch.long, device=loss.device)
    epochs = torch.full((batch,), epoch, dtype=torch.long, device=loss.device).clamp(max=99)
    dtype = mentor.fc1_weight.dtype
    if not mentor.config.uses_loss_diff:  # fitted without loss_diff (train-student --mentornet learn)
        loss_diff = torch.zeros_like(loss)
    x = torch.stack([loss.to(dtype), loss_diff.to(dtype)], dim=1)
    kernel = torch.cat([mentor.lstm_fw_kernel[:2, :2], mentor.lstm_bw_kernel[:2, :2]], dim=1)
    bias = torch.cat([mentor.lstm_fw_bias[:2], mentor.lstm_bw_bias[:2]])
    gates = torch.addmm(bias, x, kernel)
    cells = torch.sigmoid(gates[:, 0::2]) * torch.tanh(gates[:, 1::2])
    features = torch.cat([mentor.label_embedding[label], mentor.epoch_embedding[epochs], cells], dim=1)
    hidden = torch.tanh(torch.addmm(mentor.fc1_bias, features, mentor.fc1_weight))
    if mentor.config.additive_output_bias:
        logits = (hidden @ mentor.fc2_weight).squeeze(1) + mentor.fc2_beta
    else:
        logits = (hidden @ (mentor.fc2_weight + mentor.fc2_beta)).squeeze(1)
    return torch.sigmoid(logits).to(loss.device, torch.float32)


class ReferenceWeighter:
    """MentorWeighter of commit 72bebb2 (spec §4.1), written out in full."""

    def __init__(self, mentor, config: WeighterConfig, *, total_steps: int, seed: int = 0):
        self.mentor, self.config, self.total_steps = mentor, config, total_steps
        self.rates = reference_dropout_rates(config.example_dropout_rates)
        self.p, self.decay = config.loss_p_percentile, config.loss_moving_average_decay
        self.value = torch.tensor(0.0)
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = None

    def epoch_at(self, step: int) -> int:
        epoch = min((100 * step) // self.total_steps, 99)
        return min(epoch, self.config.burn_in_epoch) if self.config.fixed_epoch_after_burn_in else epoch

    @torch.no_grad()
    def mentor_weights(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        loss = loss.detach().reshape(-1).float()
        epoch = self.epoch = self.epoch_at(step)
        percentile = torch.kthvalue(loss, reference_percentile_index(loss.numel(), self.p) + 1).values
        self.value = self.decay * self.value.to(percentile) + (1.0 - self.decay) * percentile
        loss_diff = loss - self.value
        if isinstance(self.mentor, MentorNet):
            weights = reference_mentornet_weights(self.mentor, loss, loss_diff, epoch)
        else:
            weights = self.mentor.weight(MentorFeatures.build(loss, loss_diff, epoch=epoch)).to(loss.device,
                                                                                                  torch.float32)
        burn_in = self.config.burn_in_epoch
        if epoch < (burn_in - 1 if self.config.burn_in_2018 else burn_in):
            weights = weights.clamp(min=1.0)
        return weights

    def example_dropout(self, weights: torch.Tensor, epoch: int) -> torch.Tensor:
        rate = self.rates[epoch]
        if rate == 0.0:
            return weights
        batch = weights.numel()
        mask = torch.zeros(batch, dtype=weights.dtype)
        mask[torch.randperm(batch, generator=self.generator)[:int(batch * (1.0 - rate))]] = 1.0
        return weights * mask.to(weights.device)

    def __call__(self, loss, step):
        return self.example_dropout(self.mentor_weights(loss, step), self.epoch)


class ReferenceEpochStats:
    """``trainer._EpochStats`` of commit 72bebb2."""

    def __init__(self, num_samples: int, device):
        self.loss, self.weighted_loss, self.weight, self.utilized = (torch.zeros((), device=device) for _ in range(4))
        self.count = 0
        self.sample_weight = torch.full((num_samples,), float("nan"), device=device)
        self.sample_prediction = torch.full((num_samples,), -1, dtype=torch.long, device=device)

    def add(self, losses, weights, mentor_weights, predictions, indices) -> None:
        self.loss += losses.sum()
        self.weighted_loss += (weights * losses).sum()
        self.weight += weights.sum()
        self.utilized += (weights > 1e-3).sum()
        self.count += len(losses)
        self.sample_weight[indices] = mentor_weights
        self.sample_prediction[indices] = predictions


# --- random batches ---------------------------------------------------------------------------------------

BATCHES = (128, 128, 1, 7, 128, 33, 129, 256, 2, 128, 5, 128)


def random_losses(generator: torch.Generator, batch: int) -> torch.Tensor:
    """Cross-entropy-like losses over several scales, with ties, zeros and a few large values."""
    scale = math.exp(float(torch.empty(()).uniform_(math.log(1e-3), math.log(30.0), generator=generator)))
    loss = torch.rand(batch, generator=generator) * scale
    kind = int(torch.randint(0, 4, (), generator=generator))
    if kind == 1:
        loss = torch.round(loss * 4) / 4  # ties at the percentile
    elif kind == 2:
        loss[torch.rand(batch, generator=generator) < 0.2] = 0.0
    elif kind == 3:
        loss = loss + 40.0 * (torch.rand(batch, generator=generator) < 0.1)
    return loss


CONFIGS = {
    "default": WeighterConfig(),
    "p50-decay90-burnin18-dropout": WeighterConfig(loss_p_percentile=0.5, loss_moving_average_decay=0.9,
                                                   burn_in_epoch=18, example_dropout_rates="0.5,17,0.05,83"),
    "p75-exact-burnin-fixed-epoch": WeighterConfig(loss_p_percentile=0.75, burn_in_epoch=18, burn_in_2018=False,
                                                   fixed_epoch_after_burn_in=True,
                                                   example_dropout_rates="0.5,17,0.05,78,0.9,5"),
    "p100-decay0-full-dropout": WeighterConfig(loss_p_percentile=1.0, loss_moving_average_decay=0.0,
                                               example_dropout_rates="0.3,50,1.0,50"),
    "p33-decay99-all-burn-in": WeighterConfig(loss_p_percentile=0.33, loss_moving_average_decay=0.99,
                                              burn_in_epoch=100),
    "p90-fixed-epoch-0": WeighterConfig(loss_p_percentile=0.9, fixed_epoch_after_burn_in=True,
                                        example_dropout_rates="0.1,100"),
}


def assert_same_run(new, reference, steps, *, seed: int = 0, split_calls: bool = False, on_step=None):
    """Drive both weighters over ``steps`` with the same random batches and compare everything they give."""
    generator = torch.Generator().manual_seed(seed)
    for i, step in enumerate(steps):
        if on_step is not None:
            on_step(i, step)
        loss = random_losses(generator, BATCHES[i % len(BATCHES)])
        expected_mentor = reference.mentor_weights(loss, step)
        expected = reference.example_dropout(expected_mentor, reference.epoch)
        if split_calls:  # as train_one_epoch calls it
            mentor_weights = new.mentor_weights(loss.clone().requires_grad_(), step)
            weights = new.example_dropout(mentor_weights, new.last["epoch"])
            torch.testing.assert_close(mentor_weights, expected_mentor, rtol=0, atol=ATOL)
        else:
            weights = new(loss, step)
        assert weights.dtype == torch.float32 and weights.shape == expected.shape and not weights.requires_grad
        torch.testing.assert_close(weights, expected, rtol=0, atol=ATOL, msg=lambda m: f"step {step}: {m}")
        assert torch.equal(weights == 0, expected == 0), f"step {step}: another dropout mask"
        assert new.last["epoch"] == reference.epoch
        torch.testing.assert_close(new.moving_average.value, reference.value, rtol=1e-6, atol=0)
    # Read at the end only: reading it rewinds the permutations drawn ahead, which the run above uses unread.
    assert torch.equal(new.generator.get_state(), reference.generator.get_state())


@pytest.mark.parametrize("name", list_pretrained())
def test_every_shipped_mentornet_matches_the_reference(name):
    mentor = load_mentornet(name)
    configs = dict(CONFIGS, own=WeighterConfig.from_defaults(mentor.student_defaults))
    for index, config in enumerate(configs.values()):
        new = MentorWeighter(mentor, config, total_steps=120, seed=index)
        reference = ReferenceWeighter(mentor, config, total_steps=120, seed=index)
        assert_same_run(new, reference, range(120), seed=index, split_calls=bool(index % 2))
        assert isinstance(new._step, MentorNetStep)  # the fused path was the one tested, loss-only ones too


@pytest.mark.parametrize("name", list_pretrained())
def test_the_fused_forward_of_a_transposed_buffer_matches_mentor_weight(name):
    """The weighter feeds MentorNetStep x = (loss, loss_diff) as the transpose of a reused [2, B] buffer: the same
    bits as a contiguous [B, 2] input, and mentor.weight(MentorFeatures.build(...)) within 1e-6, over random
    batches and epochs."""
    mentor, generator = load_mentornet(name), torch.Generator().manual_seed(11)
    fused = MentorNetStep(mentor)
    for i in range(60):
        loss = random_losses(generator, BATCHES[i % len(BATCHES)])
        loss_diff = loss - float(torch.rand((), generator=generator)) * 5
        epoch = (i * 37) % 100
        buffer = torch.stack([loss, loss_diff])
        weights = fused.weights(buffer.t(), epoch)
        assert torch.equal(weights, fused.weights(torch.stack([loss, loss_diff], dim=1), epoch))
        expected = mentor.weight(MentorFeatures.build(loss, loss_diff, epoch=epoch))
        torch.testing.assert_close(weights, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("full", [39, 100])
@pytest.mark.parametrize("save_each_epoch", [False, True], ids=["", "state_dict-each-epoch"])
def test_example_dropout_draws_ahead_each_permutation_once_after_the_first_epoch(monkeypatch, full, save_each_epoch):
    """Epochs of ``full`` batches of 128 and a last one of 8 (with the trainer's state_dict at each epoch's end, or
    not): the masks and the generator are those of one randperm a step, and from the second epoch on each
    permutation is drawn once (blocks end where the last run of a batch size ended)."""
    mentor = load_mentornet("mentornet_pd")
    config = CONFIGS["p50-decay90-burnin18-dropout"]
    epoch = [128] * full + [8]
    sizes = epoch * 4
    new = MentorWeighter(mentor, config, total_steps=len(sizes), seed=6)
    reference = ReferenceWeighter(mentor, config, total_steps=len(sizes), seed=6)
    draws, randperm = [], torch.randperm  # the sizes of the weighter's draws from its second epoch on
    generator = torch.Generator().manual_seed(6)
    for step, batch in enumerate(sizes):
        loss = torch.rand(batch, generator=generator) * 4
        expected = reference.example_dropout(reference.mentor_weights(loss, step), reference.epoch)
        with monkeypatch.context() as patch:
            if step >= len(epoch):
                patch.setattr(torch, "randperm", lambda *args, **kwargs: draws.append(args[0]) or randperm(*args,
                                                                                                           **kwargs))
            assert torch.equal(new(loss, step), expected), step
            if save_each_epoch and (step + 1) % len(epoch) == 0:
                assert torch.equal(new.state_dict()["generator"], reference.generator.get_state())
    # The first epoch's block of 8 was drawn 64 long and one of it used: that one is drawn again when the block is
    # given up, in the second epoch (or at the first epoch's state_dict).
    assert draws.count(128) == 3 * full and draws.count(8) == 3 + (not save_each_epoch)
    assert torch.equal(new.generator.get_state(), reference.generator.get_state())
    new(torch.rand(128), 0)  # after the generator was read, the next draws start from its state
    reference(torch.rand(128), 0)
    assert torch.equal(new.generator.get_state(), reference.generator.get_state())


def test_a_generator_reseeded_or_shared_is_never_rewound():
    """Reading ``weighter.generator`` rewinds a block used in part only if nothing else drew from the generator
    since: a reseed through a kept reference is kept. An assigned (shared) generator is drawn from one step at a
    time: its state after each step is that of one randperm a step, and other draws from it interleave as in 2018."""
    config = WeighterConfig(example_dropout_rates="0.5,100")
    weighter = MentorWeighter(get_curriculum("baseline"), config, total_steps=100, seed=0)
    kept = weighter.generator
    for step in range(3):
        weighter(torch.rand(8), step)
    kept.manual_seed(123)
    assert torch.equal(weighter.generator.get_state(), torch.Generator().manual_seed(123).get_state())
    expected = torch.zeros(8)
    expected[torch.randperm(8, generator=torch.Generator().manual_seed(123))[:4]] = 1.0
    assert torch.equal(weighter(torch.ones(8), 3), expected)  # the next block starts from the reseeded state

    shared, mirror = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    weighter.generator = shared
    for step in range(5):
        weights = weighter(torch.ones(8), step)
        expected = torch.zeros(8)
        expected[torch.randperm(8, generator=mirror)[:4]] = 1.0
        assert torch.equal(weights, expected) and torch.equal(shared.get_state(), mirror.get_state())
        assert torch.equal(torch.rand(3, generator=shared), torch.rand(3, generator=mirror))  # someone else's draw


def test_a_dropout_step_on_another_accelerator_stream_makes_its_masks_again(monkeypatch):
    """The masks of a block are copied to the accelerator on the stream current then; a step on another stream
    makes them again, on it (the meta device stands in for the accelerator, and two objects for its streams)."""
    streams = ["stream A"]
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda *args, **kwargs: torch.device("meta"))
    monkeypatch.setattr(torch.accelerator, "current_stream", lambda *args: streams[0])
    config = WeighterConfig(example_dropout_rates="0.5,100")
    weighter = MentorWeighter(get_curriculum("baseline"), config, total_steps=100, seed=3)
    weighter._pin = False  # no page-locked memory without a real accelerator
    made, make_masks = [], weighter._make_masks
    weighter._make_masks = lambda drawn, rate, weights: made.append(streams[0]) or make_masks(drawn, rate, weights)
    for step, stream in enumerate(["stream A"] * 3 + ["stream B"] * 3 + ["stream A"]):
        streams[0] = stream
        weights = weighter.example_dropout(torch.ones(8, device="meta"), 0)
        assert weights.device.type == "meta" and weighter._drawn.stream == stream
    assert made == ["stream A", "stream B", "stream A"]  # one block of 64 drawn: made again at each switch
    cpu = weighter.example_dropout(torch.ones(8), 0)  # back on the CPU: no stream
    assert weighter._drawn.stream is None and int(cpu.sum()) == 4


def test_the_moving_average_state_is_its_tensor_once_made():
    """On the CPU the weighter keeps the average as a float; once its tensor is made (read), ``state_dict`` gives
    that tensor's value, as before, even after an in-place edit."""
    weighter = MentorWeighter(get_curriculum("baseline"), WeighterConfig(), total_steps=10)
    weighter(torch.rand(16) * 3, 0)
    average = weighter.moving_average
    assert average.host_value is not None and average.state_dict()["value"] == average.host_value
    assert float(average.value) == average.host_value
    average.value.fill_(2.0)
    assert average.state_dict()["value"] == 2.0


def test_long_run_with_uneven_steps_matches_the_reference():
    mentor = load_mentornet("mentornet_pd")
    config = WeighterConfig.from_defaults(mentor.student_defaults, burn_in_epoch=10)
    steps = np.cumsum(np.random.default_rng(0).integers(0, 40, size=300)).tolist()  # repeats and jumps
    new = MentorWeighter(mentor, config, total_steps=steps[-1] + 1, seed=4)
    reference = ReferenceWeighter(mentor, config, total_steps=steps[-1] + 1, seed=4)
    assert_same_run(new, reference, steps, seed=4)


@pytest.mark.parametrize("name", list_curricula())
def test_hand_written_curricula_match_the_reference(name):
    curriculum = get_curriculum(name)
    config = CONFIGS["p50-decay90-burnin18-dropout"]
    new = MentorWeighter(curriculum, config, total_steps=60, seed=1)
    assert_same_run(new, ReferenceWeighter(curriculum, config, total_steps=60, seed=1), range(60), seed=1)
    assert new._step is None


def test_other_mentornets_match_the_reference():
    """The 2018 layer and the additive output bias, a float64 MentorNet, one with a forward hook and a
    subclass with its own forward (the last three take the general path)."""
    generator = torch.Generator().manual_seed(5)

    class Doubled(MentorNet):
        def forward(self, features):
            return super().forward(features) / 2

    additive = MentorNet(MentorNetConfig(additive_output_bias=True, num_fc_nodes=7, epoch_embedding_size=3))
    hooked, double, doubled = MentorNet(), MentorNet(), Doubled()
    for mentor in (additive, hooked, double, doubled):
        mentor.reset_parameters(generator)
    double.double()
    hooked.register_forward_hook(lambda module, args, out: out * 0.5)
    for mentor, fused in ((additive, True), (hooked, False), (double, False), (doubled, False)):
        config = CONFIGS["p75-exact-burnin-fixed-epoch"]
        new = MentorWeighter(mentor, config, total_steps=80)
        reference = ReferenceWeighter(mentor, config, total_steps=80)
        if mentor is hooked or mentor is doubled:  # the reference must go through the module call too
            reference.mentor = _Contract(mentor)
        assert_same_run(new, reference, range(80))
        assert (new._step is not None) == (mentor is not doubled)
        assert (new._step is not None and new._step._plans != {}) == fused


class _Contract:
    """A curriculum view of a MentorNet: only its ``weight(features)``."""

    def __init__(self, mentor):
        self.weight = mentor.weight


def test_a_swapped_or_changed_mentor_is_noticed():
    """Re-learning replaces ``weighter.mentor``; a resume loads a state into the same object; an optimiser
    edits it in place; ``.double()`` swaps its tensors' data; a parameter may be replaced."""
    first, second, third = (load_mentornet(name) for name in ("mentornet_pd", "mentornet_dd", "self_paced_mentornet"))
    config = CONFIGS["p50-decay90-burnin18-dropout"]
    steps = [i // 2 for i in range(120)]  # two steps per progress epoch: every event below is mid-epoch
    new = MentorWeighter(first, config, total_steps=100, seed=2)
    reference = ReferenceWeighter(first, config, total_steps=100, seed=2)

    def events(i, step):
        if i == 31:
            new.mentor = reference.mentor = second
        if i == 61:
            with torch.no_grad():
                second.load_state_dict(third.state_dict())
        if i == 81:
            with torch.no_grad():
                second.fc1_weight.mul_(0.5)
        if i == 101:
            second.double()
        if i == 102:  # float64: the general path took over at once (to within 1e-6 the float32 one agrees)
            assert new._step.dtype == torch.float64
        if i == 105:
            second.float()
        if i == 110:  # a replaced parameter is taken up when the progress epoch changes (step 110 -> 55)
            second.fc2_beta = torch.nn.Parameter(second.fc2_beta.detach() + 1.0, requires_grad=False)

    assert_same_run(new, reference, steps, seed=2, on_step=events)


def test_a_restored_state_continues_like_the_reference():
    mentor = load_mentornet("mentornet_pd")
    config = WeighterConfig.from_defaults(mentor.student_defaults)
    first = MentorWeighter(mentor, config, total_steps=90, seed=3)
    reference = ReferenceWeighter(mentor, config, total_steps=90, seed=3)
    assert_same_run(first, reference, range(40), seed=3)
    restored = MentorWeighter(mentor, config, total_steps=90, seed=99)
    restored.load_state_dict(first.state_dict())
    assert_same_run(restored, reference, range(40, 90), seed=33)


def awkward_losses(generator: torch.Generator, step: int) -> torch.Tensor:
    """random_losses, with NaN, infinite, negative and float32-overflowing batches now and then."""
    loss = random_losses(generator, BATCHES[step % len(BATCHES)])
    if step % 7 == 1:
        loss[-1] = float("nan")
    elif step % 11 == 2:
        loss[:] = float("inf")
    elif step % 13 == 3:
        loss[: len(loss) // 2 + 1] = float("nan")
    elif step % 17 == 4:
        loss = -loss
    elif step % 19 == 5:
        loss = loss * 3e38  # the update itself overflows
    elif step % 23 == 6:
        loss = loss.clone()
        loss[0] = float("-inf")
    return loss


@pytest.mark.parametrize("mentor_name", ["mentornet_pd", "mentornet_dd", "curriculum"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_the_host_moving_average_of_the_cpu_is_the_device_one_bit_for_bit(mentor_name, config, monkeypatch):
    """On the CPU, step 3 runs on the host (numpy's selection, float32 arithmetic on Python floats); forced
    onto the device path (as on a GPU), the same batches give the same average and weights, bit for bit,
    through non-finite percentiles, overflowing updates and a restore."""
    mentor = LossDiffCurriculum() if mentor_name == "curriculum" else load_mentornet(mentor_name)
    host = MentorWeighter(mentor, CONFIGS[config], total_steps=400, seed=5)
    device = MentorWeighter(mentor, CONFIGS[config], total_steps=400, seed=5)
    generator = torch.Generator().manual_seed(11)
    for step in range(400):
        loss = awkward_losses(generator, step)
        if step == 200:  # a restore: both continue from the saved state
            state = host.state_dict()
            host.load_state_dict(state)
            device.load_state_dict(state)
        weights = host(loss.clone(), step)
        with monkeypatch.context() as patch:
            patch.setattr(curricula.features, "host_checks", lambda tensor: False)
            expected = device(loss.clone(), step)
        assert torch.equal(host.moving_average.value, device.moving_average.value), step
        assert torch.equal(weights, expected) or torch.equal(weights.isnan(), expected.isnan()) and torch.equal(
            weights.nan_to_num(), expected.nan_to_num()), step
    assert host._cache[8] is not None and device._cache[8] is None  # each took its own path


def test_two_threads_give_the_same_weights_and_the_thread_count_is_never_switched(monkeypatch):
    # Switching torch to one thread for the step and back slowed the student's own matrix products (the mlp's
    # loop ran 1.15-2.2x slower on two cores, README "Speed"): the weighter must not switch.
    mentor = load_mentornet("mentornet_pd")
    config = WeighterConfig.from_defaults(mentor.student_defaults)
    torch.set_num_threads(2)  # the conftest fixture puts it back

    def refuse(threads):
        raise AssertionError(f"the weighter set the intra-op thread count to {threads}")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "set_num_threads", refuse)
        new = MentorWeighter(mentor, config, total_steps=50)
        assert_same_run(new, ReferenceWeighter(mentor, config, total_steps=50), range(50))
        with pytest.raises(ValueError, match="batch size"):
            new(torch.empty(0), 0)
    assert torch.get_num_threads() == 2


class _ParallelWork(TorchFunctionMode):
    """Records, for each MKL product and each tanh of the fused step, what could open a parallel region: the
    MKL thread count of this thread while a product runs (1: none), and the size of each tanh (ATen's vml
    kernel splits more than VML_GRAIN contiguous values between threads)."""

    def __init__(self):
        super().__init__()
        self.products, self.tanh_sizes = [], []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.addmm, torch.mm):
            local = mkl_threads.set_local_mkl_threads(1)  # the count in force (and 1 until put back below)
            mkl_threads.set_local_mkl_threads(local)
            self.products.append(local)
        elif getattr(func, "__name__", "") in ("tanh_", "tanh"):
            self.tanh_sizes.append(args[0].numel() if args[0].is_contiguous() else 0)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("batch", [128, 1000, 7])
def test_the_fused_step_opens_no_parallel_region_at_two_threads(batch):
    # At two threads with sleeping OpenMP workers each parallel region first wakes a thread: measured 100-170 µs
    # for a [128, 9] x [9, 20] product against 10 µs on one thread. The step keeps MKL on the calling thread
    # (mkl_set_num_threads_local, torch's thread count untouched) and applies tanh in blocks of at most
    # VML_GRAIN values; the caller's local MKL setting is put back.
    mentor = load_mentornet("mentornet_pd")
    torch.set_num_threads(2)  # the conftest fixture puts it back
    fused = MentorNetStep(mentor)
    x = torch.rand(batch, 2) * 3
    expected = mentor.weight(MentorFeatures.build(x[:, 0], x[:, 1], epoch=40))
    before = mkl_threads.set_local_mkl_threads(3)  # a caller's own local setting
    try:
        with _ParallelWork() as seen:
            weights = fused.weights(x, 40)
        assert mkl_threads.set_local_mkl_threads(0) == 3  # put back after the step
    finally:
        mkl_threads.set_local_mkl_threads(before)
    torch.testing.assert_close(weights, expected, rtol=0, atol=ATOL)
    assert torch.get_num_threads() == 2
    assert len(seen.products) == 3 and seen.tanh_sizes
    assert max(seen.tanh_sizes) <= mentor_training.model.VML_GRAIN, seen.tanh_sizes
    if mkl_threads.available():
        assert seen.products == [1, 1, 1]
    else:  # no MKL in this torch build: nothing to keep on one thread, and the setter does nothing
        assert mkl_threads.set_local_mkl_threads(1) == 0


def test_a_mentornet_fitted_without_loss_diff_takes_the_fused_step_and_ignores_loss_diff():
    # --mentornet learn fits MentorNets on the loss alone (uses_loss_diff=False); MentorWeighter (one used by
    # path) and LearnedMentorWeighter both take the fused step for them, whatever loss_diff they are given.
    from student_training.learned_mentornet import LearnedMentorWeighter

    generator = torch.Generator().manual_seed(11)
    mentor = MentorNet(MentorNetConfig(uses_loss_diff=False))
    mentor.reset_parameters(generator)
    mentor.requires_grad_(False).eval()
    assert MentorNetStep.supports(mentor)
    fused = MentorNetStep(mentor)
    for epoch in (0, 37, 99):
        loss = random_losses(generator, 128)
        loss_diff = torch.randn(128, generator=generator) * 5
        expected = mentor.weight(MentorFeatures.build(loss, torch.zeros_like(loss), epoch=epoch))
        torch.testing.assert_close(mentor.weight(MentorFeatures.build(loss, loss_diff, epoch=epoch)), expected,
                                   rtol=0, atol=0)  # the general path ignores loss_diff too
        torch.testing.assert_close(fused.weights(torch.stack([loss, loss_diff], 1), epoch), expected, rtol=0, atol=ATOL)
    weighter = MentorWeighter(mentor, WeighterConfig(), total_steps=100)  # loss_diff = loss - M_t, ignored
    loss = random_losses(generator, 128)
    loss[3] = float("inf")  # 0 x inf would be NaN: the weighter gives a loss-only MentorNet zeros, as build does
    weights = weighter.mentor_weights(loss, 50)
    assert isinstance(weighter._step, MentorNetStep) and torch.isfinite(weights).all()
    expected = mentor.weight(MentorFeatures.build(loss, torch.zeros_like(loss), epoch=weighter.last["epoch"]))
    torch.testing.assert_close(weights, expected, rtol=0, atol=ATOL)
    config = StudentConfig(dataset="digits", studentnet="mlp", mentornet="learn", clean_subset_fraction=0.3)
    learned = LearnedMentorWeighter(config, WeighterConfig(), total_steps=100, num_samples=200,
                                    probe=torch.arange(20), is_clean=torch.ones(200, dtype=torch.bool),
                                    device=torch.device("cpu"))
    learned.use(mentor, 10)
    loss = random_losses(generator, 64)
    weights = learned._mentor_output(loss, torch.zeros_like(loss), 9)
    assert isinstance(learned._step, MentorNetStep) and learned._step.mentor is mentor
    expected = mentor.weight(MentorFeatures.build(loss, torch.zeros_like(loss), epoch=9))
    torch.testing.assert_close(weights, expected, rtol=0, atol=ATOL)


def test_the_local_mkl_setting_round_trips_and_leaves_torch_alone():
    if not mkl_threads.available():
        pytest.skip("this torch build has no MKL")
    threads = torch.get_num_threads()
    previous = mkl_threads.set_local_mkl_threads(1)
    try:
        assert mkl_threads.set_local_mkl_threads(2) == 1
        assert mkl_threads.set_local_mkl_threads(1) == 2
        assert torch.get_num_threads() == threads
    finally:
        mkl_threads.set_local_mkl_threads(previous)


@pytest.mark.parametrize("reads", ["at the end", "every 7 batches"])
@pytest.mark.parametrize("revisits", [False, True], ids=["each sample once", "samples seen twice"])
@pytest.mark.parametrize("given", ["classes", "logits", "both"])
def test_epoch_stats_match_the_reference(reads, revisits, given):
    # In one process the training loop gives EpochStats the logits, whose argmax it takes when read; a caller may
    # give the classes, or (here) both in one epoch.
    generator = torch.Generator().manual_seed(6)
    new, reference = EpochStats(5000, "cpu"), ReferenceEpochStats(5000, "cpu")
    order = torch.randperm(5000, generator=generator)
    start = 0
    for i in range(40):
        batch = BATCHES[i % len(BATCHES)]
        losses = random_losses(generator, batch).requires_grad_()
        mentor_weights = torch.rand(batch, generator=generator)
        mentor_weights[mentor_weights < 0.2] = 0.0
        mentor_weights[:2] = torch.tensor([1e-3, 1.0001e-3])[:batch]  # at the threshold
        weights = mentor_weights * (torch.rand(batch, generator=generator) < 0.7)
        logits = torch.randn((batch, 10), generator=generator).requires_grad_()
        logits.data[:, 3] = logits.data[:, 7]  # ties: the first largest, as argmax gives it
        predictions = logits.detach().argmax(dim=1)
        if revisits:  # random draws: samples come back within and across reads
            indices = torch.randperm(300, generator=generator)[:batch]
        else:  # an epoch's permutation, as the loader makes it
            indices, start = order[start:start + batch], start + batch
        given_now = predictions if given == "classes" or (given == "both" and i % 3 == 0) else logits
        new.add(losses.detach(), weights, mentor_weights, given_now, indices)
        reference.add(losses.detach(), weights, mentor_weights, predictions, indices)
        if reads == "every 7 batches" and i % 7 == 3:
            assert torch.equal(new.sample_prediction, reference.sample_prediction)
    for key in ("loss", "weighted_loss", "weight", "utilized"):
        torch.testing.assert_close(getattr(new, key), getattr(reference, key), rtol=1e-6, atol=0)
    assert new.count == reference.count and float(new.utilized) == float(reference.utilized)
    assert torch.equal(new.sample_prediction, reference.sample_prediction)
    torch.testing.assert_close(new.sample_weight, reference.sample_weight, rtol=0, atol=0, equal_nan=True)


def test_epoch_stats_keep_a_bounded_size_of_logits(monkeypatch):
    # A data set with many classes: once the logits kept pass LOGITS_KEPT_BYTES, the batches kept are folded in.
    import student_training.epoch_stats as epoch_stats
    monkeypatch.setattr(epoch_stats, "LOGITS_KEPT_BYTES", 3 * 128 * 10 * 4)  # three batches of [128, 10] float32
    generator = torch.Generator().manual_seed(3)
    new, reference = EpochStats(2000, "cpu"), ReferenceEpochStats(2000, "cpu")
    kept = []
    for i in range(10):
        indices = torch.randperm(2000, generator=generator)[:128]  # samples come back across folds
        losses, weights = torch.rand(128, generator=generator), torch.rand(128, generator=generator)
        logits = torch.randn((128, 10), generator=generator)
        new.add(losses, weights, weights, logits, indices)
        reference.add(losses, weights, weights, logits.argmax(dim=1), indices)
        kept.append(len(new._pending))
    assert kept == [1, 2, 3, 0] * 2 + [1, 2], kept  # a fourth batch passes the bound: all four are folded in
    assert torch.equal(new.sample_prediction, reference.sample_prediction)
    torch.testing.assert_close(new.sample_weight, reference.sample_weight, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(new.weight, reference.weight, rtol=1e-6, atol=0)


@pytest.mark.parametrize("batch", [1, 7, 128, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_per_sample_loss_is_cross_entropy_bit_for_bit(batch, dtype):
    # Values and gradients, under weights with zeros (example dropout), for logits of several scales with ties.
    generator = torch.Generator().manual_seed(batch)
    scale = torch.tensor([1e-3, 1.0, 30.0, 300.0], dtype=dtype)[torch.randint(0, 4, (batch, 1), generator=generator)]
    logits = torch.randn((batch, 10), generator=generator, dtype=dtype) * scale
    logits[::3, 2] = logits[::3, 5]
    labels = torch.randint(0, 10, (batch,), generator=generator)
    weights = torch.rand(batch, generator=generator, dtype=dtype) * (torch.rand(batch, generator=generator) < 0.7)
    ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    losses, expected = per_sample_cross_entropy(ours, labels), F.cross_entropy(theirs, labels, reduction="none")
    assert losses.dtype == dtype and losses.shape == (batch,)
    assert torch.equal(losses, expected)
    (weights * losses).mean().backward()
    (weights * expected).mean().backward()
    assert torch.equal(ours.grad, theirs.grad)  # equal also treats -0.0 as 0.0 (the only difference)


def test_the_per_sample_loss_on_the_cpu_avoids_nll_loss_and_refuses_a_bad_label():
    # ATen's nll_loss with reduction='none' splits its loop over the samples between threads whatever the batch
    # size, forward and backward: at two threads each call wakes one (README, Speed). The CPU path has none.
    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.__name__)
            return func(*args, **(kwargs or {}))

    logits = torch.randn(128, 10, requires_grad=True)
    labels = torch.randint(0, 10, (128,))
    with Ops() as ops:
        per_sample_cross_entropy(logits, labels).mean().backward()
    assert ops.names and not [name for name in ops.names if "nll_loss" in name], ops.names
    with Ops() as ops:  # the check can fail: F.cross_entropy's reduction='none' goes through nll_loss
        F.cross_entropy(logits, labels, reduction="none").mean().backward()
    assert [name for name in ops.names if "nll_loss" in name]
    with pytest.raises(RuntimeError):
        per_sample_cross_entropy(logits, torch.full((128,), 10))
    with pytest.raises(ValueError, match="batch_size"):  # fewer labels than samples: F.cross_entropy's error
        per_sample_cross_entropy(logits, labels[:100])
    with pytest.raises(RuntimeError):  # labels of another dtype: F.cross_entropy's error too
        per_sample_cross_entropy(logits, labels.int())
    # Elsewhere (the meta device standing in for a GPU) it is F.cross_entropy's one kernel.
    meta_logits = torch.empty((5, 10), device="meta", requires_grad=True)
    with Ops() as ops:
        losses = per_sample_cross_entropy(meta_logits, torch.empty(5, dtype=torch.long, device="meta"))
    assert losses.shape == (5,) and losses.device.type == "meta", losses
    assert [name for name in ops.names if "nll_loss" in name], ops.names
    assert not [name for name in ops.names if "gather" in name], ops.names


def test_mentormix_stats_match_per_step_sums():
    """MentorMixStats folds in what ``trainer._MentorMixStats`` (main, before the merge) summed every step:
    each metric times the batch size; NaN second weights (no second reweighting) stay NaN."""
    generator = torch.Generator().manual_seed(8)
    for second_reweight in (True, False):
        stats = MentorMixStats(100, "cpu")
        expected = torch.zeros(4)
        for i, batch in enumerate((64, 64, 17, 64, 3)):
            values = torch.rand(4, generator=generator)
            if not second_reweight:
                values[3] = math.nan
            mixed_loss = values[0].clone().requires_grad_()
            metrics = dict(zip(MentorMixStats.MIX_METRICS, values[1:]))
            stats.add_mix(mixed_loss, metrics, batch)
            expected += values * batch
            if i == 2:  # a read in between folds the steps so far in; later steps add to them
                torch.testing.assert_close(stats.mix_sums, expected, rtol=1e-6, atol=0, equal_nan=True)
        sums = torch.stack([stats.mixed_loss, stats.mixing, stats.partner_share, stats.second_weight])
        torch.testing.assert_close(sums, expected, rtol=1e-6, atol=0, equal_nan=True)
        assert sums.dtype == torch.float32 and not sums.requires_grad


# --- fp32 whatever the precision ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("mentor_name", ["mentornet_pd", "hooked-mentornet", "curriculum"])
def test_the_weighting_stays_fp32_inside_a_callers_autocast(mentor_name, dtype):
    """Weights, losses and percentiles are computed in fp32 whatever the precision: called inside a
    caller's autocast region, the weighter gives bit for bit the weights and moving average it gives
    outside one, on the fused path (a MentorNet) and on the general one (a hooked MentorNet, whose
    ``weight`` would run its matmuls in ``dtype`` under autocast; a curriculum), whose ``weight`` sees
    autocast off."""
    seen = []

    def make_mentor():
        if mentor_name == "curriculum":
            return get_curriculum("self_paced")
        mentor = load_mentornet("mentornet_pd")
        if mentor_name == "hooked-mentornet":
            mentor.register_forward_hook(lambda module, inputs, output: seen.append(
                (torch.is_autocast_enabled("cpu"), output.dtype)))
        return mentor

    config = CONFIGS["p50-decay90-burnin18-dropout"]
    inside, outside = (MentorWeighter(make_mentor(), config, total_steps=50, seed=4) for _ in range(2))
    generator = torch.Generator().manual_seed(4)
    for step in range(0, 50, 3):
        loss = random_losses(generator, 64)
        with torch.autocast("cpu", dtype=dtype):
            weights = inside(loss, step)
            assert torch.is_autocast_enabled("cpu")  # the caller's region is left as it was
        expected = outside(loss, step)
        assert weights.dtype == torch.float32 and torch.equal(weights, expected), step
        assert torch.equal(inside.moving_average.value, outside.moving_average.value)
    if mentor_name == "hooked-mentornet":
        assert seen and set(seen) == {(False, torch.float32)}


# --- no host synchronisation ------------------------------------------------------------------------------

class HostSync(AssertionError):
    """A read of a device value on the host: on a GPU this would wait for the device."""


_HOST_READS = {
    torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu, torch.Tensor.__bool__,
    torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__index__, torch.Tensor.__complex__,
    torch.Tensor.__array__, torch.Tensor.__format__, torch.Tensor.__repr__, torch.Tensor.__str__,
}
# aten operations that need a device value on the host: scalar reads and data-dependent output shapes.
_SYNCING_ATEN = {"_local_scalar_dense", "nonzero", "nonzero_static", "masked_select", "_unique", "_unique2",
                 "unique_dim", "unique_consecutive", "unique_dim_consecutive", "equal", "is_nonzero", "allclose",
                 "repeat_interleave"}


_FROM_HOST_DATA = {torch.tensor, torch.as_tensor, torch.asarray}


class HostSyncGuard(TorchFunctionMode):
    """Fails on every host read of a device tensor's value and records every host-to-device copy.

    It plays ``torch.cuda.set_sync_debug_mode("error")`` on a machine without a GPU: at the Python level
    it catches the conversions (``item``, ``bool``, ``float``, ``int``, ``__index__``, ``tolist``, ``numpy``,
    ``cpu``, printing), and at the aten level every operation whose result needs a device value on the
    host, boolean-mask indexing included, and every copy from a device to the host. ``copies`` lists
    ``(non_blocking, pinned)`` for each copy from the host to a device. Run the step on the ``meta``
    device and nothing can slip through: a meta tensor has no value, so a read this guard missed would
    still fail. With ``cpu_is_device`` (a CPU run standing in for a GPU run) CPU tensors count as device
    tensors; otherwise reading a CPU tensor is a host read that waits for nothing, and is allowed.
    """

    def __init__(self, *, cpu_is_device: bool = False):
        super().__init__()
        self.cpu_is_device = cpu_is_device
        self.copies: list[tuple[bool, bool]] = []
        self._aten = _AtenGuard(self)

    def on_device(self, tensor) -> bool:
        return isinstance(tensor, torch.Tensor) and (self.cpu_is_device or tensor.device.type != "cpu")

    def __enter__(self):
        self._aten.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        return self._aten.__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _HOST_READS and args and self.on_device(args[0]):
            raise HostSync(f"{getattr(func, '__name__', func)} reads a device tensor's value on the host")
        out = func(*args, **kwargs)
        if func in _FROM_HOST_DATA and args and not isinstance(args[0], torch.Tensor) and self.on_device(out):
            self.copies.append((False, False))  # Python or numpy data: a pageable copy, made under the hood
        return out


class _AtenGuard(TorchDispatchMode):
    def __init__(self, owner: HostSyncGuard):
        super().__init__()
        self.owner = owner

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        on_device = any(self.owner.on_device(a) for a in args if isinstance(a, torch.Tensor))
        if name in _SYNCING_ATEN and on_device:
            raise HostSync(f"aten.{name} needs a device value on the host")
        if name in ("index", "index_put", "index_put_", "_index_put_impl_") and on_device:
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
                raise HostSync("a boolean mask index has a data-dependent shape")
        out = func(*args, **kwargs)
        if name in ("_to_copy", "copy_"):
            source = args[1] if name == "copy_" else args[0]
            target = args[0] if name == "copy_" else out
            if source.device.type == "cpu" and target.device.type != "cpu":
                non_blocking = kwargs.get("non_blocking", args[2] if name == "copy_" and len(args) > 2 else False)
                self.owner.copies.append((bool(non_blocking), source.is_pinned()))
            elif source.device.type != "cpu" and target.device.type == "cpu":
                raise HostSync(f"aten.{name} copies a device tensor to the host")
        return out


@contextlib.contextmanager
def gpu_value_checks(monkeypatch):
    """Value checks as on a GPU (``host_checks`` answers False), so a CPU run follows the GPU code path."""
    with monkeypatch.context() as patch:
        patch.setattr(curricula.features, "host_checks", lambda tensor: False)
        patch.setattr(mentor_training.model, "host_checks", lambda tensor: False)
        yield


class LossDiffCurriculum:
    """A hand-written curriculum of tensor operations only: v = sigmoid(-loss_diff)."""

    def weight(self, features):
        return torch.sigmoid(-features.loss_diff)


CONFIG_GRID = [CONFIGS["p50-decay90-burnin18-dropout"], CONFIGS["p75-exact-burnin-fixed-epoch"],
               CONFIGS["default"], CONFIGS["p100-decay0-full-dropout"]]


@pytest.mark.parametrize("mentor_name", ["mentornet_pd", "mentornet_dd", "curriculum"])
@pytest.mark.parametrize("config", CONFIG_GRID, ids=["burn-in+dropout", "fixed-epoch", "no-dropout", "decay-0"])
def test_the_weighting_step_never_reads_the_device(mentor_name, config, monkeypatch):
    """Every operation of a training step's weighting and bookkeeping on a device without values."""
    device = torch.device("meta")
    mentor = LossDiffCurriculum() if mentor_name == "curriculum" else load_mentornet(mentor_name).to(device)
    weighter = MentorWeighter(mentor, config, total_steps=100, seed=0)
    stats = EpochStats(1000, device)
    world = distributed.World()
    indices = torch.randperm(1000)[:256].to(device)
    copies = dropout_steps = 0
    with gpu_value_checks(monkeypatch):
        for step in list(range(0, 100, 3)) + [99, 99]:
            batch = BATCHES[step % len(BATCHES)]
            logits = torch.empty((batch, 10), device=device, requires_grad=True)
            labels = torch.empty(batch, dtype=torch.long, device=device)
            with HostSyncGuard() as guard:
                losses = per_sample_cross_entropy(logits, labels)  # as train_one_epoch computes them
                all_losses, predictions = distributed.gather_batch(losses, logits, world)
                mentor_weights = weighter.mentor_weights(all_losses, step)
                all_weights = weighter.example_dropout(mentor_weights, weighter.last["epoch"])
                weights = all_weights[world.shard(len(all_weights))]
                loss = student_loss(losses, weights, [], 0.0, mean_weight=all_weights.mean())
                loss.backward()
                stats.add(all_losses, all_weights, mentor_weights, predictions, indices[:batch])
            dropout = weighter.last["dropout_rate"] > 0
            # The only host-to-device copy is the example-dropout masks of the steps drawn ahead, made at most once
            # a step (when a block of masks is made), never waited for.
            assert guard.copies in (([[], [(True, torch.accelerator.is_available())]]) if dropout else [[]]), \
                guard.copies
            copies += len(guard.copies)
            dropout_steps += dropout
    with HostSyncGuard() as guard:  # folding the epoch's batches in waits for nothing either
        assert stats.sums.device == device and stats.sample_weight.device == device
        assert stats.sample_prediction.device == device
    assert guard.copies == []
    assert (copies > 0) == (dropout_steps > 0)
    if mentor_name != "curriculum":
        assert isinstance(weighter._step, MentorNetStep)


def _bad_steps():
    """Host reads that the guard must refuse, each where a careless edit would put one."""
    return {
        "item": lambda w: w.sum().item(),
        "float": lambda w: float(w.mean()),
        "int": lambda w: int(w.argmax()),
        "bool": lambda w: bool((w > 0.5).any()),
        "if": lambda w: 1 if w.max() > 0.5 else 0,
        "index": lambda w: range(10)[w.argmax()],
        "tolist": lambda w: w.tolist(),
        "numpy": lambda w: w.numpy(),
        "cpu": lambda w: w.cpu(),
        "print": lambda w: f"{w}",
        "nonzero": lambda w: torch.nonzero(w),
        "boolean mask": lambda w: w[w > 0.5],
        "masked assignment": lambda w: w.clone().__setitem__(w > 0.5, 0.0),
        "unique": lambda w: torch.unique(w),
        "python data to the device": lambda w: torch.tensor([0.5, 0.25], device=w.device),
        "blocking copy to the device": lambda w: torch.ones(3).to(w.device),
    }


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("name", list(_bad_steps()))
def test_the_guard_fails_on_every_host_read(name, device):
    bad = _bad_steps()[name]
    weights = torch.rand(8).to(device)
    if name in ("python data to the device", "blocking copy to the device"):
        if device == "cpu":
            pytest.skip("no host-to-device copy without a device")
        with HostSyncGuard() as guard:
            bad(weights)
        assert guard.copies == [(False, False)]  # what the weighting test refuses
        return
    with pytest.raises((HostSync, RuntimeError, NotImplementedError)) as caught:
        with HostSyncGuard(cpu_is_device=device == "cpu"):
            bad(weights)
    assert caught.type is HostSync, caught.value  # the guard fired, not a meta tensor's own error


def test_the_guard_catches_a_read_added_to_the_weighter(monkeypatch):
    """A MentorWeighter with one host read in its step fails the guard."""
    mentor = load_mentornet("mentornet_pd")

    class Careless(MentorWeighter):
        def mentor_weights(self, loss, step):
            weights = super().mentor_weights(loss, step)
            self.last["mean_weight"] = float(weights.mean())  # a sync on a GPU
            return weights

    weighter = Careless(mentor, WeighterConfig(), total_steps=10)
    weighter(torch.rand(128), 2)  # fine without the guard
    with gpu_value_checks(monkeypatch), pytest.raises(HostSync):
        with HostSyncGuard(cpu_is_device=True):
            weighter(torch.rand(128), 3)


def test_a_whole_training_epoch_never_reads_a_value(tmp_path, monkeypatch):
    """train_one_epoch on the CPU, every step under the guard (the metrics row after it reads values)."""
    config = StudentConfig(dataset="digits", studentnet="mlp", mentornet="mentornet_pd", noise=0.4, epochs=2,
                           batch_size=64)
    run = prepare_run(config, tmp_path / "run")
    with gpu_value_checks(monkeypatch):
        with HostSyncGuard(cpu_is_device=True) as guard:
            stats = train_one_epoch(run, 0)
    assert guard.copies == [] and stats.count == len(run.train_loader) * 64
    assert float(stats.weight) > 0 and not torch.isnan(stats.sample_weight).all()


def test_the_refurbished_labels_read_no_value(monkeypatch):
    """--learn-relabel-confidence's loss, with either rule, under the guard (it runs in every learned step)."""
    from student_training.learned_mentornet import Refurbishment, probe_transition

    generator = torch.Generator().manual_seed(0)
    transition = probe_transition(torch.randint(0, 5, (50,), generator=generator),
                                  torch.randint(0, 5, (50,), generator=generator), 5)
    logits = (torch.randn(64, 5, generator=generator) * 4).requires_grad_()
    labels = torch.randint(0, 5, (64,), generator=generator)
    weights = (torch.rand(64, generator=generator) < 0.5).float()
    for rule in (Refurbishment(0.5, transition), Refurbishment(0.5)):
        with gpu_value_checks(monkeypatch):
            with HostSyncGuard(cpu_is_device=True) as guard:
                loss = rule.loss(logits, labels, weights)
        assert guard.copies == []
        assert float(loss) > 0  # read after the guard: some samples were refurbished


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_no_synchronisation_on_a_gpu(tmp_path):
    """The real check: CUDA's sync debug mode refuses any synchronising call in the steps of an epoch
    (switched on at the end of its first step: the epoch's draws are uploaded once, before it)."""
    config = StudentConfig(dataset="digits", studentnet="mlp", mentornet="mentornet_pd", noise=0.4, epochs=2,
                           batch_size=64, device="cuda")
    run = prepare_run(config, tmp_path / "run")
    train_one_epoch(run, 0)
    torch.cuda.synchronize()

    class SyncErrorsAfterTheFirstStep(Callback):
        def on_step(self, run, step):  # before each step: from the second on, the first one is done
            if step > len(run.train_loader):
                torch.cuda.set_sync_debug_mode("error")

    try:
        train_one_epoch(run, 1, [SyncErrorsAfterTheFirstStep()])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    with HostSyncGuard() as guard:  # the dropout mask: pinned and not waited for
        for step in range(len(run.train_loader)):
            run.weighter(torch.rand(64, device="cuda"), step)
    assert guard.copies and all(non_blocking and pinned for non_blocking, pinned in guard.copies)
