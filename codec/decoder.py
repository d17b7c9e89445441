"""The decoding pipeline: validate, entropy-decode, rebuild the model, render in tiles.

Every field is checked before anything is allocated: the container (magic, version, flags,
lengths, CRC-32) by :mod:`codec.bitstream`, the parameter count against ``MAX_PARAMS`` and the decoder cost against ``MAX_MACS_PER_PIXEL``
(so a hostile header cannot turn a small render into hours of work), the
tensor records against the model's layer shapes, and the output size against ``max_pixels``.
Rendering runs over bands of rows of at most ``TILE_PIXELS`` pixels, so the working memory is
bounded whatever the output size (the output array itself is ``W * H * C`` bytes).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

from . import bitstream, color, context, coords, entropy, finefilter, postfilter, quant, wavelet
from .bitstream import Header
from .errors import FieldRangeError, LimitError, OptionError
from .layout import spec_from_header
from .specs import ModelSpec, PyramidSpec, WaveletSpec
from .synthesis import LatentRenderer

MAX_PARAMS = 1 << 20  # MLP weights
MAX_LATENTS = 1 << 26  # hybrid latent values (RGB images up to about 16.7 Mpixels; 2^25 before 0.10.3)
MAX_MACS_PER_PIXEL = 1 << 20  # render work is bounded by max_pixels * this
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb threshold
TILE_PIXELS = 1 << 16
MAX_SIDE = 1 << 16


@dataclass
class Parsed:
    header: Header
    spec: ModelSpec | PyramidSpec | WaveletSpec
    # the wavelet basis: one record per plane, group by group (WaveletSpec.coded_shapes)
    records: list[bitstream.TensorRecord] | list[bitstream.ContextRecord]
    words: bytes
    # hybrid, version 4 on: filters[l][c], the level filter of level l and channel c (level 0 in
    # versions 4 and 5, levels 0..2 in version 6)
    filters: list[list[bitstream.FilterRecord]] = dataclasses.field(default_factory=list)
    # hybrid, version 7: the post filter (hidden 0: none; codec.postfilter)
    post: bitstream.PostFilterRecord = dataclasses.field(default_factory=bitstream.PostFilterRecord)


def parse(data: bytes) -> Parsed:
    """Validate a file completely (short of entropy decoding) and split it into its parts."""
    header, payload = bitstream.unpack(data)
    spec = spec_from_header(header)
    limit = MAX_PARAMS if isinstance(spec, ModelSpec) else MAX_LATENTS
    if spec.num_params() > limit:
        raise FieldRangeError(f"model of {spec.num_params()} parameters exceeds the limit of {limit}")
    if spec.macs_per_pixel() > MAX_MACS_PER_PIXEL:
        raise FieldRangeError(f"model costs {spec.macs_per_pixel()} MACs per pixel, over the limit of {MAX_MACS_PER_PIXEL}")
    filters: list[list[bitstream.FilterRecord]] = []
    post = bitstream.PostFilterRecord()
    if isinstance(spec, WaveletSpec):
        post, payload = bitstream.unpack_post_filter(payload, spec.channels)
        records = []
        groups = spec.group_shapes()
        for g, shapes in enumerate(groups):
            order = context.plane_indices(len(shapes), spec.channels)
            group, _, payload = bitstream.unpack_context_side(
                payload, order, len(entropy.THETAS), spec.channels, signs=True, filter_levels=0,
                version=header.version, words=g == len(groups) - 1)
            records += group
        words = payload
    elif spec.name == "hybrid":
        if header.version >= 7:
            post, payload = bitstream.unpack_post_filter(payload, spec.channels)
        if header.version == 2:
            records, words = bitstream.unpack_context_payload(payload, len(spec.coded_shapes()), len(entropy.THETAS))
        else:
            order = context.plane_indices(spec.levels, spec.channels)
            n_levels = bitstream.filter_levels(header.version, spec.levels)
            records, flat, words = bitstream.unpack_context_side(
                payload, order, len(entropy.THETAS), spec.channels if n_levels else 0,
                signs=header.version >= 5, filter_levels=n_levels, version=header.version)
            filters = [flat[lv * spec.channels : (lv + 1) * spec.channels] for lv in range(n_levels if flat else 0)]
    else:
        records, words = bitstream.unpack_payload(payload, len(spec.coded_shapes()))
    for i, r in enumerate(records):
        if r.kmax > entropy.MAX_K:
            raise FieldRangeError(f"tensor {i}: code range {r.kmax} out of range")
    return Parsed(header, spec, records, words, filters, post)


def hybrid_codes(p: Parsed) -> list[list[np.ndarray]]:
    """Entropy-decode a hybrid file's integer latents, ``codes[level][channel]``."""
    spec, c = p.spec, p.spec.channels
    by_plane = {(lv, ch): p.records[lv * c + ch] for lv in range(spec.levels) for ch in range(c)}
    return context.decode_planes(p.words, spec.level_shapes(), c, by_plane, signed=p.header.version >= 5)


