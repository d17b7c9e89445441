"""Header fields <-> model specs (the one place that knows how a model is described in a file)."""
from __future__ import annotations

from . import bitstream
from .bitstream import Header
from .specs import ModelSpec, PyramidSpec, WaveletSpec


def header_for(spec: ModelSpec | PyramidSpec | WaveletSpec, width: int, height: int) -> Header:
    if isinstance(spec, WaveletSpec):  # version 10: the hidden-width field names the basis
        return Header(width=width, height=height, channels=spec.channels, model=bitstream.MODEL_IDS["hybrid"],
                      layers=spec.levels, hidden=bitstream.BASIS_IDS["wavelet"], seed=spec.colour)
    if isinstance(spec, PyramidSpec):
        return Header(width=width, height=height, channels=spec.channels, model=bitstream.MODEL_IDS[spec.name],
                      layers=spec.levels, hidden=0, version=1 if spec.name == "pyramid" else bitstream.VERSION,
                      seed=spec.colour)
    return Header(width=width, height=height, channels=spec.channels, model=bitstream.MODEL_IDS[spec.name],
                  layers=spec.layers, hidden=spec.hidden, enc_a=spec.enc_a, enc_b=spec.enc_b, seed=spec.seed)


def spec_from_header(h: Header) -> ModelSpec | PyramidSpec | WaveletSpec:
    if h.basis == "wavelet":
        return WaveletSpec(levels=h.layers, channels=h.channels, width=h.width, height=h.height, colour=h.seed)
    if h.model_name in bitstream.LATENT_MODELS:
        # version 8: a hybrid's seed field is its colour word (codec.color); 0 before (Header.validate)
        return PyramidSpec(levels=h.layers, channels=h.channels, width=h.width, height=h.height, name=h.model_name,
                           colour=h.seed)
    return ModelSpec(h.model_name, h.layers, h.hidden, h.channels, h.enc_a, h.enc_b, h.seed)
