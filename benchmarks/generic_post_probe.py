"""Probe (not used by the codec): one generic post filter for every file, trained offline, zero bytes.

    .venv/bin/python benchmarks/generic_post_probe.py ../shared/data/kodak/kodim0{1,2,3,4,5,6,7,8}.png \\
        --cache /tmp/gp/enc --configs 8,0,1500 12,1,3000 --out benchmarks/results/generic_post_probe.json

The per-image post filter (:mod:`codec.postfilter`) costs 150-450 bytes, so it pays only on files
of several kilobytes and is not fitted under ``post_min_bytes``.  A filter trained once on other
images and shipped with the decoder would cost nothing in the file (a 4-bit strength at most), so it
could serve ``fast`` and small files too, as the CNN loop filters of video codecs do.  This probe
asks whether the hybrid's output has enough generic structure for one:

* Training pairs: the preset's files (``fast`` by default, ``seconds=600`` so the bytes do not depend
  on the machine's speed) of nine sample photos that ship with scikit-image and matplotlib
  (:func:`training_images`; none of them is a Kodak image), decoded to 8-bit RGB, and the originals.
* The filter: ``y + s * P(y)`` on the decoded RGB ``y`` with ``P`` 3x3 conv, ReLU, [1x1 conv, ReLU,]
  3x3 conv (``hidden`` channels; the last layer starts at zero), trained by Adam on random 96x96
  crops of every pair, 16 a batch, with a cosine schedule.
* Scored on the test images' files: for each file the strength ``s`` in ``0, 1/8, ..., 2`` that
  gives the highest PSNR of the rounded 8-bit output (what an encoder could choose and send), and per
  image the BD-rate of the filtered points (one byte more each) against the files as written.

``--cache DIR`` keeps the encoded files (``<stem>-q<quality>.inr``) and reuses them.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import probe_cli
import torch
from torch import nn

import codec
from codec import imageio, metrics
from codec.bdrate import bd_rate

SCALES = np.arange(0.0, 2.0 + 1e-9, 0.125)


def training_images() -> dict[str, np.ndarray]:
    """Nine colour photos that ship with scikit-image and matplotlib, at most 768x600."""
    import os

    import matplotlib
    import skimage.data as d
    import skimage.io
    from PIL import Image

    root = os.path.dirname(d.__file__)
    retina = np.asarray(Image.fromarray(d.retina()).resize((768, 768), Image.LANCZOS))[128:640]
    hopper = Image.open(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))
    return {"astronaut": d.astronaut(), "chelsea": d.chelsea(), "coffee": d.coffee(), "rocket": d.rocket(),
            "hubble": d.hubble_deep_field()[100:612, 100:868], "retina": retina,
            "ihc": d.immunohistochemistry(),
            "moto": skimage.io.imread(os.path.join(root, "motorcycle_left.png"))[:, :, :3],
            "hopper": np.asarray(hopper.convert("RGB"))}


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 or [0, 1] float ``(H, W, 3)`` -> float32 ``(3, H, W)`` in [0, 1]."""
    a = np.asarray(rgb)
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)


def pairs(images: dict[str, np.ndarray], qualities: list[int], preset: str, cache: Path | None) -> list[dict]:
    """Each image's files at each quality: ``{name, quality, bytes, y (decoded), x (original)}``."""
    out = []
    for name, img in images.items():
        x = to_tensor(img)
        for q in qualities:
            path = None if cache is None else cache / f"{name}-q{q}.inr"
            if path is not None and path.exists():
                data = path.read_bytes()
            else:
                data = codec.encode(img, quality=q, preset=preset, seconds=600.0, quiet=True)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
            y = to_tensor(np.asarray(codec.decode(data).convert("RGB")))
            out.append({"name": name, "quality": q, "bytes": len(data), "y": y, "x": x})
    return out


class GenericFilter(nn.Module):
    """``P(y)``: 3x3 conv, ReLU, optionally 1x1 conv and ReLU, 3x3 conv (zero at the start)."""

    def __init__(self, hidden: int, mid: bool) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, hidden, 3, padding=1, padding_mode="replicate")
        self.mid = nn.Conv2d(hidden, hidden, 1) if mid else None
        self.c2 = nn.Conv2d(hidden, 3, 3, padding=1, padding_mode="replicate")
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c1(y - 0.5))
        if self.mid is not None:
            h = torch.relu(self.mid(h))
        return self.c2(h)

    def macs_per_pixel(self) -> int:
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Conv2d))


