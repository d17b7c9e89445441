"""The encoding pipeline: fit, choose quantization steps, entropy-code, pack, verify.

Rate control (``bpp=X``): the width is chosen so that the parameter count at ~6.5 bits per
parameter lands on ``X``; after fitting, the bit depth ``b`` (a real number: steps are
``max|w| / (2^(b-1) - 1)`` snapped to the step table) is bisected on the coded size, before the
quantization-aware phase, and searched again on the final weights if the written file is more
than 10 % off the target.  Every reported figure comes from the written bytes.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from . import (
    bitstream,
    color,
    context,
    coords,
    decoder,
    entropy,
    finefilter,
    l1fit,
    postfilter,
    pyramid,
    quant,
    rdoq,
    wavecode,
)
from .bitstream import TensorRecord
from .config import (
    BASES,
    DEFAULT_MODEL,
    DEFAULT_PRESET,
    DEFAULT_QUALITY,
    DEFAULT_STEPS,
    FAMILIES,
    HYBRID_PRESETS,
    RDOQ_LAMBDA,
    FitConfig,
    HybridPreset,
    base_budget,
    bits_for_quality,
    check_quality,
    params_per_pixel,
    spec_for_params,
)
from .errors import LimitError, OptionError
from .fit import fit, pick_device
from .layout import header_for
from .models import MODELS, CoordMLP, PyramidSpec, build
from .progress import TimeProgress
from .specs import WaveletSpec
from .synthesis import LatentRenderer

BITS_PER_PARAM_GUESS = 6.5
# A refit pass (L1 through the level filters at the preset's refit_iterations, then filters and RDOQ)
# took 0.45-0.95 times the first pass at medium and 0.46-0.87 at slow (0.9, four Kodak images x
# q40..95, one thread); until one has been timed the encoder assumes REFIT_COST times the first pass.
REFIT_COST = 0.8
# Further passes stop their L1 iterations and RDOQ sweeps TAIL_COST x the first pass before the
# deadline, for the work after them (without it, 10 of 120 medium encodes of the 0.8 Kodak run took
# 60.7-63.1 s at one thread against the 60 s cap).
TAIL_COST = 0.2
# The first pass, whose time is not known in advance, stops its L1 iterations FIRST_L1_SHARE and its
# RDOQ sweeps FIRST_RDOQ_SHARE of the way to the deadline, so that a budget too short for the preset
# (a small --seconds) still leaves time for RDOQ and the level filters instead of spending all of it
# on the L1 refit.  Under the presets' own caps neither binds on a Kodak image (medium's first pass
# takes 15-20 s of its 60 s).  Before 0.10.3, `medium --seconds 10` on kodim23 and kodim08 (q70) ran
# no RDOQ sweep and was 9-13 % worse in D + lambda R than with 60 s, and 7-8 % worse than `fast`
# (which took 9 s).
FIRST_L1_SHARE = 0.5
FIRST_RDOQ_SHARE = 0.85
# Under --bpp the first pass seldom lands on the target (below), so one secant correction must fit
# after it: its L1 iterations stop RATE_FIRST_L1_SHARE and its RDOQ sweeps RATE_FIRST_RDOQ_SHARE of
# the way to the end instead.  On a normal day they seldom bind under `fast`'s 20 s (a pass took
# 7-11 s at one thread in 0.17.0's quality-control run); on a day 2.3-2.9 times slower (speed probe
# 3.0-4.0 s against 1.35 s) 0.21.0's first pass took the whole budget, no correction ran, and 4 of
# 40 `fast` encodes of kodim01-08 missed the +-10 % band (max 30.6 %; 0.21.1: 40 of 40 within 5.7 %).
RATE_FIRST_L1_SHARE = 0.3
RATE_FIRST_RDOQ_SHARE = 0.5
# A pass's RDOQ sweeps also stop FILTER_TAIL times the pass's level-filter fit before the end of the
# search: what follows them (the coding, the final decode, and the filters refitted where that
# still fits: REFIT_TAIL) takes about that long, and on a large image under a short --seconds it is
# most of the budget (a 12 Mpixel image under `fast --seconds 60` in 0.14.1: a 21 s fit, then 12 s
# coding and a 10 s decode; under `fast --seconds 30` in 0.15.8: a 7.1 s fit, 5.5 s coding and a
# 5.9 s decode, 1.6 fits, and RDOQ overran its stop by up to a plane: 1.5 fits let the encode take
# 31 s).  On a Kodak image the fit takes well under a second, so the shares above bind first.
FILTER_TAIL = 2.0
# After RDOQ the filters are refitted on the final codes only if REFIT_TAIL fits (the refit, then
# the coding and the final decode, about 1.6 fits since 0.15.8) still end before the end of the search.
# RDOQ optimised the codes through the filters fitted before it, so a file without the refit is
# consistent, only a little less good.  On a 12 Mpixel image under `fast --seconds 60` a partial
# RDOQ sweep (+0.001 dB) otherwise cost a 15-20 s refit and the encode took 68-69 s (0.14.2 and the
# first 0.14.3); on a Kodak image a fit takes well under a second and the refit always runs.
REFIT_TAIL = 2.6
# The post filter's stage (step 7 of encode_hybrid) ends its fit and its RDOQ rounds, and is not
# started, WRITE_COST codings of the search's file before the deadline when that is longer than the
# search's tail: after them come the filter's file coded and decoded and, if the filter is dropped,
# the verifying decode of the search's file, each about as long as a coding (a 12 Mpixel image in
# 0.14.2: 12 s coding, 10 s decode).  Before 0.14.3 only the tail counted, and `medium --seconds 60` on a
# 4000x3000 image whose search ended just before that took 85 s.  On a Kodak image a coding takes
# a fraction of a second and the tail (a fifth of a first pass, 2-5 s) binds.
WRITE_COST = 3.0
# --bpp X: the written file lands within BPP_BAND of X (the promise), and the secant corrections stop
# within BPP_AIM of it.  A later candidate (a further shape, a refit pass, a later stage, the post
# filter) replaces the best file only if it is also within BPP_AIM of X, or no further from X than the
# best file already is.  Without that rule each refit kept inside the 10 % band lowered the rate a
# little more (0.11.1 medium, kodim02 at 1 bpp: 0.968 after the secant, then 0.962 and 0.931), and
# 16 of 20 rate-control encodes (kodim01-04) ended below their target, by up to 9.9 %; with it, max 3.8 %.
BPP_BAND = 0.10
BPP_AIM = 0.04
# --psnr X (hybrid): the same rules in decibels.  The written file's PSNR (8-bit output, every channel)
# lands within PSNR_BAND of X (the promise; `inrc encode` notes a file outside it), the corrections
# stop within PSNR_AIM of it, and a later candidate replaces the best file only if it is within
# PSNR_AIM of X or no further from it than the best file.  Each correction is a whole pass: `medium`
# has time for two or three and lands within PSNR_AIM (0.17.0, kodim01-08 at 30 and 37 dB: 15 of 16,
# max 0.39 dB); `fast` for one at most, and lands within 0.64 dB (at 28-40 dB: 17 of 32 within PSNR_AIM).
PSNR_BAND = 1.0
PSNR_AIM = 0.15
# PSNR is close to linear in log Delta_0: at high rates the error is uniform over each step, so
# PSNR = const - 20 log10 Delta_0, PSNR_PER_LOG dB per unit of ln Delta_0 (less at low rates).
PSNR_PER_LOG = 20.0 / math.log(10.0)
# The analytic fill is aimed PSNR_FILL_GAIN below the target: the L1 refit, the level filters and
# RDOQ raise the PSNR at the same Delta_0 (and lower the rate), by -0.1 to 1.8 dB on kodim01-16 at
# 26-40 dB under `fast` (docs/design.md), and _HybridSearch.psnr_corrections correct the rest.
PSNR_FILL_GAIN = 1.1
PSNR_TOLERANCE = 0.05  # the analytic search stops within this many dB of its aim
# The analytic search's first step, in PSNR_PER_LOG units per unit of ln Delta_0 (kodim01 at 28 and
# 36 dB under `fast` lost 6.2 dB per unit, 0.71 of the high-rate slope).
PSNR_SLOPE = -0.7
MIN_PSNR, MAX_PSNR = 10.0, 80.0
RD_SAMPLE = 1 << 15
MIN_BPP, MAX_BPP = 0.01, 64.0


@dataclass(frozen=True)
class EncodeOptions:
    model: str = DEFAULT_MODEL
    quality: int = DEFAULT_QUALITY
    preset: str = DEFAULT_PRESET
    basis: str | None = None  # hybrid: "auto", "wavelet" or "pyramid"; None: the preset's
    bpp: float | None = None
    psnr: float | None = None
    steps: int | None = None
    seconds: float | None = None
    device: str = "auto"
    seed: int = 0
    batch: int | None = None
    lr: float | None = None
    quiet: bool = True

    def validate(self) -> None:
        if self.model not in MODELS:
            raise OptionError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        check_quality(self.quality)
        if self.preset not in HYBRID_PRESETS:
            raise OptionError(f"unknown preset {self.preset!r}; choose from {', '.join(HYBRID_PRESETS)}")
        if self.basis is not None:
            if self.basis not in BASES:
                raise OptionError(f"unknown basis {self.basis!r}; choose from {', '.join(BASES)}")
            if self.model != "hybrid":
                raise OptionError(f"a basis applies to the hybrid model, not {self.model}")
        if self.bpp is not None and not (MIN_BPP <= self.bpp <= MAX_BPP):
            raise OptionError(f"bpp target must be in [{MIN_BPP}, {MAX_BPP}], got {self.bpp}")
        if self.psnr is not None:
            if self.bpp is not None:
                raise OptionError("give a bpp target or a PSNR target, not both")
            if self.model != "hybrid":
                raise OptionError(f"a PSNR target needs the hybrid model, not {self.model}")
            if not (MIN_PSNR <= self.psnr <= MAX_PSNR):
                raise OptionError(f"PSNR target must be in [{MIN_PSNR:g}, {MAX_PSNR:g}] dB, got {self.psnr:g}")
        if self.steps is not None and not (1 <= self.steps <= 10_000_000):
            raise OptionError(f"steps must be in 1..10000000, got {self.steps}")
        if self.seconds is not None and not (0 < self.seconds <= 86_400):
            raise OptionError(f"seconds must be in (0, 86400], got {self.seconds}")
        if self.batch is not None and not (1 <= self.batch <= 1 << 24):
            raise OptionError(f"batch must be in 1..16777216, got {self.batch}")
        if self.lr is not None and not (0 < self.lr < 1):
            raise OptionError(f"learning rate must be in (0, 1), got {self.lr}")
        if not 0 <= self.seed <= 0xFFFFFFFF:
            raise OptionError(f"seed must be in 0..4294967295, got {self.seed}")


@dataclass
class EncodeResult:
    data: bytes
    width: int
    height: int
    channels: int
    model: str
    device: str
    seconds: float
    steps: int
    psnr: float
    params: int
    stats: dict = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return len(self.data) * 8.0 / (self.width * self.height)

    def as_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "channels": self.channels,
                "model": self.model, "device": self.device, "seconds": round(self.seconds, 3),
                "steps": self.steps, "bytes": self.bytes, "bpp": round(self.bpp, 5),
                "psnr": round(self.psnr, 4), "params": self.params, **self.stats}


def steps_for_bits(model: CoordMLP, bits: float) -> list[int]:
    return [quant.step_index_for_bits(t, bits) for t in model.coded_tensors()]


def code_model(model: CoordMLP, step_idx: list[int], width: int, height: int) -> bytes:
    """Quantize, entropy-code and pack ``model``: the complete ``.inr`` file."""
    codes = [quant.quantize(t, quant.step_from_index(i)) for t, i in zip(model.coded_tensors(), step_idx)]
    params, words = entropy.encode(codes)
    records = [TensorRecord(i, th, k) for i, (th, k) in zip(step_idx, params)]
    payload = bitstream.pack_payload(records, words)
    return bitstream.pack(header_for(model.spec, width, height), payload)


def hybrid_delta0(quality: int) -> float:
    """Finest-level luma step of the hybrid model: ``0.6 * 2^(-(q - 45) / 15)``.

    q=75 gives 0.15, q=95 0.06, q=40 0.76 (kodim23: ~0.34, ~1.1, ~0.08 bpp)."""
    return 0.6 * 2.0 ** (-(quality - 45) / 15.0)


def first_pass_ratio(bpp: float) -> float:
    """Under ``--bpp X``, the expected ratio of the first pass's file to the analytic fill's coded
    size at the same ``Delta_0``: ``0.755 + 0.035 log2 X``, within [0.55, 0.85].  The L1 refit and
    RDOQ zero many of the fill's values, so the pass writes fewer bytes than the fill, relatively
    fewer at low rates.  Fitted on `fast` first passes (every RDOQ sweep run) of kodim09, 13, 18 and
    23 at 0.1-2 bpp (0.21.0): mean ratio 0.64 at 0.1 bpp, 0.67, 0.71, 0.76 and 0.80 at 2 bpp, per
    image 0.52-0.84; `medium`'s first passes on three of them at 0.1 and 1 bpp were within 0.04 of
    `fast`'s.  The analytic search aims at ``X / ratio``, so the first pass lands nearer ``X``
    and the secant corrections start closer (before 0.21.1 it aimed at ``X``, and the first
    pass fell 16-48 % short)."""
    return min(0.85, max(0.55, 0.755 + 0.035 * math.log2(bpp)))


DELTA0_RANGE = (1e-4, 8.0)  # the analytic search's bounds on Delta_0
DELTA0_TOLERANCE = 0.01  # the analytic search stops within 1 % of the target size
DELTA0_EVALUATIONS = 10  # ... or after this many analytic starts
DELTA0_BRACKET = 0.01  # ... or when the bracket is narrower than this in log Delta_0


def delta0_for_size(size_of: Callable[[float], float], target: float, start: float) -> float:
    """The ``Delta_0`` whose file ``size_of(Delta_0)`` (decreasing in ``Delta_0``) is closest to ``target``.

    ``log size`` is close to linear in ``log Delta_0`` (slope about -1.3), so :func:`delta0_for`
    searches ``f(x) = log(size_of(e^x) / target)`` from ``start``, its first step at slope -1.3, and
    stops within ``DELTA0_TOLERANCE`` of the target."""
    return delta0_for(lambda d0: math.log(max(size_of(d0), 1.0) / target), start,
                      math.log1p(DELTA0_TOLERANCE), -1.3)


def delta0_for(error_of: Callable[[float], float], start: float, tolerance: float, first_slope: float) -> float:
    """The ``Delta_0`` whose signed error ``error_of(Delta_0)`` (decreasing in ``Delta_0``, close to
    linear in ``log Delta_0``) is closest to 0.

    Secant steps on ``f(x) = error_of(e^x)`` from ``start``, where bisection over ``DELTA0_RANGE`` took
    14 evaluations: the first step takes slope ``first_slope``, later ones the secant's (clamped to
    [-4, -0.3]) until the target is bracketed, then each step is the Illinois variant of regula falsi
    (Dowell & Jarratt 1971), which stays in the bracket and shrinks it from both sides (the error is
    a step function of ``Delta_0``, the steps coming from a table, so plain secant steps could
    stall).  Stops within ``tolerance``, when the bracket is narrower than ``DELTA0_BRACKET`` (1 % of
    ``Delta_0``: a jump of the step function, as bisection also ends at), at a bound of
    ``DELTA0_RANGE`` whose error is still on the wrong side, or after ``DELTA0_EVALUATIONS``
    evaluations; returns the evaluated ``Delta_0`` closest to the target."""
    lo_x, hi_x = math.log(DELTA0_RANGE[0]), math.log(DELTA0_RANGE[1])
    tried: list[tuple[float, float]] = []  # (x, f) in evaluation order

    def f(x: float) -> float:
        v = error_of(math.exp(x))
        tried.append((x, v))
        return v

    x = min(hi_x, max(lo_x, math.log(start)))
    fx = f(x)
    big = small = None  # the bracket's ends: [x, f] with f > 0 (too big a file, too high a PSNR) and f < 0
    last = 0  # the end replaced last: +1 big, -1 small
    while abs(fx) > tolerance and len(tried) < DELTA0_EVALUATIONS:
        if (fx > 0 and x >= hi_x) or (fx < 0 and x <= lo_x):
            break  # the target is out of reach
        if fx > 0:
            big = [x, fx]
            if last == 1 and small is not None:
                small[1] /= 2  # Illinois: the other end stayed twice in a row
            last = 1
        else:
            small = [x, fx]
            if last == -1 and big is not None:
                big[1] /= 2
            last = -1
        if big is not None and small is not None:
            if abs(big[0] - small[0]) < DELTA0_BRACKET:
                break  # a jump of the step function: no Delta_0 in between lands nearer
            x = (small[0] * big[1] - big[0] * small[1]) / (big[1] - small[1])
        else:
            (x0, f0), (x1, f1) = tried[-2] if len(tried) > 1 else (x, fx), tried[-1]
            slope = first_slope if x1 == x0 else min(-0.3, max(-4.0, (f1 - f0) / (x1 - x0)))
            x = min(hi_x, max(lo_x, x - fx / slope))
        fx = f(x)
    return math.exp(min(tried, key=lambda t: abs(t[1]))[0])


def code_hybrid(spec: PyramidSpec, codes: list[list[np.ndarray]], step_idx: list[int],
                filters: list[list[bitstream.FilterRecord]] | None = None,
                post: bitstream.PostFilterRecord | None = None) -> bytes:
    """Context-code the latent planes and pack the complete ``.inr`` file (``filters[l][c]``: the
    level filter of level ``l`` and channel ``c`` for the :func:`codec.bitstream.filter_levels` finest
    levels; none by default; ``post``: the post filter, :mod:`codec.postfilter`; none by default)."""
    c = spec.channels
    records, words = context.encode_planes(codes, [step_idx[lv * c : (lv + 1) * c] for lv in range(spec.levels)])
    n_levels = bitstream.filter_levels(bitstream.VERSION, spec.levels)
    filters = filters if filters is not None else []
    if len(filters) > n_levels or any(len(f) != c for f in filters):
        raise ValueError(f"expected filters for at most {n_levels} levels of {c} channels")
    flat = [f for lv in range(n_levels) for f in (filters[lv] if lv < len(filters) else [bitstream.FilterRecord()] * c)]
    side = context.pack_side(records, spec.levels, c, flat)
    head = bitstream.pack_post_filter(post if post is not None else bitstream.PostFilterRecord(), c)
    return bitstream.pack(header_for(spec, spec.width, spec.height), head + side + words)


def _hybrid_v7(data: bytes) -> decoder.Parsed:
    """``data`` parsed (:func:`codec.decoder.parse`), refused unless a hybrid file of version 7."""
    p = decoder.parse(data)
    if p.spec.name != "hybrid" or p.header.version < 7:
        raise OptionError("a post filter needs a hybrid file of format version 7 or later")
    return p


def _recode(p: decoder.Parsed, record: bitstream.PostFilterRecord) -> bytes:
    """The parsed hybrid file ``p`` (either basis) coded again with the post filter ``record``."""
    if isinstance(p.spec, WaveletSpec):
        codes, spec = decoder.wavelet_codes(p), p.spec
        idx = [[[p.records[spec.record_index(g, lv, ch)].step_index for ch in range(spec.channels)]
                for lv in range(len(group))] for g, group in enumerate(codes)]
        return wavecode.code(spec, codes, idx, record)
    return code_hybrid(p.spec, decoder.hybrid_codes(p), [r.step_index for r in p.records], p.filters, record)


def with_post_filter(data: bytes, record: bitstream.PostFilterRecord) -> bytes:
    """A version-7 hybrid file ``data`` re-coded with the post filter ``record`` (an empty record:
    none) and the same latents and level filters."""
    return _recode(_hybrid_v7(data), record)


def add_post_filter(data: bytes, image: np.ndarray, hidden: int, steps: int, seed: int = 0) -> bytes:
    """A hybrid file ``data`` re-coded with a post filter (:mod:`codec.postfilter`) of ``hidden``
    channels fitted in ``steps`` Adam steps to ``image`` (float32 ``(H, W, C)`` in [0, 1]) on its
    decoded latents without one: the same latents and level filters, whether or not the filter pays."""
    p = _hybrid_v7(data)
    spec, c = p.spec, p.spec.channels
    h, w = spec.height, spec.width
    plain = decoder.latent_planes(replace(p, post=bitstream.PostFilterRecord()))
    y = torch.from_numpy(LatentRenderer(plain, spec.kernel).ycc_rows(0, h, w, h))
    target = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    tensors = postfilter.fit(y, target, rdoq.colour_matrix(c, None, spec.colour), rdoq.colour_centre(c, None, spec.colour),
                             hidden, steps, seed=seed)
    return _recode(p, postfilter.quantize(tensors))


def fit_filters(target_ycc: torch.Tensor, codes: list[list[np.ndarray]], steps: list[float],
                samplers: list[rdoq.LevelSampler], lam: float, colour: int = 0) -> list[list[bitstream.FilterRecord]]:
    """The level filters (:mod:`codec.finefilter`) of the :func:`codec.bitstream.filter_levels` finest
    levels for fixed ``codes``: level by level, finest first, each channel's least-squares filter on
    what the other levels (with the filters chosen so far) leave, through the level's sampling
    (:func:`codec.finefilter.fit_all`), at the radius 0..3 with the lowest ``w_c dSSE + lam * bits``;
    ``w_c`` is the channel's weight in the RGB error (the diagonal of ``M^T M``, as in :mod:`codec.rdoq`;
    ``M`` that of the colour word ``colour``)."""
    c, h, w = target_ycc.shape
    dev = samplers[0].device  # the renderings run there, the least-squares solves on the CPU
    y = rdoq.reconstruct(codes, steps, samplers, (c, h, w))
    weight = rdoq.colour_weights(c, colour)
    out = []
    for lv in range(bitstream.filter_levels(bitstream.VERSION, len(samplers))):
        smp = samplers[lv]

        def up(g: np.ndarray, smp: rdoq.LevelSampler = smp) -> torch.Tensor:
            return smp.up(torch.from_numpy(np.ascontiguousarray(g, dtype=np.float32)).to(dev))

        def gram(g: np.ndarray, smp: rdoq.LevelSampler = smp) -> np.ndarray:
            return smp.gram(torch.from_numpy(g).to(dev)).cpu().numpy()

        level = []
        for ch in range(c):
            g = (codes[lv][ch] * steps[lv * c + ch]).astype(np.float32)
            best, best_cost = bitstream.FilterRecord(), lam * bitstream.FILTER_RADIUS_BITS
            if g.any():
                plain = up(g)
                resid = target_ycc[ch] - y[ch] + plain
                rhs = smp.adjoint(resid)
                fits = finefilter.fit_all(g, rhs.cpu().numpy(), finefilter.MAX_RADIUS, None if smp.native else gram,
                                          lambda smp=smp: smp.axis_grams, lam / float(weight[ch]))
                for radius, (taps, dsse) in enumerate(fits, start=1):
                    rec = bitstream.FilterRecord(radius, tuple(taps))
                    cost = float(weight[ch]) * dsse + lam * finefilter.record_bits(rec)
                    if cost < best_cost:
                        best, best_cost = rec, cost
                if best.radius:
                    y[ch] += up(finefilter.apply(g, finefilter.kernel(best.radius, best.taps))) - plain
            level.append(best)
        out.append(level)
    return out


def post_rdoq_target(image: np.ndarray, codes: list[list[np.ndarray]], idx: list[int], samplers: list,
                     record: bitstream.PostFilterRecord, colour: int = 0) -> np.ndarray:
    """What RDOQ aims the latents at once the post filter ``record`` is fixed: the RGB image minus
    the filter's correction of the latents ``codes`` (step indices ``idx``, rendered through the
    level-filtered ``samplers``), float32 ``(H, W, C)``::

        x' = x - M P(y)        (y: the native YCbCr rendering of ``codes``; M: YCbCr -> RGB, or the
                            colour word ``colour``'s matrix)

    The decoder's output is ``M (y + P(y) - centre)``, so with ``P(y)`` held fixed the squared
    error is RDOQ's exact quadratic in the latents against ``x'``.  ``P`` does change with the
    latents, so each round's file is decoded and kept only if its real cost drops; in practice
    RDOQ's moves are small and the correction nearly fixed (one round lowered ``D + lambda R`` by
    0.63-0.77 % on three Kodak files that kept the filter, docs/design.md)."""
    h, w, c = image.shape
    y = rdoq.reconstruct(codes, [quant.step_from_index(i) for i in idx], samplers, (c, h, w)).cpu().numpy()
    corr = postfilter.correction(lambda r0, r1: y[:, r0:r1], h, w, record, c)
    rgb = np.einsum("ij,jhw->hwi", rdoq.colour_matrix(c, None, colour).numpy(), corr)
    return np.ascontiguousarray(image - rgb, dtype=np.float32)


def filter_kernels(filters: list[list[bitstream.FilterRecord]]) -> list[list[np.ndarray | None]]:
    """Per level, each channel's float32 kernel (``None``: no filter), for :func:`codec.rdoq.with_filters`."""
    return [finefilter.kernels(f) for f in filters]


