"""Probe, not used by the codec: a third checkerboard phase for the latents' context model.

Format v8 codes a plane in two halves: the anchors (``i + j`` even), whose class sees only the
parent and co-located luma planes, then the others, which also see their four anchor neighbours
(:mod:`codec.context`).  A three-phase schedule (the multi-stage spatial contexts of learned codecs,
e.g. He et al., CVPR 2022, reduced to a fixed rule) would split the anchors into ``P0`` (even
row, even column) and ``P1`` (odd row, odd column), and code ``P1`` after ``P0`` with the class and
mean prediction of its four *diagonal* ``P0`` neighbours (the rule of the non-anchors, one more
set of up to 20 distributions and a weight per plane); the non-anchors keep their rule, since
their four edge neighbours are all anchors either way.  For each file and plane this compares the
code length of both schedules under the codec's own distribution family and side-information
syntax (:func:`codec.context.fit_dists`: two-ratio distributions chosen by code length, side
information included; the folded distribution's one bit per sign, before sign contexts), on the
FULL rule.  A plane takes the third phase only where it is shorter, for one flag bit per plane, as a
format would let the encoder choose.

    .venv/bin/python benchmarks/context_phases_probe.py FILE.inr [FILE.inr ...] [--out OUT.json]
"""
from __future__ import annotations

import numpy as np
from probe_cli import files_main

from codec import context, decoder


def diagonal_sum(a: np.ndarray) -> np.ndarray:
    """Sum of the four diagonal neighbours of every position (zero padded)."""
    p = np.pad(a, 1)
    return p[:-2, :-2] + p[:-2, 2:] + p[2:, :-2] + p[2:, 2:]


def bits(sym: np.ndarray, cls: np.ndarray, where: np.ndarray) -> float:
    """Code length of ``sym`` at ``where`` under classes ``cls`` (side information included)."""
    if not where.any():
        return 0.0
    c = np.where(where, cls, -1).astype(np.int64)
    kmax = int(np.abs(sym[where]).max())
    return context.fit_dists(sym, c, kmax)[1] if kmax else float(np.unique(c[where]).size)


def plane_bits(codes: list[list[np.ndarray]], lv: int, ch: int) -> tuple[float, float]:
    """``(two phases, three phases)``: bits of plane ``(lv, ch)``'s values under either schedule (the
    second with its flag, the third phase used only where it is shorter)."""
    x = codes[lv][ch].astype(np.int64)
    anc = context.anchors(x.shape)
    base = context.plane_base(codes, lv, ch)
    cls = context.full_classes(base, x)
    sym = context.symbols(x, context.FULL, context.choose_weight(x))
    two = bits(sym, cls, np.ones(x.shape, bool))
    p0 = np.zeros(x.shape, bool)
    p0[0::2, 0::2] = True
    p1 = anc & ~p0
    # P1: class 8 + 4 min(A, 4) + N(n) and the weighted mean prediction, from the diagonal P0 values
    n = diagonal_sum(np.abs(np.where(p0, x, 0)))
    s = diagonal_sum(np.where(p0, x, 0))
    sym1 = x - context._weighted(s, context.choose_weight(x, s, where=p1))
    cls1 = context.N_ANCHOR + len(context.EDGES_N) * np.minimum(base, 4) + context._BIN_N[np.minimum(n, int(context.EDGES_N[-1]))]
    three = bits(sym, cls, ~p1) + bits(sym1, cls1, p1) + context.WEIGHT_BITS
    return two, min(two, three) + 1


def probe(path: str) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    codes = decoder.hybrid_codes(decoder.parse(data))
    two = three = 0.0
    for lv in range(len(codes)):
        for ch in range(len(codes[0])):
            if codes[lv][ch].any():
                a, b = plane_bits(codes, lv, ch)
                two, three = two + a, three + b
    return {"file": path, "bytes": len(data), "two_phase_bytes": round(two / 8), "three_phase_bytes": round(three / 8),
            "change_pct_of_file": round(100 * (three - two) / (8 * len(data)), 2)}


if __name__ == "__main__":
    files_main(__doc__, probe, lambda r: f"{r['file']}: {r['bytes']} B; values {r['two_phase_bytes']} B in two phases, "
               f"{r['three_phase_bytes']} B in three ({r['change_pct_of_file']:+.2f} % of the file)")
