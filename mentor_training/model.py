"""The 2018 MentorNet (spec §1, ``code/utils.py::mentornet_nn``), faithful to the last parameter.

Per sample, with x = (loss, loss_diff):

1. a bidirectional LSTM over a single time step whose *cell state* is kept. With a zero initial
   state each direction reduces to ``c = sigmoid(x·W_i + b_i) * tanh(x·W_j + b_j)`` (TF gate order
   i, j, f, o; the forget gate, output gate and recurrent row have no effect);
2. a trainable 2×2 label embedding and a **frozen** random 100×5 epoch embedding;
3. ``h = tanh([label_emb, epoch_emb, c_fw, c_bw] · W1 + b1)`` with 20 units;
4. the logit ``z = h · (w2 + beta)``: the 2018 code adds its scalar "bias" to every entry of the
   weight matrix, so there is no real output bias. ``additive_output_bias=True`` switches to
   ``z = h · w2 + beta``.

That is 257 trainable parameters, plus 500 frozen ones kept as a buffer.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules import module as _module

from curricula.features import NUM_EPOCHS, MentorFeatures, encode_epoch, host_checks

from .mkl_threads import set_local_mkl_threads

NUM_LABELS = 2  # the 2018 label embedding has two rows; only row 0 is ever used (label = 0)
VML_GRAIN = 2048  # ATen's vml kernels (tanh, exp, ...) go parallel above this many contiguous values


@dataclass(frozen=True)
class MentorNetConfig:
    """Architecture of a MentorNet. The defaults are the 2018 ones."""

    label_embedding_size: int = 2
    epoch_embedding_size: int = 5
    num_fc_nodes: int = 20
    additive_output_bias: bool = False  # False: the 2018 layer, beta added to the weight matrix
    # False: the MentorNet was fitted with loss_diff = 0 (``train-student --mentornet learn`` with
    # ``--learn-features loss``) and ignores the loss_diff it is given, in every loop.
    uses_loss_diff: bool = True

    def __post_init__(self):
        for key in ("label_embedding_size", "epoch_embedding_size", "num_fc_nodes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MentorNetConfig.{key} must be a positive integer, got {value!r}")
        for key in ("additive_output_bias", "uses_loss_diff"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"MentorNetConfig.{key} must be a bool, got {getattr(self, key)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class MentorNet(nn.Module):
    """The 2018 MentorNet. ``forward(features)`` returns weights in [0, 1]; ``logits`` the values before
    the sigmoid. ``weight(features)`` is the curriculum contract (no gradient, shaped like the loss)."""

    def __init__(self, config: MentorNetConfig | None = None):
        super().__init__()
        self.config = config or MentorNetConfig()
        c = self.config
        self.label_embedding = nn.Parameter(torch.empty(NUM_LABELS, c.label_embedding_size))
        # Frozen forever (trainable=False in 2018): a buffer, so it is saved but never optimised.
        self.register_buffer("epoch_embedding", torch.empty(NUM_EPOCHS, c.epoch_embedding_size))
        # One-unit LSTM cells, TF layout: kernel rows (loss, loss_diff, h_prev), columns (i, j, f, o).
        self.lstm_fw_kernel = nn.Parameter(torch.empty(3, 4))
        self.lstm_fw_bias = nn.Parameter(torch.zeros(4))
        self.lstm_bw_kernel = nn.Parameter(torch.empty(3, 4))
        self.lstm_bw_bias = nn.Parameter(torch.zeros(4))
        num_features = c.label_embedding_size + c.epoch_embedding_size + 2
        self.fc1_weight = nn.Parameter(torch.empty(num_features, c.num_fc_nodes))
        self.fc1_bias = nn.Parameter(torch.empty(c.num_fc_nodes))
        self.fc2_weight = nn.Parameter(torch.empty(c.num_fc_nodes, 1))
        self.fc2_beta = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """The 2018 initialisers (spec §1.3), drawn from ``generator`` when given."""
        with torch.no_grad():
            for tensor in (self.label_embedding, self.epoch_embedding, self.lstm_fw_kernel, self.lstm_bw_kernel):
                bound = math.sqrt(6.0 / (tensor.shape[0] + tensor.shape[1]))
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 2 * bound - bound)
            self.lstm_fw_bias.zero_()
            self.lstm_bw_bias.zero_()
            for tensor in (self.fc1_weight, self.fc1_bias, self.fc2_weight, self.fc2_beta):
                tensor.copy_(torch.randn(tensor.shape, generator=generator))

    def logits_from_tensors(self, loss: torch.Tensor, loss_diff: torch.Tensor,
                            label: torch.Tensor, epoch: torch.Tensor) -> torch.Tensor:
        """Logits from raw 1-D tensors; ``epoch`` must already be encoded (0..99 integers)."""
        dtype = self.fc1_weight.dtype
        if not self.config.uses_loss_diff:
            loss_diff = torch.zeros_like(loss)
        x = torch.stack([loss.to(dtype), loss_diff.to(dtype)], dim=1)
        # Both directions at once. Only the input rows and the i, j gates matter: h_prev = c_prev = 0,
        # so each cell state is sigmoid(x·W_i + b_i) * tanh(x·W_j + b_j).
        kernel = torch.cat([self.lstm_fw_kernel[:2, :2], self.lstm_bw_kernel[:2, :2]], dim=1)
        bias = torch.cat([self.lstm_fw_bias[:2], self.lstm_bw_bias[:2]])
        gates = torch.addmm(bias, x, kernel)
        cells = torch.sigmoid(gates[:, 0::2]) * torch.tanh(gates[:, 1::2])  # (c_fw, c_bw)
        features = torch.cat([self.label_embedding[label], self.epoch_embedding[epoch], cells], dim=1)
        hidden = torch.tanh(torch.addmm(self.fc1_bias, features, self.fc1_weight))
        if self.config.additive_output_bias:
            return (hidden @ self.fc2_weight).squeeze(1) + self.fc2_beta
        return (hidden @ (self.fc2_weight + self.fc2_beta)).squeeze(1)

    def logits(self, features: MentorFeatures) -> torch.Tensor:
        label = features.label
        if host_checks(label) and len(label) and (int(label.min()) < 0 or int(label.max()) >= NUM_LABELS):
            raise ValueError(
                f"MentorNet label feature must lie in 0..{NUM_LABELS - 1} (the 2018 code always passes 0), "
                f"got values in [{int(label.min())}, {int(label.max())}]"
            )
        return self.logits_from_tensors(features.loss, features.loss_diff, label, encode_epoch(features.epoch))

    def forward(self, features: MentorFeatures) -> torch.Tensor:
        return torch.sigmoid(self.logits(features))

    @torch.no_grad()
    def weight(self, features: MentorFeatures) -> torch.Tensor:
        """The curriculum contract: weights in [0, 1] shaped like ``features.loss`` (``[B]``), without gradient,
        on the device of ``features``. Spec §1 (2018 ``mentornet_nn``), then a sigmoid.

        Raises ``TypeError`` unless ``features`` is :class:`MentorFeatures` (build them with
        ``MentorFeatures.build(loss, loss_diff, epoch=...)``), ``ValueError`` for a label outside 0..1."""
        if not isinstance(features, MentorFeatures):
            raise TypeError("MentorNet.weight takes MentorFeatures (MentorFeatures.build(loss, loss_diff, "
                            f"epoch=...)), got {type(features).__name__}")
        return self(features.to(self.fc1_weight.device)).to(features.loss.device)


class MentorNetStep:
    """``mentor.weight`` for one training step, fused: every sample has label 0 and the same epoch.

    This is what :class:`~student_training.weighting.MentorWeighter` calls on every batch. It does the
    arithmetic of :meth:`MentorNet.logits_from_tensors` (then the sigmoid) with the same tensor calls on
    the same operands, so its weights equal ``mentor.weight(MentorFeatures.build(loss, loss_diff,
    epoch=epoch))`` bit for bit at one intra-op thread (two threads have been measured up to 7e-7 away
    from one for the shipped MentorNets), in nine tensor operations with no gather, cat, slicing or
    validation, none of which opens a parallel region on the CPU:

    * the LSTM kernel and bias of both directions are cut and concatenated once, and
      ``fc2_weight + fc2_beta`` (the 2018 output layer) is added once; for a MentorNet fitted without
      loss_diff (``uses_loss_diff=False``) the kernel's loss_diff row is zeroed, which gives the products of
      the zero loss_diff column its general path multiplies (for any finite loss_diff in ``x``; callers
      pass zeros there, as ``MentorFeatures.build`` does, so that an infinite loss cannot make 0 x inf);
    * the constant part of the 20-unit layer's input, the label-0 row and the epoch embedding row, is
      tabulated once per epoch (``[100, 7]``);
    * per batch size a plan of preallocated buffers is made once: that input, ``[B, 9]``, whose first
      seven columns hold the current epoch's table row (rewritten by one copy when the epoch changes,
      once per progress epoch in a run), and the LSTM gates, hidden units and logits that the step's
      operations write into (``out=``);
    * a step writes only the two LSTM cell columns of the input (the gate activations in place) and
      returns a fresh weight tensor;
    * on the CPU, MKL runs the step's three products on the calling thread alone
      (:func:`~mentor_training.mkl_threads.set_local_mkl_threads`; torch's thread count is left as it is),
      and tanh is applied to the hidden units in row blocks of at most ``VML_GRAIN`` values: at two threads
      with sleeping OpenMP workers every parallel region first wakes one, which cost 100-170 µs per
      operation on a 2-core machine, against 5-10 µs for the operation itself.

    The derived tensors are rebuilt whenever a parameter or buffer of the mentor is changed in place
    (version counters: ``load_state_dict``, an optimiser step) or the mentor moves to another device or
    dtype, both checked every call, and whenever a tensor is replaced (a new parameter, ``.data = ...``:
    checked when the epoch changes, or at :meth:`refresh`). An in-place write through ``.data`` bypasses
    version counters; call :meth:`refresh` after one. Replacing the mentor object, as MentorNet
    re-learning does, needs nothing: a step belongs to one mentor object.
    ``weights`` answers ``None`` where the fused path does not apply (forward hooks, a MentorNet that is
    not float32, the losses on another device than the mentor); the caller then takes the general path.
    """

    MAX_PLANS = 8  # one per batch size in use; a run needs one or two (the last batch of an epoch)

    def __init__(self, mentor: MentorNet):
        if not self.supports(mentor):
            raise TypeError(f"{type(mentor).__name__} is not a MentorNet with the 2018 forward")
        self.mentor = mentor
        self.uses_loss_diff = mentor.config.uses_loss_diff  # False: callers pass loss_diff = 0 (MentorFeatures.build)
        self._tensors = self._mentor_tensors()
        self._versions = None
        self._storage = None
        self._epoch = None
        self._plans: dict = {}

    @staticmethod
    def supports(mentor) -> bool:
        """Whether ``mentor`` computes its weights with the MentorNet arithmetic (not a subclass that changes it)."""
        kind = type(mentor)
        return isinstance(mentor, MentorNet) and all(
            getattr(kind, name) is getattr(MentorNet, name)
            for name in ("weight", "forward", "logits", "logits_from_tensors", "__call__", "_call_impl"))

    @staticmethod
    def input_buffer(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A reusable input for :meth:`weights`: ``x`` (``[batch, 2]`` float32, the transpose of a ``[2, batch]``
        tensor, which MKL's addmm reads to the same bits as a contiguous copy) and its two columns as contiguous
        rows, for the caller to write the losses and loss_diffs into."""
        rows = torch.empty((2, batch), dtype=torch.float32, device=device)
        return rows.t(), rows[0], rows[1]

    def refresh(self) -> None:
        """Forget every derived tensor; the next call rebuilds them from the mentor."""
        self._versions = None
        self._storage = None
        self._plans.clear()

    def _mentor_tensors(self) -> list[torch.Tensor]:
        return [*self.mentor._parameters.values(), *self.mentor._buffers.values()]

    def _storage_key(self) -> tuple:
        return tuple((id(t), t.data_ptr(), t.device, t.dtype) for t in self._mentor_tensors())

    def _build(self) -> None:
        mentor = self.mentor
        with torch.no_grad():
            fw, bw = mentor.lstm_fw_kernel.detach(), mentor.lstm_bw_kernel.detach()
            self.lstm_kernel = torch.cat([fw[:2, :2], bw[:2, :2]], dim=1)  # as logits_from_tensors
            if not mentor.config.uses_loss_diff:  # its loss_diff input is 0 there: x_1 * 0 adds the same 0 here
                self.lstm_kernel[1].zero_()
            self.lstm_bias = torch.cat([mentor.lstm_fw_bias.detach()[:2], mentor.lstm_bw_bias.detach()[:2]])
            self.fc1_weight = mentor.fc1_weight.detach().clone()
            self.fc1_bias = mentor.fc1_bias.detach().clone()
            self.additive = mentor.config.additive_output_bias
            if self.additive:
                self.fc2_weight = mentor.fc2_weight.detach().clone()
                self.fc2_beta = mentor.fc2_beta.detach().clone()
            else:
                self.fc2_weight = mentor.fc2_weight.detach() + mentor.fc2_beta.detach()
            label_row = mentor.label_embedding.detach()[0]  # the label feature is always 0
            epochs = mentor.epoch_embedding.detach()
            self.constants = torch.cat([label_row.expand(len(epochs), -1), epochs], dim=1)  # [100, 7]
        self.device, self.dtype = self.fc1_weight.device, self.fc1_weight.dtype
        self._plans.clear()
        self._tensors = self._mentor_tensors()
        self._versions = [t._version for t in self._tensors]
        self._probe = (self._tensors[0].dtype, self._tensors[0].device)
        self._storage = self._storage_key()

    def _plan(self, batch: int) -> list:
        """The buffers of one step at this batch size; the constant feature columns are written by the caller."""
        if len(self._plans) >= self.MAX_PLANS:
            self._plans.clear()
        empty = functools.partial(torch.empty, dtype=self.dtype, device=self.device)
        features = empty((batch, self.constants.shape[1] + 2))
        units = self.fc1_weight.shape[1]
        gates, hidden, logits = empty((batch, 4)), empty((batch, units)), empty((batch, 1))
        # tanh of more than 2048 contiguous floats is split between intra-op threads (ATen's MKL VML kernel);
        # on row blocks of at most 2048 values it runs on the calling thread (elementwise: the same values).
        hidden_blocks = hidden.split(max(1, VML_GRAIN // units)) if self.device.type == "cpu" else (hidden,)
        plan = self._plans[batch] = [None, gates, gates[:, 0::2], gates[:, 1::2], features, features[:, -2:],
                                     hidden, logits, logits.view(batch), hidden_blocks, features[:, :-2]]
        return plan

    def weights(self, x: torch.Tensor, epoch: int) -> torch.Tensor | None:
        """Weights in [0, 1] (shape ``[B]``, a fresh tensor) for ``x = stack([loss, loss_diff], 1)``
        (float32, ``[B, 2]``; the transpose of a ``[2, B]`` tensor gives the same bits) at progress epoch
        ``epoch`` (0..99); ``None`` where the fused path does not apply."""
        mentor = self.mentor
        if mentor._forward_hooks or mentor._forward_pre_hooks or _module._global_forward_hooks \
                or _module._global_forward_pre_hooks:
            return None
        probe = self._tensors[0]  # Module.to() and .double() swap every tensor's data without a version bump
        if self._versions != [t._version for t in self._tensors] or probe.dtype != self._probe[0] \
                or probe.device != self._probe[1] or (epoch != self._epoch and self._storage != self._storage_key()):
            self._build()
        self._epoch = epoch
        if x.device != self.device or self.dtype != torch.float32 or x.dtype != torch.float32:
            return None
        plan = self._plans.get(x.shape[0]) or self._plan(x.shape[0])
        if plan[0] != epoch:  # the label and epoch columns: once per progress epoch
            plan[-1].copy_(self.constants[epoch])
            plan[0] = epoch
        _, gates, i_gates, j_gates, features, cells, hidden, logits, flat, hidden_blocks, _ = plan
        # MKL's products on this thread alone: a parallel region per tiny product costs more than the product.
        threads = set_local_mkl_threads(1) if self.device.type == "cpu" else None
        try:
            # As logits_from_tensors: both LSTM directions in one addmm; c = sigmoid(i) * tanh(j).
            torch.addmm(self.lstm_bias, x, self.lstm_kernel, out=gates)
            torch.mul(i_gates.sigmoid_(), j_gates.tanh_(), out=cells)
            torch.addmm(self.fc1_bias, features, self.fc1_weight, out=hidden)
            for block in hidden_blocks:
                block.tanh_()
            torch.mm(hidden, self.fc2_weight, out=logits)
        finally:
            if threads is not None:
                set_local_mkl_threads(threads)
        return torch.sigmoid(flat + self.fc2_beta if self.additive else flat)


def count_trainable_parameters(module: nn.Module) -> int:
    """The number of scalars in ``module``'s parameters that require a gradient (the 2018 MentorNet: 257)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
