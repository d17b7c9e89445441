"""Unit tests of the hybrid's level filters (codec.finefilter; level 0 in format versions 4-5, levels 0-2 in 6)."""
from __future__ import annotations

import itertools
import math

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


@pytest.mark.parametrize("band", [1, 7, 30, 1 << 17])
def test_apply_in_row_bands_gives_the_bits_of_the_whole_plane_sum(band, monkeypatch):
    """The banded :func:`finefilter.apply` (decoder and encoder alike) adds the same products in the
    same order as the plain tap-by-tap sum over the whole plane (what decoders before 0.15.5 ran), so
    old files decode to the same bits; bands of one row, bands that do not divide the height and one
    band for the whole plane."""
    monkeypatch.setattr(finefilter, "APPLY_BAND_VALUES", band)
    rng = np.random.default_rng(4)
    for radius, shape in [(1, (13, 10)), (3, (37, 23)), (2, (5, 41)), (3, (2, 3))]:
        k = finefilter.kernel(radius, _random_taps(radius, int(rng.integers(100))))
        plane = (rng.integers(-4, 5, size=shape) * 0.037).astype(np.float32)
        pad = np.pad(plane, radius)
        ref = np.zeros(shape, dtype=np.float32)
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                if k[radius + dy, radius + dx]:
                    ref += k[radius + dy, radius + dx] * pad[radius + dy : radius + dy + shape[0],
                                                             radius + dx : radius + dx + shape[1]]
        out = finefilter.apply(plane, k)
        assert out.dtype == np.float32 and np.array_equal(out, ref)


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


def test_rate_weighted_taps_trade_error_for_bits():
    """:func:`finefilter.rdo_taps` (0.18): from the rounded least-squares taps, coordinate descent on
    ``E + mu * bits``.  Its ``J`` never exceeds the rounding's, no single move of one tap by -1, +1
    or to 0 lowers it further, ``mu = 0`` keeps the rounding, a ``mu`` far above every tap's error
    gives the identity filter, and the error ``fit_all`` reports is the chosen taps' own."""
    rng = np.random.default_rng(5)
    plane = (rng.normal(size=(48, 40)) * (rng.random((48, 40)) < 0.4)).astype(np.float32)
    target = finefilter.apply(plane, finefilter.kernel(2, _random_taps(2, 9))) + rng.normal(0, 0.3, plane.shape).astype(np.float32)
    x = finefilter.design(plane, 2, None, np.float64)
    xtx, xty = x.T @ x, x.T @ target.reshape(-1).astype(np.float64)

    def j_of(t: np.ndarray, mu: float) -> float:
        k = t / finefilter.SCALE
        k[0] += 1.0
        return float(k @ xtx @ k - 2 * k @ xty) + mu * sum(bitstream.se_bits(int(v)) for v in t)

    plain = np.array(finefilter.fit(plane, target, 2)[0])
    for mu in (0.0, 0.05, 0.5, 5.0):
        got = finefilter.rdo_taps(xtx, xty, plain, mu) if mu else plain
        assert j_of(got, mu) <= j_of(plain, mu) + 1e-9
        for i in range(len(got)):
            for cand in (got[i] - 1, got[i] + 1, 0):
                moved = got.copy()
                moved[i] = cand
                assert j_of(moved, mu) >= j_of(got, mu) - 1e-9
        taps, dsse = finefilter.fit_all(plane, target, 2, rate_weight=mu)[1]
        assert taps == [int(v) for v in got]
        assert dsse + j_of(np.zeros_like(got), 0.0) == pytest.approx(j_of(np.array(taps), 0.0), rel=1e-9, abs=1e-6)
    assert finefilter.rdo_taps(xtx, xty, plain, 1e9).tolist() == [0] * len(plain)
    few = finefilter.rdo_taps(xtx, xty, plain, 5.0)
    assert sum(bitstream.se_bits(int(v)) for v in few) < sum(bitstream.se_bits(int(v)) for v in plain)