def wavelet_codes(p: Parsed) -> list[list[list[np.ndarray]]]:
    """Entropy-decode a wavelet file's integer planes, ``codes[group][level][channel]`` (groups
    ``LL``, ``HL``, ``LH``, ``HH``; :class:`codec.specs.WaveletSpec`), from its one stream."""
    spec, c = p.spec, p.spec.channels
    dec = context.range_decoder(p.words)
    codes = []
    for g, shapes in enumerate(spec.group_shapes()):
        by_plane = {(lv, ch): p.records[spec.record_index(g, lv, ch)] for lv in range(len(shapes)) for ch in range(c)}
        codes.append(context.decode_planes(b"", shapes, c, by_plane, dec=dec))
    return codes


def wavelet_subbands(p: Parsed, codes: list[list[list[np.ndarray]]], ch: int) -> tuple[np.ndarray, wavelet.Bands]:
    """Channel ``ch``'s dequantized subbands (float32 ``q * Delta``) of a wavelet file's decoded
    integers ``codes`` (:func:`wavelet_codes`): the final ``LL`` and per level ``(HL, LH, HH)``."""
    spec = p.spec

    def plane(g: int, lv: int) -> np.ndarray:
        step = quant.step_from_index(p.records[spec.record_index(g, lv, ch)].step_index)
        return codes[g][lv][ch].astype(np.float32) * np.float32(step)

    return plane(0, 0), [tuple(plane(1 + o, lv) for o in range(3)) for lv in range(spec.levels)]


def wavelet_native(p: Parsed) -> np.ndarray:
    """A wavelet file's native-size rendering in its coded colour space, float32 ``(C, H, W)``:
    the dequantized subbands through :func:`codec.wavelet.synthesise`, plus 0.5 (the encoder's
    centre, :mod:`codec.wavecode`), plus the post filter's correction (if any).  One channel at a
    time, so the working memory beyond the output is one channel's transform."""
    spec, c = p.spec, p.spec.channels
    codes = wavelet_codes(p)
    out = np.empty((c, spec.height, spec.width), dtype=np.float32)
    for ch in range(c):
        out[ch] = wavelet.synthesise(*wavelet_subbands(p, codes, ch), spec.height, spec.width)
        out[ch] += np.float32(0.5)
        for g in codes:  # this channel's integers are no longer needed
            for level in g:
                level[ch] = None
    if p.post.hidden:
        out += postfilter.correction(lambda r0, r1: out[:, r0:r1], spec.height, spec.width, p.post, c)
    return out


def latent_planes(p: Parsed) -> list[np.ndarray]:
    """Entropy-decode a latent model's planes: per level, float32 ``(channels, h_l, w_l)`` of ``q * Delta``,
    the finest levels through their level filters (version 4 on, :mod:`codec.finefilter`), level 0
    plus the post filter's correction (version 7, :mod:`codec.postfilter`)."""
    spec, c = p.spec, p.spec.channels
    if isinstance(spec, WaveletSpec):  # one native-size grid, sampled bicubically at other sizes
        return [wavelet_native(p)]
    rec = [[p.records[lv * c + ch] for ch in range(c)] for lv in range(spec.levels)]
    if spec.name == "hybrid":
        codes = hybrid_codes(p)
    else:
        flat = entropy.decode(p.words, [(h * w, r.theta, r.kmax) for (h, w), r in zip(spec.coded_shapes(), p.records)])
        codes = [[flat[lv * c + ch].reshape(spec.level_shapes()[lv]) for ch in range(c)] for lv in range(spec.levels)]
    planes = []
    for lv in range(spec.levels):  # filled in place, each level's integer codes let go once its floats exist
        level = np.empty((c, *spec.level_shapes()[lv]), dtype=np.float32)
        for ch in range(c):
            level[ch] = codes[lv][ch]
            level[ch] *= np.float32(quant.step_from_index(rec[lv][ch].step_index))
        planes.append(level)
        codes[lv] = None
    planes = finefilter.apply_levels(planes, p.filters)
    if p.post.hidden:
        # level 0 is at the native size: the post filter's correction of the native rendering is added to it
        h, w = spec.level_shapes()[0]
        native = LatentRenderer(planes, spec.kernel)
        planes[0] = planes[0] + postfilter.correction(lambda r0, r1: native.ycc_rows(r0, r1, w, h), h, w, p.post, c)
    return planes


