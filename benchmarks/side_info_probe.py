"""Probe, not used by the codec: where a hybrid file's side information goes, and what other
predictions of the distributions' ratio indices would cost.

Format v8's side information (:func:`codec.bitstream.pack_context_side`) is one bit string: per
plane the code range ``K``, the step index, the context mode (and prediction weight), per class an
in-use flag and two ratio indices (the tail ratio ``theta`` as a difference from the previous
class's, the zero ratio ``rho`` as a difference from ``theta``); then the level filters' taps; then
the sign probabilities.  For each file this prints those parts in bytes, recomputed from the
parsed records, and the ratio indices' bits under three other predictions, with the file's own
choices (which were made for the format's prediction, so the alternatives are, if anything,
flattered less than they would be by an encoder that chose for them):

* ``parent``: ``theta`` from the same class of the same channel's previous plane (one level
  coarser) when that plane used the same mode and the class, else the previous class's;
* ``previous plane``: ``theta`` and ``rho - theta`` from the same class of the previous coded plane
  of the same mode, else as the format;
* ``extrapolated``: ``theta`` from the previous two classes' linear extrapolation.

And ``jointly``: the latents' code length (values, signs and their side information, as
:func:`codec.context._best_mode` prices it; the filters and the header apart) with the ratio indices chosen as the encoder chooses
them (jointly over each plane's classes since 0.18), and ``greedy``: class by class, each the
best pair given the previous class's choice (the rule before 0.18), both on the file's latents;
and the same code length with the FULL mode's prediction weight chosen by the L1 proxy (the rule
before 0.18) and by trying all 16 weights (an exhaustive search the codec does not make).

    .venv/bin/python benchmarks/side_info_probe.py FILE.inr [FILE.inr ...] [--out OUT.json]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from probe_cli import files_main

from codec import bitstream, context, decoder, entropy

se = bitstream.se_bits


def greedy_hist(hist: np.ndarray, pred: int = bitstream.FIRST_THETA) -> tuple[list, float]:
    """The rule of :func:`codec.context.fit_hist` before 0.18: each class the pair with the fewest
    bits given the previous class's tail ratio."""
    n = len(entropy.THETAS)
    dists: list = [None] * context.N_CONTEXTS
    bits = 0.0
    for b in range(hist.shape[0]):
        bits += 1
        if not hist[b].any():
            continue
        cost = (entropy.two_ratio_bits(hist[b].astype(np.float64)) + context._SE[np.arange(n) - pred + n][None, :]
                + context._SE_PAIR)
        i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
        dists[b] = (int(i), int(j))
        bits += float(cost[i, j])
        pred = int(j)
    return dists, bits


def file_bits(codes: list[list[np.ndarray]], fit=None, weight: str = "code length") -> float:
    """The latents' code length with ``fit`` (a :func:`codec.context.fit_hist`; the codec's if None)
    and the FULL mode's prediction ``weight`` chosen by ``"code length"`` (the codec's,
    :func:`codec.context.best_weight`), ``"L1"`` (:func:`codec.context.choose_weight`, before 0.18)
    or ``"best of 16"`` (every weight through the encoder's own pricing), plane by plane in coding order."""
    keep_fit, keep_weight = context.fit_hist, context.best_weight
    if fit is not None:
        context.fit_hist = fit
    try:
        total, pred = 0.0, bitstream.FIRST_THETA
        for lv, c in context.coding_order(len(codes), len(codes[0])):
            if not codes[lv][c].any():
                total += bitstream.ue_bits(0, bitstream.K_ORDER)
                continue
            if weight == "L1":
                context.best_weight = lambda plane, *rest: context.choose_weight(plane)
            candidates = range(1 << context.WEIGHT_BITS) if weight == "best of 16" else [None]
            plans = []
            for w in candidates:
                if w is not None:
                    context.best_weight = lambda *args, w=w: w
                plans.append(context._best_mode(codes, lv, c, pred))
            best = min(plans, key=lambda plan: plan.bits)
            total += best.bits
            pred = context.first_theta(best.dists, pred)
        return total
    finally:
        context.fit_hist, context.best_weight = keep_fit, keep_weight


