"""``inrc bench``: rate-distortion of inrc against Pillow's JPEG, WebP, JPEG 2000 and AVIF.

For every image and every (codec, setting): bpp from the real file size (header included), PSNR on
8-bit RGB, MS-SSIM (pytorch-msssim, data_range=255), encode and decode seconds, and for inrc the
encoder's own stats (``EncodeResult.stats``: passes run, refits kept, ...).  A setting's point on
a curve is the mean over images of bpp and of per-image PSNR (also reported: PSNR of the mean MSE,
Cool-chic's convention).  Images are read as RGB (alpha dropped, grayscale expanded).

Results are cached per (image hash, codec, setting, code version) in ``OUT/cache``, so an
interrupted run resumes where it stopped.  Outputs in ``OUT``: one JSON per codec in CompressAI's
schema, ``per_image.csv``, ``summary.json`` (BD-rate table, settings, machine, code version) and
``rd.png`` (PSNR and MS-SSIM against bpp, with the published anchors of ``codec/data/anchors_kodak.csv``
when present).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, features

from . import __version__, metrics, runtime
from .bdrate import bd_psnr, bd_rate
from .errors import ImageInputError, OptionError

CLASSIC_SETTINGS: dict[str, list] = {
    "jpeg": [2, 4, 6, 8, 10, 12, 15, 18, 20, 25, 30, 35, 40, 50, 60, 70, 75, 80, 85, 90, 95],
    "webp": [0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95],
    "jpeg2000": [480.0, 320.0, 240.0, 192.0, 160.0, 120.0, 96.0, 80.0, 60.0, 48.0, 40.0, 32.0, 24.0, 19.2, 16.0, 12.0, 9.6, 8.0],
    "avif": [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95],
}
DEFAULT_INRC_POINTS = (40, 60, 75, 90)
IMAGE_EXTS = {".png", ".bmp", ".tif", ".tiff", ".ppm", ".jpg", ".jpeg", ".webp"}


@dataclass(frozen=True)
class Task:
    image: str
    image_hash: str
    codec: str  # curve name: jpeg, webp, jpeg2000, avif, inrc-<name>
    setting: str  # quality / ratio / inrc quality
    options: str  # JSON of extra inrc options ("" for classic codecs)

    def key(self, version: str) -> str:
        raw = f"{self.image_hash}|{self.codec}|{self.setting}|{self.options}|{version}"
        return hashlib.sha1(raw.encode()).hexdigest()


def code_version() -> str:
    """Package version plus a hash of the package sources and Pillow's codec versions."""
    h = hashlib.sha1()
    for p in sorted(Path(__file__).parent.glob("*.py")):
        h.update(p.read_bytes())
    libs = ",".join(f"{k}={features.version(k)}" for k in ("jpg", "webp", "jpg_2000", "avif"))
    h.update(libs.encode())
    return f"{__version__}+{h.hexdigest()[:10]}"


def classic_encode(codec: str, setting: float, img: Image.Image) -> bytes:
    buf = io.BytesIO()
    if codec == "jpeg":
        img.save(buf, format="JPEG", quality=int(setting), optimize=True, subsampling=2)
    elif codec == "webp":
        img.save(buf, format="WEBP", quality=int(setting), method=6)
    elif codec == "jpeg2000":
        img.save(buf, format="JPEG2000", quality_mode="rates", quality_layers=[float(setting)],
                 irreversible=True, mct=1)
    elif codec == "avif":
        img.save(buf, format="AVIF", quality=int(setting), speed=6, subsampling="4:2:0")
    else:
        raise OptionError(f"unknown codec {codec!r}")
    return buf.getvalue()


