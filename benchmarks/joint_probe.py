"""Probe (not used by the codec): train a hybrid file's latents and its post filter jointly.

    .venv/bin/python benchmarks/joint_probe.py ../shared/data/kodak/kodim23.png --quality 70 \\
        --preset medium --seconds 150 --lr-latent 0.002 --out benchmarks/results/joint_probe.json

The codec fits its post filter (:mod:`codec.postfilter`) on latents that RDOQ optimised for the
linear synthesis alone.  This probe asks what Cool-chic's recipe (latents and synthesis trained
together by gradient descent on ``D + lambda R``; Ladune et al., ICCV 2023) gains from our start, in
the time ``slow`` spends after ``medium``, without changing the format (v7): starting from the
preset's file, Adam moves the latents (straight-through rounding in the distortion: the forward pass
uses the rounded values, the gradient passes through; the rate term reads the unrounded values, so a
zero feels the pull of its ``first`` bits as an L1 penalty) and the post filter's weights to minimise

    SSE(M (y + P(y) - c) - x) + lambda * sum_v bits(v),    lambda = the encode's (rdoq_lambda Delta_0^2)

where ``y`` is the linear rendering through the file's level filters and ``bits`` the rate of the
file's own context model, as RDOQ prices it (:func:`codec.rdoq.optimise`): per value
``first * min(|d|, 1) + more * max(|d| - 1, 0)`` with ``d = v - pred`` and ``first``, ``more``, ``pred``
from the context classes of the current rounded codes, refreshed every ``--refresh`` steps.  The
result is a real file: rounded latents, the filter's weights quantized as the encoder does, coded by
:func:`codec.encoder.code_hybrid` and decoded by the decoder; every figure is from those bytes.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import probe_cli
import torch

from codec import context, encoder, postfilter, rdoq
from codec.models import PostFilter


def plane_rate_terms(codes: list[list[np.ndarray]], lv: int, ch: int) -> tuple[torch.Tensor, ...]:
    """``first``, ``more`` and ``pred`` per value of plane ``(lv, ch)`` under its context model
    (:func:`codec.rdoq.plane_rate_terms`; ``pred`` is 0 on the anchors)."""
    first, more, weight, _ = rdoq.plane_rate_terms(codes, lv, ch)
    return first, more, torch.from_numpy(context.predict(codes[lv][ch], weight)).float()


def probe(path: Path, quality: int, preset: str, seconds: float, hidden: int, refresh: int,
          lr_latent: float, lr_filter: float, seed: int) -> dict:
    st = probe_cli.start(path, quality, preset)
    image, r, start_seconds, lam, start_cost, start_psnr = st.image, st.result, st.seconds, st.lam, st.cost, st.psnr
    p = st.parsed
    spec, c = p.spec, p.spec.channels
    h, w = spec.height, spec.width
    codes, idx, steps, samplers = st.codes, st.idx, st.steps, st.samplers
    m, shift, target = st.matrix, st.shift, st.target

    torch.manual_seed(seed)
    net = PostFilter(c, hidden)
    if p.post.hidden == hidden:  # start from the file's own filter
        net.load_coded_tensors(postfilter.weights(p.post, c))
    latents = [[torch.tensor(codes[lv][ch], dtype=torch.float32, requires_grad=True) for ch in range(c)]
               for lv in range(spec.levels)]
    opt = torch.optim.Adam([{"params": [v for lv in latents for v in lv], "lr": lr_latent},
                            {"params": list(net.parameters()), "lr": lr_filter}])
    terms: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}
    history = []
    t_train = time.perf_counter()
    step = 0
    while time.perf_counter() - t_train < seconds:
        if step % refresh == 0:
            rounded = [[v.detach().round().to(torch.int64).numpy() for v in lv] for lv in latents]
            terms = {(lv, ch): plane_rate_terms(rounded, lv, ch)
                     for lv in range(spec.levels) for ch in range(c)}
        frac = min(1.0, (time.perf_counter() - t_train) / seconds)
        for g, base in zip(opt.param_groups, (lr_latent, lr_filter)):
            g["lr"] = base * 0.5 * (1 + math.cos(math.pi * frac))
        hard = [[v + (v.round() - v).detach() for v in lv] for lv in latents]  # straight-through rounding
        grids = [torch.stack([hard[lv][ch] * steps[lv * c + ch] for ch in range(c)]) for lv in range(spec.levels)]
        y = rdoq.sum_levels(samplers, grids, (c, h, w))
        out = torch.einsum("ij,jhw->ihw", m, y + net(y[None])[0]) - shift
        sse = ((out - target) ** 2).sum()
        bits = sum((f * torch.clamp((v - pred).abs(), max=1.0) + mo * torch.relu((v - pred).abs() - 1.0)).sum()
                   for (lv, ch), (f, mo, pred) in terms.items() for v in [latents[lv][ch]])
        loss = sse + lam * bits
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            history.append({"step": step, "seconds": round(time.perf_counter() - t_train, 1),
                            "sse": round(float(sse), 3), "bits": round(float(bits), 1), "loss": round(float(loss), 3)})
            print(path.name, history[-1], flush=True)
        step += 1
    train_seconds = time.perf_counter() - t_train
    final = [[v.detach().round().to(torch.int64).numpy() for v in lv] for lv in latents]
    post = postfilter.quantize([prm.detach().numpy() for prm in net.coded_tensors()])
    joint = encoder.code_hybrid(spec, final, idx, p.filters, post)
    joint_cost, joint_psnr = encoder.file_cost(joint, image, lam)
    bare = encoder.code_hybrid(spec, final, idx, p.filters)  # the trained latents without the filter
    bare_cost, bare_psnr = encoder.file_cost(bare, image, lam)
    changed = probe_cli.latents_changed(codes, final)
    row = {"image": path.name, "quality": quality, "preset": preset, "hidden": hidden, "lambda": lam,
           "start": probe_cli.start_record(r.data, start_psnr, start_cost, start_seconds, p.post.hidden),
           "joint": {"bytes": len(joint), "psnr": round(joint_psnr, 3), "cost": round(joint_cost, 3),
                     "delta_cost_percent": round(100 * (joint_cost / start_cost - 1), 2),
                     "steps": step, "seconds": round(train_seconds, 1), "latents_changed": changed},
           "joint_without_filter": {"bytes": len(bare), "psnr": round(bare_psnr, 3), "cost": round(bare_cost, 3),
                                    "delta_cost_percent": round(100 * (bare_cost / start_cost - 1), 2)},
           "history": history}
    return probe_cli.emit(row)


def main() -> None:
    ap = probe_cli.parser(__doc__)
    probe_cli.training_args(ap, 240.0)
    ap.add_argument("--lr-filter", type=float, default=1e-3)
    args = ap.parse_args()
    probe_cli.run(args, lambda im, q: probe(im, q, args.preset, args.seconds, args.hidden, args.refresh,
                                            args.lr_latent, args.lr_filter, args.seed))


if __name__ == "__main__":
    main()
