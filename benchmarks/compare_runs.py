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
When a run's ``summary.json`` has a speed probe (``inrc bench`` since 0.16.0), it is printed
too: the presets are time-capped, so runs on a slower machine are cut short.
``--cost REF,LABEL[,LABEL...]`` compares hybrid curves (settings = qualities) with ``REF`` point by
point in the cost the encoder minimises, ``D + lambda R`` (:func:`cost`): how many points are worse,
the median and the extremes of ``J / J_REF - 1``.  When the common images are the 24 Kodak images,
every curve is also compared with the published curves of ``--anchors`` (default
``codec/data/anchors_kodak.csv``: VTM, Cool-chic, C3, BPG, COIN, Strümpler et al.;
:func:`codec.bench.bd_vs_anchors`).  ``--points IMAGE:BPP:PSNR[,...]`` compares every curve with
single points of another codec on single images (:func:`vs_points`), where no curve is available
(issue 5's Cool-chic encodes cut to five minutes).  ``--plot PNG`` draws the merged curves (PSNR and
MS-SSIM against bpp, with the published curves on the 24 Kodak images) as :func:`codec.bench.plot`
draws a run's ``rd.png``; a label starting with ``inrc`` is drawn as one of ours.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from codec import InrcError, bench
from codec.config import RDOQ_LAMBDA
from codec.encoder import hybrid_delta0


def split(spec: str) -> tuple[str, list[str], str]:
    """``LABEL=DIR[,DIR...]:CURVE`` -> (label, run directories, curve)."""
    label, eq, rest = spec.partition("=")
    runs, colon, curve = rest.rpartition(":")
    if not (eq and colon and label and curve and runs):
        raise SystemExit(f"bad curve {spec!r}: use LABEL=RUN_DIR[,RUN_DIR...]:CURVE")
    return label, runs.split(","), curve


def load(spec: str) -> tuple[str, dict[str, dict[str, dict]]]:
    """``LABEL=DIR[,DIR...]:CURVE`` -> (label, {image: {setting: row}}); several directories (runs
    of the same code on different images) are merged, a later run's row replacing an earlier's."""
    label, runs, curve = split(spec)
    rows: dict[str, dict[str, dict]] = defaultdict(dict)
    for run in runs:
        with (Path(run) / "per_image.csv").open() as f:
            for r in csv.DictReader(f):
                if r["codec"] == curve:
                    rows[r["image"]][r["setting"]] = r
    if not rows:
        raise SystemExit(f"{','.join(runs)}: no rows of curve {curve!r}")
    return label, rows


NUMERIC = ("bpp", "psnr", "mse", "ms_ssim", "encoding_time", "decoding_time")


