"""Rate-distortion-optimised quantization of the hybrid model's latents.

The hybrid's synthesis is linear in its latents (interpolation, a sum, a colour matrix), so the
change of the squared error when one integer latent ``q`` of plane ``(l, c)`` with step ``Delta``
moves by ``delta`` is exact::

    dD = 2 delta g + delta^2 h,     g = Delta * (S_l^T (M^T e)_c)(i, j),
                                    h = Delta^2 (M^T M)_cc * sum_p S_l(p, (i, j))^2

where ``e`` is the RGB error image, ``M`` the YCbCr -> RGB matrix and ``S_l`` the level's sampling
operator (:func:`codec.models.sampling_matrix`, separable).  The rate change ``dR`` comes from the
context model (:mod:`codec.context`): in context class ``b``, ``|q| = k >= 1`` costs
``f_b + (k - 1) m_b`` bits more than 0 (:func:`codec.entropy.rate_terms`), under the prediction
weight the coder will choose; since 0.19 it also includes what the move costs the value's children,
whose context classes read its magnitude (:class:`_ContextEffect`: the context-dependent rate that
HEVC's RDOQ estimates for its significance flags, here exact for one move).  Iterated
conditional modes (Besag 1986) then lowers ``J = D + lambda R`` plane by plane, coarse to fine, trying
``q - 1``, ``q + 1``, ``0`` and (non-anchors) the prediction of :func:`codec.context.predict` for every value; values on the same parity class (``i mod 2``,
``j mod 2``) are updated together, since their kernels barely overlap, and the error image is
updated after each class.  This is the trellis-free form of RDOQ in video coders (e.g. H.264's
JM/HM "RDOQ" and zero-block decisions) applied to an overcomplete pyramid: besides zeroing values
that cost more bits than they are worth, it corrects the analytic fill's projection error, which
is where most of its gain comes from (kodim23: +1.0 dB at 5 % lower rate after four sweeps).
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from . import bitstream, color, context, entropy, quant
from .models import PyramidSpec, sampling_matrix

UNUSED_CLASS_BITS = 16.0  # rate slope assumed for a class with no distribution yet


@dataclass(frozen=True)
class RdoqResult:
    codes: list[list[np.ndarray]]
    sweeps: int
    changed: list[int]  # values changed per sweep
    stopped: bool = False  # the deadline ended the sweeps (not their number, nor convergence)


def colour_matrix(channels: int, device: torch.device | str | None = None, word: int = 0) -> torch.Tensor:
    """``M`` with ``rgb = M (ycc - centre)`` for the first three channels, identity elsewhere
    (``word``: the colour word, :func:`codec.color.matrices`; 0 is JFIF YCbCr)."""
    m = torch.eye(channels)
    if channels >= 3:
        m[:3, :3] = torch.from_numpy(color.matrices(word)[1].copy())
    return m.to(device)


def colour_weights(channels: int, word: int = 0) -> torch.Tensor:
    """Each channel's weight in the RGB squared error, the diagonal of ``M^T M`` (CPU)."""
    m = colour_matrix(channels, None, word)
    return torch.diagonal(m.T @ m)


def colour_centre(channels: int, device: torch.device | str | None = None, word: int = 0) -> torch.Tensor:
    c = torch.zeros(channels)
    if channels >= 3:
        c[:3] = torch.from_numpy(color.matrices(word)[2].copy())
    return c.to(device)


