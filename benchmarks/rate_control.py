"""How close ``--bpp X`` lands to X: encode images at several targets, report the real file's bpp.

    .venv/bin/python benchmarks/rate_control.py ../shared/data/kodak --targets 0.1,0.25,0.5,1,2 \\
        --preset fast --out benchmarks/results/rate_control.json

Every figure is the written file's size (header included) x 8 / (W x H).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

import codec
from codec import imageio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", help="folder of images")
    ap.add_argument("--targets", default="0.1,0.25,0.5,1,2")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--limit", type=int, default=None, help="first N images only (after --skip)")
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N images")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    targets = [float(t) for t in args.targets.split(",")]
    paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() == ".png")[args.skip:]
    paths = paths[: args.limit]
    rows = []
    for path in paths:
        img = imageio.to_array(imageio.open_image(path))
        for t in targets:
            t0 = time.perf_counter()
            r = codec.encode_image(img, bpp=t, preset=args.preset)
            rows.append({"image": path.name, "target": t, "bpp": round(r.bpp, 5), "psnr": round(r.psnr, 3),
                         "error": round(r.bpp / t - 1, 4), "seconds": round(time.perf_counter() - t0, 2)})
            print(f"{path.name} target {t:<5} -> {r.bpp:.4f} bpp ({100 * (r.bpp / t - 1):+.1f} %), "
                  f"{r.psnr:.2f} dB, {rows[-1]['seconds']:.1f} s", flush=True)
    errors = [abs(r["error"]) for r in rows]
    summary = {"preset": args.preset, "targets": targets, "images": len(paths), "encodes": len(rows),
               "max_abs_error": max(errors), "median_abs_error": statistics.median(errors),
               "within_10_percent": sum(e <= 0.10 for e in errors),
               "per_target_max_abs_error": {str(t): max(abs(r["error"]) for r in rows if r["target"] == t)
                                            for t in targets},
               "median_seconds": float(np.median([r["seconds"] for r in rows])),
               "machine": f"{platform.machine()}, {platform.system()}", "version": codec.__version__}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
