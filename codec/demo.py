"""``inrc demo``: the main job on an embedded image (scikit-image's astronaut, 512x512).

Encodes with the default settings, decodes at native size and at 2x, and puts the result next to
JPEG (Pillow, ``optimize=True``, 4:2:0) at the quality whose file size is closest to ours.
"""
from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import api, imageio, metrics


def jpeg_at_size(rgb: np.ndarray, target_bytes: int) -> tuple[int, int, float]:
    """``(quality, bytes, psnr)`` of the Pillow JPEG whose size is closest to ``target_bytes``."""
    img = Image.fromarray(rgb)
    best = None
    for q in range(1, 96):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=q, optimize=True, subsampling=2)
        n = buf.tell()
        if best is None or abs(n - target_bytes) < abs(best[1] - target_bytes):
            dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            best = (q, n, metrics.psnr(dec, rgb))
        if n > 2 * target_bytes:
            break
    return best


def run_demo(out_dir: Path, steps: int | None = None, quiet: bool = False) -> dict:
    import skimage.data

    out_dir.mkdir(parents=True, exist_ok=True)
    rgb = skimage.data.astronaut()
    h, w = rgb.shape[:2]
    src = out_dir / "astronaut.png"
    imageio.save_image(Image.fromarray(rgb), src)
    res = api.encode_image(rgb, steps=steps, quiet=quiet)
    inr = out_dir / "astronaut.inr"
    imageio.write_bytes(inr, res.data)
    t0 = time.perf_counter()
    native = api.decode(res.data)
    t_native = time.perf_counter() - t0
    imageio.save_image(native, out_dir / "astronaut.decoded.png")
    big = api.decode(res.data, scale=2.0)
    imageio.save_image(big, out_dir / "astronaut.2x.png")
    psnr = metrics.psnr(np.asarray(native), rgb)
    q, jbytes, jpsnr = jpeg_at_size(rgb, res.bytes)
    d = {"image": "skimage.data.astronaut", "width": w, "height": h, "model": res.model,
         "device": res.device, "encode_seconds": round(res.seconds, 2), "steps": res.steps,
         "bytes": res.bytes, "bpp": round(res.bpp, 4), "psnr": round(psnr, 2),
         "decode_seconds": round(t_native, 3), "upscaled": f"{big.width}x{big.height}",
         "jpeg_quality": q, "jpeg_bytes": jbytes, "jpeg_bpp": round(jbytes * 8 / (w * h), 4),
         "jpeg_psnr": round(jpsnr, 2), "out_dir": str(out_dir)}
    d["lines"] = [
        f"astronaut {w}x{h}, model {res.model} on {res.device}, {res.steps} steps in {res.seconds:.1f} s",
        f"  inrc : {res.bytes:6d} bytes  {res.bpp:.3f} bpp  PSNR {psnr:.2f} dB  (decoded in {t_native:.2f} s)",
        f"  JPEG : {jbytes:6d} bytes  {d['jpeg_bpp']:.3f} bpp  PSNR {jpsnr:.2f} dB  (Pillow quality {q}, same size)",
        f"  files: {inr}, {out_dir / 'astronaut.decoded.png'}, {out_dir / 'astronaut.2x.png'} ({big.width}x{big.height})",
    ]
    return d
