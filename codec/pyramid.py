"""Filling latent grids directly from the image: the analytic start of the hybrid model.

Closed-loop coarse-to-fine pyramid in YCbCr (../shared/notes/cpu-calibration.md measured this
within 0.3-2.8 dB of JPEG in about a second, with no training)::

    r = ycbcr(image) - reconstruction          (starts at 0)
    for l = L-1 .. 0:                            (coarsest first)
        d_l = area-average of r on level l's grid
        q_l = deadzone_quantize(d_l / Delta_l)   (integers, entropy-coded)
        reconstruction += sample_l(q_l * Delta_l)   (exactly what the decoder will compute)

Because each level is fitted to what the coarser, already-quantized levels left over, quantization
errors do not accumulate.  Step sizes: ``Delta_{l,c} = Delta_0 * 2^(-gamma * l) * (kappa if chroma)``:
a value on level ``l`` spreads over ~4^l pixels, so coarse levels get finer steps.  The deadzone
quantizer ``q = sign(x) floor(|x| + f)`` with ``f < 1/2`` sends small values to zero, which costs
little distortion and saves rate (as in H.264's intra quantizer, f = 1/3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from . import color, quant
from .models import LatentPyramid, PyramidSpec

MIN_GRID = 4  # the coarsest level is about this many cells on its longer side

# The chroma step factor kappa of each coded colour space (chroma_kappa; a preset's step shape scales it).
# YCbCr: 1.5, tuned in 0.3 on kodim23.  The image's own rotation (format version 8) is orthonormal up to
# the factor sqrt(3), so a unit error costs the same RGB error in every component and high-rate theory
# (reverse water-filling) asks for equal steps, kappa = 1; measured with `fast` on kodim01, 08, 09, 12,
# 19 and 23 x q40-95 (benchmarks/lambda_sweep.py --shapes, 0.15.1), BD-rate against 1.5, mean per image
# (mean curve): 1.0 -0.47 % (-1.08 %), 1.15 -0.49 % (-0.87 %), 1.25 -0.43 % (-0.73 %), 1.35 -0.35 %,
# 1.75 +0.54 %, 2.0 +1.28 %; every image gained at 1.0-1.35.
YCBCR_KAPPA = 1.5
ROTATION_KAPPA = 1.15


@dataclass(frozen=True)
class PyramidConfig:
    """Rate-shaping parameters of the analytic fill."""

    delta0: float  # finest-level luma step, in [0, 1] pixel units
    gamma: float = 1.0  # kodim23: 1.0 beat 0.5 by 1-3 dB at equal rate, 1.25 was no better
    kappa: float = YCBCR_KAPPA
    deadzone: float = 0.5  # rounding offset f (0.3 was equal at equal rate on kodim23)


def levels_for(width: int, height: int, max_levels: int = 16) -> int:
    longest = max(width, height)
    return max(1, min(max_levels, math.floor(math.log2(max(longest / MIN_GRID, 1))) + 1))


def chroma_kappa(colour: int) -> float:
    """The chroma step factor for colour word ``colour`` (:mod:`codec.color`): :data:`YCBCR_KAPPA`
    for word 0 (JFIF YCbCr), :data:`ROTATION_KAPPA` for an image's own rotation."""
    return YCBCR_KAPPA if colour == 0 else ROTATION_KAPPA


def is_chroma(channels: int, channel: int) -> bool:
    """Whether ``channel`` of an image of ``channels`` channels is a chroma channel (1 or 2 of three
    or four: its step takes the chroma factor; luma, gray and alpha do not)."""
    return channels >= 3 and channel in (1, 2)


def step_indices(spec: PyramidSpec, cfg: PyramidConfig) -> list[int]:
    out = []
    for lv in range(spec.levels):
        for c in range(spec.channels):
            d = cfg.delta0 * 2.0 ** (-cfg.gamma * lv) * (cfg.kappa if is_chroma(spec.channels, c) else 1.0)
            out.append(quant.index_for_step(d))
    return out


def deadzone_quantize(x: torch.Tensor, f: float) -> torch.Tensor:
    return torch.sign(x) * torch.floor(x.abs() + f)


def codes_of(model: LatentPyramid, idx: list[int]) -> list[list[np.ndarray]]:
    """The integer codes ``codes[level][channel]`` of a filled model (values are exact multiples of their steps)."""
    c = model.spec.channels
    return [[np.rint(model.latents[lv][ch].detach().numpy() / quant.step_from_index(idx[lv * c + ch])).astype(np.int64)
             for ch in range(c)] for lv in range(model.spec.levels)]


def fill_codes(target: torch.Tensor, spec: PyramidSpec, idx: list[int], deadzone: float,
               samplers: list) -> list[list[np.ndarray]]:
    """Closed-loop fill (the module docstring) of ``target``, the image in the coded colour space
    ``(C, H, W)``; returns the integer codes ``codes[level][channel]``.

    Each level's contribution is rendered by ``samplers`` (:func:`codec.rdoq.samplers_for`: the
    decoder's separable sampling matrices, ``S_y G S_x^T``), so what the finer levels are fitted to
    is exactly what the decoder leaves, and a level costs two sparse products instead of a
    ``grid_sample`` at every pixel (a 12-Mpixel fill on 2 cores: 3.3 s instead of 6.2 s).  The products run
    on the samplers' device, ``target``'s."""
    c = target.shape[0]
    resid = target.clone(memory_format=torch.contiguous_format)  # the pooling and products read it in order
    codes: list[list[np.ndarray]] = [[] for _ in range(spec.levels)]
    for lv in reversed(range(spec.levels)):
        lh, lw = spec.level_shapes()[lv]
        # the area average; a level of the image's size (level 0: its sampler is the identity) is the residual itself
        d = resid if samplers[lv].native else torch.nn.functional.adaptive_avg_pool2d(resid[None], (lh, lw))[0]
        steps = torch.tensor([quant.step_from_index(idx[lv * c + ch]) for ch in range(c)],
                             dtype=d.dtype, device=d.device)[:, None, None]
        q = deadzone_quantize(d / steps, deadzone)
        codes[lv] = list(q.to(torch.int64).cpu().numpy())
        if lv:  # level 0's contribution is not needed: nothing is fitted after it
            resid -= samplers[lv].up_stack(q * steps)
    return codes


def fill(image: np.ndarray, spec: PyramidSpec, idx: list[int], deadzone: float) -> LatentPyramid:
    """Closed-loop fill of a :class:`LatentPyramid` (values are ``q * Delta``, exactly as decoded;
    :func:`fill_codes` on the CPU)."""
    from .rdoq import samplers_for

    c = spec.channels
    target = color.rgb_to_ycbcr(torch.from_numpy(np.ascontiguousarray(image)), spec.colour).permute(2, 0, 1).float()
    codes = fill_codes(target, spec, idx, deadzone, samplers_for(spec))
    model = LatentPyramid(spec)
    with torch.no_grad():
        for lv in range(spec.levels):
            for ch in range(c):
                model.latents[lv][ch] = torch.from_numpy(codes[lv][ch]).float() * quant.step_from_index(idx[lv * c + ch])
    return model
