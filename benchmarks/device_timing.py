"""The hybrid encoder on the CPU and on CUDA, side by side: seconds, bytes, PSNR and D + lambda R.

For every image, preset and quality the encodes run one after the other in this one process, first
on each device in ``--devices`` order, so a ratio of times compares runs on the same machine and
load.  With ``--seconds`` (e.g. 86400) every pass runs on both devices and the files differ only by
float32 summation order; without it each preset keeps its default cap, and a faster device fits
more passes.  Writes one JSON file: the machine, the settings and one record per encode.

    python benchmarks/device_timing.py IMG [IMG ...] --presets fast,medium --qualities 70 \\
        --devices cpu,cuda --out timing.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import codec
from codec import encoder


def machine() -> dict:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "gpu": gpu, "python": platform.python_version(), "inrc": codec.__version__}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--presets", default="fast,medium")
    ap.add_argument("--qualities", default="70")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--seconds", type=float, default=None, help="budget per encode (default: the preset's cap)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    records = []
    for path in a.images:
        image = np.asarray(Image.open(path).convert("RGB"))
        ref = image.astype(np.float64) / 255.0
        for preset in a.presets.split(","):
            for q in (int(x) for x in a.qualities.split(",")):
                for dev in a.devices.split(","):
                    r = codec.encode_image(image, preset=preset, basis="pyramid", quality=q, device=dev, seconds=a.seconds, quiet=True)
                    lam = r.stats["lambda"]
                    rec = {"image": Path(path).name, "preset": preset, "quality": q, "device": r.device,
                           "seconds": round(r.seconds, 2), "bytes": len(r.data), "psnr": round(r.psnr, 3),
                           "cost": encoder.file_cost(r.data, ref, lam)[0],
                           "passes": r.stats["passes"], "post_filter": r.stats["post_filter"]}
                    records.append(rec)
                    print(json.dumps(rec), flush=True)
    summary = {}
    devices = a.devices.split(",")
    if len(devices) == 2 and devices[0] != devices[1]:
        keyed = {(r["image"], r["preset"], r["quality"], r["device"]): r for r in records}
        for preset in a.presets.split(","):
            pairs = [(keyed[k[:3] + (devices[0],)], keyed[k[:3] + (devices[1],)]) for k in keyed
                     if k[1] == preset and k[3] == devices[0] and k[:3] + (devices[1],) in keyed]
            if pairs:
                summary[preset] = {
                    "encodes": len(pairs),
                    f"median_seconds_{devices[0]}": statistics.median(p[0]["seconds"] for p in pairs),
                    f"median_seconds_{devices[1]}": statistics.median(p[1]["seconds"] for p in pairs),
                    "median_speedup": statistics.median(p[0]["seconds"] / p[1]["seconds"] for p in pairs),
                    "median_cost_change_pct": statistics.median(100 * (p[1]["cost"] / p[0]["cost"] - 1) for p in pairs),
                }
    Path(a.out).write_text(json.dumps({"machine": machine(), "seconds": a.seconds, "records": records,
                                       "summary": summary}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
