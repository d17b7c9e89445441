"""A committed version-1 file must keep decoding to the committed pixels.

Regenerate (only when the format version changes on purpose) with
``INRC_REGEN_GOLDEN=1 python -m pytest tests/test_golden.py``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

import codec

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden_v1.inr"
PIXELS = DATA / "golden_v1.png"
INFO = DATA / "golden_v1.json"
REGEN = os.environ.get("INRC_REGEN_GOLDEN") == "1"


def _make() -> bytes:
    img = np.asarray(Image.fromarray(skimage.data.coffee()).resize((40, 24), Image.LANCZOS))
    return codec.encode(img, model="fourier", steps=120, quality=60, seed=3)


@pytest.mark.skipif(not REGEN, reason="set INRC_REGEN_GOLDEN=1 to regenerate")
def test_regenerate_golden():
    data = _make()
    GOLDEN.write_bytes(data)
    codec.decode(data, scale=1.5).save(PIXELS)
    INFO.write_text(json.dumps(codec.info(data), indent=1) + "\n")


def test_golden_file_decodes_to_committed_pixels():
    data = GOLDEN.read_bytes()
    expected = np.asarray(Image.open(PIXELS))
    got = np.asarray(codec.decode(data, scale=1.5))
    assert got.shape == expected.shape == (36, 60, 3)
    # Same machine: identical. Other BLAS/CPU: float rounding may move a value by one level.
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_golden_file_info_is_stable():
    assert codec.info(GOLDEN.read_bytes()) == json.loads(INFO.read_text())


def test_golden_file_is_format_version_1():
    h = codec.read_header(GOLDEN.read_bytes())
    assert h.version == 1 and h.model_name == "fourier"