def keeps_rate(size: int, target_bytes: float, best_size: int | None = None) -> bool:
    """Under ``--bpp``, whether a file of ``size`` bytes may be kept: its error
    ``e(n) = |n / target - 1|`` is at most ``BPP_BAND`` and, against the best file so far, at most
    ``max(BPP_AIM, e(best_size))`` (close to the target, or no further from it than the best file)."""
    off = abs(size / target_bytes - 1)
    return off <= BPP_BAND and (best_size is None or off <= max(BPP_AIM, abs(best_size / target_bytes - 1)))


def keeps_psnr(psnr: float, target: float, best_psnr: float | None = None) -> bool:
    """Under ``--psnr``, whether a file of PSNR ``psnr`` may be kept: its error ``|psnr - target|``
    is at most ``PSNR_BAND`` and, against the best file so far, at most ``max(PSNR_AIM, its error)``
    (:func:`keeps_rate` in decibels)."""
    off = abs(psnr - target)
    return off <= PSNR_BAND and (best_psnr is None or off <= max(PSNR_AIM, abs(best_psnr - target)))


def psnr_of(sse: float, values: int) -> float:
    """PSNR in dB of a squared error ``sse`` over ``values`` 8-bit values scaled to [0, 1]:
    ``10 log10(values / sse)`` (finite: ``sse`` is taken as at least 1e-12)."""
    return 10.0 * math.log10(values / max(sse, 1e-12))