def threads_per_job(jobs: int) -> int:
    """Torch threads for each of ``jobs`` workers: their share of the CPUs this process may use."""
    return max(1, runtime.available_cpus() // jobs)


SPEED_PROBE = ("hybrid fast q70 encode (pyramid basis) of skimage's astronaut, top-left 256x256, alone, "
               "threads_per_job threads")
SPEED_PROBE_RUNS = 2  # about 1.8 s each on this project's 2-core machine


def speed_probe(threads: int) -> list[float]:
    """Seconds of ``SPEED_PROBE_RUNS`` identical encodes (``SPEED_PROBE``), before a run's inrc encodes.

    The presets are time-capped, so their files depend on the machine's speed: a machine 1.5 times
    slower than usual cuts ``slow`` short (benchmarks/README.md).  ``summary.json`` keeps these
    times, so runs of different days can be told apart; the fastest is the one to compare.
    """
    import skimage.data
    import torch

    from . import api

    torch.set_num_threads(threads)
    img = skimage.data.astronaut()[:256, :256]
    times = []
    for _ in range(SPEED_PROBE_RUNS):
        t0 = time.perf_counter()
        # the pyramid basis: the workload of every run before 0.22 (fast's wavelet takes a tenth of it)
        api.encode_image(img, preset="fast", basis="pyramid", quality=70, seconds=600.0, quiet=True)
        times.append(round(time.perf_counter() - t0, 3))
    return times


def run_task(task: Task, threads: int) -> dict:
    """Encode and decode one image with one codec setting; return the measured record."""
    import torch

    torch.set_num_threads(threads)
    rgb = np.asarray(Image.open(task.image).convert("RGB"))
    h, w = rgb.shape[:2]
    if task.codec.startswith("inrc"):
        from . import api, decoder

        opts = json.loads(task.options) if task.options else {}
        t0 = time.perf_counter()
        res = api.encode_image(rgb, quality=int(task.setting), quiet=True, **opts)
        t1 = time.perf_counter()
        data, stats = res.data, res.stats
        out = decoder.decode_to_array(data)
        t2 = time.perf_counter()
    else:
        img, stats = Image.fromarray(rgb), None
        t0 = time.perf_counter()
        data = classic_encode(task.codec, float(task.setting), img)
        t1 = time.perf_counter()
        out = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        t2 = time.perf_counter()
    return {"image": Path(task.image).name, "codec": task.codec, "setting": task.setting,
            "bytes": len(data), "bpp": len(data) * 8.0 / (w * h), "mse": metrics.mse(out, rgb),
            "psnr": metrics.psnr(out, rgb), "ms_ssim": metrics.ms_ssim(out, rgb),
            "encoding_time": t1 - t0, "decoding_time": t2 - t1, "encoder_stats": stats}


def write_per_image(path: Path, records: list[dict]) -> None:
    """:func:`run_task`'s records as ``per_image.csv`` (one row each, the encoder's statistics as JSON),
    sorted by codec, image and setting."""
    cols = ["image", "codec", "setting", "bytes", "bpp", "psnr", "ms_ssim", "mse", "encoding_time", "decoding_time"]
    with path.open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=[*cols, "encoder_stats"])
        wr.writeheader()
        for r in sorted(records, key=lambda r: (r["codec"], r["image"], float(r["setting"]))):
            st = r.get("encoder_stats")
            wr.writerow({**{k: r[k] for k in cols}, "encoder_stats": json.dumps(st, sort_keys=True) if st else ""})


def parse_inrc_settings(specs: list[str]) -> dict[str, dict]:
    """``NAME`` or ``NAME:key=value,key=value`` -> {curve name: encode options}."""
    out = {}
    for spec in specs:
        name, _, rest = spec.partition(":")
        opts: dict = {}
        for item in filter(None, rest.split(",")):
            k, eq, v = item.partition("=")
            if not eq:
                raise OptionError(f"bad inrc setting {item!r} (use key=value)")
            k = k.strip()
            if k not in ("model", "preset", "basis", "steps", "seconds", "batch", "lr", "seed", "device"):
                raise OptionError(f"unknown inrc option {k!r} in --inrc-settings")
            opts[k] = (v.strip() if k in ("model", "preset", "basis", "device")
                       else (float(v) if k in ("seconds", "lr") else int(v)))
        out[f"inrc-{name.strip() or 'default'}"] = opts
    return out


def list_images(folder: Path, limit: int | None) -> list[Path]:
    if not folder.is_dir():
        raise ImageInputError(f"{folder}: not a directory")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise ImageInputError(f"{folder}: no images found")
    return files[:limit] if limit else files


