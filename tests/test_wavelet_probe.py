"""benchmarks/wavelet_probe.py: the 9/7 lifting is the transform it claims to be, the bytes it reports
are the context coder's real words, and its run folder is one compare_runs.py reads."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import load_benchmark
from PIL import Image

from codec import context


@pytest.fixture(scope="module")
def wp():
    return load_benchmark("wavelet_probe")


def test_lifting_inverts_and_splits_a_ramp(wp):
    rng = np.random.default_rng(0)
    x = rng.random((48, 64))
    ll, bands = wp.dwt2(x, 3)
    assert ll.shape == (6, 8) and [b[0].shape for b in bands] == [(24, 32), (12, 16), (6, 8)]
    np.testing.assert_allclose(wp.idwt2(ll, bands), x, atol=1e-12)
    # a constant passes the low band with gain 1 and leaves every high band empty; a linear ramp too
    # (the 9/7 analysis high-pass has four vanishing moments), away from the symmetric borders
    ll, bands = wp.dwt2(np.full((32, 32), 0.25), 2)
    np.testing.assert_allclose(ll, 0.25, atol=1e-12)
    assert all(np.abs(b).max() < 1e-12 for lv in bands for b in lv)
    ramp = np.add.outer(np.arange(32.0), np.arange(32.0))
    _, bands = wp.dwt2(ramp, 1)
    assert all(np.abs(b[2:-2, 2:-2]).max() < 1e-9 for b in bands[0])


def test_band_norms_are_the_synthesis_functions_norms(wp):
    n_ll, n_b = wp.band_norms((64, 64), 2)
    # the low band's synthesis gain is 2 per level (DC gain 1 per axis, support area x4)
    assert n_ll == pytest.approx(4.0, rel=0.05)
    assert n_b[0][0] == pytest.approx(n_b[0][1]) and n_b[0][2] < n_b[0][0] < n_b[1][0]


def test_reported_bytes_are_the_coders_words(wp):
    rng = np.random.default_rng(1)
    planes = [[np.rint(rng.laplace(0, s, (16 >> lv, 24 >> lv))).astype(np.int32) for s in (2.0, 0.7, 0.7)]
              for lv in range(3)]
    idx = [[40, 50, 50]] * 3
    records, words = context.encode_planes(planes, idx)
    back = context.decode_planes(words, [p[0].shape for p in planes], 3, records)
    assert all(np.array_equal(a, b) for la, lb in zip(planes, back) for a, b in zip(la, lb))
    assert wp.code_pyramid(planes, idx) > len(words)  # the words and the side information


def test_run_folder_and_rdoq(wp, cat, tmp_path):
    src = tmp_path / "cat.png"
    Image.fromarray(cat).save(src)
    out = tmp_path / "run"
    assert wp.main([str(src), "--levels", "4", "--theta", "0.5", "--rdoq", "0,1.0", "--deltas", "0.1,0.03",
                    "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert {r["codec"] for r in rows} == {"wavelet-t0.5", "wavelet-t0.5-r1"} and len(rows) == 4
    by = {(r["codec"], r["setting"]): r for r in rows}
    for d in ("0.1", "0.03"):
        plain, rd = by[("wavelet-t0.5", d)], by[("wavelet-t0.5-r1", d)]
        assert int(rd["bytes"]) < int(plain["bytes"])  # RDOQ drops what costs more than it is worth
        assert float(rd["psnr"]) <= float(plain["psnr"]) + 0.05
        assert float(plain["decoding_time"]) >= 0 and 8 * int(plain["bytes"]) / (64 * 48) == pytest.approx(float(plain["bpp"]))
    assert float(by[("wavelet-t0.5", "0.03")]["psnr"]) > float(by[("wavelet-t0.5", "0.1")]["psnr"]) + 3
    with pytest.raises(SystemExit, match="multiples of 2"):
        wp.main([str(src), "--levels", "5", "--out", str(out)])


def test_post_filter_kept_only_where_it_pays(wp, cat, tmp_path):
    src = tmp_path / "cat.png"
    Image.fromarray(cat).save(src)
    out = tmp_path / "run"
    assert wp.main([str(src), "--levels", "4", "--theta", "0.5", "--rdoq", "0.4", "--deltas", "0.1,0.03", "--post", "2,30",
                    "--out", str(out)]) == 0
    rows = {(r["codec"], r["setting"]): r for r in csv.DictReader((out / "per_image.csv").open())}
    assert {c for c, _ in rows} == {"wavelet-t0.5-r0.4", "wavelet-t0.5-r0.4-p2"}
    for d in ("0.1", "0.03"):
        plain, post = rows[("wavelet-t0.5-r0.4", d)], rows[("wavelet-t0.5-r0.4-p2", d)]
        stats = json.loads(post["encoder_stats"])
        assert stats["post_filter_bytes"] > 1
        if stats["post_filter"]:  # kept: the block's bytes bought a lower error
            assert int(post["bytes"]) == int(plain["bytes"]) + stats["post_filter_bytes"]
            assert float(post["mse"]) < float(plain["mse"])
        else:  # dropped: the file is the plain one
            assert post["bytes"] == plain["bytes"] and post["mse"] == plain["mse"]
