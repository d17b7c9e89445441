"""Probe, not used by the codec: how much a search over colour rotations would buy.

    .venv/bin/python benchmarks/colour_rotation_probe.py ../shared/data/kodak/kodim{01,08,19}.png \\
        --out /tmp/rot_a.json
    .venv/bin/python benchmarks/colour_rotation_probe.py --compare /tmp/rot_a.json [...]

Since format v8 an RGB image is coded in its own rotation of RGB, the KLT of its neighbour
differences (:func:`codec.color.adaptive_word`), whose three Euler angles travel as 10-bit
indices.  One angle step moves a single image's BD-rate by about +-2 % (docs/design.md, colour
space), which is the encoder's RDOQ landing in other local optima; so an encoder with time to spare
(``slow``) could try several rotations and keep the file with the lowest ``D + lambda R``.  For
each image and quality this encodes with the KLT's word, with each angle moved by -2 and +2 steps
(six more words) and in YCbCr, all with the preset, and records every file's
``D + lambda R`` (squared 8-bit RGB error in [0, 1] units plus ``lambda`` times the bits, as the
encoder keeps its candidates); ``--compare`` prints each variant's cost against the KLT's and the
best of the seven rotations.
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
from pathlib import Path

from probe_cli import encode_point, runs_main

from codec import color, imageio


def moved(word: int, angle: int, steps: int) -> int:
    """``word`` with angle ``angle`` (0..2) moved by ``steps`` index steps."""
    k = list(color.angle_indices(word))
    k[angle] = (k[angle] + steps) % color.ANGLE_LEVELS
    return color.rotation_word(*k)


def run(args: argparse.Namespace) -> None:
    adaptive = color.adaptive_word
    out = []
    try:
        for path in map(Path, args.images):
            img = imageio.as_array(path)
            klt = adaptive(img)
            variants = ([("klt", klt)] + [(f"angle{i}{d:+d}", moved(klt, i, d)) for i in range(3) for d in (-2, 2)]
                        + [("ycbcr", 0)])
            for q in map(int, args.qualities.split(",")):
                for name, word in variants:
                    color.adaptive_word = lambda image, word=word: word  # what the encoder asks for
                    out.append(encode_point(img, path.name, args.preset, q, variant=name, word=word))
    finally:
        color.adaptive_word = adaptive
    Path(args.out).write_text(json.dumps({"preset": args.preset, "records": out}, indent=1))


def compare(paths: list[str]) -> None:
    by_point: dict[tuple[str, int], dict[str, float]] = collections.defaultdict(dict)
    for p in paths:
        for r in json.loads(Path(p).read_text())["records"]:
            by_point[(r["image"], r["quality"])][r["variant"]] = r["cost"]
    per_variant: dict[str, list[float]] = collections.defaultdict(list)
    best = []
    for (image, q), costs in sorted(by_point.items()):
        rel = {v: 100 * (c / costs["klt"] - 1) for v, c in costs.items()}
        for v, x in rel.items():
            per_variant[v].append(x)
        best.append(min(x for v, x in rel.items() if v != "ycbcr"))
        print(f"{image} q{q}: " + " ".join(f"{v} {x:+.2f}" for v, x in rel.items()) + f" | best rotation {best[-1]:+.2f} %")
    print("mean D + lambda R against the KLT's, %: " + ", ".join(f"{v} {statistics.mean(x):+.2f}" for v, x in per_variant.items()))
    print(f"best of the seven rotations: mean {statistics.mean(best):+.2f} %, median {statistics.median(best):+.2f} %")


if __name__ == "__main__":
    runs_main(__doc__, "55,70,85", lambda ap: None, run, compare)