@pytest.mark.parametrize("block", [1, 50, 130, 1 << 30])  # one row, one row, two rows, one block
def test_fit_does_not_depend_on_the_row_blocks(block, monkeypatch):
    """The normal equations are summed over row blocks of the design (bounded memory); the blocks
    change float64 summation order only: the same taps and gains as one block, at level 0 and
    through a level's sampling (``gram``), including the zero padding at the top and bottom rows."""
    from codec.rdoq import LevelSampler

    rng = np.random.default_rng(5)
    plane = (rng.normal(size=(23, 50)) * (rng.random((23, 50)) < 0.4)).astype(np.float32)
    target = rng.normal(size=(23, 50)).astype(np.float32)
    smp = LevelSampler(46, 100, (23, 50), "bicubic")

    def gram(g: np.ndarray) -> np.ndarray:
        return smp.gram(torch.from_numpy(g)).numpy()

    want = [finefilter.fit_all(plane, target, 3), finefilter.fit_all(plane, target, 3, gram)]
    monkeypatch.setattr(finefilter, "DESIGN_BLOCK", block)
    got = [finefilter.fit_all(plane, target, 3), finefilter.fit_all(plane, target, 3, gram)]
    for g, wnt in zip(got, want):
        assert [taps for taps, _ in g] == [taps for taps, _ in wnt]
        assert [gain for _, gain in g] == pytest.approx([gain for _, gain in wnt], rel=1e-9)
    rows = finefilter.design(plane, 3, (10, 13))  # a block of rows is those rows of the whole design
    np.testing.assert_array_equal(rows, finefilter.design(plane, 3)[10 * 50 : 13 * 50])
    np.testing.assert_array_equal(finefilter.design(plane, 2, (0, 1)), finefilter.design(plane, 2)[:50])
    np.testing.assert_array_equal(finefilter.design(plane, 2, (22, 23)), finefilter.design(plane, 2)[-50:])


def _level(h: int, w: int, seed: int) -> tuple[np.ndarray, rdoq.LevelSampler]:
    rng = np.random.default_rng(seed)
    plane = (rng.normal(size=(h, w)) * (rng.random((h, w)) < 0.4)).astype(np.float32)
    return plane, rdoq.LevelSampler(2 * h, 2 * w, (h, w), "bicubic")


@pytest.mark.parametrize("n_out,n_in", [(46, 23), (47, 24), (100, 25), (29, 29), (7, 3), (1, 1), (3, 7)])
def test_axis_gram_is_the_dense_product(n_out, n_in):
    """``axis_gram`` forms ``S^T S`` as a sparse product of the sampling matrices: the dense
    float64 product's values (to rounding of the few sums), at half and quarter resolution, odd
    sizes, the identity of a native level, a single cell and upsampling's wider support."""
    from codec.models import sampling_matrix

    m = sampling_matrix(n_out, n_in, "bicubic")
    dense = m.to_dense().double()
    got = rdoq.axis_gram(m)
    assert got.shape == (n_in, n_in) and got.dtype == np.float64
    np.testing.assert_allclose(got, (dense.T @ dense).numpy(), rtol=1e-15, atol=1e-15)
    if n_out == n_in:
        np.testing.assert_array_equal(got, np.eye(n_in))


@pytest.mark.parametrize("n,radius", [(1, 1), (2, 3), (9, 2), (40, 3)])
def test_identity_shifts_are_the_identitys_gram_shifts(n, radius):
    """A native level's column energies skip its (identity) Gram matrices: the same shifts, bit for bit."""
    np.testing.assert_array_equal(rdoq._identity_shifts(n, radius), rdoq._gram_shifts(np.eye(n), radius))


