"""The feature definition: epoch encoding, the TF "nearest" percentile and the loss moving average."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from curricula.features import (LossMovingAverage, MentorFeatures, batch_loss_percentile, check_feature_spec,
                                encode_epoch, feature_spec, percentile_index, progress_percent)


def test_encode_epoch_truncates_and_clips_above_only():
    encoded = encode_epoch(torch.tensor([0.0, 0.9, 17.99, 99.0, 99.5, 150.0]))
    assert encoded.tolist() == [0, 0, 17, 99, 99, 99]
    assert encoded.dtype == torch.int64
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        encode_epoch(torch.tensor([-1]))


def test_progress_percent_is_floor_of_percent_clipped_at_99():
    assert progress_percent(0, 39000) == 0
    assert progress_percent(389, 39000) == 0
    assert progress_percent(390, 39000) == 1
    assert progress_percent(38999, 39000) == 99
    assert progress_percent(39000, 39000) == 99
    with pytest.raises(ValueError):
        progress_percent(1, 0)


@pytest.mark.parametrize("p, expected", [(0.7, 89), (0.75, 95), (0.8, 102), (0.6, 76), (0.5, 63)])
def test_percentile_index_matches_tf_nearest_for_batch_128(p, expected):
    # Spec §4.1 step 7: ascending indices for B = 128; numpy "nearest" would give 64 for p = 0.5.
    assert percentile_index(128, p) == expected


def test_percentile_index_equals_numpy_nearest_away_from_ties():
    for batch in (7, 32, 100, 129):
        for p in (0.3, 0.61, 0.77, 0.93):
            values = np.arange(batch, dtype=np.float64)
            assert values[percentile_index(batch, p)] == np.percentile(values, 100 * p, method="nearest")


def test_batch_loss_percentile_picks_that_order_statistic():
    loss = torch.randperm(128).float()
    assert float(batch_loss_percentile(loss, 0.7)) == 89.0
    assert float(batch_loss_percentile(loss, 0.5)) == 63.0
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        batch_loss_percentile(loss, 0.0)


def test_moving_average_starts_at_zero_and_uses_the_updated_value():
    average = LossMovingAverage(p=0.5, decay=0.5)
    assert float(average.value) == 0.0
    first = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])  # p=0.5 of 5 values: index 2 -> 3.0
    diff = average.loss_diff(first)
    assert_allclose(float(average.value), 0.5 * 0 + 0.5 * 3.0)
    assert_allclose(diff.numpy(), (first - 1.5).numpy())
    second = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0])
    average.update(second)
    assert_allclose(float(average.value), 0.5 * 1.5 + 0.5 * 30.0)
    state = average.state_dict()
    restored = LossMovingAverage()
    restored.load_state_dict(state)
    assert float(restored.value) == float(average.value) and restored.p == 0.5


def test_moving_average_rejects_bad_settings():
    with pytest.raises(ValueError, match="decay"):
        LossMovingAverage(decay=1.0)
    with pytest.raises(ValueError, match="percentile"):
        LossMovingAverage(p=1.5)


def test_mentor_features_validate_their_inputs():
    features = MentorFeatures.build([0.1, 0.2], [0.0, -1.0], epoch=3)
    assert features.epoch.tolist() == [3, 3] and features.label.tolist() == [0, 0]
    assert features.as_matrix().shape == (2, 4)
    assert MentorFeatures.from_matrix(features.as_matrix()).epoch.tolist() == [3, 3]
    with pytest.raises(ValueError, match="equal length"):
        MentorFeatures(torch.zeros(2), torch.zeros(3), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        MentorFeatures(torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="1-D"):
        MentorFeatures(torch.zeros(2, 2), torch.zeros(2), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))


def test_feature_spec_check_names_the_mismatch():
    check_feature_spec(feature_spec())
    spec = feature_spec()
    spec["names"] = ["loss", "label"]
    with pytest.raises(ValueError, match="names"):
        check_feature_spec(spec)
    spec = feature_spec()
    spec["epoch_encoding"] = "real_epochs"
    with pytest.raises(ValueError, match="epoch_encoding"):
        check_feature_spec(spec)
