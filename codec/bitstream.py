"""The ``.inr`` container, format version 2 (bytes only: no torch, no numpy).

Layout (all integers big-endian)::

    offset size field
    0      3    magic  b"INR"
    3      1    version (2; version-1 files are still read)
    4      1    flags  (no flag is defined: must be 0)
    5      2    width  (1..65535)
    7      2    height (1..65535)
    9      1    channels (1 = L, 2 = LA, 3 = RGB, 4 = RGBA)
    10     1    model id (0 relu, 1 pe, 2 fourier, 3 siren; 5 hybrid in version 2,
                4 the bilinear pyramid in version 1)
    11     1    hidden layers (1..MAX_LAYERS); hybrid: latent levels (1..MAX_LEVELS)
    12     2    hidden width (1..MAX_HIDDEN); hybrid: 0
    14     1    enc_a: pe -> frequencies L; fourier -> number of frequencies; else 0
    15     1    enc_b: fourier -> sigma * 4; siren -> w0; else 0
    16     4    seed of the Fourier-feature matrix (codec.rng), else 0
    20     4    payload length P
    24     P    payload
    24+P   4    CRC-32 (zlib) of bytes [0, 24+P)

The payload is one record per coded tensor, followed by the range coder's 32-bit words
(little-endian).  How many tensors there are follows from the model fields, so the decoder knows
the payload's structure before reading it.  MLPs and the version-1 pyramid use a 5-byte
``TensorRecord`` (step index, Laplace ratio, code range); the hybrid uses a ``ContextRecord``
(step index, code range, a mask of the context classes in use, one Laplace-table index per class
in use: 7 to 35 bytes), see :mod:`codec.context`.
"""
from __future__ import annotations

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
VERSION = 2
READABLE_VERSIONS = (1, 2)
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
VERSION_MODELS = {1: (0, 1, 2, 3, 4), 2: (0, 1, 2, 3, 5)}
LATENT_MODELS = ("pyramid", "hybrid")
MAX_CONTEXTS = 28
MODE_CLASSES = {0: 1, 1: 8, 2: 28}  # context mode -> classes (mirrors codec.context)
MAX_LAYERS = 32
MAX_LEVELS = 16
MAX_HIDDEN = 512
MAX_PAYLOAD = 1 << 30


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
            if self.hidden or self.enc_a or self.enc_b or self.seed:
                raise FieldRangeError(f"header fields hidden/enc_a/enc_b/seed must be 0 for the {name} model")
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


@dataclass(frozen=True)
class ContextRecord:
    """Side information of one context-coded latent plane (the hybrid model).

    ``thetas[b]`` is an index into :data:`codec.entropy.THETAS` for every context class ``b`` in
    use, ``None`` for classes without symbols; ``mode`` is the context mode (0: one class, 1: 8
    activity classes, 2: all 28, see :mod:`codec.context`).  Bytes: step index (1), code range (2),
    a 32-bit word holding the class mask (bits 0-27, bit ``b`` = class ``b`` in use; no bit at or
    beyond the mode's class count) and the mode (bits 28-29; bits 30-31 must be 0), then one byte
    per class in use, in class order.  A plane
    whose codes are all zero has ``kmax = 0`` and an empty mask.
    """

    step_index: int
    mode: int
    kmax: int
    thetas: tuple[int | None, ...]

    def to_bytes(self) -> bytes:
        mask = sum(1 << b for b, t in enumerate(self.thetas) if t is not None)
        return struct.pack(">BHI", self.step_index, self.kmax, mask | self.mode << MAX_CONTEXTS) + bytes(t for t in self.thetas if t is not None)


def unpack_context_payload(payload: bytes, n_tensors: int, n_thetas: int) -> tuple[list[ContextRecord], bytes]:
    """Split a hybrid payload into ``n_tensors`` context records and the coded words."""
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
        thetas: list[int | None] = [None] * MAX_CONTEXTS
        for b in used:
            t = payload[pos]
            pos += 1
            if t >= n_thetas:
                raise FieldRangeError(f"tensor {i}: Laplace table index {t} out of range [0, {n_thetas - 1}]")
            thetas[b] = t
        records.append(ContextRecord(step_index, mode, kmax, tuple(thetas)))
    words = payload[pos:]
    if len(words) % 4:
        raise FieldRangeError(f"coded data of {len(words)} bytes is not a whole number of 32-bit words")
    return records, words