def speed_probes(spec: str) -> dict[str, float]:
    """The speed probe (the fastest time of ``inrc bench``'s fixed encode, since 0.16.0) of each run
    directory of a ``LABEL=DIR[,DIR...]:CURVE`` argument that has one in its ``summary.json``."""
    out = {}
    for run in split(spec)[1]:
        try:
            probe = json.loads((Path(run) / "summary.json").read_text())["machine"]["speed_probe"]["min"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        out[run] = probe
    return out


def curve(rows: dict[str, dict[str, dict]], images: list[str]) -> list[dict]:
    """The curve's points over ``images``: :func:`codec.bench.summarize` of their rows (mean bpp and
    mean per-image PSNR per setting, settings with every image only), sorted by bpp."""
    def num(v: str) -> float | None:
        return float(v) if v not in ("", None) else None

    recs = [{"image": i, "codec": "c", "setting": s, **{k: num(r[k]) for k in NUMERIC}}
            for i in images for s, r in rows[i].items()]
    return bench.summarize(recs)["c"]


def cost(row: dict, channels: int = 3) -> float:
    """``J = D + lambda R`` of one hybrid point as its encoder minimises it: ``D`` the squared error of
    the 8-bit RGB output in [0, 1] units (``mse / 255^2 x pixels x channels``; pixels = ``8 bytes /
    bpp``), ``R`` the file's bits, ``lambda = RDOQ_LAMBDA x Delta_0(q)^2`` for the row's setting ``q``
    (:func:`codec.encoder.hybrid_delta0`)."""
    try:
        quality = int(row["setting"])
    except ValueError:
        raise SystemExit(f"--cost: setting {row['setting']!r} is not a quality") from None
    nbytes = float(row["bytes"])
    lam = RDOQ_LAMBDA * hybrid_delta0(quality) ** 2
    return float(row["mse"]) / 255**2 * (8 * nbytes / float(row["bpp"])) * channels + lam * 8 * nbytes


def cost_vs(test: dict[str, dict[str, dict]], ref: dict[str, dict[str, dict]], images: list[str]) -> dict:
    """Point by point ``J_test / J_ref - 1`` (:func:`cost`) over ``images`` and the settings both have."""
    rel = {f"{i}:{s}": cost(test[i][s]) / cost(ref[i][s]) - 1 for i in images for s in test[i] if s in ref[i]}
    if not rel:
        raise SystemExit("--cost: the curves have no setting in common")
    v = list(rel.values())
    return {"points": len(v), "worse": sum(x > 0 for x in v), "median_percent": round(100 * statistics.median(v), 3),
            "min_percent": round(100 * min(v), 3), "max_percent": round(100 * max(v), 3),
            "per_point_percent": {k: round(100 * x, 3) for k, x in rel.items()}}


def parse_points(text: str) -> list[tuple[str, float, float]]:
    """``IMAGE:BPP:PSNR[,IMAGE:BPP:PSNR...]`` -> ``[(image, bpp, psnr), ...]``."""
    out = []
    for item in text.split(","):
        parts = item.split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            out.append((parts[0], float(parts[1]), float(parts[2])))
        except ValueError:
            raise SystemExit(f"--points: bad point {item!r}: use IMAGE:BPP:PSNR") from None
    return out


def vs_points(rows: dict[str, dict[str, dict]], points: list[tuple[str, float, float]]) -> list[dict]:
    """Per point ``(image, bpp, psnr)``: the rate this curve needs for the point's PSNR, as a percentage
    above the point's (``rate_percent``), and the PSNR it reaches at the point's rate (``psnr``), both
    by linear interpolation of log bpp against PSNR between the image's own points (``None`` outside
    them, or where the image is not in the curve)::

        log r(P) = interpolation of log bpp_i at P,   rate_percent = 100 (r(P_point) / bpp_point - 1)

    A single point is not a curve, so this is no BD-rate: it says where the point lies against the
    curve, at that rate and that quality only."""
    res = []
    for image, bpp, psnr in points:
        pts = sorted((float(r["bpp"]), float(r["psnr"])) for r in rows.get(image, {}).values())
        rate = quality = None
        if len(pts) >= 2:
            lr = [math.log(b) for b, _ in pts]
            ps = [p for _, p in pts]
            if lr[0] <= math.log(bpp) <= lr[-1]:
                quality = round(float(np.interp(math.log(bpp), lr, ps)), 3)
            by_psnr = sorted(zip(ps, lr))
            if by_psnr[0][0] <= psnr <= by_psnr[-1][0]:
                r = math.exp(float(np.interp(psnr, [p for p, _ in by_psnr], [x for _, x in by_psnr])))
                rate = round(100 * (r / bpp - 1), 2)
        res.append({"image": image, "bpp": bpp, "psnr_point": psnr, "rate_percent": rate, "psnr": quality})
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("curves", nargs="+", help="LABEL=RUN_DIR[,RUN_DIR...]:CURVE")
    ap.add_argument("--per-image", metavar="LABEL", help="also BD-rates image by image against this curve")
    ap.add_argument("--cost", metavar="REF,LABEL[,LABEL...]",
                    help="also D + lambda R point by point of these hybrid curves against the first")
    ap.add_argument("--anchors", help="CSV of published Kodak curves (default: codec/data/anchors_kodak.csv)")
    ap.add_argument("--points", metavar="IMAGE:BPP:PSNR[,...]",
                    help="also every curve against these single points of another codec (vs_points)")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--plot", metavar="PNG", help="draw the curves (and the published ones on Kodak) here")
    ap.add_argument("--title", default="", help="the figure's title (with --plot)")
    args = ap.parse_args()
    try:
        published = bench.published_curves(args.anchors)
    except InrcError as e:
        raise SystemExit(str(e)) from None
    points = parse_points(args.points) if args.points else []
    data = dict(load(s) for s in args.curves)
    cost_labels = args.cost.split(",") if args.cost else []
    if args.cost and len(cost_labels) < 2:
        raise SystemExit("--cost needs a reference and at least one curve: REF,LABEL[,LABEL...]")
    for opt, lab in [("--per-image", args.per_image)] + [("--cost", lab) for lab in cost_labels]:
        if lab and lab not in data:
            raise SystemExit(f"{opt} {lab!r} is not one of the labels")
    n_settings = {lab: max(len(v) for v in rows.values()) for lab, rows in data.items()}
    images = sorted(set.intersection(*({i for i, v in rows.items() if len(v) == n_settings[lab]}
                                       for lab, rows in data.items())))
    if not images:
        raise SystemExit("the runs have no complete image in common")
    curves = {lab: curve(rows, images) for lab, rows in data.items()}
    table = bench.bd_table(curves)["bd_rate_percent"]
    ms_table = bench.bd_table_ms_ssim(curves)["bd_rate_percent_ms_ssim"]
    out: dict = {"images": images,
                 "curves": {k: {"bpp": [p["bpp"] for p in v], "psnr": [p["psnr"] for p in v],
                                "ms_ssim": [p["ms_ssim"] for p in v]} for k, v in curves.items()},
                 "bd_rate_percent": table, "bd_rate_percent_ms_ssim": ms_table}
    print(f"{len(images)} images: {', '.join(images)}")
    for title, tab in (("BD-rate % (row vs column)", table), ("BD-rate % on MS-SSIM dB", ms_table)):
        if not tab:
            continue
        print(f"{title}: " + " ".join(f"{b:>9s}" for b in tab))
        for a in tab:
            print(f"{a:>26s} " + " ".join(f"{'-' if tab[a][b] is None else tab[a][b]:>9}" for b in tab))
    times = {}
    for lab, rows in data.items():
        t = [float(rows[i][s]["encoding_time"]) for i in images for s in rows[i]]
        times[lab] = {"median": round(statistics.median(t), 3), "min": round(min(t), 3), "max": round(max(t), 3)}
        print(f"encode s {lab}: median {times[lab]['median']}, {times[lab]['min']}-{times[lab]['max']}")
    out["encoding_time"] = times
    probes = {lab: speed_probes(spec) for lab, spec in zip(data, args.curves)}
    if any(probes.values()):  # the presets are time-capped: runs on machines of other speeds differ
        out["speed_probe_seconds"] = probes
        for lab, p in probes.items():
            if p:
                print(f"speed probe {lab}: " + ", ".join(f"{Path(r).name} {s:.2f} s" for r, s in p.items()))
    if args.per_image:
        ref = args.per_image
        per = {lab: {i: bench.bd_table({ref: curve(data[ref], [i]), lab: curve(data[lab], [i])})["bd_rate_percent"][lab][ref]
                     for i in images} for lab in data if lab != ref}
        out["per_image_vs"] = {"reference": ref, "bd_rate_percent": per}
        for lab, d in per.items():
            print(f"vs {ref}, {lab}: " + ", ".join(f"{i.split('.')[0]} {v}" for i, v in d.items()))
    vs = bench.vs_published(curves, images, (r for rows in data.values() for i in images for r in rows[i].values()),
                            published)
    if vs:
        out["vs_published"] = vs
        print("BD-rate % vs published Kodak curves: " + ", ".join(a.split()[0] for a in published))
        for lab, row in vs["bd_rate_percent"].items():
            print(f"{lab:>26s} " + " ".join(f"{'-' if v is None else v:>9}" for v in row.values()))
    if cost_labels:
        ref = cost_labels[0]
        costs = {lab: cost_vs(data[lab], data[ref], images) for lab in cost_labels[1:]}
        out["cost_vs"] = {"reference": ref, **costs}
        for lab, d in costs.items():
            print(f"D + lambda R vs {ref}, {lab}: higher at {d['worse']} of {d['points']} points, median "
                  f"{d['median_percent']:+.2f} %, {d['min_percent']:+.2f} to {d['max_percent']:+.2f} %")
    if points:
        out["vs_points"] = {lab: vs_points(rows, points) for lab, rows in data.items()}
        print("rate needed for each point's PSNR (% above its bpp), and PSNR at its bpp:")
        for lab, res in out["vs_points"].items():
            cells = []
            for p in res:
                rate = "-" if p["rate_percent"] is None else f"{p['rate_percent']:+.1f} %"
                quality = "-" if p["psnr"] is None else f"{p['psnr']:.2f} dB"
                cells.append(f"{p['image'].split('.')[0]}@{p['bpp']}: {rate} ({quality})")
            print(f"{lab:>26s} " + "  ".join(cells))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if args.plot:
        bench.plot(curves, published if vs else {}, Path(args.plot),
                   args.title or f"{len(images)} images; bpp of the real files, PSNR on 8-bit RGB (mean per image)")


if __name__ == "__main__":
    main()
