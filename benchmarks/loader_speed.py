"""Is the device loader a bottleneck? Time per batch of DeviceLoader vs one SGD step of a small student.

Spec §4.7 augmentation (pad-and-crop, flip, per-image standardisation) on synthetic uint8 data, batch 128,
at 32x32x3 (CIFAR) and 28x28x1 (Fashion-MNIST), against one forward + backward + SGD step of ``mlp`` and
``small_cnn``. Run: ``python benchmarks/loader_speed.py [--threads N] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from student_training import DeviceLoader, create_student
from student_training.host_memory import keep_freed_memory


def _seconds_per_call(function, *, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        function()
    _synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    _synchronize()
    return (time.perf_counter() - start) / repeats


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def loader_seconds(channels: int, size: int, batch: int, device: str, repeats: int, pad: int) -> float:
    generator = torch.Generator().manual_seed(0)
    count = batch * (repeats + 3)
    images = torch.randint(0, 256, (count, channels, size, size), dtype=torch.uint8, generator=generator)
    loader = DeviceLoader(images, torch.zeros(count, dtype=torch.long), batch_size=batch, augment=True, pad=pad,
                          seed=0, device=device, channels_last=channels > 1)
    batches = iter(loader)
    return _seconds_per_call(lambda: next(batches), repeats=repeats)


def step_seconds(name: str, channels: int, size: int, batch: int, device: str, repeats: int) -> float:
    model = create_student(name, num_classes=10, in_channels=channels, image_size=size, seed=0).to(device)
    inputs = torch.randn(batch, channels, size, size, device=device)
    if channels > 1:
        model = model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 10, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()

    return _seconds_per_call(step, repeats=repeats)


def main() -> None:
    keep_freed_memory()  # as cli.py does, so that the students train as train-student trains them
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--pad", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"device {args.device}, {args.threads} thread(s), batch {args.batch_size}, pad {args.pad}, "
          f"torch {torch.__version__}")
    header = f"{'input':<10}{'loader ms':>10}{'student':>11}{'step ms':>9}{'img/s':>8}{'loader/step':>13}"
    print(header)
    print("-" * len(header))
    for channels, size in ((3, 32), (1, 28)):
        loader = loader_seconds(channels, size, args.batch_size, args.device, args.repeats, args.pad)
        for name in ("mlp", "small_cnn"):
            step = step_seconds(name, channels, size, args.batch_size, args.device, args.repeats)
            print(f"{size}x{size}x{channels:<4}{loader * 1e3:>10.2f}{name:>11}{step * 1e3:>9.2f}"
                  f"{args.batch_size / step:>8.0f}{loader / step:>13.2f}")


if __name__ == "__main__":
    main()
