"""The ``inrc`` command line (parsing and printing only; the work lives in the package).

Exit codes: 0 success, 1 bad data or files, 2 usage errors, 130 interrupted.  Every failure is
one line on stderr: ``inrc: error: <what is wrong>``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .errors import ImageInputError, InrcError, OptionError

# ``inrc encode`` notes on stderr an encode that took longer than OVERRUN x --seconds + OVERRUN_SLACK
OVERRUN = 1.25
OVERRUN_SLACK = 0.5


def _emit(obj: dict, as_json: bool, lines: list[str], err: bool = False) -> None:
    """The command's report: one JSON object or its lines, on stdout (stderr when ``err``: the
    output file itself went to stdout)."""
    if as_json:
        click.echo(json.dumps(obj, sort_keys=False))
    else:
        for line in lines:
            click.echo(line, err=err)


def _stdio_paths(input: str, output: str | None, default_suffix: str, as_json: bool) -> str:
    """The output path, checked against ``-`` (standard input and output): reading stdin needs
    ``-o``, and ``--json`` cannot share stdout with the file."""
    from .imageio import is_stdio

    if output is None:
        if is_stdio(input):
            raise OptionError("reading standard input needs -o FILE (or -o - for standard output)")
        output = str(Path(input).with_suffix(default_suffix))
    if as_json and is_stdio(output):
        raise OptionError("--json and -o - both write to standard output; give -o FILE")
    return output


def _name(path: str, stream: str) -> str:
    """A path as the report names it: ``-`` is ``stdin`` or ``stdout``."""
    return stream if str(path) == "-" else str(path)


def _read_inr(path: str) -> bytes:
    from .imageio import is_stdio, read_stdin

    if is_stdio(path):
        return read_stdin("an .inr file")
    p = Path(path)
    if not p.exists():
        raise ImageInputError(f"{path}: no such file")
    if p.is_dir():
        raise ImageInputError(f"{path}: is a directory")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise ImageInputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _same_file(a: str, b: str) -> bool:
    if "-" in (str(a), str(b)):  # standard input or output
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="inrc")
def cli() -> None:
    """inrc: a neural image codec (coordinate networks overfitted to one image)."""


@cli.command()
@click.argument("input", type=click.Path(dir_okay=True))
@click.option("-o", "--output", type=click.Path(),
              help="Output .inr file, - for standard output [default: INPUT with .inr].")
@click.option("--model", type=click.Choice(["hybrid", "siren", "fourier", "pe", "relu"]), default=None,
              help="hybrid: latent grids, context-coded; the others: coordinate MLPs [default: hybrid].")
@click.option("--preset", type=click.Choice(["fast", "medium", "slow"]), default=None,
              help="Hybrid encoder effort: caps of 20 s / 60 s / 5 min per 768x512 image, in proportion for larger ones [default: medium].")
@click.option("--basis", type=click.Choice(["auto", "wavelet", "pyramid"]), default=None,
              help="Hybrid: the latent grids' basis. wavelet: CDF 9/7 subbands, about a second; pyramid: bicubic "
                   "bumps, searched for the preset's time; auto: both, the better file kept [default: fast wavelet, "
                   "medium and slow auto].")
@click.option("-q", "--quality", type=int, default=None, help="1..100: model size and bit depth [default: 75].")
@click.option("--bpp", type=float, default=None, help="Target bits per pixel (real file size, within 10%).")
@click.option("--psnr", type=float, default=None,
              help="Target PSNR in dB (hybrid): of the decoded 8-bit image, within 1 dB where the image reaches it.")
@click.option("--steps", type=int, default=None,
              help="MLP models: training steps [default: 1000]; hybrid: RDOQ sweeps [default: per preset].")
@click.option("--seconds", type=float, default=None,
              help="Wall-clock budget for the encoder [hybrid default: the preset's cap for the image's size].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True,
              help="Where the encoder's tensor work runs: auto is CUDA, else MPS (MLPs only), else the CPU.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (repeatable runs).")
@click.option("--batch", type=int, default=None, help="Pixels per step [default: 16384 on CPU, 262144 on GPU].")
@click.option("--lr", type=float, default=None, help="Learning rate [default: per model].")
@click.option("--threads", type=int, default=None,
              help="CPU threads for the tensor work [default: one per core]; when running several encodes at once, "
                   "give each its share of the cores.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the measured figures.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def encode(input, output, model, preset, basis, quality, bpp, psnr, steps, seconds, device, seed, batch, lr, threads,
           as_json, quiet) -> None:
    """Overfit a network to INPUT (- for standard input) and write a compact .inr file."""
    from . import api, config, imageio, runtime

    output = _stdio_paths(input, output, ".inr", as_json)
    if _same_file(input, output):
        raise OptionError("output would overwrite the input image")
    if sum(x is not None for x in (quality, bpp, psnr)) > 1:
        raise OptionError("give one of --quality, --bpp and --psnr")
    opts = {"model": model or config.DEFAULT_MODEL, "quality": quality or config.DEFAULT_QUALITY,
            "preset": preset or config.DEFAULT_PRESET, "basis": basis,
                "bpp": bpp, "psnr": psnr, "steps": steps, "seconds": seconds, "device": device, "seed": seed, "batch": batch, "lr": lr,
                "quiet": quiet}
    if quality is not None:
        config.check_quality(quality)
    imageio.check_output(output)  # before the encode, not after it
    n_threads = runtime.set_threads(threads)
    image = imageio.open_image(input)
    result = api.encode_image(image, **opts)
    imageio.write_bytes(output, result.data)
    d = {"input": str(input), "output": str(output), **result.as_dict(), "threads": n_threads}
    _emit(d, as_json, [(f"{_name(output, 'stdout')}: {d['width']}x{d['height']} {d['model']} {d['bytes']} bytes "
                       f"{d['bpp']:.4f} bpp  PSNR {d['psnr']:.2f} dB  ({d['steps']} steps, "
                       f"{d['seconds']:.1f} s on {d['device']})")], err=imageio.is_stdio(output))
    if seconds is not None and result.seconds > OVERRUN * seconds + OVERRUN_SLACK:
        # the budget bounds the search, not the work every encode of the image needs (on the
        # hybrid: the fill, one pass, the filters, the coding and the verifying decode)
        click.echo(f"inrc: note: the encode took {result.seconds:.1f} s, over --seconds {seconds:g}: "
                   "the work every encode of this image needs takes longer than that", err=True)
    elif d.get("first_pass_cut_short"):
        # the time cap ended the first pass's L1 refit or RDOQ sweeps: the file is below the preset's
        # usual quality (a short --seconds, or a busy or oversubscribed machine: runtime.set_threads)
        click.echo(f"inrc: note: the time budget cut the encoder's first pass short ({d['steps']} RDOQ sweeps), so "
                   "this file is below the preset's usual quality: is the machine busy? (when running "
                   "several encodes, fewer --threads each; or a longer --seconds)", err=True)
    _note_target(result, bpp, psnr)


def _note_target(result, bpp: float | None, psnr: float | None) -> None:
    """A note on stderr when the written file is outside the promised band of ``--bpp`` or
    ``--psnr`` (a target the image cannot reach, or a time budget too short to get there)."""
    from .encoder import BPP_BAND, PSNR_BAND

    if bpp is not None and abs(result.bpp / bpp - 1) > BPP_BAND:
        click.echo(f"inrc: note: the file has {result.bpp:.4f} bpp, outside --bpp {bpp:g} ± {100 * BPP_BAND:g} %: "
                   "the nearest this encode found", err=True)
    if psnr is not None and abs(result.psnr - psnr) > PSNR_BAND:
        click.echo(f"inrc: note: the file has {result.psnr:.2f} dB, outside --psnr {psnr:g} ± {PSNR_BAND:g} dB: "
                   "the nearest this encode found", err=True)


@cli.command()
@click.argument("input", type=click.Path(dir_okay=True))
@click.option("-o", "--output", type=click.Path(),
              help="Output image (.png, .bmp, .tif, .webp, .ppm, .jpg), - for PNG on standard output "
                   "[default: INPUT with .png].")
@click.option("--size", type=str, default=None, help="N: longer side N, aspect kept; WxH: exact size.")
@click.option("--scale", type=float, default=None, help="Scale factor relative to the native size (or the crop's).")
@click.option("--crop", type=str, default=None,
              help="X,Y,W,H: render only this region, in pixels of the native image (fractions allowed); "
                   "--size and --scale then apply to it.")
@click.option("--max-pixels", type=int, default=None, help="Refuse larger outputs [default: 89478485].")
@click.option("--device", type=click.Choice(["cpu", "auto", "cuda", "mps"]), default="cpu", show_default=True,
              help="Where MLP files render (hybrid files decode with numpy on the CPU).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def decode(input, output, size, scale, crop, max_pixels, device, as_json) -> None:
    """Render an .inr file (- for standard input) to an image, at native size or any other."""
    import time

    from . import decoder, imageio

    output = _stdio_paths(input, output, ".png", as_json)
    if _same_file(input, output):
        raise OptionError("output would overwrite the input file")
    imageio.save_format(output)
    imageio.check_output(output)
    if max_pixels is not None and max_pixels < 1:
        raise OptionError("--max-pixels must be positive")
    data = _read_inr(input)
    t0 = time.perf_counter()  # after the input is read: from a pipe, reading waits for its writer
    limit = max_pixels if max_pixels is not None else decoder.DEFAULT_MAX_PIXELS
    p = decoder.parse(data)
    window, ow, oh = decoder.output_geometry(p.header, size, scale, crop, limit)
    bands = decoder.Renderer(data, p, device).bands(ow, oh, window)
    if imageio.save_format(output) == "PNG":  # streamed: memory stays bounded at any size
        imageio.write_png_bands(output, ow, oh, p.header.channels, bands)
    else:
        arr = decoder.assemble(bands, ow, oh, p.header.channels)
        imageio.save_image(imageio.to_pil(arr), output)
    d = {"input": str(input), "output": str(output), "width": ow, "height": oh,
         "crop": None if window is None else list(window), "seconds": round(time.perf_counter() - t0, 3)}
    _emit(d, as_json, [f"{_name(output, 'stdout')}: {ow}x{oh} ({d['seconds']:.2f} s)"], err=imageio.is_stdio(output))


@cli.command()
@click.argument("input", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(input, as_json) -> None:
    """Show what an .inr file (- for standard input) holds."""
    from . import api, bitstream

    d = api.info(_read_inr(input))
    latent = d["model"] in bitstream.LATENT_MODELS
    lines = [
        f"file            {_name(input, 'stdin')}",
        f"format version  {d['format_version']}",
        f"image           {d['width']}x{d['height']}, {d['channels']} channel(s)",
        (f"model           {d['model']}: {d['layers']} levels of CDF 9/7 subbands (wavelet basis)"
         if d.get("basis") == "wavelet" else
         f"model           {d['model']}: {d['layers']} latent levels" if latent else
         f"model           {d['model']}: {d['layers']} hidden layers x {d['hidden']}"
         + (f", enc {d['enc_a']}/{d['enc_b']}" if d["enc_a"] or d["enc_b"] else "")),
        f"{'coded values' if d.get('basis') == 'wavelet' else 'latent values' if latent else 'parameters':16s}{d['params']}",
        *([f"colour space    {d['colour']}"] if latent and d["channels"] >= 3 else []),
        f"size            {d['bytes']} bytes, {d['bpp']:.4f} bpp",
        f"  header+CRC    {d['header_bytes']} bytes",
        f"  side info     {d['side_info_bytes']} bytes",
        f"  coded data    {d['coded_bytes']} bytes",
        f"decoder cost    {d['macs_per_pixel']} MACs/pixel",
    ]
    for lv, radii in enumerate(d["filter_radii"]):
        if any(radii):
            lines.append(f"level-{lv} filter  radius {'/'.join(map(str, radii))} per channel")
    if d["post_filter_hidden"]:
        lines.append(f"post filter     3x3 convolutions, {d['post_filter_hidden']} hidden channels")
    if d["sign_modelled_planes"]:
        lines.append(f"sign contexts   {d['sign_modelled_planes']} latent planes")
    _emit({"file": str(input), **d}, as_json, lines)


@cli.command()
@click.argument("input", type=click.Path(dir_okay=True))
@click.option("-o", "--output", type=click.Path(), required=True, help="Output .safetensors file, - for standard output.")
def export(input, output) -> None:
    """Write the dequantized weights as safetensors (configuration in the metadata)."""
    from . import api, imageio

    if _same_file(input, output):
        raise OptionError("output would overwrite the input file")
    imageio.check_output(output)
    r = api.export(_read_inr(input), output)
    click.echo(f"{_name(output, 'stdout')}: {r['tensors']} tensors, {r['params']} values", err=imageio.is_stdio(output))


@cli.command()
@click.argument("images_dir", type=click.Path())
@click.option("--codecs", default="inrc,jpeg,webp,jpeg2000,avif", show_default=True,
              help="Comma-separated codecs to run.")
@click.option("--inrc-settings", "inrc_settings", multiple=True,
              help="inrc curve: NAME or NAME:key=value,... (model, preset, basis, steps, seconds, batch, lr, seed, device); repeatable [default: default].")
@click.option("--inrc-qualities", default=",".join(str(q) for q in (40, 60, 75, 90)), show_default=True,
              help="The inrc rate points (--quality values); BD-rates need 4 or more, fewer add points to merge with other runs.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="bench-output", show_default=True)
@click.option("--jobs", type=int, default=1, show_default=True, help="Parallel processes (torch threads are split between them).")
@click.option("--limit", type=int, default=None, help="Use only the first N images.")
@click.option("--anchors", type=click.Path(), default=None, help="CSV of published Kodak curves (codec,source,bpp,psnr) to overlay, and on the 24 Kodak images to compute BD-rates against.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench(images_dir, codecs, inrc_settings, inrc_qualities, out_dir, jobs, limit, anchors, quiet) -> None:
    """Rate-distortion benchmark of inrc against JPEG, WebP, JPEG 2000 and AVIF on IMAGES_DIR."""
    from . import bench as b

    try:
        points = [int(q) for q in inrc_qualities.split(",") if q.strip()]
    except ValueError:
        raise OptionError(f"--inrc-qualities must be integers, got {inrc_qualities!r}") from None
    if not points or any(not 1 <= q <= 100 for q in points):
        raise OptionError(f"--inrc-qualities needs values in 1..100, got {inrc_qualities!r}")
    if len(set(points)) != len(points):
        raise OptionError(f"--inrc-qualities has a value twice: {inrc_qualities!r}")
    names = [c.strip() for c in codecs.split(",") if c.strip()]
    summary = b.run(images_dir, names, list(inrc_settings), points,
                    out_dir, jobs=jobs, limit=limit, anchors=anchors, progress=not quiet)
    ref = "jpeg" if "jpeg" in summary["bd_rate_percent"] else None
    click.echo(f"{len(summary['images'])} images -> {out_dir} ({summary['wall_seconds_this_run']} s this run)")
    probe = summary.get("machine", {}).get("speed_probe")
    if probe:  # the inrc presets are time-capped: this says how fast the machine was for them
        click.echo(f"  speed probe {probe['min']:.2f} s (a fixed `fast` encode before the run; compare runs by it)")
    if "inrc" in names and len(points) < 4:
        click.echo(f"  inrc curves have {len(points)} point(s): no BD-rates (they need 4); per-image results in per_image.csv,"
                   " to merge with other runs (benchmarks/compare_runs.py)")
    if ref:
        ms = summary.get("bd_rate_percent_ms_ssim", {})
        for name, row in summary["bd_rate_percent"].items():
            v, m = row.get(ref), ms.get(name, {}).get(ref)
            click.echo(f"  {name:16s} BD-rate vs JPEG {'n/a' if v is None else f'{v:+.1f} %'}"
                       + ("" if m is None else f" (MS-SSIM {m:+.1f} %)"))
    for name, row in summary.get("vs_published", {}).get("bd_rate_percent", {}).items():
        if name.startswith("inrc"):
            cells = ", ".join(f"{a.split()[0]} {'n/a' if v is None else f'{v:+.1f} %'}" for a, v in row.items())
            click.echo(f"  {name:16s} BD-rate vs published Kodak curves: {cells}")


@cli.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="demo-output", show_default=True)
@click.option("--steps", type=int, default=None, help="Training steps [default: the encoder's default].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def demo(out_dir, steps, as_json) -> None:
    """Encode scikit-image's astronaut, decode at 1x and 2x, compare with JPEG at the same size."""
    from .demo import run_demo

    d = run_demo(Path(out_dir), steps=steps, quiet=as_json)
    _emit(d, as_json, d.pop("lines"))


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every failure into one line and an exit code."""
    try:
        rv = cli.main(args=argv, prog_name="inrc", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.UsageError as e:
        msg = e.format_message().replace("\n", " ")
        click.echo(f"inrc: error: {msg} (see 'inrc --help')", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("inrc: error: interrupted", err=True)
        return 130
    except click.ClickException as e:
        click.echo(f"inrc: error: {e.format_message()}", err=True)
        return 1
    except InrcError as e:
        click.echo(f"inrc: error: {e}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("inrc: error: interrupted", err=True)
        return 130
    except Terminated:
        click.echo("inrc: error: terminated", err=True)
        return 143
    except MemoryError:
        click.echo("inrc: error: out of memory", err=True)
        return 1
    except BrokenPipeError:  # the reader of our standard output went away (``inrc decode ... -o - | head``)
        _silence_stdout()
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class Terminated(BaseException):
    """SIGTERM, raised in the main thread by :func:`entry`'s handler, so that the command unwinds
    as after Ctrl-C: a temporary output file is removed, ``inrc bench`` stops its workers."""


def _terminate(signum, frame) -> None:
    raise Terminated


def entry() -> None:
    import signal

    from .runtime import tune_allocator

    tune_allocator()
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
