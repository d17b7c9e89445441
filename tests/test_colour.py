"""The hybrid's colour space (format version 8): JFIF YCbCr or an image-adaptive rotation of RGB
named by the header's colour word (:mod:`codec.color`)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

import codec
from codec import bitstream, color, rdoq
from codec.api import encode_image
from codec.bitstream import Header
from codec.errors import FieldRangeError


def _coffee(w: int = 48, h: int = 32) -> np.ndarray:
    return np.asarray(Image.fromarray(skimage.data.coffee()).resize((w, h), Image.LANCZOS)).astype(np.float32) / 255.0


def test_word_zero_is_jfif_ycbcr():
    f, m, centre = color.matrices(0)
    assert np.array_equal(f, color.RGB2YCC) and np.array_equal(m, color.YCC2RGB) and np.array_equal(centre, color.CENTRE)
    assert color.describe(0) == "YCbCr (JFIF)"


@pytest.mark.parametrize("indices", [(512, 512, 512), (0, 700, 1023), (333, 256, 900)])
def test_rotation_words_invert_and_keep_grey_at_the_centre(indices):
    word = color.ROTATION_FLAG | indices[0] << 20 | indices[1] << 10 | indices[2]
    assert color.valid_word(word) and color.angle_indices(word) == indices
    f, m, centre = color.matrices(word)
    np.testing.assert_allclose(f.astype(np.float64) @ m, np.eye(3), atol=1e-6)
    v = f.astype(np.float64) * math.sqrt(3.0)
    np.testing.assert_allclose(v @ v.T, np.eye(3), atol=1e-6)  # a rotation: RGB error = 3 x coded error
    assert np.linalg.det(v) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(f @ np.full(3, 0.5, np.float32) + centre, 0.5, atol=1e-6)
    x = torch.rand(5, 4)  # RGBA: alpha passes through
    np.testing.assert_allclose(color.ycbcr_to_rgb(color.rgb_to_ycbcr(x, word), word), x, atol=1e-5)
    np.testing.assert_allclose(color.ycbcr_to_rgb_np(color.rgb_to_ycbcr(x, word).numpy(), word), x, atol=1e-5)
    assert torch.equal(rdoq.colour_matrix(4, None, word)[:3, :3], torch.from_numpy(m.copy()))
    assert torch.equal(rdoq.colour_centre(4, None, word)[:3], torch.from_numpy(centre.copy()))


@pytest.mark.parametrize("word", [-1, 1, 0x12345, 0x80000000, 0xC0000000, 2 ** 32, 1.0])
def test_invalid_words_are_refused(word):
    assert not color.valid_word(word)
    with pytest.raises(ValueError):
        color.matrices(word)


def test_adaptive_word_decorrelates_the_detail():
    image = _coffee(96, 64)
    word = color.adaptive_word(image)
    assert word and color.valid_word(word)
    f = color.matrices(word)[0].astype(np.float64)
    cov = color.gradient_covariance(image)
    coded = f @ cov @ f.T
    corr = coded / np.sqrt(np.outer(np.diag(coded), np.diag(coded)))
    # the quantized angles (pi/512) leave a small correlation; YCbCr leaves far more
    ycc = color.RGB2YCC.astype(np.float64) @ cov @ color.RGB2YCC.T.astype(np.float64)
    ycc_corr = ycc / np.sqrt(np.outer(np.diag(ycc), np.diag(ycc)))
    off = ~np.eye(3, dtype=bool)
    assert np.abs(corr[off]).max() < 0.05 < np.abs(ycc_corr[off]).max()
    assert np.all(np.diff(np.diag(coded)) <= 0)  # largest variance first
    assert f[0].sum() > 0  # the first component is a luma


def test_gradient_covariance_is_the_plain_sum_whatever_the_bands():
    image = np.random.default_rng(1).random((600, 7, 4), dtype=np.float32)  # more rows than one band
    x = image[..., :3].astype(np.float64)
    d = np.concatenate([(x[1:] - x[:-1]).reshape(-1, 3), (x[:, 1:] - x[:, :-1]).reshape(-1, 3)])
    ref = d.T @ d  # float32 sums inside each band
    np.testing.assert_allclose(color.gradient_covariance(image), ref, atol=1e-5 * np.abs(ref).max())


def test_adaptive_word_is_ycbcr_without_colour_or_detail():
    assert color.adaptive_word(np.random.default_rng(0).random((8, 8, 1), dtype=np.float32)) == 0
    assert color.adaptive_word(np.random.default_rng(0).random((8, 8, 2), dtype=np.float32)) == 0
    assert color.adaptive_word(np.full((8, 8, 3), 0.3, np.float32)) == 0
    assert color.adaptive_word(np.zeros((1, 8, 3), np.float32)) == 0


def test_encoded_rgb_file_names_its_rotation_and_decodes_in_it():
    image = _coffee()
    res = encode_image(image, quality=80, preset="fast", basis="pyramid", seconds=30)
    data = res.data
    h = codec.read_header(data)
    assert h.version == bitstream.VERSION and h.seed == color.adaptive_word(image) != 0
    assert codec.info(data)["colour"] == color.describe(h.seed)
    out = np.asarray(codec.decode(data)).astype(np.float64)
    psnr = 10 * math.log10(255.0 ** 2 / np.mean((out - color.to_uint8(image)) ** 2))
    assert psnr == pytest.approx(res.psnr, abs=1e-6) and psnr > 25
    # the same file read as YCbCr would decode to other colours: the word is used
    wrong = bytearray(data)
    wrong[16:20] = b"\0\0\0\0"
    body = bytes(wrong[:-4])
    import zlib

    wrong = body + zlib.crc32(body).to_bytes(4, "big")
    assert np.abs(np.asarray(codec.decode(wrong)).astype(int) - np.asarray(codec.decode(data)).astype(int)).max() > 8


def test_gray_images_keep_word_zero():
    image = _coffee()[..., :1]
    assert codec.read_header(codec.encode(image, quality=60, preset="fast", basis="pyramid", seconds=30)).seed == 0


def _hybrid(**kw) -> Header:
    return Header(width=8, height=8, channels=kw.pop("channels", 3), model=bitstream.MODEL_IDS["hybrid"], layers=3,
                  hidden=0, **kw)


def test_header_takes_a_colour_word_in_version_8_only():
    word = color.ROTATION_FLAG | 1 << 20 | 2 << 10 | 3
    assert Header.from_bytes(_hybrid(seed=word).to_bytes()).seed == word
    for bad in [{"seed": word, "version": 7}, {"seed": 0x12345}, {"seed": 0x80000000}, {"seed": word, "channels": 1},
                {"seed": word, "channels": 2}]:
        with pytest.raises(FieldRangeError):
            _hybrid(**bad).to_bytes()
    pyramid = Header(width=8, height=8, channels=3, model=bitstream.MODEL_IDS["pyramid"], layers=3, hidden=0,
                     seed=word, version=1)
    with pytest.raises(FieldRangeError):
        pyramid.to_bytes()


@pytest.mark.parametrize("adaptive", [True, False])
def test_chroma_step_factor_follows_the_colour_space(adaptive, monkeypatch):
    """An image's rotation is orthonormal (a unit error costs the same in every component), so its
    chroma steps are only ``ROTATION_KAPPA`` times luma's; YCbCr keeps ``YCBCR_KAPPA``."""
    import dataclasses

    from codec import config, pyramid

    assert pyramid.chroma_kappa(0) == pyramid.YCBCR_KAPPA == 1.5
    assert pyramid.chroma_kappa(color.ROTATION_FLAG) == pyramid.ROTATION_KAPPA < pyramid.YCBCR_KAPPA
    monkeypatch.setitem(config.HYBRID_PRESETS, "fast",
                        dataclasses.replace(config.HYBRID_PRESETS["fast"], adaptive_colour=adaptive))
    seen = []
    real = pyramid.step_indices
    monkeypatch.setattr(pyramid, "step_indices", lambda spec, cfg: seen.append((spec.colour, cfg.kappa)) or real(spec, cfg))
    encode_image(_coffee(), quality=70, preset="fast", basis="pyramid", seconds=30)
    assert seen and all(w != 0 for w, _ in seen) == adaptive
    assert {k for _, k in seen} == {pyramid.ROTATION_KAPPA if adaptive else pyramid.YCBCR_KAPPA}
