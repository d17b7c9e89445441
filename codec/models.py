"""Coordinate networks: pure ``nn.Module``s mapping ``(x, y)`` to pixel values.

All models share one layout: an input encoding ``gamma(v)`` of the coordinate ``v = (x, y)``
(see :mod:`codec.coords`), ``layers`` hidden layers of width ``hidden``, and a linear output
layer with one unit per channel.  Outputs are centred on 0.5 (``f(v) = 0.5 + W_out h + b_out``).

* ``relu``: ``gamma(v) = v``, ReLU activations (the blurry baseline, spectral bias:
  Rahaman et al. 2019).
* ``pe``: NeRF positional encoding (Mildenhall et al. 2020),
  ``gamma(v) = [v, sin(2^k pi v), cos(2^k pi v)]_{k<L}``, ReLU activations.
* ``fourier``: Gaussian random Fourier features (Tancik et al. 2020),
  ``gamma(v) = [cos(2 pi B v), sin(2 pi B v)]`` with ``B in R^{m x 2}``, ``B_ij ~ N(0, sigma^2)``
  drawn from :func:`codec.rng.normal` so that the decoder rebuilds it bit-exactly from a seed;
  ReLU activations.
* ``siren``: SIREN (Sitzmann et al. 2020), ``h <- sin(w0 (W h + b))`` with ``w0 = 30``; first layer
  initialised ``U(-1/n, 1/n)``, later ones ``U(-sqrt(6/n)/w0, sqrt(6/n)/w0)``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from . import rng
from .color import ycbcr_to_rgb
from .coords import extent

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


class PositionalEncoding(nn.Module):
    """``[v, sin(2^k pi v), cos(2^k pi v)]`` for ``k < L`` (NeRF)."""

    def __init__(self, num_freqs: int) -> None:
        super().__init__()
        self.register_buffer("freqs", (2.0 ** torch.arange(num_freqs, dtype=torch.float32)) * math.pi)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        a = (v[:, :, None] * self.freqs).reshape(v.shape[0], -1)
        return torch.cat([v, torch.sin(a), torch.cos(a)], dim=1)


class FourierFeatures(nn.Module):
    """``[cos(2 pi B v), sin(2 pi B v)]`` with a fixed Gaussian matrix ``B`` (Tancik et al. 2020)."""

    def __init__(self, num_freqs: int, sigma: float, seed: int) -> None:
        super().__init__()
        b = rng.normal(seed, num_freqs * 2).reshape(num_freqs, 2) * sigma
        self.register_buffer("B", torch.from_numpy(b * 2.0 * math.pi).to(torch.float32))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        a = v @ self.B.T
        return torch.cat([torch.cos(a), torch.sin(a)], dim=1)


class Sine(nn.Module):
    """``sin(w0 x)``."""

    def __init__(self, w0: float) -> None:
        super().__init__()
        self.w0 = w0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)


class CoordMLP(nn.Module):
    """Encoding -> ``layers`` x (Linear, activation) -> Linear -> ``+0.5``."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if spec.name not in MLP_MODELS:
            raise ValueError(f"unknown model {spec.name!r}")
        self.spec = spec
        if spec.name == "pe":
            self.encoding: nn.Module = PositionalEncoding(spec.enc_a)
        elif spec.name == "fourier":
            self.encoding = FourierFeatures(spec.enc_a, spec.enc_b / 4.0, spec.seed)
        else:
            self.encoding = nn.Identity()
        self.linears = nn.ModuleList(nn.Linear(i, o) for o, i in spec.layer_shapes())
        if spec.name == "siren":
            w0 = float(spec.enc_b)
            self.act: nn.Module = Sine(w0)
            with torch.no_grad():
                for k, lin in enumerate(self.linears):
                    n = lin.in_features
                    bound = 1.0 / n if k == 0 else math.sqrt(6.0 / n) / w0
                    lin.weight.uniform_(-bound, bound)
                    lin.bias.uniform_(-bound, bound)
        else:
            self.act = nn.ReLU()

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        h = self.encoding(v)
        for lin in self.linears[:-1]:
            h = self.act(lin(h))
        return self.linears[-1](h) + 0.5

    def coded_tensors(self) -> list[torch.Tensor]:
        """The tensors that are quantized and stored: ``[W | b]`` per linear layer."""
        return [torch.cat([lin.weight, lin.bias[:, None]], dim=1) for lin in self.linears]

    def load_coded_tensors(self, tensors: list[torch.Tensor]) -> None:
        """Inverse of :meth:`coded_tensors`."""
        with torch.no_grad():
            for lin, t in zip(self.linears, tensors):
                lin.weight.copy_(t[:, :-1])
                lin.bias.copy_(t[:, -1])


