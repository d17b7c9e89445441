"""Committed files must keep decoding to the committed pixels.

``golden_v10*`` are written by the current encoder: an MLP, the hybrid in the pyramid basis
(``golden_v10_hybrid``) and in the wavelet basis (``golden_v10_wavelet``), and each hybrid file with
a post filter added by :func:`codec.encoder.add_post_filter` (``*_post``); regenerate them (only
when the format changes on purpose) with ``INRC_REGEN_GOLDEN=1 python -m pytest tests/test_golden.py``.
``golden_v1*`` (inrc 0.1.0, format version 1), ``golden_v2*`` (inrc 0.2.0, format version 2) and
``golden_v3*`` (inrc 0.3/0.4, format version 3), ``golden_v4*`` (inrc 0.5, format version 4) and
``golden_v5*`` (inrc 0.6, format version 5), ``golden_v6*`` (inrc 0.7-0.10, format version 6) and
``golden_v7*`` (inrc 0.11-0.14, format version 7, YCbCr only), ``golden_v8*`` (inrc 0.15-0.20,
format version 8) and ``golden_v9*`` (inrc 0.21, format version 9) are never regenerated: they prove
old files still decode (the version-1 hybrid is reported as model ``pyramid``; version 2 coded the
hybrid's side information in whole bytes, one ratio per class; version 3 has no level filter;
version 4 codes latents under the two-sided table, without sign contexts; versions 4 and 5 filter
level 0 only; version 6 has no post filter; version 7 has no colour word; version 8 codes the step
indices as differences from the plane before and an in-use flag per class; version 9 has no basis
field).  Their ``.json`` files follow ``inrc info``'s current keys (``sign_modelled_planes`` 0 before
version 5, ``filter_radii`` per level since 0.7, ``post_filter_hidden`` 0 before version 7,
``colour`` YCbCr before version 8, ``basis`` ``pyramid`` for every hybrid file before version 10).
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
REGEN = os.environ.get("INRC_REGEN_GOLDEN") == "1"
# name -> encode options (current format); legacy name -> (format version, model name).
CASES = {"golden_v10": {"model": "fourier", "steps": 120, "quality": 60, "seed": 3},
         "golden_v10_hybrid": {"model": "hybrid", "quality": 95, "preset": "fast", "basis": "pyramid"},
         "golden_v10_post": {"model": "hybrid", "quality": 95, "preset": "fast", "basis": "pyramid"},
         "golden_v10_wavelet": {"model": "hybrid", "quality": 95, "preset": "fast", "basis": "wavelet"},
         "golden_v10_wavelet_post": {"model": "hybrid", "quality": 95, "preset": "fast", "basis": "wavelet"}}
POST = {"golden_v10_post": (4, 200), "golden_v10_wavelet_post": (4, 200)}  # name -> (hidden, steps) of the post filter added
LEGACY = {"golden_v1": (1, "fourier"), "golden_v1_hybrid": (1, "pyramid"),
          "golden_v2": (2, "fourier"), "golden_v2_hybrid": (2, "hybrid"),
          "golden_v3": (3, "fourier"), "golden_v3_hybrid": (3, "hybrid"),
          "golden_v4": (4, "fourier"), "golden_v4_hybrid": (4, "hybrid"),
          "golden_v5": (5, "fourier"), "golden_v5_hybrid": (5, "hybrid"),
          "golden_v6": (6, "fourier"), "golden_v6_hybrid": (6, "hybrid"),
          "golden_v7": (7, "fourier"), "golden_v7_hybrid": (7, "hybrid"), "golden_v7_post": (7, "hybrid"),
          "golden_v8": (8, "fourier"), "golden_v8_hybrid": (8, "hybrid"), "golden_v8_post": (8, "hybrid"),
          "golden_v9": (9, "fourier"), "golden_v9_hybrid": (9, "hybrid"), "golden_v9_post": (9, "hybrid")}
ALL = {**{k: (10, v["model"]) for k, v in CASES.items()}, **LEGACY}


def _paths(name: str) -> tuple[Path, Path, Path]:
    return DATA / f"{name}.inr", DATA / f"{name}.png", DATA / f"{name}.json"


@pytest.mark.skipif(not REGEN, reason="set INRC_REGEN_GOLDEN=1 to regenerate")
@pytest.mark.parametrize("name", CASES)
def test_regenerate_golden(name):
    img = np.asarray(Image.fromarray(skimage.data.coffee()).resize((40, 24), Image.LANCZOS))
    data = codec.encode(img, **CASES[name])
    if name in POST:
        from codec.encoder import add_post_filter

        data = add_post_filter(data, img.astype(np.float32) / 255.0, *POST[name])
    inr, png, info = _paths(name)
    inr.write_bytes(data)
    codec.decode(data, scale=1.5).save(png)
    info.write_text(json.dumps(codec.info(data), indent=1) + "\n")


@pytest.mark.parametrize("name", ALL)
def test_golden_file_decodes_to_committed_pixels(name):
    inr, png, _ = _paths(name)
    expected = np.asarray(Image.open(png))
    got = np.asarray(codec.decode(inr.read_bytes(), scale=1.5))
    assert got.shape == expected.shape == (36, 60, 3)
    # Same machine: identical. Other BLAS/CPU: float rounding may move a value by one level.
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.mark.parametrize("name", ALL)
def test_golden_file_info_is_stable(name):
    inr, _, info = _paths(name)
    assert codec.info(inr.read_bytes()) == json.loads(info.read_text())


@pytest.mark.parametrize("name", ALL)
def test_golden_file_has_its_format_version(name):
    h = codec.read_header(_paths(name)[0].read_bytes())
    assert (h.version, h.model_name) == ALL[name]


def test_current_hybrid_golden_file_uses_level_filters():
    radii = codec.info(_paths("golden_v10_hybrid")[0].read_bytes())["filter_radii"]
    assert any(radii[0]) and any(any(r) for r in radii[1:])


@pytest.mark.parametrize("name", ["golden_v10_hybrid", "golden_v10_wavelet"])
def test_current_hybrid_golden_files_model_signs(name):
    assert codec.info(_paths(name)[0].read_bytes())["sign_modelled_planes"] > 0


def test_current_golden_files_name_their_basis():
    """Version 10 names the basis in the header's hidden field; every older hybrid file is a pyramid."""
    assert codec.info(_paths("golden_v10_wavelet")[0].read_bytes())["basis"] == "wavelet"
    assert codec.info(_paths("golden_v10_wavelet_post")[0].read_bytes())["basis"] == "wavelet"
    assert codec.info(_paths("golden_v10_hybrid")[0].read_bytes())["basis"] == "pyramid"
    assert codec.info(_paths("golden_v10_wavelet")[0].read_bytes())["filter_radii"] == []
    for name, (_, model) in LEGACY.items():
        assert codec.info(_paths(name)[0].read_bytes())["basis"] == ("pyramid" if model == "hybrid" else None)


