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

import numpy as np
import torch
from torch import nn

from . import rng
from .bitstream import POST_KERNEL
from .color import ycbcr_to_rgb
from .coords import extent
from .specs import MLP_MODELS, MODELS, ModelSpec, PyramidSpec  # noqa: F401 - re-exported
from .synthesis import kernel_taps


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


def sampling_matrix(n_out: int, n_in: int, kernel: str) -> torch.Tensor:
    """Sparse CSR ``(n_out, n_in)`` matrix ``S`` with ``sample(g) = S_y g S_x^T`` on a regular grid
    (the taps of :func:`codec.synthesis.kernel_taps`; used by the encoder's optimiser, :mod:`codec.rdoq`)."""
    idx, w = kernel_taps(n_out, n_in, kernel)
    rows = np.repeat(np.arange(n_out), idx.shape[1])
    with warnings.catch_warnings():
        # torch 2.11 warns on every encode that the global invariant checks are off although this
        # call asks for them (seen on the CUDA build, stderr of `inrc encode`); 2.13 does not
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        m = torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows, idx.reshape(-1)])),
                                    torch.from_numpy(w.reshape(-1)), (n_out, n_in), check_invariants=True).coalesce()
        return m.to(torch.float32).to_sparse_csr()


class LatentPyramid(nn.Module):
    """Multi-resolution latent grids sampled at continuous coordinates (the Cool-chic / C3 idea).

    ``f(v) = T(sum_l sample(G_l, v))``: every level ``G_l`` is interpolated at the continuous
    position ``v`` (``grid_sample``, ``align_corners=False``: grid values sit at cell centres, the grid
    spans the image's domain, borders are clamped; bicubic for ``hybrid``, bilinear for the
    format-1 ``pyramid``), the samples are summed, and ``T`` maps the coded colour space to RGB
    (JFIF YCbCr, or the image's rotation of format version 8: ``spec.colour``; alpha passes through).  Because sampling is continuous, any output size is possible.
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
        return ycbcr_to_rgb(s, self.spec.colour)

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


class PostFilter(nn.Module):
    """The hybrid's post filter (format version 7, :mod:`codec.postfilter`): the correction
    ``P(y) = W2 * relu(W1 * y + b1) + b2`` of a ``(B, C, H, W)`` YCbCr rendering ``y`` (3x3
    convolutions, edges replicated); ``W2`` and ``b2`` start at zero, so a new filter is the identity.
    ``inputs``: the input channels when the filter reads other features than ``y`` (default
    ``channels``; format v7 codes only that)."""

    def __init__(self, channels: int, hidden: int, inputs: int | None = None) -> None:
        super().__init__()
        k = POST_KERNEL
        self.conv1 = nn.Conv2d(channels if inputs is None else inputs, hidden, k, padding=k // 2,
                               padding_mode="replicate")
        self.conv2 = nn.Conv2d(hidden, channels, k, padding=k // 2, padding_mode="replicate")
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(y)))

    def coded_tensors(self) -> list[torch.Tensor]:
        """The parameters in the order format v7 codes them: ``[W1, b1, W2, b2]``."""
        return [self.conv1.weight, self.conv1.bias, self.conv2.weight, self.conv2.bias]

    def load_coded_tensors(self, tensors) -> None:
        """Inverse of :meth:`coded_tensors`: each of ``tensors`` (arrays, tensors or flat sequences of
        the same sizes, e.g. :func:`codec.postfilter.weights`) copied in as float32."""
        with torch.no_grad():
            for prm, t in zip(self.coded_tensors(), tensors):
                prm.copy_(torch.as_tensor(np.asarray(t, dtype=np.float32)).reshape(prm.shape))
