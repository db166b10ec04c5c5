"""One MKL thread for the calling thread, without changing torch's thread count.

A MentorNet step multiplies matrices of a few hundred entries. With two or more intra-op threads, MKL
(inside torch's CPU build) opens a parallel region for each of them, and when the OpenMP workers sleep
between regions (``OMP_WAIT_POLICY=PASSIVE``, which ``cli.py`` sets) each region first wakes a thread:
measured on the project's 2-core machine, ``torch.addmm`` of ``[128, 9] x [9, 20]`` took 100-170 µs at
two threads and 10 µs at one. ``torch.set_num_threads(1)`` around the step avoids that but changes the
thread count of the whole process, which slowed the student's own products (README, Speed).

``mkl_set_num_threads_local`` (Intel oneMKL, "Threading Control") sets the number of MKL threads of the
calling thread only, and returns the previous local value (0: follow the global setting). This module
finds it in the MKL that torch links (its Fortran entry point, whose integer argument is passed by
reference, so the calling convention is fixed) and checks it by a round trip; where torch has no MKL
(ARM, macOS builds) or the symbol is not exported, :func:`set_local_mkl_threads` does nothing. A thread
count never changes a product's bits here: MKL splits whole output blocks between threads.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

_UNSET = object()
_function = _UNSET
_ARGUMENTS = {}  # thread count -> its by-reference argument, for the counts set every step


def _find():
    """``mkl_set_num_threads_local_`` of torch's MKL, or None."""
    if not torch.backends.mkl.is_available():
        return None
    libraries = [None, *sorted((Path(torch.__file__).parent / "lib").glob("*torch_cpu*"))]
    for library in libraries:
        try:
            function = ctypes.CDLL(None if library is None else str(library)).mkl_set_num_threads_local_
        except (OSError, AttributeError, TypeError):  # no such library or symbol (CDLL(None) is POSIX only)
            continue
        function.restype = ctypes.c_int
        function.argtypes = [ctypes.POINTER(ctypes.c_int)]
        previous = function(ctypes.byref(ctypes.c_int(1)))
        if function(ctypes.byref(ctypes.c_int(previous))) == 1:  # it set 1, and now the previous value again
            return function
    return None


def available() -> bool:
    """Whether :func:`set_local_mkl_threads` reaches an MKL (looked up once)."""
    global _function
    if _function is _UNSET:
        _function = _find()
    return _function is not None


def set_local_mkl_threads(count: int) -> int:
    """Set the MKL thread count of the calling thread (0: the global setting again); returns the previous
    local count, to restore with a second call. A no-op returning 0 where torch has no usable MKL."""
    if _function is _UNSET:
        available()
    if _function is None:
        return 0
    argument = _ARGUMENTS.get(count)
    if argument is None:  # the counts a step sets (1, then usually 0 again) are made once: a step runs cold
        argument = ctypes.byref(ctypes.c_int(count))  # (the reference keeps its c_int alive)
        if count in (0, 1):
            _ARGUMENTS[count] = argument
    return _function(argument)
