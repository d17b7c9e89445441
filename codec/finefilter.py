"""The hybrid's level filters: small point-symmetric 2-D filters on the finest latent grids.

Level 0 of the latent pyramid has one value per pixel, so with plain sampling each of its values is
an impulse, and each value of level ``l`` a bicubic bump ``2^l`` pixels wide.  The L1 refit and
RDOQ leave the fine levels sparse, and a sparse set of impulses or round bumps is a poor basis for
texture and edges.  Format version 4 lets the encoder send, per channel, a filter ``K`` of radius
``R`` (1..3) that is applied to the level-0 grid *before* it is sampled; version 6 does the same on
levels 0, 1 and 2 (:data:`codec.bitstream.FILTER_LEVELS`), each level and channel with its own
filter::

    G_l'[i, j] = sum_{|dy|, |dx| <= R} K[dy, dx] G_l[i + dy, j + dx]    (zero outside the grid)
    K[dy, dx] = K[-dy, -dx]                                             (point symmetric)

so every value of those levels becomes a small image-adapted (often oriented) atom.  The filtered
grid is still a grid of values at cell centres, sampled at continuous coordinates like every other
level, so ``decode --size`` works at any resolution.  The encoder finds ``K`` by least squares on
the residual the other levels leave, through the level's sampling (the Wiener filter of the level;
VVC's adaptive loop filter uses the same point-symmetric least-squares design, Tsai et al., IEEE
JSTSP 2013) and re-optimises the latents through it (:mod:`codec.rdoq`).

Coefficients travel as integers ``t`` in units of ``1 / SCALE``: the centre tap is
``1 + t_0 / SCALE`` (so an identity filter is all zeros), then one ``t`` per symmetric pair in
:func:`offsets` order.  This module is numpy only (the decoder does not import torch).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .bitstream import FILTER_MAX_TAP as MAX_TAP
from .bitstream import FILTER_RADIUS_BITS, FilterRecord, se_bits
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


APPLY_BAND_VALUES = 1 << 17  # values per row band of :func:`apply` (512 KB of float32: a cache's worth)


def apply(plane: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``G'`` of the formula above for one 2-D ``plane`` (float32 out, zero padding).

    Tap by tap, in row bands of about :data:`APPLY_BAND_VALUES` values, so that each band's running
    sum and product stay in cache: the same products added in the same order as over the whole
    plane at once (the same bits), four times as fast on a 4000x3000 plane."""
    r = k.shape[0] // 2
    h, w = plane.shape
    pad = np.pad(np.asarray(plane, dtype=np.float32), r)
    out = np.zeros((h, w), dtype=np.float32)
    taps = [(dy, dx, k[r + dy, r + dx]) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if k[r + dy, r + dx]]
    rows = max(1, APPLY_BAND_VALUES // max(w, 1))
    tmp = np.empty((min(rows, h), w), dtype=np.float32)
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        acc, t = out[r0:r1], tmp[: r1 - r0]
        for dy, dx, kv in taps:
            np.multiply(pad[r + dy + r0 : r + dy + r1, r + dx : r + dx + w], kv, out=t)
            acc += t
    return out


DESIGN_BLOCK = 1 << 18  # values per row block of the normal equations (a float64 block of 25 taps: 52 MB)


def _columns(plane: np.ndarray, radius: int, rows: tuple[int, int] | None = None):
    """The columns of :func:`design` as float32 ``(r1 - r0, w)`` grids, one by one: the plane's rows
    ``r0..r1-1`` shifted by each offset plus (after the first) by its mirror, zero outside the plane."""
    h, w = plane.shape
    r = radius
    r0, r1 = (0, h) if rows is None else rows
    pad = np.pad(np.asarray(plane, dtype=np.float32)[max(0, r0 - r) : r1 + r],
                 ((r - min(r, r0), r - min(r, h - r1)), (r, r)))

    def shifted(dy: int, dx: int) -> np.ndarray:
        return pad[r + dy : r + dy + r1 - r0, r + dx : r + dx + w]

    yield np.ascontiguousarray(shifted(0, 0))
    for dy, dx in offsets(radius)[1:]:
        yield shifted(dy, dx) + shifted(-dy, -dx)


def design(plane: np.ndarray, radius: int, rows: tuple[int, int] | None = None,
           dtype: type = np.float32) -> np.ndarray:
    """The regressors of :func:`fit`: ``(h * w, n_taps)``, column ``j`` the plane shifted by the
    ``j``-th offset plus (for ``j > 0``) by its mirror; ``rows = (r0, r1)``: those rows of the
    plane only (``((r1 - r0) * w, n_taps)``).  The columns are summed in float32; ``dtype``
    float64 widens them (exactly) as they are written, without a float32 copy of the whole.
    A view of :func:`design_t`'s array (Fortran order)."""
    return design_t(plane, radius, rows, dtype).T


def design_t(plane: np.ndarray, radius: int, rows: tuple[int, int] | None = None,
             dtype: type = np.float32) -> np.ndarray:
    """:func:`design` transposed, C-contiguous ``(n_taps, (r1 - r0) * w)``: each regressor is one
    contiguous row, written in place (writing them as the columns of an ``(n, n_taps)`` array
    strides every value by ``n_taps``, and took about five times as long: 67 ms against 14 ms for
    262 rows of a 1000-wide plane at radius 3, float64)."""
    h, w = plane.shape
    r0, r1 = (0, h) if rows is None else rows
    out = np.empty((len(offsets(radius)), (r1 - r0) * w), dtype=dtype)
    for j, col in enumerate(_columns(plane, radius, rows)):
        out[j].reshape(r1 - r0, w)[...] = col
    return out


FIT_MAX_VALUES = 1 << 20  # a larger plane's normal equations are summed over a subset of its rows
SUBSET_ROWS = 16  # rows per band of that subset


def subset_bands(h: int, w: int) -> list[tuple[int, int]]:
    """The bands of rows ``(r0, r1)`` over which :func:`fit_all` sums the normal equations of an
    ``h x w`` plane: all rows up to :data:`FIT_MAX_VALUES` values, else every ``s``-th band of
    :data:`SUBSET_ROWS` rows (fewer where a row is wider than ``DESIGN_BLOCK / SUBSET_ROWS``), ``s``
    the smallest stride that keeps them within it and the first band ``s // 2`` bands down, so that
    they spread over the whole height."""
    if h * w <= FIT_MAX_VALUES:
        return [(0, h)]
    rows = max(1, min(SUBSET_ROWS, DESIGN_BLOCK // w))  # a band's design stays within a block's memory
    bands = [(r0, min(h, r0 + rows)) for r0 in range(0, h, rows)]
    stride = min(len(bands), -(-len(bands) * rows * w // FIT_MAX_VALUES))
    return bands[stride // 2 :: stride]


def _diagonals(g: np.ndarray) -> tuple[int, list[np.ndarray]]:
    """A banded ``(n, n)`` matrix as its half-bandwidth ``B`` and its diagonals ``d_k[i] = g[i, i + k]``
    for ``k = -B..B`` (zero where ``i + k`` is outside ``0..n-1``)."""
    n = g.shape[0]
    rows, cols = np.nonzero(g)
    band = int(np.abs(rows - cols).max()) if rows.size else 0
    i = np.arange(n)
    return band, [np.where((i + k >= 0) & (i + k < n), g[i, np.clip(i + k, 0, n - 1)], 0.0) for k in range(-band, band + 1)]


def _gram_band(col: np.ndarray, a0: int, r0: int, r1: int, gy: tuple[int, list[np.ndarray]],
               gx: tuple[int, list[np.ndarray]]) -> np.ndarray:
    """Rows ``r0..r1-1`` of ``G_y X G_x^T`` (float64), ``G`` banded (:func:`_diagonals`), from the rows
    ``a0..`` of ``X`` that ``col`` holds (at least ``B_y`` rows beyond the band on each side inside the grid)."""
    by, dy = gy
    bx, dx = gx
    h_in = a0 + col.shape[0]
    w = col.shape[1]
    tmp = np.zeros((r1 - r0, w))
    for k, d in zip(range(-by, by + 1), dy):
        lo, hi = max(r0, a0 - k), min(r1, h_in - k)  # rows i with a0 <= i + k < h_in
        if lo < hi:
            tmp[lo - r0 : hi - r0] += d[lo:hi, None] * col[lo + k - a0 : hi + k - a0]
    out = np.zeros_like(tmp)
    for k, d in zip(range(-bx, bx + 1), dx):
        lo, hi = max(0, -k), min(w, w - k)
        if lo < hi:
            out[:, lo:hi] += d[None, lo:hi] * tmp[:, lo + k : hi + k]
    return out


def fit_all(plane: np.ndarray, target: np.ndarray, max_radius: int,
            gram: Callable[[np.ndarray], np.ndarray] | None = None,
            axis_grams: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
            rate_weight: float = 0.0) -> list[tuple[list[int], float]]:
    """For each radius ``1..max_radius``, the least-squares taps ``min_K ||S apply(plane, K) - r||^2``
    rounded to ``1 / SCALE``, with the squared error they reach relative to the identity filter's
    (negative: the filter helps).  With ``rate_weight`` ``mu > 0`` the rounding is chosen by
    rate and distortion instead (:func:`rdo_taps`: squared error plus ``mu`` times the taps' bits).

    ``S`` is the level's (linear) sampling to the image.  Filtering is linear too, so with ``D`` the
    shifted planes (:func:`design`) the normal equations are ``D^T G D k = D^T S^T r``, ``G = S^T S``,
    all at the level's own resolution: ``gram`` applies ``G`` to a 2-D float32 grid and ``target``
    is ``S^T r``.  ``gram=None`` is level 0 at native size (``S`` the identity, ``target = r``).

    A smaller radius's regressors are a subset of a larger one's (same offsets, same zero padding),
    so the normal equations are formed once, at ``max_radius``, and each radius solves its block
    (float64, at most 25 unknowns).  They are summed over blocks of rows of ``D`` (``DESIGN_BLOCK``
    values each), so memory does not grow with the plane beyond ``G D`` (float32, levels 1 and 2
    only): forming all of ``D`` in float64 took 300 bytes per value, 3.7 GB on a 12 Mpixel level 0.

    A plane of more than :data:`FIT_MAX_VALUES` values sums them over the rows of
    :func:`subset_bands` only, scaled to the whole plane: 25 taps need nothing like the 12 million
    rows of a 12 Mpixel level 0, whose fit took 5 s.  There ``G D`` is formed band by band from the
    banded per-axis Gram matrices ``axis_grams()`` (``(G_y, G_x)``), not for the whole plane; a fit
    through a sampling without them sums the whole plane.  Kodak's planes (393,216 values at most)
    are summed whole."""
    h, w = plane.shape
    n_taps = len(offsets(max_radius))
    bands = subset_bands(h, w)
    if gram is not None and axis_grams is None:
        bands = [(0, h)]  # without the banded Gram matrices, G D is formed for the whole plane
    whole = bands == [(0, h)]
    y = np.asarray(target, dtype=np.float32).reshape(-1)
    xtx = np.zeros((n_taps, n_taps))
    xty = np.zeros(n_taps)
    gxt = grams = None
    if gram is not None and whole:  # (G D)^T, regressor by regressor
        gxt = np.empty((n_taps, h * w), dtype=np.float32)
        for j, col in enumerate(_columns(plane, max_radius)):
            gxt[j] = np.asarray(gram(col), dtype=np.float32).reshape(-1)
    elif gram is not None:
        grams = tuple(_diagonals(np.asarray(g, dtype=np.float64)) for g in axis_grams())
    step = max(1, DESIGN_BLOCK // w)
    for r0, r1 in [(r0, min(h, r0 + step)) for r0 in range(0, h, step)] if whole else bands:
        if grams is not None:  # D and G D for the band's rows, from one pass over them and a halo of B_y beside them
            a0, a1 = max(0, r0 - grams[0][0]), min(h, r1 + grams[0][0])
            x64 = np.empty((n_taps, (r1 - r0) * w))
            gd = np.empty_like(x64)
            for j, col in enumerate(_columns(plane, max_radius, (a0, a1))):
                x64[j].reshape(r1 - r0, w)[...] = col[r0 - a0 : r1 - a0]
                gd[j] = _gram_band(col, a0, r0, r1, *grams).reshape(-1)
        else:
            x64 = design_t(plane, max_radius, (r0, r1), np.float64)
            gd = x64 if gxt is None else gxt[:, r0 * w : r1 * w].astype(np.float64)
        xtx += x64 @ gd.T
        xty += x64 @ y[r0 * w : r1 * w].astype(np.float64)
    if whole:
        xtx = 0.5 * (xtx + xtx.T)
    else:
        # D_B^T (G D)_B is not symmetric (G couples the band's rows with the rows beside it), and is
        # left so: with a target that the model makes exactly, S^T r = G D k, it is solved by k
        scale = h / sum(r1 - r0 for r0, r1 in bands)
        xtx *= scale
        xty *= scale
    column = {o: j for j, o in enumerate(offsets(max_radius))}
    out = []
    for radius in range(1, max_radius + 1):
        sel = [column[o] for o in offsets(radius)]
        out.append(_solve(xtx[np.ix_(sel, sel)], xty[sel], rate_weight))
    return out


def fit(plane: np.ndarray, target: np.ndarray, radius: int,
        gram: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[list[int], float]:
    """:func:`fit_all`'s result for ``radius`` alone."""
    return fit_all(plane, target, radius, gram)[radius - 1]


def _solve(xtx: np.ndarray, xty: np.ndarray, rate_weight: float = 0.0) -> tuple[list[int], float]:
    """Rounded solution of the normal equations and its cost relative to the identity's
    (``rate_weight`` > 0: the rounding of :func:`rdo_taps`)."""
    try:
        k = np.linalg.solve(xtx + 1e-9 * np.trace(xtx) * np.eye(len(xtx)), xty)
    except np.linalg.LinAlgError:
        return [0] * len(xty), 0.0
    k[0] -= 1.0
    taps = np.clip(np.rint(k * SCALE), -MAX_TAP, MAX_TAP).astype(np.int64)
    if rate_weight > 0:
        taps = rdo_taps(xtx, xty, taps, rate_weight)
    kq = taps / SCALE
    kq[0] += 1.0
    ident = np.zeros_like(kq)
    ident[0] = 1.0

    # ||x k - y||^2 = k' X'X k - 2 k' X'y + y'y; the y'y terms cancel in the difference
    def cost(v: np.ndarray) -> float:
        return float(v @ xtx @ v - 2.0 * v @ xty)
    return [int(t) for t in taps], cost(kq) - cost(ident)


RDO_SWEEPS = 8


def rdo_taps(xtx: np.ndarray, xty: np.ndarray, taps: np.ndarray, rate_weight: float) -> np.ndarray:
    """Integer taps that lower ``J = E(k) + mu * sum_i b(t_i)`` from ``taps`` (the rounded least-squares
    solution), ``E(k) = k' A k - 2 k' b`` the squared error up to a constant (``A = xtx``, ``b = xty``),
    ``k = e_0 + t / SCALE`` and ``b(t)`` the bits of the signed Exp-Golomb code of ``t``.

    The error is quadratic, so moving tap ``i`` by ``d`` changes it by exactly
    ``(d / SCALE) g_i + (d / SCALE)^2 A_ii`` with ``g = 2 (A k - b)``: coordinate descent tries
    ``t_i - 1``, ``t_i + 1`` and ``0`` for every tap, takes the best move that lowers ``J``, updates
    ``g`` and sweeps again until no move pays (at most :data:`RDO_SWEEPS` sweeps).  The rate-distortion
    rounding of quantized coefficients (RDOQ) applied to the filter's own coefficients, whose side
    information weighs most at low rates (a radius-3 filter is 13 taps of 3-9 bits)."""
    t = np.asarray(taps, dtype=np.int64).copy()
    k = t / SCALE
    k[0] += 1.0
    g = 2.0 * (xtx @ k - xty)
    diag = np.diag(xtx)
    for _ in range(RDO_SWEEPS):
        moved = False
        for i in range(len(t)):
            here = int(t[i])
            best_d, best_j = 0, 0.0
            for cand in (here - 1, here + 1, 0):
                if cand == here or abs(cand) > MAX_TAP:
                    continue
                d = (cand - here) / SCALE
                dj = d * g[i] + d * d * diag[i] + rate_weight * (se_bits(cand) - se_bits(here))
                if dj < best_j - 1e-12:
                    best_d, best_j = cand - here, dj
            if best_d:
                t[i] += best_d
                g += 2.0 * (best_d / SCALE) * xtx[:, i]
                moved = True
        if not moved:
            break
    return t


def kernels(filters: list[FilterRecord]) -> list[np.ndarray | None]:
    """Each record's :func:`kernel`, ``None`` for radius 0."""
    return [kernel(f.radius, f.taps) if f.radius else None for f in filters]


def record_bits(record: FilterRecord) -> int:
    """Bits of ``record`` in the side information (radius field and signed Exp-Golomb taps)."""
    return FILTER_RADIUS_BITS + sum(se_bits(t) for t in record.taps)


def apply_records(level: np.ndarray, filters: list[FilterRecord]) -> np.ndarray:
    """One level ``(channels, h, w)`` with each channel's filter applied (channels without one unchanged)."""
    ks = kernels(filters)
    if all(k is None for k in ks):
        return level
    out = np.array(level, dtype=np.float32)
    for ch, k in enumerate(ks):
        if k is not None:
            out[ch] = apply(level[ch], k)
    return out


def apply_levels(planes: list[np.ndarray], filters: list[list[FilterRecord]]) -> list[np.ndarray]:
    """``planes`` (per level, ``(channels, h_l, w_l)``) with ``filters[l]`` applied to level ``l``
    (levels beyond ``filters`` unchanged)."""
    return [apply_records(g, filters[lv]) if lv < len(filters) else g for lv, g in enumerate(planes)]


def macs_per_pixel(filters: list[list[FilterRecord]]) -> float:
    """Multiply-accumulates per native-size pixel of running ``filters``: ``(2R + 1)^2`` per value of
    level ``l``, which has ``4^-l`` values per pixel."""
    return sum((2 * f.radius + 1) ** 2 / 4 ** lv for lv, fs in enumerate(filters) for f in fs if f.radius)
