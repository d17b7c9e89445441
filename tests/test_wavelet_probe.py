"""benchmarks/wavelet_probe.py: it runs the codec's 9/7 transform, the bytes it reports are the
context coder's real words, and its run folder is one compare_runs.py reads."""
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


def test_the_probe_uses_the_codecs_transform(wp):
    """The probe's transform and norms are :mod:`codec.wavelet`'s (tested in test_wavelet.py), so its
    figures are those of the arithmetic the codec runs."""
    from codec import wavecode, wavelet

    assert wp.dwt2 is wavelet.analyse and wp.band_norms is wavelet.band_norms
    assert wp.rdoq_pyramid is wavecode.rdoq_group


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
