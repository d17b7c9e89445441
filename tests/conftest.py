"""Shared fixtures: small images from scikit-image and small encoded files (few steps)."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from PIL import Image

import codec

MODELS = ("relu", "pe", "fourier", "siren", "hybrid")


@pytest.fixture(scope="session")
def cat() -> np.ndarray:
    """A 64x48 RGB photo (chelsea), uint8."""
    return np.asarray(Image.fromarray(skimage.data.chelsea()).resize((64, 48), Image.LANCZOS))


@pytest.fixture(scope="session")
def filled(cat):
    """``filled(delta0)``: the hybrid's analytic start on ``cat``, ``(image, spec, step indices, codes)``."""
    from codec import pyramid
    from codec.models import PyramidSpec

    def make(delta0: float):
        image = cat.astype(np.float32) / 255.0
        h, w, c = image.shape
        spec = PyramidSpec(pyramid.levels_for(w, h), c, w, h)
        cfg = pyramid.PyramidConfig(delta0=delta0)
        idx = pyramid.step_indices(spec, cfg)
        return image, spec, idx, pyramid.codes_of(pyramid.fill(image, spec, idx, cfg.deadzone), idx)

    return make


@pytest.fixture(scope="session")
def encoded(cat) -> dict[str, codec.api.EncodeResult]:
    """One small file per model family."""
    return {m: codec.encode_image(cat, model=m, steps=600, quality=95, seed=1, lr=5e-3) for m in MODELS}


@pytest.fixture(scope="session")
def small_file(encoded) -> bytes:
    return encoded["siren"].data
