"""A critically sampled wavelet basis coded by inrc's own context coder (probe, not built).

The hybrid's synthesis is an overcomplete pyramid (4/3 values per pixel and channel, one isotropic
atom per level).  JPEG 2000 codes the same image with the CDF 9/7 wavelet: one value per pixel,
three oriented subbands per level.  This probe asks what the hybrid's context coder (the classes,
the two-ratio distributions and the sign contexts of :mod:`codec.context`, real range-coded bytes)
would write for the wavelet's coefficients instead, with no training, no L1 refit and no filters:

1. RGB -> JFIF YCbCr or the image's colour rotation (:mod:`codec.color`), minus the centre; 9/7
   lifting with whole-sample symmetric extension (ISO/IEC 15444-1, Annex F; Daubechies and
   Sweldens 1998), ``--levels`` levels.
2. Each subband ``b`` gets the step ``Delta_b = Delta kappa_c / ||g_b||`` (``||g_b||``: the norm of
   one of its synthesis functions, so that every subband adds the same MSE per unit of error;
   ``kappa_c`` the chroma factor), snapped to :mod:`codec.quant`'s step table; values are rounded
   with a deadzone: ``q = sign(x) floor(|x| / Delta_b + theta)`` (``theta = 0.5``: plain rounding).
3. Optionally (``--rdoq m``) a greedy RDOQ of the rounded values, :func:`codec.wavecode.rdoq_group`,
   with ``lambda = m Delta^2``.
4. The three orientations are coded as three pyramids (level ``l``'s HL plane has level ``l + 1``'s
   HL plane as its parent, chroma planes the luma plane of their level, exactly the hybrid's
   contexts), the low band as a fourth pyramid of one level; bytes = the range coder's words + the
   planes' side information (:func:`codec.bitstream.pack_context_side`, version 9 syntax) + the
   28-byte container.
5. Decode: inverse lifting, back to RGB, the 8-bit rounding of :func:`codec.color.to_uint8`; PSNR
   over RGB against the original.
6. Optionally (``--post HIDDEN,STEPS``) the hybrid's post filter fitted to the rendering
   (:func:`with_post_filter`), its coded block added to the bytes; kept where it lowers
   ``SSE + lambda R``.

Output: a folder with ``per_image.csv`` in ``inrc bench``'s columns (one curve per ``theta`` and RDOQ
multiplier, named ``wavelet-t<theta>[-r<m>][-p<hidden>]``, setting = ``Delta``), so that
``benchmarks/compare_runs.py`` compares it with any bench run.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from codec import bitstream, color, context, imageio, metrics, pyramid, quant, rdoq, wavecode, wavelet

# The transform and the RDOQ were built into the codec in 0.22 (codec.wavelet, codec.wavecode); the
# probe uses them, so its figures are those of the same arithmetic.
dwt2 = wavelet.analyse
band_norms = wavelet.band_norms
rdoq_pyramid = wavecode.rdoq_group


def quantize(x: np.ndarray, step: float, theta: float) -> np.ndarray:
    return (np.sign(x) * np.floor(np.abs(x) / step + theta)).astype(np.int32)


def code_pyramid(planes: list[list[np.ndarray]], idx: list[list[int]]) -> int:
    """Bytes of the hybrid's context code for ``planes[level][channel]`` (payload and side information)."""
    records, words = context.encode_planes(planes, idx)
    return len(context.pack_side(records, len(planes), len(planes[0]))) + len(words)


