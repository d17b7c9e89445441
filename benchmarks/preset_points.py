"""Encode single (image, quality) points with one preset and compare them point by point, in the
cost the encoder minimises, with earlier ``inrc bench`` runs: where a 24-image run is hours, the
points where a change should matter can be checked in minutes.

    .venv/bin/python benchmarks/preset_points.py --preset slow --dir ../shared/data/kodak \\
        --points kodim05:55,kodim14:85,kodim23:55 \\
        --ref medium0240=benchmarks/results/kodak-medium-0.24.0:inrc-medium --jobs 2 --out /tmp/points.csv

Each point is encoded and measured by ``inrc bench``'s own :func:`codec.bench.run_task` (one
process per job, ``torch`` threads shared out by :func:`codec.bench.threads_per_job`): bpp of the
written file, PSNR, MS-SSIM and MSE of its decoded 8-bit RGB.  For every ``--ref`` (``LABEL=DIR[,DIR...]:CURVE``, as in
``compare_runs.py``) the script prints ``J / J_ref - 1`` with ``J = D + lambda R``
(:func:`compare_runs.cost`).  ``--out`` writes the rows as ``inrc bench`` writes ``per_image.csv``
(:func:`codec.bench.write_per_image`).
"""
from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_runs import cost, load


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
    from codec.bench import Task, run_task, threads_per_job, write_per_image

    tasks = []
    for name, q in parse_points(args.points):
        path = Path(args.dir) / f"{name}.png"
        if not path.is_file():
            raise SystemExit(f"{path}: no such image")
        tasks.append(Task(str(path), "", f"inrc-{args.preset}", str(q), json.dumps({"preset": args.preset})))
    refs = [load(spec) for spec in args.ref]
    threads = threads_per_job(args.jobs)
    with ProcessPoolExecutor(args.jobs) as ex:
        rows = list(ex.map(run_task, tasks, [threads] * len(tasks)))
    for row in rows:
        stats = row["encoder_stats"] or {}
        kept = {k: stats.get(k) for k in ("basis", "wavelet_stage", "wavelet_post_filter")}
        line = f"{row['image']} q{row['setting']}: {row['bytes']} B, {row['psnr']:.3f} dB, {row['encoding_time']:.0f} s, {kept}"
        for label, ref in refs:
            r = ref.get(row["image"], {}).get(row["setting"])
            if r is not None:
                line += f"; vs {label} {100 * (cost(row) / cost(r) - 1):+.3f} % ({r['bytes']} B)"
        print(line, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_per_image(args.out, rows)


if __name__ == "__main__":
    main()
