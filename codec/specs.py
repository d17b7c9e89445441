"""Model structures: small frozen dataclasses of integers (no torch; the decoder's header layer uses them)."""
from __future__ import annotations

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
