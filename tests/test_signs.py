"""Unit tests of format version 5's sign coding: magnitudes and signs apart, signs under contexts."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from codec import bitstream, context, entropy, rdoq
from codec.errors import FieldRangeError, FormatError, TruncatedError


def _steps(codes):
    return [[40 + lv for _ in planes] for lv, planes in enumerate(codes)]


def _parent_signed(seed: int, follow: float) -> list[list[np.ndarray]]:
    """One channel, two levels: the fine values' signs equal their parent's with probability ``follow``."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(-3, 4, (16, 20)) * (rng.random((16, 20)) < 0.8)
    up = np.repeat(np.repeat(np.sign(coarse), 2, 0), 2, 1)
    mag = rng.integers(1, 4, (32, 40)) * (rng.random((32, 40)) < 0.4) * (up != 0)
    keep = rng.random((32, 40)) < follow
    return [[(mag * np.where(keep, up, -up)).astype(np.int64)], [coarse.astype(np.int64)]]


def test_magnitude_table_folds_the_two_sided_table():
    rho, theta, k = int(entropy.THETAS[40]), int(entropy.THETAS[90]), 7
    two = entropy.two_ratio_table(rho, theta, k)
    mag = entropy.magnitude_table(rho, theta, k)
    np.testing.assert_array_equal(mag, np.concatenate([[two[k]], two[k + 1:] + two[k - 1::-1][:k]]))
    assert entropy.sign_probability(entropy.SIGN_MID) == 0.5
    assert (bitstream.SIGN_LEVELS, bitstream.SIGN_MID) == (entropy.SIGN_LEVELS, entropy.SIGN_MID)


def test_sign_classes_follow_parent_luma_and_anchor_signs():
    codes = [[np.array([[2, -1], [0, 3]]), np.array([[1, 0], [0, -1]])],
             [np.array([[-5]]), np.array([[0]])]]
    luma = context.sign_classes(codes, 0, 0, context.ACTIVITY)
    np.testing.assert_array_equal(luma, np.zeros((2, 2)))  # parent negative everywhere: s = 0
    chroma = context.sign_classes(codes, 0, 1, context.ACTIVITY)
    np.testing.assert_array_equal(chroma, [[1 + 3 * 2, 1 + 3 * 0], [1 + 3 * 1, 1 + 3 * 2]])  # parent 0, luma signs
    full = context.sign_classes(codes, 0, 0, context.FULL)
    # non-anchors (0, 1) and (1, 0): anchors 2 and 3 around them sum to > 0: 3 + 3 * 2 + 0
    assert full[0, 0] == full[1, 1] == 0 and full[0, 1] == full[1, 0] == 9
    top = context.sign_classes(codes, 1, 0, context.FULL)  # no parent: s = 1
    assert top[0, 0] == 1
    for mode in (context.SINGLE, context.ACTIVITY, context.FULL):
        for ch in (0, 1):
            assert context.sign_classes(codes, 0, ch, mode).max() < bitstream.sign_contexts(mode, ch > 0)


def test_choose_signs_models_only_when_it_pays():
    rng = np.random.default_rng(0)
    sym = rng.integers(1, 4, 4000) * np.where(rng.random(4000) < 0.85, 1, -1)
    cls = np.zeros(4000, dtype=np.int64)
    signs, bits = context.choose_signs(sym, cls, 3)
    assert signs and signs[0] > entropy.SIGN_MID and signs[1] == signs[2] == entropy.SIGN_MID
    assert bits < 0.75 * 4000
    fair = rng.integers(1, 4, 4000) * np.where(rng.random(4000) < 0.5, 1, -1)
    signs, bits = context.choose_signs(fair, cls, 3)
    assert signs == () and bits == 4001


@pytest.mark.parametrize("follow", [0.5, 0.9, 0.1])
def test_sign_coding_roundtrip_and_gain(follow):
    codes = _parent_signed(1, follow)
    records, words = context.encode_planes(codes, _steps(codes))
    back = context.decode_planes(words, [(32, 40), (16, 20)], 1, records)
    np.testing.assert_array_equal(back[0][0], codes[0][0])
    np.testing.assert_array_equal(back[1][0], codes[1][0])
    if follow != 0.5:  # signs that follow (or oppose) the parent's are modelled and cost less
        assert records[(0, 0)].signs
        fair = _parent_signed(1, 0.5)
        assert np.array_equal(np.abs(fair[0][0]), np.abs(codes[0][0]))
        assert len(words) < len(context.encode_planes(fair, _steps(fair))[1])


