"""DeviceLoader: batches with indices, exact crop/flip/standardisation (spec §4.7), determinism, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from student_training import DeviceLoader
from student_training.loader import crop_flip, per_image_standardize


@pytest.fixture
def pool():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.arange(50) % 7
    return images, labels


def _reference_standardize(image: np.ndarray) -> np.ndarray:
    """TF per_image_standardization, written from its documentation."""
    image = image.astype(np.float64)
    return (image - image.mean()) / max(image.std(), 1.0 / np.sqrt(image.size))


def _reference_crop_flip(image: np.ndarray, dy: int, dx: int, flip: bool, pad: int) -> np.ndarray:
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    crop = padded[:, dy:dy + image.shape[1], dx:dx + image.shape[2]]
    return crop[:, :, ::-1] if flip else crop


def test_eval_batches_cover_the_indices_in_order(pool):
    images, labels = pool
    indices = torch.tensor([3, 9, 1, 40, 22])
    loader = DeviceLoader(images, labels, indices, batch_size=2, augment=False, shuffle=False, drop_last=False)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    seen = torch.cat([b[2] for b in batches])
    torch.testing.assert_close(seen, indices)
    for inputs, batch_labels, sample_indices in batches:
        assert inputs.dtype == torch.float32 and inputs.shape[1:] == (3, 8, 8)
        torch.testing.assert_close(batch_labels, labels[sample_indices])
        for row, index in zip(inputs, sample_indices):
            np.testing.assert_allclose(row.numpy(), _reference_standardize(images[index].numpy()), rtol=1e-5,
                                       atol=1e-5)


def test_training_epoch_is_a_permutation_with_drop_last(pool):
    images, labels = pool
    loader = DeviceLoader(images, labels, batch_size=16, augment=True, seed=1)
    seen = torch.cat([b[2] for b in loader])
    assert len(loader) == 3 and len(seen) == 48 and len(set(seen.tolist())) == 48


def test_crop_flip_matches_a_numpy_reference(pool):
    images = pool[0][:6]
    dy, dx = torch.tensor([0, 8, 3, 4, 1, 8]), torch.tensor([8, 0, 5, 4, 7, 2])
    flip = torch.tensor([True, False, True, False, True, True])
    out = crop_flip(images, dy, dx, flip, pad=4)
    for i in range(6):
        expected = _reference_crop_flip(images[i].numpy(), int(dy[i]), int(dx[i]), bool(flip[i]), 4)
        np.testing.assert_array_equal(out[i].numpy(), expected)


def test_every_augmented_image_is_a_standardised_crop(pool):
    images, labels = pool
    loader = DeviceLoader(images, labels, batch_size=10, augment=True, pad=2, seed=4)
    inputs, _, sample_indices = next(iter(loader))
    for row, index in zip(inputs.numpy(), sample_indices):
        candidates = [_reference_standardize(_reference_crop_flip(images[index].numpy(), dy, dx, flip, 2))
                      for dy in range(5) for dx in range(5) for flip in (False, True)]
        assert min(np.abs(row - c).max() for c in candidates) < 1e-4


def test_no_augmentation_when_pad_zero_and_no_flip(pool):
    images, labels = pool
    plain = DeviceLoader(images, labels, batch_size=10, augment=False, seed=2)
    augmented = DeviceLoader(images, labels, batch_size=10, augment=True, pad=0, flip=False, seed=2)
    for (a, _, ia), (b, _, ib) in zip(plain, augmented):
        torch.testing.assert_close(ia, ib)
        torch.testing.assert_close(a, b)


def test_constant_image_standardises_to_zero_not_nan():
    images = torch.full((2, 1, 4, 4), 7, dtype=torch.uint8)
    out = per_image_standardize(images.float())
    torch.testing.assert_close(out, torch.zeros_like(out))


def test_same_seed_same_batches_and_epochs_differ(pool):
    images, labels = pool
    first = DeviceLoader(images, labels, batch_size=8, augment=True, seed=9)
    again = DeviceLoader(images, labels, batch_size=8, augment=True, seed=9)
    epoch0, epoch0_again, epoch1 = list(first), list(again), list(first)
    for (a, _, ia), (b, _, ib) in zip(epoch0, epoch0_again):
        torch.testing.assert_close(ia, ib)
        torch.testing.assert_close(a, b)
    assert not torch.equal(epoch0[0][2], epoch1[0][2])
    assert first.epoch == 2


def test_set_epoch_reproduces_a_later_epoch_after_resume(pool):
    images, labels = pool
    original = DeviceLoader(images, labels, batch_size=8, augment=True, seed=9)
    for _ in range(3):
        list(original)
    expected = list(original)  # epoch 3
    resumed = DeviceLoader(images, labels, batch_size=8, augment=True, seed=9)
    resumed.set_epoch(3)
    for (a, _, ia), (b, _, ib) in zip(expected, resumed):
        torch.testing.assert_close(ia, ib)
        torch.testing.assert_close(a, b)


def test_channels_last_output(pool):
    images, labels = pool
    loader = DeviceLoader(images, labels, batch_size=4, augment=True, channels_last=True)
    inputs = next(iter(loader))[0]
    assert inputs.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"images_uint8": torch.zeros(50, 3, 8, 8)}, "images must be a uint8 tensor"),
        ({"labels": torch.zeros(49, dtype=torch.long)}, r"labels must be a tensor of shape \(50,\)"),
        ({"indices": torch.tensor([0, 50])}, r"indices must be in \[0, 50\)"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"batch_size": 64}, r"batch_size 64 exceeds the 50 samples \(drop_last=True\)"),
        ({"pad": -1}, "pad must be a non-negative integer, got -1"),
    ],
)
def test_bad_loader_arguments(pool, change, message):
    arguments = {"images_uint8": pool[0], "labels": pool[1], "indices": None, "batch_size": 8, "augment": True}
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        DeviceLoader(arguments.pop("images_uint8"), arguments.pop("labels"), arguments.pop("indices"), **arguments)
