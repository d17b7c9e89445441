"""The coordinate convention (the only module that defines it).

An image of ``W x H`` pixels is a function on the rectangle ``[-ax, ax] x [-ay, ay]`` where the
longer side spans ``[-1, 1]``: ``ax = W / max(W, H)``, ``ay = H / max(W, H)``.  Pixel ``(i, j)``
(column ``i``, row ``j``) of an ``w x h`` rendering samples the *centre* of its cell::

    x_i = ax * (2 * (i + 0.5) / w - 1),    y_j = ay * (2 * (j + 0.5) / h - 1)

so renderings at any size cover the same rectangle, non-square images are not distorted, and
a 2x render interleaves samples around the native ones instead of shifting them.  Coordinates
are returned as ``(x, y)`` pairs, row-major (row ``j`` varies slowest).
"""
from __future__ import annotations

import torch


def extent(width: int, height: int) -> tuple[float, float]:
    """Half-extent ``(ax, ay)`` of the domain of a ``width x height`` source image."""
    m = float(max(width, height))
    return width / m, height / m


def axis(n: int, half_extent: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Pixel-centre positions of ``n`` samples across ``[-half_extent, half_extent]``."""
    i = torch.arange(n, dtype=torch.float32, device=device)
    return half_extent * (2.0 * (i + 0.5) / n - 1.0)


def grid(
    out_w: int,
    out_h: int,
    src_w: int,
    src_h: int,
    rows: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Coordinates of an ``out_w x out_h`` rendering of a ``src_w x src_h`` image.

    ``rows=(r0, r1)`` restricts the grid to output rows ``r0 <= j < r1`` (for tiled rendering).
    Returns a float32 tensor of shape ``(n_rows * out_w, 2)`` holding ``(x, y)``.
    """
    ax, ay = extent(src_w, src_h)
    xs = axis(out_w, ax, device)
    ys = axis(out_h, ay, device)
    if rows is not None:
        ys = ys[rows[0] : rows[1]]
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def pixel_coords(
    index: torch.Tensor, width: int, height: int
) -> torch.Tensor:
    """Coordinates of the native pixels with flat row-major indices ``index``."""
    ax, ay = extent(width, height)
    col = (index % width).to(torch.float32)
    row = torch.div(index, width, rounding_mode="floor").to(torch.float32)
    x = ax * (2.0 * (col + 0.5) / width - 1.0)
    y = ay * (2.0 * (row + 0.5) / height - 1.0)
    return torch.stack([x, y], dim=1)
