"""Encode/decode round trips for every model, any-resolution decoding, determinism, rate control."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MODELS
from hypothesis import given, settings
from hypothesis import strategies as st

import codec
from codec import metrics
from codec.errors import OptionError


@pytest.mark.parametrize("model", MODELS)
def test_roundtrip_every_model(encoded, cat, model):
    r = encoded[model]
    img = codec.decode(r.data)
    assert img.size == (64, 48) and img.mode == "RGB"
    out = np.asarray(img)
    # The reported PSNR is the PSNR of what the written bytes decode to.
    assert abs(metrics.psnr(out, cat) - r.psnr) < 1e-9
    assert r.psnr > 15.0  # well above noise; the network learned the picture
    info = codec.info(r.data)
    assert info["model"] == model and info["bytes"] == len(r.data)
    assert info["bpp"] == pytest.approx(len(r.data) * 8 / (64 * 48), abs=1e-4)
    assert info["header_bytes"] <= 32
    hdr = codec.read_header(r.data)
    assert (hdr.width, hdr.height, hdr.channels) == (64, 48, 3)


def test_mse_of_8_bit_images_is_exact_and_equals_the_float_path():
    """``metrics.mse`` sums 8-bit images' squared differences in integers: the value of the float64
    path, extremes included (every difference 255), and never a wrapped uint8 subtraction."""
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)
    assert metrics.mse(a, b) == metrics.mse(a.astype(np.float32), b.astype(np.float32))
    ones, zeros = np.full((5, 4, 3), 255, np.uint8), np.zeros((5, 4, 3), np.uint8)
    assert metrics.mse(ones, zeros) == metrics.mse(zeros, ones) == 255.0**2
    assert metrics.psnr(a, a) == metrics.PSNR_CAP
    with pytest.raises(ValueError):
        metrics.mse(a, b[:-1])


def test_models_learn_better_than_mean(encoded, cat):
    mean_psnr = metrics.psnr(np.broadcast_to(cat.mean(axis=(0, 1)).round().astype(np.uint8), cat.shape), cat)
    for m in ("pe", "fourier", "siren"):
        assert encoded[m].psnr > mean_psnr + 1, m


def test_any_resolution(small_file):
    assert codec.decode(small_file, size=128).size == (128, 96)
    assert codec.decode(small_file, size="30x40").size == (30, 40)
    assert codec.decode(small_file, scale=0.25).size == (16, 12)
    big = np.asarray(codec.decode(small_file, scale=2.0)).astype(float)
    native = np.asarray(codec.decode(small_file)).astype(float)
    # a 2x render is the same picture: its 2x2 block means are close to the native render
    blocks = big.reshape(48, 2, 64, 2, 3).mean(axis=(1, 3))
    assert np.abs(blocks - native).mean() < 6


def test_decode_is_deterministic_across_threads(small_file):
    a = np.asarray(codec.decode(small_file, scale=3.0))
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        b = np.asarray(codec.decode(small_file, scale=3.0))
    finally:
        torch.set_num_threads(n)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, np.asarray(codec.decode(small_file, scale=3.0)))


def test_seed_makes_encoding_repeatable(cat):
    a = codec.encode(cat, model="siren", steps=40, seed=5)
    b = codec.encode(cat, model="siren", steps=40, seed=5)
    c = codec.encode(cat, model="siren", steps=40, seed=6)
    assert a == b and a != c


def test_quality_changes_rate():
    """A higher ``--quality`` writes a larger file (``fast``: the default ``medium`` spends 20 s on
    q90 of this 128x128 image and is tested in tests/test_hybrid.py)."""
    import skimage.data
    from PIL import Image

    img = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((128, 128)))
    lo = codec.encode(img, preset="fast", quality=30)
    hi = codec.encode(img, preset="fast", quality=90)
    assert len(hi) > 2 * len(lo)


@pytest.mark.parametrize("model,target", [("siren", 0.5), ("siren", 2.0), ("hybrid", 0.1), ("hybrid", 0.5), ("hybrid", 2.0)])
def test_bpp_rate_control_within_10_percent(model, target):
    import skimage.data
    from PIL import Image

    size = 256 if model == "hybrid" else 128  # at 128x128, 0.1 bpp (205 bytes) is below the hybrid's side info
    img = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((size, size)))
    opts = {"preset": "fast"} if model == "hybrid" else {"steps": 80}
    r = codec.encode_image(img, bpp=target, model=model, **opts)
    assert abs(r.bpp - target) <= 0.1 * target, r.bpp


@pytest.mark.parametrize("target", [26.0, 31.0, 36.0])
def test_psnr_target_lands_within_half_a_db(target):
    """``--psnr X``: the written file's PSNR (measured on its decoded 8-bit image) is within
    ``PSNR_BAND`` of X, and a higher target gives a larger file."""
    import skimage.data
    from PIL import Image

    from codec.encoder import PSNR_BAND

    img = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((256, 256)))
    r = codec.encode_image(img, psnr=target, preset="fast")
    decoded = np.asarray(codec.decode(r.data), dtype=np.float64)
    measured = 10 * np.log10(255.0 ** 2 / np.mean((decoded - img) ** 2))
    assert measured == pytest.approx(r.psnr, abs=1e-3)
    assert abs(r.psnr - target) <= PSNR_BAND, r.psnr


def test_psnr_target_orders_file_sizes_and_grey_images_work(cat):
    """A higher PSNR target never gives a smaller file; a one-channel image takes a target too."""
    gray = cat.mean(axis=2).astype(np.uint8)
    sizes = [len(codec.encode(gray, psnr=t, preset="fast")) for t in (24.0, 30.0, 38.0)]
    assert sizes[0] < sizes[1] < sizes[2], sizes


@pytest.mark.parametrize("options,message", [
    ({"psnr": 30.0, "bpp": 1.0}, "not both"),
    ({"psnr": 30.0, "model": "siren"}, "hybrid"),
    ({"psnr": 5.0}, "PSNR target"),
    ({"psnr": 81.0}, "PSNR target"),
])
def test_psnr_target_refuses_bad_combinations(cat, options, message):
    with pytest.raises(OptionError, match=message):
        codec.encode(cat, **options)


def test_psnr_delta0_search_follows_the_fill_and_stays_in_range():
    """:func:`codec.encoder.delta0_for` on a PSNR-like error (``-PSNR_PER_LOG ln Delta_0``, flatter
    at low rates) lands within the tolerance, and at the range's end when the aim is out of reach."""
    from codec.encoder import DELTA0_RANGE, PSNR_PER_LOG, PSNR_SLOPE, delta0_for

    def psnr(d0: float) -> float:
        return 20.0 - 0.8 * PSNR_PER_LOG * math.log(d0)

    for aim in (25.0, 33.0, 41.0):
        f, calls = _counted(lambda d0, aim=aim: (psnr(d0) - aim) / PSNR_PER_LOG)
        d0 = delta0_for(f, 0.15, 0.05 / PSNR_PER_LOG, PSNR_SLOPE)
        assert abs(psnr(d0) - aim) <= 0.05 and len(calls) <= 5, (aim, d0, len(calls))
    f, _ = _counted(lambda d0: (psnr(d0) - 500.0) / PSNR_PER_LOG)
    assert delta0_for(f, 0.15, 1e-3, PSNR_SLOPE) == pytest.approx(DELTA0_RANGE[0])


