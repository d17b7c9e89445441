"""Distortion metrics on 8-bit images.

PSNR is computed over all channels of the 8-bit images, ``10 log10(255^2 / MSE)``; identical
images are reported as ``PSNR_CAP`` dB (JSON has no infinity).  MS-SSIM (Wang et al. 2003) comes
from pytorch-msssim with ``data_range=255`` (images need >= 161 px per side for its 5 scales).
For BD-rates MS-SSIM is taken in decibels, ``-10 log10(1 - MS-SSIM)``, as CompressAI and the
learned-compression papers report it, where equal steps are comparable changes (the plots show
MS-SSIM itself).
"""
from __future__ import annotations

import math

import numpy as np

PSNR_CAP = 100.0


def mse(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    if a.dtype == b.dtype == np.uint8:
        # exact in integers (a squared difference is at most 255^2; their sum fits int64), in a
        # fraction of the float64 path's time and memory on a large image
        d = np.subtract(a, b, dtype=np.int32)
        np.multiply(d, d, out=d)
        return float(d.sum(dtype=np.int64)) / d.size if d.size else 0.0
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) between two uint8 images, capped at ``PSNR_CAP``."""
    m = mse(a, b)
    return PSNR_CAP if m == 0 else min(PSNR_CAP, 10.0 * math.log10(255.0**2 / m))


def ms_ssim_db(v: float) -> float:
    """MS-SSIM ``v`` in dB, ``-10 log10(1 - v)``, capped at ``PSNR_CAP`` (``v = 1``: identical)."""
    return PSNR_CAP if v >= 1.0 else min(PSNR_CAP, -10.0 * math.log10(1.0 - v))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM between two uint8 ``(H, W, C)`` images, or None when the image is too small."""
    if min(a.shape[0], a.shape[1]) < 161:
        return None
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    ta = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]
    tb = torch.from_numpy(b.astype(np.float32)).permute(2, 0, 1)[None]
    return float(_ms_ssim(ta, tb, data_range=255.0))