def build(spec: ModelSpec) -> CoordMLP:
    return CoordMLP(spec)


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


def _cubic(t: float, a: float = -0.75) -> float:
    """Keys' cubic convolution kernel with ``a = -0.75`` (the one ``grid_sample`` uses)."""
    t = abs(t)
    if t <= 1.0:
        return ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    if t < 2.0:
        return ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
    return 0.0


def sampling_matrix(n_out: int, n_in: int, kernel: str) -> torch.Tensor:
    """Sparse ``(n_out, n_in)`` matrix ``S`` with ``sample(g) = S_y g S_x^T`` on a native-size grid.

    Row ``p`` holds the weights with which :meth:`LatentPyramid.sample_level` mixes the ``n_in``
    cells of one axis at output pixel ``p``: the cell coordinate is ``u = (p + 0.5) n_in / n_out - 0.5``
    (``align_corners=False``); bilinear clamps ``u`` to the grid, bicubic clamps each of its four
    taps (``padding_mode="border"``).  Used by the encoder's optimiser (:mod:`codec.rdoq`); a unit
    test checks it against ``grid_sample``.
    """
    rows, cols, vals = [], [], []
    for p in range(n_out):
        u = (p + 0.5) * n_in / n_out - 0.5
        if kernel == "bilinear":
            u = min(max(u, 0.0), n_in - 1.0)
            i0 = math.floor(u)
            taps = [(i0, 1.0 - (u - i0)), (min(i0 + 1, n_in - 1), u - i0)]
        else:
            f = math.floor(u)
            taps = [(min(max(k, 0), n_in - 1), _cubic(u - k)) for k in range(f - 1, f + 3)]
        for k, wgt in taps:
            rows.append(p)
            cols.append(k)
            vals.append(wgt)
    m = torch.sparse_coo_tensor(torch.tensor([rows, cols]), torch.tensor(vals, dtype=torch.float64),
                                (n_out, n_in), check_invariants=True).coalesce()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return m.to(torch.float32).to_sparse_csr()


class LatentPyramid(nn.Module):
    """Multi-resolution latent grids sampled at continuous coordinates (the Cool-chic / C3 idea).

    ``f(v) = T(sum_l sample(G_l, v))``: every level ``G_l`` is interpolated at the continuous
    position ``v`` (``grid_sample``, ``align_corners=False``: grid values sit at cell centres, the grid
    spans the image's domain, borders are clamped; bicubic for ``hybrid``, bilinear for the
    format-1 ``pyramid``), the samples are summed, and ``T`` maps YCbCr to RGB (JFIF; alpha passes
    through).  Because sampling is continuous, any output size is possible.
    Ladune et al., "COOL-CHIC" (ICCV 2023); Kim et al., "C3" (CVPR 2024).
    """

    def __init__(self, spec: PyramidSpec) -> None:
        super().__init__()
        self.spec = spec
        self.mode = spec.kernel
        ax, ay = extent(spec.width, spec.height)
        self.register_buffer("inv_extent", torch.tensor([1.0 / ax, 1.0 / ay]))
        self.latents = nn.ParameterList(
            nn.Parameter(torch.zeros(spec.channels, h, w)) for h, w in spec.level_shapes())

    def sample_level(self, level: int, uv: torch.Tensor) -> torch.Tensor:
        """Level ``level`` at normalised positions ``uv`` in [-1, 1]^2, shape ``(P, channels)``."""
        g = torch.nn.functional.grid_sample(self.latents[level][None], uv.view(1, 1, -1, 2), mode=self.mode,
                                            padding_mode="border", align_corners=False)
        return g[0, :, 0, :].T

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        uv = v * self.inv_extent
        s = self.sample_level(0, uv)
        for lv in range(1, self.spec.levels):
            s = s + self.sample_level(lv, uv)
        return ycbcr_to_rgb(s)

    def coded_tensors(self) -> list[torch.Tensor]:
        return [g[c] for g in self.latents for c in range(self.spec.channels)]

    def load_coded_tensors(self, tensors: list[torch.Tensor]) -> None:
        with torch.no_grad():
            k = 0
            for g in self.latents:
                for c in range(self.spec.channels):
                    g[c].copy_(tensors[k])
                    k += 1


def build_any(spec: ModelSpec | PyramidSpec) -> nn.Module:
    """Build the network a spec describes."""
    return LatentPyramid(spec) if isinstance(spec, PyramidSpec) else CoordMLP(spec)