def probe(path: str) -> dict:
    data = Path(path).read_bytes()
    p = decoder.parse(data)
    spec = p.spec
    if spec.name != "hybrid" or p.header.version < 5:
        raise SystemExit(f"{path}: not a hybrid file of format version 5 or later")
    parts = dict.fromkeys(("K", "step", "mode", "in_use", "ratios", "signs", "filters"), 0)
    alt = dict.fromkeys(("parent", "previous_plane", "extrapolated"), 0)
    prev_step, prev_first = 0, bitstream.FIRST_THETA
    same_channel: dict = {}
    same_mode: dict = {}
    n_dists = 0
    for lv, ch in context.coding_order(spec.levels, spec.channels):
        r = p.records[lv * spec.channels + ch]
        parts["K"] += bitstream.ue_bits(r.kmax, bitstream.K_ORDER)
        if r.kmax == 0:
            continue
        parts["step"] += se(r.step_index - prev_step)
        prev_step = r.step_index
        parts["mode"] += 2 + (bitstream.WEIGHT_BITS if r.mode == 2 else 0)
        parts["signs"] += 1 + sum(se(k - bitstream.SIGN_MID) for k in r.signs)
        parent, previous = same_channel.get((ch, r.mode)), same_mode.get(r.mode)
        pred, first, older = prev_first, None, None
        for b, d in enumerate(r.dists[: bitstream.MODE_CLASSES[r.mode]]):
            parts["in_use"] += 1
            if d is None:
                continue
            rho, theta = d
            n_dists += 1
            parts["ratios"] += se(theta - pred) + se(rho - theta)
            up = parent[b] if parent is not None and parent[b] is not None else None
            alt["parent"] += se(theta - (up[1] if up else pred)) + se(rho - theta)
            before = previous[b] if previous is not None and previous[b] is not None else None
            alt["previous_plane"] += (se(theta - before[1]) + se((rho - theta) - (before[0] - before[1])) if before
                                      else se(theta - pred) + se(rho - theta))
            alt["extrapolated"] += se(theta - (pred if older is None else 2 * pred - older)) + se(rho - theta)
            older = pred if first is not None else None
            pred = theta
            first = theta if first is None else first
        prev_first = first
        same_channel[(ch, r.mode)] = r.dists
        same_mode[r.mode] = r.dists
    parts["filters"] = sum(bitstream.FILTER_RADIUS_BITS + sum(se(t) for t in f.taps) for level in p.filters for f in level)
    codes = decoder.hybrid_codes(p)
    joint, greedy = file_bits(codes), file_bits(codes, greedy_hist)
    l1, every = file_bits(codes, weight="L1"), file_bits(codes, weight="best of 16")
    return {"file": path, "bytes": len(data), "coded_words": len(p.words), "distributions": n_dists,
            "side_bytes": {k: round(v / 8, 1) for k, v in parts.items()},
            "ratio_bytes_other_predictions": {k: round(v / 8, 1) for k, v in alt.items()},
            "code_bytes_jointly": round(joint / 8, 1), "code_bytes_greedy": round(greedy / 8, 1),
            "code_bytes_weight_l1": round(l1 / 8, 1), "code_bytes_weight_best_of_16": round(every / 8, 1)}


def line(r: dict) -> str:
    side = r["side_bytes"]
    alt = r["ratio_bytes_other_predictions"]
    saved = r["code_bytes_greedy"] - r["code_bytes_jointly"]
    return (f"{r['file']}: {r['bytes']} B, side information {sum(side.values()):.0f} B ("
            + ", ".join(f"{k} {v:.0f}" for k, v in side.items())
            + f"); {r['distributions']} distributions' ratios {side['ratios']:.0f} B, predicted otherwise: "
            + ", ".join(f"{k} {v:.0f}" for k, v in alt.items())
            + f"; jointly {r['code_bytes_jointly']:.0f} B against greedy {r['code_bytes_greedy']:.0f} B "
              f"({100 * saved / r['bytes']:.2f} % of the file); against the weight by code length, the L1 proxy's "
              f"{r['code_bytes_weight_l1'] - r['code_bytes_jointly']:+.1f} B, the best of 16 "
              f"{r['code_bytes_weight_best_of_16'] - r['code_bytes_jointly']:+.1f} B")


if __name__ == "__main__":
    files_main(__doc__, probe, line)
