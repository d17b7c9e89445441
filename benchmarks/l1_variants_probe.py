"""Probe, not used by the codec: variants of the L1 refit's penalty and rounding (:mod:`codec.l1fit`).

    .venv/bin/python benchmarks/l1_variants_probe.py ../shared/data/kodak/kodim{01,08,09,12,19,23}.png \\
        --out /tmp/plane.json                                   # the codec as it is
    .venv/bin/python benchmarks/l1_variants_probe.py ... --deadzone 0.4 --out /tmp/dz04.json
    git apply benchmarks/results/l1_variants/l1-weights.patch   # then:
    .venv/bin/python benchmarks/l1_variants_probe.py ... --weights class --out /tmp/class.json
    .venv/bin/python benchmarks/l1_variants_probe.py --compare /tmp/plane.json /tmp/dz04.json /tmp/class.json

The refit's penalty is ``lambda b_{l,c} / Delta |v|`` with one ``b`` per plane, the plane's coded
bits per unit of ``|q|`` (the chord of its code length), and its solution is rounded (deadzone
0.5) before RDOQ.  Two variants:

* ``--deadzone F``: round the solution with ``sign(v) floor(|v| + F)`` instead.
* ``--weights class|tangent`` (needs ``l1-weights.patch``, which adds :func:`bits_per_latent` and a
  ``weights`` argument to :func:`codec.l1fit.solve`, and the preset field ``l1_weights``): a weight
  per latent from its context class under the codes the refit starts from -- the class's chord
  (its coded bits over its ``sum |q|``), or the slope of its code length at the latent's magnitude
  (the bits of a first unit at 0, of one more above: one majorize-minimize step of the concave code
  length, reweighted L1 as in Candes, Wakin & Boyd 2008).

Every image is encoded at every quality with the preset (one torch thread unless ``--threads``),
and ``--compare`` prints the BD-rate of each run against the first (``lambda_sweep.compare``): per image,
their mean, and on the mean curve.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
from pathlib import Path

import lambda_sweep
import numpy as np
from probe_cli import encode_point, runs_main

from codec import config, imageio, l1fit


def run(args: argparse.Namespace) -> None:
    if args.deadzone != 0.5:
        l1fit.solve = functools.partial(l1fit.solve, deadzone=args.deadzone)
    if args.weights != "plane":
        preset = config.HYBRID_PRESETS[args.preset]
        if not hasattr(preset, "l1_weights"):
            raise SystemExit("--weights needs benchmarks/results/l1_variants/l1-weights.patch applied")
        config.HYBRID_PRESETS[args.preset] = dataclasses.replace(preset, l1_weights=args.weights)
    out = [encode_point(imageio.as_array(path), Path(path).name, args.preset, int(q))
           for path in args.images for q in args.qualities.split(",")]
    Path(args.out).write_text(json.dumps({"weights": args.weights, "deadzone": args.deadzone,
                                          "preset": args.preset, "threads": args.threads, "records": out}, indent=1))


def compare(paths: list[str]) -> None:
    runs = [json.loads(Path(p).read_text())["records"] for p in paths]
    for path, test in zip(paths[1:], runs[1:]):
        bd = lambda_sweep.compare(runs[0], test)
        seconds = np.median([r["seconds"] for r in test]), np.median([r["seconds"] for r in runs[0]])
        print(f"{path}: mean BD-rate {bd['mean_per_image']:+.2f} % (mean curve {bd['mean_curve']:+.2f} %)  "
              + "  ".join(f"{k.split('.')[0]} {v:+.2f}" for k, v in bd["per_image"].items())
              + f"  (encode median {seconds[0]:.1f} s against {seconds[1]:.1f} s)")


def options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--deadzone", type=float, default=0.5, help="rounding of the refit's solution (0.5: as the codec)")
    ap.add_argument("--weights", choices=("plane", "class", "tangent"), default="plane")


if __name__ == "__main__":
    runs_main(__doc__, "40,55,70,85,95", options, run, compare)
