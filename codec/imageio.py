"""Reading images, writing images and files atomically.

Input policy (documented in the README):

* EXIF orientation is applied (``ImageOps.exif_transpose``).
* Modes map to 1-4 channels: ``1``/``L``/``I;16``/``I``/``F`` -> grayscale (1), ``LA`` -> 2,
  ``RGB``/``CMYK``/``YCbCr``/``LAB``/``HSV`` -> RGB (3), ``RGBA``/``PA`` -> RGBA (4); palette images
  become RGB, or RGBA when they carry transparency.  Alpha is kept (coded as a fourth channel)
  unless it is fully opaque, in which case it is dropped.
* 16-bit images are read at full precision (``v / 65535``); the codec outputs 8 bits.
* An embedded ICC profile other than sRGB is applied: RGB, RGBA and CMYK pixels are converted to
  sRGB with LittleCMS (Pillow's ``ImageCms``, relative colorimetric intent), because the decoder
  writes untagged images, which viewers show as sRGB.  A profile that cannot be read or applied is
  ignored, and one that maps colours to themselves (sRGB, whatever its name) is not applied.
"""
from __future__ import annotations

import io
import os
import shutil
import struct
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageInputError, LimitError, OptionError

MAX_INPUT_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
MAX_SIDE = 0xFFFF
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_SAVE_FORMATS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
                 ".ppm": "PPM", ".pgm": "PPM", ".jpg": "JPEG", ".jpeg": "JPEG"}
STDIO = "-"  # as a path: standard input or output, as for cwebp, cjxl and gzip
STDOUT_FORMAT = "PNG"  # an image written to standard output has no extension to name its format
MAX_STDIN_BYTES = 1 << 30  # 1 GiB: above any image or .inr file the codec accepts


