"""Process-level settings for the command line.

glibc returns freed blocks above ``M_MMAP_THRESHOLD`` (128 KiB by default, adapting up to 32 MiB)
to the kernel at once, so every training step or render tile re-maps its activation buffers and
page-faults them in again: on the calibration machine this doubled wall time (system time equal to
user time).  ``tune_allocator`` raises the mmap threshold to its 64-bit maximum and disables
trimming, so buffers are reused (../shared/notes/cpu-calibration.md, "CPU speed notes").
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def tune_allocator() -> bool:
    """Apply the glibc settings above; a no-op returning False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
    return bool(ok)
