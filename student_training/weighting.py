"""``MentorWeighter``: the per-batch weighting of spec §4.1 (``code/utils.py::mentornet``), usable from
any PyTorch training loop.

For the batch at global step t of T:

1. progress epoch ``e_t = floor(100 t / T)`` (clipped at 99); with ``fixed_epoch_after_burn_in`` the
   epoch used everywhere below is ``ê = min(e_t, burn_in_epoch)``, else ``ê = e_t``;
2. burn-in: every weight is at least ``u = 1`` while ``ê < burn_in_epoch − 1`` (the 2018 off-by-one,
   the default) or ``ê < burn_in_epoch`` (``burn_in_2018=False``), else ``u = 0``;
3. the batch p-percentile of the losses ("nearest", TF rounding) updates the moving average
   ``M_t = decay · M_{t−1} + (1 − decay) · P_t``, which starts at 0; ``loss_diff = loss − M_t``;
4. ``v = max(mentor(loss, loss_diff, label=0, ê), u)``, computed without gradient by a frozen mentor;
5. example dropout: ``K = int(B · (1 − r_ê))`` samples drawn uniformly without replacement keep their
   weight, the others get 0 (independent of v).

Example, in any loop (the weighting options are the MentorNet's ``student_defaults``, as ``train-student`` uses
them, unless a ``WeighterConfig`` is given)::

    mentor = MentorWeighter(load_mentornet("mentornet_pd"), total_steps=epochs * len(loader))
    for step, (x, y) in enumerate(batches):
        losses = F.cross_entropy(model(x), y, reduction="none")
        weights = mentor(losses, step)                 # detached, shape [B]
        loss = (weights * losses).mean()               # the mean over B, as in 2018
        loss.backward(); optimizer.step(); optimizer.zero_grad()
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import asdict

import torch

import curricula.features
from curricula.features import (NUM_EPOCHS, LossMovingAverage, MentorFeatures, WeighterConfig, parse_dropout_schedule,
                                percentile_index, progress_percent)
from curricula.registry import check_curriculum, is_registered_curriculum
from mentor_training.model import MentorNetStep

from .accelerator import fp32_region


# Whether autocast is on for any device, in one C call (torch's own, not public: where it is missing, the public
# per-device check runs every step). Right after the student's pass the public one, with the losses' device type,
# cost about 10 µs more per step.
_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", None)

DRAWS_AHEAD = 64  # at most this many example-dropout permutations are drawn at a time (MentorWeighter.example_dropout)


class _DrawnPermutations:
    """A block of example-dropout permutations drawn ahead: ``perms`` (``[count, batch]``, drawn one after the
    other from the generator, which was in state ``start`` before them and in state ``end`` after them; both
    None for a generator that is drawn from one step at a time), how many steps have used one, the steps in a
    row with this batch size before the block (``steps_before``), and the masks made from them for one
    (rate, dtype, device) ``key``, with the accelerator stream their copy was made on (a step on another stream
    makes them again)."""

    __slots__ = ("batch", "start", "end", "perms", "count", "used", "steps_before", "key", "masks", "stream")

    def __init__(self, batch: int, start: torch.Tensor | None, end: torch.Tensor | None, perms: torch.Tensor,
                 steps_before: int):
        self.batch, self.start, self.end, self.perms, self.count = batch, start, end, perms, len(perms)
        self.used, self.steps_before, self.key, self.masks, self.stream = 0, steps_before, None, None, None

    @property
    def run_length(self) -> int:
        """Steps in a row with this batch size so far."""
        return self.steps_before + self.used


def _float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (±inf beyond its range, NaN kept), as a Python float."""
    return ctypes.c_float(value).value


