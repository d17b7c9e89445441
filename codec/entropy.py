"""Entropy coding of integer codes with constriction's range coder.

Each tensor's codes ``q in [-K, K]`` are coded under a two-sided geometric distribution (the
discrete Laplace, i.e. a Laplace density integrated over unit bins)::

    P(q) = theta^|q| / Z,        theta = t / 65536,  t in 1..65535

with ``t`` and ``K`` stored as integers.  The table is built by repeated float64 multiplication
(``numpy.cumprod``), which IEEE-754 makes bit-identical on every platform, and handed to
``constriction.stream.model.Categorical(perfect=False)``, whose fixed-point quantization is a
deterministic function of that table.  ``t`` is chosen by minimising the code length of the actual
histogram (cross-entropy), not by maximum likelihood: on mostly-zero tensors the two differ by
tens of per cent.
"""
from __future__ import annotations

import functools

import numpy as np

from .bitstream import SIGN_LEVELS, SIGN_MID  # noqa: F401 - the format defines them; re-exported here
from .errors import FormatError

MAX_K = 0xFFFF
# Candidate ratios: t = 65536 * (1 - 2^(-j/8)), dense near 1 (wide distributions), and
# t = 65536 * 2^(-j/4), dense near 0 (almost-all-zero tensors, where P(0) must approach 1).
THETAS = np.unique(np.clip(np.round(np.concatenate([
    65536 * (1 - 2.0 ** (-np.arange(1, 160) / 8)),
    65536 * 2.0 ** (-np.arange(4, 65) / 4),
])), 1, 65535).astype(np.int64))


def geometric_table(theta: int, kmax: int) -> np.ndarray:
    """Unnormalised ``theta^|q|`` for ``q = -K..K`` (float64, deterministic)."""
    return two_ratio_table(theta, theta, kmax)


def two_ratio_table(rho: int, theta: int, kmax: int) -> np.ndarray:
    """Unnormalised weights of the two-ratio distribution on ``q = -K..K`` (float64, deterministic)::

        w(0) = 1,   w(+-k) = rho' theta'^(k-1)  (k >= 1),   rho' = rho / 65536, theta' = theta / 65536

    ``rho = theta`` is the two-sided geometric (discrete Laplace); ``rho`` below ``theta`` puts extra
    mass on zero, as RDOQ's zeroing produces (a zero-inflated Laplace, cf. the significance flag
    plus magnitude coding of H.264's CABAC and JPEG 2000).  Built by ``numpy.cumprod`` over
    ``[1, rho', theta', theta', ...]``, so every IEEE-754 platform computes the same table.
    """
    half = np.full(kmax + 1, theta / 65536.0, dtype=np.float64)
    half[0] = 1.0
    if kmax:
        half[1] = rho / 65536.0
    half = np.cumprod(half)
    return np.concatenate([half[:0:-1], half])


def model(theta: int, kmax: int, rho: int | None = None):
    """The constriction model of ratio ``theta`` (and zero ratio ``rho``, default ``theta``) on
    ``-kmax..kmax`` (symbols offset by ``kmax``)."""
    import constriction

    table = geometric_table(theta, kmax) if rho is None else two_ratio_table(rho, theta, kmax)
    return constriction.stream.model.Categorical(table, perfect=False)


def magnitude_table(rho: int, theta: int, kmax: int) -> np.ndarray:
    """Unnormalised weights of ``|q| = 0..K`` under :func:`two_ratio_table` (format version 5 codes
    the magnitude and the sign apart): ``w(0) = 1``, ``w(k) = 2 rho' theta'^(k-1)``.  Doubling is
    exact in IEEE-754, so the table is as deterministic as the two-sided one."""
    half = two_ratio_table(rho, theta, kmax)[kmax:].copy()
    half[1:] *= 2.0
    return half


def magnitude_model(theta: int, kmax: int, rho: int):
    """The constriction model of :func:`magnitude_table` on ``0..kmax``."""
    import constriction

    return constriction.stream.model.Categorical(magnitude_table(rho, theta, kmax), perfect=False)


def sign_probability(k: int) -> float:
    """``P(q > 0 | q != 0)`` of sign index ``k`` (0..SIGN_LEVELS-1; SIGN_MID is 1/2): ``(k + 1) / (SIGN_LEVELS + 1)``."""
    return (k + 1) / (SIGN_LEVELS + 1)


SIGN_P = np.array([sign_probability(k) for k in range(SIGN_LEVELS)])  # P(+) of every sign index


@functools.lru_cache(maxsize=SIGN_LEVELS)
def sign_model(k: int):
    """Binary constriction model of sign index ``k``: symbol 0 is negative, 1 positive; integer weights."""
    import constriction

    return constriction.stream.model.Categorical(
        np.array([SIGN_LEVELS - k, k + 1], dtype=np.float64), perfect=False)


def sign_bits(n_pos: np.ndarray | float, n_neg: np.ndarray | float) -> np.ndarray:
    """Ideal bits of ``n_pos`` positive and ``n_neg`` negative signs under every sign index
    (columns ``k = 0..SIGN_LEVELS-1``; inputs broadcast as column vectors)."""
    n_pos = np.asarray(n_pos, dtype=np.float64)[..., None]
    n_neg = np.asarray(n_neg, dtype=np.float64)[..., None]
    return -(n_pos * np.log2(SIGN_P) + n_neg * np.log2(1.0 - SIGN_P))


