"""Colour conversion and rounding (the only module that maps between floats and 8-bit).

Images travel inside the codec as float32 arrays in ``[0, 1]`` of shape ``(H, W, C)``.
``to_uint8`` is the single rounding rule: ``clip(round(255 * v), 0, 255)`` with round-half-even.
The hybrid codes its latents in JFIF YCbCr or, since format version 8, in an image-adaptive
rotation of RGB named by a *colour word* (:func:`matrices`, :func:`adaptive_word`).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from . import bitstream

if TYPE_CHECKING:
    import torch


def from_uint8(a: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, C)`` -> ``float32`` in ``[0, 1]``."""
    return a.astype(np.float32) / np.float32(255.0)


def to_uint8(v) -> np.ndarray:
    """Float values (numpy array or torch tensor) in ``[0, 1]`` -> ``uint8`` with clipping and round-half-even."""
    if not isinstance(v, np.ndarray) and hasattr(v, "detach"):
        import torch

        return (v.detach() * 255.0).round().clamp_(0, 255).to(torch.uint8).cpu().numpy()
    return np.clip(np.rint(np.asarray(v, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def quantize_uint8(v: torch.Tensor) -> torch.Tensor:
    """The 8-bit rounding of ``to_uint8`` kept as floats in ``[0, 1]`` (for measuring PSNR)."""
    return (v * 255.0).round().clamp(0, 255) / 255.0


# BT.601 full-range YCbCr (as in JPEG/JFIF), on values in [0, 1]; chroma centred on 0.5.
RGB2YCC = np.array([[0.299, 0.587, 0.114],
                    [-0.168736, -0.331264, 0.5],
                    [0.5, -0.418688, -0.081312]], dtype=np.float32)
YCC2RGB = np.array([[1.0, 0.0, 1.402],
                    [1.0, -0.344136, -0.714136],
                    [1.0, 1.772, 0.0]], dtype=np.float32)
CENTRE = np.array([0.0, 0.5, 0.5], dtype=np.float32)

# The hybrid's coded colour space is named by one 32-bit *colour word* (format version 8, the
# header's ``seed`` field of a hybrid file).  Word 0 is JFIF YCbCr above.  Otherwise bit 30 is set
# and bits 0-29 hold three 10-bit angle indices k (angle = (k - 512) * pi / 512) of the rotation
# V = Rz(a) Ry(b) Rx(c) whose rows are the components: t = V rgb / sqrt(3) + centre and
# rgb = sqrt(3) V^T (t - centre), with centre = 0.5 (1 - V 1 / sqrt(3)) so that mid-grey maps to
# 0.5 in every component, as in YCbCr.  The 1/sqrt(3) keeps the first component's range that of a
# luma ((R + G + B) / 3 for a grey axis).
ANGLE_BITS = bitstream.COLOUR_ANGLE_BITS
ROTATION_FLAG = bitstream.COLOUR_ROTATION << 3 * ANGLE_BITS
ANGLE_LEVELS = 1 << ANGLE_BITS
_ANGLE_STEP = math.pi / (ANGLE_LEVELS // 2)
_GRADIENT_BAND = 256  # rows per band when summing the gradients' covariance (memory stays bounded)
_MAX_ROTATION_ERROR = 0.02  # a rotation its quantized angles miss by more (Frobenius) is not used


valid_word = bitstream.valid_colour_word  # 0, or ROTATION_FLAG plus three angle indices


def _rotation(angles: tuple[float, float, float]) -> np.ndarray:
    a, b, c = angles
    rz = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[math.cos(b), 0.0, math.sin(b)], [0.0, 1.0, 0.0], [-math.sin(b), 0.0, math.cos(b)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(c), -math.sin(c)], [0.0, math.sin(c), math.cos(c)]])
    return rz @ ry @ rx


def angle_indices(word: int) -> tuple[int, int, int]:
    """The three angle indices of a rotation word."""
    m = ANGLE_LEVELS - 1
    return (word >> 2 * ANGLE_BITS) & m, (word >> ANGLE_BITS) & m, word & m


def rotation_word(ka: int, kb: int, kc: int) -> int:
    """The rotation word of three angle indices (each ``0 .. ANGLE_LEVELS - 1``; :func:`angle_indices` inverted)."""
    return ROTATION_FLAG | ka << 2 * ANGLE_BITS | kb << ANGLE_BITS | kc


@lru_cache(maxsize=64)
def matrices(word: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(F, M, centre)`` of colour word ``word`` (float32, read-only): ``t = F rgb + centre`` and
    ``rgb = M (t - centre)`` on the first three channels."""
    if not valid_word(word):
        raise ValueError(f"invalid colour word {word:#x}")
    if word == 0:
        f, m, centre = RGB2YCC.copy(), YCC2RGB.copy(), CENTRE.copy()
    else:
        v = _rotation(tuple((k - ANGLE_LEVELS // 2) * _ANGLE_STEP for k in angle_indices(word)))
        f64 = v / math.sqrt(3.0)
        f, m = f64.astype(np.float32), (math.sqrt(3.0) * v.T).astype(np.float32)
        centre = (0.5 * (1.0 - f64.sum(axis=1))).astype(np.float32)
    for a in (f, m, centre):
        a.setflags(write=False)
    return f, m, centre


def describe(word: int) -> str:
    """``"YCbCr (JFIF)"`` or the rotation's rows, for ``inrc info``."""
    if word == 0:
        return "YCbCr (JFIF)"
    f = matrices(word)[0] * math.sqrt(3.0)
    return "rotation " + " / ".join(" ".join(f"{x:+.3f}" for x in row) for row in f)


def gradient_covariance(image: np.ndarray) -> np.ndarray:
    """``sum d d^T`` over the horizontal and vertical neighbour differences ``d`` of the first three
    channels of ``image`` (``(H, W, C)``, floats in [0, 1]), float64 ``(3, 3)``, summed in bands of rows."""
    h = image.shape[0]
    cov = np.zeros((3, 3))
    for r0 in range(0, h, _GRADIENT_BAND):
        band = np.asarray(image[r0 : min(h, r0 + _GRADIENT_BAND + 1), :, :3], dtype=np.float32)
        for d in (band[1:] - band[:-1], band[: _GRADIENT_BAND, 1:] - band[: _GRADIENT_BAND, :-1]):
            d = d.reshape(-1, 3)
            cov += (d.T @ d).astype(np.float64)
    return cov


def adaptive_word(image: np.ndarray) -> int:
    """The colour word of ``image``'s rotation: the eigenvectors of the covariance of its neighbour
    differences (:func:`gradient_covariance`), largest first — the Karhunen-Loeve transform of the
    detail that latents code, rather than of the pixel values, whose covariance the large flat
    areas dominate.  Under high-rate theory it maximises the coding gain of an orthogonal colour
    transform (Goyal, "Theoretical foundations of transform coding", IEEE SPM 2001); on six Kodak
    images at ``fast`` it saved 1.3-4.4 % of the rate at equal RGB PSNR over YCbCr (mean 2.7 %),
    where the KLT of the pixel values saved 1.7 % on average and lost 1.8 % on kodim01.

    The first component's sign is chosen so that its coefficients sum to a positive value (a luma),
    the third's so that ``det V = 1``.  Returns 0 (YCbCr) for fewer than three channels, an image
    without detail, or a rotation its quantized angles (Euler ZYX) cannot express closely."""
    if image.ndim != 3 or image.shape[2] < 3 or min(image.shape[:2]) < 2:
        return 0
    cov = gradient_covariance(image)
    if not np.isfinite(cov).all() or np.trace(cov) <= 1e-9 * image.shape[0] * image.shape[1]:
        return 0
    _, vecs = np.linalg.eigh(cov)
    v = vecs[:, ::-1].T.copy()  # rows: components, largest variance first
    if v[0].sum() < 0:
        v[0] = -v[0]
    if np.linalg.det(v) < 0:
        v[2] = -v[2]
    # Euler ZYX: V = Rz(a) Ry(b) Rx(c)
    b = -math.asin(max(-1.0, min(1.0, v[2, 0])))
    a = math.atan2(v[1, 0], v[0, 0])
    c = math.atan2(v[2, 1], v[2, 2])
    ks = [(round(t / _ANGLE_STEP) + ANGLE_LEVELS // 2) % ANGLE_LEVELS for t in (a, b, c)]
    word = rotation_word(*ks)
    vq = matrices(word)[0].astype(np.float64) * math.sqrt(3.0)
    return word if np.linalg.norm(vq - v) <= _MAX_ROTATION_ERROR else 0


def rgb_to_ycbcr(x: torch.Tensor, word: int = 0) -> torch.Tensor:
    """``(..., C)`` with C >= 3: the first three channels RGB -> the coded colour space of ``word``
    (YCbCr for 0); others (alpha) kept."""
    import torch

    if x.shape[-1] < 3:
        return x
    f, _, centre = matrices(word)
    ycc = x[..., :3] @ torch.from_numpy(f.copy()).to(x).T + torch.from_numpy(centre.copy()).to(x)
    return torch.cat([ycc, x[..., 3:]], dim=-1)


def ycbcr_to_rgb(x: torch.Tensor, word: int = 0) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`."""
    import torch

    if x.shape[-1] < 3:
        return x
    _, m, centre = matrices(word)
    rgb = (x[..., :3] - torch.from_numpy(centre.copy()).to(x)) @ torch.from_numpy(m.copy()).to(x).T
    return torch.cat([rgb, x[..., 3:]], dim=-1)


def ycbcr_to_rgb_np(x: np.ndarray, word: int = 0) -> np.ndarray:
    """:func:`ycbcr_to_rgb` for float32 numpy arrays ``(..., C)``."""
    if x.shape[-1] < 3:
        return x
    _, m, centre = matrices(word)
    rgb = (x[..., :3] - centre) @ m.T
    return np.concatenate([rgb, x[..., 3:]], axis=-1)