def build_tasks(images: list[Path], codecs: list[str], inrc: dict[str, dict], points: list[int]) -> list[Task]:
    tasks = []
    for p in images:
        digest = hashlib.sha1(p.read_bytes()).hexdigest()
        for c in codecs:
            if c == "inrc":
                for name, opts in inrc.items():
                    tasks += [Task(str(p), digest, name, str(q), json.dumps(opts, sort_keys=True)) for q in points]
            else:
                tasks += [Task(str(p), digest, c, str(s), "") for s in CLASSIC_SETTINGS[c]]
    return tasks


def summarize(records: list[dict]) -> dict[str, list[dict]]:
    """Per codec, one point per setting: means over images (settings with every image only)."""
    n_images = len({r["image"] for r in records})
    curves: dict[str, list[dict]] = {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["codec"], r["setting"]), []).append(r)
    for (codec, setting), rs in groups.items():
        if len(rs) != n_images:
            continue
        ms = [r["ms_ssim"] for r in rs if r["ms_ssim"] is not None]
        mean_mse = float(np.mean([r["mse"] for r in rs]))
        curves.setdefault(codec, []).append({
            "setting": setting, "bpp": float(np.mean([r["bpp"] for r in rs])),
            "psnr": float(np.mean([r["psnr"] for r in rs])),
            "psnr_of_mean_mse": metrics.PSNR_CAP if mean_mse == 0 else 10 * math.log10(255**2 / mean_mse),
            "ms_ssim": float(np.mean(ms)) if len(ms) == len(rs) else None,
            "encoding_time": float(np.median([r["encoding_time"] for r in rs])),
            "decoding_time": float(np.median([r["decoding_time"] for r in rs])), "n_images": len(rs),
            **_pass_counts(rs)})
    for pts in curves.values():
        pts.sort(key=lambda p: p["bpp"])
    return curves


def _pass_counts(rs: list[dict]) -> dict:
    """For a hybrid curve's point: the encoder's passes (median over images) and how many images
    kept at least one refit pass; empty for other codecs and for records cached before 0.9.1."""
    st = [r.get("encoder_stats") or {} for r in rs]
    if not all("passes" in s for s in st):
        return {}
    return {"passes_median": float(np.median([s["passes"] for s in st])),
            "images_with_refit_kept": sum(s.get("refits_kept", 0) > 0 for s in st)}


def _bd_grid(curves: dict[str, list[dict]], refs: dict[str, tuple[list[float], list[float]]],
             psnr_key=lambda ref: "psnr") -> dict:
    """BD-rate (%) and BD-PSNR (dB) of every curve (row) against every reference ``(bpp, psnr)``
    (column), with ``psnr_key(ref)`` the point's PSNR compared with that reference; ``None`` where
    the curves have too few points or do not overlap."""
    rate: dict[str, dict[str, float | None]] = {}
    dpsnr: dict[str, dict[str, float | None]] = {}
    for a, pa in curves.items():
        rate[a], dpsnr[a] = {}, {}
        for b, ref in refs.items():
            test = ([p["bpp"] for p in pa], [p[psnr_key(b)] for p in pa])
            try:
                rate[a][b], dpsnr[a][b] = round(bd_rate(*ref, *test), 2), round(bd_psnr(*ref, *test), 3)
            except ValueError:
                rate[a][b] = dpsnr[a][b] = None
    return {"bd_rate_percent": rate, "bd_psnr_db": dpsnr}


def bd_table(curves: dict[str, list[dict]]) -> dict:
    """BD-rate (%) and BD-PSNR (dB) of every curve against every other (row: test, column: reference)."""
    return _bd_grid(curves, {b: ([p["bpp"] for p in pb], [p["psnr"] for p in pb]) for b, pb in curves.items()})


def bd_table_ms_ssim(curves: dict[str, list[dict]]) -> dict:
    """The same on MS-SSIM in dB (:func:`codec.metrics.ms_ssim_db` of each point's mean MS-SSIM, as
    CompressAI plots it): BD-rate (%) and the MS-SSIM difference (dB), for the curves that have
    MS-SSIM at every point (images of 161 px per side or more); empty tables if none has."""
    have = {k: [{**p, "ms_ssim_db": metrics.ms_ssim_db(p["ms_ssim"])} for p in v]
            for k, v in curves.items() if v and all(p.get("ms_ssim") is not None for p in v)}
    grid = _bd_grid(have, {b: ([p["bpp"] for p in pb], [p["ms_ssim_db"] for p in pb]) for b, pb in have.items()},
                    lambda ref: "ms_ssim_db")
    return {"bd_rate_percent_ms_ssim": grid["bd_rate_percent"], "bd_ms_ssim_db": grid["bd_psnr_db"]}