def code_length_bits(hist: np.ndarray, theta: int) -> float:
    """Ideal code length (bits) of a histogram over ``-K..K`` under ratio ``theta``."""
    kmax = (len(hist) - 1) // 2
    p = geometric_table(theta, kmax)
    p = np.maximum(p / p.sum(), 2.0**-24)
    return float(-(hist * np.log2(p)).sum())


@functools.lru_cache(maxsize=64)
def _neg_log2_tables(kmax: int) -> np.ndarray:
    """``-log2 P_theta(q)`` for every candidate ratio (rows) and ``q = -K..K`` (columns), as in
    :func:`code_length_bits` (encoder side only: it picks a table index, the decoder never uses it)."""
    p = np.stack([geometric_table(int(t), kmax) for t in THETAS])
    p = np.maximum(p / p.sum(axis=1, keepdims=True), 2.0**-24)
    return -np.log2(p)


def choose_theta_index(hist: np.ndarray) -> tuple[int, float]:
    """Index into :data:`THETAS` with the shortest code for a histogram over ``-K..K``, and its length."""
    bits = _neg_log2_tables((len(hist) - 1) // 2) @ hist
    k = int(np.argmin(bits))
    return k, float(bits[k])


@functools.lru_cache(maxsize=64)
def _two_ratio_log_norm(kmax: int) -> np.ndarray:
    """``log2 Z`` for every ``(rho, theta)`` candidate pair, ``Z = 1 + 2 rho' (1 - theta'^K) / (1 - theta')``."""
    r = THETAS / 65536.0
    tail = (1.0 - r**kmax) / (1.0 - r)  # sum_{k=1..K} theta'^(k-1)
    return np.log2(1.0 + 2.0 * r[:, None] * tail[None, :])


_LOG2_THETAS = np.log2(THETAS / 65536.0)


def two_ratio_bits(mags: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """Ideal code length (bits) of magnitudes ``mags[k] = #{|q| = k}``, ``k = 0..K``, under
    :func:`two_ratio_table` for every pair of candidates: entry ``[i, j]`` is for
    ``rho = THETAS[i]``, ``theta = THETAS[j]``.  With ``Z`` as in :func:`_two_ratio_log_norm`::

        bits = N log2 Z - n_nz log2 rho' - (sum over values of max(|q| - 1, 0)) log2 theta'

    ``out`` (and ``scratch``, both float64 arrays of that shape): *add* the bits to ``out`` in place
    and return it, without a temporary array (encoder side only: it picks table indices, the
    decoder never uses it)."""
    kmax = len(mags) - 1
    n, nnz = float(mags.sum()), float(mags[1:].sum())
    excess = float((mags[1:] * np.arange(kmax)).sum())
    if out is None:
        return n * _two_ratio_log_norm(kmax) - nnz * _LOG2_THETAS[:, None] - excess * _LOG2_THETAS[None, :]
    out += np.multiply(_two_ratio_log_norm(kmax), n, out=scratch)
    out -= (nnz * _LOG2_THETAS)[:, None]
    out -= (excess * _LOG2_THETAS)[None, :]
    return out


def rate_terms(rho: int, theta: int) -> tuple[float, float]:
    """``(first, more)``: bits of ``|q| = k`` minus bits of ``0`` are ``first + (k - 1) more`` for
    ``k >= 1`` under :func:`two_ratio_table` (what RDOQ charges for a change of magnitude)."""
    return float(-np.log2(rho / 65536.0)), float(-np.log2(min(theta / 65536.0, 1.0 - 2.0**-20)))


def choose_theta(codes: np.ndarray) -> tuple[int, int, float]:
    """Best ``(theta, kmax, bits)`` for one tensor's codes, by code length."""
    kmax = int(np.abs(codes).max()) if codes.size else 0
    if kmax == 0:
        return 1, 0, 0.0
    hist = np.bincount(codes + kmax, minlength=2 * kmax + 1).astype(np.float64)
    k, bits = choose_theta_index(hist)
    return int(THETAS[k]), kmax, bits


def encode(tensors: list[np.ndarray]) -> tuple[list[tuple[int, int]], bytes]:
    """Code a list of integer arrays; return per-tensor ``(theta, kmax)`` and the coded words."""
    import constriction

    enc = constriction.stream.queue.RangeEncoder()
    params = []
    for codes in tensors:
        codes = np.asarray(codes, dtype=np.int64).reshape(-1)
        theta, kmax, _ = choose_theta(codes)
        if kmax > MAX_K:
            raise FormatError(f"quantized values up to {kmax} exceed the format's limit {MAX_K}")
        params.append((theta, kmax))
        if kmax > 0:
            enc.encode((codes + kmax).astype(np.int32), model(theta, kmax))
    return params, enc.get_compressed().astype("<u4").tobytes()


def decode(words: bytes, specs: list[tuple[int, int, int]]) -> list[np.ndarray]:
    """Inverse of :func:`encode`; ``specs`` holds ``(count, theta, kmax)`` per tensor.

    Any failure of the coder is reported as ``FormatError`` (callers verify the CRC first, since
    a range decoder fed corrupt data may return garbage instead of failing).
    """
    import constriction

    try:
        dec = constriction.stream.queue.RangeDecoder(np.frombuffer(words, dtype="<u4").astype(np.uint32))
        out = []
        for count, theta, kmax in specs:
            if kmax == 0:
                out.append(np.zeros(count, dtype=np.int32))
                continue
            sym = dec.decode(model(theta, kmax), count)
            out.append(sym.astype(np.int32) - np.int32(kmax))
    except Exception as exc:  # noqa: BLE001 - constriction raises plain exceptions on bad data
        raise FormatError(f"corrupt coded data: {exc}") from None
    return out