def test_banded_gram_rows_equal_the_dense_product():
    """``_gram_band``: rows of ``G_y X G_x^T`` from the band's rows plus a halo, at the top, inside and
    at the bottom of the grid, for every regressor column of a radius-3 design."""
    plane, smp = _level(37, 29, 11)
    gy, gx = smp.axis_grams
    dy, dx = finefilter._diagonals(gy), finefilter._diagonals(gx)
    assert dy[0] == dx[0] == 3  # bicubic at half resolution couples cells up to 3 apart
    for r0, r1 in [(0, 4), (15, 31), (30, 37)]:
        a0, a1 = max(0, r0 - dy[0]), min(37, r1 + dy[0])
        for col, whole in zip(finefilter._columns(plane, 3, (a0, a1)), finefilter._columns(plane, 3)):
            want = (gy @ whole.astype(np.float64) @ gx.T)[r0:r1]
            np.testing.assert_allclose(finefilter._gram_band(col, a0, r0, r1, dy, dx), want, rtol=0, atol=1e-10)


def test_subset_bands_cap_the_values_and_span_the_plane(monkeypatch):
    assert finefilter.subset_bands(512, 768) == [(0, 512)]  # a Kodak level 0 is summed whole
    assert finefilter.subset_bands(1024, 1024) == [(0, 1024)]  # FIT_MAX_VALUES itself
    bands = finefilter.subset_bands(3000, 4000)  # a 12 Mpixel level 0
    used = sum(r1 - r0 for r0, r1 in bands) * 4000
    assert used <= finefilter.FIT_MAX_VALUES and used > finefilter.FIT_MAX_VALUES // 2
    assert bands[0][0] < 3000 // len(bands) and bands[-1][1] > 3000 - 2 * 3000 // len(bands)
    assert all(r1 - r0 == finefilter.SUBSET_ROWS for r0, r1 in bands)
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(bands))
    wide = finefilter.subset_bands(64, 65535)  # rows wider than a block's share: bands of fewer rows
    assert all(r1 - r0 == finefilter.DESIGN_BLOCK // 65535 < finefilter.SUBSET_ROWS for r0, r1 in wide)
    assert sum(r1 - r0 for r0, r1 in wide) * 65535 <= finefilter.FIT_MAX_VALUES
    monkeypatch.setattr(finefilter, "FIT_MAX_VALUES", 1)  # never no band at all
    assert len(finefilter.subset_bands(100, 100)) == 1


def test_fit_on_every_band_equals_the_whole_fit(monkeypatch):
    """The band path (designs per band, ``G D`` from the banded Gram matrices) given every band of the
    plane sums the same normal equations as the whole-plane path: the same taps and gains."""
    plane, smp = _level(45, 38, 12)
    target = np.random.default_rng(13).normal(size=plane.shape).astype(np.float32)

    def gram(g: np.ndarray) -> np.ndarray:
        return smp.gram(torch.from_numpy(g)).numpy()

    want = [finefilter.fit_all(plane, target, 3), finefilter.fit_all(plane, target, 3, gram)]
    monkeypatch.setattr(finefilter, "subset_bands", lambda h, w: [(r0, min(h, r0 + 16)) for r0 in range(0, h, 16)])
    got = [finefilter.fit_all(plane, target, 3), finefilter.fit_all(plane, target, 3, gram, lambda: smp.axis_grams)]
    for g, wnt in zip(got, want):
        assert [taps for taps, _ in g] == [taps for taps, _ in wnt]
        assert [gain for _, gain in g] == pytest.approx([gain for _, gain in wnt], rel=1e-6)
    # without the Gram matrices a subsampled fit through a sampling falls back to the whole plane
    assert finefilter.fit_all(plane, target, 3, gram) == want[1]


@pytest.mark.parametrize("through_sampling", [False, True])
def test_a_large_plane_fits_its_filter_on_a_subset_of_rows(monkeypatch, through_sampling):
    """Above ``FIT_MAX_VALUES`` the normal equations come from a fifth of the rows here, scaled to the
    whole plane: a filter that made the target is recovered exactly, with the whole plane's gain."""
    plane, smp = _level(160, 48, 14)
    taps = _random_taps(3, 15)
    made = finefilter.apply(plane, finefilter.kernel(3, taps))
    if through_sampling:
        target = smp.adjoint(smp.up(torch.from_numpy(made))).numpy()
        args = (lambda g: smp.gram(torch.from_numpy(g)).numpy(), lambda: smp.axis_grams)
        ident_sse = float(((smp.up(torch.from_numpy(made - plane)).numpy()) ** 2).sum())
    else:
        target, args, ident_sse = made, (), float(((made - plane) ** 2).sum())
    monkeypatch.setattr(finefilter, "FIT_MAX_VALUES", 160 * 48 // 5)
    assert sum(r1 - r0 for r0, r1 in finefilter.subset_bands(160, 48)) <= 32
    got, gain = finefilter.fit_all(plane, target, 3, *args)[2]
    assert got == list(taps)
    assert gain == pytest.approx(-ident_sse, rel=0.3)  # the subset's estimate of the whole plane's


def test_filter_records_roundtrip_and_validation():
    recs = [bitstream.ContextRecord(3, 1, 5, ((5, 6),) * 8 + (None,) * 20)]
    filters = [bitstream.FilterRecord(3, _random_taps(3, 4)), bitstream.FilterRecord(),
               bitstream.FilterRecord(1, (bitstream.FILTER_MAX_TAP,) + (0,) * 4)]
    side = bitstream.pack_context_side(recs, filters, order=[0], channels=3)
    got, got_f, words = bitstream.unpack_context_side(side + b"\0" * 4, [0], len(entropy.THETAS), 3)
    assert got == recs and got_f == filters and words == b"\0" * 4
    bare = bitstream.pack_context_side(recs, order=[0], channels=3)
    assert 8 * len(bare) < 8 * len(side) <= 8 * len(bare) + sum(finefilter.record_bits(f) for f in filters) + 7
    for cut in range(len(side)):
        with pytest.raises((TruncatedError, FieldRangeError)):
            bitstream.unpack_context_side(side[:cut], [0], len(entropy.THETAS), 3)
    with pytest.raises(FieldRangeError, match="tap"):
        bitstream.pack_context_side(recs, [bitstream.FilterRecord(1, (bitstream.FILTER_MAX_TAP + 1,) + (0,) * 4)], order=[0], channels=3)
    with pytest.raises(FormatError, match="taps for radius"):
        bitstream.pack_context_side(recs, [bitstream.FilterRecord(2, (0,) * 5)], order=[0], channels=3)
    w = bitstream.BitWriter()  # K = 0 (empty plane), then radius 1 and a tap beyond the bound
    w.ue(0, bitstream.K_ORDER)
    w.bits(1, bitstream.FILTER_RADIUS_BITS)
    for t in (bitstream.FILTER_MAX_TAP + 1, 0, 0, 0, 0):
        w.se(t)
    with pytest.raises(FieldRangeError, match="level 0 channel 0 filter: tap"):
        bitstream.unpack_context_side(w.to_bytes(), [0], len(entropy.THETAS), 1)


def test_filter_records_of_three_levels_roundtrip():
    """Version 6: level-major records for levels 0..2; a reader expecting one level leaves the rest
    in the bit string (so the level count must come from the version)."""
    recs = [bitstream.ContextRecord(3, 1, 5, ((5, 6),) * 8 + (None,) * 20)]
    filters = [bitstream.FilterRecord(r, _random_taps(r, 10 + n) if r else ()) for n, r in enumerate([3, 0, 1, 2, 2, 0])]
    side = bitstream.pack_context_side(recs, filters, order=[0], channels=2)
    got, got_f, words = bitstream.unpack_context_side(side + b"\0" * 4, [0], len(entropy.THETAS), 2, filter_levels=3)
    assert got == recs and got_f == filters and words == b"\0" * 4
    for cut in range(len(side)):
        with pytest.raises((TruncatedError, FieldRangeError)):
            bitstream.unpack_context_side(side[:cut], [0], len(entropy.THETAS), 2, filter_levels=3)
    assert [bitstream.filter_levels(v, 8) for v in (2, 3, 4, 5, 6)] == [0, 0, 1, 1, 3]
    assert bitstream.filter_levels(6, 2) == 2


def test_filter_macs_per_pixel():
    f1, f3 = bitstream.FilterRecord(1, (0,) * 5), bitstream.FilterRecord(3, (0,) * 25)
    assert finefilter.macs_per_pixel([[f3, bitstream.FilterRecord(), f1]]) == 49 + 9
    assert finefilter.macs_per_pixel([[f1], [f3], [f3]]) == pytest.approx(9 + 49 / 4 + 49 / 16)


def _sampler(filled, kernels):
    image, spec, idx, codes = filled(0.05)
    samplers = rdoq.samplers_for(spec)
    return image, spec, idx, codes, samplers, rdoq.with_filters(samplers, kernels)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_filtered_sampler_adjoint_and_energy(filled, level):
    """<A u, r> = <u, A^T r> per channel and stacked; energy = exact squared column norms, at the
    borders too; the unfiltered channel and the other levels are untouched."""
    k = finefilter.kernel(2, _random_taps(2, 5))
    _, spec, _, _, samplers, filt = _sampler(filled, [[None] * 3] * level + [[k, None, k]])
    assert all(filt[lv] is samplers[lv] for lv in range(spec.levels) if lv != level)
    smp = filt[level]
    assert smp.native == (level == 0)
    h, w = spec.level_shapes()[level]
    gen = torch.Generator().manual_seed(3)
    u, r = torch.randn(3, h, w, generator=gen), torch.randn(3, spec.height, spec.width, generator=gen)
    lhs = float((smp.up_stack(u) * r).sum())
    assert lhs == pytest.approx(float((u * smp.adjoint_stack(r)).sum()), rel=1e-4)
    torch.testing.assert_close(smp.up_stack(u)[1], samplers[level].up(u[1]))  # no filter on channel 1
    view = smp.channel(0)
    torch.testing.assert_close(view.up(u[0]), smp.up_stack(u)[0])
    torch.testing.assert_close(view.adjoint(r[0]), smp.adjoint_stack(r)[0])
    for i, j in [(0, 0), (h // 2, w // 2), (1, w - 1), (h - 1, 2)]:
        e = torch.zeros(h, w)
        e[i, j] = 1.0
        assert float(view.energy[i, j]) == pytest.approx(float((view.up(e) ** 2).sum()), rel=1e-4)
    assert samplers[level].channel(1) is samplers[level]


def test_filtered_reconstruction_matches_decoder(filled):
    """A file with filters on levels 0..2 decodes to the optimiser's reconstruction."""
    image, spec, idx, codes, samplers, _ = _sampler(filled, [])
    h, w, c = image.shape
    steps = [quant.step_from_index(i) for i in idx]
    none = bitstream.FilterRecord()
    filters = [[bitstream.FilterRecord(3, _random_taps(3, 6)), none, bitstream.FilterRecord(1, _random_taps(1, 8))],
               [none, bitstream.FilterRecord(2, _random_taps(2, 7)), bitstream.FilterRecord(1, _random_taps(1, 9))],
               [bitstream.FilterRecord(1, _random_taps(1, 11)), none, none]]
    y = rdoq.reconstruct(codes, steps, rdoq.with_filters(samplers, encoder.filter_kernels(filters)), (c, h, w))
    rgb = torch.einsum("ij,jhw->ihw", rdoq.colour_matrix(c), y - rdoq.colour_centre(c)[:, None, None])
    ours = decoder.color.to_uint8(rgb.permute(1, 2, 0))
    data = encoder.code_hybrid(spec, codes, idx, filters)
    assert decoder.parse(data).filters == filters
    dec = decoder.decode_to_array(data)
    assert np.abs(ours.astype(int) - dec.astype(int)).max() <= 1
    plain = decoder.decode_to_array(encoder.code_hybrid(spec, codes, idx))
    assert np.abs(plain.astype(int) - dec.astype(int)).max() > 2  # the filters are applied


def test_fitted_filters_lower_the_cost_and_rdoq_through_them_lowers_it_again(filled):
    image, spec, idx, codes, samplers, _ = _sampler(filled, [])
    c = image.shape[2]
    steps = [quant.step_from_index(i) for i in idx]
    lam = RDOQ_LAMBDA * 0.05**2
    codes = l1fit.solve(image, codes, idx, lam, 60, l1fit.Operator(samplers, c))
    target_ycc = codec.color.rgb_to_ycbcr(torch.from_numpy(image)).permute(2, 0, 1).float()

    def cost(codes, filters):
        data = encoder.code_hybrid(spec, codes, idx, filters)
        out = decoder.decode_to_array(data).astype(np.float64) / 255.0
        return float(((out - image) ** 2).sum()) + lam * 8 * len(data)

    none = [[bitstream.FilterRecord()] * c] * bitstream.FILTER_LEVELS
    filters = encoder.fit_filters(target_ycc, codes, steps, samplers, lam)
    assert len(filters) == bitstream.FILTER_LEVELS and filters[0][0].radius > 0
    assert any(f.radius for f in filters[1] + filters[2])  # the coarser levels get filters too
    assert cost(codes, filters) < cost(codes, none)
    assert cost(codes, filters) < cost(codes, filters[:1])  # and they pay for themselves
    res = rdoq.optimise(image, spec, idx, codes, lam, 4, None, rdoq.with_filters(samplers, encoder.filter_kernels(filters)))
    assert cost(res.codes, encoder.fit_filters(target_ycc, res.codes, steps, samplers, lam)) < cost(codes, filters)
    # a huge lambda makes every filter too expensive
    assert encoder.fit_filters(target_ycc, codes, steps, samplers, 1e6) == none


def test_info_reports_filters(cat):
    data = codec.encode(cat, preset="fast", basis="pyramid", quality=90)
    d = codec.info(data)
    assert d["format_version"] == bitstream.VERSION and [len(r) for r in d["filter_radii"]] == [3] * bitstream.FILTER_LEVELS
    assert d["macs_per_pixel"] == (decoder.parse(data).spec.macs_per_pixel()
                                   + math.ceil(sum((2 * r + 1) ** 2 / 4**lv for lv, radii in enumerate(d["filter_radii"])
                                                   for r in radii if r)))


def test_rdoq_behind_a_strong_coarse_level_filter_never_raises_the_cost(filled):
    """Values of one parity class move together; behind a radius-3 filter on level 1 their atoms
    overlap strongly, and per-value updates applied jointly diverged (kodim02, medium, Delta_0 0.223:
    the file grew fivefold over 8 sweeps).  Every sweep must now lower D + lambda R."""
    image, spec, idx, codes, samplers, _ = _sampler(filled, [])
    c = image.shape[2]
    lam = RDOQ_LAMBDA * 0.05**2
    none = bitstream.FilterRecord()
    strong = bitstream.FilterRecord(3, (-98, 39, 24, 55, -3, -4) + (0,) * 19)
    filters = [[none] * c, [strong] * c, [bitstream.FilterRecord(2, (-62, 20, 13, -11, -4, 28, 0, 0, 0, 0, 0, 0, 0))] * c]
    filt = rdoq.with_filters(samplers, encoder.filter_kernels(filters))

    def cost(codes):
        data = encoder.code_hybrid(spec, codes, idx, filters)
        out = decoder.decode_to_array(data).astype(np.float64) / 255.0
        return float(((out - image) ** 2).sum()) + lam * 8 * len(data)

    costs = [cost(codes)] + [cost(rdoq.optimise(image, spec, idx, codes, lam, n, None, filt).codes) for n in (1, 2, 4, 8)]
    assert all(b <= a * 1.01 for a, b in itertools.pairwise(costs)), costs
    assert costs[-1] < costs[0]