@pytest.mark.parametrize("seed", range(3))
def test_sign_coding_roundtrip_with_chroma_in_every_mode(seed):
    rng = np.random.default_rng(seed)
    shapes = [(18, 22), (9, 11), (5, 6)]
    codes = [[(rng.integers(-3, 4, s) * (rng.random(s) < d)).astype(np.int64) for _ in range(3)]
             for s, d in zip(shapes, (0.05, 0.5, 1.0))]
    codes[0][1] = np.where(codes[0][0] != 0, np.abs(codes[0][1]) * np.sign(codes[0][0]), 0)  # chroma follows luma
    records, words = context.encode_planes(codes, _steps(codes))
    back = context.decode_planes(words, shapes, 3, records)
    for lv in range(3):
        for ch in range(3):
            np.testing.assert_array_equal(back[lv][ch], codes[lv][ch])


def test_sign_records_roundtrip_and_validation():
    full = bitstream.ContextRecord(7, 2, 3, ((1, 2),) * 28, 5, tuple(range(12)))
    plain = bitstream.ContextRecord(9, 1, 2, ((3, 4),) * 8 + (None,) * 20)
    chroma = bitstream.ContextRecord(9, 0, 2, ((3, 4),) + (None,) * 27, 0, (14,) * 9)
    recs = [full, plain, chroma]
    order = [0, 2, 1]  # channel = tensor % 2: luma, luma, chroma
    side = bitstream.pack_context_side(recs, [bitstream.FilterRecord()] * 2, chroma=[False, False, True], order=order, channels=2)
    got, _, words = bitstream.unpack_context_side(side, order, len(entropy.THETAS), 2, signs=True)
    assert [got[i] for i in order] == recs and words == b""
    for cut in range(len(side)):
        with pytest.raises((TruncatedError, FieldRangeError)):
            bitstream.unpack_context_side(side[:cut], order, len(entropy.THETAS), 2, signs=True)
    with pytest.raises(FormatError, match="sign probabilities"):
        bitstream.pack_context_side([dataclasses.replace(full, signs=(7,) * 3)], [bitstream.FilterRecord()], [False], order=[0], channels=1)
    with pytest.raises(FormatError, match="sign probabilities"):
        bitstream.pack_context_side([dataclasses.replace(plain, signs=(15, 0, 0))], [bitstream.FilterRecord()], [False], order=[0], channels=1)
    # an index past the table: se(k - 7) = 8 for k = 15, after the record of `plain` (version 8's
    # syntax: step 9, class 0 alone in use) and no filter
    w = bitstream.BitWriter()
    w.ue(2, bitstream.K_ORDER)
    w.se(9)
    w.bits(1, 2)
    for b in range(context.MODE_CLASSES[1]):
        w.bits(b == 0, 1)
        if b == 0:
            w.se(4 - bitstream.FIRST_THETA)
            w.se(3 - 4)
    w.bits(0, bitstream.FILTER_RADIUS_BITS)
    w.bits(1, 1)
    for _ in range(3):
        w.se(8)
    with pytest.raises(FieldRangeError, match="sign probability index"):
        bitstream.unpack_context_side(w.to_bytes(), [0], len(entropy.THETAS), 1, signs=True, version=8)


def test_rdoq_charges_sign_costs():
    codes = _parent_signed(2, 0.95)
    sym = context.symbols(codes[0][0], context.FULL, context.choose_weight(codes[0][0]))
    pos, neg = rdoq._sign_costs(codes, 0, 0, sym)
    up = np.repeat(np.repeat(np.sign(codes[1][0]), 2, 0), 2, 1)
    anc = context.anchors(up.shape)
    # on anchors under a positive parent, a positive sign is cheaper than one bit and a negative dearer
    sel = torch.from_numpy(anc & (up > 0))
    assert (pos[sel] < 0).all() and (neg[sel] > 0).all()
    fair = _parent_signed(2, 0.5)
    fsym = context.symbols(fair[0][0], context.FULL, context.choose_weight(fair[0][0]))
    z = rdoq._sign_costs(fair, 0, 0, fsym)
    assert not z[0].any() and not z[1].any()
