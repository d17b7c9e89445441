"""Uniform scalar quantization of network parameters.

Each coded tensor has one step ``Delta`` (per tensor; a layer's weight matrix and bias travel as
one tensor ``[W | b]``).  Codes are ``q = round(w / Delta)`` and the decoder uses ``q * Delta``.
Steps come from a table of 256 entries that are exact binary floats, so the decoder needs one
byte per tensor and rebuilds the step bit-exactly::

    step(i) = (16 + i mod 16) * 2^(floor(i / 16) - 20)        (about 4.4 % apart, 1.5e-5 .. 0.97)

Quantization-aware fine-tuning uses the straight-through estimator (Bengio et al. 2013):
forward ``q * Delta``, backward identity.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

N_STEPS = 256


def step_from_index(index: int) -> float:
    """The quantization step of table entry ``index`` (exact in binary floating point)."""
    if not 0 <= index < N_STEPS:
        raise ValueError(f"step index {index} out of range")
    return math.ldexp(16 + index % 16, index // 16 - 20)


_TABLE = np.array([step_from_index(i) for i in range(N_STEPS)])


def index_for_step(step: float) -> int:
    """The table entry nearest (in log scale) to ``step``, clamped to the table."""
    if not step > 0 or not math.isfinite(step):
        return 0
    return int(np.argmin(np.abs(np.log(_TABLE) - math.log(step))))


def step_index_for_bits(w: torch.Tensor, bits: float) -> int:
    """Step giving about ``2^(bits-1) - 1`` levels on each side of zero for tensor ``w``.

    ``Delta = max|w| / (2^(bits-1) - 1)``; ``bits`` may be fractional (rate control scales it).
    """
    peak = float(w.detach().abs().max()) if w.numel() else 0.0
    levels = max(2.0 ** (bits - 1.0) - 1.0, 0.5)
    return index_for_step(peak / levels if peak > 0 else step_from_index(0))


def quantize(w: torch.Tensor, step: float) -> np.ndarray:
    """Integer codes ``round(w / step)`` as ``int64`` numpy array (flattened)."""
    import torch

    return torch.round(w.detach().double() / step).to(torch.int64).reshape(-1).cpu().numpy()


def dequantize(codes: np.ndarray, step: float, shape: tuple[int, ...]) -> torch.Tensor:
    """``codes * step`` as a float32 tensor of ``shape``.

    Exact in float32: steps have a 5-bit mantissa and codes at most 17 bits (|q| <= 65535)."""
    import torch

    return torch.from_numpy(codes.astype(np.float32) * np.float32(step)).reshape(shape)


def fake_quant(w: torch.Tensor, step: float) -> torch.Tensor:
    """Straight-through quantization: value ``round(w/step)*step``, gradient of identity."""
    import torch

    return w + (torch.round(w / step) * step - w).detach()
