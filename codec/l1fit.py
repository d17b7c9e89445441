"""L1-regularised least-squares fit of the hybrid's latents (the start that RDOQ refines).

The latent pyramid is overcomplete (about 4/3 values per pixel and channel), so many latent sets
render nearly the same image; the closed-loop fill (:func:`codec.pyramid.fill`) picks one by a fixed
coarse-to-fine rule, and RDOQ's moves of one unit (:mod:`codec.rdoq`) only reach a local optimum
near it.  This module instead solves the convex relaxation of the rate-distortion problem::

    min_v  || M (sum_l S_l v_l - centre) - x ||^2  +  sum_{l,c} mu_{l,c} || v_{l,c} ||_1
    mu_{l,c} = lambda * b_{l,c} / Delta_{l,c}

where ``v_l`` are the real-valued latents of level ``l`` (pixel units), ``S_l`` the level's sampling
operator, ``M`` the YCbCr -> RGB matrix, ``x`` the RGB image, ``lambda`` RDOQ's multiplier and
``b_{l,c}`` an estimate of the bits per unit of ``|q|`` in plane ``(l, c)``: an L1 norm is the linear
part of a Laplace code length, so this is basis pursuit denoising (Chen, Donoho & Saunders 1998)
with the codec's own rate weights.  It is solved by FISTA (Beck & Teboulle 2009) with a per-level
diagonal preconditioner ``v_l = u_l / sqrt(max energy_l)`` (a coarse level's value spreads over
``4^l`` pixels, so without it the coarse levels would set the step size for all).  The result is
quantized with the deadzone rule and handed to RDOQ.  Warm-started from the closed-loop fill.

Measured on Kodak (``inrc bench``, inrc 0.4 against 0.3, which started RDOQ from the fill): 8.4 %
less rate at equal PSNR with 60 iterations (``fast``), 9.8 % with 250 (``medium``).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch

from . import context, pyramid, quant
from .rdoq import LevelSampler, colour_centre, colour_matrix, sum_levels

MIN_BITS, MAX_BITS = 1.0, 16.0
POWER_ITERATIONS = 10
LIPSCHITZ_MARGIN = 1.1  # power iteration under-estimates ||A||; FISTA needs an upper bound
# A refit that cannot run at least this many FISTA iterations before its deadline, after the power
# iteration for the operator's norm (each step of which costs about one FISTA iteration), is not
# started: on a 12 Mpixel image under `fast --seconds 60` the norm alone took 22 s, leaving one
# iteration before the L1 deadline, and the encode took 85 s (0.14.1).
MIN_ITERATIONS = 5
# On the CPU the power iteration's first step also pays one-off costs (allocations, first touch of
# its buffers), but not many: measured at 2 threads, the second step took 0.46 of the first at
# 768x512, 0.95 at 1728x1152 and 1.07 at 4000x3000 (0.15.4; in 0.15.7 0.75-1.06, 0.87-0.89 and
# 0.92-1.01).  So where the rest, each step priced at this share of the first, already cannot end
# before the deadline, the second step is not run either (a GPU's library set-up can make its first
# step many times the rest: there the second step decides).
CPU_FIRST_STEP_SHARE = 0.5
# Before its first step, on the CPU, a power step's cost is bounded from below by the analytic
# fill's (:func:`codec.pyramid.fill_codes`, which renders every level once, as a step renders and
# adjoins them all): measured at 2 threads in inrc 0.15.7 (the fill's time as the encoder passes it,
# the first three steps), a step took 0.53-0.84 of the fill at 768x512, 0.78-0.95 at 1728x1152 and
# 0.86-0.98 at 4000x3000 (before 0.15.6's review made the fill's residual contiguous, the fill was
# slower and a step took 0.40-0.76 of it, so 0.15.6 set 0.3; with the faster fill that no longer
# stopped the norm reliably).  Where steps at this share of the fill's time cannot end before the
# deadline, the norm is not even started: on a 4000x3000 image under `fast --seconds 30` its first
# step (2.6 s) was otherwise spent only to find that no iteration fits.
FILL_STEP_SHARE = 0.45


def bits_per_unit(codes: list[list[np.ndarray]], scale: float) -> np.ndarray:
    """``b_{l,c}``: a plane's context-coded bits divided by ``sum |q|`` (times ``scale``), clamped to
    ``[MIN_BITS, MAX_BITS]``; ``MAX_BITS`` for an all-zero plane."""
    levels, channels = len(codes), len(codes[0])
    out = np.full((levels, channels), MAX_BITS)
    for lv in range(levels):
        for ch in range(channels):
            x = codes[lv][ch]
            mass = float(np.abs(x).sum())
            if mass == 0:
                continue
            _, bits = context.fit_dists(x, context.plane_classes(codes, lv, ch), int(np.abs(x).max()))
            out[lv, ch] = min(MAX_BITS, max(MIN_BITS, bits / mass * scale))
    return out


class Operator:
    """``A u = M sum_l S_l (u_l / sqrt(e_l))`` and its adjoint, with ``e_l`` the largest column energy of level ``l``.

    It depends on the image size only, so the encoder builds it once and every candidate reuses
    it (and its power-iteration norm).  It runs on the samplers' device."""

    def __init__(self, samplers: list[LevelSampler], channels: int, colour: int = 0) -> None:
        self.samplers = samplers
        self.channels = channels
        self.colour = colour  # the colour word (codec.color.matrices)
        self.device = samplers[0].device
        self.m = colour_matrix(channels, self.device, colour)
        self.scale = [1.0 / math.sqrt(float(s.energy.max())) for s in samplers]
        self._norm_sq: float | None = None

    def forward(self, u: list[torch.Tensor]) -> torch.Tensor:
        shape = tuple(u[0].shape)  # level 0 is at the image's size
        y = sum_levels(self.samplers, (g * k for g, k in zip(u, self.scale)), shape)
        return torch.einsum("ij,jhw->ihw", self.m, y)

    def adjoint(self, r: torch.Tensor) -> list[torch.Tensor]:
        r = torch.einsum("ij,ihw->jhw", self.m, r)
        rows = r.permute(1, 0, 2).reshape(r.shape[1], -1)  # shared by every level's adjoint_stack
        return [s.adjoint_stack(r, rows) * k for s, k in zip(self.samplers, self.scale)]

    def norm_sq(self, deadline: float | None = None, reserve: int = 0, fill_seconds: float | None = None) -> float | None:
        """``||A||^2`` by power iteration from a seeded start (deterministic; computed once).

        With a ``deadline`` (``time.perf_counter()``), ``None`` instead when, timed by its second
        step (the first also pays one-off costs: allocations, a GPU's library set-up), the rest of
        the power iteration and ``reserve`` more steps of the same cost (the caller's iterations)
        would not end before it; on the CPU already after the first step when they would not end
        in time at :data:`CPU_FIRST_STEP_SHARE` of its cost each, and before the first step when
        they would not end in time at :data:`FILL_STEP_SHARE` of ``fill_seconds`` each (the
        analytic fill's time, if the caller knows it).  A later call starts again."""
        if self._norm_sq is not None:
            return self._norm_sq
        if (deadline is not None and fill_seconds is not None and self.device.type == "cpu"
                and time.perf_counter() + (POWER_ITERATIONS + reserve) * FILL_STEP_SHARE * fill_seconds > deadline):
            return None
        gen = torch.Generator().manual_seed(0)
        v = [torch.randn((self.channels,) + tuple(s.energy.shape), generator=gen).to(self.device) for s in self.samplers]
        est = 1.0
        for k in range(POWER_ITERATIONS):
            t0 = time.perf_counter()
            w = self.adjoint(self.forward(v))
            est = math.sqrt(sum(float((x * x).sum()) for x in w))
            v = [x / est for x in w]
            if deadline is not None and k < 2:
                now = time.perf_counter()
                share = 1.0 if k == 1 else CPU_FIRST_STEP_SHARE if self.device.type == "cpu" else 0.0
                if now + (POWER_ITERATIONS - 1 - k + reserve) * share * (now - t0) > deadline:
                    return None
        self._norm_sq = est
        return est


