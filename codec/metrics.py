"""Distortion metrics on 8-bit images.

PSNR is computed over all channels of the 8-bit images, ``10 log10(255^2 / MSE)``; identical
images are reported as ``PSNR_CAP`` dB (JSON has no infinity).  MS-SSIM (Wang et al. 2003) comes
from pytorch-msssim with ``data_range=255`` (images need >= 161 px per side for its 5 scales).
"""
from __future__ import annotations

import math

import numpy as np

PSNR_CAP = 100.0


def mse(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) between two uint8 images, capped at ``PSNR_CAP``."""
    m = mse(a, b)
    return PSNR_CAP if m == 0 else min(PSNR_CAP, 10.0 * math.log10(255.0**2 / m))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM between two uint8 ``(H, W, C)`` images, or None when the image is too small."""
    if min(a.shape[0], a.shape[1]) < 161:
        return None
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    ta = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]
    tb = torch.from_numpy(b.astype(np.float32)).permute(2, 0, 1)[None]
    return float(_ms_ssim(ta, tb, data_range=255.0))
