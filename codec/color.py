"""Colour conversion and rounding (the only module that maps between floats and 8-bit).

Images travel inside the codec as float32 arrays in ``[0, 1]`` of shape ``(H, W, C)``.
``to_uint8`` is the single rounding rule: ``clip(round(255 * v), 0, 255)`` with round-half-even.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def from_uint8(a: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, C)`` -> ``float32`` in ``[0, 1]``."""
    return a.astype(np.float32) / np.float32(255.0)


def to_uint8(v) -> np.ndarray:
    """Float values (numpy array or torch tensor) in ``[0, 1]`` -> ``uint8`` with clipping and round-half-even."""
    if not isinstance(v, np.ndarray) and hasattr(v, "detach"):
        import torch

        return (v.detach() * 255.0).round().clamp_(0, 255).to(torch.uint8).cpu().numpy()
    return np.clip(np.rint(np.asarray(v, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def quantize_uint8(v: torch.Tensor) -> torch.Tensor:
    """The 8-bit rounding of ``to_uint8`` kept as floats in ``[0, 1]`` (for measuring PSNR)."""
    return (v * 255.0).round().clamp(0, 255) / 255.0


# BT.601 full-range YCbCr (as in JPEG/JFIF), on values in [0, 1]; chroma centred on 0.5.
RGB2YCC = np.array([[0.299, 0.587, 0.114],
                    [-0.168736, -0.331264, 0.5],
                    [0.5, -0.418688, -0.081312]], dtype=np.float32)
YCC2RGB = np.array([[1.0, 0.0, 1.402],
                    [1.0, -0.344136, -0.714136],
                    [1.0, 1.772, 0.0]], dtype=np.float32)
CENTRE = np.array([0.0, 0.5, 0.5], dtype=np.float32)


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """``(..., C)`` with C >= 3: the first three channels RGB -> YCbCr (JFIF); others (alpha) kept."""
    import torch

    if x.shape[-1] < 3:
        return x
    ycc = x[..., :3] @ torch.from_numpy(RGB2YCC).to(x).T + torch.from_numpy(CENTRE).to(x)
    return torch.cat([ycc, x[..., 3:]], dim=-1)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`."""
    import torch

    if x.shape[-1] < 3:
        return x
    rgb = (x[..., :3] - torch.from_numpy(CENTRE).to(x)) @ torch.from_numpy(YCC2RGB).to(x).T
    return torch.cat([rgb, x[..., 3:]], dim=-1)


def ycbcr_to_rgb_np(x: np.ndarray) -> np.ndarray:
    """:func:`ycbcr_to_rgb` for float32 numpy arrays ``(..., C)``."""
    if x.shape[-1] < 3:
        return x
    rgb = (x[..., :3] - CENTRE) @ YCC2RGB.T
    return np.concatenate([rgb, x[..., 3:]], axis=-1)