class LevelSampler:
    """``up(g) = S_y g S_x^T`` and its adjoint for one level, with sparse CSR matrices.

    A level of the image's size (level 0 at native size) is sampled by the identity: Keys' kernel is
    1 at 0 and 0 at the other taps, so every method returns (a copy of) its input there.

    ``device``: where the matrices live and the products run (the encoder's torch device; CPU by
    default).  The matrices are built on the CPU and moved, so they are the same on every device."""

    def __init__(self, height: int, width: int, shape: tuple[int, int], kernel: str,
                 device: torch.device | str | None = None) -> None:
        sy = sampling_matrix(height, shape[0], kernel)
        sx = sampling_matrix(width, shape[1], kernel)
        self.device = torch.device(device if device is not None else "cpu")
        self.sy, self.sx = sy.to(self.device), sx.to(self.device)
        self.syt = sy.to_sparse_coo().t().coalesce().to_sparse_csr().to(self.device)
        self.sxt = sx.to_sparse_coo().t().coalesce().to_sparse_csr().to(self.device)
        self.energy = torch.outer(self._col_sq(sy, shape[0]), self._col_sq(sx, shape[1])).to(self.device)
        self.native = sy.shape[0] == sy.shape[1] and sx.shape[0] == sx.shape[1]

    @staticmethod
    def _col_sq(m: torch.Tensor, n: int) -> torch.Tensor:
        coo = m.to_sparse_coo().coalesce()
        return torch.zeros(n).index_add_(0, coo.indices()[1], coo.values() ** 2)

    def up(self, g: torch.Tensor) -> torch.Tensor:
        if self.native:
            return g.clone()
        return (self.sx @ (self.sy @ g).T.contiguous()).T

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        if self.native:
            return r.clone()
        return (self.sxt @ (self.syt @ r).T.contiguous()).T

    @functools.cached_property
    def axis_grams(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-axis Gram matrices ``G = S^T S`` (float64, dense; banded), ``(G_y, G_x)``."""
        return tuple(axis_gram(m) for m in (self.sy, self.sx))

    @functools.cached_property
    def _sparse_grams(self) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple((m.T @ m).to_sparse_csr() for m in (self.sy.to_dense(), self.sx.to_dense()))

    def gram(self, g: torch.Tensor) -> torch.Tensor:
        """``S^T S g`` for one ``(h_l, w_l)`` grid: ``G_y g G_x^T`` with the banded per-axis Gram
        matrices, at the level's resolution."""
        if self.native:
            return g.clone()
        gy, gx = self._sparse_grams
        return (gx @ (gy @ g).T.contiguous()).T

    def up_stack(self, g: torch.Tensor) -> torch.Tensor:
        """:meth:`up` of every channel of ``g`` ``(C, h_l, w_l)`` at once: ``(C, H, W)``."""
        if self.native:
            return g.clone()
        return _from_wt(self.up_stack_wt(g), g.shape[0])

    def up_stack_wt(self, g: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`up_stack` in the layout its product comes in, contiguous ``(W, C*H)``:
        ``up_stack(g) == up_stack_wt(g).T.reshape(C, H, W)``.  Summing levels in this layout reads
        memory in order (the ``(C, H, W)`` views are strided: summing them at full resolution cost
        3.6 times as long on a 1536x1024 image, a fifth of the whole ``fast`` encode).

        ``out``: a ``(W, C*H)`` sum to add this level to, in place, and return.  On the CPU the
        second product then adds into it (``addmm_``) instead of writing a full-size result first:
        the same sums, bit for bit, and on a 768x512 image the eight levels' sum in 8.5 ms instead
        of 15.7 ms (0.15.7: one full-size allocation and pass over memory less per level)."""
        c, hl, wl = g.shape
        if self.native:
            t = g.permute(2, 0, 1).reshape(wl, c * hl)
            return t.contiguous() if out is None else out.add_(t)
        a = (self.sy @ g.permute(1, 0, 2).reshape(hl, c * wl)).reshape(-1, c, wl)  # (H, C, w_l)
        a = a.permute(2, 1, 0).reshape(wl, -1)  # (w_l, C*H), one copy
        if out is None:
            return self.sx @ a
        if out.device.type == "cpu":
            return out.addmm_(self.sx, a)
        return out.add_(self.sx @ a)  # (a sparse addmm_ elsewhere is untried)

    def adjoint_stack(self, r: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`adjoint` of every channel of ``r`` ``(C, H, W)`` at once: ``(C, h_l, w_l)``.
        ``rows``: ``r.permute(1, 0, 2).reshape(H, C*W)``, if the caller has it (one copy of ``r`` for
        all the levels instead of one per level)."""
        if self.native:
            return r.clone()
        c, h, w = r.shape
        if rows is None:
            rows = r.permute(1, 0, 2).reshape(h, c * w)
        a = (self.syt @ rows).reshape(-1, c, w)  # (h_l, C, W)
        hl = a.shape[0]
        return (self.sxt @ a.permute(2, 1, 0).reshape(w, c * hl)).T.reshape(c, hl, -1)  # (W, C*h_l): one copy


    def channel(self, ch: int) -> LevelSampler:
        """The sampler of one channel (all channels share it)."""
        return self


def axis_gram(m: torch.Tensor) -> np.ndarray:
    """``G = S^T S`` (float64, dense ``(n_in, n_in)``) of one axis's sparse CSR sampling matrix ``S``,
    as a sparse product: each row of ``S`` has at most four nonzeros (the kernel's taps), so this is
    ``O(16 n_out)`` work where the dense product of ``S^T`` and ``S`` was ``O(n_out n_in^2)``: 1.8 s
    of float64 matrix products for the three filtered levels of a 4000x3000 image before 0.15.8,
    1.3 s of it for level 0, whose ``G`` is the identity (:func:`filtered_energy` no longer forms
    that one).  The products of two float32 values are exact in float64, so only the order of their
    (few) sums can differ from the dense product's."""
    s = m.to_sparse_coo().double()
    return torch.sparse.mm(s.t(), s).to_dense().cpu().numpy()


def _gram_shifts(g: np.ndarray, radius: int) -> np.ndarray:
    """``A[t, u, i] = G[i + t - R, i + u - R]`` (0 where an index leaves the grid) for the ``(n, n)``
    Gram matrix ``G`` of one axis and ``t, u`` in ``0..2R``."""
    n = g.shape[0]
    off = np.arange(-radius, radius + 1)
    i = np.arange(n)
    a = i[None, :] + off[:, None]  # (T, n)
    ok = (a >= 0) & (a < n)
    ac = np.clip(a, 0, n - 1)
    out = g[ac[:, None, :], ac[None, :, :]]  # (T, T, n)
    return np.where(ok[:, None, :] & ok[None, :, :], out, 0.0)


def _identity_shifts(n: int, radius: int) -> np.ndarray:
    """:func:`_gram_shifts` of the ``(n, n)`` identity: ``A[t, u, i] = 1`` where ``t = u`` and
    ``0 <= i + t - R < n``, else 0."""
    t = 2 * radius + 1
    i = np.arange(n)
    out = np.zeros((t, t, n))
    for a in range(t):
        out[a, a] = ((i + a - radius >= 0) & (i + a - radius < n)).astype(np.float64)
    return out


def filtered_energy(base: LevelSampler, k: np.ndarray) -> torch.Tensor:
    """Column energies ``||S (K * e_ij)||^2`` of a level sampled by ``base`` behind the filter ``k``.

    With ``S = S_y (.) S_x^T`` separable and ``K`` supported on offsets ``|t| <= R``::

        E[i, j] = sum_{t, u} K[t] K[u] G_y[i + t_y, i + u_y] G_x[j + t_x, j + u_x],   G = S^T S

    (the Gram matrices are banded and at most ``W x W``; terms outside the grid vanish)."""
    r = k.shape[0] // 2
    kk = np.asarray(k, dtype=np.float64)
    if base.native:  # G = I: the shifts without forming the (n, n) identities (128 MB at 4000 wide)
        ay, ax = (_identity_shifts(n, r) for n in (base.sy.shape[1], base.sx.shape[1]))
    else:
        ay, ax = (_gram_shifts(g, r) for g in base.axis_grams)
    bx = np.einsum("ax,by,xyw->abw", kk, kk, ax)
    t = 2 * r + 1
    return torch.from_numpy(ay.reshape(t * t, -1).T @ bx.reshape(t * t, -1)).float()


class FilteredSampler:
    """A level behind its channels' level filters (:mod:`codec.finefilter`): ``up(g) = S (K_c * g)``.

    The filter is point symmetric with zero padding, so it is its own adjoint and the adjoint is
    ``K_c * (S^T r)``; column energies come from :func:`filtered_energy`, computed when first asked
    for (rendering alone does not need them).  ``kernels[c]`` is channel ``c``'s float32 kernel,
    ``None`` for no filter."""

    def __init__(self, base: LevelSampler, kernels: list[np.ndarray | None]) -> None:
        self.base = base
        self.native = base.native
        self.device = base.device
        self.kernels = [None if k is None else torch.from_numpy(np.asarray(k, dtype=np.float32)).to(self.device)
                        for k in kernels]

    @functools.cached_property
    def energies(self) -> list[torch.Tensor]:
        return [self.base.energy if k is None else filtered_energy(self.base, k.cpu().numpy()).to(self.device)
                for k in self.kernels]

    @functools.cached_property
    def energy(self) -> torch.Tensor:
        return torch.stack(self.energies).amax(0)

    def _filter(self, g: torch.Tensor, ch: int) -> torch.Tensor:
        k = self.kernels[ch]
        if k is None:
            return g
        return torch.nn.functional.conv2d(g[None, None], k[None, None], padding=k.shape[0] // 2)[0, 0]

    def _filter_stack(self, g: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._filter(g[ch], ch) for ch in range(g.shape[0])])

    def up_stack(self, g: torch.Tensor) -> torch.Tensor:
        return self.base.up_stack(self._filter_stack(g))

    def up_stack_wt(self, g: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return self.base.up_stack_wt(self._filter_stack(g), out)

    def adjoint_stack(self, r: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        return self._filter_stack(self.base.adjoint_stack(r, rows))

    def channel(self, ch: int) -> _FilteredChannel:
        return _FilteredChannel(self, ch)


class _FilteredChannel:
    """One channel of a :class:`FilteredSampler` (what :func:`optimise` needs of a sampler)."""

    def __init__(self, parent: FilteredSampler, ch: int) -> None:
        self.parent, self.ch = parent, ch
        self.energy = parent.energies[ch]

    def up(self, g: torch.Tensor) -> torch.Tensor:
        return self.parent.base.up(self.parent._filter(g, self.ch))

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        return self.parent._filter(self.parent.base.adjoint(r), self.ch)


def with_filters(samplers: list[LevelSampler], kernels: list[list[np.ndarray | None]]) -> list:
    """``samplers`` with level ``l`` behind ``kernels[l]`` (per channel; levels beyond ``kernels``
    and levels without any filter unchanged)."""
    out = list(samplers)
    for lv, ks in enumerate(kernels):
        if any(k is not None for k in ks):
            out[lv] = FilteredSampler(samplers[lv], ks)
    return out


def _from_wt(t: torch.Tensor, channels: int) -> torch.Tensor:
    """A ``(W, C*H)`` result of :meth:`LevelSampler.up_stack_wt` as the ``(C, H, W)`` view."""
    return t.T.reshape(channels, t.shape[1] // channels, -1)


def sum_levels(samplers: list, grids: Iterable[torch.Tensor | None], shape: tuple[int, int, int]) -> torch.Tensor:
    """``sum_l up_stack_l(grids[l])`` ``(C, H, W)`` (levels whose grid is ``None`` left out), added in
    level order in the ``(W, C*H)`` layout of :meth:`LevelSampler.up_stack_wt`, which reads memory in
    order; returned as a (strided) view of that sum, on the samplers' device."""
    acc = None
    for smp, g in zip(samplers, grids):
        if g is not None:
            acc = smp.up_stack_wt(g, acc)
    return torch.zeros(shape, device=samplers[0].device) if acc is None else _from_wt(acc, shape[0])


def reconstruct(codes: list[list[np.ndarray]], steps: list[float], samplers: list[LevelSampler],
                shape: tuple[int, int, int]) -> torch.Tensor:
    """The decoder's YCbCr image ``(C, H, W)`` at native size, through the sampling matrices
    (contiguous: RDOQ updates it in place; on the samplers' device)."""
    c = shape[0]
    dev = samplers[0].device
    grids = [torch.stack([torch.from_numpy(codes[lv][ch]).float() * steps[lv * c + ch] for ch in range(c)]).to(dev)
             if any(p.any() for p in codes[lv]) else None for lv in range(len(samplers))]
    return sum_levels(samplers, grids, shape).contiguous()


def _symbol_bits(v: torch.Tensor, pred: torch.Tensor, first: torch.Tensor, more: torch.Tensor,
                 pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Bits of coding ``v`` as the symbol ``v - pred``, minus the bits of the symbol 0; ``first``
    includes one bit of sign, ``pos``/``neg`` are what a positive/negative sign costs beyond it
    under the plane's sign contexts (:func:`codec.context.sign_classes`)."""
    d = v - pred
    a = d.abs()
    return torch.where(a > 0, first + more * (a - 1) + torch.where(d > 0, pos, neg), torch.zeros_like(a))


def _current_terms(model: _PlaneModel, q: np.ndarray, signs: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """``first, more, pos, neg`` (:func:`_rate_terms`, :func:`_sign_terms`) of the plane of ``model``
    whose values are now ``q``, under the distributions and sign probabilities ``signs`` fitted at
    the start of its turn: once an anchor phase has moved values, the non-anchors' classes
    (``N(n)``) and sign contexts (the sign of the anchors' sum) are those of the moved anchors (0.20)."""
    anc = context.anchors(q.shape)
    cls = context.full_classes(model.base, q)
    scls = context._full_signs(model.plain, context._anchor_sum(q, anc), anc, model.chroma)
    return (*_rate_terms(cls, model.dists), *_sign_terms(signs, scls, q.shape))


def _plane_signs(model: _PlaneModel) -> tuple[int, ...]:
    """The sign probability indices :func:`codec.context.choose_signs` picks for the plane of
    ``model`` (``()``: every sign at 1/2)."""
    return context.choose_signs(model.sym, model.scls, bitstream.sign_contexts(context.FULL, model.chroma))[0]


def _sign_costs(codes: list[list[np.ndarray]], lv: int, ch: int, sym: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per value, the bits of a positive and of a negative sign minus one, under the sign
    probabilities :func:`codec.context.choose_signs` picks for the current plane (zeros when it
    codes the signs at 1/2)."""
    scls = context.sign_classes(codes, lv, ch, context.FULL)
    return _sign_terms(context.choose_signs(sym, scls, bitstream.sign_contexts(context.FULL, ch > 0))[0], scls, sym.shape)


def _sign_terms(signs: tuple[int, ...], scls: np.ndarray, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_sign_costs` from the plane's sign probability indices and sign contexts."""
    if not signs:
        z = torch.zeros(shape)
        return z, z
    p = entropy.SIGN_P[np.asarray(signs)][scls]
    return (torch.from_numpy(-np.log2(p) - 1.0).float(), torch.from_numpy(-np.log2(1.0 - p) - 1.0).float())


JOINT_TRIES = 4  # halvings of a class's move set before it is given up for this sweep


def _joint_move(smp, best_d: torch.Tensor, best_dj: torch.Tensor, hs: torch.Tensor,
                sub: tuple[slice, slice], qt: torch.Tensor, step: float,
                mtm: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The moves of one parity class that are applied together: ``(delta plane, its rendering)``,
    or ``(None, None)``.

    Each value's ``dJ`` is exact alone, but values of one class move together, and their atoms
    overlap (a little for bicubic bumps 2 cells apart; much more behind a level filter of radius 3),
    so the joint change of the error is ``sum 2 delta g + mtm ||S delta||^2``, not
    ``sum (2 delta g + delta^2 h)``.  The joint ``dJ`` is computed from the rendered move; while it
    is not negative, only the better half of the moves (by their own ``dJ``) is kept, at most
    :data:`JOINT_TRIES` times.  So no class update raises ``D + lambda R`` (with the plane's rate
    model), which plain Jacobi-style updates can do, and do diverge, behind strong filters."""
    accept = best_d != 0
    for _ in range(JOINT_TRIES):
        if not bool(accept.any()):
            return None, None
        d = torch.where(accept, best_d, torch.zeros_like(best_d))
        delta = torch.zeros_like(qt)
        delta[sub] = d
        dy = smp.up(delta * step)
        own = torch.where(accept, best_dj - d * d * hs, torch.zeros_like(best_dj))
        if float(own.sum()) + mtm * float((dy * dy).sum()) < 0:
            return delta, dy
        accept = accept & (best_dj < torch.median(best_dj[accept]))
    return None, None


def samplers_for(spec: PyramidSpec, device: torch.device | str | None = None) -> list[LevelSampler]:
    """One :class:`LevelSampler` per level of ``spec`` at its native size (they depend on ``spec``
    only), on ``device`` (CPU by default)."""
    return [LevelSampler(spec.height, spec.width, s, spec.kernel, device) for s in spec.level_shapes()]


def plane_rate_terms(codes: list[list[np.ndarray]], lv: int, ch: int,
                     near: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int, np.ndarray]:
    """How the context model prices plane ``(lv, ch)`` of ``codes`` now: per value the bits of a
    first magnitude step (one sign bit included) and of each further one, ``first`` and ``more``
    (from the distributions :func:`codec.context.fit_dists` fits to the plane's classes), and the
    plane's non-anchor prediction weight and its coded symbols (:func:`codec.context.symbols`).
    The weight is the one the coder chooses for the plane as it is, by code length
    (:func:`codec.context.best_weight`; before 0.19 RDOQ priced with the L1 proxy's,
    :func:`codec.context.choose_weight`); ``near``: the plane's weight at the previous sweep, if
    any, to try only the weights within :data:`WEIGHT_REACH` of it (a sweep moves it by a step
    or two, if at all)."""
    m = _plane_model(codes, lv, ch, near)
    return (*_rate_terms(m.cls, m.dists), m.weight, m.sym)


class _PlaneModel(NamedTuple):
    """How the context model sees a plane at the start of its RDOQ turn, formed once and shared by
    its rate terms, its sign terms, their refresh after an anchor phase (:func:`_current_terms`)
    and the neighbours' cost (:class:`_NeighbourEffect`)."""

    base: np.ndarray  # the anchor classes, from the parent and luma planes (:func:`codec.context.plane_base`)
    plain: np.ndarray  # the sign contexts before the non-anchors' neighbour sign (mode ACTIVITY's)
    cls: np.ndarray  # the FULL classes
    scls: np.ndarray  # the FULL sign contexts
    chroma: bool
    weight: int  # the coder's prediction weight
    sym: np.ndarray  # the coded symbols under that weight
    dists: list[tuple[int, int] | None]  # :func:`codec.context.fit_dists` of the symbols


def _plane_model(codes: list[list[np.ndarray]], lv: int, ch: int, near: int | None = None) -> _PlaneModel:
    """Plane ``(lv, ch)``'s :class:`_PlaneModel`: its classes and sign contexts, the coder's prediction
    weight (see :func:`plane_rate_terms`), its symbols and the distributions fitted to them."""
    q = codes[lv][ch]
    base = context.plane_base(codes, lv, ch)
    plain = context.sign_classes(codes, lv, ch, context.ACTIVITY)
    anc = context.anchors(q.shape)
    s = context._anchor_sum(q, anc)
    cls = context.full_classes(base, q)
    scls = context._full_signs(plain, s, anc, ch > 0)
    weights = None if near is None else range(max(0, near - WEIGHT_REACH), min(1 << context.WEIGHT_BITS, near + WEIGHT_REACH + 1))
    weight = context.best_weight(q, s, anc, cls, scls, bitstream.sign_contexts(context.FULL, ch > 0), weights)
    sym = context.symbols(q, context.FULL, weight, s)
    dists, _ = context.fit_dists(sym, cls, int(np.abs(sym).max()))
    return _PlaneModel(base, plain, cls, scls, ch > 0, weight, sym, dists)


def _rate_terms(cls: np.ndarray, dists: list[tuple[int, int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per value of classes ``cls``, the bits of a first magnitude step and of each further one
    under ``dists`` (:func:`codec.entropy.rate_terms`)."""
    terms = torch.tensor([entropy.rate_terms(int(entropy.THETAS[d[0]]), int(entropy.THETAS[d[1]]))
                          if d is not None else (UNUSED_CLASS_BITS, UNUSED_CLASS_BITS) for d in dists],
                         dtype=torch.float32)
    cls_t = torch.from_numpy(cls.astype(np.int64))  # the classes are int8, which torch does not index with
    return terms[cls_t, 0], terms[cls_t, 1]


_A_TOP = int(context.EDGES[-1]) + 1  # activities above this one move in no bin by one unit either way


def _bins(a: np.ndarray, k: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """The anchor bins (:mod:`codec.context`) of activities ``a`` and ``a + k`` (int64)."""
    top = _A_TOP - 1
    return context._BIN[np.minimum(a, top)].astype(np.int64), context._BIN[np.clip(a + k, 0, top)].astype(np.int64)


def _zero_index(kind: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Index of a zero's change of bits from bin ``old`` to ``new`` in :attr:`_BinCosts.zero_flat`."""
    return (kind * context.N_ANCHOR + old) * context.N_ANCHOR + new


def _class_terms(dists: list[tuple[int, int] | None], kmax: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class of ``dists`` (magnitudes up to ``kmax``): a zero's bits ``log2 Z``, and what a
    non-zero of magnitude ``m`` adds to them, ``first + (m - 1) more`` with ``first = -log2 rho'``
    and ``more = -log2 theta'``, one bit of sign at 1/2 included (the factor 2 of
    :func:`codec.entropy.magnitude_table`); 0 for a class without a distribution."""
    log_z = entropy._two_ratio_log_norm(max(kmax, 1))
    return (np.array([log_z[d[0], d[1]] if d is not None else 0.0 for d in dists]),
            np.array([-entropy._LOG2_THETAS[d[0]] if d is not None else 0.0 for d in dists]),
            np.array([-entropy._LOG2_THETAS[d[1]] if d is not None else 0.0 for d in dists]))


PAD_KIND = 1 + len(context.EDGES_N)  # a kind no value has, whose every change of bits is 0 (padding)


class _BinCosts:
    """The bits of every value of plane ``(lv, ch)`` as a function of its activity bin (the anchor
    class ``b``, :mod:`codec.context`), its symbols (prediction ``weight``) and its non-anchors'
    neighbour bins held as they are, under the distributions fitted to the plane's classes now:
    :meth:`change` is what moving values from one bin to another costs.  Since format version 9
    every class of a plane with values has a distribution; a plane without values has none, and
    every move in it is priced at 0.

    A zero's change depends only on its *kind* (an anchor, or a non-anchor of one of the neighbour
    bins) and the two bins; a non-zero of magnitude ``m`` adds ``-log2 rho' - (m - 1) log2 theta'``
    under each class (``log2 Z`` is the zero's part).  Kind :data:`PAD_KIND` is a padding cell's."""

    def __init__(self, codes: list[list[np.ndarray]], lv: int, ch: int, weight: int) -> None:
        x = codes[lv][ch]
        cls = context.full_classes(context.plane_base(codes, lv, ch), x).astype(np.int64)
        mag = np.abs(context.symbols(x, context.FULL, weight))
        kmax = int(mag.max())
        dists = context.fit_dists(mag, cls, kmax)[0]  # all None when kmax is 0
        self.z, self.first, self.more = _class_terms(dists, kmax)
        n_n = len(context.EDGES_N)
        anc = context.anchors(x.shape)
        # kind 0: an anchor (class b); kind 1 + N: a non-anchor of neighbour bin N (class 8 + 4 min(b, 4) + N)
        self.kind = np.where(anc, 0, 1 + (cls - context.N_ANCHOR) % n_n).astype(np.int64)
        b = np.arange(context.N_ANCHOR)
        self.cls_of = np.vstack([b] + [context.N_ANCHOR + n_n * np.minimum(b, 4) + nb for nb in range(n_n)])
        # a zero's change of bits depends on its kind and the two bins only: [kind, old, new], PAD_KIND's 0
        c_old, c_new = self.cls_of[:, :, None], self.cls_of[:, None, :]
        zero = self.z[c_new] - self.z[c_old]
        self.zero_flat = np.concatenate([zero.ravel(), np.zeros(context.N_ANCHOR ** 2)])
        self.mag = mag
        self.nonzero = np.flatnonzero(mag)
        self.nz_mag = mag.ravel()[self.nonzero]
        self.nz_kind = self.kind.ravel()[self.nonzero]
        # per activity, clipped to _A_TOP: an index into the tables of :meth:`by_activity`
        self.kind_off = self.kind.astype(np.intp) * (_A_TOP + 1)  # intp: np.take converts any other index type

    def change(self, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        """Bits gained by every value of the plane moving from anchor bin ``old`` to ``new``
        (arrays shaped as the plane)."""
        return self.change_of(self.kind, old, new, self.mag)

    def change_of(self, kind: np.ndarray, old: np.ndarray, new: np.ndarray, mag: np.ndarray) -> np.ndarray:
        """Bits gained by values of kinds ``kind`` and symbol magnitudes ``mag`` moving from anchor
        bins ``old`` to ``new`` (float64, shaped as the arguments)."""
        out = self.zero_flat.take(_zero_index(kind, old, new))
        nz = mag != 0
        if nz.any():
            out[nz] += self._nonzero_change(kind[nz], old[nz], new[nz], mag[nz])
        return out

    def by_activity(self, k: int) -> np.ndarray:
        """A zero's change of bits when its activity ``a`` moves by ``k``, indexed by
        ``kind_off + min(a, _A_TOP)``."""
        old, new = _bins(np.arange(_A_TOP + 1), k)
        return self.zero_flat.take(_zero_index(np.arange(PAD_KIND)[:, None], old, new)).ravel()

    def _nonzero_change(self, kind: np.ndarray, old: np.ndarray, new: np.ndarray, mag: np.ndarray) -> np.ndarray:
        """What a non-zero symbol of magnitude ``mag`` adds to a zero's change of bits: ``log2 Z`` is
        in the zero part, a non-zero adds ``-log2 rho' - (|s| - 1) log2 theta'`` under each class."""
        co, cn = self.cls_of[kind, old], self.cls_of[kind, new]
        return (self.first[cn] - self.first[co]) + (mag - 1) * (self.more[cn] - self.more[co])


class _ContextEffect:
    """What a change of the magnitudes of plane ``(lv, ch)`` costs its children, the plane of level
    ``lv - 1`` and the same channel, whose context classes read it (:mod:`codec.context`: a
    value's activity sums the magnitudes of the 3x3 parents around its own parent).  RDOQ's own
    rate term sees only a value's own bits, so without this a lone non-zero coarse value looks
    cheaper than it is: it moves its 36 children into a busier class, where their zeros cost more.
    The children's values and symbols are held fixed, their bits under each activity bin come from
    :class:`_BinCosts`.  (Luma's magnitude also enters the class of the chroma values beside it;
    pricing that alone changed ``fast``'s D + lambda R by 0.00 to -0.06 % on four Kodak files, for
    another pass over two chroma planes per luma plane, so it is not priced.)

    A parent at ``(i, j)`` reaches the children whose own parent is within one cell of it, so when
    every parent's magnitude moves by the same ``k`` the children's change of bits, summed over each
    child's 2x2 block and box-summed over 3x3 parents, is every parent's cost of that move: the
    moves by one, most of them, are priced for the whole plane once per parity phase, the few larger
    ones child by child.  A zero child's change is a lookup in a table over its kind and activity
    (:meth:`_BinCosts.by_activity`, one per ``k``), the few non-zero children's are added apart."""

    def __init__(self, codes: list[list[np.ndarray]], lv: int, ch: int, weights: dict[tuple[int, int], int]) -> None:
        x = codes[lv - 1][ch]
        weight = weights[(lv - 1, ch)] if (lv - 1, ch) in weights else context.choose_weight(x)
        self.tab = _BinCosts(codes, lv - 1, ch, weight)
        # the children's activity apart from this plane's part (luma's, for chroma)
        self.rest = context.activity(x.shape, None, codes[lv - 1][0] if ch > 0 else None)
        self.child = x.shape
        self.tables: dict[int, np.ndarray] = {}
        # for :meth:`_children_at`: the children's kinds, magnitudes and (per phase) activities on a
        # grid padded by 2 cells before and up to 3 after, so that every parent's 6x6 children are
        # one window; a padding cell is of PAD_KIND.  The activities are formed in place (``a``).
        hp, wp = codes[lv][ch].shape
        self.pad_w = 2 * wp + 4
        hc, wc = x.shape
        inner = (slice(2, 2 + hc), slice(2, 2 + wc))
        self.pad_kind = np.full((2 * hp + 4, self.pad_w), PAD_KIND, dtype=np.int8)  # small: a 12 Mpixel plane's copies
        self.pad_kind[inner] = self.tab.kind
        self.pad_mag = np.zeros(self.pad_kind.shape, dtype=np.int32)  # |symbol| <= 2 entropy.MAX_K
        self.pad_mag[inner] = self.tab.mag
        self.pad_a = np.zeros(self.pad_kind.shape, dtype=np.int32)
        self.a = self.pad_a[inner]
        self.nz_pad = np.ravel_multi_index(np.unravel_index(self.tab.nonzero, x.shape), self.pad_a.shape) + 2 * self.pad_w + 2
        self.window = (np.arange(6)[:, None] * self.pad_w + np.arange(6)[None, :]).ravel()

    def start_phase(self, q: np.ndarray) -> None:
        """The plane's current values (before a parity phase's moves)."""
        self.q_abs = np.abs(q).astype(np.int32)
        self.parent_shape = q.shape
        self.by_k: dict[int, np.ndarray] = {}
        np.add(self.rest, context._up2(context._box3(self.q_abs), self.child), out=self.a)
        self.a_idx = self.tab.kind_off + np.minimum(self.a, _A_TOP)
        self.nz_a = self.pad_a.ravel()[self.nz_pad]

    def _table(self, k: int) -> np.ndarray:
        if k not in self.tables:
            self.tables[k] = self.tab.by_activity(k)
        return self.tables[k]

    def _children(self, k: int) -> np.ndarray:
        """Every parent's change of its children's bits if its magnitude moved by ``k`` = +-1 (parent
        grid; the activity tables stop one unit above the last bin's edge)."""
        if abs(k) != 1:
            raise ValueError(f"_children prices moves by one unit, not {k}")
        if k not in self.by_k:
            g = self._table(k).take(self.a_idx)
            if self.tab.nonzero.size:
                g.reshape(-1)[self.tab.nonzero] += self.tab._nonzero_change(self.tab.nz_kind, *_bins(self.nz_a, k),
                                                                           self.tab.nz_mag)
            hp, wp = self.parent_shape
            if g.shape != (2 * hp, 2 * wp):
                pooled = np.zeros((2 * hp, 2 * wp), dtype=np.float64)
                pooled[: g.shape[0], : g.shape[1]] = g
                g = pooled
            b = g.reshape(hp, 2, wp, 2)  # each child's 2x2 block, summed as sum(axis=(1, 3)) sums it, 8 times faster
            self.by_k[k] = context._box3((b[:, 0, :, 0] + b[:, 0, :, 1]) + (b[:, 1, :, 0] + b[:, 1, :, 1]))
        return self.by_k[k]

    def _children_at(self, rows: np.ndarray, cols: np.ndarray, k: np.ndarray) -> np.ndarray:
        """:meth:`_children` of the parents at ``(rows, cols)``, each moved by its own ``k``
        (the 36 children of each gathered directly: for the few moves by more than one)."""
        at = (2 * rows * self.pad_w + 2 * cols)[:, None] + self.window[None, :]  # (parents, 36 children)
        kind = self.pad_kind.ravel()[at].astype(np.int64)
        return self.tab.change_of(kind, *_bins(self.pad_a.ravel()[at], k[:, None]), self.pad_mag.ravel()[at]).sum(axis=1)

    def cost(self, sub: tuple[slice, slice], new_abs: np.ndarray) -> np.ndarray:
        """Bits the children gain (positive) or lose if the values at ``sub`` of the plane took
        magnitudes ``new_abs`` one at a time (float32, shaped as ``new_abs``)."""
        d = new_abs.astype(np.int32) - self.q_abs[sub]
        out = np.zeros(d.shape, dtype=np.float64)
        for k in (-1, 1):
            at = d == k
            if at.any():
                out[at] = self._children(k)[sub][at]
        far = np.abs(d) > 1
        if far.any():
            r, c = np.nonzero(far)
            out[far] = self._children_at(sub[0].start + 2 * r, sub[1].start + 2 * c, d[far])
        return out.astype(np.float32)


def _with_children(v: torch.Tensor, own: Callable[[torch.Tensor], torch.Tensor], effect: _ContextEffect,
                   sub: tuple[slice, slice]) -> torch.Tensor:
    """``own(v)`` (a value's own bits at ``v``) plus what ``v`` would cost its children."""
    return own(v) + torch.from_numpy(effect.cost(sub, v.abs().to(torch.int64).cpu().numpy())).to(v.device)


_CROSS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # an anchor's four non-anchor neighbours


class _NeighbourEffect:
    """What a change of an anchor value costs the four non-anchor values beside it, in its own
    plane (:mod:`codec.context`, FULL rule): a non-anchor's class reads the magnitudes of its four
    anchor neighbours (``N(n)``), its coded symbol is its value minus their weighted mean
    (:func:`codec.context.predict`), and its sign context reads the sign of their sum.  So a lone
    non-zero anchor moves four zeros into a busier class, and a large one can turn their symbols
    non-zero.  RDOQ's own rate term sees only the anchor's bits; this adds, for every candidate
    value of every anchor of a parity phase (one at a time), the neighbours' change of bits with
    their values, the plane's distributions, its prediction weight and its sign probabilities held
    as they are (every class of a plane with values has a distribution, format version 9).  The
    same idea across levels is :class:`_ContextEffect`.

    ``model``, ``signs``: the plane as RDOQ's own rate terms see it (:func:`_plane_model`) and its
    sign probabilities (:func:`_plane_signs`)."""

    def __init__(self, model: _PlaneModel, signs: tuple[int, ...]) -> None:
        self.active = model.dists[0] is not None and model.sym.size > 1
        self.weight = model.weight
        self.anc = context.anchors(model.sym.shape)
        # per class: log2 Z (a zero's bits), and a non-zero's bits beyond them, first and further units
        self.z, self.first, self.more = _class_terms(model.dists, int(np.abs(model.sym).max()))
        pad = functools.partial(np.pad, pad_width=1)
        # per value (padded by one cell: a padding cell is no neighbour): whether it is a non-anchor,
        # its class before the neighbour bin (8 + 4 min(A, 4)) and its sign context before the
        # neighbours' sign
        self.valid = pad(~self.anc)
        self.offset = pad(context.N_ANCHOR + len(context.EDGES_N) * np.minimum(model.base, 4).astype(np.int32))
        self.plain = pad(model.plain.astype(np.int32))
        self.n_sign = 9 if model.chroma else 3
        n_ctx = bitstream.sign_contexts(context.FULL, model.chroma)
        p = entropy.SIGN_P[np.asarray(signs)] if signs else np.full(n_ctx, 0.5)
        self.sign_pos, self.sign_neg = -np.log2(p) - 1.0, -np.log2(1.0 - p) - 1.0  # beyond the sign bit in ``first``

    def _bits(self, cls: np.ndarray, sym: np.ndarray, s: np.ndarray, plain: np.ndarray) -> np.ndarray:
        """Bits of symbols ``sym`` of classes ``cls`` whose anchor neighbours sum to ``s`` and whose
        sign context before that sum's sign is ``plain`` (a non-zero's sign included)."""
        out = self.z[cls]
        nz = np.flatnonzero(sym)
        if nz.size:
            c, v = cls.ravel()[nz], sym.ravel()[nz]
            ctx = self.n_sign * (np.sign(s.ravel()[nz]) + 2) + plain.ravel()[nz]
            sign = np.where(v > 0, self.sign_pos[ctx], self.sign_neg[ctx])
            out.reshape(-1)[nz] += self.first[c] + (np.abs(v) - 1) * self.more[c] + sign
        return out

    def start_phase(self, q: np.ndarray, sub: tuple[slice, slice]) -> None:
        """The plane's current values ``q`` before the moves of the anchor phase ``sub``: each
        direction's neighbours, their anchor sums and magnitudes, and their bits now."""
        self.old = q[sub]
        rows, cols = self.old.shape
        vals = np.pad(q.astype(np.int32), 1)  # the non-anchors move between the two anchor phases
        on = np.where(self.anc, q, 0).astype(np.int32)
        s_all, n_all = np.pad(context._cross4(on), 1), np.pad(context._cross4(np.abs(on)), 1)
        self.sides = []
        for di, dj in _CROSS:
            r0, c0 = sub[0].start + 1 + di, sub[1].start + 1 + dj
            at = (slice(r0, r0 + 2 * rows - 1, 2), slice(c0, c0 + 2 * cols - 1, 2))
            valid = self.valid[at]
            if not valid.any():
                continue
            s, n, v = s_all[at].copy(), n_all[at].copy(), vals[at].copy()
            off, plain = self.offset[at].copy(), self.plain[at].copy()
            cls = off + context._BIN_N[np.minimum(n, int(context.EDGES_N[-1]))]
            self.sides.append((s, n, v, off, plain, valid, self._bits(cls, v - context._weighted(s, self.weight), s, plain)))

    def cost(self, new: np.ndarray) -> np.ndarray:
        """Bits the non-anchor neighbours gain (positive) or lose if the anchors of the phase took
        the values ``new`` one at a time (float32, shaped as ``new``)."""
        d = new - self.old
        out = np.zeros(new.shape, dtype=np.float64)
        moved = np.flatnonzero(d)
        if not moved.size:
            return out.astype(np.float32)
        few = moved.size < d.size // 2  # e.g. the moves to zero: only the non-zero anchors move
        old = self.old.ravel()[moved] if few else self.old
        if few:
            d = d.ravel()[moved]
        dn = np.abs(old + d) - np.abs(old)
        acc = np.zeros(d.shape, dtype=np.float64)
        top = int(context.EDGES_N[-1])
        for s, n, v, off, plain, valid, b0 in self.sides:
            if few:
                s, n, v, off, plain, valid, b0 = (t.ravel()[moved] for t in (s, n, v, off, plain, valid, b0))
            cls = off + context._BIN_N[np.clip(n + dn, 0, top)]
            s1 = s + d
            b1 = self._bits(cls, v - context._weighted(s1, self.weight), s1, plain)
            acc += np.where(valid, b1 - b0, 0.0)
        if few:
            out.reshape(-1)[moved] = acc
        else:
            out = acc
        return out.astype(np.float32)


def _with_neighbours(v: torch.Tensor, rate: Callable[[torch.Tensor], torch.Tensor], effect: _NeighbourEffect) -> torch.Tensor:
    """``rate(v)`` plus what anchor values ``v`` would cost their non-anchor neighbours."""
    return rate(v) + torch.from_numpy(effect.cost(v.to(torch.int64).cpu().numpy())).to(v.device)


WEIGHT_REACH = 2  # RDOQ's sweeps after the first try a plane's weights within this many of its last
# a plane's four parity phases in RDOQ's order, (sub-grid, whether it holds anchors): anchors (0, 0),
# non-anchors (0, 1) and (1, 0), anchors (1, 1)
PHASES = tuple(((slice(pi, None, 2), slice(pj, None, 2)), (pi + pj) % 2 == 0) for pi in (0, 1) for pj in (0, 1))


def plane_turn(codes: list[list[np.ndarray]], lv: int, ch: int, weights: dict[tuple[int, int], int]) -> tuple:
    """The start of plane ``(lv, ch)``'s RDOQ turn (both bases): its :class:`_PlaneModel` (its
    prediction weight recorded in ``weights``), rate terms ``first, more``, sign probabilities
    ``signs`` and sign terms ``pos, neg`` (CPU tensors), and its children's :class:`_ContextEffect`
    (``None`` on level 0 or when the finer plane is empty)."""
    model = _plane_model(codes, lv, ch, weights.get((lv, ch)))
    weights[(lv, ch)] = model.weight
    first, more = _rate_terms(model.cls, model.dists)
    signs = _plane_signs(model)
    pos, neg = _sign_terms(signs, model.scls, codes[lv][ch].shape)
    effect = _ContextEffect(codes, lv, ch, weights) if lv > 0 and codes[lv - 1][ch].any() else None
    return model, first, more, signs, pos, neg, effect


def optimise(image: np.ndarray, spec: PyramidSpec, step_idx: list[int], codes: list[list[np.ndarray]],
             lam: float, sweeps: int, deadline: float | None = None,
             samplers: list[LevelSampler] | None = None, tick: Callable[[str], None] | None = None) -> RdoqResult:
    """Run up to ``sweeps`` ICM sweeps on ``codes`` (``codes[level][channel]``), minimising
    ``SSE(RGB in [0,1]) + lam * bits``; stop early at ``deadline`` (``time.perf_counter()``) or when
    a sweep changes fewer than 0.05 % of the values.  ``samplers``: :func:`samplers_for` ``(spec)``,
    if the caller already has them.  ``tick`` (a progress display) is called once per plane with
    the sweep, ``"RDOQ sweep 2/8"``."""
    h, w, c = image.shape
    codes = [[np.array(p, dtype=np.int64) for p in lv] for lv in codes]
    if sweeps > 0 and deadline is not None and time.perf_counter() > deadline:
        # what the first plane's check below would return, without the rendering (3 s at 12 Mpixels)
        return RdoqResult(codes, 0, [0], stopped=True)
    steps = [quant.step_from_index(i) for i in step_idx]
    samplers = samplers if samplers is not None else samplers_for(spec)
    dev = samplers[0].device  # the sweeps run where the samplers are; the context model on the CPU
    mtm = colour_weights(c, spec.colour)
    m = colour_matrix(c, dev, spec.colour)
    centre = colour_centre(c, dev, spec.colour)[:, None, None]
    target = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().to(dev)
    # The gradient of a plane of channel ch needs only M^T (M (y - centre) - x) in that channel:
    # (M^T M)[ch] . y - b[ch] with b = M^T x + M^T M centre, formed once (a 3-channel weighted sum
    # per parity phase instead of the whole RGB error and its back-projection)
    mtm_full = m.T @ m
    back = torch.einsum("ij,ihw->jhw", m, target) + (mtm_full @ centre[:, 0, 0])[:, None, None]
    del target
    y = reconstruct(codes, steps, samplers, (c, h, w))
    n_values = spec.num_params()
    changed: list[int] = []
    weights: dict[tuple[int, int], int] = {}  # each plane's prediction weight at its last sweep
    for sweep in range(sweeps):
        n_changed = 0
        for lv, ch in context.coding_order(spec.levels, c):
            if deadline is not None and time.perf_counter() > deadline:
                return RdoqResult(codes, len(changed), changed + [n_changed], stopped=True)
            if tick is not None:
                tick(f"RDOQ sweep {sweep + 1}/{sweeps}")
            smp, step = samplers[lv].channel(ch), steps[lv * c + ch]
            q = codes[lv][ch]
            model, first, more, signs, pos, neg, effect = plane_turn(codes, lv, ch, weights)
            weight = model.weight
            first, more, pos, neg = (t.to(dev) for t in (first, more, pos, neg))
            hdiag = smp.energy * (step * step * float(mtm[ch]))
            qt = torch.from_numpy(q).float().to(dev)
            pred_plane = None  # non-anchor predictions; they change only when anchors do
            nbr = None  # the anchors' cost to their non-anchor neighbours, formed at the first anchor phase
            anchors_moved = False
            for sub, anchor_phase in PHASES:  # non-anchors (i + j odd) are coded as q - pred; anchors as q
                qs = qt[sub]
                if qs.numel() == 0:
                    continue
                grad = smp.adjoint(torch.einsum("j,jhw->hw", mtm_full[ch], y) - back[ch])[sub] * step
                hs, f_s, m_s = hdiag[sub], first[sub], more[sub]
                if anchor_phase:
                    pred = torch.zeros_like(qs)
                else:
                    if pred_plane is None:
                        q_now = qt.to(torch.int64).cpu().numpy()
                        pred_plane = torch.from_numpy(context.predict(q_now, weight)).float().to(dev)
                        if anchors_moved:  # the non-anchors' classes and sign contexts read the anchors
                            first, more, pos, neg = (t.to(dev) for t in _current_terms(model, q_now, signs))
                            f_s, m_s = first[sub], more[sub]
                    pred = pred_plane[sub]
                own_rate = functools.partial(_symbol_bits, pred=pred, first=f_s, more=m_s, pos=pos[sub], neg=neg[sub])
                if effect is not None:
                    effect.start_phase(qt.to(torch.int64).cpu().numpy())
                    rate = functools.partial(_with_children, own=own_rate, effect=effect, sub=sub)
                else:
                    rate = own_rate
                if anchor_phase:
                    if nbr is None:
                        nbr = _NeighbourEffect(model, signs)
                    if nbr.active:
                        nbr.start_phase(qt.to(torch.int64).cpu().numpy(), sub)
                        rate = functools.partial(_with_neighbours, rate=rate, effect=nbr)
                r0 = own_rate(qs)
                best_dj = torch.zeros_like(qs)
                best_d = torch.zeros_like(qs)
                for d in (-1.0, 1.0):
                    dj = 2 * d * grad + hs + lam * (rate(qs + d) - r0)
                    better = dj < best_dj
                    best_dj = torch.where(better, dj, best_dj)
                    best_d = torch.where(better, torch.full_like(qs, d), best_d)
                for dz in (-qs,) if anchor_phase else (-qs, pred - qs):  # to zero, and to the prediction
                    dj = 2 * dz * grad + dz * dz * hs + lam * (rate(qs + dz) - r0)
                    better = dj < best_dj
                    best_dj = torch.where(better, dj, best_dj)
                    best_d = torch.where(better, dz, best_d)
                delta, dy = _joint_move(smp, best_d, best_dj, hs, sub, qt, step, float(mtm[ch]))
                if delta is None:
                    continue
                n_changed += int(torch.count_nonzero(delta))
                if anchor_phase:
                    pred_plane = None
                    anchors_moved = True
                qt = qt + delta
                y[ch] += dy
            codes[lv][ch] = qt.to(torch.int64).cpu().numpy()
        changed.append(n_changed)
        if n_changed < 5e-4 * n_values:
            break
    return RdoqResult(codes, len(changed), changed)
