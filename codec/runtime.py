"""Process-level settings for the command line.

glibc returns freed blocks above ``M_MMAP_THRESHOLD`` (128 KiB by default, adapting up to 32 MiB)
to the kernel at once, so every training step or render tile re-maps its activation buffers and
page-faults them in again: on the calibration machine this doubled wall time (system time equal to
user time).  ``tune_allocator`` raises the mmap threshold to its 64-bit maximum and disables
trimming, so buffers are reused (../shared/notes/cpu-calibration.md, "CPU speed notes").

``set_threads`` sets how many CPU threads torch's tensor work uses (``--threads``).  torch's default
is one per core, which is right for one encode on an idle machine and wrong for several at once:
``fast`` encodes of six Kodak images at q70, run in pairs on 2 cores with two threads each, took
16.5-19 s and their time caps left 0-1 RDOQ sweeps of 4 (up to 28 % more bytes, or up to 1.2 dB less),
where with one thread each they took 10 s and wrote exactly the files one encode alone writes in
7-9 s.  Four threads on two cores spend most of their time waiting on each other at every parallel
region (OpenMP's barriers spin), so every threaded stage slows by 3-7 times, not 2.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from .errors import OptionError

# the most --threads accepts (more is a typo, not a machine)
MAX_THREADS = 1024
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


def set_threads(n: int | None) -> int:
    """Use ``n`` CPU threads for torch's tensor work (``None``: keep torch's default, one per core);
    return the number in use.  Raises :class:`OptionError` outside ``1..MAX_THREADS``."""
    import torch

    if n is not None:
        if not 1 <= n <= MAX_THREADS:
            raise OptionError(f"--threads must be between 1 and {MAX_THREADS}, not {n}")
        torch.set_num_threads(n)
    return torch.get_num_threads()


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the platform has one (a container
    or ``taskset`` limits it), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