def file_cost(data: bytes, image: np.ndarray, lam: float) -> tuple[float, float]:
    """``(D + lambda R, PSNR)`` of written bytes against ``image`` (``(H, W, C)`` in [0, 1]): ``D`` the
    squared error of the decoded 8-bit RGB in [0, 1] units (summed in float64), ``R`` the file's bits;
    the quantity the hybrid encoder minimises, for the probes and benchmarks that measure files."""
    from .decoder import decode_to_array

    out = decode_to_array(data).astype(np.float64) / 255.0
    sse = float(((out - image) ** 2).sum())
    return sse + lam * 8 * len(data), psnr_of(sse, image.size)


@dataclass
class _Candidate:
    """A written file of the search and what a further pass needs of it.  ``sse``, its squared
    8-bit RGB error, is either given or computed from ``render`` when first asked for: a file that
    is never compared with another (`fast`'s only pass, with no progress bar to show it) is never
    rendered for it (4.4 s of a 12 Mpixel `fast --seconds 30` encode; the final decode measures the
    written file anyway)."""
    data: bytes
    _sse: float | None
    shape: tuple[float, float, float]
    delta0: float
    sweeps: int
    # what a refit pass starts from: the final codes, their step indices, the filtered samplers
    codes: list[list[np.ndarray]] = field(default_factory=list, repr=False)
    idx: list[int] = field(default_factory=list, repr=False)
    filtered: list = field(default_factory=list, repr=False)
    filters: list = field(default_factory=list, repr=False)  # the level filters' records
    cut_short: bool = False  # a deadline ended its L1 refit or its RDOQ sweeps
    render: Callable[[], float] | None = field(default=None, repr=False)

    @property
    def sse(self) -> float:
        if self._sse is None:
            if self.render is None:
                raise ValueError("a candidate needs its error or a way to render it")
            self._sse, self.render = self.render(), None
        return self._sse


def encode_hybrid(image: np.ndarray, opts: EncodeOptions, t_start: float) -> EncodeResult:
    """The hybrid model's encoder: analytic fill, then rate-distortion optimisation of the latents.

    The basis (``opts.basis``, else the preset's): ``wavelet`` codes the image's CDF 9/7 subbands
    alone (:func:`wavelet_file`, :func:`_encode_wavelet`); ``pyramid`` runs steps 1-7 below; ``auto``
    codes the wavelet file first (:meth:`_HybridSearch.wavelet_candidate`; in a preset with a post
    filter, with :func:`wavelet_post`'s filter where it pays), runs steps 1-7 with the time left, and writes the wavelet file instead if it costs less (:meth:`_HybridSearch.better`:
    ``D + lambda R`` at the search's ``lambda``, within the ``--bpp``/``--psnr`` rules).

    1. Fill the latent pyramid closed-loop from the image (:func:`codec.pyramid.fill`) with steps
       ``Delta_{l,c} = Delta_0 2^(-gamma l) (kappa if chroma)``, ``kappa`` the shape's factor on the
       colour space's own (:func:`codec.pyramid.chroma_kappa`).
    2. Refit them by L1-regularised least squares (:mod:`codec.l1fit`).
    3. Fit each channel's filters on the three finest levels (:func:`fit_filters`,
       :mod:`codec.finefilter`), run RDOQ sweeps (:mod:`codec.rdoq`) through them with ``lambda = preset.rdoq_lambda * Delta_0^2``, and refit
       the filter on the final latents.
    4. For every step shape of the preset, keep the file with the lowest ``SSE + lambda * bits``
       (bits of the written file).
    5. ``preset.refits`` times: refit the best candidate's latents by L1 through its level filters
       (warm-started from its codes) and repeat step 3; keep the result only if it lowers the cost.
    ``--bpp``: ``Delta_0`` is found on the analytic fill's coded size (:func:`delta0_for_size`, aimed
    at the target over :func:`first_pass_ratio`), then
    corrected by secant steps on the real size after optimisation until it is within ``BPP_AIM``
    of the target; a later candidate (steps 4-7) is kept only if it is within ``BPP_BAND`` of the
    target and within ``BPP_AIM`` or no further off than the best file so far.  ``--psnr``: the
    same in decibels (``PSNR_BAND``, ``PSNR_AIM``, :func:`keeps_psnr`), ``Delta_0`` found on the
    analytic fill's PSNR and corrected by :meth:`_HybridSearch.psnr_corrections`.  ``--seconds`` (or
    the preset's cap, :meth:`codec.config.HybridPreset.cap`, which grows with the pixel count)
    bounds the whole run:
    the first pass's L1 iterations stop ``FIRST_L1_SHARE`` and its RDOQ sweeps ``FIRST_RDOQ_SHARE``
    of the way to the end (under ``--bpp`` ``RATE_FIRST_L1_SHARE`` and ``RATE_FIRST_RDOQ_SHARE``, so
    that a correction fits), later passes' ``TAIL_COST`` first passes before it (leaving time for the
    work that follows them), and a further shape or refit pass (steps 4 and 5) starts only if its
    expected time still fits.
    6. A preset with a ``base`` (``slow``: ``medium``) first runs the base's steps 2-5 in the base's
       share of the time (:func:`codec.config.base_budget`: the base's own cap by default, all of a
       budget shorter than that), then its own with the time left (if its first pass is expected to
       fit), and keeps the file with the lower cost: per image and quality it is never worse than its base.
    7. A preset with a post filter (:mod:`codec.postfilter`) keeps ``post_share`` of the time back
       from its last stage's search, fits the filter on the best latents and keeps it only if the
       cost drops.  Before that decision, up to ``post_rounds`` rounds of RDOQ aim the latents at the
       image minus the filter's correction (:func:`post_rdoq_target`), each kept only if it lowers
       the cost.  Then, up to ``post_cycles`` times (``slow``), the filter is refitted warm (Adam from
       its weights, ``post_cycle_steps`` steps) on the latents the rounds moved, kept if the cost
       drops, and the rounds run again; the cycles stop when one keeps nothing.  When the encode's
       first pass writes fewer than ``post_min_bytes`` bytes the filter is not fitted at all and the
       search runs to the deadline.
    """
    progress = TimeProgress(t_start, opts.quiet)
    try:
        device = hybrid_device(opts.device)  # refuses an unavailable device for either basis
        if (opts.basis or HYBRID_PRESETS[opts.preset].basis) == "wavelet":
            return _encode_wavelet(image, opts, t_start, progress, device)
        with exact_cuda(device):
            return _encode_hybrid(image, opts, t_start, progress, device)
    finally:
        progress.close()