def solve(image: np.ndarray, codes: list[list[np.ndarray]], step_idx: list[int], lam: float,
          iterations: int, op: Operator, bits_scale: float = 1.0,
          deadzone: float = 0.5, deadline: float | None = None,
          tick: Callable[[str], None] | None = None, fill_seconds: float | None = None) -> list[list[np.ndarray]]:
    """FISTA on the problem above, warm-started from ``codes`` (``codes[level][channel]``, integer
    latents with steps ``step_idx``); returns the deadzone-quantized solution.  Stops early at
    ``deadline`` (``time.perf_counter()``).  ``tick`` (a progress display) is called once per
    iteration with its position, ``"L1 12/60"``.  Returns ``codes`` itself, unchanged, when fewer
    than ``MIN_ITERATIONS`` iterations (or ``iterations``, if fewer) would fit before ``deadline``
    after the operator's norm is known (:meth:`Operator.norm_sq`; ``fill_seconds``, the analytic
    fill's time, lets it decide before its first step): a budget that short is better spent on
    RDOQ and the level filters."""
    v = solve_continuous(image, codes, step_idx, lam, iterations, op, bits_scale, deadline, tick, fill_seconds)
    if v is None:
        return codes
    out = []
    for lv, vl in enumerate(v):
        q = pyramid.deadzone_quantize(vl, deadzone)
        out.append([q[ch].to(torch.int64).cpu().numpy() for ch in range(vl.shape[0])])
    return out


