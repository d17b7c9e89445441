"""Colour conversion and rounding (the only module that maps between floats and 8-bit).

Images travel inside the codec as float32 arrays in ``[0, 1]`` of shape ``(H, W, C)``.
``to_uint8`` is the single rounding rule: ``clip(round(255 * v), 0, 255)`` with round-half-even.
"""
from __future__ import annotations

import numpy as np
import torch


def from_uint8(a: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, C)`` -> ``float32`` in ``[0, 1]``."""
    return a.astype(np.float32) / np.float32(255.0)


def to_uint8(v: np.ndarray | torch.Tensor) -> np.ndarray:
    """Float values in ``[0, 1]`` -> ``uint8`` with clipping and round-half-even."""
    if isinstance(v, torch.Tensor):
        return (v.detach() * 255.0).round().clamp_(0, 255).to(torch.uint8).cpu().numpy()
    return np.clip(np.rint(np.asarray(v, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def quantize_uint8(v: torch.Tensor) -> torch.Tensor:
    """The 8-bit rounding of ``to_uint8`` kept as floats in ``[0, 1]`` (for measuring PSNR)."""
    return (v * 255.0).round().clamp(0, 255) / 255.0


# BT.601 full-range YCbCr (as in JPEG/JFIF), on values in [0, 1]; chroma centred on 0.5.
_RGB2YCC = torch.tensor([[0.299, 0.587, 0.114],
                         [-0.168736, -0.331264, 0.5],
                         [0.5, -0.418688, -0.081312]])
_YCC2RGB = torch.tensor([[1.0, 0.0, 1.402],
                         [1.0, -0.344136, -0.714136],
                         [1.0, 1.772, 0.0]])
_CENTRE = torch.tensor([0.0, 0.5, 0.5])


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """``(..., C)`` with C >= 3: the first three channels RGB -> YCbCr (JFIF); others (alpha) kept."""
    if x.shape[-1] < 3:
        return x
    ycc = x[..., :3] @ _RGB2YCC.to(x).T + _CENTRE.to(x)
    return torch.cat([ycc, x[..., 3:]], dim=-1)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`."""
    if x.shape[-1] < 3:
        return x
    rgb = (x[..., :3] - _CENTRE.to(x)) @ _YCC2RGB.to(x).T
    return torch.cat([rgb, x[..., 3:]], dim=-1)
