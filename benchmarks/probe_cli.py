"""The command line the file probes share (``joint_probe.py``, ``softround_probe.py``,
``post_alternation_probe.py``): images, qualities and the preset that writes the starting file in;
one JSON row per (image, quality) out, with the machine and the arguments; for the two training
probes also their common start (:func:`start`: the preset's file unpacked for training) and row parts.
Also the shapes of two other kinds of probe: those that read written ``.inr`` files and print a line
per file (:func:`files_main`), and those that encode images under a changed encoder and compare the
runs afterwards (:func:`runs_main`, :func:`encode_point`)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import codec
from codec import decoder, encoder, imageio, quant, rdoq


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


@dataclasses.dataclass
class Start:
    """A training probe's starting point: the preset's file for an image and what training reads of it."""

    image: np.ndarray  # float32 (H, W, C) in [0, 1]
    result: codec.EncodeResult
    seconds: float  # the encode's
    lam: float  # the encode's lambda
    cost: float  # D + lambda R of the file as written
    psnr: float
    parsed: decoder.Parsed
    codes: list[list[np.ndarray]]
    idx: list[int]  # step indices, one per plane
    steps: list[float]
    samplers: list  # the levels' samplers through the file's level filters
    matrix: torch.Tensor  # YCbCr -> RGB
    shift: torch.Tensor  # matrix @ centre, (C, 1, 1)
    target: torch.Tensor  # the image, (C, H, W)


def start(path: Path, quality: int, preset: str) -> Start:
    """Encode ``path`` with ``preset`` at ``quality`` and unpack the file for training."""
    img = imageio.as_array(path)
    t0 = time.perf_counter()
    r = codec.encode_image(img, quality=quality, preset=preset, quiet=True)
    seconds = time.perf_counter() - t0
    lam = r.stats["lambda"]
    cost, psnr = encoder.file_cost(r.data, img, lam)
    p = decoder.parse(r.data)
    c = p.spec.channels
    idx = [rec.step_index for rec in p.records]
    m, centre = rdoq.colour_matrix(c, None, p.spec.colour), rdoq.colour_centre(c, None, p.spec.colour)
    return Start(img, r, seconds, lam, cost, psnr, p, decoder.hybrid_codes(p), idx,
                 [quant.step_from_index(i) for i in idx],
                 rdoq.with_filters(rdoq.samplers_for(p.spec), encoder.filter_kernels(p.filters)),
                 m, torch.einsum("ij,j->i", m, centre)[:, None, None],
                 torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1))


def start_record(data: bytes, psnr: float, cost: float, seconds: float, post_hidden: int) -> dict:
    """The ``start`` entry of a training probe's row: the preset's file it started from."""
    return {"bytes": len(data), "psnr": round(psnr, 3), "cost": round(cost, 3), "seconds": round(seconds, 1),
            "post_filter": post_hidden}


def latents_changed(codes: list[list[np.ndarray]], final: list[list[np.ndarray]]) -> int:
    """How many integer latents differ between two ``codes[level][channel]`` sets."""
    return sum(int((a != b).sum()) for la, lb in zip(codes, final) for a, b in zip(la, lb))


def emit(row: dict) -> dict:
    """Print a probe's row as one JSON line, without its (long) ``history``; return it."""
    print(json.dumps({k: v for k, v in row.items() if k != "history"}), flush=True)
    return row


def run(args: argparse.Namespace, probe: Callable[[Path, int], dict]) -> list[dict]:
    """``probe(image, quality)`` for every image and quality; the rows written to ``args.out`` (if
    given) with the machine, torch's threads, the code version and the arguments."""
    rows = [probe(Path(im), int(q)) for im in args.images for q in args.quality.split(",")]
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta(args), "rows": rows}, indent=1) + "\n")
    return rows


def meta(args: argparse.Namespace) -> dict:
    """What a probe's JSON records of its run: the machine, torch's threads, the code version, the arguments."""
    return {"machine": f"{platform.machine()}, {platform.system()}", "torch_threads": torch.get_num_threads(),
            "version": codec.__version__, "args": {k: v if isinstance(v, (int, float, str, list, type(None))) else str(v)
                                                   for k, v in vars(args).items()}}


def files_main(doc: str, probe: Callable[[str], dict], line: Callable[[dict], str]) -> None:
    """``probe(path)`` for every ``.inr`` file on the command line, ``line(row)`` printed for each, the
    rows written as JSON to ``--out`` if given."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out", help="write the results as JSON")
    args = ap.parse_args()
    results = [probe(f) for f in args.files]
    for r in results:
        print(line(r))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


def encode_point(image: np.ndarray, name: str, preset: str, quality: int, **extra) -> dict:
    """Encode ``image`` (called ``name``) with ``preset`` at ``quality`` and print and return its row:
    bytes, bpp, PSNR (8-bit RGB), ``D + lambda R`` of the written file (:func:`codec.encoder.file_cost`),
    seconds, and ``extra``."""
    t0 = time.perf_counter()
    r = codec.encode_image(image, preset=preset, quality=quality, quiet=True)
    seconds = time.perf_counter() - t0
    cost, psnr = encoder.file_cost(r.data, image, r.stats["lambda"])
    row = {"image": name, "quality": quality, **extra, "bytes": len(r.data),
           "bpp": len(r.data) * 8 / (image.shape[0] * image.shape[1]), "psnr": psnr, "cost": cost,
           "seconds": round(seconds, 2)}
    print(json.dumps(row), flush=True)
    return row


def runs_main(doc: str, qualities: str, extend: Callable[[argparse.ArgumentParser], None],
              run: Callable[[argparse.Namespace], None], compare: Callable[[list[str]], None]) -> None:
    """The command line of an encoding probe: ``images`` and ``--out`` (with ``--preset``, ``--qualities``,
    ``--threads`` and what ``extend`` adds) run it, ``--compare RUN.json ...`` compares written runs."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("images", nargs="*")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--qualities", default=qualities)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default one: two probes side by side)")
    ap.add_argument("--out")
    ap.add_argument("--compare", nargs="+", metavar="RUN.json", help="compare written runs instead")
    extend(ap)
    args = ap.parse_args()
    if args.compare:
        compare(args.compare)
    elif args.images and args.out:
        torch.set_num_threads(args.threads)
        run(args)
    else:
        ap.error("give images and --out, or --compare")
