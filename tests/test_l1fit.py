"""Unit tests of the L1-regularised start of the hybrid's latents (codec.l1fit)."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from codec import encoder, l1fit, pyramid, quant, rdoq
from codec.config import RDOQ_LAMBDA


def _setup(filled, delta0: float):
    """:func:`filled`'s start plus the level samplers."""
    image, spec, idx, codes = filled(delta0)
    return image, spec, idx, codes, rdoq.samplers_for(spec)


def _cost(image, spec, idx, codes, samplers, lam):
    h, w, c = image.shape
    y = rdoq.reconstruct(codes, [quant.step_from_index(i) for i in idx], samplers, (c, h, w))
    rgb = torch.einsum("ij,jhw->ihw", rdoq.colour_matrix(c), y - rdoq.colour_centre(c)[:, None, None])
    sse = float(((rgb.permute(1, 2, 0) - torch.from_numpy(image)) ** 2).sum())
    return sse + lam * 8 * len(encoder.code_hybrid(spec, codes, idx))


def test_stacked_sampling_equals_per_channel(filled):
    _, spec, _, _, samplers = _setup(filled, 0.1)
    gen = torch.Generator().manual_seed(1)
    for smp, (lh, lw) in zip(samplers, spec.level_shapes()):
        g = torch.randn(3, lh, lw, generator=gen)
        r = torch.randn(3, spec.height, spec.width, generator=gen)
        up, adj = smp.up_stack(g), smp.adjoint_stack(r)
        for ch in range(3):
            torch.testing.assert_close(up[ch], smp.up(g[ch]))
            torch.testing.assert_close(adj[ch], smp.adjoint(r[ch]))


def test_level_layouts_and_the_operator_are_exactly_the_per_level_sum(filled):
    """``up_stack_wt`` is ``up_stack`` in the ``(W, C*H)`` layout, bit for bit (also behind level
    filters and at the native level), the operator's forward is exactly the in-order sum of the
    levels, and ``adjoint_stack`` with the shared row matrix equals it without (0.10.3 sums the
    levels in that layout for speed; the encoder's bytes are unchanged)."""
    _, spec, _, _, samplers = _setup(filled, 0.1)
    k = np.zeros((3, 3), dtype=np.float32)
    k[1, 1], k[0, 1], k[2, 1] = 0.5, 0.25, 0.25
    levels = rdoq.with_filters(samplers, [[k, None, k], [None, k, None]])
    gen = torch.Generator().manual_seed(3)
    u = [torch.randn(3, lh, lw, generator=gen) for lh, lw in spec.level_shapes()]
    r = torch.randn(3, spec.height, spec.width, generator=gen)
    rows = r.permute(1, 0, 2).reshape(spec.height, -1)
    for smp, g in zip(levels, u):
        t = smp.up_stack_wt(g)
        assert t.is_contiguous() and t.shape == (spec.width, 3 * spec.height)
        assert torch.equal(t.T.reshape(3, spec.height, spec.width), smp.up_stack(g))
        assert torch.equal(smp.adjoint_stack(r, rows), smp.adjoint_stack(r))
    op = l1fit.Operator(levels, 3)
    total = sum(s.up_stack(g * sc) for s, g, sc in zip(levels, u, op.scale))
    assert torch.equal(op.forward(u), torch.einsum("ij,jhw->ihw", op.m, total))


def test_operator_adjoint_is_the_transpose(filled):
    """<A u, r> = <u, A^T r> (dot-product test)."""
    _, spec, _, _, samplers = _setup(filled, 0.1)
    op = l1fit.Operator(samplers, 3)
    gen = torch.Generator().manual_seed(2)
    u = [torch.randn(3, lh, lw, generator=gen, dtype=torch.float32) for lh, lw in spec.level_shapes()]
    r = torch.randn(3, spec.height, spec.width, generator=gen)
    lhs = float((op.forward(u) * r).sum())
    rhs = sum(float((a * b).sum()) for a, b in zip(u, op.adjoint(r)))
    assert lhs == pytest.approx(rhs, rel=1e-4)
    # the power iteration's estimate is close to (and, with the margin, above) the true norm
    n2 = op.norm_sq()
    ratio = sum(float((x * x).sum()) for x in op.adjoint(op.forward(u))) / sum(float((x * x).sum()) for x in u)
    assert ratio <= n2 * l1fit.LIPSCHITZ_MARGIN


