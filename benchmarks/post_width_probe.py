"""Probe (not used by the codec): a wider post filter, 16 hidden channels against the presets' 8.

    .venv/bin/python benchmarks/post_width_probe.py ../shared/data/kodak/kodim0{1,8}.png --quality 40,70 \\
        --steps 2500 --out benchmarks/results/post_width_probe.json

Format v7 codes the post filter's width in four bits (1-16 hidden channels), so ``slow`` could fit
a wider filter without a format change; its decoder cost, ``2 x 9 x 3 x hidden`` MACs per pixel,
stays under the issue's 2,000 at 16 (864).  From the preset's written file (``fast`` by default,
which carries no filter, so the latents were not moved through one), the filter is fitted on the
file's native rendering ``y`` with each width (:func:`codec.postfilter.fit`, the same seed and
``--steps`` Adam steps: 1000 are ``medium``'s, 2500 ``slow``'s), quantized, written into the file
(:func:`codec.encoder.with_post_filter`) and ``D + lambda R`` measured on the real bytes
(:func:`codec.encoder.file_cost`), as a change in percent against the file without a filter.
"""
from __future__ import annotations

import time
from pathlib import Path

import probe_cli

from codec import encoder, postfilter, rdoq


def probe(path: Path, quality: int, preset: str, steps: int, widths: list[int]) -> dict:
    st = probe_cli.start(path, quality, preset)
    c, h, w = st.target.shape
    y = rdoq.reconstruct(st.codes, st.steps, st.samplers, (c, h, w))
    centre = rdoq.colour_centre(c, None, st.parsed.spec.colour)
    row = {"image": path.name, "quality": quality, "preset": preset, "steps": steps,
           "start": probe_cli.start_record(st.result.data, st.psnr, st.cost, st.seconds, st.parsed.post.hidden)}
    for hidden in widths:
        t0 = time.perf_counter()
        record = postfilter.quantize(postfilter.fit(y, st.target, st.matrix, centre, hidden, steps, seed=0))
        data = encoder.with_post_filter(st.result.data, record)
        cost = encoder.file_cost(data, st.image, st.lam)[0]
        row[f"hidden_{hidden}"] = {"filter_bytes": len(data) - len(st.result.data),
                                   "cost_change_percent": round(100 * (cost / st.cost - 1), 3),
                                   "seconds": round(time.perf_counter() - t0, 1)}
    return probe_cli.emit(row)


def main() -> None:
    ap = probe_cli.parser(__doc__)
    ap.set_defaults(preset="fast")
    ap.add_argument("--steps", type=int, default=2500, help="Adam steps of each fit (slow's: 2500)")
    ap.add_argument("--widths", default="8,16", help="comma-separated hidden channels (1..16)")
    args = ap.parse_args()
    widths = [int(x) for x in args.widths.split(",")]
    probe_cli.run(args, lambda im, q: probe(im, q, args.preset, args.steps, widths))


if __name__ == "__main__":
    main()
