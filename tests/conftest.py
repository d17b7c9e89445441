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
def encoded(cat) -> dict[str, codec.api.EncodeResult]:
    """One small file per model family."""
    return {m: codec.encode_image(cat, model=m, steps=600, quality=95, seed=1, lr=5e-3) for m in MODELS}


@pytest.fixture(scope="session")
def small_file(encoded) -> bytes:
    return encoded["siren"].data
