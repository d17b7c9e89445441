"""Shared fixtures: small images from scikit-image and small encoded files (few steps)."""
from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import skimage.data
from PIL import Image

import codec

MODELS = ("relu", "pe", "fourier", "siren", "hybrid")
ADOBE_RGB_D50 = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` (a script, not a package) imported as a module, for its tests."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def matrix_trc_profile(name: str, gamma: float, colorants=ADOBE_RGB_D50) -> bytes:
    """A minimal ICC v2 RGB display profile (matrix/TRC: desc, wtpt, r/g/bXYZ, r/g/bTRC with one
    gamma), the kind a camera or editor embeds for Adobe RGB; built here because the tests must not
    depend on profile files (ICC.1:2001-04, sections 6 and 6.5)."""
    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(v) -> bytes:
        return b"XYZ " + bytes(4) + b"".join(s15(x) for x in v)

    d50 = (0.9642, 1.0, 0.8249)
    curv = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    text = name.encode("ascii") + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8 + 3 + 67)
    desc += bytes(-len(desc) % 4)
    r, g, b = colorants
    tags = [(b"desc", desc), (b"wtpt", xyz(d50)), (b"rXYZ", xyz(r)), (b"gXYZ", xyz(g)), (b"bXYZ", xyz(b)),
            (b"rTRC", curv), (b"gTRC", curv), (b"bTRC", curv)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", offset + len(body)) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + bytes(12) + b"acsp" + bytes(28) + b"".join(s15(x) for x in d50) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + body


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
    """One small file per model family (the hybrid in the pyramid basis), and ``"wavelet"``: the
    hybrid in the wavelet basis."""
    files = {m: codec.encode_image(cat, model=m, steps=600, quality=95, seed=1, lr=5e-3,
                                   **({"basis": "pyramid"} if m == "hybrid" else {})) for m in MODELS}
    files["wavelet"] = codec.encode_image(cat, basis="wavelet", quality=95)
    return files


@pytest.fixture(scope="session")
def small_file(encoded) -> bytes:
    return encoded["siren"].data