KODAK_IMAGES = frozenset(f"kodim{i:02d}.png" for i in range(1, 25))
MEAN_MSE_LABEL = "[PSNR of mean MSE]"


def bd_vs_anchors(curves: dict[str, list[dict]], anchors: dict[str, tuple[list[float], list[float], str]]) -> dict:
    """BD-rate (%) and BD-PSNR (dB) of each measured curve (row) against each published curve (column).

    A published Kodak curve is a mean over the 24 Kodak images, so this means something only for
    curves measured on those 24 images (:func:`vs_published` checks the file names and sizes). Each anchor is
    compared in its own PSNR convention: the mean of per-image PSNR, or, for a label ending in
    ``[PSNR of mean MSE]``, the PSNR of the mean MSE (Cool-chic's). The anchors' rates are what
    their sources report (real file sizes for most; see ``codec/data/anchors_kodak.csv``).
    """
    def key(name: str) -> str:
        return "psnr_of_mean_mse" if name.endswith(MEAN_MSE_LABEL) else "psnr"

    return {"sources": {name: src for name, (_, _, src) in anchors.items()},
            **_bd_grid(curves, {name: (bpp, psnr) for name, (bpp, psnr, _) in anchors.items()}, key)}


KODAK_PIXELS = 768 * 512


def vs_published(curves: dict[str, list[dict]], image_names, rows, anchors: dict) -> dict | None:
    """:func:`bd_vs_anchors` when the curves were measured on exactly the 24 Kodak images and there
    are anchors, otherwise ``None``.  ``rows``: the per-image results (``image``, ``bytes``,
    ``bpp``), whose ``bpp = 8 bytes / pixels`` gives each image's size: the images must be
    :data:`KODAK_IMAGES` by file name and 768x512 (either way round) in size, since a published curve
    is a mean over those 24 images and any other set would be compared with it meaninglessly (before
    0.10.3 the names alone were checked)."""
    names = set(image_names)
    if not anchors or names != KODAK_IMAGES:
        return None
    pixels = {r["image"]: round(8 * float(r["bytes"]) / float(r["bpp"])) for r in rows
              if r["image"] in names and float(r["bpp"]) > 0}
    if set(pixels) == names and all(n == KODAK_PIXELS for n in pixels.values()):
        return bd_vs_anchors(curves, anchors)
    return None


def load_anchors(path: Path, required: bool = False) -> dict[str, tuple[list[float], list[float], str]]:
    """Published curves from a CSV with columns ``codec,source,bpp,psnr``: ``{codec: (bpp, psnr, source)}``.

    A missing file gives no curves, unless ``required`` (a file the user named); a file that cannot
    be read as such a table raises :class:`OptionError` naming the file and the problem."""
    out: dict[str, tuple[list[float], list[float], str]] = {}
    if not path.is_file():
        if required:
            raise OptionError(f"--anchors: no such file: {path}")
        return out
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = {"codec", "source", "bpp", "psnr"} - set(reader.fieldnames or [])
            if missing:
                raise OptionError(f"--anchors: {path} lacks the column(s) {', '.join(sorted(missing))} "
                                  "(expected codec,source,bpp,psnr)")
            for line, row in enumerate(reader, 2):
                try:
                    bpp, psnr = float(row["bpp"]), float(row["psnr"])
                except (TypeError, ValueError):
                    raise OptionError(f"--anchors: {path} line {line}: bpp and psnr must be numbers") from None
                if not (bpp > 0 and math.isfinite(bpp) and math.isfinite(psnr)):
                    raise OptionError(f"--anchors: {path} line {line}: bpp must be positive and finite")
                r, q, _ = out.setdefault(row["codec"], ([], [], row["source"] or ""))
                r.append(bpp)
                q.append(psnr)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise OptionError(f"--anchors: cannot read {path}: {e}") from None
    return out


