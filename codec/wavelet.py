"""The CDF 9/7 wavelet basis of the hybrid model (format version 10, basis 1; numpy only).

The hybrid's first basis is an overcomplete pyramid of bicubic bumps (4/3 values per pixel and
channel).  This one is critically sampled: the biorthogonal Cohen-Daubechies-Feauveau 9/7 wavelet
of JPEG 2000's irreversible path (ISO/IEC 15444-1, Annex F), computed by lifting (Daubechies and
Sweldens 1998) with whole-sample symmetric extension.  One analysis step along an axis of even
length ``n`` splits ``x`` into ``s = x[0::2]`` and ``d = x[1::2]`` and runs::

    d += ALPHA (s_i + s_{i+1});  s += BETA (d_{i-1} + d_i);
    d += GAMMA (s_i + s_{i+1});  s += DELTA (d_{i-1} + d_i);   low = s / K,  high = d K

(``s_{n/2} = s_{n/2-1}`` and ``d_{-1} = d_0`` at the ends: the symmetric extension).  Synthesis
runs the same steps backwards with the signs flipped, so it inverts analysis to rounding error.

*Odd lengths* (the shape rule of the format): an axis of odd length ``n`` is first extended by one
sample, ``x[n - 2]`` (``x[0]`` when ``n = 1``), and synthesis drops that sample again.  So the input
of level ``l`` is ``ceil(H / 2^l) x ceil(W / 2^l)`` and each of level ``l``'s subbands is
``ceil(H / 2^(l+1)) x ceil(W / 2^(l+1))``: a subband's parent (the same orientation one level
coarser) always covers it when repeated 2x2 (:func:`codec.context._up2`), whatever the image size.

A level splits its input horizontally, then each half vertically: ``LL`` (low, low) goes on to the
next level, ``HL`` is horizontally high and vertically low, ``LH`` horizontally low and vertically
high, ``HH`` high in both.  The coefficients of ``levels`` levels are the final ``LL`` and, per
level (finest first), ``(HL, LH, HH)``.

Every subband is a separable product of 1-D synthesis functions, so the L2 norm of one of its
synthesis functions (:func:`band_norms`, what the encoder divides its steps by so that a unit of
error in any subband adds about the same squared error to the image) is a product of two 1-D norms.
"""
from __future__ import annotations

import math

import numpy as np

# CDF 9/7 lifting coefficients and scaling (JPEG 2000 Part 1, Annex F, Table F.4)
ALPHA = -1.586134342059924
BETA = -0.052980118572961
GAMMA = 0.882911075530934
DELTA = 0.443506852043971
K = 1.230174104914001
ORIENTATIONS = ("hl", "lh", "hh")
MAX_LEVELS = 7  # more gave nothing on Kodak (6 and 7 levels: the same BD-rate; 5: +0.9 %)
MIN_COARSE = 4  # the coarsest subbands keep about this many samples on the shorter side


def levels_for(width: int, height: int) -> int:
    """Decomposition levels for a ``width x height`` image: ``floor(log2(min side / MIN_COARSE))``
    clamped to ``1..MAX_LEVELS`` (7 for a Kodak image, 2 for 16x16, 1 for a line)."""
    short = min(width, height)
    return max(1, min(MAX_LEVELS, math.floor(math.log2(max(short / MIN_COARSE, 1.0)))))


