"""The coordinate convention (the only module that defines it).

An image of ``W x H`` pixels is a function on the rectangle ``[-ax, ax] x [-ay, ay]`` where the
longer side spans ``[-1, 1]``: ``ax = W / max(W, H)``, ``ay = H / max(W, H)``.  Pixel ``(i, j)``
(column ``i``, row ``j``) of an ``w x h`` rendering samples the *centre* of its cell::

    x_i = ax * (2 * (i + 0.5) / w - 1),    y_j = ay * (2 * (j + 0.5) / h - 1)

so renderings at any size cover the same rectangle, non-square images are not distorted, and
a 2x render interleaves samples around the native ones instead of shifting them.  A crop of the
native image, ``window = (x0, y0, w, h)`` in native pixels, covers the fraction ``lo..hi`` of each
axis (``lo = x0 / W``, ``hi = (x0 + w) / W``), and its ``n`` samples are the centres of equal cells
of that span::

    x_i = ax * (2 * (lo + (hi - lo) * (i + 0.5) / n) - 1)

so a crop rendered at scale ``s`` samples the same positions as the same pixels of a whole
rendering at scale ``s``.  Coordinates
are returned as ``(x, y)`` pairs, row-major (row ``j`` varies slowest).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the numpy decoder needs only spans()
    import torch


def extent(width: int, height: int) -> tuple[float, float]:
    """Half-extent ``(ax, ay)`` of the domain of a ``width x height`` source image."""
    m = float(max(width, height))
    return width / m, height / m


FULL = (0.0, 1.0)  # the span of a whole axis


def spans(width: int, height: int, window: tuple[float, float, float, float] | None) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(x span, y span)``: the fractions of each axis that ``window = (x0, y0, w, h)`` (native
    pixels) covers; ``None`` is the whole image.  Pure Python: the numpy decoder uses it too."""
    if window is None:
        return FULL, FULL
    x0, y0, w, h = window
    sx = FULL if (x0, w) == (0, width) else (x0 / width, (x0 + w) / width)
    sy = FULL if (y0, h) == (0, height) else (y0 / height, (y0 + h) / height)
    return sx, sy


def axis(n: int, half_extent: float, device: torch.device | str = "cpu",
         span: tuple[float, float] = FULL) -> torch.Tensor:
    """Pixel-centre positions of ``n`` samples across ``[-half_extent, half_extent]``, or across the
    fraction ``span = (lo, hi)`` of it."""
    import torch

    i = torch.arange(n, dtype=torch.float32, device=device)
    if span == FULL:
        return half_extent * (2.0 * (i + 0.5) / n - 1.0)
    lo, hi = span
    return half_extent * (2.0 * (lo + (hi - lo) * (i + 0.5) / n) - 1.0)


def grid(
    out_w: int,
    out_h: int,
    src_w: int,
    src_h: int,
    rows: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
    window: tuple[float, float, float, float] | None = None,
) -> torch.Tensor:
    """Coordinates of an ``out_w x out_h`` rendering of a ``src_w x src_h`` image, or of its crop
    ``window = (x0, y0, w, h)`` in native pixels.

    ``rows=(r0, r1)`` restricts the grid to output rows ``r0 <= j < r1`` (for tiled rendering).
    Returns a float32 tensor of shape ``(n_rows * out_w, 2)`` holding ``(x, y)``.
    """
    import torch

    ax, ay = extent(src_w, src_h)
    sx, sy = spans(src_w, src_h, window)
    xs = axis(out_w, ax, device, sx)
    ys = axis(out_h, ay, device, sy)
    if rows is not None:
        ys = ys[rows[0] : rows[1]]
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def pixel_coords(
    index: torch.Tensor, width: int, height: int
) -> torch.Tensor:
    """Coordinates of the native pixels with flat row-major indices ``index``."""
    import torch

    ax, ay = extent(width, height)
    col = (index % width).to(torch.float32)
    row = torch.div(index, width, rounding_mode="floor").to(torch.float32)
    x = ax * (2.0 * (col + 0.5) / width - 1.0)
    y = ay * (2.0 * (row + 0.5) / height - 1.0)
    return torch.stack([x, y], dim=1)
