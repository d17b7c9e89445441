"""The experiment the idea starts from: ReLU vs positional encoding vs Fourier features vs SIREN.

For one image, each family is encoded (a) at the default setting (quality 75, default steps) and
(b) under equal wall-clock budgets, at about equal parameter count (quality 75 sets the count).
Every figure is measured on the written file: bpp from its size, PSNR on its 8-bit decode.
JPEG (Pillow, optimize=True, 4:2:0) at the quality whose size is closest is listed beside it.

    python benchmarks/mlp_families.py ../shared/data/kodak/kodim23.png --out benchmarks/results/mlp_families
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import codec
from codec import color, imageio
from codec.demo import jpeg_at_size

FAMILIES = ("relu", "pe", "fourier", "siren")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image")
    ap.add_argument("--out", default="benchmarks/results/mlp_families")
    ap.add_argument("--budgets", default="15,45", help="equal-time budgets in seconds")
    ap.add_argument("--crop", default="256,128,192,192", help="x,y,w,h of the crop shown in the figure")
    ap.add_argument("--plot-only", action="store_true", help="redraw the figure from results.json and the saved files")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    img = imageio.as_array(args.image)
    ref = color.to_uint8(img)
    h, w = ref.shape[:2]
    crop = [int(v) for v in args.crop.split(",")]
    if args.plot_only:
        saved = json.loads((out / "results.json").read_text())
        decoded = {f: np.asarray(codec.decode((out / f"{f}.inr").read_bytes())) for f in FAMILIES}
        plot(saved["runs"], decoded, ref, crop, out / "mlp_families.png", saved["meta"])
        return
    rows = []
    decoded = {}
    for fam in FAMILIES:
        runs = [("default", {})] + [(f"{s}s", {"seconds": float(s)}) for s in args.budgets.split(",")]
        for label, extra in runs:
            r = codec.encode_image(img, model=fam, **extra)
            q, jb, jp = jpeg_at_size(ref, r.bytes)
            row = {"model": fam, "setting": label, **r.as_dict(), "jpeg_quality": q, "jpeg_bpp": round(jb * 8 / (w * h), 4),
                   "jpeg_psnr": round(jp, 2)}
            row.pop("step_indices", None)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if label == "default":
                imageio.write_bytes(out / f"{fam}.inr", r.data)
                decoded[fam] = np.asarray(codec.decode(r.data))
    meta = {"image": Path(args.image).name, "size": [w, h], "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "torch": torch.__version__, "codec": codec.__version__, "date": time.strftime("%Y-%m-%d")}
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1) + "\n")
    plot(rows, decoded, ref, crop, out / "mlp_families.png", meta)


def plot(rows, decoded, ref, crop, path, meta) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y, cw, ch = crop
    fig = plt.figure(figsize=(11, 4.4))
    gs = fig.add_gridspec(2, 5)
    ax = fig.add_subplot(gs[:, :2])
    for fam in FAMILIES:
        pts = sorted((r["seconds"], r["psnr"]) for r in rows if r["model"] == fam)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=fam)
    ax.set_xlabel("encode seconds (2 CPU cores)")
    ax.set_ylabel("PSNR (dB, 8-bit RGB)")
    ax.set_title(f"{meta['image']}, ~equal parameters")
    ax.grid(alpha=0.3)
    ax.legend()
    panels = [("original", ref)] + [(f, decoded[f]) for f in FAMILIES]
    for k, (name, im) in enumerate(panels):
        a = fig.add_subplot(gs[k // 3, 2 + k % 3])
        a.imshow(im[y : y + ch, x : x + cw])
        psnr = "" if name == "original" else f" {next(r['psnr'] for r in rows if r['model'] == name and r['setting'] == 'default'):.1f} dB"
        a.set_title(name + psnr, fontsize=8)
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
