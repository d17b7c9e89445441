"""The ``.inr`` container, format version 10 (bytes only: no torch, no numpy).

Layout (all integers big-endian)::

    offset size field
    0      3    magic  b"INR"
    3      1    version (10; versions 1 to 9 are still read)
    4      1    flags  (no flag is defined: must be 0)
    5      2    width  (1..65535)
    7      2    height (1..65535)
    9      1    channels (1 = L, 2 = LA, 3 = RGB, 4 = RGBA)
    10     1    model id (0 relu, 1 pe, 2 fourier, 3 siren; 5 hybrid in versions 2 to 10,
                4 the bilinear pyramid in version 1)
    11     1    hidden layers (1..MAX_LAYERS); hybrid: latent levels (1..MAX_LEVELS)
    12     2    hidden width (1..MAX_HIDDEN); hybrid: 0, or from version 10 its basis (0 the
                pyramid of bicubic bumps, 1 the CDF 9/7 wavelet)
    14     1    enc_a: pe -> frequencies L; fourier -> number of frequencies; else 0
    15     1    enc_b: fourier -> sigma * 4; siren -> w0; else 0
    16     4    seed of the Fourier-feature matrix (codec.rng); hybrid from version 8: the colour
                word (0: JFIF YCbCr; else 0b01 and three 10-bit angles of a rotation, codec.color); else 0
    20     4    payload length P
    24     P    payload
    24+P   4    CRC-32 (zlib) of bytes [0, 24+P)

The payload is one record per coded tensor, followed by the range coder's 32-bit words
(little-endian).  How many tensors there are follows from the model fields, so the decoder knows
the payload's structure before reading it.  MLPs and the version-1 pyramid use a 5-byte
``TensorRecord`` (step index, Laplace ratio, code range); the hybrid's ``ContextRecord``
(code range, step index, context mode, prediction weight, two Laplace-table indices per class in use)
are one Exp-Golomb bit string in versions 3 and 4 (:func:`pack_context_side`), byte records in
version 2; see :mod:`codec.context`.  Version 4 appends to that bit string one finest-level filter
record per channel (:class:`FilterRecord`, :mod:`codec.finefilter`); otherwise it is version 3.
Version 5 codes each latent's magnitude and sign apart, the signs under per-plane context
probabilities that follow the filter records in the same bit string (:mod:`codec.context`).
Version 6 sends filter records for the :func:`filter_levels` finest levels (three), level by level,
where versions 4 and 5 send level 0's only.  Version 7 puts a post-filter block
(:class:`PostFilterRecord`, :func:`pack_post_filter`) in front of a hybrid file's side information.
Version 8 lets a hybrid file name its colour space in the header's seed field (the *colour word*:
JFIF YCbCr or an image-adaptive rotation of RGB, :mod:`codec.color`); the payload is version 7's.
Version 9 codes the hybrid's side information more tightly (:func:`pack_context_side`): a plane's
step index as a difference from its prediction by the coarser planes (:func:`predict_step`), and
a distribution for every class of a plane's mode, each after the first either the same as the
class before (one bit) or new, so no class needs an in-use flag.
Version 10 lets a hybrid file name its *basis* in the header's hidden-width field: 0 is the
pyramid of versions 2 to 9 (the payload is version 9's), 1 the CDF 9/7 wavelet
(:mod:`codec.wavelet`, :class:`codec.specs.WaveletSpec`), whose payload is the post-filter block,
then the side information of four plane groups (the final LL, then the HL, LH and HH pyramids),
each a version-9 bit string of its own (:func:`pack_context_side`, no filter records), then the
range coder's words of all four groups in one stream.
"""
from __future__ import annotations

import dataclasses
import math
import struct
import zlib
from dataclasses import dataclass

from .errors import (
    ChecksumError,
    FieldRangeError,
    FormatError,
    NotInrError,
    TruncatedError,
    UnsupportedVersionError,
)

MAGIC = b"INR"
VERSION = 10
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
KNOWN_FLAGS = 0x00
_FIXED = struct.Struct(">3sBBHHBBBHBBII")
HEADER_SIZE = _FIXED.size  # 24
CRC_SIZE = 4
OVERHEAD = HEADER_SIZE + CRC_SIZE  # 28 bytes per file
_RECORD = struct.Struct(">BHH")
RECORD_SIZE = _RECORD.size  # 5

MODEL_IDS = {"relu": 0, "pe": 1, "fourier": 2, "siren": 3, "pyramid": 4, "hybrid": 5}
MODEL_NAMES = {v: k for k, v in MODEL_IDS.items()}
# Which model ids each format version may carry.
VERSION_MODELS = {1: (0, 1, 2, 3, 4), 2: (0, 1, 2, 3, 5), 3: (0, 1, 2, 3, 5), 4: (0, 1, 2, 3, 5), 5: (0, 1, 2, 3, 5),
                  6: (0, 1, 2, 3, 5), 7: (0, 1, 2, 3, 5), 8: (0, 1, 2, 3, 5),
                  9: (0, 1, 2, 3, 5), 10: (0, 1, 2, 3, 5)}
