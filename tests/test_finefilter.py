"""Unit tests of the hybrid's finest-level filter (codec.finefilter, format version 4)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import codec
from codec import bitstream, decoder, encoder, entropy, finefilter, l1fit, quant, rdoq
from codec.config import RDOQ_LAMBDA
from codec.errors import FieldRangeError, FormatError, TruncatedError


def _random_taps(radius: int, seed: int) -> tuple[int, ...]:
    rng = np.random.default_rng(seed)
    return tuple(int(t) for t in rng.integers(-40, 41, finefilter.n_taps(radius)))


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_kernel_is_point_symmetric_and_zero_taps_are_identity(radius):
    k = finefilter.kernel(radius, _random_taps(radius, radius))
    assert k.shape == (2 * radius + 1,) * 2
    np.testing.assert_array_equal(k, k[::-1, ::-1])
    ident = finefilter.kernel(radius, [0] * finefilter.n_taps(radius))
    plane = np.random.default_rng(0).normal(size=(9, 11)).astype(np.float32)
    np.testing.assert_array_equal(finefilter.apply(plane, ident), plane)
    with pytest.raises(ValueError):
        finefilter.kernel(radius, [0] * (finefilter.n_taps(radius) + 1))


@pytest.mark.parametrize("radius", [1, 3])
def test_apply_is_zero_padded_convolution(radius):
    """``apply`` equals torch's conv2d with zero padding (the encoder's model of it)."""
    k = finefilter.kernel(radius, _random_taps(radius, 7))
    plane = np.random.default_rng(1).normal(size=(13, 10)).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.from_numpy(plane)[None, None], torch.from_numpy(k)[None, None],
                                     padding=radius)[0, 0].numpy()
    np.testing.assert_allclose(finefilter.apply(plane, k), ref, atol=1e-5)


def test_fit_recovers_a_filter_and_reports_its_gain():
    rng = np.random.default_rng(2)
    plane = (rng.normal(size=(40, 50)) * (rng.random((40, 50)) < 0.3)).astype(np.float32)
    taps = _random_taps(2, 3)
    residual = finefilter.apply(plane, finefilter.kernel(2, taps))
    got, gain = finefilter.fit(plane, residual, 2)
    assert got == list(taps)
    ident_sse = float(((plane - residual) ** 2).sum())
    assert gain == pytest.approx(-ident_sse, rel=1e-4)
    # an identity target: nothing to gain
    got, gain = finefilter.fit(plane, plane, 1)
    assert got == [0] * finefilter.n_taps(1) and abs(gain) < 1e-6


def test_filter_records_roundtrip_and_validation():
    recs = [bitstream.ContextRecord(3, 1, 5, ((5, 6),) + (None,) * 27)]
    filters = [bitstream.FilterRecord(3, _random_taps(3, 4)), bitstream.FilterRecord(),
               bitstream.FilterRecord(1, (bitstream.FILTER_MAX_TAP,) + (0,) * 4)]
    side = bitstream.pack_context_side(recs, filters)
    got, got_f, words = bitstream.unpack_context_side(side + b"\0" * 4, [0], len(entropy.THETAS), 3)
    assert got == recs and got_f == filters and words == b"\0" * 4
    assert (8 * len(bitstream.pack_context_side(recs)) < 8 * len(side)
            <= 8 * len(bitstream.pack_context_side(recs)) + sum(finefilter.record_bits(f) for f in filters) + 7)
    for cut in range(len(side)):
        with pytest.raises((TruncatedError, FieldRangeError)):
            bitstream.unpack_context_side(side[:cut], [0], len(entropy.THETAS), 3)
    with pytest.raises(FieldRangeError, match="tap"):
        bitstream.pack_context_side(recs, [bitstream.FilterRecord(1, (bitstream.FILTER_MAX_TAP + 1,) + (0,) * 4)])
    with pytest.raises(FormatError, match="taps for radius"):
        bitstream.pack_context_side(recs, [bitstream.FilterRecord(2, (0,) * 5)])
    w = bitstream.BitWriter()  # K = 0 (empty plane), then radius 1 and a tap beyond the bound
    w.ue(0, bitstream.K_ORDER)
    w.bits(1, bitstream.FILTER_RADIUS_BITS)
    for t in (bitstream.FILTER_MAX_TAP + 1, 0, 0, 0, 0):
        w.se(t)
    with pytest.raises(FieldRangeError, match="channel 0 filter: tap"):
        bitstream.unpack_context_side(w.to_bytes(), [0], len(entropy.THETAS), 1)


def _sampler(filled, kernels):
    image, spec, idx, codes = filled(0.05)
    samplers = rdoq.samplers_for(spec)
    return image, spec, idx, codes, samplers, rdoq.with_filters(samplers, kernels)


def test_filtered_sampler_adjoint_and_energy(filled):
    """<A u, r> = <u, A^T r> per channel and stacked; energy = exact squared column norms."""
    k = finefilter.kernel(2, _random_taps(2, 5))
    _, spec, _, _, samplers, filt = _sampler(filled, [k, None, k])
    smp = filt[0]
    h, w = spec.level_shapes()[0]
    gen = torch.Generator().manual_seed(3)
    u, r = torch.randn(3, h, w, generator=gen), torch.randn(3, h, w, generator=gen)
    lhs = float((smp.up_stack(u) * r).sum())
    assert lhs == pytest.approx(float((u * smp.adjoint_stack(r)).sum()), rel=1e-4)
    torch.testing.assert_close(smp.up_stack(u)[1], u[1])  # no filter on channel 1
    view = smp.channel(0)
    torch.testing.assert_close(view.up(u[0]), smp.up_stack(u)[0])
    for i, j in [(0, 0), (h // 2, w // 2), (1, w - 1)]:
        e = torch.zeros(h, w)
        e[i, j] = 1.0
        assert float(view.energy[i, j]) == pytest.approx(float((view.up(e) ** 2).sum()), rel=1e-5)
    assert samplers[0].channel(1) is samplers[0]
    with pytest.raises(ValueError, match="image's size"):
        rdoq.FilteredSampler(samplers[1], [k, k, k])


def test_filtered_reconstruction_matches_decoder(filled):
    """A version-4 file with filters decodes to the optimiser's reconstruction."""
    image, spec, idx, codes, samplers, _ = _sampler(filled, [None] * 3)
    h, w, c = image.shape
    steps = [quant.step_from_index(i) for i in idx]
    filters = [bitstream.FilterRecord(3, _random_taps(3, 6)), bitstream.FilterRecord(),
               bitstream.FilterRecord(1, _random_taps(1, 8))]
    y = rdoq.reconstruct(codes, steps, rdoq.with_filters(samplers, finefilter.kernels(filters)), (c, h, w))
    rgb = torch.einsum("ij,jhw->ihw", rdoq.colour_matrix(c), y - rdoq.colour_centre(c)[:, None, None])
    ours = decoder.color.to_uint8(rgb.permute(1, 2, 0))
    data = encoder.code_hybrid(spec, codes, idx, filters)
    assert decoder.parse(data).filters == filters
    dec = decoder.decode_to_array(data)
    assert np.abs(ours.astype(int) - dec.astype(int)).max() <= 1
    plain = decoder.decode_to_array(encoder.code_hybrid(spec, codes, idx))
    assert np.abs(plain.astype(int) - dec.astype(int)).max() > 2  # the filters are applied