def test_grayscale_and_alpha(cat):
    gray = cat.mean(axis=2).astype(np.uint8)
    img = codec.decode(codec.encode(gray, steps=30))
    assert img.mode == "L" and img.size == (64, 48)
    rgba = np.dstack([cat, np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))])
    r = codec.encode_image(rgba, steps=60)
    out = codec.decode(r.data)
    assert out.mode == "RGBA" and r.channels == 4
    assert np.abs(np.asarray(out)[:, :, 3].astype(int) - rgba[:, :, 3]).mean() < 40


def test_export_safetensors(tmp_path, encoded):
    from safetensors import safe_open

    data = encoded["fourier"].data
    p = tmp_path / "w.safetensors"
    codec.export(data, p)
    with safe_open(str(p), "pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
        w0 = f.get_tensor("linears.0.weight")
    assert meta["model"] == "fourier" and "config" in meta
    assert "encoding.B" in keys
    _, model = codec.decoder.load_model(data)
    assert torch.equal(w0, model.linears[0].weight.detach())
    # safetensors writes its metadata in a random order; the export rewrites the header sorted, so
    # one file always exports to the same bytes, and the result loads with every tensor and key
    q = tmp_path / "again.safetensors"
    codec.export(data, q)
    assert q.read_bytes() == p.read_bytes()
    n = int.from_bytes(p.read_bytes()[:8], "little")
    header = json.loads(p.read_bytes()[8:8 + n])
    assert list(header) == ["__metadata__", *sorted(keys, key=lambda k: header[k]["data_offsets"])]
    assert list(header["__metadata__"]) == sorted(meta) and n % 8 == 0
    with safe_open(str(q), "pt") as f:
        assert f.metadata() == meta and all(torch.equal(f.get_tensor(k), v) for k, v in model.state_dict().items())


def _counted(size_of):
    calls = []

    def f(d0: float) -> float:
        calls.append(d0)
        return size_of(d0)

    return f, calls


@pytest.mark.parametrize("slope,target", [(-1.3, 5e3), (-0.7, 4e5), (-2.5, 300.0)])
def test_delta0_search_on_a_smooth_size_converges_in_a_few_steps(slope, target):
    """``size = 1e4 * Delta_0^slope``: the secant steps land within 1 % of the target in at most
    five analytic starts (bisection took 14), from the default quality's ``Delta_0``."""
    from codec.encoder import delta0_for_size, hybrid_delta0

    f, calls = _counted(lambda d0: 1e4 * d0 ** slope)
    d0 = delta0_for_size(f, target, hybrid_delta0(75))
    assert abs(1e4 * d0 ** slope / target - 1) <= 0.01 and len(calls) <= 5, (d0, len(calls))


def test_delta0_search_on_a_step_function_ends_at_the_nearest_jump():
    """With ``Delta_0`` rounded to a table of steps ``2^(k/16)`` (as the latent steps are), no
    ``Delta_0`` reaches the target exactly; the search returns the better of the two sizes around it,
    within ``DELTA0_EVALUATIONS`` starts."""
    from codec.encoder import DELTA0_EVALUATIONS, delta0_for_size

    def size(d0: float) -> float:
        return 2e4 * (2.0 ** (round(16 * math.log2(d0)) / 16)) ** -1.4

    table = [size(2.0 ** (k / 16)) for k in range(-200, 48)]
    for target in (3.1e3, 7.77e4, 1.234e5, 2.5e4):
        f, calls = _counted(size)
        d0 = delta0_for_size(f, target, 0.15)
        best = min(abs(math.log(s / target)) for s in table)
        assert abs(math.log(size(d0) / target)) == pytest.approx(best, abs=1e-12), target
        assert len(calls) <= DELTA0_EVALUATIONS


def test_delta0_search_stops_at_the_range_when_the_target_is_out_of_reach():
    from codec.encoder import DELTA0_RANGE, delta0_for_size

    f, calls = _counted(lambda d0: 1e3 / d0)
    assert delta0_for_size(f, 1e9, 0.15) == pytest.approx(DELTA0_RANGE[0])  # the smallest step is too coarse
    assert delta0_for_size(f, 1.0, 0.15) == pytest.approx(DELTA0_RANGE[1])  # the largest step is too fine
    assert len(calls) <= 12


GOLDEN = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", ["golden_v9_post.inr", "golden_v9.inr", "golden_v1_hybrid.inr"])
def test_a_crop_renders_the_same_pixels_as_the_whole_image(name):
    """``crop=(x, y, w, h)`` at scale s samples the positions of the same pixels of a whole
    rendering at scale s (codec.coords): the latent models (with a post filter; format v1's YCbCr)
    and an MLP.  Their coordinates are computed another way, so a rounding may differ by 1."""
    data = (GOLDEN / name).read_bytes()
    h = codec.read_header(data)
    x, y, w, hh = 3, 2, h.width // 2, h.height // 2
    for s in (1, 2, 3):
        whole = np.asarray(codec.decode(data, scale=s)).astype(int)
        part = np.asarray(codec.decode(data, scale=s, crop=(x, y, w, hh))).astype(int)
        ref = whole[s * y:s * (y + hh), s * x:s * (x + w)]
        assert part.shape == ref.shape
        assert np.abs(part - ref).max() <= 1 and (part != ref).mean() < 0.01, (s, (part != ref).mean())
    # the whole image as a crop is the image, exactly
    full = np.asarray(codec.decode(data, crop=(0, 0, h.width, h.height)))
    np.testing.assert_array_equal(full, np.asarray(codec.decode(data)))
    # a fractional crop at a chosen size: a zoom between native pixels, smooth and in range
    zoom = np.asarray(codec.decode(data, size="40x30", crop="0.5,0.25,2.5,1.875")).astype(int)
    assert zoom.shape[:2] == (30, 40)
    assert np.abs(np.diff(zoom, axis=1)).max() < 64  # 2.5 native pixels over 40 columns: no jumps


_WHOLE: dict = {}


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_crop_on_the_grid_is_the_whole_renderings_pixels(data):
    """Property: for any window of native pixels and scale s in 1..3, the crop's rendering is the
    same region cut from the whole rendering at scale s (within 1 for a rounding, at under 2 % of
    the values), for a hybrid file with a post filter and an MLP; and the output is never a
    different size than asked for."""
    name = data.draw(st.sampled_from(["golden_v9_post.inr", "golden_v9.inr"]))
    blob = (GOLDEN / name).read_bytes()
    h = codec.read_header(blob)
    x = data.draw(st.integers(0, h.width - 1))
    y = data.draw(st.integers(0, h.height - 1))
    w = data.draw(st.integers(1, h.width - x))
    hh = data.draw(st.integers(1, h.height - y))
    s = data.draw(st.integers(1, 3))
    if (name, s) not in _WHOLE:
        _WHOLE[name, s] = np.asarray(codec.decode(blob, scale=s)).astype(int)
    ref = _WHOLE[name, s][s * y:s * (y + hh), s * x:s * (x + w)]
    part = np.asarray(codec.decode(blob, scale=s, crop=(x, y, w, hh))).astype(int)
    assert part.shape == ref.shape
    assert np.abs(part - ref).max() <= 1 and (part != ref).mean() < 0.02


@pytest.mark.parametrize("crop,msg", [
    ("1,2,3", "X,Y,W,H"), ("a,b,c,d", "X,Y,W,H"), ("1,2,0,3", "above 0"), ("nan,0,4,4", "finite"),
    ("-1,0,4,4", "not inside"), ("0,0,1000,4", "not inside"), ((0, 0, 4), "4 numbers"),
    ((0, 0, "a", 4), "4 numbers"), (7, "4 numbers"),
])
def test_bad_crops_are_usage_errors(crop, msg):
    data = (GOLDEN / "golden_v9_post.inr").read_bytes()
    with pytest.raises(OptionError, match=msg):
        codec.decode(data, crop=crop)
