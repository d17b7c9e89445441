"""Encoding the hybrid model in the wavelet basis (format version 10, basis 1): steps, RDOQ, coding.

:mod:`codec.wavelet` is the basis; this module chooses its integer coefficients and writes the
file.  For a luma step ``Delta`` (in ``[0, 1]`` pixel units):

1. The image goes to the coded colour space (:mod:`codec.color`: JFIF YCbCr or the image's own
   rotation), minus 0.5 (mid-grey maps to 0.5 in every component), and each channel through
   :func:`codec.wavelet.analyse` (once per encode: :class:`Analysis`).
2. Subband ``b`` of channel ``c`` gets the step ``Delta_b = Delta kappa_c / ||g_b||``, snapped to
   :mod:`codec.quant`'s table: ``||g_b||`` is the norm of one of its synthesis functions
   (:func:`codec.wavelet.band_norms`), so that a unit of error in any subband adds about
   ``(Delta kappa_c)^2`` of squared error to channel ``c``; ``kappa_c`` is the chroma factor of the
   colour space (:func:`codec.pyramid.chroma_kappa`, 1 for luma and alpha).  Values are rounded.
3. A greedy RDOQ lowers ``J = D + lambda R`` of each orientation's pyramid,
   ``lambda = WaveletConfig.rdoq * Delta^2``, with ``D`` the squared RGB error, the normalised 9/7
   taken as orthogonal (it is biorthogonal and close to orthogonal, so errors in different
   coefficients add nearly independently), and ``R`` the context model's bits: since 0.23
   (:func:`rdoq_exact`, the default) a value's own bits under its class and sign context plus what
   its move costs the children whose classes read it and, for an anchor, the four non-anchor
   neighbours whose class, prediction and sign context read it (the pyramid basis's pricing,
   :class:`codec.rdoq._ContextEffect` and :class:`codec.rdoq._NeighbourEffect`, with the wavelet's
   diagonal error); :func:`rdoq_group`, 0.22's, prices a value's own bits only.
4. The four groups are context-coded (:func:`code`) in one range-coder stream.

``benchmarks/wavelet_probe.py`` measured this on all 24 Kodak images before it was built (0.21.1):
rounding plus RDOQ at ``lambda = 0.3 Delta^2`` in the image's colour rotation needed 5.5 % less
rate than that release's `slow` preset (BD-rate on the mean curve), in about a second per image
instead of four minutes; the deadzone instead of RDOQ, plain YCbCr, or 5 levels each cost 1-8 %.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from . import bitstream, color, context, entropy, pyramid, quant, rdoq, wavelet
from .layout import header_for
from .specs import WaveletSpec

# RDOQ's lambda = RDOQ * Delta^2 (SSE in [0, 1] RGB units per bit).  Swept in the image's rotation on
# all 24 Kodak images (benchmarks/wavelet_probe.py, 0.21.1): m = 0.2 / 0.25 / 0.3 / 0.4 / 0.5 needed
# -4.83 / -5.33 / -5.48 / -4.87 / -3.51 % rate against 0.21.1's slow: a flat optimum at 0.3.
RDOQ = 0.3
# Sweeps of rdoq_exact (the default).  Against 0.22's rdoq_group (two sweeps, own bits only) on kodim01
# and kodim02 x q40-95: two sweeps -2.11 / -1.58 % BD-rate, three -2.53 / -2.18 %; three on kodim01-06
# -2.60 % on the mean curve (-1.80 to -2.96 % per image), at about 2.8 s per encode instead of 0.9 s.
SWEEPS = 3


@dataclass(frozen=True)
class WaveletConfig:
    """How the wavelet basis is quantized: RDOQ's multiplier (0: plain rounding), its sweeps and
    whether it prices the context effects (``exact``: :func:`rdoq_exact`; else :func:`rdoq_group`,
    0.22's), and the chroma factor (``None``: :func:`codec.pyramid.chroma_kappa` of the colour space)."""

    rdoq: float = RDOQ
    sweeps: int = SWEEPS
    kappa: float | None = None
    exact: bool = True


# A quality's luma step is DELTA_SCALE sqrt(lambda / RDOQ) (delta_for_lambda).  A codec's multiplier is
# not the slope of the curve it lands on: measured between neighbouring qualities on all 24 Kodak images
# (the median over images of -dD/dR over lambda), 0.22.0's first wavelet curve (scale 1) ran at 1.07-1.15
# times its lambda, 0.21.1's `slow` at 0.85-0.92 and 0.19.1's `medium` at 0.75-0.90: at one quality the
# wavelet file sat at a steeper point, about 1.3 times the pyramid's, and picking the lower D + lambda R
# of the two files per point made a curve 0.4 % worse (BD-rate) than the wavelet's alone.  A step 1/sqrt(1.3)
# as large puts the wavelet file at about the pyramid's slope, so the two files of a quality compare.
DELTA_SCALE = 0.88


def delta_for_lambda(lam: float, cfg: WaveletConfig = WaveletConfig()) -> float:
    """The luma step of a quality whose pyramid trade-off is ``lam`` (``RDOQ_LAMBDA Delta_0^2``)::

        Delta = DELTA_SCALE sqrt(lam / cfg.rdoq)

    so that the wavelet file lands at about the slope of the pyramid's file of that quality, and
    ``--basis auto`` can compare their ``D + lam R`` (:data:`DELTA_SCALE`)."""
    return DELTA_SCALE * math.sqrt(lam / (cfg.rdoq if cfg.rdoq > 0 else RDOQ))


class Analysis:
    """An image's wavelet coefficients in the coded colour space (float64), computed once per encode,
    and its spec and synthesis norms."""

    def __init__(self, image: np.ndarray, spec: WaveletSpec) -> None:
        import torch

        h, w, c = image.shape
        if (w, h, c) != (spec.width, spec.height, spec.channels):
            raise ValueError(f"a {w}x{h}x{c} image does not match {spec}")
        self.spec = spec
        t = color.rgb_to_ycbcr(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), spec.colour).numpy()
        self.coeffs = [wavelet.analyse(t[..., ch].astype(np.float64) - 0.5, spec.levels) for ch in range(c)]
        self.norms = wavelet.band_norms(h, w, spec.levels)
        self.weights = rdoq.colour_weights(c, spec.colour).double().numpy()  # (M^T M)_cc


