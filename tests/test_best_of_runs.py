"""benchmarks/best_of_runs.py: per image and quality, the input row with the lowest D + lambda R."""
from __future__ import annotations

import csv
import json

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def best():
    return load_benchmark("best_of_runs")


def _run(d, curve: str, rows: dict[tuple[str, int], tuple[int, float]]) -> None:
    """``rows[(image, quality)] = (bytes, mse)`` of 768x512 images."""
    d.mkdir()
    with (d / "per_image.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "codec", "setting", "bytes", "bpp", "psnr", "mse", "ms_ssim",
                                          "encoding_time", "decoding_time", "encoder_stats"])
        w.writeheader()
        for (image, q), (nbytes, mse) in rows.items():
            w.writerow({"image": image, "codec": curve, "setting": q, "bytes": nbytes, "bpp": nbytes * 8 / (768 * 512),
                        "psnr": 30.0, "mse": mse, "ms_ssim": 0.9, "encoding_time": 1.0, "decoding_time": 0.1,
                        "encoder_stats": "{}"})


def test_keeps_the_cheaper_row_per_point(best, tmp_path, capsys):
    compare = load_benchmark("compare_runs")
    a = {("x.png", 40): (1000, 50.0), ("x.png", 70): (5000, 10.0), ("y.png", 40): (900, 60.0)}
    b = {("x.png", 40): (1200, 40.0), ("x.png", 70): (4000, 10.0), ("z.png", 40): (100, 1.0)}
    _run(tmp_path / "a", "inrc-fast", a)
    _run(tmp_path / "b", "inrc-slow", b)
    out = tmp_path / "best"
    assert best.main([f"inrc-best={tmp_path / 'a'}:inrc-fast", f"{tmp_path / 'b'}:inrc-slow", "--out", str(out)]) == 0
    with (out / "per_image.csv").open() as f:
        rows = {(r["image"], r["setting"]): r for r in csv.DictReader(f)}
    assert set(rows) == {("x.png", "40"), ("x.png", "70")}  # only what both inputs have
    assert all(r["codec"] == "inrc-best" for r in rows.values())
    for key, r in rows.items():
        ra = {**r, "bytes": str(a[(key[0], int(key[1]))][0]), "mse": str(a[(key[0], int(key[1]))][1]),
              "bpp": str(a[(key[0], int(key[1]))][0] * 8 / (768 * 512))}
        rb = {**r, "bytes": str(b[(key[0], int(key[1]))][0]), "mse": str(b[(key[0], int(key[1]))][1]),
              "bpp": str(b[(key[0], int(key[1]))][0] * 8 / (768 * 512))}
        want = "0:inrc-fast" if compare.cost(ra) <= compare.cost(rb) else "1:inrc-slow"
        assert json.loads(r["encoder_stats"])["from"] == want
        assert float(r["bytes"]) == float((ra if want.startswith("0") else rb)["bytes"])
    # the same mse at q70: the smaller file wins; at q40 lambda is large enough that 200 bytes fewer
    # outweigh the larger error (J 2050 against 2098)
    assert json.loads(rows[("x.png", "70")]["encoder_stats"])["from"] == "1:inrc-slow"
    assert json.loads(rows[("x.png", "40")]["encoder_stats"])["from"] == "0:inrc-fast"
    assert json.loads(capsys.readouterr().out)["rows"] == 2
    with pytest.raises(SystemExit):
        best.main([f"{tmp_path / 'a'}:inrc-fast", f"{tmp_path / 'b'}:inrc-slow", "--out", str(out)])
