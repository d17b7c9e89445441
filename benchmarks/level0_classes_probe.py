"""Probe (not used by the codec): would *classified* level-0 filters pay?

Format v8 sends one point-symmetric level filter per level and channel (:mod:`codec.finefilter`).
The 0.14.3 session's image-by-image comparison with JPEG 2000 suggested atoms elongated along an
edge, i.e. several level-0 filters chosen by a class the decoder can compute without side
information, as VVC's adaptive loop filter classifies 4x4 blocks by gradient direction.  This
probe measures the most such filters could remove at fixed latents: from a written file it takes
the level-0 codes, the residual the other levels (through their own filters) leave in the coded
colour space, and fits radius-3 filters by least squares

* ``orient-N``: one filter per class of the *output* pixel, the class from the structure tensor
  of the coarse levels' luma rendering (N orientation bins plus one flat/incoherent class); and
* ``atom-orient-N``: the same classes at each *latent's* position (each latent's atom is its
  class's filter; the atoms are fitted jointly), and
* ``atom-mag``: two classes by the latent's own magnitude (1, or 2 and more); ``atom-parent``:
  whether the latent's sign opposes its parent's on level 1.

It reports each fit's PSNR gain over the single filter refitted the same way, before the side
information of the extra filters (about 20 bytes per filter and channel) and without RDOQ through
them.  Usage::

    .venv/bin/python benchmarks/level0_classes_probe.py FILE.inr ... --images ../shared/data/kodak \
        --out benchmarks/results/level0_classes_probe.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from codec import bitstream, color, decoder, finefilter
from codec.synthesis import LatentRenderer

RADIUS = 3


def orientation_classes(luma: np.ndarray, bins: int, sigma: float = 1.5, flat_quantile: float = 0.25,
                        min_coherence: float = 0.3) -> np.ndarray:
    """Per pixel: 0 for flat or incoherent structure, else 1 + the gradient direction's bin."""
    gy, gx = np.gradient(luma.astype(np.float64))
    jxx, jyy, jxy = (ndimage.gaussian_filter(a, sigma) for a in (gx * gx, gy * gy, gx * gy))
    trace = jxx + jyy
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / np.maximum(trace, 1e-12)
    theta = 0.5 * np.arctan2(2 * jxy, jxx - jyy)
    cls = np.floor((theta + np.pi / 2) / np.pi * bins + 0.5).astype(np.int64) % bins + 1
    cls[(trace <= np.quantile(trace, flat_quantile)) | (coherence < min_coherence)] = 0
    return cls


def _lsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xtx = x.T @ x
    k = np.linalg.lstsq(xtx + 1e-9 * np.trace(xtx) * np.eye(len(xtx)), x.T @ y, rcond=None)[0]
    return np.rint(k * finefilter.SCALE) / finefilter.SCALE  # the codec's tap precision


def sse_output_classes(q0: np.ndarray, y: np.ndarray, cls: np.ndarray) -> float:
    x = finefilter.design(q0, RADIUS, dtype=np.float64)
    pred = np.zeros_like(y)
    for c in np.unique(cls):
        sel = cls.reshape(-1) == c
        if sel.sum() > 4 * x.shape[1]:
            pred[sel] = x[sel] @ _lsq(x[sel], y[sel])
    return float(((pred - y) ** 2).sum())


def sse_atom_classes(q0: np.ndarray, y: np.ndarray, cls: np.ndarray) -> float:
    x = np.concatenate([finefilter.design(q0 * (cls == c), RADIUS, dtype=np.float64) for c in np.unique(cls)], axis=1)
    return float(((x @ _lsq(x, y) - y) ** 2).sum())


def probe(path: Path, images: Path) -> dict:
    data = path.read_bytes()
    p = decoder.parse(data)
    spec, c = p.spec, p.spec.channels
    codes = decoder.hybrid_codes(p)
    # the dequantized latents without the level filters (and without a post filter)
    planes = decoder.latent_planes(dataclasses.replace(p, filters=[], post=bitstream.PostFilterRecord()))
    filtered = finefilter.apply_levels(planes, p.filters)
    h, w = spec.level_shapes()[0]
    coarse = LatentRenderer(filtered[1:], spec.kernel).ycc_rows(0, h, w, h)
    name = path.stem.split("-")[0]
    rgb = np.asarray(Image.open(images / f"{name}.png").convert("RGB"), dtype=np.float32) / 255
    f, _, centre = color.matrices(spec.colour)
    resid = np.moveaxis(rgb @ f.T + centre, -1, 0) - coarse
    luma_classes = {b: orientation_classes(coarse[0], b) for b in (4, 8)}
    sse: dict[str, float] = {}
    untouched = 0.0
    for ch in range(c):
        q0, y = planes[0][ch], resid[ch].reshape(-1).astype(np.float64)
        if not q0.any():  # no latent to filter: the same error under every fit
            untouched += float((y ** 2).sum())
            continue
        qi = codes[0][ch]
        parent = np.repeat(np.repeat(codes[1][ch], 2, 0), 2, 1)[:h, :w]
        got = {"single": sse_output_classes(q0, y, np.zeros((h, w), np.int64))}
        for b, cls in luma_classes.items():
            got[f"orient-{b}"] = sse_output_classes(q0, y, cls)
            got[f"atom-orient-{b}"] = sse_atom_classes(q0, y, cls)
        got["atom-mag"] = sse_atom_classes(q0, y, (np.abs(qi) >= 2).astype(np.int64))
        got["atom-parent"] = sse_atom_classes(q0, y, (np.sign(parent) * np.sign(qi) < 0).astype(np.int64))
        for key, value in got.items():
            sse[key] = sse.get(key, 0.0) + value
    # a rotation's components each weigh the RGB error equally (||rgb||^2 = 3 ||t||^2); YCbCr does not,
    # so the gains below are in the coded space's squared error
    if not sse:  # level 0 empty (low rates): nothing for any level-0 filter to do
        return {"file": path.name, "bytes": len(data), "bpp": 8 * len(data) / (h * w), "gain_db": None}
    sse = {k: v + untouched for k, v in sse.items()}
    base = sse["single"]
    return {"file": path.name, "bytes": len(data), "bpp": 8 * len(data) / (h * w),
            "gain_db": {k: round(10 * math.log10(base / v), 4) for k, v in sse.items() if k != "single"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--images", type=Path, required=True, help="folder of the originals (NAME.png for NAME-*.inr)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = []
    for path in args.files:
        row = probe(path, args.images)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