def spec_for(image: np.ndarray, colour: int) -> WaveletSpec:
    """The wavelet spec of an ``(H, W, C)`` image coded in colour word ``colour``."""
    h, w, c = image.shape
    return WaveletSpec(wavelet.levels_for(w, h), c, w, h, colour)


def _round(r: np.ndarray) -> np.ndarray:
    """Values in steps rounded to integers within the format's code range (``|q| <= MAX_K``: only
    a step far finer than any quality asks for reaches it)."""
    return np.clip(np.rint(r), -entropy.MAX_K, entropy.MAX_K).astype(np.int32)


def quantize(an: Analysis, delta: float, cfg: WaveletConfig = WaveletConfig()) -> tuple[list, list]:
    """Step 2 and 3: the integer planes ``codes[group][level][channel]`` and their step indices
    ``idx[group][level][channel]`` at luma step ``delta`` (groups: LL, HL, LH, HH)."""
    spec = an.spec
    kappa = cfg.kappa if cfg.kappa is not None else pyramid.chroma_kappa(spec.colour)
    n_ll, n_b = an.norms
    groups = 1 + len(wavelet.ORIENTATIONS)
    codes = [[[None] * spec.channels for _ in range(1 if g == 0 else spec.levels)] for g in range(groups)]
    idx = [[[0] * spec.channels for _ in range(1 if g == 0 else spec.levels)] for g in range(groups)]
    ratios = [[[None] * spec.channels for _ in range(spec.levels)] for _ in wavelet.ORIENTATIONS]
    for ch, (ll, bands) in enumerate(an.coeffs):
        d = delta * (kappa if pyramid.is_chroma(spec.channels, ch) else 1.0)
        i = quant.index_for_step(d / n_ll)
        codes[0][0][ch] = _round(ll / quant.step_from_index(i))
        idx[0][0][ch] = i
        for lv, per_level in enumerate(bands):
            for o, band in enumerate(per_level):
                i = quant.index_for_step(d / n_b[lv][o])
                r = band / quant.step_from_index(i)
                codes[1 + o][lv][ch], idx[1 + o][lv][ch], ratios[o][lv][ch] = _round(r), i, r
    if cfg.rdoq > 0:
        lam = cfg.rdoq * delta * delta
        weights = [(delta * (kappa if pyramid.is_chroma(spec.channels, ch) else 1.0)) ** 2 * float(an.weights[ch])
                   for ch in range(spec.channels)]
        run = rdoq_exact if cfg.exact else rdoq_group
        for o in range(len(wavelet.ORIENTATIONS)):
            run(codes[1 + o], ratios[o], weights, lam, cfg.sweeps)
    return codes, idx


