"""What a StudentNet run does differently on a GPU: its precision, ``--compile``, and pinned copies.

**Precision** (``--precision``). Only the student's forward passes run under ``torch.autocast``:

* ``bf16``: bfloat16 autocast (a GPU of compute capability 8.0 or more, such as an A100 or H100; CPU
  autocast has bf16 too);
* ``fp16``: float16 autocast with a gradient scaler (``torch.amp.GradScaler``), for V100-, T4- and
  P100-class GPUs. The loss is scaled before the backward pass, a step whose gradients overflowed is
  skipped, and the scale adapts. The scaler reads one flag per step on the host (whether the gradients
  overflowed), so an fp16 step waits for the GPU once; bf16 and fp32 steps do not wait;
* ``fp32``: no autocast;
* ``auto``: bf16 on a GPU that computes in it natively, fp16 on an older GPU, fp32 on the CPU.

Whatever the precision, the per-sample losses are computed in fp32 from fp32 logits, and the MentorNet
weights, loss percentiles and moving averages, MentorMix's mixing and the data-driven dumps are computed
in fp32 outside autocast. The precision may change on ``--resume``: the scaler's state travels in
``last.pt`` (:class:`~student_training.trainer.PrecisionState`), and a run resumed at another precision
starts its scaler afresh or drops it.

**Compilation** (``--compile``): :func:`compile_unavailable_reason` checks, before anything is loaded,
what ``torch.compile``'s inductor backend needs here, without compiling anything.

**Pinned copies**: :func:`to_device` copies a host tensor to a GPU through page-locked memory with
``non_blocking=True``, so the host does not wait for the copy.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import nullcontext

import torch

__all__ = ["PRECISIONS", "Precision", "available_precisions", "compile_unavailable_reason", "cuda_bf16_supported",
           "fp32_region", "needs_pinning", "pin", "resolve_precision", "to_device"]

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


# ------------------------------------------------------------------------------------------ precision


def cuda_bf16_supported() -> bool:
    """Whether the current GPU computes in bf16 natively; emulated bf16 (slower than fp32) does not count."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # a torch before including_emulation, which never counted emulation
        return bool(torch.cuda.is_bf16_supported())


def available_precisions(device: torch.device) -> tuple[str, ...]:
    """The precisions a run on ``device`` may use, the one ``auto`` picks first.

    A GPU: bf16 where native, fp16 (with a gradient scaler) and fp32. The CPU: fp32 and bf16 (CPU
    autocast has bf16); fp16 training relies on a GPU's gradient scaler, so it is refused there.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return ("bf16", "fp16", "fp32") if cuda_bf16_supported() else ("fp16", "fp32")
    return ("fp32", "bf16")


def resolve_precision(name: str, device: torch.device) -> str:
    """``bf16``, ``fp16`` or ``fp32``: what ``--precision name`` means on ``device``; ``ValueError`` (one
    line) when the device cannot compute in it."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose one of: {', '.join(PRECISIONS)}")
    device = torch.device(device)
    available = available_precisions(device)
    if name == "auto":
        return available[0]
    if name not in available:
        raise ValueError(_unavailable(name, device))
    return name


def _unavailable(name: str, device: torch.device) -> str:
    if device.type == "cuda":  # only bf16 is ever missing on a GPU
        return (f"--precision {name}: this GPU ({torch.cuda.get_device_name(device)}) cannot compute in bf16 "
                "natively (that needs compute capability 8.0, e.g. an A100 or H100); use --precision fp16 or auto")
    return (f"--precision {name} is for GPUs (float16 training needs a GPU's gradient scaler); this run is on "
            f"the {device.type}: use --precision bf16 or fp32")


