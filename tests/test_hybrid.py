"""Unit tests of the hybrid model's parts: sampling, numpy renderer, context coding, records, RDOQ, presets."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import codec
from codec import bitstream, context, decoder, encoder, entropy, pyramid, quant, rdoq
from codec.config import HYBRID_PRESETS, RDOQ_LAMBDA
from codec.errors import FieldRangeError, FormatError, TruncatedError
from codec.models import LatentPyramid, PyramidSpec, sampling_matrix
from codec.synthesis import LatentRenderer


@pytest.mark.parametrize("kernel", ["bilinear", "bicubic"])
@pytest.mark.parametrize("n_out,n_in", [(12, 12), (12, 6), (13, 7), (5, 9), (30, 4), (1, 3)])
def test_sampling_matrix_matches_grid_sample(kernel, n_out, n_in):
    g = torch.randn(n_in, 3, generator=torch.Generator().manual_seed(n_out * 31 + n_in))
    u = (torch.arange(n_out, dtype=torch.float32) + 0.5) / n_out * 2 - 1  # normalised pixel centres
    grid = torch.stack([torch.zeros(n_out), u], dim=1).view(1, n_out, 1, 2)  # sample along y
    ref = torch.nn.functional.grid_sample(g.T[None, :, :, None], grid, mode=kernel, padding_mode="border",
                                          align_corners=False)[0, :, :, 0].T
    got = sampling_matrix(n_out, n_in, kernel) @ g
    assert torch.allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("name", ["hybrid", "pyramid"])
@pytest.mark.parametrize("size", [(20, 14), (37, 23), (9, 40)])
def test_numpy_renderer_matches_torch_model(name, size):
    spec = PyramidSpec(levels=3, channels=3, width=20, height=14, name=name)
    model = LatentPyramid(spec)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for g in model.latents:
            g.copy_(torch.randn(g.shape, generator=gen) * 0.1)
    model.latents[0].data[0] += 0.5
    ow, oh = size
    ref = decoder.render(model, decoder.Header(width=20, height=14, channels=3, model=0, layers=1, hidden=1), ow, oh)
    rend = LatentRenderer([g.detach().numpy() for g in model.latents], spec.kernel)
    got = np.concatenate([decoder.color.to_uint8(rend.rows(r0, min(oh, r0 + 5), ow, oh)) for r0 in range(0, oh, 5)])
    diff = np.abs(got.astype(int) - ref.reshape(oh, ow, 3).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def _random_planes(seed: int, shapes, channels, density=0.2, scale=3.0):
    rng = np.random.default_rng(seed)
    out = []
    for h, w in shapes:
        planes = []
        for _ in range(channels):
            x = np.rint(rng.laplace(0, scale, (h, w))) * (rng.random((h, w)) < density)
            planes.append(x.astype(np.int64))
        out.append(planes)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_context_coding_roundtrip(seed):
    shapes = [(17, 23), (9, 12), (5, 6), (3, 3)]
    codes = _random_planes(seed, shapes, 3, density=[0.02, 0.3, 0.9, 1.0][seed])
    codes[1][2][:] = 0  # an all-zero plane
    params, words = context.encode_planes(codes)
    assert params[(1, 2)][1] == 0
    back = context.decode_planes(words, shapes, 3, {k: (m, k_, tuple(t)) for k, (m, k_, t) in params.items()})
    for lv in range(len(shapes)):
        for ch in range(3):
            np.testing.assert_array_equal(back[lv][ch], codes[lv][ch])


def test_context_modes_are_chosen_by_cost_and_beat_one_distribution():
    """Sparse fine planes whose non-zeros sit under active parents: the context rule must pay off."""
    rng = np.random.default_rng(0)
    coarse = (rng.random((16, 16)) < 0.1) * rng.integers(1, 5, (16, 16))
    fine = np.where(np.repeat(np.repeat(coarse, 2, 0), 2, 1) != 0, rng.integers(-4, 5, (32, 32)), 0)
    codes = [[fine.astype(np.int64)], [coarse.astype(np.int64)]]
    params, words = context.encode_planes(codes)
    single = entropy.encode([fine.reshape(-1), coarse.reshape(-1)])[1]
    assert params[(0, 0)][0] != context.SINGLE
    assert len(words) < 0.8 * len(single)
    assert bitstream.MODE_CLASSES == context.MODE_CLASSES and bitstream.MAX_CONTEXTS == context.N_CONTEXTS


def test_context_record_roundtrip_and_validation():
    thetas = [None] * context.N_CONTEXTS
    thetas[0], thetas[9], thetas[27] = 3, 100, len(entropy.THETAS) - 1
    rec = bitstream.ContextRecord(step_index=200, mode=2, kmax=7, thetas=tuple(thetas))
    zero = bitstream.ContextRecord(step_index=1, mode=0, kmax=0, thetas=(None,) * context.N_CONTEXTS)
    payload = rec.to_bytes() + zero.to_bytes() + b"\x01\x02\x03\x04"
    got, words = bitstream.unpack_context_payload(payload, 2, len(entropy.THETAS))
    assert got == [rec, zero] and words == b"\x01\x02\x03\x04"
    raw = bytearray(rec.to_bytes())

    def check(mutated: bytes, err, match):
        with pytest.raises(err, match=match):
            bitstream.unpack_context_payload(mutated, 1, len(entropy.THETAS))

    check(bytes(raw[:5]), TruncatedError, "too short")
    check(bytes(raw[:-1]), TruncatedError, "too short")
    bad = bytearray(raw)
    bad[3] |= 0x30  # mode 3
    check(bytes(bad), FieldRangeError, "context mode")
    one = bitstream.ContextRecord(1, 0, 5, (4,) + (None,) * 27).to_bytes()
    bad = bytearray(one)
    bad[6] |= 0x02  # class 1 in mode 0
    check(bytes(bad), FieldRangeError, "beyond mode 0")
    bad = bytearray(one)
    bad[1:3] = b"\x00\x00"  # kmax 0 with a class in use
    check(bytes(bad), FieldRangeError, "inconsistent")
    bad = bytearray(one)
    bad[7] = 250  # Laplace table index out of range
    check(bytes(bad), FieldRangeError, "table index")


def test_class_without_distribution_is_a_format_error():
    codes = [[np.array([[1, 0], [0, 2]])], [np.array([[3]])]]
    params, words = context.encode_planes(codes)
    mode, kmax, thetas = params[(0, 0)]
    stripped = (None,) * len(thetas)
    with pytest.raises(FormatError, match="no distribution"):
        context.decode_planes(words, [(2, 2), (1, 1)], 1, {(0, 0): (mode, kmax, stripped), (1, 0): params[(1, 0)]})


def _cost(image, spec, idx, codes, lam):
    """``SSE + lam * bits`` of the written file (the quantity RDOQ lowers)."""
    data = encoder.code_hybrid(spec, codes, idx)
    out = decoder.decode_to_array(data).astype(np.float64) / 255.0
    return float(((out - image) ** 2).sum()) + lam * 8 * len(data), len(data)


def _filled(cat, delta0):
    """The analytic start on the test image: ``(image, spec, step indices, codes)``."""
    image = cat.astype(np.float32) / 255.0
    h, w, c = image.shape
    spec = PyramidSpec(pyramid.levels_for(w, h), c, w, h)
    cfg = pyramid.PyramidConfig(delta0=delta0)
    idx = pyramid.step_indices(spec, cfg)
    return image, spec, idx, pyramid.codes_of(pyramid.fill(image, spec, idx, cfg.deadzone), idx)


def test_rdoq_lowers_rate_distortion_cost(cat):
    image, spec, idx, start = _filled(cat, 0.1)
    cfg = pyramid.PyramidConfig(delta0=0.1)
    lam = RDOQ_LAMBDA * cfg.delta0**2
    res = rdoq.optimise(image, spec, idx, start, lam, sweeps=4)
    before, _ = _cost(image, spec, idx, start, lam)
    after, _ = _cost(image, spec, idx, res.codes, lam)
    assert res.sweeps >= 1 and res.changed[0] > 0
    assert after < 0.97 * before


def test_rdoq_reconstruction_matches_decoder(cat):
    """The optimiser's model of the decoder (sampling matrices, colour matrix) is the decoder."""
    image, spec, idx, codes = _filled(cat, 0.05)
    h, w, c = image.shape
    samplers = rdoq.samplers_for(spec)
    y = rdoq.reconstruct(codes, [quant.step_from_index(i) for i in idx], samplers, (c, h, w))
    rgb = torch.einsum("ij,jhw->ihw", rdoq.colour_matrix(c), y - rdoq.colour_centre(c)[:, None, None])
    ours = decoder.color.to_uint8(rgb.permute(1, 2, 0))
    dec = decoder.decode_to_array(encoder.code_hybrid(spec, codes, idx))
    assert np.abs(ours.astype(int) - dec.astype(int)).max() <= 1