def published_curves(anchors: str | None) -> dict[str, tuple[list[float], list[float], str]]:
    """The published curves to draw and compare with: ``anchors`` (a CSV the user named, which must
    exist) or the package's ``codec/data/anchors_kodak.csv``."""
    if anchors:
        return load_anchors(Path(anchors), required=True)
    return load_anchors(Path(__file__).resolve().parent / "data" / "anchors_kodak.csv")


def plot(curves: dict[str, list[dict]], anchors: dict, path: Path, title: str) -> None:
    """PSNR and MS-SSIM against bpp; published anchors dashed in shades of grey, ours in colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5.6))
    greys = plt.cm.Greys(np.linspace(0.35, 0.85, max(1, len(anchors))))
    styles = ["--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 1))]
    for k, (name, pts) in enumerate(sorted(anchors.items())):
        a1.plot(pts[0], pts[1], linestyle=styles[k % len(styles)], color=greys[k], lw=1.3,
                label=f"{name} (published)")
    colours = plt.cm.tab10(np.arange(10))
    for k, (name, pts) in enumerate(curves.items()):
        ours = name.startswith("inrc")
        x = [p["bpp"] for p in pts]
        kw = {"color": colours[k % 10], "marker": "o" if ours else ".", "lw": 2.4 if ours else 1.2,
              "ms": 7 if ours else 4, "label": name}
        a1.plot(x, [p["psnr"] for p in pts], **kw)
        if all(p["ms_ssim"] is not None for p in pts):
            a2.plot(x, [p["ms_ssim"] for p in pts], **kw)
    for ax, lab in ((a1, "PSNR (dB, RGB, mean over images)"), (a2, "MS-SSIM (RGB)")):
        ax.set_xlim(0, 2.0)
        ax.set_xlabel("bits per pixel (real file size)")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    a1.set_ylim(20, 42)
    a2.set_ylim(0.8, 1.0)
    if a1.get_legend_handles_labels()[0]:
        fig.legend(*a1.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7.5, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replot(out: str | Path, anchors: str | None = None) -> None:
    """Redraw ``rd.png`` from the per-codec JSON files of a finished run (no re-measuring)."""
    outdir = Path(out)
    summary = json.loads((outdir / "summary.json").read_text())
    curves = {}
    for p in sorted(outdir.glob("*.json")):
        if p.name == "summary.json":
            continue
        r = json.loads(p.read_text())["results"]
        curves[p.stem] = [{"bpp": b, "psnr": q, "ms_ssim": m} for b, q, m in zip(r["bpp"], r["psnr-rgb"], r["ms-ssim-rgb"])]
    order = {c: i for i, c in enumerate(["jpeg", "webp", "jpeg2000", "avif"])}
    curves = dict(sorted(curves.items(), key=lambda kv: (order.get(kv[0], 9), kv[0])))
    plot(curves, published_curves(anchors), outdir / "rd.png",
         f"{len(summary['images'])} images, {summary['date']}, inrc {summary['code_version']}")


def run(images_dir: str, codecs: list[str], inrc_settings: list[str], points: list[int], out: str,
        jobs: int = 1, limit: int | None = None, anchors: str | None = None, progress: bool = True) -> dict:
    for c in codecs:
        if c != "inrc" and c not in CLASSIC_SETTINGS:
            raise OptionError(f"unknown codec {c!r}; choose from inrc, {', '.join(CLASSIC_SETTINGS)}")
    if "avif" in codecs and not features.check("avif"):
        raise OptionError("this Pillow has no AVIF support")
    if jobs < 1:
        raise OptionError("--jobs must be at least 1")
    published = published_curves(anchors)  # a bad --anchors file fails now, not after the run
    images = list_images(Path(images_dir), limit)
    inrc = parse_inrc_settings(inrc_settings or ["default"])
    tasks = build_tasks(images, codecs, inrc, points)
    outdir = Path(out)
    cache = outdir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    version = code_version()
    threads = threads_per_job(jobs)
    records, todo = [], []
    for t in tasks:
        f = cache / f"{t.key(version)}.json"
        if f.exists():
            records.append(json.loads(f.read_text()))
        else:
            todo.append(t)
    # the machine's speed now, when inrc encodes (time-capped) are to run
    probe = speed_probe(threads) if any(t.codec.startswith("inrc") for t in todo) else None
    t_start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), initial=len(records), desc="bench", unit="run", dynamic_ncols=True)
    # spawned, not forked, workers: a fork of a process whose torch thread pool has run can deadlock
    # in the child (a lock held by a parent thread at the fork; seen when the tests ran the hybrid
    # encoder before the bench in one process)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            futures = {pool.submit(run_task, t, threads): t for t in todo}
            for fut in as_completed(futures):
                t = futures[fut]
                rec = fut.result()
                tmp = cache / f".{t.key(version)}.tmp"
                tmp.write_text(json.dumps(rec))
                os.replace(tmp, cache / f"{t.key(version)}.json")
                records.append(rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{t.codec} {t.setting} {Path(t.image).name}")
        except BaseException:
            # interrupted (Ctrl-C, SIGTERM: codec.cli.entry) or failed: stop the workers now, not
            # after their encodes (a `slow` encode takes 5 minutes; killed without this, the
            # workers of a bench outlived it); the finished points stay in the cache
            stop_workers(pool)
            raise
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t_start
    return write_outputs(records, outdir, version, codecs, inrc, points, images, jobs, wall, published, probe)


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel ``pool``'s queued tasks and terminate its worker processes."""
    # ProcessPoolExecutor.terminate_workers() is Python 3.14's; before it, the processes themselves
    # (taken before shutdown(), which forgets them)
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()


