"""The command line the file probes share (``joint_probe.py``, ``softround_probe.py``,
``post_alternation_probe.py``): images, qualities and the preset that writes the starting file in;
one JSON row per (image, quality) out, with the machine and the arguments."""
from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from pathlib import Path

import torch

import codec


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the probes' common arguments (``images``, ``--quality``, ``--preset``, ``--out``)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--quality", default="70", help="comma-separated qualities")
    ap.add_argument("--preset", default="medium", help="the preset that writes the starting file")
    ap.add_argument("--out", default=None)
    return ap


def training_args(ap: argparse.ArgumentParser, seconds: float) -> None:
    """The arguments of the probes that train latents by gradient descent (``joint_probe.py``,
    ``softround_probe.py``)."""
    ap.add_argument("--seconds", type=float, default=seconds, help="training time per file")
    ap.add_argument("--hidden", type=int, default=8, help="hidden channels of the network (format v7: 1..16)")
    ap.add_argument("--refresh", type=int, default=20, help="steps between refreshes of the rate terms")
    ap.add_argument("--lr-latent", type=float, default=0.02, help="Adam step on the latents (code units)")
    ap.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace, probe: Callable[[Path, int], dict]) -> list[dict]:
    """``probe(image, quality)`` for every image and quality; the rows written to ``args.out`` (if
    given) with the machine, torch's threads, the code version and the arguments."""
    rows = [probe(Path(im), int(q)) for im in args.images for q in args.quality.split(",")]
    if args.out:
        meta = {"machine": f"{platform.machine()}, {platform.system()}", "torch_threads": torch.get_num_threads(),
                "version": codec.__version__, "args": vars(args)}
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return rows
