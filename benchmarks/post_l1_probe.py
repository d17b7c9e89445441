"""Probe (not used by the codec): an L1 refit of the latents through the fitted post filter.

    .venv/bin/python benchmarks/post_l1_probe.py ../shared/data/kodak/kodim08.png --quality 70 \\
        --out benchmarks/results/post_l1_probe.json

Once the post filter ``P`` is fitted, the encoder runs RDOQ against the image minus its correction,
``x' = x - M P(y)`` (:func:`codec.encoder.post_rdoq_target`), and ``slow`` alternates warm refits of
the filter with such rounds.  RDOQ moves one latent by one unit at a time; the refit passes before
the filter existed (step 7 of the README) moved the latents further by an L1 refit (FISTA,
:func:`codec.l1fit.solve`) and gained 3-4 % of ``medium``'s rate.  This probe asks whether the same
refit against ``x'`` pays once the filter is there: from the preset's written file (with its filter),

    codes' = l1fit.solve(x', codes, ...)          (--iterations, through the file's level filters)
    codes'' = rdoq.optimise(x', codes', ...)      (the preset's sweeps)

then up to three RDOQ rounds against the new ``x'`` (each kept only if the file's cost drops), the
file written with the same level filters and post filter, and ``D + lambda R`` measured on its real
bytes (:func:`codec.encoder.file_cost`).  Files whose filter was dropped are reported and skipped.
"""
from __future__ import annotations

import time
from pathlib import Path

import probe_cli

from codec import encoder, l1fit, rdoq
from codec.config import HYBRID_PRESETS


def probe(path: Path, quality: int, preset: str, iterations: int) -> dict:
    st = probe_cli.start(path, quality, preset)
    p, lam, img = st.parsed, st.lam, st.image
    spec, c = p.spec, p.spec.channels
    pre = HYBRID_PRESETS[preset]
    row = {"image": path.name, "quality": quality, "preset": preset, "lambda": lam,
           "start": probe_cli.start_record(st.result.data, st.psnr, st.cost, st.seconds, p.post.hidden)}
    if not p.post.hidden:
        row["skipped"] = "the preset's file has no post filter"
        return probe_cli.emit(row)

    def write(codes) -> tuple[float, float, int]:
        data = encoder.code_hybrid(spec, codes, st.idx, p.filters, p.post)
        j, ps = encoder.file_cost(data, img, lam)
        return j, ps, len(data)

    pct = lambda j: round(100 * (j / st.cost - 1), 3)
    t0 = time.perf_counter()
    aim = encoder.post_rdoq_target(img, st.codes, st.idx, st.samplers, p.post, spec.colour)
    refit = l1fit.solve(aim, st.codes, st.idx, lam, iterations, l1fit.Operator(st.samplers, c, spec.colour), pre.l1_bits)
    j, ps, n = write(refit)
    row["l1"] = {"cost_change_percent": pct(j), "psnr": round(ps, 3), "bytes": n,
                 "latents_changed": probe_cli.latents_changed(st.codes, refit)}
    res = rdoq.optimise(aim, spec, st.idx, refit, lam, pre.sweeps, None, st.samplers)
    codes = res.codes
    cost, ps, n = write(codes)
    row["l1_rdoq"] = {"cost_change_percent": pct(cost), "psnr": round(ps, 3), "bytes": n}
    kept = 0
    for _ in range(3):
        aim = encoder.post_rdoq_target(img, codes, st.idx, st.samplers, p.post, spec.colour)
        res = rdoq.optimise(aim, spec, st.idx, codes, lam, pre.sweeps, None, st.samplers)
        j, ps2, n2 = write(res.codes)
        if not any(res.changed) or j >= cost:
            break
        codes, cost, ps, n, kept = res.codes, j, ps2, n2, kept + 1
    row["final"] = {"cost_change_percent": pct(cost), "psnr": round(ps, 3), "bytes": n, "rounds_kept": kept,
                    "seconds": round(time.perf_counter() - t0, 1)}
    return probe_cli.emit(row)


def main() -> None:
    ap = probe_cli.parser(__doc__)
    ap.add_argument("--iterations", type=int, default=100, help="FISTA iterations of the refit")
    args = ap.parse_args()
    probe_cli.run(args, lambda im, q: probe(im, q, args.preset, args.iterations))


if __name__ == "__main__":
    main()
