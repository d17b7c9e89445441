"""Probe, not used by the codec: under ``--bpp X``, how far a hybrid encode's first pass lands from X.

The encoder finds ``Delta_0`` by searching the analytic fill's coded size
(:func:`codec.encoder.delta0_for_size`), aimed at the target over
:func:`codec.encoder.first_pass_ratio` (``_HybridSearch.fill_aim``); the first pass (L1 refit, level filters, RDOQ) then writes
fewer bytes than the fill.  For every image and target this prints, with every RDOQ sweep run (no
deadline):

* ``fill``: the fill's coded size at the ``Delta_0`` found, over the search's aim;
* ``first``: the first pass's file over the fill's size, the ratio that
  :func:`codec.encoder.first_pass_ratio` models (its value for X beside it, ``model``);
* ``landed``: the first pass's file over the target, where the encode's secant corrections start.

``--aim target`` searches for the fill at the target itself, as 0.21.0 did (its ``first`` ratios
are what 0.21.1's model was fitted to: kodim09, 13, 18 and 23 at 0.1-2 bpp under ``fast``)::

    .venv/bin/python benchmarks/first_pass_probe.py ../shared/data/kodak/kodim{09,13,18,23}.png \\
        --targets 0.1,0.25,0.5,1,2 --preset fast --aim target --out first_pass.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from codec import encoder, imageio
from codec.progress import TimeProgress


def probe(path: str, bpp: float, preset: str, aim_model: bool) -> dict:
    """One image at one target: the fill's and the first pass's sizes (module docstring)."""
    image = imageio.to_array(imageio.open_image(path))
    t0 = time.perf_counter()
    opts = encoder.EncodeOptions(model="hybrid", preset=preset, bpp=bpp, seconds=86_400, quiet=True)
    search = encoder._HybridSearch(image, opts, t0, TimeProgress(t0, True), torch.device("cpu"))
    sizes: dict[float, int] = {}

    def fill_size(d0: float) -> int:
        sizes[d0] = search.fill_bytes(d0)  # the encoder's own measure, remembered
        return sizes[d0]

    aim = search.fill_aim() if aim_model else search.target_bytes
    d0 = encoder.delta0_for_size(fill_size, aim, encoder.hybrid_delta0(encoder.DEFAULT_QUALITY))
    p, never = search.preset, time.perf_counter() + 1e9
    first = search.fill_pass(p, 1, d0, p.shapes[0], p.rdoq_lambda * d0 * d0, p.sweeps, never, never, never)
    return {"image": Path(path).name, "target": bpp, "fill": round(sizes[d0] / aim, 4),
            "first": round(len(first.data) / sizes[d0], 4), "model": round(encoder.first_pass_ratio(bpp), 4),
            "landed": round(len(first.data) / search.target_bytes, 4), "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--targets", default="0.1,0.25,0.5,1,2", help="comma-separated bpp targets")
    ap.add_argument("--preset", default="fast", choices=["fast", "medium", "slow"])
    ap.add_argument("--aim", default="model", choices=["model", "target"],
                    help="aim the fill at the target over first_pass_ratio (the encoder's rule) or at the target")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for path in args.images:
        for bpp in (float(t) for t in args.targets.split(",")):
            rows.append(probe(path, bpp, args.preset, args.aim == "model"))
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"preset": args.preset, "aim": args.aim, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
