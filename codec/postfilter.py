"""The hybrid's post filter (format version 7): a tiny per-image convolutional network.

Everything else in the hybrid's synthesis is linear in the latents (sampling, the level filters of
:mod:`codec.finefilter`, the colour transform), so it cannot, for example, sharpen an edge without
ringing beside it.  Version 7 lets the encoder send a two-layer network ``P`` with ``hidden``
channels (1..16), fitted to this one image after the latents are final, that turns the native-size
YCbCr rendering ``y`` into a correction of the finest latent level::

    P(y) = W2 * relu(W1 * y + b1) + b2      (3x3 convolutions, edges replicated)
    G_0' = G_0 + P(y)                       (G_0: level 0 after its level filter)

Level 0 has one value per pixel, so at the native size the output is exactly ``y + P(y)``; at any
other ``--size`` the corrected level 0 is sampled like every other level, so the image stays a
continuous function of (x, y).  This is the nonlinear part of Cool-chic's synthesis (Ladune et al.,
ICCV 2023) reduced to a post filter on fixed latents, as CNN loop filters do in video coding; unlike
theirs it is fitted per image and travels in the file (about 150-450 bytes).  The encoder keeps it
only when it lowers ``D + lambda R`` on the written file.

Decoder cost: ``2 * 9 * channels * hidden`` multiply-accumulates per native pixel, plus one extra
native-size rendering as its input.  The numpy functions here are the decoder's; :func:`fit` (torch)
is the encoder's.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from . import quant
from .bitstream import (
    POST_KERNEL,
    POST_MAX_CODE,
    POST_ORDER_BITS,
    PostFilterRecord,
    post_filter_shapes,
    post_value_bits,
)

if TYPE_CHECKING:
    import torch

BAND_ROWS = 64  # rows of the native image per band when applying the filter (bounded memory)
WEIGHT_BITS = 6  # coded weights: about 2^(bits-1) - 1 levels each side of zero (6 and 7 were equal on kodim01-23)
CROP = 256  # training crops (pixels per side)
LEARNING_RATE = 3e-3
WARM_LEARNING_RATE = 1e-3  # a refit from the filter's own weights (slow's post cycles)


def weights(record: PostFilterRecord, channels: int) -> list[np.ndarray]:
    """The dequantized float32 tensors ``[W1, b1, W2, b2]`` of ``record``."""
    return [np.asarray(codes, dtype=np.float32).reshape(shape) * np.float32(quant.step_from_index(step))
            for codes, step, shape in zip(record.codes, record.steps, post_filter_shapes(record.hidden, channels))]


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A 'valid' 3x3 convolution (cross-correlation, as ``torch.nn.Conv2d``) of ``x (C, H + 2, W + 2)``."""
    k = w.shape[-1]
    h, wd = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = np.broadcast_to(b[:, None, None], (w.shape[0], h, wd)).astype(np.float32)
    for dy in range(k):
        for dx in range(k):
            out += np.tensordot(w[:, :, dy, dx], x[:, dy:dy + h, dx:dx + wd], axes=(1, 0))
    return out


def correction(rows: Callable[[int, int], np.ndarray], height: int, width: int,
               record: PostFilterRecord, channels: int) -> np.ndarray:
    """``P(y)`` of the formula above, float32 ``(channels, height, width)``.

    ``rows(r0, r1)`` returns rows ``r0..r1-1`` of the native YCbCr rendering, ``(channels, r1 - r0,
    width)``.  Work runs over bands of :data:`BAND_ROWS` rows with a two-row halo; edges are
    replicated before each convolution, as ``padding_mode="replicate"`` does, so the result does not
    depend on the bands."""
    w1, b1, w2, b2 = weights(record, channels)
    r = POST_KERNEL // 2
    out = np.empty((channels, height, width), dtype=np.float32)
    for r0 in range(0, height, BAND_ROWS):
        r1 = min(height, r0 + BAND_ROWS)
        # hidden rows lo..hi-1 (the band's plus a one-row halo inside the image), from input rows
        # lo-1..hi (replicated beyond the image)
        lo, hi = max(0, r0 - r), min(height, r1 + r)
        y = rows(max(0, lo - r), min(height, hi + r))
        idx = np.clip(np.arange(lo - r, hi + r), 0, height - 1) - max(0, lo - r)
        x = np.pad(y[:, idx], ((0, 0), (0, 0), (r, r)), mode="edge")
        hid = np.maximum(_conv(x, w1, b1), 0.0)
        hidx = np.clip(np.arange(r0 - r, r1 + r), 0, height - 1) - lo
        hpad = np.pad(hid[:, hidx], ((0, 0), (0, 0), (r, r)), mode="edge")
        out[:, r0:r1] = _conv(hpad, w2, b2)
    return out