def load_model(data: bytes, parsed: Parsed | None = None) -> tuple[Parsed, torch.nn.Module]:
    """Parse ``data`` (unless ``parsed`` is its :func:`parse`) and rebuild the dequantized model on CPU
    as a torch module (for export and the MLP renderer)."""
    import torch

    from .models import build_any

    p = parsed if parsed is not None else parse(data)
    if isinstance(p.spec, PyramidSpec):
        tensors = [torch.from_numpy(g[ch]) for g in latent_planes(p) for ch in range(p.spec.channels)]
    else:
        specs = [(o * i, r.theta, r.kmax) for (o, i), r in zip(p.spec.coded_shapes(), p.records)]
        codes = entropy.decode(p.words, specs)
        tensors = [quant.dequantize(c, quant.step_from_index(r.step_index), s)
                   for c, r, s in zip(codes, p.records, p.spec.coded_shapes())]
    with torch.random.fork_rng(devices=[]):
        model = build_any(p.spec)
    model.load_coded_tensors(tensors)
    model.eval()
    return p, model


class Renderer:
    """Renders a decoded file band by band: numpy for the latent models, torch for the MLPs."""

    def __init__(self, data: bytes, parsed: Parsed | None = None, device: str = "cpu") -> None:
        self.parsed = parsed if parsed is not None else parse(data)
        self.header = self.parsed.header
        if isinstance(self.parsed.spec, PyramidSpec | WaveletSpec):
            self.latent: LatentRenderer | None = LatentRenderer(latent_planes(self.parsed), self.parsed.spec.kernel,
                                                                self.parsed.spec.colour)
            self.model = None
        else:
            from .fit import pick_device

            self.latent = None
            self.device = pick_device(device)
            _, self.model = load_model(data, self.parsed)

    def bands(self, ow: int, oh: int, crop: Crop | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, uint8 rows)`` bands of an ``ow x oh`` rendering of the whole image, or
        of ``crop`` (:func:`resolve_crop`)."""
        if self.latent is None:
            yield from render_bands(self.model, self.header, ow, oh, self.device, crop)
            return
        spans = coords.spans(self.header.width, self.header.height, crop)
        rows = max(1, TILE_PIXELS // ow)
        for r0 in range(0, oh, rows):
            r1 = min(oh, r0 + rows)
            yield r0, color.to_uint8(self.latent.rows(r0, r1, ow, oh, spans))


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*$")
Crop = tuple[float, float, float, float]  # (x0, y0, w, h) in pixels of the native image


def resolve_crop(width: int, height: int, crop: str | tuple | list | None) -> Crop | None:
    """``--crop X,Y,W,H``: the region of the ``width x height`` image to render, in its pixels
    (left, top, width, height, as for dwebp's ``-crop``; fractions allowed, since the model is a
    continuous function).  It must lie inside the image; ``None`` is the whole image."""
    if crop is None:
        return None
    if isinstance(crop, str):
        parts = crop.replace(" ", "").split(",")
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            vals = []
        if len(vals) != 4:
            raise OptionError(f"crop must be X,Y,W,H in pixels (e.g. 100,50,64,64), got {crop!r}")
    else:
        try:
            vals = [float(v) for v in crop]
        except (TypeError, ValueError):
            raise OptionError(f"crop must be 4 numbers X, Y, W, H, got {crop!r}") from None
        if len(vals) != 4:
            raise OptionError(f"crop must be 4 numbers X, Y, W, H, got {len(vals)}")
    x, y, w, h = vals
    if not all(np.isfinite(vals)) or w <= 0 or h <= 0:
        raise OptionError(f"crop X,Y,W,H needs finite numbers and W, H above 0, got {x:g},{y:g},{w:g},{h:g}")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise OptionError(f"crop {x:g},{y:g},{w:g},{h:g} is not inside the {width}x{height} image")
    return x, y, w, h


def resolve_size(width: float, height: float, size: str | int | None = None, scale: float | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Output size from ``--size`` (``N``: longer side N, aspect kept; ``WxH``: exact) or ``--scale``,
    relative to ``width x height``: the image's, or a crop's (whose default size is its own, rounded)."""
    if size is not None and scale is not None:
        raise OptionError("give --size or --scale, not both")
    if size is None and scale is None:
        ow, oh = max(1, round(width)), max(1, round(height))
    elif scale is not None:
        if not (scale > 0 and np.isfinite(scale)):
            raise OptionError(f"scale must be a positive number, got {scale}")
        ow, oh = max(1, round(width * scale)), max(1, round(height * scale))
        if ow >= MAX_SIDE or oh >= MAX_SIDE:
            raise LimitError(f"output size {ow}x{oh} too large (at most {MAX_SIDE - 1} per side)")
    else:
        m = _SIZE_RE.match(str(size))
        if not m:
            raise OptionError(f"size must be N or WxH (e.g. 2048 or 300x200), got {size!r}")
        a, b = int(m.group(1)), m.group(2)
        if b is None:
            long_side = a
            if long_side < 1:
                raise OptionError("size must be at least 1")
            if width >= height:
                ow, oh = long_side, max(1, round(height * long_side / width))
            else:
                ow, oh = max(1, round(width * long_side / height)), long_side
        else:
            ow, oh = a, int(b)
    if ow < 1 or oh < 1:
        raise OptionError(f"output size {ow}x{oh} must be at least 1x1")
    if ow >= MAX_SIDE or oh >= MAX_SIDE:
        raise LimitError(f"output size {ow}x{oh} too large (at most {MAX_SIDE - 1} per side)")
    if ow * oh > max_pixels:
        raise LimitError(f"output size {ow}x{oh} = {ow * oh} pixels exceeds the limit of {max_pixels} (see --max-pixels)")
    return ow, oh


