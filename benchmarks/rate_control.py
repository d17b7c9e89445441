"""How close ``--bpp X`` (or ``--psnr X``) lands to X: encode images at several targets, report the
real file's bpp (or PSNR).

    .venv/bin/python benchmarks/rate_control.py ../shared/data/kodak --targets 0.1,0.25,0.5,1,2 \\
        --preset fast --out benchmarks/results/rate_control.json
    .venv/bin/python benchmarks/rate_control.py ../shared/data/kodak --metric psnr --targets 28,32,36,40 \\
        --preset fast --out benchmarks/results/quality_control.json

Every bpp is the written file's size (header included) x 8 / (W x H), every PSNR the decoded 8-bit
image's, over all its channels.  The error is relative for bpp (``bpp / X - 1``) and in dB for PSNR.
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
from codec import imageio, runtime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", help="folder of images")
    ap.add_argument("--targets", default="0.1,0.25,0.5,1,2")
    ap.add_argument("--metric", choices=["bpp", "psnr"], default="bpp", help="what the targets are")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--limit", type=int, default=None, help="first N images only (after --skip)")
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N images")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 when two runs share 2 cores)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    threads = runtime.set_threads(args.threads)
    targets = [float(t) for t in args.targets.split(",")]
    paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() == ".png")[args.skip:]
    paths = paths[: args.limit]
    rows = []
    for path in paths:
        img = imageio.to_array(imageio.open_image(path))
        for t in targets:
            t0 = time.perf_counter()
            r = codec.encode_image(img, preset=args.preset, **{args.metric: t})
            error = r.bpp / t - 1 if args.metric == "bpp" else r.psnr - t
            rows.append({"image": path.name, "target": t, "bpp": round(r.bpp, 5), "psnr": round(r.psnr, 3),
                         "error": round(error, 4), "passes": r.stats.get("passes"),
                         "seconds": round(time.perf_counter() - t0, 2)})
            shown = f"{100 * error:+.1f} %" if args.metric == "bpp" else f"{error:+.2f} dB"
            print(f"{path.name} target {t:<5} -> {r.bpp:.4f} bpp, {r.psnr:.2f} dB ({shown}), "
                  f"{rows[-1]['seconds']:.1f} s", flush=True)
    errors = [abs(r["error"]) for r in rows]
    band = 0.10 if args.metric == "bpp" else 0.5
    summary = {"metric": args.metric, "preset": args.preset, "targets": targets, "images": len(paths), "encodes": len(rows),
               "max_abs_error": max(errors), "median_abs_error": statistics.median(errors),
               ("within_10_percent" if args.metric == "bpp" else "within_0.5_dB"): sum(e <= band for e in errors),
               "per_target_max_abs_error": {str(t): max(abs(r["error"]) for r in rows if r["target"] == t)
                                            for t in targets},
               "median_seconds": float(np.median([r["seconds"] for r in rows])), "threads": threads,
               "machine": f"{platform.machine()}, {platform.system()}", "version": codec.__version__}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
