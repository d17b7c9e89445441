"""Overfitting a coordinate network to one image.

The loop minimises the MSE between ``f(x, y)`` and the pixel values on random mini-batches of
pixels (on CPU, batches of 2^14 pixels reach a given PSNR several times faster than full-image
steps: ../shared/notes/cpu-calibration.md), with Adam and a cosine learning-rate decay driven by
``progress = max(step / steps, elapsed / seconds)``, so both step and time budgets get a full
schedule.  The last ``qat_fraction`` of the run is quantization-aware: the forward pass sees
``round(w / Delta) * Delta`` and gradients pass straight through (:func:`codec.quant.fake_quant`).
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call

from . import coords
from .config import CPU_BATCH, GPU_BATCH, FitConfig
from .errors import OptionError
from .models import CoordMLP


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA, else MPS, else CPU; explicit names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OptionError("--device cuda requested but CUDA is not available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise OptionError("--device mps requested but MPS is not available")
    if name not in ("cpu", "cuda", "mps"):
        raise OptionError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    return torch.device(name)


@dataclass
class FitResult:
    steps: int
    seconds: float
    train_psnr: float


class Progress:
    """A tqdm bar on stderr, silent when stderr is not a terminal or ``quiet``."""

    def __init__(self, total: int | None, seconds: float | None, quiet: bool) -> None:
        self.bar = None
        if quiet or not sys.stderr.isatty():
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="fitting", unit="step", file=sys.stderr, leave=False,
                        dynamic_ncols=True)

    def update(self, step: int, elapsed: float, psnr: float) -> None:
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix_str(f"{elapsed:5.1f}s  {psnr:5.2f} dB", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def fit(
    model: CoordMLP,
    image: np.ndarray,
    cfg: FitConfig,
    device: torch.device,
    step_indices: Callable[[CoordMLP], list[float]] | None = None,
    quiet: bool = True,
) -> FitResult:
    """Fit ``model`` to ``image`` (float32 ``(H, W, C)``) in place.

    ``step_indices(model)`` returns the per-layer quantization steps used in the QAT phase; it is
    called once when that phase starts.  Without it there is no QAT phase.
    """
    h, w, c = image.shape
    n = h * w
    steps = cfg.steps
    seconds = cfg.seconds
    if steps is None and seconds is None:
        raise OptionError("a step or time budget is required")
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    model.to(device).train()
    target = torch.from_numpy(np.ascontiguousarray(image.reshape(n, c))).to(device)
    xy = coords.pixel_coords(torch.arange(n), w, h).to(device)
    batch = cfg.batch or (GPU_BATCH if device.type != "cpu" else CPU_BATCH)
    batch = min(batch, n)
    full = batch >= n
    lr = cfg.lr
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    progress = Progress(steps, seconds, quiet)
    names = [(f"linears.{k}.weight", f"linears.{k}.bias") for k in range(len(model.linears))]
    qat_steps: list[float] | None = None
    t0 = time.perf_counter()
    step = 0
    ema = None
    try:
        while True:
            elapsed = time.perf_counter() - t0
            frac = 0.0
            if steps is not None:
                frac = step / steps
            if seconds is not None:
                frac = max(frac, elapsed / seconds)
            if frac >= 1.0:
                break
            for g in opt.param_groups:
                g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
            if full:
                x, y = xy, target
            else:
                idx = torch.randint(n, (batch,), generator=gen).to(device)
                x, y = xy[idx], target[idx]
            if step_indices is not None and frac >= 1.0 - cfg.qat_fraction:
                if qat_steps is None:
                    qat_steps = step_indices(model)
                params = {}
                for (wn, bn), lin, s in zip(names, model.linears, qat_steps):
                    params[wn] = lin.weight + (torch.round(lin.weight / s) * s - lin.weight).detach()
                    params[bn] = lin.bias + (torch.round(lin.bias / s) * s - lin.bias).detach()
                out = functional_call(model, params, (x,))
            else:
                out = model(x)
            loss = torch.mean((out - y) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            lv = float(loss.detach()) if (step % 25 == 0 or step < 3) else None
            if lv is not None:
                ema = lv if ema is None else 0.7 * ema + 0.3 * lv
                progress.update(step, time.perf_counter() - t0, -10 * math.log10(max(ema, 1e-12)))
    finally:
        progress.close()
    model.eval()
    psnr = -10 * math.log10(max(ema, 1e-12)) if ema is not None else 0.0
    return FitResult(steps=step, seconds=time.perf_counter() - t0, train_psnr=psnr)
