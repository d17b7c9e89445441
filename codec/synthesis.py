"""The latent models' synthesis on a regular output grid, in numpy (the decoder's fast path).

:class:`codec.models.LatentPyramid` samples its grids with ``grid_sample`` at arbitrary
coordinates.  A decoded image is always a regular grid (:mod:`codec.coords`), and the kernels are
separable, so the same function is, per level and channel, ``S_y G S_x^T`` where row ``p`` of
``S`` holds the kernel taps of output pixel ``p`` along one axis.  Computing that with gathers
needs no torch, which keeps ``inrc decode`` of a hybrid file well under a second all in (importing
torch alone takes longer than decoding).  The cell coordinate of output pixel ``p`` of ``n_out``
on a grid of ``n_in`` cells is ``u = (p + 0.5) n_in / n_out - 0.5`` (``align_corners=False``):

* bilinear: ``u`` clamped to ``[0, n_in - 1]``, taps ``floor(u)``, ``floor(u) + 1``;
* bicubic: Keys' kernel with ``a = -0.75`` on taps ``floor(u) - 1 .. floor(u) + 2``, each tap index
  clamped to the grid (``padding_mode="border"``), as ``grid_sample`` does.

A crop (``inrc decode --crop``) renders only the fraction ``lo..hi`` of an axis (its ``span``):
``u = (lo + (hi - lo)(p + 0.5) / n_out) n_in - 0.5``, the same positions as
:func:`codec.coords.axis` with that span.

A unit test checks both against ``grid_sample``.
"""
from __future__ import annotations

import numpy as np

from . import color

KEYS_A = -0.75
FULL = (0.0, 1.0)  # the span of a whole axis


def _keys(t: np.ndarray, a: float = KEYS_A) -> np.ndarray:
    """Keys' cubic convolution kernel (Keys 1981) at offsets ``t``."""
    t = np.abs(t)
    near = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    far = ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
    return np.where(t <= 1.0, near, np.where(t < 2.0, far, 0.0))


def kernel_taps(n_out: int, n_in: int, kernel: str, start: int = 0, stop: int | None = None,
                span: tuple[float, float] = FULL) -> tuple[np.ndarray, np.ndarray]:
    """Tap indices ``(n, T)`` and float64 weights ``(n, T)`` of output pixels ``start..stop-1``
    of ``n_out`` covering the fraction ``span`` of the axis (the whole axis by default)."""
    p = np.arange(start, n_out if stop is None else stop, dtype=np.float64)
    if span == FULL:
        u = (p + 0.5) * n_in / n_out - 0.5
    else:
        lo, hi = span
        u = (lo + (hi - lo) * (p + 0.5) / n_out) * n_in - 0.5
    if kernel == "bilinear":
        u = np.clip(u, 0.0, n_in - 1.0)
        i0 = np.floor(u)
        f = u - i0
        idx = np.stack([i0, np.minimum(i0 + 1, n_in - 1)], axis=1)
        w = np.stack([1.0 - f, f], axis=1)
    elif kernel == "bicubic":
        k = np.floor(u)[:, None] + np.arange(-1, 3)[None, :]
        w = _keys(u[:, None] - k)
        idx = np.clip(k, 0, n_in - 1)
    else:
        raise ValueError(f"unknown kernel {kernel!r}")
    return idx.astype(np.int64), w


class LatentRenderer:
    """Renders ``sum_l sample(G_l)`` then YCbCr (or the colour word ``colour``'s space,
    :func:`codec.color.matrices`) -> RGB on any regular grid, band by band.

    ``planes[level]`` is a float32 array ``(channels, h_l, w_l)`` of dequantized latents.
    """

    def __init__(self, planes: list[np.ndarray], kernel: str, colour: int = 0) -> None:
        self.planes = [np.ascontiguousarray(p, dtype=np.float32) for p in planes]
        self.kernel = kernel
        self.colour = colour
        self.channels = self.planes[0].shape[0]
        self._taps: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def _axis_taps(self, n_out: int, n_in: int, span: tuple[float, float] = FULL) -> tuple[np.ndarray, np.ndarray]:
        """:func:`kernel_taps` of a whole axis, weights as float32, computed once per
        ``(n_out, n_in, span)``: a band's rows take a slice (the taps of an output pixel do not
        depend on the band), so the columns' taps are not recomputed for every band and level (a
        12 Mpixel decode renders 188 bands, and recomputing them took about 0.4 s of its 5.4 s,
        profiled)."""
        key = (n_out, n_in, span)
        if key not in self._taps:
            idx, w = kernel_taps(n_out, n_in, self.kernel, span=span)
            self._taps[key] = idx, w.astype(np.float32)
        return self._taps[key]

    def rows(self, r0: int, r1: int, ow: int, oh: int,
             spans: tuple[tuple[float, float], tuple[float, float]] = (FULL, FULL)) -> np.ndarray:
        """Output rows ``r0..r1-1`` of an ``ow x oh`` rendering: float32 ``(r1 - r0, ow, channels)`` RGB.
        ``spans = (x span, y span)`` restrict it to a crop (:func:`kernel_taps`).

        Work and memory per call are ``O(channels * (r1 - r0) * (w_l + ow))`` per level."""
        return color.ycbcr_to_rgb_np(np.moveaxis(self.ycc_rows(r0, r1, ow, oh, spans), 0, -1), self.colour)

    def ycc_rows(self, r0: int, r1: int, ow: int, oh: int,
                 spans: tuple[tuple[float, float], tuple[float, float]] = (FULL, FULL)) -> np.ndarray:
        """The same rows before the colour transform: float32 ``(channels, r1 - r0, ow)`` YCbCr."""
        sx, sy = spans
        acc = np.zeros((self.channels, r1 - r0, ow), dtype=np.float32)
        for g in self.planes:
            if g.shape[1] == oh and sy == FULL:
                band = g[:, r0:r1]
            else:
                idx, w = self._axis_taps(oh, g.shape[1], sy)
                band = np.einsum("crtw,rt->crw", g[:, idx[r0:r1]], w[r0:r1])
            if g.shape[2] == ow and sx == FULL:
                acc += band
            else:
                idx, w = self._axis_taps(ow, g.shape[2], sx)
                acc += np.einsum("crwt,wt->crw", band[:, :, idx], w)
        return acc