def test_fitted_filters_lower_the_cost_and_rdoq_through_them_lowers_it_again(filled):
    image, spec, idx, codes, samplers, _ = _sampler(filled, [None] * 3)
    c = image.shape[2]
    steps = [quant.step_from_index(i) for i in idx]
    lam = RDOQ_LAMBDA * 0.05**2
    codes = l1fit.solve(image, codes, idx, lam, 60, l1fit.Operator(samplers, c))
    target_ycc = codec.color.rgb_to_ycbcr(torch.from_numpy(image)).permute(2, 0, 1).float()

    def cost(codes, filters):
        data = encoder.code_hybrid(spec, codes, idx, filters)
        out = decoder.decode_to_array(data).astype(np.float64) / 255.0
        return float(((out - image) ** 2).sum()) + lam * 8 * len(data)

    none = [bitstream.FilterRecord()] * c
    filters = encoder.fit_filters(target_ycc, codes, steps, samplers, lam)
    assert filters[0].radius > 0
    assert cost(codes, filters) < cost(codes, none)
    res = rdoq.optimise(image, spec, idx, codes, lam, 4, None, rdoq.with_filters(samplers, finefilter.kernels(filters)))
    assert cost(res.codes, encoder.fit_filters(target_ycc, res.codes, steps, samplers, lam)) < cost(codes, filters)
    # a huge lambda makes every filter too expensive
    assert encoder.fit_filters(target_ycc, codes, steps, samplers, 1e6) == none


def test_info_reports_filters(cat):
    data = codec.encode(cat, preset="fast", quality=90)
    d = codec.info(data)
    assert d["format_version"] == 5 and len(d["filter_radii"]) == 3
    assert d["macs_per_pixel"] == (decoder.parse(data).spec.macs_per_pixel()
                                   + sum((2 * r + 1) ** 2 for r in d["filter_radii"] if r))
