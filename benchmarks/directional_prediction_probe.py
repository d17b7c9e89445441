"""Probe, not used by the codec: edge-directed prediction of the checkerboard's second half.

Format v7 codes a FULL-mode non-anchor value as ``q - pred``, ``pred`` a per-plane weight times the
mean of its four anchor neighbours (:func:`codec.context.predict`).  An edge-directed rule (the
gradient-adjusted predictors of CALIC and LOCO-I, reduced to two directions) would instead use the
pair, north-south or east-west, whose two values differ less, so that a value on a thin line is
predicted from the line rather than from the empty space beside it.  The rule needs no side
information beyond its weight.  For each file, on the luma planes of levels 0 and 1, this compares
the ideal code length of the non-anchors under both predictions: the empirical entropy of the
symbols within each context class (the classes do not depend on the prediction), with each rule's
weight chosen by the sum of absolute symbols, as the encoder chooses it.

    .venv/bin/python benchmarks/directional_prediction_probe.py FILE.inr [FILE.inr ...]
"""
from __future__ import annotations

import numpy as np
from probe_cli import files_main

from codec import context, decoder


def entropy_bits(x: np.ndarray) -> float:
    """``n H`` of the empirical distribution of ``x`` (ideal bits, no side information)."""
    if x.size == 0:
        return 0.0
    _, counts = np.unique(x, return_counts=True)
    return float(-(counts * np.log2(counts / x.size)).sum())


def class_bits(sym: np.ndarray, cls: np.ndarray, mask: np.ndarray) -> float:
    """Ideal bits of ``sym`` at ``mask``, each context class coded under its own distribution."""
    return sum(entropy_bits(sym[mask & (cls == b)]) for b in np.unique(cls[mask]))


def directional(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Symbols of the non-anchors under the edge-directed prediction (the pair of anchor
    neighbours with the smaller difference, its sum doubled to the four-sum's scale, weighted as
    :func:`codec.context.predict` weights), with the weight of the smallest sum of ``|symbol|``."""
    anc = context.anchors(x.shape)
    p = np.pad(np.where(anc, x, 0), 1)
    n, s, w, e = p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]
    pair = 2 * np.where(np.abs(n - s) <= np.abs(e - w), n + s, e + w)
    best = None
    for weight in range(1 << context.WEIGHT_BITS):
        sym = x - np.where(anc, 0, context._weighted(pair, weight))
        cost = int(np.abs(sym[~anc]).sum())
        if best is None or cost < best[0]:
            best = (cost, sym, weight)
    return best[1], best[2]


def probe(path: str) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    codes = decoder.hybrid_codes(decoder.parse(data))
    out = {"file": path, "bytes": len(data), "planes": []}
    for lv in (0, 1):
        x = codes[lv][0].astype(np.int64)
        anc = context.anchors(x.shape)
        cls = context.full_classes(context.plane_base(codes, lv, 0), x)
        weight = context.choose_weight(x)
        mean_bits = class_bits(x - context.predict(x, weight), cls, ~anc)
        sym, dir_weight = directional(x)
        dir_bits = class_bits(sym, cls, ~anc)
        out["planes"].append({"level": lv, "mean_bytes": round(mean_bits / 8), "directional_bytes": round(dir_bits / 8),
                              "change_pct": round(100 * (dir_bits - mean_bits) / mean_bits, 2),
                              "weights": [weight, dir_weight]})
    return out


if __name__ == "__main__":
    files_main(__doc__, probe, lambda r: f"{r['file']} {r['bytes']} " + " | ".join(
        f"L{p['level']} non-anchors {p['mean_bytes']} B -> {p['directional_bytes']} B ({p['change_pct']:+.1f} %)"
        for p in r["planes"]))