# --bpp and --psnr in the wavelet basis: the step is first searched with 0.22's own-bits RDOQ (two
# sweeps, about a third of the exact RDOQ's time), then with the file's own RDOQ from there
WAVELET_SEARCH_CFG = wavecode.WaveletConfig(exact=False, sweeps=2)
# --psnr in the wavelet basis: the search's first step, in PSNR_PER_LOG units per unit of ln Delta
# (the high-rate slope is -1; kodim23 lost 0.84 of it between Delta 0.1 and 0.035)
WAVELET_PSNR_SLOPE = -0.85


@dataclass
class WaveletFile:
    """The wavelet basis's file of an image (:func:`wavelet_file`): its bytes, the squared 8-bit RGB
    error of its decoded image (in [0, 1] units), the decoded image, its step and figures."""
    data: bytes
    sse: float
    decoded: np.ndarray
    delta: float
    lam: float  # the trade-off RDOQ used: the given lambda, or RDOQ * Delta^2 under a target
    spec: WaveletSpec
    seconds: float
    encodes: int

    def cost(self, lam: float) -> float:
        """``D + lambda R``: the squared error plus ``lam`` times the file's bits."""
        return self.sse + lam * 8 * len(self.data)


def wavelet_sweeps(opts: EncodeOptions) -> int:
    """The wavelet file's RDOQ sweeps: ``--steps``, else the preset's ``wavelet_sweeps``."""
    return opts.steps if opts.steps is not None else HYBRID_PRESETS[opts.preset].wavelet_sweeps


def wavelet_file(image: np.ndarray, colour: int, opts: EncodeOptions, lam: float,
                 progress: TimeProgress | None = None) -> WaveletFile:
    """The image coded in the wavelet basis (:mod:`codec.wavecode`) in colour word ``colour``: at
    the luma step of :func:`codec.wavecode.delta_for_lambda` for ``lam``, the trade-off of a pyramid
    search at the same quality, or under ``--bpp`` the ``Delta`` whose written
    file is nearest the target (:func:`delta0_for_size`, within ``DELTA0_TOLERANCE``), under
    ``--psnr`` the one whose decoded PSNR is (:func:`delta0_for`, within ``PSNR_TOLERANCE``): first
    under :data:`WAVELET_SEARCH_CFG`'s cheaper RDOQ, then from its result under the file's own.  Every
    size and PSNR is that of written and decoded bytes (1-3 s per encode of a Kodak image)."""
    from .decoder import MAX_LATENTS, decode_to_array

    t0 = time.perf_counter()
    spec = wavecode.spec_for(image, colour)
    h, w = image.shape[:2]
    if spec.num_params() > MAX_LATENTS:
        raise LimitError(f"image of {w}x{h} pixels is too large for the hybrid model "
                         f"({spec.num_params()} coefficients, limit {MAX_LATENTS}); use an MLP model")
    cfg = wavecode.WaveletConfig(sweeps=wavelet_sweeps(opts))
    an = wavecode.Analysis(image, spec)
    files: dict[tuple[float, wavecode.WaveletConfig], tuple[bytes, float, np.ndarray]] = {}

    def file_at(delta: float, c: wavecode.WaveletConfig = cfg) -> tuple[bytes, float, np.ndarray]:
        if (delta, c) not in files:
            if progress is not None:
                progress.tick("wavelet")
            data = wavecode.encode(an, delta, c)
            out = decode_to_array(data)
            files[(delta, c)] = data, float(((out.astype(np.float64) / 255.0 - image) ** 2).sum()), out
        return files[(delta, c)]

    def search(c: wavecode.WaveletConfig, start: float) -> float:
        if opts.bpp is not None:
            return delta0_for_size(lambda d: len(file_at(d, c)[0]), opts.bpp * w * h / 8.0, start)
        return delta0_for(lambda d: (psnr_of(file_at(d, c)[1], image.size) - opts.psnr) / PSNR_PER_LOG, start,
                          PSNR_TOLERANCE / PSNR_PER_LOG, WAVELET_PSNR_SLOPE)

    if opts.bpp is not None or opts.psnr is not None:
        start = wavecode.delta_for_lambda(RDOQ_LAMBDA * hybrid_delta0(DEFAULT_QUALITY) ** 2, cfg)
        if cfg.exact and cfg.rdoq > 0:
            # the own-bits RDOQ (a third of the time) finds the neighbourhood; the exact one's file
            # there is within a few per cent of it, so its own search then takes one or two encodes
            start = search(WAVELET_SEARCH_CFG, start)
        delta = search(cfg, start)
    else:
        delta = wavecode.delta_for_lambda(lam, cfg)
    data, sse, out = file_at(delta)
    if opts.bpp is not None or opts.psnr is not None:
        lam = cfg.rdoq * delta * delta
    return WaveletFile(data, sse, out, delta, lam, spec, time.perf_counter() - t0, len(files))


# The wavelet file's post filter (0.24; presets with a post filter: `medium`, `slow`) and the rest of
# its stage end by this share of the encode's budget; `auto`'s pyramid search gets the rest.  On a
# Kodak image at one thread the fit's 1,000 steps take about 11 s and a round an encode's time (5-9 s).
WAVELET_POST_SHARE = 0.5
# RDOQ rounds against the image minus the filter's correction after each fit (:func:`wavelet_post`).
# On kodim05 q55 and q70 (`medium`) the first lowered D + lambda R by a further 0.39-0.76 % after the
# filter's own 0.52-0.54 %, a second by nothing (-0.00 / +0.01 %).
WAVELET_POST_ROUNDS = 1


def meets_target(opts: EncodeOptions, pixels: int, size: int, psnr: float,
                 best: tuple[int, float] | None = None) -> bool:
    """Under ``--bpp`` or ``--psnr``, whether a file of ``size`` bytes and PSNR ``psnr`` of an image
    of ``pixels`` pixels may be kept against the best file so far, ``best`` = ``(size, psnr)``
    (:func:`keeps_rate`, :func:`keeps_psnr`); without a target, always."""
    if opts.bpp is not None:
        return keeps_rate(size, opts.bpp * pixels / 8.0, None if best is None else best[0])
    if opts.psnr is not None:
        return keeps_psnr(psnr, opts.psnr, None if best is None else best[1])
    return True


def wavelet_post(f: WaveletFile, image: np.ndarray, opts: EncodeOptions, stop: float,
                 progress: TimeProgress | None = None, device: torch.device | None = None) -> tuple[WaveletFile, dict]:
    """The preset's post filter (:mod:`codec.postfilter`) on the wavelet file ``f``, as on the
    pyramid (:func:`encode_hybrid`'s step 7), everything ending by ``stop`` (``time.perf_counter()``):

    1. ``P`` is fitted (``preset.post_steps`` Adam steps) to the native rendering ``y`` of ``f``'s
       coefficients; the file with it is coded and decoded.
    2. :data:`WAVELET_POST_ROUNDS` rounds of the wavelet quantization (step 2 and 3 of
       :mod:`codec.wavecode`, at ``f``'s step) aimed at ``x - M P(y)``
       (:func:`post_rdoq_target`'s target: with ``P(y)`` held fixed the squared error is again the
       RDOQ's quadratic), each kept only if the decoded file's ``D + lambda R`` drops.
    3. ``preset.post_cycles`` times (``slow``): ``P`` refitted warm (``preset.post_cycle_steps``
       steps) on the coefficients the rounds moved, kept if the cost drops, then the rounds again;
       they stop at the first cycle that keeps nothing.

    The filtered file replaces ``f`` only if its ``D + lambda R`` (at ``f.lam``) is lower and it
    meets ``--bpp``/``--psnr`` (:func:`meets_target`).  No filter is fitted under
    ``preset.post_min_bytes`` (its 150-450 bytes cannot pay there) or without a post filter in the
    preset.  The filter is fitted on ``device`` (the CPU by default); the rest runs in numpy.
    Returns the file kept and the stage's figures."""
    from .decoder import decode_to_array

    preset = HYBRID_PRESETS[opts.preset]
    h, w, c = image.shape
    stats: dict = {"wavelet_post_filter": 0}
    if not preset.post_steps or len(f.data) < preset.post_min_bytes or time.perf_counter() >= stop:
        return f, stats
    t0 = time.perf_counter()
    lam, cfg = f.lam, wavecode.WaveletConfig(sweeps=wavelet_sweeps(opts))
    device = device if device is not None else torch.device("cpu")
    matrix = rdoq.colour_matrix(c, None, f.spec.colour)
    centre = rdoq.colour_centre(c, device, f.spec.colour)
    target = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().to(device)
    encode_seconds = f.seconds / max(1, f.encodes)  # one quantization, coding and decode

    def tick(detail: str) -> None:
        if progress is not None:
            progress.tick(detail)

    def written(data: bytes) -> WaveletFile:
        """``f`` with the bytes ``data``, decoded and measured."""
        tick("coding")
        out = decode_to_array(data)
        sse = float(((out.astype(np.float64) / 255.0 - image) ** 2).sum())
        return replace(f, data=data, sse=sse, decoded=out)

    def plain(g: WaveletFile) -> np.ndarray:
        """``g``'s native rendering without the post filter, ``(C, H, W)``: what ``P`` reads."""
        return decoder.wavelet_native(replace(decoder.parse(g.data), post=bitstream.PostFilterRecord()))

    def fit(y: np.ndarray, steps: int, init: bitstream.PostFilterRecord | None) -> bitstream.PostFilterRecord:
        def counted(detail: str) -> None:
            stats["wavelet_post_steps"] += 1
            tick(detail)

        return postfilter.quantize(postfilter.fit(
            torch.from_numpy(y).to(device), target, matrix.to(device), centre, preset.post_hidden, steps,
            deadline=stop, tick=counted,
            init=None if init is None else postfilter.weights(init, c),
            lr=postfilter.LEARNING_RATE if init is None else postfilter.WARM_LEARNING_RATE))

    def rounds(cur: WaveletFile, y: np.ndarray,
               record: bitstream.PostFilterRecord) -> tuple[WaveletFile, np.ndarray, int]:
        """Step 2 from ``cur`` (``y``: its rendering without the filter): the file, its rendering
        and the number of rounds kept."""
        kept = 0
        for _ in range(WAVELET_POST_ROUNDS):
            if time.perf_counter() + encode_seconds > stop:
                break
            tick("post filter RDOQ")
            corr = postfilter.correction(lambda r0, r1, y=y: y[:, r0:r1], h, w, record, c)
            aim = image - np.einsum("ij,jhw->hwi", matrix.numpy(), corr)
            codes, idx = wavecode.quantize(wavecode.Analysis(np.ascontiguousarray(aim, dtype=np.float32), f.spec),
                                           f.delta, cfg)
            nxt = written(wavecode.code(f.spec, codes, idx, record))
            if nxt.cost(lam) >= cur.cost(lam):
                break
            cur, y, kept = nxt, plain(nxt), kept + 1
        return cur, y, kept

    if progress is not None:
        progress.stage("post filter")
    stats["wavelet_post_steps"] = 0
    y = plain(f)
    record = fit(y, preset.post_steps, None)
    if record.is_identity:  # P = 0 (or no step ran before the deadline): a file with it only adds bytes
        return f, stats
    cur = written(_recode(decoder.parse(f.data), record))
    cur, y, n_rounds = rounds(cur, y, record)
    n_cycles = refits = 0
    for _ in range(preset.post_cycles):
        if time.perf_counter() + encode_seconds * (1 + WAVELET_POST_ROUNDS) > stop:
            break
        n_cycles += 1
        refit = fit(y, preset.post_cycle_steps, record)  # a refit changes the filter, not the coefficients
        nxt = written(_recode(decoder.parse(cur.data), refit))
        if nxt.cost(lam) < cur.cost(lam):
            cur, record, refits = nxt, refit, refits + 1
        cur, y, moved = rounds(cur, y, record)
        n_rounds += moved
        if not moved and record is not refit:
            break
    stats.update({"wavelet_post_rounds": n_rounds, "wavelet_post_cycles": n_cycles, "wavelet_post_refits": refits,
                  "wavelet_post_seconds": round(time.perf_counter() - t0, 3)})
    if cur.cost(lam) < f.cost(lam) and meets_target(opts, h * w, len(cur.data), psnr_of(cur.sse, image.size),
                                            (len(f.data), psnr_of(f.sse, image.size))):
        stats["wavelet_post_filter"] = preset.post_hidden
        return cur, stats
    return f, stats


