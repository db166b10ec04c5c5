"""A device-resident batch loader with batched augmentation (spec §4.7), in the spirit of airbench.

The uint8 images stay on the device. Each batch is gathered, randomly cropped from a zero-padded copy
(pad 2 for the ResNets, 8 for CifarNet in the 2018 code), randomly flipped, converted to float and
standardised per image, (x − mean) / max(std, 1/√numel) as TF's ``per_image_standardization``; all
as tensor operations on the whole batch. Every batch comes with its sample indices, which per-example
state (loss histories, data-driven dumps) needs.

Randomness is drawn on the CPU from a generator seeded by (seed, epoch), so the batches of epoch k are
the same on any device and after a resume: call :meth:`DeviceLoader.set_epoch` with the number of
epochs already done. The 2018 pipeline shuffled only within a window of about 256 examples (spec §7,
item 20); here every epoch is a full permutation.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

from .accelerator import to_device

__all__ = ["DeviceLoader", "crop_flip", "per_image_standardize"]


def per_image_standardize(images: torch.Tensor) -> torch.Tensor:
    """TF ``per_image_standardization`` of a float batch N x C x H x W (population std).

    Two passes with a dot product: ``torch.std`` over rows is several times slower on the CPU.
    """
    flat = images.flatten(1)  # N x (C·H·W), also for N = 0
    centered = flat - flat.mean(dim=1, keepdim=True)
    variance = torch.linalg.vecdot(centered, centered) / flat.shape[1]
    scale = variance.sqrt().clamp(min=1.0 / math.sqrt(flat.shape[1]))
    return (centered / scale.unsqueeze(1)).view(images.shape)


def crop_flip(images: torch.Tensor, offset_y: torch.Tensor, offset_x: torch.Tensor, flip: torch.Tensor,
              pad: int) -> torch.Tensor:
    """Crop each image of ``images`` (N x C x H x W) from its zero-padded copy at (offset_y, offset_x) in
    [0, 2·pad], then mirror it horizontally where ``flip``. One flat gather for the whole batch."""
    count, channels, height, width = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad)) if pad else images
    padded_height, padded_width = height + 2 * pad, width + 2 * pad
    device = images.device
    rows = offset_y.view(-1, 1) + torch.arange(height, device=device)
    columns = torch.arange(width, device=device).expand(count, width)
    columns = torch.where(flip.view(-1, 1), width - 1 - columns, columns) + offset_x.view(-1, 1)
    planes = torch.arange(count * channels, device=device).view(count, channels, 1, 1)
    flat = (planes * padded_height + rows.view(count, 1, height, 1)) * padded_width + columns.view(count, 1, 1, width)
    return padded.reshape(-1)[flat]


class DeviceLoader:
    """Batches ``(images_float, labels, sample_indices)`` over ``indices`` of a device-resident pool."""

    def __init__(
        self,
        images_uint8: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor | None = None,
        *,
        batch_size: int,
        augment: bool,
        pad: int = 4,
        flip: bool = True,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        device: torch.device | str | None = None,
        channels_last: bool = False,
    ) -> None:
        _check_inputs(images_uint8, labels, indices, batch_size, pad)
        self.device = torch.device(device) if device is not None else images_uint8.device
        self.images = to_device(images_uint8, self.device)  # one pinned copy; then the data stays on the GPU
        self.labels = labels.to(self.device, torch.int64)
        all_indices = torch.arange(len(labels)) if indices is None else indices.detach().cpu().to(torch.int64)
        self.indices = all_indices
        self.batch_size = int(batch_size)
        self.augment, self.pad, self.flip = bool(augment), int(pad), bool(flip)
        self.shuffle, self.drop_last, self.seed = bool(shuffle), bool(drop_last), int(seed)
        self.channels_last = bool(channels_last)
        self.epoch = 0
        if drop_last and len(all_indices) < batch_size:
            raise ValueError(f"batch_size {batch_size} exceeds the {len(all_indices)} samples (drop_last=True)")

    def __len__(self) -> int:
        count = len(self.indices)
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use ``epoch`` (e.g. the number of epochs done before a resume)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """One pass over the data with the current epoch's randomness; then the epoch advances by one."""
        epoch = self.epoch
        self.epoch += 1
        return self.epoch_batches(epoch)

    def epoch_batches(self, epoch: int, shard: slice | None = None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch``, without touching :attr:`epoch`.

        With ``shard`` (a slice of positions within a batch, for one data-parallel rank) the images and
        labels are that part of each batch, and the indices are still those of the whole batch.
        """
        order, offset_y, offset_x, flips = self._draw(epoch)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch_indices = order[start:start + self.batch_size]
            window = slice(start, start + len(batch_indices)) if shard is None else \
                slice(start + shard.start, start + shard.stop)
            sample_indices = order[window]
            images = self.images[sample_indices]
            if self.augment:
                images = crop_flip(images, offset_y[window], offset_x[window], flips[window], self.pad)
            yield self.prepare(images), self.labels[sample_indices], batch_indices

    def prepare(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """Float, per-image standardised (and channels-last if asked) batch from uint8 images."""
        images = per_image_standardize(images_uint8.float())
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _draw(self, epoch: int) -> tuple[torch.Tensor, ...]:
        """The epoch's permutation and augmentation draws, from a CPU generator seeded by (seed, epoch)."""
        state = int(np.random.SeedSequence([self.seed, int(epoch)]).generate_state(1, dtype=np.uint64)[0] >> 1)
        generator = torch.Generator().manual_seed(state)
        count = len(self.indices)
        order = self.indices[torch.randperm(count, generator=generator)] if self.shuffle else self.indices
        return tuple(t.to(self.device) for t in (order, *self._augment_draws(count, generator)))

    def _augment_draws(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Crop offsets (y, x) and flips for ``count`` images, from a CPU generator."""
        span = 2 * self.pad + 1
        offset_y = torch.randint(0, span, (count,), generator=generator)
        offset_x = torch.randint(0, span, (count,), generator=generator)
        flips = (torch.rand(count, generator=generator) < 0.5) & self.flip
        return offset_y, offset_x, flips

    def batch_of(self, sample_indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The prepared images of ``sample_indices`` (pool indices), augmented as this loader augments, with the
        draws taken from ``generator`` (a CPU generator) instead of the epoch's."""
        images = self.images[sample_indices.to(self.device)]
        if self.augment:  # the draws travel to the device in one copy
            offset_y, offset_x, flips = torch.stack(self._augment_draws(len(sample_indices), generator)).to(
                self.device).unbind()
            images = crop_flip(images, offset_y, offset_x, flips.bool(), self.pad)
        return self.prepare(images)


def _check_inputs(images, labels, indices, batch_size, pad) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be a uint8 tensor N x C x H x W, got {_describe(images)}")
    if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be a tensor of shape ({images.shape[0]},), got {_describe(labels)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
    if indices is not None:
        if not isinstance(indices, torch.Tensor) or indices.ndim != 1 or indices.is_floating_point():
            raise ValueError(f"indices must be a 1-D integer tensor, got {_describe(indices)}")
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= images.shape[0]):
            raise ValueError(f"indices must be in [0, {images.shape[0]}), got range "
                             f"[{int(indices.min())}, {int(indices.max())}]")


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__
