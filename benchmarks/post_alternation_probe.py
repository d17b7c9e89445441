"""Probe: what more post-filter work buys once ``medium``'s file is written (for ``slow``'s time).

    .venv/bin/python benchmarks/post_alternation_probe.py ../shared/data/kodak/kodim08.png --quality 70 \\
        --out benchmarks/results/post_alternation_probe.json

0.13's encoder fits the post filter once and then runs up to three RDOQ rounds against the image
minus the filter's correction (:func:`codec.encoder.post_rdoq_target`).  Refitting the filter from
zero after the rounds lost their gain (README, step 8).  Starting from the preset's written file,
this probe measures on real bytes (:func:`codec.encoder.file_cost`, ``D + lambda R`` with the
encoder's lambda):

* ``alternate``: ``--cycles`` times, the filter refitted *warm* (Adam from its current weights,
  ``--warm-steps`` steps at ``--warm-lr``) on the current latents and kept if the file's cost drops,
  then up to three RDOQ rounds through it, each kept if the cost drops;
* ``wide``: a filter of ``--wide`` hidden channels fitted from zero (``--wide-steps``) on the file's
  latents, then three RDOQ rounds (the format allows 1..16 hidden channels).

Nothing here changes the codec; the figures say whether ``slow`` should spend its minutes so.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import probe_cli
import torch

import codec
from codec import decoder, encoder, imageio, postfilter, quant, rdoq
from codec.config import HYBRID_PRESETS


def probe(path: Path, quality: int, args: argparse.Namespace) -> dict:
    img = imageio.as_array(path)
    t0 = time.perf_counter()
    r = codec.encode_image(img, quality=quality, preset=args.preset, quiet=True)
    start_seconds = time.perf_counter() - t0
    lam = r.stats["lambda"]
    sweeps = HYBRID_PRESETS[args.preset].sweeps
    p = decoder.parse(r.data)
    spec, c = p.spec, p.spec.channels
    h, w = spec.height, spec.width
    idx = [rec.step_index for rec in p.records]
    steps = [quant.step_from_index(i) for i in idx]
    samplers = rdoq.with_filters(rdoq.samplers_for(spec), encoder.filter_kernels(p.filters))
    matrix, centre = rdoq.colour_matrix(c, None, spec.colour), rdoq.colour_centre(c, None, spec.colour)
    target = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)
    cost0, psnr0 = encoder.file_cost(r.data, img, lam)

    def write(codes, post) -> tuple[bytes, float, float]:
        data = encoder.code_hybrid(spec, codes, idx, p.filters, post)
        j, ps = encoder.file_cost(data, img, lam)
        return data, j, ps

    def rounds(codes, post, cost) -> tuple[list, float, int]:
        kept = 0
        for _ in range(3):
            aim = encoder.post_rdoq_target(img, codes, idx, samplers, post, spec.colour)
            res = rdoq.optimise(aim, spec, idx, codes, lam, sweeps, None, samplers)
            if not any(res.changed):
                break
            _, j, _ = write(res.codes, post)
            if j >= cost:
                break
            codes, cost, kept = res.codes, j, kept + 1
        return codes, cost, kept

    def fit(codes, hidden, n_steps, init=None, lr=postfilter.LEARNING_RATE):
        y = rdoq.reconstruct(codes, steps, samplers, (c, h, w))
        return postfilter.quantize(postfilter.fit(y, target, matrix, centre, hidden, n_steps, init=init, lr=lr))

    row = {"image": path.name, "quality": quality, "preset": args.preset, "lambda": lam,
           "start": {"bytes": len(r.data), "psnr": round(psnr0, 3), "cost": round(cost0, 3),
                     "post_filter": p.post.hidden, "seconds": round(start_seconds, 1),
                     "post_rdoq_rounds": r.stats.get("post_rdoq_rounds")}}
    pct = lambda j: round(100 * (j / cost0 - 1), 3)
    codes0 = decoder.hybrid_codes(p)

    # alternate: warm refits and rounds, from the file (its filter, or a fresh one where it has none)
    t = time.perf_counter()
    post = p.post if p.post.hidden else fit(codes0, HYBRID_PRESETS[args.preset].post_hidden,
                                            HYBRID_PRESETS[args.preset].post_steps)
    codes, cost = codes0, cost0 if p.post.hidden else write(codes0, post)[1]
    trail = []
    for _ in range(args.cycles):
        cand = fit(codes, post.hidden, args.warm_steps, init=postfilter.weights(post, c), lr=args.warm_lr)
        _, j, _ = write(codes, cand)
        refit_kept = j < cost
        if refit_kept:
            post, cost = cand, j
        codes, cost, kept = rounds(codes, post, cost)
        trail.append({"refit_kept": refit_kept, "rounds_kept": kept, "dJ_percent": pct(cost),
                      "seconds": round(time.perf_counter() - t, 1)})
        print(path.name, quality, "alternate", trail[-1], flush=True)
    data, cost, psnr = write(codes, post)
    row["alternate"] = {"bytes": len(data), "psnr": round(psnr, 3), "dJ_percent": pct(cost), "cycles": trail}

    # wide: a larger filter from zero on the file's latents, then rounds
    if args.wide:
        t = time.perf_counter()
        wide = fit(codes0, args.wide, args.wide_steps)
        _, j, _ = write(codes0, wide)
        codes, j2, kept = rounds(codes0, wide, j)
        data, j2, psnr = write(codes, wide)
        row["wide"] = {"hidden": args.wide, "bytes": len(data), "psnr": round(psnr, 3), "dJ_fit_percent": pct(j),
                       "dJ_percent": pct(j2), "rounds_kept": kept, "seconds": round(time.perf_counter() - t, 1)}
        print(path.name, quality, "wide", row["wide"], flush=True)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = probe_cli.parser(__doc__)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--warm-steps", type=int, default=600)
    ap.add_argument("--warm-lr", type=float, default=1e-3)
    ap.add_argument("--wide", type=int, default=16, help="hidden channels of the wide filter (0: skip)")
    ap.add_argument("--wide-steps", type=int, default=2500)
    args = ap.parse_args()
    probe_cli.run(args, lambda im, q: probe(im, q, args))


if __name__ == "__main__":
    main()