def wavelet_stage(image: np.ndarray, colour: int, opts: EncodeOptions, t_start: float, budget: float, share: float,
                  progress: TimeProgress | None = None,
                  device: torch.device | None = None) -> tuple[WaveletFile, dict, EncodeOptions]:
    """The preset's wavelet file (:func:`wavelet_file`) with its post filter (:func:`wavelet_post`),
    the filter's work ending by ``t_start + share * budget``.

    A preset with a ``base`` (``slow``: ``medium``) first codes the base's file as the base alone
    would (its sweeps, filter and rounds, ending by ``share`` of :func:`codec.config.base_budget`,
    the base's own cap), then its own, and keeps the one with the lower ``D + lambda R`` (at its own
    file's ``lambda``) among those that :func:`meets_target`: so ``slow``'s wavelet file is never
    worse than ``medium``'s, up to where a deadline falls at another point of the filter's stage
    than in ``medium``'s own run (kodim14 q85: +0.004 %).  Without it, on Kodak (0.24.0) ``slow``'s
    8 sweeps and longer filter fit gave a higher ``D + lambda R`` than ``medium``'s file at 17 of
    120 points (at most +0.24 %).
    Returns the file, its stage's figures (``wavelet_stage``: the preset that coded it) and the
    options it was coded with."""
    preset = HYBRID_PRESETS[opts.preset]
    h, w = image.shape[:2]
    best = None
    for o in ([replace(opts, preset=preset.base)] if preset.base else []) + [opts]:
        p = HYBRID_PRESETS[o.preset]
        b = budget if o is opts else min(budget, base_budget(budget, p, preset, w, h))
        f = wavelet_file(image, colour, o, p.rdoq_lambda * hybrid_delta0(o.quality) ** 2, progress)
        f, stats = wavelet_post(f, image, o, t_start + share * b, progress, device)
        if best is None or (f.cost(f.lam) < best[0].cost(f.lam) and meets_target(
                opts, h * w, len(f.data), psnr_of(f.sse, image.size), (len(best[0].data), psnr_of(best[0].sse, image.size)))):
            best = f, {**stats, "wavelet_stage": o.preset}, o
    return best


def _wavelet_result(f: WaveletFile, image: np.ndarray, opts: EncodeOptions, coded: EncodeOptions, t_start: float,
                    device: str, **stats) -> EncodeResult:
    """The :class:`EncodeResult` of a wavelet file (written alone, or kept by ``auto``), coded under
    ``coded`` (``opts``, or its base preset's: :func:`wavelet_stage`), with ``stats`` added to the
    basis's own."""
    h, w, c = image.shape
    return EncodeResult(data=f.data, width=w, height=h, channels=c, model="hybrid", device=device,
                        seconds=time.perf_counter() - t_start, steps=wavelet_sweeps(coded),
                        psnr=_psnr_vs_source(f.decoded, image), params=f.spec.num_params(),
                        stats={"basis": "wavelet", "levels": f.spec.levels, "delta": round(f.delta, 6),
                               "wavelet_encodes": f.encodes, "wavelet_seconds": round(f.seconds, 3),
                               "preset": opts.preset, **stats})


def _encode_wavelet(image: np.ndarray, opts: EncodeOptions, t_start: float, progress: TimeProgress,
                    device: torch.device) -> EncodeResult:
    """:func:`encode_hybrid` in the wavelet basis alone (``fast``, or ``--basis wavelet``):
    :func:`wavelet_stage` at the preset's colour choice and the quality's trade-off, the preset's
    post filter (:func:`wavelet_post`, none in ``fast``) with the rest of the budget."""
    preset = HYBRID_PRESETS[opts.preset]
    colour = color.adaptive_word(image) if preset.adaptive_colour else 0
    budget = opts.seconds if opts.seconds is not None else preset.cap(image.shape[1], image.shape[0])
    progress.start(budget)
    progress.stage("wavelet")
    f, post_stats, coded = wavelet_stage(image, colour, opts, t_start, budget, 1.0, progress, device)
    return _wavelet_result(f, image, opts, coded, t_start, device.type if preset.post_steps else "cpu",
                           **{"lambda": f.lam}, **post_stats)