@pytest.mark.parametrize("plain,post", [("golden_v10_hybrid", "golden_v10_post"),
                                        ("golden_v10_wavelet", "golden_v10_wavelet_post")])
def test_post_filter_golden_file_has_one_and_it_changes_the_pixels(plain, post):
    assert codec.info(_paths(post)[0].read_bytes())["post_filter_hidden"] == POST[post][0]
    assert codec.info(_paths(plain)[0].read_bytes())["post_filter_hidden"] == 0
    with_post = np.asarray(Image.open(_paths(post)[1])).astype(int)
    without = np.asarray(Image.open(_paths(plain)[1])).astype(int)
    assert np.abs(with_post - without).max() > 0


def test_current_hybrid_golden_file_codes_in_a_rotation_and_old_ones_in_ycbcr():
    """Version 8 names the colour space in the header; every older hybrid file is YCbCr."""
    for name in ("golden_v10_hybrid", "golden_v10_wavelet", "golden_v9_hybrid", "golden_v8_hybrid"):
        assert codec.info(_paths(name)[0].read_bytes())["colour"].startswith("rotation")
    for name, (version, model) in LEGACY.items():
        if model == "hybrid" and version < 8:
            assert codec.info(_paths(name)[0].read_bytes())["colour"] == "YCbCr (JFIF)"