def is_stdio(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` names standard input or output (``-``)."""
    return path is not None and str(path) == STDIO


def read_stdin(what: str) -> bytes:
    """All of standard input, refused when it is a terminal, empty or over ``MAX_STDIN_BYTES``."""
    stream = sys.stdin
    if stream is None or stream.isatty():
        raise OptionError(f"standard input is a terminal: pipe {what} into it, or name a file")
    data = getattr(stream, "buffer", stream).read(MAX_STDIN_BYTES + 1)
    if not data:
        raise ImageInputError("standard input is empty")
    if len(data) > MAX_STDIN_BYTES:
        raise LimitError(f"standard input is over {MAX_STDIN_BYTES} bytes")
    return data


def check_output(path: str | os.PathLike) -> None:
    """Refuse before any work an output that cannot be written: a missing directory, or standard
    output when it is a terminal (binary data there is garbage on the screen)."""
    if is_stdio(path):
        if sys.stdout is None or sys.stdout.isatty():
            raise OptionError("standard output is a terminal: redirect it to a file or a pipe, or give -o FILE")
        return
    if Path(path).is_dir():
        raise ImageInputError(f"{path}: is a directory")
    _parent(path)


def _parent(path: str | os.PathLike) -> Path:
    """The directory an output file goes into, which must exist."""
    parent = Path(path).parent if str(Path(path).parent) else Path(".")
    if not parent.is_dir():
        raise ImageInputError(f"{path}: directory {parent} does not exist")
    return parent


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file (``-``: standard input) with clear errors for missing, unreadable and
    oversized inputs."""
    if is_stdio(path):
        path, source = "stdin", io.BytesIO(read_stdin("an image"))
    else:
        source = Path(path)
        if not source.exists():
            raise ImageInputError(f"{path}: no such file")
        if source.is_dir():
            raise ImageInputError(f"{path}: is a directory, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise LimitError(f"{path}: image too large (over {MAX_INPUT_PIXELS} pixels)") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{path}: not a supported image file") from None
    except PermissionError:
        raise ImageInputError(f"{path}: permission denied") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(f"{path}: cannot read image ({exc})") from None
    return img


ICC_MODES = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB"}  # input mode -> mode after conversion to sRGB
# 4096 RGB colours (every channel at 16 levels, 0..255) that tell an sRGB profile from others
_PROBE = np.stack(np.meshgrid(*[np.linspace(0, 255, 16).round().astype(np.uint8)] * 3, indexing="ij"),
                  axis=-1).reshape(64, 64, 3)


def to_srgb(img: Image.Image) -> Image.Image:
    """``img`` converted to sRGB by its embedded ICC profile (module policy); unchanged without a
    profile, with one that cannot be read or applied, with one that maps 4096 probe colours to
    within one level of themselves (sRGB under any name: a conversion would only add rounding), and
    for modes other than :data:`ICC_MODES` (a grayscale profile would need a gray output profile)."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ICC_MODES:
        return img
    from PIL import ImageCms

    intent = ImageCms.Intent.RELATIVE_COLORIMETRIC
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        srgb = ImageCms.createProfile("sRGB")
        if img.mode != "CMYK":  # an sRGB profile, by what it does: the probe colours move by at most one level
            probe = Image.fromarray(_PROBE)
            moved = np.asarray(ImageCms.profileToProfile(probe, src, srgb, renderingIntent=intent), dtype=np.int16)
            if np.abs(moved - _PROBE).max() <= 1:
                return img
        out = ImageCms.profileToProfile(img, src, srgb, renderingIntent=intent, outputMode=ICC_MODES[img.mode])
    except (OSError, ValueError, ImageCms.PyCMSError):
        return img
    return out if out is not None else img


def to_array(img: Image.Image) -> np.ndarray:
    """A PIL image -> float32 ``(H, W, C)`` in ``[0, 1]``, C in 1..4 (see module policy)."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001, S110 - a malformed EXIF block must not stop the encode
        pass
    img = to_srgb(img)
    w, h = img.size
    if w < 1 or h < 1:
        raise ImageInputError("image has no pixels")
    if w > MAX_SIDE or h > MAX_SIDE:
        raise LimitError(f"image of {w}x{h} pixels exceeds the format's limit of {MAX_SIDE} per side")
    if w * h > MAX_INPUT_PIXELS:
        raise LimitError(f"image of {w}x{h} pixels exceeds the limit of {MAX_INPUT_PIXELS} pixels")
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if (mode.startswith("I;16") or a.max(initial=0) > 255) else 255.0
        if mode == "F" and a.max(initial=0) <= 1.0:
            peak = 1.0
        return np.clip(a / peak, 0, 1).astype(np.float32)[:, :, None]
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode == "1":
        img = img.convert("L")
    elif mode not in _MODES.values():
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ImageInputError(f"unsupported image mode {mode} ({exc})") from None
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype != np.uint8:
        raise ImageInputError(f"unsupported image sample type {a.dtype}")
    if a.shape[2] in (2, 4) and (a[:, :, -1] == 255).all():
        a = a[:, :, :-1]
    return a.astype(np.float32) / np.float32(255.0)


def as_array(image) -> np.ndarray:
    """Accept a path, a PIL image or a numpy array (uint8/uint16/float in [0,1]); return ``(H,W,C)``."""
    if isinstance(image, (str, os.PathLike)):
        return to_array(open_image(image))
    if isinstance(image, Image.Image):
        return to_array(image)
    if isinstance(image, np.ndarray):
        a = image
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
            raise ImageInputError(f"array of shape {image.shape} is not an image (H, W[, C<=4])")
        if a.shape[0] > MAX_SIDE or a.shape[1] > MAX_SIDE or a.shape[0] * a.shape[1] > MAX_INPUT_PIXELS:
            raise LimitError(f"array of shape {image.shape} exceeds the image size limits")
        if a.dtype == np.uint8:
            return a.astype(np.float32) / np.float32(255.0)
        if a.dtype == np.uint16:
            return (a.astype(np.float64) / 65535.0).astype(np.float32)
        if np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                raise ImageInputError("float image contains NaN or infinity")
            return np.clip(a, 0, 1).astype(np.float32)
        raise ImageInputError(f"unsupported array dtype {a.dtype}")
    raise ImageInputError(f"cannot use a {type(image).__name__} as an image")


def to_pil(a: np.ndarray) -> Image.Image:
    """``uint8 (H, W, C)`` -> PIL image of mode L / LA / RGB / RGBA."""
    c = a.shape[2]
    return Image.fromarray(a[:, :, 0] if c == 1 else a, mode=_MODES[c])


def atomic_write(path: str | os.PathLike, writer) -> None:
    """Call ``writer(tmp_path)`` then rename onto ``path``; on failure leave ``path`` untouched.

    ``path`` ``-`` is standard output: the temporary file is copied there once it is complete, so
    a failure writes nothing there either.  Operating-system errors (permissions, a full disk)
    become one ``ImageInputError`` naming the path.
    """
    if is_stdio(path):
        check_output(path)
        _write_stdout(writer)
        return
    parent = _parent(path)
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        writer(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise ImageInputError(f"{path}: cannot write ({exc.strerror or exc})") from None
        raise


def _write_stdout(writer) -> None:
    """``writer`` fills a file in the temporary directory, which is then copied to standard output."""
    fd, tmp = tempfile.mkstemp(prefix=".inrc-stdout.", suffix=".part")
    os.close(fd)
    try:
        try:
            writer(tmp)
        except OSError as exc:
            raise ImageInputError(f"cannot write a temporary file for standard output ({exc.strerror or exc})") from None
        out = getattr(sys.stdout, "buffer", sys.stdout)
        with open(tmp, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
        out.flush()
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, w)


def save_format(path: str | os.PathLike) -> str:
    """The Pillow format an output path names by its extension (``-``: PNG on standard output)."""
    if is_stdio(path):
        return STDOUT_FORMAT
    ext = Path(path).suffix.lower()
    if ext not in _SAVE_FORMATS:
        raise ImageInputError(f"{path}: unknown output image type {ext or '(none)'}; use one of {', '.join(sorted(_SAVE_FORMATS))}")
    return _SAVE_FORMATS[ext]


def save_image(img: Image.Image, path: str | os.PathLike) -> None:
    """Save atomically in the format named by the extension (PNG, BMP, TIFF, WebP lossless, PPM, JPEG)."""
    fmt = save_format(path)
    if fmt == "JPEG" and img.mode in ("LA", "RGBA"):
        raise ImageInputError(f"{path}: JPEG cannot store alpha; use .png")
    kwargs = {"lossless": True} if fmt == "WEBP" else ({"quality": 95} if fmt == "JPEG" else {})
    if fmt == "PPM" and img.mode in ("LA", "RGBA"):
        raise ImageInputError(f"{path}: PPM cannot store alpha; use .png")

    atomic_write(path, lambda tmp: img.save(tmp, format=fmt, **kwargs))


_PNG_COLOR = {1: 0, 2: 4, 3: 2, 4: 6}  # L, LA, RGB, RGBA


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png_bands(path: str | os.PathLike, width: int, height: int, channels: int, bands) -> None:
    """Write an 8-bit PNG from ``(first_row, uint8 rows)`` bands as they are produced.

    Pillow needs the whole image in memory; this keeps only one band, so an 8192x8192 render costs
    the band's memory, not 200 MB twice.  Rows use PNG filter 1 (Sub), compressed by zlib level 6,
    one IDAT chunk per band.  Written to a temporary file and renamed, like every output.
    """
    def w(tmp: str) -> None:
        comp = zlib.compressobj(6)
        with open(tmp, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n")
            f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOR[channels], 0, 0, 0)))
            for _, band in bands:
                rows = band.reshape(band.shape[0], width * channels)
                filt = rows.copy()
                filt[:, channels:] = rows[:, channels:] - rows[:, :-channels]  # uint8 wraps mod 256
                lines = np.concatenate([np.ones((rows.shape[0], 1), np.uint8), filt], axis=1)
                f.write(_png_chunk(b"IDAT", comp.compress(lines.tobytes())))
            f.write(_png_chunk(b"IDAT", comp.flush()))
            f.write(_png_chunk(b"IEND", b""))

    atomic_write(path, w)
