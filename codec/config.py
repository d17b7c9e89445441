"""Frozen configurations and named presets.

``quality`` (1..100) maps to a parameter density and a bit depth:

* parameters per pixel ``rho(q) = 0.004 * 2^(q / 20)`` (q=75: 0.054, i.e. ~21k parameters for a
  768x512 image), turned into a hidden width for the model family's depth;
* bit depth ``b(q)`` = 7 (q < 40), 8 (q < 85) or 9; each tensor's step is ``max|w| / (2^(b-1) - 1)``.

Rate control (``--bpp``) picks the width from the target and then searches the bit depth on the
real coded size (see :mod:`codec.encoder`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .bitstream import MAX_LAYERS
from .errors import OptionError
from .models import MODELS, ModelSpec

DEFAULT_MODEL = "hybrid"
DEFAULT_QUALITY = 75
MIN_HIDDEN = 8
MAX_ENCODER_HIDDEN = 256  # the encoder stays well inside the decoder's limits


@dataclass(frozen=True)
class Family:
    """Per-family defaults: depth, encoding parameters, learning rate."""

    layers: int
    enc_a: int = 0
    enc_b: int = 0
    lr: float = 1e-3


FAMILIES: dict[str, Family] = {
    "relu": Family(layers=5, lr=2e-3),
    "pe": Family(layers=5, enc_a=10, lr=2e-3),
    "fourier": Family(layers=4, enc_a=64, enc_b=4 * 4, lr=2e-3),
    "siren": Family(layers=5, enc_b=30, lr=1e-3),
}


@dataclass(frozen=True)
class FitConfig:
    """How long and how to fit.  ``steps`` and ``seconds`` both bound the run when given."""

    steps: int | None = None
    seconds: float | None = None
    batch: int | None = None  # pixels per step; None: device default
    lr: float | None = None
    qat_fraction: float = 0.1
    qat_mode: str = "freeze-first"  # or "ste" (codec.fit.QAT_MODES)
    seed: int = 0
    device: str = "auto"


RDOQ_LAMBDA = 0.25  # lambda = RDOQ_LAMBDA * Delta_0^2 (SSE in [0,1] RGB units per bit; swept: below)


@dataclass(frozen=True)
class HybridPreset:
    """Effort of the hybrid encoder (:func:`codec.encoder.encode_hybrid`).

    ``sweeps``: rate-distortion optimisation sweeps over the latents (:mod:`codec.rdoq`; stops
    early when a sweep changes almost nothing).  ``shapes``: step-size shapes ``(gamma, kappa, scale)``
    tried (the level decay, a factor on the colour space's chroma factor :func:`codec.pyramid.chroma_kappa`,
    and a factor on ``Delta_0``; :class:`codec.pyramid.PyramidConfig`); the one with
    the lowest ``D + lambda R`` on the written file is kept, so more shapes never do worse.
    ``seconds``: the wall-clock cap that applies when ``--seconds`` is not given, for an image of
    up to :data:`CAP_PIXELS` (768x512, a Kodak image); a larger image gets it in proportion to its
    pixel count (:meth:`cap`), since every pass costs time in proportion to the pixels.
    ``l1_iterations``: FISTA iterations of the L1-regularised start (:mod:`codec.l1fit`) per
    candidate; ``l1_bits``: the factor on its per-plane bits-per-unit estimate.  ``refits``: further
    passes of L1 refit (through the level filters the previous pass found, warm-started from its
    codes), filters and RDOQ on the best shape's candidate, each kept only if it lowers ``D + lambda R``;
    ``refit_iterations``: their FISTA iterations (``None``: ``l1_iterations``).  ``base``: a preset
    (itself without a base) whose whole search runs first, in ``base.seconds / seconds`` of the time
    but at least the base's own cap where the budget allows (:func:`base_budget`); this preset's search
    then runs with the time left and the file with the lower ``D + lambda R`` is kept, so more effort
    is never worse than the base's at the same quality.  ``post_hidden``, ``post_steps``: the post
    filter (:mod:`codec.postfilter`, format version 7) fitted on the final latents, its hidden
    channels and Adam steps (0: none), kept only if it lowers ``D + lambda R``; since 0.24 also on
    the wavelet file, with the same ``post_min_bytes`` and ``post_cycles``
    (:func:`codec.encoder.wavelet_post`); ``post_share``: the
    share of the time it keeps back from the search (it stops early at the deadline);
    ``post_min_bytes``: no filter is fitted, and its time goes back to the search, when the
    encode's first pass writes a smaller file (the filter's 150-450 bytes cannot pay there).
    ``post_rounds``: after the filter is fitted, at most this many rounds of RDOQ against the image
    minus the filter's correction of the current latents (the filter fixed), each kept only if it
    lowers ``D + lambda R`` of the written file (:func:`codec.encoder.post_rdoq_target`).
    ``post_cycles``: then at most this many cycles of a warm refit of the filter (``post_cycle_steps``
    Adam steps from its current weights, on the latents the rounds moved; kept only if the cost
    drops) followed by the rounds again; they stop at the first cycle that keeps nothing.
    ``rdoq_lambda``: the factor ``a`` of the rate-distortion multiplier ``lambda = a Delta_0^2`` that
    the L1 refit, RDOQ and every keep-or-drop decision of the encode use (:data:`RDOQ_LAMBDA` for
    every preset; ``benchmarks/lambda_sweep.py`` varies it).  ``adaptive_colour``: code an RGB image in
    its own rotation of RGB (:func:`codec.color.adaptive_word`, format version 8) rather than in
    JFIF YCbCr (``False``: YCbCr, as before 0.15; for side-by-side measurements).  ``basis``
    (format version 10): ``"wavelet"`` codes the image's CDF 9/7 subbands (:mod:`codec.wavecode`,
    about a second for a Kodak image) and nothing else; ``"pyramid"`` runs the search above;
    ``"auto"`` codes the wavelet file first, then runs the search with the time left, and keeps the
    file with the lower ``D + lambda R`` (at the search's lambda), so it is never worse than the
    wavelet file alone.  ``wavelet_sweeps``: the wavelet file's RDOQ sweeps
    (:func:`codec.wavecode.rdoq_exact`; ``--steps`` overrides them); more sweeps lower the rate of
    the wavelet curve (kodim01 and kodim02: -2.11 / -1.58 % BD-rate against 0.22 at two sweeps,
    -2.53 / -2.18 % at three, -2.79 / -2.43 % at five) at about 0.7 s each for a Kodak image.
    """

    name: str
    sweeps: int
    shapes: tuple[tuple[float, float, float], ...]
    seconds: float
    l1_iterations: int = 60
    l1_bits: float = 1.0
    refits: int = 0
    refit_iterations: int | None = None
    base: str | None = None
    post_hidden: int = 0
    post_steps: int = 0
    post_share: float = 0.0
    post_min_bytes: int = 0
    post_rounds: int = 0
    post_cycles: int = 0
    post_cycle_steps: int = 0
    rdoq_lambda: float = RDOQ_LAMBDA
    adaptive_colour: bool = True
    basis: str = "auto"
    wavelet_sweeps: int = 3

    def cap(self, width: int, height: int) -> float:
        """The default wall-clock cap for a ``width x height`` image::

            cap = seconds * max(1, width * height / CAP_PIXELS)

        so a 1536x1024 image gets four times a Kodak image's time, and one of 768x512 or fewer the
        preset's ``seconds``."""
        return self.seconds * max(1.0, width * height / CAP_PIXELS)


# Pixels for which the presets' ``seconds`` are set (a Kodak image, 768x512: the issue's per-image
# budgets of 20 s / 60 s / 5 min).  Before 0.10.3 the cap did not grow with the image: a 1536x1024
# image under medium's 60 s ran no RDOQ sweep at all (its first pass alone took 66 s) and landed
# 1.2 dB below the same preset given 240 s.
CAP_PIXELS = 768 * 512


def base_budget(budget: float, base: HybridPreset, preset: HybridPreset, width: int, height: int) -> float:
    """Seconds of a ``budget`` that ``preset``'s base search gets before its own::

        max(budget * base.seconds / preset.seconds, min(budget, base.cap(width, height)))

    The base's share of the preset's cap by default (medium's 60 s of slow's 300 s), a share of a
    longer ``--seconds`` (so that a long budget runs every pass of both, reproducibly), and never
    less than the base's own cap where the budget allows it: ``slow --seconds 60`` is then
    ``medium``'s search with its full minute (before 0.10.3 medium got 12 s of it and the file was
    1-3.5 % worse in ``D + lambda R`` than plain ``medium``'s on kodim08 and kodim23)."""
    return max(budget * base.seconds / preset.seconds, min(budget, base.cap(width, height)))


# step-size shapes (gamma, kappa, Delta_0 scale) a preset tries; 0.3's medium searched four for a 0.7 %
# gain, 0.4's fast and medium spend their time on the L1 refit instead.  The refit has converged by
# about 250 iterations (0.4's slow ran 800 for 0.2 % over medium), so 0.6's slow searches the shapes.
# Since 0.15.1 a shape's kappa is a factor on the coded colour space's own chroma factor
# (codec.pyramid.chroma_kappa: 1.5 for YCbCr, 1.15 for an image's rotation); before, it was the factor
# itself, 1.5 (and slow's fourth shape 2.0 = 1.5 x 4/3).
_SHAPES = ((1.0, 1.0, 1.0),)
_SLOW_SHAPES = _SHAPES + ((1.0, 1.0, 0.8), (0.85, 1.0, 1.0), (1.0, 4.0 / 3.0, 1.0))
# Refit passes through the level filters (0.7: slow, one; 0.8: medium two, slow four), each started
# only if it still fits in the time (codec.encoder.REFIT_COST).  On four Kodak images (kodim01, 08,
# 19, 23 x q40..95) one pass saved 3.7 % of medium's rate, a second another 2.9 % at fast's settings.
# A refit starts from the previous pass's codes, so 0.9 gives it fewer iterations than the first
# pass: medium's refits at 100 instead of 250 take 0.45-0.95 of the first pass instead of ~1.1, so
# under the 60 s cap at one thread all 20 of those encodes ran a refit (0.8: 9 of 20), for 1.8 %
# less rate (the same four images, side by side).  Refits converge after one to four passes (the
# loop stops at the first that does not pay), so slow's extra time goes to its shapes.
# The post filter (150-450 bytes) was kept at none of the 0.11.0 Kodak run's medium points under
# 5.7 kB (34 of 120, q40 and q55, fitted for about 12 s each for nothing): from 0.11.1 a first pass
# under this size skips it and gives its time back to the search.
POST_MIN_BYTES = 5000
# RDOQ rounds against the image minus the fitted post filter's correction (0.13): on kodim01 q85,
# kodim08 q70 and kodim19 q55 (medium files that kept the filter) three rounds lowered D + lambda R
# by 0.82-1.30 % (the first 0.63-0.77 %), 1-2 s each; refitting the filter after a round lost it.
POST_ROUNDS = 3
# slow's post cycles (0.14): a warm refit of the filter (600 Adam steps from its weights) on the latents
# the rounds moved, then the rounds again.  From medium's files of kodim08 q70 and kodim01 q85 (filter
# kept, three rounds run) the first cycle lowered D + lambda R by 0.28 and 0.30 %, three by 0.32 %
# (benchmarks/post_alternation_probe.py); refitting from zero instead had lost the rounds' gain.
# slow keeps 20 % of its time for the filter instead of 10 % to fit them.
POST_CYCLES = 3
POST_CYCLE_STEPS = 600
# The factor of lambda = RDOQ_LAMBDA * Delta_0^2 (HybridPreset.rdoq_lambda), swept in 0.14.1 on kodim01, 08,
# 19 and 23 x q40-95 (benchmarks/lambda_sweep.py; BD-rate against 0.25, mean per image): fast at
# 0.13 / 0.155 / 0.18 / 0.21 / 0.35 -0.8 / -1.0 / -0.9 / -0.5 / +1.4 %, medium at 0.17 -0.3 % (+0.3 % on
# the mean curve, within what its time cap moves).  fast at 0.17 on all 24 Kodak images, side by side:
# -0.77 % against 0.25 at equal PSNR, but its q40-95 points move to 8-27 % more bytes and its BD-rate
# against JPEG over them reads -36.4 % instead of -37.5 % (the curve gains range where JPEG is closer);
# too little to change what a quality means, so every preset keeps 0.25.
# The bases a hybrid encode can use (HybridPreset.basis; `inrc encode --basis`).  0.22 made `fast` the
# wavelet basis alone: on all 24 Kodak images it needed less rate than 0.21.1's `slow` in a second
# (benchmarks/README.md); `medium` and `slow` code it too and keep the better of it and their search.
BASES = ("auto", "wavelet", "pyramid")
HYBRID_PRESETS: dict[str, HybridPreset] = {
    "fast": HybridPreset("fast", sweeps=4, shapes=_SHAPES, seconds=20.0, l1_iterations=60, basis="wavelet"),
    "medium": HybridPreset("medium", sweeps=8, shapes=_SHAPES, seconds=60.0, l1_iterations=250, refits=3,
                           refit_iterations=100, wavelet_sweeps=6, post_hidden=8, post_steps=1000, post_share=0.2,
                           post_min_bytes=POST_MIN_BYTES, post_rounds=POST_ROUNDS),
    "slow": HybridPreset("slow", sweeps=16, shapes=_SLOW_SHAPES, seconds=300.0, l1_iterations=400, refits=4,
                         refit_iterations=150, wavelet_sweeps=8, base="medium", post_hidden=8, post_steps=2500, post_share=0.2,
                         post_min_bytes=POST_MIN_BYTES, post_rounds=POST_ROUNDS, post_cycles=POST_CYCLES,
                         post_cycle_steps=POST_CYCLE_STEPS),
}
DEFAULT_PRESET = "medium"


# Default effort: about a minute for a 768x512 image on 2 CPU cores (measured; README).
DEFAULT_STEPS = 1000
CPU_BATCH = 1 << 14
GPU_BATCH = 1 << 18


def params_per_pixel(quality: int) -> float:
    return 0.004 * 2.0 ** (quality / 20.0)


def bits_for_quality(quality: int) -> int:
    return 7 if quality < 40 else (8 if quality < 85 else 9)


def check_quality(quality: int) -> int:
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise OptionError(f"quality must be an integer in 1..100, got {quality!r}")
    return quality


def encoding_size(model: str, hidden: int, longest_side: int) -> int:
    """Encoding width: PE uses ``L = clamp(ceil(log2(longest side)), 2, family L)`` frequencies (finer
    ones alias); Fourier features use ``m = clamp(hidden, 8, family m)`` so they never dominate."""
    fam = FAMILIES[model]
    if model == "pe":
        return max(2, min(fam.enc_a, math.ceil(math.log2(max(longest_side, 2)))))
    if model == "fourier":
        return max(8, min(fam.enc_a, hidden))
    return fam.enc_a


def spec_for_params(model: str, target_params: float, channels: int, seed: int = 0,
                    longest_side: int = 1024) -> ModelSpec:
    """The family's spec whose parameter count is closest to ``target_params`` (width MIN_HIDDEN..MAX_ENCODER_HIDDEN)."""
    if model not in MODELS:
        raise OptionError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    fam = FAMILIES[model]
    best = None
    for hidden in range(MIN_HIDDEN, MAX_ENCODER_HIDDEN + 1):
        spec = ModelSpec(model, fam.layers, hidden, channels, encoding_size(model, hidden, longest_side),
                         fam.enc_b, seed & 0xFFFFFFFF if model == "fourier" else 0)
        err = abs(math.log(spec.num_params() / max(target_params, 1.0)))
        if best is None or err < best[0]:
            best = (err, spec)
        if spec.num_params() > target_params:
            break
    if fam.layers > MAX_LAYERS:  # pragma: no cover - guarded by the table above
        raise OptionError("too many layers")
    return best[1]
