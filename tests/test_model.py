"""The MentorNet architecture (spec §1): parameter counts, initialisation, and the forward pass
computed by hand from the spec's formula."""

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from curricula import MentorFeatures
from mentor_training import MentorNet, MentorNetConfig, count_trainable_parameters


def _fixed_net(additive=False):
    net = MentorNet(MentorNetConfig(additive_output_bias=additive))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for tensor in list(net.parameters()) + list(net.buffers()):
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.7)
    return net


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _by_hand(net, loss, loss_diff, label, epoch):
    """Spec §1.2 step by step, in numpy, one sample at a time."""
    p = {k: v.detach().double().numpy() for k, v in net.state_dict().items()}
    out = []
    for l, d, y, e in zip(loss, loss_diff, label, epoch):
        cells = []
        for direction in ("fw", "bw"):
            kernel, bias = p[f"lstm_{direction}_kernel"], p[f"lstm_{direction}_bias"]
            g = l * kernel[0] + d * kernel[1] + 0.0 * kernel[2] + bias  # gates (i, j, f, o)
            cells.append(_sigmoid(g[0]) * np.tanh(g[1]))  # c = sigma(i) * tanh(j); f, o have no effect
        f = np.concatenate([p["label_embedding"][y], p["epoch_embedding"][min(e, 99)], cells])
        h = np.tanh(f @ p["fc1_weight"] + p["fc1_bias"])
        if net.config.additive_output_bias:
            z = h @ p["fc2_weight"][:, 0] + p["fc2_beta"][0]
        else:
            z = h @ (p["fc2_weight"][:, 0] + p["fc2_beta"][0])  # beta added to every weight entry
        out.append(_sigmoid(z))
    return np.array(out)


def test_parameter_counts():
    net = MentorNet()
    assert count_trainable_parameters(net) == 257
    assert net.epoch_embedding.shape == (100, 5)
    assert not any(p is net.epoch_embedding for p in net.parameters())
    stored = sum(t.numel() for t in net.state_dict().values())
    assert stored == 757


@pytest.mark.parametrize("additive", [False, True])
def test_forward_matches_the_spec_formula(additive):
    net = _fixed_net(additive)
    loss = [0.0, 0.3, 2.5, 7.0, 15.0, 1.0]
    loss_diff = [-2.0, 0.1, 1.5, -0.4, 3.0, 0.0]
    label = [0, 0, 0, 1, 0, 1]
    epoch = [0, 18, 55, 99, 120, 90]
    features = MentorFeatures(torch.tensor(loss), torch.tensor(loss_diff), torch.tensor(label), torch.tensor(epoch))
    expected = _by_hand(net, loss, loss_diff, label, epoch)
    assert_allclose(net.weight(features).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_output_bias_switch_changes_the_function():
    seed_layer, additive = _fixed_net(False), _fixed_net(True)
    features = MentorFeatures.build([1.0, 2.0], [0.5, -0.5], epoch=30)
    assert not torch.allclose(seed_layer.weight(features), additive.weight(features))
    assert count_trainable_parameters(additive) == 257


def test_initialisation_follows_the_2018_initialisers():
    net = MentorNet()
    assert float(net.label_embedding.detach().abs().max()) <= math.sqrt(6 / 4)
    assert float(net.epoch_embedding.abs().max()) <= math.sqrt(6 / 105)
    assert float(net.lstm_fw_kernel.detach().abs().max()) <= math.sqrt(6 / 7)
    assert float(net.lstm_fw_bias.detach().abs().max()) == 0.0 and float(net.lstm_bw_bias.detach().abs().max()) == 0.0
    big = MentorNet(MentorNetConfig(num_fc_nodes=2000))
    assert abs(float(big.fc1_weight.detach().std()) - 1.0) < 0.05  # N(0, 1) (tf.random_normal)


def test_seeded_initialisation_is_reproducible():
    a, b = MentorNet(), MentorNet()
    a.reset_parameters(torch.Generator().manual_seed(3))
    b.reset_parameters(torch.Generator().manual_seed(3))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_gradients_reach_only_live_parameters():
    net = MentorNet()
    features = MentorFeatures.build(torch.rand(16) * 5, torch.randn(16), epoch=torch.randint(0, 100, (16,)))
    net(features).sum().backward()
    assert net.epoch_embedding.grad is None
    assert float(net.lstm_fw_kernel.grad[2].abs().sum()) == 0.0  # the recurrent row sees h_prev = 0
    assert float(net.lstm_fw_kernel.grad[:, 2:].abs().sum()) == 0.0  # forget and output gates
    assert float(net.lstm_fw_kernel.grad[:2, :2].abs().sum()) > 0.0
    assert float(net.fc1_weight.grad.abs().sum()) > 0.0


def test_label_outside_the_embedding_is_an_error():
    with pytest.raises(ValueError, match="label feature"):
        MentorNet().weight(MentorFeatures.build([1.0], [0.0], epoch=0, label=3))


def test_weight_has_no_gradient_and_matches_loss_shape():
    net = MentorNet()
    features = MentorFeatures.build(torch.rand(5), torch.randn(5), epoch=10)
    weights = net.weight(features)
    assert weights.shape == (5,) and not weights.requires_grad
    assert float(weights.min()) >= 0.0 and float(weights.max()) <= 1.0