def output_geometry(header: Header, size: str | int | None = None, scale: float | None = None,
                    crop: str | tuple | list | None = None,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Crop | None, int, int]:
    """``(window, ow, oh)``: the region to render (:func:`resolve_crop`) and the output size
    (:func:`resolve_size`, relative to the region), all checked before anything is allocated."""
    window = resolve_crop(header.width, header.height, crop)
    base = (header.width, header.height) if window is None else window[2:]
    return (window, *resolve_size(*base, size, scale, max_pixels))


def render_bands(model: torch.nn.Module, header: Header, ow: int, oh: int,
                 device: torch.device | str = "cpu", crop: Crop | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_row, uint8 rows)`` bands of an ``ow x oh`` rendering by a torch model (of the
    region ``crop`` only, if given)."""
    import torch

    rows = max(1, TILE_PIXELS // ow)
    model = model.to(device)
    with torch.inference_mode():
        for r0 in range(0, oh, rows):
            r1 = min(oh, r0 + rows)
            xy = coords.grid(ow, oh, header.width, header.height, rows=(r0, r1), device=device, window=crop)
            out = model(xy)
            yield r0, color.to_uint8(out).reshape(r1 - r0, ow, header.channels)


def assemble(bands: Iterator[tuple[int, np.ndarray]], ow: int, oh: int, channels: int) -> np.ndarray:
    """Collect bands into one ``uint8 (oh, ow, channels)`` array."""
    out = np.empty((oh, ow, channels), dtype=np.uint8)
    for r0, band in bands:
        out[r0 : r0 + band.shape[0]] = band
    return out


def render(model: torch.nn.Module, header: Header, ow: int, oh: int, device: torch.device | str = "cpu") -> np.ndarray:
    return assemble(render_bands(model, header, ow, oh, device), ow, oh, header.channels)


def decode_to_array(data: bytes, size: str | int | None = None, scale: float | None = None,
                    max_pixels: int = DEFAULT_MAX_PIXELS, device: str = "cpu",
                    crop: str | tuple | list | None = None) -> np.ndarray:
    """Decode to a ``uint8 (H, W, C)`` array: the whole image, or the region ``crop``
    (:func:`resolve_crop`), at its own size or at ``size`` / ``scale``."""
    p = parse(data)
    window, ow, oh = output_geometry(p.header, size, scale, crop, max_pixels)
    return assemble(Renderer(data, p, device).bands(ow, oh, window), ow, oh, p.header.channels)
