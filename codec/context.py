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

with ``EDGES_A = 0, 1, 2, 3, 5, 8, 13, 20`` and ``EDGES_N = 0, 1, 2, 4``.  In the full rule the
non-anchors are coded as ``q - pred``, ``pred`` a per-plane weighted mean of the four anchor
neighbours (:func:`predict`).  The values of one plane and class share one two-ratio distribution
(a discrete Laplace with its own zero probability, :func:`codec.entropy.two_ratio_table`) chosen
by code length, side information included (:func:`fit_dists`).  Non-zero latents cluster around edges, and edges persist across scales
and along a level, so these activities predict where the sparse fine levels are non-zero: on
kodim23 the parent term alone coded the same latents in 33 % fewer bytes than one distribution per
plane, the checkerboard term another 3-5 %.  Every class is known before its values are decoded,
so decoding is one batched call per (plane, class) -- a wavefront over levels, no per-symbol
Python.  This is the coarse-to-fine and neighbour conditioning of wavelet coders (EBCOT in JPEG
2000) and of Cool-chic's causal context, reduced to a fixed rule with parameters fitted by code
length.  Small or flat planes do not pay for 28 distributions: each plane is coded in the mode
(one class, the 8 activity classes for every value, or the full rule) with the fewest bits, side
information included.