class MentorWeighter:
    """Turns per-sample losses into MentorNet weights, step by step (spec §4.1).

    A step costs a fixed handful of tensor operations and never reads a value back to the host, so on
    a GPU it never waits: the percentile is one ``kthvalue``, the moving average stays a device tensor (on
    the CPU, where a read waits for nothing, both are computed on the host, to the same bits, with fewer
    operations: :meth:`_host_average`),
    a MentorNet runs through its fused :class:`~mentor_training.model.MentorNetStep` (no
    ``MentorFeatures`` is built; its input, loss and loss_diff, is written into a reused buffer), the
    epoch, burn-in floor and dropout rate are Python numbers looked up in a table per progress epoch, and
    the example-dropout masks of the coming steps are drawn ahead in one block, so that a step applies its
    mask in one product (:meth:`example_dropout`). Any other mentor (a
    curriculum) gets the ``MentorFeatures`` of spec §4.1 through its ``weight(features)``, as before.
    """

    def __init__(self, mentor, config: WeighterConfig | dict | None = None, *, total_steps: int, seed: int = 0):
        """``mentor``: a :class:`~mentor_training.model.MentorNet` or a registered curriculum (anything with
        ``weight(features)``; a registered curriculum is checked once with
        :func:`~curricula.registry.check_curriculum`). ``config``: the weighting options; ``None`` takes the
        mentor's ``student_defaults`` (a loaded MentorNet's are the values the 2018 commands used with it, as
        ``train-student`` does), or the 2018 defaults (``WeighterConfig()``) for a mentor without them; a dict
        is read as ``WeighterConfig.from_dict``. ``total_steps``: the run's number of steps T, which sets the
        progress epoch ``floor(100 t / T)``. ``seed``: the example-dropout draws.

        Raises ``TypeError`` for a mentor without ``weight`` or a non-integer ``total_steps``, ``ValueError`` for
        ``total_steps < 1``, unknown config keys, or a curriculum whose weights are not a finite [0, 1] tensor
        shaped like the loss."""
        if not callable(getattr(mentor, "weight", None)):
            raise TypeError("mentor must have a weight(features) method (a MentorNet or a curriculum)")
        if isinstance(total_steps, bool) or not isinstance(total_steps, int):
            raise TypeError(f"total_steps must be an integer (the run's number of steps), got {total_steps!r}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if is_registered_curriculum(mentor):
            check_curriculum(mentor)  # weights in [0, 1], shaped like the loss, before any step
        if config is None:
            config = getattr(mentor, "student_defaults", None) or WeighterConfig()
        self.mentor = mentor
        self.config = WeighterConfig.coerce(config)
        self.total_steps = int(total_steps)
        self.dropout_rates = parse_dropout_schedule(self.config.example_dropout_rates)
        self.moving_average = LossMovingAverage(self.config.loss_p_percentile,
                                                self.config.loss_moving_average_decay)
        self._generator = torch.Generator().manual_seed(seed)
        self._own_generator = True  # drawn from in blocks; a generator given through `generator` one step at a time
        self.last = {}  # what the last call used: epoch, dropout rate, burn-in
        self._step_for = None  # the mentor that self._step was made for (it is swapped by re-learning)
        self._step = None  # its MentorNetStep, or None for a curriculum
        self._table = (None, None, None)  # (config, total steps, per progress epoch: ê, floor, dropout rate)
        self._cache = (None,) * 9  # (device, batch, p, decay, kthvalue k, decay and 1 - decay tensors there,
                                  # the fused forward's input buffer, on the CPU the host average's state)
        self._written = None  # the moving average as the last step left it (anything else: a restore)
        self._drawn = None  # the example-dropout permutations drawn ahead (_DrawnPermutations)
        self._run = (None, 0)  # the batch size of the last dropout steps, and how many in a row had it
        self._run_lengths = {}  # batch size -> how many steps in a row had it last time (how many to draw ahead)
        self._pin = None  # whether the host can pin memory (asked once, at the first dropout off the CPU)

    def epoch_at(self, step: int) -> int:
        """ê: the progress epoch the MentorNet sees at ``step``."""
        return self._epoch_input(progress_percent(step, self.total_steps))

    def _epoch_input(self, progress: int) -> int:
        """ê at progress epoch e_t: e_t, or min(e_t, burn-in epoch) with ``fixed_epoch_after_burn_in``."""
        return min(progress, self.config.burn_in_epoch) if self.config.fixed_epoch_after_burn_in else progress

    def burn_in_floor(self, epoch: int) -> float:
        burn_in = self.config.burn_in_epoch
        return 1.0 if epoch < (burn_in - 1 if self.config.burn_in_2018 else burn_in) else 0.0

    def _schedule(self) -> tuple:
        """Per progress epoch e_t = 0..99: (ê, burn-in floor, example-dropout rate) by the rules of
        :meth:`epoch_at` and :meth:`burn_in_floor`; remade when the (frozen) config or the step count is replaced."""
        table = tuple((epoch, self.burn_in_floor(epoch), self.dropout_rates[epoch])
                      for epoch in map(self._epoch_input, range(NUM_EPOCHS)))
        self._table = (self.config, self.total_steps, table)
        return self._table

    def mentor_weights(self, loss: torch.Tensor, step: int, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Steps 1-4: the MentorNet weight with the burn-in floor, before example dropout: ``[B]`` float32 in
        [0, 1], detached, for ``loss``, the per-sample losses ``[B]`` in nats (cross-entropy with
        ``reduction='none'``), at global ``step`` in 0..T-1. Computed in fp32, outside autocast even when
        called inside a caller's autocast region. ``indices`` (the batch's sample indices) are not needed here;
        a weighter that learns from samples by index takes them.

        Raises ``TypeError`` for losses that are not a floating-point tensor or a step that is not an integer,
        ``ValueError`` for losses that are not 1-D or a step outside 0..T-1 (usually epochs given as
        ``total_steps``). A NaN or infinite loss gets a NaN weight; a batch whose p-percentile is not finite
        leaves the moving average unchanged (the 2018 code would carry NaN into every later step)."""
        # The intra-op thread count is left alone: switching torch to one thread for the step and back (as
        # before) made this call alone faster but slowed the student's own matrix products; on two cores the mlp's
        # training loop ran 1.15-2.2x slower with the switch in four back-to-back pairs (README, Speed). The fused
        # step keeps its own products on this thread instead (MentorNetStep.weights, mentor_training.mkl_threads).
        self._check_call(loss, step)
        if _any_autocast is None or _any_autocast():  # one call when no autocast is on (always, in train-student)
            device_type = loss.device.type
            if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
                with fp32_region(loss.device):
                    return self._mentor_weights(loss, step)
        return self._mentor_weights(loss, step)

    def _check_call(self, loss, step) -> None:
        """The per-sample losses ``[B]`` (floating point) and a step in 0..T-1, or a one-line error."""
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"losses must be a torch.Tensor of shape [B], got {type(loss).__name__}")
        if loss.dim() != 1:
            raise ValueError(f"losses must be 1-D [B] (one loss per sample: reduction='none'), got shape "
                             f"{tuple(loss.shape)}")
        if not loss.is_floating_point():
            raise TypeError(f"losses must be floating point, got {loss.dtype}")
        if isinstance(step, bool) or not isinstance(step, int):
            raise TypeError(f"step must be an integer (the global step, from 0), got {step!r}")
        if not 0 <= step < self.total_steps:
            raise ValueError(f"step {step} is outside 0..{self.total_steps - 1} (total_steps={self.total_steps}: the "
                             "run's number of steps, not of epochs)")

    def _mentor_weights(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        if loss.requires_grad:
            loss = loss.detach()
        if loss.dtype != torch.float32:
            loss = loss.float()
        # Steps 1-2 as epoch_at and burn_in_floor, looked up by progress epoch.
        config, total, table = self._table
        if config is not self.config or total != self.total_steps:
            config, total, table = self._schedule()
        epoch, floor, rate = table[progress_percent(step, total)]
        # Step 3 as LossMovingAverage.loss_diff: P_t, M_t = decay * M_{t-1} + (1 - decay) * P_t, loss - M_t.
        average, cache = self.moving_average, self._cache
        written = average.host_value  # the CPU path keeps the average as a Python float (_host_average)
        if written is None:
            written = average.value
        if written is not self._written or loss.device != cache[0] or loss.shape[0] != cache[1] \
                or average.p != cache[2] or average.decay != cache[3]:
            cache = self._step_constants(average, loss.device, loss.shape[0])
        if cache[8] is not None:  # the CPU, where reading a value waits for nothing: a Python float
            value = self._host_average(loss, average, cache)
        else:
            value = average.value
            percentile = torch.kthvalue(loss, cache[4])[0]  # batch_loss_percentile, its index cached
            # The decay as float32 0-d tensors: the arithmetic of a Python float, without wrapping it every step.
            # A batch whose percentile is NaN or infinite leaves the average as it was (read without a host
            # sync): otherwise one such batch would make every later loss_diff NaN or the same for every sample.
            updated = value * cache[5] + percentile * cache[6]
            value = average.value = self._written = torch.where(updated.isfinite(), updated, value)
        fused = self._step
        if self.mentor is not self._step_for:
            fused = self._fused_step()
        weights = None
        if fused is not None:  # the fused MentorNet forward (step 4) of x = (loss, loss_diff), a reused buffer
            x, losses, loss_diffs = cache[7]
            losses.copy_(loss)
            if fused.uses_loss_diff:
                torch.sub(loss, value, out=loss_diffs)
            else:  # fitted on the loss alone: its input is 0 there, as in the general path (also for inf losses)
                loss_diffs.zero_()
            weights = fused.weights(x, epoch)
        if weights is None:  # a curriculum, or a MentorNet the fused path does not cover
            weights = self._weight(loss, loss - value, epoch)
            if floor:
                weights = weights.clamp(min=floor)
        elif floor:
            weights = weights.clamp_(min=floor)  # a fresh tensor of our own
        self.last = {"epoch": epoch, "dropout_rate": rate, "burn_in": bool(floor)}
        return weights

    def _fused_step(self) -> MentorNetStep | None:
        """The fused forward of the current mentor (a new one after re-learning swapped it), None for others."""
        mentor = self._step_for = self.mentor
        self._step = MentorNetStep(mentor) if MentorNetStep.supports(mentor) else None
        return self._step

    def _step_constants(self, average: LossMovingAverage, device: torch.device, batch: int) -> tuple:
        """What a step needs besides the losses, for this device, batch size, percentile and decay: the
        moving average on the device (a fill, not a copy: once a run, or after a restore), the kthvalue
        index of the percentile, the decay and 1 - decay as 0-d float32 tensors there, and the input of the
        fused forward: x = (loss, loss_diff) as [B, 2], the transpose of a [2, B] buffer, and its two rows
        (MKL's addmm gives the same bits for x as for a contiguous [B, 2] copy)."""
        value = average.value
        if value.device != device and value.device.type == "cpu":  # a host value: reading it waits for no device
            average.value = torch.full((), float(value), dtype=torch.float32, device=device)
        elif value.device != device or value.dtype != torch.float32:
            average.value = value.to(device, torch.float32)
        decay = average.decay
        self._cache = (device, batch, average.p, decay, percentile_index(batch, average.p) + 1,
                       torch.full((), decay, dtype=torch.float32, device=device),
                       torch.full((), 1.0 - decay, dtype=torch.float32, device=device))
        self._cache += (MentorNetStep.input_buffer(batch, device),)
        # On the CPU, step 3 runs on the host (_host_average): the average as a Python float, and the decay and
        # 1 - decay rounded to float32 as the tensors above hold them.
        host = None
        if curricula.features.host_checks(average.value):
            host = [float(average.value), _float32(decay), _float32(1.0 - decay)]
        self._cache += (host,)
        self._written = average.value
        return self._cache

    def _host_average(self, loss: torch.Tensor, average: LossMovingAverage, cache: tuple) -> float:
        """Step 3 on the CPU, where reading a value waits for nothing: the tensor path's arithmetic in a few host
        operations instead of eight tensor ones (``kthvalue``, three 0-d products and sums, ``isfinite`` of five
        more, ``where``). Right after the student's pass each of those runs with cold caches, at 10-70 µs; in the
        ``mlp`` loop this path took the weighting call from 0.55 to 0.47 ms (medians over 16 epochs; the paired
        ratio 0.87), and the repeated call from 156 to 121 µs.

        The percentile is the same element: the losses as Python floats (exact), sorted, with NaNs dropped
        first and counted as largest, as ``kthvalue`` orders them (an index among them gives NaN). Sorting 128
        floats took 7 µs warm and less than numpy's selection cold; its cost grows with the batch, as the
        student's step does. ``M_t = decay · M_{t−1} + (1 − decay) · P_t`` is computed with each product and the
        sum rounded to float32, as the 0-d float32 tensors round them (a float32 product or sum computed in
        float64, then rounded, is the correctly rounded float32 one), so the average is the same bits. A
        non-finite update leaves the average as it was, as there.

        Returns the average as a Python float, which the caller subtracts from the losses (``loss - M`` with a
        Python float is the same float32 subtraction as with a 0-d float32 tensor); the moving average's tensor is
        made only when something reads it (:meth:`LossMovingAverage.set_host_value`), not every step."""
        index = cache[4] - 1
        values = loss.tolist()
        if math.isnan(sum(values)):  # a NaN (or both infinities): drop the NaNs, which kthvalue puts last
            values = [v for v in values if v == v]
        values.sort()
        percentile = values[index] if index < len(values) else math.nan
        host = cache[8]  # [M_{t-1}, decay, 1 - decay]
        updated = _float32(_float32(host[0] * host[1]) + _float32(percentile * host[2]))
        if math.isfinite(updated):
            host[0] = self._written = updated
            average.set_host_value(updated)  # its tensor is made only if read (LossMovingAverage.value)
        return host[0]

    @torch.no_grad()
    def _weight(self, loss: torch.Tensor, loss_diff: torch.Tensor, epoch: int) -> torch.Tensor:
        """The mentor's weights through its ``weight(features)`` contract (no host synchronisation on a GPU)."""
        features = MentorFeatures.build(loss, loss_diff, epoch=epoch)
        return self.mentor.weight(features).to(loss.device, torch.float32)

    @torch.no_grad()
    def opinion(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        """The mentor's weight of ``loss`` (``[B]``, nats) at ``step`` with the current moving-average percentile,
        without the burn-in floor or example dropout; no state changes (find-label-issues records it). Errors as
        :meth:`mentor_weights`."""
        self._check_call(loss, step)
        loss_diff = loss - self.moving_average.value.to(loss)
        features = MentorFeatures.build(loss, loss_diff, epoch=self.epoch_at(step))
        return self.mentor.weight(features).to(loss.device, torch.float32)

    def example_dropout(self, weights: torch.Tensor, epoch: int) -> torch.Tensor:
        """Step 5: keep ``int(B (1 − r))`` uniformly drawn samples of ``weights`` (``[B]``), zero the rest; ``r``
        is the example-dropout rate at progress epoch ``epoch`` (0..99). Returns a new ``[B]`` tensor.

        The draw is the 2018 one: ``perm = torch.randperm(B, generator=self.generator)``, and the samples
        ``perm[:keep]`` keep their weight. The permutations of the coming steps are drawn ahead, in one block
        (:class:`_DrawnPermutations`), with their masks made in one ``scatter_`` (on an accelerator, copied there
        in one transfer), so that a step costs one product: right after the student's pass each operation of a
        step costs 10-30 µs on the CPU, whatever its size. The masks are those of one draw per step, and so is
        the generator's state as the ``generator`` property gives it (see there)."""
        rate = self.dropout_rates[epoch]
        if rate == 0.0:
            return weights
        drawn = self._drawn
        if drawn is None or drawn.batch != weights.shape[0] or drawn.used == drawn.count:
            drawn = self._draw_ahead(weights.shape[0])
        masks = drawn.masks
        if masks is None or drawn.key != (rate, weights.dtype, weights.device) or (
                drawn.stream is not None and drawn.stream != torch.accelerator.current_stream(weights.device)):
            masks = self._make_masks(drawn, rate, weights)  # (a step on another stream: copied again, on it)
        mask = masks[drawn.used]
        drawn.used += 1
        return weights * mask

    @property
    def generator(self) -> torch.Generator:
        """The example-dropout generator, in the state that one ``randperm`` per step so far leaves it in.

        The weighter's own generator (seeded by ``seed``) is drawn from in blocks of coming steps; reading it here
        rewinds a block used in part, and the next step draws a new one. So read and reseed it through this
        property: a reference kept across steps is ahead of that state, and draws or a reseed made through it
        take effect from the next block (they are kept: the rewind happens only if the generator is as the block
        left it). A generator assigned here (a shared one, such as ``torch.default_generator``) is drawn from
        one step at a time, as before the blocks."""
        self._settle_draws()
        return self._generator

    @generator.setter
    def generator(self, generator: torch.Generator | None) -> None:
        self._settle_draws()
        self._generator, self._own_generator = generator, False

    def _settle_draws(self) -> None:
        """Forget the permutations drawn ahead, leaving the generator as if only those used had been drawn
        (unless something else has drawn from it or reseeded it since the block was drawn)."""
        drawn, self._drawn = self._drawn, None
        if drawn is None:
            return
        self._run = (drawn.batch, drawn.run_length)
        if drawn.used == drawn.count or not torch.equal(self._generator.get_state(), drawn.end):
            return
        self._generator.set_state(drawn.start)
        for _ in range(drawn.used):
            torch.randperm(drawn.batch, generator=self._generator)

    def _draw_ahead(self, batch: int) -> _DrawnPermutations:
        """The next block of permutations of ``batch`` samples. It ends where the last run of steps with this batch
        size ended (the epoch's full batches, then its smaller last batch), at most ``DRAWS_AHEAD`` ahead, so
        that from the second epoch on each permutation is drawn once; a generator that is not the weighter's
        own gives a block of one."""
        self._settle_draws()
        run_batch, run_length = self._run
        if run_batch != batch:
            if run_batch is not None:
                self._run_lengths[run_batch] = run_length
            run_length = 0
        left = self._run_lengths.get(batch, 0) - run_length
        count = min(left if left > 0 else DRAWS_AHEAD, DRAWS_AHEAD) if self._own_generator else 1
        generator = self._generator
        start = generator.get_state() if self._own_generator else None
        perms = torch.empty((count, batch), dtype=torch.long)
        for row in perms:
            torch.randperm(batch, generator=generator, out=row)
        end = generator.get_state() if self._own_generator else None
        self._drawn = _DrawnPermutations(batch, start, end, perms, run_length)
        return self._drawn

    def _make_masks(self, drawn: _DrawnPermutations, rate: float, weights: torch.Tensor) -> tuple:
        """The block's masks at this rate, one row per permutation: ``mask[perm] = (1, ..., 1, 0, ..., 0)``
        with ``int(B (1 - rate))`` ones, on the weights' device and in their dtype."""
        batch, drawn.stream = drawn.batch, None
        pattern = torch.zeros(batch, dtype=weights.dtype)
        pattern[:int(batch * (1.0 - rate))] = 1.0
        if weights.is_cpu:
            masks = torch.empty(drawn.perms.shape, dtype=weights.dtype)
        else:  # made in pinned host memory and copied in one transfer that does not wait for the device
            if self._pin is None:
                self._pin = torch.accelerator.is_available()  # pinned memory exists only with an accelerator
            masks = torch.empty(drawn.perms.shape, dtype=weights.dtype, pin_memory=self._pin)
        masks.scatter_(1, drawn.perms, pattern.expand(drawn.perms.shape))
        if not weights.is_cpu:
            masks = masks.to(weights.device, non_blocking=True)
            accelerator = torch.accelerator.current_accelerator()  # None without one
            if accelerator is not None and weights.device.type == accelerator.type:  # the stream the copy is on
                drawn.stream = torch.accelerator.current_stream(weights.device)
        drawn.key, drawn.masks = (rate, weights.dtype, weights.device), masks.unbind(0)
        return drawn.masks

    def __call__(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        """Detached per-sample weights ``[B]`` in [0, 1] for the losses ``[B]`` (nats) of the batch at global
        ``step`` (0..T-1): :meth:`mentor_weights`, then :meth:`example_dropout` (spec §4.1); errors as
        :meth:`mentor_weights`."""
        weights = self.mentor_weights(loss, step)
        return self.example_dropout(weights, self.last["epoch"])

    def state_dict(self) -> dict:
        """The config, T, the moving average and the example-dropout generator: what a resumed run needs to
        weight its next step as the uninterrupted run would have."""
        return {"config": asdict(self.config), "total_steps": self.total_steps,
                "moving_average": self.moving_average.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`. Raises ``ValueError`` if it was saved for another T or another config
        (naming the fields that differ): its moving average would be read with another percentile or decay."""
        if state["total_steps"] != self.total_steps:
            raise ValueError(f"weighter state is for {state['total_steps']} steps, this run has {self.total_steps}")
        saved, mine = state.get("config"), asdict(self.config)
        if saved is not None and saved != mine:
            fields = [key for key in mine if saved.get(key) != mine[key]]
            raise ValueError("weighter state was saved with another config: "
                             + ", ".join(f"{key} {saved.get(key)!r} there, {mine[key]!r} here" for key in fields))
        self.moving_average.load_state_dict(state["moving_average"])
        self.generator.set_state(state["generator"])
