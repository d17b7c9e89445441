"""The Python API: ``encode``, ``decode``, ``read_header``, ``info``, ``export``."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from . import bitstream, color, decoder, finefilter, imageio, postfilter, wavelet
from .bitstream import Header
from .errors import OptionError
from .specs import ModelSpec, WaveletSpec

if TYPE_CHECKING:
    from .encoder import EncodeResult


def encode_image(image, **options) -> EncodeResult:
    """Encode a path, PIL image or array; return the bytes with the measured figures."""
    from .encoder import EncodeOptions, encode_array

    try:
        opts = EncodeOptions(**options)
    except TypeError as exc:
        raise OptionError(f"bad encode option: {exc}") from None
    return encode_array(imageio.as_array(image), opts)


def encode(image, **options) -> bytes:
    """Encode ``image`` (path, PIL image or ``(H, W[, C])`` array) and return the ``.inr`` bytes.

    Options: ``model`` (hybrid, siren, fourier, pe, relu), ``quality`` (1..100), ``bpp`` (target rate),
    ``psnr`` (target PSNR in dB, hybrid only),
    ``preset`` (fast, medium, slow: the hybrid's effort), ``steps``, ``seconds``, ``device`` (auto, cpu, cuda, mps), ``seed``, ``batch``, ``lr``, ``quiet``.
    """
    return encode_image(image, **options).data


def decode(data: bytes, size: str | int | None = None, scale: float | None = None,
           max_pixels: int = decoder.DEFAULT_MAX_PIXELS, crop: str | tuple | None = None) -> Image.Image:
    """Decode ``.inr`` bytes to a PIL image, at native size or at ``size`` / ``scale``; ``crop =
    (x, y, w, h)`` (or ``"x,y,w,h"``, native pixels) renders only that region, at its own size or at
    ``size`` / ``scale``."""
    return imageio.to_pil(decoder.decode_to_array(bytes(data), size, scale, max_pixels, crop=crop))


def read_header(data: bytes) -> Header:
    """Parse and validate the fixed header (the rest of the file is not checked)."""
    return Header.from_bytes(bytes(data))


def info(data: bytes) -> dict:
    """Everything ``inrc info`` shows: size, model, parameters, bytes, bpp, overheads, MACs."""
    p = decoder.parse(bytes(data))
    h = p.header
    side = h.payload_len - len(p.words)
    return {
        "format_version": h.version,
        "width": h.width,
        "height": h.height,
        "channels": h.channels,
        "model": h.model_name,
        "layers": h.layers,
        "hidden": h.hidden,
        "enc_a": h.enc_a,
        "enc_b": h.enc_b,
        "seed": h.seed,
        "params": p.spec.num_params(),
        # the latent models' coded colour space (version 8: JFIF YCbCr or the image's rotation of RGB)
        "colour": color.describe(p.spec.colour) if not isinstance(p.spec, ModelSpec) and h.channels >= 3 else "RGB",
        # a hybrid file's basis (version 10): the pyramid of bicubic bumps or the CDF 9/7 wavelet
        "basis": h.basis if h.model_name == "hybrid" else None,
        "bytes": len(data),
        "bpp": round(len(data) * 8.0 / (h.width * h.height), 5),
        "header_bytes": bitstream.OVERHEAD,
        "side_info_bytes": side,
        "coded_bytes": len(p.words),
        # the level filters run once over their grid; level l has 4^-l values per pixel
        # the post filter (version 7) runs on a native-size rendering of its own: its convolutions plus one more rendering
        # (the wavelet basis's post filter runs on its native synthesis, which is rendered anyway)
        "macs_per_pixel": p.spec.macs_per_pixel() + math.ceil(finefilter.macs_per_pixel(p.filters))
        + (postfilter.macs_per_pixel(p.post, h.channels)
           + (0 if isinstance(p.spec, WaveletSpec) else p.spec.macs_per_pixel()) if p.post.hidden else 0),
        "filter_radii": [[f.radius for f in level] for level in p.filters],
        "post_filter_hidden": p.post.hidden,
        # version 5: latent planes whose signs are coded under context probabilities
        "sign_modelled_planes": sum(bool(getattr(r, "signs", ())) for r in p.records),
        "quant_steps": [r.step_index for r in p.records],
    }


def export(data: bytes, path: str | os.PathLike) -> dict:
    """Write the dequantized weights to a safetensors file, the configuration in its metadata."""
    from safetensors.torch import save

    p = decoder.parse(bytes(data))
    if isinstance(p.spec, WaveletSpec):
        tensors = _wavelet_tensors(p)
    else:
        _, model = decoder.load_model(bytes(data), p)
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {k: str(v) for k, v in info(data).items() if k != "quant_steps"}
    config = {k: v for k, v in dataclasses.asdict(p.spec).items()}
    config["coords"] = "pixel centres, longer side spans [-1, 1] (codec.coords)"
    if not isinstance(p.spec, ModelSpec) and p.spec.channels >= 3:
        _, m, centre = color.matrices(p.spec.colour)
        config["colour_matrix"] = m.tolist()
        config["colour_centre"] = centre.tolist()
    if isinstance(p.spec, WaveletSpec):
        config["output"] = ("native = 0.5 + inverse CDF 9/7 (codec.wavelet.synthesise) of subband.ll and "
                            "subband.<level>.<hl|lh|hh> (level 0 finest), plus the post filter's correction: stored "
                            "as native; bicubic samples (grid_sample, align_corners=False, border) of native at "
                            "(x/ax, y/ay); then rgb = colour_matrix (t - colour_centre) on the first three channels; "
                            "clip to [0, 1]")
    elif p.spec.name in bitstream.LATENT_MODELS:
        config["output"] = (f"sum over levels of {p.spec.kernel} samples (grid_sample, align_corners=False, border) "
                            "of latents.<level> at (x/ax, y/ay); then rgb = colour_matrix (t - colour_centre) "
                            "on the first three channels (JFIF YCbCr, or the image's rotation: colour); clip to [0, 1]; "
                            "latents.<level> of the finest levels are stored after their level filters "
                            "(codec.finefilter), latents.0 with the post filter's correction added (codec.postfilter)")
    else:
        config["output"] = "0.5 + last linear layer; clip to [0, 1]"
    meta["config"] = json.dumps(config)

    blob = _canonical_safetensors(save(tensors, metadata=meta))
    imageio.write_bytes(path, blob)
    return {"tensors": len(tensors), "params": int(sum(int(np.prod(t.shape)) for t in tensors.values()))}


def _wavelet_tensors(p: decoder.Parsed) -> dict:
    """A wavelet file's dequantized subbands, ``(channels, h, w)`` each, and its native rendering."""
    import torch

    codes = decoder.wavelet_codes(p)
    per_channel = [decoder.wavelet_subbands(p, codes, ch) for ch in range(p.spec.channels)]
    tensors = {"subband.ll": torch.from_numpy(np.stack([ll for ll, _ in per_channel]))}
    for lv in range(p.spec.levels):
        for o, name in enumerate(wavelet.ORIENTATIONS):
            tensors[f"subband.{lv}.{name}"] = torch.from_numpy(np.stack([bands[lv][o] for _, bands in per_channel]))
    tensors["native"] = torch.from_numpy(decoder.wavelet_native(p))
    return tensors


def _canonical_safetensors(blob: bytes) -> bytes:
    """The same safetensors file with its JSON header in a fixed order.

    safetensors writes the metadata map in a random order (a Rust ``HashMap``), so two exports of
    one ``.inr`` file would differ.  The header (8-byte little-endian length, then JSON padded with
    spaces to a multiple of 8) is rewritten with the metadata keys sorted and the tensors in the
    order of their data; the data after it is untouched, and its offsets are relative to it.
    """
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", None)
    ordered = {"__metadata__": dict(sorted(meta.items()))} if meta else {}
    ordered.update(sorted(header.items(), key=lambda kv: (kv[1]["data_offsets"], kv[0])))
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + n:]
