"""Data-parallel training with PyTorch's own engine: ``torchrun`` + ``DistributedDataParallel``.

The 2018 code (spec §4.3) ran one job per GPU; here one run can use several. Launch::

    torchrun --standalone --nproc_per_node 2 cli.py train-student --batch-size 128 ...

``--batch-size`` is the *global* batch. Every rank draws the same global permutation of the epoch
(:class:`~student_training.loader.DeviceLoader`, seeded by (seed, epoch)) and takes its contiguous slice
of each global batch, rank r the samples ``[r·B/N, (r+1)·B/N)``, so the union is the single-process batch.
The per-sample losses are all-gathered back into global-batch order and every rank runs the
:class:`~student_training.weighting.MentorWeighter` on the whole batch (spec §4.1 steps 3-11: percentile,
moving average, example dropout), with identical state and generator, so the weights equal those of a
single process. Each rank's loss is the mean over its shard of v·ℓ; DDP averages the gradients over ranks,
which gives the mean over the global batch (spec §4.1 step 12).

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment, or ``WORLD_SIZE=1``) nothing here does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from .loader import DeviceLoader


@dataclass(frozen=True)
class World:
    """Where this process sits among the ``torchrun`` workers."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, count: int) -> slice:
        """This rank's contiguous part of ``count`` items (``count`` divisible by the world size)."""
        width = count // self.size
        return slice(self.rank * width, (self.rank + 1) * width)

    def local(self, values: torch.Tensor) -> torch.Tensor:
        """This rank's part of ``values``, a tensor over the global batch (all of it in one process)."""
        return values[self.shard(len(values))] if self.enabled else values


def world_from_env() -> World:
    """The torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); a single process without it."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (set by torchrun)") from None
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"rank {rank} does not fit world size {size}")
    return World(rank=rank, size=size, local_rank=local_rank)


def check_batch_size(batch_size: int, world: World) -> None:
    if batch_size % world.size:
        raise ValueError(f"the world size {world.size} does not divide the batch size {batch_size}: --batch-size is "
                         f"the global batch, pick a multiple of {world.size}")


def init_process_group(world: World, device: torch.device) -> None:
    """nccl on CUDA, gloo on the CPU; then a barrier, so no rank writes before every rank has checked."""
    if not world.enabled:
        return
    if not dist.is_initialized():
        dist.init_process_group(rank=world.rank, world_size=world.size, **process_group_options(device))
    barrier(world)


def process_group_options(device: torch.device) -> dict:
    """The backend (nccl for GPUs, gloo for CPUs) and, on a GPU, the device the process group binds."""
    if device.type == "cuda":
        return {"backend": "nccl", "device_id": device}
    return {"backend": "gloo", "device_id": None}


def barrier(world: World) -> None:
    if world.enabled and dist.is_initialized():
        dist.barrier()


def shutdown(world: World) -> None:
    if world.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    if not world.enabled:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ddp_device_ids(device))


def ddp_device_ids(device: torch.device) -> list[torch.device] | None:
    """DDP's ``device_ids``: this process's one GPU, or None for a CPU module."""
    if device.type == "cuda":
        return [device]
    return None


def shard_batches(loader: DeviceLoader, epoch: int, world: World
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The epoch's batches as :meth:`DeviceLoader.epoch_batches` draws them, this rank's slice of each.

    Yields ``(images, labels, global_indices)``: the shard's images and labels, and the sample indices of
    the whole global batch (in rank order), which the per-sample bookkeeping needs.
    """
    return loader.epoch_batches(epoch, shard=world.shard(loader.batch_size) if world.enabled else None)


def gather_batch(losses: torch.Tensor, logits: torch.Tensor, world: World
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """All ranks' per-sample losses and predictions, concatenated in rank (= global batch) order, from this
    rank's ``losses`` ``[b]`` and ``logits`` ``[b, C]``.

    Under DDP, one collective per step, and the predictions are the classes (the logits' argmax). In one process
    they are the logits themselves: :class:`~student_training.epoch_stats.EpochStats` takes their argmax when it
    is read, once an epoch. The result is detached (the MentorNet weights take no gradient, spec §4.1 13).
    """
    if not world.enabled:
        return losses.detach(), logits.detach()
    predictions = logits.detach().argmax(dim=1)
    local = torch.stack([losses.detach().float(), predictions.float()])
    gathered = torch.empty((world.size * 2, local.shape[1]), dtype=local.dtype, device=local.device)
    _all_gather_single(gathered, local)
    gathered = gathered.view(world.size, 2, -1).transpose(0, 1).reshape(2, -1)
    return gathered[0], gathered[1].long()


# torch 2.13 renamed all_gather_into_tensor (deprecated there) to all_gather_single.
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def all_reduce_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    if world.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_module(module: torch.nn.Module, world: World) -> None:
    """Give every rank rank 0's parameters and buffers (BN running statistics, a re-fitted MentorNet)."""
    if not world.enabled:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


__all__ = ["World", "world_from_env", "check_batch_size", "init_process_group", "process_group_options", "barrier",
           "shutdown", "wrap_model", "ddp_device_ids", "shard_batches", "gather_batch", "all_reduce_sum", "broadcast_module"]