def macs_per_pixel(record: PostFilterRecord | None, channels: int) -> int:
    """Multiply-accumulates per native pixel of the two convolutions (0 without a post filter)."""
    if record is None or not record.hidden:
        return 0
    return 2 * POST_KERNEL * POST_KERNEL * channels * record.hidden


def quantize(tensors: list[np.ndarray], bits: int = WEIGHT_BITS) -> PostFilterRecord:
    """Code float tensors ``[W1, b1, W2, b2]``: per tensor the table step nearest
    ``max|w| / (2^(bits-1) - 1)``, integers by rounding, and the Exp-Golomb order with the fewest bits."""
    hidden = tensors[0].shape[0]
    steps, orders, codes = [], [], []
    for t in tensors:
        t = np.asarray(t, dtype=np.float64)
        peak = float(np.abs(t).max())
        idx = quant.index_for_step(peak / (2 ** (bits - 1) - 1)) if peak > 0 else 0
        q = np.clip(np.rint(t / quant.step_from_index(idx)), -POST_MAX_CODE, POST_MAX_CODE).astype(np.int64).ravel()
        values = tuple(int(v) for v in q)
        steps.append(idx)
        orders.append(min(range(1 << POST_ORDER_BITS), key=lambda k, v=values: post_value_bits(v, k)))
        codes.append(values)
    return PostFilterRecord(hidden, tuple(steps), tuple(orders), tuple(codes))


def training_layout(device: torch.device) -> torch.memory_format:
    """The memory layout :func:`fit` trains in: channels-last (NHWC) on the CPU, where oneDNN's
    convolutions run a 256x256 crop's step 2.2 times as fast in it (5.4 against 11.9 ms at 2
    threads, most of it the backward pass; 1000 steps of a Kodak fit in 8.1 s instead of 13.6 s,
    inrc 0.15.7), the default layout elsewhere (untried on a GPU).  The layout changes only the
    order of float sums, not the maths."""
    import torch

    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def fit(y: torch.Tensor, target: torch.Tensor, matrix: torch.Tensor, centre: torch.Tensor, hidden: int,
        steps: int, seed: int = 0, deadline: float | None = None,
        tick: Callable[[str], None] | None = None, features: torch.Tensor | None = None,
        init: list[np.ndarray] | None = None, lr: float = LEARNING_RATE) -> list[np.ndarray]:
    """Fit ``P`` to one image: Adam on random ``CROP x CROP`` crops (a cosine learning-rate schedule)
    minimising ``|| M (y + P(y) - centre) - x ||^2`` with ``y`` the native YCbCr rendering ``(C, H, W)``,
    ``x`` the RGB image ``(C, H, W)`` and ``M`` the YCbCr -> RGB matrix.  The last convolution starts
    at zero (``P = 0``).  Stops early at ``deadline`` (``time.perf_counter()``).  ``features``: what
    ``P`` reads instead of ``y``, ``(C_in, H, W)`` (for probes of other inputs; format v7 codes a
    filter of ``y`` only).  ``init``: ``[W1, b1, W2, b2]`` to start from instead (a warm start: a filter
    refitted to latents that moved); ``lr``: the peak learning rate.  Returns ``[W1, b1, W2, b2]``."""
    import torch

    from .models import PostFilter

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = PostFilter(y.shape[0], hidden, None if features is None else features.shape[0])
    if init is not None:
        net.load_coded_tensors(init)
    layout = training_layout(y.device)
    net.to(y.device, memory_format=layout)  # initialised on the CPU, so the start is the same on every device
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    _, h, w = y.shape
    ch, cw = min(CROP, h), min(CROP, w)
    shift = (torch.einsum("ij,j->i", matrix, centre))[:, None, None]
    for step in range(steps):
        if deadline is not None and time.perf_counter() > deadline:
            break
        if tick is not None:
            tick(f"post filter {step + 1}/{steps}")
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
        i = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
        j = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
        crop = y[None, :, i:i + ch, j:j + cw].contiguous(memory_format=layout)
        feat = crop if features is None else features[None, :, i:i + ch, j:j + cw].contiguous(memory_format=layout)
        out = torch.einsum("ij,bjhw->bihw", matrix, crop + net(feat)) - shift
        loss = ((out - target[None, :, i:i + ch, j:j + cw]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach().cpu().numpy().copy() for p in net.coded_tensors()]