def hybrid_device(name: str) -> torch.device:
    """Where the hybrid encoder's tensor work runs: ``auto`` is CUDA when present, else the CPU.

    The L1 refit, the RDOQ sweeps' renderings, the level filters' renderings and the post filter
    run there; the context model, the least-squares solves of the level filters and the coding
    stay on the CPU.  MPS is refused (and ``auto`` does not pick it): the samplers are sparse CSR
    matrices, whose products MPS does not run."""
    if name == "mps":
        raise OptionError("the hybrid encoder runs on CUDA or the CPU, not MPS (its sparse matrix "
                          "products have no MPS kernels); use --device cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return pick_device(name)


@contextlib.contextmanager
def exact_cuda(device: torch.device):
    """Full float32 and deterministic kernels on CUDA for the duration, the flags restored on exit;
    a no-op elsewhere.

    * No TF32 in convolutions (cuDNN allows it by default) or matrix products: RDOQ updates its
      rendering in place move after move and compares ``dJ`` across values, so TF32's 10-bit
      mantissa would bias its decisions.
    * Deterministic cuDNN algorithms, no autotuning: the post filter's weight gradients otherwise
      come from kernels that add in a varying order, and ``--seed`` promises the same bytes for the
      same input and options on the same machine."""
    if device.type != "cuda":
        yield
        return
    flags = (torch.backends.cuda.matmul, "allow_tf32", False), (torch.backends.cudnn, "allow_tf32", False), \
        (torch.backends.cudnn, "deterministic", True), (torch.backends.cudnn, "benchmark", False)
    saved = [getattr(obj, name) for obj, name, _ in flags]
    for obj, name, value in flags:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for (obj, name, _), value in zip(flags, saved):
            setattr(obj, name, value)


def _encode_hybrid(image: np.ndarray, opts: EncodeOptions, t_start: float, progress: TimeProgress,
                   device: torch.device) -> EncodeResult:
    """The body of :func:`encode_hybrid`, which closes ``progress`` however it ends; the tensor work
    runs on ``device`` (:func:`hybrid_device`)."""
    return _HybridSearch(image, opts, t_start, progress, device).encode()


class _HybridSearch:
    """One hybrid encode (:func:`encode_hybrid`'s steps): what every pass shares (the image, its
    pyramid, samplers and colour matrices, the deadline) and what the passes learn along the way
    (the post filter's step budget, each pass's coding time, whether the first pass was cut short).

    :meth:`encode` runs it: :meth:`initial_delta0`, then each stage's :meth:`search`, then
    :meth:`post_stage` and the verifying decode."""

    def __init__(self, image: np.ndarray, opts: EncodeOptions, t_start: float, progress: TimeProgress,
                 device: torch.device) -> None:
        from .decoder import MAX_LATENTS

        self.image, self.opts, self.t_start, self.progress, self.device = image, opts, t_start, progress, device
        self.h, self.w, self.c = h, w, c = image.shape
        self.preset = preset = HYBRID_PRESETS[opts.preset]
        self.basis = opts.basis or preset.basis
        self.deadline = t_start + (opts.seconds if opts.seconds is not None else preset.cap(w, h))
        self.spec = spec = PyramidSpec(pyramid.levels_for(w, h), c, w, h,
                                       colour=color.adaptive_word(image) if preset.adaptive_colour else 0)
        if spec.num_params() > MAX_LATENTS:
            raise LimitError(f"image of {w}x{h} pixels is too large for the hybrid model "
                             f"({spec.num_params()} latent values, limit {MAX_LATENTS}); use an MLP model")
        progress.start(self.deadline - t_start)
        self.target = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).to(device)
        self.target_ycc = color.rgb_to_ycbcr(torch.from_numpy(np.ascontiguousarray(image)),
                                             spec.colour).permute(2, 0, 1).float().to(device)
        self.samplers = rdoq.samplers_for(spec, device)
        self.matrix = rdoq.colour_matrix(c, device, spec.colour)
        self.centre = rdoq.colour_centre(c, device, spec.colour)
        self.l1_operator = l1fit.Operator(self.samplers, c, spec.colour)
        self.target_bytes = None if opts.bpp is None else opts.bpp * w * h / 8.0
        self.target_psnr = opts.psnr
        self.fill_psnrs: dict[float, float] = {}  # the analytic fill's PSNR per Delta_0 (--psnr)
        self.shown_cost = math.inf  # the cost of the best file shown on the progress display
        self.post_steps = preset.post_steps  # 0 once the first pass shows a file too small for the filter to pay
        self.coding_seconds: list[float] = []  # each pass's coding of its file (the post stage's tail, WRITE_COST)
        # whether a deadline cut the encode's first pass short (its L1 refit or its RDOQ sweeps): the
        # file is then below the preset's usual quality (a short --seconds, or a busy machine)
        self.first_cut: bool | None = None

    # -- candidates ---------------------------------------------------------------------------

    def cost(self, cand: _Candidate, lam: float) -> float:
        """``D + lambda R`` of a written candidate: squared 8-bit RGB error in [0, 1] units plus bits."""
        return cand.sse + lam * 8 * len(cand.data)

    def sse_of(self, y: torch.Tensor) -> float:
        """The squared 8-bit RGB error against the image (values in [0, 1]) of ``y``, a rendering
        ``(C, H, W)`` in the coded colour space."""
        rgb = torch.einsum("ij,jhw->ihw", self.matrix, y - self.centre[:, None, None])
        return float(((color.quantize_uint8(rgb) - self.target) ** 2).sum())

    def psnr(self, cand: _Candidate) -> float:
        """A candidate's PSNR in dB (8-bit RGB, every channel; :func:`psnr_of`)."""
        return psnr_of(cand.sse, self.h * self.w * self.c)

    def on_target(self, cand: _Candidate, best: _Candidate | None = None) -> bool:
        """Under ``--bpp`` or ``--psnr``, whether a candidate may be kept (:func:`keeps_rate`,
        :func:`keeps_psnr`); without a target, always."""
        if self.target_bytes is not None:
            return keeps_rate(len(cand.data), self.target_bytes, None if best is None else len(best.data))
        if self.target_psnr is not None:
            return keeps_psnr(self.psnr(cand), self.target_psnr, None if best is None else self.psnr(best))
        return True

    def fill_psnr(self, delta0: float) -> float:
        """The PSNR of the analytic fill (step 1, the preset's first shape) at ``delta0``, as the
        decoder would render its codes without filters (remembered per ``delta0``)."""
        if delta0 not in self.fill_psnrs:
            self.progress.tick("analytic start")
            c, h, w = self.c, self.h, self.w
            idx, codes = self.start(delta0, self.preset.shapes[0])
            y = rdoq.reconstruct(codes, [quant.step_from_index(i) for i in idx], self.samplers, (c, h, w))
            self.fill_psnrs[delta0] = psnr_of(self.sse_of(y), h * w * c)
        return self.fill_psnrs[delta0]

    def psnr_delta0(self, aim: float, start: float) -> float:
        """The ``Delta_0`` whose analytic fill's PSNR is closest to ``aim`` (:func:`delta0_for` from
        ``start``, first slope ``PSNR_SLOPE``, within ``PSNR_TOLERANCE``)."""
        return delta0_for(lambda d0: (self.fill_psnr(d0) - aim) / PSNR_PER_LOG, start,
                          PSNR_TOLERANCE / PSNR_PER_LOG, PSNR_SLOPE)

    def better(self, cand: _Candidate, best: _Candidate, lam: float) -> bool:
        """Whether ``cand`` replaces ``best``: it may be kept (:meth:`on_target`) and costs less."""
        return self.on_target(cand, best) and self.cost(cand, lam) < self.cost(best, lam)

    # -- one pass -----------------------------------------------------------------------------

    def fill_aim(self) -> float:
        """Under ``--bpp``, the analytic fill's coded size that :meth:`initial_delta0` searches for:
        the target over :func:`first_pass_ratio` (the first pass writes fewer bytes than the fill)."""
        return self.target_bytes / first_pass_ratio(self.opts.bpp)

    def fill_bytes(self, delta0: float) -> int:
        """The coded size of the analytic fill (the preset's first shape) at ``delta0``, without
        level filters: what ``--bpp``'s analytic search (:meth:`initial_delta0`) measures."""
        self.progress.tick("analytic start")
        idx, codes = self.start(delta0, self.preset.shapes[0])
        return len(code_hybrid(self.spec, codes, idx))

    def start(self, delta0: float, shape: tuple[float, float, float]) -> tuple[list[int], list[list[np.ndarray]]]:
        """The analytic fill (step 1) at ``delta0`` and step shape ``shape``: step indices and codes."""
        cfg = pyramid.PyramidConfig(delta0=delta0 * shape[2], gamma=shape[0],
                                    kappa=shape[1] * pyramid.chroma_kappa(self.spec.colour))
        idx = pyramid.step_indices(self.spec, cfg)
        return idx, pyramid.fill_codes(self.target_ycc, self.spec, idx, cfg.deadzone, self.samplers)

    def finish(self, codes: list[list[np.ndarray]], idx: list[int], lam: float, shape: tuple[float, float, float],
               delta0: float, sweeps: int, stop: float, end: float, l1_cut: bool = False) -> _Candidate:
        """Level filters, RDOQ through them (until ``stop``, and ``FILTER_TAIL`` filter fits before
        ``end``), filters refitted on the final codes (if ``REFIT_TAIL`` fits still end before
        ``end``), the written file.  ``l1_cut``: a deadline ended the L1 refit before it."""
        c, h, w, progress = self.c, self.h, self.w, self.progress
        steps = [quant.step_from_index(i) for i in idx]
        progress.tick("level filters")
        t_fit = time.perf_counter()
        filters = fit_filters(self.target_ycc, codes, steps, self.samplers, lam, self.spec.colour)
        fit_seconds = time.perf_counter() - t_fit
        stop = min(stop, end - FILTER_TAIL * fit_seconds)
        res = rdoq.optimise(self.image, self.spec, idx, codes, lam, sweeps, stop,
                            rdoq.with_filters(self.samplers, filter_kernels(filters)), tick=progress.tick)
        if (any(not np.array_equal(a, b) for la, lb in zip(codes, res.codes) for a, b in zip(la, lb))
                and time.perf_counter() + REFIT_TAIL * fit_seconds <= end):
            # the filters for the final codes (the same as before when RDOQ changed nothing, as when
            # its deadline came before its first sweep: 16 s of a 12-Mpixel `fast --seconds 60`),
            # if they still fit before the end (REFIT_TAIL)
            progress.tick("level filters")
            filters = fit_filters(self.target_ycc, res.codes, steps, self.samplers, lam, self.spec.colour)
        progress.tick("coding")
        t_code = time.perf_counter()
        data = code_hybrid(self.spec, res.codes, idx, filters)
        self.coding_seconds.append(time.perf_counter() - t_code)
        filtered = rdoq.with_filters(self.samplers, filter_kernels(filters))

        def render() -> float:
            return self.sse_of(rdoq.reconstruct(res.codes, steps, filtered, (c, h, w)))

        cand = _Candidate(data, None, shape, delta0, res.sweeps, res.codes, idx, filtered, filters,
                          cut_short=l1_cut or res.stopped, render=render)
        if progress.active and self.on_target(cand) and self.cost(cand, lam) < self.shown_cost:
            self.shown_cost = self.cost(cand, lam)
            progress.best(len(data), self.psnr(cand))
        return cand

    def fill_pass(self, p: HybridPreset, number: int, delta0: float, shape: tuple[float, float, float], lam: float,
                  sweeps: int, l1_stop: float, stop: float, end: float) -> _Candidate:
        """A pass from the analytic fill: the fill, the L1 refit until ``l1_stop``, :meth:`finish`.
        ``number``: the pass's number in ``p``'s search (for the progress display)."""
        self.progress.stage(f"{p.name} pass {number}")
        t_fill = time.perf_counter()
        idx, codes = self.start(delta0, shape)
        codes = l1fit.solve(self.image, codes, idx, lam, p.l1_iterations, self.l1_operator, p.l1_bits,
                            deadline=l1_stop, tick=self.progress.tick, fill_seconds=time.perf_counter() - t_fill)
        # (solve checks its deadline before each iteration: past it now, it was cut or ended there)
        l1_cut = p.l1_iterations > 0 and time.perf_counter() > l1_stop
        return self.finish(codes, idx, lam, shape, delta0, sweeps, stop, end, l1_cut)

    def refit_pass(self, p: HybridPreset, number: int, cand: _Candidate, lam: float, sweeps: int, stop: float,
                   end: float) -> _Candidate:
        """Another pass from ``cand``: L1 refit through its level filters, warm-started from its codes."""
        iterations = p.l1_iterations if p.refit_iterations is None else p.refit_iterations
        self.progress.stage(f"{p.name} pass {number} (refit)")
        codes = l1fit.solve(self.image, cand.codes, cand.idx, lam, iterations,
                            l1fit.Operator(cand.filtered, self.c, self.spec.colour),
                            p.l1_bits, deadline=stop, tick=self.progress.tick)
        return self.finish(codes, cand.idx, lam, cand.shape, cand.delta0, sweeps, stop, end)

    # -- one preset's search ------------------------------------------------------------------

    def search(self, p: HybridPreset, delta0: float, end: float, last: bool) -> tuple[_Candidate, dict]:
        """One preset's passes before ``end`` (steps 2-5 of :func:`encode_hybrid`): its first pass,
        the ``--bpp`` corrections, its further shapes and its refits.  After the encode's first
        pass, a file under ``preset.post_min_bytes`` drops the post filter, and the last stage's
        search then runs to the deadline (step 7)."""
        sweeps = self.opts.steps if self.opts.steps is not None else p.sweeps
        t_first = time.perf_counter()
        # where a pass's L1 iterations and RDOQ sweeps stop: for the first pass, shares of the time
        # to the end; after it, TAIL_COST first passes before the end
        rate = self.target_bytes is not None
        l1_stop = t_first + (RATE_FIRST_L1_SHARE if rate else FIRST_L1_SHARE) * (end - t_first)
        stop = t_first + (RATE_FIRST_RDOQ_SHARE if rate else FIRST_RDOQ_SHARE) * (end - t_first)
        lam = p.rdoq_lambda * delta0 * delta0
        t_pass = time.perf_counter()
        best = self.fill_pass(p, 1, delta0, p.shapes[0], lam, sweeps, l1_stop, stop, end)
        first_seconds = time.perf_counter() - t_pass
        if self.first_cut is None:  # the encode's first pass
            self.first_cut = best.cut_short
        passes = 1  # passes run: the first, rate-control corrections, further shapes, refits
        if self.post_steps and len(best.data) < self.preset.post_min_bytes:
            self.post_steps = 0
            if last:
                end = self.deadline
        # what follows a pass's last sweep (filters, coding, the final decode) must fit before the end
        stop = end - TAIL_COST * first_seconds

        def fits(seconds: float) -> bool:
            """Whether a pass expected to take ``seconds`` still ends in time (a pass cut short is
            mostly wasted time: it seldom beats the best so far)."""
            return time.perf_counter() + seconds <= stop

        if self.target_bytes is not None:
            # Secant correction on the real size: log(size) is close to linear in log(Delta_0).
            prev = None
            for _ in range(3):
                err = math.log(len(best.data) / self.target_bytes)
                if abs(err) < math.log(1 + BPP_AIM) or time.perf_counter() > stop:
                    break
                slope = -1.3 if prev is None else (
                    (math.log(len(best.data)) - math.log(len(prev.data))) / (math.log(best.delta0) - math.log(prev.delta0))
                    if best.delta0 != prev.delta0 else -1.3)
                slope = min(-0.3, max(-4.0, slope))
                prev, d0 = best, best.delta0 * math.exp(-err / slope)
                cand = self.fill_pass(p, passes + 1, d0, p.shapes[0], p.rdoq_lambda * d0 * d0, sweeps, stop, stop, end)
                passes += 1
                if abs(math.log(len(cand.data) / self.target_bytes)) < abs(err):
                    best = cand
                else:
                    break
            lam = p.rdoq_lambda * best.delta0 ** 2
        if self.target_psnr is not None:
            best, passes = self.psnr_corrections(p, best, passes, sweeps, stop, end)
            lam = p.rdoq_lambda * best.delta0 ** 2
        # a shape pass leaves time for one refit pass (a refit saves more than a shape: docs/design.md, Presets)
        reserve = REFIT_COST * first_seconds if p.refits else 0.0
        for shape in p.shapes[1:]:
            if not fits(first_seconds + reserve):
                break
            cand = self.fill_pass(p, passes + 1, best.delta0, shape, lam, sweeps, stop, stop, end)
            passes += 1
            if self.better(cand, best, lam):
                best = cand
        refit_seconds: list[float] = []  # a refit's expected time: the longest so far, else REFIT_COST x the first
        refits_kept = 0
        for _ in range(p.refits):  # on the best shape only
            if not fits(max(refit_seconds, default=REFIT_COST * first_seconds)):
                break
            t_pass = time.perf_counter()
            cand = self.refit_pass(p, passes + 1, best, lam, sweeps, stop, end)
            refit_seconds.append(time.perf_counter() - t_pass)
            passes += 1
            if not self.better(cand, best, lam):
                break
            best = cand
            refits_kept += 1
        return best, {"preset": p.name, "passes": passes, "first_pass_seconds": round(first_seconds, 3),
                      "refit_seconds": [round(t, 3) for t in refit_seconds], "refits_kept": refits_kept}

    def psnr_corrections(self, p: HybridPreset, best: _Candidate, passes: int, sweeps: int, stop: float,
                         end: float) -> tuple[_Candidate, int]:
        """``--psnr``: up to three passes at a corrected ``Delta_0`` until the best file is within
        ``PSNR_AIM`` of the target or ``stop`` has passed; returns the file nearest the target and
        the pass count.  Once two files lie on either side of the target, ``log Delta_0`` is
        interpolated linearly in their PSNR (regula falsi); before that, the analytic fill's PSNR
        curve (cheap, with the image's own slope) is aimed at the target minus what the optimisation
        added to the fill at the best file's ``Delta_0``."""
        target = self.target_psnr
        tried = [best]
        for _ in range(3):
            err = self.psnr(best) - target
            if abs(err) < PSNR_AIM or time.perf_counter() > stop:
                break
            above = [c for c in tried if self.psnr(c) > target]
            below = [c for c in tried if self.psnr(c) < target]
            if above and below:
                hi = min(above, key=self.psnr)  # the nearest on each side
                lo = max(below, key=self.psnr)
                t = (self.psnr(hi) - target) / (self.psnr(hi) - self.psnr(lo))
                d0 = math.exp(math.log(hi.delta0) + t * (math.log(lo.delta0) - math.log(hi.delta0)))
            else:
                gain = self.psnr(best) - self.fill_psnr(best.delta0)
                d0 = self.psnr_delta0(target - gain, best.delta0)
                if abs(math.log(d0 / best.delta0)) < 1e-9:  # the fill's PSNR does not move: move lambda with it
                    d0 = best.delta0 * math.exp(-err / (PSNR_SLOPE * PSNR_PER_LOG))
            cand = self.fill_pass(p, passes + 1, d0, p.shapes[0], p.rdoq_lambda * d0 * d0, sweeps, stop, stop, end)
            passes += 1
            tried.append(cand)
            if abs(self.psnr(cand) - target) < abs(err):
                best = cand
        return best, passes

    # -- the whole encode ---------------------------------------------------------------------

    def wavelet_candidate(self) -> _Candidate:
        """``auto``'s wavelet file (:func:`wavelet_stage`, in the search's colour space), coded
        before the search at the trade-off of the quality (under ``--bpp`` and ``--psnr`` at the
        target), with the post filter of :func:`wavelet_post` where it pays (that stage ends by
        :data:`WAVELET_POST_SHARE` of the budget; ``slow`` also codes ``medium``'s and keeps the
        better): a candidate that the search's best file must beat in ``D + lambda R``."""
        self.progress.stage("wavelet")
        f, self.wavelet_post_stats, self.wavelet_opts = wavelet_stage(
            self.image, self.spec.colour, self.opts, self.t_start, self.deadline - self.t_start, WAVELET_POST_SHARE,
            self.progress, self.device)
        self.wavelet = f
        cand = _Candidate(f.data, f.sse, (0.0, 0.0, 0.0), f.delta, 0)
        if self.progress.active and self.on_target(cand):
            self.shown_cost = math.inf  # the search's costs are at its own lambda
            self.progress.best(len(f.data), self.psnr(cand))
        return cand

    def initial_delta0(self) -> float:
        """``Delta_0`` from the quality, under ``--bpp`` from the analytic fill's coded size
        (:func:`delta0_for_size`), under ``--psnr`` from the analytic fill's PSNR, aimed
        ``PSNR_FILL_GAIN`` below the target (:func:`delta0_for`)."""
        if self.target_psnr is not None:
            self.progress.stage("quality control")
            return self.psnr_delta0(self.target_psnr - PSNR_FILL_GAIN, hybrid_delta0(DEFAULT_QUALITY))
        if self.target_bytes is None:
            return hybrid_delta0(self.opts.quality)
        self.progress.stage("rate control")
        return delta0_for_size(self.fill_bytes, self.fill_aim(), hybrid_delta0(DEFAULT_QUALITY))

    def stages(self, delta0: float) -> tuple[_Candidate, list[dict], int]:
        """Every stage's :meth:`search` (step 6): the best file, each stage's figures, and which
        stage wrote the best file.  A preset with a base runs the base's whole search first, in the
        base's share of the time, then its own with the time left, and keeps the better file: so it
        is never worse than its base."""
        preset, deadline, t_start = self.preset, self.deadline, self.t_start
        stages = ([HYBRID_PRESETS[preset.base]] if preset.base else []) + [preset]
        best, runs, stage_kept = None, [], 0
        for k, p in enumerate(stages):
            # the post filter's share of the time comes off the end of the last stage's search
            search_end = deadline - preset.post_share * (deadline - t_start) if self.post_steps else deadline
            # the base gets its share of the budget (codec.config.base_budget: its own cap under the
            # preset's, all of a shorter budget, a share of a long --seconds so that every pass of both
            # runs and the bytes are reproducible)
            end = search_end if k == len(stages) - 1 else min(
                search_end, t_start + base_budget(deadline - t_start, p, preset, self.w, self.h))
            if best is not None:
                # a later stage's first pass: expected to take the base's, scaled by its L1 iterations
                expected = runs[0]["first_pass_seconds"] * p.l1_iterations / stages[0].l1_iterations
                if time.perf_counter() + (1 + TAIL_COST) * expected > end:
                    break
            cand, st = self.search(p, delta0 if best is None else best.delta0, end, k == len(stages) - 1)
            runs.append(st)
            lam = preset.rdoq_lambda * (delta0 if best is None else best.delta0) ** 2  # the first stage's
            if best is None or self.better(cand, best, lam):
                best, stage_kept = cand, k
        return best, runs, stage_kept

    def written(self, best: _Candidate, codes: list[list[np.ndarray]],
                record: bitstream.PostFilterRecord) -> tuple[_Candidate, np.ndarray]:
        """``codes`` with ``best``'s steps and level filters and the post filter ``record``, coded
        and decoded: the candidate (its error measured on the decoded file) and the decoded image."""
        from .decoder import decode_to_array

        self.progress.tick("coding")
        data = code_hybrid(self.spec, codes, best.idx, best.filters, record)
        out = decode_to_array(data)
        sse = float(((out.astype(np.float32) / 255.0 - self.image) ** 2).sum())
        return _Candidate(data, sse, best.shape, best.delta0, best.sweeps, codes), out

    def post_rounds(self, best: _Candidate, cand: _Candidate, out: np.ndarray, post: bitstream.PostFilterRecord,
                    lam: float, stop: float, round_seconds: list[float]) -> tuple[_Candidate, np.ndarray, int]:
        """RDOQ through the post filter ``post``: its correction of the current latents held fixed
        (step 7); up to ``preset.post_rounds`` rounds before ``stop``, each kept only if the written
        file's cost drops.  ``round_seconds`` collects each round's time (it also predicts the next)."""
        n_kept = 0
        for _ in range(self.preset.post_rounds):
            if time.perf_counter() + max(round_seconds, default=0.0) > stop:
                break
            t_round = time.perf_counter()
            self.progress.stage(f"post filter RDOQ {len(round_seconds) + 1}")
            aim = post_rdoq_target(self.image, cand.codes, best.idx, best.filtered, post, self.spec.colour)
            res = rdoq.optimise(aim, self.spec, best.idx, cand.codes, lam, self.preset.sweeps, stop,
                                best.filtered, tick=self.progress.tick)
            if not any(res.changed):
                break
            nxt, nxt_out = self.written(best, res.codes, post)
            round_seconds.append(time.perf_counter() - t_round)
            if not self.better(nxt, cand, lam):
                break
            cand, out, n_kept = nxt, nxt_out, n_kept + 1
        return cand, out, n_kept

    def post_stage(self, best: _Candidate, lam: float, tail: float) -> tuple[_Candidate, np.ndarray | None, dict]:
        """Step 7: the post filter fitted on ``best``'s latents, RDOQ rounds through it and (``slow``)
        warm refits between further rounds, all ending ``tail`` before the deadline; the file with
        the filter replaces ``best`` only if it costs less.  Returns the best file, its decoded image
        if the filter's file won (else ``None``), and the stage's figures."""
        c, h, w, preset, progress = self.c, self.h, self.w, self.preset, self.progress
        stop = self.deadline - tail
        post_stats: dict = {"post_filter": 0, "post_filter_steps": 0}
        progress.stage("post filter")
        t_post = time.perf_counter()
        best_steps = [quant.step_from_index(i) for i in best.idx]
        y = rdoq.reconstruct(best.codes, best_steps, best.filtered, (c, h, w))
        counter = [0]

        def tick(detail: str) -> None:
            counter[0] += 1
            progress.tick(detail)

        tensors = postfilter.fit(y, self.target, self.matrix, self.centre, preset.post_hidden,
                                 self.post_steps, deadline=stop, tick=tick)
        post = postfilter.quantize(tensors)
        post_stats["post_filter_steps"] = counter[0]
        # a last layer that codes to zeros is the identity (P = 0; so is a fit that ran no step
        # before its deadline): a file with it would only add bytes, so none is written and decoded
        if post.is_identity:
            return best, None, post_stats
        cand, out = self.written(best, best.codes, post)
        post_fit_seconds = time.perf_counter() - t_post
        round_seconds: list[float] = []
        cand, out, rounds = self.post_rounds(best, cand, out, post, lam, stop, round_seconds)
        # cycles (step 7): the filter refitted warm on the latents the rounds moved, then rounds again
        cycle_seconds: list[float] = []
        refits_kept = 0
        for _ in range(preset.post_cycles):
            expected = max(cycle_seconds, default=post_fit_seconds * preset.post_cycle_steps / self.post_steps
                           + max(round_seconds, default=0.0))
            if time.perf_counter() + expected > stop:
                break
            t_cycle = time.perf_counter()
            progress.stage(f"post filter refit {len(cycle_seconds) + 1}")
            y = rdoq.reconstruct(cand.codes, best_steps, best.filtered, (c, h, w))
            refit = postfilter.quantize(postfilter.fit(
                y, self.target, self.matrix, self.centre, preset.post_hidden, preset.post_cycle_steps, deadline=stop,
                tick=progress.tick, init=postfilter.weights(post, c), lr=postfilter.WARM_LEARNING_RATE))
            nxt, nxt_out = self.written(best, cand.codes, refit)
            refit_kept = self.better(nxt, cand, lam)
            if refit_kept:
                cand, out, post, refits_kept = nxt, nxt_out, refit, refits_kept + 1
            cand, out, moved = self.post_rounds(best, cand, out, post, lam, stop, round_seconds)
            rounds += moved
            cycle_seconds.append(time.perf_counter() - t_cycle)
            if not refit_kept and not moved:
                break
        post_stats = {"post_filter": 0, "post_filter_steps": counter[0],
                      "post_filter_seconds": round(post_fit_seconds, 3),
                      "post_rdoq_rounds": rounds, "post_rdoq_seconds": [round(t, 3) for t in round_seconds],
                      "post_cycles": len(cycle_seconds), "post_refits_kept": refits_kept,
                      "post_cycle_seconds": [round(t, 3) for t in cycle_seconds]}
        if self.better(cand, best, lam):
            post_stats["post_filter"] = preset.post_hidden
            return cand, out, post_stats
        return best, None, post_stats

    def encode(self) -> EncodeResult:
        """The whole encode: ``Delta_0``, the stages' searches, the post stage, the verifying decode."""
        from .decoder import decode_to_array

        wave = self.wavelet_candidate() if self.basis == "auto" else None
        best, runs, stage_kept = self.stages(self.initial_delta0())
        lam = self.preset.rdoq_lambda * best.delta0 ** 2
        decoded, post_stats = None, {"post_filter": 0, "post_filter_steps": 0}
        # the post stage stops this long before the deadline: the search's tail, or the writing and
        # decoding of its files where that is longer (a large image, WRITE_COST)
        tail = max(TAIL_COST * runs[stage_kept]["first_pass_seconds"], WRITE_COST * max(self.coding_seconds))
        if self.post_steps and time.perf_counter() < self.deadline - tail:
            best, decoded, post_stats = self.post_stage(best, lam, tail)
        kept = runs[stage_kept]
        wave_stats = {} if wave is None else {"wavelet_bytes": len(wave.data), "wavelet_psnr": round(self.psnr(wave), 4),
                                              **self.wavelet_post_stats}
        if wave is not None and self.better(wave, best, lam):
            return _wavelet_result(self.wavelet, self.image, self.opts, self.wavelet_opts, self.t_start,
                                   self.device.type, **wave_stats,
                                   **{"lambda": lam, "pyramid_bytes": len(best.data),
                                      "pyramid_psnr": round(self.psnr(best), 4), "first_pass_cut_short": False,
                                      "stages": runs})
        self.progress.stage("verifying")
        psnr = _psnr_vs_source(decode_to_array(best.data) if decoded is None else decoded, self.image)
        return EncodeResult(data=best.data, width=self.w, height=self.h, channels=self.c, model="hybrid",
                            device=self.device.type, seconds=time.perf_counter() - self.t_start, steps=best.sweeps,
                            psnr=psnr, params=self.spec.num_params(),
                            stats={"basis": "pyramid", **wave_stats, "levels": self.spec.levels, "preset": self.opts.preset,
                                   "step_shape": list(best.shape), "delta0": round(best.delta0, 6), "lambda": lam,
                                   "passes": sum(r["passes"] for r in runs),
                                   "first_pass_cut_short": bool(self.first_cut),
                                   "first_pass_seconds": kept["first_pass_seconds"],
                                   "refit_seconds": kept["refit_seconds"], "refits_kept": kept["refits_kept"],
                                   "kept_stage": kept["preset"], "stages": runs, **post_stats})


