"""Ideas for the wavelet basis, each measured against the codec's own file (probe; 0.23).

Every idea is measured on real bytes (``--rdoq``: with 0.23's RDOQ, or 0.22's as the figures in
docs/design.md of ``recon``, ``context``, ``search`` and ``mismatch`` were first measured): the codec's quantizer (:func:`codec.wavecode.quantize`) and
coder (:func:`codec.wavecode.code`), and for distortion the decoded 8-bit image (PSNR over RGB,
per image).  Curves are the five qualities q40/55/70/85/95 at the step :func:`codec.wavecode.delta_for_lambda`
gives ``fast`` (lambda = 0.25 Delta_0(q)^2); BD-rates are on the mean curve over the images.

``--idea``:

- ``rdoq``: the RDOQ that prices the children's and neighbours' classes
  (:func:`codec.wavecode.rdoq_exact`, ``--sweeps``) against 0.22's own-bits RDOQ
  (:func:`codec.wavecode.rdoq_group`, two sweeps): BD-rate and the change of D + lambda R per point.
- ``recon``: reconstruction offsets: non-zero values dequantized at ``(|q| - o) Delta`` instead of
  ``|q| Delta``, with ``o`` the oracle centroid per subband and magnitude class (1, >= 2), free of
  side information, or one global pair.  An upper bound on what a coded offset could buy.
- ``context``: the magnitudes of the same level's other orientations (HL before LH before HH, known
  to the decoder) added to a value's activity, four ways; coded size only (RDOQ unchanged).
- ``search``: a per-image search of the chroma factor (x0.7 ... x1.45), the RDOQ multiplier (0.2,
  0.45) and the colour space (rotation or YCbCr), each point keeping the lowest D + lambda R.
- ``dq``: dependent (trellis-coded) quantization, VVC's four-state machine with two quantizers
  (Schwarz et al., "Hybrid video coding with trellis-coded quantization", DCC 2019): per row a
  Viterbi search of ``w (r - recon)^2 + lambda R`` with the context model's rate terms, states reset
  at each row start; the indices coded with the unchanged context model (no state-dependent
  contexts: the checkerboard decodes anchors before the states that precede them are known).
  ``--dq-steps``: the DQ step as a fraction of the codec's step.
- ``mismatch``: the two-ratio magnitude model's bits against each class histogram's empirical
  entropy and a three-parameter (P0, P1, geometric tail) fit, over every mode's classes.

Example (0.23.0, 2 cores)::

    .venv/bin/python benchmarks/wavelet_ideas_probe.py ../shared/data/kodak --limit 6 --idea rdoq --sweeps 3
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from codec import bdrate, color, context, decoder, encoder, entropy, imageio, pyramid, quant, rdoq, wavecode, wavelet

QUALITIES = (40, 55, 70, 85, 95)
# the RDOQ the ideas other than ``rdoq`` and ``dq`` quantize with (``--rdoq``): 0.23's, or 0.22's (two sweeps)
RDOQ_CFG = {"exact": wavecode.WaveletConfig(), "own": wavecode.WaveletConfig(exact=False, sweeps=2)}
_STATE = {"cfg": RDOQ_CFG["exact"]}


def _delta(q: int) -> tuple[float, float]:
    """``(lambda, Delta)`` of quality ``q`` under ``fast``."""
    lam = 0.25 * encoder.hybrid_delta0(q) ** 2
    return lam, wavecode.delta_for_lambda(lam)


def _measure(data: bytes, image: np.ndarray, out: np.ndarray | None = None) -> tuple[float, float, float]:
    """``(bpp, PSNR, SSE)`` of a file (decoded unless ``out`` is given)."""
    out = decoder.decode_to_array(data) if out is None else out
    sse = float(((out.astype(np.float64) / 255.0 - image) ** 2).sum())
    n = image.shape[0] * image.shape[1]
    return len(data) * 8 / n, 10 * np.log10(3 * n / max(sse, 1e-12)), sse


def _analysis(image: np.ndarray, word: int | None = None) -> wavecode.Analysis:
    word = color.adaptive_word(image.astype(np.float32)) if word is None else word
    return wavecode.Analysis(image, wavecode.spec_for(image, word))


def _mean_bd(ref: list[list[tuple]], test: list[list[tuple]]) -> float:
    r0, p0 = (list(np.mean([[pt[i] for pt in img] for img in ref], axis=0)) for i in (0, 1))
    r1, p1 = (list(np.mean([[pt[i] for pt in img] for img in test], axis=0)) for i in (0, 1))
    return float(bdrate.bd_rate(r0, p0, r1, p1))


def idea_rdoq(image: np.ndarray, args) -> dict:
    an = _analysis(image)
    ref, test, dj = [], [], []
    for q in QUALITIES:
        lam, delta = _delta(q)
        a = _measure(wavecode.encode(an, delta, wavecode.WaveletConfig(exact=False, sweeps=2)), image)
        b = _measure(wavecode.encode(an, delta, wavecode.WaveletConfig(sweeps=args.sweeps)), image)
        ref.append(a), test.append(b)
        n = image.shape[0] * image.shape[1]
        dj.append(100 * ((b[2] + lam * b[0] * n) / (a[2] + lam * a[0] * n) - 1))
    return {"ref": ref, "test": test, "dJ_percent": dj}


def _dequantizer(offsets):
    """A replacement for :func:`codec.decoder.wavelet_subbands` that shrinks non-zero detail values by
    ``offsets(g, lv, ch) = (o1, o2)`` steps (magnitude 1, magnitude >= 2)."""
    def subbands(p, codes, ch):
        def plane(g, lv):
            step = quant.step_from_index(p.records[p.spec.record_index(g, lv, ch)].step_index)
            c = codes[g][lv][ch].astype(np.float32)
            if g > 0:
                o1, o2 = offsets(g, lv, ch)
                a = np.abs(c)
                c = c - np.sign(c) * np.where(a == 1, o1, np.where(a >= 2, o2, 0)).astype(np.float32)
            return c * np.float32(step)
        return plane(0, 0), [tuple(plane(1 + o, lv) for o in range(3)) for lv in range(p.spec.levels)]
    return subbands


def idea_recon(image: np.ndarray, args) -> dict:
    an = _analysis(image)
    out = {"ref": [], "subband": [], "global": []}
    original = decoder.wavelet_subbands
    for q in QUALITIES:
        _, delta = _delta(q)
        codes, idx = wavecode.quantize(an, delta, _STATE["cfg"])
        data = wavecode.code(an.spec, codes, idx)
        offs, sums = {}, np.zeros(4)
        for ch, (_, bands) in enumerate(an.coeffs):
            for lv in range(an.spec.levels):
                for o in range(3):
                    r = bands[lv][o] / quant.step_from_index(idx[1 + o][lv][ch])
                    a = np.abs(codes[1 + o][lv][ch])
                    d = a - np.abs(r)
                    m1, m2 = a == 1, a >= 2
                    offs[(1 + o, lv, ch)] = (d[m1].mean() if m1.any() else 0.0, d[m2].mean() if m2.any() else 0.0)
                    sums += (d[m1].sum(), m1.sum(), d[m2].sum(), m2.sum())
        g = (sums[0] / max(sums[1], 1), sums[2] / max(sums[3], 1))
        try:
            out["ref"].append(_measure(data, image))
            decoder.wavelet_subbands = _dequantizer(lambda gg, lv, ch, offs=offs: offs[(gg, lv, ch)])
            out["subband"].append(_measure(data, image))
            decoder.wavelet_subbands = _dequantizer(lambda gg, lv, ch, g=g: g)
            out["global"].append(_measure(data, image))
        finally:
            decoder.wavelet_subbands = original
    return out


_SIBLINGS: dict = {"planes": None, "rule": None}


def _plane_base_with_siblings(codes, level, channel):
    """:func:`codec.context.plane_base` plus the same level's earlier orientations (``_SIBLINGS``)."""
    parent = codes[level + 1][channel] if level + 1 < len(codes) else None
    luma = codes[level][0] if channel > 0 else None
    a = context.activity(codes[level][channel].shape, parent, luma)
    sib, rule = _SIBLINGS["planes"], _SIBLINGS["rule"]
    if sib and rule:
        s = sum(np.abs(g[level][channel].astype(np.int32)) for g in sib)
        a = a + {"x1": s, "x2": 2 * s, "box": context._box3(s) if rule == "box" else 0, "half": (s + 1) // 2}[rule]
    return context._BIN[np.minimum(a, int(context.EDGES[-1]))]


def _coded_size(spec, codes, idx) -> int:
    import constriction

    enc = constriction.stream.queue.RangeEncoder()
    n = 0
    for g, (group, steps) in enumerate(zip(codes, idx)):
        _SIBLINGS["planes"] = codes[1:g] if g >= 2 else None
        records, _ = context.encode_planes(group, steps, enc)
        n += len(context.pack_side(records, len(group), spec.channels))
    _SIBLINGS["planes"] = None
    return n + 4 * enc.get_compressed().size


def idea_context(image: np.ndarray, args) -> dict:
    an = _analysis(image)
    rules = (None, "x1", "x2", "box", "half")
    out = {str(r): [] for r in rules}
    original = context.plane_base
    context.plane_base = _plane_base_with_siblings
    try:
        for q in QUALITIES:
            codes, idx = wavecode.quantize(an, _delta(q)[1], _STATE["cfg"])
            for r in rules:
                _SIBLINGS["rule"] = r
                out[str(r)].append(_coded_size(an.spec, codes, idx))
    finally:
        context.plane_base = original
        _SIBLINGS["rule"] = None
    return out


def idea_search(image: np.ndarray, args) -> dict:
    words = [color.adaptive_word(image.astype(np.float32)), 0]
    ans: dict[int, wavecode.Analysis] = {}
    ref, test, picks = [], [], []
    for q in QUALITIES:
        lam, delta = _delta(q)

        def run(word, kappa_mult, m, lam=lam, delta=delta):
            if word not in ans:
                ans[word] = _analysis(image, word)
            cfg = replace(_STATE["cfg"], rdoq=m, kappa=pyramid.chroma_kappa(word) * kappa_mult)
            bpp, psnr, sse = _measure(wavecode.encode(ans[word], delta * np.sqrt(m / wavecode.RDOQ), cfg), image)
            return sse + lam * bpp * image.shape[0] * image.shape[1], (bpp, psnr, sse)

        base = run(words[0], 1.0, wavecode.RDOQ)
        best, pick = base, (words[0], 1.0, wavecode.RDOQ)
        for km in (0.7, 0.85, 1.2, 1.45):
            r = run(words[0], km, wavecode.RDOQ)
            best, pick = (r, (words[0], km, wavecode.RDOQ)) if r[0] < best[0] else (best, pick)
        for m in (0.2, 0.45):
            r = run(pick[0], pick[1], m)
            best, pick = (r, (pick[0], pick[1], m)) if r[0] < best[0] else (best, pick)
        if words[0] != 0:
            r = run(0, pick[1], pick[2])
            best, pick = (r, (0, pick[1], pick[2])) if r[0] < best[0] else (best, pick)
        ref.append(base[1]), test.append(best[1]), picks.append(pick)
    return {"ref": ref, "test": test, "picks": picks}


_NEXT = np.array([[0, 2], [2, 0], [1, 3], [3, 1]])  # VVC's state transition by the parity of k


def _dq_recon(k: np.ndarray, q1: np.ndarray | bool) -> np.ndarray:
    """Q0 reconstructs ``2k``, Q1 ``2k - sgn(k)`` (units of the DQ step)."""
    return 2 * k - np.where(q1, np.sign(k), 0)


def _dq_states(k: np.ndarray) -> np.ndarray:
    h, w = k.shape
    s, cur = np.zeros((h, w), dtype=np.int64), np.zeros(h, dtype=np.int64)
    for j in range(w):
        s[:, j] = cur
        cur = _NEXT[cur, k[:, j] & 1]
    return s


def _dq_trellis(r, first, more, pred, wgt, lam) -> np.ndarray:
    """Per row, the index sequence of least ``sum w (r - recon)^2 + lam bits`` (Viterbi over 4 states)."""
    h, w = r.shape
    inf = 1e300
    cost = np.full((h, 4), inf)
    cost[:, 0] = 0
    back_k = np.zeros((h, w, 4), dtype=np.int64)
    back_s = np.zeros((h, w, 4), dtype=np.int64)
    sg, ar = np.where(r >= 0, 1, -1), np.abs(r)
    k0 = sg * np.floor(ar / 2).astype(np.int64)
    k1 = sg * np.maximum(1, np.floor((ar + 1) / 2)).astype(np.int64)
    cands = ((k0, k0 + sg, np.zeros_like(k0)), (k1, k1 + sg, np.zeros_like(k1)))
    rows = np.arange(h)
    for j in range(w):
        tot, nxt, ks, ss = [], [], [], []
        for qi in (0, 1):
            for kc in cands[qi]:
                k = kc[:, j]
                a = np.abs(k - pred[:, j])
                bits = np.where(a > 0, first[:, j] + more[:, j] * (a - 1), 0.0)
                jv = wgt * (r[:, j] - _dq_recon(k, qi == 1)) ** 2 + lam * bits
                for s in ((0, 1) if qi == 0 else (2, 3)):
                    tot.append(cost[:, s] + jv), nxt.append(_NEXT[s][k & 1]), ks.append(k), ss.append(np.full(h, s))
        tot, nxt, ks, ss = (np.stack(t) for t in (tot, nxt, ks, ss))
        new = np.empty((h, 4))
        for t in range(4):
            m = np.where(nxt == t, tot, inf)
            b = m.argmin(0)
            new[:, t], back_k[:, j, t], back_s[:, j, t] = m[b, rows], ks[b, rows], ss[b, rows]
        cost = new
    out = np.zeros((h, w), dtype=np.int64)
    t = cost.argmin(1)
    for j in reversed(range(w)):
        out[:, j] = back_k[rows, j, t]
        t = back_s[rows, j, t]
    return out.astype(np.int32)


def _dq_file(an: wavecode.Analysis, delta: float, frac: float, lam: float) -> tuple[bytes, np.ndarray]:
    spec = an.spec
    kappa = pyramid.chroma_kappa(spec.colour)
    n_ll, n_b = an.norms
    codes = [[[None] * spec.channels for _ in range(1 if g == 0 else spec.levels)] for g in range(4)]
    idx = [[[0] * spec.channels for _ in range(1 if g == 0 else spec.levels)] for g in range(4)]
    ratios = [[[None] * spec.channels for _ in range(spec.levels)] for _ in range(3)]
    weights = []
    for ch, (ll, bands) in enumerate(an.coeffs):
        d = delta * (kappa if pyramid.is_chroma(spec.channels, ch) else 1.0)
        i = quant.index_for_step(d / n_ll)
        codes[0][0][ch], idx[0][0][ch] = wavecode._round(ll / quant.step_from_index(i)), i
        weights.append((d * frac) ** 2 * float(an.weights[ch]))
        for lv, per in enumerate(bands):
            for o, band in enumerate(per):
                i = quant.index_for_step(d * frac / n_b[lv][o])
                r = band / quant.step_from_index(i)
                codes[1 + o][lv][ch], idx[1 + o][lv][ch], ratios[o][lv][ch] = np.rint(r / 2).astype(np.int32), i, r
    for _ in range(2):
        for o in range(3):
            planes = codes[1 + o]
            for lv in reversed(range(spec.levels)):
                for c in range(spec.channels):
                    first, more, _, sym = rdoq.plane_rate_terms(planes, lv, c)
                    planes[lv][c] = _dq_trellis(ratios[o][lv][c], first.numpy().astype(np.float64),
                                                more.numpy().astype(np.float64), planes[lv][c] - sym, weights[c], lam)
    data = wavecode.code(spec, codes, idx)
    chans = []
    for ch in range(spec.channels):
        ll = (codes[0][0][ch] * quant.step_from_index(idx[0][0][ch])).astype(np.float32)
        bands = []
        for lv in range(spec.levels):
            t = []
            for o in range(3):
                k = codes[1 + o][lv][ch].astype(np.int64)
                t.append((_dq_recon(k, (_dq_states(k) >> 1) == 1) * quant.step_from_index(idx[1 + o][lv][ch])).astype(np.float32))
            bands.append(tuple(t))
        chans.append(wavelet.synthesise(ll, bands, spec.height, spec.width) + np.float32(0.5))
    rgb = color.ycbcr_to_rgb_np(np.stack(chans, -1).astype(np.float32), spec.colour)
    return data, color.to_uint8(rgb)


def idea_dq(image: np.ndarray, args) -> dict:
    an = _analysis(image)
    out = {"ref": []} | {f"dq{f}": [] for f in args.dq_steps}
    for q in QUALITIES:
        _, delta = _delta(q)
        out["ref"].append(_measure(wavecode.encode(an, delta, wavecode.WaveletConfig(exact=False, sweeps=2)), image))
        for f in args.dq_steps:
            data, img8 = _dq_file(an, delta, f, wavecode.RDOQ * delta * delta)
            out[f"dq{f}"].append(_measure(data, image, img8))
    return out


def idea_mismatch(image: np.ndarray, args) -> dict:
    an = _analysis(image)
    acc = {"model": 0.0, "empirical": 0.0, "three_parameter": 0.0}
    original = context.fit_hist

    def counting(hist, pred=None):
        for row in hist:
            if not row.any():
                continue
            n, nnz = row.sum(), row[1:].sum()
            acc["model"] += float(entropy.two_ratio_bits(row.astype(np.float64)).min() - nnz)
            p = row[row > 0] / n
            acc["empirical"] += float(-(row[row > 0] * np.log2(p)).sum())
            n0, n1, nt = row[0], row[1], row[2:].sum()
            ex = (row[2:] * np.arange(len(row) - 2)).sum()
            b = -sum(c * np.log2(c / n) for c in (n0, n1, nt) if c)
            if nt and ex:
                t = ex / (ex + nt)
                b -= nt * np.log2(1 - t) + ex * np.log2(t)
            acc["three_parameter"] += float(b)
        return original(hist) if pred is None else original(hist, pred)

    for q in QUALITIES:
        codes, _ = wavecode.quantize(an, _delta(q)[1], _STATE["cfg"])
        context.fit_hist = counting
        try:
            for group in codes:
                for lv, c in context.coding_order(len(group), len(group[0])):
                    if group[lv][c].any():
                        context._best_mode(group, lv, c, 8)
        finally:
            context.fit_hist = original
    return acc


IDEAS = {"rdoq": idea_rdoq, "recon": idea_recon, "context": idea_context, "search": idea_search, "dq": idea_dq,
         "mismatch": idea_mismatch}


def summarise(idea: str, per_image: list[dict]) -> dict:
    """The figures of an idea over all images (BD-rates on the mean curve, or summed bits)."""
    if idea in ("rdoq", "search"):
        return {"bd_rate_percent": _mean_bd([r["ref"] for r in per_image], [r["test"] for r in per_image])}
    if idea == "recon":
        return {k: _mean_bd([r["ref"] for r in per_image], [r[k] for r in per_image]) for k in ("subband", "global")}
    if idea == "dq":
        keys = [k for k in per_image[0] if k != "ref"]
        return {k: _mean_bd([r["ref"] for r in per_image], [r[k] for r in per_image]) for k in keys}
    if idea == "context":
        base = np.log(np.array([r["None"] for r in per_image], dtype=np.float64))
        return {k: list(np.round(100 * (np.exp((np.log(np.array([r[k] for r in per_image], dtype=np.float64)) - base)
                                               .mean(axis=0)) - 1), 3))
                for k in per_image[0] if k != "None"}
    tot = {k: sum(r[k] for r in per_image) for k in per_image[0]}
    return {"bytes": {k: round(v / 8) for k, v in tot.items()},
            "saving_percent": {k: 100 * (1 - tot[k] / tot["model"]) for k in tot if k != "model"}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--idea", choices=sorted(IDEAS), required=True)
    ap.add_argument("--limit", type=int, default=24, help="the first N images (sorted by name)")
    ap.add_argument("--sweeps", type=int, default=wavecode.SWEEPS, help="rdoq: sweeps of the exact RDOQ")
    ap.add_argument("--dq-steps", type=lambda s: [float(v) for v in s.split(",")], default=[0.6],
                    help="dq: DQ steps as fractions of the codec's step")
    ap.add_argument("--rdoq", choices=sorted(RDOQ_CFG), default="exact",
                    help="recon, context, search, mismatch: quantize with 0.23's RDOQ (exact) or 0.22's (own)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON")
    args = ap.parse_args(argv)
    _STATE["cfg"] = RDOQ_CFG[args.rdoq]
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() == ".png")[: args.limit]
    per_image, t0 = [], time.perf_counter()
    for f in files:
        image = imageio.as_array(f).astype(np.float64)  # [0, 1]
        per_image.append(IDEAS[args.idea](image, args))
        print(f"{f.name} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    summary = {"idea": args.idea, "rdoq": args.rdoq, "images": [f.name for f in files], "qualities": list(QUALITIES),
               "summary": summarise(args.idea, per_image), "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(summary["summary"], indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary | {"per_image": per_image}, indent=1, default=float))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
