"""Context modelling of the hybrid model's latents (the one place that defines the contexts).

Latent planes are coded coarse to fine (level ``L-1`` first), and within a level luma before
chroma, so when a plane is decoded its *parent* plane (same channel, next coarser level) and, for
channels ``c >= 1``, the luma plane of its own level are already known.  Within a plane the
values on the *anchor* checkerboard (``i + j`` even) come first, then the others, which can also
look at their four anchor neighbours (the checkerboard schedule of He et al., CVPR 2021).
Each value gets a context class from integer activity measures::

    a(i, j) = sum_{|di|,|dj| <= 1} |q_{l+1,c}(i // 2 + di, j // 2 + dj)|     (parent 3x3, zero padded)
              + 2 |q_{l,0}(i, j)|                                             (channels c >= 1)
    n(i, j) = sum of |q_{l,c}| over the four edge neighbours                  (anchors, zero padded)
    anchor:      class = A(a),                       A(a) = #{e in EDGES_A : e <= a} - 1   (0..7)
    non-anchor:  class = 8 + 4 min(A(a), 4) + N(n),  N(n) = #{e in EDGES_N : e <= n} - 1   (8..27)

with ``EDGES_A = 0, 1, 2, 3, 5, 8, 13, 20`` and ``EDGES_N = 0, 1, 2, 4``.  The values of one plane and
class share one two-sided geometric distribution whose ratio is chosen by code length
(:mod:`codec.entropy`).  Non-zero latents cluster around edges, and edges persist across scales
and along a level, so these activities predict where the sparse fine levels are non-zero: on
kodim23 the parent term alone coded the same latents in 33 % fewer bytes than one distribution per
plane, the checkerboard term another 3-5 %.  Every class is known before its values are decoded,
so decoding is one batched call per (plane, class) -- a wavefront over levels, no per-symbol
Python.  This is the coarse-to-fine and neighbour conditioning of wavelet coders (EBCOT in JPEG
2000) and of Cool-chic's causal context, reduced to a fixed rule with parameters fitted by code
length.  Small or flat planes do not pay for 28 distributions: each plane is coded in the mode
(one class, the 8 activity classes for every value, or the full rule) with the fewest bits, side
information included.
"""
from __future__ import annotations

import numpy as np

from . import entropy
from .errors import FormatError

EDGES = np.array([0, 1, 2, 3, 5, 8, 13, 20], dtype=np.int64)
EDGES_N = np.array([0, 1, 2, 4], dtype=np.int64)
N_ANCHOR = len(EDGES)
N_CONTEXTS = N_ANCHOR + 5 * len(EDGES_N)  # 28
# Context modes, chosen per plane by the encoder (total bits including one byte per class used):
SINGLE, ACTIVITY, FULL = 0, 1, 2  # one class; A(a) for every value; the checkerboard rule above
MODE_CLASSES = {SINGLE: 1, ACTIVITY: N_ANCHOR, FULL: N_CONTEXTS}