def side_bytes(n_tensors: int) -> int:
    """Header, CRC and per-tensor records (plus the coder's last word)."""
    return bitstream.OVERHEAD + n_tensors * bitstream.RECORD_SIZE + 4


class RateDistortion:
    """Distortion and rate of a model under per-tensor step indices.

    ``D`` is the MSE of the quantized model on a fixed sample of pixels, ``R`` the ideal code
    length in bits (cached per tensor and step).  Used to allocate steps across tensors.
    """

    def __init__(self, model: CoordMLP, xy: torch.Tensor, target: torch.Tensor) -> None:
        self.model = model
        self.xy = xy
        self.target = target
        self.base = [t.detach().clone() for t in model.coded_tensors()]
        self._bits: dict[tuple[int, int], float] = {}

    def rate(self, k: int, index: int) -> float:
        key = (k, index)
        if key not in self._bits:
            codes = quant.quantize(self.base[k], quant.step_from_index(index))
            self._bits[key] = entropy.choose_theta(codes)[2]
        return self._bits[key]

    def distortion(self, indices: list[int]) -> float:
        qs = [quant.dequantize(quant.quantize(t, quant.step_from_index(i)), quant.step_from_index(i), t.shape)
              for t, i in zip(self.base, indices)]
        self.model.load_coded_tensors(qs)
        with torch.inference_mode():
            d = float(torch.mean((self.model(self.xy) - self.target) ** 2))
        self.model.load_coded_tensors(self.base)
        return d

    def total_rate(self, indices: list[int]) -> float:
        return sum(self.rate(k, i) for k, i in enumerate(indices))