def test_bits_per_unit_is_clamped_and_zero_planes_get_the_maximum():
    codes = [[np.zeros((8, 8), dtype=np.int64), np.ones((8, 8), dtype=np.int64) * 3], [np.ones((4, 4), dtype=np.int64),
                                                                                        np.zeros((4, 4), dtype=np.int64)]]
    b = l1fit.bits_per_unit(codes, 1.0)
    assert b.shape == (2, 2)
    assert b[0, 0] == l1fit.MAX_BITS and b[1, 1] == l1fit.MAX_BITS
    assert l1fit.MIN_BITS <= b[0, 1] < l1fit.MAX_BITS and l1fit.MIN_BITS <= b[1, 0] < l1fit.MAX_BITS
    assert np.all(l1fit.bits_per_unit(codes, 100.0) <= l1fit.MAX_BITS)


def test_solve_lowers_the_rate_distortion_cost_and_is_deterministic(filled):
    delta0 = 0.1
    image, spec, idx, codes, samplers = _setup(filled, delta0)
    lam = RDOQ_LAMBDA * delta0**2
    assert l1fit.solve(image, codes, idx, lam, 0, l1fit.Operator(samplers, 3)) is codes  # no iterations: unchanged
    out = l1fit.solve(image, codes, idx, lam, 60, l1fit.Operator(samplers, 3))
    again = l1fit.solve(image, codes, idx, lam, 60, l1fit.Operator(samplers, 3))
    assert all(np.array_equal(a, b) for la, lb in zip(out, again) for a, b in zip(la, lb))
    assert all(a.shape == b.shape and a.dtype == np.int64 for la, lb in zip(out, codes) for a, b in zip(la, lb))
    assert _cost(image, spec, idx, out, samplers, lam) < 0.97 * _cost(image, spec, idx, codes, samplers, lam)


def test_solve_is_the_continuous_solution_deadzone_quantized(filled):
    delta0 = 0.1
    image, _, idx, codes, samplers = _setup(filled, delta0)
    lam = RDOQ_LAMBDA * delta0**2
    assert l1fit.solve_continuous(image, codes, idx, lam, 0, l1fit.Operator(samplers, 3)) is None
    v = l1fit.solve_continuous(image, codes, idx, lam, 30, l1fit.Operator(samplers, 3))
    assert [tuple(x.shape) for x in v] == [(3, *codes[lv][0].shape) for lv in range(len(codes))]
    assert any(bool((x != x.round()).any()) for x in v)  # real-valued, not yet rounded
    for dz in (0.5, 0.3):
        out = l1fit.solve(image, codes, idx, lam, 30, l1fit.Operator(samplers, 3), deadzone=dz)
        for lv, x in enumerate(v):
            want = pyramid.deadzone_quantize(x, dz).to(torch.int64).numpy()
            assert all(np.array_equal(out[lv][ch], want[ch]) for ch in range(3))


def test_a_huge_multiplier_zeroes_everything(filled):
    image, _, idx, codes, samplers = _setup(filled, 0.1)
    out = l1fit.solve(image, codes, idx, 1e9, 20, l1fit.Operator(samplers, 3))
    assert not any(p.any() for lv in out for p in lv)


def test_deadline_in_the_past_stops_at_the_start(filled):
    image, _, idx, codes, samplers = _setup(filled, 0.1)
    out = l1fit.solve(image, codes, idx, 0.01, 50, l1fit.Operator(samplers, 3), deadline=0.0)
    # no FISTA step: the warm start is re-quantized unchanged (values are exact multiples of their steps)
    assert all(np.array_equal(a, b) for la, lb in zip(out, codes) for a, b in zip(la, lb))


