"""A decoder that cannot be crashed: truncation, bit flips, fuzzing, hostile headers, an image zoo."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import codec
from codec import bitstream, imageio
from codec.cli import main
from codec.errors import (
    ChecksumError,
    FieldRangeError,
    ImageInputError,
    InrcError,
    LimitError,
    NotInrError,
    TruncatedError,
)

SMALL_LIMIT = 1 << 14  # keep renders of fuzzed headers small


def _decode_or_error(data: bytes) -> None:
    """Decoding must give an image or an InrcError, nothing else."""
    try:
        img = codec.decode(data, max_pixels=SMALL_LIMIT)
        assert img.width >= 1 and img.height >= 1
    except InrcError as e:
        assert str(e) and "\n" not in str(e)
    try:
        codec.info(data)
    except InrcError:
        pass


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


@pytest.fixture(params=["siren", "hybrid", "wavelet"])
def any_file(request, encoded) -> bytes:
    return encoded[request.param].data


def test_truncation_at_every_offset(any_file):
    small_file = any_file
    for n in range(len(small_file)):
        with pytest.raises((TruncatedError, NotInrError, ChecksumError)) as ei:
            codec.decode(small_file[:n])
        if n >= 3:
            assert isinstance(ei.value, TruncatedError), n
            assert "truncated" in str(ei.value)


def test_every_single_bit_flip_is_detected(any_file):
    small_file = any_file
    for i in range(len(small_file)):
        for bit in range(8):
            bad = bytearray(small_file)
            bad[i] ^= 1 << bit
            with pytest.raises(InrcError):
                codec.decode(bytes(bad))


def test_trailing_garbage_and_foreign_files(small_file):
    with pytest.raises(FieldRangeError, match="unexpected bytes"):
        codec.decode(small_file + b"\x00")
    for foreign in (b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"RIFF" * 20, b"IN"):
        with pytest.raises((NotInrError, TruncatedError)):
            codec.decode(foreign)
    with pytest.raises(NotInrError, match="not an .inr file"):
        codec.read_header(b"GIF89a" + b"\x00" * 30)


def test_valid_crc_garbage_payload_never_crashes(any_file):
    small_file = any_file
    rng = np.random.default_rng(0)
    head = small_file[: bitstream.HEADER_SIZE]
    n = len(small_file) - bitstream.OVERHEAD
    for _ in range(200):
        payload = bytearray(small_file[bitstream.HEADER_SIZE : -4])
        k = int(rng.integers(1, 8))
        for j in rng.integers(0, n, size=k):
            payload[j] = int(rng.integers(0, 256))
        _decode_or_error(_with_crc(head + bytes(payload)))


def test_huge_model_rejected_before_allocation():
    h = bitstream.Header(width=10, height=10, channels=3, model=0, layers=32, hidden=512, payload_len=0)
    with pytest.raises(FieldRangeError, match="parameters exceeds"):
        codec.decode(_with_crc(h.to_bytes()))
    # a 200-byte hybrid file may not declare a 65535 x 65535 latent pyramid (either format version)
    for version, model in ((2, 5), (1, 4)):
        h = bitstream.Header(width=65535, height=65535, channels=4, model=model, layers=16, hidden=0,
                             payload_len=0, version=version)
        with pytest.raises(FieldRangeError, match="parameters exceeds"):
            codec.decode(_with_crc(h.to_bytes()))


def test_hybrid_size_limit_from_the_encoder_and_the_decoder(cat, monkeypatch):
    """The hybrid takes up to ``MAX_LATENTS`` latent values: a 12 Mpixel 4032x3024 photo and a 4096x4096
    image fit (since 0.10.3), a 20 Mpixel one does not; over the limit the encoder refuses the image
    with a clear error and the decoder refuses the file before entropy decoding."""
    from codec import decoder, pyramid
    from codec.errors import LimitError
    from codec.models import PyramidSpec

    def latents(w: int, h: int) -> int:
        return PyramidSpec(pyramid.levels_for(w, h), 3, w, h).num_params()

    assert latents(4032, 3024) <= latents(4096, 4096) <= decoder.MAX_LATENTS < latents(5000, 4000)
    data = codec.encode(cat, preset="fast", basis="pyramid", quality=50)
    monkeypatch.setattr(decoder, "MAX_LATENTS", latents(64, 48) - 1)
    with pytest.raises(LimitError, match="too large for the hybrid model"):
        codec.encode(cat, preset="fast", basis="pyramid", quality=50)
    with pytest.raises(FieldRangeError, match="parameters exceeds the limit"):
        codec.decode(data)
    # the wavelet basis: one coefficient per pixel and channel, checked the same way
    monkeypatch.undo()
    wave = codec.encode(cat, basis="wavelet", quality=50)
    monkeypatch.setattr(decoder, "MAX_LATENTS", 64 * 48 * 3 - 1)
    with pytest.raises(LimitError, match="too large for the hybrid model"):
        codec.encode(cat, basis="wavelet", quality=50)
    with pytest.raises(FieldRangeError, match="parameters exceeds the limit"):
        codec.decode(wave)


def test_model_ids_belong_to_their_format_version():
    for version in (2, 3):
        with pytest.raises(FieldRangeError, match=f"not defined in format version {version}"):
            bitstream.Header(width=10, height=10, channels=3, model=4, layers=2, hidden=0, version=version).to_bytes()
    with pytest.raises(FieldRangeError, match="not defined in format version 1"):
        bitstream.Header(width=10, height=10, channels=3, model=5, layers=2, hidden=0, version=1).to_bytes()


def test_hybrid_header_fields_must_be_zero():
    h = bitstream.Header(width=10, height=10, channels=3, model=5, layers=2, hidden=0).to_bytes()
    bad = h[:12] + b"\x00\x05" + h[14:]
    with pytest.raises(FieldRangeError, match="hybrid"):
        codec.read_header(bad)


def test_only_version_10_hybrid_files_name_a_basis():
    """From version 10 the hybrid's hidden field is its basis (0 pyramid, 1 wavelet); before, it
    must be 0, and no other model may set it to a basis."""
    for version, hidden, basis in ((10, 0, "pyramid"), (10, 1, "wavelet"), (9, 0, "pyramid")):
        h = bitstream.Header(width=10, height=10, channels=3, model=5, layers=2, hidden=hidden, version=version)
        assert bitstream.Header.from_bytes(h.to_bytes()).basis == basis
    for version, hidden in ((9, 1), (8, 1), (10, 2)):
        with pytest.raises(FieldRangeError, match="hybrid|hidden"):
            bitstream.Header(width=10, height=10, channels=3, model=5, layers=2, hidden=hidden, version=version).to_bytes()
    with pytest.raises(FieldRangeError, match="hidden"):
        bitstream.Header(width=10, height=10, channels=3, model=4, layers=2, hidden=1, version=1).to_bytes()


_fields = st.fixed_dictionaries({
    "width": st.integers(1, 0xFFFF), "height": st.integers(1, 0xFFFF), "channels": st.integers(0, 6),
    "model": st.integers(0, 5), "layers": st.integers(0, 40), "hidden": st.integers(0, 600),
    "enc_a": st.integers(0, 255), "enc_b": st.integers(0, 255), "seed": st.integers(0, 2**32 - 1),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=_fields, payload=st.binary(max_size=300), version=st.sampled_from([1, 2, 3, 3, 0, 4, 9, 10, 10]),
       flags=st.sampled_from([0, 0, 0, 1, 0x80]))
def test_fuzz_headers_with_valid_crc(fields, payload, version, flags):
    body = struct.pack(">3sBBHHBBBHBBII", b"INR", version, flags, fields["width"], fields["height"],
                       fields["channels"], fields["model"], fields["layers"], fields["hidden"],
                       fields["enc_a"], fields["enc_b"], fields["seed"], len(payload)) + payload
    _decode_or_error(_with_crc(body))


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    _decode_or_error(data)
    _decode_or_error(b"INR\x01" + data)


# --- the input image zoo -------------------------------------------------------------------------

def _save(tmp_path, name, img, **kw):
    p = tmp_path / name
    img.save(p, **kw)
    return p


def _zoo(tmp_path):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    pal_t = rgb.convert("P")
    pal_t.putpixel((0, 0), 0)
    pal_t.info["transparency"] = 0
    return {
        "rgb.png": (_save(tmp_path, "rgb.png", rgb), (20, 12, 3)),
        "one.png": (_save(tmp_path, "one.png", Image.new("RGB", (1, 1), (10, 200, 30))), (1, 1, 3)),
        "gray.png": (_save(tmp_path, "gray.png", rgb.convert("L")), (20, 12, 1)),
        "la.png": (_save(tmp_path, "la.png", rgb.convert("LA")), (20, 12, 1)),  # opaque alpha dropped
        "rgba.png": (_save(tmp_path, "rgba.png", Image.merge("RGBA", (*rgb.split(), rgb.convert("L")))), (20, 12, 4)),
        "gray16.png": (_save(tmp_path, "gray16.png", Image.fromarray((np.arange(240).reshape(12, 20) * 270).astype(np.uint16))), (20, 12, 1)),
        "palette.png": (_save(tmp_path, "palette.png", rgb.convert("P")), (20, 12, 3)),
        "palette_t.png": (_save(tmp_path, "palette_t.png", pal_t), (20, 12, 4)),
        "cmyk.jpg": (_save(tmp_path, "cmyk.jpg", rgb.convert("CMYK")), (20, 12, 3)),
        "rotated.jpg": (_save(tmp_path, "rotated.jpg", rgb, exif=exif), (12, 20, 3)),
        "bilevel.bmp": (_save(tmp_path, "bilevel.bmp", rgb.convert("1")), (20, 12, 1)),
    }


def test_image_zoo_encodes(tmp_path):
    for name, (path, (w, h, c)) in _zoo(tmp_path).items():
        a = imageio.as_array(str(path))
        assert a.shape == (h, w, c), name
        r = codec.encode_image(str(path), steps=3)
        img = codec.decode(r.data)
        assert img.size == (w, h) and r.channels == c, name


def test_sixteen_bit_keeps_precision(tmp_path):
    v = (np.arange(240).reshape(12, 20) * 270).astype(np.uint16)
    p = _save(tmp_path, "g16.png", Image.fromarray(v))
    a = imageio.as_array(str(p))
    np.testing.assert_allclose(a[:, :, 0], v / 65535.0, atol=1e-6)


def test_bad_images_fail_clearly(tmp_path):
    (tmp_path / "text.png").write_text("hello, not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    good = io.BytesIO()
    Image.new("RGB", (64, 64)).save(good, format="PNG")
    (tmp_path / "cut.png").write_bytes(good.getvalue()[:60])
    # a valid PNG signature and IHDR claiming 100000 x 100000 pixels (a decompression bomb)
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    bomb = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bomb)
    cases = {"missing.png": "no such file", "text.png": "not a supported image", "empty.png": "not a supported image",
             "cut.png": "cannot read image", "bomb.png": "too large", ".": "directory"}
    for name, msg in cases.items():
        with pytest.raises((ImageInputError, LimitError), match=msg):
            codec.encode(str(tmp_path / name), steps=2)


def test_bad_arrays_fail_clearly():
    with pytest.raises(ImageInputError):
        codec.encode(np.zeros((4, 4, 5), dtype=np.uint8))
    with pytest.raises(ImageInputError):
        codec.encode(np.full((4, 4), np.nan, dtype=np.float32))
    with pytest.raises(ImageInputError):
        codec.encode(b"not an array or path")


# --- colour profiles ------------------------------------------------------------------------------


def _tagged(tmp_path, name, img, icc):
    p = tmp_path / name
    img.save(p, icc_profile=icc)
    return p


def test_an_embedded_icc_profile_is_converted_to_srgb(tmp_path, cat):
    """An Adobe-RGB-like profile (and one with a linear tone curve, named like sRGB: what a profile
    does counts, not its name) is applied: the coded pixels are LittleCMS's sRGB conversion of the
    file's, RGBA keeps its alpha."""
    from conftest import matrix_trc_profile
    from PIL import ImageCms

    srgb = ImageCms.createProfile("sRGB")
    for gamma in (2.2, 1.0):
        icc = matrix_trc_profile("Wide RGB" if gamma != 1.0 else "sRGB IEC61966-2.1 (linear)", gamma)
        for mode in ("RGB", "RGBA"):
            img = Image.fromarray(cat).convert(mode)
            if mode == "RGBA":
                img.putalpha(Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 3, (48, 1))))
            got = imageio.as_array(_tagged(tmp_path, f"wide{gamma}{mode}.png", img, icc))
            want = ImageCms.profileToProfile(img, ImageCms.ImageCmsProfile(io.BytesIO(icc)), srgb,
                                             renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode=mode)
            np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float32) / 255)
            raw = np.asarray(img, dtype=np.float32) / 255
            assert np.abs(got - raw)[..., :3].mean() > (0.003 if gamma == 2.2 else 0.05)
            if mode == "RGBA":
                np.testing.assert_array_equal(got[..., 3], raw[..., 3])