def solve_continuous(image: np.ndarray, codes: list[list[np.ndarray]], step_idx: list[int], lam: float,
                     iterations: int, op: Operator, bits_scale: float = 1.0, deadline: float | None = None,
                     tick: Callable[[str], None] | None = None,
                     fill_seconds: float | None = None) -> list[torch.Tensor] | None:
    """:func:`solve` before its quantization: the real-valued solution in code units (``v / Delta``),
    one ``(C, H_l, W_l)`` tensor per level on the operator's device, or ``None`` where :func:`solve`
    returns ``codes`` unchanged."""
    if iterations <= 0:
        return None
    if deadline is not None and time.perf_counter() > deadline:
        return None
    norm_sq = op.norm_sq(deadline, min(iterations, MIN_ITERATIONS), fill_seconds)
    if norm_sq is None:
        return None
    c = image.shape[2]
    levels = len(codes)
    dev = op.device
    steps = torch.tensor([quant.step_from_index(i) for i in step_idx], dtype=torch.float32).reshape(levels, c).to(dev)
    b = torch.from_numpy(bits_per_unit(codes, bits_scale)).float().to(dev)
    lip = 2.0 * norm_sq * LIPSCHITZ_MARGIN
    # soft threshold per value of u: (mu / L) * d v / d u
    thr = [(lam * b[lv] / steps[lv] * op.scale[lv] / lip)[:, None, None] for lv in range(levels)]
    target = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().to(dev)
    target = target + torch.einsum("ij,j->i", op.m, colour_centre(c, dev, op.colour))[:, None, None]
    u = [torch.stack([torch.from_numpy(codes[lv][ch]).float().to(dev) * steps[lv, ch] for ch in range(c)]) / op.scale[lv]
         for lv in range(levels)]
    z, t = [x.clone() for x in u], 1.0
    for it in range(iterations):
        if deadline is not None and time.perf_counter() > deadline:
            break
        if tick is not None:
            tick(f"L1 {it + 1}/{iterations}")
        grad = op.adjoint(op.forward(z) - target)
        nxt = []
        for zl, gl, tl in zip(z, grad, thr):
            v = zl - (2.0 / lip) * gl
            nxt.append(torch.sign(v) * torch.clamp(v.abs() - tl, min=0.0))
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        z = [a + ((t - 1.0) / t_next) * (a - p) for a, p in zip(nxt, u)]
        u, t = nxt, t_next
    return [u[lv] * op.scale[lv] / steps[lv][:, None, None] for lv in range(levels)]
