"""Probe for a future format: what the post filter gains when it sees the latent levels apart.

The format-v7 post filter (:mod:`codec.postfilter`) reads the native YCbCr rendering ``y``, the sum
of every level's sampled contribution.  This probe fits the same two-layer 3x3 network (8 hidden
channels, same Adam schedule on 256x256 crops) to two inputs and measures the written-file
quantities of each on hybrid files the encoder writes:

* ``sum``: ``y`` (3 channels), the filter of format v7;
* ``levels``: the contributions of level 0, level 1, level 2 and levels 3+ apart (12 channels), as
  Cool-chic's synthesis reads its upsampled latents apart (Ladune et al., ICCV 2023).

Both outputs are added to ``y``.  Weights are quantized as the encoder does (about 6 bits, one
table step per tensor) and their bytes counted in format v7's code; PSNR is on the 8-bit RGB
output at the native size; ``dJ`` is the change of ``D + lambda R`` (lambda of the file's own
quality, the encoder's) against the file without a filter.  Decoder cost: ``sum`` 432 MACs per
pixel, ``levels`` 1,080 plus three more native renderings.  Nothing here is used by the codec.

    python benchmarks/postfilter_inputs.py ../shared/data/kodak/kodim{01,08,19,23}.png \\
        --qualities 40,70,95 --preset fast --out benchmarks/results/postfilter_inputs.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

import codec
from codec import bitstream, color, decoder, encoder, imageio, postfilter, quant, rdoq
from codec.models import PostFilter
from codec.synthesis import LatentRenderer

GROUPS = ((0,), (1,), (2,), None)  # None: levels 3 and coarser together
HIDDEN = 8


def contributions(data: bytes) -> list[np.ndarray]:
    """Native-size YCbCr contributions of each level group of ``data`` (its post filter left out)."""
    p = decoder.parse(data)
    planes = decoder.latent_planes(dataclasses.replace(p, post=bitstream.PostFilterRecord()))
    h, w = p.spec.level_shapes()[0]
    out = []
    for group in GROUPS:
        keep = set(group) if group is not None else set(range(3, len(planes)))
        sel = [g if i in keep else np.zeros_like(g) for i, g in enumerate(planes)]
        out.append(LatentRenderer(sel, p.spec.kernel).ycc_rows(0, h, w, h))
    return out


def quantized(tensors: list[np.ndarray], inputs: int) -> tuple[int, PostFilter]:
    """Bytes of fitted ``[W1, b1, W2, b2]`` in format v7's post-filter code, and the filter with its
    weights quantized as the encoder quantizes them (:func:`codec.postfilter.quantize`)."""
    rec = postfilter.quantize(tensors)
    bits = 1 + bitstream.POST_HIDDEN_BITS + sum(8 + bitstream.POST_ORDER_BITS + bitstream.post_value_bits(c, k)
                                               for c, k in zip(rec.codes, rec.orders))
    net = PostFilter(3, rec.hidden, inputs)
    net.load_coded_tensors(np.asarray(c, dtype=np.float32) * np.float32(quant.step_from_index(s))
                           for c, s in zip(rec.codes, rec.steps))
    return math.ceil(bits / 8), net


def sse(ycc: torch.Tensor, target: torch.Tensor, colour: int) -> float:
    """Squared error of the 8-bit RGB output, in [0, 1] units (``colour``: the file's colour word)."""
    rgb = torch.einsum("ij,jhw->ihw", rdoq.colour_matrix(3, None, colour), ycc - rdoq.colour_centre(3, None, colour)[:, None, None])
    return float(((color.quantize_uint8(rgb) - target) ** 2).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--qualities", default="40,70,95")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = []
    for path in args.images:
        img = imageio.as_array(path)
        target = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)  # [0, 1]
        for q in (int(v) for v in args.qualities.split(",")):
            r = codec.encode_image(img, preset=args.preset, quality=q, quiet=True)
            data = r.data  # the latents alone: a post filter the preset fitted is taken out
            if decoder.parse(data).post.hidden:
                data = encoder.with_post_filter(data, bitstream.PostFilterRecord())
            lam = r.stats["lambda"]
            parts = [torch.from_numpy(c) for c in contributions(data)]
            y = sum(parts)
            n = target.numel()
            colour = decoder.parse(data).spec.colour
            d0 = sse(y, target, colour)
            j0 = d0 + lam * 8 * len(data)
            row = {"image": Path(path).name, "quality": q, "bytes": len(data),
                   "psnr": round(10 * math.log10(n / d0), 3)}
            for name, feat in (("sum", y), ("levels", torch.cat(parts))):
                t = time.perf_counter()
                tensors = postfilter.fit(y, target, rdoq.colour_matrix(3, None, colour), rdoq.colour_centre(3, None, colour), HIDDEN,
                                         args.steps, features=feat)
                nbytes, net = quantized(tensors, feat.shape[0])
                with torch.no_grad():
                    d = sse(y + net(feat[None])[0], target, colour)
                row[name] = {"filter_bytes": nbytes, "dpsnr": round(10 * math.log10(d0 / d), 3),
                             "dJ_percent": round(100 * (d + lam * 8 * (len(data) + nbytes) - j0) / j0, 3),
                             "fit_seconds": round(time.perf_counter() - t, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({
            "code_version": codec.__version__, "machine": platform.platform(), "torch": torch.__version__,
            "preset": args.preset, "steps": args.steps, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
