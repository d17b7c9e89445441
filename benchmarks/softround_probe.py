"""Probe (not used by the codec): Cool-chic's training recipe from the hybrid's own start.

    .venv/bin/python benchmarks/softround_probe.py ../shared/data/kodak/kodim23.png --quality 70 \\
        --preset medium --seconds 200 --out benchmarks/results/softround_probe.json

Issue 5 asks to "combine a strong analytic start with that recipe": latents and a nonlinear
synthesis trained together on ``D + lambda R`` with soft rounding and noise, then a short phase of
hard rounding (Ladune et al., ICCV 2023; Kim et al., C3, CVPR 2024).  ``benchmarks/joint_probe.py``
trained from the preset's integer codes with straight-through rounding only and lost 10 %; this
probe keeps the latents continuous for most of the time instead:

* start: the preset's file (its level filters kept fixed, its post filter left out), latents
  ``v = q`` in code units; or, with ``--start continuous``, the L1 refit's real-valued solution
  through those filters before its rounding (:func:`codec.l1fit.solve_continuous`, warm-started
  from ``q``);
* synthesis: the linear rendering ``y = sum_l S_l K_l (Delta_l v_l)`` plus a two-layer 3x3
  network ``N`` reading the contributions of level 0, 1, 2 and 3+ apart (12 channels, as in
  ``benchmarks/postfilter_inputs.py``), its last layer starting at zero, so the start is the file;
  output ``M (y + N(parts) - c)``;
* quantization in training: phase 1 (``1 - --hard-share`` of the time) ``s_T(v) + sigma u`` with
  ``s_T`` the soft rounding of Agustsson and Theis (NeurIPS 2020), ``u`` uniform on [-1/2, 1/2),
  ``T`` and ``sigma`` annealed linearly from ``--t0``/``--sigma0`` to ``--t1``/0 (or, with
  ``--estimator c3``, C3's ``s_T(s_T(v) + sigma0 u)``, the noise kept throughout); phase 2 hard
  rounding with a straight-through gradient;
* rate: the file's own context model as RDOQ prices it, ``first * min(|d|, 1) + more * max(|d| - 1, 0)``
  per value with ``d = v - pred`` (:func:`codec.rdoq.plane_rate_terms`), refreshed every
  ``--refresh`` steps from the rounded latents.

Every figure of the result comes from real bytes: rounded latents coded by
:func:`codec.encoder.code_hybrid` (format v7, no post filter), plus the network's weights quantized
and counted as ``benchmarks/postfilter_inputs.py`` counts them (the format has no field for them:
a format v8 would); distortion on the 8-bit RGB output of the quantized network.
``dJ`` compares ``D + lambda R`` with the preset's file as written (post filter included);
``trained_float_network`` is the same with the network's weights unquantized (its bytes counted
as quantized).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import probe_cli
import torch
from postfilter_inputs import quantized

from codec import bitstream, color, config, context, encoder, l1fit, rdoq
from codec.models import PostFilter

GROUPS = ((0,), (1,), (2,), None)  # None: level 3 and coarser together


def soft_round(v: torch.Tensor, t: float) -> torch.Tensor:
    """Agustsson and Theis' soft rounding: ``floor(v) + 1/2 + tanh(r / t) / (2 tanh(1 / (2 t)))``
    with ``r = v - floor(v) - 1/2``; the identity as ``t -> inf``, rounding as ``t -> 0``."""
    f = torch.floor(v)
    r = v - f - 0.5
    return f + 0.5 + torch.tanh(r / t) / (2 * math.tanh(0.5 / t))


def probe(path: Path, quality: int, preset: str, args: argparse.Namespace) -> dict:
    st = probe_cli.start(path, quality, preset)
    img, r, start_seconds, lam, start_cost, start_psnr = st.image, st.result, st.seconds, st.lam, st.cost, st.psnr
    p = st.parsed
    bare_data = r.data if not p.post.hidden else encoder.with_post_filter(r.data, bitstream.PostFilterRecord())
    bare_cost, bare_psnr = encoder.file_cost(bare_data, img, lam)
    p = dataclasses.replace(p, post=bitstream.PostFilterRecord())
    spec, c = p.spec, p.spec.channels
    h, w = spec.height, spec.width
    codes, idx, steps, samplers = st.codes, st.idx, st.steps, st.samplers
    m, shift, target = st.matrix, st.shift, st.target
    groups = [set(g) if g is not None else set(range(3, spec.levels)) for g in GROUPS]

    def parts_of(vals: list[torch.Tensor]) -> list[torch.Tensor]:
        grids = [vals[lv] * torch.tensor(steps[lv * c:(lv + 1) * c])[:, None, None] for lv in range(spec.levels)]
        return [rdoq.sum_levels(samplers, [g if lv in grp else None for lv, g in enumerate(grids)], (c, h, w))
                for grp in groups]

    def rate_terms(rounded: list[list[np.ndarray]]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per level, the (first, more, prediction) tensors with which RDOQ would price ``rounded``."""
        out = []
        for lv in range(spec.levels):
            per = [rdoq.plane_rate_terms(rounded, lv, ch) for ch in range(c)]
            out.append(tuple(torch.stack(x) for x in (
                [t[0] for t in per], [t[1] for t in per],
                [torch.from_numpy(context.predict(rounded[lv][ch], t[2])).float() for ch, t in enumerate(per)])))
        return out

    def rate_bits(vals: list[torch.Tensor], tr: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """The training's rate term: bits of each value's moves away from its prediction."""
        return sum((f * torch.clamp((v - pr).abs(), max=1.0) + mo * torch.relu((v - pr).abs() - 1.0)).sum()
                   for v, (f, mo, pr) in zip(vals, tr))

    def self_priced(rounded: list[list[np.ndarray]]) -> float:
        """The rate term of integer latents priced by their own distributions (a refresh's view)."""
        return float(rate_bits([torch.tensor(np.stack(r), dtype=torch.float32) for r in rounded], rate_terms(rounded)))

    torch.manual_seed(args.seed)
    net = PostFilter(c, args.hidden, c * len(GROUPS))
    if args.start == "continuous":
        t_l1 = time.perf_counter()
        op = l1fit.Operator(samplers, c, spec.colour)
        v0 = l1fit.solve_continuous(img, codes, idx, lam, args.l1_iterations, op, config.HYBRID_PRESETS[preset].l1_bits)
        if v0 is None:
            raise SystemExit("softround_probe: the L1 solve did not run")
        l1_seconds = time.perf_counter() - t_l1
        latents = [vl.detach().float().cpu().clone().requires_grad_(True) for vl in v0]
        start_rounded = [[vl[ch].detach().round().to(torch.int64).numpy() for ch in range(c)] for vl in latents]
    else:
        l1_seconds = 0.0
        start_rounded = None
        latents = [torch.tensor(np.stack(codes[lv]), dtype=torch.float32, requires_grad=True)
                   for lv in range(spec.levels)]
    opt = torch.optim.Adam([{"params": latents, "lr": args.lr_latent},
                            {"params": list(net.parameters()), "lr": args.lr_net}])
    terms: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    history = []
    t_train = time.perf_counter()
    step = 0
    soft_end = args.seconds * (1 - args.hard_share)
    while (elapsed := time.perf_counter() - t_train) < args.seconds:
        if step % args.refresh == 0:
            terms = rate_terms([[lt.detach()[ch].round().to(torch.int64).numpy() for ch in range(c)] for lt in latents])
        soft = elapsed < soft_end
        frac = elapsed / soft_end if soft else (elapsed - soft_end) / max(args.seconds - soft_end, 1e-9)
        if soft:
            temp = args.t0 + (args.t1 - args.t0) * frac
            sigma = args.sigma0 * (1 - frac)
            if args.estimator == "c3":  # C3's s_T(s_T(v) + u): full noise, the temperature annealed
                vq = [soft_round(soft_round(v, temp) + args.sigma0 * (torch.rand_like(v) - 0.5), temp)
                      for v in latents]
            else:
                vq = [soft_round(v, temp) + sigma * (torch.rand_like(v) - 0.5) for v in latents]
            lr_scale = 1.0
        else:
            vq = [v + (v.round() - v).detach() for v in latents]
            lr_scale = args.hard_lr * 0.5 * (1 + math.cos(math.pi * frac))
        for g, base in zip(opt.param_groups, (args.lr_latent, args.lr_net)):
            g["lr"] = base * lr_scale
        parts = parts_of(vq)
        y = sum(parts)
        out = torch.einsum("ij,jhw->ihw", m, y + net(torch.cat(parts)[None])[0]) - shift
        sse = ((out - target) ** 2).sum()
        bits = rate_bits(vq, terms)
        loss = sse + lam * bits
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            history.append({"step": step, "seconds": round(elapsed, 1), "soft": soft, "sse": round(float(sse), 2),
                            "bits": round(float(bits)), "loss": round(float(loss), 2)})
            print(path.name, history[-1], flush=True)
        step += 1
    train_seconds = time.perf_counter() - t_train

    final = [[lt.detach()[ch].round().to(torch.int64).numpy() for ch in range(c)] for lt in latents]
    lat_data = encoder.code_hybrid(spec, final, idx, p.filters)
    tensors = [prm.detach().numpy().copy() for prm in net.coded_tensors()]
    net_bytes, qnet = quantized(tensors, c * len(GROUPS))

    def cost(vals: list[torch.Tensor], network: torch.nn.Module | None, nbytes: int) -> tuple[float, float]:
        with torch.no_grad():
            parts = parts_of(vals)
            y = sum(parts)
            if network is not None:
                y = y + network(torch.cat(parts)[None])[0]
            rgb = color.quantize_uint8(torch.einsum("ij,jhw->ihw", m, y) - shift)
            d = float(((rgb.double() - target.double()) ** 2).sum())
        return d + lam * 8 * nbytes, 10 * math.log10(target.numel() / d)

    final_t = [torch.tensor(np.stack(f), dtype=torch.float32) for f in final]
    j_net, psnr_net = cost(final_t, qnet, len(lat_data) + net_bytes)
    j_lat, psnr_lat = cost(final_t, None, len(lat_data))
    j_float, psnr_float = cost(final_t, net, len(lat_data) + net_bytes)  # the network unquantized
    changed = probe_cli.latents_changed(codes, final)
    if start_rounded is not None:  # the continuous start rounded and coded, without training or network
        sr_data = encoder.code_hybrid(spec, start_rounded, idx, p.filters)
        j_sr, psnr_sr = cost([torch.tensor(np.stack(f), dtype=torch.float32) for f in start_rounded], None,
                             len(sr_data))
    pct = lambda j: round(100 * (j / start_cost - 1), 2)
    row = {"image": path.name, "quality": quality, "preset": preset, "lambda": lam,
           "start": probe_cli.start_record(r.data, start_psnr, start_cost, start_seconds, st.parsed.post.hidden),
           "start_without_post": {"bytes": len(bare_data), "psnr": round(bare_psnr, 3), "dJ_percent": pct(bare_cost)},
           "trained": {"bytes": len(lat_data) + net_bytes, "latent_bytes": len(lat_data), "net_bytes": net_bytes,
                       "psnr": round(psnr_net, 3), "cost": round(j_net, 3), "dJ_percent": pct(j_net),
                       "steps": step, "seconds": round(train_seconds, 1), "latents_changed": changed,
                       "start": args.start, "l1_seconds": round(l1_seconds, 1)},
           **({"continuous_rounded": {"bytes": len(sr_data), "psnr": round(psnr_sr, 3), "dJ_percent": pct(j_sr)}}
              if start_rounded is not None else {}),
           # the rate term against the latent bytes it stands for, for the start's codes and the result's
           "rate_term_kbit": {"start": round(self_priced(codes) / 1000, 1),
                              "start_coded": round(8 * len(bare_data) / 1000, 1),  # the same codes, no post filter
                              "trained": round(self_priced(final) / 1000, 1),
                              "trained_coded": round(8 * len(lat_data) / 1000, 1)},
           "trained_float_network": {"psnr": round(psnr_float, 3), "dJ_percent": pct(j_float)},
           "trained_latents_only": {"bytes": len(lat_data), "psnr": round(psnr_lat, 3), "dJ_percent": pct(j_lat)},
           "history": history}
    return probe_cli.emit(row)


def main() -> None:
    ap = probe_cli.parser(__doc__)
    probe_cli.training_args(ap, 200.0)
    ap.add_argument("--lr-net", type=float, default=3e-3)
    ap.add_argument("--t0", type=float, default=0.3, help="soft-rounding temperature at the start")
    ap.add_argument("--t1", type=float, default=0.05, help="... at the end of the soft phase")
    ap.add_argument("--sigma0", type=float, default=0.5, help="noise amplitude at the start (annealed to 0)")
    ap.add_argument("--hard-share", type=float, default=0.2, help="share of the time with hard rounding")
    ap.add_argument("--hard-lr", type=float, default=0.3, help="learning-rate factor in the hard phase")
    ap.add_argument("--estimator", choices=("additive", "c3"), default="additive",
                    help="soft phase: s_T(v) + sigma u with sigma annealed to 0, or C3's s_T(s_T(v) + sigma0 u)")
    ap.add_argument("--start", choices=("file", "continuous"), default="file",
                    help="latents to start from: the file's integer codes, or the L1 refit's real-valued "
                         "solution (before rounding) through the file's level filters, warm-started from them")
    ap.add_argument("--l1-iterations", type=int, default=150, help="FISTA iterations of the continuous start")
    args = ap.parse_args()
    probe_cli.run(args, lambda im, q: probe(im, q, args.preset, args))


if __name__ == "__main__":
    main()