def encode(image: np.ndarray, delta: float, theta: float, levels: int, kappa: float, norms,
           rdoq_lambda: float = 0.0, sweeps: int = 2, word: int = 0) -> tuple[int, np.ndarray, float, np.ndarray]:
    """Bytes, the decoded uint8 image, the seconds of its reconstruction (dequantization, inverse
    transform, colour and rounding; no entropy decoding) and the float rendering in the coded colour
    space minus its centre, ``(H, W, 3)``, for one step ``delta`` (in [0, 1] units);
    ``rdoq_lambda > 0``: :func:`rdoq_pyramid` with ``lam = rdoq_lambda * delta^2`` after the rounding;
    ``word``: the colour space (:func:`codec.color.matrices`; 0: JFIF YCbCr)."""
    h, w, _ = image.shape
    fwd, inv, _ = (m.astype(np.float64) for m in color.matrices(word))
    ycc = image @ fwd.T  # centred: the centre is added and removed again
    cw = rdoq.colour_weights(3, word).double().numpy()  # (M^T M)_cc
    n_ll, n_b = norms
    lls, idx_ll = [], []
    # planes[o][lv][c], their steps' indices and the unquantized values in steps
    planes = [[[None] * 3 for _ in range(levels)] for _ in range(3)]
    idx_b = [[[0] * 3 for _ in range(levels)] for _ in range(3)]
    ratios = [[[None] * 3 for _ in range(levels)] for _ in range(3)]
    for c in range(3):
        ll, bs = dwt2(ycc[..., c].astype(np.float64), levels)
        k = kappa if c else 1.0
        i = quant.index_for_step(delta * k / n_ll)
        lls.append(quantize(ll, quant.step_from_index(i), theta))
        idx_ll.append(i)
        for lv, lvb in enumerate(bs):
            for o, b in enumerate(lvb):
                i = quant.index_for_step(delta * k / n_b[lv][o])
                st = quant.step_from_index(i)
                planes[o][lv][c] = quantize(b, st, theta)
                idx_b[o][lv][c] = i
                ratios[o][lv][c] = b / st
    total = bitstream.OVERHEAD + code_pyramid([lls], [idx_ll])
    for o in range(3):
        if rdoq_lambda > 0:
            # one step of channel c adds (delta kappa_c)^2 (M^T M)_cc of RGB squared error
            wts = [float((delta * (kappa if c else 1.0)) ** 2 * cw[c]) for c in range(3)]
            rdoq_pyramid(planes[o], ratios[o], wts, rdoq_lambda * delta * delta, sweeps)
        total += code_pyramid(planes[o], idx_b[o])
    t0 = time.perf_counter()
    out = np.empty((h, w, 3))
    for c in range(3):
        s_ll = quant.step_from_index(idx_ll[c])
        bs = [tuple(planes[o][lv][c] * quant.step_from_index(idx_b[o][lv][c]) for o in range(3))
              for lv in range(levels)]
        out[..., c] = wavelet.synthesise(lls[c] * s_ll, bs, h, w)
    rgb = out @ inv.T
    out8 = color.to_uint8(rgb)
    return total, out8, time.perf_counter() - t0, out


def _cost_of(arr: np.ndarray, img: np.ndarray, nbytes: int, lam: float) -> float:
    """``SSE + lam R`` of a decoded image ``img`` against ``arr`` (uint8), SSE in [0, 1] RGB units."""
    return metrics.mse(arr, img) / 255**2 * arr.size + lam * 8 * nbytes


