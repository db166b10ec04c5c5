"""keep_freed_memory: freed large buffers are reused without page faults, and the user's malloc settings win."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import cli
from student_training import host_memory
from student_training.host_memory import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Sixteen 48 MiB tensors, each filled and freed in turn: above glibc's largest dynamic mmap threshold (32 MiB),
# so by default every one is a fresh mapping, 12,288 new pages. Prints the page faults after the first.
PROBE = """
import resource, sys, torch
from student_training.host_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() is None
torch.empty(12 << 20).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(15):
    torch.empty(12 << 20).fill_(1.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("MALLOC_") and key not in ("GLIBC_TUNABLES", "MENTORNET_KEEP_FREED_MEMORY")}
    result = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt's thresholds are glibc's")
def test_freed_buffers_are_reused_without_page_faults():
    default, kept = _page_faults("default"), _page_faults("keep")
    assert default > 15 * 12_000  # a fresh mapping per tensor: 12,288 pages each
    # the first tensor's pages, reused (a small block left at the heap's top can make one more tensor's worth)
    assert kept < 3 * 12_288


@pytest.mark.parametrize("variable, value, reason", [
    ("MENTORNET_KEEP_FREED_MEMORY", "0", "MENTORNET_KEEP_FREED_MEMORY=0"),
    ("MALLOC_TRIM_THRESHOLD_", "131072", "malloc is configured by MALLOC_TRIM_THRESHOLD_"),
    ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536", "malloc is configured by GLIBC_TUNABLES"),
])
def test_the_users_own_setting_wins(monkeypatch, variable, value, reason):
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(host_memory.ctypes, "CDLL", lambda *args: pytest.fail("mallopt was called"))
    assert keep_freed_memory() == reason


def test_the_cli_keeps_freed_memory(monkeypatch):
    calls = []
    monkeypatch.setattr(host_memory, "keep_freed_memory", lambda: calls.append(1))
    monkeypatch.setattr(sys, "argv", ["cli.py", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 0 and calls == [1]