def test_a_refit_without_room_for_its_iterations_is_not_started(filled):
    """When the power iteration's second step shows that the norm and ``MIN_ITERATIONS`` FISTA steps
    cannot end before the deadline, ``solve`` returns its start unchanged (the very object) and the
    operator keeps no norm, so a later call with time computes the same norm as a fresh operator."""
    import time

    image, _, idx, codes, samplers = _setup(filled, 0.1)
    op = l1fit.Operator(samplers, 3)
    assert op.norm_sq(time.perf_counter() + 1e-5, l1fit.MIN_ITERATIONS) is None
    assert l1fit.solve(image, codes, idx, 0.01, 60, op, deadline=time.perf_counter() + 1e-5) is codes
    assert op.norm_sq() == l1fit.Operator(samplers, 3).norm_sq() > 0
    out = l1fit.solve(image, codes, idx, 0.01, 60, op, deadline=time.perf_counter() + 600)
    assert out is not codes and any(not np.array_equal(a, b) for la, lb in zip(out, codes) for a, b in zip(la, lb))


def test_on_the_cpu_a_hopeless_norm_stops_after_its_first_step(filled, monkeypatch):
    """On the CPU, where the first step's one-off costs are small, ``norm_sq`` gives up after one
    step (not two) when the rest cannot end in time even at ``CPU_FIRST_STEP_SHARE`` of its cost;
    with time to spare it runs all ``POWER_ITERATIONS`` steps."""
    _, _, _, _, samplers = _setup(filled, 0.1)
    op = l1fit.Operator(samplers, 3)
    assert op.device.type == "cpu"
    calls = []
    forward = op.forward
    monkeypatch.setattr(op, "forward", lambda u: calls.append(1) or forward(u))
    assert op.norm_sq(time.perf_counter() + 1e-5, l1fit.MIN_ITERATIONS) is None
    assert len(calls) == 1
    assert op.norm_sq(time.perf_counter() + 600, l1fit.MIN_ITERATIONS) > 0
    assert len(calls) == 1 + l1fit.POWER_ITERATIONS


def test_on_the_cpu_the_fill_time_rules_out_a_hopeless_norm_before_its_first_step(filled, monkeypatch):
    """Given the analytic fill's time, ``norm_sq`` on the CPU returns ``None`` without a single step
    when ``POWER_ITERATIONS`` steps and the caller's reserve, each at ``FILL_STEP_SHARE`` of the
    fill's time, cannot end before the deadline; otherwise it runs as without the hint, and
    ``solve`` passes the hint on (returning its start unchanged, the very object)."""
    image, _, idx, codes, samplers = _setup(filled, 0.1)
    op = l1fit.Operator(samplers, 3)
    calls = []
    forward = op.forward
    monkeypatch.setattr(op, "forward", lambda u: calls.append(1) or forward(u))
    share = l1fit.FILL_STEP_SHARE * (l1fit.POWER_ITERATIONS + l1fit.MIN_ITERATIONS)
    # 20 s of room, a fill that predicts at least 1.5 x 20 s of steps: not started
    assert op.norm_sq(time.perf_counter() + 20, l1fit.MIN_ITERATIONS, fill_seconds=30 / share) is None
    assert l1fit.solve(image, codes, idx, 0.01, 60, op, deadline=time.perf_counter() + 20,
                       fill_seconds=30 / share) is codes
    assert calls == []
    # a fill that predicts half of the room: the power iteration runs in full
    assert op.norm_sq(time.perf_counter() + 20, l1fit.MIN_ITERATIONS, fill_seconds=10 / share) > 0
    assert len(calls) == l1fit.POWER_ITERATIONS


def test_rdoq_past_its_deadline_returns_at_once(filled, monkeypatch):
    """RDOQ called after its deadline returns the codes unchanged, with no sweep and ``stopped``,
    without rendering them first (3 s of a 12 Mpixel encode whose budget left no sweep)."""
    image, spec, idx, codes, samplers = _setup(filled, 0.1)

    def no_render(*args, **kwargs):
        raise AssertionError("rendered")

    monkeypatch.setattr(rdoq, "reconstruct", no_render)
    res = rdoq.optimise(image, spec, idx, codes, 0.01, 4, deadline=0.0, samplers=samplers)
    assert res.stopped and res.sweeps == 0 and res.changed == [0]
    assert all(np.array_equal(a, b) for la, lb in zip(res.codes, codes) for a, b in zip(la, lb))
    with pytest.raises(AssertionError, match="rendered"):
        rdoq.optimise(image, spec, idx, codes, 0.01, 4, deadline=time.perf_counter() + 600, samplers=samplers)
