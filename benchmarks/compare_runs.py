"""Compare curves from several ``inrc bench`` outputs on the images they have in common.

    .venv/bin/python benchmarks/compare_runs.py \\
        slow=benchmarks/results/kodak-slow:inrc-slow \\
        medium=benchmarks/results/kodak:inrc-medium fast=benchmarks/results/kodak:inrc-fast \\
        avif=benchmarks/results/kodak-slow:avif jpeg=benchmarks/results/kodak-slow:jpeg \\
        --per-image avif --out benchmarks/results/kodak-slow/compare.json

Each argument is ``LABEL=RUN_DIR[,RUN_DIR...]:CURVE`` (a curve of those runs' ``per_image.csv``).  Only images with
every setting of every curve are used, so the points are the same means as ``inrc bench`` computes
(bpp of the real files, mean over images of per-image PSNR on 8-bit RGB), over a common image set.
Prints the BD-rate of every curve against every other (row: test, column: reference), and with
``--per-image REF`` each curve's BD-rate against ``REF`` image by image, and the encode times.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path

from codec import bench


def load(spec: str) -> tuple[str, dict[str, dict[str, dict]]]:
    """``LABEL=DIR[,DIR...]:CURVE`` -> (label, {image: {setting: row}}); several directories (runs
    of the same code on different images) are merged, a later run's row replacing an earlier's."""
    label, eq, rest = spec.partition("=")
    runs, colon, curve = rest.rpartition(":")
    if not (eq and colon and label and curve and runs):
        raise SystemExit(f"bad curve {spec!r}: use LABEL=RUN_DIR[,RUN_DIR...]:CURVE")
    rows: dict[str, dict[str, dict]] = defaultdict(dict)
    for run in runs.split(","):
        with (Path(run) / "per_image.csv").open() as f:
            for r in csv.DictReader(f):
                if r["codec"] == curve:
                    rows[r["image"]][r["setting"]] = r
    if not rows:
        raise SystemExit(f"{runs}: no rows of curve {curve!r}")
    return label, rows


NUMERIC = ("bpp", "psnr", "mse", "ms_ssim", "encoding_time", "decoding_time")


def curve(rows: dict[str, dict[str, dict]], images: list[str]) -> list[dict]:
    """The curve's points over ``images``: :func:`codec.bench.summarize` of their rows (mean bpp and
    mean per-image PSNR per setting, settings with every image only), sorted by bpp."""
    def num(v: str) -> float | None:
        return float(v) if v not in ("", None) else None

    recs = [{"image": i, "codec": "c", "setting": s, **{k: num(r[k]) for k in NUMERIC}}
            for i in images for s, r in rows[i].items()]
    return bench.summarize(recs)["c"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("curves", nargs="+", help="LABEL=RUN_DIR[,RUN_DIR...]:CURVE")
    ap.add_argument("--per-image", metavar="LABEL", help="also BD-rates image by image against this curve")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    data = dict(load(s) for s in args.curves)
    if args.per_image and args.per_image not in data:
        raise SystemExit(f"--per-image {args.per_image!r} is not one of the labels")
    n_settings = {lab: max(len(v) for v in rows.values()) for lab, rows in data.items()}
    images = sorted(set.intersection(*({i for i, v in rows.items() if len(v) == n_settings[lab]}
                                       for lab, rows in data.items())))
    if not images:
        raise SystemExit("the runs have no complete image in common")
    curves = {lab: curve(rows, images) for lab, rows in data.items()}
    table = bench.bd_table(curves)["bd_rate_percent"]
    out: dict = {"images": images,
                 "curves": {k: {"bpp": [p["bpp"] for p in v], "psnr": [p["psnr"] for p in v]} for k, v in curves.items()},
                 "bd_rate_percent": table}
    print(f"{len(images)} images: {', '.join(images)}")
    print("BD-rate % (row vs column): " + " ".join(f"{b:>9s}" for b in curves))
    for a in curves:
        print(f"{a:>26s} " + " ".join(f"{'-' if table[a][b] is None else table[a][b]:>9}" for b in curves))
    times = {}
    for lab, rows in data.items():
        t = [float(rows[i][s]["encoding_time"]) for i in images for s in rows[i]]
        times[lab] = {"median": round(statistics.median(t), 3), "min": round(min(t), 3), "max": round(max(t), 3)}
        print(f"encode s {lab}: median {times[lab]['median']}, {times[lab]['min']}-{times[lab]['max']}")
    out["encoding_time"] = times
    if args.per_image:
        ref = args.per_image
        per = {lab: {i: bench.bd_table({ref: curve(data[ref], [i]), lab: curve(data[lab], [i])})["bd_rate_percent"][lab][ref]
                     for i in images} for lab in data if lab != ref}
        out["per_image_vs"] = {"reference": ref, "bd_rate_percent": per}
        for lab, d in per.items():
            print(f"vs {ref}, {lab}: " + ", ".join(f"{i.split('.')[0]} {v}" for i, v in d.items()))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
