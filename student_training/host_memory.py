"""Host memory: keep the memory a training step frees for the next step, instead of handing it back to the
kernel and taking it again as fresh, zero-filled pages.

glibc's ``malloc`` serves a request above its *mmap threshold* (128 KiB at first, raised as far as 32 MiB as
large blocks are freed) with a new ``mmap``, unmapped again on ``free``, and gives the top of its heap back to
the kernel once more than its *trim threshold* is free there. A StudentNet step on the CPU frees and asks for
the same large activation buffers every step (``small_cnn``'s first convolution alone writes 12.8 MB a batch of
128), so every step's buffers came back as new pages, each one a page fault that the kernel fills with zeros.
Measured on 2 cores (README, "Speed"): a 2-epoch ``small_cnn`` run of ``train-student`` on 5,000 Fashion-MNIST
images took 1.62 million minor page faults, and 0.14 million with :func:`keep_freed_memory`, in 0.82 of the
time (median of five paired whole-process runs); its results are bit for bit the same (only where the memory
comes from changes).

:func:`keep_freed_memory` fixes both thresholds at 1 GiB with ``mallopt`` (``M_MMAP_THRESHOLD`` and
``M_TRIM_THRESHOLD``, glibc's documented tunables), so freed buffers stay in the process and are reused. The
cost is resident memory: the process keeps its peak heap (about 60 MiB more for that run). ``cli.py`` and the
benchmarks call it once at start-up; a library user can call it too. It does nothing (and returns the reason)
where ``malloc`` is not glibc's, where the user has set glibc's own malloc variables (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_MAX_``, or ``GLIBC_TUNABLES`` with a
``glibc.malloc`` entry: theirs win), or with ``MENTORNET_KEEP_FREED_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["KEEP_FREED_BYTES", "keep_freed_memory"]

KEEP_FREED_BYTES = 1 << 30
"""Both thresholds, in bytes: blocks up to 1 GiB come from the heap, and up to 1 GiB free at its top stays there."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_GLIBC_MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def keep_freed_memory() -> str | None:
    """Fix glibc's mmap and trim thresholds at :data:`KEEP_FREED_BYTES` for this process (see the module doc).

    Returns ``None`` when both were set, else the reason nothing was changed (not glibc, the user's own malloc
    settings, ``MENTORNET_KEEP_FREED_MEMORY=0``, or ``mallopt`` refusing a value). Never raises; calling it
    again is harmless."""
    if os.environ.get("MENTORNET_KEEP_FREED_MEMORY", "1") == "0":
        return "MENTORNET_KEEP_FREED_MEMORY=0"
    mine = [name for name in _GLIBC_MALLOC_VARIABLES if name in os.environ]
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        mine.append("GLIBC_TUNABLES")
    if mine:
        return f"malloc is configured by {', '.join(mine)}"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "malloc is not glibc's"
    try:
        mallopt = ctypes.CDLL(None).mallopt  # this process's own C library
    except (OSError, AttributeError):
        return "mallopt is not available"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # The mmap threshold first: setting either one turns glibc's dynamic thresholds off.
    for option, name in ((_M_MMAP_THRESHOLD, "M_MMAP_THRESHOLD"), (_M_TRIM_THRESHOLD, "M_TRIM_THRESHOLD")):
        if mallopt(option, KEEP_FREED_BYTES) != 1:
            return f"mallopt refused {name}={KEEP_FREED_BYTES}"
    return None
