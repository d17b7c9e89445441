"""Direction-adaptive lifting for the wavelet basis: does it pay on Kodak? (probe; 0.24, not built)

The wavelet basis (:mod:`codec.wavelet`) filters every level along the rows and then along the
columns, so an edge or a texture at an angle leaves energy in all three detail bands.  Direction-
adaptive lifting (Chang and Girod, "Direction-adaptive discrete wavelet transform for image
compression", IEEE TIP 2007; Ding et al., "Adaptive directional lifting-based wavelet transform",
IEEE TIP 2007) keeps the 9/7 lifting steps but takes each step's two neighbours along a direction
chosen per block: along axis 0 of an array split into even rows ``s`` and odd rows ``d``::

    d_i(j) += ALPHA (s_i(j - t) + s_{i+1}(j + t))      s_i(j) += BETA (d_{i-1}(j - t) + d_i(j + t))
    (then GAMMA and DELTA the same way)

``t`` (columns per row, here -2, -1, -1/2, 0, 1/2, 1, 2; half samples by linear interpolation,
column indices clamped at the borders) is constant over a block of ``--block`` x ``--block``
samples of the level's input, one map for the row stage and one for the column stage of each of
the ``--da-levels`` finest levels, chosen on luma: per block the ``t`` whose transform (computed with
that ``t`` everywhere) leaves the smallest L1 norm of its high band there, if it beats ``t = 0`` by
more than ``--margin``.  Each step reads only the other half, so synthesis inverts it exactly
whatever the maps.  Everything else is the codec's: colour rotation, subband steps (the 9/7's
norms, not recomputed for the directional atoms), RDOQ (``fast``'s), context coding, and the
decoder's own dequantization, with :func:`codec.wavelet.synthesise` replaced by the directional
synthesis.  The maps' side information is charged as their empirical entropy per map plus 24 bits
(an estimate of an adaptive code: no format carries them).

Reports per image and quality ``(bpp, PSNR, SSE)`` of the plain file (which must be the codec's
``fast`` bytes, checked) and of the directional one, D + lambda R per point and the BD-rate on the
mean curve.

With ``--per-step`` the maps are chosen per quality instead, by the lowest ``L1 / step + margin``
bits per directional block (``--margin`` then in bits).  The measured run (0.24.0, 2 cores; its
figures are in benchmarks/README.md)::

    .venv/bin/python benchmarks/da_lifting_probe.py ../shared/data/kodak/kodim{01,05,08,13,19,23}.png \
        --da-levels 2 --per-step --margin 6 12 --check --out benchmarks/results/da_lifting_probe.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

import codec
from codec import color, imageio, wavecode, wavelet
from codec.wavelet import ALPHA, BETA, DELTA, GAMMA, K

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wavelet_ideas_probe import QUALITIES, _analysis, _delta, _mean_bd, _measure  # the same curves and points

OFFSETS = (0.0, -0.5, 0.5, -1.0, 1.0, -2.0, 2.0)
_PLAIN_SYNTH = wavelet.synthesise
_STATE: dict = {"maps": None}


def _shift(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``a_i(j + t_ij)`` along axis 1 (linear interpolation between columns, indices clamped)."""
    m = a.shape[1]
    pos = np.arange(m)[None, :] + t
    j0 = np.floor(pos)
    f = pos - j0
    j0 = j0.astype(np.int64)
    lo = np.take_along_axis(a, np.clip(j0, 0, m - 1), axis=1)
    if not f.any():
        return lo
    hi = np.take_along_axis(a, np.clip(j0 + 1, 0, m - 1), axis=1)
    return lo * (1 - f) + hi * f


def _pair(a: np.ndarray, t: np.ndarray, after: bool) -> np.ndarray:
    """``a_i(j - t) + a_{i+1}(j + t)`` (``after``) or ``a_{i-1}(j - t) + a_i(j + t)``, with the
    symmetric extension of :mod:`codec.wavelet` at the ends of axis 0."""
    if after:
        first, second = a, np.concatenate([a[1:], a[-1:]])
    else:
        first, second = np.concatenate([a[:1], a[:-1]]), a
    return _shift(first, -t) + _shift(second, t)