def _cost(v: np.ndarray, r: np.ndarray, pred: np.ndarray, first: np.ndarray, more: np.ndarray, w: float,
          lam: float) -> np.ndarray:
    """``w (r - v)^2 + lam R(v)``, ``R(v) = first + more (|v - pred| - 1)`` bits beyond a zero symbol."""
    a = np.abs(v - pred)
    return w * (r - v) ** 2 + lam * np.where(a > 0, first + more * (a - 1), 0.0)


def _turns(planes: list[list[np.ndarray]], sweeps: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """RDOQ's turns over one orientation's pyramid: ``sweeps`` times, coarse to fine and luma first,
    each plane with a non-zero value as ``(level, channel, values)`` (read when its turn comes)."""
    for _ in range(sweeps):
        for lv in reversed(range(len(planes))):
            for c in range(len(planes[lv])):
                if planes[lv][c].any():
                    yield lv, c, planes[lv][c]


def rdoq_group(planes: list[list[np.ndarray]], ratios: list[list[np.ndarray]], weights: list[float],
               lam: float, sweeps: int) -> None:
    """0.22's greedy RDOQ (``WaveletConfig(exact=False)``; :func:`rdoq_exact` is the default) of one
    orientation's pyramid ``planes[level][channel]`` in place (iterated conditional modes, coarse to
    fine, as :mod:`codec.rdoq` does for the pyramid basis)::

        J(v) = w_c (r - v)^2 + lam R(v),   v in {q, q - sign(q), 0, pred}

    ``r`` the unquantized value in steps (``ratios``), ``w_c`` the squared error one step of channel
    ``c`` adds (the subband steps make it the same for every subband of a channel), ``R`` the bits of
    :func:`codec.rdoq.plane_rate_terms` under the distributions fitted to the current values (what a
    move costs its neighbours' and children's classes is left out)."""
    for lv, c, q in _turns(planes, sweeps):
        first, more, _, sym = rdoq.plane_rate_terms(planes, lv, c)
        first, more = first.numpy().astype(np.float64), more.numpy().astype(np.float64)
        pred = q - sym
        r = ratios[lv][c]
        best, best_j = q, _cost(q, r, pred, first, more, weights[c], lam)
        for cand in (q - np.sign(q), np.zeros_like(q), pred):
            j = _cost(cand, r, pred, first, more, weights[c], lam)
            better = j < best_j
            best, best_j = np.where(better, cand, best), np.where(better, j, best_j)
        planes[lv][c] = best.astype(np.int32)


def rdoq_exact(planes: list[list[np.ndarray]], ratios: list[list[np.ndarray]], weights: list[float],
               lam: float, sweeps: int) -> None:
    """Greedy RDOQ of one orientation's pyramid ``planes[level][channel]`` in place, pricing what a
    move costs the context classes that read it (0.23).  Per sweep, coarse to fine, each plane's
    four parity phases in :func:`codec.rdoq.optimise`'s order (anchors ``(0, 0)``, non-anchors
    ``(0, 1)`` and ``(1, 0)``, anchors ``(1, 1)``); each value of a phase takes the lowest of::

        J(v) = w_c (r - v)^2 + lam (R_own(v) + R_children(v) + R_neighbours(v)),
        v in {q - 1, q + 1, 0, pred (non-anchors)}

    ``w_c``, ``r`` as in :func:`rdoq_group`; ``R_own`` the value's own bits under its class and sign
    context with the plane's distributions, sign probabilities and prediction weight as at the start
    of its turn (:func:`codec.rdoq.plane_rate_terms`; the non-anchors' classes and sign contexts
    refreshed once the anchors have moved); ``R_children`` the change of the bits of the finer
    plane's values whose activity reads it (:class:`codec.rdoq._ContextEffect`); ``R_neighbours``,
    for anchors, the change of the bits of the four non-anchors whose class, prediction and sign
    context read it (:class:`codec.rdoq._NeighbourEffect`).  Each is exact for one move at a time
    with everything else held; a phase's moves are applied together (their errors add: the values
    of the wavelet basis do not overlap as the pyramid's bumps do, so no joint check is needed).
    The same pricing moved the pyramid basis's ``fast`` by -1.46 % (children, 0.19) and -1.93 %
    (neighbours, 0.20) BD-rate; here it is :data:`SWEEPS`' measurement."""
    import functools

    import torch

    from . import rdoq as rd

    weights_at: dict[tuple[int, int], int] = {}  # each plane's prediction weight at its last turn
    for lv, c, q in _turns(planes, sweeps):
        model, first, more, signs, pos, neg, effect = rd.plane_turn(planes, lv, c, weights_at)
        weight = model.weight
        qt = torch.from_numpy(q.astype(np.float32))
        rt = torch.from_numpy(np.asarray(ratios[lv][c], dtype=np.float64))
        w = float(weights[c])
        pred_plane, nbr, anchors_moved = None, None, False
        for sub, anchor_phase in rd.PHASES:
            qs = qt[sub]
            if qs.numel() == 0:
                continue
            q_now = qt.to(torch.int64).numpy()  # the plane before this phase's moves
            if anchor_phase:
                pred = torch.zeros_like(qs)
            else:
                if pred_plane is None:
                    pred_plane = torch.from_numpy(context.predict(q_now, weight)).float()
                    if anchors_moved:  # the non-anchors' classes and sign contexts read the anchors
                        first, more, pos, neg = rd._current_terms(model, q_now, signs)
                pred = pred_plane[sub]
            own = functools.partial(rd._symbol_bits, pred=pred, first=first[sub], more=more[sub],
                                    pos=pos[sub], neg=neg[sub])
            rate = own
            if effect is not None:
                effect.start_phase(q_now)
                rate = functools.partial(rd._with_children, own=own, effect=effect, sub=sub)
            if anchor_phase:
                if nbr is None:
                    nbr = rd._NeighbourEffect(model, signs)
                if nbr.active:
                    nbr.start_phase(q_now, sub)
                    rate = functools.partial(rd._with_neighbours, rate=rate, effect=nbr)
            r0 = own(qs).double()
            rs = rt[sub]
            d0 = w * (rs - qs.double()) ** 2
            best_dj = torch.zeros_like(rs)
            best = qs.clone()
            for v in [qs - 1, qs + 1, torch.zeros_like(qs)] + ([] if anchor_phase else [pred]):
                v = v.clamp(-entropy.MAX_K, entropy.MAX_K)
                dj = w * (rs - v.double()) ** 2 - d0 + lam * (rate(v).double() - r0)
                better = dj < best_dj
                best_dj = torch.where(better, dj, best_dj)
                best = torch.where(better, v, best)
            if bool((best != qs).any()):
                qt[sub] = best
                if anchor_phase:
                    pred_plane, anchors_moved = None, True
        planes[lv][c] = qt.to(torch.int64).numpy().astype(np.int32)


def code(spec: WaveletSpec, codes: list, idx: list, post: bitstream.PostFilterRecord | None = None) -> bytes:
    """Step 4: the complete ``.inr`` file: the post-filter block (``post``, none by default), each
    group's side information (:func:`codec.bitstream.pack_context_side`), then one range-coder
    stream of all four groups (:func:`codec.context.encode_planes`)."""
    import constriction

    c = spec.channels
    enc = constriction.stream.queue.RangeEncoder()
    sides = []
    for group, steps in zip(codes, idx):
        records, _ = context.encode_planes(group, steps, enc)
        sides.append(context.pack_side(records, len(group), c))
    words = enc.get_compressed().astype("<u4").tobytes()
    head = bitstream.pack_post_filter(post if post is not None else bitstream.PostFilterRecord(), c)
    return bitstream.pack(header_for(spec, spec.width, spec.height), head + b"".join(sides) + words)


def encode(an: Analysis, delta: float, cfg: WaveletConfig = WaveletConfig()) -> bytes:
    """The file at luma step ``delta`` (steps 2-4)."""
    codes, idx = quantize(an, delta, cfg)
    return code(an.spec, codes, idx)