def with_post_filter(image: np.ndarray, out: np.ndarray, word: int, hidden: int, steps: int) -> tuple[int, np.ndarray]:
    """The hybrid's post filter (:mod:`codec.postfilter`, format v7) fitted to the probe's rendering
    ``out`` (:func:`encode`'s last value): its coded block's bytes and the filtered uint8 image."""
    import torch

    from codec import postfilter

    _, inv, centre = color.matrices(word)
    y = np.ascontiguousarray((out + centre).transpose(2, 0, 1), dtype=np.float32)
    target = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
    tensors = postfilter.fit(torch.from_numpy(y), target, rdoq.colour_matrix(3, None, word),
                             rdoq.colour_centre(3, None, word), hidden, steps)
    record = postfilter.quantize(tensors)
    h, w = y.shape[1:]
    fixed = y + postfilter.correction(lambda r0, r1: y[:, r0:r1], h, w, record, 3)
    rgb = (fixed.transpose(1, 2, 0) - centre) @ inv.T
    return len(bitstream.pack_post_filter(record, 3)), color.to_uint8(rgb)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--kappa", type=float, default=None,
                    help="chroma step factor (default codec.pyramid.chroma_kappa: 1.5 for YCbCr, 1.15 for a rotation)")
    ap.add_argument("--theta", default="0.4", help="deadzone rounding offsets, comma-separated (0.5: rounding)")
    ap.add_argument("--rdoq", default="0", help="RDOQ multipliers (lambda = m Delta^2), comma-separated; 0: none")
    ap.add_argument("--colour", choices=("ycbcr", "adaptive"), default="ycbcr",
                    help="JFIF YCbCr, or the image's rotation (codec.color.adaptive_word)")
    ap.add_argument("--sweeps", type=int, default=2, help="RDOQ sweeps")
    ap.add_argument("--post", default=None, metavar="HIDDEN,STEPS",
                    help="also fit the hybrid's post filter to each file (curve <name>-p<hidden>), kept where "
                    "it lowers SSE + lambda R (lambda = m Delta^2 of --rdoq, else 0.25 Delta^2)")
    ap.add_argument("--deltas", default="0.8,0.56,0.4,0.28,0.2,0.14,0.1,0.07,0.05,0.035,0.025",
                    help="luma steps in [0, 1] units, comma-separated")
    ap.add_argument("--out", required=True, help="a folder: per_image.csv as inrc bench writes it "
                    "(curve wavelet-t<theta>, setting = Delta), for benchmarks/compare_runs.py")
    a = ap.parse_args(argv)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in a.images:
        image = imageio.to_array(imageio.open_image(path))[..., :3].astype(np.float64)
        if image.shape[2] != 3 or image.shape[0] % (1 << a.levels) or image.shape[1] % (1 << a.levels):
            raise SystemExit(f"{path}: needs an RGB image whose sides are multiples of 2^{a.levels}")
        arr = color.to_uint8(image)
        norms = band_norms(*image.shape[:2], a.levels)
        word = color.adaptive_word(image.astype(np.float32)) if a.colour == "adaptive" else 0
        kappa = a.kappa if a.kappa is not None else pyramid.chroma_kappa(word)
        stats = json.dumps({"levels": a.levels, "kappa": kappa, "sweeps": a.sweeps, "colour_word": word})
        for theta, mult in [(t, m) for t in map(float, a.theta.split(",")) for m in map(float, a.rdoq.split(","))]:
            name = f"wavelet-t{theta:g}" + (f"-r{mult:g}" if mult else "")
            for d in map(float, a.deltas.split(",")):
                t0 = time.perf_counter()
                n, out, t_rec, rendering = encode(image, d, theta, a.levels, kappa, norms, mult, a.sweeps, word)
                seconds = time.perf_counter() - t0
                versions = [(name, n, out, seconds, stats)]
                if a.post:
                    hidden, steps = (int(v) for v in a.post.split(","))
                    t1 = time.perf_counter()
                    extra, filtered = with_post_filter(image, rendering, word, hidden, steps)
                    lam = (mult or 0.25) * d * d  # SSE in [0, 1] RGB units per bit, as RDOQ's
                    kept = _cost_of(arr, filtered, n + extra, lam) < _cost_of(arr, out, n, lam)
                    versions.append((f"{name}-p{hidden}", n + extra if kept else n, filtered if kept else out,
                                     seconds + time.perf_counter() - t1,
                                     json.dumps({**json.loads(stats), "post_filter": hidden if kept else 0,
                                                 "post_filter_bytes": extra})))
                for label, nbytes, img, secs, st in versions:
                    rows.append({"image": Path(path).name, "codec": label, "setting": f"{d:g}", "bytes": nbytes,
                                 "bpp": nbytes * 8 / (arr.shape[0] * arr.shape[1]), "psnr": metrics.psnr(arr, img),
                                 "ms_ssim": metrics.ms_ssim(arr, img), "mse": metrics.mse(arr, img),
                                 "encoding_time": round(secs, 3), "decoding_time": round(t_rec, 3), "encoder_stats": st})
                    print(json.dumps({k: rows[-1][k] for k in ("image", "codec", "setting", "bytes", "bpp", "psnr")}),
                          flush=True)
    with (out_dir / "per_image.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out_dir / "args.json").write_text(json.dumps(vars(a), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
