"""Sweep of the hybrid encoder's rate-distortion multiplier factor (``HybridPreset.rdoq_lambda``).

    .venv/bin/python benchmarks/lambda_sweep.py ../shared/data/kodak/kodim{01,08,19,23}.png \\
        --preset fast --factors 0.13,0.155,0.18,0.21,0.25,0.35 --reference 0.25 \\
        --out benchmarks/results/lambda_sweep/fast.json

Every decision of a hybrid encode -- the L1 refit's penalty, RDOQ's moves, which pass, filter or round
is kept -- minimises ``D + lambda R`` with ``lambda = a Delta_0(q)^2``.  The factor ``a`` does not just
move a file along the curve (the quality does that): it sets how many latents the search zeroes at a
given step size, so it changes the curve itself.  For each factor this encodes every image at every
quality (one torch thread per process unless ``--threads``), decodes the written bytes and records
bytes, bpp and PSNR (8-bit RGB); then the BD-rate of each factor's curve against ``--reference``'s,
per image and on the mean curve (mean bpp and mean per-image PSNR per quality, as ``inrc bench``).
Encodes under a time cap (``medium``, ``slow``) depend on the machine's speed; run two factors side
by side (two processes) rather than one after the other on a loaded machine.

``--shapes G,K,S;G,K,S;...`` sweeps the preset's step-size shape instead (one shape per run, at the
preset's factor; ``HybridPreset.shapes``: level decay gamma, chroma factor kappa, Delta_0 scale), the
first shape being the reference.  Since 0.15.1 kappa is a factor on the colour space's own chroma factor
(:func:`codec.pyramid.chroma_kappa`); the runs below were made before, when it was the factor itself::

    .venv/bin/python benchmarks/lambda_sweep.py ../shared/data/kodak/kodim{01,08,19,23,09,12}.png \
        --preset fast --shapes "1,1.5,1;0.85,1.5,1;0.7,1.5,1" \
        --out benchmarks/results/lambda_sweep/fast-shapes-gamma.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

import codec
from codec import config, imageio
from codec.bdrate import bd_rate


def encode_all(paths: list[Path], preset: str, factor: float, qualities: list[int],
               shape: tuple[float, float, float] | None = None) -> list[dict]:
    """One record per image and quality for ``preset`` with ``rdoq_lambda = factor`` (and, given a
    ``shape``, that step-size shape alone)."""
    saved = config.HYBRID_PRESETS[preset]
    change = {"rdoq_lambda": factor} if shape is None else {"rdoq_lambda": factor, "shapes": (shape,)}
    config.HYBRID_PRESETS[preset] = dataclasses.replace(saved, **change)
    try:
        out = []
        for path in paths:
            img = imageio.as_array(path)
            for q in qualities:
                t0 = time.perf_counter()
                r = codec.encode_image(img, preset=preset, basis="pyramid", quality=q, quiet=True)
                rec = {"image": path.name, "quality": q, "bytes": len(r.data),
                       "bpp": len(r.data) * 8 / (img.shape[0] * img.shape[1]), "psnr": r.psnr,
                       "seconds": round(time.perf_counter() - t0, 2)}
                out.append(rec)
                print(json.dumps({"factor": factor, "shape": shape, **rec}), flush=True)
        return out
    finally:
        config.HYBRID_PRESETS[preset] = saved


def compare(ref: list[dict], test: list[dict]) -> dict:
    """BD-rate (%) of ``test`` against ``ref``: per image, their mean, and on the mean curve."""
    per = {}
    for name in sorted({r["image"] for r in ref}):
        a = [r for r in ref if r["image"] == name]
        b = [r for r in test if r["image"] == name]
        per[name] = round(bd_rate([r["bpp"] for r in a], [r["psnr"] for r in a],
                                  [r["bpp"] for r in b], [r["psnr"] for r in b]), 3)
    qs = sorted({r["quality"] for r in ref})

    def mean(rows: list[dict], key: str) -> list[float]:
        return [float(np.mean([r[key] for r in rows if r["quality"] == q])) for q in qs]
    curve = bd_rate(mean(ref, "bpp"), mean(ref, "psnr"), mean(test, "bpp"), mean(test, "psnr"))
    return {"per_image": per, "mean_per_image": round(float(np.mean(list(per.values()))), 3),
            "mean_curve": round(curve, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--preset", default="fast", choices=sorted(config.HYBRID_PRESETS))
    ap.add_argument("--factors", default="0.18,0.25", help="comma-separated factors a of lambda = a Delta_0^2")
    ap.add_argument("--reference", type=float, default=config.RDOQ_LAMBDA, help="the factor the others are compared with")
    ap.add_argument("--shapes", help="sweep step-size shapes G,K,S separated by ';' instead (the first is the reference)")
    ap.add_argument("--qualities", default="40,55,70,85,95")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    factors = [float(x) for x in a.factors.split(",")]
    if a.reference not in factors:
        factors.append(a.reference)
    qualities = [int(x) for x in a.qualities.split(",")]
    lam = config.HYBRID_PRESETS[a.preset].rdoq_lambda
    if a.shapes:  # one run per shape at the preset's factor, keyed "G,K,S"; the first is the reference
        shapes = [tuple(float(v) for v in sh.split(",")) for sh in a.shapes.split(";")]
        runs = {",".join(f"{v:g}" for v in sh): encode_all(a.images, a.preset, lam, qualities, sh) for sh in shapes}
        ref, reference, label, extra = next(iter(runs)), next(iter(runs)), "shape", {"rdoq_lambda": lam}
    else:
        runs = {str(f): encode_all(a.images, a.preset, f, qualities) for f in factors}
        ref, reference, label, extra = str(a.reference), a.reference, "a =", {}
    result = {"preset": a.preset, "qualities": qualities, "reference": reference, "threads": a.threads, **extra,
              "inrc": codec.__version__, "records": runs,
              "bd_rate_vs_reference": {k: compare(runs[ref], v) for k, v in runs.items() if k != ref}}
    for k, d in result["bd_rate_vs_reference"].items():
        print(f"{label} {k}: BD-rate vs {label} {ref}: mean per image {d['mean_per_image']} %, "
              f"mean curve {d['mean_curve']} %, per image {d['per_image']}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
