"""Encode single (image, quality) points with one preset and compare them point by point, in the
cost the encoder minimises, with earlier ``inrc bench`` runs: where a 24-image run is hours, the
points where a change should matter can be checked in minutes.

    .venv/bin/python benchmarks/preset_points.py --preset slow --dir ../shared/data/kodak \\
        --points kodim05:55,kodim14:85,kodim23:55 \\
        --ref medium0240=benchmarks/results/kodak-medium-0.24.0:inrc-medium --jobs 2 --out /tmp/points.csv

Each point is encoded as ``inrc bench`` encodes it (one process per job, ``torch`` threads shared
out by :func:`codec.bench.threads_per_job`) and measured on its written bytes: bpp of the file,
PSNR and MSE of the decoded 8-bit RGB.  For every ``--ref`` (``LABEL=DIR[,DIR...]:CURVE``, as in
``compare_runs.py``) the script prints ``J / J_ref - 1`` with ``J = D + lambda R``
(:func:`compare_runs.cost`).  ``--out`` writes the rows in ``per_image.csv``'s columns (with the
encoder's statistics as JSON).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_runs import cost, load

FIELDS = ["image", "codec", "setting", "bytes", "bpp", "psnr", "ms_ssim", "mse", "encoding_time", "decoding_time",
          "encoder_stats"]


def encode_point(path: str, quality: int, preset: str, threads: int) -> dict:
    """One encode of ``path`` at ``quality``, as a ``per_image.csv`` row."""
    import torch

    torch.set_num_threads(threads)
    import codec
    from codec import metrics

    image = np.asarray(Image.open(path).convert("RGB"))
    t0 = time.perf_counter()
    r = codec.encode_image(image, preset=preset, quality=quality, quiet=True)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = np.asarray(codec.decode(r.data))
    decode_seconds = time.perf_counter() - t0
    h, w = image.shape[:2]
    return {"image": Path(path).name, "codec": f"inrc-{preset}", "setting": str(quality), "bytes": len(r.data),
            "bpp": 8 * len(r.data) / (w * h), "psnr": metrics.psnr(out, image), "ms_ssim": metrics.ms_ssim(out, image),
            "mse": metrics.mse(out, image), "encoding_time": seconds, "decoding_time": decode_seconds,
            "encoder_stats": json.dumps(r.stats, sort_keys=True, default=str)}


def parse_points(text: str) -> list[tuple[str, int]]:
    """``NAME:Q[,NAME:Q...]`` -> ``[(name, q), ...]`` (``NAME`` without ``.png``)."""
    out = []
    for item in text.split(","):
        name, _, q = item.partition(":")
        if not name or not q.isdigit():
            raise SystemExit(f"--points: {item!r} is not NAME:QUALITY")
        out.append((name, int(q)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="slow", choices=["fast", "medium", "slow"])
    ap.add_argument("--dir", required=True, help="folder of the images (NAME.png)")
    ap.add_argument("--points", required=True, help="NAME:Q[,NAME:Q...]")
    ap.add_argument("--ref", action="append", default=[], help="LABEL=DIR[,DIR...]:CURVE (repeatable)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, help="CSV of the rows (per_image.csv's columns)")
    args = ap.parse_args()
    from codec.bench import threads_per_job

    points = parse_points(args.points)
    paths = [str(Path(args.dir) / f"{name}.png") for name, _ in points]
    for p in paths:
        if not Path(p).is_file():
            raise SystemExit(f"{p}: no such image")
    refs = [load(spec) for spec in args.ref]
    threads = threads_per_job(args.jobs)
    with ProcessPoolExecutor(args.jobs) as ex:
        rows = list(ex.map(encode_point, paths, [q for _, q in points], [args.preset] * len(points),
                           [threads] * len(points)))
    for row in rows:
        stats = json.loads(row["encoder_stats"])
        kept = {k: stats.get(k) for k in ("basis", "wavelet_stage", "wavelet_post_filter")}
        line = f"{row['image']} q{row['setting']}: {row['bytes']} B, {row['psnr']:.3f} dB, {row['encoding_time']:.0f} s, {kept}"
        for label, ref in refs:
            r = ref.get(row["image"], {}).get(row["setting"])
            if r is not None:
                line += f"; vs {label} {100 * (cost(row) / cost(r) - 1):+.3f} % ({r['bytes']} B)"
        print(line, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as f:
            wr = csv.DictWriter(f, FIELDS)
            wr.writeheader()
            wr.writerows(rows)


if __name__ == "__main__":
    main()
