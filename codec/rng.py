"""A random generator the package defines itself, so decoders rebuild values bit-exactly.

torch's and numpy's random streams are not promised stable across versions, so anything the
decoder must regenerate (the Gaussian Fourier-feature matrix) comes from here.

* Uniform integers: SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number
  generators", OOPSLA 2014), pure 64-bit integer arithmetic.
* Approximate standard normals: Irwin-Hall, ``z = sum_{i<12} u_i - 6`` with ``u_i = k_i / 2^24``.
  Every term is a multiple of ``2^-24`` and the sum stays below ``2^5``, so the float64 result
  is exact on every IEEE-754 platform (no ``log``/``cos`` whose last bit may differ).  The
  distribution has mean 0, variance 1 and support ``[-6, 6]``.
"""
from __future__ import annotations

import numpy as np

_MASK = (1 << 64) - 1


class SplitMix64:
    """SplitMix64 stream seeded with a 64-bit integer."""

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)


def normal(seed: int, count: int) -> np.ndarray:
    """``count`` approximate standard normals (Irwin-Hall of 12), exact in float64."""
    rng = SplitMix64(seed)
    out = np.empty(count, dtype=np.float64)
    scale = 1.0 / (1 << 24)
    for n in range(count):
        acc = 0
        for _ in range(12):
            acc += rng.next_u64() >> 40  # top 24 bits
        out[n] = acc * scale - 6.0
    return out
