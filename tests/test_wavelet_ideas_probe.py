"""benchmarks/wavelet_ideas_probe.py: each idea runs on a small image and reports figures that obey
what they must (an empirical entropy bounds a static model, the trellis's states are the decoder's,
every patched function is restored)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_benchmark
from PIL import Image

from codec import context, decoder


@pytest.fixture(scope="module")
def ideas():
    return load_benchmark("wavelet_ideas_probe")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, cat):
    d = tmp_path_factory.mktemp("ideas")
    Image.fromarray(cat[:40, :48]).save(d / "a.png")
    return d


@pytest.mark.parametrize("idea", ["rdoq", "recon", "context", "dq", "mismatch"])
def test_each_idea_runs_and_restores_the_codec(ideas, folder, tmp_path, idea):
    base, subbands = context.plane_base, decoder.wavelet_subbands
    out = tmp_path / "r.json"
    assert ideas.main([str(folder), "--idea", idea, "--sweeps", "1", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["images"] == ["a.png"] and r["idea"] == idea and r["summary"]
    assert context.plane_base is base and decoder.wavelet_subbands is subbands
    if idea == "rdoq":  # the photo read in [0, 1], as the codec reads it: about 3 bpp and 34.5 dB at q95
        bpp, psnr = r["per_image"][0]["ref"][-1][:2]
        assert 1.5 < bpp < 6 and 28 < psnr < 45
    if idea == "mismatch":
        s = r["per_image"][0]
        # Gibbs: no static model of a histogram codes it in fewer bits than its empirical entropy
        assert s["empirical"] <= s["three_parameter"] + 1e-6 and s["empirical"] <= s["model"] + 1e-6
    if idea == "context":
        sizes = r["per_image"][0]
        assert all(len(v) == 5 and min(v) > 0 for v in sizes.values())


def test_dq_states_follow_the_parity_machine(ideas):
    k = np.array([[1, 2, -1, 0, 3], [0, 0, 1, 1, -2]])
    s = ideas._dq_states(k)
    # the state before each value: 0, then T[s][parity of k] with T = ((0, 2), (2, 0), (1, 3), (3, 1))
    assert s.tolist() == [[0, 2, 1, 0, 0], [0, 0, 0, 2, 3]]
    assert ideas._dq_recon(np.array([1, 2, -1, 0]), True).tolist() == [1, 3, -1, 0]
    assert ideas._dq_recon(np.array([1, 2, -1, 0]), False).tolist() == [2, 4, -2, 0]