def _tmap(dmap: np.ndarray | None, rows: int, cols: int, block: int) -> np.ndarray:
    """Per-sample offsets of a ``rows x cols`` half (rows are pairs: a block spans ``block // 2``)."""
    if dmap is None:
        return np.zeros((rows, cols))
    t = np.asarray(OFFSETS)[dmap]
    t = np.repeat(np.repeat(t, max(block // 2, 1), axis=0), block, axis=1)
    return t[:rows, :cols]


def analyse_axis0(x: np.ndarray, dmap: np.ndarray | None, block: int) -> tuple[np.ndarray, np.ndarray]:
    if x.shape[0] % 2:
        x = np.concatenate([x, x[-2:-1] if x.shape[0] > 1 else x[:1]])
    s, d = x[0::2].copy(), x[1::2].copy()
    t = _tmap(dmap, s.shape[0], s.shape[1], block)
    d += ALPHA * _pair(s, t, True)
    s += BETA * _pair(d, t, False)
    d += GAMMA * _pair(s, t, True)
    s += DELTA * _pair(d, t, False)
    return s / K, d * K


def synthesise_axis0(low: np.ndarray, high: np.ndarray, n: int, dmap: np.ndarray | None, block: int) -> np.ndarray:
    s, d = low * K, high / K
    t = _tmap(dmap, s.shape[0], s.shape[1], block)
    s -= DELTA * _pair(d, t, False)
    d -= GAMMA * _pair(s, t, True)
    s -= BETA * _pair(d, t, False)
    d -= ALPHA * _pair(s, t, True)
    x = np.empty((2 * s.shape[0],) + s.shape[1:], dtype=s.dtype)
    x[0::2], x[1::2] = s, d
    return x[:n]


def _block_l1(h: np.ndarray, block: int) -> np.ndarray:
    """Sum of |h| per block (rows are pairs)."""
    bp = max(block // 2, 1)
    r, c = -(-h.shape[0] // bp), -(-h.shape[1] // block)
    pad = np.zeros((r * bp, c * block))
    pad[: h.shape[0], : h.shape[1]] = np.abs(h)
    return pad.reshape(r, bp, c, block).sum(axis=(1, 3))


def _map_shape(shape: tuple[int, ...], block: int) -> tuple[int, int]:
    """The block map's shape for lifting an ``(n, m)`` array along axis 0."""
    pairs = -(-shape[0] // 2)
    return -(-pairs // max(block // 2, 1)), -(-shape[1] // block)


def _choose(costs: list[np.ndarray], margin: float, step: float | None = None) -> np.ndarray:
    """Per block the offset index: with ``step``, the lowest ``L1 / step + margin [t != 0]`` (a rate
    proxy in steps plus ``margin`` bits of side information per directional block); without, the
    lowest L1 if it beats ``t = 0``'s by more than the fraction ``margin``."""
    c = np.stack(costs)
    if step is not None:
        c = c / step
        c[1:] += margin
        return c.argmin(axis=0)
    best = c.argmin(axis=0)
    keep0 = c[best, np.arange(c.shape[1])[:, None], np.arange(c.shape[2])[None, :]] >= (1 - margin) * c[0]
    return np.where(keep0, 0, best)


def choose_maps(luma: np.ndarray, levels: int, da_levels: int, block: int, margin: float,
                steps: list[tuple[float, float]] | None = None) -> list:
    """Per level ``(row stage map, column stage map)`` chosen on ``luma`` (None beyond ``da_levels``);
    ``steps``: per level the luma steps of the row stage's and the column stage's high bands (then
    ``margin`` is in bits per directional block, see :func:`_choose`)."""
    maps, x = [], luma
    for lv in range(levels):
        if lv >= da_levels:
            maps.append((None, None))
            lo, hi = analyse_axis0(x.T, None, block)
            x = analyse_axis0(lo.T, None, block)[0]
            continue
        costs = [_block_l1(analyse_axis0(x.T, np.full(_map_shape(x.T.shape, block), k), block)[1], block)
                 for k in range(len(OFFSETS))]
        m_rows = _choose(costs, margin, None if steps is None else steps[lv][0])
        lo, hi = analyse_axis0(x.T, m_rows, block)
        costs = []
        for k in range(len(OFFSETS)):
            full = np.full(_map_shape(lo.T.shape, block), k)
            costs.append(_block_l1(analyse_axis0(lo.T, full, block)[1], block)
                         + _block_l1(analyse_axis0(hi.T, full, block)[1], block))
        m_cols = _choose(costs, margin, None if steps is None else steps[lv][1])
        maps.append((m_rows, m_cols))
        x = analyse_axis0(lo.T, m_cols, block)[0]
    return maps


def analyse(x: np.ndarray, levels: int, maps: list, block: int) -> tuple[np.ndarray, wavelet.Bands]:
    bands = []
    for lv in range(levels):
        mr, mc = maps[lv]
        lo, hi = analyse_axis0(x.T, mr, block)
        ll, lh = analyse_axis0(lo.T, mc, block)
        hl, hh = analyse_axis0(hi.T, mc, block)
        bands.append((hl, lh, hh))
        x = ll
    return x, bands


def synthesise(ll: np.ndarray, bands: wavelet.Bands, height: int, width: int) -> np.ndarray:
    maps, block = _STATE["maps"], _STATE["block"]
    sizes = wavelet.level_sizes(height, width, len(bands))
    x = ll
    for lv in reversed(range(len(bands))):
        mr, mc = maps[lv]
        hl, lh, hh = bands[lv]
        h, w = sizes[lv]
        lo = synthesise_axis0(x, lh, h, mc, block).T
        hi = synthesise_axis0(hl, hh, h, mc, block).T
        x = synthesise_axis0(lo, hi, w, mr, block).T
    return np.ascontiguousarray(x).astype(np.float32)


def side_bits(maps: list) -> float:
    bits = 0.0
    for pair in maps:
        for m in pair:
            if m is None:
                continue
            n = np.bincount(m.ravel(), minlength=len(OFFSETS)).astype(np.float64)
            p = n[n > 0] / n.sum()
            bits += float(-(n[n > 0] * np.log2(p)).sum()) + 24
    return bits


@contextlib.contextmanager
def directional(maps: list, block: int) -> Iterator[None]:
    """The decoder synthesises with these maps (:func:`synthesise` in place of
    :func:`codec.wavelet.synthesise`) within the block, the plain 9/7 again after it."""
    _STATE.update(maps=maps, block=block)
    wavelet.synthesise = synthesise
    try:
        yield
    finally:
        wavelet.synthesise = _PLAIN_SYNTH


def run_image(path: Path, args) -> dict:
    image = imageio.to_array(imageio.open_image(path))
    an = _analysis(image)
    spec = an.spec
    t = color.rgb_to_ycbcr(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), spec.colour).numpy()
    planes = [t[..., ch].astype(np.float64) - 0.5 for ch in range(spec.channels)]
    pixels = spec.width * spec.height
    res = {"image": path.name, "pixels": pixels, "plain": [], "da": {}}
    plain = {}
    for q in QUALITIES:
        lam, delta = _delta(q)
        plain[q] = wavecode.encode(an, delta)
        res["plain"].append(_measure(plain[q], image) + (lam,))
    if args.check:  # the plain file must be the codec's own fast file
        res["check_same_bytes"] = codec.encode(image, quality=QUALITIES[2], preset="fast") == plain[QUALITIES[2]]
        print(path.name, "plain file == codec fast file:", res["check_same_bytes"], flush=True)
    _, n_b = an.norms
    for margin in args.margin:
        key = f"{'bits' if args.per_step else 'margin'}{margin}"
        pts, sides, shares = [], [], []
        maps = None
        for q in QUALITIES:
            lam, delta = _delta(q)
            if maps is None or args.per_step:
                steps = [(delta / n_b[lv][0], delta / n_b[lv][1]) for lv in range(spec.levels)] if args.per_step else None
                maps = choose_maps(planes[0], spec.levels, args.da_levels, args.block, margin, steps)
                extra = side_bits(maps)
                an.coeffs = [analyse(p, spec.levels, maps, args.block) for p in planes]
            with directional(maps, args.block):
                bpp, psnr, sse = _measure(wavecode.encode(an, delta), image)
            pts.append((bpp + extra / pixels, psnr, sse, lam))
            sides.append(extra / 8)
            shares.append([round(float(np.mean(m != 0)), 3) for pair in maps for m in pair if m is not None])
        res["da"][key] = {"points": pts, "side_bytes": sides, "share_directional": shares}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--da-levels", type=int, default=3)
    ap.add_argument("--margin", type=float, nargs="+", default=[0.05])
    ap.add_argument("--per-step", action="store_true",
                    help="choose the maps per quality, --margin in bits per directional block against L1 in steps")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results = []
    for path in args.images:
        t0 = time.time()
        r = run_image(path, args)
        r["seconds"] = time.time() - t0
        results.append(r)
        n = r["pixels"]
        for key, v in r["da"].items():
            dj = [100 * ((b[2] + b[3] * b[0] * n) / (a[2] + a[3] * a[0] * n) - 1) for a, b in zip(r["plain"], v["points"])]
            bd = _mean_bd([r["plain"]], [v["points"]])
            print(f"{path.name} {key}: BD {bd:+.2f} %  dJ {' '.join(f'{x:+.2f}' for x in dj)}  side {' '.join(f'{u:.0f}' for u in v['side_bytes'])} B  "
                  f"directional {v['share_directional'][2]} (q{QUALITIES[2]})", flush=True)
    summary = {}
    for key in results[0]["da"]:
        summary[key] = _mean_bd([r["plain"] for r in results], [r["da"][key]["points"] for r in results])
        print(f"mean curve {key}: BD-rate {summary[key]:+.2f} %")
    if args.out:
        args.out.write_text(json.dumps({"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                                 if k != "images"}, "images": [str(p) for p in args.images],
                                        "results": results, "mean_bd": summary}, indent=1))


if __name__ == "__main__":
    main()
