"""The encoding pipeline: fit, choose quantization steps, entropy-code, pack, verify.

Rate control (``bpp=X``): the width is chosen so that the parameter count at ~6.5 bits per
parameter lands on ``X``; after fitting, the bit depth ``b`` (a real number: steps are
``max|w| / (2^(b-1) - 1)`` snapped to the step table) is bisected on the coded size, before the
quantization-aware phase, and searched again on the final weights if the written file is more
than 10 % off the target.  Every reported figure comes from the written bytes.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import bitstream, color, entropy, quant
from .bitstream import Header, TensorRecord
from .config import (
    DEFAULT_MODEL,
    DEFAULT_QUALITY,
    DEFAULT_STEPS,
    FAMILIES,
    FitConfig,
    bits_for_quality,
    check_quality,
    params_per_pixel,
    spec_for_params,
)
from .errors import OptionError
from .fit import fit, pick_device
from .models import MODELS, CoordMLP, ModelSpec, build

BITS_PER_PARAM_GUESS = 6.5
MIN_BPP, MAX_BPP = 0.01, 64.0


@dataclass(frozen=True)
class EncodeOptions:
    model: str = DEFAULT_MODEL
    quality: int = DEFAULT_QUALITY
    bpp: float | None = None
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
        if self.bpp is not None and not (MIN_BPP <= self.bpp <= MAX_BPP):
            raise OptionError(f"bpp target must be in [{MIN_BPP}, {MAX_BPP}], got {self.bpp}")
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


def header_for(spec: ModelSpec, width: int, height: int) -> Header:
    return Header(width=width, height=height, channels=spec.channels,
                  model=bitstream.MODEL_IDS[spec.name], layers=spec.layers, hidden=spec.hidden,
                  enc_a=spec.enc_a, enc_b=spec.enc_b, seed=spec.seed)


def spec_from_header(h: Header) -> ModelSpec:
    return ModelSpec(h.model_name, h.layers, h.hidden, h.channels, h.enc_a, h.enc_b, h.seed)


def steps_for_bits(model: CoordMLP, bits: float) -> list[int]:
    return [quant.step_index_for_bits(t, bits) for t in model.coded_tensors()]


def code_model(model: CoordMLP, step_idx: list[int], width: int, height: int) -> bytes:
    """Quantize, entropy-code and pack ``model``: the complete ``.inr`` file."""
    codes = [quant.quantize(t, quant.step_from_index(i)) for t, i in zip(model.coded_tensors(), step_idx)]
    params, words = entropy.encode(codes)
    records = [TensorRecord(i, th, k) for i, (th, k) in zip(step_idx, params)]
    payload = bitstream.pack_payload(records, words)
    return bitstream.pack(header_for(model.spec, width, height), payload)


def estimated_bytes(model: CoordMLP, bits: float) -> float:
    """Ideal coded size (bytes) at bit depth ``bits``: entropy bound plus side information."""
    total = 0.0
    for t in model.coded_tensors():
        codes = quant.quantize(t, quant.step_from_index(quant.step_index_for_bits(t, bits)))
        total += entropy.choose_theta(codes)[2]
    n = len(model.linears)
    return total / 8 + bitstream.OVERHEAD + n * bitstream.RECORD_SIZE + 4


def search_bits(model: CoordMLP, target_bytes: float, exact: bool = False) -> float:
    """Bit depth whose coded size is closest to ``target_bytes`` (bisection in [1, 16])."""
    def size(b: float) -> float:
        if exact:
            return len(code_model(model, steps_for_bits(model, b), 1, 1))
        return estimated_bytes(model, b)

    lo, hi = 1.0, 16.0
    best = (math.inf, 8.0)
    for _ in range(18):
        mid = 0.5 * (lo + hi)
        s = size(mid)
        best = min(best, (abs(s - target_bytes), mid))
        if s > target_bytes:
            hi = mid
        else:
            lo = mid
    return best[1]


def encode_array(image: np.ndarray, opts: EncodeOptions = EncodeOptions()) -> EncodeResult:
    """Encode a float32 ``(H, W, C)`` image in ``[0, 1]``."""
    from .decoder import decode_to_array

    opts.validate()
    t_start = time.perf_counter()
    h, w, c = image.shape
    device = pick_device(opts.device)
    torch.manual_seed(opts.seed)
    n_tensors = FAMILIES[opts.model].layers + 1
    side = bitstream.OVERHEAD + n_tensors * bitstream.RECORD_SIZE
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
    chosen: dict[str, float] = {"bits": float(bits_for_quality(opts.quality))}

    def qat_steps(m: CoordMLP) -> list[float]:
        if target_bytes is not None:
            chosen["bits"] = search_bits(m.cpu(), target_bytes)
            m.to(device)
        return [quant.step_from_index(i) for i in steps_for_bits(m, chosen["bits"])]

    result = fit(model, image, cfg, device, step_indices=qat_steps, quiet=opts.quiet)
    model = model.cpu()
    data = code_model(model, steps_for_bits(model, chosen["bits"]), w, h)
    if target_bytes is not None and abs(len(data) - target_bytes) > 0.1 * target_bytes:
        chosen["bits"] = search_bits(model, target_bytes, exact=True)
        data = code_model(model, steps_for_bits(model, chosen["bits"]), w, h)
    decoded = decode_to_array(data)
    psnr = _psnr_vs_source(decoded, image)
    return EncodeResult(data=data, width=w, height=h, channels=c, model=opts.model,
                        device=device.type, seconds=time.perf_counter() - t_start,
                        steps=result.steps, psnr=psnr, params=spec.num_params(),
                        stats={"fit_seconds": round(result.seconds, 3), "bits": round(chosen["bits"], 3),
                               "hidden": spec.hidden, "layers": spec.layers})


def _psnr_vs_source(decoded: np.ndarray, image: np.ndarray) -> float:
    from .metrics import psnr

    return psnr(decoded, color.to_uint8(image))