def test_presets_include_the_faster_ones():
    fast, medium, slow = (HYBRID_PRESETS[k] for k in ("fast", "medium", "slow"))
    assert set(fast.shapes) <= set(medium.shapes) <= set(slow.shapes)
    assert fast.sweeps <= medium.sweeps <= slow.sweeps and fast.seconds <= 20 and medium.seconds <= 60


def test_more_effort_is_not_worse(cat):
    image = cat.astype(np.float32) / 255.0
    js = {}
    for preset in ("fast", "medium"):
        r = codec.encode_image(cat, preset=preset, quality=80)
        lam = RDOQ_LAMBDA * r.stats["delta0"] ** 2  # same Delta_0 for both presets at one quality
        out = decoder.decode_to_array(r.data).astype(np.float64) / 255.0
        js[preset] = float(((out - image) ** 2).sum()) + lam * 8 * r.bytes
    assert js["medium"] <= js["fast"] * 1.005


def test_seconds_budget_is_respected():
    import skimage.data

    img = skimage.data.astronaut()[:256, :256]
    r = codec.encode_image(img, preset="slow", seconds=1.0)
    assert r.seconds < 4.0 and r.psnr > 25


def test_hybrid_decode_does_not_import_torch(tmp_path, cat):
    path = tmp_path / "c.inr"
    path.write_bytes(codec.encode(cat, preset="fast"))
    code = ("import sys; from codec import cli; "
            f"rc = cli.main(['decode', {str(path)!r}, '-o', {str(tmp_path / 'o.png')!r}]); "
            "print(rc, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split()[-2:] == ["0", "False"] and (tmp_path / "o.png").exists()