def coding_order(levels: int, channels: int) -> list[tuple[int, int]]:
    """``(level, channel)`` pairs in coding order: coarsest level first, channel 0 first."""
    return [(lv, c) for lv in reversed(range(levels)) for c in range(channels)]


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 box sum with zero padding (exact integer arithmetic)."""
    p = np.pad(a, 1)
    h, w = a.shape
    return sum(p[di : di + h, dj : dj + w] for di in range(3) for dj in range(3))


def activity(shape: tuple[int, int], parent: np.ndarray | None, luma: np.ndarray | None) -> np.ndarray:
    """The integer activity ``a`` of every value of a plane of ``shape`` (see the module docstring)."""
    a = np.zeros(shape, dtype=np.int64)
    if parent is not None:
        s = _box3(np.abs(parent.astype(np.int64)))
        a += np.repeat(np.repeat(s, 2, axis=0), 2, axis=1)[: shape[0], : shape[1]]
    if luma is not None:
        a += 2 * np.abs(luma.astype(np.int64))
    return a


def anchors(shape: tuple[int, int]) -> np.ndarray:
    """The anchor checkerboard: ``True`` where ``i + j`` is even."""
    i, j = np.indices(shape)
    return (i + j) % 2 == 0


def _neighbours(q: np.ndarray) -> np.ndarray:
    p = np.pad(np.abs(q.astype(np.int64)), 1)
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]


def anchor_classes(shape: tuple[int, int], parent: np.ndarray | None, luma: np.ndarray | None) -> np.ndarray:
    """``A(a)`` for every position of a plane (the class of the anchors)."""
    return np.searchsorted(EDGES, activity(shape, parent, luma), side="right") - 1


def full_classes(base: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """Classes of all values, given ``base = anchor_classes(...)`` and the plane (only its anchors are read)."""
    anc = anchors(plane.shape)
    n = _neighbours(np.where(anc, plane, 0))
    other = N_ANCHOR + len(EDGES_N) * np.minimum(base, 4) + np.searchsorted(EDGES_N, n, side="right") - 1
    return np.where(anc, base, other)


def plane_base(codes: list[list[np.ndarray]], level: int, channel: int) -> np.ndarray:
    """:func:`anchor_classes` of plane ``(level, channel)`` from its parent and luma planes in ``codes``."""
    parent = codes[level + 1][channel] if level + 1 < len(codes) else None
    luma = codes[level][0] if channel > 0 else None
    return anchor_classes(codes[level][channel].shape, parent, luma)


def mode_classes(base: np.ndarray, plane: np.ndarray, mode: int) -> np.ndarray:
    """Classes of a plane under context ``mode``, given its :func:`plane_base`."""
    if mode == SINGLE:
        return np.zeros(plane.shape, dtype=np.int64)
    return base if mode == ACTIVITY else full_classes(base, plane)


def plane_classes(codes: list[list[np.ndarray]], level: int, channel: int, mode: int = FULL) -> np.ndarray:
    """Classes of plane ``(level, channel)`` under context ``mode``, given all planes ``codes[level][channel]``."""
    return mode_classes(plane_base(codes, level, channel), codes[level][channel], mode)


def fit_thetas(x: np.ndarray, cls: np.ndarray, kmax: int) -> tuple[list[int | None], float]:
    """Per class, the index of the shortest-code Laplace ratio (``None`` if unused); total bits."""
    thetas: list[int | None] = [None] * N_CONTEXTS
    bits = 0.0
    if kmax == 0:
        return thetas, bits
    for b in range(N_CONTEXTS):
        sel = x[cls == b]
        if sel.size:
            hist = np.bincount(sel + kmax, minlength=2 * kmax + 1).astype(np.float64)
            thetas[b], nb = entropy.choose_theta_index(hist)
            bits += nb
    return thetas, bits


def encode_planes(codes: list[list[np.ndarray]]) -> tuple[dict[tuple[int, int], tuple[int, int, list[int | None]]], bytes]:
    """Code all planes; return ``{(level, channel): (mode, kmax, thetas)}`` and the coded words."""
    import constriction

    enc = constriction.stream.queue.RangeEncoder()
    params = {}
    for lv, c in coding_order(len(codes), len(codes[0])):
        x = np.asarray(codes[lv][c], dtype=np.int64)
        kmax = int(np.abs(x).max()) if x.size else 0
        if kmax > entropy.MAX_K:
            raise FormatError(f"quantized values up to {kmax} exceed the format's limit {entropy.MAX_K}")
        best = None
        base = plane_base(codes, lv, c)
        for mode in (SINGLE, ACTIVITY, FULL) if kmax else (SINGLE,):
            cls = mode_classes(base, x, mode)
            thetas, bits = fit_thetas(x, cls, kmax)
            cost = bits + 8 * sum(t is not None for t in thetas)
            if best is None or cost < best[0]:
                best = (cost, mode, cls, thetas)
        _, mode, cls, thetas = best
        params[(lv, c)] = (mode, kmax, thetas)
        for b, t in enumerate(thetas):
            if t is not None:
                sel = x[cls == b]
                enc.encode((sel + kmax).astype(np.int32), entropy.model(int(entropy.THETAS[t]), kmax))
    return params, enc.get_compressed().astype("<u4").tobytes()


def decode_planes(words: bytes, shapes: list[tuple[int, int]], channels: int,
                  params: dict[tuple[int, int], tuple[int, int, tuple[int | None, ...]]]) -> list[list[np.ndarray]]:
    """Inverse of :func:`encode_planes`; ``shapes[level]`` is a level's plane shape."""
    import constriction

    levels = len(shapes)
    codes: list[list[np.ndarray]] = [[np.zeros(shapes[lv], dtype=np.int64) for _ in range(channels)]
                                     for lv in range(levels)]
    try:
        dec = constriction.stream.queue.RangeDecoder(np.frombuffer(words, dtype="<u4").astype(np.uint32))
        for lv, c in coding_order(levels, channels):
            mode, kmax, thetas = params[(lv, c)]
            if kmax == 0:
                continue
            plane = codes[lv][c]
            base = plane_base(codes, lv, c)
            # in FULL mode only the anchors' classes are known until the anchors are decoded
            cls = np.where(anchors(plane.shape), base, -1) if mode == FULL else mode_classes(base, plane, mode)
            for b in range(MODE_CLASSES[mode]):
                if mode == FULL and b == N_ANCHOR:  # anchors done: the other values' classes are now known
                    cls = full_classes(base, plane)
                where = cls == b
                count = int(where.sum())
                if count == 0:
                    continue
                if thetas[b] is None:
                    raise FormatError(f"corrupt coded data: plane ({lv}, {c}) has values in context class {b}, "
                                      "which has no distribution")
                sym = dec.decode(entropy.model(int(entropy.THETAS[thetas[b]]), kmax), count)
                plane[where] = sym.astype(np.int64) - kmax
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - constriction raises plain exceptions on bad data
        raise FormatError(f"corrupt coded data: {exc}") from None
    return codes