LATENT_MODELS = ("pyramid", "hybrid")
MAX_CONTEXTS = 28
MODE_CLASSES = {0: 1, 1: 8, 2: 28}  # context mode -> classes (mirrors codec.context)
MAX_LAYERS = 32
MAX_LEVELS = 16
MAX_HIDDEN = 512
MAX_PAYLOAD = 1 << 30
FILTER_RADIUS_BITS = 2  # level filter radius 0..3 (0: no filter)
FILTER_LEVELS = 3  # version 6: levels 0..2 carry a filter record per channel
FILTER_MAX_TAP = 1024  # |coded tap| bound (taps within [-8, 8] at codec.finefilter.SCALE = 128)
POST_MAX_HIDDEN = 16  # version 7: post-filter hidden channels 1..16
POST_HIDDEN_BITS = 4
POST_KERNEL = 3  # the post filter's convolutions are 3x3
POST_MAX_CODE = 1 << 12  # |coded post-filter weight| bound
POST_ORDER_BITS = 4  # Exp-Golomb order of a post-filter tensor, 0..15
COLOUR_VERSION = 8  # from version 8 a hybrid's seed field is its colour word (codec.color.matrices):
COLOUR_ANGLE_BITS = 10  # 0 (JFIF YCbCr), or bit 30 set and three 10-bit rotation angle indices
COLOUR_ROTATION = 1  # the word's bits 30-31: 01
SAME_VERSION = 9  # from version 9: predicted step indices, every class of a mode coded, same-as-before flags
BASIS_VERSION = 10  # from version 10 a hybrid's hidden-width field names its basis:
BASIS_IDS = {"pyramid": 0, "wavelet": 1}
BASIS_NAMES = {v: k for k, v in BASIS_IDS.items()}


def valid_colour_word(word: int) -> bool:
    """Whether ``word`` names a colour transform: 0, or bits 31-30 = ``COLOUR_ROTATION`` above three
    angle indices (any values)."""
    return isinstance(word, int) and (word == 0 or word >> 3 * COLOUR_ANGLE_BITS == COLOUR_ROTATION)


