"""The hybrid's finest-level filter (format version 4): a small point-symmetric 2-D filter on level 0.

Level 0 of the latent pyramid has one value per pixel, so with plain sampling each of its values is
an impulse.  The L1 refit and RDOQ leave that level sparse, and a sparse set of impulses is a poor
basis for texture and edges.  Version 4 lets the encoder send, per channel, a filter ``K`` of radius
``R`` (1..3) that is applied to the level-0 grid *before* it is sampled::

    G0'[i, j] = sum_{|dy|, |dx| <= R} K[dy, dx] G0[i + dy, j + dx]     (zero outside the grid)
    K[dy, dx] = K[-dy, -dx]                                             (point symmetric)

so every level-0 value becomes a small image-adapted atom.  The filtered grid is still a grid of
values at cell centres, sampled at continuous coordinates like every other level, so ``decode
--size`` works at any resolution.  The encoder finds ``K`` by least squares on the residual the
other levels leave (the Wiener filter of the level; VVC's adaptive loop filter uses the same
point-symmetric least-squares design, Tsai et al., IEEE JSTSP 2013) and re-optimises the latents
through it (:mod:`codec.rdoq`, :mod:`codec.l1fit`).

Coefficients travel as integers ``t`` in units of ``1 / SCALE``: the centre tap is
``1 + t_0 / SCALE`` (so an identity filter is all zeros), then one ``t`` per symmetric pair in
:func:`offsets` order.  This module is numpy only (the decoder does not import torch).
"""
from __future__ import annotations

import numpy as np

from .bitstream import FILTER_MAX_TAP as MAX_TAP
from .bitstream import FILTER_RADIUS_BITS, FilterRecord
from .bitstream import filter_taps as n_taps

SCALE = 128
MAX_RADIUS = (1 << FILTER_RADIUS_BITS) - 1


def offsets(radius: int) -> list[tuple[int, int]]:
    """The centre ``(0, 0)``, then one representative ``(dy, dx) > (0, 0)`` of each symmetric pair."""
    r = range(-radius, radius + 1)
    return [(0, 0)] + [(dy, dx) for dy in r for dx in r if (dy, dx) > (0, 0)]


def kernel(radius: int, taps: tuple[int, ...] | list[int]) -> np.ndarray:
    """The float32 ``(2R + 1, 2R + 1)`` kernel of coded integers ``taps``."""
    if not 0 <= radius <= MAX_RADIUS or len(taps) != n_taps(radius):
        raise ValueError(f"a radius-{radius} filter has {n_taps(radius)} taps, got {len(taps)}")
    k = np.zeros((2 * radius + 1, 2 * radius + 1), dtype=np.float64)
    for (dy, dx), t in zip(offsets(radius), taps):
        k[radius + dy, radius + dx] = k[radius - dy, radius - dx] = t / SCALE
    k[radius, radius] += 1.0
    return k.astype(np.float32)


def apply(plane: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``G'`` of the formula above for one 2-D ``plane`` (float32 out, zero padding)."""
    r = k.shape[0] // 2
    h, w = plane.shape
    pad = np.pad(np.asarray(plane, dtype=np.float32), r)
    out = np.zeros((h, w), dtype=np.float32)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if k[r + dy, r + dx]:
                out += k[r + dy, r + dx] * pad[r + dy : r + dy + h, r + dx : r + dx + w]
    return out


def design(plane: np.ndarray, radius: int) -> np.ndarray:
    """The regressors of :func:`fit`: float32 ``(h * w, n_taps)``, column ``j`` the plane shifted by
    the ``j``-th offset plus (for ``j > 0``) by its mirror."""
    h, w = plane.shape
    r = radius
    pad = np.pad(np.asarray(plane, dtype=np.float32), r)

    def shifted(dy: int, dx: int) -> np.ndarray:
        return pad[r + dy : r + dy + h, r + dx : r + dx + w].reshape(-1)

    cols = [shifted(0, 0)] + [shifted(dy, dx) + shifted(-dy, -dx) for dy, dx in offsets(radius)[1:]]
    return np.stack(cols, axis=1)


def fit_all(plane: np.ndarray, residual: np.ndarray, max_radius: int) -> list[tuple[list[int], float]]:
    """For each radius ``1..max_radius``, the least-squares taps ``min_K ||apply(plane, K) - residual||^2``
    rounded to ``1 / SCALE``, with the squared error they reach relative to the identity filter's
    (negative: the filter helps).

    A smaller radius's regressors are a subset of a larger one's (same offsets, same zero padding),
    so the normal equations are formed once, at ``max_radius``, and each radius solves its block
    (float64, at most 25 unknowns)."""
    x = design(plane, max_radius).astype(np.float64)
    y = np.asarray(residual, dtype=np.float64).reshape(-1)
    xtx, xty = x.T @ x, x.T @ y
    column = {o: j for j, o in enumerate(offsets(max_radius))}
    out = []
    for radius in range(1, max_radius + 1):
        sel = [column[o] for o in offsets(radius)]
        out.append(_solve(xtx[np.ix_(sel, sel)], xty[sel]))
    return out


def fit(plane: np.ndarray, residual: np.ndarray, radius: int) -> tuple[list[int], float]:
    """:func:`fit_all`'s result for ``radius`` alone."""
    return fit_all(plane, residual, radius)[radius - 1]


def _solve(xtx: np.ndarray, xty: np.ndarray) -> tuple[list[int], float]:
    """Rounded solution of the normal equations and its cost relative to the identity's."""
    try:
        k = np.linalg.solve(xtx + 1e-9 * np.trace(xtx) * np.eye(len(xtx)), xty)
    except np.linalg.LinAlgError:
        return [0] * len(xty), 0.0
    k[0] -= 1.0
    taps = np.clip(np.rint(k * SCALE), -MAX_TAP, MAX_TAP).astype(np.int64)
    kq = taps / SCALE
    kq[0] += 1.0
    ident = np.zeros_like(kq)
    ident[0] = 1.0

    # ||x k - y||^2 = k' X'X k - 2 k' X'y + y'y; the y'y terms cancel in the difference
    def cost(v: np.ndarray) -> float:
        return float(v @ xtx @ v - 2.0 * v @ xty)
    return [int(t) for t in taps], cost(kq) - cost(ident)


def kernels(filters: list[FilterRecord]) -> list[np.ndarray | None]:
    """Each record's :func:`kernel`, ``None`` for radius 0."""
    return [kernel(f.radius, f.taps) if f.radius else None for f in filters]


def record_bits(record: FilterRecord) -> int:
    """Bits of ``record`` in the side information (radius field and signed Exp-Golomb taps)."""
    from .bitstream import se_bits

    return FILTER_RADIUS_BITS + sum(se_bits(t) for t in record.taps)


def apply_records(level0: np.ndarray, filters: list[FilterRecord]) -> np.ndarray:
    """Level 0 ``(channels, h, w)`` with each channel's filter applied (channels without one unchanged)."""
    ks = kernels(filters)
    if all(k is None for k in ks):
        return level0
    out = np.array(level0, dtype=np.float32)
    for ch, k in enumerate(ks):
        if k is not None:
            out[ch] = apply(level0[ch], k)
    return out
