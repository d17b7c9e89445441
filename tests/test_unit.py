"""Unit tests of the building blocks: coordinates, colour, RNG, quantization, entropy coding, header."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from codec import bitstream, color, coords, entropy, quant, rng
from codec.bitstream import Header
from codec.config import spec_for_params
from codec.decoder import resolve_size
from codec.errors import FieldRangeError, LimitError, OptionError, UnsupportedVersionError
from codec.models import ModelSpec, build


def test_grid_pixel_centres_and_aspect():
    g = coords.grid(4, 2, 4, 2)
    assert g.shape == (8, 2)
    # longer side spans [-1, 1]; pixel centres at +-0.25, +-0.75; y half-extent 0.5
    assert torch.allclose(g[:4, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(g[::4, 1], torch.tensor([-0.25, 0.25]))


def test_grid_matches_pixel_coords_and_bands():
    w, h = 7, 5
    full = coords.grid(w, h, w, h)
    idx = torch.arange(w * h)
    assert torch.allclose(full, coords.pixel_coords(idx, w, h))
    band = coords.grid(w, h, w, h, rows=(2, 4))
    assert torch.equal(band, full[2 * w : 4 * w])


def test_upscaled_grid_covers_same_domain():
    g1 = coords.grid(3, 3, 3, 3)
    g2 = coords.grid(6, 6, 3, 3)
    assert math.isclose(float(g2[:, 0].min()), -1 + 1 / 6, rel_tol=1e-6)
    assert float(g1.abs().max()) < 1 and float(g2.abs().max()) < 1


def test_to_uint8_rounding_and_clipping():
    v = np.array([-0.2, 0.0, 0.5 / 255, 1.5 / 255, 1.0, 3.0], dtype=np.float32)
    assert color.to_uint8(v).tolist() == [0, 0, 0, 2, 255, 255]  # round half to even
    assert color.to_uint8(torch.from_numpy(v)).tolist() == [0, 0, 0, 2, 255, 255]


def test_rng_is_stable_and_normal_like():
    a = rng.normal(1234, 4000)
    # Golden values: the decoder depends on these never changing.
    assert rng.SplitMix64(0).next_u64() == 0xE220A8397B1DCDAF
    np.testing.assert_array_equal(rng.normal(1234, 3), a[:3])
    assert abs(a.mean()) < 0.06 and abs(a.std() - 1) < 0.05 and np.abs(a).max() <= 6
    assert not np.array_equal(rng.normal(1235, 3), a[:3])


def test_step_table_is_exact_and_monotonic():
    steps = [quant.step_from_index(i) for i in range(256)]
    assert all(a < b for a, b in itertools.pairwise(steps))
    assert all(math.frexp(s)[0] * 32 == int(math.frexp(s)[0] * 32) for s in steps)
    assert quant.index_for_step(steps[100]) == 100
    with pytest.raises(ValueError):
        quant.step_from_index(256)


@pytest.mark.parametrize("seed", range(200))
def test_quantize_roundtrip_within_half_step(seed):
    w = torch.randn(13, 7, generator=torch.Generator().manual_seed(seed))
    s = quant.step_from_index(quant.step_index_for_bits(w, 8))
    back = quant.dequantize(quant.quantize(w, s), s, w.shape)
    assert float((back - w).abs().max()) <= s / 2 + 1e-7
    # the step is the table entry nearest (in log) to max|w| / 127; entries are at most 17/16 apart,
    # so the step is at most sqrt(17/16) too small or too large and the largest code stays near 127
    bound = 127 * math.sqrt(17 / 16)
    assert 127 / math.sqrt(17 / 16) - 1 <= int(np.abs(quant.quantize(w, s)).max()) <= bound + 0.5


def test_fake_quant_straight_through():
    w = torch.randn(5, requires_grad=True)
    quant.fake_quant(w, 0.1).sum().backward()
    assert torch.equal(w.grad, torch.ones(5))


@pytest.mark.parametrize("scale", [0.3, 2.0, 40.0])
def test_entropy_roundtrip(scale):
    g = np.random.default_rng(0)
    tensors = [np.round(g.laplace(0, scale, size=n)).astype(np.int64) for n in (1, 100, 5000)]
    tensors.append(np.zeros(10, dtype=np.int64))
    params, words = entropy.encode(tensors)
    specs = [(len(t), th, k) for t, (th, k) in zip(tensors, params)]
    out = entropy.decode(words, specs)
    for a, b in zip(tensors, out):
        np.testing.assert_array_equal(a, b)


def test_theta_by_code_length_beats_ml_on_sparse_data():
    g = np.random.default_rng(1)
    codes = np.where(g.random(20000) < 0.8, 0, np.round(g.laplace(0, 20, 20000))).astype(np.int64)
    _theta, kmax, bits = entropy.choose_theta(codes)
    hist = np.bincount(codes + kmax, minlength=2 * kmax + 1).astype(float)
    ml = np.abs(codes).mean()  # maximum-likelihood geometric ratio: mean/(1+mean)
    ml_theta = round(65536 * ml / (1 + ml))
    assert bits < entropy.code_length_bits(hist, ml_theta)
    _, words = entropy.encode([codes])
    assert len(words) * 8 <= bits * 1.01 + 64  # real size tracks the estimate


def test_nearly_all_zero_tensor_costs_almost_nothing():
    codes = np.zeros(100_000, dtype=np.int64)
    codes[[5, 500, 50_000]] = [1, -1, 1]
    _, _, bits = entropy.choose_theta(codes)
    assert bits < 100  # about 3 * 17 bits for the three non-zeros, ~0 for the zeros
    params, words = entropy.encode([codes])
    assert len(words) <= 24
    np.testing.assert_array_equal(entropy.decode(words, [(codes.size, *params[0])])[0], codes)


def test_geometric_table_is_deterministic():
    t = entropy.geometric_table(60000, 50)
    assert t[50] == 1.0 and t[49] == t[51] == 60000 / 65536
    np.testing.assert_array_equal(t, entropy.geometric_table(60000, 50))


def test_header_roundtrip_and_size():
    h = Header(width=768, height=512, channels=3, model=3, layers=5, hidden=71, enc_b=30, payload_len=10)
    b = h.to_bytes()
    assert len(b) == bitstream.HEADER_SIZE == 24 and bitstream.OVERHEAD <= 32
    assert b[:3] == b"INR" and b[3] == bitstream.VERSION == 10
    assert Header.from_bytes(b) == h


def test_header_rejects_bad_fields():
    good = Header(width=8, height=8, channels=3, model=0, layers=2, hidden=8).to_bytes()
    bad_version = good[:3] + bytes([bitstream.VERSION + 1]) + good[4:]
    with pytest.raises(UnsupportedVersionError, match=f"version {bitstream.VERSION + 1}"):
        Header.from_bytes(bad_version)
    bad_flags = good[:4] + b"\x80" + good[5:]
    with pytest.raises(UnsupportedVersionError, match="flags"):
        Header.from_bytes(bad_flags)
    bad_channels = good[:9] + b"\x07" + good[10:]
    with pytest.raises(FieldRangeError, match="channels"):
        Header.from_bytes(bad_channels)
    bad_model = good[:10] + b"\x09" + good[11:]
    with pytest.raises(FieldRangeError, match="model"):
        Header.from_bytes(bad_model)


def test_model_shapes_and_param_count():
    for name, a, b in [("relu", 0, 0), ("pe", 4, 0), ("fourier", 16, 16), ("siren", 0, 30)]:
        spec = ModelSpec(name, 3, 10, 3, a, b, 7)
        m = build(spec)
        assert sum(p.numel() for p in m.parameters()) == spec.num_params()
        assert m(torch.zeros(5, 2)).shape == (5, 3)
        assert len(m.coded_tensors()) == 4


def test_siren_init_bounds():
    m = build(ModelSpec("siren", 3, 32, 3, 0, 30))
    assert float(m.linears[0].weight.detach().abs().max()) <= 1 / 2
    assert float(m.linears[1].weight.detach().abs().max()) <= math.sqrt(6 / 32) / 30 + 1e-7


def test_fourier_matrix_rebuilt_from_seed():
    a = build(ModelSpec("fourier", 2, 8, 3, 16, 16, 99)).encoding.B
    b = build(ModelSpec("fourier", 2, 8, 3, 16, 16, 99)).encoding.B
    assert torch.equal(a, b)
    assert not torch.equal(a, build(ModelSpec("fourier", 2, 8, 3, 16, 16, 100)).encoding.B)


def test_spec_for_params_tracks_target():
    for target in (500, 5000, 50000):
        spec = spec_for_params("siren", target, 3)
        assert 0.7 < spec.num_params() / target < 1.3


def test_resolve_size():
    assert resolve_size(768, 512) == (768, 512)
    assert resolve_size(768, 512, "2048") == (2048, 1365)
    assert resolve_size(512, 768, "2048") == (1365, 2048)
    assert resolve_size(768, 512, "300x200") == (300, 200)
    assert resolve_size(768, 512, scale=0.5) == (384, 256)
    for bad in ("0", "abc", "10x", "-5"):
        with pytest.raises(OptionError):
            resolve_size(768, 512, bad)
    with pytest.raises(LimitError, match="max-pixels"):
        resolve_size(768, 512, "20000")
    with pytest.raises(LimitError):
        resolve_size(768, 512, "1000x1000", max_pixels=999_999)
    with pytest.raises(OptionError):
        resolve_size(768, 512, "10", scale=2.0)