@dataclass(frozen=True)
class Header:
    """The fixed 24-byte header."""

    width: int
    height: int
    channels: int
    model: int
    layers: int
    hidden: int
    enc_a: int = 0
    enc_b: int = 0
    seed: int = 0
    payload_len: int = 0
    version: int = VERSION
    flags: int = 0

    @property
    def model_name(self) -> str:
        return MODEL_NAMES[self.model]

    @property
    def basis(self) -> str:
        """A latent model's basis: ``"wavelet"`` for a version-10 hybrid file with basis 1, else ``"pyramid"``."""
        return "wavelet" if self.model_name == "hybrid" and self.version >= BASIS_VERSION and self.hidden == 1 else "pyramid"

    def validate(self) -> None:
        """Check every field against its range; raise ``FieldRangeError`` naming the field."""
        if self.version not in READABLE_VERSIONS:
            raise UnsupportedVersionError(_version_message(self.version))
        if self.flags & ~KNOWN_FLAGS:
            raise UnsupportedVersionError(f"unsupported .inr flags 0x{self.flags:02x}")
        checks = [
            ("width", self.width, 1, 0xFFFF),
            ("height", self.height, 1, 0xFFFF),
            ("channels", self.channels, 1, 4),
            ("model id", self.model, 0, max(MODEL_NAMES)),
            ("hidden layers", self.layers, 1, MAX_LAYERS),
            ("hidden width", self.hidden, 0, MAX_HIDDEN),
            ("enc_a", self.enc_a, 0, 255),
            ("enc_b", self.enc_b, 0, 255),
            ("seed", self.seed, 0, 0xFFFFFFFF),
            ("payload length", self.payload_len, 0, MAX_PAYLOAD),
        ]
        for name, value, lo, hi in checks:
            if not isinstance(value, int) or not lo <= value <= hi:
                raise FieldRangeError(f"header field {name} = {value} out of range [{lo}, {hi}]")
        if self.model not in VERSION_MODELS[self.version]:
            raise FieldRangeError(f"header field model id = {self.model} is not defined in format version {self.version}")
        name = MODEL_NAMES[self.model]
        if name in LATENT_MODELS:
            if self.layers > MAX_LEVELS:
                raise FieldRangeError(f"header field levels = {self.layers} out of range [1, {MAX_LEVELS}]")
            if self.enc_a or self.enc_b:
                raise FieldRangeError(f"header fields enc_a/enc_b must be 0 for the {name} model")
            if self.hidden and (name != "hybrid" or self.version < BASIS_VERSION):
                raise FieldRangeError(f"header field hidden must be 0 for the {name} model in format version {self.version}")
            if self.hidden not in BASIS_NAMES:
                raise FieldRangeError(f"header field basis = {self.hidden} of the hybrid model out of range "
                                      f"[0, {max(BASIS_NAMES)}]")
            if self.seed and (name != "hybrid" or self.version < COLOUR_VERSION):
                raise FieldRangeError(f"header field seed must be 0 for the {name} model in format version {self.version}")
            if self.seed and not (valid_colour_word(self.seed) and self.channels >= 3):
                raise FieldRangeError(f"header field colour word = {self.seed:#x} is not a colour transform"
                                      f"{'' if self.channels >= 3 else f' (or the image has {self.channels} channels)'}")
            return
        if self.hidden < 1:
            raise FieldRangeError(f"header field hidden width = {self.hidden} out of range [1, {MAX_HIDDEN}]")
        if name == "pe" and not 1 <= self.enc_a <= 16:
            raise FieldRangeError(f"header field enc_a (pe frequencies) = {self.enc_a} out of range [1, 16]")
        if name == "fourier" and (self.enc_a < 1 or self.enc_b < 1):
            raise FieldRangeError("header fields of the fourier model out of range (frequencies and sigma must be >= 1)")
        if name == "siren" and self.enc_b < 1:
            raise FieldRangeError(f"header field enc_b (siren w0) = {self.enc_b} out of range [1, 255]")

    def to_bytes(self) -> bytes:
        self.validate()
        return _FIXED.pack(
            MAGIC, self.version, self.flags, self.width, self.height, self.channels, self.model,
            self.layers, self.hidden, self.enc_a, self.enc_b, self.seed, self.payload_len,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        """Parse and validate the fixed header at the start of ``data``."""
        data = bytes(data[:HEADER_SIZE])
        if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
            if MAGIC.startswith(data) and data:
                raise TruncatedError(f"truncated .inr file: {len(data)} bytes, the header alone needs {HEADER_SIZE}")
            raise NotInrError("not an .inr file (bad magic bytes)")
        if len(data) >= 4 and data[3] not in READABLE_VERSIONS:
            raise UnsupportedVersionError(_version_message(data[3]))
        if len(data) < HEADER_SIZE:
            raise TruncatedError(f"truncated .inr file: {len(data)} bytes, the header alone needs {HEADER_SIZE}")
        (_, version, flags, width, height, channels, model, layers, hidden, enc_a, enc_b, seed,
         payload_len) = _FIXED.unpack(data)
        header = cls(width=width, height=height, channels=channels, model=model, layers=layers,
                     hidden=hidden, enc_a=enc_a, enc_b=enc_b, seed=seed, payload_len=payload_len,
                     version=version, flags=flags)
        header.validate()
        return header


def _version_message(version: int) -> str:
    return (f"unsupported .inr format version {version} "
            f"(this decoder reads {', '.join(map(str, READABLE_VERSIONS))})")


def pack(header: Header, payload: bytes) -> bytes:
    """Header + payload + CRC-32: the complete file."""
    if len(payload) > MAX_PAYLOAD:
        raise FormatError("payload too large for the .inr format")
    head = Header(**{**header.__dict__, "payload_len": len(payload)}).to_bytes()
    body = head + bytes(payload)
    return body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def unpack(data: bytes) -> tuple[Header, bytes]:
    """Validate a complete file (header fields, length, CRC) and return ``(header, payload)``."""
    data = bytes(data)
    header = Header.from_bytes(data)
    need = HEADER_SIZE + header.payload_len + CRC_SIZE
    if len(data) < need:
        raise TruncatedError(f"truncated .inr file: {len(data)} bytes, the header announces {need}")
    if len(data) > need:
        raise FieldRangeError(f"{len(data) - need} unexpected bytes after the end of the .inr data (expected {need} bytes)")
    body = data[: need - CRC_SIZE]
    (stored,) = struct.unpack(">I", data[need - CRC_SIZE :])
    if zlib.crc32(body) & 0xFFFFFFFF != stored:
        raise ChecksumError("checksum mismatch: the .inr file is corrupt")
    return header, body[HEADER_SIZE:]


@dataclass(frozen=True)
class TensorRecord:
    """Side information of one coded tensor: quantization step index, Laplace parameter, code range."""

    step_index: int  # step = codec.quant.step_from_index(step_index)
    theta: int  # two-sided geometric ratio theta / 65536, 1..65535
    kmax: int  # codes lie in [-kmax, kmax]

    def to_bytes(self) -> bytes:
        return _RECORD.pack(self.step_index, self.theta, self.kmax)


def pack_payload(records: list[TensorRecord], words: bytes) -> bytes:
    if len(words) % 4:
        raise FormatError("range-coder output must be whole 32-bit words")
    return b"".join(r.to_bytes() for r in records) + bytes(words)


def unpack_payload(payload: bytes, n_tensors: int) -> tuple[list[TensorRecord], bytes]:
    """Split the payload into ``n_tensors`` records and the coded words, validating each field."""
    side = n_tensors * RECORD_SIZE
    if len(payload) < side:
        raise TruncatedError(f"payload of {len(payload)} bytes too short for {n_tensors} tensor records")
    records = []
    for i in range(n_tensors):
        step_index, theta, kmax = _RECORD.unpack_from(payload, i * RECORD_SIZE)
        if not 1 <= theta <= 0xFFFF:
            raise FieldRangeError(f"tensor {i}: entropy parameter {theta} out of range [1, 65535]")
        records.append(TensorRecord(step_index, theta, kmax))
    words = payload[side:]
    if len(words) % 4:
        raise FieldRangeError(f"coded data of {len(words)} bytes is not a whole number of 32-bit words")
    return records, words


class BitWriter:
    """MSB-first bit packing with Exp-Golomb codes (as in H.264's ``ue(v)``/``se(v)`` syntax)."""

    def __init__(self) -> None:
        self._bits: list[int] = []

    def bits(self, value: int, n: int) -> None:
        self._bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def ue(self, value: int, k: int = 0) -> None:
        """Exp-Golomb of order ``k`` of ``value >= 0``: ``m`` zeros, then ``value + 2^k`` in ``m + k + 1`` bits."""
        v = value + (1 << k)
        self.bits(0, v.bit_length() - 1 - k)
        self.bits(v, v.bit_length())

    def se(self, value: int) -> None:
        """Signed Exp-Golomb (order 0): 0, 1, -1, 2, -2, ... map to 0, 1, 2, 3, 4, ..."""
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def to_bytes(self) -> bytes:
        """The bits so far, zero-padded to whole bytes."""
        b = self._bits + [0] * (-len(self._bits) % 8)
        return bytes(int("".join(map(str, b[i : i + 8])), 2) for i in range(0, len(b), 8))


class BitReader:
    """Inverse of :class:`BitWriter`; every read past the end raises ``TruncatedError``."""

    MAX_PREFIX = 24  # longest Exp-Golomb prefix accepted (values below 2^25)

    def __init__(self, data: bytes, what: str) -> None:
        self._data, self._pos, self._what = data, 0, what

    def bits(self, n: int) -> int:
        if self._pos + n > 8 * len(self._data):
            raise TruncatedError(f"payload of {len(self._data)} bytes too short for the {self._what}")
        v = 0
        for i in range(self._pos, self._pos + n):
            v = v << 1 | (self._data[i >> 3] >> (7 - (i & 7))) & 1
        self._pos += n
        return v

    def ue(self, k: int = 0) -> int:
        zeros = 0
        while self.bits(1) == 0:
            zeros += 1
            if zeros > self.MAX_PREFIX:
                raise FieldRangeError(f"{self._what}: Exp-Golomb code longer than {self.MAX_PREFIX} bits")
        return ((1 << zeros | self.bits(zeros)) << k | self.bits(k)) - (1 << k)

    def se(self) -> int:
        u = self.ue()
        return (u + 1) // 2 if u % 2 else -(u // 2)

    def byte_align(self) -> int:
        """Skip to the next byte boundary (the skipped bits must be 0); return the byte offset."""
        pad = -self._pos % 8
        if self.bits(pad):
            raise FieldRangeError(f"{self._what}: non-zero padding bits")
        return self._pos // 8


def ue_bits(value: int, k: int = 0) -> int:
    """Length of :meth:`BitWriter.ue`."""
    return 2 * (value + (1 << k)).bit_length() - 1 - k


def se_bits(value: int) -> int:
    """Length of :meth:`BitWriter.se`."""
    return ue_bits(2 * value - 1 if value > 0 else -2 * value)


K_ORDER = 1  # Exp-Golomb order of a plane's code range K
WEIGHT_BITS = 4  # mirrors codec.context.WEIGHT_BITS
FIRST_THETA = 100  # predicted ratio index of the very first class (THETAS[100] ~ 0.9)
SIGN_LEVELS = 15  # sign probability indices 0..14 (mirrors codec.entropy.SIGN_LEVELS)
SIGN_MID = SIGN_LEVELS // 2  # P(+) = 1/2, the predicted index


def sign_contexts(mode: int, chroma: bool) -> int:
    """Sign contexts of a plane in version 5 (mirrors :func:`codec.context.sign_classes`): 3 parent
    signs, times 3 luma signs for chroma; FULL mode (2) adds the non-anchors' contexts, three
    times as many (the sign of their anchor neighbours' sum)."""
    base = 9 if chroma else 3
    return 4 * base if mode == 2 else base


@dataclass(frozen=True)
class ContextRecord:
    """Side information of one context-coded latent plane (the hybrid model).

    ``dists[b]`` is ``(rho, theta)``, two indices into :data:`codec.entropy.THETAS` (the zero ratio
    and the tail ratio of :func:`codec.entropy.two_ratio_table`) for every context class ``b`` of
    the mode from version 9, for every class in use before (``None`` for the others); ``mode`` is
    the context mode (0: one class, 1: 8 activity classes, 2: all 28, see :mod:`codec.context`).  A plane whose codes are all zero has
    ``kmax = 0``, mode 0, no distribution and (in version 3) step index 0.

    Version 3 codes the records as one bit string (:func:`pack_context_side`); version 2 used
    7 to 35 bytes per record and one ratio per class (``rho = theta``), still read by
    :func:`unpack_context_payload`.
    """

    step_index: int
    mode: int
    kmax: int
    dists: tuple[tuple[int, int] | None, ...]
    weight: int = 0  # mode 2 (version 3): non-anchor prediction weight, 0..15 eighths of the mean
    signs: tuple[int, ...] = ()  # version 5: sign probability index per sign context; () = all 1/2


def filter_levels(version: int, levels: int) -> int:
    """How many of the finest latent levels carry filter records in a hybrid file of ``version``:
    none before version 4, level 0 in versions 4 and 5, ``min(FILTER_LEVELS, levels)`` from 6."""
    if version < 4:
        return 0
    return 1 if version < 6 else min(FILTER_LEVELS, levels)


def filter_taps(radius: int) -> int:
    """Coded integers of a point-symmetric filter of ``radius``: ``((2R + 1)^2 + 1) / 2``."""
    return ((2 * radius + 1) ** 2 + 1) // 2


@dataclass(frozen=True)
class FilterRecord:
    """One channel's filter on one latent level (version 4 on, :mod:`codec.finefilter`): ``radius`` 0 is no filter;
    ``taps`` are :func:`filter_taps` ``(radius)`` integers, the centre's offset from 1 first."""

    radius: int = 0
    taps: tuple[int, ...] = ()

    def validate(self, what: str = "filter") -> None:
        if not 0 <= self.radius < 1 << FILTER_RADIUS_BITS:
            raise FieldRangeError(f"{what}: radius {self.radius} out of range [0, {(1 << FILTER_RADIUS_BITS) - 1}]")
        if len(self.taps) != (filter_taps(self.radius) if self.radius else 0):
            raise FormatError(f"{what}: {len(self.taps)} taps for radius {self.radius}")
        for t in self.taps:
            if not -FILTER_MAX_TAP <= t <= FILTER_MAX_TAP:
                raise FieldRangeError(f"{what}: tap {t} out of range [-{FILTER_MAX_TAP}, {FILTER_MAX_TAP}]")


STEP_START = 128  # version 9: the predicted step index of the first coded plane
STEP_OCTAVE = 16  # step indices per octave (codec.quant.step_from_index)


def predict_step(coded: list[tuple[int, int, int]], level: int, channel: int) -> int:
    """Version 9's prediction of the step index of plane ``(level, channel)`` from the planes coded
    before it, ``coded = [(level, channel, step index), ...]`` in coding order (coarse to fine)::

        two or more of its channel, the last two (l1, s1), (l2, s2):  s1 + round((s1 - s2)(l1 - level) / (l2 - l1))
        one of its channel (l1, s1):                                 s1 + 16 (l1 - level)
        none of its channel, the last coded plane (l0, s0):           s0 + 16 (l0 - level)
        nothing coded yet:                                           STEP_START

    rounded half up and clamped to 0..255.  The encoder's steps are ``Delta_0 2^(-gamma l)``
    (:func:`codec.pyramid.step_indices`) and an octave is 16 indices, so with ``gamma = 1`` every
    plane after its channel's first is predicted exactly, and other shapes to within about one."""
    own = [(lv, s) for lv, c, s in coded if c == channel]
    if len(own) >= 2:
        (l1, s1), (l2, s2) = own[-1], own[-2]
        num, den = (s1 - s2) * (l1 - level), l2 - l1
        pred = s1 + (2 * num + den) // (2 * den)
    elif own:
        pred = own[-1][1] + STEP_OCTAVE * (own[-1][0] - level)
    elif coded:
        pred = coded[-1][2] + STEP_OCTAVE * (coded[-1][0] - level)
    else:
        pred = STEP_START
    return min(max(pred, 0), 0xFF)


def pack_context_side(records: list[ContextRecord], filters: list[FilterRecord] | None = None,
                      chroma: list[bool] | None = None, order: list[int] | None = None, channels: int = 0,
                      version: int = VERSION) -> bytes:
    """Side information of the hybrid's planes, given in *coding order*
    (:func:`codec.context.coding_order`), in the syntax of ``version`` (3 to 9).  Versions 3 to 8::

        ue_1(K)                                   Exp-Golomb of order 1
        if K > 0:
            se(step index - previous plane's)     (0 before the first coded plane)
            u(2) mode                             0, 1 or 2
            if mode 2: u(4) weight                non-anchor prediction (codec.context.predict)
            for each class b of the mode:
                u(1) in use
                if in use: se(theta - predicted theta), se(rho - theta)

    Version 9 (``order`` and ``channels`` given, as to :func:`unpack_context_side`: record ``n`` is
    the plane of level ``order[n] // channels`` and channel ``order[n] % channels``)::

        ue_1(K)
        if K > 0:
            se(step index - predict_step(...))    the prediction from the coarser planes
            u(2) mode; if mode 2: u(4) weight
            class 0:  se(theta - predicted theta), se(rho - theta)
            for each further class b of the mode:
                u(1) same                         1: class b - 1's (rho, theta)
                if 0: se(theta - class b - 1's theta), se(rho - theta)

    so every class of the mode has a distribution, in use or not, and a run of classes sharing one
    costs a bit a class (versions 3 to 8: three).

    then from version 4 (``filters`` given), for each filtered level (level 0 in versions 4 and 5,
    levels 0..2 from version 6; :func:`filter_levels`), finest first, for each channel::

        u(2) radius R                             0: no filter
        if R > 0: se(t) for each of the ((2R + 1)^2 + 1) / 2 taps

    then from version 5 (``chroma`` given: whether each record's plane is a chroma plane), for each
    plane with K > 0, in coding order::

        u(1) signs modelled
        if 1: se(k - SIGN_MID) for each of its sign_contexts(mode, chroma) contexts

    The predicted theta of a plane's first class is the first class's of the previous coded plane
    (``FIRST_THETA`` at the start); in versions 3 to 8 a later class's is the previous class in use.
    Zero bits pad the string to whole bytes.  Ratios of neighbouring classes and planes are close,
    so version 3 cost about half of version 2's byte-aligned records."""
    w = BitWriter()
    same_flags = version >= SAME_VERSION
    if same_flags and (channels < 1 or order is None or len(order) != len(records)):
        raise ValueError(f"version {version} side information needs each record's tensor index and the channel count")
    prev_step, prev_first = 0, FIRST_THETA
    coded: list[tuple[int, int, int]] = []
    for n, r in enumerate(records):
        w.ue(r.kmax, K_ORDER)
        if r.kmax == 0:
            continue
        if r.mode not in MODE_CLASSES or not 0 <= r.weight < 1 << WEIGHT_BITS:
            raise FormatError(f"invalid context record {r}")
        if same_flags:
            lv, c = divmod(order[n], channels)  # type: ignore[index]
            w.se(r.step_index - predict_step(coded, lv, c))
            coded.append((lv, c, r.step_index))
        else:
            w.se(r.step_index - prev_step)
            prev_step = r.step_index
        w.bits(r.mode, 2)
        if r.mode == 2:
            w.bits(r.weight, WEIGHT_BITS)
        dists = r.dists[: MODE_CLASSES[r.mode]]
        if same_flags:
            if any(d is None for d in dists):
                raise FormatError(f"version {version} needs a distribution for every class: {r}")
            for b, (rho, theta) in enumerate(dists):
                if b:
                    w.bits(dists[b] == dists[b - 1], 1)
                    if dists[b] == dists[b - 1]:
                        continue
                w.se(theta - (dists[b - 1][1] if b else prev_first))
                w.se(rho - theta)
            prev_first = dists[0][1]
            continue
        pred, first = prev_first, None
        for d in dists:
            w.bits(d is not None, 1)
            if d is not None:
                rho, theta = d
                w.se(theta - pred)
                w.se(rho - theta)
                pred = theta
                first = theta if first is None else first
        prev_first = first
    for n, f in enumerate(filters or []):
        f.validate(f"filter record {n}")
        w.bits(f.radius, FILTER_RADIUS_BITS)
        for t in f.taps:
            w.se(t)
    if chroma is not None:
        for r, is_chroma in zip(records, chroma, strict=True):
            if r.kmax == 0:
                continue
            w.bits(bool(r.signs), 1)
            if r.signs:
                if len(r.signs) != sign_contexts(r.mode, is_chroma) or not all(0 <= k < SIGN_LEVELS for k in r.signs):
                    raise FormatError(f"invalid sign probabilities {r.signs}")
                for k in r.signs:
                    w.se(k - SIGN_MID)
    return w.to_bytes()


def unpack_context_side(payload: bytes, order: list[int], n_thetas: int,
                        channels: int = 0, signs: bool = False,
                        filter_levels: int = 1, version: int = VERSION,
                        words: bool = True) -> tuple[list[ContextRecord], list[FilterRecord], bytes]:
    """Inverse of :func:`pack_context_side` in the syntax of ``version``: the records, indexed by
    tensor (``order[n]`` is the tensor of the ``n``-th plane in coding order, level
    ``order[n] // channels`` and channel ``order[n] % channels``), the filters of ``filter_levels``
    levels of ``channels`` channels each, level-major (version 4 on; ``channels`` 0 for version 3:
    none), the sign probabilities (``signs``: version 5 on) and the rest of the payload: the coded
    words, checked to be whole 32-bit words (``words=False``: the next group's side information
    follows, unchecked)."""
    rd = BitReader(payload, "hybrid side information")
    same_flags = version >= SAME_VERSION
    if same_flags and channels < 1:
        raise ValueError(f"version {version} side information needs the channel count")
    records: list[ContextRecord | None] = [None] * len(order)
    prev_step, prev_first = 0, FIRST_THETA
    coded: list[tuple[int, int, int]] = []
    none = (None,) * MAX_CONTEXTS

    def ratios(i: int, pred: int) -> tuple[int, int]:
        theta = pred + rd.se()
        rho = theta + rd.se()
        for name, t in (("ratio", theta), ("zero ratio", rho)):
            if not 0 <= t < n_thetas:
                raise FieldRangeError(f"tensor {i}: Laplace {name} index {t} out of range [0, {n_thetas - 1}]")
        return rho, theta

    for i in order:
        kmax = rd.ue(K_ORDER)
        if kmax > 0xFFFF:
            raise FieldRangeError(f"tensor {i}: code range {kmax} out of range [0, 65535]")
        if kmax == 0:
            records[i] = ContextRecord(0, 0, 0, none)
            continue
        if same_flags:
            lv, c = divmod(i, channels)
            step = predict_step(coded, lv, c) + rd.se()
        else:
            step = prev_step + rd.se()
        if not 0 <= step <= 0xFF:
            raise FieldRangeError(f"tensor {i}: step index {step} out of range [0, 255]")
        if same_flags:
            coded.append((lv, c, step))
        prev_step = step
        mode = rd.bits(2)
        if mode not in MODE_CLASSES:
            raise FieldRangeError(f"tensor {i}: context mode {mode} out of range [0, {max(MODE_CLASSES)}]")
        weight = rd.bits(WEIGHT_BITS) if mode == 2 else 0
        dists: list[tuple[int, int] | None] = [None] * MAX_CONTEXTS
        if same_flags:
            dists[0] = ratios(i, prev_first)
            for b in range(1, MODE_CLASSES[mode]):
                before = dists[b - 1]
                dists[b] = before if rd.bits(1) else ratios(i, before[1])  # type: ignore[index]
            first = dists[0][1]  # type: ignore[index]
        else:
            pred, first = prev_first, None
            for b in range(MODE_CLASSES[mode]):
                if rd.bits(1):
                    dists[b] = ratios(i, pred)
                    pred = dists[b][1]  # type: ignore[index]
                    first = pred if first is None else first
            if first is None:
                raise FieldRangeError(f"tensor {i}: code range {kmax} but no context class in use")
        prev_first = first
        records[i] = ContextRecord(step, mode, kmax, tuple(dists), weight)
    filters = []
    for n in range(channels * filter_levels):
        radius = rd.bits(FILTER_RADIUS_BITS)
        taps = tuple(rd.se() for _ in range(filter_taps(radius) if radius else 0))
        f = FilterRecord(radius, taps)
        f.validate(f"level {n // channels} channel {n % channels} filter")
        filters.append(f)
    if signs:
        if channels < 1:
            raise ValueError("sign contexts need the channel count")
        for i in order:
            r = records[i]
            if r is None or r.kmax == 0 or not rd.bits(1):
                continue
            ks = tuple(SIGN_MID + rd.se() for _ in range(sign_contexts(r.mode, i % channels > 0)))
            for k in ks:
                if not 0 <= k < SIGN_LEVELS:
                    raise FieldRangeError(f"tensor {i}: sign probability index {k} out of range [0, {SIGN_LEVELS - 1}]")
            records[i] = dataclasses.replace(r, signs=ks)
    rest = payload[rd.byte_align():]
    if words and len(rest) % 4:
        raise FieldRangeError(f"coded data of {len(rest)} bytes is not a whole number of 32-bit words")
    return records, filters, rest  # type: ignore[return-value]


def unpack_context_payload(payload: bytes, n_tensors: int, n_thetas: int) -> tuple[list[ContextRecord], bytes]:
    """Split a version-2 hybrid payload into ``n_tensors`` context records and the coded words
    (records of 7 to 35 bytes: step index, K, a 32-bit mode and class mask, one ratio byte per class
    in use)."""
    records, pos = [], 0
    for i in range(n_tensors):
        if len(payload) < pos + 7:
            raise TruncatedError(f"payload of {len(payload)} bytes too short for tensor record {i}")
        step_index, kmax, word = struct.unpack_from(">BHI", payload, pos)
        pos += 7
        mode, mask = word >> MAX_CONTEXTS, word & ((1 << MAX_CONTEXTS) - 1)
        if mode not in MODE_CLASSES:
            raise FieldRangeError(f"tensor {i}: context mode {mode} out of range [0, {max(MODE_CLASSES)}]")
        if mask >> MODE_CLASSES[mode]:
            raise FieldRangeError(f"tensor {i}: context mask 0x{mask:07x} names classes beyond mode {mode}'s "
                                  f"{MODE_CLASSES[mode]}")
        if (kmax == 0) != (mask == 0):
            raise FieldRangeError(f"tensor {i}: context mask 0x{mask:08x} inconsistent with code range {kmax}")
        used = [b for b in range(MAX_CONTEXTS) if mask >> b & 1]
        if len(payload) < pos + len(used):
            raise TruncatedError(f"payload of {len(payload)} bytes too short for tensor record {i}")
        dists: list[tuple[int, int] | None] = [None] * MAX_CONTEXTS
        for b in used:
            t = payload[pos]
            pos += 1
            if t >= n_thetas:
                raise FieldRangeError(f"tensor {i}: Laplace table index {t} out of range [0, {n_thetas - 1}]")
            dists[b] = (t, t)
        records.append(ContextRecord(step_index, mode, kmax, tuple(dists)))
    words = payload[pos:]
    if len(words) % 4:
        raise FieldRangeError(f"coded data of {len(words)} bytes is not a whole number of 32-bit words")
    return records, words


def post_filter_shapes(hidden: int, channels: int) -> list[tuple[int, ...]]:
    """Shapes of the post filter's four coded tensors (version 7): the first convolution's weights
    and biases, the second's weights and biases (``(out, in, k, k)`` as in ``torch.nn.Conv2d``)."""
    k = POST_KERNEL
    return [(hidden, channels, k, k), (hidden,), (channels, hidden, k, k), (channels,)]


@dataclass(frozen=True)
class PostFilterRecord:
    """A hybrid file's post filter (version 7, :mod:`codec.postfilter`); ``hidden`` 0 is none.

    ``steps[t]`` is tensor ``t``'s step index (:func:`codec.quant.step_from_index`), ``orders[t]`` the
    Exp-Golomb order its integers are coded with, ``codes[t]`` its integers in C order."""

    hidden: int = 0
    steps: tuple[int, ...] = ()
    orders: tuple[int, ...] = ()
    codes: tuple[tuple[int, ...], ...] = ()

    @property
    def is_identity(self) -> bool:
        """Whether the filter changes nothing: none, or a last layer (``W2``, ``b2``: tensors 2 and 3
        of ``[W1, b1, W2, b2]``) that codes to zeros, so that ``P = 0``."""
        return self.hidden == 0 or not any(any(t) for t in self.codes[2:])

    def validate(self, channels: int) -> None:
        if self.hidden == 0:
            if self.steps or self.orders or self.codes:
                raise FormatError("post filter without hidden channels carries tensors")
            return
        if not 1 <= self.hidden <= POST_MAX_HIDDEN:
            raise FieldRangeError(f"post filter: hidden channels {self.hidden} out of range [1, {POST_MAX_HIDDEN}]")
        shapes = post_filter_shapes(self.hidden, channels)
        if not len(self.steps) == len(self.orders) == len(self.codes) == len(shapes):
            raise FormatError(f"post filter: expected {len(shapes)} tensors")
        for t, shape in enumerate(shapes):
            if len(self.codes[t]) != math.prod(shape):
                raise FormatError(f"post filter tensor {t}: {len(self.codes[t])} values for shape {shape}")
            if not 0 <= self.steps[t] <= 0xFF or not 0 <= self.orders[t] < 1 << POST_ORDER_BITS:
                raise FieldRangeError(f"post filter tensor {t}: step index or order out of range")
            if any(not -POST_MAX_CODE <= v <= POST_MAX_CODE for v in self.codes[t]):
                raise FieldRangeError(f"post filter tensor {t}: value out of range [-{POST_MAX_CODE}, {POST_MAX_CODE}]")


def post_value_bits(values: tuple[int, ...] | list[int], order: int) -> int:
    """Bits of ``values`` under :func:`pack_post_filter`'s code: Exp-Golomb of order ``order`` of
    ``|v|``, then a sign bit where ``v != 0``."""
    return sum(ue_bits(abs(v), order) + (v != 0) for v in values)


def pack_post_filter(record: PostFilterRecord, channels: int) -> bytes:
    """The post-filter block at the start of a version-7 hybrid payload::

        u(1) present
        if present:
            u(4) hidden - 1
            for each of the four tensors (post_filter_shapes):
                u(8) step index, u(4) order k
                for each value v: ue_k(|v|), then u(1) sign (1: negative) if v != 0

    zero-padded to whole bytes (1 byte when there is no post filter)."""
    record.validate(channels)
    w = BitWriter()
    w.bits(record.hidden > 0, 1)
    if record.hidden:
        w.bits(record.hidden - 1, POST_HIDDEN_BITS)
        for step, order, values in zip(record.steps, record.orders, record.codes):
            w.bits(step, 8)
            w.bits(order, POST_ORDER_BITS)
            for v in values:
                w.ue(abs(v), order)
                if v:
                    w.bits(v < 0, 1)
    return w.to_bytes()


def unpack_post_filter(payload: bytes, channels: int) -> tuple[PostFilterRecord, bytes]:
    """Inverse of :func:`pack_post_filter`: the record and the rest of the payload."""
    rd = BitReader(payload, "post filter")
    if not rd.bits(1):
        return PostFilterRecord(), payload[rd.byte_align():]
    hidden = rd.bits(POST_HIDDEN_BITS) + 1
    steps, orders, codes = [], [], []
    for shape in post_filter_shapes(hidden, channels):
        steps.append(rd.bits(8))
        order = rd.bits(POST_ORDER_BITS)
        orders.append(order)
        values = []
        for _ in range(math.prod(shape)):
            m = rd.ue(order)
            if m > POST_MAX_CODE:
                raise FieldRangeError(f"post filter: value {m} out of range [-{POST_MAX_CODE}, {POST_MAX_CODE}]")
            values.append(-m if m and rd.bits(1) else m)
        codes.append(tuple(values))
    record = PostFilterRecord(hidden, tuple(steps), tuple(orders), tuple(codes))
    record.validate(channels)
    return record, payload[rd.byte_align():]