def clamp_index(i: int) -> int:
    return max(0, min(quant.N_STEPS - 1, i))


def allocate_steps(rd: RateDistortion, start: list[int], passes: int = 3) -> list[int]:
    """Per-tensor steps minimising ``J = D + lambda R`` by coordinate descent from ``start``.

    ``lambda = -dD/dR`` is measured by moving all steps together by a quarter octave around
    ``start``, so the result has about the same rate as ``start`` and less distortion: layers the
    output is sensitive to (SIREN's first layer, scaled by w0) get finer steps, large hidden layers
    coarser ones (the classic equal-slope condition of rate-distortion allocation).
    """
    fine = [clamp_index(i - 4) for i in start]
    coarse = [clamp_index(i + 4) for i in start]
    dr = rd.total_rate(fine) - rd.total_rate(coarse)
    dd = rd.distortion(coarse) - rd.distortion(fine)
    if dr <= 0 or dd <= 0:
        return list(start)
    lam = dd / dr
    cur = list(start)
    j = rd.distortion(cur) + lam * rd.total_rate(cur)
    for _ in range(passes):
        improved = False
        for k in range(len(cur)):
            for delta in (-8, -4, 4, 8):
                trial = list(cur)
                trial[k] = clamp_index(cur[k] + delta)
                if trial[k] == cur[k]:
                    continue
                jt = rd.distortion(trial) + lam * rd.total_rate(trial)
                if jt < j:
                    cur, j, improved = trial, jt, True
        if not improved:
            break
    return cur


def shift_to_size(indices: list[int], target_bytes: float, size_of) -> list[int]:
    """Shift all step indices by one common offset so that ``size_of(indices)`` is closest to the target."""
    def shifted(o: int) -> list[int]:
        return [clamp_index(i + o) for i in indices]

    lo, hi = -128, 128  # size decreases as the offset grows
    best = (abs(size_of(indices) - target_bytes), 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        s = size_of(shifted(mid))
        best = min(best, (abs(s - target_bytes), mid))
        if s > target_bytes:
            lo = mid
        else:
            hi = mid
    for o in (lo, hi):
        best = min(best, (abs(size_of(shifted(o)) - target_bytes), o))
    return shifted(best[1])


def encode_array(image: np.ndarray, opts: EncodeOptions = EncodeOptions()) -> EncodeResult:
    """Encode a float32 ``(H, W, C)`` image in ``[0, 1]``.  A GPU that runs out of memory is a
    :class:`~codec.errors.LimitError` that names the image's size and points to ``--device cpu``
    (torch's own error is a multi-line ``RuntimeError``)."""
    opts.validate()
    t_start = time.perf_counter()
    try:
        if opts.model == "hybrid":
            return encode_hybrid(image, opts, t_start)
        return _encode_mlp(image, opts, t_start)
    except torch.cuda.OutOfMemoryError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        h, w = image.shape[:2]
        raise LimitError(f"the GPU ran out of memory encoding a {w}x{h} image with the {opts.model} model; "
                         "use --device cpu") from None


def _encode_mlp(image: np.ndarray, opts: EncodeOptions, t_start: float) -> EncodeResult:
    """The MLP families' encoder (:func:`encode_array`): fit, choose the quantization steps by
    rate-distortion, code, and measure the written bytes."""
    from .decoder import decode_to_array

    h, w, c = image.shape
    device = pick_device(opts.device)
    torch.manual_seed(opts.seed)
    side = side_bytes(FAMILIES[opts.model].layers + 1)
    if opts.bpp is not None:
        target_bytes = opts.bpp * w * h / 8.0
        target_params = max((target_bytes - side) * 8.0 / BITS_PER_PARAM_GUESS, 16.0)
    else:
        target_bytes = None
        target_params = params_per_pixel(opts.quality) * w * h
    spec = spec_for_params(opts.model, target_params, c, seed=opts.seed, longest_side=max(w, h))
    model = build(spec)
    steps = opts.steps if (opts.steps is not None or opts.seconds is not None) else DEFAULT_STEPS
    cfg = FitConfig(steps=steps, seconds=opts.seconds, batch=opts.batch,
                    lr=opts.lr or FAMILIES[opts.model].lr, seed=opts.seed, device=str(device))
    chosen: dict[str, list[int]] = {}
    gen = torch.Generator().manual_seed(opts.seed)
    sample = torch.randperm(w * h, generator=gen)[: min(w * h, RD_SAMPLE)]
    xy = coords.pixel_coords(sample, w, h)
    tgt = torch.from_numpy(np.ascontiguousarray(image.reshape(-1, c)))[sample]

    def choose_steps(m: CoordMLP) -> list[float]:
        m.cpu()
        rd = RateDistortion(m, xy, tgt)
        idx = allocate_steps(rd, steps_for_bits(m, float(bits_for_quality(opts.quality))))
        if target_bytes is not None:
            extra = side_bytes(len(idx))
            idx = shift_to_size(idx, target_bytes, lambda ix: rd.total_rate(ix) / 8 + extra)
        chosen["steps"] = idx
        m.to(device)
        return [quant.step_from_index(i) for i in idx]

    result = fit(model, image, cfg, device, step_indices=choose_steps, quiet=opts.quiet)
    model = model.cpu()
    if "steps" not in chosen:  # a budget too short to reach the QAT phase
        choose_steps(model)
    data = code_model(model, chosen["steps"], w, h)
    if target_bytes is not None and abs(len(data) - target_bytes) > 0.1 * target_bytes:
        chosen["steps"] = shift_to_size(chosen["steps"], target_bytes,
                                        lambda ix: len(code_model(model, ix, w, h)))
        data = code_model(model, chosen["steps"], w, h)
    decoded = decode_to_array(data)
    psnr = _psnr_vs_source(decoded, image)
    return EncodeResult(data=data, width=w, height=h, channels=c, model=opts.model,
                        device=device.type, seconds=time.perf_counter() - t_start,
                        steps=result.steps, psnr=psnr, params=spec.num_params(),
                        stats={"fit_seconds": round(result.seconds, 3), "step_indices": chosen["steps"],
                               "hidden": spec.hidden, "layers": spec.layers})


def _psnr_vs_source(decoded: np.ndarray, image: np.ndarray) -> float:
    from .metrics import psnr

    return psnr(decoded, color.to_uint8(image))