def write_outputs(records, outdir: Path, version, codecs, inrc, points, images, jobs, wall, published,
                  probe: list[float] | None = None) -> dict:
    import torch

    curves = summarize(records)
    for name, pts in curves.items():
        doc = {"name": name, "description": describe(name, inrc),
               "results": {"bpp": [p["bpp"] for p in pts], "psnr-rgb": [p["psnr"] for p in pts],
                           "ms-ssim-rgb": [p["ms_ssim"] for p in pts],
                           "encoding_time": [p["encoding_time"] for p in pts],
                           "decoding_time": [p["decoding_time"] for p in pts]},
               "settings": [p["setting"] for p in pts],
               "psnr-of-mean-mse": [p["psnr_of_mean_mse"] for p in pts]}
        if all("passes_median" in p for p in pts):
            doc["encoder"] = {k: [p[k] for p in pts] for k in ("passes_median", "images_with_refit_kept")}
        (outdir / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    write_per_image(outdir / "per_image.csv", records)
    table = {**bd_table(curves), **bd_table_ms_ssim(curves)}
    machine = {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
               "available_cpus": runtime.available_cpus(), "threads_per_job": threads_per_job(jobs),
               "torch": torch.__version__, "pillow": Image.__version__,
               "codecs": {k: features.version(k) for k in ("jpg", "webp", "jpg_2000", "avif")}}
    if probe:
        machine["speed_probe"] = {"workload": SPEED_PROBE, "seconds": probe, "min": min(probe)}
    summary = {"code_version": version, "date": time.strftime("%Y-%m-%d"), "machine": machine,
               "images": [p.name for p in images], "codecs": codecs, "inrc_settings": inrc,
               "inrc_qualities": points, "classic_settings": {c: CLASSIC_SETTINGS[c] for c in codecs if c in CLASSIC_SETTINGS},
               "jobs": jobs, "wall_seconds_this_run": round(wall, 1),
               "psnr": "mean over images of per-image PSNR on 8-bit RGB",
               "bd": "Bjontegaard, PCHIP of log-rate over the overlapping PSNR range; row = test, column = reference",
               "bd_ms_ssim": "the same on MS-SSIM in dB, -10 log10(1 - mean MS-SSIM) per setting",
               **table}
    vs = vs_published(curves, [p.name for p in images], records, published)
    if vs:
        summary["vs_published"] = vs
    (outdir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(curves, published, outdir / "rd.png",
         f"{len(images)} images, {summary['date']}, inrc {version}")
    return summary


def describe(name: str, inrc: dict) -> str:
    if name.startswith("inrc"):
        return f"inrc {__version__}, options {json.dumps(inrc.get(name, {}))}, qualities as settings"
    return {"jpeg": "Pillow JPEG, optimize=True, 4:2:0", "webp": "Pillow WebP, method=6",
            "jpeg2000": "Pillow JPEG 2000 (OpenJPEG), quality_mode='rates', irreversible=True, mct=1",
            "avif": "Pillow AVIF, speed=6, 4:2:0"}[name]