def train(data: list[dict], hidden: int, mid: bool, steps: int, lr: float, seed: int = 0,
          crop: int = 96, batch: int = 16) -> GenericFilter:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = GenericFilter(hidden, mid)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1.0 + np.cos(np.pi * step / steps))
        ys, xs = [], []
        for _ in range(batch):
            p = data[int(torch.randint(len(data), (1,), generator=gen))]
            _, h, w = p["y"].shape
            i = int(torch.randint(h - crop + 1, (1,), generator=gen))
            j = int(torch.randint(w - crop + 1, (1,), generator=gen))
            ys.append(p["y"][:, i:i + crop, j:j + crop])
            xs.append(p["x"][:, i:i + crop, j:j + crop])
        y, x = torch.stack(ys), torch.stack(xs)
        loss = ((y + net(y) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def psnr(a: torch.Tensor, x: torch.Tensor) -> float:
    """:func:`codec.metrics.psnr` of two ``(3, H, W)`` images in [0, 1] that hold 8-bit values."""
    return metrics.psnr(*(np.rint(t.permute(1, 2, 0).numpy() * 255.0).astype(np.uint8) for t in (a, x)))


def score(net: GenericFilter, data: list[dict]) -> dict:
    """Per file the best strength's PSNR gain, per image the BD-rate (filtered files one byte larger)."""
    rows = []
    with torch.no_grad():
        for p in data:
            corr = net(p["y"][None])[0]
            gains = [(psnr((p["y"] + s * corr).clamp(0, 1), p["x"]), float(s)) for s in SCALES]
            best, s = max(gains)
            base = psnr(p["y"], p["x"])
            rows.append({"image": p["name"], "quality": p["quality"], "bytes": p["bytes"], "psnr": round(base, 4),
                         "filtered_psnr": round(best, 4), "gain_db": round(best - base, 4), "strength": s})
    per_image = {}
    for name in dict.fromkeys(r["image"] for r in rows):
        rs = [r for r in rows if r["image"] == name]
        b = np.array([r["bytes"] for r in rs], float)
        per_image[name] = round(bd_rate(b, [r["psnr"] for r in rs], b + 1, [r["filtered_psnr"] for r in rs]), 3)
    return {"files": rows, "bd_rate_percent": per_image,
            "mean_bd_rate_percent": round(float(np.mean(list(per_image.values()))), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", help="test images (e.g. Kodak)")
    ap.add_argument("--quality", default="40,55,70,85,95", help="test qualities")
    ap.add_argument("--train-quality", default="40,60,80,95", help="training qualities")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--configs", nargs="+", default=["8,0,1500"],
                    help="hidden,mid,steps: hidden channels, 1 for a 1x1 middle layer, Adam steps")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--cache", type=Path, default=None, help="folder for the encoded files (reused)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    train_set = pairs(training_images(), [int(q) for q in args.train_quality.split(",")], args.preset, args.cache)
    test_set = pairs({Path(p).stem: imageio.as_array(p) for p in args.images},
                     [int(q) for q in args.quality.split(",")], args.preset, args.cache)
    print(f"{len(train_set)} training files, {len(test_set)} test files ({time.perf_counter() - t0:.0f} s)", flush=True)
    results = []
    for cfg in args.configs:
        hidden, mid, steps = (int(v) for v in cfg.split(","))
        t1 = time.perf_counter()
        net = train(train_set, hidden, bool(mid), steps, args.lr)
        row = {"hidden": hidden, "mid": bool(mid), "steps": steps, "macs_per_pixel": net.macs_per_pixel(),
               "train_seconds": round(time.perf_counter() - t1, 1),
               "train": score(net, train_set), "test": score(net, test_set)}
        results.append(row)
        print(f"hidden {hidden} mid {bool(mid)} steps {steps} ({row['macs_per_pixel']} MACs/pixel, "
              f"{row['train_seconds']} s): BD-rate on the training images {row['train']['mean_bd_rate_percent']:+.2f} %, "
              f"on the test images {row['test']['mean_bd_rate_percent']:+.2f} % "
              f"({', '.join(f'{k} {v:+.2f}' for k, v in row['test']['bd_rate_percent'].items())})", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": probe_cli.meta(args), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