class Precision:
    """A run's arithmetic: the autocast dtype of the student's forward passes and, for fp16, the gradient
    scaler that every optimiser step goes through (:meth:`backward_step`).

    ``Precision.create("fp16", device)`` makes the scaler for ``device``; tests build one for the CPU the
    same way (the command line refuses fp16 on the CPU, the code path is the same).
    """

    def __init__(self, name: str, device_type: str, scaler: "torch.amp.GradScaler | None" = None):
        if name not in AUTOCAST_DTYPES:
            raise ValueError(f"precision must be one of {', '.join(AUTOCAST_DTYPES)}, got {name!r}")
        if (name == "fp16") != (scaler is not None):
            raise ValueError(f"fp16 needs a gradient scaler and only fp16 uses one (precision {name}, "
                             f"scaler {'given' if scaler is not None else 'none'})")
        self.name, self.device_type, self.scaler = name, device_type, scaler

    @classmethod
    def create(cls, name: str, device: torch.device) -> "Precision":
        device = torch.device(device)
        scaler = None
        if name == "fp16":
            scaler = torch.amp.GradScaler(device.type)
        return cls(name, device.type, scaler)

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None: fp32, no autocast)."""
        return AUTOCAST_DTYPES[self.name]

    def autocast(self):
        """The context for the student's forward passes (nothing else runs inside it)."""
        return torch.autocast(self.device_type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Clear the gradients, back-propagate ``loss`` and step; with the scaler, the scaled loss is
        back-propagated, a step with inf/NaN gradients is skipped, and the scale is updated."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def describe(self) -> str:
        if self.name == "fp32":
            return "fp32"
        scaler = " with a gradient scaler" if self.scaler is not None else ""
        return f"{self.name} (autocast{scaler}; losses, MentorNet weights and percentiles in fp32)"

    def state_dict(self) -> dict:
        return {"name": self.name, "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        """Take the scaler's state from a run saved at fp16; a run saved at another precision leaves a new
        scaler as it is (and this run's scaler-free precision ignores a saved one)."""
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def fp32_region(device: torch.device):
    """A context in which autocast is off on ``device``, for computations that must stay fp32 even when a
    caller's forward passes run under autocast (the MentorNet weighting in any loop)."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, enabled=False) if torch.amp.is_autocast_available(device_type) \
        else nullcontext()


# ---------------------------------------------------------------------------------------- compilation


def compile_unavailable_reason(device: torch.device) -> str | None:
    """Why ``torch.compile`` (TorchDynamo and its inductor backend) cannot run on ``device`` here, or None.

    Checked without compiling anything: that TorchDynamo supports this Python and platform; for a GPU,
    that Triton is installed and supports the card (``torch.utils._triton.has_triton``: compute capability
    7.0 or more) and that a C compiler (``$CC``, gcc or clang) is on PATH to build Triton's launchers; for
    the CPU, that the C++ compiler inductor calls (``torch._inductor.config.cpp.cxx``: ``$CXX`` or g++) is
    on PATH.
    """
    device = torch.device(device)
    try:
        from torch import _dynamo
        from torch._inductor import config as inductor_config
    except Exception as error:  # noqa: BLE001 - a broken install is a reason like any other
        return f"torch.compile cannot be imported ({type(error).__name__}: {error})"
    if not _dynamo.is_dynamo_supported():
        return f"TorchDynamo does not support Python {sys.version.split()[0]} on {sys.platform}"
    if device.type == "cuda":
        if not _has_triton():
            return "Triton, inductor's GPU compiler, is not installed or does not support this GPU"
        compilers = [name for name in (os.environ.get("CC"), "gcc", "clang") if name]
        if not any(shutil.which(name) for name in compilers):
            return f"no C compiler ({', '.join(compilers)}) on PATH to build Triton's launchers; set CC"
        return None
    compilers = [name for name in inductor_config.cpp.cxx if name]
    if not any(shutil.which(name) for name in compilers):
        return f"no C++ compiler ({', '.join(compilers)}) on PATH for inductor's CPU code; install one or set CXX"
    return None


def _has_triton() -> bool:
    try:
        from torch.utils._triton import has_triton
        return bool(has_triton())
    except Exception:  # noqa: BLE001 - an unusable Triton is no Triton
        return False


# ------------------------------------------------------------------------------------- pinned copies


def needs_pinning(tensor: torch.Tensor, device: torch.device) -> bool:
    """A host tensor bound for a GPU is copied through pinned memory, so the host does not wait."""
    return torch.device(device).type == "cuda" and tensor.device.type == "cpu"


def pin(tensor: torch.Tensor) -> torch.Tensor:
    """A page-locked copy of a host tensor (needs a CUDA build and a GPU)."""
    return tensor.pin_memory()


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` on ``device``; a host-to-GPU copy is pinned and non-blocking (the caching host
    allocator keeps the pinned buffer until the copy is done)."""
    device = torch.device(device)
    if needs_pinning(tensor, device):
        return pin(tensor).to(device, non_blocking=True)
    return tensor.to(device)
