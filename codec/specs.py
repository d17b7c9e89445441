"""Model structures: small frozen dataclasses of integers (no torch; the decoder's header layer uses them)."""
from __future__ import annotations

import math
from dataclasses import dataclass

MODELS = ("relu", "pe", "fourier", "siren", "hybrid")  # "pyramid" (format-1 hybrid) is decoded only
MLP_MODELS = MODELS[:4]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model's structure (all small integers)."""

    name: str
    layers: int
    hidden: int
    channels: int = 3
    enc_a: int = 0  # pe: L; fourier: number of frequencies m
    enc_b: int = 0  # fourier: 4 * sigma; siren: w0
    seed: int = 0  # fourier: seed of B

    @property
    def in_features(self) -> int:
        if self.name == "pe":
            return 2 + 4 * self.enc_a
        if self.name == "fourier":
            return 2 * self.enc_a
        return 2

    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(out, in)`` of every linear layer, input to output."""
        dims = [self.in_features] + [self.hidden] * self.layers + [self.channels]
        return [(dims[i + 1], dims[i]) for i in range(len(dims) - 1)]

    def coded_shapes(self) -> list[tuple[int, int]]:
        """Shapes of the coded tensors ``[W | b]``, input to output."""
        return [(o, i + 1) for o, i in self.layer_shapes()]

    def num_params(self) -> int:
        return sum(o * i for o, i in self.coded_shapes())

    def macs_per_pixel(self) -> int:
        """Multiply-accumulates per output pixel: linear layers plus the encoding's projection."""
        macs = sum(o * i for o, i in self.layer_shapes())
        if self.name == "fourier":
            macs += 2 * self.enc_a
        return macs


PYRAMID_KERNELS = {"pyramid": "bilinear", "hybrid": "bicubic"}
_TAPS = {"bilinear": 2, "bicubic": 4}


@dataclass(frozen=True)
class PyramidSpec:
    """Structure of the latent-grid models: ``levels`` grids of ``channels`` planes each.

    Level ``l`` holds ``ceil(H / 2^l) x ceil(W / 2^l)`` values per channel.  ``name`` is
    ``"hybrid"`` (bicubic sampling, context-coded latents) or ``"pyramid"`` (format-1 files:
    bilinear sampling, one Laplace per plane; still decoded, no longer written).
    """

    levels: int
    channels: int
    width: int
    height: int
    name: str = "hybrid"
    colour: int = 0  # the colour word (codec.color.matrices): 0 is JFIF YCbCr; format version 8 on

    @property
    def kernel(self) -> str:
        return PYRAMID_KERNELS[self.name]

    def level_shapes(self) -> list[tuple[int, int]]:
        return [(-(-self.height // (1 << lv)), -(-self.width // (1 << lv))) for lv in range(self.levels)]

    def coded_shapes(self) -> list[tuple[int, int]]:
        """One coded tensor per (level, channel), level-major, finest level first."""
        return [s for s in self.level_shapes() for _ in range(self.channels)]

    def num_params(self) -> int:
        return sum(h * w for h, w in self.coded_shapes())

    def macs_per_pixel(self) -> int:
        """Sampling (``taps^2`` MACs per value: 4 bilinear, 16 bicubic) of every level and channel,
        plus the colour transform."""
        return _TAPS[self.kernel] ** 2 * self.levels * self.channels + (9 if self.channels >= 3 else 0)


# Lifting MACs per sample and 1-D pass of the inverse 9/7 (four lifting steps of two MACs, one scaling)
_LIFT_MACS = 9


@dataclass(frozen=True)
class WaveletSpec:
    """Structure of a hybrid file in the wavelet basis (format version 10, basis 1,
    :mod:`codec.wavelet`): ``levels`` levels of CDF 9/7 subbands of ``channels`` channels.

    Its planes are coded as four groups under the hybrid's context rule (:mod:`codec.context`):
    the final ``LL`` (one level), then each orientation ``HL``, ``LH``, ``HH`` as a pyramid of
    ``levels`` levels (level ``l``'s plane has level ``l + 1``'s of the same orientation as its
    parent).  Tensor ``n`` of the file's records is, group by group, ``level * channels + channel``
    within its group.  The decoder synthesises the native-size image and samples it bicubically at
    the output's pixel centres (:class:`codec.synthesis.LatentRenderer` with one grid), so any output
    size and crop work as for the pyramid basis."""

    levels: int
    channels: int
    width: int
    height: int
    colour: int = 0  # the colour word (codec.color.matrices), as PyramidSpec's
    name: str = "hybrid"
    basis: str = "wavelet"
    kernel: str = "bicubic"

    def sizes(self) -> list[tuple[int, int]]:
        """``ceil(H / 2^l) x ceil(W / 2^l)`` for ``l = 0..levels`` (:func:`codec.wavelet.level_sizes`)."""
        return [(-(-self.height // (1 << lv)), -(-self.width // (1 << lv))) for lv in range(self.levels + 1)]

    def group_shapes(self) -> list[list[tuple[int, int]]]:
        """Per coding group (``LL``, ``HL``, ``LH``, ``HH``) the plane shape of each of its levels."""
        s = self.sizes()
        return [[s[-1]]] + [s[1:] for _ in range(3)]

    def coded_shapes(self) -> list[tuple[int, int]]:
        """Every plane's shape in record order (group, then level, then channel)."""
        return [shape for group in self.group_shapes() for shape in group for _ in range(self.channels)]

    def record_index(self, group: int, level: int, channel: int) -> int:
        """The index among the file's records of plane ``(level, channel)`` of ``group``."""
        before = sum(len(shapes) for shapes in self.group_shapes()[:group])
        return (before + level) * self.channels + channel

    def num_params(self) -> int:
        return sum(h * w for h, w in self.coded_shapes())

    def macs_per_pixel(self) -> int:
        """The inverse transform (two 1-D passes of ``_LIFT_MACS`` per sample at each level, the
        levels' samples summing to at most 4/3 of the pixels: 24 per channel), the bicubic
        resampling of a size other than the native one (16 per channel) and the colour transform."""
        return self.channels * (math.ceil(2 * _LIFT_MACS * 4 / 3) + 16) + (9 if self.channels >= 3 else 0)
