"""Bjøntegaard delta rate and PSNR (VCEG-M33, with piecewise-cubic interpolation as in VCEG-AL22).

BD-rate: interpolate ``log10(rate)`` as a function of PSNR with a monotone piecewise-cubic
(PCHIP) curve for each codec, integrate both over the overlapping PSNR range, and report
``10^(mean difference) - 1`` in per cent (negative: the test codec needs less rate).
BD-PSNR: the same with the roles swapped (PSNR as a function of log-rate), in dB.
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator


def _prepare(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(x)
    x, y = np.asarray(x, float)[order], np.asarray(y, float)[order]
    keep = np.concatenate([[True], np.diff(x) > 0])
    return x[keep], y[keep]


def _mean_over(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    f = PchipInterpolator(x, y).antiderivative()
    return float((f(hi) - f(lo)) / (hi - lo))


def bd_rate(rate_ref, psnr_ref, rate_test, psnr_test) -> float:
    """BD-rate (%) of the test curve against the reference; needs >= 4 points and overlap."""
    p1, r1 = _prepare(psnr_ref, np.log10(rate_ref))
    p2, r2 = _prepare(psnr_test, np.log10(rate_test))
    if len(p1) < 4 or len(p2) < 4:
        raise ValueError("BD-rate needs at least 4 distinct points per curve")
    lo, hi = max(p1[0], p2[0]), min(p1[-1], p2[-1])
    if hi <= lo:
        raise ValueError("the curves' PSNR ranges do not overlap")
    diff = _mean_over(p2, r2, lo, hi) - _mean_over(p1, r1, lo, hi)
    return float((10.0**diff - 1.0) * 100.0)


def bd_psnr(rate_ref, psnr_ref, rate_test, psnr_test) -> float:
    """BD-PSNR (dB) of the test curve against the reference over the overlapping log-rate range."""
    r1, p1 = _prepare(np.log10(rate_ref), psnr_ref)
    r2, p2 = _prepare(np.log10(rate_test), psnr_test)
    if len(r1) < 4 or len(r2) < 4:
        raise ValueError("BD-PSNR needs at least 4 distinct points per curve")
    lo, hi = max(r1[0], r2[0]), min(r1[-1], r2[-1])
    if hi <= lo:
        raise ValueError("the curves' rate ranges do not overlap")
    return _mean_over(r2, p2, lo, hi) - _mean_over(r1, p1, lo, hi)