def level_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """The input size of each level and the final ``LL``'s: ``ceil(H / 2^l) x ceil(W / 2^l)`` for
    ``l = 0..levels`` (so level ``l``'s subbands are entry ``l + 1``)."""
    return [(-(-height // (1 << lv)), -(-width // (1 << lv))) for lv in range(levels + 1)]


def _rows_after(a: np.ndarray) -> np.ndarray:
    """``a`` shifted up by one along axis 0, its last row repeated (``s_{i+1}`` with the extension)."""
    return np.concatenate([a[1:], a[-1:]])


def _rows_before(a: np.ndarray) -> np.ndarray:
    """``a`` shifted down by one along axis 0, its first row repeated (``d_{i-1}`` with the extension)."""
    return np.concatenate([a[:1], a[:-1]])


def analyse_axis0(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One analysis step along axis 0 (any length >= 1): ``(low, high)``, each ``ceil(n / 2)`` long."""
    if x.shape[0] % 2:
        x = np.concatenate([x, x[-2:-1] if x.shape[0] > 1 else x[:1]])
    s, d = x[0::2].copy(), x[1::2].copy()
    d += ALPHA * (s + _rows_after(s))
    s += BETA * (_rows_before(d) + d)
    d += GAMMA * (s + _rows_after(s))
    s += DELTA * (_rows_before(d) + d)
    s /= K
    d *= K
    return s, d


def synthesise_axis0(low: np.ndarray, high: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`analyse_axis0` for an original length ``n`` (``2 len(low) - 1`` or ``2 len(low)``)."""
    s, d = low * K, high / K
    s -= DELTA * (_rows_before(d) + d)
    d -= GAMMA * (s + _rows_after(s))
    s -= BETA * (_rows_before(d) + d)
    d -= ALPHA * (s + _rows_after(s))
    x = np.empty((2 * s.shape[0],) + s.shape[1:], dtype=s.dtype)
    x[0::2], x[1::2] = s, d
    return x[:n]


Bands = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def analyse(x: np.ndarray, levels: int) -> tuple[np.ndarray, Bands]:
    """``(H, W)`` -> the final ``LL`` and, per level (finest first), ``(HL, LH, HH)``."""
    bands: Bands = []
    for _ in range(levels):
        lo, hi = analyse_axis0(x.T)  # along the rows: horizontal filtering
        ll, lh = analyse_axis0(lo.T)
        hl, hh = analyse_axis0(hi.T)
        bands.append((hl, lh, hh))
        x = ll
    return x, bands


def synthesise(ll: np.ndarray, bands: Bands, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`analyse` for an ``height x width`` image (float32 in, float32 out)."""
    sizes = level_sizes(height, width, len(bands))
    x = ll
    for lv in reversed(range(len(bands))):
        hl, lh, hh = bands[lv]
        h, w = sizes[lv]
        lo = synthesise_axis0(x, lh, h).T
        hi = synthesise_axis0(hl, hh, h).T
        x = synthesise_axis0(lo, hi, w).T
    return np.ascontiguousarray(x)


def axis_norms(n: int, levels: int) -> tuple[list[float], list[float]]:
    """The L2 norms of 1-D synthesis functions along an axis of ``n`` samples: per level (finest
    first) of a high-band impulse, and of a low-band impulse after ``l + 1`` levels, each at the
    centre of its band (away from the ends, where the extension changes them a little)."""
    sizes = [h for h, _ in level_sizes(n, 1, levels)]
    high, low = [], []
    for lv in range(levels):
        for is_high, out in ((True, high), (False, low)):
            band = np.zeros((sizes[lv + 1], 1))
            band[sizes[lv + 1] // 2, 0] = 1.0
            zero = np.zeros_like(band)
            x = synthesise_axis0(zero, band, sizes[lv]) if is_high else synthesise_axis0(band, zero, sizes[lv])
            for up in reversed(range(lv)):  # further synthesis as the low band of the finer levels
                x = synthesise_axis0(x, np.zeros((sizes[up + 1], 1)), sizes[up])
            out.append(float(np.linalg.norm(x)))
    return high, low


def band_norms(height: int, width: int, levels: int) -> tuple[float, list[tuple[float, float, float]]]:
    """The L2 norm of one synthesis function of the final ``LL`` and of each level's
    ``(HL, LH, HH)``: products of :func:`axis_norms` (``HL``: horizontal high, vertical low)."""
    hx, lx = axis_norms(width, levels)
    hy, ly = axis_norms(height, levels)
    per_level = [(hx[lv] * ly[lv], lx[lv] * hy[lv], hx[lv] * hy[lv]) for lv in range(levels)]
    return lx[-1] * ly[-1], per_level
