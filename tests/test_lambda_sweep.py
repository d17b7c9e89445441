"""benchmarks/lambda_sweep.py: each factor's encodes are real encodes at that factor, and the BD-rates
compare them as codec.bdrate does."""
from __future__ import annotations

import json

import pytest
from conftest import load_benchmark
from PIL import Image

import codec
from codec import config
from codec.bdrate import bd_rate


@pytest.fixture(scope="module")
def sweep():
    return load_benchmark("lambda_sweep")


def test_sweep_records_real_encodes_at_each_factor(sweep, tmp_path, cat):
    src, out = tmp_path / "cat.png", tmp_path / "sweep.json"
    Image.fromarray(cat).save(src)
    before = config.HYBRID_PRESETS["fast"]
    assert sweep.main([str(src), "--factors", "0.1", "--reference", "0.5", "--qualities", "50,65,80,95",
                       "--out", str(out)]) == 0
    assert config.HYBRID_PRESETS["fast"] is before  # the preset is put back
    d = json.loads(out.read_text())
    lo, hi = d["records"]["0.1"], d["records"]["0.5"]
    assert [r["quality"] for r in lo] == [50, 65, 80, 95]
    # a larger factor zeroes more latents at the same step: smaller files at every quality
    assert all(b["bytes"] < a["bytes"] for a, b in zip(lo, hi))
    r = codec.encode_image(cat, preset="fast", basis="pyramid", quality=80, quiet=True)
    assert r.stats["lambda"] == pytest.approx(config.RDOQ_LAMBDA * r.stats["delta0"] ** 2, rel=1e-4)  # delta0 is rounded
    bd = d["bd_rate_vs_reference"]["0.1"]
    expect = bd_rate([x["bpp"] for x in hi], [x["psnr"] for x in hi], [x["bpp"] for x in lo], [x["psnr"] for x in lo])
    assert bd["per_image"]["cat.png"] == pytest.approx(expect, abs=1e-3)
    assert bd["mean_per_image"] == pytest.approx(expect, abs=1e-3) and bd["mean_curve"] == pytest.approx(expect, abs=1e-3)
    assert "0.5" not in d["bd_rate_vs_reference"]


def test_shape_sweep_encodes_with_each_shape(sweep, tmp_path, cat, monkeypatch):
    """``--shapes``: one run per step-size shape, the first the reference; a larger chroma factor
    codes chroma more coarsely, so its files are smaller at every quality."""
    src, out = tmp_path / "cat.png", tmp_path / "shapes.json"
    Image.fromarray(cat).save(src)
    seen = []
    encode = codec.encode_image
    monkeypatch.setattr(codec, "encode_image",
                        lambda *a, **k: seen.append(config.HYBRID_PRESETS["fast"].shapes) or encode(*a, **k))
    before = config.HYBRID_PRESETS["fast"]
    assert sweep.main([str(src), "--shapes", "1,1,1;1,3,1", "--qualities", "50,65,80,95", "--out", str(out)]) == 0
    assert config.HYBRID_PRESETS["fast"] is before
    assert seen == [((1.0, 1.0, 1.0),)] * 4 + [((1.0, 3.0, 1.0),)] * 4
    d = json.loads(out.read_text())
    assert d["reference"] == "1,1,1" and list(d["bd_rate_vs_reference"]) == ["1,3,1"]
    ref, coarse = d["records"]["1,1,1"], d["records"]["1,3,1"]
    assert all(b["bytes"] < a["bytes"] for a, b in zip(ref, coarse))