Format version 5 codes each value's magnitude under the folded distribution
(:func:`codec.entropy.magnitude_table`) and its sign apart, under a per-plane probability for each
*sign context* (:func:`sign_classes`)::

    anchors and modes 0/1:  s = (sign(q_{l+1,c}(i // 2, j // 2)) + 1) + 3 (sign(q_{l,0}(i, j)) + 1)
                            (the luma term for chroma only: 3 or 9 contexts)
    FULL non-anchors:       S + S (sign(sum of the four anchor neighbours) + 1) + s   (S = 3 or 9)

An overcomplete pyramid refitted under an L1 penalty leaves the sign of a fine value correlated
with its parent's and its neighbours' (a fine detail corrects the overshoot of a coarse one), and
chroma signs with luma's; on four Kodak images the sign contexts coded the signs in 7-10 % fewer
bits, 1.2 to 1.6 % of the file (the sign-context modelling of JPEG 2000's EBCOT, Taubman 2000, and of
H.266's sign prediction, reduced to parent and neighbour signs).
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np

from . import bitstream, entropy
from .errors import FormatError

EDGES = np.array([0, 1, 2, 3, 5, 8, 13, 20], dtype=np.int64)
EDGES_N = np.array([0, 1, 2, 4], dtype=np.int64)
N_ANCHOR = len(EDGES)
N_CONTEXTS = N_ANCHOR + 5 * len(EDGES_N)  # 28
# Context modes, chosen per plane by the encoder (total bits including the side information):
SINGLE, ACTIVITY, FULL = 0, 1, 2  # one class; A(a) for every value; the checkerboard rule above
MODE_CLASSES = {SINGLE: 1, ACTIVITY: N_ANCHOR, FULL: N_CONTEXTS}
# the bins of EDGES and EDGES_N as lookup tables over the activities clipped to their last edge
# (int8: the same classes as np.searchsorted(EDGES, a, side="right") - 1, in an eighth of its memory)
_BIN = (np.searchsorted(EDGES, np.arange(EDGES[-1] + 1), side="right") - 1).astype(np.int8)
_BIN_N = (np.searchsorted(EDGES_N, np.arange(EDGES_N[-1] + 1), side="right") - 1).astype(np.int8)


def coding_order(levels: int, channels: int) -> list[tuple[int, int]]:
    """``(level, channel)`` pairs in coding order: coarsest level first, channel 0 first."""
    return [(lv, c) for lv in reversed(range(levels)) for c in range(channels)]


def plane_indices(levels: int, channels: int) -> list[int]:
    """The tensor index ``level * channels + channel`` of each plane in :func:`coding_order` (the
    ``order`` of :func:`codec.bitstream.pack_context_side` and ``unpack_context_side``)."""
    return [lv * channels + c for lv, c in coding_order(levels, channels)]


def pack_side(records: dict[tuple[int, int], bitstream.ContextRecord], levels: int, channels: int,
              filters: list[bitstream.FilterRecord] | None = None) -> bytes:
    """The side information of :func:`encode_planes`'s ``records`` (planes of ``levels`` levels and
    ``channels`` channels) in the current syntax (:func:`codec.bitstream.pack_context_side`),
    followed by ``filters`` (the pyramid basis's level filters; none by default)."""
    order = coding_order(levels, channels)
    return bitstream.pack_context_side([records[key] for key in order], filters or [], chroma=[c > 0 for _, c in order],
                                       order=plane_indices(levels, channels), channels=channels)


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 box sum with zero padding (exact integer arithmetic), as a column pass then a row pass."""
    r = a.copy()
    r[1:] += a[:-1]
    r[:-1] += a[1:]
    s = r.copy()
    s[:, 1:] += r[:, :-1]
    s[:, :-1] += r[:, 1:]
    return s


def _cross4(a: np.ndarray) -> np.ndarray:
    """Sum over the four edge neighbours with zero padding (exact integer arithmetic)."""
    s = np.zeros_like(a)
    s[1:] += a[:-1]
    s[:-1] += a[1:]
    s[:, 1:] += a[:, :-1]
    s[:, :-1] += a[:, 1:]
    return s


def _up2(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Each value of a parent plane repeated over its 2x2 children, cut to ``shape`` (the children
    of ``(i, j)`` are ``(2i..2i+1, 2j..2j+1)``)."""
    hp, wp = a.shape
    return np.broadcast_to(a[:, None, :, None], (hp, 2, wp, 2)).reshape(2 * hp, 2 * wp)[: shape[0], : shape[1]]


def class_groups(cls: np.ndarray, n: int) -> list[np.ndarray]:
    """For each class ``b < n``, the flat indices of the values of ``cls`` in class ``b``, in raster
    order (the order of ``np.flatnonzero(cls == b)``, in one stable counting sort instead of ``n``
    passes over the plane); values outside ``0..n-1`` (a FULL plane's non-anchors before their
    classes are known) belong to no group."""
    key = cls.ravel()
    if key.size and (key.min() < 0 or key.max() > n):
        key = np.where((key >= 0) & (key < n), key, n)
    # 8-bit unsigned keys where the classes allow (always, in this format): numpy's stable sort of
    # them is one radix pass, about three times as fast as of 16-bit keys (12 million values: 0.11 s
    # instead of 0.37 s), the same order
    key = key.astype(np.uint8 if n < 255 else np.int32)
    order = np.argsort(key, kind="stable")
    ends = np.cumsum(np.bincount(key, minlength=n + 1))
    return [order[(ends[b - 1] if b else 0) : ends[b]] for b in range(n)]


def _groups_within(cls: np.ndarray, where: np.ndarray, n: int) -> list[np.ndarray]:
    """:func:`class_groups` of ``cls`` restricted to the positions where ``where`` is true (the
    same flat indices, in raster order), sorting only those: the decoder's checkerboard halves."""
    idx = np.flatnonzero(where)
    return [idx[g] for g in class_groups(cls.ravel()[idx], n)]


def activity(shape: tuple[int, int], parent: np.ndarray | None, luma: np.ndarray | None) -> np.ndarray:
    """The integer activity ``a`` of every value of a plane of ``shape`` (see the module docstring)."""
    # int32: |q| <= entropy.MAX_K, so a < 11 MAX_K
    a = np.zeros(shape, dtype=np.int32)
    if parent is not None:
        a += _up2(_box3(np.abs(parent.astype(np.int32))), shape)
    if luma is not None:
        a += 2 * np.abs(luma.astype(np.int32))
    return a


@functools.lru_cache(maxsize=64)
def anchors(shape: tuple[int, int]) -> np.ndarray:
    """The anchor checkerboard: ``True`` where ``i + j`` is even (cached per shape, read-only)."""
    a = np.zeros(shape, dtype=bool)
    a[0::2, 0::2] = True
    a[1::2, 1::2] = True
    a.flags.writeable = False
    return a


def _neighbours(q: np.ndarray) -> np.ndarray:
    return _cross4(np.abs(q.astype(np.int32)))  # int32: at most 4 MAX_K


def anchor_classes(shape: tuple[int, int], parent: np.ndarray | None, luma: np.ndarray | None) -> np.ndarray:
    """``A(a)`` for every position of a plane (the class of the anchors; int8)."""
    return _BIN[np.minimum(activity(shape, parent, luma), int(EDGES[-1]))]


def full_classes(base: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """Classes of all values, given ``base = anchor_classes(...)`` and the plane (only its anchors are read)."""
    anc = anchors(plane.shape)
    return np.where(anc, base, _non_anchor_classes(base, plane, anc))  # int8, as base


def _non_anchor_classes(base: np.ndarray, plane: np.ndarray, anc: np.ndarray) -> np.ndarray:
    """The FULL rule's class ``8 + 4 min(A(a), 4) + N(n)`` at every position (int8; meaningful at
    the non-anchors), given ``base`` and the plane's anchors ``anc``."""
    n = _neighbours(np.where(anc, plane, 0))
    return np.int8(N_ANCHOR) + np.int8(len(EDGES_N)) * np.minimum(base, np.int8(4)) + _BIN_N[np.minimum(n, int(EDGES_N[-1]))]


WEIGHT_BITS = 4  # FULL mode: non-anchor prediction weight w in 0..15, eighths of the neighbours' mean


def predict(plane: np.ndarray, weight: int, anchor_sum: np.ndarray | None = None) -> np.ndarray:
    """FULL mode's prediction of the non-anchor values from their four anchor neighbours (0 on anchors)::

        s = sum of q over the four edge neighbours (anchors, zero padded)
        pred = sign(s) floor(|s| w / 32 + 1/2)      (w / 8 times the neighbours' mean)

    Exact integer arithmetic.  Neighbouring latents of a level are correlated (the analytic fill
    and RDOQ leave smooth residue along edges); coding ``q - pred`` instead of ``q`` is the
    mean-prediction half of the checkerboard context model (He et al., CVPR 2021), with one
    weight per plane instead of a network.  ``anchor_sum``: ``s`` at every position, if the caller
    has it (:func:`_anchor_sum`)."""
    anc = anchors(plane.shape)
    return np.where(anc, 0, _weighted(_anchor_sum(plane, anc) if anchor_sum is None else anchor_sum, weight))


def _weighted(s: np.ndarray, weight: np.ndarray | int) -> np.ndarray:
    """``sign(s) floor(|s| w / 32 + 1/2)`` (broadcasts over an array of weights)."""
    return np.sign(s) * ((np.abs(s) * weight + 16) // 32)


def _anchor_sum(plane: np.ndarray, anc: np.ndarray) -> np.ndarray:
    return _cross4(np.where(anc, plane, 0).astype(np.int32))  # int32: at most 4 MAX_K in size


def choose_weight(plane: np.ndarray, anchor_sum: np.ndarray | None = None, where: np.ndarray | None = None) -> int:
    """The weight ``w`` of :func:`predict` with the smallest sum of ``|q - pred|`` over the non-anchors
    (the Laplace code length's proxy); ``anchor_sum`` as for :func:`predict`.  ``where``: the values
    predicted, if not the non-anchors (a probe's other schedule; ``anchor_sum`` then required)."""
    m = ~anchors(plane.shape) if where is None else where
    s = (_anchor_sum(plane, ~m) if anchor_sum is None else anchor_sum)[m]
    x = plane[m].astype(np.int64)
    nz = s != 0  # where s = 0 every weight predicts 0
    s, x = s[nz], x[nz]
    if not s.size:
        return 0
    pred = _weighted(s[None, :], np.arange(1 << WEIGHT_BITS)[:, None])
    return int(np.argmin(np.abs(x[None, :] - pred).sum(axis=1)))


_COARSE = slice(None, None, 4)  # every fourth ratio index: best_weight's grid
BEST_WEIGHT_VALUES = 1 << 20  # best_weight prices weights in batches of about this many values
_LOG2_COARSE = entropy._LOG2_THETAS[_COARSE]  # log2 of those ratios


def best_weight(plane: np.ndarray, anchor_sum: np.ndarray, anc: np.ndarray, cls: np.ndarray, scls: np.ndarray,
                n_signs: int, weights: range | None = None) -> int:
    """FULL mode's prediction weight by code length (the coder's choice since 0.18, RDOQ's since 0.19;
    :func:`choose_weight` is the L1 proxy they used before).  For each ``w`` in ``0..15``, the plane's FULL
    symbols ``q - pred_w`` (:func:`predict`) under its classes ``cls`` and sign contexts ``scls``
    (``n_signs`` of them) cost about::

        sum_b min_{rho, theta} L_b(rho, theta) - n_nz + sum_s min_k S_s(k)     (or one bit per sign)

    with ``L_b`` class ``b``'s two-ratio code length (:func:`codec.entropy.two_ratio_bits`, from its
    count, non-zeros and excess over 1; ratios on every fourth index of the table) and ``S_s(k)``
    the bits of sign context ``s``'s signs at probability index ``k`` plus ``se(k - SIGN_MID)``; the
    weight with the fewest wins (the lowest of equals); ``weights``: the candidates, if not all
    16 (RDOQ's later sweeps try a few around the plane's last weight).  The side information of the ratios is left
    out (it hardly depends on ``w``).  Only the non-anchors with a non-zero neighbour sum change
    with ``w``; the rest are counted once.  The sign contexts are why the L1 proxy misses: a
    weight below the neighbours' mean leaves residuals whose sign follows the neighbours' sum,
    which the FULL rule's sign contexts code cheaply (on ``fast`` files of kodim09 and kodim12 the
    code-length choice saved 0.35-0.56 % of the file, most of it on level 1's luma plane, where the
    L1 proxy chose 7 or 12 eighths and the code length 3 or 6)."""
    var = ~anc & (anchor_sum != 0)
    if not var.any():
        return 0
    c_all = cls.astype(np.int64)
    n = np.bincount(c_all.ravel(), minlength=N_CONTEXTS).astype(np.float64)
    used = n > 0
    fixed = ~var
    a0 = np.abs(plane[fixed]).astype(np.int64)
    c0 = c_all[fixed]
    nnz0 = np.bincount(c0, weights=(a0 > 0), minlength=N_CONTEXTS)
    ex0 = np.bincount(c0, weights=np.maximum(a0 - 1, 0), minlength=N_CONTEXTS)
    k0 = int(a0.max()) if a0.size else 0
    s_fixed = 3 * scls[fixed].astype(np.int64) + np.sign(plane[fixed]).astype(np.int64) + 1
    signs0 = np.bincount(s_fixed, minlength=3 * n_signs)[: 3 * n_signs]
    xv = plane[var].astype(np.int64)
    sv = anchor_sum[var].astype(np.int64)
    cv = c_all[var]
    scv = 3 * scls[var].astype(np.int64) + 1
    cand = np.arange(1 << WEIGHT_BITS) if weights is None else np.asarray(weights, dtype=np.int64)
    n_w = cand.size
    chunk = max(1, min(n_w, BEST_WEIGHT_VALUES // xv.size))  # weights priced at once, bounding the memory
    total = np.empty(n_w)
    for w0 in range(0, n_w, chunk):
        at_w = np.arange(w0, min(n_w, w0 + chunk))
        ws = cand[at_w]
        k = ws.size
        sym = xv[None, :] - _weighted(sv[None, :], ws[:, None])  # (k, values)
        a = np.abs(sym)
        at = (np.arange(k)[:, None] * N_CONTEXTS + cv[None, :]).ravel()
        nnz = nnz0 + np.bincount(at, weights=(a > 0).ravel(), minlength=k * N_CONTEXTS).reshape(k, N_CONTEXTS)
        ex = ex0 + np.bincount(at, weights=np.maximum(a - 1, 0).ravel(), minlength=k * N_CONTEXTS).reshape(k, N_CONTEXTS)
        log_z = np.stack([entropy._two_ratio_log_norm(max(k0, int(m)))[_COARSE, _COARSE] for m in a.max(axis=1)])
        cost = (n[None, used, None, None] * log_z[:, None] - nnz[:, used, None, None] * _LOG2_COARSE[None, None, :, None]
                - ex[:, used, None, None] * _LOG2_COARSE[None, None, None, :])
        bits = cost.min(axis=(2, 3)).sum(axis=1) - nnz.sum(axis=1)
        at = (np.arange(k)[:, None] * (3 * n_signs) + scv[None, :] + np.sign(sym)).ravel()
        counts = np.bincount(at, minlength=k * 3 * n_signs).reshape(k, n_signs, 3) + signs0.reshape(n_signs, 3)
        neg, pos = counts[..., 0], counts[..., 2]
        total[at_w] = bits + np.minimum((entropy.sign_bits(pos, neg) + _SE_SIGN).min(axis=-1).sum(axis=-1),
                                      (neg + pos).sum(axis=-1))
    return int(cand[np.argmin(total)])


def symbols(plane: np.ndarray, mode: int, weight: int, anchor_sum: np.ndarray | None = None) -> np.ndarray:
    """What is entropy-coded for a plane: the values, minus :func:`predict` in FULL mode
    (``anchor_sum`` as for :func:`predict`)."""
    return plane - predict(plane, weight, anchor_sum) if mode == FULL and weight else plane


def plane_base(codes: list[list[np.ndarray]], level: int, channel: int) -> np.ndarray:
    """:func:`anchor_classes` of plane ``(level, channel)`` from its parent and luma planes in ``codes``."""
    parent = codes[level + 1][channel] if level + 1 < len(codes) else None
    luma = codes[level][0] if channel > 0 else None
    return anchor_classes(codes[level][channel].shape, parent, luma)


def mode_classes(base: np.ndarray, plane: np.ndarray, mode: int) -> np.ndarray:
    """Classes of a plane under context ``mode``, given its :func:`plane_base`."""
    if mode == SINGLE:
        return np.zeros(plane.shape, dtype=np.int8)
    return base if mode == ACTIVITY else full_classes(base, plane)


def plane_classes(codes: list[list[np.ndarray]], level: int, channel: int, mode: int = FULL) -> np.ndarray:
    """Classes of plane ``(level, channel)`` under context ``mode``, given all planes ``codes[level][channel]``."""
    return mode_classes(plane_base(codes, level, channel), codes[level][channel], mode)


def sign_classes(codes: list[list[np.ndarray]], level: int, channel: int, mode: int) -> np.ndarray:
    """The sign context of every value of plane ``(level, channel)`` (module docstring), given its
    parent and luma planes in ``codes`` and, for the FULL non-anchors, the plane's own anchors."""
    plane = codes[level][channel]
    h, w = plane.shape
    # int8 throughout: the contexts are below 36
    if level + 1 < len(codes):
        s = _up2(np.sign(codes[level + 1][channel]).astype(np.int8), (h, w)) + np.int8(1)
    else:
        s = np.ones((h, w), dtype=np.int8)
    if channel > 0:
        s = s + np.int8(3) * (np.sign(codes[level][0]).astype(np.int8) + np.int8(1))
    if mode != FULL:
        return s
    anc = anchors(plane.shape)
    return _full_signs(s, _anchor_sum(plane, anc), anc, channel > 0)


def _full_signs(plain: np.ndarray, anchor_sum: np.ndarray, anc: np.ndarray, chroma: bool) -> np.ndarray:
    """FULL mode's sign contexts from the plain ones (:func:`sign_classes` in another mode) and the
    sum of each value's four anchor neighbours: the non-anchors add that sum's sign."""
    n = np.int8(9 if chroma else 3)
    return np.where(anc, plain, n + n * (np.sign(anchor_sum).astype(np.int8) + np.int8(1)) + plain)


def choose_signs(sym: np.ndarray, scls: np.ndarray, n_classes: int) -> tuple[tuple[int, ...], float]:
    """The sign probability indices of a plane (``()``: every sign at 1/2) and the bits they cost,
    the flag and side information included: per sign context, the index with the fewest bits of
    its signs plus ``se(k - SIGN_MID)``; modelled only if that beats one bit per sign."""
    # one pass: the count of each (context, sign of sym) pair
    counts = np.bincount(3 * scls.astype(np.int32).ravel() + (np.sign(sym).astype(np.int32).ravel() + 1),
                         minlength=3 * n_classes)[: 3 * n_classes].reshape(n_classes, 3)
    neg, pos = counts[:, 0], counts[:, 2]
    cost = entropy.sign_bits(pos, neg) + _SE_SIGN[None, :]
    ks = np.argmin(cost, axis=1)
    modelled = float(cost[np.arange(n_classes), ks].sum())
    uniform = float(neg.sum() + pos.sum())
    if modelled < uniform:
        return tuple(int(k) for k in ks), modelled + 1
    return (), uniform + 1


def _code_signs(enc, sym: np.ndarray, scls: np.ndarray, where: np.ndarray, signs: tuple[int, ...]) -> None:
    """Encode the signs of the non-zero ``sym`` at ``where``, one batch per sign context in order."""
    sel = np.flatnonzero(where & (sym != 0))
    flat = sym.ravel()
    for k_ctx, idx in _sign_groups(scls, sel):
        k = signs[k_ctx] if signs else entropy.SIGN_MID
        enc.encode((flat[idx] > 0).astype(np.int32), entropy.sign_model(int(k)))


def _sign_groups(scls: np.ndarray, sel: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """The flat indices ``sel`` (raster order) grouped by their sign context, contexts in increasing
    order and each group in raster order (as ``np.unique`` and one boolean mask per context)."""
    ctx = scls.ravel()[sel]
    if not ctx.size:
        return []
    n = int(ctx.max()) + 1
    return [(k, sel[g]) for k, g in enumerate(class_groups(ctx, n)) if g.size]


def _decode_signs(dec, mag: np.ndarray, scls: np.ndarray, where: np.ndarray, signs: tuple[int, ...]) -> None:
    """Inverse of :func:`_code_signs`: negate ``mag`` in place where a decoded sign is negative."""
    sel = np.flatnonzero(where & (mag != 0))
    flat = mag.reshape(-1)  # a view: mag is a whole plane
    for k_ctx, idx in _sign_groups(scls, sel):
        k = signs[k_ctx] if signs else entropy.SIGN_MID
        bits = dec.decode(entropy.sign_model(int(k)), int(idx.size))
        flat[idx[bits == 0]] *= -1


_N = len(entropy.THETAS)
# bits of se(d) for d = -_N..._N, and of se(rho - theta) for every (rho, theta) pair of indices
_SE = np.array([bitstream.se_bits(d) for d in range(-_N, _N + 1)], dtype=np.float64)
_SE_PAIR = _SE[np.subtract.outer(np.arange(_N), np.arange(_N)) + _N]
_IDX = np.arange(_N)
_SE_STEP = _SE[np.subtract.outer(_IDX, _IDX) + _N]  # [t, u]: bits of se(t - u)
_SE_SIGN = np.array([bitstream.se_bits(k - entropy.SIGN_MID) for k in range(entropy.SIGN_LEVELS)], dtype=np.float64)


def fit_dists(x: np.ndarray, cls: np.ndarray, kmax: int, n_classes: int = N_CONTEXTS,
              pred: int = bitstream.FIRST_THETA) -> tuple[list[tuple[int, int] | None], float]:
    """Per class ``b < n_classes``, the ``(rho, theta)`` indices into :data:`codec.entropy.THETAS`
    (every class of the mode has them, in use or not; ``None`` beyond ``n_classes``) and the total
    bits: coded values plus their side information in the syntax of
    :func:`codec.bitstream.pack_context_side` (per class a "same as before" flag or the two ratio
    indices as differences), jointly the fewest over the plane's classes (:func:`fit_hist`).
    ``pred``: the predicted ratio index of the first class."""
    if kmax == 0:
        return [None] * N_CONTEXTS, 0.0
    # every class's histogram of magnitudes in one pass: row b counts |x| over class b
    mags, c = np.abs(x).ravel(), cls.ravel()
    if c.size and (c.min() < 0 or c.max() >= n_classes):
        keep = (c >= 0) & (c < n_classes)
        mags, c = mags[keep], c[keep]
    hist = np.bincount(c.astype(np.int64) * (kmax + 1) + mags, minlength=n_classes * (kmax + 1)).reshape(n_classes, kmax + 1)
    return fit_hist(hist, pred)


_DP = threading.local()


def _dp_buffer(rows: int) -> np.ndarray:
    """This thread's float64 work array for :func:`fit_hist`: ``rows`` tables over the (zero ratio,
    tail ratio) pairs, kept between calls."""
    buf = getattr(_DP, "buf", None)
    if buf is None or buf.shape[0] < rows:
        buf = _DP.buf = np.empty((max(rows, MODE_CLASSES[FULL] + 2), _N, _N))
    return buf


def fit_hist(hist: np.ndarray, pred: int = bitstream.FIRST_THETA) -> tuple[list[tuple[int, int] | None], float]:
    """:func:`fit_dists` from the classes' histograms of magnitudes, ``hist[b, k] = #{class b, |x| = k}``
    for ``k = 0..kmax`` (``kmax`` > 0, one row per class of the mode, in use or not).

    Every class gets a distribution (format version 9, :func:`codec.bitstream.pack_context_side`):
    the first's ratios are coded as differences from ``pred`` and each later class's either as
    "the same as the class before" (one bit) or as new differences from it (one bit more), so the
    classes' choices are linked.  They are made jointly: with ``L_b(rho, theta)`` class ``b``'s code
    length (0 for a class without values) and ``s(d)`` the bits of ``se(d)``, the ratios minimise
    the total by dynamic programming over the pair (Viterbi)::

        V_0(r, t) = L_0(r, t) + s(t - pred) + s(r - t)
        V_b(r, t) = L_b(r, t) + min(V_{b-1}(r, t) + 1,  1 + s(r - t) + min_u [min_r' V_{b-1}(r', u) + s(t - u)])

    then back from the best final pair.  So a class without values costs one bit, and a run of
    classes with near-equal statistics shares one distribution where its own would not pay for its
    bits.  Ties go to "the same", then to the lowest index.  (Versions 3 to 8 coded an in-use flag
    and two differences for every class in use: about 0.5-0.9 % more of a ``fast`` file below
    0.2 bpp.)"""
    n = hist.shape[0]
    dists: list[tuple[int, int] | None] = [None] * N_CONTEXTS
    # V_b for every class (kept for the way back), then two work arrays: one buffer per thread,
    # reused, since fresh arrays of this size cost a page fault per 4 kB
    work = _dp_buffer(n + 2)
    values, chain, scratch = work[:n], work[n], work[n + 1]
    links: list[tuple[np.ndarray, np.ndarray]] = []  # per class b >= 1: per theta, the best theta before and the new pair's cost
    value = np.add(_SE_PAIR, _SE[_IDX - pred + _N][None, :], out=values[0])
    for b in range(n):
        if b:
            np.add(value.min(axis=0)[None, :], _SE_STEP, out=chain)  # [theta, previous theta]
            prev = chain.argmin(axis=1)
            new_t = chain[_IDX, prev]
            links.append((prev, new_t))
            # "the same" or new, both after one flag bit
            value = np.minimum(value, np.add(_SE_PAIR, new_t[None, :], out=scratch), out=values[b])
            value += 1.0
        if hist[b].any():
            entropy.two_ratio_bits(hist[b].astype(np.float64), out=value, scratch=scratch)
    r, t = np.unravel_index(int(value.argmin()), value.shape)
    bits = float(value[r, t])
    for b in range(n - 1, -1, -1):
        dists[b] = (int(r), int(t))
        if b:
            prev, new_t = links[b - 1]
            before = values[b - 1]
            if _SE_PAIR[r, t] + new_t[t] < before[r, t]:  # new (ties: the same)
                t = int(prev[t])
                r = int(before[:, t].argmin())
    return dists, bits


def first_theta(dists: list[tuple[int, int] | None] | tuple[tuple[int, int] | None, ...], default: int) -> int:
    """The ratio index of the first class in use (the next plane's prediction), else ``default``."""
    return next((d[1] for d in dists if d is not None), default)


@dataclass
class _PlaneCode:
    """One context mode's coding of a plane: its estimated bits (side information included), the
    classes, the coded symbols, their largest magnitude, the distributions, the sign contexts and
    the sign probabilities, the prediction weight (:func:`choose_weight`); ``costs``: every mode's
    bits, in mode order."""
    bits: float
    mode: int
    cls: np.ndarray | None  # set once the mode is chosen
    sym: np.ndarray
    kmax: int
    dists: list[tuple[int, int] | None]
    scls: np.ndarray
    signs: tuple[int, ...]
    weight: int = 0
    costs: tuple[float, ...] = ()


def _best_mode(codes: list[list[np.ndarray]], lv: int, c: int, pred: int) -> _PlaneCode:
    """The context mode of plane ``(lv, c)`` with the fewest bits (SINGLE, ACTIVITY, FULL: the first
    of equals), given the ratio index ``pred`` of the plane before; its prediction weight is
    :func:`choose_weight`'s.

    The three modes share most of their work: SINGLE and ACTIVITY code the same symbols (the
    values) under the same sign contexts, and FULL codes the anchors as ACTIVITY does.  So one
    histogram over (anchor class, checkerboard half, magnitude) gives SINGLE's, ACTIVITY's and
    FULL's anchor rows, and a second one over the non-anchors FULL's other rows: two passes over
    the plane instead of three, with the classes, predictions and sign contexts formed once (the
    same counts, hence the same choices and bits, as :func:`fit_dists` on each mode)."""
    x = np.asarray(codes[lv][c])
    k_vals = int(np.abs(x).max())
    if k_vals > entropy.MAX_K:
        raise FormatError(f"quantized values up to {k_vals} exceed the format's limit {entropy.MAX_K}")
    x = x.astype(np.int32, copy=False)
    base = plane_base(codes, lv, c)
    anc = anchors(x.shape)
    # SINGLE and ACTIVITY: the values under the anchor classes, split by checkerboard half
    h = np.bincount(((base.astype(np.int32) * 2 + anc) * (k_vals + 1) + np.abs(x)).ravel(),
                    minlength=2 * N_ANCHOR * (k_vals + 1)).reshape(N_ANCHOR, 2, k_vals + 1)
    act = h.sum(axis=1)
    nnz = int(act[:, 1:].sum())
    # FULL: the non-anchors' symbols (values minus their prediction) under their own classes
    ssum = _anchor_sum(x, anc)
    other = _non_anchor_classes(base, x, anc)
    s_plain = sign_classes(codes, lv, c, ACTIVITY)
    s_full = _full_signs(s_plain, ssum, anc, c > 0)
    cls_full = np.where(anc, base, other)
    weight = best_weight(x, ssum, anc, cls_full, s_full, bitstream.sign_contexts(FULL, c > 0))
    sym_f = symbols(x, FULL, weight, ssum)
    k_full = int(np.abs(sym_f).max())
    if k_full > entropy.MAX_K:
        raise FormatError(f"quantized values up to {k_full} exceed the format's limit {entropy.MAX_K}")
    n_other = N_CONTEXTS - N_ANCHOR
    hf = np.bincount(np.where(anc, n_other * (k_full + 1), (other.astype(np.int32) - N_ANCHOR) * (k_full + 1) + np.abs(sym_f)).ravel(),
                     minlength=(n_other + 1) * (k_full + 1)).reshape(n_other + 1, k_full + 1)[:n_other]
    full = np.zeros((N_CONTEXTS, k_full + 1), dtype=h.dtype)
    k_anc = min(k_vals, k_full)  # the anchors' magnitudes are at most both
    full[:N_ANCHOR, : k_anc + 1] = h[:, 1, : k_anc + 1]
    full[N_ANCHOR:] = hf
    # sign contexts (above): FULL's non-anchors add the sign of their anchor neighbours' sum
    signs_plain, sbits_plain = choose_signs(x, s_plain, bitstream.sign_contexts(ACTIVITY, c > 0))
    signs_full, sbits_full = choose_signs(sym_f, s_full, bitstream.sign_contexts(FULL, c > 0))
    best, costs = None, []
    for mode, hist, sym, kmax, scls, signs, sbits, n_nz in (
            (SINGLE, act.sum(axis=0)[None], x, k_vals, s_plain, signs_plain, sbits_plain, nnz),
            (ACTIVITY, act, x, k_vals, s_plain, signs_plain, sbits_plain, nnz),
            (FULL, full, sym_f, k_full, s_full, signs_full, sbits_full, int(np.count_nonzero(sym_f)))):
        dists, bits = fit_hist(hist, pred) if kmax else ([None] * N_CONTEXTS, 0.0)
        # fit_hist charges one bit per sign (the two-sided table); the sign model replaces it
        bits += sbits - n_nz + bitstream.ue_bits(kmax, bitstream.K_ORDER)
        bits += WEIGHT_BITS if mode == FULL else 0
        costs.append(bits)
        if best is None or bits < best.bits:
            best = _PlaneCode(bits, mode, None, sym, kmax, dists, scls, signs, weight)
    best.costs = tuple(costs)
    best.cls = cls_full if best.mode == FULL else mode_classes(base, x, best.mode)
    return best


def encode_planes(codes: list[list[np.ndarray]], steps: list[list[int]],
                  enc=None) -> tuple[dict[tuple[int, int], bitstream.ContextRecord], bytes]:
    """Code all planes (``steps[level][channel]``: step indices) in format version 5 (magnitudes,
    then signs under their contexts); return each plane's :class:`codec.bitstream.ContextRecord`
    and the coded words.  ``enc``: a ``constriction`` range encoder to append to (the wavelet
    basis codes its four plane groups in one stream); its words are then the caller's to take, and
    ``b""`` is returned."""
    import constriction

    own = enc is None
    if own:
        enc = constriction.stream.queue.RangeEncoder()
    records = {}
    pred = bitstream.FIRST_THETA
    for lv, c in coding_order(len(codes), len(codes[0])):
        x = codes[lv][c]
        if not x.any():
            records[(lv, c)] = bitstream.ContextRecord(0, SINGLE, 0, (None,) * N_CONTEXTS)
            continue
        best = _best_mode(codes, lv, c, pred)
        mode, sym, scls, signs, dists, kmax, weight = (best.mode, best.sym, best.scls, best.signs, best.dists, best.kmax,
                                                       best.weight)
        records[(lv, c)] = bitstream.ContextRecord(int(steps[lv][c]), mode, kmax, tuple(dists),
                                                   weight if mode == FULL else 0, signs)
        pred = first_theta(dists, pred)
        anc = anchors(x.shape)
        flat_sym, groups = sym.ravel(), class_groups(best.cls, MODE_CLASSES[mode])
        for b, d in enumerate(dists):
            if mode == FULL and b == N_ANCHOR:
                _code_signs(enc, sym, scls, anc, signs)
            if d is not None and groups[b].size:
                sel = np.abs(flat_sym[groups[b]])
                enc.encode(sel.astype(np.int32, copy=False),
                           entropy.magnitude_model(int(entropy.THETAS[d[1]]), kmax, int(entropy.THETAS[d[0]])))
        _code_signs(enc, sym, scls, ~anc if mode == FULL else np.ones(x.shape, dtype=bool), signs)
    return records, (enc.get_compressed().astype("<u4").tobytes() if own else b"")


def range_decoder(words: bytes):
    """A ``constriction`` range decoder over coded words (little-endian 32-bit)."""
    import constriction

    try:
        return constriction.stream.queue.RangeDecoder(np.frombuffer(words, dtype="<u4").astype(np.uint32))
    except Exception as exc:  # noqa: BLE001 - constriction raises plain exceptions on bad data
        raise FormatError(f"corrupt coded data: {exc}") from None


def decode_planes(words: bytes, shapes: list[tuple[int, int]], channels: int,
                  records: dict[tuple[int, int], bitstream.ContextRecord], signed: bool = True,
                  dec=None) -> list[list[np.ndarray]]:
    """Inverse of :func:`encode_planes`; ``shapes[level]`` is a level's plane shape.  ``signed``:
    magnitudes and signs coded apart (version 5); ``False`` reads versions 2 to 4, whose values
    were coded under the two-sided table.  ``dec``: a range decoder (:func:`range_decoder`) to go on
    reading from, instead of one over ``words``."""
    levels = len(shapes)
    # int32: |q| <= entropy.MAX_K and a prediction is at most 15/32 of four of them; half int64's
    # memory (a 12-Mpixel file's planes: 192 MB instead of 384 MB)
    codes: list[list[np.ndarray]] = [[np.zeros(shapes[lv], dtype=np.int32) for _ in range(channels)]
                                     for lv in range(levels)]
    try:
        if dec is None:
            dec = range_decoder(words)
        for lv, c in coding_order(levels, channels):
            r = records[(lv, c)]
            mode, kmax = r.mode, r.kmax
            if kmax == 0:
                continue
            plane = codes[lv][c]
            base = plane_base(codes, lv, c)
            anc = anchors(plane.shape)
            # in FULL mode only the anchors' classes are known until the anchors are decoded (the
            # others are in no group until then)
            offset = np.zeros(plane.shape, dtype=np.int32)
            # the sign contexts: FULL's non-anchors' are known once the anchors are (the anchors'
            # are the plain ones)
            scls = sign_classes(codes, lv, c, ACTIVITY) if signed else None
            sym_all = np.zeros(plane.shape, dtype=np.int32)  # version 5: magnitudes until the signs come
            flat_sym, flat_plane = sym_all.reshape(-1), plane.reshape(-1)
            if mode == FULL:
                groups = _groups_within(base, anc, MODE_CLASSES[mode])
            else:
                groups = class_groups(mode_classes(base, plane, mode), MODE_CLASSES[mode])
            for b in range(MODE_CLASSES[mode]):
                if mode == FULL and b == N_ANCHOR:  # anchors done: the others' classes and predictions are known
                    if signed:
                        _decode_signs(dec, sym_all, scls, anc, r.signs)
                        plane[anc] = sym_all[anc]
                    ssum = _anchor_sum(plane, anc)
                    offset = predict(plane, r.weight, ssum)
                    if signed:
                        scls = _full_signs(scls, ssum, anc, c > 0)
                    # the non-anchors' groups (the anchors' classes, below N_ANCHOR, are done)
                    groups = _groups_within(full_classes(base, plane), ~anc, MODE_CLASSES[mode])
                where = groups[b]
                count = int(where.size)
                if count == 0:
                    continue
                d = r.dists[b]
                if d is None:
                    raise FormatError(f"corrupt coded data: plane ({lv}, {c}) has values in context class {b}, "
                                      "which has no distribution")
                rho, theta = int(entropy.THETAS[d[0]]), int(entropy.THETAS[d[1]])
                if signed:
                    flat_sym[where] = dec.decode(entropy.magnitude_model(theta, kmax, rho), count)
                else:
                    sym = dec.decode(entropy.model(theta, kmax, rho), count)
                    flat_plane[where] = sym.astype(np.int32) - kmax + offset.reshape(-1)[where]
            if signed:
                rest = ~anc if mode == FULL else np.ones(plane.shape, dtype=bool)
                _decode_signs(dec, sym_all, scls, rest, r.signs)
                plane[rest] = sym_all[rest] + offset[rest]
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - constriction raises plain exceptions on bad data
        raise FormatError(f"corrupt coded data: {exc}") from None
    return codes
