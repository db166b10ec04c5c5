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
import math
from dataclasses import dataclass

import torch
from torch import nn

from curricula.features import NUM_EPOCHS, MentorFeatures, encode_epoch, host_checks

NUM_LABELS = 2  # the 2018 label embedding has two rows; only row 0 is ever used (label = 0)


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
        """The curriculum contract: weights in [0, 1] shaped like ``features.loss``, without gradient."""
        return self(features.to(self.fc1_weight.device)).to(features.loss.device)


def count_trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
