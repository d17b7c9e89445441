"""Where the hybrid encoder runs: the device choice, full float32 on CUDA, and (on a machine with
CUDA) the same quality as on the CPU.  The CUDA tests are skipped where there is none (CI); they ran
on an H100 (README, "GPU")."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

import codec
from codec import decoder, encoder
from codec.cli import main
from codec.errors import OptionError

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_auto_picks_cuda_when_present_and_never_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert encoder.hybrid_device("auto") == torch.device("cpu")
    assert encoder.hybrid_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert encoder.hybrid_device("auto") == torch.device("cuda")
    assert encoder.hybrid_device("cuda") == torch.device("cuda")
    with pytest.raises(OptionError, match="not MPS"):
        encoder.hybrid_device("mps")
    with pytest.raises(OptionError, match="unknown device"):
        encoder.hybrid_device("tpu")


def test_mps_is_a_one_line_usage_error_for_the_hybrid(tmp_path, cat, capsys):
    src = tmp_path / "cat.png"
    Image.fromarray(cat).save(src)
    code = main(["encode", str(src), "-o", str(tmp_path / "x.inr"), "--device", "mps"])
    err = capsys.readouterr().err
    assert code == 2 and "not MPS" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.inr").exists()


FLAGS = ((torch.backends.cuda.matmul, "allow_tf32", False), (torch.backends.cudnn, "allow_tf32", False),
         (torch.backends.cudnn, "deterministic", True), (torch.backends.cudnn, "benchmark", False))


def _flags() -> list:
    return [getattr(obj, name) for obj, name, _ in FLAGS]


@pytest.mark.parametrize("before", [True, False])
def test_exact_cuda_sets_float32_and_determinism_on_cuda_and_restores_the_flags(before):
    saved = _flags()
    try:
        for obj, name, _ in FLAGS:
            setattr(obj, name, before)
        with encoder.exact_cuda(torch.device("cuda")):  # flags only: no GPU needed
            assert _flags() == [value for _, _, value in FLAGS]
        assert _flags() == [before] * len(FLAGS)
        with pytest.raises(RuntimeError), encoder.exact_cuda(torch.device("cuda")):
            raise RuntimeError("an encode that fails")
        assert _flags() == [before] * len(FLAGS)  # restored however the encode ends
        with encoder.exact_cuda(torch.device("cpu")):
            assert _flags() == [before] * len(FLAGS)  # untouched off CUDA
    finally:
        for (obj, name, _), value in zip(FLAGS, saved):
            setattr(obj, name, value)


@pytest.mark.parametrize("model", ["hybrid", "siren"])
def test_a_gpu_out_of_memory_is_a_one_line_error(tmp_path, cat, capsys, monkeypatch, model):
    """torch's CUDA out-of-memory error (a multi-line RuntimeError) becomes a LimitError that names
    the image and the way out, for every model; raised here by a stand-in for the encoder."""
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\n(more lines)")

    monkeypatch.setattr(encoder, "_encode_hybrid" if model == "hybrid" else "fit", oom)
    with pytest.raises(encoder.LimitError, match="GPU ran out of memory encoding a 64x48 image"):
        codec.encode_image(cat, model=model, steps=5, quiet=True)
    src = tmp_path / "cat.png"
    Image.fromarray(cat).save(src)
    code = main(["encode", str(src), "-o", str(tmp_path / "x.inr"), "--model", model, "--steps", "5"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "use --device cpu" in err and not (tmp_path / "x.inr").exists()


def test_the_cpu_encode_reports_its_device(cat):
    r = codec.encode_image(cat, preset="fast", basis="pyramid", quality=60, device="cpu", quiet=True)
    assert r.device == "cpu" and r.stats["preset"] == "fast"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 256x192 crop of chelsea: big enough for every level and the post filter to matter."""
    return np.ascontiguousarray(skimage.data.chelsea()[20:212, 100:356])


def _cost(data: bytes, image: np.ndarray, lam: float) -> float:
    """``D + lambda R`` as the encoder measures it (8-bit RGB error in [0, 1] units, real bytes)."""
    out = decoder.decode_to_array(data).astype(np.float64) / 255.0
    sse = float(((out - image.astype(np.float64) / 255.0) ** 2).sum())
    return sse + lam * 8 * len(data)


@needs_cuda
@pytest.mark.parametrize("preset", ["fast", "medium"])
def test_cuda_encode_matches_the_cpu_encode(photo, preset):
    """The same search on CUDA (every pass: a budget that never binds) lands within 1 % of the CPU's
    ``D + lambda R``.  Float32 sums in another order move a few RDOQ decisions, and that can change
    which refit pass pays and so where on the curve the file lands (on the H100, kodim01 medium q70:
    3 passes instead of 4, 7.5 % more bytes and 0.42 dB more, D + lambda R 0.2 % lower), so only the
    cost is compared."""
    opts = {"preset": preset, "quality": 75, "seconds": 86400.0, "quiet": True}
    flags = _flags()
    cpu = codec.encode_image(photo, device="cpu", **opts)
    gpu = codec.encode_image(photo, device="cuda", **opts)
    assert gpu.device == "cuda" and cpu.device == "cpu"
    lam = cpu.stats["lambda"]
    assert gpu.stats["delta0"] == cpu.stats["delta0"] and gpu.stats["lambda"] == lam
    assert math.isclose(_cost(gpu.data, photo, lam), _cost(cpu.data, photo, lam), rel_tol=0.01)
    assert _flags() == flags  # left as found


@needs_cuda
def test_cuda_rate_control_lands_on_the_target(photo):
    r = codec.encode_image(photo, preset="fast", basis="pyramid", bpp=0.5, device="cuda", quiet=True)
    assert r.device == "cuda" and abs(len(r.data) * 8 / photo.shape[0] / photo.shape[1] / 0.5 - 1) <= 0.10


def test_device_timing_script_records_each_encode(tmp_path, cat):
    """``benchmarks/device_timing.py`` (run on the CPU here): one record per encode with the real
    bytes and the D + lambda R of the decoded file."""
    from conftest import load_benchmark

    mod = load_benchmark("device_timing")
    src, out = tmp_path / "cat.png", tmp_path / "t.json"
    Image.fromarray(cat).save(src)
    assert mod.main([str(src), "--presets", "fast", "--qualities", "60", "--devices", "cpu", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    (rec,) = d["records"]
    r = codec.encode_image(cat, preset="fast", basis="pyramid", quality=60, device="cpu", quiet=True)
    assert rec["device"] == "cpu" and rec["bytes"] == len(r.data) and rec["psnr"] == round(r.psnr, 3)
    assert rec["cost"] == pytest.approx(_cost(r.data, cat, r.stats["lambda"]), rel=1e-9)
    assert d["summary"] == {} and d["machine"]["inrc"] == codec.__version__