def test_srgb_gray_and_unreadable_profiles_leave_the_pixels_alone(tmp_path, cat):
    from conftest import matrix_trc_profile
    from PIL import ImageCms

    rgb = Image.fromarray(cat)
    raw = np.asarray(rgb, dtype=np.float32) / 255
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    np.testing.assert_array_equal(imageio.as_array(_tagged(tmp_path, "srgb.png", rgb, srgb)), raw)
    np.testing.assert_array_equal(imageio.as_array(_tagged(tmp_path, "junk.png", rgb, b"not a profile" * 20)), raw)
    gray = rgb.convert("L")  # a grayscale image is left as it is, whatever its profile
    got = imageio.as_array(_tagged(tmp_path, "gray.png", gray, matrix_trc_profile("Wide RGB", 1.0)))
    np.testing.assert_array_equal(got[..., 0], np.asarray(gray, dtype=np.float32) / 255)


def test_a_tagged_image_decodes_to_its_srgb_colours(tmp_path, cat):
    """End to end: the decoded (untagged, so sRGB) PNG is close to the sRGB conversion, not to the
    file's raw values (a linear-gamma profile makes the two far apart)."""
    from conftest import matrix_trc_profile

    from codec import metrics

    src = _tagged(tmp_path, "linear.png", Image.fromarray(cat), matrix_trc_profile("Linear RGB", 1.0))
    out = tmp_path / "out.png"
    assert main(["encode", str(src), "-o", str(tmp_path / "x.inr"), "--preset", "fast", "-q", "90", "--quiet"]) == 0
    assert main(["decode", str(tmp_path / "x.inr"), "-o", str(out)]) == 0
    dec = np.asarray(Image.open(out))
    converted = np.round(imageio.as_array(src) * 255).astype(np.uint8)
    assert metrics.psnr(dec, converted) > metrics.psnr(dec, cat) + 10
